//! The `grpc` bench: GetRoom and JoinRoom against a huddle node over
//! loopback, and GetRoom against a minimal tonic + DashMap server of the same
//! service (the peer).
//!
//! Servers are separate processes (the bench binary re-executed with
//! `serve-node` / `serve-peer`); client and servers share the machine's
//! cores. Before the network loops, GetRoom's work is timed in this process
//! without gRPC (`inprocess_*`), to tell the runtime's share from gRPC's. Closed loops keep a fixed number of requests in flight; the open
//! loop is paced by a dedicated OS thread that sends request tickets on a
//! channel, and latency is measured both from each ticket's scheduled time
//! (no coordinated omission) and from the moment the request was sent.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures::{StreamExt, TryStreamExt};
use huddle_core::{NewEntity, NewRoom};
use huddle_proto::v1::entities_client::EntitiesClient;
use huddle_proto::v1::rooms_client::RoomsClient;
use huddle_proto::v1::{
    self, CreateEntityRequest, CreateRoomRequest, GetRoomRequest, JoinRoomRequest, StartRoomRequest,
};
use prost::Message;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tonic::Request;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use crate::fixture;
use crate::report::{Latencies, Measurement, Reporter, Summary, rss_bytes_of};

const BENCH: &str = "grpc";

/// Knobs of the `grpc` bench.
#[derive(Debug, Clone)]
pub struct GrpcOpts {
    /// Measured seconds per loop.
    pub secs: f64,
    /// Unmeasured seconds before each loop.
    pub warmup_secs: f64,
    /// Open-loop GetRoom rate, requests/s.
    pub rate: u64,
    /// Rooms created (and started) on the node.
    pub rooms: usize,
    /// HTTP/2 connections per server.
    pub connections: usize,
    /// GetRoom closed loop: requests in flight in total.
    pub in_flight: usize,
    /// JoinRoom closed loop: requests in flight in total.
    pub join_in_flight: usize,
}

/// One unary call of a loop: (worker, sequence number) -> done.
type Call = Arc<dyn Fn(usize, u64) -> Pin<Box<dyn Future<Output = Result<(), tonic::Status>> + Send>> + Send + Sync>;

/// A server child process. Killed on drop; [`ServerProc::stop`] closes its
/// stdin first for a graceful exit.
pub(crate) struct ServerProc {
    name: &'static str,
    child: Child,
    pub(crate) addr: SocketAddr,
}

impl ServerProc {
    pub(crate) async fn start(name: &'static str, args: &[&str]) -> Result<Self> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("{name}: no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .map_err(|_| anyhow!("{name} did not print READY within 60 s"))??
            .ok_or_else(|| anyhow!("{name} exited before it was ready"))?;
        let addr = line
            .strip_prefix("READY ")
            .ok_or_else(|| anyhow!("{name} printed `{line}` instead of `READY <addr>`"))?
            .parse()?;
        Ok(ServerProc { name, child, addr })
    }

    fn rss_bytes(&self) -> u64 {
        self.child.id().map_or(0, |pid| rss_bytes_of(&pid.to_string()))
    }

    /// Closes stdin (the child shuts down gracefully), kills it after 15 s.
    pub(crate) async fn stop(mut self) -> Result<()> {
        drop(self.child.stdin.take());
        match tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    bail!("{} exited with {status}", self.name);
                }
            }
            Err(_) => {
                self.child.kill().await?;
                bail!("{} did not stop within 15 s and was killed", self.name);
            }
        }
        Ok(())
    }
}

async fn connect(addr: SocketAddr, n: usize) -> Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(n);
    for _ in 0..n {
        let ch = Endpoint::from_shared(format!("http://{addr}"))?.tcp_nodelay(true).connect().await?;
        channels.push(ch);
    }
    Ok(channels)
}

fn authed<T>(msg: T, key: &MetadataValue<Ascii>) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut().insert("authorization", key.clone());
    req
}

fn get_room_call(channels: &[Channel], ids: Vec<String>, key: MetadataValue<Ascii>) -> Call {
    let clients: Vec<_> = channels.iter().cloned().map(RoomsClient::new).collect();
    let ids = Arc::new(ids);
    Arc::new(move |worker, seq| {
        let mut client = clients[worker % clients.len()].clone();
        let req = authed(GetRoomRequest { id: ids[seq as usize % ids.len()].clone() }, &key);
        Box::pin(async move { client.get_room(req).await.map(|_| ()) })
    })
}

