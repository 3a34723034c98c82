//! What happens in a room: one typed payload per room event kind.
//!
//! A room event is `{kind, data}`: [`RoomEventData`] is an enum with one variant
//! per kind, serialised adjacently tagged (`{"kind": "participant_joined",
//! "data": {...}}`). That JSON form is derived here, once: storage keeps `kind`
//! and `data` in two columns ([`RoomEventData::from_parts`],
//! [`RoomEventData::data_json`]) and the wire carries `type` and `data_json`
//! the same way. Producers build variants and consumers `match` on them, so a
//! new kind is a new variant and the compiler lists every place that must
//! handle it.
//!
//! # Byte compatibility
//! The payloads serialise to exactly the JSON that the untyped events of
//! earlier versions held (`serde_json::json!` maps, whose keys come out
//! sorted): payload fields are declared in sorted order, optional fields are
//! written as `null` unless documented as omitted, and `f32` fields are written
//! as the `f64` they widen to. The tests below pin every kind's bytes.
//!
//! # Reading tolerantly
//! A payload field that an old row lacks takes its default, and fields a newer
//! node added are ignored. A kind this version does not know (written by a
//! newer node) is kept as [`RoomEventData::Unknown`] with its data as is, so
//! one new kind never makes a whole log unreadable; a known kind whose data
//! does not fit its payload is an error.

use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::room::{ParticipantKind, RoomStatus};
use crate::time::Millis;

/// The payload of a room event, tagged with its kind.
///
/// Payloads larger than the untyped `kind: String, data: Value` pair were
/// (56 bytes) are boxed, so a [`crate::RoomEvent`] stays 96 bytes: the size of
/// a slot of every room's watch channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum RoomEventData {
    /// The room was created (always seq 1).
    Created(Box<Created>),
    /// SCHEDULED -> ACTIVE.
    Started(Transition),
    /// ACTIVE -> COMPLETED: the room's last event.
    Completed(Transition),
    /// SCHEDULED or ACTIVE -> CANCELLED: the room's last event.
    Cancelled(Transition),
    ParticipantJoined(Box<ParticipantJoined>),
    ParticipantLeft(Box<ParticipantLeft>),
    /// A final transcript segment; the stored segment has the event's seq.
    TranscriptSegment(Box<Segment>),
    /// Knowledge the room was told about.
    Suggestion(Box<Suggestion>),
    /// Transcription fell behind and dropped audio.
    TranscriptionDegraded(TranscriptionDegraded),
    /// The room's transcriber failed and will be restarted.
    TranscriberRestarted(TranscriberRestarted),
    /// The room actor was restarted from persisted state.
    Restarted(Restarted),
    /// A kind this version does not know, e.g. written by a newer node: kept
    /// as stored and passed on unchanged. Never built for a known kind.
    #[serde(untagged)]
    Unknown {
        #[serde(deserialize_with = "unknown_kind")]
        kind: String,
        #[serde(default)]
        data: Value,
    },
}

impl RoomEventData {
    /// Every kind this version knows, in declaration order.
    pub const KINDS: [&'static str; 11] = [
        "created",
        "started",
        "completed",
        "cancelled",
        "participant_joined",
        "participant_left",
        "transcript_segment",
        "suggestion",
        "transcription_degraded",
        "transcriber_restarted",
        "restarted",
    ];

    /// The event's kind: the `kind` of its JSON form.
    pub fn kind(&self) -> &str {
        let i = match self {
            RoomEventData::Created(_) => 0,
            RoomEventData::Started(_) => 1,
            RoomEventData::Completed(_) => 2,
            RoomEventData::Cancelled(_) => 3,
            RoomEventData::ParticipantJoined(_) => 4,
            RoomEventData::ParticipantLeft(_) => 5,
            RoomEventData::TranscriptSegment(_) => 6,
            RoomEventData::Suggestion(_) => 7,
            RoomEventData::TranscriptionDegraded(_) => 8,
            RoomEventData::TranscriberRestarted(_) => 9,
            RoomEventData::Restarted(_) => 10,
            RoomEventData::Unknown { kind, .. } => return kind,
        };
        Self::KINDS[i]
    }

