//! Conversions between `huddle.v1` messages and [`huddle_core`] types.
//!
//! Domain -> proto is total. Proto enums -> domain are fallible because an
//! unknown or unspecified value is a caller error.

mod notify;
pub use notify::{channel, notification_status};

use huddle_core::event::{Segment, Suggestion};
use huddle_core::time::Millis;
use huddle_core::{
    ApiKey, Department, Entity, Participant, ParticipantKind, Room, RoomEvent, RoomEventData, RoomStatus,
    TranscriptSegment,
};
use prost_types::Timestamp;

use crate::v1;

/// Milliseconds since the epoch as a protobuf `Timestamp`.
pub fn ts(ms: Millis) -> Timestamp {
    Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 }
}

/// An optional millisecond time as an optional `Timestamp`.
pub fn opt_ts(ms: Option<Millis>) -> Option<Timestamp> {
    ms.map(ts)
}

/// A protobuf `Timestamp` as milliseconds since the epoch (sub-millisecond
/// precision is dropped).
pub fn ms(t: &Timestamp) -> Millis {
    t.seconds.saturating_mul(1000).saturating_add(i64::from(t.nanos) / 1_000_000)
}

impl From<RoomStatus> for v1::RoomStatus {
    fn from(s: RoomStatus) -> Self {
        match s {
            RoomStatus::Scheduled => v1::RoomStatus::Scheduled,
            RoomStatus::Active => v1::RoomStatus::Active,
            RoomStatus::Completed => v1::RoomStatus::Completed,
            RoomStatus::Cancelled => v1::RoomStatus::Cancelled,
        }
    }
}

/// `None` for `ROOM_STATUS_UNSPECIFIED` or a value this build does not know.
pub fn room_status(raw: i32) -> Option<RoomStatus> {
    match v1::RoomStatus::try_from(raw).ok()? {
        v1::RoomStatus::Unspecified => None,
        v1::RoomStatus::Scheduled => Some(RoomStatus::Scheduled),
        v1::RoomStatus::Active => Some(RoomStatus::Active),
        v1::RoomStatus::Completed => Some(RoomStatus::Completed),
        v1::RoomStatus::Cancelled => Some(RoomStatus::Cancelled),
    }
}

impl From<ParticipantKind> for v1::ParticipantKind {
    fn from(k: ParticipantKind) -> Self {
        match k {
            ParticipantKind::Human => v1::ParticipantKind::Human,
            ParticipantKind::Agent => v1::ParticipantKind::Agent,
        }
    }
}

/// `None` for `PARTICIPANT_KIND_UNSPECIFIED` or an unknown value.
pub fn participant_kind(raw: i32) -> Option<ParticipantKind> {
    match v1::ParticipantKind::try_from(raw).ok()? {
        v1::ParticipantKind::Unspecified => None,
        v1::ParticipantKind::Human => Some(ParticipantKind::Human),
        v1::ParticipantKind::Agent => Some(ParticipantKind::Agent),
    }
}

impl From<Entity> for v1::Entity {
    fn from(e: Entity) -> Self {
        v1::Entity {
            id: e.id,
            name: e.name,
            r#type: e.kind,
            default_instructions: e.default_instructions,
            max_participants: e.max_participants,
            recording_retention_days: e.recording_retention_days,
            active: e.active,
            created_at: Some(ts(e.created_at_ms)),
            updated_at: Some(ts(e.updated_at_ms)),
        }
    }
}

impl From<Department> for v1::Department {
    fn from(d: Department) -> Self {
        v1::Department {
            id: d.id,
            entity_id: d.entity_id,
            name: d.name,
            instructions: d.instructions,
            created_at: Some(ts(d.created_at_ms)),
            updated_at: Some(ts(d.updated_at_ms)),
        }
    }
}

/// A key's record; the hash (and so the secret) never leaves the server.
impl From<ApiKey> for v1::ApiKey {
    fn from(k: ApiKey) -> Self {
        v1::ApiKey {
            id: k.id,
            entity_id: k.entity_id,
            prefix: k.prefix,
            created_at: Some(ts(k.created_at_ms)),
            last_used_at: k.last_used_at_ms.map(ts),
            revoked_at: k.revoked_at_ms.map(ts),
        }
    }
}

/// A participant as seen at `now_ms` (for `duration_ms` of present participants).
pub fn participant(p: Participant, now_ms: Millis) -> v1::Participant {
    let duration_ms = p.duration_ms(now_ms);
    v1::Participant {
        id: p.id,
        room_id: p.room_id,
        kind: v1::ParticipantKind::from(p.kind) as i32,
        display_name: p.display_name,
        email: p.email.unwrap_or_default(),
        phone: p.phone.unwrap_or_default(),
        identity: p.identity,
        joined_at: Some(ts(p.joined_at_ms)),
        left_at: opt_ts(p.left_at_ms),
        duration_ms,
        livekit_token: String::new(),
        livekit_url: String::new(),
    }
}

