//! OpenAI `/v1/embeddings` ↔ Gemini `batchEmbedContents`.
//!
//! One Gemini request per OpenAI input string, in order; `dimensions` becomes
//! `outputDimensionality`. Gemini reports no token counts for embeddings, so usage is zero.
//! `encoding_format: "base64"` (what the OpenAI SDKs ask for by default) is honoured by encoding
//! the little-endian f32 bytes, as OpenAI does.

use bytes::Bytes;
use serde_json::{json, Value};

use super::types::{BatchEmbedRequest, BatchEmbedResponse, Content, EmbedRequest, Part};
use crate::api::ApiError;
use crate::providers::StreamFault;

/// The `batchEmbedContents` body for an OpenAI embeddings body.
pub fn to_batch(body: &[u8], model: &str) -> Result<BatchEmbedRequest, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    let inputs: Vec<&str> = match v.get("input") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(Value::as_str)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
            ApiError::invalid(
                "input",
                "Gemini embeddings take a string or an array of strings (not token ids)",
            )
        })?,
        _ => {
            return Err(ApiError::invalid(
                "input",
                "expected a string or a non-empty array of strings",
            ))
        }
    };
    let dims = match v.get("dimensions") {
        None | Some(Value::Null) => None,
        Some(d) => Some(
            d.as_u64()
                .filter(|d| *d > 0)
                .ok_or_else(|| ApiError::invalid("dimensions", "expected a positive integer"))?,
        ),
    };
    encoding(body)?;
    let name = format!("models/{model}");
    Ok(BatchEmbedRequest {
        requests: inputs
            .into_iter()
            .map(|text| EmbedRequest {
                model: name.clone(),
                content: Content {
                    role: None,
                    parts: vec![Part::text(text)],
                },
                output_dimensionality: dims,
            })
            .collect(),
    })
}

/// Whether the client asked for base64 (`encoding_format`), checked at render time.
pub fn encoding(body: &[u8]) -> Result<bool, ApiError> {
    #[derive(serde::Deserialize)]
    struct Format {
        #[serde(default)]
        encoding_format: Option<String>,
    }
    let f: Format =
        serde_json::from_slice(body).map_err(|_| ApiError::invalid("encoding_format", "expected a string"))?;
    match f.encoding_format.as_deref() {
        None | Some("float") => Ok(false),
        Some("base64") => Ok(true),
        Some(other) => Err(ApiError::invalid(
            "encoding_format",
            format!("expected \"float\" or \"base64\", got {other:?}"),
        )),
    }
}

/// The OpenAI embeddings body for a `batchEmbedContents` answer.
pub fn to_openai(body: &[u8], model: &str, base64: bool) -> Result<Bytes, StreamFault> {
    let resp: BatchEmbedResponse =
        serde_json::from_slice(body).map_err(|e| StreamFault::Malformed(format!("gemini embeddings: {e}")))?;
    let data: Vec<Value> = resp
        .embeddings
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let embedding = if base64 {
                Value::String(crate::api::embeddings::base64_f32(e.values.iter().map(|x| *x as f32)))
            } else {
                json!(e.values)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let out = json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    });
    Ok(Bytes::from(out.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn inputs_become_requests() {
        let b = to_batch(
            br#"{"model":"e","input":["a","b"],"dimensions":256,"user":"u"}"#,
            "gemini-embedding-001",
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&b).unwrap(),
            json!({"requests": [
                {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}, "outputDimensionality": 256},
                {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]}, "outputDimensionality": 256}
            ]})
        );
        let one = to_batch(br#"{"model":"e","input":"x"}"#, "m").unwrap();
        assert_eq!(one.requests.len(), 1);
        assert_eq!(one.requests[0].output_dimensionality, None);
        for bad in [
            r#"{"model":"e","input":[1,2]}"#,
            r#"{"model":"e","input":[]}"#,
            r#"{"model":"e","input":"x","dimensions":0}"#,
            r#"{"model":"e","input":"x","encoding_format":"hex"}"#,
        ] {
            assert!(
                matches!(to_batch(bad.as_bytes(), "m"), Err(ApiError::InvalidField { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn answers_become_openai_lists() {
        let body = br#"{"embeddings":[{"values":[0.5,-1.0]},{"values":[1.0,0.0]}]}"#;
        let v: Value = serde_json::from_slice(&to_openai(body, "gemini-embedding-001", false).unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"object": "list", "model": "gemini-embedding-001",
                "data": [
                    {"object": "embedding", "index": 0, "embedding": [0.5, -1.0]},
                    {"object": "embedding", "index": 1, "embedding": [1.0, 0.0]}
                ],
                "usage": {"prompt_tokens": 0, "total_tokens": 0}})
        );
        let v: Value = serde_json::from_slice(&to_openai(body, "m", true).unwrap()).unwrap();
        // 0.5f32 = 00 00 00 3f, -1.0f32 = 00 00 80 bf.
        assert_eq!(v["data"][0]["embedding"], "AAAAPwAAgL8=");
        assert!(matches!(to_openai(b"{", "m", false), Err(StreamFault::Malformed(_))));
    }
}
