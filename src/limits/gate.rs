//! The limiter the proxy talks to: this process's own (`limiter`), or the cluster's (`cluster`,
//! `limits.backend: redis`) with the local one standing in while Redis is unreachable (when
//! `on_failure: open`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::cluster::{Cluster, ClusterAdmission, FailMode, Refused, Settings};
use super::limiter::{Admission, Demand, Limiter, Period, RateHeaders, Rejection, Scope, ScopeKind};

pub struct Gate {
    local: Arc<Limiter>,
    cluster: Option<Cluster>,
}

/// Why a request was not admitted.
#[derive(Debug)]
pub enum Refusal {
    /// A limit refused it: 429.
    Limit(Rejection),
    /// Limits are shared through Redis, Redis is unreachable, and `on_failure: closed`: 503.
    Unavailable,
}

/// An admitted request's reservations; settle when the response ends.
#[derive(Debug)]
pub struct Ticket(TicketKind);

#[derive(Debug)]
enum TicketKind {
    Local(Admission),
    Cluster(ClusterAdmission),
    /// Served with local limits while Redis was down: reserved locally, owed to the cluster.
    Fallback(Admission, ClusterAdmission),
}

impl std::fmt::Debug for ClusterAdmission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterAdmission").finish_non_exhaustive()
    }
}

impl Ticket {
    pub fn headers(&self) -> RateHeaders {
        match &self.0 {
            TicketKind::Local(a) | TicketKind::Fallback(a, _) => a.headers(),
            TicketKind::Cluster(a) => a.headers(),
        }
    }

    /// Replaces the reserved estimate by a refined one, the request still in flight.
    pub fn resize(&mut self, tokens: u64, cost_nanos: i64, now_ms: u64) {
        match &mut self.0 {
            TicketKind::Local(a) => a.resize(tokens, cost_nanos, now_ms),
            TicketKind::Cluster(a) => a.resize(tokens, cost_nanos, now_ms),
            TicketKind::Fallback(a, _) => a.resize(tokens, cost_nanos, now_ms),
        }
    }

    /// Replaces the reservation by the actual usage (tokens, nano-USD).
    pub fn settle(self, actual_tokens: u64, actual_cost_nanos: i64, now_ms: u64) {
        match self.0 {
            TicketKind::Local(a) => a.settle(actual_tokens, actual_cost_nanos, now_ms),
            TicketKind::Cluster(a) => a.settle(actual_tokens, actual_cost_nanos, now_ms),
            TicketKind::Fallback(a, owed) => {
                a.settle(actual_tokens, actual_cost_nanos, now_ms);
                owed.settle(actual_tokens, actual_cost_nanos, now_ms);
            }
        }
    }
}

impl Gate {
    /// Counters in this process only.
    pub fn local() -> Gate {
        Gate {
            local: Arc::new(Limiter::new()),
            cluster: None,
        }
    }

    /// Counters shared through Redis (see `cluster`).
    pub fn redis(settings: Settings) -> Result<Gate, String> {
        let local = Arc::new(Limiter::new());
        let cluster = Cluster::start(settings, Arc::clone(&local))?;
        Ok(Gate {
            local,
            cluster: Some(cluster),
        })
    }

    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }

    /// This process's own limiter (the one in use without a cluster, the stand-in with one).
    pub fn local_limiter(&self) -> &Limiter {
        &self.local
    }

    /// Checks every scope and reserves in all of them, or nothing.
    pub async fn admit(&self, scopes: &[Scope<'_>], demand: Demand, now_ms: u64) -> Result<Ticket, Refusal> {
        let Some(cluster) = &self.cluster else {
            return self
                .local
                .admit(scopes, demand, now_ms)
                .map(|a| Ticket(TicketKind::Local(a)))
                .map_err(Refusal::Limit);
        };
        match cluster.admit(scopes, demand, now_ms).await {
            Ok(a) => Ok(Ticket(TicketKind::Cluster(a))),
            Err(Refused::Limit(r)) => Err(Refusal::Limit(r)),
            Err(Refused::Unavailable) => match cluster.on_failure() {
                FailMode::Open => {
                    cluster.stats().failed_open.fetch_add(1, Ordering::Relaxed);
                    let a = self.local.admit(scopes, demand, now_ms).map_err(Refusal::Limit)?;
                    Ok(Ticket(TicketKind::Fallback(a, cluster.owe(scopes, now_ms))))
                }
                FailMode::Closed => {
                    cluster.stats().failed_closed.fetch_add(1, Ordering::Relaxed);
                    Err(Refusal::Unavailable)
                }
            },
        }
    }

    /// Spend already on record for a scope's current budget window (from the ledger, at start).
    pub fn seed_spent(&self, kind: ScopeKind, id: &str, period: Period, spent_nanos: i64, now_ms: u64) {
        self.local.seed_spent(kind, id, period, spent_nanos, now_ms);
        if let Some(c) = &self.cluster {
            c.seed_spent(kind, id, period, spent_nanos, now_ms);
        }
    }

    /// Forgets idle scopes (run every few minutes, off the request path).
    pub fn prune_idle(&self, now_ms: u64) -> usize {
        self.local.prune_idle(now_ms) + self.cluster.as_ref().map_or(0, |c| c.prune_idle(now_ms))
    }
}
