//! Value checks on a request, made while `LlmRequest::parse` reads the body once: a value the
//! gateway can see is wrong (`content: 42`, `role: 7`, `max_tokens: -5`) is answered with a 400
//! naming it as OpenAI does (`param` = `messages[0].content`, `code` = `invalid_type`,
//! `integer_below_min_value`, ...) instead of being sent to a provider.
//!
//! Invariants: nothing is kept of the body but what a check found. `messages` is walked by
//! visitors that look at each message's `role` and `content` and skip everything else; a content
//! string is skipped as before (its kind is its first byte), and nothing is allocated unless a
//! problem is found. Numbers are judged from the raw text the parse borrowed. Checks are about
//! shape and range only; what a model accepts is the provider's to say.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{ApiError, Endpoint};

mod parts;

/// Roles of OpenAI's chat API.
const CHAT_ROLES: [&str; 6] = ["system", "developer", "user", "assistant", "tool", "function"];
/// Roles of Anthropic's Messages API. The system prompt is a top-level field there; a `system`
/// message inside `messages` is the mid-conversation system message (a beta Claude Code uses).
const ANTHROPIC_ROLES: [&str; 3] = ["user", "assistant", "system"];

/// The largest count the gateway passes on: Gemini and Bedrock carry counts as 32-bit integers
/// (and no model writes more tokens than that).
const MAX_COUNT: i64 = i32::MAX as i64;

/// The JSON type of a value, in OpenAI's words.
fn kind_of(raw: &str) -> &'static str {
    match raw.as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ if raw.contains(['.', 'e', 'E']) => "a decimal number",
        _ => "an integer",
    }
}

