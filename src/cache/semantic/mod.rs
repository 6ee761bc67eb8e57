//! The semantic cache: on an exact miss, the nearest earlier question among those asked in the
//! same context (everything but the last user turn the same: system prompt, earlier turns, tools,
//! parameters, tenant, alias), served when the embeddings are close enough and the look-alike
//! guard finds no difference that matters.
//!
//! - `embed`: the local embedding model (candle).
//! - `facts`: the look-alike guard (the anchors two questions must share).
//! - `index`: the stored questions' vectors by context (HNSW).

pub mod embed;
pub mod facts;
pub mod index;
pub mod remote;

#[cfg(test)]
pub(crate) mod testing {
    use std::path::PathBuf;
    use std::sync::{Arc, OnceLock};

    /// The real model, fetched once by `scripts/fetch-model.sh` (into `$TOLLGATE_MODEL_DIR` or
    /// the user's cache) and loaded once per test binary.
    pub fn embedder() -> Arc<super::embed::Embedder> {
        static E: OnceLock<Arc<super::embed::Embedder>> = OnceLock::new();
        Arc::clone(E.get_or_init(|| {
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            let out = std::process::Command::new("bash")
                .arg(root.join("scripts/fetch-model.sh"))
                .output()
                .expect("run scripts/fetch-model.sh");
            assert!(
                out.status.success(),
                "fetch-model.sh: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string());
            Arc::new(super::embed::Embedder::load(&dir).expect("load the model"))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::embed::cosine;

    #[test]
    fn the_model_scores_the_issues_pairs_as_measured() {
        let e = super::testing::embedder();
        assert_eq!(e.dims(), 384);
        let sim = |a: &str, b: &str| cosine(&e.embed(a).unwrap(), &e.embed(b).unwrap());
        let refund = sim(
            "What is our refund policy for orders under $50?",
            "What is our refund policy for orders over $50?",
        );
        let convert = sim("Convert 100 Fahrenheit to Celsius", "Convert 100 Celsius to Fahrenheit");
        let same = sim("How do I reset my password?", "How do I reset my password?");
        let unrelated = sim("How do I reset my password?", "Best pizza toppings in Naples");
        eprintln!("refund {refund} convert {convert} same {same} unrelated {unrelated}");
        assert!((refund - 0.994).abs() < 0.01, "{refund}");
        assert!((convert - 0.991).abs() < 0.01, "{convert}");
        assert!(same > 0.9999, "{same}");
        assert!(unrelated < 0.3, "{unrelated}");
    }
}

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

/// Where embeddings come from.
enum Source {
    Local(Arc<embed::Embedder>),
    Remote(Arc<remote::Remote>),
}

impl Source {
    fn embed(&self, text: &str) -> Result<Vec<f32>, String> {
        match self {
            Source::Local(e) => e.embed(text),
            Source::Remote(r) => r.embed(text),
        }
    }
}

/// The semantic mode's parts, loaded once at start.
pub struct Semantic {
    source: Arc<Source>,
    pub index: index::Index,
    timeout: Duration,
    /// Embeddings running at once at most (one per core): past that a lookup is exact-only
    /// rather than queued behind others.
    slots: Arc<Semaphore>,
}

impl Semantic {
    /// Loads the local model, or prepares the alias's client (`listen`: the data plane's
    /// address, which the alias is asked through).
    pub fn load(s: &super::policy::SemanticSettings, listen: std::net::SocketAddr) -> Result<Semantic, String> {
        use super::policy::EmbeddingSource;
        let (source, dims) = match &s.source {
            EmbeddingSource::Local(dir) => {
                let e = embed::Embedder::load(dir).map_err(|e| format!("cache.semantic.model: {e}"))?;
                let dims = e.dims();
                (Source::Local(Arc::new(e)), dims)
            }
            // (The alias's dimension is learnt from its first answer.)
            EmbeddingSource::Alias { model, key } => (
                Source::Remote(Arc::new(remote::Remote::new(
                    listen,
                    model.clone(),
                    key.clone(),
                    s.timeout,
                ))),
                0,
            ),
        };
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Ok(Semantic {
            index: index::Index::new(dims, s.max_entries),
            source: Arc::new(source),
            timeout: s.timeout,
            slots: Arc::new(Semaphore::new(cores)),
        })
    }

    /// The vector of `text`, computed on a blocking thread within the timeout; or why not
    /// (`busy`, `timeout`, `failed`: the lookup is then exact-only, and counted).
    pub async fn vector(&self, text: &str) -> Result<Vec<f32>, &'static str> {
        let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
            return Err("busy");
        };
        let (source, text) = (Arc::clone(&self.source), text.to_owned());
        let job = tokio::task::spawn_blocking(move || {
            let v = source.embed(&text);
            drop(slot);
            v
        });
        match tokio::time::timeout(self.timeout, job).await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => {
                tracing::warn!(error = %e, "semantic cache: embedding failed");
                Err("failed")
            }
            Ok(Err(_)) => Err("failed"),
            Err(_) => Err("timeout"),
        }
    }
}

/// The default similarity a candidate needs (cosine of the last user turns' embeddings), with
/// the look-alike guard: calibrated on `tests/fixtures/semantic/pairs.json` (see `calibration`).
pub const DEFAULT_THRESHOLD: f32 = 0.92;

#[cfg(test)]
mod calibration {
    use super::embed::cosine;
    use super::facts::compatible;

    /// The committed pairs through the real model and the guard: no look-alike served at the
    /// default threshold (in either direction), and the paraphrase recall it leaves.
    #[test]
    fn at_the_defaults_no_look_alike_is_served() {
        let e = super::testing::embedder();
        let set: serde_json::Value =
            serde_json::from_str(include_str!("../../../tests/fixtures/semantic/pairs.json")).unwrap();
        let pairs = |kind: &str| -> Vec<(String, String, f32)> {
            set[kind]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let (a, b) = (p[0].as_str().unwrap(), p[1].as_str().unwrap());
                    (
                        a.to_string(),
                        b.to_string(),
                        cosine(&e.embed(a).unwrap(), &e.embed(b).unwrap()),
                    )
                })
                .collect()
        };
        let (para, look) = (pairs("paraphrases"), pairs("lookalikes"));
        let served = |t: f32, (a, b, s): &(String, String, f32)| *s >= t && compatible(a, b) && compatible(b, a);
        for t in [0.85, 0.88, 0.90, 0.92, 0.95] {
            let recall = para.iter().filter(|p| served(t, p)).count();
            let wrong: Vec<&(String, String, f32)> = look.iter().filter(|p| served(t, p)).collect();
            eprintln!(
                "threshold {t}: paraphrase recall {recall}/{}, wrong hits {} {wrong:?}",
                para.len(),
                wrong.len()
            );
        }
        let wrong: Vec<_> = look.iter().filter(|p| served(super::DEFAULT_THRESHOLD, p)).collect();
        assert!(wrong.is_empty(), "look-alikes served at the defaults: {wrong:?}");
        let recall = para.iter().filter(|p| served(super::DEFAULT_THRESHOLD, p)).count();
        let missed: Vec<_> = para.iter().filter(|p| !served(super::DEFAULT_THRESHOLD, p)).collect();
        eprintln!("missed paraphrases: {missed:?}");
        // The figure the README quotes; a change of model, threshold or guard that lowers it says so.
        assert!(
            recall * 100 >= para.len() * 70,
            "paraphrase recall {recall}/{}",
            para.len()
        );
    }
}

#[cfg(test)]
mod reference {
    /// The local embedder against a reference implementation of the same model (the BERT forward
    /// pass written out in numpy: `scripts/reference-embeddings.py`), on five sentences in three
    /// languages.
    #[test]
    fn the_local_embedder_matches_the_reference_vectors() {
        let e = super::testing::embedder();
        let set: serde_json::Value =
            serde_json::from_str(include_str!("../../../tests/fixtures/semantic/reference.json")).unwrap();
        for s in set["sentences"].as_array().unwrap() {
            let text = s["text"].as_str().unwrap();
            let reference: Vec<f32> = s["vector"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            let ours = e.embed(text).unwrap();
            let cos = super::embed::cosine(&ours, &reference);
            assert!(cos >= 0.999, "{text}: cosine {cos}");
        }
    }
}
