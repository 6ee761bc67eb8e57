//! The exact cache's in-process store: answers by key, bounded by bytes.
//!
//! `moka` keeps the entries: its admission policy (TinyLFU) keeps a burst of one-off answers
//! from pushing out the ones asked again, its weigher bounds the store by bytes, and each entry
//! leaves when its stale window ends. Reads are lock-free; writes are buffered, never waited on
//! by readers.
//!
//! Freshness is decided here, against the caller's clock, not by moka: an entry is fresh until
//! its TTL, then stale (servable while a refresh runs) until its stale window ends, then gone.
//! The caller passes `now`, so the request path reads the clock once and the tests need no sleep.
//!
//! Invariants: an entry heavier than the whole store is not kept (moka refuses it); a purge by
//! tenant or model removes every entry it names, whatever their keys; `Debug` never prints a
//! body.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::key::Key;

/// One stored answer.
pub struct Entry {
    /// The partition it was stored under (`key::tenant`).
    pub tenant: Box<str>,
    /// The model alias it answers for.
    pub model: Box<str>,
    pub stored_at: Instant,
    /// Served as a hit until then, as stale (with a refresh) after.
    pub fresh_until: Instant,
    /// Kept until then.
    pub keep_until: Instant,
    /// The answer.
    pub body: Bytes,
    /// What the call that made it cost (nano-USD): what each hit saves.
    pub cost_nanousd: u64,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("tenant", &self.tenant)
            .field("model", &self.model)
            .field("bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl Entry {
    /// What the store counts against its bound: the body and the labels.
    fn weight(&self) -> u32 {
        let n = self.body.len() + self.tenant.len() + self.model.len() + std::mem::size_of::<Entry>();
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    Fresh(Arc<Entry>),
    /// Past its TTL, within its stale window: servable while the answer is refreshed.
    Stale(Arc<Entry>),
    Miss,
}

/// Which entries a purge removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purge {
    Key(Key),
    Tenant(String),
    Model(String),
    All,
}

impl Purge {
    /// From an admin request's body: exactly one of `{"key": HEX}`, `{"tenant": "team:a"}`,
    /// `{"model": ALIAS}`, `{"all": true}`.
    pub fn from_json(body: &[u8]) -> Result<Purge, String> {
        const USAGE: &str = "send exactly one of {\"key\": HEX}, {\"tenant\": \"team:NAME\" | \"key:ID\" | \"global\" | \"public\"}, {\"model\": ALIAS}, {\"all\": true}";
        let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("not JSON ({e}); {USAGE}"))?;
        let Some(obj) = v.as_object().filter(|o| o.len() == 1) else {
            return Err(USAGE.into());
        };
        let text = |v: &serde_json::Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
        match obj.iter().next() {
            Some((k, v)) if k == "all" && v == &serde_json::Value::Bool(true) => Ok(Purge::All),
            Some((k, v)) if k == "tenant" => text(v).map(Purge::Tenant).ok_or_else(|| USAGE.into()),
            Some((k, v)) if k == "model" => text(v).map(Purge::Model).ok_or_else(|| USAGE.into()),
            Some((k, v)) if k == "key" => {
                let bytes = text(v).and_then(|h| hex::decode(h).ok());
                match bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()) {
                    Some(k) => Ok(Purge::Key(Key(k))),
                    None => Err("key: 64 hex digits (the x-tollgate-cache-key response header)".into()),
                }
            }
            _ => Err(USAGE.into()),
        }
    }
}

impl Purge {
    /// The body `from_json` reads.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Purge::Key(k) => serde_json::json!({"key": k.hex()}),
            Purge::Tenant(t) => serde_json::json!({"tenant": t}),
            Purge::Model(m) => serde_json::json!({"model": m}),
            Purge::All => serde_json::json!({"all": true}),
        }
    }
}

impl std::fmt::Display for Purge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Purge::Key(k) => write!(f, "key {}", k.hex()),
            Purge::Tenant(t) => write!(f, "tenant {t}"),
            Purge::Model(m) => write!(f, "model {m}"),
            Purge::All => f.write_str("all"),
        }
    }
}

/// Entries and bytes held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub entries: u64,
    pub bytes: u64,
}

/// Each entry leaves moka when its stale window ends.
struct KeepUntil;

impl moka::Expiry<Key, Arc<Entry>> for KeepUntil {
    fn expire_after_create(&self, _: &Key, e: &Arc<Entry>, created_at: Instant) -> Option<Duration> {
        Some(e.keep_until.saturating_duration_since(created_at))
    }

    // A replaced entry's deadline is the new entry's, not the old one's (moka's default keeps
    // the old deadline).
    fn expire_after_update(&self, _: &Key, e: &Arc<Entry>, at: Instant, _: Option<Duration>) -> Option<Duration> {
        Some(e.keep_until.saturating_duration_since(at))
    }
}

/// The in-process store (a clone shares it).
#[derive(Clone)]
pub struct Local {
    cache: moka::sync::Cache<Key, Arc<Entry>>,
}

impl Local {
    /// A store holding at most `max_bytes` (bodies and labels).
    pub fn new(max_bytes: u64) -> Local {
        let cache = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_: &Key, e: &Arc<Entry>| e.weight())
            .expire_after(KeepUntil)
            .support_invalidation_closures()
            .build();
        Local { cache }
    }

    pub fn get(&self, key: &Key, now: Instant) -> Lookup {
        match self.cache.get(key) {
            Some(e) if now < e.fresh_until => Lookup::Fresh(e),
            Some(e) if now < e.keep_until => Lookup::Stale(e),
            _ => Lookup::Miss,
        }
    }

    pub fn put(&self, key: Key, entry: Arc<Entry>) {
        self.cache.insert(key, entry);
    }

    /// Removes what `what` names.
    pub fn purge(&self, what: &Purge) {
        match what {
            Purge::Key(k) => self.cache.invalidate(k),
            Purge::All => self.cache.invalidate_all(),
            Purge::Tenant(t) => {
                let t: Box<str> = t.as_str().into();
                // Registered only with `support_invalidation_closures`, set in `new`.
                let _ = self.cache.invalidate_entries_if(move |_, e| e.tenant == t);
            }
            Purge::Model(m) => {
                let m: Box<str> = m.as_str().into();
                let _ = self.cache.invalidate_entries_if(move |_, e| e.model == m);
            }
        }
    }

    /// Entries and bytes, after the store's pending evictions ran.
    pub fn stats(&self) -> Stats {
        self.cache.run_pending_tasks();
        Stats {
            entries: self.cache.entry_count(),
            bytes: self.cache.weighted_size(),
        }
    }
}

#[cfg(test)]
mod tests;
