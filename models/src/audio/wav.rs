//! RIFF/WAVE decoding into mono f32, and a PCM16 encoder.
//!
//! [`parse_wav`] walks the RIFF chunks itself: it takes the first `fmt ` and `data`
//! chunks, skips everything else (`LIST`, `fact`, `bext`, ...) and decodes integer PCM of
//! 8 (unsigned), 16, 24 and 32 bits and 32-bit IEEE float, plain or as
//! `WAVE_FORMAT_EXTENSIBLE`, with any number of channels (averaged to mono) at
//! 8-192 kHz. Anything else is an [`AudioError`] that names what is wrong and how to
//! convert the file; no byte string makes it panic.

use std::path::Path;

use super::{AudioError, Result, check_rate};

const WAVE_FORMAT_PCM: u16 = 0x0001;
const WAVE_FORMAT_IEEE_FLOAT: u16 = 0x0003;
const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;
/// The last 14 bytes of the `KSDATAFORMAT_SUBTYPE_*` GUIDs whose first two bytes are a
/// plain format code.
const SUBTYPE_GUID_TAIL: [u8; 14] =
    [0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71];
/// A `data` chunk size that streaming writers leave when they cannot seek back: the data
/// runs to the end of the file.
const SIZE_UNKNOWN: u32 = u32::MAX;

/// A decoded WAV file.
#[derive(Clone, PartialEq)]
pub struct WavAudio {
    /// Frames per second, as the file declares it.
    pub sample_rate: u32,
    /// Channels in the file (the samples are already mixed down to one).
    pub channels: u16,
    /// The stored sample format: `pcm8`, `pcm16`, `pcm24`, `pcm32` or `float32`.
    pub format: String,
    /// Mono samples in -1..=1: each frame's channels averaged.
    pub samples: Vec<f32>,
}

impl std::fmt::Debug for WavAudio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavAudio")
            .field("sample_rate", &self.sample_rate)
            .field("channels", &self.channels)
            .field("format", &self.format)
            .field("samples", &format_args!("[{} samples]", self.samples.len()))
            .finish()
    }
}

impl WavAudio {
    /// Duration in milliseconds, rounded down.
    pub fn duration_ms(&self) -> u64 {
        self.samples.len() as u64 * 1000 / u64::from(self.sample_rate.max(1))
    }
}

/// How samples are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// Unsigned 8-bit, signed 16/24/32-bit little-endian integers.
    Int { bytes: usize },
    /// 32-bit IEEE float, little-endian.
    Float32,
}

impl Encoding {
    fn name(self) -> String {
        match self {
            Encoding::Int { bytes } => format!("pcm{}", bytes * 8),
            Encoding::Float32 => "float32".to_owned(),
        }
    }

    fn bytes(self) -> usize {
        match self {
            Encoding::Int { bytes } => bytes,
            Encoding::Float32 => 4,
        }
    }

    /// Decodes one sample; `b` has exactly [`Encoding::bytes`] bytes.
    fn decode(self, b: &[u8]) -> f32 {
        match self {
            Encoding::Int { bytes: 1 } => (f32::from(b[0]) - 128.0) / 128.0,
            Encoding::Int { bytes: 2 } => f32::from(i16::from_le_bytes([b[0], b[1]])) / 32_768.0,
            Encoding::Int { bytes: 3 } => (i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8) as f32 / 8_388_608.0,
            Encoding::Int { .. } => (f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])) / 2_147_483_648.0) as f32,
            Encoding::Float32 => {
                let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                // Float files may overshoot full scale; NaN and infinities would poison
                // everything downstream.
                if v.is_finite() { v.clamp(-1.0, 1.0) } else { 0.0 }
            }
        }
    }
}

/// A readable name for a WAVE format code.
fn format_name(code: u16) -> &'static str {
    match code {
        0x0000 => "unknown",
        0x0001 => "PCM",
        0x0002 => "Microsoft ADPCM",
        0x0003 => "IEEE float",
        0x0006 => "A-law",
        0x0007 => "mu-law",
        0x0011 => "IMA ADPCM",
        0x0031 => "GSM 6.10",
        0x0040 => "G.721 ADPCM",
        0x0050 => "MPEG",
        0x0055 => "MPEG layer 3",
        0x00FF => "AAC",
        0x0160..=0x0163 => "Windows Media Audio",
        0x1610 => "HE-AAC",
        0xF1AC => "FLAC",
        0xFFFE => "extensible",
        _ => "unknown",
    }
}

