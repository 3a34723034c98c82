//! whisper.cpp's ggml model file: writing one from a CTranslate2 Whisper model, and
//! checking one before whisper.cpp reads it.
//!
//! The layout (all little-endian), as whisper.cpp's `convert-pt-to-ggml.py` writes it:
//!
//! ```text
//! u32 magic 0x67676d6c ("ggml")
//! i32 n_vocab, n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer,
//!     n_text_ctx, n_text_state, n_text_head, n_text_layer, n_mels, ftype
//! i32 n_mel, n_fft; f32 filters[n_mel * n_fft]             (mel filter bank)
//! i32 n_tokens; per token: u32 len, bytes                  (ordinary tokens only)
//! per tensor: i32 n_dims, i32 name_len, i32 type, i32 ne[n_dims], name, data
//! ```
//!
//! `ftype` is a `ggml_ftype` (1 = mostly f16, 7 = mostly q8_0), plus 1000 x the
//! quantisation version (2) for quantised files, so q8_0 files say 2007. Each tensor's
//! `type` is a `ggml_type` (0 f32, 1 f16, 8 q8_0).
//!
//! whisper.cpp trusts the file: a bad `ftype` hits an assertion and a garbage length makes it
//! allocate or read out of bounds. [`inspect`] checks every field, every tensor's name, shape
//! and type against what the loader will ask for, and the exact file length, so a file it
//! accepts loads cleanly.

mod layout;
pub mod mel;
pub mod quant;
pub mod vocab;

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::str::FromStr;

use crate::ct2::{Ct2Error, Ct2Model, DType};
use layout::{Kind, TensorSpec};
pub use vocab::VocabError;

/// `"ggml"` read as a little-endian u32.
pub const MAGIC: u32 = 0x6767_6d6c;
/// ggml's quantisation format version, folded into the header `ftype` of quantised files.
pub const QNT_VERSION: i32 = 2;
/// Multiplier for [`QNT_VERSION`] in the header `ftype`.
pub const QNT_VERSION_FACTOR: i32 = 1000;
/// Whisper's sample rate.
pub const SAMPLE_RATE: u32 = 16_000;
/// Whisper's FFT size (25 ms at 16 kHz).
pub const N_FFT: usize = 400;

/// Errors from converting or checking ggml files.
#[derive(Debug, thiserror::Error)]
pub enum GgmlError {
    #[error(transparent)]
    Ct2(#[from] Ct2Error),
    #[error("model spec is {spec}, not WhisperSpec: only CTranslate2 Whisper models can be converted")]
    NotWhisper { spec: String },
    #[error("CTranslate2 model has no variable {name}: it is not a complete Whisper model")]
    MissingVariable { name: String },
    #[error("CTranslate2 variable {name} has shape {found:?}, expected {expected:?}")]
    BadShape { name: String, found: Vec<usize>, expected: Vec<usize> },
    #[error("CTranslate2 variable {name} is {dtype}: only float32/float16/bfloat16 models can be converted")]
    UnsupportedDtype { name: String, dtype: DType },
    #[error("CTranslate2 variable {name} is not a valid {what}")]
    BadScalar { name: String, what: &'static str },
    #[error("bad vocabulary: {0}")]
    Vocab(#[from] VocabError),
    #[error(
        "vocabulary has {tokens} tokens but the model has {n_vocab} embeddings: the vocabulary does not belong to this model"
    )]
    VocabSize { tokens: usize, n_vocab: usize },
    #[error("tensor {name} has rows of {row_len} values, not a multiple of {block}: it cannot be quantised to {quant}")]
    NotQuantizable { name: String, row_len: usize, block: usize, quant: Quant },
    #[error("cannot write ggml model: {0}")]
    Write(#[from] std::io::Error),
    #[error("not a whisper.cpp ggml model (magic {found:#010x}, expected {MAGIC:#010x})")]
    BadMagic { found: u32 },
    #[error(
        "truncated ggml model: {what} at offset {offset} runs past the end of the file; fetch or convert the model again"
    )]
    Truncated { what: String, offset: usize },
    #[error("invalid ggml model at offset {offset}: {reason}")]
    Invalid { offset: usize, reason: String },
}

