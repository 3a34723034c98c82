//! `huddle livekit token`: LiveKit access tokens from the node's LiveKit
//! configuration, no server needed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use huddle_runtime::Config;
use huddle_runtime::livekit::LiveKit;
use serde_json::json;

#[derive(Debug, Args)]
pub struct LiveKitArgs {
    #[command(subcommand)]
    command: LiveKitCommand,
}

#[derive(Debug, Subcommand)]
enum LiveKitCommand {
    /// Mint a participant token for a LiveKit room (join, publish, subscribe,
    /// data), signed with the configured API key pair.
    ///
    /// The URL and keys come from the flags, else LiveKit's usual variables
    /// LIVEKIT_URL / LIVEKIT_API_KEY / LIVEKIT_API_SECRET, else huddle's
    /// configuration (huddle.toml, HUDDLE__LIVEKIT__URL, ...). Prints the token,
    /// or with --json one object {token, url, room, identity, expires_at}.
    Token(TokenArgs),
}

#[derive(Debug, Args)]
struct TokenArgs {
    /// The LiveKit room name.
    #[arg(long)]
    room: String,
    /// The participant's identity.
    #[arg(long)]
    identity: String,
    /// The participant's display name.
    #[arg(long)]
    name: Option<String>,
    /// How long the token is valid: 90s, 30m, 6h, 2d, ...
    #[arg(long, default_value = "6h", value_parser = parse_ttl)]
    ttl: Duration,
    /// Print one JSON object instead of the bare token.
    #[arg(long)]
    json: bool,
    /// The LiveKit server URL.
    #[arg(long, env = "LIVEKIT_URL")]
    url: Option<String>,
    /// The API key.
    #[arg(long, env = "LIVEKIT_API_KEY")]
    api_key: Option<String>,
    /// The API secret.
    #[arg(long, env = "LIVEKIT_API_SECRET", hide_env_values = true)]
    api_secret: Option<String>,
    /// Config file (TOML) [default: ./huddle.toml when it exists].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let d = huddle_runtime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be above 0".into());
    }
    Ok(d)
}

pub fn main(args: LiveKitArgs) -> ExitCode {
    match args.command {
        LiveKitCommand::Token(t) => match token(t) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                crate::print_error(&format!("{e:#}"));
                ExitCode::from(2)
            }
        },
    }
}

fn token(args: TokenArgs) -> anyhow::Result<()> {
    let file: Option<&Path> = match &args.config {
        Some(p) => Some(p),
        None => Some(Path::new("huddle.toml")).filter(|p| p.exists()),
    };
    let mut cfg = Config::load(file)?.livekit;
    cfg.url = args.url.or(cfg.url);
    cfg.api_key = args.api_key.or(cfg.api_key);
    cfg.api_secret = args.api_secret.or(cfg.api_secret);
    let Some(lk) = LiveKit::from_config(&cfg) else {
        anyhow::bail!(
            "LiveKit is not configured: give --url, --api-key and --api-secret (or LIVEKIT_URL, LIVEKIT_API_KEY, \
             LIVEKIT_API_SECRET, or livekit.* in huddle.toml)"
        );
    };
    let name = args.name.unwrap_or_default();
    let jwt = lk.participant_token(&args.room, &args.identity, &name, Some(args.ttl))?;
    if args.json {
        let expires = huddle_core::now_ms() + args.ttl.as_millis() as i64;
        let line = json!({
            "token": jwt,
            "url": lk.url(),
            "room": args.room,
            "identity": args.identity,
            "expires_at": huddle_core::time::rfc3339(expires, false),
        });
        println!("{line}");
    } else {
        println!("{jwt}");
    }
    Ok(())
}
