//! The reload policy: which changes a reload may apply on its own, and which need an operator's
//! explicit word (SIGUSR2).
//!
//! A file watcher cannot tell a finished edit from a file cut short: an editor or a
//! config-management tool writing in place leaves, for a moment, a prefix of the file, which is
//! often valid YAML that simply lacks its last lines. A crashed write leaves such a prefix for
//! good. Loading it would silently turn off whatever those lines held (authentication, keys,
//! limits, guardrails, prices). So a reload is refused when it would weaken security or spend
//! control:
//! - remove a whole top-level section the running config has;
//! - turn `auth.required` off, or remove `admin.token` (and with it the admin API, key
//!   revocation included);
//! - remove config-defined virtual keys;
//! - remove any setting the running document has under the sections that hold access control
//!   and spend (`GUARDED_SECTIONS`): a key's `limits`, `team`, `models` or `expires_at`, a team, a
//!   route's `guardrails`, a budget, a price, `limits.per_user`, … (a section emptied or set to
//!   null removes everything it held). Changing a value or adding one is not guarded.
//!
//! SIGHUP (`systemctl reload`) is guarded like a file change: it is also what logrotate sends to
//! reopen the access log, so it says nothing about whether the file's content is meant; a file a
//! crashed write left cut short must not become the live config at the next nightly rotation.
//! SIGUSR2 is the operator's explicit word: it applies such changes, with a warning naming each.
//!
//! The guarded settings are compared as key paths of the YAML documents (`DocPaths`, computed once
//! per load and kept with the snapshot), so the rule needs no knowledge of each field and covers
//! fields added later; it never runs on the request path.

use std::fmt;

use super::doc_paths::{render, Step};
use super::snapshot::Snapshot;

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadTrigger {
    /// The watcher saw the file's content change (and settle).
    FileChange,
    /// SIGHUP (`systemctl reload`, logrotate's `postrotate`): load the file, under the guard.
    Signal,
    /// SIGUSR2: the operator confirms the file, weakening changes included.
    Confirmed,
    /// A provider's host name resolves differently (`config::dns`): the running config's own
    /// text again, under the guard.
    Resolve,
}

impl ReloadTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadTrigger::FileChange => "file change",
            ReloadTrigger::Signal => "SIGHUP",
            ReloadTrigger::Confirmed => "SIGUSR2",
            ReloadTrigger::Resolve => "DNS change",
        }
    }

    /// Whether this trigger applies guarded changes (with a warning) rather than refusing them.
    pub fn applies_guarded(self) -> bool {
        match self {
            ReloadTrigger::FileChange | ReloadTrigger::Signal | ReloadTrigger::Resolve => false,
            ReloadTrigger::Confirmed => true,
        }
    }
}

pub use super::doc_paths::GUARDED_SECTIONS;

/// Most removed settings named in one refusal message; the rest are counted.
const MAX_NAMED: usize = 10;

/// A change a reload does not apply unless confirmed with SIGUSR2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardedChange {
    /// Top-level sections the running config has and the new file lacks.
    SectionsRemoved(Vec<String>),
    /// `auth.required` from true to false.
    AuthDisabled,
    /// `admin.token` set before, unset (or its variable unset) now.
    AdminTokenRemoved,
    /// Ids of config-defined virtual keys that are gone.
    KeysRemoved(Vec<String>),
    /// Settings under `GUARDED_SECTIONS` that are gone (each the outermost one removed, as
    /// `keys[id=k2].limits`), other than those the variants above already name.
    SettingsRemoved(Vec<String>),
    /// Guardrail actions lowered (`routes[name=legal] EMAIL redact -> log`), by route and for
    /// requests no route's own policy covers (`defaults`).
    GuardrailsWeakened(Vec<String>),
    /// A route's cached answers shared more widely: the cache turned on where it was `off`, or
    /// the partition widened (`routes[name=x] cache partition key -> team`).
    CacheWidened(Vec<String>),
}

