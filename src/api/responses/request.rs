//! A Responses request → the canonical chat request. The items of the conversation (the stored
//! turns a `previous_response_id` names, then this request's `input`) become chat messages; what
//! has no chat equivalent is a 400 naming it, never dropped.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::api::chat::{
    ChatRequest, Content, FunctionCall, FunctionDef, ImageUrl, Message, Part, StreamOptions, Tool, ToolCall,
};
use crate::api::ApiError;

/// `POST /v1/responses`, as the gateway reads it. `rest` holds every other field; `to_chat`
/// accepts the few that change nothing and refuses the others by name.
#[derive(Debug, Clone, Deserialize)]
pub struct ResponsesRequest {
    pub model: String,
    #[serde(default)]
    pub input: Option<Value>,
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub text: Option<Value>,
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub reasoning: Option<Value>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub store: Option<bool>,
    #[serde(default)]
    pub previous_response_id: Option<String>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl ResponsesRequest {
    /// Reads the body, naming the field a wrong type is in.
    pub fn parse(body: &[u8]) -> Result<ResponsesRequest, ApiError> {
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::InvalidJson("the request body must be a JSON object".into()));
        }
        let mut de = serde_json::Deserializer::from_slice(body);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let param = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                return ApiError::InvalidJson(inner.to_string());
            }
            if param == "." {
                let missing = inner.to_string();
                if missing.contains("`model`") {
                    return ApiError::MissingField("model");
                }
            }
            ApiError::InvalidValue {
                param,
                message: inner.to_string(),
                code: "invalid_type",
            }
        })
    }

    /// This turn's input as items: a string is one user message.
    pub fn input_items(&self) -> Result<Vec<Value>, ApiError> {
        match &self.input {
            None | Some(Value::Null) => Err(ApiError::MissingField("input")),
            Some(Value::String(s)) => Ok(vec![json!({
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": s}],
            })]),
            Some(Value::Array(items)) => Ok(items.clone()),
            Some(_) => Err(invalid("input", "expected a string or an array of input items")),
        }
    }

    pub fn streamed(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether the gateway keeps the response (`store`, true unless the client says false).
    pub fn stored(&self) -> bool {
        self.store.unwrap_or(true)
    }
}

fn invalid(param: impl Into<String>, message: impl Into<String>) -> ApiError {
    ApiError::InvalidValue {
        param: param.into(),
        message: message.into(),
        code: "invalid_value",
    }
}

