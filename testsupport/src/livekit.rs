//! [`LiveKitTestServer`]: a test double of a LiveKit server's signalling and agent endpoints,
//! following livekit_rtc.proto and livekit_agent.proto, with a loopback WebRTC subscriber peer
//! that plays published audio ([`LiveKitTestServer::publish_audio`]).
//!
//! No LiveKit server can be installed on this machine, so tests talk to this double over real
//! loopback WebSockets carrying binary protobuf frames (`livekit-protocol`), and tokens are
//! real JWTs checked with `livekit-api`'s `TokenVerifier`.
//!
//! # Layout
//! - this file: the server handle, the accept loop, authorisation and routing, shared state
//! - [`rtc`]: `/rtc`, one participant's signalling connection (join, updates, leave, pings)
//! - [`agent`]: `/agent`, one agent worker's connection, and job dispatch
//! - [`media`]: the subscriber peer (webrtc-rs, Opus) a joining participant receives audio on,
//!   and the publisher peer that answers the participant's offer and receives its data channels
//!
//! Unlike LiveKit's SFU, the server does not forward data packets or published tracks to
//! other participants; it records them for tests to inspect.

mod agent;
mod media;
mod rtc;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use livekit_api::access_token::{AccessToken, TokenVerifier, VideoGrants};
use livekit_protocol as proto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tracing::{debug, warn};

pub use proto::JobStatus;

/// Errors of the test server.
#[derive(Debug, thiserror::Error)]
pub enum TestServerError {
    #[error("cannot bind the LiveKit test server on 127.0.0.1: {0}")]
    Bind(#[from] std::io::Error),
    #[error("api key and secret must not be empty")]
    InvalidKeys,
    #[error("cannot mint a token: {0}")]
    Token(String),
    #[error("no agent worker is registered: start a worker before dispatching jobs")]
    NoWorkers,
    #[error("no job {0} is known to the server")]
    UnknownJob(String),
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    #[error("no connected worker {0}")]
    UnknownWorker(String),
}

pub type Result<T, E = TestServerError> = std::result::Result<T, E>;

/// Knobs of the test server; the defaults suit most tests.
#[derive(Clone, Debug)]
pub struct TestServerConfig {
    pub api_key: String,
    pub api_secret: String,
    /// `JoinResponse.ping_interval`, seconds.
    pub ping_interval_secs: i32,
    /// `JoinResponse.ping_timeout`, seconds.
    pub ping_timeout_secs: i32,
    /// How long `dispatch_job` waits for a worker's `AvailabilityResponse`.
    pub availability_timeout: Duration,
    /// Serve `wss://localhost:PORT` with a fresh self-signed certificate for `localhost`
    /// (see [`LiveKitTestServer::client_tls`]) instead of `ws://127.0.0.1:PORT`.
    pub tls: bool,
}

impl TestServerConfig {
    pub fn new(api_key: &str, api_secret: &str) -> Self {
        Self {
            api_key: api_key.into(),
            api_secret: api_secret.into(),
            ping_interval_secs: 5,
            ping_timeout_secs: 15,
            availability_timeout: Duration::from_secs(5),
            tls: false,
        }
    }
}

/// What the server saw when a participant connected to `/rtc`.
#[derive(Clone, Debug, PartialEq)]
pub struct JoinRecord {
    pub room: String,
    pub identity: String,
    pub sid: String,
    /// The `protocol=` query parameter, if any.
    pub protocol: Option<i32>,
    /// The `sdk=` query parameter, if any.
    pub sdk: Option<String>,
    /// True when the token came in `Authorization: Bearer`, false for `access_token=`.
    pub bearer: bool,
}

/// One agent worker registration (a reconnecting worker registers again, with a new id).
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerInfo {
    pub worker_id: String,
    pub register: proto::RegisterWorkerRequest,
    pub connected: bool,
    /// Every `UpdateWorkerStatus` received, oldest first.
    pub statuses: Vec<proto::UpdateWorkerStatus>,
    /// Number of `WorkerPing`s answered.
    pub pings: u64,
}

/// One `UpdateJobStatus` as the server recorded it.
#[derive(Clone, Debug, PartialEq)]
pub struct JobUpdate {
    pub worker_id: String,
    pub job_id: String,
    pub status: JobStatus,
    pub error: String,
}

/// The result of [`LiveKitTestServer::dispatch_job`].
#[derive(Clone, Debug, PartialEq)]
pub enum JobOutcome {
    /// A worker said it was available and was sent the assignment.
    Accepted { job_id: String, worker_id: String, participant_identity: String },
    /// Every worker declined (or did not answer in time).
    Declined { job_id: String },
}

impl JobOutcome {
    pub fn is_accepted(&self) -> bool {
        matches!(self, JobOutcome::Accepted { .. })
    }

