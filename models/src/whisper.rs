//! Speech to text with whisper.cpp (through `whisper-rs`), behind a blocking API.
//!
//! [`WhisperEngine::load`] reads a ggml model, checks it with [`crate::ggml::inspect`]
//! before whisper.cpp sees it (whisper.cpp trusts its input and can abort on a bad file),
//! and routes whisper.cpp's logging to `tracing`. [`WhisperEngine::transcribe`] takes
//! 16 kHz mono f32 PCM and returns timed segments. Calls run on the caller's thread and
//! take from tens of milliseconds to seconds: call them from a blocking pool.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};

use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState};

use crate::ggml::{self, GgmlError, GgmlInfo};

/// The sample rate whisper expects.
pub const SAMPLE_RATE: u32 = 16_000;
/// Encoder positions per second of audio (one per 20 ms).
const AUDIO_CTX_PER_SECOND: usize = 50;
/// Positions added after the clip when sizing the encoder to it (1.28 s of padding).
const AUDIO_CTX_MARGIN: usize = 64;
/// The fewest encoder positions used for a short clip (5.12 s). With 128, tiny.en
/// hallucinated on a 2 s espeak-ng clip; from 192 up it matched the full window.
const AUDIO_CTX_MIN: usize = 256;
/// Decoded tokens allowed per second of audio, see [`max_tokens`].
const MAX_TOKENS_PER_SECOND: usize = 15;
/// Decoded tokens allowed on top of [`MAX_TOKENS_PER_SECOND`].
const MAX_TOKENS_MARGIN: usize = 32;
/// Below this mean token probability, a segment in a window that whisper thinks holds no
/// speech is dropped.
const MIN_CONFIDENCE_IF_NO_SPEECH: f32 = 0.5;

/// Errors from loading a model or transcribing.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("model file not found at {path}: run `huddle models fetch`")]
    ModelNotFound { path: PathBuf },
    #[error("cannot read model file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("model file {path} is not a usable whisper.cpp model: {source}; run `huddle models fetch` to reinstall it")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: GgmlError,
    },
    #[error("whisper.cpp could not load {path}: {source}")]
    Init {
        path: PathBuf,
        #[source]
        source: whisper_rs::WhisperError,
    },
    #[error("unknown language {0:?}: use a whisper language code such as \"en\" or \"de\", or \"auto\"")]
    UnknownLanguage(String),
    #[error("the model is English-only and cannot transcribe language {0:?}: use a multilingual model such as base")]
    EnglishOnly(String),
    #[error("invalid audio: {0}")]
    InvalidAudio(String),
    #[error("transcription failed: {0}")]
    Transcribe(#[from] whisper_rs::WhisperError),
}

/// Result alias for this module.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// How much of the encoder's 30 s window to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AudioCtx {
    /// Sized to the clip: `ceil(seconds * 50) + 64` positions, at least 256, the full 1500
    /// for clips of 30 s or more. On nine espeak-ng sentences of 0.5-7 s with tiny.en this
    /// was 7-9 times faster than the full window at the same word error rate.
    #[default]
    Auto,
    /// The full 30 s window (1500 positions), as the model was trained.
    Full,
    /// A fixed number of positions (clamped to 1..=1500).
    Positions(u32),
}

/// Options for one transcription.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscribeOptions {
    /// CPU threads for whisper.cpp.
    pub threads: u32,
    /// Spoken language code (`"en"`, `"de"`, ...), or `"auto"` to detect it. `None` means
    /// `"en"` for English-only models and `"auto"` otherwise.
    pub language: Option<String>,
    /// Translate to English instead of transcribing (multilingual models only).
    pub translate: bool,
    /// Encoder window sizing.
    pub audio_ctx: AudioCtx,
    /// Segments whose no-speech probability is above this and whose tokens are unlikely
    /// (mean probability under 0.5, or whisper.cpp's average log-probability under -1) are
    /// dropped (whisper.cpp's `no_speech_thold`).
    pub no_speech_threshold: f32,
}

