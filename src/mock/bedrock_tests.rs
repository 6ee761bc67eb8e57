//! Tests of the mock's Bedrock dialect: routing, SigV4 verification, Converse validation, JSON and
//! event-stream answers (decoded back with the gateway's own translator), embeddings, errors; and
//! one round trip over a real socket with requests rendered by the gateway's Bedrock adapter.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::SystemTime;

use super::*;
use crate::api::chat::ChatChunk;
use crate::providers::bedrock::request::JsonMode;
use crate::providers::bedrock::stream::BedrockStream;
use crate::providers::bedrock::BedrockChunks;
use crate::providers::{ChunkSource, StreamFault};
use crate::secret::Secret;
use crate::sse::eventstream::Decoder;

fn keys() -> AwsKeys {
    AwsKeys {
        access_key_id: DEFAULT_ACCESS_KEY_ID.into(),
        secret_access_key: DEFAULT_SECRET_ACCESS_KEY.into(),
    }
}

/// A request header for `path` signed like the gateway signs (optionally with other credentials).
fn signed(path: &str, body: &[u8], key_id: &str, secret: &str) -> RequestHeader {
    let secret = Secret::new(secret);
    let creds = sigv4::Credentials {
        access_key_id: key_id,
        secret_access_key: &secret,
        session_token: None,
    };
    let mut h = RequestHeader::build("POST", path.as_bytes(), None).unwrap();
    h.insert_header("host", "mock:8091").unwrap();
    h.insert_header("content-type", "application/json").unwrap();
    for (k, v) in sigv4::sign_post(creds, "us-west-2", "mock:8091", path, body, SystemTime::now()).unwrap() {
        h.insert_header(k, v).unwrap();
    }
    h
}

fn call(model: &str, op: Op) -> Call {
    Call {
        model: model.into(),
        op,
    }
}

fn path_of(c: &Call) -> String {
    let op = match c.op {
        Op::Converse => "converse",
        Op::ConverseStream => "converse-stream",
        Op::Invoke => "invoke",
    };
    crate::providers::bedrock::path("", &c.model, op)
}

/// Signs and sends `body` to the dialect with behaviour `b`.
fn send(c: &Call, body: &Value, b: &Behavior) -> Reply {
    let raw = serde_json::to_vec(body).unwrap();
    let req = signed(&path_of(c), &raw, DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY);
    reply(&req, c, &raw, 7, b, &keys())
}

