//! Request validation of the mock's Gemini dialect: the field names, shapes and rules Google
//! enforces (see the parent module's list), each failure answered with Google's message.

use serde_json::{Map, Value};

use super::{invalid, unknown_name};
use crate::mock::Reply;

/// Checks that every key of `obj` is a known field (either spelling: protobuf JSON accepts the
/// lowerCamel and the original snake_case name).
pub(super) fn known_fields(obj: &Map<String, Value>, known: &[&str], at: &str) -> Result<(), Reply> {
    for k in obj.keys() {
        let camel = snake_to_camel(k);
        if !known.contains(&camel.as_str()) {
            return Err(unknown_name(k, at));
        }
    }
    Ok(())
}

fn snake_to_camel(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut upper = false;
    for c in s.chars() {
        if c == '_' && !out.is_empty() {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// A field by its lowerCamel name, or its snake_case spelling.
pub(super) fn field<'a>(obj: &'a Map<String, Value>, camel: &str) -> Option<&'a Value> {
    obj.get(camel)
        .or_else(|| obj.iter().find(|(k, _)| snake_to_camel(k) == camel).map(|(_, v)| v))
}

pub(super) const REQUEST_FIELDS: &[&str] = &[
    "model",
    "contents",
    "systemInstruction",
    "tools",
    "toolConfig",
    "safetySettings",
    "generationConfig",
    "cachedContent",
    "labels",
];
const PART_FIELDS: &[&str] = &[
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
    "thought",
    "thoughtSignature",
    "videoMetadata",
    "partMetadata",
    "mediaResolution",
];
const DATA_FIELDS: &[&str] = &[
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
];
const GENERATION_FIELDS: &[&str] = &[
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseModalities",
    "candidateCount",
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "enableEnhancedCivicAnswers",
    "speechConfig",
    "thinkingConfig",
    "imageConfig",
    "mediaResolution",
];
const SCHEMA_FIELDS: &[&str] = &[
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
];

fn is_base64(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && s.len() - body.len() <= 2
        && body.len() % 4 != 1
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_'))
}

/// An OpenAPI-subset `Schema`, recursively.
fn schema(v: &Value, at: &str) -> Result<(), Reply> {
    let Some(obj) = v.as_object() else {
        return Err(invalid(format!("Invalid value at '{at}': expected a Schema object")));
    };
    known_fields(obj, SCHEMA_FIELDS, at)?;
    if let Some(t) = obj.get("type") {
        let ok = t.as_str().is_some_and(|t| {
            ["string", "number", "integer", "boolean", "array", "object", "null"]
                .contains(&t.to_ascii_lowercase().as_str())
        });
        if !ok {
            return Err(invalid(format!("Invalid value at '{at}.type': {t}")));
        }
    }
    if let Some(Value::Object(props)) = obj.get("properties") {
        for (k, p) in props {
            schema(p, &format!("{at}.properties[{k}]"))?;
        }
    }
    if let Some(items) = obj.get("items") {
        schema(items, &format!("{at}.items"))?;
    }
    if let Some(Value::Array(any)) = obj.get("anyOf") {
        for (i, s) in any.iter().enumerate() {
            schema(s, &format!("{at}.any_of[{i}]"))?;
        }
    }
    Ok(())
}

pub(super) fn content(v: &Value, at: &str, system: bool) -> Result<(), Reply> {
    let Some(c) = v.as_object() else {
        return Err(invalid(format!("Invalid value at '{at}': expected a Content object")));
    };
    known_fields(c, &["role", "parts"], at)?;
    if let Some(role) = c.get("role") {
        if !system && !matches!(role.as_str(), Some("user" | "model")) {
            return Err(invalid("Please use a valid role: user, model."));
        }
    }
    let parts = c.get("parts").and_then(Value::as_array).filter(|p| !p.is_empty());
    let Some(parts) = parts else {
        return Err(invalid(format!(
            "* GenerateContentRequest.{at}.parts: contents.parts must not be empty."
        )));
    };
    for (j, p) in parts.iter().enumerate() {
        let at = format!("{at}.parts[{j}]");
        let Some(p) = p.as_object() else {
            return Err(invalid(format!("Invalid value at '{at}': expected a Part object")));
        };
        known_fields(p, PART_FIELDS, &at)?;
        let data: Vec<String> = p
            .keys()
            .map(|k| snake_to_camel(k))
            .filter(|k| DATA_FIELDS.contains(&k.as_str()))
            .collect();
        match data.as_slice() {
            [] => {
                return Err(invalid(format!(
                    "* GenerateContentRequest.{at}.data: required oneof field 'data' must have one initialized field"
                )))
            }
            [_] => {}
            [_, second, ..] => {
                return Err(invalid(format!(
                    "Invalid JSON payload received. Oneof field 'data' is already set. Cannot set '{second}'"
                )))
            }
        }
        if let Some(t) = field(p, "text") {
            if t.as_str().is_none_or(str::is_empty) {
                return Err(invalid(
                    "Unable to submit request because it has an empty text parameter. Add a value to the parameter and try again.",
                ));
            }
        }
        if let Some(d) = field(p, "inlineData") {
            let ok = field_str(d, "mimeType").is_some() && field_str(d, "data").is_some_and(is_base64);
            if !ok {
                return Err(invalid(format!(
                    "* GenerateContentRequest.{at}.inline_data: needs mimeType and base64 data"
                )));
            }
        }
        if let Some(f) = field(p, "fileData") {
            if field_str(f, "fileUri").is_none() {
                return Err(invalid(format!(
                    "* GenerateContentRequest.{at}.file_data.file_uri: file_uri is required"
                )));
            }
        }
        if let Some(fc) = field(p, "functionCall") {
            let ok =
                field_str(fc, "name").is_some_and(|n| !n.is_empty()) && fc.get("args").is_none_or(Value::is_object);
            if !ok {
                return Err(invalid(format!(
                    "* GenerateContentRequest.{at}.function_call: needs a name and object args"
                )));
            }
        }
        if let Some(fr) = field(p, "functionResponse") {
            let ok = field_str(fr, "name").is_some_and(|n| !n.is_empty())
                && fr.get("response").is_some_and(Value::is_object);
            if !ok {
                return Err(invalid(format!(
                    "* GenerateContentRequest.{at}.function_response: needs a name and an object response"
                )));
            }
        }
        if let Some(sig) = field(p, "thoughtSignature") {
            if !sig.as_str().is_some_and(is_base64) {
                return Err(invalid(format!(
                    "Invalid value at '{at}.thought_signature' (TYPE_BYTES), Base64 decoding failed for \"{}\"",
                    sig.as_str().unwrap_or_default()
                )));
            }
        }
    }
    Ok(())
}

pub(super) fn field_str<'a>(v: &'a Value, camel: &str) -> Option<&'a str> {
    field(v.as_object()?, camel)?.as_str()
}

