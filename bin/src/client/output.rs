//! How client commands print: aligned tables for lists, `key: value` blocks
//! for single objects, or (with `--json`) one JSON object per line with
//! RFC 3339 timestamps and enums by name.

use std::io::Write;

use huddle_proto::v1;
use prost_types::Timestamp;
use serde_json::{Value, json};

/// Where a command's results go: stdout, as text or as JSON lines.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    json: bool,
}

impl Out {
    pub fn new(json: bool) -> Self {
        Out { json }
    }

    pub fn is_json(&self) -> bool {
        self.json
    }

    /// One compact JSON object and a newline.
    pub fn json_line(&self, v: &Value) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, v)?;
        out.write_all(b"\n")?;
        out.flush()
    }

    /// Text as is (callers end it with a newline).
    pub fn text(&self, s: &str) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(s.as_bytes())?;
        out.flush()
    }
}

// ---- time ----------------------------------------------------------------

/// RFC 3339 in UTC, `2025-11-22T08:26:40Z`, with `.mmm` when `millis`.
pub fn rfc3339(t: &Timestamp, millis: bool) -> String {
    huddle_core::time::rfc3339(huddle_proto::conversions::ms(t), millis)
}

/// A timestamp for people (to the second), `-` when unset.
pub fn human_ts(t: Option<&Timestamp>) -> String {
    t.map_or_else(|| "-".to_string(), |t| rfc3339(t, false))
}

/// A timestamp for JSON (to the millisecond), `null` when unset.
pub fn json_ts(t: Option<&Timestamp>) -> Value {
    t.map_or(Value::Null, |t| Value::String(rfc3339(t, true)))
}

/// `1h02m03s`, `4m05s`, `6s`, `0.250s`.
pub fn human_duration(ms: i64) -> String {
    let ms = ms.max(0);
    let s = ms / 1_000;
    match (s / 3_600, s % 3_600 / 60, s % 60) {
        (0, 0, 0) => format!("{:.3}s", ms as f64 / 1_000.0),
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec:02}s"),
        (h, m, sec) => format!("{h}h{m:02}m{sec:02}s"),
    }
}

// ---- enums ---------------------------------------------------------------

/// `ACTIVE`, `COMPLETED`, ... (the number for a value this build does not know).
pub fn room_status_name(raw: i32) -> String {
    match v1::RoomStatus::try_from(raw) {
        Ok(s) => s.as_str_name().trim_start_matches("ROOM_STATUS_").to_string(),
        Err(_) => raw.to_string(),
    }
}

/// `HUMAN`, `AGENT`, ...
pub fn participant_kind_name(raw: i32) -> String {
    match v1::ParticipantKind::try_from(raw) {
        Ok(k) => k.as_str_name().trim_start_matches("PARTICIPANT_KIND_").to_string(),
        Err(_) => raw.to_string(),
    }
}

// ---- JSON ----------------------------------------------------------------

pub fn entity_json(e: &v1::Entity) -> Value {
    json!({
        "id": e.id,
        "name": e.name,
        "type": e.r#type,
        "default_instructions": e.default_instructions,
        "max_participants": e.max_participants,
        "recording_retention_days": e.recording_retention_days,
        "active": e.active,
        "created_at": json_ts(e.created_at.as_ref()),
        "updated_at": json_ts(e.updated_at.as_ref()),
    })
}

pub fn department_json(d: &v1::Department) -> Value {
    json!({
        "id": d.id,
        "entity_id": d.entity_id,
        "name": d.name,
        "instructions": d.instructions,
        "created_at": json_ts(d.created_at.as_ref()),
        "updated_at": json_ts(d.updated_at.as_ref()),
    })
}

pub fn api_key_json(k: &v1::ApiKey) -> Value {
    json!({
        "id": k.id,
        "entity_id": k.entity_id,
        "prefix": k.prefix,
        "created_at": json_ts(k.created_at.as_ref()),
        "last_used_at": json_ts(k.last_used_at.as_ref()),
        "revoked_at": json_ts(k.revoked_at.as_ref()),
    })
}

