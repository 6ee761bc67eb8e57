//! The OpenAI request as far as routing needs it, parsed in one borrowed pass over the body.
//!
//! The gateway does not re-serialise an OpenAI request to forward it to an OpenAI-dialect
//! provider: it keeps the client's bytes and splices the upstream model name over the byte span
//! of the `model` value (`LlmRequest::model_span`). Unknown fields, key order and number
//! formatting reach the provider exactly as the client wrote them.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::OnceLock;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::chat::{ChatRequest, Usage};
use super::check::{MessagesShape, Numbers};
use super::{ApiError, Endpoint};
use crate::api::Wire;

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    /// Walked, not kept: the shape of each message (`check`).
    #[serde(default)]
    messages: Option<MessagesShape>,
    #[serde(borrow, default)]
    prompt: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
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

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// A parsed LLM request: the original body plus what routing and relaying need.
#[derive(Debug, Clone)]
pub struct LlmRequest {
    pub endpoint: Endpoint,
    /// The wire format the client speaks (and expects back).
    pub client: Wire,
    /// Client headers a same-dialect provider should see (`anthropic-version`, `anthropic-beta`).
    pub forward: Vec<(HeaderName, HeaderValue)>,
    /// The canonical chat form, parsed on first use (only translated routes need it).
    canonical: OnceLock<Result<ChatRequest, ApiError>>,
    pub body: Bytes,
    /// The alias the client asked for.
    pub model: String,
    /// Byte range of the `model` value (including its quotes) in `body`.
    pub model_span: Range<usize>,
    pub stream: bool,
    pub include_usage: bool,
    /// The request's `user` field (OpenAI), used for sticky routing.
    pub user: Option<String>,
    /// The request's `metadata` object, matched by routes.
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// A Responses API request as OpenAI takes it natively (the client's body, its stored
    /// conversation written into `input`): what an OpenAI target is sent instead of the chat
    /// body, when the route lets it (`proxy::responses::native_allowed`).
    pub responses_native: Option<std::sync::Arc<serde_json::Map<String, serde_json::Value>>>,
    /// Why the Responses request cannot be translated (a built-in tool, …): every target but
    /// OpenAI serving it natively refuses it with this.
    pub responses_refusal: Option<ApiError>,
    /// The request's own cap on the completion (`max_completion_tokens`, else `max_tokens`),
    /// when it is a whole number: the limits reserve it. (Any other value is left for the
    /// provider to judge.)
    pub max_output: Option<u64>,
}

