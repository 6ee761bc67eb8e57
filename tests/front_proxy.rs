//! Behind a real front proxy (nginx from Debian's packages, as `conf/examples/nginx.conf`
//! configures it): the client's address comes through the trusted proxy's `X-Forwarded-For`
//! (a forged entry is never believed), per-IP limits count each client rather than the proxy, the
//! front proxy's `x-request-id` and the client's `traceparent` are kept, and streams flow through.
//!
//! Loopback has many addresses: clients connect from 127.0.0.2 and 127.0.0.4, nginx reaches the
//! gateway from 127.0.0.3 (`proxy_bind`), and only 127.0.0.3 is trusted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

struct Nginx {
    child: Child,
    port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx on a free port, in front of the gateway at `upstream`, from the shipped example config
/// (only its addresses and paths changed).
fn nginx(dir: &Path, upstream: &str) -> Nginx {
    let port = free_port();
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/examples/nginx.conf")).unwrap();
    let http = example
        .replace("listen 443 ssl;", &format!("listen 127.0.0.1:{port};"))
        .replace("server 127.0.0.1:8080;", &format!("server {upstream};"))
        .replace("# proxy_bind 127.0.0.3;", "proxy_bind 127.0.0.3;")
        .lines()
        .filter(|l| !l.trim_start().starts_with("ssl_"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        http.contains(&format!("listen 127.0.0.1:{port};")),
        "the example changed: {http}"
    );
    let d = dir.display();
    let conf = format!(
        "user root;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log;\nevents {{}}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{http}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new("nginx")
        .args(["-e", &format!("{d}/nginx-error.log"), "-g", "daemon off;", "-c"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx (run scripts/deps.sh: it installs nginx-light)");
    let n = Nginx { child, port };
    wait_until("nginx", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    n
}

/// A chat request with curl from the source address `from`; (status, body).
fn chat_from(from: &str, url: &str, headers: &[&str], stream: bool) -> (u16, String) {
    let body = format!(r#"{{"model":"demo","stream":{stream},"messages":[{{"role":"user","content":"hi"}}]}}"#);
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "--interface", from, "-w", "\n%{http_code}"])
        .args(["-H", "content-type: application/json", "-d", &body]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd.arg(url).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap_or(0), body.to_string())
}

fn records(gw: &Gateway) -> Vec<Value> {
    std::fs::read_to_string(gw.dir().join("access.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn behind_nginx_the_client_address_limits_and_ids_come_through_trusted_hops_only() {
    let mock = Mock::start(&[]);
    let rest = format!(
        "usage:\n  access_log: access.log\n  ledger: off\nlimits:\n  per_ip: {{ rpm: 3 }}\nproviders:\n{}models:\n  demo:\n    targets: [ {{ provider: mock, model: mock-gpt }} ]\n",
        mock_provider("mock", &mock.base_url(), "")
    );
    let gw = Gateway::start("  trusted_proxies: [ 127.0.0.3 ]\n", &rest);
    let dir = tempfile::tempdir().unwrap();
    let front = nginx(dir.path(), &gw.addr);
    let via = format!("http://127.0.0.1:{}/v1/chat/completions", front.port);

    // Through nginx, with a forged X-Forwarded-For, the front proxy's request id and a trace.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("traceparent: 00-{trace}-00f067aa0ba902b7-01");
    let (status, body) = chat_from(
        "127.0.0.2",
        &via,
        &["x-forwarded-for: 6.6.6.6", "x-request-id: front-1", &traceparent],
        false,
    );
    assert_eq!(status, 200, "{body}");
    // A stream flows through nginx (unbuffered) to its end.
    let (status, body) = chat_from("127.0.0.2", &via, &["x-request-id: front-2"], true);
    assert_eq!(status, 200, "{body}");
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    wait_until("two records", Duration::from_secs(5), || records(&gw).len() == 2);
    let recs = records(&gw);
    assert_eq!(recs[0]["client_ip"], "127.0.0.2", "{}", recs[0]);
    assert_eq!(recs[0]["client_request_id"], "front-1");
    assert_eq!(recs[0]["trace_id"], trace);
    assert_eq!(recs[1]["client_ip"], "127.0.0.2");
    assert_eq!(recs[1]["stream"], true);

    // Per-IP limits count the client behind the proxy, not the proxy: 127.0.0.2 has used 2 of
    // its 3 a minute, 127.0.0.4 none.
    assert_eq!(chat_from("127.0.0.2", &via, &[], false).0, 200);
    let (status, body) = chat_from("127.0.0.2", &via, &[], false);
    assert_eq!(status, 429, "{body}");
    assert_eq!(chat_from("127.0.0.4", &via, &[], false).0, 200);

    // Straight to the gateway, from an address it does not trust: the header is not believed.
    let direct = gw.url("/v1/chat/completions");
    assert_eq!(
        chat_from("127.0.0.5", &direct, &["x-forwarded-for: 127.0.0.4"], false).0,
        200
    );
    wait_until("six records", Duration::from_secs(5), || records(&gw).len() == 6);
    let ips: Vec<String> = records(&gw)
        .iter()
        .map(|r| r["client_ip"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ips,
        [
            "127.0.0.2",
            "127.0.0.2",
            "127.0.0.2",
            "127.0.0.2",
            "127.0.0.4",
            "127.0.0.5"
        ]
    );
    drop(front);
}
