//! `huddle transcribe` end to end: espeak-ng speech in WAV files of several formats,
//! the real tiny.en weights, and the errors a person sees for bad input. The speech and
//! the sox-written files are committed fixtures (`huddle_testsupport::speech`).

use std::path::{Path, PathBuf};

use huddle_models::audio::wav::encode_pcm16;
use huddle_models::eval::word_error_rate as wer;
use huddle_testsupport::speech::{fixture, resample, spoken, wav_bytes};
use serde_json::Value;

use crate::common::{huddle, models_dir, run};

const SENTENCES: [&str; 3] = [
    "Good morning everyone and welcome to the meeting.",
    "Please send the meeting notes to the whole team before Friday.",
    "Can you share your screen with the rest of us?",
];

/// `huddle transcribe ARGS --models-dir DIR` in `dir`.
fn transcribe(dir: &Path, args: &[&str]) -> crate::common::Run {
    run(huddle(dir).arg("transcribe").args(args).arg("--models-dir").arg(models_dir()))
}

/// The sentences spoken by espeak-ng at its own rate (22.05 kHz, 16-bit), with
/// `pause_s` of silence before, between and after; returns the path, the samples, the
/// rate and each sentence's span in ms.
fn speech_wav(dir: &Path, pause_s: f32) -> (PathBuf, Vec<f32>, u32, Vec<(u64, u64)>) {
    let mut pcm = Vec::new();
    let mut spans = Vec::new();
    let mut rate = 0;
    for text in SENTENCES {
        let clip = spoken(text);
        rate = clip.rate;
        let pause = (pause_s * rate as f32) as usize;
        pcm.extend(std::iter::repeat_n(0.0, pause));
        let start = pcm.len() as u64 * 1000 / u64::from(rate);
        pcm.extend(clip.to_f32());
        spans.push((start, pcm.len() as u64 * 1000 / u64::from(rate)));
    }
    pcm.extend(std::iter::repeat_n(0.0, (pause_s * rate as f32) as usize));
    let path = dir.join("speech.wav");
    std::fs::write(&path, encode_pcm16(&pcm, rate)).unwrap();
    (path, pcm, rate, spans)
}

#[test]
fn transcribes_speech_files() {
    let dir = tempfile::tempdir().unwrap();
    let (wav, pcm, rate, spans) = speech_wav(dir.path(), 0.8);
    let reference = SENTENCES.join(" ");

    // JSON lines, from a 48 kHz stereo 24-bit copy of the file.
    let stereo = dir.path().join("stereo48k.wav");
    let both: Vec<f32> = resample(&pcm, rate, 48_000).into_iter().flat_map(|s| [s, s]).collect();
    std::fs::write(&stereo, wav_bytes(&both, 48_000, 2, 24)).unwrap();
    let out = transcribe(dir.path(), &[stereo.to_str().unwrap(), "--json"]);
    let lines: Vec<Value> = out.json_lines();
    eprintln!("{}", out.stdout);
    assert!(!lines.is_empty());
    let mut last_end = 0;
    for l in &lines {
        let (start, end) = (l["start_ms"].as_u64().unwrap(), l["end_ms"].as_u64().unwrap());
        assert!(last_end <= start && start <= end, "{l}");
        last_end = end;
        assert!(spans.iter().any(|&(s, e)| start + 500 >= s && end <= e + 500), "{l} outside {spans:?}");
        assert_eq!(l["language"], "en");
        let confidence = l["confidence"].as_f64().unwrap();
        let no_speech = l["no_speech_prob"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&confidence) && (0.0..=1.0).contains(&no_speech), "{l}");
    }
    let text: Vec<&str> = lines.iter().map(|l| l["text"].as_str().unwrap()).collect();
    let rate = wer(&reference, &text.join(" "));
    assert!(rate < 0.2, "WER {rate}: {text:?}");

    // Human lines, from the 22.05 kHz original, with --language given.
    let out = transcribe(dir.path(), &[wav.to_str().unwrap(), "--language", "en"]);
    let human = out.ok();
    let mut said = Vec::new();
    for line in human.lines() {
        // [00:01.230 - 00:03.400] text
        let bytes = line.as_bytes();
        assert!(line.len() > 26 && bytes[0] == b'[' && &line[10..13] == " - " && &line[22..24] == "] ", "{line:?}");
        for ts in [&line[1..10], &line[13..22]] {
            assert!(
                ts.chars().enumerate().all(|(i, c)| if i == 2 {
                    c == ':'
                } else if i == 5 {
                    c == '.'
                } else {
                    c.is_ascii_digit()
                }),
                "{ts:?}"
            );
        }
        said.push(&line[24..]);
    }
    let rate = wer(&reference, &said.join(" "));
    assert!(rate < 0.2, "WER {rate}:\n{human}");
}

