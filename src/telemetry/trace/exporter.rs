//! The background OTLP/HTTP exporter: a bounded hand-over of spans to one std thread.
//!
//! Invariants: `export` (the request path) takes no lock, never does I/O and never waits on the
//! collector. It reserves room in `queue_depth` with one compare-and-swap (the bound is in spans:
//! at most `queue_capacity` wait at any time, and what does not fit is counted in `dropped`), then
//! `try_send`s the spans on a bounded std channel. The worker only ever `try_recv`s and parks, so
//! the channel never has a registered receiver to wake under its internal mutex; `export` unparks
//! the worker itself, and only when its spans fill a batch. The worker sends a batch when
//! `batch_size` spans are queued or `flush_interval` has passed, retries a failed POST once
//! (OTLP's retryable cases: transport errors, 429, 502, 503, 504), honours `Retry-After` up to
//! `MAX_PAUSE`, and then gives the batch up. A dead collector therefore costs one thread, a
//! bounded queue and a warning every 30 s. Header values from the config (collector credentials)
//! are never logged or printed by `Debug`.

use std::collections::VecDeque;
use std::fmt;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, Thread};
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

/// What the request path and `flush` hand to the worker.
enum Msg {
    /// Spans whose room is already reserved in `queue_depth`.
    Spans(Vec<Span>),
    /// Answered once every span received before it is settled (exported, failed or discarded).
    /// A reply dropped unanswered means the worker stopped, which settles everything too.
    Flush(mpsc::Sender<()>),
}

/// Channel slots beyond one per span of capacity, for `Msg::Flush`.
const FLUSH_SLOTS: usize = 64;
/// The channel's slots are allocated up front: past this many, the bound in spans still holds
/// but a burst of many small exports may be dropped before it is reached.
const MAX_SLOTS: usize = 1 << 16;
/// Worker's wait when `queue_depth` says a batch is due but an `export` has not handed it over.
const HANDOVER_NAP: Duration = Duration::from_millis(1);

struct Shared {
    /// `stats.queue_depth` doubles as the reservation counter that bounds the queue.
    stats: ExporterStats,
    /// Set by `shutdown` and by the drop of the last handle. `export` reads it (SeqCst) after
    /// reserving room and the worker reads `queue_depth` (SeqCst) after seeing it, so every span
    /// either goes back to `export`'s caller as dropped or reaches the worker's final count.
    stop: AtomicBool,
    capacity: u64,
    batch_size: u64,
}

