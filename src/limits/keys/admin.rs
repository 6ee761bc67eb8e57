//! `/admin/keys`: the virtual keys admin API, as a pure function of (method, path, body) so it
//! is testable without a socket. The admin listener checks the admin token before calling it,
//! and should call it off the async workers (`spawn_blocking`): writes wait on the store.
//!
//! ```text
//! POST   /admin/keys               KeySpec            → 201 key + "secret" (shown once)
//! GET    /admin/keys                                  → 200 {"object":"list","data":[key..]}
//! GET    /admin/keys/{id}                             → 200 key
//! PATCH  /admin/keys/{id}          KeyPatch           → 200 key
//! DELETE /admin/keys/{id}                             → 200 key (revoked: true)
//! POST   /admin/keys/{id}/rotate   {"grace": "10m"}   → 200 key + "secret"
//! ```
//! Errors are OpenAI-shaped: 400 (the body, naming the field), 404, 405, 409 (duplicate id,
//! read-only config key, revoked key), 503 (no store, or the store is down).

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{AdminError, KeyPatch, KeySpec, KeyStore, VirtualKey};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    /// humantime (`10m`, `1h 30m`); absent means the old secret stops at once.
    #[serde(default)]
    grace: Option<String>,
}

/// Serves one admin request under `/admin/keys`; returns the status and the JSON body.
pub fn handle(store: &KeyStore, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let Some(rest) = path.strip_prefix("/admin/keys") else {
        return unknown(path);
    };
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    if !rest.is_empty() && !rest.starts_with('/') {
        return unknown(path);
    }
    let method = method.to_ascii_uppercase();
    match segments.as_slice() {
        [] => match method.as_str() {
            "POST" => reply(
                parse::<KeySpec>(body).and_then(|spec| store.create(spec)),
                |(key, secret)| (201, with_secret(&key, &secret)),
            ),
            "GET" => reply(store.list(), |keys| {
                let data: Vec<Value> = keys.iter().map(VirtualKey::to_json).collect();
                (200, json!({"object": "list", "data": data}))
            }),
            _ => not_allowed("GET, POST"),
        },
        [id] => match method.as_str() {
            "GET" => reply(store.get(id), |k| (200, k.to_json())),
            "PATCH" => reply(parse::<KeyPatch>(body).and_then(|p| store.update(id, p)), |k| {
                (200, k.to_json())
            }),
            "DELETE" => reply(store.revoke(id), |k| (200, k.to_json())),
            _ => not_allowed("GET, PATCH, DELETE"),
        },
        [id, "rotate"] => match method.as_str() {
            "POST" => reply(
                parse::<RotateBody>(body)
                    .and_then(|b| grace(b.grace.as_deref()))
                    .and_then(|g| store.rotate(id, g)),
                |(key, secret)| (200, with_secret(&key, &secret)),
            ),
            _ => not_allowed("POST"),
        },
        _ => unknown(path),
    }
}

fn reply<T>(r: Result<T, AdminError>, ok: impl FnOnce(T) -> (u16, Value)) -> (u16, Value) {
    match r {
        Ok(v) => ok(v),
        Err(e) => (e.status(), e.body()),
    }
}

fn with_secret(key: &VirtualKey, secret: &str) -> Value {
    let mut v = key.to_json();
    if let Some(o) = v.as_object_mut() {
        o.insert("secret".into(), Value::String(secret.to_string()));
    }
    v
}

fn error(status: u16, kind: &str, code: &str, message: &str) -> (u16, Value) {
    (
        status,
        json!({"error": {"message": message, "type": kind, "param": null, "code": code}}),
    )
}

fn unknown(path: &str) -> (u16, Value) {
    error(
        404,
        "not_found_error",
        "unknown_url",
        &format!("unknown admin path {path}"),
    )
}

fn not_allowed(allowed: &str) -> (u16, Value) {
    error(
        405,
        "invalid_request_error",
        "method_not_allowed",
        &format!("method not allowed here; use {allowed}"),
    )
}

fn grace(s: Option<&str>) -> Result<Duration, AdminError> {
    match s {
        None => Ok(Duration::ZERO),
        Some(s) => humantime::parse_duration(s.trim()).map_err(|e| AdminError::InvalidBody {
            param: Some("grace".into()),
            message: format!("grace: {e} (use a duration such as \"10m\" or \"1h\")"),
        }),
    }
}

/// Parses a JSON body (empty means `{}`); an error names the field at fault.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, AdminError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return AdminError::InvalidBody {
                param: None,
                message: format!("the body is not valid JSON: {inner}"),
            };
        }
        let param = match path.as_str() {
            "." | "" => unknown_field(&inner.to_string()),
            p => Some(p.to_string()),
        };
        let message = match &param {
            Some(p) => format!("invalid body at {p}: {inner}"),
            None => format!("invalid body: {inner}"),
        };
        AdminError::InvalidBody { param, message }
    })
}

/// serde's "unknown field `x`, expected …" names the field in its message only.
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next().map(str::to_string)
}
