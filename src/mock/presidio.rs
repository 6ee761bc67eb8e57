//! A fake Microsoft Presidio analyzer on the mock server (`POST /analyze`), for end-to-end tests
//! of the gateway's PII stage without a Python service.
//!
//! Request: Presidio's `{"text", "language", "entities"?, "score_threshold"?}`. Answer: Presidio's
//! JSON array of `{"entity_type", "start", "end", "score", "analysis_explanation": null,
//! "recognition_metadata": {"recognizer_name": "MockRecognizer"}}`, one per occurrence of a name
//! of the fixed [`GAZETTEER`], sorted by `start`:
//!
//! * `start`/`end` count **Unicode code points** (Python string indices), as Presidio's do;
//! * matching is exact (case-sensitive) and on whole words: the characters around a match are not
//!   alphanumeric or `_`;
//! * only the types in `entities` (all of [`ENTITIES`] when the field is absent or `null`; a type
//!   the gazetteer lacks finds nothing, as in Presidio) and no score under `score_threshold`
//!   (default 0). `Jordan` is the one low-confidence name (0.4), for threshold tests.
//!
//! Errors are Presidio's `{"error": "..."}`: 400 for a body that is not a JSON object, a missing
//! or empty `text` or `language`, or a mistyped `entities`/`score_threshold`. `GET` gets the
//! mock's 405. Directives come from the `x-mock-behavior` header and the server flags only (the
//! body is a prompt, whose `[[mock: ...]]` markers are meant for the LLM): `status` forces an
//! error, `latency_ms`, `hang` and `close_after=0` work as on every endpoint (`mod.rs`).

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::behavior::Behavior;
use super::openai::json_reply;
use super::Reply;

/// The names the fake recognises: `(entity type, name, score)`.
pub const GAZETTEER: [(&str, &str, f64); 10] = [
    ("PERSON", "Alice Johnson", 0.85),
    ("PERSON", "Jürgen Müller", 0.85),
    ("PERSON", "Zoë Dupont", 0.85),
    ("PERSON", "Bob Smith", 0.85),
    ("PERSON", "Jordan", 0.4),
    ("LOCATION", "Springfield", 0.85),
    ("LOCATION", "Köln", 0.85),
    ("LOCATION", "Paris", 0.85),
    ("ORGANIZATION", "Acme Corp", 0.85),
    ("ORGANIZATION", "Globex", 0.85),
];
/// The entity types of the gazetteer (asked for when a request names none).
pub const ENTITIES: [&str; 3] = ["PERSON", "LOCATION", "ORGANIZATION"];
/// `recognition_metadata.recognizer_name` of every finding.
pub const RECOGNIZER: &str = "MockRecognizer";

/// One finding, as Presidio serialises a `RecognizerResult`.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Finding {
    pub entity_type: &'static str,
    /// Code point offsets.
    pub start: usize,
    pub end: usize,
    pub score: f64,
    pub analysis_explanation: Option<()>,
    pub recognition_metadata: Metadata,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Metadata {
    pub recognizer_name: &'static str,
}

fn error(status: u16, message: impl Into<String>) -> Reply {
    json_reply(status, &json!({"error": message.into()}))
}

/// `POST /analyze`.
pub(crate) fn analyze(body: &[u8], b: &Behavior) -> Reply {
    if let Some(status) = b.forced_status() {
        let mut reply = error(
            status,
            format!("Forced {status} by the Tollgate mock (mock directive `status={status}`)."),
        );
        if let (Some(s), Reply::Json { headers, .. }) = (b.retry_after, &mut reply) {
            headers.push(("retry-after", s.to_string()));
        }
        return reply;
    }
    match request(body) {
        Ok((text, entities, threshold)) => json_reply(200, &findings(&text, &entities, threshold)),
        Err(message) => error(400, message),
    }
}

