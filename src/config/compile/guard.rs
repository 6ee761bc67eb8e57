//! The `guardrails:` section and the routes' guardrail policies: the detector (built-in kinds,
//! custom `entities`, `restricted` patterns, the analyzer's kinds), the analyzer's address, and
//! each policy resolved against the detector's catalog (an unknown kind names its key).

use std::sync::Arc;

use super::{key, Ctx, Env, Seg};
use crate::config::raw::RawConfig;
use crate::config::snapshot::{GuardSettings, Peer};
use crate::guard::detect::{CustomEntity, CustomPattern, Detector, Validator};
use crate::guard::entity::Class;
use crate::guard::policy::{Policy, RawClass, RawEntity, RawPolicy, RawValidator};
use crate::guard::{presidio, Guard};

/// The guardrails of the config, or `None` when neither the section nor any route asks for one.
pub(super) fn compile_guard(raw: &RawConfig, env: &Env, cx: &mut Ctx) -> Option<GuardSettings> {
    let g = &raw.guardrails;
    let used = g.defaults.is_some() || raw.routes.iter().any(|r| r.guardrails.is_some());
    if !used && g.entities.is_empty() && g.restricted.is_empty() && g.presidio.is_none() {
        return None;
    }
    let mut custom = Vec::new();
    for (section, list, class) in [
        ("entities", &g.entities, None),
        ("restricted", &g.restricted, Some(Class::Restricted)),
    ] {
        for (i, e) in list.iter().enumerate() {
            let path = [key("guardrails"), key(section), Seg::Index(i)];
            if let Some(c) = entity(e, class, &path, cx) {
                custom.push(c);
            }
        }
    }
    let mut peer = None;
    let presidio = g.presidio.as_ref().and_then(|p| {
        let path = |f: &str| [key("guardrails"), key("presidio"), key(f)];
        let url = match url::Url::parse(&p.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => u,
            _ => {
                cx.error(&path("url"), format!("{:?} is not an http(s) URL", p.url));
                return None;
            }
        };
        if p.timeout.is_zero() {
            cx.error(&path("timeout"), "must be more than 0");
        }
        if p.entities.is_empty() {
            cx.error(&path("entities"), "needs at least one entity type");
        }
        let host = url
            .host_str()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let tls = url.scheme() == "https";
        let port = url.port_or_known_default().unwrap_or(if tls { 443 } else { 80 });
        match (env.resolve)(host, port) {
            Ok(addr) => {
                peer = Some(Peer {
                    addr,
                    tls,
                    sni: host.to_string(),
                    connect_timeout: p.timeout,
                    idle_timeout: std::time::Duration::from_secs(60),
                    built: Default::default(),
                })
            }
            Err(e) => cx.error(&path("url"), format!("cannot resolve {host}: {e}")),
        }
        Some(presidio::Settings {
            host: match url.port() {
                Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
                None => url.host_str().unwrap_or_default().to_string(),
            },
            path: format!("{}/analyze", url.path().trim_end_matches('/')),
            timeout: p.timeout,
            on_failure: p.on_failure,
            entities: p.entities.clone(),
            min_score: p.min_score,
            language: p.language.clone(),
        })
    });
    let external: Vec<&str> = presidio
        .iter()
        .flat_map(|p| p.entities.iter().map(String::as_str))
        .collect();
    let detector = match Detector::new(&custom, &external) {
        Ok(d) => d,
        Err(e) => {
            cx.error(&[key("guardrails")], e.to_string());
            return None;
        }
    };
    let guard = Guard {
        detector,
        scorer: crate::guard::inject::Scorer::shared(),
        presidio,
    };
    let defaults = g.defaults.clone().unwrap_or_default();
    let has_presidio = guard.presidio.is_some();
    let resolve =
        |raw: &RawPolicy, path: &[Seg], cx: &mut Ctx| match Policy::resolve(raw, guard.catalog(), has_presidio) {
            Ok(p) => Some(Arc::new(p)),
            Err(errors) => {
                for e in errors {
                    let mut at = path.to_vec();
                    at.extend(e.key.iter().map(|k| key(k)));
                    cx.error(&at, e.message);
                }
                None
            }
        };
    let default = g
        .defaults
        .as_ref()
        .and_then(|d| resolve(d, &[key("guardrails"), key("defaults")], cx))
        .filter(|p| p.checks_input() || p.checks_output());
    let routes = raw
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let path = [key("routes"), Seg::Index(i), key("guardrails")];
            r.guardrails
                .as_ref()
                .and_then(|p| resolve(&p.over(&defaults), &path, cx))
        })
        .collect();
    Some(GuardSettings {
        guard: Arc::new(guard),
        presidio_peer: peer,
        default,
        routes,
    })
}

fn entity(e: &RawEntity, restricted: Option<Class>, path: &[Seg], cx: &mut Ctx) -> Option<CustomEntity> {
    let at = |f: &str| {
        let mut p = path.to_vec();
        p.push(key(f));
        p
    };
    let class = restricted.unwrap_or(match e.class {
        Some(RawClass::Secret) => Class::Secret,
        Some(RawClass::Pii) | None => Class::Pii,
    });
    if restricted.is_some() && e.class.is_some() {
        cx.error(
            &at("class"),
            "a restricted pattern has no class (it is checked on output)",
        );
    }
    let pattern = match (&e.regex, &e.words) {
        (Some(r), None) => CustomPattern::Regex {
            pattern: r.clone(),
            validator: match e.validator {
                None | Some(RawValidator::None) => Validator::None,
                Some(RawValidator::Luhn) => Validator::Luhn,
                Some(RawValidator::Mod97) => Validator::Mod97,
            },
        },
        (None, Some(w)) => {
            if e.validator.is_some() {
                cx.error(&at("validator"), "a word list has no validator (only a regex does)");
            }
            CustomPattern::Words(w.clone())
        }
        _ => {
            cx.error(path, "needs exactly one of `regex` or `words`");
            return None;
        }
    };
    Some(CustomEntity {
        name: e.name.clone(),
        class,
        pattern,
    })
}
