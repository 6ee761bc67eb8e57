//! The background OTLP/HTTP exporter: a bounded span queue drained by one std thread.
//!
//! Invariants: `export` (the request path) only takes a mutex for a `VecDeque` append, never does
//! I/O and never waits on the collector; the queue holds at most `queue_capacity` spans and what
//! does not fit is counted in `dropped`. The worker sends a batch when `batch_size` spans are queued
//! or `flush_interval` has passed, retries a failed POST once (OTLP's retryable cases: transport
//! errors, 429, 502, 503, 504), honours `Retry-After` up to `MAX_PAUSE`, and then gives the batch
//! up. A dead collector therefore costs one thread, a bounded queue and a warning every 30 s.
//! Header values from the config (collector credentials) are never logged or printed by `Debug`.

use std::collections::VecDeque;
use std::fmt;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::Rng;

use super::encode::encode_request;
use super::span::Span;

/// Longest pause a collector's `Retry-After` can impose.
pub const MAX_PAUSE: Duration = Duration::from_secs(30);
/// Wait before the single retry when the collector gave no `Retry-After` (plus up to 50% jitter).
const RETRY_BACKOFF: Duration = Duration::from_millis(500);
/// At most one warning per this period; the others are counted into the next one.
const WARN_EVERY: Duration = Duration::from_secs(30);
/// Response bodies are read (for connection reuse and `partialSuccess`) up to this size.
const MAX_RESPONSE_BODY: u64 = 64 * 1024;

/// Where and how to export. `headers` usually carry a vendor's credentials: they are sent with
/// each request and appear nowhere else (`Debug` prints their names only).
#[derive(Clone)]
pub struct OtlpConfig {
    /// Full URL of the traces endpoint, e.g. `http://127.0.0.1:4318/v1/traces`.
    pub endpoint: String,
    pub headers: Vec<(String, String)>,
    pub service_name: String,
    /// Spans held while waiting to be sent; beyond it `export` drops.
    pub queue_capacity: usize,
    /// Spans per POST.
    pub batch_size: usize,
    /// Longest time a span waits before its (partial) batch is sent.
    pub flush_interval: Duration,
    /// Whole-request timeout of one POST.
    pub timeout: Duration,
}

impl Default for OtlpConfig {
    fn default() -> OtlpConfig {
        OtlpConfig {
            endpoint: "http://127.0.0.1:4318/v1/traces".to_string(),
            headers: Vec::new(),
            service_name: "tollgate".to_string(),
            queue_capacity: 16384,
            batch_size: 512,
            flush_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
        }
    }
}

impl fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<String> = self.headers.iter().map(|(k, _)| format!("{k}: ***")).collect();
        f.debug_struct("OtlpConfig")
            .field("endpoint", &redact_url(&self.endpoint))
            .field("headers", &headers)
            .field("service_name", &self.service_name)
            .field("queue_capacity", &self.queue_capacity)
            .field("batch_size", &self.batch_size)
            .field("flush_interval", &self.flush_interval)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Exporter counters, readable at any time (e.g. when `/metrics` is rendered).
#[derive(Debug, Default)]
pub struct ExporterStats {
    /// Spans the collector accepted.
    pub exported: AtomicU64,
    /// Spans `export` refused: queue full, or the exporter shut down.
    pub dropped: AtomicU64,
    /// Batches given up: non-retryable answer, or failed twice.
    pub failed_batches: AtomicU64,
    /// Spans in those batches, plus spans a collector rejected through `partialSuccess`.
    pub failed_spans: AtomicU64,
    /// Spans waiting in the queue (not counting the batch being sent).
    pub queue_depth: AtomicU64,
}

/// A plain copy of `ExporterStats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    pub exported: u64,
    pub dropped: u64,
    pub failed_batches: u64,
    pub failed_spans: u64,
    pub queue_depth: u64,
}

impl ExporterStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            exported: self.exported.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            failed_batches: self.failed_batches.load(Ordering::Relaxed),
            failed_spans: self.failed_spans.load(Ordering::Relaxed),
            queue_depth: self.queue_depth.load(Ordering::Relaxed),
        }
    }
}

struct Queue {
    spans: VecDeque<Span>,
    /// Spans ever accepted into the queue; `flush` waits for `settled` to reach it.
    accepted: u64,
    flush_requested: bool,
    stop: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    stats: ExporterStats,
    /// Spans whose fate is decided (exported, failed or discarded at stop).
    settled: AtomicU64,
    capacity: usize,
    batch_size: usize,
}

