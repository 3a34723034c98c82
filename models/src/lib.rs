//! Local models for huddle. This crate holds no actors: it wraps model
//! runtimes behind plain, blocking Rust APIs that actors call from a blocking
//! pool.
//!
//! It is empty in the foundation release; whisper.cpp transcription, candle
//! text embeddings, the HNSW index and audio DSP land here next (see the
//! speech and knowledge issues).
//!
//! # Layout
//! - (nothing yet)
//!
//! # Example
//! ```
//! assert_eq!(huddle_models::CRATE, "huddle-models");
//! ```

/// The crate's name, so that the workspace wiring can be checked.
pub const CRATE: &str = "huddle-models";
