//! Balance: the order in which one alias's targets are tried, and sticky A/B splits.
//!
//! Owns the per-target live statistics (`TargetStats`: in-flight count and an EWMA of
//! time-to-first-byte), the lock-free smooth weighted round-robin (`Weighted`), the ordering
//! strategies (`order`) and the A/B arm choice (`ab_arm`).
//!
//! Invariants:
//! - `order` always returns a permutation of `0..n`: the first index is tried first, the rest
//!   are the retry/fallback order. It allocates exactly one `Vec` of length `n` and takes no lock.
//! - `TargetStats` is updated with atomics only; the in-flight count is held by an
//!   `InflightGuard`, so a request that errors, panics or is cancelled cannot leak a slot.
//! - `Weighted` does all its work at config load; a pick is one `fetch_add` and one index.
//! - `ab_arm` is deterministic for a given (salt, sticky key) across processes and restarts: the
//!   hash has fixed keys (FNV-1a + a fixed finalizer), never std's per-process `RandomState`.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;

/// How the targets of one alias are ordered for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Configured order: the first target is primary, the rest are fallbacks.
    #[default]
    Priority,
    /// Smooth weighted round-robin picks the first target; the rest follow in configured order.
    Weighted,
    /// Lowest EWMA time-to-first-byte first; targets with no sample yet go first (explore).
    LeastLatency,
    /// Fewest requests in flight first.
    LeastBusy,
    /// Cheapest first by the pricing table, for this request's estimated tokens (targets whose
    /// context window it does not fit are skipped later); unpriced targets last.
    Cost,
}

/// Sentinel in `TargetStats::ewma_us` for "no sample yet".
const NO_SAMPLE: u64 = u64::MAX;

/// Live statistics of one (provider, upstream model). Shared across config reloads through
/// `Stats`, updated lock-free by the proxy.
#[derive(Debug)]
pub struct TargetStats {
    inflight: AtomicU32,
    /// EWMA of time-to-first-byte in microseconds, `NO_SAMPLE` before the first observation.
    ewma_us: AtomicU64,
}

impl Default for TargetStats {
    fn default() -> Self {
        TargetStats {
            inflight: AtomicU32::new(0),
            ewma_us: AtomicU64::new(NO_SAMPLE),
        }
    }
}

impl TargetStats {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one request in flight until the returned guard is dropped. Takes `&Arc<Self>` so
    /// the guard owns its stats and can live in the per-request ctx (a refcount bump, no
    /// allocation).
    pub fn start(self: &Arc<Self>) -> InflightGuard {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        InflightGuard {
            stats: Arc::clone(self),
        }
    }

    pub fn inflight(&self) -> u32 {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Folds one time-to-first-byte sample into the EWMA with alpha = 0.2
    /// (`new = old + 0.2 * (sample - old)`, i.e. `(4 * old + sample) / 5` rounded): about the last
    /// ten requests dominate, so a target that turns slow is noticed within a handful of requests
    /// while one slow outlier moves the average by only a fifth. The first sample sets it.
    pub fn observe_ttfb(&self, d: Duration) {
        // Saturate below the sentinel; 584 000 years is an acceptable ceiling.
        let sample = u64::try_from(d.as_micros()).unwrap_or(NO_SAMPLE - 1).min(NO_SAMPLE - 1);
        // `fetch_update` only fails if the closure returns None, which it never does.
        let _ = self.ewma_us.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
            if old == NO_SAMPLE {
                return Some(sample);
            }
            let next = (u128::from(old) * 4 + u128::from(sample) + 2) / 5;
            // Both inputs are below NO_SAMPLE, so their weighted mean is too.
            Some(u64::try_from(next).unwrap_or(NO_SAMPLE - 1))
        });
    }

    /// The current EWMA of time-to-first-byte, `None` before any sample.
    pub fn ewma_ttfb(&self) -> Option<Duration> {
        match self.ewma_us.load(Ordering::Relaxed) {
            NO_SAMPLE => None,
            us => Some(Duration::from_micros(us)),
        }
    }
}

