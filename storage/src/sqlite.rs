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
    DepartmentUpdate, EntityStore, EntityUpdate, KnowledgeStore, NotifyStore, Page, PageRequest, Result, RoomChange,
    RoomFilter, RoomStore, StorageError, Store,
};

/// How long a statement waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

impl Dialect for Sqlite {
    const BEGIN_WRITE: Option<&'static str> = Some("BEGIN IMMEDIATE");
    const SELECT_EVENTS: &'static str = "SELECT room_id, seq, kind, data, at_ms \
         FROM room_events WHERE room_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";
    const INSERT_EVENT: &'static str = "INSERT INTO room_events (room_id, seq, kind, data, at_ms) \
         VALUES ($1, $2, $3, $4, $5)";
    const SKIP_LOCKED: &'static str = "";
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
            return Err(StorageError::UnsupportedUrl(huddle_core::redact::url(url)));
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        // No ping before each acquire: a connection to a local file does not go
        // stale, and the ping is a round trip to the connection's thread that every
        // query (and every writer waiting behind it) would pay.
        let mut pool_options = SqlitePoolOptions::new().test_before_acquire(false);
        if is_in_memory(url) {
            // An in-memory database lives as long as a connection to it: keep
            // exactly one, forever, so every query sees the same database.
            pool_options = pool_options.max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None);
        }
        let pool = pool_options.connect_with(options.clone()).await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        // Write transactions queue for one connection of their own (see `Sql`).
        let writer = if is_in_memory(url) {
            pool.clone()
        } else {
            SqlitePoolOptions::new().test_before_acquire(false).max_connections(1).connect_with(options).await?
        };
        info!(url = %huddle_core::redact::url(url), "opened sqlite store");
        Ok(Self { sql: Sql::new(pool, writer, true) })
    }
}

fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

crate::sql::forward_store_traits!(SqliteStore, "sqlite");
