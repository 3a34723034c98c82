//! The `actors` bench: one `RoomActor` in isolation, no gRPC.
//!
//! - cast throughput of `RoomMsg::Ping` through one room actor, against a
//!   bare tokio unbounded mpsc + task (the floor);
//! - `RoomMsg::Get` round trips with `call!`, from a task inside the runtime
//!   and from a plain OS thread (`Handle::block_on`), reported apart;
//! - spawn cost and memory per idle room with 10,000 rooms live, against an
//!   empty ractor actor and a bare tokio task owning an mpsc receiver;
//! - memory per passivated but watched room (a `RoomHub` entry).
//!
//! Memory is measured in a fresh child process per kind (`mem-probe`), so
//! that memory freed by one measurement cannot hide the growth of the next:
//! glibc keeps freed chunks, and `malloc_trim` is not called. Each kind runs
//! twice: once for time and resident-set growth, once with the counting
//! allocator on for exact heap bytes.

use std::mem::{size_of, size_of_val};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use huddle_actors::hub::RoomHub;
use huddle_actors::room::{RoomActor, RoomArgs, RoomMsg, RoomState, RoomView};
use huddle_actors::room_supervisor::room_actor_name;
use huddle_core::{Participant, Room, RoomEvent, new_id};
use huddle_runtime::RoomsConfig;
use huddle_storage::DynStore;
use ractor::{Actor, ActorProcessingErr, ActorRef, ActorStatus};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::alloc;
use crate::fixture;
use crate::report::{Latencies, Measurement, Reporter, Summary, median, round, rss_bytes};

const BENCH: &str = "actors";
const ENTITY_ID: &str = "00000000-0000-7000-8000-e00000000001";

/// Knobs of the `actors` bench.
#[derive(Debug, Clone)]
pub struct ActorsOpts {
    /// Casts per throughput run.
    pub messages: u64,
    /// Throughput runs (huddle and peer interleaved); the median is reported.
    pub runs: u32,
    /// `call!` round trips per latency measurement.
    pub calls: u32,
    /// Live rooms for the spawn and memory measurements.
    pub rooms: usize,
    /// Rooms spawned (and kept) before the memory baseline is read.
    pub warmup_rooms: usize,
}

/// What a memory probe spawns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbeKind {
    /// `RoomActor` with a preloaded view, no registry name.
    Room,
    /// `RoomActor` registered under its runtime name, as the supervisor spawns it.
    RoomNamed,
    /// A ractor actor with unit state and a one-variant message.
    EmptyActor,
    /// A tokio task owning an unbounded mpsc receiver.
    TokioTask,
    /// A passivated room being watched: `RoomHub::subscribe`, default watch buffer.
    HubWatch,
    /// The same with a watch buffer of 16.
    HubWatch16,
}

impl ProbeKind {
    fn name(self) -> &'static str {
        match self {
            ProbeKind::Room => "room",
            ProbeKind::RoomNamed => "room-named",
            ProbeKind::EmptyActor => "empty-actor",
            ProbeKind::TokioTask => "tokio-task",
            ProbeKind::HubWatch => "hub-watch",
            ProbeKind::HubWatch16 => "hub-watch16",
        }
    }

    fn watch_buffer(self) -> usize {
        match self {
            ProbeKind::HubWatch16 => 16,
            _ => RoomsConfig::default().watch_buffer,
        }
    }
}

/// Knobs of one memory probe (a child process).
#[derive(Debug, Clone)]
pub struct ProbeOpts {
    pub kind: ProbeKind,
    pub count: usize,
    pub warmup: usize,
    /// Count heap bytes (slower allocations; spawn times are then not reported).
    pub heap: bool,
}

/// A ractor actor that holds nothing: what the framework alone costs.
pub struct EmptyActor;

pub enum EmptyMsg {
    Ping,
}

impl Actor for EmptyActor {
    type Msg = EmptyMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _myself: ActorRef<EmptyMsg>, _args: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<EmptyMsg>,
        msg: EmptyMsg,
        _state: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            EmptyMsg::Ping => Ok(()),
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

fn ractor_err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("{e}")
}

fn room_args(store: &DynStore, hub: &RoomHub, view: RoomView) -> RoomArgs {
    RoomArgs {
        room_id: view.room.id.clone(),
        store: store.clone(),
        hub: hub.clone(),
        preloaded: Some(view),
        restart_reason: None,
    }
}