impl Shared {
    /// A poisoned lock only means a thread panicked mid-append; the queue itself is still sound.
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn request_stop(&self) {
        self.lock().stop = true;
        self.wake.notify_all();
    }
}

struct Inner {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Stops the worker when the last `Exporter` clone goes away (queued spans are discarded; call
/// `shutdown` first to send them).
impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.request_stop();
    }
}

/// Handle to the export thread; clones share it.
#[derive(Clone)]
pub struct Exporter {
    inner: Arc<Inner>,
}

impl fmt::Debug for Exporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exporter")
            .field("stats", &self.inner.shared.stats)
            .finish()
    }
}

impl Exporter {
    /// Validates `cfg` and spawns the export thread. Errors name the offending field (never a
    /// header value).
    pub fn start(cfg: OtlpConfig) -> Result<Exporter, String> {
        validate(&cfg)?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                spans: VecDeque::with_capacity(cfg.queue_capacity.min(4096)),
                accepted: 0,
                flush_requested: false,
                stop: false,
            }),
            wake: Condvar::new(),
            stats: ExporterStats::default(),
            settled: AtomicU64::new(0),
            capacity: cfg.queue_capacity,
            batch_size: cfg.batch_size,
        });
        let agent = ureq::AgentBuilder::new()
            .timeout(cfg.timeout)
            .redirects(0)
            .user_agent(concat!("tollgate/", env!("CARGO_PKG_VERSION")))
            .build();
        let mut worker = Worker {
            shared: shared.clone(),
            agent,
            log_endpoint: redact_url(&cfg.endpoint),
            cfg,
            paused_until: None,
            last_warn: None,
            suppressed: 0,
        };
        let handle = std::thread::Builder::new()
            .name("tollgate-otlp".to_string())
            .spawn(move || worker.run())
            .map_err(|e| format!("cannot spawn the OTLP export thread: {e}"))?;
        Ok(Exporter {
            inner: Arc::new(Inner {
                shared,
                thread: Mutex::new(Some(handle)),
            }),
        })
    }

    /// Queues `spans` for export. Never blocks on I/O: whatever does not fit in the queue (or
    /// arrives after `shutdown`) is dropped and counted.
    pub fn export(&self, spans: Vec<Span>) {
        let total = spans.len();
        if total == 0 {
            return;
        }
        let shared = &self.inner.shared;
        let mut rest = spans.into_iter();
        let (taken, crossed_batch) = {
            let mut q = shared.lock();
            if q.stop {
                (0, false)
            } else {
                let before = q.spans.len();
                let taken = shared.capacity.saturating_sub(before).min(total);
                q.spans.extend(rest.by_ref().take(taken));
                q.accepted += taken as u64;
                let after = q.spans.len();
                shared.stats.queue_depth.store(after as u64, Ordering::Relaxed);
                (taken, before < shared.batch_size && after >= shared.batch_size)
            }
        };
        // The overflow is freed here, outside the lock.
        drop(rest);
        if taken < total {
            shared
                .stats
                .dropped
                .fetch_add((total - taken) as u64, Ordering::Relaxed);
        }
        if crossed_batch {
            shared.wake.notify_one();
        }
    }

    pub fn stats(&self) -> &ExporterStats {
        &self.inner.shared.stats
    }

    /// Sends everything queued before the call without waiting for the interval, and waits until
    /// it has been POSTed or given up. False if `timeout` passed first.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = deadline_after(timeout);
        let shared = &self.inner.shared;
        let target = {
            let mut q = shared.lock();
            q.flush_requested = true;
            q.accepted
        };
        shared.wake.notify_all();
        let mut nap = Duration::from_millis(1);
        loop {
            if shared.settled.load(Ordering::Acquire) >= target {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            std::thread::sleep(nap.min(deadline - now));
            nap = (nap * 2).min(Duration::from_millis(20));
        }
    }

    /// Flushes (within `timeout`), then stops the thread and waits for it for what is left of
    /// `timeout`. Later `export` calls drop their spans.
    pub fn shutdown(&self, timeout: Duration) {
        let deadline = deadline_after(timeout);
        self.flush(timeout);
        self.inner.shared.request_stop();
        let handle = self.inner.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle {
            while !handle.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            if handle.is_finished() {
                let _ = handle.join();
            }
        }
    }
}

