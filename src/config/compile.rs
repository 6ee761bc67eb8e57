//! Raw config → validated `Snapshot`. Every problem is collected (not just the first) with its key
//! path and line, so `tollgate check` and a rejected reload list everything wrong at once.

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::error::{ConfigError, ConfigErrors};
use super::locate::{line_of, render, Seg};
use super::raw::{RawConfig, RawTimeouts};
use super::snapshot::{ModelAlias, ServerSettings, Snapshot, Target, Timeouts, MAX_PLAN};
mod cache;
mod guard;
mod provider;
mod usage;

use provider::compile_provider;

/// Environment lookup and DNS resolution are injected so tests can run hermetically.
pub struct Env<'a> {
    pub var: &'a dyn Fn(&str) -> Option<String>,
    pub resolve: &'a dyn Fn(&str, u16) -> Result<SocketAddr, String>,
}

impl Env<'static> {
    pub fn system() -> Self {
        Env {
            var: &crate::config::env::system_lookup,
            resolve: &resolve_system,
        }
    }
}

fn resolve_system(host: &str, port: u16) -> Result<SocketAddr, String> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| "no address".to_string())
}

struct Ctx<'a> {
    file: &'a Path,
    doc: &'a str,
    /// Maps a path of `raw` to the file's: items `parse` left out of a sequence moved the later
    /// ones up.
    original: &'a dyn Fn(&[Seg]) -> Vec<Seg>,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
    /// The providers' host names, as resolved (`config::dns`).
    names: Vec<super::dns::Name>,
}

impl Ctx<'_> {
    fn error(&mut self, path: &[Seg], message: impl Into<String>) {
        let path = &(self.original)(path);
        self.errors.push(ConfigError {
            file: self.file.display().to_string(),
            line: line_of(self.doc, path),
            path: render(path),
            message: message.into(),
        });
    }
}

fn key(s: &str) -> Seg {
    Seg::Key(s.to_string())
}

