//! The server's background services: the shutdown coordinator, the readiness notice to
//! systemd, the budget gauge, the limiter's pruner, the credentials refresher, the DNS refresher
//! and the config watcher (file changes and signals to reloads). `server::run` builds and adds
//! them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::config::reload::{ReloadError, ReloadTrigger};
use crate::config::store::ReloadOutcome;
use crate::config::{ConfigErrors, ConfigStore};
use crate::proxy::drain::Drain;
use crate::telemetry::sinks::Sinks;
use crate::telemetry::Metrics;

/// Reopens the access log on SIGHUP; then the shutdown, once Pingora stopped accepting (SIGTERM,
/// SIGINT, or SIGQUIT after the sockets went to the new instance): in-flight requests get `server.shutdown_grace` (none on
/// SIGINT; a second signal cuts it short); those still running then are ended explicitly
/// (`Drain::stop_all`: a 503 or a stream's error event, and their usage records); the sinks
/// write out what they hold; the process exits. With nothing in flight it exits at once.
pub(super) struct ShutdownCoordinator {
    pub(super) drain: Arc<Drain>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) sinks: Sinks,
    pub(super) grace: Duration,
    pub(super) fast: Arc<std::sync::atomic::AtomicBool>,
}

/// How long requests told to stop get to write their answer and record.
const STOP_WAIT: Duration = Duration::from_secs(5);

impl ShutdownCoordinator {
    /// Waits until no request is in flight or `within` passed (or `cut` fired); true if idle.
    async fn idle_within(&self, within: Duration, cut: impl std::future::Future<Output = ()>) -> bool {
        let until = tokio::time::Instant::now() + within;
        let idle = async {
            while self.metrics.inflight.get() > 0 && tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::select! {
            _ = idle => {}
            _ = cut => {}
        }
        self.metrics.inflight.get() <= 0
    }
}

#[async_trait]
impl BackgroundService for ShutdownCoordinator {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        // Until the shutdown, SIGHUP also reopens the access log (rotation by rename).
        self.sinks.reopen_on_hangup(shutdown.changed()).await;
        let fast = self.fast.load(std::sync::atomic::Ordering::Relaxed);
        let grace = if fast { Duration::ZERO } else { self.grace };
        let in_flight = self.metrics.inflight.get();
        tracing::info!(in_flight, grace = %humantime::format_duration(grace), "shutting down");
        // Another SIGTERM or SIGINT during the grace: stop waiting.
        let again = async {
            match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
                (Ok(mut t), Ok(mut i)) => tokio::select! { _ = t.recv() => {}, _ = i.recv() => {} },
                _ => std::future::pending().await,
            }
        };
        if !self.idle_within(grace, again).await {
            tracing::warn!(
                in_flight = self.metrics.inflight.get(),
                "shutdown grace is over: ending the requests still in flight"
            );
            self.drain.stop_all();
            if !self.idle_within(STOP_WAIT, std::future::pending()).await {
                tracing::error!(
                    in_flight = self.metrics.inflight.get(),
                    "requests did not end in time; their usage records are lost"
                );
            }
        }
        let sinks = self.sinks.clone();
        let _ = tokio::task::spawn_blocking(move || sinks.flush(Duration::from_secs(4))).await;
        tracing::info!("shutdown complete");
        std::process::exit(0);
    }
}

/// Tells systemd the gateway serves (`crate::systemd`), once the admin listener, started after
/// the data plane's, accepts a connection. Runs only under systemd (`$NOTIFY_SOCKET`).
pub(super) struct ReadyNotifier {
    pub(super) admin: std::net::SocketAddr,
}

