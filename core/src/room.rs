//! Rooms, their lifecycle, participants and the per-room event log.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::event::RoomEventData;
use crate::time::Millis;

/// The lifecycle of a room.
///
/// ```text
/// SCHEDULED -> ACTIVE -> COMPLETED
/// SCHEDULED -> CANCELLED
/// ACTIVE    -> CANCELLED
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RoomStatus {
    Scheduled,
    Active,
    Completed,
    Cancelled,
}

impl RoomStatus {
    /// Whether `self -> to` is an edge of the lifecycle.
    pub fn can_transition_to(self, to: RoomStatus) -> bool {
        use RoomStatus::*;
        matches!((self, to), (Scheduled, Active) | (Active, Completed) | (Scheduled, Cancelled) | (Active, Cancelled))
    }

    /// Completed and cancelled rooms are over: they hold no actor.
    pub fn is_terminal(self) -> bool {
        matches!(self, RoomStatus::Completed | RoomStatus::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RoomStatus::Scheduled => "SCHEDULED",
            RoomStatus::Active => "ACTIVE",
            RoomStatus::Completed => "COMPLETED",
            RoomStatus::Cancelled => "CANCELLED",
        }
    }
}

impl fmt::Display for RoomStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown status or kind name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`")]
pub struct ParseEnumError {
    pub what: &'static str,
    pub value: String,
}

impl FromStr for RoomStatus {
    type Err = ParseEnumError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "SCHEDULED" => Ok(RoomStatus::Scheduled),
            "ACTIVE" => Ok(RoomStatus::Active),
            "COMPLETED" => Ok(RoomStatus::Completed),
            "CANCELLED" => Ok(RoomStatus::Cancelled),
            _ => Err(ParseEnumError { what: "room status", value: s.to_string() }),
        }
    }
}

/// A meeting room. `event_seq` is the sequence number of the last event
/// appended to the room's log (0 before any).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Room {
    pub id: String,
    pub entity_id: String,
    pub department_id: Option<String>,
    pub title: String,
    pub custom_instructions: String,
    pub status: RoomStatus,
    /// 0 means "the entity's maximum".
    pub max_participants: u32,
    pub scheduled_for_ms: Option<Millis>,
    pub created_at_ms: Millis,
    pub started_at_ms: Option<Millis>,
    pub ended_at_ms: Option<Millis>,
    pub cancel_reason: Option<String>,
    pub event_seq: u64,
    /// The LiveKit room this room is bound to, if any: starting the room makes
    /// the agent join it, and LiveKit's webhooks keep the two in step.
    pub livekit_room: Option<String>,
}

impl Room {
    /// The cap that applies to this room: its own, never above the entity's.
    pub fn participant_cap(&self, entity_max: u32) -> u32 {
        if self.max_participants == 0 { entity_max } else { self.max_participants.min(entity_max) }
    }
}

/// What a caller supplies to create a room.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewRoom {
    pub entity_id: String,
    pub department_id: Option<String>,
    pub title: String,
    pub custom_instructions: String,
    pub max_participants: u32,
    pub scheduled_for_ms: Option<Millis>,
    pub livekit_room: Option<String>,
}

/// Who a participant is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ParticipantKind {
    Human,
    Agent,
}

impl ParticipantKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ParticipantKind::Human => "HUMAN",
            ParticipantKind::Agent => "AGENT",
        }
    }
}

impl fmt::Display for ParticipantKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ParticipantKind {
    type Err = ParseEnumError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "HUMAN" => Ok(ParticipantKind::Human),
            "AGENT" => Ok(ParticipantKind::Agent),
            _ => Err(ParseEnumError { what: "participant kind", value: s.to_string() }),
        }
    }
}

/// A participant of a room. A participant who left and joins again gets a new
/// record; `left_at_ms` is `None` while they are in the room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    pub id: String,
    pub room_id: String,
    pub kind: ParticipantKind,
    pub display_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// A caller-chosen stable identity (a user id, a LiveKit identity, ...).
    pub identity: String,
    pub joined_at_ms: Millis,
    pub left_at_ms: Option<Millis>,
}

impl Participant {
    /// Time in the room: until `left_at_ms`, or until `now_ms` while present.
    pub fn duration_ms(&self, now_ms: Millis) -> Millis {
        (self.left_at_ms.unwrap_or(now_ms) - self.joined_at_ms).max(0)
    }

    pub fn is_present(&self) -> bool {
        self.left_at_ms.is_none()
    }
}

/// What a caller supplies to join a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewParticipant {
    pub kind: ParticipantKind,
    pub display_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// Empty means "generate one".
    pub identity: String,
}

/// One entry of a room's append-only event log. Its JSON form is
/// `{room_id, seq, kind, data, at_ms}`, `kind` and `data` coming from
/// [`RoomEventData`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomEvent {
    pub room_id: String,
    /// 1-based, gap-free within a room.
    pub seq: u64,
    /// What happened: the kind and its typed payload.
    #[serde(flatten)]
    pub data: RoomEventData,
    pub at_ms: Millis,
}

impl RoomEvent {
    /// The event's kind, e.g. `participant_joined`.
    pub fn kind(&self) -> &str {
        self.data.kind()
    }
}

/// A recording of a LiveKit room, reported by LiveKit's `egress_ended` webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recording {
    /// LiveKit's egress id.
    pub egress_id: String,
    pub room_id: String,
    /// LiveKit's egress status name, e.g. `EGRESS_COMPLETE` or `EGRESS_FAILED`.
    pub status: String,
    /// Where the files went (file names or URLs).
    pub locations: Vec<String>,
    pub started_at_ms: Option<Millis>,
    pub ended_at_ms: Option<Millis>,
    pub error: Option<String>,
    pub recorded_at_ms: Millis,
}

/// Entity, department and room instructions joined in that order, skipping
/// empty parts, separated by a blank line.
pub fn effective_instructions(entity: &str, department: Option<&str>, room: &str) -> String {
    [Some(entity), department, Some(room)]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_edges() {
        use RoomStatus::*;
        let all = [Scheduled, Active, Completed, Cancelled];
        let mut allowed = vec![];
        for from in all {
            for to in all {
                if from.can_transition_to(to) {
                    allowed.push((from, to));
                }
            }
        }
        assert_eq!(
            allowed,
            vec![(Scheduled, Active), (Scheduled, Cancelled), (Active, Completed), (Active, Cancelled)]
        );
    }

    #[test]
    fn cap_never_exceeds_entity() {
        let mut room = Room {
            id: "r".into(),
            entity_id: "e".into(),
            department_id: None,
            title: "t".into(),
            custom_instructions: String::new(),
            status: RoomStatus::Scheduled,
            max_participants: 0,
            scheduled_for_ms: None,
            created_at_ms: 0,
            started_at_ms: None,
            ended_at_ms: None,
            cancel_reason: None,
            event_seq: 0,
            livekit_room: None,
        };
        assert_eq!(room.participant_cap(10), 10);
        room.max_participants = 50;
        assert_eq!(room.participant_cap(10), 10);
        room.max_participants = 3;
        assert_eq!(room.participant_cap(10), 3);
    }

    #[test]
    fn instructions_join_in_order() {
        assert_eq!(effective_instructions("a", Some("b"), "c"), "a\n\nb\n\nc");
        assert_eq!(effective_instructions("a", None, " "), "a");
        assert_eq!(effective_instructions("", Some(""), "c"), "c");
    }

    #[test]
    fn status_parse_round_trip() {
        for s in ["SCHEDULED", "active", "Completed", "CANCELLED"] {
            let st: RoomStatus = s.parse().unwrap();
            assert_eq!(st.as_str(), s.to_ascii_uppercase());
        }
        assert!("ENDED".parse::<RoomStatus>().is_err());
    }
}
