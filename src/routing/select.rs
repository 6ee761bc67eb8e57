//! A request's policy route, A/B arm and plan: which alias serves it and in what order its
//! targets are tried.
//!
//! The policy table's first matching route may refuse the model, rewrite the alias and pin a
//! strategy; the alias's A/B split may then send the request to another alias (sticky per user);
//! the served alias's precomputed plan (its own targets, then its fallbacks') is the candidate
//! list, and its strategy orders the own targets for this request. Nothing here allocates but
//! the order itself.

use std::sync::Arc;

use super::balance::{self, Strategy, TargetStats};
use super::live::Live;
use super::routes::{Route, RouteInput};
use crate::api::ApiError;
use crate::config::{ModelAlias, Snapshot, Target};
use crate::limits::tokens::PromptNeed;

/// Completion tokens assumed by the `cost` strategy when the request sets no maximum.
const COST_COMPLETION_GUESS: u64 = 512;

/// What the policy decided for a request.
#[derive(Debug)]
pub struct Choice<'s> {
    /// The alias the client asked for, when there is one of that name.
    pub asked: Option<&'s ModelAlias>,
    /// The route that matched, whether or not it let the request through.
    pub route: Option<&'s Route>,
    /// `a` or `b` when the alias splits its traffic.
    pub ab_arm: Option<&'static str>,
    /// The plan, or why there is none (a route refused the model, no alias of that name, no
    /// usable target).
    pub plan: Result<Plan<'s>, ApiError>,
}

/// The targets that may serve a request.
#[derive(Debug)]
pub struct Plan<'s> {
    /// The alias serving it (after the route's rewrite and the A/B split).
    pub alias: &'s ModelAlias,
    /// Its own targets first (`alias.own` of them), then its fallbacks'.
    pub targets: &'s [Arc<Target>],
    /// How the own targets are ordered: the route's pinned strategy, else the alias's.
    pub strategy: Strategy,
}

/// The route, the A/B arm and the plan for `input`; `user` makes a sticky split sticky. Also
/// the alias asked for, when it exists.
pub fn choose<'s>(snapshot: &'s Snapshot, input: &RouteInput<'_>, user: Option<&str>) -> Choice<'s> {
    let model = |name: &str| snapshot.model(name).map(|m| &**m);
    let asked = model(input.model);
    let route = super::routes::select(&snapshot.routes, input);
    let (mut name, mut alias) = (input.model, asked);
    if let Some(r) = route {
        if !r.allows(input.model) {
            let refused = ApiError::ModelNotAllowed {
                model: input.model.to_string(),
                route: r.name.clone(),
            };
            return Choice {
                asked,
                route,
                ab_arm: None,
                plan: Err(refused),
            };
        }
        if let Some(m) = &r.rewrite {
            (name, alias) = (m.as_str(), model(m));
        }
    }
    let mut ab_arm = None;
    if let Some(ab) = alias.and_then(|m| m.ab.as_ref()) {
        let sticky = if ab.sticky_user { user } else { None };
        let b = balance::ab_arm(name, sticky, ab.percent);
        ab_arm = Some(if b { "b" } else { "a" });
        if b {
            (name, alias) = (ab.model.as_str(), model(&ab.model));
        }
    }
    let plan = match alias {
        Some(alias) => super::targets(alias).map(|targets| Plan {
            alias,
            targets,
            strategy: route.and_then(|r| r.strategy).unwrap_or(alias.strategy),
        }),
        None => Err(ApiError::ModelNotFound(name.to_string())),
    };
    Choice {
        asked,
        route,
        ab_arm,
        plan,
    }
}

impl Plan<'_> {
    /// Ordering needs the request's token estimate: the `cost` strategy over several targets.
    pub fn needs_estimate(&self) -> bool {
        self.alias.own > 1 && self.strategy == Strategy::Cost
    }

    /// The order to try the targets in (indices into `targets`): the own ones by the strategy,
    /// then the fallbacks' in configured order. `need` is the request's estimate, for `cost`.
    pub fn order(&self, live: &Live, need: Option<PromptNeed>) -> Vec<usize> {
        let own = self.alias.own;
        if own <= 1 {
            return (0..self.targets.len()).collect();
        }
        let mut order = if self.strategy == Strategy::Cost {
            let prompt = need.map_or(0, |n| n.prompt);
            let completion = need.and_then(|n| n.max_output).unwrap_or(COST_COMPLETION_GUESS);
            let costs: Vec<Option<i64>> = self.targets[..own]
                .iter()
                .map(|t| t.price.as_ref().map(|p| p.estimate_nanos(prompt, completion)))
                .collect();
            balance::order_by_cost(&costs)
        } else {
            let stats: Vec<&TargetStats> = self.targets[..own]
                .iter()
                .filter_map(|t| live.target(t).map(|l| &*l.stats))
                .collect();
            if stats.len() == own {
                balance::order(self.strategy, own, self.alias.weighted.as_ref(), &stats)
            } else {
                (0..own).collect()
            }
        };
        order.extend(own..self.targets.len());
        order
    }
}