/// A wrong thing found in one message (whichever endpoint it came in on).
#[derive(Debug, Clone, PartialEq)]
enum Bad {
    NotObject(&'static str),
    RoleMissing,
    RoleType(&'static str),
    ContentType(&'static str),
    PartNotObject(usize, &'static str),
    PartTypeMissing(usize),
    PartTypeType(usize, &'static str),
}

/// What the walk over `messages` found: the first problem of each kind, by message index. Which
/// of them count depends on the endpoint (roles and a missing content differ between APIs).
#[derive(Debug, Default)]
pub(super) struct MessagesShape {
    /// `messages` is not an array: its kind.
    not_array: Option<&'static str>,
    /// A problem every endpoint refuses.
    bad: Option<(usize, Bad)>,
    /// The first role outside OpenAI's set.
    chat_role: Option<(usize, RoleName)>,
    /// The first role outside Anthropic's set.
    anthropic_role: Option<(usize, RoleName)>,
    /// The first message without content or with `content: null` (Anthropic requires one).
    no_content: Option<usize>,
}

impl MessagesShape {
    /// The first problem that counts for `endpoint`, as the error the client gets.
    pub(super) fn check(&self, endpoint: Endpoint) -> Result<(), ApiError> {
        if let Some(got) = self.not_array {
            return Err(ApiError::InvalidType {
                param: "messages".into(),
                expected: "an array of messages",
                got,
            });
        }
        let anthropic = endpoint == Endpoint::Messages;
        let role = if anthropic {
            &self.anthropic_role
        } else {
            &self.chat_role
        };
        let mut first = self.bad.as_ref().map(|(i, _)| *i);
        let role_at = role.as_ref().map(|(i, _)| *i);
        let content_at = self.no_content.filter(|_| anthropic);
        for at in [role_at, content_at].into_iter().flatten() {
            first = Some(first.map_or(at, |f| f.min(at)));
        }
        let Some(i) = first else { return Ok(()) };
        if let Some((at, bad)) = &self.bad {
            if *at == i {
                return Err(bad_error(i, bad, anthropic));
            }
        }
        if let Some((at, value)) = role {
            if *at == i {
                let allowed = if anthropic {
                    &ANTHROPIC_ROLES[..]
                } else {
                    &CHAT_ROLES[..]
                };
                let list = allowed.iter().map(|r| format!("'{r}'")).collect::<Vec<_>>().join(", ");
                return Err(ApiError::InvalidValue {
                    param: format!("messages[{i}].role"),
                    message: format!("'{value}' is not a role. Supported values are: {list}."),
                    code: "invalid_value",
                });
            }
        }
        Err(ApiError::MissingParam(format!("messages[{i}].content")))
    }
}

fn bad_error(i: usize, bad: &Bad, anthropic: bool) -> ApiError {
    let content = if anthropic {
        "a string or an array of content blocks"
    } else {
        "one of a string or array of objects"
    };
    let typed = |param: String, expected, got| ApiError::InvalidType { param, expected, got };
    match *bad {
        Bad::NotObject(got) => typed(format!("messages[{i}]"), "an object", got),
        Bad::RoleMissing => ApiError::MissingParam(format!("messages[{i}].role")),
        Bad::RoleType(got) => typed(format!("messages[{i}].role"), "a string", got),
        Bad::ContentType(got) => typed(format!("messages[{i}].content"), content, got),
        Bad::PartNotObject(p, got) => typed(format!("messages[{i}].content[{p}]"), "an object", got),
        Bad::PartTypeMissing(p) => ApiError::MissingParam(format!("messages[{i}].content[{p}].type")),
        Bad::PartTypeType(p, got) => typed(format!("messages[{i}].content[{p}].type"), "a string", got),
    }
}

impl<'de> Deserialize<'de> for MessagesShape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Kinded(MessagesVisitor))
    }
}

/// A visitor that handles an array (or object) itself and only learns the kind of anything else.
trait KindVisitor<'de>: Sized {
    type Value;
    fn expecting(&self) -> &'static str;
    fn other(self, got: &'static str) -> Self::Value;
    fn seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        drain_seq(seq).map(|()| self.other("an array"))
    }
    fn map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        drain_map(map).map(|()| self.other("an object"))
    }
    fn str(self, v: &str) -> Self::Value {
        let _ = v;
        self.other("a string")
    }
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Adapts a `KindVisitor` to serde's `Visitor` (every scalar becomes its kind).
struct Kinded<V>(V);

impl<'de, V: KindVisitor<'de>> Visitor<'de> for Kinded<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.0.expecting())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(self.0.other("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(self.0.other("an integer"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(self.0.other("an integer"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(self.0.other("a decimal number"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.str(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(self.0.other("null"))
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(self.0.other("null"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.0.seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.0.map(map)
    }
}

struct MessagesVisitor;

impl<'de> KindVisitor<'de> for MessagesVisitor {
    type Value = MessagesShape;
    fn expecting(&self) -> &'static str {
        "an array of messages"
    }
    fn other(self, got: &'static str) -> MessagesShape {
        MessagesShape {
            not_array: Some(got),
            ..Default::default()
        }
    }
    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MessagesShape, A::Error> {
        let mut shape = MessagesShape::default();
        let mut i = 0;
        while let Some(m) = seq.next_element::<Message>()? {
            shape.note(i, m);
            i += 1;
        }
        Ok(shape)
    }
}

impl MessagesShape {
    fn note(&mut self, i: usize, m: Message) {
        let mut bad = |b: Bad| {
            if self.bad.is_none() {
                self.bad = Some((i, b));
            }
        };
        let m = match m {
            Message::NotObject(got) => return bad(Bad::NotObject(got)),
            Message::Object(m) => m,
        };
        match m.role {
            Role::Absent => bad(Bad::RoleMissing),
            Role::Type(got) => bad(Bad::RoleType(got)),
            Role::Named(name) => {
                let chat = matches!(name, RoleName::Chat(_));
                let anthropic = matches!(name, RoleName::Chat(r) if ANTHROPIC_ROLES.contains(&r));
                if !anthropic && self.anthropic_role.is_none() {
                    self.anthropic_role = Some((i, name.clone()));
                }
                if !chat && self.chat_role.is_none() {
                    self.chat_role = Some((i, name));
                }
            }
        }
        match m.content {
            Content::Absent | Content::Null => {
                if self.no_content.is_none() {
                    self.no_content = Some(i);
                }
            }
            Content::Text => {}
            Content::Type(got) => bad(Bad::ContentType(got)),
            Content::Parts(Some((p, PartBad::NotObject(got)))) => bad(Bad::PartNotObject(p, got)),
            Content::Parts(Some((p, PartBad::TypeMissing))) => bad(Bad::PartTypeMissing(p)),
            Content::Parts(Some((p, PartBad::TypeType(got)))) => bad(Bad::PartTypeType(p, got)),
            Content::Parts(None) => {}
        }
    }
}

