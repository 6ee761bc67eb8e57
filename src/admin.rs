//! The admin listener (default `127.0.0.1:9090`, never the data-plane port): `/health` (the
//! process is up), `/ready` (a config is loaded and at least one provider is enabled), `/metrics`
//! (Prometheus text format), `/breakers`, and the token-protected `/admin/*` API
//! (`/admin/spend`).

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::json;

use crate::config::ConfigStore;
use crate::telemetry::sinks::Sinks;
use crate::telemetry::Metrics;
use crate::time::parse_time;
use crate::usage::ledger::{GroupBy, SpendQuery};

pub struct AdminApp {
    pub config: Arc<ConfigStore>,
    /// The targets' live state (breakers).
    pub routing: Arc<crate::routing::live::Registry>,
    pub metrics: Arc<Metrics>,
    pub sinks: Sinks,
    pub keys: Arc<crate::limits::keys::KeyStore>,
    pub limiter: Arc<crate::limits::gate::Gate>,
    pub cache: Arc<crate::cache::Cache>,
}

/// Compares a presented bearer token with the configured one in time independent of where
/// they differ.
fn token_matches(expected: &str, presented: &str) -> bool {
    let (a, b) = (expected.as_bytes(), presented.as_bytes());
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

fn error_reply(status: StatusCode, code: &str, message: &str) -> Response<Vec<u8>> {
    let kind = match status {
        StatusCode::UNAUTHORIZED => "authentication_error",
        StatusCode::NOT_FOUND => "not_found_error",
        s if s.is_server_error() => "api_error",
        _ => "invalid_request_error",
    };
    json_reply(
        status,
        json!({"error": {"message": message, "type": kind, "param": null, "code": code}}),
    )
}

impl AdminApp {
    /// `/admin/*`: a bearer token from `admin.token` is required; without one configured the
    /// API is off.
    async fn admin_api(
        &self,
        method: &http::Method,
        path: &str,
        query: &str,
        auth: Option<&str>,
        body: Vec<u8>,
    ) -> Response<Vec<u8>> {
        let snap = self.config.current();
        let Some(token) = &snap.admin_token else {
            return error_reply(
                StatusCode::FORBIDDEN,
                "admin_api_disabled",
                "the admin API is disabled: set admin.token (e.g. ${TOLLGATE_ADMIN_TOKEN}) in the config",
            );
        };
        let presented = auth
            .and_then(|a| a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("bearer ")))
            .unwrap_or("");
        if !token_matches(token.expose(), presented.trim()) {
            return error_reply(
                StatusCode::UNAUTHORIZED,
                "invalid_admin_token",
                "a valid admin token is required (Authorization: Bearer …)",
            );
        }
        if path == "/admin/keys" || path.starts_with("/admin/keys/") {
            // Key writes wait on the key store's thread: off the event loop.
            let (keys, method, path) = (Arc::clone(&self.keys), method.to_string(), path.to_string());
            let answer =
                tokio::task::spawn_blocking(move || crate::limits::keys::admin::handle(&keys, &method, &path, &body))
                    .await;
            return match answer {
                Ok((status, v)) => json_reply(StatusCode::from_u16(status).unwrap_or(StatusCode::OK), v),
                Err(e) => error_reply(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e.to_string()),
            };
        }
        if path == "/admin/cache/purge" {
            if method != http::Method::POST {
                return error_reply(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "use POST");
            }
            return self.cache_purge(&body).await;
        }
        if method != http::Method::GET {
            return error_reply(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "use GET");
        }
        match path {
            "/admin/spend" => self.spend(query).await,
            "/admin/cache" => json_reply(StatusCode::OK, self.cache_stats()),
            _ => error_reply(
                StatusCode::NOT_FOUND,
                "unknown_url",
                &format!("unknown admin path {path}"),
            ),
        }
    }

    /// What the cache holds: entries, bytes, the bound, identical requests in flight.
    fn cache_stats(&self) -> serde_json::Value {
        let held = self.cache.store.stats();
        json!({
            "entries": held.entries,
            "bytes": held.bytes,
            "max_bytes": self.config.current().cache.max_bytes,
            "in_flight": self.cache.flights.in_flight(),
        })
    }

    /// Removes the entries one of `key` (hex), `tenant` (`team:NAME`, `key:ID`, `global`,
    /// `public`), `model` (the alias asked for) or `all: true` names.
    async fn cache_purge(&self, body: &[u8]) -> Response<Vec<u8>> {
        let what = match crate::cache::store::Purge::from_json(body) {
            Ok(p) => p,
            Err(e) => return error_reply(StatusCode::BAD_REQUEST, "invalid_purge", &e),
        };
        let before = self.cache.store.stats().entries;
        let shared = self.cache.purge(&what).await;
        let after = self.cache.store.stats();
        let removed = before.saturating_sub(after.entries);
        tracing::info!(purge = %what, removed, "cache purged");
        let mut answer =
            json!({"purged": what.to_string(), "removed": removed, "entries": after.entries, "bytes": after.bytes});
        match shared {
            Ok(None) => {}
            Ok(Some(n)) => answer["removed_shared"] = json!(n),
            Err(e) => {
                // This node's store is purged; the others' and Redis's are not.
                return error_reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "cache_backend_unavailable",
                    &format!("purged on this node only: {e}"),
                );
            }
        }
        json_reply(StatusCode::OK, answer)
    }

    async fn spend(&self, query: &str) -> Response<Vec<u8>> {
        let Some(reader) = self.sinks.spend.clone() else {
            return error_reply(
                StatusCode::NOT_FOUND,
                "ledger_off",
                "the spend ledger is off (usage.ledger: off)",
            );
        };
        let q = match spend_query(query, crate::time::unix_ms_i64()) {
            Ok(q) => q,
            Err(e) => return error_reply(StatusCode::BAD_REQUEST, "invalid_query", &e),
        };
        match tokio::task::spawn_blocking(move || reader.spend(&q)).await {
            Ok(Ok(report)) => match serde_json::to_vec(&report) {
                Ok(body) => reply(StatusCode::OK, "application/json", body),
                Err(e) => error_reply(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e.to_string()),
            },
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "spend query failed");
                error_reply(StatusCode::SERVICE_UNAVAILABLE, "ledger_unavailable", &e.to_string())
            }
            Err(e) => error_reply(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e.to_string()),
        }
    }
}

