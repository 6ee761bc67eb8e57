//! Golden tests: recorded-shape fixtures (tests/fixtures/anthropic) run through the translators
//! and compared as parsed JSON; the stream fixture is also fed split at every byte offset.

use serde_json::Value;

use super::request::{to_anthropic, JsonMode};
use super::response::to_openai;
use super::stream::AnthropicStream;
use crate::api::anthropic::MessagesResponse;
use crate::api::chat::{ChatChunk, ChatRequest};
use crate::sse::SseDecoder;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/anthropic/");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}{name}")).unwrap()
}

fn json(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap()
}

#[test]
fn request_translates_to_the_golden_anthropic_request() {
    let req: ChatRequest = serde_json::from_str(&fixture("openai_request.json")).unwrap();
    let (out, mode) = to_anthropic(&req, "claude-sonnet-4-5", 4096).unwrap();
    assert_eq!(mode, JsonMode(false));
    assert_eq!(serde_json::to_value(&out).unwrap(), json("anthropic_request.json"));
}

#[test]
fn response_translates_to_the_golden_openai_response() {
    let resp: MessagesResponse = serde_json::from_str(&fixture("anthropic_response.json")).unwrap();
    let out = to_openai(resp, JsonMode(false), 1_700_000_000);
    assert_eq!(serde_json::to_value(&out).unwrap(), json("openai_response.json"));
}

fn run_stream(pieces: &[&[u8]]) -> (Vec<ChatChunk>, bool) {
    let mut dec = SseDecoder::default();
    let mut st = AnthropicStream::new(JsonMode(false), 0);
    let mut out = Vec::new();
    let mut on = |ev: crate::sse::SseEvent| st.on_event(&ev.data, &mut out).unwrap();
    for p in pieces {
        dec.push(p, &mut on).unwrap();
    }
    dec.finish(&mut on).unwrap();
    (out, st.completed())
}

#[test]
fn stream_translates_to_the_golden_chunks_at_every_split() {
    let raw = fixture("stream.sse").into_bytes();
    let expected = json("stream_chunks.json");
    let (whole, done) = run_stream(&[&raw]);
    assert!(done);
    assert_eq!(serde_json::to_value(&whole).unwrap(), expected);
    for i in 0..=raw.len() {
        let (split, _) = run_stream(&[&raw[..i], &raw[i..]]);
        assert_eq!(split, whole, "split at byte {i}");
    }
}

#[test]
fn an_error_event_is_a_fault_and_a_missing_stop_is_incomplete() {
    let mut st = AnthropicStream::new(JsonMode(false), 0);
    let err = st.on_event(
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        &mut Vec::new(),
    );
    assert!(matches!(err, Err(crate::providers::StreamFault::Provider { ref kind, .. }) if kind == "overloaded_error"));
    let raw = fixture("stream.sse");
    let cut = &raw[..raw.find("event: message_delta").unwrap()];
    let (_, done) = run_stream(&[cut.as_bytes()]);
    assert!(!done);
}
