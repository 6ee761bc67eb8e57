//! A node's share of one shared counter: the quota it has leased from Redis and not yet used.
//!
//! A reservation takes from `credit` with one compare-and-swap; only when the credit cannot
//! cover it does the request go to Redis (for its shortfall plus a chunk). A settle puts the
//! unused part of a reservation back into `credit` (or takes more: a negative credit is usage
//! beyond what was leased, charged to Redis at the next flush). Credit left idle is given back
//! by the link's flush, so a quiet node does not sit on quota another node needs.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use crate::limits::limiter::Period;

/// Which counter of a scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Counter {
    Rpm,
    Tpm,
    Tpd,
    Slots,
    Budget(Period),
}

pub(super) use crate::time::{DAY_MS, MINUTE_MS};

/// How long a refusal from Redis is trusted: a request that would not fit on the level Redis
/// reported then is refused here without asking again. Shorter than a flush or two, so credit
/// another node gives back meanwhile is seen soon after.
pub(super) const KNOWN_REFUSAL_MS: u64 = 100;

impl Counter {
    pub(super) const ALL: [Counter; 8] = [
        Counter::Rpm,
        Counter::Tpm,
        Counter::Tpd,
        Counter::Slots,
        Counter::Budget(Period::Hour),
        Counter::Budget(Period::Day),
        Counter::Budget(Period::Days30),
        Counter::Budget(Period::Month),
    ];

    pub(super) fn index(self) -> usize {
        match self {
            Counter::Rpm => 0,
            Counter::Tpm => 1,
            Counter::Tpd => 2,
            Counter::Slots => 3,
            Counter::Budget(Period::Hour) => 4,
            Counter::Budget(Period::Day) => 5,
            Counter::Budget(Period::Days30) => 6,
            Counter::Budget(Period::Month) => 7,
        }
    }

    /// The bucket's period, for rate counters.
    pub(super) fn period_ms(self) -> Option<u64> {
        match self {
            Counter::Rpm | Counter::Tpm => Some(MINUTE_MS),
            Counter::Tpd => Some(DAY_MS),
            Counter::Slots | Counter::Budget(_) => None,
        }
    }

    /// The `kind` argument of the Redis scripts.
    pub(super) fn script_kind(self) -> &'static str {
        match self {
            Counter::Rpm | Counter::Tpm | Counter::Tpd => "r",
            Counter::Budget(_) => "b",
            Counter::Slots => "s",
        }
    }

    /// The key suffix in Redis (budgets add their window start).
    pub(super) fn name(self) -> &'static str {
        match self {
            Counter::Rpm => "rpm",
            Counter::Tpm => "tpm",
            Counter::Tpd => "tpd",
            Counter::Slots => "conc",
            Counter::Budget(p) => p.as_str(),
        }
    }

    /// How much more than a request's shortfall to lease at once: the fewer Redis calls the
    /// larger it is, the more quota a node can hold that another one cannot use (until the idle
    /// give-back). Redis grants less when less is left, so leases shrink near a limit.
    pub(super) fn chunk(self, limit: u64, amount: u64) -> u64 {
        match self {
            Counter::Rpm | Counter::Tpm | Counter::Tpd => limit / 16,
            Counter::Slots => (limit / 8).max(1),
            Counter::Budget(_) => (limit / 32).min(amount.saturating_mul(64)),
        }
    }
}

/// One counter of one scope on this node.
#[derive(Debug, Default)]
pub(super) struct Account {
    /// Leased units not reserved by a request here; negative: used beyond the lease.
    credit: AtomicI64,
    /// Slots only: this node's count in Redis (leased and not given back), for heartbeats.
    pub leased: AtomicU64,
    /// Usage while Redis was unreachable, charged when it is back.
    pub owed: AtomicU64,
    pub last_use_ms: AtomicU64,
    /// Give the credit back at the next flush (a request was refused here).
    pub give_now: AtomicBool,
    /// A lease carrying a chunk (a prefetch, or a waiting request's) is under way: requests
    /// short meanwhile lease only what they need, so a burst of them does not lease a chunk
    /// each and hold quota the other nodes need. The link clears it once the chunk is credited.
    pub refilling: AtomicBool,
    /// Budgets: the window (start, Unix ms) the credit belongs to.
    pub window: AtomicU64,
    /// The last limit a request checked against (for the flush's script arguments).
    pub limit: AtomicU64,
    /// The counter's cluster-wide use as Redis last reported it, leases included, and when.
    pub level: AtomicU64,
    pub level_ms: AtomicU64,
    /// When Redis last refused a lease of this counter (`level` is from that refusal).
    pub refused_ms: AtomicU64,
}