/// One request in flight on a target; decrements the count when dropped (including on unwind
/// and when the request future is cancelled).
#[derive(Debug)]
#[must_use = "the request counts as in flight only while the guard is alive"]
pub struct InflightGuard {
    stats: Arc<TargetStats>,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.stats.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Registry of `TargetStats` keyed by (provider name, upstream model). It outlives config
/// snapshots so a reload keeps the learned latencies and the in-flight counts of requests that
/// started under the old config. Meant to be resolved at config load (the snapshot keeps the
/// `Arc`s); a lookup of an existing key does not allocate.
#[derive(Debug, Default)]
pub struct Stats {
    map: DashMap<(String, String), Arc<TargetStats>>,
}

impl Stats {
    pub fn new() -> Self {
        Self::default()
    }

    /// The stats of (provider, model), created on first use.
    pub fn get(&self, provider: &str, model: &str) -> Arc<TargetStats> {
        // Bind the hit before `entry`: a live read guard on the same shard would deadlock it.
        let hit = self
            .map
            .get(&(provider, model) as &dyn KeyPair)
            .map(|r| Arc::clone(r.value()));
        match hit {
            Some(s) => s,
            None => Arc::clone(
                self.map
                    .entry((provider.to_string(), model.to_string()))
                    .or_default()
                    .value(),
            ),
        }
    }

    /// Forgets `provider`'s targets: the next lookup creates fresh stats (its address changed on
    /// reload). Requests in flight keep decrementing the stats they hold.
    pub fn forget_provider(&self, provider: &str) {
        self.map.retain(|(p, _), _| p != provider);
    }

    /// Keeps only the targets of providers for which `keep` is true (after a reload).
    pub fn retain_providers(&self, keep: impl Fn(&str) -> bool) {
        self.map.retain(|(p, _), _| keep(p));
    }

    /// Number of distinct targets seen.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Lets `Stats::get` look up a `(String, String)` key with two `&str` without building Strings.
/// Hashes exactly like the tuple (`str` then `str`), as `Borrow` requires.
trait KeyPair {
    fn first(&self) -> &str;
    fn second(&self) -> &str;
}

impl KeyPair for (String, String) {
    fn first(&self) -> &str {
        &self.0
    }
    fn second(&self) -> &str {
        &self.1
    }
}

impl KeyPair for (&str, &str) {
    fn first(&self) -> &str {
        self.0
    }
    fn second(&self) -> &str {
        self.1
    }
}

impl<'a> Borrow<dyn KeyPair + 'a> for (String, String) {
    fn borrow(&self) -> &(dyn KeyPair + 'a) {
        self
    }
}

impl Hash for dyn KeyPair + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.first().hash(state);
        self.second().hash(state);
    }
}

impl PartialEq for dyn KeyPair + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.first() == other.first() && self.second() == other.second()
    }
}

impl Eq for dyn KeyPair + '_ {}

/// Longest precomputed SWRR sequence; larger weight sums are scaled down to about this.
pub const MAX_SEQUENCE: u64 = 10_000;

/// Smooth weighted round-robin (nginx's algorithm) made lock-free: the selection sequence of one
/// full cycle is precomputed at config load, and a request takes the next position of it with
/// an atomic counter. Over every full cycle each target is picked exactly `weight` times, spread
/// as evenly as nginx spreads them (weights 5,1,1 give a a b a c a a).
#[derive(Debug)]
pub struct Weighted {
    seq: Vec<u16>,
    next: AtomicUsize,
}

