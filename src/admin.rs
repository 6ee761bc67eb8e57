//! The admin listener (default `127.0.0.1:9090`, never the data-plane port): `/health` (the
//! process is up), `/ready` (a config is loaded and at least one provider is enabled), `/metrics`
//! (Prometheus text format).

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::json;

use crate::config::ConfigStore;
use crate::telemetry::Metrics;

pub struct AdminApp {
    pub config: Arc<ConfigStore>,
    pub metrics: Arc<Metrics>,
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
                let status = if enabled > 0 {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                json_reply(
                    status,
                    json!({
                        "ready": enabled > 0,
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
                for b in self.config.health.snapshot(crate::routing::breaker::now_ms()) {
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
                let rows = self.config.health.snapshot(crate::routing::breaker::now_ms());
                json_reply(StatusCode::OK, json!({ "breakers": rows }))
            }
            _ => json_reply(
                StatusCode::NOT_FOUND,
                json!({"error": {"message": format!("unknown admin path {path}"), "type": "invalid_request_error", "param": null, "code": "unknown_url"}}),
            ),
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let header = session.req_header();
        let (method, path) = (header.method.clone(), header.uri.path().to_string());
        self.respond(&method, &path)
    }
}
