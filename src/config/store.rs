//! `ConfigStore`: the live snapshot behind `ArcSwap`, and reload.
//!
//! Readers call `current()` (one atomic load and refcount bump, no lock). `reload_from()` builds a
//! new snapshot off the request path from the file's content as the caller read it (once: the
//! watcher loads the very bytes that settled) and swaps it in only if it is valid and the reload
//! policy (`reload`) lets its trigger make the change; the old one stays otherwise.
//!
//! A snapshot is pure configuration. State kept beside it (routing's live target state:
//! breakers, key cooldowns, latency stats) follows it through `Install` hooks, told of each
//! snapshot just before it becomes current.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwap;

use super::reload::{guarded_changes, ReloadError, ReloadTrigger};
use super::{load_bytes, Env, Snapshot};

pub struct ConfigStore {
    path: PathBuf,
    current: ArcSwap<Snapshot>,
    /// Told of every snapshot before it becomes current. Taken for reading by a reload and for
    /// writing by `on_install`, so a hook added while a reload runs misses no snapshot. Never
    /// taken on the request path.
    hooks: RwLock<Vec<Arc<dyn Install>>>,
}

/// Keeps state beside the config (routing's live target state) in step with it: `install` runs
/// for each snapshot just before it becomes current, off the request path.
pub trait Install: Send + Sync {
    fn install(&self, snapshot: &Arc<Snapshot>);
}

/// What a reload did.
#[derive(Debug)]
pub enum ReloadOutcome {
    Swapped,
    /// The new snapshot differs in listener settings, which only take effect on restart.
    SwappedNeedsRestart(Vec<&'static str>),
}

impl ConfigStore {
    pub fn new(path: &Path, initial: Snapshot) -> Self {
        log_warnings(&initial.warnings, &BTreeSet::new());
        ConfigStore {
            path: path.to_path_buf(),
            current: ArcSwap::from_pointee(initial),
            hooks: RwLock::new(Vec::new()),
        }
    }

