//! Attribute keys from the OpenTelemetry semantic conventions that the gateway's spans use
//! (`gen_ai.*` per the GenAI client-span conventions, plus the HTTP/server ones), so call sites
//! cannot misspell them.
//!
//! The GenAI inference span is named `"{gen_ai.operation.name} {gen_ai.request.model}"` with kind
//! CLIENT; `error.type` carries a low-cardinality error class when the span failed.

pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
/// Current name of the provider attribute (it replaced `gen_ai.system` in recent semconv).
pub const GEN_AI_PROVIDER_NAME: &str = "gen_ai.provider.name";
/// The older name of `gen_ai.provider.name`, still read by many backends.
pub const GEN_AI_SYSTEM: &str = "gen_ai.system";
pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
pub const GEN_AI_REQUEST_MAX_TOKENS: &str = "gen_ai.request.max_tokens";
pub const GEN_AI_REQUEST_TEMPERATURE: &str = "gen_ai.request.temperature";
pub const GEN_AI_REQUEST_TOP_P: &str = "gen_ai.request.top_p";
pub const GEN_AI_RESPONSE_ID: &str = "gen_ai.response.id";
pub const GEN_AI_RESPONSE_MODEL: &str = "gen_ai.response.model";
pub const GEN_AI_RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
pub const GEN_AI_USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
pub const GEN_AI_USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";

pub const ERROR_TYPE: &str = "error.type";
pub const SERVER_ADDRESS: &str = "server.address";
pub const SERVER_PORT: &str = "server.port";
pub const HTTP_REQUEST_METHOD: &str = "http.request.method";
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
pub const HTTP_ROUTE: &str = "http.route";
pub const URL_PATH: &str = "url.path";
