//! Gemini `GenerateContentResponse` → OpenAI chat response; Gemini usage → OpenAI usage; the
//! tool call ids the gateway gives Gemini's function calls.
//!
//! Candidates become choices by their `index` (Gemini serves `n > 1` as `candidateCount`).
//! Function calls carry no id on the Google AI API, so the gateway numbers them (`call_<n>`,
//! stable within a response) and, when the model attached a thought signature, appends it in
//! URL-safe base64 (`call_<n>_ts_<signature>`): OpenAI and Anthropic clients echo tool call ids
//! verbatim, which is how the signature gets back to Gemini on the next turn (`request`).

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};

use super::types::{choice_finish, Candidate, GenerateContentResponse, UsageMetadata};
use crate::api::chat::{
    ChatResponse, Choice, CompletionDetails, Content, FunctionCall, Message, PromptDetails, ToolCall, Usage,
};

const SIGNATURE_MARK: &str = "_ts_";

/// The id of the `n`th function call of a response, carrying the call's thought signature.
pub fn tool_call_id(n: usize, signature: Option<&str>) -> String {
    match signature.filter(|s| !s.is_empty()) {
        None => format!("call_{n}"),
        Some(sig) => {
            let safe: String = sig
                .chars()
                .filter(|c| *c != '=')
                .map(|c| match c {
                    '+' => '-',
                    '/' => '_',
                    c => c,
                })
                .collect();
            format!("call_{n}{SIGNATURE_MARK}{safe}")
        }
    }
}

/// The thought signature (standard base64, padded) folded into a tool call id by `tool_call_id`.
pub fn signature_of(id: &str) -> Option<String> {
    let rest = id.strip_prefix("call_")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let safe = rest[digits..].strip_prefix(SIGNATURE_MARK)?;
    if safe.is_empty() {
        return None;
    }
    let mut sig: String = safe
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while sig.len() % 4 != 0 {
        sig.push('=');
    }
    Some(sig)
}

/// OpenAI usage for Gemini's counts. Google bills thinking tokens as output, so they are part of
/// `completion_tokens` (and reported as `reasoning_tokens`); cached tokens are part of
/// `promptTokenCount`, as OpenAI's `cached_tokens` are part of `prompt_tokens`.
pub fn usage(u: &UsageMetadata) -> Usage {
    let prompt = u.prompt_token_count + u.tool_use_prompt_token_count;
    let completion = u.candidates_token_count + u.thoughts_token_count;
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        prompt_tokens_details: Some(PromptDetails {
            cached_tokens: u.cached_content_token_count,
            cache_write_tokens: 0,
        }),
        completion_tokens_details: Some(CompletionDetails {
            reasoning_tokens: u.thoughts_token_count,
        }),
    }
}

