//! Live target state: what the gateway learns while it runs (circuit breakers, key cooldowns,
//! time-to-first-byte and in-flight counts), kept in a `Registry` that outlives config snapshots.
//!
//! The config snapshot is pure configuration; this module keeps the state beside it. Every
//! snapshot the `ConfigStore` installs gets a `Live` here: the snapshot itself and, indexed by each
//! target's `slot`, the handles to that target's breaker, statistics and its provider's key pool.
//! A request loads its `Live` once (one atomic load, as it would load the snapshot alone) and
//! reaches a target's state by index: no lock, no hashing, no allocation on the request path.
//!
//! Invariants:
//! - State is kept by (provider name, upstream model) across reloads, except for a provider whose
//!   address (scheme, host, port, base path) changed: what was learned about the old address says
//!   nothing about the new one, so it starts with closed breakers, rested keys and no latency
//!   history. State of providers the new snapshot no longer has is dropped.
//! - A request keeps the `Live` it started with (its snapshot and the state handles of that
//!   snapshot's targets), whatever reloads happen meanwhile.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::balance::{Stats, TargetStats};
use super::breaker::{Breaker, BreakerInfo, Health, KeyPool};
use crate::config::store::Install;
use crate::config::{ConfigStore, Provider, Snapshot, Target};

/// One target's live state.
#[derive(Debug)]
pub struct TargetLive {
    pub stats: Arc<TargetStats>,
    pub breaker: Arc<Breaker>,
    /// The key pool of the target's provider (shared by its targets).
    pub keys: Arc<KeyPool>,
}

/// A snapshot and its targets' live state: what a request runs on.
#[derive(Debug)]
pub struct Live {
    pub snapshot: Arc<Snapshot>,
    /// By `Target::slot`.
    targets: Vec<Option<TargetLive>>,
}

impl Live {
    /// The live state of one of this snapshot's targets.
    pub fn target(&self, t: &Target) -> Option<&TargetLive> {
        self.targets.get(t.slot)?.as_ref()
    }
}

/// The live state of every target, kept across reloads (see the module docs).
#[derive(Debug)]
pub struct Registry {
    stats: Stats,
    health: Health,
    current: ArcSwap<Live>,
}

impl Registry {
    /// A registry for `snapshot` alone (`attach` also follows a store's reloads).
    pub fn new(snapshot: Arc<Snapshot>) -> Registry {
        let (stats, health) = (Stats::new(), Health::new());
        let live = build(snapshot, &stats, &health);
        Registry {
            stats,
            health,
            current: ArcSwap::from_pointee(live),
        }
    }

    /// A registry that follows `store`: its current snapshot and every one a reload installs.
    pub fn attach(store: &ConfigStore) -> Arc<Registry> {
        let registry = Arc::new(Registry::new(store.current()));
        store.on_install(Arc::clone(&registry) as Arc<dyn Install>);
        registry
    }

    /// The snapshot a new request runs on, with its targets' state.
    pub fn current(&self) -> Arc<Live> {
        self.current.load_full()
    }

    /// Every breaker, sorted by provider then model (the admin's `/breakers` and `/metrics`).
    pub fn breakers(&self, now_ms: u64) -> Vec<BreakerInfo> {
        self.health.snapshot(now_ms)
    }

    /// Drops the state of providers that are gone or whose address changed, so the new
    /// snapshot's targets start with closed breakers, rested keys and no latency history.
    /// Requests still running on the old snapshot keep the state they hold.
    fn forget_moved(&self, prev: &Snapshot, next: &Snapshot) {
        for (name, p) in &next.providers {
            if prev.providers.get(name).is_some_and(|old| address(old) != address(p)) {
                tracing::info!(provider = %name, "provider address changed: its breakers, key cooldowns and latency stats start fresh");
                self.health.forget_provider(name);
                self.stats.forget_provider(name);
            }
        }
        self.health.retain_providers(|name| next.providers.contains_key(name));
        self.stats.retain_providers(|name| next.providers.contains_key(name));
    }
}

impl Install for Registry {
    fn install(&self, snapshot: &Arc<Snapshot>) {
        let prev = self.current.load();
        if !Arc::ptr_eq(&prev.snapshot, snapshot) {
            self.forget_moved(&prev.snapshot, snapshot);
        }
        let live = build(Arc::clone(snapshot), &self.stats, &self.health);
        self.current.store(Arc::new(live));
    }
}

/// Where a provider's requests go: whether it is enabled, and its base URL (scheme, host, port,
/// path).
fn address(p: &Provider) -> (bool, &str) {
    (p.is_enabled(), &p.display_url)
}

