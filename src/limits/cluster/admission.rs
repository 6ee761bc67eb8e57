//! A request admitted by the cluster: its reservations in each scope's local credit, resized when
//! the estimate is refined and settled (or, dropped, counted as estimated) when it ends.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::account::{Counter, ScopeAccounts};
use crate::limits::limiter::{Period, RateHeaders};

pub(super) fn bit(counter: Counter) -> u8 {
    1 << counter.index()
}

/// `reserved - actual` as a signed change of credit (saturating).
fn delta(reserved: u64, actual: u64) -> i64 {
    i64::try_from(reserved)
        .unwrap_or(i64::MAX)
        .saturating_sub(i64::try_from(actual).unwrap_or(i64::MAX))
}

/// A scope's reservations.
pub(super) struct HeldScope {
    pub(super) scope: Arc<ScopeAccounts>,
    /// Counters reserved in (bits by `Counter::index`).
    pub(super) marks: u8,
    /// Budgets: the window each reservation was made in, by period.
    pub(super) windows: [u64; 4],
}

/// Short of credit: what the request took locally and what it needs leased.
pub(super) struct Short {
    pub(super) scope: usize,
    pub(super) counter: Counter,
    pub(super) taken: u64,
    pub(super) amount: u64,
}

/// A request admitted by the cluster. Settle it when the response ends (as `limiter::Admission`);
/// dropping it unsettled counts the estimate as used.
pub struct ClusterAdmission {
    pub(super) held: Vec<HeldScope>,
    pub(super) tokens: u64,
    pub(super) cost: u64,
    pub(super) headers: RateHeaders,
    pub(super) admitted_ms: u64,
    /// Usage owed to Redis (served with local limits while it was down) rather than reserved.
    pub(super) owed: bool,
    pub(super) settled: bool,
}

impl ClusterAdmission {
    pub fn headers(&self) -> RateHeaders {
        self.headers
    }

    /// Replaces the reservation's estimate by a refined one (see `limiter::Admission::resize`):
    /// the difference goes back to (or comes from) this node's credit.
    /// (Owed usage is counted at settle, from the actual usage: nothing to move here.)
    pub fn resize(&mut self, tokens: u64, cost_nanos: i64, _now_ms: u64) {
        let cost = u64::try_from(cost_nanos).unwrap_or(0);
        if !self.owed {
            for h in &self.held {
                for counter in [Counter::Tpm, Counter::Tpd] {
                    if h.marks & bit(counter) != 0 {
                        h.scope.get(counter).add(delta(self.tokens, tokens));
                    }
                }
                for p in Period::ALL {
                    let counter = Counter::Budget(p);
                    let a = h.scope.get(counter);
                    if h.marks & bit(counter) != 0 && a.window.load(Ordering::Acquire) == h.windows[p_index(p)] {
                        a.add(delta(self.cost, cost));
                    }
                }
            }
        }
        if let Some(r) = self.headers.remaining_tokens.as_mut() {
            *r = (*r + self.tokens)
                .saturating_sub(tokens)
                .min(self.headers.limit_tokens.unwrap_or(u64::MAX));
        }
        self.tokens = tokens;
        self.cost = cost;
    }

    pub fn settle(mut self, actual_tokens: u64, actual_cost_nanos: i64, now_ms: u64) {
        self.finish(actual_tokens, u64::try_from(actual_cost_nanos).unwrap_or(0), now_ms);
    }

    fn finish(&mut self, tokens: u64, cost: u64, now_ms: u64) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        for h in &self.held {
            for counter in Counter::ALL {
                if h.marks & bit(counter) == 0 {
                    continue;
                }
                let a = h.scope.get(counter);
                a.touch(now_ms);
                if self.owed {
                    let used = match counter {
                        Counter::Rpm => 1,
                        Counter::Tpm | Counter::Tpd => tokens,
                        Counter::Slots => 0,
                        Counter::Budget(p) if a.window.load(Ordering::Acquire) == h.windows[p_index(p)] => cost,
                        Counter::Budget(_) => 0,
                    };
                    a.owed.fetch_add(used, Ordering::AcqRel);
                    continue;
                }
                match counter {
                    Counter::Rpm => {}
                    Counter::Tpm | Counter::Tpd => a.add(delta(self.tokens, tokens)),
                    Counter::Slots => a.add(1),
                    Counter::Budget(p) => {
                        if a.window.load(Ordering::Acquire) == h.windows[p_index(p)] {
                            a.add(delta(self.cost, cost));
                        }
                    }
                }
            }
        }
    }
}

impl Drop for ClusterAdmission {
    fn drop(&mut self) {
        let (tokens, cost, at) = (self.tokens, self.cost, self.admitted_ms);
        self.finish(tokens, cost, at);
    }
}

pub(super) fn p_index(p: Period) -> usize {
    Counter::Budget(p).index() - 4
}
