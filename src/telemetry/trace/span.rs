//! The finished-span record the proxy hands to the exporter, and cheap timestamps for it.
//!
//! A `Span` is plain data filled in after the fact from what the request ctx already kept (its
//! `Instant`s, ids, model, usage): there is no live span object, no context propagation machinery
//! and no per-span allocation beyond the name and attribute values.

use std::time::Instant;

use super::ids::{SpanId, TraceId};
use crate::time::unix_nanos;

/// OTLP `Span.SpanKind`; the encoder writes the enum number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// An operation inside the gateway (policy, cache, guardrails).
    Internal,
    /// The request as the client sees it.
    Server,
    /// One call to a provider.
    Client,
}

impl SpanKind {
    /// The OTLP enum value (0 is "unspecified", never written).
    pub fn otlp_code(self) -> u8 {
        match self {
            SpanKind::Internal => 1,
            SpanKind::Server => 2,
            SpanKind::Client => 3,
        }
    }
}

/// An attribute value, mapped to OTLP `AnyValue`.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    F64(f64),
    Bool(bool),
    StrArray(Vec<String>),
}

impl From<&str> for AttrValue {
    fn from(v: &str) -> AttrValue {
        AttrValue::Str(v.to_owned())
    }
}

impl From<String> for AttrValue {
    fn from(v: String) -> AttrValue {
        AttrValue::Str(v)
    }
}

impl From<i64> for AttrValue {
    fn from(v: i64) -> AttrValue {
        AttrValue::Int(v)
    }
}

/// Saturates at `i64::MAX`: OTLP integers are signed 64-bit.
impl From<u64> for AttrValue {
    fn from(v: u64) -> AttrValue {
        AttrValue::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<u32> for AttrValue {
    fn from(v: u32) -> AttrValue {
        AttrValue::Int(i64::from(v))
    }
}

impl From<u16> for AttrValue {
    fn from(v: u16) -> AttrValue {
        AttrValue::Int(i64::from(v))
    }
}

impl From<f64> for AttrValue {
    fn from(v: f64) -> AttrValue {
        AttrValue::F64(v)
    }
}

impl From<bool> for AttrValue {
    fn from(v: bool) -> AttrValue {
        AttrValue::Bool(v)
    }
}

impl From<Vec<String>> for AttrValue {
    fn from(v: Vec<String>) -> AttrValue {
        AttrValue::StrArray(v)
    }
}

/// One finished span.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// `None` for a root span. The request span's parent is the client's `traceparent` span, if any.
    pub parent: Option<SpanId>,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: Vec<(&'static str, AttrValue)>,
    /// `Some(message)`: status ERROR with that message. `None`: status left unset, as OpenTelemetry
    /// asks of instrumentation (OK is reserved for an operator's explicit override).
    pub error: Option<String>,
}

impl Span {
    /// A span with a fresh random id, no attributes and no error.
    pub fn new(
        trace_id: TraceId,
        parent: Option<SpanId>,
        name: impl Into<String>,
        kind: SpanKind,
        start_unix_nanos: u64,
        end_unix_nanos: u64,
    ) -> Span {
        Span {
            trace_id,
            span_id: SpanId::random(),
            parent,
            name: name.into(),
            kind,
            start_unix_nanos,
            end_unix_nanos,
            attributes: Vec::new(),
            error: None,
        }
    }

    /// Appends an attribute (keys are not deduplicated; set each once).
    pub fn attr(&mut self, key: &'static str, value: impl Into<AttrValue>) -> &mut Span {
        self.attributes.push((key, value.into()));
        self
    }
}

/// Maps monotonic `Instant`s to Unix nanoseconds through one (Instant, wall clock) anchor, so a
/// request's spans are timestamped from the `Instant`s its ctx already holds, consistently with each
/// other, without a clock read per span. Take one per request (or per process, accepting that a
/// later wall-clock step will not be reflected).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    anchor_instant: Instant,
    anchor_unix_nanos: u64,
}

impl Clock {
    pub fn now() -> Clock {
        Clock {
            anchor_instant: Instant::now(),
            anchor_unix_nanos: unix_nanos(),
        }
    }

    /// Unix nanoseconds at `at`; works for instants before or after the anchor, saturating.
    pub fn unix_nanos(&self, at: Instant) -> u64 {
        let nanos = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        match at.checked_duration_since(self.anchor_instant) {
            Some(after) => self.anchor_unix_nanos.saturating_add(nanos(after)),
            None => self
                .anchor_unix_nanos
                .saturating_sub(nanos(self.anchor_instant.duration_since(at))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn from_impls() {
        assert_eq!(AttrValue::from("a"), AttrValue::Str("a".into()));
        assert_eq!(AttrValue::from(String::from("a")), AttrValue::Str("a".into()));
        assert_eq!(AttrValue::from(-3i64), AttrValue::Int(-3));
        assert_eq!(AttrValue::from(u64::MAX), AttrValue::Int(i64::MAX));
        assert_eq!(AttrValue::from(7u64), AttrValue::Int(7));
        assert_eq!(AttrValue::from(200u16), AttrValue::Int(200));
        assert_eq!(AttrValue::from(0.5), AttrValue::F64(0.5));
        assert_eq!(AttrValue::from(true), AttrValue::Bool(true));
        assert_eq!(
            AttrValue::from(vec!["stop".to_string()]),
            AttrValue::StrArray(vec!["stop".into()])
        );
    }

    #[test]
    fn kinds_map_to_otlp_numbers() {
        assert_eq!(SpanKind::Internal.otlp_code(), 1);
        assert_eq!(SpanKind::Server.otlp_code(), 2);
        assert_eq!(SpanKind::Client.otlp_code(), 3);
    }

    #[test]
    fn clock_maps_instants_around_the_anchor() {
        let clock = Clock::now();
        let base = clock.unix_nanos(clock.anchor_instant);
        assert_eq!(base, clock.anchor_unix_nanos);
        let later = clock.anchor_instant + Duration::from_millis(1500);
        assert_eq!(clock.unix_nanos(later), base + 1_500_000_000);
        if let Some(earlier) = clock.anchor_instant.checked_sub(Duration::from_micros(250)) {
            assert_eq!(clock.unix_nanos(earlier), base - 250_000);
        }
        // Close to the wall clock (2020-01-01 < now, and within a second of a fresh reading).
        assert!(base > 1_577_836_800_000_000_000);
        assert!(unix_nanos().abs_diff(clock.unix_nanos(Instant::now())) < 1_000_000_000);
    }

    #[test]
    fn span_builder_sets_fields() {
        let t = TraceId::random();
        let mut s = Span::new(t, None, "chat gpt-4o", SpanKind::Client, 1, 2);
        s.attr("gen_ai.request.model", "gpt-4o")
            .attr("gen_ai.usage.input_tokens", 12u64);
        assert_eq!(s.trace_id, t);
        assert!(s.span_id.is_valid());
        assert_eq!(s.attributes.len(), 2);
        assert_eq!(s.name, "chat gpt-4o");
    }
}
