//! `WorkerActor`: a LiveKit agent worker (livekit_agent.proto, agent protocol 1).
//!
//! Connects to `{url}/agent` with a token whose video grant has `agent: true`, registers
//! (`JT_ROOM`, `agent_name`, `version`), then answers `availability` requests from actual free
//! capacity: `running + reserved < max_jobs`, where a yes reserves a slot until the
//! `assignment` arrives or `reservation_timeout` passes, so a burst of requests never gets more
//! than `max_jobs` yeses. Each assignment runs [`JobHandler::start_job`] on its own task and
//! reports `JS_RUNNING`, then `JS_SUCCESS` or `JS_FAILED`. Worker status (`WS_AVAILABLE` /
//! `WS_FULL`, load, job count) is sent whenever it changes. A dropped socket is reconnected
//! with capped exponential backoff and the worker registers again; running jobs carry on.
//! [`WorkerMsg::Drain`] stops taking jobs, waits for the running ones up to a deadline, then
//! closes and stops the actor.

use std::collections::{BTreeMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::{FutureExt, SinkExt, StreamExt};
use livekit_api::access_token::{AccessToken, VideoGrants};
use livekit_protocol as proto;
use prost::Message as _;
use proto::server_message::Message as ServerMsg;
use proto::worker_message::Message as ClientMsg;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, info, instrument, warn};

use super::{LiveKitError, Result, endpoint_url, now_ms};

/// A running job: completes when the job ends.
pub type JobRun = BoxFuture<'static, Result<()>>;

/// Runs the jobs LiveKit assigns to this worker.
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    /// Joins the room with the assignment's `url` and `token` and starts the job; the returned
    /// future completes when the job ends. An error here fails the job (`JS_FAILED`).
    async fn start_job(&self, assignment: proto::JobAssignment) -> Result<JobRun>;
}

pub struct WorkerActor;

pub struct WorkerArgs {
    /// The LiveKit server, `ws(s)://` or `http(s)://`.
    pub url: String,
    pub api_key: String,
    pub api_secret: String,
    /// `RegisterWorkerRequest.agent_name`; explicit dispatch targets this name.
    pub agent_name: String,
    pub max_jobs: usize,
    pub handler: Arc<dyn JobHandler>,
    /// How often to send `WorkerPing`; the connection is dropped after three without a pong.
    pub ping_interval: Duration,
    /// How long a yes to an availability request holds a slot without an assignment.
    pub reservation_timeout: Duration,
    /// First reconnect delay; doubles per failed attempt up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Time allowed to connect and receive the register response.
    pub connect_timeout: Duration,
    /// TLS for `wss://` servers; `None` trusts the Mozilla roots.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl WorkerArgs {
    pub fn new(
        url: &str,
        api_key: &str,
        api_secret: &str,
        agent_name: &str,
        max_jobs: usize,
        handler: Arc<dyn JobHandler>,
    ) -> Self {
        Self {
            url: url.into(),
            api_key: api_key.into(),
            api_secret: api_secret.into(),
            agent_name: agent_name.into(),
            max_jobs,
            handler,
            ping_interval: Duration::from_secs(10),
            reservation_timeout: Duration::from_secs(10),
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(10),
            tls: None,
        }
    }
}

/// A snapshot of the worker, for tests and status pages.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerView {
    /// The id from the current registration; `None` while disconnected.
    pub worker_id: Option<String>,
    /// How many times the worker has registered (1 + reconnects).
    pub registrations: u32,
    pub running_jobs: Vec<String>,
    pub reserved_slots: usize,
    pub max_jobs: usize,
    pub draining: bool,
}

