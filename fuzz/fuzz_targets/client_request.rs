//! A client's request body, as the data plane receives it on `POST /v1/chat/completions`,
//! `/v1/completions`, `/v1/embeddings`, `/v1/messages` (and `/v1/messages/count_tokens`) and
//! `/v1/responses`. Every input is read as each of them: the routing parse and its checks
//! (`LlmRequest::parse`), the canonical chat form (an Anthropic body translated), its rendering
//! for every dialect, the token estimate the limits reserve, the guardrails' request stage (every
//! string scanned by the detectors and their validators, PII redacted into a vault, secrets
//! masked, injection scored), the Responses API's items → chat conversion, and the cache-key
//! canonicaliser.
//!
//! Checked beyond "no panic": the exact cache key does not change when the body is written with
//! other whitespace and key order (the canonicaliser's promise); a body the guardrails rewrote is
//! still a request, with its `model` where the proxy will look for it.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use regex::Regex;
use std::sync::OnceLock;
use tollgate::api::openai::LlmRequest;
use tollgate::api::responses::request::{to_chat, translatable};
use tollgate::api::responses::{ResponsesRequest, Turn};
use tollgate::api::Endpoint;
use tollgate::cache::key;
use tollgate::guard::request::Checked;
use tollgate_fuzz::{target, CHAT};

const EMBEDDINGS: [&str; 4] = ["openai", "gemini-embed", "bedrock-titan", "bedrock-cohere"];

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    for endpoint in [
        Endpoint::ChatCompletions,
        Endpoint::Completions,
        Endpoint::Embeddings,
        Endpoint::Messages,
    ] {
        if let Ok(req) = LlmRequest::parse(endpoint, body.clone()) {
            exercise(&req, true);
        }
    }
    responses(data);
    count_tokens(data);
});

/// What the stages do with a parsed request; `keys`: check the cache key's invariance too.
fn exercise(req: &LlmRequest, keys: bool) {
    let _ = req.body_with_model(b"\"upstream-model\"");
    let canonical = req.canonical();
    let aliases: &[&str] = if req.endpoint == Endpoint::Embeddings {
        &EMBEDDINGS
    } else {
        &CHAT
    };
    for alias in aliases {
        let t = target(alias);
        let _ = t.provider.kind.adapter().render(req, &t.render_target());
    }
    if let Ok(chat) = canonical {
        let _ = tollgate::limits::tokens::estimate_chat(chat);
    }
    if keys {
        cache_keys(req);
        guardrails(req);
    }
}

/// The request stage of the guardrails, and what `proxy::guard` then does with a rewritten body:
/// the `model` value is never rewritten, only moved (`redact::shifted`), and not parsed again.
fn guardrails(req: &LlmRequest) {
    let (guard, policy) = tollgate_fuzz::guard();
    let Checked::Pass {
        body: Some(body), shifts, ..
    } = tollgate::guard::request::check(
        guard,
        policy,
        req.client,
        &req.body,
        None,
        tollgate::guard::detect::Allowance::DEFAULT,
    )
    else {
        return;
    };
    let span = &req.model_span;
    let start = tollgate::guard::redact::shifted(span.start, &shifts);
    assert_eq!(
        body.get(start..start + span.len()),
        Some(&req.body[span.clone()]),
        "the redacted body's model is not where the proxy looks for it"
    );
    let again = LlmRequest::parse(req.endpoint, Bytes::from(body)).expect("a redacted request still parses");
    assert_eq!(again.model, req.model);
}

/// Patterns a route may mark volatile (removed from message text before hashing).
fn volatile() -> &'static [Regex] {
    static V: OnceLock<Vec<Regex>> = OnceLock::new();
    V.get_or_init(|| vec![Regex::new(r"\d{4}-\d\d-\d\dT[0-9:.]+Z?").expect("a valid pattern")])
}

