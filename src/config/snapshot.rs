//! The compiled, validated config: one immutable `Snapshot` that every request reads through an
//! `Arc` (see `ConfigStore`). Everything a request needs is precomputed here (resolved addresses,
//! the upstream paths, `Authorization` header values, the `/v1/models` body) so the request path
//! does no parsing, formatting or DNS. Plain data only: the proxy turns a `Peer` into Pingora's.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};

pub use crate::providers::{AwsCredentials, ProviderOptions};
use crate::providers::{ProviderKind, RenderTarget};
use crate::secret::Secret;

#[derive(Debug)]
pub struct Snapshot {
    /// The file this snapshot was built from.
    pub path: PathBuf,
    pub server: ServerSettings,
    pub routing: RoutingSettings,
    pub providers: BTreeMap<String, Arc<Provider>>,
    pub models: HashMap<Box<str>, Arc<ModelAlias>>,
    pub routes: Vec<crate::routing::routes::Route>,
    /// The `GET /v1/models` response body.
    pub models_list_body: Bytes,
    /// When this snapshot was built (seconds since the epoch): the models' `created`.
    pub loaded_at: u64,
    /// `config::content_hash` of the file this snapshot was built from.
    pub source_hash: u64,
    /// The config text this snapshot was built from (a DNS change rebuilds it from the same text).
    pub source: Arc<str>,
    /// The providers' host names with the addresses they resolved to (`config::dns`).
    pub names: Vec<super::dns::Name>,
    /// The secret files the config references (`file:PATH`, `credential:NAME`; `config::env`):
    /// the watcher reloads when what they hold changes.
    pub secret_refs: Vec<String>,
    /// `config::secrets_hash` of what those files held when this snapshot was built.
    pub secrets_hash: u64,
    /// The file's top-level keys (`server`, `auth`, …): a reload that loses one is suspect.
    pub sections: Vec<String>,
    /// The file's key paths under the sections that hold access control and spend: a reload
    /// that loses one is suspect (`reload::guarded_changes`).
    pub doc_paths: super::doc_paths::DocPaths,
    /// Non-fatal problems (a provider disabled for lack of a key, …), logged once per load.
    pub warnings: Vec<String>,
    /// Where usage records go (read at start; a change needs a restart).
    pub usage: UsageSettings,
    /// The pricing table the targets' prices were taken from.
    pub pricing: Arc<crate::usage::pricing::PriceTable>,
    /// Bearer token of the `/admin/*` API; `None` disables it.
    pub admin_token: Option<Secret>,
    /// OTLP trace export (read at start; a change needs a restart).
    pub tracing: Option<TracingSettings>,
    /// Client authentication and the config-defined virtual keys.
    pub auth: AuthSettings,
    /// Team, user and tier limits.
    pub limits: LimitSettings,
    /// The guardrails (`None`: no route and no default asks for any).
    pub guard: Option<GuardSettings>,
    /// The response cache's settings (the routes carry their policies).
    pub cache: crate::cache::policy::Settings,
}

/// The guardrails of a config: the detector and scorer, the analyzer's address, the default
/// policy, and each route's policy (by route index; also in `Route::guardrails`).
#[derive(Debug, Clone)]
pub struct GuardSettings {
    pub guard: Arc<crate::guard::Guard>,
    pub presidio_peer: Option<Peer>,
    /// The policy of requests whose route sets none (`guardrails.defaults`), when it does anything.
    pub default: Option<Arc<crate::guard::policy::Policy>>,
    pub routes: Vec<Option<Arc<crate::guard::policy::Policy>>>,
}

