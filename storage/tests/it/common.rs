//! Fixtures: a fresh database per test on each backend, and builders for the
//! domain values the suite stores.

use std::future::Future;
use std::sync::Arc;

use huddle_core::{Entity, NewEntity, Participant, ParticipantKind, Room, RoomEvent, RoomEventData, RoomStatus};
use huddle_storage::postgres::PostgresStore;
use huddle_storage::sqlite::SqliteStore;
use huddle_storage::{DynStore, RoomChange, Store};
use serde_json::json;
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;
use tempfile::TempDir;

/// The Postgres server the tests use unless `HUDDLE_TEST_POSTGRES_URL` names another.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn postgres_url() -> String {
    std::env::var("HUDDLE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_string())
}

/// A fresh random schema name.
pub fn random_schema() -> String {
    format!("huddle_test_{}", uuid::Uuid::now_v7().simple())
}

/// Where a test database lives.
enum Location {
    /// A fresh file in a temporary directory, removed with it.
    Sqlite { url: String, _dir: TempDir },
    /// A fresh schema on the test server, dropped by [`TestDb::cleanup`].
    Postgres { url: String, schema: String },
}

/// A store on a database of its own, and raw access to that database.
pub struct TestDb {
    pub store: DynStore,
    pub backend: Backend,
    location: Location,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("create a temporary directory");
                let url = format!("sqlite://{}", dir.path().join("huddle.db").display());
                let store = SqliteStore::open(&url).await.expect("open a fresh sqlite store");
                TestDb { store: Arc::new(store), backend, location: Location::Sqlite { url, _dir: dir } }
            }
            Backend::Postgres => {
                let url = postgres_url();
                let schema = random_schema();
                let store = open_postgres(&url, &schema).await;
                TestDb { store: Arc::new(store), backend, location: Location::Postgres { url, schema } }
            }
        }
    }

    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// A second, independent store on the same database.
    pub async fn reopen(&self) -> DynStore {
        match &self.location {
            Location::Sqlite { url, .. } => Arc::new(SqliteStore::open(url).await.expect("reopen the sqlite store")),
            Location::Postgres { url, schema } => Arc::new(open_postgres(url, schema).await),
        }
    }

    /// Runs one raw SQL statement with one text argument (`$1`) against the
    /// test database, going around the store; returns the rows it affected.
    pub async fn execute_raw(&self, sql: &str, arg: &str) -> u64 {
        match &self.location {
            Location::Sqlite { url, .. } => {
                let mut conn = SqliteConnection::connect(url).await.expect("connect to sqlite");
                let done = sqlx::query(sql).bind(arg).execute(&mut conn).await.expect("raw sqlite sql");
                done.rows_affected()
            }
            Location::Postgres { url, schema } => {
                let mut conn = PgConnection::connect(url).await.expect("connect to postgres");
                sqlx::query(&format!("SET search_path TO \"{schema}\""))
                    .execute(&mut conn)
                    .await
                    .expect("set search_path");
                let done = sqlx::query(sql).bind(arg).execute(&mut conn).await.expect("raw postgres sql");
                done.rows_affected()
            }
        }
    }

    /// Drops the Postgres schema (best effort); the SQLite file goes with its
    /// temporary directory.
    pub async fn cleanup(&self) {
        if let Location::Postgres { url, schema } = &self.location {
            drop_schema(url, schema).await;
        }
    }
}

pub async fn open_postgres(url: &str, schema: &str) -> PostgresStore {
    PostgresStore::open_in_schema(url, schema).await.unwrap_or_else(|e| {
        panic!(
            "cannot open the test postgres at {url} (schema {schema}): {e}\n\
             the postgres conformance tests need a reachable server: start one or point \
             HUDDLE_TEST_POSTGRES_URL at one"
        )
    })
}

