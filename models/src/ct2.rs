//! Reader for CTranslate2 `model.bin` files (format version 6).
//!
//! The layout, all little-endian:
//!
//! ```text
//! u32 version (6)
//! str spec name ("WhisperSpec", ...)        str = u16 length including the NUL, bytes, NUL
//! u32 spec revision
//! u32 variable count
//!   per variable: str name, u8 rank, u32 dims[rank], u8 dtype, u32 byte count, bytes
//! u32 alias count
//!   per alias: str alias, str target
//! ```
//!
//! The reader owns the file's bytes and hands out borrowed [`Tensor`] views, so a 150 MB
//! model is held once. Every length is checked against the bytes that are left: bad input
//! gives a [`Ct2Error`], never a panic.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::Path;

/// The only `model.bin` format version this reader understands.
pub const SUPPORTED_VERSION: u32 = 6;

/// The most dimensions a variable may have; CTranslate2 models use at most 3.
const MAX_RANK: u8 = 8;

/// Errors from reading a CTranslate2 model.
#[derive(Debug, thiserror::Error)]
pub enum Ct2Error {
    #[error("cannot read CTranslate2 model {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "not a CTranslate2 model.bin (first word is {found:#010x}, expected a format version): \
         check that the file is the model.bin of a CTranslate2 model"
    )]
    BadMagic { found: u32 },
    #[error(
        "unsupported CTranslate2 model.bin version {found} (only version {SUPPORTED_VERSION} is supported): \
         convert the model with a CTranslate2 release that writes version {SUPPORTED_VERSION}"
    )]
    UnsupportedVersion { found: u32 },
    #[error(
        "truncated CTranslate2 model: needed {needed} bytes for {what} at offset {offset}, \
         only {available} left: the download is incomplete, fetch the model again"
    )]
    Truncated { what: String, offset: usize, needed: usize, available: usize },
    #[error("corrupt CTranslate2 model at offset {offset}: {reason}")]
    Corrupt { offset: usize, reason: String },
    #[error("variable {name} has unknown dtype code {code} (expected 0..=5)")]
    BadDtype { name: String, code: u8 },
    #[error("{count} bytes of trailing data after the alias table at offset {offset}: the file is corrupt")]
    TrailingData { offset: usize, count: usize },
}

/// Result alias for this module.
pub type Result<T, E = Ct2Error> = std::result::Result<T, E>;

/// Element type of a CTranslate2 variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    I8,
    I16,
    I32,
    F16,
    Bf16,
}

impl DType {
    /// Decodes the on-disk dtype code.
    pub fn from_code(code: u8) -> Option<DType> {
        Some(match code {
            0 => DType::F32,
            1 => DType::I8,
            2 => DType::I16,
            3 => DType::I32,
            4 => DType::F16,
            5 => DType::Bf16,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::I8 => 1,
            DType::I16 | DType::F16 | DType::Bf16 => 2,
            DType::F32 | DType::I32 => 4,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "float32",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::F16 => "float16",
            DType::Bf16 => "bfloat16",
        })
    }
}

#[derive(Debug, Clone)]
struct VarInfo {
    shape: Vec<usize>,
    dtype: DType,
    range: Range<usize>,
}

/// A parsed CTranslate2 model: header fields, variables and aliases.
pub struct Ct2Model {
    bytes: Vec<u8>,
    version: u32,
    spec: String,
    revision: u32,
    vars: BTreeMap<String, VarInfo>,
    aliases: BTreeMap<String, String>,
}

impl fmt::Debug for Ct2Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ct2Model")
            .field("version", &self.version)
            .field("spec", &self.spec)
            .field("revision", &self.revision)
            .field("variables", &self.vars.len())
            .field("aliases", &self.aliases)
            .finish()
    }
}

/// A borrowed view of one variable.
#[derive(Debug, Clone, Copy)]
pub struct Tensor<'a> {
    pub name: &'a str,
    pub shape: &'a [usize],
    pub dtype: DType,
    pub data: &'a [u8],
}

