//! What the translating dialects (Anthropic, Gemini, Bedrock) share when they render the canonical
//! request: each canonical role mapped to a kind of turn, turns that alternate (consecutive turns
//! of one role merged, empty ones dropped: all three reject both), the `tool_choice` read once,
//! and the client errors for what a dialect has no place for.

use serde_json::Value;

use crate::api::chat::Message;
use crate::api::ApiError;

/// A dialect's conversation turn: a role and its content blocks.
pub trait Turn {
    type Block;
    fn new(role: &str, blocks: Vec<Self::Block>) -> Self;
    fn role(&self) -> &str;
    fn append(&mut self, blocks: Vec<Self::Block>);
}

/// A canonical message, by what the turn-based dialects make of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `system` or `developer`: the dialect's top-level system prompt.
    System,
    User,
    Assistant,
    /// A tool result (a user turn in every dialect).
    Tool,
}

/// The role of message `index`; `tool_roles` are the role names the dialect reads as tool results.
pub fn role(m: &Message, index: usize, tool_roles: &[&str]) -> Result<Role, ApiError> {
    match m.role.as_str() {
        "system" | "developer" => Ok(Role::System),
        "user" => Ok(Role::User),
        "assistant" => Ok(Role::Assistant),
        r if tool_roles.contains(&r) => Ok(Role::Tool),
        other => Err(ApiError::invalid(
            "messages",
            format!("unsupported role {other:?} at index {index}"),
        )),
    }
}

/// Appends `blocks` as a turn of `role`: into the last turn when it has the same role, as a new
/// turn otherwise, and not at all when there are none.
pub fn push<T: Turn>(turns: &mut Vec<T>, role: &str, blocks: Vec<T::Block>) {
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some(last) if last.role() == role => last.append(blocks),
        _ => turns.push(T::new(role, blocks)),
    }
}

/// The turns, or `messages` invalid with `why` when the conversation rendered to none (it had
/// only system messages, or only empty ones).
pub fn non_empty<T>(turns: Vec<T>, why: &'static str) -> Result<Vec<T>, ApiError> {
    if turns.is_empty() {
        return Err(ApiError::invalid("messages", why));
    }
    Ok(turns)
}

/// The canonical `tool_choice`, read; each dialect says it in its own terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolChoiceOf<'a> {
    Auto,
    /// `required`: some tool must be called.
    Required,
    None,
    /// `{"type":"function","function":{"name":..}}`: this tool must be called.
    Function(&'a str),
}

/// Reads a `tool_choice` value: `"auto"`, `"required"`, `"none"` or a named function.
pub fn tool_choice(v: &Value) -> Result<ToolChoiceOf<'_>, ApiError> {
    match v {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(ToolChoiceOf::Auto),
            "required" => Ok(ToolChoiceOf::Required),
            "none" => Ok(ToolChoiceOf::None),
            other => Err(ApiError::invalid("tool_choice", format!("unknown value {other:?}"))),
        },
        v => v
            .pointer("/function/name")
            .and_then(Value::as_str)
            .map(ToolChoiceOf::Function)
            .ok_or_else(|| {
                ApiError::invalid(
                    "tool_choice",
                    "expected a string or {\"type\":\"function\",\"function\":{\"name\":..}}",
                )
            }),
    }
}

/// A content part of a type the dialect cannot carry.
pub fn unsupported_part(index: usize, kind: &str, dialect: &str) -> ApiError {
    ApiError::invalid(
        "messages",
        format!("message {index}: content part type {kind:?} is not supported by {dialect}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct T(String, Vec<u8>);

    impl Turn for T {
        type Block = u8;
        fn new(role: &str, blocks: Vec<u8>) -> Self {
            T(role.into(), blocks)
        }
        fn role(&self) -> &str {
            &self.0
        }
        fn append(&mut self, blocks: Vec<u8>) {
            self.1.extend(blocks);
        }
    }

    #[test]
    fn turns_of_one_role_merge_and_empty_ones_vanish() {
        let mut turns: Vec<T> = Vec::new();
        push(&mut turns, "user", vec![1]);
        push(&mut turns, "model", vec![]);
        push(&mut turns, "user", vec![2, 3]);
        push(&mut turns, "model", vec![4]);
        assert_eq!(turns, vec![T("user".into(), vec![1, 2, 3]), T("model".into(), vec![4])]);
        assert!(non_empty(turns, "none").is_ok());
        let none: Vec<T> = Vec::new();
        assert_eq!(
            non_empty(none, "none").unwrap_err().to_string(),
            "Invalid value for 'messages': none"
        );
    }

    #[test]
    fn tool_choices_are_read_once_for_every_dialect() {
        let read = |v: Value| tool_choice(&v).map(|c| format!("{c:?}")).map_err(|e| e.to_string());
        assert_eq!(read("required".into()).unwrap(), "Required");
        assert_eq!(
            read(serde_json::json!({"type": "function", "function": {"name": "f"}})).unwrap(),
            "Function(\"f\")"
        );
        assert_eq!(
            read("sometimes".into()).unwrap_err(),
            "Invalid value for 'tool_choice': unknown value \"sometimes\""
        );
        assert!(read(serde_json::json!({"type": "function"}))
            .unwrap_err()
            .contains("expected a string"));
    }

    #[test]
    fn roles_are_classified_and_unknown_ones_refused() {
        let m = |role: &str| Message {
            role: role.into(),
            ..Default::default()
        };
        assert_eq!(role(&m("developer"), 0, &["tool"]).unwrap(), Role::System);
        assert_eq!(role(&m("function"), 0, &["tool", "function"]).unwrap(), Role::Tool);
        let e = role(&m("function"), 3, &["tool"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Invalid value for 'messages': unsupported role \"function\" at index 3"
        );
    }
}
