//! Tollgate: an AI gateway on Cloudflare's Pingora.
//!
//! The data plane is one `ProxyHttp` implementation (`proxy`); everything it decides is done by
//! plain modules that know nothing about Pingora (`config`, `api`, `providers`, `sse`, `routing`,
//! `telemetry`), so they are testable and benchable without a socket. `mock` is the mock LLM
//! provider used by tests, benches, load tests and the demo config.
//! `time` (the clock, the UTC calendar, RFC 3339) is a leaf every layer may use.

pub mod admin;
pub mod api;
pub mod cache;
pub mod client_addr;
pub mod config;
pub mod credentials;
pub mod guard;
pub mod limits;
pub mod mock;
pub mod private_files;
pub mod providers;
pub mod proxy;
pub mod queue;
pub mod redis_client;
pub mod routing;
pub mod secret;
pub mod server;
pub mod sse;
pub mod systemd;
pub mod telemetry;
#[cfg(test)]
mod test_log;
pub mod time;
pub mod tls;
pub mod usage;