#[async_trait]
impl BackgroundService for ReadyNotifier {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut addr = self.admin;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                up = tokio::net::TcpStream::connect(addr) => {
                    if up.is_ok() {
                        crate::systemd::notify_ready();
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

/// Keeps `tollgate_budget_used_ratio` current from the spend ledger (`telemetry::budgets`).
pub(super) struct BudgetGauge {
    pub(super) keys: Arc<crate::limits::keys::KeyStore>,
    pub(super) store: Arc<ConfigStore>,
    pub(super) reader: Arc<crate::usage::ledger::SpendReader>,
    pub(super) gauge: prometheus::GaugeVec,
}

impl BudgetGauge {
    /// One pass (blocking: it reads the ledger).
    fn update(&self) {
        let keys: Vec<(String, Arc<crate::limits::limiter::Limits>)> = match self.keys.list() {
            Ok(list) => list
                .into_iter()
                .filter(|k| !k.revoked)
                .filter_map(|k| Some((k.id, k.parsed_limits?)))
                .collect(),
            Err(_) => return,
        };
        let teams = self.store.current().limits.teams.clone();
        let now = crate::time::unix_ms();
        let mut failed = false;
        let samples = crate::telemetry::budgets::shares(&keys, &teams, |group, period| {
            let q = crate::telemetry::budgets::query(group, period, now);
            self.reader.spend(&q).map_err(|_| failed = true).ok()
        });
        if failed {
            // Keep the last figures rather than report budgets as unspent.
            return;
        }
        self.gauge.reset();
        for (scope, id, period, share) in samples {
            self.gauge.with_label_values(&[scope, &id, period.as_str()]).set(share);
        }
    }
}

/// The gauge's loop: a pass every `budgets::EVERY`, each on a blocking thread.
pub(super) struct BudgetGaugeLoop(pub(super) Arc<BudgetGauge>);

#[async_trait]
impl BackgroundService for BudgetGaugeLoop {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(crate::telemetry::budgets::EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {
                    let gauge = Arc::clone(&self.0);
                    let _ = tokio::task::spawn_blocking(move || gauge.update()).await;
                }
            }
        }
    }
}

/// Forgets limiter scopes that hold nothing (users seen once, keys gone quiet) every few
/// minutes, so the scope maps do not grow for the life of the process.
pub(super) struct LimiterPruner {
    pub(super) limiter: Arc<crate::limits::gate::Gate>,
}

const PRUNE_EVERY: Duration = Duration::from_secs(300);

#[async_trait]
impl BackgroundService for LimiterPruner {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(PRUNE_EVERY);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {
                    let removed = self.limiter.prune_idle(crate::time::unix_ms());
                    if removed > 0 {
                        tracing::debug!(removed, "limiter: idle scopes forgotten");
                    }
                }
            }
        }
    }
}

/// Keeps the providers' role credentials fresh (`crate::credentials`): a pass every second, which
/// fetches only what is missing or near its expiry, each fetch bounded.
pub(super) struct CredentialRefresher(pub(super) crate::credentials::Refresher);

const CREDENTIALS_TICK: Duration = Duration::from_secs(1);
const CREDENTIALS_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

#[async_trait]
impl BackgroundService for CredentialRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(CREDENTIALS_TICK);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => self.0.pass(CREDENTIALS_FETCH_TIMEOUT).await,
            }
        }
    }
}

/// Reloads the config when the file's content changes and settles, on SIGHUP (both refuse
/// weakening changes: SIGHUP is also logrotate's signal) and on SIGUSR2 (which applies them).
pub(super) struct ConfigWatcher {
    pub(super) store: Arc<ConfigStore>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) poll: Duration,
    pub(super) keys: Arc<crate::limits::keys::KeyStore>,
    /// Told by `DnsRefresher` that a provider's name resolves differently.
    pub(super) dns_changed: Arc<tokio::sync::Notify>,
}

/// Resolves the providers' host names again every `server.dns_refresh` (`config::dns`) and asks
/// the watcher to rebuild the snapshot when an answer changed. A name that fails is logged once
/// (and counted) until it resolves again; its provider keeps its address.
pub(super) struct DnsRefresher {
    pub(super) store: Arc<ConfigStore>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) changed: Arc<tokio::sync::Notify>,
}

