//! Prometheus metrics, registered in a registry owned by the gateway (not the global one, so tests
//! can run several gateways in one process). Labels are low-cardinality by construction: model
//! aliases from the config, provider names from the config, status codes, fixed kinds.

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub tokens: IntCounterVec,
    pub upstream_errors: IntCounterVec,
    pub fallbacks: IntCounterVec,
    pub inflight: IntGauge,
    pub config_reloads: IntCounter,
    pub config_reload_errors: IntCounter,
    /// Per target: 0 closed, 1 half-open, 2 open (set when /metrics is rendered).
    pub breaker_state: prometheus::IntGaugeVec,
}

/// Request durations from 1 ms to ~10 min.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "tollgate_requests_total",
                "Requests by model alias, serving provider and status",
            ),
            &["model", "provider", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new("tollgate_request_duration_seconds", "Total request duration")
                .buckets(DURATION_BUCKETS.to_vec()),
            &["model", "provider"],
        )?;
        let tokens = IntCounterVec::new(
            Opts::new("tollgate_tokens_total", "Tokens reported by providers"),
            &["model", "provider", "type"],
        )?;
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "tollgate_upstream_errors_total",
                "Failed upstream attempts by provider and kind",
            ),
            &["provider", "kind"],
        )?;
        let fallbacks = IntCounterVec::new(
            Opts::new(
                "tollgate_fallbacks_total",
                "Requests answered by a target other than the first",
            ),
            &["model"],
        )?;
        let inflight = IntGauge::new("tollgate_inflight_requests", "Requests being processed")?;
        let config_reloads = IntCounter::new("tollgate_config_reloads_total", "Successful config reloads")?;
        let config_reload_errors = IntCounter::new("tollgate_config_reload_errors_total", "Rejected config reloads")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(tokens.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(fallbacks.clone()))?;
        registry.register(Box::new(inflight.clone()))?;
        registry.register(Box::new(config_reloads.clone()))?;
        registry.register(Box::new(config_reload_errors.clone()))?;
        let breaker_state = prometheus::IntGaugeVec::new(
            Opts::new(
                "tollgate_breaker_state",
                "Circuit breaker per target: 0 closed, 1 half-open, 2 open",
            ),
            &["provider", "model"],
        )?;
        registry.register(Box::new(breaker_state.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            duration,
            tokens,
            upstream_errors,
            fallbacks,
            inflight,
            config_reloads,
            config_reload_errors,
            breaker_state,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

/// A status code as a label without allocating for the common ones.
pub fn status_label(status: u16) -> std::borrow::Cow<'static, str> {
    let s = match status {
        200 => "200",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        413 => "413",
        429 => "429",
        499 => "499",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => return std::borrow::Cow::Owned(status.to_string()),
    };
    std::borrow::Cow::Borrowed(s)
}
