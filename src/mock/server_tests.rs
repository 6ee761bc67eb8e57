//! In-process test: the mock served by a real pingora `Server` on a loopback port, driven over raw
//! HTTP/1.1 (keep-alive, chunked SSE timing, dropped connections, hangs) and with `ureq`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::*;

struct TestSignal(Arc<Notify>);

#[async_trait]
impl ShutdownSignalWatch for TestSignal {
    async fn recv(&self) -> ShutdownSignal {
        self.0.notified().await;
        ShutdownSignal::FastShutdown
    }
}

struct Running {
    port: u16,
    stop: Arc<Notify>,
    thread: std::thread::JoinHandle<()>,
}

fn start(opts: MockOptions) -> Running {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let stop = Arc::new(Notify::new());
    let signal = TestSignal(stop.clone());
    let thread = std::thread::spawn(move || {
        let mut server = Server::new_with_opt_and_conf(None::<Opt>, ServerConf::default());
        server.bootstrap();
        server.add_service(mock_service(&format!("127.0.0.1:{port}"), opts));
        server.run(RunArgs {
            shutdown_signal: Box::new(signal),
        });
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mock did not start listening");
        std::thread::sleep(Duration::from_millis(10));
    }
    Running { port, stop, thread }
}

/// A parsed HTTP/1.1 response; `chunks` are the chunked-body pieces with their arrival times.
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    chunks: Vec<(Instant, Vec<u8>)>,
    /// The body ended cleanly (terminating chunk or full content-length).
    complete: bool,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

fn request(conn: &mut TcpStream, method: &str, path: &str, headers: &[(&str, &str)], body: &str) {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: mock\r\n");
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        raw.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    raw.push_str("\r\n");
    raw.push_str(body);
    conn.write_all(raw.as_bytes()).unwrap();
}

/// Read one response; `None` if the connection closed before a status line.
fn read_response(reader: &mut BufReader<TcpStream>) -> Option<Resp> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let status: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
        chunks: Vec::new(),
        complete: false,
    };
    if resp.header("transfer-encoding") == Some("chunked") {
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return Some(resp);
            }
            let size = usize::from_str_radix(line.trim(), 16).unwrap();
            let mut data = vec![0; size + 2];
            if reader.read_exact(&mut data).is_err() {
                return Some(resp);
            }
            data.truncate(size);
            if size == 0 {
                resp.complete = true;
                return Some(resp);
            }
            resp.body.extend_from_slice(&data);
            resp.chunks.push((Instant::now(), data));
        }
    }
    let len: usize = resp.header("content-length").unwrap().parse().unwrap();
    resp.body = vec![0; len];
    resp.complete = reader.read_exact(&mut resp.body).is_ok();
    Some(resp)
}

fn connect(port: u16) -> (TcpStream, BufReader<TcpStream>) {
    let conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let reader = BufReader::new(conn.try_clone().unwrap());
    (conn, reader)
}

fn roundtrip(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let (mut conn, mut reader) = connect(port);
    request(&mut conn, method, path, headers, body);
    read_response(&mut reader).unwrap()
}

const AUTH: (&str, &str) = ("Authorization", "Bearer sk-test");
const CHAT: &str = r#"{"model":"mock-gpt","messages":[{"role":"user","content":"hello world!"}]}"#;

