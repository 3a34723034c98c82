//! Storage for huddle: traits for what is persisted, and two backends chosen
//! by URL: SQLite (`sqlite://huddle.db`, the default, WAL mode, created on
//! first open) and Postgres (`postgres://...`).
//!
//! Every write that returns `Ok` is committed (and, on SQLite, synced with
//! `synchronous=FULL`) before it returns: an acknowledged write survives a
//! `kill -9`.
//!
//! # Layout
//! - [`sqlite`]: the SQLite backend
//! - [`postgres`]: the Postgres backend
//! - `migrations/{sqlite,postgres}/`: schema migrations, embedded at build time
//!
//! # Example
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use huddle_storage::{open, EntityStore};
//! use huddle_core::NewEntity;
//! let dir = tempfile::tempdir().unwrap();
//! let url = format!("sqlite://{}", dir.path().join("doc.db").display());
//! let store = open(&url).await.unwrap();
//! let e = store.create_entity(NewEntity { name: "Acme".into(), ..Default::default() }).await.unwrap();
//! assert_eq!(store.get_entity(&e.id).await.unwrap().name, "Acme");
//! # });
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use huddle_core::time::Millis;
use huddle_core::{
    ApiKey, Channel, Department, Document, DocumentStatus, Entity, KnowledgeItem, NewDepartment, NewEntity,
    NewKnowledgeItem, NewNotification, Notification, NotificationStatus, Participant, Preference, Room, RoomEvent,
    RoomStatus, TranscriptSegment, WebhookEndpoint,
};

mod change;
mod knowledge;
mod notify;
mod page;
pub mod postgres;
mod rows;
mod sql;
pub mod sqlite;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{what} `{id}` not found")]
    NotFound { what: &'static str, id: String },
    #[error("{what} `{value}` already exists")]
    AlreadyExists { what: &'static str, value: String },
    /// The name is another entity's for ever (a LiveKit room name); the owner is
    /// not named.
    #[error("{what} `{value}` belongs to another entity: choose another name")]
    Claimed { what: &'static str, value: String },
    /// An optimistic-concurrency check failed: someone else wrote first.
    #[error("room `{room_id}` changed concurrently: expected event seq {expected}, found {found}")]
    Conflict { room_id: String, expected: u64, found: u64 },
    /// The request does not fit the stored state (cancelling a delivered notification).
    #[error("{0}")]
    Precondition(String),
    #[error("invalid page token")]
    InvalidPageToken,
    #[error("unsupported database url `{0}`: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("corrupt stored value in {column}: {message}")]
    Corrupt { column: &'static str, message: String },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl StorageError {
    /// Whether the error means the database could not be reached, as opposed
    /// to a problem with the request.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StorageError::Database(
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed
                    | sqlx::Error::Tls(_)
            )
        )
    }
}

pub use notify::{DeliveryOutcome, EnqueueRequest, Enqueued, Next, NotificationFilter};
pub use sql::ForegroundWrite;

pub type Result<T> = std::result::Result<T, StorageError>;

/// How much newer than the recorded last use a use must be to be recorded.
pub const API_KEY_TOUCH_INTERVAL_MS: Millis = 60_000;

/// A page request: at most `size` items after the position `token` names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// 0 means the default (50); values above 500 are clamped to 500.
    pub size: u32,
    /// Opaque token from a previous [`Page::next_token`]; empty for the first page.
    pub token: String,
}

impl PageRequest {
    pub const DEFAULT_SIZE: u32 = 50;
    pub const MAX_SIZE: u32 = 500;

    pub fn effective_size(&self) -> u32 {
        match self.size {
            0 => Self::DEFAULT_SIZE,
            n => n.min(Self::MAX_SIZE),
        }
    }
}

/// One page of results; `next_token` is empty on the last page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_token: String,
}

/// Filters for [`RoomStore::list_rooms`]. The time range applies to
/// `created_at_ms` and is half-open: `[created_from_ms, created_to_ms)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomFilter {
    pub entity_id: Option<String>,
    pub status: Option<RoomStatus>,
    pub created_from_ms: Option<Millis>,
    pub created_to_ms: Option<Millis>,
}

/// Entity fields a caller may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntityUpdate {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub default_instructions: Option<String>,
    pub max_participants: Option<u32>,
    pub recording_retention_days: Option<u32>,
    pub active: Option<bool>,
}

