//! The OpenAI dialect of the mock provider: chat completions (JSON and SSE), legacy completions,
//! embeddings, models, and OpenAI-shaped errors.
//!
//! Everything here is a pure function of the request body, the sequence number and the resolved
//! [`Behavior`]; sockets and delays live in `mod.rs`. Each request body is parsed exactly once.
//! The one side effect: an answer with usage carries a `Pending` entry of the usage meter
//! (`usage`), counted when the answer is dropped (see `Answer`).
//!
//! # Deterministic output
//! * **Content pieces** ([`Pieces`]): piece 0 is the first word, every later piece is a space
//!   followed by a word, cycling through `This is the Tollgate mock.` (or repeating the `text=`
//!   word). The non-stream text is the concatenation of the same pieces, so with `chunks=n` the
//!   content is [`completion_text`]`(n, word)`, e.g. 4 chunks give `"This is the Tollgate"`.
//! * **`max_tokens`** (or `max_completion_tokens`) below the chunk count cuts the pieces to that
//!   many and sets `finish_reason: "length"`; otherwise `finish_reason` is `"stop"`.
//! * **Token formula.** `text_tokens(s) = ceil(chars(s) / 4)` (Unicode scalar values).
//!   * chat: `prompt_tokens = ceil(C / 4) + 3 * M`, where `M` is the number of messages and `C`
//!     the total characters of their text: a string `content`, or the `text` of each part of an
//!     array `content` (other parts and `null` count 0). See [`chat_prompt_tokens`].
//!   * completions / embeddings: the sum over inputs of `text_tokens(string)`, or the length of a
//!     token-id array. See [`input_tokens`].
//!   * `completion_tokens` = number of content pieces; `total_tokens` = the sum.
//! * **`echo` / `tool_echo`** (see [`super::echo`]): the content is the last user message's text
//!   (legacy completions: the prompt), or one call of the tool `record` with the arguments
//!   `{"note": text}` (`finish_reason: "tool_calls"`; not on legacy completions: 400), streamed
//!   in `piece`-byte pieces; they win over `chunks`, `text`, `tool` and `max_tokens`, and
//!   `completion_tokens` is the number of pieces.
//! * **Embeddings** ([`embedding_vector`]): a splitmix64 stream seeded by the FNV-1a hash of the
//!   input (a text's letters and digits, lower-cased), mapped to [-1, 1) and L2-normalised; dimension = `dimensions` or 8 (1..=4096).
//!   `encoding_format: "base64"` returns the little-endian f32 bytes in base64, as OpenAI does.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::behavior::Behavior;
pub use super::content::{base64_f32, completion_text, embedding_vector, input_tokens, text_tokens, Input, Pieces};
use super::echo::{last_user_text, prompt_text, Echo, TOOL_NAME};
use super::usage::{Pending, Tokens, UsageMeter};
use super::Reply;
use crate::time::unix_secs;

/// Model ids listed by `GET /v1/models`.
pub const MODELS: [&str; 3] = ["mock-gpt", "mock-gpt-mini", "mock-embed"];
/// `owned_by` of every listed model.
pub const OWNED_BY: &str = "tollgate-mock";
const MODELS_CREATED: u64 = 1_700_000_000;
/// Embedding dimension when the request gives none.
pub const DEFAULT_EMBEDDING_DIMS: usize = 8;
/// Largest accepted `dimensions`.
pub const MAX_EMBEDDING_DIMS: usize = 4096;
const DONE: &[u8] = b"data: [DONE]\n\n";

// ---------------------------------------------------------------------------------------------
// Errors

/// OpenAI `type` and `code` for an error status.
pub fn error_kind(status: u16) -> (&'static str, &'static str) {
    match status {
        401 => ("invalid_request_error", "invalid_api_key"),
        403 => ("permission_error", "permission_denied"),
        404 => ("invalid_request_error", "not_found"),
        408 => ("timeout_error", "timeout"),
        413 => ("invalid_request_error", "request_too_large"),
        429 => ("requests", "rate_limit_exceeded"),
        500..=599 => ("server_error", "server_error"),
        _ => ("invalid_request_error", "invalid_request_error"),
    }
}

