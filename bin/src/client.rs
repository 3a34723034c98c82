//! The gRPC client side of the `huddle` command: the shared connection flags,
//! finding the API key, connecting, and turning failures into
//! `error: CODE: message` on stderr with exit code 1.
//!
//! # Layout
//! - `entity`: `huddle entity ...` and `huddle department ...`
//! - `room`: `huddle room ...`
//! - `kb`: `huddle kb ...`
//! - `notify`: `huddle endpoint ...` and `huddle notify ...`
//! - `output`: human tables and key: value blocks, JSON lines

use std::io::ErrorKind;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use huddle_proto::v1::entities_client::EntitiesClient;
use huddle_proto::v1::knowledge_client::KnowledgeClient;
use huddle_proto::v1::notifications_client::NotificationsClient;
use huddle_proto::v1::rooms_client::RoomsClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::client::output::Out;

pub mod entity;
pub mod kb;
pub mod notify;
pub mod output;
pub mod room;

/// Where the client looks for the server when neither `--server` nor
/// `HUDDLE_SERVER` is given.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:50051";

/// The file `huddle serve` writes a generated admin key to by default.
pub const ADMIN_KEY_FILE: &str = "huddle.admin-key";

/// Flags every client command takes; they may stand before or after the
/// subcommand.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Client options")]
pub struct Connection {
    /// URL of the huddle gRPC server.
    #[arg(long, global = true, env = "HUDDLE_SERVER", default_value = DEFAULT_SERVER, value_name = "URL")]
    pub server: String,
    /// API key, sent as `authorization: Bearer KEY`. When neither this nor
    /// HUDDLE_KEY is set, the key is read from ./huddle.admin-key (where
    /// `huddle serve` puts a generated admin key).
    #[arg(long, global = true, env = "HUDDLE_KEY", hide_env_values = true, value_name = "KEY")]
    pub key: Option<String>,
    /// Print one JSON object per line instead of tables (timestamps as RFC
    /// 3339, enums by name).
    #[arg(long, global = true)]
    pub json: bool,
}

/// One client command, whichever group it is in.
pub enum Op {
    Entity(entity::EntityCommand),
    Department(entity::DepartmentCommand),
    Room(room::RoomCommand),
    Kb(kb::KbCommand),
    Endpoint(notify::EndpointCommand),
    Notify(notify::NotifyCommand),
}

/// Adds `authorization: Bearer <key>` to every request.
#[derive(Clone)]
pub struct Auth(MetadataValue<Ascii>);

impl Interceptor for Auth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

pub type Authed = InterceptedService<Channel, Auth>;

/// Connected clients for both services, and where output goes.
pub struct Client {
    pub entities: EntitiesClient<Authed>,
    pub rooms: RoomsClient<Authed>,
    pub knowledge: KnowledgeClient<Authed>,
    pub notifications: NotificationsClient<Authed>,
    pub out: Out,
}

/// Runs one client command and maps the outcome to an exit code.
pub fn main(conn: &Connection, op: Op) -> ExitCode {
    if let Err(e) = crate::init_tracing("warn", false) {
        crate::print_error(&format!("{e:#}"));
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            crate::print_error(&format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(conn, op)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            crate::print_error(&describe(&e, &conn.server));
            ExitCode::FAILURE
        }
    }
}

async fn run(conn: &Connection, op: Op) -> anyhow::Result<()> {
    let key = resolve_key(conn.key.as_deref(), Path::new(ADMIN_KEY_FILE))?;
    let mut client = connect(&conn.server, &key, Out::new(conn.json)).await?;
    match op {
        Op::Entity(cmd) => entity::run_entity(&mut client, cmd).await,
        Op::Department(cmd) => entity::run_department(&mut client, cmd).await,
        Op::Room(cmd) => room::run(&mut client, cmd).await,
        Op::Kb(cmd) => kb::run(&mut client, cmd).await,
        Op::Endpoint(cmd) => notify::run_endpoint(&mut client, cmd).await,
        Op::Notify(cmd) => notify::run_notify(&mut client, cmd).await,
    }
}

