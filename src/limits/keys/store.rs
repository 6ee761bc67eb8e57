//! `KeyStore`: config keys plus stored keys, the admin operations, and the thread that owns the
//! database connection. That thread serves admin writes (applying each to the ring before it
//! answers) and polls for rows other nodes changed: incrementally by `updated_ms` (re-reading an
//! overlap window, so a transaction that committed late is not missed), and in full every minute
//! (which also drops rows deleted by hand). The state behind the ring is only touched off the
//! request path; the request path reads the ring.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::db::{Db, DbError, Edit, KeyRow};
use super::ring::{Entry, KeyHash, KeyRing, RingMap};
use super::{check_spec, new_id, new_secret, AdminError, KeyError, KeyPatch, KeySource, KeySpec, VirtualKey};
use crate::time::{parse_time, unix_ms_i64};
use crate::usage::ledger::shared::{StoreUrl, PG_CONNECT_TIMEOUT, PG_STATEMENT_TIMEOUT};

/// How often each node polls the store for changes (revocations reach every node within this).
pub const DEFAULT_POLL: Duration = Duration::from_millis(500);
/// Each incremental poll re-reads rows this much older than the newest it has seen.
const OVERLAP_MS: i64 = 10_000;
const FULL_SYNC_EVERY: Duration = Duration::from_secs(60);
/// The longest a caller waits for the store thread: a connect, one statement, slack.
const REPLY_WAIT: Duration = Duration::from_secs(PG_CONNECT_TIMEOUT.as_secs() + PG_STATEMENT_TIMEOUT.as_secs() + 5);

/// A key from the store, compiled (or why it could not be: a row edited by hand).
struct Stored {
    row: KeyRow,
    compiled: Result<Compiled, String>,
}

struct Compiled {
    key: Arc<VirtualKey>,
    hash: KeyHash,
    prev: Option<(KeyHash, i64)>,
}

struct ConfigKey {
    key: Arc<VirtualKey>,
    hash: KeyHash,
}

#[derive(Default)]
struct State {
    config: Vec<ConfigKey>,
    stored: HashMap<String, Stored>,
    /// The newest `updated_ms` seen.
    cursor: Option<i64>,
}

impl State {
    fn is_config(&self, id: &str) -> bool {
        self.config.iter().any(|c| c.key.id == id)
    }

    /// A new ring from the config keys and the stored keys (a config key wins an id).
    fn ring(&self) -> RingMap {
        let mut map = RingMap::default();
        for c in &self.config {
            map.by_hash.insert(
                c.hash,
                Entry {
                    key: c.key.clone(),
                    valid_until_ms: None,
                },
            );
            map.keys += 1;
        }
        for (id, s) in &self.stored {
            let Ok(c) = &s.compiled else { continue };
            if self.is_config(id) {
                tracing::warn!(key_id = %id, "virtual keys: a config key has the id of a stored key; the stored key is ignored");
                continue;
            }
            map.by_hash.insert(
                c.hash,
                Entry {
                    key: c.key.clone(),
                    valid_until_ms: None,
                },
            );
            if let Some((prev, until)) = c.prev {
                map.by_hash.insert(
                    prev,
                    Entry {
                        key: c.key.clone(),
                        valid_until_ms: Some(until),
                    },
                );
            }
            map.keys += 1;
        }
        map
    }

    /// Takes rows read from the store; with `full`, rows not among them are dropped. True when
    /// anything changed.
    fn apply(&mut self, rows: Vec<KeyRow>, full: bool) -> bool {
        let mut changed = false;
        if full {
            let seen: HashSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
            let before = self.stored.len();
            self.stored.retain(|id, _| seen.contains(id.as_str()));
            changed |= self.stored.len() != before;
        }
        for row in rows {
            self.cursor = Some(self.cursor.map_or(row.updated_ms, |c| c.max(row.updated_ms)));
            if self.stored.get(&row.id).is_some_and(|s| s.row == row) {
                continue;
            }
            let compiled = compile(&row);
            if let Err(e) = &compiled {
                tracing::warn!(key_id = %row.id, "virtual keys: a stored key is unreadable and ignored: {e}");
            }
            self.stored.insert(row.id.clone(), Stored { row, compiled });
            changed = true;
        }
        changed
    }
}

