//! `/agent`: one agent worker's connection (livekit_agent.proto, agent protocol 1), and job
//! dispatch. The worker registers first; the server then sends `availability` requests and
//! `assignment`s, and records `update_worker`, `update_job` and `ping`.

use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use livekit_protocol as proto;
use prost::Message as _;
use proto::server_message::Message as ServerMsg;
use proto::worker_message::Message as WorkerMsg;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tracing::debug;

use super::{Inner, JobOutcome, JobStatus, JobUpdate, Result, ServerEvent, TestServerError, WorkerInfo, now_ms};

/// How long a new connection may take to send `register`.
const REGISTER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub(crate) enum Outbound {
    Send(Box<proto::ServerMessage>),
    /// Drop the socket without a close frame.
    Drop,
}

/// A connected, registered worker.
pub(crate) struct WorkerConn {
    pub tx: mpsc::UnboundedSender<Outbound>,
    pub agent_name: String,
}

pub(crate) async fn serve(inner: Arc<Inner>, ws: WebSocketStream<super::BoxIo>) {
    let (mut sink, mut stream) = ws.split();

    let register = match tokio::time::timeout(REGISTER_TIMEOUT, next_message(&mut stream)).await {
        Ok(Some(WorkerMsg::Register(register))) => register,
        _ => {
            debug!("agent connection closed before registering");
            return;
        }
    };
    let worker_id = inner.new_id("AW_");
    let (tx, mut rx) = mpsc::unbounded_channel();
    {
        let mut state = inner.state();
        state.workers.push(WorkerInfo {
            worker_id: worker_id.clone(),
            register: register.clone(),
            connected: true,
            statuses: Vec::new(),
            pings: 0,
        });
        state.worker_conns.insert(worker_id.clone(), WorkerConn { tx, agent_name: register.agent_name.clone() });
    }
    let response = proto::RegisterWorkerResponse {
        worker_id: worker_id.clone(),
        server_info: Some(inner.server_info()),
        endpoint_settings: None,
    };
    if send(&mut sink, ServerMsg::Register(response)).await {
        inner.emit(ServerEvent::WorkerRegistered { worker_id: worker_id.clone(), agent_name: register.agent_name });
        debug!(%worker_id, "worker registered");
        loop {
            tokio::select! {
                outgoing = rx.recv() => match outgoing {
                    Some(Outbound::Send(msg)) => {
                        if sink.send(Message::Binary(msg.encode_to_vec().into())).await.is_err() {
                            break;
                        }
                    }
                    // Dropping the halves closes the TCP stream with no close frame.
                    Some(Outbound::Drop) | None => break,
                },
                incoming = next_message(&mut stream) => {
                    let Some(msg) = incoming else { break };
                    if let Some(reply) = on_worker_message(&inner, &worker_id, msg)
                        && !send(&mut sink, reply).await
                    {
                        break;
                    }
                }
            }
        }
    }

    let mut state = inner.state();
    state.worker_conns.remove(&worker_id);
    if let Some(w) = state.workers.iter_mut().find(|w| w.worker_id == worker_id) {
        w.connected = false;
    }
    drop(state);
    inner.emit(ServerEvent::WorkerDisconnected { worker_id: worker_id.clone() });
    debug!(%worker_id, "worker disconnected");
}

/// Records one worker message; returns the direct reply, if any.
fn on_worker_message(inner: &Inner, worker_id: &str, msg: WorkerMsg) -> Option<ServerMsg> {
    match msg {
        WorkerMsg::Availability(answer) => {
            if let Some(waiter) = inner.state().pending.remove(&answer.job_id) {
                let _ = waiter.send(answer);
            }
            None
        }
        WorkerMsg::UpdateWorker(status) => {
            if let Some(w) = inner.state().workers.iter_mut().find(|w| w.worker_id == worker_id) {
                w.statuses.push(status);
            }
            inner.emit(ServerEvent::WorkerStatus { worker_id: worker_id.into(), status });
            None
        }
        WorkerMsg::UpdateJob(update) => {
            let status = JobStatus::try_from(update.status).unwrap_or(JobStatus::JsPending);
            let record =
                JobUpdate { worker_id: worker_id.into(), job_id: update.job_id.clone(), status, error: update.error };
            {
                let mut state = inner.state();
                match status {
                    JobStatus::JsRunning => {
                        state.running.insert(update.job_id);
                    }
                    JobStatus::JsSuccess | JobStatus::JsFailed => {
                        state.running.remove(&update.job_id);
                    }
                    JobStatus::JsPending => {}
                }
                state.peak_running = state.peak_running.max(state.running.len());
                state.job_updates.push(record.clone());
            }
            inner.emit(ServerEvent::JobUpdated(record));
            None
        }
        WorkerMsg::Ping(ping) => {
            if let Some(w) = inner.state().workers.iter_mut().find(|w| w.worker_id == worker_id) {
                w.pings += 1;
            }
            Some(ServerMsg::Pong(proto::WorkerPong { last_timestamp: ping.timestamp, timestamp: now_ms() }))
        }
        WorkerMsg::Register(_) => {
            debug!(%worker_id, "worker registered twice on one connection; ignored");
            None
        }
        WorkerMsg::SimulateJob(_) | WorkerMsg::MigrateJob(_) => None,
    }
}