async fn spawn_room(store: &DynStore, hub: &RoomHub, i: usize) -> Result<ActorRef<RoomMsg>> {
    let args = room_args(store, hub, fixture::room_view(i, ENTITY_ID));
    let (actor, _) = Actor::spawn(None, RoomActor, args).await.map_err(ractor_err)?;
    Ok(actor)
}

/// Casts `n` pings from this task, then syncs with a `call!`; messages/s.
async fn cast_room(actor: ActorRef<RoomMsg>, n: u64) -> Result<f64> {
    let before = ractor::call!(actor, |reply| RoomMsg::Handled { reply }).map_err(ractor_err)?;
    let t = Instant::now();
    for _ in 0..n {
        actor.cast(RoomMsg::Ping).map_err(ractor_err)?;
    }
    let after = ractor::call!(actor, |reply| RoomMsg::Handled { reply }).map_err(ractor_err)?;
    let dt = t.elapsed();
    ensure!(after - before == n + 1, "room actor handled {} messages, expected {}", after - before, n + 1);
    Ok(n as f64 / dt.as_secs_f64())
}

enum FloorMsg {
    Ping,
    Handled(oneshot::Sender<u64>),
}

/// The floor: a tokio unbounded mpsc into a task that counts.
async fn cast_mpsc(n: u64) -> Result<f64> {
    let (tx, mut rx) = mpsc::unbounded_channel::<FloorMsg>();
    tokio::spawn(async move {
        let mut handled = 0u64;
        while let Some(m) = rx.recv().await {
            handled += 1;
            if let FloorMsg::Handled(reply) = m {
                let _ = reply.send(handled);
            }
        }
    });
    let t = Instant::now();
    for _ in 0..n {
        tx.send(FloorMsg::Ping).map_err(|_| anyhow!("floor task ended"))?;
    }
    let (reply_tx, reply_rx) = oneshot::channel();
    tx.send(FloorMsg::Handled(reply_tx)).map_err(|_| anyhow!("floor task ended"))?;
    let handled = reply_rx.await?;
    let dt = t.elapsed();
    ensure!(handled == n + 1, "floor task handled {handled} messages, expected {}", n + 1);
    Ok(n as f64 / dt.as_secs_f64())
}

/// `RoomMsg::Get` round trips from the current task.
async fn call_latency(actor: ActorRef<RoomMsg>, n: u32) -> Result<Latencies> {
    for _ in 0..1_000 {
        ractor::call!(actor, |reply| RoomMsg::Get { reply }).map_err(ractor_err)?;
    }
    let mut samples = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let t = Instant::now();
        let view = ractor::call!(actor, |reply| RoomMsg::Get { reply }).map_err(ractor_err)?;
        samples.push(t.elapsed());
        std::hint::black_box(view);
    }
    Ok(Latencies::from_durations(samples))
}

/// `RoomMsg::Get` round trips from a plain OS thread, one `block_on` per call.
fn blocking_call_latency(handle: &tokio::runtime::Handle, actor: &ActorRef<RoomMsg>, n: u32) -> Result<Latencies> {
    let mut samples = Vec::with_capacity(n as usize);
    for i in 0..n + 1_000 {
        let t = Instant::now();
        let view =
            handle.block_on(async { ractor::call!(actor, |reply| RoomMsg::Get { reply }) }).map_err(ractor_err)?;
        if i >= 1_000 {
            samples.push(t.elapsed());
        }
        std::hint::black_box(view);
    }
    Ok(Latencies::from_durations(samples))
}

/// The same round trip through a bare mpsc + oneshot, for comparison.
async fn mpsc_call_latency(view: RoomView, n: u32) -> Result<Latencies> {
    let (tx, mut rx) = mpsc::unbounded_channel::<oneshot::Sender<RoomView>>();
    tokio::spawn(async move {
        while let Some(reply) = rx.recv().await {
            let _ = reply.send(view.clone());
        }
    });
    let mut samples = Vec::with_capacity(n as usize);
    for i in 0..n + 1_000 {
        let t = Instant::now();
        let (reply_tx, reply_rx) = oneshot::channel();
        tx.send(reply_tx).map_err(|_| anyhow!("floor task ended"))?;
        std::hint::black_box(reply_rx.await?);
        if i >= 1_000 {
            samples.push(t.elapsed());
        }
    }
    Ok(Latencies::from_durations(samples))
}

