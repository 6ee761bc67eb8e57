//! What current provider APIs refuse per model family, and the request the gateway sends instead.
//! Providers tighten their APIs model by model; a client written for an older model (or for
//! another provider) must not get a 400 for a setting the gateway can carry faithfully in the
//! form the model takes. Each change is logged at debug and listed in the README's Providers
//! section:
//!
//! - **OpenAI reasoning models** (`o1`, `o3`, `o4-mini`, `gpt-5` and later; not `gpt-5-chat`):
//!   `max_tokens` is refused ("Use 'max_completion_tokens' instead"), so it becomes
//!   `max_completion_tokens`; `temperature` and `top_p` are refused at any value but 1, so other
//!   values are dropped.
//! - **Claude Opus 4.1+, Sonnet 4.5+, Haiku 4.5+** (Anthropic, Bedrock, Vertex model ids): "`temperature`
//!   and `top_p` cannot both be specified for this model", so with both, `top_p` is dropped and
//!   `temperature` kept.
//! - **Claude with thinking on** (`thinking.type` `enabled` or `adaptive`): `temperature` is taken
//!   only at 1 and `top_k` not at all, `top_p` only from 0.95: other values are dropped.
//!
//! Model names are read from the target's upstream model (an Azure deployment name says nothing
//! of its model, so Azure targets are left as they are).

use serde_json::{Map, Value};

/// An OpenAI reasoning model, by its name.
pub fn openai_reasoning(model: &str) -> bool {
    let m = model.rsplit('/').next().unwrap_or(model);
    if m.starts_with("gpt-5") {
        return !m.contains("-chat");
    }
    ["o1", "o3", "o4"].iter().any(|p| {
        m.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
    })
}

/// A Claude model that takes only one of `temperature` and `top_p`.
pub fn claude_one_sampler(model: &str) -> bool {
    claude_version(model).is_some_and(|(family, major, minor)| match family {
        _ if major >= 5 => true,
        "opus" => (major, minor) >= (4, 1),
        "sonnet" | "haiku" => (major, minor) >= (4, 5),
        _ => false,
    })
}

/// `claude-{family}-{major}[-{minor}]…` (with any `anthropic.` / region prefix, a `@date` or
/// `-date` suffix) → its family and version. Older names (`claude-3-7-sonnet`) give `None`.
fn claude_version(model: &str) -> Option<(&str, u32, u32)> {
    let at = model.find("claude-")?;
    let mut parts = model[at + "claude-".len()..].split(['-', '@', ':']);
    let family = parts.next()?;
    if !matches!(family, "opus" | "sonnet" | "haiku") {
        return None;
    }
    let major: u32 = parts.next()?.parse().ok()?;
    // A minor version is one or two digits; a date (8 digits) means there is none.
    let minor = parts
        .next()
        .filter(|p| (1..=2).contains(&p.len()))
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    Some((family, major, minor))
}

fn number(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64)
}

/// An OpenAI chat (or legacy completions) body for `model`: true when it was changed.
pub fn openai_body(model: &str, body: &mut Map<String, Value>) -> bool {
    if !openai_reasoning(model) {
        return false;
    }
    let mut changed = false;
    if let Some(v) = body.remove("max_tokens") {
        tracing::debug!(
            model,
            "max_tokens sent as max_completion_tokens: reasoning models refuse it"
        );
        body.entry("max_completion_tokens").or_insert(v);
        changed = true;
    }
    for k in ["temperature", "top_p"] {
        if number(body.get(k)).is_some_and(|x| x != 1.0) {
            tracing::debug!(model, field = k, "dropped: reasoning models take only the default (1)");
            body.remove(k);
            changed = true;
        }
    }
    changed
}

/// The sampling settings of a Claude request, wherever its dialect keeps them.
pub struct Sampling<'a> {
    pub temperature: &'a mut Option<f64>,
    pub top_p: &'a mut Option<f64>,
    pub top_k: &'a mut Option<Value>,
    /// Whether the request turns thinking on.
    pub thinking: bool,
}

/// Applies the Claude rules to `s` for `model`: true when something was dropped.
pub fn claude(model: &str, s: Sampling<'_>) -> bool {
    let mut changed = false;
    if s.thinking {
        if s.temperature.is_some_and(|t| t != 1.0) {
            tracing::debug!(model, "temperature dropped: with thinking on, Claude takes only 1");
            *s.temperature = None;
            changed = true;
        }
        if s.top_k.take().is_some() {
            tracing::debug!(model, "top_k dropped: Claude refuses it with thinking on");
            changed = true;
        }
        if s.top_p.is_some_and(|p| p < 0.95) {
            tracing::debug!(model, "top_p dropped: with thinking on, Claude takes only 0.95 to 1");
            *s.top_p = None;
            changed = true;
        }
    }
    if claude_one_sampler(model) && s.temperature.is_some() && s.top_p.is_some() {
        tracing::debug!(model, "top_p dropped: this model takes temperature or top_p, not both");
        *s.top_p = None;
        changed = true;
    }
    changed
}

/// OpenAI's `reasoning_effort` (chat) / `reasoning.effort` (Responses) as a thinking budget in
/// tokens, for the dialects that take one (Claude's `thinking.budget_tokens`, Gemini 2.5's
/// `thinkingBudget`): `none`/`minimal` is no thinking (`Some(0)`), `low` 1024 (Claude's
/// smallest), `medium` 4096, `high` 16384, `xhigh` 32768. An unknown value is `None`.
pub fn effort_budget(effort: &str) -> Option<u64> {
    match effort {
        "none" | "minimal" => Some(0),
        "low" => Some(1024),
        "medium" => Some(4096),
        "high" => Some(16384),
        "xhigh" => Some(32768),
        _ => None,
    }
}

