//! `tollgate_budget_used_ratio{scope,id,period}`: how much of each key's and team's budget is
//! spent in its current window, so an alert can warn before a budget refuses requests.
//!
//! The figures come from the spend ledger, which every node writes, so they hold for the cluster
//! (a node's own limiter only knows its share in cluster mode). A background pass every
//! `EVERY` reads each period's window grouped by key and by team (the same queries that seed the
//! budgets at start) and replaces the gauge's series: a budget removed from the config, or a
//! revoked key, stops being reported. Nothing here is on the request path.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::limits::limiter::{Limits, Period};
use crate::usage::ledger::{GroupBy, SpendQuery, SpendReport};

pub const EVERY: Duration = Duration::from_secs(30);

/// One gauge sample: (scope, id, period, share spent).
pub type Sample = (&'static str, String, Period, f64);

/// A key or a team, with its limits.
type Owner<'a> = (&'a String, &'a Arc<Limits>);

/// The budgets' shares spent, given who has which budgets and what the ledger says each spent:
/// `spent(group, period)` is the report of `period`'s current window grouped by `group`.
pub fn shares(
    keys: &[(String, Arc<Limits>)],
    teams: &HashMap<String, Arc<Limits>>,
    mut spent: impl FnMut(GroupBy, Period) -> Option<SpendReport>,
) -> Vec<Sample> {
    let mut out = Vec::new();
    let owners: [(&'static str, GroupBy, Vec<Owner>); 2] = [
        ("key", GroupBy::Key, keys.iter().map(|(k, l)| (k, l)).collect()),
        ("team", GroupBy::Team, teams.iter().collect()),
    ];
    for (scope, group, owners) in owners {
        for period in Period::ALL {
            let budgeted: Vec<(&String, f64)> = owners
                .iter()
                .filter_map(|(id, l)| {
                    l.budgets
                        .iter()
                        .find(|b| b.period == period && b.usd > 0.0)
                        .map(|b| (*id, b.usd))
                })
                .collect();
            if budgeted.is_empty() {
                continue;
            }
            let Some(report) = spent(group, period) else {
                continue;
            };
            let by_id: HashMap<&str, i64> = report
                .groups
                .iter()
                .filter_map(|row| Some((row.group.get(group.as_str())?.as_deref()?, row.cost_nanos)))
                .collect();
            for (id, usd) in budgeted {
                let nanos = by_id.get(id.as_str()).copied().unwrap_or(0);
                out.push((scope, id.clone(), period, nanos as f64 / 1e9 / usd));
            }
        }
    }
    out
}

/// The query of `period`'s current window grouped by `group`.
pub fn query(group: GroupBy, period: Period, now_ms: u64) -> SpendQuery {
    let (start, _) = period.window(now_ms);
    SpendQuery {
        from_ms: start as i64,
        to_ms: now_ms as i64 + 1,
        group_by: vec![group],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::limiter::Budget;
    use crate::usage::ledger::SpendRow;

    fn limits(budgets: &[(f64, Period)]) -> Arc<Limits> {
        Arc::new(Limits {
            budgets: budgets.iter().map(|&(usd, period)| Budget { usd, period }).collect(),
            ..Limits::default()
        })
    }

    fn report(group: GroupBy, rows: &[(&str, i64)]) -> SpendReport {
        SpendReport {
            groups: rows
                .iter()
                .map(|(id, nanos)| SpendRow {
                    group: [(group.as_str().to_string(), Some(id.to_string()))]
                        .into_iter()
                        .collect(),
                    cost_nanos: *nanos,
                    ..SpendRow::default()
                })
                .collect(),
            ..SpendReport::default()
        }
    }

    #[test]
    fn each_budget_gets_its_windows_share() {
        let keys = vec![
            ("k1".to_string(), limits(&[(2.0, Period::Day), (10.0, Period::Month)])),
            ("idle".to_string(), limits(&[(1.0, Period::Day)])),
            ("free".to_string(), limits(&[])),
        ];
        let teams: HashMap<String, Arc<Limits>> = [("search".to_string(), limits(&[(4.0, Period::Day)]))].into();
        let mut asked = Vec::new();
        let mut got = shares(&keys, &teams, |group, period| {
            asked.push((group, period));
            Some(match (group, period) {
                (GroupBy::Key, Period::Day) => report(group, &[("k1", 1_500_000_000), ("other", 9)]),
                (GroupBy::Key, Period::Month) => report(group, &[("k1", 2_500_000_000)]),
                (GroupBy::Team, Period::Day) => report(group, &[("search", 5_000_000_000)]),
                _ => SpendReport::default(),
            })
        });
        got.sort_by(|a, b| (a.0, &a.1, a.2.as_str()).cmp(&(b.0, &b.1, b.2.as_str())));
        let got: Vec<(&str, &str, &str, f64)> = got
            .iter()
            .map(|(s, id, p, r)| (*s, id.as_str(), p.as_str(), *r))
            .collect();
        assert_eq!(
            got,
            vec![
                ("key", "idle", "1d", 0.0),
                ("key", "k1", "1d", 0.75),
                ("key", "k1", "month", 0.25),
                ("team", "search", "1d", 1.25),
            ]
        );
        // Only the periods someone has a budget for are read.
        assert_eq!(asked.len(), 3, "{asked:?}");
    }
}
