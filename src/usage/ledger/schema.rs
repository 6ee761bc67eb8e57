//! The ledger database's schema, for both stores: the usage records, the hourly rollups and the
//! virtual keys (`crate::limits::keys` shares the database), each table described once (`table`),
//! and the migration steps made from them.
//!
//! Invariant: a released migration step never changes; databases made by it are in use. The
//! steps are generated from the tables, and a test holds them equal, byte for byte, to the text
//! released for each store (`tests/fixtures/ledger/`). A new column is a new step (`ALTER TABLE
//! … ADD COLUMN`), with step 1's `CREATE TABLE` left as it was.

use super::rollup::{to_i64, RollupTable, Sums, ROLLUPS};
use super::table::{create_table, insert_source, Backend, Column, ColumnDef, Constraint, Field, SqlType, Table};
use crate::usage::UsageRecord;

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// One row per request; `request_id` is the key that makes inserts idempotent.
pub(crate) static RECORDS: Table<UsageRecord> = Table {
    name: "usage_records",
    columns: &[
        Column::primary_key("request_id", Field::Text(|r| &r.request_id, |r, v| r.request_id = v)),
        Column::new(
            "client_request_id",
            Field::OptText(|r| r.client_request_id.as_deref(), |r, v| r.client_request_id = v),
        ),
        Column::new("trace_id", Field::Text(|r| &r.trace_id, |r, v| r.trace_id = v)),
        Column::new("ts_ms", Field::BigInt(|r| r.ts_ms, |r, v| r.ts_ms = v)),
        Column::new("endpoint", Field::Text(|r| &r.endpoint, |r, v| r.endpoint = v)),
        Column::new("key_id", Field::OptText(|r| r.key_id.as_deref(), |r, v| r.key_id = v)),
        Column::new("team", Field::OptText(|r| r.team.as_deref(), |r, v| r.team = v)),
        Column::new("user_id", Field::OptText(|r| r.user.as_deref(), |r, v| r.user = v)),
        Column::new(
            "feature",
            Field::OptText(|r| r.feature.as_deref(), |r, v| r.feature = v),
        ),
        Column::new("tier", Field::OptText(|r| r.tier.as_deref(), |r, v| r.tier = v)),
        Column::new("route", Field::OptText(|r| r.route.as_deref(), |r, v| r.route = v)),
        Column::new("model", Field::OptText(|r| r.model.as_deref(), |r, v| r.model = v)),
        Column::new(
            "provider",
            Field::OptText(|r| r.provider.as_deref(), |r, v| r.provider = v),
        ),
        Column::new(
            "served_model",
            Field::OptText(|r| r.served_model.as_deref(), |r, v| r.served_model = v),
        ),
        Column::new("attempts", Field::Text(|r| &r.attempts, |r, v| r.attempts = v)),
        Column::new(
            "status",
            Field::Int(|r| i64::from(r.status), |r, v| r.status = u16::try_from(v).unwrap_or(0)),
        ),
        Column::new("error", Field::OptText(|r| r.error.as_deref(), |r, v| r.error = v)),
        Column::new("stream", Field::Bool(|r| r.stream, |r, v| r.stream = v)),
        Column::new(
            "prompt_tokens",
            Field::BigInt(|r| to_i64(r.prompt_tokens), |r, v| r.prompt_tokens = to_u64(v)),
        ),
        Column::new(
            "completion_tokens",
            Field::BigInt(|r| to_i64(r.completion_tokens), |r, v| r.completion_tokens = to_u64(v)),
        ),
        Column::new(
            "cached_tokens",
            Field::BigInt(|r| to_i64(r.cached_tokens), |r, v| r.cached_tokens = to_u64(v)),
        ),
        Column::new(
            "cache_write_tokens",
            Field::BigInt(
                |r| to_i64(r.cache_write_tokens),
                |r, v| r.cache_write_tokens = to_u64(v),
            ),
        ),
        Column::new(
            "reasoning_tokens",
            Field::BigInt(|r| to_i64(r.reasoning_tokens), |r, v| r.reasoning_tokens = to_u64(v)),
        ),
        Column::new(
            "tokens_estimated",
            Field::Bool(|r| r.tokens_estimated, |r, v| r.tokens_estimated = v),
        ),
        Column::new("cost_nanos", Field::BigInt(|r| r.cost_nanos, |r, v| r.cost_nanos = v)),
        Column::new("priced", Field::Bool(|r| r.priced, |r, v| r.priced = v)),
        Column::new(
            "latency_us",
            Field::BigInt(|r| to_i64(r.latency_us), |r, v| r.latency_us = to_u64(v)),
        ),
        Column::new(
            "ttft_us",
            Field::OptBigInt(|r| r.ttft_us.map(to_i64), |r, v| r.ttft_us = v.map(to_u64)),
        ),
        Column::new(
            "overhead_us",
            Field::BigInt(|r| to_i64(r.overhead_us), |r, v| r.overhead_us = to_u64(v)),
        ),
        Column::new("cache", Field::Text(|r| &r.cache, |r, v| r.cache = v)),
        Column::new(
            "guard_redactions",
            Field::Int(
                |r| i64::from(r.guardrails.redactions),
                |r, v| r.guardrails.redactions = u32::try_from(v).unwrap_or(0),
            ),
        ),
        Column::new(
            "guard_injections",
            Field::Int(
                |r| i64::from(r.guardrails.injections),
                |r, v| r.guardrails.injections = u32::try_from(v).unwrap_or(0),
            ),
        ),
        Column::new(
            "guard_blocked",
            Field::Bool(|r| r.guardrails.blocked, |r, v| r.guardrails.blocked = v),
        ),
        Column::new("ab_arm", Field::OptText(|r| r.ab_arm.as_deref(), |r, v| r.ab_arm = v)),
        // Version 3: the guardrails' audit (kinds with counts, action, injection verdict).
        Column::added(
            3,
            "guard_entities",
            Field::OptText(
                |r| non_empty(&r.guardrails.entities),
                |r, v| r.guardrails.entities = v.unwrap_or_default(),
            ),
        ),
        Column::added(
            3,
            "guard_output_entities",
            Field::OptText(
                |r| non_empty(&r.guardrails.output_entities),
                |r, v| r.guardrails.output_entities = v.unwrap_or_default(),
            ),
        ),
        Column::added(
            3,
            "guard_action",
            Field::OptText(
                |r| non_empty(&r.guardrails.action),
                |r, v| r.guardrails.action = v.unwrap_or_default(),
            ),
        ),
        Column::added(
            3,
            "guard_injection_family",
            Field::OptText(
                |r| r.guardrails.injection_family.as_deref(),
                |r, v| r.guardrails.injection_family = v,
            ),
        ),
        // The score in thousandths (0–1000).
        Column::added(
            3,
            "guard_injection_score",
            Field::OptBigInt(
                |r| {
                    r.guardrails
                        .injection_score
                        .map(|s| (f64::from(s) * 1000.0).round() as i64)
                },
                |r, v| r.guardrails.injection_score = v.map(|m| m as f32 / 1000.0),
            ),
        ),
        // Version 4: what a cache hit saved.
        Column::added(
            4,
            "cache_saved_nanos",
            Field::OptBigInt(
                |r| (r.cache_saved_nanos != 0).then_some(r.cache_saved_nanos),
                |r, v| r.cache_saved_nanos = v.unwrap_or(0),
            ),
        ),
        // Version 6: the client's address.
        Column::added(
            6,
            "client_ip",
            Field::OptText(|r| r.client_ip.as_deref(), |r, v| r.client_ip = v),
        ),
    ],
};

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// One stored virtual key. `hash`/`prev_hash` are SHA-256 hex (never a secret); `prev_hash` is
/// a rotated-out secret that works until `prev_valid_until_ms`; nodes poll rows by `updated_ms`.
/// The JSON columns are kept as text.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct KeyRow {
    pub id: String,
    pub hash: String,
    pub prev_hash: Option<String>,
    pub prev_valid_until_ms: Option<i64>,
    pub name: Option<String>,
    pub team: Option<String>,
    pub user: Option<String>,
    pub tier: Option<String>,
    /// A JSON array of strings.
    pub models: String,
    /// A JSON object of strings.
    pub metadata: String,
    pub expires_ms: Option<i64>,
    /// A JSON object or `null`.
    pub limits: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub revoked_ms: Option<i64>,
}

