//! Network faults between the gateway and a provider, against the real gateway binary and small
//! hand-written upstreams (`common::trickle`, `common::fake`): a response trickled one byte at a
//! time, a body cut in the middle of a chunk or of an SSE event, TLS handshakes that fail, a host
//! that does not resolve. What the client gets (a fallback's answer, a provider-shaped error, a
//! stream error event it can read), how soon (never a hang), and one usage record per request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::trickle::{chunk, head, Script, Step, Trickle};
use common::*;
use serde_json::{json, Value};

/// A whole chat completion, as an OpenAI-compatible provider answers it.
const COMPLETION: &str = r#"{"id":"chatcmpl-net","object":"chat.completion","created":1,"model":"x","choices":[{"index":0,"message":{"role":"assistant","content":"from the faulty provider"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;

const JSON_CT: &str = "content-type: application/json";
const SSE_CT: &str = "content-type: text/event-stream";
const CHUNKED: &str = "transfer-encoding: chunked";

/// One SSE event of an OpenAI chat stream carrying `text`.
fn event(text: &str) -> String {
    format!(
        "data: {{\"id\":\"chatcmpl-net\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"x\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}},\"finish_reason\":null}}]}}\n\n"
    )
}

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

/// A provider entry of `kind` at `base_url`, with `extra` lines.
fn provider(name: &str, kind: &str, base_url: &str, extra: &str) -> String {
    format!("  {name}:\n    kind: {kind}\n    base_url: \"{base_url}\"\n    api_keys: [\"key-of-{name}\"]\n{extra}")
}

/// A gateway with short timeouts, no retries, a 5 s budget per request (no request here should
/// come near it), the access log in `access.log`, the providers and aliases given, and a
/// `sentinel` alias on `good` (see `records`).
fn gateway(good: &Mock, providers: &str, models: &str, envs: &[(&str, &str)]) -> Gateway {
    Gateway::start_env(
        "",
        &format!(
            "routing:\n  retries: 0\n  backoff: 10ms\n  budget: 5s\nusage:\n  ledger: off\n  access_log: access.log\n\
             timeouts: {{ connect: 1s, first_byte: 2s, idle: 1s }}\nproviders:\n{providers}{}models:\n{models}  sentinel:\n    targets: [ {{ provider: good, model: sentinel }} ]\n",
            mock_provider("good", &good.base_url(), "")
        ),
        envs,
    )
}

/// What the client got: the status (0 when no response header came), the headers, the body as
/// far as it was read, the time the whole exchange took, and why the read stopped early.
#[derive(Debug)]
struct Got {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    took: Duration,
    broken: Option<String>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// The `data:` payloads of an SSE body, in order.
    fn events(&self) -> Vec<&str> {
        self.body.lines().filter_map(|l| l.strip_prefix("data: ")).collect()
    }

    fn request_id(&self) -> String {
        self.header("x-request-id").expect("x-request-id").to_string()
    }
}

/// POSTs `body` to the chat endpoint and reads the whole answer, giving up after `limit`: a hang
/// is what these tests look for, so it must end the call rather than the test run.
fn call(gw: &Gateway, body: &Value, limit: Duration) -> Got {
    let agent = ureq::AgentBuilder::new().timeout(limit).build();
    let start = Instant::now();
    let sent = agent
        .post(&gw.url("/v1/chat/completions"))
        .set("content-type", "application/json")
        .send_string(&body.to_string());
    let r = match sent {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => {
            return Got {
                status: 0,
                headers: Vec::new(),
                body: String::new(),
                took: start.elapsed(),
                broken: Some(e.to_string()),
            }
        }
    };
    let status = r.status();
    let headers = r
        .headers_names()
        .into_iter()
        .map(|n| (n.to_ascii_lowercase(), r.header(&n).unwrap_or_default().to_string()))
        .collect();
    let mut raw = Vec::new();
    let broken = r.into_reader().read_to_end(&mut raw).err().map(|e| e.to_string());
    Got {
        status,
        headers,
        body: String::from_utf8_lossy(&raw).into_owned(),
        took: start.elapsed(),
        broken,
    }
}