fn compile(row: &KeyRow) -> Result<Compiled, String> {
    let models: Vec<String> = serde_json::from_str(&row.models).map_err(|e| format!("models: {e}"))?;
    let metadata = serde_json::from_str(&row.metadata).map_err(|e| format!("metadata: {e}"))?;
    let limits = serde_json::from_str(&row.limits).map_err(|e| format!("limits: {e}"))?;
    let parsed_limits = VirtualKey::parse_limits(&limits)?;
    let hash = KeyHash::from_hex(&row.hash).ok_or("hash is not SHA-256 hex")?;
    let prev = match (&row.prev_hash, row.prev_valid_until_ms) {
        (Some(h), Some(until)) => Some((KeyHash::from_hex(h).ok_or("prev_hash is not SHA-256 hex")?, until)),
        (Some(_), None) | (None, Some(_)) | (None, None) => None,
    };
    let key = VirtualKey {
        id: row.id.clone(),
        name: row.name.clone(),
        team: row.team.clone(),
        user: row.user.clone(),
        tier: row.tier.clone(),
        globs: models.iter().map(|m| crate::routing::routes::Glob::new(m)).collect(),
        models,
        metadata,
        expires_ms: row.expires_ms,
        limits,
        parsed_limits,
        created_ms: row.created_ms,
        updated_ms: row.updated_ms,
        revoked: row.revoked_ms.is_some(),
        revoked_ms: row.revoked_ms,
        prev_valid_until_ms: prev.map(|(_, until)| until),
        source: KeySource::Api,
    };
    Ok(Compiled {
        key: Arc::new(key),
        hash,
        prev,
    })
}

/// Checks config keys (every problem at once) and compiles them.
fn compile_config(keys: Vec<(KeySpec, String)>) -> Result<Vec<ConfigKey>, String> {
    let now = unix_ms_i64();
    let mut problems = Vec::new();
    let mut ids = HashSet::new();
    let mut hashes = HashSet::new();
    let mut out = Vec::new();
    for (i, (spec, secret)) in keys.into_iter().enumerate() {
        let at = match &spec.id {
            Some(id) => format!("keys[{i}] ({id})"),
            None => format!("keys[{i}]"),
        };
        let checked = match check_spec(&spec) {
            Ok(c) => c,
            Err(e) => {
                problems.push(format!("{at}: {e}"));
                continue;
            }
        };
        let Some(id) = spec.id.clone() else {
            problems.push(format!("{at}: id is required for a config key"));
            continue;
        };
        if !ids.insert(id.clone()) {
            problems.push(format!("{at}: duplicate id"));
            continue;
        }
        if secret.trim().is_empty() {
            problems.push(format!("{at}: the key is empty (is its environment variable set?)"));
            continue;
        }
        let hash = KeyHash::of(&secret);
        if !hashes.insert(hash.0) {
            problems.push(format!("{at}: the same key as another config key"));
            continue;
        }
        let parsed_limits = match VirtualKey::parse_limits(&spec.limits) {
            Ok(l) => l,
            Err(e) => {
                problems.push(format!("{at}: {e}"));
                continue;
            }
        };
        if secret.len() < 16 {
            tracing::warn!(key_id = %id, "virtual keys: a config key is shorter than 16 characters");
        }
        let key = VirtualKey {
            id,
            name: spec.name,
            team: spec.team,
            user: spec.user,
            tier: spec.tier,
            models: spec.models,
            globs: checked.globs,
            metadata: spec.metadata,
            expires_ms: checked.expires_ms,
            parsed_limits,
            limits: spec.limits,
            created_ms: now,
            updated_ms: now,
            revoked: false,
            revoked_ms: None,
            prev_valid_until_ms: None,
            source: KeySource::Config,
        };
        out.push(ConfigKey {
            key: Arc::new(key),
            hash,
        });
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(format!("invalid keys: {}", problems.join("; ")))
    }
}

struct Shared {
    ring: Arc<KeyRing>,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

enum Op {
    Sync(SyncSender<Result<(), DbError>>),
    Insert(Box<KeyRow>, SyncSender<Result<KeyRow, DbError>>),
    Modify(String, Edit, SyncSender<Result<KeyRow, DbError>>),
}

/// Virtual keys: the ring the request path reads, the admin operations, and the sync thread.
pub struct KeyStore {
    shared: Arc<Shared>,
    /// The store thread's queue; `None` without a store (config keys only).
    ops: Option<Sender<Op>>,
    store: Option<String>,
    limits_check: Option<LimitsCheck>,
}

/// Validates a key's `limits` JSON for the admin API (the limiter's parser).
pub type LimitsCheck = Box<dyn Fn(&serde_json::Value) -> Result<(), String> + Send + Sync>;

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field("store", &self.store)
            .field("keys", &self.shared.ring.len())
            .finish()
    }
}

