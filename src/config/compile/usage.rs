//! The `usage`, `pricing`, `admin` and `tracing` sections: where records go, what tokens cost,
//! who may read spend, where spans go.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{key, Ctx, Env};
use crate::config::env::expand_with;
use crate::config::raw::RawConfig;
use crate::config::snapshot::{
    AccessLog, AuthSettings, LimitSettings, MovedPath, TracingSettings, UsagePath, UsageSettings,
};
use crate::limits::limiter::Limits;
use crate::secret::Secret;
use crate::usage::pricing::PriceTable;

/// A setting with `${VAR}`s expanded; every variable it names must be set (else an error at
/// `path`, and `None`).
pub(super) fn expand_required(raw: &str, env: &Env, path: &[super::Seg], cx: &mut Ctx) -> Option<String> {
    match expand_with(raw, env.var) {
        Ok(e) if e.missing.is_empty() => Some(e.value),
        Ok(e) => {
            cx.error(path, e.missing_message());
            None
        }
        Err(msg) => {
            cx.error(path, msg);
            None
        }
    }
}

/// The directory relative paths in the config are resolved against: the config file's own, made
/// absolute, so that every command reading the same file (`run`, `spend`, from any working
/// directory) finds the same ledger, spill files and access log.
pub(super) fn config_dir(file: &Path) -> PathBuf {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// The relative PATH of `sqlite:PATH` (or `sqlite://PATH`), and what follows it (`?mode=…`).
fn relative_sqlite_file(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (file, suffix) = rest.split_at(end);
    (!file.is_empty() && Path::new(file).is_relative()).then_some((file, suffix))
}

/// `sqlite:PATH` with a relative PATH made relative to `dir`; other URLs unchanged.
fn resolve_sqlite(url: &str, dir: &Path) -> String {
    match relative_sqlite_file(url) {
        Some((file, suffix)) => format!("sqlite:{}{suffix}", dir.join(file).display()),
        None => url.to_string(),
    }
}

/// `written` (a relative path) as it resolves now, and as it did before relative paths followed
/// the config file (against the working directory), when the two differ.
fn moved(setting: UsagePath, written: &str, dir: &Path) -> Option<MovedPath> {
    let rel = Path::new(written);
    if rel.as_os_str().is_empty() || rel.is_absolute() {
        return None;
    }
    let now = dir.join(rel);
    let before = std::path::absolute(rel).ok()?;
    (now != before).then(|| MovedPath {
        setting,
        written: written.to_string(),
        now,
        before,
    })
}

pub(super) fn compile_usage(raw: &RawConfig, file: &Path, env: &Env, cx: &mut Ctx) -> UsageSettings {
    let u = &raw.usage;
    let path = |f: &str| [key("usage"), key(f)];
    let dir = config_dir(file);
    // The URL may carry a password from the environment (`postgres://tollgate:${PGPASSWORD}@…`).
    let ledger_url = expand_required(&u.ledger, env, &path("ledger"), cx).unwrap_or_default();
    let ledger = match ledger_url.trim() {
        "off" | "" => None,
        url if url.starts_with("sqlite:") => Some(Secret::new(resolve_sqlite(url, &dir))),
        url if url.starts_with("postgres://") || url.starts_with("postgresql://") => Some(Secret::new(url)),
        other => {
            cx.error(
                &path("ledger"),
                format!(
                    "{:?} is not a ledger URL: use sqlite:PATH, postgres://… or off",
                    redact_url(other)
                ),
            );
            None
        }
    };
    if u.queue == 0 {
        cx.error(&path("queue"), "must be greater than 0");
    }
    if u.batch == 0 {
        cx.error(&path("batch"), "must be greater than 0");
    }
    if u.flush_interval.is_zero() {
        cx.error(&path("flush_interval"), "must be greater than 0s");
    }
    if u.responses_retention.is_zero() {
        cx.error(&path("responses_retention"), "must be greater than 0s");
    }
    let access_log = match u.access_log.trim() {
        "off" | "" => AccessLog::Off,
        "stdout" => AccessLog::Stdout,
        "stderr" => AccessLog::Stderr,
        file => AccessLog::File(dir.join(file)),
    };
    let mut moved_paths = Vec::new();
    if ledger.is_some() {
        let sqlite_file = relative_sqlite_file(ledger_url.trim()).map(|(file, _)| file);
        moved_paths.extend(sqlite_file.and_then(|f| moved(UsagePath::Ledger, f, &dir)));
        moved_paths.extend(moved(UsagePath::SpillDir, &u.spill_dir, &dir));
    }
    if let AccessLog::File(_) = access_log {
        moved_paths.extend(moved(UsagePath::AccessLog, u.access_log.trim(), &dir));
    }
    UsageSettings {
        ledger,
        queue: u.queue.max(1),
        batch: u.batch.max(1),
        flush_interval: u.flush_interval.max(Duration::from_millis(1)),
        spill_dir: dir.join(&u.spill_dir),
        access_log,
        responses_retention: u.responses_retention.max(Duration::from_secs(1)),
        moved: moved_paths,
    }
}

/// The built-in table (or `pricing.file`) with the config's entries on top.
pub(super) fn compile_pricing(raw: &RawConfig, file: &Path, cx: &mut Ctx) -> Arc<PriceTable> {
    let base = match &raw.pricing.file {
        None => PriceTable::builtin(),
        Some(f) => {
            // Relative to the config file, like any file a config refers to.
            let p = file.parent().unwrap_or(Path::new(".")).join(f);
            match std::fs::read_to_string(&p) {
                Ok(text) => match PriceTable::parse(&text) {
                    Ok(t) => Arc::new(t),
                    Err(e) => {
                        cx.error(&[key("pricing"), key("file")], format!("{}: {e}", p.display()));
                        PriceTable::builtin()
                    }
                },
                Err(e) => {
                    cx.error(
                        &[key("pricing"), key("file")],
                        format!("cannot read {}: {e}", p.display()),
                    );
                    PriceTable::builtin()
                }
            }
        }
    };
    if raw.pricing.models.is_empty() {
        return base;
    }
    match base.with_overrides(&raw.pricing.models) {
        Ok(t) => Arc::new(t),
        Err(e) => {
            cx.error(&[key("pricing"), key("models")], e);
            base
        }
    }
}

pub(super) fn compile_admin_token(raw: &RawConfig, env: &Env, cx: &mut Ctx) -> Option<Secret> {
    let t = raw.admin.token.as_deref()?;
    match expand_with(t, env.var) {
        Ok(e) if e.missing.is_empty() && !e.value.is_empty() => Some(Secret::new(e.value)),
        Ok(e) => {
            if !e.missing.is_empty() {
                cx.warnings.push(format!(
                    "admin.token: {} not set; the /admin API is disabled",
                    crate::config::env::describe(&e.missing)
                ));
            }
            None
        }
        Err(msg) => {
            cx.error(&[key("admin"), key("token")], msg);
            None
        }
    }
}

pub(super) fn compile_tracing(raw: &RawConfig, env: &Env, cx: &mut Ctx) -> Option<TracingSettings> {
    let t = &raw.tracing;
    if !(0.0..=1.0).contains(&t.sample) {
        cx.error(&[key("tracing"), key("sample")], "must be between 0.0 and 1.0");
    }
    let endpoint = t.otlp_endpoint.as_deref()?;
    let ep_path = [key("tracing"), key("otlp_endpoint")];
    match url::Url::parse(endpoint) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        _ => {
            cx.error(
                &ep_path,
                "must be an http:// or https:// URL (e.g. http://127.0.0.1:4318/v1/traces)",
            );
            return None;
        }
    }
    let mut headers = Vec::new();
    for (h, v) in &t.headers {
        let hp = [key("tracing"), key("headers"), key(h)];
        if http::HeaderName::try_from(h.as_str()).is_err() {
            cx.error(&hp, "not a valid header name");
            continue;
        }
        match expand_with(v, env.var) {
            Ok(e) if e.missing.is_empty() => headers.push((h.clone(), Secret::new(e.value))),
            Ok(e) => cx.error(&hp, e.missing_message()),
            Err(msg) => cx.error(&hp, msg),
        }
    }
    Some(TracingSettings {
        endpoint: endpoint.to_string(),
        headers,
        service_name: t.service_name.clone(),
        sample: t.sample.clamp(0.0, 1.0),
    })
}

