//! OpenAI chat request → Anthropic Messages request.
//!
//! Anthropic differs in ways a faithful translation must handle: system prompts are a top-level
//! field, roles must alternate user/assistant (tool results are user turns), tool arguments are
//! JSON objects rather than JSON text, `max_tokens` is mandatory, and there is no JSON mode. JSON
//! mode and JSON schema are provided by forcing a single tool whose input schema is the requested
//! schema; the response side turns that tool call back into the message text (`JsonMode`).

use serde_json::{json, Map, Value};

use crate::api::anthropic::{
    AContent, AMessage, ATool, AToolChoice, Block, ImageSource, MessagesRequest, Metadata, System,
};
use crate::api::chat::{ChatRequest, Content, Message};
use crate::api::ApiError;
use crate::providers::translate::{self, push, Role, ToolChoiceOf, Turn};

/// The name of the tool that carries a JSON-mode answer.
pub const JSON_TOOL: &str = "json_response";

/// Whether the request asked for JSON output (emulated with a forced tool).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JsonMode(pub bool);

pub fn to_anthropic(
    req: &ChatRequest,
    model: &str,
    default_max_tokens: u64,
) -> Result<(MessagesRequest, JsonMode), ApiError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(ApiError::invalid(
            "n",
            "this model's provider (Anthropic) returns one choice; n must be 1",
        ));
    }
    let mut system: Vec<Block> = Vec::new();
    let mut messages: Vec<AMessage> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        match translate::role(m, i, &["tool"])? {
            Role::System => {
                if let Some(c) = &m.content {
                    system.extend(text_blocks(c));
                }
            }
            Role::User => push(&mut messages, "user", user_blocks(m, i)?),
            Role::Assistant => push(&mut messages, "assistant", assistant_blocks(m, i)?),
            Role::Tool => {
                let id = m
                    .tool_call_id
                    .clone()
                    .ok_or(ApiError::MissingField("messages[].tool_call_id"))?;
                let text = m.content.as_ref().map(Content::text).unwrap_or_default();
                let block = Block::ToolResult {
                    tool_use_id: id,
                    content: Some(crate::api::anthropic::ToolResultContent::Text(text)),
                    is_error: None,
                    rest: Map::new(),
                };
                push(&mut messages, "user", vec![block]);
            }
        }
    }
    let messages = translate::non_empty(messages, "at least one user or assistant message is required")?;

    let mut tools: Option<Vec<ATool>> = req.tools.as_ref().map(|ts| {
        ts.iter()
            .map(|t| ATool {
                name: t.function.name.clone(),
                description: t.function.description.clone(),
                input_schema: t
                    .function
                    .parameters
                    .clone()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                rest: Map::new(),
            })
            .collect()
    });
    let mut tool_choice = match req.tool_choice.as_ref().map(translate::tool_choice).transpose()? {
        None => None,
        Some(choice) => {
            let (kind, name) = match choice {
                ToolChoiceOf::Auto => ("auto", None),
                ToolChoiceOf::Required => ("any", None),
                ToolChoiceOf::None => ("none", None),
                ToolChoiceOf::Function(name) => ("tool", Some(name.to_string())),
            };
            Some(AToolChoice {
                kind: kind.into(),
                name,
                disable_parallel_tool_use: None,
            })
        }
    };
    if req.parallel_tool_calls == Some(false) {
        let tc = tool_choice.get_or_insert(AToolChoice {
            kind: "auto".into(),
            name: None,
            disable_parallel_tool_use: None,
        });
        if tc.kind != "none" {
            tc.disable_parallel_tool_use = Some(true);
        }
    }

    let mut json_mode = JsonMode(false);
    if let Some(rf) = &req.response_format {
        match rf.get("type").and_then(Value::as_str) {
            Some("text") | None => {}
            Some("json_object") => {
                json_mode = JsonMode(true);
                force_json_tool(&mut tools, &mut tool_choice, json!({"type": "object"}), None);
            }
            Some("json_schema") => {
                let schema = rf
                    .pointer("/json_schema/schema")
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object"}));
                let description = rf
                    .pointer("/json_schema/description")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                json_mode = JsonMode(true);
                force_json_tool(&mut tools, &mut tool_choice, schema, description);
            }
            Some(other) => return Err(ApiError::invalid("response_format", format!("unknown type {other:?}"))),
        }
    }
    if req.seed.is_some() {
        tracing::debug!("dropping `seed`: Anthropic has no seed parameter");
    }
    let mut rest = Map::new();
    for (k, v) in &req.rest {
        // Anthropic-native fields sent through the OpenAI API (e.g. `thinking`, `top_k`) are kept;
        // OpenAI-only fields would be rejected by Anthropic, so they are dropped.
        if matches!(
            k.as_str(),
            "thinking" | "top_k" | "service_tier" | "container" | "mcp_servers"
        ) {
            rest.insert(k.clone(), v.clone());
        } else {
            tracing::debug!(field = %k, "dropping a field Anthropic does not accept");
        }
    }
    let mut max_tokens = req.max_output_tokens().unwrap_or(default_max_tokens);
    if let (Some(effort), false) = (
        req.rest.get("reasoning_effort").and_then(Value::as_str),
        rest.contains_key("thinking"),
    ) {
        if let Some((thinking, cap)) =
            super::super::fidelity::claude_thinking(effort, max_tokens, req.max_output_tokens().is_none())
        {
            rest.insert("thinking".into(), thinking);
            max_tokens = cap;
        }
    }
    let out = MessagesRequest {
        model: model.to_string(),
        max_tokens: Some(max_tokens),
        messages,
        system: (!system.is_empty()).then_some(System::Blocks(system)),
        stop_sequences: req.stop.as_ref().map(|s| s.to_vec()),
        stream: req.stream.filter(|s| *s),
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: None,
        tools,
        tool_choice,
        metadata: req.user.as_ref().map(|u| Metadata {
            user_id: Some(u.clone()),
            rest: Map::new(),
        }),
        rest,
    };
    Ok((out, json_mode))
}

