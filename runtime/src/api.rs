//! [`Api`]: every operation on entities and rooms, checked against the
//! caller's [`Scope`] and validated. The gRPC services and embedding
//! applications both go through it.
//!
//! Reads of rooms come from the live room actor when there is one, else from
//! storage. Changes to a room go through its actor, which persists before it
//! acknowledges.

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use huddle_actors::RoomError;
use huddle_actors::room::{self, RoomMsg, RoomView};
use huddle_actors::room_supervisor::{RoomSupervisorMsg, find_room};
use huddle_actors::transcriber::{TranscriberMsg, find_transcriber};
use huddle_actors::whisper_pool::WhisperPool;
use huddle_core::limits::MAX_NAME_CHARS;
use huddle_core::{
    ApiKey, Department, Document, DocumentStatus, Entity, NewDepartment, NewEntity, NewParticipant, NewRoom,
    Participant, Room, RoomEvent, RoomEventData, RoomStatus, TranscriptSegment, effective_instructions, new_id, now_ms,
};
use huddle_models::audio::vad::VadConfig;
use huddle_models::index::SearchFilter;
use huddle_storage::{DepartmentUpdate, EntityUpdate, Page, PageRequest, RoomFilter};
use ractor::rpc::CallResult;
use ractor::{ActorRef, RpcReplyPort};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::Runtime;
use crate::auth::{Scope, generate_key};
use crate::error::ApiError;
use crate::knowledge::SearchHit;
use crate::speech::AudioStream;

pub mod validate;

pub(crate) use validate::id as check_id;
use validate::{instructions as check_instructions, max_participants as check_max_participants, name as check_name};

type Result<T> = std::result::Result<T, ApiError>;

/// A room with its participants and effective instructions.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomDetails {
    pub view: RoomView,
    /// Entity, department and room instructions, in that order.
    pub effective_instructions: String,
}

/// One item of a watch stream: first a snapshot, then events in order.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchItem {
    Snapshot(RoomDetails),
    Event(RoomEvent),
}

/// A stream of watch items; it ends after the room ends.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchItem>> + Send>>;

/// How a participant reaches a LiveKit-backed room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveKitAccess {
    /// A LiveKit access token for the participant's identity.
    pub token: String,
    /// The LiveKit server's URL.
    pub url: String,
}

/// Longest search query, in characters.
pub const MAX_QUERY_CHARS: usize = 2_000;

/// What is known of an uploaded document before its bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocumentUpload {
    pub entity_id: String,
    pub department_id: Option<String>,
    pub filename: String,
    /// `text/plain`, `text/markdown`, `application/pdf`, or empty to go by the extension.
    pub content_type: String,
}

/// A knowledge search.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchRequest {
    pub query: String,
    pub entity_id: String,
    pub department_id: Option<String>,
    /// Hits wanted; 0 means 5, at most 100.
    pub k: u32,
    /// Cosine similarity floor, -1..=1.
    pub min_score: f32,
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Operations as seen from one [`Scope`].
#[derive(Clone)]
pub struct Api {
    rt: Runtime,
    scope: Scope,
}

/// What a failed or refused room call means for the caller.
enum Delivery<T> {
    Done(T),
    /// The room is over (no actor); here is its stored state.
    Ended(Box<Room>),
}

impl Api {
    pub(crate) fn new(rt: Runtime, scope: Scope) -> Self {
        Api { rt, scope }
    }

    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    pub(crate) fn runtime(&self) -> &Runtime {
        &self.rt
    }

    fn require_admin(&self, what: &str) -> Result<()> {
        if self.scope.is_admin() {
            Ok(())
        } else {
            Err(ApiError::PermissionDenied(format!("{what} needs the admin key")))
        }
    }

    /// The entity, if this scope may see it; another entity is NOT_FOUND.
    pub(crate) async fn visible_entity(&self, id: &str) -> Result<Entity> {
        check_id("entity_id", id)?;
        if !self.scope.sees(id) {
            return Err(ApiError::NotFound { what: "entity", id: id.to_string() });
        }
        Ok(self.rt.store().get_entity(id).await?)
    }

