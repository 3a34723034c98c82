//! The embeddable huddle runtime.
//!
//! A [`Runtime`] owns a supervision tree (root -> room supervisor -> one
//! `RoomActor` per live room), the store (SQLite or Postgres) and the
//! per-room event hub. Other Rust services start it in-process with
//! [`Runtime::builder`] and talk to rooms through [`Api`] without gRPC; the
//! `huddle serve` binary wraps the same runtime in a gRPC + HTTP [`server`].
//!
//! # Layout
//! - [`config`]: the configuration tree (defaults -> file -> `HUDDLE__*` env)
//! - [`api`]: [`Api`], the scoped operations on entities and rooms
//! - [`auth`]: API keys and scopes
//! - [`grpc`]: the tonic services (a thin adapter over [`Api`])
//! - [`http`]: `/healthz`, Prometheus `/metrics`, the Twilio status callback, chat WebSockets
//! - [`livekit`]: LiveKit tokens and webhooks for rooms bound to LiveKit rooms
//! - `chat`: `GET /chat/ws`, chat messages streamed to subscribers
//! - [`server`]: binding listeners, serving, graceful shutdown
//! - `root`: the root supervisor actor
//! - `knowledge`: the embedding model and batching actor, one index actor per
//!   entity, ingest jobs, search and live suggestions
//! - `notify`: sending notifications into the outbox, endpoints, preferences
//! - `speech`: the whisper model and decoder pool (loaded on first use) and
//!   [`AudioStream`], one participant's audio going into a room
//!
//! # Example
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use huddle_core::{NewEntity, NewParticipant, NewRoom, ParticipantKind, RoomStatus};
//! use huddle_runtime::Runtime;
//!
//! let rt = Runtime::builder().database_url("sqlite::memory:").build().await.unwrap();
//! let api = rt.admin();
//! let acme = api.create_entity(NewEntity { name: "Acme".into(), ..Default::default() }).await.unwrap();
//! let room = api
//!     .create_room(NewRoom { entity_id: acme.id.clone(), title: "Standup".into(), ..Default::default() })
//!     .await
//!     .unwrap();
//! api.start_room(&room.view.room.id).await.unwrap();
//! let ada = api
//!     .join_room(&room.view.room.id, NewParticipant {
//!         kind: ParticipantKind::Human,
//!         display_name: "Ada".into(),
//!         email: None,
//!         phone: None,
//!         identity: String::new(),
//!     })
//!     .await
//!     .unwrap();
//! let got = api.get_room(&room.view.room.id).await.unwrap();
//! assert_eq!(got.view.room.status, RoomStatus::Active);
//! assert_eq!(got.view.participants[0].id, ada.id);
//! rt.shutdown().await;
//! # });
//! ```

use std::sync::Arc;
use std::time::Duration;

use huddle_actors::hub::RoomHub;
use huddle_actors::room_supervisor::{RoomSupervisorMsg, SupervisorStats};
use huddle_storage::DynStore;
use ractor::{Actor, ActorRef};
use tokio_util::sync::CancellationToken;
use tracing::info;

pub mod api;
pub mod auth;
mod chat;
pub mod config;
mod error;
pub mod grpc;
pub mod http;
mod knowledge;
pub mod livekit;
pub(crate) mod notify;
mod root;
pub mod server;
mod speech;

pub use api::{Api, DocumentUpload, LiveKitAccess, RoomDetails, SearchRequest, WatchItem};
pub use auth::Scope;
pub use config::{
    Config, ConfigError, InboundConfig, KnowledgeConfig, LiveKitConfig, NotifyConfig, RoomNotifyConfig, RoomsConfig,
    SmtpConfig, SpeechConfig, TwilioConfig,
};
pub use error::{ApiError, RuntimeError};
pub use http::InboundWebhook;
/// Durations as the configuration writes them: `500ms`, `5s`, `5m`, `6h`, `2d`.
pub use huddle_actors::notify::schedule::parse_duration;
pub use knowledge::{IngestStats, SearchHit};
pub use notify::{NewEndpoint, SendRequest, Sent};
pub use speech::{AudioStream, MAX_AUDIO_CHUNK_BYTES};

