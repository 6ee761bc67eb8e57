//! Google Vertex AI, as the mock serves it: below
//! `/v1/projects/{project}/locations/{region}/publishers/{google|anthropic}/models/{model}:{method}`,
//! with an OAuth access token (`Authorization: Bearer ya29.…`, as Google's token endpoints issue
//! them). Gemini's methods answer as the Gemini mock does; Claude's (`rawPredict`,
//! `streamRawPredict`) as the Messages mock does, once the body is checked the way Vertex checks
//! it: `anthropic_version: "vertex-2023-10-16"` in it, and no `model` (the path names it).

use bytes::Bytes;
use http::Method;
use pingora::http::RequestHeader;
use serde_json::{json, Value};

use super::behavior::Behavior;
use super::openai::json_reply;
use super::{anthropic, gemini, Reply};

/// A Vertex call: the publisher, the model and the method of its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub anthropic: bool,
    pub model: String,
    pub method: String,
}

fn error(status: u16, message: impl Into<String>) -> Reply {
    let name = match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        404 => "NOT_FOUND",
        _ => "UNKNOWN",
    };
    json_reply(
        status,
        &json!({"error": {"code": status, "message": message.into(), "status": name}}),
    )
}

pub(crate) fn route(method: &Method, path: &str) -> Result<Call, Reply> {
    let not_found = || error(404, format!("The requested URL {path} was not found on this server."));
    let rest = path.strip_prefix("/v1/projects/").ok_or_else(not_found)?;
    let parts: Vec<&str> = rest.splitn(7, '/').collect();
    let [_project, "locations", _region, "publishers", publisher, "models", call] = parts.as_slice() else {
        return Err(not_found());
    };
    let (model, op) = call.split_once(':').ok_or_else(not_found)?;
    let anthropic = match *publisher {
        "google" => false,
        "anthropic" => true,
        _ => return Err(not_found()),
    };
    let known = if anthropic {
        ["rawPredict", "streamRawPredict"].contains(&op)
    } else {
        ["generateContent", "streamGenerateContent"].contains(&op)
    };
    if !known || model.is_empty() {
        return Err(not_found());
    }
    if *method != Method::POST {
        return Err(error(
            405,
            format!("Method {method} is not allowed on {path}; use POST."),
        ));
    }
    Ok(Call {
        anthropic,
        model: model.to_string(),
        method: op.to_string(),
    })
}

pub(crate) fn reply(req: &RequestHeader, call: &Call, body: &[u8], seq: u64, b: &Behavior) -> Reply {
    let token = req
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !token.is_some_and(|t| t.starts_with("ya29.")) {
        return error(
            401,
            "Request had invalid authentication credentials. Expected OAuth 2 access token.",
        );
    }
    let mut inner = req.clone();
    if !call.anthropic {
        // Past the token: the Gemini mock, which asks for a key of its own.
        let _ = inner.insert_header("x-goog-api-key", "vertex");
        let op = match call.method.as_str() {
            "streamGenerateContent" => gemini::Op::Stream,
            _ => gemini::Op::Generate,
        };
        let gcall = gemini::Call {
            model: call.model.clone(),
            op,
        };
        return gemini::reply(&inner, &gcall, body, seq, b, None);
    }
    let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(body) else {
        return error(400, "Invalid JSON payload received.");
    };
    if obj.get("anthropic_version").and_then(Value::as_str) != Some("vertex-2023-10-16") {
        return error(400, "anthropic_version: vertex-2023-10-16 is required");
    }
    if obj.contains_key("model") {
        return error(400, "model: Extra inputs are not permitted");
    }
    let streamed = obj.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if streamed != (call.method == "streamRawPredict") {
        return error(
            400,
            "stream must be true for streamRawPredict and absent or false for rawPredict",
        );
    }
    obj.remove("anthropic_version");
    obj.insert("model".into(), json!(call.model));
    let _ = inner.insert_header("x-api-key", "vertex");
    let _ = inner.insert_header("anthropic-version", "2023-06-01");
    let body = Bytes::from(Value::Object(obj).to_string());
    anthropic::messages(&inner, &body, seq, b, None)
}
