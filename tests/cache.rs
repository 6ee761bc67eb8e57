//! The response cache end to end, through the real gateway and the real mock provider: hits make
//! no call and cost nothing (the record says what they saved), the same question through both
//! client APIs shares an entry, streams are replayed in each dialect, tenants and parameters never
//! share, the client's controls, coalescing of identical requests in flight, failed or cut answers
//! never stored, and redacted requests stored and keyed in their redacted form only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// The mock behind a `gpt` alias (OpenAI dialect) and a `claude` alias (Anthropic), both priced;
/// keys `tg-a1` and `tg-a2` (team `a`), `tg-b1` (team `b`); `routes` are the config's routes.
fn setup(routes: &str, extra: &str) -> (Mock, Gateway) {
    let mock = Mock::start(&[]);
    let rest = format!(
        "routing:\n  retries: 0\nusage:\n  access_log: access.log\nproviders:\n{}  claude:\n    kind: anthropic\n    base_url: \"{}\"\n    api_keys: [\"key-of-claude\"]\n\
models:\n  gpt:\n    targets: [ {{ provider: oai, model: mock-gpt }} ]\n  claude:\n    targets: [ {{ provider: claude, model: claude-mock-1 }} ]\n\
pricing:\n  models:\n    - {{ provider: oai, model: mock-gpt, input: 1000, output: 2000 }}\n    - {{ provider: claude, model: claude-mock-1, input: 1000, output: 2000 }}\n\
admin:\n  token: \"${{ADMIN_TOKEN}}\"\n\
keys:\n  - {{ id: a1, key: \"${{KEY_A1}}\", team: a }}\n  - {{ id: a2, key: \"${{KEY_A2}}\", team: a }}\n  - {{ id: b1, key: \"${{KEY_B1}}\", team: b }}\n\
{extra}routes:\n{routes}",
        mock_provider("oai", &mock.base_url(), ""),
        mock.base_url()
    );
    let gw = Gateway::start_env(
        "",
        &rest,
        &[
            ("KEY_A1", "tg-a1"),
            ("KEY_A2", "tg-a2"),
            ("KEY_B1", "tg-b1"),
            ("ADMIN_TOKEN", ADMIN),
        ],
    );
    (mock, gw)
}

const ADMIN: &str = "cache-admin-token";

const CACHED: &str = "  - name: cached\n    cache: { mode: exact }\n";