#[async_trait]
impl BackgroundService for DnsRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut failing = std::collections::BTreeSet::new();
        loop {
            let every = self.store.current().server.dns_refresh;
            // Off (0s): look again later, in case a reload turns it on.
            let wait = if every.is_zero() {
                Duration::from_secs(60)
            } else {
                every
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            let snap = self.store.current();
            if snap.server.dns_refresh.is_zero() || snap.names.is_empty() {
                continue;
            }
            let names = snap.names.clone();
            let Ok(pass) = tokio::task::spawn_blocking(move || {
                crate::config::dns::check(&names, crate::config::dns::system_lookup)
            })
            .await
            else {
                continue;
            };
            for p in pass.failed.difference(&failing) {
                tracing::warn!(provider = %p, "cannot resolve the provider's host name; keeping its last address");
            }
            for p in &pass.failed {
                self.metrics.dns_failures.with_label_values(&[p]).inc();
            }
            failing = pass.failed;
            if !pass.changed.is_empty() {
                for c in &pass.changed {
                    tracing::info!("{c}; rebuilding the config");
                }
                self.changed.notify_one();
            }
        }
    }
}

/// The config's keys with their secrets, as the key store takes them.
pub(super) fn config_keys(snap: &crate::config::Snapshot) -> Vec<(crate::limits::keys::KeySpec, String)> {
    snap.auth
        .keys
        .iter()
        .map(|(spec, secret)| (spec.clone(), secret.expose().to_string()))
        .collect()
}

impl ConfigWatcher {
    /// Reloads from `content`, the file as read once by the caller (`Err`: it could not be read).
    async fn reload(&self, trigger: ReloadTrigger, content: Result<Vec<u8>, ConfigErrors>) {
        let why = trigger.as_str();
        let store = Arc::clone(&self.store);
        let result = tokio::task::spawn_blocking(move || {
            let content = content.map_err(ReloadError::Invalid)?;
            store.reload_from(trigger, &content)
        })
        .await;
        match result {
            Ok(Ok(outcome)) => {
                if let Err(e) = self.keys.set_config_keys(config_keys(&self.store.current())) {
                    tracing::error!(trigger = why, "the reloaded config's keys were not applied: {e}");
                }
                self.metrics.config_reloads.inc();
                match outcome {
                    ReloadOutcome::Swapped => tracing::info!(trigger = why, "config reloaded"),
                    ReloadOutcome::SwappedNeedsRestart(fields) => tracing::warn!(
                        trigger = why,
                        "config reloaded; changes to {} take effect only after a restart",
                        fields.join(", ")
                    ),
                }
            }
            // Log first, count second: whoever sees the counter move can read the reason.
            Ok(Err(ReloadError::Invalid(errors))) => {
                for e in &errors.errors {
                    tracing::error!(trigger = why, "config reload rejected, keeping the running config: {e}");
                }
                self.metrics.config_reload_errors.inc();
            }
            Ok(Err(ReloadError::Refused(changes))) => {
                for c in &changes {
                    tracing::error!(
                        trigger = why,
                        reason = c.reason(),
                        "config reload refused, keeping the running config: {c}; if that is intended, send SIGUSR2 (`systemctl kill -s USR2 tollgate`) to apply it"
                    );
                    self.metrics
                        .config_reload_refused
                        .with_label_values(&[c.reason()])
                        .inc();
                }
                self.metrics.config_reload_errors.inc();
            }
            Err(e) => {
                tracing::error!(trigger = why, "config reload failed: {e}");
                self.metrics.config_reload_errors.inc();
            }
        }
    }
}

/// The config file's bytes, read once; what a reload loads.
fn read_config(path: &Path) -> Result<Vec<u8>, ConfigErrors> {
    std::fs::read(path).map_err(|e| crate::config::unreadable(path, &e))
}