pub fn compile(
    raw: RawConfig,
    file: &Path,
    doc: &str,
    env: &Env,
    original: &dyn Fn(&[Seg]) -> Vec<Seg>,
) -> Result<Snapshot, ConfigErrors> {
    let mut cx = Ctx {
        file,
        doc,
        original,
        errors: Vec::new(),
        warnings: Vec::new(),
        names: Vec::new(),
    };
    let server = compile_server(&raw, file, env, &mut cx);
    let routing = compile_routing(&raw.routing, &mut cx);
    let defaults = merge_timeouts(&[key("timeouts")], &raw.timeouts, Timeouts::DEFAULT, &mut cx);

    let pricing = usage::compile_pricing(&raw, file, &mut cx);
    let usage_settings = usage::compile_usage(&raw, file, env, &mut cx);
    let admin_token = usage::compile_admin_token(&raw, env, &mut cx);
    let tracing = usage::compile_tracing(&raw, env, &mut cx);
    let auth = usage::compile_auth(&raw, env, &mut cx);
    let limits = usage::compile_limits(&raw, file, env, &mut cx);
    let mut unpriced: Vec<String> = Vec::new();

    let mut providers = BTreeMap::new();
    for (name, p) in &raw.providers {
        let provider = compile_provider(name, p, defaults, env, &mut cx);
        providers.insert(name.clone(), Arc::new(provider));
    }

    // First pass: each alias's own targets.
    let mut own: BTreeMap<&str, Vec<Arc<Target>>> = BTreeMap::new();
    let mut slots = 0;
    for (alias, m) in &raw.models {
        let path = [key("models"), key(alias)];
        if alias.is_empty() {
            cx.error(&path, "a model alias must not be empty");
        }
        if m.targets.is_empty() {
            cx.error(
                &[key("models"), key(alias), key("targets")],
                "needs at least one target",
            );
        }
        let mut targets = Vec::with_capacity(m.targets.len());
        for (i, t) in m.targets.iter().enumerate() {
            let tpath = |f: &str| vec![key("models"), key(alias), key("targets"), Seg::Index(i), key(f)];
            if t.model.is_empty() {
                cx.error(&tpath("model"), "must not be empty");
            }
            match providers.get(&t.provider) {
                Some(provider) => targets.push(Arc::new(Target {
                    provider: Arc::clone(provider),
                    model: t.model.clone(),
                    model_json: Bytes::from(serde_json::Value::from(t.model.as_str()).to_string()),
                    weight: t.weight.unwrap_or(1),
                    context_window: t.context_window,
                    price: {
                        // A config entry naming this very provider wins over the family's price.
                        let price = pricing
                            .lookup(&provider.name, &t.model)
                            .or_else(|| pricing.lookup(provider.pricing_family, &t.model))
                            .cloned();
                        if price.is_none() && provider.is_enabled() {
                            let id = format!("{}/{}", provider.name, t.model);
                            if !unpriced.contains(&id) {
                                unpriced.push(id);
                            }
                        }
                        price
                    },
                    slot: {
                        slots += 1;
                        slots - 1
                    },
                })),
                None => cx.error(
                    &tpath("provider"),
                    format!(
                        "unknown provider {:?} (defined: {})",
                        t.provider,
                        list(providers.keys())
                    ),
                ),
            }
        }
        for (i, fb) in m.fallbacks.iter().enumerate() {
            let fpath = [key("models"), key(alias), key("fallbacks"), Seg::Index(i)];
            if fb == alias {
                cx.error(&fpath, "an alias cannot fall back to itself");
            } else if !raw.models.contains_key(fb) {
                cx.error(&fpath, format!("unknown model alias {fb:?}"));
            }
        }
        own.insert(alias.as_str(), targets);
    }

    // Second pass: the plan of each alias, following fallbacks.
    let mut models = HashMap::new();
    for (alias, m) in &raw.models {
        let (plan, unavailable) = build_plan(alias, &raw, &own);
        if plan.len() == MAX_PLAN {
            cx.warnings.push(format!(
                "model {alias:?}: its fallback chain is cut at {MAX_PLAN} targets"
            ));
        }
        let own_targets = own.get(alias.as_str()).cloned().unwrap_or_default();
        let own_enabled: Vec<&Arc<Target>> = own_targets.iter().filter(|t| t.provider.is_enabled()).collect();
        let strategy = m.strategy.unwrap_or_default();
        let weighted = (strategy == crate::routing::balance::Strategy::Weighted)
            .then(|| crate::routing::balance::Weighted::new(&own_enabled.iter().map(|t| t.weight).collect::<Vec<_>>()));
        let ab = m.ab.as_ref().map(|ab| {
            let path = |f: &str| vec![key("models"), key(alias), key("ab"), key(f)];
            if !raw.models.contains_key(&ab.model) || &ab.model == alias {
                cx.error(
                    &path("model"),
                    format!("{:?} is not another configured alias", ab.model),
                );
            }
            if !(0.0..=100.0).contains(&ab.percent) {
                cx.error(&path("percent"), "must be between 0 and 100");
            }
            if ab.sticky != "user" && ab.sticky != "none" {
                cx.error(&path("sticky"), "must be `user` or `none`");
            }
            super::snapshot::AbSplit {
                model: ab.model.clone(),
                percent: ab.percent,
                sticky_user: ab.sticky == "user",
            }
        });
        models.insert(
            alias.as_str().into(),
            Arc::new(ModelAlias {
                name: alias.clone(),
                own: own_enabled.len().min(plan.len()),
                targets: own_targets,
                fallbacks: m.fallbacks.clone(),
                hidden: m.hidden,
                plan,
                unavailable,
                strategy,
                weighted,
                ab,
            }),
        );
    }

    let guard = guard::compile_guard(&raw, env, &mut cx);
    let (cache, cache_routes) = cache::compile_cache(&raw, file, env, &mut cx);
    let routes = compile_routes(&raw, guard.as_ref(), cache_routes, &mut cx);
    if !cx.errors.is_empty() {
        return Err(ConfigErrors { errors: cx.errors });
    }
    let server = server.ok_or_else(|| ConfigErrors { errors: Vec::new() })?;
    if !providers.values().any(|p| p.is_enabled()) {
        cx.warnings
            .push("no provider is enabled: every model request will fail until one is".into());
    }
    if !unpriced.is_empty() {
        cx.warnings.push(format!(
            "not in the pricing table (their cost is recorded as 0 and flagged; add them under pricing.models): {}",
            unpriced.join(", ")
        ));
    }
    let loaded_at = crate::time::unix_secs();
    let models_list_body = crate::config::models::list_body(
        models.values().map(AsRef::as_ref),
        loaded_at,
        crate::providers::Wire::OpenAi,
    );
    Ok(Snapshot {
        path: file.to_path_buf(),
        server,
        routing,
        providers,
        models,
        routes,
        models_list_body,
        loaded_at,
        source_hash: 0,
        source: Arc::from(""),
        names: cx.names,
        secret_refs: Vec::new(),
        secrets_hash: 0,
        sections: Vec::new(),
        doc_paths: Default::default(),
        warnings: cx.warnings,
        usage: usage_settings,
        pricing,
        admin_token,
        tracing,
        auth,
        limits,
        guard,
        cache,
    })
}

