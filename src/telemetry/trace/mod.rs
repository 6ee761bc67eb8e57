//! Distributed tracing without an OpenTelemetry SDK: W3C trace context in and out, finished spans
//! as plain data, and an OTLP/HTTP JSON exporter on one background thread.
//!
//! What it owns: `traceparent` parsing and formatting (`ids`), the `Span` record and timestamps
//! (`span`), the OTLP JSON body (`encode`, pure) and delivery to a collector (`exporter`). The
//! proxy builds `Span`s from what its request ctx already holds and calls `Exporter::export` once
//! per request; nothing here knows about Pingora.
//!
//! Invariants: the request path never does I/O or waits on the collector (the queue is bounded and
//! overflow is counted, not buffered); ids are never all zeros and always print as lowercase hex;
//! collector credentials (`OtlpConfig::headers`) are never logged.

mod encode;
mod exporter;
mod ids;
pub mod semconv;
mod span;

pub use encode::{encode_request, SCOPE_NAME};
pub use exporter::{Exporter, ExporterStats, OtlpConfig, StatsSnapshot, MAX_PAUSE};
pub use ids::{SpanId, TraceId, TraceParent};
pub use span::{AttrValue, Clock, Span, SpanKind};
