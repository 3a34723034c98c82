//! `huddle serve`: build the config (defaults -> file -> `HUDDLE__*` env ->
//! flags), set up logging, bind, print the `huddle serving` line, and run
//! until SIGTERM or SIGINT.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use huddle_runtime::Config;
use huddle_runtime::server::Server;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The config file read when `--config` is not given, if it exists.
const DEFAULT_CONFIG_FILE: &str = "huddle.toml";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// gRPC listen address [default: server.listen, 127.0.0.1:50051]. Port 0
    /// picks a free port.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// HTTP listen address for /healthz and /metrics [default: server.http,
    /// 127.0.0.1:9090].
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// Database URL: sqlite://PATH (created on first start) or
    /// postgres://USER:PASS@HOST/DB [default: database.url,
    /// sqlite://huddle.db].
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// The admin key (at least 16 characters), which may do everything. When
    /// no key is configured anywhere, one is generated into
    /// server.admin_key_file (./huddle.admin-key), where client commands run
    /// from the same directory find it.
    #[arg(long, env = "HUDDLE_ADMIN_KEY", hide_env_values = true, value_name = "KEY")]
    admin_key: Option<String>,
    /// Config file (TOML) [default: ./huddle.toml when it exists].
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format on stderr [default: log.format, text]. The filter is
    /// RUST_LOG when set, else log.filter.
    #[arg(long, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// Runs `huddle serve`. Exit codes: 0 after a graceful shutdown, 2 for bad
/// configuration, 1 for anything else.
pub fn main(args: ServeArgs) -> ExitCode {
    let config = match build_config(&args) {
        Ok(c) => c,
        Err(e) => {
            // The runtime's errors already carry their causes in their
            // messages; `{:#}` would print each cause twice.
            crate::print_error(&e.to_string());
            return ExitCode::from(2);
        }
    };
    if let Err(e) = crate::init_tracing(&config.log.filter, config.log.format == "json") {
        crate::print_error(&format!("{e:#}"));
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            crate::print_error(&format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = match e.downcast_ref::<huddle_runtime::RuntimeError>() {
                Some(huddle_runtime::RuntimeError::Config(_)) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            };
            crate::print_error(&e.to_string());
            code
        }
    }
}

/// Defaults -> file -> `HUDDLE__*` env (all in [`Config::load`]) -> flags,
/// then validated.
fn build_config(args: &ServeArgs) -> anyhow::Result<Config> {
    let file: Option<&Path> = match &args.config {
        Some(p) => Some(p),
        None => Some(Path::new(DEFAULT_CONFIG_FILE)).filter(|p| p.exists()),
    };
    let mut config = Config::load(file)?;
    if let Some(a) = args.listen {
        config.server.listen = a;
    }
    if let Some(a) = args.http {
        config.server.http = a;
    }
    if let Some(url) = &args.database {
        config.database.url = url.clone();
    }
    if let Some(key) = &args.admin_key {
        config.server.admin_key = Some(key.clone());
    }
    if let Some(f) = args.log_format {
        config.log.format = f.as_str().to_string();
    }
    config.validate()?;
    Ok(config)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Listen for signals before announcing the addresses, so a signal sent
    // right after the `huddle serving` line is never missed.
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;

    let server = Server::bind(config).await?;
    if let Some(path) = server.admin_key_file() {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        info!(path = %path.display(), "admin key is in the file; clients in that directory use it automatically");
    }

    // The ready signal: everything before it (including the log above) is done.
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "huddle serving grpc={} http={}", server.grpc_addr(), server.http_addr())?;
        out.flush()?;
    }
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let name = tokio::select! {
                _ = sigterm.recv() => "SIGTERM",
                _ = sigint.recv() => "SIGINT",
            };
            info!(signal = name, "shutting down gracefully; send it again to exit at once");
            shutdown.cancel();
            tokio::select! {
                _ = sigterm.recv() => {}
                _ = sigint.recv() => {}
            }
            warn!("second signal: exiting without finishing the shutdown");
            std::process::exit(130);
        }
    });

    server.run(shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn flags_override_config() {
        let w = Wrap::try_parse_from([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--database",
            "sqlite::memory:",
            "--admin-key",
            "0123456789abcdef0123",
            "--log-format",
            "json",
        ])
        .unwrap();
        let c = build_config(&w.serve).unwrap();
        assert_eq!(c.server.listen.port(), 0);
        assert_eq!(c.server.http.port(), 0);
        assert_eq!(c.database.url, "sqlite::memory:");
        assert_eq!(c.server.admin_key.as_deref(), Some("0123456789abcdef0123"));
        assert_eq!(c.log.format, "json");
    }

    #[test]
    fn bad_flags_fail_validation() {
        let w = Wrap::try_parse_from(["serve", "--admin-key", "short", "--database", "sqlite::memory:"]).unwrap();
        let e = build_config(&w.serve).unwrap_err();
        assert!(e.to_string().contains("admin_key"), "{e}");
        let w = Wrap::try_parse_from(["serve", "--database", "mysql://x"]).unwrap();
        assert!(build_config(&w.serve).unwrap_err().to_string().contains("database.url"));
    }

    #[test]
    fn missing_config_file_is_an_error() {
        let w = Wrap::try_parse_from(["serve", "--config", "/nonexistent/huddle.toml"]).unwrap();
        assert!(build_config(&w.serve).unwrap_err().to_string().contains("/nonexistent/huddle.toml"));
    }
}
