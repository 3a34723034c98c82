//! `huddle-bench livekit`: speech spoken into LiveKit rooms -> captions back in the room.
//!
//! No LiveKit server can run here, so the rooms live on `LiveKitTestServer` (a test double
//! following LiveKit's protocol, over real loopback WebSockets and webrtc-rs peers). Each
//! room has one server-side participant publishing an Opus track of the synthetic meeting;
//! huddle's agent joins when the room starts, hears the track over WebRTC, transcribes it,
//! and publishes every final segment back as a `Transcription` data packet, which the test
//! server records with its arrival time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use huddle_actors::livekit::{WebRtcOptions, WebRtcTransport};
use huddle_core::{NewEntity, NewRoom, now_ms};
use huddle_models::fetch::default_models_dir;
use huddle_runtime::{LiveKitConfig, Runtime, SpeechConfig};
use huddle_testsupport::livekit::LiveKitTestServer;

use crate::report::{Latencies, Measurement, Reporter, Summary};
use crate::speech::{Meeting, RATE, distance, install, realtime_streams};

const BENCH: &str = "livekit";
const KEY: &str = "huddle-bench";
const SECRET: &str = "huddle-bench-secret-0123456789abcdef";

pub struct LiveKitOpts {
    /// Concurrent rooms, each with one speaker.
    pub rooms: Vec<usize>,
    /// Sentences of the synthetic meeting each speaker says.
    pub sentences: usize,
    pub models_dir: Option<std::path::PathBuf>,
}

pub fn run(opts: &LiveKitOpts, rep: &Reporter) -> Result<()> {
    let dir = match &opts.models_dir {
        Some(d) => d.clone(),
        None => default_models_dir()?,
    };
    let tiny = install(&dir, "tiny.en:q8_0", rep)?.1;
    rep.progress("synthesising the meeting with espeak-ng");
    let meeting = Meeting::synthesize_first(opts.sentences.max(1), 1_000)?;
    rep.emit(
        Measurement::new(BENCH, "fixture_audio_seconds", meeting.seconds(), "s")
            .with("sentences", meeting.sentences.len()),
    );
    let pcm48 = Arc::new(to_48k_pcm16(&meeting.samples));
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;

    let mut p50_one = None;
    for &n in &opts.rooms {
        rep.progress(&format!("{n} LiveKit room(s), one real-time speaker each, {:.0} s", meeting.seconds()));
        let r = tokio.block_on(caption_rooms(&tiny, &meeting, pcm48.clone(), n))?;
        let (p50, p95) = (r.latency.quantile_us(0.5) / 1e6, r.latency.quantile_us(0.95) / 1e6);
        if n == 1 {
            p50_one = Some(p50);
        }
        let m = |metric: &str, v: f64, unit: &'static str| {
            Measurement::new(BENCH, format!("{metric}_{n}_rooms"), v, unit).with("rooms", n)
        };
        rep.emit(
            m("caption_latency_p50", p50, "s")
                .with("captions", r.latency.len())
                .with("note", "true end of a sentence's voice -> its last caption received by the test peer"),
        );
        rep.emit(m("caption_latency_p95", p95, "s"));
        rep.emit(m("missing_sentences", r.missing as f64, "sentences").with("captions_total", r.captions));
    }

    // The same speech through StreamAudio to a watcher, no WebRTC: what the LiveKit path adds.
    rep.progress("peer: the same speech through StreamAudio to a watcher (no WebRTC)");
    let direct = tokio.block_on(realtime_streams(&tiny, &meeting, 1, false))?;
    let direct_p50 = direct.latency.quantile_us(0.5) / 1e6;
    rep.emit(
        Measurement::new(BENCH, "streamaudio_watcher_latency_p50_1_room", direct_p50, "s")
            .with("segments", direct.latency.len()),
    );
    if let Some(p50) = p50_one {
        rep.summary(Summary::lower_is_better(
            BENCH,
            "caption_latency_p50_1_room",
            p50,
            "streamaudio-watcher",
            direct_p50,
        ));
    }
    Ok(())
}

/// 16 kHz float samples -> 48 kHz PCM16 by linear interpolation (speech band only).
fn to_48k_pcm16(samples: &[f32]) -> Vec<i16> {
    let mut out = Vec::with_capacity(samples.len() * 3);
    for (i, &a) in samples.iter().enumerate() {
        let b = samples.get(i + 1).copied().unwrap_or(a);
        for k in 0..3 {
            let x = a + (b - a) * k as f32 / 3.0;
            out.push((x.clamp(-1.0, 1.0) * 32_767.0) as i16);
        }
    }
    out
}