/// An OpenAI-shaped error reply: `{"error":{"message","type","param","code"}}`.
pub(crate) fn error_reply(
    status: u16,
    message: impl Into<String>,
    etype: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Reply {
    json_reply(
        status,
        &json!({"error": {"message": message.into(), "type": etype, "param": param, "code": code}}),
    )
}

/// A 400 `invalid_request_error` about `param`.
pub(crate) fn invalid(message: impl Into<String>, param: Option<&str>) -> Reply {
    error_reply(400, message, "invalid_request_error", param, None)
}

/// The reply to a `status=<code>` directive.
pub(crate) fn forced_error(status: u16, b: &Behavior) -> Reply {
    let (etype, code) = error_kind(status);
    let message = format!("Forced {status} by the Tollgate mock (mock directive `status={status}`).");
    let mut reply = error_reply(status, message, etype, None, Some(code));
    if let Reply::Json { headers, .. } = &mut reply {
        if let Some(s) = b.retry_after {
            headers.push(("retry-after", s.to_string()));
        }
        if let Some(ms) = b.retry_after_ms {
            headers.push(("retry-after-ms", ms.to_string()));
        }
    }
    reply
}

/// Serialise `v` as a JSON reply (serialising a `Value` cannot fail; if it did, answer 500).
pub(crate) fn json_reply(status: u16, v: &impl Serialize) -> Reply {
    match serde_json::to_vec(v) {
        Ok(body) => Reply::Json {
            status,
            body: Bytes::from(body),
            headers: Vec::new(),
        },
        Err(_) => Reply::Json {
            status: 500,
            body: Bytes::from_static(
                br#"{"error":{"message":"mock failed to serialise its response","type":"server_error","param":null,"code":"server_error"}}"#,
            ),
            headers: Vec::new(),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens and content

/// Characters of a message's text content (string, or the `text` of array parts).
pub fn message_text_chars(message: &Value) -> u64 {
    match message.get("content") {
        Some(Value::String(s)) => s.chars().count() as u64,
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .map(|t| t.chars().count() as u64)
            .sum(),
        _ => 0,
    }
}

/// Chat `prompt_tokens`: `ceil(total text chars / 4) + 3 * messages`.
pub fn chat_prompt_tokens(messages: &[Value]) -> u64 {
    let chars: u64 = messages.iter().map(message_text_chars).sum();
    chars.div_ceil(4) + 3 * messages.len() as u64
}

/// Parse a string, array of strings, array of token ids, or array of token-id arrays.
pub fn parse_inputs(v: &Value) -> Option<Vec<Input<'_>>> {
    fn tokens(v: &[Value]) -> Option<Vec<u64>> {
        v.iter().map(Value::as_u64).collect()
    }
    match v {
        Value::String(s) => Some(vec![Input::Text(s)]),
        Value::Array(items) if items.is_empty() => None,
        Value::Array(items) => match &items[0] {
            Value::String(_) => items.iter().map(|i| i.as_str().map(Input::Text)).collect(),
            Value::Number(_) => tokens(items).map(|t| vec![Input::Tokens(t)]),
            Value::Array(_) => items
                .iter()
                .map(|i| match i {
                    Value::Array(t) if !t.is_empty() => tokens(t).map(Input::Tokens),
                    _ => None,
                })
                .collect(),
            _ => None,
        },
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Request parsing shared by chat and completions

#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

impl Usage {
    fn new(prompt: u64, completion: u64) -> Self {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
        }
    }

    fn tokens(&self) -> Tokens {
        Tokens::one(self.prompt_tokens, self.completion_tokens)
    }
}

/// What an endpoint answers: the reply and, for a JSON answer that carries usage, its meter
/// entry, which the caller marks [`Pending::sent`] once the body is written (a stream carries
/// its entry inside and marks it when its usage event goes out). Errors have none.
pub(crate) struct Answer {
    pub reply: Reply,
    pub pending: Option<Pending>,
}

impl From<Reply> for Answer {
    fn from(reply: Reply) -> Self {
        Answer { reply, pending: None }
    }
}

/// Options common to chat and completions requests.
struct Generation {
    model: String,
    stream: bool,
    include_usage: bool,
    chunks: u32,
    finish_reason: &'static str,
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, Reply> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(invalid("The request body must be a JSON object.", None)),
        Err(e) => Err(invalid(
            format!("We could not parse the JSON body of your request ({e})."),
            None,
        )),
    }
}

fn require_model(obj: &Map<String, Value>) -> Result<String, Reply> {
    match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() => Ok(m.clone()),
        _ => Err(invalid(
            "you must provide a model parameter (a non-empty string)",
            Some("model"),
        )),
    }
}

fn generation(obj: &Map<String, Value>, b: &Behavior, max_keys: &[&str]) -> Result<Generation, Reply> {
    let model = require_model(obj)?;
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(s)) => *s,
        Some(_) => return Err(invalid("'stream' must be a boolean", Some("stream"))),
    };
    let include_usage = match obj.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) => match o.get("include_usage") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(u)) => *u,
            Some(_) => {
                return Err(invalid(
                    "'stream_options.include_usage' must be a boolean",
                    Some("stream_options.include_usage"),
                ))
            }
        },
        Some(_) => return Err(invalid("'stream_options' must be an object", Some("stream_options"))),
    };
    let mut chunks = b.chunks.max(1);
    let mut finish_reason = "stop";
    for key in max_keys {
        match obj.get(*key) {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_u64().filter(|n| *n >= 1) {
                Some(max) => {
                    if max < u64::from(chunks) {
                        chunks = u32::try_from(max).unwrap_or(chunks);
                        finish_reason = "length";
                    }
                }
                None => return Err(invalid(format!("'{key}' must be an integer >= 1"), Some(key))),
            },
        }
    }
    Ok(Generation {
        model,
        stream,
        include_usage,
        chunks,
        finish_reason,
    })
}

