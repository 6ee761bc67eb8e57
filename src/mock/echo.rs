//! The `echo` and `tool_echo` directives: an answer made of the request's own last user message,
//! so an end-to-end test can see what the provider received come back through the gateway (PII
//! placeholders restored in plain content, in tool-call arguments, and across stream events).
//!
//! * **The echoed text** is the text of the last `user` message: a string `content`, or the
//!   `text` of its `text` parts (OpenAI) / blocks (Anthropic) concatenated with nothing between
//!   them; legacy completions echo the prompt string (the last one of an array of strings). Every
//!   `[[mock: ...]]` marker is removed from it (the directive usually sits in that very message),
//!   then leading and trailing whitespace. No user message, or no text in it: the empty string.
//! * **`tool_echo`**: the answer is one call of the tool [`TOOL_NAME`] whose arguments text is
//!   `{"note":<the echoed text as a JSON string>}` (serde_json's compact form, non-ASCII kept).
//! * **Pieces**: a stream carries the payload (the text, or the arguments text) in pieces of at
//!   most `piece` bytes, each cut on a UTF-8 character boundary; a character longer than `piece`
//!   is a piece of its own, so no piece is empty, except the one piece of an empty payload.
//!   Their concatenation is the payload exactly. Completion tokens = the number of pieces, in
//!   JSON answers too.
//!
//! Invariant: pure functions of the request and the [`Behavior`]; nothing here can panic.

use serde_json::{json, Value};

use super::behavior::Behavior;

/// The tool `tool_echo` calls.
pub const TOOL_NAME: &str = "record";
const OPEN: &str = "[[mock:";
const CLOSE: &str = "]]";

/// What an echoing answer carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Echo {
    /// The echoed text (markers removed).
    pub text: String,
    /// `tool_echo`: a `record` tool call instead of text content.
    pub tool: bool,
    /// The payload (the text, or the arguments text) in stream pieces; never empty.
    pub pieces: Vec<String>,
}

impl Echo {
    /// The echo `b` asks for (`None` without `echo` or `tool_echo`); `text` gives the raw last
    /// user message text, called only when needed.
    pub fn new(b: &Behavior, text: impl FnOnce() -> String) -> Option<Echo> {
        if !b.echo && !b.tool_echo {
            return None;
        }
        let text = strip_markers(&text());
        let payload = if b.tool_echo { arguments(&text) } else { text.clone() };
        Some(Echo {
            pieces: split(&payload, b.piece as usize),
            tool: b.tool_echo,
            text,
        })
    }

    /// The whole payload: the text, or the tool call's arguments text.
    pub fn payload(&self) -> String {
        self.pieces.concat()
    }

    /// The number of pieces (the completion tokens).
    pub fn count(&self) -> u32 {
        u32::try_from(self.pieces.len()).unwrap_or(u32::MAX)
    }

    /// The tool call's arguments as a JSON object (`{"note": text}`).
    pub fn input(&self) -> Value {
        json!({"note": self.text})
    }
}

/// `{"note":<text>}` as compact JSON text.
pub fn arguments(text: &str) -> String {
    json!({"note": text}).to_string()
}

/// `s` without any `[[mock: ...]]` marker (an unterminated one is kept), trimmed.
pub fn strip_markers(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find(OPEN) {
        let Some(len) = rest[open..].find(CLOSE) else {
            break;
        };
        out.push_str(&rest[..open]);
        rest = &rest[open + len + CLOSE.len()..];
    }
    out.push_str(rest);
    out.trim().to_string()
}

/// `s` in pieces of at most `piece` bytes (at least one character each), cut on character
/// boundaries; `[""]` for an empty `s`.
pub fn split(s: &str, piece: usize) -> Vec<String> {
    let piece = piece.max(1);
    let mut out = Vec::with_capacity(s.len() / piece + 1);
    let mut rest = s;
    while !rest.is_empty() {
        let mut cut = piece.min(rest.len());
        while cut > 0 && !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut == 0 {
            cut = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        let Some((head, tail)) = rest.split_at_checked(cut) else {
            break;
        };
        out.push(head.to_string());
        rest = tail;
    }
    if out.is_empty() {
        out.push(String::new());
    }
    out
}

/// The text of the last `role: user` message of an OpenAI chat or Anthropic Messages request.
pub fn last_user_text(messages: &[Value]) -> String {
    let Some(m) = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
    else {
        return String::new();
    };
    match m.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// The text a legacy completion echoes: the prompt string, or the last of an array of strings.
pub fn prompt_text(prompt: Option<&Value>) -> String {
    match prompt {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .rev()
            .find_map(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
#[path = "echo_tests.rs"]
mod tests;
