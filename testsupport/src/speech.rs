//! Speech fixtures: sentences spoken by espeak-ng, and files written by sox, committed under
//! `testsupport/fixtures/speech/` so that tests need neither tool. The script next to them,
//! `make.sh`, regenerates them (it needs `apt-get install -y espeak-ng sox`); `manifest.json`
//! maps each voice and sentence to its file.
//!
//! Speech comes as espeak-ng writes it (16-bit mono, 22 050 Hz). A test that needs another
//! rate resamples it: to 16 kHz with huddle's own resampler (`huddle_models::audio::resample`),
//! to other rates with [`Speech::resampled`].
//!
//! ```
//! use huddle_testsupport::speech::{Voice, spoken, spoken_in};
//! let s = spoken("Let us ship on Friday.");
//! assert_eq!(s.rate, 22_050);
//! assert!(s.seconds() > 1.0);
//! assert_eq!(spoken_in(Voice::En175, "Can a customer on an annual plan get a refund?").rate, 22_050);
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rubato::{FftFixedInOut, Resampler};

/// The script that writes the fixtures, as a person would run it from the repository root.
pub const MAKE: &str = "testsupport/fixtures/speech/make.sh";

/// An espeak-ng voice the fixtures are spoken in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Voice {
    /// `espeak-ng -v en-us -s 150`: American English at 150 words a minute.
    EnUs150,
    /// `espeak-ng -v en -s 175`: espeak-ng's default voice and speed.
    En175,
}

impl Voice {
    /// The name `manifest.json` and `make.sh` use.
    pub fn as_str(self) -> &'static str {
        match self {
            Voice::EnUs150 => "en-us-150",
            Voice::En175 => "en-175",
        }
    }
}

/// Mono 16-bit speech at `rate` Hz.
#[derive(Clone, Debug, PartialEq)]
pub struct Speech {
    pub samples: Vec<i16>,
    pub rate: u32,
}

impl Speech {
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.rate)
    }

    /// The samples as f32 in [-1, 1) (`s / 32768`, as huddle's WAV decoder reads them).
    pub fn to_f32(&self) -> Vec<f32> {
        self.samples.iter().map(|&s| f32::from(s) / 32_768.0).collect()
    }

    /// The samples as little-endian PCM16 bytes.
    pub fn pcm16le(&self) -> Vec<u8> {
        self.samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    /// The speech at `rate` Hz, resampled by [`resample`] (rubato's FFT resampler, which
    /// huddle's 16 kHz resampler is built on too).
    pub fn resampled(&self, rate: u32) -> Speech {
        let samples = resample(&self.to_f32(), self.rate, rate)
            .into_iter()
            .map(|s| (s * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16)
            .collect();
        Speech { samples, rate }
    }
}

/// `text` as spoken by espeak-ng in American English at 150 words a minute.
pub fn spoken(text: &str) -> Speech {
    spoken_in(Voice::EnUs150, text)
}

/// `text` as spoken by espeak-ng in `voice` (see [`spoken_path`]).
pub fn spoken_in(voice: Voice, text: &str) -> Speech {
    let path = spoken_path(voice, text);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    parse_pcm16_mono(&bytes).unwrap_or_else(|e| panic!("{}: {e}; rewrite it with {MAKE}", path.display()))
}

/// The WAV file espeak-ng wrote for `text` in `voice`. Panics, naming the script to run,
/// when the sentence has no fixture.
pub fn spoken_path(voice: Voice, text: &str) -> PathBuf {
    let Some(file) = manifest().get(&(voice.as_str().to_owned(), text.to_owned())) else {
        panic!(
            "no speech fixture for {text:?} in voice {}: add the sentence to {MAKE}, run it \
             (apt-get install -y espeak-ng sox) and commit what it writes",
            voice.as_str()
        )
    };
    fixture(file)
}

/// The fixtures directory.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/speech")
}

/// The path of a fixture file (`relative` to the fixtures directory, e.g. `sox/tone-8k.wav`).
/// Panics, naming the script to run, when it is missing.
pub fn fixture(relative: &str) -> PathBuf {
    let path = dir().join(relative);
    assert!(
        path.is_file(),
        "speech fixture {} is missing: run {MAKE} (apt-get install -y espeak-ng sox) and commit what it writes",
        path.display()
    );
    path
}

/// A fixture of raw little-endian f32 samples (sox's decodings, `sox/*.f32`).
pub fn f32_samples(relative: &str) -> Vec<f32> {
    let path = fixture(relative);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert_eq!(bytes.len() % 4, 0, "{}: not raw f32 samples", path.display());
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// A WAV file of integer PCM (`bits` of 8, 16, 24 or 32) from interleaved `samples` in
/// [-1, 1]: for tests that need a file in a format huddle reads but does not write.
pub fn wav_bytes(samples: &[f32], rate: u32, channels: u16, bits: u16) -> Vec<u8> {
    assert!(matches!(bits, 8 | 16 | 24 | 32) && channels > 0);
    let width = usize::from(bits / 8);
    let data_len = samples.len() * width;
    let align = channels * bits / 8;
    let mut out = Vec::with_capacity(44 + data_len);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * u32::from(align)).to_le_bytes());
    out.extend_from_slice(&align.to_le_bytes());
    out.extend_from_slice(&bits.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data_len as u32).to_le_bytes());
    let full = f64::from(1u32 << (bits - 1));
    for &s in samples {
        let v = (f64::from(s) * full).round().clamp(-full, full - 1.0) as i32;
        if bits == 8 {
            out.push((v + 128) as u8);
        } else {
            out.extend_from_slice(&v.to_le_bytes()[..width]);
        }
    }
    out
}