/// A room with its participants and effective instructions, as seen at `now_ms`.
pub fn room(r: Room, participants: Vec<Participant>, effective_instructions: String, now_ms: Millis) -> v1::Room {
    v1::Room {
        id: r.id,
        entity_id: r.entity_id,
        department_id: r.department_id.unwrap_or_default(),
        title: r.title,
        custom_instructions: r.custom_instructions,
        effective_instructions,
        status: v1::RoomStatus::from(r.status) as i32,
        max_participants: r.max_participants,
        scheduled_for: opt_ts(r.scheduled_for_ms),
        created_at: Some(ts(r.created_at_ms)),
        started_at: opt_ts(r.started_at_ms),
        ended_at: opt_ts(r.ended_at_ms),
        cancel_reason: r.cancel_reason.unwrap_or_default(),
        participants: participants.into_iter().map(|p| participant(p, now_ms)).collect(),
        event_seq: r.event_seq,
        livekit_room: r.livekit_room.unwrap_or_default(),
    }
}

impl From<huddle_core::Recording> for v1::Recording {
    fn from(r: huddle_core::Recording) -> Self {
        v1::Recording {
            egress_id: r.egress_id,
            room_id: r.room_id,
            status: r.status,
            locations: r.locations,
            started_at: opt_ts(r.started_at_ms),
            ended_at: opt_ts(r.ended_at_ms),
            error: r.error.unwrap_or_default(),
        }
    }
}

impl From<RoomEvent> for v1::RoomEvent {
    fn from(e: RoomEvent) -> Self {
        let (segment, suggestion) = match &e.data {
            RoomEventData::TranscriptSegment(s) => (Some(segment_of_event(&e, s)), None),
            RoomEventData::Suggestion(s) => (None, Some(suggestion_of_event(s))),
            _ => (None, None),
        };
        v1::RoomEvent {
            r#type: e.kind().to_string(),
            data_json: e.data.data_json(),
            room_id: e.room_id,
            seq: e.seq,
            at: Some(ts(e.at_ms)),
            snapshot: None,
            segment,
            suggestion,
        }
    }
}

/// The typed segment of a `transcript_segment` event.
fn segment_of_event(e: &RoomEvent, s: &Segment) -> v1::TranscriptSegment {
    v1::TranscriptSegment {
        room_id: e.room_id.clone(),
        seq: e.seq,
        participant_id: s.participant_id.clone(),
        start_ms: s.start_ms,
        end_ms: s.end_ms,
        text: s.text.clone(),
        confidence: s.confidence,
        no_speech_prob: s.no_speech_prob,
        language: s.language.clone(),
        at: Some(ts(e.at_ms)),
    }
}

/// The typed suggestion of a `suggestion` event.
fn suggestion_of_event(s: &Suggestion) -> v1::Suggestion {
    v1::Suggestion {
        text: s.text.clone(),
        document_id: s.document_id.clone(),
        filename: s.filename.clone(),
        chunk_index: s.chunk_index,
        score: s.score,
        answer_to_question: s.answer_to_question,
        segment_seq: s.segment_seq,
        participant_id: s.participant_id.clone(),
    }
}

impl From<TranscriptSegment> for v1::TranscriptSegment {
    fn from(s: TranscriptSegment) -> Self {
        v1::TranscriptSegment {
            room_id: s.room_id,
            seq: s.seq,
            participant_id: s.participant_id,
            start_ms: s.start_ms,
            end_ms: s.end_ms,
            text: s.text,
            confidence: s.confidence,
            no_speech_prob: s.no_speech_prob,
            language: s.language,
            at: Some(ts(s.at_ms)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        for m in [0, 1, 999, 1_000, 1_763_800_000_123, -1, -1_001] {
            assert_eq!(ms(&ts(m)), m, "{m}");
            assert!((0..1_000_000_000).contains(&ts(m).nanos));
        }
    }

    #[test]
    fn enums_reject_unspecified_and_unknown() {
        assert_eq!(room_status(0), None);
        assert_eq!(room_status(99), None);
        assert_eq!(room_status(v1::RoomStatus::Active as i32), Some(RoomStatus::Active));
        assert_eq!(participant_kind(0), None);
        assert_eq!(participant_kind(2), Some(ParticipantKind::Agent));
        for s in [RoomStatus::Scheduled, RoomStatus::Active, RoomStatus::Completed, RoomStatus::Cancelled] {
            assert_eq!(room_status(v1::RoomStatus::from(s) as i32), Some(s));
        }
    }
}
