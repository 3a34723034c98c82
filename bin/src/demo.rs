//! `huddle demo`: everything huddle does, offline, in one command.
//!
//! Starts a node in this process on a temporary SQLite database (real gRPC server on
//! loopback), creates an entity, ingests a small bundled knowledge base, and plays a
//! bundled two-person meeting (espeak-ng speech) into a room through StreamAudio at
//! real-time speed, one stream per participant. The live transcript and the knowledge
//! suggestions are printed as watchers receive them, then a summary.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use huddle_models::fetch::{self, WhisperModel};
use huddle_models::ggml::Quant;
use huddle_proto::v1;
use huddle_runtime::Config;
use huddle_runtime::server::Server;
use serde_json::json;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::client::kb::one_line;
use crate::client::output::{Out, clock_ms};

const SCRIPT: &str = include_str!("../demo/script.json");
const TRACKS: [(&str, &[u8]); 2] =
    [("ada.wav", include_bytes!("../demo/ada.wav")), ("ben.wav", include_bytes!("../demo/ben.wav"))];
const KNOWLEDGE: [(&str, &str); 3] = [
    ("refund-policy.md", include_str!("../demo/kb/refund-policy.md")),
    ("onboarding.md", include_str!("../demo/kb/onboarding.md")),
    ("security.md", include_str!("../demo/kb/security.md")),
];

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Playback speed of the meeting: 1 is real time, 2 twice as fast.
    #[arg(long, default_value_t = 1.0, value_name = "X")]
    speed: f64,
    /// Models directory [default: $HUDDLE_MODELS_DIR or ~/.cache/huddle/models].
    #[arg(long, value_name = "DIR")]
    models_dir: Option<PathBuf>,
    /// Keep the demo's database and index in this directory instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Print one JSON object per line (transcript, suggestion, summary) instead of text.
    #[arg(long)]
    json: bool,
}