impl Tensor<'_> {
    /// Number of elements (the product of the shape; 1 for a scalar).
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values widened to `f32`; `None` for integer dtypes.
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        let chunks = self.data.chunks_exact(self.dtype.size());
        match self.dtype {
            DType::F32 => Some(chunks.map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
            DType::F16 => Some(chunks.map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()),
            DType::Bf16 => Some(chunks.map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect()),
            DType::I8 | DType::I16 | DType::I32 => None,
        }
    }

    /// The value of a one-element integer tensor (CTranslate2 stores options such as
    /// `num_heads` this way); `None` if the tensor is not a single integer.
    pub fn scalar_int(&self) -> Option<i64> {
        if self.len() != 1 {
            return None;
        }
        let d = self.data;
        match self.dtype {
            DType::I8 => Some(i64::from(d[0] as i8)),
            DType::I16 => Some(i64::from(i16::from_le_bytes([d[0], d[1]]))),
            DType::I32 => Some(i64::from(i32::from_le_bytes([d[0], d[1], d[2], d[3]]))),
            DType::F32 | DType::F16 | DType::Bf16 => None,
        }
    }
}

impl Ct2Model {
    /// Reads and parses a `model.bin` file.
    pub fn open(path: &Path) -> Result<Ct2Model> {
        let bytes = std::fs::read(path).map_err(|source| Ct2Error::Io { path: path.display().to_string(), source })?;
        Ct2Model::parse(bytes)
    }

    /// Parses a `model.bin` held in memory.
    pub fn parse(bytes: Vec<u8>) -> Result<Ct2Model> {
        let mut r = Reader { bytes: &bytes, pos: 0 };
        let version = r.u32("format version")?;
        if version == 0 || version > 64 {
            return Err(Ct2Error::BadMagic { found: version });
        }
        if version != SUPPORTED_VERSION {
            return Err(Ct2Error::UnsupportedVersion { found: version });
        }
        let spec = r.string("spec name")?;
        let revision = r.u32("spec revision")?;
        let count = r.u32("variable count")? as usize;

        let mut vars = BTreeMap::new();
        for index in 0..count {
            let at = r.pos;
            let name = r.string(&format!("name of variable {index}"))?;
            let rank = r.u8(&format!("rank of {name}"))?;
            if rank > MAX_RANK {
                return Err(r.corrupt(at, format!("variable {name} has rank {rank}")));
            }
            let mut shape = Vec::with_capacity(usize::from(rank));
            for _ in 0..rank {
                shape.push(r.u32(&format!("shape of {name}"))? as usize);
            }
            let code = r.u8(&format!("dtype of {name}"))?;
            let dtype = DType::from_code(code).ok_or_else(|| Ct2Error::BadDtype { name: name.clone(), code })?;
            let byte_count = r.u32(&format!("byte count of {name}"))? as usize;
            let expected = shape.iter().try_fold(dtype.size(), |acc, &d| acc.checked_mul(d));
            if expected != Some(byte_count) {
                return Err(r.corrupt(
                    at,
                    format!(
                        "variable {name} {shape:?} {dtype} declares {byte_count} bytes, \
                         its shape needs {}",
                        expected.map_or_else(|| "more than usize".to_owned(), |e| e.to_string())
                    ),
                ));
            }
            let range = r.skip(byte_count, &format!("data of {name}"))?;
            if vars.insert(name.clone(), VarInfo { shape, dtype, range }).is_some() {
                return Err(r.corrupt(at, format!("variable {name} appears twice")));
            }
        }

        let alias_count = r.u32("alias count")? as usize;
        let mut aliases = BTreeMap::new();
        for index in 0..alias_count {
            let at = r.pos;
            let alias = r.string(&format!("alias {index}"))?;
            let target = r.string(&format!("target of alias {alias}"))?;
            if !vars.contains_key(&target) {
                return Err(r.corrupt(at, format!("alias {alias} points to missing variable {target}")));
            }
            aliases.insert(alias, target);
        }
        if r.pos != bytes.len() {
            return Err(Ct2Error::TrailingData { offset: r.pos, count: bytes.len() - r.pos });
        }

        Ok(Ct2Model { bytes, version, spec, revision, vars, aliases })
    }

    /// The format version (always [`SUPPORTED_VERSION`] for a parsed model).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The model spec name, e.g. `WhisperSpec`.
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// The spec revision.
    pub fn revision(&self) -> u32 {
        self.revision
    }

