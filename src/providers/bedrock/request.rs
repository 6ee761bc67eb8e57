//! OpenAI chat request (canonical) → Bedrock Converse request.
//!
//! What a faithful translation must handle: system prompts are a top-level list; roles are only
//! `user` and `assistant` and consecutive turns of one role are merged (tool results are user
//! turns); tool arguments are JSON values, not JSON text; images must be inline bytes (Bedrock
//! does not fetch URLs); blank text blocks are rejected by Bedrock, so they are dropped; a
//! history with tool blocks needs `toolConfig` even when the client says `tool_choice: "none"`.
//! JSON mode is emulated as for Anthropic: a forced tool whose input schema is the requested
//! schema, turned back into message text on the way out (`JsonMode`).

use serde_json::{json, Map, Value};

use super::types::{
    BMessage, BTool, ContentBlock, ConverseRequest, Empty, ImageBlock, ImageSource, InferenceConfig, InputSchema,
    NamedTool, SystemBlock, ToolChoice, ToolConfig, ToolResultBlock, ToolResultContent, ToolSpec, ToolUseBlock,
};
use crate::api::chat::{ChatRequest, Content, Message};
use crate::api::ApiError;
pub use crate::providers::anthropic::request::{JsonMode, JSON_TOOL};
use crate::providers::translate::{self, push, Role, ToolChoiceOf, Turn};

/// Bedrock-native top-level fields a client may send through the OpenAI API; passed as is.
const NATIVE_FIELDS: [&str; 5] = [
    "guardrailConfig",
    "performanceConfig",
    "promptVariables",
    "requestMetadata",
    "additionalModelResponseFieldPaths",
];
/// The text of a tool result whose content was empty (Bedrock rejects blank text blocks).
pub const EMPTY_TOOL_RESULT: &str = "(no output)";
/// Model-specific fields that go in `additionalModelRequestFields` (e.g. Claude's `thinking`).
const MODEL_FIELDS: [&str; 2] = ["thinking", "top_k"];

