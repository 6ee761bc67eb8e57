//! The gateway's limiter: rate limits (rpm, tpm, tpd), concurrency caps and USD budgets per key,
//! team, user and provider, all optional and combinable, plus priority tiers on providers.
//! Pure Rust: no I/O, no Pingora; the caller passes the time.
//!
//! A request is admitted against every scope it belongs to, all or nothing: `admit` reserves its
//! estimate (one request, `Demand::tokens`, `Demand::cost_nanos`, one concurrency slot) in every
//! limit of every scope, or reserves nothing and says which limit refused and when to retry. The
//! `Admission` it returns is settled with the real usage when the response ends, and the
//! reservation is replaced by it.
//!
//! Invariants:
//! - Budgets are never overspent by concurrent requests: each reservation is admitted with one
//!   atomic check-and-add against the budget, so the sum of reservations and settled spend never
//!   exceeds it. The only overspend is a request whose actual cost exceeds its estimate (none
//!   when estimates are upper bounds). The same holds for token limits.
//! - Lock-free and exact: every count is per scope, in atomics (see `quota` for the GCRA buckets
//!   and why not `pingora-limits`, `budget` for budget windows and their change). The scope map
//!   is a `DashMap` of `Arc`s, read-locked per shard only long enough to clone the `Arc`.
//! - No allocation on the admit path, except a scope's first use (its map entry and counters)
//!   and a refusal (its `scope` text). An admission holds up to four scopes inline.
//! - Never panics, whatever the inputs (unvalidated limits, negative costs, NaN tiers, times out
//!   of order).
//! - Limits come with every call, so a reload takes effect on the next request; a scope keeps
//!   its counts across a change of its limits.
//!
//! Time: `now_ms` is the wall clock in Unix milliseconds (UTC), because budget periods follow the
//! calendar (clock hour, UTC day, calendar month).
//!
//! Priority tiers: for a `Provider` scope, a request is refused with `Capacity` if it would take
//! the provider's rpm or tpm use above its tier's share (`Demand::tier_ceiling`, say 0.7 for
//! free and 1.0 for paid), so lower tiers are shed before the provider's own limit is reached.
//!
//! Headers (`Admission::headers`, `Rejection::headers`) describe the tenant scopes (key, team,
//! user), not providers: a provider's capacity is shared by every tenant, so its remaining count
//! would leak other tenants' use, and with tiers it differs per request.

mod admission;
mod budget;
mod config;
mod headers;
mod quota;
mod state;

#[cfg(test)]
mod concurrency_tests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use dashmap::DashMap;

pub use admission::Admission;
pub use config::{Budget, Limits, Period, MAX_BUDGET_USD};
pub use headers::RateHeaders;

use admission::{Held, HeldScopes};
use headers::remaining_share;
use quota::{Level, Quota};
use state::{nanos, Need, ScopeState};

/// What a set of limits belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScopeKind {
    Key,
    Team,
    User,
    Provider,
    /// The client's address (`limits.per_ip`).
    Ip,
}

impl ScopeKind {
    pub const ALL: [ScopeKind; 5] = [
        ScopeKind::Key,
        ScopeKind::Team,
        ScopeKind::User,
        ScopeKind::Provider,
        ScopeKind::Ip,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ScopeKind::Key => "key",
            ScopeKind::Team => "team",
            ScopeKind::User => "user",
            ScopeKind::Provider => "provider",
            ScopeKind::Ip => "ip",
        }
    }

    fn index(self) -> usize {
        match self {
            ScopeKind::Key => 0,
            ScopeKind::Team => 1,
            ScopeKind::User => 2,
            ScopeKind::Provider => 3,
            ScopeKind::Ip => 4,
        }
    }
}

impl fmt::Display for ScopeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One scope a request is checked against, with its current limits.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub kind: ScopeKind,
    pub id: &'a str,
    pub limits: &'a Limits,
}

