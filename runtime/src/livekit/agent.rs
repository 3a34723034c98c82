//! The agent in LiveKit rooms: when a bound room is ACTIVE the agent is a
//! participant of its LiveKit room, and it leaves when the room ends.
//!
//! One presence task per room keeps the agent joined: it joins through a
//! [`RoomTransport`] (by default WebRTC: it hears every participant and
//! publishes data), and rejoins with capped exponential backoff when the
//! connection drops. While joined, what the room records goes back into the
//! LiveKit room ([`Publishing`]): final transcript segments as `Transcription`
//! packets (captions) and suggestions as JSON on a data topic. It stops when the room ends here, when LiveKit sends
//! `leave` (the LiveKit room closed), or when LiveKit refuses the token.
//!
//! LiveKit agent jobs ([`JobHandler`]) use the same presence with the token of
//! their assignment: a job runs as long as the agent is in the room.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use huddle_actors::livekit::{DataSender, JobHandler, JobRun, LiveKitError, Reliability, RoomTransport};
use huddle_core::{NewRoom, RoomStatus};
use huddle_storage::StorageError;
use livekit_protocol as lk;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::ApiError;

/// Where the agent is in one room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    Joining,
    /// In the room, with LiveKit's participant sid.
    Joined {
        sid: String,
    },
    /// Lost the connection; rejoining after the backoff.
    Reconnecting {
        attempt: u32,
        error: String,
    },
    /// Gone for good: left, or could not join (the reason).
    Ended {
        reason: String,
    },
}

/// What the agent publishes into the LiveKit rooms it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publishing {
    /// Final transcript segments as `Transcription` packets (captions).
    pub captions: bool,
    /// The topic suggestions go out on as JSON; empty: not published.
    pub suggestion_topic: String,
}

impl Publishing {
    pub fn from_config(cfg: &crate::config::LiveKitConfig) -> Self {
        Publishing { captions: cfg.captions, suggestion_topic: cfg.suggestion_topic.clone() }
    }

    fn is_off(&self) -> bool {
        !self.captions && self.suggestion_topic.is_empty()
    }
}

struct Slot {
    stop: CancellationToken,
    state: watch::Receiver<Presence>,
}

/// The agent's presence in LiveKit rooms, one per huddle room.
pub struct AgentPresence {
    transport: Arc<dyn RoomTransport>,
    slots: DashMap<String, Slot>,
    backoff: (Duration, Duration),
    /// Where heard audio goes: the rooms of this runtime.
    rt: std::sync::OnceLock<Weak<crate::Inner>>,
    publishing: Publishing,
}

impl AgentPresence {
    pub fn new(transport: Arc<dyn RoomTransport>, publishing: Publishing) -> Self {
        AgentPresence {
            transport,
            slots: DashMap::new(),
            backoff: (Duration::from_millis(500), Duration::from_secs(15)),
            rt: std::sync::OnceLock::new(),
            publishing,
        }
    }

    /// Audio the agent hears goes into this runtime's rooms.
    pub(crate) fn attach(&self, rt: Weak<crate::Inner>) {
        let _ = self.rt.set(rt);
    }

    /// Makes the agent join the LiveKit room at `url` with `token` for huddle
    /// room `room_id`, unless it is already there (or on its way). Returns the
    /// presence to watch.
    pub fn ensure(&self, room_id: &str, url: &str, token: String) -> watch::Receiver<Presence> {
        match self.slots.entry(room_id.to_string()) {
            Entry::Occupied(slot) if !matches!(*slot.get().state.borrow(), Presence::Ended { .. }) => {
                slot.get().state.clone()
            }
            entry => {
                let (state_tx, state) = watch::channel(Presence::Joining);
                let stop = CancellationToken::new();
                let slot = Slot { stop: stop.clone(), state: state.clone() };
                match entry {
                    Entry::Occupied(mut o) => {
                        o.insert(slot);
                    }
                    Entry::Vacant(v) => {
                        v.insert(slot);
                    }
                }
                let task = PresenceTask {
                    room_id: room_id.to_string(),
                    url: url.to_string(),
                    token,
                    transport: self.transport.clone(),
                    stop,
                    state_tx,
                    backoff: self.backoff,
                    rt: self.rt.get().cloned(),
                    publishing: self.publishing.clone(),
                };
                tokio::spawn(task.run());
                state
            }
        }
    }

