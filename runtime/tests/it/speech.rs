//! Speech into rooms, end to end with real weights (tiny.en q8_0) and espeak-ng speech
//! (committed fixtures, `huddle_testsupport::speech`):
//! audio streams -> VAD -> shared whisper decoders -> room transcript, watchers, storage.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use huddle_actors::whisper_pool::{PoolError, WhisperPool, WhisperPoolConfig};
use huddle_core::{NewRoom, TranscriptSegment};
use huddle_models::fetch::{WhisperModel, fetch_whisper};
use huddle_models::ggml::Quant;
use huddle_models::whisper::WhisperEngine;
use huddle_runtime::{Api, ApiError, Runtime, SpeechConfig, WatchItem};
use huddle_storage::PageRequest;
use tokio_stream::StreamExt;

use crate::common::{entity, eventually, human, room};

use huddle_models::eval::word_error_rate as wer;

const ADA: &str = "Please send the meeting notes to the whole team before Friday.";
const BOB: &str = "Let us move the design review to Thursday afternoon.";

/// The models directory the models crate's tests use too (one download per target dir).
fn models_dir() -> PathBuf {
    match std::env::var_os("HUDDLE_MODELS_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_TARGET_TMPDIR")).join("models"),
    }
}

pub fn model_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        static LOCK: Mutex<()> = Mutex::new(());
        let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
        fetch_whisper(WhisperModel::TinyEn, Quant::Q8_0, &models_dir(), &|_| {}).expect("fetch tiny.en").path
    })
    .clone()
}

fn speech_config() -> SpeechConfig {
    SpeechConfig { whisper_model: Some(model_path()), fetch_missing: false, ..SpeechConfig::default() }
}

async fn runtime(dir: &Path, speech: SpeechConfig) -> Runtime {
    let url = format!("sqlite://{}", dir.join("speech.db").display());
    let model = speech.whisper_model.clone();
    tokio::task::spawn_blocking(move || model.map(|_| model_path())).await.unwrap();
    Runtime::builder().database_url(url).speech(speech).build().await.unwrap()
}

/// espeak-ng speech (a committed fixture) at its native 22 050 Hz, as PCM16 bytes.
pub fn speak_pcm16(text: &str) -> (Vec<u8>, u32) {
    let speech = huddle_testsupport::speech::spoken(text);
    (speech.pcm16le(), speech.rate)
}

/// `pcm` followed by `silence_ms` of silence.
pub fn with_silence(mut pcm: Vec<u8>, rate: u32, silence_ms: u32) -> Vec<u8> {
    pcm.resize(pcm.len() + (rate * silence_ms / 1000) as usize * 2, 0);
    pcm
}

fn text_of(segments: &[&TranscriptSegment]) -> String {
    segments.iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join(" ")
}

async fn active_room_with(api: &Api, names: &[&str]) -> (String, Vec<String>) {
    let e = entity(api, "Acme", None).await;
    let r = room(api, &e.id).await;
    let id = r.view.room.id.clone();
    api.start_room(&id).await.unwrap();
    let mut people = Vec::new();
    for n in names {
        people.push(api.join_room(&id, human(n)).await.unwrap().id);
    }
    (id, people)
}