/// One element of `messages`.
enum Message {
    NotObject(&'static str),
    Object(MessageFields),
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Kinded(MessageVisitor))
    }
}

struct MessageVisitor;

impl<'de> KindVisitor<'de> for MessageVisitor {
    type Value = Message;
    fn expecting(&self) -> &'static str {
        "a message object"
    }
    fn other(self, got: &'static str) -> Message {
        Message::NotObject(got)
    }
    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Message, A::Error> {
        let mut fields = MessageFields::default();
        while let Some(key) = map.next_key::<Field>()? {
            match key {
                Field::Role => fields.role = map.next_value::<Role>()?,
                Field::Content => fields.content = Content::of(map.next_value::<&'de RawValue>()?),
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Message::Object(fields))
    }
}

#[derive(Default)]
struct MessageFields {
    role: Role,
    content: Content,
}

/// The keys of a message the checks look at; the rest are skipped unread.
enum Field {
    Role,
    Content,
    Other,
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
                Ok(match v {
                    "role" => Field::Role,
                    "content" => Field::Content,
                    _ => Field::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

#[derive(Default)]
enum Role {
    #[default]
    Absent,
    Type(&'static str),
    Named(RoleName),
}

/// A role's text: one of OpenAI's (every Anthropic role is one), or a copy of another for the
/// error naming it (capped: it is client input). Only an unknown role is copied.
#[derive(Debug, Clone, PartialEq)]
enum RoleName {
    Chat(&'static str),
    Other(String),
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            RoleName::Chat(r) => f.write_str(r),
            RoleName::Other(r) => f.write_str(r),
        }
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl KindVisitor<'_> for V {
            type Value = Role;
            fn expecting(&self) -> &'static str {
                "a role"
            }
            fn other(self, got: &'static str) -> Role {
                Role::Type(got)
            }
            fn str(self, v: &str) -> Role {
                Role::Named(match CHAT_ROLES.iter().find(|r| **r == v) {
                    Some(r) => RoleName::Chat(r),
                    None => RoleName::Other(excerpt(v)),
                })
            }
        }
        d.deserialize_any(Kinded(V))
    }
}

/// A message's `content`: a string, an array of parts (objects with a string `type`), or null.
#[derive(Default)]
enum Content {
    #[default]
    Absent,
    Null,
    Text,
    Type(&'static str),
    /// The first bad part, if any.
    Parts(Option<(usize, PartBad)>),
}

impl Content {
    /// A content as the parse borrowed it. Its kind is read off its first byte, so a string (the
    /// usual content, and the longest) is only skipped over, as before these checks, never copied
    /// to be unescaped; an array is walked over its own bytes.
    fn of(raw: &RawValue) -> Content {
        match kind_of(raw.get()) {
            "a string" => Content::Text,
            "null" => Content::Null,
            "an array" => match parts::first_bad_part(raw.get()) {
                Some(first) => Content::Parts(first),
                // Only fails on what a skip does not judge (a number out of range as a part's type).
                None => serde_json::from_str(raw.get()).unwrap_or(Content::Type("an unreadable array")),
            },
            got => Content::Type(got),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartBad {
    NotObject(&'static str),
    TypeMissing,
    TypeType(&'static str),
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> KindVisitor<'de> for V {
            type Value = Content;
            fn expecting(&self) -> &'static str {
                "message content"
            }
            fn other(self, got: &'static str) -> Content {
                if got == "null" {
                    Content::Null
                } else {
                    Content::Type(got)
                }
            }
            fn str(self, _: &str) -> Content {
                Content::Text
            }
            fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Content, A::Error> {
                let mut first = None;
                let mut p = 0;
                while let Some(part) = seq.next_element::<Part>()? {
                    if first.is_none() {
                        first = part.0.map(|b| (p, b));
                    }
                    p += 1;
                }
                Ok(Content::Parts(first))
            }
        }
        d.deserialize_any(Kinded(V))
    }
}

/// One content part: `None` when it is an object with a string `type`.
struct Part(Option<PartBad>);

impl<'de> Deserialize<'de> for Part {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> KindVisitor<'de> for V {
            type Value = Part;
            fn expecting(&self) -> &'static str {
                "a content part"
            }
            fn other(self, got: &'static str) -> Part {
                Part(Some(PartBad::NotObject(got)))
            }
            fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Part, A::Error> {
                let mut kind = Some(PartBad::TypeMissing);
                while let Some(key) = map.next_key::<PartField>()? {
                    if key.0 {
                        kind = map.next_value::<PartType>()?.0;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Part(kind))
            }
        }
        d.deserialize_any(Kinded(V))
    }
}

/// Is this key a part's `type`?
struct PartField(bool);

impl<'de> Deserialize<'de> for PartField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PartField;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PartField, E> {
                Ok(PartField(v == "type"))
            }
        }
        d.deserialize_identifier(V)
    }
}