pub(crate) async fn dispatch_job(inner: &Inner, room: &str) -> Result<JobOutcome> {
    let job_id = inner.new_id("AJ_");
    let candidates: Vec<(String, mpsc::UnboundedSender<Outbound>, String)> = {
        let mut state = inner.state();
        let mut list: Vec<_> =
            state.worker_conns.iter().map(|(id, c)| (id.clone(), c.tx.clone(), c.agent_name.clone())).collect();
        if list.is_empty() {
            return Err(TestServerError::NoWorkers);
        }
        let start = state.next_worker % list.len();
        state.next_worker = state.next_worker.wrapping_add(1);
        list.rotate_left(start);
        list
    };
    let room_info = {
        let state = inner.state();
        state.rooms.get(room).map(|r| r.sid.clone())
    };
    for (worker_id, tx, agent_name) in candidates {
        let job = proto::Job {
            id: job_id.clone(),
            dispatch_id: format!("AD_{job_id}"),
            r#type: proto::JobType::JtRoom as i32,
            room: Some(proto::Room {
                sid: room_info.clone().unwrap_or_default(),
                name: room.into(),
                ..Default::default()
            }),
            agent_name,
            state: Some(proto::JobState {
                status: JobStatus::JsPending as i32,
                updated_at: now_ms(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (answer_tx, answer_rx) = oneshot::channel();
        inner.state().pending.insert(job_id.clone(), answer_tx);
        let request = proto::AvailabilityRequest { job: Some(job.clone()), resuming: false };
        let _ =
            tx.send(Outbound::Send(Box::new(proto::ServerMessage { message: Some(ServerMsg::Availability(request)) })));
        let answer = tokio::time::timeout(inner.config.availability_timeout, answer_rx).await;
        inner.state().pending.remove(&job_id);
        let answer = match answer {
            Ok(Ok(answer)) if answer.available => answer,
            _ => continue,
        };
        let identity = if answer.participant_identity.is_empty() {
            format!("agent-{job_id}")
        } else {
            answer.participant_identity.clone()
        };
        let token = inner.participant_token(room, &identity, &answer.participant_name, true)?;
        inner.state().jobs.insert(job_id.clone(), worker_id.clone());
        let assignment = proto::JobAssignment { job: Some(job), url: Some(inner.url.clone()), token };
        let _ = tx
            .send(Outbound::Send(Box::new(proto::ServerMessage { message: Some(ServerMsg::Assignment(assignment)) })));
        debug!(%job_id, %worker_id, %room, "job assigned");
        return Ok(JobOutcome::Accepted { job_id, worker_id, participant_identity: identity });
    }
    debug!(%job_id, %room, "every worker declined the job");
    Ok(JobOutcome::Declined { job_id })
}

pub(crate) fn terminate_job(inner: &Inner, job_id: &str) -> Result<()> {
    let state = inner.state();
    let worker_id = state.jobs.get(job_id).ok_or_else(|| TestServerError::UnknownJob(job_id.into()))?;
    let conn = state.worker_conns.get(worker_id).ok_or_else(|| TestServerError::UnknownWorker(worker_id.clone()))?;
    let termination = proto::JobTermination { job_id: job_id.into() };
    let _ = conn
        .tx
        .send(Outbound::Send(Box::new(proto::ServerMessage { message: Some(ServerMsg::Termination(termination)) })));
    Ok(())
}

async fn next_message<S>(stream: &mut S) -> Option<WorkerMsg>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match stream.next().await? {
            Ok(Message::Binary(bytes)) => match proto::WorkerMessage::decode(bytes.as_ref()) {
                Ok(proto::WorkerMessage { message: Some(msg) }) => return Some(msg),
                Ok(_) => continue,
                Err(e) => debug!(error = %e, "undecodable WorkerMessage"),
            },
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

async fn send<S>(sink: &mut S, msg: ServerMsg) -> bool
where
    S: futures::Sink<Message> + Unpin,
{
    let msg = proto::ServerMessage { message: Some(msg) };
    sink.send(Message::Binary(msg.encode_to_vec().into())).await.is_ok()
}