fn emit_latencies(rep: &Reporter, prefix: &str, l: &Latencies, extra: &[(&str, Value)]) {
    for (q, name) in [(0.5, "p50"), (0.99, "p99"), (0.999, "p999")] {
        let mut m = Measurement::new(BENCH, format!("{prefix}_{name}"), l.quantile_us(q), "us").with("calls", l.len());
        for (k, v) in extra {
            m = m.with(k, v.clone());
        }
        rep.emit(m);
    }
}

/// Sizes of the types a live room is made of, and of the futures its task holds.
async fn type_sizes(store: &DynStore, hub: &RoomHub) -> Result<Vec<(&'static str, usize)>> {
    let probe = spawn_room(store, hub, 0).await?;
    let args = || room_args(store, hub, fixture::room_view(0, ENTITY_ID));
    let mut state = RoomActor.pre_start(probe.clone(), args()).await.map_err(ractor_err)?;
    let pre_start_future = size_of_val(&RoomActor.pre_start(probe.clone(), args()));
    let handle_future = size_of_val(&RoomActor.handle(probe.clone(), RoomMsg::Ping, &mut state));
    let (empty, _) = Actor::spawn(None, EmptyActor, ()).await.map_err(ractor_err)?;
    let empty_handle_future = size_of_val(&EmptyActor.handle(empty.clone(), EmptyMsg::Ping, &mut ()));
    probe.stop(None);
    empty.stop(None);
    Ok(vec![
        ("size_of_room_state", size_of::<RoomState>()),
        ("size_of_room", size_of::<Room>()),
        ("size_of_room_view", size_of::<RoomView>()),
        ("size_of_participant", size_of::<Participant>()),
        ("size_of_room_msg", size_of::<RoomMsg>()),
        ("size_of_room_event", size_of::<RoomEvent>()),
        ("size_of_ractor_boxed_message", size_of::<ractor::message::BoxedMessage>()),
        ("size_of_ractor_supervision_event", size_of::<ractor::SupervisionEvent>()),
        ("size_of_room_pre_start_future", pre_start_future),
        ("size_of_room_handle_future", handle_future),
        ("size_of_empty_actor_handle_future", empty_handle_future),
    ])
}

