//! LiveKit: rooms bound to LiveKit rooms by name.
//!
//! - Tokens: [`LiveKit::participant_token`] mints a LiveKit access token (room
//!   join, publish, subscribe, data) for a participant. JoinRoom returns one for
//!   LiveKit-backed rooms; `huddle livekit token` prints one.
//! - Webhooks: LiveKit POSTs its events to `POST /webhooks/livekit` with a JWT
//!   in `Authorization` whose `sha256` claim covers the body. They are verified
//!   with livekit-api's `WebhookReceiver` and applied to the bound room by
//!   [`apply_webhook`]: `room_started` -> ACTIVE, `participant_joined` /
//!   `participant_left` -> the room's participants, `room_finished` ->
//!   COMPLETED, `egress_started|updated|ended` -> a recording record.
//!   LiveKit retries webhooks, so every step is idempotent.

use std::time::Duration;

use huddle_core::{NewParticipant, ParticipantKind, Recording, Room, RoomStatus, now_ms};
use huddle_storage::StorageError;
use livekit_api::access_token::{AccessToken, TokenVerifier, VideoGrants};
use livekit_api::webhooks::{WebhookError, WebhookReceiver};
use livekit_protocol as lk;

use crate::Runtime;
use crate::config::LiveKitConfig;
use crate::error::ApiError;

pub mod agent;

pub use agent::{AgentPresence, Presence, Publishing};

/// Longest LiveKit room name or identity huddle accepts.
pub const MAX_LIVEKIT_NAME: usize = 128;

/// A LiveKit server huddle works with: its URL and the API key pair that
/// signs tokens and verifies webhooks.
pub struct LiveKit {
    url: String,
    api_key: String,
    api_secret: String,
    agent_identity: String,
    token_ttl: Duration,
    receiver: WebhookReceiver,
    presence: AgentPresence,
    worker: std::sync::OnceLock<ractor::ActorRef<huddle_actors::livekit::WorkerMsg>>,
    /// TLS for the worker's `wss://` connection (`livekit.ca_file`).
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    config: LiveKitConfig,
}

/// `livekit.ca_file`'s TLS configuration. Config validation reports a bad file; here it is
/// logged and the Mozilla roots are used.
fn load_tls(cfg: &LiveKitConfig) -> Option<std::sync::Arc<rustls::ClientConfig>> {
    cfg.tls().unwrap_or_else(|e| {
        tracing::error!(error = %e, "LiveKit TLS: using the Mozilla roots only");
        None
    })
}

impl std::fmt::Debug for LiveKit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveKit").field("url", &self.url).field("api_key", &self.api_key).finish_non_exhaustive()
    }
}

/// Checks a LiveKit room name or identity: 1-128 characters, no control
/// characters, no space at either end.
pub fn check_livekit_name(field: &'static str, value: &str) -> Result<(), ApiError> {
    let n = value.chars().count();
    if n == 0 || n > MAX_LIVEKIT_NAME {
        return Err(ApiError::invalid(field, format!("must be 1-{MAX_LIVEKIT_NAME} characters")));
    }
    if value.chars().any(char::is_control) || value.trim() != value {
        return Err(ApiError::invalid(field, "must not hold control characters or start or end with a space"));
    }
    Ok(())
}

impl LiveKit {
    /// `None` unless URL, API key and secret are all configured.
    pub fn from_config(cfg: &LiveKitConfig) -> Option<LiveKit> {
        let tls = load_tls(cfg);
        let mut options = huddle_actors::livekit::WebRtcOptions::default();
        options.signal.tls = tls.clone();
        let transport = std::sync::Arc::new(huddle_actors::livekit::WebRtcTransport::new(options));
        Self::build(cfg, transport, tls)
    }

    /// As [`LiveKit::from_config`], joining rooms through `transport`.
    pub fn with_transport(
        cfg: &LiveKitConfig,
        transport: std::sync::Arc<dyn huddle_actors::livekit::RoomTransport>,
    ) -> Option<LiveKit> {
        Self::build(cfg, transport, load_tls(cfg))
    }