impl LlmRequest {
    pub fn parse(endpoint: Endpoint, body: Bytes) -> Result<LlmRequest, ApiError> {
        // serde would also accept a JSON array for a struct; a request is an object.
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::InvalidJson("the request body must be a JSON object".into()));
        }
        let mut de = serde_json::Deserializer::from_slice(&body);
        // Tracking the path costs an allocation per object key, so it is only done to name the
        // field of a body already known to be bad (a second parse, on the error path only).
        let peek = match Peek::deserialize(&mut de) {
            Ok(peek) => peek,
            Err(_) => return Err(peek_error(&body)),
        };
        de.end().map_err(|e| ApiError::InvalidJson(e.to_string()))?;

        let raw_model = peek.model.ok_or(ApiError::MissingField("model"))?;
        let model: Cow<str> = serde_json::from_str(raw_model.get()).map_err(|_| ApiError::InvalidField {
            field: "model",
            message: "expected a string".into(),
        })?;
        if model.is_empty() {
            return Err(ApiError::InvalidField {
                field: "model",
                message: "must not be empty".into(),
            });
        }
        let start = raw_model.get().as_ptr() as usize - body.as_ptr() as usize;
        let model_span = start..start + raw_model.get().len();

        let missing = ApiError::MissingField(endpoint.required_field());
        match endpoint {
            Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::Responses => {
                peek.messages.ok_or(missing)?.check(endpoint)?
            }
            Endpoint::Completions | Endpoint::Embeddings => {
                let raw = if endpoint == Endpoint::Completions {
                    peek.prompt
                } else {
                    peek.input
                };
                if raw.is_none_or(|r| r.get() == "null") {
                    return Err(missing);
                }
            }
        }
        Numbers {
            max_tokens: peek.max_tokens,
            max_completion_tokens: peek.max_completion_tokens,
            temperature: peek.temperature,
            top_p: peek.top_p,
            n: peek.n,
        }
        .check(endpoint)?;
        let stream = peek.stream.unwrap_or(false);
        if stream && endpoint == Endpoint::Embeddings {
            return Err(ApiError::InvalidField {
                field: "stream",
                message: "embeddings cannot be streamed".into(),
            });
        }
        let include_usage = stream && peek.stream_options.and_then(|o| o.include_usage).unwrap_or(false);
        let client = if endpoint == Endpoint::Messages {
            Wire::Anthropic
        } else {
            Wire::OpenAi
        };
        Ok(LlmRequest {
            endpoint,
            client,
            forward: Vec::new(),
            canonical: OnceLock::new(),
            model: model.into_owned(),
            model_span,
            stream,
            include_usage,
            user: peek.user.filter(|u| !u.is_empty()),
            metadata: peek.metadata,
            responses_native: None,
            responses_refusal: None,
            max_output: peek
                .max_completion_tokens
                .and_then(whole_number)
                .or_else(|| peek.max_tokens.and_then(whole_number)),
            body,
        })
    }

    /// The request with `body` in place of the client's: the same request with string values
    /// rewritten (the guardrails' redaction), so nothing routing read changes; only the `model`
    /// value's span moves (`model_span`). The canonical form is parsed again from `body` on use.
    pub fn with_body(&self, body: Bytes, model_span: Range<usize>) -> LlmRequest {
        LlmRequest {
            endpoint: self.endpoint,
            client: self.client,
            forward: self.forward.clone(),
            canonical: OnceLock::new(),
            body,
            model: self.model.clone(),
            model_span,
            stream: self.stream,
            include_usage: self.include_usage,
            user: self.user.clone(),
            metadata: self.metadata.clone(),
            responses_native: self.responses_native.clone(),
            responses_refusal: self.responses_refusal.clone(),
            max_output: self.max_output,
        }
    }

    /// A forwarded client header.
    pub fn header(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.forward.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The request in canonical (OpenAI chat) form: the body itself for OpenAI chat clients, the
    /// translation of an Anthropic request for `/v1/messages` clients.
    pub fn canonical(&self) -> Result<&ChatRequest, ApiError> {
        let parsed = self.canonical.get_or_init(|| match self.client {
            Wire::OpenAi => serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&self.body))
                .map_err(invalid_body),
            Wire::Anthropic => {
                let req = serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&self.body))
                    .map_err(invalid_body)?;
                super::messages::to_chat(req)
            }
        });
        parsed.as_ref().map_err(Clone::clone)
    }

    /// The body with the `model` value replaced by `model_json` (a JSON string literal).
    pub fn body_with_model(&self, model_json: &[u8]) -> Bytes {
        let (head, tail) = (&self.body[..self.model_span.start], &self.body[self.model_span.end..]);
        let mut out = Vec::with_capacity(head.len() + model_json.len() + tail.len());
        out.extend_from_slice(head);
        out.extend_from_slice(model_json);
        out.extend_from_slice(tail);
        Bytes::from(out)
    }
}

fn whole_number(raw: &RawValue) -> Option<u64> {
    raw.get().parse().ok()
}

/// Why `Peek` cannot be read from `body`, naming the field when the problem is a value's.
fn peek_error(body: &[u8]) -> ApiError {
    let mut de = serde_json::Deserializer::from_slice(body);
    let Err(e) = serde_path_to_error::deserialize::<_, Peek>(&mut de) else {
        return ApiError::InvalidJson("the request body could not be read".into());
    };
    let path = e.path().to_string();
    let inner = e.into_inner();
    match known_field(&path) {
        Some(field) if !inner.is_syntax() && !inner.is_eof() => ApiError::InvalidField {
            field,
            message: strip_position(&inner.to_string()),
        },
        _ => ApiError::InvalidJson(inner.to_string()),
    }
}

/// A value the translated routes' full parse refused (`parse` lets through what it does not
/// check), named by its path in the body.
fn invalid_body(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    ApiError::InvalidValue {
        param: if path == "." { "messages".into() } else { path },
        message: plain_types(&strip_position(&e.into_inner().to_string())),
        code: "invalid_value",
    }
}

