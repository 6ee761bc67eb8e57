//! The `tollgate` command: `run` the gateway, `check` a config, serve the `mock-provider`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: the usage records are built on the proxy threads and freed
/// on the writer threads, and glibc takes the allocating thread's arena lock for such frees, so a
/// writer freeing a batch held up the proxy threads' own allocations (see `loadtest/RESULTS.md`,
/// "Usage writers"). mimalloc frees across threads without a lock.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "An AI gateway on Pingora: one OpenAI-compatible API in front of every LLM provider"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        /// The config file.
        #[arg(long, short, env = "TOLLGATE_CONFIG", default_value = "conf/tollgate.yaml")]
        config: PathBuf,
        /// Take the listening sockets over from a running instance (zero-downtime upgrade).
        #[arg(long)]
        upgrade: bool,
        /// Directory for the pid file and the upgrade socket.
        #[arg(long, env = "TOLLGATE_RUNTIME_DIR")]
        runtime_dir: Option<String>,
    },
    /// Validate a config file: print every problem and exit non-zero if there is one.
    Check {
        #[arg(long, short, env = "TOLLGATE_CONFIG", default_value = "conf/tollgate.yaml")]
        config: PathBuf,
    },
    /// Print spend from the ledger: requests, tokens and cost, grouped.
    Spend {
        /// The config whose `usage.ledger` is read.
        #[arg(long, short, env = "TOLLGATE_CONFIG", default_value = "conf/tollgate.yaml")]
        config: PathBuf,
        /// Read this ledger instead (`sqlite:PATH` or `postgres://…`).
        #[arg(long)]
        ledger: Option<String>,
        /// Start (RFC 3339, YYYY-MM-DD, or Unix seconds); default: 24 hours before `to`.
        #[arg(long)]
        from: Option<String>,
        /// End, exclusive; default: now.
        #[arg(long)]
        to: Option<String>,
        /// Comma-separated: team, feature, model, provider, key, user, tier, route.
        #[arg(long, short = 'g', default_value = "")]
        group_by: String,
        /// Print the report as JSON (the `/admin/spend` shape).
        #[arg(long)]
        json: bool,
    },
    /// The running gateway's response cache, through its admin API (`admin.token` from the config).
    Cache {
        #[arg(
            long,
            short,
            env = "TOLLGATE_CONFIG",
            default_value = "conf/tollgate.yaml",
            global = true
        )]
        config: PathBuf,
        #[command(subcommand)]
        action: CacheAction,
    },
    /// Ask a running gateway's admin listener whether it is up (`/health`): exit 0 when it
    /// answers 200, 1 otherwise. For container health checks (the image has no shell or curl).
    Health {
        #[arg(long, default_value = "http://127.0.0.1:9090/health")]
        url: String,
    },
    /// Serve the mock LLM provider (for tests, benchmarks and demos).
    MockProvider {
        #[arg(long, default_value = "127.0.0.1:8091")]
        listen: String,
        /// Worker threads.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        #[command(flatten)]
        options: tollgate::mock::MockOptions,
    },
}

#[derive(Subcommand)]
enum CacheAction {
    /// Entries, bytes and the bound of the in-process store.
    Stats,
    /// Remove entries: all, a tenant's (`team:NAME`, `key:ID`, `global`, `public`), a model
    /// alias's, or one key (the `x-tollgate-cache-key` response header).
    Purge {
        #[arg(long, conflicts_with_all = ["tenant", "model", "key"])]
        all: bool,
        #[arg(long, conflicts_with_all = ["model", "key"])]
        tenant: Option<String>,
        #[arg(long, conflicts_with = "key")]
        model: Option<String>,
        #[arg(long)]
        key: Option<String>,
    },
}

/// Log targets whose events at some level carry secrets, and the most they may log whatever
/// `RUST_LOG` says: Pingora's HTTP/1 client writes each upstream request header, the provider's
/// `Authorization` included, at trace level (found by the test suite's secret scan).
const LOG_CEILINGS: &[&str] = &["pingora_core::protocols::http::v1::client=debug"];