fn json_of(r: Reply) -> (u16, Value, Vec<(&'static str, String)>) {
    match r {
        Reply::Json { status, body, headers } => (status, serde_json::from_slice(&body).unwrap(), headers),
        Reply::Sse(_) => panic!("expected JSON, got a stream"),
    }
}

fn error_type<'a>(headers: &'a [(&'static str, String)]) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| *k == "x-amzn-errortype")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

const SONNET: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";

fn hello() -> Value {
    json!({"messages": [{"role": "user", "content": [{"text": "Hello there"}]}]})
}

#[test]
fn routes_decode_the_model_id() {
    assert_eq!(
        route(
            &Method::POST,
            "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream"
        )
        .ok(),
        Some(call(SONNET, Op::ConverseStream))
    );
    assert_eq!(
        route(&Method::POST, "/model/amazon.titan-embed-text-v2%3A0/invoke").ok(),
        Some(call("amazon.titan-embed-text-v2:0", Op::Invoke))
    );
    let status = |r: Result<Call, Reply>| match r {
        Err(Reply::Json { status, .. }) => status,
        _ => 0,
    };
    assert_eq!(status(route(&Method::GET, "/model/m/converse")), 405);
    assert_eq!(status(route(&Method::POST, "/model/m/chat")), 404);
    assert_eq!(status(route(&Method::POST, "/model/m")), 404);
    assert_eq!(status(route(&Method::POST, "/model/%ZZ/converse")), 400);
}

#[test]
fn signatures_are_verified() {
    let c = call(SONNET, Op::Converse);
    let raw = serde_json::to_vec(&hello()).unwrap();
    let b = Behavior::default();
    let run = |req: &RequestHeader, body: &[u8]| json_of(reply(req, &c, body, 1, &b, &keys()));

    let good = signed(&path_of(&c), &raw, DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY);
    assert_eq!(run(&good, &raw).0, 200);
    // The body changed after signing.
    let (status, body, headers) = run(&good, b"{\"messages\":[]}");
    assert_eq!((status, error_type(&headers)), (403, "InvalidSignatureException"));
    assert!(body["message"]
        .as_str()
        .unwrap()
        .starts_with("The request signature we calculated does not match"));
    // Wrong secret, unknown key, no signature at all.
    let wrong = signed(&path_of(&c), &raw, DEFAULT_ACCESS_KEY_ID, "not-the-secret");
    assert_eq!(error_type(&run(&wrong, &raw).2), "InvalidSignatureException");
    let stranger = signed(&path_of(&c), &raw, "AKIDSTRANGER", DEFAULT_SECRET_ACCESS_KEY);
    assert_eq!(error_type(&run(&stranger, &raw).2), "UnrecognizedClientException");
    let mut bare = RequestHeader::build("POST", path_of(&c).as_bytes(), None).unwrap();
    bare.insert_header("host", "mock:8091").unwrap();
    let (status, _, headers) = run(&bare, &raw);
    assert_eq!((status, error_type(&headers)), (403, "InvalidSignatureException"));
}

#[test]
fn converse_validation_is_bedrocks() {
    let c = call(SONNET, Op::Converse);
    let b = Behavior::default();
    let tools = json!({"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object"}}}}]});
    let use_block = json!({"toolUse": {"toolUseId": "t1", "name": "f", "input": {}}});
    let result_block = json!({"toolResult": {"toolUseId": "t1", "content": [{"text": "ok"}]}});
    let cases = [
        (json!({}), "messages"),
        (json!({"messages": []}), "start with a user message"),
        (
            json!({"messages": [{"role": "assistant", "content": [{"text": "x"}]}]}),
            "start with a user message",
        ),
        (
            json!({"messages": [{"role": "system", "content": [{"text": "x"}]}]}),
            "enum value set",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"text": "a"}]}, {"role": "user", "content": [{"text": "b"}]}]}),
            "alternate",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"text": "  "}]}]}),
            "is blank",
        ),
        (json!({"messages": [{"role": "user", "content": []}]}), "is empty"),
        (
            json!({"messages": [{"role": "user", "content": [{"text": "a", "image": {}}]}]}),
            "exactly one member",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"text": "a"}]}, {"role": "assistant", "content": [use_block]},
                                {"role": "user", "content": [result_block]}]}),
            "toolConfig field must be defined",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"toolResult": {"toolUseId": "nope", "content": []}}]}], "toolConfig": tools}),
            "does not match any toolUse",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"text": "a"}]}], "toolConfig": {"tools": tools["tools"], "toolChoice": {"tool": {"name": "g"}}}}),
            "toolChoice",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"text": "a"}]}], "toolConfig": {"tools": [{"toolSpec": {"name": "f"}}]}}),
            "toolConfig.tools",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"text": "a"}]}], "inferenceConfig": {"maxTokens": 0}}),
            "maxTokens",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"image": {"format": "tiff", "source": {"bytes": "AA=="}}}]}]}),
            "image",
        ),
    ];
    for (body, needle) in cases {
        let (status, v, headers) = json_of(send(&c, &body, &b));
        assert_eq!((status, error_type(&headers)), (400, "ValidationException"), "{body}");
        let msg = v["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    // A well-formed tool round trip passes.
    let ok = json!({"messages": [{"role": "user", "content": [{"text": "a"}]}, {"role": "assistant", "content": [use_block]},
                                 {"role": "user", "content": [result_block]}], "toolConfig": tools});
    assert_eq!(json_of(send(&c, &ok, &b)).0, 200);
}

#[test]
fn converse_answers_text_usage_and_tools() {
    let c = call(SONNET, Op::Converse);
    let body = json!({"system": [{"text": "abcd"}], "messages": [{"role": "user", "content": [{"text": "héllo"}]}]});
    let (status, v, headers) = json_of(send(&c, &body, &Behavior::default()));
    assert_eq!(status, 200);
    assert!(headers.iter().any(|(k, v)| *k == "x-amzn-requestid" && v == "mock-7"));
    assert_eq!(
        v["output"]["message"]["content"],
        json!([{"text": "This is the Tollgate"}])
    );
    assert_eq!(v["stopReason"], "end_turn");
    // ceil(9 / 4) + 3 × 1 message
    assert_eq!(
        v["usage"],
        json!({"inputTokens": 6, "outputTokens": 4, "totalTokens": 10})
    );

    let cut = json!({"messages": body["messages"], "inferenceConfig": {"maxTokens": 2}});
    let (_, v, _) = json_of(send(&c, &cut, &Behavior::default()));
    assert_eq!(
        (v["stopReason"].as_str(), v["usage"]["outputTokens"].as_u64()),
        (Some("max_tokens"), Some(2))
    );

    let tools = json!({"tools": [{"toolSpec": {"name": "lookup", "inputSchema": {"json": {"type": "object"}}}}]});
    let with_tools = json!({"messages": body["messages"], "toolConfig": tools});
    let b = Behavior {
        tool: Some("lookup".into()),
        ..Behavior::default()
    };
    let (_, v, _) = json_of(send(&c, &with_tools, &b));
    assert_eq!(
        v["output"]["message"]["content"],
        json!([{"toolUse": {"toolUseId": TOOL_USE_ID, "name": "lookup", "input": {"q": "mock"}}}])
    );
    assert_eq!(v["stopReason"], "tool_use");
    let b = Behavior {
        tool: Some("other".into()),
        ..Behavior::default()
    };
    assert_eq!(json_of(send(&c, &with_tools, &b)).0, 400);
    // A forced tool choice (how the gateway emulates JSON mode) is answered with that tool.
    let forced = json!({"messages": body["messages"], "toolConfig": {"tools": tools["tools"], "toolChoice": {"tool": {"name": "lookup"}}}});
    let (_, v, _) = json_of(send(&c, &forced, &Behavior::default()));
    assert_eq!(v["output"]["message"]["content"][0]["toolUse"]["name"], "lookup");
}

#[test]
fn forced_errors_are_bedrock_shaped() {
    let b = Behavior {
        status: Some(429),
        retry_after: Some(3),
        ..Behavior::default()
    };
    // Forced before the signature is even looked at.
    let bare = RequestHeader::build("POST", b"/model/m/converse", None).unwrap();
    let (status, v, headers) = json_of(reply(&bare, &call("m", Op::Converse), b"{}", 1, &b, &keys()));
    assert_eq!((status, error_type(&headers)), (429, "ThrottlingException"));
    assert!(v["message"].as_str().unwrap().contains("status=429"));
    assert!(headers.iter().any(|(k, v)| *k == "retry-after" && v == "3"));
}

/// Runs a stream reply to its end: `(content type, frames' event types, content flags, bytes)`.
fn stream_of(r: Reply) -> (&'static str, Vec<String>, Vec<bool>, Vec<u8>) {
    let Reply::Sse(mut src) = r else {
        panic!("expected a stream")
    };
    let ct = src.content_type();
    let (mut wire, mut flags) = (Vec::new(), Vec::new());
    while let Some(ev) = src.next_event() {
        wire.extend_from_slice(&ev.data);
        flags.push(ev.content);
    }
    let mut names = Vec::new();
    let mut d = Decoder::default();
    d.push(&wire, &mut |f| {
        assert_eq!(f.str_header(":content-type"), Some("application/json"));
        let p: Value = serde_json::from_slice(&f.payload).unwrap();
        assert!(p["p"].is_string(), "padded like Bedrock's events");
        names.push(f.event_type().unwrap().to_string());
    })
    .unwrap();
    d.finish().unwrap();
    (ct, names, flags, wire)
}

fn translate(wire: &[u8]) -> (Vec<ChatChunk>, bool, Result<(), StreamFault>) {
    let mut src = BedrockChunks::new(BedrockStream::new("id".into(), SONNET.into(), 1, JsonMode(false)));
    let mut out = Vec::new();
    let r = src.push(wire, &mut out).and_then(|()| src.finish(&mut out));
    (out, src.completed(), r)
}

#[test]
fn converse_stream_is_real_event_stream_framing() {
    let c = call(SONNET, Op::ConverseStream);
    let (ct, names, flags, wire) = stream_of(send(&c, &hello(), &Behavior::default()));
    assert_eq!(ct, "application/vnd.amazon.eventstream");
    assert_eq!(
        names,
        [
            "messageStart",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockStop",
            "messageStop",
            "metadata"
        ]
    );
    assert_eq!(flags.iter().filter(|c| **c).count(), 4);
    let (chunks, completed, r) = translate(&wire);
    assert!(completed && r.is_ok());
    let text: String = chunks
        .iter()
        .filter_map(|c| c.choices.first()?.delta.content.clone())
        .collect();
    assert_eq!(text, "This is the Tollgate");
    assert_eq!(chunks.last().unwrap().usage.map(|u| u.completion_tokens), Some(4));

    let tools = json!({"tools": [{"toolSpec": {"name": "lookup", "inputSchema": {"json": {"type": "object"}}}}]});
    let b = Behavior {
        tool: Some("lookup".into()),
        ..Behavior::default()
    };
    let body = json!({"messages": hello()["messages"], "toolConfig": tools});
    let (_, names, _, wire) = stream_of(send(&c, &body, &b));
    assert_eq!(names[1], "contentBlockStart");
    let (chunks, completed, _) = translate(&wire);
    assert!(completed);
    let args: String = chunks
        .iter()
        .filter_map(|c| {
            c.choices.first()?.delta.tool_calls.as_ref()?[0]
                .function
                .as_ref()?
                .arguments
                .clone()
        })
        .collect();
    assert_eq!(args, "{\"q\":\"mock\"}");
    let finish: Vec<_> = chunks
        .iter()
        .filter_map(|c| c.choices.first()?.finish_reason.clone())
        .collect();
    assert_eq!(finish, ["tool_calls"]);
}

#[test]
fn embeddings_follow_titan_and_cohere() {
    let titan = call("amazon.titan-embed-text-v2:0", Op::Invoke);
    let (status, v, _) = json_of(send(
        &titan,
        &json!({"inputText": "hello world", "dimensions": 256}),
        &Behavior::default(),
    ));
    assert_eq!(status, 200);
    assert_eq!(v["embedding"].as_array().unwrap().len(), 256);
    assert_eq!(v["inputTextTokenCount"], 3);
    // As f32 (serde_json's default float parsing may be one f64 ulp off).
    let got: Vec<f32> = v["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(got, embedding_vector(&Input::Text("hello world"), 256));
    let (_, v, _) = json_of(send(&titan, &json!({"inputText": "x"}), &Behavior::default()));
    assert_eq!(v["embedding"].as_array().unwrap().len(), 1024);
    for bad in [
        json!({"inputText": "x", "dimensions": 8}),
        json!({"texts": ["x"]}),
        json!({"inputText": ""}),
    ] {
        assert_eq!(json_of(send(&titan, &bad, &Behavior::default())).0, 400, "{bad}");
    }
    let v1 = call("amazon.titan-embed-text-v1", Op::Invoke);
    assert_eq!(
        json_of(send(
            &v1,
            &json!({"inputText": "x", "dimensions": 256}),
            &Behavior::default()
        ))
        .0,
        400
    );

    let cohere = call("cohere.embed-english-v3", Op::Invoke);
    let (status, v, headers) = json_of(send(
        &cohere,
        &json!({"texts": ["a", "bb"], "input_type": "search_query"}),
        &Behavior::default(),
    ));
    assert_eq!(status, 200);
    assert_eq!(v["embeddings"].as_array().unwrap().len(), 2);
    assert_eq!(v["embeddings"][1].as_array().unwrap().len(), 1024);
    assert!(headers
        .iter()
        .any(|(k, v)| *k == "x-amzn-bedrock-input-token-count" && v == "2"));
    assert_eq!(
        json_of(send(&cohere, &json!({"texts": ["a"]}), &Behavior::default())).0,
        400
    );
    let nova = call("amazon.nova-lite-v1:0", Op::Invoke);
    assert_eq!(
        json_of(send(&nova, &json!({"inputText": "x"}), &Behavior::default())).0,
        400
    );
}

// ---------------------------------------------------------------------------------------------
// Over a real socket, with requests rendered by the gateway's adapter

mod wire {
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::path::Path;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use async_trait::async_trait;
    use bytes::Bytes;
    use pingora::server::configuration::{Opt, ServerConf};
    use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
    use tokio::sync::Notify;

    use super::*;
    use crate::api::openai::LlmRequest;
    use crate::api::Endpoint;
    use crate::config::{load_str, Env};
    use crate::mock::{mock_service, MockOptions};
    use crate::providers::{ProviderKind, Rendered};

    struct Stop(Arc<Notify>);

    #[async_trait]
    impl ShutdownSignalWatch for Stop {
        async fn recv(&self) -> ShutdownSignal {
            self.0.notified().await;
            ShutdownSignal::FastShutdown
        }
    }

    fn start() -> (u16, Arc<Notify>, std::thread::JoinHandle<()>) {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let stop = Arc::new(Notify::new());
        let signal = Stop(stop.clone());
        let thread = std::thread::spawn(move || {
            let mut server = Server::new_with_opt_and_conf(None::<Opt>, ServerConf::default());
            server.bootstrap();
            server.add_service(mock_service(&format!("127.0.0.1:{port}"), MockOptions::default()));
            server.run(RunArgs {
                shutdown_signal: Box::new(signal),
            });
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mock did not start listening");
            std::thread::sleep(Duration::from_millis(10));
        }
        (port, stop, thread)
    }

    /// Renders an OpenAI request for the Bedrock target of a config pointing at the mock.
    fn render(port: u16, endpoint: Endpoint, body: Value, model: &str) -> (Rendered, LlmRequest) {
        let doc = format!(
            "providers:\n  aws:\n    kind: bedrock\n    base_url: http://127.0.0.1:{port}\n    aws_region: us-west-2\n    \
             aws_access_key_id: {DEFAULT_ACCESS_KEY_ID}\n    aws_secret_access_key: {DEFAULT_SECRET_ACCESS_KEY}\n\
             models:\n  m:\n    targets: [{{provider: aws, model: \"{model}\"}}]\n"
        );
        let resolve = |_: &str, p: u16| Ok(SocketAddr::from(([127, 0, 0, 1], p)));
        let env = Env {
            var: &|_| None,
            resolve: &resolve,
        };
        let snap = load_str(Path::new("mock.yaml"), &doc, &env).unwrap();
        let target = snap.model("m").unwrap().targets[0].clone();
        let req = LlmRequest::parse(endpoint, Bytes::from(body.to_string())).unwrap();
        let r = ProviderKind::Bedrock
            .adapter()
            .render(&req, &target.render_target())
            .unwrap();
        (r, req)
    }

    /// Sends a rendered request the way `proxy::upstream` does (Host, rendered headers,
    /// `content-type: application/json`).
    fn post(port: u16, r: &Rendered, extra: &[(&str, &str)]) -> ureq::Response {
        let mut req = ureq::post(&format!("http://127.0.0.1:{port}{}", r.path)).set("content-type", "application/json");
        for (k, v) in &r.headers {
            req = req.set(k.as_str(), v.to_str().unwrap());
        }
        for (k, v) in extra {
            req = req.set(k, v);
        }
        match req.send_bytes(&r.body) {
            Ok(resp) | Err(ureq::Error::Status(_, resp)) => resp,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn the_gateways_requests_are_accepted_and_answered() {
        let (port, stop, thread) = start();
        let chat = json!({"model": "m", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}], "max_tokens": 3});
        let (r, _) = render(port, Endpoint::ChatCompletions, chat.clone(), SONNET);
        let resp = post(port, &r, &[]);
        assert_eq!(resp.status(), 200);
        let out = ProviderKind::Bedrock
            .adapter()
            .parse_chat(resp.into_string().unwrap().as_bytes(), &r)
            .unwrap();
        assert_eq!(out.choices[0].finish_reason.as_deref(), Some("length"));
        assert_eq!(out.model, SONNET);

        // Streamed: real framing over chunked HTTP, translated by the adapter's chunk source.
        let mut streamed = chat.clone();
        streamed["stream"] = json!(true);
        let (r, _) = render(port, Endpoint::ChatCompletions, streamed.clone(), SONNET);
        let resp = post(port, &r, &[]);
        assert_eq!(resp.header("content-type"), Some("application/vnd.amazon.eventstream"));
        let mut wire = Vec::new();
        std::io::Read::read_to_end(&mut resp.into_reader(), &mut wire).unwrap();
        let mut src = ProviderKind::Bedrock.adapter().chat_stream(&r);
        let mut chunks = Vec::new();
        for piece in wire.chunks(7) {
            src.push(piece, &mut chunks).unwrap();
        }
        src.finish(&mut chunks).unwrap();
        assert!(src.completed());
        assert_eq!(src.usage().map(|u| u.completion_tokens), Some(3));

        // close_after cuts the stream mid-way: the translator sees an incomplete stream.
        let (r, _) = render(port, Endpoint::ChatCompletions, streamed, SONNET);
        let resp = post(port, &r, &[("x-mock-behavior", "close_after=1")]);
        let mut wire = Vec::new();
        let _ = std::io::Read::read_to_end(&mut resp.into_reader(), &mut wire);
        let mut src = ProviderKind::Bedrock.adapter().chat_stream(&r);
        let mut chunks = Vec::new();
        let _ = src.push(&wire, &mut chunks);
        assert!(!src.completed());

        // A tampered body is refused with Bedrock's 403.
        let (mut r, _) = render(port, Endpoint::ChatCompletions, chat, SONNET);
        r.body = Bytes::from_static(br#"{"messages":[{"role":"user","content":[{"text":"other"}]}]}"#);
        let resp = post(port, &r, &[]);
        assert_eq!(resp.status(), 403);
        assert_eq!(resp.header("x-amzn-errortype"), Some("InvalidSignatureException"));

        // Embeddings through InvokeModel, base64 as the OpenAI SDKs ask.
        let emb = json!({"model": "m", "input": "hello", "dimensions": 256, "encoding_format": "base64"});
        let (r, req) = render(port, Endpoint::Embeddings, emb, "amazon.titan-embed-text-v2:0");
        let resp = post(port, &r, &[]);
        assert_eq!(resp.status(), 200);
        let out = ProviderKind::Bedrock
            .adapter()
            .parse_embeddings(&req, resp.into_string().unwrap().as_bytes(), &r)
            .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        let want = crate::mock::content::base64_f32(&embedding_vector(&Input::Text("hello"), 256));
        assert_eq!(v["data"][0]["embedding"], want);
        assert_eq!(v["usage"]["prompt_tokens"], 2);

        stop.notify_one();
        thread.join().unwrap();
    }
}