/// The `Live` of `snapshot`: each target's state, found (or created) by name.
fn build(snapshot: Arc<Snapshot>, stats: &Stats, health: &Health) -> Live {
    let all = || snapshot.models.values().flat_map(|m| m.targets.iter());
    let len = all().map(|t| t.slot + 1).max().unwrap_or(0);
    let mut targets: Vec<Option<TargetLive>> = (0..len).map(|_| None).collect();
    let mut pools: HashMap<&str, Arc<KeyPool>> = HashMap::new();
    for t in all() {
        let p = &t.provider;
        let keys = pools
            .entry(p.name.as_str())
            .or_insert_with(|| health.keys(&p.name, p.auth.len()));
        let state = TargetLive {
            stats: stats.get(&p.name, &t.model),
            breaker: health.breaker(&p.name, &t.model, snapshot.routing.breaker),
            keys: Arc::clone(keys),
        };
        if let Some(slot) = targets.get_mut(t.slot) {
            *slot = Some(state);
        }
    }
    Live { snapshot, targets }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::Env;

    fn snapshot(p_url: &str, with_q: bool) -> Arc<Snapshot> {
        let q = if with_q {
            "  q: { kind: openai, base_url: \"http://127.0.0.1:2\", api_keys: [k] }\n"
        } else {
            ""
        };
        let n = if with_q {
            "  n: { targets: [ { provider: q, model: y } ] }\n"
        } else {
            ""
        };
        let doc = format!(
            "providers:\n  p: {{ kind: openai, base_url: \"{p_url}\", api_keys: [k1, k2] }}\n{q}models:\n  m: {{ targets: [ {{ provider: p, model: x }}, {{ provider: p, model: z }} ] }}\n{n}"
        );
        let env = Env {
            var: &|_| None,
            resolve: &|_, port| Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port))),
        };
        Arc::new(crate::config::load_str(std::path::Path::new("t.yaml"), &doc, &env).unwrap())
    }

    fn state<'l>(live: &'l Live, alias: &str, i: usize) -> &'l TargetLive {
        live.target(&live.snapshot.model(alias).unwrap().targets[i]).unwrap()
    }

    #[test]
    fn every_target_has_its_state_and_a_provider_one_key_pool() {
        let r = Registry::new(snapshot("http://127.0.0.1:1", true));
        let live = r.current();
        let (x, z) = (state(&live, "m", 0), state(&live, "m", 1));
        assert!(!Arc::ptr_eq(&x.breaker, &z.breaker));
        assert!(!Arc::ptr_eq(&x.stats, &z.stats));
        assert!(Arc::ptr_eq(&x.keys, &z.keys));
        assert_eq!(x.keys.len(), 2);
        assert!(!Arc::ptr_eq(&x.keys, &state(&live, "n", 0).keys));
    }

    #[test]
    fn a_reload_keeps_state_forgets_moved_providers_and_drops_removed_ones() {
        let r = Registry::new(snapshot("http://127.0.0.1:1", true));
        let before = r.current();
        for (alias, i) in [("m", 0), ("n", 0)] {
            let s = state(&before, alias, i);
            (0..5).for_each(|_| s.breaker.record(false, 0));
            s.keys.cool_down(0, u64::MAX);
            s.stats.observe_ttfb(std::time::Duration::from_millis(5));
        }
        // Same addresses: the state carries over.
        r.install(&snapshot("http://127.0.0.1:1", true));
        let same = r.current();
        assert!(Arc::ptr_eq(
            &state(&same, "m", 0).breaker,
            &state(&before, "m", 0).breaker
        ));
        assert!(Arc::ptr_eq(&state(&same, "m", 0).keys, &state(&before, "m", 0).keys));
        assert!(Arc::ptr_eq(&state(&same, "n", 0).stats, &state(&before, "n", 0).stats));

        // p moves: fresh breakers, keys and stats; q keeps its own.
        r.install(&snapshot("http://127.0.0.1:9/v2", true));
        let moved = r.current();
        let p = state(&moved, "m", 0);
        assert_eq!(p.breaker.state(0).as_str(), "closed");
        assert_eq!(p.keys.available(0), 2);
        assert_eq!(p.stats.ewma_ttfb(), None);
        assert!(Arc::ptr_eq(
            &state(&moved, "n", 0).breaker,
            &state(&before, "n", 0).breaker
        ));
        // The request that started before the reload still holds the old state.
        assert_eq!(state(&before, "m", 0).breaker.state(0).as_str(), "open");

        // q is removed: its breaker is no longer listed.
        r.install(&snapshot("http://127.0.0.1:9/v2", false));
        let rows = r.breakers(0);
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(rows.iter().all(|b| b.provider == "p"));
    }
}
