//! The shape of a message's content-part array, read off its bytes.
//!
//! Hand-rolled because it pays, a little: the array was just skipped (and so validated as JSON)
//! by the parse's one pass, and must be walked again to see its parts (serde cannot tell a string
//! from an array without unescaping and copying the string, the common content). On a 100 KB
//! agent-style conversation, half of it in part arrays (`cargo bench --bench hot_paths --
//! parse_render/conversation`), the parse takes 51.5 µs without part checks, 73.6 µs walking the
//! parts with serde_json, 67.8 µs with this scanner (~3.8 GB/s on quote-dense code). Strings are
//! skipped with `memchr` from quote to quote, and only each part's top-level keys are read. Anything unexpected (a key
//! written with escapes, bytes that are not the valid JSON the parse promised) returns `None`,
//! and the caller asks serde_json instead, so the result is always the same as serde's.

use memchr::memchr_iter;

use super::{kind_of, PartBad};

/// The first bad part of a valid JSON array (`Some(None)`: every part is an object with a string
/// `type`), or `None` when the bytes are not what this scanner reads with certainty.
pub(super) fn first_bad_part(array: &str) -> Option<Option<(usize, PartBad)>> {
    let b = array.as_bytes();
    let mut i = ws(b, 0);
    if b.get(i) != Some(&b'[') {
        return None;
    }
    i = ws(b, i + 1);
    if b.get(i) == Some(&b']') {
        return Some(None);
    }
    let mut index = 0;
    loop {
        let start = i;
        let bad = if b.get(i) == Some(&b'{') {
            let (end, bad) = object(b, i)?;
            i = end;
            bad
        } else {
            i = skip_value(b, i)?;
            Some(PartBad::NotObject(kind_of(array.get(start..i)?)))
        };
        if let Some(bad) = bad {
            return Some(Some((index, bad)));
        }
        i = ws(b, i);
        match b.get(i)? {
            b',' => i = ws(b, i + 1),
            b']' => return Some(None),
            _ => return None,
        }
        index += 1;
    }
}

/// One part (an object at `i`): where it ends, and what is wrong with its `type`.
fn object(b: &[u8], i: usize) -> Option<(usize, Option<PartBad>)> {
    let mut i = ws(b, i + 1);
    let mut bad = Some(PartBad::TypeMissing);
    if b.get(i) == Some(&b'}') {
        return Some((i + 1, bad));
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = skip_string(b, i)?;
        let key = b.get(i + 1..key_end - 1)?;
        if key.contains(&b'\\') {
            return None;
        }
        i = ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = ws(b, i + 1);
        let value_start = i;
        i = skip_value(b, i)?;
        if key == b"type" {
            bad = match b.get(value_start) {
                Some(b'"') => None,
                _ => Some(PartBad::TypeType(kind_of(
                    std::str::from_utf8(b.get(value_start..i)?).ok()?,
                ))),
            };
        }
        i = ws(b, i);
        match b.get(i)? {
            b',' => i = ws(b, i + 1),
            b'}' => return Some((i + 1, bad)),
            _ => return None,
        }
    }
}

/// Past the value at `i`.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => skip_nested(b, i),
        _ => {
            // A number or a literal: up to the next delimiter.
            let n = b
                .get(i..)?
                .iter()
                .position(|c| matches!(c, b',' | b'}' | b']') || c.is_ascii_whitespace());
            Some(n.map_or(b.len(), |n| i + n))
        }
    }
}

/// Past the string whose opening quote is at `i`. Jumps from quote to quote (prose and code are
/// dense with `\n` and `\"` escapes but sparser in quotes); a quote preceded by an odd run of
/// backslashes is escaped.
fn skip_string(b: &[u8], i: usize) -> Option<usize> {
    let start = i + 1;
    for at in memchr_iter(b'"', b.get(start..)?) {
        let end = start + at;
        let backslashes = b[start..end].iter().rev().take_while(|c| **c == b'\\').count();
        if backslashes % 2 == 0 {
            return Some(end + 1);
        }
    }
    None
}

/// Past the object or array opening at `i` (its strings skipped whole).
fn skip_nested(b: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    loop {
        match b.get(i)? {
            b'"' => {
                i = skip_string(b, i)?;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
}

fn ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::super::Content;
    use super::*;

    /// What serde's walk finds in the same array.
    fn by_serde(array: &str) -> Option<(usize, PartBad)> {
        match serde_json::from_str::<Content>(array).unwrap() {
            Content::Parts(first) => first,
            _ => panic!("not an array: {array}"),
        }
    }

    #[test]
    fn reads_parts_as_serde_does() {
        for (array, want) in [
            (json!([]), None),
            (json!([{"type": "text", "text": "a \"q\" \\ b"}]), None),
            (json!([{"text": "x"}]), Some((0, PartBad::TypeMissing))),
            (
                json!([{"type": "text"}, "x"]),
                Some((1, PartBad::NotObject("a string"))),
            ),
            (
                json!([{"type": "text"}, {"type": 7}]),
                Some((1, PartBad::TypeType("an integer"))),
            ),
            (
                json!([{"type": ["text"], "image": {"type": 1}}]),
                Some((0, PartBad::TypeType("an array"))),
            ),
            (json!([{"a": {"type": "x"}}]), Some((0, PartBad::TypeMissing))),
            (json!([null]), Some((0, PartBad::NotObject("null")))),
            (json!([1.5e3]), Some((0, PartBad::NotObject("a decimal number")))),
        ] {
            let text = array.to_string();
            assert_eq!(first_bad_part(&text), Some(want), "{text}");
            assert_eq!(by_serde(&text), want, "{text}");
            // Pretty-printed (whitespace everywhere) reads the same.
            let pretty = serde_json::to_string_pretty(&array).unwrap();
            assert_eq!(first_bad_part(&pretty), Some(want), "{pretty}");
        }
    }

    #[test]
    fn leaves_what_it_cannot_read_with_certainty_to_serde() {
        // A key written with an escape could be `type`.
        assert_eq!(first_bad_part(r#"[{"typ\u0065": 1}]"#), None);
        assert_eq!(first_bad_part(r#"[{"type": "x"}"#), None);
        assert_eq!(first_bad_part("not json"), None);
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-1e9f64..1e9).prop_map(Value::from),
            "[a-z\"\\\\ \n\u{e9}]{0,12}".prop_map(Value::String),
            Just(json!("type")),
            Just(json!("text")),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((prop_oneof![Just("type".to_string()), "[a-z\"]{0,5}"], inner), 0..5)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn agrees_with_serde_on_any_array(parts in prop::collection::vec(value(), 0..8), pretty in any::<bool>()) {
            let array = Value::Array(parts);
            let text = if pretty { serde_json::to_string_pretty(&array).unwrap() } else { array.to_string() };
            if let Some(fast) = first_bad_part(&text) {
                prop_assert_eq!(fast, by_serde(&text), "{}", text);
            }
        }

        #[test]
        fn never_panics(bytes in ".{0,200}") {
            let _ = first_bad_part(&bytes);
        }
    }
}