    /// The stored room, if this scope may see it; another entity's room is NOT_FOUND.
    async fn visible_room(&self, id: &str) -> Result<Room> {
        check_id("room_id", id)?;
        let room = self.rt.store().get_room(id).await?;
        if !self.scope.sees(&room.entity_id) {
            return Err(ApiError::NotFound { what: "room", id: id.to_string() });
        }
        Ok(room)
    }

    // ---- entities ----

    pub async fn create_entity(&self, new: NewEntity) -> Result<Entity> {
        self.require_admin("creating entities")?;
        check_name("name", &new.name)?;
        check_instructions("default_instructions", &new.default_instructions)?;
        if let Some(n) = new.max_participants {
            check_max_participants("max_participants", n, false)?;
        }
        if new.kind.len() > MAX_NAME_CHARS {
            return Err(ApiError::invalid("type", format!("must be at most {MAX_NAME_CHARS} characters")));
        }
        Ok(self.rt.store().create_entity(new).await?)
    }

    pub async fn get_entity(&self, id: &str) -> Result<Entity> {
        self.visible_entity(id).await
    }

    pub async fn list_entities(&self, page: PageRequest) -> Result<Page<Entity>> {
        match &self.scope {
            Scope::Admin => Ok(self.rt.store().list_entities(page).await?),
            Scope::Entity(id) => {
                let own = self.rt.store().get_entity(id).await?;
                Ok(Page { items: if page.token.is_empty() { vec![own] } else { vec![] }, next_token: String::new() })
            }
        }
    }

    /// Entity keys may change their own entity's name, type and default
    /// instructions; limits and activation need the admin key.
    pub async fn update_entity(&self, id: &str, update: EntityUpdate) -> Result<Entity> {
        self.visible_entity(id).await?;
        if !self.scope.is_admin()
            && (update.max_participants.is_some()
                || update.active.is_some()
                || update.recording_retention_days.is_some())
        {
            return Err(ApiError::PermissionDenied(
                "changing max_participants, recording_retention_days or active needs the admin key".into(),
            ));
        }
        if let Some(n) = &update.name {
            check_name("name", n)?;
        }
        if let Some(s) = &update.default_instructions {
            check_instructions("default_instructions", s)?;
        }
        if let Some(n) = update.max_participants {
            check_max_participants("max_participants", n, false)?;
        }
        let deactivated = update.active == Some(false);
        let entity = self.rt.store().update_entity(id, update).await?;
        if deactivated {
            self.rt.key_cache().forget_entity(id);
        }
        Ok(entity)
    }

    pub async fn create_department(&self, new: NewDepartment) -> Result<Department> {
        self.visible_entity(&new.entity_id).await?;
        check_name("name", &new.name)?;
        check_instructions("instructions", &new.instructions)?;
        Ok(self.rt.store().create_department(new).await?)
    }

    pub async fn list_departments(&self, entity_id: &str) -> Result<Vec<Department>> {
        self.visible_entity(entity_id).await?;
        Ok(self.rt.store().list_departments(entity_id).await?)
    }

    pub async fn update_department(&self, id: &str, update: DepartmentUpdate) -> Result<Department> {
        check_id("id", id)?;
        let dept = self.rt.store().get_department(id).await?;
        if !self.scope.sees(&dept.entity_id) {
            return Err(ApiError::NotFound { what: "department", id: id.to_string() });
        }
        if let Some(n) = &update.name {
            check_name("name", n)?;
        }
        if let Some(s) = &update.instructions {
            check_instructions("instructions", s)?;
        }
        Ok(self.rt.store().update_department(id, update).await?)
    }

    /// A new entity-scoped key; the secret is returned once and never stored.
    pub async fn create_api_key(&self, entity_id: &str) -> Result<(ApiKey, String)> {
        self.require_admin("creating API keys")?;
        self.visible_entity(entity_id).await?;
        let (key, secret) = generate_key(entity_id);
        let key = self.rt.store().create_api_key(key).await?;
        Ok((key, secret))
    }

    /// An entity's keys, revoked ones included, oldest first (their hashes are in
    /// the records; never hand those out).
    pub async fn list_api_keys(&self, entity_id: &str) -> Result<Vec<ApiKey>> {
        self.visible_entity(entity_id).await?;
        Ok(self.rt.store().list_api_keys(entity_id).await?)
    }