fn init_tracing() {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Added after RUST_LOG's own directives, so they replace one for the same target.
    for ceiling in LOG_CEILINGS {
        match ceiling.parse() {
            Ok(d) => filter = filter.add_directive(d),
            Err(e) => eprintln!("tollgate: bad built-in log directive {ceiling}: {e}"),
        }
    }
    let json = std::env::var("TOLLGATE_LOG_FORMAT").is_ok_and(|v| v == "json");
    // Diagnostics go to stderr (stdout is the access log's), coloured only on a terminal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match cli.command {
        Command::Run {
            config,
            upgrade,
            runtime_dir,
        } => {
            let opts = tollgate::server::RunOptions { upgrade, runtime_dir };
            match tollgate::server::run(&config, opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(errors) => {
                    eprintln!("tollgate: cannot start:\n{errors}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Check { config } => match tollgate::config::load_file(&config) {
            Ok(snap) => {
                for w in &snap.warnings {
                    eprintln!("warning: {w}");
                }
                // The access-control posture, so a file that lost its `auth:` or `keys:` (cut
                // short, say) does not pass unnoticed as merely "ok".
                let auth = if snap.auth.required {
                    "required"
                } else {
                    "not required (requests without a key are served)"
                };
                // And the guardrails' reach: which routes check anything, and the defaults.
                let guarded = |p: Option<&std::sync::Arc<tollgate::guard::policy::Policy>>| {
                    p.is_some_and(|p| p.checks_input() || p.checks_output())
                };
                let default = snap.guard.as_ref().and_then(|g| g.default.as_ref());
                let routes = snap
                    .routes
                    .iter()
                    .filter(|r| guarded(r.guardrails.as_ref().or(default)))
                    .count();
                let defaults = if guarded(default) { "on" } else { "off" };
                let cached = snap
                    .routes
                    .iter()
                    .filter(|r| r.cache.as_ref().is_some_and(|c| c.active()))
                    .count();
                println!(
                    "{}: ok ({} providers, {} enabled; {} models; auth {auth}, {} config keys; guardrails on {routes} of {} routes, defaults {defaults}; cache on {cached})",
                    config.display(),
                    snap.providers.len(),
                    snap.enabled_providers(),
                    snap.models.len(),
                    snap.auth.keys.len(),
                    snap.routes.len(),
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                let problems = errors.errors.iter().filter(|e| !e.is_more_problems()).count();
                if problems < errors.errors.len() {
                    eprintln!(
                        "{}: more than {problems} problems (the first {problems} shown)",
                        config.display()
                    );
                } else {
                    eprintln!("{}: {problems} problem(s)", config.display());
                }
                ExitCode::from(1)
            }
        },
        Command::Spend {
            config,
            ledger,
            from,
            to,
            group_by,
            json,
        } => match spend(&config, ledger, from, to, &group_by, json) {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tollgate spend: {e}");
                ExitCode::from(1)
            }
        },
        Command::Cache { config, action } => match cache(&config, action) {
            Ok(out) => {
                println!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tollgate cache: {e}");
                ExitCode::from(1)
            }
        },
        Command::Health { url } => {
            let agent = ureq::AgentBuilder::new()
                .timeout(std::time::Duration::from_secs(3))
                .build();
            match agent.get(&url).call() {
                Ok(r) if r.status() == 200 => ExitCode::SUCCESS,
                Ok(r) => {
                    eprintln!("tollgate health: {url} answered {}", r.status());
                    ExitCode::from(1)
                }
                Err(e) => {
                    eprintln!("tollgate health: {url}: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::MockProvider {
            listen,
            threads,
            options,
        } => {
            let mut server = pingora::server::Server::new_with_opt_and_conf(
                None,
                pingora::server::configuration::ServerConf {
                    threads,
                    grace_period_seconds: Some(0),
                    graceful_shutdown_timeout_seconds: Some(1),
                    pid_file: "/tmp/tollgate-mock.pid".into(),
                    upgrade_sock: "/tmp/tollgate-mock-upgrade.sock".into(),
                    ..Default::default()
                },
            );
            server.bootstrap();
            let mut svc = tollgate::mock::mock_service(&listen, options);
            svc.threads = Some(threads);
            tracing::info!(%listen, "mock provider listening");
            server.add_service(svc);
            server.run_forever()
        }
    }
}

/// Asks the running gateway's admin API (its address and token from `config`).
fn cache(config: &std::path::Path, action: CacheAction) -> Result<String, String> {
    let snap = tollgate::config::load_file(config).map_err(|e| e.to_string())?;
    let token = snap
        .admin_token
        .as_ref()
        .ok_or_else(|| format!("{}: admin.token is not set, so the admin API is off", config.display()))?;
    let mut addr = snap.server.admin_listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let auth = format!("Bearer {}", token.expose());
    let agent = ureq::AgentBuilder::new()
        .timeout(std::time::Duration::from_secs(10))
        .build();
    let answer = match action {
        CacheAction::Stats => agent
            .get(&format!("http://{addr}/admin/cache"))
            .set("authorization", &auth)
            .call(),
        CacheAction::Purge {
            all,
            tenant,
            model,
            key,
        } => {
            let body = match (all, tenant, model, key) {
                (true, ..) => serde_json::json!({"all": true}),
                (_, Some(t), ..) => serde_json::json!({"tenant": t}),
                (_, _, Some(m), _) => serde_json::json!({"model": m}),
                (_, _, _, Some(k)) => serde_json::json!({"key": k}),
                _ => return Err("say what to purge: --all, --tenant, --model or --key".into()),
            };
            agent
                .post(&format!("http://{addr}/admin/cache/purge"))
                .set("authorization", &auth)
                .send_json(body)
        }
    };
    match answer {
        Ok(r) => r.into_string().map_err(|e| e.to_string()),
        Err(ureq::Error::Status(code, r)) => Err(format!("{code}: {}", r.into_string().unwrap_or_default())),
        Err(e) => Err(format!("cannot reach the admin API at {addr}: {e}")),
    }
}

fn spend(
    config: &std::path::Path,
    ledger: Option<String>,
    from: Option<String>,
    to: Option<String>,
    group_by: &str,
    json: bool,
) -> Result<String, String> {
    let url = match ledger {
        Some(u) => u,
        None => {
            let snap = tollgate::config::load_file(config).map_err(|e| e.to_string())?;
            tollgate::config::moved::check_file(config, &snap.usage).map_err(|e| e.to_string())?;
            match snap.usage.ledger {
                Some(u) => u.expose().to_string(),
                None => return Err(format!("{}: usage.ledger is off", config.display())),
            }
        }
    };
    let mut query = Vec::new();
    if let Some(f) = from {
        query.push(("from", f));
    }
    if let Some(t) = to {
        query.push(("to", t));
    }
    query.push(("group_by", group_by.to_string()));
    let encoded = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query)
        .finish();
    let q = tollgate::admin::spend_query(&encoded, tollgate::time::unix_ms_i64())?;
    let reader = tollgate::usage::ledger::open_reader(&url).map_err(|e| e.to_string())?;
    let report = reader.spend(&q).map_err(|e| e.to_string())?;
    if json {
        let mut s = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        s.push('\n');
        Ok(s)
    } else {
        Ok(tollgate::usage::report::table(&report))
    }
}
