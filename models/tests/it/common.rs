//! Fixtures: the installed tiny.en model, synthetic speech (committed espeak-ng recordings)
//! and word error rate.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use huddle_models::audio::resample::resample_to_16k;
use huddle_models::fetch::{InstalledModel, WhisperModel, fetch_whisper};
use huddle_models::ggml::Quant;
use huddle_models::whisper::WhisperEngine;

/// The models directory shared by the tests.
pub fn models_dir() -> PathBuf {
    match std::env::var_os("HUDDLE_MODELS_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_TARGET_TMPDIR")).join("models"),
    }
}

/// Installs (or finds) a model once per test process; tests that need the same model wait
/// for one fetch instead of racing.
pub fn installed(model: WhisperModel, quant: Quant) -> InstalledModel {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    fetch_whisper(model, quant, &models_dir(), &|p| eprintln!("fetch {model} {quant}: {p:?}"))
        .unwrap_or_else(|e| panic!("fetching {model} {quant}: {e}"))
}

/// tiny.en q8_0, loaded once.
pub fn tiny_q8() -> &'static WhisperEngine {
    static ENGINE: OnceLock<WhisperEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let model = installed(WhisperModel::TinyEn, Quant::Q8_0);
        WhisperEngine::load(&model.path).expect("load tiny.en q8_0")
    })
}

/// `text` as spoken by espeak-ng (a committed fixture, see `huddle_testsupport::speech`),
/// as 16 kHz mono f32 samples from huddle's own resampler.
pub fn speak(text: &str) -> Vec<f32> {
    let speech = huddle_testsupport::speech::spoken(text);
    resample_to_16k(&speech.to_f32(), speech.rate).expect("resample the fixture to 16 kHz")
}

pub use huddle_models::eval::word_error_rate as wer;