    /// Revokes a key; it fails authentication from now on. Revoking a revoked key
    /// changes nothing.
    pub async fn revoke_api_key(&self, id: &str) -> Result<ApiKey> {
        check_id("id", id)?;
        let key = self.rt.store().get_api_key(id).await?;
        if !self.scope.sees(&key.entity_id) {
            return Err(ApiError::NotFound { what: "api key", id: id.to_string() });
        }
        let key = self.rt.store().revoke_api_key(id, now_ms()).await?;
        self.rt.key_cache().forget_key(id);
        tracing::info!(key_id = %id, entity_id = %key.entity_id, "api key revoked");
        Ok(key)
    }

    // ---- rooms ----

    async fn details(&self, view: RoomView) -> Result<RoomDetails> {
        let store = self.rt.store();
        let entity = store.get_entity(&view.room.entity_id).await?;
        let dept = match &view.room.department_id {
            Some(d) => Some(store.get_department(d).await?),
            None => None,
        };
        let effective_instructions = effective_instructions(
            &entity.default_instructions,
            dept.as_ref().map(|d| d.instructions.as_str()),
            &view.room.custom_instructions,
        );
        Ok(RoomDetails { view, effective_instructions })
    }

    pub async fn create_room(&self, new: NewRoom) -> Result<RoomDetails> {
        let entity = self.visible_entity(&new.entity_id).await?;
        if !entity.active {
            return Err(ApiError::FailedPrecondition(format!(
                "entity `{}` is inactive: reactivate it to create rooms",
                entity.id
            )));
        }
        check_name("title", &new.title)?;
        check_instructions("custom_instructions", &new.custom_instructions)?;
        check_max_participants("max_participants", new.max_participants, true)?;
        validate::scheduled_for("scheduled_for", new.scheduled_for_ms, now_ms())?;
        if new.max_participants > entity.max_participants {
            return Err(ApiError::invalid(
                "max_participants",
                format!("must not exceed the entity's maximum of {}", entity.max_participants),
            ));
        }
        if let Some(d) = &new.department_id {
            check_id("department_id", d)?;
        }
        if let Some(name) = &new.livekit_room {
            crate::livekit::check_livekit_name("livekit_room", name)?;
            if self.rt.livekit().is_none() {
                return Err(ApiError::FailedPrecondition(
                    "livekit_room needs LiveKit configured on this node: set livekit.url, livekit.api_key and \
                     livekit.api_secret (HUDDLE__LIVEKIT__URL, ...)"
                        .into(),
                ));
            }
        }
        let now = now_ms();
        let room = Room {
            id: new_id(),
            entity_id: new.entity_id,
            department_id: new.department_id,
            title: new.title,
            custom_instructions: new.custom_instructions,
            status: RoomStatus::Scheduled,
            max_participants: new.max_participants,
            scheduled_for_ms: new.scheduled_for_ms,
            created_at_ms: now,
            started_at_ms: None,
            ended_at_ms: None,
            cancel_reason: None,
            event_seq: 1,
            livekit_room: new.livekit_room,
        };
        let created = RoomEvent {
            room_id: room.id.clone(),
            seq: 1,
            data: RoomEventData::Created(Box::new(huddle_core::event::Created {
                department_id: room.department_id.clone(),
                entity_id: room.entity_id.clone(),
                livekit_room: room.livekit_room.clone(),
                title: room.title.clone(),
            })),
            at_ms: now,
        };
        let room = self.rt.store().create_room(room, vec![created]).await?;
        self.details(RoomView { room, participants: vec![] }).await
    }

    /// A live room is read from its actor (no storage read for the room
    /// itself), any other from storage; either way the scope is checked on
    /// the room that was read.
    pub async fn get_room(&self, id: &str) -> Result<RoomDetails> {
        check_id("room_id", id)?;
        let live = match find_room(self.rt.namespace(), id) {
            Some(actor) => ractor::call_t!(actor, |reply| RoomMsg::Get { reply }, 5_000).ok(),
            None => None,
        };
        let view = match live {
            Some(v) => v,
            None => room::load(self.rt.store(), id).await?,
        };
        if !self.scope.sees(&view.room.entity_id) {
            return Err(ApiError::NotFound { what: "room", id: id.to_string() });
        }
        self.details(view).await
    }

