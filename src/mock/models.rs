//! What the real APIs refuse per model, as strictly as they refuse it, so the gateway's own rules
//! (`providers::fidelity`) are tested against an oracle written apart from them:
//!
//! - OpenAI reasoning models (`o1`, `o3`, `o4-mini`, `gpt-5…` but not `gpt-5-chat…`): `max_tokens`
//!   is a 400 `unsupported_parameter`, `temperature` / `top_p` other than 1 a 400
//!   `unsupported_value`, with OpenAI's messages.
//! - Claude Opus 4.1/4.5/4.6/4.7, Sonnet 4.5/4.6, Haiku 4.5 (by name, on Anthropic and Bedrock):
//!   `temperature` with `top_p` is a 400.
//! - Claude with thinking on: `temperature` other than 1, any `top_k`, `top_p` below 0.95 are a 400.

use serde_json::{Map, Value};

/// OpenAI's refusal of `obj` (a chat or completions body), if its model refuses something in it.
pub fn openai(obj: &Map<String, Value>) -> Option<(String, &'static str, &'static str)> {
    let model = obj.get("model").and_then(Value::as_str).unwrap_or_default();
    let reasoning = ["o1", "o3", "o4-mini"]
        .iter()
        .any(|p| model == *p || model.starts_with(&format!("{p}-")))
        || (model.starts_with("gpt-5") && !model.contains("chat"));
    if !reasoning {
        return None;
    }
    if obj.contains_key("max_tokens") {
        return Some((
            "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.".into(),
            "max_tokens",
            "unsupported_parameter",
        ));
    }
    for (k, name) in [("temperature", "temperature"), ("top_p", "top_p")] {
        if let Some(v) = obj.get(k).and_then(Value::as_f64).filter(|v| *v != 1.0) {
            return Some((
                format!("Unsupported value: '{name}' does not support {v} with this model. Only the default (1) value is supported."),
                name,
                "unsupported_value",
            ));
        }
    }
    None
}

const ONE_SAMPLER: [&str; 7] = [
    "claude-opus-4-1",
    "claude-opus-4-5",
    "claude-opus-4-6",
    "claude-opus-4-7",
    "claude-sonnet-4-5",
    "claude-sonnet-4-6",
    "claude-haiku-4-5",
];

/// Anthropic's refusal of a Claude request's sampling settings, if its model refuses them.
pub fn claude(
    model: &str,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: bool,
    thinking: Option<&Value>,
) -> Option<String> {
    let thinking = thinking
        .and_then(|t| t.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|t| t == "enabled" || t == "adaptive");
    if thinking {
        if temperature.is_some_and(|t| t != 1.0) {
            return Some("`temperature` may only be set to 1 when thinking is enabled or in adaptive mode.".into());
        }
        if top_k {
            return Some("`top_k` is not supported when thinking is enabled.".into());
        }
        if top_p.is_some_and(|p| p < 0.95) {
            return Some("`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled.".into());
        }
    }
    if temperature.is_some() && top_p.is_some() && ONE_SAMPLER.iter().any(|m| model.contains(m)) {
        return Some("`temperature` and `top_p` cannot both be specified for this model. Please use only one.".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn openai_reasoning_models_refuse_what_openai_refuses() {
        assert_eq!(
            openai(&obj(json!({"model": "o3", "max_tokens": 5}))).unwrap().1,
            "max_tokens"
        );
        assert_eq!(
            openai(&obj(json!({"model": "gpt-5-mini", "temperature": 0.3})))
                .unwrap()
                .2,
            "unsupported_value"
        );
        assert!(openai(&obj(
            json!({"model": "o3", "max_completion_tokens": 5, "temperature": 1})
        ))
        .is_none());
        assert!(openai(&obj(json!({"model": "gpt-4o", "max_tokens": 5, "temperature": 0.3}))).is_none());
    }

    #[test]
    fn newer_claude_models_take_one_sampler_and_thinking_its_own() {
        assert!(claude("claude-sonnet-4-5-20250929", Some(0.5), Some(0.9), false, None).is_some());
        assert!(claude(
            "anthropic.claude-opus-4-1-20250805-v1:0",
            Some(0.5),
            Some(0.9),
            false,
            None
        )
        .is_some());
        assert!(claude("claude-sonnet-4-5", Some(0.5), None, false, None).is_none());
        assert!(claude("claude-3-7-sonnet", Some(0.5), Some(0.9), false, None).is_none());
        let on = json!({"type": "enabled", "budget_tokens": 1024});
        assert!(claude("claude-3-7-sonnet", Some(0.5), None, false, Some(&on)).is_some());
        assert!(claude("claude-3-7-sonnet", None, None, true, Some(&on)).is_some());
        assert!(claude("claude-3-7-sonnet", Some(1.0), Some(0.96), false, Some(&on)).is_none());
    }
}
