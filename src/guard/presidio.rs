//! Microsoft Presidio's analyzer, as far as the gateway uses it: one `POST /analyze` per request
//! with every text of the body joined (`Batch`), and its findings mapped back to byte ranges in
//! each text (`request::External`). The I/O is `proxy::guard`'s; this module is the wire format.
//!
//! Presidio's offsets count Unicode code points (Python string indices); the gateway works in
//! UTF-8 byte offsets, so each offset is converted over the joined text before it is split.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::entity::{Catalog, Finding};
use super::policy::OnFailure;

/// An external analyzer's findings for each text of the body, in the walk's order
/// (`redact::for_each_string`).
#[derive(Debug, Default, Clone)]
pub struct External {
    pub per_text: Vec<Vec<Finding>>,
}

/// The analyzer's settings, resolved from `guardrails.presidio`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The `Host` header and the request path (`<base path>/analyze`).
    pub host: String,
    pub path: String,
    pub timeout: Duration,
    pub on_failure: OnFailure,
    /// The entity types asked for; each is a kind of the detector's catalog.
    pub entities: Vec<String>,
    pub min_score: f64,
    pub language: String,
}

/// Between two texts of the batch: no entity spans it.
const SEPARATOR: &str = "\n\n";

/// The texts of one request, joined for one analyzer call.
#[derive(Debug, Default)]
pub struct Batch {
    text: String,
    /// Byte range of each text in `text`.
    spans: Vec<(usize, usize)>,
}

#[derive(Serialize)]
struct AnalyzeRequest<'a> {
    text: &'a str,
    language: &'a str,
    entities: &'a [String],
    score_threshold: f64,
}

#[derive(Deserialize)]
struct Recognized {
    entity_type: String,
    start: usize,
    end: usize,
    #[serde(default)]
    score: f64,
}

impl Batch {
    pub fn push(&mut self, text: &str) {
        if !self.text.is_empty() {
            self.text.push_str(SEPARATOR);
        }
        let start = self.text.len();
        self.text.push_str(text);
        self.spans.push((start, self.text.len()));
    }

    /// Nothing worth asking about.
    pub fn is_blank(&self) -> bool {
        self.text.trim().is_empty()
    }

    /// The body of `POST /analyze`.
    pub fn body(&self, settings: &Settings) -> Vec<u8> {
        serde_json::to_vec(&AnalyzeRequest {
            text: &self.text,
            language: &settings.language,
            entities: &settings.entities,
            score_threshold: settings.min_score,
        })
        .unwrap_or_default()
    }

    /// The analyzer's answer as findings per text. Types the catalog does not know, findings
    /// under `min_score`, out-of-range offsets and spans across two texts are dropped.
    pub fn findings(&self, answer: &[u8], settings: &Settings, catalog: &Catalog) -> Result<External, String> {
        let found: Vec<Recognized> = serde_json::from_slice(answer)
            .map_err(|e| format!("the analyzer's answer is not a list of findings: {e}"))?;
        // Code point index -> byte offset, over the joined text (and its end).
        let bytes: Vec<usize> = self
            .text
            .char_indices()
            .map(|(b, _)| b)
            .chain(std::iter::once(self.text.len()))
            .collect();
        let mut per_text = vec![Vec::new(); self.spans.len()];
        for r in found {
            if r.score < settings.min_score || !settings.entities.contains(&r.entity_type) {
                continue;
            }
            let (Some(kind), Some(&start), Some(&end)) =
                (catalog.kind(&r.entity_type), bytes.get(r.start), bytes.get(r.end))
            else {
                continue;
            };
            if start >= end {
                continue;
            }
            let i = self.spans.partition_point(|&(s, _)| s <= start);
            let Some(&(s, e)) = i.checked_sub(1).and_then(|i| self.spans.get(i)) else {
                continue;
            };
            if end <= e {
                per_text[i - 1].push(Finding {
                    kind,
                    start: start - s,
                    end: end - s,
                });
            }
        }
        for f in &mut per_text {
            f.sort_by_key(|f| f.start);
        }
        Ok(External { per_text })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::guard::entity::Class;

    fn settings() -> Settings {
        Settings {
            host: "presidio".into(),
            path: "/analyze".into(),
            timeout: Duration::from_millis(100),
            on_failure: OnFailure::Closed,
            entities: vec!["PERSON".into(), "LOCATION".into()],
            min_score: 0.5,
            language: "en".into(),
        }
    }

    #[test]
    fn code_point_offsets_come_back_as_byte_ranges_of_the_right_text() {
        let mut catalog = Catalog::default();
        catalog.add("EMAIL", Class::Pii);
        let person = catalog.add("PERSON", Class::Pii);
        let mut batch = Batch::default();
        batch.push("Grüße an Jürgen");
        batch.push("Zoë lives in Köln");
        let body: serde_json::Value = serde_json::from_slice(&batch.body(&settings())).unwrap();
        assert_eq!(body["text"], "Grüße an Jürgen\n\nZoë lives in Köln");
        assert_eq!(body["entities"], serde_json::json!(["PERSON", "LOCATION"]));
        // Presidio counts code points: "Jürgen" is 9..15, "Zoë" 17..20; a low score and an
        // unknown type are dropped, a span across the two texts too.
        let answer = br#"[{"entity_type":"PERSON","start":9,"end":15,"score":0.85},
            {"entity_type":"PERSON","start":17,"end":20,"score":0.9},
            {"entity_type":"PERSON","start":0,"end":5,"score":0.2},
            {"entity_type":"NRP","start":0,"end":5,"score":0.9},
            {"entity_type":"PERSON","start":12,"end":19,"score":0.9},
            {"entity_type":"PERSON","start":90,"end":95,"score":0.9}]"#;
        let ext = batch.findings(answer, &settings(), &catalog).unwrap();
        let texts = ["Grüße an Jürgen", "Zoë lives in Köln"];
        let got: Vec<Vec<&str>> = ext
            .per_text
            .iter()
            .zip(texts)
            .map(|(fs, t)| fs.iter().map(|f| &t[f.start..f.end]).collect())
            .collect();
        assert_eq!(got, vec![vec!["Jürgen"], vec!["Zoë"]]);
        assert!(ext.per_text[0].iter().all(|f| f.kind == person));
        assert!(batch.findings(b"{\"error\":1}", &settings(), &catalog).is_err());
    }
}