    /// Rooms newest first. An entity key lists only its entity's rooms.
    pub async fn list_rooms(&self, mut filter: RoomFilter, page: PageRequest) -> Result<Page<Room>> {
        match (&self.scope, &filter.entity_id) {
            (Scope::Entity(own), None) => filter.entity_id = Some(own.clone()),
            (_, Some(e)) => {
                self.visible_entity(e).await?;
            }
            (Scope::Admin, None) => {}
        }
        if let (Some(a), Some(b)) = (filter.created_from_ms, filter.created_to_ms)
            && a > b
        {
            return Err(ApiError::invalid("created_after", "must not be after created_before"));
        }
        Ok(self.rt.store().list_rooms(filter, page).await?)
    }

    pub async fn start_room(&self, id: &str) -> Result<RoomDetails> {
        self.visible_room(id).await?;
        match self.call_room(id, false, |reply| RoomMsg::Start { reply }).await? {
            Delivery::Done(v) => {
                if let (Some(name), Some(lk)) = (&v.room.livekit_room, self.rt.livekit()) {
                    lk.agent_join(id, name)?;
                }
                self.details(v).await
            }
            Delivery::Ended(room) => Err(ApiError::InvalidTransition { from: room.status, to: RoomStatus::Active }),
        }
    }

    pub async fn end_room(&self, id: &str) -> Result<RoomDetails> {
        self.visible_room(id).await?;
        self.flush_transcript(id).await;
        match self.call_room(id, false, |reply| RoomMsg::End { reply }).await? {
            Delivery::Done(v) => {
                if let Some(lk) = self.rt.livekit() {
                    lk.presence().leave(id);
                }
                self.details(v).await
            }
            Delivery::Ended(room) => Err(ApiError::InvalidTransition { from: room.status, to: RoomStatus::Completed }),
        }
    }

    pub async fn cancel_room(&self, id: &str, reason: &str) -> Result<RoomDetails> {
        self.visible_room(id).await?;
        if reason.trim().is_empty() {
            return Err(ApiError::invalid("reason", "is required to cancel a room"));
        }
        check_instructions("reason", reason)?;
        let reason = reason.to_string();
        match self.call_room(id, false, move |reply| RoomMsg::Cancel { reason: reason.clone(), reply }).await? {
            Delivery::Done(v) => {
                if let Some(lk) = self.rt.livekit() {
                    lk.presence().leave(id);
                }
                self.details(v).await
            }
            Delivery::Ended(room) => Err(ApiError::InvalidTransition { from: room.status, to: RoomStatus::Cancelled }),
        }
    }

    pub async fn join_room(&self, id: &str, new: NewParticipant) -> Result<Participant> {
        Ok(self.join_room_with_access(id, new).await?.0)
    }

    /// Joins like [`Api::join_room`]; for a room bound to a LiveKit room it
    /// also returns the participant's LiveKit access (token and URL).
    ///
    /// In a room bound to a LiveKit room huddle assigns the identity
    /// (`p_<participant id>`, the token's identity): a caller-supplied one is
    /// refused, so nobody can take the agent's or another participant's.
    pub async fn join_room_with_access(
        &self,
        id: &str,
        new: NewParticipant,
    ) -> Result<(Participant, Option<LiveKitAccess>)> {
        let room = self.visible_room(id).await?;
        if room.livekit_room.is_some() && !new.identity.is_empty() {
            return Err(ApiError::invalid(
                "identity",
                "is assigned by huddle in a room bound to a LiveKit room: leave it empty",
            ));
        }
        let p = self.join_checked(&room, new).await?;
        let access = match (&room.livekit_room, self.rt.livekit()) {
            (Some(name), Some(lk)) => Some(LiveKitAccess {
                token: lk.participant_token(name, &p.identity, &p.display_name, None)?,
                url: lk.url().to_string(),
            }),
            _ => None,
        };
        Ok((p, access))
    }

    /// A participant LiveKit reports in a bound room (a webhook, or heard by the
    /// agent) joins with their LiveKit identity.
    pub(crate) async fn join_from_livekit(&self, id: &str, new: NewParticipant) -> Result<Participant> {
        let room = self.visible_room(id).await?;
        if room.livekit_room.is_some() {
            crate::livekit::check_livekit_name("identity", &new.identity)?;
        }
        self.join_checked(&room, new).await
    }