/// Result alias for this module.
pub type Result<T, E = GgmlError> = std::result::Result<T, E>;

/// The ggml element types this crate knows the block layout of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
}

impl GgmlType {
    const ALL: [GgmlType; 12] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q2K,
        GgmlType::Q3K,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
    ];

    /// The `ggml_type` id.
    pub fn id(self) -> i32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q2K => 10,
            GgmlType::Q3K => 11,
            GgmlType::Q4K => 12,
            GgmlType::Q5K => 13,
            GgmlType::Q6K => 14,
        }
    }

    /// The type with this `ggml_type` id.
    pub fn from_id(id: i32) -> Option<GgmlType> {
        GgmlType::ALL.into_iter().find(|t| t.id() == id)
    }

    /// The weight type of a header `ftype` (a `ggml_ftype`, without the version part), as
    /// `ggml_ftype_to_ggml_type` maps it.
    pub fn from_ftype(ftype: i32) -> Option<GgmlType> {
        Some(match ftype {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            7 => GgmlType::Q8_0,
            8 => GgmlType::Q5_0,
            9 => GgmlType::Q5_1,
            10 => GgmlType::Q2K,
            11 => GgmlType::Q3K,
            12 => GgmlType::Q4K,
            13 => GgmlType::Q5K,
            14 => GgmlType::Q6K,
            _ => return None,
        })
    }

    /// Values per block.
    pub fn block_size(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0 => 32,
            GgmlType::Q2K | GgmlType::Q3K | GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 => 2,
            GgmlType::Q4_0 => 18,
            GgmlType::Q4_1 => 20,
            GgmlType::Q5_0 => 22,
            GgmlType::Q5_1 => 24,
            GgmlType::Q8_0 => 34,
            GgmlType::Q2K => 84,
            GgmlType::Q3K => 110,
            GgmlType::Q4K => 144,
            GgmlType::Q5K => 176,
            GgmlType::Q6K => 210,
        }
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GgmlType::F32 => "f32",
            GgmlType::F16 => "f16",
            GgmlType::Q4_0 => "q4_0",
            GgmlType::Q4_1 => "q4_1",
            GgmlType::Q5_0 => "q5_0",
            GgmlType::Q5_1 => "q5_1",
            GgmlType::Q8_0 => "q8_0",
            GgmlType::Q2K => "q2_k",
            GgmlType::Q3K => "q3_k",
            GgmlType::Q4K => "q4_k",
            GgmlType::Q5K => "q5_k",
            GgmlType::Q6K => "q6_k",
        })
    }
}

/// The weight encodings the converter writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Quant {
    /// 2-D weights as f16 (the source precision of the published models).
    F16,
    /// 2-D weights as q8_0: about half the size of f16, no measurable quality loss.
    Q8_0,
}

impl Quant {
    /// Every variant, for listings.
    pub const ALL: [Quant; 2] = [Quant::F16, Quant::Q8_0];

    /// The name used in file names and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Quant::F16 => "f16",
            Quant::Q8_0 => "q8_0",
        }
    }

    /// The element type of 2-D weights.
    pub fn weight_type(self) -> GgmlType {
        match self {
            Quant::F16 => GgmlType::F16,
            Quant::Q8_0 => GgmlType::Q8_0,
        }
    }

    /// The header `ftype`, as whisper.cpp's converter and quantiser write it.
    pub fn header_ftype(self) -> i32 {
        match self {
            Quant::F16 => 1,
            Quant::Q8_0 => QNT_VERSION * QNT_VERSION_FACTOR + 7,
        }
    }
}

impl fmt::Display for Quant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Quant {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Quant, String> {
        Quant::ALL
            .into_iter()
            .find(|q| q.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown quantisation {s:?}: expected f16 or q8_0"))
    }
}

/// whisper.cpp's hyper-parameters, in header order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hparams {
    pub n_vocab: i32,
    pub n_audio_ctx: i32,
    pub n_audio_state: i32,
    pub n_audio_head: i32,
    pub n_audio_layer: i32,
    pub n_text_ctx: i32,
    pub n_text_state: i32,
    pub n_text_head: i32,
    pub n_text_layer: i32,
    pub n_mels: i32,
    pub ftype: i32,
}