/// A URL with its password replaced, for error messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// `auth` and the config-defined `keys`: each key's secret comes from the environment; a key
/// whose variable is unset is left out with a warning (like a provider's).
pub(super) fn compile_auth(raw: &RawConfig, env: &Env, cx: &mut Ctx) -> AuthSettings {
    let mut keys = Vec::with_capacity(raw.keys.len());
    let mut ids: Vec<&str> = Vec::new();
    for (i, k) in raw.keys.iter().enumerate() {
        let path = |f: &str| [key("keys"), super::Seg::Index(i), key(f)];
        let id = k.id();
        if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            cx.error(&path("id"), "needs 1 to 64 letters, digits, '-' or '_'");
            continue;
        }
        if ids.contains(&id) {
            cx.error(&path("id"), format!("duplicate key id {id:?}"));
            continue;
        }
        ids.push(id);
        if !k.key.contains("${") {
            cx.error(
                &path("key"),
                "a key's secret comes from the environment (`${VAR}`), never the file",
            );
            continue;
        }
        let secret = match expand_with(&k.key, env.var) {
            Ok(e) if e.missing.is_empty() && !e.value.is_empty() => e.value,
            Ok(e) => {
                cx.warnings.push(format!(
                    "key {id:?} is left out: {} not set",
                    crate::config::env::describe(&e.missing)
                ));
                continue;
            }
            Err(msg) => {
                cx.error(&path("key"), msg);
                continue;
            }
        };
        if let Some(at) = &k.spec.expires_at {
            if let Err(e) = crate::time::parse_time(at) {
                cx.error(&path("expires_at"), e);
            }
        }
        keys.push((k.spec.clone(), Secret::new(secret)));
    }
    if raw.auth.key_sync.is_zero() {
        cx.error(&[key("auth"), key("key_sync")], "must be greater than 0s");
    }
    AuthSettings {
        required: raw.auth.required,
        anonymous_keys: compile_anonymous_keys(raw, cx),
        key_sync: raw.auth.key_sync.max(Duration::from_millis(10)),
        keys,
    }
}

