//! `RoomActor`: the single owner of one live room's state.
//!
//! Every change is planned on a [`Draft`], committed to storage in one
//! transaction (guarded by the room's event sequence number), and only then
//! applied in memory, published to watchers and acknowledged. A crash at any
//! point therefore loses nothing that was acknowledged, and the supervisor
//! can rebuild the room from storage.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use huddle_core::event::{self as ev, RoomEventData};
use huddle_core::time::Millis;
use huddle_core::{NewParticipant, Participant, Room, RoomEvent, RoomStatus, TranscriptSegment, new_id, now_ms};
use huddle_models::audio::vad::VadConfig;
use huddle_storage::{DynStore, RoomChange, StorageError};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tracing::{debug, info, warn};

use crate::hub::RoomHub;
use crate::transcriber::{TranscriberActor, TranscriberArgs, TranscriberMsg};
use crate::whisper_pool::WhisperPool;

/// Errors of room operations.
#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    #[error("{what} `{id}` not found")]
    NotFound { what: &'static str, id: String },
    #[error("room cannot go from {from} to {to}")]
    InvalidTransition { from: RoomStatus, to: RoomStatus },
    #[error("room is {status}: it takes no more changes")]
    Ended { status: RoomStatus },
    #[error("room is full: it admits at most {cap} participants")]
    Full { cap: u32 },
    #[error("entity `{entity_id}` is inactive: reactivate it to use its rooms")]
    EntityInactive { entity_id: String },
    #[error("identity `{identity}` is already in the room")]
    AlreadyJoined { identity: String },
    #[error("participant `{participant_id}` already left the room")]
    AlreadyLeft { participant_id: String },
    #[error("room `{room_id}` is restarting after a failure: retry shortly")]
    Restarting { room_id: String },
    #[error("room is {status}: audio can only be streamed into an ACTIVE room")]
    NotActive { status: RoomStatus },
    #[error("room `{room_id}` changed concurrently: retry the request")]
    Conflict { room_id: String },
    #[error("room actor unavailable: {0}")]
    Unavailable(String),
    #[error("runtime is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Storage(StorageError),
}

impl From<StorageError> for RoomError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound { what, id } => RoomError::NotFound { what, id },
            StorageError::Conflict { room_id, .. } => RoomError::Conflict { room_id },
            other => RoomError::Storage(other),
        }
    }
}

pub type Result<T> = std::result::Result<T, RoomError>;

/// A consistent copy of a room and every participant record it has.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomView {
    pub room: Room,
    pub participants: Vec<Participant>,
}

/// A decoded utterance on its way into the room's transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSegment {
    pub participant_id: String,
    /// Milliseconds since the room started.
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
    pub confidence: f32,
    pub no_speech_prob: f32,
    pub language: String,
}

/// Told about every transcript segment a room records (the runtime indexes them and
/// looks for knowledge to suggest). Called from the transcriber; must not block.
pub trait SegmentListener: Send + Sync {
    fn on_segments(&self, room: &Room, segments: &[TranscriptSegment]);
}

/// A knowledge-base chunk that matches what someone just said.
#[derive(Debug, Clone, PartialEq)]
pub struct Suggestion {
    /// The chunk's id in the entity's index (the cooldown key).
    pub item_id: u64,
    pub text: String,
    pub document_id: String,
    pub filename: String,
    pub chunk_index: u32,
    pub score: f32,
    pub answer_to_question: bool,
    pub segment_seq: u64,
    pub participant_id: String,
}

/// The room actor. All state lives in [`RoomState`].
pub struct RoomActor;

/// What a room actor starts from.
pub struct RoomArgs {
    pub room_id: String,
    pub store: DynStore,
    pub hub: RoomHub,
    /// The room as already loaded by the caller; `None` loads it from storage.
    pub preloaded: Option<RoomView>,
    /// Set when the supervisor restarts the room after a failure: a
    /// `restarted` event carrying this reason is appended before anything else.
    pub restart_reason: Option<String>,
}

