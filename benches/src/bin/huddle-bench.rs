//! `huddle-bench`: huddle's end-to-end benchmarks. See `huddle-bench --help`.

use anyhow::Result;
use clap::{Parser, Subcommand};
use huddle_benches::actors::{self, ActorsOpts, ProbeKind, ProbeOpts};
use huddle_benches::alloc::CountingAlloc;
use huddle_benches::grpc::{self, GrpcOpts};
use huddle_benches::knowledge::{self, EmbedOpts, IndexOpts};
use huddle_benches::livekit::{self, LiveKitOpts};
use huddle_benches::notify::{self, NotifyOpts};
use huddle_benches::report::Reporter;
use huddle_benches::serve;
use huddle_benches::speech::{self, SpeechOpts};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const ABOUT: &str = "huddle's end-to-end benchmarks";

const LONG_ABOUT: &str = "huddle's end-to-end benchmarks.

Each bench prints one line per measurement: aligned text by default, or with
--json one JSON object per line ({\"bench\",\"metric\",\"value\",\"unit\",...}).
The first line describes the machine (nproc, CPU model, memory); the last line
is a summary {\"bench\",\"metric\",\"huddle\",\"peer\",\"peer_value\",\"ratio\"} where
ratio > 1 means huddle is ahead. Targets are reported as `target` and
`meets_target`, never asserted. Build with --release; each bench takes well
under 90 s on 2 cores.

  actors   one RoomActor: cast throughput (target >= 3M msg/s, peer: tokio mpsc),
           call! latency in-runtime and cross-thread, spawn cost (target <= 5 us)
           and memory per idle room (target <= 4 KB) with 10,000 rooms live
  grpc     GetRoom closed loop (peer: tonic + DashMap), GetRoom open loop at
           10k req/s (target p99 <= 2 ms, also run against the peer), JoinRoom
           closed loop (durable writes)
  embed    all-MiniLM-L6-v2 texts/s at batch 1 and 32, single-text latency
           (target p50 <= 6 ms); peer: sentence-transformers (target >= 1.5x at 32)
  index    HNSW over real MiniLM embeddings: build time, memory, recall@10 and
           1-thread queries/s per ef; peers: hnswlib and faiss (target >= 1.2x
           hnswlib queries/s at recall@10 >= 0.95)
  livekit  speech published into LiveKit rooms -> the agent's captions received
           back in the room, p50/p95 at 1 and 8 rooms (LiveKit test double;
           peer: the same speech through StreamAudio to a watcher)
  notify   webhook deliveries/s from the SQLite outbox to a local receiver (target
           >= 2,000/s; peer: the same signed posts with no outbox), enqueue
           latency under load (target p99 <= 5 ms), recovery of 10,000 pending
           after a crash (target <= 5 s)
  speech   whisper decoding speed (real-time factor) and WER per model and
           quantisation at 1 and 2 threads; end of speech -> final transcript
           segment at a watcher (p50 target <= 0.6 s, p95 <= 1.2 s) at 1, 4 and 8
           concurrent real-time streams; the most streams sustained (target >= 8);
           peer: the naive whole-file transcription with full windows";

const SPEECH_ABOUT: &str = "Local speech to text on a synthetic meeting: six espeak-ng sentences
separated by 1 s pauses (about 30 s), needs espeak-ng.

- rtf_<model>_<quant>_t<threads>: decode time per second of speech, on the
  utterances the voice-activity detector cuts (encoder window sized to each),
  one decoder with 1 or 2 whisper.cpp threads. wer_<model>_<quant>: word error
  rate of the concatenated transcript (targets: tiny.en <= 0.12, base <= 0.08).
- naive_whole_file_latency: the whole recording through whisper with full 30 s
  windows once it is over (what a batch transcriber makes you wait).
- latency_{p50,p95}_<N>_streams: N rooms, each hearing one real-time stream
  (20 ms chunks; starts staggered over one sentence unless --aligned) through
  the embedded runtime (resampler, VAD, the shared
  decoder pool with its default one decoder per core, SQLite, a watcher per
  room); latency from the true end of each sentence to the arrival of its last
  transcript segment at the watcher. Also dropped audio and WER per N.
- max_realtime_streams: the largest N (of --streams and then --probe-streams)
  with no dropped audio, no missing sentence and p95 <= 1.2 s.

Models are fetched into the models directory on first use.
Summary: latency_p50_1_stream against naive-whole-file.";

const LIVEKIT_ABOUT: &str = "Speech in LiveKit rooms -> captions back in the room. Needs espeak-ng.

No LiveKit server can run here: the rooms live on LiveKitTestServer
(huddle-testsupport), a test double of a LiveKit server following its protocol
over real loopback WebSockets, with webrtc-rs peers (Opus). Each room has one
server-side participant publishing the synthetic meeting (--sentences espeak-ng
sentences with 1 s pauses, 48 kHz) as an Opus track; the embedded runtime
(SQLite, tiny.en q8_0, default decoders) has each room bound to its LiveKit room,
and its agent joins when the room starts, hears the track over WebRTC,
transcribes it and publishes each final segment as a Transcription data packet.

- caption_latency_{p50,p95}_<N>_rooms: from the true end of a sentence's voice
  in the played audio to the arrival of its last caption at the test server.
  Room starts are staggered over one sentence. missing_sentences: sentences with
  no caption.
- streamaudio_watcher_latency_p50_1_room: the same speech through StreamAudio
  to a room watcher (no WebRTC, no data channel): the peer.

Summary: caption_latency_p50_1_room against streamaudio-watcher.";

const NOTIFY_ABOUT: &str = "Webhook delivery from the durable outbox, embedded runtime, SQLite file
(synchronous=FULL), a local axum receiver answering 204 in a child process (as
a real receiver is another process; --in-process-receiver runs it in this
process, sharing the node's tokio scheduler).

- deliveries_per_s_sqlite: --deliveries notifications are enqueued (100
  endpoints, 100 recipients per send) by a node that does not deliver; then a
  delivering node starts and the time until all are DELIVERED is measured
  (claiming, signing, posting, recording every attempt). Target >= 2,000/s.
- peer_direct_posts_per_s: the same number of signed POSTs straight from
  reqwest with 256 in flight: no outbox, no database (the ceiling here).
- enqueue_p50_ms / enqueue_p99_ms: --sends single-recipient Send calls
  (Api::send_notification, in process) from --senders concurrent senders while
  the outbox delivers --deliveries others. Target p99 <= 5 ms. Also
  deliveries_per_s_while_sending: what the outbox delivered meanwhile (on
  SQLite it holds its writes back for senders, notify.yield_to_requests_ms);
  and peer_enqueue_p99_ms_no_deliveries: the same sends again on the same
  database with no outbox running.
- recovery_secs: --recovery notifications claimed by a node that then died;
  a restarted node (same node id) takes its claims back and delivers them all.
  Target <= 5 s. Also: runtime start and first delivery after the restart.

Summary: deliveries_per_s_sqlite against direct-posts-no-outbox.";

const ACTORS_ABOUT: &str = "One RoomActor in isolation, without gRPC or storage work in the hot path.

- cast_throughput: RoomMsg::Ping cast N times from a task inside the tokio
  runtime into one RoomActor (preloaded view, SQLite in-memory store), then one
  call! of RoomMsg::Handled to sync. Median of --runs. Target >= 3,000,000 msg/s.
  Peer: a bare tokio unbounded mpsc into a counting task (tokio_mpsc_cast_throughput).
  *_current_thread: both again on a current_thread runtime.
- call_in_runtime_{p50,p99,p999}: RoomMsg::Get round trips with call! from a
  task inside the runtime; call_cross_thread_*: the same from a plain OS thread,
  one Handle::block_on per call (every round trip crosses threads);
  tokio_mpsc_call_in_runtime_*: the same reply through a bare mpsc + oneshot.
- spawn_us / idle_room_rss_bytes / idle_room_heap_bytes: spawning --rooms
  RoomActors (preloaded realistic view, no participants) after --warmup-rooms,
  all kept live. Targets: <= 5 us per spawn, <= 4096 bytes per idle room.
  Each kind runs in a fresh child process (RSS growth, then heap bytes from a
  counting allocator). Compared with: a named RoomActor (registry entry, as the
  supervisor spawns it), an empty ractor actor, and a bare tokio task owning an
  mpsc receiver.
- passivated_watched_room_*: a room with no actor that is being watched costs a
  RoomHub entry: RoomHub::subscribe for --rooms ids, receivers held (default
  watch buffer, and 16 for comparison).
- size_of_*: the types and futures a live room is made of.

Summary: cast_throughput against tokio-mpsc.";

const GRPC_ABOUT: &str = "GetRoom and JoinRoom over loopback HTTP/2 against a huddle node.

The node (huddle_runtime::server::Server, default config, SQLite file in a temp
dir, synchronous=FULL) and the peer (a minimal tonic server of huddle.v1.Rooms
whose GetRoom answers from a DashMap; everything else UNIMPLEMENTED) run as
separate processes: this binary re-executed with hidden subcommands. Setup:
one entity (max_participants 10000) and --rooms started rooms.

- inprocess_*: GetRoom's work without gRPC, in this process: Api::get_room on
  an embedded runtime with a SQLite file, and the two store reads it makes.
- getroom_closed_loop_{rps,p50,p99}: --connections channels, --in-flight
  requests in flight in total, --secs measured after --warmup-secs.
- peer_getroom_closed_loop_*: the same against the peer.
- getroom_open_loop_*: --rate req/s paced by a dedicated OS thread sending
  tickets; latency from the scheduled time (p50/p99/p999) and from the actual
  send (_sent_*). Target: p99 <= 2 ms at 10,000 req/s. Also against the peer.
- joinroom_closed_loop_*: each request joins a fresh identity into the next
  room round-robin, --join-in-flight in flight; every join is a durable write.
- Open loops drop a ticket (counted as `dropped`) when half a second's worth
  of requests is already outstanding, so an overloaded server ends the run.

Summary: getroom_closed_loop_rps against tonic-dashmap.";

#[derive(Parser)]
#[command(name = "huddle-bench", about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    /// Print one JSON object per line instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// One RoomActor: cast throughput, call latency, spawn cost, memory per room.
    #[command(long_about = ACTORS_ABOUT)]
    Actors {
        /// Casts per throughput run.
        #[arg(long, default_value_t = 2_000_000)]
        messages: u64,
        /// Throughput runs; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: u32,
        /// call! round trips per latency measurement.
        #[arg(long, default_value_t = 100_000)]
        calls: u32,
        /// Live rooms (or tasks, or watched ids) for spawn and memory.
        #[arg(long, default_value_t = 10_000)]
        rooms: usize,
        /// Spawned and kept before the memory baseline.
        #[arg(long, default_value_t = 1_000)]
        warmup_rooms: usize,
    },
    /// GetRoom / JoinRoom over loopback against a huddle node and a tonic + DashMap peer.
    #[command(long_about = GRPC_ABOUT)]
    Grpc {
        /// Measured seconds per loop.
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
        /// Unmeasured warm-up seconds before each loop.
        #[arg(long, default_value_t = 1.0)]
        warmup_secs: f64,
        /// Open-loop GetRoom rate (requests/s).
        #[arg(long, default_value_t = 10_000)]
        rate: u64,
        /// Rooms created and started on the node.
        #[arg(long, default_value_t = 200)]
        rooms: usize,
        /// HTTP/2 connections per server.
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// GetRoom closed loop: requests in flight in total.
        #[arg(long, default_value_t = 64)]
        in_flight: usize,
        /// JoinRoom closed loop: requests in flight in total.
        #[arg(long, default_value_t = 32)]
        join_in_flight: usize,
    },
    /// Speech in LiveKit rooms -> the agent's captions back in the room.
    #[command(long_about = LIVEKIT_ABOUT)]
    Livekit {
        /// Concurrent rooms, one real-time speaker each.
        #[arg(long, value_delimiter = ',', default_value = "1,8")]
        rooms: Vec<usize>,
        /// Sentences each speaker says (1 s pauses).
        #[arg(long, default_value_t = 4)]
        sentences: usize,
        /// Models directory [default: $HUDDLE_MODELS_DIR or ~/.cache/huddle/models].
        #[arg(long)]
        models_dir: Option<std::path::PathBuf>,
    },
    /// Whisper speed and accuracy, and transcript latency with N concurrent real-time streams.
    #[command(long_about = SPEECH_ABOUT)]
    Speech {
        /// model:quant pairs to measure decoding speed for.
        #[arg(long, value_delimiter = ',', default_value = "tiny.en:q8_0,tiny.en:f16,base:q8_0")]
        models: Vec<String>,
        /// Concurrent real-time streams to measure latency at.
        #[arg(long, value_delimiter = ',', default_value = "1,4,8")]
        streams: Vec<usize>,
        /// Larger stream counts tried next, to find the most this machine sustains.
        #[arg(long, value_delimiter = ',', default_value = "12,16,24,32")]
        probe_streams: Vec<usize>,
        /// Models directory [default: $HUDDLE_MODELS_DIR or ~/.cache/huddle/models].
        #[arg(long)]
        models_dir: Option<std::path::PathBuf>,
        /// Start all streams at once so every room ends its sentences at the same
        /// moment (worst case); by default starts are staggered over one sentence.
        #[arg(long)]
        aligned: bool,
    },
    /// all-MiniLM-L6-v2 throughput and latency against sentence-transformers.
    Embed {
        /// Generated meeting-like sentences to embed.
        #[arg(long, default_value_t = 1000)]
        texts: usize,
        /// Single-text embeddings timed for the latency percentiles.
        #[arg(long, default_value_t = 200)]
        single_runs: usize,
        /// Models directory [default: $HUDDLE_MODELS_DIR or ~/.cache/huddle/models].
        #[arg(long)]
        models_dir: Option<std::path::PathBuf>,
        /// The encoder's arithmetic: auto (bf16 where the CPU multiplies bf16
        /// natively, as huddle runs), bf16 or f32 (the path CPUs without AVX512_BF16 take).
        #[arg(long, default_value = "auto", value_parser = ["auto", "bf16", "f32"])]
        precision: String,
    },
    /// The HNSW index against hnswlib and faiss on real MiniLM embeddings.
    Index {
        /// Vectors indexed (embedded once and cached in ~/.cache/huddle-bench).
        #[arg(long, default_value_t = 20_000)]
        n: usize,
        /// Held-out query vectors.
        #[arg(long, default_value_t = 500)]
        queries: usize,
        /// Search breadths measured.
        #[arg(long, value_delimiter = ',', default_value = "16,32,64,128,256")]
        efs: Vec<usize>,
        /// Models directory [default: $HUDDLE_MODELS_DIR or ~/.cache/huddle/models].
        #[arg(long)]
        models_dir: Option<std::path::PathBuf>,
    },
    /// Webhook delivery from the durable outbox: throughput, enqueue latency, recovery.
    #[command(long_about = NOTIFY_ABOUT)]
    Notify {
        /// Notifications delivered in the throughput run.
        #[arg(long, default_value_t = 20_000)]
        deliveries: usize,
        /// Pending notifications a crashed node leaves behind.
        #[arg(long, default_value_t = 10_000)]
        recovery: usize,
        /// Sends timed for enqueue latency.
        #[arg(long, default_value_t = 10_000)]
        sends: usize,
        /// Concurrent senders for enqueue latency.
        #[arg(long, default_value_t = 8)]
        senders: usize,
        /// Run the webhook receiver in this process instead of a child process.
        #[arg(long)]
        in_process_receiver: bool,
    },
    /// Child process: the notify bench's webhook receiver; prints `READY <addr>`, stops when stdin closes.
    #[command(hide = true)]
    ServeReceiver,
    /// Child process: a huddle node; prints `READY <grpc_addr>`, stops when stdin closes.
    #[command(hide = true)]
    ServeNode {
        #[arg(long)]
        database: String,
        #[arg(long)]
        admin_key: String,
    },
    /// Child process: the tonic + DashMap peer; prints `READY <addr>`, stops when stdin closes.
    #[command(hide = true)]
    ServePeer {
        #[arg(long, default_value_t = 200)]
        rooms: usize,
    },
    /// Child process: spawns one kind of thing, prints its cost as one JSON line.
    #[command(hide = true)]
    MemProbe {
        #[arg(long, value_enum)]
        kind: ProbeKind,
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        #[arg(long, default_value_t = 1_000)]
        warmup: usize,
        #[arg(long)]
        heap: bool,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rep = Reporter::new(cli.json);
    match cli.cmd {
        Cmd::Actors { messages, runs, calls, rooms, warmup_rooms } => {
            rep.machine();
            actors::run(&ActorsOpts { messages, runs, calls, rooms, warmup_rooms }, &rep)
        }
        Cmd::Grpc { secs, warmup_secs, rate, rooms, connections, in_flight, join_in_flight } => {
            rep.machine();
            grpc::run(&GrpcOpts { secs, warmup_secs, rate, rooms, connections, in_flight, join_in_flight }, &rep)
        }
        Cmd::Livekit { rooms, sentences, models_dir } => {
            rep.machine();
            livekit::run(&LiveKitOpts { rooms, sentences, models_dir }, &rep)
        }
        Cmd::Speech { models, streams, probe_streams, models_dir, aligned } => {
            rep.machine();
            speech::run(&SpeechOpts { models, streams, probe_streams, models_dir, aligned }, &rep)
        }
        Cmd::Embed { texts, single_runs, models_dir, precision } => {
            rep.machine();
            let precision = match precision.as_str() {
                "bf16" => Some(huddle_models::embed::Precision::Bf16),
                "f32" => Some(huddle_models::embed::Precision::F32),
                _ => None,
            };
            knowledge::run_embed(&EmbedOpts { texts, single_runs, models_dir, precision }, &rep)
        }
        Cmd::Index { n, queries, efs, models_dir } => {
            rep.machine();
            knowledge::run_index(&IndexOpts { n, queries, efs, models_dir }, &rep)
        }
        Cmd::Notify { deliveries, recovery, sends, senders, in_process_receiver } => {
            rep.machine();
            notify::run(&NotifyOpts { deliveries, recovery, sends, senders, in_process_receiver }, &rep)
        }
        Cmd::ServeReceiver => serve::serve_receiver(),
        Cmd::ServeNode { database, admin_key } => serve::serve_node(&database, &admin_key),
        Cmd::ServePeer { rooms } => serve::serve_peer(rooms),
        Cmd::MemProbe { kind, count, warmup, heap } => actors::probe(&ProbeOpts { kind, count, warmup, heap }),
    }
}
