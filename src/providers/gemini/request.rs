//! OpenAI chat request → Gemini `GenerateContentRequest`.
//!
//! Gemini differs in ways a faithful translation must handle: system prompts are a top-level
//! `systemInstruction`; turns are `user`/`model` and consecutive same-role turns are merged;
//! tool results are `functionResponse` parts of a `user` turn that name the *function* (OpenAI
//! names the call id, so the name is looked up in the earlier assistant turns) and carry a JSON
//! object; tool arguments are objects, not JSON text; parameter schemas are an OpenAPI subset
//! (`schema`); sampling options live in `generationConfig`.
//!
//! Thought signatures: Gemini 3 rejects a history whose function calls lack the signature the
//! model attached to them. OpenAI's format has no place for it, so the response side folds it into
//! the tool call id (`response::tool_call_id`) and this side unfolds it; a call without one (made
//! by another model) gets Google's documented placeholder on Gemini 3 models.

use serde_json::{json, Map, Value};

use super::response::signature_of;
use super::schema;
use super::types::{
    Blob, Content, FileData, FunctionCall, FunctionCallingConfig, FunctionDeclaration, FunctionResponse,
    GenerateContentRequest, GenerationConfig, Part, Tool, ToolConfig,
};
use crate::api::chat::{ChatRequest, Content as ChatContent, Message, Part as ChatPart};
use crate::api::ApiError;
use crate::providers::translate::{self, push, Role, ToolChoiceOf, Turn};

/// The value Google documents for function calls that no Gemini 3 model produced (history from
/// another model), which skips signature validation.
pub const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

/// Whether `model` validates thought signatures on function calls (the Gemini 3 family).
pub fn requires_signatures(model: &str) -> bool {
    model.trim_start_matches("models/").starts_with("gemini-3")
}

