//! LiveKit signalling and the agent worker, against `LiveKitTestServer` (a test double of a
//! LiveKit server's signalling and agent endpoints; no LiveKit server can run here) over real
//! loopback WebSockets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use huddle_actors::livekit::{
    JobHandler, JobRun, LiveKitError, SignalClient, WorkerActor, WorkerArgs, WorkerMsg, WorkerView,
};
use huddle_testsupport::livekit::{JobOutcome, JobStatus, LiveKitTestServer, TestServerConfig};
use livekit_protocol as proto;
use proto::signal_request::Message as Req;
use proto::signal_response::Message as Resp;
use ractor::{Actor, ActorRef, call};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::common::{eventually, within};

const KEY: &str = "huddle-test-key";
const SECRET: &str = "huddle-test-secret-that-is-long-enough";
const AGENT: &str = "huddle-test-agent";

async fn server() -> LiveKitTestServer {
    LiveKitTestServer::start(KEY, SECRET).await.unwrap()
}

/// Waits for the next participant update that mentions `identity`.
async fn update_for(
    events: &mut mpsc::UnboundedReceiver<proto::SignalResponse>,
    identity: &str,
) -> proto::ParticipantInfo {
    within(&format!("a participant update for {identity}"), async {
        loop {
            let response = events.recv().await.expect("the signalling connection closed");
            if let Some(Resp::Update(update)) = response.message
                && let Some(p) = update.participants.into_iter().find(|p| p.identity == identity)
            {
                return p;
            }
        }
    })
    .await
}

#[tokio::test]
async fn livekit_signal_join_returns_room_and_participant() {
    let server = server().await;
    let (client, _events) = SignalClient::connect(server.url(), &server.token("standup", "alice")).await.unwrap();

    let join = client.join_response();
    assert_eq!(join.room.as_ref().unwrap().name, "standup");
    let me = join.participant.as_ref().unwrap();
    assert_eq!(me.identity, "alice");
    assert!(me.sid.starts_with("PA_"), "participant sid {}", me.sid);
    assert!(join.subscriber_primary);
    assert!(join.other_participants.is_empty());
    assert!(join.ping_interval > 0 && join.ping_timeout > join.ping_interval);

    let at_server = server.participants("standup");
    assert_eq!(at_server.len(), 1);
    assert_eq!(at_server[0].sid, me.sid);
    let joins = server.joins();
    assert_eq!(joins[0].protocol, Some(17), "protocol <= 17 on purpose");
    assert_eq!(joins[0].sdk.as_deref(), Some("rust"));
}

#[tokio::test]
async fn livekit_signal_bad_token_is_unauthorized() {
    let server = server().await;
    let forged = server.forged_token("standup", "mallory");
    let err = SignalClient::connect(server.url(), &forged).await.err().expect("a forged token must be rejected");
    assert!(matches!(err, LiveKitError::Unauthorized { .. }), "got {err:?}");
    assert!(server.participants("standup").is_empty());

    let err = SignalClient::connect(server.url(), "not-a-jwt").await.err().expect("garbage must be rejected");
    assert!(matches!(err, LiveKitError::Unauthorized { .. }), "got {err:?}");
}

#[tokio::test]
async fn livekit_signal_another_participant_arrives_as_participant_update() {
    let server = server().await;
    let (alice, mut alice_events) =
        SignalClient::connect(server.url(), &server.token("standup", "alice")).await.unwrap();
    let (bob, _bob_events) = SignalClient::connect(server.url(), &server.token("standup", "bob")).await.unwrap();

    let seen = update_for(&mut alice_events, "bob").await;
    assert_eq!(seen.sid, bob.join_response().participant.as_ref().unwrap().sid);
    assert_eq!(seen.state, proto::participant_info::State::Joined as i32);
    let others: Vec<_> = bob.join_response().other_participants.iter().map(|p| p.identity.clone()).collect();
    assert_eq!(others, ["alice"]);
    drop(alice);
}

