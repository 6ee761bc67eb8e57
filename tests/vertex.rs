//! Vertex AI (Gemini and Claude models) with Google credentials, against fakes of Google's token
//! endpoint (a service account's signed JWT exchanged for an access token: the JWT's claims and
//! RSA signature are checked) and of the metadata server. Tokens live a few seconds, so a steady
//! load shows them refreshed in the background; a token endpoint that is down fails only the
//! providers that need it, with the cause named.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use common::fake::{Fake, Seen};
use common::*;
use serde_json::{json, Value};

const LIFETIME_S: u64 = 6;
const EMAIL: &str = "tollgate@proj.iam.gserviceaccount.com";

fn token_json(n: u32) -> String {
    json!({"access_token": format!("ya29.tok-{n}"), "expires_in": LIFETIME_S, "token_type": "Bearer"}).to_string()
}

/// An RSA key made for this test (`openssl genrsa`) and its public half.
fn keypair(dir: &Path) -> (String, std::path::PathBuf) {
    let key = dir.join("key.pem");
    let public = dir.join("public.pem");
    let ok = std::process::Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&key)
        .arg("2048")
        .output()
        .expect("openssl")
        .status
        .success();
    assert!(ok, "openssl genrsa");
    let ok = std::process::Command::new("openssl")
        .args(["rsa", "-pubout", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&public)
        .output()
        .unwrap()
        .status
        .success();
    assert!(ok, "openssl rsa -pubout");
    (std::fs::read_to_string(&key).unwrap(), public)
}

