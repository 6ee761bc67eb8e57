//! Observability: Prometheus metrics, the access log, OpenTelemetry traces.

pub mod metrics;
pub mod trace;

pub use metrics::Metrics;