    /// The CA file is read once, here or in [`LiveKit::from_config`].
    fn build(
        cfg: &LiveKitConfig,
        transport: std::sync::Arc<dyn huddle_actors::livekit::RoomTransport>,
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    ) -> Option<LiveKit> {
        let (Some(url), Some(key), Some(secret)) = (&cfg.url, &cfg.api_key, &cfg.api_secret) else {
            return None;
        };
        Some(LiveKit {
            url: client_url(url),
            api_key: key.clone(),
            api_secret: secret.clone(),
            agent_identity: cfg.agent_identity.clone(),
            token_ttl: Duration::from_secs(cfg.token_ttl_secs),
            receiver: WebhookReceiver::new(TokenVerifier::with_api_key(key, secret)),
            presence: AgentPresence::new(transport, Publishing::from_config(cfg)),
            worker: std::sync::OnceLock::new(),
            tls,
            config: cfg.clone(),
        })
    }

    /// The agent's presence in LiveKit rooms.
    pub fn presence(&self) -> &AgentPresence {
        &self.presence
    }

    /// The agent worker, when `livekit.worker` is on and it was started.
    pub fn worker(&self) -> Option<&ractor::ActorRef<huddle_actors::livekit::WorkerMsg>> {
        self.worker.get()
    }

    /// Makes the agent join the LiveKit room of a bound room (its own token).
    pub(crate) fn agent_join(&self, room_id: &str, livekit_room: &str) -> Result<(), ApiError> {
        let token = self.agent_token(livekit_room)?;
        self.presence.ensure(room_id, &self.url, token);
        Ok(())
    }

    /// Starts the agent worker when `livekit.worker` is set.
    pub(crate) async fn start_worker(&self, inner: std::sync::Weak<crate::Inner>, namespace: &str) {
        if !self.config.worker {
            return;
        }
        let handler =
            std::sync::Arc::new(agent::RuntimeJobs { rt: inner, entity_id: self.config.worker_entity.clone() });
        let mut args = huddle_actors::livekit::WorkerArgs::new(
            &self.url,
            &self.api_key,
            &self.api_secret,
            &self.config.agent_name,
            self.config.max_jobs,
            handler,
        );
        args.tls = self.tls.clone();
        let name = format!("{namespace}/livekit-worker");
        match ractor::Actor::spawn(Some(name), huddle_actors::livekit::WorkerActor, args).await {
            Ok((worker, _)) => {
                let _ = self.worker.set(worker);
            }
            Err(e) => tracing::error!(error = %e, "the LiveKit agent worker did not start"),
        }
    }

    /// Drains the worker (no new jobs; running ones end within `deadline`)
    /// and takes the agent out of every room.
    pub(crate) async fn shutdown(&self, deadline: Duration) {
        if let Some(worker) = self.worker.get() {
            let _ = worker.cast(huddle_actors::livekit::WorkerMsg::Drain { deadline });
        }
        self.presence.leave_all(deadline).await;
        if let Some(worker) = self.worker.get() {
            let _ = worker.wait(Some(deadline + Duration::from_secs(1))).await;
        }
    }