impl Weighted {
    /// Builds the sequence for `weights` (one per target, in configured order).
    ///
    /// A weight of 0 is never picked (the target remains a fallback); if every weight is 0 all
    /// count as 1. If the sum exceeds `MAX_SEQUENCE`, weights are scaled down proportionally,
    /// each nonzero weight staying at least 1 (so the cycle may exceed the cap by at most one per
    /// target). Only the first 65 536 targets can be picked.
    pub fn new(weights: &[u32]) -> Self {
        let max_targets = usize::from(u16::MAX) + 1;
        let mut w: Vec<u64> = weights.iter().take(max_targets).map(|&x| u64::from(x)).collect();
        if w.iter().all(|&x| x == 0) {
            w.iter_mut().for_each(|x| *x = 1);
        }
        let sum: u64 = w.iter().sum();
        if sum > MAX_SEQUENCE {
            for x in w.iter_mut().filter(|x| **x > 0) {
                *x = (*x * MAX_SEQUENCE / sum).max(1);
            }
        }
        Weighted {
            seq: swrr_cycle(&w),
            next: AtomicUsize::new(0),
        }
    }

    /// The index of the target to try first for the next request. Returns 0 when built from no
    /// weights.
    pub fn pick(&self) -> usize {
        if self.seq.is_empty() {
            return 0;
        }
        let pos = self.next.fetch_add(1, Ordering::Relaxed) % self.seq.len();
        self.seq.get(pos).map_or(0, |&i| usize::from(i))
    }

    /// Length of one full cycle (the sum of the effective weights).
    pub fn cycle_len(&self) -> usize {
        self.seq.len()
    }
}

/// One full cycle of nginx's smooth weighted round-robin: each step adds every weight to its
/// target's current value, picks the largest current (the first on ties) and subtracts the total
/// from it. After `sum(weights)` steps every current value is back to 0, so the cycle repeats.
/// Indices past `u16::MAX` are never picked (`Weighted::new` does not pass them).
fn swrr_cycle(weights: &[u64]) -> Vec<u16> {
    let total: u64 = weights.iter().sum();
    // Weights are at most u32::MAX each and at most 65 536 of them, so these fit.
    let (Ok(total_i), Ok(len)) = (i64::try_from(total), usize::try_from(total)) else {
        return Vec::new();
    };
    let mut current = vec![0i64; weights.len()];
    let mut seq = Vec::with_capacity(len);
    for _ in 0..total {
        let mut best: Option<(usize, i64)> = None;
        for (i, (c, &w)) in current.iter_mut().zip(weights).enumerate() {
            *c += i64::try_from(w).unwrap_or(0);
            if best.is_none_or(|(_, b)| *c > b) {
                best = Some((i, *c));
            }
        }
        let Some((i, _)) = best else { break };
        if let Some(c) = current.get_mut(i) {
            *c -= total_i;
        }
        seq.push(u16::try_from(i).unwrap_or(u16::MAX));
    }
    seq
}

/// Bits of an `order` sort key that hold the target index; the rest hold the metric.
const INDEX_BITS: u32 = 16;
const INDEX_MASK: usize = (1 << INDEX_BITS) - 1;
const METRIC_MAX: u64 = (usize::MAX >> INDEX_BITS) as u64;

/// Orders the candidate targets (indices `0..n`) for one request: the first is tried first, the
/// rest are the retry/fallback order. `stats[i]` is target `i`'s stats (`&TargetStats`,
/// `Arc<TargetStats>`, ...); `weighted` is the alias's `Weighted` for `Strategy::Weighted`.
///
/// - `Priority`: `0..n` as configured.
/// - `Weighted`: the picked index first, then the others in configured order (configured order
///   if `weighted` is `None` or picks an index `>= n`).
/// - `LeastLatency`: EWMA time-to-first-byte ascending, unsampled targets first (so a new or
///   reloaded target gets traffic and a sample), ties in configured order.
/// - `LeastBusy`: in-flight count ascending, ties in configured order.
///
/// A target without an entry in `stats` sorts last. Above 65 536 targets the order is the
/// configured one. The result is always a permutation of `0..n`, allocated as one `Vec`.
pub fn order<S: Deref<Target = TargetStats>>(
    strategy: Strategy,
    n: usize,
    weighted: Option<&Weighted>,
    stats: &[S],
) -> Vec<usize> {
    let mut out = Vec::with_capacity(n);
    match strategy {
        Strategy::Priority => out.extend(0..n),
        Strategy::Weighted => {
            let first = weighted.map(Weighted::pick).filter(|&i| i < n);
            match first {
                Some(first) => {
                    out.push(first);
                    out.extend((0..n).filter(|&i| i != first));
                }
                None => out.extend(0..n),
            }
        }
        Strategy::LeastLatency => sort_by_metric(&mut out, n, stats, |s| match s.ewma_ttfb() {
            None => 0,
            Some(d) => u64::try_from(d.as_micros()).unwrap_or(u64::MAX).saturating_add(1),
        }),
        Strategy::LeastBusy => sort_by_metric(&mut out, n, stats, |s| u64::from(s.inflight())),
        // Needs the request's costs: see `order_by_cost`.
        Strategy::Cost => out.extend(0..n),
    }
    out
}

