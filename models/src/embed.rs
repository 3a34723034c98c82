//! Sentence embeddings with all-MiniLM-L6-v2: BERT, mean pooling over the real tokens,
//! L2-normalised, 384 dimensions — the vectors sentence-transformers computes for this model
//! (cosine >= 0.999 on the golden texts, checked by the integration tests).
//!
//! The encoder is huddle's own ([`bert`], [`kernels`]): the weights are read from
//! `model.safetensors`, the tokens of a whole batch are packed without padding so the
//! linear layers see only real tokens, and attention runs per text. On x86-64 CPUs with
//! AVX512_BF16 the linear layers multiply bf16 (rounded weights and activations, f32
//! accumulation); elsewhere, or with [`Precision::F32`], they are f32 through the `gemm`
//! crate. Calls use rayon's global thread pool.
//!
//! The shipped `tokenizer.json` pads every input to 128 tokens; [`Embedder::load`]
//! replaces that with padding to the longest text of each batch and truncation at 256
//! tokens (the model's `max_seq_length`). The padding never reaches the encoder.
//!
//! # Layout
//! - [`bert`]: the encoder over packed sequences, and mean pooling.
//! - [`kernels`]: linear layers (bf16 AVX-512 kernel, f32 `gemm`), attention, layer norm,
//!   GELU.

use std::path::{Path, PathBuf};

use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams, TruncationStrategy};

pub mod bert;
pub mod kernels;

use bert::{Bert, BertConfig};
pub use kernels::Precision;

/// Dimensions of an embedding.
pub const EMBEDDING_DIM: usize = 384;
/// Tokens the model reads at most (longer texts are truncated).
pub const MAX_TOKENS: usize = 256;
/// Tokens run through the encoder at once at most; longer calls are cut (memory stays
/// bounded, about 40 KB per token).
const MAX_PASS_TOKENS: usize = 4096;

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
/// run on the caller's thread and rayon's global pool.
pub struct Embedder {
    dir: PathBuf,
    model: Bert,
    tokenizer: Tokenizer,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("dir", &self.dir)
            .field("precision", &self.model.precision())
            .finish_non_exhaustive()
    }
}

impl Embedder {
    /// Loads the model from a directory holding `model.safetensors`, `tokenizer.json` and
    /// `config.json` (as [`crate::fetch::fetch_embedder`] installs it), with the fastest
    /// arithmetic this CPU has ([`Precision::best_available`]).
    pub fn load(dir: &Path) -> Result<Embedder, EmbedError> {
        Embedder::load_with_precision(dir, Precision::best_available())
    }

    /// [`Embedder::load`] with the linear layers' arithmetic chosen; [`Precision::Bf16`] falls
    /// back to f32 on CPUs without AVX512_BF16.
    pub fn load_with_precision(dir: &Path, precision: Precision) -> Result<Embedder, EmbedError> {
        let corrupt = |what: &'static str, message: String| EmbedError::Corrupt { dir: dir.to_owned(), what, message };
        for f in ["model.safetensors", "tokenizer.json", "config.json"] {
            if !dir.join(f).is_file() {
                return Err(EmbedError::NotFound { dir: dir.to_owned() });
            }
        }
        let config: BertConfig = serde_json::from_slice(
            &std::fs::read(dir.join("config.json")).map_err(|e| corrupt("config.json", e.to_string()))?,
        )
        .map_err(|e| corrupt("config.json", e.to_string()))?;
        if config.hidden_size != EMBEDDING_DIM {
            return Err(corrupt("config.json", format!("hidden size {} is not {EMBEDDING_DIM}", config.hidden_size)));
        }
        if config.max_position_embeddings < MAX_TOKENS {
            return Err(corrupt(
                "config.json",
                format!("{} positions are fewer than {MAX_TOKENS}", config.max_position_embeddings),
            ));
        }
        config.check().map_err(|e| corrupt("config.json", e))?;
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
        // Read (not mmap) the weights: a file replaced or truncated underneath must not
        // crash the process; the safetensors header is checked as it is parsed.
        let weights =
            std::fs::read(dir.join("model.safetensors")).map_err(|e| corrupt("model.safetensors", e.to_string()))?;
        let tensors =
            safetensors::SafeTensors::deserialize(&weights).map_err(|e| corrupt("model.safetensors", e.to_string()))?;
        let model = Bert::load(config, &tensors, precision).map_err(|e| corrupt("model.safetensors", e))?;
        Ok(Embedder { dir: dir.to_owned(), model, tokenizer })
    }

    pub fn dim(&self) -> usize {
        EMBEDDING_DIM
    }

    /// The arithmetic the linear layers use.
    pub fn precision(&self) -> Precision {
        self.model.precision()
    }

    /// The tokenizer (padding and truncation as configured for the model).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Tokens of `text` without the special tokens.
    pub fn count_tokens(&self, text: &str) -> usize {
        self.tokenizer.encode(text, false).map(|e| e.get_ids().len()).unwrap_or(0)
    }

    /// L2-normalised embeddings of `texts`, in order. A text's vector does not depend on
    /// the others in the call (no padding reaches the encoder).
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let run = |e: &dyn std::fmt::Display| EmbedError::Run(e.to_string());
        let encodings = if let [one] = texts {
            vec![self.tokenizer.encode(*one, true).map_err(|e| run(&e))?]
        } else {
            self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| run(&e))?
        };
        // the real tokens of each text (the tokenizer pads to the longest)
        let ids: Vec<&[u32]> = encodings
            .iter()
            .map(|e| {
                let real = e.get_attention_mask().iter().filter(|&&m| m == 1).count();
                &e.get_ids()[..real]
            })
            .collect();
        let mut out = Vec::with_capacity(texts.len());
        let mut start = 0;
        while start < ids.len() {
            let mut end = start;
            let mut tokens = 0;
            while end < ids.len() && (end == start || tokens + ids[end].len() <= MAX_PASS_TOKENS) {
                tokens += ids[end].len();
                end += 1;
            }
            out.extend(self.model.embed(&ids[start..end]).map_err(|e| run(&e))?);
            start = end;
        }
        Ok(out)
    }
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
