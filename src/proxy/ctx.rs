//! The per-request state (`ProxyHttp::CTX`): what was asked, what was tried, what was answered.
//! `logging` reads it at the end of every request, whatever path the request took.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api::chat::Usage;
use crate::api::Endpoint;
use crate::config::Target;
use crate::providers::Wire;
use crate::telemetry::trace::{SpanId, TraceId, TraceParent};

pub use crate::routing::attempts::{Attempt, AttemptOutcome};

/// Who a request is attributed to in the usage record.
#[derive(Debug, Clone, Default)]
pub struct Attribution {
    pub key_id: Option<String>,
    pub team: Option<String>,
    pub user: Option<String>,
    pub feature: Option<String>,
    pub tier: Option<String>,
    /// The client's address (see `client_addr`); `None` on a Unix socket.
    pub ip: Option<String>,
}

/// The request's place in a distributed trace.
#[derive(Debug, Clone, Copy)]
pub struct TraceCtx {
    pub trace_id: TraceId,
    /// This request's (server) span.
    pub span_id: SpanId,
    /// The client's span, when it sent a `traceparent`.
    pub parent: Option<SpanId>,
    /// The client's sampled flag (meaningful with `parent`).
    pub parent_sampled: bool,
    /// This gateway records and exports the request's spans.
    pub sampled: bool,
}

impl TraceCtx {
    /// The `traceparent` for a provider call whose span is `span`: ours when we trace, else the
    /// client's passed through unchanged, else none.
    pub fn upstream_header(&self, span: SpanId) -> Option<String> {
        if self.sampled {
            Some(TraceParent::header_value(self.trace_id, span, true))
        } else {
            self.parent
                .map(|p| TraceParent::header_value(self.trace_id, p, self.parent_sampled))
        }
    }
}

#[derive(Debug)]
pub struct RequestCtx {
    pub started: Instant,
    /// The config snapshot the request runs on, with its targets' live state (breakers, key
    /// pools, stats).
    pub live: Option<Arc<crate::routing::live::Live>>,
    pub endpoint: Option<Endpoint>,
    /// A Responses API request: the encoder its answer goes out through (`proxy::responses`).
    pub responses: Option<Box<crate::api::responses::Pending>>,
    /// A native passthrough request (`proxy::passthrough`).
    pub passthrough: Option<Box<super::pass::Pass>>,
    /// The client's wire format: gateway errors are written in it.
    pub client: Wire,
    /// The alias asked for, once known to exist in the config (a metric label, so never raw input).
    pub model: Option<String>,
    pub served_by: Option<Arc<Target>>,
    pub attempts: Vec<Attempt>,
    /// The status the gateway answered with (0 until a response header is written).
    pub status: u16,
    /// A short label when the request failed or was cut (`model_not_found`, `stream_cut`, …).
    pub error: Option<&'static str>,
    pub stream: bool,
    pub usage: Option<Usage>,
    /// When the first response body byte went to the client.
    pub first_byte: Option<Instant>,
    /// Time spent waiting on providers.
    pub upstream_time: Duration,
    pub inflight: bool,
    /// Counts this request in its target's in-flight number until the request ends.
    pub inflight_guard: Option<crate::routing::balance::InflightGuard>,
    /// The A/B arm (`a` or `b`) when the alias splits traffic.
    pub ab_arm: Option<&'static str>,
    /// The name of the route (policy table entry) that matched.
    pub route: Option<String>,
    /// The route lets another target serve a request a target's dialect cannot carry.
    pub fallback_on_unsupported: bool,
    /// Made by the gateway, unique: the ledger's key and the `x-request-id` response header.
    pub request_id: String,
    /// The client's `x-request-id`, kept for correlation.
    pub client_request_id: Option<String>,
    pub trace: TraceCtx,
    pub who: Attribution,
    /// Reservations in the key's, team's and user's limits, settled when the request ends.
    pub admission: Option<crate::limits::gate::Ticket>,
    /// The reservation in the serving provider's limits.
    pub provider_admission: Option<crate::limits::gate::Ticket>,
    /// `x-ratelimit-*` values for the response.
    pub rate_headers: Option<crate::limits::limiter::RateHeaders>,
    /// `Retry-After` of a refusal.
    pub retry_after_ms: Option<u64>,
    /// The request body's share of `server.max_buffered_bytes`, held until the request ends.
    pub body_lease: Option<crate::limits::buffered::Lease>,
    /// The client's response header, begun while the provider works (`llm::begin_head`).
    pub head: Option<super::head::Head>,
    /// The virtual key the request came with, when it was a known one.
    pub key: Option<Arc<crate::limits::keys::VirtualKey>>,
    /// The usage was counted by the gateway (the provider reported none).
    pub tokens_estimated: bool,
    /// The prompt's token estimate and completion cap, once computed (limits, context-window
    /// checks, cost routing, missing usage).
    pub prompt_need: Option<crate::limits::tokens::PromptNeed>,
    /// The limits were reserved on an upper bound of the prompt: the first attempt counts it
    /// while it waits for the provider, and shrinks the reservations to the count.
    pub estimate_pending: bool,
    /// Time spent in retry backoff (neither the provider's time nor the gateway's overhead).
    pub backoff_time: Duration,
    /// What the cache did: `none` (no cache policy), `hit`, `coalesced`, `miss`, `bypass`.
    pub cache: &'static str,
    /// The matched route's cache and guardrail policies, for the cache and the guardrails.
    pub cache_policy: Option<Arc<crate::cache::policy::Policy>>,
    /// The request's cache key, when it took part (the `x-tollgate-cache-key` header: a hash,
    /// never the text; what an admin purge by key takes).
    pub cache_key: Option<crate::cache::key::Key>,
    /// A miss whose answer the relay stores (`proxy::cache`).
    pub cache_write: Option<crate::cache::Pending>,
    /// What a hit saved: the cost of the call that made its answer (nano-USD).
    pub cache_saved_nanos: i64,
    pub guard_policy: Option<std::sync::Arc<crate::guard::policy::Policy>>,
    pub guardrails: crate::usage::GuardrailCounts,
    /// The originals the guardrails replaced with placeholders, for the answer's restoration.
    pub guard_vault: Option<std::sync::Arc<crate::guard::redact::Vault>>,
    /// What the output checks found in the answer, read when the request is recorded.
    pub guard_output: Option<crate::guard::output::SharedAudit>,
}