fn join_room_call(channels: &[Channel], ids: Vec<String>, key: MetadataValue<Ascii>) -> Call {
    let clients: Vec<_> = channels.iter().cloned().map(RoomsClient::new).collect();
    let ids = Arc::new(ids);
    Arc::new(move |worker, seq| {
        let mut client = clients[worker % clients.len()].clone();
        let req = authed(
            JoinRoomRequest {
                room_id: ids[seq as usize % ids.len()].clone(),
                kind: v1::ParticipantKind::Human as i32,
                display_name: format!("Bench User {seq}"),
                identity: format!("bench-user-{seq}"),
                ..Default::default()
            },
            &key,
        );
        Box::pin(async move { client.join_room(req).await.map(|_| ()) })
    })
}

struct ClosedLoop {
    lat: Latencies,
    rps: f64,
    errors: u64,
    first_error: Option<String>,
}

/// `workers` tasks, each with one request in flight, for `warmup` (not
/// recorded) and then `secs`. Worker `w` uses connection `w % connections`.
async fn closed_loop(call: Call, workers: usize, warmup: Duration, secs: Duration) -> Result<ClosedLoop> {
    let seq = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + warmup;
    let end = start + secs;
    let mut tasks = Vec::with_capacity(workers);
    for w in 0..workers {
        let (call, seq) = (call.clone(), seq.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let (mut errors, mut first_error) = (0u64, None);
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let r = call(w, seq.fetch_add(1, Ordering::Relaxed)).await;
                let dt = t0.elapsed();
                if t0 < start {
                    continue;
                }
                match r {
                    Ok(()) => samples.push(dt),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            (samples, errors, first_error)
        }));
    }
    let (mut all, mut errors, mut first_error) = (Vec::new(), 0, None);
    for t in tasks {
        let (s, e, f) = t.await?;
        all.extend(s);
        errors += e;
        first_error = first_error.or(f);
    }
    let rps = all.len() as f64 / secs.as_secs_f64();
    Ok(ClosedLoop { lat: Latencies::from_durations(all), rps, errors, first_error })
}

struct OpenLoop {
    from_scheduled: Latencies,
    from_sent: Latencies,
    send_lag: Latencies,
    achieved_rps: f64,
    errors: u64,
    first_error: Option<String>,
    /// Measured tickets not sent because too many requests were outstanding.
    dropped: u64,
}