pub enum WorkerMsg {
    /// Drain: answer availability with no, report `WS_FULL`, wait for running jobs up to
    /// `deadline` (then fail the rest), close the connection and stop.
    Drain {
        deadline: Duration,
    },
    Status(RpcReplyPort<WorkerView>),
    RunningJobs(RpcReplyPort<Vec<String>>),
    // Internal: sent by the worker's own tasks and timers.
    #[doc(hidden)]
    Connect,
    #[doc(hidden)]
    Connected {
        conn_id: u64,
        worker_id: String,
        server_info: Option<proto::ServerInfo>,
        tx: ConnTx,
    },
    #[doc(hidden)]
    ConnectFailed {
        conn_id: u64,
        error: LiveKitError,
    },
    #[doc(hidden)]
    Disconnected {
        conn_id: u64,
    },
    #[doc(hidden)]
    Server {
        conn_id: u64,
        message: Box<ServerMsg>,
    },
    #[doc(hidden)]
    PingTick,
    #[doc(hidden)]
    ReservationExpired {
        job_id: String,
    },
    #[doc(hidden)]
    JobStarted {
        job_id: String,
    },
    #[doc(hidden)]
    JobEnded {
        job_id: String,
        error: Option<String>,
    },
    #[doc(hidden)]
    DrainDeadline,
}

#[doc(hidden)]
pub type ConnTx = mpsc::UnboundedSender<Outbound>;

#[doc(hidden)]
pub enum Outbound {
    Send(Box<ClientMsg>),
    Close,
}

struct Conn {
    id: u64,
    worker_id: String,
    tx: ConnTx,
    last_pong: Instant,
}

struct RunningJob {
    room: String,
    started: bool,
    task: JoinHandle<()>,
}

pub struct WorkerState {
    args: WorkerArgs,
    conn: Option<Conn>,
    conn_seq: u64,
    connecting: bool,
    attempt: u32,
    registrations: u32,
    reserved: HashSet<String>,
    jobs: BTreeMap<String, RunningJob>,
    draining: bool,
    /// Job status updates made while disconnected, sent after the next registration.
    backlog: Vec<ClientMsg>,
    /// The last `UpdateWorkerStatus` sent: (status, job_count, draining).
    last_status: Option<(i32, u32, bool)>,
    status_seq: u64,
    ping_timer: Option<JoinHandle<()>>,
}

impl WorkerState {
    fn view(&self) -> WorkerView {
        WorkerView {
            worker_id: self.conn.as_ref().map(|c| c.worker_id.clone()),
            registrations: self.registrations,
            running_jobs: self.jobs.keys().cloned().collect(),
            reserved_slots: self.reserved.len(),
            max_jobs: self.args.max_jobs,
            draining: self.draining,
        }
    }

    fn has_capacity(&self) -> bool {
        !self.draining && self.jobs.len() + self.reserved.len() < self.args.max_jobs
    }

    fn send(&mut self, message: ClientMsg) {
        match &self.conn {
            Some(conn) => {
                let _ = conn.tx.send(Outbound::Send(Box::new(message)));
            }
            None if matches!(message, ClientMsg::UpdateJob(_)) => self.backlog.push(message),
            None => {}
        }
    }

    fn send_job_status(&mut self, job_id: &str, status: proto::JobStatus, error: String) {
        self.send(ClientMsg::UpdateJob(proto::UpdateJobStatus { job_id: job_id.into(), status: status as i32, error }));
    }

    /// Sends `UpdateWorkerStatus` if status, job count or draining changed since the last one.
    fn update_status(&mut self) {
        if self.conn.is_none() {
            return;
        }
        let status =
            if self.has_capacity() { proto::WorkerStatus::WsAvailable } else { proto::WorkerStatus::WsFull } as i32;
        let job_count = self.jobs.len() as u32;
        let key = (status, job_count, self.draining);
        if self.last_status == Some(key) {
            return;
        }
        self.last_status = Some(key);
        self.status_seq += 1;
        let load = if self.args.max_jobs == 0 { 1.0 } else { job_count as f32 / self.args.max_jobs as f32 };
        self.send(ClientMsg::UpdateWorker(proto::UpdateWorkerStatus {
            status: Some(status),
            load: load.min(1.0),
            job_count,
            draining: self.draining,
            seq: self.status_seq,
        }));
    }