/// Runs the whole `actors` bench.
pub fn run(opts: &ActorsOpts, rep: &Reporter) -> Result<()> {
    let rt = runtime()?;
    let store = rt.block_on(huddle_storage::open("sqlite::memory:"))?;
    let hub = RoomHub::new(RoomsConfig::default().watch_buffer);
    let actor = rt.block_on(spawn_room(&store, &hub, 0))?;

    // 1. cast throughput, huddle and floor interleaved.
    rep.progress(&format!("cast throughput: {} runs of {} messages", opts.runs, opts.messages));
    let (mut huddle_runs, mut floor_runs) = (vec![], vec![]);
    for _ in 0..opts.runs.max(1) {
        huddle_runs.push(rt.block_on(rt.spawn(cast_room(actor.clone(), opts.messages)))??);
        floor_runs.push(rt.block_on(rt.spawn(cast_mpsc(opts.messages)))??);
    }
    let huddle_cast = median(&huddle_runs);
    let floor_cast = median(&floor_runs);
    let runs = |v: &[f64]| v.iter().map(|x| x.round()).collect::<Vec<_>>();
    rep.emit(
        Measurement::new(BENCH, "cast_throughput", huddle_cast, "msg/s")
            .with("messages", opts.messages)
            .with("statistic", "median")
            .with("runs", runs(&huddle_runs))
            .with("sender", "task in runtime")
            .with("runtime", "multi_thread, 2 workers")
            .target(">= 3000000 msg/s", huddle_cast >= 3e6),
    );
    rep.emit(
        Measurement::new(BENCH, "tokio_mpsc_cast_throughput", floor_cast, "msg/s")
            .with("messages", opts.messages)
            .with("statistic", "median")
            .with("runs", runs(&floor_runs))
            .with("runtime", "multi_thread, 2 workers")
            .with("peer", "tokio-mpsc"),
    );

    // The same on a current_thread runtime: sender and actor share one thread.
    let ct = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let ct_actor = ct.block_on(spawn_room(&store, &hub, 1))?;
    let (mut ct_huddle, mut ct_floor) = (vec![], vec![]);
    for _ in 0..opts.runs.max(1) {
        ct_huddle.push(ct.block_on(cast_room(ct_actor.clone(), opts.messages))?);
        ct_floor.push(ct.block_on(cast_mpsc(opts.messages))?);
    }
    ct_actor.stop(None);
    drop(ct);
    for (metric, v) in
        [("cast_throughput_current_thread", &ct_huddle), ("tokio_mpsc_cast_throughput_current_thread", &ct_floor)]
    {
        rep.emit(
            Measurement::new(BENCH, metric, median(v), "msg/s")
                .with("messages", opts.messages)
                .with("statistic", "median")
                .with("runs", runs(v))
                .with("runtime", "current_thread"),
        );
    }

    // 2. request/reply latency.
    rep.progress(&format!("call latency: {} RoomMsg::Get round trips, in runtime and cross-thread", opts.calls));
    let in_rt = rt.block_on(rt.spawn(call_latency(actor.clone(), opts.calls)))??;
    emit_latencies(rep, "call_in_runtime", &in_rt, &[("caller", json!("task in runtime"))]);
    let floor_call = rt.block_on(rt.spawn(mpsc_call_latency(fixture::room_view(0, ENTITY_ID), opts.calls)))??;
    emit_latencies(rep, "tokio_mpsc_call_in_runtime", &floor_call, &[("peer", json!("tokio-mpsc+oneshot"))]);
    let cross = {
        let (handle, actor, n) = (rt.handle().clone(), actor.clone(), opts.calls);
        std::thread::spawn(move || blocking_call_latency(&handle, &actor, n))
            .join()
            .map_err(|_| anyhow!("cross-thread caller panicked"))??
    };
    emit_latencies(rep, "call_cross_thread", &cross, &[("caller", json!("OS thread, Handle::block_on per call"))]);

    // 3. what a room is made of.
    for (name, bytes) in rt.block_on(type_sizes(&store, &hub))? {
        rep.emit(Measurement::new(BENCH, name, bytes as f64, "bytes"));
    }
    actor.stop(None);
    drop(rt);

    // 4. spawn cost and memory, one fresh process per kind.
    rep.progress(&format!("spawn and memory: {} live of each kind after {} warm-up", opts.rooms, opts.warmup_rooms));
    let target_spawn = "<= 5 us";
    let target_mem = "<= 4096 bytes";
    for (kind, spawn_metric, rss_metric, heap_metric, targets) in [
        (ProbeKind::Room, "spawn_us", "idle_room_rss_bytes", "idle_room_heap_bytes", true),
        (ProbeKind::RoomNamed, "spawn_named_us", "idle_room_named_rss_bytes", "idle_room_named_heap_bytes", false),
        (ProbeKind::EmptyActor, "empty_actor_spawn_us", "empty_actor_rss_bytes", "empty_actor_heap_bytes", false),
        (ProbeKind::TokioTask, "tokio_task_spawn_us", "tokio_task_rss_bytes", "tokio_task_heap_bytes", false),
        (
            ProbeKind::HubWatch,
            "passivated_watch_us",
            "passivated_watched_room_rss_bytes",
            "passivated_watched_room_heap_bytes",
            false,
        ),
        (
            ProbeKind::HubWatch16,
            "passivated_watch16_us",
            "passivated_watched_room_buf16_rss_bytes",
            "passivated_watched_room_buf16_heap_bytes",
            false,
        ),
    ] {
        let timed = run_probe(kind, opts.rooms, opts.warmup_rooms, false)?;
        let heap = run_probe(kind, opts.rooms, opts.warmup_rooms, true)?;
        let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        let what = match kind {
            ProbeKind::Room | ProbeKind::RoomNamed => "RoomActor, preloaded view, no participants",
            ProbeKind::EmptyActor => "ractor actor, unit state",
            ProbeKind::TokioTask => "tokio task owning an unbounded mpsc receiver",
            ProbeKind::HubWatch | ProbeKind::HubWatch16 => "RoomHub::subscribe, receiver held, no actor",
        };
        let mut spawn = Measurement::new(BENCH, spawn_metric, f(&timed, "spawn_us_mean"), "us")
            .with("what", what)
            .with("live", opts.rooms)
            .with("p50_us", f(&timed, "spawn_us_p50"))
            .with("p99_us", f(&timed, "spawn_us_p99"))
            .with("until_all_running_us_per", f(&timed, "settled_us_per"));
        let mut rss = Measurement::new(BENCH, rss_metric, f(&timed, "rss_bytes_per"), "bytes")
            .with("what", what)
            .with("live", opts.rooms)
            .with("rss_before", timed["rss_before"].clone())
            .with("rss_after", timed["rss_after"].clone());
        if matches!(kind, ProbeKind::HubWatch | ProbeKind::HubWatch16) {
            spawn = spawn.with("watch_buffer", kind.watch_buffer());
            rss = rss.with("watch_buffer", kind.watch_buffer());
        }
        if targets {
            let (s, r) = (f(&timed, "spawn_us_mean"), f(&timed, "rss_bytes_per"));
            spawn = spawn.target(target_spawn, s <= 5.0);
            rss = rss.target(target_mem, r <= 4096.0);
        }
        rep.emit(spawn);
        rep.emit(rss);
        rep.emit(
            Measurement::new(BENCH, heap_metric, f(&heap, "heap_bytes_per"), "bytes")
                .with("what", what)
                .with("live", opts.rooms)
                .with("allocations_per_item", heap["allocations_per"].clone()),
        );
    }

    rep.summary(Summary::higher_is_better(BENCH, "cast_throughput", huddle_cast, "tokio-mpsc", floor_cast));
    Ok(())
}

