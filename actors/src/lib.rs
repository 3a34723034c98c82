//! huddle's actors. Each live meeting room is one [`room::RoomActor`] under a
//! [`room_supervisor::RoomSupervisor`]; watchers receive room events through
//! the [`hub::RoomHub`]. A room that hears audio gets a
//! [`transcriber::TranscriberActor`] as a linked child, which cuts the audio into
//! utterances and has the runtime's shared [`whisper_pool::WhisperPool`] decode them.
//! Notifications leave through the [`outbox::OutboxActor`] and its per-channel
//! [`notifier::NotifierActor`]s.
//!
//! # Layout
//! - [`room`]: `RoomActor`, `RoomMsg`, `RoomError`, `RoomView`
//! - [`room_supervisor`]: spawn on demand, restart with capped backoff
//! - [`hub`]: per-room broadcast of events to watchers
//! - [`embedder`]: `EmbedderActor`, dynamic batching in front of the embedding model
//! - [`knowledge`]: `KnowledgeActor`, one entity's vector index, snapshot and rebuild
//! - [`livekit`]: LiveKit signalling (`SignalClient`) and the agent `WorkerActor`
//! - [`transcriber`]: `TranscriberActor`, per-room audio streams -> transcript segments
//! - [`outbox`]: `OutboxActor`, claims due notifications, records attempts, retries
//! - [`notifier`]: `NotifierActor`, one per channel, delivers through a [`notify::Deliver`]
//! - [`notify`]: webhook delivery, signatures, retry schedules, SMS segments, iCalendar
//! - [`whisper_pool`]: shared whisper.cpp decoders, fair across rooms, bounded
//!
//! # Example
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use huddle_actors::hub::RoomHub;
//! let hub = RoomHub::new(16);
//! let mut rx = hub.subscribe("room-1");
//! hub.publish(huddle_core::RoomEvent {
//!     room_id: "room-1".into(), seq: 1,
//!     data: huddle_core::RoomEventData::Restarted(Default::default()), at_ms: 0,
//! });
//! assert_eq!(rx.recv().await.unwrap().seq, 1);
//! # });
//! ```

pub mod embedder;
pub mod hub;
pub mod knowledge;
pub mod livekit;
pub mod notifier;
pub mod notify;
pub mod outbox;
pub mod room;
pub mod room_supervisor;
pub mod transcriber;
pub mod whisper_pool;

pub use hub::RoomHub;
pub use room::{RoomActor, RoomArgs, RoomError, RoomMsg, RoomView};
pub use room_supervisor::{RoomSupervisor, RoomSupervisorArgs, RoomSupervisorMsg, SupervisorStats};
pub use transcriber::{StreamSummary, TranscriberActor, TranscriberMsg};
pub use whisper_pool::{WhisperPool, WhisperPoolConfig};
