//! Budgets: spend plus reservations (nano-USD) of one period's current calendar window, without
//! a lock, including at the change of window.
//!
//! State, in atomics:
//! - `state`: one word holding the window's *tag* (its index modulo 2^6, in the top bits) and
//!   `used` (58 bits: the window's settled spend plus every unsettled reservation);
//! - `in_flight`: the unsettled reservations, of any window;
//! - `window`/`window_end`: the latest window any call has seen (only moves forward), and a cache
//!   of its end so the common call does two loads instead of calendar arithmetic.
//!
//! Admission is one CAS on `state` that adds the estimate only if `used` stays within the budget,
//! so concurrent requests cannot together reserve past it; the only overspend is a settle whose
//! actual cost exceeds its estimate.
//!
//! Window change. Every operation works on the word of the window in `window`: if the word's tag
//! is older, the operation first replaces it (CAS) by `(new tag, in_flight)`, whoever gets there
//! first, and then retries its own CAS. Because the tag and `used` are one word, an operation can
//! never land in a window that has been replaced: reset and update are ordered by the CAS on the
//! same word. Requests in flight are carried into the new window (that is `in_flight`), and a
//! settle applies `actual - reserved` to the current window, whichever it is. Orders (`SeqCst`):
//! a reservation raises `in_flight` before its CAS, a settle lowers it after its CAS. A reset
//! whose CAS follows a reservation's CAS has read `in_flight` after it (otherwise its CAS would
//! have failed on the changed word and been retried), so it carries that reservation; a
//! reservation whose CAS follows the reset adds to the new word. A settle either lands in the new
//! word, where its reservation was carried, or in the old one before the reset. What remains is
//! on the safe side and only at a change: a reservation whose raise (or a settle whose lowering)
//! straddles the reset's read of `in_flight` is counted once more in the new window, until the
//! next one.
//!
//! Tags repeat every 64 windows. A call that moves `window` forward onto a window with the same
//! tag as the previous one (a scope idle for a multiple of 64 windows) resets the word itself,
//! unconditionally, once; concurrent calls meanwhile act on the stale word, which the reset then
//! replaces (reservations are kept through `in_flight`).

use std::sync::atomic::{AtomicU64, Ordering};

use super::config::Period;
use super::quota::{Denied, Level, Quota, UNSET};
use crate::time::{DAY_MS, HOUR_MS};

/// When a request refused only because of reservations in flight should try again.
const IN_FLIGHT_RETRY_MS: u64 = 1_000;

const TAG_BITS: u32 = 6;
const AMOUNT_BITS: u32 = 64 - TAG_BITS;
/// 2^58 - 1 nano-USD, about 288 million USD: the most one window can hold (saturating).
pub(super) const AMOUNT_MAX: u64 = (1 << AMOUNT_BITS) - 1;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;

fn pack(tag: u64, used: u64) -> u64 {
    (tag << AMOUNT_BITS) | used.min(AMOUNT_MAX)
}

fn used_of(word: u64) -> u64 {
    word & AMOUNT_MAX
}

fn tag_of(word: u64) -> u64 {
    word >> AMOUNT_BITS
}

#[derive(Debug)]
pub(super) struct BudgetQuota {
    period: Period,
    limit: AtomicU64,
    window: AtomicU64,
    window_end: AtomicU64,
    state: AtomicU64,
    in_flight: AtomicU64,
}

impl BudgetQuota {
    pub(super) fn new(period: Period) -> BudgetQuota {
        BudgetQuota {
            period,
            limit: AtomicU64::new(UNSET),
            window: AtomicU64::new(0),
            window_end: AtomicU64::new(0),
            state: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
        }
    }

    /// Consecutive windows get consecutive tags (months: 28-day steps, so never the same twice in
    /// a row).
    fn tag(&self, window_start: u64) -> u64 {
        let step = match self.period {
            Period::Hour => HOUR_MS,
            Period::Day => DAY_MS,
            Period::Days30 => 30 * DAY_MS,
            Period::Month => 28 * DAY_MS,
        };
        (window_start / step) & TAG_MASK
    }

    /// Moves `window` forward to `now_ms`'s window if that is later; returns its end.
    fn advance(&self, now_ms: u64) -> u64 {
        let start = self.window.load(Ordering::SeqCst);
        let end = self.window_end.load(Ordering::SeqCst);
        // A read torn by a concurrent change gives an empty range (new start, old end) or the
        // newer end; either way the operation then works on whatever `window` holds.
        if start <= now_ms && now_ms < end {
            return end;
        }
        let (start, end) = self.period.window(now_ms);
        let previous = self.window.fetch_max(start, Ordering::SeqCst);
        if start > previous {
            self.window_end.fetch_max(end, Ordering::SeqCst);
            if self.tag(previous) == self.tag(start) {
                self.reset_aliased(start);
            }
        }
        end
    }

