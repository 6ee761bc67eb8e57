//! The Responses API's response store: each stored response (its object and the conversation
//! items that led to it), per tenant, kept for a retention period, so `previous_response_id`,
//! `GET /v1/responses/{id}`, its input items and `DELETE` work whichever provider served the turn.
//!
//! It lives in the ledger's database (table `responses`, schema step 5), on a thread of its own
//! that owns the connection: the request path never does I/O here. A write is a `try_send`; a read
//! is a message and a reply awaited. Every response this node stored or deleted is also kept in a
//! bounded in-memory map (tombstones for deletions), so a client that continues a conversation on
//! the node that answered it reads its own writes before the thread has written them. Without a
//! ledger (`usage.ledger: off`) the in-memory map is the store (bounded; lost at restart).
//!
//! A response is readable only by the tenant that stored it: another tenant's id is "not found",
//! the same answer as an id that never existed.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::time::unix_ms_i64;
use crate::usage::ledger::shared::{pg_connect_migrated, SqliteStore, StoreUrl};
use crate::usage::ledger::ConnectError;

/// One stored response.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    pub id: String,
    pub tenant: String,
    pub created_ms: i64,
    pub expires_ms: i64,
    /// The response object (JSON text).
    pub response: String,
    /// The conversation's items up to this turn's input, each with an id (JSON array text).
    pub items: String,
}

/// What the store answered.
#[derive(Debug)]
pub enum Lookup {
    Found(Arc<StoredResponse>),
    NotFound,
    /// The database could not be read: the message names it (never a row's content).
    Unavailable(String),
}

enum Op {
    Put(Arc<StoredResponse>),
    Delete {
        id: String,
    },
    Get {
        id: String,
        reply: tokio::sync::oneshot::Sender<Result<Option<StoredResponse>, String>>,
    },
}

/// In memory: the response, or the tombstone of one deleted here.
type Recent = moka::sync::Cache<String, Option<Arc<StoredResponse>>>;

/// Bound of the in-memory map (by the bytes of the JSON it holds).
const RECENT_BYTES: u64 = 64 * 1024 * 1024;
/// Writes waiting for the store thread.
const QUEUE: usize = 4096;
const PURGE_EVERY: Duration = Duration::from_secs(600);

pub struct ResponseStore {
    recent: Recent,
    tx: Option<SyncSender<Op>>,
}

impl ResponseStore {
    /// The store in the ledger's database at `url` (`None`: memory only).
    pub fn open(url: Option<&str>) -> Result<Arc<ResponseStore>, String> {
        let memory_only = url.is_none();
        // (Each entry carries its own expiry; this only bounds how long memory holds it.)
        let recent_ttl = Duration::from_secs(if memory_only { 365 * 24 * 3600 } else { 3600 });
        let recent = moka::sync::Cache::builder()
            .max_capacity(RECENT_BYTES)
            .weigher(|k: &String, v: &Option<Arc<StoredResponse>>| {
                let n = k.len() + v.as_ref().map_or(0, |r| r.response.len() + r.items.len());
                u32::try_from(n).unwrap_or(u32::MAX)
            })
            .time_to_live(recent_ttl)
            .build();
        let tx = match url {
            None => None,
            Some(url) => {
                let db = match StoreUrl::parse(url).map_err(|e| e.to_string())? {
                    StoreUrl::Sqlite { path, display } => {
                        let conn = SqliteStore::open(&path, &display)
                            .map_err(|e| e.to_string())?
                            .into_connection();
                        Db::Sqlite { conn, display }
                    }
                    StoreUrl::Postgres { config, display } => Db::Postgres {
                        config,
                        display,
                        client: None,
                    },
                };
                let (tx, rx) = mpsc::sync_channel(QUEUE);
                std::thread::Builder::new()
                    .name("tollgate-responses".into())
                    .spawn(move || {
                        crate::queue::background();
                        run(db, rx)
                    })
                    .map_err(|e| e.to_string())?;
                Some(tx)
            }
        };
        Ok(Arc::new(ResponseStore { recent, tx }))
    }

