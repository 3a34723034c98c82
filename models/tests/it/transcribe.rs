//! Transcription with whisper.cpp on the converted tiny.en weights.

use std::time::Instant;

use huddle_models::fetch::WhisperModel;
use huddle_models::ggml::Quant;
use huddle_models::whisper::{AudioCtx, EngineError, TranscribeOptions, WhisperEngine};

use crate::common::{installed, speak, tiny_q8, wer};

const SENTENCE: &str = "The quick brown fox jumps over the lazy dog. \
                        Please send the meeting notes to the whole team before Friday.";

fn text_of(segments: &[huddle_models::whisper::Segment]) -> String {
    segments.iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join(" ")
}

#[test]
fn transcribes_synthetic_speech() {
    let engine = tiny_q8();
    let pcm = speak(SENTENCE);
    let started = Instant::now();
    let segments = engine.transcribe(&pcm, &TranscribeOptions::default()).unwrap();
    let elapsed = started.elapsed();
    let text = text_of(&segments);
    let rate = wer(SENTENCE, &text);
    eprintln!(
        "tiny.en q8_0, {:.2} s clip, {:?}: {text:?}, WER {:.1}%",
        pcm.len() as f64 / 16_000.0,
        elapsed,
        rate * 100.0
    );
    assert!(rate < 0.2, "WER {rate} for {text:?}");
    let clip_ms = pcm.len() as u64 * 1000 / 16_000;
    for s in &segments {
        assert!(s.start_ms <= s.end_ms && s.end_ms <= clip_ms + 1000, "{s:?}");
        assert!((0.0..=1.0).contains(&s.confidence), "{s:?}");
        assert_eq!(s.language, "en");
    }
    assert!(segments.iter().all(|s| s.confidence > 0.5), "{segments:?}");
}

#[test]
fn sized_window_is_as_accurate_as_the_full_window() {
    let engine = tiny_q8();
    let full = TranscribeOptions { audio_ctx: AudioCtx::Full, ..TranscribeOptions::default() };
    for reference in [SENTENCE, "Let us move the design review to Thursday afternoon.", "Good morning, everyone."] {
        let pcm = speak(reference);
        let started = Instant::now();
        let sized = text_of(&engine.transcribe(&pcm, &TranscribeOptions::default()).unwrap());
        let sized_time = started.elapsed();
        let started = Instant::now();
        let whole = text_of(&engine.transcribe(&pcm, &full).unwrap());
        let whole_time = started.elapsed();
        let (sized_wer, whole_wer) = (wer(reference, &sized), wer(reference, &whole));
        eprintln!("sized ({sized_time:?}, WER {sized_wer:.2}): {sized:?}");
        eprintln!("full  ({whole_time:?}, WER {whole_wer:.2}): {whole:?}");
        assert!(sized_wer < 0.2, "{sized:?}");
        assert!(sized_wer <= whole_wer + 0.1, "sized {sized:?} vs full {whole:?}");
    }
}

#[test]
fn f16_model_transcribes_too() {
    let model = installed(WhisperModel::TinyEn, Quant::F16);
    let engine = WhisperEngine::load(&model.path).unwrap();
    let pcm = speak(SENTENCE);
    let text = text_of(&engine.transcribe(&pcm, &TranscribeOptions::default()).unwrap());
    let rate = wer(SENTENCE, &text);
    eprintln!("tiny.en f16: {text:?}, WER {:.1}%", rate * 100.0);
    assert!(rate < 0.2, "{text:?}");
}

#[test]
fn silence_yields_no_segments() {
    let engine = tiny_q8();
    for seconds in [1usize, 5, 12] {
        let segments = engine.transcribe(&vec![0.0; 16_000 * seconds], &TranscribeOptions::default()).unwrap();
        assert!(segments.is_empty(), "{seconds} s of silence: {segments:?}");
    }
    assert!(engine.transcribe(&[], &TranscribeOptions::default()).unwrap().is_empty());
    assert!(engine.transcribe(&[0.0; 800], &TranscribeOptions::default()).unwrap().is_empty());
}

