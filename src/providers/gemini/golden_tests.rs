//! Golden tests: hand-written Gemini fixtures (`tests/fixtures/gemini/`, modelled on Google's
//! documented examples, SSE with CRLF as Google sends it) run through the adapter and compared as
//! parsed JSON; every stream fixture is also fed split at every byte offset.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use bytes::Bytes;
use serde_json::Value;

use super::*;
use crate::api::chat::ChatChunk;
use crate::api::openai::LlmRequest;
use crate::api::{ApiError, Endpoint};
use crate::providers::{ProviderKind, ProviderOptions, RenderTarget};

const CREATED: u64 = 1_700_000_000;

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gemini")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

/// The upstream model an alias of the fixtures stands for.
fn model(alias: &str) -> &'static str {
    match alias {
        "gemini-flash" => "gemini-2.5-flash",
        "gemini-pro" => "gemini-3-pro-preview",
        "embed" => "gemini-embedding-001",
        other => panic!("no fixture alias {other:?}"),
    }
}

fn render(endpoint: Endpoint, body: Vec<u8>, alias: &str) -> Result<Rendered, ApiError> {
    let req = LlmRequest::parse(endpoint, Bytes::from(body)).unwrap();
    let model = model(alias);
    let model_json = serde_json::to_vec(model).unwrap();
    let host = http::HeaderValue::from_static("generativelanguage.googleapis.com");
    let options = ProviderOptions::default();
    let target = RenderTarget {
        provider: "google",
        kind: ProviderKind::Gemini,
        model,
        model_json: &model_json,
        path_prefix: "/v1beta",
        host: &host,
        options: &options,
    };
    ProviderKind::Gemini.adapter().render(&req, &target)
}

#[test]
fn openai_chat_request_renders_to_gemini() {
    let r = render(
        Endpoint::ChatCompletions,
        fixture("chat_request.openai.json"),
        "gemini-flash",
    )
    .unwrap();
    assert_eq!(r.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert!(!r.passthrough && !r.json_mode && r.headers.is_empty());
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body, json("chat_request.gemini.json"));
}

#[test]
fn anthropic_messages_request_renders_to_a_gemini_stream() {
    let r = render(
        Endpoint::Messages,
        fixture("messages_request.anthropic.json"),
        "gemini-pro",
    )
    .unwrap();
    assert_eq!(
        r.path,
        "/v1beta/models/gemini-3-pro-preview:streamGenerateContent?alt=sse"
    );
    assert!(!r.passthrough);
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body, json("messages_request.gemini.json"));
}

#[test]
fn legacy_completions_are_unsupported() {
    let err = render(
        Endpoint::Completions,
        br#"{"model":"gemini-flash","prompt":"x"}"#.to_vec(),
        "gemini-flash",
    )
    .unwrap_err();
    assert!(matches!(err, ApiError::Unsupported(_)));
}

#[test]
fn chat_response_translates() {
    let r = render(
        Endpoint::ChatCompletions,
        fixture("chat_request.openai.json"),
        "gemini-flash",
    )
    .unwrap();
    let resp: GenerateContentResponse = serde_json::from_slice(&fixture("chat_response.gemini.json")).unwrap();
    let out = response::to_openai(resp, model_of(&r.path), CREATED);
    assert_eq!(serde_json::to_value(&out).unwrap(), json("chat_response.openai.json"));
    // Through the adapter, only `created` differs.
    let via = GeminiAdapter
        .parse_chat(&fixture("chat_response.gemini.json"), &r)
        .unwrap();
    assert_eq!(
        ChatResponse {
            created: CREATED,
            ..via
        },
        out
    );
    assert!(GeminiAdapter.parse_chat(b"<html>", &r).is_err());
}

fn decode(parts: &[&[u8]]) -> (Vec<ChatChunk>, bool, Option<Usage>) {
    let mut s = crate::providers::SseChunks::new(super::stream::GeminiStream::new("gemini-x", CREATED));
    let mut out = Vec::new();
    for p in parts {
        s.push(p, &mut out).unwrap();
    }
    s.finish(&mut out).unwrap();
    (out, s.completed(), s.usage())
}

#[test]
fn streams_translate_identically_at_every_split() {
    for name in ["stream_text", "stream_tools"] {
        let sse = fixture(&format!("{name}.sse"));
        assert!(sse.windows(4).any(|w| w == b"\r\n\r\n"), "{name} uses CRLF like Google");
        let expected: Vec<ChatChunk> = serde_json::from_slice(&fixture(&format!("{name}.chunks.json"))).unwrap();
        let (whole, completed, usage) = decode(&[&sse]);
        assert_eq!(whole, expected, "{name}");
        assert!(completed, "{name}");
        assert_eq!(usage, expected.last().and_then(|c| c.usage), "{name}");
        for cut in 0..=sse.len() {
            let (split, completed, _) = decode(&[&sse[..cut], &sse[cut..]]);
            assert_eq!(split, expected, "{name} split at {cut}");
            assert!(completed);
        }
    }
}

#[test]
fn cut_streams_are_incomplete() {
    let sse = fixture("stream_text.sse");
    // Everything but the last event.
    let last = sse.windows(6).rposition(|w| w == b"data: ").unwrap();
    let (out, completed, usage) = decode(&[&sse[..last]]);
    assert!(!completed);
    assert!(out
        .iter()
        .all(|c| c.usage.is_none() && c.choices[0].finish_reason.is_none()));
    assert_eq!(usage.map(|u| u.completion_tokens), Some(45));
}

#[test]
fn observer_sees_usage_and_the_end() {
    let sse = fixture("stream_tools.sse");
    for cut in 0..=sse.len() {
        let mut o = GeminiAdapter.observer();
        o.push(&sse[..cut]).unwrap();
        o.push(&sse[cut..]).unwrap();
        o.finish().unwrap();
        assert!(o.completed());
        assert_eq!(o.usage().map(|u| u.total_tokens), Some(214));
    }
}

#[test]
fn embeddings_round_trip() {
    let r = render(Endpoint::Embeddings, fixture("embeddings_request.openai.json"), "embed").unwrap();
    assert_eq!(r.path, "/v1beta/models/gemini-embedding-001:batchEmbedContents");
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body, json("embeddings_request.gemini.json"));
    let req = LlmRequest::parse(
        Endpoint::Embeddings,
        Bytes::from(fixture("embeddings_request.openai.json")),
    )
    .unwrap();
    let out = GeminiAdapter
        .parse_embeddings(&req, &fixture("embeddings_response.gemini.json"), &r)
        .unwrap();
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(out, json("embeddings_response.openai.json"));
}

#[test]
fn error_translates() {
    let out = GeminiAdapter.error_body(429, &fixture("error.gemini.json"));
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(out, json("error.openai.json"));
}
