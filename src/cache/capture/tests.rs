use std::sync::{Arc, Mutex};

use super::*;
use crate::api::chat::Content;
use crate::cache::replay;

fn answer() -> ChatResponse {
    let text = "Refunds under $50: at once. ".repeat(30) + "Ünïcödé ✓";
    crate::cache::sample::answer(&text, &[("call_7", "refund", r#"{"order":"A-17"}"#)])
}

/// Runs `bytes` through a capture in pieces of `step` bytes; what the sink got.
fn capture(
    client: Wire,
    stream: bool,
    bytes: &[u8],
    step: usize,
    complete: bool,
    limit: usize,
) -> Option<ChatResponse> {
    let got = Arc::new(Mutex::new(None));
    let g = Arc::clone(&got);
    let mut c = Capture::new(client, stream, limit, Box::new(move |a| *g.lock().unwrap() = Some(a)));
    let mut out = Vec::new();
    for piece in bytes.chunks(step) {
        out.extend_from_slice(&c.body(Bytes::copy_from_slice(piece)));
    }
    out.extend_from_slice(&c.end(complete));
    assert_eq!(out, bytes, "the observer passes every byte on unchanged");
    let a = got.lock().unwrap().take();
    a
}

/// Text, (id, name, arguments) per tool call, finish reason, prompt and completion tokens.
type Essence = (String, Vec<(String, String, String)>, Option<String>, u64, u64);

/// What must survive the round trip, whatever the dialect.
fn essence(a: &ChatResponse) -> Essence {
    let m = &a.choices[0].message;
    let calls = m
        .tool_calls
        .iter()
        .flatten()
        .map(|c| (c.id.clone(), c.function.name.clone(), c.function.arguments.clone()))
        .collect();
    let u = a.usage.unwrap_or_default();
    (
        m.content.as_ref().map(Content::text).unwrap_or_default(),
        calls,
        a.choices[0].finish_reason.clone(),
        u.prompt_tokens,
        u.completion_tokens,
    )
}

#[test]
fn whole_and_streamed_answers_of_both_dialects_are_read_back() {
    let a = answer();
    for client in [Wire::OpenAi, Wire::Anthropic] {
        let whole = replay::whole(client, &a);
        let got = capture(client, false, &whole, 4096, true, 1 << 20).expect("whole answer kept");
        assert_eq!(essence(&got), essence(&a), "{client:?} whole");
        let stream = replay::stream(client, true, &a);
        for step in [1, 7, 4096] {
            let got = capture(client, true, &stream, step, true, 1 << 20).expect("stream kept");
            assert_eq!(essence(&got), essence(&a), "{client:?} stream in pieces of {step}");
        }
    }
}

#[test]
fn nothing_is_kept_from_a_bad_end_a_cut_stream_or_an_oversized_answer() {
    let a = answer();
    for client in [Wire::OpenAi, Wire::Anthropic] {
        let stream = replay::stream(client, true, &a);
        assert!(
            capture(client, true, &stream, 64, false, 1 << 20).is_none(),
            "ended badly"
        );
        let cut = &stream[..stream.len() / 2];
        assert!(
            capture(client, true, cut, 64, true, 1 << 20).is_none(),
            "cut: no proper end"
        );
        assert!(
            capture(client, true, &stream, 64, true, 100).is_none(),
            "over the limit"
        );
        let whole = replay::whole(client, &a);
        assert!(
            capture(client, false, &whole[..whole.len() - 3], 4096, true, 1 << 20).is_none(),
            "unreadable"
        );
    }
}