fn question(content: &str) -> Value {
    json!({"model": "gpt", "max_tokens": 50, "temperature": 0,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": content}]})
}

fn chat_as(gw: &Gateway, key: &str, body: &Value, headers: &[(&str, &str)]) -> Resp {
    let auth = format!("Bearer {key}");
    let mut all = vec![("authorization", auth.as_str())];
    all.extend_from_slice(headers);
    post(&gw.url("/v1/chat/completions"), &body.to_string(), &all)
}

fn chat(gw: &Gateway, body: &Value) -> Resp {
    chat_as(gw, "tg-a1", body, &[])
}

fn cache_header(r: &Resp) -> &str {
    r.header("x-tollgate-cache").unwrap_or("(none)")
}

/// The access log's records, once `n` are there.
fn records(gw: &Gateway, n: usize) -> Vec<Value> {
    records_until(gw, |recs| recs.len() >= n)
}

/// The access log's records once `done` says they are all there (the log is written behind the
/// requests, every few milliseconds).
fn records_until(gw: &Gateway, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let log = gw.dir().join("access.log");
    let read = || -> Vec<Value> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    wait_until("the access-log records", Duration::from_secs(10), || done(&read()));
    read()
}

#[test]
fn a_repeated_question_is_answered_from_the_cache_with_no_call_and_no_cost() {
    let (mock, gw) = setup(CACHED, "");
    let first = chat(&gw, &question("What is the capital of France?"));
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(cache_header(&first), "miss");
    assert_eq!(first.header("x-tollgate-provider"), Some("oai"));
    let second = chat(&gw, &question("What is the capital of France?"));
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(cache_header(&second), "hit");
    assert_eq!(mock.requests().len(), 1, "a hit makes no call");
    assert_eq!(second.header("x-tollgate-provider"), None, "no provider served a hit");
    // The same answer, usage included (the client sees what the answer took).
    let (a, b) = (first.json(), second.json());
    assert_eq!(a["choices"], b["choices"]);
    assert_eq!(a["usage"], b["usage"]);
    assert_eq!(b["object"], "chat.completion");

    let recs = records(&gw, 2);
    let (miss, hit) = (&recs[0], &recs[1]);
    assert_eq!(
        (miss["cache"].as_str(), hit["cache"].as_str()),
        (Some("miss"), Some("hit"))
    );
    let cost = miss["cost_nanos"].as_i64().unwrap();
    assert!(cost > 0, "{miss}");
    assert_eq!(miss["cache_saved_nanos"], 0);
    assert_eq!(hit["cost_nanos"], 0, "a hit costs nothing: {hit}");
    assert_eq!(
        hit["cache_saved_nanos"].as_i64(),
        Some(cost),
        "it saved what the call cost"
    );
    assert_eq!(hit["prompt_tokens"], 0);
    assert!(hit["provider"].is_null());
    assert_eq!(hit["status"], 200);

    assert_eq!(gw.metric("tollgate_cache_requests_total{result=\"hit\"}"), 1.0);
    assert_eq!(gw.metric("tollgate_cache_requests_total{result=\"miss\"}"), 1.0);
    let saved = gw.metric("tollgate_cache_saved_usd_total");
    assert!((saved - cost as f64 / 1e9).abs() < 1e-9, "{saved} vs {cost}");
    assert_eq!(gw.metric("tollgate_cache_entries"), 1.0);
    assert!(gw.metric("tollgate_cache_bytes") > 0.0);
}

#[test]
fn the_same_question_through_both_client_apis_shares_one_entry() {
    let (mock, gw) = setup(CACHED, "");
    let first = chat(&gw, &question("Name three primes."));
    assert_eq!(cache_header(&first), "miss");
    let anthropic = json!({"model": "gpt", "max_tokens": 50, "temperature": 0, "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Name three primes."}]}]});
    let r = post(
        &gw.url("/v1/messages"),
        &anthropic.to_string(),
        &[("x-api-key", "tg-a1"), ("anthropic-version", "2023-06-01")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(cache_header(&r), "hit");
    assert_eq!(mock.requests().len(), 1);
    // An Anthropic message, with the OpenAI answer's text.
    let v = r.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(
        v["content"][0]["text"].as_str(),
        first.json()["choices"][0]["message"]["content"].as_str()
    );
    assert_eq!(v["stop_reason"], "end_turn");
}

/// The text of an OpenAI or Anthropic stream, whether it ended properly, and the usage chunk.
fn stream_text(events: &[Received], anthropic: bool) -> (String, bool, Option<Value>) {
    let (mut text, mut ended, mut usage) = (String::new(), false, None);
    for e in events {
        if e.data == "[DONE]" {
            ended = true;
            continue;
        }
        let v: Value = serde_json::from_str(&e.data).unwrap();
        if anthropic {
            match v["type"].as_str() {
                Some("content_block_delta") => text.push_str(v["delta"]["text"].as_str().unwrap_or("")),
                Some("message_delta") => usage = Some(v["usage"].clone()),
                Some("message_stop") => ended = true,
                _ => {}
            }
        } else {
            if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
                text.push_str(t);
            }
            if !v["usage"].is_null() {
                usage = Some(v["usage"].clone());
            }
        }
    }
    (text, ended, usage)
}

#[test]
fn hits_are_replayed_as_streams_in_either_dialect_and_streamed_misses_are_stored() {
    let (mock, gw) = setup(CACHED, "");
    // A whole answer, then the same question streamed (with and without the usage chunk).
    let whole = chat(&gw, &question("Tell me a short story. [[mock: chunks=40]]"));
    let text = whole.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let mut body = question("Tell me a short story. [[mock: chunks=40]]");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let auth = [("authorization", "Bearer tg-a1")];
    let (head, events) = post_stream_with(&gw.url("/v1/chat/completions"), &body.to_string(), &auth);
    assert_eq!(head.status, 200);
    assert_eq!(cache_header(&head), "hit");
    assert!(head.header("content-type").unwrap().starts_with("text/event-stream"));
    let (streamed, ended, usage) = stream_text(&events, false);
    assert_eq!((streamed.as_str(), ended), (text.as_str(), true));
    assert_eq!(usage.unwrap(), whole.json()["usage"]);
    assert!(events.len() > 3, "replayed in pieces: {}", events.len());
    body["stream_options"] = json!({"include_usage": false});
    let (_, events) = post_stream_with(&gw.url("/v1/chat/completions"), &body.to_string(), &auth);
    let (_, _, usage) = stream_text(&events, false);
    assert!(usage.is_none(), "no usage chunk unless asked");
    // Anthropic's event sequence.
    let anthropic = json!({"model": "gpt", "max_tokens": 50, "temperature": 0, "system": "Be brief", "stream": true,
        "messages": [{"role": "user", "content": "Tell me a short story. [[mock: chunks=40]]"}]});
    let (_, events) = post_stream_with(
        &gw.url("/v1/messages"),
        &anthropic.to_string(),
        &[("x-api-key", "tg-a1")],
    );
    // ("Be brief" without the full stop: a different system prompt, a miss.)
    assert_eq!(mock.requests().len(), 2);
    let (_, events_hit) = post_stream_with(
        &gw.url("/v1/messages"),
        &anthropic.to_string(),
        &[("x-api-key", "tg-a1")],
    );
    assert_eq!(mock.requests().len(), 2, "the streamed miss was stored");
    let (live, live_ended, _) = stream_text(&events, true);
    let (replayed, replay_ended, replay_usage) = stream_text(&events_hit, true);
    assert!(live_ended && replay_ended);
    assert_eq!(replayed, live);
    assert!(replay_usage.unwrap()["output_tokens"].as_u64().unwrap() > 0);
    let types: Vec<String> = events_hit
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(&e.data).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(types.first().map(String::as_str), Some("message_start"));
    assert_eq!(types.last().map(String::as_str), Some("message_stop"));
    for t in [
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
    ] {
        assert!(types.iter().any(|x| x == t), "{t} missing: {types:?}");
    }
}