    /// Adds a hook: it installs the current snapshot now and every later one.
    pub fn on_install(&self, hook: Arc<dyn Install>) {
        let mut hooks = self.hooks.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        hook.install(&self.current.load_full());
        hooks.push(hook);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The snapshot a new request should use.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Builds a snapshot from `content`, the config file's bytes as the caller read them
    /// (blocking: DNS; call it off the request path), and swaps it in if it is valid and
    /// `trigger` may make its changes (see `reload`). Guarded changes a trigger may make are
    /// applied with a warning naming each.
    pub fn reload_from(&self, trigger: ReloadTrigger, content: &[u8]) -> Result<ReloadOutcome, ReloadError> {
        let next = load_bytes(&self.path, content, &Env::system())?;
        let prev = self.current.load();
        let guarded = guarded_changes(&prev, &next);
        if !guarded.is_empty() {
            if !trigger.applies_guarded() {
                return Err(ReloadError::Refused(guarded));
            }
            for g in &guarded {
                tracing::warn!(trigger = trigger.as_str(), "config reloaded although {g}");
            }
        }
        let old: BTreeSet<String> = prev.warnings.iter().cloned().collect();
        log_warnings(&next.warnings, &old);
        let (a, b) = (&prev.server, &next.server);
        let mut restart = Vec::new();
        if a.listen != b.listen {
            restart.push("server.listen");
        }
        if a.admin_listen != b.admin_listen {
            restart.push("server.admin_listen");
        }
        if a.mock_listen != b.mock_listen {
            restart.push("server.mock_listen");
        }
        // A listener is made with TLS or without; a new certificate for one that has TLS is
        // served from the next handshake on (see `server::tls_hooks`).
        if a.tls.is_some() != b.tls.is_some() {
            restart.push("server.tls");
        }
        if a.admin_tls.is_some() != b.admin_tls.is_some() {
            restart.push("server.admin_tls");
        }
        if a.threads != b.threads {
            restart.push("server.threads");
        }
        // Read once when the listeners and the shutdown coordinator start.
        if a.max_connections != b.max_connections {
            restart.push("server.max_connections");
        }
        if a.header_timeout != b.header_timeout {
            restart.push("server.header_timeout");
        }
        if a.max_header_bytes != b.max_header_bytes {
            restart.push("server.max_header_bytes");
        }
        if a.keepalive_timeout != b.keepalive_timeout {
            restart.push("server.keepalive_timeout");
        }
        if a.shutdown_grace != b.shutdown_grace {
            restart.push("server.shutdown_grace");
        }
        if a.reload_poll != b.reload_poll {
            restart.push("server.reload_poll");
        }
        if prev.usage != next.usage {
            restart.push("usage");
        }
        if prev.tracing != next.tracing {
            restart.push("tracing");
        }
        if prev.limits.redis != next.limits.redis {
            restart.push("limits.backend/limits.redis");
        }
        // The store is made once, at start (its entries outlive reloads).
        if prev.cache.max_bytes != next.cache.max_bytes {
            restart.push("cache.max_bytes");
        }
        if prev.cache.redis != next.cache.redis {
            restart.push("cache.redis");
        }
        if prev.cache.semantic != next.cache.semantic {
            restart.push("cache.semantic");
        }
        let next = Arc::new(next);
        let hooks = self.hooks.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        for hook in hooks.iter() {
            hook.install(&next);
        }
        self.current.store(next);
        drop(hooks);
        Ok(if restart.is_empty() {
            ReloadOutcome::Swapped
        } else {
            ReloadOutcome::SwappedNeedsRestart(restart)
        })
    }
}

/// Logs each warning once: on reload only the ones that are new.
fn log_warnings(warnings: &[String], already: &BTreeSet<String>) {
    for w in warnings.iter().filter(|w| !already.contains(*w)) {
        tracing::warn!("{w}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{content_hash, load_file};

    fn doc(alias: &str, required: bool) -> String {
        format!(
            "providers:\n  p: {{ kind: openai, base_url: \"http://127.0.0.1:1\", api_keys: [k] }}\nmodels:\n  {alias}: {{ targets: [ {{ provider: p, model: x }} ] }}\nauth: {{ required: {required} }}\n"
        )
    }

    fn store_of(dir: &tempfile::TempDir, text: &str) -> ConfigStore {
        let path = dir.path().join("t.yaml");
        std::fs::write(&path, text).unwrap();
        ConfigStore::new(&path, load_file(&path).unwrap())
    }

    #[test]
    fn a_reload_loads_the_content_it_is_given_not_what_the_file_holds_by_then() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_of(&dir, &doc("one", true));
        // The watcher read (and hashed) `two`; a writer has since cut the file short.
        let settled = doc("two", true);
        std::fs::write(store.path(), &settled[..20]).unwrap();
        store
            .reload_from(ReloadTrigger::FileChange, settled.as_bytes())
            .unwrap();
        let snap = store.current();
        assert!(snap.model("two").is_some() && snap.model("one").is_none());
        assert_eq!(snap.source_hash, content_hash(settled.as_bytes()));
    }

    #[test]
    fn a_dns_rebuild_reloads_the_running_text_and_keeps_host_names_only() {
        let dir = tempfile::tempdir().unwrap();
        let text = "providers:\n  named: { kind: openai_compatible, base_url: \"http://localhost:1/v1\", api_keys: [k] }\n  literal: { kind: openai_compatible, base_url: \"http://127.0.0.1:2/v1\", api_keys: [k] }\nmodels:\n  m: { targets: [ { provider: named, model: x } ] }\n";
        let store = store_of(&dir, text);
        let before = store.current();
        let names: Vec<(&str, &str, u16)> = before
            .names
            .iter()
            .map(|n| (n.provider.as_str(), n.host.as_str(), n.port))
            .collect();
        assert_eq!(names, vec![("named", "localhost", 1)]);
        assert!(before.names[0].addr.is_some_and(|a| a.ip().is_loopback()));
        // The file has moved on meanwhile (not settled): the rebuild uses the running text.
        std::fs::write(store.path(), "providers: {}\n").unwrap();
        let r = store.reload_from(ReloadTrigger::Resolve, before.source.as_bytes());
        assert!(matches!(r, Ok(ReloadOutcome::Swapped)), "{r:?}");
        let after = store.current();
        assert!(!Arc::ptr_eq(&before, &after));
        assert_eq!(after.source, before.source);
        assert!(after.model("m").is_some());
    }

    #[test]
    fn a_weakening_change_is_refused_on_a_file_change_and_sighup_and_applied_on_sigusr2() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_of(&dir, &doc("one", true));
        let open = doc("one", false);
        for trigger in [ReloadTrigger::FileChange, ReloadTrigger::Signal] {
            let r = store.reload_from(trigger, open.as_bytes());
            assert!(matches!(r, Err(ReloadError::Refused(_))), "{trigger:?}: {r:?}");
            assert!(store.current().auth.required, "{trigger:?}");
        }
        store.reload_from(ReloadTrigger::Confirmed, open.as_bytes()).unwrap();
        assert!(!store.current().auth.required);
    }

    #[test]
    fn a_hook_installs_the_current_snapshot_and_each_swapped_one_before_it_is_current() {
        struct Seen(std::sync::Mutex<Vec<bool>>, std::sync::Weak<ConfigStore>);
        impl Install for Seen {
            fn install(&self, snapshot: &Arc<Snapshot>) {
                // Before the swap: the store still serves the previous snapshot (but the first).
                let store = self.1.upgrade().unwrap();
                let seen = &mut self.0.lock().unwrap();
                assert_eq!(Arc::ptr_eq(&store.current(), snapshot), seen.is_empty());
                seen.push(snapshot.model("two").is_some());
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(store_of(&dir, &doc("one", true)));
        let hook = Arc::new(Seen(Default::default(), Arc::downgrade(&store)));
        store.on_install(Arc::clone(&hook) as Arc<dyn Install>);
        store
            .reload_from(ReloadTrigger::FileChange, doc("two", true).as_bytes())
            .unwrap();
        // A refused reload installs nothing.
        let r = store.reload_from(ReloadTrigger::FileChange, doc("two", false).as_bytes());
        assert!(r.is_err());
        assert_eq!(*hook.0.lock().unwrap(), [false, true]);
    }

    #[test]
    fn a_file_that_is_not_text_is_invalid_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_of(&dir, &doc("one", true));
        let r = store.reload_from(ReloadTrigger::Signal, b"auth: \xff\xfe");
        assert!(matches!(r, Err(ReloadError::Invalid(_))), "{r:?}");
        assert!(store.current().model("one").is_some());
    }
}
