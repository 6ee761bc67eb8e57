//! The per-request state (`ProxyHttp::CTX`): what was asked, what was tried, what was answered.
//! `logging` reads it at the end of every request, whatever path the request took.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api::chat::Usage;
use crate::api::Endpoint;
use crate::config::{Snapshot, Target};
use crate::providers::Wire;

/// One upstream attempt, as reported in logs and (later) the usage record.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub target: Arc<Target>,
    /// The upstream status, or the kind of failure (`connect`, `timeout`, `protocol`).
    pub outcome: AttemptOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    Status(u16),
    Failed(&'static str),
}

#[derive(Debug)]
pub struct RequestCtx {
    pub started: Instant,
    pub snapshot: Option<Arc<Snapshot>>,
    pub endpoint: Option<Endpoint>,
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
}

impl RequestCtx {
    pub fn new() -> Self {
        RequestCtx {
            started: Instant::now(),
            snapshot: None,
            endpoint: None,
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
        }
    }
}

impl RequestCtx {
    /// The attempts as `provider:outcome,…` (`openai:429,anthropic:200`), for logs and headers.
    pub fn attempts_summary(&self) -> String {
        let mut s = String::new();
        for (i, a) in self.attempts.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&a.target.provider.name);
            s.push(':');
            match &a.outcome {
                AttemptOutcome::Status(code) => s.push_str(&code.to_string()),
                AttemptOutcome::Failed(kind) => s.push_str(kind),
            }
        }
        s
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new()
    }
}