pub fn main(args: DemoArgs) -> ExitCode {
    if let Err(e) = crate::init_tracing("warn", false) {
        crate::print_error(&format!("{e:#}"));
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            crate::print_error(&format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            crate::print_error(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

struct Speaker {
    name: String,
    wav: String,
}

#[derive(Default)]
struct Stats {
    segments: usize,
    suggestions: usize,
    answers: usize,
    transcript_latency_ms: Vec<u64>,
}

async fn run(args: DemoArgs) -> anyhow::Result<()> {
    if !(args.speed.is_finite() && args.speed > 0.0) {
        bail!("--speed must be a positive number");
    }
    let out = Out::new(args.json);
    let say = |line: String| {
        if !args.json {
            println!("{line}");
        }
    };
    let script: serde_json::Value = serde_json::from_str(SCRIPT)?;

    // 1. models
    let models_dir = match &args.models_dir {
        Some(d) => d.clone(),
        None => fetch::default_models_dir()?,
    };
    let dir = models_dir.clone();
    let (whisper, _embedder) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let whisper = crate::models::fetch_whisper_bar(WhisperModel::TinyEn, Quant::Q8_0, &dir, false)?;
        let embedder = crate::models::fetch_embedder_bar(&dir, false)?;
        Ok((whisper.path, embedder.dir))
    })
    .await??;

    // 2. a node on a temporary database
    let tmp = tempfile::tempdir()?;
    let data_dir = args.data_dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
    let key = format!("demo-{}", huddle_core::new_id());
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse()?;
    config.server.http = "127.0.0.1:0".parse()?;
    config.server.admin_key = Some(key.clone());
    config.database.url = format!("sqlite://{}", data_dir.join("demo.db").display());
    config.speech.whisper_model = Some(whisper);
    config.speech.fetch_missing = false;
    config.knowledge.models_dir = Some(models_dir);
    config.knowledge.fetch_missing = false;
    let server = Server::bind(config).await?;
    let url = format!("http://{}", server.grpc_addr());
    let stop = CancellationToken::new();
    let node = tokio::spawn({
        let stop = stop.clone();
        async move { server.run(stop).await }
    });
    say(format!("huddle node on {url}, database in {}", data_dir.display()));
    let mut c = crate::client::connect(&url, &key, out).await?;

    // 3. an entity and its knowledge base
    let entity = c
        .entities
        .create_entity(v1::CreateEntityRequest { name: "Acme Support".into(), ..Default::default() })
        .await?
        .into_inner();
    let started = Instant::now();
    let mut jobs = Vec::new();
    for (name, text) in KNOWLEDGE {
        let meta = v1::DocumentMetadata { entity_id: entity.id.clone(), filename: name.into(), ..Default::default() };
        let parts = vec![
            v1::IngestDocumentRequest { part: Some(v1::ingest_document_request::Part::Metadata(meta)) },
            v1::IngestDocumentRequest { part: Some(v1::ingest_document_request::Part::Data(text.as_bytes().to_vec())) },
        ];
        jobs.push(c.knowledge.ingest_document(tokio_stream::iter(parts)).await?.into_inner().job_id);
    }
    let mut chunks = 0;
    for id in jobs {
        loop {
            let job = c.knowledge.get_ingest_job(v1::GetIngestJobRequest { job_id: id.clone() }).await?.into_inner();
            if job.status == v1::IngestStatus::Completed as i32 {
                chunks += job.document.map_or(0, |d| d.chunks);
                break;
            }
            if job.status == v1::IngestStatus::Failed as i32 {
                bail!("the bundled document {id} failed to ingest: {}", job.error);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    say(format!(
        "knowledge base: {} documents, {chunks} chunks, ingested in {} ms",
        KNOWLEDGE.len(),
        started.elapsed().as_millis()
    ));

    // 4. the room and its people
    let title = script["title"].as_str().unwrap_or("Demo meeting").to_string();
    let room = c
        .rooms
        .create_room(v1::CreateRoomRequest { entity_id: entity.id.clone(), title: title.clone(), ..Default::default() })
        .await?
        .into_inner();
    let room = c.rooms.start_room(v1::StartRoomRequest { id: room.id }).await?.into_inner();
    let mut speakers = Vec::new();
    let mut names = HashMap::new();
    for (key, s) in script["speakers"].as_object().context("script has no speakers")? {
        let name = s["name"].as_str().unwrap_or(key).to_string();
        let p = c
            .rooms
            .join_room(v1::JoinRoomRequest {
                room_id: room.id.clone(),
                kind: v1::ParticipantKind::Human as i32,
                display_name: name.clone(),
                identity: key.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        names.insert(p.id.clone(), name.clone());
        speakers.push((p.id, Speaker { name, wav: s["wav"].as_str().unwrap_or_default().to_string() }));
    }
    say(format!(
        "room \"{title}\" {} is live with {}",
        room.id,
        speakers.iter().map(|s| s.1.name.as_str()).collect::<Vec<_>>().join(" and ")
    ));
    say(format!("playing the meeting at {}x real time...\n", args.speed));

    // 5. watch: print the transcript and suggestions as they arrive
    let mut watch = c.rooms.watch_room(v1::WatchRoomRequest { id: room.id.clone() }).await?.into_inner();
    let started_at_ms = room.started_at.as_ref().map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000);
    let play_start_wall = huddle_core::now_ms();
    let play_start = Instant::now();
    let speed = args.speed;
    let json = args.json;
    let watcher = tokio::spawn(async move {
        let mut stats = Stats::default();
        while let Some(Ok(e)) = watch.next().await {
            if let Some(s) = &e.segment {
                stats.segments += 1;
                // whisper's end of the speech, as wall time of the playback
                let end_in_playback = (s.end_ms as i64 - (play_start_wall - started_at_ms)).max(0) as f64 / speed;
                let now = play_start.elapsed().as_millis() as f64;
                stats.transcript_latency_ms.push((now - end_in_playback).max(0.0) as u64);
                let who = names.get(&s.participant_id).cloned().unwrap_or_default();
                if json {
                    let _ = out.json_line(&json!({"type": "transcript", "speaker": who, "start_ms": s.start_ms, "end_ms": s.end_ms, "text": s.text}));
                } else {
                    println!("[{}] {who}: {}", clock_ms(s.start_ms), s.text);
                }
            } else if let Some(s) = &e.suggestion {
                stats.suggestions += 1;
                stats.answers += usize::from(s.answer_to_question);
                if json {
                    let _ = out.json_line(&json!({"type": "suggestion", "answer_to_question": s.answer_to_question, "score": s.score, "filename": s.filename, "chunk": s.chunk_index, "text": s.text}));
                } else {
                    let kind = if s.answer_to_question { "answer" } else { "tip" };
                    println!("    >> {kind} from {} ({:.2}): {}", s.filename, s.score, one_line(&s.text, 150));
                }
            }
        }
        stats
    });

    // 6. one StreamAudio per participant, paced like live microphones
    let mut streams = Vec::new();
    for (participant_id, speaker) in &speakers {
        let bytes = TRACKS.iter().find(|(n, _)| *n == speaker.wav).map(|t| t.1).context("missing track")?;
        let wav = huddle_models::audio::wav::parse_wav(bytes)?;
        let pcm = huddle_models::audio::wav::encode_pcm16(&wav.samples, wav.sample_rate);
        let rate = wav.sample_rate;
        let chunk = (rate as usize / 10) * 2; // 100 ms
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let (room_id, pid) = (room.id.clone(), participant_id.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(0.1 / speed));
            for (i, c) in pcm.chunks(chunk).enumerate() {
                tick.tick().await;
                let first = i == 0;
                let msg = v1::AudioChunk {
                    room_id: if first { room_id.clone() } else { String::new() },
                    participant_id: if first { pid.clone() } else { String::new() },
                    sample_rate: if first { rate } else { 0 },
                    pcm16: c.to_vec(),
                };
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
        });
        let mut rooms = c.rooms.clone();
        streams.push(tokio::spawn(
            async move { rooms.stream_audio(tokio_stream::wrappers::ReceiverStream::new(rx)).await },
        ));
    }
    let mut audio_ms = 0;
    for s in streams {
        audio_ms += s.await?.context("streaming audio")?.into_inner().audio_ms;
    }
    // suggestions follow their segment by a few milliseconds; give the last one a moment
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.rooms.end_room(v1::EndRoomRequest { id: room.id.clone() }).await?;
    let stats = tokio::time::timeout(Duration::from_secs(10), watcher).await.context("watch did not end")??;
    stop.cancel();
    let _ = node.await;

    let mut lat = stats.transcript_latency_ms.clone();
    lat.sort_unstable();
    let pct = |q: f64| lat.get(((lat.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0);
    if args.json {
        out.json_line(&json!({
            "type": "summary",
            "rooms": 1,
            "participants": speakers.len(),
            "audio_ms": audio_ms,
            "segments": stats.segments,
            "suggestions": stats.suggestions,
            "answers": stats.answers,
            "transcript_latency_p50_ms": pct(0.5),
            "transcript_latency_p95_ms": pct(0.95),
        }))?;
    } else {
        println!();
        println!(
            "summary: 1 room, {} participants, {:.1} s of audio",
            speakers.len(),
            audio_ms as f64 / 1000.0 / speakers.len() as f64
        );
        println!(
            "  transcript: {} segments, end of speech -> on screen p50 {} ms, p95 {} ms",
            stats.segments,
            pct(0.5),
            pct(0.95)
        );
        println!("  knowledge:  {} suggestions, {} of them answering a question", stats.suggestions, stats.answers);
        if args.data_dir.is_some() {
            println!("  data kept in {}", data_dir.display());
        }
    }
    Ok(())
}