struct RoomsResult {
    latency: Latencies,
    missing: usize,
    captions: usize,
}

async fn caption_rooms(
    model: &std::path::Path,
    meeting: &Meeting,
    pcm48: Arc<Vec<i16>>,
    n: usize,
) -> Result<RoomsResult> {
    let server = LiveKitTestServer::start(KEY, SECRET).await?;
    let dir = tempfile::tempdir()?;
    let speech =
        SpeechConfig { whisper_model: Some(model.to_owned()), fetch_missing: false, ..SpeechConfig::default() };
    let livekit = LiveKitConfig {
        url: Some(server.url().to_string()),
        api_key: Some(KEY.into()),
        api_secret: Some(SECRET.into()),
        ..LiveKitConfig::default()
    };
    let transport = WebRtcTransport::new(WebRtcOptions { include_loopback_candidates: true, ..Default::default() });
    let rt = Runtime::builder()
        .database_url(format!("sqlite://{}", dir.path().join("livekit.db").display()))
        .speech(speech)
        .livekit(livekit)
        .livekit_transport(Arc::new(transport))
        .build()
        .await?;
    rt.warm_up_speech().await?;
    let api = rt.admin();
    let entity = api.create_entity(NewEntity { name: "Bench".into(), ..Default::default() }).await?;
    // Rooms start staggered over one sentence-and-pause cycle, as independent meetings would.
    let cycle = meeting.seconds() / meeting.sentences.len() as f64;
    let mut rooms = Vec::new();
    for i in 0..n {
        let name = format!("bench-{i}");
        server.publish_audio(&name, &format!("speaker-{i}"), pcm48.as_ref().clone());
        let new = NewRoom {
            entity_id: entity.id.clone(),
            title: format!("LiveKit bench {i}"),
            livekit_room: Some(name.clone()),
            ..Default::default()
        };
        let room = api.create_room(new).await?;
        rooms.push((name, room.view.room.id.clone()));
    }
    let mut started_ms = Vec::new();
    for (i, (_, id)) in rooms.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_secs_f64(cycle / n as f64)).await;
        }
        let started = api.start_room(id).await?;
        started_ms.push(started.view.room.started_at_ms.unwrap_or_else(now_ms));
    }
    // Wait until every room's audio has played, plus time for the last caption.
    let wait = Duration::from_secs_f64(meeting.seconds() + 3.0);
    let deadline = Instant::now() + wait + Duration::from_secs(20);
    loop {
        let playing = rooms.iter().filter(|(name, _)| !server.playbacks(name).is_empty()).count();
        if playing == n {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {playing} of {n} rooms started playing to the agent");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last_start = rooms.iter().filter_map(|(name, _)| server.playbacks(name).first().map(|p| p.started)).max();
    let until = last_start.context("a playback")? + wait;
    tokio::time::sleep_until(until.into()).await;

    let mut latencies = Vec::new();
    let (mut missing, mut captions) = (0, 0);
    for ((name, id), room_started_ms) in rooms.iter().zip(started_ms) {
        let playback = server.playbacks(name).first().cloned().context("a playback")?;
        // The playback's wall-clock start, in the room's time (ms since it started).
        let playback_ms = now_ms() - playback.started.elapsed().as_millis() as i64;
        let origin_ms = (playback_ms - room_started_ms).max(0) as u64;
        let mut last: Vec<Option<Instant>> = vec![None; meeting.sentences.len()];
        for received in server.data_packets(name) {
            let Some(t) = received.transcription() else { continue };
            for s in &t.segments {
                captions += 1;
                let mid = ((s.start_time + s.end_time) / 2).saturating_sub(origin_ms) as f64 / 1000.0;
                let nearest = meeting
                    .sentences
                    .iter()
                    .enumerate()
                    .min_by(|a, b| distance(mid, a.1).total_cmp(&distance(mid, b.1)))
                    .map(|(i, _)| i)
                    .unwrap_or(0);
                last[nearest] = Some(last[nearest].map_or(received.at, |prev: Instant| prev.max(received.at)));
            }
        }
        for (at, (_, end, _)) in last.iter().zip(&meeting.sentences) {
            match at {
                Some(at) => latencies.push(
                    at.saturating_duration_since(playback.started + Duration::from_secs_f64(*end as f64 / RATE as f64)),
                ),
                None => missing += 1,
            }
        }
        api.end_room(id).await?;
    }
    rt.shutdown().await;
    Ok(RoomsResult { latency: Latencies::from_durations(latencies), missing, captions })
}
