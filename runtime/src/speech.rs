//! The runtime's speech service: the whisper model and its shared decoder pool, loaded
//! on first use (and fetched then, if it is not installed and `speech.fetch_missing`),
//! and the audio streams that feed room transcribers.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use huddle_actors::room::{RoomMsg, SegmentListener};
use huddle_actors::transcriber::{StreamSummary, TranscriberMsg};
use huddle_actors::whisper_pool::{WhisperPool, WhisperPoolConfig};
use huddle_models::audio::resample::Resampler;
use huddle_models::audio::vad::VadConfig;
use huddle_models::fetch::{self, WhisperModel};
use huddle_models::ggml::Quant;
use huddle_models::whisper::WhisperEngine;
use ractor::ActorRef;
use tokio::sync::OnceCell;
use tracing::info;

use crate::api::Api;
use crate::config::SpeechConfig;
use crate::error::ApiError;

/// Loads the model once and hands out the pool.
pub(crate) struct Speech {
    config: SpeechConfig,
    pool: OnceCell<WhisperPool>,
    next_stream: AtomicU64,
    listener: Option<Arc<dyn SegmentListener>>,
}

impl Speech {
    pub fn new(config: SpeechConfig, listener: Option<Arc<dyn SegmentListener>>) -> Self {
        Speech { config, pool: OnceCell::new(), next_stream: AtomicU64::new(1), listener }
    }

    /// Told about every recorded transcript segment.
    pub fn listener(&self) -> Option<Arc<dyn SegmentListener>> {
        self.listener.clone()
    }

    pub fn vad(&self) -> VadConfig {
        VadConfig {
            min_silence_ms: self.config.vad_min_silence_ms,
            max_utterance_ms: self.config.max_utterance_ms,
            ..VadConfig::default()
        }
    }

    pub fn next_stream_id(&self) -> u64 {
        self.next_stream.fetch_add(1, Ordering::Relaxed)
    }

    /// The pool, loading the model (and fetching it, if allowed) the first time.
    pub async fn pool(&self) -> Result<WhisperPool, ApiError> {
        if !self.config.enabled {
            return Err(ApiError::FailedPrecondition(
                "speech is disabled on this node (speech.enabled = false)".into(),
            ));
        }
        let config = self.config.clone();
        self.pool
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || load_pool(&config))
                    .await
                    .map_err(|e| ApiError::Internal(format!("model loading panicked: {e}")))?
            })
            .await
            .cloned()
    }
}

fn load_pool(config: &SpeechConfig) -> Result<WhisperPool, ApiError> {
    let unavailable = |m: String| ApiError::Unavailable(format!("speech to text unavailable: {m}"));
    let path: PathBuf = match &config.whisper_model {
        Some(p) => p.clone(),
        None => {
            let model: WhisperModel = config.model.parse().map_err(unavailable)?;
            let quant: Quant = config.quantize.parse().map_err(unavailable)?;
            let dir = match &config.models_dir {
                Some(d) => d.clone(),
                None => fetch::default_models_dir().map_err(|e| unavailable(e.to_string()))?,
            };
            let path = fetch::model_path(&dir, model, quant);
            if !path.exists() {
                if !config.fetch_missing {
                    return Err(unavailable(format!(
                        "model file not found at {}: run `huddle models fetch --whisper {model} --quantize {quant}`",
                        path.display()
                    )));
                }
                info!(%model, %quant, dir = %dir.display(), "whisper model not installed; fetching it");
                fetch::fetch_whisper(model, quant, &dir, &|p| tracing::info!(progress = ?p, "fetching whisper model"))
                    .map_err(|e| unavailable(e.to_string()))?;
            }
            path
        }
    };
    let engine = WhisperEngine::load(&path).map_err(|e| unavailable(e.to_string()))?;
    let defaults = WhisperPoolConfig::default();
    let pool_config = WhisperPoolConfig {
        decoders: if config.decoders == 0 { defaults.decoders } else { config.decoders },
        threads_per_decoder: config.threads_per_decoder,
        max_queued_ms_per_room: config.max_queued_audio_ms_per_room,
        max_queued_ms_total: config.max_queued_audio_ms_total,
        language: config.language.clone(),
    };
    let pool = WhisperPool::start(Arc::new(engine), pool_config).map_err(|e| unavailable(e.to_string()))?;
    info!(model = %path.display(), decoders = pool.config().decoders, "speech to text ready");
    Ok(pool)
}

/// Largest audio chunk accepted in one push: 10 s of 48 kHz PCM16.
pub const MAX_AUDIO_CHUNK_BYTES: usize = 48_000 * 2 * 10;

/// One participant's audio going into a room: PCM in, transcript segments out (into the
/// room). Made by [`Api::open_audio`]; [`AudioStream::finish`] waits for the last words.
pub struct AudioStream {
    api: Api,
    room_id: String,
    participant_id: String,
    stream_id: u64,
    resampler: Resampler,
    transcriber: ActorRef<TranscriberMsg>,
    room: ActorRef<RoomMsg>,
    pool: WhisperPool,
    vad: VadConfig,
    received_samples: u64,
    sample_rate: u32,
    finished: bool,
}

impl Drop for AudioStream {
    /// A stream dropped without [`AudioStream::finish`] (a client that hung up, a
    /// request that failed) is still closed, so the room can go idle again.
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.transcriber.cast(TranscriberMsg::Abandon { stream_id: self.stream_id });
        }
    }
}

