//! The config file as written: strict serde types (`deny_unknown_fields` everywhere), no
//! cross-references checked yet. `compile` turns this into a validated `Snapshot`.
//!
//! Every field is documented in `conf/tollgate.yaml`; keep the two in step.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

pub use super::raw_key::RawKey;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    #[serde(default)]
    pub routing: RawRouting,
    #[serde(default)]
    pub providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    pub models: BTreeMap<String, RawModel>,
    /// The policy table, matched top-down, first match wins.
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    /// Where usage records go: the spend ledger and the access log.
    #[serde(default)]
    pub usage: RawUsage,
    /// Overrides and additions to the built-in pricing table.
    #[serde(default)]
    pub pricing: RawPricing,
    /// The admin API's credentials.
    #[serde(default)]
    pub admin: RawAdmin,
    /// OpenTelemetry traces (OTLP/HTTP JSON).
    #[serde(default)]
    pub tracing: RawTracing,
    /// Client authentication with virtual keys.
    #[serde(default)]
    pub auth: RawAuth,
    /// Virtual keys defined in the file (more are created through the admin API).
    #[serde(default)]
    pub keys: Vec<RawKey>,
    /// Limits per team, by team name.
    #[serde(default)]
    pub teams: BTreeMap<String, RawTeam>,
    /// Limits that are not a key's or a team's: per user, per tier, defaults.
    #[serde(default)]
    pub limits: RawLimits,
    /// PII, secret and injection guardrails: custom entities, restricted patterns, the Presidio
    /// analyzer, and the default policy of routes that set none.
    #[serde(default)]
    pub guardrails: crate::guard::policy::RawGuardrails,
    /// The response cache: the store's size, default TTL, coalescing wait, volatile patterns.
    #[serde(default)]
    pub cache: crate::cache::policy::RawSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// `true`: every data-plane request needs a valid virtual key (401 otherwise). `false`: a
    /// request without a key, or with one of `anonymous_keys`, is served anonymously; a known key
    /// still applies and any other key is refused (401).
    #[serde(default)]
    pub required: bool,
    /// Placeholder keys served anonymously when `required: false` (SDKs insist on sending some
    /// key). Unset: `["unused"]`. A non-empty list with `required: true` is an error.
    #[serde(default)]
    pub anonymous_keys: Option<Vec<String>>,
    /// How often each node re-reads keys created, changed or revoked through the admin API.
    #[serde(default = "default_key_sync", with = "humantime_serde")]
    pub key_sync: Duration,
}

impl Default for RawAuth {
    fn default() -> Self {
        RawAuth {
            required: false,
            anonymous_keys: None,
            key_sync: default_key_sync(),
        }
    }
}