/// Runs `mem-probe` in a child process and returns its JSON line.
fn run_probe(kind: ProbeKind, count: usize, warmup: usize, heap: bool) -> Result<Value> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args(["mem-probe", "--kind", kind.name(), "--count", &count.to_string(), "--warmup", &warmup.to_string()]);
    if heap {
        cmd.arg("--heap");
    }
    let out = cmd.output().with_context(|| format!("running mem-probe {}", kind.name()))?;
    if !out.status.success() {
        bail!("mem-probe {} failed ({}): {}", kind.name(), out.status, String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8(out.stdout)?;
    let line = stdout.lines().last().ok_or_else(|| anyhow!("mem-probe {} printed nothing", kind.name()))?;
    Ok(serde_json::from_str(line)?)
}

/// What a probe keeps alive.
#[derive(Default)]
struct Live {
    rooms: Vec<ActorRef<RoomMsg>>,
    empties: Vec<ActorRef<EmptyMsg>>,
    tasks: Vec<mpsc::UnboundedSender<u64>>,
    watchers: Vec<broadcast::Receiver<RoomEvent>>,
    tasks_started: Arc<AtomicUsize>,
}

impl Live {
    fn reserve(&mut self, n: usize) {
        self.rooms.reserve(n);
        self.empties.reserve(n);
        self.tasks.reserve(n);
        self.watchers.reserve(n);
    }

    /// Waits until every spawned actor runs its loop and every task has been polled.
    async fn settle(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let rooms = self.rooms.iter().all(|a| a.get_status() == ActorStatus::Running);
            let empties = self.empties.iter().all(|a| a.get_status() == ActorStatus::Running);
            let tasks = self.tasks_started.load(Ordering::SeqCst) == self.tasks.len();
            if rooms && empties && tasks {
                return Ok(());
            }
            ensure!(Instant::now() < deadline, "spawned actors did not all start within 30 s");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Spawns `range.len()` things of `kind`, timing only the spawn itself.
async fn spawn_batch(
    kind: ProbeKind,
    range: std::ops::Range<usize>,
    store: &DynStore,
    hub: &RoomHub,
    live: &mut Live,
) -> Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(range.len());
    for i in range {
        match kind {
            ProbeKind::Room | ProbeKind::RoomNamed => {
                let view = fixture::room_view(i, ENTITY_ID);
                let name = (kind == ProbeKind::RoomNamed).then(|| room_actor_name("bench", &view.room.id));
                let args = room_args(store, hub, view);
                let t = Instant::now();
                let (a, _) = Actor::spawn(name, RoomActor, args).await.map_err(ractor_err)?;
                times.push(t.elapsed());
                live.rooms.push(a);
            }
            ProbeKind::EmptyActor => {
                let t = Instant::now();
                let (a, _) = Actor::spawn(None, EmptyActor, ()).await.map_err(ractor_err)?;
                times.push(t.elapsed());
                live.empties.push(a);
            }
            ProbeKind::TokioTask => {
                let started = live.tasks_started.clone();
                let t = Instant::now();
                let (tx, mut rx) = mpsc::unbounded_channel::<u64>();
                tokio::spawn(async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    while rx.recv().await.is_some() {}
                });
                times.push(t.elapsed());
                live.tasks.push(tx);
            }
            ProbeKind::HubWatch | ProbeKind::HubWatch16 => {
                let id = new_id();
                let t = Instant::now();
                let rx = hub.subscribe(&id);
                times.push(t.elapsed());
                live.watchers.push(rx);
            }
        }
    }
    Ok(times)
}

/// Allocations that stayed live per item, by 16-byte size class:
/// `[["<=bytes", count per item], ...]`, largest share of bytes first; classes below a
/// quarter allocation per item are left out.
fn allocations_per(before: &[(usize, i64)], after: &[(usize, i64)], items: usize) -> Value {
    let before: std::collections::HashMap<usize, i64> = before.iter().copied().collect();
    let mut per: Vec<(usize, f64)> = after
        .iter()
        .map(|&(size, n)| (size, (n - before.get(&size).copied().unwrap_or(0)) as f64 / items as f64))
        .filter(|&(_, c)| c >= 0.25)
        .collect();
    per.sort_by(|a, b| (b.0 as f64 * b.1).total_cmp(&(a.0 as f64 * a.1)));
    let label = |size: usize| if size > 16 * 1024 { ">16384".to_string() } else { format!("<={size}") };
    json!(per.iter().map(|&(size, c)| json!([label(size), (c * 100.0).round() / 100.0])).collect::<Vec<_>>())
}

/// The `mem-probe` child: spawns `warmup` then `count` things of one kind
/// from a task inside the runtime and prints one JSON line.
pub fn probe(opts: &ProbeOpts) -> Result<()> {
    if opts.heap {
        alloc::start_counting();
    }
    let rt = runtime()?;
    let o = opts.clone();
    let out = rt.block_on(async move { tokio::spawn(probe_in_runtime(o)).await })??;
    println!("{out}");
    Ok(())
}

async fn probe_in_runtime(o: ProbeOpts) -> Result<Value> {
    let store = huddle_storage::open("sqlite::memory:").await?;
    let hub = RoomHub::new(o.kind.watch_buffer());
    let mut live = Live::default();
    live.reserve(o.warmup + o.count);
    spawn_batch(o.kind, 0..o.warmup, &store, &hub, &mut live).await?;
    live.settle().await?;
    tokio::time::sleep(Duration::from_millis(20)).await;

    let (rss0, heap0, classes0) = (rss_bytes(), alloc::live_bytes(), alloc::live_by_size());
    let t = Instant::now();
    let times = spawn_batch(o.kind, o.warmup..o.warmup + o.count, &store, &hub, &mut live).await?;
    let wall = t.elapsed();
    live.settle().await?;
    let settled = t.elapsed();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (rss1, heap1, classes1) = (rss_bytes(), alloc::live_bytes(), alloc::live_by_size());

    let n = o.count as f64;
    let spawn_total: Duration = times.iter().sum();
    let lat = Latencies::from_durations(times);
    Ok(json!({
        "kind": o.kind.name(),
        "count": o.count,
        "spawn_us_mean": round(spawn_total.as_secs_f64() * 1e6 / n),
        "spawn_us_p50": lat.quantile_us(0.5),
        "spawn_us_p99": lat.quantile_us(0.99),
        "wall_us_per": round(wall.as_secs_f64() * 1e6 / n),
        "settled_us_per": round(settled.as_secs_f64() * 1e6 / n),
        "rss_before": rss0,
        "rss_after": rss1,
        "rss_bytes_per": round((rss1 as f64 - rss0 as f64) / n),
        "heap_bytes_per": if o.heap { json!(round((heap1 - heap0) as f64 / n)) } else { Value::Null },
        "allocations_per": if o.heap { allocations_per(&classes0, &classes1, o.count) } else { Value::Null },
        "live": live.rooms.len() + live.empties.len() + live.tasks.len() + live.watchers.len(),
    }))
}
