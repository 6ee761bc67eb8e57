//! What the fuzz targets share: deterministic cuts of an input into pieces (a stream must decode
//! the same however the network cuts it), one config with a target of every dialect, and the
//! upstream requests rendered for them (what a provider's answer is read against).
//!
//! Everything here is built once per process; a target's per-input work is only the parser
//! under test.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};
use tollgate::api::chat::{ChatChunk, Usage};
use tollgate::api::client::StreamEncoder;
use tollgate::api::openai::LlmRequest;
use tollgate::api::{Endpoint, Wire};
use tollgate::config::{load_str, Env, Snapshot, Target};
use tollgate::guard::policy::Policy;
use tollgate::guard::Guard;
use tollgate::providers::{Adapter, ChunkSource, Observer, Rendered, StreamFault};

/// `data` cut into pieces of 1..=`max` bytes. The sizes come from a generator seeded by the data
/// itself, so a crashing input reproduces with the same cuts.
pub fn pieces(data: &[u8], max: usize) -> Vec<&[u8]> {
    let mut state = data
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
        | 1;
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let n = (1 + (state % max.max(1) as u64) as usize).min(rest.len());
        let (head, tail) = rest.split_at(n);
        out.push(head);
        rest = tail;
    }
    out
}

/// The fuzzing config: one alias per dialect (`openai`, `azure`, `anthropic`, `gemini`,
/// `bedrock`), the embedding models whose answers are translated (`gemini-embed`,
/// `bedrock-titan`, `bedrock-cohere`), and guardrails that act on every kind (PII redacted,
/// secrets and the answer's findings masked, injection scored; custom kinds of each sort; a
/// Presidio analyzer). Names resolve to loopback; no secret is real.
pub const CONFIG: &str = "\
providers:
  openai: { kind: openai_compatible, base_url: http://o/v1, api_keys: [k] }
  azure: { kind: azure, base_url: http://az, api_version: \"2024-10-21\", api_keys: [k] }
  anthropic: { kind: anthropic, base_url: http://a/v1, api_keys: [k] }
  gemini: { kind: gemini, base_url: http://g/v1beta, api_keys: [k] }
  bedrock: { kind: bedrock, base_url: http://b, aws_region: us-east-1, aws_access_key_id: AKID, aws_secret_access_key: s }
models:
  openai: { targets: [ { provider: openai, model: gpt-4o } ] }
  azure: { targets: [ { provider: azure, model: gpt-4o-deployment } ] }
  anthropic: { targets: [ { provider: anthropic, model: claude-sonnet-4-5 } ] }
  gemini: { targets: [ { provider: gemini, model: gemini-2.5-flash } ] }
  bedrock: { targets: [ { provider: bedrock, model: \"anthropic.claude-3-5-sonnet-20240620-v1:0\" } ] }
  gemini-embed: { targets: [ { provider: gemini, model: text-embedding-004 } ] }
  bedrock-titan: { targets: [ { provider: bedrock, model: \"amazon.titan-embed-text-v2:0\" } ] }
  bedrock-cohere: { targets: [ { provider: bedrock, model: \"cohere.embed-english-v3\" } ] }
guardrails:
  defaults: { pii: redact, secrets: mask, output: mask, injection: flag }
  entities:
    - { name: PROJECT, regex: 'PRJ-[0-9]{4}' }
    - { name: CODENAME, words: [Bluebird, Nightjar], class: secret }
  restricted:
    - { name: INTERNAL_HOST, regex: '[a-z0-9-]+\\.corp\\.example\\.com' }
  presidio: { url: http://presidio:3000, entities: [PERSON, LOCATION], min_score: 0.5, language: en }
";

/// The chat dialects, by alias in `CONFIG`.
pub const CHAT: [&str; 5] = ["openai", "azure", "anthropic", "gemini", "bedrock"];

/// Never reads the process environment, never resolves a name.
pub fn hermetic_env<R>(f: impl FnOnce(&Env) -> R) -> R {
    let resolve = |_: &str, port: u16| Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    let var = |_: &str| Some("fuzz-value".to_string());
    f(&Env {
        var: &var,
        resolve: &resolve,
    })
}

pub fn snapshot() -> &'static Snapshot {
    static SNAP: OnceLock<Snapshot> = OnceLock::new();
    SNAP.get_or_init(|| {
        hermetic_env(|env| load_str(Path::new("fuzz.yaml"), CONFIG, env)).expect("the fuzzing config loads")
    })
}

/// The guardrails of `CONFIG` and their default policy.
pub fn guard() -> (&'static Arc<Guard>, &'static Policy) {
    let g = snapshot().guard.as_ref().expect("CONFIG has guardrails");
    (&g.guard, g.default.as_deref().expect("CONFIG has a default policy"))
}

/// The first target of `alias`.
pub fn target(alias: &str) -> &'static Target {
    &snapshot().model(alias).expect("an alias of CONFIG").targets[0]
}

/// `target`'s adapter.
pub fn adapter(alias: &str) -> &'static dyn Adapter {
    target(alias).provider.kind.adapter()
}

/// The upstream requests an answer of `alias` is read against: a chat request with a tool,
/// streamed or not, and the same asking for JSON (Anthropic and Bedrock emulate it with a
/// forced tool, and read the answer differently).
pub fn chat_renders(alias: &str, stream: bool) -> Vec<Rendered> {
    let mut out = Vec::new();
    for json in [false, true] {
        let body = serde_json::json!({
            "model": alias,
            "stream": stream,
            "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
            "tools": [{"type": "function", "function": {"name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "response_format": if json { serde_json::json!({"type": "json_object"}) } else { serde_json::json!({"type": "text"}) },
        });
        let req = LlmRequest::parse(Endpoint::ChatCompletions, Bytes::from(body.to_string())).expect("a valid request");
        let t = target(alias);
        out.push(adapter(alias).render(&req, &t.render_target()).expect("renders"));
    }
    out
}

/// An embeddings request of `alias` (float or base64 output) and its rendering.
pub fn embeddings_render(alias: &str, base64: bool) -> (LlmRequest, Rendered) {
    let format = if base64 { "base64" } else { "float" };
    let body = serde_json::json!({"model": alias, "input": "a", "encoding_format": format});
    let req = LlmRequest::parse(Endpoint::Embeddings, Bytes::from(body.to_string())).expect("a valid request");
    let t = target(alias);
    let rendered = adapter(alias).render(&req, &t.render_target()).expect("renders");
    (req, rendered)
}

/// What a stream translator made of a body fed in `pieces`, ids and timestamps blanked (a
/// translator may mint them per stream).
#[derive(Debug, PartialEq)]
pub struct Translated {
    pub chunks: Vec<ChatChunk>,
    /// The first fault: translation stops there, as the relay stops.
    pub fault: Option<StreamFault>,
    pub usage: Option<Usage>,
    pub completed: bool,
}

pub fn translate(mut source: Box<dyn ChunkSource>, pieces: &[&[u8]]) -> Translated {
    let mut chunks = Vec::new();
    let mut fault = None;
    for p in pieces {
        if let Err(e) = source.push(p, &mut chunks) {
            fault = Some(e);
            break;
        }
    }
    if fault.is_none() {
        fault = source.finish(&mut chunks).err();
    }
    for c in &mut chunks {
        c.id.clear();
        c.created = 0;
    }
    Translated {
        chunks,
        fault,
        usage: source.usage(),
        completed: source.completed(),
    }
}

/// Writes translated chunks in both client formats, as the relay does: a clean end, or the
/// error event after a fault.
pub fn encode_for_clients(t: &Translated) {
    for (wire, include_usage) in [(Wire::OpenAi, true), (Wire::OpenAi, false), (Wire::Anthropic, false)] {
        let mut enc = StreamEncoder::new(wire, include_usage);
        let mut out = BytesMut::new();
        for c in &t.chunks {
            enc.push(c, &mut out);
        }
        match &t.fault {
            None => enc.finish(&mut out),
            Some(f) => enc.error(&mut out, "upstream_error", &f.message()),
        }
    }
}

/// What a passthrough observer learned from a body fed in `pieces`; `None` when part of it was
/// unreadable (what it learns then may depend on the cuts).
pub fn observe(mut observer: Box<dyn Observer>, pieces: &[&[u8]]) -> Option<(Option<Usage>, bool, Option<String>)> {
    let mut clean = true;
    for p in pieces {
        clean &= observer.push(p).is_ok();
    }
    clean &= observer.finish().is_ok();
    clean.then(|| {
        (
            observer.usage(),
            observer.completed(),
            observer.completion_text().map(str::to_string),
        )
    })
}
