//! The spend ledger: every usage record, stored for spend reports. SQLite by default (one file,
//! zero setup), PostgreSQL when the URL says so (several gateway nodes on one ledger).
//!
//! Off the request path: `Ledger::submit` is a `try_send` into a bounded queue plus a few atomic
//! increments; it never blocks and does no I/O. A spooler thread drains the queue into batches
//! and hands them to a writer thread, which inserts each batch in one transaction. When the store
//! is down, or the writer falls behind far enough that the queue passes half its capacity, the
//! spooler appends batches to a spill file instead (`spill`); the writer replays spill files once
//! the store takes writes again (retried with backoff from `retry_interval`), and at start. When
//! the spill directory cannot be written either, records stay in the queue (`pipeline`). Nothing
//! is lost and nothing blocks; only a full queue drops records, and those are counted.
//!
//! Invariants: inserts are idempotent (`ON CONFLICT (request_id) DO NOTHING`), and the hourly
//! rollups (`rollup`) are updated in the same transaction, for inserted rows only, so a batch
//! written twice (a crash between commit and spill-file deletion) never double counts. A spend
//! query (`query`) reads whole hours from a rollup and the edges from raw records, which equals a
//! pure raw-table aggregation. Schema migrations run at start (`schema_version`), on both stores.

mod group;
#[cfg(test)]
mod outage_tests;
mod pg;
mod pg_tls;
mod pipeline;
mod query;
mod rollup;
mod schema;
mod spill;
mod sqlite;
mod store_url;
mod table;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

pub use query::{GroupBy, SpendQuery, SpendReport, SpendRow};

use crate::usage::UsageRecord;
use pg::{PgReader, PgStore};
use query::Plan;
use spill::SpillDir;
use sqlite::{SqliteReader, SqliteStore};
use store_url::{StoreUrl, PG_CONNECT_TIMEOUT};

#[derive(Clone)]
pub struct LedgerConfig {
    /// `sqlite:///abs/path/spend.db`, `sqlite:relative/path.db`, or
    /// `postgres://user:pw@host:port/db` (also `postgresql://`).
    pub url: String,
    /// Records held in memory before `submit` starts dropping.
    pub queue_capacity: usize,
    pub batch_size: usize,
    /// A partial batch is written after this.
    pub flush_interval: Duration,
    /// Where spill files go (a subdirectory per store is made inside).
    pub spill_dir: PathBuf,
    /// How soon a down store is retried (the pause doubles while it stays down, up to 10 s).
    pub retry_interval: Duration,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            url: "sqlite:tollgate-spend.db".into(),
            queue_capacity: 65_536,
            batch_size: 500,
            flush_interval: Duration::from_millis(200),
            spill_dir: std::env::temp_dir().join("tollgate-spill"),
            retry_interval: Duration::from_secs(1),
        }
    }
}

/// The URL may hold a password: Debug shows it without.
impl fmt::Debug for LedgerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = match StoreUrl::parse(&self.url) {
            Ok(u) => u.display().to_string(),
            Err(_) => "<invalid>".into(),
        };
        f.debug_struct("LedgerConfig")
            .field("url", &url)
            .field("queue_capacity", &self.queue_capacity)
            .field("batch_size", &self.batch_size)
            .field("flush_interval", &self.flush_interval)
            .field("spill_dir", &self.spill_dir)
            .field("retry_interval", &self.retry_interval)
            .finish()
    }
}

/// Ledger errors. A store is always named by its password-free form (`postgres://user@host:5432/db`,
/// `sqlite:/path`).
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("invalid ledger URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("invalid ledger setting: {0}")]
    Config(String),
    #[error("cannot open {store}: {reason}")]
    Open { store: String, reason: String },
    #[error("schema migration failed on {store}: {reason}")]
    Migration { store: String, reason: String },
    #[error("{store} is unavailable: {reason}")]
    Unavailable { store: String, reason: String },
    #[error("{store}: {reason}")]
    Store { store: String, reason: String },
    #[error("spill directory {path}: {source}")]
    Spill {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("spend ledger thread: {0}")]
    Thread(String),
    #[error("invalid spend query: {0}")]
    Query(String),
}