/// A live room.
pub struct RoomState {
    room: Room,
    participants: Vec<Participant>,
    /// participant id -> index in `participants`.
    by_id: HashMap<String, usize>,
    store: DynStore,
    hub: RoomHub,
    /// Messages handled, for the throughput benchmark and diagnostics.
    handled: u64,
    /// Whether a request (anything but a passivation check) arrived since
    /// the last check. A flag, not a clock read, to keep the hot path cheap.
    touched: bool,
    /// The room's transcriber (a linked child), once audio has been streamed.
    transcriber: Option<Transcription>,
    /// Audio streams open on the transcriber; a room with open streams is not idle.
    open_streams: Arc<AtomicUsize>,
    /// Knowledge item id -> when it was last suggested here.
    suggested: HashMap<u64, std::time::Instant>,
}

/// The room's transcriber and how often it failed.
struct Transcription {
    actor: ActorRef<TranscriberMsg>,
    restarts: u32,
}

/// Messages a room actor understands.
pub enum RoomMsg {
    /// The room and its participants.
    Get {
        reply: RpcReplyPort<RoomView>,
    },
    /// SCHEDULED -> ACTIVE.
    Start {
        reply: RpcReplyPort<Result<RoomView>>,
    },
    /// ACTIVE -> COMPLETED; present participants are marked as left.
    End {
        reply: RpcReplyPort<Result<RoomView>>,
    },
    /// SCHEDULED or ACTIVE -> CANCELLED; present participants are marked as left.
    Cancel {
        reason: String,
        reply: RpcReplyPort<Result<RoomView>>,
    },
    Join {
        participant: NewParticipant,
        reply: RpcReplyPort<Result<Participant>>,
    },
    Leave {
        participant_id: String,
        reply: RpcReplyPort<Result<Participant>>,
    },
    /// Counts a message and does nothing else (benchmarks, liveness checks).
    Ping,
    /// How many messages this incarnation of the actor has handled.
    Handled {
        reply: RpcReplyPort<u64>,
    },
    /// Records final transcript segments (persisted, then published as
    /// `transcript_segment` events).
    AppendTranscript {
        segments: Vec<NewSegment>,
        reply: RpcReplyPort<Result<Vec<TranscriptSegment>>>,
    },
    /// Records a knowledge suggestion for what was just said, unless the same chunk was
    /// suggested in this room within the cooldown.
    Suggest {
        suggestion: Suggestion,
        cooldown: std::time::Duration,
    },
    /// Records that transcription fell behind and dropped audio.
    TranscriptionDegraded {
        dropped_ms: u64,
        queued_ms: u64,
        reply: RpcReplyPort<()>,
    },
    /// The room's transcriber, spawned (as a linked child) if it has none. Only an
    /// ACTIVE room takes audio.
    Transcriber {
        pool: WhisperPool,
        vad: VadConfig,
        listener: Option<Arc<dyn SegmentListener>>,
        reply: RpcReplyPort<Result<ActorRef<TranscriberMsg>>>,
    },
    /// Fault injection for supervision tests: the handler panics.
    InjectPanic,
    /// Sent by the supervisor's periodic sweep: if no request arrived since
    /// the previous sweep, the actor finishes its queue and stops. The room
    /// stays as it is in storage; the next request spawns a fresh actor.
    PassivateIfIdle,
}

/// A planned change: a copy of the room, touched participants, new events.
#[derive(Debug)]
struct Draft {
    room: Room,
    base_seq: u64,
    participants: Vec<Participant>,
    events: Vec<RoomEvent>,
    segments: Vec<TranscriptSegment>,
}

impl Draft {
    fn new(room: &Room) -> Self {
        Draft { room: room.clone(), base_seq: room.event_seq, participants: vec![], events: vec![], segments: vec![] }
    }