#[test]
fn tenants_and_parameters_never_share_an_entry() {
    let routes = "  - name: per-key\n    match: { model: claude }\n    cache: { partition: key }\n  - name: per-team\n    cache: {}\n";
    let (mock, gw) = setup(routes, "");
    let q = question("Which answer is yours?");
    assert_eq!(cache_header(&chat_as(&gw, "tg-a1", &q, &[])), "miss");
    // Another team: a miss; the same team, another key: a hit (the default partition is the team).
    assert_eq!(cache_header(&chat_as(&gw, "tg-b1", &q, &[])), "miss");
    assert_eq!(cache_header(&chat_as(&gw, "tg-a2", &q, &[])), "hit");
    assert_eq!(mock.requests().len(), 2);
    // Any change to what shapes the answer is another entry.
    let mut changes = Vec::new();
    for (field, value) in [
        ("max_tokens", json!(51)),
        ("top_p", json!(0.5)),
        ("seed", json!(7)),
        ("stop", json!(["x"])),
        ("response_format", json!({"type": "json_object"})),
        (
            "tools",
            json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]),
        ),
    ] {
        let mut b = q.clone();
        b[field] = value;
        changes.push(b);
    }
    let mut b = q.clone();
    b["messages"][0]["content"] = json!("Be very brief.");
    changes.push(b);
    let mut b = q.clone();
    b["messages"][1]["content"] = json!("Which answer is yours? ");
    changes.push(b);
    for (i, b) in changes.iter().enumerate() {
        let r = chat_as(&gw, "tg-a1", b, &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(cache_header(&r), "miss", "change {i} hit: {b}");
    }
    assert_eq!(mock.requests().len(), 2 + changes.len());
    // Formatting does not matter: keys reordered, whitespace added, a string as one text part.
    let text = "{ \"temperature\": 0, \"messages\": [ {\"content\": \"Be brief.\", \"role\": \"system\"}, {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"Which answer is yours?\"}]} ],\n \"max_tokens\": 50, \"model\": \"gpt\" }";
    let r = post(
        &gw.url("/v1/chat/completions"),
        text,
        &[("authorization", "Bearer tg-a2")],
    );
    assert_eq!(cache_header(&r), "hit", "{}", r.body);
    // Per key: the same team does not share.
    let mut c = q.clone();
    c["model"] = json!("claude");
    assert_eq!(cache_header(&chat_as(&gw, "tg-a1", &c, &[])), "miss");
    assert_eq!(cache_header(&chat_as(&gw, "tg-a2", &c, &[])), "miss");
    assert_eq!(cache_header(&chat_as(&gw, "tg-a1", &c, &[])), "hit");
}

#[test]
fn sampling_above_the_routes_temperature_and_off_routes_bypass_the_cache() {
    let routes = "  - name: off\n    match: { model: claude }\n    cache: { mode: off }\n  - name: warm\n    cache: { max_temperature: 0.5 }\n";
    let (mock, gw) = setup(routes, "");
    let mut q = question("Pick a number.");
    q["temperature"] = json!(0.9);
    for _ in 0..2 {
        assert_eq!(cache_header(&chat(&gw, &q)), "bypass");
    }
    // No temperature is the provider's default of 1.
    q.as_object_mut().unwrap().remove("temperature");
    assert_eq!(cache_header(&chat(&gw, &q)), "bypass");
    q["temperature"] = json!(0.5);
    assert_eq!(cache_header(&chat(&gw, &q)), "miss");
    assert_eq!(cache_header(&chat(&gw, &q)), "hit");
    assert_eq!(mock.requests().len(), 4);
    let mut c = question("Pick a number.");
    c["model"] = json!("claude");
    for _ in 0..2 {
        assert_eq!(cache_header(&chat(&gw, &c)), "bypass");
    }
    assert_eq!(mock.requests().len(), 6);
    // Requests asking for logprobs cannot be replayed faithfully: not cached.
    let mut l = question("Pick a letter.");
    l["logprobs"] = json!(true);
    for _ in 0..2 {
        assert_eq!(cache_header(&chat(&gw, &l)), "bypass");
    }
    // Routes without a cache policy say nothing.
    assert_eq!(mock.requests().len(), 8);
}