    /// The word may carry this window's tag although it belongs to a window 64k earlier.
    fn reset_aliased(&self, start: u64) {
        let tag = self.tag(start);
        let mut word = self.state.load(Ordering::SeqCst);
        while self.window.load(Ordering::SeqCst) == start {
            let fresh = pack(tag, self.in_flight.load(Ordering::SeqCst));
            match self
                .state
                .compare_exchange(word, fresh, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return,
                Err(current) => word = current,
            }
        }
    }

    /// Applies `f` to the current window's `used`, replacing a stale window's word first (by
    /// what is in flight, less `own`: the caller's reservation, raised already and about to be
    /// added by `f`). Returns false if `f` refused.
    fn update(&self, own: u64, f: impl Fn(u64) -> Option<u64>) -> bool {
        let mut word = self.state.load(Ordering::SeqCst);
        loop {
            let tag = self.tag(self.window.load(Ordering::SeqCst));
            let stale = tag_of(word) != tag;
            let next = if stale {
                let carried = self.in_flight.load(Ordering::SeqCst).saturating_sub(own);
                pack(tag, carried)
            } else {
                match f(used_of(word)) {
                    Some(used) => pack(tag, used),
                    None => return false,
                }
            };
            match self
                .state
                .compare_exchange(word, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) if stale => word = next,
                Ok(_) => return true,
                Err(current) => word = current,
            }
        }
    }

    fn add_in_flight(&self, amount: u64) {
        // Saturating, never wrapping (only reachable with sums above 1.8e10 USD).
        let _ = self
            .in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| Some(n.saturating_add(amount)));
    }

    fn sub_in_flight(&self, amount: u64) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| Some(n.saturating_sub(amount)));
    }

    /// Replaces the settled spend of the current window by `spent` (reservations are kept). A
    /// seed for a window earlier than the current one is ignored.
    pub(super) fn seed(&self, spent: u64, now_ms: u64) {
        self.advance(now_ms);
        let start = self.period.window(now_ms).0;
        let mut word = self.state.load(Ordering::SeqCst);
        while self.window.load(Ordering::SeqCst) == start {
            let seeded = pack(
                self.tag(start),
                spent.saturating_add(self.in_flight.load(Ordering::SeqCst)),
            );
            match self
                .state
                .compare_exchange(word, seeded, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return,
                Err(current) => word = current,
            }
        }
    }

    /// Changes a reservation in flight from `old` to `new` (the estimate was refined); no
    /// check against the budget: a larger one is charged like a settle that went over.
    pub(super) fn resize(&self, old: u64, new: u64, now_ms: u64) {
        self.advance(now_ms);
        if new >= old {
            let d = new - old;
            self.add_in_flight(d);
            self.update(d, |used| Some(used.saturating_add(d)));
        } else {
            let d = old - new;
            self.update(0, |used| Some(used.saturating_sub(d)));
            self.sub_in_flight(d);
        }
    }

    pub(super) fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// The current window's spend plus reservations (as of the last operation).
    pub(super) fn used(&self) -> u64 {
        used_of(self.state.load(Ordering::SeqCst))
    }

    /// Nothing reserved, and nothing spent in the window of `now_ms`.
    pub(super) fn is_idle(&self, now_ms: u64) -> bool {
        self.in_flight() == 0 && (self.used() == 0 || self.window.load(Ordering::SeqCst) < self.period.window(now_ms).0)
    }
}

impl Quota for BudgetQuota {
    fn try_reserve(&self, limit: u64, amount: u64, _: f64, now_ms: u64) -> Result<(), Denied> {
        if self.limit.load(Ordering::Relaxed) != limit {
            self.limit.store(limit, Ordering::Relaxed);
        }
        let end = self.advance(now_ms);
        self.add_in_flight(amount);
        if self.update(amount, |used| used.checked_add(amount).filter(|next| *next <= limit)) {
            return Ok(());
        }
        self.sub_in_flight(amount);
        // Refused only because of other requests' reservations (settled when they end, usually
        // for less than reserved): a retry soon may fit, not only in the next window.
        let spent = self.used().saturating_sub(self.in_flight());
        let retry_after_ms = if spent.saturating_add(amount) <= limit {
            IN_FLIGHT_RETRY_MS
        } else {
            end.saturating_sub(now_ms).max(1)
        };
        Err(Denied {
            retry_after_ms,
            over_ceiling: false,
        })
    }

    fn settle(&self, reserved: u64, actual: u64, now_ms: u64) {
        // Advance first: spend settled after the window ended belongs to the new one.
        self.advance(now_ms);
        // `own` = 0: this reservation is still in flight, so a reset carries it, and the
        // difference then applies to the new word.
        self.update(0, |used| Some(used.saturating_add(actual).saturating_sub(reserved)));
        self.sub_in_flight(reserved);
    }

    fn level(&self, now_ms: u64) -> Option<Level> {
        let limit = self.limit.load(Ordering::Relaxed);
        (limit != UNSET).then(|| Level {
            limit,
            used: self.used(),
            reset_ms: self.period.window(now_ms).1.saturating_sub(now_ms),
        })
    }
}
