//! One pass over a raw JSON body's string values, for the guardrails' scans and edits.
//!
//! Owns the list of structural keys whose values never hold user text (`STRUCTURAL`); the JSON
//! string codec the edits use is `api::json_str`.
//!
//! Invariants: every byte outside a replaced string is kept as it was (key order, numbers,
//! whitespace, escapes of the strings left alone); a string without escapes reaches the callback
//! borrowed from the body (no allocation); object keys are never edited; nesting depth costs heap,
//! not stack; a malformed body is left alone (the walk returns None), never a panic.

use std::borrow::Cow;

use crate::api::json_str::{decode, escape_into};

/// Keys whose values (and everything under them) are structure, not user text: editing them
/// would break the request, and scanning them wastes time. One place, with the reason.
const STRUCTURAL: &[&str] = &[
    "model",           // the route's model name
    "role",            // user / assistant / system / tool
    "type",            // content part and block types, tool types
    "id",              // message, tool-call and block ids
    "tool_call_id",    // links a tool result to its call
    "tool_use_id",     // Anthropic's same link
    "object",          // "chat.completion" and the like
    "finish_reason",   // answers echoed back
    "stop_reason",     // Anthropic's
    "media_type",      // image/png
    "detail",          // image detail level
    "url",             // image URLs and data: URLs (base64)
    "data",            // base64 media (images, audio, documents)
    "file_data",       // base64 file content
    "file_id",         // uploaded file reference
    "format",          // audio format, response format
    "encoding_format", // embeddings
    "voice",           // audio output voice
    "signature",       // Anthropic thinking signatures: must come back byte-identical
    "tool_choice",     // "auto" / {"type":"tool","name":..}
    "reasoning_effort",
    "service_tier",
    "system_fingerprint",
];

/// `name` is structural (a function's, a tool's, a schema's) except on a message, where it is
/// the participant's name (`messages[].name`): user data.
const NAME: &str = "name";

/// Keys whose string value is itself JSON text (OpenAI `function.arguments`): a value put into
/// it must be JSON-escaped so it stays valid JSON.
const JSON_TEXT: &[&str] = &["arguments", "partial_json"];

/// What the walk tells the callback about a string value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ctx {
    /// The string holds JSON text (see `JSON_TEXT`).
    pub json_text: bool,
}

#[derive(Clone, Copy)]
struct Frame {
    object: bool,
    /// Under a structural key: nothing below is visited.
    skip: bool,
    /// An array under `messages`.
    messages: bool,
    /// An object that is an element of `messages`.
    message: bool,
}

/// Calls `edit` with the decoded text of every string value outside structural keys; returns
/// the body with each string `edit` replaced re-encoded (None: nothing replaced, or not JSON).
pub fn rewrite_strings(body: &[u8], edit: &mut dyn FnMut(&str) -> Option<String>) -> Option<Vec<u8>> {
    walk_shifting(body, true, &mut |_, s| edit(s), None)
}

/// `rewrite_strings`, also noting each replacement as (its start in `body`, the change of
/// length), in order: a byte offset of `body` outside the replaced strings moves by the sum of
/// the changes before it (`shifted`).
pub fn rewrite_strings_noting(
    body: &[u8],
    edit: &mut dyn FnMut(&str) -> Option<String>,
    shifts: &mut Vec<(usize, isize)>,
) -> Option<Vec<u8>> {
    walk_shifting(body, true, &mut |_, s| edit(s), Some(shifts))
}

/// Where `offset` of the body (outside every replaced string) is in the rewritten body.
pub fn shifted(offset: usize, shifts: &[(usize, isize)]) -> usize {
    let by: isize = shifts.iter().take_while(|(at, _)| *at < offset).map(|(_, d)| d).sum();
    offset.saturating_add_signed(by)
}

/// Calls `f` with the decoded text of every string value outside structural keys.
pub fn for_each_string(body: &[u8], f: &mut dyn FnMut(&str)) {
    walk(body, true, &mut |_, s| {
        f(s);
        None
    });
}