fn known_field(path: &str) -> Option<&'static str> {
    let top = path.split(['.', '[']).next().unwrap_or_default();
    [
        "model",
        "stream",
        "stream_options",
        "messages",
        "prompt",
        "input",
        "user",
        "metadata",
    ]
    .into_iter()
    .find(|f| *f == top)
}

fn strip_position(msg: &str) -> String {
    msg.find(" at line ")
        .map_or_else(|| msg.to_string(), |i| msg[..i].to_string())
}

/// serde names Rust types in its messages (`expected u64`); a client knows JSON's.
fn plain_types(msg: &str) -> String {
    let mut out = msg.to_string();
    for (rust, json) in [
        ("expected u64", "expected a non-negative integer"),
        ("expected u32", "expected a non-negative integer"),
        ("expected usize", "expected a non-negative integer"),
        ("expected i64", "expected an integer"),
        ("expected i32", "expected an integer"),
        ("expected f64", "expected a number"),
    ] {
        if out.ends_with(rust) {
            out.replace_range(out.len() - rust.len().., json);
        }
    }
    out
}

#[derive(Deserialize)]
struct UsageOnly {
    #[serde(default)]
    usage: Option<Usage>,
}

/// The `usage` object of a response body or stream chunk, if it has one.
pub fn usage_of(json: &[u8]) -> Option<Usage> {
    // Cheap pre-check: most stream chunks carry no usage. The searcher is built once (building
    // one per call cost ~380 instructions a request under callgrind).
    static USAGE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"usage\""));
    USAGE.find(json)?;
    serde_json::from_slice::<UsageOnly>(json).ok()?.usage
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<LlmRequest, ApiError> {
        LlmRequest::parse(Endpoint::ChatCompletions, Bytes::from(body.to_string()))
    }

    #[test]
    fn finds_model_and_splices_it() {
        let body = r#"{"messages":[{"role":"user","content":"hi \"model\": x"}],"extra":{"a":[1,2.50]},"model" : "demo","stream":true,"stream_options":{"include_usage":true}}"#;
        let r = chat(body).unwrap();
        assert_eq!(r.model, "demo");
        assert!(r.stream && r.include_usage);
        let out = r.body_with_model(br#""gpt-4o-2024""#);
        let expected = body.replace(r#""model" : "demo""#, r#""model" : "gpt-4o-2024""#);
        assert_eq!(std::str::from_utf8(&out).unwrap(), expected);
    }

    #[test]
    fn escaped_model_names_decode() {
        let r = chat(r#"{"model":"a\u0062c","messages":[]}"#).unwrap();
        assert_eq!(r.model, "abc");
        assert_eq!(&r.body[r.model_span.clone()], br#""a\u0062c""#);
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(chat(r#"{"messages":[]}"#).unwrap_err(), ApiError::MissingField("model"));
        assert_eq!(
            chat(r#"{"model":"m"}"#).unwrap_err(),
            ApiError::MissingField("messages")
        );
        assert!(matches!(
            chat(r#"{"model":"m","messages":[}"#),
            Err(ApiError::InvalidJson(_))
        ));
        assert!(matches!(
            chat(r#"{"model":"m","messages":[]} trailing"#),
            Err(ApiError::InvalidJson(_))
        ));
        assert!(matches!(
            chat(r#"{"model":5,"messages":[]}"#),
            Err(ApiError::InvalidField { field: "model", .. })
        ));
        assert_eq!(
            chat(r#"{"model":"m","messages":"x"}"#).unwrap_err().param(),
            Some("messages")
        );
        assert!(matches!(
            chat(r#"{"model":"m","messages":[],"stream":"yes"}"#),
            Err(ApiError::InvalidField { field: "stream", .. })
        ));
        assert!(matches!(chat("[]"), Err(ApiError::InvalidJson(_))));
        assert!(matches!(chat(""), Err(ApiError::InvalidJson(_))));
    }

    #[test]
    fn values_the_gateway_can_see_are_refused_naming_the_field() {
        let parse = |e, b: &str| LlmRequest::parse(e, Bytes::from(b.to_string())).unwrap_err();
        for (body, param, code) in [
            (
                r#"{"model":"m","messages":[{"role":"user","content":42}]}"#,
                "messages[0].content",
                "invalid_type",
            ),
            (
                r#"{"model":"m","messages":[{"role":7,"content":"x"}]}"#,
                "messages[0].role",
                "invalid_type",
            ),
            (
                r#"{"model":"m","max_tokens":-5,"messages":[]}"#,
                "max_tokens",
                "integer_below_min_value",
            ),
            (
                r#"{"model":"m","max_tokens":1e400,"messages":[]}"#,
                "max_tokens",
                "invalid_type",
            ),
            (
                r#"{"model":"m","temperature":9,"messages":[]}"#,
                "temperature",
                "decimal_above_max_value",
            ),
        ] {
            let e = parse(Endpoint::ChatCompletions, body);
            assert_eq!(
                (e.param(), e.code(), e.status()),
                (Some(param), code, 400),
                "{body}: {e}"
            );
        }
        // /v1/messages: the message names the field, in JSON's words, not Rust's.
        let e = parse(
            Endpoint::Messages,
            r#"{"model":"m","max_tokens":-5,"messages":[{"role":"user","content":"x"}]}"#,
        );
        assert_eq!(e.param(), Some("max_tokens"));
        let msg = e.to_string();
        assert!(
            msg.contains("'max_tokens'") && !msg.contains("messages") && !msg.contains("u64"),
            "{msg}"
        );
        // What only the full parse of a translated route sees is named by its path too.
        let r = LlmRequest::parse(
            Endpoint::Messages,
            Bytes::from(r#"{"model":"m","top_k":-1,"messages":[{"role":"user","content":"x"}]}"#),
        )
        .unwrap();
        let e = r.canonical().unwrap_err();
        assert_eq!(e.param(), Some("top_k"));
        assert!(e.to_string().ends_with("expected a non-negative integer"), "{e}");
    }

    #[test]
    fn embeddings_need_input_and_cannot_stream() {
        let e = |b: &str| LlmRequest::parse(Endpoint::Embeddings, Bytes::from(b.to_string()));
        assert_eq!(e(r#"{"model":"m"}"#).unwrap_err(), ApiError::MissingField("input"));
        assert!(e(r#"{"model":"m","input":"x"}"#).is_ok());
        assert!(e(r#"{"model":"m","input":"x","stream":true}"#).is_err());
    }

    #[test]
    fn usage_is_found_only_where_present() {
        assert_eq!(
            usage_of(br#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#),
            Some(Usage::new(3, 4))
        );
        assert_eq!(usage_of(br#"{"choices":[{"delta":{"content":"x"}}]}"#), None);
        assert_eq!(usage_of(br#"{"usage":null}"#), None);
    }

    /// Any JSON value, nested a little.
    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            prop_oneof![Just("user".to_string()), Just("type".to_string()), ".{0,8}"].prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(
                    prop_oneof![Just("type".to_string()), Just("text".to_string()), "[a-z]{1,4}"],
                    inner,
                    0..4
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,300}") {
            for e in Endpoint::ALL {
                let _ = LlmRequest::parse(e, Bytes::from(s.clone()));
            }
        }

        /// Requests shaped like real ones with any value in the checked places: no panic, in the
        /// parse or in the canonical form of what it lets through.
        #[test]
        fn parse_never_panics_on_any_values(
            role in json_value(), content in json_value(), part in json_value(), number in json_value()
        ) {
            let body = serde_json::json!({
                "model": "m",
                "messages": [{"role": role, "content": content}, {"role": "user", "content": [part]}],
                "max_tokens": number, "temperature": number, "top_p": number, "n": number,
                "max_completion_tokens": number,
            })
            .to_string();
            for e in Endpoint::ALL {
                if let Ok(r) = LlmRequest::parse(e, Bytes::from(body.clone())) {
                    let _ = r.canonical();
                }
            }
        }

        #[test]
        fn splice_keeps_everything_but_the_model(prefix in "[a-z]{0,8}", model in "[ -~]{1,20}", tail in "[a-z0-9]{0,20}") {
            let body = serde_json::json!({ "messages": [{"role":"user","content": prefix}], "model": model, "z": tail }).to_string();
            let r = chat(&body).unwrap();
            proptest::prop_assert_eq!(&r.model, &model);
            let out: serde_json::Value = serde_json::from_slice(&r.body_with_model(br#""up""#)).unwrap();
            proptest::prop_assert_eq!(&out["model"], "up");
            proptest::prop_assert_eq!(&out["z"], tail.as_str());
        }
    }
}