/// `from`, `to` (RFC 3339, a date, or Unix seconds; default: the last 24 hours) and `group_by`
/// (comma-separated dimensions).
pub fn spend_query(query: &str, now_ms: i64) -> Result<SpendQuery, String> {
    let (mut from, mut to, mut group_by) = (None, None, Vec::new());
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "from" => from = Some(parse_time(&v).map_err(|e| format!("from: {e}"))?),
            "to" => to = Some(parse_time(&v).map_err(|e| format!("to: {e}"))?),
            "group_by" => {
                for d in v.split(',').map(str::trim).filter(|d| !d.is_empty()) {
                    let g: GroupBy = d.parse().map_err(|e| format!("group_by: {e}"))?;
                    if !group_by.contains(&g) {
                        group_by.push(g);
                    }
                }
            }
            other => return Err(format!("unknown parameter {other:?} (use from, to, group_by)")),
        }
    }
    let to = to.unwrap_or(now_ms + 1);
    let from = from.unwrap_or(to - 24 * 3600 * 1000);
    if from >= to {
        return Err("from must be before to".into());
    }
    Ok(SpendQuery {
        from_ms: from,
        to_ms: to,
        group_by,
    })
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    if let Ok(v) = http::HeaderValue::from_str(&r.body().len().to_string()) {
        r.headers_mut().insert(http::header::CONTENT_LENGTH, v);
    }
    r
}

fn json_reply(status: StatusCode, v: serde_json::Value) -> Response<Vec<u8>> {
    reply(status, "application/json", v.to_string().into_bytes())
}

