//! TLS on the gateway's own listeners, with a real client (curl): HTTP/1.1 and HTTP/2 by ALPN,
//! JSON and streamed answers, a certificate renewed on disk served without a restart, a bad
//! renewal refused while the running certificate keeps serving, the admin listener with its own
//! certificate, and config errors that name the key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::pki::{write_private, Ca};
use common::*;

/// What curl printed and whether it succeeded; `-w` adds "\n<http_version> <status>".
struct Curl {
    ok: bool,
    body: String,
    version: String,
    status: u16,
    stderr: String,
}

fn curl(url: &str, ca: &Path, extra: &[&str]) -> Curl {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca)
        .args(["-w", "\n%{http_version} %{http_code}"])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, tail) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    let mut tail = tail.split(' ');
    Curl {
        ok: out.status.success(),
        body: body.to_string(),
        version: tail.next().unwrap_or_default().to_string(),
        status: tail.next().and_then(|s| s.parse().ok()).unwrap_or(0),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

fn chat(gw: &Gateway, ca: &Path, http: &str, stream: bool) -> Curl {
    let body = format!(r#"{{"model":"demo","stream":{stream},"messages":[{{"role":"user","content":"hello"}}]}}"#);
    let url = format!("https://{}/v1/chat/completions", gw.addr);
    curl(&url, ca, &[http, "-H", "content-type: application/json", "-d", &body])
}

/// Puts a certificate and key at the paths the config names, each replaced in one rename.
fn install(cert_pem: &str, key_pem: &str, dir: &Path) {
    write_private(&dir.join("next.key"), key_pem);
    std::fs::rename(dir.join("next.key"), dir.join("live.key")).unwrap();
    std::fs::write(dir.join("next.crt"), cert_pem).unwrap();
    std::fs::rename(dir.join("next.crt"), dir.join("live.crt")).unwrap();
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn the_data_plane_speaks_tls_h1_and_h2_and_a_renewed_certificate_is_served_without_a_restart() {
    let pki = tempfile::tempdir().unwrap();
    let dir = pki.path();
    let (one, two) = (Ca::new(dir, "ca-one"), Ca::new(dir, "ca-two"));
    let first = one.issue(dir, "first");
    install(&read(&first.cert), &read(&first.key), dir);

    let mock = Mock::start(&[]);
    let server = format!(
        "  reload_poll: 100ms\n  reload_settle: 200ms\n  tls:\n    cert_file: {}\n    key_file: {}\n",
        dir.join("live.crt").display(),
        dir.join("live.key").display()
    );
    let rest = format!(
        "providers:\n{}models:\n  demo:\n    targets: [ {{ provider: mock, model: mock-gpt }} ]\n",
        mock_provider("mock", &mock.base_url(), "")
    );
    let gw = Gateway::start(&server, &rest);

    // HTTP/1.1 and HTTP/2 (ALPN), JSON and a stream.
    let h1 = chat(&gw, &one.pem, "--http1.1", false);
    assert!(h1.ok && h1.status == 200, "{} {}", h1.stderr, h1.body);
    assert_eq!(h1.version, "1.1");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&h1.body).unwrap()["object"],
        "chat.completion"
    );
    let h2 = chat(&gw, &one.pem, "--http2", false);
    assert!(h2.ok && h2.status == 200, "{} {}", h2.stderr, h2.body);
    assert_eq!(h2.version, "2");
    let streamed = chat(&gw, &one.pem, "--http2", true);
    assert_eq!(
        (streamed.status, streamed.version.as_str()),
        (200, "2"),
        "{}",
        streamed.stderr
    );
    assert!(streamed.body.contains("chat.completion.chunk"), "{}", streamed.body);
    assert!(streamed.body.trim_end().ends_with("data: [DONE]"), "{}", streamed.body);
    // Two requests on one HTTP/2 connection.
    let url = format!("https://{}/v1/models", gw.addr);
    let both = curl(&url, &one.pem, &["--http2", &url]);
    assert!(
        both.ok && both.status == 200 && both.body.matches("\"demo\"").count() == 2,
        "{}",
        both.body
    );

    // Plain HTTP on the TLS port gets no answer of ours, and a client that does not trust the
    // certificate's issuer is refused by the client.
    let plain = Command::new("curl")
        .args(["-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(gw.url("/v1/models"))
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&plain.stdout), "200");
    assert!(!chat(&gw, &two.pem, "--http1.1", false).ok);

    // A renewed certificate (another issuer, so the client can tell) replaces the files: served
    // from the next handshake on, with no restart.
    let second = two.issue(dir, "second");
    install(&read(&second.cert), &read(&second.key), dir);
    wait_until("the new certificate", Duration::from_secs(10), || {
        chat(&gw, &two.pem, "--http1.1", false).status == 200
    });
    assert!(!chat(&gw, &one.pem, "--http1.1", false).ok);
    assert!(gw.proc.log_text().contains("serving a new TLS certificate"));

    // A key that is not the certificate's: the reload is refused, naming the files, and the
    // running certificate keeps serving.
    let errors = gw.metric("tollgate_config_reload_errors_total");
    let third = two.issue(dir, "third");
    install(&read(&second.cert), &read(&third.key), dir);
    wait_until("the refused reload", Duration::from_secs(10), || {
        gw.metric("tollgate_config_reload_errors_total") > errors
    });
    let log = gw.proc.log_text();
    assert!(
        log.contains("live.key does not hold the private key of the certificate in"),
        "{log}"
    );
    assert!(!log.contains("PRIVATE KEY"), "key material in the log");
    let after = chat(&gw, &two.pem, "--http2", false);
    assert_eq!((after.status, after.version.as_str()), (200, "2"), "{}", after.stderr);
}

#[test]
fn the_admin_listener_takes_its_own_certificate() {
    let pki = tempfile::tempdir().unwrap();
    let dir = pki.path();
    let ca = Ca::new(dir, "ca");
    let admin_cert = ca.issue(dir, "admin");
    let (port, admin_port) = (free_port(), free_port());
    let config = dir.join("tollgate.yaml");
    std::fs::write(
        &config,
        format!(
            "server:\n  listen: 127.0.0.1:{port}\n  admin_listen: 127.0.0.1:{admin_port}\n  shutdown_grace: 0s\n  admin_tls:\n    cert_file: admin.crt\n    key_file: admin.key\n"
        ),
    )
    .unwrap();
    assert!(admin_cert.cert.ends_with("admin.crt"));
    let cfg = config.to_string_lossy().to_string();
    let run = dir.to_string_lossy().to_string();
    let gw = Proc::start("gateway", dir, &["run", "--config", &cfg, "--runtime-dir", &run]);
    let health = format!("https://127.0.0.1:{admin_port}/health");
    wait_until("admin health over TLS", Duration::from_secs(15), || {
        curl(&health, &ca.pem, &[]).status == 200
    });
    let h2 = curl(&health, &ca.pem, &["--http2"]);
    assert_eq!((h2.status, h2.version.as_str()), (200, "2"));
    // The data plane (no `tls:`) stays plain HTTP; the admin listener takes no plain HTTP.
    assert_eq!(get(&format!("http://127.0.0.1:{port}/v1/models")).status, 200);
    assert!(agent()
        .get(&format!("http://127.0.0.1:{admin_port}/health"))
        .call()
        .is_err());
    drop(gw);
}

/// What `tollgate check` says of `config` (written to `dir/tollgate.yaml`), which it must refuse.
fn refused(dir: &Path, config: &str) -> String {
    let path = dir.join("tollgate.yaml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout)
}

#[test]
fn tls_config_errors_name_the_key_and_the_file() {
    let pki = tempfile::tempdir().unwrap();
    let dir = pki.path();
    let ca = Ca::new(dir, "ca");
    let issued = ca.issue(dir, "srv");
    let other = ca.issue(dir, "other");
    let check = |tls: &str| refused(dir, &format!("server:\n  listen: 127.0.0.1:1\n  tls:\n{tls}"));
    let e = check("    cert_file: srv.crt\n    key_file: missing.key\n");
    assert!(
        e.contains("tollgate.yaml:5: server.tls.key_file") && e.contains("missing.key is missing"),
        "{e}"
    );
    let e = check(&format!(
        "    cert_file: {}\n    key_file: {}\n",
        issued.cert.display(),
        other.key.display()
    ));
    assert!(
        e.contains("server.tls") && e.contains("other.key does not hold the private key"),
        "{e}"
    );
    assert!(!e.contains("PRIVATE KEY"), "{e}");
    let e = check("    cert_file: srv.crt\n    key_file: srv.key\n    ciphers: all\n");
    assert!(e.contains("ciphers"), "{e}");

    // Redis: a CA file needs rediss://, and must hold a certificate.
    let redis = |section: &str, url: &str, ca: &str| {
        let body = match section {
            "limits" => format!("limits:\n  backend: redis\n  redis:\n    url: {url}\n    ca_file: {ca}\n"),
            _ => format!("cache:\n  redis:\n    url: {url}\n    ca_file: {ca}\n"),
        };
        refused(dir, &format!("server:\n  listen: 127.0.0.1:1\n{body}"))
    };
    let e = redis("limits", "redis://localhost:6380", "ca.pem");
    assert!(e.contains("limits.redis.ca_file: needs a rediss:// URL"), "{e}");
    let e = redis("cache", "rediss://localhost:6380", "srv.key");
    assert!(
        e.contains("cache.redis.ca_file") && e.contains("srv.key: no certificate"),
        "{e}"
    );
}
