//! The mock's Google Gemini dialect, on Google's real paths below `/v1beta/`:
//! `models/{model}:generateContent`, `models/{model}:streamGenerateContent?alt=sse`,
//! `models/{model}:batchEmbedContents` and `models/{model}:embedContent`.
//!
//! Strict where Google is, so a translator bug fails here as it would against Google: a key in
//! `x-goog-api-key` or `?key=` (missing: 403 `PERMISSION_DENIED`; wrong, with `--require-key`:
//! 400 `API_KEY_INVALID`, as Google answers); unknown field names in the request, its contents
//! and parts, tools, function schemas and `generationConfig` (Google's "Unknown name … Cannot find
//! field", which is how it rejects JSON Schema keys such as `additionalProperties` in a function's
//! `parameters`); empty `contents` or `parts`; roles other than `user`/`model`; empty text parts;
//! parts with no or two data fields; thought signatures that are not base64; and, for `gemini-3*`
//! models, function calls of the current turn without a thought signature (the rules live in
//! `validate`). `streamGenerateContent` without `alt=sse` is refused (400): the gateway only
//! speaks SSE. Errors use Google's `{"error":{"code","message","status"}}` shape.
//!
//! Replies: text from the shared pieces (`content`), one candidate per `candidateCount`, cut to
//! `maxOutputTokens` with `MAX_TOKENS`; `tool=NAME` answers a `functionCall` `{"q":"mock"}` to a
//! declared function (with a thought signature on `gemini-3*` models). Streams are `data: <json>`
//! events separated by `\r\n\r\n` like Google's, each repeating the cumulative `usageMetadata`,
//! the last carrying `finishReason`; there is no terminator. Tokens:
//! `promptTokenCount = ceil(chars / 4) + 3 × turns` over the text (and function call/response
//! JSON) of `systemInstruction` (one turn) and `contents`; `candidatesTokenCount` = pieces per
//! candidate (2 for a tool call) × candidates. Embeddings are `content::embedding_vector` of the
//! joined text parts, 8 dimensions unless `outputDimensionality` says otherwise.

use bytes::Bytes;
use http::Method as HttpMethod;
use pingora::http::RequestHeader;
use serde_json::{json, Map, Value};

use super::behavior::Behavior;
use super::content::{embedding_vector, Input, Pieces};
use super::openai::{json_reply, DEFAULT_EMBEDDING_DIMS, MAX_EMBEDDING_DIMS, MOCK_TOOL_ARGS};
use super::{EventSource, Reply, SseEvent};
use validate::{
    check_signatures, content, content_chars, field, generation, known_fields, parts_of, tools, REQUEST_FIELDS,
};

mod validate;

/// The thought signature the mock attaches to function calls of `gemini-3*` models (base64).
pub const MOCK_SIGNATURE: &str = "dG9sbGdhdGUtbW9jay1zaWduYXR1cmU=";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Generate,
    Stream,
    BatchEmbed,
    Embed,
}

/// A Gemini call: the model of the path and the method after its `:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub model: String,
    pub op: Op,
}

/// A Google-shaped error reply.
fn error(status: u16, message: impl Into<String>) -> Reply {
    json_reply(
        status,
        &json!({"error": {"code": status, "message": message.into(), "status": status_name(status)}}),
    )
}

pub(super) fn invalid(message: impl Into<String>) -> Reply {
    error(400, message)
}

pub(super) fn unknown_name(name: &str, at: &str) -> Reply {
    let at = if at.is_empty() {
        String::new()
    } else {
        format!(" at '{at}'")
    };
    invalid(format!(
        "Invalid JSON payload received. Unknown name \"{name}\"{at}: Cannot find field."
    ))
}

/// Google's canonical status names (`google.rpc.Code`).
pub fn status_name(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        500..=599 => "INTERNAL",
        _ => "FAILED_PRECONDITION",
    }
}

/// `/v1beta/models/{model}:{method}` → the call, or Google's 404/405.
pub(crate) fn route(method: &HttpMethod, path: &str) -> Result<Call, Reply> {
    let not_found = || error(404, format!("The requested URL {path} was not found on this server."));
    let rest = path.strip_prefix("/v1beta/models/").ok_or_else(not_found)?;
    let (model, op) = rest.split_once(':').ok_or_else(not_found)?;
    if model.is_empty() || model.contains('/') {
        return Err(not_found());
    }
    let op = match op {
        "generateContent" => Op::Generate,
        "streamGenerateContent" => Op::Stream,
        "batchEmbedContents" => Op::BatchEmbed,
        "embedContent" => Op::Embed,
        _ => return Err(not_found()),
    };
    if *method != HttpMethod::POST {
        return Err(error(
            405,
            format!("Method {method} is not allowed on {path}; use POST."),
        ));
    }
    Ok(Call {
        model: model.to_string(),
        op,
    })
}

fn query_param<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
    req.uri
        .query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// `None` when the key is acceptable, else Google's answer.