impl AdminApp {
    pub fn respond(&self, method: &http::Method, path: &str) -> Response<Vec<u8>> {
        if method != http::Method::GET {
            return json_reply(
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"error": {"message": "use GET", "type": "invalid_request_error", "param": null, "code": "method_not_allowed"}}),
            );
        }
        match path {
            "/health" => json_reply(StatusCode::OK, json!({"status": "ok"})),
            "/ready" => {
                let snap = self.config.current();
                let enabled = snap.enabled_providers();
                // Not ready until the tokenizer is loaded, or the first requests with limits
                // would wait for it (100-400 ms).
                let tokenizer = crate::limits::tokens::is_warm();
                let ready = enabled > 0 && tokenizer;
                let status = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                json_reply(
                    status,
                    json!({
                        "ready": ready,
                        "tokenizer_loaded": tokenizer,
                        "config": snap.path.display().to_string(),
                        "providers_enabled": enabled,
                        "providers": snap.providers.values().map(|p| json!({
                            "name": p.name, "kind": p.kind.as_str(), "enabled": p.is_enabled(), "disabled_reason": p.disabled,
                        })).collect::<Vec<_>>(),
                        "models": snap.models.len(),
                    }),
                )
            }
            "/metrics" => {
                self.sinks.sync_metrics(&self.metrics);
                self.metrics.limits_backend.sync(self.limiter.cluster());
                let held = self.cache.store.stats();
                self.metrics
                    .cache_entries
                    .set(i64::try_from(held.entries).unwrap_or(i64::MAX));
                self.metrics
                    .cache_bytes
                    .set(i64::try_from(held.bytes).unwrap_or(i64::MAX));
                for b in self.routing.breakers(crate::routing::breaker::now_ms()) {
                    let v = match b.state {
                        "open" => 2,
                        "half_open" => 1,
                        _ => 0,
                    };
                    self.metrics
                        .breaker_state
                        .with_label_values(&[&b.provider, &b.model])
                        .set(v);
                }
                reply(
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    self.metrics.render().into_bytes(),
                )
            }
            "/breakers" => {
                let rows = self.routing.breakers(crate::routing::breaker::now_ms());
                json_reply(StatusCode::OK, json!({ "breakers": rows }))
            }
            _ => json_reply(
                StatusCode::NOT_FOUND,
                json!({"error": {"message": format!("unknown admin path {path}"), "type": "invalid_request_error", "param": null, "code": "unknown_url"}}),
            ),
        }
    }
}

/// Reads an admin request's body (at most 1 MiB).
async fn read_small_body(session: &mut ServerSession) -> Result<Vec<u8>, Response<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > 1 << 20 {
                    return Err(error_reply(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "request_too_large",
                        "admin bodies are limited to 1 MiB",
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                session.set_keepalive(None);
                return Err(error_reply(
                    StatusCode::BAD_REQUEST,
                    "request_body_error",
                    &format!("could not read the request body: {}", e.etype().as_str()),
                ));
            }
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        // The header is in: the connection's header deadline stops (see `proxy::conn`).
        crate::proxy::conn::request_started(session.take_connection_user_context());
        let header = session.req_header();
        let (method, path) = (header.method.clone(), header.uri.path().to_string());
        if path.starts_with("/admin/") {
            let query = header.uri.query().unwrap_or("").to_string();
            let auth = header
                .headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            // Admin bodies are small JSON documents: read up to 1 MiB, within the body deadline.
            let within = self.config.current().server.body_timeout;
            let body = match tokio::time::timeout(within, read_small_body(session)).await {
                Ok(Ok(body)) => body,
                Ok(Err(reply)) => return reply,
                Err(_) => {
                    session.set_keepalive(None);
                    return error_reply(
                        StatusCode::REQUEST_TIMEOUT,
                        "request_timeout",
                        "the request body did not arrive in time",
                    );
                }
            };
            return self.admin_api(&method, &path, &query, auth.as_deref(), body).await;
        }
        self.respond(&method, &path)
    }
}
