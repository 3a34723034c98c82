//! `WhisperPool`: a fixed set of whisper.cpp decoders shared by every room of a runtime.
//!
//! Not an actor: decoding is CPU-bound work that must stay off the async executor, so
//! the pool owns plain OS threads, one per decoder. Each thread holds its own
//! [`WhisperSession`] over one shared [`WhisperEngine`] (the weights are loaded once) and
//! runs whisper.cpp with `threads_per_decoder` threads (default 1: on a small, busy
//! machine ggml's spinning thread pool loses more than it gains; scale by decoders).
//!
//! Fairness: jobs wait in one queue per room and decoders serve the rooms round-robin,
//! so a room that talks a lot cannot starve a quiet one.
//!
//! Overload: queued audio is bounded per room and in total. When a new utterance does
//! not fit, the oldest queued utterances are dropped (their submitters get
//! [`PoolError::Dropped`]) so that what is transcribed stays close to live; memory never
//! grows without bound. Drops are counted in `huddle_transcription_dropped_seconds_total`
//! and the transcriber turns them into a `transcription_degraded` room event.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use huddle_models::whisper::{EngineError, Segment, TranscribeOptions, WhisperEngine, WhisperSession};
use tokio::sync::oneshot;
use tracing::{debug, error, warn};

/// Milliseconds of 16 kHz audio in `samples`.
fn audio_ms(samples: usize) -> u64 {
    samples as u64 * 1000 / 16_000
}

/// Sizing of a [`WhisperPool`].
#[derive(Debug, Clone, PartialEq)]
pub struct WhisperPoolConfig {
    /// Parallel decoders (OS threads, each with its own whisper state).
    pub decoders: usize,
    /// whisper.cpp threads per decoder.
    pub threads_per_decoder: u32,
    /// Audio one room may have waiting; older utterances are dropped beyond it.
    pub max_queued_ms_per_room: u64,
    /// Audio all rooms together may have waiting.
    pub max_queued_ms_total: u64,
    /// Language code, or `None` for the model's default (see [`TranscribeOptions`]).
    pub language: Option<String>,
}

impl Default for WhisperPoolConfig {
    fn default() -> Self {
        WhisperPoolConfig {
            decoders: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            threads_per_decoder: 1,
            max_queued_ms_per_room: 30_000,
            max_queued_ms_total: 120_000,
            language: None,
        }
    }
}

/// Why a job produced no transcript.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PoolError {
    #[error("transcription fell behind: {audio_ms} ms of queued audio were dropped")]
    Dropped { audio_ms: u64 },
    #[error("transcription failed: {0}")]
    Engine(String),
    #[error("the speech pool is shut down")]
    ShutDown,
}

/// A decoded utterance and where its time went.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub segments: Vec<Segment>,
    /// Time spent waiting for a decoder.
    pub queued: Duration,
    /// Time spent decoding.
    pub decode: Duration,
}

/// Counters of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    pub decoders: usize,
    pub busy: usize,
    pub queued_jobs: usize,
    pub queued_ms: u64,
    pub decoded_jobs: u64,
    pub dropped_jobs: u64,
    pub dropped_ms: u64,
}

struct Job {
    samples: Vec<f32>,
    enqueued: Instant,
    reply: oneshot::Sender<Result<Decoded, PoolError>>,
}

#[derive(Default)]
struct Queue {
    rooms: HashMap<String, VecDeque<Job>>,
    /// Rooms with waiting jobs, in serving order.
    order: VecDeque<String>,
    room_ms: HashMap<String, u64>,
    total_ms: u64,
    total_jobs: usize,
}

impl Queue {
    fn push(&mut self, room: &str, job: Job) {
        let ms = audio_ms(job.samples.len());
        let jobs = self.rooms.entry(room.to_string()).or_default();
        if jobs.is_empty() {
            self.order.push_back(room.to_string());
        }
        jobs.push_back(job);
        *self.room_ms.entry(room.to_string()).or_default() += ms;
        self.total_ms += ms;
        self.total_jobs += 1;
    }

    /// The oldest job of the room at the head of the rotation; the room goes to the back.
    fn pop_fair(&mut self) -> Option<Job> {
        let room = self.order.pop_front()?;
        let job = self.pop_oldest(&room)?;
        if self.rooms.get(&room).is_some_and(|q| !q.is_empty()) {
            self.order.push_back(room);
        }
        Some(job)
    }

    fn pop_oldest(&mut self, room: &str) -> Option<Job> {
        let jobs = self.rooms.get_mut(room)?;
        let job = jobs.pop_front()?;
        if jobs.is_empty() {
            self.rooms.remove(room);
            self.order.retain(|r| r != room);
        }
        let ms = audio_ms(job.samples.len());
        if let Some(room_ms) = self.room_ms.get_mut(room) {
            *room_ms = room_ms.saturating_sub(ms);
            if *room_ms == 0 && !self.rooms.contains_key(room) {
                self.room_ms.remove(room);
            }
        }
        self.total_ms = self.total_ms.saturating_sub(ms);
        self.total_jobs -= 1;
        Some(job)
    }

