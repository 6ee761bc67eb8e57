//! Usage records end to end, on the real gateway and mock: one priced record per request in the
//! access log and the SQLite ledger, spend by API and CLI, the metrics, the overhead header,
//! traces to a real OTLP/HTTP collector on loopback, and the `cost` routing strategy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "admin-secret-for-tests";

/// Prices of the test models, USD per 1M tokens: (input, output, cached_input).
const PRICED: (f64, f64, f64) = (2.0, 8.0, 0.5);

fn config(mock: &Mock, extra: &str) -> String {
    format!(
        "providers:\n{}models:\n  m:\n    targets: [ {{ provider: mock, model: priced-model }} ]\n  free:\n    targets: [ {{ provider: mock, model: unpriced-model }} ]\n\
pricing:\n  models:\n    - {{ provider: mock, model: priced-model, input: {}, output: {}, cached_input: {} }}\n\
admin:\n  token: \"${{TOLLGATE_ADMIN_TOKEN}}\"\n{extra}",
        mock_provider("mock", &mock.base_url(), ""),
        PRICED.0,
        PRICED.1,
        PRICED.2,
    )
}

/// The cost the table gives a record's tokens, in nano-USD (rounded once, like the gateway).
fn priced_nanos(r: &Value) -> i64 {
    let n = |k: &str| r[k].as_u64().unwrap() as f64;
    let uncached = n("prompt_tokens") - n("cached_tokens") - n("cache_write_tokens");
    let usd_per_m = uncached * PRICED.0 + n("cached_tokens") * PRICED.2 + n("completion_tokens") * PRICED.1;
    (usd_per_m * 1000.0).round() as i64
}

/// The access log's records (JSON lines on the gateway's stdout), by request id.
fn access_log(gw: &Gateway) -> HashMap<String, Value> {
    gw.proc
        .log_text()
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("request_id").is_some())
        .map(|v| (v["request_id"].as_str().unwrap().to_string(), v))
        .collect()
}