pub(crate) static KEYS: Table<KeyRow> = Table {
    name: "virtual_keys",
    columns: &[
        Column::primary_key("id", Field::Text(|r| &r.id, |r, v| r.id = v)),
        Column::unique("hash", Field::Text(|r| &r.hash, |r, v| r.hash = v)),
        Column::new(
            "prev_hash",
            Field::OptText(|r| r.prev_hash.as_deref(), |r, v| r.prev_hash = v),
        ),
        Column::new(
            "prev_valid_until_ms",
            Field::OptBigInt(|r| r.prev_valid_until_ms, |r, v| r.prev_valid_until_ms = v),
        ),
        Column::new("name", Field::OptText(|r| r.name.as_deref(), |r, v| r.name = v)),
        Column::new("team", Field::OptText(|r| r.team.as_deref(), |r, v| r.team = v)),
        Column::new("user_id", Field::OptText(|r| r.user.as_deref(), |r, v| r.user = v)),
        Column::new("tier", Field::OptText(|r| r.tier.as_deref(), |r, v| r.tier = v)),
        Column::new("models", Field::Text(|r| &r.models, |r, v| r.models = v)),
        Column::new("metadata", Field::Text(|r| &r.metadata, |r, v| r.metadata = v)),
        Column::new(
            "expires_ms",
            Field::OptBigInt(|r| r.expires_ms, |r, v| r.expires_ms = v),
        ),
        Column::new("limits", Field::Text(|r| &r.limits, |r, v| r.limits = v)),
        Column::new("created_ms", Field::BigInt(|r| r.created_ms, |r, v| r.created_ms = v)),
        Column::new("updated_ms", Field::BigInt(|r| r.updated_ms, |r, v| r.updated_ms = v)),
        Column::new(
            "revoked_ms",
            Field::OptBigInt(|r| r.revoked_ms, |r, v| r.revoked_ms = v),
        ),
    ],
};