#[tokio::test]
async fn livekit_signal_leave_removes_the_participant() {
    let server = server().await;
    let (alice, _alice_events) = SignalClient::connect(server.url(), &server.token("standup", "alice")).await.unwrap();
    let (_bob, mut bob_events) = SignalClient::connect(server.url(), &server.token("standup", "bob")).await.unwrap();
    assert_eq!(server.participants("standup").len(), 2);

    alice.leave().await.unwrap();

    let gone = update_for(&mut bob_events, "alice").await;
    assert_eq!(gone.state, proto::participant_info::State::Disconnected as i32);
    let identities: Vec<_> = server.participants("standup").into_iter().map(|p| p.identity).collect();
    assert_eq!(identities, ["bob"]);
    let requests = server.requests("standup", "alice");
    assert!(matches!(requests.last().and_then(|r| r.message.as_ref()), Some(Req::Leave(_))), "{requests:?}");
}

#[tokio::test]
async fn livekit_signal_dropping_the_client_disconnects_it() {
    let server = server().await;
    let (alice, _events) = SignalClient::connect(server.url(), &server.token("standup", "alice")).await.unwrap();
    assert_eq!(server.participants("standup").len(), 1);
    drop(alice);
    eventually("the server to drop alice", || async { server.participants("standup").is_empty() }).await;
}

#[tokio::test]
async fn livekit_signal_pings_per_the_servers_interval() {
    let mut config = TestServerConfig::new(KEY, SECRET);
    config.ping_interval_secs = 1;
    config.ping_timeout_secs = 3;
    let server = LiveKitTestServer::start_with(config).await.unwrap();
    let (_client, mut events) = SignalClient::connect(server.url(), &server.token("standup", "alice")).await.unwrap();

    let pong = within("a pong", async {
        loop {
            match events.recv().await.expect("connection closed").message {
                Some(Resp::PongResp(pong)) => return pong,
                _ => continue,
            }
        }
    })
    .await;
    assert!(pong.last_ping_timestamp > 0);
    let requests = server.requests("standup", "alice");
    assert!(requests.iter().any(|r| matches!(r.message, Some(Req::Ping(_)))));
    assert!(requests.iter().any(|r| matches!(r.message, Some(Req::PingReq(_)))));
}

// ---------------------------------------------------------------------------------------------
// The agent worker

/// Joins the job's room over `SignalClient` and holds the job until the test finishes it.
#[derive(Default)]
struct RoomJobHandler {
    finishers: Mutex<HashMap<String, oneshot::Sender<Result<(), String>>>>,
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl RoomJobHandler {
    /// Ends `job_id` with `outcome`; false if the job is not (yet) running here.
    fn finish(&self, job_id: &str, outcome: Result<(), String>) -> bool {
        match self.finishers.lock().unwrap().remove(job_id) {
            Some(tx) => tx.send(outcome).is_ok(),
            None => false,
        }
    }

    fn holds(&self, job_id: &str) -> bool {
        self.finishers.lock().unwrap().contains_key(job_id)
    }
}

#[async_trait]
impl JobHandler for RoomJobHandler {
    async fn start_job(&self, assignment: proto::JobAssignment) -> huddle_actors::livekit::Result<JobRun> {
        let job_id = assignment.job.as_ref().map(|j| j.id.clone()).unwrap_or_default();
        let url = assignment.url.clone().unwrap_or_default();
        let (client, _events) = SignalClient::connect(&url, &assignment.token).await?;
        let (done_tx, done_rx) = oneshot::channel();
        self.finishers.lock().unwrap().insert(job_id, done_tx);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let running = self.running.clone();
        Ok(Box::pin(async move {
            let outcome = done_rx.await.unwrap_or(Err("the test dropped the job".into()));
            running.fetch_sub(1, Ordering::SeqCst);
            client.leave().await?;
            outcome.map_err(LiveKitError::Job)
        }))
    }
}

struct Worker {
    actor: ActorRef<WorkerMsg>,
    handle: JoinHandle<()>,
    handler: Arc<RoomJobHandler>,
}

impl Worker {
    async fn start(server: &LiveKitTestServer, max_jobs: usize) -> Worker {
        let handler = Arc::new(RoomJobHandler::default());
        let mut args = WorkerArgs::new(server.url(), KEY, SECRET, AGENT, max_jobs, handler.clone());
        args.initial_backoff = Duration::from_millis(20);
        args.max_backoff = Duration::from_millis(200);
        let (actor, handle) = Actor::spawn(None, WorkerActor, args).await.unwrap();
        let worker = Worker { actor, handle, handler };
        eventually("the worker to register", || async { worker.view().await.worker_id.is_some() }).await;
        worker
    }

    async fn view(&self) -> WorkerView {
        call!(self.actor, WorkerMsg::Status).unwrap()
    }