/// The ledger's counters (exported as metrics).
#[derive(Debug, Default)]
pub struct LedgerStats {
    /// Records in the in-memory queue (the channel only; see `waiting`).
    pub queue_depth: AtomicU64,
    /// Records committed from the queue (duplicates included: they were handled).
    pub written: AtomicU64,
    /// Records written to spill files.
    pub spilled: AtomicU64,
    /// Records committed from spill files.
    pub replayed: AtomicU64,
    /// Records lost: the queue was full (or the ledger stopped, or a spill write failed).
    pub dropped: AtomicU64,
    /// Failed store writes (each one sent its batch to a spill file).
    pub write_errors: AtomicU64,
    pub store_up: AtomicBool,
    /// Records in spill files not yet replayed.
    pub spill_pending: AtomicU64,
    /// Records accepted by `submit` (for `flush`).
    pub(crate) submitted: AtomicU64,
    /// Records that reached the store, a spill file, or were dropped.
    pub(crate) resolved: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LedgerStatsSnapshot {
    pub queue_depth: u64,
    pub written: u64,
    pub spilled: u64,
    pub replayed: u64,
    pub dropped: u64,
    pub write_errors: u64,
    pub store_up: bool,
    pub spill_pending: u64,
}

impl LedgerStats {
    /// Records accepted but neither committed, spilled nor dropped yet: the queue plus the
    /// batches the two threads hold (which, while neither the store nor the spill directory
    /// takes records, is everything since the outage).
    pub fn waiting(&self) -> u64 {
        let resolved = self.resolved.load(Ordering::SeqCst);
        self.submitted.load(Ordering::SeqCst).saturating_sub(resolved)
    }

    pub fn snapshot(&self) -> LedgerStatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LedgerStatsSnapshot {
            queue_depth: l(&self.queue_depth),
            written: l(&self.written),
            spilled: l(&self.spilled),
            replayed: l(&self.replayed),
            dropped: l(&self.dropped),
            write_errors: l(&self.write_errors),
            store_up: self.store_up.load(Ordering::Relaxed),
            spill_pending: l(&self.spill_pending),
        }
    }
}

/// What the writer thread talks to. Implemented by `SqliteStore` and `PgStore`.
pub(crate) trait StoreWriter: Send {
    /// Connects (and migrates) when not connected; a no-op when connected.
    fn connect(&mut self) -> Result<(), ConnectError>;
    /// Inserts the batch in one transaction; returns how many records were new.
    fn write(&mut self, batch: &[UsageRecord]) -> Result<usize, LedgerError>;
    /// Commits a tiny write that changes nothing, to learn whether the store takes writes again:
    /// answering is not enough (an SQLite file is always "connected" but may be locked or on a
    /// full disk; a reachable PostgreSQL may be read-only).
    fn probe(&mut self) -> Result<(), LedgerError>;
}

pub(crate) enum ConnectError {
    /// Unreachable for now: retry.
    Down(LedgerError),
    /// The server refused us (credentials, database, privileges): a configuration error.
    Fatal(LedgerError),
}

/// State shared by the handles and the two threads.
pub(crate) struct Shared {
    pub stats: LedgerStats,
    pub store: String,
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub retry_interval: Duration,
    /// Queue depth past which a slow writer's batches go to spill files.
    pub high_water: u64,
    pub shutdown: AtomicBool,
    /// Shutdown ran out of time: spill instead of writing.
    pub abandon: AtomicBool,
    /// A spill file was closed: the writer should look for files to replay.
    pub spill_dirty: AtomicBool,
    /// Records are being dropped (logged once when it starts, once when it stops).
    dropping: AtomicBool,
    /// Spill files cannot be written (logged once when it starts, once when it stops).
    spill_failing: AtomicBool,
    /// The store refuses writes (and probes) while set: simulates a locked or read-only store.
    #[cfg(test)]
    pub fault: AtomicBool,
}

impl Shared {
    /// Records lost. Logged when dropping starts, not per record: a full queue under load would
    /// otherwise log thousands of lines a second.
    pub fn drop_records(&self, n: u64, why: &str) {
        self.stats.dropped.fetch_add(n, Ordering::Relaxed);
        self.stats.resolved.fetch_add(n, Ordering::SeqCst);
        if !self.dropping.swap(true, Ordering::Relaxed) {
            tracing::warn!(store = %self.store, waiting = self.stats.waiting(), "spend ledger: dropping usage records: {why}");
        }
    }