/// What a request will use, estimated before it is sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Demand {
    /// Prompt estimate plus the completion allowance (`max_tokens` or a default).
    pub tokens: u64,
    /// Estimated cost in nano-USD (0 if the model is unpriced).
    pub cost_nanos: i64,
    /// 0..=1: the share of a provider scope's rpm/tpm this request's tier may use (1.0 = all).
    pub tier_ceiling: f64,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    Requests,
    Tokens,
    Concurrency,
    Budget,
    /// The provider is near its limit and this request's tier is shed first.
    Capacity,
}

impl RejectReason {
    /// The OpenAI error `code` (and `type`) of the 429.
    pub fn code(&self) -> &'static str {
        match self {
            RejectReason::Requests | RejectReason::Tokens | RejectReason::Concurrency | RejectReason::Capacity => {
                "rate_limit_exceeded"
            }
            RejectReason::Budget => "budget_exceeded",
        }
    }

    /// A human sentence for the error message.
    pub fn message(&self) -> &'static str {
        match self {
            RejectReason::Requests => "Rate limit reached for requests",
            RejectReason::Tokens => "Rate limit reached for tokens",
            RejectReason::Concurrency => "Too many concurrent requests",
            RejectReason::Budget => "Budget exceeded",
            RejectReason::Capacity => "Provider capacity is reserved for higher-priority traffic; retry later",
        }
    }

    /// A low-cardinality metric label.
    pub fn label(&self) -> &'static str {
        match self {
            RejectReason::Requests => "requests",
            RejectReason::Tokens => "tokens",
            RejectReason::Concurrency => "concurrency",
            RejectReason::Budget => "budget",
            RejectReason::Capacity => "capacity",
        }
    }
}

/// A refused request: nothing is reserved anywhere.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{} for {}", .reason.message(), .scope)]
pub struct Rejection {
    pub reason: RejectReason,
    /// The scope that refused, e.g. `key team-a`.
    pub scope: String,
    /// When the same request can pass the limit that refused it, if nothing else is reserved
    /// meanwhile (rate limits: exact; budgets: the end of the period; concurrency: 1 s). Checks
    /// stop at the first refusal, so another limit may still refuse then.
    pub retry_after_ms: u64,
    /// The tenant scopes' state (nothing was reserved).
    pub headers: RateHeaders,
}

type ScopeMap = DashMap<Box<str>, Arc<ScopeState>, ahash::RandomState>;

/// Every scope's counters, one map per kind (so a lookup borrows the `&str` id).
#[derive(Debug, Default)]
pub struct Limiter {
    scopes: [ScopeMap; 5],
}

impl Limiter {
    pub fn new() -> Limiter {
        Limiter::default()
    }

    fn map(&self, kind: ScopeKind) -> &ScopeMap {
        &self.scopes[kind.index()]
    }

    /// The scope's state, created on first use (the only allocation of an admit).
    fn state(&self, kind: ScopeKind, id: &str) -> Arc<ScopeState> {
        let map = self.map(kind);
        if let Some(state) = map.get(id) {
            return Arc::clone(&state);
        }
        let entry = map.entry(Box::from(id)).or_insert_with(|| Arc::new(ScopeState::new()));
        Arc::clone(&entry)
    }