    pub fn job_id(&self) -> &str {
        match self {
            JobOutcome::Accepted { job_id, .. } | JobOutcome::Declined { job_id } => job_id,
        }
    }
}

/// A track published with [`LiveKitTestServer::publish_audio`].
#[derive(Clone, Debug, PartialEq)]
pub struct PublishedTrack {
    pub participant_sid: String,
    pub track_sid: String,
}

/// A `DataPacket` a participant sent on its publisher connection's data channel.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedData {
    pub room: String,
    /// The sender.
    pub identity: String,
    /// The data channel's label: `_reliable` or `_lossy`.
    pub channel: String,
    pub packet: proto::DataPacket,
    /// When the server received it.
    pub at: Instant,
}

impl ReceivedData {
    /// The caption, when the packet is a `Transcription`.
    pub fn transcription(&self) -> Option<&proto::Transcription> {
        match &self.packet.value {
            Some(proto::data_packet::Value::Transcription(t)) => Some(t),
            _ => None,
        }
    }

    /// The user packet, when the packet is one on `topic`.
    pub fn user_on(&self, topic: &str) -> Option<&proto::UserPacket> {
        match &self.packet.value {
            Some(proto::data_packet::Value::User(u)) if u.topic.as_deref() == Some(topic) => Some(u),
            _ => None,
        }
    }
}

/// When a published track started playing to a subscribing participant.
#[derive(Clone, Debug, PartialEq)]
pub struct Playback {
    pub room: String,
    /// The participant hearing it.
    pub subscriber: String,
    pub track_sid: String,
    /// The first 20 ms frame was written at about this instant.
    pub started: Instant,
}

/// Server-side events, for tests to await instead of sleeping.
#[derive(Clone, Debug)]
pub enum ServerEvent {
    DataReceived(Box<ReceivedData>),
    PlaybackStarted(Playback),
    ParticipantJoined { room: String, identity: String, sid: String },
    ParticipantLeft { room: String, identity: String, sid: String },
    SignalRequest { room: String, identity: String, request: Box<proto::SignalRequest> },
    WorkerRegistered { worker_id: String, agent_name: String },
    WorkerDisconnected { worker_id: String },
    WorkerStatus { worker_id: String, status: proto::UpdateWorkerStatus },
    JobUpdated(JobUpdate),
}

/// A test double of a LiveKit server's signalling and agent endpoints, following
/// livekit_rtc.proto and livekit_agent.proto; media only as published audio on the
/// subscriber connection.
///
/// Dropping it stops the server and closes every connection.
pub struct LiveKitTestServer {
    inner: Arc<Inner>,
    accept_task: JoinHandle<()>,
}

impl Drop for LiveKitTestServer {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl LiveKitTestServer {
    /// Binds `127.0.0.1:0` and serves `/rtc` and `/agent` for tokens signed with `api_secret`.
    pub async fn start(api_key: &str, api_secret: &str) -> Result<Self> {
        Self::start_with(TestServerConfig::new(api_key, api_secret)).await
    }