impl Account {
    /// Takes `amount` from the credit if it covers it.
    pub(super) fn take(&self, amount: u64) -> bool {
        let Ok(amount) = i64::try_from(amount) else {
            return false;
        };
        self.credit
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                (c >= amount).then(|| c - amount)
            })
            .is_ok()
    }

    /// Takes whatever positive credit there is, up to `amount`; returns it.
    pub(super) fn take_some(&self, amount: u64) -> u64 {
        let cap = i64::try_from(amount).unwrap_or(i64::MAX);
        match self
            .credit
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| (c > 0).then(|| c - c.min(cap)))
        {
            Ok(before) => before.min(cap) as u64,
            Err(_) => 0,
        }
    }

    /// Adds (or with a negative `delta`, removes) credit.
    pub(super) fn add(&self, delta: i64) {
        self.credit.fetch_add(delta, Ordering::AcqRel);
    }

    pub(super) fn credit(&self) -> i64 {
        self.credit.load(Ordering::Acquire)
    }

    /// Takes all the credit if it is `expected` (for the flush): true if it was.
    pub(super) fn clear(&self, expected: i64) -> bool {
        self.credit
            .compare_exchange(expected, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub(super) fn touch(&self, now_ms: u64) {
        if self.last_use_ms.load(Ordering::Relaxed) != now_ms {
            self.last_use_ms.store(now_ms, Ordering::Relaxed);
        }
    }

    /// Records Redis's view after a lease.
    pub(super) fn observe(&self, level: u64, now_ms: u64) {
        self.level.store(level, Ordering::Release);
        self.level_ms.store(now_ms, Ordering::Release);
    }

    /// Records a refusal from Redis, with the level it reported.
    pub(super) fn refused(&self, level: u64, now_ms: u64) {
        self.observe(level, now_ms);
        self.refused_ms.store(now_ms, Ordering::Release);
    }

    /// This node gave `amount` of its credit back: Redis's level is that much lower.
    pub(super) fn gave_back(&self, amount: u64) {
        let _ = self
            .level
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| Some(l.saturating_sub(amount)));
    }

    /// A give-back that did not reach Redis: the credit is back here, and the level as before.
    pub(super) fn give_failed(&self, amount: u64) {
        self.add(i64::try_from(amount).unwrap_or(i64::MAX));
        let _ = self
            .level
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| Some(l.saturating_add(amount)));
    }

    /// Redis refused this counter less than `KNOWN_REFUSAL_MS` ago, and on what it reported
    /// then (drained since, less this node's credit) `amount` does not fit under `cap` either:
    /// the use it would add to. `None`: ask Redis.
    pub(super) fn known_short(&self, counter: Counter, limit: u64, cap: f64, amount: u64, now_ms: u64) -> Option<u64> {
        let refused = self.refused_ms.load(Ordering::Acquire);
        // A clock that stepped back ends it too (it must not outlast its 100 ms).
        if refused == 0 || now_ms < refused || now_ms - refused >= KNOWN_REFUSAL_MS {
            return None;
        }
        let used = self.use_now(counter, limit, now_ms)?;
        (used.saturating_add(amount) as f64 > cap).then_some(used)
    }

    /// The cluster-wide use now, as far as this node knows: Redis's last level, drained since
    /// (rate counters), less this node's own unused credit (leased, so in Redis's level, but
    /// still available). `None` before the first lease.
    pub(super) fn use_now(&self, counter: Counter, limit: u64, now_ms: u64) -> Option<u64> {
        let at = self.level_ms.load(Ordering::Acquire);
        if at == 0 {
            return None;
        }
        let mut level = self.level.load(Ordering::Acquire);
        if let Some(period) = counter.period_ms() {
            let drained = u128::from(now_ms.saturating_sub(at)) * u128::from(limit) / u128::from(period);
            level = level.saturating_sub(u64::try_from(drained).unwrap_or(u64::MAX));
        }
        let credit = u64::try_from(self.credit().max(0)).unwrap_or(0);
        Some(level.saturating_sub(credit))
    }

    /// Budgets: moves the account to `window` if it is a later one. Credit of an ended window is
    /// dropped (its lease counts in that window's key only, which expires).
    pub(super) fn enter_window(&self, window: u64) {
        let current = self.window.load(Ordering::Acquire);
        if current < window
            && self
                .window
                .compare_exchange(current, window, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.credit.store(0, Ordering::Release);
            self.level_ms.store(0, Ordering::Release);
        }
    }

    /// Holds nothing worth keeping.
    pub(super) fn is_idle(&self) -> bool {
        self.credit() == 0 && self.owed.load(Ordering::Acquire) == 0 && self.leased.load(Ordering::Acquire) == 0
    }
}

/// Every counter of one scope.
#[derive(Debug, Default)]
pub(super) struct ScopeAccounts {
    accounts: [Account; 8],
}

