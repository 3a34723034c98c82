//! `huddle room ...`.

use clap::{Args, Subcommand, ValueEnum};
use huddle_proto::v1;
use tokio_stream::StreamExt;

use crate::client::output::{self, Out};
use crate::client::{Client, Connection};

#[derive(Debug, Args)]
pub struct RoomArgs {
    #[command(flatten)]
    pub conn: Connection,
    #[command(subcommand)]
    pub command: RoomCommand,
}

/// A room's lifecycle state: SCHEDULED -> ACTIVE -> COMPLETED, and
/// SCHEDULED or ACTIVE -> CANCELLED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusArg {
    Scheduled,
    Active,
    Completed,
    Cancelled,
}

impl From<StatusArg> for v1::RoomStatus {
    fn from(s: StatusArg) -> Self {
        match s {
            StatusArg::Scheduled => v1::RoomStatus::Scheduled,
            StatusArg::Active => v1::RoomStatus::Active,
            StatusArg::Completed => v1::RoomStatus::Completed,
            StatusArg::Cancelled => v1::RoomStatus::Cancelled,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// A person.
    Human,
    /// An AI agent.
    Agent,
}

impl From<KindArg> for v1::ParticipantKind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Human => v1::ParticipantKind::Human,
            KindArg::Agent => v1::ParticipantKind::Agent,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum RoomCommand {
    /// Create a room (SCHEDULED). Prints the new room.
    Create {
        /// The entity that owns the room.
        #[arg(long = "entity", value_name = "ENTITY_ID")]
        entity_id: String,
        /// Title, 1-200 characters.
        #[arg(long)]
        title: String,
        /// A department of the entity; its instructions apply to the room.
        #[arg(long = "department", value_name = "DEPARTMENT_ID")]
        department_id: Option<String>,
        /// Instructions for this room, added after the entity's and the department's.
        #[arg(long)]
        instructions: Option<String>,
        /// Participant cap for this room, never above the entity's [default: the entity's].
        #[arg(long, value_name = "N")]
        max_participants: Option<u32>,
        /// Bind the room to the LiveKit room of this name: JoinRoom then returns
        /// LiveKit tokens, and LiveKit's webhooks keep the room in step. Needs
        /// LiveKit configured on the server.
        #[arg(long, value_name = "NAME")]
        livekit_room: Option<String>,
    },
    /// List rooms, newest first.
    List {
        /// Only rooms of this entity.
        #[arg(long = "entity", value_name = "ENTITY_ID")]
        entity_id: Option<String>,
        /// Only rooms in this state.
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        /// Rooms per page (at most 500) [default: 50].
        #[arg(long, value_name = "N")]
        page_size: Option<u32>,
        /// Continue from a previous listing's next page token.
        #[arg(long, value_name = "TOKEN", conflicts_with = "all")]
        page_token: Option<String>,
        /// Fetch every page, not just the first.
        #[arg(long)]
        all: bool,
    },
    /// Show a room with its participants and effective instructions.
    Get {
        /// The room's id.
        id: String,
    },
    /// Start a SCHEDULED room (it becomes ACTIVE).
    Start {
        /// The room's id.
        id: String,
    },
    /// End an ACTIVE room (it becomes COMPLETED; everyone still in it leaves).
    End {
        /// The room's id.
        id: String,
    },
    /// Cancel a SCHEDULED or ACTIVE room.
    Cancel {
        /// The room's id.
        id: String,
        /// Why the room is cancelled (required).
        #[arg(long)]
        reason: String,
    },
    /// Add a participant to an ACTIVE room. Prints the participant; its id
    /// is what `room leave` takes.
    Join {
        /// The room's id.
        id: String,
        /// Display name, 1-200 characters.
        #[arg(long)]
        name: String,
        /// Who joins.
        #[arg(long, value_enum, default_value = "human")]
        kind: KindArg,
        /// Email address.
        #[arg(long)]
        email: Option<String>,
        /// Phone number.
        #[arg(long)]
        phone: Option<String>,
        /// A stable identity of your choosing (a user id, ...); generated when not
        /// given. Not allowed for a room bound to a LiveKit room: huddle assigns it.
        #[arg(long)]
        identity: Option<String>,
    },
    /// Mark a participant as having left the room.
    Leave {
        /// The room's id.
        id: String,
        /// The participant's id (as printed by `room join` or `room get`).
        #[arg(long = "participant", value_name = "PARTICIPANT_ID")]
        participant_id: String,
    },
    /// Print the room's events as they happen: first a snapshot of the room,
    /// then every event in order, until the room ends or Ctrl-C.
    Watch {
        /// The room's id.
        id: String,
    },
    /// Stream a WAV file into an ACTIVE room as a participant's audio.
    ///
    /// The server transcribes it locally and records each utterance in the
    /// room's transcript (see `room watch` and `room transcript`). By default
    /// the file is sent at real-time speed, as a live microphone would;
    /// --speed 0 sends it as fast as possible. Prints a summary when the last
    /// utterance is transcribed. The first stream on a server loads the speech
    /// model, which takes a few seconds (longer if it must be fetched).
    Stream {
        /// The room's id.
        id: String,
        /// The participant speaking (as printed by `room join`).
        #[arg(long = "participant", value_name = "PARTICIPANT_ID")]
        participant_id: String,
        /// A WAV file: PCM 8/16/24/32-bit or 32-bit float, any rate and channels
        /// (mixed down to mono).
        file: std::path::PathBuf,
        /// Playback speed: 1 is real time, 2 twice as fast, 0 as fast as possible.
        #[arg(long, default_value_t = 1.0, value_name = "X")]
        speed: f64,
        /// Audio per chunk, in milliseconds.
        #[arg(long, default_value_t = 100, value_name = "MS", value_parser = clap::value_parser!(u32).range(10..=5000))]
        chunk_ms: u32,
    },
    /// List a LiveKit-backed room's recordings (from LiveKit egress webhooks).
    Recordings {
        /// The room's id.
        id: String,
    },
    /// Print a room's transcript, oldest first.
    Transcript {
        /// The room's id.
        id: String,
        /// Segments per page (at most 500) [default: 50].
        #[arg(long, value_name = "N")]
        page_size: Option<u32>,
        /// Continue from a previous listing's next page token.
        #[arg(long, value_name = "TOKEN", conflicts_with = "all")]
        page_token: Option<String>,
        /// Fetch every page, not just the first.
        #[arg(long)]
        all: bool,
    },
}

fn print_room(out: Out, r: &v1::Room) -> anyhow::Result<()> {
    if out.is_json() {
        out.json_line(&output::room_json(r))?
    } else {
        out.text(&output::room_text(r))?
    }
    Ok(())
}

fn print_participant(out: Out, p: &v1::Participant) -> anyhow::Result<()> {
    if out.is_json() {
        out.json_line(&output::participant_json(p))?
    } else {
        out.text(&output::participant_text(p))?
    }
    Ok(())
}

pub async fn run(c: &mut Client, cmd: RoomCommand) -> anyhow::Result<()> {
    let out = c.out;
    match cmd {
        RoomCommand::Create { entity_id, title, department_id, instructions, max_participants, livekit_room } => {
            let req = v1::CreateRoomRequest {
                entity_id,
                department_id: department_id.unwrap_or_default(),
                title,
                custom_instructions: instructions.unwrap_or_default(),
                max_participants: max_participants.unwrap_or_default(),
                scheduled_for: None,
                livekit_room: livekit_room.unwrap_or_default(),
            };
            let r = c.rooms.create_room(req).await?.into_inner();
            print_room(out, &r)
        }
        RoomCommand::List { entity_id, status, page_size, page_token, all } => {
            list(c, entity_id, status, page_size, page_token, all).await
        }
        RoomCommand::Recordings { id } => {
            let r = c.rooms.list_recordings(v1::ListRecordingsRequest { room_id: id }).await?.into_inner();
            if out.is_json() {
                for rec in &r.recordings {
                    out.json_line(&output::recording_json(rec))?;
                }
            } else {
                out.text(&output::recordings_table(&r.recordings))?;
            }
            Ok(())
        }
        RoomCommand::Get { id } => {
            let r = c.rooms.get_room(v1::GetRoomRequest { id }).await?.into_inner();
            print_room(out, &r)
        }
        RoomCommand::Start { id } => {
            let r = c.rooms.start_room(v1::StartRoomRequest { id }).await?.into_inner();
            print_room(out, &r)
        }
        RoomCommand::End { id } => {
            let r = c.rooms.end_room(v1::EndRoomRequest { id }).await?.into_inner();
            print_room(out, &r)
        }
        RoomCommand::Cancel { id, reason } => {
            let r = c.rooms.cancel_room(v1::CancelRoomRequest { id, reason }).await?.into_inner();
            print_room(out, &r)
        }
        RoomCommand::Join { id, name, kind, email, phone, identity } => {
            let req = v1::JoinRoomRequest {
                room_id: id,
                kind: v1::ParticipantKind::from(kind) as i32,
                display_name: name,
                email: email.unwrap_or_default(),
                phone: phone.unwrap_or_default(),
                identity: identity.unwrap_or_default(),
            };
            let p = c.rooms.join_room(req).await?.into_inner();
            print_participant(out, &p)
        }
        RoomCommand::Leave { id, participant_id } => {
            let p = c.rooms.leave_room(v1::LeaveRoomRequest { room_id: id, participant_id }).await?.into_inner();
            print_participant(out, &p)
        }
        RoomCommand::Watch { id } => watch(c, id).await,
        RoomCommand::Stream { id, participant_id, file, speed, chunk_ms } => {
            stream(c, id, participant_id, &file, speed, chunk_ms).await
        }
        RoomCommand::Transcript { id, page_size, page_token, all } => {
            transcript(c, id, page_size, page_token, all).await
        }
    }
}

async fn stream(
    c: &mut Client,
    room_id: String,
    participant_id: String,
    file: &std::path::Path,
    speed: f64,
    chunk_ms: u32,
) -> anyhow::Result<()> {
    use anyhow::Context;
    if !(speed.is_finite() && speed >= 0.0) {
        anyhow::bail!("--speed must be 0 (as fast as possible) or a positive number");
    }
    let wav = huddle_models::audio::wav::read_wav(file).with_context(|| format!("cannot stream {}", file.display()))?;
    let rate = wav.sample_rate;
    let pcm = huddle_models::audio::wav::encode_pcm16(&wav.samples, rate);
    let chunk_bytes = (rate as usize * chunk_ms as usize / 1000).max(1) * 2;
    let pace = (speed > 0.0).then(|| std::time::Duration::from_secs_f64(chunk_ms as f64 / 1000.0 / speed));
    let chunks: Vec<Vec<u8>> = pcm.chunks(chunk_bytes).map(<[u8]>::to_vec).collect();
    let total_ms = wav.samples.len() as u64 * 1000 / u64::from(rate);
    let (first_room, first_participant) = (room_id.clone(), participant_id.clone());
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        let mut ticker = pace.map(tokio::time::interval);
        for (i, pcm16) in chunks.into_iter().enumerate() {
            if let Some(t) = ticker.as_mut() {
                t.tick().await;
            }
            let first = i == 0;
            let chunk = v1::AudioChunk {
                room_id: if first { first_room.clone() } else { String::new() },
                participant_id: if first { first_participant.clone() } else { String::new() },
                sample_rate: if first { rate } else { 0 },
                pcm16,
            };
            if tx.send(chunk).await.is_err() {
                return; // the call failed; its error is reported below
            }
        }
    });
    let outbound = tokio_stream::wrappers::ReceiverStream::new(rx);
    if !c.out.is_json() {
        eprintln!(
            "streaming {} ({:.1} s at {rate} Hz) into room {room_id}...",
            file.display(),
            total_ms as f64 / 1000.0
        );
    }
    let r = c.rooms.stream_audio(outbound).await?.into_inner();
    if c.out.is_json() {
        c.out.json_line(&serde_json::json!({
            "room_id": room_id,
            "participant_id": participant_id,
            "audio_ms": r.audio_ms,
            "utterances": r.utterances,
            "segments": r.segments,
            "dropped_ms": r.dropped_ms,
        }))?;
    } else {
        let mut line = format!(
            "sent {:.1} s of audio: {} utterances, {} transcript segments recorded",
            r.audio_ms as f64 / 1000.0,
            r.utterances,
            r.segments
        );
        if r.dropped_ms > 0 {
            line += &format!(" ({:.1} s dropped: transcription fell behind)", r.dropped_ms as f64 / 1000.0);
        }
        c.out.text(&format!("{line}\n"))?;
    }
    Ok(())
}

