//! huddle's actors. Each live meeting room is one [`room::RoomActor`] under a
//! [`room_supervisor::RoomSupervisor`]; watchers receive room events through
//! the [`hub::RoomHub`].
//!
//! # Layout
//! - [`room`]: `RoomActor`, `RoomMsg`, `RoomError`, `RoomView`
//! - [`room_supervisor`]: spawn on demand, restart with capped backoff
//! - [`hub`]: per-room broadcast of events to watchers
//!
//! # Example
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use huddle_actors::hub::RoomHub;
//! let hub = RoomHub::new(16);
//! let mut rx = hub.subscribe("room-1");
//! hub.publish(huddle_core::RoomEvent {
//!     room_id: "room-1".into(), seq: 1, kind: "created".into(),
//!     data: serde_json::json!({}), at_ms: 0,
//! });
//! assert_eq!(rx.recv().await.unwrap().seq, 1);
//! # });
//! ```

pub mod hub;
pub mod room;
pub mod room_supervisor;

pub use hub::RoomHub;
pub use room::{RoomActor, RoomArgs, RoomError, RoomMsg, RoomView};
pub use room_supervisor::{RoomSupervisor, RoomSupervisorArgs, RoomSupervisorMsg, SupervisorStats};
