//! The exact cache shared between nodes through Redis (`cache.redis`), behind each node's local
//! store: a local miss asks Redis (bounded by `timeout`); an answer stored on one node is written
//! to both; a purge on any node removes the entries from Redis and, through a Redis channel, from
//! every node's local store.
//!
//! All Redis I/O runs on one thread of its own (a current-thread Tokio runtime, as the limits'
//! link does): a lookup sends its question over a channel and waits for the answer at most
//! `timeout`, so a slow or absent Redis costs a request that much at worst and never blocks a
//! proxy thread; writes are handed over and not waited for (dropped, and counted, when the queue
//! is full). Redis down is a miss, never an error: the node serves from its own store and
//! reconnects in the background.
//!
//! Layout (`P` is `cache.redis.prefix`): `P:cache:e:HEX` holds an entry (its metadata as a JSON
//! line, then the canonical answer), expiring with it; the sorted sets `P:cache:t:TENANT`,
//! `P:cache:m:MODEL` and `P:cache:all` index the entries by tenant and model (scored by expiry,
//! trimmed of expired members on every write) so a purge finds them; purges are announced on
//! `P:cache:purge`.
//!
//! The semantic index is kept in step the same way: a question a node indexes is appended to the
//! stream `P:cache:sem` (its context, its entry's key, its text and vector; capped at the index's
//! bound), which every node reads from its start when it starts and follows afterwards, indexing
//! what the others stored. So a paraphrase of a question answered through node A hits on node B,
//! whose candidate's answer then comes from Redis like an exact hit.
//!
//! Invariants: the key is the hash `key::exact` made (tenant included), so a node never reads an
//! entry another tenant's request could not have; nothing here logs a key's text or a body.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::key::Key;
use super::store::Purge;
use crate::secret::Secret;

/// `cache.redis`, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub url: Secret,
    /// The CAs (PEM) to check a `rediss://` server against instead of the system's.
    pub ca: Option<Vec<u8>>,
    pub prefix: String,
    /// Connect and reply timeout, and the most a lookup waits.
    pub timeout: Duration,
}

/// An entry as Redis holds it (times are wall-clock Unix milliseconds).
#[derive(Debug, Clone)]
pub struct Stored {
    pub tenant: Box<str>,
    pub model: Box<str>,
    pub fresh_until_ms: u64,
    pub keep_until_ms: u64,
    pub cost_nanousd: u64,
    pub body: Bytes,
}

#[derive(Serialize, Deserialize)]
struct Meta<'a> {
    t: &'a str,
    m: &'a str,
    f: u64,
    k: u64,
    c: u64,
}

impl Stored {
    fn encode(&self) -> Vec<u8> {
        let meta = Meta {
            t: &self.tenant,
            m: &self.model,
            f: self.fresh_until_ms,
            k: self.keep_until_ms,
            c: self.cost_nanousd,
        };
        let mut out = serde_json::to_vec(&meta).unwrap_or_default();
        out.push(b'\n');
        out.extend_from_slice(&self.body);
        out
    }

    fn decode(raw: &[u8]) -> Option<Stored> {
        let nl = memchr::memchr(b'\n', raw)?;
        let meta: Meta<'_> = serde_json::from_slice(&raw[..nl]).ok()?;
        Some(Stored {
            tenant: meta.t.into(),
            model: meta.m.into(),
            fresh_until_ms: meta.f,
            keep_until_ms: meta.k,
            cost_nanousd: meta.c,
            body: Bytes::copy_from_slice(&raw[nl + 1..]),
        })
    }
}

/// The tier's counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    /// Lookups, writes and purges that failed or timed out (Redis down, slow, refusing).
    pub errors: AtomicU64,
    /// Writes dropped because the queue to Redis was full.
    pub dropped: AtomicU64,
}

enum Op {
    Get(Key, oneshot::Sender<Option<Stored>>),
    Put(Key, Stored),
    Purge(Purge, oneshot::Sender<Result<u64, String>>),
    Index(Indexed),
}

/// A question of the semantic index, as the stream carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct Indexed {
    pub context: Key,
    pub exact: Key,
    pub text: String,
    pub vector: Vec<f32>,
}

/// What a question indexed by another node does on this one.
pub type OnIndexed = Box<dyn Fn(Indexed) + Send + Sync>;