    /// Names of the stored variables, sorted (aliases not included).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.vars.keys().map(String::as_str)
    }

    /// Aliases as `(alias, target)` pairs.
    pub fn aliases(&self) -> impl Iterator<Item = (&str, &str)> {
        self.aliases.iter().map(|(a, t)| (a.as_str(), t.as_str()))
    }

    /// Looks up a variable by name, following an alias if needed.
    pub fn get(&self, name: &str) -> Option<Tensor<'_>> {
        let (key, info) = match self.vars.get_key_value(name) {
            Some(found) => found,
            None => self.vars.get_key_value(self.aliases.get(name)?.as_str())?,
        };
        Some(Tensor { name: key, shape: &info.shape, dtype: info.dtype, data: &self.bytes[info.range.clone()] })
    }
}

/// A bounds-checked cursor over the file's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn skip(&mut self, n: usize, what: &str) -> Result<Range<usize>> {
        let available = self.bytes.len() - self.pos;
        if n > available {
            return Err(Ct2Error::Truncated { what: what.to_owned(), offset: self.pos, needed: n, available });
        }
        let range = self.pos..self.pos + n;
        self.pos += n;
        Ok(range)
    }

    fn take<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let range = self.skip(N, what)?;
        let mut out = [0; N];
        out.copy_from_slice(&self.bytes[range]);
        Ok(out)
    }

    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take::<1>(what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let at = self.pos;
        let len = usize::from(u16::from_le_bytes(self.take(what)?));
        let range = self.skip(len, what)?;
        let raw = &self.bytes[range];
        let Some((&0, text)) = raw.split_last() else {
            return Err(self.corrupt(at, format!("{what} is not NUL-terminated")));
        };
        String::from_utf8(text.to_vec()).map_err(|_| self.corrupt(at, format!("{what} is not valid UTF-8")))
    }

    fn corrupt(&self, offset: usize, reason: String) -> Ct2Error {
        Ct2Error::Corrupt { offset, reason }
    }
}

