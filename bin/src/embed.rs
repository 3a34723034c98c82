//! `huddle embed`: text embeddings with the local all-MiniLM-L6-v2, no server needed.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use huddle_models::embed::Embedder;
use huddle_models::fetch;

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Texts to embed; with none (or `-`), one text per line of standard input.
    texts: Vec<String>,
    /// One JSON object per text: {"text", "vector"} (384 numbers, unit length).
    #[arg(long)]
    json: bool,
    /// Models directory [default: $HUDDLE_MODELS_DIR or ~/.cache/huddle/models]; the
    /// model is fetched there first if it is missing.
    #[arg(long, value_name = "DIR")]
    models_dir: Option<PathBuf>,
}

pub fn main(args: EmbedArgs) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            crate::print_error(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

fn run(args: EmbedArgs) -> anyhow::Result<()> {
    let mut texts = args.texts;
    if texts.is_empty() || texts == ["-"] {
        texts = std::io::stdin().lock().lines().collect::<Result<_, _>>()?;
    }
    let dir = match args.models_dir {
        Some(d) => d,
        None => fetch::default_models_dir()?,
    };
    let installed = crate::models::fetch_embedder_bar(&dir, false)?;
    let model = Embedder::load(&installed.dir)?;
    let mut out = std::io::stdout().lock();
    for batch in texts.chunks(32) {
        let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
        let vectors = model.embed(&refs)?;
        for (text, v) in batch.iter().zip(vectors) {
            if args.json {
                writeln!(out, "{}", serde_json::json!({ "text": text, "vector": v }))?;
            } else {
                let head: Vec<String> = v.iter().take(4).map(|x| format!("{x:+.4}")).collect();
                writeln!(out, "{} dims [{} ...]  {text}", v.len(), head.join(", "))?;
            }
        }
    }
    Ok(())
}
