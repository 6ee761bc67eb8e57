//! Spend queries: the request (`SpendQuery`, `GroupBy`), the answer (`SpendReport`, `SpendRow`),
//! the plan that splits a time range into whole hours (read from the hourly rollup) and partial
//! hours at the edges (read from the raw records), the SQL for each part, and the merge.
//!
//! Invariant: a record lies either in a whole hour of the range or in an edge, never both, so a
//! merged report counts each record exactly once and equals a pure raw-table aggregation.

use std::collections::BTreeMap;

use serde::Serialize;

pub use super::group::GroupBy;
pub(crate) use super::group::HOUR_MS;
use super::rollup::{RollupTable, Sums, ROLLUPS};
use super::LedgerError;
use crate::time::format_rfc3339;
use crate::usage::NANOS_PER_USD;

/// Spend over `[from_ms, to_ms)` (Unix milliseconds), grouped by `group_by` in that order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendQuery {
    pub from_ms: i64,
    /// Exclusive.
    pub to_ms: i64,
    pub group_by: Vec<GroupBy>,
}

/// Totals of one group (or of the whole range). A dimension that was not set on a record is its
/// own group, shown as `null`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SpendRow {
    #[serde(flatten)]
    pub group: BTreeMap<String, Option<String>>,
    pub requests: u64,
    /// Requests answered with a status >= 400.
    pub errors: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
    /// Exact, in nano-USD.
    pub cost_nanos: i64,
    /// `cost_nanos` in USD, for display.
    pub cost_usd: f64,
    /// Requests whose served model had no price (their cost is 0).
    pub unpriced_requests: u64,
    /// Requests whose tokens were counted by the gateway, not reported by the provider.
    pub estimated_requests: u64,
}

impl SpendRow {
    fn new(group: BTreeMap<String, Option<String>>, s: &Sums) -> SpendRow {
        let u = |v: i64| u64::try_from(v).unwrap_or(0);
        SpendRow {
            group,
            requests: u(s.requests),
            errors: u(s.errors),
            prompt_tokens: u(s.prompt_tokens),
            completion_tokens: u(s.completion_tokens),
            cached_tokens: u(s.cached_tokens),
            cache_write_tokens: u(s.cache_write_tokens),
            reasoning_tokens: u(s.reasoning_tokens),
            cost_nanos: s.cost_nanos,
            cost_usd: s.cost_nanos as f64 / NANOS_PER_USD,
            unpriced_requests: u(s.unpriced_requests),
            estimated_requests: u(s.estimated_requests),
        }
    }
}

/// The answer to a `SpendQuery`. `groups` is sorted by cost (highest first), then by the group
/// values; it is empty when the query has no `group_by`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SpendReport {
    /// RFC 3339, UTC.
    pub from: String,
    /// RFC 3339, UTC (exclusive).
    pub to: String,
    pub group_by: Vec<String>,
    pub totals: SpendRow,
    pub groups: Vec<SpendRow>,
}

/// Which table a part of the plan reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    Raw,
    Rollup(&'static RollupTable),
}

/// One time slice of a query: `[from, to)` read from `table`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Part {
    pub table: Table,
    pub from: i64,
    pub to: i64,
}

/// A query made ready for a store: the group columns (deduplicated, in the query's order) and the
/// parts to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub dims: Vec<GroupBy>,
    pub parts: Vec<Part>,
}

/// One row of a part's result: the group values (in `Plan::dims` order) and their sums.
pub(crate) type GroupRow = (Vec<Option<String>>, Sums);