fn check_key(req: &RequestHeader, require_key: Option<&str>) -> Option<Reply> {
    let key = req
        .headers
        .get("x-goog-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| query_param(req, "key"))
        .filter(|k| !k.is_empty());
    match (key, require_key) {
        (None, _) => Some(error(
            403,
            "Method doesn't allow unregistered callers (callers without established identity). \
             Please use API Key or other form of API consumer identity to call this API.",
        )),
        (Some(k), Some(want)) if k != want => Some(json_reply(
            400,
            &json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                "status": "INVALID_ARGUMENT", "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID", "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"}}]}}),
        )),
        _ => None,
    }
}

fn forced(status: u16, b: &Behavior) -> Reply {
    let message = format!("Forced {status} by the Tollgate mock (mock directive `status={status}`).");
    let mut err = json!({"code": status, "message": message, "status": status_name(status)});
    if let Some(s) = b.retry_after {
        err["details"] = json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{s}s")}]);
    }
    let mut reply = json_reply(status, &json!({ "error": err }));
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

/// Answers one Gemini call: forced status, key, then the method.
pub(crate) fn reply(
    req: &RequestHeader,
    call: &Call,
    body: &[u8],
    seq: u64,
    b: &Behavior,
    require_key: Option<&str>,
) -> Reply {
    if let Some(status) = b.forced_status() {
        return forced(status, b);
    }
    if let Some(denied) = check_key(req, require_key) {
        return denied;
    }
    let obj = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => o,
        Ok(_) => return invalid("Invalid JSON payload received. Expected an object."),
        Err(e) => return invalid(format!("Invalid JSON payload received. {e}")),
    };
    let result = match call.op {
        Op::Generate => generate(&obj, call, seq, b, false),
        Op::Stream if query_param(req, "alt") != Some("sse") => Err(invalid(
            "The Tollgate mock streams only as server-sent events: add `?alt=sse` to streamGenerateContent.",
        )),
        Op::Stream => generate(&obj, call, seq, b, true),
        Op::BatchEmbed => batch_embed(&obj, &call.model),
        Op::Embed => embed_one(&obj, "", &call.model, false).map(|e| json_reply(200, &json!({ "embedding": e }))),
    };
    result.unwrap_or_else(|r| r)
}

// ---------------------------------------------------------------------------------------------
// generateContent / streamGenerateContent

fn generate(obj: &Map<String, Value>, call: &Call, seq: u64, b: &Behavior, stream: bool) -> Result<Reply, Reply> {
    known_fields(obj, REQUEST_FIELDS, "")?;
    let contents = field(obj, "contents")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty());
    let Some(contents) = contents else {
        return Err(invalid("* GenerateContentRequest.contents: contents is not specified"));
    };
    for (i, c) in contents.iter().enumerate() {
        content(c, &format!("contents[{i}]"), false)?;
    }
    let system = field(obj, "systemInstruction");
    if let Some(s) = system {
        content(s, "system_instruction", true)?;
    }
    let gemini3 = call.model.starts_with("gemini-3");
    if gemini3 {
        check_signatures(contents)?;
    }
    let declared = tools(obj)?;
    let g = generation(obj)?;
    if let Some(tool) = &b.tool {
        if !declared.iter().any(|d| d == tool) {
            return Err(invalid(format!(
                "mock directive tool={tool}: the request declares no such function"
            )));
        }
    }

    let chars: u64 = contents.iter().chain(system).map(content_chars).sum();
    let turns = contents.len() as u64 + u64::from(system.is_some());
    let prompt = chars.div_ceil(4) + 3 * turns;
    let (pieces, finish) = match (&b.tool, g.max_tokens) {
        (Some(_), _) => (MOCK_TOOL_ARGS.len() as u32, "STOP"),
        (None, Some(max)) if max < u64::from(b.chunks) => (u32::try_from(max).unwrap_or(b.chunks), "MAX_TOKENS"),
        (None, _) => (b.chunks.max(1), "STOP"),
    };
    let answer = Answer {
        model: call.model.clone(),
        id: format!("mock-gemini-{seq}"),
        prompt,
        candidates: g.candidates,
        pieces: Pieces::new(b.text.as_deref()),
        chunks: pieces,
        tool: b.tool.clone(),
        signature: gemini3,
        finish,
        next: 0,
    };
    if stream {
        return Ok(Reply::Sse(Box::new(answer)));
    }
    Ok(json_reply(200, &answer.whole()))
}

/// One answer, whole or as an event stream.
struct Answer {
    model: String,
    id: String,
    prompt: u64,
    candidates: u32,
    pieces: Pieces,
    chunks: u32,
    tool: Option<String>,
    signature: bool,
    finish: &'static str,
    next: u32,
}

impl Answer {
    fn usage(&self, pieces_so_far: u32) -> Value {
        let out = u64::from(pieces_so_far) * u64::from(self.candidates);
        json!({
            "promptTokenCount": self.prompt,
            "candidatesTokenCount": out,
            "totalTokenCount": self.prompt + out,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": self.prompt}],
        })
    }

