//! The per-scope quota operations: the seam between the admission logic (`mod.rs`, which only
//! calls the `Quota` trait) and where the counts live. Today they live in this process's atomics;
//! a clustered backend that leases chunks of quota from Redis implements the same three calls.
//!
//! Three kinds, all lock-free (a few atomics, compare-and-swap loops that never block):
//! - `RateQuota`: a GCRA bucket (rpm, tpm, tpd). One `AtomicU64` holds the theoretical arrival
//!   time (TAT) in Unix nanoseconds. A reservation of `n` units moves it to `max(TAT, now) + n·T/L`
//!   and is admitted if that is at most `now + T` (`T` the period, `L` the limit). That is a token
//!   bucket of capacity `L` refilling continuously at `L/T`: exact per scope, O(1), and with no
//!   window boundary to burst across (a fixed window lets `2L` through within milliseconds of its
//!   boundary; here any span `t` admits at most `L + L·t/T`, the same model as OpenAI's limits).
//! - `SlotQuota`: requests in flight, a counter checked against the cap in the same CAS.
//! - `BudgetQuota` (in `budget.rs`): spend plus reservations of the current calendar window.
//!
//! Why not `pingora-limits`: its `Rate` is a count-min sketch over fixed windows. Estimates only
//! overcount (collisions: untouched keys read 11-18 with 20k keys at the default size), a fixed
//! window admits up to 2x at its boundary, and it has no per-key limit, retry-after, or refunds
//! of a reservation. `Inflight` is the same sketch, so a paid key could be refused a slot because
//! of someone else's traffic. Paid tiers need exact per-scope counts; the atomics here are exact
//! and cost about the same.

use std::sync::atomic::{AtomicU64, Ordering};

/// One limit of one scope. `limit` comes with each reservation (it can change on reload); the
/// quota keeps the last one for `settle` and `level`.
pub(super) trait Quota {
    /// Reserves `amount` if it fits within `ceiling` (0..=1) of `limit`, else says when it would.
    fn try_reserve(&self, limit: u64, amount: u64, ceiling: f64, now_ms: u64) -> Result<(), Denied>;
    /// Replaces a reservation of `reserved` by what was used; `actual` may be more or less.
    /// `actual = 0` undoes the reservation.
    fn settle(&self, reserved: u64, actual: u64, now_ms: u64);
    /// The state including current reservations; `None` if the quota was never limited.
    fn level(&self, now_ms: u64) -> Option<Level>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Denied {
    /// When a retry can pass, if nothing else is reserved meanwhile.
    pub retry_after_ms: u64,
    /// The full limit would have allowed it; only the caller's ceiling (its tier) did not.
    pub over_ceiling: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Level {
    pub limit: u64,
    /// Units in use, rounded to the nearest unit; may exceed `limit` when a settle went over.
    pub used: u64,
    /// Until the quota is fully available again, if nothing more is reserved.
    pub reset_ms: u64,
}

pub(super) const UNSET: u64 = u64::MAX;
const NS_PER_MS: u64 = 1_000_000;

fn ceil_ms(ns: u64) -> u64 {
    ns.div_ceil(NS_PER_MS)
}

fn clamp_u64(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// `a·b/c` rounded to the nearest, saturating; `c > 0`. In `u64` when the product fits (the
/// common case: a 128-bit division is a libcall several times slower).
fn mul_div_round(a: u64, b: u64, c: u64) -> u64 {
    if let Some(p) = a.checked_mul(b).and_then(|p| p.checked_add(c / 2)) {
        return p / c;
    }
    let c = u128::from(c);
    clamp_u64((u128::from(a) * u128::from(b) + c / 2) / c)
}

/// GCRA bucket. Time is Unix nanoseconds, so the TAT does not depend on the limit: a reload that
/// changes `L` rescales the backlog `TAT - now` once (by `old/new`, so the *count* used carries
/// over), and a reservation racing with that rescale is off by at most its own size, once.
#[derive(Debug)]
pub(super) struct RateQuota {
    period_ns: u64,
    limit: AtomicU64,
    tat: AtomicU64,
}

impl RateQuota {
    pub(super) fn new(period_ms: u64) -> RateQuota {
        RateQuota {
            period_ns: period_ms.saturating_mul(NS_PER_MS),
            limit: AtomicU64::new(UNSET),
            tat: AtomicU64::new(0),
        }
    }

    /// Bucket time of `amount` units: `amount·T/L` rounded to the nearest nanosecond (at least
    /// 1 ns for a non-zero amount). Rounding to nearest rather than up keeps boundaries exact:
    /// with `L = 7/min`, seven requests fit (7 x 8571428571 ns <= 60 s), where ceil would refuse
    /// the seventh by 4 ns. The error is under 1 ns per reservation, both ways.
    fn span(&self, amount: u64, limit: u64) -> u64 {
        if amount == 0 {
            return 0;
        }
        if limit == 0 {
            return u64::MAX;
        }
        mul_div_round(amount, self.period_ns, limit).max(1)
    }

    /// Adopts a changed limit, keeping the count used (see the type's doc).
    fn adopt(&self, limit: u64, now_ns: u64) {
        let old = self.limit.load(Ordering::Acquire);
        if old == limit
            || self
                .limit
                .compare_exchange(old, limit, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return;
        }
        if old == UNSET || old == 0 || limit == 0 {
            // Nothing to rescale: a new quota's TAT is 0, and a zero limit admitted nothing.
            // (No store here: a reservation may already have landed under the new limit.)
            return;
        }
        let _ = self.tat.fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
            let backlog = tat.checked_sub(now_ns).filter(|b| *b > 0)?;
            let scaled = u128::from(backlog) * u128::from(old) / u128::from(limit);
            Some(now_ns.saturating_add(clamp_u64(scaled)))
        });
    }

    /// Backlog as a share of the period (1.0 = the whole limit is in use).
    pub(super) fn utilization(&self, now_ms: u64) -> f64 {
        if self.limit.load(Ordering::Acquire) == UNSET || self.period_ns == 0 {
            return 0.0;
        }
        let now_ns = now_ms.saturating_mul(NS_PER_MS);
        let backlog = self.tat.load(Ordering::Acquire).saturating_sub(now_ns);
        backlog as f64 / self.period_ns as f64
    }

    pub(super) fn is_idle(&self, now_ms: u64) -> bool {
        self.tat.load(Ordering::Acquire) <= now_ms.saturating_mul(NS_PER_MS)
    }
}

impl Quota for RateQuota {
    fn try_reserve(&self, limit: u64, amount: u64, ceiling: f64, now_ms: u64) -> Result<(), Denied> {
        let now = now_ms.saturating_mul(NS_PER_MS);
        self.adopt(limit, now);
        let span = self.span(amount, limit);
        let full = self.period_ns;
        // `ceiling` is sanitised by the caller to 0..=1 (`as` saturates anyway). Rounded, as
        // 0.7 x 60 s is 41.999999999999997 s in floating point.
        let tolerance = if ceiling >= 1.0 {
            full
        } else {
            (full as f64 * ceiling).round() as u64
        };
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let new = tat.max(now).saturating_add(span);
            let backlog = new - now;
            if backlog > tolerance {
                let retry_ns = if span > tolerance {
                    // Bigger than the whole (or the tier's share of the) bucket: it can never
                    // pass; a full period is the honest "not soon".
                    full
                } else {
                    backlog - tolerance
                };
                return Err(Denied {
                    retry_after_ms: ceil_ms(retry_ns).max(1),
                    over_ceiling: backlog <= full,
                });
            }
            match self
                .tat
                .compare_exchange_weak(tat, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(()),
                Err(current) => tat = current,
            }
        }
    }