    async fn running_jobs(&self) -> Vec<String> {
        call!(self.actor, WorkerMsg::RunningJobs).unwrap()
    }
}

fn statuses_of(server: &LiveKitTestServer, job_id: &str) -> Vec<JobStatus> {
    server.job_updates().into_iter().filter(|u| u.job_id == job_id).map(|u| u.status).collect()
}

async fn accepted(server: &LiveKitTestServer, room: &str) -> (String, String) {
    match server.dispatch_job(room).await.unwrap() {
        JobOutcome::Accepted { job_id, participant_identity, .. } => (job_id, participant_identity),
        other => panic!("the job was declined: {other:?}"),
    }
}

#[tokio::test]
async fn livekit_worker_registers_as_a_room_agent() {
    let server = server().await;
    let worker = Worker::start(&server, 2).await;

    let workers = server.workers();
    assert_eq!(workers.len(), 1);
    let registered = &workers[0];
    assert!(registered.connected);
    assert_eq!(registered.register.agent_name, AGENT);
    assert_eq!(registered.register.r#type, proto::JobType::JtRoom as i32);
    assert!(!registered.register.version.is_empty());
    assert_eq!(worker.view().await.worker_id.as_deref(), Some(registered.worker_id.as_str()));
    eventually("the worker to report WS_AVAILABLE", || async {
        server.workers()[0].statuses.last().map(|s| s.status) == Some(Some(proto::WorkerStatus::WsAvailable as i32))
    })
    .await;
}

#[tokio::test]
async fn livekit_worker_runs_a_dispatched_job_in_the_room() {
    let server = server().await;
    let worker = Worker::start(&server, 2).await;

    let (job_id, identity) = accepted(&server, "standup").await;
    eventually("the agent to join the room", || async {
        server.participants("standup").iter().any(|p| p.identity == identity)
    })
    .await;
    let agent = server.participants("standup").into_iter().find(|p| p.identity == identity).unwrap();
    assert_eq!(agent.kind, proto::participant_info::Kind::Agent as i32);
    eventually("JS_RUNNING at the server", || async { statuses_of(&server, &job_id) == [JobStatus::JsRunning] }).await;
    assert_eq!(worker.running_jobs().await, std::slice::from_ref(&job_id));

    assert!(worker.handler.finish(&job_id, Ok(())));
    eventually("JS_SUCCESS at the server", || async { statuses_of(&server, &job_id).len() == 2 }).await;
    assert_eq!(statuses_of(&server, &job_id), [JobStatus::JsRunning, JobStatus::JsSuccess]);
    eventually("the agent to leave", || async { server.participants("standup").is_empty() }).await;
    assert!(worker.running_jobs().await.is_empty());
}

#[tokio::test]
async fn livekit_worker_reports_a_failed_job_with_its_error() {
    let server = server().await;
    let worker = Worker::start(&server, 1).await;

    let (job_id, _) = accepted(&server, "standup").await;
    eventually("the job to start", || async { worker.handler.holds(&job_id) }).await;
    assert!(worker.handler.finish(&job_id, Err("transcriber crashed".into())));
    eventually("JS_FAILED at the server", || async {
        statuses_of(&server, &job_id).last() == Some(&JobStatus::JsFailed)
    })
    .await;
    let update = server.job_updates().into_iter().find(|u| u.status == JobStatus::JsFailed).unwrap();
    assert!(update.error.contains("transcriber crashed"), "error: {}", update.error);
    // The slot is free again.
    eventually("the slot to free up", || async { worker.running_jobs().await.is_empty() }).await;
    assert!(server.dispatch_job("standup").await.unwrap().is_accepted());
}

#[tokio::test]
async fn livekit_worker_burst_never_exceeds_max_jobs() {
    let server = server().await;
    let worker = Worker::start(&server, 2).await;

    let dispatches = (0..10).map(|i| {
        let server = &server;
        async move { server.dispatch_job(&format!("room-{i}")).await.unwrap() }
    });
    let outcomes = futures::future::join_all(dispatches).await;
    let accepted: Vec<_> = outcomes.iter().filter(|o| o.is_accepted()).map(|o| o.job_id().to_string()).collect();
    assert_eq!(accepted.len(), 2, "{outcomes:?}");
    assert_eq!(outcomes.len() - accepted.len(), 8);

    eventually("both jobs running at the server", || async { server.running_jobs().len() == 2 }).await;
    eventually("both jobs held by the handler", || async { accepted.iter().all(|j| worker.handler.holds(j)) }).await;
    assert_eq!(worker.handler.peak.load(Ordering::SeqCst), 2);
    assert!(server.peak_running_jobs() <= 2);
    assert!(
        server.workers()[0].statuses.iter().any(|s| s.status == Some(proto::WorkerStatus::WsFull as i32)),
        "the worker never reported WS_FULL"
    );
    // Full: the next one is declined too.
    assert!(!server.dispatch_job("late").await.unwrap().is_accepted());

    assert!(worker.handler.finish(&accepted[0], Ok(())));
    eventually("one job to end", || async { worker.running_jobs().await.len() == 1 }).await;
    let next = server.dispatch_job("after").await.unwrap();
    assert!(next.is_accepted(), "{next:?}");
    eventually("the new job running at the server", || async {
        server.running_jobs().contains(&next.job_id().to_string())
    })
    .await;
    assert_eq!(worker.handler.peak.load(Ordering::SeqCst), 2);
    assert!(server.peak_running_jobs() <= 2);
}

#[tokio::test]
async fn livekit_worker_drains_running_jobs_then_closes() {
    let server = server().await;
    let worker = Worker::start(&server, 2).await;
    let (job_id, _) = accepted(&server, "standup").await;
    eventually("the job to start", || async { worker.handler.holds(&job_id) }).await;

    worker.actor.cast(WorkerMsg::Drain { deadline: Duration::from_secs(10) }).unwrap();
    eventually("a draining WS_FULL status", || async {
        server.workers()[0]
            .statuses
            .last()
            .is_some_and(|s| s.draining && s.status == Some(proto::WorkerStatus::WsFull as i32))
    })
    .await;
    assert!(!server.dispatch_job("other").await.unwrap().is_accepted());
    assert!(worker.view().await.draining);

    assert!(worker.handler.finish(&job_id, Ok(())));
    within("the worker to stop", worker.handle).await.unwrap();
    eventually("JS_SUCCESS at the server", || async {
        statuses_of(&server, &job_id) == [JobStatus::JsRunning, JobStatus::JsSuccess]
    })
    .await;
    eventually("the server to see the worker leave", || async { !server.workers()[0].connected }).await;
}

#[tokio::test]
async fn livekit_worker_drain_deadline_fails_jobs_still_running() {
    let server = server().await;
    let worker = Worker::start(&server, 1).await;
    let (job_id, _) = accepted(&server, "standup").await;
    eventually("JS_RUNNING", || async { statuses_of(&server, &job_id) == [JobStatus::JsRunning] }).await;

    worker.actor.cast(WorkerMsg::Drain { deadline: Duration::from_millis(200) }).unwrap();
    within("the worker to stop", worker.handle).await.unwrap();
    eventually("JS_FAILED at the server", || async {
        statuses_of(&server, &job_id) == [JobStatus::JsRunning, JobStatus::JsFailed]
    })
    .await;
    let failed = server.job_updates().into_iter().find(|u| u.status == JobStatus::JsFailed).unwrap();
    assert!(failed.error.contains("drain deadline"), "error: {}", failed.error);
    eventually("the aborted job to leave the room", || async { server.participants("standup").is_empty() }).await;
}

#[tokio::test]
async fn livekit_worker_reconnects_and_registers_again() {
    let server = server().await;
    let worker = Worker::start(&server, 2).await;
    let first = server.workers()[0].worker_id.clone();

    server.disconnect_worker(&first).unwrap();
    eventually("a second registration", || async {
        let workers = server.workers();
        workers.len() == 2 && workers[1].connected && !workers[0].connected
    })
    .await;
    let second = server.workers()[1].clone();
    assert_eq!(second.register.agent_name, AGENT);
    assert_ne!(second.worker_id, first);
    eventually("the worker to know its new id", || async {
        let view = worker.view().await;
        view.worker_id.as_deref() == Some(second.worker_id.as_str()) && view.registrations == 2
    })
    .await;
    assert!(server.dispatch_job("standup").await.unwrap().is_accepted());
}

// ---- media: the agent hears a participant -------------------------------------------------

/// A sentence spoken by espeak-ng (a committed fixture), resampled to 48 kHz mono PCM16.
fn synthesized_speech() -> Vec<i16> {
    use huddle_testsupport::speech::{Voice, spoken_in};
    spoken_in(Voice::En175, "The quarterly numbers look good, let us ship on Friday.").resampled(48_000).samples
}

/// RMS per 10 ms window (480 samples at 48 kHz).
fn envelope(pcm: &[i16]) -> Vec<f64> {
    pcm.chunks(480).map(|w| (w.iter().map(|&s| (s as f64) * (s as f64)).sum::<f64>() / w.len() as f64).sqrt()).collect()
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    if n < 10 {
        return 0.0;
    }
    let (a, b) = (&a[..n], &b[..n]);
    let (ma, mb) = (a.iter().sum::<f64>() / n as f64, b.iter().sum::<f64>() / n as f64);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    if va == 0.0 || vb == 0.0 { 0.0 } else { cov / (va.sqrt() * vb.sqrt()) }
}

/// The best energy-envelope correlation of `received` with `source`, over delays of up to
/// 500 ms either way (Opus look-ahead, packets lost before the first one arrived).
fn envelope_correlation(source: &[i16], received: &[i16]) -> f64 {
    let (s, r) = (envelope(source), envelope(received));
    (0..=50)
        .flat_map(|lag| [pearson(&s, &r[lag.min(r.len())..]), pearson(&s[lag.min(s.len())..], &r)])
        .fold(f64::MIN, f64::max)
}

#[tokio::test]
async fn livekit_media_agent_hears_a_published_participant() {
    use huddle_actors::livekit::{RoomTransport, WebRtcOptions, WebRtcTransport};

    let speech = synthesized_speech();
    let source_secs = speech.len() as f64 / 48_000.0;
    assert!(source_secs > 1.0, "espeak-ng produced {source_secs:.2} s");

    // The measure must reject silence and noise, or the assertion below proves nothing.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<i16> = (0..speech.len())
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 48) as i16 / 8
        })
        .collect();
    assert!(envelope_correlation(&speech, &vec![0; speech.len()]) < 0.3);
    assert!(envelope_correlation(&speech, &noise) < 0.3);

    let server = server().await;
    let published = server.publish_audio("standup", "alice", speech.clone());
    let transport = WebRtcTransport::new(WebRtcOptions { include_loopback_candidates: true, ..Default::default() });
    let mut session = transport.join(server.url(), &server.token("standup", "huddle-agent")).await.unwrap();

    let alice = session.join.other_participants.iter().find(|p| p.identity == "alice").expect("alice in the room");
    assert_eq!(alice.sid, published.participant_sid);
    assert_eq!(alice.tracks[0].sid, published.track_sid);

    let mut audio = session.audio.take().expect("WebRtcTransport delivers audio");
    let first = within("the first decoded audio frame", audio.recv()).await.expect("audio ended before any frame");
    let mut frames = vec![first];
    // Real time: the rest arrives over about `source_secs`; stop after 1 s of quiet.
    while let Ok(Some(frame)) = tokio::time::timeout(Duration::from_secs(1), audio.recv()).await {
        frames.push(frame);
    }
    session.leave().await.unwrap();

    for frame in &frames {
        assert_eq!(frame.participant_sid, published.participant_sid);
        assert_eq!(frame.track_sid, published.track_sid);
        assert_eq!(frame.sample_rate, 48_000);
    }
    let received: Vec<i16> = frames.iter().flat_map(|f| f.pcm.iter().copied()).collect();
    let received_secs = received.len() as f64 / 48_000.0;
    assert!(
        (received_secs - source_secs).abs() <= 0.1 * source_secs,
        "received {received_secs:.2} s of audio for {source_secs:.2} s of speech"
    );
    let correlation = envelope_correlation(&speech, &received);
    assert!(correlation > 0.8, "energy envelope correlation {correlation:.3}");
}