/// Requests at a fixed `rate`, paced by a dedicated OS thread that sends
/// tickets (sequence number, scheduled time) on a channel; each ticket
/// becomes a task. Tickets in the first `warmup` are not recorded. A server
/// that cannot keep up would queue without bound, so a ticket that finds
/// half a second's worth of requests outstanding is dropped and counted.
async fn open_loop(call: Call, rate: u64, warmup: Duration, secs: Duration) -> Result<OpenLoop> {
    let max_outstanding = (rate / 2).max(64) as usize;
    let outstanding = Arc::new(AtomicUsize::new(0));
    let mut dropped = 0u64;
    let interval_ns = 1_000_000_000 / rate.max(1);
    let warm_n = (warmup.as_secs_f64() * rate as f64) as u64;
    let total = warm_n + (secs.as_secs_f64() * rate as f64) as u64;
    let (ticket_tx, mut ticket_rx) = mpsc::unbounded_channel::<(u64, Instant)>();
    let pacer = std::thread::Builder::new().name("pacer".into()).spawn(move || {
        let start = Instant::now() + Duration::from_millis(5);
        for i in 0..total {
            let at = start + Duration::from_nanos(i * interval_ns);
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            if ticket_tx.send((i, at)).is_err() {
                break;
            }
        }
    })?;
    let mut tasks = Vec::with_capacity(total as usize);
    while let Some((i, at)) = ticket_rx.recv().await {
        if outstanding.load(Ordering::Relaxed) >= max_outstanding {
            if i >= warm_n {
                dropped += 1;
            }
            continue;
        }
        outstanding.fetch_add(1, Ordering::Relaxed);
        let (call, outstanding) = (call.clone(), outstanding.clone());
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let r = call(i as usize, i).await;
            let done = Instant::now();
            outstanding.fetch_sub(1, Ordering::Relaxed);
            (i, at, sent, done, r.err().map(|e| e.to_string()))
        }));
    }
    pacer.join().map_err(|_| anyhow!("pacer thread panicked"))?;
    let (mut sched, mut sent_lat, mut lag) = (vec![], vec![], vec![]);
    let (mut errors, mut first_error) = (0u64, None);
    let (mut first_sent, mut last_done): (Option<Instant>, Option<Instant>) = (None, None);
    for t in tasks {
        let (i, at, sent, done, err) = t.await?;
        if i < warm_n {
            continue;
        }
        first_sent = Some(first_sent.map_or(sent, |f| f.min(sent)));
        last_done = Some(last_done.map_or(done, |l| l.max(done)));
        match err {
            None => {
                sched.push(done - at);
                sent_lat.push(done - sent);
                lag.push(sent.saturating_duration_since(at));
            }
            Some(e) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let span = match (first_sent, last_done) {
        (Some(a), Some(b)) => (b - a).as_secs_f64(),
        _ => 0.0,
    };
    let completed = sched.len() as f64;
    Ok(OpenLoop {
        from_scheduled: Latencies::from_durations(sched),
        from_sent: Latencies::from_durations(sent_lat),
        send_lag: Latencies::from_durations(lag),
        achieved_rps: if span > 0.0 { completed / span } else { 0.0 },
        errors,
        first_error,
        dropped,
    })
}

fn with_errors(m: Measurement, errors: u64, first_error: &Option<String>) -> Measurement {
    let m = m.with("errors", errors);
    match first_error {
        Some(e) => m.with("first_error", e.as_str()),
        None => m,
    }
}

fn emit_closed(rep: &Reporter, prefix: &str, r: &ClosedLoop, extra: &[(&str, Value)]) {
    let add = |mut m: Measurement| {
        for (k, v) in extra {
            m = m.with(k, v.clone());
        }
        m
    };
    rep.emit(add(with_errors(
        Measurement::new(BENCH, format!("{prefix}_rps"), r.rps, "req/s").with("requests", r.lat.len()),
        r.errors,
        &r.first_error,
    )));
    for (q, name) in [(0.5, "p50"), (0.99, "p99")] {
        rep.emit(add(Measurement::new(BENCH, format!("{prefix}_{name}"), r.lat.quantile_us(q), "us")));
    }
}

fn emit_open(rep: &Reporter, prefix: &str, r: &OpenLoop, rate: u64, extra: &[(&str, Value)]) {
    let add = |mut m: Measurement| {
        for (k, v) in extra {
            m = m.with(k, v.clone());
        }
        m.with("rate", rate)
    };
    rep.emit(add(with_errors(
        Measurement::new(BENCH, format!("{prefix}_achieved_rps"), r.achieved_rps, "req/s")
            .with("requests", r.from_scheduled.len())
            .with("send_lag_p50_us", r.send_lag.quantile_us(0.5))
            .with("send_lag_p99_us", r.send_lag.quantile_us(0.99))
            .with("send_lag_p999_us", r.send_lag.quantile_us(0.999))
            .with("dropped", r.dropped),
        r.errors,
        &r.first_error,
    )));
    let is_huddle = !prefix.starts_with("peer_");
    if r.dropped > 0 {
        // A dropped ticket would have waited at least as long as the worst one recorded.
        rep.progress(&format!("{prefix}: {} tickets dropped: the server could not keep up", r.dropped));
    }
    for (lat, from) in [(&r.from_scheduled, "scheduled"), (&r.from_sent, "sent")] {
        for (q, name) in [(0.5, "p50"), (0.99, "p99"), (0.999, "p999")] {
            let v = lat.quantile_us(q);
            let metric = if from == "scheduled" { format!("{prefix}_{name}") } else { format!("{prefix}_sent_{name}") };
            let mut m = add(Measurement::new(BENCH, metric, v, "us").with("measured_from", from));
            if is_huddle && name == "p99" {
                let met = v <= 2000.0 && r.dropped == 0 && r.errors == 0;
                m = m.target("<= 2000 us at 10000 req/s, nothing dropped", met);
            }
            rep.emit(m);
        }
    }
}

/// Runs the whole `grpc` bench.
pub fn run(opts: &GrpcOpts, rep: &Reporter) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run_async(opts, rep))
}

/// Creates the benchmark entity and `n` started rooms; their ids and the
/// milliseconds per room.
async fn setup(channel: &Channel, key: &MetadataValue<Ascii>, n: usize) -> Result<(Vec<String>, f64)> {
    let entity = EntitiesClient::new(channel.clone())
        .create_entity(authed(
            CreateEntityRequest {
                name: "Bench Co".into(),
                r#type: "company".into(),
                default_instructions: fixture::ENTITY_INSTRUCTIONS.into(),
                max_participants: Some(10_000),
                recording_retention_days: 0,
            },
            key,
        ))
        .await?
        .into_inner();
    let t = Instant::now();
    let client = RoomsClient::new(channel.clone());
    let ids: Vec<String> = futures::stream::iter(0..n)
        .map(|i| {
            let (mut client, entity_id) = (client.clone(), entity.id.clone());
            async move {
                let create = CreateRoomRequest {
                    entity_id,
                    title: fixture::room_title(i),
                    custom_instructions: fixture::ROOM_INSTRUCTIONS.into(),
                    ..Default::default()
                };
                let room = client.create_room(authed(create, key)).await?.into_inner();
                client.start_room(authed(StartRoomRequest { id: room.id.clone() }, key)).await?;
                Ok::<_, tonic::Status>(room.id)
            }
        })
        .buffered(16)
        .try_collect()
        .await?;
    Ok((ids, t.elapsed().as_secs_f64() * 1e3 / n.max(1) as f64))
}