#[test]
fn the_client_can_refuse_refresh_or_insist_on_the_cache() {
    let (mock, gw) = setup(CACHED, "");
    let q = question("Controls?");
    // only-if-cached on a miss: 504, no call.
    let r = chat_as(&gw, "tg-a1", &q, &[("x-tollgate-cache", "only-if-cached")]);
    assert_eq!(r.status, 504, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "not_cached");
    assert_eq!(mock.requests().len(), 0);
    // no-store: a call, nothing stored.
    for h in [("x-tollgate-cache", "no-store"), ("cache-control", "no-store")] {
        let r = chat_as(&gw, "tg-a1", &q, &[h]);
        assert_eq!(cache_header(&r), "bypass");
    }
    assert_eq!(mock.requests().len(), 2);
    assert_eq!(cache_header(&chat(&gw, &q)), "miss");
    assert_eq!(mock.requests().len(), 3);
    // refresh (or no-cache): a call whose answer replaces the entry.
    for h in [
        ("x-tollgate-cache", "refresh"),
        ("cache-control", "max-age=0, no-cache"),
    ] {
        let r = chat_as(&gw, "tg-a1", &q, &[h]);
        assert_eq!(cache_header(&r), "miss");
    }
    assert_eq!(mock.requests().len(), 5);
    let r = chat_as(&gw, "tg-a1", &q, &[("x-tollgate-cache", "only-if-cached")]);
    assert_eq!((r.status, cache_header(&r)), (200, "hit"));
    assert_eq!(mock.requests().len(), 5);
    // A value the header does not take is an error naming it, not ignored.
    let r = chat_as(&gw, "tg-a1", &q, &[("x-tollgate-cache", "forever")]);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("x-tollgate-cache"), "{}", r.body);
}

#[test]
fn identical_requests_in_flight_make_one_call() {
    let (mock, gw) = setup(CACHED, "");
    let q = question("Slow question [[mock: latency_ms=600]]");
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let url = gw.url("/v1/chat/completions");
            let body = q.to_string();
            std::thread::spawn(move || post(&url, &body, &[("authorization", "Bearer tg-a1")]))
        })
        .collect();
    let answers: Vec<Resp> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(mock.requests().len(), 1, "one call for six identical requests");
    let mut outcomes: Vec<&str> = answers.iter().map(cache_header).collect();
    outcomes.sort();
    assert_eq!(outcomes, ["hit", "hit", "hit", "hit", "hit", "miss"]);
    let text = answers[0].json()["choices"].clone();
    assert!(answers.iter().all(|a| a.status == 200 && a.json()["choices"] == text));
    let recs = records(&gw, 6);
    let coalesced = recs.iter().filter(|r| r["cache"] == "coalesced").count();
    assert_eq!(coalesced, 5, "{recs:?}");
    assert_eq!(gw.metric("tollgate_cache_requests_total{result=\"coalesced\"}"), 5.0);
}

#[test]
fn failed_cut_and_blocked_answers_are_never_stored() {
    let routes = "  - name: cached\n    cache: {}\n    guardrails: { output: block }\n";
    let (mock, gw) = setup(routes, "");
    // An error answer.
    let q = question("Fail please [[mock: status=500]]");
    for _ in 0..2 {
        let r = chat(&gw, &q);
        assert_eq!(r.status, 500);
    }
    assert_eq!(mock.requests().len(), 2);
    // A stream cut by the provider.
    let mut s = question("Cut please [[mock: chunks=20 close_after=3]]");
    s["stream"] = json!(true);
    let auth = [("authorization", "Bearer tg-a1")];
    for _ in 0..2 {
        let (head, _) = post_stream_with(&gw.url("/v1/chat/completions"), &s.to_string(), &auth);
        assert_eq!(cache_header(&head), "miss");
    }
    assert_eq!(mock.requests().len(), 4);
    // An answer the output checks refused (the model wrote a secret).
    let b = question("Key AKIAIOSFODNN7EXAMPLE [[mock: echo]]");
    for _ in 0..2 {
        let r = chat(&gw, &b);
        assert_eq!(r.status, 400, "{}", r.body);
    }
    assert_eq!(mock.requests().len(), 6);
}

