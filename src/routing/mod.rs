//! Routing: turns a requested alias into the ordered plan of targets to try.
//!
//! Today a plan is the alias's targets in order, then each fallback alias's targets (recursively,
//! each alias visited once), skipping disabled providers. Strategies, retries, budgets and circuit
//! breakers build on this plan.

use std::sync::Arc;

use crate::api::ApiError;
use crate::config::{Snapshot, Target};

/// Longest plan; a fallback graph larger than this is cut (and the config check warns).
pub const MAX_ATTEMPTS: usize = 16;

pub fn plan(snapshot: &Snapshot, alias: &str) -> Result<Vec<Arc<Target>>, ApiError> {
    let Some(root) = snapshot.model(alias) else {
        return Err(ApiError::ModelNotFound(alias.to_string()));
    };
    let mut out: Vec<Arc<Target>> = Vec::with_capacity(root.targets.len() + root.fallbacks.len());
    let mut visited: Vec<&str> = Vec::new();
    let mut queue: Vec<&str> = vec![alias];
    let mut disabled = Vec::new();
    while let Some(name) = queue.first().copied() {
        queue.remove(0);
        if visited.contains(&name) {
            continue;
        }
        visited.push(name);
        let Some(m) = snapshot.model(name) else { continue };
        for t in &m.targets {
            if t.provider.is_enabled() {
                if out.len() < MAX_ATTEMPTS && !out.iter().any(|o| Arc::ptr_eq(o, t)) {
                    out.push(Arc::clone(t));
                }
            } else if let Some(why) = &t.provider.disabled {
                disabled.push(format!("{} ({why})", t.provider.name));
            }
        }
        queue.extend(m.fallbacks.iter().map(String::as_str));
    }
    if out.is_empty() {
        disabled.dedup();
        let reason = if disabled.is_empty() {
            "no target is configured".to_string()
        } else {
            format!("every provider is disabled: {}", disabled.join(", "))
        };
        return Err(ApiError::NoProvider { model: alias.to_string(), reason });
    }
    Ok(out)
}