impl Hparams {
    fn to_array(self) -> [i32; 11] {
        [
            self.n_vocab,
            self.n_audio_ctx,
            self.n_audio_state,
            self.n_audio_head,
            self.n_audio_layer,
            self.n_text_ctx,
            self.n_text_state,
            self.n_text_head,
            self.n_text_layer,
            self.n_mels,
            self.ftype,
        ]
    }

    fn from_array(a: [i32; 11]) -> Hparams {
        Hparams {
            n_vocab: a[0],
            n_audio_ctx: a[1],
            n_audio_state: a[2],
            n_audio_head: a[3],
            n_audio_layer: a[4],
            n_text_ctx: a[5],
            n_text_state: a[6],
            n_text_head: a[7],
            n_text_layer: a[8],
            n_mels: a[9],
            ftype: a[10],
        }
    }

    /// Whether whisper.cpp treats the model as multilingual.
    pub fn is_multilingual(&self) -> bool {
        self.n_vocab >= 51865
    }

    /// The type of 2-D weights, from `ftype`.
    pub fn weight_type(&self) -> Option<GgmlType> {
        GgmlType::from_ftype(self.ftype % QNT_VERSION_FACTOR)
    }

    /// Checks the values whisper.cpp relies on without checking. Limits are generous: the
    /// largest Whisper has 32 layers, 1280 wide, 20 heads, 128 mels.
    fn check(&self) -> std::result::Result<(), String> {
        let in_range = |name: &str, v: i32, lo: i32, hi: i32| {
            if (lo..=hi).contains(&v) { Ok(()) } else { Err(format!("{name} = {v} is outside {lo}..={hi}")) }
        };
        in_range("n_vocab", self.n_vocab, 51_864, 1 << 20)?;
        in_range("n_audio_ctx", self.n_audio_ctx, 1, 1 << 16)?;
        in_range("n_audio_state", self.n_audio_state, 1, 1 << 14)?;
        in_range("n_audio_head", self.n_audio_head, 1, 1 << 10)?;
        in_range("n_audio_layer", self.n_audio_layer, 1, 256)?;
        in_range("n_text_ctx", self.n_text_ctx, 1, 1 << 16)?;
        in_range("n_text_state", self.n_text_state, 1, 1 << 14)?;
        in_range("n_text_head", self.n_text_head, 1, 1 << 10)?;
        in_range("n_text_layer", self.n_text_layer, 1, 256)?;
        in_range("n_mels", self.n_mels, 1, 1024)?;
        if self.n_audio_state != self.n_text_state {
            return Err(format!(
                "n_audio_state {} differs from n_text_state {}",
                self.n_audio_state, self.n_text_state
            ));
        }
        if self.n_audio_state % self.n_audio_head != 0 || self.n_text_state % self.n_text_head != 0 {
            return Err("the state width is not a multiple of the head count".into());
        }
        let qntvr = self.ftype / QNT_VERSION_FACTOR;
        if self.ftype < 0 || qntvr > QNT_VERSION || self.weight_type().is_none() {
            return Err(format!("unsupported ftype {}", self.ftype));
        }
        Ok(())
    }
}

/// What [`inspect`] found in a valid file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgmlInfo {
    pub hparams: Hparams,
    /// Type of the 2-D weights.
    pub weight_type: GgmlType,
    /// Ordinary tokens stored in the file (whisper.cpp names the special ones itself).
    pub n_tokens: usize,
    pub n_tensors: usize,
}

/// What [`write_whisper`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteStats {
    pub hparams: Hparams,
    pub n_tokens: usize,
    pub n_tensors: usize,
    pub bytes: u64,
}