/// A stream of `kind` signals, or `None` (logged: `what` is then off) when it cannot be had.
fn listen(kind: tokio::signal::unix::SignalKind, name: &str, what: &str) -> Option<tokio::signal::unix::Signal> {
    match tokio::signal::unix::signal(kind) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!("cannot listen for {name}, {what} is off: {e}");
            None
        }
    }
}

/// The next signal of `s`; never, when there is no stream (or it ended).
async fn next_signal(s: &mut Option<tokio::signal::unix::Signal>) {
    if let Some(s) = s.as_mut() {
        if s.recv().await.is_some() {
            return;
        }
    }
    std::future::pending().await
}

#[async_trait]
impl BackgroundService for ConfigWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::SignalKind;
        let mut hup = listen(SignalKind::hangup(), "SIGHUP", "reload on SIGHUP");
        let mut usr2 = listen(
            SignalKind::user_defined2(),
            "SIGUSR2",
            "a confirmed reload (applying weakening changes)",
        );
        let poll = if self.poll.is_zero() {
            Duration::from_secs(3600 * 24 * 365)
        } else {
            self.poll
        };
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Load the tokenizer now rather than on the first request that needs it (not awaited:
        // the watcher must not miss a change made meanwhile).
        drop(tokio::task::spawn_blocking(crate::limits::tokens::warm_up));
        let path = self.store.path().to_path_buf();
        // The baseline is what the running snapshot was built from, so a change made between the
        // first load and this point is still seen.
        let mut settle = crate::config::watch::Settle::new(self.store.current().source_hash);
        // The secret files the config references are watched the same way: a change that has
        // settled reloads the config file as it is (a rotated provider key, without a restart).
        let secrets_key = |h: u64| h.to_le_bytes().to_vec();
        let mut secrets = crate::config::watch::Settle::new(crate::config::content_hash(&secrets_key(
            self.store.current().secrets_hash,
        )));
        loop {
            let trigger = tokio::select! {
                _ = shutdown.changed() => return,
                _ = next_signal(&mut hup) => ReloadTrigger::Signal,
                _ = next_signal(&mut usr2) => ReloadTrigger::Confirmed,
                _ = self.dns_changed.notified() => {
                    // The running config's own text: only the addresses change.
                    let content = self.store.current().source.as_bytes().to_vec();
                    self.reload(ReloadTrigger::Resolve, Ok(content)).await;
                    continue;
                }
                _ = tick.tick(), if !self.poll.is_zero() => {
                    // Only a change that has settled: a file still being written is never
                    // loaded. What settled is what is loaded.
                    let now = read_config(&path).ok();
                    let settle_for = self.store.current().server.reload_settle;
                    if let Some(content) = settle.observe(now, std::time::Instant::now(), settle_for) {
                        self.reload(ReloadTrigger::FileChange, Ok(content)).await;
                        secrets.handled(Some(&secrets_key(self.store.current().secrets_hash)));
                        continue;
                    }
                    let refs = self.store.current().secret_refs.clone();
                    if !refs.is_empty() {
                        let held = tokio::task::spawn_blocking(move || crate::config::current_secrets_hash(&refs))
                            .await
                            .ok();
                        if secrets
                            .observe(held.map(secrets_key), std::time::Instant::now(), settle_for)
                            .is_some()
                        {
                            tracing::info!("a secret file the config references changed; reloading");
                            let content = read_config(&path);
                            settle.handled(content.as_deref().ok());
                            self.reload(ReloadTrigger::FileChange, content).await;
                        }
                    }
                    continue;
                }
            };
            // A signal: the file as it is now, read once; that content counts as handled, so the
            // watcher does not load (or refuse) it again.
            let content = read_config(&path);
            settle.handled(content.as_deref().ok());
            self.reload(trigger, content).await;
            secrets.handled(Some(&secrets_key(self.store.current().secrets_hash)));
        }
    }
}
