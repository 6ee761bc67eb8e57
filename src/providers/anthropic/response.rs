//! Anthropic Messages response → OpenAI chat response, and Anthropic usage → OpenAI usage.

use serde_json::Map;

use super::request::{JsonMode, JSON_TOOL};
use crate::api::anthropic::{finish_reason, AUsage, Block, MessagesResponse};
use crate::api::chat::{ChatResponse, Choice, CompletionDetails, FunctionCall, Message, ToolCall, Usage};

/// OpenAI's `prompt_tokens` includes cached tokens; Anthropic reports cache reads and writes
/// separately from `input_tokens`.
pub fn usage(u: &AUsage) -> Usage {
    let read = u.cache_read_input_tokens.unwrap_or(0);
    let write = u.cache_creation_input_tokens.unwrap_or(0);
    Usage {
        completion_tokens_details: Some(CompletionDetails { reasoning_tokens: 0 }),
        ..Usage::with_cache(u.input_tokens, u.output_tokens, read, write)
    }
}

pub fn to_openai(resp: MessagesResponse, json_mode: JsonMode, created: u64) -> ChatResponse {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    let mut json_answer = false;
    for block in resp.content {
        match block {
            Block::Text { text: t, .. } => text.push_str(&t),
            Block::Thinking { thinking, .. } => reasoning.push_str(&thinking),
            Block::ToolUse { id, name, input, .. } => {
                if json_mode.0 && name == JSON_TOOL {
                    text = input.to_string();
                    json_answer = true;
                } else {
                    tool_calls.push(ToolCall {
                        id,
                        kind: "function".into(),
                        function: FunctionCall {
                            name,
                            arguments: input.to_string(),
                        },
                    });
                }
            }
            Block::Image { .. } | Block::ToolResult { .. } | Block::RedactedThinking { .. } | Block::Other(_) => {}
        }
    }
    let mut finish = resp
        .stop_reason
        .as_deref()
        .map(finish_reason)
        .unwrap_or("stop")
        .to_string();
    if json_answer && finish == "tool_calls" {
        finish = "stop".into();
    }
    let message = Message {
        role: "assistant".into(),
        content: Some(crate::api::chat::Content::Text(text)),
        tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
        reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
        ..Default::default()
    };
    ChatResponse {
        id: resp.id,
        object: "chat.completion".into(),
        created,
        model: resp.model,
        choices: vec![Choice {
            index: 0,
            message,
            finish_reason: Some(finish),
            logprobs: None,
        }],
        usage: Some(usage(&resp.usage)),
        rest: Map::new(),
    }
}