// ---------------------------------------------------------------------------------------------
// Endpoints

/// `POST /v1/chat/completions`. A successful answer's usage goes to `meter` (see [`Answer`]).
pub(crate) fn chat_completions(body: &[u8], seq: u64, b: &Behavior, meter: Option<&Arc<UsageMeter>>) -> Answer {
    let obj = match parse_object(body) {
        Ok(o) => o,
        Err(r) => return r.into(),
    };
    let messages = match obj.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) => {
            return invalid("'messages' must contain at least one message", Some("messages")).into()
        }
        _ => return invalid("you must provide a 'messages' array", Some("messages")).into(),
    };
    for (i, m) in messages.iter().enumerate() {
        if m.get("role").and_then(Value::as_str).is_none() {
            return invalid(
                format!("messages[{i}] must be an object with a string 'role'"),
                Some(&format!("messages[{i}].role")),
            )
            .into();
        }
    }
    if let Some((message, param, code)) = super::models::openai(&obj) {
        return error_reply(400, message, "invalid_request_error", Some(param), Some(code)).into();
    }
    let mut g = match generation(&obj, b, &["max_completion_tokens", "max_tokens"]) {
        Ok(g) => g,
        Err(r) => return r.into(),
    };
    let echo = Echo::new(b, || last_user_text(messages));
    if let Some(e) = &echo {
        (g.chunks, g.finish_reason) = (e.count(), "stop");
    } else if let Some(tool) = &b.tool {
        if !declares_tool(&obj, tool) {
            return invalid(
                format!("mock directive tool={tool}: the request declares no such tool"),
                Some("tools"),
            )
            .into();
        }
    }
    let prompt_tokens = chat_prompt_tokens(messages);
    if let Some(window) = b.context_window.filter(|w| prompt_tokens > *w) {
        return error_reply(
            400,
            format!("This model's maximum context length is {window} tokens. However, your messages resulted in {prompt_tokens} tokens."),
            "invalid_request_error",
            Some("messages"),
            Some("context_length_exceeded"),
        ).into();
    }
    let usage = Usage::new(prompt_tokens, u64::from(g.chunks));
    let pending = meter.map(|m| Pending::new(m, &g.model, usage.tokens()));
    let id = format!("chatcmpl-mock-{seq}");
    if g.stream {
        let with_tool = echo.is_none();
        let mut stream = OpenAiStream::new(Dialect::Chat, id, g, b, (usage, pending), echo);
        if with_tool {
            stream.tool = b.tool.clone();
        }
        return Reply::Sse(Box::new(stream)).into();
    }
    let (message, finish) = match (echo, &b.tool) {
        (Some(e), _) if e.tool => (
            json!({"role": "assistant", "content": null, "tool_calls": [{
                "id": MOCK_TOOL_CALL_ID, "type": "function",
                "function": {"name": TOOL_NAME, "arguments": e.payload()}
            }]}),
            "tool_calls",
        ),
        (Some(e), _) => (json!({"role": "assistant", "content": e.text}), "stop"),
        (None, Some(tool)) => (
            json!({"role": "assistant", "content": null, "tool_calls": [{
                "id": MOCK_TOOL_CALL_ID, "type": "function",
                "function": {"name": tool, "arguments": MOCK_TOOL_ARGS.concat()}
            }]}),
            "tool_calls",
        ),
        (None, None) => (
            json!({"role": "assistant", "content": completion_text(g.chunks, b.text.as_deref())}),
            g.finish_reason,
        ),
    };
    let mut reply = json_reply(
        200,
        &json!({
            "id": id,
            "object": "chat.completion",
            "created": unix_secs(),
            "model": g.model,
            "choices": [{
                "index": 0,
                "message": message,
                "finish_reason": finish,
                "logprobs": null,
            }],
            "usage": usage,
        }),
    );
    if let (true, Reply::Json { headers, .. }) = (b.ratelimit_headers, &mut reply) {
        headers.extend(ratelimit_headers(seq, usage.total_tokens));
    }
    Answer { reply, pending }
}