impl ScopeAccounts {
    pub(super) fn get(&self, counter: Counter) -> &Account {
        &self.accounts[counter.index()]
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (Counter, &Account)> {
        Counter::ALL.into_iter().map(|c| (c, self.get(c)))
    }

    pub(super) fn is_idle(&self, now_ms: u64, idle_ms: u64) -> bool {
        self.accounts
            .iter()
            .all(|a| a.is_idle() && now_ms.saturating_sub(a.last_use_ms.load(Ordering::Relaxed)) >= idle_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_only_what_the_credit_covers() {
        let a = Account::default();
        assert!(!a.take(1));
        a.add(10);
        assert!(a.take(4));
        assert!(!a.take(7));
        assert_eq!(a.credit(), 6);
        assert_eq!(a.take_some(100), 6);
        assert_eq!(a.credit(), 0);
        assert_eq!(a.take_some(5), 0);
        a.add(-3);
        assert_eq!(a.take_some(5), 0, "a debt is not credit");
        assert!(!a.take(0) || a.credit() >= 0);
    }

    #[test]
    fn use_now_drains_and_excludes_own_credit() {
        let a = Account::default();
        assert_eq!(a.use_now(Counter::Rpm, 60, 1_000), None);
        a.observe(30, 1_000);
        a.add(5);
        // 30 used (5 of it this node's unused credit), 10 s later 10 drained.
        assert_eq!(a.use_now(Counter::Rpm, 60, 11_000), Some(15));
        assert_eq!(a.use_now(Counter::Budget(Period::Day), 60, 11_000), Some(25));
    }

    #[test]
    fn a_refusal_is_trusted_briefly_and_counts_own_credit_as_available() {
        let a = Account::default();
        let day = Counter::Budget(Period::Day);
        assert_eq!(a.known_short(day, 100, 100.0, 60, 1_000), None, "never refused");
        // Redis: 70 used cluster-wide, 10 of it this node's unused credit.
        a.add(10);
        a.refused(70, 1_000);
        assert_eq!(a.known_short(day, 100, 100.0, 41, 1_050), Some(60), "60 + 41 > 100");
        assert_eq!(
            a.known_short(day, 100, 100.0, 40, 1_050),
            None,
            "60 + 40 fits: ask Redis"
        );
        assert_eq!(a.known_short(day, 100, 100.0, 41, 1_099), Some(60));
        assert_eq!(a.known_short(day, 100, 100.0, 41, 1_100), None, "expired");
        // Giving the credit back leaves the use the same (Redis's level drops with it).
        a.refused(70, 2_000);
        assert!(a.clear(10));
        a.gave_back(10);
        assert_eq!(a.known_short(day, 100, 100.0, 41, 2_001), Some(60));
        assert_eq!(a.known_short(day, 100, 100.0, 40, 2_001), None);
        // ... and a give-back that failed puts both back.
        a.give_failed(10);
        assert_eq!(a.credit(), 10);
        assert_eq!(a.known_short(day, 100, 100.0, 41, 2_001), Some(60));
        assert_eq!(a.known_short(day, 100, 100.0, 40, 2_001), None);
        // A tier's share caps lower (50 reported, 10 of it this node's credit).
        a.refused(50, 3_000);
        assert_eq!(a.known_short(Counter::Rpm, 60, 30.0, 1, 3_050), Some(40));
        assert_eq!(a.known_short(Counter::Rpm, 60, 60.0, 1, 3_050), None);
        // A rate drains meanwhile: 60,000 a minute is one a millisecond.
        let b = Account::default();
        b.refused(60_000, 10_000);
        assert_eq!(b.known_short(Counter::Tpm, 60_000, 60_000.0, 51, 10_050), Some(59_950));
        assert_eq!(b.known_short(Counter::Tpm, 60_000, 60_000.0, 50, 10_050), None);
        // A new budget window forgets the level.
        let c = Account::default();
        c.enter_window(1);
        c.refused(100, 5_000);
        c.enter_window(2);
        assert_eq!(c.known_short(day, 100, 100.0, 1, 5_001), None);
        // A clock that stepped back ends it.
        let d = Account::default();
        d.refused(100, 5_000);
        assert_eq!(d.known_short(day, 100, 100.0, 1, 5_000), Some(100));
        assert_eq!(d.known_short(day, 100, 100.0, 1, 4_999), None);
    }

    #[test]
    fn a_new_window_drops_the_old_credit() {
        let a = Account::default();
        a.enter_window(100);
        a.add(50);
        a.enter_window(100);
        assert_eq!(a.credit(), 50);
        a.enter_window(50);
        assert_eq!(a.credit(), 50, "windows only move forward");
        a.enter_window(200);
        assert_eq!(a.credit(), 0);
    }

    #[test]
    fn chunks_shrink_with_the_request_for_budgets() {
        assert_eq!(Counter::Rpm.chunk(600, 1), 37);
        assert_eq!(Counter::Slots.chunk(3, 1), 1);
        assert_eq!(Counter::Budget(Period::Day).chunk(500_000_000, 1_000_000), 15_625_000);
        assert_eq!(
            Counter::Budget(Period::Day).chunk(500_000_000_000, 1_000_000),
            64_000_000
        );
        assert_eq!(Counter::Budget(Period::Day).chunk(3_200, 1_000_000), 100);
    }
}
