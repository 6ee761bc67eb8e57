//! The `virtual_keys` table (created by the ledger's migration step 2) on SQLite or PostgreSQL.
//! Only the key store's own thread calls this (the `postgres` client must not run inside a tokio
//! runtime). Every write sets `updated_ms`, which the other nodes poll by; PostgreSQL takes it
//! from the server's clock so that nodes with skewed clocks still agree on the order.

use std::path::Path;

use postgres::Client;
use rusqlite::{params_from_iter, OptionalExtension, TransactionBehavior};

use super::AdminError;
use crate::time::unix_ms_i64;
pub(crate) use crate::usage::ledger::shared::KeyRow;
use crate::usage::ledger::shared::{pg_connect_migrated, pg_refs, placeholder, Backend, PgParam, SqliteStore, KEYS};
use crate::usage::ledger::{ConnectError, LedgerError};

/// The SQL value each column gets in a write, in column order: its own parameter, numbered over
/// the columns that take one (`id` is the first), but on PostgreSQL `SERVER_CLOCK` gets
/// `pg_updated`.
fn write_values(b: Backend, pg_updated: &str) -> Vec<(&'static str, String)> {
    let mut n = 0;
    KEYS.columns
        .iter()
        .map(|c| match b {
            Backend::Postgres if c.name == SERVER_CLOCK => (c.name, pg_updated.to_string()),
            _ => {
                n += 1;
                (c.name, placeholder(b, n))
            }
        })
        .collect()
}

fn insert_sql(b: Backend) -> String {
    let values = write_values(b, PG_NOW);
    let (cols, vals): (Vec<&str>, Vec<String>) = values.into_iter().unzip();
    format!(
        "INSERT INTO virtual_keys ({}) VALUES ({}) ON CONFLICT (id) DO NOTHING",
        cols.join(", "),
        vals.join(", ")
    )
}

/// Sets every column but `id` (the first parameter); `updated_ms` never goes back on PostgreSQL.
fn update_sql(b: Backend) -> String {
    let values = write_values(b, &format!("GREATEST(updated_ms + 1, {PG_NOW})"));
    let sets: Vec<String> = values
        .iter()
        .filter(|(c, _)| *c != "id")
        .map(|(c, v)| format!("{c} = {v}"))
        .collect();
    format!(
        "UPDATE virtual_keys SET {} WHERE id = {}",
        sets.join(", "),
        placeholder(b, 1)
    )
}

/// The row's values for `write_values(Backend::Postgres, …)`: every column but `SERVER_CLOCK`.
fn pg_params(row: &KeyRow) -> Vec<PgParam<'_>> {
    KEYS.columns
        .iter()
        .filter(|c| c.name != SERVER_CLOCK)
        .map(|c| c.pg_value(row))
        .collect()
}

fn select_sql(filter: &str) -> String {
    format!("SELECT {} FROM virtual_keys WHERE {filter}", KEYS.column_list())
}

/// The column PostgreSQL sets from its own clock.
const SERVER_CLOCK: &str = "updated_ms";

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
        config: Box<crate::usage::ledger::shared::PgConfig>,
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
    pub fn postgres(config: crate::usage::ledger::shared::PgConfig, display: &str) -> Db {
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
        match self {
            Db::Sqlite { conn, display } => {
                let e = |x: rusqlite::Error| sqlite_err(display, x);
                let mut stmt = conn.prepare_cached(&select_sql("updated_ms >= ?1")).map_err(e)?;
                let rows = stmt.query_map([since], |r| KEYS.sqlite_read(r)).map_err(e)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(e)
            }
            Db::Postgres { .. } => self.with_pg(|c| {
                c.query(select_sql("updated_ms >= $1").as_str(), &[&since])?
                    .iter()
                    .map(|r| KEYS.pg_read(r))
                    .collect::<Result<Vec<_>, _>>()
            }),
        }
    }

    /// Inserts a new key; `Duplicate` when the id is taken. Returns the row as stored.
    pub fn insert(&mut self, mut row: KeyRow) -> Result<KeyRow, DbError> {
        match self {
            Db::Sqlite { conn, display } => {
                row.updated_ms = unix_ms_i64();
                let n = conn
                    .execute(&insert_sql(Backend::Sqlite), params_from_iter(KEYS.sqlite_values(&row)))
                    .map_err(|e| sqlite_err(display, e))?;
                if n == 0 {
                    return Err(DbError::Admin(AdminError::Duplicate(row.id)));
                }
                Ok(row)
            }
            Db::Postgres { .. } => {
                let sql = format!("{} RETURNING updated_ms", insert_sql(Backend::Postgres));
                let r = &row;
                let updated = self.with_pg(|c| {
                    c.query_opt(sql.as_str(), &pg_refs(&pg_params(r)))
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
                let found = tx
                    .query_row(&select_sql("id = ?1"), [id], |r| KEYS.sqlite_read(r))
                    .optional()
                    .map_err(e)?;
                let Some(mut row) = found else {
                    return Err(DbError::Admin(AdminError::NotFound(id.to_string())));
                };
                edit(&mut row).map_err(DbError::Admin)?;
                row.updated_ms = unix_ms_i64().max(row.updated_ms + 1);
                tx.execute(&update_sql(Backend::Sqlite), params_from_iter(KEYS.sqlite_values(&row)))
                    .map_err(e)?;
                tx.commit().map_err(e)?;
                Ok(row)
            }
            Db::Postgres { .. } => {
                let select = select_sql("id = $1 FOR UPDATE");
                let update = format!("{} RETURNING updated_ms", update_sql(Backend::Postgres));
                let out = self.with_pg(|c| {
                    let mut tx = c.transaction()?;
                    let Some(found) = tx.query_opt(select.as_str(), &[&id])? else {
                        return Ok(Err(AdminError::NotFound(id.to_string())));
                    };
                    let mut row = KEYS.pg_read(&found)?;
                    if let Err(e) = edit(&mut row) {
                        return Ok(Err(e));
                    }
                    let updated: i64 = tx.query_one(update.as_str(), &pg_refs(&pg_params(&row)))?.try_get(0)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Each statement's parameters are the row's values in column order (`id` first), less
    /// the column the server's clock sets on PostgreSQL.
    #[test]
    fn writes_number_parameters_over_the_columns_that_take_one() {
        assert_eq!(KEYS.columns[0].name, "id");
        let cols = KEYS.column_list();
        let n = KEYS.columns.len();
        let sqlite: Vec<String> = (1..=n).map(|i| format!("?{i}")).collect();
        assert_eq!(
            insert_sql(Backend::Sqlite),
            format!(
                "INSERT INTO virtual_keys ({cols}) VALUES ({}) ON CONFLICT (id) DO NOTHING",
                sqlite.join(", ")
            )
        );
        assert!(update_sql(Backend::Sqlite).ends_with("updated_ms = ?14, revoked_ms = ?15 WHERE id = ?1"));
        assert_eq!(pg_params(&KeyRow::default()).len(), n - 1);
        assert!(insert_sql(Backend::Postgres).ends_with(&format!("$13, {PG_NOW}, $14) ON CONFLICT (id) DO NOTHING")));
        assert!(update_sql(Backend::Postgres).starts_with("UPDATE virtual_keys SET hash = $2, "));
        assert!(update_sql(Backend::Postgres).ends_with(&format!(
            "updated_ms = GREATEST(updated_ms + 1, {PG_NOW}), revoked_ms = $14 WHERE id = $1"
        )));
    }
}