/// A rollup table's columns, in the order of every upsert: the hour, the group's key, its
/// dimensions, its sums (see `rollup`).
fn rollup_columns(t: &RollupTable) -> Vec<ColumnDef<'static>> {
    let column = |name, ty, constraint| ColumnDef { name, ty, constraint };
    let mut cols = vec![
        column("hour_ms", SqlType::BigInt, Constraint::NotNull),
        column("gkey", SqlType::Text, Constraint::NotNull),
    ];
    cols.extend(
        t.columns()
            .into_iter()
            .map(|d| column(d, SqlType::Text, Constraint::Null)),
    );
    cols.extend(
        Sums::COLUMNS
            .iter()
            .map(|s| column(s, SqlType::BigInt, Constraint::NotNull)),
    );
    cols
}

/// The statement that inserts records, skipping those already in: SQLite runs it once a record,
/// PostgreSQL once a batch, and returns the ids it inserted.
pub(crate) fn insert_records(b: Backend) -> String {
    let types: Vec<SqlType> = RECORDS.columns.iter().map(Column::ty).collect();
    let returning = match b {
        Backend::Sqlite => "",
        Backend::Postgres => " RETURNING request_id",
    };
    format!(
        "INSERT INTO usage_records ({}) {} ON CONFLICT (request_id) DO NOTHING{returning}",
        RECORDS.column_list(),
        insert_source(b, &types)
    )
}