impl Default for TranscribeOptions {
    fn default() -> Self {
        TranscribeOptions {
            threads: 1,
            language: None,
            translate: false,
            audio_ctx: AudioCtx::Auto,
            no_speech_threshold: 0.6,
        }
    }
}

/// One transcribed segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Start, in milliseconds from the start of the clip.
    pub start_ms: u64,
    /// End, in milliseconds from the start of the clip.
    pub end_ms: u64,
    /// The text, trimmed.
    pub text: String,
    /// Mean probability of the segment's text tokens, 0..=1.
    pub confidence: f32,
    /// whisper's probability that the window holds no speech, 0..=1.
    pub no_speech_prob: f32,
    /// Language code of the transcription, e.g. `"en"`.
    pub language: String,
}

/// Decoding state for one transcription at a time: whisper.cpp's working memory (KV
/// caches, mel buffers), made by [`WhisperEngine::new_session`]. Several sessions share one
/// engine's weights, so a pool of N parallel decoders holds the model once.
pub struct WhisperSession {
    state: WhisperState,
}

impl std::fmt::Debug for WhisperSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperSession").finish_non_exhaustive()
    }
}

/// A loaded whisper.cpp model with one built-in decoding state.
pub struct WhisperEngine {
    path: PathBuf,
    info: GgmlInfo,
    ctx: WhisperContext,
    state: Mutex<WhisperState>,
}

impl std::fmt::Debug for WhisperEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperEngine").field("path", &self.path).field("info", &self.info).finish_non_exhaustive()
    }
}

/// Routes whisper.cpp and ggml logging to `tracing` (target `whisper_rs::...`), once per
/// process, so that nothing is printed to stderr.
pub fn install_log_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(whisper_rs::install_logging_hooks);
}

/// A cap on the tokens decoded per window for a clip of `samples`, or `None` when the
/// decoder's own limit (half the text context) is lower. Speech runs at about 3 words (4-5
/// tokens with timestamps) a second; 15 a second plus 32 never cuts real speech but stops a
/// repetition loop (which whisper.cpp detects only after it ends) after a few dozen tokens
/// instead of 224, so a temperature fallback on a short clip costs tens of milliseconds
/// rather than seconds.
fn max_tokens(samples: usize, n_text_ctx: usize) -> Option<usize> {
    let cap = (samples * MAX_TOKENS_PER_SECOND).div_ceil(SAMPLE_RATE as usize) + MAX_TOKENS_MARGIN;
    (cap < n_text_ctx / 2).then_some(cap)
}

/// Encoder positions for a clip of `samples` at 16 kHz.
fn auto_audio_ctx(samples: usize, n_audio_ctx: usize) -> usize {
    let positions = (samples * AUDIO_CTX_PER_SECOND).div_ceil(SAMPLE_RATE as usize);
    if positions >= n_audio_ctx {
        return n_audio_ctx;
    }
    (positions + AUDIO_CTX_MARGIN).clamp(AUDIO_CTX_MIN, n_audio_ctx)
}