fn spend(gw: &Gateway, query: &str, token: Option<&str>) -> Resp {
    let url = gw.admin_url(&format!("/admin/spend?{query}"));
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    let mut req = ureq::get(&url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    match req.call() {
        Ok(r) => Resp {
            status: r.status(),
            headers: vec![],
            body: r.into_string().unwrap(),
        },
        Err(ureq::Error::Status(s, r)) => Resp {
            status: s,
            headers: vec![],
            body: r.into_string().unwrap(),
        },
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn every_request_leaves_one_priced_record_in_the_log_the_ledger_and_the_metrics() {
    let mock = Mock::start(&[]);
    let gw = Gateway::start_env("", &config(&mock, ""), &[("TOLLGATE_ADMIN_TOKEN", ADMIN_TOKEN)]);
    let chat_url = gw.url("/v1/chat/completions");
    let marker = "PROMPT-TEXT-THAT-MUST-NOT-BE-LOGGED";
    let mut ids = Vec::new();

    // 1. A whole response, attributed by headers.
    let r = post(
        &chat_url,
        &json!({"model": "m", "messages": [{"role": "user", "content": format!("{marker} one")}]}).to_string(),
        &[
            ("x-tollgate-user", "alice"),
            ("x-tollgate-feature", "search"),
            ("x-tollgate-team", "growth"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let usage1 = r.json()["usage"].clone();
    ids.push(r.header("x-request-id").unwrap().to_string());

    // 2. A stream with usage asked for, the feature from metadata, the user from the body.
    let (head, events) = post_stream_with(
        &chat_url,
        &json!({"model": "m", "stream": true, "stream_options": {"include_usage": true}, "user": "bob",
                "metadata": {"feature": "summarize"},
                "messages": [{"role": "user", "content": format!("{marker} two [[mock: chunks=5]]")}]})
        .to_string(),
        &[],
    );
    assert_eq!(head.status, 200);
    let usage2 = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
        .find(|v| v["usage"].is_object())
        .unwrap()["usage"]
        .clone();
    ids.push(head.header("x-request-id").unwrap().to_string());

    // 3. A stream without usage: the gateway counts the tokens itself.
    let (head, events) = post_stream_with(
        &chat_url,
        &json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "three [[mock: chunks=6]]"}]})
            .to_string(),
        &[("x-tollgate-feature", "search")],
    );
    assert_eq!(head.status, 200);
    assert!(
        events.iter().all(|e| !e.data.contains("\"usage\":{")),
        "no usage was asked for"
    );
    ids.push(head.header("x-request-id").unwrap().to_string());

    // 4. An unknown model, 5. an unpriced model, 6. an upstream error.
    let r = gw.chat(&json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}));
    assert_eq!(r.status, 404);
    ids.push(r.header("x-request-id").unwrap().to_string());
    let r = gw.chat(&json!({"model": "free", "messages": [{"role": "user", "content": "four"}]}));
    assert_eq!(r.status, 200);
    ids.push(r.header("x-request-id").unwrap().to_string());
    let r = gw.chat(&json!({"model": "m", "messages": [{"role": "user", "content": "[[mock: status=400]]"}]}));
    assert_eq!(r.status, 400);
    ids.push(r.header("x-request-id").unwrap().to_string());

    // The access log: exactly one line per request, with the right fields, never the prompt.
    wait_until("the access log lines", Duration::from_secs(5), || {
        let log = access_log(&gw);
        ids.iter().all(|id| log.contains_key(id))
    });
    let log = access_log(&gw);
    assert_eq!(log.len(), ids.len(), "one line per request");
    assert!(!gw.proc.log_text().contains(marker), "a prompt reached the log");
    let rec: Vec<&Value> = ids.iter().map(|id| &log[id]).collect();

    assert_eq!(rec[0]["user"], "alice");
    assert_eq!(rec[0]["feature"], "search");
    assert_eq!(rec[0]["team"], "growth");
    assert_eq!(rec[0]["model"], "m");
    assert_eq!(rec[0]["provider"], "mock");
    assert_eq!(rec[0]["served_model"], "priced-model");
    assert_eq!(rec[0]["attempts"], "mock:200");
    assert_eq!(rec[0]["prompt_tokens"], usage1["prompt_tokens"]);
    assert_eq!(rec[0]["completion_tokens"], usage1["completion_tokens"]);
    assert_eq!(rec[0]["tokens_estimated"], false);
    assert_eq!(rec[0]["stream"], false);
    assert_eq!(rec[0]["priced"], true);
    assert_eq!(rec[0]["trace_id"].as_str().unwrap().len(), 32);

    assert_eq!(rec[1]["user"], "bob");
    assert_eq!(rec[1]["feature"], "summarize");
    assert_eq!(rec[1]["stream"], true);
    assert_eq!(rec[1]["prompt_tokens"], usage2["prompt_tokens"]);
    assert_eq!(rec[1]["completion_tokens"], usage2["completion_tokens"]);
    assert!(rec[1]["ttft_us"].as_u64().unwrap() <= rec[1]["latency_us"].as_u64().unwrap());

    assert_eq!(rec[2]["tokens_estimated"], true);
    assert!(rec[2]["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(rec[2]["completion_tokens"].as_u64().unwrap() > 0, "{}", rec[2]);

    assert_eq!(rec[3]["status"], 404);
    assert_eq!(rec[3]["error"], "model_not_found");
    assert_eq!(rec[3]["cost_nanos"], 0);

    assert_eq!(rec[4]["priced"], false, "an unknown price is flagged, not guessed");
    assert_eq!(rec[4]["cost_nanos"], 0);
    assert!(rec[4]["prompt_tokens"].as_u64().unwrap() > 0);

    assert_eq!(rec[5]["status"], 400);
    assert_eq!(rec[5]["error"], "upstream_status");

    // Costs: the table's prices on each record's tokens.
    let mut total = 0i64;
    for r in &rec {
        let expected = if r["priced"] == true && r["status"] == 200 {
            priced_nanos(r)
        } else {
            0
        };
        assert_eq!(r["cost_nanos"].as_i64().unwrap(), expected, "{r}");
        assert!(r["overhead_us"].as_u64().unwrap() <= r["latency_us"].as_u64().unwrap());
        total += expected;
    }
    assert!(total > 0);

    // The ledger, through the admin API: same requests, same tokens, same cost.
    assert_eq!(spend(&gw, "group_by=feature", None).status, 401);
    assert_eq!(spend(&gw, "group_by=feature", Some("wrong")).status, 401);
    wait_until("the ledger to hold every record", Duration::from_secs(10), || {
        let r = spend(&gw, "group_by=feature", Some(ADMIN_TOKEN));
        r.status == 200 && r.json()["totals"]["requests"] == ids.len()
    });
    let report = spend(&gw, "group_by=feature", Some(ADMIN_TOKEN)).json();
    assert_eq!(report["totals"]["cost_nanos"], total);
    let sum = |k: &str| rec.iter().map(|r| r[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!(report["totals"]["prompt_tokens"], sum("prompt_tokens"));
    assert_eq!(report["totals"]["completion_tokens"], sum("completion_tokens"));
    assert_eq!(report["totals"]["errors"], 2);
    let groups = report["groups"].as_array().unwrap();
    let by_feature = |f: Value| groups.iter().find(|g| g["feature"] == f).unwrap().clone();
    assert_eq!(by_feature(json!("search"))["requests"], 2);
    assert_eq!(
        by_feature(json!("search"))["cost_nanos"],
        priced_nanos(rec[0]) + priced_nanos(rec[2])
    );
    assert_eq!(by_feature(json!("summarize"))["cost_nanos"], priced_nanos(rec[1]));
    assert_eq!(by_feature(Value::Null)["requests"], 3);
    let bad = spend(&gw, "group_by=colour", Some(ADMIN_TOKEN));
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("colour"), "{}", bad.body);

    // The CLI reads the same ledger (its path is relative to the gateway's working directory).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args([
            "spend",
            "--config",
            gw.config.to_str().unwrap(),
            "--group-by",
            "team,user",
            "--json",
        ])
        .current_dir(gw.dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["totals"]["cost_nanos"], total);
    let alice = cli["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["user"] == "alice")
        .unwrap();
    assert_eq!(alice["team"], "growth");
    assert_eq!(alice["cost_nanos"], priced_nanos(rec[0]));
    let table = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["spend", "--config", gw.config.to_str().unwrap(), "-g", "feature"])
        .current_dir(gw.dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.lines().any(|l| l.starts_with("TOTAL")), "{text}");

    // The metrics show the same totals.
    let usd = gw.metric("tollgate_cost_usd_total{model=\"m\",provider=\"mock\",team=\"\"}");
    assert!((usd - total as f64 / 1e9).abs() < 1e-9, "{usd} vs {total}");
    assert_eq!(
        gw.metric("tollgate_unpriced_requests_total{model=\"free\",provider=\"mock\"}"),
        1.0
    );
    assert_eq!(
        gw.metric("tollgate_estimated_usage_total{model=\"m\",provider=\"mock\"}"),
        1.0
    );
    assert_eq!(
        gw.metric("tollgate_tokens_total{model=\"m\",provider=\"mock\",type=\"prompt\"}") as u64,
        rec[..3]
            .iter()
            .map(|r| r["prompt_tokens"].as_u64().unwrap())
            .sum::<u64>()
    );
    assert_eq!(gw.metric("tollgate_ledger_written_total") as usize, ids.len());
    assert_eq!(gw.metric("tollgate_ledger_store_up"), 1.0);
    assert!(gw.metric("tollgate_overhead_seconds_count") >= 5.0);
    assert!(gw.metric("tollgate_time_to_first_token_seconds_count{model=\"m\",provider=\"mock\"}") >= 3.0);
}

#[test]
fn overhead_header_and_request_id_on_every_response() {
    let mock = Mock::start(&[]);
    let gw = Gateway::start("", &config(&mock, ""));
    let ok = gw.chat(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
    let missing = gw.chat(&json!({"model": "nope", "messages": []}));
    let bad = post(&gw.url("/v1/chat/completions"), "{not json", &[]);
    let (stream, _) = post_stream(
        &gw.url("/v1/chat/completions"),
        &json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}).to_string(),
    );
    let mut seen = std::collections::HashSet::new();
    for r in [&ok, &missing, &bad, &stream] {
        let us: u64 = r
            .header("x-tollgate-overhead-us")
            .unwrap_or_else(|| panic!("no overhead header: {r:?}"))
            .parse()
            .unwrap();
        assert!(us < 10_000_000);
        let id = r.header("x-request-id").unwrap();
        assert_eq!(id.len(), 32);
        assert!(seen.insert(id.to_string()), "request ids are unique");
    }
}