/// The placeholder served anonymously when the file names none: the README's SDK example sends it.
const DEFAULT_ANONYMOUS_KEY: &str = "unused";

/// `auth.anonymous_keys`: the placeholders a client may send instead of a key when keys are not
/// required (`["unused"]` unless the file lists its own). With `required: true` a placeholder is
/// just an unknown key, so a non-empty list there would do nothing: an error.
fn compile_anonymous_keys(raw: &RawConfig, cx: &mut Ctx) -> Vec<String> {
    let path = [key("auth"), key("anonymous_keys")];
    match &raw.auth.anonymous_keys {
        None if raw.auth.required => Vec::new(),
        None => vec![DEFAULT_ANONYMOUS_KEY.to_string()],
        Some(list) if raw.auth.required => {
            if !list.is_empty() {
                cx.error(
                    &path,
                    "has no effect with auth.required: true (every request needs a known key); remove it",
                );
            }
            Vec::new()
        }
        Some(list) => {
            for (i, k) in list.iter().enumerate() {
                let at = [key("auth"), key("anonymous_keys"), super::Seg::Index(i)];
                if k.is_empty() || !k.bytes().all(|b| b.is_ascii_graphic()) {
                    // Clients' keys are compared as sent, without surrounding spaces.
                    cx.error(&at, "needs 1 or more visible ASCII characters, without spaces");
                } else if k.contains("${") {
                    cx.error(&at, "a placeholder is not a secret: write it literally");
                }
            }
            list.clone()
        }
    }
}

/// A `limits:` value (null = none) as `Limits`, or an error at `path`.
pub(super) fn parse_limits(v: &serde_json::Value, path: &[super::Seg], cx: &mut Ctx) -> Option<Arc<Limits>> {
    if v.is_null() {
        return None;
    }
    match serde_json::from_value::<Limits>(v.clone()) {
        Ok(l) => match l.validate() {
            Ok(()) => Some(Arc::new(l)),
            Err(e) => {
                cx.error(path, e);
                None
            }
        },
        Err(e) => {
            cx.error(path, e.to_string());
            None
        }
    }
}