/// A part's `type`: `None` when it is a string.
struct PartType(Option<PartBad>);

impl<'de> Deserialize<'de> for PartType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl KindVisitor<'_> for V {
            type Value = PartType;
            fn expecting(&self) -> &'static str {
                "a part type"
            }
            fn other(self, got: &'static str) -> PartType {
                PartType(Some(PartBad::TypeType(got)))
            }
            fn str(self, _: &str) -> PartType {
                PartType(None)
            }
        }
        d.deserialize_any(Kinded(V))
    }
}

/// The numeric settings of a request, as the parse borrowed them.
#[derive(Default)]
pub(super) struct Numbers<'a> {
    pub max_tokens: Option<&'a RawValue>,
    pub max_completion_tokens: Option<&'a RawValue>,
    pub temperature: Option<&'a RawValue>,
    pub top_p: Option<&'a RawValue>,
    pub n: Option<&'a RawValue>,
}

impl Numbers<'_> {
    /// Each setting the endpoint has must be null or a number of the right kind within range.
    pub(super) fn check(&self, endpoint: Endpoint) -> Result<(), ApiError> {
        let anthropic = endpoint == Endpoint::Messages;
        match endpoint {
            Endpoint::Embeddings => return Ok(()),
            // Legacy completions take `max_tokens: 0` (with `echo`, to score a prompt).
            Endpoint::Completions => integer("max_tokens", self.max_tokens, 0)?,
            Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::Responses => {
                integer("max_tokens", self.max_tokens, 1)?
            }
        }
        if !anthropic {
            integer("max_completion_tokens", self.max_completion_tokens, 1)?;
            integer("n", self.n, 1)?;
        }
        decimal("temperature", self.temperature, if anthropic { 1.0 } else { 2.0 })?;
        decimal("top_p", self.top_p, 1.0)
    }
}

/// Up to 40 characters of a value, for a message.
fn excerpt(raw: &str) -> String {
    raw.chars().take(40).collect()
}

/// `null`, or an integer in `min..=MAX_COUNT`.
fn integer(param: &'static str, raw: Option<&RawValue>, min: i64) -> Result<(), ApiError> {
    let Some(raw) = raw.map(RawValue::get) else {
        return Ok(());
    };
    match kind_of(raw) {
        "null" => return Ok(()),
        "an integer" => {}
        got => {
            return Err(ApiError::InvalidType {
                param: param.into(),
                expected: "an integer",
                got,
            })
        }
    }
    // Too long for an i64 is out of range on the side of its sign.
    let v = raw
        .parse::<i64>()
        .unwrap_or(if raw.starts_with('-') { i64::MIN } else { i64::MAX });
    let (code, limit) = if v < min {
        (
            "integer_below_min_value",
            format!("integer below minimum value. Expected a value >= {min}"),
        )
    } else if v > MAX_COUNT {
        (
            "integer_above_max_value",
            format!("integer above maximum value. Expected a value <= {MAX_COUNT}"),
        )
    } else {
        return Ok(());
    };
    Err(out_of_range(param, code, &limit, raw))
}

/// The 400 for a number outside its range, worded as OpenAI's.
fn out_of_range(param: &'static str, code: &'static str, limit: &str, raw: &str) -> ApiError {
    ApiError::InvalidValue {
        param: param.into(),
        message: format!("{limit}, but got {} instead.", excerpt(raw)),
        code,
    }
}