fn cache_keys(req: &LlmRequest) {
    let exact = key::exact(req, "team:fuzz", &req.model, volatile());
    let _ = key::context(req, "team:fuzz", &req.model, volatile());
    let Ok(exact) = exact else { return };
    // The same request written differently: other whitespace, every object's keys reversed.
    let Some(respelled) = respell(&req.body) else { return };
    let Ok(again) = LlmRequest::parse(req.endpoint, Bytes::from(respelled)) else {
        return;
    };
    if let Ok(k) = key::exact(&again, "team:fuzz", &req.model, volatile()) {
        assert_eq!(k, exact, "the cache key changed with whitespace and key order");
    }
}

/// An object's members in their order, duplicates kept.
struct Pairs<'a>(Vec<(String, &'a serde_json::value::RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Pairs<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = Pairs<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut m: M) -> Result<Pairs<'a>, M::Error> {
                let mut pairs = Vec::new();
                while let Some(kv) = m.next_entry::<String, &'de serde_json::value::RawValue>()? {
                    pairs.push(kv);
                }
                Ok(Pairs(pairs))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

/// `json` with whitespace between every token and each object's keys in reverse order; numbers,
/// strings and literals keep their exact text (a number re-printed could be another number).
fn respell(json: &[u8]) -> Option<Vec<u8>> {
    use serde_json::value::RawValue;
    fn write(raw: &RawValue, out: &mut Vec<u8>) -> Option<()> {
        let text = raw.get();
        match text.as_bytes().first()? {
            b'{' => {
                let Pairs(pairs) = serde_json::from_str(text).ok()?;
                let map: std::collections::BTreeMap<String, &RawValue> = pairs.iter().cloned().collect();
                // A key written twice: which value counts depends on the order (the last one
                // does, for most parsers), so reordering is no longer the same request.
                if map.len() != pairs.len() {
                    return None;
                }
                out.extend_from_slice(b"{\n");
                for (i, (k, v)) in map.iter().rev().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b" ,\n");
                    }
                    out.extend_from_slice(serde_json::to_string(k).ok()?.as_bytes());
                    out.extend_from_slice(b" :\t");
                    write(v, out)?;
                }
                out.extend_from_slice(b"\n}");
            }
            b'[' => {
                let list: Vec<&RawValue> = serde_json::from_str(text).ok()?;
                out.extend_from_slice(b"[ ");
                for (i, v) in list.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b",\r\n");
                    }
                    write(v, out)?;
                }
                out.extend_from_slice(b" ]");
            }
            _ => out.extend_from_slice(text.as_bytes()),
        }
        Some(())
    }
    let raw: &RawValue = serde_json::from_slice(json).ok()?;
    let mut out = Vec::with_capacity(json.len() * 2);
    write(raw, &mut out)?;
    Some(out)
}

/// `POST /v1/responses`: items → the chat request the stages serve (as `proxy::responses`).
fn responses(data: &[u8]) {
    let Ok(req) = ResponsesRequest::parse(data) else { return };
    let _ = (req.streamed(), req.stored(), Turn::new(&req, 0));
    let Ok(input) = req.input_items() else { return };
    // This turn's input also stands in for a stored conversation before it.
    let _ = to_chat(&req, &input, &input);
    let chat = match to_chat(&req, &[], &input) {
        Ok(chat) => chat,
        Err(_) => {
            let (r, items) = translatable(&req, &input);
            match to_chat(&r, &[], &items) {
                Ok(chat) => chat,
                Err(_) => return,
            }
        }
    };
    let Ok(body) = serde_json::to_vec(&chat) else { return };
    if let Ok(req) = LlmRequest::parse(Endpoint::ChatCompletions, Bytes::from(body)) {
        exercise(&req, false);
    }
}

/// `POST /v1/messages/count_tokens` (as `proxy::count`), and the limits' borrowed prompt parse.
fn count_tokens(data: &[u8]) {
    if let Some(p) = tollgate::limits::prompt::Prompt::parse(data) {
        let _ = tollgate::limits::tokens::estimate(&p);
    }
    if let Ok(req) = serde_json::from_slice::<tollgate::api::anthropic::MessagesRequest>(data) {
        if let Ok(chat) = tollgate::api::messages::to_chat(req) {
            let _ = tollgate::limits::tokens::estimate_chat(&chat);
        }
    }
}
