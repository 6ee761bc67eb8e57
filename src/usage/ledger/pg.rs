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

use postgres::{Client, IsolationLevel, NoTls, Row, Transaction};

use super::query::{GroupRow, Plan};
use super::rollup::{to_i64, Rollup, Sums, ROLLUPS};
use super::sqlite::RECORD_COLUMNS;
use super::store_url::{PG_CONNECT_TIMEOUT, PG_STATEMENT_TIMEOUT};
use super::{ConnectError, LedgerError, StoreWriter};
use crate::usage::{GuardrailCounts, UsageRecord};

/// Serialises schema migrations of nodes that start at the same time (any constant will do).
const MIGRATION_LOCK: i64 = 0x746f_6c6c_6761_7465; // "tollgate"

/// Migration steps, applied in order; step `i` brings the schema to version `i + 1`.
/// Version 2 is the virtual keys table (`crate::limits::keys`; see the SQLite twin in `sqlite`).
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE usage_records (
    request_id         TEXT PRIMARY KEY,
    client_request_id  TEXT,
    trace_id           TEXT NOT NULL,
    ts_ms              BIGINT NOT NULL,
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
    stream             BOOLEAN NOT NULL,
    prompt_tokens      BIGINT NOT NULL,
    completion_tokens  BIGINT NOT NULL,
    cached_tokens      BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    reasoning_tokens   BIGINT NOT NULL,
    tokens_estimated   BOOLEAN NOT NULL,
    cost_nanos         BIGINT NOT NULL,
    priced             BOOLEAN NOT NULL,
    latency_us         BIGINT NOT NULL,
    ttft_us            BIGINT,
    overhead_us        BIGINT NOT NULL,
    cache              TEXT NOT NULL,
    guard_redactions   INTEGER NOT NULL,
    guard_injections   INTEGER NOT NULL,
    guard_blocked      BOOLEAN NOT NULL,
    ab_arm             TEXT
);
CREATE INDEX usage_records_ts ON usage_records (ts_ms);
CREATE TABLE usage_hourly (
    hour_ms            BIGINT NOT NULL,
    gkey               TEXT NOT NULL,
    team               TEXT,
    feature            TEXT,
    model              TEXT,
    provider           TEXT,
    key_id             TEXT,
    user_id            TEXT,
    tier               TEXT,
    route              TEXT,
    requests           BIGINT NOT NULL,
    errors             BIGINT NOT NULL,
    prompt_tokens      BIGINT NOT NULL,
    completion_tokens  BIGINT NOT NULL,
    cached_tokens      BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    reasoning_tokens   BIGINT NOT NULL,
    cost_nanos         BIGINT NOT NULL,
    unpriced_requests  BIGINT NOT NULL,
    estimated_requests BIGINT NOT NULL,
    PRIMARY KEY (hour_ms, gkey)
);
CREATE TABLE usage_hourly_coarse (
    hour_ms            BIGINT NOT NULL,
    gkey               TEXT NOT NULL,
    team               TEXT,
    feature            TEXT,
    model              TEXT,
    provider           TEXT,
    tier               TEXT,
    route              TEXT,
    requests           BIGINT NOT NULL,
    errors             BIGINT NOT NULL,
    prompt_tokens      BIGINT NOT NULL,
    completion_tokens  BIGINT NOT NULL,
    cached_tokens      BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    reasoning_tokens   BIGINT NOT NULL,
    cost_nanos         BIGINT NOT NULL,
    unpriced_requests  BIGINT NOT NULL,
    estimated_requests BIGINT NOT NULL,
    PRIMARY KEY (hour_ms, gkey)
);
"#,
    r#"
CREATE TABLE virtual_keys (
    id                  TEXT PRIMARY KEY,
    hash                TEXT NOT NULL UNIQUE,
    prev_hash           TEXT,
    prev_valid_until_ms BIGINT,
    name                TEXT,
    team                TEXT,
    user_id             TEXT,
    tier                TEXT,
    models              TEXT NOT NULL,
    metadata            TEXT NOT NULL,
    expires_ms          BIGINT,
    limits              TEXT NOT NULL,
    created_ms          BIGINT NOT NULL,
    updated_ms          BIGINT NOT NULL,
    revoked_ms          BIGINT
);
CREATE INDEX virtual_keys_updated ON virtual_keys (updated_ms);
"#,
];

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

fn connect(config: &postgres::Config, display: &str) -> Result<Client, ConnectError> {
    config.connect(NoTls).map_err(|e| {
        let le = LedgerError::Unavailable {
            store: display.to_string(),
            reason: e.to_string(),
        };
        if is_fatal(&e) {
            ConnectError::Fatal(le)
        } else {
            ConnectError::Down(le)
        }
    })
}

