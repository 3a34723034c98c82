//! The proto -> domain conversions of the gRPC API (`huddle_proto::conversions`): the
//! first byte picks a request message, the rest is decoded with prost and converted as
//! the service does. Enum conversions must agree with their inverse, timestamps must
//! survive the millisecond round trip, and a room event with any JSON converts.

#![no_main]

use huddle_core::{NewParticipant, NewRoom, RoomEvent, RoomEventData};
use huddle_proto::conversions::{self as conv, ms, ts};
use huddle_proto::v1;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use prost_types::Timestamp;

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// A `Timestamp` to milliseconds and back: in range, and exact to the millisecond for a
/// well-formed `Timestamp` within ±292 million years.
fn check_time(t: &Timestamp) -> i64 {
    let m = ms(t);
    let back = ts(m);
    assert!((0..1_000_000_000).contains(&back.nanos), "{t:?} -> {m} -> {back:?}");
    if (0..1_000_000_000).contains(&t.nanos) && t.seconds.unsigned_abs() < i64::MAX as u64 / 1000 - 1 {
        assert_eq!((back.seconds, back.nanos), (t.seconds, t.nanos / 1_000_000 * 1_000_000), "{t:?} -> {m}");
    }
    m
}

fn check_enums(raw: i32) {
    if let Some(s) = conv::room_status(raw) {
        assert_eq!(v1::RoomStatus::from(s) as i32, raw);
    }
    if let Some(k) = conv::participant_kind(raw) {
        assert_eq!(v1::ParticipantKind::from(k) as i32, raw);
    }
    if let Some(c) = conv::channel(raw) {
        assert_eq!(v1::Channel::from(c) as i32, raw);
    }
    if let Some(s) = conv::notification_status(raw) {
        assert_eq!(v1::NotificationStatus::from(s) as i32, raw);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else { return };
    match which % 7 {
        0 => {
            let Ok(r) = v1::CreateRoomRequest::decode(bytes) else { return };
            let _ = NewRoom {
                entity_id: r.entity_id,
                department_id: non_empty(r.department_id),
                title: r.title,
                custom_instructions: r.custom_instructions,
                max_participants: r.max_participants,
                scheduled_for_ms: r.scheduled_for.as_ref().map(check_time),
                livekit_room: non_empty(r.livekit_room),
            };
        }
        1 => {
            let Ok(r) = v1::ListRoomsRequest::decode(bytes) else { return };
            check_enums(r.status);
            let _ = r.created_after.as_ref().map(check_time);
            let _ = r.created_before.as_ref().map(check_time);
        }
        2 => {
            let Ok(r) = v1::JoinRoomRequest::decode(bytes) else { return };
            check_enums(r.kind);
            let Some(kind) = conv::participant_kind(r.kind) else { return };
            let _ = NewParticipant {
                kind,
                display_name: r.display_name,
                email: non_empty(r.email),
                phone: non_empty(r.phone),
                identity: r.identity,
            };
        }
        3 => {
            let Ok(r) = v1::SendRequest::decode(bytes) else { return };
            check_enums(r.channel);
            if !r.data_json.trim().is_empty() {
                let _ = serde_json::from_str::<serde_json::Value>(&r.data_json);
            }
            let _ = r.scheduled_for.as_ref().map(check_time);
        }
        4 => {
            let Ok(r) = v1::ListNotificationsRequest::decode(bytes) else { return };
            check_enums(r.status);
            check_enums(r.channel);
        }
        5 => {
            let Ok(r) = v1::SetPreferenceRequest::decode(bytes) else { return };
            check_enums(r.channel);
        }
        _ => {
            // A room event with arbitrary JSON data, back to proto (the typed segment and
            // suggestion are read out of the JSON).
            let Ok(r) = v1::RoomEvent::decode(bytes) else { return };
            let at_ms = r.at.as_ref().map(check_time).unwrap_or_default();
            // a kind whose data does not fit its payload is refused, as storage refuses it
            let Ok(data) = RoomEventData::from_json(&r.r#type, &r.data_json) else { return };
            let event = RoomEvent { room_id: r.room_id, seq: r.seq, data, at_ms };
            let segment = matches!(event.data, RoomEventData::TranscriptSegment(_));
            let suggestion = matches!(event.data, RoomEventData::Suggestion(_));
            let out = v1::RoomEvent::from(event);
            assert_eq!(out.at.as_ref().map(ms), Some(at_ms));
            assert_eq!(out.segment.is_some(), segment);
            assert_eq!(out.suggestion.is_some(), suggestion);
        }
    }
});