    /// The event built from its two stored halves, the kind and the `data`
    /// JSON. An unknown kind becomes [`RoomEventData::Unknown`].
    pub fn from_parts(kind: &str, data: Value) -> Result<Self, serde_json::Error> {
        let mut tagged = serde_json::Map::new();
        tagged.insert("kind".into(), Value::String(kind.to_string()));
        tagged.insert("data".into(), data);
        serde_json::from_value(Value::Object(tagged)).map_err(|e| {
            if Self::KINDS.contains(&kind) {
                serde_json::Error::custom(format!("the data of a `{kind}` event does not fit it: {e}"))
            } else {
                e
            }
        })
    }

    /// [`RoomEventData::from_parts`] from the `data` JSON text.
    pub fn from_json(kind: &str, data_json: &str) -> Result<Self, serde_json::Error> {
        Self::from_parts(kind, serde_json::from_str(data_json)?)
    }

    /// The `data` half of the JSON form, as text: what storage's `data` column
    /// and the wire's `data_json` hold.
    pub fn data_json(&self) -> String {
        serde_json::to_string(&Payload(self)).expect("room event payloads always serialise")
    }

    /// The `data` half of the JSON form, as a value.
    pub fn data_value(&self) -> Value {
        serde_json::to_value(Payload(self)).expect("room event payloads always serialise")
    }
}

impl fmt::Display for RoomEventData {
    /// `kind data_json`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind(), self.data_json())
    }
}

/// Serialises only the payload of an event (its `data`).
struct Payload<'a>(&'a RoomEventData);

impl Serialize for Payload<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            RoomEventData::Created(d) => d.serialize(s),
            RoomEventData::Started(d) | RoomEventData::Completed(d) | RoomEventData::Cancelled(d) => d.serialize(s),
            RoomEventData::ParticipantJoined(d) => d.serialize(s),
            RoomEventData::ParticipantLeft(d) => d.serialize(s),
            RoomEventData::TranscriptSegment(d) => d.serialize(s),
            RoomEventData::Suggestion(d) => d.serialize(s),
            RoomEventData::TranscriptionDegraded(d) => d.serialize(s),
            RoomEventData::TranscriberRestarted(d) => d.serialize(s),
            RoomEventData::Restarted(d) => d.serialize(s),
            RoomEventData::Unknown { data, .. } => data.serialize(s),
        }
    }
}

/// The kind of an [`RoomEventData::Unknown`] event: a known kind here means
/// that its data did not fit the kind's payload.
fn unknown_kind<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let kind = String::deserialize(d)?;
    if RoomEventData::KINDS.contains(&kind.as_str()) {
        return Err(D::Error::custom(format!("malformed data of a `{kind}` event")));
    }
    Ok(kind)
}

// Payloads. Fields are declared in sorted order (see the module docs).

/// `created`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Created {
    pub department_id: Option<String>,
    pub entity_id: String,
    pub livekit_room: Option<String>,
    pub title: String,
}

/// `started`, `completed` and `cancelled`: one edge of the room lifecycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub from: RoomStatus,
    /// Why the room was cancelled; omitted when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub to: RoomStatus,
}

/// `participant_joined`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantJoined {
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub identity: String,
    pub kind: ParticipantKind,
    #[serde(default)]
    pub participant_id: String,
}

/// `participant_left`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ParticipantLeft {
    /// Time in the room.
    pub duration_ms: Millis,
    pub identity: String,
    pub participant_id: String,
    /// `left`, `room ended`, ...
    pub why: String,
}

/// `transcript_segment`: what [`crate::TranscriptSegment`] holds, less what
/// the event itself carries (room, seq, time).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Segment {
    #[serde(with = "wide_f32")]
    pub confidence: f32,
    pub end_ms: u64,
    pub language: String,
    #[serde(with = "wide_f32")]
    pub no_speech_prob: f32,
    pub participant_id: String,
    /// Milliseconds since the room started.
    pub start_ms: u64,
    pub text: String,
}