/// Breadth-first over the alias and its fallbacks, each alias once, enabled targets only.
fn build_plan(
    alias: &str,
    raw: &RawConfig,
    own: &BTreeMap<&str, Vec<Arc<Target>>>,
) -> (Vec<Arc<Target>>, Option<String>) {
    let mut plan: Vec<Arc<Target>> = Vec::new();
    let mut disabled: Vec<String> = Vec::new();
    let mut visited: Vec<&str> = Vec::new();
    let mut queue = std::collections::VecDeque::from([alias]);
    while let Some(name) = queue.pop_front() {
        if visited.contains(&name) {
            continue;
        }
        visited.push(name);
        for t in own.get(name).map(Vec::as_slice).unwrap_or_default() {
            if !t.provider.is_enabled() {
                let why = format!(
                    "{} ({})",
                    t.provider.name,
                    t.provider.disabled.as_deref().unwrap_or("disabled")
                );
                if !disabled.contains(&why) {
                    disabled.push(why);
                }
            } else if plan.len() < MAX_PLAN && !plan.iter().any(|p| Arc::ptr_eq(p, t)) {
                plan.push(Arc::clone(t));
            }
        }
        if let Some(m) = raw.models.get(name) {
            queue.extend(m.fallbacks.iter().map(String::as_str));
        }
    }
    let unavailable = plan.is_empty().then(|| {
        if disabled.is_empty() {
            "no target is configured".to_string()
        } else {
            format!("every provider is disabled: {}", disabled.join(", "))
        }
    });
    (plan, unavailable)
}

fn list<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = names.map(String::as_str).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn compile_server(raw: &RawConfig, file: &Path, env: &Env, cx: &mut Ctx) -> Option<ServerSettings> {
    let s = &raw.server;
    let addr = |field: &str, value: &str, cx: &mut Ctx| -> Option<SocketAddr> {
        match value.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                cx.error(
                    &[key("server"), key(field)],
                    format!("{value:?} is not an ip:port address"),
                );
                None
            }
        }
    };
    let listen = addr("listen", &s.listen, cx);
    let admin_listen = addr("admin_listen", &s.admin_listen, cx);
    let mock_listen = match &s.mock_listen {
        Some(m) => Some(addr("mock_listen", m, cx)?),
        None => None,
    };
    if s.max_body_bytes == 0 {
        cx.error(&[key("server"), key("max_body_bytes")], "must be greater than 0");
    }
    if s.max_buffered_bytes < s.max_body_bytes {
        cx.error(
            &[key("server"), key("max_buffered_bytes")],
            format!(
                "must be at least server.max_body_bytes ({}): a request of the largest size allowed could never be read",
                s.max_body_bytes
            ),
        );
    }
    for (field, value) in [
        ("header_timeout", s.header_timeout),
        ("body_timeout", s.body_timeout),
        ("keepalive_timeout", s.keepalive_timeout),
    ] {
        if value.is_zero() {
            cx.error(&[key("server"), key(field)], "must be greater than 0s");
        }
    }
    if s.max_connections == 0 {
        cx.error(&[key("server"), key("max_connections")], "must be greater than 0");
    }
    // Below a few KiB ordinary requests (SDK user agents, tracing headers) would be refused.
    if s.max_header_bytes < 4096 {
        cx.error(&[key("server"), key("max_header_bytes")], "must be at least 4096");
    }
    let trusted_proxies = match crate::client_addr::TrustedProxies::parse(&s.trusted_proxies, s.forwarded_header) {
        Ok(t) => t,
        Err(e) => {
            cx.error(&[key("server"), key("trusted_proxies")], e);
            Default::default()
        }
    };
    let tls = s.tls.as_ref().and_then(|t| compile_tls("tls", t, file, env, cx));
    let admin_tls = s
        .admin_tls
        .as_ref()
        .and_then(|t| compile_tls("admin_tls", t, file, env, cx));
    let (listen, admin_listen) = (listen?, admin_listen?);
    let all = [Some(listen), Some(admin_listen), mock_listen];
    for (i, a) in all.iter().enumerate() {
        if a.is_some() && all[..i].contains(a) {
            cx.error(
                &[key("server")],
                "listen, admin_listen and mock_listen must be different addresses",
            );
        }
    }
    Some(ServerSettings {
        listen,
        admin_listen,
        mock_listen,
        threads: s.threads,
        max_body_bytes: s.max_body_bytes,
        max_buffered_bytes: s.max_buffered_bytes,
        shutdown_grace: s.shutdown_grace,
        reload_poll: s.reload_poll,
        max_connections: s.max_connections,
        header_timeout: s.header_timeout,
        max_header_bytes: s.max_header_bytes,
        body_timeout: s.body_timeout,
        keepalive_timeout: s.keepalive_timeout,
        reload_settle: s.reload_settle,
        dns_refresh: s.dns_refresh,
        tls,
        admin_tls,
        trusted_proxies,
    })
}