/// Gemini 3 wants the thought signature back on the first function call of each model step of
/// the current turn (everything after the last user turn with ordinary content).
pub(super) fn check_signatures(contents: &[Value]) -> Result<(), Reply> {
    let is_user_input = |c: &Value| {
        c.get("role").and_then(Value::as_str).is_none_or(|r| r == "user")
            && parts_of(c).iter().any(|p| field(p, "functionResponse").is_none())
    };
    let start = contents.iter().rposition(is_user_input).unwrap_or(0);
    for (i, c) in contents.iter().enumerate().skip(start) {
        if c.get("role").and_then(Value::as_str) != Some("model") {
            continue;
        }
        let first_call = parts_of(c)
            .into_iter()
            .enumerate()
            .find(|(_, p)| field(p, "functionCall").is_some());
        if let Some((j, p)) = first_call {
            if field(p, "thoughtSignature").is_none() {
                let name = field(p, "functionCall")
                    .and_then(|f| field_str(f, "name"))
                    .unwrap_or_default();
                return Err(invalid(format!(
                    "Function call is missing a thought_signature in functionCall parts. This is required for tools \
                     to work correctly. Additional data, function call `default_api:{name}` , position {}. Please \
                     refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details. \
                     (contents[{i}].parts[{j}])",
                    i + 1
                )));
            }
        }
    }
    Ok(())
}

pub(super) fn parts_of(c: &Value) -> Vec<&Map<String, Value>> {
    c.get("parts")
        .and_then(Value::as_array)
        .map(|ps| ps.iter().filter_map(Value::as_object).collect())
        .unwrap_or_default()
}