    async fn join_checked(&self, room: &Room, new: NewParticipant) -> Result<Participant> {
        check_name("display_name", &new.display_name)?;
        validate::optional_email("email", &new.email)?;
        validate::optional_phone("phone", &new.phone)?;
        if new.identity.len() > MAX_NAME_CHARS {
            return Err(ApiError::invalid("identity", format!("must be at most {MAX_NAME_CHARS} characters")));
        }
        match self.call_room(&room.id, false, move |reply| RoomMsg::Join { participant: new.clone(), reply }).await? {
            Delivery::Done(p) => Ok(p),
            Delivery::Ended(room) => Err(RoomError::Ended { status: room.status }.into()),
        }
    }

    /// Recordings of a room (LiveKit egress), oldest first.
    pub async fn list_recordings(&self, id: &str) -> Result<Vec<huddle_core::Recording>> {
        self.visible_room(id).await?;
        Ok(self.rt.store().list_recordings(id).await?)
    }

    pub async fn leave_room(&self, id: &str, participant_id: &str) -> Result<Participant> {
        self.visible_room(id).await?;
        check_id("participant_id", participant_id)?;
        let pid = participant_id.to_string();
        match self.call_room(id, false, move |reply| RoomMsg::Leave { participant_id: pid.clone(), reply }).await? {
            Delivery::Done(p) => Ok(p),
            Delivery::Ended(room) => Err(RoomError::Ended { status: room.status }.into()),
        }
    }

    /// Lets the room's transcriber finish what it has heard, so that the transcript is
    /// complete before the room ends. Best effort, bounded by the request timeout.
    async fn flush_transcript(&self, id: &str) {
        let Some(t) = find_transcriber(self.rt.namespace(), id) else { return };
        let timeout = self.rt.request_timeout();
        if let Err(e) = t.call(|reply| TranscriberMsg::Flush { reply }, Some(timeout)).await {
            tracing::warn!(room_id = %id, error = %e, "transcript not flushed before the room ended");
        }
    }

    // ---- speech ----

    /// Opens an audio stream for a participant present in an ACTIVE room. Audio is
    /// resampled to 16 kHz, cut into utterances and transcribed by the shared decoders;
    /// the segments land in the room (persisted, watched, [`Api::get_transcript`]).
    /// The first stream of a node loads the speech model, and fetches it if needed.
    pub async fn open_audio(&self, room_id: &str, participant_id: &str, sample_rate: u32) -> Result<AudioStream> {
        self.visible_room(room_id).await?;
        check_id("participant_id", participant_id)?;
        let resampler = huddle_models::audio::resample::Resampler::new(sample_rate)
            .map_err(|e| ApiError::invalid("sample_rate", e.to_string()))?;
        let room = self.get_room(room_id).await?;
        if room.view.room.status != RoomStatus::Active {
            return Err(RoomError::NotActive { status: room.view.room.status }.into());
        }
        match room.view.participants.iter().find(|p| p.id == participant_id) {
            None => return Err(ApiError::NotFound { what: "participant", id: participant_id.to_string() }),
            Some(p) if !p.is_present() => {
                return Err(RoomError::AlreadyLeft { participant_id: participant_id.to_string() }.into());
            }
            Some(_) => {}
        }
        let speech = self.rt.speech();
        let pool = speech.pool().await?;
        let vad = speech.vad();
        let (room_ref, transcriber) = self.attach_transcriber(room_id, pool.clone(), vad.clone()).await?;
        let stream_id = speech.next_stream_id();
        transcriber
            .cast(TranscriberMsg::Open { stream_id, participant_id: participant_id.to_string() })
            .map_err(|e| ApiError::Unavailable(format!("transcriber unavailable: {e}")))?;
        tracing::info!(room_id, participant_id, sample_rate, stream_id, "audio stream opened");
        Ok(AudioStream::new(
            self.clone(),
            room_id.to_string(),
            participant_id.to_string(),
            stream_id,
            resampler,
            sample_rate,
            (room_ref, transcriber, pool, vad),
        ))
    }