/// GetRoom's work without gRPC: `Api::get_room` on an embedded runtime with
/// a SQLite file (one caller, then 64 concurrent tasks), and the two store
/// reads it makes (`get_room`, `get_entity`), in this process.
async fn in_process(rep: &Reporter, rooms: usize, secs: Duration) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("inproc.db").display());
    let rt = huddle_runtime::Runtime::builder().database_url(url).build().await?;
    let api = rt.admin();
    let entity = api
        .create_entity(NewEntity {
            name: "Bench Co".into(),
            kind: "company".into(),
            default_instructions: fixture::ENTITY_INSTRUCTIONS.into(),
            max_participants: Some(10_000),
            recording_retention_days: 0,
        })
        .await?;
    let mut ids = Vec::with_capacity(rooms);
    for i in 0..rooms {
        let new = NewRoom {
            entity_id: entity.id.clone(),
            title: fixture::room_title(i),
            custom_instructions: fixture::ROOM_INSTRUCTIONS.into(),
            ..Default::default()
        };
        let room = api.create_room(new).await?;
        api.start_room(&room.view.room.id).await?;
        ids.push(room.view.room.id);
    }
    let ids = Arc::new(ids);
    let n = 5_000usize;
    let sequential = {
        let (api, ids, store) = (api.clone(), ids.clone(), rt.store().clone());
        tokio::spawn(async move {
            let (mut get, mut room, mut ent) = (vec![], vec![], vec![]);
            for i in 0..n + 500 {
                let id = &ids[i % ids.len()];
                let t = Instant::now();
                api.get_room(id).await?;
                let t1 = Instant::now();
                let r = store.get_room(id).await?;
                let t2 = Instant::now();
                store.get_entity(&r.entity_id).await?;
                let t3 = Instant::now();
                if i >= 500 {
                    get.push(t1 - t);
                    room.push(t2 - t1);
                    ent.push(t3 - t2);
                }
            }
            anyhow::Ok((get, room, ent))
        })
        .await??
    };
    for (metric, samples) in [
        ("inprocess_api_get_room", sequential.0),
        ("inprocess_store_get_room", sequential.1),
        ("inprocess_store_get_entity", sequential.2),
    ] {
        let lat = Latencies::from_durations(samples);
        for (q, name) in [(0.5, "p50"), (0.99, "p99")] {
            rep.emit(
                Measurement::new(BENCH, format!("{metric}_{name}"), lat.quantile_us(q), "us")
                    .with("calls", lat.len())
                    .with("caller", "one task, sequential")
                    .with("storage", "sqlite file"),
            );
        }
    }
    let call: Call = {
        let (api, ids) = (api.clone(), ids.clone());
        Arc::new(move |_, seq| {
            let (api, ids) = (api.clone(), ids.clone());
            Box::pin(async move {
                api.get_room(&ids[seq as usize % ids.len()]).await.map(|_| ()).map_err(tonic::Status::from)
            })
        })
    };
    let r = closed_loop(call, 64, Duration::from_millis(500), secs).await?;
    emit_closed(
        rep,
        "inprocess_api_get_room_closed_loop",
        &r,
        &[("in_flight", 64.into()), ("storage", "sqlite file".into())],
    );
    rt.shutdown().await;
    Ok(())
}

/// One server under test: its process, connections and rooms.
struct Target {
    /// Metric prefix: "" for the node, "peer_" for the peer.
    prefix: &'static str,
    /// `server` or `peer` field of its measurements.
    label: (&'static str, &'static str),
    proc: ServerProc,
    channels: Vec<Channel>,
    ids: Vec<String>,
}

impl Target {
    fn extra(&self) -> (&'static str, Value) {
        (self.label.0, self.label.1.into())
    }
}

