//! The data plane's `ProxyHttp` implementation. Each phase is a few lines that call into a module
//! that does the work: `llm` (the unified LLM endpoints, run inside `request_filter`, as the
//! request path's stages), `respond` (the gateway's own JSON answers), `record` (end-of-request
//! accounting). The Pingora side of the stages: `body` (reading the request), `tenant` (who is
//! asking, their limits), `attempts` and `upstream` (the calls the attempt policy asks for),
//! `answer` and `relay` (the answer to the client). `passthrough` is the one route Pingora's own
//! proxy flow serves: its phases below only call into it.

pub mod answer;
pub mod attempts;
pub mod body;
pub mod cache;
pub mod chain;
pub mod conn;
pub mod count;
pub mod ctx;
pub mod drain;
pub mod guard;
pub mod head;
pub mod llm;
pub mod pass;
pub mod passthrough;
pub mod record;
pub mod relay;
pub mod respond;
pub mod responses;
pub mod tenant;
pub mod upstream;

use std::sync::Arc;

use async_trait::async_trait;
use pingora::connectors::http::Connector;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;

use crate::api::{route, ApiError, Endpoint, Route};
use crate::config::ConfigStore;
use crate::providers::Wire;
use crate::telemetry::sinks::Sinks;
use crate::telemetry::trace::{SpanId, TraceId, TraceParent};
use crate::telemetry::Metrics;
pub use ctx::RequestCtx;

/// State shared by every request: the live config, metrics, the upstream connection pool,
/// where finished requests go.
pub struct AppState {
    pub config: Arc<ConfigStore>,
    /// The installed snapshot with its targets' live state (breakers, key pools, stats).
    pub routing: Arc<crate::routing::live::Registry>,
    pub metrics: Arc<Metrics>,
    pub connector: Connector,
    pub sinks: Sinks,
    pub keys: Arc<crate::limits::keys::KeyStore>,
    /// Rate limits, concurrency caps and budgets of keys, teams, users and providers (this
    /// node's own, or shared through Redis).
    pub limiter: Arc<crate::limits::gate::Gate>,
    /// Ends in-flight requests when the shutdown grace runs out.
    pub drain: Arc<drain::Drain>,
    /// The response cache (kept across reloads; its size is read at start).
    pub cache: Arc<crate::cache::Cache>,
    /// The Responses API's response store.
    pub responses: Arc<crate::usage::responses::ResponseStore>,
    /// The request bodies held, against `server.max_buffered_bytes`.
    pub buffered: Arc<crate::limits::buffered::Buffered>,
}

pub struct Gateway {
    state: Arc<AppState>,
}

impl Gateway {
    /// The gateway over `state` (whose `connector` is the upstream connection pool).
    pub fn new(state: AppState) -> Self {
        Gateway { state: Arc::new(state) }
    }
}

impl Gateway {
    /// The limiter (to seed budgets from the spend ledger at start).
    pub fn limiter(&self) -> &crate::limits::gate::Gate {
        &self.state.limiter
    }
}

/// The virtual key (`Authorization: Bearer` or `x-api-key`): a known key attributes the request
/// (key, team, user, tier) and brings its limits; a revoked, expired or unknown one is refused (a
/// mistyped key must not silently lose its limits and attribution). Without `auth.required`, a
/// request with no key or with one of `auth.anonymous_keys` (clients whose SDK insists on some
/// key) is served anonymously.
fn authenticate(
    state: &AppState,
    session: &Session,
    ctx: &mut RequestCtx,
    auth: &crate::config::snapshot::AuthSettings,
) -> std::result::Result<(), ApiError> {
    let h = &session.req_header().headers;
    let text = |name: http::header::HeaderName| h.get(name).and_then(|v| v.to_str().ok());
    let presented = crate::limits::keys::presented_key(
        text(http::header::AUTHORIZATION),
        text(http::header::HeaderName::from_static("x-api-key")),
    );
    // Expiry is wall-clock time.
    let now_ms = crate::time::unix_ms_i64();
    match presented.map(|p| state.keys.lookup(p, now_ms)) {
        Some(Ok(key)) => {
            ctx.who.key_id = Some(key.id.clone());
            ctx.who.team = key.team.clone();
            ctx.who.tier = key.tier.clone();
            if key.user.is_some() {
                ctx.who.user = key.user.clone();
            }
            ctx.key = Some(key);
            Ok(())
        }
        None if !auth.required => Ok(()),
        Some(Err(crate::limits::keys::KeyError::Unknown))
            if presented.is_some_and(|p| crate::limits::keys::is_placeholder(p, &auth.anonymous_keys)) =>
        {
            Ok(())
        }
        Some(Err(_)) | None => Err(ApiError::InvalidApiKey),
    }
}