    /// The room's actor and its transcriber, spawning either as needed.
    pub(crate) async fn attach_transcriber(
        &self,
        room_id: &str,
        pool: WhisperPool,
        vad: VadConfig,
    ) -> Result<(ActorRef<RoomMsg>, ActorRef<huddle_actors::TranscriberMsg>)> {
        let deadline = tokio::time::Instant::now() + self.rt.request_timeout();
        loop {
            let Some(room) = self.ensure_room(room_id).await? else {
                let stored = self.rt.store().get_room(room_id).await?;
                return Err(RoomError::NotActive { status: stored.status }.into());
            };
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                return Err(ApiError::DeadlineExceeded(format!("room `{room_id}` did not answer in time")));
            }
            let (p, v, l) = (pool.clone(), vad.clone(), self.rt.speech().listener());
            match room
                .call(move |reply| RoomMsg::Transcriber { pool: p, vad: v, listener: l, reply }, Some(remaining))
                .await
            {
                Ok(CallResult::Success(Err(RoomError::Restarting { .. }))) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok(CallResult::Success(r)) => return Ok((room, r?)),
                Ok(CallResult::Timeout) => {
                    return Err(ApiError::DeadlineExceeded(format!("room `{room_id}` did not answer in time")));
                }
                // the actor stopped (passivated, ended, restarting): look again
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    /// One page of a room's transcript, oldest first.
    pub async fn get_transcript(&self, room_id: &str, page: PageRequest) -> Result<Page<TranscriptSegment>> {
        self.visible_room(room_id).await?;
        Ok(self.rt.store().list_transcript(room_id, page).await?)
    }

    // ---- knowledge ----

    /// A department of `entity_id`, or an error naming the field.
    async fn department_of(&self, entity_id: &str, department_id: Option<&str>) -> Result<()> {
        if let Some(d) = department_id {
            let dept = self.rt.store().get_department(d).await?;
            if dept.entity_id != entity_id {
                return Err(ApiError::invalid(
                    "department_id",
                    format!("department `{d}` is not a department of entity `{entity_id}`"),
                ));
            }
        }
        Ok(())
    }

    /// Accepts a document (text, Markdown or PDF) and ingests it in the background:
    /// extract, chunk, embed, index. Returns the document with status PROCESSING; its id
    /// is the job id for [`Api::get_ingest_job`].
    pub async fn ingest_document(&self, upload: DocumentUpload, bytes: Vec<u8>) -> Result<Document> {
        self.visible_entity(&upload.entity_id).await?;
        self.department_of(&upload.entity_id, upload.department_id.as_deref()).await?;
        check_name("filename", &upload.filename)?;
        let max = self.rt.knowledge().config().max_document_bytes;
        if bytes.is_empty() {
            return Err(ApiError::invalid("data", "the document is empty"));
        }
        if bytes.len() > max {
            return Err(ApiError::invalid(
                "data",
                format!("the document has {} bytes; the limit is {max}", bytes.len()),
            ));
        }
        let now = now_ms();
        let doc = Document {
            id: new_id(),
            entity_id: upload.entity_id,
            department_id: upload.department_id,
            filename: upload.filename,
            content_type: upload.content_type,
            bytes: bytes.len() as u64,
            sha256: hex_sha256(&bytes),
            status: DocumentStatus::Processing,
            error: None,
            chunks: 0,
            node_id: None,
            created_at_ms: now,
            updated_at_ms: now,
        };
        self.rt.knowledge().ingest(doc, bytes).await
    }

    /// The document an ingest job is about, with the job's status.
    pub async fn get_ingest_job(&self, job_id: &str) -> Result<Document> {
        check_id("job_id", job_id)?;
        let doc = self.rt.store().get_document(job_id).await?;
        if !self.scope.sees(&doc.entity_id) {
            return Err(ApiError::NotFound { what: "document", id: job_id.to_string() });
        }
        Ok(doc)
    }

    pub async fn list_documents(&self, entity_id: &str, page: PageRequest) -> Result<Page<Document>> {
        self.visible_entity(entity_id).await?;
        Ok(self.rt.store().list_documents(entity_id, page).await?)
    }

    /// Deletes a document and its chunks; they stop matching searches at once. Returns
    /// how many chunks went.
    pub async fn delete_document(&self, id: &str) -> Result<usize> {
        let doc = self.get_ingest_job(id).await?;
        self.rt.knowledge().delete_document(&doc).await
    }

    /// The knowledge-base chunks of an entity (and, with a department, that
    /// department's plus the entity-wide ones) most similar to `query`.
    pub async fn search(&self, req: SearchRequest) -> Result<Vec<SearchHit>> {
        let (k, min_score) = self.check_search(&req)?;
        self.visible_entity(&req.entity_id).await?;
        self.department_of(&req.entity_id, req.department_id.as_deref()).await?;
        let filter = SearchFilter {
            kinds: Some(vec![huddle_models::index::ItemKind::Document]),
            department_id: req.department_id.clone(),
            room_id: None,
        };
        self.rt.knowledge().search(&req.entity_id, &req.query, k, min_score, filter).await
    }

    /// What was said in one room, or all of an entity's rooms, most similar to `query`.
    pub async fn search_transcripts(&self, req: SearchRequest, room_id: Option<&str>) -> Result<Vec<SearchHit>> {
        let (k, min_score) = self.check_search(&req)?;
        self.visible_entity(&req.entity_id).await?;
        if let Some(r) = room_id {
            let room = self.visible_room(r).await?;
            if room.entity_id != req.entity_id {
                return Err(ApiError::invalid(
                    "room_id",
                    format!("room `{r}` is not a room of entity `{}`", req.entity_id),
                ));
            }
        }
        let filter = SearchFilter {
            kinds: Some(vec![huddle_models::index::ItemKind::Transcript]),
            department_id: None,
            room_id: room_id.map(str::to_string),
        };
        self.rt.knowledge().search(&req.entity_id, &req.query, k, min_score, filter).await
    }

    fn check_search(&self, req: &SearchRequest) -> Result<(usize, f32)> {
        check_id("entity_id", &req.entity_id)?;
        if req.query.trim().is_empty() {
            return Err(ApiError::invalid("query", "must not be empty"));
        }
        if req.query.chars().count() > MAX_QUERY_CHARS {
            return Err(ApiError::invalid("query", format!("must be at most {MAX_QUERY_CHARS} characters")));
        }
        let k = match req.k {
            0 => 5,
            k if k <= 100 => k as usize,
            k => return Err(ApiError::invalid("k", format!("must be at most 100 (got {k})"))),
        };
        if !(-1.0..=1.0).contains(&req.min_score) {
            return Err(ApiError::invalid("min_score", "must be between -1 and 1"));
        }
        Ok((k, req.min_score))
    }

    /// Fault injection for supervision tests: makes the room's transcriber panic.
    #[doc(hidden)]
    pub async fn inject_transcriber_panic(&self, id: &str) -> Result<()> {
        self.require_admin("fault injection")?;
        let t = find_transcriber(self.rt.namespace(), id)
            .ok_or_else(|| ApiError::FailedPrecondition(format!("room `{id}` has no transcriber")))?;
        t.cast(TranscriberMsg::InjectPanic).map_err(|e| ApiError::Unavailable(e.to_string()))
    }

    /// Fault injection for supervision tests: makes the room's actor panic.
    #[doc(hidden)]
    pub async fn inject_room_panic(&self, id: &str) -> Result<()> {
        self.require_admin("fault injection")?;
        let actor = self
            .ensure_room(id)
            .await?
            .ok_or_else(|| ApiError::FailedPrecondition(format!("room `{id}` is over and has no actor")))?;
        actor.cast(RoomMsg::InjectPanic).map_err(|e| ApiError::Unavailable(e.to_string()))
    }

    /// The live actor of a room, spawned on demand; `None` if the room is over.
    async fn ensure_room(&self, id: &str) -> Result<Option<ActorRef<RoomMsg>>> {
        if let Some(a) = find_room(self.rt.namespace(), id) {
            return Ok(Some(a));
        }
        let sup = self.rt.room_supervisor()?;
        let timeout = self.rt.request_timeout();
        match sup.call(|reply| RoomSupervisorMsg::Ensure { room_id: id.to_string(), reply }, Some(timeout)).await {
            Ok(CallResult::Success(r)) => Ok(r?),
            Ok(CallResult::Timeout) => Err(ApiError::DeadlineExceeded("room supervisor did not answer in time".into())),
            Ok(CallResult::SenderError) | Err(_) => {
                Err(ApiError::Unavailable("room supervisor is restarting: retry shortly".into()))
            }
        }
    }

    /// Sends a request to a room's actor, spawning it on demand, and retries
    /// while the actor is restarting — but only where the request surely was
    /// not executed (it never reached the actor), unless `idempotent`.
    async fn call_room<T, F>(&self, id: &str, idempotent: bool, make: F) -> Result<Delivery<T>>
    where
        T: Send + 'static,
        F: Fn(RpcReplyPort<std::result::Result<T, RoomError>>) -> RoomMsg,
    {
        let deadline = tokio::time::Instant::now() + self.rt.request_timeout();
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                return Err(ApiError::DeadlineExceeded(format!("room `{id}` did not answer in time")));
            }
            let actor = match self.ensure_room(id).await {
                Ok(Some(a)) => a,
                Ok(None) => return Ok(Delivery::Ended(Box::new(self.rt.store().get_room(id).await?))),
                Err(ApiError::Unavailable(_)) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            match actor.call(&make, Some(remaining)).await {
                Ok(CallResult::Success(Ok(v))) => return Ok(Delivery::Done(v)),
                Ok(CallResult::Success(Err(RoomError::Restarting { .. }))) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok(CallResult::Success(Err(e))) => return Err(e.into()),
                Ok(CallResult::Timeout) => {
                    return Err(ApiError::DeadlineExceeded(format!("room `{id}` did not answer in time")));
                }
                // Delivered, but the actor stopped before replying: either the
                // room just ended (then the request was dropped unexecuted) or
                // the actor crashed while handling it.
                Ok(CallResult::SenderError) => {
                    let room = self.rt.store().get_room(id).await?;
                    if room.status.is_terminal() {
                        return Ok(Delivery::Ended(Box::new(room)));
                    }
                    if !idempotent {
                        return Err(ApiError::Unavailable(format!(
                            "room `{id}` restarted while handling the request: check the room before retrying"
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                // Never delivered: the actor was already gone. Safe to retry.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    /// A snapshot of the room, then every later event in order (gap-free: a
    /// watcher that falls behind catches up from the stored log). The stream
    /// ends after the room ends or the runtime shuts down.
    pub async fn watch_room(&self, id: &str) -> Result<WatchStream> {
        self.visible_room(id).await?;
        let hub = self.rt.hub().clone();
        let mut events = hub.subscribe(id);
        let snapshot = self.get_room(id).await?;
        let (tx, rx) = mpsc::channel::<Result<WatchItem>>(64);
        let terminal = snapshot.view.room.status.is_terminal();
        let mut last_seq = snapshot.view.room.event_seq;
        let store = self.rt.store().clone();
        let closing = self.rt.closing().clone();
        let room_id = id.to_string();
        tokio::spawn(async move {
            if tx.send(Ok(WatchItem::Snapshot(snapshot))).await.is_err() || terminal {
                drop(events);
                hub.release_if_unwatched(&room_id);
                return;
            }
            loop {
                let next = tokio::select! {
                    _ = tx.closed() => break,
                    _ = closing.cancelled() => break,
                    r = events.recv() => r,
                };
                let closed = matches!(next, Err(broadcast::error::RecvError::Closed));
                let (catch_up_to, live) = match next {
                    Ok(ev) if ev.seq <= last_seq => continue,
                    Ok(ev) if ev.seq == last_seq + 1 => (None, Some(ev)),
                    Ok(ev) => (Some(ev.seq - 1), Some(ev)),
                    Err(broadcast::error::RecvError::Lagged(_)) => (Some(u64::MAX), None),
                    Err(broadcast::error::RecvError::Closed) => (Some(u64::MAX), None),
                };
                let mut batch = vec![];
                if let Some(upto) = catch_up_to {
                    match store.list_events(&room_id, last_seq, 10_000).await {
                        Ok(stored) => batch.extend(stored.into_iter().filter(|e| e.seq <= upto)),
                        Err(e) => {
                            let _ = tx.send(Err(e.into())).await;
                            break;
                        }
                    }
                }
                batch.extend(live);
                let mut done = false;
                for ev in batch {
                    if ev.seq <= last_seq {
                        continue;
                    }
                    last_seq = ev.seq;
                    let ended = matches!(ev.data, RoomEventData::Completed(_) | RoomEventData::Cancelled(_));
                    if tx.send(Ok(WatchItem::Event(ev))).await.is_err() || ended {
                        done = true;
                        break;
                    }
                }
                if done || closed {
                    break;
                }
            }
            drop(events);
            hub.release_if_unwatched(&room_id);
        });
        Ok(Box::pin(ReceiverStream::new(rx)))
    }
}