/// Reads whisper.cpp's hyper-parameters off a CTranslate2 Whisper model.
pub fn whisper_hparams(model: &Ct2Model, quant: Quant) -> Result<Hparams> {
    if model.spec() != "WhisperSpec" {
        return Err(GgmlError::NotWhisper { spec: model.spec().to_owned() });
    }
    let var = |name: &str| model.get(name).ok_or_else(|| GgmlError::MissingVariable { name: name.to_owned() });
    let dims = |name: &str, rank: usize| -> Result<Vec<usize>> {
        let t = var(name)?;
        if t.shape.len() != rank || t.shape.iter().any(|&d| d == 0 || d > 1 << 20) {
            return Err(GgmlError::BadShape {
                name: name.to_owned(),
                found: t.shape.to_vec(),
                expected: vec![0; rank],
            });
        }
        Ok(t.shape.to_vec())
    };
    let heads = |name: &str| -> Result<i32> {
        var(name)?
            .scalar_int()
            .filter(|&h| (1..=1024).contains(&h))
            .map(|h| h as i32)
            .ok_or(GgmlError::BadScalar { name: name.to_owned(), what: "head count" })
    };
    let layers = |prefix: &str| {
        (0..).take_while(|i| model.get(&format!("{prefix}/layer_{i}/ffn/linear_0/weight")).is_some()).count() as i32
    };
    let conv1 = dims("encoder/conv1/weight", 3)?;
    let audio_pos = dims("encoder/position_encodings/encodings", 2)?;
    let text_pos = dims("decoder/position_encodings/encodings", 2)?;
    let embeddings = dims("decoder/embeddings/weight", 2)?;
    Ok(Hparams {
        n_vocab: embeddings[0] as i32,
        n_audio_ctx: audio_pos[0] as i32,
        n_audio_state: conv1[0] as i32,
        n_audio_head: heads("encoder/num_heads")?,
        n_audio_layer: layers("encoder"),
        n_text_ctx: text_pos[0] as i32,
        n_text_state: embeddings[1] as i32,
        n_text_head: heads("decoder/num_heads")?,
        n_text_layer: layers("decoder"),
        n_mels: conv1[1] as i32,
        ftype: quant.header_ftype(),
    })
}

/// The values of one whisper.cpp tensor, taken from its CTranslate2 variable.
fn source_values(model: &Ct2Model, spec: &TensorSpec) -> Result<Vec<f32>> {
    let src = &spec.source;
    let t = model.get(&src.var).ok_or_else(|| GgmlError::MissingVariable { name: src.var.clone() })?;
    if t.shape != src.shape.as_slice() {
        return Err(GgmlError::BadShape {
            name: src.var.clone(),
            found: t.shape.to_vec(),
            expected: src.shape.clone(),
        });
    }
    let values = t.to_f32().ok_or_else(|| GgmlError::UnsupportedDtype { name: src.var.clone(), dtype: t.dtype })?;
    let values = match src.rows {
        None => values,
        Some((from, to)) => {
            let row: usize = src.shape[1..].iter().product();
            values[from * row..to * row].to_vec()
        }
    };
    debug_assert_eq!(values.len(), spec.len());
    Ok(values)
}

