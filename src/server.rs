//! Assembles the Pingora server: the data-plane proxy service, the admin listener, the optional
//! in-process mock provider, and the config watcher (SIGHUP and file changes → reload).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;

use crate::admin::AdminApp;
use crate::config::reload::{ReloadError, ReloadTrigger};
use crate::config::store::ReloadOutcome;
use crate::config::ConfigStore;
use crate::mock::{mock_service, MockOptions};
use crate::proxy::Gateway;
use crate::telemetry::sinks::Sinks;
use crate::telemetry::Metrics;

/// Options of `tollgate run` that are not in the config file.
#[derive(Debug, Default, Clone)]
pub struct RunOptions {
    /// Take the listening sockets over from a running instance (zero-downtime upgrade).
    pub upgrade: bool,
    /// Where the upgrade socket and pid file live.
    pub runtime_dir: Option<String>,
}

/// Loads the config and runs the gateway until a shutdown signal. Returns only on a config error.
pub fn run(config_path: &Path, opts: RunOptions) -> Result<(), crate::config::ConfigErrors> {
    let snapshot = crate::config::load_file(config_path)?;
    let settings = snapshot.server.clone();
    let store = Arc::new(ConfigStore::new(config_path, snapshot));
    let metrics = Arc::new(Metrics::new().map_err(|e| crate::config::ConfigErrors {
        errors: vec![crate::config::ConfigError {
            file: config_path.display().to_string(),
            line: None,
            path: String::new(),
            message: format!("metrics: {e}"),
        }],
    })?);

    let threads = if settings.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        settings.threads
    };
    let dir = opts.runtime_dir.unwrap_or_else(|| "/tmp".to_string());
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(settings.shutdown_grace.as_secs()),
        graceful_shutdown_timeout_seconds: Some(5),
        upgrade_sock: format!("{dir}/tollgate-upgrade.sock"),
        pid_file: format!("{dir}/tollgate.pid"),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: opts.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    server.bootstrap();

    // The ledger (its migrations), the access log and the trace exporter: a failure to open one
    // is a startup error naming its setting.
    let sinks = Sinks::start(&store.current()).map_err(|message| crate::config::ConfigErrors {
        errors: vec![crate::config::ConfigError {
            file: config_path.display().to_string(),
            line: None,
            path: String::new(),
            message,
        }],
    })?;
    // Virtual keys: the file's, plus those created through the admin API (kept in the ledger's
    // store and re-read by every node every `auth.key_sync`).
    let keys = {
        let snap = store.current();
        let url = snap.usage.ledger.as_ref().map(|u| u.expose().to_string());
        let config_keys = config_keys(&snap);
        crate::limits::keys::KeyStore::open(url.as_deref(), config_keys, snap.auth.key_sync)
            // Keys written through the admin API get their limits checked like the file's.
            .map(|k| {
                k.with_limits_check(Box::new(|v: &serde_json::Value| {
                    if v.is_null() {
                        return Ok(());
                    }
                    let l: crate::limits::limiter::Limits =
                        serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
                    l.validate()
                }))
            })
            .map(Arc::new)
            .map_err(|message| crate::config::ConfigErrors {
                errors: vec![crate::config::ConfigError {
                    file: config_path.display().to_string(),
                    line: None,
                    path: "keys".into(),
                    message,
                }],
            })?
    };
    // Limits: this node's own counters, or shared by every node through Redis.
    let limiter = {
        let snap = store.current();
        match &snap.limits.redis {
            None => crate::limits::gate::Gate::local(),
            Some(s) => crate::limits::gate::Gate::redis(s.clone()).map_err(|message| crate::config::ConfigErrors {
                errors: vec![crate::config::ConfigError {
                    file: config_path.display().to_string(),
                    line: None,
                    path: "limits.redis".into(),
                    message,
                }],
            })?,
        }
    };
    let limiter = Arc::new(limiter);
    let gateway = Gateway::new(
        Arc::clone(&store),
        Arc::clone(&metrics),
        sinks.clone(),
        Arc::clone(&keys),
        Arc::clone(&limiter),
    );
    seed_budgets(&gateway, &sinks);
    let mut proxy = pingora::proxy::http_proxy_service_with_name(&server.configuration, gateway, "tollgate");
    proxy.add_tcp(&settings.listen.to_string());

    let mut admin = Service::new(
        "tollgate admin".to_string(),
        AdminApp {
            config: Arc::clone(&store),
            metrics: Arc::clone(&metrics),
            sinks: sinks.clone(),
            keys: Arc::clone(&keys),
            limiter: Arc::clone(&limiter),
        },
    );
    admin.add_tcp(&settings.admin_listen.to_string());
    admin.threads = Some(1);

    let watcher = background_service(
        "config watcher",
        ConfigWatcher {
            store: Arc::clone(&store),
            metrics,
            poll: settings.reload_poll,
            keys,
        },
    );

    tracing::info!(listen = %settings.listen, admin = %settings.admin_listen, threads, config = %config_path.display(), "starting tollgate");
    // Start order, by dependency: the built-in mock (if any), then the data plane, then the admin
    // listener, so `/health` answering means the data plane is listening too.
    let proxy = server.add_service(proxy);
    let admin = server.add_service(admin);
    admin.add_dependency(&proxy);
    server.add_service(watcher);
    server.add_service(background_service("limiter pruner", LimiterPruner { limiter }));
    server.add_service(background_service(
        "usage sinks",
        SinkFlusher {
            sinks,
            grace: settings.shutdown_grace,
        },
    ));
    if let Some(mock_addr) = settings.mock_listen {
        let mut mock = mock_service(&mock_addr.to_string(), MockOptions::default());
        mock.threads = Some(1);
        tracing::info!(listen = %mock_addr, "serving the built-in mock provider");
        let mock = server.add_service(mock);
        proxy.add_dependency(&mock);
    }
    server.run_forever()
}

