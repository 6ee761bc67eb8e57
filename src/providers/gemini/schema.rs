//! JSON Schema (what OpenAI tools and `response_format` carry) → the OpenAPI-subset `Schema`
//! Gemini accepts in `functionDeclarations[].parameters` and `generationConfig.responseSchema`.
//!
//! Google rejects a request with any key its `Schema` message does not have ("Unknown name
//! \"additionalProperties\""), so this keeps only those keys and rewrites the common JSON Schema
//! idioms it can express: `type: [T, "null"]` and `anyOf: [.., {"type":"null"}]` become
//! `nullable`, `oneOf` becomes `anyOf`, `const` a one-value `enum`, a one-element `allOf` is
//! inlined, and local `$ref`s (`#/$defs/..`, `#/definitions/..`) are inlined up to a depth, as
//! Pydantic and zod emit them. What cannot be expressed is dropped (with a debug log), never sent.

use serde_json::{Map, Value};

/// How deep `$ref`s are inlined before a recursive schema is cut to a bare `object`.
const MAX_REF_DEPTH: usize = 8;

/// The Gemini schema for `schema`, or `None` when it describes an object without properties
/// (Google rejects an `OBJECT` schema with empty `properties`; no `parameters` means "no arguments").
pub fn to_parameters(schema: &Value) -> Option<Value> {
    let out = to_schema(schema);
    let empty_object = out.get("type").and_then(Value::as_str) == Some("object") && out.get("properties").is_none();
    (!empty_object).then_some(out)
}

/// The Gemini schema for `schema` (a JSON Schema object).
pub fn to_schema(schema: &Value) -> Value {
    convert(schema, schema, 0)
}