impl WhisperEngine {
    /// Loads a ggml model file (as installed by [`crate::fetch::fetch_whisper`]).
    pub fn load(path: &Path) -> Result<WhisperEngine> {
        install_log_hook();
        let bytes = std::fs::read(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                EngineError::ModelNotFound { path: path.to_owned() }
            } else {
                EngineError::Read { path: path.to_owned(), source }
            }
        })?;
        let info = ggml::inspect(&bytes).map_err(|source| EngineError::Corrupt { path: path.to_owned(), source })?;
        let mut params = WhisperContextParameters::default();
        params.use_gpu(false);
        let ctx = WhisperContext::new_from_buffer_with_params(&bytes, params)
            .map_err(|source| EngineError::Init { path: path.to_owned(), source })?;
        drop(bytes);
        let state = ctx.create_state().map_err(|source| EngineError::Init { path: path.to_owned(), source })?;
        tracing::debug!(
            path = %path.display(),
            layers = info.hparams.n_audio_layer,
            width = info.hparams.n_audio_state,
            weights = %info.weight_type,
            "loaded whisper model"
        );
        Ok(WhisperEngine { path: path.to_owned(), info, ctx, state: Mutex::new(state) })
    }

    /// The model file this engine was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the model file declared.
    pub fn info(&self) -> &GgmlInfo {
        &self.info
    }

    /// Whether the model can transcribe languages other than English.
    pub fn is_multilingual(&self) -> bool {
        self.info.hparams.is_multilingual()
    }

    /// A new decoding state over this engine's weights, for [`Self::transcribe_with`].
    pub fn new_session(&self) -> Result<WhisperSession> {
        let state = self.ctx.create_state().map_err(|source| EngineError::Init { path: self.path.clone(), source })?;
        Ok(WhisperSession { state })
    }

    /// Transcribes 16 kHz mono PCM in -1..=1. Returns no segments for silence or clips
    /// shorter than 100 ms. Concurrent calls on one engine take turns on its built-in
    /// state; give each thread its own [`WhisperSession`] to transcribe in parallel.
    pub fn transcribe(&self, pcm: &[f32], opts: &TranscribeOptions) -> Result<Vec<Segment>> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.transcribe_in(&mut state, pcm, opts)
    }

    /// [`Self::transcribe`] in the caller's own session.
    pub fn transcribe_with(
        &self,
        session: &mut WhisperSession,
        pcm: &[f32],
        opts: &TranscribeOptions,
    ) -> Result<Vec<Segment>> {
        self.transcribe_in(&mut session.state, pcm, opts)
    }

    fn transcribe_in(&self, state: &mut WhisperState, pcm: &[f32], opts: &TranscribeOptions) -> Result<Vec<Segment>> {
        if let Some(i) = pcm.iter().position(|s| !s.is_finite()) {
            return Err(EngineError::InvalidAudio(format!("sample {i} is {}", pcm[i])));
        }
        if pcm.len() < SAMPLE_RATE as usize / 10 {
            return Ok(Vec::new());
        }
        let language = match opts.language.as_deref() {
            None if self.is_multilingual() => "auto",
            None => "en",
            Some(code) => {
                // whisper-rs panics on a NUL byte, so only plain codes reach it.
                let plain = !code.is_empty() && code.len() <= 16 && code.bytes().all(|b| b.is_ascii_alphabetic());
                if !plain || (code != "auto" && whisper_rs::get_lang_id(code).is_none()) {
                    return Err(EngineError::UnknownLanguage(code.to_owned()));
                }
                if self.is_multilingual() {
                    code
                } else if code == "en" || code == "auto" {
                    "en"
                } else {
                    return Err(EngineError::EnglishOnly(code.to_owned()));
                }
            }
        };
        let n_audio_ctx = self.info.hparams.n_audio_ctx as usize;
        let audio_ctx = match opts.audio_ctx {
            AudioCtx::Auto => auto_audio_ctx(pcm.len(), n_audio_ctx),
            AudioCtx::Full => n_audio_ctx,
            AudioCtx::Positions(n) => (n as usize).clamp(1, n_audio_ctx),
        };

        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        params.set_n_threads(opts.threads.max(1) as i32);
        params.set_language(Some(language));
        params.set_translate(opts.translate && self.is_multilingual());
        params.set_no_context(true);
        params.set_audio_ctx(if audio_ctx == n_audio_ctx { 0 } else { audio_ctx as i32 });
        params.set_no_speech_thold(opts.no_speech_threshold);
        if let Some(max) = max_tokens(pcm.len(), self.info.hparams.n_text_ctx as usize) {
            params.set_max_tokens(max as i32);
        }
        params.set_suppress_nst(true);
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);

        state.full(params, pcm)?;
        let language = whisper_rs::get_lang_str(state.full_lang_id_from_state())
            .unwrap_or(if self.is_multilingual() { "auto" } else { "en" })
            .to_owned();
        let eot = self.ctx.token_eot();
        let clip_ms = pcm.len() as u64 * 1000 / u64::from(SAMPLE_RATE);
        let mut segments = Vec::new();
        for segment in state.as_iter() {
            let text = segment.to_str_lossy()?.trim().to_owned();
            if is_non_speech(&text) {
                continue;
            }
            let (mut sum, mut n) = (0.0f32, 0usize);
            for j in 0..segment.n_tokens() {
                if let Some(token) = segment.get_token(j)
                    && token.token_id() < eot
                {
                    sum += token.token_probability();
                    n += 1;
                }
            }
            let confidence = if n == 0 { 0.0 } else { sum / n as f32 };
            let no_speech_prob = segment.no_speech_probability();
            // whisper.cpp drops a window only when its tokens are also improbable by
            // average log-probability, which lets one-word hallucinations ("you") on silence
            // through; drop them when the mean token probability is low as well.
            if no_speech_prob > opts.no_speech_threshold && confidence < MIN_CONFIDENCE_IF_NO_SPEECH {
                tracing::debug!(text = %text, no_speech_prob, confidence, "dropped a likely hallucination");
                continue;
            }
            let start_ms = (segment.start_timestamp().max(0) as u64 * 10).min(clip_ms);
            let end_ms = (segment.end_timestamp().max(0) as u64 * 10).clamp(start_ms, clip_ms);
            segments.push(Segment { start_ms, end_ms, text, confidence, no_speech_prob, language: language.clone() });
        }
        Ok(segments)
    }
}

