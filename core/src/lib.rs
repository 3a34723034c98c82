//! Domain types shared by every huddle crate: entities (tenants), departments,
//! API keys, rooms with their lifecycle, participants and room events.
//!
//! This crate sits below `huddle-storage` and `huddle-proto` so that both can
//! speak the same types without depending on each other.
//!
//! # Layout
//! - [`entity`]: entities, departments, API keys
//! - [`event`]: room events, one typed payload per kind
//! - [`knowledge`]: knowledge-base documents and indexed items
//! - [`notify`]: notifications, webhook endpoints, opt-out preferences
//! - [`redact`]: keeping secrets out of logs, errors and `Debug` output
//! - [`room`]: rooms, the room lifecycle, participants, events
//! - [`time`]: millisecond timestamps
//! - [`transcript`]: final transcript segments
//!
//! # Example
//! ```
//! use huddle_core::room::RoomStatus;
//! assert!(RoomStatus::Scheduled.can_transition_to(RoomStatus::Active));
//! assert!(!RoomStatus::Completed.can_transition_to(RoomStatus::Active));
//! ```

pub mod entity;
pub mod event;
pub mod knowledge;
pub mod notify;
pub mod redact;
pub mod room;
pub mod time;
pub mod transcript;

pub use entity::{ApiKey, Department, Entity, NewDepartment, NewEntity};
pub use event::RoomEventData;
pub use knowledge::{Document, DocumentStatus, ItemKind, KnowledgeItem, NewKnowledgeItem};
pub use notify::{
    Channel, DeliveryAttempt, NewNotification, Notification, NotificationContent, NotificationStatus, Preference,
    WebhookEndpoint,
};
pub use room::{
    NewParticipant, NewRoom, Participant, ParticipantKind, Recording, Room, RoomEvent, RoomStatus,
    effective_instructions,
};
pub use time::now_ms;
pub use transcript::TranscriptSegment;

/// Generates a new time-ordered identifier (UUID v7, hyphenated).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Limits shared by validation on every boundary.
pub mod limits {
    /// Department instructions may hold at most this many characters.
    pub const MAX_INSTRUCTIONS_CHARS: usize = 8_000;
    /// Names, titles and display names may hold at most this many characters.
    pub const MAX_NAME_CHARS: usize = 200;
    /// Hard ceiling for any entity's `max_participants`.
    pub const MAX_PARTICIPANTS_CEILING: u32 = 10_000;
    /// Default `max_participants` for a new entity.
    pub const DEFAULT_MAX_PARTICIPANTS: u32 = 100;
}