/// Writes a whisper.cpp ggml model converted from a CTranslate2 Whisper model and its
/// `vocabulary.txt`. `progress` is called with (tensors written, total) after each tensor.
pub fn write_whisper(
    model: &Ct2Model,
    vocabulary: &str,
    quant: Quant,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<WriteStats> {
    let hparams = whisper_hparams(model, quant)?;
    hparams
        .check()
        .map_err(|reason| GgmlError::Invalid { offset: 0, reason: format!("converted hyper-parameters: {reason}") })?;
    let n_lines = vocab::count_tokens(vocabulary);
    if n_lines != hparams.n_vocab as usize {
        return Err(GgmlError::VocabSize { tokens: n_lines, n_vocab: hparams.n_vocab as usize });
    }
    let tokens = vocab::decode_vocabulary(vocabulary)?;

    for (var, from, to) in layout::dropped_key_biases(&hparams) {
        if let Some(values) = model.get(&var).and_then(|t| t.to_f32())
            && values.get(from..to).is_some_and(|keys| keys.iter().any(|&v| v != 0.0))
        {
            tracing::warn!(variable = %var, "key bias is not zero; whisper.cpp has no key bias and ignores it");
        }
    }

    let mut written = 0u64;
    let mut put = |out: &mut dyn Write, bytes: &[u8]| -> Result<()> {
        out.write_all(bytes)?;
        written += bytes.len() as u64;
        Ok(())
    };

    let mut header = Vec::with_capacity(4 + 11 * 4);
    header.extend_from_slice(&MAGIC.to_le_bytes());
    for v in hparams.to_array() {
        header.extend_from_slice(&v.to_le_bytes());
    }
    let n_bins = N_FFT / 2 + 1;
    header.extend_from_slice(&hparams.n_mels.to_le_bytes());
    header.extend_from_slice(&(n_bins as i32).to_le_bytes());
    quant::encode_f32(&mel::mel_filters(SAMPLE_RATE, N_FFT, hparams.n_mels as usize), &mut header);
    header.extend_from_slice(&(tokens.len() as i32).to_le_bytes());
    for token in &tokens {
        header.extend_from_slice(&(token.len() as u32).to_le_bytes());
        header.extend_from_slice(token);
    }
    put(out, &header)?;

    let specs = layout::whisper_tensors(&hparams);
    let weight_type = quant.weight_type();
    let mut buf = Vec::new();
    for (index, spec) in specs.iter().enumerate() {
        let values = source_values(model, spec)?;
        let ttype = match spec.kind {
            Kind::F32 => GgmlType::F32,
            Kind::Conv => GgmlType::F16,
            Kind::Weight => weight_type,
        };
        buf.clear();
        buf.extend_from_slice(&(spec.ne.len() as i32).to_le_bytes());
        buf.extend_from_slice(&(spec.name.len() as i32).to_le_bytes());
        buf.extend_from_slice(&ttype.id().to_le_bytes());
        for &d in &spec.ne {
            buf.extend_from_slice(&(d as i32).to_le_bytes());
        }
        buf.extend_from_slice(spec.name.as_bytes());
        match ttype {
            GgmlType::F32 => quant::encode_f32(&values, &mut buf),
            GgmlType::F16 => quant::encode_f16(&values, &mut buf),
            GgmlType::Q8_0 => {
                if !spec.ne[0].is_multiple_of(quant::Q8_0_BLOCK) || !quant::encode_q8_0(&values, &mut buf) {
                    return Err(GgmlError::NotQuantizable {
                        name: spec.name.clone(),
                        row_len: spec.ne[0],
                        block: quant::Q8_0_BLOCK,
                        quant,
                    });
                }
            }
            other => unreachable!("the converter never writes {other}"),
        }
        put(out, &buf)?;
        progress(index + 1, specs.len());
    }
    out.flush()?;
    Ok(WriteStats { hparams, n_tokens: tokens.len(), n_tensors: specs.len(), bytes: written })
}

/// A bounds-checked cursor for [`inspect`].
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.bytes.len() - self.pos {
            return Err(GgmlError::Truncated { what: what.to_owned(), offset: self.pos });
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn i32(&mut self, what: &str) -> Result<i32> {
        let b = self.take(4, what)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn invalid(&self, offset: usize, reason: String) -> GgmlError {
        GgmlError::Invalid { offset, reason }
    }
}

/// A parsed ggml model: borrowed views into the file's bytes.
#[derive(Debug, Clone)]
pub struct GgmlFile<'a> {
    pub info: GgmlInfo,
    /// `n_mels x 201` mel filter weights.
    pub mel_filters: Vec<f32>,
    /// The ordinary tokens' raw bytes, by token id.
    pub tokens: Vec<&'a [u8]>,
    /// The tensors in file order.
    pub tensors: Vec<GgmlTensor<'a>>,
}

/// One tensor of a ggml file.
#[derive(Debug, Clone)]
pub struct GgmlTensor<'a> {
    pub name: String,
    /// Shape in ggml order (`ne[0]` moves fastest).
    pub ne: Vec<usize>,
    pub ggml_type: GgmlType,
    pub data: &'a [u8],
}

impl GgmlTensor<'_> {
    /// The values as f32, for f32, f16 and q8_0 tensors; `None` for other types.
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        match self.ggml_type {
            GgmlType::F32 => {
                Some(self.data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
            }
            GgmlType::F16 => {
                Some(self.data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect())
            }
            GgmlType::Q8_0 => Some(quant::decode_q8_0(self.data)),
            _ => None,
        }
    }
}

/// Checks a whisper.cpp ggml model held in memory: header, mel filters, vocabulary, and that
/// the tensors are exactly the ones whisper.cpp's loader expects, with matching shapes and
/// types, and nothing after them.
pub fn inspect(bytes: &[u8]) -> Result<GgmlInfo> {
    parse(bytes).map(|file| file.info)
}

