//! The mock's Anthropic Messages dialect (`POST /v1/messages`), strict where the real API is:
//! a key in `x-api-key` (or `Authorization: Bearer`), an `anthropic-version` header, `max_tokens`,
//! a non-empty `messages` array of `user`/`assistant` turns, tool results that answer a tool use
//! of an earlier assistant turn. Errors use Anthropic's `{"type":"error","error":{..}}` shape.
//!
//! Streams follow Anthropic's event sequence: `message_start`, `content_block_start`, `ping`,
//! `content_block_delta`×N, `content_block_stop`, `message_delta` (stop reason, output tokens),
//! `message_stop`. Token counts use the same formula as the OpenAI dialect (`content`).
//!
//! `echo` / `tool_echo` (see `echo`): the text block, or a `tool_use` block of the tool `record`
//! with `input: {"note": text}` (`stop_reason: "tool_use"`), streamed as `text_delta`s or
//! `input_json_delta`s of `piece` bytes; they win over `tool=`, `chunks` and `max_tokens`.

use bytes::Bytes;
use pingora::http::RequestHeader;
use serde_json::{json, Map, Value};

use super::behavior::Behavior;
use super::content::{text_tokens, Pieces};
use super::echo::{last_user_text, Echo, TOOL_NAME};
use super::openai::MOCK_TOOL_ARGS;
use super::{EventSource, Reply, SseEvent};

pub const TOOL_USE_ID: &str = "toolu_mock_1";

fn error(status: u16, kind: &str, message: impl Into<String>) -> Reply {
    let body = json!({"type": "error", "error": {"type": kind, "message": message.into()}});
    Reply::Json {
        status,
        body: Bytes::from(body.to_string()),
        headers: Vec::new(),
    }
}

fn invalid(message: impl Into<String>) -> Reply {
    error(400, "invalid_request_error", message)
}

fn forced(status: u16, b: &Behavior) -> Reply {
    let kind = match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    let mut reply = error(
        status,
        kind,
        format!("Forced {status} by the Tollgate mock (mock directive `status={status}`)."),
    );
    if let Reply::Json { headers, .. } = &mut reply {
        if let Some(s) = b.retry_after {
            headers.push(("retry-after", s.to_string()));
        }
    }
    reply
}

/// Text of a `system` value or a message `content` (string or blocks).
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .map(|b| match b.get("type").and_then(Value::as_str) {
                Some("text") => b.get("text").and_then(Value::as_str).unwrap_or_default().to_string(),
                Some("tool_result") => b.get("content").map(text_of).unwrap_or_default(),
                Some("tool_use") => b.get("input").map(|i| i.to_string()).unwrap_or_default(),
                _ => String::new(),
            })
            .collect(),
        _ => String::new(),
    }
}

/// Input tokens: ceil(chars/4) of the system prompt and every message's text, plus 3 per message.
pub fn input_tokens(obj: &Map<String, Value>) -> u64 {
    let system = obj.get("system").map(text_of).map_or(0, |s| text_tokens(&s));
    let messages = obj.get("messages").and_then(Value::as_array).map_or(0, |ms| {
        ms.iter()
            .map(|m| text_tokens(&m.get("content").map(text_of).unwrap_or_default()) + 3)
            .sum()
    });
    system + messages
}