    fn segment(&mut self, s: NewSegment, at_ms: Millis) {
        let data = RoomEventData::TranscriptSegment(Box::new(ev::Segment {
            confidence: s.confidence,
            end_ms: s.end_ms,
            language: s.language.clone(),
            no_speech_prob: s.no_speech_prob,
            participant_id: s.participant_id.clone(),
            start_ms: s.start_ms,
            text: s.text.clone(),
        }));
        self.event(data, at_ms);
        self.segments.push(TranscriptSegment {
            room_id: self.room.id.clone(),
            seq: self.room.event_seq,
            participant_id: s.participant_id,
            start_ms: s.start_ms,
            end_ms: s.end_ms.max(s.start_ms),
            text: s.text,
            confidence: s.confidence,
            no_speech_prob: s.no_speech_prob,
            language: s.language,
            at_ms,
        });
    }

    fn event(&mut self, data: RoomEventData, at_ms: Millis) {
        self.room.event_seq += 1;
        self.events.push(RoomEvent { room_id: self.room.id.clone(), seq: self.room.event_seq, data, at_ms });
    }

    /// Moves the lifecycle along one edge, refusing any edge the lifecycle
    /// lacks, and records exactly one event for it.
    fn transition(&mut self, to: RoomStatus, at_ms: Millis, reason: Option<String>) -> Result<()> {
        let from = self.room.status;
        if !from.can_transition_to(to) {
            return Err(RoomError::InvalidTransition { from, to });
        }
        self.room.status = to;
        let kind: fn(ev::Transition) -> RoomEventData = match to {
            RoomStatus::Active => {
                self.room.started_at_ms = Some(at_ms);
                RoomEventData::Started
            }
            RoomStatus::Completed => {
                self.room.ended_at_ms = Some(at_ms);
                RoomEventData::Completed
            }
            RoomStatus::Cancelled => {
                self.room.ended_at_ms = Some(at_ms);
                self.room.cancel_reason = reason.clone();
                RoomEventData::Cancelled
            }
            RoomStatus::Scheduled => unreachable!("no edge leads back to SCHEDULED"),
        };
        self.event(kind(ev::Transition { from, reason, to }), at_ms);
        Ok(())
    }

    fn leave(&mut self, mut p: Participant, at_ms: Millis, why: &str) -> Participant {
        p.left_at_ms = Some(at_ms);
        let data = RoomEventData::ParticipantLeft(Box::new(ev::ParticipantLeft {
            duration_ms: p.duration_ms(at_ms),
            identity: p.identity.clone(),
            participant_id: p.id.clone(),
            why: why.to_string(),
        }));
        self.event(data, at_ms);
        self.participants.push(p.clone());
        p
    }
}

impl RoomState {
    fn new(view: RoomView, store: DynStore, hub: RoomHub) -> Self {
        let by_id = view.participants.iter().enumerate().map(|(i, p)| (p.id.clone(), i)).collect();
        RoomState {
            room: view.room,
            participants: view.participants,
            by_id,
            store,
            hub,
            handled: 0,
            touched: true,
            transcriber: None,
            open_streams: Arc::new(AtomicUsize::new(0)),
            suggested: HashMap::new(),
        }
    }

    fn view(&self) -> RoomView {
        RoomView { room: self.room.clone(), participants: self.participants.clone() }
    }

    fn present(&self) -> impl Iterator<Item = &Participant> {
        self.participants.iter().filter(|p| p.is_present())
    }

