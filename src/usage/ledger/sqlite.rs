//! The SQLite store: one file, WAL mode, `synchronous=NORMAL` (a commit survives a process
//! crash; an OS crash may lose the last commits, which the gateway accepts for usage records),
//! a busy timeout. The writer owns one read-write connection; each reader opens its own
//! read-only connection, so queries never wait on the writer.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, params_from_iter, Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior};

use super::query::{GroupRow, Plan};
use super::rollup::{Rollup, Sums};
use super::schema::{insert_records, pending, upsert_rollups, RECORDS};
use super::table::Backend;
use super::{LedgerError, StoreWriter};
use crate::private_files;
use crate::usage::UsageRecord;

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

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
        Ok(SqliteStore {
            conn,
            display: display.to_string(),
            insert_sql: insert_records(Backend::Sqlite),
            rollup_sql: upsert_rollups(Backend::Sqlite),
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
    for (version, step) in pending(Backend::Sqlite, current) {
        tx.execute_batch(&step)?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_ms) VALUES (?1, ?2)",
            params![version, crate::time::unix_ms_i64()],
        )?;
        tracing::info!(version, "spend ledger: SQLite schema migrated");
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
                    .execute(params_from_iter(RECORDS.sqlite_values(r)))
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
        let sql = format!(
            "SELECT {} FROM usage_records WHERE request_id = ?1",
            RECORDS.column_list()
        );
        conn.query_row(&sql, [request_id], |r| RECORDS.sqlite_read(r))
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