    pub async fn start_with(config: TestServerConfig) -> Result<Self> {
        if config.api_key.is_empty() || config.api_secret.is_empty() {
            return Err(TestServerError::InvalidKeys);
        }
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (events_tx, _) = broadcast::channel(1024);
        let tls = if config.tls { Some(Tls::self_signed()?) } else { None };
        let url = match &tls {
            Some(_) => format!("wss://localhost:{}", addr.port()),
            None => format!("ws://{addr}"),
        };
        let inner = Arc::new(Inner {
            url,
            tls,
            verifier: TokenVerifier::with_api_key(&config.api_key, &config.api_secret),
            config,
            state: Mutex::new(State::default()),
            events_tx,
            next_id: AtomicU64::new(1),
        });
        let accept_task = tokio::spawn(accept_loop(inner.clone(), listener));
        debug!(%addr, "LiveKit test server listening");
        Ok(Self { inner, accept_task })
    }

    /// `ws://127.0.0.1:PORT`, or `wss://localhost:PORT` with [`TestServerConfig::tls`].
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// This server's self-signed certificate as PEM (`None` without [`TestServerConfig::tls`]).
    pub fn certificate_pem(&self) -> Option<String> {
        self.inner.tls.as_ref().map(|t| t.pem.clone())
    }

    /// A client TLS configuration trusting only this server's self-signed certificate
    /// (`None` without [`TestServerConfig::tls`]).
    pub fn client_tls(&self) -> Option<Arc<rustls::ClientConfig>> {
        let tls = self.inner.tls.as_ref()?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(tls.certificate.clone()).ok()?;
        Some(Arc::new(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth()))
    }

    /// A participant token for `room` (join, publish, subscribe).
    pub fn token(&self, room: &str, identity: &str) -> String {
        self.inner.participant_token(room, identity, "", false).expect("the test server's keys are valid")
    }

    /// A token signed with the server's key and a different secret: the server rejects it.
    pub fn forged_token(&self, room: &str, identity: &str) -> String {
        AccessToken::with_api_key(&self.inner.config.api_key, "not-the-secret-not-the-secret")
            .with_identity(identity)
            .with_grants(VideoGrants { room_join: true, room: room.into(), ..Default::default() })
            .to_jwt()
            .expect("valid claims")
    }

    /// The participants now in `room`, in join order.
    pub fn participants(&self, room: &str) -> Vec<proto::ParticipantInfo> {
        let state = self.inner.state();
        let Some(room) = state.rooms.get(room) else { return Vec::new() };
        let mut list: Vec<_> = room.participants.values().map(|p| p.info.clone()).collect();
        list.sort_by_key(|p| p.joined_at_ms);
        list
    }

    /// Adds a server-side participant `identity` to `room` publishing one Opus microphone
    /// track. Every participant that joins afterwards (with subscribe permission) is offered a
    /// subscriber connection carrying the track (stream id `PA_xxx|TR_xxx`) and hears `pcm`
    /// (48 kHz mono) from the start, in real time, once connected. The publisher appears in
    /// `JoinResponse.other_participants` with the track in its `tracks`.
    pub fn publish_audio(&self, room: &str, identity: &str, pcm_48k_mono: Vec<i16>) -> PublishedTrack {
        let participant_sid = self.inner.new_id("PA_");
        let track_sid = self.inner.new_id("TR_");
        let info = proto::ParticipantInfo {
            sid: participant_sid.clone(),
            identity: identity.into(),
            state: proto::participant_info::State::Active as i32,
            joined_at: now_ms() / 1000,
            joined_at_ms: now_ms(),
            tracks: vec![proto::TrackInfo {
                sid: track_sid.clone(),
                r#type: proto::TrackType::Audio as i32,
                name: "microphone".into(),
                source: proto::TrackSource::Microphone as i32,
                mime_type: "audio/opus".into(),
                ..Default::default()
            }],
            permission: Some(proto::ParticipantPermission { can_publish: true, ..Default::default() }),
            version: 1,
            ..Default::default()
        };
        let publication = media::Publication {
            participant_sid: participant_sid.clone(),
            track_sid: track_sid.clone(),
            pcm: Arc::new(pcm_48k_mono),
        };
        let mut state = self.inner.state();
        let room_sid = self.inner.new_id("RM_");
        let room = state.rooms.entry(room.to_string()).or_insert_with(|| RoomState {
            sid: room_sid,
            created_ms: now_ms(),
            participants: Default::default(),
            publications: Vec::new(),
        });
        for other in room.participants.values() {
            let _ = other.tx.send(rtc::update(info.clone()));
        }
        // Nobody reads this participant's signalling: it lives in the server.
        let (tx, _) = mpsc::unbounded_channel();
        room.participants.insert(identity.to_string(), Participant { info, tx, control: None });
        room.publications.push(publication);
        PublishedTrack { participant_sid, track_sid }
    }