    /// Persists the draft, then applies it and publishes its events. On any
    /// storage error nothing changes in memory.
    async fn commit(&mut self, draft: Draft) -> Result<()> {
        let change = RoomChange {
            room: draft.room.clone(),
            expected_seq: draft.base_seq,
            participants: draft.participants.clone(),
            events: draft.events.clone(),
            segments: draft.segments,
        };
        if let Err(e) = self.store.commit_room_change(change).await {
            if matches!(e, StorageError::Conflict { .. }) {
                warn!(room_id = %self.room.id, "room changed under us; reloading from storage");
                if let Ok(view) = load(&self.store, &self.room.id).await {
                    let by_id = view.participants.iter().enumerate().map(|(i, p)| (p.id.clone(), i)).collect();
                    self.room = view.room;
                    self.participants = view.participants;
                    self.by_id = by_id;
                }
            }
            return Err(e.into());
        }
        self.room = draft.room;
        for p in draft.participants {
            match self.by_id.get(&p.id) {
                Some(&i) => self.participants[i] = p,
                None => {
                    self.by_id.insert(p.id.clone(), self.participants.len());
                    self.participants.push(p);
                }
            }
        }
        for e in draft.events {
            self.hub.publish(e);
        }
        Ok(())
    }

    async fn transition(&mut self, to: RoomStatus, reason: Option<String>) -> Result<RoomView> {
        let at = now_ms().max(self.room.created_at_ms);
        let mut draft = Draft::new(&self.room);
        draft.transition(to, at, reason.clone())?;
        if to.is_terminal() {
            // Close everyone still present, then record the transition last
            // so that it is the final event of the log.
            draft = Draft::new(&self.room);
            let present: Vec<Participant> = self.present().cloned().collect();
            for p in present {
                draft.leave(p, at, "room ended");
            }
            draft.transition(to, at, reason)?;
        }
        self.commit(draft).await?;
        info!(room_id = %self.room.id, status = %self.room.status, "room transitioned");
        Ok(self.view())
    }

    async fn join(&mut self, new: NewParticipant) -> Result<Participant> {
        if self.room.status.is_terminal() {
            return Err(RoomError::Ended { status: self.room.status });
        }
        let entity = self.store.get_entity(&self.room.entity_id).await?;
        if !entity.active {
            return Err(RoomError::EntityInactive { entity_id: entity.id });
        }
        let cap = self.room.participant_cap(entity.max_participants);
        if self.present().count() as u64 >= u64::from(cap) {
            return Err(RoomError::Full { cap });
        }
        let id = new_id();
        // Without an identity of their own a participant's is `p_<participant id>`
        // (in rooms bound to LiveKit it always is: the API refuses chosen ones).
        let identity = if new.identity.is_empty() { format!("p_{id}") } else { new.identity };
        if self.present().any(|p| p.identity == identity) {
            return Err(RoomError::AlreadyJoined { identity });
        }
        let at = now_ms();
        let p = Participant {
            id,
            room_id: self.room.id.clone(),
            kind: new.kind,
            display_name: new.display_name,
            email: new.email,
            phone: new.phone,
            identity,
            joined_at_ms: at,
            left_at_ms: None,
        };
        let mut draft = Draft::new(&self.room);
        draft.participants.push(p.clone());
        let data = RoomEventData::ParticipantJoined(Box::new(ev::ParticipantJoined {
            display_name: p.display_name.clone(),
            identity: p.identity.clone(),
            kind: p.kind,
            participant_id: p.id.clone(),
        }));
        draft.event(data, at);
        self.commit(draft).await?;
        debug!(room_id = %self.room.id, participant_id = %p.id, "participant joined");
        Ok(p)
    }

    async fn leave(&mut self, participant_id: String) -> Result<Participant> {
        if self.room.status.is_terminal() {
            return Err(RoomError::Ended { status: self.room.status });
        }
        let Some(&i) = self.by_id.get(&participant_id) else {
            return Err(RoomError::NotFound { what: "participant", id: participant_id });
        };
        let p = self.participants[i].clone();
        if !p.is_present() {
            return Err(RoomError::AlreadyLeft { participant_id });
        }
        let mut draft = Draft::new(&self.room);
        let left = draft.leave(p, now_ms(), "left");
        self.commit(draft).await?;
        Ok(left)
    }