impl KeyStore {
    /// `url`: the ledger's URL (`sqlite:…`, `postgres://…`), or `None` for config keys only.
    /// `config_keys`: (spec, secret) pairs from the config file; never written to the store.
    /// An SQLite file that cannot be opened, or a PostgreSQL server that refuses us, is an
    /// error; a PostgreSQL server that is down is not (the thread keeps trying every `poll`).
    pub fn open(url: Option<&str>, config_keys: Vec<(KeySpec, String)>, poll: Duration) -> Result<KeyStore, String> {
        let state = State {
            config: compile_config(config_keys)?,
            ..State::default()
        };
        let ring = Arc::new(KeyRing::new());
        ring.swap(state.ring());
        let Some(url) = url else {
            return Ok(KeyStore {
                shared: Arc::new(Shared {
                    ring,
                    state: Mutex::new(state),
                }),
                ops: None,
                store: None,
                limits_check: None,
            });
        };
        let db = match StoreUrl::parse(url).map_err(|e| format!("virtual keys: {e}"))? {
            StoreUrl::Sqlite { path, display } => {
                Db::sqlite(&path, &display).map_err(|e| format!("virtual keys: {e}"))?
            }
            StoreUrl::Postgres { config, display } => Db::postgres(*config, &display),
        };
        let display = db.display().to_string();
        let shared = Arc::new(Shared {
            ring,
            state: Mutex::new(state),
        });
        let (tx, rx) = mpsc::channel();
        let poll = poll.max(Duration::from_millis(10));
        {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("tollgate-keys".into())
                .spawn(move || run(shared, db, rx, poll))
                .map_err(|e| format!("virtual keys: cannot start the store thread: {e}"))?;
        }
        let store = KeyStore {
            shared,
            ops: Some(tx),
            store: Some(display),
            limits_check: None,
        };
        match store.call(Op::Sync) {
            Ok(()) => {}
            Err(DbError::Fatal(e)) => return Err(format!("virtual keys: {e}")),
            // Logged by the thread; the ring has the config keys until the store answers.
            Err(DbError::Down(_) | DbError::Admin(_)) => {}
        }
        Ok(store)
    }

    /// Admin writes (`create`, `update`) also run `check` on a non-null `limits`; its error
    /// becomes a 400 naming `limits`. Config keys are checked by the config loader instead.
    pub fn with_limits_check(mut self, check: LimitsCheck) -> KeyStore {
        self.limits_check = Some(check);
        self
    }

    fn check_limits(&self, limits: &serde_json::Value) -> Result<(), AdminError> {
        match &self.limits_check {
            Some(check) if !limits.is_null() => check(limits).map_err(|e| AdminError::invalid("limits", e)),
            Some(_) | None => Ok(()),
        }
    }

    /// The ring the request path reads. The same `Arc` for the store's whole life.
    pub fn ring(&self) -> Arc<KeyRing> {
        self.shared.ring.clone()
    }

    /// `ring().lookup(..)` without the `Arc` clone.
    pub fn lookup(&self, presented: &str, now_ms: i64) -> Result<Arc<VirtualKey>, KeyError> {
        self.shared.ring.lookup(presented, now_ms)
    }

    /// The store's password-free name, if there is one.
    pub fn store_name(&self) -> Option<&str> {
        self.store.as_deref()
    }

    /// Replaces the config keys (config reload). On error nothing changes.
    pub fn set_config_keys(&self, keys: Vec<(KeySpec, String)>) -> Result<(), String> {
        let config = compile_config(keys)?;
        let mut state = self.shared.state();
        state.config = config;
        self.shared.ring.swap(state.ring());
        Ok(())
    }

    /// Reloads changed rows from the store (the poll thread does this every `poll`).
    pub fn sync_now(&self) -> Result<(), String> {
        if self.ops.is_none() {
            return Ok(());
        }
        self.call(Op::Sync).map_err(|e| e.message())
    }

    /// Creates a key; returns it and its secret (shown once: only its hash is stored).
    pub fn create(&self, spec: KeySpec) -> Result<(VirtualKey, String), AdminError> {
        let checked = check_spec(&spec)?;
        self.check_limits(&spec.limits)?;
        let now = unix_ms_i64();
        if checked.expires_ms.is_some_and(|e| e <= now) {
            return Err(AdminError::invalid("expires_at", "expires_at is in the past"));
        }
        if self.ops.is_none() {
            return Err(AdminError::NoStore);
        }
        let id = spec.id.clone().unwrap_or_else(new_id);
        if self.shared.state().is_config(&id) {
            return Err(AdminError::Duplicate(id));
        }
        let secret = new_secret();
        let row = KeyRow {
            id,
            hash: KeyHash::of(&secret).to_hex(),
            prev_hash: None,
            prev_valid_until_ms: None,
            name: spec.name,
            team: spec.team,
            user: spec.user,
            tier: spec.tier,
            models: to_json(&spec.models)?,
            metadata: to_json(&spec.metadata)?,
            expires_ms: checked.expires_ms,
            limits: to_json(&spec.limits)?,
            created_ms: now,
            updated_ms: now,
            revoked_ms: None,
        };
        let row = self
            .call(|r| Op::Insert(Box::new(row), r))
            .map_err(DbError::into_admin)?;
        Ok((to_key(&row)?, secret))
    }