impl Plan {
    /// Whole hours inside `[from, to)` come from the smallest rollup that has the query's
    /// dimensions, the rest from raw records;
    /// `raw_only` reads everything from raw records (the reference the tests compare against).
    pub fn new(q: &SpendQuery, raw_only: bool) -> Result<Plan, LedgerError> {
        if q.from_ms > q.to_ms {
            return Err(LedgerError::Query("`from` must not be after `to`".into()));
        }
        let mut dims = Vec::with_capacity(q.group_by.len());
        for g in &q.group_by {
            if !dims.contains(g) {
                dims.push(*g);
            }
        }
        let (from, to) = (q.from_ms, q.to_ms);
        let rollup = ROLLUPS.iter().rev().find(|t| t.covers(&dims)).copied();
        let mut parts = Vec::with_capacity(3);
        let first_whole = from.div_euclid(HOUR_MS).checked_mul(HOUR_MS).and_then(|h| {
            if h == from {
                Some(h)
            } else {
                h.checked_add(HOUR_MS)
            }
        });
        let last_whole = to.div_euclid(HOUR_MS).checked_mul(HOUR_MS);
        match (first_whole, last_whole, rollup) {
            (Some(h0), Some(h1), Some(t)) if !raw_only && h0 < h1 => {
                if from < h0 {
                    parts.push(Part {
                        table: Table::Raw,
                        from,
                        to: h0,
                    });
                }
                parts.push(Part {
                    table: Table::Rollup(t),
                    from: h0,
                    to: h1,
                });
                if h1 < to {
                    parts.push(Part {
                        table: Table::Raw,
                        from: h1,
                        to,
                    });
                }
            }
            _ if from < to => parts.push(Part {
                table: Table::Raw,
                from,
                to,
            }),
            _ => {}
        }
        Ok(Plan { dims, parts })
    }

    /// The SQL of one part. `ph` renders the n-th (1-based) placeholder (`?1` for SQLite, `$1`
    /// for PostgreSQL); the two parameters are the part's `from` and `to`. The result columns are
    /// the group columns, then the ten sums in `Sums` order.
    pub fn sql(&self, part: &Part, ph: fn(usize) -> String) -> String {
        let cols: Vec<&str> = self.dims.iter().map(|g| g.column()).collect();
        let sum = |e: &str| format!("CAST(COALESCE(SUM({e}), 0) AS BIGINT)");
        let (table, time_col, sums) = match part.table {
            Table::Raw => (
                "usage_records",
                "ts_ms",
                vec![
                    "COUNT(*)".to_string(),
                    sum("CASE WHEN status >= 400 THEN 1 ELSE 0 END"),
                    sum("prompt_tokens"),
                    sum("completion_tokens"),
                    sum("cached_tokens"),
                    sum("cache_write_tokens"),
                    sum("reasoning_tokens"),
                    sum("cost_nanos"),
                    sum("CASE WHEN priced THEN 0 ELSE 1 END"),
                    sum("CASE WHEN tokens_estimated THEN 1 ELSE 0 END"),
                ],
            ),
            Table::Rollup(t) => (t.name, "hour_ms", Sums::COLUMNS.iter().map(|c| sum(c)).collect()),
        };
        let mut select: Vec<String> = cols.iter().map(|c| c.to_string()).collect();
        select.extend(sums);
        let mut sql = format!(
            "SELECT {} FROM {table} WHERE {time_col} >= {} AND {time_col} < {}",
            select.join(", "),
            ph(1),
            ph(2)
        );
        if !cols.is_empty() {
            sql.push_str(" GROUP BY ");
            sql.push_str(&cols.join(", "));
        }
        sql
    }

    /// Merges the parts' rows into the report.
    pub fn report(&self, q: &SpendQuery, rows: Vec<GroupRow>) -> SpendReport {
        let mut merged: BTreeMap<Vec<Option<String>>, Sums> = BTreeMap::new();
        let mut totals = Sums::default();
        for (key, sums) in rows {
            if sums.requests == 0 {
                continue; // the one row of an ungrouped aggregate over no records
            }
            totals.add(&sums);
            if !self.dims.is_empty() {
                merged.entry(key).or_default().add(&sums);
            }
        }
        let mut groups: Vec<(Vec<Option<String>>, Sums)> = merged.into_iter().collect();
        groups.sort_by(|a, b| b.1.cost_nanos.cmp(&a.1.cost_nanos).then_with(|| a.0.cmp(&b.0)));
        let names: Vec<String> = self.dims.iter().map(|g| g.as_str().to_string()).collect();
        let groups = groups
            .into_iter()
            .map(|(key, sums)| SpendRow::new(names.iter().cloned().zip(key).collect(), &sums))
            .collect();
        SpendReport {
            from: format_rfc3339(q.from_ms),
            to: format_rfc3339(q.to_ms),
            group_by: names,
            totals: SpendRow::new(BTreeMap::new(), &totals),
            groups,
        }
    }
}
