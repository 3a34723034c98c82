//! `TranscriberActor`: turns one room's audio streams into transcript segments.
//!
//! A room actor spawns its transcriber (linked, registry name
//! [`transcriber_actor_name`]) when the first audio stream opens, and restarts it if it
//! fails, so a crash here never takes the room or other rooms down. Each stream is one
//! participant's audio at 16 kHz; a voice-activity [`Segmenter`] per stream cuts it into
//! utterances, which go to the shared [`WhisperPool`]. Decoded segments come back to this
//! actor as messages and go to the room actor, which persists them and publishes them
//! to watchers as `transcript_segment` events.
//!
//! Times: a segment's `start_ms`/`end_ms` count from the room's start; a stream that
//! opens 90 s into the room puts its first sample at 90 000 ms.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use huddle_core::now_ms;
use huddle_models::audio::vad::{Segmenter, Utterance, VadConfig};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::{debug, warn};

use crate::room::{NewSegment, RoomMsg, SegmentListener};
use crate::whisper_pool::{Decoded, PoolError, WhisperPool};

/// Degradation events are recorded at most this often per room.
const DEGRADED_EVENT_INTERVAL: Duration = Duration::from_secs(5);

/// The registry name of a room's transcriber.
pub fn transcriber_actor_name(namespace: &str, room_id: &str) -> String {
    format!("{namespace}/transcriber/{room_id}")
}

/// The live transcriber of a room, if there is one.
pub fn find_transcriber(namespace: &str, room_id: &str) -> Option<ActorRef<TranscriberMsg>> {
    ractor::registry::where_is(transcriber_actor_name(namespace, room_id)).map(ActorRef::from)
}

/// What happened to one stream, reported when it closes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamSummary {
    /// Audio received, in milliseconds.
    pub audio_ms: u64,
    /// Utterances the voice-activity detector found.
    pub utterances: u64,
    /// Transcript segments recorded in the room.
    pub segments: u64,
    /// Audio dropped because transcription fell behind.
    pub dropped_ms: u64,
}

pub struct TranscriberActor;

pub struct TranscriberArgs {
    pub room_id: String,
    /// When the room started (unix ms); segment times count from here.
    pub room_started_at_ms: i64,
    pub room: ActorRef<RoomMsg>,
    pub pool: WhisperPool,
    pub vad: VadConfig,
    /// Open streams, shared with the room actor (a room with open streams is not idle).
    pub open_streams: Arc<AtomicUsize>,
    /// Told about each recorded segment.
    pub listener: Option<Arc<dyn SegmentListener>>,
    /// The room as it was when the transcriber started (entity, department).
    pub room_snapshot: huddle_core::Room,
}

struct Stream {
    participant_id: String,
    /// Room time (ms) of the stream's first sample.
    origin_ms: u64,
    segmenter: Segmenter,
    summary: StreamSummary,
    samples: u64,
    /// Utterances sent to the pool and not back yet.
    pending: usize,
    closed: bool,
    waiters: Vec<RpcReplyPort<StreamSummary>>,
}

pub struct TranscriberState {
    args: TranscriberArgs,
    streams: HashMap<u64, Stream>,
    /// `Flush` requests waiting for every pending utterance.
    flush_waiters: Vec<RpcReplyPort<()>>,
    last_degraded: Option<Instant>,
    dropped_since_event_ms: u64,
}

pub enum TranscriberMsg {
    /// A participant's audio stream begins.
    Open { stream_id: u64, participant_id: String },
    /// 16 kHz mono samples of an open stream.
    Audio { stream_id: u64, samples: Vec<f32> },
    /// The stream ends: its last utterance is flushed, and the reply comes once every
    /// utterance of the stream is transcribed and recorded.
    Close { stream_id: u64, reply: RpcReplyPort<StreamSummary> },
    /// The stream's client went away without closing it: its last utterance is still
    /// transcribed, nobody waits for it.
    Abandon { stream_id: u64 },
    /// Flushes every stream and replies once everything pending is recorded (sent before
    /// the room ends, so that the transcript is complete).
    Flush { reply: RpcReplyPort<()> },
    /// Internal: the pool's answer for one utterance.
    Decoded { stream_id: u64, participant_id: String, start_ms: u64, result: Result<Decoded, PoolError> },
    /// Fault injection for supervision tests.
    InjectPanic,
}

