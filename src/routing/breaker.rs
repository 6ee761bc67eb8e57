//! Target health: a circuit breaker per (provider, model) target and a cooldown pool per
//! provider's keys, kept in a `Health` registry that outlives config reloads.
//!
//! Invariants:
//! - The request path is lock-free: `Breaker::admit`/`record` and `KeyPool::pick` are a few atomic
//!   loads and compare-and-swaps, no `Mutex`, no allocation.
//! - Time is passed in (`now_ms`, milliseconds of the monotonic clock `now_ms()`), so every
//!   transition is a pure function of the calls made and tests never sleep.
//! - After the cooldown, exactly one caller is admitted as the half-open probe (a CAS on one word
//!   holding both the state and its deadline).
//! - A probe cannot wedge the breaker: the caller should `record` it or `abandon_probe` it, and a
//!   probe that is neither expires after `cooldown`, after which the next caller probes again.
//!
//! What counts as a failure is the caller's decision: a connect error, a timeout, a 5xx or a 429
//! are failures; any other 4xx is a *success* because the target answered (the request was bad,
//! not the target), and must not push a healthy target towards open.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// Milliseconds since the first call in this process, from a monotonic clock: the `now_ms` every
/// function of this module takes.
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let ms = START.get_or_init(Instant::now).elapsed().as_millis();
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// When a target's breaker opens and how long it stays open (`breaker:` in the config).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Open after this many failures in a row (default 5). `0` disables this trigger.
    pub consecutive_failures: u32,
    /// Or open when failures / requests over the window reach this ratio (default 0.5)...
    pub error_ratio: f64,
    /// ...once the window holds at least this many requests (default 10).
    pub min_requests: u32,
    /// The ratio window (default 30s). Counted in two fixed buckets of half the window each, and
    /// the ratio is taken over the current and the previous bucket: a sliding approximation that
    /// always covers between half of and the whole last window.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// How long an open breaker rejects before letting one probe request through (default 30s).
    /// Also how long a probe may stay unanswered before it is presumed lost and another is let
    /// through.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            consecutive_failures: 5,
            error_ratio: 0.5,
            min_requests: 10,
            window: Duration::from_secs(30),
            cooldown: Duration::from_secs(30),
        }
    }
}

