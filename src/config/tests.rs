//! Config parsing and validation tests, hermetic: environment and DNS are injected.

use std::net::SocketAddr;
use std::path::Path;

use super::*;

fn env_with(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
}

fn resolve_local(host: &str, port: u16) -> Result<SocketAddr, String> {
    if host == "unresolvable.invalid" {
        return Err("no such host".into());
    }
    Ok(SocketAddr::from(([127, 0, 0, 1], port)))
}

pub(super) fn load(doc: &str, vars: &'static [(&'static str, &'static str)]) -> Result<Snapshot, ConfigErrors> {
    let var = env_with(vars);
    let env = Env {
        var: &var,
        resolve: &resolve_local,
    };
    load_str(Path::new("test.yaml"), doc, &env)
}

const GOOD: &str = "\
server:
  listen: 127.0.0.1:8080
providers:
  openai:
    kind: openai
    base_url: https://api.openai.com/v1
    api_keys: [\"${OPENAI_API_KEY}\"]
  local:
    kind: openai_compatible
    base_url: http://localhost:8000/v1/
    api_keys: [\"k1\", \"k2\"]
models:
  gpt:
    targets:
      - provider: openai
        model: gpt-4o
    fallbacks: [local-model]
  local-model:
    targets: [ { provider: local, model: llama } ]
  secret:
    hidden: true
    targets: [ { provider: local, model: x } ]
pricing:
  models:
    - { provider: local, model: llama, input: 0, output: 0 }
    - { provider: local, model: x, input: 1.5, output: 2 }
";

#[test]
fn a_good_config_compiles() {
    let s = load(GOOD, &[("OPENAI_API_KEY", "sk-test")]).unwrap();
    assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(s.server.admin_listen.to_string(), "127.0.0.1:9090");
    assert_eq!(s.server.max_body_bytes, 32 * 1024 * 1024);
    let local = &s.providers["local"];
    assert!(local.is_enabled());
    assert_eq!(local.path_prefix, "/v1");
    assert_eq!(local.host_header, "localhost:8000");
    assert_eq!(s.providers["openai"].host_header, "api.openai.com");
    // Keys rotate.
    let a = local.next_auth().unwrap().clone();
    let b = local.next_auth().unwrap().clone();
    assert_ne!(a, b);
    assert_eq!(a, "Bearer k1");
    assert!(a.is_sensitive());
    let t = &s.model("gpt").unwrap().targets[0];
    assert_eq!(&t.model_json[..], b"\"gpt-4o\"");
    assert!(s.warnings.is_empty());
}

#[test]
fn targets_carry_their_price_and_unpriced_models_are_named() {
    let s = load(GOOD, &[("OPENAI_API_KEY", "sk-test")]).unwrap();
    // The built-in table prices gpt-4o under the openai family; the config prices `local`'s.
    let gpt = s.model("gpt").unwrap().targets[0].price.unwrap();
    let builtin = crate::usage::pricing::PriceTable::builtin();
    assert_eq!(Some(&gpt), builtin.lookup("openai", "gpt-4o"));
    let x = s.model("secret").unwrap().targets[0].price.unwrap();
    // 1000 × $1.5/1M + 1000 × $2/1M = $0.0035 = 3,500,000 nano-USD.
    assert_eq!(x.cost_nanos(&crate::api::chat::Usage::new(1000, 1000)), 3_500_000);
    let free = s.model("local-model").unwrap().targets[0].price.unwrap();
    assert_eq!(free.cost_nanos(&crate::api::chat::Usage::new(1000, 1000)), 0);

    let unpriced = GOOD.replace("    - { provider: local, model: x, input: 1.5, output: 2 }\n", "");
    let s = load(&unpriced, &[("OPENAI_API_KEY", "sk-test")]).unwrap();
    assert!(s.model("secret").unwrap().targets[0].price.is_none());
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    assert!(s.warnings[0].contains("local/x"), "{}", s.warnings[0]);

    let bad = GOOD.replace("input: 1.5", "input: -1");
    let errors = load(&bad, &[]).unwrap_err();
    assert!(errors.to_string().contains("pricing"), "{errors}");
}

#[test]
fn models_list_has_visible_servable_aliases_only() {
    let s = load(GOOD, &[]).unwrap(); // OPENAI_API_KEY unset: `gpt` is not servable
    let v: serde_json::Value = serde_json::from_slice(&s.models_list_body).unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["local-model"]);
    assert_eq!(v["object"], "list");
}

#[test]
fn unset_key_disables_the_provider_with_one_warning() {
    let s = load(GOOD, &[]).unwrap();
    let p = &s.providers["openai"];
    assert!(!p.is_enabled());
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    assert!(s.warnings[0].contains("OPENAI_API_KEY"), "{}", s.warnings[0]);
    // The plan skips it and names why when nothing is left.
    let plan = crate::routing::plan(&s, "gpt").unwrap();
    assert_eq!(plan.len(), 1);
    assert_eq!(plan[0].provider.name, "local");
}

#[test]
fn unknown_field_names_line_and_key() {
    let doc = "server:\n  listen: 127.0.0.1:1\n  lisen: x\n";
    let e = load(doc, &[]).unwrap_err();
    assert_eq!(e.errors.len(), 1);
    let err = &e.errors[0];
    assert_eq!(err.line, Some(3));
    assert!(err.message.contains("lisen"), "{err}");
    assert!(err.to_string().starts_with("test.yaml:3:"), "{err}");
}

#[test]
fn wrong_type_names_the_key_path() {
    let doc = "providers:\n  a:\n    kind: openai\n    base_url: http://x\n    api_keys: 5\n";
    let e = load(doc, &[]).unwrap_err();
    let err = &e.errors[0];
    assert_eq!(err.path, "providers.a.api_keys");
    assert_eq!(err.line, Some(5));
}

#[test]
fn unknown_kind_is_rejected() {
    let doc = "providers:\n  a:\n    kind: openia\n    base_url: http://x\n";
    let e = load(doc, &[]).unwrap_err();
    assert!(e.errors[0].message.contains("openia"), "{}", e.errors[0]);
    assert_eq!(e.errors[0].line, Some(3));
}

#[test]
fn every_semantic_problem_is_reported_with_its_line() {
    let doc = "\
server:
  listen: nowhere
providers:
  a:
    kind: openai
    base_url: ftp://x
    api_keys: [k]
  b:
    kind: openai
    base_url: http://b
    api_keys: [k]
    headers:
      authorization: nope
models:
  m:
    targets:
      - provider: a
        model: x
      - provider: zzz
        model: y
    fallbacks: [m, nope]
  empty:
    targets: []
";
    let e = load(doc, &[]).unwrap_err();
    let found: Vec<(String, Option<usize>)> = e.errors.iter().map(|e| (e.path.clone(), e.line)).collect();
    let expect = [
        ("server.listen", Some(2)),
        ("providers.a.base_url", Some(6)),
        ("providers.b.headers.authorization", Some(13)),
        ("models.m.targets[1].provider", Some(19)),
        ("models.m.fallbacks[0]", Some(21)),
        ("models.m.fallbacks[1]", Some(21)),
        ("models.empty.targets", Some(23)),
    ];
    for (path, line) in expect {
        assert!(
            found.contains(&(path.to_string(), line)),
            "missing {path} at {line:?} in {found:?}"
        );
    }
    assert_eq!(e.errors.len(), expect.len(), "{e}");
}

#[test]
fn unresolvable_host_disables_with_a_warning() {
    let doc = "providers:\n  a:\n    kind: openai\n    base_url: https://unresolvable.invalid/v1\n    api_keys: [k]\n";
    let s = load(doc, &[]).unwrap();
    assert!(!s.providers["a"].is_enabled());
    assert!(
        s.warnings.iter().any(|w| w.contains("cannot resolve")),
        "{:?}",
        s.warnings
    );
}

#[test]
fn base_url_env_must_be_set() {
    let doc = "providers:\n  a:\n    kind: openai\n    base_url: ${BASE}\n    api_keys: [k]\n";
    let e = load(doc, &[]).unwrap_err();
    assert!(e.errors[0].message.contains("BASE"));
    assert!(load(doc, &[("BASE", "http://h:1")]).is_ok());
}

#[test]
fn zero_timeout_and_same_listeners_are_errors() {
    let doc = "server:\n  listen: 127.0.0.1:1\n  admin_listen: 127.0.0.1:1\ntimeouts:\n  idle: 0s\n";
    let e = load(doc, &[]).unwrap_err();
    assert!(
        e.errors.iter().any(|e| e.path == "timeouts.idle" && e.line == Some(5)),
        "{e}"
    );
    assert!(e.errors.iter().any(|e| e.path == "server"), "{e}");
}

#[test]
fn a_body_budget_below_the_largest_body_is_an_error_naming_both() {
    let doc = "server:\n  max_body_bytes: 2000\n  max_buffered_bytes: 1000\n";
    let e = load(doc, &[]).unwrap_err();
    assert!(
        e.errors.iter().any(|e| e.path == "server.max_buffered_bytes"
            && e.line == Some(3)
            && e.message.contains("server.max_body_bytes (2000)")),
        "{e}"
    );
    let ok = load("server:\n  max_body_bytes: 2000\n  max_buffered_bytes: 2000\n", &[]).unwrap();
    assert_eq!(ok.server.max_buffered_bytes, 2000);
    assert_eq!(load("{}", &[]).unwrap().server.max_buffered_bytes, 1 << 30);
}

#[test]
fn provider_timeouts_override_single_fields() {
    let doc = "timeouts:\n  connect: 2s\n  idle: 9s\nproviders:\n  a:\n    kind: openai\n    base_url: http://a\n    api_keys: [k]\n    timeouts: { idle: 3s }\n";
    let s = load(doc, &[]).unwrap();
    let t = s.providers["a"].timeouts;
    assert_eq!(t.connect, std::time::Duration::from_secs(2));
    assert_eq!(t.idle, std::time::Duration::from_secs(3));
    assert_eq!(t.first_byte, Timeouts::DEFAULT.first_byte);
}

#[test]
fn secrets_do_not_leak_through_debug() {
    let s = load(GOOD, &[("OPENAI_API_KEY", "sk-very-secret")]).unwrap();
    let dump = format!("{:?}", s.providers["openai"]);
    assert!(!dump.contains("sk-very-secret"), "{dump}");
}

#[test]
fn the_shipped_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/tollgate.yaml");
    let doc = std::fs::read_to_string(&path).unwrap();
    let env = Env {
        var: &|_| None,
        resolve: &resolve_local,
    };
    let s = load_str(&path, &doc, &env).unwrap();
    assert!(s.providers["mock"].is_enabled());
    assert!(!s.providers["openai"].is_enabled());
    assert!(s.model("demo").is_some());
    assert!(s.server.mock_listen.is_some());
}