#[test]
fn redacted_requests_share_the_redacted_entry_and_get_their_own_values_back() {
    let routes = "  - name: cached\n    cache: {}\n    guardrails: { pii: redact }\n";
    let (mock, gw) = setup(routes, "");
    let ask = |email: &str| question(&format!("Write to {email} today. [[mock: echo]]"));
    let first = chat(&gw, &ask("jane.doe@example.com"));
    assert_eq!(cache_header(&first), "miss");
    let text = first.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(text.contains("jane.doe@example.com"), "{text}");
    // Another person's address: the same redacted question, so the stored (placeholder) answer
    // serves it, restored with this request's own value.
    let second = chat(&gw, &ask("max.mustermann@example.org"));
    assert_eq!(cache_header(&second), "hit");
    assert_eq!(mock.requests().len(), 1);
    let text = second.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(text.contains("max.mustermann@example.org"), "{text}");
    assert!(!text.contains("jane.doe"), "another request's value leaked: {text}");
    // The provider saw placeholders only.
    assert!(!mock.requests()[0]["body"].to_string().contains("jane.doe"));
}

fn admin(gw: &Gateway, purge: Option<Value>) -> Resp {
    let auth = format!("Bearer {ADMIN}");
    match purge {
        Some(body) => post(
            &gw.admin_url("/admin/cache/purge"),
            &body.to_string(),
            &[("authorization", &auth)],
        ),
        None => get_with(&gw.admin_url("/admin/cache"), &[("authorization", &auth)]),
    }
}

#[test]
fn the_admin_api_and_the_cli_show_and_purge_the_cache() {
    let routes = "  - name: cached\n    cache: {}\n";
    let (mock, gw) = setup(routes, "");
    let q = question("Purge me");
    let mut c = q.clone();
    c["model"] = json!("claude");
    let fill = |gw: &Gateway| {
        let keys: Vec<String> = [("tg-a1", &q), ("tg-b1", &q), ("tg-a1", &c)]
            .iter()
            .map(|(k, b)| {
                chat_as(gw, k, b, &[])
                    .header("x-tollgate-cache-key")
                    .unwrap()
                    .to_string()
            })
            .collect();
        keys
    };
    let keys = fill(&gw);
    assert_eq!(keys[0].len(), 64);
    assert_ne!(keys[0], keys[1], "another tenant, another key");
    let stats = admin(&gw, None).json();
    assert_eq!(stats["entries"], 3, "{stats}");
    assert!(stats["bytes"].as_u64().unwrap() > 0);
    assert_eq!(stats["max_bytes"], 256 << 20);
    // By tenant: team a's two entries go, team b's stays.
    let r = admin(&gw, Some(json!({"tenant": "team:a"})));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["removed"], 2);
    assert_eq!(cache_header(&chat_as(&gw, "tg-b1", &q, &[])), "hit");
    assert_eq!(cache_header(&chat_as(&gw, "tg-a1", &q, &[])), "miss");
    // By key, by model.
    let r = admin(&gw, Some(json!({"key": keys[1]})));
    assert_eq!(r.json()["removed"], 1, "{}", r.body);
    assert_eq!(cache_header(&chat_as(&gw, "tg-b1", &q, &[])), "miss");
    assert_eq!(cache_header(&chat_as(&gw, "tg-a1", &c, &[])), "miss");
    let r = admin(&gw, Some(json!({"model": "claude"})));
    assert_eq!(r.json()["removed"], 1, "{}", r.body);
    assert_eq!(cache_header(&chat_as(&gw, "tg-a1", &c, &[])), "miss");
    // Bad purges are refused with what to send; the token is required.
    for bad in [
        json!({}),
        json!({"all": false}),
        json!({"key": "abc"}),
        json!({"tenant": "team:a", "model": "gpt"}),
    ] {
        let r = admin(&gw, Some(bad.clone()));
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    let r = post(&gw.admin_url("/admin/cache/purge"), "{\"all\": true}", &[]);
    assert_eq!(r.status, 401);

    // The CLI: stats, then purge everything.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .arg("cache")
            .args(args)
            .args(["--config", gw.config.to_str().unwrap()])
            .env("ADMIN_TOKEN", ADMIN)
            .env("KEY_A1", "x")
            .env("KEY_A2", "y")
            .env("KEY_B1", "z")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_str::<Value>(&text).unwrap()
    };
    let stats = cli(&["stats"]);
    assert!(stats["entries"].as_u64().unwrap() >= 1, "{stats}");
    let purged = cli(&["purge", "--all"]);
    assert_eq!(purged["entries"], 0, "{purged}");
    let calls = mock.requests().len();
    assert_eq!(cache_header(&chat_as(&gw, "tg-b1", &q, &[])), "miss");
    assert_eq!(mock.requests().len(), calls + 1);
}

