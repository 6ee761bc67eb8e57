//! Prometheus metrics, registered in a registry owned by the gateway (not the global one, so tests
//! can run several gateways in one process). Labels are low-cardinality by construction: model
//! aliases from the config, provider names from the config, status codes, fixed kinds.

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// The name of every series any `Metrics` of this process can show in `/metrics` (the same set
/// for each: the names are constants): counters and gauges by their name, histograms by their
/// `_bucket`, `_sum` and `_count` series. A labelled family has no sample, and so no line in
/// `/metrics`, until its first label set is used; dashboards and alert rules are checked against
/// this list instead (`tests/observability.rs`).
pub fn series_names() -> Vec<String> {
    NAMES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect()
}

static NAMES: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Registers `c` in `registry`, remembering its series names for `series_names`.
fn register<C: prometheus::core::Collector + 'static>(registry: &Registry, c: C) -> Result<(), prometheus::Error> {
    {
        let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
        for family in c.collect() {
            let name = family.name();
            if family.get_field_type() == prometheus::proto::MetricType::HISTOGRAM {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            } else {
                names.insert(name.to_string());
            }
        }
    }
    registry.register(Box::new(c))
}

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub tokens: IntCounterVec,
    pub upstream_errors: IntCounterVec,
    pub fallbacks: IntCounterVec,
    pub inflight: IntGauge,
    /// Bytes of request bodies held (`limits::buffered::Buffered`).
    pub buffered_body_bytes: IntGauge,
    /// Share of each budget spent in its current window, from the spend ledger (`budgets`).
    pub budget_used: prometheus::GaugeVec,
    /// Passes of `config::dns` in which a provider's host name did not resolve.
    pub dns_failures: IntCounterVec,
    pub config_reloads: IntCounter,
    pub config_reload_errors: IntCounter,
    /// File-change reloads refused by the reload policy, by `reason` (one per guarded change).
    pub config_reload_refused: IntCounterVec,
    /// Per target: 0 closed, 1 half-open, 2 open (set when /metrics is rendered).
    pub breaker_state: prometheus::IntGaugeVec,
    /// USD by alias, provider and team (teams come from virtual keys: a bounded set).
    pub cost: prometheus::CounterVec,
    pub ttft: HistogramVec,
    /// The gateway's own time per request (total minus provider waits and backoff).
    pub overhead: prometheus::Histogram,
    /// The request-side guardrail check's time per checked request (`proxy::guard`).
    pub guardrail_check: prometheus::Histogram,
    /// Retries of the same target.
    pub retries: IntCounterVec,
    /// Requests refused by a rate limit or budget, by reason.
    pub rate_limited: IntCounterVec,
    /// Requests on cached routes by what the cache did (`hit`, `miss`, `bypass`, `coalesced`).
    pub cache: IntCounterVec,
    /// What hits would have cost at the prices of the calls that made their answers.
    pub cache_saved: prometheus::Counter,
    /// Entries and bytes in the in-process store (set when /metrics is rendered).
    pub cache_entries: IntGauge,
    pub cache_bytes: IntGauge,
    /// Semantic lookups skipped (exact-only), by reason: busy, timeout, failed, no_model.
    pub cache_semantic_skipped: IntCounterVec,
    /// Guardrail actions (`redact`, `injection`, `block`).
    pub guardrails: GuardrailActions,
    /// Served requests whose model is not in the pricing table (cost recorded as 0).
    pub unpriced: IntCounterVec,
    /// Requests whose tokens the gateway counted because the provider reported none.
    pub estimated_usage: IntCounterVec,
    /// Parts of relayed (passthrough) streams the gateway could not read, by provider.
    pub stream_parse_errors: IntCounterVec,
    /// Background sinks, synced from their own counters when /metrics is rendered.
    pub sinks: SinkMetrics,
    /// The shared limits backend (Redis), synced when /metrics is rendered.
    pub limits_backend: LimitsBackendMetrics,
    /// Open client connections, by listener (`data`, `admin`).
    pub connections_open: prometheus::IntGaugeVec,
    /// Client connections closed by the gateway's connection bounds, by listener and reason.
    pub connections_closed: IntCounterVec,
}