/// `null`, or a number in `0..=max`.
fn decimal(param: &'static str, raw: Option<&RawValue>, max: f64) -> Result<(), ApiError> {
    let Some(raw) = raw.map(RawValue::get) else {
        return Ok(());
    };
    match kind_of(raw) {
        "null" => return Ok(()),
        "an integer" | "a decimal number" => {}
        got => {
            return Err(ApiError::InvalidType {
                param: param.into(),
                expected: "a number",
                got,
            })
        }
    }
    // An exponent too large for f64 parses as infinite: above any maximum.
    let v = raw.parse::<f64>().unwrap_or(f64::INFINITY);
    let (code, limit) = if v < 0.0 {
        (
            "decimal_below_min_value",
            "decimal below minimum value. Expected a value >= 0".to_string(),
        )
    } else if v > max || !v.is_finite() {
        (
            "decimal_above_max_value",
            format!("decimal above maximum value. Expected a value <= {max}"),
        )
    } else {
        return Ok(());
    };
    Err(out_of_range(param, code, &limit, raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(json: &str) -> MessagesShape {
        serde_json::from_str(json).unwrap()
    }

    fn err(e: Result<(), ApiError>) -> (String, &'static str, String) {
        let e = e.unwrap_err();
        (e.param().unwrap_or_default().to_string(), e.code(), e.to_string())
    }

    #[test]
    fn well_formed_messages_pass_on_both_apis() {
        let s = shape(
            r#"[{"role":"user","content":"hi \"q\"","name":"x"},
                {"role":"assistant","content":[{"type":"text","text":"a","extra":{"k":[1,{}]}}]}]"#,
        );
        assert!(s.check(Endpoint::ChatCompletions).is_ok());
        assert!(s.check(Endpoint::Messages).is_ok());
        // OpenAI allows an assistant turn without content (tool calls) and roles Anthropic lacks.
        let s = shape(r#"[{"role":"system","content":"s"},{"role":"assistant","content":null,"tool_calls":[]}]"#);
        assert!(s.check(Endpoint::ChatCompletions).is_ok());
        assert!(s.check(Endpoint::Messages).is_err());
    }

    #[test]
    fn wrong_types_name_the_field() {
        let (param, code, msg) = err(
            shape(r#"[{"role":"user","content":"ok"},{"role":"user","content":42}]"#).check(Endpoint::ChatCompletions),
        );
        assert_eq!((param.as_str(), code), ("messages[1].content", "invalid_type"));
        assert!(msg.contains("but got an integer instead"), "{msg}");
        let (param, code, _) = err(shape(r#"[{"role":7,"content":"x"}]"#).check(Endpoint::ChatCompletions));
        assert_eq!((param.as_str(), code), ("messages[0].role", "invalid_type"));
        let (param, code, _) = err(shape(r#"[{"content":"x"}]"#).check(Endpoint::Messages));
        assert_eq!(
            (param.as_str(), code),
            ("messages[0].role", "missing_required_parameter")
        );
        let (param, _, _) = err(shape(r#"["hi"]"#).check(Endpoint::ChatCompletions));
        assert_eq!(param, "messages[0]");
        let (param, _, _) = err(shape(r#"[{"role":"user","content":["x"]}]"#).check(Endpoint::ChatCompletions));
        assert_eq!(param, "messages[0].content[0]");
        let (param, code, _) = err(shape(r#"[{"role":"user","content":[{"text":"x"}]}]"#).check(Endpoint::Messages));
        assert_eq!(
            (param.as_str(), code),
            ("messages[0].content[0].type", "missing_required_parameter")
        );
        let (param, _, _) =
            err(shape(r#"[{"role":"user","content":[{"type":"text"},{"type":1}]}]"#).check(Endpoint::Messages));
        assert_eq!(param, "messages[0].content[1].type");
        let (param, _, _) = err(shape(r#"{"role":"user"}"#).check(Endpoint::Messages));
        assert_eq!(param, "messages");
    }

    #[test]
    fn roles_are_checked_per_api_and_the_first_problem_wins() {
        let s = shape(r#"[{"role":"developer","content":"s"},{"role":"robot","content":"x"}]"#);
        let (param, code, msg) = err(s.check(Endpoint::ChatCompletions));
        assert_eq!((param.as_str(), code), ("messages[1].role", "invalid_value"));
        assert!(msg.contains("'robot'") && msg.contains("'developer'"), "{msg}");
        let (param, _, msg) = err(s.check(Endpoint::Messages));
        assert_eq!(param, "messages[0].role");
        assert!(msg.contains("'developer'") && msg.contains("'system'"), "{msg}");
        let s = shape(r#"[{"role":"user"},{"role":"user","content":5}]"#);
        assert_eq!(err(s.check(Endpoint::Messages)).0, "messages[0].content");
        assert_eq!(err(s.check(Endpoint::ChatCompletions)).0, "messages[1].content");
    }

    fn check_numbers(endpoint: Endpoint, json: &str) -> Result<(), ApiError> {
        #[derive(Deserialize)]
        struct N<'a> {
            #[serde(borrow, default)]
            max_tokens: Option<&'a RawValue>,
            #[serde(borrow, default)]
            max_completion_tokens: Option<&'a RawValue>,
            #[serde(borrow, default)]
            temperature: Option<&'a RawValue>,
            #[serde(borrow, default)]
            top_p: Option<&'a RawValue>,
            #[serde(borrow, default)]
            n: Option<&'a RawValue>,
        }
        let n: N = serde_json::from_str(json).unwrap();
        Numbers {
            max_tokens: n.max_tokens,
            max_completion_tokens: n.max_completion_tokens,
            temperature: n.temperature,
            top_p: n.top_p,
            n: n.n,
        }
        .check(endpoint)
    }

    #[test]
    fn counts_are_positive_integers_that_fit() {
        let chat = Endpoint::ChatCompletions;
        assert!(check_numbers(chat, r#"{"max_tokens":100,"max_completion_tokens":null,"n":2}"#).is_ok());
        let (param, code, msg) = err(check_numbers(chat, r#"{"max_tokens":-5}"#));
        assert_eq!((param.as_str(), code), ("max_tokens", "integer_below_min_value"));
        assert!(msg.contains("got -5"), "{msg}");
        assert_eq!(err(check_numbers(chat, r#"{"max_tokens":1e400}"#)).1, "invalid_type");
        assert_eq!(err(check_numbers(chat, r#"{"max_tokens":5.0}"#)).1, "invalid_type");
        assert_eq!(err(check_numbers(chat, r#"{"max_tokens":"5"}"#)).1, "invalid_type");
        assert_eq!(
            err(check_numbers(
                chat,
                r#"{"max_completion_tokens":99999999999999999999999}"#
            ))
            .1,
            "integer_above_max_value"
        );
        assert_eq!(err(check_numbers(chat, r#"{"n":0}"#)).0, "n");
        // Legacy completions may ask for no completion at all (scoring a prompt with `echo`).
        assert!(check_numbers(Endpoint::Completions, r#"{"max_tokens":0}"#).is_ok());
        assert_eq!(
            err(check_numbers(Endpoint::Messages, r#"{"max_tokens":0}"#)).0,
            "max_tokens"
        );
        // Embeddings have none of these settings: nothing is judged.
        assert!(check_numbers(Endpoint::Embeddings, r#"{"max_tokens":-1}"#).is_ok());
    }

    #[test]
    fn sampling_settings_are_numbers_in_range() {
        let chat = Endpoint::ChatCompletions;
        assert!(check_numbers(chat, r#"{"temperature":2,"top_p":0.5}"#).is_ok());
        assert!(check_numbers(chat, r#"{"temperature":null,"top_p":1e-3}"#).is_ok());
        assert_eq!(
            err(check_numbers(chat, r#"{"temperature":2.5}"#)).1,
            "decimal_above_max_value"
        );
        assert_eq!(
            err(check_numbers(chat, r#"{"temperature":-0.1}"#)).1,
            "decimal_below_min_value"
        );
        assert_eq!(
            err(check_numbers(chat, r#"{"top_p":1e400}"#)).1,
            "decimal_above_max_value"
        );
        assert_eq!(err(check_numbers(chat, r#"{"top_p":"high"}"#)).1, "invalid_type");
        // Anthropic's temperature stops at 1.
        assert_eq!(
            err(check_numbers(Endpoint::Messages, r#"{"temperature":1.5}"#)).0,
            "temperature"
        );
    }
}