/// Google's token endpoint: a JWT-bearer grant whose assertion is signed by the account's key
/// and claims the cloud-platform scope for this endpoint.
fn token_endpoint(public: std::path::PathBuf, dir: std::path::PathBuf) -> Fake {
    Fake::start(Arc::new(move |r: &Seen, n| {
        let form: Vec<(String, String)> = url::form_urlencoded::parse(r.body.as_bytes()).into_owned().collect();
        let field = |k: &str| {
            form.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        if field("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
            return (400, r#"{"error":"unsupported_grant_type"}"#.into());
        }
        let jwt = field("assertion");
        let parts: Vec<&str> = jwt.split('.').collect();
        if parts.len() != 3 {
            return (400, r#"{"error":"invalid_grant"}"#.into());
        }
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let decode = |p: &str| b64.decode(p.trim_end_matches('=')).unwrap_or_default();
        let claims: Value = serde_json::from_slice(&decode(parts[1])).unwrap_or_default();
        let scoped = claims["scope"] == "https://www.googleapis.com/auth/cloud-platform";
        if claims["iss"] != EMAIL || !scoped || !claims["aud"].as_str().unwrap_or("").ends_with("/token") {
            return (400, format!(r#"{{"error":"invalid_grant","claims":{claims}}}"#));
        }
        // The signature, checked with the public key.
        let signed = dir.join(format!("signed-{n}"));
        let sig = dir.join(format!("sig-{n}"));
        std::fs::write(&signed, format!("{}.{}", parts[0], parts[1])).unwrap();
        std::fs::write(&sig, decode(parts[2])).unwrap();
        let verified = std::process::Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(&public)
            .arg("-signature")
            .arg(&sig)
            .arg(&signed)
            .output()
            .is_ok_and(|o| o.status.success());
        if !verified {
            return (
                400,
                r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#.into(),
            );
        }
        (200, token_json(n))
    }))
}

fn metadata_server() -> Fake {
    Fake::start(Arc::new(|r: &Seen, n| {
        let flavored = r.headers.iter().any(|(k, v)| k == "metadata-flavor" && v == "Google");
        match (r.path.as_str(), flavored) {
            ("/computeMetadata/v1/instance/service-accounts/default/token", true) => (200, token_json(n)),
            _ => (403, String::new()),
        }
    }))
}

fn service_account(dir: &Path, token_uri: &str) -> std::path::PathBuf {
    let (key, _) = keypair(dir);
    let file = dir.join("sa.json");
    let sa = json!({"type": "service_account", "project_id": "proj", "private_key_id": "k1",
        "private_key": key, "client_email": EMAIL, "client_id": "1", "token_uri": token_uri});
    std::fs::write(&file, sa.to_string()).unwrap();
    file
}

fn config(mock: &Mock, credentials: &str) -> String {
    let base = format!("http://{}", mock.addr);
    format!(
        "routing:\n  retries: 0\nproviders:\n  vertex:\n    kind: vertex\n    base_url: \"{base}\"\n    vertex_project: proj\n    vertex_region: us-central1\n    google_credentials: \"{credentials}\"\n  vertex-claude:\n    kind: vertex_anthropic\n    base_url: \"{base}\"\n    vertex_project: proj\n    vertex_region: us-east5\n    google_credentials: \"{credentials}\"\n{}models:\n  gemini:\n    targets: [ {{ provider: vertex, model: gemini-2.5-flash }} ]\n  claude:\n    targets: [ {{ provider: vertex-claude, model: claude-sonnet-4-5@20250929 }} ]\n  gpt:\n    targets: [ {{ provider: oai, model: mock-gpt }} ]\n",
        mock_provider("oai", &mock.base_url(), ""),
    )
}

fn ask(gw: &Gateway, model: &str, stream: bool) -> Resp {
    gw.chat(&json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "Hi"}]}))
}

fn bearer_tokens(mock: &Mock) -> Vec<String> {
    mock.requests()
        .iter()
        .filter_map(|r| r["headers"]["authorization"].as_str().map(str::to_string))
        .filter(|t| t.starts_with("Bearer ya29."))
        .collect()
}

fn wait_for_token(gw: &Gateway) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    while std::time::Instant::now() < deadline {
        let r = ask(gw, "gemini", false);
        if r.status == 200 {
            return;
        }
        last = r.body;
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no token within 20 s; the last answer: {last}");
}

#[test]
fn gemini_and_claude_on_vertex_with_a_service_account_and_tokens_refreshed_under_load() {
    let mock = Mock::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    // The endpoint checks signatures with the public half of the key the account file holds.
    let endpoint = token_endpoint(dir.path().join("public.pem"), dir.path().to_path_buf());
    let sa = service_account(dir.path(), &format!("{}/token", endpoint.url()));
    let gw = Gateway::start("", &config(&mock, &sa.display().to_string()));
    wait_for_token(&gw);

    let r = ask(&gw, "gemini", false);
    assert_eq!(r.status, 200, "{}", r.body);
    let path = mock.requests().last().unwrap()["path"].as_str().unwrap().to_string();
    assert_eq!(
        path,
        "/v1/projects/proj/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent"
    );
    for stream in [false, true] {
        let r = ask(&gw, "claude", stream);
        assert_eq!(r.status, 200, "{}", r.body);
        let last = mock.requests().last().unwrap().clone();
        let method = if stream { "streamRawPredict" } else { "rawPredict" };
        assert_eq!(
            last["path"],
            format!(
                "/v1/projects/proj/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:{method}"
            )
        );
    }

    // Steady load across several token lifetimes: every request served, tokens rotated, fetched
    // about once per half-lifetime (not per request).
    let until = std::time::Instant::now() + Duration::from_secs(8);
    let mut sent = 0;
    while std::time::Instant::now() < until {
        assert_eq!(ask(&gw, "gemini", false).status, 200);
        sent += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    let mut tokens = bearer_tokens(&mock);
    tokens.dedup();
    assert!(tokens.len() >= 2, "rotated: {tokens:?}");
    let issued = endpoint.issued() as usize;
    assert!((2..=8).contains(&issued), "{issued} token fetches for {sent} requests");
}

#[test]
fn the_metadata_server_serves_tokens_and_a_dead_token_endpoint_fails_only_its_providers() {
    let mock = Mock::start(&[]);
    let md = metadata_server();
    let gw = Gateway::start_env(
        "",
        &config(&mock, "metadata"),
        &[("GCE_METADATA_HOST", &format!("127.0.0.1:{}", md.port))],
    );
    wait_for_token(&gw);
    assert!(bearer_tokens(&mock).last().unwrap().starts_with("Bearer ya29.tok-"));

    // A service account whose token endpoint is down.
    let mock = Mock::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let sa = service_account(dir.path(), &format!("http://127.0.0.1:{}/token", free_port()));
    let gw = Gateway::start("", &config(&mock, &sa.display().to_string()));
    let r = ask(&gw, "gemini", false);
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "credentials_unavailable");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("service account"),
        "{}",
        r.body
    );
    assert_eq!(ask(&gw, "gpt", false).status, 200, "other providers are unaffected");
}