impl BreakerConfig {
    /// Checks the values a breaker cannot work with; returns every problem found.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if !(self.error_ratio.is_finite() && self.error_ratio > 0.0) {
            problems.push(format!(
                "error_ratio must be a number above 0 (got {})",
                self.error_ratio
            ));
        }
        if self.window < Duration::from_millis(2) {
            problems.push("window must be at least 2ms".to_string());
        }
        if self.cooldown.is_zero() {
            problems.push("cooldown must be above 0".to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// The answer of `Breaker::admit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: send the request.
    Allowed,
    /// This request is the one half-open probe: send it, then `record` it or `abandon_probe`.
    Probe,
    /// Open (or a probe is in flight): skip this target.
    Rejected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    /// Rejecting until the cooldown ends.
    Open,
    /// The cooldown has ended: a probe is in flight, or the next request will be one.
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

// The phase word: the low 2 bits are the phase, the rest a deadline in ms.
// CLOSED: no deadline. OPEN: the time the cooldown ends. PROBING: the time the probe expires.
const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const PROBING: u64 = 2;
const PHASE_MASK: u64 = 0b11;
const MAX_DEADLINE: u64 = u64::MAX >> 2;

fn phase_word(phase: u64, deadline_ms: u64) -> u64 {
    (deadline_ms.min(MAX_DEADLINE) << 2) | phase
}

fn split_word(word: u64) -> (u64, u64) {
    (word & PHASE_MASK, word >> 2)
}

// A window bucket word: epoch (22 bits, compared for equality only), requests (21), failures (21).
const COUNT_BITS: u32 = 21;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
const EPOCH_MASK: u64 = (1 << 22) - 1;

fn bucket_word(epoch: u64, requests: u64, failures: u64) -> u64 {
    ((epoch & EPOCH_MASK) << (2 * COUNT_BITS)) | (requests << COUNT_BITS) | failures
}

fn split_bucket(word: u64) -> (u64, u64, u64) {
    (
        word >> (2 * COUNT_BITS),
        (word >> COUNT_BITS) & COUNT_MAX,
        word & COUNT_MAX,
    )
}

/// A circuit breaker for one target. Shared by all requests through an `Arc`; see the module
/// docs for the state machine.
#[derive(Debug)]
pub struct Breaker {
    cfg: BreakerConfig,
    cooldown_ms: u64,
    half_window_ms: u64,
    /// Phase and its deadline; every phase change is a CAS on this word.
    phase: AtomicU64,
    /// Failures in a row (probes included); reset by a success.
    consecutive: AtomicU32,
    /// Two half-window buckets, indexed by the parity of their epoch.
    buckets: [AtomicU64; 2],
    /// When the breaker last went from closed to open (for `opened_for_ms`).
    tripped_at: AtomicU64,
}

impl Breaker {
    pub fn new(cfg: BreakerConfig) -> Self {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(MAX_DEADLINE);
        Breaker {
            cfg,
            cooldown_ms: ms(cfg.cooldown),
            half_window_ms: (ms(cfg.window) / 2).max(1),
            phase: AtomicU64::new(phase_word(CLOSED, 0)),
            consecutive: AtomicU32::new(0),
            buckets: [AtomicU64::new(0), AtomicU64::new(0)],
            tripped_at: AtomicU64::new(0),
        }
    }

    pub fn config(&self) -> &BreakerConfig {
        &self.cfg
    }

    /// Whether a request may go to this target now. Closed: `Allowed`. Open with the cooldown
    /// over (or a probe presumed lost): exactly one caller gets `Probe`, the others `Rejected`.
    pub fn admit(&self, now_ms: u64) -> Admission {
        let mut word = self.phase.load(Ordering::Acquire);
        loop {
            let (phase, deadline) = split_word(word);
            if phase == CLOSED {
                return Admission::Allowed;
            }
            if now_ms < deadline {
                return Admission::Rejected;
            }
            // OPEN with the cooldown over, or PROBING with the probe expired: claim the probe.
            let probing = phase_word(PROBING, now_ms.saturating_add(self.cooldown_ms));
            match self
                .phase
                .compare_exchange(word, probing, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Admission::Probe,
                Err(current) => word = current,
            }
        }
    }

    /// The outcome of an admitted request (`ok: false` for a failure, as the caller defines it).
    ///
    /// Closed: counts towards both triggers and opens the breaker when one fires. Probing: the
    /// result is taken as the probe's (a success closes and resets the counters, a failure opens
    /// for another full cooldown). Open: ignored; it is a late answer to a request admitted before
    /// the breaker opened.
    pub fn record(&self, ok: bool, now_ms: u64) {
        let word = self.phase.load(Ordering::Acquire);
        let (phase, _) = split_word(word);
        match phase {
            CLOSED => self.record_closed(word, ok, now_ms),
            PROBING if ok => {
                let closed = phase_word(CLOSED, 0);
                if self
                    .phase
                    .compare_exchange(word, closed, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    self.reset_counters();
                }
            }
            PROBING => {
                let open = phase_word(OPEN, now_ms.saturating_add(self.cooldown_ms));
                if self
                    .phase
                    .compare_exchange(word, open, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    self.consecutive.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {}
        }
    }

    /// Gives back a probe that was admitted but will never be recorded (the client went away):
    /// the breaker stays open with its cooldown over, so the next caller probes. A no-op when no
    /// probe is in flight. Forgetting to call it costs at most one cooldown: a probe expires then.
    pub fn abandon_probe(&self, now_ms: u64) {
        let word = self.phase.load(Ordering::Acquire);
        if split_word(word).0 == PROBING {
            let ready = phase_word(OPEN, now_ms);
            let _ = self
                .phase
                .compare_exchange(word, ready, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    pub fn state(&self, now_ms: u64) -> BreakerState {
        let (phase, deadline) = split_word(self.phase.load(Ordering::Acquire));
        match phase {
            CLOSED => BreakerState::Closed,
            PROBING => BreakerState::HalfOpen,
            _ if now_ms >= deadline => BreakerState::HalfOpen,
            _ => BreakerState::Open,
        }
    }

    /// Failures in a row, counting failed probes.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive.load(Ordering::Relaxed)
    }

    /// How long the breaker has been away from closed; 0 when closed.
    pub fn opened_for_ms(&self, now_ms: u64) -> u64 {
        if split_word(self.phase.load(Ordering::Acquire)).0 == CLOSED {
            return 0;
        }
        now_ms.saturating_sub(self.tripped_at.load(Ordering::Relaxed))
    }

    fn record_closed(&self, word: u64, ok: bool, now_ms: u64) {
        let consecutive = if ok {
            self.consecutive.store(0, Ordering::Relaxed);
            0
        } else {
            self.consecutive.fetch_add(1, Ordering::Relaxed).saturating_add(1)
        };
        self.count(ok, now_ms);
        if ok {
            return; // a success can fire neither trigger
        }
        let by_streak = self.cfg.consecutive_failures > 0 && consecutive >= self.cfg.consecutive_failures;
        let by_ratio = || {
            let (requests, failures) = self.window_counts(now_ms);
            requests >= u64::from(self.cfg.min_requests.max(1))
                && failures as f64 >= self.cfg.error_ratio * requests as f64
        };
        if by_streak || by_ratio() {
            let open = phase_word(OPEN, now_ms.saturating_add(self.cooldown_ms));
            if self
                .phase
                .compare_exchange(word, open, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.tripped_at.store(now_ms, Ordering::Relaxed);
            }
        }
    }

    fn count(&self, ok: bool, now_ms: u64) {
        let epoch = (now_ms / self.half_window_ms) & EPOCH_MASK;
        let Some(bucket) = self.buckets.get((epoch & 1) as usize) else {
            return;
        };
        let mut word = bucket.load(Ordering::Relaxed);
        loop {
            let (e, mut requests, mut failures) = split_bucket(word);
            if e != epoch {
                (requests, failures) = (0, 0); // a stale bucket: start this epoch afresh
            }
            if requests < COUNT_MAX {
                requests += 1;
                failures += u64::from(!ok);
            }
            let next = bucket_word(epoch, requests, failures);
            match bucket.compare_exchange_weak(word, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(current) => word = current,
            }
        }
    }

    /// (requests, failures) over the current and the previous half-window.
    fn window_counts(&self, now_ms: u64) -> (u64, u64) {
        let epoch = now_ms / self.half_window_ms;
        let current = epoch & EPOCH_MASK;
        let previous = epoch.wrapping_sub(1) & EPOCH_MASK;
        self.buckets.iter().fold((0, 0), |(r, f), bucket| {
            let (e, requests, failures) = split_bucket(bucket.load(Ordering::Relaxed));
            if e == current || e == previous {
                (r + requests, f + failures)
            } else {
                (r, f)
            }
        })
    }

    fn reset_counters(&self) {
        self.consecutive.store(0, Ordering::Relaxed);
        for bucket in &self.buckets {
            bucket.store(0, Ordering::Relaxed);
        }
    }
}

/// Cooldowns of one provider's keys; index `i` is the provider's `auth[i]`.
#[derive(Debug)]
pub struct KeyPool {
    cooldown_until: Vec<AtomicU64>,
    next: AtomicUsize,
}

impl KeyPool {
    pub fn new(keys: usize) -> Self {
        KeyPool {
            cooldown_until: (0..keys).map(|_| AtomicU64::new(0)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    pub fn len(&self) -> usize {
        self.cooldown_until.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cooldown_until.is_empty()
    }

    /// The next key index round-robin, skipping keys cooling down; if all are cooling down, the
    /// one whose cooldown ends first (never `None` when there are keys: a cooling key is a better
    /// bet than no request at all).
    pub fn pick(&self, now_ms: u64) -> Option<usize> {
        let n = self.cooldown_until.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut earliest: Option<(u64, usize)> = None;
        for i in (start..n).chain(0..start) {
            let until = self.cooldown_until.get(i).map_or(0, |u| u.load(Ordering::Relaxed));
            if until <= now_ms {
                return Some(i);
            }
            if earliest.is_none_or(|(e, _)| until < e) {
                earliest = Some((until, i));
            }
        }
        earliest.map(|(_, i)| i)
    }

    /// Rests `key` until `until_ms` (after a 429 or a 401 on it; `now_ms() + retry-after`). Never
    /// shortens a longer cooldown already set; an out-of-range index is ignored.
    pub fn cool_down(&self, key: usize, until_ms: u64) {
        if let Some(until) = self.cooldown_until.get(key) {
            until.fetch_max(until_ms, Ordering::Relaxed);
        }
    }

    /// How many keys are not cooling down.
    pub fn available(&self, now_ms: u64) -> usize {
        self.cooldown_until
            .iter()
            .filter(|u| u.load(Ordering::Relaxed) <= now_ms)
            .count()
    }
}

/// One breaker's row for the admin endpoint and metrics.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BreakerInfo {
    pub provider: String,
    pub model: String,
    /// `closed`, `open` or `half_open`.
    pub state: &'static str,
    pub consecutive_failures: u32,
    /// How long it has been away from closed; 0 when closed.
    pub opened_for_ms: u64,
}

/// Breakers and key pools by name, kept across config reloads so a reload neither forgets an
/// outage nor forgives a rate-limited key.
#[derive(Debug, Default)]
pub struct Health {
    breakers: DashMap<(String, String), Arc<Breaker>>,
    keys: DashMap<String, Arc<KeyPool>>,
}

/// Lets the `(String, String)` map be searched with `(&str, &str)`, so lookups do not allocate.
trait TargetKey {
    fn provider(&self) -> &str;
    fn model(&self) -> &str;
}

impl TargetKey for (String, String) {
    fn provider(&self) -> &str {
        &self.0
    }
    fn model(&self) -> &str {
        &self.1
    }
}

impl TargetKey for (&str, &str) {
    fn provider(&self) -> &str {
        self.0
    }
    fn model(&self) -> &str {
        self.1
    }
}

impl<'a> Borrow<dyn TargetKey + 'a> for (String, String) {
    fn borrow(&self) -> &(dyn TargetKey + 'a) {
        self
    }
}

// Must hash like `(String, String)` does: each field as a `str`, in order.
impl Hash for dyn TargetKey + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.provider().hash(state);
        self.model().hash(state);
    }
}

impl PartialEq for dyn TargetKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.provider() == other.provider() && self.model() == other.model()
    }
}

impl Eq for dyn TargetKey + '_ {}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    /// The breaker of `provider`'s `model`, created on first use. A changed `cfg` replaces it
    /// with a fresh (closed) breaker.
    pub fn breaker(&self, provider: &str, model: &str, cfg: BreakerConfig) -> Arc<Breaker> {
        let lookup: &dyn TargetKey = &(provider, model);
        if let Some(b) = self.breakers.get(lookup) {
            if b.config() == &cfg {
                return Arc::clone(&b);
            }
        }
        let mut entry = self
            .breakers
            .entry((provider.to_string(), model.to_string()))
            .or_insert_with(|| Arc::new(Breaker::new(cfg)));
        if entry.config() != &cfg {
            *entry = Arc::new(Breaker::new(cfg));
        }
        Arc::clone(&entry)
    }

    /// The key pool of `provider`, created on first use; replaced when the key count changed.
    pub fn keys(&self, provider: &str, n: usize) -> Arc<KeyPool> {
        if let Some(pool) = self.keys.get(provider) {
            if pool.len() == n {
                return Arc::clone(&pool);
            }
        }
        let mut entry = self
            .keys
            .entry(provider.to_string())
            .or_insert_with(|| Arc::new(KeyPool::new(n)));
        if entry.len() != n {
            *entry = Arc::new(KeyPool::new(n));
        }
        Arc::clone(&entry)
    }

    /// Drops the state of providers the new config no longer has (call after a reload).
    pub fn retain_providers(&self, keep: impl Fn(&str) -> bool) {
        self.breakers.retain(|(provider, _), _| keep(provider));
        self.keys.retain(|provider, _| keep(provider));
    }

    /// Every breaker, sorted by provider then model.
    pub fn snapshot(&self, now_ms: u64) -> Vec<BreakerInfo> {
        let mut rows: Vec<BreakerInfo> = self
            .breakers
            .iter()
            .map(|e| {
                let (provider, model) = e.key();
                BreakerInfo {
                    provider: provider.clone(),
                    model: model.clone(),
                    state: e.state(now_ms).as_str(),
                    consecutive_failures: e.consecutive_failures(),
                    opened_for_ms: e.opened_for_ms(now_ms),
                }
            })
            .collect();
        rows.sort_by(|a, b| (&a.provider, &a.model).cmp(&(&b.provider, &b.model)));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Barrier;

    const COOL: u64 = 30_000;

    fn cfg(consecutive: u32, ratio: f64, min: u32) -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: consecutive,
            error_ratio: ratio,
            min_requests: min,
            ..BreakerConfig::default()
        }
    }

    /// A breaker opened at t=0 by `n` failures.
    fn opened() -> Breaker {
        let b = Breaker::new(cfg(3, 0.5, 10));
        (0..3).for_each(|_| b.record(false, 0));
        assert_eq!(b.state(0), BreakerState::Open);
        b
    }

    #[test]
    fn defaults_and_strict_parsing() {
        let c: BreakerConfig = serde_yaml::from_str("cooldown: 10s").unwrap();
        assert_eq!(c.cooldown, Duration::from_secs(10));
        assert_eq!(c.consecutive_failures, 5);
        assert_eq!(c.window, Duration::from_secs(30));
        assert!(serde_yaml::from_str::<BreakerConfig>("cooldwn: 1s").is_err());
        assert!(c.validate().is_ok());
        let bad = BreakerConfig {
            error_ratio: 0.0,
            cooldown: Duration::ZERO,
            ..c
        };
        assert_eq!(bad.validate().unwrap_err().len(), 2);
    }

    #[test]
    fn opens_on_consecutive_failures() {
        let b = Breaker::new(cfg(5, 0.5, 1000));
        for _ in 0..4 {
            b.record(false, 0);
        }
        assert_eq!(b.state(0), BreakerState::Closed);
        b.record(true, 0); // a success breaks the streak
        for _ in 0..4 {
            b.record(false, 1);
        }
        assert_eq!(b.admit(1), Admission::Allowed);
        b.record(false, 1);
        assert_eq!(b.state(1), BreakerState::Open);
        assert_eq!(b.consecutive_failures(), 5);
    }

    #[test]
    fn opens_on_ratio_only_from_min_requests() {
        let b = Breaker::new(cfg(0, 0.5, 10));
        // f s f s f s f s f: 5 failures of 9 requests, above the ratio but below min_requests.
        for i in 0..9 {
            b.record(i % 2 == 1, 0);
        }
        assert_eq!(b.state(0), BreakerState::Closed);
        b.record(false, 0); // 6 of 10
        assert_eq!(b.state(0), BreakerState::Open);
    }

    #[test]
    fn stays_closed_under_the_ratio() {
        let b = Breaker::new(cfg(5, 0.5, 10));
        // 3 successes then 2 failures, over and over: never over 40% failures nor 5 in a row.
        for i in 0..200 {
            b.record(i % 5 < 3, 0);
        }
        assert_eq!(b.state(0), BreakerState::Closed);
        assert_eq!(b.admit(0), Admission::Allowed);
    }

    #[test]
    fn rejects_while_open_then_probes_once() {
        let b = opened();
        assert_eq!(b.admit(0), Admission::Rejected);
        assert_eq!(b.admit(COOL - 1), Admission::Rejected);
        assert_eq!(b.opened_for_ms(COOL - 1), COOL - 1);
        assert_eq!(b.state(COOL), BreakerState::HalfOpen);
        assert_eq!(b.admit(COOL), Admission::Probe);
        assert_eq!(b.admit(COOL), Admission::Rejected);
        assert_eq!(b.admit(COOL + 5), Admission::Rejected);
        b.record(true, COOL + 10);
        assert_eq!(b.state(COOL + 10), BreakerState::Closed);
        assert_eq!(b.admit(COOL + 10), Admission::Allowed);
        assert_eq!(b.consecutive_failures(), 0);
        assert_eq!(b.opened_for_ms(COOL + 10), 0);
        // The counters were reset: it takes a full streak again to open.
        b.record(false, COOL + 11);
        b.record(false, COOL + 11);
        assert_eq!(b.state(COOL + 11), BreakerState::Closed);
    }

    #[test]
    fn exactly_one_probe_among_concurrent_callers() {
        for _ in 0..50 {
            let b = Arc::new(opened());
            let barrier = Arc::new(Barrier::new(8));
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let (b, barrier) = (Arc::clone(&b), Arc::clone(&barrier));
                    std::thread::spawn(move || {
                        barrier.wait();
                        b.admit(COOL)
                    })
                })
                .collect();
            let results: Vec<Admission> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            assert_eq!(results.iter().filter(|a| **a == Admission::Probe).count(), 1);
            assert_eq!(results.iter().filter(|a| **a == Admission::Rejected).count(), 7);
        }
    }

    #[test]
    fn failed_probe_reopens_for_a_full_cooldown() {
        let b = opened();
        assert_eq!(b.admit(COOL + 100), Admission::Probe);
        b.record(false, COOL + 500);
        assert_eq!(b.state(COOL + 500), BreakerState::Open);
        assert_eq!(b.admit(2 * COOL + 499), Admission::Rejected);
        assert_eq!(b.admit(2 * COOL + 500), Admission::Probe);
        assert_eq!(b.consecutive_failures(), 4);
        assert_eq!(b.opened_for_ms(2 * COOL + 500), 2 * COOL + 500); // since the first trip
    }

    #[test]
    fn abandoned_or_lost_probe_does_not_wedge() {
        let b = opened();
        assert_eq!(b.admit(COOL), Admission::Probe);
        b.abandon_probe(COOL + 1);
        assert_eq!(b.admit(COOL + 1), Admission::Probe); // the next caller probes at once
                                                         // Never recorded nor abandoned: it expires after a cooldown.
        assert_eq!(b.admit(2 * COOL), Admission::Rejected);
        assert_eq!(b.admit(2 * COOL + 1), Admission::Probe);
        b.record(true, 2 * COOL + 2);
        assert_eq!(b.state(2 * COOL + 2), BreakerState::Closed);
        b.abandon_probe(2 * COOL + 3); // no probe in flight: a no-op
        assert_eq!(b.admit(2 * COOL + 3), Admission::Allowed);
    }

    #[test]
    fn late_results_while_open_are_ignored() {
        let b = opened();
        b.record(true, 10);
        assert_eq!(b.state(10), BreakerState::Open);
    }

    #[test]
    fn window_rollover_forgets_old_failures() {
        let b = Breaker::new(cfg(0, 0.5, 10)); // half-window: 15s
        (0..9).for_each(|_| b.record(false, 0));
        b.record(false, 20_000); // t=0 is still the previous bucket: 10 of 10
        assert_eq!(b.state(20_000), BreakerState::Open);

        let b = Breaker::new(cfg(0, 0.5, 10));
        (0..9).for_each(|_| b.record(false, 0));
        b.record(false, 30_000); // t=0 has slid out: 1 of 1, below min_requests
        assert_eq!(b.state(30_000), BreakerState::Closed);
        (0..8).for_each(|_| b.record(false, 31_000));
        assert_eq!(b.state(31_000), BreakerState::Closed);
        b.record(false, 31_000);
        assert_eq!(b.state(31_000), BreakerState::Open);
    }

    #[test]
    fn key_pool_round_robin_skips_cooling_keys() {
        let pool = KeyPool::new(3);
        let picks: Vec<_> = (0..6).map(|_| pool.pick(0).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        pool.cool_down(1, 1_000);
        pool.cool_down(1, 500); // never shortened
        assert_eq!(pool.available(999), 2);
        assert!((0..30).all(|_| pool.pick(999) != Some(1)));
        assert_eq!(pool.available(1_000), 3);
        assert!((0..3).any(|_| pool.pick(1_000) == Some(1)));
        pool.cool_down(7, 1_000); // out of range: ignored
        assert_eq!(KeyPool::new(0).pick(0), None);
    }

    #[test]
    fn key_pool_all_cooling_picks_the_earliest() {
        let pool = KeyPool::new(3);
        pool.cool_down(0, 300);
        pool.cool_down(1, 100);
        pool.cool_down(2, 200);
        assert_eq!(pool.available(50), 0);
        assert!((0..6).all(|_| pool.pick(50) == Some(1)));
    }

    #[test]
    fn key_pool_concurrent_picks_are_valid() {
        let pool = Arc::new(KeyPool::new(5));
        pool.cool_down(3, u64::MAX);
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let pool = Arc::clone(&pool);
                std::thread::spawn(move || {
                    (0..10_000).all(|i| {
                        if i % 100 == 0 {
                            pool.cool_down((t + i) % 5, (i as u64) % 7);
                        }
                        matches!(pool.pick(5), Some(k) if k < 5 && k != 3)
                    })
                })
            })
            .collect();
        assert!(handles.into_iter().all(|h| h.join().unwrap()));
    }

    #[test]
    fn health_keeps_state_across_reloads() {
        let h = Health::new();
        let c = cfg(1, 0.5, 10);
        let b = h.breaker("openai", "gpt-4o", c);
        b.record(false, 0);
        assert!(Arc::ptr_eq(&b, &h.breaker("openai", "gpt-4o", c)));
        let fresh = h.breaker("openai", "gpt-4o", cfg(2, 0.5, 10));
        assert!(!Arc::ptr_eq(&b, &fresh));
        fresh.record(false, 0);
        fresh.record(false, 0);
        h.breaker("anthropic", "claude", c);
        let rows = h.snapshot(40);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].provider.as_str(), rows[0].state), ("anthropic", "closed"));
        assert_eq!(rows[1].state, "open");
        assert_eq!((rows[1].consecutive_failures, rows[1].opened_for_ms), (2, 40));

        let k = h.keys("openai", 2);
        assert!(Arc::ptr_eq(&k, &h.keys("openai", 2)));
        assert_eq!(h.keys("openai", 3).len(), 3);
        h.retain_providers(|p| p == "anthropic");
        assert_eq!(h.snapshot(0).len(), 1);
        assert_eq!(h.keys.len(), 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Admit,
        Record(bool),
        Abandon,
    }

    proptest::proptest! {
        #[test]
        fn random_sequences_keep_transitions_legal(
            ops in proptest::collection::vec(
                (proptest::prop_oneof![
                    proptest::strategy::Just(Op::Admit),
                    proptest::prelude::any::<bool>().prop_map(Op::Record),
                    proptest::strategy::Just(Op::Abandon),
                ], 0u64..20_000),
                0..300,
            ),
            consecutive in 0u32..6,
            min in 0u32..12,
        ) {
            let b = Breaker::new(BreakerConfig {
                consecutive_failures: consecutive,
                error_ratio: 0.5,
                min_requests: min,
                window: Duration::from_secs(10),
                cooldown: Duration::from_secs(5),
            });
            let mut now = 0u64;
            for (op, dt) in ops {
                now += dt;
                let before = b.state(now);
                let (phase, deadline) = split_word(b.phase.load(Ordering::Acquire));
                let probing = phase == PROBING;
                match op {
                    Op::Admit => {
                        let expected = match before {
                            BreakerState::Closed => Admission::Allowed,
                            BreakerState::Open => Admission::Rejected,
                            BreakerState::HalfOpen if probing && now < deadline => Admission::Rejected,
                            BreakerState::HalfOpen => Admission::Probe,
                        };
                        prop_assert_eq!(b.admit(now), expected);
                        prop_assert_ne!(b.admit(now), Admission::Probe); // never two at once
                    }
                    Op::Record(ok) => b.record(ok, now),
                    Op::Abandon => b.abandon_probe(now),
                }
                let after = b.state(now);
                match (before, after) {
                    // Leaving closed only by a failure; reaching closed only by a probe's success.
                    (BreakerState::Closed, BreakerState::Closed) => {}
                    (BreakerState::Closed, _) => prop_assert!(matches!(op, Op::Record(false))),
                    (_, BreakerState::Closed) => {
                        prop_assert!(matches!(op, Op::Record(true)) && probing)
                    }
                    (BreakerState::Open, BreakerState::HalfOpen) => prop_assert!(false),
                    _ => {}
                }
                prop_assert!(after == BreakerState::Closed || b.opened_for_ms(now) <= now);
            }
        }
    }
}
