//! Golden tests: hand-written Bedrock fixtures (`tests/fixtures/bedrock/`, modelled on AWS's
//! documented Converse examples, stream events with Bedrock's `p` padding field) run through the
//! adapter and compared as parsed JSON. Stream fixtures are JSON lists of events, framed here
//! with the event-stream encoder; every framed stream is also fed split at every byte offset.
//! Targets are built by hand; the config that compiles them is tested in `config`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use bytes::{Bytes, BytesMut};
use serde_json::Value;

use super::*;
use crate::api::chat::ChatChunk;
use crate::api::openai::LlmRequest;
use crate::api::{ApiError, Endpoint};
use crate::providers::{AwsCredentials, AwsKeys, ProviderKind, ProviderOptions, RenderTarget};
use crate::secret::Secret;
use crate::sse::eventstream::Frame;

const CREATED: u64 = 1_700_000_000;
const ID: &str = "chatcmpl-bedrock-test";
const SONNET: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bedrock")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

const HOST: &str = "bedrock-runtime.us-east-1.amazonaws.com";

/// The upstream model id an alias of the fixtures stands for.
fn model(alias: &str) -> &'static str {
    match alias {
        "claude-sonnet" => SONNET,
        "titan-embed" => "amazon.titan-embed-text-v2:0",
        "cohere-embed" => "cohere.embed-english-v3",
        other => panic!("no fixture alias {other:?}"),
    }
}

fn options(session_token: Option<&str>) -> ProviderOptions {
    ProviderOptions {
        aws: Some(AwsCredentials {
            region: "us-east-1".into(),
            keys: AwsKeys::Static {
                access_key_id: Secret::new("AKIDEXAMPLE"),
                secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
                session_token: session_token.map(Secret::new),
            },
        }),
        ..ProviderOptions::default()
    }
}

fn request(endpoint: Endpoint, body: Vec<u8>) -> LlmRequest {
    LlmRequest::parse(endpoint, Bytes::from(body)).unwrap()
}

fn render_with(req: &LlmRequest, alias: &str, options: &ProviderOptions) -> Result<Rendered, ApiError> {
    let model = model(alias);
    let model_json = serde_json::to_vec(model).unwrap();
    let host = http::HeaderValue::from_static(HOST);
    let target = RenderTarget {
        provider: "aws",
        kind: ProviderKind::Bedrock,
        model,
        model_json: &model_json,
        path_prefix: "",
        host: &host,
        options,
    };
    ProviderKind::Bedrock.adapter().render(req, &target)
}

fn render(endpoint: Endpoint, body: Vec<u8>, alias: &str) -> Result<Rendered, ApiError> {
    render_with(&request(endpoint, body), alias, &options(None))
}

fn header<'a>(r: &'a Rendered, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k.as_str() == name)
        .map(|(_, v)| v.to_str().unwrap())
}

#[test]
fn openai_chat_request_renders_to_a_signed_converse_call() {
    let r = render(
        Endpoint::ChatCompletions,
        fixture("chat_request.openai.json"),
        "claude-sonnet",
    )
    .unwrap();
    assert_eq!(r.path, "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse");
    assert!(!r.passthrough && !r.json_mode);
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body, json("chat_request.converse.json"));

    // Signed for the base URL's host, exactly the headers the upstream request carries.
    let auth = header(&r, "authorization").unwrap();
    let date = header(&r, "x-amz-date").unwrap();
    assert!(
        auth.starts_with(&format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{}/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=",
            &date[..8]
        )),
        "{auth}"
    );
    assert_eq!(header(&r, "x-amz-security-token"), None);
    let sent = [
        ("authorization", auth),
        ("x-amz-date", date),
        ("content-type", "application/json"),
        ("host", "bedrock-runtime.us-east-1.amazonaws.com"),
    ];
    let ok = sigv4::verify(
        "POST",
        &r.path,
        "",
        |n| sent.iter().find(|(k, _)| *k == n).map(|(_, v)| *v),
        &r.body,
        |k| (k == "AKIDEXAMPLE").then_some("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
    );
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn anthropic_messages_request_renders_to_converse_stream() {
    let r = render(
        Endpoint::Messages,
        fixture("messages_request.anthropic.json"),
        "claude-sonnet",
    )
    .unwrap();
    assert_eq!(
        r.path,
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream"
    );
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body, json("messages_request.converse.json"));
}

