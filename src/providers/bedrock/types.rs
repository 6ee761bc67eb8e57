//! Bedrock Runtime Converse API wire types: the request, the response, and the payloads of the
//! `ConverseStream` events (each event-stream frame's JSON, named by its `:event-type` header).
//!
//! Bedrock's unions (content blocks, tool choice, deltas) are JSON objects with exactly one key
//! naming the member, which is serde's externally tagged enum. Lenient like every wire type here:
//! unknown members land in an `Other` variant and unknown fields in `rest`, so a block or field
//! Bedrock adds tomorrow (and the `p` padding field of stream events) does not fail decoding.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConverseRequest {
    pub messages: Vec<BMessage>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub system: Vec<SystemBlock>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_config: Option<InferenceConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<ToolConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_model_request_fields: Option<Map<String, Value>>,
    /// Bedrock-native fields passed through (`guardrailConfig`, `performanceConfig`, …).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BMessage {
    pub role: String,
    pub content: Vec<ContentBlock>,
}

/// A `ContentBlock` union member.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum ContentBlock {
    Text(String),
    Image(ImageBlock),
    ToolUse(ToolUseBlock),
    ToolResult(ToolResultBlock),
    ReasoningContent(ReasoningBlock),
    /// `document`, `video`, `guardContent`, `cachePoint`, `citationsContent`, …
    #[serde(untagged)]
    Other(Value),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageBlock {
    /// `png`, `jpeg`, `gif` or `webp`.
    pub format: String,
    pub source: ImageSource,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum ImageSource {
    /// Base64 of the image bytes (the JSON form of a blob).
    Bytes(String),
    #[serde(untagged)]
    Other(Value),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ToolUseBlock {
    pub tool_use_id: String,
    pub name: String,
    #[serde(default)]
    pub input: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ToolResultBlock {
    pub tool_use_id: String,
    pub content: Vec<ToolResultContent>,
    /// `success` or `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum ToolResultContent {
    Text(String),
    Json(Value),
    #[serde(untagged)]
    Other(Value),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum ReasoningBlock {
    ReasoningText(ReasoningText),
    RedactedContent(String),
    #[serde(untagged)]
    Other(Value),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReasoningText {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum SystemBlock {
    Text(String),
    #[serde(untagged)]
    Other(Value),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InferenceConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
}

impl InferenceConfig {
    pub fn is_empty(&self) -> bool {
        *self == InferenceConfig::default()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ToolConfig {
    pub tools: Vec<BTool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum BTool {
    ToolSpec(ToolSpec),
    #[serde(untagged)]
    Other(Value),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ToolSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub input_schema: InputSchema,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InputSchema {
    pub json: Value,
}

/// `{"auto":{}}`, `{"any":{}}` or `{"tool":{"name":..}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum ToolChoice {
    Auto(Empty),
    Any(Empty),
    Tool(NamedTool),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Empty {}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NamedTool {
    pub name: String,
}

/// A `Converse` answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConverseResponse {
    #[serde(default)]
    pub output: ConverseOutput,
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub usage: Option<BUsage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Value>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ConverseOutput {
    #[serde(default)]
    pub message: Option<BMessage>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_input_tokens: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// ConverseStream event payloads

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BlockStartEvent {
    #[serde(default)]
    pub content_block_index: u32,
    #[serde(default)]
    pub start: Option<BlockStart>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum BlockStart {
    ToolUse(ToolUseStart),
    #[serde(untagged)]
    Other(Value),
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ToolUseStart {
    pub tool_use_id: String,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BlockDeltaEvent {
    #[serde(default)]
    pub content_block_index: u32,
    pub delta: BlockDelta,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum BlockDelta {
    Text(String),
    ToolUse(ToolUseDelta),
    ReasoningContent(ReasoningDelta),
    #[serde(untagged)]
    Other(Value),
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ToolUseDelta {
    /// A fragment of the input's JSON text.
    #[serde(default)]
    pub input: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum ReasoningDelta {
    Text(String),
    Signature(String),
    RedactedContent(String),
    #[serde(untagged)]
    Other(Value),
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MessageStopEvent {
    #[serde(default)]
    pub stop_reason: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetadataEvent {
    #[serde(default)]
    pub usage: Option<BUsage>,
}

/// The body of an error answer or an exception frame.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ErrorBody {
    #[serde(default, alias = "Message")]
    pub message: Option<String>,
}

/// OpenAI finish reason for a Bedrock stop reason.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        // end_turn, stop_sequence, malformed_model_output, malformed_tool_use, and any new one.
        _ => "stop",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn unions_are_single_key_objects() {
        let blocks = vec![
            ContentBlock::Text("hi".into()),
            ContentBlock::ToolUse(ToolUseBlock {
                tool_use_id: "t1".into(),
                name: "f".into(),
                input: json!({"a": 1}),
            }),
            ContentBlock::Image(ImageBlock {
                format: "png".into(),
                source: ImageSource::Bytes("AAAA".into()),
            }),
        ];
        assert_eq!(
            serde_json::to_value(&blocks).unwrap(),
            json!([{"text": "hi"}, {"toolUse": {"toolUseId": "t1", "name": "f", "input": {"a": 1}}}, {"image": {"format": "png", "source": {"bytes": "AAAA"}}}])
        );
        let choice = ToolConfig {
            tools: vec![],
            tool_choice: Some(ToolChoice::Any(Empty {})),
        };
        assert_eq!(
            serde_json::to_value(&choice).unwrap(),
            json!({"tools": [], "toolChoice": {"any": {}}})
        );
        let other: ContentBlock = serde_json::from_value(json!({"cachePoint": {"type": "default"}})).unwrap();
        assert_eq!(other, ContentBlock::Other(json!({"cachePoint": {"type": "default"}})));
    }

    #[test]
    fn stream_payloads_tolerate_padding_and_new_members() {
        let d: BlockDeltaEvent =
            serde_json::from_str(r#"{"contentBlockIndex":2,"delta":{"text":"Hi"},"p":"abcdef"}"#).unwrap();
        assert_eq!(d.delta, BlockDelta::Text("Hi".into()));
        let d: BlockDeltaEvent =
            serde_json::from_str(r#"{"contentBlockIndex":0,"delta":{"citation":{"x":1}}}"#).unwrap();
        assert!(matches!(d.delta, BlockDelta::Other(_)));
        let s: BlockStartEvent = serde_json::from_str(
            r#"{"contentBlockIndex":1,"start":{"toolUse":{"toolUseId":"tooluse_1","name":"get_weather"}},"p":"x"}"#,
        )
        .unwrap();
        assert_eq!(
            s.start,
            Some(BlockStart::ToolUse(ToolUseStart {
                tool_use_id: "tooluse_1".into(),
                name: "get_weather".into()
            }))
        );
        let r: BlockDeltaEvent =
            serde_json::from_str(r#"{"contentBlockIndex":0,"delta":{"reasoningContent":{"text":"hmm"}}}"#).unwrap();
        assert_eq!(
            r.delta,
            BlockDelta::ReasoningContent(ReasoningDelta::Text("hmm".into()))
        );
    }

    #[test]
    fn finish_reasons() {
        for (s, f) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
            ("guardrail_intervened", "content_filter"),
            ("content_filtered", "content_filter"),
            ("something_new", "stop"),
        ] {
            assert_eq!(finish_reason(s), f);
        }
    }
}