fn force_json_tool(
    tools: &mut Option<Vec<ATool>>,
    choice: &mut Option<AToolChoice>,
    schema: Value,
    description: Option<String>,
) {
    tools.get_or_insert_with(Vec::new).push(ATool {
        name: JSON_TOOL.into(),
        description: Some(description.unwrap_or_else(|| "Respond with a JSON object matching this schema.".into())),
        input_schema: schema,
        rest: Map::new(),
    });
    *choice = Some(AToolChoice {
        kind: "tool".into(),
        name: Some(JSON_TOOL.into()),
        disable_parallel_tool_use: None,
    });
}

/// Anthropic requires alternation; OpenAI allows consecutive turns and separate tool messages, so
/// turns of one role are merged (`translate::push`).
impl Turn for AMessage {
    type Block = Block;

    fn new(role: &str, blocks: Vec<Block>) -> Self {
        AMessage {
            role: role.to_string(),
            content: AContent::Blocks(blocks),
        }
    }

    fn role(&self) -> &str {
        &self.role
    }

    fn append(&mut self, blocks: Vec<Block>) {
        let mut merged = std::mem::replace(&mut self.content, AContent::Blocks(Vec::new())).into_blocks();
        merged.extend(blocks);
        self.content = AContent::Blocks(merged);
    }
}

fn text_blocks(c: &Content) -> Vec<Block> {
    match c {
        Content::Text(t) if t.is_empty() => Vec::new(),
        Content::Text(t) => vec![Block::text(t.clone())],
        Content::Parts(parts) => parts
            .iter()
            .filter_map(|p| p.text.clone())
            .filter(|t| !t.is_empty())
            .map(Block::text)
            .collect(),
    }
}

fn user_blocks(m: &Message, i: usize) -> Result<Vec<Block>, ApiError> {
    let Some(c) = &m.content else { return Ok(Vec::new()) };
    let Content::Parts(parts) = c else {
        return Ok(text_blocks(c));
    };
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        match p.kind.as_str() {
            "text" => {
                if let Some(t) = p.text.as_ref().filter(|t| !t.is_empty()) {
                    let mut rest = Map::new();
                    if let Some(cc) = p.rest.get("cache_control") {
                        rest.insert("cache_control".into(), cc.clone());
                    }
                    out.push(Block::Text { text: t.clone(), rest });
                }
            }
            "image_url" => {
                let url = p.image_url.as_ref().ok_or_else(|| {
                    ApiError::invalid("messages", format!("message {i}: image_url part without image_url"))
                })?;
                let source = match url.as_data() {
                    Some((media, data)) => ImageSource::Base64 {
                        media_type: media.to_string(),
                        data: data.to_string(),
                    },
                    None if url.url.starts_with("http://") || url.url.starts_with("https://") => {
                        ImageSource::Url { url: url.url.clone() }
                    }
                    None => {
                        return Err(ApiError::invalid(
                            "messages",
                            format!("message {i}: image_url must be an http(s) URL or a base64 data URL"),
                        ))
                    }
                };
                out.push(Block::Image {
                    source,
                    rest: Map::new(),
                });
            }
            other => return Err(translate::unsupported_part(i, other, "Anthropic")),
        }
    }
    Ok(out)
}

fn assistant_blocks(m: &Message, i: usize) -> Result<Vec<Block>, ApiError> {
    let mut out = Vec::new();
    if let Some(c) = &m.content {
        out.extend(text_blocks(c));
    }
    for tc in m.tool_calls.iter().flatten() {
        let input = tc
            .arguments_json()
            .map_err(|e| ApiError::invalid("messages", format!("message {i}: {e}")))?;
        out.push(Block::ToolUse {
            id: tc.id.clone(),
            name: tc.function.name.clone(),
            input,
            rest: Map::new(),
        });
    }
    Ok(out)
}
