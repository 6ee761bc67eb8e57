//! Virtual keys: the gateway keys applications authenticate with (provider keys never leave the
//! gateway). Keys come from the config file (read-only, never stored) and from the admin API
//! (`admin`), which persists them in the spend ledger's database (`virtual_keys`, schema version 2).
//!
//! Invariants:
//! - A secret (`tg-` + 32 random bytes, base64url) is shown once, by `create`/`rotate`; only its
//!   SHA-256 (hex in the store, bytes in memory) is kept. No secret or hash is logged or listed.
//! - The request path (`KeyRing::lookup`) hashes the presented secret once, probes an immutable
//!   map loaded from an `ArcSwap`, and compares the stored and computed hashes in constant time:
//!   no lock, no allocation, no I/O. Expiry and rotation grace are checked against the caller's
//!   `now_ms`.
//! - Each `KeyStore` owns one thread that owns the database connection: it runs the admin writes
//!   (so a write is visible on its own node before the call returns) and polls rows changed since
//!   the last `updated_ms` it saw every `poll` (500 ms by default), so a revocation reaches every
//!   node within one poll. A store that is down leaves the last good ring in place (logged once);
//!   admin writes then fail with 503.
//! - Ids are unique across config and store keys; a store key whose id a config key took is
//!   left out of the ring (the config wins).

pub mod admin;
mod db;
mod ring;
mod store;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::routing::routes::Glob;
use crate::time::{format_rfc3339, parse_time};

pub use ring::KeyRing;
pub use store::{KeyStore, LimitsCheck, DEFAULT_POLL};

/// What a client may send (API) or the config may say about a key. Used for `POST /admin/keys`
/// bodies and config entries (which add the secret: `config::raw::RawKey`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    /// Config: required (the stable id). API: generated when absent. `[A-Za-z0-9_-]{1,64}`.
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub tier: Option<String>,
    /// Allowed model aliases, `*` globs; empty allows every model.
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// RFC 3339 (also a date or Unix seconds: see `parse_time`).
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Opaque here (the limiter parses it): an object or null.
    #[serde(default)]
    pub limits: serde_json::Value,
}

/// `PATCH /admin/keys/{id}`: an absent field is unchanged; `null` clears `name`, `tier`,
/// `expires_at` and `limits`; `models` and `metadata` replace the whole list/map (`[]`/`{}`
/// clears). `id`, `team` and `user` cannot change (spend is attributed by them).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPatch {
    #[serde(default, deserialize_with = "present")]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub tier: Option<Option<String>>,
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "present")]
    pub expires_at: Option<Option<String>>,
    /// `null` clears (no limits of its own).
    #[serde(default, deserialize_with = "present")]
    pub limits: Option<serde_json::Value>,
}

/// A field that is present (even as `null`) is `Some`.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeySource {
    Config,
    Api,
}

/// A key as the request path sees it. Holds no secret and no hash.
#[derive(Debug, Clone)]
pub struct VirtualKey {
    pub id: String,
    pub name: Option<String>,
    pub team: Option<String>,
    pub user: Option<String>,
    pub tier: Option<String>,
    /// As given; `globs` is the compiled form.
    pub models: Vec<String>,
    globs: Vec<Glob>,
    pub metadata: BTreeMap<String, String>,
    pub expires_ms: Option<i64>,
    pub limits: serde_json::Value,
    /// `limits` parsed, once per version of the key (`None`: null, no limits of its own).
    pub parsed_limits: Option<std::sync::Arc<crate::limits::limiter::Limits>>,
    pub created_ms: i64,
    /// Changes with every write: `(id, updated_ms)` identifies a version (to cache parsed limits).
    pub updated_ms: i64,
    pub revoked: bool,
    pub revoked_ms: Option<i64>,
    /// After a rotation with a grace: the previous secret works until then.
    pub prev_valid_until_ms: Option<i64>,
    pub source: KeySource,
}

impl VirtualKey {
    /// Parses a key's `limits` (an object, or null for none).
    pub(crate) fn parse_limits(
        limits: &serde_json::Value,
    ) -> Result<Option<std::sync::Arc<crate::limits::limiter::Limits>>, String> {
        if limits.is_null() {
            return Ok(None);
        }
        crate::limits::limiter::Limits::deserialize(limits)
            .map(|l| Some(std::sync::Arc::new(l)))
            .map_err(|e| format!("limits: {e}"))
    }

    /// May this key call `alias`? An empty list allows every model.
    pub fn allows_model(&self, alias: &str) -> bool {
        self.globs.is_empty() || self.globs.iter().any(|g| g.matches(alias))
    }