    /// Every key (config and store), oldest first. No secrets, no hashes.
    pub fn list(&self) -> Result<Vec<VirtualKey>, AdminError> {
        self.refresh()?;
        let state = self.shared.state();
        let mut keys: Vec<VirtualKey> = state.config.iter().map(|c| (*c.key).clone()).collect();
        keys.extend(
            state
                .stored
                .iter()
                .filter(|(id, _)| !state.is_config(id))
                .filter_map(|(_, s)| s.compiled.as_ref().ok())
                .map(|c| (*c.key).clone()),
        );
        keys.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(keys)
    }

    pub fn get(&self, id: &str) -> Result<VirtualKey, AdminError> {
        if let Some(c) = self.shared.state().config.iter().find(|c| c.key.id == id) {
            return Ok((*c.key).clone());
        }
        self.refresh()?;
        let state = self.shared.state();
        match state.stored.get(id).map(|s| &s.compiled) {
            Some(Ok(c)) => Ok((*c.key).clone()),
            Some(Err(e)) => Err(AdminError::Internal(format!("key {id:?} is unreadable: {e}"))),
            None => Err(AdminError::NotFound(id.to_string())),
        }
    }

    /// Changes a key's name, tier, models, metadata, expiry or limits.
    pub fn update(&self, id: &str, patch: KeyPatch) -> Result<VirtualKey, AdminError> {
        patch.check()?;
        if let Some(l) = &patch.limits {
            self.check_limits(l)?;
        }
        if let Some(Some(e)) = &patch.expires_at {
            if parse_time(e).is_ok_and(|ms| ms <= unix_ms_i64()) {
                return Err(AdminError::invalid("expires_at", "expires_at is in the past"));
            }
        }
        let id_owned = id.to_string();
        self.modify(
            id,
            Box::new(move |row: &mut KeyRow| {
                if row.revoked_ms.is_some() {
                    return Err(AdminError::Revoked(id_owned));
                }
                let KeyPatch {
                    name,
                    tier,
                    models,
                    metadata,
                    expires_at,
                    limits,
                } = patch;
                if let Some(n) = name {
                    row.name = n;
                }
                if let Some(t) = tier {
                    row.tier = t;
                }
                if let Some(m) = models {
                    row.models = to_json(&m)?;
                }
                if let Some(m) = metadata {
                    row.metadata = to_json(&m)?;
                }
                if let Some(e) = expires_at {
                    row.expires_ms = e
                        .as_deref()
                        .map(parse_time)
                        .transpose()
                        .map_err(|e| AdminError::invalid("expires_at", e))?;
                }
                if let Some(l) = limits {
                    row.limits = to_json(&l)?;
                }
                Ok(())
            }),
        )
    }

    /// Revokes a key (idempotent). Every node refuses it within one poll.
    pub fn revoke(&self, id: &str) -> Result<VirtualKey, AdminError> {
        self.modify(
            id,
            Box::new(|row: &mut KeyRow| {
                row.revoked_ms.get_or_insert_with(unix_ms_i64);
                Ok(())
            }),
        )
    }

    /// Gives a key a new secret; the old one keeps working until now + `grace`, then stops (a
    /// second rotation ends the first one's grace at once).
    pub fn rotate(&self, id: &str, grace: Duration) -> Result<(VirtualKey, String), AdminError> {
        let secret = new_secret();
        let hash = KeyHash::of(&secret).to_hex();
        let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        let id_owned = id.to_string();
        let key = self.modify(
            id,
            Box::new(move |row: &mut KeyRow| {
                if row.revoked_ms.is_some() {
                    return Err(AdminError::Revoked(id_owned));
                }
                let old = std::mem::replace(&mut row.hash, hash);
                if grace_ms > 0 {
                    row.prev_hash = Some(old);
                    row.prev_valid_until_ms = Some(unix_ms_i64().saturating_add(grace_ms));
                } else {
                    row.prev_hash = None;
                    row.prev_valid_until_ms = None;
                }
                Ok(())
            }),
        )?;
        Ok((key, secret))
    }