impl GuardedChange {
    /// The `reason` label of `tollgate_config_reload_refused_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            GuardedChange::SectionsRemoved(_) => "section_removed",
            GuardedChange::AuthDisabled => "auth_disabled",
            GuardedChange::AdminTokenRemoved => "admin_token_removed",
            GuardedChange::KeysRemoved(_) => "keys_removed",
            GuardedChange::SettingsRemoved(_) => "setting_removed",
            GuardedChange::GuardrailsWeakened(_) => "guardrails_weakened",
            GuardedChange::CacheWidened(_) => "cache_widened",
        }
    }
}

impl fmt::Display for GuardedChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[String]| {
            let mut s = v
                .iter()
                .take(MAX_NAMED)
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ");
            if v.len() > MAX_NAMED {
                s.push_str(&format!(" and {} more", v.len() - MAX_NAMED));
            }
            s
        };
        match self {
            GuardedChange::SectionsRemoved(s) => write!(f, "it removes the section(s) {}", list(s)),
            GuardedChange::AuthDisabled => write!(
                f,
                "it turns auth.required off (requests without a virtual key would be served)"
            ),
            GuardedChange::AdminTokenRemoved => write!(
                f,
                "it removes admin.token (the admin API, key revocation included, would be off)"
            ),
            GuardedChange::KeysRemoved(ids) => write!(f, "it removes the virtual key(s) {}", list(ids)),
            GuardedChange::SettingsRemoved(paths) => write!(f, "it removes {}", list(paths)),
            GuardedChange::GuardrailsWeakened(changes) => write!(f, "it weakens guardrails: {}", list(changes)),
            GuardedChange::CacheWidened(changes) => {
                write!(f, "it shares cached answers more widely: {}", list(changes))
            }
        }
    }
}

/// The guarded changes from `prev` to `next` (empty when there are none).
pub fn guarded_changes(prev: &Snapshot, next: &Snapshot) -> Vec<GuardedChange> {
    let mut out = Vec::new();
    // What the specific rules below name, so the generic one does not name it again.
    let mut named: Vec<Vec<Step>> = Vec::new();
    let lost: Vec<String> = prev
        .sections
        .iter()
        .filter(|s| !next.sections.contains(s))
        .cloned()
        .collect();
    named.extend(lost.iter().map(|s| vec![Step::Key(s.clone())]));
    if !lost.is_empty() {
        out.push(GuardedChange::SectionsRemoved(lost));
    }
    if prev.auth.required && !next.auth.required {
        named.push(vec![Step::Key("auth".into()), Step::Key("required".into())]);
        out.push(GuardedChange::AuthDisabled);
    }
    if prev.admin_token.is_some() && next.admin_token.is_none() {
        named.push(vec![Step::Key("admin".into()), Step::Key("token".into())]);
        out.push(GuardedChange::AdminTokenRemoved);
    }
    let ids = |s: &Snapshot| -> Vec<String> { s.auth.keys.iter().filter_map(|(k, _)| k.id.clone()).collect() };
    let kept = ids(next);
    let gone: Vec<String> = ids(prev).into_iter().filter(|id| !kept.contains(id)).collect();
    named.extend(
        gone.iter()
            .map(|id| vec![Step::Key("keys".into()), Step::Item(format!("id={id}"))]),
    );
    if !gone.is_empty() {
        out.push(GuardedChange::KeysRemoved(gone));
    }
    let settings: Vec<String> = prev
        .doc_paths
        .removed_in(&next.doc_paths)
        .into_iter()
        .filter(|p| !named.iter().any(|n| p.starts_with(n)))
        .map(|p| render(&p))
        .collect();
    let weakened = guardrails_weakened(prev, next, &settings);
    if !settings.is_empty() {
        out.push(GuardedChange::SettingsRemoved(settings));
    }
    if !weakened.is_empty() {
        out.push(GuardedChange::GuardrailsWeakened(weakened));
    }
    let widened = cache_widened(prev, next);
    if !widened.is_empty() {
        out.push(GuardedChange::CacheWidened(widened));
    }
    out
}