/// A minimal OTLP/HTTP collector: answers 200 to every POST and keeps the JSON bodies.
struct Collector {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Collector {
    fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let store = Arc::clone(&bodies);
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut conn = conn;
                    loop {
                        let mut len = 0usize;
                        let mut line = String::new();
                        loop {
                            line.clear();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                                len = v.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0; len];
                        if reader.read_exact(&mut body).is_err() {
                            return;
                        }
                        if let Ok(v) = serde_json::from_slice(&body) {
                            store.lock().unwrap().push(v);
                        }
                        let _ = conn.write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
                        );
                    }
                });
            }
        });
        Collector { url, bodies }
    }

    fn spans(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for b in self.bodies.lock().unwrap().iter() {
            for rs in b["resourceSpans"].as_array().into_iter().flatten() {
                for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                    out.extend(ss["spans"].as_array().cloned().unwrap_or_default());
                }
            }
        }
        out
    }
}

fn attr<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

#[test]
fn traces_reach_an_otlp_collector_and_carry_the_clients_trace_to_the_provider() {
    let collector = Collector::start();
    let mock = Mock::start(&[]);
    let tracing = format!("tracing:\n  otlp_endpoint: \"{}\"\n", collector.url);
    let gw = Gateway::start("", &config(&mock, &tracing));
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let r = post(
        &gw.url("/v1/chat/completions"),
        &json!({"model": "m", "messages": [{"role": "user", "content": "traced"}]}).to_string(),
        &[("traceparent", &format!("00-{trace_id}-{client_span}-01"))],
    );
    assert_eq!(r.status, 200);
    wait_until("the spans at the collector", Duration::from_secs(10), || {
        collector.spans().len() >= 3
    });
    let spans = collector.spans();
    let server = spans.iter().find(|s| s["kind"] == 2).expect("a server span");
    assert_eq!(server["traceId"], trace_id);
    assert_eq!(server["parentSpanId"], client_span);
    assert_eq!(attr(server, "gen_ai.request.model").unwrap()["stringValue"], "m");
    assert_eq!(
        attr(server, "gen_ai.response.model").unwrap()["stringValue"],
        "priced-model"
    );
    assert!(attr(server, "gen_ai.usage.input_tokens").is_some());
    let call = spans
        .iter()
        .find(|s| s["kind"] == 3)
        .expect("a client span per provider call");
    assert_eq!(call["traceId"], trace_id);
    assert_eq!(call["parentSpanId"], server["spanId"]);
    assert_eq!(attr(call, "http.response.status_code").unwrap()["intValue"], "200");
    let policy = spans.iter().find(|s| s["name"] == "policy").expect("a policy span");
    assert_eq!(policy["parentSpanId"], server["spanId"]);

    // The provider saw the call's span as its parent, in the client's trace.
    let seen = mock.requests();
    let tp = seen[0]["headers"]["traceparent"]
        .as_str()
        .expect("traceparent sent upstream");
    assert_eq!(tp, format!("00-{trace_id}-{}-01", call["spanId"].as_str().unwrap()));

    // A client that says "not sampled" is not traced, but its context still goes upstream.
    mock.clear();
    let unsampled = format!("00-{trace_id}-{client_span}-00");
    let before = collector.spans().len();
    let r = post(
        &gw.url("/v1/chat/completions"),
        &json!({"model": "m", "messages": [{"role": "user", "content": "not traced"}]}).to_string(),
        &[("traceparent", &unsampled)],
    );
    assert_eq!(r.status, 200);
    assert_eq!(mock.requests()[0]["headers"]["traceparent"], unsampled);
    // A traced request after it flushes the exporter's batch: nothing of the unsampled one.
    post(
        &gw.url("/v1/chat/completions"),
        &json!({"model": "m", "messages": [{"role": "user", "content": "traced again"}]}).to_string(),
        &[],
    );
    wait_until("the next spans", Duration::from_secs(10), || {
        collector.spans().len() >= before + 3
    });
    let after: Vec<Value> = collector.spans()[before..].to_vec();
    assert!(
        after.iter().all(|s| s["traceId"] != trace_id),
        "an unsampled request was exported"
    );
}