/// Department fields a caller may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DepartmentUpdate {
    pub name: Option<String>,
    pub instructions: Option<String>,
}

/// One atomic change to a room: the room's new row, participant rows to insert
/// or replace, and events to append. Committed in one transaction, and only if
/// the stored room's `event_seq` still equals `expected_seq` (otherwise
/// [`StorageError::Conflict`] and nothing is written). The events must carry
/// seqs `expected_seq + 1 ..= room.event_seq`, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomChange {
    pub room: Room,
    pub expected_seq: u64,
    pub participants: Vec<Participant>,
    pub events: Vec<RoomEvent>,
    /// Transcript segments; each one's seq is that of a `transcript_segment`
    /// event in `events`.
    pub segments: Vec<TranscriptSegment>,
}

/// Entities, departments and API keys.
#[async_trait]
pub trait EntityStore: Send + Sync {
    /// Fills in id and timestamps; `max_participants: None` takes the default.
    async fn create_entity(&self, new: NewEntity) -> Result<Entity>;
    async fn get_entity(&self, id: &str) -> Result<Entity>;
    /// Ordered by creation, oldest first.
    async fn list_entities(&self, page: PageRequest) -> Result<Page<Entity>>;
    async fn update_entity(&self, id: &str, update: EntityUpdate) -> Result<Entity>;

    /// `AlreadyExists` when the entity already has a department of that name;
    /// `NotFound` when the entity does not exist.
    async fn create_department(&self, new: NewDepartment) -> Result<Department>;
    async fn get_department(&self, id: &str) -> Result<Department>;
    /// Ordered by name.
    async fn list_departments(&self, entity_id: &str) -> Result<Vec<Department>>;
    async fn update_department(&self, id: &str, update: DepartmentUpdate) -> Result<Department>;

    async fn create_api_key(&self, key: ApiKey) -> Result<ApiKey>;
    /// The key with this hash if it may authenticate; `NotFound` when no key has
    /// this hash, it is revoked, or its entity is inactive.
    async fn find_api_key(&self, key_hash: &str) -> Result<ApiKey>;
    /// Any key, revoked or not.
    async fn get_api_key(&self, id: &str) -> Result<ApiKey>;
    /// An entity's keys, revoked ones included, oldest first; `NotFound` when the
    /// entity does not exist.
    async fn list_api_keys(&self, entity_id: &str) -> Result<Vec<ApiKey>>;
    /// Marks a key revoked at `at_ms` (a key revoked before keeps its first time).
    async fn revoke_api_key(&self, id: &str, at_ms: Millis) -> Result<ApiKey>;
    /// Records a use at `at_ms`, unless the last recorded use is less than
    /// [`API_KEY_TOUCH_INTERVAL_MS`] older (so several nodes write at most about
    /// once a minute per key).
    async fn touch_api_key(&self, id: &str, at_ms: Millis) -> Result<()>;
}

/// Rooms, their participants and their event logs.
#[async_trait]
pub trait RoomStore: Send + Sync {
    /// Inserts the room and its first events (`room.event_seq` must equal the
    /// last event's seq) in one transaction.
    async fn create_room(&self, room: Room, events: Vec<RoomEvent>) -> Result<Room>;
    async fn get_room(&self, id: &str) -> Result<Room>;
    /// Newest first (`created_at_ms` descending, then id descending).
    async fn list_rooms(&self, filter: RoomFilter, page: PageRequest) -> Result<Page<Room>>;
    /// See [`RoomChange`].
    async fn commit_room_change(&self, change: RoomChange) -> Result<()>;
    /// All participant records of a room, ordered by `joined_at_ms` then id.
    async fn list_participants(&self, room_id: &str) -> Result<Vec<Participant>>;
    /// Events with `seq > after_seq`, ascending, at most `limit`.
    async fn list_events(&self, room_id: &str, after_seq: u64, limit: u32) -> Result<Vec<RoomEvent>>;
    /// Ids of rooms that are SCHEDULED or ACTIVE (used at start-up).
    async fn list_open_room_ids(&self) -> Result<Vec<String>>;
    /// The room bound to LiveKit room `name`: the one that is not over, else
    /// the latest created; NotFound when none is. Only rooms of the entity that
    /// owns the name count.
    ///
    /// A LiveKit room name belongs to one entity for ever: [`RoomStore::create_room`]
    /// claims it for the room's entity in its transaction, and a room of another
    /// entity bound to a claimed name is refused ([`StorageError::Claimed`]).
    async fn find_livekit_room(&self, name: &str) -> Result<Room>;
    /// The entity that owns LiveKit room name `name`, if any has claimed it.
    async fn livekit_owner(&self, name: &str) -> Result<Option<String>>;
    /// The owner's room bound to `name` that is in LiveKit session `sid` (LiveKit's
    /// room sid): the one that is not over, else the latest created.
    async fn find_livekit_session(&self, name: &str, sid: &str) -> Result<Option<Room>>;
    /// The LiveKit session (room sid) a bound room is in, if known.
    async fn livekit_sid(&self, room_id: &str) -> Result<Option<String>>;
    /// Records the LiveKit session a bound room is in. With `replace` false a
    /// sid already recorded stays. Returns the sid recorded now; `NotFound` for
    /// an unknown room, `Precondition` for a room not bound to LiveKit.
    async fn set_livekit_sid(&self, room_id: &str, sid: &str, replace: bool) -> Result<String>;
    /// Records a recording; a repeated egress id updates its row.
    async fn upsert_recording(&self, recording: &huddle_core::Recording) -> Result<()>;
    /// A room's recordings, oldest first.
    async fn list_recordings(&self, room_id: &str) -> Result<Vec<huddle_core::Recording>>;
    /// One page of a room's transcript segments, oldest first.
    async fn list_transcript(&self, room_id: &str, page: PageRequest) -> Result<Page<TranscriptSegment>>;
}