/// The declared function names, after checking `tools` and `toolConfig`.
pub(super) fn tools(obj: &Map<String, Value>) -> Result<Vec<String>, Reply> {
    let mut names = Vec::new();
    if let Some(tools) = field(obj, "tools") {
        let Some(tools) = tools.as_array() else {
            return Err(invalid("Invalid value at 'tools': expected a list"));
        };
        for (i, t) in tools.iter().enumerate() {
            let at = format!("tools[{i}]");
            let Some(t) = t.as_object() else {
                return Err(invalid(format!("Invalid value at '{at}'")));
            };
            let known = [
                "functionDeclarations",
                "googleSearch",
                "googleSearchRetrieval",
                "codeExecution",
                "urlContext",
                "fileSearch",
                "googleMaps",
                "computerUse",
            ];
            known_fields(t, &known, &at)?;
            for (j, d) in field(t, "functionDeclarations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let at = format!("{at}.function_declarations[{j}]");
                let Some(d) = d.as_object() else {
                    return Err(invalid(format!("Invalid value at '{at}'")));
                };
                let known = [
                    "name",
                    "description",
                    "parameters",
                    "parametersJsonSchema",
                    "response",
                    "responseJsonSchema",
                    "behavior",
                ];
                known_fields(d, &known, &at)?;
                let name = d.get("name").and_then(Value::as_str).unwrap_or_default();
                let valid = !name.is_empty()
                    && name.len() <= 64
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b':'));
                if !valid {
                    return Err(invalid(format!(
                        "* GenerateContentRequest.{at}.name: Invalid function name."
                    )));
                }
                if let Some(p) = d.get("parameters") {
                    schema(p, &format!("{at}.parameters"))?;
                }
                names.push(name.to_string());
            }
        }
    }
    if let Some(tc) = field(obj, "toolConfig") {
        let Some(tc) = tc.as_object() else {
            return Err(invalid("Invalid value at 'tool_config'"));
        };
        known_fields(tc, &["functionCallingConfig", "retrievalConfig"], "tool_config")?;
        if let Some(fcc) = field(tc, "functionCallingConfig").and_then(Value::as_object) {
            known_fields(
                fcc,
                &["mode", "allowedFunctionNames"],
                "tool_config.function_calling_config",
            )?;
            let mode = fcc.get("mode").and_then(Value::as_str).unwrap_or("AUTO");
            if !matches!(mode, "AUTO" | "ANY" | "NONE" | "VALIDATED" | "MODE_UNSPECIFIED") {
                return Err(invalid(format!(
                    "Invalid value at 'tool_config.function_calling_config.mode' (type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode), \"{mode}\""
                )));
            }
            if let Some(allowed) = field(fcc, "allowedFunctionNames").and_then(Value::as_array) {
                if !matches!(mode, "ANY" | "VALIDATED") {
                    return Err(invalid(
                        "* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: only allowed when mode is ANY.",
                    ));
                }
                if let Some(n) = allowed
                    .iter()
                    .filter_map(Value::as_str)
                    .find(|n| !names.iter().any(|d| d == n))
                {
                    return Err(invalid(format!(
                        "* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: function `{n}` is not declared."
                    )));
                }
            }
        }
    }
    Ok(names)
}

/// What the answer needs from a valid `generationConfig`.
pub(super) struct Generation {
    pub candidates: u32,
    pub max_tokens: Option<u64>,
}

pub(super) fn generation(obj: &Map<String, Value>) -> Result<Generation, Reply> {
    let mut g = Generation {
        candidates: 1,
        max_tokens: None,
    };
    let Some(gc) = field(obj, "generationConfig") else {
        return Ok(g);
    };
    let Some(gc) = gc.as_object() else {
        return Err(invalid("Invalid value at 'generation_config'"));
    };
    known_fields(gc, GENERATION_FIELDS, "generation_config")?;
    if let Some(n) = field(gc, "candidateCount") {
        g.candidates = n
            .as_u64()
            .filter(|n| (1..=8).contains(n))
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| invalid("* GenerateContentRequest.generation_config.candidate_count: must be in [1, 8]"))?;
    }
    if let Some(m) = field(gc, "maxOutputTokens") {
        g.max_tokens = Some(m.as_u64().filter(|m| *m >= 1).ok_or_else(|| {
            invalid("* GenerateContentRequest.generation_config.max_output_tokens: must be positive")
        })?);
    }
    let mime = field(gc, "responseMimeType").and_then(Value::as_str);
    if let Some(m) = mime {
        if !matches!(m, "text/plain" | "application/json" | "text/x.enum") {
            return Err(invalid(format!(
                "* GenerateContentRequest.generation_config.response_mime_type: allowed mimetypes are `text/plain`, `application/json`, `text/x.enum`; got {m}"
            )));
        }
    }
    if let Some(s) = field(gc, "responseSchema") {
        if !matches!(mime, Some("application/json" | "text/x.enum")) {
            return Err(invalid(
                "* GenerateContentRequest.generation_config.response_schema: only allowed with response_mime_type application/json or text/x.enum",
            ));
        }
        schema(s, "generation_config.response_schema")?;
    }
    Ok(g)
}

/// Characters counted for tokens in a content: text, and function call/response JSON.
pub(super) fn content_chars(c: &Value) -> u64 {
    parts_of(c)
        .iter()
        .map(|p| {
            if let Some(t) = field(p, "text").and_then(Value::as_str) {
                t.chars().count() as u64
            } else if let Some(f) = field(p, "functionCall").or_else(|| field(p, "functionResponse")) {
                f.to_string().chars().count() as u64
            } else {
                0
            }
        })
        .sum()
}
