//! Realistic room contents shared by every bench: a title, about 200
//! characters of instructions, UUID ids, no participants.

use huddle_actors::room::RoomView;
use huddle_core::{Room, RoomStatus, effective_instructions, new_id, now_ms};
use huddle_proto::conversions as conv;
use huddle_proto::v1;

/// The benchmark entity's default instructions.
pub const ENTITY_INSTRUCTIONS: &str =
    "Be concise. Summarise decisions and owners at the end of every meeting. Flag anything that needs legal review.";

/// Each benchmark room's own instructions (about 200 characters).
pub const ROOM_INSTRUCTIONS: &str = "Weekly planning for the platform team: review last week's incidents, agree on \
     the top three priorities, assign owners, and note blockers that need another team's help before Friday. Keep it short.";

pub fn room_title(i: usize) -> String {
    format!("Platform weekly planning #{i}")
}

/// An active room with no participants, as a room actor would load it.
pub fn room(i: usize, entity_id: &str) -> Room {
    let now = now_ms();
    Room {
        id: new_id(),
        entity_id: entity_id.to_string(),
        department_id: None,
        title: room_title(i),
        custom_instructions: ROOM_INSTRUCTIONS.to_string(),
        status: RoomStatus::Active,
        max_participants: 0,
        scheduled_for_ms: None,
        created_at_ms: now,
        started_at_ms: Some(now),
        ended_at_ms: None,
        cancel_reason: None,
        event_seq: 2,
        livekit_room: None,
    }
}

/// The view a room actor starts from when it is handed a preloaded room.
pub fn room_view(i: usize, entity_id: &str) -> RoomView {
    RoomView { room: room(i, entity_id), participants: vec![] }
}

/// Id of the `i`th room the tonic + DashMap peer serves.
pub fn peer_room_id(i: usize) -> String {
    format!("00000000-0000-7000-8000-{i:012}")
}

/// The `i`th room the peer serves: the same fields and sizes as a GetRoom
/// answer from a huddle node for a room created by the gRPC bench.
pub fn peer_room(i: usize) -> v1::Room {
    let mut r = room(i, "00000000-0000-7000-8000-e00000000001");
    r.id = peer_room_id(i);
    let effective = effective_instructions(ENTITY_INSTRUCTIONS, None, ROOM_INSTRUCTIONS);
    conv::room(r, vec![], effective, now_ms())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_instructions_are_about_200_chars() {
        let n = ROOM_INSTRUCTIONS.chars().count();
        assert!((180..=220).contains(&n), "{n}");
    }

    #[test]
    fn peer_rooms_have_distinct_uuid_shaped_ids() {
        assert_eq!(peer_room_id(7).len(), 36);
        assert_ne!(peer_room(1).id, peer_room(2).id);
    }
}