/// The access log's records (JSON lines), as written so far.
fn log_lines(gw: &Gateway) -> Vec<Value> {
    std::fs::read_to_string(gw.dir().join("access.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("access log line not JSON ({e}): {l}")))
        .collect()
}

/// The one usage record of each request in `ids`, once all are written. To see that no second
/// record follows, a sentinel request is sent after them and its record awaited: the access log
/// is written in order, so anything the earlier requests wrote is there by then.
fn records(gw: &Gateway, ids: &[String]) -> Vec<Value> {
    let has = |id: &str| log_lines(gw).iter().any(|r| r["request_id"] == id);
    wait_until("the usage records", Duration::from_secs(10), || {
        ids.iter().all(|id| has(id))
    });
    let sentinel = post(
        &gw.url("/v1/chat/completions"),
        &chat("sentinel", false).to_string(),
        &[],
    );
    assert_eq!(sentinel.status, 200, "{}", sentinel.body);
    let sentinel = sentinel.header("x-request-id").unwrap().to_string();
    wait_until("the sentinel's record", Duration::from_secs(10), || has(&sentinel));
    let lines = log_lines(gw);
    ids.iter()
        .map(|id| {
            let mine: Vec<&Value> = lines.iter().filter(|r| r["request_id"] == *id).collect();
            assert_eq!(mine.len(), 1, "one record per request, for {id}: {lines:#?}");
            mine[0].clone()
        })
        .collect()
}

/// The provider's error in OpenAI's shape, with `code`.
fn assert_error(got: &Got, status: u16, code: &str) -> Value {
    assert_eq!(got.status, status, "{got:?}");
    assert_eq!(got.header("content-type"), Some("application/json"), "{got:?}");
    let v = got.json();
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    v
}

/// The last event of a cut stream: a JSON error with `code`, after which nothing follows and no
/// `[DONE]` came.
fn assert_stream_error(got: &Got, code: &str) {
    assert_eq!(got.status, 200, "{got:?}");
    assert!(got.broken.is_none(), "the stream did not end cleanly: {got:?}");
    let events = got.events();
    assert!(
        !events.contains(&"[DONE]"),
        "a cut stream must not look complete: {events:?}"
    );
    let last = events.last().unwrap_or_else(|| panic!("no event: {got:?}"));
    let last: Value = serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "the stream's last event is not JSON ({e}): {last:?}\nwhole body: {:?}",
            got.body
        )
    });
    assert_eq!(last["error"]["code"], code, "{last}");
}

// ---- 1. Trickling upstreams --------------------------------------------------------------------

#[test]
fn a_response_header_trickled_past_first_byte_falls_back() {
    // The header comes one byte a second: it is not there after `first_byte` (2 s), so the
    // attempt times out and the fallback answers, for a whole answer and for a stream.
    let good = Mock::start(&[]);
    let mut header = head(200, &[JSON_CT, &format!("content-length: {}", COMPLETION.len())]);
    header.extend_from_slice(COMPLETION.as_bytes());
    let slow = Trickle::start(Script::Http(vec![Step::Trickle(header, Duration::from_secs(1))]));
    let gw = gateway(
        &good,
        &mock_provider("slow", &slow.base_url(), ""),
        "  m:\n    targets: [ { provider: slow, model: x }, { provider: good, model: y } ]\n",
        &[],
    );
    let mut ids = Vec::new();
    for stream in [false, true] {
        let got = call(&gw, &chat("m", stream), Duration::from_secs(8));
        assert_eq!(got.status, 200, "stream={stream}: {got:?}");
        assert_eq!(got.header("x-tollgate-provider"), Some("good"), "{got:?}");
        assert_eq!(got.header("x-tollgate-attempts"), Some("slow:timeout,good:200"));
        assert!(got.took < Duration::from_secs(4), "first_byte is 2 s: {:?}", got.took);
        ids.push(got.request_id());
    }
    // The gateway hung up on the trickle rather than reading it to its end.
    wait_until("the trickles to be dropped", Duration::from_secs(5), || {
        slow.peer_gone() == 2
    });
    for r in records(&gw, &ids) {
        assert_eq!(r["status"], 200, "{r}");
        assert_eq!(r["attempts"], "slow:timeout,good:200", "{r}");
    }
}

