//! Integration tests for huddle-models, against the real tiny.en weights and whisper.cpp.
//!
//! The weights are fetched once per target directory (into `$CARGO_TARGET_TMPDIR/models`,
//! or `$HUDDLE_MODELS_DIR` when set) and reused by later runs after a checksum check.
//! Speech comes from espeak-ng, resampled with sox (`apt-get install espeak-ng sox`).

mod audio;
mod common;
mod convert;
mod embed;
mod fetch;
mod transcribe;