/// Targets by estimated cost, cheapest first (ties keep the configured order); targets without
/// a price go last, in configured order.
pub fn order_by_cost(costs: &[Option<i64>]) -> Vec<usize> {
    let mut out: Vec<usize> = (0..costs.len()).collect();
    out.sort_by_key(|&i| (costs[i].is_none(), costs[i].unwrap_or(0), i));
    out
}

/// Fills `out` with `0..n` sorted by `metric` ascending, ties by index. Each metric is read once
/// (the atomics move under us, and a sort with a shifting comparator may panic), packed with the
/// index into one `usize` (metric high, index low) so the sort needs no second buffer.
fn sort_by_metric<S: Deref<Target = TargetStats>>(
    out: &mut Vec<usize>,
    n: usize,
    stats: &[S],
    metric: impl Fn(&TargetStats) -> u64,
) {
    if n > INDEX_MASK + 1 {
        out.extend(0..n);
        return;
    }
    out.extend((0..n).map(|i| {
        let m = stats.get(i).map_or(METRIC_MAX, |s| metric(s).min(METRIC_MAX));
        // `m <= METRIC_MAX` fits in `usize` after the shift; on a 32-bit target the metric
        // saturates at 65 535 (in-flight count or microseconds), which still yields a permutation.
        (usize::try_from(m).unwrap_or(usize::MAX) << INDEX_BITS) | i
    }));
    out.sort_unstable();
    out.iter_mut().for_each(|k| *k &= INDEX_MASK);
}

/// Fixed 64-bit FNV-1a parameters.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
/// Weyl step (2^64 / golden ratio): consecutive multiples are spread evenly over the range.
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;
/// Resolution of an A/B split.
const BASIS_POINTS: u64 = 10_000;

/// Spreads unkeyed A/B assignments; per process, which is fine since they are not sticky anyway.
static AB_COUNTER: AtomicU64 = AtomicU64::new(0);

fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// MurmurHash3's 64-bit finalizer: FNV-1a alone leaves the low bits of similar keys
/// ("user-1", "user-2", ...) correlated, which would skew `hash % 10_000`.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// Stable hash of (salt, key): the same in every process and on every restart.
fn ab_hash(salt: &str, key: &str) -> u64 {
    // 0xff never occurs in UTF-8, so ("ab", "c") and ("a", "bc") hash differently.
    let h = fnv1a(FNV_OFFSET, salt.as_bytes());
    let h = fnv1a(h, &[0xff]);
    fmix64(fnv1a(h, key.as_bytes()))
}

/// `percent` (0–100) as basis points; NaN and negatives are 0, above 100 is all.
fn basis_points(percent: f64) -> u64 {
    let bp = (percent * 100.0).round();
    if bp.is_nan() || bp <= 0.0 {
        0
    } else if bp >= BASIS_POINTS as f64 {
        BASIS_POINTS
    } else {
        // In (0, 10_000): the cast is exact.
        bp as u64
    }
}