/// One listener's connection metrics, resolved once (their updates are single atomic ops).
#[derive(Clone)]
pub struct ConnectionMetrics {
    pub open: IntGauge,
    /// Refused at accept: `server.max_connections` open already.
    pub over_capacity: IntCounter,
    /// The request header did not arrive within `server.header_timeout`.
    pub header_timeout: IntCounter,
    /// The request header was larger than `server.max_header_bytes`.
    pub header_too_large: IntCounter,
    /// A kept-alive connection waited longer than `server.keepalive_timeout` for a request.
    pub idle_timeout: IntCounter,
    /// The request body did not arrive within `server.body_timeout`.
    pub body_timeout: IntCounter,
}

/// Cluster mode's link to Redis (its counters are plain atomics in `limits::cluster::Stats`).
pub struct LimitsBackendMetrics {
    pub up: IntGauge,
    pub calls: IntCounter,
    pub admissions: IntCounterVec,
    pub errors: IntCounter,
    pub unavailable: IntCounterVec,
}

impl LimitsBackendMetrics {
    fn new(registry: &Registry) -> Result<LimitsBackendMetrics, prometheus::Error> {
        let up = IntGauge::new(
            "tollgate_limits_backend_up",
            "1 when the shared limits store (Redis) is reachable; 0 when down (or not configured)",
        )?;
        let calls = IntCounter::new(
            "tollgate_limits_backend_calls_total",
            "Round trips to the shared limits store (leases are pipelined: far fewer than requests)",
        )?;
        let admissions = IntCounterVec::new(
            Opts::new(
                "tollgate_limits_admissions_total",
                "Requests checked against shared limits, by how: from this node's leased credit (local), with a lease from Redis (lease), or refused on a refusal Redis had just given (known_refusal)",
            ),
            &["path"],
        )?;
        let errors = IntCounter::new(
            "tollgate_limits_backend_errors_total",
            "Failed calls to the shared limits store",
        )?;
        let unavailable = IntCounterVec::new(
            Opts::new(
                "tollgate_limits_backend_unavailable_total",
                "Requests decided without the shared limits store, by action (open: local limits; closed: 503)",
            ),
            &["action"],
        )?;
        register(registry, up.clone())?;
        register(registry, calls.clone())?;
        register(registry, admissions.clone())?;
        register(registry, errors.clone())?;
        register(registry, unavailable.clone())?;
        Ok(LimitsBackendMetrics {
            up,
            calls,
            admissions,
            errors,
            unavailable,
        })
    }

    /// Copies the cluster link's counters in (when /metrics is rendered).
    pub fn sync(&self, cluster: Option<&crate::limits::cluster::Cluster>) {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(c) = cluster else { return };
        let s = c.stats();
        self.up.set(i64::from(c.is_up()));
        sync_counter(&self.calls, s.calls.load(Relaxed));
        sync_counter(&self.admissions.with_label_values(&["local"]), s.local.load(Relaxed));
        sync_counter(&self.admissions.with_label_values(&["lease"]), s.leases.load(Relaxed));
        sync_counter(
            &self.admissions.with_label_values(&["known_refusal"]),
            s.known.load(Relaxed),
        );
        sync_counter(&self.errors, s.errors.load(Relaxed));
        sync_counter(
            &self.unavailable.with_label_values(&["open"]),
            s.failed_open.load(Relaxed),
        );
        sync_counter(
            &self.unavailable.with_label_values(&["closed"]),
            s.failed_closed.load(Relaxed),
        );
    }
}

/// The ledger's, access log's and trace exporter's counters (theirs are plain atomics).
pub struct SinkMetrics {
    pub ledger_queue_depth: IntGauge,
    pub ledger_spill_pending: IntGauge,
    pub ledger_store_up: IntGauge,
    pub ledger_written: IntCounter,
    pub ledger_spilled: IntCounter,
    pub ledger_replayed: IntCounter,
    pub ledger_dropped: IntCounter,
    pub ledger_write_errors: IntCounter,
    pub access_log_dropped: IntCounter,
    pub spans_exported: IntCounter,
    pub spans_dropped: IntCounter,
    /// Serialises syncs so two scrapes cannot add the same delta twice (admin path only).
    pub sync: std::sync::Mutex<()>,
}

