//! The mock's AWS Bedrock Runtime dialect, on Bedrock's real paths: `POST /model/{modelId}/converse`,
//! `/converse-stream` (real `application/vnd.amazon.eventstream` framing, built with
//! `sse::eventstream`) and `/invoke` (Titan and Cohere embeddings).
//!
//! Strict where Bedrock is, so a translator bug fails here as it would against AWS:
//!
//! * every request must carry a valid SigV4 signature (service `bedrock`, any region) by the
//!   credentials of `--aws-access-key-id` / `--aws-secret-access-key`; a missing or wrong
//!   signature is 403 `InvalidSignatureException`, an unknown key 403
//!   `UnrecognizedClientException`. The clock is not checked (AWS allows 5 minutes of skew).
//! * Converse bodies: `messages` non-empty, roles `user`/`assistant` only, starting with `user`
//!   and alternating; content blocks non-empty single-key objects; no blank `text`; `toolResult`s
//!   answering an earlier `toolUse`; `toolConfig` present whenever tool blocks are, with named
//!   tools that have an `inputSchema.json` object, and a `toolChoice.tool` naming one of them;
//!   `inferenceConfig.maxTokens` ≥ 1.
//! * Titan: one non-empty `inputText`, `dimensions` 256/512/1024 (v2 only). Cohere: 1..=96
//!   `texts` and a valid `input_type`.
//!
//! Errors are Bedrock's: `{"message": ...}` with the type in `x-amzn-errortype`. Replies: text
//! from the shared pieces (`content`), cut to `maxTokens` with `max_tokens`; a toolUse
//! `{"q":"mock"}` (streamed in the same pieces as the other dialects) to the tool named by
//! `tool=NAME` or forced by `toolChoice.tool`. Tokens: `inputTokens = ceil(chars / 4) + 3 ×
//! messages` over the text of `system`, text blocks and tool results; `outputTokens` = pieces
//! (2 for a tool call). Stream events carry a `p` padding field as Bedrock's do, and end with
//! `messageStop` then `metadata`. Embeddings are `content::embedding_vector` of each text, of
//! Titan's default 1024 (v1: 1536) or Cohere's 1024 dimensions.

use bytes::{Bytes, BytesMut};
use http::Method;
use pingora::http::RequestHeader;
use serde_json::{json, Map, Value};

use super::behavior::Behavior;
use super::content::{embedding_vector, text_tokens, Input, Pieces};
use super::openai::MOCK_TOOL_ARGS;
use super::{EventSource, Reply, SseEvent};
use crate::providers::bedrock::sigv4::{self, VerifyError};
use crate::sse::eventstream::Frame;

/// The toolUse id of the mock's tool calls.
pub const TOOL_USE_ID: &str = "tooluse_mock_1";
/// Default `--aws-access-key-id`.
pub const DEFAULT_ACCESS_KEY_ID: &str = "AKIDMOCK";
/// Default `--aws-secret-access-key`.
pub const DEFAULT_SECRET_ACCESS_KEY: &str = "mock-secret";
const SIGNATURE_MISMATCH: &str = "The request signature we calculated does not match the signature you provided. \
     Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

/// The credentials the mock accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsKeys {
    pub access_key_id: String,
    pub secret_access_key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Converse,
    ConverseStream,
    Invoke,
}

/// A Bedrock call: the (decoded) model id of the path and the operation after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub model: String,
    pub op: Op,
}

/// A Bedrock-shaped error: `{"message"}` and the type in `x-amzn-errortype`.
fn error(status: u16, kind: &'static str, message: impl Into<String>) -> Reply {
    Reply::Json {
        status,
        body: Bytes::from(json!({"message": message.into()}).to_string()),
        headers: vec![("x-amzn-errortype", kind.to_string())],
    }
}

fn invalid(message: impl Into<String>) -> Reply {
    error(400, "ValidationException", message)
}

/// The exception type Bedrock uses for a status.
fn error_type(status: u16) -> &'static str {
    match status {
        403 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        408 => "ModelTimeoutException",
        424 => "ModelErrorException",
        429 => "ThrottlingException",
        503 => "ServiceUnavailableException",
        500..=599 => "InternalServerException",
        _ => "ValidationException",
    }
}