#[derive(Debug, Clone, Default)]
pub struct LimitSettings {
    pub teams: HashMap<String, Arc<crate::limits::limiter::Limits>>,
    /// Each user's own limits.
    pub per_user: Option<Arc<crate::limits::limiter::Limits>>,
    /// Each client address's own limits.
    pub per_ip: Option<Arc<crate::limits::limiter::Limits>>,
    /// Share of a provider's rpm/tpm each tier may use.
    pub tiers: HashMap<String, f64>,
    /// Completion tokens reserved when a request sets no maximum.
    pub default_completion_tokens: u64,
    /// Shared counters in Redis (`backend: redis`), or `None` for this process's own. Read at
    /// start only: a change needs a restart.
    pub redis: Option<crate::limits::cluster::Settings>,
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Every data-plane request needs a valid virtual key.
    pub required: bool,
    /// Placeholder keys served anonymously when not `required` (empty when it is).
    pub anonymous_keys: Vec<String>,
    pub key_sync: Duration,
    /// Keys defined in the file, with their secrets (from the environment).
    pub keys: Vec<(crate::limits::keys::KeySpec, Secret)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UsageSettings {
    /// `sqlite:…` or `postgres://…` (may hold a password: a `Secret`); `None` = no ledger.
    pub ledger: Option<Secret>,
    pub queue: usize,
    pub batch: usize,
    pub flush_interval: Duration,
    pub spill_dir: PathBuf,
    pub access_log: AccessLog,
    /// How long a stored Responses API response stays readable.
    pub responses_retention: Duration,
    /// Relative paths that named another place before they followed the config file: `run`
    /// checks that nothing of an earlier run is left there (`config::moved`).
    pub moved: Vec<MovedPath>,
}

/// A relative `usage` path, where it points now (the config file's directory) and where it
/// pointed before (the working directory's), when the two differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedPath {
    pub setting: UsagePath,
    /// As written in the file.
    pub written: String,
    pub now: PathBuf,
    pub before: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsagePath {
    Ledger,
    SpillDir,
    AccessLog,
}

impl UsagePath {
    pub fn key(self) -> &'static str {
        match self {
            UsagePath::Ledger => "usage.ledger",
            UsagePath::SpillDir => "usage.spill_dir",
            UsagePath::AccessLog => "usage.access_log",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLog {
    Off,
    Stdout,
    Stderr,
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq)]
pub struct TracingSettings {
    pub endpoint: String,
    pub headers: Vec<(String, Secret)>,
    pub service_name: String,
    /// Share of requests traced when the client did not decide (no `traceparent`).
    pub sample: f64,
}

impl Snapshot {
    pub fn model(&self, alias: &str) -> Option<&Arc<ModelAlias>> {
        self.models.get(alias)
    }

    pub fn enabled_providers(&self) -> usize {
        self.providers.values().filter(|p| p.is_enabled()).count()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub mock_listen: Option<SocketAddr>,
    pub threads: usize,
    pub max_body_bytes: u64,
    pub max_buffered_bytes: u64,
    pub shutdown_grace: Duration,
    pub reload_poll: Duration,
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub max_header_bytes: usize,
    pub body_timeout: Duration,
    pub keepalive_timeout: Duration,
    /// How long a changed file must stay unchanged before the watcher loads it.
    pub reload_settle: Duration,
    /// How often the providers' host names are resolved again; zero: never (`config::dns`).
    pub dns_refresh: Duration,
    /// The data-plane listener's certificate; plain HTTP when `None`.
    pub tls: Option<crate::tls::Identity>,
    /// The admin listener's certificate; plain HTTP when `None`.
    pub admin_tls: Option<crate::tls::Identity>,
    /// Whose forwarding header names the client (`server.trusted_proxies`).
    pub trusted_proxies: crate::client_addr::TrustedProxies,
}

/// Retries, backoff and the time budget (see `raw::RawRouting`).
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingSettings {
    pub retries: u32,
    pub backoff: Duration,
    pub backoff_max: Duration,
    pub max_retry_after: Duration,
    pub budget: Duration,
    pub retry_on: Vec<u16>,
    pub breaker: crate::routing::breaker::BreakerConfig,
    pub key_cooldown: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
}

impl Timeouts {
    pub const DEFAULT: Timeouts = Timeouts {
        connect: Duration::from_secs(5),
        first_byte: Duration::from_secs(120),
        idle: Duration::from_secs(60),
    };
}

/// Where a provider's connections go, resolved at load (the proxy builds Pingora's `HttpPeer`
/// from it, once per snapshot, and keeps it in `built`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
    pub tls: bool,
    /// The TLS server name: the base URL's host (without brackets for IPv6).
    pub sni: String,
    /// Connecting, TLS included.
    pub connect_timeout: Duration,
    /// How long an idle pooled connection is kept.
    pub idle_timeout: Duration,
    /// The connecting layer's own form of this address, made on first use.
    pub built: Built,
}

/// A slot where the layer that connects keeps its own built form of an address (the proxy:
/// Pingora's `HttpPeer`): made by the first request that needs it and dropped with the snapshot,
/// so a request borrows it instead of building one per attempt (an allocation and a few hundred
/// bytes copied as it moves). Config stays free of that layer's types. Clones start empty;
/// equality ignores it.
#[derive(Default)]
pub struct Built(std::sync::OnceLock<Box<dyn std::any::Any + Send + Sync>>);

impl Built {
    /// The built form, made by `make` the first time; `None` only if the slot holds another type.
    pub fn get_or_init<T: std::any::Any + Send + Sync>(&self, make: impl FnOnce() -> T) -> Option<&T> {
        self.0.get_or_init(|| Box::new(make())).downcast_ref::<T>()
    }
}

impl Clone for Built {
    fn clone(&self) -> Self {
        Built::default()
    }
}

impl PartialEq for Built {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Built {}

impl std::fmt::Debug for Built {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Built(made)"
        } else {
            "Built(empty)"
        })
    }
}