impl SinkMetrics {
    fn new(registry: &Registry) -> Result<SinkMetrics, prometheus::Error> {
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            register(registry, g.clone())?;
            Ok(g)
        };
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            register(registry, c.clone())?;
            Ok(c)
        };
        Ok(SinkMetrics {
            ledger_queue_depth: gauge(
                "tollgate_ledger_queue_depth",
                "Usage records waiting for the spend ledger",
            )?,
            ledger_spill_pending: gauge(
                "tollgate_ledger_spill_pending",
                "Usage records in spill files, waiting for the store",
            )?,
            ledger_store_up: gauge(
                "tollgate_ledger_store_up",
                "1 when the spend ledger's store is reachable",
            )?,
            ledger_written: counter("tollgate_ledger_written_total", "Usage records written to the store")?,
            ledger_spilled: counter(
                "tollgate_ledger_spilled_total",
                "Usage records spilled to a local file while the store was slow or down",
            )?,
            ledger_replayed: counter(
                "tollgate_ledger_replayed_total",
                "Spilled usage records replayed into the store",
            )?,
            ledger_dropped: counter(
                "tollgate_ledger_dropped_total",
                "Usage records lost because the ledger queue was full",
            )?,
            ledger_write_errors: counter("tollgate_ledger_write_errors_total", "Failed ledger writes")?,
            access_log_dropped: counter("tollgate_access_log_dropped_total", "Access log lines not written")?,
            spans_exported: counter(
                "tollgate_trace_spans_exported_total",
                "Spans sent to the OTLP collector",
            )?,
            spans_dropped: counter("tollgate_trace_spans_dropped_total", "Spans dropped (queue full)")?,
            sync: std::sync::Mutex::new(()),
        })
    }
}

/// Brings a Prometheus counter up to a monotonic total kept elsewhere.
pub fn sync_counter(c: &IntCounter, total: u64) {
    let now = c.get();
    if total > now {
        c.inc_by(total - now);
    }
}

/// Request durations from 1 ms to ~10 min.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Gateway overhead from 10 µs to 1 s.
const OVERHEAD_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
];

/// The guardrail check from 1 µs to 100 ms.
const GUARD_BUCKETS: &[f64] = &[
    0.000001, 0.0000025, 0.000005, 0.0000075, 0.00001, 0.000015, 0.000025, 0.00005, 0.0001, 0.00025, 0.001, 0.01, 0.1,
];

/// `tollgate_guardrail_actions_total{type, action}`, counted through a per-thread cache of its
/// counters: `with_label_values` hashes both labels and takes the family's lock on every call
/// (~900 instructions under callgrind, per kind found, per request); a hit in the cache is a short
/// compare. The cache is keyed by this family's id (a process may run several gateways, each
/// with its own registry) and stops growing at `CAP` entries (a config reloaded with ever new
/// entity names): the family is asked directly after that. Entries of a dropped `Metrics` stay
/// until their thread ends (counters nobody reads: memory only, bounded by `CAP`).
pub struct GuardrailActions {
    family: IntCounterVec,
    /// Unique in the process: the thread caches' key.
    id: u64,
}

impl GuardrailActions {
    const CAP: usize = 256;

    fn new(family: IntCounterVec) -> GuardrailActions {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        GuardrailActions {
            family,
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Adds `n` to the series of entity type `kind` and `action`.
    pub fn add(&self, kind: &str, action: &str, n: u32) {
        use std::cell::RefCell;
        /// (family id, type, action, its counter)
        type Entry = (u64, Box<str>, Box<str>, IntCounter);
        thread_local! {
            static CACHE: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
        }
        CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            if let Some((.., c)) = cache
                .iter()
                .find(|(id, k, a, _)| *id == self.id && **k == *kind && **a == *action)
            {
                return c.inc_by(u64::from(n));
            }
            let c = self.family.with_label_values(&[kind, action]);
            c.inc_by(u64::from(n));
            if cache.len() < Self::CAP {
                cache.push((self.id, kind.into(), action.into(), c));
            }
        })
    }