#[test]
fn cost_strategy_prefers_the_cheapest_target_that_fits() {
    let mock = Mock::start(&[]);
    let rest = format!(
        "providers:\n{}models:\n  smart:\n    strategy: cost\n    targets:\n      - {{ provider: mock, model: pricey }}\n      - {{ provider: mock, model: cheap, context_window: 60 }}\n      - {{ provider: mock, model: unknown-price }}\n\
pricing:\n  models:\n    - {{ provider: mock, model: pricey, input: 5, output: 15 }}\n    - {{ provider: mock, model: cheap, input: 0.1, output: 0.4 }}\n",
        mock_provider("mock", &mock.base_url(), "")
    );
    let gw = Gateway::start("", &rest);
    let short = gw.chat(&json!({"model": "smart", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(short.status, 200);
    assert_eq!(short.header("x-tollgate-model"), Some("cheap"));
    // Too long for the cheap target's window: the next cheapest that fits.
    let long = "word ".repeat(200);
    let r = gw.chat(&json!({"model": "smart", "max_tokens": 10, "messages": [{"role": "user", "content": long}]}));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-tollgate-model"), Some("pricey"));
    assert_eq!(r.header("x-tollgate-attempts"), Some("mock:context_window,mock:200"));
}

#[test]
fn records_reach_postgresql_and_survive_it_being_stopped_mid_run() {
    let pg = common::pg::Pg::start();
    let mock = Mock::start(&[]);
    let usage = format!(
        "usage:\n  ledger: \"{}\"\n  flush_interval: 20ms\n  access_log: off\n",
        pg.url()
    );
    let gw = Gateway::start_env("", &config(&mock, &usage), &[("TOLLGATE_ADMIN_TOKEN", ADMIN_TOKEN)]);
    let send = |n: usize, team: &str| -> (i64, u64) {
        let (mut cost, mut prompt) = (0i64, 0u64);
        for i in 0..n {
            let r = post(
                &gw.url("/v1/chat/completions"),
                &json!({"model": "m", "messages": [{"role": "user", "content": format!("request {i}")}]}).to_string(),
                &[("x-tollgate-team", team)],
            );
            assert_eq!(r.status, 200, "the proxy keeps serving whatever the store does");
            let u = r.json()["usage"].clone();
            let rec = json!({"prompt_tokens": u["prompt_tokens"], "completion_tokens": u["completion_tokens"],
                             "cached_tokens": 0, "cache_write_tokens": 0});
            cost += priced_nanos(&rec);
            prompt += u["prompt_tokens"].as_u64().unwrap();
        }
        (cost, prompt)
    };
    let (cost_a, prompt_a) = send(20, "before");
    wait_until("the first records in PostgreSQL", Duration::from_secs(10), || {
        gw.metric("tollgate_ledger_written_total") >= 20.0
    });

    // The database goes away: requests still succeed, records spill.
    pg.stop("immediate");
    let (cost_b, prompt_b) = send(30, "during");
    wait_until("the records to spill", Duration::from_secs(15), || {
        gw.metric("tollgate_ledger_spill_pending") >= 30.0
    });
    assert_eq!(gw.metric("tollgate_ledger_store_up"), 0.0);
    let r = spend(&gw, "group_by=team", Some(ADMIN_TOKEN));
    assert_eq!(r.status, 503, "spend says the store is unavailable: {}", r.body);

    // It comes back: the spill is replayed, nothing lost, nothing counted twice.
    pg.restart();
    let (cost_c, prompt_c) = send(10, "after");
    wait_until("the replay", Duration::from_secs(20), || {
        gw.metric("tollgate_ledger_spill_pending") == 0.0 && gw.metric("tollgate_ledger_store_up") == 1.0
    });
    wait_until("every record in PostgreSQL", Duration::from_secs(10), || {
        let r = spend(&gw, "group_by=team", Some(ADMIN_TOKEN));
        r.status == 200 && r.json()["totals"]["requests"] == 60
    });
    let report = spend(&gw, "group_by=team", Some(ADMIN_TOKEN)).json();
    assert_eq!(report["totals"]["cost_nanos"], cost_a + cost_b + cost_c);
    assert_eq!(report["totals"]["prompt_tokens"], prompt_a + prompt_b + prompt_c);
    let team = |t: &str| {
        report["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["team"] == t)
            .unwrap_or_else(|| panic!("no group {t}: {report}"))
            .clone()
    };
    assert_eq!(team("before")["requests"], 20);
    assert_eq!(team("during")["requests"], 30);
    assert_eq!(team("during")["cost_nanos"], cost_b);
    assert_eq!(team("after")["requests"], 10);
    assert!(gw.metric("tollgate_ledger_spilled_total") >= 30.0);
    assert_eq!(gw.metric("tollgate_ledger_dropped_total"), 0.0);
    let rows: i64 = pg
        .client()
        .query_one("SELECT count(*) FROM usage_records", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 60, "exactly one row per request");
}

#[test]
fn openai_streams_are_billed_from_the_providers_usage_even_when_the_client_asks_for_none() {
    let mock = Mock::start(&[]);
    let rest = format!(
        "providers:\n  openai:\n    kind: openai\n    base_url: \"{}\"\n    api_keys: [\"k\"]\nmodels:\n  m:\n    targets: [ {{ provider: openai, model: gpt-4o-mini }} ]\n",
        mock.base_url()
    );
    let gw = Gateway::start("", &rest);
    let (head, events) = post_stream(
        &gw.url("/v1/chat/completions"),
        &json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "count me [[mock: chunks=4]]"}]})
            .to_string(),
    );
    assert_eq!(head.status, 200);
    // The client sees what it asked for: no usage chunk, content, one [DONE] at the end.
    assert!(events.iter().all(|e| !e.data.contains("\"usage\":{")), "{events:?}");
    assert_eq!(events.iter().filter(|e| e.data == "[DONE]").count(), 1);
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let text: String = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect();
    assert!(!text.is_empty());
    // The provider was asked for usage, and the record carries the provider's count.
    let sent: Value = serde_json::from_str(mock.requests()[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    let id = head.header("x-request-id").unwrap().to_string();
    wait_until("the record", Duration::from_secs(5), || {
        access_log(&gw).contains_key(&id)
    });
    let rec = &access_log(&gw)[&id];
    assert_eq!(rec["tokens_estimated"], false, "{rec}");
    assert!(rec["completion_tokens"].as_u64().unwrap() > 0);
    assert_eq!(rec["priced"], true, "gpt-4o-mini is in the built-in table");
    assert!(rec["cost_nanos"].as_i64().unwrap() > 0);
}