/// Budgets survive a restart: what each key and team already spent in the current window of
/// every budget period is read back from the spend ledger before the first request.
fn seed_budgets(gateway: &Gateway, sinks: &Sinks) {
    use crate::limits::limiter::{Period, ScopeKind};
    use crate::usage::ledger::{GroupBy, SpendQuery};
    let Some(reader) = &sinks.spend else {
        return;
    };
    let now = crate::proxy::tenant::wall_ms();
    let mut seeded = 0usize;
    for period in [Period::Hour, Period::Day, Period::Days30, Period::Month] {
        let (start, _) = period.window(now);
        for (group, kind) in [(GroupBy::Key, ScopeKind::Key), (GroupBy::Team, ScopeKind::Team)] {
            let q = SpendQuery {
                from_ms: start as i64,
                to_ms: now as i64 + 1,
                group_by: vec![group],
            };
            match reader.spend(&q) {
                Ok(report) => {
                    for row in &report.groups {
                        if let Some(Some(id)) = row.group.get(group.as_str()) {
                            gateway.limiter().seed_spent(kind, id, period, row.cost_nanos, now);
                            seeded += 1;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "budgets start from zero: the spend ledger could not be read");
                    return;
                }
            }
        }
    }
    tracing::info!(scopes = seeded, "budgets seeded from the spend ledger");
}

/// On shutdown, once in-flight requests had their grace period, writes out what the sinks hold
/// (the ledger's queue goes to the store, or to its spill file when the store is down).
struct SinkFlusher {
    sinks: Sinks,
    grace: Duration,
}

#[async_trait]
impl BackgroundService for SinkFlusher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let _ = shutdown.changed().await;
        tokio::time::sleep(self.grace).await;
        let sinks = self.sinks.clone();
        let _ = tokio::task::spawn_blocking(move || sinks.flush(Duration::from_secs(4))).await;
    }
}

/// Forgets limiter scopes that hold nothing (users seen once, keys gone quiet) every few
/// minutes, so the scope maps do not grow for the life of the process.
struct LimiterPruner {
    limiter: Arc<crate::limits::gate::Gate>,
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
                    let removed = self.limiter.prune_idle(crate::proxy::tenant::wall_ms());
                    if removed > 0 {
                        tracing::debug!(removed, "limiter: idle scopes forgotten");
                    }
                }
            }
        }
    }
}

/// Reloads the config on SIGHUP and when the file's content changes.
struct ConfigWatcher {
    store: Arc<ConfigStore>,
    metrics: Arc<Metrics>,
    poll: Duration,
    keys: Arc<crate::limits::keys::KeyStore>,
}

/// The config's keys with their secrets, as the key store takes them.
fn config_keys(snap: &crate::config::Snapshot) -> Vec<(crate::limits::keys::KeySpec, String)> {
    snap.auth
        .keys
        .iter()
        .map(|(spec, secret)| (spec.clone(), secret.expose().to_string()))
        .collect()
}

impl ConfigWatcher {
    async fn reload(&self, trigger: ReloadTrigger) {
        let why = trigger.as_str();
        let store = Arc::clone(&self.store);
        let result = tokio::task::spawn_blocking(move || store.reload(trigger)).await;
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
                        "config reload refused, keeping the running config: {c}; if that is intended, send SIGHUP (systemctl reload) to apply it"
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

fn read_config_bytes(path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path).ok()
}

#[async_trait]
impl BackgroundService for ConfigWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!("cannot listen for SIGHUP, reload on signal is off: {e}");
                None
            }
        };
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
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    settle.handled(read_config_bytes(&path).map(|b| crate::config::content_hash(&b)));
                    self.reload(ReloadTrigger::Signal).await;
                }
                _ = tick.tick(), if !self.poll.is_zero() => {
                    let now = read_config_bytes(&path).map(|b| crate::config::content_hash(&b));
                    // Only a change that has settled: a file still being written is never loaded.
                    if settle.observe(now, std::time::Instant::now(), self.store.current().server.reload_settle) {
                        self.reload(ReloadTrigger::FileChange).await;
                    }
                }
            }
        }
    }
}
