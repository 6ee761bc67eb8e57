//! Assembles the Pingora server: the data-plane proxy service and the admin listener (each behind
//! `proxy::conn::Guard`), the optional in-process mock provider, the config watcher (file changes
//! and SIGHUP → a guarded reload, SIGUSR2 → a confirmed one), and the shutdown: signals, the
//! grace period for in-flight requests, the explicit end of those still running, the sinks'
//! flush, exit.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::admin::AdminApp;
use crate::config::{ConfigError, ConfigErrors, ConfigStore, ServerSettings};
use crate::mock::{mock_service, MockOptions};
use crate::proxy::conn::{ConnLimits, Guard};
use crate::proxy::drain::Drain;
use crate::proxy::Gateway;
use crate::telemetry::sinks::Sinks;
use crate::telemetry::Metrics;

mod services;

use services::{
    config_keys, BudgetGauge, BudgetGaugeLoop, ConfigWatcher, CredentialRefresher, DnsRefresher, LimiterPruner,
    ReadyNotifier, ShutdownCoordinator,
};

/// Options of `tollgate run` that are not in the config file.
#[derive(Debug, Default, Clone)]
pub struct RunOptions {
    /// Take the listening sockets over from a running instance (zero-downtime upgrade).
    pub upgrade: bool,
    /// Where the upgrade socket and pid file live.
    pub runtime_dir: Option<String>,
}

/// Loads the config and runs the gateway until a shutdown signal. Returns at once with the
/// problem when the config is invalid or a listener's address cannot be bound.
pub fn run(config_path: &Path, opts: RunOptions) -> Result<(), crate::config::ConfigErrors> {
    ignore_reload_signals_until_watched();
    let snapshot = crate::config::load_file(config_path)?;
    // Before the ledger opens (and would create an empty one where a relative path now points).
    for w in crate::config::moved::check_file(config_path, &snapshot.usage)? {
        tracing::warn!("{w}");
    }
    let settings = snapshot.server.clone();
    // In an upgrade the running instance holds the addresses and hands them over.
    if !opts.upgrade {
        check_listeners(config_path, &settings)?;
    }
    exit_if_a_listener_fails();
    let max_connections = connection_cap(settings.max_connections);
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
        // `ShutdownCoordinator` ends the process once the in-flight requests are done (or ended)
        // and the sinks flushed; Pingora's own grace is only the backstop behind it.
        grace_period_seconds: Some(settings.shutdown_grace.as_secs() + SHUTDOWN_BACKSTOP_SECS),
        graceful_shutdown_timeout_seconds: Some(1),
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
    let drain = Arc::new(Drain::new());
    // The response cache: its size is read at start; entries outlive reloads.
    let cache =
        crate::cache::Cache::start(&store.current().cache, store.current().server.listen).map_err(|message| {
            crate::config::ConfigErrors {
                errors: vec![crate::config::ConfigError {
                    file: config_path.display().to_string(),
                    line: None,
                    path: "cache".into(),
                    message,
                }],
            }
        })?;
    let cache = Arc::new(cache);
    // The Responses API's response store, in the ledger's database (in memory without one).
    let responses = {
        let url = store.current().usage.ledger.as_ref().map(|u| u.expose().to_string());
        crate::usage::responses::ResponseStore::open(url.as_deref()).map_err(|message| crate::config::ConfigErrors {
            errors: vec![crate::config::ConfigError {
                file: config_path.display().to_string(),
                line: None,
                path: "usage.ledger".into(),
                message,
            }],
        })?
    };
    // Breakers, key cooldowns and latency stats, kept beside the config across reloads.
    let routing = crate::routing::live::Registry::attach(&store);
    let gateway = Gateway::new(crate::proxy::AppState {
        config: Arc::clone(&store),
        routing: Arc::clone(&routing),
        metrics: Arc::clone(&metrics),
        connector: pingora::connectors::http::Connector::new(None),
        sinks: sinks.clone(),
        keys: Arc::clone(&keys),
        limiter: Arc::clone(&limiter),
        drain: Arc::clone(&drain),
        cache: Arc::clone(&cache),
        responses,
        buffered: crate::limits::buffered::Buffered::new(metrics.buffered_body_bytes.clone()),
    });
    seed_budgets(&gateway, &sinks);
    let data_limits = ConnLimits {
        max_connections,
        header_timeout: settings.header_timeout,
        max_header_bytes: settings.max_header_bytes,
        keepalive_timeout: settings.keepalive_timeout,
    };
    let mut proxy = Service::new(
        "tollgate".to_string(),
        Guard::new(
            pingora::proxy::http_proxy(&server.configuration, gateway),
            data_limits,
            metrics.connections("data"),
        ),
    );
    add_listener(&mut proxy, settings.listen, |s| s.tls.as_ref(), &store);

    let admin_limits = ConnLimits {
        max_connections: ADMIN_MAX_CONNECTIONS,
        ..data_limits
    };
    let admin_app = AdminApp {
        config: Arc::clone(&store),
        routing,
        metrics: Arc::clone(&metrics),
        sinks: sinks.clone(),
        keys: Arc::clone(&keys),
        limiter: Arc::clone(&limiter),
        cache,
    };
    let mut admin = Service::new(
        "tollgate admin".to_string(),
        Guard::new(admin_app, admin_limits, metrics.connections("admin")),
    );
    add_listener(&mut admin, settings.admin_listen, |s| s.admin_tls.as_ref(), &store);
    admin.threads = Some(1);

    let dns_changed = Arc::new(tokio::sync::Notify::new());
    let watcher = background_service(
        "config watcher",
        ConfigWatcher {
            store: Arc::clone(&store),
            metrics: Arc::clone(&metrics),
            poll: settings.reload_poll,
            keys: Arc::clone(&keys),
            dns_changed: Arc::clone(&dns_changed),
        },
    );
    let dns = background_service(
        "dns refresher",
        DnsRefresher {
            store: Arc::clone(&store),
            metrics: Arc::clone(&metrics),
            changed: dns_changed,
        },
    );
    let fast = Arc::new(std::sync::atomic::AtomicBool::new(false));

    tracing::info!(listen = %settings.listen, admin = %settings.admin_listen, threads, config = %config_path.display(), "starting tollgate");
    // Start order, by dependency: the built-in mock (if any), then the data plane, then the admin
    // listener, so `/health` answering means the data plane is listening too.
    let proxy = server.add_service(proxy);
    let admin = server.add_service(admin);
    admin.add_dependency(&proxy);
    server.add_service(watcher);
    server.add_service(dns);
    server.add_service(background_service("limiter pruner", LimiterPruner { limiter }));
    if let Some(reader) = sinks.spend.clone() {
        server.add_service(background_service(
            "budget gauge",
            BudgetGaugeLoop(Arc::new(BudgetGauge {
                keys,
                store: Arc::clone(&store),
                reader,
                gauge: metrics.budget_used.clone(),
            })),
        ));
    }
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        let notifier = server.add_service(background_service(
            "systemd notifier",
            ReadyNotifier {
                admin: settings.admin_listen,
            },
        ));
        notifier.add_dependency(&admin);
    }
    server.add_service(background_service(
        "credentials",
        CredentialRefresher(crate::credentials::Refresher::default()),
    ));
    server.add_service(background_service(
        "shutdown",
        ShutdownCoordinator {
            drain,
            metrics,
            sinks,
            grace: settings.shutdown_grace,
            fast: Arc::clone(&fast),
        },
    ));
    if let Some(mock_addr) = settings.mock_listen {
        let mut mock = mock_service(&mock_addr.to_string(), MockOptions::default());
        mock.threads = Some(1);
        tracing::info!(listen = %mock_addr, "serving the built-in mock provider");
        let mock = server.add_service(mock);
        proxy.add_dependency(&mock);
    }
    server.run(RunArgs {
        shutdown_signal: Box::new(Signals { fast }),
    });
    Ok(())
}

