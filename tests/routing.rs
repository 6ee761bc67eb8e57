//! Routing through the real gateway: circuit breakers opening and closing, weighted and A/B
//! splits within statistical bounds, least-latency following a slow target.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

fn chat(gw: &Gateway, user: &str) -> Resp {
    gw.chat(&json!({"model": "m", "user": user, "messages": [{"role": "user", "content": "hi"}]}))
}

#[test]
fn a_breaker_opens_on_failures_and_a_probe_closes_it() {
    let bad = Mock::start(&["--status", "503", "--fail-first", "3"]);
    let good = Mock::start(&[]);
    let gw = Gateway::start(
        "",
        &format!(
            "routing:\n  retries: 0\n  breaker: {{ consecutive_failures: 2, cooldown: 1s }}\nproviders:\n{}{}models:\n  m:\n    targets: [ {{ provider: bad, model: x }}, {{ provider: good, model: y }} ]\n",
            mock_provider("bad", &bad.base_url(), ""),
            mock_provider("good", &good.base_url(), "")
        ),
    );
    assert_eq!(chat(&gw, "u").header("x-tollgate-attempts"), Some("bad:503,good:200"));
    assert_eq!(chat(&gw, "u").header("x-tollgate-attempts"), Some("bad:503,good:200"));
    // Two failures in a row: the breaker is open, `bad` is skipped without a request.
    let r = chat(&gw, "u");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-tollgate-attempts"), Some("bad:breaker_open,good:200"));
    assert_eq!(bad.requests().len(), 2);
    let breakers = get(&gw.admin_url("/breakers")).json();
    let row = breakers["breakers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["provider"] == "bad")
        .unwrap()
        .clone();
    assert_eq!(row["state"], "open");
    assert_eq!(gw.metric(r#"tollgate_breaker_state{model="x",provider="bad"}"#), 2.0);
    // After the cooldown one probe goes through; it fails (3rd forced failure) and re-opens.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(chat(&gw, "u").header("x-tollgate-attempts"), Some("bad:503,good:200"));
    assert_eq!(
        chat(&gw, "u").header("x-tollgate-attempts"),
        Some("bad:breaker_open,good:200")
    );
    // Next probe succeeds (the mock has recovered) and closes the breaker.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(chat(&gw, "u").header("x-tollgate-attempts"), Some("bad:200"));
    assert_eq!(chat(&gw, "u").header("x-tollgate-attempts"), Some("bad:200"));
    let breakers = get(&gw.admin_url("/breakers")).json();
    let row = breakers["breakers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["provider"] == "bad")
        .unwrap()
        .clone();
    assert_eq!(row["state"], "closed");
}

#[test]
fn weighted_and_ab_splits_hold_their_shares() {
    let a = Mock::start(&["--record-limit", "1000"]);
    let b = Mock::start(&["--record-limit", "1000"]);
    let c = Mock::start(&["--record-limit", "1000"]);
    let gw = Gateway::start(
        "",
        &format!(
            "providers:\n{}{}{}models:\n  m:\n    strategy: weighted\n    targets: [ {{ provider: a, model: x, weight: 3 }}, {{ provider: b, model: y, weight: 1 }} ]\n    ab: {{ model: exp, percent: 20 }}\n  exp:\n    targets: [ {{ provider: c, model: z }} ]\n",
            mock_provider("a", &a.base_url(), ""),
            mock_provider("b", &b.base_url(), ""),
            mock_provider("c", &c.base_url(), "")
        ),
    );
    let n = 400;
    let mut arm_b = 0;
    for i in 0..n {
        let r = chat(&gw, &format!("user-{i}"));
        assert_eq!(r.status, 200);
        if r.header("x-tollgate-ab") == Some("b") {
            arm_b += 1;
            assert_eq!(r.header("x-tollgate-provider"), Some("c"));
        }
    }
    // 20 % of 400 users: binomial sd = 8; allow ±4 sd.
    assert!((48..=112).contains(&arm_b), "A/B arm B got {arm_b} of {n}");
    // The weighted split is exact per cycle (smooth weighted round-robin): 3:1 of the A arm.
    let (na, nb) = (a.requests().len() as i64, b.requests().len() as i64);
    assert_eq!(na + nb, (n - arm_b) as i64);
    assert!((na - 3 * nb).abs() <= 4, "weighted 3:1 broke: a={na} b={nb}");
    // Sticky: the same user always lands on the same arm.
    let first = chat(&gw, "sticky-user").header("x-tollgate-ab").unwrap().to_string();
    for _ in 0..10 {
        assert_eq!(chat(&gw, "sticky-user").header("x-tollgate-ab"), Some(first.as_str()));
    }
}

#[test]
fn least_latency_follows_the_fast_target() {
    let slow = Mock::start(&["--latency-ms", "150", "--record-limit", "1000"]);
    let fast = Mock::start(&["--record-limit", "1000"]);
    let gw = Gateway::start(
        "",
        &format!(
            "providers:\n{}{}models:\n  m:\n    strategy: least_latency\n    targets: [ {{ provider: slow, model: x }}, {{ provider: fast, model: y }} ]\n",
            mock_provider("slow", &slow.base_url(), ""),
            mock_provider("fast", &fast.base_url(), "")
        ),
    );
    // Each target is explored once (no sample yet ranks first), then the fast one wins.
    for i in 0..20 {
        assert_eq!(chat(&gw, &format!("u{i}")).status, 200);
    }
    assert_eq!(
        slow.requests().len(),
        1,
        "the slow target should be tried once, then avoided"
    );
    assert_eq!(fast.requests().len(), 19);
}

#[test]
fn the_routes_table_rewrites_restricts_and_names_the_route() {
    let main = Mock::start(&[]);
    let cheap = Mock::start(&[]);
    let gw = Gateway::start(
        "",
        &format!(
            "providers:\n{}{}models:\n  m:\n    targets: [ {{ provider: main, model: big }} ]\n  cheap:\n    targets: [ {{ provider: cheap, model: small }} ]\nroutes:\n  - name: free-search\n    match: {{ task: search, metadata: {{ tier: free }} }}\n    model: cheap\n  - name: locked\n    match: {{ task: locked }}\n    allowed_models: [\"cheap*\"]\n  - name: everything-else\n    strategy: priority\n",
            mock_provider("main", &main.base_url(), ""),
            mock_provider("cheap", &cheap.base_url(), "")
        ),
    );
    let body = |meta: serde_json::Value| {
        json!({"model": "m", "metadata": meta, "messages": [{"role": "user", "content": "hi"}]}).to_string()
    };
    let url = gw.url("/v1/chat/completions");
    let r = post(&url, &body(json!({"tier": "free"})), &[("x-tollgate-task", "search")]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-tollgate-route"), Some("free-search"));
    assert_eq!(r.header("x-tollgate-provider"), Some("cheap"));
    // The upstream model is the rewritten alias's; the client's metadata passes through.
    assert!(cheap.requests()[0]["body"]
        .as_str()
        .unwrap()
        .contains(r#""model":"small""#));

    let r = post(&url, &body(json!({"tier": "paid"})), &[("x-tollgate-task", "search")]);
    assert_eq!(r.header("x-tollgate-route"), Some("everything-else"));
    assert_eq!(r.header("x-tollgate-provider"), Some("main"));

    let r = post(&url, &body(json!({})), &[("x-tollgate-task", "locked")]);
    assert_eq!(r.status, 403, "{}", r.body);
    let v = r.json();
    assert_eq!(v["error"]["code"], "model_not_allowed");
    assert!(v["error"]["message"].as_str().unwrap().contains("locked"));
}

#[test]
fn rate_limits_do_not_open_the_breaker() {
    let limited = Mock::start(&["--status", "429", "--retry-after", "0"]);
    let gw = Gateway::start(
        "",
        &format!(
            "routing:\n  retries: 1\n  backoff: 1ms\n  breaker: {{ consecutive_failures: 2, cooldown: 60s }}\nproviders:\n{}models:\n  m:\n    targets: [ {{ provider: limited, model: x }} ]\n",
            mock_provider("limited", &limited.base_url(), "")
        ),
    );
    for _ in 0..4 {
        let r = chat(&gw, "u");
        assert_eq!(
            r.status, 429,
            "a rate limit must reach the client as itself: {}",
            r.body
        );
        assert_eq!(r.header("x-tollgate-attempts"), Some("limited:429,limited:429"));
    }
    assert_eq!(limited.requests().len(), 8);
}

#[test]
fn a_rejected_key_rests_while_the_pools_other_key_serves() {
    // The mock accepts only the second key: the first gets a 401, is cooled down, and the
    // request is retried on the other key; later requests skip the resting key entirely.
    let m = Mock::start(&["--require-key", "good-key"]);
    let gw = Gateway::start(
        "",
        &format!(
            "routing:\n  retries: 1\n  backoff: 1ms\n  key_cooldown: 60s\nproviders:\n  pool:\n    kind: openai_compatible\n    base_url: \"{}\"\n    api_keys: [\"bad-key\", \"good-key\"]\nmodels:\n  m:\n    targets: [ {{ provider: pool, model: x }} ]\n",
            m.base_url()
        ),
    );
    let first = chat(&gw, "u");
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.header("x-tollgate-attempts"), Some("pool:401,pool:200"));
    for _ in 0..4 {
        let r = chat(&gw, "u");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("x-tollgate-attempts"),
            Some("pool:200"),
            "the cooled key was used again"
        );
    }
    let keys: Vec<String> = m
        .requests()
        .iter()
        .map(|r| r["headers"]["authorization"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys.iter().filter(|k| k.as_str() == "Bearer bad-key").count(), 1);
    assert!(keys.iter().filter(|k| k.as_str() == "Bearer good-key").count() >= 5);
}

#[test]
fn a_route_and_strategy_change_takes_effect_on_reload_without_dropping_a_request() {
    let mock = Mock::start(&[]);
    let config = |route_model: &str, strategy: &str| {
        format!(
            "providers:\n{}models:\n  m:\n    strategy: {strategy}\n    targets: [ {{ provider: mock, model: first }}, {{ provider: mock, model: second }} ]\n  other:\n    targets: [ {{ provider: mock, model: third }} ]\nroutes:\n  - name: tasked\n    match: {{ task: batch }}\n    model: {route_model}\n",
            mock_provider("mock", &mock.base_url(), "")
        )
    };
    let poll = "  reload_poll: 50ms\n";
    let gw = Gateway::start(poll, &config("m", "priority"));
    let url = gw.url("/v1/chat/completions");
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "[[mock: latency_ms=30]]"}]}).to_string();
    let served = |r: &Resp| r.header("x-tollgate-model").unwrap_or("").to_string();
    assert_eq!(served(&post(&url, &body, &[("x-tollgate-task", "batch")])), "first");

    // Clients keep sending (with and without the task header) while the file changes twice.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let (url, body, stop) = (url.clone(), body.clone(), std::sync::Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let task: &[(&str, &str)] = if i % 2 == 0 {
                        &[("x-tollgate-task", "batch")]
                    } else {
                        &[]
                    };
                    let r = post(&url, &body, task);
                    seen.push((r.status, r.header("x-tollgate-model").unwrap_or("").to_string()));
                }
                seen
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    gw.rewrite(poll, &config("other", "priority"));
    wait_until("the route rewrite", Duration::from_secs(5), || {
        served(&post(&url, &body, &[("x-tollgate-task", "batch")])) == "third"
    });
    gw.rewrite(poll, &config("other", "weighted"));
    wait_until("the weighted strategy", Duration::from_secs(5), || {
        (0..6).any(|_| served(&post(&url, &body, &[])) == "second")
    });
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen: Vec<(u16, String)> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    assert!(seen.len() > 20, "too few requests to tell: {}", seen.len());
    assert!(
        seen.iter().all(|(s, _)| *s == 200),
        "a request failed across the reloads: {seen:?}"
    );
    for model in ["first", "second", "third"] {
        assert!(seen.iter().any(|(_, m)| m == model), "{model} never served: {seen:?}");
    }
    assert_eq!(gw.metric("tollgate_config_reloads_total"), 2.0);
}