fn default_key_sync() -> Duration {
    Duration::from_millis(500)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTeam {
    #[serde(default)]
    pub limits: serde_json::Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Limits every user (the request's `user` or `x-tollgate-user`) gets, each on their own.
    #[serde(default)]
    pub per_user: serde_json::Value,
    /// Limits every client address gets, each on its own (the address behind trusted proxies:
    /// `server.trusted_proxies`).
    #[serde(default)]
    pub per_ip: serde_json::Value,
    /// Completion tokens reserved for a request that sets no `max_tokens`.
    #[serde(default = "default_completion_allowance")]
    pub default_completion_tokens: u64,
    /// Priority tiers: the share of a provider's own rpm/tpm each tier may use (lower tiers are
    /// shed first as the provider fills up). Requests of unlisted tiers may use it all.
    #[serde(default)]
    pub tiers: BTreeMap<String, f64>,
    /// Where the counters live: `local` (this process) or `redis` (shared by every node).
    #[serde(default)]
    pub backend: RawBackend,
    /// The shared store, for `backend: redis`.
    #[serde(default)]
    pub redis: Option<RawRedis>,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            per_user: serde_json::Value::Null,
            per_ip: serde_json::Value::Null,
            default_completion_tokens: default_completion_allowance(),
            tiers: BTreeMap::new(),
            backend: RawBackend::default(),
            redis: None,
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawBackend {
    #[default]
    Local,
    Redis,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    /// `redis://[user:password@]host:port/db`, `rediss://` for TLS; `${VAR}` expands (for a
    /// password).
    pub url: String,
    /// What requests get while Redis is unreachable: `open` (each node's own limits) or
    /// `closed` (503).
    #[serde(default = "default_on_failure")]
    pub on_failure: crate::limits::cluster::FailMode,
    /// Connect and reply timeout of a Redis call.
    #[serde(default = "default_redis_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Prefix of every key the gateway writes (several gateways can share one Redis).
    #[serde(default = "default_redis_prefix")]
    pub prefix: String,
    /// With a `rediss://` URL: the CAs (PEM) that sign the server's certificate, instead of the
    /// system's; relative to the config file's directory.
    #[serde(default)]
    pub ca_file: Option<String>,
}

fn default_on_failure() -> crate::limits::cluster::FailMode {
    crate::limits::cluster::FailMode::Open
}

fn default_redis_timeout() -> Duration {
    Duration::from_millis(250)
}

fn default_redis_prefix() -> String {
    "tollgate".into()
}

fn default_completion_allowance() -> u64 {
    1024
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUsage {
    /// `sqlite:PATH` (a relative PATH is relative to the config file's directory), `postgres://…`,
    /// or `off`.
    #[serde(default = "default_ledger")]
    pub ledger: String,
    /// Records held in memory when the store is slow, before they spill to `spill_dir`.
    #[serde(default = "default_ledger_queue")]
    pub queue: usize,
    #[serde(default = "default_ledger_batch")]
    pub batch: usize,
    #[serde(default = "default_ledger_flush", with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Records the store could not take wait here (JSON lines) and are replayed when it is back.
    /// Relative to the config file's directory.
    #[serde(default = "default_spill_dir")]
    pub spill_dir: String,
    /// `stdout`, `stderr`, `off`, or a file path (relative to the config file's directory): one
    /// JSON line per request.
    #[serde(default = "default_access_log")]
    pub access_log: String,
    /// How long the Responses API's stored responses stay readable (`previous_response_id`,
    /// `GET /v1/responses/{id}`). They live in the ledger's database, or in memory without one.
    #[serde(default = "default_responses_retention", with = "humantime_serde")]
    pub responses_retention: Duration,
}

impl Default for RawUsage {
    fn default() -> Self {
        RawUsage {
            ledger: default_ledger(),
            queue: default_ledger_queue(),
            batch: default_ledger_batch(),
            flush_interval: default_ledger_flush(),
            spill_dir: default_spill_dir(),
            access_log: default_access_log(),
            responses_retention: default_responses_retention(),
        }
    }
}

fn default_responses_retention() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}
fn default_ledger() -> String {
    "sqlite:data/spend.db".into()
}
fn default_ledger_queue() -> usize {
    65_536
}
fn default_ledger_batch() -> usize {
    500
}
fn default_ledger_flush() -> Duration {
    Duration::from_millis(200)
}
fn default_spill_dir() -> String {
    "data/spill".into()
}
fn default_access_log() -> String {
    "stdout".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPricing {
    /// A pricing file in the shipped format, replacing the built-in table.
    #[serde(default)]
    pub file: Option<String>,
    /// Entries that replace or add to the table. `provider` is a provider family (`openai`,
    /// `anthropic`, …, a preset name) or the name of a provider in this config.
    #[serde(default)]
    pub models: Vec<crate::usage::pricing::PriceEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Bearer token for `/admin/*` (`${TOLLGATE_ADMIN_TOKEN}`); unset disables those endpoints.
    #[serde(default)]
    pub token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    /// The collector's OTLP/HTTP traces URL (`http://127.0.0.1:4318/v1/traces`); unset = no traces.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// Extra headers for the collector (values may use `${ENV}`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Share of requests traced when the client sends no `traceparent` (0.0–1.0).
    #[serde(default = "default_sample")]
    pub sample: f64,
}

impl Default for RawTracing {
    fn default() -> Self {
        RawTracing {
            otlp_endpoint: None,
            headers: BTreeMap::new(),
            service_name: default_service_name(),
            sample: default_sample(),
        }
    }
}

fn default_service_name() -> String {
    "tollgate".into()
}
fn default_sample() -> f64 {
    1.0
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Shown in the `x-tollgate-route` response header.
    pub name: String,
    /// Conditions, all of which must hold (an empty `match` matches every request).
    #[serde(default, rename = "match")]
    pub when: RawRouteMatch,
    /// Serve matching requests with this alias.
    #[serde(default)]
    pub model: Option<String>,
    /// Pin the balancing strategy of the alias's targets.
    #[serde(default)]
    pub strategy: Option<crate::routing::balance::Strategy>,
    /// Requested models allowed on this route (globs); others get 403 `model_not_allowed`.
    #[serde(default)]
    pub allowed_models: Vec<String>,
    /// Let a request one target's dialect cannot carry (a block, a tool, a parameter it lacks) be
    /// served by the next target instead of refused with a 400 naming what is unsupported.
    #[serde(default)]
    pub fallback_on_unsupported: bool,
    /// The response-cache policy of matching requests (applied by the cache).
    #[serde(default)]
    pub cache: Option<crate::cache::policy::RawPolicy>,
    /// The guardrail policy of matching requests (applied by the guardrails).
    #[serde(default)]
    pub guardrails: Option<crate::guard::policy::RawPolicy>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouteMatch {
    /// The requested model, a `*` glob.
    #[serde(default)]
    pub model: Option<String>,
    /// The `x-tollgate-task` request header.
    #[serde(default)]
    pub task: Option<String>,
    /// The virtual key's id (a `*` glob).
    #[serde(default)]
    pub key: Option<String>,
    /// The request's team (from its virtual key, else `x-tollgate-team`), a `*` glob.
    #[serde(default)]
    pub team: Option<String>,
    /// The request's tenant tier (from its virtual key), a `*` glob.
    #[serde(default)]
    pub tier: Option<String>,
    /// Values of the request body's `metadata` object.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default = "default_admin_listen")]
    pub admin_listen: String,
    /// When set, this process also serves the built-in mock provider on this address.
    #[serde(default)]
    pub mock_listen: Option<String>,
    /// Worker threads of the data plane; 0 means one per CPU.
    #[serde(default)]
    pub threads: usize,
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Request bodies the process holds at once (being read, or held by requests in flight), at
    /// most; a request whose body would go past it gets 503 `overloaded` before it is read.
    #[serde(default = "default_max_buffered_bytes")]
    pub max_buffered_bytes: u64,
    /// How long a graceful shutdown (SIGTERM) waits for in-flight requests.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How often the config file is checked for changes; 0s disables polling (SIGHUP still works).
    #[serde(default = "default_reload_poll", with = "humantime_serde")]
    pub reload_poll: Duration,
    /// Open client connections on the data plane at most (one more gets a 503 and is closed);
    /// lowered to what the process's file-descriptor limit allows.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A request's header must arrive within this, from the connection's accept (or, on a
    /// kept-alive connection, from its first byte); else 408 and the connection is closed.
    #[serde(default = "default_header_timeout", with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Largest request header; a larger one gets 431.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// A request's whole body must arrive within this once its header did; else 408.
    #[serde(default = "default_body_timeout", with = "humantime_serde")]
    pub body_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request before it is closed.
    #[serde(default = "default_keepalive_timeout", with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// A changed file is loaded by the watcher only once its content has stayed the same this
    /// long (a file still being written is never loaded); 0s loads it when first seen.
    #[serde(default = "default_reload_settle", with = "humantime_serde")]
    pub reload_settle: Duration,
    /// How often the providers' host names are resolved again (a changed address is used by new
    /// connections; a name that stops resolving keeps its last address); 0s: only at load.
    #[serde(default = "default_dns_refresh", with = "humantime_serde")]
    pub dns_refresh: Duration,
    /// TLS on the data-plane listener (HTTP/2 offered by ALPN); plain HTTP when absent.
    #[serde(default)]
    pub tls: Option<RawTls>,
    /// TLS on the admin listener; plain HTTP when absent.
    #[serde(default)]
    pub admin_tls: Option<RawTls>,
    /// Front proxies (CIDRs or addresses) whose forwarding header gives the client's address (in
    /// records and for `limits.per_ip`); none by default: the connection's peer is the client.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// The header those proxies write: `x-forwarded-for` (default) or `forwarded` (RFC 7239).
    #[serde(default)]
    pub forwarded_header: crate::client_addr::ForwardedHeader,
}

/// A listener's certificate and key: PEM files, a path relative to the config file's directory
/// or absolute. Both are read again by every reload, and a change to either reloads the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// The certificate chain, leaf first.
    pub cert_file: String,
    /// The leaf's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: default_listen(),
            admin_listen: default_admin_listen(),
            mock_listen: None,
            threads: 0,
            max_body_bytes: default_max_body_bytes(),
            max_buffered_bytes: default_max_buffered_bytes(),
            shutdown_grace: default_grace(),
            reload_poll: default_reload_poll(),
            max_connections: default_max_connections(),
            header_timeout: default_header_timeout(),
            max_header_bytes: default_max_header_bytes(),
            body_timeout: default_body_timeout(),
            keepalive_timeout: default_keepalive_timeout(),
            reload_settle: default_reload_settle(),
            dns_refresh: default_dns_refresh(),
            tls: None,
            admin_tls: None,
            trusted_proxies: Vec::new(),
            forwarded_header: Default::default(),
        }
    }
}

fn default_listen() -> String {
    "0.0.0.0:8080".into()
}
fn default_admin_listen() -> String {
    "127.0.0.1:9090".into()
}
fn default_max_body_bytes() -> u64 {
    32 * 1024 * 1024
}
fn default_max_buffered_bytes() -> u64 {
    1024 * 1024 * 1024
}
fn default_grace() -> Duration {
    Duration::from_secs(10)
}
fn default_reload_poll() -> Duration {
    Duration::from_secs(1)
}
fn default_max_connections() -> usize {
    10_000
}
fn default_header_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_header_bytes() -> usize {
    64 * 1024
}
fn default_body_timeout() -> Duration {
    Duration::from_secs(60)
}
/// Longer than the 60 s idle timeout of common load balancers in front (AWS ALB, GCP), so the
/// gateway is not the side that closes a connection the balancer is about to reuse.
fn default_keepalive_timeout() -> Duration {
    Duration::from_secs(75)
}
fn default_dns_refresh() -> Duration {
    Duration::from_secs(30)
}
fn default_reload_settle() -> Duration {
    Duration::from_secs(1)
}

/// Retries, backoff and the per-request time budget.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    /// Retries of the same target after its first try (then the next target).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// First backoff; doubles per retry, full jitter, capped by `backoff_max`.
    #[serde(default = "default_backoff", with = "humantime_serde")]
    pub backoff: Duration,
    #[serde(default = "default_backoff_max", with = "humantime_serde")]
    pub backoff_max: Duration,
    /// A provider's `Retry-After` / `retry-after-ms` is honoured up to this; longer means "next target".
    #[serde(default = "default_max_retry_after", with = "humantime_serde")]
    pub max_retry_after: Duration,
    /// Wall-clock budget of one request across every attempt (`x-tollgate-timeout-ms` can lower it).
    #[serde(default = "default_budget", with = "humantime_serde")]
    pub budget: Duration,
    /// Upstream statuses that are retried / fall back (connect errors, timeouts and resets always do).
    #[serde(default = "default_retry_on")]
    pub retry_on: Vec<u16>,
    /// Per-target circuit breaker.
    #[serde(default)]
    pub breaker: crate::routing::breaker::BreakerConfig,
    /// How long a provider key that got a 429 or 401 is skipped while the pool has others.
    #[serde(default = "default_key_cooldown", with = "humantime_serde")]
    pub key_cooldown: Duration,
}

fn default_key_cooldown() -> Duration {
    Duration::from_secs(60)
}

impl Default for RawRouting {
    fn default() -> Self {
        RawRouting {
            retries: default_retries(),
            backoff: default_backoff(),
            backoff_max: default_backoff_max(),
            max_retry_after: default_max_retry_after(),
            budget: default_budget(),
            retry_on: default_retry_on(),
            breaker: Default::default(),
            key_cooldown: default_key_cooldown(),
        }
    }
}

fn default_retries() -> u32 {
    2
}
fn default_backoff() -> Duration {
    Duration::from_millis(100)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(2)
}
fn default_max_retry_after() -> Duration {
    Duration::from_secs(10)
}
fn default_budget() -> Duration {
    Duration::from_secs(300)
}
fn default_retry_on() -> Vec<u16> {
    vec![429, 500, 502, 503, 504]
}

/// Upstream timeouts. Every field is optional so a provider can override only some of them.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    /// TCP connect plus TLS handshake.
    #[serde(default, with = "humantime_serde")]
    pub connect: Option<Duration>,
    /// From the request being sent to the response header (for a non-streamed answer this is the
    /// whole generation time).
    #[serde(default, with = "humantime_serde")]
    pub first_byte: Option<Duration>,
    /// Longest silence between two body chunks of a response.
    #[serde(default, with = "humantime_serde")]
    pub idle: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub kind: RawProviderKind,
    /// Required unless a `preset` supplies it.
    #[serde(default)]
    pub base_url: Option<String>,
    /// `openai_compatible` only: mistral, groq, deepseek, together, openrouter, ollama, vllm.
    #[serde(default)]
    pub preset: Option<String>,
    /// `openai_compatible` only: request fields removed before sending (the server rejects them).
    #[serde(default)]
    pub drop_fields: Vec<String>,
    /// Keys used in rotation; `${ENV}` references. A provider with no key set is disabled.
    #[serde(default)]
    pub api_keys: Vec<String>,
    /// Extra static headers sent upstream (values may use `${ENV}`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    /// Set to false to keep a provider in the file but unused.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Azure OpenAI: the `api-version` query parameter (required for `kind: azure`).
    #[serde(default)]
    pub api_version: Option<String>,
    /// Anthropic: the `anthropic-version` header sent when the client did not send one.
    #[serde(default)]
    pub anthropic_version: Option<String>,
    /// Anthropic: `max_tokens` when the client gave none (Anthropic requires it).
    #[serde(default)]
    pub default_max_tokens: Option<u64>,
    /// Bedrock: the AWS region requests are signed for (required for `kind: bedrock`).
    #[serde(default)]
    pub aws_region: Option<String>,
    /// Bedrock: the access key id (`${ENV}`); unset disables the provider with a warning.
    #[serde(default)]
    pub aws_access_key_id: Option<String>,
    /// Bedrock: the secret access key (`${ENV}`); unset disables the provider with a warning.
    #[serde(default)]
    pub aws_secret_access_key: Option<String>,
    /// Bedrock: the session token of temporary credentials (`${ENV}`); optional.
    #[serde(default)]
    pub aws_session_token: Option<String>,
    /// Bedrock: `chain` signs with role credentials from the AWS default chain (environment,
    /// shared profile, web identity, ECS task role, instance metadata) instead of static keys.
    #[serde(default)]
    pub aws_credentials: Option<String>,
    /// Bedrock with `aws_credentials: chain`: the shared-config profile to read.
    #[serde(default)]
    pub aws_profile: Option<String>,
    /// Azure: `entra` authenticates with Microsoft Entra ID tokens (client credentials) instead
    /// of `api_keys`.
    #[serde(default)]
    pub azure_credentials: Option<String>,
    /// Azure with `azure_credentials: entra`: the directory (tenant) id.
    #[serde(default)]
    pub entra_tenant_id: Option<String>,
    /// Azure with `azure_credentials: entra`: the application (client) id.
    #[serde(default)]
    pub entra_client_id: Option<String>,
    /// Azure with `azure_credentials: entra`: the client secret (`${ENV}`).
    #[serde(default)]
    pub entra_client_secret: Option<String>,
    /// Vertex: the Google Cloud project.
    #[serde(default)]
    pub vertex_project: Option<String>,
    /// Vertex: the region (`us-central1`, `europe-west4`, `global`).
    #[serde(default)]
    pub vertex_region: Option<String>,
    /// Vertex: a service account key file (relative to the config file's directory), or
    /// `metadata` for the metadata server of the VM or pod.
    #[serde(default)]
    pub google_credentials: Option<String>,
    /// The provider's own limits (`{rpm, tpm}`), so the gateway stays under them.
    #[serde(default)]
    pub limits: serde_json::Value,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawProviderKind {
    Openai,
    OpenaiCompatible,
    Azure,
    Anthropic,
    Gemini,
    Bedrock,
    Vertex,
    VertexAnthropic,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub targets: Vec<RawTarget>,
    /// Other aliases tried, in order, when every target failed before answering.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// Hidden aliases are routable but not listed by `GET /v1/models`.
    #[serde(default)]
    pub hidden: bool,
    /// How the alias's own targets are ordered per request (default `priority`).
    #[serde(default)]
    pub strategy: Option<crate::routing::balance::Strategy>,
    /// Send a share of this alias's traffic to another alias.
    #[serde(default)]
    pub ab: Option<RawAb>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawAb {
    /// The B arm: another alias.
    pub model: String,
    /// Percent of requests (0..=100) sent to B.
    pub percent: f64,
    /// Keep a client on one arm: by the request's `user` / `x-tollgate-user` (`user`), or not (`none`).
    #[serde(default = "default_sticky")]
    pub sticky: String,
}

fn default_sticky() -> String {
    "user".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub provider: String,
    /// The model name the provider knows.
    pub model: String,
    /// Share of traffic under `strategy: weighted` (default 1).
    #[serde(default)]
    pub weight: Option<u32>,
    /// The model's context window in tokens: a request whose estimated prompt plus `max_tokens`
    /// exceeds it skips this target.
    #[serde(default)]
    pub context_window: Option<u64>,
}
