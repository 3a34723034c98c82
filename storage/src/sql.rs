//! The one implementation of the storage traits' semantics, generic over the
//! SQL database: both backends run exactly this code and SQL, and differ only
//! in how they connect and in the few statements their [`Dialect`] supplies.
//!
//! Statements use `$N` placeholders, which SQLite accepts too.

use huddle_core::time::Millis;
use huddle_core::{
    ApiKey, Department, Entity, NewDepartment, NewEntity, Participant, Recording, Room, RoomEvent, RoomStatus,
    TranscriptSegment, now_ms,
};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Transaction, Type};
use tracing::debug;

use crate::change::{check_change, check_new_room};
use crate::page::{self, Cursor};
use crate::rows::{
    self, ApiKeyRow, DepartmentRow, EntityRow, EventRow, ParticipantRow, RoomRow, SegmentRow, convert,
    is_foreign_key_violation, is_unique_violation, not_found, seq_to_db,
};
use crate::{DepartmentUpdate, EntityUpdate, Page, PageRequest, Result, RoomChange, RoomFilter, StorageError};

/// What differs between the SQL of the backends.
pub(crate) trait Dialect: Database {
    /// The statement that opens a write transaction; `None` for the driver's
    /// plain `BEGIN`.
    const BEGIN_WRITE: Option<&'static str>;
    /// Selects `room_id, seq, kind, data, at_ms` (with `data` as JSON text) of
    /// room `$1`'s events with `seq > $2`, ascending, at most `$3`.
    const SELECT_EVENTS: &'static str;
    /// Inserts one event from `room_id, seq, kind, data (JSON text), at_ms`
    /// bound as `$1..$5`.
    const INSERT_EVENT: &'static str;
    /// Appended to the subquery that picks notifications to claim: Postgres's
    /// `FOR UPDATE SKIP LOCKED` lets several nodes claim side by side; SQLite
    /// serialises writers anyway.
    const SKIP_LOCKED: &'static str;
}

/// Connection pools and the storage operations over them.
#[derive(Debug)]
pub(crate) struct Sql<DB: Database> {
    pub(crate) pool: Pool<DB>,
    /// Where write transactions run. On SQLite a single connection: writers then
    /// queue for it in order instead of spinning in SQLite's busy handler (whose
    /// sleeps of up to 100 ms let a waiting writer starve under load). On Postgres
    /// the same pool as reads.
    pub(crate) writer: Pool<DB>,
    /// Which writes wait for which (see [`WriteGate`]).
    pub(crate) gate: std::sync::Arc<WriteGate>,
}

impl<DB: Database> Clone for Sql<DB> {
    fn clone(&self) -> Self {
        Self { pool: self.pool.clone(), writer: self.writer.clone(), gate: self.gate.clone() }
    }
}

/// On a store with one writer (SQLite), writes somebody is waiting on (a send, a room
/// change, a transcript's knowledge items) go before housekeeping that can wait (the
/// outbox's claims and delivery records): such a write holds a [`Foreground`] mark
/// while it waits for the writer and runs (a caller that queues writes of its own, as
/// the send group commit does, holds one from the moment a write is queued), and
/// housekeeping asks
/// [`WriteGate::foreground_done`] before it starts. With several writers (Postgres)
/// nothing waits.
#[derive(Debug, Default)]
pub(crate) struct WriteGate {
    single_writer: bool,
    writing: std::sync::atomic::AtomicUsize,
    /// Signalled when `writing` drops to 0.
    idle: tokio::sync::Notify,
}

/// A foreground write waiting or running, until dropped (see [`WriteGate`]).
#[must_use = "the write counts as foreground only while this is held"]
pub struct ForegroundWrite(Option<std::sync::Arc<WriteGate>>);

impl Drop for ForegroundWrite {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering;
        if let Some(g) = &self.0
            && g.writing.fetch_sub(1, Ordering::AcqRel) == 1
        {
            g.idle.notify_waiters();
        }
    }
}

impl WriteGate {
    pub(crate) fn new(single_writer: bool) -> Self {
        WriteGate { single_writer, ..Default::default() }
    }

    pub(crate) fn foreground(self: &std::sync::Arc<Self>) -> ForegroundWrite {
        if !self.single_writer {
            return ForegroundWrite(None);
        }
        self.writing.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        ForegroundWrite(Some(self.clone()))
    }

    /// Waits until no foreground write waits or runs, or `max` has passed: false then.
    pub(crate) async fn foreground_done(&self, max: std::time::Duration) -> bool {
        use std::sync::atomic::Ordering;
        if !self.single_writer || max.is_zero() {
            return true;
        }
        let deadline = tokio::time::Instant::now() + max;
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.writing.load(Ordering::Acquire) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return false;
            }
        }
    }
}

