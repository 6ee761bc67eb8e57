//! Refusals: from Redis, or from this node on a refusal Redis had just given.
//!
//! When Redis refuses a lease it reports the counter's level, and the node remembers it for
//! `KNOWN_REFUSAL_MS`. Meanwhile a request that would not fit on that level (drained since, less
//! this node's own credit) is refused here, with the reason and `Retry-After` Redis would have
//! given, without a call: clients hammering an exhausted key, or the tenant's bound-then-count
//! check asking twice, cost Redis one call per counter and 100 ms, not one per request. A request
//! that would fit still asks Redis, and credit this node holds is spent first, as always. What
//! the memory can miss is quota another node gives back within those 100 ms.

use std::sync::atomic::Ordering;

use super::account::Counter;
use super::admission::{bit, p_index, Short};
use super::{link, Cluster, ClusterAdmission, Refused};
use crate::limits::limiter::{RejectReason, Rejection, Scope, ScopeKind};

/// A counter Redis just refused that a request does not fit either.
pub(super) struct Known {
    /// Its index in the admission's `Short`s.
    pub(super) index: usize,
    /// Its cluster-wide use as this node knows it.
    pub(super) used: u64,
    pub(super) limit: u64,
    /// The limit, or a lower tier's share of it.
    pub(super) cap: f64,
    /// `cap` is a lower tier's share (a refusal under the limit is for `Capacity`).
    pub(super) tiered: bool,
}

impl Cluster {
    /// Refuses on a remembered refusal (see the module doc).
    pub(super) fn refuse_known(
        &self,
        scopes: &[Scope<'_>],
        admission: &mut ClusterAdmission,
        short: &[Short],
        known: Known,
        now_ms: u64,
    ) -> Refused {
        let sh = &short[known.index];
        let over_ceiling = known.tiered && known.used.saturating_add(sh.amount) <= known.limit;
        let window = match sh.counter {
            Counter::Budget(p) => admission.held[sh.scope].windows[p_index(p)],
            _ => 0,
        };
        let retry = retry_after_ms(
            sh.counter,
            known.limit,
            known.cap,
            known.used,
            sh.amount,
            window,
            now_ms,
        );
        self.inner.stats.known.fetch_add(1, Ordering::Relaxed);
        self.refuse(scopes, admission, short, known.index, retry, over_ceiling, now_ms)
    }

    /// Refuses a request short of `short[index]`: puts back what it took, and has this node
    /// give back its credit of that counter at the next flush (another node may need it).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn refuse(
        &self,
        scopes: &[Scope<'_>],
        admission: &mut ClusterAdmission,
        short: &[Short],
        index: usize,
        retry_after_ms: u64,
        over_ceiling: bool,
        now_ms: u64,
    ) -> Refused {
        let refusing = &short[index];
        self.unwind(admission, short);
        let s = &scopes[refusing.scope];
        let a = admission.held[refusing.scope].scope.get(refusing.counter);
        a.give_now.store(true, Ordering::Release);
        let reason = match refusing.counter {
            _ if over_ceiling => RejectReason::Capacity,
            Counter::Rpm => RejectReason::Requests,
            Counter::Tpm | Counter::Tpd => RejectReason::Tokens,
            Counter::Slots => RejectReason::Concurrency,
            Counter::Budget(_) => RejectReason::Budget,
        };
        Refused::Limit(Rejection {
            reason,
            scope: format!("{} {}", s.kind, s.id),
            retry_after_ms,
            headers: self.headers(scopes, &admission.held, now_ms),
        })
    }

    /// Puts back what an admission took from credit, and marks it settled.
    pub(super) fn unwind(&self, admission: &mut ClusterAdmission, short: &[Short]) {
        admission.settled = true;
        for (si, h) in admission.held.iter().enumerate() {
            for counter in Counter::ALL {
                if h.marks & bit(counter) == 0 {
                    continue;
                }
                let a = h.scope.get(counter);
                let taken = match short.iter().find(|s| s.scope == si && s.counter == counter) {
                    Some(s) => s.taken,
                    None => match counter {
                        Counter::Rpm | Counter::Slots => 1,
                        Counter::Tpm | Counter::Tpd => admission.tokens,
                        Counter::Budget(_) => admission.cost,
                    },
                };
                a.add(i64::try_from(taken).unwrap_or(0));
            }
        }
    }
}

/// What a counter's use may reach for this request, and whether that is a lower tier's share:
/// the limit, or for a provider's rate counters and a tier below 1, the tier's share of it (as
/// `take.lua` applies it).
pub(super) fn cap_of(s: &Scope<'_>, counter: Counter, limit: u64, ceiling: f64) -> (f64, bool) {
    let rate = matches!(counter, Counter::Rpm | Counter::Tpm | Counter::Tpd);
    if rate && s.kind == ScopeKind::Provider && ceiling < 1.0 {
        (limit as f64 * ceiling, true)
    } else {
        (limit as f64, false)
    }
}

/// When a request refused here, on what Redis last reported, could fit (as `take.lua` reckons
/// it): a rate bucket drains at limit per period; a budget waits for its next window; slots
/// are retried after a second.
fn retry_after_ms(counter: Counter, limit: u64, cap: f64, used: u64, amount: u64, window: u64, now_ms: u64) -> u64 {
    let ms = match (counter, counter.period_ms()) {
        (Counter::Budget(p), _) => p.window(window).1.saturating_sub(now_ms),
        (_, Some(period)) if amount as f64 <= cap && limit > 0 => {
            let over = used.saturating_add(amount) as f64 - cap;
            (over * period as f64 / limit as f64).ceil() as u64
        }
        (_, Some(period)) => period,
        (_, None) => link::SLOT_RETRY_MS,
    };
    ms.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::limiter::Period;

    #[test]
    fn local_refusals_retry_when_take_lua_would_grant() {
        let day = Counter::Budget(Period::Day);
        // A budget waits for its next window (the one starting at 86,400,000 ms here).
        assert_eq!(retry_after_ms(day, 100, 100.0, 90, 20, 0, 86_000_000), 400_000);
        // 60,000 tokens a minute drain one a millisecond: 30 over waits 30 ms.
        assert_eq!(retry_after_ms(Counter::Tpm, 60_000, 60_000.0, 59_990, 40, 0, 0), 30);
        // Over a tier's half share, it waits for the level to drain under the share.
        assert_eq!(retry_after_ms(Counter::Rpm, 60, 30.0, 30, 1, 0, 0), 1_000);
        // A request larger than the cap waits a whole period; slots a second.
        assert_eq!(retry_after_ms(Counter::Tpm, 60_000, 30_000.0, 0, 40_000, 0, 0), 60_000);
        assert_eq!(retry_after_ms(Counter::Slots, 2, 2.0, 2, 1, 0, 0), link::SLOT_RETRY_MS);
        // Never 0 (a retry-after of 0 invites a busy loop).
        assert_eq!(retry_after_ms(day, 100, 100.0, 90, 20, 0, 86_400_000), 1);
    }
}