    /// Keeps a response for `retention` (never blocks: a full queue drops the write, logged).
    pub fn put(&self, tenant: &str, id: &str, response: String, items: String, retention: Duration) {
        let now = unix_ms_i64();
        let row = Arc::new(StoredResponse {
            id: id.to_string(),
            tenant: tenant.to_string(),
            created_ms: now,
            expires_ms: now.saturating_add(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX)),
            response,
            items,
        });
        self.recent.insert(row.id.clone(), Some(Arc::clone(&row)));
        if let Some(tx) = &self.tx {
            if let Err(TrySendError::Full(_)) = tx.try_send(Op::Put(row)) {
                tracing::warn!("response store: the write queue is full; a response was kept in memory only");
            }
        }
    }

    /// The response `id` if `tenant` stored it and it has not expired.
    pub async fn get(&self, tenant: &str, id: &str) -> Lookup {
        let now = unix_ms_i64();
        let visible = |r: &StoredResponse| r.tenant == tenant && r.expires_ms > now;
        if let Some(hit) = self.recent.get(id) {
            return match hit {
                Some(r) if visible(&r) => Lookup::Found(r),
                _ => Lookup::NotFound,
            };
        }
        let Some(tx) = &self.tx else {
            return Lookup::NotFound;
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        if tx
            .try_send(Op::Get {
                id: id.to_string(),
                reply,
            })
            .is_err()
        {
            return Lookup::Unavailable("the response store is busy".into());
        }
        match answer.await {
            Ok(Ok(Some(r))) if visible(&r) => Lookup::Found(Arc::new(r)),
            Ok(Ok(_)) => Lookup::NotFound,
            Ok(Err(e)) => Lookup::Unavailable(e),
            Err(_) => Lookup::Unavailable("the response store stopped".into()),
        }
    }

    /// Deletes `id` if `tenant` stored it: whether it was there.
    pub async fn delete(&self, tenant: &str, id: &str) -> Lookup {
        let found = self.get(tenant, id).await;
        if let Lookup::Found(_) = found {
            self.recent.insert(id.to_string(), None);
            if let Some(tx) = &self.tx {
                if tx.try_send(Op::Delete { id: id.to_string() }).is_err() {
                    return Lookup::Unavailable("the response store is busy".into());
                }
            }
        }
        found
    }
}

enum Db {
    Sqlite {
        conn: rusqlite::Connection,
        display: String,
    },
    Postgres {
        config: Box<crate::usage::ledger::shared::PgConfig>,
        display: String,
        client: Option<postgres::Client>,
    },
}

const COLUMNS: &str = "id, tenant, created_ms, expires_ms, response, items";

impl Db {
    fn put_many(&mut self, rows: &[Arc<StoredResponse>]) -> Result<(), String> {
        let insert = |p: [&str; 6]| {
            format!(
                "INSERT INTO responses ({COLUMNS}) VALUES ({}) ON CONFLICT (id) DO NOTHING",
                p.join(", ")
            )
        };
        match self {
            Db::Sqlite { conn, display } => {
                let e = |x: rusqlite::Error| format!("{display}: {x}");
                let tx = conn.transaction().map_err(e)?;
                {
                    let mut stmt = tx
                        .prepare_cached(&insert(["?1", "?2", "?3", "?4", "?5", "?6"]))
                        .map_err(e)?;
                    for r in rows {
                        stmt.execute(rusqlite::params![
                            r.id,
                            r.tenant,
                            r.created_ms,
                            r.expires_ms,
                            r.response,
                            r.items
                        ])
                        .map_err(e)?;
                    }
                }
                tx.commit().map_err(e)
            }
            Db::Postgres { .. } => self.with_pg(|c| {
                let mut tx = c.transaction()?;
                let stmt = tx.prepare(&insert(["$1", "$2", "$3", "$4", "$5", "$6"]))?;
                for r in rows {
                    tx.execute(
                        &stmt,
                        &[&r.id, &r.tenant, &r.created_ms, &r.expires_ms, &r.response, &r.items],
                    )?;
                }
                tx.commit()
            }),
        }
    }

    fn get(&mut self, id: &str) -> Result<Option<StoredResponse>, String> {
        let sql = |p: &str| format!("SELECT {COLUMNS} FROM responses WHERE id = {p}");
        match self {
            Db::Sqlite { conn, display } => {
                use rusqlite::OptionalExtension;
                conn.query_row(&sql("?1"), [id], |row| {
                    Ok(StoredResponse {
                        id: row.get(0)?,
                        tenant: row.get(1)?,
                        created_ms: row.get(2)?,
                        expires_ms: row.get(3)?,
                        response: row.get(4)?,
                        items: row.get(5)?,
                    })
                })
                .optional()
                .map_err(|e| format!("{display}: {e}"))
            }
            Db::Postgres { .. } => self.with_pg(|c| {
                Ok(c.query_opt(&sql("$1"), &[&id])?.map(|row| StoredResponse {
                    id: row.get(0),
                    tenant: row.get(1),
                    created_ms: row.get(2),
                    expires_ms: row.get(3),
                    response: row.get(4),
                    items: row.get(5),
                }))
            }),
        }
    }