/// The knowledge base: documents (each also its ingest job) and the indexed items
/// (document chunks and transcript segments with their embeddings).
#[async_trait]
pub trait KnowledgeStore: Send + Sync {
    async fn create_document(&self, doc: Document) -> Result<Document>;
    async fn get_document(&self, id: &str) -> Result<Document>;
    /// One page of an entity's documents, oldest first.
    async fn list_documents(&self, entity_id: &str, page: PageRequest) -> Result<Page<Document>>;
    /// Records an ingest job's outcome and its items in one transaction, if the document
    /// is still `expected` (else NotFound, or Precondition naming its status, and nothing
    /// is written); returns the items' ids.
    async fn finish_document(
        &self,
        id: &str,
        expected: DocumentStatus,
        status: DocumentStatus,
        error: Option<String>,
        items: Vec<NewKnowledgeItem>,
    ) -> Result<(Document, Vec<u64>)>;
    /// Deletes a document and its items; returns the removed items' ids.
    async fn delete_document(&self, id: &str) -> Result<Vec<u64>>;
    /// Marks FAILED the documents left PROCESSING by `node_id` (stopped while running
    /// them), by no recorded node, or by any node before `stale_before_ms` (a node that
    /// never came back); other nodes' running jobs are untouched. Returns how many.
    async fn fail_interrupted_documents(&self, node_id: &str, stale_before_ms: i64) -> Result<u64>;
    async fn add_knowledge_items(&self, items: Vec<NewKnowledgeItem>) -> Result<Vec<u64>>;
    /// The items with these ids that exist, in any order.
    async fn get_knowledge_items(&self, ids: &[u64]) -> Result<Vec<KnowledgeItem>>;
    /// An entity's items with `id > after_id`, ascending, at most `limit`.
    async fn list_knowledge_items(&self, entity_id: &str, after_id: u64, limit: u32) -> Result<Vec<KnowledgeItem>>;
    /// (count, largest id) of an entity's items.
    async fn knowledge_fingerprint(&self, entity_id: &str) -> Result<(u64, u64)>;
}

