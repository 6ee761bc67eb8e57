//! A provider's SSE answer stream (OpenAI, Azure, Anthropic, Gemini): each dialect's stream
//! translator (plain and JSON-mode requests) and the canonical chunks written back in both
//! client formats; the passthrough observers (usage, proper end, completion text), OpenAI's
//! native Responses stream watched (and its response objects rewritten), and the Responses
//! API's encoder over a chat stream.
//!
//! Checked beyond "no panic": the body is fed whole and in pieces cut anywhere, and the
//! translators and observers must make the same of both (the golden tests check every cut of
//! the fixtures; this checks it of everything else).

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tollgate::api::responses::{Encoder, ResponsesRequest, Turn};
use tollgate::providers::openai::ResponsesObserver;
use tollgate::providers::Rendered;
use tollgate_fuzz::{adapter, chat_renders, encode_for_clients, observe, pieces, translate};

const SSE: [&str; 4] = ["openai", "azure", "anthropic", "gemini"];

struct Fixed {
    renders: Vec<(&'static str, Vec<Rendered>)>,
    turn: Turn,
}

fn fixed() -> &'static Fixed {
    static F: OnceLock<Fixed> = OnceLock::new();
    F.get_or_init(|| {
        let req = ResponsesRequest::parse(br#"{"model":"m","input":"hi","previous_response_id":"resp_1","stream":true}"#)
            .expect("a valid Responses request");
        Fixed {
            renders: SSE.iter().map(|a| (*a, chat_renders(a, true))).collect(),
            turn: Turn::new(&req, 1),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixed();
    let cut = pieces(data, 64);
    let whole = [data];
    for (alias, renders) in &f.renders {
        let a = adapter(alias);
        for r in renders {
            let all = translate(a.chat_stream(r), &whole);
            let cut_up = translate(a.chat_stream(r), &cut);
            assert_eq!(all, cut_up, "{alias}: the translation depends on how the stream was cut");
            encode_for_clients(&all);
        }
        let (o1, o2) = (observe(a.observer(), &whole), observe(a.observer(), &cut));
        if let (Some(o1), Some(o2)) = (o1, o2) {
            assert_eq!(o1, o2, "{alias}: the observer depends on how the stream was cut");
        }
    }
    let (o1, o2) = (
        observe(Box::<ResponsesObserver>::default(), &whole),
        observe(Box::<ResponsesObserver>::default(), &cut),
    );
    if let (Some(o1), Some(o2)) = (o1, o2) {
        assert_eq!(o1, o2, "responses observer: depends on how the stream was cut");
    }
    // OpenAI's own Responses stream, watched and (with a previous_response_id to put back)
    // rewritten: whole events only, so the output must not depend on the cuts either.
    let native = |input: &[&[u8]]| {
        let mut enc = Encoder::new(f.turn.clone());
        enc.go_native();
        let mut out = Vec::new();
        for p in input {
            if let Some(b) = enc.watch(p) {
                out.extend_from_slice(&b);
            }
        }
        let _ = enc.failed("upstream_error", "cut");
        (out, enc.finished())
    };
    assert_eq!(
        native(&whole),
        native(&cut),
        "native Responses stream: depends on how it was cut"
    );
    // The gateway's chat stream as Responses events (ids are minted per response: no compare).
    let mut enc = Encoder::new(f.turn.clone());
    for p in &cut {
        let _ = enc.body(p);
    }
    let _ = enc.failed("upstream_error", "cut");
    let _ = enc.finished();
});