fn convert(node: &Value, root: &Value, depth: usize) -> Value {
    let Some(obj) = node.as_object() else {
        // `true` (anything) and malformed nodes: an unconstrained schema.
        return Value::Object(Map::new());
    };
    if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
        if depth >= MAX_REF_DEPTH {
            tracing::debug!(
                reference = r,
                "schema $ref nested too deep for Gemini; cut to an object"
            );
            return with_description(serde_json::json!({"type": "object"}), obj);
        }
        return match resolve(root, r) {
            Some(target) => with_description(convert(target, root, depth + 1), obj),
            None => {
                tracing::debug!(reference = r, "dropping a schema $ref Gemini cannot follow");
                Value::Object(Map::new())
            }
        };
    }
    if let Some(Value::Array(all)) = obj.get("allOf") {
        if let [only] = all.as_slice() {
            let mut merged = obj.clone();
            merged.remove("allOf");
            if let Some(inner) = only.as_object() {
                for (k, v) in inner {
                    merged.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            return convert(&Value::Object(merged), root, depth);
        }
        tracing::debug!("dropping a multi-schema allOf Gemini cannot express");
    }

    let mut out = Map::new();
    let mut nullable = obj.get("nullable").and_then(Value::as_bool).unwrap_or(false);
    let mut kind: Option<String> = None;
    match obj.get("type") {
        Some(Value::String(t)) if t == "null" => nullable = true,
        Some(Value::String(t)) => kind = Some(t.clone()),
        Some(Value::Array(types)) => {
            let mut named: Vec<&str> = Vec::new();
            for t in types.iter().filter_map(Value::as_str) {
                if t == "null" {
                    nullable = true;
                } else {
                    named.push(t);
                }
            }
            match named.as_slice() {
                [] => {}
                [one] => kind = Some((*one).to_string()),
                many => {
                    // `type: ["string", "number"]` → `anyOf` of single-type schemas.
                    let mut rest = obj.clone();
                    rest.remove("type");
                    let variants = many
                        .iter()
                        .map(|t| {
                            let mut v = rest.clone();
                            v.insert("type".into(), Value::String((*t).to_string()));
                            convert(&Value::Object(v), root, depth)
                        })
                        .collect();
                    out.insert("anyOf".into(), Value::Array(variants));
                    if nullable {
                        out.insert("nullable".into(), Value::Bool(true));
                    }
                    return copy_annotations(out, obj);
                }
            }
        }
        _ => {}
    }

    let variants = obj.get("anyOf").or_else(|| obj.get("oneOf")).and_then(Value::as_array);
    if let Some(variants) = variants {
        let mut kept = Vec::with_capacity(variants.len());
        for v in variants {
            if v.get("type").and_then(Value::as_str) == Some("null") {
                nullable = true;
            } else {
                kept.push(convert(v, root, depth));
            }
        }
        match kept.len() {
            0 => {}
            // `anyOf: [X, null]` (Pydantic's `Optional[X]`) is X, nullable.
            1 => {
                if let Some(Value::Object(only)) = kept.pop() {
                    for (k, v) in only {
                        out.insert(k, v);
                    }
                }
            }
            _ => {
                out.insert("anyOf".into(), Value::Array(kept));
            }
        }
    }

    let mut values: Option<Vec<Value>> = obj.get("enum").and_then(Value::as_array).cloned();
    if let Some(c) = obj.get("const") {
        values = Some(vec![c.clone()]);
    }
    if let Some(vals) = values {
        // Gemini enums are string-only.
        let strings: Vec<Value> = vals.into_iter().filter(Value::is_string).collect();
        if strings.is_empty() {
            tracing::debug!("dropping a non-string enum Gemini cannot express");
        } else {
            kind.get_or_insert_with(|| "string".into());
            out.insert("enum".into(), Value::Array(strings));
        }
    }
    if let Some(k) = &kind {
        out.insert("type".into(), Value::String(k.clone()));
    }
    if nullable {
        out.insert("nullable".into(), Value::Bool(true));
    }
    if let Some(f) = obj.get("format").and_then(Value::as_str) {
        let supported = match kind.as_deref() {
            Some("string") => matches!(f, "enum" | "date-time"),
            Some("integer") => matches!(f, "int32" | "int64"),
            Some("number") => matches!(f, "float" | "double"),
            _ => false,
        };
        if supported {
            out.insert("format".into(), Value::String(f.into()));
        }
    }

    if let Some(Value::Object(props)) = obj.get("properties") {
        if !props.is_empty() {
            let converted: Map<String, Value> = props
                .iter()
                .map(|(k, v)| (k.clone(), convert(v, root, depth)))
                .collect();
            if let Some(Value::Array(req)) = obj.get("required") {
                // Google rejects `required` names that are not properties.
                let req: Vec<Value> = req
                    .iter()
                    .filter(|r| r.as_str().is_some_and(|n| converted.contains_key(n)))
                    .cloned()
                    .collect();
                if !req.is_empty() {
                    out.insert("required".into(), Value::Array(req));
                }
            }
            out.insert("properties".into(), Value::Object(converted));
        }
    }
    if let Some(items) = obj.get("items") {
        match items {
            Value::Object(_) => {
                out.insert("items".into(), convert(items, root, depth));
            }
            Value::Array(tuple) => {
                if let Some(first) = tuple.first() {
                    out.insert("items".into(), convert(first, root, depth));
                }
            }
            _ => {}
        }
    }
    if let Some(Value::Array(order)) = obj.get("propertyOrdering") {
        out.insert("propertyOrdering".into(), Value::Array(order.clone()));
    }
    for key in [
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "minProperties",
        "maxProperties",
        "minimum",
        "maximum",
    ] {
        if let Some(v) = obj.get(key).filter(|v| v.is_number()) {
            out.insert(key.into(), v.clone());
        }
    }
    if let Some(p) = obj.get("pattern").filter(|v| v.is_string()) {
        out.insert("pattern".into(), p.clone());
    }
    for key in ["default", "example"] {
        if let Some(v) = obj.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    if let Some(k) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        tracing::debug!(key = %k, "dropping JSON Schema keys Gemini does not accept");
    }
    copy_annotations(out, obj)
}

/// Keys `convert` reads (the rest are dropped).
const KNOWN: &[&str] = &[
    "type",
    "nullable",
    "anyOf",
    "oneOf",
    "allOf",
    "$ref",
    "enum",
    "const",
    "format",
    "properties",
    "required",
    "items",
    "propertyOrdering",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "minProperties",
    "maxProperties",
    "minimum",
    "maximum",
    "pattern",
    "default",
    "example",
    "title",
    "description",
    "$defs",
    "definitions",
];

fn copy_annotations(mut out: Map<String, Value>, obj: &Map<String, Value>) -> Value {
    for key in ["title", "description"] {
        if let Some(v) = obj.get(key).filter(|v| v.is_string()) {
            out.insert(key.into(), v.clone());
        }
    }
    Value::Object(out)
}

/// A `$ref` node's own description wins over the referenced schema's.
fn with_description(mut target: Value, node: &Map<String, Value>) -> Value {
    if let (Some(d), Some(t)) = (
        node.get("description").filter(|d| d.is_string()),
        target.as_object_mut(),
    ) {
        t.insert("description".into(), d.clone());
    }
    target
}

/// A local JSON pointer reference (`#/$defs/Name`), `~0`/`~1` unescaped.
fn resolve<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    if pointer.is_empty() {
        return Some(root);
    }
    root.pointer(pointer)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strips_unknown_keys_recursively() {
        let s = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "city": {"type": "string", "description": "City", "format": "email"},
                "when": {"type": "string", "format": "date-time"},
                "tags": {"type": "array", "items": {"type": "object", "additionalProperties": false,
                    "properties": {"k": {"type": "string"}}}, "uniqueItems": true}
            },
            "required": ["city", "ghost"],
            "strict": true
        });
        assert_eq!(
            to_schema(&s),
            json!({
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City"},
                    "when": {"type": "string", "format": "date-time"},
                    "tags": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}}}
                },
                "required": ["city"]
            })
        );
    }

    #[test]
    fn nullable_forms_and_unions() {
        assert_eq!(
            to_schema(&json!({"type": ["string", "null"]})),
            json!({"type": "string", "nullable": true})
        );
        assert_eq!(
            to_schema(&json!({"anyOf": [{"type": "integer"}, {"type": "null"}], "description": "n"})),
            json!({"type": "integer", "nullable": true, "description": "n"})
        );
        assert_eq!(
            to_schema(&json!({"oneOf": [{"type": "integer"}, {"type": "string"}]})),
            json!({"anyOf": [{"type": "integer"}, {"type": "string"}]})
        );
        assert_eq!(
            to_schema(&json!({"type": ["integer", "string"]})),
            json!({"anyOf": [{"type": "integer"}, {"type": "string"}]})
        );
    }

    #[test]
    fn enums_and_consts() {
        assert_eq!(
            to_schema(&json!({"const": "a"})),
            json!({"type": "string", "enum": ["a"]})
        );
        assert_eq!(
            to_schema(&json!({"type": "string", "enum": ["a", "b"]})),
            json!({"type": "string", "enum": ["a", "b"]})
        );
        assert_eq!(
            to_schema(&json!({"type": "integer", "enum": [1, 2]})),
            json!({"type": "integer"})
        );
    }

    #[test]
    fn refs_are_inlined_and_cycles_cut() {
        let s = json!({
            "$defs": {
                "Pet": {"type": "object", "properties": {"name": {"type": "string"}}},
                "Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}
            },
            "type": "object",
            "properties": {
                "pet": {"$ref": "#/$defs/Pet", "description": "the pet"},
                "list": {"$ref": "#/$defs/Node"},
                "wrapped": {"allOf": [{"$ref": "#/$defs/Pet"}], "description": "w"}
            }
        });
        let out = to_schema(&s);
        assert_eq!(
            out["properties"]["pet"],
            json!({"type": "object", "properties": {"name": {"type": "string"}}, "description": "the pet"})
        );
        assert_eq!(
            out["properties"]["wrapped"]["properties"]["name"],
            json!({"type": "string"})
        );
        assert_eq!(out["properties"]["wrapped"]["description"], "w");
        assert!(out.get("$defs").is_none());
        // Depth-limited: the innermost `next` is a bare object.
        let mut n = &out["properties"]["list"];
        let mut depth = 0;
        while let Some(next) = n.get("properties").and_then(|p| p.get("next")) {
            n = next;
            depth += 1;
        }
        assert_eq!(n, &json!({"type": "object"}));
        assert!(depth >= MAX_REF_DEPTH - 1, "{depth}");
    }

    #[test]
    fn empty_object_parameters_are_omitted() {
        assert_eq!(to_parameters(&json!({"type": "object", "properties": {}})), None);
        assert_eq!(to_parameters(&json!({"type": "object"})), None);
        assert!(to_parameters(&json!({"type": "object", "properties": {"a": {"type": "string"}}})).is_some());
    }
}