fn unsupported(code: u16, name: impl Into<String>) -> AudioError {
    AudioError::UnsupportedFormat { code, name: name.into() }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// What the `fmt ` chunk says.
#[derive(Debug)]
struct Format {
    encoding: Encoding,
    channels: u16,
    sample_rate: u32,
    block_align: usize,
}

fn parse_fmt(fmt: &[u8]) -> Result<Format> {
    if fmt.len() < 16 {
        return Err(AudioError::Malformed(format!("the fmt chunk is {} bytes, at least 16 expected", fmt.len())));
    }
    let tag = u16_at(fmt, 0);
    let channels = u16_at(fmt, 2);
    let sample_rate = u32_at(fmt, 4);
    let block_align = usize::from(u16_at(fmt, 12));
    let bits = u16_at(fmt, 14);
    let code = if tag == WAVE_FORMAT_EXTENSIBLE {
        if fmt.len() < 40 {
            return Err(AudioError::Malformed(format!(
                "the WAVE_FORMAT_EXTENSIBLE fmt chunk is {} bytes, 40 expected",
                fmt.len()
            )));
        }
        let guid = &fmt[24..40];
        let code = u16_at(guid, 0);
        if guid[2..] != SUBTYPE_GUID_TAIL {
            let hex: String = guid.iter().map(|b| format!("{b:02x}")).collect();
            return Err(unsupported(tag, format!("extensible with sub-format GUID {hex}")));
        }
        code
    } else {
        tag
    };
    let encoding = match (code, bits) {
        (WAVE_FORMAT_PCM, 1..=32) => Encoding::Int { bytes: usize::from(bits.div_ceil(8)) },
        (WAVE_FORMAT_PCM, _) => return Err(unsupported(code, format!("{bits}-bit PCM"))),
        (WAVE_FORMAT_IEEE_FLOAT, 32) => Encoding::Float32,
        (WAVE_FORMAT_IEEE_FLOAT, _) => return Err(unsupported(code, format!("{bits}-bit float"))),
        _ => return Err(unsupported(code, format_name(code))),
    };
    if channels == 0 {
        return Err(AudioError::Malformed("the fmt chunk declares zero channels".to_owned()));
    }
    check_rate(sample_rate)?;
    // Extensible files may store e.g. 20 valid bits in 24-bit containers; the container
    // size is what block_align counts.
    let expected = usize::from(channels) * encoding.bytes();
    if block_align != expected {
        return Err(AudioError::Malformed(format!(
            "block align is {block_align} bytes, but {channels} channel(s) of {} need {expected}",
            encoding.name()
        )));
    }
    Ok(Format { encoding, channels, sample_rate, block_align })
}

/// Decodes a WAV file held in memory.
pub fn parse_wav(bytes: &[u8]) -> Result<WavAudio> {
    if bytes.len() >= 4 && &bytes[..4] == b"RF64" {
        return Err(AudioError::NotWav("RF64 (WAV larger than 4 GiB) is not supported".to_owned()));
    }
    if bytes.len() < 4 || &bytes[..4] != b"RIFF" {
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(4)]).into_owned();
        return Err(AudioError::NotWav(format!("it starts with {shown:?}, not \"RIFF\"")));
    }
    if bytes.len() < 12 {
        return Err(AudioError::Truncated(format!("the file is {} bytes, shorter than a RIFF header", bytes.len())));
    }
    if &bytes[8..12] != b"WAVE" {
        let kind = String::from_utf8_lossy(&bytes[8..12]).into_owned();
        return Err(AudioError::NotWav(format!("a RIFF file of type {kind:?}, not \"WAVE\"")));
    }

    let mut fmt: Option<&[u8]> = None;
    let mut data: Option<&[u8]> = None;
    let mut pos = 12usize;
    while fmt.is_none() || data.is_none() {
        if pos == bytes.len() {
            let missing = if fmt.is_none() { "fmt" } else { "data" };
            return Err(AudioError::Malformed(format!("there is no {missing} chunk")));
        }
        if bytes.len() - pos < 8 {
            return Err(AudioError::Truncated(format!("a chunk header at byte {pos} is cut short")));
        }
        let id = &bytes[pos..pos + 4];
        let size = u32_at(bytes, pos + 4);
        let body = pos + 8;
        let available = bytes.len() - body;
        if id == b"data" {
            let len = if size == SIZE_UNKNOWN { available } else { size as usize };
            if len > available {
                return Err(AudioError::Truncated(format!(
                    "the data chunk declares {len} bytes but only {available} are present"
                )));
            }
            if data.is_none() {
                data = Some(&bytes[body..body + len]);
            }
            pos = body.saturating_add(len).saturating_add(len & 1).min(bytes.len());
            continue;
        }
        let len = size as usize;
        if len > available {
            let what = String::from_utf8_lossy(id).into_owned();
            return Err(AudioError::Truncated(format!(
                "the {what:?} chunk declares {len} bytes but only {available} are present"
            )));
        }
        if id == b"fmt " && fmt.is_none() {
            fmt = Some(&bytes[body..body + len]);
        }
        // Chunks are padded to an even length; a missing final pad byte is tolerated.
        pos = (body + len + (len & 1)).min(bytes.len());
    }
    let (Some(fmt), Some(data)) = (fmt, data) else { unreachable!("the loop ends when both are found") };

    let format = parse_fmt(fmt)?;
    let Format { encoding, channels, sample_rate, block_align } = format;
    let width = encoding.bytes();
    let scale = 1.0 / f32::from(channels);
    // A trailing partial frame (seen from some writers) is ignored.
    let samples = data
        .chunks_exact(block_align)
        .map(|frame| {
            let sum: f32 = frame.chunks_exact(width).map(|s| encoding.decode(s)).sum();
            if channels == 1 { sum } else { (sum * scale).clamp(-1.0, 1.0) }
        })
        .collect();
    Ok(WavAudio { sample_rate, channels, format: encoding.name(), samples })
}