#[test]
fn session_tokens_are_sent_and_signed() {
    let req = request(Endpoint::ChatCompletions, fixture("chat_request.openai.json"));
    let r = render_with(&req, "claude-sonnet", &options(Some("FwoGZXIvYXdzEXAMPLETOKEN"))).unwrap();
    assert_eq!(header(&r, "x-amz-security-token"), Some("FwoGZXIvYXdzEXAMPLETOKEN"));
    assert!(header(&r, "authorization")
        .unwrap()
        .contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token,"));
    assert!(r
        .headers
        .iter()
        .all(|(k, v)| k == "x-amz-date" || k == "accept" || v.is_sensitive()));
    assert_eq!(header(&r, "accept"), Some("application/json"));
}

#[test]
fn converse_response_translates() {
    let r = render(
        Endpoint::ChatCompletions,
        fixture("chat_request.openai.json"),
        "claude-sonnet",
    )
    .unwrap();
    let out = BedrockAdapter
        .parse_chat(&fixture("chat_response.converse.json"), &r)
        .unwrap();
    assert!(out.id.starts_with("chatcmpl-bedrock-"));
    let out = ChatResponse {
        id: ID.into(),
        created: CREATED,
        ..out
    };
    assert_eq!(serde_json::to_value(&out).unwrap(), json("chat_response.openai.json"));
    assert_eq!(
        BedrockAdapter.usage_of(&fixture("chat_response.converse.json")),
        out.usage
    );
    assert!(BedrockAdapter.parse_chat(b"<html>", &r).is_err());
}

/// A fixture's events, framed as Bedrock sends them.
fn framed(name: &str) -> Bytes {
    let events: Vec<Value> = serde_json::from_slice(&fixture(name)).unwrap();
    let mut wire = BytesMut::new();
    for e in events {
        let payload = Bytes::from(e["payload"].to_string());
        let frame = match (e["event"].as_str(), e["exception"].as_str()) {
            (Some(ev), _) => Frame::event(ev, payload),
            (None, Some(ex)) => Frame::exception(ex, payload),
            _ => panic!("bad event {e}"),
        };
        frame.encode_into(&mut wire).unwrap();
    }
    wire.freeze()
}

struct Decoded {
    chunks: Vec<ChatChunk>,
    completed: bool,
    usage: Option<Usage>,
    fault: Option<StreamFault>,
}

fn decode(pieces: &[&[u8]], json_mode: bool) -> Decoded {
    let mut src = BedrockChunks::new(BedrockStream::new(
        ID.into(),
        SONNET.into(),
        CREATED,
        JsonMode(json_mode),
    ));
    let mut chunks = Vec::new();
    let mut fault = None;
    for p in pieces {
        if let Err(f) = src.push(p, &mut chunks) {
            fault = Some(f);
            break;
        }
    }
    if fault.is_none() {
        fault = src.finish(&mut chunks).err();
    }
    Decoded {
        chunks,
        completed: src.completed(),
        usage: src.usage(),
        fault,
    }
}

/// Decodes whole, then split at every byte offset: the chunks are identical.
fn decode_every_split(wire: &[u8], json_mode: bool) -> Decoded {
    let whole = decode(&[wire], json_mode);
    for cut in 0..=wire.len() {
        let split = decode(&[&wire[..cut], &wire[cut..]], json_mode);
        assert_eq!(split.chunks, whole.chunks, "split at {cut}");
        assert_eq!((split.completed, split.usage), (whole.completed, whole.usage));
        assert_eq!(split.fault, whole.fault);
    }
    // And byte by byte.
    let bytes: Vec<&[u8]> = wire.chunks(1).collect();
    assert_eq!(decode(&bytes, json_mode).chunks, whole.chunks);
    whole
}

fn chunks_json(chunks: &[ChatChunk]) -> Value {
    serde_json::to_value(chunks).unwrap()
}

#[test]
fn text_stream_translates_at_every_split() {
    let d = decode_every_split(&framed("stream_text.events.json"), false);
    assert_eq!(d.fault, None);
    assert!(d.completed);
    assert_eq!(chunks_json(&d.chunks), json("stream_text.chunks.json"));
    assert_eq!(d.usage.map(|u| u.total_tokens), Some(37));
}

#[test]
fn tool_and_reasoning_stream_translates_at_every_split() {
    let d = decode_every_split(&framed("stream_tools.events.json"), false);
    assert_eq!(d.fault, None);
    assert!(d.completed);
    assert_eq!(chunks_json(&d.chunks), json("stream_tools.chunks.json"));
    let u = d.usage.unwrap();
    assert_eq!((u.prompt_tokens, u.cached_tokens()), (1434, 1024));
}

#[test]
fn exception_frames_are_provider_faults() {
    let d = decode_every_split(&framed("stream_exception.events.json"), false);
    assert_eq!(
        d.fault,
        Some(StreamFault::Provider {
            kind: "throttlingException".into(),
            message: "Too many tokens, please wait before trying again.".into()
        })
    );
    assert!(!d.completed);
    assert_eq!(d.chunks.len(), 2);
}

#[test]
fn a_cut_stream_is_incomplete_but_keeps_its_chunks() {
    let wire = framed("stream_text.events.json");
    // Without the trailing metadata frame: messageStop was seen, usage never came.
    let events: Vec<Value> = serde_json::from_slice(&fixture("stream_text.events.json")).unwrap();
    let last = Frame::event("metadata", Bytes::from(events[6]["payload"].to_string()))
        .encode()
        .unwrap();
    let d = decode(&[&wire[..wire.len() - last.len()]], false);
    assert!(!d.completed && d.fault.is_none() && d.usage.is_none());
    assert_eq!(
        d.chunks.last().unwrap().choices[0].finish_reason.as_deref(),
        Some("stop")
    );
    // Cut inside a frame: the decoder says so at the end.
    let d = decode(&[&wire[..wire.len() - 3]], false);
    assert!(matches!(d.fault, Some(StreamFault::Malformed(_))));
}

#[test]
fn json_mode_stream_turns_the_forced_tool_into_content() {
    let mut wire = BytesMut::new();
    for (ev, payload) in [
        ("messageStart", r#"{"role":"assistant"}"#),
        (
            "contentBlockStart",
            r#"{"contentBlockIndex":0,"start":{"toolUse":{"toolUseId":"tooluse_j","name":"json_response"}}}"#,
        ),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"toolUse":{"input":"{\"a\":"}}}"#,
        ),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"toolUse":{"input":"1}"}}}"#,
        ),
        ("contentBlockStop", r#"{"contentBlockIndex":0}"#),
        ("messageStop", r#"{"stopReason":"tool_use"}"#),
        (
            "metadata",
            r#"{"usage":{"inputTokens":3,"outputTokens":4,"totalTokens":7}}"#,
        ),
    ] {
        Frame::event(ev, Bytes::from(payload)).encode_into(&mut wire).unwrap();
    }
    let d = decode_every_split(&wire, true);
    let content: String = d
        .chunks
        .iter()
        .filter_map(|c| c.choices.first()?.delta.content.clone())
        .collect();
    assert_eq!(content, "{\"a\":1}");
    assert!(d
        .chunks
        .iter()
        .all(|c| c.choices.first().is_none_or(|ch| ch.delta.tool_calls.is_none())));
    let finish: Vec<_> = d
        .chunks
        .iter()
        .filter_map(|c| c.choices.first()?.finish_reason.clone())
        .collect();
    assert_eq!(finish, vec!["stop".to_string()]);
}

