//! The PostgreSQL store, for several gateway nodes sharing one ledger.
//!
//! The `postgres` crate is synchronous but drives a private tokio runtime: calling it from a
//! thread inside a tokio runtime panics. So every PostgreSQL call happens on a dedicated
//! `std::thread` owned by the ledger: the writer thread, and one reader thread per `SpendReader`
//! that answers queries over a channel. Connect, statement and TCP timeouts (see `store_url`)
//! bound every wait, so a hung server cannot wedge either.

use std::collections::HashSet;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::time::Duration;

use postgres::{Client, IsolationLevel, Transaction};

use super::pg_tls::PgConfig;

use super::query::{GroupRow, Plan};
use super::rollup::{Rollup, Sums};
use super::schema::{insert_records, pending, upsert_rollups, RECORDS};
use super::store_url::{PG_CONNECT_TIMEOUT, PG_STATEMENT_TIMEOUT};
use super::table::{pg_refs, Backend};
use super::{ConnectError, LedgerError, StoreWriter};
use crate::usage::UsageRecord;

/// Serialises schema migrations of nodes that start at the same time (any constant will do).
const MIGRATION_LOCK: i64 = 0x746f_6c6c_6761_7465; // "tollgate"

fn err(store: &str, e: &postgres::Error) -> LedgerError {
    LedgerError::Store {
        store: store.to_string(),
        reason: e.to_string(),
    }
}

/// A server that answers but refuses us (bad credentials, no such database, no privilege) is a
/// configuration error; anything else (refused, timed out, starting up) means "down, retry".
fn is_fatal(e: &postgres::Error) -> bool {
    e.code().is_some_and(|c| matches!(&c.code()[..2], "28" | "3D" | "42"))
}

/// `error` as a fatal or a passing failure, by the server's answer `e`.
fn classify(e: &postgres::Error, error: LedgerError) -> ConnectError {
    if is_fatal(e) {
        ConnectError::Fatal(error)
    } else {
        ConnectError::Down(error)
    }
}

fn connect(config: &PgConfig, display: &str) -> Result<Client, ConnectError> {
    config.connect().map_err(|e| {
        let store = display.to_string();
        classify(
            &e,
            LedgerError::Unavailable {
                store,
                reason: super::pg_tls::with_causes(&e),
            },
        )
    })
}

/// A connected, migrated client; also for another store that shares the database (virtual
/// keys). Call it on a thread of your own (see the module note).
pub(crate) fn connect_migrated(config: &PgConfig, display: &str) -> Result<Client, ConnectError> {
    let mut client = connect(config, display)?;
    migrate(&mut client).map_err(|e| {
        let store = display.to_string();
        classify(
            &e,
            LedgerError::Migration {
                store,
                reason: e.to_string(),
            },
        )
    })?;
    Ok(client)
}

pub(crate) struct PgStore {
    config: PgConfig,
    display: String,
    client: Option<Client>,
    insert_sql: String,
    /// One upsert per rollup table, in `ROLLUPS` order.
    rollup_sql: Vec<String>,
}

impl PgStore {
    /// Does not connect: the writer thread does, so a server that is down at start is no error.
    pub fn new(config: PgConfig, display: &str) -> PgStore {
        PgStore {
            config,
            display: display.to_string(),
            client: None,
            insert_sql: insert_records(Backend::Postgres),
            rollup_sql: upsert_rollups(Backend::Postgres),
        }
    }