#[test]
fn a_whole_answer_trickled_past_first_byte_is_cut_off() {
    // The header comes at once, the JSON body one byte a second (the idle timeout, 3 s here, is
    // never reached). The README's first_byte "for non-streamed answers, the whole generation"
    // (2 s) is long past after a few bytes: the client must not wait for the ~250 s the body
    // takes. Nothing went to the client yet, so the fallback may still answer; a 504 is the
    // other acceptable answer.
    let good = Mock::start(&[]);
    let slow = Trickle::start(Script::Http(vec![
        Step::Send(head(200, &[JSON_CT, &format!("content-length: {}", COMPLETION.len())])),
        Step::Trickle(COMPLETION.as_bytes().to_vec(), Duration::from_secs(1)),
    ]));
    let gw = gateway(
        &good,
        &mock_provider("slow", &slow.base_url(), "    timeouts: { idle: 3s }\n"),
        "  m:\n    targets: [ { provider: slow, model: x }, { provider: good, model: y } ]\n",
        &[],
    );
    let got = call(&gw, &chat("m", false), Duration::from_secs(8));
    assert!(got.took < Duration::from_secs(5), "first_byte is 2 s: {got:?}");
    match got.status {
        200 => assert_eq!(got.header("x-tollgate-provider"), Some("good"), "{got:?}"),
        _ => {
            assert_error(&got, 504, "upstream_timeout");
        }
    }
    let r = &records(&gw, &[got.request_id()])[0];
    assert_eq!(r["status"], got.status, "{r}");
}

#[test]
fn a_stream_that_goes_quiet_mid_event_ends_with_an_idle_timeout_event() {
    // One event at once, then the next one trickled a byte every 2 s while the provider's idle
    // timeout is 600 ms (far apart, so that no byte of the half event reaches the client before
    // the timeout: the half-event test below covers that case). The client gets the first
    // event, then an error event it can read, promptly.
    let good = Mock::start(&[]);
    let second = event("never finished");
    let mut start = head(200, &[SSE_CT, CHUNKED]);
    start.extend_from_slice(&chunk(event("first").as_bytes()));
    start.extend_from_slice(format!("{:x}\r\n", second.len()).as_bytes());
    let slow = Trickle::start(Script::Http(vec![
        Step::Send(start),
        Step::Trickle(second.into_bytes(), Duration::from_secs(2)),
    ]));
    let gw = gateway(
        &good,
        &mock_provider("slow", &slow.base_url(), "    timeouts: { idle: 600ms }\n"),
        "  m:\n    targets: [ { provider: slow, model: x }, { provider: good, model: y } ]\n",
        &[],
    );
    let got = call(&gw, &chat("m", true), Duration::from_secs(8));
    assert_stream_error(&got, "stream_idle_timeout");
    assert!(got.events()[0].contains("\"first\""), "{got:?}");
    assert_eq!(got.events().len(), 2, "the first event, then the error: {got:?}");
    assert_eq!(
        got.header("x-tollgate-provider"),
        Some("slow"),
        "no fallback once the stream began"
    );
    assert!(got.took < Duration::from_secs(3), "idle is 600 ms: {:?}", got.took);
    wait_until("the trickle to be dropped", Duration::from_secs(5), || {
        slow.peer_gone() == 1
    });
    let r = &records(&gw, &[got.request_id()])[0];
    assert_eq!(
        (r["status"].as_u64(), r["error"].as_str()),
        (Some(200), Some("stream_idle_timeout")),
        "{r}"
    );
    assert_eq!(r["stream"], true, "{r}");
}

