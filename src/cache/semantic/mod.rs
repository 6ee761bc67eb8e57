//! The semantic cache: on an exact miss, the nearest earlier question among those asked in the
//! same context (everything but the last user turn the same: system prompt, earlier turns, tools,
//! parameters, tenant, alias), served when the embeddings are close enough and the look-alike
//! guard finds no difference that matters.
//!
//! - `embed`: the local embedding model (candle).

pub mod embed;

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
