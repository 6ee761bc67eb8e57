//! Virtual keys on the real gateway: keys from the config and from the admin API, both header
//! styles, 401/403 errors, attribution in the usage record, and a revocation on one node that
//! stops the key on another node within a second.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const ADMIN: &str = "admin-token-for-auth-tests";

fn config(mock: &Mock, ledger: &str, required: bool) -> String {
    config_with(mock, ledger, required, "")
}

/// `auth_extra`: more lines of the `auth:` section.
fn config_with(mock: &Mock, ledger: &str, required: bool, auth_extra: &str) -> String {
    format!(
        "providers:\n{}models:\n  m:\n    targets: [ {{ provider: mock, model: up-m }} ]\n  other:\n    targets: [ {{ provider: mock, model: up-o }} ]\n\
auth:\n  required: {required}\n  key_sync: 200ms\n{auth_extra}\
keys:\n  - id: app-a\n    key: \"${{APP_A_KEY}}\"\n    team: search\n    tier: pro\n    models: [\"m\"]\n\
usage:\n  ledger: \"{ledger}\"\n\
admin:\n  token: \"${{TOLLGATE_ADMIN_TOKEN}}\"\n",
        mock_provider("mock", &mock.base_url(), "")
    )
}

fn chat_with(gw: &Gateway, model: &str, headers: &[(&str, &str)]) -> Resp {
    post(
        &gw.url("/v1/chat/completions"),
        &json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string(),
        headers,
    )
}

fn admin(gw: &Gateway, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let req = ureq::request(method, &gw.admin_url(path)).set("authorization", &format!("Bearer {ADMIN}"));
    let r = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    let r = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    (r.status(), r.into_json().unwrap())
}

fn env() -> Vec<(&'static str, &'static str)> {
    vec![("APP_A_KEY", "tg-app-a-secret"), ("TOLLGATE_ADMIN_TOKEN", ADMIN)]
}

#[test]
fn keys_authenticate_attribute_and_restrict_models() {
    let mock = Mock::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let ledger = format!("sqlite:{}", dir.path().join("spend.db").display());
    let gw = Gateway::start_env("", &config(&mock, &ledger, true), &env());

    let none = chat_with(&gw, "m", &[]);
    assert_eq!(none.status, 401);
    assert_eq!(none.json()["error"]["code"], "invalid_api_key");
    let wrong = chat_with(&gw, "m", &[("authorization", "Bearer tg-not-a-key")]);
    assert_eq!(wrong.status, 401);
    assert!(!wrong.body.contains("tg-not-a-key"), "the key is never echoed");
    // With keys required, the SDK placeholder is just another unknown key.
    assert_eq!(chat_with(&gw, "m", &[("authorization", "Bearer unused")]).status, 401);
    assert_eq!(
        get(&gw.url("/v1/models")).status,
        401,
        "every data-plane route needs the key"
    );

    let ok = chat_with(&gw, "m", &[("authorization", "Bearer tg-app-a-secret")]);
    assert_eq!(ok.status, 200, "{}", ok.body);
    let anthropic_style = chat_with(&gw, "m", &[("x-api-key", "tg-app-a-secret")]);
    assert_eq!(anthropic_style.status, 200);
    let denied = chat_with(&gw, "other", &[("authorization", "Bearer tg-app-a-secret")]);
    assert_eq!(denied.status, 403);
    assert_eq!(denied.json()["error"]["code"], "model_not_allowed");
    assert!(denied.json()["error"]["message"].as_str().unwrap().contains("other"));
    // The provider never sees the client's key.
    let sent = mock.requests();
    assert!(sent
        .iter()
        .all(|r| r["headers"]["authorization"] == "Bearer key-of-mock"));

    // The record carries the key's id and team, never its secret.
    let id = ok.header("x-request-id").unwrap().to_string();
    wait_until("the access log line", Duration::from_secs(5), || {
        gw.proc.log_text().contains(&id)
    });
    let log = gw.proc.log_text();
    let line: Value = log
        .lines()
        .filter(|l| l.contains(&id) && l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .next()
        .unwrap();
    assert_eq!(line["key_id"], "app-a");
    assert_eq!(line["team"], "search");
    assert_eq!(line["tier"], "pro");
    assert!(!log.contains("tg-app-a-secret"), "a secret reached the log");

    // Config keys are read-only through the API; an API key is shown once and works at once.
    let (status, _) = admin(&gw, "DELETE", "/admin/keys/app-a", None);
    assert_eq!(status, 409);
    let (status, created) = admin(
        &gw,
        "POST",
        "/admin/keys",
        Some(json!({"team": "ads", "models": ["other"]})),
    );
    assert_eq!(status, 201, "{created}");
    let (status, bad) = admin(
        &gw,
        "POST",
        "/admin/keys",
        Some(json!({"team": "ads", "limits": {"rpm": "fast"}})),
    );
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["error"]["param"], "limits");
    let secret = created["secret"].as_str().unwrap().to_string();
    let key_id = created["id"].as_str().unwrap().to_string();
    let (_, listed) = admin(&gw, "GET", "/admin/keys", None);
    assert!(!listed.to_string().contains(&secret), "listing never shows a secret");
    let r = chat_with(&gw, "other", &[("authorization", &format!("Bearer {secret}"))]);
    assert_eq!(r.status, 200, "{}", r.body);
    let (status, _) = admin(&gw, "DELETE", &format!("/admin/keys/{key_id}"), None);
    assert_eq!(status, 200);
    let r = chat_with(&gw, "other", &[("authorization", &format!("Bearer {secret}"))]);
    assert_eq!(r.status, 401);
}

