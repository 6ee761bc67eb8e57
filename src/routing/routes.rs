//! The `routes:` policy table: matched top-down, first match wins. A route matches on the
//! requested model (a glob), the `x-tollgate-task` header and the request's `metadata` values,
//! and can rewrite the model alias, pin a balancing strategy and restrict which models may be
//! requested. Matching does no allocation: every route is compiled at config load.
//!
//! Virtual key, team and tenant-tier conditions join the same table once requests carry an
//! identity (virtual keys).

use super::balance::Strategy;

/// A `*`-wildcard pattern (`gpt-4o*`, `*-mini`, `claude-*-sonnet`, `*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(Vec<String>);

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        Glob(pattern.split('*').map(str::to_string).collect())
    }

    pub fn matches(&self, s: &str) -> bool {
        let parts = &self.0;
        if parts.len() == 1 {
            return parts[0] == s;
        }
        let (first, last) = (&parts[0], &parts[parts.len() - 1]);
        if !s.starts_with(first.as_str()) || s.len() < first.len() + last.len() || !s.ends_with(last.as_str()) {
            return false;
        }
        let mut rest = &s[first.len()..s.len() - last.len()];
        for mid in &parts[1..parts.len() - 1] {
            match rest.find(mid.as_str()) {
                Some(i) => rest = &rest[i + mid.len()..],
                None => return false,
            }
        }
        true
    }
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub model: Option<Glob>,
    pub task: Option<String>,
    /// The virtual key's id, team and tenant tier (globs).
    pub key: Option<Glob>,
    pub team: Option<Glob>,
    pub tier: Option<Glob>,
    /// Every pair must equal the request's `metadata` value (as text).
    pub metadata: Vec<(String, String)>,
    /// Serve the request with this alias instead of the requested one.
    pub rewrite: Option<String>,
    pub strategy: Option<Strategy>,
    /// When non-empty, the requested model must match one of these.
    pub allowed: Vec<Glob>,
    /// Policies the cache and the guardrails apply to matching requests.
    pub cache: Option<std::sync::Arc<crate::cache::policy::Policy>>,
    /// A request one target's dialect cannot carry may be served by the next target (another
    /// dialect) instead of refused.
    pub fallback_on_unsupported: bool,
    pub guardrails: Option<std::sync::Arc<crate::guard::policy::Policy>>,
}

/// What a request offers to the table.
pub struct RouteInput<'a> {
    pub model: &'a str,
    pub task: Option<&'a str>,
    pub metadata: Option<&'a serde_json::Map<String, serde_json::Value>>,
    pub key: Option<&'a str>,
    pub team: Option<&'a str>,
    pub tier: Option<&'a str>,
}

impl Route {
    fn matches(&self, input: &RouteInput) -> bool {
        if let Some(t) = &self.task {
            if input.task != Some(t.as_str()) {
                return false;
            }
        }
        if let Some(g) = &self.model {
            if !g.matches(input.model) {
                return false;
            }
        }
        // A condition on who is asking fails when the request does not say.
        for (cond, value) in [
            (&self.key, input.key),
            (&self.team, input.team),
            (&self.tier, input.tier),
        ] {
            if let Some(g) = cond {
                if !value.is_some_and(|v| g.matches(v)) {
                    return false;
                }
            }
        }
        self.metadata
            .iter()
            .all(|(k, v)| match input.metadata.and_then(|m| m.get(k)) {
                Some(serde_json::Value::String(s)) => s == v,
                Some(serde_json::Value::Number(n)) => v.parse::<f64>().ok() == n.as_f64(),
                Some(serde_json::Value::Bool(b)) => v.parse::<bool>().ok() == Some(*b),
                Some(_) | None => false,
            })
    }

    pub fn allows(&self, model: &str) -> bool {
        self.allowed.is_empty() || self.allowed.iter().any(|g| g.matches(model))
    }
}