/// `mid_system`: the request's `anthropic-beta` header turns on mid-conversation system messages
/// (a `system` role inside `messages`), as Anthropic's API does.
fn validate(obj: &Map<String, Value>, mid_system: bool) -> Result<(), Reply> {
    match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() => {}
        _ => return Err(invalid("model: Field required")),
    }
    match obj.get("max_tokens") {
        Some(v) if v.as_u64().is_some_and(|n| n >= 1) => {}
        Some(_) => {
            return Err(invalid(
                "max_tokens: Input should be a valid integer greater than or equal to 1",
            ))
        }
        None => return Err(invalid("max_tokens: Field required")),
    }
    let Some(messages) = obj.get("messages").and_then(Value::as_array) else {
        return Err(invalid("messages: Field required"));
    };
    if messages.is_empty() {
        return Err(invalid("messages: at least one message is required"));
    }
    let mut tool_uses: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        if role != "user" && role != "assistant" && !(mid_system && role == "system") {
            return Err(invalid(format!(
                "messages.{i}.role: Input should be 'user' or 'assistant'"
            )));
        }
        let content = m
            .get("content")
            .ok_or_else(|| invalid(format!("messages.{i}.content: Field required")))?;
        let Some(blocks) = content.as_array() else {
            if content.is_string() {
                continue;
            }
            return Err(invalid(format!(
                "messages.{i}.content: Input should be a valid string or list"
            )));
        };
        for (j, b) in blocks.iter().enumerate() {
            match (b.get("type").and_then(Value::as_str), role) {
                (Some("text"), _) => {
                    if b.get("text").and_then(Value::as_str).is_none_or(str::is_empty) {
                        return Err(invalid(format!(
                            "messages.{i}.content.{j}.text: text content blocks must be non-empty"
                        )));
                    }
                }
                (Some("image"), "user") => {
                    let kind = b.pointer("/source/type").and_then(Value::as_str);
                    let ok = match kind {
                        Some("base64") => {
                            b.pointer("/source/media_type").is_some() && b.pointer("/source/data").is_some()
                        }
                        Some("url") => b.pointer("/source/url").is_some(),
                        _ => false,
                    };
                    if !ok {
                        return Err(invalid(format!(
                            "messages.{i}.content.{j}.source: invalid image source"
                        )));
                    }
                }
                (Some("tool_use"), "assistant") => {
                    let (Some(id), Some(_), Some(input)) = (
                        b.get("id").and_then(Value::as_str),
                        b.get("name").and_then(Value::as_str),
                        b.get("input"),
                    ) else {
                        return Err(invalid(format!(
                            "messages.{i}.content.{j}: tool_use needs id, name and input"
                        )));
                    };
                    if !input.is_object() {
                        return Err(invalid(format!(
                            "messages.{i}.content.{j}.input: Input should be a valid dictionary"
                        )));
                    }
                    tool_uses.push(id.to_string());
                }
                (Some("tool_result"), "user") => {
                    let id = b.get("tool_use_id").and_then(Value::as_str).unwrap_or_default();
                    if !tool_uses.iter().any(|t| t == id) {
                        return Err(invalid(format!(
                            "messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: {id}"
                        )));
                    }
                }
                (Some("thinking") | Some("redacted_thinking"), "assistant") => {}
                (t, r) => {
                    return Err(invalid(format!(
                        "messages.{i}.content.{j}: block type {t:?} is not allowed in a {r} turn"
                    )))
                }
            }
        }
    }
    if let Some(tools) = obj.get("tools") {
        let ok = tools.as_array().is_some_and(|ts| {
            ts.iter().all(|t| {
                t.get("name").and_then(Value::as_str).is_some() && t.get("input_schema").is_some_and(Value::is_object)
            })
        });
        if !ok {
            return Err(invalid("tools: each tool needs a name and an input_schema object"));
        }
    }
    Ok(())
}

