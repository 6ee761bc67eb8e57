//! The inbound Anthropic Messages API (`POST /v1/messages`): an Anthropic request → the canonical
//! OpenAI chat request (for targets of any other dialect), and the canonical answer → Anthropic's
//! response, its stream event sequence and its error body. Requests routed to an Anthropic target
//! do not come through here: they pass through with only `model` replaced.

use bytes::{Bytes, BytesMut};
use serde_json::{json, Map, Value};

use super::anthropic::{
    stop_reason, AContent, AUsage, Block, ImageSource, MessagesRequest, MessagesResponse, ToolResultContent,
};
use super::chat::{
    ChatChunk, ChatRequest, ChatResponse, Content, FunctionCall, FunctionDef, ImageUrl, Message, Part, Stop,
    StreamOptions, Tool, ToolCall, Usage,
};
use super::ApiError;
use crate::sse::encode_event;

/// Anthropic request → canonical chat request.
pub fn to_chat(req: MessagesRequest) -> Result<ChatRequest, ApiError> {
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = &req.system {
        let text = system.text();
        if !text.is_empty() {
            messages.push(Message {
                role: "system".into(),
                content: Some(Content::Text(text)),
                ..Default::default()
            });
        }
    }
    for (i, m) in req.messages.into_iter().enumerate() {
        match m.role.as_str() {
            "user" => user_messages(m.content, i, &mut messages)?,
            "assistant" => messages.push(assistant_message(m.content, i)?),
            // A system message inside the conversation (Claude Code sends them, with an
            // `anthropic-beta: mid-conversation-system-…` header): kept in place, which
            // OpenAI-dialect targets take as it is and Gemini and Bedrock fold into their one
            // system instruction. Text only: anything else in it is refused by name.
            "system" => messages.push(system_message(m.content, i)?),
            other => {
                return Err(ApiError::invalid(
                    "messages",
                    format!("unsupported role {other:?} at index {i}"),
                ))
            }
        }
    }
    let tools = match req.tools {
        None => None,
        Some(ts) => Some(
            ts.into_iter()
                .enumerate()
                .map(|(k, t)| function_tool(k, t))
                .collect::<Result<Vec<Tool>, ApiError>>()?,
        ),
    };
    let (tool_choice, parallel) = match req.tool_choice {
        None => (None, None),
        Some(tc) => {
            let choice = match tc.kind.as_str() {
                "auto" => json!("auto"),
                "any" => json!("required"),
                "none" => json!("none"),
                "tool" => json!({"type": "function", "function": {"name": tc.name.unwrap_or_default()}}),
                other => return Err(ApiError::invalid("tool_choice", format!("unknown type {other:?}"))),
            };
            (Some(choice), tc.disable_parallel_tool_use.map(|d| !d))
        }
    };
    let stream = req.stream.unwrap_or(false);
    Ok(ChatRequest {
        model: req.model,
        messages,
        stream: Some(stream),
        stream_options: stream.then(|| StreamOptions {
            include_usage: Some(true),
            rest: Map::new(),
        }),
        temperature: req.temperature,
        top_p: req.top_p,
        max_tokens: req.max_tokens,
        stop: req.stop_sequences.map(Stop::Many),
        user: req.metadata.and_then(|m| m.user_id),
        tools,
        tool_choice,
        parallel_tool_calls: parallel,
        ..Default::default()
    })
}

/// A client tool as a function tool. Anthropic's server tools (`web_search_…`,
/// `code_execution_…`, …: a `type` other than `custom`) run on Anthropic's side and have no
/// equivalent elsewhere: refused by name rather than sent as an empty function. (Client-side
/// hints such as `cache_control`, `defer_loading`, `eager_input_streaming` change how a tool is
/// billed or streamed, not what it is: they are not carried.)
fn function_tool(k: usize, t: super::anthropic::ATool) -> Result<Tool, ApiError> {
    if let Some(kind) = t.rest.get("type").and_then(Value::as_str).filter(|k| *k != "custom") {
        return Err(ApiError::Unsupported(format!(
            "tools[{k}] is Anthropic's server tool {kind:?} ({}), which only Anthropic runs: route this request to an Anthropic model or leave the tool out",
            t.name
        )));
    }
    Ok(Tool {
        kind: "function".into(),
        function: FunctionDef {
            name: t.name,
            description: t.description,
            parameters: Some(t.input_schema),
            strict: None,
        },
    })
}

fn system_message(content: AContent, i: usize) -> Result<Message, ApiError> {
    let mut text = Vec::new();
    for block in content.into_blocks() {
        match block {
            Block::Text { text: t, .. } => text.push(t),
            other => {
                return Err(ApiError::invalid(
                    "messages",
                    format!(
                        "message {i}: a system message holds text only, not a {} block",
                        other.kind()
                    ),
                ))
            }
        }
    }
    Ok(Message {
        role: "system".into(),
        content: Some(Content::Text(text.join("\n"))),
        ..Default::default()
    })
}

