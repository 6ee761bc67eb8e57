//! The response cache, Pingora-free like every deciding layer (README "Response cache").
//!
//! - `assemble`: a streamed answer's chunks put back together (what a streamed miss stores).
//! - `capture`: the write observer: a copy of the client's answer read back into the canonical
//!   answer after a clean end (before the restoration of redacted values).
//! - `flight`: coalescing of identical misses (one call, the others wait a bounded time) and
//!   the one-refresh-per-key rule of stale-while-revalidate.
//! - `key`: the exact cache's key: the canonical request hashed with its tenant, so that no
//!   answer is served across tenants or across any parameter that changes it.
//! - `replay`: a stored (canonical) answer written in the client's format, whole or as a
//!   stream, by the encoders live answers use.
//! - `store`: the in-process store (bounded by bytes, fresh / stale / gone per entry, purges by
//!   key, tenant, model or all).
//! - `policy`: the `cache:` section and the routes' policies, raw and compiled.
//! - `shared`: the Redis tier behind the store (entries, purges, the semantic index's stream).
//! - `semantic`: the semantic mode (embeddings, the look-alike guard, the index).
//!
//! `Cache` is the process's cache: the store, the flights, the Redis tier and the semantic
//! index, shared by every request and kept across reloads. The Pingora side (the lookup stage,
//! the hit's replay, a stale answer's refresh) is `proxy::cache`; the write observer is built
//! into the relay's chain by `proxy::chain`.

pub mod assemble;
pub mod capture;
pub mod flight;
pub mod key;
pub mod policy;
pub mod replay;
#[cfg(test)]
mod sample;
pub mod semantic;
pub mod shared;
pub mod store;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api::chat::ChatResponse;
use crate::api::Wire;
use crate::usage::pricing::Price;

/// The process's cache.
pub struct Cache {
    pub store: store::Local,
    /// Identical misses in progress (coalescing).
    pub flights: flight::Flights<store::Entry>,
    /// The Redis tier behind the store, when `cache.redis` is set.
    pub shared: Option<shared::Shared>,
    /// The semantic mode's model and index, when `cache.semantic` is set.
    pub semantic: Option<Arc<semantic::Semantic>>,
}

impl Cache {
    /// Stores an answer (the canonical answer as JSON, with what the call cost at `price`), in
    /// the Redis tier too; indexes its question for the semantic mode; hands it to the flight's
    /// followers.
    pub fn store_answer(&self, pending: Pending, resp: &ChatResponse, price: Option<Price>) {
        let Pending {
            key,
            tenant,
            model,
            ttl,
            stale,
            max_bytes: _,
            leader,
            semantic,
        } = pending;
        let Ok(body) = serde_json::to_vec(resp) else { return };
        let cost = match (price, &resp.usage) {
            (Some(p), Some(u)) => u64::try_from(p.cost_nanos(u)).unwrap_or(0),
            _ => 0,
        };
        let now = Instant::now();
        let entry = Arc::new(store::Entry {
            tenant,
            model,
            stored_at: now,
            fresh_until: now + ttl,
            keep_until: now + ttl + stale,
            body: body.into(),
            cost_nanousd: cost,
        });
        if let Some(shared) = &self.shared {
            let wall = crate::time::unix_ms();
            let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            shared.put(
                key,
                shared::Stored {
                    tenant: entry.tenant.clone(),
                    model: entry.model.clone(),
                    fresh_until_ms: wall.saturating_add(ms(ttl)),
                    keep_until_ms: wall.saturating_add(ms(ttl + stale)),
                    cost_nanousd: cost,
                    body: entry.body.clone(),
                },
            );
        }
        self.store.put(key, Arc::clone(&entry));
        if let (Some(sem), Some((context, text, vector))) = (&self.semantic, semantic) {
            sem.index.insert(context, key, &text, &vector);
            if let Some(shared) = &self.shared {
                shared.index(shared::Indexed {
                    context,
                    exact: key,
                    text,
                    vector,
                });
            }
        }
        if let Some(l) = leader {
            l.publish(entry);
        }
    }

    /// A cache whose store holds at most `max_bytes`, on its own.
    pub fn new(max_bytes: u64) -> Cache {
        Cache {
            store: store::Local::new(max_bytes),
            flights: flight::Flights::default(),
            shared: None,
            semantic: None,
        }
    }