/// Claude's thinking for an effort, within `max_tokens` (the budget must stay below it, and at
/// 1024 or more): `(thinking, max_tokens)`. When the client set no cap (`default_cap`), the cap
/// grows to leave the answer its default room; a client's own cap is kept and the budget fitted
/// under it, or thinking left off when the cap is too small for any (logged at debug).
pub fn claude_thinking(effort: &str, max_tokens: u64, default_cap: bool) -> Option<(Value, u64)> {
    let budget = effort_budget(effort).filter(|b| *b > 0)?;
    let (budget, cap) = if default_cap {
        (budget, max_tokens + budget)
    } else if max_tokens > 1024 {
        (budget.min(max_tokens - 1), max_tokens)
    } else {
        tracing::debug!(
            effort,
            max_tokens,
            "reasoning effort left off: max_tokens leaves no room for Claude's thinking"
        );
        return None;
    };
    Some((serde_json::json!({"type": "enabled", "budget_tokens": budget}), cap))
}

/// Whether a Messages-shaped `thinking` value turns thinking on.
pub fn thinking_on(thinking: Option<&Value>) -> bool {
    thinking
        .and_then(|t| t.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|t| t == "enabled" || t == "adaptive")
}

/// An Anthropic Messages body (as a client sent it) for `model`: true when it was changed.
pub fn messages_body(model: &str, body: &mut Map<String, Value>) -> bool {
    let mut temperature = number(body.get("temperature"));
    let mut top_p = number(body.get("top_p"));
    let mut top_k = body.get("top_k").cloned();
    let thinking = thinking_on(body.get("thinking"));
    let changed = claude(
        model,
        Sampling {
            temperature: &mut temperature,
            top_p: &mut top_p,
            top_k: &mut top_k,
            thinking,
        },
    );
    if changed {
        for (k, v) in [("temperature", temperature), ("top_p", top_p)] {
            if v.is_none() {
                body.remove(k);
            }
        }
        if top_k.is_none() {
            body.remove("top_k");
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reasoning_models_by_name() {
        for m in [
            "o1",
            "o1-mini",
            "o3",
            "o3-mini-2025-01-31",
            "o4-mini",
            "gpt-5",
            "gpt-5-mini",
            "gpt-5.1",
            "openai/o3",
        ] {
            assert!(openai_reasoning(m), "{m}");
        }
        for m in ["gpt-4o", "gpt-4.1-mini", "gpt-5-chat-latest", "o1x", "omni", "mock-gpt"] {
            assert!(!openai_reasoning(m), "{m}");
        }
    }

    #[test]
    fn claude_models_that_take_one_sampler() {
        for m in [
            "claude-sonnet-4-5",
            "claude-sonnet-4-5-20250929",
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
            "us.anthropic.claude-opus-4-1-20250805-v1:0",
            "claude-haiku-4-5@20251001",
            "claude-opus-4-7",
            "claude-sonnet-4-6",
            "claude-opus-5",
        ] {
            assert!(claude_one_sampler(m), "{m}");
        }
        for m in [
            "claude-sonnet-4-20250514",
            "claude-opus-4-20250514",
            "claude-3-7-sonnet-20250219",
            "claude-3-5-haiku",
            "anthropic.claude-mock-v1",
            "claude-mock",
        ] {
            assert!(!claude_one_sampler(m), "{m}");
        }
    }

    #[test]
    fn effort_becomes_a_thinking_budget_that_fits_under_the_cap() {
        assert_eq!(effort_budget("minimal"), Some(0));
        assert_eq!(effort_budget("turbo"), None);
        let (t, cap) = claude_thinking("medium", 4096, true).unwrap();
        assert_eq!((t["budget_tokens"].as_u64(), cap), (Some(4096), 8192));
        let (t, cap) = claude_thinking("high", 3000, false).unwrap();
        assert_eq!((t["budget_tokens"].as_u64(), cap), (Some(2999), 3000));
        assert!(
            claude_thinking("high", 1000, false).is_none(),
            "no room for Claude's smallest budget"
        );
        assert!(claude_thinking("none", 8000, false).is_none());
    }

    #[test]
    fn bodies_are_changed_only_where_the_model_refuses() {
        let mut b = json!({"max_tokens": 9, "temperature": 0.3, "top_p": 1})
            .as_object()
            .unwrap()
            .clone();
        assert!(openai_body("o3", &mut b));
        assert_eq!(Value::Object(b), json!({"max_completion_tokens": 9, "top_p": 1}));
        let mut b = json!({"max_tokens": 9, "temperature": 0.3})
            .as_object()
            .unwrap()
            .clone();
        assert!(!openai_body("gpt-4o", &mut b));

        let mut b = json!({"temperature": 0.5, "top_p": 0.9}).as_object().unwrap().clone();
        assert!(messages_body("claude-sonnet-4-5", &mut b));
        assert_eq!(Value::Object(b), json!({"temperature": 0.5}));
        let mut b = json!({"temperature": 0.5, "top_p": 0.9}).as_object().unwrap().clone();
        assert!(!messages_body("claude-sonnet-4-20250514", &mut b));

        let mut b = json!({"temperature": 0.5, "top_k": 5, "top_p": 0.97, "thinking": {"type": "enabled", "budget_tokens": 2048}})
            .as_object()
            .unwrap()
            .clone();
        assert!(messages_body("claude-sonnet-4-20250514", &mut b));
        assert_eq!(b.get("temperature"), None);
        assert_eq!(b.get("top_k"), None);
        assert_eq!(b["top_p"], 0.97);
    }
}
