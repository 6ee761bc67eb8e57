//! OTLP/HTTP JSON encoding of an `ExportTraceServiceRequest`.
//!
//! Written by hand into one `Vec<u8>` (no intermediate `serde_json::Value`), following the OTLP
//! JSON rules that differ from plain proto3 JSON: trace and span ids are lowercase hex (not
//! base64), 64-bit integers (`*TimeUnixNano`, `intValue`) are decimal strings, enums are numbers,
//! field names are lowerCamelCase. All spans go in one `resourceSpans` entry with one scope.

use super::ids::{SpanId, TraceId};
use super::span::{AttrValue, Span};

/// Scope name and `telemetry.sdk.name`.
pub const SCOPE_NAME: &str = "tollgate";

/// The JSON body of one export request for `spans`, attributed to `service_name`.
pub fn encode_request(service_name: &str, spans: &[Span]) -> Vec<u8> {
    let estimate: usize = spans.iter().map(|s| 320 + s.name.len() + s.attributes.len() * 64).sum();
    let mut out = Vec::with_capacity(384 + estimate);
    out.extend_from_slice(b"{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
    let resource: [(&str, &str); 5] = [
        ("service.name", service_name),
        ("service.version", env!("CARGO_PKG_VERSION")),
        ("telemetry.sdk.name", SCOPE_NAME),
        ("telemetry.sdk.language", "rust"),
        ("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
    ];
    for (i, (key, value)) in resource.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"key\":");
        write_str(&mut out, key);
        out.extend_from_slice(b",\"value\":{\"stringValue\":");
        write_str(&mut out, value);
        out.extend_from_slice(b"}}");
    }
    out.extend_from_slice(b"]},\"scopeSpans\":[{\"scope\":{\"name\":");
    write_str(&mut out, SCOPE_NAME);
    out.extend_from_slice(b",\"version\":");
    write_str(&mut out, env!("CARGO_PKG_VERSION"));
    out.extend_from_slice(b"},\"spans\":[");
    for (i, span) in spans.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_span(&mut out, span);
    }
    out.extend_from_slice(b"]}]}]}");
    out
}

fn write_span(out: &mut Vec<u8>, span: &Span) {
    out.extend_from_slice(b"{\"traceId\":");
    write_trace_id(out, &span.trace_id);
    out.extend_from_slice(b",\"spanId\":");
    write_span_id(out, &span.span_id);
    if let Some(parent) = &span.parent {
        out.extend_from_slice(b",\"parentSpanId\":");
        write_span_id(out, parent);
    }
    out.extend_from_slice(b",\"name\":");
    write_str(out, &span.name);
    out.extend_from_slice(b",\"kind\":");
    write_u64(out, u64::from(span.kind.otlp_code()));
    out.extend_from_slice(b",\"startTimeUnixNano\":\"");
    write_u64(out, span.start_unix_nanos);
    out.extend_from_slice(b"\",\"endTimeUnixNano\":\"");
    write_u64(out, span.end_unix_nanos);
    out.extend_from_slice(b"\",\"attributes\":[");
    for (i, (key, value)) in span.attributes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"key\":");
        write_str(out, key);
        out.extend_from_slice(b",\"value\":");
        write_value(out, value);
        out.push(b'}');
    }
    out.push(b']');
    if let Some(message) = &span.error {
        out.extend_from_slice(b",\"status\":{\"code\":2,\"message\":");
        write_str(out, message);
        out.push(b'}');
    }
    out.push(b'}');
}

fn write_value(out: &mut Vec<u8>, value: &AttrValue) {
    match value {
        AttrValue::Str(s) => {
            out.extend_from_slice(b"{\"stringValue\":");
            write_str(out, s);
            out.push(b'}');
        }
        AttrValue::Int(n) => {
            out.extend_from_slice(b"{\"intValue\":\"");
            if *n < 0 {
                out.push(b'-');
            }
            write_u64(out, n.unsigned_abs());
            out.extend_from_slice(b"\"}");
        }
        AttrValue::F64(v) => {
            out.extend_from_slice(b"{\"doubleValue\":");
            write_f64(out, *v);
            out.push(b'}');
        }
        AttrValue::Bool(b) => {
            out.extend_from_slice(if *b {
                b"{\"boolValue\":true}"
            } else {
                b"{\"boolValue\":false}"
            });
        }
        AttrValue::StrArray(items) => {
            out.extend_from_slice(b"{\"arrayValue\":{\"values\":[");
            for (i, s) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"stringValue\":");
                write_str(out, s);
                out.push(b'}');
            }
            out.extend_from_slice(b"]}}");
        }
    }
}