/// A running huddle runtime. Cheap to clone; every clone is the same runtime.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    namespace: String,
    store: DynStore,
    hub: RoomHub,
    root: ActorRef<root::RootMsg>,
    request_timeout: Duration,
    drain_timeout: Duration,
    speech: speech::Speech,
    knowledge: Arc<knowledge::Knowledge>,
    notify: NotifyConfig,
    livekit: Option<Arc<livekit::LiveKit>>,
    endpoint_cache: huddle_actors::notify::webhook::EndpointCache,
    outbox_waker: huddle_actors::outbox::OutboxWaker,
    enqueuer: notify::Enqueuer,
    chat: chat::ChatHub,
    inbound: http::InboundHub,
    templates: Arc<notify::templates::Templates>,
    /// Entity keys recently found in storage (see [`auth::KEY_CACHE_TTL`]).
    key_cache: auth::KeyCache,
    /// Cancelled when the runtime begins to shut down; ends watch streams.
    closing: CancellationToken,
}

/// Builds a [`Runtime`]. Without a store or URL it opens `sqlite://huddle.db`.
pub struct RuntimeBuilder {
    database_url: String,
    store: Option<DynStore>,
    rooms: RoomsConfig,
    speech: SpeechConfig,
    knowledge: KnowledgeConfig,
    notify: NotifyConfig,
    livekit: LiveKitConfig,
    livekit_transport: Option<Arc<dyn huddle_actors::livekit::RoomTransport>>,
    request_timeout: Duration,
}

impl Runtime {
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder {
            database_url: config::DatabaseConfig::default().url,
            store: None,
            rooms: RoomsConfig::default(),
            speech: SpeechConfig::default(),
            knowledge: KnowledgeConfig::default(),
            notify: NotifyConfig::default(),
            livekit: LiveKitConfig::default(),
            livekit_transport: None,
            request_timeout: Duration::from_millis(config::ServerConfig::default().request_timeout_ms),
        }
    }

    /// Operations with full access to every entity.
    pub fn admin(&self) -> Api {
        Api::new(self.clone(), Scope::Admin)
    }

    /// Operations limited to one entity, as an entity-scoped API key sees them.
    pub fn for_entity(&self, entity_id: impl Into<String>) -> Api {
        Api::new(self.clone(), Scope::Entity(entity_id.into()))
    }

    /// Operations in the given scope.
    pub fn scoped(&self, scope: Scope) -> Api {
        Api::new(self.clone(), scope)
    }

    pub fn store(&self) -> &DynStore {
        &self.inner.store
    }

    /// Registry namespace of this runtime's actors (unique per runtime).
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    pub(crate) fn hub(&self) -> &RoomHub {
        &self.inner.hub
    }

    pub(crate) fn speech(&self) -> &speech::Speech {
        &self.inner.speech
    }

    pub(crate) fn knowledge(&self) -> &Arc<knowledge::Knowledge> {
        &self.inner.knowledge
    }

    /// Loads the embedding model now rather than on first use (fetching it first if it
    /// is missing and allowed).
    pub async fn warm_up_knowledge(&self) -> Result<(), ApiError> {
        self.inner.knowledge.model().await.map(|_| ())
    }

    /// This node's ingest jobs: running, waiting, and the peaks since start.
    pub fn ingest_stats(&self) -> IngestStats {
        self.inner.knowledge.ingest_stats()
    }

    /// Loads the speech model and starts the decoder pool now rather than on the first
    /// audio stream (fetching the model first if it is missing and allowed).
    pub async fn warm_up_speech(&self) -> Result<huddle_actors::WhisperPool, ApiError> {
        self.inner.speech.pool().await
    }

    /// LiveKit, when `livekit` is configured.
    pub fn livekit(&self) -> Option<&livekit::LiveKit> {
        self.inner.livekit.as_deref()
    }

    pub(crate) fn notify_config(&self) -> &NotifyConfig {
        &self.inner.notify
    }

    /// Verified webhooks arriving at `POST /webhooks/inbound/{name}` (see
    /// `notify.inbound`). A webhook is answered 202 only once every receiver will
    /// get it: with no receiver, or one that lets 256 queue up, senders get 503
    /// and retry (nothing accepted is dropped for a lagging receiver).
    pub fn inbound_webhooks(&self) -> tokio::sync::broadcast::Receiver<http::InboundWebhook> {
        self.inner.inbound.subscribe()
    }

    pub(crate) fn inbound_hub(&self) -> &http::InboundHub {
        &self.inner.inbound
    }

    pub(crate) fn templates(&self) -> &notify::templates::Templates {
        &self.inner.templates
    }

    pub(crate) fn key_cache(&self) -> &auth::KeyCache {
        &self.inner.key_cache
    }

    pub(crate) fn chat_hub(&self) -> &chat::ChatHub {
        &self.inner.chat
    }

    pub(crate) fn enqueuer(&self) -> &notify::Enqueuer {
        &self.inner.enqueuer
    }

    pub(crate) fn endpoint_cache(&self) -> &huddle_actors::notify::webhook::EndpointCache {
        &self.inner.endpoint_cache
    }

    pub(crate) fn outbox_waker(&self) -> &huddle_actors::outbox::OutboxWaker {
        &self.inner.outbox_waker
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        self.inner.request_timeout
    }

    pub(crate) fn closing(&self) -> &CancellationToken {
        &self.inner.closing
    }

    pub(crate) fn room_supervisor(&self) -> Result<ActorRef<RoomSupervisorMsg>, ApiError> {
        root::room_supervisor(&self.inner.namespace)
            .ok_or_else(|| ApiError::Unavailable("room supervisor is restarting: retry shortly".into()))
    }

    /// Live rooms and restart counts of the room supervisor.
    pub async fn stats(&self) -> Result<SupervisorStats, ApiError> {
        let sup = self.room_supervisor()?;
        ractor::call_t!(sup, |reply| RoomSupervisorMsg::Stats { reply }, 5_000)
            .map_err(|e| ApiError::Unavailable(e.to_string()))
    }

    /// Ends watch streams, lets every live room finish its queued messages
    /// (up to the drain timeout), then stops the actor tree. Idempotent.
    pub async fn shutdown(&self) {
        self.inner.closing.cancel();
        if let Some(lk) = &self.inner.livekit {
            lk.shutdown(self.inner.drain_timeout).await;
        }
        self.inner.knowledge.shutdown().await;
        if let Some(sup) = root::room_supervisor(&self.inner.namespace) {
            let timeout = self.inner.drain_timeout;
            let wait = timeout + Duration::from_secs(1);
            let drained = sup.call(|reply| RoomSupervisorMsg::Drain { timeout, reply }, Some(wait)).await;
            if let Ok(ractor::rpc::CallResult::Success(n)) = drained {
                info!(rooms = n, "drained live rooms");
            }
        }
        self.inner.root.stop_and_wait(Some("runtime shutdown".into()), Some(Duration::from_secs(5))).await.ok();
    }
}