/// `now + timeout`, saturating instead of panicking on an absurd timeout.
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(86_400)))
        .unwrap_or(now)
}

fn validate(cfg: &OtlpConfig) -> Result<(), String> {
    let url = url::Url::parse(&cfg.endpoint).map_err(|e| format!("OTLP endpoint is not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "OTLP endpoint must be http:// or https://, got {}://",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("OTLP endpoint has no host".to_string());
    }
    if cfg.queue_capacity == 0 || cfg.batch_size == 0 {
        return Err("OTLP queue_capacity and batch_size must be at least 1".to_string());
    }
    // The upper bound also keeps `Instant + duration` arithmetic far from overflow.
    let sane = |d: Duration| !d.is_zero() && d <= Duration::from_secs(3600);
    if !sane(cfg.flush_interval) || !sane(cfg.timeout) {
        return Err("OTLP flush_interval and timeout must be between 1ns and 1h".to_string());
    }
    for (name, value) in &cfg.headers {
        let token = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
        if name.is_empty() || !name.bytes().all(token) {
            return Err(format!("OTLP header name {name:?} is not a valid HTTP header name"));
        }
        if value.bytes().any(|c| (c < 0x20 && c != b'\t') || c == 0x7f) {
            // The value is a credential: name the header, never show the value.
            return Err(format!("OTLP header {name} has a control character in its value"));
        }
    }
    Ok(())
}

/// `scheme://host:port/path` without userinfo or query, which may hold credentials.
fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(url) => format!("{}{}", url.origin().ascii_serialization(), url.path()),
        Err(_) => "<invalid url>".to_string(),
    }
}

/// Seconds form only (the HTTP-date form falls back to the default backoff), capped.
fn parse_retry_after(value: &str) -> Option<Duration> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s).min(MAX_PAUSE))
}

/// The outcome of one POST.
enum Attempt {
    /// Accepted; the count the collector rejected through `partialSuccess`.
    Accepted { rejected: u64 },
    Failed {
        retryable: bool,
        retry_after: Option<Duration>,
        reason: String,
    },
}

struct Worker {
    shared: Arc<Shared>,
    agent: ureq::Agent,
    cfg: OtlpConfig,
    log_endpoint: String,
    paused_until: Option<Instant>,
    last_warn: Option<Instant>,
    suppressed: u64,
}

impl Worker {
    fn run(&mut self) {
        let mut next_tick = Instant::now() + self.cfg.flush_interval;
        while let Some(batch) = self.next_batch(&mut next_tick) {
            let n = batch.len() as u64;
            let body = encode_request(&self.cfg.service_name, &batch);
            drop(batch);
            self.send(&body, n);
            self.shared.settled.fetch_add(n, Ordering::Release);
        }
        // Stopped: what is still queued is discarded.
        let discarded = {
            let mut q = self.shared.lock();
            let n = q.spans.len();
            q.spans.clear();
            n as u64
        };
        self.shared.stats.queue_depth.store(0, Ordering::Relaxed);
        self.shared.stats.dropped.fetch_add(discarded, Ordering::Relaxed);
        self.shared.settled.fetch_add(discarded, Ordering::Release);
    }