impl AudioStream {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        api: Api,
        room_id: String,
        participant_id: String,
        stream_id: u64,
        resampler: Resampler,
        sample_rate: u32,
        (room, transcriber, pool, vad): (ActorRef<RoomMsg>, ActorRef<TranscriberMsg>, WhisperPool, VadConfig),
    ) -> Self {
        AudioStream {
            api,
            room_id,
            participant_id,
            stream_id,
            resampler,
            transcriber,
            room,
            pool,
            vad,
            received_samples: 0,
            sample_rate,
            finished: false,
        }
    }

    pub fn room_id(&self) -> &str {
        &self.room_id
    }

    pub fn participant_id(&self) -> &str {
        &self.participant_id
    }

    /// Audio received so far, in milliseconds.
    pub fn received_ms(&self) -> u64 {
        self.received_samples * 1000 / u64::from(self.sample_rate)
    }

    /// Little-endian signed 16-bit mono PCM at the stream's sample rate.
    pub async fn push_pcm16(&mut self, bytes: &[u8]) -> Result<(), ApiError> {
        if bytes.len() > MAX_AUDIO_CHUNK_BYTES {
            return Err(ApiError::invalid(
                "pcm16",
                format!(
                    "chunk of {} bytes is over the limit of {MAX_AUDIO_CHUNK_BYTES}: send smaller chunks",
                    bytes.len()
                ),
            ));
        }
        let samples =
            huddle_models::audio::pcm16le_to_f32(bytes).map_err(|e| ApiError::invalid("pcm16", e.to_string()))?;
        self.push(&samples).await
    }

    /// Mono samples in -1..=1 at the stream's sample rate.
    pub async fn push(&mut self, samples: &[f32]) -> Result<(), ApiError> {
        if let Some(i) = samples.iter().position(|s| !s.is_finite()) {
            return Err(ApiError::invalid("samples", format!("sample {i} is not a finite number")));
        }
        self.received_samples += samples.len() as u64;
        let mut out = Vec::with_capacity(samples.len() * 16_000 / self.sample_rate as usize + 16);
        self.resampler.process(samples, &mut out);
        self.send(out).await
    }

    /// Casts resampled audio to the transcriber; if it restarted, reopens the stream on
    /// its new incarnation.
    async fn send(&mut self, samples: Vec<f32>) -> Result<(), ApiError> {
        if samples.is_empty() {
            return Ok(());
        }
        let samples = match self.transcriber.cast(TranscriberMsg::Audio { stream_id: self.stream_id, samples }) {
            Ok(()) => return Ok(()),
            Err(ractor::MessagingErr::SendErr(TranscriberMsg::Audio { samples, .. })) => samples,
            Err(e) => return Err(ApiError::Unavailable(format!("transcriber unavailable: {e}"))),
        };
        self.reopen().await?;
        self.transcriber
            .cast(TranscriberMsg::Audio { stream_id: self.stream_id, samples })
            .map_err(|e| ApiError::Unavailable(format!("transcriber unavailable: {e}")))
    }

    async fn reopen(&mut self) -> Result<(), ApiError> {
        for _ in 0..50 {
            let (pool, vad) = (self.pool.clone(), self.vad.clone());
            let listener = self.api.runtime().speech().listener();
            let got = ractor::call_t!(self.room, |reply| RoomMsg::Transcriber { pool, vad, listener, reply }, 5_000);
            match got {
                Ok(Ok(t)) if t.get_id() != self.transcriber.get_id() => {
                    t.cast(TranscriberMsg::Open {
                        stream_id: self.stream_id,
                        participant_id: self.participant_id.clone(),
                    })
                    .map_err(|e| ApiError::Unavailable(format!("transcriber unavailable: {e}")))?;
                    self.transcriber = t;
                    return Ok(());
                }
                Ok(Ok(_)) | Ok(Err(huddle_actors::RoomError::Restarting { .. })) => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await
                }
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => {
                    // the room actor itself is gone (ended, passivated or restarting)
                    let (room, transcriber) =
                        self.api.attach_transcriber(&self.room_id, self.pool.clone(), self.vad.clone()).await?;
                    self.room = room;
                    if transcriber.get_id() != self.transcriber.get_id() {
                        transcriber
                            .cast(TranscriberMsg::Open {
                                stream_id: self.stream_id,
                                participant_id: self.participant_id.clone(),
                            })
                            .map_err(|e| ApiError::Unavailable(format!("transcriber unavailable: {e}")))?;
                        self.transcriber = transcriber;
                        return Ok(());
                    }
                }
            }
        }
        Err(ApiError::Unavailable("transcriber keeps failing: retry the stream later".into()))
    }

    /// Ends the stream: the last utterance is flushed, and this returns once every
    /// utterance of the stream has been transcribed and recorded in the room.
    pub async fn finish(mut self) -> Result<StreamSummary, ApiError> {
        let mut tail = Vec::new();
        self.resampler.flush(&mut tail);
        self.send(tail).await?;
        let id = self.stream_id;
        self.finished = true;
        // generous: a long backlog may still be decoding
        let timeout = self.api.runtime().request_timeout().max(std::time::Duration::from_secs(60));
        match self.transcriber.call(|reply| TranscriberMsg::Close { stream_id: id, reply }, Some(timeout)).await {
            Ok(ractor::rpc::CallResult::Success(s)) => Ok(s),
            Ok(ractor::rpc::CallResult::Timeout) => {
                Err(ApiError::DeadlineExceeded("transcription did not finish in time".into()))
            }
            _ => Err(ApiError::Unavailable("the transcriber restarted before the stream finished".into())),
        }
    }
}