    /// Checks every scope and reserves in all of them, or reserves nothing and says why.
    // The `Ok` side (an `Admission` with its inline scopes and headers) is the larger one, so
    // boxing the refusal would not make the `Result` smaller; it would add an allocation.
    #[allow(clippy::result_large_err)]
    pub fn admit(&self, scopes: &[Scope<'_>], demand: Demand, now_ms: u64) -> Result<Admission, Rejection> {
        let need = Need::new(demand);
        let mut held = HeldScopes::default();
        for scope in scopes {
            let state = self.state(scope.kind, scope.id);
            match state.reserve(scope.kind, scope.limits, &need, now_ms) {
                Ok(marks) => held.push(Held { state, marks }),
                Err((reason, retry_after_ms)) => {
                    for h in held.iter() {
                        h.state.undo(h.marks, &need, now_ms);
                    }
                    return Err(Rejection {
                        reason,
                        scope: format!("{} {}", scope.kind, scope.id),
                        retry_after_ms,
                        headers: self.current_headers(scopes, now_ms),
                    });
                }
            }
        }
        let mut headers = HeaderPick::default();
        for (scope, h) in scopes.iter().zip(held.iter()) {
            headers.consider(scope, &h.state, now_ms);
        }
        Ok(Admission::new(held, need, headers.finish(), now_ms))
    }

    /// Headers from the scopes' current state, without reserving (for refusals).
    fn current_headers(&self, scopes: &[Scope<'_>], now_ms: u64) -> RateHeaders {
        let mut headers = HeaderPick::default();
        for scope in scopes {
            if let Some(state) = self.map(scope.kind).get(scope.id) {
                headers.consider(scope, &state, now_ms);
            }
        }
        headers.finish()
    }

    /// Sets the spend already on record for a scope's current `period` (from the spend ledger,
    /// at start). Replaces what was settled in that window; reservations in flight are kept.
    pub fn seed_spent(&self, kind: ScopeKind, id: &str, period: Period, spent_nanos: i64, now_ms: u64) {
        self.state(kind, id).budget(period).seed(nanos(spent_nanos), now_ms);
    }

    /// The larger of the scope's rpm and tpm use as a share of its limit (0 if untracked; may
    /// exceed 1 after usage went over an estimate). Uses the last limits the scope was admitted
    /// with.
    pub fn utilization(&self, kind: ScopeKind, id: &str, now_ms: u64) -> f64 {
        self.map(kind).get(id).map_or(0.0, |state| {
            state.rpm.utilization(now_ms).max(state.tpm.utilization(now_ms))
        })
    }

    /// Scopes tracked.
    pub fn len(&self) -> usize {
        self.scopes.iter().map(DashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.scopes.iter().all(DashMap::is_empty)
    }

    /// Forgets scopes that hold nothing a fresh one would not (full buckets, nothing in flight,
    /// no spend in a current budget window), so per-user scopes do not accumulate. Returns how
    /// many were removed. Takes each shard's write lock in turn: run it from a background task
    /// (every few minutes), not per request. A scope in use by an admit or an admission is kept
    /// (its `Arc` is shared), so no reservation can land in a forgotten scope.
    pub fn prune_idle(&self, now_ms: u64) -> usize {
        let mut removed = 0;
        for map in &self.scopes {
            map.retain(|_, state| {
                let keep = Arc::strong_count(state) > 1 || !state.is_idle(now_ms);
                removed += usize::from(!keep);
                keep
            });
        }
        removed
    }
}

/// Picks, separately for requests and tokens, the tenant scope with the lowest remaining share.
#[derive(Default)]
struct HeaderPick {
    requests: Option<(f64, Level)>,
    tokens: Option<(f64, Level)>,
}

impl HeaderPick {
    fn consider(&mut self, scope: &Scope<'_>, state: &ScopeState, now_ms: u64) {
        if scope.kind == ScopeKind::Provider {
            return;
        }
        let limits = scope.limits;
        if limits.rpm.is_some() {
            pick(&mut self.requests, state.rpm.level(now_ms));
        }
        if limits.tpm.is_some() {
            pick(&mut self.tokens, state.tpm.level(now_ms));
        }
        if limits.tpd.is_some() {
            pick(&mut self.tokens, state.tpd.level(now_ms));
        }
    }

    fn finish(self) -> RateHeaders {
        let mut headers = RateHeaders::default();
        if let Some((_, level)) = self.requests {
            headers.set_requests(level);
        }
        if let Some((_, level)) = self.tokens {
            headers.set_tokens(level);
        }
        headers
    }
}

fn pick(best: &mut Option<(f64, Level)>, level: Option<Level>) {
    let Some(level) = level else { return };
    let share = remaining_share(level);
    if best.is_none_or(|(b, _)| share < b) {
        *best = Some((share, level));
    }
}