/// OpenAI's six `x-ratelimit-*` headers (`ratelimit_headers` directive), for an account of
/// 100 000 000 requests and 10 000 000 000 tokens a minute that this answer (the `seq`-th, of
/// `tokens`) has drawn down. The values change with every answer, as real ones do: a client
/// pays for new header values, not for repeated ones.
pub(crate) fn ratelimit_headers(seq: u64, tokens: u64) -> [(&'static str, String); 6] {
    const REQUESTS: u64 = 100_000_000;
    const TOKENS: u64 = 10_000_000_000;
    let seq = seq % REQUESTS;
    [
        ("x-ratelimit-limit-requests", REQUESTS.to_string()),
        ("x-ratelimit-limit-tokens", TOKENS.to_string()),
        ("x-ratelimit-remaining-requests", (REQUESTS - 1 - seq).to_string()),
        (
            "x-ratelimit-remaining-tokens",
            TOKENS.saturating_sub(tokens.saturating_mul(seq + 1)).to_string(),
        ),
        ("x-ratelimit-reset-requests", format!("{}ms", 1 + seq % 9)),
        ("x-ratelimit-reset-tokens", format!("{}ms", 1 + seq % 97)),
    ]
}

/// The id and the argument pieces of the mock's tool call (`tool=NAME` directive); the
/// arguments are streamed in these pieces and are `{"q":"mock"}` whole.
pub const MOCK_TOOL_CALL_ID: &str = "call_mock_1";
pub const MOCK_TOOL_ARGS: [&str; 2] = ["{\"q\":", "\"mock\"}"];

/// Whether an OpenAI request declares a function tool with this name.
fn declares_tool(obj: &Map<String, Value>, name: &str) -> bool {
    obj.get("tools").and_then(Value::as_array).is_some_and(|tools| {
        tools
            .iter()
            .any(|t| t.pointer("/function/name").and_then(Value::as_str) == Some(name))
    })
}

/// `POST /v1/completions` (legacy text completion). Metered like [`chat_completions`].
pub(crate) fn completions(body: &[u8], seq: u64, b: &Behavior, meter: Option<&Arc<UsageMeter>>) -> Answer {
    let obj = match parse_object(body) {
        Ok(o) => o,
        Err(r) => return r.into(),
    };
    let Some(prompt) = obj.get("prompt").and_then(parse_inputs) else {
        return invalid(
            "'prompt' must be a string, an array of strings, or token-id arrays",
            Some("prompt"),
        )
        .into();
    };
    let mut g = match generation(&obj, b, &["max_tokens"]) {
        Ok(g) => g,
        Err(r) => return r.into(),
    };
    if b.tool_echo {
        return invalid(
            "mock directive `tool_echo`: legacy completions have no tool calls",
            None,
        )
        .into();
    }
    let echo = Echo::new(b, || prompt_text(obj.get("prompt")));
    if let Some(e) = &echo {
        (g.chunks, g.finish_reason) = (e.count(), "stop");
    }
    let usage = Usage::new(input_tokens(&prompt), u64::from(g.chunks));
    let pending = meter.map(|m| Pending::new(m, &g.model, usage.tokens()));
    let id = format!("cmpl-mock-{seq}");
    if g.stream {
        let stream = OpenAiStream::new(Dialect::Text, id, g, b, (usage, pending), echo);
        return Reply::Sse(Box::new(stream)).into();
    }
    let text = match echo {
        Some(e) => e.text,
        None => completion_text(g.chunks, b.text.as_deref()),
    };
    let reply = json_reply(
        200,
        &json!({
            "id": id,
            "object": "text_completion",
            "created": unix_secs(),
            "model": g.model,
            "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": g.finish_reason}],
            "usage": usage,
        }),
    );
    Answer { reply, pending }
}