fn write_trace_id(out: &mut Vec<u8>, id: &TraceId) {
    out.push(b'"');
    out.extend_from_slice(&id.hex_bytes());
    out.push(b'"');
}

fn write_span_id(out: &mut Vec<u8>, id: &SpanId) {
    out.push(b'"');
    out.extend_from_slice(&id.hex_bytes());
    out.push(b'"');
}

fn write_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Finite values as JSON numbers; proto3 JSON spells the others as strings.
fn write_f64(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"\"Infinity\"" } else { b"\"-Infinity\"" });
    } else {
        // serde_json prints finite doubles with ryu (shortest round-trip form); writing into a
        // Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &v);
    }
}

/// A JSON string literal: quotes, backslashes and control characters escaped, UTF-8 passed through.
fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    crate::api::json_str::escape_into(s, out);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::trace::SpanKind;
    use serde_json::{json, Value};

    fn parse(body: &[u8]) -> Value {
        serde_json::from_slice(body).unwrap_or_else(|e| panic!("invalid JSON ({e}): {}", String::from_utf8_lossy(body)))
    }

    fn sample() -> (Span, Span) {
        let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        let root = Span {
            trace_id,
            span_id: SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            parent: None,
            name: "chat gpt-4o".into(),
            kind: SpanKind::Server,
            start_unix_nanos: 1_718_000_000_000_000_000,
            end_unix_nanos: 1_718_000_001_200_000_000,
            attributes: vec![
                ("gen_ai.operation.name", "chat".into()),
                ("gen_ai.usage.input_tokens", 12u64.into()),
                ("big", AttrValue::Int(i64::MIN)),
                ("gen_ai.request.temperature", 0.7.into()),
                ("stream", true.into()),
                (
                    "gen_ai.response.finish_reasons",
                    vec!["stop".to_string(), "length".to_string()].into(),
                ),
            ],
            error: None,
        };
        let child = Span {
            trace_id,
            span_id: SpanId::from_hex("0102030405060708").unwrap(),
            parent: Some(root.span_id),
            name: "upstream".into(),
            kind: SpanKind::Client,
            start_unix_nanos: 5,
            end_unix_nanos: u64::MAX,
            attributes: vec![],
            error: Some("provider answered 503".into()),
        };
        (root, child)
    }

    #[test]
    fn request_structure_and_resource() {
        let (root, child) = sample();
        let v = parse(&encode_request("my-gateway", &[root, child]));
        let rs = &v["resourceSpans"][0];
        let attrs = rs["resource"]["attributes"].as_array().unwrap();
        let get = |k: &str| attrs.iter().find(|a| a["key"] == k).map(|a| a["value"].clone());
        assert_eq!(get("service.name"), Some(json!({"stringValue": "my-gateway"})));
        assert_eq!(
            get("service.version"),
            Some(json!({"stringValue": env!("CARGO_PKG_VERSION")}))
        );
        assert_eq!(get("telemetry.sdk.name"), Some(json!({"stringValue": "tollgate"})));
        assert_eq!(rs["scopeSpans"][0]["scope"]["name"], "tollgate");
        assert_eq!(rs["scopeSpans"][0]["spans"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn span_fields() {
        let (root, child) = sample();
        let v = parse(&encode_request("svc", &[root, child]));
        let spans = &v["resourceSpans"][0]["scopeSpans"][0]["spans"];
        let (r, c) = (&spans[0], &spans[1]);
        assert_eq!(r["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(r["spanId"], "00f067aa0ba902b7");
        assert!(r.get("parentSpanId").is_none(), "a root span has no parent id");
        assert_eq!(r["name"], "chat gpt-4o");
        assert_eq!(r["kind"], 2);
        assert_eq!(r["startTimeUnixNano"], "1718000000000000000");
        assert_eq!(r["endTimeUnixNano"], "1718000001200000000");
        assert!(r.get("status").is_none(), "no error leaves the status unset");

        assert_eq!(c["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(c["parentSpanId"], "00f067aa0ba902b7");
        assert_eq!(c["spanId"], "0102030405060708");
        assert_eq!(c["kind"], 3);
        assert_eq!(c["startTimeUnixNano"], "5");
        assert_eq!(c["endTimeUnixNano"], u64::MAX.to_string());
        assert_eq!(c["attributes"], json!([]));
        assert_eq!(c["status"], json!({"code": 2, "message": "provider answered 503"}));
    }

    #[test]
    fn attribute_encodings() {
        let (root, _) = sample();
        let v = parse(&encode_request("svc", &[root]));
        let attrs = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"];
        assert_eq!(
            attrs,
            &json!([
                {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "12"}},
                {"key": "big", "value": {"intValue": "-9223372036854775808"}},
                {"key": "gen_ai.request.temperature", "value": {"doubleValue": 0.7}},
                {"key": "stream", "value": {"boolValue": true}},
                {"key": "gen_ai.response.finish_reasons", "value": {"arrayValue": {"values": [
                    {"stringValue": "stop"}, {"stringValue": "length"}
                ]}}},
            ])
        );
    }

    #[test]
    fn doubles_including_non_finite() {
        let (mut root, _) = sample();
        root.attributes = vec![
            ("a", 1.0.into()),
            ("b", (-0.25).into()),
            ("c", 1e300.into()),
            ("d", f64::NAN.into()),
            ("e", f64::INFINITY.into()),
            ("f", f64::NEG_INFINITY.into()),
            ("g", 5e-324.into()),
        ];
        let v = parse(&encode_request("svc", &[root]));
        let attrs = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"];
        let d = |i: usize| attrs[i]["value"]["doubleValue"].clone();
        assert_eq!(d(0).as_f64(), Some(1.0));
        assert_eq!(d(1).as_f64(), Some(-0.25));
        assert_eq!(d(2).as_f64(), Some(1e300));
        assert_eq!(d(3), "NaN");
        assert_eq!(d(4), "Infinity");
        assert_eq!(d(5), "-Infinity");
        assert_eq!(d(6).as_f64(), Some(5e-324));
    }

    #[test]
    fn strings_are_escaped() {
        let nasty = "quote \" backslash \\ newline \n cr \r tab \t nul \u{0} bell \u{7} del \u{7f} \
                     unicode é 中文 😀 sep \u{2028} end </script>";
        let (mut root, _) = sample();
        root.name = nasty.to_string();
        root.attributes = vec![("k", nasty.into()), ("arr", vec![nasty.to_string()].into())];
        root.error = Some(nasty.into());
        let v = parse(&encode_request(nasty, &[root]));
        let span = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["name"], nasty);
        assert_eq!(span["attributes"][0]["value"]["stringValue"], nasty);
        assert_eq!(
            span["attributes"][1]["value"]["arrayValue"]["values"][0]["stringValue"],
            nasty
        );
        assert_eq!(span["status"]["message"], nasty);
        assert_eq!(
            v["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
            nasty
        );
    }

    #[test]
    fn empty_batch_is_valid() {
        let v = parse(&encode_request("svc", &[]));
        assert_eq!(v["resourceSpans"][0]["scopeSpans"][0]["spans"], json!([]));
    }

    proptest::proptest! {
        #[test]
        fn any_strings_give_valid_json(name in "\\PC{0,40}", value in proptest::prelude::any::<String>(), n in proptest::prelude::any::<i64>()) {
            let (mut root, _) = sample();
            root.name = name.clone();
            root.attributes = vec![("s", value.clone().into()), ("n", n.into())];
            let v = parse(&encode_request(&value, &[root]));
            let span = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
            proptest::prop_assert_eq!(span["name"].as_str(), Some(name.as_str()));
            proptest::prop_assert_eq!(span["attributes"][0]["value"]["stringValue"].as_str(), Some(value.as_str()));
            let n_str = n.to_string();
            proptest::prop_assert_eq!(span["attributes"][1]["value"]["intValue"].as_str(), Some(n_str.as_str()));
        }
    }
}