pub fn to_gemini(req: &ChatRequest, model: &str) -> Result<GenerateContentRequest, ApiError> {
    let strict = requires_signatures(model);
    let mut system: Vec<Part> = Vec::new();
    let mut contents: Vec<Content> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        match translate::role(m, i, &["tool", "function"])? {
            Role::System => system.extend(text_parts(m.content.as_ref())),
            Role::User => push(&mut contents, "user", user_parts(m, i)?),
            Role::Assistant => push(&mut contents, "model", model_parts(m, i, strict)?),
            Role::Tool => {
                let name = function_name(&req.messages[..i], m, i)?;
                let part = Part {
                    function_response: Some(FunctionResponse {
                        name,
                        response: tool_response(m.content.as_ref()),
                    }),
                    ..Default::default()
                };
                push(&mut contents, "user", vec![part]);
            }
        }
    }
    let contents = translate::non_empty(
        contents,
        "at least one user or assistant message with content is required",
    )?;

    let declarations = match &req.tools {
        None => Vec::new(),
        Some(tools) => tools
            .iter()
            .map(|t| {
                if t.kind != "function" {
                    return Err(ApiError::Unsupported(format!(
                        "Gemini models do not support tools of type {:?}",
                        t.kind
                    )));
                }
                Ok(FunctionDeclaration {
                    name: t.function.name.clone(),
                    description: t.function.description.clone(),
                    parameters: t.function.parameters.as_ref().and_then(schema::to_parameters),
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let tool_config = if declarations.is_empty() {
        None
    } else {
        tool_choice(req.tool_choice.as_ref())?
    };
    if req.parallel_tool_calls.is_some() {
        tracing::debug!("dropping `parallel_tool_calls`: Gemini has no such switch");
    }

    let mut generation = GenerationConfig {
        stop_sequences: req.stop.as_ref().map(|s| s.to_vec()).filter(|s| !s.is_empty()),
        candidate_count: req.n.filter(|n| *n != 1),
        max_output_tokens: req.max_output_tokens(),
        temperature: req.temperature,
        top_p: req.top_p,
        seed: req.seed,
        ..Default::default()
    };
    if let Some(rf) = &req.response_format {
        match rf.get("type").and_then(Value::as_str) {
            Some("text") | None => {}
            Some("json_object") => generation.response_mime_type = Some("application/json".into()),
            Some("json_schema") => {
                generation.response_mime_type = Some("application/json".into());
                generation.response_schema = rf.pointer("/json_schema/schema").map(schema::to_schema);
            }
            Some(other) => return Err(ApiError::invalid("response_format", format!("unknown type {other:?}"))),
        }
    }

    let mut rest = Map::new();
    let mut native_generation: Option<&Map<String, Value>> = None;
    for (k, v) in &req.rest {
        match k.as_str() {
            "presence_penalty" => generation.presence_penalty = nonzero(v),
            "frequency_penalty" => generation.frequency_penalty = nonzero(v),
            "top_k" => generation.top_k = v.as_u64(),
            // Gemini-native fields sent through the OpenAI API (e.g. with the SDK's `extra_body`).
            "safetySettings" | "cachedContent" | "labels" => {
                rest.insert(k.clone(), v.clone());
            }
            "thinkingConfig" => {
                generation.rest.insert(k.clone(), v.clone());
            }
            "generationConfig" => native_generation = v.as_object(),
            _ => tracing::debug!(field = %k, "dropping a field Gemini does not accept"),
        }
    }
    if let Some(native) = native_generation {
        // The translated OpenAI fields win; native ones fill in what OpenAI cannot say.
        let ours = serde_json::to_value(&generation).unwrap_or(Value::Null);
        for (k, v) in native {
            if ours.get(k).is_none() {
                generation.rest.insert(k.clone(), v.clone());
            }
        }
    }
    // OpenAI's reasoning effort: Gemini 3's `thinkingLevel`, earlier models' `thinkingBudget`
    // (a client's own `thinkingConfig` wins).
    if let Some(effort) = req.rest.get("reasoning_effort").and_then(Value::as_str) {
        if !generation.rest.contains_key("thinkingConfig") {
            let config = if model.starts_with("gemini-3") {
                let level = if matches!(effort, "none" | "minimal" | "low") {
                    "low"
                } else {
                    "high"
                };
                Some(serde_json::json!({"thinkingLevel": level}))
            } else {
                crate::providers::fidelity::effort_budget(effort).map(|b| serde_json::json!({"thinkingBudget": b}))
            };
            match config {
                Some(c) => {
                    generation.rest.insert("thinkingConfig".into(), c);
                }
                None => tracing::debug!(effort, "reasoning effort unknown to Gemini: dropped"),
            }
        }
    }
    let generation = (generation != GenerationConfig::default()).then_some(generation);

    Ok(GenerateContentRequest {
        contents,
        system_instruction: (!system.is_empty()).then_some(Content {
            role: None,
            parts: system,
        }),
        tools: (!declarations.is_empty()).then(|| {
            vec![Tool {
                function_declarations: Some(declarations),
                rest: Map::new(),
            }]
        }),
        tool_config,
        generation_config: generation,
        rest,
    })
}

fn nonzero(v: &Value) -> Option<f64> {
    v.as_f64().filter(|x| *x != 0.0)
}

fn tool_choice(choice: Option<&Value>) -> Result<Option<ToolConfig>, ApiError> {
    let config = |mode: &str, names: Option<Vec<String>>| {
        Some(ToolConfig {
            function_calling_config: Some(FunctionCallingConfig {
                mode: Some(mode.into()),
                allowed_function_names: names,
            }),
        })
    };
    Ok(match choice.map(translate::tool_choice).transpose()? {
        None => None,
        Some(ToolChoiceOf::Auto) => config("AUTO", None),
        Some(ToolChoiceOf::Required) => config("ANY", None),
        Some(ToolChoiceOf::None) => config("NONE", None),
        Some(ToolChoiceOf::Function(name)) => config("ANY", Some(vec![name.to_string()])),
    })
}

/// OpenAI allows consecutive turns and sends parallel tool results as separate messages; Gemini
/// wants one turn answering all the calls of the turn before, so turns of one role are merged
/// (`translate::push`).
impl Turn for Content {
    type Block = Part;

    fn new(role: &str, parts: Vec<Part>) -> Self {
        Content {
            role: Some(role.into()),
            parts,
        }
    }

    fn role(&self) -> &str {
        self.role.as_deref().unwrap_or_default()
    }

    fn append(&mut self, parts: Vec<Part>) {
        self.parts.extend(parts);
    }
}

/// The non-empty text parts of a content (Google rejects empty text parts).
fn text_parts(c: Option<&ChatContent>) -> Vec<Part> {
    match c {
        None => Vec::new(),
        Some(ChatContent::Text(t)) if t.is_empty() => Vec::new(),
        Some(ChatContent::Text(t)) => vec![Part::text(t.clone())],
        Some(ChatContent::Parts(parts)) => parts
            .iter()
            .filter_map(|p| p.text.clone())
            .filter(|t| !t.is_empty())
            .map(Part::text)
            .collect(),
    }
}

fn user_parts(m: &Message, i: usize) -> Result<Vec<Part>, ApiError> {
    let Some(ChatContent::Parts(parts)) = &m.content else {
        return Ok(text_parts(m.content.as_ref()));
    };
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        match p.kind.as_str() {
            "text" => out.extend(p.text.as_ref().filter(|t| !t.is_empty()).map(|t| Part::text(t.clone()))),
            "image_url" => {
                let url = p.image_url.as_ref().ok_or_else(|| {
                    ApiError::invalid("messages", format!("message {i}: image_url part without image_url"))
                })?;
                out.push(url_part(&url.url, i)?);
            }
            "input_audio" => out.push(audio_part(p, i)?),
            "file" => {
                let data = p
                    .rest
                    .get("file")
                    .and_then(|f| f.get("file_data"))
                    .and_then(Value::as_str);
                match data {
                    Some(url) => out.push(url_part(url, i)?),
                    None => {
                        return Err(ApiError::Unsupported(format!(
                            "message {i}: Gemini models take files as base64 `file_data`, not `file_id`"
                        )))
                    }
                }
            }
            other => return Err(translate::unsupported_part(i, other, "Gemini")),
        }
    }
    Ok(out)
}

/// A base64 data URL → `inlineData`; an http(s) URL → `fileData` (MIME type from the extension).
fn url_part(url: &str, i: usize) -> Result<Part, ApiError> {
    let as_data = crate::api::chat::ImageUrl {
        url: url.to_string(),
        detail: None,
    };
    if let Some((mime, data)) = as_data.as_data() {
        return Ok(Part {
            inline_data: Some(Blob {
                mime_type: mime.to_string(),
                data: data.to_string(),
            }),
            ..Default::default()
        });
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        return Ok(Part {
            file_data: Some(FileData {
                mime_type: mime_from_extension(url).map(str::to_string),
                file_uri: url.to_string(),
            }),
            ..Default::default()
        });
    }
    Err(ApiError::invalid(
        "messages",
        format!("message {i}: a media URL must be http(s) or a base64 data URL"),
    ))
}

fn audio_part(p: &ChatPart, i: usize) -> Result<Part, ApiError> {
    let audio = p.rest.get("input_audio");
    let data = audio.and_then(|a| a.get("data")).and_then(Value::as_str);
    let format = audio.and_then(|a| a.get("format")).and_then(Value::as_str);
    match (data, format) {
        (Some(data), Some(format)) => Ok(Part {
            inline_data: Some(Blob {
                mime_type: format!("audio/{format}"),
                data: data.to_string(),
            }),
            ..Default::default()
        }),
        _ => Err(ApiError::invalid(
            "messages",
            format!("message {i}: input_audio needs `data` and `format`"),
        )),
    }
}

fn mime_from_extension(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        "mp3" => "audio/mp3",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        _ => return None,
    })
}

fn model_parts(m: &Message, i: usize, strict: bool) -> Result<Vec<Part>, ApiError> {
    let mut out = text_parts(m.content.as_ref());
    for (n, tc) in m.tool_calls.iter().flatten().enumerate() {
        let args = tc
            .arguments_json()
            .map_err(|e| ApiError::invalid("messages", format!("message {i}: {e}")))?;
        if !args.is_object() {
            return Err(ApiError::invalid(
                "messages",
                format!("message {i}: tool call {:?} arguments must be a JSON object", tc.id),
            ));
        }
        let mut signature = signature_of(&tc.id);
        if signature.is_none() && strict && n == 0 {
            signature = Some(SKIP_SIGNATURE.to_string());
        }
        out.push(Part {
            function_call: Some(FunctionCall {
                id: None,
                name: tc.function.name.clone(),
                args: Some(args),
            }),
            thought_signature: signature,
            ..Default::default()
        });
    }
    Ok(out)
}

/// The function a tool result answers: the name of the call with its id in the latest earlier
/// assistant turn (ids may repeat across turns), else the message's own `name`.
fn function_name(earlier: &[Message], m: &Message, i: usize) -> Result<String, ApiError> {
    if let Some(id) = &m.tool_call_id {
        let found = earlier
            .iter()
            .rev()
            .filter(|e| e.role == "assistant")
            .flat_map(|e| e.tool_calls.iter().flatten())
            .find(|tc| &tc.id == id);
        if let Some(tc) = found {
            return Ok(tc.function.name.clone());
        }
    }
    match &m.name {
        Some(n) if !n.is_empty() => Ok(n.clone()),
        _ => Err(ApiError::invalid(
            "messages",
            format!(
                "message {i}: tool result {:?} answers no tool call of an earlier assistant message",
                m.tool_call_id.as_deref().unwrap_or_default()
            ),
        )),
    }
}

/// A tool result as the JSON object Gemini requires: a JSON object result as is, anything else
/// (JSON or plain text) under `result`.
fn tool_response(c: Option<&ChatContent>) -> Value {
    let text = c.map(ChatContent::text).unwrap_or_default();
    match serde_json::from_str::<Value>(&text) {
        Ok(v @ Value::Object(_)) => v,
        Ok(v) => json!({ "result": v }),
        Err(_) => json!({ "result": text }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn translate(v: Value) -> Value {
        let req: ChatRequest = serde_json::from_value(v).unwrap();
        serde_json::to_value(to_gemini(&req, "gemini-2.5-flash").unwrap()).unwrap()
    }

    #[test]
    fn system_turns_and_sampling() {
        let out = translate(json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
                {"role": "user", "content": "Hi"},
                {"role": "user", "content": ""},
                {"role": "user", "content": "there"},
                {"role": "assistant", "content": "Bonjour"}
            ],
            "temperature": 0.2, "top_p": 0.9, "max_tokens": 50, "max_completion_tokens": 60,
            "stop": "END", "seed": 7, "n": 2, "presence_penalty": 0, "frequency_penalty": 0.5,
            "user": "u1", "logit_bias": {"1": 2}
        }));
        assert_eq!(
            out,
            json!({
                "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Use French."}]},
                "contents": [
                    {"role": "user", "parts": [{"text": "Hi"}, {"text": "there"}]},
                    {"role": "model", "parts": [{"text": "Bonjour"}]}
                ],
                "generationConfig": {
                    "temperature": 0.2, "topP": 0.9, "maxOutputTokens": 60, "stopSequences": ["END"],
                    "seed": 7, "candidateCount": 2, "frequencyPenalty": 0.5
                }
            })
        );
    }

    #[test]
    fn media_parts() {
        let out = translate(json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.JPG?size=2", "detail": "high"}},
            {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}}
        ]}]}));
        assert_eq!(
            out["contents"][0]["parts"],
            json!([
                {"text": "What is this?"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.JPG?size=2"}},
                {"inlineData": {"mimeType": "audio/wav", "data": "UklGR"}},
                {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}}
            ])
        );
        let bad: ChatRequest = serde_json::from_value(json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]}))
        .unwrap();
        assert!(matches!(to_gemini(&bad, "g"), Err(ApiError::InvalidField { .. })));
    }

    #[test]
    fn tool_calls_and_results_find_their_function() {
        let out = translate(json!({"model": "m", "messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": ""}}
            ]},
            {"role": "tool", "tool_call_id": "call_0", "content": "{\"temp\":21}"},
            {"role": "tool", "tool_call_id": "call_1", "content": "noon"},
            {"role": "user", "content": "Thanks"}
        ]}));
        assert_eq!(
            out["contents"],
            json!([
                {"role": "user", "parts": [{"text": "Weather in Paris and Rome?"}]},
                {"role": "model", "parts": [
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                    {"functionCall": {"name": "get_time", "args": {}}}
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
                    {"functionResponse": {"name": "get_time", "response": {"result": "noon"}}},
                    {"text": "Thanks"}
                ]}
            ])
        );
    }

    #[test]
    fn repeated_ids_resolve_to_the_latest_call() {
        let out = translate(json!({"model": "m", "messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "tool_calls": [{"id": "call_0", "function": {"name": "first", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_0", "content": "1"},
            {"role": "assistant", "tool_calls": [{"id": "call_0", "function": {"name": "second", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_0", "content": "[1,2]"}
        ]}));
        assert_eq!(out["contents"][2]["parts"][0]["functionResponse"]["name"], "first");
        assert_eq!(
            out["contents"][4]["parts"][0]["functionResponse"],
            json!({"name": "second", "response": {"result": [1, 2]}})
        );
        let orphan: ChatRequest = serde_json::from_value(json!({"model": "m", "messages": [
            {"role": "user", "content": "a"}, {"role": "tool", "tool_call_id": "nope", "content": "x"}]}))
        .unwrap();
        assert!(matches!(to_gemini(&orphan, "g"), Err(ApiError::InvalidField { .. })));
    }

    #[test]
    fn signatures_round_trip_and_placeholder_on_gemini_3() {
        let id = super::super::response::tool_call_id(0, Some("c2ln+/w="));
        let req: ChatRequest = serde_json::from_value(json!({"model": "m", "messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "tool_calls": [{"id": id, "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": id, "content": "1"},
            {"role": "assistant", "tool_calls": [
                {"id": "call_abc", "function": {"name": "g", "arguments": "{}"}},
                {"id": "call_def", "function": {"name": "g", "arguments": "{}"}}]},
        ]}))
        .unwrap();
        let g3 = serde_json::to_value(to_gemini(&req, "gemini-3-pro-preview").unwrap()).unwrap();
        assert_eq!(g3["contents"][1]["parts"][0]["thoughtSignature"], "c2ln+/w=");
        assert_eq!(g3["contents"][3]["parts"][0]["thoughtSignature"], SKIP_SIGNATURE);
        assert!(g3["contents"][3]["parts"][1].get("thoughtSignature").is_none());
        let g25 = serde_json::to_value(to_gemini(&req, "gemini-2.5-pro").unwrap()).unwrap();
        assert_eq!(g25["contents"][1]["parts"][0]["thoughtSignature"], "c2ln+/w=");
        assert!(g25["contents"][3]["parts"][0].get("thoughtSignature").is_none());
    }

    #[test]
    fn tools_choice_and_json_modes() {
        let out = translate(json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tools": [
                {"type": "function", "function": {"name": "lookup", "description": "Find",
                    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"],
                        "additionalProperties": false}, "strict": true}},
                {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}
            ],
            "tool_choice": {"type": "function", "function": {"name": "lookup"}},
            "parallel_tool_calls": false,
            "response_format": {"type": "json_schema", "json_schema": {"name": "r", "strict": true,
                "schema": {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": false}}}
        }));
        assert_eq!(
            out["tools"],
            json!([{"functionDeclarations": [
                {"name": "lookup", "description": "Find",
                    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}},
                {"name": "now"}
            ]}])
        );
        assert_eq!(
            out["toolConfig"],
            json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["lookup"]}})
        );
        assert_eq!(
            out["generationConfig"],
            json!({"responseMimeType": "application/json",
                "responseSchema": {"type": "object", "properties": {"a": {"type": "integer"}}}})
        );
        for (choice, mode) in [("auto", "AUTO"), ("required", "ANY"), ("none", "NONE")] {
            let out = translate(json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": choice,
                "response_format": {"type": "json_object"}}));
            assert_eq!(out["toolConfig"]["functionCallingConfig"]["mode"], mode);
            assert_eq!(out["generationConfig"], json!({"responseMimeType": "application/json"}));
        }
    }

    #[test]
    fn native_fields_pass_and_ours_win() {
        let out = translate(json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "temperature": 1.0, "top_k": 40,
            "safetySettings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_NONE"}],
            "generationConfig": {"temperature": 0.1, "thinkingConfig": {"thinkingBudget": 0}},
            "reasoning_effort": "low"}));
        assert_eq!(
            out["generationConfig"],
            json!({"temperature": 1.0, "topK": 40, "thinkingConfig": {"thinkingBudget": 0}})
        );
        assert_eq!(out["safetySettings"][0]["threshold"], "BLOCK_NONE");
        assert!(out.get("reasoning_effort").is_none());
    }

    #[test]
    fn empty_conversations_and_bad_roles_are_client_errors() {
        for messages in [
            json!([{"role": "system", "content": "s"}]),
            json!([{"role": "critic", "content": "x"}]),
        ] {
            let req: ChatRequest = serde_json::from_value(json!({"model": "m", "messages": messages})).unwrap();
            assert!(matches!(
                to_gemini(&req, "g"),
                Err(ApiError::InvalidField { field: "messages", .. })
            ));
        }
    }
}
