//! An admitted request's reservations, held until the response ends.

use std::sync::Arc;

use super::headers::RateHeaders;
use super::state::{nanos, Marks, Need, ScopeState};

/// Reservations of one scope.
#[derive(Debug)]
pub(super) struct Held {
    pub state: Arc<ScopeState>,
    pub marks: Marks,
}

/// Room for the usual key/team/user/provider without a heap allocation per request; more scopes
/// spill into the `Vec`.
const INLINE: usize = 4;

#[derive(Debug, Default)]
pub(super) struct HeldScopes {
    inline: [Option<Held>; INLINE],
    spill: Vec<Held>,
}

impl HeldScopes {
    pub(super) fn push(&mut self, held: Held) {
        match self.inline.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => *slot = Some(held),
            None => self.spill.push(held),
        }
    }

    /// In the order pushed.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Held> {
        self.inline.iter().flatten().chain(self.spill.iter())
    }
}

/// A request let through: it holds a reservation in every scope it was checked against.
///
/// Call `settle` once when the response ends, whatever the outcome (success, upstream error,
/// cut stream, client gone). If an `Admission` is dropped without it (a panic, an early return),
/// `Drop` frees the concurrency slots and turns the reservations into usage, as if the estimate
/// had been used in full: the safe side for budgets and token limits, since a request that was
/// sent may well have been billed and nobody can say for how much.
#[derive(Debug)]
pub struct Admission {
    held: HeldScopes,
    need: Need,
    headers: RateHeaders,
    admitted_ms: u64,
}

impl Admission {
    pub(super) fn new(held: HeldScopes, need: Need, headers: RateHeaders, admitted_ms: u64) -> Admission {
        Admission {
            held,
            need,
            headers,
            admitted_ms,
        }
    }

    /// Replaces the reservation by the actual usage (tokens, nano-USD) and frees the
    /// concurrency slots. More than estimated is charged too (it was used); a negative cost
    /// counts as 0.
    pub fn settle(mut self, actual_tokens: u64, actual_cost_nanos: i64, now_ms: u64) {
        self.finish(actual_tokens, nanos(actual_cost_nanos), now_ms);
    }

    /// Replaces the reservation's estimate (tokens, nano-USD) by a refined one, the request
    /// still in flight: an admission made on an upper bound shrinks to the tokenizer's count.
    pub fn resize(&mut self, tokens: u64, cost_nanos: i64, now_ms: u64) {
        let new = Need {
            tokens,
            cost: nanos(cost_nanos),
            ceiling: self.need.ceiling,
        };
        for h in self.held.iter() {
            h.state.resize(h.marks, &self.need, &new, now_ms);
        }
        if let Some(r) = self.headers.remaining_tokens.as_mut() {
            *r = (*r + self.need.tokens)
                .saturating_sub(tokens)
                .min(self.headers.limit_tokens.unwrap_or(u64::MAX));
        }
        self.need = new;
    }

    /// The rate-limit headers for the response, as of admission (after this request's
    /// reservation).
    pub fn headers(&self) -> RateHeaders {
        self.headers
    }

    /// Tokens reserved (the request's estimate).
    pub fn reserved_tokens(&self) -> u64 {
        self.need.tokens
    }

    /// Nano-USD reserved (the request's estimated cost).
    pub fn reserved_cost_nanos(&self) -> i64 {
        i64::try_from(self.need.cost).unwrap_or(i64::MAX)
    }

    fn finish(&mut self, actual_tokens: u64, actual_cost: u64, now_ms: u64) {
        let held = std::mem::take(&mut self.held);
        for h in held.iter() {
            h.state.settle(h.marks, &self.need, actual_tokens, actual_cost, now_ms);
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        // A no-op after `settle` (the held scopes were taken).
        let (tokens, cost) = (self.need.tokens, self.need.cost);
        self.finish(tokens, cost, self.admitted_ms);
    }
}
