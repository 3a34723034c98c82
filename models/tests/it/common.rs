//! Fixtures: the installed tiny.en model, synthetic speech and word error rate.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

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

/// Speaks `text` with espeak-ng and returns 16 kHz mono f32 samples (sox resamples).
pub fn speak(text: &str) -> Vec<f32> {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("speech.wav");
    let raw = dir.path().join("speech.f32");
    let status = Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(&wav)
        .arg(text)
        .status()
        .expect("run espeak-ng (apt-get install espeak-ng)");
    assert!(status.success(), "espeak-ng failed");
    let status = Command::new("sox")
        .arg(&wav)
        .args(["-t", "raw", "-r", "16000", "-c", "1", "-e", "floating-point", "-b", "32", "-L"])
        .arg(&raw)
        .status()
        .expect("run sox (apt-get install sox)");
    assert!(status.success(), "sox failed");
    std::fs::read(&raw).unwrap().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

pub use huddle_models::eval::word_error_rate as wer;
