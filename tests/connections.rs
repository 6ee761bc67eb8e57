//! The data plane's connections against hostile and careless clients, on the real gateway over
//! raw sockets: header and body deadlines, the keep-alive idle timeout, the connection cap,
//! pipelined requests, and requests too malformed for the proxy to see.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const LIMITS: &str = "  header_timeout: 1s\n  body_timeout: 1s\n  keepalive_timeout: 1s\n  max_connections: 8\n";

fn gateway(mock: &Mock) -> Gateway {
    let mut rest = format!("providers:\n{}models:\n", mock_provider("mock", &mock.base_url(), ""));
    for m in ["m1", "m2", "m3", "m4", "m5"] {
        rest.push_str(&format!(
            "  {m}:\n    targets: [ {{ provider: mock, model: up-{m} }} ]\n"
        ));
    }
    Gateway::start(LIMITS, &rest)
}

fn connect(gw: &Gateway) -> TcpStream {
    let s = TcpStream::connect(&gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Everything the gateway sends until it closes the connection (or 10 s pass).
fn read_to_close(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The one response in `text`: status, lowercased head, JSON body.
fn response(text: &str) -> (u16, String, Value) {
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response: {text:?}"));
    let status = head[9..12].parse().unwrap();
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("body not JSON ({e}): {text}"));
    (status, head.to_ascii_lowercase(), body)
}

fn chat_request(model: &str) -> String {
    let body = format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#);
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn a_header_trickled_byte_by_byte_is_cut_at_the_header_deadline() {
    let mock = Mock::start(&[]);
    let gw = gateway(&mock);
    let mut s = connect(&gw);
    let started = Instant::now();
    // One byte every 200 ms: each read is quick, the header never completes.
    let request = b"GET /v1/models HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    for b in request {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        if started.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    let text = read_to_close(&mut s);
    let (status, head, body) = response(&text);
    assert_eq!(status, 408, "{text}");
    assert!(head.contains("connection: close"));
    assert_eq!(body["error"]["code"], "request_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "cut after {:?}",
        started.elapsed()
    );
    assert_eq!(
        gw.metric("tollgate_connections_closed_total{listener=\"data\",reason=\"header_timeout\"}"),
        1.0
    );
}

#[test]
fn a_kept_alive_connection_is_closed_when_idle_and_a_trickled_body_gets_408() {
    let mock = Mock::start(&[]);
    let gw = gateway(&mock);
    // Idle after one request: closed after the keep-alive timeout (1 s), not kept forever.
    let mut s = connect(&gw);
    s.write_all(b"GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let idle_from = Instant::now();
    let rest = read_to_close(&mut s);
    assert!(rest.is_empty(), "{rest}");
    let idle = idle_from.elapsed();
    assert!(
        idle >= Duration::from_millis(900) && idle < Duration::from_secs(5),
        "{idle:?}"
    );
    assert_eq!(
        gw.metric("tollgate_connections_closed_total{listener=\"data\",reason=\"idle_timeout\"}"),
        1.0
    );

    // A body that trickles in: 408 `request_timeout` at the body deadline, connection closed
    // (not a 504 after the routing budget).
    let mut s = connect(&gw);
    let started = Instant::now();
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"model\"")
        .unwrap();
    let text = read_to_close(&mut s);
    let (status, head, body) = response(&text);
    assert_eq!(status, 408, "{text}");
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(body["error"]["code"], "request_timeout");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        gw.metric("tollgate_connections_closed_total{listener=\"data\",reason=\"body_timeout\"}"),
        1.0
    );
}

#[test]
fn connections_over_the_cap_get_503_and_the_admin_listener_stays_up() {
    let mock = Mock::start(&[]);
    let gw = gateway(&mock);
    // The start-up probe's connection (`Gateway::start` connects once to see the listener up) may
    // still be counted: a slot it held would turn one of the eight below away.
    wait_until("no open connection", Duration::from_secs(5), || {
        gw.metric("tollgate_connections_open{listener=\"data\"}") == 0.0
    });
    // Eight silent connections hold every slot (the header deadline would free them after 1 s).
    let held: Vec<TcpStream> = (0..8).map(|_| connect(&gw)).collect();
    wait_until("eight open connections", Duration::from_secs(5), || {
        gw.metric("tollgate_connections_open{listener=\"data\"}") == 8.0
    });
    let mut extra = connect(&gw);
    let text = read_to_close(&mut extra);
    let (status, head, body) = response(&text);
    assert_eq!(status, 503, "{text}");
    assert!(head.contains("retry-after: 1"), "{head}");
    assert_eq!(body["error"]["code"], "too_many_connections");
    assert_eq!(get(&gw.admin_url("/health")).status, 200);
    assert_eq!(
        gw.metric("tollgate_connections_closed_total{listener=\"data\",reason=\"over_capacity\"}"),
        1.0
    );
    drop(held);
    wait_until("the slots to free", Duration::from_secs(5), || {
        gw.metric("tollgate_connections_open{listener=\"data\"}") == 0.0
    });
    assert_eq!(get(&gw.url("/v1/models")).status, 200);
}

#[test]
fn pipelined_requests_are_all_answered_in_order() {
    let mock = Mock::start(&[]);
    let gw = gateway(&mock);
    let mut s = connect(&gw);
    let models = ["m1", "m2", "m3", "m4", "m5"];
    let all: String = models.iter().map(|m| chat_request(m)).collect();
    s.write_all(all.as_bytes()).unwrap(); // one write: the five arrive together
    let mut got = Vec::new();
    let mut text = String::new();
    let mut buf = [0u8; 65536];
    while got.len() < models.len() {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed after {} answers: {text}", got.len());
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
        got = text
            .lines()
            .filter_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("x-tollgate-model: ")
                    .map(str::to_string)
            })
            .collect();
    }
    let expected: Vec<String> = models.iter().map(|m| format!("up-{m}")).collect();
    assert_eq!(got, expected, "{text}");
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 5);
    assert!(!text.to_ascii_lowercase().contains("connection: close"));
}