/// Notifications: the durable outbox, delivery attempts, webhook endpoints and
/// opt-out preferences.
#[async_trait]
pub trait NotifyStore: Send + Sync {
    /// Writes one notification per recipient, in one transaction. Recipients who opted
    /// out of the channel get SKIPPED rows. A repeated idempotency key writes nothing
    /// and returns the first request's ids.
    async fn enqueue_notifications(
        &self,
        entity_id: &str,
        idempotency_key: Option<&str>,
        items: Vec<NewNotification>,
    ) -> Result<Enqueued>;
    /// Several send requests in one transaction: all are written, or none.
    async fn enqueue_notification_batch(&self, requests: Vec<EnqueueRequest>) -> Result<Vec<Enqueued>>;
    /// With every attempt.
    async fn get_notification(&self, id: &str) -> Result<Notification>;
    /// Newest first, with every attempt.
    async fn list_notifications(&self, filter: NotificationFilter, page: PageRequest) -> Result<Page<Notification>>;
    /// Only PENDING notifications can be cancelled (`Precondition` otherwise).
    async fn cancel_notification(&self, id: &str) -> Result<Notification>;
    /// Claims due notifications for `node` until `now_ms + lease_ms`: PENDING ones
    /// that are due and SENDING ones whose claim lapsed, none to `skip_recipients`
    /// (endpoints this node has enough in flight to). They come without their
    /// attempt history (`attempt_count` says how many were made).
    async fn claim_notifications(
        &self,
        node: &str,
        channels: &[Channel],
        skip_recipients: &[String],
        now_ms: Millis,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<Notification>>;
    /// For housekeeping writes that can wait (the outbox's): waits until no write that
    /// somebody is waiting on (a send, a room change) waits or runs, or `max` has
    /// passed (false then). Immediate on a store with several writers (Postgres).
    async fn yield_to_foreground_writes(&self, max: std::time::Duration) -> bool;
    /// Marks a write somebody waits on as queued from now until the mark is dropped
    /// (for a caller that queues writes itself, such as a group commit).
    fn foreground_write(&self) -> ForegroundWrite;
    /// Records attempts and what follows them, in one transaction.
    async fn record_deliveries(&self, outcomes: &[DeliveryOutcome]) -> Result<()>;
    /// Makes what `node` had claimed due again now; returns how many.
    async fn release_claims(&self, node: &str) -> Result<u64>;
    /// Makes these claims of `node` due again now, without an attempt; returns how
    /// many were still claimed by it.
    async fn release_notifications(&self, node: &str, ids: &[String]) -> Result<u64>;
    async fn update_by_provider_id(
        &self,
        provider_id: &str,
        status: NotificationStatus,
        error: Option<String>,
    ) -> Result<Notification>;
    /// Chat messages to a channel after `(created_at_ms, id)`, oldest first.
    async fn list_chat_messages(
        &self,
        channel: &str,
        after: Option<(Millis, String)>,
        limit: u32,
    ) -> Result<Vec<Notification>>;
    /// Chat messages handed to a live subscriber: PENDING ones become DELIVERED.
    async fn mark_chat_delivered(&self, ids: &[String]) -> Result<()>;
    /// A chat read receipt; `NotFound` for an id that is not a chat message.
    async fn mark_read(&self, id: &str) -> Result<Notification>;
    async fn notification_counts(&self, entity_id: Option<&str>) -> Result<Vec<(NotificationStatus, u64)>>;
    async fn create_endpoint(&self, endpoint: WebhookEndpoint) -> Result<WebhookEndpoint>;
    async fn get_endpoint(&self, id: &str) -> Result<WebhookEndpoint>;
    /// Oldest first.
    async fn list_endpoints(&self, entity_id: &str) -> Result<Vec<WebhookEndpoint>>;
    async fn disable_endpoint(&self, id: &str, reason: &str) -> Result<WebhookEndpoint>;
    async fn rotate_endpoint_secret(&self, id: &str, secret: &str, overlap_until_ms: Millis)
    -> Result<WebhookEndpoint>;
    async fn set_preference(&self, preference: Preference) -> Result<Preference>;
    /// Rooms whose event log has events after their routing cursor, with that
    /// cursor (0 for a room never routed): every open room, and those that ended
    /// at or after `ended_since_ms`. For the room router's resume after a restart.
    async fn list_unrouted_rooms(&self, ended_since_ms: Millis) -> Result<Vec<(String, u64)>>;
    /// Moves rooms' routing cursors forward (a lower seq than the stored one
    /// changes nothing); `NotFound` for an unknown room, and then nothing is written.
    async fn advance_routed_seqs(&self, cursors: &[(String, u64)]) -> Result<()>;
}

/// Everything huddle persists, behind one handle.
pub trait Store: EntityStore + RoomStore + KnowledgeStore + NotifyStore + Send + Sync + 'static {
    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;
}

/// A shared, type-erased store.
pub type DynStore = Arc<dyn Store>;

/// Opens (creating and migrating as needed) the store a URL names:
/// `sqlite://PATH` (`sqlite::memory:` for a throwaway in-memory database) or
/// `postgres://...` / `postgresql://...`.
pub async fn open(url: &str) -> Result<DynStore> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PostgresStore::open(url).await?))
    } else {
        Err(StorageError::UnsupportedUrl(huddle_core::redact::url(url)))
    }
}