impl RequestCtx {
    pub fn new() -> Self {
        RequestCtx {
            started: Instant::now(),
            live: None,
            endpoint: None,
            responses: None,
            passthrough: None,
            client: Wire::OpenAi,
            model: None,
            served_by: None,
            attempts: Vec::new(),
            status: 0,
            error: None,
            stream: false,
            usage: None,
            first_byte: None,
            upstream_time: Duration::ZERO,
            inflight: false,
            inflight_guard: None,
            ab_arm: None,
            route: None,
            fallback_on_unsupported: false,
            request_id: crate::usage::record::new_request_id(),
            client_request_id: None,
            trace: TraceCtx {
                trace_id: TraceId([0; 16]),
                span_id: SpanId([0; 8]),
                parent: None,
                parent_sampled: false,
                sampled: false,
            },
            who: Attribution::default(),
            key: None,
            admission: None,
            provider_admission: None,
            rate_headers: None,
            retry_after_ms: None,
            body_lease: None,
            head: None,
            tokens_estimated: false,
            prompt_need: None,
            estimate_pending: false,
            backoff_time: Duration::ZERO,
            cache: "none",
            cache_policy: None,
            cache_key: None,
            cache_write: None,
            cache_saved_nanos: 0,
            guard_policy: None,
            guardrails: Default::default(),
            guard_vault: None,
            guard_output: None,
        }
    }

    /// The gateway's own time so far: elapsed minus provider waits and backoff, given the
    /// provider time of an attempt still running (`current`).
    pub fn overhead(&self, current: Duration) -> Duration {
        self.started
            .elapsed()
            .saturating_sub(self.upstream_time + current + self.backoff_time)
    }
}

impl RequestCtx {
    /// The attempts as `provider:outcome,…` (`openai:429,anthropic:200`), for logs and headers.
    pub fn attempts_summary(&self) -> String {
        crate::routing::attempts::summary(&self.attempts)
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new()
    }
}