/// The canonical chat request for `req`, whose conversation is `history` (the items of earlier
/// turns, oldest first, as stored) followed by this turn's `input`.
pub fn to_chat(req: &ResponsesRequest, history: &[Value], input: &[Value]) -> Result<ChatRequest, ApiError> {
    let mut rest = Map::new();
    check_rest(req, &mut rest)?;
    let mut messages = Vec::with_capacity(history.len() + input.len() + 1);
    if let Some(text) = req.instructions.as_deref().filter(|t| !t.is_empty()) {
        messages.push(Message {
            role: "system".into(),
            content: Some(Content::Text(text.to_string())),
            ..Default::default()
        });
    }
    for (i, item) in history.iter().enumerate() {
        // An earlier turn's built-in tool call (OpenAI's web search, …): what it found is in the
        // answer that follows; no other provider can take the call itself back.
        let kind = item.get("type").and_then(Value::as_str).unwrap_or_default();
        if kind.ends_with("_call") && kind != "function_call" {
            continue;
        }
        push_item(&mut messages, item, &format!("previous_response_id (item {i})"))?;
    }
    for (i, item) in input.iter().enumerate() {
        push_item(&mut messages, item, &format!("input[{i}]"))?;
    }
    let tools = match &req.tools {
        None => None,
        Some(ts) if ts.is_empty() => None,
        Some(ts) => Some(
            ts.iter()
                .enumerate()
                .map(|(i, t)| function_tool(t, i))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let tool_choice = req.tool_choice.as_ref().map(tool_choice).transpose()?;
    let response_format = req
        .text
        .as_ref()
        .map(|t| text_format(t, &mut rest))
        .transpose()?
        .flatten();
    if let Some(r) = &req.reasoning {
        reasoning(r, &mut rest)?;
    }
    if let Some(m) = &req.metadata {
        rest.insert("metadata".into(), Value::Object(m.clone()));
    }
    let stream = req.streamed();
    Ok(ChatRequest {
        model: req.model.clone(),
        messages,
        stream: Some(stream),
        stream_options: stream.then(|| StreamOptions {
            include_usage: Some(true),
            rest: Map::new(),
        }),
        temperature: req.temperature,
        top_p: req.top_p,
        max_tokens: None,
        max_completion_tokens: req.max_output_tokens,
        stop: None,
        seed: None,
        user: req.user.clone(),
        n: None,
        tools,
        tool_choice,
        parallel_tool_calls: req.parallel_tool_calls,
        response_format,
        rest,
    })
}

/// `req` and `input` without what the chat form cannot carry (built-in tools and their choice,
/// reasoning summaries, other fields, item and part types): the chat form of a request that only
/// OpenAI can serve as sent, for what the stages read of it (routing, limits). Any other target
/// refuses it with the error `to_chat` gave.
pub fn translatable(req: &ResponsesRequest, input: &[Value]) -> (ResponsesRequest, Vec<Value>) {
    let mut r = req.clone();
    r.rest.retain(|k, _| {
        matches!(
            k.as_str(),
            "service_tier" | "prompt_cache_key" | "safety_identifier" | "stream_options"
        )
    });
    let function = |v: &Value| v.get("type").and_then(Value::as_str) == Some("function");
    if let Some(ts) = &mut r.tools {
        ts.retain(function);
    }
    r.tool_choice = r.tool_choice.filter(|c| c.is_string() || function(c));
    if let Some(Value::Object(o)) = &mut r.reasoning {
        o.remove("summary");
        o.remove("generate_summary");
    }
    let kept_part = |p: &Value| {
        matches!(
            p.get("type").and_then(Value::as_str),
            Some("input_text" | "output_text" | "refusal")
        ) || (p.get("type").and_then(Value::as_str) == Some("input_image") && p.get("image_url").is_some())
    };
    let input = input
        .iter()
        .filter(|i| {
            matches!(
                i.get("type").and_then(Value::as_str),
                None | Some("message" | "function_call" | "function_call_output")
            )
        })
        .cloned()
        .map(|mut i| {
            if let Some(Value::Array(parts)) = i.get_mut("content") {
                parts.retain(kept_part);
            }
            i
        })
        .collect();
    (r, input)
}

/// The fields besides the ones read above: those that change nothing here are accepted (and
/// those chat has too are carried); any other is refused by name.
fn check_rest(req: &ResponsesRequest, carried: &mut Map<String, Value>) -> Result<(), ApiError> {
    for (k, v) in &req.rest {
        let fine = match k.as_str() {
            "truncation" => v.is_null() || v == "disabled",
            "include" => v.is_null() || v.as_array().is_some_and(Vec::is_empty),
            "background" => v.is_null() || v == false,
            // `include_obfuscation` pads deltas against a side channel of OpenAI's own stream.
            "stream_options" => true,
            "service_tier" | "prompt_cache_key" | "safety_identifier" => {
                carried.insert(k.clone(), v.clone());
                true
            }
            _ => false,
        };
        if !fine {
            let why = match k.as_str() {
                "truncation" => "only \"disabled\" is supported",
                "include" => "no extra output can be included by this gateway",
                "background" => "background responses are not supported",
                "conversation" => "conversations are not supported; use previous_response_id",
                "prompt" => "prompt templates are not supported",
                _ => "this parameter is not supported",
            };
            return Err(ApiError::InvalidValue {
                param: k.clone(),
                message: why.into(),
                code: "unsupported_parameter",
            });
        }
    }
    Ok(())
}

/// One input item into the chat messages.
fn push_item(messages: &mut Vec<Message>, item: &Value, at: &str) -> Result<(), ApiError> {
    let kind = match item.get("type") {
        None if item.get("role").is_some() => "message",
        None => return Err(ApiError::MissingParam(format!("{at}.type"))),
        Some(t) => t
            .as_str()
            .ok_or_else(|| invalid(format!("{at}.type"), "expected a string"))?,
    };
    match kind {
        "message" => messages.push(message(item, at)?),
        "function_call" => {
            let field = |name: &str| -> Result<String, ApiError> {
                match item.get(name) {
                    Some(Value::String(s)) => Ok(s.clone()),
                    Some(_) => Err(invalid(format!("{at}.{name}"), "expected a string")),
                    None => Err(ApiError::MissingParam(format!("{at}.{name}"))),
                }
            };
            let call = ToolCall {
                id: field("call_id")?,
                kind: "function".into(),
                function: FunctionCall {
                    name: field("name")?,
                    arguments: field("arguments")?,
                },
            };
            // Calls right after an assistant message (or after other calls) belong to it.
            match messages.last_mut() {
                Some(m) if m.role == "assistant" => m.tool_calls.get_or_insert_with(Vec::new).push(call),
                _ => messages.push(Message {
                    role: "assistant".into(),
                    tool_calls: Some(vec![call]),
                    ..Default::default()
                }),
            }
        }
        "function_call_output" => {
            let call_id = match item.get("call_id") {
                Some(Value::String(s)) => s.clone(),
                _ => return Err(ApiError::MissingParam(format!("{at}.call_id"))),
            };
            let text = match item.get("output") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => text_parts(parts, &format!("{at}.output"))?,
                _ => return Err(ApiError::MissingParam(format!("{at}.output"))),
            };
            messages.push(Message {
                role: "tool".into(),
                content: Some(Content::Text(text)),
                tool_call_id: Some(call_id),
                ..Default::default()
            });
        }
        // A reasoning model's reasoning from an earlier turn: no chat model can take it back
        // (as earlier-turn thinking on /v1/messages); the answer it led to is kept.
        "reasoning" => {}
        other => {
            return Err(invalid(
                format!("{at}.type"),
                format!("input item type {other:?} is not supported by this gateway"),
            ))
        }
    }
    Ok(())
}

fn message(item: &Value, at: &str) -> Result<Message, ApiError> {
    let role = match item.get("role").and_then(Value::as_str) {
        Some(r @ ("user" | "system" | "developer" | "assistant")) => r,
        Some(other) => return Err(invalid(format!("{at}.role"), format!("unsupported role {other:?}"))),
        None => return Err(ApiError::MissingParam(format!("{at}.role"))),
    };
    let at_content = format!("{at}.content");
    let content = match item.get("content") {
        Some(Value::String(s)) => Content::Text(s.clone()),
        Some(Value::Array(parts)) if role == "user" => user_parts(parts, &at_content)?,
        Some(Value::Array(parts)) => Content::Text(text_parts(parts, &at_content)?),
        Some(_) => return Err(invalid(at_content, "expected a string or an array of content parts")),
        None => return Err(ApiError::MissingParam(at_content)),
    };
    Ok(Message {
        role: role.into(),
        content: Some(content),
        ..Default::default()
    })
}

/// Text-only content (system, developer and assistant messages, tool output): the texts joined.
fn text_parts(parts: &[Value], at: &str) -> Result<String, ApiError> {
    let mut text = String::new();
    for (j, p) in parts.iter().enumerate() {
        match part_kind(p, at, j)? {
            "input_text" | "output_text" => text.push_str(part_text(p, "text", at, j)?),
            "refusal" => text.push_str(part_text(p, "refusal", at, j)?),
            other => {
                return Err(invalid(
                    format!("{at}[{j}].type"),
                    format!("content part {other:?} is not supported here: only text can be translated"),
                ))
            }
        }
    }
    Ok(text)
}

/// A user message's parts: text and images.
fn user_parts(parts: &[Value], at: &str) -> Result<Content, ApiError> {
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        match part_kind(p, at, j)? {
            "input_text" => out.push(Part {
                kind: "text".into(),
                text: Some(part_text(p, "text", at, j)?.to_string()),
                ..Default::default()
            }),
            "input_image" => {
                let url = match (p.get("image_url"), p.get("file_id")) {
                    (Some(Value::String(u)), _) => u.clone(),
                    (_, Some(_)) => {
                        return Err(invalid(
                            format!("{at}[{j}].file_id"),
                            "file references are not supported: send the image as a URL or a data URL",
                        ))
                    }
                    _ => return Err(ApiError::MissingParam(format!("{at}[{j}].image_url"))),
                };
                let detail = p.get("detail").and_then(Value::as_str).map(str::to_string);
                out.push(Part {
                    kind: "image_url".into(),
                    image_url: Some(ImageUrl { url, detail }),
                    ..Default::default()
                });
            }
            other => {
                return Err(invalid(
                    format!("{at}[{j}].type"),
                    format!("content part {other:?} is not supported by this gateway"),
                ))
            }
        }
    }
    // One text part is the plain string chat clients send.
    if let [Part {
        kind, text: Some(t), ..
    }] = out.as_slice()
    {
        if kind == "text" {
            return Ok(Content::Text(t.clone()));
        }
    }
    Ok(Content::Parts(out))
}

