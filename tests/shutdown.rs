//! Stopping the real gateway: SIGTERM with nothing in flight exits at once; requests still running
//! when the grace ends (at once for SIGINT) get an explicit end — a 503 before the answer, the
//! error event in a stream — and each leaves its usage record in the access log and the ledger;
//! a listener that cannot bind fails the start.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn config(mock: &Mock) -> String {
    format!(
        "providers:\n{}models:\n  m:\n    targets: [ {{ provider: mock, model: up-m }} ]\n",
        mock_provider("mock", &mock.base_url(), "")
    )
}

/// The ledger's records after the gateway exited: (status, error, completion tokens) by request id.
fn ledger(gw: &Gateway) -> Vec<(String, i64, Option<String>, i64)> {
    let db = rusqlite::Connection::open(gw.dir().join("data/spend.db")).unwrap();
    let mut q = db
        .prepare("SELECT request_id, status, error, completion_tokens FROM usage_records")
        .unwrap();
    let rows = q
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap();
    rows.map(Result::unwrap).collect()
}

/// The access log's records (JSON lines on stdout).
fn access_log(gw: &Gateway) -> Vec<Value> {
    gw.proc
        .log_text()
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("request_id").is_some())
        .collect()
}

#[test]
fn sigterm_with_nothing_in_flight_exits_at_once() {
    let mock = Mock::start(&[]);
    let mut gw = Gateway::start("  shutdown_grace: 30s\n", &config(&mock));
    let r = gw.chat(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(r.status, 200);
    let sent = Instant::now();
    gw.proc.signal(libc::SIGTERM);
    let status = gw
        .proc
        .wait_exit(Duration::from_secs(10))
        .expect("an idle gateway exits on SIGTERM without waiting out its 30 s grace");
    assert!(status.success(), "{status:?}");
    assert!(sent.elapsed() < Duration::from_secs(5), "took {:?}", sent.elapsed());
    // The served request's record was written before the exit.
    assert_eq!(ledger(&gw).len(), 1);
}

/// Starts a long stream and a slow non-streamed answer, waits until the stream is flowing, sends
/// `signal`, and checks that both requests were ended explicitly and recorded.
fn in_flight_requests_are_ended_and_recorded(signal: i32, grace: &str, exits_within: Duration) {
    let mock = Mock::start(&[]);
    let mut gw = Gateway::start(&format!("  shutdown_grace: {grace}\n"), &config(&mock));
    let url = gw.url("/v1/chat/completions");
    let stream_body = json!({"model": "m", "stream": true, "messages": [
        {"role": "user", "content": "[[mock: chunks=200 chunk_delay_ms=100]]"}]});
    let stream = {
        let url = url.clone();
        std::thread::spawn(move || post_stream(&url, &stream_body.to_string()))
    };
    let slow_body = json!({"model": "m", "messages": [{"role": "user", "content": "[[mock: latency_ms=60000]]"}]});
    let slow = std::thread::spawn(move || post(&url, &slow_body.to_string(), &[]));
    // A third sends its header and only part of its body.
    let mut uploading = std::net::TcpStream::connect(&gw.addr).unwrap();
    uploading
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"model\"")
        .unwrap();
    // All are in flight and the stream has sent some tokens.
    wait_until("three requests in flight", Duration::from_secs(10), || {
        gw.metric("tollgate_inflight_requests") == 3.0
    });
    std::thread::sleep(Duration::from_millis(600));

    let sent = Instant::now();
    gw.proc.signal(signal);
    let status = gw
        .proc
        .wait_exit(exits_within)
        .expect("the gateway exits once the grace is over");
    assert!(status.success(), "{status:?}");

    let (head, events) = stream.join().unwrap();
    assert_eq!(head.status, 200);
    let last = events.last().expect("some events");
    assert!(
        events.iter().all(|e| e.data != "[DONE]"),
        "a stream ended by the shutdown must not look complete"
    );
    let err: Value = serde_json::from_str(&last.data).expect("the last event is the error event");
    assert_eq!(err["error"]["code"], "shutdown", "{}", last.data);
    assert!(events.len() > 2, "the stream was flowing before the signal: {events:?}");

    let slow = slow.join().unwrap();
    assert_eq!(slow.status, 503, "{}", slow.body);
    assert_eq!(slow.json()["error"]["code"], "shutdown");
    let mut answer = String::new();
    let _ = uploading.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"shutdown\""), "{answer}");

    // One record per request, in the ledger and in the access log, each saying `shutdown`;
    // the stream's with the tokens it had sent.
    let records = ledger(&gw);
    assert_eq!(records.len(), 3, "{records:?}");
    for (_, status, error, _) in &records {
        assert_eq!(error.as_deref(), Some("shutdown"), "{records:?}");
        assert!(*status == 200 || *status == 503, "{records:?}");
    }
    let streamed = records.iter().find(|r| r.1 == 200).unwrap();
    assert!(streamed.3 > 0, "the stream's record counts its tokens: {records:?}");
    let log = access_log(&gw);
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(log.iter().all(|r| r["error"] == "shutdown"), "{log:?}");
    assert!(sent.elapsed() < exits_within);
}

#[test]
fn requests_running_when_the_grace_ends_are_ended_explicitly_and_recorded() {
    in_flight_requests_are_ended_and_recorded(libc::SIGTERM, "1s", Duration::from_secs(10));
}

#[test]
fn sigint_ends_running_requests_at_once_and_records_them() {
    // With a grace of a minute, only SIGINT's "no grace" can make this exit in time.
    in_flight_requests_are_ended_and_recorded(libc::SIGINT, "60s", Duration::from_secs(8));
}

#[test]
fn a_listener_that_cannot_bind_fails_the_start_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tollgate.yaml");
    let admin = format!("127.0.0.1:{}", free_port());
    std::fs::write(
        &config,
        format!("server:\n  listen: \"{addr}\"\n  admin_listen: \"{admin}\"\nproviders: {{}}\nmodels: {{}}\n"),
    )
    .unwrap();
    let cfg = config.to_string_lossy().to_string();
    let run_dir = dir.path().to_string_lossy().to_string();
    let mut proc = Proc::start(
        "gateway",
        dir.path(),
        &["run", "--config", &cfg, "--runtime-dir", &run_dir],
    );
    let status = proc
        .wait_exit(Duration::from_secs(5))
        .expect("the start fails quickly instead of serving nothing");
    assert!(!status.success());
    let log = proc.log_text();
    assert!(
        log.contains(&format!("server.listen: cannot listen on {addr}")),
        "{log}"
    );
    // Nothing answered health checks meanwhile.
    assert!(std::net::TcpStream::connect(&admin).is_err());
}