#[test]
fn bad_audio_and_language_are_errors() {
    let engine = tiny_q8();
    let mut pcm = vec![0.0; 16_000];
    pcm[5] = f32::NAN;
    let err = engine.transcribe(&pcm, &TranscribeOptions::default()).unwrap_err();
    assert!(matches!(err, EngineError::InvalidAudio(_)), "{err}");
    let german = TranscribeOptions { language: Some("de".into()), ..TranscribeOptions::default() };
    let err = engine.transcribe(&vec![0.0; 16_000], &german).unwrap_err();
    assert!(matches!(err, EngineError::EnglishOnly(_)), "{err}");
    let klingon = TranscribeOptions { language: Some("tlh".into()), ..TranscribeOptions::default() };
    let err = engine.transcribe(&vec![0.0; 16_000], &klingon).unwrap_err();
    assert!(matches!(err, EngineError::UnknownLanguage(_)), "{err}");
    let nul = TranscribeOptions { language: Some("e\0n".into()), ..TranscribeOptions::default() };
    let err = engine.transcribe(&vec![0.0; 16_000], &nul).unwrap_err();
    assert!(matches!(err, EngineError::UnknownLanguage(_)), "{err}");
}

#[test]
fn corrupt_model_files_are_clear_errors() {
    let model = installed(WhisperModel::TinyEn, Quant::Q8_0);
    let bytes = std::fs::read(&model.path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.bin");

    // Truncated mid-tensor, mid-vocabulary and mid-header.
    for len in [bytes.len() - 1, bytes.len() / 2, 300_000, 100, 3] {
        std::fs::write(&path, &bytes[..len]).unwrap();
        let err = WhisperEngine::load(&path).unwrap_err();
        assert!(matches!(err, EngineError::Corrupt { .. }), "{len}: {err}");
        assert!(err.to_string().contains("huddle models fetch"), "{err}");
    }
    // An ftype whisper.cpp would abort on (4: mostly q4_1 with some f16).
    let mut bad = bytes.clone();
    bad[44..48].copy_from_slice(&4i32.to_le_bytes());
    std::fs::write(&path, &bad).unwrap();
    assert!(matches!(WhisperEngine::load(&path).unwrap_err(), EngineError::Corrupt { .. }));
    // Garbage.
    std::fs::write(&path, vec![0x5a; 4096]).unwrap();
    let err = WhisperEngine::load(&path).unwrap_err();
    assert!(err.to_string().contains("not a whisper.cpp ggml model"), "{err}");
    // A CTranslate2 model.bin is not a ggml file.
    std::fs::write(&path, [6u32.to_le_bytes(), 0u32.to_le_bytes()].concat()).unwrap();
    assert!(matches!(WhisperEngine::load(&path).unwrap_err(), EngineError::Corrupt { .. }));
}

/// The multilingual base model end to end (a 133 MB download): run with `--ignored`.
#[test]
#[ignore = "downloads the 133 MB base model"]
fn base_q8_0_transcribes_and_detects_english() {
    let model = installed(WhisperModel::Base, Quant::Q8_0);
    eprintln!("base q8_0: {} bytes, sha256 {}", model.bytes, model.sha256);
    let engine = WhisperEngine::load(&model.path).unwrap();
    assert!(engine.is_multilingual());
    let pcm = speak(SENTENCE);
    let started = Instant::now();
    let segments = engine.transcribe(&pcm, &TranscribeOptions::default()).unwrap();
    let text = text_of(&segments);
    let rate = wer(SENTENCE, &text);
    eprintln!("base q8_0 ({:?}): {text:?}, WER {:.1}%", started.elapsed(), rate * 100.0);
    assert!(rate < 0.2, "{text:?}");
    assert!(segments.iter().all(|s| s.language == "en"), "{segments:?}");
    let silence = engine.transcribe(&vec![0.0; 16_000 * 5], &TranscribeOptions::default()).unwrap();
    assert!(silence.is_empty(), "{silence:?}");
}