fn user_messages(content: AContent, i: usize, out: &mut Vec<Message>) -> Result<(), ApiError> {
    let mut parts: Vec<Part> = Vec::new();
    let flush = |parts: &mut Vec<Part>, out: &mut Vec<Message>| {
        if !parts.is_empty() {
            out.push(Message {
                role: "user".into(),
                content: Some(Content::Parts(std::mem::take(parts))),
                ..Default::default()
            });
        }
    };
    for block in content.into_blocks() {
        match block {
            Block::Text { text, .. } => parts.push(Part {
                kind: "text".into(),
                text: Some(text),
                ..Default::default()
            }),
            Block::Image { source, .. } => {
                let url = match source {
                    ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
                    ImageSource::Url { url } => url,
                    ImageSource::Other(_) => {
                        return Err(ApiError::invalid(
                            "messages",
                            format!("message {i}: unsupported image source"),
                        ))
                    }
                };
                parts.push(Part {
                    kind: "image_url".into(),
                    image_url: Some(ImageUrl { url, detail: None }),
                    ..Default::default()
                });
            }
            Block::ToolResult {
                tool_use_id,
                content,
                is_error,
                ..
            } => {
                // Tool results are their own messages in OpenAI's format, ahead of any user text.
                flush(&mut parts, out);
                let mut text = content.as_ref().map(ToolResultContent::text).unwrap_or_default();
                if is_error == Some(true) && !text.starts_with("Error") {
                    text = format!("Error: {text}");
                }
                out.push(Message {
                    role: "tool".into(),
                    content: Some(Content::Text(text)),
                    tool_call_id: Some(tool_use_id),
                    ..Default::default()
                });
            }
            Block::Other(v) if v.get("type").and_then(Value::as_str) == Some("document") => {
                parts.push(document_part(&v, i)?);
            }
            other => {
                // Never dropped: the model would answer without it.
                return Err(ApiError::Unsupported(format!(
                    "message {i}: a {} block cannot be sent to this provider's dialect",
                    other.kind()
                )));
            }
        }
    }
    flush(&mut parts, out);
    Ok(())
}

/// A `document` block as a text part: a plain-text source is the document's text (after its
/// title and context, when given). Other sources (a PDF, a URL, a file id) have no equivalent in
/// a chat text part: refused by name.
fn document_part(v: &Value, i: usize) -> Result<Part, ApiError> {
    let source = &v["source"];
    let kind = source["type"].as_str().unwrap_or("unknown");
    let text = match (kind, source["data"].as_str()) {
        ("text", Some(data)) => data,
        _ => {
            return Err(ApiError::Unsupported(format!(
                "message {i}: a document block with a {kind:?} source cannot be sent to this provider's dialect (only plain-text documents can)"
            )))
        }
    };
    let mut out = String::new();
    for field in ["title", "context"] {
        if let Some(t) = v[field].as_str().filter(|t| !t.is_empty()) {
            out.push_str(t);
            out.push_str("\n\n");
        }
    }
    out.push_str(text);
    Ok(Part {
        kind: "text".into(),
        text: Some(out),
        ..Default::default()
    })
}

/// An assistant turn: its text and tool calls. Its thinking blocks are left out (a model's
/// earlier reasoning is not input to another dialect's model); any other block (a server tool's
/// call or result) is refused by name.
fn assistant_message(content: AContent, i: usize) -> Result<Message, ApiError> {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in content.into_blocks() {
        match block {
            Block::Text { text: t, .. } => text.push_str(&t),
            Block::ToolUse { id, name, input, .. } => calls.push(ToolCall {
                id,
                kind: "function".into(),
                function: FunctionCall {
                    name,
                    arguments: input.to_string(),
                },
            }),
            Block::Thinking { .. } | Block::RedactedThinking { .. } => {}
            other => {
                return Err(ApiError::Unsupported(format!(
                    "message {i}: a {} block cannot be sent to this provider's dialect",
                    other.kind()
                )))
            }
        }
    }
    Ok(Message {
        role: "assistant".into(),
        content: (!text.is_empty() || calls.is_empty()).then_some(Content::Text(text)),
        tool_calls: (!calls.is_empty()).then_some(calls),
        ..Default::default()
    })
}

fn a_usage(u: Option<&Usage>) -> AUsage {
    let Some(u) = u else { return AUsage::default() };
    let read = u.cached_tokens();
    let write = u.prompt_tokens_details.map_or(0, |d| d.cache_write_tokens);
    AUsage {
        input_tokens: u.prompt_tokens.saturating_sub(read + write),
        output_tokens: u.completion_tokens,
        cache_read_input_tokens: Some(read),
        cache_creation_input_tokens: Some(write),
    }
}

fn message_id(id: &str) -> String {
    if id.starts_with("msg_") {
        id.to_string()
    } else {
        format!("msg_{id}")
    }
}