#[test]
fn two_nodes_sharing_redis_serve_each_others_answers_and_purges() {
    let redis = common::redis::Redis::start();
    let mock = Mock::start(&[]);
    let extra = format!(
        "cache:\n  redis: {{ url: \"{}\", prefix: \"t{}\" }}\n",
        redis.url(),
        std::process::id()
    );
    let config = |mock: &Mock| {
        format!(
            "routing:\n  retries: 0\nproviders:\n{}models:\n  gpt:\n    targets: [ {{ provider: oai, model: mock-gpt }} ]\n\
admin:\n  token: \"${{ADMIN_TOKEN}}\"\nkeys:\n  - {{ id: a1, key: \"${{KEY_A1}}\", team: a }}\n  - {{ id: b1, key: \"${{KEY_B1}}\", team: b }}\n\
{extra}routes:\n  - name: cached\n    cache: {{}}\n",
            mock_provider("oai", &mock.base_url(), "")
        )
    };
    let envs = [("KEY_A1", "tg-a1"), ("KEY_B1", "tg-b1"), ("ADMIN_TOKEN", ADMIN)];
    let a = Gateway::start_env("", &config(&mock), &envs);
    let b = Gateway::start_env("", &config(&mock), &envs);
    let q = question("Shared between nodes");
    let first = chat_as(&a, "tg-a1", &q, &[]);
    assert_eq!(cache_header(&first), "miss");
    // Node B has never seen the question: Redis has the answer (written after A's answer ended).
    wait_until("the answer in Redis", Duration::from_secs(5), || {
        let r = chat_as(&b, "tg-a1", &q, &[("x-tollgate-cache", "only-if-cached")]);
        r.status == 200 && cache_header(&r) == "hit"
    });
    assert_eq!(mock.requests().len(), 1, "node B made no call");
    let hit = chat_as(&b, "tg-a1", &q, &[]);
    assert_eq!(hit.json()["choices"], first.json()["choices"]);
    // Another tenant on node B: still a miss (the tenant is in the key).
    assert_eq!(cache_header(&chat_as(&b, "tg-b1", &q, &[])), "miss");
    assert_eq!(mock.requests().len(), 2);
    // A purge on node B reaches Redis and node A's own store.
    let r = admin(&b, Some(json!({"tenant": "team:a"})));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["removed_shared"], 1, "{}", r.body);
    wait_until("node A's store purged", Duration::from_secs(5), || {
        chat_as(&a, "tg-a1", &q, &[("x-tollgate-cache", "only-if-cached")]).status == 504
    });
    // Team b's entry, on both nodes, is untouched.
    let r = chat_as(&a, "tg-b1", &q, &[("x-tollgate-cache", "only-if-cached")]);
    assert_eq!((r.status, cache_header(&r)), (200, "hit"));

    // Redis down: each node serves from its own store and misses go to the provider; no errors.
    redis.kill();
    let r = chat_as(&a, "tg-b1", &q, &[]);
    assert_eq!((r.status, cache_header(&r)), (200, "hit"));
    let q2 = question("While Redis is down");
    for _ in 0..2 {
        let r = chat_as(&b, "tg-a1", &q2, &[]);
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert_eq!(
        cache_header(&chat_as(&b, "tg-a1", &q2, &[])),
        "hit",
        "the local store still works"
    );
}

