//! Routing: which targets may serve a request, in what order they are tried, and how the tries
//! go.
//!
//! - `routes`: the policy table (`routes:` in the config); `select`: a request's route, A/B arm,
//!   plan and target order; `balance`: the ordering strategies and A/B hashing.
//! - `attempts`: the attempt policy, a state machine the proxy drives (retry, next target,
//!   relay, give up with which error).
//! - `breaker` and `live`: what the attempts teach (circuit breakers, key cooldowns, latency
//!   stats), kept by target across config reloads, beside the snapshot rather than in it.
//!
//! The candidate list of every alias (its targets, then its fallback aliases' targets, enabled
//! providers only) is computed once when the config is loaded (`ModelAlias::plan`), so a request
//! pays one hash lookup and no allocation for it.

pub mod attempts;
pub mod balance;
pub mod breaker;
pub mod live;
pub mod routes;
pub mod select;

use std::sync::Arc;

use crate::api::ApiError;
use crate::config::{ModelAlias, Snapshot, Target};

pub fn plan<'s>(snapshot: &'s Snapshot, alias: &str) -> Result<&'s [Arc<Target>], ApiError> {
    match snapshot.model(alias) {
        Some(m) => targets(m),
        None => Err(ApiError::ModelNotFound(alias.to_string())),
    }
}

/// The alias's plan, or why it has none.
fn targets(m: &ModelAlias) -> Result<&[Arc<Target>], ApiError> {
    if m.plan.is_empty() {
        let reason = m
            .unavailable
            .clone()
            .unwrap_or_else(|| "no target is configured".into());
        return Err(ApiError::NoProvider {
            model: m.name.clone(),
            reason,
        });
    }
    Ok(&m.plan)
}