/// Sticky A/B assignment: `true` means arm B, which receives `percent` % of traffic (resolution
/// 0.01 %).
///
/// With a sticky key the arm is `stable_hash(salt, key) % 10_000 < percent * 100`: deterministic
/// for a given (salt, key) across processes and restarts, and independent between experiments
/// with different salts. Without one, a per-process counter walks a golden-ratio sequence, so
/// even a short run of requests splits close to `percent`.
pub fn ab_arm(salt: &str, sticky: Option<&str>, percent: f64) -> bool {
    let bp = basis_points(percent);
    let slot = match sticky {
        Some(key) => ab_hash(salt, key) % BASIS_POINTS,
        None => unkeyed_slot(AB_COUNTER.fetch_add(1, Ordering::Relaxed)),
    };
    slot < bp
}

/// Slot in `0..10_000` of the `c`-th unkeyed request: the top 32 bits of the Weyl sequence
/// `c * 2^64 / phi`, scaled.
fn unkeyed_slot(c: u64) -> u64 {
    ((c.wrapping_mul(GOLDEN) >> 32) * BASIS_POINTS) >> 32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{prop, prop_assert_eq, prop_oneof, proptest, Just};

    /// The classic stateful nginx algorithm, straight from `ngx_http_upstream_get_peer`.
    fn classic(weights: &[u64], picks: usize) -> Vec<usize> {
        let total: i64 = weights.iter().map(|&w| w as i64).sum();
        let mut current = vec![0i64; weights.len()];
        let mut out = Vec::new();
        for _ in 0..picks {
            let mut best: Option<usize> = None;
            for i in 0..weights.len() {
                current[i] += weights[i] as i64;
                if best.is_none() || current[i] > current[best.unwrap()] {
                    best = Some(i);
                }
            }
            let b = best.unwrap();
            current[b] -= total;
            out.push(b);
        }
        out
    }

    fn picks(w: &Weighted, k: usize) -> Vec<usize> {
        (0..k).map(|_| w.pick()).collect()
    }

    #[test]
    fn swrr_matches_nginx_for_5_1_1() {
        let w = Weighted::new(&[5, 1, 1]);
        assert_eq!(picks(&w, 7), vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(picks(&w, 7), vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(classic(&[5, 1, 1], 7), vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn swrr_counts_are_exact_per_cycle() {
        let w = Weighted::new(&[3, 1]);
        let p = picks(&w, 10_000);
        assert_eq!(p.iter().filter(|&&i| i == 0).count(), 7_500);
        assert_eq!(p.iter().filter(|&&i| i == 1).count(), 2_500);

        let w = Weighted::new(&[5, 1, 1]);
        let p = picks(&w, 7 * 1_000);
        assert_eq!(p.iter().filter(|&&i| i == 0).count(), 5_000);
        assert_eq!(p.iter().filter(|&&i| i == 1).count(), 1_000);
        assert_eq!(p.iter().filter(|&&i| i == 2).count(), 1_000);
    }

    #[test]
    fn swrr_edge_weights() {
        // Zero weight: never first.
        let w = Weighted::new(&[0, 2, 0, 1]);
        assert_eq!(w.cycle_len(), 3);
        assert!(picks(&w, 30).iter().all(|&i| i == 1 || i == 3));
        // All zero: equal.
        let w = Weighted::new(&[0, 0]);
        assert_eq!(picks(&w, 4), vec![0, 1, 0, 1]);
        // Empty.
        let w = Weighted::new(&[]);
        assert_eq!(w.pick(), 0);
        assert_eq!(
            order(Strategy::Weighted, 0, Some(&w), &[] as &[&TargetStats]),
            Vec::<usize>::new()
        );
        // Huge sum: scaled to about the cap, proportions kept, every nonzero weight still picked.
        let w = Weighted::new(&[u32::MAX, u32::MAX / 2, 1]);
        assert!(w.cycle_len() as u64 <= MAX_SEQUENCE + 3);
        let p = picks(&w, w.cycle_len());
        let c0 = p.iter().filter(|&&i| i == 0).count();
        let c1 = p.iter().filter(|&&i| i == 1).count();
        assert!((c0 as i64 - 2 * c1 as i64).abs() <= 2, "{c0} vs {c1}");
        assert_eq!(p.iter().filter(|&&i| i == 2).count(), 1);
    }

    proptest! {
        #[test]
        fn swrr_precomputed_equals_classic(weights in prop::collection::vec(1u32..50, 1..10)) {
            let w = Weighted::new(&weights);
            let wide: Vec<u64> = weights.iter().map(|&x| u64::from(x)).collect();
            let cycle = wide.iter().sum::<u64>() as usize;
            prop_assert_eq!(w.cycle_len(), cycle);
            prop_assert_eq!(picks(&w, 2 * cycle), classic(&wide, 2 * cycle));
            // Exact counts per cycle.
            let p = picks(&w, cycle);
            for (i, &wi) in weights.iter().enumerate() {
                prop_assert_eq!(p.iter().filter(|&&x| x == i).count(), wi as usize);
            }
        }

        #[test]
        fn order_is_a_permutation(
            strategy in prop_oneof![
                Just(Strategy::Priority),
                Just(Strategy::Weighted),
                Just(Strategy::LeastLatency),
                Just(Strategy::LeastBusy),
            ],
            weights in prop::collection::vec(0u32..20, 0..20),
            n in 0usize..20,
            samples in prop::collection::vec(prop::option::of(0u64..u64::MAX), 0..20),
            busy in prop::collection::vec(0u32..5, 0..20),
            skips in 0usize..10,
        ) {
            let stats: Vec<Arc<TargetStats>> = (0..samples.len().max(busy.len()))
                .map(|_| Arc::new(TargetStats::new()))
                .collect();
            for (s, us) in stats.iter().zip(&samples) {
                if let Some(us) = us {
                    s.observe_ttfb(Duration::from_micros(*us));
                }
            }
            let mut guards = Vec::new();
            for (s, &b) in stats.iter().zip(&busy) {
                for _ in 0..b {
                    guards.push(s.start());
                }
            }
            let w = Weighted::new(&weights);
            for _ in 0..skips {
                w.pick();
            }
            let mut got = order(strategy, n, Some(&w), &stats);
            got.sort_unstable();
            prop_assert_eq!(got, (0..n).collect::<Vec<_>>());
        }

        #[test]
        fn sticky_ab_is_deterministic(salt in ".{0,8}", key in ".{0,16}", pct in 0.0f64..100.0) {
            let a = ab_arm(&salt, Some(&key), pct);
            for _ in 0..3 {
                prop_assert_eq!(ab_arm(&salt, Some(&key), pct), a);
            }
        }
    }

    #[test]
    fn priority_and_weighted_order() {
        let s: Vec<Arc<TargetStats>> = (0..4).map(|_| Arc::new(TargetStats::new())).collect();
        assert_eq!(order(Strategy::Priority, 4, None, &s), vec![0, 1, 2, 3]);
        let w = Weighted::new(&[1, 0, 5, 0]);
        for _ in 0..20 {
            let o = order(Strategy::Weighted, 4, Some(&w), &s);
            match o[0] {
                0 => assert_eq!(o, vec![0, 1, 2, 3]),
                2 => assert_eq!(o, vec![2, 0, 1, 3]),
                other => panic!("picked zero-weight target {other}"),
            }
        }
        // No Weighted, or one built for more targets than offered: configured order.
        assert_eq!(order(Strategy::Weighted, 3, None, &s), vec![0, 1, 2]);
        let w = Weighted::new(&[0, 0, 0, 1]);
        assert_eq!(order(Strategy::Weighted, 3, Some(&w), &s), vec![0, 1, 2]);
    }

    #[test]
    fn ewma_first_sample_then_alpha_0_2() {
        let s = TargetStats::new();
        assert_eq!(s.ewma_ttfb(), None);
        s.observe_ttfb(Duration::from_millis(100));
        assert_eq!(s.ewma_ttfb(), Some(Duration::from_millis(100)));
        s.observe_ttfb(Duration::from_millis(200));
        assert_eq!(s.ewma_ttfb(), Some(Duration::from_millis(120)));
        s.observe_ttfb(Duration::ZERO);
        assert_eq!(s.ewma_ttfb(), Some(Duration::from_millis(96)));
        // A zero sample is a sample, not "none".
        let z = TargetStats::new();
        z.observe_ttfb(Duration::ZERO);
        assert_eq!(z.ewma_ttfb(), Some(Duration::ZERO));
        // Absurd durations saturate instead of wrapping or hitting the sentinel.
        z.observe_ttfb(Duration::MAX);
        assert!(z.ewma_ttfb().is_some());
    }

    #[test]
    fn least_latency_explores_then_follows_slowness() {
        let s: Vec<Arc<TargetStats>> = (0..3).map(|_| Arc::new(TargetStats::new())).collect();
        // Nothing sampled: configured order.
        assert_eq!(order(Strategy::LeastLatency, 3, None, &s), vec![0, 1, 2]);
        s[0].observe_ttfb(Duration::from_millis(50));
        s[1].observe_ttfb(Duration::from_millis(80));
        // Unsampled target 2 goes first.
        assert_eq!(order(Strategy::LeastLatency, 3, None, &s), vec![2, 0, 1]);
        s[2].observe_ttfb(Duration::from_millis(60));
        assert_eq!(order(Strategy::LeastLatency, 3, None, &s), vec![0, 2, 1]);
        // Target 0 turns slow: it drops behind within a few samples.
        let mut moved_after = None;
        for k in 1..=10 {
            s[0].observe_ttfb(Duration::from_millis(500));
            if order(Strategy::LeastLatency, 3, None, &s)[2] == 0 {
                moved_after = Some(k);
                break;
            }
        }
        assert!(moved_after.is_some_and(|k| k <= 3), "{moved_after:?}");
        assert_eq!(order(Strategy::LeastLatency, 3, None, &s), vec![2, 1, 0]);
        // Ties keep configured order.
        let t: Vec<Arc<TargetStats>> = (0..3).map(|_| Arc::new(TargetStats::new())).collect();
        for x in &t {
            x.observe_ttfb(Duration::from_millis(10));
        }
        assert_eq!(order(Strategy::LeastLatency, 3, None, &t), vec![0, 1, 2]);
    }

    #[test]
    fn least_busy_follows_inflight_and_guards_release() {
        let s: Vec<Arc<TargetStats>> = (0..3).map(|_| Arc::new(TargetStats::new())).collect();
        assert_eq!(order(Strategy::LeastBusy, 3, None, &s), vec![0, 1, 2]);
        let g0a = s[0].start();
        let g0b = s[0].start();
        let g1 = s[1].start();
        assert_eq!(s[0].inflight(), 2);
        assert_eq!(order(Strategy::LeastBusy, 3, None, &s), vec![2, 1, 0]);
        drop(g0a);
        drop(g0b);
        assert_eq!(s[0].inflight(), 0);
        assert_eq!(order(Strategy::LeastBusy, 3, None, &s), vec![0, 2, 1]);
        drop(g1);
        assert_eq!(order(Strategy::LeastBusy, 3, None, &s), vec![0, 1, 2]);

        // A request that panics still releases its slot.
        let target = Arc::clone(&s[2]);
        let r = std::panic::catch_unwind(move || {
            let _g = target.start();
            assert_eq!(target.inflight(), 1);
            panic!("request blew up");
        });
        assert!(r.is_err());
        assert_eq!(s[2].inflight(), 0);
    }

    #[test]
    fn order_accepts_plain_refs_and_short_stats() {
        let a = TargetStats::new();
        let b = TargetStats::new();
        b.observe_ttfb(Duration::from_millis(1));
        let refs: [&TargetStats; 2] = [&a, &b];
        assert_eq!(order(Strategy::LeastLatency, 2, None, &refs), vec![0, 1]);
        // A target missing from `stats` sorts last.
        assert_eq!(order(Strategy::LeastBusy, 3, None, &refs), vec![0, 1, 2]);
        assert_eq!(order(Strategy::LeastLatency, 3, None, &refs[..1]), vec![0, 1, 2]);
    }

    #[test]
    fn stats_registry_shares_by_key() {
        let reg = Stats::new();
        let a = reg.get("openai", "gpt-4o");
        let b = reg.get("openai", "gpt-4o");
        assert!(Arc::ptr_eq(&a, &b));
        let c = reg.get("openai", "gpt-4o-mini");
        assert!(!Arc::ptr_eq(&a, &c));
        // The separator is structural: ("ab","c") and ("a","bc") are different keys.
        let d = reg.get("ab", "c");
        let e = reg.get("a", "bc");
        assert!(!Arc::ptr_eq(&d, &e));
        assert_eq!(reg.len(), 4);
        let _g = a.start();
        assert_eq!(b.inflight(), 1);
    }

    #[test]
    fn ab_split_distribution() {
        let n = 100_000;
        let b = (0..n)
            .filter(|i| ab_arm("exp-1", Some(&format!("user-{i}")), 10.0))
            .count();
        let frac = b as f64 / n as f64;
        assert!((frac - 0.10).abs() <= 0.01, "{frac}");
        // Another salt reshuffles keys but keeps the share.
        let b2 = (0..n)
            .filter(|i| ab_arm("exp-2", Some(&format!("user-{i}")), 10.0))
            .count();
        assert!(((b2 as f64 / n as f64) - 0.10).abs() <= 0.01);
    }

    #[test]
    fn ab_extremes_and_stickiness() {
        for i in 0..10_000 {
            let k = format!("k{i}");
            assert!(!ab_arm("s", Some(&k), 0.0));
            assert!(ab_arm("s", Some(&k), 100.0));
            assert!(!ab_arm("s", None, 0.0));
            assert!(ab_arm("s", None, 100.0));
        }
        assert!(!ab_arm("s", Some("x"), f64::NAN));
        assert!(!ab_arm("s", Some("x"), -5.0));
        assert!(ab_arm("s", Some("x"), 250.0));
        let first = ab_arm("s", Some("alice"), 50.0);
        assert!((0..100).all(|_| ab_arm("s", Some("alice"), 50.0) == first));
        // Pinned value: the hash must not change between builds or processes.
        assert_eq!(ab_hash("exp", "alice"), ab_hash("exp", "alice"));
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn ab_unkeyed_splits_evenly() {
        // Any run of consecutive requests splits close to the share, from any starting point.
        for start in [0u64, 1, 12_345, u64::MAX - 500] {
            let b = (0..10_000u64)
                .filter(|i| unkeyed_slot(start.wrapping_add(*i)) < 1_000)
                .count();
            assert!((b as i64 - 1_000).abs() <= 5, "{start}: {b}");
            let b = (0..100u64)
                .filter(|i| unkeyed_slot(start.wrapping_add(*i)) < 1_000)
                .count();
            assert!((b as i64 - 10).abs() <= 2, "{start}: {b}");
        }
        assert!((0..10_000u64).all(|c| unkeyed_slot(c) < BASIS_POINTS));
    }

    #[test]
    fn cost_order_is_cheapest_first_unpriced_last() {
        assert_eq!(
            order_by_cost(&[Some(30), None, Some(10), Some(30), None]),
            vec![2, 0, 3, 1, 4]
        );
        assert_eq!(order_by_cost(&[None, None]), vec![0, 1]);
        assert_eq!(order_by_cost(&[]), Vec::<usize>::new());
    }
}
