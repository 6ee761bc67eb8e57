//! Limits on the real gateway: a key's request rate with OpenAI's headers, a budget hammered by
//! concurrent requests, and lower tiers shed as a provider fills up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const ADMIN: &str = "admin-token-for-limit-tests";

fn config(mock: &Mock, keys: &str, extra: &str) -> String {
    format!(
        "providers:\n{}models:\n  m:\n    targets: [ {{ provider: mock, model: priced }} ]\n\
pricing:\n  models:\n    - {{ provider: mock, model: priced, input: 1000, output: 1000 }}\n\
auth:\n  required: true\nkeys:\n{keys}admin:\n  token: \"${{TOLLGATE_ADMIN_TOKEN}}\"\n{extra}",
        mock_provider("mock", &mock.base_url(), "")
    )
}

fn chat(url: &str, secret: &str, content: &str) -> Resp {
    post(
        url,
        &json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": content}]}).to_string(),
        &[("authorization", &format!("Bearer {secret}"))],
    )
}

#[test]
fn a_keys_request_rate_is_enforced_with_openai_headers() {
    let mock = Mock::start(&[]);
    let keys = "  - { id: slow, key: \"${SLOW_KEY}\", limits: { rpm: 3 } }\n";
    let gw = Gateway::start_env("", &config(&mock, keys, ""), &[("SLOW_KEY", "tg-slow")]);
    let url = gw.url("/v1/chat/completions");
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let r = chat(&url, "tg-slow", "hi");
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.header("x-ratelimit-limit-requests"), Some("3"));
        remaining.push(
            r.header("x-ratelimit-remaining-requests")
                .unwrap()
                .parse::<u64>()
                .unwrap(),
        );
    }
    assert_eq!(remaining, vec![2, 1, 0]);
    let r = chat(&url, "tg-slow", "hi");
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "one request refills in 20 s: {retry}");
    assert!(r.header("x-ratelimit-reset-requests").is_some());
    assert_eq!(mock.requests().len(), 3, "a refused request never reaches the provider");
    assert_eq!(gw.metric("tollgate_rate_limited_total{reason=\"requests\"}"), 1.0);
}

#[test]
fn the_providers_own_rate_limit_headers_never_reach_the_client() {
    let mock = Mock::start(&[]);
    let keys = "  - { id: open, key: \"${OPEN_KEY}\" }\n  - { id: slow, key: \"${SLOW_KEY}\", limits: { rpm: 3 } }\n";
    let gw = Gateway::start_env(
        "",
        &config(&mock, keys, ""),
        &[("OPEN_KEY", "tg-open"), ("SLOW_KEY", "tg-slow")],
    );
    let url = gw.url("/v1/chat/completions");
    // The provider answers with its account's x-ratelimit-* (as OpenAI does) ...
    let direct = post(
        &format!("{}/chat/completions", mock.base_url()),
        &json!({"model": "priced", "messages": [{"role": "user", "content": "[[mock: ratelimit_headers]]"}]})
            .to_string(),
        &[("authorization", "Bearer test")],
    );
    assert_eq!(direct.status, 200, "{}", direct.body);
    assert_eq!(direct.header("x-ratelimit-limit-requests"), Some("100000000"));
    // ... which describe the gateway's provider key, not the client's: a key without limits
    // gets none, a limited key gets its own.
    let open = chat(&url, "tg-open", "hi [[mock: ratelimit_headers]]");
    assert_eq!(open.status, 200, "{}", open.body);
    let leaked: Vec<_> = open
        .headers
        .iter()
        .filter(|(k, _)| k.starts_with("x-ratelimit-"))
        .collect();
    assert!(leaked.is_empty(), "{leaked:?}");
    let slow = chat(&url, "tg-slow", "hi [[mock: ratelimit_headers]]");
    assert_eq!(slow.status, 200, "{}", slow.body);
    assert_eq!(slow.header("x-ratelimit-limit-requests"), Some("3"));
    assert_eq!(slow.header("x-ratelimit-remaining-requests"), Some("2"));
    assert!(
        slow.header("x-ratelimit-limit-tokens").is_none(),
        "no token limit on this key"
    );
    assert_eq!(mock.requests().len(), 3);
}

