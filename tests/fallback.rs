//! Retries, backoff, Retry-After, fallback chains and the time budget, against the real mock's
//! fault injection: what the client sees (exactly one answer, the attempts header, the status) and
//! what the mock recorded (the order and number of attempts).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn chat_body(text: &str) -> serde_json::Value {
    json!({"model": "m", "messages": [{"role": "user", "content": text}]})
}

fn routing(extra: &str) -> String {
    format!("routing:\n  backoff: 10ms\n  backoff_max: 50ms\n{extra}")
}

#[test]
fn a_recovering_target_is_retried_in_place() {
    let flaky = Mock::start(&["--status", "503", "--fail-first", "2"]);
    let gw = Gateway::start(
        "",
        &format!(
            "{}providers:\n{}models:\n  m:\n    targets: [ {{ provider: flaky, model: x }} ]\n",
            routing("  retries: 2\n"),
            mock_provider("flaky", &flaky.base_url(), "")
        ),
    );
    let r = gw.chat(&chat_body("hi"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-tollgate-attempts"), Some("flaky:503,flaky:503,flaky:200"));
    assert_eq!(flaky.requests().len(), 3);
}

#[test]
fn retries_run_out_then_the_chain_falls_back_in_order() {
    let a = Mock::start(&["--status", "500"]);
    let b = Mock::start(&["--status", "429"]);
    let c = Mock::start(&[]);
    let gw = Gateway::start(
        "",
        &format!(
            "{}providers:\n{}{}{}models:\n  m:\n    targets: [ {{ provider: a, model: x }}, {{ provider: b, model: y }} ]\n    fallbacks: [n]\n  n:\n    targets: [ {{ provider: c, model: z }} ]\n",
            routing("  retries: 1\n"),
            mock_provider("a", &a.base_url(), ""),
            mock_provider("b", &b.base_url(), ""),
            mock_provider("c", &c.base_url(), "")
        ),
    );
    let r = gw.chat(&chat_body("hi"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-tollgate-attempts"), Some("a:500,a:500,b:429,b:429,c:200"));
    assert_eq!(r.header("x-tollgate-provider"), Some("c"));
    assert_eq!((a.requests().len(), b.requests().len(), c.requests().len()), (2, 2, 1));
    assert!(c.requests()[0]["body"].as_str().unwrap().contains(r#""model":"z""#));
}

#[test]
fn the_last_targets_error_is_relayed_when_nothing_is_left() {
    let a = Mock::start(&["--status", "429", "--retry-after", "0"]);
    let gw = Gateway::start(
        "",
        &format!(
            "{}providers:\n{}models:\n  m:\n    targets: [ {{ provider: a, model: x }} ]\n",
            routing("  retries: 1\n"),
            mock_provider("a", &a.base_url(), "")
        ),
    );
    let r = gw.chat(&chat_body("hi"));
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");
    assert_eq!(r.header("x-tollgate-attempts"), Some("a:429,a:429"));
}

#[test]
fn retry_after_is_honoured_up_to_the_cap() {
    // Within the cap: the same target is retried after the provider's Retry-After.
    let slow = Mock::start(&["--status", "429", "--retry-after", "1", "--fail-first", "1"]);
    let gw = Gateway::start(
        "",
        &format!(
            "{}providers:\n{}models:\n  m:\n    targets: [ {{ provider: slow, model: x }} ]\n",
            routing("  retries: 1\n  max_retry_after: 5s\n"),
            mock_provider("slow", &slow.base_url(), "")
        ),
    );
    let start = Instant::now();
    let r = gw.chat(&chat_body("hi"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        start.elapsed() >= Duration::from_millis(950),
        "did not wait for Retry-After: {:?}",
        start.elapsed()
    );
    assert_eq!(r.header("x-tollgate-attempts"), Some("slow:429,slow:200"));

    // Beyond the cap: straight to the next target, without waiting.
    let long = Mock::start(&["--status", "429", "--retry-after", "30"]);
    let next = Mock::start(&[]);
    let gw = Gateway::start(
        "",
        &format!(
            "{}providers:\n{}{}models:\n  m:\n    targets: [ {{ provider: long, model: x }}, {{ provider: next, model: y }} ]\n",
            routing("  retries: 2\n  max_retry_after: 5s\n"),
            mock_provider("long", &long.base_url(), ""),
            mock_provider("next", &next.base_url(), "")
        ),
    );
    let r = gw.chat(&chat_body("hi"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-tollgate-attempts"), Some("long:429,next:200"));
}

#[test]
fn a_429_too_long_to_wait_for_is_relayed_when_nothing_is_left() {
    // The only target asks for 30 s, more than `max_retry_after`: retrying is pointless and no
    // other target exists, so the client gets the provider's 429 and its Retry-After, on both
    // client APIs, at once.
    let long = Mock::start(&["--status", "429", "--retry-after", "30"]);
    let gw = Gateway::start(
        "",
        &format!(
            "{}providers:
{}models:
  m:
    targets: [ {{ provider: long, model: x }} ]
",
            routing(
                "  retries: 2
  max_retry_after: 5s
"
            ),
            mock_provider("long", &long.base_url(), "")
        ),
    );
    let start = Instant::now();
    let r = gw.chat(&chat_body("hi"));
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("30"));
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");
    assert_eq!(r.header("x-tollgate-attempts"), Some("long:429"));
    assert_eq!(r.header("x-tollgate-provider"), Some("long"));
    let r = post(
        &gw.url("/v1/messages"),
        &json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}).to_string(),
        &[],
    );
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("30"));
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "waited: {:?}",
        start.elapsed()
    );
    assert_eq!(long.requests().len(), 2, "one call per request, no retry");

    // `retry-after-ms` counts the same way, and is relayed too.
    let r = gw.chat(&chat_body("[[mock: status=429 retry_after_ms=60000]]"));
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.header("retry-after-ms"), Some("60000"));
}

#[test]
fn a_retry_after_the_budget_cannot_wait_for_moves_on_or_is_relayed() {
    // Within `max_retry_after` but beyond what the request's budget has left: another target is
    // tried at once; on the last target the provider's 429 is relayed, not a 504 of our own.
    let busy = Mock::start(&["--status", "429", "--retry-after", "3"]);
    let next = Mock::start(&[]);
    let gw = Gateway::start(
        "",
        &format!(
            "{}providers:
{}{}models:
  m:
    targets: [ {{ provider: busy, model: x }}, {{ provider: next, model: y }} ]
  last:
    targets: [ {{ provider: busy, model: x }} ]
",
            routing(
                "  retries: 2
  max_retry_after: 10s
"
            ),
            mock_provider("busy", &busy.base_url(), ""),
            mock_provider("next", &next.base_url(), "")
        ),
    );
    let budget = [("x-tollgate-timeout-ms", "1500")];
    let start = Instant::now();
    let r = post(&gw.url("/v1/chat/completions"), &chat_body("hi").to_string(), &budget);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-tollgate-attempts"), Some("busy:429,next:200"));
    let body = json!({"model": "last", "messages": [{"role": "user", "content": "hi"}]});
    let r = post(&gw.url("/v1/chat/completions"), &body.to_string(), &budget);
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("3"));
    assert_eq!(r.header("x-tollgate-attempts"), Some("busy:429"));
    assert!(
        start.elapsed() < Duration::from_millis(2900),
        "waited: {:?}",
        start.elapsed()
    );
}

#[test]
fn the_budget_bounds_the_whole_request() {
    let hang = Mock::start(&["--latency-ms", "10000"]);
    let also = Mock::start(&["--latency-ms", "10000"]);
    let gw = Gateway::start(
        "",
        &format!(
            "{}providers:\n{}{}models:\n  m:\n    targets: [ {{ provider: hang, model: x }}, {{ provider: also, model: y }} ]\n",
            routing("  retries: 2\n  budget: 60s\n"),
            mock_provider("hang", &hang.base_url(), ""),
            mock_provider("also", &also.base_url(), "")
        ),
    );
    let start = Instant::now();
    let r = post(
        &gw.url("/v1/chat/completions"),
        &chat_body("hi").to_string(),
        &[("x-tollgate-timeout-ms", "700")],
    );
    let took = start.elapsed();
    assert_eq!(r.status, 504, "{}", r.body);
    let v = r.json();
    assert_eq!(v["error"]["code"], "budget_exhausted");
    assert!(v["error"]["message"].as_str().unwrap().contains("hang:timeout"), "{v}");
    assert!(r.header("x-tollgate-attempts").unwrap().starts_with("hang:timeout"));
    assert!(
        took < Duration::from_secs(3),
        "the budget did not bound the request: {took:?}"
    );
    // A malformed budget header is a clear 400.
    let r = post(
        &gw.url("/v1/chat/completions"),
        &chat_body("hi").to_string(),
        &[("x-tollgate-timeout-ms", "soon")],
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "x-tollgate-timeout-ms");
}

#[test]
fn every_way_of_failing_before_the_answer_falls_back() {
    let good = Mock::start(&[]);
    let reset = Mock::start(&["--close-after", "0"]);
    let dead = format!("http://127.0.0.1:{}/v1", free_port());
    let stall = Mock::start(&["--latency-ms", "5000"]);
    let gw = Gateway::start(
        "",
        &format!(
            "{}providers:\n{}{}{}{}models:\n  m:\n    targets: [ {{ provider: dead, model: a }}, {{ provider: reset, model: b }}, {{ provider: stall, model: c }}, {{ provider: good, model: d }} ]\n",
            routing("  retries: 0\n"),
            mock_provider("dead", &dead, "    timeouts: { connect: 300ms }\n"),
            mock_provider("reset", &reset.base_url(), ""),
            mock_provider("stall", &stall.base_url(), "    timeouts: { first_byte: 300ms }\n"),
            mock_provider("good", &good.base_url(), "")
        ),
    );
    let r = gw.chat(&chat_body("hi"));
    assert_eq!(r.status, 200, "{}", r.body);
    let attempts = r.header("x-tollgate-attempts").unwrap();
    assert!(attempts.starts_with("dead:connect,reset:"), "{attempts}");
    assert!(attempts.ends_with(",stall:timeout,good:200"), "{attempts}");
    assert_eq!(good.requests().len(), 1);
}

#[test]
fn a_prompt_too_long_for_one_model_moves_to_a_larger_one() {
    // Provider-side: the small model answers OpenAI's context_length_exceeded 400.
    let small = Mock::start(&["--context-window", "20"]);
    let large = Mock::start(&[]);
    let long_prompt = "word ".repeat(200);
    let gw = Gateway::start(
        "",
        &format!(
            "{}providers:\n{}{}models:\n  m:\n    targets: [ {{ provider: small, model: s }}, {{ provider: large, model: l }} ]\n",
            routing("  retries: 2\n"),
            mock_provider("small", &small.base_url(), ""),
            mock_provider("large", &large.base_url(), "")
        ),
    );
    let r = gw.chat(&chat_body(&long_prompt));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-tollgate-attempts"), Some("small:context_length,large:200"));
    assert_eq!(
        small.requests().len(),
        1,
        "a context-length error is not retried on the same model"
    );
    // A 400 that is not about context length is the client's error: relayed, not retried.
    let r = gw.chat(&chat_body("[[mock: status=400]]"));
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]["message"].as_str().unwrap().contains("Forced 400"),
        "{}",
        r.body
    );
    assert_eq!(r.header("x-tollgate-attempts"), Some("small:400"));

    // Gateway-side: a configured context window skips the target before any call.
    let gw = Gateway::start(
        "",
        &format!(
            "{}providers:\n{}{}models:\n  m:\n    targets: [ {{ provider: small, model: s, context_window: 100 }}, {{ provider: large, model: l }} ]\n",
            routing(""),
            mock_provider("small", &small.base_url(), ""),
            mock_provider("large", &large.base_url(), "")
        ),
    );
    small.clear();
    let r = gw.chat(&chat_body(&long_prompt));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-tollgate-attempts"), Some("small:context_window,large:200"));
    assert!(small.requests().is_empty());
}