#[test]
fn silence_prints_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let silent = dir.path().join("silent.wav");
    std::fs::write(&silent, encode_pcm16(&vec![0.0; 16_000 * 4], 16_000)).unwrap();
    for json in [false, true] {
        let mut args = vec![silent.to_str().unwrap()];
        if json {
            args.push("--json");
        }
        let out = transcribe(dir.path(), &args);
        assert_eq!(out.ok(), "", "{}", out.stderr);
    }
    // Low noise, 44.1 kHz stereo: 5 s of white noise at 0.005 full scale (as `sox -n -r 44100
    // -c 2 -b 16 noise.wav synth 5 whitenoise vol 0.005` writes).
    let noise = dir.path().join("noise.wav");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let white: Vec<f32> = (0..44_100 * 5 * 2)
        .map(|_| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * 0.005
        })
        .collect();
    std::fs::write(&noise, wav_bytes(&white, 44_100, 2, 16)).unwrap();
    assert_eq!(transcribe(dir.path(), &[noise.to_str().unwrap()]).ok(), "");
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();

    let out = transcribe(dir.path(), &[&p("absent.wav")]);
    let err = out.err();
    assert!(err.starts_with("error: audio file not found at ") && err.contains("absent.wav"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    std::fs::write(p("notes.wav"), "these are meeting notes, not audio").unwrap();
    let err = transcribe(dir.path(), &[&p("notes.wav")]).err().to_owned();
    assert!(err.contains("notes.wav: not a WAV file") && err.contains("sox"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    // A-law and mu-law, as sox writes them (`sox -n -r 8000 -c 1 -b 16 tone-8k.wav synth 1
    // sine 300`, then `sox tone-8k.wav -e a-law tone-8k-a-law.wav`).
    let tone = fixture("sox/tone-8k.wav");
    let pcm = tone.to_str().unwrap();
    for (encoding, name) in [("a-law", "A-law"), ("u-law", "mu-law")] {
        let path = fixture(&format!("sox/tone-8k-{encoding}.wav"));
        let path = path.to_str().unwrap();
        let err = transcribe(dir.path(), &[path]).err().to_owned();
        assert!(
            err.contains(&format!("unsupported WAV sample format {name}")) && err.contains("signed-integer"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }

    // A WAV cut short.
    let bytes = std::fs::read(pcm).unwrap();
    std::fs::write(p("cut.wav"), &bytes[..bytes.len() / 2]).unwrap();
    let err = transcribe(dir.path(), &[&p("cut.wav")]).err().to_owned();
    assert!(err.contains("cut.wav: truncated WAV file"), "{err}");

    // A model that is not there.
    let out = run(huddle(dir.path()).args(["transcribe", pcm, "--whisper-model", &p("nope.bin")]));
    let err = out.err();
    assert!(err.contains("model file not found") && err.contains("huddle models fetch"), "{err}");

    // Usage errors come from clap, with exit code 2.
    let out = run(huddle(dir.path()).args(["transcribe"]));
    assert_eq!(out.status.code(), Some(2));
    let help = run(huddle(dir.path()).args(["transcribe", "--help"]));
    for want in
        ["FILE.wav", "--whisper-model", "--models-dir", "--json", "--language", "huddle models fetch", "start_ms"]
    {
        assert!(help.ok().contains(want), "`{want}` missing from transcribe --help:\n{}", help.stdout);
    }
}