// ---- media: the agent publishes data ------------------------------------------------------

#[tokio::test]
async fn livekit_media_agent_publishes_data_packets_on_both_channels() {
    use huddle_actors::livekit::data::{self, LOSSY_LABEL, RELIABLE_LABEL};
    use huddle_actors::livekit::{Reliability, RoomTransport, WebRtcOptions, WebRtcTransport};

    let server = server().await;
    let transport = WebRtcTransport::new(WebRtcOptions { include_loopback_candidates: true, ..Default::default() });
    let session = transport.join(server.url(), &server.token("standup", "huddle-agent")).await.unwrap();
    let sender = session.data.clone().expect("WebRtcTransport publishes data");

    // Sent at once after the join, before the channels can be open: queued, then delivered in order.
    let caption = proto::TranscriptionSegment {
        id: "room-7".into(),
        text: "ship on Friday".into(),
        start_time: 1_200,
        end_time: 2_900,
        r#final: true,
        language: "en".into(),
    };
    sender.send(data::transcription("alice", "TR_1", caption.clone()), Reliability::Reliable).unwrap();
    for i in 0..5u8 {
        sender.send(data::user_packet("huddle.suggestion", vec![b'0' + i]), Reliability::Reliable).unwrap();
    }
    sender.send(data::user_packet("levels", b"lossy".to_vec()), Reliability::Lossy).unwrap();

    eventually("7 packets at the server", || async { server.data_packets("standup").len() == 7 }).await;
    let received = server.data_packets("standup");
    assert!(received.iter().all(|d| d.identity == "huddle-agent" && d.packet.participant_identity == "huddle-agent"));

    let reliable: Vec<_> = received.iter().filter(|d| d.channel == RELIABLE_LABEL).collect();
    assert_eq!(reliable.len(), 6);
    let t = reliable[0].transcription().expect("the caption comes first");
    assert_eq!(t.transcribed_participant_identity, "alice");
    assert_eq!(t.track_id, "TR_1");
    assert_eq!(t.segments, vec![caption]);
    let payloads: Vec<_> =
        reliable[1..].iter().map(|d| d.user_on("huddle.suggestion").expect("on the topic").payload.clone()).collect();
    assert_eq!(payloads, (0..5u8).map(|i| vec![b'0' + i]).collect::<Vec<_>>(), "reliable packets keep their order");
    let sequences: Vec<u32> = reliable.iter().map(|d| d.packet.sequence).collect();
    assert!(sequences.windows(2).all(|w| w[1] == w[0] + 1), "reliable sequence numbers {sequences:?}");

    let lossy: Vec<_> = received.iter().filter(|d| d.channel == LOSSY_LABEL).collect();
    assert_eq!(lossy.len(), 1);
    assert_eq!(lossy[0].user_on("levels").unwrap().payload, b"lossy".to_vec());

    // the offer carried the data channels, and the agent trickled publisher candidates
    let requests = server.requests("standup", "huddle-agent");
    let offer = requests.iter().find_map(|r| match &r.message {
        Some(Req::Offer(o)) => Some(o.sdp.clone()),
        _ => None,
    });
    assert!(offer.expect("a publisher offer").contains("m=application"), "the offer negotiates SCTP");
    assert!(requests.iter().any(|r| matches!(&r.message,
        Some(Req::Trickle(t)) if t.target == proto::SignalTarget::Publisher as i32)));

    session.leave().await.unwrap();
    within("the data sender to close", async {
        while !sender.is_closed() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(matches!(
        sender.send(data::user_packet("t", vec![]), Reliability::Reliable),
        Err(huddle_actors::livekit::LiveKitError::Closed)
    ));
}

#[tokio::test]
async fn livekit_signal_joins_over_wss_and_refuses_an_untrusted_certificate() {
    use huddle_actors::livekit::SignalOptions;
    let config = TestServerConfig { tls: true, ..TestServerConfig::new(KEY, SECRET) };
    let server = LiveKitTestServer::start_with(config).await.unwrap();
    assert!(server.url().starts_with("wss://localhost:"), "{}", server.url());
    let token = server.token("secure", "alice");

    // by default only public roots are trusted: the self-signed certificate is refused, saying why
    let err = SignalClient::connect(server.url(), &token).await.err().expect("an untrusted certificate is refused");
    assert!(
        matches!(&err, LiveKitError::Connect { reason, .. } if reason.to_lowercase().contains("certificate")),
        "{err}"
    );
    assert!(server.participants("secure").is_empty());

    // trusting it, the join goes through TLS
    let options = SignalOptions { tls: server.client_tls(), ..Default::default() };
    let (client, _events) = SignalClient::connect_with(server.url(), &token, options).await.unwrap();
    assert_eq!(client.join_response().room.as_ref().map(|r| r.name.as_str()), Some("secure"));
    assert_eq!(server.participants("secure").len(), 1);
    client.leave().await.unwrap();
}