// ---- 2. Bodies cut in the middle -----------------------------------------------------------------

#[test]
fn a_whole_answer_cut_mid_body_is_a_502_not_a_truncated_success() {
    // The provider closes halfway through its JSON: inside a chunk, or short of its
    // Content-Length. Nothing went to the client yet: it gets a provider-shaped 502.
    let good = Mock::start(&[]);
    let half = &COMPLETION.as_bytes()[..COMPLETION.len() / 2];
    let mut in_chunk = head(200, &[JSON_CT, CHUNKED]);
    in_chunk.extend_from_slice(format!("{:x}\r\n", COMPLETION.len()).as_bytes());
    in_chunk.extend_from_slice(half);
    let mut short = head(200, &[JSON_CT, &format!("content-length: {}", COMPLETION.len())]);
    short.extend_from_slice(half);
    let chunked = Trickle::start(Script::Http(vec![Step::Send(in_chunk)]));
    let sized = Trickle::start(Script::Http(vec![Step::Send(short)]));
    let gw = gateway(
        &good,
        &format!(
            "{}{}",
            mock_provider("chunked", &chunked.base_url(), ""),
            mock_provider("sized", &sized.base_url(), "")
        ),
        "  c:\n    targets: [ { provider: chunked, model: x } ]\n  s:\n    targets: [ { provider: sized, model: x } ]\n",
        &[],
    );
    let mut ids = Vec::new();
    for (model, name) in [("c", "chunked"), ("s", "sized")] {
        let got = call(&gw, &chat(model, false), Duration::from_secs(8));
        let v = assert_error(&got, 502, "upstream_protocol_error");
        assert!(!got.body.contains("from the faulty provider"), "{v}");
        assert_eq!(got.header("x-tollgate-attempts"), Some(format!("{name}:200").as_str()));
        assert!(got.took < Duration::from_secs(2), "{got:?}");
        ids.push(got.request_id());
    }
    for r in records(&gw, &ids) {
        assert_eq!(r["status"], 502, "{r}");
        assert_eq!(r["error"], "upstream_protocol_error", "{r}");
    }
}

/// A stream whose second event is cut in half, then the connection closed: inside an HTTP chunk
/// (`chunked`), or a body delimited by the connection's close.
fn half_event_stream(chunked: bool) -> Trickle {
    let second = event("cut in half");
    let half = &second.as_bytes()[..second.len() / 2];
    let mut bytes = if chunked {
        let mut b = head(200, &[SSE_CT, CHUNKED]);
        b.extend_from_slice(&chunk(event("first").as_bytes()));
        b.extend_from_slice(format!("{:x}\r\n", second.len()).as_bytes());
        b
    } else {
        let mut b = head(200, &[SSE_CT, "connection: close"]);
        b.extend_from_slice(event("first").as_bytes());
        b
    };
    bytes.extend_from_slice(half);
    Trickle::start(Script::Http(vec![Step::Send(bytes)]))
}

/// A gateway in front of both half-event streams, each behind an `openai_compatible` provider
/// (whose stream the gateway passes through as it is) and an `openai` one (whose stream it
/// re-frames event by event, to take out the usage chunk it asked for).
fn half_event_gateway(good: &Mock, cut: &Trickle, ended: &Trickle) -> Gateway {
    gateway(
        good,
        &format!(
            "{}{}{}{}",
            mock_provider("cut", &cut.base_url(), ""),
            mock_provider("ended", &ended.base_url(), ""),
            provider("ocut", "openai", &cut.base_url(), ""),
            provider("oended", "openai", &ended.base_url(), "")
        ),
        &["cut", "ended", "ocut", "oended"]
            .map(|p| format!("  {p}:\n    targets: [ {{ provider: {p}, model: x }} ]\n"))
            .concat(),
        &[],
    )
}