struct Inner {
    shared: Arc<Shared>,
    tx: SyncSender<Msg>,
    /// The worker thread, to unpark.
    worker: Thread,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Stops the worker when the last `Exporter` clone goes away (queued spans are discarded; call
/// `shutdown` first to send them).
impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.worker.unpark();
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
            stats: ExporterStats::default(),
            stop: AtomicBool::new(false),
            capacity: cfg.queue_capacity as u64,
            batch_size: cfg.batch_size as u64,
        });
        // Each `Msg::Spans` holds at least one reserved span, so it never finds the channel full
        // (below `MAX_SLOTS`) unless flush requests crowd it.
        let (tx, rx) = mpsc::sync_channel(cfg.queue_capacity.min(MAX_SLOTS) + FLUSH_SLOTS);
        let agent = ureq::AgentBuilder::new()
            .timeout(cfg.timeout)
            .redirects(0)
            .user_agent(concat!("tollgate/", env!("CARGO_PKG_VERSION")))
            .build();
        let mut worker = Worker {
            shared: shared.clone(),
            rx,
            agent,
            log_endpoint: redact_url(&cfg.endpoint),
            pending: VecDeque::with_capacity(cfg.queue_capacity.min(4096)),
            cfg,
            received: 0,
            settled: 0,
            flushes: VecDeque::new(),
            paused_until: None,
            last_warn: None,
            suppressed: 0,
        };
        let handle = std::thread::Builder::new()
            .name("tollgate-otlp".to_string())
            .spawn(move || {
                crate::queue::background();
                worker.run()
            })
            .map_err(|e| format!("cannot spawn the OTLP export thread: {e}"))?;
        Ok(Exporter {
            inner: Arc::new(Inner {
                shared,
                tx,
                worker: handle.thread().clone(),
                thread: Mutex::new(Some(handle)),
            }),
        })
    }

    /// Queues `spans` for export. Lock-free and never blocks: whatever does not fit in the queue
    /// (or arrives after `shutdown`) is dropped and counted.
    pub fn export(&self, mut spans: Vec<Span>) {
        let total = spans.len() as u64;
        if total == 0 {
            return;
        }
        let inner = &*self.inner;
        let shared = &*inner.shared;
        let stats = &shared.stats;
        // Cheap early out, so that exports after a stop leave `queue_depth` alone.
        if shared.stop.load(Ordering::Relaxed) {
            stats.dropped.fetch_add(total, Ordering::Relaxed);
            return;
        }
        // Reserve what fits, possibly part of `spans`.
        let room = |depth: u64| shared.capacity.saturating_sub(depth).min(total);
        let reserved = stats
            .queue_depth
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |depth| {
                let take = room(depth);
                (take > 0).then_some(depth + take)
            });
        let Ok(before) = reserved else {
            stats.dropped.fetch_add(total, Ordering::Relaxed);
            return;
        };
        let taken = room(before);
        // After the reservation: see `Shared::stop`.
        if shared.stop.load(Ordering::SeqCst) {
            stats.queue_depth.fetch_sub(taken, Ordering::SeqCst);
            stats.dropped.fetch_add(total, Ordering::Relaxed);
            return;
        }
        spans.truncate(taken as usize);
        match inner.tx.try_send(Msg::Spans(spans)) {
            Ok(()) => {
                if taken < total {
                    stats.dropped.fetch_add(total - taken, Ordering::Relaxed);
                }
                if before < shared.batch_size && before + taken >= shared.batch_size {
                    inner.worker.unpark();
                }
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                stats.queue_depth.fetch_sub(taken, Ordering::SeqCst);
                stats.dropped.fetch_add(total, Ordering::Relaxed);
            }
        }
    }

    pub fn stats(&self) -> &ExporterStats {
        &self.inner.shared.stats
    }

    /// Sends everything queued before the call without waiting for the interval, and waits until
    /// it has been POSTed or given up. False if `timeout` passed first.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = deadline_after(timeout);
        let (reply, done) = mpsc::channel();
        let mut msg = Msg::Flush(reply);
        let mut nap = Duration::from_millis(1);
        loop {
            match self.inner.tx.try_send(msg) {
                Ok(()) => break,
                // The worker has exited, discarding what it had not sent: nothing is left.
                Err(TrySendError::Disconnected(_)) => return true,
                Err(TrySendError::Full(back)) => {
                    msg = back;
                    let now = Instant::now();
                    if now >= deadline {
                        return false;
                    }
                    std::thread::sleep(nap.min(deadline - now));
                    nap = (nap * 2).min(Duration::from_millis(20));
                }
            }
        }
        self.inner.worker.unpark();
        match done.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
            Err(RecvTimeoutError::Timeout) => false,
        }
    }

    /// Flushes (within `timeout`), then stops the thread and waits for it for what is left of
    /// `timeout`. Later `export` calls drop their spans.
    pub fn shutdown(&self, timeout: Duration) {
        let deadline = deadline_after(timeout);
        self.flush(timeout);
        self.inner.shared.stop.store(true, Ordering::SeqCst);
        self.inner.worker.unpark();
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
    rx: Receiver<Msg>,
    agent: ureq::Agent,
    cfg: OtlpConfig,
    log_endpoint: String,
    /// Spans received and not yet in a batch (still counted in `queue_depth`).
    pending: VecDeque<Span>,
    /// Spans ever received, and spans whose fate is decided; a flush waits for `settled` to reach
    /// `received` as it was when the flush arrived.
    received: u64,
    settled: u64,
    flushes: VecDeque<(u64, mpsc::Sender<()>)>,
    paused_until: Option<Instant>,
    last_warn: Option<Instant>,
    suppressed: u64,
}