/// The walk itself: `skip_structural` off visits every string value.
pub(crate) fn walk(
    body: &[u8],
    skip_structural: bool,
    edit: &mut dyn FnMut(Ctx, &str) -> Option<String>,
) -> Option<Vec<u8>> {
    walk_shifting(body, skip_structural, edit, None)
}

fn walk_shifting(
    body: &[u8],
    skip_structural: bool,
    edit: &mut dyn FnMut(Ctx, &str) -> Option<String>,
    mut shifts: Option<&mut Vec<(usize, isize)>>,
) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    let b = body;
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0usize;
    let mut stack: Vec<Frame> = Vec::new();
    // The key of the value about to come (in an object), as its raw (escaped) range.
    let mut key: Option<(usize, usize)> = None;
    let mut expect_key = false;
    let mut i = 0usize;
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' | b'\n' | b'\r' | b':' => i += 1,
            b',' => {
                expect_key = stack.last().is_some_and(|f| f.object);
                i += 1;
            }
            b'{' | b'[' => {
                let object = b[i] == b'{';
                let parent = stack.last().copied();
                let k = key.take().map(|(s, e)| raw_key(text, s, e));
                let structural = skip_structural && k.as_deref().is_some_and(|k| is_structural(k, parent));
                stack.push(Frame {
                    object,
                    skip: parent.is_some_and(|p| p.skip) || structural,
                    messages: !object && k.as_deref() == Some("messages"),
                    message: object && parent.is_some_and(|p| p.messages),
                });
                expect_key = object;
                i += 1;
            }
            b'}' | b']' => {
                stack.pop()?;
                key = None;
                expect_key = false;
                i += 1;
            }
            b'"' => {
                let (end, escaped) = string_end(b, i)?;
                if expect_key {
                    key = Some((i + 1, end - 1));
                    expect_key = false;
                } else {
                    let parent = stack.last().copied();
                    let k = key.take().map(|(s, e)| raw_key(text, s, e));
                    let skip = parent.is_some_and(|p| p.skip)
                        || (skip_structural && k.as_deref().is_some_and(|k| is_structural(k, parent)));
                    if !skip {
                        let raw = text.get(i + 1..end - 1)?;
                        let decoded = if escaped {
                            Cow::Owned(decode(raw)?)
                        } else {
                            Cow::Borrowed(raw)
                        };
                        let ctx = Ctx {
                            json_text: k.as_deref().is_some_and(|k| JSON_TEXT.contains(&k)),
                        };
                        if let Some(new) = edit(ctx, &decoded) {
                            let o = out.get_or_insert_with(|| Vec::with_capacity(b.len() + 64));
                            o.extend_from_slice(&b[copied..i]);
                            let before = o.len();
                            o.push(b'"');
                            escape_into(&new, o);
                            o.push(b'"');
                            if let Some(s) = shifts.as_deref_mut() {
                                s.push((i, (o.len() - before) as isize - (end - i) as isize));
                            }
                            copied = end;
                        }
                    }
                }
                i = end;
            }
            _ => {
                // A number, true, false or null: up to the next delimiter.
                key = None;
                while i < b.len() && !matches!(b[i], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    i += 1;
                }
            }
        }
    }
    if !stack.is_empty() {
        return None;
    }
    let mut o = out?;
    o.extend_from_slice(&b[copied..]);
    Some(o)
}

fn is_structural(key: &str, parent: Option<Frame>) -> bool {
    if key == NAME {
        return !parent.is_some_and(|p| p.message);
    }
    STRUCTURAL.contains(&key)
}

/// A key's text (decoded only when it has escapes, which real keys never do).
fn raw_key(text: &str, start: usize, end: usize) -> Cow<'_, str> {
    let raw = text.get(start..end).unwrap_or("");
    if memchr::memchr(b'\\', raw.as_bytes()).is_some() {
        decode(raw).map_or(Cow::Borrowed(""), Cow::Owned)
    } else {
        Cow::Borrowed(raw)
    }
}