/// Builds `model.bin` bytes; used by tests here and in the converter.
#[cfg(test)]
pub(crate) mod testing {
    /// One variable to write: name, shape, dtype code, raw bytes.
    pub(crate) struct Var<'a> {
        pub name: &'a str,
        pub shape: &'a [u32],
        pub dtype: u8,
        pub data: Vec<u8>,
    }

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    pub(crate) fn build(version: u32, spec: &str, vars: &[Var<'_>], aliases: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&version.to_le_bytes());
        string(&mut out, spec);
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&(vars.len() as u32).to_le_bytes());
        for v in vars {
            string(&mut out, v.name);
            out.push(v.shape.len() as u8);
            for d in v.shape {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.push(v.dtype);
            out.extend_from_slice(&(v.data.len() as u32).to_le_bytes());
            out.extend_from_slice(&v.data);
        }
        out.extend_from_slice(&(aliases.len() as u32).to_le_bytes());
        for (a, t) in aliases {
            string(&mut out, a);
            string(&mut out, t);
        }
        out
    }

    pub(crate) fn f16_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{Var, build, f16_bytes};
    use super::*;

    fn sample() -> Vec<u8> {
        build(
            6,
            "WhisperSpec",
            &[
                Var {
                    name: "decoder/embeddings/weight",
                    shape: &[2, 3],
                    dtype: 4,
                    data: f16_bytes(&[1.0, 2.0, 3.0, -1.0, -2.0, 0.5]),
                },
                Var { name: "decoder/num_heads", shape: &[], dtype: 2, data: 6i16.to_le_bytes().to_vec() },
                Var {
                    name: "encoder/scale",
                    shape: &[2],
                    dtype: 0,
                    data: [0.25f32, -4.0].iter().flat_map(|v| v.to_le_bytes()).collect(),
                },
            ],
            &[("decoder/projection/weight", "decoder/embeddings/weight")],
        )
    }

    #[test]
    fn parses_variables_and_aliases() {
        let m = Ct2Model::parse(sample()).unwrap();
        assert_eq!(m.version(), 6);
        assert_eq!(m.spec(), "WhisperSpec");
        assert_eq!(m.revision(), 1);
        assert_eq!(m.names().count(), 3);
        let emb = m.get("decoder/embeddings/weight").unwrap();
        assert_eq!(emb.shape, &[2, 3]);
        assert_eq!(emb.dtype, DType::F16);
        assert_eq!(emb.to_f32().unwrap(), vec![1.0, 2.0, 3.0, -1.0, -2.0, 0.5]);
        let proj = m.get("decoder/projection/weight").unwrap();
        assert_eq!(proj.name, "decoder/embeddings/weight");
        assert_eq!(m.get("decoder/num_heads").unwrap().scalar_int(), Some(6));
        assert_eq!(m.get("encoder/scale").unwrap().to_f32().unwrap(), vec![0.25, -4.0]);
        assert!(m.get("missing").is_none());
        assert_eq!(m.aliases().collect::<Vec<_>>(), vec![("decoder/projection/weight", "decoder/embeddings/weight")]);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample();
        for len in 0..bytes.len() {
            let err = Ct2Model::parse(bytes[..len].to_vec()).unwrap_err();
            assert!(matches!(err, Ct2Error::Truncated { .. }), "length {len}: {err}");
        }
    }

    #[test]
    fn wrong_magic_and_version() {
        let mut bytes = sample();
        bytes[..4].copy_from_slice(&0x6767_6d6cu32.to_le_bytes());
        let err = Ct2Model::parse(bytes).unwrap_err();
        assert!(matches!(err, Ct2Error::BadMagic { .. }), "{err}");
        assert!(err.to_string().contains("not a CTranslate2 model.bin"));

        let mut bytes = sample();
        bytes[..4].copy_from_slice(&5u32.to_le_bytes());
        let err = Ct2Model::parse(bytes).unwrap_err();
        assert!(matches!(err, Ct2Error::UnsupportedVersion { found: 5 }), "{err}");
    }

    #[test]
    fn bad_dtype_is_named() {
        let mut bytes = build(6, "WhisperSpec", &[Var { name: "x", shape: &[1], dtype: 9, data: vec![0] }], &[]);
        let err = Ct2Model::parse(bytes.clone()).unwrap_err();
        assert!(matches!(err, Ct2Error::BadDtype { ref name, code: 9 } if name == "x"), "{err}");
        // A byte count that disagrees with the shape is caught too.
        let dtype_at = bytes.len() - 4 - 1 - 4 - 1;
        bytes[dtype_at] = 0;
        let err = Ct2Model::parse(bytes).unwrap_err();
        assert!(matches!(err, Ct2Error::Corrupt { .. }), "{err}");
    }

    #[test]
    fn trailing_bytes_and_dangling_alias() {
        let mut bytes = sample();
        bytes.push(0);
        assert!(matches!(Ct2Model::parse(bytes).unwrap_err(), Ct2Error::TrailingData { count: 1, .. }));
        let bytes = build(6, "WhisperSpec", &[], &[("a", "b")]);
        assert!(matches!(Ct2Model::parse(bytes).unwrap_err(), Ct2Error::Corrupt { .. }));
    }

    #[test]
    fn corrupt_bytes_never_panic() {
        // Flip every byte of the header and metadata in turn (not the tensor payloads,
        // which are opaque): each result must be Ok or a clean error.
        let bytes = sample();
        for i in 0..bytes.len() {
            for x in [0x00u8, 0xff, 0x80, 0x01] {
                let mut b = bytes.clone();
                b[i] ^= x;
                let _ = Ct2Model::parse(b);
            }
        }
        // Deterministic pseudo-random garbage of many lengths.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in [0usize, 1, 3, 4, 7, 16, 64, 257, 4096] {
            let garbage: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            assert!(Ct2Model::parse(garbage).is_err());
        }
    }

    #[test]
    fn missing_nul_in_string() {
        let mut bytes = sample();
        // The spec name's NUL sits right before the revision.
        let nul_at = 4 + 2 + "WhisperSpec".len();
        assert_eq!(bytes[nul_at], 0);
        bytes[nul_at] = b'!';
        let err = Ct2Model::parse(bytes).unwrap_err();
        assert!(err.to_string().contains("NUL"), "{err}");
    }
}