    /// The current count of one series (the tests read it; `/metrics` renders the registry).
    #[cfg(test)]
    pub fn get(&self, kind: &str, action: &str) -> u64 {
        self.family.with_label_values(&[kind, action]).get()
    }
}

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
            Opts::new(
                "tollgate_tokens_total",
                "Tokens by type: prompt, completion, cached (part of prompt), cache_write (part of prompt), reasoning (part of completion)",
            ),
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
        let buffered_body_bytes = IntGauge::new(
            "tollgate_buffered_body_bytes",
            "Bytes of request bodies being read or held by requests in flight (at most server.max_buffered_bytes)",
        )?;
        let budget_used = prometheus::GaugeVec::new(
            Opts::new(
                "tollgate_budget_used_ratio",
                "Share of a key's or team's budget spent in the current window (1 = exhausted), from the spend ledger",
            ),
            &["scope", "id", "period"],
        )?;
        register(&registry, budget_used.clone())?;
        let dns_failures = IntCounterVec::new(
            Opts::new(
                "tollgate_dns_failures_total",
                "Times a provider's host name did not resolve when looked up again (the provider keeps its last address)",
            ),
            &["provider"],
        )?;
        register(&registry, dns_failures.clone())?;
        let config_reloads = IntCounter::new("tollgate_config_reloads_total", "Successful config reloads")?;
        let config_reload_errors = IntCounter::new("tollgate_config_reload_errors_total", "Rejected config reloads")?;
        register(&registry, requests.clone())?;
        register(&registry, duration.clone())?;
        register(&registry, tokens.clone())?;
        register(&registry, upstream_errors.clone())?;
        register(&registry, fallbacks.clone())?;
        register(&registry, inflight.clone())?;
        register(&registry, buffered_body_bytes.clone())?;
        register(&registry, config_reloads.clone())?;
        register(&registry, config_reload_errors.clone())?;
        let config_reload_refused = IntCounterVec::new(
            Opts::new(
                "tollgate_config_reload_refused_total",
                "Reloads (file change or SIGHUP) refused as they would remove settings or weaken access control (SIGUSR2 applies them), by reason",
            ),
            &["reason"],
        )?;
        register(&registry, config_reload_refused.clone())?;
        let breaker_state = prometheus::IntGaugeVec::new(
            Opts::new(
                "tollgate_breaker_state",
                "Circuit breaker per target: 0 closed, 1 half-open, 2 open",
            ),
            &["provider", "model"],
        )?;
        register(&registry, breaker_state.clone())?;
        let cost = prometheus::CounterVec::new(
            Opts::new(
                "tollgate_cost_usd_total",
                "Cost in USD by model alias, provider and team",
            ),
            &["model", "provider", "team"],
        )?;
        let ttft = HistogramVec::new(
            HistogramOpts::new(
                "tollgate_time_to_first_token_seconds",
                "Time from the request to the first response byte sent to the client",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["model", "provider"],
        )?;
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            prometheus::Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
        };
        let overhead = histogram(
            "tollgate_overhead_seconds",
            "The gateway's own time per request: total minus provider waits and retry backoff",
            OVERHEAD_BUCKETS,
        )?;
        let guardrail_check = histogram(
            "tollgate_guardrail_check_seconds",
            "Time of the request-side guardrail check (detection, redaction, injection scoring; not an external analyzer's call) per checked request",
            GUARD_BUCKETS,
        )?;
        let vec = |name: &str, help: &str, labels: &[&str]| IntCounterVec::new(Opts::new(name, help), labels);
        let retries = vec("tollgate_retries_total", "Retries of the same target", &["provider"])?;
        let rate_limited = vec(
            "tollgate_rate_limited_total",
            "Requests refused by a rate limit or budget",
            &["reason"],
        )?;
        let cache = vec(
            "tollgate_cache_requests_total",
            "Requests on cached routes by result: hit, miss, bypass (not cacheable or asked not to), coalesced (answered by an identical request's call)",
            &["result"],
        )?;
        let cache_saved = prometheus::Counter::new(
            "tollgate_cache_saved_usd_total",
            "What cache hits would have cost (USD), at the cost of the calls that made their answers",
        )?;
        let cache_semantic_skipped = vec(
            "tollgate_cache_semantic_skipped_total",
            "Semantic lookups that fell back to exact-only, by reason: busy (every embedding slot taken), timeout, failed, no_model (cache.semantic added by a reload: needs a restart)",
            &["reason"],
        )?;
        let cache_entries = IntGauge::new("tollgate_cache_entries", "Answers in the in-process cache")?;
        let cache_bytes = IntGauge::new(
            "tollgate_cache_bytes",
            "Bytes the in-process cache holds (answers and labels)",
        )?;
        let guardrails = vec(
            "tollgate_guardrail_actions_total",
            "Guardrail actions by entity type (or `injection`) and action",
            &["type", "action"],
        )?;
        let unpriced = vec(
            "tollgate_unpriced_requests_total",
            "Served requests whose model is not in the pricing table (cost recorded as 0)",
            &["model", "provider"],
        )?;
        let estimated_usage = vec(
            "tollgate_estimated_usage_total",
            "Requests whose tokens the gateway counted because the provider reported none",
            &["model", "provider"],
        )?;
        let stream_parse_errors = vec(
            "tollgate_stream_parse_errors_total",
            "Events of relayed (passthrough) streams the gateway could not read, by provider: the client got them unchanged, the usage may be estimated",
            &["provider"],
        )?;
        for c in [
            &retries,
            &rate_limited,
            &cache,
            &cache_semantic_skipped,
            &guardrails,
            &unpriced,
            &estimated_usage,
            &stream_parse_errors,
        ] {
            register(&registry, c.clone())?;
        }
        let guardrails = GuardrailActions::new(guardrails);
        register(&registry, cost.clone())?;
        register(&registry, cache_saved.clone())?;
        register(&registry, cache_entries.clone())?;
        register(&registry, cache_bytes.clone())?;
        register(&registry, ttft.clone())?;
        register(&registry, overhead.clone())?;
        register(&registry, guardrail_check.clone())?;
        let sinks = SinkMetrics::new(&registry)?;
        let limits_backend = LimitsBackendMetrics::new(&registry)?;
        let connections_open = prometheus::IntGaugeVec::new(
            Opts::new("tollgate_connections_open", "Open client connections by listener"),
            &["listener"],
        )?;
        let connections_closed = vec(
            "tollgate_connections_closed_total",
            "Client connections the gateway closed or refused, by listener and reason: over_capacity, header_timeout, header_too_large, idle_timeout, body_timeout",
            &["listener", "reason"],
        )?;
        register(&registry, connections_open.clone())?;
        register(&registry, connections_closed.clone())?;
        Ok(Metrics {
            registry,
            requests,
            duration,
            tokens,
            upstream_errors,
            fallbacks,
            inflight,
            buffered_body_bytes,
            budget_used,
            dns_failures,
            config_reloads,
            config_reload_errors,
            config_reload_refused,
            breaker_state,
            cost,
            ttft,
            overhead,
            guardrail_check,
            retries,
            rate_limited,
            cache,
            cache_saved,
            cache_entries,
            cache_bytes,
            cache_semantic_skipped,
            guardrails,
            unpriced,
            estimated_usage,
            stream_parse_errors,
            sinks,
            limits_backend,
            connections_open,
            connections_closed,
        })
    }

    /// The connection metrics of one listener.
    pub fn connections(&self, listener: &str) -> ConnectionMetrics {
        let closed = |reason: &str| self.connections_closed.with_label_values(&[listener, reason]);
        ConnectionMetrics {
            open: self.connections_open.with_label_values(&[listener]),
            over_capacity: closed("over_capacity"),
            header_timeout: closed("header_timeout"),
            header_too_large: closed("header_too_large"),
            idle_timeout: closed("idle_timeout"),
            body_timeout: closed("body_timeout"),
        }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::Metrics;

    /// The per-thread cache adds to the right series, the first time and every time after, and
    /// two gateways' metrics in one thread keep their own counts.
    #[test]
    fn guardrail_actions_add_up_through_the_cache() {
        let (one, two) = (Metrics::new().unwrap(), Metrics::new().unwrap());
        for n in [2, 3, 4] {
            one.guardrails.add("EMAIL", "redact", n);
        }
        one.guardrails.add("EMAIL", "mask", 1);
        one.guardrails.add("CARD", "redact", 5);
        two.guardrails.add("EMAIL", "redact", 7);
        assert_eq!(one.guardrails.get("EMAIL", "redact"), 9);
        assert_eq!(one.guardrails.get("EMAIL", "mask"), 1);
        assert_eq!(one.guardrails.get("CARD", "redact"), 5);
        assert_eq!(two.guardrails.get("EMAIL", "redact"), 7);
        assert!(one
            .render()
            .contains(r#"tollgate_guardrail_actions_total{action="redact",type="EMAIL"} 9"#));
    }
}
