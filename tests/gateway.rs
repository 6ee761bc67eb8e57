//! End-to-end tests of the gateway core: the real `tollgate` gateway in front of the real mock
//! provider, both on loopback ports, driven over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// A gateway with one alias `demo` served by `mock`.
fn setup(server_extra: &str, provider_extra: &str) -> (Mock, Gateway) {
    let mock = Mock::start(&[]);
    let gw = Gateway::start(
        server_extra,
        &format!(
            "routing:\n  retries: 0\nauth:\n  anonymous_keys: [client-secret-123]\nproviders:\n{}models:\n  demo:\n    targets:\n      - {{ provider: mock, model: mock-gpt }}\n  embed:\n    targets: [ {{ provider: mock, model: mock-embed }} ]\n",
            mock_provider("mock", &mock.base_url(), provider_extra)
        ),
    );
    (mock, gw)
}

fn chat_body(text: &str) -> Value {
    json!({"model": "demo", "messages": [{"role": "user", "content": text}]})
}

#[test]
fn chat_is_passed_through_with_the_provider_key_and_upstream_model() {
    let (mock, gw) = setup("", "");
    let body = r#"{"messages":[{"role":"user","content":"hello"}],"x_custom":{"keep":[1,2.50,"me"]},"model":"demo","temperature":0.2}"#;
    let r = post(
        &gw.url("/v1/chat/completions"),
        body,
        &[("authorization", "Bearer client-secret-123")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert!(!v["choices"][0]["message"]["content"].as_str().unwrap().is_empty());
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(r.header("x-tollgate-provider"), Some("mock"));
    assert_eq!(r.header("x-tollgate-model"), Some("mock-gpt"));
    assert_eq!(r.header("content-type"), Some("application/json"));

    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    let rec = &reqs[0];
    assert_eq!(rec["path"], "/v1/chat/completions");
    assert_eq!(rec["headers"]["authorization"], "Bearer key-of-mock");
    let dump = rec.to_string();
    assert!(
        !dump.contains("client-secret-123"),
        "the client's key reached the provider: {dump}"
    );
    // Byte-for-byte the client's body, with only the model replaced.
    assert_eq!(rec["body"], body.replace(r#""model":"demo""#, r#""model":"mock-gpt""#));
}

#[test]
fn stream_arrives_incrementally_with_usage_when_asked() {
    let (_mock, gw) = setup("", "");
    let body = json!({
        "model": "demo", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "[[mock: chunks=5 chunk_delay_ms=250]]"}]
    });
    let (head, events) = post_stream(&gw.url("/v1/chat/completions"), &body.to_string());
    assert_eq!(head.status, 200);
    assert!(head.header("content-type").unwrap().starts_with("text/event-stream"));
    let datas: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(datas.iter().filter(|d| **d == "[DONE]").count(), 1);
    assert_eq!(*datas.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = datas[..datas.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: usize = chunks
        .iter()
        .filter(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        })
        .count();
    assert_eq!(content, 5);
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 5);
    // Relayed as it was produced: the first event long before the last (5 gaps of 250 ms).
    let spread = events.last().unwrap().at - events[0].at;
    assert!(
        spread >= Duration::from_millis(700),
        "events arrived together: spread {spread:?}"
    );

    // Without include_usage there is no usage chunk.
    let body = json!({"model": "demo", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let (_, events) = post_stream(&gw.url("/v1/chat/completions"), &body.to_string());
    assert!(events.iter().all(|e| !e.data.contains("\"usage\":{")), "{events:?}");
    assert_eq!(events.last().unwrap().data, "[DONE]");
}

#[test]
fn embeddings_completions_and_models() {
    let (mock, gw) = setup("", "");
    let e1 = post(
        &gw.url("/v1/embeddings"),
        r#"{"model":"embed","input":"the same text"}"#,
        &[],
    );
    let e2 = post(
        &gw.url("/v1/embeddings"),
        r#"{"model":"embed","input":"the same text"}"#,
        &[],
    );
    assert_eq!(e1.status, 200, "{}", e1.body);
    let (v1, v2) = (e1.json(), e2.json());
    assert_eq!(v1["data"][0]["embedding"], v2["data"][0]["embedding"]);
    assert!(v1["data"][0]["embedding"].as_array().unwrap().len() >= 8);
    let recs = mock.requests();
    assert_eq!(recs[0]["path"], "/v1/embeddings");
    assert!(recs[0]["body"].as_str().unwrap().contains(r#""model":"mock-embed""#));

    let c = post(&gw.url("/v1/completions"), r#"{"model":"demo","prompt":"Say hi"}"#, &[]);
    assert_eq!(c.status, 200, "{}", c.body);
    assert_eq!(c.json()["object"], "text_completion");

    let m = get(&gw.url("/v1/models"));
    assert_eq!(m.status, 200);
    let ids: Vec<String> = m.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec!["demo", "embed"]);

    let one = get(&gw.url("/v1/models/demo"));
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["id"], "demo");
    assert_eq!(one.json()["object"], "model");
    assert_eq!(
        get(&gw.url("/v1/models/nope")).json()["error"]["code"],
        "model_not_found"
    );
    // Anthropic SDKs (they send anthropic-version) get Anthropic's list shape.
    let r = ureq::get(&gw.url("/v1/models"))
        .set("anthropic-version", "2023-06-01")
        .call()
        .unwrap();
    let v: Value = serde_json::from_str(&r.into_string().unwrap()).unwrap();
    assert_eq!(v["data"][0]["type"], "model");
    assert_eq!(v["first_id"], "demo");
    assert_eq!(v["has_more"], false);
    assert!(v["data"][0]["created_at"].as_str().unwrap().ends_with('Z'));
}

fn assert_error(r: &Resp, status: u16, code: &str) -> Value {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(v["error"].get("type").is_some() && v["error"].get("param").is_some());
    v
}

#[test]
fn gateway_errors_are_openai_shaped() {
    let (mock, gw) = setup("  max_body_bytes: 2000\n", "");
    let chat = gw.url("/v1/chat/completions");
    assert_error(&post(&chat, "{not json", &[]), 400, "invalid_json");
    let v = assert_error(
        &post(&chat, r#"{"model":"demo"}"#, &[]),
        400,
        "missing_required_parameter",
    );
    assert_eq!(v["error"]["param"], "messages");
    let v = assert_error(
        &post(&chat, r#"{"model":"nope","messages":[]}"#, &[]),
        404,
        "model_not_found",
    );
    assert!(v["error"]["message"].as_str().unwrap().contains("nope"));
    let big = json!({"model": "demo", "messages": [{"role": "user", "content": "x".repeat(5000)}]});
    assert_error(&post(&chat, &big.to_string(), &[]), 413, "request_too_large");
    assert_error(&get(&gw.url("/v1/nothing")), 404, "unknown_url");
    assert_error(&get(&chat), 405, "method_not_allowed");
    assert!(mock.requests().is_empty(), "no bad request may reach the provider");
}

#[test]
fn values_the_gateway_can_see_are_refused_before_the_provider() {
    let (mock, gw) = setup("", "");
    let chat = gw.url("/v1/chat/completions");
    let user = |content: Value| json!([{"role": "user", "content": content}]);
    for (body, param, code) in [
        (
            json!({"model": "demo", "messages": user(json!(42))}),
            "messages[0].content",
            "invalid_type",
        ),
        (
            json!({"model": "demo", "messages": [{"role": 7, "content": "x"}]}),
            "messages[0].role",
            "invalid_type",
        ),
        (
            json!({"model": "demo", "messages": [{"role": "robot", "content": "x"}]}),
            "messages[0].role",
            "invalid_value",
        ),
        (
            json!({"model": "demo", "messages": user(json!([{"text": "x"}]))}),
            "messages[0].content[0].type",
            "missing_required_parameter",
        ),
        (
            json!({"model": "demo", "max_tokens": -5, "messages": user(json!("x"))}),
            "max_tokens",
            "integer_below_min_value",
        ),
        (
            json!({"model": "demo", "n": 0, "messages": user(json!("x"))}),
            "n",
            "integer_below_min_value",
        ),
        (
            json!({"model": "demo", "top_p": "high", "messages": user(json!("x"))}),
            "top_p",
            "invalid_type",
        ),
    ] {
        let v = assert_error(&post(&chat, &body.to_string(), &[]), 400, code);
        assert_eq!(v["error"]["param"], param, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(param), "{v}");
    }
    // A number too large for any integer type, written as JSON allows.
    let huge = r#"{"model":"demo","max_tokens":1e400,"messages":[{"role":"user","content":"x"}]}"#;
    let v = assert_error(&post(&chat, huge, &[]), 400, "invalid_type");
    assert_eq!(v["error"]["param"], "max_tokens");

    // /v1/messages (translated to the OpenAI-dialect mock): Anthropic's error shape, the message
    // naming the field in JSON's words.
    let r = post(
        &gw.url("/v1/messages"),
        &json!({"model": "demo", "max_tokens": -5, "messages": user(json!("x"))}).to_string(),
        &[],
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("'max_tokens'") && !message.contains("u64"),
        "{message}"
    );
    let r = post(
        &gw.url("/v1/messages"),
        &json!({"model": "demo", "max_tokens": 5, "messages": [{"role": "developer", "content": "x"}]}).to_string(),
        &[],
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("messages[0].role"), "{}", r.body);
    assert!(mock.requests().is_empty(), "no bad request may reach the provider");
}

#[test]
fn a_provider_that_cannot_be_reached_is_named_with_its_url() {
    let port = free_port();
    let base = format!("http://operator:${{PASS}}@127.0.0.1:{port}/v1");
    let gw = Gateway::start_env(
        "",
        &format!(
            "routing:\n  retries: 0\nproviders:\n{}models:\n  demo:\n    targets: [ {{ provider: gone, model: x }} ]\n",
            mock_provider("gone", &base, "")
        ),
        &[("PASS", "url-secret-7")],
    );
    let r = gw.chat(&chat_body("hi"));
    let v = assert_error(&r, 502, "upstream_connect_error");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("`gone`"), "{message}");
    assert!(message.contains(&format!("http://127.0.0.1:{port}/v1")), "{message}");
    assert!(
        !r.body.contains("url-secret-7") && !r.body.contains("key-of-gone"),
        "{}",
        r.body
    );
    assert!(
        !gw.proc.log_text().contains("url-secret-7"),
        "a credential reached the log"
    );
}

#[test]
fn upstream_errors_keep_their_status_body_and_retry_after() {
    let (_mock, gw) = setup("", "");
    let r = gw.chat(&chat_body("[[mock: status=429 retry_after=7]]"));
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");
    let r = gw.chat(&chat_body("[[mock: status=500]]"));
    assert_eq!(r.status, 500);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("mock"));
    let r = gw.chat(&chat_body("[[mock: status=400]]"));
    assert_eq!(r.status, 400);
}

#[test]
fn a_4_mib_prompt_reaches_the_provider_intact() {
    let (mock, gw) = setup("", "");
    let prompt: String = (0..4 * 1024 * 1024 / 16).map(|i| format!("{i:015x} ")).collect();
    let body = json!({"model": "demo", "messages": [{"role": "user", "content": prompt}]}).to_string();
    assert!(body.len() > 4 * 1024 * 1024);
    let r = post(&gw.url("/v1/chat/completions"), &body, &[]);
    assert_eq!(r.status, 200, "{}", &r.body[..r.body.len().min(300)]);
    let recs = mock.requests();
    let expected = body.replace(r#""model":"demo""#, r#""model":"mock-gpt""#);
    assert_eq!(recs[0]["body_len"], expected.len());
    assert!(recs[0]["body"] == expected.as_str(), "the upstream body differs");
    assert_eq!(recs[0]["headers"]["content-length"], expected.len().to_string());
}

#[test]
fn falls_back_on_dead_port_and_on_503_before_answering() {
    let good = Mock::start(&[]);
    let failing = Mock::start(&["--status", "503"]);
    let dead = format!("http://127.0.0.1:{}/v1", free_port());
    let providers = format!(
        "routing:\n  retries: 0\nproviders:\n{}{}{}",
        mock_provider("dead", &dead, "    timeouts: { connect: 500ms }\n"),
        mock_provider("failing", &failing.base_url(), ""),
        mock_provider("good", &good.base_url(), "")
    );
    let gw = Gateway::start(
        "",
        &format!("{providers}models:\n  demo:\n    targets:\n      - {{ provider: dead, model: a }}\n      - {{ provider: failing, model: b }}\n    fallbacks: [backup]\n  backup:\n    targets: [ {{ provider: good, model: c }} ]\n"),
    );
    let r = gw.chat(&chat_body("hi"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-tollgate-provider"), Some("good"));
    assert_eq!(failing.requests().len(), 1);
    assert_eq!(good.requests()[0]["headers"]["authorization"], "Bearer key-of-good");
    assert!(good.requests()[0]["body"].as_str().unwrap().contains(r#""model":"c""#));
    assert_eq!(gw.metric(r#"tollgate_fallbacks_total{model="demo"}"#), 1.0);
}

#[test]
fn first_byte_timeout_answers_504_instead_of_hanging() {
    let (_mock, gw) = setup("", "    timeouts: { first_byte: 300ms }\n");
    let start = Instant::now();
    let r = gw.chat(&chat_body("[[mock: latency_ms=5000]]"));
    assert_error(&r, 504, "upstream_timeout");
    assert!(start.elapsed() < Duration::from_secs(4), "took {:?}", start.elapsed());
}

#[test]
fn a_cut_or_stalled_stream_ends_with_an_error_event_not_done() {
    let (_mock, gw) = setup("", "    timeouts: { idle: 400ms }\n");
    for marker in [
        "[[mock: chunks=6 close_after=2]]",
        "[[mock: chunks=3 chunk_delay_ms=3000]]",
    ] {
        let body = json!({"model": "demo", "stream": true, "messages": [{"role": "user", "content": marker}]});
        let (head, events) = post_stream(&gw.url("/v1/chat/completions"), &body.to_string());
        assert_eq!(head.status, 200);
        assert!(events.iter().all(|e| e.data != "[DONE]"), "{marker}: {events:?}");
        let last: Value = serde_json::from_str(&events.last().unwrap().data).unwrap();
        let code = last["error"]["code"].as_str().unwrap();
        assert!(code.starts_with("stream_"), "{marker}: {last}");
    }
}

#[test]
fn client_disconnect_abandons_the_upstream_call() {
    let (mock, gw) = setup("", "");
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_millis(300)).build();
    let body = chat_body("[[mock: latency_ms=10000]]").to_string();
    let _ = agent
        .post(&gw.url("/v1/chat/completions"))
        .set("content-type", "application/json")
        .send_string(&body);
    // The gateway notices the client left long before the provider would have answered.
    wait_until("the request to be closed as 499", Duration::from_secs(3), || {
        gw.metric(r#"tollgate_requests_total{model="demo",provider="",status="499"}"#) == 1.0
    });
    assert_eq!(gw.metric("tollgate_inflight_requests"), 0.0);
    assert_eq!(mock.requests().len(), 1);
}

#[test]
fn admin_health_ready_and_metrics() {
    let (_mock, gw) = setup("", "");
    assert_eq!(get(&gw.admin_url("/health")).status, 200);
    // Ready once a provider is enabled and the tokenizer is loaded (a fraction of a second).
    wait_until("/ready", Duration::from_secs(10), || {
        get(&gw.admin_url("/ready")).status == 200
    });
    let ready = get(&gw.admin_url("/ready"));
    assert_eq!(ready.json()["providers_enabled"], 1);
    assert_eq!(ready.json()["tokenizer_loaded"], true);
    assert_eq!(gw.chat(&chat_body("hi")).status, 200);
    // Metrics are recorded in `logging`, just after the response went out.
    wait_until("the request metric", Duration::from_secs(5), || {
        gw.metric(r#"tollgate_requests_total{model="demo",provider="mock",status="200"}"#) == 1.0
    });
    assert_eq!(
        gw.metric(r#"tollgate_request_duration_seconds_count{model="demo",provider="mock"}"#),
        1.0
    );
    assert!(gw.metric(r#"tollgate_tokens_total{model="demo",provider="mock",type="completion"}"#) > 0.0);
    // The admin API is not on the data plane and vice versa.
    assert_eq!(get(&gw.url("/metrics")).status, 404);
    assert_eq!(get(&gw.admin_url("/v1/models")).status, 404);
}

#[test]
fn a_provider_without_its_key_is_disabled_not_fatal() {
    let mock = Mock::start(&[]);
    let rest = format!(
        "providers:\n  real:\n    kind: openai\n    base_url: https://api.openai.com/v1\n    api_keys: [\"${{TOLLGATE_TEST_UNSET_KEY}}\"]\n{}models:\n  gpt:\n    targets: [ {{ provider: real, model: gpt-4o }} ]\n  demo:\n    targets: [ {{ provider: mock, model: m }} ]\n",
        mock_provider("mock", &mock.base_url(), "")
    );
    let gw = Gateway::start("", &rest);
    let r = gw.chat(&json!({"model": "gpt", "messages": []}));
    let v = assert_error(&r, 503, "no_provider_available");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("TOLLGATE_TEST_UNSET_KEY"),
        "{v}"
    );
    assert_eq!(gw.chat(&chat_body("hi")).status, 200);
    let log = gw.proc.log_text();
    assert_eq!(
        log.matches("TOLLGATE_TEST_UNSET_KEY").count(),
        1,
        "one warning expected:\n{log}"
    );
}

#[test]
fn provider_quirks_drop_rejected_fields_before_sending() {
    let mock = Mock::start(&[]);
    let gw = Gateway::start(
        "",
        &format!(
            "providers:\n{}models:\n  demo:\n    targets: [ {{ provider: strict, model: up }} ]\n",
            mock_provider("strict", &mock.base_url(), "    drop_fields: [logit_bias, seed]\n")
        ),
    );
    let r = gw.chat(
        &json!({"model": "demo", "seed": 7, "logit_bias": {"1": 2}, "top_p": 0.5,
        "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let sent: Value = serde_json::from_str(mock.requests()[0]["body"].as_str().unwrap()).unwrap();
    assert!(sent.get("seed").is_none() && sent.get("logit_bias").is_none(), "{sent}");
    assert_eq!(sent["top_p"], 0.5);
    assert_eq!(sent["model"], "up");
}