fn part_kind<'a>(p: &'a Value, at: &str, j: usize) -> Result<&'a str, ApiError> {
    p.get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::MissingParam(format!("{at}[{j}].type")))
}

fn part_text<'a>(p: &'a Value, field: &str, at: &str, j: usize) -> Result<&'a str, ApiError> {
    p.get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::MissingParam(format!("{at}[{j}].{field}")))
}

/// A Responses function tool (flat) → a chat tool; any other tool type is refused by name: the
/// translated providers have no built-in tools behind this endpoint.
fn function_tool(t: &Value, i: usize) -> Result<Tool, ApiError> {
    let kind = t.get("type").and_then(Value::as_str).unwrap_or_default();
    if kind != "function" {
        return Err(invalid(
            format!("tools[{i}].type"),
            format!("tool type {kind:?} is not available: only function tools can be served here"),
        ));
    }
    let name = match t.get("name") {
        Some(Value::String(n)) if !n.is_empty() => n.clone(),
        _ => return Err(ApiError::MissingParam(format!("tools[{i}].name"))),
    };
    Ok(Tool {
        kind: "function".into(),
        function: FunctionDef {
            name,
            description: t.get("description").and_then(Value::as_str).map(str::to_string),
            parameters: t.get("parameters").filter(|p| !p.is_null()).cloned(),
            strict: t.get("strict").and_then(Value::as_bool),
        },
    })
}