    /// Records reached the store or a spill file: dropping has stopped once the queue has room.
    pub fn records_flowing(&self) {
        if self.dropping.load(Ordering::Relaxed)
            && self.stats.queue_depth.load(Ordering::Relaxed) < self.high_water
            && self.dropping.swap(false, Ordering::Relaxed)
        {
            let total = self.stats.dropped.load(Ordering::Relaxed);
            tracing::info!(store = %self.store, dropped_total = total, "spend ledger: the queue has room again; records are no longer dropped");
        }
    }

    pub fn spill_failed(&self, dir: &Path, e: &std::io::Error) {
        if !self.spill_failing.swap(true, Ordering::Relaxed) {
            tracing::error!(
                store = %self.store,
                dir = %dir.display(),
                error = %e,
                "spend ledger: cannot write spill files; records wait in memory until the store or the spill directory takes them (dropped only when the queue is full)"
            );
        }
    }

    pub fn spill_ok(&self) {
        if self.spill_failing.load(Ordering::Relaxed) && self.spill_failing.swap(false, Ordering::Relaxed) {
            tracing::info!(store = %self.store, "spend ledger: spill files can be written again");
        }
    }
}

/// The record out of its `Arc`: moved when the spooler holds the last reference (the access log
/// is done with it, as it nearly always is by then), copied otherwise, on the spooler's thread.
fn owned(r: Arc<UsageRecord>) -> UsageRecord {
    Arc::try_unwrap(r).unwrap_or_else(|shared| (*shared).clone())
}

pub(crate) enum Msg {
    /// Behind a pointer: the queue's slots are allocated up front, and a record is ~500 bytes.
    /// Shared: with the access log on as well, both get the same record (`submit_shared`).
    Record(Arc<UsageRecord>),
    /// Dispatch the partial batch now (`flush`, `shutdown`).
    Wake,
}

/// The spend ledger's handle: cheap to clone, safe to call from the request path.
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

struct Inner {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    spill_path: PathBuf,
    #[cfg(test)]
    spill_fault: Arc<AtomicBool>,
}

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger")
            .field("store", &self.inner.shared.store)
            .finish()
    }
}