/// The first route that matches.
pub fn select<'r>(routes: &'r [Route], input: &RouteInput) -> Option<&'r Route> {
    routes.iter().find(|r| r.matches(input))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(Glob::new("gpt-4o*").matches("gpt-4o-mini"));
        assert!(Glob::new("gpt-4o*").matches("gpt-4o"));
        assert!(!Glob::new("gpt-4o*").matches("gpt-4"));
        assert!(Glob::new("*-mini").matches("gpt-4o-mini"));
        assert!(Glob::new("claude-*-sonnet").matches("claude-3-5-sonnet"));
        assert!(!Glob::new("claude-*-sonnet").matches("claude-sonnet"));
        assert!(Glob::new("*").matches("anything"));
        assert!(Glob::new("exact").matches("exact") && !Glob::new("exact").matches("exactly"));
        assert!(Glob::new("a*b*c").matches("abc") && Glob::new("a*b*c").matches("axxbyyc"));
        assert!(!Glob::new("a*b*c").matches("acb"));
    }

    fn route(name: &str, task: Option<&str>, model: Option<&str>, meta: &[(&str, &str)]) -> Route {
        Route {
            name: name.into(),
            model: model.map(Glob::new),
            task: task.map(str::to_string),
            key: None,
            team: None,
            tier: None,
            metadata: meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            rewrite: None,
            strategy: None,
            allowed: Vec::new(),
            cache: None,
            fallback_on_unsupported: false,
            guardrails: None,
        }
    }

    #[test]
    fn first_match_wins_on_every_dimension() {
        let routes = vec![
            route("search", Some("search"), None, &[("tier", "free")]),
            route("summaries", Some("summarize"), Some("gpt-*"), &[]),
            route("all-claude", None, Some("claude-*"), &[]),
            route("default", None, None, &[]),
        ];
        let meta: serde_json::Map<String, serde_json::Value> = serde_json::from_str(r#"{"tier":"free"}"#).unwrap();
        let pick = |model, task, m| {
            select(
                &routes,
                &RouteInput {
                    model,
                    task,
                    metadata: m,
                    key: None,
                    team: None,
                    tier: None,
                },
            )
            .map(|r| r.name.as_str())
        };
        assert_eq!(pick("gpt-4o", Some("search"), Some(&meta)), Some("search"));
        assert_eq!(pick("gpt-4o", Some("search"), None), Some("default"));
        assert_eq!(pick("gpt-4o", Some("summarize"), None), Some("summaries"));
        assert_eq!(pick("claude-sonnet", Some("summarize"), None), Some("all-claude"));
        assert_eq!(pick("llama", None, None), Some("default"));
        assert_eq!(
            select(
                &routes[..3],
                &RouteInput {
                    model: "llama",
                    task: None,
                    metadata: None,
                    key: None,
                    team: None,
                    tier: None,
                }
            )
            .map(|r| &r.name),
            None
        );
    }

    #[test]
    fn who_conditions_match_globs_and_fail_when_unknown() {
        let mut paid = route("paid", None, None, &[]);
        paid.tier = Some(Glob::new("pro*"));
        paid.team = Some(Glob::new("growth"));
        let mut by_key = route("key", None, None, &[]);
        by_key.key = Some(Glob::new("key_batch_*"));
        let routes = vec![paid, by_key, route("default", None, None, &[])];
        let pick = |key, team, tier| {
            let input = RouteInput {
                model: "m",
                task: None,
                metadata: None,
                key,
                team,
                tier,
            };
            select(&routes, &input).map(|r| r.name.as_str())
        };
        assert_eq!(pick(None, Some("growth"), Some("pro-annual")), Some("paid"));
        assert_eq!(pick(None, Some("growth"), Some("free")), Some("default"));
        assert_eq!(
            pick(None, Some("growth"), None),
            Some("default"),
            "an unknown tier never matches"
        );
        assert_eq!(pick(Some("key_batch_7"), None, None), Some("key"));
        assert_eq!(pick(Some("key_web"), None, None), Some("default"));
    }
}