    /// Every `DataPacket` participants of `room` sent, in arrival order.
    pub fn data_packets(&self, room: &str) -> Vec<ReceivedData> {
        self.inner.state().data.iter().filter(|d| d.room == room).cloned().collect()
    }

    /// Every playback of published audio to a participant of `room`, oldest first.
    pub fn playbacks(&self, room: &str) -> Vec<Playback> {
        self.inner.state().playbacks.iter().filter(|p| p.room == room).cloned().collect()
    }

    /// Every `SignalRequest` received from `identity` in `room`, oldest first (kept after leaving).
    pub fn requests(&self, room: &str, identity: &str) -> Vec<proto::SignalRequest> {
        self.inner.state().requests.get(&(room.to_string(), identity.to_string())).cloned().unwrap_or_default()
    }

    /// Every `/rtc` connection accepted, oldest first.
    pub fn joins(&self) -> Vec<JoinRecord> {
        self.inner.state().joins.clone()
    }

    /// Every worker registration, oldest first.
    pub fn workers(&self) -> Vec<WorkerInfo> {
        self.inner.state().workers.clone()
    }

    /// Every `UpdateJobStatus` received, oldest first.
    pub fn job_updates(&self) -> Vec<JobUpdate> {
        self.inner.state().job_updates.clone()
    }

    /// Jobs whose last reported status is `JS_RUNNING`.
    pub fn running_jobs(&self) -> Vec<String> {
        self.inner.state().running.iter().cloned().collect()
    }

    /// The most jobs ever reported `JS_RUNNING` at the same time.
    pub fn peak_running_jobs(&self) -> usize {
        self.inner.state().peak_running
    }

    /// Server-side events from now on.
    pub fn events(&self) -> broadcast::Receiver<ServerEvent> {
        self.inner.events_tx.subscribe()
    }

    /// Offers a job for `room` to the registered workers in turn, as the LiveKit server does:
    /// `AvailabilityRequest`, then on `available` a `JobAssignment` with this server's url
    /// and a token for the room. Safe to call concurrently.
    pub async fn dispatch_job(&self, room: &str) -> Result<JobOutcome> {
        agent::dispatch_job(&self.inner, room).await
    }

    /// Sends `JobTermination` to the worker running `job_id`.
    pub fn terminate_job(&self, job_id: &str) -> Result<()> {
        agent::terminate_job(&self.inner, job_id)
    }

    /// Drops the `/rtc` socket of `identity` in `room` without a close frame or `leave`, as a
    /// network failure would. False when no such participant is connected.
    pub fn drop_connection(&self, room: &str, identity: &str) -> bool {
        self.fault(room, identity, rtc::Fault::DropSocket)
    }

    /// Closes the server's peer connections to `identity` in `room` while signalling stays
    /// up: the participant's ICE stops getting answers and, after its ICE timeout, fails.
    pub fn drop_media(&self, room: &str, identity: &str) -> bool {
        self.fault(room, identity, rtc::Fault::DropMedia)
    }