impl<DB> Sql<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB> + ColumnIndex<DB::Row>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> f64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Vec<u8>: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<bool>: Encode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    /// `single_writer`: writes queue for one connection (SQLite); foreground writes
    /// then go first (see [`WriteGate`]).
    pub fn new(pool: Pool<DB>, writer: Pool<DB>, single_writer: bool) -> Self {
        Self { pool, writer, gate: std::sync::Arc::new(WriteGate::new(single_writer)) }
    }

    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, DB>> {
        Ok(match DB::BEGIN_WRITE {
            Some(statement) => self.writer.begin_with(statement).await?,
            None => self.writer.begin().await?,
        })
    }

    pub async fn create_entity(&self, new: NewEntity) -> Result<Entity> {
        let entity = rows::new_entity(new);
        sqlx::query(
            "INSERT INTO entities (id, name, kind, default_instructions, max_participants, \
             recording_retention_days, active, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&entity.id)
        .bind(&entity.name)
        .bind(&entity.kind)
        .bind(&entity.default_instructions)
        .bind(i64::from(entity.max_participants))
        .bind(i64::from(entity.recording_retention_days))
        .bind(entity.active)
        .bind(entity.created_at_ms)
        .bind(entity.updated_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(entity)
    }

    pub async fn get_entity(&self, id: &str) -> Result<Entity> {
        let row: Option<EntityRow> = sqlx::query_as(
            "SELECT id, name, kind, default_instructions, max_participants, \
             recording_retention_days, active, created_at_ms, updated_at_ms \
             FROM entities WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or_else(|| not_found("entity", id))?.try_into()
    }

    pub async fn list_entities(&self, page: PageRequest) -> Result<Page<Entity>> {
        let size = page.effective_size();
        let limit = page::fetch_limit(size);
        let rows: Vec<EntityRow> = match Cursor::from_request(&page)? {
            None => {
                sqlx::query_as(
                    "SELECT id, name, kind, default_instructions, max_participants, \
                     recording_retention_days, active, created_at_ms, updated_at_ms \
                     FROM entities ORDER BY created_at_ms, id LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            Some(after) => {
                sqlx::query_as(
                    "SELECT id, name, kind, default_instructions, max_participants, \
                     recording_retention_days, active, created_at_ms, updated_at_ms \
                     FROM entities WHERE (created_at_ms, id) > ($1, $2) \
                     ORDER BY created_at_ms, id LIMIT $3",
                )
                .bind(after.created_at_ms)
                .bind(after.id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        Ok(page::assemble(convert(rows)?, size, rows::entity_cursor))
    }

    pub async fn update_entity(&self, id: &str, update: EntityUpdate) -> Result<Entity> {
        let row: Option<EntityRow> = sqlx::query_as(
            "UPDATE entities SET \
               name = COALESCE($2, name), \
               kind = COALESCE($3, kind), \
               default_instructions = COALESCE($4, default_instructions), \
               max_participants = COALESCE($5, max_participants), \
               recording_retention_days = COALESCE($6, recording_retention_days), \
               active = COALESCE($7, active), \
               updated_at_ms = $8 \
             WHERE id = $1 \
             RETURNING id, name, kind, default_instructions, max_participants, \
               recording_retention_days, active, created_at_ms, updated_at_ms",
        )
        .bind(id)
        .bind(update.name)
        .bind(update.kind)
        .bind(update.default_instructions)
        .bind(update.max_participants.map(i64::from))
        .bind(update.recording_retention_days.map(i64::from))
        .bind(update.active)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or_else(|| not_found("entity", id))?.try_into()
    }

    pub async fn create_department(&self, new: NewDepartment) -> Result<Department> {
        let department = rows::new_department(new);
        let inserted = sqlx::query(
            "INSERT INTO departments (id, entity_id, name, instructions, created_at_ms, \
             updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&department.id)
        .bind(&department.entity_id)
        .bind(&department.name)
        .bind(&department.instructions)
        .bind(department.created_at_ms)
        .bind(department.updated_at_ms)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(department),
            Err(e) if is_foreign_key_violation(&e) => Err(not_found("entity", &department.entity_id)),
            Err(e) if is_unique_violation(&e) => {
                Err(StorageError::AlreadyExists { what: "department", value: department.name })
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get_department(&self, id: &str) -> Result<Department> {
        let row: Option<DepartmentRow> = sqlx::query_as(
            "SELECT id, entity_id, name, instructions, created_at_ms, updated_at_ms \
             FROM departments WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.ok_or_else(|| not_found("department", id))?.into())
    }

    pub async fn list_departments(&self, entity_id: &str) -> Result<Vec<Department>> {
        let mut conn = self.pool.acquire().await?;
        let rows: Vec<DepartmentRow> = sqlx::query_as(
            "SELECT id, entity_id, name, instructions, created_at_ms, updated_at_ms \
             FROM departments WHERE entity_id = $1 ORDER BY name, id",
        )
        .bind(entity_id)
        .fetch_all(&mut *conn)
        .await?;
        if rows.is_empty() && !Self::entity_exists(&mut conn, entity_id).await? {
            return Err(not_found("entity", entity_id));
        }
        Ok(rows.into_iter().map(Department::from).collect())
    }

    pub async fn update_department(&self, id: &str, update: DepartmentUpdate) -> Result<Department> {
        let updated = sqlx::query_as::<_, DepartmentRow>(
            "UPDATE departments SET \
               name = COALESCE($2, name), \
               instructions = COALESCE($3, instructions), \
               updated_at_ms = $4 \
             WHERE id = $1 \
             RETURNING id, entity_id, name, instructions, created_at_ms, updated_at_ms",
        )
        .bind(id)
        .bind(update.name.clone())
        .bind(update.instructions)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await;
        match updated {
            Ok(row) => Ok(row.ok_or_else(|| not_found("department", id))?.into()),
            Err(e) if is_unique_violation(&e) => {
                Err(StorageError::AlreadyExists { what: "department", value: update.name.unwrap_or_default() })
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn create_api_key(&self, key: ApiKey) -> Result<ApiKey> {
        let inserted = sqlx::query(
            "INSERT INTO api_keys (id, entity_id, key_hash, prefix, created_at_ms, last_used_at_ms, revoked_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&key.id)
        .bind(&key.entity_id)
        .bind(&key.key_hash)
        .bind(&key.prefix)
        .bind(key.created_at_ms)
        .bind(key.last_used_at_ms)
        .bind(key.revoked_at_ms)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(key),
            Err(e) if is_foreign_key_violation(&e) => Err(not_found("entity", &key.entity_id)),
            Err(e) if is_unique_violation(&e) => {
                Err(StorageError::AlreadyExists { what: "api key", value: key.prefix })
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn find_api_key(&self, key_hash: &str) -> Result<ApiKey> {
        let row: Option<ApiKeyRow> = sqlx::query_as(
            "SELECT k.id, k.entity_id, k.key_hash, k.prefix, k.created_at_ms, k.last_used_at_ms, k.revoked_at_ms \
             FROM api_keys k JOIN entities e ON e.id = k.entity_id \
             WHERE k.key_hash = $1 AND k.revoked_at_ms IS NULL AND e.active",
        )
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?;
        // The hash stays out of the error: it is as good as the key for a lookup.
        Ok(row.ok_or_else(|| not_found("api key", "(by hash)"))?.into())
    }

    pub async fn get_api_key(&self, id: &str) -> Result<ApiKey> {
        let row: Option<ApiKeyRow> = sqlx::query_as(&format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.ok_or_else(|| not_found("api key", id))?.into())
    }

    pub async fn list_api_keys(&self, entity_id: &str) -> Result<Vec<ApiKey>> {
        let mut conn = self.pool.acquire().await?;
        let rows: Vec<ApiKeyRow> = sqlx::query_as(&format!(
            "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE entity_id = $1 ORDER BY created_at_ms, id"
        ))
        .bind(entity_id)
        .fetch_all(&mut *conn)
        .await?;
        if rows.is_empty() && !Self::entity_exists(&mut conn, entity_id).await? {
            return Err(not_found("entity", entity_id));
        }
        Ok(rows.into_iter().map(Into::into).collect())
    }

    pub async fn revoke_api_key(&self, id: &str, at_ms: Millis) -> Result<ApiKey> {
        let row: Option<ApiKeyRow> = sqlx::query_as(&format!(
            "UPDATE api_keys SET revoked_at_ms = COALESCE(revoked_at_ms, $2) WHERE id = $1 \
             RETURNING {API_KEY_COLUMNS}"
        ))
        .bind(id)
        .bind(at_ms)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.ok_or_else(|| not_found("api key", id))?.into())
    }

    pub async fn touch_api_key(&self, id: &str, at_ms: Millis) -> Result<()> {
        sqlx::query(
            "UPDATE api_keys SET last_used_at_ms = $2 \
             WHERE id = $1 AND (last_used_at_ms IS NULL OR last_used_at_ms <= $3)",
        )
        .bind(id)
        .bind(at_ms)
        .bind(at_ms - crate::API_KEY_TOUCH_INTERVAL_MS)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn create_room(&self, room: Room, events: Vec<RoomEvent>) -> Result<Room> {
        check_new_room(&room, &events)?;
        let _fg = self.gate.foreground();
        let mut tx = self.begin_write().await?;
        if !Self::entity_exists(&mut tx, &room.entity_id).await? {
            return Err(not_found("entity", &room.entity_id));
        }
        if let Some(department_id) = &room.department_id {
            let owner: Option<String> = sqlx::query_scalar("SELECT entity_id FROM departments WHERE id = $1")
                .bind(department_id)
                .fetch_optional(&mut *tx)
                .await?;
            if owner.as_deref() != Some(room.entity_id.as_str()) {
                return Err(not_found("department", department_id));
            }
        }
        if let Some(name) = &room.livekit_room {
            Self::claim_livekit_name(&mut tx, name, &room.entity_id, room.created_at_ms).await?;
        }
        let inserted = sqlx::query(
            "INSERT INTO rooms (id, entity_id, department_id, title, custom_instructions, status, \
             max_participants, scheduled_for_ms, created_at_ms, started_at_ms, ended_at_ms, \
             cancel_reason, event_seq, livekit_room) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(&room.id)
        .bind(&room.entity_id)
        .bind(&room.department_id)
        .bind(&room.title)
        .bind(&room.custom_instructions)
        .bind(room.status.as_str())
        .bind(i64::from(room.max_participants))
        .bind(room.scheduled_for_ms)
        .bind(room.created_at_ms)
        .bind(room.started_at_ms)
        .bind(room.ended_at_ms)
        .bind(&room.cancel_reason)
        .bind(seq_to_db(room.event_seq)?)
        .bind(&room.livekit_room)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                // The transaction is aborted (Postgres): ask outside it.
                drop(tx);
                if let Some(name) = &room.livekit_room
                    && self.open_room_for_livekit(name).await?.is_some()
                {
                    return Err(StorageError::AlreadyExists {
                        what: "open room for LiveKit room",
                        value: name.clone(),
                    });
                }
                return Err(StorageError::AlreadyExists { what: "room", value: room.id });
            }
            Err(e) => return Err(e.into()),
        }
        Self::insert_events(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(room)
    }

    pub async fn get_room(&self, id: &str) -> Result<Room> {
        let row: Option<RoomRow> = sqlx::query_as(&format!("SELECT {ROOM_COLUMNS} FROM rooms WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.ok_or_else(|| not_found("room", id))?.try_into()
    }

    pub async fn list_rooms(&self, filter: RoomFilter, page: PageRequest) -> Result<Page<Room>> {
        let size = page.effective_size();
        let cursor = Cursor::from_request(&page)?;
        let (sql, args) = rooms_query(filter, cursor, size);
        let mut query = sqlx::query_as(&sql);
        for arg in args {
            query = match arg {
                Arg::Text(text) => query.bind(text),
                Arg::Int(int) => query.bind(int),
            };
        }
        let rows: Vec<RoomRow> = query.fetch_all(&self.pool).await?;
        Ok(page::assemble(convert(rows)?, size, rows::room_cursor))
    }

    pub async fn commit_room_change(&self, change: RoomChange) -> Result<()> {
        check_change(&change)?;
        let room = &change.room;
        let _fg = self.gate.foreground();
        let mut tx = self.begin_write().await?;
        let updated: Option<String> = sqlx::query_scalar(
            "UPDATE rooms SET \
               department_id = $2, title = $3, custom_instructions = $4, status = $5, \
               max_participants = $6, scheduled_for_ms = $7, started_at_ms = $8, \
               ended_at_ms = $9, cancel_reason = $10, event_seq = $11 \
             WHERE id = $1 AND event_seq = $12 \
             RETURNING id",
        )
        .bind(&room.id)
        .bind(&room.department_id)
        .bind(&room.title)
        .bind(&room.custom_instructions)
        .bind(room.status.as_str())
        .bind(i64::from(room.max_participants))
        .bind(room.scheduled_for_ms)
        .bind(room.started_at_ms)
        .bind(room.ended_at_ms)
        .bind(&room.cancel_reason)
        .bind(seq_to_db(room.event_seq)?)
        .bind(seq_to_db(change.expected_seq)?)
        .fetch_optional(&mut *tx)
        .await?;
        if updated.is_none() {
            let found: Option<i64> = sqlx::query_scalar("SELECT event_seq FROM rooms WHERE id = $1")
                .bind(&room.id)
                .fetch_optional(&mut *tx)
                .await?;
            let found = found.ok_or_else(|| not_found("room", &room.id))?;
            let found = rows::to_u64(found, "rooms.event_seq")?;
            debug!(room_id = %room.id, expected = change.expected_seq, found, "room change conflict");
            return Err(StorageError::Conflict { room_id: room.id.clone(), expected: change.expected_seq, found });
        }
        for participant in &change.participants {
            Self::upsert_participant(&mut tx, participant).await?;
        }
        Self::insert_events(&mut tx, &change.events).await?;
        for segment in &change.segments {
            Self::insert_segment(&mut tx, segment).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn list_transcript(&self, room_id: &str, page: PageRequest) -> Result<Page<TranscriptSegment>> {
        let size = page.effective_size();
        let after = match Cursor::from_request(&page)? {
            Some(c) if c.id == room_id && c.created_at_ms >= 0 => c.created_at_ms,
            Some(_) => return Err(StorageError::InvalidPageToken),
            None => 0,
        };
        let mut conn = self.pool.acquire().await?;
        let rows: Vec<SegmentRow> = sqlx::query_as(
            "SELECT room_id, seq, participant_id, start_ms, end_ms, text, confidence, no_speech_prob, language, \
             at_ms FROM transcript_segments WHERE room_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(room_id)
        .bind(after)
        .bind(page::fetch_limit(size))
        .fetch_all(&mut *conn)
        .await?;
        if rows.is_empty() && !Self::room_exists(&mut conn, room_id).await? {
            return Err(not_found("room", room_id));
        }
        Ok(page::assemble(convert(rows)?, size, rows::segment_cursor))
    }

    pub async fn list_participants(&self, room_id: &str) -> Result<Vec<Participant>> {
        let mut conn = self.pool.acquire().await?;
        let rows: Vec<ParticipantRow> = sqlx::query_as(
            "SELECT id, room_id, kind, display_name, email, phone, identity, joined_at_ms, \
             left_at_ms \
             FROM participants WHERE room_id = $1 ORDER BY joined_at_ms, id",
        )
        .bind(room_id)
        .fetch_all(&mut *conn)
        .await?;
        if rows.is_empty() && !Self::room_exists(&mut conn, room_id).await? {
            return Err(not_found("room", room_id));
        }
        convert(rows)
    }

    pub async fn list_events(&self, room_id: &str, after_seq: u64, limit: u32) -> Result<Vec<RoomEvent>> {
        let mut conn = self.pool.acquire().await?;
        let rows: Vec<EventRow> = sqlx::query_as(DB::SELECT_EVENTS)
            .bind(room_id)
            .bind(rows::after_seq_to_db(after_seq))
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?;
        if rows.is_empty() && !Self::room_exists(&mut conn, room_id).await? {
            return Err(not_found("room", room_id));
        }
        convert(rows)
    }

    async fn open_room_for_livekit(&self, name: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT id FROM rooms WHERE livekit_room = $1 AND status IN ($2, $3)")
            .bind(name)
            .bind(RoomStatus::Scheduled.as_str())
            .bind(RoomStatus::Active.as_str())
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Claims LiveKit room name `name` for `entity_id` unless it is claimed
    /// already: another entity's claim is [`StorageError::Claimed`].
    async fn claim_livekit_name(
        conn: &mut DB::Connection,
        name: &str,
        entity_id: &str,
        at_ms: huddle_core::time::Millis,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO livekit_rooms (name, entity_id, created_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(entity_id)
        .bind(at_ms)
        .execute(&mut *conn)
        .await?;
        let owner: String = sqlx::query_scalar("SELECT entity_id FROM livekit_rooms WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *conn)
            .await?;
        if owner != entity_id {
            debug!(livekit_room = %name, entity_id = %entity_id, "LiveKit room name owned by another entity");
            return Err(StorageError::Claimed { what: "LiveKit room", value: name.to_string() });
        }
        Ok(())
    }

    pub async fn livekit_owner(&self, name: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT entity_id FROM livekit_rooms WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// The owner's room bound to LiveKit room `name` (and, with `sid`, in that
    /// session): the one that is not over, else the latest created.
    async fn owned_livekit_room(&self, name: &str, sid: Option<&str>) -> Result<Option<Room>> {
        let in_session = if sid.is_some() { "AND livekit_sid = $5 " } else { "" };
        let sql = format!(
            "SELECT {ROOM_COLUMNS} FROM rooms WHERE livekit_room = $1 \
             AND entity_id = (SELECT entity_id FROM livekit_rooms WHERE name = $2) {in_session}\
             ORDER BY CASE WHEN status IN ($3, $4) THEN 0 ELSE 1 END, created_at_ms DESC, id DESC LIMIT 1"
        );
        let mut query = sqlx::query_as(&sql)
            .bind(name)
            .bind(name)
            .bind(RoomStatus::Scheduled.as_str())
            .bind(RoomStatus::Active.as_str());
        if let Some(sid) = sid {
            query = query.bind(sid);
        }
        let row: Option<RoomRow> = query.fetch_optional(&self.pool).await?;
        row.map(Room::try_from).transpose()
    }

    pub async fn find_livekit_room(&self, name: &str) -> Result<Room> {
        self.owned_livekit_room(name, None).await?.ok_or_else(|| not_found("LiveKit room", name))
    }

    pub async fn find_livekit_session(&self, name: &str, sid: &str) -> Result<Option<Room>> {
        self.owned_livekit_room(name, Some(sid)).await
    }

    pub async fn livekit_sid(&self, room_id: &str) -> Result<Option<String>> {
        let row: Option<Option<String>> = sqlx::query_scalar("SELECT livekit_sid FROM rooms WHERE id = $1")
            .bind(room_id)
            .fetch_optional(&self.pool)
            .await?;
        row.ok_or_else(|| not_found("room", room_id))
    }

    pub async fn set_livekit_sid(&self, room_id: &str, sid: &str, replace: bool) -> Result<String> {
        let _fg = self.gate.foreground();
        let mut tx = self.begin_write().await?;
        let row: Option<(Option<String>, Option<String>)> =
            sqlx::query_as("SELECT livekit_room, livekit_sid FROM rooms WHERE id = $1")
                .bind(room_id)
                .fetch_optional(&mut *tx)
                .await?;
        let (bound, current) = row.ok_or_else(|| not_found("room", room_id))?;
        if bound.is_none() {
            return Err(StorageError::Precondition(format!(
                "room `{room_id}` is not bound to a LiveKit room: it has no LiveKit session"
            )));
        }
        if let Some(current) = current
            && (!replace || current == sid)
        {
            return Ok(current);
        }
        sqlx::query("UPDATE rooms SET livekit_sid = $2 WHERE id = $1")
            .bind(room_id)
            .bind(sid)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(sid.to_string())
    }

    /// Records a recording; a repeated egress id updates its row.
    pub async fn upsert_recording(&self, rec: &Recording) -> Result<()> {
        let locations = serde_json::to_string(&rec.locations).expect("strings serialise");
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "INSERT INTO recordings (egress_id, room_id, status, locations, started_at_ms, ended_at_ms, error, \
             recorded_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (egress_id) DO UPDATE SET status = excluded.status, locations = excluded.locations, \
             started_at_ms = excluded.started_at_ms, ended_at_ms = excluded.ended_at_ms, error = excluded.error, \
             recorded_at_ms = excluded.recorded_at_ms",
        )
        .bind(&rec.egress_id)
        .bind(&rec.room_id)
        .bind(&rec.status)
        .bind(locations)
        .bind(rec.started_at_ms)
        .bind(rec.ended_at_ms)
        .bind(&rec.error)
        .bind(rec.recorded_at_ms)
        .execute(&mut *tx)
        .await;
        match done {
            Ok(_) => {}
            Err(e) if is_foreign_key_violation(&e) => return Err(not_found("room", &rec.room_id)),
            Err(e) => return Err(e.into()),
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn list_recordings(&self, room_id: &str) -> Result<Vec<Recording>> {
        let rows: Vec<rows::RecordingRow> = sqlx::query_as(
            "SELECT egress_id, room_id, status, locations, started_at_ms, ended_at_ms, error, recorded_at_ms \
             FROM recordings WHERE room_id = $1 ORDER BY recorded_at_ms, egress_id",
        )
        .bind(room_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(Recording::try_from).collect()
    }

    pub async fn list_open_room_ids(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT id FROM rooms WHERE status IN ($1, $2) ORDER BY created_at_ms, id")
            .bind(RoomStatus::Scheduled.as_str())
            .bind(RoomStatus::Active.as_str())
            .fetch_all(&self.pool)
            .await?)
    }

    async fn entity_exists(conn: &mut DB::Connection, id: &str) -> Result<bool> {
        let found: Option<String> =
            sqlx::query_scalar("SELECT id FROM entities WHERE id = $1").bind(id).fetch_optional(conn).await?;
        Ok(found.is_some())
    }

    async fn room_exists(conn: &mut DB::Connection, id: &str) -> Result<bool> {
        let found: Option<String> =
            sqlx::query_scalar("SELECT id FROM rooms WHERE id = $1").bind(id).fetch_optional(conn).await?;
        Ok(found.is_some())
    }

    async fn upsert_participant(conn: &mut DB::Connection, p: &Participant) -> Result<()> {
        sqlx::query(
            "INSERT INTO participants (id, room_id, kind, display_name, email, phone, identity, \
             joined_at_ms, left_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (id) DO UPDATE SET \
               kind = excluded.kind, display_name = excluded.display_name, \
               email = excluded.email, phone = excluded.phone, identity = excluded.identity, \
               joined_at_ms = excluded.joined_at_ms, left_at_ms = excluded.left_at_ms",
        )
        .bind(&p.id)
        .bind(&p.room_id)
        .bind(p.kind.as_str())
        .bind(&p.display_name)
        .bind(&p.email)
        .bind(&p.phone)
        .bind(&p.identity)
        .bind(p.joined_at_ms)
        .bind(p.left_at_ms)
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn insert_segment(conn: &mut DB::Connection, s: &TranscriptSegment) -> Result<()> {
        sqlx::query(
            "INSERT INTO transcript_segments (room_id, seq, participant_id, start_ms, end_ms, text, confidence, \
             no_speech_prob, language, at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&s.room_id)
        .bind(seq_to_db(s.seq)?)
        .bind(&s.participant_id)
        .bind(seq_to_db(s.start_ms)?)
        .bind(seq_to_db(s.end_ms)?)
        .bind(&s.text)
        .bind(f64::from(s.confidence))
        .bind(f64::from(s.no_speech_prob))
        .bind(&s.language)
        .bind(s.at_ms)
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn insert_events(conn: &mut DB::Connection, events: &[RoomEvent]) -> Result<()> {
        for event in events {
            let (kind, data) = rows::event_columns(event);
            sqlx::query(DB::INSERT_EVENT)
                .bind(&event.room_id)
                .bind(seq_to_db(event.seq)?)
                .bind(kind)
                .bind(data)
                .bind(event.at_ms)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}

/// A value bound to a dynamically built statement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Arg {
    Text(String),
    Int(i64),
}

/// The columns of a [`RoomRow`].
const API_KEY_COLUMNS: &str = "id, entity_id, key_hash, prefix, created_at_ms, last_used_at_ms, revoked_at_ms";

const ROOM_COLUMNS: &str = "id, entity_id, department_id, title, custom_instructions, status, \
     max_participants, scheduled_for_ms, created_at_ms, started_at_ms, ended_at_ms, \
     cancel_reason, event_seq, livekit_room";

/// The `SELECT` of one page of rooms that match `filter`, newest first
/// (`(created_at_ms, id)` descending) after `cursor`, and its arguments.
/// Only the conditions that apply are in the SQL, so indexes stay usable.
fn rooms_query(filter: RoomFilter, cursor: Option<Cursor>, size: u32) -> (String, Vec<Arg>) {
    let mut args = Vec::new();
    let mut arg = |value: Arg| {
        args.push(value);
        format!("${}", args.len())
    };
    let mut conditions = Vec::new();
    if let Some(entity_id) = filter.entity_id {
        conditions.push(format!("entity_id = {}", arg(Arg::Text(entity_id))));
    }
    if let Some(status) = filter.status {
        conditions.push(format!("status = {}", arg(Arg::Text(status.as_str().to_string()))));
    }
    if let Some(from) = filter.created_from_ms {
        conditions.push(format!("created_at_ms >= {}", arg(Arg::Int(from))));
    }
    if let Some(to) = filter.created_to_ms {
        conditions.push(format!("created_at_ms < {}", arg(Arg::Int(to))));
    }
    if let Some(after) = cursor {
        let (at, id) = (arg(Arg::Int(after.created_at_ms)), arg(Arg::Text(after.id)));
        conditions.push(format!("(created_at_ms, id) < ({at}, {id})"));
    }
    let limit = arg(Arg::Int(page::fetch_limit(size)));
    let filter = if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
    let sql = format!("SELECT {ROOM_COLUMNS} FROM rooms{filter} ORDER BY created_at_ms DESC, id DESC LIMIT {limit}");
    (sql, args)
}

/// Implements the storage traits for a backend type with a `sql: Sql<_>`
/// field by forwarding every call to the shared operations above; only the
/// backend name differs between backends.
macro_rules! forward_store_traits {
    ($store:ty, $backend:literal) => {
        #[async_trait]
        impl EntityStore for $store {
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
            async fn get_api_key(&self, id: &str) -> Result<ApiKey> {
                self.sql.get_api_key(id).await
            }
            async fn list_api_keys(&self, entity_id: &str) -> Result<Vec<ApiKey>> {
                self.sql.list_api_keys(entity_id).await
            }
            async fn revoke_api_key(&self, id: &str, at_ms: huddle_core::time::Millis) -> Result<ApiKey> {
                self.sql.revoke_api_key(id, at_ms).await
            }
            async fn touch_api_key(&self, id: &str, at_ms: huddle_core::time::Millis) -> Result<()> {
                self.sql.touch_api_key(id, at_ms).await
            }
        }

        #[async_trait]
        impl RoomStore for $store {
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
            async fn list_transcript(
                &self,
                room_id: &str,
                page: PageRequest,
            ) -> Result<Page<huddle_core::TranscriptSegment>> {
                self.sql.list_transcript(room_id, page).await
            }
            async fn list_open_room_ids(&self) -> Result<Vec<String>> {
                self.sql.list_open_room_ids().await
            }
            async fn find_livekit_room(&self, name: &str) -> Result<Room> {
                self.sql.find_livekit_room(name).await
            }
            async fn livekit_owner(&self, name: &str) -> Result<Option<String>> {
                self.sql.livekit_owner(name).await
            }
            async fn find_livekit_session(&self, name: &str, sid: &str) -> Result<Option<Room>> {
                self.sql.find_livekit_session(name, sid).await
            }
            async fn livekit_sid(&self, room_id: &str) -> Result<Option<String>> {
                self.sql.livekit_sid(room_id).await
            }
            async fn set_livekit_sid(&self, room_id: &str, sid: &str, replace: bool) -> Result<String> {
                self.sql.set_livekit_sid(room_id, sid, replace).await
            }
            async fn upsert_recording(&self, rec: &huddle_core::Recording) -> Result<()> {
                self.sql.upsert_recording(rec).await
            }
            async fn list_recordings(&self, room_id: &str) -> Result<Vec<huddle_core::Recording>> {
                self.sql.list_recordings(room_id).await
            }
        }

        #[async_trait]
        impl KnowledgeStore for $store {
            async fn create_document(&self, doc: huddle_core::Document) -> Result<huddle_core::Document> {
                self.sql.create_document(doc).await
            }
            async fn get_document(&self, id: &str) -> Result<huddle_core::Document> {
                self.sql.get_document(id).await
            }
            async fn list_documents(&self, entity_id: &str, page: PageRequest) -> Result<Page<huddle_core::Document>> {
                self.sql.list_documents(entity_id, page).await
            }
            async fn finish_document(
                &self,
                id: &str,
                expected: huddle_core::DocumentStatus,
                status: huddle_core::DocumentStatus,
                error: Option<String>,
                items: Vec<huddle_core::NewKnowledgeItem>,
            ) -> Result<(huddle_core::Document, Vec<u64>)> {
                self.sql.finish_document(id, expected, status, error, items).await
            }
            async fn delete_document(&self, id: &str) -> Result<Vec<u64>> {
                self.sql.delete_document(id).await
            }
            async fn fail_interrupted_documents(&self, node_id: &str, stale_before_ms: i64) -> Result<u64> {
                self.sql.fail_interrupted_documents(node_id, stale_before_ms).await
            }
            async fn add_knowledge_items(&self, items: Vec<huddle_core::NewKnowledgeItem>) -> Result<Vec<u64>> {
                self.sql.add_knowledge_items(items).await
            }
            async fn get_knowledge_items(&self, ids: &[u64]) -> Result<Vec<huddle_core::KnowledgeItem>> {
                self.sql.get_knowledge_items(ids).await
            }
            async fn list_knowledge_items(
                &self,
                entity_id: &str,
                after_id: u64,
                limit: u32,
            ) -> Result<Vec<huddle_core::KnowledgeItem>> {
                self.sql.list_knowledge_items(entity_id, after_id, limit).await
            }
            async fn knowledge_fingerprint(&self, entity_id: &str) -> Result<(u64, u64)> {
                self.sql.knowledge_fingerprint(entity_id).await
            }
        }

        #[async_trait]
        impl NotifyStore for $store {
            async fn enqueue_notifications(
                &self,
                entity_id: &str,
                idempotency_key: Option<&str>,
                items: Vec<huddle_core::NewNotification>,
            ) -> Result<crate::Enqueued> {
                self.sql.enqueue_notifications(entity_id, idempotency_key, items).await
            }
            async fn enqueue_notification_batch(
                &self,
                requests: Vec<crate::EnqueueRequest>,
            ) -> Result<Vec<crate::Enqueued>> {
                self.sql.enqueue_notification_batch(requests).await
            }
            async fn get_notification(&self, id: &str) -> Result<huddle_core::Notification> {
                self.sql.get_notification(id).await
            }
            async fn list_notifications(
                &self,
                filter: crate::NotificationFilter,
                page: PageRequest,
            ) -> Result<Page<huddle_core::Notification>> {
                self.sql.list_notifications(filter, page).await
            }
            async fn cancel_notification(&self, id: &str) -> Result<huddle_core::Notification> {
                self.sql.cancel_notification(id).await
            }
            async fn claim_notifications(
                &self,
                node: &str,
                channels: &[huddle_core::Channel],
                skip_recipients: &[String],
                now_ms: i64,
                lease_ms: i64,
                limit: u32,
            ) -> Result<Vec<huddle_core::Notification>> {
                self.sql.claim_notifications(node, channels, skip_recipients, now_ms, lease_ms, limit).await
            }
            async fn yield_to_foreground_writes(&self, max: std::time::Duration) -> bool {
                self.sql.gate.foreground_done(max).await
            }

            fn foreground_write(&self) -> crate::ForegroundWrite {
                self.sql.gate.foreground()
            }
            async fn record_deliveries(&self, outcomes: &[crate::DeliveryOutcome]) -> Result<()> {
                self.sql.record_deliveries(outcomes).await
            }
            async fn release_claims(&self, node: &str) -> Result<u64> {
                self.sql.release_claims(node).await
            }
            async fn release_notifications(&self, node: &str, ids: &[String]) -> Result<u64> {
                self.sql.release_notifications(node, ids).await
            }
            async fn update_by_provider_id(
                &self,
                provider_id: &str,
                status: huddle_core::NotificationStatus,
                error: Option<String>,
            ) -> Result<huddle_core::Notification> {
                self.sql.update_by_provider_id(provider_id, status, error).await
            }
            async fn list_chat_messages(
                &self,
                channel: &str,
                after: Option<(i64, String)>,
                limit: u32,
            ) -> Result<Vec<huddle_core::Notification>> {
                self.sql.list_chat_messages(channel, after, limit).await
            }
            async fn mark_chat_delivered(&self, ids: &[String]) -> Result<()> {
                self.sql.mark_chat_delivered(ids).await
            }
            async fn mark_read(&self, id: &str) -> Result<huddle_core::Notification> {
                self.sql.mark_read(id).await
            }
            async fn notification_counts(
                &self,
                entity_id: Option<&str>,
            ) -> Result<Vec<(huddle_core::NotificationStatus, u64)>> {
                self.sql.notification_counts(entity_id).await
            }
            async fn create_endpoint(&self, ep: huddle_core::WebhookEndpoint) -> Result<huddle_core::WebhookEndpoint> {
                self.sql.create_endpoint(ep).await
            }
            async fn get_endpoint(&self, id: &str) -> Result<huddle_core::WebhookEndpoint> {
                self.sql.get_endpoint(id).await
            }
            async fn list_endpoints(&self, entity_id: &str) -> Result<Vec<huddle_core::WebhookEndpoint>> {
                self.sql.list_endpoints(entity_id).await
            }
            async fn disable_endpoint(&self, id: &str, reason: &str) -> Result<huddle_core::WebhookEndpoint> {
                self.sql.disable_endpoint(id, reason).await
            }
            async fn rotate_endpoint_secret(
                &self,
                id: &str,
                secret: &str,
                overlap_until_ms: i64,
            ) -> Result<huddle_core::WebhookEndpoint> {
                self.sql.rotate_endpoint_secret(id, secret, overlap_until_ms).await
            }
            async fn set_preference(&self, p: huddle_core::Preference) -> Result<huddle_core::Preference> {
                self.sql.set_preference(p).await
            }
            async fn list_unrouted_rooms(&self, ended_since_ms: i64) -> Result<Vec<(String, u64)>> {
                self.sql.list_unrouted_rooms(ended_since_ms).await
            }
            async fn advance_routed_seqs(&self, cursors: &[(String, u64)]) -> Result<()> {
                self.sql.advance_routed_seqs(cursors).await
            }
        }

        impl Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }
        }
    };
}
pub(crate) use forward_store_traits;

#[cfg(test)]
mod tests {
    use super::WriteGate;
    use std::time::Duration;

    const LONG: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn housekeeping_waits_for_foreground_writes_and_no_longer() {
        let gate = std::sync::Arc::new(WriteGate::new(true));
        // nobody writing: no wait at all, however long the allowance
        assert!(tokio::time::timeout(Duration::from_secs(5), gate.foreground_done(LONG)).await.expect("waited"));

        // foreground writes running: the wait ends when they are done, not at the allowance
        let g = gate.clone();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let (first_tx, first_done) = tokio::sync::oneshot::channel::<()>();
        let (second_tx, second_done) = tokio::sync::oneshot::channel::<()>();
        let writer = tokio::spawn(async move {
            let first = g.foreground();
            let second = g.foreground();
            started_tx.send(()).unwrap();
            second_done.await.unwrap();
            drop(second);
            first_done.await.unwrap();
            drop(first);
        });
        started.await.unwrap();
        let g = gate.clone();
        let waiting = tokio::spawn(async move { g.foreground_done(LONG).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "went ahead while two writes were running");
        second_tx.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "went ahead while one write was still running");
        first_tx.send(()).unwrap();
        assert!(tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("not woken").unwrap());
        writer.await.unwrap();

        // a write that never finishes holds housekeeping back only for the allowance
        let _stuck = gate.foreground();
        let done = tokio::time::timeout(Duration::from_secs(5), gate.foreground_done(Duration::from_millis(20)))
            .await
            .expect("waited past the allowance");
        assert!(!done, "a write is still running");
        assert!(gate.foreground_done(Duration::ZERO).await, "a zero allowance does not wait");

        // with several writers (Postgres) nothing is marked and nothing waits
        let many = std::sync::Arc::new(WriteGate::new(false));
        let _w = many.foreground();
        assert!(many.foreground_done(LONG).await);
    }
    use huddle_core::RoomStatus;

    use super::*;

    #[test]
    fn rooms_query_binds_only_the_filters_given() {
        let (sql, args) = rooms_query(RoomFilter::default(), None, 10);
        assert!(sql.ends_with("FROM rooms ORDER BY created_at_ms DESC, id DESC LIMIT $1"), "{sql}");
        assert_eq!(args, vec![Arg::Int(11)]);

        let filter = RoomFilter {
            entity_id: Some("e".into()),
            status: Some(RoomStatus::Active),
            created_from_ms: Some(5),
            created_to_ms: Some(9),
        };
        let cursor = Cursor { created_at_ms: 7, id: "r".into() };
        let (sql, args) = rooms_query(filter, Some(cursor), 2);
        assert!(
            sql.ends_with(
                "FROM rooms WHERE entity_id = $1 AND status = $2 AND created_at_ms >= $3 \
                 AND created_at_ms < $4 AND (created_at_ms, id) < ($5, $6) \
                 ORDER BY created_at_ms DESC, id DESC LIMIT $7"
            ),
            "{sql}"
        );
        assert_eq!(
            args,
            vec![
                Arg::Text("e".into()),
                Arg::Text("ACTIVE".into()),
                Arg::Int(5),
                Arg::Int(9),
                Arg::Int(7),
                Arg::Text("r".into()),
                Arg::Int(3),
            ]
        );
    }
}