/// (voice, text) -> file, from `manifest.json`.
fn manifest() -> &'static HashMap<(String, String), String> {
    static MANIFEST: OnceLock<HashMap<(String, String), String>> = OnceLock::new();
    MANIFEST.get_or_init(|| {
        let path = fixture("manifest.json");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let json: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}; rewrite it with {MAKE}", path.display()));
        let entries = json["speech"].as_array().unwrap_or_else(|| panic!("{}: no speech list", path.display()));
        entries
            .iter()
            .map(|e| {
                let field = |k: &str| {
                    e[k].as_str().unwrap_or_else(|| panic!("{}: an entry without {k}: {e}", path.display())).to_owned()
                };
                ((field("voice"), field("text")), field("file"))
            })
            .collect()
    })
}

/// The samples of a 16-bit mono PCM WAV file (what espeak-ng writes).
fn parse_pcm16_mono(bytes: &[u8]) -> Result<Speech, String> {
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err("not a WAV file".into());
    }
    let (mut format, mut data) = (None, None);
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let body = &bytes[at + 8..(at + 8).saturating_add(len).min(bytes.len())];
        match id {
            b"fmt " if body.len() >= 16 => format = Some(body),
            b"data" => data = Some(body),
            _ => {}
        }
        at += 8 + len + len % 2;
    }
    let (Some(f), Some(data)) = (format, data) else { return Err("no fmt or data chunk".into()) };
    let u16_at = |i: usize| u16::from_le_bytes([f[i], f[i + 1]]);
    let (tag, channels, bits) = (u16_at(0), u16_at(2), u16_at(14));
    if (tag, channels, bits) != (1, 1, 16) {
        return Err(format!("format tag {tag}, {channels} channels, {bits} bits; want 16-bit mono PCM"));
    }
    let rate = u32::from_le_bytes(f[4..8].try_into().unwrap());
    Ok(Speech { samples: data.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect(), rate })
}

/// Mono `samples` from `from` Hz to `to` Hz by rubato's FFT resampler: `round(len * to /
/// from)` samples, with the filter's delay removed.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to {
        return samples.to_vec();
    }
    let want = ((samples.len() as u64 * u64::from(to) + u64::from(from) / 2) / u64::from(from)) as usize;
    let mut r = FftFixedInOut::<f32>::new(from as usize, to as usize, from as usize / 50, 1)
        .unwrap_or_else(|e| panic!("a resampler from {from} Hz to {to} Hz: {e}"));
    let delay = r.output_delay();
    let mut out = Vec::with_capacity(want + delay + r.output_frames_max());
    let mut rest = samples;
    while out.len() < want + delay {
        let take = r.input_frames_next().min(rest.len());
        let input = [&rest[..take]];
        let block = r.process_partial((take > 0).then_some(&input[..]), None).expect("resampling");
        rest = &rest[take..];
        out.extend_from_slice(&block[0]);
    }
    out.drain(..delay);
    out.truncate(want);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_manifest_entry_loads() {
        assert!(manifest().len() >= 19);
        for (voice, text) in manifest().keys() {
            let voice = [Voice::EnUs150, Voice::En175].into_iter().find(|v| v.as_str() == voice).unwrap();
            let s = spoken_in(voice, text);
            assert_eq!(s.rate, 22_050);
            assert!(s.seconds() > 1.0 && s.samples.iter().any(|&v| v.abs() > 1_000), "{text:?}");
        }
    }

    #[test]
    fn an_unknown_sentence_names_the_script() {
        let err = std::panic::catch_unwind(|| spoken("Nobody said this.")).unwrap_err();
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(msg.contains("Nobody said this.") && msg.contains(MAKE), "{msg}");
        let err = std::panic::catch_unwind(|| fixture("sox/absent.wav")).unwrap_err();
        assert!(err.downcast_ref::<String>().unwrap().contains(MAKE));
    }

    #[test]
    fn resampling_keeps_length_timing_and_level() {
        // A click at 0.5 s lands at 0.5 s; a 440 Hz tone keeps its level.
        let mut click = vec![0.0f32; 22_050];
        click[11_025] = 1.0;
        let out = resample(&click, 22_050, 48_000);
        assert_eq!(out.len(), 48_000);
        let peak = out.iter().enumerate().max_by(|a, b| a.1.abs().total_cmp(&b.1.abs())).unwrap().0;
        assert!(peak.abs_diff(24_000) <= 1, "{peak}");
        let tone: Vec<f32> =
            (0..22_050).map(|i| (std::f32::consts::TAU * 440.0 * i as f32 / 22_050.0).sin() * 0.5).collect();
        let up = resample(&tone, 22_050, 48_000);
        let rms = (up[4_800..43_200].iter().map(|s| s * s).sum::<f32>() / 38_400.0).sqrt();
        assert!((rms - 0.5 / 2f32.sqrt()).abs() < 0.01, "{rms}");
        assert_eq!(resample(&tone[..1_000], 22_050, 16_000).len(), 726);
    }

    #[test]
    fn wav_bytes_round_trip_through_the_pcm16_parser() {
        let samples = [0.0, 0.5, -0.5, -1.0];
        let s = parse_pcm16_mono(&wav_bytes(&samples, 16_000, 1, 16)).unwrap();
        assert_eq!((s.rate, s.samples), (16_000, vec![0, 16_384, -16_384, -32_768]));
        assert_eq!(wav_bytes(&samples, 8_000, 2, 24).len(), 44 + 12);
    }
}