/// Which listener's certificate: `server.tls` or `server.admin_tls`.
type TlsField = fn(&ServerSettings) -> Option<&crate::tls::Identity>;

/// Listens on `addr`: plain TCP, or TLS (HTTP/2 and HTTP/1.1 by ALPN) when the config gives the
/// listener a certificate. Each reload then serves the certificate the new config names; a config
/// that drops the listener's TLS keeps the running certificate (that change needs a restart).
fn add_listener<A>(service: &mut Service<A>, addr: std::net::SocketAddr, field: TlsField, store: &Arc<ConfigStore>) {
    let current = store.current();
    let Some(identity) = field(&current.server) else {
        service.add_tcp(&addr.to_string());
        return;
    };
    let certs = crate::tls::Certs::new(identity);
    store.on_install(Arc::new(CertSwap {
        certs: Arc::clone(&certs),
        field,
    }));
    // The file paths are not read when a resolver is set.
    let mut tls = match pingora::listeners::tls::TlsSettings::intermediate("", "") {
        Ok(t) => t,
        Err(e) => unreachable!("intermediate() reads no file: {e}"),
    };
    tls.set_cert_resolver(certs);
    tls.enable_h2();
    service.add_tls_with_settings(&addr.to_string(), None, tls);
}

/// Serves each new snapshot's certificate on one listener.
struct CertSwap {
    certs: Arc<crate::tls::Certs>,
    field: TlsField,
}

impl crate::config::store::Install for CertSwap {
    fn install(&self, snapshot: &Arc<crate::config::Snapshot>) {
        if let Some(identity) = (self.field)(&snapshot.server) {
            if self.certs.set(identity) {
                tracing::info!(cert_file = %identity.cert_file.display(), "serving a new TLS certificate");
            }
        }
    }
}