/// The end (one past the closing quote) of the string starting at `b[start] == '"'`, and
/// whether it has escapes.
fn string_end(b: &[u8], start: usize) -> Option<(usize, bool)> {
    let mut j = start + 1;
    let mut escaped = false;
    loop {
        let k = j + memchr::memchr2(b'"', b'\\', b.get(j..)?)?;
        if b[k] == b'"' {
            return Some((k + 1, escaped));
        }
        escaped = true;
        j = k + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn strings(body: &str) -> Vec<String> {
        let mut v = Vec::new();
        for_each_string(body.as_bytes(), &mut |s| v.push(s.to_string()));
        v
    }

    #[test]
    fn visits_values_not_keys_and_skips_structural_keys() {
        let body = r#"{"model":"gpt-4o","messages":[{"role":"user","name":"alice","content":"hi"},
            {"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},
            {"role":"user","content":[{"type":"text","text":"t"},{"type":"image_url","image_url":{"url":"data:x","detail":"low"}}]}],
            "tools":[{"type":"function","function":{"name":"f","description":"does f","parameters":{"type":"object"}}}],
            "tool_choice":{"type":"function","function":{"name":"f"}},"user":"u@x.io","n":1,"stream":true,"x":null}"#;
        assert_eq!(strings(body), ["alice", "hi", "{\"a\":1}", "t", "does f", "u@x.io"]);
    }

    #[test]
    fn anthropic_media_and_signatures_are_skipped() {
        let body = r#"{"system":[{"type":"text","text":"sys"}],"messages":[{"role":"user","content":[
            {"type":"image","source":{"type":"base64","media_type":"image/png","data":"QUJD"}},
            {"type":"tool_result","tool_use_id":"tu1","content":"result"},
            {"type":"thinking","thinking":"hmm","signature":"sig"}]}]}"#;
        assert_eq!(strings(body), ["sys", "result", "hmm"]);
    }

    #[test]
    fn rewrite_keeps_every_byte_outside_replaced_strings() {
        let body = "{ \"b\" : [1, 2.5e3 ,true,null, \"keep\\u00e9\" ,\"x\"],\n\t\"a\":{\"c\":\"x\"} , \"model\":\"x\"}";
        let out = rewrite_strings(body.as_bytes(), &mut |s| (s == "x").then(|| "y\"z".to_string())).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{ \"b\" : [1, 2.5e3 ,true,null, \"keep\\u00e9\" ,\"y\\\"z\"],\n\t\"a\":{\"c\":\"y\\\"z\"} , \"model\":\"x\"}"
        );
        assert!(rewrite_strings(body.as_bytes(), &mut |_| None).is_none());
    }

    #[test]
    fn escapes_are_decoded_and_replacements_encoded() {
        let body = r#"{"t":"q\"b\\s\/n\nt\tu\u00e9 \ud83d\ude00 lone \ud800 end","k\"ey":"v"}"#;
        assert_eq!(strings(body), ["q\"b\\s/n\nt\tué 😀 lone \u{FFFD} end", "v"]);
        let out = rewrite_strings(body.as_bytes(), &mut |s| Some(format!("{s}\u{1}\n\"😀"))).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["k\"ey"], "v\u{1}\n\"😀");
    }

    #[test]
    fn deep_nesting_and_top_level_strings() {
        let depth = 10_000;
        let body = format!("{}\"deep\"{}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(strings(&body), ["deep"]);
        assert_eq!(strings("\"top\""), ["top"]);
        let out = rewrite_strings(br#"{"a":{"b":[{"c":[["x"]]}]}}"#, &mut |_| Some("y".into())).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&out).unwrap(),
            json!({"a":{"b":[{"c":[["y"]]}]}})
        );
    }

    #[test]
    fn malformed_bodies_are_left_alone() {
        let bad: [&[u8]; 5] = [b"{\"a\":\"x", b"{\"a\":[\"x\"}", b"]", b"\"\\q\"", b"\"\xff\""];
        for bad in bad {
            assert!(rewrite_strings(bad, &mut |_| Some("y".into())).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn json_text_context_is_reported_for_arguments() {
        let mut seen = Vec::new();
        walk(
            br#"{"content":"a","function":{"arguments":"{}"}}"#,
            false,
            &mut |c, s| {
                seen.push((c.json_text, s.to_string()));
                None
            },
        );
        assert_eq!(seen, [(false, "a".to_string()), (true, "{}".to_string())]);
    }
}