#[test]
fn wrapped_payloads_and_unknown_events_are_tolerated() {
    let mut wire = BytesMut::new();
    for (ev, payload) in [
        ("messageStart", r#"{"messageStart":{"role":"assistant"}}"#),
        (
            "contentBlockDelta",
            r#"{"contentBlockDelta":{"contentBlockIndex":0,"delta":{"text":"hi"}}}"#,
        ),
        ("somethingNew", r#"{"x":1}"#),
        ("messageStop", r#"{"messageStop":{"stopReason":"max_tokens"}}"#),
        (
            "metadata",
            r#"{"metadata":{"usage":{"inputTokens":1,"outputTokens":1,"totalTokens":2}}}"#,
        ),
    ] {
        Frame::event(ev, Bytes::from(payload)).encode_into(&mut wire).unwrap();
    }
    let d = decode(&[&wire], false);
    assert!(d.completed, "{:?}", d.fault);
    assert_eq!(d.chunks[1].choices[0].delta.content.as_deref(), Some("hi"));
    assert_eq!(d.chunks[2].choices[0].finish_reason.as_deref(), Some("length"));
    // A non-JSON payload is a fault, not a silent skip.
    let bad = Frame::event("contentBlockDelta", Bytes::from_static(b"{nope"))
        .encode()
        .unwrap();
    assert!(matches!(decode(&[&bad], false).fault, Some(StreamFault::Malformed(_))));
}

#[test]
fn chat_stream_ids_are_fresh_and_stable() {
    let r = render(
        Endpoint::Messages,
        fixture("messages_request.anthropic.json"),
        "claude-sonnet",
    )
    .unwrap();
    let wire = framed("stream_text.events.json");
    let run = || {
        let mut src = BedrockAdapter.chat_stream(&r);
        let mut out = Vec::new();
        src.push(&wire, &mut out).unwrap();
        src.finish(&mut out).unwrap();
        assert!(src.completed());
        out
    };
    let (a, b) = (run(), run());
    assert!(a
        .iter()
        .all(|c| c.id == a[0].id && c.model == SONNET && c.created == a[0].created));
    assert!(a[0].id.starts_with("chatcmpl-bedrock-"));
    assert_ne!(a[0].id, b[0].id);
}

#[test]
fn embeddings_render_and_translate() {
    for (alias, family, model) in [
        ("titan-embed", "titan", "amazon.titan-embed-text-v2:0"),
        ("cohere-embed", "cohere", "cohere.embed-english-v3"),
    ] {
        let client = fixture(&format!("embeddings_{family}.openai.json"));
        let r = render(Endpoint::Embeddings, client.clone(), alias).unwrap();
        assert_eq!(r.path, format!("/model/{}/invoke", sigv4::uri_encode(model)));
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body, json(&format!("embeddings_{family}.bedrock.json")));
        let req = request(Endpoint::Embeddings, client);
        let out = BedrockAdapter
            .parse_embeddings(&req, &fixture(&format!("embeddings_{family}.response.json")), &r)
            .unwrap();
        let out: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(out, json(&format!("embeddings_{family}.response.openai.json")));
    }
    let e = render(
        Endpoint::Embeddings,
        br#"{"model":"titan-embed","input":["a","b"]}"#.to_vec(),
        "titan-embed",
    )
    .unwrap_err();
    assert_eq!(e.status(), 400);
    let e = render(
        Endpoint::Completions,
        br#"{"model":"claude-sonnet","prompt":"x"}"#.to_vec(),
        "claude-sonnet",
    )
    .unwrap_err();
    assert!(matches!(e, ApiError::Unsupported(_)));
}

#[test]
fn errors_keep_bedrocks_message() {
    let out: Value = serde_json::from_slice(&BedrockAdapter.error_body(400, &fixture("error.bedrock.json"))).unwrap();
    assert_eq!(out, json("error.openai.json"));
    let out: Value =
        serde_json::from_slice(&BedrockAdapter.error_body(429, br#"{"message":"Too many requests"}"#)).unwrap();
    assert_eq!(out["error"]["type"], "rate_limit_error");
    let out: Value = serde_json::from_slice(&BedrockAdapter.error_body(502, b"<html>bad gateway</html>")).unwrap();
    assert_eq!(out["error"]["message"], "<html>bad gateway</html>");
}

#[test]
fn model_ids_round_trip_through_the_path() {
    for id in [
        SONNET,
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0",
    ] {
        assert_eq!(model_of(&path("/model", id, "converse")), id);
    }
}