/// An upstream provider account: where it is, how to authenticate, how long to wait.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    /// `None` when enabled; otherwise why the provider is not used.
    pub disabled: Option<String>,
    /// Resolved address and TLS settings; `None` when disabled.
    pub peer: Option<Peer>,
    /// `Host` header value (host, plus the port when it is not the scheme's default).
    pub host_header: HeaderValue,
    /// The base URL's path without a trailing slash (`/v1`).
    pub path_prefix: String,
    /// The base URL as errors show it: without userinfo, query or fragment, which could carry a
    /// credential (empty when the URL is not usable).
    pub display_url: String,
    /// The key header (`authorization`, `api-key`, `x-api-key`, by dialect).
    pub auth_header: HeaderName,
    /// Precomputed key header values, one per key, marked sensitive.
    pub auth: Vec<HeaderValue>,
    next_key: AtomicUsize,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub timeouts: Timeouts,
    /// Kept for dialects that sign requests instead of sending a key header.
    pub keys: Vec<Secret>,
    /// Dialect settings, lent to the adapter with each render (`Target::render_target`).
    pub options: ProviderOptions,
    /// Whose price list applies: the kind (`openai`, `anthropic`, …) or the preset (`groq`, …).
    pub pricing_family: &'static str,
    /// The provider's own rpm/tpm, so the gateway stays under them.
    pub limits: Option<Arc<crate::limits::limiter::Limits>>,
}

impl Provider {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        name: String,
        kind: ProviderKind,
        disabled: Option<String>,
        peer: Option<Peer>,
        host_header: HeaderValue,
        path_prefix: String,
        keys: Vec<Secret>,
        auth: Vec<HeaderValue>,
        headers: Vec<(HeaderName, HeaderValue)>,
        timeouts: Timeouts,
        options: ProviderOptions,
    ) -> Self {
        Provider {
            name,
            kind,
            disabled,
            peer,
            host_header,
            path_prefix,
            display_url: String::new(),
            auth_header: kind.auth_header().0,
            auth,
            next_key: AtomicUsize::new(0),
            headers,
            timeouts,
            keys,
            options,
            pricing_family: "",
            limits: None,
        }
    }

    /// The key header value for key `index` (from the key pool).
    pub fn auth_at(&self, index: usize) -> Option<&HeaderValue> {
        self.auth.get(index)
    }

    pub fn is_enabled(&self) -> bool {
        self.disabled.is_none() && self.peer.is_some()
    }

    /// The next key header value, round-robin over the provider's keys.
    pub fn next_auth(&self) -> Option<&HeaderValue> {
        if self.auth.is_empty() {
            return None;
        }
        let i = self.next_key.fetch_add(1, Ordering::Relaxed) % self.auth.len();
        self.auth.get(i)
    }
}

/// A name clients send as `model`.
#[derive(Debug)]
pub struct ModelAlias {
    pub name: String,
    pub targets: Vec<Arc<Target>>,
    pub fallbacks: Vec<String>,
    pub hidden: bool,
    /// Precomputed at load: the enabled targets to try, in order (this alias's targets, then each
    /// fallback alias's, breadth first, each alias once, at most `MAX_PLAN` long).
    pub plan: Vec<Arc<Target>>,
    /// Why `plan` is empty, when it is.
    pub unavailable: Option<String>,
    /// How the alias's own targets (the first `own` entries of `plan`) are ordered per request.
    pub strategy: crate::routing::balance::Strategy,
    pub own: usize,
    /// Smooth weighted round-robin over the own targets, for `strategy: weighted`.
    pub weighted: Option<crate::routing::balance::Weighted>,
    pub ab: Option<AbSplit>,
}

/// A share of an alias's traffic sent to another alias.
#[derive(Debug, Clone, PartialEq)]
pub struct AbSplit {
    pub model: String,
    pub percent: f64,
    /// Sticky per user (`user` field or `x-tollgate-user`).
    pub sticky_user: bool,
}

/// Longest plan: a larger fallback graph is cut here.
pub const MAX_PLAN: usize = 16;

/// One concrete (provider, upstream model) a request can be sent to.
#[derive(Debug)]
pub struct Target {
    pub provider: Arc<Provider>,
    pub model: String,
    /// `model` as a JSON string literal, ready to splice into a request body.
    pub model_json: Bytes,
    pub weight: u32,
    pub context_window: Option<u64>,
    /// From the pricing table; `None` when the model is not in it (cost 0, flagged).
    pub price: Option<crate::usage::pricing::Price>,
    /// Its index among the snapshot's targets (each target has its own): state kept beside the
    /// snapshot, such as routing's live target state, is found by it without hashing.
    pub slot: usize,
}

impl Target {
    /// What the provider's adapter renders a request for (borrowed: nothing is copied).
    pub fn render_target(&self) -> RenderTarget<'_> {
        let p = &self.provider;
        RenderTarget {
            provider: &p.name,
            kind: p.kind,
            model: &self.model,
            model_json: &self.model_json,
            path_prefix: &p.path_prefix,
            host: &p.host_header,
            options: &p.options,
        }
    }
}