/// The key from `--key` / `HUDDLE_KEY`, else from `key_file` if it exists.
fn resolve_key(given: Option<&str>, key_file: &Path) -> anyhow::Result<String> {
    if let Some(k) = given.map(str::trim).filter(|k| !k.is_empty()) {
        return Ok(k.to_string());
    }
    match std::fs::read_to_string(key_file) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        Ok(_) => bail!("no API key: {} is empty; pass --key or set HUDDLE_KEY", key_file.display()),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            bail!("no API key: pass --key or set HUDDLE_KEY")
        }
        Err(e) => Err(anyhow!("no API key: cannot read {}: {e}; pass --key or set HUDDLE_KEY", key_file.display())),
    }
}

/// `host:port` is taken as `http://host:port`.
fn normalize_url(server: &str) -> String {
    if server.contains("://") { server.to_string() } else { format!("http://{server}") }
}

/// Connects eagerly, so an unreachable server is reported as such, naming the URL.
pub async fn connect(server: &str, key: &str, out: Out) -> anyhow::Result<Client> {
    let url = normalize_url(server);
    if url.starts_with("https://") {
        bail!("{url}: TLS is not supported by this client; use an http:// URL (or a TLS-terminating proxy)");
    }
    let bearer: MetadataValue<Ascii> = format!("Bearer {key}")
        .parse()
        .map_err(|_| anyhow!("the API key contains characters that cannot be sent in a header"))?;
    let endpoint = Endpoint::from_shared(url.clone())
        .with_context(|| format!("invalid server URL `{server}`"))?
        .connect_timeout(Duration::from_secs(5));
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| anyhow!("cannot reach the huddle server at {url}: {} (is `huddle serve` running?)", chain(&e)))?;
    let auth = Auth(bearer);
    Ok(Client {
        entities: EntitiesClient::with_interceptor(channel.clone(), auth.clone()),
        rooms: RoomsClient::with_interceptor(channel.clone(), auth.clone()),
        knowledge: KnowledgeClient::with_interceptor(channel.clone(), auth.clone()),
        notifications: NotificationsClient::with_interceptor(channel, auth),
        out,
    })
}

/// An error and its sources, joined with `: `.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_text = s.to_string();
        if parts.last() != Some(&s_text) {
            parts.push(s_text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// `CODE: message` for a gRPC status, the error chain otherwise.
fn describe(e: &anyhow::Error, server: &str) -> String {
    match e.downcast_ref::<tonic::Status>() {
        Some(s) if s.code() == tonic::Code::Unavailable => {
            format!("{}: {} (server {})", code_name(s.code()), s.message(), normalize_url(server))
        }
        Some(s) => format!("{}: {}", code_name(s.code()), s.message()),
        None => format!("{e:#}"),
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == ErrorKind::BrokenPipe))
}

/// The canonical name of a gRPC status code, as in `NOT_FOUND`.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_errors_print_code_and_message() {
        let e = anyhow::Error::new(tonic::Status::not_found("room `x` not found"));
        assert_eq!(describe(&e, DEFAULT_SERVER), "NOT_FOUND: room `x` not found");
        let e = anyhow::Error::new(tonic::Status::failed_precondition("no"));
        assert_eq!(describe(&e, DEFAULT_SERVER), "FAILED_PRECONDITION: no");
    }

    #[test]
    fn key_comes_from_flag_then_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(ADMIN_KEY_FILE);
        assert_eq!(resolve_key(None, &file).unwrap_err().to_string(), "no API key: pass --key or set HUDDLE_KEY");
        std::fs::write(&file, "from-file\n").unwrap();
        assert_eq!(resolve_key(None, &file).unwrap(), "from-file");
        assert_eq!(resolve_key(Some("given"), &file).unwrap(), "given");
    }

    #[test]
    fn urls_get_a_scheme() {
        assert_eq!(normalize_url("127.0.0.1:1"), "http://127.0.0.1:1");
        assert_eq!(normalize_url("http://h:2"), "http://h:2");
    }

    #[tokio::test]
    async fn unreachable_server_names_the_url() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}");
        let err = connect(&url, "k", Out::new(false)).await.err().expect("nothing listens there");
        assert!(err.to_string().contains(&url), "{err}");
    }
}