impl Ledger {
    /// Opens the store, runs migrations and starts the spooler and writer threads. A bad URL or
    /// an SQLite file that cannot be opened is an error; a PostgreSQL server that is down is not
    /// (the ledger spills and connects later), but one that refuses our credentials is.
    pub fn start(cfg: LedgerConfig) -> Result<Ledger, LedgerError> {
        if cfg.queue_capacity == 0 || cfg.batch_size == 0 {
            return Err(LedgerError::Config(
                "queue_capacity and batch_size must be at least 1".into(),
            ));
        }
        let url = StoreUrl::parse(&cfg.url)?;
        let spill_path = cfg.spill_dir.join(url.spill_subdir());
        let (spill, pending) = SpillDir::open(spill_path.clone()).map_err(|source| LedgerError::Spill {
            path: spill_path.clone(),
            source,
        })?;
        let store: Box<dyn StoreWriter> = match &url {
            StoreUrl::Sqlite { path, display } => Box::new(SqliteStore::open(path, display)?),
            StoreUrl::Postgres { config, display } => Box::new(PgStore::new((**config).clone(), display)),
        };
        let shared = Arc::new(Shared {
            stats: LedgerStats {
                spill_pending: AtomicU64::new(pending),
                ..LedgerStats::default()
            },
            store: url.display().to_string(),
            batch_size: cfg.batch_size,
            flush_interval: cfg.flush_interval,
            retry_interval: cfg.retry_interval.max(Duration::from_millis(10)),
            high_water: (cfg.queue_capacity as u64 / 2).max(1),
            shutdown: AtomicBool::new(false),
            abandon: AtomicBool::new(false),
            spill_dirty: AtomicBool::new(pending > 0),
            dropping: AtomicBool::new(false),
            spill_failing: AtomicBool::new(false),
            #[cfg(test)]
            fault: AtomicBool::new(false),
        });
        if pending > 0 {
            tracing::info!(store = %shared.store, records = pending, dir = %spill_path.display(), "spend ledger: spill files from an earlier run will be replayed");
        }
        let spill = Arc::new(spill);
        let (tx, rx) = mpsc::sync_channel::<Msg>(cfg.queue_capacity);
        let (batch_tx, batch_rx) = mpsc::sync_channel::<Vec<UsageRecord>>(2);
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), ConnectError>>(1);
        let spawn_err = |e: std::io::Error| LedgerError::Thread(e.to_string());
        let writer = {
            let (shared, spill) = (shared.clone(), spill.clone());
            std::thread::Builder::new()
                .name("tollgate-ledger-write".into())
                .spawn(move || {
                    crate::queue::background();
                    pipeline::run_writer(shared, spill, store, batch_rx, ready_tx)
                })
                .map_err(spawn_err)?
        };
        match ready_rx.recv_timeout(PG_CONNECT_TIMEOUT + Duration::from_secs(2)) {
            Ok(Err(ConnectError::Fatal(e))) => {
                drop(batch_tx);
                let _ = writer.join();
                return Err(e);
            }
            // The writer has logged it; records go to spill files until the store answers.
            Ok(Err(ConnectError::Down(_)) | Ok(())) => {}
            Err(_) => {
                tracing::warn!(store = %shared.store, "spend ledger: the store did not answer at start; records go to spill files until it does");
            }
        }
        let spooler = {
            let (shared, spill) = (shared.clone(), spill.clone());
            std::thread::Builder::new()
                .name("tollgate-ledger-spool".into())
                .spawn(move || {
                    crate::queue::background();
                    pipeline::run_spooler(shared, spill, rx, batch_tx)
                })
                .map_err(spawn_err)?
        };
        Ok(Ledger {
            inner: Arc::new(Inner {
                tx,
                shared,
                threads: Mutex::new(vec![spooler, writer]),
                spill_path,
                #[cfg(test)]
                spill_fault: spill.fault.clone(),
            }),
        })
    }

    /// Hands a record to the ledger. Never blocks and does no I/O: when the queue is full the
    /// record is dropped and counted.
    pub fn submit(&self, rec: UsageRecord) {
        self.submit_shared(Arc::new(rec));
    }

    /// `submit` for a record other sinks hold as well (the access log): no copy is made on the
    /// request path; the spooler takes it over, copying it only if another holder still has it.
    pub fn submit_shared(&self, rec: Arc<UsageRecord>) {
        let s = &self.inner.shared;
        if s.shutdown.load(Ordering::Relaxed) {
            s.stats.submitted.fetch_add(1, Ordering::SeqCst);
            s.drop_records(1, "the ledger is shut down");
            return;
        }
        s.stats.submitted.fetch_add(1, Ordering::SeqCst);
        s.stats.queue_depth.fetch_add(1, Ordering::Relaxed);
        match self.inner.tx.try_send(Msg::Record(rec)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                s.stats.queue_depth.fetch_sub(1, Ordering::Relaxed);
                s.drop_records(1, "the queue is full");
            }
            Err(TrySendError::Disconnected(_)) => {
                s.stats.queue_depth.fetch_sub(1, Ordering::Relaxed);
                s.drop_records(1, "the ledger is stopped");
            }
        }
    }

    pub fn stats(&self) -> &LedgerStats {
        &self.inner.shared.stats
    }

    /// The store's password-free name.
    pub fn store_name(&self) -> &str {
        &self.inner.shared.store
    }

    /// This store's spill directory.
    pub fn spill_dir(&self) -> &Path {
        &self.inner.spill_path
    }

    /// Blocks until every record submitted before the call is committed to the store or synced
    /// to a spill file (or was dropped: see `stats().dropped`); false on timeout.
    pub fn flush(&self, timeout: Duration) -> bool {
        let s = &self.inner.shared.stats;
        let target = s.submitted.load(Ordering::SeqCst);
        let deadline = Instant::now() + timeout;
        let _ = self.inner.tx.try_send(Msg::Wake);
        loop {
            if s.resolved.load(Ordering::SeqCst) >= target {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Drains the queue (writing what can be written in time, spilling the rest) and stops the
    /// threads. Later `submit`s are dropped. A write still running at the deadline is abandoned.
    pub fn shutdown(&self, timeout: Duration) {
        let shared = &self.inner.shared;
        let start = Instant::now();
        shared.shutdown.store(true, Ordering::SeqCst);
        let _ = self.inner.tx.try_send(Msg::Wake);
        let threads: Vec<JoinHandle<()>> = match self.inner.threads.lock() {
            Ok(mut t) => t.drain(..).collect(),
            Err(p) => p.into_inner().drain(..).collect(),
        };
        let soft = timeout.mul_f64(0.75);
        while threads.iter().any(|t| !t.is_finished()) {
            let spent = start.elapsed();
            if spent >= timeout {
                tracing::warn!(store = %shared.store, "spend ledger: shutdown timed out; a write in flight may be lost");
                return;
            }
            if spent >= soft {
                shared.abandon.store(true, Ordering::SeqCst);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        for t in threads {
            let _ = t.join();
        }
    }

    #[cfg(test)]
    pub(crate) fn set_fault(&self, on: bool) {
        self.inner.shared.fault.store(on, Ordering::SeqCst);
    }

    /// Every write to a spill file fails (ENOSPC) while set: a full disk.
    #[cfg(test)]
    pub(crate) fn set_spill_fault(&self, on: bool) {
        self.inner.spill_fault.store(on, Ordering::SeqCst);
    }
}

/// Reads spend from the ledger on a connection of its own. `Send + Sync`, and safe to call from
/// any thread (PostgreSQL queries run on the reader's own thread; see `pg`).
pub struct SpendReader {
    backend: ReaderBackend,
}

enum ReaderBackend {
    Sqlite(SqliteReader),
    Postgres(PgReader),
}

/// Opens a reader. SQLite: the file must exist (the ledger creates it). PostgreSQL: connects on
/// the first query (and again after a lost connection), so a server that is down is no error here.
pub fn open_reader(url: &str) -> Result<SpendReader, LedgerError> {
    let backend = match StoreUrl::parse(url)? {
        StoreUrl::Sqlite { path, display } => ReaderBackend::Sqlite(SqliteReader::open(&path, &display)?),
        StoreUrl::Postgres { config, display } => ReaderBackend::Postgres(PgReader::start(*config, &display)?),
    };
    Ok(SpendReader { backend })
}

impl SpendReader {
    pub fn store_name(&self) -> &str {
        match &self.backend {
            ReaderBackend::Sqlite(r) => r.name(),
            ReaderBackend::Postgres(r) => r.name(),
        }
    }

    /// Spend over `[from, to)`: whole hours from the rollup, the edges from raw records.
    pub fn spend(&self, q: &SpendQuery) -> Result<SpendReport, LedgerError> {
        self.run(q, false)
    }

    /// The same report computed from raw records only (slower; the reference for tests).
    #[doc(hidden)]
    pub fn spend_raw(&self, q: &SpendQuery) -> Result<SpendReport, LedgerError> {
        self.run(q, true)
    }

    fn run(&self, q: &SpendQuery, raw_only: bool) -> Result<SpendReport, LedgerError> {
        let plan = Plan::new(q, raw_only)?;
        let rows = match &self.backend {
            ReaderBackend::Sqlite(r) => r.run(&plan)?,
            ReaderBackend::Postgres(r) => r.run(&plan)?,
        };
        Ok(plan.report(q, rows))
    }

    /// One stored record, by request id.
    pub fn record(&self, request_id: &str) -> Result<Option<UsageRecord>, LedgerError> {
        match &self.backend {
            ReaderBackend::Sqlite(r) => r.record(request_id),
            ReaderBackend::Postgres(r) => r.record(request_id),
        }
    }
}

/// For stores that share the ledger's database and its migrations (`crate::limits::keys`).
pub(crate) mod shared {
    pub(crate) use super::pg::connect_migrated as pg_connect_migrated;
    pub(crate) use super::pg_tls::PgConfig;
    pub(crate) use super::schema::{KeyRow, KEYS};
    pub(crate) use super::sqlite::SqliteStore;
    pub(crate) use super::store_url::{StoreUrl, PG_CONNECT_TIMEOUT, PG_STATEMENT_TIMEOUT};
    pub(crate) use super::table::{pg_refs, placeholder, Backend, PgParam};
}
