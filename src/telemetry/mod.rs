//! Observability: Prometheus metrics (`metrics`) and the end-of-request accounting (`record`).

pub mod metrics;

pub use metrics::Metrics;