/// Seconds Pingora waits after the shutdown grace before it stops the runtimes itself, should
/// the coordinator not have ended the process by then (it normally exits well before).
const SHUTDOWN_BACKSTOP_SECS: u64 = 15;

/// Connections the admin listener takes at once (health checks and scrapes, on loopback).
const ADMIN_MAX_CONNECTIONS: usize = 256;

/// Binds each listener's address once before anything starts, so an address in use (or not
/// ours to bind) fails the start at once, naming it, instead of a listener thread that retries
/// for ~25 s and dies while the rest of the process looks healthy.
/// SIGHUP and SIGUSR2 kill a process by default, and the config watcher installs its handlers
/// only once the server runs: a reload or a log rotation sent during the start must not end it.
/// Ignored until then (the watcher's handlers replace the disposition).
fn ignore_reload_signals_until_watched() {
    for sig in [libc::SIGHUP, libc::SIGUSR2] {
        // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
        unsafe {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
}

fn check_listeners(config_path: &Path, s: &ServerSettings) -> Result<(), ConfigErrors> {
    let listeners = [
        ("server.listen", Some(s.listen)),
        ("server.admin_listen", Some(s.admin_listen)),
        ("server.mock_listen", s.mock_listen),
    ];
    let errors: Vec<ConfigError> = listeners
        .into_iter()
        .filter_map(|(path, addr)| {
            let addr = addr?;
            let e = std::net::TcpListener::bind(addr).err()?;
            Some(ConfigError {
                file: config_path.display().to_string(),
                line: None,
                path: path.into(),
                message: format!("cannot listen on {addr}: {e}"),
            })
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors { errors })
    }
}

/// Should a listener still fail to bind after `check_listeners` (the address taken in between),
/// Pingora panics in that listener's thread and the process would live on serving nothing:
/// exit instead, so the service manager sees the failure.
fn exit_if_a_listener_fails() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if text.contains("Failed to build listeners") {
            eprintln!("tollgate: a listener could not be started; exiting");
            std::process::exit(2);
        }
    }));
}

/// File descriptors kept for everything that is not a client connection: the admin listener's
/// connections, the ledger and logs, Redis, the tokenizer, the runtime.
const RESERVED_FDS: u64 = 512;

/// Raises the soft open-files limit to the hard one and lowers `max_connections` to what it
/// allows (each client connection may hold a provider connection too), so the cap refuses
/// connections before the process runs out of descriptors.
fn connection_cap(configured: usize) -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write and read the plain struct passed by pointer.
    let fds = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return configured;
        }
        let want = lim.rlim_max.min(1 << 20);
        if lim.rlim_cur < want {
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = want;
            }
        }
        lim.rlim_cur
    };
    let allowed = (fds.saturating_sub(RESERVED_FDS) / 2).max(1) as usize;
    if configured > allowed {
        tracing::warn!(
            configured,
            allowed,
            open_files_limit = fds,
            "server.max_connections is lowered to what the open-files limit allows (raise LimitNOFILE to allow more)"
        );
        allowed
    } else {
        configured
    }
}

/// Pingora's shutdown signals, with SIGINT also going through the coordinator (with no grace)
/// so that what runs is ended explicitly and recorded rather than dropped.
struct Signals {
    fast: Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut quit), Ok(mut term), Ok(mut int), Ok(mut usr1)) = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::user_defined1()),
        ) else {
            tracing::error!("cannot listen for shutdown signals");
            return std::future::pending().await;
        };
        loop {
            let signal = tokio::select! {
                _ = quit.recv() => ShutdownSignal::GracefulUpgrade,
                _ = term.recv() => ShutdownSignal::GracefulTerminate,
                _ = int.recv() => {
                    self.fast.store(true, std::sync::atomic::Ordering::Relaxed);
                    ShutdownSignal::GracefulTerminate
                }
                // An upgrade in place (systemd: `systemctl kill -s USR1 --kill-whom=main`): start
                // the new binary, then hand the listeners over to it as SIGQUIT does.
                _ = usr1.recv() => match crate::systemd::start_successor() {
                    Ok(pid) => {
                        tracing::info!(new_pid = pid, "SIGUSR1: started the new binary; handing the listeners over");
                        ShutdownSignal::GracefulUpgrade
                    }
                    Err(e) => {
                        tracing::error!("SIGUSR1: cannot start the new binary ({e}); still serving");
                        continue;
                    }
                },
            };
            if matches!(signal, ShutdownSignal::GracefulTerminate) {
                crate::systemd::notify("STOPPING=1");
            }
            return signal;
        }
    }
}

/// Budgets survive a restart: what each key and team already spent in the current window of
/// every budget period is read back from the spend ledger before the first request.
fn seed_budgets(gateway: &Gateway, sinks: &Sinks) {
    use crate::limits::limiter::{Period, ScopeKind};
    use crate::usage::ledger::{GroupBy, SpendQuery};
    let Some(reader) = &sinks.spend else {
        return;
    };
    let now = crate::time::unix_ms();
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
