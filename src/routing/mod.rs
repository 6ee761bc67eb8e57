//! Routing: turns a requested alias into the ordered plan of targets to try.
//!
//! The candidate list of every alias (its targets, then its fallback aliases' targets, enabled
//! providers only) is computed once when the config is loaded (`ModelAlias::plan`), so a request
//! pays one hash lookup and no allocation here. Strategies, retries, budgets and circuit breakers
//! build on this plan.

pub mod balance;
pub mod breaker;
pub mod live;
pub mod routes;

use std::sync::Arc;

use crate::api::ApiError;
use crate::config::{Snapshot, Target};

pub fn plan<'s>(snapshot: &'s Snapshot, alias: &str) -> Result<&'s [Arc<Target>], ApiError> {
    let Some(m) = snapshot.model(alias) else {
        return Err(ApiError::ModelNotFound(alias.to_string()));
    };
    if m.plan.is_empty() {
        let reason = m
            .unavailable
            .clone()
            .unwrap_or_else(|| "no target is configured".into());
        return Err(ApiError::NoProvider {
            model: alias.to_string(),
            reason,
        });
    }
    Ok(&m.plan)
}