async fn transcript(
    c: &mut Client,
    room_id: String,
    page_size: Option<u32>,
    page_token: Option<String>,
    all: bool,
) -> anyhow::Result<()> {
    let out = c.out;
    let names: std::collections::HashMap<String, String> = if out.is_json() {
        Default::default()
    } else {
        let room = c.rooms.get_room(v1::GetRoomRequest { id: room_id.clone() }).await?.into_inner();
        room.participants.into_iter().map(|p| (p.id, p.display_name)).collect()
    };
    let mut token = page_token.unwrap_or_default();
    let next = loop {
        let req = v1::GetTranscriptRequest {
            room_id: room_id.clone(),
            page_size: page_size.unwrap_or_default(),
            page_token: token,
        };
        let resp = c.rooms.get_transcript(req).await?.into_inner();
        for s in &resp.segments {
            if out.is_json() {
                out.json_line(&output::segment_json(s))?;
            } else {
                let speaker = names.get(&s.participant_id).map_or(s.participant_id.as_str(), String::as_str);
                out.text(&output::segment_text(s, speaker))?;
            }
        }
        if !all || resp.next_page_token.is_empty() {
            break resp.next_page_token;
        }
        token = resp.next_page_token;
    };
    if !next.is_empty() {
        eprintln!("more segments: pass --page-token {next} for the next page, or --all for every page");
    }
    Ok(())
}

