//! The `virtual_keys` table (created by the ledger's migration step 2) on SQLite or PostgreSQL.
//! Only the key store's own thread calls this (the `postgres` client must not run inside a tokio
//! runtime). Every write sets `updated_ms`, which the other nodes poll by; PostgreSQL takes it
//! from the server's clock so that nodes with skewed clocks still agree on the order.

use std::path::Path;

use postgres::Client;
use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::AdminError;
use crate::time::unix_ms_i64;
use crate::usage::ledger::shared::{pg_connect_migrated, SqliteStore};
use crate::usage::ledger::{ConnectError, LedgerError};

/// One stored key. `hash`/`prev_hash` are SHA-256 hex; the JSON columns are kept as text.
#[derive(Debug, Clone, PartialEq)]
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

const COLUMNS: &str = "id, hash, prev_hash, prev_valid_until_ms, name, team, user_id, tier, models, metadata, \
    expires_ms, limits, created_ms, updated_ms, revoked_ms";

/// Everything but `id` and `updated_ms`, as `SET` assignments numbered from `$2`/`?2`.
fn set_list(ph: fn(usize) -> String) -> String {
    let cols: Vec<&str> = COLUMNS.split(", ").collect();
    cols.iter()
        .enumerate()
        .filter(|(_, c)| **c != "id" && **c != "updated_ms")
        .enumerate()
        .map(|(n, (_, c))| format!("{c} = {}", ph(n + 2)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The server's clock in Unix milliseconds, never going back for one row.
const PG_NOW: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

#[derive(Debug)]
pub(crate) enum DbError {
    /// Unreachable or failing: retry later (503).
    Down(String),
    /// The server refused us (credentials, database): a configuration error.
    Fatal(String),
    /// The operation itself was refused (not found, duplicate, revoked).
    Admin(AdminError),
}

impl DbError {
    pub fn into_admin(self) -> AdminError {
        match self {
            DbError::Down(m) | DbError::Fatal(m) => AdminError::Unavailable(m),
            DbError::Admin(e) => e,
        }
    }

    pub fn message(&self) -> String {
        match self {
            DbError::Down(m) | DbError::Fatal(m) => m.clone(),
            DbError::Admin(e) => e.to_string(),
        }
    }
}

impl From<ConnectError> for DbError {
    fn from(e: ConnectError) -> DbError {
        match e {
            ConnectError::Down(e) => DbError::Down(e.to_string()),
            ConnectError::Fatal(e) => DbError::Fatal(e.to_string()),
        }
    }
}

/// Changes a row in place; an error leaves it unchanged and aborts the write.
pub(crate) type Edit = Box<dyn FnOnce(&mut KeyRow) -> Result<(), AdminError> + Send>;

pub(crate) enum Db {
    Sqlite {
        conn: rusqlite::Connection,
        display: String,
    },
    Postgres {
        config: Box<postgres::Config>,
        display: String,
        client: Option<Client>,
    },
}

impl Db {
    /// Opens (creating and migrating) the SQLite file now; errors are returned.
    pub fn sqlite(path: &Path, display: &str) -> Result<Db, LedgerError> {
        let conn = SqliteStore::open(path, display)?.into_connection();
        Ok(Db::Sqlite {
            conn,
            display: display.to_string(),
        })
    }

    /// PostgreSQL connects (and migrates) on first use, and again after a lost connection.
    pub fn postgres(config: postgres::Config, display: &str) -> Db {
        Db::Postgres {
            config: Box::new(config),
            display: display.to_string(),
            client: None,
        }
    }

    pub fn display(&self) -> &str {
        match self {
            Db::Sqlite { display, .. } | Db::Postgres { display, .. } => display,
        }
    }

    /// Rows with `updated_ms >= since`, or every row.
    pub fn rows(&mut self, since: Option<i64>) -> Result<Vec<KeyRow>, DbError> {
        let since = since.unwrap_or(i64::MIN);
        let sql = |ph: &str| format!("SELECT {COLUMNS} FROM virtual_keys WHERE updated_ms >= {ph}");
        match self {
            Db::Sqlite { conn, display } => {
                let e = |x: rusqlite::Error| sqlite_err(display, x);
                let mut stmt = conn.prepare_cached(&sql("?1")).map_err(e)?;
                let rows = stmt.query_map([since], sqlite_row).map_err(e)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(e)
            }
            Db::Postgres { .. } => self.with_pg(|c| {
                c.query(sql("$1").as_str(), &[&since])?
                    .iter()
                    .map(pg_row)
                    .collect::<Result<Vec<_>, _>>()
            }),
        }
    }

    /// Inserts a new key; `Duplicate` when the id is taken. Returns the row as stored.
    pub fn insert(&mut self, mut row: KeyRow) -> Result<KeyRow, DbError> {
        match self {
            Db::Sqlite { conn, display } => {
                row.updated_ms = unix_ms_i64();
                let ph: Vec<String> = (1..=15).map(|i| format!("?{i}")).collect();
                let sql = format!(
                    "INSERT INTO virtual_keys ({COLUMNS}) VALUES ({}) ON CONFLICT (id) DO NOTHING",
                    ph.join(", ")
                );
                let n = conn
                    .execute(
                        &sql,
                        params![
                            row.id,
                            row.hash,
                            row.prev_hash,
                            row.prev_valid_until_ms,
                            row.name,
                            row.team,
                            row.user,
                            row.tier,
                            row.models,
                            row.metadata,
                            row.expires_ms,
                            row.limits,
                            row.created_ms,
                            row.updated_ms,
                            row.revoked_ms
                        ],
                    )
                    .map_err(|e| sqlite_err(display, e))?;
                if n == 0 {
                    return Err(DbError::Admin(AdminError::Duplicate(row.id)));
                }
                Ok(row)
            }
            Db::Postgres { .. } => {
                // `updated_ms` (the 14th column) is the server's clock; `revoked_ms` is `$14`.
                let mut vals: Vec<String> = (1..=13).map(|i| format!("${i}")).collect();
                vals.push(PG_NOW.to_string());
                vals.push("$14".to_string());
                let sql = format!(
                    "INSERT INTO virtual_keys ({COLUMNS}) VALUES ({}) ON CONFLICT (id) DO NOTHING RETURNING updated_ms",
                    vals.join(", ")
                );
                let r = &row;
                let updated = self.with_pg(|c| {
                    c.query_opt(
                        sql.as_str(),
                        &[
                            &r.id,
                            &r.hash,
                            &r.prev_hash,
                            &r.prev_valid_until_ms,
                            &r.name,
                            &r.team,
                            &r.user,
                            &r.tier,
                            &r.models,
                            &r.metadata,
                            &r.expires_ms,
                            &r.limits,
                            &r.created_ms,
                            &r.revoked_ms,
                        ],
                    )
                    .and_then(|o| o.map(|row| row.try_get::<_, i64>(0)).transpose())
                })?;
                match updated {
                    Some(ms) => {
                        row.updated_ms = ms;
                        Ok(row)
                    }
                    None => Err(DbError::Admin(AdminError::Duplicate(row.id))),
                }
            }
        }
    }

    /// Reads the row, applies `edit` and writes it back, in one transaction (a row lock on
    /// PostgreSQL, so two nodes editing one key serialise). `NotFound` when there is no such id.
    pub fn modify(&mut self, id: &str, edit: Edit) -> Result<KeyRow, DbError> {
        match self {
            Db::Sqlite { conn, display } => {
                let e = |x: rusqlite::Error| sqlite_err(display, x);
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(e)?;
                let sql = format!("SELECT {COLUMNS} FROM virtual_keys WHERE id = ?1");
                let Some(mut row) = tx.query_row(&sql, [id], sqlite_row).optional().map_err(e)? else {
                    return Err(DbError::Admin(AdminError::NotFound(id.to_string())));
                };
                edit(&mut row).map_err(DbError::Admin)?;
                row.updated_ms = unix_ms_i64().max(row.updated_ms + 1);
                let sql = format!(
                    "UPDATE virtual_keys SET {}, updated_ms = ?15 WHERE id = ?1",
                    set_list(|i| format!("?{i}"))
                );
                tx.execute(
                    &sql,
                    params![
                        row.id,
                        row.hash,
                        row.prev_hash,
                        row.prev_valid_until_ms,
                        row.name,
                        row.team,
                        row.user,
                        row.tier,
                        row.models,
                        row.metadata,
                        row.expires_ms,
                        row.limits,
                        row.created_ms,
                        row.revoked_ms,
                        row.updated_ms
                    ],
                )
                .map_err(e)?;
                tx.commit().map_err(e)?;
                Ok(row)
            }
            Db::Postgres { .. } => {
                let select = format!("SELECT {COLUMNS} FROM virtual_keys WHERE id = $1 FOR UPDATE");
                let update = format!(
                    "UPDATE virtual_keys SET {}, updated_ms = GREATEST(updated_ms + 1, {PG_NOW}) WHERE id = $1 \
                     RETURNING updated_ms",
                    set_list(|i| format!("${i}"))
                );
                let out = self.with_pg(|c| {
                    let mut tx = c.transaction()?;
                    let Some(found) = tx.query_opt(select.as_str(), &[&id])? else {
                        return Ok(Err(AdminError::NotFound(id.to_string())));
                    };
                    let mut row = pg_row(&found)?;
                    if let Err(e) = edit(&mut row) {
                        return Ok(Err(e));
                    }
                    let r = &row;
                    let updated: i64 = tx
                        .query_one(
                            update.as_str(),
                            &[
                                &r.id,
                                &r.hash,
                                &r.prev_hash,
                                &r.prev_valid_until_ms,
                                &r.name,
                                &r.team,
                                &r.user,
                                &r.tier,
                                &r.models,
                                &r.metadata,
                                &r.expires_ms,
                                &r.limits,
                                &r.created_ms,
                                &r.revoked_ms,
                            ],
                        )?
                        .try_get(0)?;
                    tx.commit()?;
                    row.updated_ms = updated;
                    Ok(Ok(row))
                })?;
                out.map_err(DbError::Admin)
            }
        }
    }

    /// Runs `f` on a connected client; a lost connection is dropped (and reconnected next time).
    fn with_pg<T>(&mut self, f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>) -> Result<T, DbError> {
        let Db::Postgres {
            config,
            display,
            client,
        } = self
        else {
            return Err(DbError::Down("not a PostgreSQL store".into()));
        };
        let mut c = match client.take().filter(|c| !c.is_closed()) {
            Some(c) => c,
            None => pg_connect_migrated(config, display)?,
        };
        let r = f(&mut c);
        if !c.is_closed() {
            *client = Some(c);
        }
        r.map_err(|e| DbError::Down(format!("{display}: {}", pg_reason(&e))))
    }
}

/// A server error's severity and message only: its DETAIL may quote row values (a hash).
fn pg_reason(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {} ({})", db.severity(), db.message(), db.code().code()),
        None => e.to_string(),
    }
}

fn sqlite_err(display: &str, e: rusqlite::Error) -> DbError {
    DbError::Down(format!("{display}: {e}"))
}

fn sqlite_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyRow> {
    Ok(KeyRow {
        id: r.get(0)?,
        hash: r.get(1)?,
        prev_hash: r.get(2)?,
        prev_valid_until_ms: r.get(3)?,
        name: r.get(4)?,
        team: r.get(5)?,
        user: r.get(6)?,
        tier: r.get(7)?,
        models: r.get(8)?,
        metadata: r.get(9)?,
        expires_ms: r.get(10)?,
        limits: r.get(11)?,
        created_ms: r.get(12)?,
        updated_ms: r.get(13)?,
        revoked_ms: r.get(14)?,
    })
}

fn pg_row(r: &postgres::Row) -> Result<KeyRow, postgres::Error> {
    Ok(KeyRow {
        id: r.try_get(0)?,
        hash: r.try_get(1)?,
        prev_hash: r.try_get(2)?,
        prev_valid_until_ms: r.try_get(3)?,
        name: r.try_get(4)?,
        team: r.try_get(5)?,
        user: r.try_get(6)?,
        tier: r.try_get(7)?,
        models: r.try_get(8)?,
        metadata: r.try_get(9)?,
        expires_ms: r.try_get(10)?,
        limits: r.try_get(11)?,
        created_ms: r.try_get(12)?,
        updated_ms: r.try_get(13)?,
        revoked_ms: r.try_get(14)?,
    })
}
