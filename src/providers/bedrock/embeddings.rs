//! OpenAI embeddings (`/v1/embeddings`) through Bedrock's `InvokeModel`, for the two embedding
//! families with a text API:
//!
//! * Amazon Titan (`amazon.titan-embed-*`): `{"inputText", "dimensions"?}` →
//!   `{"embedding": [..], "inputTextTokenCount": n}`. One input per call, so only a single string
//!   is accepted (one upstream call per input does not fit one attempt).
//! * Cohere (`cohere.embed-*`): `{"texts": [..], "input_type"}` → `{"embeddings": [[..], ..]}`.
//!   Cohere's body carries no token count on Bedrock (it is in the `x-amzn-bedrock-input-token-count`
//!   response header, which adapters do not see), so usage is 0 unless the body has
//!   `meta.billed_units.input_tokens`.
//!
//! `encoding_format: "base64"` (what the OpenAI SDKs send by default) is honoured: the vectors
//! are then the base64 of their little-endian f32 bytes, as OpenAI sends them.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::api::ApiError;
use crate::providers::StreamFault;

/// The request body for `model`, from the client's OpenAI embeddings body.
pub fn render(body: &[u8], model: &str) -> Result<Bytes, ApiError> {
    let obj: Map<String, Value> = serde_json::from_slice(body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    let bad = |field: &'static str, message: String| ApiError::InvalidField { field, message };
    match obj.get("encoding_format") {
        None | Some(Value::Null) => {}
        Some(Value::String(f)) if f == "float" || f == "base64" => {}
        Some(_) => return Err(bad("encoding_format", "must be \"float\" or \"base64\"".into())),
    }
    let dims = match obj.get("dimensions") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|d| *d >= 1)
                .ok_or_else(|| bad("dimensions", "must be a positive integer".into()))?,
        ),
    };
    let texts: Vec<&str> =
        match obj.get("input") {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .map(Value::as_str)
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("input", "Bedrock embedding models take text, not token ids".into()))?,
            _ => return Err(bad("input", "must be a string or a non-empty array of strings".into())),
        };
    let out = match family(model) {
        Some(Family::Titan) => {
            let [text] = texts.as_slice() else {
                return Err(bad(
                    "input",
                    format!(
                        "Titan embedding models embed one text per request; send a single string (got {})",
                        texts.len()
                    ),
                ));
            };
            let mut req = json!({"inputText": text});
            if let Some(d) = dims {
                if model.contains("titan-embed-text-v1") || model.contains("titan-embed-g1") {
                    return Err(bad("dimensions", format!("{model} has a fixed dimension")));
                }
                req["dimensions"] = d.into();
            }
            req
        }
        Some(Family::Cohere) => {
            let input_type = obj
                .get("input_type")
                .and_then(Value::as_str)
                .unwrap_or("search_document");
            let mut req = json!({"texts": texts, "input_type": input_type});
            if let Some(d) = dims {
                if !model.contains("embed-v4") {
                    return Err(bad("dimensions", format!("{model} has a fixed dimension")));
                }
                req["output_dimension"] = d.into();
            }
            req
        }
        None => {
            return Err(ApiError::Unsupported(format!(
                "Bedrock model {model:?} is not a supported embedding model (amazon.titan-embed-* or cohere.embed-*)"
            )))
        }
    };
    Ok(Bytes::from(out.to_string()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Titan,
    Cohere,
}

/// The embedding family of a model id (also matches cross-region ids like `us.cohere.embed-v4:0`).
pub fn family(model: &str) -> Option<Family> {
    if model.contains("amazon.titan-embed") {
        Some(Family::Titan)
    } else if model.contains("cohere.embed") {
        Some(Family::Cohere)
    } else {
        None
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TitanResponse {
    embedding: Vec<f64>,
    #[serde(default)]
    input_text_token_count: u64,
}

#[derive(Deserialize)]
struct CohereResponse {
    embeddings: CohereEmbeddings,
    #[serde(default)]
    meta: Option<Value>,
}

/// `embeddings` is a list of vectors, or by type (`{"float": [..]}`) when `embedding_types` was set.
#[derive(Deserialize)]
#[serde(untagged)]
enum CohereEmbeddings {
    Floats(Vec<Vec<f64>>),
    ByType { float: Vec<Vec<f64>> },
}

/// Whether the client's OpenAI body asked for `encoding_format: "base64"` (validated by `render`).
pub fn wants_base64(client_body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Format<'a> {
        #[serde(borrow, default)]
        encoding_format: Option<&'a str>,
    }
    serde_json::from_slice::<Format>(client_body).is_ok_and(|f| f.encoding_format == Some("base64"))
}

/// A Titan or Cohere answer → OpenAI's embeddings list (recognised by its shape).
pub fn parse(body: &[u8], model: &str, base64: bool) -> Result<Bytes, StreamFault> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| StreamFault::Malformed(format!("bedrock embeddings: {e}")))?;
    let malformed = |e: serde_json::Error| StreamFault::Malformed(format!("bedrock embeddings: {e}"));
    let (vectors, tokens) = if v.get("embedding").is_some() {
        let t: TitanResponse = serde_json::from_value(v).map_err(malformed)?;
        (vec![t.embedding], t.input_text_token_count)
    } else {
        let c: CohereResponse = serde_json::from_value(v).map_err(malformed)?;
        let tokens = c
            .meta
            .as_ref()
            .and_then(|m| m.pointer("/billed_units/input_tokens"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let vectors = match c.embeddings {
            CohereEmbeddings::Floats(v) | CohereEmbeddings::ByType { float: v } => v,
        };
        (vectors, tokens)
    };
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(index, embedding)| {
            let embedding = if base64 {
                let v: Vec<f32> = embedding.iter().map(|x| *x as f32).collect();
                Value::String(crate::api::embeddings::base64_f32(v.iter().copied()))
            } else {
                json!(embedding)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let out = json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    });
    Ok(Bytes::from(out.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn r(body: Value, model: &str) -> Result<Value, ApiError> {
        render(body.to_string().as_bytes(), model).map(|b| serde_json::from_slice(&b).unwrap())
    }

    #[test]
    fn titan_takes_one_string() {
        let m = "amazon.titan-embed-text-v2:0";
        assert_eq!(
            r(json!({"model": "e", "input": "hello", "dimensions": 256}), m).unwrap(),
            json!({"inputText": "hello", "dimensions": 256})
        );
        assert_eq!(
            r(json!({"model": "e", "input": ["one"]}), m).unwrap(),
            json!({"inputText": "one"})
        );
        let e = r(json!({"model": "e", "input": ["a", "b"]}), m).unwrap_err();
        assert!(matches!(e, ApiError::InvalidField { field: "input", .. }), "{e}");
        assert!(e.to_string().contains("single string"));
        assert!(r(json!({"model": "e", "input": [1, 2]}), m).is_err());
        assert!(r(
            json!({"model": "e", "input": "x", "dimensions": 8}),
            "amazon.titan-embed-text-v1"
        )
        .is_err());
        assert!(r(json!({"model": "e", "input": "x", "encoding_format": "hex"}), m).is_err());
    }

    #[test]
    fn cohere_takes_many() {
        let m = "cohere.embed-english-v3";
        assert_eq!(
            r(json!({"model": "e", "input": ["a", "b"]}), m).unwrap(),
            json!({"texts": ["a", "b"], "input_type": "search_document"})
        );
        assert_eq!(
            r(json!({"model": "e", "input": "q", "input_type": "search_query"}), m).unwrap(),
            json!({"texts": ["q"], "input_type": "search_query"})
        );
        assert!(r(json!({"model": "e", "input": "q", "dimensions": 256}), m).is_err());
        assert_eq!(
            r(
                json!({"model": "e", "input": "q", "dimensions": 256}),
                "us.cohere.embed-v4:0"
            )
            .unwrap()["output_dimension"],
            256
        );
        assert!(matches!(
            r(json!({"model": "e", "input": "q"}), "amazon.nova-lite-v1:0"),
            Err(ApiError::Unsupported(_))
        ));
    }

    #[test]
    fn answers_become_openai_lists() {
        let t: Value = serde_json::from_slice(
            &parse(
                br#"{"embedding":[0.5,-0.5],"inputTextTokenCount":3,"embeddingsByType":{}}"#,
                "titan",
                false,
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            t,
            json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.5]}],
                   "model": "titan", "usage": {"prompt_tokens": 3, "total_tokens": 3}})
        );
        let c: Value = serde_json::from_slice(
            &parse(
                br#"{"id":"x","embeddings":[[1.0],[2.0]],"texts":["a","b"],"response_type":"embeddings_floats"}"#,
                "c",
                false,
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            c["data"][1],
            json!({"object": "embedding", "index": 1, "embedding": [2.0]})
        );
        assert_eq!(c["usage"]["prompt_tokens"], 0);
        let c: Value =
            serde_json::from_slice(&parse(br#"{"embeddings":{"float":[[3.0]]}}"#, "c", false).unwrap()).unwrap();
        assert_eq!(c["data"][0]["embedding"], json!([3.0]));
        assert!(parse(b"{}", "c", false).is_err());
        assert!(parse(b"nope", "c", false).is_err());
    }

    #[test]
    fn base64_is_openais_encoding() {
        assert!(wants_base64(br#"{"model":"e","input":"x","encoding_format":"base64"}"#));
        assert!(!wants_base64(br#"{"model":"e","input":"x"}"#));
        let v: Value = serde_json::from_slice(
            &parse(br#"{"embedding":[1.0,-2.5,0.125],"inputTextTokenCount":1}"#, "t", true).unwrap(),
        )
        .unwrap();
        // The mock provider encodes OpenAI's base64 embeddings with its own implementation.
        let want = crate::mock::content::base64_f32(&[1.0, -2.5, 0.125]);
        assert_eq!(v["data"][0]["embedding"], want);
        assert_eq!(want, "AACAPwAAIMAAAAA+");
        for n in 0..5 {
            let v: Vec<f32> = (0..n).map(|i| i as f32 * 0.7).collect();
            assert_eq!(
                crate::api::embeddings::base64_f32(v.iter().copied()),
                crate::mock::content::base64_f32(&v)
            );
        }
    }
}
