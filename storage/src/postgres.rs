//! The Postgres backend.
//!
//! Transactions run at Postgres's default READ COMMITTED isolation: the
//! optimistic check of [`RoomStore::commit_room_change`] is a single
//! `UPDATE ... WHERE event_seq = $expected`, which a concurrent writer of the
//! same room waits for and then fails, so it needs nothing stronger. Event
//! data is stored as JSONB. The operations themselves are the shared ones of
//! the `sql` module.

use std::str::FromStr;

use async_trait::async_trait;
use huddle_core::{ApiKey, Department, Entity, NewDepartment, NewEntity, Participant, Room, RoomEvent};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{Connection, Postgres};
use tracing::info;

use crate::sql::{Dialect, Sql};
use crate::{
    DepartmentUpdate, EntityStore, EntityUpdate, KnowledgeStore, NotifyStore, Page, PageRequest, Result, RoomChange,
    RoomFilter, RoomStore, StorageError, Store,
};

impl Dialect for Postgres {
    const BEGIN_WRITE: Option<&'static str> = None;
    const SELECT_EVENTS: &'static str = "SELECT room_id, seq, kind, data::text AS data, at_ms \
         FROM room_events WHERE room_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";
    const INSERT_EVENT: &'static str = "INSERT INTO room_events (room_id, seq, kind, data, at_ms) \
         VALUES ($1, $2, $3, CAST($4 AS JSONB), $5)";
    const SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";
}

/// A store in one Postgres database (and schema).
#[derive(Debug, Clone)]
pub struct PostgresStore {
    sql: Sql<Postgres>,
}

impl PostgresStore {
    /// Connects to the database `url` names (`postgres://...` or
    /// `postgresql://...`) and applies pending migrations.
    pub async fn open(url: &str) -> Result<Self> {
        let options = parse_url(url)?;
        // One plain connection first: an unreachable server or a refused
        // login fails here at once, where the pool would keep retrying.
        PgConnection::connect_with(&options).await?.close().await?;
        Self::connect(options).await
    }

    /// Like [`PostgresStore::open`], but keeps every table in `schema`: creates
    /// the schema if it is missing and makes it every connection's
    /// `search_path`. Tests use it to get a database of their own.
    pub async fn open_in_schema(url: &str, schema: &str) -> Result<Self> {
        let options = parse_url(url)?;
        let mut conn = PgConnection::connect_with(&options).await?;
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(schema))).execute(&mut conn).await?;
        conn.close().await?;
        let options = options.options([("search_path", startup_option_value(&quote_ident(schema)))]);
        Self::connect(options).await
    }

    async fn connect(options: PgConnectOptions) -> Result<Self> {
        // A dead server should fail requests within seconds, not hang them
        // for sqlx's default 30 s.
        let pool = PgPoolOptions::new()
            .acquire_timeout(std::time::Duration::from_secs(3))
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        info!(
            host = options.get_host(),
            database = options.get_database().unwrap_or_default(),
            "opened postgres store"
        );
        Ok(Self { sql: Sql::new(pool.clone(), pool, false) })
    }
}

fn parse_url(url: &str) -> Result<PgConnectOptions> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(StorageError::UnsupportedUrl(huddle_core::redact::url(url)));
    }
    Ok(PgConnectOptions::from_str(url)?)
}

/// `name` as a quoted SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Escapes a value for the `options` startup parameter, which splits on
/// whitespace and takes a backslash as an escape.
fn startup_option_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        if c == '\\' || c.is_whitespace() {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

crate::sql::forward_store_traits!(PostgresStore, "postgres");