pub fn to_converse(req: &ChatRequest) -> Result<(ConverseRequest, JsonMode), ApiError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(ApiError::invalid(
            "n",
            "this model's provider (Bedrock) returns one choice; n must be 1",
        ));
    }
    let mut system = Vec::new();
    let mut messages: Vec<BMessage> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        match translate::role(m, i, &["tool"])? {
            Role::System => {
                if let Some(c) = &m.content {
                    system.extend(texts(c).into_iter().map(SystemBlock::Text));
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
                // Bedrock rejects a blank text block, here as anywhere; a tool that printed nothing
                // still needs a result, so it gets a placeholder.
                let text = if text.trim().is_empty() {
                    EMPTY_TOOL_RESULT.to_string()
                } else {
                    text
                };
                let block = ContentBlock::ToolResult(ToolResultBlock {
                    tool_use_id: id,
                    content: vec![ToolResultContent::Text(text)],
                    status: None,
                });
                push(&mut messages, "user", vec![block]);
            }
        }
    }
    let messages = translate::non_empty(messages, "at least one user or assistant message is required")?;
    let history_has_tools = messages.iter().any(|m| {
        m.content
            .iter()
            .any(|b| matches!(b, ContentBlock::ToolUse(_) | ContentBlock::ToolResult(_)))
    });

    let mut tools: Vec<BTool> = req
        .tools
        .iter()
        .flatten()
        .map(|t| {
            BTool::ToolSpec(ToolSpec {
                name: t.function.name.clone(),
                description: t.function.description.clone().filter(|d| !d.is_empty()),
                input_schema: InputSchema {
                    json: t
                        .function
                        .parameters
                        .clone()
                        .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                },
            })
        })
        .collect();
    let mut choice_none = false;
    let mut tool_choice = match req.tool_choice.as_ref().map(translate::tool_choice).transpose()? {
        None => None,
        Some(ToolChoiceOf::Auto) => Some(ToolChoice::Auto(Empty {})),
        Some(ToolChoiceOf::Required) => Some(ToolChoice::Any(Empty {})),
        Some(ToolChoiceOf::None) => {
            choice_none = true;
            None
        }
        Some(ToolChoiceOf::Function(name)) => Some(ToolChoice::Tool(NamedTool { name: name.to_string() })),
    };
    if choice_none && !history_has_tools {
        // Bedrock has no "none": offering no tools is the faithful translation. With tool blocks
        // in the history Bedrock insists on toolConfig, so the tools stay and only the choice goes.
        tools.clear();
    }
    if req.parallel_tool_calls.is_some() {
        tracing::debug!("dropping `parallel_tool_calls`: the Converse API has no such setting");
    }

    let mut json_mode = JsonMode(false);
    if let Some(rf) = &req.response_format {
        let schema = match rf.get("type").and_then(Value::as_str) {
            Some("text") | None => None,
            Some("json_object") => Some((json!({"type": "object"}), None)),
            Some("json_schema") => Some((
                rf.pointer("/json_schema/schema")
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object"})),
                rf.pointer("/json_schema/description")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            )),
            Some(other) => return Err(ApiError::invalid("response_format", format!("unknown type {other:?}"))),
        };
        if let Some((schema, description)) = schema {
            json_mode = JsonMode(true);
            tools.push(BTool::ToolSpec(ToolSpec {
                name: JSON_TOOL.into(),
                description: Some(
                    description.unwrap_or_else(|| "Respond with a JSON object matching this schema.".into()),
                ),
                input_schema: InputSchema { json: schema },
            }));
            tool_choice = Some(ToolChoice::Tool(NamedTool { name: JSON_TOOL.into() }));
        }
    }
    let tool_config = (!tools.is_empty()).then_some(ToolConfig { tools, tool_choice });

    let inference = InferenceConfig {
        max_tokens: req.max_output_tokens(),
        temperature: req.temperature,
        top_p: req.top_p,
        stop_sequences: req.stop.as_ref().map(|s| s.to_vec()).filter(|s| !s.is_empty()),
    };

    let mut additional: Map<String, Value> = Map::new();
    let mut rest = Map::new();
    for (k, v) in &req.rest {
        if NATIVE_FIELDS.contains(&k.as_str()) {
            rest.insert(k.clone(), v.clone());
        } else if MODEL_FIELDS.contains(&k.as_str()) {
            additional.insert(k.clone(), v.clone());
        } else if k == "additionalModelRequestFields" {
            if let Value::Object(m) = v {
                additional.extend(m.clone());
            }
        } else {
            tracing::debug!(field = %k, "dropping a field the Converse API does not accept");
        }
    }
    for (field, set) in [("seed", req.seed.is_some()), ("user", req.user.is_some())] {
        if set {
            tracing::debug!(field, "dropping a field the Converse API does not accept");
        }
    }
    let out = ConverseRequest {
        messages,
        system,
        inference_config: (!inference.is_empty()).then_some(inference),
        tool_config,
        additional_model_request_fields: (!additional.is_empty()).then_some(additional),
        rest,
    };
    Ok((out, json_mode))
}

/// Converse requires alternation: turns of one role are merged (`translate::push`).
impl Turn for BMessage {
    type Block = ContentBlock;

    fn new(role: &str, blocks: Vec<ContentBlock>) -> Self {
        BMessage {
            role: role.to_string(),
            content: blocks,
        }
    }

    fn role(&self) -> &str {
        &self.role
    }

    fn append(&mut self, blocks: Vec<ContentBlock>) {
        self.content.extend(blocks);
    }
}

/// The non-blank texts of a content.
fn texts(c: &Content) -> Vec<String> {
    match c {
        Content::Text(t) => vec![t.clone()],
        Content::Parts(parts) => parts.iter().filter_map(|p| p.text.clone()).collect(),
    }
    .into_iter()
    .filter(|t| !t.trim().is_empty())
    .collect()
}