/// One upsert per rollup table, in `ROLLUPS` order, adding rows' sums to those stored.
pub(crate) fn upsert_rollups(b: Backend) -> Vec<String> {
    ROLLUPS
        .iter()
        .map(|t| {
            let cols = rollup_columns(t);
            let names: Vec<&str> = cols.iter().map(|c| c.name).collect();
            let types: Vec<SqlType> = cols.iter().map(|c| c.ty).collect();
            // PostgreSQL finds a bare column name ambiguous here; SQLite takes it as the row's own.
            let own = match b {
                Backend::Sqlite => String::new(),
                Backend::Postgres => format!("{}.", t.name),
            };
            let sets: Vec<String> = Sums::COLUMNS
                .iter()
                .map(|c| format!("{c} = {own}{c} + EXCLUDED.{c}"))
                .collect();
            format!(
                "INSERT INTO {} ({}) {} ON CONFLICT (hour_ms, gkey) DO UPDATE SET {}",
                t.name,
                names.join(", "),
                insert_source(b, &types),
                sets.join(", ")
            )
        })
        .collect()
}

fn create_rollup(b: Backend, t: &RollupTable) -> String {
    create_table(b, t.name, &rollup_columns(t), Some("hour_ms, gkey"))
}

/// The response store's table: the same text on both stores.
const RESPONSES: &str = "CREATE TABLE responses (id TEXT PRIMARY KEY NOT NULL, tenant TEXT NOT NULL, \
created_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL, response TEXT NOT NULL, items TEXT NOT NULL);\n\
CREATE INDEX responses_expires ON responses (expires_ms);\n";

/// Migration steps, applied in order; step `i` brings the schema to version `i + 1`.
pub(crate) fn migrations(b: Backend) -> [String; 6] {
    let rollups: String = ROLLUPS.iter().map(|t| create_rollup(b, t)).collect();
    [
        format!(
            "{}CREATE INDEX usage_records_ts ON usage_records (ts_ms);\n{rollups}",
            RECORDS.create(b)
        ),
        format!(
            "{}CREATE INDEX virtual_keys_updated ON virtual_keys (updated_ms);\n",
            KEYS.create(b)
        ),
        RECORDS.add_columns(b, 3),
        RECORDS.add_columns(b, 4),
        // The Responses API's response store (`usage::responses`).
        RESPONSES.into(),
        RECORDS.add_columns(b, 6),
    ]
}

/// The steps a database at schema version `current` still needs, each with the version it brings
/// the database to. A database newer than this build is used as it is, with a warning.
pub(crate) fn pending(b: Backend, current: i64) -> Vec<(i64, String)> {
    let steps = migrations(b);
    if current > steps.len() as i64 {
        tracing::warn!(
            current,
            known = steps.len(),
            "spend ledger: the database schema is newer than this build"
        );
    }
    (1..).zip(steps).filter(|(version, _)| *version > current).collect()
}

#[cfg(test)]
mod tests {
    use super::super::sqlite::{SqliteReader, SqliteStore};
    use super::super::table::placeholders;
    use super::super::StoreWriter;
    use super::*;

    /// The steps as released (each less the blank line its Rust string began with).
    const RELEASED: [(Backend, [&str; 6]); 2] = [
        (
            Backend::Sqlite,
            [
                include_str!("../../../tests/fixtures/ledger/v1.sqlite.sql"),
                include_str!("../../../tests/fixtures/ledger/v2.sqlite.sql"),
                include_str!("../../../tests/fixtures/ledger/v3.sqlite.sql"),
                include_str!("../../../tests/fixtures/ledger/v4.sqlite.sql"),
                include_str!("../../../tests/fixtures/ledger/v5.sqlite.sql"),
                include_str!("../../../tests/fixtures/ledger/v6.sqlite.sql"),
            ],
        ),
        (
            Backend::Postgres,
            [
                include_str!("../../../tests/fixtures/ledger/v1.pg.sql"),
                include_str!("../../../tests/fixtures/ledger/v2.pg.sql"),
                include_str!("../../../tests/fixtures/ledger/v3.pg.sql"),
                include_str!("../../../tests/fixtures/ledger/v4.pg.sql"),
                include_str!("../../../tests/fixtures/ledger/v5.pg.sql"),
                include_str!("../../../tests/fixtures/ledger/v6.pg.sql"),
            ],
        ),
    ];

    #[test]
    fn migrations_are_the_released_text() {
        for (b, released) in RELEASED {
            for (i, (made, text)) in migrations(b).iter().zip(released).enumerate() {
                assert_eq!(made, text, "{b:?} step {}: a released step never changes", i + 1);
            }
        }
    }