impl TranscriberState {
    fn publish_open_count(&self) {
        let open = self.streams.values().filter(|s| !s.closed).count();
        self.args.open_streams.store(open, Ordering::Relaxed);
    }

    fn submit(&mut self, myself: &ActorRef<TranscriberMsg>, stream_id: u64, utterance: Utterance) {
        let Some(stream) = self.streams.get_mut(&stream_id) else { return };
        stream.summary.utterances += 1;
        stream.pending += 1;
        let start_ms = stream.origin_ms + utterance.start_ms();
        let participant_id = stream.participant_id.clone();
        let rx = self.args.pool.submit(&self.args.room_id, utterance.samples);
        let me = myself.clone();
        tokio::spawn(async move {
            let result = rx.await.unwrap_or(Err(PoolError::ShutDown));
            let _ = me.cast(TranscriberMsg::Decoded { stream_id, participant_id, start_ms, result });
        });
    }

    fn finish_stream(&mut self, myself: &ActorRef<TranscriberMsg>, stream_id: u64) {
        let last = self.streams.get_mut(&stream_id).and_then(|s| {
            s.closed = true;
            s.segmenter.finish()
        });
        if let Some(utterance) = last {
            self.submit(myself, stream_id, utterance);
        }
    }

    /// Answers waiters of streams (and flushes) that have nothing pending any more.
    fn settle(&mut self) {
        self.streams.retain(|_, s| {
            if s.pending > 0 {
                return true;
            }
            for w in s.waiters.drain(..) {
                let _ = w.send(s.summary);
            }
            !s.closed
        });
        if self.streams.values().all(|s| s.pending == 0) {
            for w in self.flush_waiters.drain(..) {
                let _ = w.send(());
            }
        }
        self.publish_open_count();
    }

    async fn record(&mut self, stream_id: u64, participant_id: String, start_ms: u64, decoded: Decoded) {
        let segments: Vec<NewSegment> = decoded
            .segments
            .into_iter()
            .map(|s| NewSegment {
                participant_id: participant_id.clone(),
                start_ms: start_ms + s.start_ms,
                end_ms: start_ms + s.end_ms,
                text: s.text,
                confidence: s.confidence,
                no_speech_prob: s.no_speech_prob,
                language: s.language,
            })
            .collect();
        if segments.is_empty() {
            return;
        }
        let n = segments.len() as u64;
        match ractor::call!(self.args.room, |reply| RoomMsg::AppendTranscript { segments, reply }) {
            Ok(Ok(recorded)) => {
                if let Some(s) = self.streams.get_mut(&stream_id) {
                    s.summary.segments += n;
                }
                if let Some(listener) = &self.args.listener {
                    listener.on_segments(&self.args.room_snapshot, &recorded);
                }
            }
            Ok(Err(e)) => warn!(room_id = %self.args.room_id, error = %e, "transcript segments not recorded"),
            Err(e) => warn!(room_id = %self.args.room_id, error = %e, "room actor unreachable; segments lost"),
        }
    }

    async fn degraded(&mut self, stream_id: u64, audio_ms: u64) {
        if let Some(s) = self.streams.get_mut(&stream_id) {
            s.summary.dropped_ms += audio_ms;
        }
        self.dropped_since_event_ms += audio_ms;
        if self.last_degraded.is_some_and(|t| t.elapsed() < DEGRADED_EVENT_INTERVAL) {
            return;
        }
        let dropped_ms = std::mem::take(&mut self.dropped_since_event_ms);
        self.last_degraded = Some(Instant::now());
        let stats = self.args.pool.stats();
        let _ = ractor::call!(self.args.room, |reply| RoomMsg::TranscriptionDegraded {
            dropped_ms,
            queued_ms: stats.queued_ms,
            reply
        });
    }
}