async fn stream_all(
    api: &Api,
    room_id: &str,
    participant: &str,
    pcm: &[u8],
    rate: u32,
) -> huddle_actors::StreamSummary {
    let mut s = api.open_audio(room_id, participant, rate).await.unwrap();
    for chunk in pcm.chunks(rate as usize / 10 * 2) {
        s.push_pcm16(chunk).await.unwrap();
    }
    s.finish().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_speakers_are_transcribed_attributed_persisted_and_watched() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), speech_config()).await;
    let api = rt.admin();
    let (room_id, people) = active_room_with(&api, &["Ada", "Bob"]).await;
    let mut watch = api.watch_room(&room_id).await.unwrap();

    let (ada_pcm, rate) = speak_pcm16(ADA);
    let (bob_pcm, bob_rate) = speak_pcm16(BOB);
    let ada_pcm = with_silence(ada_pcm, rate, 600);
    let bob_pcm = with_silence(bob_pcm, bob_rate, 600);
    let (a, b) = tokio::join!(
        stream_all(&api, &room_id, &people[0], &ada_pcm, rate),
        stream_all(&api, &room_id, &people[1], &bob_pcm, bob_rate)
    );
    assert!(a.utterances >= 1 && a.segments >= 1, "{a:?}");
    assert!(b.utterances >= 1 && b.segments >= 1, "{b:?}");
    assert_eq!(a.dropped_ms + b.dropped_ms, 0);
    assert!(a.audio_ms > 3_000, "{a:?}");

    let transcript = api.get_transcript(&room_id, PageRequest::default()).await.unwrap().items;
    let of = |p: &str| transcript.iter().filter(|s| s.participant_id == p).collect::<Vec<_>>();
    let (ada_text, bob_text) = (text_of(&of(&people[0])), text_of(&of(&people[1])));
    eprintln!("Ada: {ada_text:?}\nBob: {bob_text:?}");
    assert!(wer(ADA, &ada_text) < 0.2, "Ada: {ada_text:?}");
    assert!(wer(BOB, &bob_text) < 0.2, "Bob: {bob_text:?}");
    for s in &transcript {
        assert!(s.start_ms < s.end_ms && s.end_ms < 60_000, "{s:?}");
        assert_eq!(s.language, "en");
        assert!((0.0..=1.0).contains(&s.confidence));
    }

    // watchers saw the same segments, in seq order, as typed room events
    let mut seen = Vec::new();
    while seen.len() < transcript.len() {
        let item = tokio::time::timeout(Duration::from_secs(5), watch.next()).await.unwrap().unwrap().unwrap();
        if let WatchItem::Event(e) = item
            && e.kind() == "transcript_segment"
        {
            seen.push(e);
        }
    }
    for (event, segment) in seen.iter().zip(&transcript) {
        assert_eq!(event.seq, segment.seq);
        assert_eq!(event.data.data_value()["text"], segment.text.as_str());
        assert_eq!(event.data.data_value()["participant_id"], segment.participant_id.as_str());
    }

    // pages of one cover the transcript exactly
    let mut token = String::new();
    let mut paged = Vec::new();
    loop {
        let page = api.get_transcript(&room_id, PageRequest { size: 1, token }).await.unwrap();
        paged.extend(page.items);
        if page.next_token.is_empty() {
            break;
        }
        token = page.next_token;
    }
    assert_eq!(paged, transcript);
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_streams_get_clear_errors_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), speech_config()).await;
    let api = rt.admin();
    let (room_id, people) = active_room_with(&api, &["Ada", "Bob"]).await;
    let ada = people[0].as_str();

    let err = |r: Result<huddle_runtime::AudioStream, ApiError>| match r {
        Ok(_) => panic!("stream opened"),
        Err(e) => e,
    };
    let e = err(api.open_audio(&room_id, ada, 0).await);
    assert!(matches!(e, ApiError::InvalidArgument { field: "sample_rate", .. }), "{e}");
    let e = err(api.open_audio(&room_id, ada, 7_999).await);
    assert!(matches!(e, ApiError::InvalidArgument { field: "sample_rate", .. }), "{e}");
    let e = err(api.open_audio(&room_id, "no-such-participant", 16_000).await);
    assert!(matches!(e, ApiError::NotFound { what: "participant", .. }), "{e}");
    let e = err(api.open_audio("no-such-room", ada, 16_000).await);
    assert!(matches!(e, ApiError::NotFound { what: "room", .. }), "{e}");
    // another entity's key cannot see the room at all
    let other = entity(&api, "Other", None).await;
    let e = err(rt.for_entity(other.id).open_audio(&room_id, ada, 16_000).await);
    assert!(matches!(e, ApiError::NotFound { what: "room", .. }), "{e}");
    // a participant who left
    api.leave_room(&room_id, &people[1]).await.unwrap();
    let e = err(api.open_audio(&room_id, &people[1], 16_000).await);
    assert!(matches!(e, ApiError::FailedPrecondition(_)), "{e}");
    // a room that is not active
    let e2 = entity(&api, "Scheduled", None).await;
    let scheduled =
        api.create_room(NewRoom { entity_id: e2.id, title: "Later".into(), ..Default::default() }).await.unwrap();
    let e = err(api.open_audio(&scheduled.view.room.id, ada, 16_000).await);
    assert!(e.to_string().contains("ACTIVE"), "{e}");

    // odd byte counts, oversized chunks and non-finite samples are refused
    let mut s = api.open_audio(&room_id, ada, 16_000).await.unwrap();
    let e = s.push_pcm16(&[0, 0, 0]).await.unwrap_err();
    assert!(matches!(e, ApiError::InvalidArgument { field: "pcm16", .. }), "{e}");
    let e = s.push_pcm16(&vec![0; huddle_runtime::MAX_AUDIO_CHUNK_BYTES + 2]).await.unwrap_err();
    assert!(e.to_string().contains("send smaller chunks"), "{e}");
    let e = s.push(&[0.0, f32::NAN]).await.unwrap_err();
    assert!(matches!(e, ApiError::InvalidArgument { .. }), "{e}");
    // an empty stream and a silent one record nothing
    let summary = s.finish().await.unwrap();
    assert_eq!((summary.utterances, summary.segments), (0, 0));
    let silent = vec![0u8; 16_000 * 2 * 3];
    let summary = stream_all(&api, &room_id, ada, &silent, 16_000).await;
    assert_eq!((summary.utterances, summary.segments), (0, 0), "{summary:?}");
    assert!(api.get_transcript(&room_id, PageRequest::default()).await.unwrap().items.is_empty());
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_a_room_flushes_what_was_said_before_it_completes() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), speech_config()).await;
    let api = rt.admin();
    let (room_id, people) = active_room_with(&api, &["Ada"]).await;
    let (pcm, rate) = speak_pcm16(ADA);
    // no trailing silence and no finish(): the utterance is still open when the room ends
    let mut s = api.open_audio(&room_id, &people[0], rate).await.unwrap();
    s.push_pcm16(&pcm).await.unwrap();
    api.end_room(&room_id).await.unwrap();
    let transcript = api.get_transcript(&room_id, PageRequest::default()).await.unwrap().items;
    let text = text_of(&transcript.iter().collect::<Vec<_>>());
    assert!(wer(ADA, &text) < 0.2, "{text:?}");
    let events = rt.store().list_events(&room_id, 0, 1000).await.unwrap();
    let last = events.last().unwrap();
    assert_eq!(last.kind(), "completed");
    assert!(transcript.iter().all(|t| t.seq < last.seq));
    drop(s);
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transcriber_crash_restarts_it_and_spares_the_room() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), speech_config()).await;
    let api = rt.admin();
    let (room_id, people) = active_room_with(&api, &["Ada"]).await;
    let (other_room, _) = active_room_with(&api, &["Cy"]).await;
    let (pcm, rate) = speak_pcm16(ADA);
    let pcm = with_silence(pcm, rate, 600);

    let mut s = api.open_audio(&room_id, &people[0], rate).await.unwrap();
    s.push_pcm16(&pcm[..rate as usize]).await.unwrap(); // 0.5 s, then the crash
    api.inject_transcriber_panic(&room_id).await.unwrap();
    let store = rt.store().clone();
    let rid = room_id.clone();
    eventually("transcriber_restarted event", || {
        let (store, rid) = (store.clone(), rid.clone());
        async move {
            let events = store.list_events(&rid, 0, 1000).await.unwrap();
            events.iter().any(|e| e.kind() == "transcriber_restarted")
        }
    })
    .await;
    // the same stream goes on, on the new transcriber, and is transcribed
    for chunk in pcm.chunks(rate as usize / 10 * 2) {
        s.push_pcm16(chunk).await.unwrap();
    }
    let summary = s.finish().await.unwrap();
    assert!(summary.segments >= 1, "{summary:?}");
    let text =
        text_of(&api.get_transcript(&room_id, PageRequest::default()).await.unwrap().items.iter().collect::<Vec<_>>());
    assert!(wer(ADA, &text) < 0.35, "{text:?}");
    // the room itself never restarted, and the other room is untouched
    let events = rt.store().list_events(&room_id, 0, 1000).await.unwrap();
    assert!(!events.iter().any(|e| e.kind() == "restarted"));
    let room = api.get_room(&room_id).await.unwrap();
    assert_eq!(room.view.room.status, huddle_core::RoomStatus::Active);
    let others = rt.store().list_events(&other_room, 0, 1000).await.unwrap();
    assert!(others.iter().all(|e| !e.kind().contains("restart")));
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_model_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = SpeechConfig {
        whisper_model: None,
        models_dir: Some(dir.path().join("empty-models")),
        fetch_missing: false,
        ..SpeechConfig::default()
    };
    let rt = runtime(dir.path(), config).await;
    let api = rt.admin();
    let (room_id, people) = active_room_with(&api, &["Ada"]).await;
    let e = match api.open_audio(&room_id, &people[0], 16_000).await {
        Ok(_) => panic!("opened without a model"),
        Err(e) => e,
    };
    assert!(matches!(e, ApiError::Unavailable(_)), "{e}");
    assert!(e.to_string().contains("huddle models fetch"), "{e}");
    // a corrupt model file too
    let bad = dir.path().join("bad.bin");
    std::fs::write(&bad, b"lmgg garbage").unwrap();
    std::fs::create_dir_all(dir.path().join("two")).unwrap();
    let rt2 = runtime(
        &dir.path().join("two"),
        SpeechConfig { whisper_model: Some(bad), fetch_missing: false, ..SpeechConfig::default() },
    )
    .await;
    let api2 = rt2.admin();
    let (room2, people2) = active_room_with(&api2, &["Ada"]).await;
    let e = match api2.open_audio(&room2, &people2[0], 16_000).await {
        Ok(_) => panic!("opened with a corrupt model"),
        Err(e) => e,
    };
    assert!(e.to_string().contains("not a usable whisper.cpp model"), "{e}");
    rt.shutdown().await;
    rt2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_pool_drops_the_oldest_audio_and_stays_bounded() {
    let path = tokio::task::spawn_blocking(model_path).await.unwrap();
    let engine = Arc::new(WhisperEngine::load(&path).unwrap());
    let config = WhisperPoolConfig {
        decoders: 1,
        // one ~3.3 s utterance fits per room, and one of each room fits in total:
        // what survives does not depend on when the decoder takes its first job
        max_queued_ms_per_room: 4_000,
        max_queued_ms_total: 8_000,
        ..WhisperPoolConfig::default()
    };
    let pool = WhisperPool::start(engine, config).unwrap();
    let (pcm, rate) = speak_pcm16(BOB);
    let samples =
        huddle_models::audio::resample::resample_to_16k(&huddle_models::audio::pcm16le_to_f32(&pcm).unwrap(), rate)
            .unwrap();
    // a burst of ten 3 s utterances from one room and three from another
    let mut busy = Vec::new();
    for _ in 0..10 {
        busy.push(pool.submit("busy", samples.clone()));
    }
    let quiet: Vec<_> = (0..3).map(|_| pool.submit("quiet", samples.clone())).collect();
    let stats = pool.stats();
    assert!(stats.queued_ms <= 8_000, "{stats:?}");
    let mut dropped = 0;
    let mut decoded = 0;
    for rx in busy {
        match rx.await.unwrap() {
            Ok(d) => {
                decoded += 1;
                assert!(wer(BOB, &d.segments.iter().map(|s| s.text.clone()).collect::<Vec<_>>().join(" ")) < 0.2);
            }
            Err(PoolError::Dropped { audio_ms }) => {
                dropped += 1;
                assert!(audio_ms > 2_000);
            }
            Err(e) => panic!("{e}"),
        }
    }
    let mut quiet_decoded = 0;
    for rx in quiet {
        if rx.await.unwrap().is_ok() {
            quiet_decoded += 1;
        }
    }
    eprintln!("busy: {decoded} decoded, {dropped} dropped; quiet: {quiet_decoded} decoded; {:?}", pool.stats());
    assert!(dropped >= 6, "the oldest busy utterances are dropped");
    assert!(decoded >= 1, "the freshest busy utterance is decoded");
    assert!(quiet_decoded >= 1, "a quiet room is not starved by a busy one");
    assert_eq!(pool.stats().queued_jobs, 0);
}