/// Each route kept by name whose cache shares answers more widely in `next`: turned on where it
/// was `off` (a sensitive route's answers would be stored and served), or partitioned more
/// widely (key, then team, then global). A route's cache policy removed is the removed-settings
/// rule's; a route without one before has none to widen.
fn cache_widened(prev: &Snapshot, next: &Snapshot) -> Vec<String> {
    use crate::cache::policy::{Mode, Partition};
    let rank = |p: Partition| match p {
        Partition::Key => 0,
        Partition::Team => 1,
        Partition::Global => 2,
    };
    let mut out = Vec::new();
    for r in &prev.routes {
        let (Some(before), Some(after)) = (
            r.cache.as_ref(),
            next.routes
                .iter()
                .find(|n| n.name == r.name)
                .and_then(|n| n.cache.as_ref()),
        ) else {
            continue;
        };
        if before.mode == Mode::Off && after.mode != Mode::Off {
            out.push(format!("routes[name={}] cache off -> on", r.name));
        } else if before.mode != Mode::Off && rank(after.partition) > rank(before.partition) {
            out.push(
                format!(
                    "routes[name={}] cache partition {:?} -> {:?}",
                    r.name, before.partition, after.partition
                )
                .to_lowercase(),
            );
        }
    }
    out
}

/// Each route's effective guardrail policy (its own, else the defaults), and the defaults, from
/// `prev` to `next`: the actions lowered. A route that is gone is the removed-settings rule's.
fn guardrails_weakened(prev: &Snapshot, next: &Snapshot, removed: &[String]) -> Vec<String> {
    let Some(pg) = &prev.guard else {
        return Vec::new();
    };
    let none = crate::guard::policy::Policy {
        actions: Vec::new(),
        output: Default::default(),
        injection: Default::default(),
        threshold: 1.0,
        presidio: false,
    };
    let ng = next.guard.as_ref();
    let empty = crate::guard::entity::Catalog::default();
    let next_catalog = ng.map_or(&empty, |g| g.guard.catalog());
    let effective = |s: &Snapshot, route: Option<&crate::routing::routes::Route>| {
        route
            .and_then(|r| r.guardrails.clone())
            .or_else(|| s.guard.as_ref().and_then(|g| g.default.clone()))
    };
    let mut out = Vec::new();
    // A policy whose settings were removed is named by that rule already.
    let section_lost =
        prev.sections.iter().any(|s| s == "guardrails") && !next.sections.iter().any(|s| s == "guardrails");
    let lost = |at: &str| section_lost || removed.iter().any(|p| p.starts_with(at));
    let mut compare = |label: String, before: Option<std::sync::Arc<crate::guard::policy::Policy>>, after| {
        let at = match label.as_str() {
            "defaults" => "guardrails.defaults".to_string(),
            route => format!("{route}.guardrails"),
        };
        let Some(before) = before.filter(|_| !lost(&at)) else {
            return;
        };
        let after: Option<std::sync::Arc<crate::guard::policy::Policy>> = after;
        let after = after.as_deref().unwrap_or(&none);
        for change in before.weakened_by(pg.guard.catalog(), after, next_catalog) {
            out.push(format!("{label} {change}"));
        }
    };
    compare("defaults".into(), effective(prev, None), effective(next, None));
    for r in &prev.routes {
        if let Some(n) = next.routes.iter().find(|n| n.name == r.name) {
            compare(
                format!("routes[name={}]", r.name),
                effective(prev, Some(r)),
                effective(next, Some(n)),
            );
        }
    }
    out
}