/// Drops a test schema and everything in it; failures are only reported.
pub async fn drop_schema(url: &str, schema: &str) {
    let result = async {
        let mut conn = PgConnection::connect(url).await?;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).execute(&mut conn).await?;
        conn.close().await
    }
    .await;
    if let Err(e) = result {
        eprintln!("could not drop test schema {schema}: {e}");
    }
}

/// Runs one test body against a fresh database of `backend`, then cleans the
/// database up whether the body passed or panicked.
pub async fn run<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(Arc<TestDb>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let db = Arc::new(TestDb::new(backend).await);
    let outcome = tokio::spawn(test(db.clone())).await;
    db.cleanup().await;
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("test task failed: {e}"),
        }
    }
}

/// Asserts that a result is the error a pattern describes.
#[macro_export]
macro_rules! assert_err {
    ($result:expr, $pattern:pat $(if $guard:expr)? $(,)?) => {
        match $result {
            Err($pattern) $(if $guard)? => {}
            other => panic!(
                "expected Err({}), got {:?}",
                stringify!($pattern $(if $guard)?),
                other
            ),
        }
    };
}

pub async fn entity(store: &dyn Store, name: &str) -> Entity {
    store.create_entity(NewEntity { name: name.to_string(), ..Default::default() }).await.expect("create entity")
}

/// A scheduled room of `entity_id` whose log holds only its `created` event.
pub fn room(entity_id: &str, id: &str, created_at_ms: i64) -> Room {
    Room {
        id: id.to_string(),
        entity_id: entity_id.to_string(),
        department_id: None,
        title: format!("room {id}"),
        custom_instructions: "keep it short".to_string(),
        status: RoomStatus::Scheduled,
        max_participants: 0,
        scheduled_for_ms: Some(created_at_ms + 60_000),
        created_at_ms,
        started_at_ms: None,
        ended_at_ms: None,
        cancel_reason: None,
        event_seq: 1,
        livekit_room: None,
    }
}

/// An event of `kind`: a known kind gets a payload that fits it, any other
/// kind keeps arbitrary JSON as [`RoomEventData::Unknown`].
pub fn event(room_id: &str, seq: u64, kind: &str, at_ms: i64) -> RoomEvent {
    let data = json!({
        "from": "ACTIVE", "to": "COMPLETED", "kind": "HUMAN", "participant_id": format!("p{seq}"), "text": kind,
        "seq": seq, "nested": { "list": [1, 2.5, "three", null] },
    });
    let data = RoomEventData::from_parts(kind, data).expect("a payload that fits every kind");
    RoomEvent { room_id: room_id.to_string(), seq, data, at_ms }
}

/// Stores `room` with its `created` event (seq 1).
pub async fn create_room(store: &dyn Store, room: Room) -> Room {
    let created = event(&room.id, 1, "created", room.created_at_ms);
    store.create_room(room, vec![created]).await.expect("create room")
}

pub fn participant(room_id: &str, id: &str, joined_at_ms: i64) -> Participant {
    Participant {
        id: id.to_string(),
        room_id: room_id.to_string(),
        kind: ParticipantKind::Human,
        display_name: format!("person {id}"),
        email: Some(format!("{id}@example.com")),
        phone: None,
        identity: format!("user-{id}"),
        joined_at_ms,
        left_at_ms: None,
    }
}

/// The change that takes `room` to `update(room)` and appends one event per
/// kind after the room's current seq.
pub fn change(
    room: &Room,
    update: impl FnOnce(&mut Room),
    participants: Vec<Participant>,
    kinds: &[&str],
) -> RoomChange {
    let mut next = room.clone();
    update(&mut next);
    let events: Vec<RoomEvent> = kinds
        .iter()
        .zip(room.event_seq + 1..)
        .map(|(kind, seq)| event(&room.id, seq, kind, room.created_at_ms + seq as i64))
        .collect();
    next.event_seq = room.event_seq + events.len() as u64;
    RoomChange { room: next, expected_seq: room.event_seq, participants, events, segments: vec![] }
}