/// Reads and decodes a WAV file.
pub fn read_wav(path: &Path) -> Result<WavAudio> {
    let bytes = std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            AudioError::NotFound { path: path.to_owned() }
        } else {
            AudioError::Read { path: path.to_owned(), source }
        }
    })?;
    parse_wav(&bytes)
}

/// Encodes mono samples in -1..=1 as a 16-bit PCM WAV file (values outside are clipped).
pub fn encode_pcm16(samples: &[f32], sample_rate: u32) -> Vec<u8> {
    let data_len = samples.len() * 2;
    let mut out = Vec::with_capacity(44 + data_len);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&u32::try_from(36 + data_len).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&WAVE_FORMAT_PCM.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&sample_rate.to_le_bytes());
    out.extend_from_slice(&sample_rate.saturating_mul(2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&u32::try_from(data_len).unwrap_or(u32::MAX).to_le_bytes());
    for &s in samples {
        let v = if s.is_finite() { (s * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16 } else { 0 };
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcm16_round_trips() {
        let samples: Vec<f32> = (0..100).map(|i| ((i as f32) * 0.37).sin() * 0.9).collect();
        let wav = parse_wav(&encode_pcm16(&samples, 22_050)).unwrap();
        assert_eq!((wav.sample_rate, wav.channels, wav.format.as_str()), (22_050, 1, "pcm16"));
        assert_eq!(wav.samples.len(), 100);
        assert!(wav.samples.iter().zip(&samples).all(|(a, b)| (a - b).abs() <= 1.0 / 32_768.0));
        assert_eq!(wav.duration_ms(), 4);
    }

    #[test]
    fn format_codes_have_names() {
        assert_eq!(format_name(6), "A-law");
        assert_eq!(format_name(7), "mu-law");
        assert_eq!(format_name(0x1234), "unknown");
    }
}