/// Parses and checks a whisper.cpp ggml model as [`inspect`] does, keeping views of its
/// parts.
pub fn parse(bytes: &[u8]) -> Result<GgmlFile<'_>> {
    let mut c = Cursor { bytes, pos: 0 };
    let magic = c.i32("magic")? as u32;
    if magic != MAGIC {
        return Err(GgmlError::BadMagic { found: magic });
    }
    let mut raw = [0i32; 11];
    for v in &mut raw {
        *v = c.i32("hyper-parameters")?;
    }
    let hparams = Hparams::from_array(raw);
    hparams.check().map_err(|reason| c.invalid(4, format!("bad hyper-parameters: {reason}")))?;
    let weight_type = hparams.weight_type().expect("check() accepts only known ftypes");

    let at = c.pos;
    let n_mel = c.i32("mel filter count")?;
    let n_fft = c.i32("mel filter width")?;
    let n_bins = (N_FFT / 2 + 1) as i32;
    if n_mel != hparams.n_mels || n_fft != n_bins {
        return Err(c.invalid(at, format!("mel filters are {n_mel} x {n_fft}, expected {} x {n_bins}", hparams.n_mels)));
    }
    let mel_filters = c
        .take(n_mel as usize * n_fft as usize * 4, "mel filters")?
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();

    let at = c.pos;
    let n_tokens = c.i32("token count")?;
    if !(0..=hparams.n_vocab).contains(&n_tokens) {
        return Err(c.invalid(at, format!("token count {n_tokens} is outside 0..={}", hparams.n_vocab)));
    }
    let mut tokens = Vec::with_capacity(n_tokens as usize);
    for i in 0..n_tokens {
        let at = c.pos;
        let len = c.i32("token length")? as u32;
        if len > 1024 {
            return Err(c.invalid(at, format!("token {i} is {len} bytes long")));
        }
        tokens.push(c.take(len as usize, "token")?);
    }

    let specs = layout::whisper_tensors(&hparams);
    let mut expected: HashMap<&str, &TensorSpec> = specs.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut tensors = Vec::with_capacity(specs.len());
    while c.pos < bytes.len() {
        let at = c.pos;
        let n_dims = c.i32("tensor header")?;
        let name_len = c.i32("tensor header")?;
        let ttype = c.i32("tensor header")?;
        if !(1..=4).contains(&n_dims) || !(1..=256).contains(&name_len) {
            return Err(c.invalid(at, format!("tensor header has {n_dims} dimensions and a {name_len}-byte name")));
        }
        let mut ne = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            let d = c.i32("tensor shape")?;
            if d < 1 {
                return Err(c.invalid(at, format!("tensor dimension {d}")));
            }
            ne.push(d as usize);
        }
        let name = c.take(name_len as usize, "tensor name")?;
        let name = String::from_utf8_lossy(name).into_owned();
        let Some(spec) = expected.remove(name.as_str()) else {
            let reason = if specs.iter().any(|s| s.name == name) {
                format!("tensor {name} appears twice")
            } else {
                format!("unknown tensor {name}")
            };
            return Err(c.invalid(at, reason));
        };
        let mut want_ne = spec.ne.clone();
        want_ne.resize(4, 1);
        let mut got_ne = ne.clone();
        got_ne.resize(4, 1);
        if got_ne != want_ne {
            return Err(c.invalid(at, format!("tensor {name} has shape {ne:?}, expected {:?}", spec.ne)));
        }
        let want_type = match spec.kind {
            Kind::F32 => GgmlType::F32,
            Kind::Conv if weight_type == GgmlType::F32 => GgmlType::F32,
            Kind::Conv => GgmlType::F16,
            Kind::Weight => weight_type,
        };
        if ttype != want_type.id() {
            return Err(c.invalid(
                at,
                format!(
                    "tensor {name} has type {ttype} ({}), expected {want_type}",
                    GgmlType::from_id(ttype).map_or("unknown".to_owned(), |t| t.to_string())
                ),
            ));
        }
        if !spec.ne[0].is_multiple_of(want_type.block_size()) {
            return Err(c.invalid(at, format!("tensor {name} rows of {} do not fill {want_type} blocks", spec.ne[0])));
        }
        let size = spec.len() / want_type.block_size() * want_type.block_bytes();
        let data = c.take(size, &format!("data of tensor {name}"))?;
        tensors.push(GgmlTensor { name, ne, ggml_type: want_type, data });
    }
    let n_tensors = tensors.len();
    if let Some(missing) = specs.iter().find(|s| expected.contains_key(s.name.as_str())) {
        return Err(GgmlError::Truncated {
            what: format!("tensor {} (only {n_tensors} of {} tensors present)", missing.name, specs.len()),
            offset: c.pos,
        });
    }
    Ok(GgmlFile {
        info: GgmlInfo { hparams, weight_type, n_tokens: n_tokens as usize, n_tensors },
        mel_filters,
        tokens,
        tensors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ct2::testing::{Var, build, f16_bytes};

    /// A complete but tiny Whisper-shaped CTranslate2 model: 1+1 layers, width 32, two
    /// heads, 4 mels, the real vocabulary size (whisper.cpp's token ids need it).
    fn toy_model() -> (Ct2Model, String) {
        const S: u32 = 32;
        const V: u32 = 51864;
        let mut owned: Vec<(String, Vec<u32>, u8, Vec<u8>)> = Vec::new();
        let mut seed = 1u32;
        let mut f16s = |shape: &[u32]| {
            let n: u32 = shape.iter().product();
            let values: Vec<f32> = (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    (seed >> 16) as f32 / 65_536.0 - 0.5
                })
                .collect();
            f16_bytes(&values)
        };
        let mut add = |name: String, shape: &[u32]| {
            let data = f16s(shape);
            owned.push((name, shape.to_vec(), 4, data));
        };
        add("encoder/conv1/weight".into(), &[S, 4, 3]);
        add("encoder/conv1/bias".into(), &[S]);
        add("encoder/conv2/weight".into(), &[S, S, 3]);
        add("encoder/conv2/bias".into(), &[S]);
        add("encoder/position_encodings/encodings".into(), &[1500, S]);
        add("decoder/position_encodings/encodings".into(), &[448, S]);
        add("decoder/embeddings/weight".into(), &[V, S]);
        for side in ["encoder", "decoder"] {
            add(format!("{side}/layer_norm/gamma"), &[S]);
            add(format!("{side}/layer_norm/beta"), &[S]);
            let l = format!("{side}/layer_0");
            for ln in ["self_attention", "ffn"] {
                add(format!("{l}/{ln}/layer_norm/gamma"), &[S]);
                add(format!("{l}/{ln}/layer_norm/beta"), &[S]);
            }
            add(format!("{l}/self_attention/linear_0/weight"), &[3 * S, S]);
            add(format!("{l}/self_attention/linear_0/bias"), &[3 * S]);
            add(format!("{l}/self_attention/linear_1/weight"), &[S, S]);
            add(format!("{l}/self_attention/linear_1/bias"), &[S]);
            add(format!("{l}/ffn/linear_0/weight"), &[4 * S, S]);
            add(format!("{l}/ffn/linear_0/bias"), &[4 * S]);
            add(format!("{l}/ffn/linear_1/weight"), &[S, 4 * S]);
            add(format!("{l}/ffn/linear_1/bias"), &[S]);
        }
        let l = "decoder/layer_0/attention";
        add(format!("{l}/layer_norm/gamma"), &[S]);
        add(format!("{l}/layer_norm/beta"), &[S]);
        add(format!("{l}/linear_0/weight"), &[S, S]);
        add(format!("{l}/linear_0/bias"), &[S]);
        add(format!("{l}/linear_1/weight"), &[2 * S, S]);
        add(format!("{l}/linear_1/bias"), &[2 * S]);
        add(format!("{l}/linear_2/weight"), &[S, S]);
        add(format!("{l}/linear_2/bias"), &[S]);
        for side in ["encoder", "decoder"] {
            owned.push((format!("{side}/num_heads"), vec![], 2, 2i16.to_le_bytes().to_vec()));
        }
        let vars: Vec<Var<'_>> = owned
            .iter()
            .map(|(name, shape, dtype, data)| Var { name, shape, dtype: *dtype, data: data.clone() })
            .collect();
        let bytes = build(6, "WhisperSpec", &vars, &[("decoder/projection/weight", "decoder/embeddings/weight")]);
        let mut vocab: Vec<String> = (0..50256).map(|i| format!("t{i}")).collect();
        vocab.push("<|endoftext|>".into());
        while vocab.len() < V as usize {
            vocab.push(format!("<|special{}|>", vocab.len()));
        }
        (Ct2Model::parse(bytes).unwrap(), vocab.join("\n") + "\n")
    }

    fn convert(quant: Quant) -> Vec<u8> {
        let (model, vocab) = toy_model();
        let mut out = Vec::new();
        let mut calls = 0;
        let stats = write_whisper(&model, &vocab, quant, &mut out, &mut |_, _| calls += 1).unwrap();
        assert_eq!(stats.bytes, out.len() as u64);
        assert_eq!(calls, stats.n_tensors);
        assert_eq!(stats.n_tokens, 50256);
        out
    }

    #[test]
    fn converted_files_pass_inspection() {
        for quant in Quant::ALL {
            let bytes = convert(quant);
            let info = inspect(&bytes).unwrap();
            assert_eq!(info.weight_type, quant.weight_type());
            assert_eq!(info.n_tensors, 7 + 15 + 4 + 24);
            assert_eq!(info.n_tokens, 50256);
            assert_eq!(info.hparams.n_audio_state, 32);
            assert_eq!(info.hparams.n_mels, 4);
            assert_eq!(info.hparams.n_audio_head, 2);
            assert_eq!(info.hparams.ftype, quant.header_ftype());
        }
        assert_eq!(Quant::Q8_0.header_ftype(), 2007);
    }

    #[test]
    fn unfused_key_rows_are_the_middle_third() {
        let (model, vocab) = toy_model();
        let mut out = Vec::new();
        write_whisper(&model, &vocab, Quant::F16, &mut out, &mut |_, _| {}).unwrap();
        let fused = model.get("encoder/layer_0/self_attention/linear_0/weight").unwrap();
        let key_rows = &fused.data[32 * 32 * 2..2 * 32 * 32 * 2];
        let name = b"encoder.blocks.0.attn.key.weight";
        let at = out.windows(name.len()).position(|w| w == name).expect("key tensor written");
        assert_eq!(&out[at + name.len()..at + name.len() + key_rows.len()], key_rows);
        // Its header: 2 dims, name length, type f16, ne [32, 32].
        let header = &out[at - 20..at];
        let ints: Vec<i32> = header.chunks(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        assert_eq!(ints, vec![2, name.len() as i32, 1, 32, 32]);
    }

    #[test]
    fn every_truncation_is_rejected() {
        let bytes = convert(Quant::Q8_0);
        // The header byte by byte, then about 300 cuts through the filters, vocabulary and
        // tensors.
        let cuts = (0..160).chain((160..bytes.len()).step_by(bytes.len() / 300));
        for len in cuts {
            let err = inspect(&bytes[..len]).unwrap_err();
            assert!(matches!(err, GgmlError::Truncated { .. } | GgmlError::Invalid { .. }), "length {len}: {err}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(inspect(&longer).is_err());
    }

    #[test]
    fn corrupt_headers_are_rejected_not_trusted() {
        let bytes = convert(Quant::F16);
        let err = inspect(b"GGUF\0\0\0\0").unwrap_err();
        assert!(matches!(err, GgmlError::BadMagic { .. }), "{err}");

        // ftype 4 (mostly q4_1, some f16) makes whisper.cpp abort; it must be refused here.
        let mut bad = bytes.clone();
        bad[44..48].copy_from_slice(&4i32.to_le_bytes());
        let err = inspect(&bad).unwrap_err();
        assert!(err.to_string().contains("ftype"), "{err}");

        // A huge mel filter count must not be trusted.
        let mut bad = bytes.clone();
        bad[48..52].copy_from_slice(&i32::MAX.to_le_bytes());
        assert!(inspect(&bad).is_err());

        // Flip every header byte, then bytes spread over the filters, tokens and the first
        // tensor headers.
        let mut b = bytes.clone();
        for i in (0..160).chain((160..600_000).step_by(1999)) {
            b[i] ^= 0xa5;
            let _ = inspect(&b);
            b[i] ^= 0xa5;
        }
    }
}
