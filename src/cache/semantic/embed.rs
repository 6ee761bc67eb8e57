//! The local embedder: a sentence-embedding model (BERT family, e.g. all-MiniLM-L6-v2) in
//! safetensors with its `tokenizer.json`, run on the CPU with `candle` (inference) and
//! `tokenizers` (the model's own tokenizer): mean pooling over the tokens, L2-normalised, as
//! sentence-transformers computes it.
//!
//! An embedding takes milliseconds of CPU: callers run it on a blocking thread
//! (`tokio::task::spawn_blocking`), never on a proxy thread. The padding the tokenizer file asks
//! for (to 128 tokens) is turned off: padded positions are masked out of the mean anyway, and
//! computing them would cost up to ten times more for a short question. Truncation (128 tokens,
//! what the model was trained on) stays.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config, DTYPE};
use tokenizers::Tokenizer;

/// A loaded model.
pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    dims: usize,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("dims", &self.dims)
            .finish_non_exhaustive()
    }
}

impl Embedder {
    /// Loads `dir/config.json`, `dir/model.safetensors` and `dir/tokenizer.json`.
    pub fn load(dir: &Path) -> Result<Embedder, String> {
        let read = |name: &str| std::fs::read(dir.join(name)).map_err(|e| format!("{}: {e}", dir.join(name).display()));
        let config: Config = serde_json::from_slice(&read("config.json")?)
            .map_err(|e| format!("{}: {e}", dir.join("config.json").display()))?;
        let weights = read("model.safetensors")?;
        let device = Device::Cpu;
        let vb = VarBuilder::from_buffered_safetensors(weights, DTYPE, &device)
            .map_err(|e| format!("{}: {e}", dir.join("model.safetensors").display()))?;
        let model = BertModel::load(vb, &config).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| format!("{}: {e}", dir.join("tokenizer.json").display()))?;
        tokenizer.with_padding(None);
        let dims = config_dims(&read("config.json")?).unwrap_or(0);
        let e = Embedder {
            model,
            tokenizer,
            device,
            dims,
        };
        // A model that loads but cannot run (wrong architecture, truncated weights) is found now.
        let v = e.embed("ready")?;
        Ok(Embedder { dims: v.len(), ..e })
    }

    /// The vector's length.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The unit vector of `text` (an empty text embeds as the model's special tokens alone).
    pub fn embed(&self, text: &str) -> Result<Vec<f32>, String> {
        let err = |e: candle_core::Error| format!("embedding failed: {e}");
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| format!("tokenizer: {e}"))?;
        let ids = Tensor::new(enc.get_ids(), &self.device)
            .and_then(|t| t.unsqueeze(0))
            .map_err(err)?;
        let types = ids.zeros_like().map_err(err)?;
        let mask = Tensor::new(enc.get_attention_mask(), &self.device)
            .and_then(|t| t.unsqueeze(0))
            .map_err(err)?;
        let out = self.model.forward(&ids, &types, Some(&mask)).map_err(err)?;
        // Mean over the tokens the mask keeps, then unit length.
        let m = mask.to_dtype(DType::F32).and_then(|m| m.unsqueeze(2)).map_err(err)?;
        let summed = out.broadcast_mul(&m).and_then(|t| t.sum(1)).map_err(err)?;
        let count = m.sum(1).map_err(err)?;
        let mean = summed.broadcast_div(&count).map_err(err)?;
        let mut v: Vec<f32> = mean.squeeze(0).and_then(|t| t.to_vec1()).map_err(err)?;
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if !norm.is_finite() || norm == 0.0 {
            return Err("embedding failed: the model gave no direction".into());
        }
        for x in &mut v {
            *x /= norm;
        }
        Ok(v)
    }
}

fn config_dims(config: &[u8]) -> Option<usize> {
    let v: serde_json::Value = serde_json::from_slice(config).ok()?;
    v["hidden_size"].as_u64().map(|n| n as usize)
}

/// The cosine similarity of two unit vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