    /// The admin API's view: never a secret or a hash.
    pub fn to_json(&self) -> serde_json::Value {
        let time = |ms: Option<i64>| ms.map(format_rfc3339);
        json!({
            "id": self.id,
            "object": "virtual_key",
            "name": self.name,
            "team": self.team,
            "user": self.user,
            "tier": self.tier,
            "models": self.models,
            "metadata": self.metadata,
            "expires_at": time(self.expires_ms),
            "limits": self.limits,
            "created_at": format_rfc3339(self.created_ms),
            "updated_at": format_rfc3339(self.updated_ms),
            "revoked": self.revoked,
            "revoked_at": time(self.revoked_ms),
            "previous_secret_valid_until": time(self.prev_valid_until_ms),
            "source": self.source,
        })
    }
}

/// Why a presented key was refused. Every variant is a 401 `invalid_api_key`; the message never
/// echoes the key (and says "revoked"/"expired" only to whoever holds that key's secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("invalid API key")]
    Unknown,
    #[error("the API key has been revoked")]
    Revoked,
    #[error("the API key has expired")]
    Expired,
}

impl KeyError {
    pub fn status(&self) -> u16 {
        401
    }

    pub fn code(&self) -> &'static str {
        "invalid_api_key"
    }

    /// A low-cardinality label (metrics).
    pub fn reason(&self) -> &'static str {
        match self {
            KeyError::Unknown => "unknown",
            KeyError::Revoked => "revoked",
            KeyError::Expired => "expired",
        }
    }
}

/// The presented secret: `Authorization: Bearer …` first, then `x-api-key` (Anthropic clients).
pub fn presented_key<'a>(authorization: Option<&'a str>, x_api_key: Option<&'a str>) -> Option<&'a str> {
    let bearer = authorization.and_then(|a| {
        let a = a.trim();
        let (scheme, rest) = a.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
    });
    bearer.or_else(|| x_api_key.map(str::trim)).filter(|k| !k.is_empty())
}

/// Is `presented` one of the placeholders served anonymously (`auth.anonymous_keys`)? Asked only
/// after the key lookup found no key, so it cannot change how a real key is answered; the bytes
/// are still compared without an early exit, so the answer's timing says nothing about how much
/// of a placeholder a guess matched.
pub fn is_placeholder(presented: &str, placeholders: &[String]) -> bool {
    let p = presented.as_bytes();
    placeholders.iter().fold(false, |found, k| {
        let k = k.as_bytes();
        let same = k.len() == p.len() && std::hint::black_box(k.iter().zip(p).fold(0u8, |d, (a, b)| d | (a ^ b))) == 0;
        found | same
    })
}

/// Admin API errors. Mapped to HTTP in one place (`status`, `error_type`, `code`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    #[error("{message}")]
    InvalidBody { param: Option<String>, message: String },
    #[error("no key with id {0:?}")]
    NotFound(String),
    #[error("a key with id {0:?} already exists")]
    Duplicate(String),
    #[error("key {0:?} is defined in the config file and is read-only through the API")]
    ReadOnly(String),
    #[error("key {0:?} is revoked")]
    Revoked(String),
    #[error("no key store is configured (keys are stored in the spend ledger's database: configure the ledger URL)")]
    NoStore,
    #[error("the key store is unavailable: {0}")]
    Unavailable(String),
    #[error("key store error: {0}")]
    Internal(String),
}

impl AdminError {
    fn invalid(param: &str, message: impl Into<String>) -> AdminError {
        AdminError::InvalidBody {
            param: Some(param.to_string()),
            message: message.into(),
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            AdminError::InvalidBody { .. } => 400,
            AdminError::NotFound(_) => 404,
            AdminError::Duplicate(_) | AdminError::ReadOnly(_) | AdminError::Revoked(_) => 409,
            AdminError::Internal(_) => 500,
            AdminError::NoStore | AdminError::Unavailable(_) => 503,
        }
    }

    pub fn error_type(&self) -> &'static str {
        match self {
            AdminError::InvalidBody { .. }
            | AdminError::Duplicate(_)
            | AdminError::ReadOnly(_)
            | AdminError::Revoked(_) => "invalid_request_error",
            AdminError::NotFound(_) => "not_found_error",
            AdminError::NoStore | AdminError::Unavailable(_) | AdminError::Internal(_) => "api_error",
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AdminError::InvalidBody { .. } => "invalid_request",
            AdminError::NotFound(_) => "key_not_found",
            AdminError::Duplicate(_) => "duplicate_key",
            AdminError::ReadOnly(_) => "read_only_key",
            AdminError::Revoked(_) => "key_revoked",
            AdminError::NoStore => "key_store_not_configured",
            AdminError::Unavailable(_) => "key_store_unavailable",
            AdminError::Internal(_) => "key_store_error",
        }
    }

    /// The OpenAI-shaped body.
    pub fn body(&self) -> serde_json::Value {
        let param = match self {
            AdminError::InvalidBody { param, .. } => param.clone(),
            _ => None,
        };
        json!({"error": {"message": self.to_string(), "type": self.error_type(), "param": param, "code": self.code()}})
    }
}