/// Bedrock's image `format` for a media type.
fn image_format(media: &str) -> Option<&'static str> {
    match media.to_ascii_lowercase().as_str() {
        "image/png" => Some("png"),
        "image/jpeg" | "image/jpg" => Some("jpeg"),
        "image/gif" => Some("gif"),
        "image/webp" => Some("webp"),
        _ => None,
    }
}

fn user_blocks(m: &Message, i: usize) -> Result<Vec<ContentBlock>, ApiError> {
    let Some(c) = &m.content else { return Ok(Vec::new()) };
    let Content::Parts(parts) = c else {
        return Ok(texts(c).into_iter().map(ContentBlock::Text).collect());
    };
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        match p.kind.as_str() {
            "text" => {
                if let Some(t) = p.text.as_ref().filter(|t| !t.trim().is_empty()) {
                    out.push(ContentBlock::Text(t.clone()));
                }
            }
            "image_url" => {
                let url = p.image_url.as_ref().ok_or_else(|| {
                    ApiError::invalid("messages", format!("message {i}: image_url part without image_url"))
                })?;
                let Some((media, data)) = url.as_data() else {
                    return Err(ApiError::invalid(
                        "messages",
                        format!(
                            "message {i}: Bedrock does not fetch image URLs; send the image inline as a \
                             base64 data URL (data:image/png;base64,...)"
                        ),
                    ));
                };
                let format = image_format(media).ok_or_else(|| {
                    ApiError::invalid(
                        "messages",
                        format!("message {i}: image type {media:?} is not supported by Bedrock (png, jpeg, gif, webp)"),
                    )
                })?;
                out.push(ContentBlock::Image(ImageBlock {
                    format: format.into(),
                    source: ImageSource::Bytes(data.to_string()),
                }));
            }
            other => return Err(translate::unsupported_part(i, other, "Bedrock")),
        }
    }
    Ok(out)
}

