//! Bedrock Converse response → OpenAI chat response, and Bedrock usage → OpenAI usage.

use serde_json::Map;

use super::request::{JsonMode, JSON_TOOL};
use super::types::{finish_reason, BUsage, ContentBlock, ConverseResponse, ReasoningBlock};
use crate::api::chat::{ChatResponse, Choice, Content, FunctionCall, Message, ToolCall, Usage};

/// OpenAI's `prompt_tokens` includes cached tokens; Bedrock reports cache reads and writes
/// separately from `inputTokens` (as Anthropic does). `totalTokens` is recomputed so the three
/// OpenAI numbers always add up.
pub fn usage(u: &BUsage) -> Usage {
    let read = u.cache_read_input_tokens.unwrap_or(0);
    let write = u.cache_write_input_tokens.unwrap_or(0);
    Usage::with_cache(u.input_tokens, u.output_tokens, read, write)
}

/// `id` and `model` come from the gateway: a Converse answer carries neither.
pub fn to_openai(resp: ConverseResponse, json_mode: JsonMode, id: String, model: String, created: u64) -> ChatResponse {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    let mut json_answer = false;
    for block in resp.output.message.map(|m| m.content).unwrap_or_default() {
        match block {
            ContentBlock::Text(t) => text.push_str(&t),
            ContentBlock::ReasoningContent(ReasoningBlock::ReasoningText(r)) => reasoning.push_str(&r.text),
            ContentBlock::ToolUse(t) => {
                if json_mode.0 && t.name == JSON_TOOL {
                    text = t.input.to_string();
                    json_answer = true;
                } else {
                    tool_calls.push(ToolCall {
                        id: t.tool_use_id,
                        kind: "function".into(),
                        function: FunctionCall {
                            name: t.name,
                            arguments: t.input.to_string(),
                        },
                    });
                }
            }
            ContentBlock::ReasoningContent(_)
            | ContentBlock::Image(_)
            | ContentBlock::ToolResult(_)
            | ContentBlock::Other(_) => {}
        }
    }
    let mut finish = resp.stop_reason.as_deref().map_or("stop", finish_reason);
    if json_answer && finish == "tool_calls" {
        finish = "stop";
    }
    let message = Message {
        role: "assistant".into(),
        content: Some(Content::Text(text)),
        tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
        reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
        ..Default::default()
    };
    ChatResponse {
        id,
        object: "chat.completion".into(),
        created,
        model,
        choices: vec![Choice {
            index: 0,
            message,
            finish_reason: Some(finish.to_string()),
            logprobs: None,
        }],
        usage: resp.usage.as_ref().map(usage),
        rest: Map::new(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(v: serde_json::Value, json_mode: bool) -> ChatResponse {
        to_openai(
            serde_json::from_value(v).unwrap(),
            JsonMode(json_mode),
            "id1".into(),
            "m".into(),
            7,
        )
    }

    #[test]
    fn text_tools_reasoning_and_usage() {
        let r = parse(
            json!({
                "output": {"message": {"role": "assistant", "content": [
                    {"reasoningContent": {"reasoningText": {"text": "think", "signature": "s"}}},
                    {"text": "Let me check."},
                    {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}}]}},
                "stopReason": "tool_use",
                "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 25, "cacheReadInputTokens": 8, "cacheWriteInputTokens": 2},
                "metrics": {"latencyMs": 120}
            }),
            false,
        );
        let m = &r.choices[0].message;
        assert_eq!(m.content, Some(Content::Text("Let me check.".into())));
        assert_eq!(m.reasoning_content.as_deref(), Some("think"));
        let tc = &m.tool_calls.as_ref().unwrap()[0];
        assert_eq!(
            (tc.id.as_str(), tc.function.name.as_str()),
            ("tooluse_1", "get_weather")
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&tc.function.arguments).unwrap(),
            json!({"city": "Paris"})
        );
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("tool_calls"));
        let u = r.usage.unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens, u.total_tokens), (20, 5, 25));
        assert_eq!(
            (u.cached_tokens(), u.prompt_tokens_details.unwrap().cache_write_tokens),
            (8, 2)
        );
        assert_eq!((r.id.as_str(), r.model.as_str(), r.created), ("id1", "m", 7));
    }

    #[test]
    fn json_mode_tool_becomes_text() {
        let r = parse(
            json!({"output": {"message": {"role": "assistant", "content": [
                {"toolUse": {"toolUseId": "t", "name": JSON_TOOL, "input": {"a": 1}}}]}},
                "stopReason": "tool_use", "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}}),
            true,
        );
        assert_eq!(r.choices[0].message.content, Some(Content::Text("{\"a\":1}".into())));
        assert_eq!(r.choices[0].message.tool_calls, None);
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("stop"));
    }

    #[test]
    fn stop_reasons_map() {
        for (s, f) in [
            ("max_tokens", "length"),
            ("guardrail_intervened", "content_filter"),
            ("end_turn", "stop"),
        ] {
            let r = parse(
                json!({"output": {"message": {"role": "assistant", "content": [{"text": "x"}]}}, "stopReason": s}),
                false,
            );
            assert_eq!(r.choices[0].finish_reason.as_deref(), Some(f));
            assert_eq!(r.usage, None);
        }
    }
}