    fn backoff(&mut self) -> Duration {
        let delay = backoff_delay(self.args.initial_backoff, self.args.max_backoff, self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    fn close_connection(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = conn.tx.send(Outbound::Close);
        }
    }
}

impl Actor for WorkerActor {
    type Msg = WorkerMsg;
    type State = WorkerState;
    type Arguments = WorkerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<WorkerMsg>,
        args: WorkerArgs,
    ) -> Result<WorkerState, ActorProcessingErr> {
        if args.max_jobs == 0 {
            return Err("max_jobs must be at least 1".into());
        }
        endpoint_url(&args.url, "agent")?;
        let ping_timer = Some(myself.send_interval(args.ping_interval, || WorkerMsg::PingTick));
        myself.cast(WorkerMsg::Connect)?;
        Ok(WorkerState {
            args,
            conn: None,
            conn_seq: 0,
            connecting: false,
            attempt: 0,
            registrations: 0,
            reserved: HashSet::new(),
            jobs: BTreeMap::new(),
            draining: false,
            backlog: Vec::new(),
            last_status: None,
            status_seq: 0,
            ping_timer,
        })
    }

    async fn post_stop(&self, _: ActorRef<WorkerMsg>, state: &mut WorkerState) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = state.ping_timer.take() {
            timer.abort();
        }
        for (job_id, job) in std::mem::take(&mut state.jobs) {
            warn!(%job_id, room = %job.room, "worker stopped with the job still running; aborting it");
            job.task.abort();
        }
        state.close_connection();
        Ok(())
    }

    #[instrument(skip_all, fields(agent_name = %state.args.agent_name))]
    async fn handle(
        &self,
        myself: ActorRef<WorkerMsg>,
        msg: WorkerMsg,
        state: &mut WorkerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WorkerMsg::Connect => {
                if state.conn.is_some() || state.connecting {
                    return Ok(());
                }
                state.connecting = true;
                state.conn_seq += 1;
                let conn_id = state.conn_seq;
                let token = AccessToken::with_api_key(&state.args.api_key, &state.args.api_secret)
                    .with_grants(VideoGrants { agent: true, ..Default::default() })
                    .to_jwt()
                    .map_err(|e| LiveKitError::Token(e.to_string()))?;
                let register = proto::RegisterWorkerRequest {
                    r#type: proto::JobType::JtRoom as i32,
                    agent_name: state.args.agent_name.clone(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ping_interval: state.args.ping_interval.as_secs() as u32,
                    allowed_permissions: Some(proto::ParticipantPermission {
                        can_subscribe: true,
                        can_publish: true,
                        can_publish_data: true,
                        can_update_metadata: true,
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                let url = endpoint_url(&state.args.url, "agent")?;
                let tls = state.args.tls.clone();
                tokio::spawn(run_connection(myself, conn_id, url, token, register, state.args.connect_timeout, tls));
            }
            WorkerMsg::Connected { conn_id, worker_id, server_info, tx } => {
                if conn_id != state.conn_seq {
                    let _ = tx.send(Outbound::Close);
                    return Ok(());
                }
                state.connecting = false;
                state.attempt = 0;
                state.registrations += 1;
                let agent_protocol = server_info.as_ref().map(|s| s.agent_protocol).unwrap_or_default();
                info!(%worker_id, agent_protocol, registrations = state.registrations, "registered with LiveKit");
                state.conn = Some(Conn { id: conn_id, worker_id, tx, last_pong: Instant::now() });
                state.last_status = None;
                state.update_status();
                for message in std::mem::take(&mut state.backlog) {
                    state.send(message);
                }
            }
            WorkerMsg::ConnectFailed { conn_id, error } => {
                if conn_id != state.conn_seq {
                    return Ok(());
                }
                state.connecting = false;
                let delay = state.backoff();
                warn!(error = %error, attempt = state.attempt, ?delay, "cannot register with LiveKit; retrying");
                myself.send_after(delay, || WorkerMsg::Connect);
            }
            WorkerMsg::Disconnected { conn_id } => {
                if state.conn.as_ref().map(|c| c.id) == Some(conn_id) {
                    lose_connection(&myself, state, "LiveKit worker connection lost; reconnecting");
                }
            }
            WorkerMsg::Server { conn_id, message } => {
                if state.conn.as_ref().map(|c| c.id) != Some(conn_id) {
                    return Ok(());
                }
                on_server_message(&myself, state, *message);
            }
            WorkerMsg::PingTick => {
                let timeout = state.args.ping_interval * 3;
                match state.conn.as_ref().map(|c| c.last_pong.elapsed() > timeout) {
                    Some(true) => lose_connection(&myself, state, "no pong from LiveKit; reconnecting"),
                    Some(false) => state.send(ClientMsg::Ping(proto::WorkerPing { timestamp: now_ms() })),
                    None => {}
                }
            }
            WorkerMsg::ReservationExpired { job_id } => {
                if state.reserved.remove(&job_id) {
                    debug!(%job_id, "no assignment for a reserved slot; released");
                    state.update_status();
                }
            }
            WorkerMsg::JobStarted { job_id } => {
                if let Some(job) = state.jobs.get_mut(&job_id) {
                    job.started = true;
                    state.send_job_status(&job_id, proto::JobStatus::JsRunning, String::new());
                }
            }
            WorkerMsg::JobEnded { job_id, error } => {
                let Some(job) = state.jobs.remove(&job_id) else { return Ok(()) };
                match error {
                    None => {
                        info!(%job_id, room = %job.room, "job finished");
                        state.send_job_status(&job_id, proto::JobStatus::JsSuccess, String::new());
                    }
                    Some(error) => {
                        warn!(%job_id, room = %job.room, started = job.started, %error, "job failed");
                        state.send_job_status(&job_id, proto::JobStatus::JsFailed, error);
                    }
                }
                state.update_status();
                if state.draining && state.jobs.is_empty() {
                    finish_drain(&myself, state);
                }
            }
            WorkerMsg::Drain { deadline } => {
                if state.draining {
                    return Ok(());
                }
                info!(running = state.jobs.len(), ?deadline, "draining the LiveKit worker");
                state.draining = true;
                state.reserved.clear();
                state.update_status();
                if state.jobs.is_empty() {
                    finish_drain(&myself, state);
                } else {
                    myself.send_after(deadline, || WorkerMsg::DrainDeadline);
                }
            }
            WorkerMsg::DrainDeadline => {
                for (job_id, job) in std::mem::take(&mut state.jobs) {
                    warn!(%job_id, room = %job.room, "drain deadline passed; aborting the job");
                    job.task.abort();
                    state.send_job_status(
                        &job_id,
                        proto::JobStatus::JsFailed,
                        "the worker's drain deadline passed".into(),
                    );
                }
                finish_drain(&myself, state);
            }
            WorkerMsg::Status(reply) => {
                let _ = reply.send(state.view());
            }
            WorkerMsg::RunningJobs(reply) => {
                let _ = reply.send(state.jobs.keys().cloned().collect());
            }
        }
        Ok(())
    }
}

fn on_server_message(myself: &ActorRef<WorkerMsg>, state: &mut WorkerState, message: ServerMsg) {
    match message {
        ServerMsg::Availability(request) => {
            let job_id = request.job.map(|j| j.id).unwrap_or_default();
            let available = !job_id.is_empty() && state.has_capacity();
            if available {
                state.reserved.insert(job_id.clone());
                let expired = job_id.clone();
                myself.send_after(state.args.reservation_timeout, move || WorkerMsg::ReservationExpired {
                    job_id: expired.clone(),
                });
            }
            debug!(%job_id, available, running = state.jobs.len(), reserved = state.reserved.len(), "availability");
            state.send(ClientMsg::Availability(proto::AvailabilityResponse {
                job_id,
                available,
                participant_name: state.args.agent_name.clone(),
                ..Default::default()
            }));
            state.update_status();
        }
        ServerMsg::Assignment(assignment) => {
            let Some(job) = assignment.job.as_ref() else {
                warn!("assignment without a job; ignored");
                return;
            };
            let job_id = job.id.clone();
            let room = job.room.as_ref().map(|r| r.name.clone()).unwrap_or_default();
            let reserved = state.reserved.remove(&job_id);
            if state.jobs.contains_key(&job_id) {
                warn!(%job_id, "assignment for a job already running; ignored");
                return;
            }
            if !reserved && !state.has_capacity() {
                warn!(%job_id, "assignment without a reserved slot while full; refusing it");
                state.send_job_status(&job_id, proto::JobStatus::JsFailed, "the worker is at capacity".into());
                state.update_status();
                return;
            }
            let mut assignment = assignment;
            if assignment.url.as_deref().unwrap_or("").is_empty() {
                assignment.url = Some(state.args.url.clone());
            }
            let handler = state.args.handler.clone();
            let actor = myself.clone();
            let task_job_id = job_id.clone();
            let task = tokio::spawn(async move {
                let job_id = task_job_id;
                let run = AssertUnwindSafe(async {
                    let job = handler.start_job(assignment).await?;
                    let _ = actor.cast(WorkerMsg::JobStarted { job_id: job_id.clone() });
                    job.await
                })
                .catch_unwind()
                .await;
                let error = match run {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(_) => Some("the job handler panicked".to_string()),
                };
                let _ = actor.cast(WorkerMsg::JobEnded { job_id, error });
            });
            info!(%job_id, %room, "job assigned");
            state.jobs.insert(job_id, RunningJob { room, started: false, task });
            state.update_status();
        }
        ServerMsg::Termination(termination) => {
            if let Some(job) = state.jobs.remove(&termination.job_id) {
                info!(job_id = %termination.job_id, room = %job.room, "job terminated by the server");
                job.task.abort();
                state.send_job_status(&termination.job_id, proto::JobStatus::JsSuccess, String::new());
                state.update_status();
                if state.draining && state.jobs.is_empty() {
                    finish_drain(myself, state);
                }
            }
        }
        ServerMsg::Pong(_) => {
            if let Some(conn) = state.conn.as_mut() {
                conn.last_pong = Instant::now();
            }
        }
        ServerMsg::Register(_) => debug!("a second register response; ignored"),
        ServerMsg::GoAway(_) => {
            lose_connection(myself, state, "the LiveKit server asked the worker to go away; reconnecting");
        }
    }
}

/// `initial * 2^attempt`, capped at `max`.
fn backoff_delay(initial: Duration, max: Duration, attempt: u32) -> Duration {
    initial.saturating_mul(2u32.saturating_pow(attempt.min(16))).min(max)
}

/// Closes the connection (if any) and schedules a reconnect after the backoff.
fn lose_connection(myself: &ActorRef<WorkerMsg>, state: &mut WorkerState, why: &'static str) {
    state.close_connection();
    // The server re-dispatches unanswered jobs; a reservation would only block a slot.
    state.reserved.clear();
    let delay = state.backoff();
    warn!(?delay, running = state.jobs.len(), "{why}");
    myself.send_after(delay, || WorkerMsg::Connect);
}

fn finish_drain(myself: &ActorRef<WorkerMsg>, state: &mut WorkerState) {
    info!("LiveKit worker drained; closing");
    state.close_connection();
    myself.stop(Some("drained".into()));
}

/// Connects, registers, then pumps messages both ways until either side closes.
async fn run_connection(
    actor: ActorRef<WorkerMsg>,
    conn_id: u64,
    url: url::Url,
    token: String,
    register: proto::RegisterWorkerRequest,
    connect_timeout: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
) {
    let base = url.to_string();
    let handshake = async {
        let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url.as_str())
            .map_err(|e| LiveKitError::InvalidUrl { url: base.clone(), reason: e.to_string() })?;
        let bearer = format!("Bearer {token}")
            .parse()
            .map_err(|_| LiveKitError::Token("the token is not a valid header value".into()))?;
        request.headers_mut().insert("authorization", bearer);
        let connector = tls.map(tokio_tungstenite::Connector::Rustls);
        let connected = tokio_tungstenite::connect_async_tls_with_config(request, None, true, connector).await;
        let (mut ws, _) = connected.map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 401 => {
                LiveKitError::Unauthorized { message: "the agent token was rejected".into() }
            }
            e => LiveKitError::Connect { url: base.clone(), reason: e.to_string() },
        })?;
        let hello = proto::WorkerMessage { message: Some(ClientMsg::Register(register)) };
        ws.send(Message::Binary(hello.encode_to_vec().into()))
            .await
            .map_err(|e| LiveKitError::Connect { url: base.clone(), reason: e.to_string() })?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Binary(bytes))) => {
                    if let Some(ServerMsg::Register(response)) = proto::ServerMessage::decode(bytes.as_ref())?.message {
                        return Ok((ws, response));
                    }
                }
                Some(Ok(Message::Close(_))) | None => return Err(LiveKitError::Closed),
                Some(Err(e)) => return Err(LiveKitError::Connect { url: base.clone(), reason: e.to_string() }),
                Some(Ok(_)) => {}
            }
        }
    };
    let (ws, response) = match tokio::time::timeout(connect_timeout, handshake).await {
        Ok(Ok(connected)) => connected,
        Ok(Err(error)) => {
            let _ = actor.cast(WorkerMsg::ConnectFailed { conn_id, error });
            return;
        }
        Err(_) => {
            let error = LiveKitError::Timeout { after: connect_timeout, what: "the worker register response" };
            let _ = actor.cast(WorkerMsg::ConnectFailed { conn_id, error });
            return;
        }
    };

    let (tx, mut rx) = mpsc::unbounded_channel();
    let connected =
        WorkerMsg::Connected { conn_id, worker_id: response.worker_id, server_info: response.server_info, tx };
    if actor.cast(connected).is_err() {
        return;
    }
    let (mut sink, mut stream) = ws.split();
    loop {
        tokio::select! {
            outgoing = rx.recv() => match outgoing {
                Some(Outbound::Send(message)) => {
                    let message = proto::WorkerMessage { message: Some(*message) };
                    if sink.send(Message::Binary(message.encode_to_vec().into())).await.is_err() {
                        break;
                    }
                }
                Some(Outbound::Close) | None => {
                    let _ = sink.close().await;
                    return;
                }
            },
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Binary(bytes))) => match proto::ServerMessage::decode(bytes.as_ref()) {
                    Ok(proto::ServerMessage { message: Some(message) }) => {
                        if actor.cast(WorkerMsg::Server { conn_id, message: Box::new(message) }).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "undecodable ServerMessage; ignored"),
                },
                Some(Ok(Message::Close(_))) | None => break,
                Some(Err(e)) => {
                    debug!(error = %e, "LiveKit worker connection failed");
                    break;
                }
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = actor.cast(WorkerMsg::Disconnected { conn_id });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_backoff_doubles_then_caps() {
        let (initial, max) = (Duration::from_millis(500), Duration::from_secs(15));
        let delays: Vec<_> = (0..8).map(|a| backoff_delay(initial, max, a).as_millis()).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]);
        assert_eq!(backoff_delay(initial, max, u32::MAX), max);
    }
}
