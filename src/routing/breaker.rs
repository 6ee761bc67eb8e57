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
//! What counts as a failure is the caller's decision (`routing::attempts`): a call that got no
//! answer, a 5xx or another status the routing retries is a failure; any other 4xx is a *success*
//! because the target answered (the request was bad, not the target), and must not push a healthy
//! target towards open. A 429 is neither: it is the provider's rate limit, not its health, and
//! the key pool's business (a probe that got one is abandoned, not recorded).

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// Milliseconds since the first call in this process, from a monotonic clock: the `now_ms` every
/// function of this module takes.
pub fn now_ms() -> u64 {
    ms_at(Instant::now())
}

/// `now_ms()` at the instant `t` (0 for an instant before the clock started).
pub fn ms_at(t: Instant) -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let ms = t
        .saturating_duration_since(*START.get_or_init(Instant::now))
        .as_millis();
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

    /// Forgets `provider`'s breakers and key pool: the next lookup creates fresh ones (its address
    /// changed on reload; holders of the old ones keep them).
    pub fn forget_provider(&self, provider: &str) {
        self.breakers.retain(|(p, _), _| p != provider);
        self.keys.remove(provider);
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
#[path = "breaker_tests.rs"]
mod tests;