    async fn append_transcript(&mut self, segments: Vec<NewSegment>) -> Result<Vec<TranscriptSegment>> {
        if self.room.status.is_terminal() {
            return Err(RoomError::Ended { status: self.room.status });
        }
        if let Some(s) = segments.iter().find(|s| !self.by_id.contains_key(&s.participant_id)) {
            return Err(RoomError::NotFound { what: "participant", id: s.participant_id.clone() });
        }
        let at = now_ms();
        let mut draft = Draft::new(&self.room);
        for s in segments {
            draft.segment(s, at);
        }
        let recorded = draft.segments.clone();
        self.commit(draft).await?;
        Ok(recorded)
    }

    async fn suggest(&mut self, s: Suggestion, cooldown: std::time::Duration) -> Result<()> {
        let now = std::time::Instant::now();
        self.suggested.retain(|_, at| now.duration_since(*at) < cooldown);
        if self.suggested.contains_key(&s.item_id) {
            return Ok(());
        }
        let data = RoomEventData::Suggestion(Box::new(ev::Suggestion {
            answer_to_question: s.answer_to_question,
            chunk_index: s.chunk_index,
            document_id: s.document_id,
            filename: s.filename,
            interaction_type: ev::Suggestion::PROACTIVE_TIP.into(),
            item_id: s.item_id,
            participant_id: s.participant_id,
            score: s.score,
            segment_seq: s.segment_seq,
            text: s.text,
        }));
        self.record(data).await?;
        self.suggested.insert(s.item_id, now);
        metrics::counter!("huddle_suggestions_total").increment(1);
        Ok(())
    }

    async fn record(&mut self, data: RoomEventData) -> Result<()> {
        if self.room.status.is_terminal() {
            return Err(RoomError::Ended { status: self.room.status });
        }
        let mut draft = Draft::new(&self.room);
        draft.event(data, now_ms());
        self.commit(draft).await
    }

    async fn spawn_transcriber(
        &self,
        myself: &ActorRef<RoomMsg>,
        pool: WhisperPool,
        vad: VadConfig,
        listener: Option<Arc<dyn SegmentListener>>,
    ) -> Result<ActorRef<TranscriberMsg>> {
        let name = myself.get_name().map(|n| n.replacen("/room/", "/transcriber/", 1));
        let args = TranscriberArgs {
            room_id: self.room.id.clone(),
            room_started_at_ms: self.room.started_at_ms.unwrap_or(self.room.created_at_ms),
            room: myself.clone(),
            pool,
            vad,
            open_streams: self.open_streams.clone(),
            listener,
            room_snapshot: self.room.clone(),
        };
        match Actor::spawn_linked(name, TranscriberActor, args, myself.get_cell()).await {
            Ok((actor, _)) => Ok(actor),
            // the failed incarnation's name is freed a moment after its failure is reported
            Err(ractor::SpawnErr::ActorAlreadyRegistered(_)) => {
                Err(RoomError::Restarting { room_id: self.room.id.clone() })
            }
            Err(e) => Err(RoomError::Unavailable(format!("transcriber failed to start: {e}"))),
        }
    }

    async fn ensure_transcriber(
        &mut self,
        myself: &ActorRef<RoomMsg>,
        pool: WhisperPool,
        vad: VadConfig,
        listener: Option<Arc<dyn SegmentListener>>,
    ) -> Result<ActorRef<TranscriberMsg>> {
        if self.room.status != RoomStatus::Active {
            return Err(RoomError::NotActive { status: self.room.status });
        }
        if let Some(t) = &self.transcriber
            && t.actor.get_status() == ractor::ActorStatus::Running
        {
            return Ok(t.actor.clone());
        }
        let restarts = self.transcriber.as_ref().map_or(0, |t| t.restarts);
        let actor = self.spawn_transcriber(myself, pool, vad, listener).await?;
        self.transcriber = Some(Transcription { actor: actor.clone(), restarts });
        Ok(actor)
    }