/// An id for a response Google did not give one (`responseId` is usually present).
pub fn generated_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "chatcmpl-gemini-{}-{}",
        crate::time::unix_secs(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The prompt was blocked (`promptFeedback.blockReason`, no candidates).
pub fn blocked(resp: &GenerateContentResponse) -> bool {
    resp.candidates.is_empty() && resp.prompt_feedback.as_ref().is_some_and(|f| f.block_reason.is_some())
}

/// `model` is the upstream model name, used when the answer has no `modelVersion`.
pub fn to_openai(resp: GenerateContentResponse, model: &str, created: u64) -> ChatResponse {
    let is_blocked = blocked(&resp);
    let mut candidates = resp.candidates;
    candidates.sort_by_key(|c| c.index);
    let mut next_call = 0usize;
    let mut choices: Vec<Choice> = candidates.into_iter().map(|c| choice(c, &mut next_call)).collect();
    if choices.is_empty() {
        choices.push(Choice {
            index: 0,
            message: Message {
                role: "assistant".into(),
                content: Some(Content::Text(String::new())),
                ..Default::default()
            },
            finish_reason: Some(if is_blocked { "content_filter" } else { "stop" }.into()),
            logprobs: None,
        });
    }
    ChatResponse {
        id: resp.response_id.unwrap_or_else(generated_id),
        object: "chat.completion".into(),
        created,
        model: resp.model_version.unwrap_or_else(|| model.to_string()),
        choices,
        usage: resp.usage_metadata.as_ref().map(usage),
        rest: Map::new(),
    }
}

fn choice(c: Candidate, next_call: &mut usize) -> Choice {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for part in c.content.map(|c| c.parts).unwrap_or_default() {
        if let Some(call) = part.function_call {
            tool_calls.push(ToolCall {
                id: tool_call_id(*next_call, part.thought_signature.as_deref()),
                kind: "function".into(),
                function: FunctionCall {
                    name: call.name,
                    arguments: arguments(call.args.as_ref()),
                },
            });
            *next_call += 1;
        } else if let Some(t) = part.text {
            if part.thought == Some(true) {
                reasoning.push_str(&t);
            } else {
                text.push_str(&t);
            }
        }
    }
    let finish = choice_finish(c.finish_reason.as_deref().unwrap_or("STOP"), !tool_calls.is_empty());
    // OpenAI sends `content: null` next to tool calls when there is no text.
    let content = (!text.is_empty() || tool_calls.is_empty()).then_some(Content::Text(text));
    Choice {
        index: c.index,
        message: Message {
            role: "assistant".into(),
            content,
            tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
            reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
            ..Default::default()
        },
        finish_reason: Some(finish),
        logprobs: None,
    }
}

/// OpenAI's JSON-text arguments for Gemini's argument object.
pub fn arguments(args: Option<&Value>) -> String {
    match args {
        None | Some(Value::Null) => "{}".into(),
        Some(v) => v.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> ChatResponse {
        to_openai(serde_json::from_value(v).unwrap(), "gemini-x", 5)
    }

    #[test]
    fn signature_ids_round_trip() {
        assert_eq!(tool_call_id(3, None), "call_3");
        assert_eq!(signature_of("call_3"), None);
        for sig in ["CiQBVKhc7a+/Zz==", "AAAA", "AB+/", "ABC="] {
            let id = tool_call_id(12, Some(sig));
            assert!(
                id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
                "{id}"
            );
            assert_eq!(signature_of(&id).as_deref(), Some(sig));
        }
        assert_eq!(signature_of("call_abc_ts_xyz"), None);
        assert_eq!(signature_of("toolu_01_ts_AAAA"), None);
        assert_eq!(signature_of("call_1_ts_"), None);
    }

    #[test]
    fn text_thoughts_calls_and_usage() {
        let r = parse(json!({
            "candidates": [{
                "content": {"role": "model", "parts": [
                    {"text": "Let me think.", "thought": true},
                    {"text": "Checking "},
                    {"text": "the weather."},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "AB+/"},
                    {"functionCall": {"name": "now"}}
                ]},
                "finishReason": "STOP"
            }],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 7,
                "cachedContentTokenCount": 4, "totalTokenCount": 22},
            "modelVersion": "gemini-2.5-flash", "responseId": "resp-1"
        }));
        assert_eq!(r.id, "resp-1");
        assert_eq!(r.model, "gemini-2.5-flash");
        let c = &r.choices[0];
        assert_eq!(c.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(c.message.content, Some(Content::Text("Checking the weather.".into())));
        assert_eq!(c.message.reasoning_content.as_deref(), Some("Let me think."));
        let calls = c.message.tool_calls.as_ref().unwrap();
        assert_eq!(calls[0].id, "call_0_ts_AB-_");
        assert_eq!(calls[0].function.arguments, r#"{"city":"Paris"}"#);
        assert_eq!(calls[1].id, "call_1");
        assert_eq!(calls[1].function.arguments, "{}");
        let u = r.usage.unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens, u.total_tokens), (10, 12, 22));
        assert_eq!((u.cached_tokens(), u.reasoning_tokens()), (4, 7));
    }

    #[test]
    fn candidates_map_to_choices_and_reasons() {
        let r = parse(json!({"candidates": [
            {"index": 1, "content": {"parts": [{"text": "b"}]}, "finishReason": "MAX_TOKENS"},
            {"content": {"parts": [{"text": "a"}]}, "finishReason": "SAFETY"},
            {"index": 2, "content": {"parts": [{"functionCall": {"name": "f", "args": {}}}]}, "finishReason": "STOP"}
        ]}));
        assert_eq!(r.model, "gemini-x");
        assert!(r.id.starts_with("chatcmpl-gemini-"));
        let got: Vec<_> = r
            .choices
            .iter()
            .map(|c| (c.index, c.finish_reason.clone().unwrap(), c.message.content.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, "content_filter".into(), Some(Content::Text("a".into()))),
                (1, "length".into(), Some(Content::Text("b".into()))),
                (2, "tool_calls".into(), None),
            ]
        );
        assert_eq!(r.choices[2].message.tool_calls.as_ref().unwrap()[0].id, "call_0");
    }

    #[test]
    fn blocked_prompt_is_a_content_filter_choice() {
        let r = parse(json!({"promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3}}));
        assert_eq!(r.choices.len(), 1);
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("content_filter"));
        assert_eq!(r.usage.unwrap().prompt_tokens, 3);
    }
}
