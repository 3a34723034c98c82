//! Sentence embeddings with all-MiniLM-L6-v2 on candle: BERT, mean pooling over the
//! attention mask, L2-normalised, 384 dimensions — the same vectors sentence-transformers
//! computes for this model.
//!
//! The shipped `tokenizer.json` pads every input to 128 tokens; [`Embedder::load`]
//! replaces that with padding to the longest text of each batch and truncation at 256
//! tokens (the model's `max_seq_length`), so short texts cost what they are.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams, TruncationStrategy};

/// Dimensions of an embedding.
pub const EMBEDDING_DIM: usize = 384;
/// Tokens the model reads at most (longer texts are truncated).
pub const MAX_TOKENS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("embedding model not found in {dir}: run `huddle models fetch`")]
    NotFound { dir: PathBuf },
    #[error("embedding model in {dir} is unusable ({what}): {message}; run `huddle models fetch` to reinstall it")]
    Corrupt { dir: PathBuf, what: &'static str, message: String },
    #[error("embedding failed: {0}")]
    Run(String),
}

/// A loaded embedding model. Cheap to share between threads (`Arc<Embedder>`); calls
/// run on the caller's thread and use candle's CPU threads.
pub struct Embedder {
    dir: PathBuf,
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl Embedder {
    /// Loads the model from a directory holding `model.safetensors`, `tokenizer.json` and
    /// `config.json` (as [`crate::fetch::fetch_embedder`] installs it).
    pub fn load(dir: &Path) -> Result<Embedder, EmbedError> {
        let corrupt = |what: &'static str, message: String| EmbedError::Corrupt { dir: dir.to_owned(), what, message };
        for f in ["model.safetensors", "tokenizer.json", "config.json"] {
            if !dir.join(f).is_file() {
                return Err(EmbedError::NotFound { dir: dir.to_owned() });
            }
        }
        let config: Config = serde_json::from_slice(
            &std::fs::read(dir.join("config.json")).map_err(|e| corrupt("config.json", e.to_string()))?,
        )
        .map_err(|e| corrupt("config.json", e.to_string()))?;
        if config.hidden_size != EMBEDDING_DIM {
            return Err(corrupt("config.json", format!("hidden size {} is not {EMBEDDING_DIM}", config.hidden_size)));
        }
        let mut tokenizer =
            Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| corrupt("tokenizer.json", e.to_string()))?;
        tokenizer.with_padding(Some(PaddingParams { strategy: PaddingStrategy::BatchLongest, ..Default::default() }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                strategy: TruncationStrategy::LongestFirst,
                ..Default::default()
            }))
            .map_err(|e| corrupt("tokenizer.json", e.to_string()))?;
        let device = Device::Cpu;
        // Read (not mmap) the weights: a file replaced or truncated underneath must not
        // crash the process; the safetensors header is checked as it is parsed.
        let weights =
            std::fs::read(dir.join("model.safetensors")).map_err(|e| corrupt("model.safetensors", e.to_string()))?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(|e| corrupt("model.safetensors", e.to_string()))?;
        let model = BertModel::load(vb, &config).map_err(|e| corrupt("model.safetensors", e.to_string()))?;
        Ok(Embedder { dir: dir.to_owned(), model, tokenizer, device })
    }

    pub fn dim(&self) -> usize {
        EMBEDDING_DIM
    }

    /// The tokenizer (padding and truncation as configured for the model).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Tokens of `text` without the special tokens.
    pub fn count_tokens(&self, text: &str) -> usize {
        self.tokenizer.encode(text, false).map(|e| e.get_ids().len()).unwrap_or(0)
    }

    /// L2-normalised embeddings of `texts`, in order. Texts of similar length are
    /// batched together so that padding costs little.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let run = |e: &dyn std::fmt::Display| EmbedError::Run(e.to_string());
        let encodings = self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| run(&e))?;
        // sort by length and cut into groups whose padding is small
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| encodings[i].get_attention_mask().iter().filter(|&&m| m == 1).count());
        let mut out = vec![Vec::new(); texts.len()];
        let mut start = 0;
        while start < order.len() {
            let len_of = |i: usize| encodings[order[i]].get_attention_mask().iter().filter(|&&m| m == 1).count();
            let first = len_of(start).max(1);
            let mut end = start + 1;
            // a group grows while its longest member is at most 1.5x its shortest (+4)
            while end < order.len() && len_of(end) <= first + first / 2 + 4 && end - start < 64 {
                end += 1;
            }
            let group: Vec<usize> = order[start..end].to_vec();
            let seq = group.iter().map(|&i| len_of_idx(&encodings[i])).max().unwrap_or(1).max(1);
            let n = group.len();
            let mut ids = Vec::with_capacity(n * seq);
            let mut mask = Vec::with_capacity(n * seq);
            for &i in &group {
                let e = &encodings[i];
                let l = len_of_idx(e);
                ids.extend(e.get_ids()[..l].iter().map(|&x| x as i64));
                ids.extend(std::iter::repeat_n(0i64, seq - l));
                mask.extend(std::iter::repeat_n(1f32, l));
                mask.extend(std::iter::repeat_n(0f32, seq - l));
            }
            let input = Tensor::from_vec(ids, (n, seq), &self.device).map_err(|e| run(&e))?;
            let types = input.zeros_like().map_err(|e| run(&e))?;
            let mask_t = Tensor::from_vec(mask, (n, seq), &self.device).map_err(|e| run(&e))?;
            let hidden = self.model.forward(&input, &types, Some(&mask_t)).map_err(|e| run(&e))?;
            let vectors = mean_pool_normalise(&hidden, &mask_t).map_err(|e| run(&e))?;
            for (&i, v) in group.iter().zip(vectors) {
                out[i] = v;
            }
            start = end;
        }
        Ok(out)
    }
}

/// Real (unpadded) tokens of an encoding.
fn len_of_idx(e: &tokenizers::Encoding) -> usize {
    e.get_attention_mask().iter().filter(|&&m| m == 1).count()
}

fn mean_pool_normalise(hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Vec<Vec<f32>>> {
    let mask3 = mask.unsqueeze(2)?; // (n, seq, 1)
    let summed = hidden.broadcast_mul(&mask3)?.sum(1)?; // (n, dim)
    let counts = mask.sum_keepdim(1)?.clamp(1e-9, f64::MAX)?; // (n, 1)
    let mean = summed.broadcast_div(&counts)?;
    let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
    mean.broadcast_div(&norm)?.to_vec2::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_corrupt_models_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let e = Embedder::load(dir.path()).unwrap_err();
        assert!(e.to_string().contains("huddle models fetch"), "{e}");
        for f in ["model.safetensors", "tokenizer.json", "config.json"] {
            std::fs::write(dir.path().join(f), b"{ not what it should be").unwrap();
        }
        let e = Embedder::load(dir.path()).unwrap_err();
        assert!(matches!(e, EmbedError::Corrupt { .. }), "{e}");
    }

    #[test]
    fn embedder_can_be_shared() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Embedder>();
    }
}