    fn call_part(&self, name: &str) -> Value {
        let mut part = json!({"functionCall": {"name": name, "args": {"q": "mock"}}});
        if self.signature {
            part["thoughtSignature"] = json!(MOCK_SIGNATURE);
        }
        part
    }

    /// A response carrying `parts` for every candidate, with the finish reason if `last`.
    fn response(&self, parts: &Value, last: bool, pieces_so_far: u32) -> Value {
        let candidates: Vec<Value> = (0..self.candidates)
            .map(|i| {
                let mut c = json!({"content": {"parts": parts, "role": "model"}, "index": i});
                if last {
                    c["finishReason"] = json!(self.finish);
                }
                c
            })
            .collect();
        json!({
            "candidates": candidates,
            "usageMetadata": self.usage(pieces_so_far),
            "modelVersion": self.model,
            "responseId": self.id,
        })
    }

    fn whole(&self) -> Value {
        let parts = match &self.tool {
            Some(name) => json!([self.call_part(name)]),
            None => {
                let text: String = (0..self.chunks).map(|i| self.pieces.get(i)).collect();
                json!([{ "text": text }])
            }
        };
        self.response(&parts, true, self.chunks)
    }
}

impl EventSource for Answer {
    fn next_event(&mut self) -> Option<SseEvent> {
        let v = match &self.tool {
            Some(name) if self.next == 0 => {
                self.next = self.chunks;
                self.response(&json!([self.call_part(name)]), true, self.chunks)
            }
            None if self.next < self.chunks => {
                let i = self.next;
                self.next += 1;
                let last = self.next == self.chunks;
                self.response(&json!([{ "text": self.pieces.get(i) }]), last, self.next)
            }
            _ => return None,
        };
        Some(SseEvent {
            data: Bytes::from(format!("data: {v}\r\n\r\n")),
            content: true,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Embeddings

/// One `EmbedContentRequest` → its `ContentEmbedding`. In a batch each request names its model,
/// which must be the model of the URL.
fn embed_one(obj: &Map<String, Value>, at: &str, model: &str, batch: bool) -> Result<Value, Reply> {
    known_fields(
        obj,
        &["model", "content", "taskType", "title", "outputDimensionality"],
        at,
    )?;
    let prefix = if batch {
        "BatchEmbedContentsRequest."
    } else {
        "EmbedContentRequest."
    };
    match obj.get("model").and_then(Value::as_str) {
        Some(m) if m == format!("models/{model}") => {}
        Some(m) => {
            return Err(invalid(format!(
                "* {prefix}{at}.model: model `{m}` does not match the model in the URL (models/{model})"
            )))
        }
        None if batch => return Err(invalid(format!("* {prefix}{at}.model: model is required"))),
        None => {}
    }
    let c = obj
        .get("content")
        .ok_or_else(|| invalid(format!("* {prefix}{at}.content: content is required")))?;
    content(c, &format!("{at}.content"), true)?;
    let text: String = parts_of(c)
        .iter()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect();
    let dims = match field(obj, "outputDimensionality") {
        None => DEFAULT_EMBEDDING_DIMS,
        Some(d) => d
            .as_u64()
            .filter(|d| (1..=MAX_EMBEDDING_DIMS as u64).contains(d))
            .map(|d| d as usize)
            .ok_or_else(|| {
                invalid(format!(
                    "* {prefix}{at}.output_dimensionality: must be in [1, {MAX_EMBEDDING_DIMS}]"
                ))
            })?,
    };
    Ok(json!({ "values": embedding_vector(&Input::Text(&text), dims) }))
}

fn batch_embed(obj: &Map<String, Value>, model: &str) -> Result<Reply, Reply> {
    known_fields(obj, &["requests"], "")?;
    let requests = obj.get("requests").and_then(Value::as_array).filter(|r| !r.is_empty());
    let Some(requests) = requests else {
        return Err(invalid(
            "* BatchEmbedContentsRequest.requests: requests is not specified",
        ));
    };
    let mut embeddings = Vec::with_capacity(requests.len());
    for (i, r) in requests.iter().enumerate() {
        let r = r
            .as_object()
            .ok_or_else(|| invalid(format!("Invalid value at 'requests[{i}]'")))?;
        embeddings.push(embed_one(r, &format!("requests[{i}]"), model, true)?);
    }
    Ok(json_reply(200, &json!({ "embeddings": embeddings })))
}

/// Prompt tokens a `generateContent` body would be charged (for tests of other layers).
pub fn prompt_tokens(body: &Value) -> u64 {
    let contents = body
        .get("contents")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let system = body.get("systemInstruction");
    let chars: u64 = contents.iter().chain(system).map(content_chars).sum();
    chars.div_ceil(4) + 3 * (contents.len() as u64 + u64::from(system.is_some()))
}

#[cfg(test)]
mod tests;