    /// The agent's presence in a room, if it was ever asked to join it.
    pub fn state(&self, room_id: &str) -> Option<Presence> {
        self.slots.get(room_id).map(|s| s.state.borrow().clone())
    }

    /// Makes the agent leave the room (no-op when it is not there).
    pub fn leave(&self, room_id: &str) {
        if let Some((_, slot)) = self.slots.remove(room_id) {
            slot.stop.cancel();
        }
    }

    /// Makes the agent leave every room and waits (up to `timeout`) until it has.
    pub async fn leave_all(&self, timeout: Duration) {
        let mut states = Vec::new();
        for slot in self.slots.iter() {
            slot.stop.cancel();
            states.push(slot.state.clone());
        }
        self.slots.clear();
        let all =
            futures::future::join_all(states.into_iter().map(|mut s| async move {
                s.wait_for(|p| matches!(p, Presence::Ended { .. })).await.ok().map(|_| ())
            }));
        let _ = tokio::time::timeout(timeout, all).await;
    }
}

struct PresenceTask {
    room_id: String,
    url: String,
    token: String,
    transport: Arc<dyn RoomTransport>,
    stop: CancellationToken,
    state_tx: watch::Sender<Presence>,
    backoff: (Duration, Duration),
    rt: Option<Weak<crate::Inner>>,
    publishing: Publishing,
}

impl PresenceTask {
    async fn run(self) {
        let mut attempt = 0u32;
        let reason = loop {
            let joined = tokio::select! {
                _ = self.stop.cancelled() => break "the room ended".to_string(),
                j = self.transport.join(&self.url, &self.token) => j,
            };
            let mut session = match joined {
                Ok(s) => s,
                Err(e @ LiveKitError::Unauthorized { .. }) => {
                    warn!(room_id = %self.room_id, error = %e, "LiveKit refused the agent's token");
                    break format!("LiveKit refused the token: {e}");
                }
                Err(e) => {
                    attempt += 1;
                    if !self.wait_backoff(attempt, e.to_string()).await {
                        break "the room ended".to_string();
                    }
                    continue;
                }
            };
            attempt = 0;
            let sid = session.join.participant.as_ref().map(|p| p.sid.clone()).unwrap_or_default();
            info!(room_id = %self.room_id, sid = %sid, "agent joined the LiveKit room");
            self.pin_session(&session.join).await;
            self.state_tx.send_replace(Presence::Joined { sid });
            let names: Names = Arc::new(std::sync::Mutex::new(
                session
                    .join
                    .other_participants
                    .iter()
                    .map(|p| (p.sid.clone(), (p.identity.clone(), p.name.clone())))
                    .collect(),
            ));
            let tracks = Tracks::default();
            let hearing = match (session.audio.take(), &self.rt) {
                (Some(audio), Some(rt)) => {
                    Some(tokio::spawn(hear(rt.clone(), self.room_id.clone(), audio, names.clone(), tracks.clone())))
                }
                _ => None,
            };
            let publishing = match (session.data.clone(), &self.rt) {
                (Some(data), Some(rt)) if !self.publishing.is_off() => {
                    let publisher = RoomPublisher {
                        room_id: self.room_id.clone(),
                        data,
                        tracks: tracks.clone(),
                        publishing: self.publishing.clone(),
                        identities: Default::default(),
                    };
                    Some(tokio::spawn(publisher.run(rt.clone())))
                }
                _ => None,
            };
            // Hold the session until the room ends, LiveKit closes it, or it drops.
            let closed = loop {
                tokio::select! {
                    _ = self.stop.cancelled() => {
                        if let Err(e) = session.leave().await {
                            warn!(room_id = %self.room_id, error = %e, "leaving the LiveKit room failed");
                        }
                        break None;
                    }
                    ev = session.events.recv() => match ev.and_then(|e| e.message) {
                        Some(lk::signal_response::Message::Update(u)) => {
                            let mut names = names.lock().unwrap_or_else(|e| e.into_inner());
                            for p in u.participants {
                                names.insert(p.sid, (p.identity, p.name));
                            }
                        }
                        Some(lk::signal_response::Message::Leave(l)) => {
                            break Some(format!("LiveKit asked the agent to leave (reason {})", l.reason));
                        }
                        Some(_) => {}
                        None => {
                            attempt += 1;
                            if !self.wait_backoff(attempt, "the LiveKit connection dropped".into()).await {
                                break None;
                            }
                            break Some(String::new());
                        }
                    },
                }
            };
            if let Some(p) = publishing {
                p.abort();
            }
            if let Some(h) = hearing {
                // the audio channel ends with the session; the streams finish their last words
                let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
            }
            match closed {
                None => break "the room ended".to_string(),
                Some(why) if !why.is_empty() => break why,
                Some(_) => continue, // reconnect
            }
        };
        info!(room_id = %self.room_id, reason = %reason, "agent left the LiveKit room");
        self.state_tx.send_replace(Presence::Ended { reason });
    }

