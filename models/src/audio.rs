//! Audio DSP for the speech pipeline: WAV decoding, resampling to 16 kHz and
//! voice-activity segmentation.
//!
//! Whisper wants 16 kHz mono f32 PCM in short utterances. [`wav`] decodes files into
//! mono f32, [`resample`] converts any rate in [`MIN_SAMPLE_RATE`]`..=`[`MAX_SAMPLE_RATE`]
//! to 16 kHz as a stream, and [`vad`] cuts a 16 kHz stream into utterances at pauses.
//! Everything here is synchronous and allocation-free per sample; a minute of audio
//! takes milliseconds.
//!
//! ```
//! use huddle_models::audio::{pcm16le_to_f32, resample::resample_to_16k, vad::{Segmenter, VadConfig}};
//!
//! // Two bytes per sample, little-endian: 0x4000 is half scale.
//! assert_eq!(pcm16le_to_f32(&[0x00, 0x40, 0x00, 0x80]).unwrap(), vec![0.5, -1.0]);
//!
//! // One second of 48 kHz silence is one second at 16 kHz, and holds no speech.
//! let pcm = resample_to_16k(&vec![0.0; 48_000], 48_000).unwrap();
//! assert_eq!(pcm.len(), 16_000);
//! let mut segmenter = Segmenter::new(VadConfig::default());
//! assert!(segmenter.push(&pcm).is_empty());
//! assert!(segmenter.finish().is_none());
//! ```

pub mod resample;
pub mod vad;
pub mod wav;

/// The lowest input sample rate accepted, in Hz.
pub const MIN_SAMPLE_RATE: u32 = 8_000;
/// The highest input sample rate accepted, in Hz.
pub const MAX_SAMPLE_RATE: u32 = 192_000;
/// The rate the pipeline runs at (whisper's), in Hz.
pub const TARGET_RATE: u32 = 16_000;

/// Errors from decoding or resampling audio.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("audio file not found at {path}: check the path")]
    NotFound { path: std::path::PathBuf },
    #[error("cannot read audio file {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not a WAV file: {0}; convert it with e.g. `sox input output.wav` or `ffmpeg -i input output.wav`")]
    NotWav(String),
    #[error("truncated WAV file: {0}; the file is incomplete, re-export or re-download it")]
    Truncated(String),
    #[error("malformed WAV file: {0}; re-export it as 16-bit PCM")]
    Malformed(String),
    #[error(
        "unsupported WAV sample format {name} (format code {code:#06x}): convert it to PCM, \
         e.g. `sox input.wav -e signed-integer -b 16 output.wav`"
    )]
    UnsupportedFormat { code: u16, name: String },
    #[error(
        "sample rate {rate} Hz is outside {MIN_SAMPLE_RATE}..={MAX_SAMPLE_RATE} Hz: resample it, \
         e.g. `sox input.wav -r 16000 output.wav`"
    )]
    UnsupportedRate { rate: u32 },
    #[error("PCM16 data has an odd number of bytes ({0}): samples are two bytes each, little-endian")]
    OddByteCount(usize),
    #[error("resampler failed: {0}")]
    Resample(String),
}

/// Result alias for this module.
pub type Result<T, E = AudioError> = std::result::Result<T, E>;

/// Checks that `rate` is one the pipeline accepts.
pub fn check_rate(rate: u32) -> Result<()> {
    if (MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&rate) { Ok(()) } else { Err(AudioError::UnsupportedRate { rate }) }
}

/// Little-endian signed 16-bit PCM bytes -> f32 in -1..=1 (`i16::MIN` is -1.0, full
/// positive scale is 32767/32768). An odd byte count is an error.
pub fn pcm16le_to_f32(bytes: &[u8]) -> Result<Vec<f32>> {
    if !bytes.len().is_multiple_of(2) {
        return Err(AudioError::OddByteCount(bytes.len()));
    }
    Ok(bytes.chunks_exact(2).map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32_768.0).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcm16_scales_and_rejects_odd_lengths() {
        let bytes: Vec<u8> = [0i16, 1, -1, i16::MAX, i16::MIN, 16_384].iter().flat_map(|s| s.to_le_bytes()).collect();
        let f = pcm16le_to_f32(&bytes).unwrap();
        assert_eq!(f, vec![0.0, 1.0 / 32_768.0, -1.0 / 32_768.0, 32_767.0 / 32_768.0, -1.0, 0.5]);
        assert!(pcm16le_to_f32(&[]).unwrap().is_empty());
        let err = pcm16le_to_f32(&[1, 2, 3]).unwrap_err();
        assert!(matches!(err, AudioError::OddByteCount(3)), "{err}");
        assert!(err.to_string().contains("odd number of bytes"), "{err}");
    }

    #[test]
    fn rates_are_bounded() {
        for ok in [8_000, 16_000, 44_100, 192_000] {
            check_rate(ok).unwrap();
        }
        for bad in [0, 7_999, 192_001, u32::MAX] {
            let err = check_rate(bad).unwrap_err();
            assert!(err.to_string().contains("outside 8000..=192000 Hz"), "{err}");
        }
    }
}