/// The cases of the half-event tests: (alias, the client asks for the usage chunk, the error
/// code the stream must end with).
const HALF_EVENT_CASES: [(&str, bool, &str); 8] = [
    ("cut", false, "stream_cut"),
    ("cut", true, "stream_cut"),
    ("ended", false, "stream_incomplete"),
    ("ended", true, "stream_incomplete"),
    ("ocut", false, "stream_cut"),
    ("ocut", true, "stream_cut"),
    ("oended", false, "stream_incomplete"),
    ("oended", true, "stream_incomplete"),
];

fn half_event_request(model: &str, usage: bool) -> Value {
    let mut body = chat(model, true);
    if usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

#[test]
fn a_stream_cut_mid_event_is_never_presented_as_complete() {
    // The provider sends one event, half of the next, and closes. Whatever the framing and the
    // provider's dialect: the first event arrives, the stream ends at once with the error's code
    // in it and no [DONE], and the record says why. (Whether the client can read that error is
    // the next test.)
    let good = Mock::start(&[]);
    let (cut, ended) = (half_event_stream(true), half_event_stream(false));
    let gw = half_event_gateway(&good, &cut, &ended);
    let mut ids = Vec::new();
    for (model, usage, code) in HALF_EVENT_CASES {
        let got = call(&gw, &half_event_request(model, usage), Duration::from_secs(8));
        let case = format!("{model} include_usage={usage}");
        assert_eq!(got.status, 200, "{case}: {got:?}");
        assert!(got.broken.is_none(), "{case}: {got:?}");
        assert!(got.took < Duration::from_secs(2), "{case}: {got:?}");
        assert!(got.events()[0].contains("\"first\""), "{case}: {got:?}");
        assert!(!got.events().contains(&"[DONE]"), "{case}: {got:?}");
        assert!(got.body.contains(&format!("\"code\":\"{code}\"")), "{case}: {got:?}");
        ids.push(got.request_id());
    }
    for (r, (model, _, code)) in records(&gw, &ids).iter().zip(HALF_EVENT_CASES) {
        assert_eq!(
            (r["status"].as_u64(), r["error"].as_str()),
            (Some(200), Some(code)),
            "{r}"
        );
        assert_eq!(r["model"], model, "{r}");
    }
}

#[test]
fn a_stream_cut_mid_event_ends_with_an_error_event_the_client_can_read() {
    // As above; and every event the client gets is whole JSON, the last one the error. Today a
    // passed-through stream (`openai_compatible`, or `openai` when the client asked for the usage
    // chunk) relays the half event's bytes and writes `data: {"error"...}` on the same line,
    // which no SSE client can read; a re-framed `openai` stream that simply ended dispatches the
    // half event as if it were whole.
    let good = Mock::start(&[]);
    let (cut, ended) = (half_event_stream(true), half_event_stream(false));
    let gw = half_event_gateway(&good, &cut, &ended);
    for (model, usage, code) in HALF_EVENT_CASES {
        let got = call(&gw, &half_event_request(model, usage), Duration::from_secs(8));
        let case = format!("{model} include_usage={usage}");
        for e in got.events() {
            assert!(
                serde_json::from_str::<Value>(e).is_ok(),
                "{case}: an event that is not JSON: {e:?}\nwhole body: {:?}",
                got.body
            );
        }
        assert_stream_error(&got, code);
    }
}

// ---- 3. TLS handshake failures ---------------------------------------------------------------------

/// An HTTPS provider on loopback whose certificate a private CA signed; the CA's PEM is returned
/// with it (the gateway trusts it only when told to).
fn tls_provider(dir: &std::path::Path) -> (common::fake::Fake, std::path::PathBuf) {
    let ca = common::pki::Ca::new(dir, "provider-ca");
    let issued = ca.issue(dir, "provider");
    let handler: common::fake::Handler = std::sync::Arc::new(|_, _| (200, COMPLETION.to_string()));
    let fake = common::fake::Fake::start_tls(handler, &issued.cert, &issued.key);
    (fake, ca.pem.clone())
}

#[test]
fn an_untrusted_provider_certificate_fails_fast_and_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let (tls, ca) = tls_provider(dir.path());
    let url = format!("https://127.0.0.1:{}/v1", tls.port);
    let good = Mock::start(&[]);
    let providers = mock_provider("tls", &url, "    timeouts: { connect: 3s }\n");
    let models = "  m:\n    targets: [ { provider: tls, model: x }, { provider: good, model: y } ]\n  solo:\n    targets: [ { provider: tls, model: x } ]\n";
    let gw = gateway(&good, &providers, models, &[]);

    // With a fallback: the handshake fails at once (well under the 3 s connect timeout), as a
    // connect failure, and the next target answers.
    let got = call(&gw, &chat("m", false), Duration::from_secs(8));
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.header("x-tollgate-attempts"), Some("tls:connect,good:200"));
    assert!(got.took < Duration::from_secs(1), "{:?}", got.took);
    // Without one: a provider-shaped 502 naming the provider, its URL and a TLS failure.
    let alone = call(&gw, &chat("solo", false), Duration::from_secs(8));
    let v = assert_error(&alone, 502, "upstream_connect_error");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("`tls`") && message.contains(&url), "{message}");
    assert!(message.contains("TLSHandshakeFailure"), "{message}");
    // The cause says why: the issuer is not trusted.
    assert!(message.contains("UnknownIssuer"), "{message}");
    assert!(alone.took < Duration::from_secs(1), "{:?}", alone.took);
    assert!(
        tls.seen.lock().unwrap().is_empty(),
        "no request got through the handshake"
    );
    assert_eq!(
        gw.metric(r#"tollgate_upstream_errors_total{kind="connect",provider="tls"}"#),
        2.0
    );
    let recs = records(&gw, &[got.request_id(), alone.request_id()]);
    assert_eq!(recs[0]["attempts"], "tls:connect,good:200", "{}", recs[0]);
    assert_eq!(recs[1]["status"], 502, "{}", recs[1]);
    assert_eq!(recs[1]["error"], "upstream_connect_error", "{}", recs[1]);

    // The same provider, its CA trusted (`SSL_CERT_FILE`, read by the platform verifier): the
    // certificate was the only fault.
    let trusting = gateway(&good, &providers, models, &[("SSL_CERT_FILE", ca.to_str().unwrap())]);
    let got = call(&trusting, &chat("solo", false), Duration::from_secs(8));
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.header("x-tollgate-attempts"), Some("tls:200"));
    assert_eq!(
        got.json()["choices"][0]["message"]["content"],
        "from the faulty provider"
    );
}