fn tool_choice(c: &Value) -> Result<Value, ApiError> {
    match c {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => Ok(c.clone()),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            match o.get("name").and_then(Value::as_str) {
                Some(name) => Ok(json!({"type": "function", "function": {"name": name}})),
                None => Err(ApiError::MissingParam("tool_choice.name".into())),
            }
        }
        _ => Err(invalid(
            "tool_choice",
            "only \"auto\", \"none\", \"required\" or a function tool can be chosen here",
        )),
    }
}

/// `text.format` → `response_format`; `text.verbosity` is carried as chat's `verbosity`.
fn text_format(t: &Value, carried: &mut Map<String, Value>) -> Result<Option<Value>, ApiError> {
    if let Some(v) = t.get("verbosity").filter(|v| !v.is_null()) {
        carried.insert("verbosity".into(), v.clone());
    }
    let Some(f) = t.get("format").filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match f.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let Some(name) = f.get("name").and_then(Value::as_str) else {
                return Err(ApiError::MissingParam("text.format.name".into()));
            };
            let Some(schema) = f.get("schema").filter(|s| s.is_object()) else {
                return Err(ApiError::MissingParam("text.format.schema".into()));
            };
            let mut js = Map::new();
            js.insert("name".into(), json!(name));
            js.insert("schema".into(), schema.clone());
            for k in ["strict", "description"] {
                if let Some(v) = f.get(k).filter(|v| !v.is_null()) {
                    js.insert(k.into(), v.clone());
                }
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": js})))
        }
        other => Err(invalid(
            "text.format.type",
            format!("unknown format {:?}", other.unwrap_or_default()),
        )),
    }
}

/// `reasoning.effort` → chat's `reasoning_effort` (each translator maps it to its provider's
/// thinking settings); summaries cannot be produced from a chat answer, so asking for one is a 400.
fn reasoning(r: &Value, carried: &mut Map<String, Value>) -> Result<(), ApiError> {
    if let Some(e) = r.get("effort").filter(|e| !e.is_null()) {
        carried.insert("reasoning_effort".into(), e.clone());
    }
    for k in ["summary", "generate_summary"] {
        if r.get(k).is_some_and(|v| !v.is_null()) {
            return Err(ApiError::InvalidValue {
                param: format!("reasoning.{k}"),
                message: "reasoning summaries are not available through this gateway".into(),
                code: "unsupported_parameter",
            });
        }
    }
    Ok(())
}