/// Canonical answer → Anthropic response body.
pub fn to_messages_response(resp: &ChatResponse) -> MessagesResponse {
    let choice = resp.choices.first();
    let mut content = Vec::new();
    if let Some(c) = choice {
        if let Some(r) = &c.message.reasoning_content {
            content.push(Block::Thinking {
                thinking: r.clone(),
                signature: None,
            });
        }
        let text = c.message.content.as_ref().map(Content::text).unwrap_or_default();
        if !text.is_empty() {
            content.push(Block::text(text));
        }
        for tc in c.message.tool_calls.iter().flatten() {
            let input: Value = serde_json::from_str(&tc.function.arguments).unwrap_or_else(|_| json!({}));
            content.push(Block::ToolUse {
                id: tc.id.clone(),
                name: tc.function.name.clone(),
                input,
                rest: Map::new(),
            });
        }
    }
    MessagesResponse {
        id: message_id(&resp.id),
        kind: "message".into(),
        role: "assistant".into(),
        model: resp.model.clone(),
        content,
        stop_reason: Some(stop_reason(choice.and_then(|c| c.finish_reason.as_deref()).unwrap_or("stop")).to_string()),
        stop_sequence: None,
        usage: a_usage(resp.usage.as_ref()),
    }
}

/// An OpenAI-shaped error body → Anthropic's `{"type":"error","error":{"type","message"}}`.
pub fn to_anthropic_error(status: u16, openai_body: &[u8]) -> Bytes {
    let message = serde_json::from_slice::<Value>(openai_body)
        .ok()
        .and_then(|v| v.pointer("/error/message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(openai_body).chars().take(500).collect());
    let kind = match status {
        400 | 413 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    Bytes::from(json!({"type": "error", "error": {"type": kind, "message": message}}).to_string())
}

/// Canonical chunks → Anthropic's event sequence: `message_start`, per block `content_block_start`
/// / `content_block_delta`… / `content_block_stop`, then `message_delta` (stop reason and usage)
/// and `message_stop`.
#[derive(Default)]
pub struct AnthropicEncoder {
    started: bool,
    /// The open block: (Anthropic index, is it a tool block, OpenAI tool index).
    open: Option<(u32, Option<u32>)>,
    next_index: u32,
    finish: Option<String>,
    usage: Option<Usage>,
    stopped: bool,
}

impl AnthropicEncoder {
    fn event(out: &mut BytesMut, name: &str, v: Value) {
        encode_event(out, Some(name), &v.to_string());
    }

    fn close_block(&mut self, out: &mut BytesMut) {
        if let Some((index, _)) = self.open.take() {
            Self::event(
                out,
                "content_block_stop",
                json!({"type": "content_block_stop", "index": index}),
            );
        }
    }

    fn open_block(&mut self, out: &mut BytesMut, tool: Option<u32>, block: Value) -> u32 {
        self.close_block(out);
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some((index, tool));
        Self::event(
            out,
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": block}),
        );
        index
    }

    pub fn push(&mut self, chunk: &ChatChunk, out: &mut BytesMut) {
        if !self.started {
            self.started = true;
            let msg = json!({
                "type": "message_start",
                "message": {"id": message_id(&chunk.id), "type": "message", "role": "assistant", "model": chunk.model,
                            "content": [], "stop_reason": null, "stop_sequence": null,
                            "usage": {"input_tokens": 0, "output_tokens": 0}}
            });
            Self::event(out, "message_start", msg);
        }
        if let Some(u) = chunk.usage {
            self.usage = Some(u);
        }
        for choice in chunk.choices.iter().filter(|c| c.index == 0) {
            let d = &choice.delta;
            if let Some(text) = d.content.as_deref().filter(|t| !t.is_empty()) {
                let index = match self.open {
                    Some((i, None)) => i,
                    _ => self.open_block(out, None, json!({"type": "text", "text": ""})),
                };
                Self::event(
                    out,
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}),
                );
            }
            for call in d.tool_calls.iter().flatten() {
                let index = match self.open {
                    Some((i, Some(ti))) if ti == call.index && call.id.is_none() => i,
                    _ => {
                        let name = call.function.as_ref().and_then(|f| f.name.clone()).unwrap_or_default();
                        let id = call.id.clone().unwrap_or_else(|| format!("toolu_{}", call.index));
                        self.open_block(
                            out,
                            Some(call.index),
                            json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                        )
                    }
                };
                if let Some(args) = call
                    .function
                    .as_ref()
                    .and_then(|f| f.arguments.as_deref())
                    .filter(|a| !a.is_empty())
                {
                    Self::event(
                        out,
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": args}}),
                    );
                }
            }
            if let Some(f) = &choice.finish_reason {
                self.finish = Some(f.clone());
            }
        }
    }

    /// Ends the message (call once, on a clean upstream end).
    pub fn finish(&mut self, out: &mut BytesMut) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        self.close_block(out);
        let u = a_usage(self.usage.as_ref());
        let reason = stop_reason(self.finish.as_deref().unwrap_or("stop"));
        Self::event(
            out,
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": null},
                   "usage": {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
                             "cache_read_input_tokens": u.cache_read_input_tokens, "cache_creation_input_tokens": u.cache_creation_input_tokens}}),
        );
        Self::event(out, "message_stop", json!({"type": "message_stop"}));
    }

    /// An error event (after the stream started, a failure is reported in-band).
    pub fn error(out: &mut BytesMut, kind: &str, message: &str) {
        Self::event(
            out,
            "error",
            json!({"type": "error", "error": {"type": kind, "message": message}}),
        );
    }
}