/// The reply to a `status=<code>` directive.
fn forced(status: u16, b: &Behavior) -> Reply {
    let mut reply = error(
        status,
        error_type(status),
        format!("Forced {status} by the Tollgate mock (mock directive `status={status}`)."),
    );
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

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `/model/{modelId}/{converse|converse-stream|invoke}`, POST only.
pub(crate) fn route(method: &Method, path: &str) -> Result<Call, Reply> {
    let not_found = || error(404, "UnknownOperationException", format!("No operation at {path}"));
    let rest = path.strip_prefix("/model/").ok_or_else(not_found)?;
    let (id, op) = rest.split_once('/').ok_or_else(not_found)?;
    let op = match op {
        "converse" => Op::Converse,
        "converse-stream" => Op::ConverseStream,
        "invoke" => Op::Invoke,
        _ => return Err(not_found()),
    };
    let model = percent_decode(id)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| invalid("The provided model identifier is invalid."))?;
    if *method != Method::POST {
        let mut r = error(
            405,
            "UnknownOperationException",
            format!("{method} is not allowed on {path}"),
        );
        if let Reply::Json { headers, .. } = &mut r {
            headers.push(("allow", "POST".into()));
        }
        return Err(r);
    }
    Ok(Call { model, op })
}

/// Verifies the request's SigV4 signature; `Some(reply)` if it is refused.
fn check_signature(req: &RequestHeader, body: &[u8], keys: &AwsKeys) -> Option<Reply> {
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    let verified = sigv4::verify(
        req.method.as_str(),
        req.uri.path(),
        req.uri.query().unwrap_or(""),
        header,
        body,
        |k| (k == keys.access_key_id).then_some(keys.secret_access_key.as_str()),
    );
    match verified {
        Ok(auth) if auth.service == sigv4::SERVICE => None,
        Ok(_) => Some(error(
            403,
            "InvalidSignatureException",
            "Credential should be scoped to correct service: 'bedrock'.",
        )),
        Err(VerifyError::UnknownKey) => Some(error(
            403,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )),
        Err(_) => Some(error(403, "InvalidSignatureException", SIGNATURE_MISMATCH)),
    }
}

/// One Bedrock call, after routing and the mock's directives.
pub(crate) fn reply(req: &RequestHeader, call: &Call, body: &[u8], seq: u64, b: &Behavior, keys: &AwsKeys) -> Reply {
    if let Some(status) = b.forced_status() {
        return forced(status, b);
    }
    if let Some(denied) = check_signature(req, body, keys) {
        return denied;
    }
    let obj = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => o,
        Ok(_) => return invalid("The request body must be a JSON object."),
        Err(e) => return error(400, "SerializationException", format!("Malformed JSON: {e}")),
    };
    match call.op {
        Op::Converse | Op::ConverseStream => converse(call, &obj, seq, b),
        Op::Invoke => invoke(call, &obj, seq),
    }
}

// ---------------------------------------------------------------------------------------------
// Converse

/// Characters of the text a Converse request sends (system, text blocks, tool results).
fn text_chars(blocks: &[Value]) -> u64 {
    blocks
        .iter()
        .map(|blk| {
            let own = blk
                .get("text")
                .and_then(Value::as_str)
                .map_or(0, |t| t.chars().count() as u64);
            let results = blk
                .pointer("/toolResult/content")
                .and_then(Value::as_array)
                .map_or(0, |c| text_chars(c));
            own + results
        })
        .sum()
}