impl Actor for TranscriberActor {
    type Msg = TranscriberMsg;
    type State = TranscriberState;
    type Arguments = TranscriberArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: TranscriberArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        args.open_streams.store(0, Ordering::Relaxed);
        Ok(TranscriberState {
            args,
            streams: HashMap::new(),
            flush_waiters: Vec::new(),
            last_degraded: None,
            dropped_since_event_ms: 0,
        })
    }

    async fn post_stop(&self, _myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        state.args.open_streams.store(0, Ordering::Relaxed);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            TranscriberMsg::Open { stream_id, participant_id } => {
                let origin_ms = (now_ms() - state.args.room_started_at_ms).max(0) as u64;
                debug!(room_id = %state.args.room_id, stream_id, participant_id = %participant_id, "audio stream opened");
                state.streams.insert(
                    stream_id,
                    Stream {
                        participant_id,
                        origin_ms,
                        segmenter: Segmenter::new(state.args.vad.clone()),
                        summary: StreamSummary::default(),
                        samples: 0,
                        pending: 0,
                        closed: false,
                        waiters: Vec::new(),
                    },
                );
                state.publish_open_count();
            }
            TranscriberMsg::Audio { stream_id, samples } => {
                let Some(stream) = state.streams.get_mut(&stream_id).filter(|s| !s.closed) else {
                    return Ok(());
                };
                stream.samples += samples.len() as u64;
                stream.summary.audio_ms = stream.samples * 1000 / 16_000;
                let utterances = stream.segmenter.push(&samples);
                for u in utterances {
                    state.submit(&myself, stream_id, u);
                }
            }
            TranscriberMsg::Close { stream_id, reply } => {
                match state.streams.get_mut(&stream_id) {
                    Some(stream) => stream.waiters.push(reply),
                    None => {
                        let _ = reply.send(StreamSummary::default());
                        return Ok(());
                    }
                }
                state.finish_stream(&myself, stream_id);
                state.settle();
            }
            TranscriberMsg::Abandon { stream_id } => {
                if state.streams.contains_key(&stream_id) {
                    debug!(room_id = %state.args.room_id, stream_id, "audio stream abandoned");
                    state.finish_stream(&myself, stream_id);
                    state.settle();
                }
            }
            TranscriberMsg::Flush { reply } => {
                let open: Vec<u64> = state.streams.iter().filter(|(_, s)| !s.closed).map(|(id, _)| *id).collect();
                for id in open {
                    // the stream stays open: its client may still be sending
                    let last = state.streams.get_mut(&id).and_then(|s| s.segmenter.finish());
                    if let Some(u) = last {
                        state.submit(&myself, id, u);
                    }
                }
                state.flush_waiters.push(reply);
                state.settle();
            }
            TranscriberMsg::Decoded { stream_id, participant_id, start_ms, result } => {
                if let Some(s) = state.streams.get_mut(&stream_id) {
                    s.pending = s.pending.saturating_sub(1);
                }
                match result {
                    Ok(decoded) => {
                        metrics::histogram!("huddle_transcription_latency_seconds")
                            .record((decoded.queued + decoded.decode).as_secs_f64());
                        Box::pin(state.record(stream_id, participant_id, start_ms, decoded)).await;
                    }
                    Err(PoolError::Dropped { audio_ms }) => Box::pin(state.degraded(stream_id, audio_ms)).await,
                    Err(e) => warn!(room_id = %state.args.room_id, error = %e, "utterance lost"),
                }
                state.settle();
            }
            TranscriberMsg::InjectPanic => panic!("injected panic in the transcriber of room {}", state.args.room_id),
        }
        Ok(())
    }
}
