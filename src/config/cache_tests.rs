//! The `cache:` section and the routes' cache policies (with their guardrail policies), compiled:
//! defaults resolved, every bad value named by its key.

use super::tests::load;

#[test]
fn routes_carry_cache_and_guardrail_policies() {
    let base = "providers:\n  p: { kind: openai, base_url: http://p, api_keys: [k] }\nmodels:\n  m: { targets: [ { provider: p, model: x } ] }\n";
    let doc = format!(
        "{base}cache: {{ ttl: 5m, volatile: ['req-[0-9]+'] }}\nroutes:\n  - name: private\n    match: {{ team: legal }}\n    cache: {{ mode: off }}\n    guardrails: {{ pii: redact, injection: block }}\n  - name: cached\n    cache: {{ ttl: 10m, max_temperature: 0.7, partition: key, volatile: ['at [0-9:]+'] }}\n  - name: defaults\n    cache: {{}}\n"
    );
    let s = load(&doc, &[]).unwrap();
    use crate::cache::policy::{Mode, Partition};
    use crate::guard::policy::{Action, InjectionMode};
    use std::time::Duration;
    let private = &s.routes[0];
    assert_eq!(private.cache.as_ref().unwrap().mode, Mode::Off);
    let g = private.guardrails.as_ref().unwrap();
    let catalog = s.guard.as_ref().unwrap().guard.catalog();
    let email = catalog.kind("EMAIL").unwrap();
    assert_eq!((g.action(email), g.injection), (Action::Redact, InjectionMode::Block));
    assert!(s.routes[1].guardrails.is_none());
    let cached = s.routes[1].cache.as_ref().unwrap();
    assert_eq!(cached.mode, Mode::Exact);
    assert_eq!(cached.ttl, Duration::from_secs(600));
    assert_eq!(cached.max_temperature, 0.7);
    assert_eq!(cached.partition, Partition::Key);
    assert_eq!(cached.stale, Duration::ZERO);
    // The section's patterns first, then the route's.
    let sources: Vec<&str> = cached.volatile.iter().map(|r| r.as_str()).collect();
    assert_eq!(sources, ["req-[0-9]+", "at [0-9:]+"]);
    // An empty policy: exact, the section's TTL, temperature 0, per team.
    let d = s.routes[2].cache.as_ref().unwrap();
    assert_eq!(
        (d.mode, d.ttl, d.max_temperature, d.partition),
        (Mode::Exact, Duration::from_secs(300), 0.0, Partition::Team)
    );
    assert!(!s.warnings.iter().any(|w| w.contains("cache")), "{:?}", s.warnings);

    // Each bad value names its key (and semantic mode, not built yet, is refused, not served as
    // exact).
    for (route, key) in [
        ("{ mode: semantic }", "routes[0].cache.mode"),
        ("{ ttl: 0s }", "routes[0].cache.ttl"),
        ("{ max_temperature: 3 }", "routes[0].cache.max_temperature"),
        ("{ volatile: ['('] }", "routes[0].cache.volatile[0]"),
        ("{ volatile: ['x*'] }", "routes[0].cache.volatile[0]"),
        ("{ partition: everyone }", "partition"),
        ("{ staleness: 1m }", "staleness"),
        ("{ threshold: 0.9 }", "routes[0].cache.threshold"),
    ] {
        let bad = format!("{base}routes:\n  - name: x\n    cache: {route}\n");
        let e = load(&bad, &[]).unwrap_err().to_string();
        assert!(e.contains(key), "{route}: {e}");
    }
    for (section, key) in [
        ("{ max_bytes: 0 }", "cache.max_bytes"),
        ("{ max_bytes: 1000, max_entry_bytes: 2000 }", "cache.max_entry_bytes"),
        ("{ volatile: ['['] }", "cache.volatile[0]"),
        ("{ size: 5 }", "size"),
    ] {
        let bad = format!("{base}cache: {section}\n");
        let e = load(&bad, &[]).unwrap_err().to_string();
        assert!(e.contains(key), "{section}: {e}");
    }
    let bad = format!("{base}routes:\n  - name: x\n    guardrails: {{ pii: scramble }}\n");
    let e = load(&bad, &[]).unwrap_err();
    assert!(e.to_string().contains("scramble"), "{e}");
}