#[test]
fn requests_too_malformed_for_the_proxy_get_openai_shaped_errors() {
    let mock = Mock::start(&[]);
    let gw = gateway(&mock);
    let cases: [(&[u8], u16, &str); 4] = [
        (
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!",
            400,
            "invalid_http_request",
        ),
        (b"GE\x01T / HTTP/1.1\r\nhost: x\r\n\r\n", 400, "invalid_http_request"),
        (
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n",
            400,
            "invalid_http_request",
        ),
        (
            b"CONNECT api.openai.com:443 HTTP/1.1\r\nhost: api.openai.com:443\r\n\r\n",
            405,
            "method_not_allowed",
        ),
    ];
    for (raw, want, code) in cases {
        let mut s = connect(&gw);
        s.write_all(raw).unwrap();
        let text = read_to_close(&mut s);
        let (status, head, body) = response(&text);
        assert_eq!(status, want, "{text}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(!head.contains("server: pingora"), "{head}");
        assert_eq!(body["error"]["code"], code, "{text}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // A header over `server.max_header_bytes` (64 KiB by default): 431.
    let mut s = connect(&gw);
    let big = format!(
        "GET /v1/models HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    let _ = s.write_all(big.as_bytes());
    let text = read_to_close(&mut s);
    let (status, _, body) = response(&text);
    assert_eq!(status, 431, "{text}");
    assert_eq!(body["error"]["code"], "request_header_too_large");
    // The listener still serves.
    assert_eq!(get(&gw.url("/v1/models")).status, 200);
}

/// `server.max_buffered_bytes`: request bodies held at once are bounded. Two 400 kB bodies in
/// flight take 800 kB of a 1 MB budget; a third is refused with 503 `overloaded` and
/// `Retry-After` before a byte of it is read (a declared length), a chunked one as soon as it
/// crosses the budget; once the two finish, their share is given back and a new body is read.
#[test]
fn bodies_held_at_once_are_bounded_and_the_rest_get_503() {
    const N: usize = 400_000;
    let mock = Mock::start(&[]);
    let rest = format!(
        "providers:\n{}models:\n  m1:\n    targets: [ {{ provider: mock, model: up }} ]\n",
        mock_provider("mock", &mock.base_url(), "")
    );
    let gw = Gateway::start(
        "  body_timeout: 20s\n  max_body_bytes: 600000\n  max_buffered_bytes: 1000000\n",
        &rest,
    );
    let prefix = r#"{"model":"m1","messages":[{"role":"user","content":""#;
    let suffix = r#""}]}"#;
    let body = format!("{prefix}{}{suffix}", "x".repeat(N - prefix.len() - suffix.len()));
    assert_eq!(body.len(), N);
    let head = |len: usize| {
        format!("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n")
    };
    let gauge = || gw.metric("tollgate_buffered_body_bytes");

    // Two bodies in flight, each stopped after its first kilobyte.
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = connect(&gw);
            s.write_all(head(N).as_bytes()).unwrap();
            s.write_all(&body.as_bytes()[..1000]).unwrap();
            s
        })
        .collect();
    wait_until("two bodies held", Duration::from_secs(5), || gauge() == (2 * N) as f64);

    // A third declared body would pass the budget: refused before its body is sent.
    let mut third = connect(&gw);
    third.write_all(head(N).as_bytes()).unwrap();
    let text = read_to_close(&mut third);
    let (status, head_text, err) = response(&text);
    assert_eq!(status, 503, "{text}");
    assert_eq!(err["error"]["code"], "overloaded");
    assert!(head_text.contains("retry-after: 1"), "{head_text}");

    // A chunked body is refused as soon as it crosses the budget.
    let mut chunked = connect(&gw);
    chunked
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
        .unwrap();
    let part = &body.as_bytes()[..300_000];
    chunked.write_all(format!("{:x}\r\n", part.len()).as_bytes()).unwrap();
    chunked.write_all(part).unwrap();
    chunked.write_all(b"\r\n").unwrap();
    let text = read_to_close(&mut chunked);
    let (status, _, err) = response(&text);
    assert_eq!(status, 503, "{text}");
    assert_eq!(err["error"]["code"], "overloaded");
    // The lease goes back when the request's context is dropped, which may be just after the
    // connection closed.
    wait_until(
        "the refused ones to give back what they took",
        Duration::from_secs(5),
        || gauge() == (2 * N) as f64,
    );

    // The two finish normally, and give their share back.
    for s in &mut held {
        s.write_all(&body.as_bytes()[1000..]).unwrap();
    }
    for s in &mut held {
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        assert!(
            String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
    drop(held);
    wait_until("the budget given back", Duration::from_secs(5), || gauge() == 0.0);
    let mut again = connect(&gw);
    again.write_all(head(N).as_bytes()).unwrap();
    again.write_all(body.as_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = again.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}