/// `POST /v1/messages`.
pub(crate) fn messages(req: &RequestHeader, body: &[u8], seq: u64, b: &Behavior, require_key: Option<&str>) -> Reply {
    if let Some(status) = b.forced_status() {
        return forced(status, b);
    }
    let key = req
        .headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            req.headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        })
        .filter(|k| !k.is_empty());
    match (key, require_key) {
        (None, _) => return error(401, "authentication_error", "x-api-key header is required"),
        (Some(k), Some(want)) if k != want => return error(401, "authentication_error", "invalid x-api-key"),
        _ => {}
    }
    if req.headers.get("anthropic-version").is_none() {
        return invalid("anthropic-version: header is required");
    }
    let obj = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => o,
        Ok(_) => return invalid("the request body must be a JSON object"),
        Err(e) => return invalid(format!("invalid JSON: {e}")),
    };
    let mid_system = req
        .headers
        .get("anthropic-beta")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|b| b.trim().starts_with("mid-conversation-system")));
    if let Err(r) = validate(&obj, mid_system) {
        return r;
    }
    let model = obj.get("model").and_then(Value::as_str).unwrap_or_default();
    let number = |k: &str| obj.get(k).and_then(Value::as_f64);
    if let Some(message) = super::models::claude(
        model,
        number("temperature"),
        number("top_p"),
        obj.contains_key("top_k"),
        obj.get("thinking"),
    ) {
        return invalid(message);
    }
    let echo = Echo::new(b, || {
        obj.get("messages")
            .and_then(Value::as_array)
            .map(|ms| last_user_text(ms))
            .unwrap_or_default()
    });
    if let (None, Some(tool)) = (&echo, &b.tool) {
        let declared = obj
            .get("tools")
            .and_then(Value::as_array)
            .is_some_and(|ts| ts.iter().any(|t| t.get("name").and_then(Value::as_str) == Some(tool)));
        if !declared {
            return invalid(format!("mock directive tool={tool}: the request declares no such tool"));
        }
    }
    let model = obj.get("model").and_then(Value::as_str).unwrap_or_default().to_string();
    let max_tokens = obj.get("max_tokens").and_then(Value::as_u64).unwrap_or(1);
    let mut chunks = b.chunks.max(1);
    let mut stop = "end_turn";
    if let Some(e) = &echo {
        chunks = e.count();
        stop = if e.tool { "tool_use" } else { "end_turn" };
    } else if b.tool.is_some() {
        chunks = MOCK_TOOL_ARGS.len() as u32;
        stop = "tool_use";
    } else if max_tokens < u64::from(chunks) {
        chunks = max_tokens as u32;
        stop = "max_tokens";
    }
    let input = input_tokens(&obj);
    let id = format!("msg_mock_{seq}");
    if obj.get("stream").and_then(Value::as_bool) == Some(true) {
        let (pieces, tool, tool_args) = match echo {
            Some(e) if e.tool => (Pieces::new(None), Some(TOOL_NAME.to_string()), e.pieces),
            Some(e) => (Pieces::given(e.pieces), None, Vec::new()),
            None => (
                Pieces::new(b.text.as_deref()),
                b.tool.clone(),
                MOCK_TOOL_ARGS.map(String::from).to_vec(),
            ),
        };
        return Reply::Sse(Box::new(AnthropicStream {
            id,
            model,
            input,
            pieces,
            chunks,
            tool,
            tool_args,
            stop,
            step: 0,
        }));
    }
    let content = match (echo, &b.tool) {
        (Some(e), _) if e.tool => {
            json!([{"type": "tool_use", "id": TOOL_USE_ID, "name": TOOL_NAME, "input": e.input()}])
        }
        (Some(e), _) => json!([{"type": "text", "text": e.text}]),
        (None, Some(name)) => json!([{"type": "tool_use", "id": TOOL_USE_ID, "name": name, "input": {"q": "mock"}}]),
        (None, None) => {
            let pieces = Pieces::new(b.text.as_deref());
            let text: String = (0..chunks).map(|i| pieces.get(i)).collect();
            json!([{"type": "text", "text": text}])
        }
    };
    let body = json!({
        "id": id, "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": stop, "stop_sequence": null,
        "usage": {"input_tokens": input, "output_tokens": chunks, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    });
    Reply::Json {
        status: 200,
        body: Bytes::from(body.to_string()),
        headers: Vec::new(),
    }
}

struct AnthropicStream {
    id: String,
    model: String,
    input: u64,
    pieces: Pieces,
    chunks: u32,
    tool: Option<String>,
    /// The tool call's `partial_json` pieces.
    tool_args: Vec<String>,
    stop: &'static str,
    step: u32,
}

fn event(name: &str, v: Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {v}\n\n"))
}

impl EventSource for AnthropicStream {
    fn next_event(&mut self) -> Option<SseEvent> {
        let n = self.chunks;
        let step = self.step;
        self.step += 1;
        let (data, content) = match step {
            0 => (
                event(
                    "message_start",
                    json!({"type": "message_start", "message": {
                    "id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": [],
                    "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": self.input, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}}),
                ),
                false,
            ),
            1 => {
                let block = match &self.tool {
                    Some(name) => json!({"type": "tool_use", "id": TOOL_USE_ID, "name": name, "input": {}}),
                    None => json!({"type": "text", "text": ""}),
                };
                (
                    event(
                        "content_block_start",
                        json!({"type": "content_block_start", "index": 0, "content_block": block}),
                    ),
                    false,
                )
            }
            2 => (event("ping", json!({"type": "ping"})), false),
            s if s < 3 + n => {
                let i = s - 3;
                let delta = match &self.tool {
                    Some(_) => {
                        json!({"type": "input_json_delta", "partial_json": self.tool_args.get(i as usize).map_or("", String::as_str)})
                    }
                    None => json!({"type": "text_delta", "text": self.pieces.get(i)}),
                };
                (
                    event(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": 0, "delta": delta}),
                    ),
                    true,
                )
            }
            s if s == 3 + n => (
                event("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
                false,
            ),
            s if s == 4 + n => (
                event(
                    "message_delta",
                    json!({"type": "message_delta", "delta": {"stop_reason": self.stop, "stop_sequence": null}, "usage": {"output_tokens": n}}),
                ),
                false,
            ),
            s if s == 5 + n => (event("message_stop", json!({"type": "message_stop"})), false),
            _ => return None,
        };
        Some(SseEvent { data, content })
    }
}
