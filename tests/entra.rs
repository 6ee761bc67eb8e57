//! Azure OpenAI with Microsoft Entra ID (`azure_credentials: entra`) against a fake of Entra's
//! token endpoint. The Azure crate takes only an HTTPS authority, so the fake serves TLS with a
//! certificate from a CA made for the test, which the gateway trusts through `SSL_CERT_FILE`.
//! Tokens live a few seconds: a steady load shows them refreshed in the background; an authority
//! that is down fails only that provider, with the cause named.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::fake::{Fake, Seen};
use common::*;
use serde_json::json;

/// A CA and a certificate it signed for `localhost` / 127.0.0.1 (openssl), in `dir`.
fn certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=tollgate-test-ca",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
    ]);
}

/// Entra's token endpoint for tenant `t1`: a client-credentials grant of app `app-1` with its
/// secret, for Azure OpenAI's scope.
fn entra(dir: &Path) -> Fake {
    Fake::start_tls(
        Arc::new(|r: &Seen, n| {
            let form: Vec<(String, String)> = url::form_urlencoded::parse(r.body.as_bytes()).into_owned().collect();
            let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).unwrap_or("");
            let ok = r.path == "/t1/oauth2/v2.0/token"
                && field("grant_type") == "client_credentials"
                && field("client_id") == "app-1"
                && field("client_secret") == "the-secret"
                && field("scope") == "https://cognitiveservices.azure.com/.default";
            if !ok {
                return (
                    401,
                    json!({"error": "invalid_client", "error_description": "AADSTS7000215"}).to_string(),
                );
            }
            let token = json!({"token_type": "Bearer", "expires_in": 6, "ext_expires_in": 6,
                "access_token": format!("eyJ0.entra-{n}")});
            (200, token.to_string())
        }),
        &dir.join("server.pem"),
        &dir.join("server.key"),
    )
}

fn config(mock: &Mock) -> String {
    format!(
        "routing:\n  retries: 0\nproviders:\n  azure:\n    kind: azure\n    base_url: \"http://{}\"\n    api_version: \"2024-10-21\"\n    azure_credentials: entra\n    entra_tenant_id: t1\n    entra_client_id: app-1\n    entra_client_secret: \"${{ENTRA_SECRET}}\"\n{}models:\n  gpt-azure:\n    targets: [ {{ provider: azure, model: up-azure }} ]\n  gpt:\n    targets: [ {{ provider: oai, model: mock-gpt }} ]\n",
        mock.addr,
        mock_provider("oai", &mock.base_url(), ""),
    )
}

fn ask(gw: &Gateway, model: &str) -> Resp {
    gw.chat(&json!({"model": model, "messages": [{"role": "user", "content": "Hi"}]}))
}

fn start(mock: &Mock, dir: &Path, authority: &str) -> Gateway {
    let ca = dir.join("ca.pem").display().to_string();
    Gateway::start_env(
        "",
        &config(mock),
        &[
            ("ENTRA_SECRET", "the-secret"),
            ("SSL_CERT_FILE", &ca),
            ("AZURE_AUTHORITY_HOST", authority),
        ],
    )
}

#[test]
fn entra_tokens_sign_azure_requests_and_are_refreshed_under_load() {
    let mock = Mock::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let fake = entra(dir.path());
    let gw = start(&mock, dir.path(), &format!("https://localhost:{}", fake.port));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = ask(&gw, "gpt-azure");
        if r.status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no token within 20 s; the last answer: {}",
            r.body
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let until = std::time::Instant::now() + Duration::from_secs(8);
    let mut sent = 0;
    while std::time::Instant::now() < until {
        assert_eq!(ask(&gw, "gpt-azure").status, 200);
        sent += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    let reqs = mock.requests();
    let up = reqs.last().unwrap();
    assert!(up["path"]
        .as_str()
        .unwrap()
        .starts_with("/openai/deployments/up-azure/chat/completions"));
    assert!(up["headers"].get("api-key").is_none(), "no key: a token");
    let mut tokens: Vec<String> = reqs
        .iter()
        .filter_map(|r| r["headers"]["authorization"].as_str().map(str::to_string))
        .collect();
    assert!(tokens.iter().all(|t| t.starts_with("Bearer eyJ0.entra-")), "{tokens:?}");
    tokens.dedup();
    assert!(tokens.len() >= 2, "rotated: {tokens:?}");
    let issued = fake.issued() as usize;
    assert!((2..=8).contains(&issued), "{issued} token fetches for {sent} requests");
}

#[test]
fn an_entra_authority_that_is_down_fails_only_its_provider() {
    let mock = Mock::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let gw = start(&mock, dir.path(), &format!("https://localhost:{}", free_port()));
    let r = ask(&gw, "gpt-azure");
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "credentials_unavailable");
    assert!(
        r.json()["error"]["message"].as_str().unwrap().contains("Entra ID"),
        "{}",
        r.body
    );
    assert_eq!(ask(&gw, "gpt").status, 200);
}
