//! Checks of the caller's side of the room-write contract, run before anything
//! is written: events carry the room's id and consecutive seqs that end at
//! the room's `event_seq`, and participants belong to the room.
//!
//! A violation is a bug in the caller; it is refused as
//! `StorageError::Database(sqlx::Error::InvalidArgument(..))` so that a broken
//! change never reaches the gap-free event log.

use huddle_core::{Room, RoomEvent, RoomEventData};

use crate::{Result, RoomChange, StorageError};

/// The events of a new room must be seqs `1..=room.event_seq`.
pub(crate) fn check_new_room(room: &Room, events: &[RoomEvent]) -> Result<()> {
    check_events(room, 0, events)
}

/// A change's events must be seqs `expected_seq + 1 ..= room.event_seq`, its
/// participants must belong to the room, and each transcript segment must
/// belong to the room and ride on one of the change's `transcript_segment`
/// events.
pub(crate) fn check_change(change: &RoomChange) -> Result<()> {
    check_events(&change.room, change.expected_seq, &change.events)?;
    if let Some(p) = change.participants.iter().find(|p| p.room_id != change.room.id) {
        return Err(invalid(format!(
            "participant `{}` belongs to room `{}`, not to room `{}`",
            p.id, p.room_id, change.room.id
        )));
    }
    for segment in &change.segments {
        let carried =
            change.events.iter().any(|e| e.seq == segment.seq && matches!(e.data, RoomEventData::TranscriptSegment(_)));
        if segment.room_id != change.room.id || !carried {
            return Err(invalid(format!(
                "transcript segment {} of room `{}` has no transcript segment event in this change",
                segment.seq, segment.room_id
            )));
        }
        if segment.end_ms < segment.start_ms {
            return Err(invalid(format!("transcript segment {} ends before it starts", segment.seq)));
        }
    }
    Ok(())
}

fn check_events(room: &Room, after_seq: u64, events: &[RoomEvent]) -> Result<()> {
    let mut last = after_seq;
    for event in events {
        if event.room_id != room.id {
            return Err(invalid(format!(
                "event {} belongs to room `{}`, not to room `{}`",
                event.seq, event.room_id, room.id
            )));
        }
        if Some(event.seq) != last.checked_add(1) {
            return Err(invalid(format!(
                "room `{}`: event seq {} follows seq {last}; seqs must be consecutive",
                room.id, event.seq
            )));
        }
        last = event.seq;
    }
    if last != room.event_seq {
        return Err(invalid(format!(
            "room `{}` has event_seq {} but its events end at seq {last}",
            room.id, room.event_seq
        )));
    }
    Ok(())
}

fn invalid(message: String) -> StorageError {
    StorageError::Database(sqlx::Error::InvalidArgument(message))
}

#[cfg(test)]
mod tests {
    use huddle_core::{Participant, ParticipantKind, RoomStatus};

    use super::*;

    fn room(event_seq: u64) -> Room {
        Room {
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
            event_seq,
            livekit_room: None,
        }
    }

    fn event(room_id: &str, seq: u64) -> RoomEvent {
        RoomEvent { room_id: room_id.into(), seq, data: RoomEventData::Restarted(Default::default()), at_ms: 0 }
    }

    #[test]
    fn new_room_events_start_at_one() {
        assert!(check_new_room(&room(2), &[event("r", 1), event("r", 2)]).is_ok());
        assert!(check_new_room(&room(0), &[]).is_ok());
        assert!(check_new_room(&room(2), &[event("r", 2)]).is_err());
        assert!(check_new_room(&room(1), &[event("r", 1), event("r", 2)]).is_err());
        assert!(check_new_room(&room(1), &[event("other", 1)]).is_err());
    }

    #[test]
    fn change_events_continue_the_log() {
        let change = |expected_seq, events| RoomChange {
            room: room(4),
            expected_seq,
            participants: vec![],
            events,
            segments: vec![],
        };
        assert!(check_change(&change(2, vec![event("r", 3), event("r", 4)])).is_ok());
        assert!(check_change(&change(2, vec![event("r", 4)])).is_err());
        assert!(check_change(&change(2, vec![event("r", 4), event("r", 3)])).is_err());
        assert!(check_change(&change(3, vec![])).is_err());
        assert!(check_change(&change(4, vec![])).is_ok());
    }

    #[test]
    fn participants_belong_to_the_room() {
        let mut change =
            RoomChange { room: room(0), expected_seq: 0, participants: vec![], events: vec![], segments: vec![] };
        change.participants.push(Participant {
            id: "p".into(),
            room_id: "elsewhere".into(),
            kind: ParticipantKind::Human,
            display_name: "Ann".into(),
            email: None,
            phone: None,
            identity: "ann".into(),
            joined_at_ms: 0,
            left_at_ms: None,
        });
        assert!(check_change(&change).is_err());
        change.participants[0].room_id = "r".into();
        assert!(check_change(&change).is_ok());
    }
}
