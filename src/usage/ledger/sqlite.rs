//! The SQLite store: one file, WAL mode, `synchronous=NORMAL` (a commit survives a process
//! crash; an OS crash may lose the last commits, which the gateway accepts for usage records),
//! a busy timeout. The writer owns one read-write connection; each reader opens its own
//! read-only connection, so queries never wait on the writer.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior};

use super::query::{GroupRow, Plan};
use super::rollup::{to_i64, Rollup, Sums, ROLLUPS};
use super::{LedgerError, StoreWriter};
use crate::private_files;
use crate::usage::{GuardrailCounts, UsageRecord};

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Migration steps, applied in order; step `i` brings the schema to version `i + 1`.
/// Version 2 is the virtual keys table (`crate::limits::keys`, which shares this database): hashes
/// only (SHA-256 hex), never secrets; `prev_hash` is a rotated-out secret that works until
/// `prev_valid_until_ms`; nodes poll rows by `updated_ms`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE usage_records (
    request_id         TEXT PRIMARY KEY NOT NULL,
    client_request_id  TEXT,
    trace_id           TEXT NOT NULL,
    ts_ms              INTEGER NOT NULL,
    endpoint           TEXT NOT NULL,
    key_id             TEXT,
    team               TEXT,
    user_id            TEXT,
    feature            TEXT,
    tier               TEXT,
    route              TEXT,
    model              TEXT,
    provider           TEXT,
    served_model       TEXT,
    attempts           TEXT NOT NULL,
    status             INTEGER NOT NULL,
    error              TEXT,
    stream             INTEGER NOT NULL,
    prompt_tokens      INTEGER NOT NULL,
    completion_tokens  INTEGER NOT NULL,
    cached_tokens      INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    reasoning_tokens   INTEGER NOT NULL,
    tokens_estimated   INTEGER NOT NULL,
    cost_nanos         INTEGER NOT NULL,
    priced             INTEGER NOT NULL,
    latency_us         INTEGER NOT NULL,
    ttft_us            INTEGER,
    overhead_us        INTEGER NOT NULL,
    cache              TEXT NOT NULL,
    guard_redactions   INTEGER NOT NULL,
    guard_injections   INTEGER NOT NULL,
    guard_blocked      INTEGER NOT NULL,
    ab_arm             TEXT
);
CREATE INDEX usage_records_ts ON usage_records (ts_ms);
CREATE TABLE usage_hourly (
    hour_ms            INTEGER NOT NULL,
    gkey               TEXT NOT NULL,
    team               TEXT,
    feature            TEXT,
    model              TEXT,
    provider           TEXT,
    key_id             TEXT,
    user_id            TEXT,
    tier               TEXT,
    route              TEXT,
    requests           INTEGER NOT NULL,
    errors             INTEGER NOT NULL,
    prompt_tokens      INTEGER NOT NULL,
    completion_tokens  INTEGER NOT NULL,
    cached_tokens      INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    reasoning_tokens   INTEGER NOT NULL,
    cost_nanos         INTEGER NOT NULL,
    unpriced_requests  INTEGER NOT NULL,
    estimated_requests INTEGER NOT NULL,
    PRIMARY KEY (hour_ms, gkey)
) WITHOUT ROWID;
CREATE TABLE usage_hourly_coarse (
    hour_ms            INTEGER NOT NULL,
    gkey               TEXT NOT NULL,
    team               TEXT,
    feature            TEXT,
    model              TEXT,
    provider           TEXT,
    tier               TEXT,
    route              TEXT,
    requests           INTEGER NOT NULL,
    errors             INTEGER NOT NULL,
    prompt_tokens      INTEGER NOT NULL,
    completion_tokens  INTEGER NOT NULL,
    cached_tokens      INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    reasoning_tokens   INTEGER NOT NULL,
    cost_nanos         INTEGER NOT NULL,
    unpriced_requests  INTEGER NOT NULL,
    estimated_requests INTEGER NOT NULL,
    PRIMARY KEY (hour_ms, gkey)
) WITHOUT ROWID;
"#,
    r#"