#[test]
fn a_budget_holds_under_concurrent_requests() {
    let mock = Mock::start(&[]);
    // $1000 per 1M tokens: a request of ~10 tokens costs ~$0.01; the budget is $0.10.
    let keys =
        "  - { id: capped, key: \"${CAPPED_KEY}\", team: t, limits: { budgets: [ { usd: 0.10, period: 1d } ] } }\n";
    let gw = Gateway::start_env(
        "",
        &config(&mock, keys, ""),
        &[("CAPPED_KEY", "tg-capped"), ("TOLLGATE_ADMIN_TOKEN", ADMIN)],
    );
    let url = gw.url("/v1/chat/completions");
    let mut statuses = Vec::new();
    // Waves of 25 concurrent slow requests until the budget refuses everything.
    for _ in 0..4 {
        let handles: Vec<_> = (0..25)
            .map(|i| {
                let url = url.clone();
                std::thread::spawn(move || chat(&url, "tg-capped", &format!("req {i} [[mock: latency_ms=100]]")))
            })
            .collect();
        for h in handles {
            let r = h.join().unwrap();
            if r.status == 429 {
                assert_eq!(r.json()["error"]["code"], "budget_exceeded", "{}", r.body);
            }
            statuses.push(r.status);
        }
    }
    assert!(statuses.contains(&429), "the budget never refused");
    assert!(statuses.contains(&200));
    // What the served requests cost, from the ledger.
    wait_until("the ledger", Duration::from_secs(10), || {
        let r = ureq::get(&gw.admin_url("/admin/spend?group_by=key"))
            .set("authorization", &format!("Bearer {ADMIN}"))
            .call();
        r.is_ok_and(|r| r.into_json::<Value>().unwrap()["totals"]["requests"] == statuses.len())
    });
    let report: Value = ureq::get(&gw.admin_url("/admin/spend?group_by=key"))
        .set("authorization", &format!("Bearer {ADMIN}"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    let spent = report["totals"]["cost_usd"].as_f64().unwrap();
    // One request's reservation: its estimate (prompt by the tokenizer + max_tokens 10) at $1000/1M.
    let one_estimate = 0.05;
    assert!(spent <= 0.10 + one_estimate, "overspent: ${spent}");
    assert!(spent > 0.10 * 0.5, "the budget was barely used: ${spent}");
}

#[test]
fn lower_tiers_are_shed_first_as_the_provider_fills() {
    let mock = Mock::start(&[]);
    let keys = "  - { id: free, key: \"${FREE_KEY}\", tier: free }\n  - { id: paid, key: \"${PAID_KEY}\", tier: enterprise }\n";
    let extra = "limits:\n  tiers: { free: 0.5, enterprise: 1.0 }\n";
    let rest = config(&mock, keys, extra).replace(
        "api_keys: [\"key-of-mock\"]\n",
        "api_keys: [\"key-of-mock\"]\n    limits: { rpm: 10 }\n",
    );
    let gw = Gateway::start_env("", &rest, &[("FREE_KEY", "tg-free"), ("PAID_KEY", "tg-paid")]);
    let url = gw.url("/v1/chat/completions");
    let free: Vec<u16> = (0..8).map(|_| chat(&url, "tg-free", "hi").status).collect();
    assert_eq!(
        free.iter().filter(|&&s| s == 200).count(),
        5,
        "free may use half: {free:?}"
    );
    let refused = chat(&url, "tg-free", "hi");
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("x-tollgate-attempts"), Some("mock:provider_limit"));
    let paid: Vec<u16> = (0..5).map(|_| chat(&url, "tg-paid", "hi").status).collect();
    assert_eq!(paid, vec![200; 5], "paying traffic still gets the rest");
    assert_eq!(
        chat(&url, "tg-paid", "hi").status,
        429,
        "and the provider's own limit holds"
    );
}

#[test]
fn a_budget_survives_a_restart() {
    let mock = Mock::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let keys = "  - { id: capped, key: \"${CAPPED_KEY}\", limits: { budgets: [ { usd: 0.05, period: month } ] } }\n";
    let ledger = format!(
        "usage:\n  ledger: \"sqlite:{}\"\n",
        dir.path().join("spend.db").display()
    );
    let env = [("CAPPED_KEY", "tg-capped"), ("TOLLGATE_ADMIN_TOKEN", ADMIN)];
    let served = {
        let gw = Gateway::start_env("", &config(&mock, keys, &ledger), &env);
        let url = gw.url("/v1/chat/completions");
        let (mut served, mut refused) = (0, 0);
        // Until refused twice in a row, a pause apart: a first refusal can come from the last
        // answer's reservation, not yet settled to its smaller actual cost when the next request
        // is admitted; after the pause it is, and a refusal is the spend's.
        let mut in_a_row = 0;
        while in_a_row < 2 {
            if chat(&url, "tg-capped", "hi").status == 200 {
                served += 1;
                in_a_row = 0;
                assert!(served < 100, "the budget never ran out");
            } else {
                refused += 1;
                in_a_row += 1;
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        // Wait until the ledger holds every request before the process is killed.
        wait_until("the ledger", Duration::from_secs(10), || {
            gw.metric("tollgate_ledger_written_total") as usize == served + refused
        });
        served
    };
    assert!(served >= 1);
    let gw = Gateway::start_env("", &config(&mock, keys, &ledger), &env);
    let r = chat(&gw.url("/v1/chat/completions"), "tg-capped", "hi");
    assert_eq!(r.status, 429, "the restarted gateway forgot the spend: {}", r.body);
    assert_eq!(r.json()["error"]["code"], "budget_exceeded");
}

/// o200k tokens of a text, as the gateway's tokenizer counts them.
fn tokens_of(text: &str) -> u64 {
    tiktoken_rs::o200k_base_singleton().encode_ordinary(text).len() as u64
}

/// Limits are reserved on a bound of the prompt read off the body's bytes, and shrunk to the
/// tokenizer's count while the provider works; a refusal is decided on the count, not the bound.
#[test]
fn reservations_shrink_to_the_tokenizers_count_and_refusals_are_decided_on_it() {
    let mock = Mock::start(&[]);
    // A chat message costs 3 (priming) + 3 (message) + 1 ("user") + its text, plus max_tokens 10.
    let need = |text: &str| 3 + 3 + 1 + tokens_of(text) + 10;
    // The bound: the body's bytes, 3 for priming and 3 a `{`, plus max_tokens.
    let bound = |text: &str| {
        let body = json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": text}]});
        body.to_string().len() as u64 + 3 + 3 * 2 + 10
    };
    let slow_text = "hi [[mock: latency_ms=1500]]";
    // The slow request fits on its bound; had it kept it, a second "hi" would not fit.
    let roomy = bound(slow_text) + need("hi") - 1;
    assert!(bound("hi") > 40, "the bound must not fit the tight key");
    let keys = format!(
        "  - {{ id: roomy, key: \"${{ROOMY_KEY}}\", limits: {{ tpm: {roomy} }} }}\n\
         \x20 - {{ id: tight, key: \"${{TIGHT_KEY}}\", limits: {{ tpm: 40 }} }}\n"
    );
    let gw = Gateway::start_env(
        "",
        &config(&mock, &keys, ""),
        &[("ROOMY_KEY", "tg-roomy"), ("TIGHT_KEY", "tg-tight")],
    );
    let url = gw.url("/v1/chat/completions");

    // Refused on its bound, the request is counted: 18 tokens fit in 40.
    let r = chat(&url, "tg-tight", "hi");
    assert_eq!(r.status, 200, "refused on the bound, not the count: {}", r.body);
    assert_eq!(
        r.header("x-ratelimit-remaining-tokens"),
        Some((40 - need("hi")).to_string().as_str())
    );

    // A slow request, admitted on its bound, holds only its count once the provider has it.
    let slow = {
        let url = url.clone();
        std::thread::spawn(move || chat(&url, "tg-roomy", slow_text))
    };
    wait_until("the slow request reached the provider", Duration::from_secs(10), || {
        mock.requests().len() == 2
    });
    std::thread::sleep(Duration::from_millis(100));
    let r = chat(&url, "tg-roomy", "hi");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("x-ratelimit-remaining-tokens"),
        Some((roomy - need(slow_text) - need("hi")).to_string().as_str()),
        "both requests are held at the tokenizer's count"
    );
    let s = slow.join().unwrap();
    assert_eq!(s.status, 200, "{}", s.body);
    assert_eq!(
        s.header("x-ratelimit-remaining-tokens"),
        Some((roomy - need(slow_text)).to_string().as_str()),
        "the slow request's own headers follow its shrunk reservation"
    );
}

/// A provider's own token limit is also decided on the tokenizer's count, not the body's bound.
#[test]
fn a_providers_token_limit_is_decided_on_the_count() {
    let mock = Mock::start(&[]);
    let keys = "  - { id: open, key: \"${OPEN_KEY}\" }\n";
    let rest = config(&mock, keys, "").replace(
        "api_keys: [\"key-of-mock\"]\n",
        "api_keys: [\"key-of-mock\"]\n    limits: { tpm: 40 }\n",
    );
    let gw = Gateway::start_env("", &rest, &[("OPEN_KEY", "tg-open")]);
    let url = gw.url("/v1/chat/completions");
    // "hi": 3 + 3 + 1 + 1 prompt tokens plus max_tokens 10 = 18 by the count; its bound is over 40.
    let r = chat(&url, "tg-open", "hi");
    assert_eq!(r.status, 200, "refused on the bound: {}", r.body);
    assert_eq!(r.header("x-tollgate-attempts"), Some("mock:200"));
    // Settled at the provider's usage, the limit still runs out, and refuses by itself.
    let refused = (0..10)
        .map(|_| chat(&url, "tg-open", "hi"))
        .find(|r| r.status != 200)
        .expect("the provider's tpm never ran out");
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.header("x-tollgate-attempts"), Some("mock:provider_limit"));
}