    #[test]
    fn a_version_2_database_gains_the_audit_columns_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v2.db");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE schema_version (version INTEGER PRIMARY KEY NOT NULL, applied_ms INTEGER NOT NULL);",
            )
            .unwrap();
            for (i, step) in RELEASED[0].1[..2].iter().enumerate() {
                conn.execute_batch(step).unwrap();
                conn.execute("INSERT INTO schema_version VALUES (?1, 0)", [i as i64 + 1])
                    .unwrap();
            }
            // A row written by a version-2 build: the columns of step 1 only.
            let v1: Vec<&str> = RECORDS.columns.iter().take(34).map(|c| c.name).collect();
            assert_eq!(v1.last(), Some(&"ab_arm"));
            let old = UsageRecord {
                request_id: "old".into(),
                ..UsageRecord::default()
            };
            let values: Vec<_> = RECORDS.columns.iter().take(34).map(|c| c.sqlite_value(&old)).collect();
            conn.execute(
                &format!(
                    "INSERT INTO usage_records ({}) VALUES ({})",
                    v1.join(", "),
                    placeholders(Backend::Sqlite, 34).join(", ")
                ),
                rusqlite::params_from_iter(values),
            )
            .unwrap();
        }
        let mut store = SqliteStore::open(&path, "v2").unwrap();
        let new = UsageRecord {
            request_id: "new".into(),
            guardrails: crate::usage::GuardrailCounts {
                entities: "EMAIL:1".into(),
                action: "redact".into(),
                injection_family: Some("prompt_leak".into()),
                injection_score: Some(0.625),
                ..Default::default()
            },
            ..UsageRecord::default()
        };
        assert_eq!(store.write(std::slice::from_ref(&new)).unwrap(), 1);
        let reader = SqliteReader::open(&path, "v2").unwrap();
        assert_eq!(reader.record("new").unwrap(), Some(new));
        let old = reader.record("old").unwrap().unwrap();
        assert_eq!(old.guardrails, crate::usage::GuardrailCounts::default());
    }

    #[test]
    fn a_database_made_by_the_released_steps_takes_records_and_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE schema_version (version INTEGER PRIMARY KEY NOT NULL, applied_ms INTEGER NOT NULL);",
            )
            .unwrap();
            for (i, step) in RELEASED[0].1.iter().enumerate() {
                conn.execute_batch(step).unwrap();
                conn.execute("INSERT INTO schema_version VALUES (?1, 0)", [i as i64 + 1])
                    .unwrap();
            }
        }
        let mut store = SqliteStore::open(&path, "old").unwrap();
        let record = UsageRecord {
            request_id: "r1".into(),
            user: Some("u".into()),
            status: 429,
            ttft_us: Some(7),
            guardrails: crate::usage::GuardrailCounts {
                redactions: 3,
                injections: 0,
                blocked: true,
                entities: "EMAIL:3".into(),
                action: "redact".into(),
                ..Default::default()
            },
            ..UsageRecord::default()
        };
        assert_eq!(store.write(std::slice::from_ref(&record)).unwrap(), 1);
        let reader = SqliteReader::open(&path, "old").unwrap();
        assert_eq!(reader.record("r1").unwrap(), Some(record));
        // The key store's table, as the key store writes and reads it.
        let conn = store.into_connection();
        let key = KeyRow {
            id: "k".into(),
            hash: "h".into(),
            models: "[]".into(),
            expires_ms: Some(5),
            ..KeyRow::default()
        };
        let (cols, n) = (KEYS.column_list(), KEYS.columns.len());
        let ph = placeholders(Backend::Sqlite, n).join(", ");
        conn.execute(
            &format!("INSERT INTO virtual_keys ({cols}) VALUES ({ph})"),
            rusqlite::params_from_iter(KEYS.sqlite_values(&key)),
        )
        .unwrap();
        let back = conn
            .query_row(&format!("SELECT {cols} FROM virtual_keys"), [], |r| KEYS.sqlite_read(r))
            .unwrap();
        assert_eq!(back, key);
    }
}