    fn room_ms(&self, room: &str) -> u64 {
        self.room_ms.get(room).copied().unwrap_or(0)
    }

    /// The room holding the most queued audio.
    fn heaviest_room(&self) -> Option<String> {
        self.room_ms
            .iter()
            .filter(|(r, _)| self.rooms.contains_key(*r))
            .max_by_key(|(_, ms)| **ms)
            .map(|(r, _)| r.clone())
    }
}

struct Shared {
    engine: Arc<WhisperEngine>,
    options: TranscribeOptions,
    config: WhisperPoolConfig,
    queue: Mutex<Queue>,
    ready: Condvar,
    shutdown: AtomicBool,
    busy: AtomicUsize,
    decoded: AtomicU64,
    dropped_jobs: AtomicU64,
    dropped_ms: AtomicU64,
}

impl Shared {
    fn drop_job(&self, job: Job) {
        let ms = audio_ms(job.samples.len());
        self.dropped_jobs.fetch_add(1, Ordering::Relaxed);
        self.dropped_ms.fetch_add(ms, Ordering::Relaxed);
        metrics::counter!("huddle_transcription_dropped_seconds_total").increment(ms.div_ceil(1000));
        let _ = job.reply.send(Err(PoolError::Dropped { audio_ms: ms }));
    }

    fn publish_queue(&self, queue: &Queue) {
        metrics::gauge!("huddle_transcription_queued_seconds").set(queue.total_ms as f64 / 1000.0);
    }
}

/// A shared set of whisper decoders; cheap to clone. Dropping the last clone stops the
/// decoder threads once they finish the utterance in hand; queued jobs get
/// [`PoolError::ShutDown`].
#[derive(Clone)]
pub struct WhisperPool {
    shared: Arc<Shared>,
    _guard: Arc<ShutdownGuard>,
}

struct ShutdownGuard(Arc<Shared>);

impl Drop for ShutdownGuard {
    fn drop(&mut self) {
        self.0.shutdown.store(true, Ordering::SeqCst);
        let jobs: Vec<Job> = {
            let mut queue = self.0.queue.lock().unwrap_or_else(|p| p.into_inner());
            let rooms: Vec<String> = queue.rooms.keys().cloned().collect();
            rooms.iter().flat_map(|r| std::iter::from_fn(|| queue.pop_oldest(r)).collect::<Vec<_>>()).collect()
        };
        for job in jobs {
            let _ = job.reply.send(Err(PoolError::ShutDown));
        }
        self.0.ready.notify_all();
    }
}

impl std::fmt::Debug for WhisperPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperPool").field("config", &self.shared.config).finish_non_exhaustive()
    }
}

impl WhisperPool {
    /// Starts `config.decoders` decoder threads over `engine`.
    pub fn start(engine: Arc<WhisperEngine>, config: WhisperPoolConfig) -> Result<WhisperPool, EngineError> {
        let decoders = config.decoders.max(1);
        let options = TranscribeOptions {
            threads: config.threads_per_decoder.max(1),
            language: config.language.clone(),
            ..TranscribeOptions::default()
        };
        let sessions = (0..decoders).map(|_| engine.new_session()).collect::<Result<Vec<_>, _>>()?;
        let shared = Arc::new(Shared {
            engine,
            options,
            config: WhisperPoolConfig { decoders, ..config },
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            shutdown: AtomicBool::new(false),
            busy: AtomicUsize::new(0),
            decoded: AtomicU64::new(0),
            dropped_jobs: AtomicU64::new(0),
            dropped_ms: AtomicU64::new(0),
        });
        for (i, session) in sessions.into_iter().enumerate() {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("huddle-whisper-{i}"))
                .spawn(move || decoder_loop(&shared, session))
                .map_err(|e| EngineError::InvalidAudio(format!("cannot start decoder thread: {e}")))?;
        }
        debug!(decoders, threads = shared.options.threads, "whisper pool started");
        Ok(WhisperPool { _guard: Arc::new(ShutdownGuard(shared.clone())), shared })
    }

    /// The engine the decoders share.
    pub fn engine(&self) -> &Arc<WhisperEngine> {
        &self.shared.engine
    }

    pub fn config(&self) -> &WhisperPoolConfig {
        &self.shared.config
    }

    /// Queues one utterance (16 kHz mono) of `room` for decoding. The receiver gets the
    /// segments, or [`PoolError::Dropped`] if the pool fell behind and dropped it.
    pub fn submit(&self, room: &str, samples: Vec<f32>) -> oneshot::Receiver<Result<Decoded, PoolError>> {
        let (reply, rx) = oneshot::channel();
        if self.shared.shutdown.load(Ordering::SeqCst) {
            let _ = reply.send(Err(PoolError::ShutDown));
            return rx;
        }
        let ms = audio_ms(samples.len());
        let config = &self.shared.config;
        let mut dropped = Vec::new();
        {
            let mut queue = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            // room budget first, then the total; the new utterance is the freshest and is
            // kept, older ones go
            while queue.room_ms(room) > 0 && queue.room_ms(room) + ms > config.max_queued_ms_per_room {
                match queue.pop_oldest(room) {
                    Some(job) => dropped.push(job),
                    None => break,
                }
            }
            while queue.total_ms > 0 && queue.total_ms + ms > config.max_queued_ms_total {
                let Some(heaviest) = queue.heaviest_room() else { break };
                match queue.pop_oldest(&heaviest) {
                    Some(job) => dropped.push(job),
                    None => break,
                }
            }
            queue.push(room, Job { samples, enqueued: Instant::now(), reply });
            self.shared.publish_queue(&queue);
        }
        if !dropped.is_empty() {
            warn!(room_id = %room, jobs = dropped.len(), "transcription behind: dropping queued utterances");
        }
        for job in dropped {
            self.shared.drop_job(job);
        }
        self.shared.ready.notify_one();
        rx
    }

    pub fn stats(&self) -> PoolStats {
        let queue = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        PoolStats {
            decoders: self.shared.config.decoders,
            busy: self.shared.busy.load(Ordering::Relaxed),
            queued_jobs: queue.total_jobs,
            queued_ms: queue.total_ms,
            decoded_jobs: self.shared.decoded.load(Ordering::Relaxed),
            dropped_jobs: self.shared.dropped_jobs.load(Ordering::Relaxed),
            dropped_ms: self.shared.dropped_ms.load(Ordering::Relaxed),
        }
    }
}

