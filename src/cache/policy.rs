//! What the cache does, as the config says it: the `cache:` section (the store's size, the
//! defaults, the coalescing wait) and each route's `cache:` policy, raw (as written) and
//! compiled (`Policy`, with the route's values resolved against the section's defaults).

use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

pub use super::key::Partition;

/// A route's cache mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Never served from or stored in the cache (recorded as `bypass`): sensitive routes.
    Off,
    /// Served when the canonical request is the same (see `key`).
    Exact,
    /// Exact, then the nearest paraphrase in the same context (`semantic`).
    Semantic,
}

/// A route's `cache:` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    #[serde(default = "RawPolicy::default_mode")]
    pub mode: Mode,
    /// How long an answer is served; unset: the section's `ttl`.
    #[serde(default, with = "humantime_serde")]
    pub ttl: Option<Duration>,
    /// Requests sampled above this temperature are neither served nor stored (default 0: only
    /// deterministic requests). The temperature is the request's, 1 when it sets none.
    #[serde(default)]
    pub max_temperature: Option<f64>,
    /// Who shares entries: `key`, `team` (the default) or `global`.
    #[serde(default)]
    pub partition: Option<Partition>,
    /// Patterns removed from message text before hashing (timestamps, request ids), after the
    /// section's own.
    #[serde(default)]
    pub volatile: Vec<String>,
    /// `mode: semantic`: the cosine similarity a paraphrase needs (with the look-alike guard);
    /// unset: `semantic::DEFAULT_THRESHOLD`.
    #[serde(default)]
    pub threshold: Option<f32>,
    /// Stale-while-revalidate: past its TTL an answer is still served for this long while one
    /// background call refreshes it (default 0: an expired answer is a miss).
    #[serde(default, with = "humantime_serde")]
    pub stale: Option<Duration>,
}

impl RawPolicy {
    fn default_mode() -> Mode {
        Mode::Exact
    }
}

/// The `cache:` section as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSection {
    /// The in-process store's bound: bodies and labels, in bytes (read at start).
    #[serde(default = "RawSection::default_max_bytes")]
    pub max_bytes: u64,
    /// Answers larger than this (in the client's format) are not stored.
    #[serde(default = "RawSection::default_max_entry_bytes")]
    pub max_entry_bytes: usize,
    /// How long an answer is served, for routes that set no `ttl`.
    #[serde(default = "RawSection::default_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// How long a request waits for an identical request's call in progress before it makes its
    /// own (within its time budget).
    #[serde(default = "RawSection::default_wait", with = "humantime_serde")]
    pub wait: Duration,
    /// Patterns removed from message text before hashing, on every route.
    #[serde(default)]
    pub volatile: Vec<String>,
    /// Share answers between nodes through this Redis (read at start).
    #[serde(default)]
    pub redis: Option<RawRedis>,
    /// The semantic mode's embedding model (read at start).
    #[serde(default)]
    pub semantic: Option<RawSemantic>,
}

/// `cache.semantic` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSemantic {
    /// The local model: a directory with its `config.json`, `model.safetensors` and
    /// `tokenizer.json` (relative to the config file's directory; `scripts/fetch-model.sh`
    /// fetches one). Or `embeddings`, not both.
    #[serde(default)]
    pub model: Option<String>,
    /// An embedding model alias this gateway serves, asked through its own data plane.
    #[serde(default)]
    pub embeddings: Option<RawEmbeddings>,
    /// The most a lookup waits for its embedding; then it is an exact-only lookup.
    #[serde(default = "RawSemantic::default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Questions the index holds at most (then it starts over).
    #[serde(default = "RawSemantic::default_max_entries")]
    pub max_entries: usize,
}

/// `cache.semantic.embeddings` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmbeddings {
    /// The alias (one of `models:`).
    pub model: String,
    /// The virtual key the cache's embedding requests are made (and billed) with; `${VAR}`.
    #[serde(default)]
    pub key: Option<String>,
}

impl RawSemantic {
    fn default_timeout() -> Duration {
        Duration::from_millis(500)
    }
    fn default_max_entries() -> usize {
        100_000
    }
}

/// `cache.redis` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    /// `redis://[user:password@]host:port/db`, `rediss://` for TLS; `${VAR}` expands (for a
    /// password).
    pub url: String,
    /// Prefix of every key the cache writes (several gateways can share one Redis).
    #[serde(default = "RawRedis::default_prefix")]
    pub prefix: String,
    /// Connect and reply timeout; the most a lookup waits for Redis before it counts as a miss.
    #[serde(default = "RawRedis::default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// With a `rediss://` URL: the CAs (PEM) that sign the server's certificate, instead of the
    /// system's; relative to the config file's directory.
    #[serde(default)]
    pub ca_file: Option<String>,
}

impl RawRedis {
    fn default_prefix() -> String {
        "tollgate".into()
    }
    fn default_timeout() -> Duration {
        Duration::from_millis(100)
    }
}

impl RawSection {
    fn default_max_bytes() -> u64 {
        256 << 20
    }
    fn default_max_entry_bytes() -> usize {
        4 << 20
    }
    fn default_ttl() -> Duration {
        Duration::from_secs(3600)
    }
    fn default_wait() -> Duration {
        Duration::from_secs(30)
    }
}

impl Default for RawSection {
    fn default() -> Self {
        RawSection {
            max_bytes: Self::default_max_bytes(),
            max_entry_bytes: Self::default_max_entry_bytes(),
            ttl: Self::default_ttl(),
            wait: Self::default_wait(),
            volatile: Vec::new(),
            redis: None,
            semantic: None,
        }
    }
}

/// The section, compiled.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_bytes: u64,
    pub max_entry_bytes: usize,
    pub wait: Duration,
    /// The Redis tier (read at start).
    pub redis: Option<super::shared::Settings>,
    /// The semantic mode's model (read at start).
    pub semantic: Option<SemanticSettings>,
}

/// `cache.semantic`, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct SemanticSettings {
    pub source: EmbeddingSource,
    pub timeout: Duration,
    pub max_entries: usize,
}

/// Where the semantic mode's embeddings come from.
#[derive(Debug, Clone, PartialEq)]
pub enum EmbeddingSource {
    /// The local model's directory.
    Local(std::path::PathBuf),
    /// An alias the gateway serves, with the key its requests use.
    Alias {
        model: String,
        key: Option<crate::secret::Secret>,
    },
}

/// A route's policy, compiled.
#[derive(Debug)]
pub struct Policy {
    pub mode: Mode,
    pub ttl: Duration,
    pub max_temperature: f64,
    pub partition: Partition,
    /// The section's patterns, then the route's.
    pub volatile: Vec<Regex>,
    /// `mode: semantic`: the similarity a paraphrase needs.
    pub threshold: f32,
    /// How long past its TTL an answer is served while it is refreshed.
    pub stale: Duration,
}

impl Policy {
    /// The request may be served from and stored in the cache.
    pub fn active(&self) -> bool {
        self.mode != Mode::Off
    }
}
