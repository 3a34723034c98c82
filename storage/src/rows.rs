//! Row types both backends read, their conversion into domain types, and the
//! integer and error conversions between Rust and SQL.
//!
//! Rows come back with SQL types (`i64`, `String`); turning them into domain
//! types checks every value, so a bad stored value becomes
//! [`StorageError::Corrupt`] rather than a panic.

use huddle_core::limits::DEFAULT_MAX_PARTICIPANTS;
use huddle_core::time::Millis;
use huddle_core::{
    ApiKey, Department, Entity, NewDepartment, NewEntity, Participant, Room, RoomEvent, RoomEventData,
    TranscriptSegment, new_id, now_ms,
};

use crate::page::Cursor;
use crate::{Result, StorageError};

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct EntityRow {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub default_instructions: String,
    pub max_participants: i64,
    pub recording_retention_days: i64,
    pub active: bool,
    pub created_at_ms: Millis,
    pub updated_at_ms: Millis,
}

impl TryFrom<EntityRow> for Entity {
    type Error = StorageError;

    fn try_from(row: EntityRow) -> Result<Entity> {
        Ok(Entity {
            max_participants: to_u32(row.max_participants, "entities.max_participants")?,
            recording_retention_days: to_u32(row.recording_retention_days, "entities.recording_retention_days")?,
            id: row.id,
            name: row.name,
            kind: row.kind,
            default_instructions: row.default_instructions,
            active: row.active,
            created_at_ms: row.created_at_ms,
            updated_at_ms: row.updated_at_ms,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct DepartmentRow {
    pub id: String,
    pub entity_id: String,
    pub name: String,
    pub instructions: String,
    pub created_at_ms: Millis,
    pub updated_at_ms: Millis,
}

impl From<DepartmentRow> for Department {
    fn from(row: DepartmentRow) -> Department {
        Department {
            id: row.id,
            entity_id: row.entity_id,
            name: row.name,
            instructions: row.instructions,
            created_at_ms: row.created_at_ms,
            updated_at_ms: row.updated_at_ms,
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ApiKeyRow {
    pub id: String,
    pub entity_id: String,
    pub key_hash: String,
    pub prefix: String,
    pub created_at_ms: Millis,
    pub last_used_at_ms: Option<Millis>,
    pub revoked_at_ms: Option<Millis>,
}

impl From<ApiKeyRow> for ApiKey {
    fn from(row: ApiKeyRow) -> ApiKey {
        ApiKey {
            id: row.id,
            entity_id: row.entity_id,
            key_hash: row.key_hash,
            prefix: row.prefix,
            created_at_ms: row.created_at_ms,
            last_used_at_ms: row.last_used_at_ms,
            revoked_at_ms: row.revoked_at_ms,
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RoomRow {
    pub id: String,
    pub entity_id: String,
    pub department_id: Option<String>,
    pub title: String,
    pub custom_instructions: String,
    pub status: String,
    pub max_participants: i64,
    pub scheduled_for_ms: Option<Millis>,
    pub created_at_ms: Millis,
    pub started_at_ms: Option<Millis>,
    pub ended_at_ms: Option<Millis>,
    pub cancel_reason: Option<String>,
    pub event_seq: i64,
    pub livekit_room: Option<String>,
}

impl TryFrom<RoomRow> for Room {
    type Error = StorageError;

    fn try_from(row: RoomRow) -> Result<Room> {
        Ok(Room {
            status: row.status.parse().map_err(|e| corrupt("rooms.status", e))?,
            max_participants: to_u32(row.max_participants, "rooms.max_participants")?,
            event_seq: to_u64(row.event_seq, "rooms.event_seq")?,
            id: row.id,
            entity_id: row.entity_id,
            department_id: row.department_id,
            title: row.title,
            custom_instructions: row.custom_instructions,
            scheduled_for_ms: row.scheduled_for_ms,
            created_at_ms: row.created_at_ms,
            started_at_ms: row.started_at_ms,
            ended_at_ms: row.ended_at_ms,
            cancel_reason: row.cancel_reason,
            livekit_room: row.livekit_room,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RecordingRow {
    pub egress_id: String,
    pub room_id: String,
    pub status: String,
    pub locations: String,
    pub started_at_ms: Option<Millis>,
    pub ended_at_ms: Option<Millis>,
    pub error: Option<String>,
    pub recorded_at_ms: Millis,
}

impl TryFrom<RecordingRow> for huddle_core::Recording {
    type Error = StorageError;

    fn try_from(row: RecordingRow) -> Result<huddle_core::Recording> {
        Ok(huddle_core::Recording {
            locations: serde_json::from_str(&row.locations).map_err(|e| corrupt("recordings.locations", e))?,
            egress_id: row.egress_id,
            room_id: row.room_id,
            status: row.status,
            started_at_ms: row.started_at_ms,
            ended_at_ms: row.ended_at_ms,
            error: row.error,
            recorded_at_ms: row.recorded_at_ms,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ParticipantRow {
    pub id: String,
    pub room_id: String,
    pub kind: String,
    pub display_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub identity: String,
    pub joined_at_ms: Millis,
    pub left_at_ms: Option<Millis>,
}

impl TryFrom<ParticipantRow> for Participant {
    type Error = StorageError;

    fn try_from(row: ParticipantRow) -> Result<Participant> {
        Ok(Participant {
            kind: row.kind.parse().map_err(|e| corrupt("participants.kind", e))?,
            id: row.id,
            room_id: row.room_id,
            display_name: row.display_name,
            email: row.email,
            phone: row.phone,
            identity: row.identity,
            joined_at_ms: row.joined_at_ms,
            left_at_ms: row.left_at_ms,
        })
    }
}

/// An event row; `data` is the JSON document as text on both backends.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct EventRow {
    pub room_id: String,
    pub seq: i64,
    pub kind: String,
    pub data: String,
    pub at_ms: Millis,
}

impl TryFrom<EventRow> for RoomEvent {
    type Error = StorageError;

    fn try_from(row: EventRow) -> Result<RoomEvent> {
        Ok(RoomEvent {
            seq: to_u64(row.seq, "room_events.seq")?,
            data: RoomEventData::from_json(&row.kind, &row.data).map_err(|e| corrupt("room_events.data", e))?,
            room_id: row.room_id,
            at_ms: row.at_ms,
        })
    }
}

/// A transcript segment row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SegmentRow {
    pub room_id: String,
    pub seq: i64,
    pub participant_id: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub text: String,
    pub confidence: f64,
    pub no_speech_prob: f64,
    pub language: String,
    pub at_ms: Millis,
}

impl TryFrom<SegmentRow> for TranscriptSegment {
    type Error = StorageError;

    fn try_from(row: SegmentRow) -> Result<TranscriptSegment> {
        Ok(TranscriptSegment {
            seq: to_u64(row.seq, "transcript_segments.seq")?,
            start_ms: to_u64(row.start_ms, "transcript_segments.start_ms")?,
            end_ms: to_u64(row.end_ms, "transcript_segments.end_ms")?,
            room_id: row.room_id,
            participant_id: row.participant_id,
            text: row.text,
            confidence: row.confidence as f32,
            no_speech_prob: row.no_speech_prob as f32,
            language: row.language,
            at_ms: row.at_ms,
        })
    }
}

/// The keyset position of a segment in `list_transcript`: its seq within the room.
pub(crate) fn segment_cursor(segment: &TranscriptSegment) -> Cursor {
    Cursor { created_at_ms: segment.seq as i64, id: segment.room_id.clone() }
}

/// A new entity with a fresh id, both timestamps now, the default
/// `max_participants` when none is given, and active.
pub(crate) fn new_entity(new: NewEntity) -> Entity {
    let now = now_ms();
    Entity {
        id: new_id(),
        name: new.name,
        kind: new.kind,
        default_instructions: new.default_instructions,
        max_participants: new.max_participants.unwrap_or(DEFAULT_MAX_PARTICIPANTS),
        recording_retention_days: new.recording_retention_days,
        active: true,
        created_at_ms: now,
        updated_at_ms: now,
    }
}

/// A new department with a fresh id and both timestamps now.
pub(crate) fn new_department(new: NewDepartment) -> Department {
    let now = now_ms();
    Department {
        id: new_id(),
        entity_id: new.entity_id,
        name: new.name,
        instructions: new.instructions,
        created_at_ms: now,
        updated_at_ms: now,
    }
}

/// Converts every row, failing on the first corrupt one.
pub(crate) fn convert<R, T>(rows: Vec<R>) -> Result<Vec<T>>
where
    T: TryFrom<R, Error = StorageError>,
{
    rows.into_iter().map(T::try_from).collect()
}

/// The keyset position of an entity in `list_entities`.
pub(crate) fn entity_cursor(entity: &Entity) -> Cursor {
    Cursor { created_at_ms: entity.created_at_ms, id: entity.id.clone() }
}

/// The keyset position of a room in `list_rooms`.
pub(crate) fn room_cursor(room: &Room) -> Cursor {
    Cursor { created_at_ms: room.created_at_ms, id: room.id.clone() }
}

/// The `kind` and `data` columns of an event (read back by `TryFrom<EventRow>`).
pub(crate) fn event_columns(event: &RoomEvent) -> (&str, String) {
    (event.kind(), event.data.data_json())
}

/// A `u64` counter (an event seq) as the `BIGINT` that stores it.
pub(crate) fn seq_to_db(seq: u64) -> Result<i64> {
    i64::try_from(seq).map_err(|_| {
        StorageError::Database(sqlx::Error::InvalidArgument(format!(
            "event seq {seq} is above the largest storable value {}",
            i64::MAX
        )))
    })
}

/// An `after_seq` bound as a `BIGINT`: any seq above the storable range is
/// past every stored event.
pub(crate) fn after_seq_to_db(after_seq: u64) -> i64 {
    i64::try_from(after_seq).unwrap_or(i64::MAX)
}

fn to_u32(value: i64, column: &'static str) -> Result<u32> {
    u32::try_from(value).map_err(|_| corrupt(column, format!("{value} is not a valid u32")))
}

pub(crate) fn to_u64(value: i64, column: &'static str) -> Result<u64> {
    u64::try_from(value).map_err(|_| corrupt(column, format!("{value} is negative")))
}

pub(crate) fn corrupt(column: &'static str, message: impl ToString) -> StorageError {
    StorageError::Corrupt { column, message: message.to_string() }
}

/// Whether a database error is the violation of a unique (or primary key)
/// constraint.
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Whether a database error is the violation of a foreign key constraint.
pub(crate) fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_foreign_key_violation())
}

/// `$from, $from+1, ...`: `n` numbered placeholders for an `IN (...)` list.
pub(crate) fn placeholders(from: usize, n: usize) -> String {
    (from..from + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// `n` rows of `($from, $from+1, ...)` with `types.len()` values each; a non-empty
/// type wraps its value in `CAST(.. AS type)`.
pub(crate) fn value_rows(from: usize, n: usize, types: &[&str]) -> String {
    let w = types.len();
    (0..n)
        .map(|r| {
            let cols = types
                .iter()
                .enumerate()
                .map(|(c, t)| {
                    let p = from + r * w + c;
                    if t.is_empty() { format!("${p}") } else { format!("CAST(${p} AS {t})") }
                })
                .collect::<Vec<_>>()
                .join(", ");
            format!("({cols})")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn not_found(what: &'static str, id: &str) -> StorageError {
    StorageError::NotFound { what, id: id.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room_row(status: &str, event_seq: i64) -> RoomRow {
        RoomRow {
            id: "r".into(),
            entity_id: "e".into(),
            department_id: None,
            title: "t".into(),
            custom_instructions: String::new(),
            status: status.into(),
            max_participants: 0,
            scheduled_for_ms: None,
            created_at_ms: 1,
            started_at_ms: None,
            ended_at_ms: None,
            cancel_reason: None,
            event_seq,
            livekit_room: None,
        }
    }

    #[test]
    fn bad_values_are_corrupt_not_panics() {
        let err = Room::try_from(room_row("ENDED", 0)).unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { column: "rooms.status", .. }), "{err}");
        let err = Room::try_from(room_row("ACTIVE", -1)).unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { column: "rooms.event_seq", .. }), "{err}");
        let event =
            EventRow { room_id: "r".into(), seq: 1, kind: "created".into(), data: "{not json".into(), at_ms: 0 };
        let err = RoomEvent::try_from(event).unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { column: "room_events.data", .. }), "{err}");
        assert!(to_u32(i64::from(u32::MAX) + 1, "c").is_err());
        assert_eq!(to_u32(7, "c").unwrap(), 7);
    }

    #[test]
    fn seqs_above_i64_are_refused() {
        assert_eq!(seq_to_db(42).unwrap(), 42);
        assert!(seq_to_db(u64::MAX).is_err());
    }
}