    /// The cache `settings` describe: with the Redis tier when they name one (purges announced
    /// by any node then reach this node's store).
    pub fn start(settings: &policy::Settings, listen: std::net::SocketAddr) -> Result<Cache, String> {
        let mut cache = Cache::new(settings.max_bytes);
        if let Some(s) = &settings.semantic {
            cache.semantic = Some(Arc::new(semantic::Semantic::load(s, listen)?));
        }
        if let Some(r) = &settings.redis {
            let local = cache.store.clone();
            // Questions other nodes index come into this node's index.
            let follow = cache.semantic.as_ref().map(|sem| {
                let sem = Arc::clone(sem);
                let on: shared::OnIndexed = Box::new(move |q: shared::Indexed| {
                    sem.index.insert(q.context, q.exact, &q.text, &q.vector);
                });
                (settings.semantic.as_ref().map_or(0, |s| s.max_entries), on)
            });
            cache.shared = Some(shared::Shared::start(
                r.clone(),
                Box::new(move |p| local.purge(p)),
                follow,
            )?);
        }
        Ok(cache)
    }

    /// The entry under `key`: this node's, else (and then kept here too) the Redis tier's.
    pub async fn get(&self, key: &key::Key, now: Instant) -> store::Lookup {
        let found = self.store.get(key, now);
        let (store::Lookup::Miss, Some(shared)) = (&found, &self.shared) else {
            return found;
        };
        let Some(s) = shared.get(*key).await else {
            return store::Lookup::Miss;
        };
        let wall = crate::time::unix_ms();
        // (An entry another build wrote in a form this one cannot read is a miss.)
        if s.keep_until_ms <= wall || serde_json::from_slice::<ChatResponse>(&s.body).is_err() {
            return store::Lookup::Miss;
        }
        let at = |ms: u64| now + Duration::from_millis(ms.saturating_sub(wall));
        let entry = Arc::new(store::Entry {
            tenant: s.tenant,
            model: s.model,
            stored_at: now,
            fresh_until: at(s.fresh_until_ms),
            keep_until: at(s.keep_until_ms),
            body: s.body,
            cost_nanousd: s.cost_nanousd,
        });
        self.store.put(*key, Arc::clone(&entry));
        match s.fresh_until_ms > wall {
            true => store::Lookup::Fresh(entry),
            false => store::Lookup::Stale(entry),
        }
    }

    /// Removes what `what` names: here, and with the Redis tier everywhere (returns how many
    /// entries Redis removed; this node's own count is in `store.stats`).
    pub async fn purge(&self, what: &store::Purge) -> Result<Option<u64>, String> {
        self.store.purge(what);
        match &self.shared {
            Some(s) => s.purge(what.clone()).await.map(Some),
            None => Ok(None),
        }
    }
}

/// A miss whose answer is to be stored: under which key, for whom, for how long; and the flight
/// it leads, if identical requests wait for it.
pub struct Pending {
    pub key: key::Key,
    pub tenant: Box<str>,
    /// The model alias asked for (purges by model name it).
    pub model: Box<str>,
    pub ttl: Duration,
    /// Served past the TTL for this long while refreshed (`Policy::stale`).
    pub stale: Duration,
    /// Answers larger than this (in the client's format) are not stored.
    pub max_bytes: usize,
    pub leader: Option<flight::Leader<store::Entry>>,
    /// `mode: semantic`: the question's context key, its last user turn and that turn's vector,
    /// indexed once the answer is stored.
    pub semantic: Option<(key::Key, String, Vec<f32>)>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("key", &self.key.hex())
            .field("tenant", &self.tenant)
            .field("leads", &self.leader.is_some())
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// The write observer of a pending miss: once the answer ended cleanly, it is stored (see
    /// `store_answer`). An answer that is not stored releases the flight's followers with nothing.
    pub fn capture(
        self: &Arc<Self>,
        pending: Pending,
        client: Wire,
        stream: bool,
        price: Option<Price>,
    ) -> capture::Capture {
        let cache = Arc::clone(self);
        let max_bytes = pending.max_bytes;
        let sink: capture::Sink = Box::new(move |resp: ChatResponse| cache.store_answer(pending, &resp, price));
        capture::Capture::new(client, stream, max_bytes, sink)
    }
}