    fn write_tx(&self, tx: &mut Transaction<'_>, batch: &[UsageRecord]) -> Result<usize, postgres::Error> {
        // One row per request id: RETURNING then names exactly the records that were inserted.
        let mut seen = HashSet::with_capacity(batch.len());
        let recs: Vec<&UsageRecord> = batch.iter().filter(|r| seen.insert(r.request_id.as_str())).collect();
        let arrays: Vec<_> = RECORDS.columns.iter().map(|c| c.pg_array(&recs)).collect();
        let rows = tx.query(self.insert_sql.as_str(), &pg_refs(&arrays))?;
        let mut inserted: HashSet<String> = HashSet::with_capacity(rows.len());
        for row in &rows {
            inserted.insert(row.try_get::<_, String>(0)?);
        }
        let mut rollup = Rollup::default();
        for r in recs.iter().filter(|r| inserted.contains(&r.request_id)) {
            rollup.add(r);
        }
        for (sql, rows) in self.rollup_sql.iter().zip(&rollup.tables) {
            if rows.is_empty() {
                continue;
            }
            let hours: Vec<i64> = rows.keys().map(|k| k.hour_ms).collect();
            let gkeys: Vec<String> = rows.keys().map(|k| k.gkey.clone()).collect();
            let ndims = rows.values().next().map_or(0, |(d, _)| d.len());
            let dims: Vec<Vec<Option<String>>> = (0..ndims)
                .map(|j| rows.values().map(|(d, _)| d.get(j).cloned().flatten()).collect())
                .collect();
            let sums: Vec<Vec<i64>> = (0..Sums::COLUMNS.len())
                .map(|j| rows.values().map(|(_, s)| s.to_array()[j]).collect())
                .collect();
            let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![&hours, &gkeys];
            params.extend(dims.iter().map(|d| d as &(dyn postgres::types::ToSql + Sync)));
            params.extend(sums.iter().map(|s| s as &(dyn postgres::types::ToSql + Sync)));
            tx.execute(sql.as_str(), &params)?;
        }
        Ok(inserted.len())
    }
}

impl StoreWriter for PgStore {
    fn connect(&mut self) -> Result<(), ConnectError> {
        if self.client.as_ref().is_some_and(|c| !c.is_closed()) {
            return Ok(());
        }
        self.client = None;
        self.client = Some(connect_migrated(&self.config, &self.display)?);
        Ok(())
    }

    /// Rewrites one `schema_version` row with its own values (PostgreSQL writes a new row
    /// version even so): fails on a read-only server, a full disk or a lost connection.
    fn probe(&mut self) -> Result<(), LedgerError> {
        let Some(mut client) = self.client.take() else {
            return Err(LedgerError::Unavailable {
                store: self.display.clone(),
                reason: "not connected".into(),
            });
        };
        let result = client.batch_execute(
            "UPDATE schema_version SET applied_ms = applied_ms WHERE version = (SELECT MIN(version) FROM schema_version)",
        );
        if !client.is_closed() {
            self.client = Some(client);
        }
        result.map_err(|e| err(&self.display, &e))
    }

    fn write(&mut self, batch: &[UsageRecord]) -> Result<usize, LedgerError> {
        let Some(mut client) = self.client.take() else {
            return Err(LedgerError::Unavailable {
                store: self.display.clone(),
                reason: "not connected".into(),
            });
        };
        let result = client.transaction().and_then(|mut tx| {
            let n = self.write_tx(&mut tx, batch)?;
            tx.commit()?;
            Ok(n)
        });
        match result {
            Ok(n) => {
                self.client = Some(client);
                Ok(n)
            }
            Err(e) => {
                // Keep a healthy connection (a constraint error, say); drop a broken one.
                if !client.is_closed() {
                    self.client = Some(client);
                }
                Err(err(&self.display, &e))
            }
        }
    }
}

fn migrate(client: &mut Client) -> Result<(), postgres::Error> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_ms BIGINT NOT NULL)",
    )?;
    let current: i32 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])?
        .try_get(0)?;
    for (version, step) in pending(Backend::Postgres, current.into()) {
        let version = i32::try_from(version).unwrap_or(i32::MAX);
        tx.batch_execute(&step)?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_ms) VALUES ($1, $2)",
            &[&version, &crate::time::unix_ms_i64()],
        )?;
        tracing::info!(version, "spend ledger: PostgreSQL schema migrated");
    }
    tx.commit()
}

enum Request {
    Spend(Plan, SyncSender<Result<Vec<GroupRow>, LedgerError>>),
    Record(String, SyncSender<Result<Option<UsageRecord>, LedgerError>>),
}

/// Runs queries on a thread of its own, so `spend` may be called from any thread, including
/// tokio's blocking pool. Connects on first use and again after a lost connection.
pub(crate) struct PgReader {
    tx: Sender<Request>,
    display: String,
}

/// The longest a query waits for the reader thread: connect, then one statement, plus slack.
const READER_WAIT: Duration = Duration::from_secs(PG_CONNECT_TIMEOUT.as_secs() + PG_STATEMENT_TIMEOUT.as_secs() + 5);