/// `suggestion`: a knowledge chunk offered to the room.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Suggestion {
    pub answer_to_question: bool,
    pub chunk_index: u32,
    pub document_id: String,
    pub filename: String,
    /// [`Suggestion::PROACTIVE_TIP`].
    pub interaction_type: String,
    /// The chunk's id in the entity's index.
    pub item_id: u64,
    /// Who said what the suggestion answers.
    pub participant_id: String,
    #[serde(with = "wide_f32")]
    pub score: f32,
    /// The seq of the transcript segment it answers.
    pub segment_seq: u64,
    pub text: String,
}

impl Suggestion {
    /// The `interaction_type` of a suggestion nobody asked for.
    pub const PROACTIVE_TIP: &'static str = "proactive_tip";
}

/// `transcription_degraded`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TranscriptionDegraded {
    pub dropped_ms: u64,
    pub queued_ms: u64,
    pub reason: String,
}

/// `transcriber_restarted`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TranscriberRestarted {
    pub reason: String,
    /// Failures of the room's transcriber so far.
    pub restarts: u32,
}

/// `restarted`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Restarted {
    pub reason: String,
}

/// An `f32` written as the `f64` it widens to, as `serde_json::json!` wrote
/// it (`0.9f32` is `0.8999999761581421`); a non-finite value is `null`, and
/// `null` reads back as NaN.
mod wide_f32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(f64::from(*v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.map_or(f32::NAN, |v| v as f32))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::RoomEvent;

    /// One event of every kind, with the `data` JSON that the untyped code wrote
    /// for it: the literal, and the producer's `json!` of that code (copied from
    /// api.rs and actors/src/room.rs before events were typed).
    fn samples() -> Vec<(RoomEventData, &'static str, Value)> {
        let (from, to) = (RoomStatus::Scheduled, RoomStatus::Cancelled);
        let reason: Option<String> = Some("storm".into());
        let no_dept: Option<String> = None;
        let (confidence, no_speech_prob, score) = (0.9f32, 0.013f32, 0.8125f32);
        vec![
            (
                RoomEventData::Created(Box::new(Created {
                    department_id: Some("d-1".into()),
                    entity_id: "e-1".into(),
                    livekit_room: Some("standup-42".into()),
                    title: "Standup \"Ünïcode\" <&>".into(),
                })),
                r#"{"department_id":"d-1","entity_id":"e-1","livekit_room":"standup-42","title":"Standup \"Ünïcode\" <&>"}"#,
                json!({
                    "title": "Standup \"Ünïcode\" <&>", "entity_id": "e-1", "department_id": Some("d-1"),
                    "livekit_room": Some("standup-42"),
                }),
            ),
            (
                RoomEventData::Created(Box::new(Created {
                    entity_id: "e-1".into(),
                    title: "t".into(),
                    ..Default::default()
                })),
                r#"{"department_id":null,"entity_id":"e-1","livekit_room":null,"title":"t"}"#,
                json!({ "title": "t", "entity_id": "e-1", "department_id": no_dept, "livekit_room": no_dept }),
            ),
            (
                RoomEventData::Started(Transition {
                    from: RoomStatus::Scheduled,
                    reason: None,
                    to: RoomStatus::Active,
                }),
                r#"{"from":"SCHEDULED","to":"ACTIVE"}"#,
                json!({ "from": RoomStatus::Scheduled.as_str(), "to": RoomStatus::Active.as_str() }),
            ),
            (
                RoomEventData::Completed(Transition {
                    from: RoomStatus::Active,
                    reason: None,
                    to: RoomStatus::Completed,
                }),
                r#"{"from":"ACTIVE","to":"COMPLETED"}"#,
                json!({ "from": "ACTIVE", "to": "COMPLETED" }),
            ),
            (
                RoomEventData::Cancelled(Transition { from, reason: reason.clone(), to }),
                r#"{"from":"SCHEDULED","reason":"storm","to":"CANCELLED"}"#,
                {
                    let mut data = json!({ "from": from.as_str(), "to": to.as_str() });
                    if let Some(r) = reason {
                        data["reason"] = json!(r);
                    }
                    data
                },
            ),
            (
                RoomEventData::ParticipantJoined(Box::new(ParticipantJoined {
                    display_name: "Ada".into(),
                    identity: "ada".into(),
                    kind: ParticipantKind::Human,
                    participant_id: "p-1".into(),
                })),
                r#"{"display_name":"Ada","identity":"ada","kind":"HUMAN","participant_id":"p-1"}"#,
                json!({ "participant_id": "p-1", "kind": ParticipantKind::Human.as_str(), "display_name": "Ada", "identity": "ada" }),
            ),
            (
                RoomEventData::ParticipantLeft(Box::new(ParticipantLeft {
                    duration_ms: 61_234,
                    identity: "agent-1f2e".into(),
                    participant_id: "p-2".into(),
                    why: "room ended".into(),
                })),
                r#"{"duration_ms":61234,"identity":"agent-1f2e","participant_id":"p-2","why":"room ended"}"#,
                json!({ "participant_id": "p-2", "identity": "agent-1f2e", "duration_ms": 61_234i64, "why": "room ended" }),
            ),
            (
                RoomEventData::TranscriptSegment(Box::new(Segment {
                    confidence,
                    end_ms: 3_400,
                    language: "en".into(),
                    no_speech_prob,
                    participant_id: "p-1".into(),
                    start_ms: 1_230,
                    text: "Hello, \"world\" — ünïcode".into(),
                })),
                r#"{"confidence":0.8999999761581421,"end_ms":3400,"language":"en","no_speech_prob":0.013000000268220901,"participant_id":"p-1","start_ms":1230,"text":"Hello, \"world\" — ünïcode"}"#,
                json!({
                    "participant_id": "p-1",
                    "start_ms": 1_230u64,
                    "end_ms": 3_400u64,
                    "text": "Hello, \"world\" — ünïcode",
                    "confidence": confidence,
                    "no_speech_prob": no_speech_prob,
                    "language": "en",
                }),
            ),
            (
                RoomEventData::Suggestion(Box::new(Suggestion {
                    answer_to_question: true,
                    chunk_index: 7,
                    document_id: "doc-1".into(),
                    filename: "report.pdf".into(),
                    interaction_type: Suggestion::PROACTIVE_TIP.into(),
                    item_id: u64::MAX,
                    participant_id: "p-1".into(),
                    score,
                    segment_seq: 5,
                    text: "Q3 revenue was 4.2M".into(),
                })),
                r#"{"answer_to_question":true,"chunk_index":7,"document_id":"doc-1","filename":"report.pdf","interaction_type":"proactive_tip","item_id":18446744073709551615,"participant_id":"p-1","score":0.8125,"segment_seq":5,"text":"Q3 revenue was 4.2M"}"#,
                json!({
                    "interaction_type": "proactive_tip",
                    "item_id": u64::MAX,
                    "text": "Q3 revenue was 4.2M",
                    "document_id": "doc-1",
                    "filename": "report.pdf",
                    "chunk_index": 7u32,
                    "score": score,
                    "answer_to_question": true,
                    "segment_seq": 5u64,
                    "participant_id": "p-1",
                }),
            ),
            (
                RoomEventData::TranscriptionDegraded(TranscriptionDegraded {
                    dropped_ms: 1_500,
                    queued_ms: 30_000,
                    reason: "transcription fell behind; oldest queued audio dropped".into(),
                }),
                r#"{"dropped_ms":1500,"queued_ms":30000,"reason":"transcription fell behind; oldest queued audio dropped"}"#,
                json!({ "dropped_ms": 1_500u64, "queued_ms": 30_000u64, "reason": "transcription fell behind; oldest queued audio dropped" }),
            ),
            (
                RoomEventData::TranscriberRestarted(TranscriberRestarted {
                    reason: "panicked: injected".into(),
                    restarts: 2,
                }),
                r#"{"reason":"panicked: injected","restarts":2}"#,
                json!({ "reason": "panicked: injected".to_string(), "restarts": 2u32 }),
            ),
            (
                RoomEventData::Restarted(Restarted { reason: "actor failed: injected panic".into() }),
                r#"{"reason":"actor failed: injected panic"}"#,
                json!({ "reason": "actor failed: injected panic" }),
            ),
        ]
    }

    #[test]
    fn every_kind_serialises_as_the_untyped_events_did() {
        let samples = samples();
        let kinds: Vec<&str> = samples.iter().map(|(e, ..)| e.kind()).collect();
        for kind in RoomEventData::KINDS {
            assert!(kinds.contains(&kind), "no sample of `{kind}`");
        }
        for (event, bytes, old) in samples {
            assert_eq!(old.to_string(), bytes, "the pinned bytes of `{}` are what json! wrote", event.kind());
            assert_eq!(event.data_json(), bytes, "{}", event.kind());
            assert_eq!(event.data_value(), old, "{}", event.kind());
            let tagged = serde_json::to_string(&event).unwrap();
            assert_eq!(tagged, format!(r#"{{"kind":"{}","data":{bytes}}}"#, event.kind()));
            // and back, unchanged
            let read = RoomEventData::from_json(event.kind(), bytes).unwrap();
            assert_eq!(read, event);
            assert_eq!(read.data_json(), bytes);
            assert_eq!(serde_json::from_str::<RoomEventData>(&tagged).unwrap(), event);
        }
    }

    #[test]
    fn a_whole_event_serialises_as_the_untyped_struct_did() {
        let data = RoomEventData::Restarted(Restarted { reason: "r".into() });
        let event = RoomEvent { room_id: "room-1".into(), seq: 3, data, at_ms: 1_763_800_000_123 };
        let bytes = r#"{"room_id":"room-1","seq":3,"kind":"restarted","data":{"reason":"r"},"at_ms":1763800000123}"#;
        assert_eq!(serde_json::to_string(&event).unwrap(), bytes);
        assert_eq!(serde_json::from_str::<RoomEvent>(bytes).unwrap(), event);
        assert_eq!(event.kind(), "restarted");
    }

    #[test]
    fn unknown_kinds_are_kept_as_they_are() {
        let data = r#"{"nested":{"list":[1,2.5,"three",null]},"z":1}"#;
        let event = RoomEventData::from_json("poll_opened", data).unwrap();
        assert_eq!(
            event,
            RoomEventData::Unknown { kind: "poll_opened".into(), data: serde_json::from_str(data).unwrap() }
        );
        assert_eq!((event.kind(), event.data_json().as_str()), ("poll_opened", data));
        let tagged = serde_json::to_string(&event).unwrap();
        assert_eq!(tagged, format!(r#"{{"kind":"poll_opened","data":{data}}}"#));
        assert_eq!(serde_json::from_str::<RoomEventData>(&tagged).unwrap(), event);
        let null = RoomEventData::from_parts("note", Value::Null).unwrap();
        assert_eq!(null.data_json(), "null");
    }

    #[test]
    fn missing_fields_default_and_extra_fields_are_ignored() {
        let e = RoomEventData::from_json("created", "{}").unwrap();
        assert_eq!(e, RoomEventData::Created(Box::default()));
        let e = RoomEventData::from_json("restarted", r#"{"reason":"x","since":"a newer node"}"#).unwrap();
        assert_eq!(e, RoomEventData::Restarted(Restarted { reason: "x".into() }));
        let e = RoomEventData::from_json("transcript_segment", r#"{"text":"hi","confidence":null}"#).unwrap();
        let RoomEventData::TranscriptSegment(s) = e else { panic!("{e:?}") };
        assert_eq!(s.text, "hi");
        assert!(s.confidence.is_nan());
        assert!(RoomEventData::TranscriptSegment(s).data_json().contains(r#""confidence":null"#));
    }

    #[test]
    fn a_known_kind_with_data_that_does_not_fit_is_an_error() {
        let err = RoomEventData::from_json("started", r#"{"from":"NOWHERE","to":"ACTIVE"}"#).unwrap_err();
        assert!(err.to_string().contains("`started`"), "{err}");
        assert!(RoomEventData::from_json("participant_left", r#"{"duration_ms":"long"}"#).is_err());
        assert!(RoomEventData::from_json("restarted", "[1]").is_err());
        assert!(RoomEventData::from_json("restarted", "{not json").is_err());
        let tagged = r#"{"kind":"completed","data":7}"#;
        assert!(serde_json::from_str::<RoomEventData>(tagged).is_err());
    }

    #[test]
    fn an_event_is_no_larger_than_the_untyped_one_was() {
        assert_eq!(size_of::<RoomEventData>(), 56);
        assert_eq!(size_of::<RoomEvent>(), 96);
    }
}
