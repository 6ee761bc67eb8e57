//! A provider's whole (non-streamed) answer body, read by every dialect: the chat response
//! translated to the canonical form (plain and JSON-mode requests) and written back in both
//! client formats, the error body mapped to OpenAI's shape and to Anthropic's, the usage read
//! from a passthrough body, the embeddings answers translated (Gemini, Bedrock Titan and
//! Cohere, float and base64), and the Responses API's whole answer (the chat answer written
//! as a response object, and OpenAI's own response object watched). Also the other upstream
//! whose answer the gateway reads: the Presidio analyzer's findings, merged into the
//! guardrails' scan of a request.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tollgate::api::client;
use tollgate::api::openai::LlmRequest;
use tollgate::api::responses::{Encoder, ResponsesRequest, Turn};
use tollgate::api::Wire;
use tollgate::guard::detect::Allowance;
use tollgate::guard::presidio::Batch;
use tollgate::guard::redact::for_each_string;
use tollgate::guard::request::check;
use tollgate::providers::Rendered;
use tollgate_fuzz::{adapter, chat_renders, embeddings_render, CHAT};

struct Fixed {
    chat: Vec<(&'static str, Vec<Rendered>)>,
    embeddings: Vec<(&'static str, LlmRequest, Rendered)>,
    turn: Turn,
}

fn fixed() -> &'static Fixed {
    static F: OnceLock<Fixed> = OnceLock::new();
    F.get_or_init(|| {
        let mut embeddings = Vec::new();
        for alias in ["gemini-embed", "bedrock-titan", "bedrock-cohere"] {
            for base64 in [false, true] {
                let (req, rendered) = embeddings_render(alias, base64);
                embeddings.push((alias, req, rendered));
            }
        }
        let req = ResponsesRequest::parse(br#"{"model":"m","input":"hi","previous_response_id":"resp_1"}"#)
            .expect("a valid Responses request");
        Fixed {
            chat: CHAT.iter().map(|a| (*a, chat_renders(a, false))).collect(),
            embeddings,
            turn: Turn::new(&req, 1),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixed();
    // One error status per input (each dialect maps a few of them to types and codes).
    let status = 400 + (data.len() % 130) as u16;
    for (alias, renders) in &f.chat {
        let a = adapter(alias);
        for r in renders {
            if let Ok(resp) = a.parse_chat(data, r) {
                let _ = client::response(Wire::OpenAi, &resp);
                let _ = client::response(Wire::Anthropic, &resp);
            }
        }
        let openai = a.error_body(status, data);
        let _ = client::error(Wire::Anthropic, status, &openai);
        let _ = a.usage_of(data);
    }
    for (alias, req, rendered) in &f.embeddings {
        let _ = adapter(alias).parse_embeddings(req, data, rendered);
    }
    let _ = tollgate::api::openai::usage_of(data);
    let mut chat = Encoder::new(f.turn.clone());
    let _ = chat.whole(data);
    let _ = chat.finished();
    let mut native = Encoder::new(f.turn.clone());
    native.go_native();
    let _ = native.watch_whole(data);
    let _ = native.finished();

    // As `proxy::guard` asks the analyzer about a request's texts and uses its answer.
    let (guard, policy) = tollgate_fuzz::guard();
    if let Some(settings) = &guard.presidio {
        let mut batch = Batch::default();
        for_each_string(PRESIDIO_REQUEST, &mut |text| batch.push(text));
        if let Ok(found) = batch.findings(data, settings, guard.catalog()) {
            let _ = check(guard, policy, Wire::OpenAi, PRESIDIO_REQUEST, Some(&found), Allowance::DEFAULT);
        }
    }
});

/// A request whose texts the analyzer is asked about: several texts, multi-byte characters
/// (the analyzer counts code points, the gateway bytes).
const PRESIDIO_REQUEST: &[u8] = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"My name is Zoë Ångström, I live in Paris\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"😀 call Ann at +1 415 555 0100\"}]}]}".as_bytes();