    fn delete(&mut self, id: &str) -> Result<(), String> {
        match self {
            Db::Sqlite { conn, display } => conn
                .execute("DELETE FROM responses WHERE id = ?1", [id])
                .map(drop)
                .map_err(|e| format!("{display}: {e}")),
            Db::Postgres { .. } => self.with_pg(|c| c.execute("DELETE FROM responses WHERE id = $1", &[&id]).map(drop)),
        }
    }

    fn purge(&mut self, now: i64) -> Result<(), String> {
        match self {
            Db::Sqlite { conn, display } => conn
                .execute("DELETE FROM responses WHERE expires_ms <= ?1", [now])
                .map(drop)
                .map_err(|e| format!("{display}: {e}")),
            Db::Postgres { .. } => self.with_pg(|c| {
                c.execute("DELETE FROM responses WHERE expires_ms <= $1", &[&now])
                    .map(drop)
            }),
        }
    }

    fn with_pg<T>(&mut self, f: impl FnOnce(&mut postgres::Client) -> Result<T, postgres::Error>) -> Result<T, String> {
        let Db::Postgres {
            config,
            display,
            client,
        } = self
        else {
            return Err("not a PostgreSQL store".into());
        };
        let mut c = match client.take().filter(|c| !c.is_closed()) {
            Some(c) => c,
            None => pg_connect_migrated(config, display).map_err(|e| match e {
                ConnectError::Down(e) | ConnectError::Fatal(e) => e.to_string(),
            })?,
        };
        let r = f(&mut c);
        if !c.is_closed() {
            *client = Some(c);
        }
        r.map_err(|e| match e.as_db_error() {
            Some(db) => format!("{display}: {} ({})", db.message(), db.code().code()),
            None => format!("{display}: {e}"),
        })
    }
}

/// Most writes taken into one transaction.
const BATCH: usize = 256;

/// The store thread: writes, deletes and reads in the order they came, and the purge of expired
/// rows. Writes waiting together go in one transaction (a commit each cost a response ~28 µs of
/// the gateway's CPU under load). A batch that fails is tried once more with the next one, then
/// dropped with a warning (its responses stay readable from memory on this node until they
/// leave the map).
fn run(mut db: Db, rx: Receiver<Op>) {
    let mut last_purge = Instant::now();
    let mut puts: Vec<Arc<StoredResponse>> = Vec::new();
    let mut failed_before = false;
    loop {
        let mut ops = Vec::new();
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(op) => ops.push(op),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        while ops.len() < BATCH {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        for op in ops {
            match op {
                Op::Put(r) => puts.push(r),
                Op::Delete { id } => {
                    flush(&mut db, &mut puts, &mut failed_before);
                    if let Err(e) = db.delete(&id) {
                        tracing::warn!("response store: a delete failed: {e}");
                    }
                }
                Op::Get { id, reply } => {
                    flush(&mut db, &mut puts, &mut failed_before);
                    let _ = reply.send(db.get(&id));
                }
            }
        }
        flush(&mut db, &mut puts, &mut failed_before);
        if last_purge.elapsed() >= PURGE_EVERY {
            last_purge = Instant::now();
            if let Err(e) = db.purge(unix_ms_i64()) {
                tracing::warn!("response store: expired responses could not be purged: {e}");
            }
        }
    }
}

/// Writes the waiting responses in one transaction; on a second failure in a row they are dropped.
fn flush(db: &mut Db, puts: &mut Vec<Arc<StoredResponse>>, failed_before: &mut bool) {
    if puts.is_empty() {
        return;
    }
    match db.put_many(puts) {
        Ok(()) => {
            puts.clear();
            *failed_before = false;
        }
        Err(e) if *failed_before => {
            tracing::warn!(
                responses = puts.len(),
                "response store: responses could not be written: {e}"
            );
            puts.clear();
            *failed_before = false;
        }
        Err(e) => {
            tracing::debug!("response store: write failed, retrying: {e}");
            *failed_before = true;
        }
    }
}