#[derive(Serialize)]
#[serde(untagged)]
enum EmbeddingData {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct EmbeddingItem {
    object: &'static str,
    index: usize,
    embedding: EmbeddingData,
}

/// `POST /v1/embeddings`. Metered like [`chat_completions`] (no completion tokens).
pub(crate) fn embeddings(body: &[u8], meter: Option<&Arc<UsageMeter>>) -> Answer {
    let obj = match parse_object(body) {
        Ok(o) => o,
        Err(r) => return r.into(),
    };
    let model = match require_model(&obj) {
        Ok(m) => m,
        Err(r) => return r.into(),
    };
    let Some(inputs) = obj.get("input").and_then(parse_inputs) else {
        return invalid(
            "'input' must be a string, a non-empty array of strings, or token-id arrays",
            Some("input"),
        )
        .into();
    };
    let dims = match obj.get("dimensions") {
        None | Some(Value::Null) => DEFAULT_EMBEDDING_DIMS,
        Some(v) => match v.as_u64().filter(|d| (1..=MAX_EMBEDDING_DIMS as u64).contains(d)) {
            Some(d) => d as usize,
            None => {
                return invalid(
                    format!("'dimensions' must be an integer 1..={MAX_EMBEDDING_DIMS}"),
                    Some("dimensions"),
                )
                .into()
            }
        },
    };
    let base64 = match obj.get("encoding_format") {
        None | Some(Value::Null) => false,
        Some(Value::String(f)) if f == "float" => false,
        Some(Value::String(f)) if f == "base64" => true,
        Some(_) => return invalid("'encoding_format' must be 'float' or 'base64'", Some("encoding_format")).into(),
    };
    let data: Vec<EmbeddingItem> = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let v = embedding_vector(input, dims);
            EmbeddingItem {
                object: "embedding",
                index,
                embedding: if base64 {
                    EmbeddingData::Base64(base64_f32(&v))
                } else {
                    EmbeddingData::Float(v)
                },
            }
        })
        .collect();
    let prompt_tokens = input_tokens(&inputs);
    let pending = meter.map(|m| Pending::new(m, &model, Tokens::one(prompt_tokens, 0)));
    let reply = json_reply(
        200,
        &json!({
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        }),
    );
    Answer { reply, pending }
}

fn model_json(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": MODELS_CREATED, "owned_by": OWNED_BY})
}

/// `GET /v1/models`.
pub(crate) fn list_models() -> Reply {
    let data: Vec<Value> = MODELS.iter().map(|m| model_json(m)).collect();
    json_reply(200, &json!({"object": "list", "data": data}))
}

/// `GET /v1/models/{id}`.
pub(crate) fn retrieve_model(id: &str) -> Reply {
    if MODELS.contains(&id) {
        json_reply(200, &model_json(id))
    } else {
        error_reply(
            404,
            format!("The model '{id}' does not exist"),
            "invalid_request_error",
            Some("model"),
            Some("model_not_found"),
        )
    }
}

#[path = "openai_stream.rs"]
mod stream;
use stream::{Dialect, OpenAiStream};

#[cfg(test)]
#[path = "openai_tests.rs"]
mod tests;