    fn fault(&self, room: &str, identity: &str, fault: rtc::Fault) -> bool {
        let state = self.inner.state();
        let control = state.rooms.get(room).and_then(|r| r.participants.get(identity)).and_then(|p| p.control.clone());
        control.is_some_and(|c| c.send(fault).is_ok())
    }

    /// Drops a worker's socket without a close frame, as a network failure would.
    pub fn disconnect_worker(&self, worker_id: &str) -> Result<()> {
        let state = self.inner.state();
        let conn = state.worker_conns.get(worker_id).ok_or_else(|| TestServerError::UnknownWorker(worker_id.into()))?;
        let _ = conn.tx.send(agent::Outbound::Drop);
        Ok(())
    }
}

/// State shared by the accept loop, connection tasks and the test-facing handle.
/// The server side of [`TestServerConfig::tls`].
struct Tls {
    certificate: rustls::pki_types::CertificateDer<'static>,
    pem: String,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl Tls {
    fn self_signed() -> Result<Tls> {
        let tls_error = |e: String| TestServerError::Tls(e);
        let key =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).map_err(|e| tls_error(e.to_string()))?;
        let certificate = key.cert.der().clone();
        let pem = key.cert.pem();
        let private = rustls::pki_types::PrivateKeyDer::Pkcs8(key.key_pair.serialize_der().into());
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![certificate.clone()], private)
            .map_err(|e| tls_error(e.to_string()))?;
        Ok(Tls { certificate, pem, acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)) })
    }
}

/// A connection's byte stream: plain TCP or TLS over it.
pub(crate) trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}
pub(crate) type BoxIo = Box<dyn Io>;

pub(crate) struct Inner {
    config: TestServerConfig,
    url: String,
    tls: Option<Tls>,
    verifier: TokenVerifier,
    state: Mutex<State>,
    events_tx: broadcast::Sender<ServerEvent>,
    next_id: AtomicU64,
}

#[derive(Default)]
pub(crate) struct State {
    rooms: HashMap<String, RoomState>,
    requests: HashMap<(String, String), Vec<proto::SignalRequest>>,
    joins: Vec<JoinRecord>,
    workers: Vec<WorkerInfo>,
    worker_conns: BTreeMap<String, agent::WorkerConn>,
    /// Round-robin cursor over `worker_conns` for dispatch.
    next_worker: usize,
    /// Availability requests waiting for the worker's answer, by job id.
    pending: HashMap<String, oneshot::Sender<proto::AvailabilityResponse>>,
    /// Assigned jobs: job id -> worker id.
    jobs: HashMap<String, String>,
    job_updates: Vec<JobUpdate>,
    data: Vec<ReceivedData>,
    playbacks: Vec<Playback>,
    running: std::collections::BTreeSet<String>,
    peak_running: usize,
}

pub(crate) struct RoomState {
    sid: String,
    created_ms: i64,
    participants: HashMap<String, Participant>,
    /// Audio played to every participant that joins (see `publish_audio`).
    publications: Vec<media::Publication>,
}

pub(crate) struct Participant {
    info: proto::ParticipantInfo,
    tx: mpsc::UnboundedSender<proto::SignalResponse>,
    /// Failure injection into the participant's connection (`None` for server-side ones).
    control: Option<mpsc::UnboundedSender<rtc::Fault>>,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn emit(&self, event: ServerEvent) {
        let _ = self.events_tx.send(event);
    }

    pub(crate) fn record_data(&self, data: ReceivedData) {
        self.state().data.push(data.clone());
        self.emit(ServerEvent::DataReceived(Box::new(data)));
    }

    pub(crate) fn record_playback(&self, playback: Playback) {
        self.state().playbacks.push(playback.clone());
        self.emit(ServerEvent::PlaybackStarted(playback));
    }

