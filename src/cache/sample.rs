//! A sample answer for the cache's tests.

use crate::api::chat::{ChatResponse, Choice, Content, FunctionCall, Message, ToolCall, Usage};

/// One choice with `text` (none when empty) and `calls` as (id, name, arguments); usage 12 + 34.
pub fn answer(text: &str, calls: &[(&str, &str, &str)]) -> ChatResponse {
    let tool_calls: Vec<ToolCall> = calls
        .iter()
        .map(|(id, name, args)| ToolCall {
            id: (*id).into(),
            kind: "function".into(),
            function: FunctionCall {
                name: (*name).into(),
                arguments: (*args).into(),
            },
        })
        .collect();
    ChatResponse {
        id: "chatcmpl-cached".into(),
        object: "chat.completion".into(),
        created: 1_700_000_000,
        model: "gpt".into(),
        choices: vec![Choice {
            index: 0,
            message: Message {
                role: "assistant".into(),
                content: (!text.is_empty()).then(|| Content::Text(text.into())),
                tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
                ..Message::default()
            },
            finish_reason: Some(if calls.is_empty() { "stop" } else { "tool_calls" }.into()),
            logprobs: None,
        }],
        usage: Some(Usage {
            prompt_tokens: 12,
            completion_tokens: 34,
            total_tokens: 46,
            ..Usage::default()
        }),
        ..ChatResponse::default()
    }
}