CREATE TABLE virtual_keys (
    id                  TEXT PRIMARY KEY NOT NULL,
    hash                TEXT NOT NULL UNIQUE,
    prev_hash           TEXT,
    prev_valid_until_ms INTEGER,
    name                TEXT,
    team                TEXT,
    user_id             TEXT,
    tier                TEXT,
    models              TEXT NOT NULL,
    metadata            TEXT NOT NULL,
    expires_ms          INTEGER,
    limits              TEXT NOT NULL,
    created_ms          INTEGER NOT NULL,
    updated_ms          INTEGER NOT NULL,
    revoked_ms          INTEGER
);
CREATE INDEX virtual_keys_updated ON virtual_keys (updated_ms);
"#,
];

/// The record columns, in the order of every insert and select.
pub(crate) const RECORD_COLUMNS: &str = "request_id, client_request_id, trace_id, ts_ms, endpoint, key_id, team, \
    user_id, feature, tier, route, model, provider, served_model, attempts, status, error, stream, prompt_tokens, \
    completion_tokens, cached_tokens, cache_write_tokens, reasoning_tokens, tokens_estimated, cost_nanos, priced, \
    latency_us, ttft_us, overhead_us, cache, guard_redactions, guard_injections, guard_blocked, ab_arm";

fn err(store: &str, e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Store {
        store: store.to_string(),
        reason: e.to_string(),
    }
}

pub(crate) struct SqliteStore {
    conn: Connection,
    display: String,
    insert_sql: String,
    /// One upsert per rollup table, in `ROLLUPS` order.
    rollup_sql: Vec<String>,
}

impl SqliteStore {
    /// Opens (creating the file and its parent directories) and migrates.
    pub fn open(path: &Path, display: &str) -> Result<SqliteStore, LedgerError> {
        let open_err = |e: &dyn std::fmt::Display| LedgerError::Open {
            store: display.to_string(),
            reason: e.to_string(),
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            private_files::create_dir_all(parent).map_err(|e| open_err(&e))?;
        }
        // The file holds spend data: create it 0600 ourselves, because SQLite would create it
        // 0644 less the umask. SQLite gives its side files (-wal, -shm, -journal) the mode of the
        // database file, so they are private too; those left by an earlier run keep theirs, so
        // they are tightened like the file.
        private_files::open(OpenOptions::new().read(true).write(true).create(true), path).map_err(|e| open_err(&e))?;
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            private_files::tighten(Path::new(&side));
        }
        let mut conn = Connection::open(path).map_err(|e| open_err(&e))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| open_err(&e))?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(|e| open_err(&e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            let store_name = display;
            tracing::warn!(store = %store_name, mode = %mode, "spend ledger: SQLite did not switch to WAL mode");
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| open_err(&e))?;
        migrate(&mut conn).map_err(|e| LedgerError::Migration {
            store: display.to_string(),
            reason: e.to_string(),
        })?;
        let ph: Vec<String> = (1..=34).map(|i| format!("?{i}")).collect();
        let insert_sql = format!(
            "INSERT INTO usage_records ({RECORD_COLUMNS}) VALUES ({}) ON CONFLICT (request_id) DO NOTHING",
            ph.join(", ")
        );
        let sets: Vec<String> = Sums::COLUMNS
            .iter()
            .map(|c| format!("{c} = {c} + excluded.{c}"))
            .collect();
        let rollup_sql = ROLLUPS
            .iter()
            .map(|t| {
                let cols = t.columns();
                let n = 2 + cols.len() + Sums::COLUMNS.len();
                format!(
                    "INSERT INTO {} (hour_ms, gkey, {}, {}) VALUES ({}) ON CONFLICT (hour_ms, gkey) DO UPDATE SET {}",
                    t.name,
                    cols.join(", "),
                    Sums::COLUMNS.join(", "),
                    (1..=n).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", "),
                    sets.join(", ")
                )
            })
            .collect();
        Ok(SqliteStore {
            conn,
            display: display.to_string(),
            insert_sql,
            rollup_sql,
        })
    }
}