    async fn record_restart(&mut self, reason: String) -> Result<()> {
        let mut draft = Draft::new(&self.room);
        draft.event(RoomEventData::Restarted(ev::Restarted { reason }), now_ms());
        self.commit(draft).await
    }
}

/// Loads a room and its participants from storage.
pub async fn load(store: &DynStore, room_id: &str) -> Result<RoomView> {
    let room = store.get_room(room_id).await?;
    let participants = store.list_participants(room_id).await?;
    Ok(RoomView { room, participants })
}

impl Actor for RoomActor {
    type Msg = RoomMsg;
    type State = RoomState;
    type Arguments = RoomArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: RoomArgs,
    ) -> std::result::Result<Self::State, ActorProcessingErr> {
        let view = match args.preloaded {
            Some(v) => v,
            None => load(&args.store, &args.room_id).await?,
        };
        let mut state = RoomState::new(view, args.store, args.hub);
        if let Some(reason) = args.restart_reason {
            state.record_restart(reason).await?;
            info!(room_id = %state.room.id, "room restarted from persisted state");
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> std::result::Result<(), ActorProcessingErr> {
        state.handled += 1;
        if !matches!(msg, RoomMsg::PassivateIfIdle) {
            state.touched = true;
        }
        match msg {
            RoomMsg::Ping => {}
            RoomMsg::PassivateIfIdle => {
                let streaming = state.open_streams.load(Ordering::Relaxed) > 0;
                if !std::mem::replace(&mut state.touched, false) && !streaming {
                    debug!(room_id = %state.room.id, "passivating idle room");
                    // drain, not stop: anything already queued is still handled
                    let _ = myself.drain();
                }
            }
            RoomMsg::Handled { reply } => {
                let _ = reply.send(state.handled);
            }
            RoomMsg::Get { reply } => {
                let _ = reply.send(state.view());
            }
            RoomMsg::Start { reply } => {
                let _ = reply.send(Box::pin(state.transition(RoomStatus::Active, None)).await);
            }
            RoomMsg::End { reply } => {
                let r = Box::pin(state.transition(RoomStatus::Completed, None)).await;
                let ended = r.is_ok();
                let _ = reply.send(r);
                if ended {
                    state.hub.close(&state.room.id);
                    // drain: requests queued behind the end are still answered
                    // (with "room is COMPLETED"), new ones go to storage
                    let _ = myself.drain();
                }
            }
            RoomMsg::Cancel { reason, reply } => {
                let r = Box::pin(state.transition(RoomStatus::Cancelled, Some(reason))).await;
                let ended = r.is_ok();
                let _ = reply.send(r);
                if ended {
                    state.hub.close(&state.room.id);
                    let _ = myself.drain();
                }
            }
            RoomMsg::Join { participant, reply } => {
                let _ = reply.send(Box::pin(state.join(participant)).await);
            }
            RoomMsg::Leave { participant_id, reply } => {
                let _ = reply.send(Box::pin(state.leave(participant_id)).await);
            }
            RoomMsg::AppendTranscript { segments, reply } => {
                let _ = reply.send(Box::pin(state.append_transcript(segments)).await);
            }
            RoomMsg::TranscriptionDegraded { dropped_ms, queued_ms, reply } => {
                warn!(room_id = %state.room.id, dropped_ms, queued_ms, "transcription degraded");
                let data = RoomEventData::TranscriptionDegraded(ev::TranscriptionDegraded {
                    dropped_ms,
                    queued_ms,
                    reason: "transcription fell behind; oldest queued audio dropped".into(),
                });
                if let Err(e) = Box::pin(state.record(data)).await {
                    warn!(room_id = %state.room.id, error = %e, "could not record degradation");
                }
                let _ = reply.send(());
            }
            RoomMsg::Transcriber { pool, vad, listener, reply } => {
                let _ = reply.send(Box::pin(state.ensure_transcriber(&myself, pool, vad, listener)).await);
            }
            RoomMsg::Suggest { suggestion, cooldown } => {
                if let Err(e) = Box::pin(state.suggest(suggestion, cooldown)).await {
                    debug!(room_id = %state.room.id, error = %e, "suggestion not recorded");
                }
            }
            RoomMsg::InjectPanic => {
                panic!("injected panic in room {}", state.room.id);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> std::result::Result<(), ActorProcessingErr> {
        // The only children are the transcriber and its incarnations. A failed one is
        // replaced when its streams send their next audio (they reattach through
        // `RoomMsg::Transcriber`), so an idle room does not keep a transcriber alive.
        let SupervisionEvent::ActorFailed(who, reason) = event else { return Ok(()) };
        let Some(t) = state.transcriber.as_mut().filter(|t| t.actor.get_id() == who.get_id()) else {
            return Ok(());
        };
        t.restarts += 1;
        let restarts = t.restarts;
        metrics::counter!("huddle_transcriber_restarts_total").increment(1);
        warn!(room_id = %state.room.id, restarts, %reason, "transcriber failed; its streams will restart it");
        state.open_streams.store(0, Ordering::Relaxed);
        let data =
            RoomEventData::TranscriberRestarted(ev::TranscriberRestarted { reason: reason.to_string(), restarts });
        if let Err(e) = Box::pin(state.record(data)).await {
            warn!(room_id = %state.room.id, error = %e, "could not record the transcriber restart");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use huddle_core::{NewEntity, ParticipantKind};

    async fn fixture(max: u32) -> (tempfile::TempDir, DynStore, Room) {
        let dir = tempfile::tempdir().unwrap();
        let store = huddle_storage::open(&format!("sqlite://{}", dir.path().join("r.db").display())).await.unwrap();
        let e = store
            .create_entity(NewEntity { name: "E".into(), max_participants: Some(max), ..Default::default() })
            .await
            .unwrap();
        let now = now_ms();
        let room = Room {
            id: new_id(),
            entity_id: e.id,
            department_id: None,
            title: "t".into(),
            custom_instructions: String::new(),
            status: RoomStatus::Scheduled,
            max_participants: 0,
            scheduled_for_ms: None,
            created_at_ms: now,
            started_at_ms: None,
            ended_at_ms: None,
            cancel_reason: None,
            event_seq: 1,
            livekit_room: None,
        };
        let data =
            RoomEventData::Created(Box::new(ev::Created { entity_id: room.entity_id.clone(), ..Default::default() }));
        let created = RoomEvent { room_id: room.id.clone(), seq: 1, data, at_ms: now };
        let room = store.create_room(room, vec![created]).await.unwrap();
        (dir, store, room)
    }

    async fn spawn(store: &DynStore, hub: &RoomHub, room: &Room) -> ActorRef<RoomMsg> {
        let args = RoomArgs {
            room_id: room.id.clone(),
            store: store.clone(),
            hub: hub.clone(),
            preloaded: None,
            restart_reason: None,
        };
        Actor::spawn(None, RoomActor, args).await.unwrap().0
    }

    fn human(name: &str) -> NewParticipant {
        NewParticipant {
            kind: ParticipantKind::Human,
            display_name: name.into(),
            email: None,
            phone: None,
            identity: name.to_lowercase(),
        }
    }

    #[tokio::test]
    async fn lifecycle_refuses_illegal_edges_and_logs_one_event_per_change() {
        let (_d, store, room) = fixture(10).await;
        let hub = RoomHub::new(16);
        let mut rx = hub.subscribe(&room.id);
        let actor = spawn(&store, &hub, &room).await;
        let v = ractor::call!(actor, |reply| RoomMsg::Start { reply }).unwrap().unwrap();
        assert_eq!(v.room.status, RoomStatus::Active);
        assert!(v.room.started_at_ms.is_some());
        let again = ractor::call!(actor, |reply| RoomMsg::Start { reply }).unwrap();
        assert!(matches!(
            again,
            Err(RoomError::InvalidTransition { from: RoomStatus::Active, to: RoomStatus::Active })
        ));
        let started = rx.recv().await.unwrap();
        assert!(matches!(started.data, RoomEventData::Started(_)));
        assert_eq!(started.seq, 2);
        let ended = ractor::call!(actor, |reply| RoomMsg::End { reply }).unwrap().unwrap();
        assert_eq!(ended.room.status, RoomStatus::Completed);
        assert!(matches!(rx.recv().await.unwrap().data, RoomEventData::Completed(_)));
        // the actor stops once the room is over, and the log is persisted
        let events = store.list_events(&room.id, 0, 100).await.unwrap();
        let kinds: Vec<_> = events.iter().map(|e| e.kind()).collect();
        assert_eq!(kinds, ["created", "started", "completed"]);
        for _ in 0..100 {
            if actor.get_status() == ractor::ActorStatus::Stopped {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(actor.get_status(), ractor::ActorStatus::Stopped);
    }

    #[tokio::test]
    async fn join_enforces_entity_cap_and_unique_identity() {
        let (_d, store, room) = fixture(2).await;
        let hub = RoomHub::new(16);
        let actor = spawn(&store, &hub, &room).await;
        let a = ractor::call!(actor, |reply| RoomMsg::Join { participant: human("Ada"), reply }).unwrap().unwrap();
        let dup = ractor::call!(actor, |reply| RoomMsg::Join { participant: human("Ada"), reply }).unwrap();
        assert!(matches!(dup, Err(RoomError::AlreadyJoined { .. })));
        ractor::call!(actor, |reply| RoomMsg::Join { participant: human("Bob"), reply }).unwrap().unwrap();
        let full = ractor::call!(actor, |reply| RoomMsg::Join { participant: human("Cy"), reply }).unwrap();
        assert!(matches!(full, Err(RoomError::Full { cap: 2 })));
        let left =
            ractor::call!(actor, |reply| RoomMsg::Leave { participant_id: a.id.clone(), reply }).unwrap().unwrap();
        assert!(left.left_at_ms.is_some());
        let twice = ractor::call!(actor, |reply| RoomMsg::Leave { participant_id: a.id.clone(), reply }).unwrap();
        assert!(matches!(twice, Err(RoomError::AlreadyLeft { .. })));
        // a seat is free again
        ractor::call!(actor, |reply| RoomMsg::Join { participant: human("Cy"), reply }).unwrap().unwrap();
        let stored = store.list_participants(&room.id).await.unwrap();
        assert_eq!(stored.len(), 3);
        assert_eq!(stored.iter().filter(|p| p.is_present()).count(), 2);
    }

    #[tokio::test]
    async fn ending_closes_present_participants() {
        let (_d, store, room) = fixture(10).await;
        let hub = RoomHub::new(16);
        let actor = spawn(&store, &hub, &room).await;
        ractor::call!(actor, |reply| RoomMsg::Start { reply }).unwrap().unwrap();
        ractor::call!(actor, |reply| RoomMsg::Join { participant: human("Ada"), reply }).unwrap().unwrap();
        let v = ractor::call!(actor, |reply| RoomMsg::Cancel { reason: "storm".into(), reply }).unwrap().unwrap();
        assert_eq!(v.room.cancel_reason.as_deref(), Some("storm"));
        assert!(v.participants.iter().all(|p| p.left_at_ms == v.room.ended_at_ms));
        let events = store.list_events(&room.id, 0, 100).await.unwrap();
        assert!(matches!(events.last().unwrap().data, RoomEventData::Cancelled(_)));
        assert!(matches!(events[events.len() - 2].data, RoomEventData::ParticipantLeft(_)));
    }
}