#[test]
fn without_required_auth_only_no_key_or_a_placeholder_is_anonymous() {
    let mock = Mock::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let ledger = format!("sqlite:{}", dir.path().join("spend.db").display());
    let gw = Gateway::start_env("", &config(&mock, &ledger, false), &env());
    assert_eq!(chat_with(&gw, "m", &[]).status, 200);
    // The README's SDK example sends `unused`: the default placeholder, in either header.
    assert_eq!(chat_with(&gw, "m", &[("authorization", "Bearer unused")]).status, 200);
    assert_eq!(chat_with(&gw, "m", &[("x-api-key", "unused")]).status, 200);
    // A key the gateway does not know (a typo of a real one, a provider key) would lose its
    // limits and attribution if served: it is refused.
    for key in [
        "Bearer sk-some-sdk-placeholder",
        "Bearer tg-app-a-secreT",
        "Bearer unused2",
    ] {
        let r = chat_with(&gw, "m", &[("authorization", key)]);
        assert_eq!(r.status, 401, "{key}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], "invalid_api_key");
    }
    assert_eq!(
        chat_with(&gw, "other", &[("authorization", "Bearer tg-app-a-secret")]).status,
        403,
        "a known key keeps its restrictions"
    );
    assert_eq!(mock.requests().len(), 3, "only the anonymous requests were served");

    // The operator names the placeholders: then only those are served anonymously.
    let gw = Gateway::start_env(
        "",
        &config_with(&mock, &ledger, false, "  anonymous_keys: [sk-none]\n"),
        &env(),
    );
    assert_eq!(chat_with(&gw, "m", &[("authorization", "Bearer sk-none")]).status, 200);
    assert_eq!(chat_with(&gw, "m", &[("authorization", "Bearer unused")]).status, 401);
    assert_eq!(
        chat_with(&gw, "m", &[("authorization", "Bearer tg-app-a-secret")]).status,
        200
    );
}

#[test]
fn a_revocation_on_one_node_stops_the_key_on_another_within_a_second() {
    let mock = Mock::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let ledger = format!("sqlite:{}", dir.path().join("shared.db").display());
    let a = Gateway::start_env("", &config(&mock, &ledger, true), &env());
    let b = Gateway::start_env("", &config(&mock, &ledger, true), &env());
    let (status, created) = admin(&a, "POST", "/admin/keys", Some(json!({"team": "ads"})));
    assert_eq!(status, 201);
    let bearer = format!("Bearer {}", created["secret"].as_str().unwrap());
    let auth = [("authorization", bearer.as_str())];
    wait_until("node b to learn the new key", Duration::from_secs(2), || {
        chat_with(&b, "m", &auth).status == 200
    });
    let (status, _) = admin(
        &a,
        "DELETE",
        &format!("/admin/keys/{}", created["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(status, 200);
    let revoked_at = Instant::now();
    assert_eq!(chat_with(&a, "m", &auth).status, 401, "the revoking node stops at once");
    wait_until("node b to stop the key", Duration::from_secs(3), || {
        chat_with(&b, "m", &auth).status == 401
    });
    assert!(
        revoked_at.elapsed() < Duration::from_secs(1),
        "node b took {:?}",
        revoked_at.elapsed()
    );
}

#[test]
fn a_refused_key_is_answered_in_the_shape_of_the_clients_api() {
    let mock = Mock::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let ledger = format!("sqlite:{}", dir.path().join("spend.db").display());
    let gw = Gateway::start_env("", &config(&mock, &ledger, true), &env());
    let body = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}).to_string();
    for path in ["/v1/messages", "/v1/messages/count_tokens"] {
        for headers in [vec![], vec![("x-api-key", "sk-ant-not-known")]] {
            let r = post(&gw.url(path), &body, &headers);
            assert_eq!(r.status, 401, "{path}: {}", r.body);
            let v = r.json();
            assert_eq!(v["type"], "error", "{path}: Anthropic's shape: {v}");
            assert_eq!(v["error"]["type"], "authentication_error", "{path}: {v}");
        }
    }
    let r = get_with(&gw.url("/v1/models"), &[("anthropic-version", "2023-06-01")]);
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["type"], "error");
    // The OpenAI endpoints keep OpenAI's shape.
    let r = chat_with(&gw, "m", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "invalid_api_key");
    assert!(mock.requests().is_empty());
}

/// The admin API answers only on the admin listener and only with its token: without it (or
/// with a wrong one, or a virtual key) 401; on the data-plane listener, even with the token, it
/// does not exist. Neither answer echoes what was presented.
#[test]
fn the_admin_api_needs_its_token_and_is_not_on_the_data_plane() {
    let mock = Mock::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let ledger = format!("sqlite:{}", dir.path().join("spend.db").display());
    let gw = Gateway::start_env("", &config(&mock, &ledger, true), &env());
    let spend = gw.admin_url("/admin/spend");
    assert_eq!(admin(&gw, "GET", "/admin/spend", None).0, 200);
    for presented in [None, Some("Bearer wrong-token"), Some("Bearer tg-app-a-secret")] {
        let headers: Vec<(&str, &str)> = presented.iter().map(|p| ("authorization", *p)).collect();
        let r = get_with(&spend, &headers);
        assert_eq!(r.status, 401, "{presented:?}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], "invalid_admin_token");
        assert!(!r.body.contains("wrong-token") && !r.body.contains("tg-app-a-secret"));
    }
    // On the data plane the admin token is no credential at all, and with a virtual key the path
    // does not exist.
    let with_token = get_with(
        &gw.url("/admin/spend"),
        &[("authorization", &format!("Bearer {ADMIN}"))],
    );
    assert_eq!(with_token.status, 401, "{}", with_token.body);
    assert_eq!(with_token.json()["error"]["code"], "invalid_api_key");
    assert!(!with_token.body.contains(ADMIN));
    let with_key = get_with(&gw.url("/admin/spend"), &[("authorization", "Bearer tg-app-a-secret")]);
    assert_eq!(with_key.status, 404, "{}", with_key.body);
    assert!(!gw.proc.log_text().contains(ADMIN), "the admin token reached the log");
}