impl SqliteStore {
    /// The opened, migrated connection, for another store that shares the file (virtual keys).
    pub(crate) fn into_connection(self) -> Connection {
        self.conn
    }
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY NOT NULL, applied_ms INTEGER NOT NULL)",
    )?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current: i64 = tx.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_version", [], |r| r.get(0))?;
    for (i, step) in MIGRATIONS.iter().enumerate() {
        let version = i as i64 + 1;
        if version > current {
            tx.execute_batch(step)?;
            tx.execute(
                "INSERT INTO schema_version (version, applied_ms) VALUES (?1, ?2)",
                params![version, crate::time::unix_ms_i64()],
            )?;
            tracing::info!(version, "spend ledger: SQLite schema migrated");
        }
    }
    if current > MIGRATIONS.len() as i64 {
        tracing::warn!(
            current,
            known = MIGRATIONS.len(),
            "spend ledger: the database schema is newer than this build"
        );
    }
    tx.commit()
}

impl StoreWriter for SqliteStore {
    /// The file stays open; a failed write is simply retried.
    fn connect(&mut self) -> Result<(), super::ConnectError> {
        Ok(())
    }

    /// Rewrites the header's `user_version` with its own value: a real commit of one page (an
    /// UPDATE that changes nothing is skipped by SQLite and would prove nothing).
    fn probe(&mut self) -> Result<(), LedgerError> {
        let name = self.display.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| err(&name, e))?;
        let v: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| err(&name, e))?;
        tx.pragma_update(None, "user_version", v).map_err(|e| err(&name, e))?;
        tx.commit().map_err(|e| err(&name, e))
    }

    fn write(&mut self, batch: &[UsageRecord]) -> Result<usize, LedgerError> {
        let name = self.display.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| err(&name, e))?;
        let mut rollup = Rollup::default();
        let mut inserted = 0;
        {
            let mut ins = tx.prepare_cached(&self.insert_sql).map_err(|e| err(&name, e))?;
            for r in batch {
                let n = ins
                    .execute(params![
                        r.request_id,
                        r.client_request_id,
                        r.trace_id,
                        r.ts_ms,
                        r.endpoint,
                        r.key_id,
                        r.team,
                        r.user,
                        r.feature,
                        r.tier,
                        r.route,
                        r.model,
                        r.provider,
                        r.served_model,
                        r.attempts,
                        r.status,
                        r.error,
                        r.stream,
                        to_i64(r.prompt_tokens),
                        to_i64(r.completion_tokens),
                        to_i64(r.cached_tokens),
                        to_i64(r.cache_write_tokens),
                        to_i64(r.reasoning_tokens),
                        r.tokens_estimated,
                        r.cost_nanos,
                        r.priced,
                        to_i64(r.latency_us),
                        r.ttft_us.map(to_i64),
                        to_i64(r.overhead_us),
                        r.cache,
                        r.guardrails.redactions,
                        r.guardrails.injections,
                        r.guardrails.blocked,
                        r.ab_arm,
                    ])
                    .map_err(|e| err(&name, e))?;
                if n == 1 {
                    inserted += 1;
                    rollup.add(r);
                }
            }
            for (sql, rows) in self.rollup_sql.iter().zip(&rollup.tables) {
                let mut up = tx.prepare_cached(sql).map_err(|e| err(&name, e))?;
                for (k, (d, s)) in rows {
                    let sums = s.to_array();
                    let mut p: Vec<&dyn rusqlite::ToSql> = vec![&k.hour_ms, &k.gkey];
                    p.extend(d.iter().map(|v| v as &dyn rusqlite::ToSql));
                    p.extend(sums.iter().map(|v| v as &dyn rusqlite::ToSql));
                    up.execute(p.as_slice()).map_err(|e| err(&name, e))?;
                }
            }
        }
        tx.commit().map_err(|e| err(&name, e))?;
        Ok(inserted)
    }
}

