//! End-to-end benchmarks of huddle, run by the `huddle-bench` binary, which
//! prints one JSON object per measurement (`--json`) or aligned text.
//!
//! Every run starts with a line describing the machine and ends with a
//! summary line comparing huddle with a peer (`ratio > 1`: huddle ahead).
//! Targets are reported (`target`, `meets_target`), never asserted.
//!
//! # Layout
//! - [`report`]: measurements, summaries, the machine line, percentiles, RSS
//! - [`alloc`]: a global allocator that can count live heap bytes
//! - [`fixture`]: realistic room contents shared by the benches
//! - [`actors`]: one `RoomActor` in isolation: cast throughput, call latency,
//!   spawn cost and memory per room (memory probes run as child processes)
//! - [`grpc`]: GetRoom / JoinRoom over loopback against a huddle node and a
//!   tonic + DashMap peer, each a child process
//! - [`serve`]: those two servers
//! - [`knowledge`]: the embedding model against sentence-transformers, the HNSW index
//!   against hnswlib and faiss (Python peers in cached virtualenvs)
//! - [`livekit`]: speech published into LiveKit rooms (on `LiveKitTestServer`) -> the
//!   agent's captions back in the room, against the same speech through StreamAudio
//! - [`notify`]: the notification outbox delivering webhooks, against direct posts
//! - [`speech`]: whisper decoding speed per model, end-of-speech -> transcript
//!   latency at N concurrent real-time streams, against the naive whole-file run
//!
//! # Example
//! ```
//! use huddle_benches::report::{Latencies, Measurement, Summary};
//!
//! let lat = Latencies::from_nanos(vec![3_000, 1_000, 2_000]);
//! assert_eq!(lat.quantile_us(0.5), 2.0);
//! let m = Measurement::new("actors", "cast_throughput", 3.2e6, "msg/s").target(">= 3000000 msg/s", true);
//! assert_eq!(m.to_json()["meets_target"], true);
//! let s = Summary::higher_is_better("actors", "cast_throughput", 3.2e6, "tokio-mpsc", 16e6);
//! assert!(s.ratio < 1.0);
//! ```

pub mod actors;
pub mod alloc;
pub mod fixture;
pub mod grpc;
pub mod knowledge;
pub mod livekit;
pub mod notify;
pub mod report;
pub mod serve;
pub mod speech;