#[test]
fn serves_over_http() {
    let mock = start(MockOptions {
        require_key: Some("sk-test".into()),
        ..MockOptions::default()
    });
    let port = mock.port;
    let base = format!("http://127.0.0.1:{port}");

    // Health and recorder reset (ureq).
    let health: Value = ureq::get(&format!("{base}/_mock/health"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(health, json!({"status": "ok"}));
    ureq::delete(&format!("{base}/_mock/requests")).call().unwrap();

    // Non-stream chat.
    let v: Value = ureq::post(&format!("{base}/v1/chat/completions"))
        .set("Authorization", "Bearer sk-test")
        .send_string(CHAT)
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "This is the Tollgate");
    assert_eq!(v["usage"]["total_tokens"], 10);

    // Auth.
    let r = roundtrip(port, "POST", "/v1/chat/completions", &[], CHAT);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json()["error"]["code"], "invalid_api_key");
    let r = roundtrip(
        port,
        "POST",
        "/v1/chat/completions",
        &[("Authorization", "Bearer nope")],
        CHAT,
    );
    assert_eq!(r.status, 401);

    // Keep-alive: a stream then two JSON answers on one connection.
    let (mut conn, mut reader) = connect(port);
    let stream_body = r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;
    let t0 = Instant::now();
    request(
        &mut conn,
        "POST",
        "/v1/chat/completions",
        &[
            AUTH,
            ("x-mock-behavior", "chunks=3 chunk_delay_ms=60 first_chunk_ms=100"),
        ],
        stream_body,
    );
    let r = read_response(&mut reader).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert!(r.complete);
    // role, 3 content, finish, usage, [DONE]: one chunk per event.
    assert_eq!(r.chunks.len(), 7);
    assert!(r
        .chunks
        .iter()
        .all(|(_, c)| c.starts_with(b"data: ") && c.ends_with(b"\n\n")));
    assert_eq!(r.chunks[6].1, b"data: [DONE]\n\n");
    assert!(r.chunks[0].0 - t0 >= Duration::from_millis(90));
    for w in r.chunks.windows(2) {
        assert!(w[1].0 - w[0].0 >= Duration::from_millis(40), "events arrive separately");
    }
    request(&mut conn, "GET", "/v1/models", &[], "");
    let r = read_response(&mut reader).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"][0]["id"], "mock-gpt");
    request(
        &mut conn,
        "POST",
        "/v1/embeddings",
        &[AUTH],
        r#"{"model":"e","input":"x"}"#,
    );
    assert_eq!(
        read_response(&mut reader).unwrap().json()["data"][0]["embedding"]
            .as_array()
            .unwrap()
            .len(),
        8
    );
    drop((conn, reader));

    // close_after=2: role + 2 content events, then the connection drops without a last chunk.
    let r = roundtrip(
        port,
        "POST",
        "/v1/chat/completions",
        &[AUTH],
        r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"[[mock: close_after=2]]"}]}"#,
    );
    assert_eq!((r.status, r.chunks.len(), r.complete), (200, 3, false));

    // close_after=0: closed before any header.
    let (mut conn, mut reader) = connect(port);
    request(
        &mut conn,
        "POST",
        "/v1/embeddings",
        &[AUTH, ("x-mock-behavior", "close_after=0")],
        "{}",
    );
    assert!(read_response(&mut reader).is_none());

    // Forced status from a body marker, with retry headers; header wins over marker.
    let marked = r#"{"model":"m","messages":[{"role":"user","content":"x [[mock: status=503 retry_after=2]]"}]}"#;
    let r = roundtrip(port, "POST", "/v1/chat/completions", &[AUTH], marked);
    assert_eq!((r.status, r.header("retry-after")), (503, Some("2")));
    assert_eq!(r.json()["error"]["type"], "server_error");
    let r = roundtrip(
        port,
        "POST",
        "/v1/chat/completions",
        &[AUTH, ("x-mock-behavior", "status=429")],
        marked,
    );
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");

    // A bad directive is loud.
    let r = roundtrip(
        port,
        "POST",
        "/v1/chat/completions",
        &[AUTH, ("x-mock-behavior", "stauts=429")],
        CHAT,
    );
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("stauts"));

    // Latency.
    let t = Instant::now();
    let r = roundtrip(port, "GET", "/v1/models", &[("x-mock-behavior", "latency_ms=150")], "");
    assert_eq!(r.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(150));

    // 404 / 405 / malformed JSON.
    assert_eq!(roundtrip(port, "POST", "/v1/nope", &[AUTH], "{}").status, 404);
    let r = roundtrip(port, "GET", "/v1/chat/completions", &[], "");
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    assert_eq!(
        roundtrip(port, "POST", "/v1/chat/completions", &[AUTH], "{oops").status,
        400
    );

    // Hang: no answer; the server keeps serving others. One hanging client stays open through
    // shutdown to show the watch lets the process exit.
    let (mut hung, mut hung_reader) = connect(port);
    hung.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    request(
        &mut hung,
        "POST",
        "/v1/chat/completions",
        &[AUTH, ("x-mock-behavior", "hang")],
        CHAT,
    );
    let mut byte = [0u8; 1];
    let err = hung_reader.read(&mut byte).unwrap_err();
    assert!(matches!(
        err.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));
    assert_eq!(roundtrip(port, "GET", "/_mock/health", &[], "").status, 200);

    // The recorder saw every non-admin request, oldest first.
    let listing = roundtrip(port, "GET", "/_mock/requests", &[], "").json();
    let reqs = listing["requests"].as_array().unwrap();
    assert_eq!(listing["total"].as_u64().unwrap() as usize, reqs.len());
    assert_eq!(reqs.len(), 16);
    assert_eq!(reqs[0]["path"], "/v1/chat/completions");
    assert_eq!(reqs[0]["method"], "POST");
    assert_eq!(reqs[0]["headers"]["authorization"], "Bearer sk-test");
    assert_eq!(reqs[0]["body"], CHAT);
    assert_eq!(reqs[0]["body_len"], CHAT.len());
    assert!(reqs.iter().all(|r| !r["path"].as_str().unwrap().starts_with("/_mock")));
    let seqs: Vec<u64> = reqs.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));

    mock.stop.notify_one();
    mock.thread.join().unwrap();
    drop(hung);
}