    /// Records the LiveKit session the agent joined as the room's: webhooks of
    /// other sessions of the same name then leave the room alone.
    async fn pin_session(&self, join: &lk::JoinResponse) {
        let (Some(inner), Some(room)) = (self.rt.as_ref().and_then(Weak::upgrade), join.room.as_ref()) else {
            return;
        };
        if room.sid.is_empty() {
            return;
        }
        let rt = crate::Runtime { inner };
        if let Err(e) = rt.store().set_livekit_sid(&self.room_id, &room.sid, true).await {
            warn!(room_id = %self.room_id, sid = %room.sid, error = %e, "the room's LiveKit session was not recorded");
        }
    }

    /// Waits out the backoff for `attempt`; false when stopped meanwhile.
    async fn wait_backoff(&self, attempt: u32, error: String) -> bool {
        let (base, max) = self.backoff;
        let delay = base.saturating_mul(1 << attempt.saturating_sub(1).min(10)).min(max);
        warn!(room_id = %self.room_id, attempt, error = %error, delay_ms = delay.as_millis() as u64, "agent rejoining the LiveKit room");
        self.state_tx.send_replace(Presence::Reconnecting { attempt, error });
        tokio::select! {
            _ = self.stop.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

/// LiveKit participant sid -> (identity, name).
type Names = Arc<std::sync::Mutex<std::collections::HashMap<String, (String, String)>>>;

/// LiveKit participant identity -> the sid of the audio track the agent hears them on.
type Tracks = Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>;

/// Publishes what the room records into its LiveKit room while the agent is there.
struct RoomPublisher {
    room_id: String,
    data: DataSender,
    tracks: Tracks,
    publishing: Publishing,
    /// huddle participant id -> LiveKit identity.
    identities: std::collections::HashMap<String, String>,
}

impl RoomPublisher {
    /// Watches the room from now on and publishes each new segment and suggestion.
    async fn run(mut self, rt: Weak<crate::Inner>) {
        use futures::StreamExt;
        let watch = match rt.upgrade() {
            Some(inner) => crate::Runtime { inner }.admin().watch_room(&self.room_id).await,
            None => return,
        };
        let mut watch = match watch {
            Ok(w) => w,
            Err(e) => {
                warn!(room_id = %self.room_id, error = %e, "cannot watch the room; nothing is published to LiveKit");
                return;
            }
        };
        while let Some(item) = watch.next().await {
            let sent = match item {
                Ok(crate::WatchItem::Snapshot(d)) => {
                    for p in d.view.participants {
                        self.identities.insert(p.id, p.identity);
                    }
                    Ok(())
                }
                Ok(crate::WatchItem::Event(e)) => self.on_event(&e),
                Err(e) => {
                    warn!(room_id = %self.room_id, error = %e, "the room's watch failed; publishing to LiveKit stops");
                    break;
                }
            };
            match sent {
                Ok(()) => {}
                Err(LiveKitError::Closed) => break,
                Err(e) => warn!(room_id = %self.room_id, error = %e, "cannot publish to the LiveKit room"),
            }
        }
    }

    fn on_event(&mut self, e: &huddle_core::RoomEvent) -> huddle_actors::livekit::Result<()> {
        use huddle_core::RoomEventData as Data;
        match &e.data {
            Data::ParticipantJoined(p) => {
                self.identities.insert(p.participant_id.clone(), p.identity.clone());
                Ok(())
            }
            Data::TranscriptSegment(s) if self.publishing.captions => {
                let Some(identity) = self.identities.get(&s.participant_id).cloned() else {
                    tracing::debug!(room_id = %self.room_id, seq = e.seq, "segment of an unknown participant; no caption");
                    return Ok(());
                };
                let track = self.tracks.lock().unwrap_or_else(|e| e.into_inner()).get(&identity).cloned();
                let segment = lk::TranscriptionSegment {
                    id: format!("{}-{}", self.room_id, e.seq),
                    text: s.text.clone(),
                    start_time: s.start_ms,
                    end_time: s.end_ms,
                    r#final: true,
                    language: s.language.clone(),
                };
                let packet =
                    huddle_actors::livekit::data::transcription(&identity, &track.unwrap_or_default(), segment);
                self.data.send(packet, Reliability::Reliable)
            }
            Data::Suggestion(s) if !self.publishing.suggestion_topic.is_empty() => {
                let mut body = e.data.data_value();
                if let Some(o) = body.as_object_mut() {
                    let identity = self.identities.get(&s.participant_id).cloned().unwrap_or_default();
                    o.insert("room_id".into(), self.room_id.clone().into());
                    o.insert("seq".into(), e.seq.into());
                    o.insert("participant_identity".into(), identity.into());
                }
                let payload = serde_json::to_vec(&body).unwrap_or_default();
                let packet = huddle_actors::livekit::data::user_packet(&self.publishing.suggestion_topic, payload);
                self.data.send(packet, Reliability::Reliable)
            }
            _ => Ok(()),
        }
    }
}

/// Feeds what the agent hears into the room: each LiveKit participant's audio
/// becomes one audio stream of the huddle participant with the same identity
/// (joined to the room if it is not there yet), so transcripts are attributed.
async fn hear(
    rt: Weak<crate::Inner>,
    room_id: String,
    mut audio: tokio::sync::mpsc::Receiver<huddle_actors::livekit::AudioFrame>,
    names: Names,
    tracks: Tracks,
) {
    use std::collections::HashMap;
    // None: this participant's audio could not be opened; its frames are dropped.
    let mut streams: HashMap<String, Option<crate::AudioStream>> = HashMap::new();
    while let Some(frame) = audio.recv().await {
        if !streams.contains_key(&frame.participant_sid) {
            let known = names.lock().unwrap_or_else(|e| e.into_inner()).get(&frame.participant_sid).cloned();
            let Some((identity, name)) = known else {
                tracing::debug!(room_id = %room_id, sid = %frame.participant_sid, "audio from an unknown participant; dropped");
                continue;
            };
            let Some(inner) = rt.upgrade() else { break };
            let api = crate::Runtime { inner }.admin();
            let opened = open_stream(&api, &room_id, &identity, &name, frame.sample_rate).await;
            if let Err(e) = &opened {
                warn!(room_id = %room_id, identity = %identity, error = %e, "cannot transcribe a LiveKit participant");
            }
            tracks.lock().unwrap_or_else(|e| e.into_inner()).insert(identity.clone(), frame.track_sid.clone());
            streams.insert(frame.participant_sid.clone(), opened.ok());
        }
        if let Some(Some(stream)) = streams.get_mut(&frame.participant_sid) {
            let samples: Vec<f32> = frame.pcm.iter().map(|&s| f32::from(s) / 32_768.0).collect();
            if let Err(e) = stream.push(&samples).await {
                warn!(room_id = %room_id, sid = %frame.participant_sid, error = %e, "LiveKit audio not transcribed");
                streams.insert(frame.participant_sid.clone(), None);
            }
        }
    }
    for stream in streams.into_values().flatten() {
        if let Err(e) = stream.finish().await {
            warn!(room_id = %room_id, error = %e, "the last LiveKit audio was not transcribed");
        }
    }
}

/// The audio stream of the room's participant with `identity`, joining them first if needed.
async fn open_stream(
    api: &crate::Api,
    room_id: &str,
    identity: &str,
    name: &str,
    sample_rate: u32,
) -> Result<crate::AudioStream, ApiError> {
    let present = |d: &crate::RoomDetails| {
        d.view.participants.iter().find(|p| p.identity == identity && p.is_present()).map(|p| p.id.clone())
    };
    let pid = match present(&api.get_room(room_id).await?) {
        Some(id) => id,
        None => {
            let new = huddle_core::NewParticipant {
                kind: huddle_core::ParticipantKind::Human,
                display_name: if name.trim().is_empty() { identity.to_string() } else { name.to_string() },
                email: None,
                phone: None,
                identity: identity.to_string(),
            };
            match api.join_from_livekit(room_id, new).await {
                Ok(p) => p.id,
                Err(ApiError::AlreadyExists { .. }) => present(&api.get_room(room_id).await?)
                    .ok_or_else(|| ApiError::Internal(format!("participant `{identity}` vanished")))?,
                Err(e) => return Err(e),
            }
        }
    };
    api.open_audio(room_id, &pid, sample_rate).await
}

/// Runs LiveKit agent jobs: the assigned LiveKit room's huddle room (the bound
/// one, or a new one for `livekit.worker_entity`) is started, and the agent
/// joins with the assignment's token. The job lasts while the agent is there.
pub(crate) struct RuntimeJobs {
    pub(crate) rt: Weak<crate::Inner>,
    pub(crate) entity_id: Option<String>,
}

#[async_trait]
impl JobHandler for RuntimeJobs {
    async fn start_job(&self, assignment: lk::JobAssignment) -> huddle_actors::livekit::Result<JobRun> {
        let fail = |m: String| LiveKitError::Job(m);
        let rt =
            crate::Runtime { inner: self.rt.upgrade().ok_or_else(|| fail("the runtime is shutting down".into()))? };
        let job = assignment.job.ok_or_else(|| fail("the assignment carries no job".into()))?;
        let name =
            job.room.map(|r| r.name).filter(|n| !n.is_empty()).ok_or_else(|| fail("the job names no room".into()))?;
        let lk = rt.livekit().ok_or_else(|| fail("LiveKit is not configured".into()))?;
        let url = assignment.url.filter(|u| !u.is_empty()).unwrap_or_else(|| lk.url().to_string());
        let api = rt.admin();
        let room = match rt.store().find_livekit_room(&name).await {
            Ok(r) if !r.status.is_terminal() => r,
            Ok(_) | Err(StorageError::NotFound { .. }) => {
                let Some(entity_id) = self.entity_id.clone() else {
                    return Err(fail(format!(
                        "no open room is bound to LiveKit room `{name}` and livekit.worker_entity is not set"
                    )));
                };
                let new = NewRoom {
                    entity_id,
                    title: format!("LiveKit {name}"),
                    livekit_room: Some(name.clone()),
                    ..Default::default()
                };
                match api.create_room(new).await {
                    Ok(d) => d.view.room,
                    // another node or webhook bound it meanwhile
                    Err(ApiError::AlreadyExists { .. }) => {
                        rt.store().find_livekit_room(&name).await.map_err(|e| fail(e.to_string()))?
                    }
                    Err(e) => return Err(fail(e.to_string())),
                }
            }
            Err(e) => return Err(fail(e.to_string())),
        };
        // Join with the assignment's token first, so that starting the room
        // finds the agent already on its way.
        let mut state = lk.presence().ensure(&room.id, &url, assignment.token);
        if room.status == RoomStatus::Scheduled {
            match api.start_room(&room.id).await {
                Ok(_) | Err(ApiError::InvalidTransition { from: RoomStatus::Active, .. }) => {}
                Err(e) => {
                    lk.presence().leave(&room.id);
                    return Err(fail(e.to_string()));
                }
            }
        }
        let joined =
            state.wait_for(|p| matches!(p, Presence::Joined { .. } | Presence::Ended { .. })).await.map(|p| p.clone());
        if let Ok(Presence::Ended { reason }) = joined {
            return Err(fail(reason));
        }
        info!(room_id = %room.id, job = %job.id, "LiveKit job running");
        // An aborted job (a drain deadline, a server termination) takes the agent out too.
        let guard = LeaveOnDrop { rt: self.rt.clone(), room_id: room.id.clone() };
        Ok(Box::pin(async move {
            let _guard = guard;
            let ended = state.wait_for(|p| matches!(p, Presence::Ended { .. })).await.map(|p| p.clone());
            match ended {
                Ok(Presence::Ended { reason }) if reason.contains("refused") => Err(LiveKitError::Job(reason)),
                _ => Ok(()),
            }
        }))
    }
}

/// Takes the agent out of a room when a job's future is dropped.
struct LeaveOnDrop {
    rt: Weak<crate::Inner>,
    room_id: String,
}

impl Drop for LeaveOnDrop {
    fn drop(&mut self) {
        if let Some(inner) = self.rt.upgrade()
            && let Some(lk) = &inner.livekit
        {
            lk.presence().leave(&self.room_id);
        }
    }
}
