//! The SQLite backend: one database file (or `sqlite::memory:`), in WAL mode
//! with `synchronous=FULL`, so that every acknowledged write is on disk.
//!
//! Write transactions start with `BEGIN IMMEDIATE`: they take SQLite's write
//! lock up front (waiting up to the busy timeout for it) instead of failing
//! with `SQLITE_BUSY` when a read inside them would have to become a write.
//! The operations themselves are the shared ones of the `sql` module.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use huddle_core::{ApiKey, Department, Entity, NewDepartment, NewEntity, Participant, Room, RoomEvent};
use sqlx::Sqlite;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tracing::info;

use crate::sql::{Dialect, Sql};
use crate::{
    DepartmentUpdate, EntityStore, EntityUpdate, Page, PageRequest, Result, RoomChange, RoomFilter, RoomStore,
    StorageError, Store,
};

/// How long a statement waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

impl Dialect for Sqlite {
    const BEGIN_WRITE: Option<&'static str> = Some("BEGIN IMMEDIATE");
    const SELECT_EVENTS: &'static str = "SELECT room_id, seq, kind, data, at_ms \
         FROM room_events WHERE room_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";
    const INSERT_EVENT: &'static str = "INSERT INTO room_events (room_id, seq, kind, data, at_ms) \
         VALUES ($1, $2, $3, $4, $5)";
}

/// A store in one SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    sql: Sql<Sqlite>,
}

impl SqliteStore {
    /// Opens the database `url` names (`sqlite://PATH`, `sqlite:PATH` or
    /// `sqlite::memory:`), creating the file if it is missing, and applies
    /// pending migrations.
    pub async fn open(url: &str) -> Result<Self> {
        if !url.starts_with("sqlite:") {
            return Err(StorageError::UnsupportedUrl(url.to_string()));
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let mut pool_options = SqlitePoolOptions::new();
        if is_in_memory(url) {
            // An in-memory database lives as long as a connection to it: keep
            // exactly one, forever, so every query sees the same database.
            pool_options = pool_options.max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None);
        }
        let pool = pool_options.connect_with(options).await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        info!(url, "opened sqlite store");
        Ok(Self { sql: Sql::new(pool) })
    }
}

fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

#[async_trait]
impl EntityStore for SqliteStore {
    async fn create_entity(&self, new: NewEntity) -> Result<Entity> {
        self.sql.create_entity(new).await
    }
    async fn get_entity(&self, id: &str) -> Result<Entity> {
        self.sql.get_entity(id).await
    }
    async fn list_entities(&self, page: PageRequest) -> Result<Page<Entity>> {
        self.sql.list_entities(page).await
    }
    async fn update_entity(&self, id: &str, update: EntityUpdate) -> Result<Entity> {
        self.sql.update_entity(id, update).await
    }
    async fn create_department(&self, new: NewDepartment) -> Result<Department> {
        self.sql.create_department(new).await
    }
    async fn get_department(&self, id: &str) -> Result<Department> {
        self.sql.get_department(id).await
    }
    async fn list_departments(&self, entity_id: &str) -> Result<Vec<Department>> {
        self.sql.list_departments(entity_id).await
    }
    async fn update_department(&self, id: &str, update: DepartmentUpdate) -> Result<Department> {
        self.sql.update_department(id, update).await
    }
    async fn create_api_key(&self, key: ApiKey) -> Result<ApiKey> {
        self.sql.create_api_key(key).await
    }
    async fn find_api_key(&self, key_hash: &str) -> Result<ApiKey> {
        self.sql.find_api_key(key_hash).await
    }
}

#[async_trait]
impl RoomStore for SqliteStore {
    async fn create_room(&self, room: Room, events: Vec<RoomEvent>) -> Result<Room> {
        self.sql.create_room(room, events).await
    }
    async fn get_room(&self, id: &str) -> Result<Room> {
        self.sql.get_room(id).await
    }
    async fn list_rooms(&self, filter: RoomFilter, page: PageRequest) -> Result<Page<Room>> {
        self.sql.list_rooms(filter, page).await
    }
    async fn commit_room_change(&self, change: RoomChange) -> Result<()> {
        self.sql.commit_room_change(change).await
    }
    async fn list_participants(&self, room_id: &str) -> Result<Vec<Participant>> {
        self.sql.list_participants(room_id).await
    }
    async fn list_events(&self, room_id: &str, after_seq: u64, limit: u32) -> Result<Vec<RoomEvent>> {
        self.sql.list_events(room_id, after_seq, limit).await
    }
    async fn list_open_room_ids(&self) -> Result<Vec<String>> {
        self.sql.list_open_room_ids().await
    }
}

impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }
}
