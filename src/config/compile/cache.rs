//! The `cache:` section and the routes' cache policies, resolved against the section's defaults
//! (a bad pattern or value names its key).

use std::path::Path;
use std::sync::Arc;

use regex::Regex;

use super::usage::{config_dir, expand_required, redis_connection, RedisConnection};
use super::{key, Ctx, Env, Seg};
use crate::cache::policy::{Mode, Partition, Policy, RawPolicy, Settings};
use crate::config::raw::RawConfig;

/// The section's settings and each route's policy (by route index).
pub(super) fn compile_cache(
    raw: &RawConfig,
    file: &std::path::Path,
    env: &Env,
    cx: &mut Ctx,
) -> (Settings, Vec<Option<Arc<Policy>>>) {
    let c = &raw.cache;
    let path = |f: &str| vec![key("cache"), key(f)];
    if c.max_bytes == 0 {
        cx.error(&path("max_bytes"), "must be more than 0");
    }
    if c.max_entry_bytes == 0 || c.max_entry_bytes as u64 > c.max_bytes {
        cx.error(&path("max_entry_bytes"), "must be more than 0 and at most max_bytes");
    }
    if c.ttl.is_zero() {
        cx.error(&path("ttl"), "must be more than 0");
    }
    let shared = patterns(&c.volatile, &path("volatile"), cx);
    let semantic = c.semantic.as_ref().and_then(|s| semantic(raw, s, file, env, cx));
    let routes = raw
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let p = r.cache.as_ref()?;
            let at = vec![key("routes"), Seg::Index(i), key("cache")];
            Some(Arc::new(policy(p, c.ttl, &shared, semantic.is_some(), &at, cx)))
        })
        .collect();
    let settings = Settings {
        max_bytes: c.max_bytes,
        max_entry_bytes: c.max_entry_bytes,
        wait: c.wait,
        redis: c.redis.as_ref().and_then(|r| redis(r, file, env, cx)),
        semantic,
    };
    (settings, routes)
}

fn redis(
    r: &crate::cache::policy::RawRedis,
    file: &Path,
    env: &Env,
    cx: &mut Ctx,
) -> Option<crate::cache::shared::Settings> {
    let at = [key("cache"), key("redis")];
    let c = RedisConnection {
        url: &r.url,
        ca_file: r.ca_file.as_deref(),
        timeout: r.timeout,
        prefix: &r.prefix,
    };
    let (url, ca) = redis_connection(c, &at, file, env, cx)?;
    Some(crate::cache::shared::Settings {
        url,
        ca,
        prefix: r.prefix.clone(),
        timeout: r.timeout,
    })
}

fn policy(
    p: &RawPolicy,
    default_ttl: std::time::Duration,
    shared: &[Regex],
    have_model: bool,
    at: &[Seg],
    cx: &mut Ctx,
) -> Policy {
    let path = |f: &str| {
        let mut v = at.to_vec();
        v.push(key(f));
        v
    };
    if p.mode == Mode::Semantic && !have_model {
        cx.error(
            &path("mode"),
            "semantic needs the cache.semantic section (its embedding model: scripts/fetch-model.sh fetches one)",
        );
    }
    let threshold = p.threshold.unwrap_or(crate::cache::semantic::DEFAULT_THRESHOLD);
    if p.threshold.is_some() && p.mode != Mode::Semantic {
        cx.error(&path("threshold"), "applies to mode: semantic only");
    }
    if !(threshold > 0.0 && threshold <= 1.0) {
        cx.error(&path("threshold"), "must be more than 0 and at most 1");
    }
    let ttl = p.ttl.unwrap_or(default_ttl);
    if ttl.is_zero() {
        cx.error(&path("ttl"), "must be more than 0");
    }
    let max_temperature = p.max_temperature.unwrap_or(0.0);
    if !(0.0..=2.0).contains(&max_temperature) {
        cx.error(&path("max_temperature"), "must be between 0 and 2");
    }
    let mut volatile = shared.to_vec();
    volatile.extend(patterns(&p.volatile, &path("volatile"), cx));
    Policy {
        mode: p.mode,
        ttl,
        max_temperature,
        partition: p.partition.unwrap_or(Partition::Team),
        volatile,
        threshold,
        stale: p.stale.unwrap_or_default(),
    }
}

fn semantic(
    raw: &RawConfig,
    s: &crate::cache::policy::RawSemantic,
    file: &std::path::Path,
    env: &Env,
    cx: &mut Ctx,
) -> Option<crate::cache::policy::SemanticSettings> {
    use crate::cache::policy::EmbeddingSource;
    let path = |f: &str| [key("cache"), key("semantic"), key(f)];
    let source = match (&s.model, &s.embeddings) {
        (Some(model), None) => {
            let dir = config_dir(file).join(model);
            let missing: Vec<&str> = ["config.json", "model.safetensors", "tokenizer.json"]
                .into_iter()
                .filter(|f| !dir.join(f).is_file())
                .collect();
            if !missing.is_empty() {
                cx.error(
                    &path("model"),
                    format!(
                        "{} lacks {} (scripts/fetch-model.sh DIR fetches all-MiniLM-L6-v2 there)",
                        dir.display(),
                        missing.join(", ")
                    ),
                );
                return None;
            }
            EmbeddingSource::Local(dir)
        }
        (None, Some(e)) => {
            let at = [key("cache"), key("semantic"), key("embeddings"), key("model")];
            if !raw.models.contains_key(&e.model) {
                cx.error(&at, format!("unknown model alias {:?}", e.model));
            }
            let key_path = [key("cache"), key("semantic"), key("embeddings"), key("key")];
            let k = match &e.key {
                Some(k) => Some(crate::secret::Secret::new(expand_required(k, env, &key_path, cx)?)),
                None => None,
            };
            EmbeddingSource::Alias {
                model: e.model.clone(),
                key: k,
            }
        }
        _ => {
            cx.error(
                &path("model"),
                "set one of model (a local model's directory) and embeddings (an alias this gateway serves)",
            );
            return None;
        }
    };
    if s.timeout.is_zero() {
        cx.error(&path("timeout"), "must be more than 0");
    }
    if s.max_entries == 0 {
        cx.error(&path("max_entries"), "must be more than 0");
    }
    Some(crate::cache::policy::SemanticSettings {
        source,
        timeout: s.timeout,
        max_entries: s.max_entries,
    })
}

fn patterns(list: &[String], at: &[Seg], cx: &mut Ctx) -> Vec<Regex> {
    let mut out = Vec::with_capacity(list.len());
    for (i, source) in list.iter().enumerate() {
        let mut path = at.to_vec();
        path.push(Seg::Index(i));
        match Regex::new(source) {
            Ok(re) if re.is_match("") => cx.error(&path, "matches the empty string"),
            Ok(re) => out.push(re),
            Err(e) => cx.error(&path, format!("not a valid regex: {e}")),
        }
    }
    out
}