/// The shared tier.
pub struct Shared {
    tx: mpsc::Sender<Op>,
    timeout: Duration,
    pub stats: Arc<Stats>,
}

/// What a purge announced on the channel does on each node.
pub type OnPurge = Box<dyn Fn(&Purge) + Send + Sync>;

const QUEUE: usize = 4096;
const RECONNECT: Duration = Duration::from_millis(500);

impl Shared {
    /// Starts the Redis thread. Redis down at start is not an error (lookups miss until it is
    /// up); a malformed URL is.
    pub fn start(
        settings: Settings,
        on_purge: OnPurge,
        semantic: Option<(usize, OnIndexed)>,
    ) -> Result<Shared, String> {
        let client = crate::redis_client::open("cache.redis", settings.url.expose(), settings.ca.as_deref())?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(Stats::default());
        let timeout = settings.timeout;
        let node = format!("{:016x}", rand::random::<u64>());
        let stream_cap = semantic.as_ref().map_or(0, |(cap, _)| *cap);
        let link = Link {
            client,
            prefix: settings.prefix.clone(),
            timeout,
            conn: None,
            stats: Arc::clone(&stats),
            node: node.clone(),
            stream_cap,
        };
        std::thread::Builder::new()
            .name("tollgate-cache-redis".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "cache: cannot start the Redis thread's runtime");
                        return;
                    }
                };
                rt.block_on(async move {
                    let sub = tokio::spawn(subscribe(link.client.clone(), link.channel(), on_purge));
                    let follow = semantic.map(|(_, on_indexed)| {
                        tokio::spawn(follow(link.client.clone(), link.stream(), node, on_indexed))
                    });
                    link.serve(rx).await;
                    sub.abort();
                    if let Some(f) = follow {
                        f.abort();
                    }
                });
            })
            .map_err(|e| format!("cannot start the cache's Redis thread: {e}"))?;
        Ok(Shared { tx, timeout, stats })
    }

    /// The entry under `key`, if Redis answers within the timeout.
    pub async fn get(&self, key: Key) -> Option<Stored> {
        let (tx, rx) = oneshot::channel();
        if self.tx.try_send(Op::Get(key, tx)).is_err() {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(Some(s))) => {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                Some(s)
            }
            Ok(Ok(None)) => {
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Stores `entry` under `key` (not waited for).
    pub fn put(&self, key: Key, entry: Stored) {
        if self.tx.try_send(Op::Put(key, entry)).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Appends a question this node indexed to the shared stream (not waited for).
    pub fn index(&self, q: Indexed) {
        if self.tx.try_send(Op::Index(q)).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Removes what `what` names from Redis and announces it to every node (this one too).
    /// Returns how many entries Redis removed.
    pub async fn purge(&self, what: Purge) -> Result<u64, String> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Op::Purge(what, tx))
            .await
            .map_err(|_| "the cache's Redis thread is gone".to_string())?;
        match tokio::time::timeout(self.timeout * 10, rx).await {
            Ok(Ok(r)) => r,
            _ => Err("Redis did not answer the purge in time".into()),
        }
    }
}

struct Link {
    client: redis::Client,
    prefix: String,
    timeout: Duration,
    conn: Option<redis::aio::MultiplexedConnection>,
    stats: Arc<Stats>,
    /// This node's id in the semantic stream (it skips its own questions there).
    node: String,
    /// The semantic stream's length bound (0: no semantic index).
    stream_cap: usize,
}

/// Stores an entry and indexes it, trimming the indexes of expired members.
const PUT_LUA: &str = r"
local now = tonumber(ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[i], now + tonumber(ARGV[2]), ARGV[4])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  redis.call('PEXPIRE', KEYS[i], 86400000 * 30)
end
return 1
";

/// Removes every entry an index names, and the index.
const PURGE_LUA: &str = r"
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
local n = 0
for _, m in ipairs(members) do
  n = n + redis.call('DEL', ARGV[1] .. m)
end
redis.call('DEL', KEYS[1])
return n
";

impl Link {
    fn entry_key(&self, key: &Key) -> String {
        format!("{}:cache:e:{}", self.prefix, key.hex())
    }

    fn channel(&self) -> String {
        format!("{}:cache:purge", self.prefix)
    }

    fn stream(&self) -> String {
        format!("{}:cache:sem", self.prefix)
    }

    async fn connection(&mut self) -> Option<redis::aio::MultiplexedConnection> {
        if self.conn.is_none() {
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(self.timeout))
                .set_response_timeout(Some(self.timeout));
            match self.client.get_multiplexed_async_connection_with_config(&config).await {
                Ok(c) => {
                    tracing::info!("cache: connected to Redis");
                    self.conn = Some(c);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cache: Redis unavailable");
                    return None;
                }
            }
        }
        self.conn.clone()
    }

    fn failed(&mut self, e: &redis::RedisError) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
            if self.conn.take().is_some() {
                tracing::warn!(error = %e, "cache: lost Redis; serving from this node's store until it is back");
            }
        } else {
            tracing::warn!(error = %e, "cache: Redis refused a command");
        }
    }

    async fn serve(mut self, mut rx: mpsc::Receiver<Op>) {
        let mut next_try = tokio::time::Instant::now();
        while let Some(op) = rx.recv().await {
            // While Redis is down, try again at most every RECONNECT; meanwhile every operation
            // fails at once.
            let conn = if self.conn.is_some() || tokio::time::Instant::now() >= next_try {
                let c = self.connection().await;
                if c.is_none() {
                    next_try = tokio::time::Instant::now() + RECONNECT;
                }
                c
            } else {
                None
            };
            match op {
                Op::Get(key, reply) => {
                    let Some(mut c) = conn else {
                        let _ = reply.send(None);
                        continue;
                    };
                    let got: Result<Option<Vec<u8>>, _> =
                        redis::cmd("GET").arg(self.entry_key(&key)).query_async(&mut c).await;
                    match got {
                        Ok(v) => {
                            let _ = reply.send(v.and_then(|raw| Stored::decode(&raw)));
                        }
                        Err(e) => {
                            self.failed(&e);
                            let _ = reply.send(None);
                        }
                    }
                }
                Op::Put(key, entry) => {
                    let Some(mut c) = conn else {
                        self.stats.errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let now = crate::time::unix_ms();
                    let ttl = entry.keep_until_ms.saturating_sub(now);
                    if ttl == 0 {
                        continue;
                    }
                    let p = &self.prefix;
                    let r: Result<i64, _> = redis::Script::new(PUT_LUA)
                        .key(self.entry_key(&key))
                        .key(format!("{p}:cache:t:{}", entry.tenant))
                        .key(format!("{p}:cache:m:{}", entry.model))
                        .key(format!("{p}:cache:all"))
                        .arg(entry.encode())
                        .arg(ttl)
                        .arg(now)
                        .arg(key.hex())
                        .invoke_async(&mut c)
                        .await;
                    if let Err(e) = r {
                        self.failed(&e);
                    }
                }
                Op::Index(q) => {
                    let Some(mut c) = conn else {
                        self.stats.errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let vector: Vec<u8> = q.vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                    let r: Result<redis::Value, _> = redis::cmd("XADD")
                        .arg(self.stream())
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(self.stream_cap.max(1))
                        .arg("*")
                        .arg("n")
                        .arg(&self.node)
                        .arg("c")
                        .arg(q.context.hex())
                        .arg("k")
                        .arg(q.exact.hex())
                        .arg("t")
                        .arg(&q.text)
                        .arg("v")
                        .arg(vector)
                        .query_async(&mut c)
                        .await;
                    if let Err(e) = r {
                        self.failed(&e);
                    }
                }
                Op::Purge(what, reply) => {
                    let Some(mut c) = conn else {
                        let _ = reply.send(Err("Redis is unavailable".into()));
                        continue;
                    };
                    let r = self.purge(&mut c, &what).await;
                    if let Err(e) = &r {
                        self.failed(e);
                    }
                    let _ = reply.send(r.map_err(|e| e.to_string()));
                }
            }
        }
    }

    async fn purge(&self, c: &mut redis::aio::MultiplexedConnection, what: &Purge) -> redis::RedisResult<u64> {
        let p = &self.prefix;
        let removed: u64 = match what {
            Purge::Key(k) => redis::cmd("DEL").arg(self.entry_key(k)).query_async(c).await?,
            Purge::Tenant(t) => self.purge_index(c, format!("{p}:cache:t:{t}")).await?,
            Purge::Model(m) => self.purge_index(c, format!("{p}:cache:m:{m}")).await?,
            Purge::All => self.purge_index(c, format!("{p}:cache:all")).await?,
        };
        let announce = serde_json::to_string(&what.to_json()).unwrap_or_default();
        let _: i64 = redis::cmd("PUBLISH")
            .arg(self.channel())
            .arg(announce)
            .query_async(c)
            .await?;
        Ok(removed)
    }

    async fn purge_index(&self, c: &mut redis::aio::MultiplexedConnection, index: String) -> redis::RedisResult<u64> {
        redis::Script::new(PURGE_LUA)
            .key(index)
            .arg(format!("{}:cache:e:", self.prefix))
            .invoke_async(c)
            .await
    }
}

/// Reads the semantic stream from its start, then follows it, handing every other node's
/// question to `on_indexed`; reconnects (and goes on from where it was) while Redis is down.
async fn follow(client: redis::Client, stream: String, node: String, on_indexed: OnIndexed) {
    let mut last = "0".to_string();
    loop {
        // A connection of its own: a blocking read would hold up the lookups' connection.
        let conn = client.get_multiplexed_async_connection().await;
        let Ok(mut c) = conn else {
            tokio::time::sleep(RECONNECT).await;
            continue;
        };
        loop {
            let read: redis::RedisResult<redis::Value> = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(512)
                .arg("BLOCK")
                .arg(1000)
                .arg("STREAMS")
                .arg(&stream)
                .arg(&last)
                .query_async(&mut c)
                .await;
            let Ok(reply) = read else { break };
            // (Nil when the block timed out.) [[stream, [[id, [field, value, …]], …]]]
            for (id, fields) in entries(&reply) {
                last = id;
                if let Some(q) = indexed(&fields, &node) {
                    on_indexed(q);
                }
            }
        }
        tokio::time::sleep(RECONNECT).await;
    }
}

/// A stream entry's fields, as (name, value) byte strings.
type Fields<'a> = Vec<(&'a [u8], &'a [u8])>;

/// The entries of an XREAD reply on one stream: their ids and fields.
fn entries(reply: &redis::Value) -> Vec<(String, Fields<'_>)> {
    use redis::Value as V;
    let text = |v: &V| match v {
        V::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        V::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let mut out = Vec::new();
    let V::Array(streams) = reply else { return out };
    for s in streams {
        let V::Array(pair) = s else { continue };
        let Some(V::Array(items)) = pair.get(1) else { continue };
        for item in items {
            let V::Array(entry) = item else { continue };
            let (Some(id), Some(V::Array(kv))) = (entry.first().and_then(text), entry.get(1)) else {
                continue;
            };
            let fields = kv
                .chunks_exact(2)
                .filter_map(|p| match (&p[0], &p[1]) {
                    (V::BulkString(k), V::BulkString(v)) => Some((k.as_slice(), v.as_slice())),
                    _ => None,
                })
                .collect();
            out.push((id, fields));
        }
    }
    out
}

/// A stream entry's question, unless this node wrote it or it is unreadable.
fn indexed(fields: &[(&[u8], &[u8])], node: &str) -> Option<Indexed> {
    let bytes = |k: &str| fields.iter().find(|(f, _)| *f == k.as_bytes()).map(|(_, v)| *v);
    if bytes("n")? == node.as_bytes() {
        return None;
    }
    let key = |k: &str| -> Option<Key> {
        let raw = hex::decode(bytes(k)?).ok()?;
        Some(Key(<[u8; 32]>::try_from(raw).ok()?))
    };
    let v = bytes("v")?;
    if v.len() % 4 != 0 {
        return None;
    }
    Some(Indexed {
        context: key("c")?,
        exact: key("k")?,
        text: String::from_utf8(bytes("t")?.to_vec()).ok()?,
        vector: v
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    })
}

/// Listens for purges announced by any node and applies them to this node's store; reconnects
/// while Redis is down.
async fn subscribe(client: redis::Client, channel: String, on_purge: OnPurge) {
    loop {
        match client.get_async_pubsub().await {
            Ok(mut ps) => {
                if ps.subscribe(&channel).await.is_ok() {
                    let mut messages = ps.on_message();
                    while let Some(msg) = messages.next().await {
                        let payload: Vec<u8> = msg.get_payload().unwrap_or_default();
                        match Purge::from_json(&payload) {
                            Ok(what) => on_purge(&what),
                            Err(e) => tracing::warn!("cache: unreadable purge announcement: {e}"),
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cache: purge channel unavailable"),
        }
        tokio::time::sleep(RECONNECT).await;
    }
}