pub fn create_api_key_json(r: &v1::CreateApiKeyResponse) -> Value {
    json!({
        "api_key": r.api_key.as_ref().map_or(Value::Null, api_key_json),
        "secret": r.secret,
    })
}

pub fn participant_json(p: &v1::Participant) -> Value {
    json!({
        "id": p.id,
        "room_id": p.room_id,
        "kind": participant_kind_name(p.kind),
        "display_name": p.display_name,
        "email": p.email,
        "phone": p.phone,
        "identity": p.identity,
        "joined_at": json_ts(p.joined_at.as_ref()),
        "left_at": json_ts(p.left_at.as_ref()),
        "duration_ms": p.duration_ms,
        "livekit_token": p.livekit_token,
        "livekit_url": p.livekit_url,
    })
}

pub fn room_json(r: &v1::Room) -> Value {
    json!({
        "id": r.id,
        "entity_id": r.entity_id,
        "department_id": r.department_id,
        "title": r.title,
        "custom_instructions": r.custom_instructions,
        "effective_instructions": r.effective_instructions,
        "status": room_status_name(r.status),
        "max_participants": r.max_participants,
        "scheduled_for": json_ts(r.scheduled_for.as_ref()),
        "created_at": json_ts(r.created_at.as_ref()),
        "started_at": json_ts(r.started_at.as_ref()),
        "ended_at": json_ts(r.ended_at.as_ref()),
        "cancel_reason": r.cancel_reason,
        "participants": r.participants.iter().map(participant_json).collect::<Vec<_>>(),
        "event_seq": r.event_seq,
        "livekit_room": r.livekit_room,
    })
}

pub fn recording_json(r: &v1::Recording) -> Value {
    json!({
        "egress_id": r.egress_id,
        "room_id": r.room_id,
        "status": r.status,
        "locations": r.locations,
        "started_at": json_ts(r.started_at.as_ref()),
        "ended_at": json_ts(r.ended_at.as_ref()),
        "error": r.error,
    })
}

pub fn recordings_table(recordings: &[v1::Recording]) -> String {
    let mut t = Table::new(&["EGRESS", "STATUS", "STARTED", "ENDED", "LOCATIONS"]);
    for r in recordings {
        t.row(vec![
            r.egress_id.clone(),
            r.status.clone(),
            human_ts(r.started_at.as_ref()),
            human_ts(r.ended_at.as_ref()),
            or_dash(&r.locations.join(" ")),
        ]);
    }
    t.render()
}

/// The event's `data_json` becomes a nested `data` value (kept as a string
/// if it is not valid JSON).
pub fn event_json(e: &v1::RoomEvent) -> Value {
    let data = if e.data_json.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&e.data_json).unwrap_or_else(|_| Value::String(e.data_json.clone()))
    };
    json!({
        "room_id": e.room_id,
        "seq": e.seq,
        "type": e.r#type,
        "data": data,
        "at": json_ts(e.at.as_ref()),
        "snapshot": e.snapshot.as_ref().map_or(Value::Null, room_json),
    })
}

// ---- text ----------------------------------------------------------------

fn or_dash(s: &str) -> String {
    if s.is_empty() { "-".to_string() } else { s.to_string() }
}

/// `key: value` lines with the values aligned; continuation lines of a
/// multi-line value are indented to the value column.
pub fn fields(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0) + 2;
    let mut s = String::new();
    for (k, v) in rows {
        let mut lines = v.lines();
        let first = lines.next().unwrap_or("");
        s.push_str(&format!("{:<width$}{first}\n", format!("{k}:")));
        for l in lines {
            s.push_str(&format!("{:width$}{l}\n", ""));
        }
    }
    s
}