    /// The server's URL as clients connect to it (`ws://` or `wss://`).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn agent_identity(&self) -> &str {
        &self.agent_identity
    }

    /// How long participant tokens are valid by default.
    pub fn token_ttl(&self) -> Duration {
        self.token_ttl
    }

    /// A token for `identity` to join `room`, publish, subscribe and send data,
    /// valid for `ttl` (the configured default when `None`).
    pub fn participant_token(
        &self,
        room: &str,
        identity: &str,
        name: &str,
        ttl: Option<Duration>,
    ) -> Result<String, ApiError> {
        check_livekit_name("room", room)?;
        check_livekit_name("identity", identity)?;
        if identity == self.agent_identity {
            return Err(ApiError::PermissionDenied(format!(
                "identity `{identity}` is reserved for huddle's agent (livekit.agent_identity): choose another"
            )));
        }
        self.sign(identity, name, room_grants(room), ttl.unwrap_or(self.token_ttl))
    }

    /// The agent's token for `room`: a participant token with the agent flag.
    pub fn agent_token(&self, room: &str) -> Result<String, ApiError> {
        check_livekit_name("room", room)?;
        let grants = VideoGrants { agent: true, ..room_grants(room) };
        self.sign(&self.agent_identity, "huddle", grants, self.token_ttl)
    }

    fn sign(&self, identity: &str, name: &str, grants: VideoGrants, ttl: Duration) -> Result<String, ApiError> {
        let mut token = AccessToken::with_api_key(&self.api_key, &self.api_secret)
            .with_identity(identity)
            .with_grants(grants)
            .with_ttl(ttl);
        if !name.is_empty() {
            token = token.with_name(name);
        }
        token.to_jwt().map_err(|e| ApiError::Internal(format!("cannot sign a LiveKit token: {e}")))
    }

    /// Verifies a webhook: `authorization` is the request's `Authorization`
    /// header (with or without `Bearer `).
    pub fn verify_webhook(&self, body: &str, authorization: &str) -> Result<lk::WebhookEvent, WebhookError> {
        let token = authorization.strip_prefix("Bearer ").unwrap_or(authorization).trim();
        self.receiver.receive(body, token)
    }
}

/// Join `room`, publish, subscribe and send data.
fn room_grants(room: &str) -> VideoGrants {
    VideoGrants {
        room_join: true,
        room: room.to_string(),
        can_publish: Some(true),
        can_subscribe: Some(true),
        can_publish_data: Some(true),
        ..Default::default()
    }
}

/// `http(s)://` becomes `ws(s)://`; a trailing slash is dropped.
fn client_url(url: &str) -> String {
    let url = url.trim_end_matches('/');
    if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        url.to_string()
    }
}

/// What a webhook did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The room changed (or a recording was recorded); a short description.
    Done(String),
    /// Nothing to do: a room huddle does not know, an event it does not use,
    /// or a change that was already made.
    Ignored(String),
}