/// The text, the entity types asked for and the threshold of a request body.
fn request(body: &[u8]) -> Result<(String, Vec<String>, f64), String> {
    let obj: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(Value::Object(o)) => o,
        Ok(_) => return Err("Invalid request json: the body must be a JSON object".into()),
        Err(e) => return Err(format!("Invalid request json: {e}")),
    };
    let text = match obj.get("text") {
        Some(Value::String(t)) if !t.is_empty() => t.clone(),
        _ => return Err("No text provided".into()),
    };
    match obj.get("language") {
        Some(Value::String(l)) if !l.is_empty() => {}
        _ => return Err("No language provided".into()),
    }
    let entities = match obj.get("entities") {
        None | Some(Value::Null) => ENTITIES.map(String::from).to_vec(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|e| e.as_str().map(String::from))
            .collect::<Option<Vec<_>>>()
            .ok_or("entities: expected a list of strings")?,
        Some(_) => return Err("entities: expected a list of strings".into()),
    };
    let threshold = match obj.get("score_threshold") {
        None | Some(Value::Null) => 0.0,
        Some(v) => v.as_f64().ok_or("score_threshold: expected a number")?,
    };
    Ok((text, entities, threshold))
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Every whole-word occurrence in `text` of a gazetteer name of a type in `entities`, with a
/// score of at least `threshold`, sorted by start (code point offsets).
pub fn findings(text: &str, entities: &[String], threshold: f64) -> Vec<Finding> {
    let mut out = Vec::new();
    for (entity_type, name, score) in GAZETTEER {
        if score < threshold || !entities.iter().any(|e| e == entity_type) {
            continue;
        }
        for (at, _) in text.match_indices(name) {
            let (before, after) = (&text[..at], &text[at + name.len()..]);
            if before.chars().next_back().is_some_and(is_word) || after.chars().next().is_some_and(is_word) {
                continue;
            }
            let start = before.chars().count();
            out.push(Finding {
                entity_type,
                start,
                end: start + name.chars().count(),
                score,
                analysis_explanation: None,
                recognition_metadata: Metadata {
                    recognizer_name: RECOGNIZER,
                },
            });
        }
    }
    out.sort_by_key(|f| (f.start, f.end));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn answer(body: Value) -> (u16, Value) {
        match analyze(&serde_json::to_vec(&body).unwrap(), &Behavior::default()) {
            Reply::Json { status, body, .. } => (status, serde_json::from_slice(&body).unwrap()),
            Reply::Sse(_) => panic!("expected JSON"),
        }
    }

    /// `(type, the text at the code point offsets)` of each finding.
    fn spans(text: &str, v: &Value) -> Vec<(String, String)> {
        let chars: Vec<char> = text.chars().collect();
        v.as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let (s, e) = (
                    f["start"].as_u64().unwrap() as usize,
                    f["end"].as_u64().unwrap() as usize,
                );
                (
                    f["entity_type"].as_str().unwrap().to_string(),
                    chars[s..e].iter().collect(),
                )
            })
            .collect()
    }

    #[test]
    fn offsets_are_code_points() {
        let text = "Grüße an Jürgen Müller in Köln";
        let (status, v) = answer(json!({"text": text, "language": "en"}));
        assert_eq!(status, 200);
        assert_eq!(
            v,
            json!([
                {"entity_type": "PERSON", "start": 9, "end": 22, "score": 0.85, "analysis_explanation": null,
                 "recognition_metadata": {"recognizer_name": "MockRecognizer"}},
                {"entity_type": "LOCATION", "start": 26, "end": 30, "score": 0.85, "analysis_explanation": null,
                 "recognition_metadata": {"recognizer_name": "MockRecognizer"}},
            ])
        );
        assert_eq!(
            spans(text, &v),
            [
                ("PERSON".into(), "Jürgen Müller".into()),
                ("LOCATION".into(), "Köln".into())
            ]
        );
        // Byte offsets would differ: "Jürgen" starts at byte 11.
        assert_eq!(text.find("Jürgen"), Some(11));
    }

    #[test]
    fn whole_words_every_occurrence_and_the_entities_filter() {
        let text = "Parisian Globexx met Zoë Dupont of Acme Corp in Paris, then Zoë Dupont again.";
        let (_, v) = answer(json!({"text": text, "language": "en", "entities": ["PERSON", "ORGANIZATION"]}));
        assert_eq!(
            spans(text, &v),
            [
                ("PERSON".into(), "Zoë Dupont".into()),
                ("ORGANIZATION".into(), "Acme Corp".into()),
                ("PERSON".into(), "Zoë Dupont".into()),
            ]
        );
        let (_, v) = answer(json!({"text": text, "language": "en", "entities": ["LOCATION"]}));
        assert_eq!(spans(text, &v), [("LOCATION".into(), "Paris".into())]);
        let (_, v) = answer(json!({"text": text, "language": "en", "entities": ["EMAIL_ADDRESS"]}));
        assert_eq!(v, json!([]));
    }

    #[test]
    fn score_threshold() {
        let text = "Jordan and Bob Smith";
        let (_, v) = answer(json!({"text": text, "language": "en"}));
        assert_eq!(spans(text, &v).len(), 2);
        assert_eq!(v[0]["score"], 0.4);
        let (_, v) = answer(json!({"text": text, "language": "en", "score_threshold": 0.5}));
        assert_eq!(spans(text, &v), [("PERSON".into(), "Bob Smith".into())]);
        let (_, v) = answer(json!({"text": text, "language": "en", "score_threshold": 0.9}));
        assert_eq!(v, json!([]));
    }

    #[test]
    fn bad_bodies_are_400_with_presidios_shape() {
        let raw = |body: &[u8]| match analyze(body, &Behavior::default()) {
            Reply::Json { status, body, .. } => (status, serde_json::from_slice::<Value>(&body).unwrap()),
            Reply::Sse(_) => panic!("expected JSON"),
        };
        for body in [
            &b"not json"[..],
            b"[1]",
            b"{\"language\":\"en\"}",
            b"{\"text\":\"\",\"language\":\"en\"}",
        ] {
            let (status, v) = raw(body);
            assert_eq!(status, 400, "{}", String::from_utf8_lossy(body));
            assert!(v["error"].is_string(), "{v}");
        }
        assert_eq!(raw(b"{\"language\":\"en\"}").1["error"], "No text provided");
        for bad in [
            json!({"text": "x"}),
            json!({"text": "x", "language": "en", "entities": "PERSON"}),
            json!({"text": "x", "language": "en", "entities": [1]}),
            json!({"text": "x", "language": "en", "score_threshold": "high"}),
        ] {
            assert_eq!(answer(bad.clone()).0, 400, "{bad}");
        }
    }

    #[test]
    fn forced_status() {
        let b = Behavior {
            status: Some(503),
            retry_after: Some(2),
            ..Behavior::default()
        };
        let Reply::Json { status, body, headers } = analyze(b"{}", &b) else {
            panic!("expected JSON")
        };
        assert_eq!(status, 503);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert!(v["error"].as_str().unwrap().contains("status=503"));
        assert_eq!(headers, [("retry-after", "2".to_string())]);
    }
}