proptest::proptest! {
    #[test]
    fn arbitrary_yaml_never_panics(doc in "[ -~\n]{0,300}") {
        let _ = load(&doc, &[]);
    }
}

#[test]
fn plans_follow_fallbacks_breadth_first_once_each() {
    let doc = "\
providers:
  a: { kind: openai, base_url: http://a, api_keys: [k] }
  b: { kind: openai, base_url: http://b, api_keys: [k] }
  off: { kind: openai, base_url: http://c, api_keys: [k], enabled: false }
models:
  x:
    targets: [ { provider: a, model: x1 }, { provider: off, model: x2 } ]
    fallbacks: [y, z]
  y:
    targets: [ { provider: b, model: y1 } ]
    fallbacks: [x]
  z:
    targets: [ { provider: a, model: z1 } ]
    fallbacks: [y]
  dead:
    targets: [ { provider: off, model: d } ]
";
    let s = load(doc, &[]).unwrap();
    let plan: Vec<&str> = crate::routing::plan(&s, "x")
        .unwrap()
        .iter()
        .map(|t| t.model.as_str())
        .collect();
    assert_eq!(plan, vec!["x1", "y1", "z1"]);
    let plan: Vec<&str> = crate::routing::plan(&s, "y")
        .unwrap()
        .iter()
        .map(|t| t.model.as_str())
        .collect();
    assert_eq!(plan, vec!["y1", "x1", "z1"]);
    match crate::routing::plan(&s, "dead") {
        Err(crate::api::ApiError::NoProvider { reason, .. }) => assert!(reason.contains("enabled: false"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        crate::routing::plan(&s, "nope"),
        Err(crate::api::ApiError::ModelNotFound(_))
    ));
}

#[test]
fn presets_fill_base_url_and_quirks() {
    let doc = "\
providers:
  groq: { kind: openai_compatible, preset: groq, api_keys: [k] }
  local: { kind: openai_compatible, preset: ollama }
  bad: { kind: openai_compatible, preset: nope, api_keys: [k] }
  wrong: { kind: openai, preset: groq, base_url: http://x, api_keys: [k] }
";
    let e = load(doc, &[]).unwrap_err();
    assert!(
        e.errors
            .iter()
            .any(|e| e.path == "providers.bad.preset" && e.message.contains("groq")),
        "{e}"
    );
    assert!(e.errors.iter().any(|e| e.path == "providers.wrong.preset"), "{e}");
    let doc = "providers:\n  groq: { kind: openai_compatible, preset: groq, api_keys: [k], drop_fields: [seed] }\n  local: { kind: openai_compatible, preset: ollama }\n";
    let s = load(doc, &[]).unwrap();
    let g = &s.providers["groq"];
    assert_eq!(g.host_header, "api.groq.com");
    assert_eq!(g.path_prefix, "/openai/v1");
    assert!(g.options.quirks.drop_fields.contains(&"logit_bias".to_string()));
    assert!(g.options.quirks.drop_fields.contains(&"seed".to_string()));
    // Ollama needs no key: enabled without one, no warning.
    assert!(s.providers["local"].is_enabled());
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
}

#[test]
fn azure_needs_api_version_and_anthropic_fields_stay_on_anthropic() {
    let doc = "providers:\n  az: { kind: azure, base_url: https://x.openai.azure.com, api_keys: [k] }\n  o: { kind: openai, base_url: http://o, api_keys: [k], default_max_tokens: 5 }\n";
    let e = load(doc, &[]).unwrap_err();
    assert!(
        e.errors
            .iter()
            .any(|e| e.path == "providers.az" && e.message.contains("api_version")),
        "{e}"
    );
    assert!(e.errors.iter().any(|e| e.path == "providers.o"), "{e}");
    let ok = "providers:\n  az: { kind: azure, base_url: https://x.openai.azure.com, api_version: 2024-10-21, api_keys: [k] }\n";
    let s = load(ok, &[]).unwrap();
    assert_eq!(s.providers["az"].auth_header, "api-key");
    assert_eq!(s.providers["az"].next_auth().unwrap(), "k");
}

#[test]
fn routes_are_validated() {
    let doc = "\
models:
  m: { targets: [] }
routes:
  - name: a
    model: nope
  - name: a
    match: { tusk: x }
";
    let e = load(doc, &[]).unwrap_err();
    assert!(e.errors.iter().any(|e| e.message.contains("tusk")), "{e}");
    let doc = "providers:\n  p: { kind: openai, base_url: http://p, api_keys: [k] }\nmodels:\n  m: { targets: [ { provider: p, model: x } ] }\nroutes:\n  - name: a\n    model: nope\n  - name: a\n";
    let e = load(doc, &[]).unwrap_err();
    assert!(
        e.errors
            .iter()
            .any(|e| e.path == "routes[0].model" && e.line == Some(7)),
        "{e}"
    );
    assert!(
        e.errors.iter().any(|e| e.path == "routes[1].name" && e.line == Some(8)),
        "{e}"
    );
}

#[test]
fn snapshots_share_the_one_injection_scorer() {
    // Building the scorer costs ~0.4 s of CPU: a reload must not pay it again.
    let doc = "providers:\n  p: { kind: openai, base_url: http://p, api_keys: [k] }\nmodels:\n  m: { targets: [ { provider: p, model: x } ] }\nguardrails:\n  defaults: { injection: flag }\n";
    let a = load(doc, &[]).unwrap();
    let b = load(doc, &[]).unwrap();
    let (ga, gb) = (&a.guard.as_ref().unwrap().guard, &b.guard.as_ref().unwrap().guard);
    assert!(std::sync::Arc::ptr_eq(&ga.scorer, &gb.scorer));
}

#[test]
fn guardrail_sections_are_checked_and_errors_name_their_keys() {
    let base = "providers:\n  p: { kind: openai, base_url: http://p, api_keys: [k] }\nmodels:\n  m: { targets: [ { provider: p, model: x } ] }\n";
    let doc = format!(
        "{base}guardrails:\n  defaults: {{ pii: log, secrets: block }}\n  entities:\n    - {{ name: PROJECT, regex: 'PRJ-[0-9]{{4}}' }}\n    - {{ name: CODENAME, words: [Bluebird], class: secret }}\nroutes:\n  - name: legal\n    match: {{ team: legal }}\n    guardrails: {{ pii: redact, entities: {{ PROJECT: block }} }}\n  - name: rest\n"
    );
    let s = load(&doc, &[]).unwrap();
    let g = s.guard.as_ref().unwrap();
    let c = g.guard.catalog();
    let (email, project, code, key) = (
        c.kind("EMAIL").unwrap(),
        c.kind("PROJECT").unwrap(),
        c.kind("CODENAME").unwrap(),
        c.kind("API_KEY").unwrap(),
    );
    use crate::guard::policy::Action;
    let legal = s.routes[0].guardrails.as_ref().unwrap();
    assert_eq!(
        [
            legal.action(email),
            legal.action(project),
            legal.action(code),
            legal.action(key)
        ],
        [Action::Redact, Action::Block, Action::Block, Action::Block]
    );
    // A route without its own policy, and a request no route matches, get the defaults.
    assert!(s.routes[1].guardrails.is_none());
    let d = g.default.as_ref().unwrap();
    assert_eq!((d.action(email), d.action(code)), (Action::Log, Action::Block));

    let bad = format!(
        "{base}guardrails:\n  entities:\n    - {{ name: PROJECT, regex: 'x', words: [y] }}\n  presidio: {{ url: 'ftp://x' }}\nroutes:\n  - name: r\n    guardrails:\n      entities: {{ NOPE: block }}\n      output: redact\n"
    );
    let e = load(&bad, &[]).unwrap_err();
    let paths: Vec<(&str, Option<usize>)> = e.errors.iter().map(|e| (e.path.as_str(), e.line)).collect();
    assert!(paths.contains(&("guardrails.entities[0]", Some(7))), "{e}");
    assert!(paths.contains(&("guardrails.presidio.url", Some(8))), "{e}");
    assert!(paths.contains(&("routes[0].guardrails.entities.NOPE", Some(12))), "{e}");
    assert!(paths.contains(&("routes[0].guardrails.output", Some(13))), "{e}");
    let typo = format!("{base}routes:\n  - name: r\n    guardrails: {{ pii: redact, pi: log }}\n");
    assert!(load(&typo, &[]).unwrap_err().to_string().contains("pi"));
}

#[test]
fn the_redis_backend_is_checked_and_its_password_stays_secret() {
    let doc = "limits:\n  backend: redis\n  redis:\n    url: \"redis://:${REDIS_PASSWORD}@127.0.0.1:6379/0\"\n    on_failure: closed\n    timeout: 100ms\n";
    let s = load(doc, &[("REDIS_PASSWORD", "hunter2")]).unwrap();
    let r = s.limits.redis.as_ref().unwrap();
    assert_eq!(r.url.expose(), "redis://:hunter2@127.0.0.1:6379/0");
    assert_eq!(r.on_failure, crate::limits::cluster::FailMode::Closed);
    assert_eq!(r.timeout, std::time::Duration::from_millis(100));
    assert_eq!(r.prefix, "tollgate");
    assert!(!format!("{s:?}").contains("hunter2"));
    // Local is the default.
    assert!(load("limits: {}\n", &[]).unwrap().limits.redis.is_none());

    let e = load("limits:\n  backend: redis\n", &[]).unwrap_err();
    assert!(
        e.errors.iter().any(|e| e.path == "limits.backend" && e.line == Some(2)),
        "{e}"
    );
    let e = load("limits:\n  backend: redis\n  redis:\n    url: \"http://x\"\n", &[]).unwrap_err();
    assert!(
        e.errors
            .iter()
            .any(|e| e.path == "limits.redis.url" && e.line == Some(4)),
        "{e}"
    );
    let e = load(
        "limits:\n  backend: redis\n  redis:\n    url: \"redis://:${NOPE}@h/0\"\n",
        &[],
    )
    .unwrap_err();
    assert!(e.to_string().contains("NOPE"), "{e}");
    let e = load("limits:\n  backend: memcached\n", &[]).unwrap_err();
    assert!(e.errors.iter().any(|e| e.path.starts_with("limits")), "{e}");
    let e = load(
        "limits:\n  backend: redis\n  redis:\n    url: \"redis://h/0\"\n    on_failure: maybe\n",
        &[],
    )
    .unwrap_err();
    assert!(e.to_string().contains("on_failure"), "{e}");
}

#[test]
fn every_structural_problem_is_listed_once_with_a_hint() {
    // Four mistakes in one file: each is reported in one run, in file order, with its line.
    let doc = "\
timeouts:
  connect: 5
providers:
  a:
    kind: openai
    base_url: http://a
    api_keys: [k]
    timeout: { idle: 1s }
models:
  m:
    targets: [ { provider: a, model: x } ]
    fallback: [n]
  n:
    targets: [ { provider: a, model: y } ]
routing:
  retries: many
";
    let e = load(doc, &[]).unwrap_err();
    let found: Vec<(&str, Option<usize>)> = e.errors.iter().map(|e| (e.path.as_str(), e.line)).collect();
    assert_eq!(
        found,
        vec![
            ("timeouts.connect", Some(2)),
            ("providers.a.timeout", Some(8)),
            ("models.m.fallback", Some(12)),
            ("routing.retries", Some(16)),
        ],
        "{e}"
    );
    let text = e.to_string();
    assert!(text.contains("did you mean `5s`?"), "{text}");
    assert!(text.contains("did you mean `timeouts`?"), "{text}");
    assert!(text.contains("did you mean `fallbacks`?"), "{text}");
    // The path is said once, not repeated by serde_yaml inside the message.
    assert!(!text.contains("timeouts.connect: timeouts.connect"), "{text}");
    assert!(!e.errors.iter().any(|e| e.message.contains(&e.path)), "{text}");
}

#[test]
fn structural_and_semantic_problems_come_in_one_run_without_echoes() {
    // `kind: opneai` drops provider `a` whole; the model naming it is not reported again, but the
    // other model's unknown provider is (a problem of its own).
    let doc = "\
providers:
  a:
    kind: opneai
    base_url: http://a
  b:
    kind: openai
    base_url: http://b
    api_keys: [k]
models:
  m:
    targets: [ { provider: a, model: x } ]
  n:
    targets: [ { provider: zzz, model: y } ]
keys:
  - { id: one }
  - { id: two, key: \"${K}\", tier: [x] }
  - { id: \"bad id\", key: \"${K}\" }
";
    let e = load(doc, &[("K", "v")]).unwrap_err();
    let found: Vec<(&str, Option<usize>)> = e.errors.iter().map(|e| (e.path.as_str(), e.line)).collect();
    assert_eq!(
        found,
        vec![
            ("providers.a.kind", Some(3)),
            ("models.n.targets[0].provider", Some(13)),
            ("keys[0]", Some(15)),
            ("keys[1].tier", Some(16)),
            ("keys[2].id", Some(17)),
        ],
        "{e}"
    );
    assert!(e.errors[0].message.contains("did you mean `openai`?"), "{e}");
    assert!(e.errors[2].message.contains("missing field `key`"), "{e}");
}

#[test]
fn an_empty_document_is_an_error() {
    for doc in ["", "\n\n", "# only a comment\n", "---\n"] {
        let e = load(doc, &[]).unwrap_err();
        assert_eq!(e.errors.len(), 1, "{doc:?}");
        assert!(e.errors[0].message.contains("empty"), "{doc:?}: {e}");
    }
    // An explicit empty mapping says "all defaults" on purpose.
    assert!(load("{}\n", &[]).is_ok());
}

#[test]
fn relative_usage_paths_are_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conf/tollgate.yaml");
    let env = Env {
        var: &|_| None,
        resolve: &resolve_local,
    };
    let doc = "usage:\n  ledger: sqlite:data/spend.db\n  spill_dir: data/spill\n  access_log: logs/access.log\n";
    let s = load_str(&path, doc, &env).unwrap();
    let conf = dir.path().join("conf");
    assert_eq!(
        s.usage.ledger.as_ref().unwrap().expose(),
        format!("sqlite:{}", conf.join("data/spend.db").display())
    );
    assert_eq!(s.usage.spill_dir, conf.join("data/spill"));
    assert_eq!(
        s.usage.access_log,
        snapshot::AccessLog::File(conf.join("logs/access.log"))
    );
    // Where each pointed before (the working directory's), for the check at start.
    let cwd = std::env::current_dir().unwrap();
    let moved: Vec<_> = s
        .usage
        .moved
        .iter()
        .map(|m| (m.setting, m.written.as_str(), m.now.clone(), m.before.clone()))
        .collect();
    use snapshot::UsagePath::*;
    assert_eq!(
        moved,
        [
            (
                Ledger,
                "data/spend.db",
                conf.join("data/spend.db"),
                cwd.join("data/spend.db")
            ),
            (SpillDir, "data/spill", conf.join("data/spill"), cwd.join("data/spill")),
            (
                AccessLog,
                "logs/access.log",
                conf.join("logs/access.log"),
                cwd.join("logs/access.log")
            ),
        ]
    );
    // Absolute paths and non-file settings are kept as written.
    let doc = "usage:\n  ledger: sqlite:///var/lib/t/spend.db\n  spill_dir: /var/lib/t/spill\n  access_log: stdout\n";
    let s = load_str(&path, doc, &env).unwrap();
    assert_eq!(
        s.usage.ledger.as_ref().unwrap().expose(),
        "sqlite:///var/lib/t/spend.db"
    );
    assert_eq!(s.usage.spill_dir, Path::new("/var/lib/t/spill"));
    assert_eq!(s.usage.access_log, snapshot::AccessLog::Stdout);
    assert!(s.usage.moved.is_empty(), "{:?}", s.usage.moved);
    // A config named without a directory resolves against the working directory, made absolute.
    let s = load_str(Path::new("t.yaml"), "usage: { spill_dir: sp }\n", &env).unwrap();
    assert_eq!(s.usage.spill_dir, std::env::current_dir().unwrap().join("sp"));
    assert!(
        s.usage.moved.is_empty(),
        "the same place either way: {:?}",
        s.usage.moved
    );
}

#[test]
fn anonymous_keys_default_to_the_readme_placeholder_and_act_only_without_required_auth() {
    assert_eq!(load("limits: {}\n", &[]).unwrap().auth.anonymous_keys, ["unused"]);
    let s = load("auth:\n  anonymous_keys: [sk-none, \"x\"]\n", &[]).unwrap();
    assert_eq!(s.auth.anonymous_keys, ["sk-none", "x"]);
    assert!(load("auth:\n  anonymous_keys: []\n", &[])
        .unwrap()
        .auth
        .anonymous_keys
        .is_empty());
    // With every request needing a key, a placeholder is just an unknown key.
    assert!(load("auth:\n  required: true\n", &[])
        .unwrap()
        .auth
        .anonymous_keys
        .is_empty());
    let e = load("auth:\n  required: true\n  anonymous_keys: [unused]\n", &[]).unwrap_err();
    assert!(
        e.errors
            .iter()
            .any(|e| e.path == "auth.anonymous_keys" && e.line == Some(3)),
        "{e}"
    );
    let e = load(
        "auth:\n  anonymous_keys: [\"ok\", \"has space\", \"\", \"${KEY}\"]\n",
        &[],
    )
    .unwrap_err();
    for i in 1..=3 {
        let path = format!("auth.anonymous_keys[{i}]");
        assert!(e.errors.iter().any(|e| e.path == path), "{path}: {e}");
    }
}

#[test]
fn the_base_url_shown_in_errors_carries_no_credentials() {
    let doc = "providers:\n  p:\n    kind: openai_compatible\n    base_url: \"http://user:${PASS}@127.0.0.1:8000/v1/\"\n    api_keys: [k]\nmodels:\n  m:\n    targets: [ { provider: p, model: x } ]\n";
    let s = load(doc, &[("PASS", "hunter2")]).unwrap();
    assert_eq!(s.providers["p"].display_url, "http://127.0.0.1:8000/v1");
    let s = load(GOOD, &[("OPENAI_API_KEY", "sk-test")]).unwrap();
    assert_eq!(s.providers["openai"].display_url, "https://api.openai.com/v1");
}

/// A `keys:` entry is the admin API's `KeySpec` plus `key`, read by hand (`raw_key`): its
/// problems read as those of a derived struct with every field, as they always have.
#[test]
fn key_entries_report_like_one_strict_struct() {
    let doc = "\
models: {}
keys:
  - { id: one }
  - { key: \"${K}\" }
  - { id: two, key: \"${K}\", tier: [x] }
  - { id: three, kye: \"${K}\" }
  - { id: four, key: \"${K}\", tem: backend }
  - id: five
    key: \"${K}\"
    metadata: { a: [1] }
    models: [a, {b: 1}]
  - { id: [x], key: \"${K}\" }
  - { id: six, ky: \"${K}\" }
  - [1, 2]
  - { id: seven, key: \"${K}\", team: t, user: u, name: n, models: [\"*\"], metadata: {a: b}, expires_at: \"2030-01-01\", limits: { rpm: 5 } }
";
    let e = load(doc, &[("K", "v")]).unwrap_err();
    let found: Vec<String> = e.errors.iter().map(|e| e.to_string()).collect();
    let expected = [
        "test.yaml:3: keys[0]: missing field `key`",
        "test.yaml:4: keys[1]: missing field `id`",
        "test.yaml:5: keys[2].tier: invalid type: sequence, expected a string",
        "test.yaml:6: keys[3].kye: unknown field `kye`, expected one of `id`, `key`, `name`, `team`, `user`, `tier`, \
         `models`, `metadata`, `expires_at`, `limits`",
        "test.yaml:6: keys[3]: missing field `key`",
        "test.yaml:7: keys[4].tem: unknown field `tem`; did you mean `team`?",
        "test.yaml:10: keys[5].metadata.a: invalid type: sequence, expected a string",
        "test.yaml:11: keys[5].models[1]: invalid type: map, expected a string",
        "test.yaml:12: keys[6].id: invalid type: sequence, expected a string",
        "test.yaml:13: keys[7].ky: unknown field `ky`; did you mean `key`?",
        "test.yaml:13: keys[7]: missing field `key`",
        "test.yaml:14: keys[8]: invalid type: sequence, expected struct RawKey",
    ];
    assert_eq!(found, expected, "{e}");

    // What the file says reaches the key store as the API's own spec.
    let doc = "models: {}\nkeys:\n  - { id: seven, key: \"${K}\", team: t, user: u, name: n, models: [\"*\"], \
               metadata: {a: b}, expires_at: \"2030-01-01\", limits: { rpm: 5 } }\n";
    let s = load(doc, &[("K", "v")]).unwrap();
    let api: crate::limits::keys::KeySpec = serde_json::from_value(serde_json::json!({
        "id": "seven", "team": "t", "user": "u", "name": "n", "models": ["*"], "metadata": {"a": "b"},
        "expires_at": "2030-01-01", "limits": {"rpm": 5}
    }))
    .unwrap();
    assert_eq!(s.auth.keys.len(), 1);
    assert_eq!(s.auth.keys[0].0, api);
    assert_eq!(s.auth.keys[0].1.expose(), "v");
}