/// Why a reload left the running config in place.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file is not a valid config.
    #[error("{0}")]
    Invalid(#[from] super::ConfigErrors),
    /// The file is valid, but its trigger may not make these changes (only SIGUSR2 may).
    #[error("refused: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Refused(Vec<GuardedChange>),
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::path::Path;

    use super::*;
    use crate::config::{load_str, Env};

    fn load(doc: &str) -> Snapshot {
        let var = |name: &str| (name == "K1" || name == "K2" || name == "ADMIN").then(|| format!("v-{name}"));
        let resolve = |_: &str, port: u16| Ok::<_, String>(SocketAddr::from(([127, 0, 0, 1], port)));
        let env = Env {
            var: &var,
            resolve: &resolve,
        };
        load_str(Path::new("t.yaml"), doc, &env).unwrap()
    }

    const FULL: &str = "\
server: { reload_poll: 1s }
admin: { token: \"${ADMIN}\" }
auth: { required: true }
keys:
  - { id: k1, key: \"${K1}\" }
  - { id: k2, key: \"${K2}\" }
";

    /// A config with something in every guarded section, its last key's settings in block style
    /// (so that a cut can fall between them).
    const RICH: &str = "\
providers:
  p: { kind: openai, base_url: http://p, api_keys: [k] }
models:
  m: { targets: [ { provider: p, model: x } ] }
  n: { targets: [ { provider: p, model: y } ], fallbacks: [m] }
routes:
  - name: private
    match: { team: legal }
    guardrails: { pii: redact, injection: block }
  - name: batch
    match: { task: batch }
limits:
  per_user: { rpm: 10 }
teams:
  backend:
    limits: { rpm: 100 }
  legal:
    limits: { tpm: 1000 }
auth: { required: true }
keys:
  - { id: k1, key: \"${K1}\" }
  - id: k2
    key: \"${K2}\"
    team: backend
    models: [m, n]
    expires_at: \"2100-01-01T00:00:00Z\"
    limits:
      rpm: 5
      budgets: [ { usd: 1, period: 1d }, { usd: 10, period: month } ]
";

    fn settings(prev: &str, next: &str) -> Vec<GuardedChange> {
        guarded_changes(&load(prev), &load(next))
    }

    fn removed(paths: &[&str]) -> Vec<GuardedChange> {
        vec![GuardedChange::SettingsRemoved(
            paths.iter().map(|p| p.to_string()).collect(),
        )]
    }

    #[test]
    fn a_file_cut_before_auth_is_guarded_on_every_count() {
        let prev = load(FULL);
        let cut = &FULL[..FULL.find("auth:").unwrap()];
        let changes = guarded_changes(&prev, &load(cut));
        assert_eq!(
            changes,
            vec![
                GuardedChange::SectionsRemoved(vec!["auth".into(), "keys".into()]),
                GuardedChange::AuthDisabled,
                GuardedChange::KeysRemoved(vec!["k1".into(), "k2".into()]),
            ]
        );
    }

    #[test]
    fn each_weakening_is_named_and_ordinary_edits_are_not() {
        let prev = load(FULL);
        let off = load(&FULL.replace("required: true", "required: false"));
        assert_eq!(guarded_changes(&prev, &off), vec![GuardedChange::AuthDisabled]);
        let no_admin = load(&FULL.replace("\"${ADMIN}\"", "\"${UNSET:-}\""));
        assert_eq!(
            guarded_changes(&prev, &no_admin),
            vec![GuardedChange::AdminTokenRemoved]
        );
        let one_key = load(&FULL.replace("  - { id: k2, key: \"${K2}\" }\n", ""));
        assert_eq!(
            guarded_changes(&prev, &one_key),
            vec![GuardedChange::KeysRemoved(vec!["k2".into()])]
        );
        // Adding, tightening and changing values is not guarded.
        let more = load(&format!("{FULL}routes: []\n").replace("reload_poll: 1s", "reload_poll: 2s"));
        assert!(guarded_changes(&prev, &more).is_empty());
        assert!(guarded_changes(&off, &prev).is_empty());
    }

    #[test]
    fn a_file_cut_inside_the_last_key_loses_its_settings_and_is_guarded() {
        // Each cut is a valid config that keeps every section and every key id.
        let cut_at = |line: &str| RICH[..RICH.find(line).unwrap()].to_string();
        assert_eq!(
            settings(RICH, &cut_at("    limits:\n      rpm")),
            removed(&["keys[id=k2].limits"])
        );
        assert_eq!(
            settings(RICH, &cut_at("      budgets:")),
            removed(&["keys[id=k2].limits.budgets"])
        );
        assert_eq!(
            settings(RICH, &cut_at("    expires_at:")),
            removed(&["keys[id=k2].expires_at", "keys[id=k2].limits"])
        );
        assert_eq!(
            settings(RICH, &cut_at("    team: backend")),
            removed(&[
                "keys[id=k2].expires_at",
                "keys[id=k2].limits",
                "keys[id=k2].models",
                "keys[id=k2].team"
            ])
        );
        // Cut after `limits:`: the key is there with no value, which is no limits at all.
        let bare = format!("{}    limits:\n", cut_at("    limits:\n      rpm"));
        assert_eq!(settings(RICH, &bare), removed(&["keys[id=k2].limits"]));
        // One budget of two, one model of two: items without an id are named by their index.
        let one_budget = RICH.replace(", { usd: 10, period: month }", "");
        assert_eq!(settings(RICH, &one_budget), removed(&["keys[id=k2].limits.budgets[1]"]));
        let one_model = RICH.replace("models: [m, n]", "models: [m]");
        assert_eq!(settings(RICH, &one_model), removed(&["keys[id=k2].models[1]"]));
    }

    #[test]
    fn emptied_sections_and_lost_route_settings_are_guarded() {
        let teams = RICH[RICH.find("teams:").unwrap()..RICH.find("auth:").unwrap()].to_string();
        assert_eq!(
            settings(RICH, &RICH.replace(&teams, "teams: {}\n")),
            removed(&["teams.backend", "teams.legal"])
        );
        assert_eq!(settings(RICH, &RICH.replace(&teams, "teams:\n")), removed(&["teams"]));
        assert_eq!(
            settings(RICH, &RICH.replace("  per_user: { rpm: 10 }\n", "  per_user:\n")),
            removed(&["limits.per_user"])
        );
        let unguarded = RICH.replace("    guardrails: { pii: redact, injection: block }\n", "");
        assert_eq!(
            settings(RICH, &unguarded),
            removed(&["routes[name=private].guardrails"])
        );
        let one_route = RICH.replace("  - name: batch\n    match: { task: batch }\n", "");
        assert_eq!(settings(RICH, &one_route), removed(&["routes[name=batch]"]));
        // Emptying `keys` is named once, as the keys it removes.
        let keys = &RICH[RICH.find("\nkeys:").unwrap() + 1..];
        assert_eq!(
            settings(RICH, &RICH.replace(keys, "keys: []\n")),
            vec![GuardedChange::KeysRemoved(vec!["k1".into(), "k2".into()])]
        );
    }

    #[test]
    fn changed_added_and_reordered_settings_are_not_guarded() {
        const K1: &str = "  - { id: k1, key: \"${K1}\" }\n";
        const PRIVATE: &str =
            "  - name: private\n    match: { team: legal }\n    guardrails: { pii: redact, injection: block }\n";
        const BATCH: &str = "  - name: batch\n    match: { task: batch }\n";
        const LEGAL: &str = "  legal:\n    limits: { tpm: 1000 }\n";
        const N: &str = "  n: { targets: [ { provider: p, model: y } ], fallbacks: [m] }\n";
        let k3 = "  - { id: k3, key: \"${K1}\", team: legal, user: u, tier: pro, limits: { tpm: 9 } }\n";
        let edits = [
            // Values changed (a list reordered is its values changed; a guardrail made stricter:
            // lowering one is guarded, see below).
            RICH.replace("rpm: 5\n", "rpm: 50\n")
                .replace("pii: redact", "pii: block")
                .replace("{ team: legal }", "{ team: ops }")
                .replace("models: [m, n]", "models: [n, m]"),
            // A key added with more fields than the others, a field added to a key, a team added.
            format!("{RICH}{k3}")
                .replace(K1, "  - { id: k1, key: \"${K1}\", team: legal }\n")
                .replace("teams:\n", "teams:\n  ops: { limits: { rpm: 1 } }\n"),
            // Keys, routes and teams reordered.
            format!("{}{K1}", RICH.replace(K1, ""))
                .replace(&format!("{PRIVATE}{BATCH}"), &format!("{BATCH}{PRIVATE}"))
                .replace(LEGAL, "")
                .replace("teams:\n", &format!("teams:\n{LEGAL}")),
            // Outside the guarded sections: a fallback dropped, a model alias removed.
            RICH.replace(N, "  n: { targets: [ { provider: p, model: y } ] }\n"),
            RICH.replace(N, ""),
        ];
        for next in &edits {
            assert_ne!(next, RICH);
            assert_eq!(settings(RICH, next), vec![], "{next}");
        }
    }

    #[test]
    fn lowered_guardrail_actions_are_guarded_and_raised_ones_are_not() {
        let with = |route: &str, defaults: &str| {
            format!(
                "{}guardrails:\n  defaults: {defaults}\nroutes:\n  - name: legal\n    match: {{ team: legal }}\n    guardrails: {route}\n  - name: rest\n",
                RICH.split("routes:").next().unwrap()
            )
        };
        let before = with("{ pii: redact, injection: block }", "{ secrets: block }");
        let weaker = with("{ pii: log, injection: block }", "{ secrets: mask }");
        let stronger = with(
            "{ pii: block, injection: block, output: mask }",
            "{ secrets: block, pii: log }",
        );
        let changes = settings(&before, &weaker);
        assert_eq!(changes.len(), 1, "{changes:?}");
        let GuardedChange::GuardrailsWeakened(list) = &changes[0] else {
            panic!("{changes:?}")
        };
        assert!(
            list.contains(&"routes[name=legal] EMAIL redact -> log".to_string()),
            "{list:?}"
        );
        assert!(list.contains(&"defaults API_KEY block -> mask".to_string()), "{list:?}");
        // The route without its own policy follows the defaults.
        assert!(
            list.contains(&"routes[name=rest] API_KEY block -> mask".to_string()),
            "{list:?}"
        );
        assert_eq!(changes[0].reason(), "guardrails_weakened");
        assert!(settings(&before, &stronger).is_empty());
    }

    #[test]
    fn a_cache_turned_on_or_shared_more_widely_is_guarded() {
        let with = |legal: &str, rest: &str| {
            format!(
                "{}routes:\n  - name: legal\n    match: {{ team: legal }}\n    cache: {legal}\n  - name: rest\n    cache: {rest}\n",
                RICH.split("routes:").next().unwrap()
            )
        };
        let before = with("{ mode: off }", "{ partition: key }");
        let changes = settings(&before, &with("{ mode: exact }", "{ partition: global }"));
        assert_eq!(changes.len(), 1, "{changes:?}");
        let GuardedChange::CacheWidened(list) = &changes[0] else {
            panic!("{changes:?}")
        };
        assert_eq!(
            list,
            &vec![
                "routes[name=legal] cache off -> on".to_string(),
                "routes[name=rest] cache partition key -> global".to_string()
            ]
        );
        assert_eq!(changes[0].reason(), "cache_widened");
        // Narrowing, a new TTL, or turning a cache off is not.
        assert!(settings(&before, &with("{ mode: off, ttl: 5m }", "{ partition: key, ttl: 1m }")).is_empty());
        let wide = with("{ partition: global }", "{ partition: team }");
        assert!(settings(&wide, &with("{ mode: off, partition: global }", "{ partition: key }")).is_empty());
    }

    #[test]
    fn the_signals_differ_in_what_they_may_apply() {
        assert!(!ReloadTrigger::FileChange.applies_guarded());
        assert!(!ReloadTrigger::Signal.applies_guarded());
        assert!(ReloadTrigger::Confirmed.applies_guarded());
        assert_eq!(ReloadTrigger::Confirmed.as_str(), "SIGUSR2");
    }

    #[test]
    fn a_long_list_is_cut_in_the_message() {
        let many: Vec<String> = (0..25).map(|i| format!("teams.t{i}")).collect();
        let text = GuardedChange::SettingsRemoved(many).to_string();
        assert!(text.starts_with("it removes `teams.t0`, `teams.t1`"), "{text}");
        assert!(text.ends_with("and 15 more"), "{text}");
    }
}