/// Empty text, or only an annotation such as `[BLANK_AUDIO]` or `(silence)`.
fn is_non_speech(text: &str) -> bool {
    let t = text.trim();
    t.is_empty()
        || (t.starts_with('[') && t.ends_with(']'))
        || (t.starts_with('(') && t.ends_with(')'))
        || t.chars().all(|c| !c.is_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        fn assert_send<T: Send>() {}
        assert_send_sync::<WhisperEngine>();
        assert_send::<WhisperSession>();
    }

    #[test]
    fn audio_ctx_follows_the_clip() {
        assert_eq!(auto_audio_ctx(16_000, 1500), 256);
        assert_eq!(auto_audio_ctx(16_000 * 3, 1500), 256);
        assert_eq!(auto_audio_ctx(16_000 * 5, 1500), 250 + 64);
        assert_eq!(auto_audio_ctx(16_000 * 10 + 1, 1500), 501 + 64);
        assert_eq!(auto_audio_ctx(16_000 * 29, 1500), 1500);
        assert_eq!(auto_audio_ctx(16_000 * 30, 1500), 1500);
        assert_eq!(auto_audio_ctx(16_000 * 300, 1500), 1500);
    }

    #[test]
    fn token_cap_only_binds_on_short_clips() {
        assert_eq!(max_tokens(16_000, 448), Some(47));
        assert_eq!(max_tokens(16_000 * 5, 448), Some(107));
        assert_eq!(max_tokens(16_000 * 13, 448), None);
        assert_eq!(max_tokens(16_000 * 30, 448), None);
    }

    #[test]
    fn annotations_are_not_speech() {
        for t in ["", "  ", "[BLANK_AUDIO]", "(silence)", "...", " ♪ "] {
            assert!(is_non_speech(t), "{t:?}");
        }
        for t in ["Hello.", "[laughs] no", "ok"] {
            assert!(!is_non_speech(t), "{t:?}");
        }
    }

    #[test]
    fn missing_and_garbage_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = WhisperEngine::load(&dir.path().join("absent.bin")).unwrap_err();
        assert!(matches!(err, EngineError::ModelNotFound { .. }), "{err}");
        assert!(err.to_string().contains("huddle models fetch"), "{err}");
        let path = dir.path().join("garbage.bin");
        std::fs::write(&path, b"lmgg\x01\x02\x03").unwrap();
        let err = WhisperEngine::load(&path).unwrap_err();
        assert!(matches!(err, EngineError::Corrupt { .. }), "{err}");
        std::fs::write(&path, b"").unwrap();
        assert!(WhisperEngine::load(&path).is_err());
    }
}