    fn modify(&self, id: &str, edit: Edit) -> Result<VirtualKey, AdminError> {
        if self.shared.state().is_config(id) {
            return Err(AdminError::ReadOnly(id.to_string()));
        }
        if self.ops.is_none() {
            return Err(AdminError::NotFound(id.to_string()));
        }
        let row = self
            .call(|r| Op::Modify(id.to_string(), edit, r))
            .map_err(DbError::into_admin)?;
        to_key(&row)
    }

    /// Before an admin read: pick up other nodes' writes (no store: nothing to do).
    fn refresh(&self) -> Result<(), AdminError> {
        if self.ops.is_none() {
            return Ok(());
        }
        self.call(Op::Sync).map_err(DbError::into_admin)
    }

    fn call<T>(&self, make: impl FnOnce(SyncSender<Result<T, DbError>>) -> Op) -> Result<T, DbError> {
        let Some(ops) = &self.ops else {
            return Err(DbError::Admin(AdminError::NoStore));
        };
        let gone = || DbError::Down("the key store thread stopped".into());
        let (reply, answer) = mpsc::sync_channel(1);
        ops.send(make(reply)).map_err(|_| gone())?;
        match answer.recv_timeout(REPLY_WAIT) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => Err(DbError::Down(format!("no answer within {}s", REPLY_WAIT.as_secs()))),
            Err(RecvTimeoutError::Disconnected) => Err(gone()),
        }
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, AdminError> {
    serde_json::to_string(v).map_err(|e| AdminError::Internal(e.to_string()))
}

fn to_key(row: &KeyRow) -> Result<VirtualKey, AdminError> {
    compile(row).map(|c| (*c.key).clone()).map_err(AdminError::Internal)
}

/// The store thread: admin writes as they come, a poll every `poll`. Ends when the `KeyStore`
/// is dropped.
fn run(shared: Arc<Shared>, mut db: Db, rx: Receiver<Op>, poll: Duration) {
    let mut health = Health::default();
    let mut last_full: Option<Instant> = None;
    let mut next_poll = Instant::now() + poll;
    loop {
        let wait = next_poll.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(Op::Sync(reply)) => {
                let r = sync(&shared, &mut db, &mut last_full);
                health.note(&r, db.display());
                next_poll = Instant::now() + poll;
                drop(reply.send(r));
            }
            Ok(Op::Insert(row, reply)) => {
                let r = db.insert(*row);
                health.note(&r, db.display());
                drop(reply.send(applied(&shared, r)));
            }
            Ok(Op::Modify(id, edit, reply)) => {
                let r = db.modify(&id, edit);
                health.note(&r, db.display());
                drop(reply.send(applied(&shared, r)));
            }
            Err(RecvTimeoutError::Timeout) => {
                let r = sync(&shared, &mut db, &mut last_full);
                health.note(&r, db.display());
                next_poll = Instant::now() + poll;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// A written row goes into this node's ring before the caller hears back.
fn applied(shared: &Shared, r: Result<KeyRow, DbError>) -> Result<KeyRow, DbError> {
    if let Ok(row) = &r {
        let mut state = shared.state();
        if state.apply(vec![row.clone()], false) {
            shared.ring.swap(state.ring());
        }
    }
    r
}

fn sync(shared: &Shared, db: &mut Db, last_full: &mut Option<Instant>) -> Result<(), DbError> {
    let full = last_full.is_none_or(|t| t.elapsed() >= FULL_SYNC_EVERY);
    let since = if full {
        None
    } else {
        shared.state().cursor.map(|c| c.saturating_sub(OVERLAP_MS))
    };
    let rows = db.rows(since)?;
    let mut state = shared.state();
    if state.apply(rows, full) {
        shared.ring.swap(state.ring());
    }
    if full {
        *last_full = Some(Instant::now());
    }
    Ok(())
}

/// Logs the store going down and coming back, once each.
#[derive(Default)]
struct Health {
    down: bool,
}

impl Health {
    fn note<T>(&mut self, r: &Result<T, DbError>, store: &str) {
        match r {
            Err(e @ (DbError::Down(_) | DbError::Fatal(_))) => {
                if !self.down {
                    tracing::warn!(store = %store, "virtual keys: the store is unavailable; serving the last keys loaded: {}", e.message());
                    self.down = true;
                }
            }
            Ok(_) | Err(DbError::Admin(_)) => {
                if self.down {
                    tracing::info!(store = %store, "virtual keys: the store is available again");
                    self.down = false;
                }
            }
        }
    }
}