/// The request's identity: our id, the client's id, its place in the trace.
fn identify(state: &AppState, session: &Session, ctx: &mut RequestCtx, snap: &crate::config::Snapshot) {
    let h = &session.req_header().headers;
    if let Some(peer) = session.client_addr().and_then(|a| a.as_inet()) {
        let trusted = &snap.server.trusted_proxies;
        let ip = match trusted.header() {
            None => peer.ip(),
            Some(name) => trusted.client(peer.ip(), h.get_all(name).iter().map(|v| v.as_bytes())),
        };
        ctx.who.ip = Some(ip.to_string());
    }
    ctx.client_request_id = h
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .map(str::to_string);
    let client = h
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse);
    let t = &mut ctx.trace;
    t.trace_id = client.as_ref().map_or_else(TraceId::random, |c| c.trace_id);
    t.span_id = SpanId::random();
    t.parent = client.as_ref().map(|c| c.parent_id);
    t.parent_sampled = client.as_ref().is_some_and(|c| c.sampled);
    // The client's decision stands when it made one; otherwise the configured share.
    t.sampled = state.sinks.tracer.is_some()
        && match &client {
            Some(c) => c.sampled,
            None => snap
                .tracing
                .as_ref()
                .is_some_and(|s| s.sample >= 1.0 || rand::random::<f64>() < s.sample),
        };
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new()
    }

    /// Receives the request's connection state from `conn::Guard` (which sets it as the
    /// connection's user context for every request) and marks the request as taken: the header
    /// deadline stops here; the body deadline and upstream timeouts take over.
    fn on_connection_reuse(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
        conn: Box<dyn std::any::Any + Send + Sync>,
    ) {
        conn::request_started(Some(conn));
    }

    /// Performs the whole gateway step for the data-plane API: routing, body parsing, the upstream
    /// attempts and the relay of the answer. `Ok(true)` means a response was sent (always, for
    /// every route served today); `Err` means the client connection failed and nothing more can
    /// be written to it.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let live = self.state.routing.current();
        let snap = &live.snapshot;
        identify(&self.state, session, ctx, snap);
        self.state.metrics.inflight.inc();
        ctx.inflight = true;
        let header = session.req_header();
        let route = route(&header.method, header.uri.path());
        // Every answer, a refused key's included, is in the shape of the API the client speaks;
        // the Anthropic SDKs also send `anthropic-version` to `/v1/models`.
        ctx.client = match route {
            Route::Llm(Endpoint::Messages) | Route::CountTokens => Wire::Anthropic,
            Route::Models | Route::Model if header.headers.contains_key("anthropic-version") => Wire::Anthropic,
            _ => Wire::OpenAi,
        };
        let authenticated = authenticate(&self.state, session, ctx, &snap.auth);
        ctx.live = Some(live);
        if let Err(e) = authenticated {
            return respond::error(session, ctx, &e).await;
        }
        let header = session.req_header();
        if passthrough::is_route(header.uri.path()) {
            return passthrough::admit(&self.state, session, ctx).await;
        }
        match route {
            Route::Llm(endpoint) => llm::handle(&self.state, session, ctx, endpoint).await,
            Route::CountTokens => count::handle(&self.state, session, ctx).await,
            Route::StoredResponse => responses::stored(&self.state, session, ctx).await,
            Route::Models | Route::Model => {
                let Some(snap) = ctx.live.as_ref().map(|l| Arc::clone(&l.snapshot)) else {
                    return Ok(false);
                };
                let body = match route {
                    Route::Model => {
                        let path = header.uri.path();
                        let path = path.strip_prefix("/v1").unwrap_or(path);
                        let id = path.strip_prefix("/models/").unwrap_or_default().to_string();
                        crate::config::models::retrieve(&snap, &id, ctx.client)
                    }
                    _ => Ok(crate::config::models::list(&snap, ctx.client)),
                };
                match body {
                    Ok(b) => respond::json(session, ctx, 200, b, &[]).await,
                    Err(e) => respond::error(session, ctx, &e).await,
                }
            }
            Route::NotFound => {
                let e = ApiError::NotFound {
                    method: header.method.to_string(),
                    path: header.uri.path().chars().take(200).collect(),
                };
                respond::error(session, ctx, &e).await
            }
            Route::MethodNotAllowed(allowed) => {
                respond::error(session, ctx, &ApiError::MethodNotAllowed { allowed }).await
            }
        }
    }

    /// Reached by the passthrough routes only (every other route is answered in
    /// `request_filter`): the provider's peer.
    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        passthrough::peer(ctx)
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut pingora::http::RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        passthrough::upstream_request(ctx, upstream_request)
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut pingora::http::ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        passthrough::response_header(ctx, upstream_response)
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        passthrough::body(ctx, body, end_of_stream);
        Ok(None)
    }

    /// A passthrough call that failed before its answer began: a provider-shaped error.
    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
        FailToProxy {
            error_code: passthrough::failed(session, ctx, e).await,
            can_reuse_downstream: false,
        }
    }

    /// A client that went away is not an error worth a log line.
    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, e: &Error) -> bool {
        ctx.error == Some("client_gone") || matches!(e.etype(), ErrorType::ConnectionClosed)
    }

    /// Closes every request: metrics and the debug access line.
    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        record::finish(&self.state, session, e, ctx);
    }
}
