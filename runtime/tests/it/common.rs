//! Fixtures: runtimes on fresh SQLite files or fresh Postgres schemas, and a
//! polling helper.

use std::sync::Arc;

use huddle_core::{NewEntity, NewParticipant, NewRoom, ParticipantKind};
use huddle_runtime::{Api, RoomDetails, RoomsConfig, Runtime};

pub struct Fixture {
    pub rt: Runtime,
    _dir: Option<tempfile::TempDir>,
}

fn rooms_config() -> RoomsConfig {
    RoomsConfig { restart_backoff_base_ms: 20, restart_backoff_max_ms: 200, ..RoomsConfig::default() }
}

pub async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("it.db").display());
    let rt = Runtime::builder().database_url(url).rooms(rooms_config()).build().await.unwrap();
    Fixture { rt, _dir: Some(dir) }
}

pub fn postgres_url() -> String {
    std::env::var("HUDDLE_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub async fn postgres() -> Fixture {
    let schema = format!("rt_it_{}", uuid_like());
    let store = huddle_storage::postgres::PostgresStore::open_in_schema(&postgres_url(), &schema)
        .await
        .unwrap_or_else(|e| panic!("postgres at {} is required for this test: {e}", postgres_url()));
    let rt = Runtime::builder().store(Arc::new(store)).rooms(rooms_config()).build().await.unwrap();
    Fixture { rt, _dir: None }
}

fn uuid_like() -> String {
    huddle_core::new_id().replace('-', "")[16..].to_string()
}

pub use huddle_testsupport::eventually;

pub async fn entity(api: &Api, name: &str, max: Option<u32>) -> huddle_core::Entity {
    api.create_entity(NewEntity { name: name.into(), max_participants: max, ..Default::default() }).await.unwrap()
}

pub async fn room(api: &Api, entity_id: &str) -> RoomDetails {
    api.create_room(NewRoom { entity_id: entity_id.into(), title: "Weekly sync".into(), ..Default::default() })
        .await
        .unwrap()
}

pub fn human(name: &str) -> NewParticipant {
    NewParticipant {
        kind: ParticipantKind::Human,
        display_name: name.into(),
        email: Some(format!("{}@example.com", name.to_lowercase())),
        phone: None,
        identity: name.to_lowercase(),
    }
}

/// A `huddle` server (gRPC and HTTP on loopback) on a fresh SQLite file.
pub struct Served {
    pub rt: Runtime,
    pub http: std::net::SocketAddr,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

pub const ADMIN_KEY: &str = "test-admin-key-0123456789abcdef";

/// Serves `config` (listeners, admin key and database are set here).
pub async fn serve(mut config: huddle_runtime::Config) -> Served {
    let dir = tempfile::tempdir().unwrap();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.http = "127.0.0.1:0".parse().unwrap();
    config.server.admin_key = Some(ADMIN_KEY.into());
    config.database.url = format!("sqlite://{}", dir.path().join("served.db").display());
    let server = huddle_runtime::server::Server::bind(config).await.unwrap();
    let http = server.http_addr();
    let rt = server.runtime().clone();
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { server.run(stop).await.unwrap() }
    });
    Served { rt, http, stop, task, _dir: dir }
}

impl Served {
    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(10), self.task).await.unwrap().unwrap();
    }
}