async fn run_async(opts: &GrpcOpts, rep: &Reporter) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let admin_key = format!("bench-admin-{}", &huddle_core::new_id()[24..]);
    let key: MetadataValue<Ascii> = format!("Bearer {admin_key}").parse()?;
    let warmup = Duration::from_secs_f64(opts.warmup_secs);
    let secs = Duration::from_secs_f64(opts.secs);
    let conn = ("connections", Value::from(opts.connections));

    rep.progress("GetRoom's work in process: Api::get_room and its store reads");
    in_process(rep, opts.rooms, secs.min(Duration::from_secs(2))).await?;

    rep.progress("starting the huddle node and the tonic-dashmap peer");
    let node_db = format!("sqlite://{}", dir.path().join("bench.db").display());
    let rooms = opts.rooms.to_string();
    let node =
        ServerProc::start("serve-node", &["serve-node", "--database", &node_db, "--admin-key", &admin_key]).await?;
    let peer = ServerProc::start("serve-peer", &["serve-peer", "--rooms", &rooms]).await?;

    rep.progress(&format!("setup: one entity (max_participants 10000) and {} started rooms", opts.rooms));
    let mut targets = Vec::new();
    for (prefix, label, proc) in [("", ("server", "huddle-node"), node), ("peer_", ("peer", "tonic-dashmap"), peer)] {
        let channels = connect(proc.addr, opts.connections).await?;
        let ids = if prefix == "peer_" {
            (0..opts.rooms).map(fixture::peer_room_id).collect()
        } else {
            let (ids, ms_per_room) = setup(&channels[0], &key, opts.rooms).await?;
            rep.emit(
                Measurement::new(BENCH, format!("{prefix}setup_create_and_start_room_ms"), ms_per_room, "ms")
                    .with("rooms", opts.rooms)
                    .with("concurrency", 16)
                    .with(label.0, label.1),
            );
            ids
        };
        let first = RoomsClient::new(channels[0].clone())
            .get_room(authed(GetRoomRequest { id: ids[0].clone() }, &key))
            .await?
            .into_inner();
        rep.emit(
            Measurement::new(BENCH, format!("{prefix}getroom_response_bytes"), first.encoded_len() as f64, "bytes")
                .with(label.0, label.1),
        );
        targets.push(Target { prefix, label, proc, channels, ids });
    }

    // GetRoom closed loop.
    let mut closed_rps = Vec::new();
    for t in &targets {
        rep.progress(&format!("{}getroom closed loop: {} in flight, {} s", t.prefix, opts.in_flight, opts.secs));
        let call = get_room_call(&t.channels, t.ids.clone(), key.clone());
        let r = closed_loop(call, opts.in_flight, warmup, secs).await?;
        let extra = [conn.clone(), ("in_flight", opts.in_flight.into()), t.extra()];
        emit_closed(rep, &format!("{}getroom_closed_loop", t.prefix), &r, &extra);
        closed_rps.push(r.rps);
    }

    // GetRoom open loop.
    for t in &targets {
        rep.progress(&format!("{}getroom open loop at {} req/s", t.prefix, opts.rate));
        let call = get_room_call(&t.channels, t.ids.clone(), key.clone());
        let r = open_loop(call, opts.rate, warmup, secs).await?;
        emit_open(rep, &format!("{}getroom_open_loop", t.prefix), &r, opts.rate, &[conn.clone(), t.extra()]);
    }

    // JoinRoom closed loop: durable writes.
    for t in targets.iter().filter(|t| t.prefix != "peer_") {
        rep.progress(&format!("{}joinroom closed loop: {} in flight", t.prefix, opts.join_in_flight));
        let call = join_room_call(&t.channels, t.ids.clone(), key.clone());
        let r = closed_loop(call, opts.join_in_flight, warmup, secs).await?;
        let extra = [
            conn.clone(),
            ("in_flight", opts.join_in_flight.into()),
            ("rooms", opts.rooms.into()),
            ("storage", "sqlite wal synchronous=FULL".into()),
            t.extra(),
        ];
        emit_closed(rep, &format!("{}joinroom_closed_loop", t.prefix), &r, &extra);
    }

    let mut stops = Vec::new();
    for t in targets {
        let metric = if t.prefix.is_empty() { "node_rss_bytes".to_string() } else { format!("{}rss_bytes", t.prefix) };
        rep.emit(
            Measurement::new(BENCH, metric, t.proc.rss_bytes() as f64, "bytes")
                .with("after", "all loops")
                .with(t.label.0, t.label.1),
        );
        drop(t.channels);
        stops.push(t.proc.stop().await);
    }
    for s in stops {
        s?;
    }

    rep.summary(Summary::higher_is_better(
        BENCH,
        "getroom_closed_loop_rps",
        closed_rps[0],
        "tonic-dashmap",
        closed_rps[1],
    ));
    Ok(())
}