/// `tg-` + 32 random bytes (thread RNG: ChaCha, seeded from the OS) in base64url, no padding.
pub(crate) fn new_secret() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("tg-{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// `key_` + 12 random hex characters.
pub(crate) fn new_id() -> String {
    let mut bytes = [0u8; 6];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("key_{}", hex::encode(bytes))
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

const MAX_TEXT: usize = 256;
const MAX_MODELS: usize = 256;
const MAX_METADATA: usize = 64;

fn check_text(param: &str, v: &Option<String>) -> Result<(), AdminError> {
    match v {
        Some(s) if s.trim().is_empty() => Err(AdminError::invalid(param, format!("{param} must not be empty"))),
        Some(s) if s.len() > MAX_TEXT => Err(AdminError::invalid(
            param,
            format!("{param} is longer than {MAX_TEXT} bytes"),
        )),
        Some(_) | None => Ok(()),
    }
}

fn check_models(models: &[String]) -> Result<Vec<Glob>, AdminError> {
    if models.len() > MAX_MODELS {
        return Err(AdminError::invalid("models", format!("at most {MAX_MODELS} models")));
    }
    models
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if m.trim().is_empty() || m.len() > MAX_TEXT {
                Err(AdminError::invalid(
                    &format!("models[{i}]"),
                    format!("models[{i}] must be a model alias or a `*` pattern of 1 to {MAX_TEXT} bytes"),
                ))
            } else {
                Ok(Glob::new(m))
            }
        })
        .collect()
}

fn check_metadata(metadata: &BTreeMap<String, String>) -> Result<(), AdminError> {
    if metadata.len() > MAX_METADATA {
        return Err(AdminError::invalid(
            "metadata",
            format!("at most {MAX_METADATA} metadata tags"),
        ));
    }
    for (k, v) in metadata {
        if k.is_empty() || k.len() > MAX_TEXT || v.len() > MAX_TEXT {
            return Err(AdminError::invalid(
                &format!("metadata.{k}"),
                format!("metadata keys must be 1 to {MAX_TEXT} bytes and values at most {MAX_TEXT}"),
            ));
        }
    }
    Ok(())
}

fn check_expiry(v: &Option<String>) -> Result<Option<i64>, AdminError> {
    v.as_deref()
        .map(|s| parse_time(s).map_err(|e| AdminError::invalid("expires_at", format!("expires_at: {e}"))))
        .transpose()
}

fn check_limits(v: &serde_json::Value) -> Result<(), AdminError> {
    match v {
        serde_json::Value::Object(_) | serde_json::Value::Null => Ok(()),
        serde_json::Value::Bool(_)
        | serde_json::Value::Number(_)
        | serde_json::Value::String(_)
        | serde_json::Value::Array(_) => Err(AdminError::invalid("limits", "limits must be an object or null")),
    }
}

/// A spec that passed validation; the id is still optional (API keys get one generated).
pub(crate) struct Checked {
    pub globs: Vec<Glob>,
    pub expires_ms: Option<i64>,
}

/// Checks every field of a spec (the first problem, naming its field).
pub(crate) fn check_spec(spec: &KeySpec) -> Result<Checked, AdminError> {
    if let Some(id) = &spec.id {
        if !valid_id(id) {
            return Err(AdminError::invalid(
                "id",
                "id must be 1 to 64 characters of [A-Za-z0-9_-]",
            ));
        }
    }
    check_text("name", &spec.name)?;
    check_text("team", &spec.team)?;
    check_text("user", &spec.user)?;
    check_text("tier", &spec.tier)?;
    let globs = check_models(&spec.models)?;
    check_metadata(&spec.metadata)?;
    let expires_ms = check_expiry(&spec.expires_at)?;
    check_limits(&spec.limits)?;
    Ok(Checked { globs, expires_ms })
}

impl KeyPatch {
    /// Checks the fields that are present.
    pub(crate) fn check(&self) -> Result<(), AdminError> {
        if let Some(n) = &self.name {
            check_text("name", n)?;
        }
        if let Some(t) = &self.tier {
            check_text("tier", t)?;
        }
        if let Some(m) = &self.models {
            check_models(m)?;
        }
        if let Some(m) = &self.metadata {
            check_metadata(m)?;
        }
        if let Some(e) = &self.expires_at {
            check_expiry(e)?;
        }
        if let Some(l) = &self.limits {
            check_limits(l)?;
        }
        Ok(())
    }
}