fn assistant_blocks(m: &Message, i: usize) -> Result<Vec<ContentBlock>, ApiError> {
    let mut out: Vec<ContentBlock> = m
        .content
        .as_ref()
        .map(texts)
        .unwrap_or_default()
        .into_iter()
        .map(ContentBlock::Text)
        .collect();
    if m.reasoning_content.is_some() {
        // Replaying reasoning needs the provider's signature, which OpenAI's format does not keep.
        tracing::debug!("dropping an assistant message's reasoning_content from the history");
    }
    for tc in m.tool_calls.iter().flatten() {
        let input = tc
            .arguments_json()
            .map_err(|e| ApiError::invalid("messages", format!("message {i}: {e}")))?;
        out.push(ContentBlock::ToolUse(ToolUseBlock {
            tool_use_id: tc.id.clone(),
            name: tc.function.name.clone(),
            input,
        }));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn conv(v: Value) -> Result<(Value, JsonMode), ApiError> {
        let req: ChatRequest = serde_json::from_value(v).unwrap();
        to_converse(&req).map(|(r, j)| (serde_json::to_value(r).unwrap(), j))
    }

    #[test]
    fn roles_merge_and_tools_round_trip() {
        let (out, jm) = conv(json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": [{"type": "text", "text": "and kind"}]},
                {"role": "user", "content": "hi"},
                {"role": "user", "content": [{"type": "text", "text": "there"}, {"type": "text", "text": "  "}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": ""}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "one"},
                {"role": "tool", "tool_call_id": "call_2", "content": ""}
            ],
            "tools": [{"type": "function", "function": {"name": "f", "description": "F", "parameters": {"type": "object"}}},
                      {"type": "function", "function": {"name": "g"}}],
            "tool_choice": "none",
            "max_tokens": 50, "temperature": 0.5, "top_p": 0.9, "stop": "END", "seed": 3, "logit_bias": {}
        }))
        .unwrap();
        assert!(!jm.0);
        assert_eq!(
            out,
            json!({
                "system": [{"text": "be brief"}, {"text": "and kind"}],
                "messages": [
                    {"role": "user", "content": [{"text": "hi"}, {"text": "there"}]},
                    {"role": "assistant", "content": [
                        {"toolUse": {"toolUseId": "call_1", "name": "f", "input": {"x": 1}}},
                        {"toolUse": {"toolUseId": "call_2", "name": "g", "input": {}}}]},
                    {"role": "user", "content": [
                        {"toolResult": {"toolUseId": "call_1", "content": [{"text": "one"}]}},
                        {"toolResult": {"toolUseId": "call_2", "content": [{"text": EMPTY_TOOL_RESULT}]}}]}
                ],
                "inferenceConfig": {"maxTokens": 50, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]},
                // "none" with tool blocks in the history: tools kept (Bedrock requires them), no choice.
                "toolConfig": {"tools": [
                    {"toolSpec": {"name": "f", "description": "F", "inputSchema": {"json": {"type": "object"}}}},
                    {"toolSpec": {"name": "g", "inputSchema": {"json": {"type": "object", "properties": {}}}}}]}
            })
        );
    }

    #[test]
    fn tool_choice_maps_and_none_without_history_drops_tools() {
        let base = |choice: Value| {
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                   "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": choice})
        };
        let choice = |c: Value| conv(base(c)).unwrap().0.pointer("/toolConfig/toolChoice").cloned();
        assert_eq!(choice(json!("auto")), Some(json!({"auto": {}})));
        assert_eq!(choice(json!("required")), Some(json!({"any": {}})));
        assert_eq!(
            choice(json!({"type": "function", "function": {"name": "f"}})),
            Some(json!({"tool": {"name": "f"}}))
        );
        assert_eq!(conv(base(json!("none"))).unwrap().0.get("toolConfig"), None);
        assert!(conv(base(json!("sometimes"))).is_err());
    }

    #[test]
    fn images_must_be_inline() {
        let img = |url: &str| {
            conv(json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "what is this"},
                {"type": "image_url", "image_url": {"url": url}}]}]}))
        };
        let (out, _) = img("data:image/jpeg;base64,QUJD").unwrap();
        assert_eq!(
            out["messages"][0]["content"][1],
            json!({"image": {"format": "jpeg", "source": {"bytes": "QUJD"}}})
        );
        let e = img("https://example.com/cat.png").unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.to_string().contains("does not fetch image URLs"), "{e}");
        assert!(img("data:image/tiff;base64,QUJD").is_err());
    }

    #[test]
    fn json_mode_forces_a_tool() {
        let (out, jm) = conv(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}}}))
        .unwrap();
        assert!(jm.0);
        assert_eq!(out["toolConfig"]["toolChoice"], json!({"tool": {"name": JSON_TOOL}}));
        assert_eq!(
            out["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["properties"]["a"]["type"],
            "string"
        );
        let (_, jm) = conv(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "text"}}),
        )
        .unwrap();
        assert!(!jm.0);
    }

    #[test]
    fn n_and_bad_input_are_rejected_and_native_fields_pass() {
        let e = conv(json!({"model": "m", "n": 2, "messages": [{"role": "user", "content": "hi"}]})).unwrap_err();
        assert!(matches!(e, ApiError::InvalidField { field: "n", .. }));
        assert!(conv(json!({"model": "m", "messages": [{"role": "system", "content": "only"}]})).is_err());
        assert!(conv(json!({"model": "m", "messages": [{"role": "critic", "content": "x"}]})).is_err());
        let (out, _) = conv(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "guardrailConfig": {"guardrailIdentifier": "g", "guardrailVersion": "1"},
            "thinking": {"type": "enabled", "budget_tokens": 1024}, "reasoning_effort": "low"}))
        .unwrap();
        assert_eq!(out["guardrailConfig"]["guardrailIdentifier"], "g");
        assert_eq!(out["additionalModelRequestFields"]["thinking"]["budget_tokens"], 1024);
        assert!(out.get("reasoning_effort").is_none());
        assert!(out.get("inferenceConfig").is_none());
    }
}