impl Worker {
    fn run(&mut self) {
        let interval = self.cfg.flush_interval;
        let batch_size = self.cfg.batch_size;
        let mut next_tick = Instant::now() + interval;
        loop {
            let connected = self.receive();
            if !connected || self.shared.stop.load(Ordering::SeqCst) {
                break;
            }
            let now = Instant::now();
            let tick = now >= next_tick;
            if tick {
                next_tick = now + interval;
            }
            let len = self.pending.len();
            if len >= batch_size || (len > 0 && (tick || !self.flushes.is_empty())) {
                let batch: Vec<Span> = self.pending.drain(..len.min(batch_size)).collect();
                let n = batch.len() as u64;
                self.shared.stats.queue_depth.fetch_sub(n, Ordering::SeqCst);
                let body = encode_request(&self.cfg.service_name, &batch);
                drop(batch);
                self.send(&body, n);
                self.settle(n);
                continue;
            }
            let mut wait = next_tick.saturating_duration_since(now);
            if self.shared.stats.queue_depth.load(Ordering::SeqCst) >= self.shared.batch_size {
                // A batch is reserved but an `export` is still handing its part over (and only
                // the export that crossed the batch size unparks us).
                wait = wait.min(HANDOVER_NAP);
            }
            // Woken early by `export` (a batch is full), `flush` or a stop.
            std::thread::park_timeout(wait);
        }
        self.discard_all();
    }

    /// Moves everything in the channel to `pending` and answers the flushes that are done. False
    /// once every handle is gone.
    fn receive(&mut self) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok(Msg::Spans(spans)) => {
                    self.received += spans.len() as u64;
                    self.pending.extend(spans);
                }
                Ok(Msg::Flush(reply)) => self.flushes.push_back((self.received, reply)),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
        self.settle(0);
        true
    }

    /// Records `n` more settled spans and answers the flushes waiting for them.
    fn settle(&mut self, n: u64) {
        self.settled += n;
        while self.flushes.front().is_some_and(|(mark, _)| *mark <= self.settled) {
            if let Some((_, reply)) = self.flushes.pop_front() {
                // The caller may have timed out and gone.
                let _ = reply.send(());
            }
        }
    }

    /// Stopped: discards what is queued, including spans an `export` reserved room for before
    /// it saw the stop and is still handing over (`queue_depth` reaches 0 once they arrive).
    fn discard_all(&mut self) {
        // Unanswered: their callers read the dropped reply as settled.
        self.flushes.clear();
        let depth = &self.shared.stats.queue_depth;
        let mut discarded = self.pending.len() as u64;
        self.pending.clear();
        depth.fetch_sub(discarded, Ordering::SeqCst);
        let mut waits = 0u32;
        loop {
            match self.rx.try_recv() {
                Ok(Msg::Spans(spans)) => {
                    let n = spans.len() as u64;
                    depth.fetch_sub(n, Ordering::SeqCst);
                    discarded += n;
                }
                Ok(Msg::Flush(_)) => {}
                // No handle left, so no export in progress either.
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    if depth.load(Ordering::SeqCst) == 0 {
                        break;
                    }
                    waits += 1;
                    if waits < 64 {
                        std::thread::yield_now();
                    } else {
                        std::thread::sleep(HANDOVER_NAP);
                    }
                }
            }
        }
        self.shared.stats.dropped.fetch_add(discarded, Ordering::Relaxed);
    }

    /// Waits until `until` unless stopped first; true if stopped.
    fn sleep_until(&self, until: Instant) -> bool {
        loop {
            if self.shared.stop.load(Ordering::SeqCst) {
                return true;
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            std::thread::park_timeout(until - now);
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
#[path = "exporter_tests.rs"]
mod tests;