fn decoder_loop(shared: &Shared, mut session: WhisperSession) {
    loop {
        let job = {
            let mut queue = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if shared.shutdown.load(Ordering::SeqCst) {
                    return;
                }
                if let Some(job) = queue.pop_fair() {
                    shared.publish_queue(&queue);
                    break job;
                }
                queue = shared.ready.wait(queue).unwrap_or_else(|p| p.into_inner());
            }
        };
        if job.reply.is_closed() {
            continue; // the submitter is gone: nobody wants this utterance any more
        }
        shared.busy.fetch_add(1, Ordering::Relaxed);
        let queued = job.enqueued.elapsed();
        let started = Instant::now();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            shared.engine.transcribe_with(&mut session, &job.samples, &shared.options)
        }));
        let decode = started.elapsed();
        shared.busy.fetch_sub(1, Ordering::Relaxed);
        shared.decoded.fetch_add(1, Ordering::Relaxed);
        metrics::histogram!("huddle_transcription_decode_seconds").record(decode.as_secs_f64());
        metrics::histogram!("huddle_transcription_queue_wait_seconds").record(queued.as_secs_f64());
        let reply = match result {
            Ok(Ok(segments)) => Ok(Decoded { segments, queued, decode }),
            Ok(Err(e)) => {
                warn!(error = %e, "utterance could not be transcribed");
                Err(PoolError::Engine(e.to_string()))
            }
            Err(_) => {
                error!("whisper decoder panicked; starting a fresh session");
                match shared.engine.new_session() {
                    Ok(fresh) => session = fresh,
                    Err(e) => error!(error = %e, "cannot make a fresh whisper session"),
                }
                Err(PoolError::Engine("decoder panicked".into()))
            }
        };
        let _ = job.reply.send(reply);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(samples: usize) -> (Job, oneshot::Receiver<Result<Decoded, PoolError>>) {
        let (reply, rx) = oneshot::channel();
        (Job { samples: vec![0.0; samples], enqueued: Instant::now(), reply }, rx)
    }

    #[test]
    fn rooms_are_served_round_robin() {
        let mut q = Queue::default();
        for (room, n) in [("a", 3), ("b", 1), ("c", 2)] {
            for i in 0..n {
                q.push(room, job(16_000 * (i + 1)).0);
            }
        }
        assert_eq!(q.total_jobs, 6);
        assert_eq!(q.total_ms, 3 * 1000 + 3000 + 1000 + 1000 + 2000);
        let order: Vec<u64> = std::iter::from_fn(|| q.pop_fair()).map(|j| audio_ms(j.samples.len())).collect();
        // a1 b1 c1 a2 c2 a3
        assert_eq!(order, [1000, 1000, 1000, 2000, 2000, 3000]);
        assert_eq!((q.total_jobs, q.total_ms), (0, 0));
        assert!(q.order.is_empty() && q.rooms.is_empty() && q.room_ms.is_empty());
    }

    #[test]
    fn heaviest_room_is_the_one_with_most_audio() {
        let mut q = Queue::default();
        q.push("a", job(16_000).0);
        q.push("b", job(16_000 * 5).0);
        q.push("a", job(16_000).0);
        assert_eq!(q.heaviest_room().as_deref(), Some("b"));
        q.pop_oldest("b");
        assert_eq!(q.heaviest_room().as_deref(), Some("a"));
    }
}