#[test]
fn a_tls_handshake_the_provider_cuts_or_never_answers_fails_over() {
    // One provider reads the ClientHello and closes: a fast connect failure. Another never
    // answers it: the handshake is bounded by the connect timeout (1 s). Both fall back.
    let good = Mock::start(&[]);
    let closer = Trickle::start(Script::CloseAfterRead(5));
    let silent = Trickle::start(Script::Silent);
    let https = |t: &Trickle| format!("https://127.0.0.1:{}/v1", t.port);
    let gw = gateway(
        &good,
        &format!(
            "{}{}",
            mock_provider("closer", &https(&closer), "    timeouts: { connect: 3s }\n"),
            mock_provider("silent", &https(&silent), "")
        ),
        "  a:\n    targets: [ { provider: closer, model: x }, { provider: good, model: y } ]\n  b:\n    targets: [ { provider: silent, model: x }, { provider: good, model: y } ]\n  solo:\n    targets: [ { provider: closer, model: x } ]\n",
        &[],
    );
    let got = call(&gw, &chat("a", false), Duration::from_secs(8));
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.header("x-tollgate-attempts"), Some("closer:connect,good:200"));
    assert!(got.took < Duration::from_secs(1), "{:?}", got.took);
    let alone = call(&gw, &chat("solo", false), Duration::from_secs(8));
    let v = assert_error(&alone, 502, "upstream_connect_error");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("TLSHandshakeFailure"),
        "{v}"
    );

    let stalled = call(&gw, &chat("b", false), Duration::from_secs(8));
    assert_eq!(stalled.status, 200, "{stalled:?}");
    let attempts = stalled.header("x-tollgate-attempts").unwrap();
    // (Pingora reports a handshake past the whole-connection timeout as `ConnectTimedout`: a
    // timeout, where a refused or broken handshake is a connect failure.)
    assert_eq!(attempts, "silent:timeout,good:200");
    assert!(
        stalled.took >= Duration::from_millis(900) && stalled.took < Duration::from_secs(3),
        "connect is 1 s: {:?}",
        stalled.took
    );
    wait_until("the silent handshake to be dropped", Duration::from_secs(5), || {
        silent.peer_gone() == 1
    });
    assert_eq!(closer.accepted(), 2);
    let recs = records(&gw, &[got.request_id(), alone.request_id(), stalled.request_id()]);
    assert_eq!(recs[1]["error"], "upstream_connect_error", "{}", recs[1]);
    assert_eq!(recs[2]["attempts"], attempts, "{}", recs[2]);
}