/// A listener's certificate and key. The files are read through the secret-file lookup, so the
/// watcher reloads when either changes (a renewed certificate is served without a restart).
fn compile_tls(
    field: &str,
    t: &super::raw::RawTls,
    file: &Path,
    env: &Env,
    cx: &mut Ctx,
) -> Option<crate::tls::Identity> {
    let dir = usage::config_dir(file);
    let mut read = |name: &str, value: &str| -> Option<(PathBuf, String)> {
        let path = dir.join(value);
        match (env.var)(&format!("file:{}", path.display())) {
            Some(pem) => Some((path, pem)),
            None => {
                cx.error(
                    &[key("server"), key(field), key(name)],
                    format!("{} is missing, unreadable, empty or over 1 MiB", path.display()),
                );
                None
            }
        }
    };
    let cert = read("cert_file", &t.cert_file);
    let private = read("key_file", &t.key_file);
    let ((cert_file, cert_pem), (key_file, key_pem)) = (cert?, private?);
    match crate::tls::Identity::from_pem(cert_file, &cert_pem, key_file, &key_pem) {
        Ok(id) => Some(id),
        Err(message) => {
            cx.error(&[key("server"), key(field)], message);
            None
        }
    }
}

fn compile_routes(
    raw: &RawConfig,
    guard: Option<&super::snapshot::GuardSettings>,
    cache: Vec<Option<Arc<crate::cache::policy::Policy>>>,
    cx: &mut Ctx,
) -> Vec<crate::routing::routes::Route> {
    let mut cache = cache.into_iter();
    use crate::routing::routes::{Glob, Route};
    let mut names: Vec<&str> = Vec::new();
    let mut out = Vec::with_capacity(raw.routes.len());
    for (i, r) in raw.routes.iter().enumerate() {
        let path = |f: &str| vec![key("routes"), Seg::Index(i), key(f)];
        if r.name.is_empty() || names.contains(&r.name.as_str()) {
            cx.error(&path("name"), "needs a unique, non-empty name");
        }
        names.push(&r.name);
        if let Some(m) = &r.model {
            if !raw.models.contains_key(m) {
                cx.error(&path("model"), format!("unknown model alias {m:?}"));
            }
        }
        out.push(Route {
            name: r.name.clone(),
            model: r.when.model.as_deref().map(Glob::new),
            task: r.when.task.clone(),
            key: r.when.key.as_deref().map(Glob::new),
            team: r.when.team.as_deref().map(Glob::new),
            tier: r.when.tier.as_deref().map(Glob::new),
            metadata: r.when.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            rewrite: r.model.clone(),
            strategy: r.strategy,
            allowed: r.allowed_models.iter().map(|g| Glob::new(g)).collect(),
            cache: cache.next().flatten(),
            fallback_on_unsupported: r.fallback_on_unsupported,
            guardrails: guard.and_then(|g| g.routes.get(i).cloned().flatten()),
        });
    }
    out
}

fn compile_routing(r: &super::raw::RawRouting, cx: &mut Ctx) -> super::snapshot::RoutingSettings {
    let path = |f: &str| vec![key("routing"), key(f)];
    if r.retries > 10 {
        cx.error(&path("retries"), "at most 10");
    }
    if r.budget.is_zero() {
        cx.error(&path("budget"), "must be greater than 0");
    }
    if r.backoff > r.backoff_max {
        cx.error(&path("backoff"), "must not exceed backoff_max");
    }
    for (i, s) in r.retry_on.iter().enumerate() {
        if !(400..=599).contains(s) {
            let mut p = path("retry_on");
            p.push(Seg::Index(i));
            cx.error(&p, format!("{s} is not an HTTP error status (400..=599)"));
        }
    }
    super::snapshot::RoutingSettings {
        retries: r.retries,
        backoff: r.backoff,
        backoff_max: r.backoff_max,
        max_retry_after: r.max_retry_after,
        budget: r.budget,
        retry_on: r.retry_on.clone(),
        breaker: r.breaker,
        key_cooldown: r.key_cooldown,
    }
}

fn merge_timeouts(path: &[Seg], raw: &RawTimeouts, base: Timeouts, cx: &mut Ctx) -> Timeouts {
    let mut pick = |field: &str, v: Option<std::time::Duration>, d| match v {
        Some(v) if v.is_zero() => {
            let mut p = path.to_vec();
            p.push(key(field));
            cx.error(&p, "must be greater than 0");
            d
        }
        Some(v) => v,
        None => d,
    };
    Timeouts {
        connect: pick("connect", raw.connect, base.connect),
        first_byte: pick("first_byte", raw.first_byte, base.first_byte),
        idle: pick("idle", raw.idle, base.idle),
    }
}