async fn list(
    c: &mut Client,
    entity_id: Option<String>,
    status: Option<StatusArg>,
    page_size: Option<u32>,
    page_token: Option<String>,
    all: bool,
) -> anyhow::Result<()> {
    let out = c.out;
    let mut rooms = Vec::new();
    let mut token = page_token.unwrap_or_default();
    let next = loop {
        let req = v1::ListRoomsRequest {
            entity_id: entity_id.clone().unwrap_or_default(),
            status: status.map_or(v1::RoomStatus::Unspecified, v1::RoomStatus::from) as i32,
            created_after: None,
            created_before: None,
            page_size: page_size.unwrap_or_default(),
            page_token: token,
        };
        let resp = c.rooms.list_rooms(req).await?.into_inner();
        if out.is_json() {
            for r in &resp.rooms {
                out.json_line(&output::room_json(r))?;
            }
        } else {
            rooms.extend(resp.rooms);
        }
        if !all || resp.next_page_token.is_empty() {
            break resp.next_page_token;
        }
        token = resp.next_page_token;
    };
    if !out.is_json() {
        out.text(&output::rooms_table(&rooms))?;
    }
    if !next.is_empty() {
        eprintln!("more rooms: pass --page-token {next} for the next page, or --all for every page");
    }
    Ok(())
}

async fn watch(c: &mut Client, id: String) -> anyhow::Result<()> {
    let out = c.out;
    let mut stream = c.rooms.watch_room(v1::WatchRoomRequest { id }).await?.into_inner();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let item = tokio::select! {
            item = stream.next() => item,
            _ = &mut ctrl_c => return Ok(()),
        };
        match item {
            None => return Ok(()),
            Some(Err(status)) => return Err(status.into()),
            Some(Ok(event)) => {
                if out.is_json() {
                    out.json_line(&output::event_json(&event))?;
                } else {
                    out.text(&output::event_text(&event))?;
                }
            }
        }
    }
}
