//! The configuration tree: built-in defaults, then a TOML file
//! (`huddle.toml`), then environment variables `HUDDLE__SECTION__KEY`
//! (for example `HUDDLE__SERVER__LISTEN=0.0.0.0:50051`). The binary applies
//! its command-line flags last.

use std::net::SocketAddr;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Errors loading or validating configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file not found at {0}")]
    FileNotFound(String),
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("cannot read configuration: {0}")]
    Load(#[from] Box<figment::Error>),
}

/// The whole configuration of a huddle node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub rooms: RoomsConfig,
    pub log: LogConfig,
}

/// Network listeners and the admin key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// HTTP listen address for `/healthz` and `/metrics`.
    pub http: SocketAddr,
    /// The key that may do everything. When unset, `huddle serve` reads it
    /// from `admin_key_file`, creating that file with a random key the first
    /// time.
    pub admin_key: Option<String>,
    /// Where the generated admin key lives when `admin_key` is unset.
    pub admin_key_file: std::path::PathBuf,
    /// Largest accepted gRPC message, in bytes.
    pub max_message_bytes: usize,
    /// Deadline for one request's work inside the runtime, in milliseconds.
    pub request_timeout_ms: u64,
}

/// Where state is persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (created on first start) or `postgres://...`.
    pub url: String,
}

/// Room actor behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomsConfig {
    /// On shutdown, how long live rooms get to finish in-flight work.
    pub drain_timeout_ms: u64,
    /// A failing room actor is restarted after 0, base, 2*base, ... up to max.
    pub restart_backoff_base_ms: u64,
    pub restart_backoff_max_ms: u64,
    /// Capacity of each room's watcher channel; slower watchers catch up
    /// from the stored event log. The channel is allocated up front (about
    /// 120 bytes a slot), so keep it small.
    pub watch_buffer: usize,
    /// A room actor with no request for between this long and twice this
    /// long is passivated (stopped; it respawns from storage on the next
    /// request). 0 keeps actors alive.
    pub idle_timeout_ms: u64,
}

/// Log output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// A `RUST_LOG`-style filter used when `RUST_LOG` is unset.
    pub filter: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: ([127, 0, 0, 1], 50051).into(),
            http: ([127, 0, 0, 1], 9090).into(),
            admin_key: None,
            admin_key_file: "huddle.admin-key".into(),
            max_message_bytes: 4 * 1024 * 1024,
            request_timeout_ms: 10_000,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { url: "sqlite://huddle.db".into() }
    }
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            drain_timeout_ms: 5_000,
            restart_backoff_base_ms: 100,
            restart_backoff_max_ms: 10_000,
            watch_buffer: 64,
            idle_timeout_ms: 300_000,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: "text".into(), filter: "info".into() }
    }
}

impl Config {
    /// Defaults, then `file` if given (it must exist), then `HUDDLE__*`
    /// environment variables. `HUDDLE_ADMIN_KEY` also sets the admin key.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::FileNotFound(path.display().to_string()));
            }
            fig = fig.merge(Toml::file(path));
        }
        fig = fig.merge(Env::prefixed("HUDDLE__").split("__"));
        let mut config: Config = fig.extract().map_err(|e| ConfigError::Load(Box::new(e)))?;
        if config.server.admin_key.is_none() {
            config.server.admin_key = std::env::var("HUDDLE_ADMIN_KEY").ok().filter(|k| !k.is_empty());
        }
        Ok(config)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if let Some(k) = &self.server.admin_key
            && k.len() < 16
        {
            return invalid("server.admin_key must be at least 16 characters long");
        }
        if !(self.database.url.starts_with("sqlite:")
            || self.database.url.starts_with("postgres://")
            || self.database.url.starts_with("postgresql://"))
        {
            return invalid("database.url must start with sqlite:// or postgres://");
        }
        if self.server.max_message_bytes < 1024 {
            return invalid("server.max_message_bytes must be at least 1024");
        }
        if self.server.request_timeout_ms == 0 {
            return invalid("server.request_timeout_ms must be above 0");
        }
        if self.rooms.watch_buffer == 0 {
            return invalid("rooms.watch_buffer must be above 0");
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return invalid("log.format must be `text` or `json`");
        }
        Ok(())
    }
}