    fn settle(&self, reserved: u64, actual: u64, now_ms: u64) {
        let limit = self.limit.load(Ordering::Acquire);
        if limit == UNSET || limit == 0 || reserved == actual {
            return;
        }
        let (r, a) = (self.span(reserved, limit), self.span(actual, limit));
        let now = now_ms.saturating_mul(NS_PER_MS);
        let _ = self.tat.fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
            Some(if a < r {
                // Give back: a TAT in the past is a full bucket, however far back it is.
                tat.saturating_sub(r - a)
            } else {
                // Charge the overrun now, like a reservation that is not refused.
                tat.max(now).saturating_add(a - r)
            })
        });
    }

    fn level(&self, now_ms: u64) -> Option<Level> {
        let limit = self.limit.load(Ordering::Acquire);
        if limit == UNSET || self.period_ns == 0 {
            return None;
        }
        let now = now_ms.saturating_mul(NS_PER_MS);
        let backlog = self.tat.load(Ordering::Acquire).saturating_sub(now);
        Some(Level {
            limit,
            used: mul_div_round(backlog, limit, self.period_ns),
            reset_ms: ceil_ms(backlog),
        })
    }
}

/// Requests in flight. Counted even without a cap, so a cap added by a reload starts from the
/// true count.
#[derive(Debug)]
pub(super) struct SlotQuota {
    limit: AtomicU64,
    in_flight: AtomicU64,
}

impl SlotQuota {
    pub(super) fn new() -> SlotQuota {
        SlotQuota {
            limit: AtomicU64::new(UNSET),
            in_flight: AtomicU64::new(0),
        }
    }

    pub(super) fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Acquire)
    }
}

/// A freed slot is the only thing that helps, and requests take seconds: one second is a fair
/// guess that does not make clients hammer.
const SLOT_RETRY_MS: u64 = 1_000;

impl Quota for SlotQuota {
    fn try_reserve(&self, limit: u64, amount: u64, _: f64, _: u64) -> Result<(), Denied> {
        if self.limit.load(Ordering::Relaxed) != limit {
            self.limit.store(limit, Ordering::Relaxed);
        }
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                n.checked_add(amount).filter(|next| *next <= limit)
            })
            .map(|_| ())
            .map_err(|_| Denied {
                retry_after_ms: SLOT_RETRY_MS,
                over_ceiling: false,
            })
    }

    /// Frees the `reserved` slots whatever `actual` is: a finished request holds none.
    fn settle(&self, reserved: u64, _: u64, _: u64) {
        let _ = self.in_flight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            Some(n.saturating_sub(reserved))
        });
    }

    fn level(&self, _: u64) -> Option<Level> {
        let limit = self.limit.load(Ordering::Relaxed);
        (limit != UNSET).then(|| Level {
            limit,
            used: self.in_flight(),
            reset_ms: 0,
        })
    }
}