    /// Waits for a full batch, the interval tick or a flush request; `None` once stopped.
    fn next_batch(&self, next_tick: &mut Instant) -> Option<Vec<Span>> {
        let interval = self.cfg.flush_interval;
        let mut q = self.shared.lock();
        loop {
            if q.stop {
                return None;
            }
            let now = Instant::now();
            let len = q.spans.len();
            let tick = now >= *next_tick;
            if tick {
                *next_tick = now + interval;
            }
            if len >= self.shared.batch_size || (len > 0 && (tick || q.flush_requested)) {
                let batch: Vec<Span> = q.spans.drain(..len.min(self.shared.batch_size)).collect();
                if q.spans.is_empty() {
                    q.flush_requested = false;
                }
                self.shared
                    .stats
                    .queue_depth
                    .store(q.spans.len() as u64, Ordering::Relaxed);
                return Some(batch);
            }
            q.flush_requested = false;
            let wait = next_tick.saturating_duration_since(now);
            q = self
                .shared
                .wake
                .wait_timeout(q, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits until `until` unless stopped first; true if stopped.
    fn sleep_until(&self, until: Instant) -> bool {
        let mut q = self.shared.lock();
        loop {
            if q.stop {
                return true;
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            q = self
                .shared
                .wake
                .wait_timeout(q, until - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// POSTs one batch, retrying once, and records the outcome.
    fn send(&mut self, body: &[u8], n: u64) {
        let mut last_reason = String::new();
        for attempt in 0..2 {
            if let Some(until) = self.paused_until.take() {
                if self.sleep_until(until) {
                    self.record_failure(n, "exporter stopped while the collector asked to wait");
                    return;
                }
            }
            match self.post(body) {
                Attempt::Accepted { rejected } => {
                    let rejected = rejected.min(n);
                    self.shared.stats.exported.fetch_add(n - rejected, Ordering::Relaxed);
                    if rejected > 0 {
                        self.shared.stats.failed_spans.fetch_add(rejected, Ordering::Relaxed);
                        self.warn(&format!("collector rejected {rejected} of {n} spans"));
                    }
                    return;
                }
                Attempt::Failed {
                    retryable,
                    retry_after,
                    reason,
                } => {
                    last_reason = reason;
                    if let Some(pause) = retry_after {
                        // Also applies to the next batch if this was the last attempt.
                        self.paused_until = Some(Instant::now() + pause);
                    }
                    if !retryable {
                        break;
                    }
                    if attempt == 0 && self.paused_until.is_none() {
                        let jitter = rand::thread_rng().gen_range(0..=RETRY_BACKOFF.as_millis() as u64 / 2);
                        self.paused_until = Some(Instant::now() + RETRY_BACKOFF + Duration::from_millis(jitter));
                    }
                }
            }
        }
        self.record_failure(n, &last_reason);
    }

    fn post(&self, body: &[u8]) -> Attempt {
        let mut request = self
            .agent
            .post(&self.cfg.endpoint)
            .set("content-type", "application/json");
        for (name, value) in &self.cfg.headers {
            request = request.set(name, value);
        }
        match request.send_bytes(body) {
            Ok(response) => {
                let status = response.status();
                let body = read_capped(response);
                if (200..300).contains(&status) {
                    Attempt::Accepted {
                        rejected: rejected_spans(&body),
                    }
                } else {
                    Attempt::Failed {
                        retryable: false,
                        retry_after: None,
                        reason: format!("collector answered {status}"),
                    }
                }
            }
            Err(ureq::Error::Status(status, response)) => {
                let retry_after = response.header("retry-after").and_then(parse_retry_after);
                let _ = read_capped(response);
                Attempt::Failed {
                    // The OTLP/HTTP spec's retryable statuses; every other error is final.
                    retryable: matches!(status, 429 | 502 | 503 | 504),
                    retry_after: retry_after.filter(|_| matches!(status, 429 | 503)),
                    reason: format!("collector answered {status}"),
                }
            }
            Err(ureq::Error::Transport(t)) => {
                // Not `t`'s Display: it includes the URL, which may carry credentials.
                let reason = match std::error::Error::source(&t) {
                    Some(source) => format!("{}: {source}", t.kind()),
                    None => t.kind().to_string(),
                };
                Attempt::Failed {
                    retryable: true,
                    retry_after: None,
                    reason,
                }
            }
        }
    }

    fn record_failure(&mut self, n: u64, reason: &str) {
        self.shared.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
        self.shared.stats.failed_spans.fetch_add(n, Ordering::Relaxed);
        self.warn(&format!("batch of {n} spans dropped: {reason}"));
    }

    /// Logs at most once per `WARN_EVERY`, reporting how many warnings were held back meanwhile.
    fn warn(&mut self, what: &str) {
        let now = Instant::now();
        if self.last_warn.is_some_and(|at| now.duration_since(at) < WARN_EVERY) {
            self.suppressed += 1;
            tracing::debug!(endpoint = %self.log_endpoint, "OTLP export: {what}");
            return;
        }
        tracing::warn!(
            endpoint = %self.log_endpoint,
            suppressed = self.suppressed,
            failed_batches = self.shared.stats.failed_batches.load(Ordering::Relaxed),
            "OTLP export: {what}"
        );
        self.last_warn = Some(now);
        self.suppressed = 0;
    }
}

fn read_capped(response: ureq::Response) -> Vec<u8> {
    let mut body = Vec::new();
    let _ = response.into_reader().take(MAX_RESPONSE_BODY).read_to_end(&mut body);
    body
}

/// `partialSuccess.rejectedSpans` of an OTLP JSON response (an int64: a string, or a number from
/// lenient collectors); 0 if absent or unparseable.
fn rejected_spans(body: &[u8]) -> u64 {
    if body.is_empty() {
        return 0;
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return 0;
    };
    match &v["partialSuccess"]["rejectedSpans"] {
        serde_json::Value::String(s) => s.parse().unwrap_or(0),
        serde_json::Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(endpoint: &str) -> OtlpConfig {
        OtlpConfig {
            endpoint: endpoint.to_string(),
            ..OtlpConfig::default()
        }
    }

    #[test]
    fn start_validates_the_config() {
        assert!(Exporter::start(cfg("ftp://collector/v1/traces"))
            .unwrap_err()
            .contains("http"));
        assert!(Exporter::start(cfg("not a url")).is_err());
        assert!(Exporter::start(cfg("http://")).is_err());
        let zero = OtlpConfig {
            batch_size: 0,
            ..cfg("http://127.0.0.1:4318/v1/traces")
        };
        assert!(Exporter::start(zero).is_err());
        let forever = OtlpConfig {
            flush_interval: Duration::MAX,
            ..cfg("http://127.0.0.1:4318/v1/traces")
        };
        assert!(Exporter::start(forever).is_err());
        let bad_header = OtlpConfig {
            headers: vec![("authorization".into(), "Bearer sk-secret\r\nx: y".into())],
            ..cfg("http://127.0.0.1:4318/v1/traces")
        };
        let err = Exporter::start(bad_header).unwrap_err();
        assert!(err.contains("authorization") && !err.contains("sk-secret"), "{err}");
        let bad_name = OtlpConfig {
            headers: vec![("x auth".into(), "v".into())],
            ..cfg("http://127.0.0.1:4318/v1/traces")
        };
        assert!(Exporter::start(bad_name).is_err());
        let ok = Exporter::start(cfg("https://otlp.example.com/v1/traces")).unwrap();
        ok.shutdown(Duration::from_secs(1));
    }

    #[test]
    fn debug_hides_credentials() {
        let c = OtlpConfig {
            headers: vec![("x-api-key".into(), "sk-secret".into())],
            ..cfg("https://user:pw-secret@otlp.example.com/v1/traces?token=q-secret")
        };
        let shown = format!("{c:?}");
        assert!(shown.contains("x-api-key: ***"), "{shown}");
        assert!(shown.contains("https://otlp.example.com/v1/traces"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn retry_after_is_parsed_and_capped() {
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("3600"), Some(MAX_PAUSE));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn partial_success_is_read() {
        assert_eq!(rejected_spans(b""), 0);
        assert_eq!(rejected_spans(b"{}"), 0);
        assert_eq!(rejected_spans(br#"{"partialSuccess":{"rejectedSpans":"3"}}"#), 3);
        assert_eq!(rejected_spans(br#"{"partialSuccess":{"rejectedSpans":4}}"#), 4);
        assert_eq!(rejected_spans(b"\x0a\x00"), 0);
    }

    #[test]
    fn dropping_the_last_handle_stops_the_thread() {
        let exporter = Exporter::start(cfg("http://127.0.0.1:9/v1/traces")).unwrap();
        let clone = exporter.clone();
        let shared = Arc::downgrade(&exporter.inner.shared);
        drop(exporter);
        std::thread::sleep(Duration::from_millis(20));
        assert!(shared.upgrade().is_some(), "a clone keeps the exporter running");
        drop(clone);
        let deadline = Instant::now() + Duration::from_secs(5);
        while shared.upgrade().is_some() {
            assert!(Instant::now() < deadline, "the worker did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn export_after_shutdown_drops() {
        let exporter = Exporter::start(cfg("http://127.0.0.1:9/v1/traces")).unwrap();
        exporter.shutdown(Duration::from_secs(1));
        let span = Span::new(
            super::super::TraceId::random(),
            None,
            "x",
            super::super::SpanKind::Internal,
            1,
            2,
        );
        exporter.export(vec![span.clone(), span]);
        assert_eq!(exporter.stats().snapshot().dropped, 2);
        assert!(exporter.flush(Duration::from_millis(50)));
        assert!(exporter.flush(Duration::MAX), "an absurd timeout does not overflow");
    }
}
