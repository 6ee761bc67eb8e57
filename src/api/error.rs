//! `ApiError`: every way the gateway itself answers a request with an error, mapped in one place
//! to the HTTP status, the OpenAI error body (`{"error":{"message","type","param","code"}}`), and
//! a low-cardinality label for metrics. Matches are exhaustive with no catch-all arm, so a new
//! variant forces a decision everywhere.
//!
//! Upstream error *responses* are not `ApiError`s: they are relayed with their own status and body.

use bytes::Bytes;
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("We could not parse the JSON body of your request: {0}")]
    InvalidJson(String),
    #[error("Missing required parameter: '{0}'.")]
    MissingField(&'static str),
    #[error("Invalid value for '{field}': {message}")]
    InvalidField { field: &'static str, message: String },
    /// A body value of the wrong JSON type; `param` is its path (`messages[0].content`).
    #[error("Invalid type for '{param}': expected {expected}, but got {got} instead.")]
    InvalidType {
        param: String,
        expected: &'static str,
        got: &'static str,
    },
    /// A body value out of range or not among those accepted; `code` is OpenAI's
    /// (`invalid_value`, `integer_below_min_value`, `decimal_above_max_value`, ...).
    #[error("Invalid '{param}': {message}")]
    InvalidValue {
        param: String,
        message: String,
        code: &'static str,
    },
    /// A required value inside the body is missing (`messages[0].role`).
    #[error("Missing required parameter: '{0}'.")]
    MissingParam(String),
    #[error("The model `{0}` does not exist or you do not have access to it.")]
    ModelNotFound(String),
    #[error("Request body is larger than the gateway's limit of {limit} bytes.")]
    PayloadTooLarge { limit: u64 },
    #[error("Unknown request URL: {method} {path}.")]
    NotFound { method: String, path: String },
    #[error("Method not allowed; this endpoint accepts {allowed}.")]
    MethodNotAllowed { allowed: &'static str },
    #[error("No provider is available for model `{model}`: {reason}.")]
    NoProvider { model: String, reason: String },
    /// `url` is the provider's base URL without credentials (`Provider::display_url`).
    #[error("Could not reach provider `{provider}` at {url}: {cause}.")]
    UpstreamConnect {
        provider: String,
        url: String,
        cause: String,
    },
    #[error("The provider did not answer in time: {0}.")]
    UpstreamTimeout(String),
    #[error("The provider's response could not be read: {0}.")]
    UpstreamProtocol(String),
    #[error("Could not read the request body: {0}.")]
    ClientBody(String),
    /// The request body did not arrive within `server.body_timeout`.
    #[error("The request body did not arrive within {0} ms.")]
    RequestTimeout(u64),
    /// The gateway is shutting down and ended the request (its grace period ran out).
    #[error("The gateway is shutting down; retry the request.")]
    ShuttingDown,
    /// Reading this body would take the request bodies the gateway holds past
    /// `server.max_buffered_bytes`.
    #[error("The gateway is holding as many request bodies as it may ({limit} bytes); retry shortly.")]
    Overloaded { limit: u64 },
    #[error("{0}.")]
    Unsupported(String),
    #[error("The model `{model}` is not allowed on route `{route}`.")]
    ModelNotAllowed { model: String, route: String },
    #[error("The request's time budget of {budget_ms} ms ran out; attempts: {attempts}.")]
    BudgetExhausted { budget_ms: u64, attempts: String },
    #[error("Invalid API key provided.")]
    InvalidApiKey,
    #[error("The model `{model}` is not allowed for this API key.")]
    ModelNotAllowedForKey { model: String },
    /// A rate limit, concurrency cap or capacity shed (`rate_limit_exceeded`).
    #[error("{0}")]
    RateLimited(String),
    /// A USD budget would be exceeded (`budget_exceeded`).
    #[error("{0}")]
    BudgetExceeded(String),
    /// Limits are shared through Redis, which is unreachable, and `on_failure: closed`.
    #[error("Rate limits are enforced across the cluster and their store is unreachable; retry shortly.")]
    LimitsUnavailable,
    /// A guardrail refused the request or the answer: the message names the entity types (or
    /// the injection family), never a value.
    #[error("{0}")]
    ContentBlocked(String),
    /// The route asks the external PII analyzer, which failed, and `on_failure: closed`.
    #[error("The PII analyzer this route requires is unavailable ({0}); the request was not sent.")]
    GuardrailUnavailable(String),
    /// `x-tollgate-cache: only-if-cached` (or `Cache-Control: only-if-cached`) and no answer is
    /// cached: 504, as HTTP caches answer it.
    #[error("No cached answer for this request, and the request asked for a cached answer only (only-if-cached).")]
    NotCached,
    /// A response the gateway's response store does not hold for this tenant (never stored,
    /// expired, deleted, or another tenant's): 404. `previous`: named by `previous_response_id`.
    #[error("{} with id '{id}' not found.", if *previous { "Previous response" } else { "Response" })]
    ResponseNotFound { id: String, previous: bool },
    /// A provider's role credentials could not be fetched (its token endpoint is down or refused):
    /// 503 naming the provider and the cause. Another target may serve the request instead.
    #[error("Provider `{provider}` has no valid credentials: {cause}.")]
    CredentialsUnavailable { provider: String, cause: String },
    /// The response store's database could not be read.
    #[error("The response store is unavailable ({0}); retry shortly.")]
    StoreUnavailable(String),
}

impl ApiError {
    /// A body value the gateway (or the target's dialect) cannot take: 400 `invalid_value`.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::InvalidField {
            field,
            message: message.into(),
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            ApiError::InvalidJson(_)
            | ApiError::MissingField(_)
            | ApiError::InvalidField { .. }
            | ApiError::InvalidType { .. }
            | ApiError::InvalidValue { .. }
            | ApiError::MissingParam(_)
            | ApiError::ClientBody(_)
            | ApiError::ContentBlocked(_)
            | ApiError::Unsupported(_) => 400,
            ApiError::ModelNotFound(_) | ApiError::NotFound { .. } | ApiError::ResponseNotFound { .. } => 404,
            ApiError::RequestTimeout(_) => 408,
            ApiError::ModelNotAllowed { .. } | ApiError::ModelNotAllowedForKey { .. } => 403,
            ApiError::InvalidApiKey => 401,
            ApiError::RateLimited(_) | ApiError::BudgetExceeded(_) => 429,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::PayloadTooLarge { .. } => 413,
            ApiError::UpstreamConnect { .. } | ApiError::UpstreamProtocol(_) => 502,
            ApiError::NoProvider { .. }
            | ApiError::LimitsUnavailable
            | ApiError::ShuttingDown
            | ApiError::Overloaded { .. }
            | ApiError::GuardrailUnavailable(_)
            | ApiError::StoreUnavailable(_)
            | ApiError::CredentialsUnavailable { .. } => 503,
            ApiError::UpstreamTimeout(_) | ApiError::BudgetExhausted { .. } | ApiError::NotCached => 504,
        }
    }

    /// OpenAI's `error.type`.
    pub fn error_type(&self) -> &'static str {
        match self {
            ApiError::InvalidJson(_)
            | ApiError::MissingField(_)
            | ApiError::InvalidField { .. }
            | ApiError::InvalidType { .. }
            | ApiError::InvalidValue { .. }
            | ApiError::MissingParam(_)
            | ApiError::ModelNotFound(_)
            | ApiError::ModelNotAllowed { .. }
            | ApiError::PayloadTooLarge { .. }
            | ApiError::NotFound { .. }
            | ApiError::MethodNotAllowed { .. }
            | ApiError::ClientBody(_)
            | ApiError::RequestTimeout(_)
            | ApiError::ModelNotAllowedForKey { .. }
            | ApiError::ContentBlocked(_)
            | ApiError::NotCached
            | ApiError::ResponseNotFound { .. }
            | ApiError::Unsupported(_) => "invalid_request_error",
            ApiError::InvalidApiKey => "authentication_error",
            ApiError::RateLimited(_) | ApiError::BudgetExceeded(_) => "rate_limit_error",
            ApiError::NoProvider { .. }
            | ApiError::LimitsUnavailable
            | ApiError::GuardrailUnavailable(_)
            | ApiError::StoreUnavailable(_)
            | ApiError::CredentialsUnavailable { .. }
            | ApiError::ShuttingDown
            | ApiError::Overloaded { .. }
            | ApiError::UpstreamConnect { .. }
            | ApiError::UpstreamTimeout(_)
            | ApiError::UpstreamProtocol(_)
            | ApiError::BudgetExhausted { .. } => "api_error",
        }
    }

    /// OpenAI's `error.code`, also the metric label for the kind of error.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::MissingField(_) => "missing_required_parameter",
            ApiError::InvalidField { .. } => "invalid_value",
            ApiError::InvalidType { .. } => "invalid_type",
            ApiError::InvalidValue { code, .. } => code,
            ApiError::MissingParam(_) => "missing_required_parameter",
            ApiError::ModelNotFound(_) => "model_not_found",
            ApiError::ModelNotAllowed { .. } => "model_not_allowed",
            ApiError::PayloadTooLarge { .. } => "request_too_large",
            ApiError::NotFound { .. } => "unknown_url",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::NoProvider { .. } => "no_provider_available",
            ApiError::UpstreamConnect { .. } => "upstream_connect_error",
            ApiError::UpstreamTimeout(_) => "upstream_timeout",
            ApiError::UpstreamProtocol(_) => "upstream_protocol_error",
            ApiError::ClientBody(_) => "request_body_error",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::ShuttingDown => "shutdown",
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::Unsupported(_) => "unsupported_by_provider",
            ApiError::BudgetExhausted { .. } => "budget_exhausted",
            ApiError::InvalidApiKey => "invalid_api_key",
            ApiError::ModelNotAllowedForKey { .. } => "model_not_allowed",
            ApiError::RateLimited(_) => "rate_limit_exceeded",
            ApiError::BudgetExceeded(_) => "budget_exceeded",
            ApiError::LimitsUnavailable => "limits_unavailable",
            ApiError::ContentBlocked(_) => "content_blocked",
            ApiError::GuardrailUnavailable(_) => "guardrail_unavailable",
            ApiError::NotCached => "not_cached",
            ApiError::ResponseNotFound { previous: true, .. } => "previous_response_not_found",
            ApiError::ResponseNotFound { previous: false, .. } => "not_found",
            ApiError::StoreUnavailable(_) => "store_unavailable",
            ApiError::CredentialsUnavailable { .. } => "credentials_unavailable",
        }
    }

    pub fn param(&self) -> Option<&str> {
        match self {
            ApiError::MissingField(f) | ApiError::InvalidField { field: f, .. } => Some(f),
            ApiError::InvalidType { param, .. }
            | ApiError::InvalidValue { param, .. }
            | ApiError::MissingParam(param) => Some(param),
            ApiError::ModelNotFound(_)
            | ApiError::NoProvider { .. }
            | ApiError::ModelNotAllowed { .. }
            | ApiError::ModelNotAllowedForKey { .. } => Some("model"),
            ApiError::ResponseNotFound { previous: true, .. } => Some("previous_response_id"),
            ApiError::InvalidJson(_)
            | ApiError::PayloadTooLarge { .. }
            | ApiError::NotFound { .. }
            | ApiError::MethodNotAllowed { .. }
            | ApiError::UpstreamConnect { .. }
            | ApiError::UpstreamTimeout(_)
            | ApiError::UpstreamProtocol(_)
            | ApiError::ClientBody(_)
            | ApiError::RequestTimeout(_)
            | ApiError::ShuttingDown
            | ApiError::Overloaded { .. }
            | ApiError::Unsupported(_)
            | ApiError::BudgetExhausted { .. }
            | ApiError::InvalidApiKey
            | ApiError::RateLimited(_)
            | ApiError::LimitsUnavailable
            | ApiError::ContentBlocked(_)
            | ApiError::GuardrailUnavailable(_)
            | ApiError::NotCached
            | ApiError::ResponseNotFound { previous: false, .. }
            | ApiError::StoreUnavailable(_)
            | ApiError::CredentialsUnavailable { .. }
            | ApiError::BudgetExceeded(_) => None,
        }
    }

    /// The JSON error body.
    pub fn body(&self) -> Bytes {
        error_body(&self.to_string(), self.error_type(), self.param(), Some(self.code()))
    }
}

/// An OpenAI-shaped error body.
pub fn error_body(message: &str, error_type: &str, param: Option<&str>, code: Option<&str>) -> Bytes {
    Bytes::from(json!({"error": {"message": message, "type": error_type, "param": param, "code": code}}).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_openai_shaped() {
        let e = ApiError::ModelNotFound("gpt-9".into());
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(e.status(), 404);
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "model");
        assert!(v["error"]["message"].as_str().unwrap().contains("gpt-9"));
    }

    #[test]
    fn missing_field_names_the_field() {
        let e = ApiError::MissingField("messages");
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(e.status(), 400);
        assert_eq!(v["error"]["param"], "messages");
        assert!(v["error"]["message"].as_str().unwrap().contains("messages"));
    }
}
