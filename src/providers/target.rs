//! What an adapter renders a request for: `RenderTarget`, one (provider, upstream model) seen
//! from the dialect's side, and the dialect settings of a provider (`ProviderOptions`).
//!
//! Providers do not read the config: `config` compiles these settings and lends them per attempt
//! (`config::Target::render_target`, a handful of borrows, no allocation). Tests and benches
//! build them by hand.

use http::HeaderValue;

use super::presets::Quirks;
use super::ProviderKind;
use crate::secret::Secret;

/// One target as an adapter needs it: where the upstream request goes and in which dialect.
#[derive(Debug, Clone, Copy)]
pub struct RenderTarget<'a> {
    /// The provider's name in the config (error messages only).
    pub provider: &'a str,
    pub kind: ProviderKind,
    /// The upstream model name (Azure: the deployment; Bedrock: the model id).
    pub model: &'a str,
    /// `model` as a JSON string literal, ready to splice into a request body.
    pub model_json: &'a [u8],
    /// The base URL's path without a trailing slash (`/v1`).
    pub path_prefix: &'a str,
    /// The `Host` header value the request goes out with (SigV4 signs it).
    pub host: &'a HeaderValue,
    pub options: &'a ProviderOptions,
}

/// Dialect-specific provider settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderOptions {
    pub quirks: Quirks,
    pub api_version: Option<String>,
    pub anthropic_version: String,
    pub default_max_tokens: u64,
    /// Bedrock: region and credentials requests are signed with (`None` for other kinds).
    pub aws: Option<AwsCredentials>,
    /// Vertex: where the OAuth access token sent as `Authorization: Bearer` comes from.
    pub token: Option<std::sync::Arc<crate::credentials::Cell>>,
}

/// Resolved AWS credentials of a `kind: bedrock` provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub region: String,
    pub keys: AwsKeys,
}

/// Where a Bedrock provider's signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AwsKeys {
    /// From the config (`aws_access_key_id`, …).
    Static {
        access_key_id: Secret,
        secret_access_key: Secret,
        /// Set for temporary (STS) credentials; sent and signed as `x-amz-security-token`.
        session_token: Option<Secret>,
    },
    /// Role credentials from the AWS default chain, kept fresh in the background
    /// (`aws_credentials: chain`, see `crate::credentials`).
    Chain(std::sync::Arc<crate::credentials::Cell>),
}

impl Default for ProviderOptions {
    fn default() -> Self {
        ProviderOptions {
            quirks: Default::default(),
            api_version: None,
            anthropic_version: "2023-06-01".into(),
            default_max_tokens: 4096,
            aws: None,
            token: None,
        }
    }
}
