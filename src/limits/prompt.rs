//! What the prompt estimate reads from a chat request, and nothing else.
//!
//! An OpenAI-shaped request passes through to an OpenAI-dialect provider with only its `model`
//! spliced, so nothing else on that path parses it; the limiter's estimate would otherwise be the
//! only reason to build the full canonical `ChatRequest` (owned strings, and `#[serde(flatten)]`
//! maps that keep unknown fields, which serde buffers): about 5 µs for a small chat on a cold
//! core, more than the tokenizer's count. [`Prompt::parse`] reads just the messages' roles,
//! names, texts, image parts and tool calls, the tools and the response format (kept as their
//! JSON text) and the completion caps, borrowing every string that has no escapes from the body.
//! [`Prompt::of_chat`] gives the same view of a canonical request (other client dialects), so the
//! accounting in `tokens::estimate` is written once.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::api::chat::{ChatRequest, Content};

#[derive(Debug, Default, Deserialize)]
pub struct Prompt<'a> {
    #[serde(borrow, default)]
    pub messages: Vec<PromptMessage<'a>>,
    /// The tool definitions' JSON text: as sent for a parsed body, compact for a canonical one.
    #[serde(borrow, default, deserialize_with = "raw_text")]
    pub tools: Option<Text<'a>>,
    #[serde(borrow, default, deserialize_with = "raw_text")]
    pub response_format: Option<Text<'a>>,
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct PromptMessage<'a> {
    #[serde(borrow, default)]
    pub role: Text<'a>,
    #[serde(borrow, default)]
    pub name: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub content: Option<PromptContent<'a>>,
    #[serde(borrow, default)]
    pub tool_calls: Option<Vec<PromptToolCall<'a>>>,
}

#[derive(Debug)]
pub enum PromptContent<'a> {
    Text(Text<'a>),
    Parts(Vec<PromptPart<'a>>),
}

#[derive(Debug, Default, Deserialize)]
pub struct PromptPart<'a> {
    #[serde(rename = "type", borrow, default)]
    pub kind: Text<'a>,
    #[serde(borrow, default)]
    pub text: Option<Text<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct PromptToolCall<'a> {
    #[serde(borrow, default)]
    pub function: PromptFunction<'a>,
}

#[derive(Debug, Default, Deserialize)]
pub struct PromptFunction<'a> {
    #[serde(borrow, default)]
    pub name: Text<'a>,
    #[serde(borrow, default)]
    pub arguments: Text<'a>,
}

/// A string borrowed from the body when it has no escapes (serde's `Cow<str>` always copies).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A string, or an array of parts; `null` is the absent content (`Option`).
impl<'de: 'a, 'a> Deserialize<'de> for PromptContent<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PromptContent<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of content parts")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<PromptContent<'de>, E> {
                Ok(PromptContent::Text(Text(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PromptContent<'de>, E> {
                Ok(PromptContent::Text(Text(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<PromptContent<'de>, E> {
                Ok(PromptContent::Text(Text(Cow::Owned(v))))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PromptContent<'de>, A::Error> {
                let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(2));
                while let Some(p) = seq.next_element()? {
                    parts.push(p);
                }
                Ok(PromptContent::Parts(parts))
            }
        }
        d.deserialize_any(V)
    }
}

/// Any JSON value, kept as its text (`null` is absent).
fn raw_text<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Text<'a>>, D::Error> {
    let raw: Option<&'de RawValue> = Option::deserialize(d)?;
    Ok(raw.map(|r| Text(Cow::Borrowed(r.get()))))
}

impl<'a> Prompt<'a> {
    /// The view of an OpenAI-shaped chat body; `None` when it is not one.
    pub fn parse(body: &'a [u8]) -> Option<Prompt<'a>> {
        serde_json::from_slice(body).ok()
    }

    /// The view of a canonical request (tools and response format re-serialised, compact).
    pub fn of_chat(req: &'a ChatRequest) -> Prompt<'a> {
        let text = |s: &'a str| Text(Cow::Borrowed(s));
        Prompt {
            messages: req
                .messages
                .iter()
                .map(|m| PromptMessage {
                    role: text(&m.role),
                    name: m.name.as_deref().map(text),
                    content: m.content.as_ref().map(|c| match c {
                        Content::Text(t) => PromptContent::Text(text(t)),
                        Content::Parts(parts) => PromptContent::Parts(
                            parts
                                .iter()
                                .map(|p| PromptPart {
                                    kind: text(&p.kind),
                                    text: p.text.as_deref().map(text),
                                })
                                .collect(),
                        ),
                    }),
                    tool_calls: m.tool_calls.as_ref().map(|calls| {
                        calls
                            .iter()
                            .map(|tc| PromptToolCall {
                                function: PromptFunction {
                                    name: text(&tc.function.name),
                                    arguments: text(&tc.function.arguments),
                                },
                            })
                            .collect()
                    }),
                })
                .collect(),
            tools: req
                .tools
                .as_ref()
                .and_then(|t| serde_json::to_string(t).ok())
                .map(|s| Text(Cow::Owned(s))),
            response_format: req.response_format.as_ref().map(|v| Text(Cow::Owned(v.to_string()))),
            max_tokens: req.max_tokens,
            max_completion_tokens: req.max_completion_tokens,
        }
    }

    /// The request's own cap on the completion, if it sets one.
    pub fn max_output_tokens(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrows_plain_strings_and_reads_every_counted_field() {
        let body = br#"{"model":"m","temperature":0.2,"messages":[
            {"role":"system","content":"Be brief.","extra":{"x":[1,2]}},
            {"role":"user","name":"ann","content":[{"type":"text","text":"line\nbreak"},
                {"type":"image_url","image_url":{"url":"https://x/y.png"}}]},
            {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function",
                "function":{"name":"get","arguments":"{\"q\":1}"}}]}],
            "tools":[{"type":"function","function":{"name":"get"}}],
            "response_format":{"type":"json_object"},"max_tokens":64}"#;
        let p = Prompt::parse(body).unwrap();
        assert_eq!(p.messages.len(), 3);
        assert!(matches!(p.messages[0].role.0, Cow::Borrowed("system")));
        assert!(matches!(
            &p.messages[0].content,
            Some(PromptContent::Text(Text(Cow::Borrowed("Be brief."))))
        ));
        let Some(PromptContent::Parts(parts)) = &p.messages[1].content else {
            panic!("parts")
        };
        // An escaped string cannot be borrowed; it is still read.
        assert_eq!(parts[0].text.as_deref(), Some("line\nbreak"));
        assert_eq!(&*parts[1].kind, "image_url");
        assert_eq!(p.messages[1].name.as_deref(), Some("ann"));
        assert!(p.messages[2].content.is_none());
        let calls = p.messages[2].tool_calls.as_ref().unwrap();
        assert_eq!(
            (&*calls[0].function.name, &*calls[0].function.arguments),
            ("get", "{\"q\":1}")
        );
        assert_eq!(
            p.tools.as_deref(),
            Some(r#"[{"type":"function","function":{"name":"get"}}]"#)
        );
        assert_eq!(p.response_format.as_deref(), Some(r#"{"type":"json_object"}"#));
        assert_eq!(p.max_output_tokens(), Some(64));
    }

    #[test]
    fn not_a_chat_body_is_none() {
        for body in [
            &b"not json"[..],
            b"[1,2]",
            br#"{"messages":"x"}"#,
            br#"{"messages":[{"content":7}]}"#,
        ] {
            assert!(Prompt::parse(body).is_none(), "{}", String::from_utf8_lossy(body));
        }
    }
}