/// A read-only connection of its own (behind a mutex: a rusqlite connection is not `Sync`).
pub(crate) struct SqliteReader {
    conn: Mutex<Connection>,
    display: String,
}

impl SqliteReader {
    pub fn open(path: &Path, display: &str) -> Result<SqliteReader, LedgerError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let open_err = |e: rusqlite::Error| LedgerError::Open {
            store: display.to_string(),
            reason: e.to_string(),
        };
        let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        Ok(SqliteReader {
            conn: Mutex::new(conn),
            display: display.to_string(),
        })
    }

    pub fn name(&self) -> &str {
        &self.display
    }

    /// Runs every part of the plan in one read transaction (one consistent snapshot).
    pub fn run(&self, plan: &Plan) -> Result<Vec<GroupRow>, LedgerError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let e = |x: rusqlite::Error| err(&self.display, x);
        let tx = conn.unchecked_transaction().map_err(e)?;
        let n = plan.dims.len();
        let mut out = Vec::new();
        for part in &plan.parts {
            let sql = plan.sql(part, |i| format!("?{i}"));
            let mut stmt = tx.prepare_cached(&sql).map_err(e)?;
            let mut rows = stmt.query(params![part.from, part.to]).map_err(e)?;
            while let Some(row) = rows.next().map_err(e)? {
                out.push(group_row(row, n).map_err(e)?);
            }
        }
        tx.commit().map_err(e)?;
        Ok(out)
    }

    pub fn record(&self, request_id: &str) -> Result<Option<UsageRecord>, LedgerError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let sql = format!("SELECT {RECORD_COLUMNS} FROM usage_records WHERE request_id = ?1");
        conn.query_row(&sql, [request_id], read_record)
            .optional()
            .map_err(|x| err(&self.display, x))
    }
}

fn group_row(row: &Row<'_>, n: usize) -> rusqlite::Result<GroupRow> {
    let mut key = Vec::with_capacity(n);
    for i in 0..n {
        key.push(row.get::<_, Option<String>>(i)?);
    }
    let mut a = [0i64; 10];
    for (j, v) in a.iter_mut().enumerate() {
        *v = row.get(n + j)?;
    }
    Ok((key, Sums::from_array(a)))
}

fn read_record(r: &Row<'_>) -> rusqlite::Result<UsageRecord> {
    let u = |i: usize| -> rusqlite::Result<u64> { Ok(u64::try_from(r.get::<_, i64>(i)?).unwrap_or(0)) };
    Ok(UsageRecord {
        request_id: r.get(0)?,
        client_request_id: r.get(1)?,
        trace_id: r.get(2)?,
        ts_ms: r.get(3)?,
        endpoint: r.get(4)?,
        key_id: r.get(5)?,
        team: r.get(6)?,
        user: r.get(7)?,
        feature: r.get(8)?,
        tier: r.get(9)?,
        route: r.get(10)?,
        model: r.get(11)?,
        provider: r.get(12)?,
        served_model: r.get(13)?,
        attempts: r.get(14)?,
        status: r.get(15)?,
        error: r.get(16)?,
        stream: r.get(17)?,
        prompt_tokens: u(18)?,
        completion_tokens: u(19)?,
        cached_tokens: u(20)?,
        cache_write_tokens: u(21)?,
        reasoning_tokens: u(22)?,
        tokens_estimated: r.get(23)?,
        cost_nanos: r.get(24)?,
        priced: r.get(25)?,
        latency_us: u(26)?,
        ttft_us: r.get::<_, Option<i64>>(27)?.map(|v| u64::try_from(v).unwrap_or(0)),
        overhead_us: u(28)?,
        cache: r.get(29)?,
        guardrails: GuardrailCounts {
            redactions: r.get(30)?,
            injections: r.get(31)?,
            blocked: r.get(32)?,
        },
        ab_arm: r.get(33)?,
    })
}