/// Teams, per-user limits, tiers, the completion allowance.
pub(super) fn compile_limits(raw: &RawConfig, file: &Path, env: &Env, cx: &mut Ctx) -> LimitSettings {
    for (i, k) in raw.keys.iter().enumerate() {
        parse_limits(&k.spec.limits, &[key("keys"), super::Seg::Index(i), key("limits")], cx);
    }
    let mut teams = std::collections::HashMap::new();
    for (name, t) in &raw.teams {
        if let Some(l) = parse_limits(&t.limits, &[key("teams"), key(name), key("limits")], cx) {
            teams.insert(name.clone(), l);
        }
    }
    let per_user = parse_limits(&raw.limits.per_user, &[key("limits"), key("per_user")], cx);
    let per_ip = parse_limits(&raw.limits.per_ip, &[key("limits"), key("per_ip")], cx);
    let mut tiers = std::collections::HashMap::new();
    for (tier, share) in &raw.limits.tiers {
        if !(0.0..=1.0).contains(share) {
            cx.error(
                &[key("limits"), key("tiers"), key(tier)],
                "a tier's share of a provider's capacity is between 0.0 and 1.0",
            );
        }
        tiers.insert(tier.clone(), share.clamp(0.0, 1.0));
    }
    LimitSettings {
        teams,
        per_user,
        per_ip,
        tiers,
        default_completion_tokens: raw.limits.default_completion_tokens,
        redis: compile_backend(raw, file, env, cx),
    }
}

/// The connection settings every `redis:` section has, checked (errors name `at`'s `url`,
/// `timeout` and `prefix`): the URL with its variables expanded.
pub(super) struct RedisConnection<'a> {
    pub url: &'a str,
    pub ca_file: Option<&'a str>,
    pub timeout: Duration,
    pub prefix: &'a str,
}

/// The connection settings every `redis:` section has, checked (errors name `at`'s `url`,
/// `ca_file`, `timeout` and `prefix`): the URL with its variables expanded, and the CA file's
/// content.
pub(super) fn redis_connection(
    c: RedisConnection,
    at: &[super::Seg],
    file: &Path,
    env: &Env,
    cx: &mut Ctx,
) -> Option<(Secret, Option<Vec<u8>>)> {
    let RedisConnection {
        url,
        ca_file,
        timeout,
        prefix,
    } = c;
    let path = |f: &str| {
        let mut p = at.to_vec();
        p.push(key(f));
        p
    };
    let url = expand_required(url, env, &path("url"), cx)?;
    if let Err(e) = redis::Client::open(url.as_str()) {
        cx.error(
            &path("url"),
            format!(
                "{:?} is not a Redis URL ({e}): use redis://host:port/db or rediss:// (TLS)",
                redact_url(&url)
            ),
        );
        return None;
    }
    let ca = match ca_file {
        None => None,
        Some(_) if !url.starts_with("rediss://") => {
            cx.error(&path("ca_file"), "needs a rediss:// URL (TLS)");
            return None;
        }
        Some(f) => {
            let p = config_dir(file).join(f);
            let pem = (env.var)(&format!("file:{}", p.display()));
            let checked = match &pem {
                None => Err("missing, unreadable, empty or over 1 MiB".to_string()),
                Some(pem) => crate::redis_client::check_ca(pem.as_bytes()),
            };
            if let Err(e) = checked {
                cx.error(&path("ca_file"), format!("{}: {e}", p.display()));
                return None;
            }
            pem.map(String::into_bytes)
        }
    };
    if timeout.is_zero() {
        cx.error(&path("timeout"), "must be greater than 0s");
    }
    if prefix.is_empty() || prefix.contains(char::is_whitespace) {
        cx.error(&path("prefix"), "must be a non-empty word without spaces");
    }
    Some((Secret::new(url), ca))
}

/// `limits.backend` and `limits.redis`.
fn compile_backend(raw: &RawConfig, file: &Path, env: &Env, cx: &mut Ctx) -> Option<crate::limits::cluster::Settings> {
    use crate::config::raw::RawBackend;
    let l = &raw.limits;
    match (l.backend, &l.redis) {
        (RawBackend::Local, _) => None,
        (RawBackend::Redis, None) => {
            cx.error(
                &[key("limits"), key("backend")],
                "backend: redis needs a `limits.redis` section with the server's `url`",
            );
            None
        }
        (RawBackend::Redis, Some(r)) => {
            let at = [key("limits"), key("redis")];
            let c = RedisConnection {
                url: &r.url,
                ca_file: r.ca_file.as_deref(),
                timeout: r.timeout,
                prefix: &r.prefix,
            };
            let (url, ca) = redis_connection(c, &at, file, env, cx)?;
            Some(crate::limits::cluster::Settings {
                url,
                ca,
                prefix: r.prefix.clone(),
                timeout: r.timeout.max(Duration::from_millis(1)),
                on_failure: r.on_failure,
            })
        }
    }
}