/// A connected, migrated client, for another store that shares the database (virtual keys).
/// Call it on a thread of your own (see the module note).
pub(crate) fn connect_migrated(config: &postgres::Config, display: &str) -> Result<Client, ConnectError> {
    let mut client = connect(config, display)?;
    migrate(&mut client).map_err(|e| {
        let le = LedgerError::Migration {
            store: display.to_string(),
            reason: e.to_string(),
        };
        if is_fatal(&e) {
            ConnectError::Fatal(le)
        } else {
            ConnectError::Down(le)
        }
    })?;
    Ok(client)
}

pub(crate) struct PgStore {
    config: postgres::Config,
    display: String,
    client: Option<Client>,
    insert_sql: String,
    /// One upsert per rollup table, in `ROLLUPS` order.
    rollup_sql: Vec<String>,
}

impl PgStore {
    /// Does not connect: the writer thread does, so a server that is down at start is no error.
    pub fn new(config: postgres::Config, display: &str) -> PgStore {
        let types = [
            "text", "text", "text", "int8", "text", "text", "text", "text", "text", "text", "text", "text", "text",
            "text", "text", "int4", "text", "bool", "int8", "int8", "int8", "int8", "int8", "bool", "int8", "bool",
            "int8", "int8", "int8", "text", "int4", "int4", "bool", "text",
        ];
        let arrays: Vec<String> = types
            .iter()
            .enumerate()
            .map(|(i, t)| format!("${}::{t}[]", i + 1))
            .collect();
        let insert_sql = format!(
            "INSERT INTO usage_records ({RECORD_COLUMNS}) SELECT * FROM UNNEST({}) \
             ON CONFLICT (request_id) DO NOTHING RETURNING request_id",
            arrays.join(", ")
        );
        let sets: Vec<String> = Sums::COLUMNS
            .iter()
            .map(|c| format!("{c} = {{t}}.{c} + EXCLUDED.{c}"))
            .collect();
        let rollup_sql = ROLLUPS
            .iter()
            .map(|t| {
                let cols = t.columns();
                let mut types = vec!["int8", "text"];
                types.extend(cols.iter().map(|_| "text"));
                types.extend(Sums::COLUMNS.iter().map(|_| "int8"));
                let arrays: Vec<String> = types
                    .iter()
                    .enumerate()
                    .map(|(i, ty)| format!("${}::{ty}[]", i + 1))
                    .collect();
                format!(
                    "INSERT INTO {} (hour_ms, gkey, {}, {}) SELECT * FROM UNNEST({}) \
                     ON CONFLICT (hour_ms, gkey) DO UPDATE SET {}",
                    t.name,
                    cols.join(", "),
                    Sums::COLUMNS.join(", "),
                    arrays.join(", "),
                    sets.join(", ").replace("{t}", t.name)
                )
            })
            .collect();
        PgStore {
            config,
            display: display.to_string(),
            client: None,
            insert_sql,
            rollup_sql,
        }
    }