mod grpc {
    //! StreamAudio and GetTranscript through a real tonic client on loopback.

    use huddle_proto::v1::rooms_client::RoomsClient;
    use huddle_proto::v1::{self, entities_client::EntitiesClient};
    use huddle_runtime::Config;
    use huddle_runtime::server::Server;
    use tokio_stream::StreamExt;
    use tokio_util::sync::CancellationToken;
    use tonic::Code;
    use tonic::metadata::MetadataValue;

    use super::{ADA, model_path, speak_pcm16, wer, with_silence};

    const KEY: &str = "speech-admin-key-0123456789abcdef";

    fn authed<T>(msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.metadata_mut().insert("authorization", MetadataValue::try_from(format!("Bearer {KEY}")).unwrap());
        req
    }

    fn chunks(room_id: &str, participant_id: &str, rate: u32, pcm: &[u8]) -> Vec<v1::AudioChunk> {
        pcm.chunks(rate as usize / 10 * 2)
            .enumerate()
            .map(|(i, c)| v1::AudioChunk {
                room_id: if i == 0 { room_id.into() } else { String::new() },
                participant_id: if i == 0 { participant_id.into() } else { String::new() },
                sample_rate: if i == 0 { rate } else { 0 },
                pcm16: c.to_vec(),
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stream_audio_over_grpc_reaches_watchers_and_the_transcript() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.http = "127.0.0.1:0".parse().unwrap();
        config.server.admin_key = Some(KEY.into());
        config.database.url = format!("sqlite://{}", dir.path().join("g.db").display());
        config.speech.whisper_model = Some(tokio::task::spawn_blocking(model_path).await.unwrap());
        config.speech.fetch_missing = false;
        let server = Server::bind(config).await.unwrap();
        let addr = format!("http://{}", server.grpc_addr());
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move { server.run(stop).await.unwrap() }
        });
        let ch = tonic::transport::Channel::from_shared(addr).unwrap().connect().await.unwrap();
        let mut ents = EntitiesClient::new(ch.clone());
        let mut rooms = RoomsClient::new(ch);

        let e = ents
            .create_entity(authed(v1::CreateEntityRequest { name: "Acme".into(), ..Default::default() }))
            .await
            .unwrap()
            .into_inner();
        let r = rooms
            .create_room(authed(v1::CreateRoomRequest { entity_id: e.id, title: "Sync".into(), ..Default::default() }))
            .await
            .unwrap()
            .into_inner();
        rooms.start_room(authed(v1::StartRoomRequest { id: r.id.clone() })).await.unwrap();
        let ada = rooms
            .join_room(authed(v1::JoinRoomRequest {
                room_id: r.id.clone(),
                kind: v1::ParticipantKind::Human as i32,
                display_name: "Ada".into(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        let mut watch = rooms.watch_room(authed(v1::WatchRoomRequest { id: r.id.clone() })).await.unwrap().into_inner();

        let (pcm, rate) = speak_pcm16(ADA);
        let pcm = with_silence(pcm, rate, 500);
        let sent = chunks(&r.id, &ada.id, rate, &pcm);
        let result = rooms.stream_audio(authed(tokio_stream::iter(sent))).await.unwrap().into_inner();
        assert!(result.segments >= 1 && result.utterances >= 1, "{result:?}");
        assert_eq!(result.dropped_ms, 0);
        assert!((result.audio_ms as i64 - (pcm.len() as i64 / 2 * 1000 / rate as i64)).abs() <= 1, "{result:?}");

        let transcript = rooms
            .get_transcript(authed(v1::GetTranscriptRequest { room_id: r.id.clone(), ..Default::default() }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(transcript.segments.len() as u64, result.segments);
        let text = transcript.segments.iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join(" ");
        assert!(wer(ADA, &text) < 0.2, "{text:?}");
        assert!(transcript.segments.iter().all(|s| s.participant_id == ada.id && s.at.is_some()));

        // the watcher gets the same segments as typed events
        let mut typed = Vec::new();
        while typed.len() < transcript.segments.len() {
            let ev =
                tokio::time::timeout(std::time::Duration::from_secs(5), watch.next()).await.unwrap().unwrap().unwrap();
            if let Some(seg) = ev.segment {
                assert_eq!(ev.r#type, "transcript_segment");
                typed.push(seg);
            }
        }
        assert_eq!(typed, transcript.segments);

        // malformed streams
        let empty = rooms.stream_audio(authed(tokio_stream::iter(Vec::<v1::AudioChunk>::new()))).await.unwrap_err();
        assert_eq!(empty.code(), Code::InvalidArgument, "{empty:?}");
        let mut headless = chunks(&r.id, &ada.id, rate, &pcm[..4000]);
        headless[0].sample_rate = 0;
        let err = rooms.stream_audio(authed(tokio_stream::iter(headless))).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("first chunk"), "{err:?}");
        let mut switching = chunks(&r.id, &ada.id, rate, &pcm[..8000]);
        switching[1].participant_id = "someone-else".into();
        let err = rooms.stream_audio(authed(tokio_stream::iter(switching))).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        let odd = vec![v1::AudioChunk {
            room_id: r.id.clone(),
            participant_id: ada.id.clone(),
            sample_rate: 16_000,
            pcm16: vec![1, 2, 3],
        }];
        let err = rooms.stream_audio(authed(tokio_stream::iter(odd))).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        let unknown = chunks(&r.id, "nobody", rate, &pcm[..4000]);
        let err = rooms.stream_audio(authed(tokio_stream::iter(unknown))).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        let no_key = rooms
            .get_transcript(v1::GetTranscriptRequest { room_id: r.id.clone(), ..Default::default() })
            .await
            .unwrap_err();
        assert_eq!(no_key.code(), Code::Unauthenticated);
        // the malformed streams recorded nothing more
        let after = rooms
            .get_transcript(authed(v1::GetTranscriptRequest { room_id: r.id.clone(), ..Default::default() }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(after.segments, transcript.segments);

        stop.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(10), task).await.unwrap().unwrap();
    }
}