/// The real embedding model's directory (fetched once by scripts/fetch-model.sh).
fn model_dir() -> String {
    let out = std::process::Command::new("bash")
        .arg("scripts/fetch-model.sh")
        .output()
        .expect("run scripts/fetch-model.sh");
    assert!(
        out.status.success(),
        "fetch-model.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn paraphrases_hit_semantically_and_look_alikes_do_not() {
    let extra = format!("cache:\n  semantic: {{ model: \"{}\", timeout: 5s }}\n", model_dir());
    let routes = "  - name: faq\n    cache: { mode: semantic }\n";
    let (mock, gw) = setup(routes, &extra);
    let first = chat(&gw, &question("How do I reset my password?"));
    assert_eq!(cache_header(&first), "miss");
    // The answer is indexed once stored (after the response): retry briefly.
    let mut para = chat(&gw, &question("How can I reset my password?"));
    for _ in 0..20 {
        if cache_header(&para).starts_with("semantic-hit") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        para = chat(&gw, &question("How can I reset my password?"));
    }
    let h = cache_header(&para);
    assert!(h.starts_with("semantic-hit; score=0.9"), "{h}");
    assert_eq!(para.json()["choices"], first.json()["choices"]);
    let calls = mock.requests().len();
    // The look-alikes: close embeddings, different answers: misses, counted as rejected.
    for (a, b) in [
        (
            "What is our refund policy for orders under $50?",
            "What is our refund policy for orders over $50?",
        ),
        ("Convert 100 Fahrenheit to Celsius", "Convert 100 Celsius to Fahrenheit"),
    ] {
        assert_eq!(cache_header(&chat(&gw, &question(a))), "miss");
        std::thread::sleep(Duration::from_millis(300));
        let r = chat(&gw, &question(b));
        assert_eq!(cache_header(&r), "miss", "{b}");
    }
    assert_eq!(mock.requests().len(), calls + 4);
    // Another context (system prompt): no paraphrase hit either.
    let mut other = question("How can I reset my password?");
    other["messages"][0]["content"] = json!("Answer in French.");
    assert_eq!(cache_header(&chat(&gw, &other)), "miss");
    // Another tenant: the same.
    assert_eq!(
        cache_header(&chat_as(&gw, "tg-b1", &question("How can I reset my password?"), &[])),
        "miss"
    );

    let recs = records(&gw, 8);
    let outcome = |r: &Value| r["cache"].as_str().unwrap_or("").to_string();
    let outcomes: Vec<String> = recs.iter().map(outcome).collect();
    assert!(outcomes.iter().any(|o| o == "semantic-hit"), "{outcomes:?}");
    assert_eq!(
        outcomes.iter().filter(|o| *o == "semantic-rejected").count(),
        2,
        "{outcomes:?}"
    );
    let hit = recs.iter().find(|r| r["cache"] == "semantic-hit").unwrap();
    assert_eq!(hit["cost_nanos"], 0);
    assert!(hit["cache_saved_nanos"].as_i64().unwrap() > 0, "{hit}");
    assert!(gw.metric("tollgate_cache_requests_total{result=\"semantic-hit\"}") >= 1.0);
    assert_eq!(
        gw.metric("tollgate_cache_requests_total{result=\"semantic-rejected\"}"),
        2.0
    );
}

#[test]
fn a_paraphrase_of_a_question_answered_through_one_node_hits_on_the_other() {
    let redis = common::redis::Redis::start();
    let mock = Mock::start(&[]);
    let extra = format!(
        "cache:\n  redis: {{ url: \"{}\", prefix: \"s{}\" }}\n  semantic: {{ model: \"{}\", timeout: 5s }}\n",
        redis.url(),
        std::process::id(),
        model_dir()
    );
    let config = format!(
        "routing:\n  retries: 0\nproviders:\n{}models:\n  gpt:\n    targets: [ {{ provider: oai, model: mock-gpt }} ]\n\
admin:\n  token: \"${{ADMIN_TOKEN}}\"\nkeys:\n  - {{ id: a1, key: \"${{KEY_A1}}\", team: a }}\n\
{extra}routes:\n  - name: faq\n    cache: {{ mode: semantic }}\n",
        mock_provider("oai", &mock.base_url(), "")
    );
    let envs = [("KEY_A1", "tg-a1"), ("ADMIN_TOKEN", ADMIN)];
    let a = Gateway::start_env("", &config, &envs);
    let b = Gateway::start_env("", &config, &envs);
    let first = chat_as(&a, "tg-a1", &question("How do I delete my account?"), &[]);
    assert_eq!(cache_header(&first), "miss");
    // Node B learns the question from the stream, and the answer comes from Redis.
    let mut seen = String::new();
    wait_until("a semantic hit on node B", Duration::from_secs(10), || {
        let r = chat_as(
            &b,
            "tg-a1",
            &question("How can I delete my account?"),
            &[("x-tollgate-cache", "only-if-cached")],
        );
        seen = cache_header(&r).to_string();
        seen.starts_with("semantic-hit")
    });
    assert_eq!(mock.requests().len(), 1, "node B made no call ({seen})");
    // A node started later replays the stream: it knows the question too.
    let c = Gateway::start_env("", &config, &envs);
    wait_until("a semantic hit on node C", Duration::from_secs(10), || {
        let r = chat_as(
            &c,
            "tg-a1",
            &question("How can I delete my account?"),
            &[("x-tollgate-cache", "only-if-cached")],
        );
        cache_header(&r).starts_with("semantic-hit")
    });
    // A look-alike is still refused across nodes.
    let r = chat_as(
        &b,
        "tg-a1",
        &question("How do I delete my account in 30 days?"),
        &[("x-tollgate-cache", "only-if-cached")],
    );
    assert_eq!(r.status, 504, "{}", cache_header(&r));
    assert_eq!(mock.requests().len(), 1);
}

#[test]
fn a_stale_answer_is_served_while_one_background_call_refreshes_it() {
    let routes = "  - name: swr\n    cache: { ttl: 1s, stale: 1m }\n";
    let (mock, gw) = setup(routes, "");
    let q = question("Slow to answer [[mock: latency_ms=400]]");
    let first = chat(&gw, &q);
    assert_eq!(cache_header(&first), "miss");
    std::thread::sleep(Duration::from_millis(1200));
    // Expired: served stale at once (no wait for the provider), refreshed in the background by
    // one call however many requests find it stale meanwhile.
    let handles: Vec<_> = (0..5)
        .map(|_| {
            let url = gw.url("/v1/chat/completions");
            let body = q.to_string();
            std::thread::spawn(move || {
                let t = std::time::Instant::now();
                let r = post(&url, &body, &[("authorization", "Bearer tg-a1")]);
                (r, t.elapsed())
            })
        })
        .collect();
    for h in handles {
        let (r, took) = h.join().unwrap();
        assert_eq!(cache_header(&r), "stale");
        assert_eq!(r.json()["choices"], first.json()["choices"]);
        assert!(
            took < Duration::from_millis(350),
            "a stale answer does not wait for the refresh: {took:?}"
        );
    }
    wait_until("the refresh's call", Duration::from_secs(5), || {
        mock.requests().len() == 2
    });
    wait_until("the refreshed answer", Duration::from_secs(5), || {
        cache_header(&chat(&gw, &q)) == "hit"
    });
    assert_eq!(mock.requests().len(), 2, "one refresh for five stale hits");
    // The refresh is a provider call for the tenant: its own record, with its cost (written when
    // the refresh ends, so possibly after the stale answers' records).
    let recs = records_until(&gw, |recs| {
        recs.len() >= 8 && recs.iter().any(|r| r["cache"] == "refresh")
    });
    let refresh: Vec<&Value> = recs.iter().filter(|r| r["cache"] == "refresh").collect();
    assert_eq!(refresh.len(), 1, "{recs:?}");
    assert_eq!(refresh[0]["key_id"], "a1");
    assert_eq!(refresh[0]["provider"], "oai");
    assert!(refresh[0]["cost_nanos"].as_i64().unwrap() > 0);
    // (The five, and those the wait above made while the refresh ran: one refresh for all.)
    assert!(recs.iter().filter(|r| r["cache"] == "stale").count() >= 5);
}

#[test]
fn embeddings_from_an_alias_the_gateway_serves_are_routed_and_billed_to_the_caches_key() {
    // The mock embeds texts that differ only in case and punctuation alike: a paraphrase as far
    // as the plumbing is concerned.
    let extra = "cache:\n  semantic: { embeddings: { model: embed, key: \"${KEY_CACHE}\" }, timeout: 5s }\n";
    let routes = "  - name: faq\n    match: { model: gpt }\n    cache: { mode: semantic }\n";
    let mock = Mock::start(&[]);
    let rest = format!(
        "routing:\n  retries: 0\nusage:\n  access_log: access.log\nproviders:\n{}models:\n  gpt:\n    targets: [ {{ provider: oai, model: mock-gpt }} ]\n  embed:\n    targets: [ {{ provider: oai, model: mock-embed }} ]\n\
keys:\n  - {{ id: a1, key: \"${{KEY_A1}}\", team: a }}\n  - {{ id: cache, key: \"${{KEY_CACHE}}\", team: infra }}\n{extra}routes:\n{routes}",
        mock_provider("oai", &mock.base_url(), "")
    );
    let gw = Gateway::start_env(
        "",
        &rest,
        &[("KEY_A1", "tg-a1-long-enough"), ("KEY_CACHE", "tg-cache-key-long")],
    );
    let ask = |q: &str| chat_as(&gw, "tg-a1-long-enough", &question(q), &[]);
    assert_eq!(cache_header(&ask("How do I reset my password?")), "miss");
    let mut h = String::new();
    for _ in 0..20 {
        h = cache_header(&ask("how do i reset my password")).to_string();
        if h.starts_with("semantic-hit") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(h.starts_with("semantic-hit; score=1.000"), "{h}");
    let chat_calls = mock
        .requests()
        .iter()
        .filter(|r| r["path"].as_str().unwrap_or("").ends_with("/chat/completions"))
        .count();
    assert_eq!(chat_calls, 1);
    // Each lookup's embedding was a request of its own, under the cache's key.
    let recs = records(&gw, 4);
    let embeds: Vec<&Value> = recs.iter().filter(|r| r["endpoint"] == "embeddings").collect();
    assert!(embeds.len() >= 2, "{recs:?}");
    assert!(
        embeds
            .iter()
            .all(|r| r["key_id"] == "cache" && r["model"] == "embed" && r["status"] == 200),
        "{embeds:?}"
    );
}