fn validate(obj: &Map<String, Value>) -> Result<(), Reply> {
    let Some(messages) = obj.get("messages").and_then(Value::as_array) else {
        return Err(invalid(
            "1 validation error detected: Value null at 'messages' failed to satisfy constraint: Member must not be null",
        ));
    };
    if messages.is_empty() {
        return Err(invalid("A conversation must start with a user message. Try again with a conversation that starts with a user message."));
    }
    let mut tool_uses: Vec<&str> = Vec::new();
    let mut has_tool_blocks = false;
    let mut previous = "";
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        if role != "user" && role != "assistant" {
            return Err(invalid(format!(
                "1 validation error detected: Value '{role}' at 'messages.{}.member.role' failed to satisfy constraint: \
                 Member must satisfy enum value set: [user, assistant]",
                i + 1
            )));
        }
        if i == 0 && role != "user" {
            return Err(invalid("A conversation must start with a user message. Try again with a conversation that starts with a user message."));
        }
        if role == previous {
            return Err(invalid("A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again."));
        }
        previous = role;
        let blocks = match m.get("content").and_then(Value::as_array) {
            Some(c) if !c.is_empty() => c,
            _ => return Err(invalid(format!("The content field in the Message object at messages.{i} is empty. Add a ContentBlock object to the content field and try again."))),
        };
        for (j, blk) in blocks.iter().enumerate() {
            let Some((kind, v)) = blk.as_object().filter(|o| o.len() == 1).and_then(|o| o.iter().next()) else {
                return Err(invalid(format!(
                    "messages.{i}.content.{j}: a ContentBlock must have exactly one member"
                )));
            };
            match (kind.as_str(), role) {
                ("text", _) => {
                    if v.as_str().is_none_or(|t| t.trim().is_empty()) {
                        return Err(invalid(format!("The text field in the ContentBlock object at messages.{i}.content.{j} is blank. Add text to the text field, and try again.")));
                    }
                }
                ("image", "user") => {
                    let format_ok = v
                        .get("format")
                        .and_then(Value::as_str)
                        .is_some_and(|f| matches!(f, "png" | "jpeg" | "gif" | "webp"));
                    if !format_ok || v.pointer("/source/bytes").and_then(Value::as_str).is_none() {
                        return Err(invalid(format!(
                            "messages.{i}.content.{j}: an image needs a format (png, jpeg, gif, webp) and source.bytes"
                        )));
                    }
                }
                ("toolUse", "assistant") => {
                    has_tool_blocks = true;
                    let id = v.get("toolUseId").and_then(Value::as_str);
                    match id {
                        Some(id) if v.get("name").and_then(Value::as_str).is_some() && v.get("input").is_some() => {
                            tool_uses.push(id)
                        }
                        _ => {
                            return Err(invalid(format!(
                                "messages.{i}.content.{j}: toolUse needs toolUseId, name and input"
                            )))
                        }
                    }
                }
                ("toolResult", "user") => {
                    has_tool_blocks = true;
                    let id = v.get("toolUseId").and_then(Value::as_str).unwrap_or_default();
                    if !tool_uses.contains(&id) {
                        return Err(invalid(format!("messages.{i}.content.{j}: the toolResult toolUseId {id:?} does not match any toolUse id in the previous turns")));
                    }
                    if v.get("content").and_then(Value::as_array).is_none() {
                        return Err(invalid(format!(
                            "messages.{i}.content.{j}: toolResult needs a content list"
                        )));
                    }
                }
                (other, _) => {
                    return Err(invalid(format!(
                        "messages.{i}.content.{j}: a {other} block is not valid in a {role} message"
                    )))
                }
            }
        }
    }
    if let Some(system) = obj.get("system") {
        if !system.as_array().is_some_and(|s| s.iter().all(|b| b.is_object())) {
            return Err(invalid("system must be a list of SystemContentBlock objects"));
        }
    }
    if let Some(ic) = obj.get("inferenceConfig") {
        if ic.get("maxTokens").is_some_and(|m| m.as_u64().is_none_or(|m| m < 1)) {
            return Err(invalid("1 validation error detected: Value at 'inferenceConfig.maxTokens' failed to satisfy constraint: Member must have value greater than or equal to 1"));
        }
    }
    match obj.get("toolConfig") {
        None if has_tool_blocks => {
            return Err(invalid(
                "The toolConfig field must be defined when using toolUse and toolResult content blocks.",
            ))
        }
        None => {}
        Some(tc) => {
            let names = tool_names(tc).ok_or_else(|| {
                invalid(
                    "toolConfig.tools must be a non-empty list of toolSpec objects with a name and inputSchema.json",
                )
            })?;
            if let Some(choice) = tc.get("toolChoice") {
                let ok = match choice
                    .as_object()
                    .filter(|o| o.len() == 1)
                    .and_then(|o| o.iter().next())
                {
                    Some((k, _)) if k == "auto" || k == "any" => true,
                    Some((k, v)) if k == "tool" => v
                        .get("name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| names.contains(&n)),
                    _ => false,
                };
                if !ok {
                    return Err(invalid(
                        "toolConfig.toolChoice must be {auto:{}}, {any:{}} or {tool:{name}} naming a declared tool",
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The declared tool names, if `toolConfig.tools` is well formed.
fn tool_names(tc: &Value) -> Option<Vec<&str>> {
    let tools = tc.get("tools")?.as_array().filter(|t| !t.is_empty())?;
    tools
        .iter()
        .map(|t| {
            let spec = t.get("toolSpec")?;
            spec.pointer("/inputSchema/json")?.as_object()?;
            spec.get("name")?.as_str().filter(|n| !n.is_empty())
        })
        .collect()
}

fn converse(call: &Call, obj: &Map<String, Value>, seq: u64, b: &Behavior) -> Reply {
    if let Err(r) = validate(obj) {
        return r;
    }
    let inference = |k: &str| {
        obj.get("inferenceConfig")
            .and_then(|c| c.get(k))
            .and_then(Value::as_f64)
    };
    let extra = obj.get("additionalModelRequestFields");
    if let Some(message) = super::models::claude(
        &call.model,
        inference("temperature"),
        inference("topP"),
        extra.is_some_and(|e| e.get("top_k").is_some()),
        extra.and_then(|e| e.get("thinking")),
    ) {
        return invalid(format!("The model returned the following errors: {message}"));
    }
    let declared = obj.get("toolConfig").and_then(tool_names).unwrap_or_default();
    let tool = match &b.tool {
        Some(t) if !declared.contains(&t.as_str()) => {
            return invalid(format!("mock directive tool={t}: the request declares no such tool"))
        }
        Some(t) => Some(t.clone()),
        None => obj
            .get("toolConfig")
            .and_then(|t| t.pointer("/toolChoice/tool/name"))
            .and_then(Value::as_str)
            .map(str::to_string),
    };
    let messages = obj
        .get("messages")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let mut chars = obj.get("system").and_then(Value::as_array).map_or(0, |s| text_chars(s));
    for m in messages {
        chars += m.get("content").and_then(Value::as_array).map_or(0, |c| text_chars(c));
    }
    let input = chars.div_ceil(4) + 3 * messages.len() as u64;
    let max_tokens = obj
        .get("inferenceConfig")
        .and_then(|c| c.get("maxTokens"))
        .and_then(Value::as_u64);
    let (chunks, stop) = match (&tool, max_tokens) {
        (Some(_), _) => (MOCK_TOOL_ARGS.len() as u32, "tool_use"),
        (None, Some(max)) if max < u64::from(b.chunks) => (max as u32, "max_tokens"),
        (None, _) => (b.chunks.max(1), "end_turn"),
    };
    let pieces = Pieces::new(b.text.as_deref());
    if call.op == Op::ConverseStream {
        return Reply::Sse(Box::new(ConverseStream {
            pieces,
            chunks,
            tool,
            stop,
            input,
            step: 0,
        }));
    }
    let content = match &tool {
        Some(name) => json!([{"toolUse": {"toolUseId": TOOL_USE_ID, "name": name, "input": {"q": "mock"}}}]),
        None => json!([{"text": (0..chunks).map(|i| pieces.get(i)).collect::<String>()}]),
    };
    let out = u64::from(chunks);
    let body = json!({
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop,
        "usage": {"inputTokens": input, "outputTokens": out, "totalTokens": input + out},
        "metrics": {"latencyMs": 0}
    });
    Reply::Json {
        status: 200,
        body: Bytes::from(body.to_string()),
        headers: vec![("x-amzn-requestid", format!("mock-{seq}"))],
    }
}

/// The `ConverseStream` frames of one answer: `messageStart`, [`contentBlockStart` for a tool],
/// n `contentBlockDelta`s (the content events), `contentBlockStop`, `messageStop`, `metadata`.
struct ConverseStream {
    pieces: Pieces,
    chunks: u32,
    tool: Option<String>,
    stop: &'static str,
    input: u64,
    step: u32,
}

impl ConverseStream {
    fn frame(event: &str, mut payload: Value) -> Bytes {
        // Bedrock pads every event with a `p` field of varying length; clients must ignore it.
        if let Value::Object(m) = &mut payload {
            let pad = "abcdefghijklmnopqrstuvwxyz";
            m.insert("p".into(), Value::String(pad.get(..event.len()).unwrap_or(pad).into()));
        }
        let mut out = BytesMut::new();
        if Frame::event(event, Bytes::from(payload.to_string()))
            .encode_into(&mut out)
            .is_err()
        {
            return Bytes::new();
        }
        out.freeze()
    }
}

impl EventSource for ConverseStream {
    fn content_type(&self) -> &'static str {
        "application/vnd.amazon.eventstream"
    }

    fn next_event(&mut self) -> Option<SseEvent> {
        let n = self.chunks;
        let head = u32::from(self.tool.is_some()); // the tool's contentBlockStart
        let step = self.step;
        self.step += 1;
        let (data, content) = match step {
            0 => (Self::frame("messageStart", json!({"role": "assistant"})), false),
            1 if head == 1 => {
                let name = self.tool.clone().unwrap_or_default();
                let start =
                    json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": TOOL_USE_ID, "name": name}}});
                (Self::frame("contentBlockStart", start), false)
            }
            s if s < 1 + head + n => {
                let i = s - 1 - head;
                let delta = match &self.tool {
                    Some(_) => json!({"toolUse": {"input": MOCK_TOOL_ARGS.get(i as usize).copied().unwrap_or("")}}),
                    None => json!({"text": self.pieces.get(i)}),
                };
                let ev = json!({"contentBlockIndex": 0, "delta": delta});
                (Self::frame("contentBlockDelta", ev), true)
            }
            s if s == 1 + head + n => (Self::frame("contentBlockStop", json!({"contentBlockIndex": 0})), false),
            s if s == 2 + head + n => (Self::frame("messageStop", json!({"stopReason": self.stop})), false),
            s if s == 3 + head + n => {
                let out = u64::from(n);
                let usage = json!({"inputTokens": self.input, "outputTokens": out, "totalTokens": self.input + out});
                (
                    Self::frame("metadata", json!({"usage": usage, "metrics": {"latencyMs": 0}})),
                    false,
                )
            }
            _ => return None,
        };
        Some(SseEvent { data, content })
    }
}

// ---------------------------------------------------------------------------------------------
// InvokeModel: embeddings

fn invoke(call: &Call, obj: &Map<String, Value>, seq: u64) -> Reply {
    let model = call.model.as_str();
    if model.contains("amazon.titan-embed") {
        let Some(text) = obj.get("inputText").and_then(Value::as_str).filter(|t| !t.is_empty()) else {
            return invalid("Malformed input request: #: required key [inputText] not found, please reformat your input and try again.");
        };
        let v1 = model.contains("titan-embed-text-v1") || model.contains("titan-embed-g1");
        let dims = match (obj.get("dimensions"), v1) {
            (None, true) => 1536,
            (None, false) => 1024,
            (Some(_), true) => {
                return invalid("Malformed input request: extraneous key [dimensions] is not permitted, please reformat your input and try again.")
            }
            (Some(d), false) => match d.as_u64() {
                Some(d @ (256 | 512 | 1024)) => d as usize,
                _ => {
                    return invalid("Malformed input request: #/dimensions: 256, 512 or 1024 expected, please reformat your input and try again.")
                }
            },
        };
        let v = embedding_vector(&Input::Text(text), dims);
        let body = json!({"embedding": v, "embeddingsByType": {"float": v}, "inputTextTokenCount": text_tokens(text)});
        return Reply::Json {
            status: 200,
            body: Bytes::from(body.to_string()),
            headers: vec![("x-amzn-requestid", format!("mock-{seq}"))],
        };
    }
    if model.contains("cohere.embed") {
        let texts: Option<Vec<&str>> = obj
            .get("texts")
            .and_then(Value::as_array)
            .filter(|t| (1..=96).contains(&t.len()))
            .and_then(|t| t.iter().map(Value::as_str).collect());
        let Some(texts) = texts else {
            return invalid(
                "Malformed input request: #/texts: expected 1 to 96 strings, please reformat your input and try again.",
            );
        };
        let input_type = obj.get("input_type").and_then(Value::as_str);
        if !matches!(
            input_type,
            Some("search_document" | "search_query" | "classification" | "clustering")
        ) {
            return invalid("Malformed input request: #/input_type: search_document, search_query, classification or clustering expected, please reformat your input and try again.");
        }
        let dims = match obj.get("output_dimension") {
            None => 1024,
            Some(d) => match d.as_u64() {
                Some(d @ (256 | 512 | 1024 | 1536)) if model.contains("embed-v4") => d as usize,
                _ => return invalid("Malformed input request: #/output_dimension is not supported for this model or value, please reformat your input and try again."),
            },
        };
        let vectors: Vec<Vec<f32>> = texts.iter().map(|t| embedding_vector(&Input::Text(t), dims)).collect();
        let embeddings = if obj.get("embedding_types").is_some() {
            json!({"float": vectors})
        } else {
            json!(vectors)
        };
        let tokens: u64 = texts.iter().map(|t| text_tokens(t)).sum();
        let body = json!({
            "id": format!("mock-{seq}"),
            "embeddings": embeddings,
            "response_type": if obj.get("embedding_types").is_some() { "embeddings_by_type" } else { "embeddings_floats" },
            "texts": texts,
        });
        return Reply::Json {
            status: 200,
            body: Bytes::from(body.to_string()),
            headers: vec![
                ("x-amzn-requestid", format!("mock-{seq}")),
                ("x-amzn-bedrock-input-token-count", tokens.to_string()),
            ],
        };
    }
    invalid(format!(
        "The mock serves InvokeModel for embeddings only (amazon.titan-embed-*, cohere.embed-*), not {model:?}."
    ))
}

#[cfg(test)]
#[path = "bedrock_tests.rs"]
mod tests;