/// After a restart: the agent goes back into the LiveKit rooms of bound rooms
/// that are ACTIVE. Returns how many.
pub(crate) async fn resume_presence(rt: &Runtime) -> Result<usize, ApiError> {
    let Some(lk) = rt.livekit() else { return Ok(0) };
    let mut n = 0;
    for id in rt.store().list_open_room_ids().await? {
        let room = rt.store().get_room(&id).await?;
        if let (RoomStatus::Active, Some(name)) = (room.status, &room.livekit_room) {
            lk.agent_join(&room.id, name)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Applies a verified LiveKit webhook to the room bound to its LiveKit room.
/// Transient failures (storage, a restarting room) are errors, so that the
/// HTTP answer makes LiveKit retry; everything else is [`Applied`].
pub async fn apply_webhook(rt: &Runtime, event: lk::WebhookEvent) -> Result<Applied, ApiError> {
    let (name, sid) = match (&event.room, &event.egress_info) {
        (Some(r), _) if !r.name.is_empty() => (r.name.clone(), r.sid.clone()),
        (_, Some(e)) if !e.room_name.is_empty() => (e.room_name.clone(), e.room_id.clone()),
        _ => return Ok(Applied::Ignored(format!("`{}` names no room", event.event))),
    };
    let room = match session_room(rt, &name, &sid, event.created_at).await? {
        Ok(room) => room,
        Err(why) => return Ok(Applied::Ignored(why)),
    };
    let api = rt.admin();
    match event.event.as_str() {
        "room_started" => ensure_active(rt, &room).await,
        "room_finished" => {
            ensure_active(rt, &room).await?;
            match api.end_room(&room.id).await {
                Ok(_) => Ok(Applied::Done(format!("room {} completed", room.id))),
                Err(ApiError::InvalidTransition { from, .. }) => {
                    Ok(Applied::Ignored(format!("room {} is already {from}", room.id)))
                }
                Err(e) => Err(e),
            }
        }
        "participant_joined" => {
            let Some(p) = event.participant else { return Ok(Applied::Ignored("no participant".into())) };
            if p.kind == lk::participant_info::Kind::Egress as i32 {
                return Ok(Applied::Ignored(format!("egress participant `{}` is not a participant", p.identity)));
            }
            if room.status.is_terminal() {
                return Ok(Applied::Ignored(format!("room {} is over ({})", room.id, room.status)));
            }
            ensure_active(rt, &room).await?;
            let agent = p.kind == lk::participant_info::Kind::Agent as i32
                || rt.livekit().is_some_and(|l| l.agent_identity() == p.identity);
            let new = NewParticipant {
                kind: if agent { ParticipantKind::Agent } else { ParticipantKind::Human },
                display_name: if p.name.trim().is_empty() { p.identity.clone() } else { p.name.clone() },
                email: None,
                phone: None,
                identity: p.identity.clone(),
            };
            match api.join_from_livekit(&room.id, new).await {
                Ok(joined) => Ok(Applied::Done(format!("{} joined room {} as {}", p.identity, room.id, joined.id))),
                Err(ApiError::AlreadyExists { .. }) => {
                    Ok(Applied::Ignored(format!("{} is already in room {}", p.identity, room.id)))
                }
                Err(e) => Err(e),
            }
        }
        "participant_left" => {
            let Some(p) = event.participant else { return Ok(Applied::Ignored("no participant".into())) };
            let details = api.get_room(&room.id).await?;
            let Some(present) = details.view.participants.iter().find(|x| x.identity == p.identity && x.is_present())
            else {
                return Ok(Applied::Ignored(format!("{} is not in room {}", p.identity, room.id)));
            };
            match api.leave_room(&room.id, &present.id).await {
                Ok(_) => Ok(Applied::Done(format!("{} left room {}", p.identity, room.id))),
                Err(ApiError::FailedPrecondition(why)) => Ok(Applied::Ignored(why)),
                Err(e) => Err(e),
            }
        }
        "egress_started" | "egress_updated" | "egress_ended" => {
            let Some(e) = event.egress_info else { return Ok(Applied::Ignored("no egress_info".into())) };
            let recording = recording_of(&room, e);
            rt.store().upsert_recording(&recording).await?;
            Ok(Applied::Done(format!("recording {} of room {} is {}", recording.egress_id, room.id, recording.status)))
        }
        other => Ok(Applied::Ignored(format!("event `{other}` is not used"))),
    }
}

/// The room a webhook about LiveKit room `name`, session `sid`, created at
/// `created_at` (Unix seconds) is about, or why there is none. Only rooms of the
/// entity that owns the name count. A room in that session is the one; else the
/// name's latest room, if it is in no session yet and was created before the
/// event (so a late event of an earlier session never reaches a newer room),
/// which is then pinned to this session.
async fn session_room(rt: &Runtime, name: &str, sid: &str, created_at: i64) -> Result<Result<Room, String>, ApiError> {
    let store = rt.store();
    if !sid.is_empty()
        && let Some(room) = store.find_livekit_session(name, sid).await?
    {
        return Ok(Ok(room));
    }
    let room = match store.find_livekit_room(name).await {
        Ok(room) => room,
        Err(StorageError::NotFound { .. }) => return Ok(Err(format!("no room is bound to LiveKit room `{name}`"))),
        Err(e) => return Err(e.into()),
    };
    if let Some(current) = store.livekit_sid(&room.id).await? {
        return Ok(Err(format!("room {} is in LiveKit session {current}, not `{sid}`", room.id)));
    }
    if created_at.saturating_mul(1000).saturating_add(999) < room.created_at_ms {
        return Ok(Err(format!("the event (at {created_at} s) is older than room {}", room.id)));
    }
    if !sid.is_empty() && !room.status.is_terminal() {
        let pinned = store.set_livekit_sid(&room.id, sid, false).await?;
        if pinned != sid {
            return Ok(Err(format!("room {} is in LiveKit session {pinned}, not `{sid}`", room.id)));
        }
        tracing::info!(room_id = %room.id, livekit_room = %name, sid = %sid, "room pinned to its LiveKit session");
    }
    Ok(Ok(room))
}

/// Starts a SCHEDULED room; an ACTIVE one stays as it is.
async fn ensure_active(rt: &Runtime, room: &Room) -> Result<Applied, ApiError> {
    if room.status.is_terminal() {
        return Ok(Applied::Ignored(format!("room {} is over ({})", room.id, room.status)));
    }
    match rt.admin().start_room(&room.id).await {
        Ok(_) => Ok(Applied::Done(format!("room {} started", room.id))),
        Err(ApiError::InvalidTransition { from: RoomStatus::Active, .. }) => {
            Ok(Applied::Ignored(format!("room {} is already ACTIVE", room.id)))
        }
        Err(ApiError::InvalidTransition { from, .. }) => {
            Ok(Applied::Ignored(format!("room {} is over ({from})", room.id)))
        }
        Err(e) => Err(e),
    }
}

fn recording_of(room: &Room, e: lk::EgressInfo) -> Recording {
    let ms = |ns: i64| (ns > 0).then_some(ns / 1_000_000);
    let status = lk::EgressStatus::try_from(e.status)
        .map(|s| s.as_str_name().to_string())
        .unwrap_or_else(|_| format!("EGRESS_STATUS_{}", e.status));
    let mut locations: Vec<String> = Vec::new();
    for f in &e.file_results {
        locations.push(if f.location.is_empty() { f.filename.clone() } else { f.location.clone() });
    }
    for s in &e.segment_results {
        locations.push(if s.playlist_location.is_empty() {
            s.playlist_name.clone()
        } else {
            s.playlist_location.clone()
        });
    }
    locations.extend(e.stream_results.iter().map(|s| s.url.clone()));
    locations.retain(|l| !l.is_empty());
    Recording {
        egress_id: e.egress_id,
        room_id: room.id.clone(),
        status,
        locations,
        started_at_ms: ms(e.started_at),
        ended_at_ms: ms(e.ended_at),
        error: (!e.error.is_empty()).then_some(e.error),
        recorded_at_ms: now_ms(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn livekit() -> LiveKit {
        LiveKit::from_config(&LiveKitConfig {
            url: Some("https://lk.example.com/".into()),
            api_key: Some("APIkey".into()),
            api_secret: Some("a-secret-of-enough-length-1234567".into()),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn urls_become_websocket_urls() {
        assert_eq!(livekit().url(), "wss://lk.example.com");
        assert_eq!(client_url("http://127.0.0.1:7880"), "ws://127.0.0.1:7880");
        assert_eq!(client_url("wss://x"), "wss://x");
    }

    #[test]
    fn tokens_carry_the_grants_and_verify() {
        let lk = livekit();
        let jwt = lk.participant_token("standup", "ada", "Ada", Some(Duration::from_secs(60))).unwrap();
        let claims = TokenVerifier::with_api_key("APIkey", "a-secret-of-enough-length-1234567").verify(&jwt).unwrap();
        assert_eq!(claims.sub, "ada");
        assert_eq!(claims.name, "Ada");
        assert!(claims.video.room_join);
        assert_eq!(claims.video.room, "standup");
        assert_eq!(claims.video.can_subscribe, Some(true));
        assert!(!claims.video.agent);
        assert!((claims.exp - claims.nbf) <= 61);
        // another secret does not verify it
        assert!(TokenVerifier::with_api_key("APIkey", "another-secret-0000000000000000").verify(&jwt).is_err());
        let agent = TokenVerifier::with_api_key("APIkey", "a-secret-of-enough-length-1234567")
            .verify(&lk.agent_token("standup").unwrap())
            .unwrap();
        assert!(agent.video.agent);
        assert_eq!(agent.sub, "huddle-agent");
    }

    #[test]
    fn names_are_checked() {
        let lk = livekit();
        assert!(lk.participant_token("", "ada", "", None).is_err());
        assert!(lk.participant_token("a\nroom", "ada", "", None).is_err());
        assert!(lk.participant_token(" room", "ada", "", None).is_err());
        assert!(lk.participant_token("r", &"x".repeat(129), "", None).is_err());
        assert!(check_livekit_name("room", "team standup-1.2_x@y+z").is_ok());
    }
}