impl RuntimeBuilder {
    /// `sqlite://PATH`, `sqlite::memory:` or `postgres://...`.
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.database_url = url.into();
        self
    }

    /// Use an already opened store instead of a URL.
    pub fn store(mut self, store: DynStore) -> Self {
        self.store = Some(store);
        self
    }

    pub fn rooms(mut self, rooms: RoomsConfig) -> Self {
        self.rooms = rooms;
        self
    }

    /// Knowledge-base settings (embeddings, chunking, index snapshots, suggestions).
    pub fn knowledge(mut self, knowledge: KnowledgeConfig) -> Self {
        self.knowledge = knowledge;
        self
    }

    /// Notification settings (outbox, retries, channels).
    /// LiveKit: URL, API key and secret (off when unset).
    pub fn livekit(mut self, livekit: LiveKitConfig) -> Self {
        self.livekit = livekit;
        self
    }

    /// How the agent joins LiveKit rooms [default: WebRTC with webrtc-rs].
    pub fn livekit_transport(mut self, transport: Arc<dyn huddle_actors::livekit::RoomTransport>) -> Self {
        self.livekit_transport = Some(transport);
        self
    }

    pub fn notify(mut self, notify: NotifyConfig) -> Self {
        self.notify = notify;
        self
    }

    /// Speech to text settings (model, decoders, voice-activity detection).
    pub fn speech(mut self, speech: SpeechConfig) -> Self {
        self.speech = speech;
        self
    }

    /// Deadline for one operation inside the runtime.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Opens the store (creating and migrating it) and starts the actor tree.
    pub async fn build(self) -> Result<Runtime, RuntimeError> {
        let mut knowledge_config = self.knowledge;
        let store = match self.store {
            Some(s) => s,
            None => {
                if knowledge_config.index_dir.is_none() {
                    knowledge_config.index_dir = knowledge::default_index_dir(&self.database_url);
                }
                huddle_storage::open(&self.database_url).await?
            }
        };
        let namespace = format!("rt-{}", &huddle_core::new_id()[24..]);
        // this node's jobs, and those of nodes gone for longer than any job may take
        let node_id = self.notify.node_id.clone().unwrap_or_else(notify::default_node_id);
        let stale_ms = knowledge_config.job_timeout_ms.saturating_add(60_000).min(i64::MAX as u64) as i64;
        let interrupted = store.fail_interrupted_documents(&node_id, huddle_core::now_ms() - stale_ms).await?;
        if interrupted > 0 {
            tracing::warn!(documents = interrupted, %node_id, "ingest jobs interrupted by the last stop were marked FAILED");
        }
        let knowledge =
            Arc::new(knowledge::Knowledge::new(knowledge_config, namespace.clone(), node_id, store.clone()));
        let listener: Arc<dyn huddle_actors::room::SegmentListener> = Arc::new(knowledge::SuggestionListener {
            knowledge: Arc::downgrade(&knowledge),
            namespace: namespace.clone(),
        });
        let router = notify::RoomRouter::new(&self.notify.rooms);
        let hub = match &router {
            Some(r) => RoomHub::with_tap(self.rooms.watch_buffer, r.tap()),
            None => RoomHub::new(self.rooms.watch_buffer),
        };
        let endpoint_cache = huddle_actors::notify::webhook::EndpointCache::default();
        let outbox_waker = huddle_actors::outbox::OutboxWaker::default();
        let templates = Arc::new(
            notify::templates::Templates::load(self.notify.templates_dir.as_deref()).map_err(RuntimeError::Actors)?,
        );
        let enqueuer = notify::Enqueuer::start(store.clone());
        let args = root::RootArgs {
            namespace: namespace.clone(),
            store: store.clone(),
            hub: hub.clone(),
            backoff_base: Duration::from_millis(self.rooms.restart_backoff_base_ms),
            backoff_max: Duration::from_millis(self.rooms.restart_backoff_max_ms),
            idle_timeout: Duration::from_millis(self.rooms.idle_timeout_ms),
            outbox: notify::outbox_args(&namespace, &store, &self.notify, endpoint_cache.clone(), outbox_waker.clone())
                .map_err(|e| RuntimeError::Actors(e.to_string()))?,
        };
        let (root, _) = Actor::spawn(Some(format!("{namespace}/root")), root::RootActor, args)
            .await
            .map_err(|e| RuntimeError::Actors(e.to_string()))?;
        info!(backend = store.backend(), %namespace, "runtime started");
        let rt = Runtime {
            inner: Arc::new(Inner {
                namespace,
                store,
                hub,
                root,
                request_timeout: self.request_timeout,
                drain_timeout: Duration::from_millis(self.rooms.drain_timeout_ms),
                speech: speech::Speech::new(self.speech, Some(listener)),
                knowledge,
                notify: self.notify,
                livekit: match self.livekit_transport {
                    Some(t) => livekit::LiveKit::with_transport(&self.livekit, t),
                    None => livekit::LiveKit::from_config(&self.livekit),
                }
                .map(Arc::new),
                endpoint_cache,
                outbox_waker,
                enqueuer,
                chat: chat::ChatHub::default(),
                inbound: http::InboundHub::default(),
                templates,
                key_cache: auth::KeyCache::default(),
                closing: CancellationToken::new(),
            }),
        };
        if let Some(router) = router {
            router.start(Arc::downgrade(&rt.inner));
        }
        if let Some(lk) = &rt.inner.livekit {
            lk.presence().attach(Arc::downgrade(&rt.inner));
            match livekit::resume_presence(&rt).await {
                Ok(0) => {}
                Ok(n) => info!(rooms = n, "agent rejoining the LiveKit rooms of active rooms"),
                Err(e) => tracing::warn!(error = %e, "agent not rejoining LiveKit rooms after the restart"),
            }
            lk.start_worker(Arc::downgrade(&rt.inner), &rt.inner.namespace).await;
        }
        Ok(rt)
    }
}