    /// A short unique id with LiveKit's prefixes (`PA_`, `RM_`, `AW_`, `AJ_`).
    fn new_id(&self, prefix: &str) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}{n:08X}")
    }

    fn server_info(&self) -> proto::ServerInfo {
        proto::ServerInfo {
            edition: proto::server_info::Edition::Standard as i32,
            version: "huddle-testsupport".into(),
            protocol: 17,
            region: "loopback".into(),
            node_id: "ND_TEST".into(),
            agent_protocol: 1,
            ..Default::default()
        }
    }

    fn participant_token(&self, room: &str, identity: &str, name: &str, agent: bool) -> Result<String> {
        let mut token = AccessToken::with_api_key(&self.config.api_key, &self.config.api_secret)
            .with_identity(identity)
            .with_name(name)
            .with_grants(VideoGrants {
                room_join: true,
                room: room.into(),
                can_publish: Some(true),
                can_subscribe: Some(true),
                can_publish_data: Some(true),
                agent,
                ..Default::default()
            });
        if agent {
            token = token.with_kind("agent");
        }
        token.to_jwt().map_err(|e| TestServerError::Token(e.to_string()))
    }

    /// Checks the upgrade request's path and token; the error becomes the HTTP response.
    fn authorize(&self, req: &Request) -> Result<Route, (StatusCode, String)> {
        let path = req.uri().path().trim_end_matches('/');
        let query: HashMap<String, String> = url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let bearer = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        let (token, via_bearer) = match (bearer, query.get("access_token")) {
            (Some(t), _) => (t, true),
            (None, Some(t)) => (t.clone(), false),
            (None, None) => return Err((StatusCode::UNAUTHORIZED, "no access token".into())),
        };
        let claims = self.verifier.verify(&token).map_err(|e| (StatusCode::UNAUTHORIZED, e.to_string()))?;
        match path {
            "/rtc" => {
                if !claims.video.room_join || claims.video.room.is_empty() || claims.sub.is_empty() {
                    return Err((StatusCode::UNAUTHORIZED, "token does not grant room_join".into()));
                }
                Ok(Route::Rtc(Box::new(rtc::RtcJoin {
                    protocol: query.get("protocol").and_then(|p| p.parse().ok()),
                    sdk: query.get("sdk").cloned(),
                    bearer: via_bearer,
                    claims,
                })))
            }
            "/agent" => {
                if !claims.video.agent {
                    return Err((StatusCode::UNAUTHORIZED, "token does not grant agent".into()));
                }
                Ok(Route::Agent)
            }
            _ => Err((StatusCode::NOT_FOUND, format!("no endpoint {path}"))),
        }
    }
}

pub(crate) enum Route {
    Rtc(Box<rtc::RtcJoin>),
    Agent,
}

async fn accept_loop(inner: Arc<Inner>, listener: TcpListener) {
    // Connection tasks live in the set, so aborting this task closes every connection.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(serve_connection(inner.clone(), stream, peer));
                }
                Err(e) => warn!(error = %e, "LiveKit test server accept failed"),
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(inner: Arc<Inner>, stream: TcpStream, peer: SocketAddr) {
    let stream: BoxIo = match &inner.tls {
        Some(tls) => match tls.acceptor.accept(stream).await {
            Ok(stream) => Box::new(stream),
            Err(e) => {
                debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
        },
        None => Box::new(stream),
    };
    let mut route = None;
    // The callback's signature is tungstenite's.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        match inner.authorize(req) {
            Ok(r) => {
                route = Some(r);
                Ok(resp)
            }
            Err((status, message)) => {
                debug!(%peer, %status, %message, "LiveKit test server rejected a connection");
                let mut err = ErrorResponse::new(Some(message));
                *err.status_mut() = status;
                Err(err)
            }
        }
    };
    let ws = match tokio_tungstenite::accept_hdr_async(stream, callback).await {
        Ok(ws) => ws,
        Err(e) => {
            debug!(%peer, error = %e, "WebSocket handshake failed");
            return;
        }
    };
    match route {
        Some(Route::Rtc(join)) => rtc::serve(inner, ws, *join).await,
        Some(Route::Agent) => agent::serve(inner, ws).await,
        None => {}
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}