/// An aligned table; the last column is not padded.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&'static str]) -> Self {
        Table { header: header.to_vec(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        // Newlines would break the layout.
        self.rows.push(cells.into_iter().map(|c| c.replace(['\n', '\r'], " ")).collect());
    }

    pub fn render(&self) -> String {
        let n = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate() {
                if i + 1 == n {
                    s.push_str(c);
                } else {
                    s.push_str(c);
                    s.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
                }
            }
            s.truncate(s.trim_end().len());
            s.push('\n');
            s
        };
        let mut out = line(self.header.clone());
        for r in &self.rows {
            out.push_str(&line(r.iter().map(String::as_str).collect()));
        }
        out
    }
}

pub fn entity_text(e: &v1::Entity) -> String {
    fields(&[
        ("id", e.id.clone()),
        ("name", e.name.clone()),
        ("type", or_dash(&e.r#type)),
        ("active", e.active.to_string()),
        ("max_participants", e.max_participants.to_string()),
        ("recording_retention_days", e.recording_retention_days.to_string()),
        ("created_at", human_ts(e.created_at.as_ref())),
        ("updated_at", human_ts(e.updated_at.as_ref())),
        ("default_instructions", or_dash(&e.default_instructions)),
    ])
}

pub fn entities_table(entities: &[v1::Entity]) -> String {
    let mut t = Table::new(&["ID", "ACTIVE", "MAX", "CREATED", "TYPE", "NAME"]);
    for e in entities {
        t.row(vec![
            e.id.clone(),
            if e.active { "yes" } else { "no" }.to_string(),
            e.max_participants.to_string(),
            human_ts(e.created_at.as_ref()),
            or_dash(&e.r#type),
            e.name.clone(),
        ]);
    }
    t.render()
}

pub fn department_text(d: &v1::Department) -> String {
    fields(&[
        ("id", d.id.clone()),
        ("entity_id", d.entity_id.clone()),
        ("name", d.name.clone()),
        ("created_at", human_ts(d.created_at.as_ref())),
        ("updated_at", human_ts(d.updated_at.as_ref())),
        ("instructions", or_dash(&d.instructions)),
    ])
}

pub fn departments_table(departments: &[v1::Department]) -> String {
    let mut t = Table::new(&["ID", "CREATED", "NAME"]);
    for d in departments {
        t.row(vec![d.id.clone(), human_ts(d.created_at.as_ref()), d.name.clone()]);
    }
    t.render()
}

pub fn api_keys_table(keys: &[v1::ApiKey]) -> String {
    let mut t = Table::new(&["ID", "PREFIX", "CREATED", "LAST USED", "REVOKED"]);
    for k in keys {
        t.row(vec![
            k.id.clone(),
            k.prefix.clone(),
            human_ts(k.created_at.as_ref()),
            human_ts(k.last_used_at.as_ref()),
            human_ts(k.revoked_at.as_ref()),
        ]);
    }
    t.render()
}

pub fn api_key_text(k: &v1::ApiKey) -> String {
    fields(&[
        ("id", k.id.clone()),
        ("entity_id", k.entity_id.clone()),
        ("prefix", k.prefix.clone()),
        ("created_at", human_ts(k.created_at.as_ref())),
        ("last_used_at", human_ts(k.last_used_at.as_ref())),
        ("revoked_at", human_ts(k.revoked_at.as_ref())),
    ])
}

pub fn create_api_key_text(r: &v1::CreateApiKeyResponse) -> String {
    let k = r.api_key.clone().unwrap_or_default();
    let mut s = fields(&[
        ("id", k.id),
        ("entity_id", k.entity_id),
        ("prefix", k.prefix),
        ("created_at", human_ts(k.created_at.as_ref())),
        ("secret", r.secret.clone()),
    ]);
    s.push_str("\nThe secret is shown only this once: store it now. Use it with --key or HUDDLE_KEY.\n");
    s
}

pub fn participant_text(p: &v1::Participant) -> String {
    fields(&[
        ("id", p.id.clone()),
        ("room_id", p.room_id.clone()),
        ("kind", participant_kind_name(p.kind)),
        ("display_name", p.display_name.clone()),
        ("identity", or_dash(&p.identity)),
        ("email", or_dash(&p.email)),
        ("phone", or_dash(&p.phone)),
        ("joined_at", human_ts(p.joined_at.as_ref())),
        ("left_at", human_ts(p.left_at.as_ref())),
        ("duration", human_duration(p.duration_ms)),
    ]) + &if p.livekit_token.is_empty() {
        String::new()
    } else {
        fields(&[("livekit_url", p.livekit_url.clone()), ("livekit_token", p.livekit_token.clone())])
    }
}

pub fn participants_table(participants: &[v1::Participant]) -> String {
    let mut t = Table::new(&["ID", "KIND", "JOINED", "LEFT", "DURATION", "IDENTITY", "NAME"]);
    for p in participants {
        t.row(vec![
            p.id.clone(),
            participant_kind_name(p.kind),
            human_ts(p.joined_at.as_ref()),
            human_ts(p.left_at.as_ref()),
            human_duration(p.duration_ms),
            or_dash(&p.identity),
            p.display_name.clone(),
        ]);
    }
    t.render()
}

/// The room's fields, then its participants as a table.
pub fn room_text(r: &v1::Room) -> String {
    let max = if r.max_participants == 0 { "entity maximum".to_string() } else { r.max_participants.to_string() };
    let mut rows = vec![
        ("id", r.id.clone()),
        ("title", r.title.clone()),
        ("status", room_status_name(r.status)),
        ("entity_id", r.entity_id.clone()),
        ("department_id", or_dash(&r.department_id)),
        ("livekit_room", or_dash(&r.livekit_room)),
        ("max_participants", max),
        ("created_at", human_ts(r.created_at.as_ref())),
        ("scheduled_for", human_ts(r.scheduled_for.as_ref())),
        ("started_at", human_ts(r.started_at.as_ref())),
        ("ended_at", human_ts(r.ended_at.as_ref())),
    ];
    if !r.cancel_reason.is_empty() {
        rows.push(("cancel_reason", r.cancel_reason.clone()));
    }
    rows.push(("event_seq", r.event_seq.to_string()));
    rows.push(("custom_instructions", or_dash(&r.custom_instructions)));
    rows.push(("effective_instructions", or_dash(&r.effective_instructions)));
    let mut s = fields(&rows);
    let present = r.participants.iter().filter(|p| p.left_at.is_none()).count();
    s.push_str(&format!("\nparticipants: {present} present, {} in total\n", r.participants.len()));
    if !r.participants.is_empty() {
        s.push_str(&participants_table(&r.participants));
    }
    s
}

pub fn rooms_table(rooms: &[v1::Room]) -> String {
    let mut t = Table::new(&["ID", "STATUS", "ENTITY", "CREATED", "TITLE"]);
    for r in rooms {
        t.row(vec![
            r.id.clone(),
            room_status_name(r.status),
            r.entity_id.clone(),
            human_ts(r.created_at.as_ref()),
            r.title.clone(),
        ]);
    }
    t.render()
}

/// One line per event: `TIME #SEQ TYPE DATA`; the snapshot is summarised.
/// `m:ss.mmm` (or `h:mm:ss.mmm`) of a room-relative time.
pub fn clock_ms(ms: u64) -> String {
    let (h, m, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    if h > 0 { format!("{h}:{m:02}:{s:02}.{milli:03}") } else { format!("{m}:{s:02}.{milli:03}") }
}

pub fn segment_json(s: &v1::TranscriptSegment) -> Value {
    json!({
        "room_id": s.room_id,
        "seq": s.seq,
        "participant_id": s.participant_id,
        "start_ms": s.start_ms,
        "end_ms": s.end_ms,
        "text": s.text,
        "confidence": s.confidence,
        "no_speech_prob": s.no_speech_prob,
        "language": s.language,
        "at": json_ts(s.at.as_ref()),
    })
}

/// `[0:01.230 - 0:03.400] NAME: text`, with NAME the display name when known.
pub fn segment_text(s: &v1::TranscriptSegment, speaker: &str) -> String {
    format!("[{} - {}] {speaker}: {}\n", clock_ms(s.start_ms), clock_ms(s.end_ms), s.text)
}

pub fn event_text(e: &v1::RoomEvent) -> String {
    let at = human_ts(e.at.as_ref());
    if let Some(s) = &e.segment {
        return format!("{at} #{} said {}", e.seq, segment_text(s, &s.participant_id));
    }
    if let Some(s) = &e.suggestion {
        let kind = if s.answer_to_question { "answer" } else { "suggestion" };
        return format!(
            "{at} #{} {kind} ({:.2}) from {} #{}: {}\n",
            e.seq,
            s.score,
            s.filename,
            s.chunk_index,
            crate::client::kb::one_line(&s.text, 160)
        );
    }
    match &e.snapshot {
        Some(r) => {
            let present = r.participants.iter().filter(|p| p.left_at.is_none()).count();
            format!(
                "{at} #{} snapshot: {} \"{}\" {}, {present} present, {} in total\n",
                e.seq,
                r.id,
                r.title,
                room_status_name(r.status),
                r.participants.len()
            )
        }
        None => {
            let data = if e.data_json.is_empty() || e.data_json == "{}" || e.data_json == "null" {
                String::new()
            } else {
                format!(" {}", e.data_json)
            };
            format!("{at} #{} {}{data}\n", e.seq, e.r#type)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(seconds: i64, nanos: i32) -> Timestamp {
        Timestamp { seconds, nanos }
    }

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(&t(0, 0), false), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(&t(0, 0), true), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (leap day) 12:34:56.789
        assert_eq!(rfc3339(&t(951_827_696, 789_000_000), true), "2000-02-29T12:34:56.789Z");
        assert_eq!(rfc3339(&t(1_763_800_000, 0), false), "2025-11-22T08:26:40Z");
        assert_eq!(rfc3339(&t(-1, 0), false), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(&t(4_102_444_800, 0), false), "2100-01-01T00:00:00Z");
    }

    #[test]
    fn enums_print_without_prefix() {
        assert_eq!(room_status_name(v1::RoomStatus::Active as i32), "ACTIVE");
        assert_eq!(room_status_name(42), "42");
        assert_eq!(participant_kind_name(v1::ParticipantKind::Human as i32), "HUMAN");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(250), "0.250s");
        assert_eq!(human_duration(6_000), "6s");
        assert_eq!(human_duration(245_000), "4m05s");
        assert_eq!(human_duration(3_723_000), "1h02m03s");
    }

    #[test]
    fn tables_align() {
        let mut tb = Table::new(&["ID", "NAME"]);
        tb.row(vec!["a".into(), "x".into()]);
        tb.row(vec!["long-id".into(), "y z".into()]);
        assert_eq!(tb.render(), "ID       NAME\na        x\nlong-id  y z\n");
    }

    #[test]
    fn fields_align_and_indent() {
        let s = fields(&[("id", "1".into()), ("instructions", "a\nb".into())]);
        assert_eq!(s, "id:           1\ninstructions: a\n              b\n");
    }

    #[test]
    fn room_json_uses_names_and_rfc3339() {
        let r = v1::Room {
            id: "r1".into(),
            status: v1::RoomStatus::Active as i32,
            created_at: Some(t(0, 5_000_000)),
            participants: vec![v1::Participant {
                id: "p1".into(),
                kind: v1::ParticipantKind::Agent as i32,
                ..Default::default()
            }],
            ..Default::default()
        };
        let v = room_json(&r);
        assert_eq!(v["status"], "ACTIVE");
        assert_eq!(v["created_at"], "1970-01-01T00:00:00.005Z");
        assert_eq!(v["started_at"], Value::Null);
        assert_eq!(v["participants"][0]["kind"], "AGENT");
    }
}
