//! Observability: Prometheus metrics, the access log, OpenTelemetry traces.

pub mod access_log;
pub mod budgets;
pub mod metrics;
pub mod sinks;
pub mod trace;

pub use metrics::Metrics;