impl PgReader {
    pub fn start(config: PgConfig, display: &str) -> Result<PgReader, LedgerError> {
        let (tx, rx) = mpsc::channel();
        let name = display.to_string();
        std::thread::Builder::new()
            .name("tollgate-spend-reader".into())
            .spawn(move || reader_loop(config, name, rx))
            .map_err(|e| LedgerError::Thread(e.to_string()))?;
        Ok(PgReader {
            tx,
            display: display.to_string(),
        })
    }

    pub fn name(&self) -> &str {
        &self.display
    }

    fn ask<T>(&self, make: impl FnOnce(SyncSender<Result<T, LedgerError>>) -> Request) -> Result<T, LedgerError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let gone = || LedgerError::Thread("the spend reader thread stopped".into());
        self.tx.send(make(reply)).map_err(|_| gone())?;
        match answer.recv_timeout(READER_WAIT) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(LedgerError::Unavailable {
                store: self.display.clone(),
                reason: format!("no answer within {}s", READER_WAIT.as_secs()),
            }),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(gone()),
        }
    }

    pub fn run(&self, plan: &Plan) -> Result<Vec<GroupRow>, LedgerError> {
        self.ask(|r| Request::Spend(plan.clone(), r))
    }

    pub fn record(&self, request_id: &str) -> Result<Option<UsageRecord>, LedgerError> {
        self.ask(|r| Request::Record(request_id.to_string(), r))
    }
}

fn reader_loop(config: PgConfig, display: String, rx: Receiver<Request>) {
    let mut client: Option<Client> = None;
    while let Ok(req) = rx.recv() {
        match req {
            Request::Spend(plan, reply) => {
                let r = with_client(&mut client, &config, &display, |c| read_spend(c, &plan));
                drop(reply.send(r));
            }
            Request::Record(id, reply) => {
                let r = with_client(&mut client, &config, &display, |c| read_record_by_id(c, &id));
                drop(reply.send(r));
            }
        }
    }
}

/// Runs `f` on the reader's connection, connecting first if there is none. A connection the
/// server dropped since the last query (a restart, an idle timeout) only shows as closed when
/// used: then it reconnects and runs `f` once more.
fn with_client<T>(
    client: &mut Option<Client>,
    config: &PgConfig,
    display: &str,
    f: impl Fn(&mut Client) -> Result<T, postgres::Error>,
) -> Result<T, LedgerError> {
    for attempt in 0..2 {
        if client.as_ref().is_some_and(|c| c.is_closed()) {
            *client = None;
        }
        if client.is_none() {
            match connect(config, display) {
                Ok(c) => *client = Some(c),
                Err(ConnectError::Down(e) | ConnectError::Fatal(e)) => return Err(e),
            }
        }
        let Some(c) = client.as_mut() else { continue };
        match f(c) {
            Ok(v) => return Ok(v),
            Err(e) if attempt == 0 && c.is_closed() => {
                tracing::debug!(error = %e, "spend reader: connection lost; reconnecting");
            }
            Err(e) => return Err(err(display, &e)),
        }
    }
    Err(LedgerError::Unavailable {
        store: display.to_string(),
        reason: "the connection was lost twice".into(),
    })
}

fn read_spend(c: &mut Client, plan: &Plan) -> Result<Vec<GroupRow>, postgres::Error> {
    let mut tx = c
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?;
    let n = plan.dims.len();
    let mut out = Vec::new();
    for part in &plan.parts {
        let sql = plan.sql(part, |i| format!("${i}"));
        for row in tx.query(sql.as_str(), &[&part.from, &part.to])? {
            let mut key = Vec::with_capacity(n);
            for i in 0..n {
                key.push(row.try_get::<_, Option<String>>(i)?);
            }
            let mut a = [0i64; 10];
            for (j, v) in a.iter_mut().enumerate() {
                *v = row.try_get(n + j)?;
            }
            out.push((key, Sums::from_array(a)));
        }
    }
    tx.commit()?;
    Ok(out)
}

fn read_record_by_id(c: &mut Client, id: &str) -> Result<Option<UsageRecord>, postgres::Error> {
    let sql = format!(
        "SELECT {} FROM usage_records WHERE request_id = $1",
        RECORDS.column_list()
    );
    match c.query_opt(sql.as_str(), &[&id])? {
        Some(row) => Ok(Some(RECORDS.pg_read(&row)?)),
        None => Ok(None),
    }
}
