//! The hourly rollups: per hour and group, the summed columns of the records inserted in that
//! hour. Written in the same transaction as the records they sum, and only for records actually
//! inserted (a replayed duplicate adds nothing).
//!
//! Two tables: `usage_hourly` keyed by all eight dimensions (answers any grouping), and
//! `usage_hourly_coarse` without `key` and `user`, whose cardinality is what a P&L by team,
//! feature or model needs: user-level rows are often nearly as many as the records themselves,
//! coarse rows are a few hundred per hour. A query reads the smallest rollup that has its
//! dimensions.
//!
//! NULL dimensions are a group of their own. SQL unique keys treat NULLs as distinct, so each
//! rollup row also carries `gkey`, an unambiguous text encoding of its dimensions (a JSON array),
//! and the primary key is `(hour_ms, gkey)`.

use std::collections::BTreeMap;

use super::group::{GroupBy, HOUR_MS};
use crate::usage::UsageRecord;

/// The summed columns, in the order used by every query and every rollup statement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Sums {
    pub requests: i64,
    pub errors: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub cache_write_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost_nanos: i64,
    pub unpriced_requests: i64,
    pub estimated_requests: i64,
}

impl Sums {
    pub const COLUMNS: [&'static str; 10] = [
        "requests",
        "errors",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
        "cost_nanos",
        "unpriced_requests",
        "estimated_requests",
    ];

    pub fn of(r: &UsageRecord) -> Sums {
        Sums {
            requests: 1,
            errors: i64::from(r.status >= 400),
            prompt_tokens: to_i64(r.prompt_tokens),
            completion_tokens: to_i64(r.completion_tokens),
            cached_tokens: to_i64(r.cached_tokens),
            cache_write_tokens: to_i64(r.cache_write_tokens),
            reasoning_tokens: to_i64(r.reasoning_tokens),
            cost_nanos: r.cost_nanos,
            unpriced_requests: i64::from(!r.priced),
            estimated_requests: i64::from(r.tokens_estimated),
        }
    }

    pub fn add(&mut self, o: &Sums) {
        self.requests = self.requests.saturating_add(o.requests);
        self.errors = self.errors.saturating_add(o.errors);
        self.prompt_tokens = self.prompt_tokens.saturating_add(o.prompt_tokens);
        self.completion_tokens = self.completion_tokens.saturating_add(o.completion_tokens);
        self.cached_tokens = self.cached_tokens.saturating_add(o.cached_tokens);
        self.cache_write_tokens = self.cache_write_tokens.saturating_add(o.cache_write_tokens);
        self.reasoning_tokens = self.reasoning_tokens.saturating_add(o.reasoning_tokens);
        self.cost_nanos = self.cost_nanos.saturating_add(o.cost_nanos);
        self.unpriced_requests = self.unpriced_requests.saturating_add(o.unpriced_requests);
        self.estimated_requests = self.estimated_requests.saturating_add(o.estimated_requests);
    }

    pub fn to_array(self) -> [i64; 10] {
        [
            self.requests,
            self.errors,
            self.prompt_tokens,
            self.completion_tokens,
            self.cached_tokens,
            self.cache_write_tokens,
            self.reasoning_tokens,
            self.cost_nanos,
            self.unpriced_requests,
            self.estimated_requests,
        ]
    }

    pub fn from_array(a: [i64; 10]) -> Sums {
        let [requests, errors, prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens, reasoning_tokens, cost_nanos, unpriced_requests, estimated_requests] =
            a;
        Sums {
            requests,
            errors,
            prompt_tokens,
            completion_tokens,
            cached_tokens,
            cache_write_tokens,
            reasoning_tokens,
            cost_nanos,
            unpriced_requests,
            estimated_requests,
        }
    }
}

/// Token counts are u64 in the record and BIGINT in the stores.
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A record's value for one dimension.
pub(crate) fn dim(r: &UsageRecord, g: GroupBy) -> Option<&String> {
    match g {
        GroupBy::Team => r.team.as_ref(),
        GroupBy::Feature => r.feature.as_ref(),
        GroupBy::Model => r.model.as_ref(),
        GroupBy::Provider => r.provider.as_ref(),
        GroupBy::Key => r.key_id.as_ref(),
        GroupBy::User => r.user.as_ref(),
        GroupBy::Tier => r.tier.as_ref(),
        GroupBy::Route => r.route.as_ref(),
    }
}

/// One rollup table: its name and the dimensions it is keyed by (besides the hour).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RollupTable {
    pub name: &'static str,
    pub dims: &'static [GroupBy],
}

impl RollupTable {
    pub fn columns(&self) -> Vec<&'static str> {
        self.dims.iter().map(|g| g.column()).collect()
    }

    pub fn covers(&self, dims: &[GroupBy]) -> bool {
        dims.iter().all(|g| self.dims.contains(g))
    }
}

pub(crate) const FULL: RollupTable = RollupTable {
    name: "usage_hourly",
    dims: &GroupBy::ALL,
};

pub(crate) const COARSE: RollupTable = RollupTable {
    name: "usage_hourly_coarse",
    dims: &[
        GroupBy::Team,
        GroupBy::Feature,
        GroupBy::Model,
        GroupBy::Provider,
        GroupBy::Tier,
        GroupBy::Route,
    ],
};

/// Every rollup, smallest last.
pub(crate) const ROLLUPS: [&RollupTable; 2] = [&FULL, &COARSE];

/// The primary key of a rollup row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RollupKey {
    pub hour_ms: i64,
    pub gkey: String,
}

/// The dimension values and sums of one rollup row.
pub(crate) type RollupRow = (Vec<Option<String>>, Sums);

/// Rollup deltas of a batch, one map per table (in `ROLLUPS` order), ordered by key so that
/// concurrent writers (several gateway nodes on one PostgreSQL) lock rollup rows in the same
/// order and cannot deadlock.
#[derive(Debug, Default)]
pub(crate) struct Rollup {
    pub tables: [BTreeMap<RollupKey, RollupRow>; 2],
}

impl Rollup {
    pub fn add(&mut self, r: &UsageRecord) {
        let hour_ms = r.ts_ms.div_euclid(HOUR_MS) * HOUR_MS;
        let sums = Sums::of(r);
        for (table, rows) in ROLLUPS.iter().zip(self.tables.iter_mut()) {
            let d: Vec<Option<String>> = table.dims.iter().map(|g| dim(r, *g).cloned()).collect();
            rows.entry(RollupKey {
                hour_ms,
                gkey: gkey(&d),
            })
            .or_insert_with(|| (d, Sums::default()))
            .1
            .add(&sums);
        }
    }
}

/// `["backend",null,"gpt-4o"]`: JSON, so distinct tuples (NULL vs "", "a,b" vs two values) never
/// share a key. Queries group by the dimension columns, never by `gkey`, so sums stay right even
/// if this encoding changed one day (old and new rows of a group would merely coexist).
pub(crate) fn gkey(d: &[Option<String>]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(16 * d.len());
    s.push('[');
    for (i, v) in d.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let Some(v) = v else {
            s.push_str("null");
            continue;
        };
        s.push('"');
        for c in v.chars() {
            match c {
                '"' => s.push_str("\\\""),
                '\\' => s.push_str("\\\\"),
                c if u32::from(c) < 0x20 => {
                    let _ = write!(s, "\\u{:04x}", u32::from(c));
                }
                c => s.push(c),
            }
        }
        s.push('"');
    }
    s.push(']');
    s
}