    fn write_tx(&self, tx: &mut Transaction<'_>, batch: &[UsageRecord]) -> Result<usize, postgres::Error> {
        // One row per request id: RETURNING then names exactly the records that were inserted.
        let mut seen = HashSet::with_capacity(batch.len());
        let recs: Vec<&UsageRecord> = batch.iter().filter(|r| seen.insert(r.request_id.as_str())).collect();
        let s = |f: fn(&UsageRecord) -> String| recs.iter().copied().map(f).collect::<Vec<String>>();
        let o = |f: fn(&UsageRecord) -> Option<String>| recs.iter().copied().map(f).collect::<Vec<Option<String>>>();
        let i = |f: fn(&UsageRecord) -> i64| recs.iter().copied().map(f).collect::<Vec<i64>>();
        let i4 = |f: fn(&UsageRecord) -> i32| recs.iter().copied().map(f).collect::<Vec<i32>>();
        let b = |f: fn(&UsageRecord) -> bool| recs.iter().copied().map(f).collect::<Vec<bool>>();
        let c = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        let p01 = s(|r| r.request_id.clone());
        let p02 = o(|r| r.client_request_id.clone());
        let p03 = s(|r| r.trace_id.clone());
        let p04 = i(|r| r.ts_ms);
        let p05 = s(|r| r.endpoint.clone());
        let p06 = o(|r| r.key_id.clone());
        let p07 = o(|r| r.team.clone());
        let p08 = o(|r| r.user.clone());
        let p09 = o(|r| r.feature.clone());
        let p10 = o(|r| r.tier.clone());
        let p11 = o(|r| r.route.clone());
        let p12 = o(|r| r.model.clone());
        let p13 = o(|r| r.provider.clone());
        let p14 = o(|r| r.served_model.clone());
        let p15 = s(|r| r.attempts.clone());
        let p16 = i4(|r| i32::from(r.status));
        let p17 = o(|r| r.error.clone());
        let p18 = b(|r| r.stream);
        let p19 = i(|r| to_i64(r.prompt_tokens));
        let p20 = i(|r| to_i64(r.completion_tokens));
        let p21 = i(|r| to_i64(r.cached_tokens));
        let p22 = i(|r| to_i64(r.cache_write_tokens));
        let p23 = i(|r| to_i64(r.reasoning_tokens));
        let p24 = b(|r| r.tokens_estimated);
        let p25 = i(|r| r.cost_nanos);
        let p26 = b(|r| r.priced);
        let p27 = i(|r| to_i64(r.latency_us));
        let p28: Vec<Option<i64>> = recs.iter().map(|r| r.ttft_us.map(to_i64)).collect();
        let p29 = i(|r| to_i64(r.overhead_us));
        let p30 = s(|r| r.cache.clone());
        let p31: Vec<i32> = recs.iter().map(|r| c(r.guardrails.redactions)).collect();
        let p32: Vec<i32> = recs.iter().map(|r| c(r.guardrails.injections)).collect();
        let p33 = b(|r| r.guardrails.blocked);
        let p34 = o(|r| r.ab_arm.clone());
        let rows = tx.query(
            self.insert_sql.as_str(),
            &[
                &p01, &p02, &p03, &p04, &p05, &p06, &p07, &p08, &p09, &p10, &p11, &p12, &p13, &p14, &p15, &p16, &p17,
                &p18, &p19, &p20, &p21, &p22, &p23, &p24, &p25, &p26, &p27, &p28, &p29, &p30, &p31, &p32, &p33, &p34,
            ],
        )?;
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
        let mut client = connect(&self.config, &self.display)?;
        migrate(&mut client).map_err(|e| {
            let le = LedgerError::Migration {
                store: self.display.clone(),
                reason: e.to_string(),
            };
            if is_fatal(&e) {
                ConnectError::Fatal(le)
            } else {
                ConnectError::Down(le)
            }
        })?;
        self.client = Some(client);
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
    for (i, step) in MIGRATIONS.iter().enumerate() {
        let version = i as i32 + 1;
        if version > current {
            tx.batch_execute(step)?;
            tx.execute(
                "INSERT INTO schema_version (version, applied_ms) VALUES ($1, $2)",
                &[&version, &crate::time::unix_ms_i64()],
            )?;
            tracing::info!(version, "spend ledger: PostgreSQL schema migrated");
        }
    }
    if current > MIGRATIONS.len() as i32 {
        tracing::warn!(
            current,
            known = MIGRATIONS.len(),
            "spend ledger: the database schema is newer than this build"
        );
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
    pub fn start(config: postgres::Config, display: &str) -> Result<PgReader, LedgerError> {
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

fn reader_loop(config: postgres::Config, display: String, rx: Receiver<Request>) {
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
    config: &postgres::Config,
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
    let sql = format!("SELECT {RECORD_COLUMNS} FROM usage_records WHERE request_id = $1");
    match c.query_opt(sql.as_str(), &[&id])? {
        Some(row) => Ok(Some(record_from_row(&row)?)),
        None => Ok(None),
    }
}

fn record_from_row(r: &Row) -> Result<UsageRecord, postgres::Error> {
    let u = |i: usize| -> Result<u64, postgres::Error> { Ok(u64::try_from(r.try_get::<_, i64>(i)?).unwrap_or(0)) };
    let small = |i: usize| -> Result<u32, postgres::Error> { Ok(u32::try_from(r.try_get::<_, i32>(i)?).unwrap_or(0)) };
    Ok(UsageRecord {
        request_id: r.try_get(0)?,
        client_request_id: r.try_get(1)?,
        trace_id: r.try_get(2)?,
        ts_ms: r.try_get(3)?,
        endpoint: r.try_get(4)?,
        key_id: r.try_get(5)?,
        team: r.try_get(6)?,
        user: r.try_get(7)?,
        feature: r.try_get(8)?,
        tier: r.try_get(9)?,
        route: r.try_get(10)?,
        model: r.try_get(11)?,
        provider: r.try_get(12)?,
        served_model: r.try_get(13)?,
        attempts: r.try_get(14)?,
        status: u16::try_from(r.try_get::<_, i32>(15)?).unwrap_or(0),
        error: r.try_get(16)?,
        stream: r.try_get(17)?,
        prompt_tokens: u(18)?,
        completion_tokens: u(19)?,
        cached_tokens: u(20)?,
        cache_write_tokens: u(21)?,
        reasoning_tokens: u(22)?,
        tokens_estimated: r.try_get(23)?,
        cost_nanos: r.try_get(24)?,
        priced: r.try_get(25)?,
        latency_us: u(26)?,
        ttft_us: r.try_get::<_, Option<i64>>(27)?.map(|v| u64::try_from(v).unwrap_or(0)),
        overhead_us: u(28)?,
        cache: r.try_get(29)?,
        guardrails: GuardrailCounts {
            redactions: small(30)?,
            injections: small(31)?,
            blocked: r.try_get(32)?,
        },
        ab_arm: r.try_get(33)?,
    })
}