/// `GET /_mock/usage` over HTTP: what the clients were told, per model and in total (a stream
/// without `include_usage` lands in `unreported`); `DELETE` resets it.
#[test]
fn usage_totals_over_http() {
    let mock = start(MockOptions {
        chunks: 4,
        ..MockOptions::default()
    });
    let port = mock.port;
    let post = |body: &str| {
        let r = roundtrip(port, "POST", "/v1/chat/completions", &[AUTH], body);
        assert_eq!((r.status, r.complete), (200, true));
    };
    // CHAT: "hello world!" is 12 chars: ceil(12 / 4) + 3 = 6 prompt tokens; 4 completion tokens.
    post(CHAT);
    post(CHAT);
    post(
        r#"{"model":"mock-gpt-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hello world!"}]}"#,
    );
    post(r#"{"model":"mock-gpt-mini","stream":true,"messages":[{"role":"user","content":"hello world!"}]}"#);
    // Errors count nothing.
    let r = roundtrip(
        port,
        "POST",
        "/v1/chat/completions",
        &[AUTH, ("x-mock-behavior", "status=500")],
        CHAT,
    );
    assert_eq!(r.status, 500);

    let usage = roundtrip(port, "GET", "/_mock/usage", &[], "").json();
    let zero = json!({"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0});
    assert_eq!(
        usage,
        json!({
            "models": {
                "mock-gpt": {"requests": 2, "prompt_tokens": 12, "completion_tokens": 8, "cached_tokens": 0,
                             "unreported": zero},
                "mock-gpt-mini": {"requests": 1, "prompt_tokens": 6, "completion_tokens": 4, "cached_tokens": 0,
                                  "unreported": {"requests": 1, "prompt_tokens": 6, "completion_tokens": 4, "cached_tokens": 0}},
            },
            "totals": {"requests": 3, "prompt_tokens": 18, "completion_tokens": 12, "cached_tokens": 0,
                       "unreported": {"requests": 1, "prompt_tokens": 6, "completion_tokens": 4, "cached_tokens": 0}},
        })
    );
    // Admin calls are not recorded.
    assert_eq!(roundtrip(port, "GET", "/_mock/requests", &[], "").json()["total"], 5);

    assert_eq!(roundtrip(port, "DELETE", "/_mock/usage", &[], "").status, 200);
    let usage = roundtrip(port, "GET", "/_mock/usage", &[], "").json();
    assert_eq!(usage["models"], json!({}));
    assert_eq!(usage["totals"]["requests"], 0);
    let r = roundtrip(port, "POST", "/_mock/usage", &[], "{}");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, DELETE")));

    mock.stop.notify_one();
    mock.thread.join().unwrap();
}

/// The fake Presidio analyzer and `echo` over HTTP: the analyzer ignores body markers (its body
/// is a prompt) but obeys the header, and is recorded; `echo` reads its marker from the body;
/// Gemini refuses `echo` with the 400 of a bad directive.
#[test]
fn analyzer_and_echo_over_http() {
    let mock = start(MockOptions::default());
    let port = mock.port;
    let text = r#"{"text":"Alice Johnson [[mock: status=500]] in Köln","language":"en"}"#;
    let r = roundtrip(port, "POST", "/analyze", &[], text);
    assert_eq!(r.status, 200);
    let found: Vec<(Value, Value)> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["start"].clone(), f["end"].clone()))
        .collect();
    assert_eq!(found, [(json!(0), json!(13)), (json!(38), json!(42))]);
    let r = roundtrip(port, "POST", "/analyze", &[("x-mock-behavior", "status=503")], text);
    assert_eq!(r.status, 503);
    assert!(r.json()["error"].is_string());
    let t0 = Instant::now();
    let r = roundtrip(port, "POST", "/analyze", &[("x-mock-behavior", "latency_ms=150")], text);
    assert_eq!(r.status, 200);
    assert!(t0.elapsed() >= Duration::from_millis(150));
    assert_eq!(roundtrip(port, "POST", "/analyze", &[], "nope").status, 400);
    assert_eq!(roundtrip(port, "GET", "/analyze", &[], "").status, 405);

    let chat = r#"{"model":"m","messages":[{"role":"user","content":"[[mock: echo]] mail [EMAIL_1]"}]}"#;
    let r = roundtrip(port, "POST", "/v1/chat/completions", &[AUTH], chat);
    assert_eq!(r.json()["choices"][0]["message"]["content"], "mail [EMAIL_1]");
    let r = roundtrip(port, "POST", "/v1beta/models/g:generateContent", &[], chat);
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "invalid_mock_directive");

    let listing = roundtrip(port, "GET", "/_mock/requests", &[], "").json();
    let reqs = listing["requests"].as_array().unwrap();
    assert_eq!(reqs[0]["path"], "/analyze");
    assert_eq!(reqs[0]["body"], text);
    mock.stop.notify_one();
    mock.thread.join().unwrap();
}