// ---- 4. DNS --------------------------------------------------------------------------------------

#[test]
fn a_provider_whose_host_does_not_resolve_is_disabled_at_load_with_a_warning() {
    // Resolved once, when the config is compiled (at start and at each reload): a host that does
    // not resolve disables its provider (with one warning) rather than failing the config.
    let good = Mock::start(&[]);
    let gw = gateway(
        &good,
        &mock_provider("ghost", "http://nonexistent.invalid/v1", ""),
        "  m:\n    targets: [ { provider: ghost, model: x }, { provider: good, model: y } ]\n  solo:\n    targets: [ { provider: ghost, model: x } ]\n",
        &[],
    );
    let warnings: Vec<String> = gw
        .proc
        .log_text()
        .lines()
        .filter(|l| l.contains("cannot resolve nonexistent.invalid"))
        .map(str::to_string)
        .collect();
    assert_eq!(warnings.len(), 1, "one warning: {warnings:?}");
    assert!(
        warnings[0].contains("WARN")
            && warnings[0].contains(r#"provider "ghost" is disabled: cannot resolve nonexistent.invalid"#),
        "{warnings:?}"
    );
    // `check` says the same, as a warning: the file is valid.
    let out = std::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(&gw.config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(r#"warning: provider "ghost" is disabled: cannot resolve nonexistent.invalid"#),
        "{stderr}"
    );
    assert_eq!(get(&gw.admin_url("/ready")).json()["providers_enabled"], 1);

    // Its alias alone: 503, saying why. With another target: that one answers.
    let alone = call(&gw, &chat("solo", false), Duration::from_secs(8));
    let v = assert_error(&alone, 503, "no_provider_available");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot resolve nonexistent.invalid"),
        "{v}"
    );
    let got = call(&gw, &chat("m", false), Duration::from_secs(8));
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.header("x-tollgate-provider"), Some("good"));
    assert_eq!(got.header("x-tollgate-attempts"), Some("good:200"));
    let recs = records(&gw, &[alone.request_id(), got.request_id()]);
    assert_eq!(recs[0]["error"], "no_provider_available", "{}", recs[0]);
    assert_eq!(recs[1]["status"], 200, "{}", recs[1]);
}
