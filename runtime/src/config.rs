//! The configuration tree: built-in defaults, then a TOML file
//! (`huddle.toml`), then environment variables `HUDDLE__SECTION__KEY`
//! (for example `HUDDLE__SERVER__LISTEN=0.0.0.0:50051`). The binary applies
//! its command-line flags last.

use std::net::SocketAddr;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use huddle_core::redact;
use serde::{Deserialize, Serialize};

/// Errors loading or validating configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file not found at {0}")]
    FileNotFound(String),
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("cannot read configuration: {0}")]
    Load(#[from] Box<figment::Error>),
}

/// The whole configuration of a huddle node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub rooms: RoomsConfig,
    pub speech: SpeechConfig,
    pub knowledge: KnowledgeConfig,
    pub notify: NotifyConfig,
    pub livekit: LiveKitConfig,
    pub log: LogConfig,
}

/// LiveKit (`HUDDLE__LIVEKIT__URL`, `__API_KEY`, `__API_SECRET`): rooms bound
/// to LiveKit rooms, participant tokens and LiveKit's webhooks. Unset URL or
/// keys: LiveKit is off.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveKitConfig {
    /// The LiveKit server as clients reach it: `wss://...` (or `ws://`, `https://`, `http://`).
    pub url: Option<String>,
    pub api_key: Option<String>,
    pub api_secret: Option<String>,
    /// The identity the agent joins rooms with.
    pub agent_identity: String,
    /// Lifetime of participant tokens from JoinRoom, in seconds (6 h).
    pub token_ttl_secs: u64,
    /// Register with the LiveKit server as an agent worker (`/agent`) and take jobs.
    pub worker: bool,
    /// The worker's agent name (explicit dispatch targets it).
    pub agent_name: String,
    /// Most jobs this node runs at once; availability answers never exceed it.
    pub max_jobs: usize,
    /// The entity that owns rooms created for jobs whose LiveKit room no room
    /// is bound to; unset: such jobs fail.
    pub worker_entity: Option<String>,
    /// Publish each final transcript segment into the LiveKit room as a
    /// `Transcription` packet, which LiveKit clients show as captions.
    pub captions: bool,
    /// The data topic suggestions are published on as JSON (reliable); empty:
    /// suggestions are not published.
    pub suggestion_topic: String,
    /// A PEM file of CA certificates trusted for `wss://` besides the Mozilla
    /// roots (a LiveKit server with a private CA).
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for LiveKitConfig {
    fn default() -> Self {
        LiveKitConfig {
            url: None,
            api_key: None,
            api_secret: None,
            agent_identity: "huddle-agent".into(),
            token_ttl_secs: 6 * 3600,
            worker: false,
            agent_name: "huddle".into(),
            max_jobs: 4,
            worker_entity: None,
            captions: true,
            suggestion_topic: "huddle.suggestion".into(),
            ca_file: None,
        }
    }
}

impl LiveKitConfig {
    /// The TLS configuration `ca_file` asks for; `None` without one (the Mozilla roots).
    pub fn tls(&self) -> Result<Option<std::sync::Arc<rustls::ClientConfig>>, String> {
        let Some(path) = &self.ca_file else { return Ok(None) };
        let pem = std::fs::read(path).map_err(|e| format!("livekit.ca_file {}: {e}", path.display()))?;
        huddle_actors::livekit::tls_trusting(&pem)
            .map(Some)
            .map_err(|e| format!("livekit.ca_file {}: {e}", path.display()))
    }

    /// Whether URL, key and secret are all set.
    pub fn is_configured(&self) -> bool {
        self.url.is_some() && self.api_key.is_some() && self.api_secret.is_some()
    }
}

/// Notifications: the outbox, retries and the delivery channels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// Whether this node delivers notifications (sending is accepted either way).
    pub enabled: bool,
    /// This node's name in outbox claims and on the ingest jobs it runs. Unset: the
    /// host name. Nodes sharing a database need different names; a restarted node
    /// takes back its own claims and fails its own interrupted ingest jobs.
    pub node_id: Option<String>,
    /// Delays before each attempt, comma-separated (`0s,5s,5m,30m,2h,5h,10h,10h`:
    /// 8 attempts). Each gets up to 20% jitter; a `Retry-After` can only lengthen it.
    pub retry_schedule: String,
    /// Allow webhooks to loopback, private and link-local addresses. Off, such
    /// targets are refused (SSRF guard).
    pub allow_private_targets: bool,
    /// Per-attempt timeout, in milliseconds.
    pub timeout_ms: u64,
    /// Deliveries in flight at most on this node.
    pub max_in_flight: usize,
    /// Deliveries in flight at most to one webhook endpoint on this node: a slow
    /// endpoint holds this many delivery slots, never all of them.
    pub max_in_flight_per_endpoint: usize,
    /// Notifications claimed per query at most.
    pub claim_batch: u32,
    /// How often the outbox looks for due notifications without being woken, in milliseconds.
    pub poll_interval_ms: u64,
    /// SQLite only (it has one writer): how long the outbox holds each of its own
    /// writes (claims, delivery records) back while writes that requests wait on
    /// (sends, room changes, transcripts' knowledge items) are queued or running, in
    /// milliseconds, before it writes a quarter batch anyway; 0 never. Those writes
    /// then rarely queue behind delivery bookkeeping, and delivery goes on meanwhile.
    pub yield_to_requests_ms: u64,
    /// After a secret rotation, how long the old secret still signs, in milliseconds.
    pub secret_overlap_ms: u64,
    /// Recipients per send request at most.
    pub max_recipients: usize,
    /// Largest `data` accepted, in bytes of JSON.
    pub max_data_bytes: usize,
    /// Email over SMTP; email is off while `smtp.host` is unset.
    pub smtp: SmtpConfig,
    /// SMS through Twilio; SMS is off while `twilio.account_sid` is unset.
    pub twilio: TwilioConfig,
    /// Systems allowed to send webhooks to `POST /webhooks/inbound/{name}`.
    pub inbound: Vec<InboundConfig>,
    /// Accept the chat WebSocket's key as `?access_token=KEY` (it then lands in
    /// proxy and access logs). Off: the `authorization` header or the first frame.
    pub chat_access_token: bool,
    /// Chat WebSockets open at once per API key at most.
    pub chat_max_sockets_per_key: usize,
    /// Extra or replacement templates: `NAME.subject`, `NAME.txt`, `NAME.html`, `NAME.sms`.
    pub templates_dir: Option<std::path::PathBuf>,
    /// Which room events become notifications.
    pub rooms: RoomNotifyConfig,
}

/// Room lifecycle routing: each switch turns a kind of room event into
/// notifications, to the participants' email addresses and phone numbers (by the
/// channels this node has configured) or to the entity's webhook endpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomNotifyConfig {
    /// A participant added with an email or phone gets `room_invitation` (email with
    /// an iCalendar REQUEST, or SMS).
    pub invitations: bool,
    /// A cancelled room's participants get `room_cancelled` (email with an
    /// iCalendar CANCEL, or SMS).
    pub cancellations: bool,
    /// An ended room's participants with email get `room_summary`.
    pub summaries: bool,
    /// Every room event goes to the entity's endpoints that take `room.<event>`
    /// (`room.created`, `room.participant_joined`, ...).
    pub webhooks: bool,
    /// After a restart (or a crash of the router), events committed but not yet
    /// routed are routed from the rooms' event logs, if they are at most this old
    /// (default one hour); older ones are passed over with a warning.
    pub replay_window_ms: u64,
}

impl Default for RoomNotifyConfig {
    fn default() -> Self {
        RoomNotifyConfig {
            invitations: false,
            cancellations: false,
            summaries: false,
            webhooks: false,
            replay_window_ms: 3_600_000,
        }
    }
}

/// One sender of inbound webhooks (`[[notify.inbound]]` in huddle.toml).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundConfig {
    /// The path segment: `POST /webhooks/inbound/{name}`.
    pub name: String,
    /// `standard` (Standard Webhooks), `sha256` or `sha512` (HMAC header).
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// `whsec_...` for `standard`; the shared secret as given for HMAC.
    pub secret: String,
    /// The HMAC header (schemes `sha256` / `sha512`).
    #[serde(default = "default_signature_header")]
    pub header: String,
    /// A header with the send time in unix seconds, checked against the tolerance
    /// (HMAC schemes; Standard Webhooks always carry one).
    #[serde(default)]
    pub timestamp_header: Option<String>,
    #[serde(default = "default_tolerance")]
    pub tolerance_secs: u64,
}

fn default_scheme() -> String {
    "standard".into()
}

fn default_signature_header() -> String {
    "X-Webhook-Signature".into()
}

fn default_tolerance() -> u64 {
    300
}

/// Twilio's Messages API (`HUDDLE__NOTIFY__TWILIO__ACCOUNT_SID`, ...).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TwilioConfig {
    pub account_sid: Option<String>,
    pub auth_token: Option<String>,
    /// The sending number (E.164) or messaging service SID.
    pub from: Option<String>,
    /// Twilio's API, or a compatible server.
    pub base_url: String,
    /// This node's `POST /webhooks/twilio/status` as Twilio reaches it (public URL);
    /// unset: no delivery reports are asked for.
    pub status_callback_url: Option<String>,
}

impl Default for TwilioConfig {
    fn default() -> Self {
        TwilioConfig {
            account_sid: None,
            auth_token: None,
            from: None,
            base_url: "https://api.twilio.com".into(),
            status_callback_url: None,
        }
    }
}

/// The SMTP server email goes through (`HUDDLE__NOTIFY__SMTP__HOST`, ...).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: Option<String>,
    pub port: u16,
    /// `none`, `starttls` (required) or `tls` (from the first byte).
    pub tls: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The From address, optionally with a name: `huddle <noreply@example.com>`.
    pub from: String,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            host: None,
            port: 587,
            tls: "starttls".into(),
            username: None,
            password: None,
            from: "huddle <noreply@localhost>".into(),
        }
    }
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            enabled: true,
            node_id: None,
            retry_schedule: "0s,5s,5m,30m,2h,5h,10h,10h".into(),
            allow_private_targets: false,
            timeout_ms: 30_000,
            max_in_flight: 256,
            max_in_flight_per_endpoint: 16,
            claim_batch: 64,
            poll_interval_ms: 250,
            yield_to_requests_ms: 1,
            secret_overlap_ms: 24 * 3600 * 1000,
            max_recipients: 1_000,
            max_data_bytes: 256 * 1024,
            smtp: SmtpConfig::default(),
            twilio: TwilioConfig::default(),
            inbound: Vec::new(),
            chat_access_token: false,
            chat_max_sockets_per_key: 16,
            templates_dir: None,
            rooms: RoomNotifyConfig::default(),
        }
    }
}

/// The knowledge base: embeddings, chunking, the index and live suggestions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KnowledgeConfig {
    /// Whether documents can be ingested and searched, and suggestions made.
    pub enabled: bool,
    /// Where `huddle models fetch` installs models (shared with speech). Unset:
    /// `$HUDDLE_MODELS_DIR`, else `~/.cache/huddle/models`.
    pub models_dir: Option<std::path::PathBuf>,
    /// Download the embedding model on first use when it is not installed.
    pub fetch_missing: bool,
    /// Where each entity's index snapshot is kept. Unset: next to a SQLite database
    /// (`huddle.db.index/`), in memory only for Postgres (rebuilt from storage at start).
    pub index_dir: Option<std::path::PathBuf>,
    /// Tokens per chunk. The model reads at most 256, so larger chunks would be partly
    /// invisible to search.
    pub chunk_tokens: usize,
    /// Tokens shared by consecutive chunks.
    pub chunk_overlap: usize,
    /// Largest document accepted, in bytes.
    pub max_document_bytes: usize,
    /// Texts per embedding batch at most.
    pub embed_max_batch: usize,
    /// How long an embedding request waits for others to batch with, in milliseconds.
    pub embed_max_wait_ms: u64,
    /// Cosine similarity a knowledge chunk needs to be suggested. With all-MiniLM-L6-v2,
    /// related sentence/paragraph pairs score about 0.5-0.75 and unrelated ones under 0.15.
    pub suggestion_min_score: f32,
    /// Suggestions made per transcript segment at most (a question gets one answer).
    pub suggestions_per_segment: usize,
    /// The same chunk is not suggested again in a room within this time.
    pub suggestion_cooldown_ms: u64,
    /// An ingest job not finished this long after it was accepted (queueing included)
    /// is FAILED with the reason, in milliseconds (5 min).
    pub job_timeout_ms: u64,
    /// Ingest jobs this node runs at once; more wait their turn.
    pub max_jobs_per_node: usize,
    /// Ingest jobs of one entity this node runs at once; more wait their turn.
    pub max_jobs_per_entity: usize,
    /// Accepted ingest jobs waiting for their turn on this node at most (each holds its
    /// upload in memory); beyond, uploads are refused (RESOURCE_EXHAUSTED) until jobs finish.
    pub max_queued_jobs: usize,
    /// Bytes a PDF's streams may inflate to, all together; a bigger PDF is FAILED (64 MiB).
    pub pdf_max_decompressed_bytes: usize,
    /// How long reading one PDF's text may take, in milliseconds (30 s).
    pub pdf_max_extract_ms: u64,
}

impl Default for KnowledgeConfig {
    fn default() -> Self {
        KnowledgeConfig {
            enabled: true,
            models_dir: None,
            fetch_missing: true,
            index_dir: None,
            chunk_tokens: 256,
            chunk_overlap: 64,
            max_document_bytes: 32 * 1024 * 1024,
            embed_max_batch: 32,
            embed_max_wait_ms: 2,
            suggestion_min_score: 0.4,
            suggestions_per_segment: 1,
            suggestion_cooldown_ms: 300_000,
            job_timeout_ms: 300_000,
            max_jobs_per_node: 2,
            max_jobs_per_entity: 1,
            max_queued_jobs: 16,
            pdf_max_decompressed_bytes: 64 * 1024 * 1024,
            pdf_max_extract_ms: 30_000,
        }
    }
}

/// Speech to text: the whisper model, the shared decoders and voice-activity detection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpeechConfig {
    /// Whether rooms accept audio at all.
    pub enabled: bool,
    /// A whisper.cpp ggml model file. Unset: the installed `model` in `models_dir`.
    pub whisper_model: Option<std::path::PathBuf>,
    /// The model to use when `whisper_model` is unset: `tiny.en` or `base`.
    pub model: String,
    /// Its quantisation: `q8_0` or `f16`.
    pub quantize: String,
    /// Where `huddle models fetch` installs models. Unset: `$HUDDLE_MODELS_DIR`, else
    /// `~/.cache/huddle/models`.
    pub models_dir: Option<std::path::PathBuf>,
    /// Download and convert the model on first use when it is not installed.
    pub fetch_missing: bool,
    /// Parallel whisper decoders shared by all rooms; 0 means one per CPU core.
    pub decoders: usize,
    /// whisper.cpp threads per decoder. 1 is best on small machines: scale with `decoders`.
    pub threads_per_decoder: u32,
    /// Audio one room may have waiting for a decoder before its oldest utterances are
    /// dropped (and a `transcription_degraded` event recorded), in milliseconds.
    pub max_queued_audio_ms_per_room: u64,
    /// The same bound over all rooms.
    pub max_queued_audio_ms_total: u64,
    /// Spoken language (`en`, `de`, ... or `auto`); unset means the model's default.
    pub language: Option<String>,
    /// Silence that ends an utterance, in milliseconds: the floor of transcript latency.
    pub vad_min_silence_ms: u32,
    /// Longest utterance before a monologue is cut, in milliseconds.
    pub max_utterance_ms: u32,
}

/// Network listeners and the admin key.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// HTTP listen address for `/healthz` and `/metrics`.
    pub http: SocketAddr,
    /// The key that may do everything. When unset, `huddle serve` reads it
    /// from `admin_key_file`, creating that file with a random key the first
    /// time.
    pub admin_key: Option<String>,
    /// Where the generated admin key lives when `admin_key` is unset.
    pub admin_key_file: std::path::PathBuf,
    /// Largest accepted gRPC message, in bytes.
    pub max_message_bytes: usize,
    /// Deadline for one request's work inside the runtime, in milliseconds.
    pub request_timeout_ms: u64,
}

/// Where state is persisted.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (created on first start) or `postgres://...`.
    pub url: String,
}

/// Room actor behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomsConfig {
    /// On shutdown, how long live rooms get to finish in-flight work.
    pub drain_timeout_ms: u64,
    /// A failing room actor is restarted after 0, base, 2*base, ... up to max.
    pub restart_backoff_base_ms: u64,
    pub restart_backoff_max_ms: u64,
    /// Capacity of each room's watcher channel; slower watchers catch up
    /// from the stored event log. The channel is allocated up front (about
    /// 120 bytes a slot), so keep it small.
    pub watch_buffer: usize,
    /// A room actor with no request for between this long and twice this
    /// long is passivated (stopped; it respawns from storage on the next
    /// request). 0 keeps actors alive.
    pub idle_timeout_ms: u64,
}

/// Log output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// A `RUST_LOG`-style filter used when `RUST_LOG` is unset.
    pub filter: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: ([127, 0, 0, 1], 50051).into(),
            http: ([127, 0, 0, 1], 9090).into(),
            admin_key: None,
            admin_key_file: "huddle.admin-key".into(),
            max_message_bytes: 4 * 1024 * 1024,
            request_timeout_ms: 10_000,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { url: "sqlite://huddle.db".into() }
    }
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            drain_timeout_ms: 5_000,
            restart_backoff_base_ms: 100,
            restart_backoff_max_ms: 10_000,
            watch_buffer: 64,
            idle_timeout_ms: 300_000,
        }
    }
}

impl Default for SpeechConfig {
    fn default() -> Self {
        let vad = huddle_models::audio::vad::VadConfig::default();
        SpeechConfig {
            enabled: true,
            whisper_model: None,
            model: "tiny.en".into(),
            quantize: "q8_0".into(),
            models_dir: None,
            fetch_missing: true,
            decoders: 0,
            threads_per_decoder: 1,
            max_queued_audio_ms_per_room: 30_000,
            max_queued_audio_ms_total: 120_000,
            language: None,
            vad_min_silence_ms: vad.min_silence_ms,
            max_utterance_ms: vad.max_utterance_ms,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: "text".into(), filter: "info".into() }
    }
}

impl Config {
    /// Defaults, then `file` if given (it must exist), then `HUDDLE__*`
    /// environment variables. `HUDDLE_ADMIN_KEY` also sets the admin key.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::FileNotFound(path.display().to_string()));
            }
            fig = fig.merge(Toml::file(path));
        }
        fig = fig.merge(Env::prefixed("HUDDLE__").split("__"));
        let mut config: Config = fig.extract().map_err(|e| ConfigError::Load(Box::new(e)))?;
        if config.server.admin_key.is_none() {
            config.server.admin_key = std::env::var("HUDDLE_ADMIN_KEY").ok().filter(|k| !k.is_empty());
        }
        Ok(config)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if let Some(k) = &self.server.admin_key
            && k.len() < 16
        {
            return invalid("server.admin_key must be at least 16 characters long");
        }
        if !(self.database.url.starts_with("sqlite:")
            || self.database.url.starts_with("postgres://")
            || self.database.url.starts_with("postgresql://"))
        {
            return invalid("database.url must start with sqlite:// or postgres://");
        }
        if self.server.max_message_bytes < 1024 {
            return invalid("server.max_message_bytes must be at least 1024");
        }
        if self.server.request_timeout_ms == 0 {
            return invalid("server.request_timeout_ms must be above 0");
        }
        if self.rooms.watch_buffer == 0 {
            return invalid("rooms.watch_buffer must be above 0");
        }
        if !matches!(self.speech.model.as_str(), "tiny.en" | "base") {
            return invalid("speech.model must be `tiny.en` or `base`");
        }
        if !matches!(self.speech.quantize.as_str(), "q8_0" | "f16") {
            return invalid("speech.quantize must be `q8_0` or `f16`");
        }
        if self.speech.threads_per_decoder == 0 {
            return invalid("speech.threads_per_decoder must be above 0");
        }
        if !(100..=5_000).contains(&self.speech.vad_min_silence_ms) {
            return invalid("speech.vad_min_silence_ms must be between 100 and 5000");
        }
        if !(2_000..=30_000).contains(&self.speech.max_utterance_ms) {
            return invalid("speech.max_utterance_ms must be between 2000 and 30000 (whisper's window is 30 s)");
        }
        if self.speech.max_queued_audio_ms_per_room < u64::from(self.speech.max_utterance_ms) {
            return invalid("speech.max_queued_audio_ms_per_room must be at least speech.max_utterance_ms");
        }
        let k = &self.knowledge;
        if !(16..=256).contains(&k.chunk_tokens) {
            return invalid("knowledge.chunk_tokens must be between 16 and 256 (the model reads 256 tokens)");
        }
        if k.chunk_overlap >= k.chunk_tokens / 2 {
            return invalid("knowledge.chunk_overlap must be under half of knowledge.chunk_tokens");
        }
        if !(1..=256).contains(&k.embed_max_batch) {
            return invalid("knowledge.embed_max_batch must be between 1 and 256");
        }
        if !(-1.0..=1.0).contains(&k.suggestion_min_score) {
            return invalid("knowledge.suggestion_min_score must be between -1 and 1");
        }
        if k.max_document_bytes == 0 {
            return invalid("knowledge.max_document_bytes must be above 0");
        }
        if k.job_timeout_ms == 0 || k.pdf_max_extract_ms == 0 || k.pdf_max_decompressed_bytes == 0 {
            return invalid(
                "knowledge.job_timeout_ms, pdf_max_extract_ms and pdf_max_decompressed_bytes must be above 0",
            );
        }
        if k.max_jobs_per_node == 0 || k.max_jobs_per_entity == 0 {
            return invalid("knowledge.max_jobs_per_node and max_jobs_per_entity must be above 0");
        }
        let lk = &self.livekit;
        let set = [lk.url.is_some(), lk.api_key.is_some(), lk.api_secret.is_some()];
        if set.iter().any(|s| *s) && !set.iter().all(|s| *s) {
            return invalid("livekit needs url, api_key and api_secret together");
        }
        if let Some(u) = &lk.url
            && !["ws://", "wss://", "http://", "https://"].iter().any(|p| u.starts_with(p))
        {
            return invalid("livekit.url must start with ws://, wss://, http:// or https://");
        }
        if lk.api_key.as_ref().is_some_and(|s| s.is_empty()) || lk.api_secret.as_ref().is_some_and(|s| s.is_empty()) {
            return invalid("livekit.api_key and livekit.api_secret must not be empty");
        }
        if lk.worker && !lk.is_configured() {
            return invalid("livekit.worker needs livekit.url, livekit.api_key and livekit.api_secret");
        }
        if lk.max_jobs == 0 || lk.agent_name.trim().is_empty() {
            return invalid("livekit.max_jobs must be above 0 and livekit.agent_name must not be empty");
        }
        if lk.agent_identity.trim().is_empty() || lk.token_ttl_secs == 0 {
            return invalid("livekit.agent_identity must not be empty and livekit.token_ttl_secs must be above 0");
        }
        if lk.agent_identity.starts_with("p_") {
            return invalid(
                "livekit.agent_identity must not start with `p_`: huddle gives participants such identities",
            );
        }
        if let Err(e) = lk.tls() {
            return invalid(&e);
        }
        let n = &self.notify;
        if let Err(e) = n.retry_schedule.parse::<huddle_actors::notify::schedule::RetrySchedule>() {
            return invalid(&format!("notify.retry_schedule: {e}"));
        }
        if n.timeout_ms == 0
            || n.max_in_flight == 0
            || n.max_in_flight_per_endpoint == 0
            || n.claim_batch == 0
            || n.poll_interval_ms == 0
            || n.chat_max_sockets_per_key == 0
        {
            return invalid(
                "notify.timeout_ms, max_in_flight, max_in_flight_per_endpoint, claim_batch, poll_interval_ms and \
                 chat_max_sockets_per_key must be above 0",
            );
        }
        if n.yield_to_requests_ms > 1_000 {
            return invalid("notify.yield_to_requests_ms must be at most 1000");
        }
        if !matches!(n.smtp.tls.as_str(), "none" | "starttls" | "tls") {
            return invalid("notify.smtp.tls must be `none`, `starttls` or `tls`");
        }
        if n.smtp.host.is_some() && !n.smtp.from.contains('@') {
            return invalid("notify.smtp.from must be an address such as `huddle <noreply@example.com>`");
        }
        if n.twilio.account_sid.is_some() && (n.twilio.auth_token.is_none() || n.twilio.from.is_none()) {
            return invalid("notify.twilio needs auth_token and from along with account_sid");
        }
        for i in &n.inbound {
            if i.name.is_empty() || !i.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return invalid("notify.inbound.name must be letters, digits, - and _");
            }
            if !matches!(i.scheme.as_str(), "standard" | "sha256" | "sha512") {
                return invalid("notify.inbound.scheme must be `standard`, `sha256` or `sha512`");
            }
            if i.secret.is_empty() {
                return invalid("notify.inbound.secret must not be empty");
            }
        }
        if n.max_recipients == 0 {
            return invalid("notify.max_recipients must be above 0");
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return invalid("log.format must be `text` or `json`");
        }
        Ok(())
    }
}

// `Debug` without secrets: keys, tokens, passwords, the Twilio account SID and
// URL userinfo and query strings show as `<redacted>`.

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("http", &self.http)
            .field("admin_key", &redact::secret(&self.admin_key))
            .field("admin_key_file", &self.admin_key_file)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .finish()
    }
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig").field("url", &redact::url(&self.url)).finish()
    }
}

impl std::fmt::Debug for LiveKitConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveKitConfig")
            .field("url", &redact::optional_url(&self.url))
            .field("api_key", &redact::secret(&self.api_key))
            .field("api_secret", &redact::secret(&self.api_secret))
            .field("agent_identity", &self.agent_identity)
            .field("token_ttl_secs", &self.token_ttl_secs)
            .field("worker", &self.worker)
            .field("agent_name", &self.agent_name)
            .field("max_jobs", &self.max_jobs)
            .field("worker_entity", &self.worker_entity)
            .field("captions", &self.captions)
            .field("suggestion_topic", &self.suggestion_topic)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl std::fmt::Debug for InboundConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundConfig")
            .field("name", &self.name)
            .field("scheme", &self.scheme)
            .field("secret", &redact::REDACTED)
            .field("header", &self.header)
            .field("timestamp_header", &self.timestamp_header)
            .field("tolerance_secs", &self.tolerance_secs)
            .finish()
    }
}

impl std::fmt::Debug for TwilioConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioConfig")
            .field("account_sid", &redact::secret(&self.account_sid))
            .field("auth_token", &redact::secret(&self.auth_token))
            .field("from", &self.from)
            .field("base_url", &redact::url(&self.base_url))
            .field("status_callback_url", &redact::optional_url(&self.status_callback_url))
            .finish()
    }
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &redact::secret(&self.password))
            .field("from", &self.from)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use huddle_actors::notify::email::{SmtpSettings, SmtpTls};
    use huddle_actors::notify::sms::TwilioSettings;

    use super::*;

    const SECRETS: &[&str] = &[
        "adm-s3cret-key-000",
        "pgpass",
        "lk-key-1",
        "lk-s3cret",
        "whsec_in",
        "AC0123456789",
        "tw-token",
        "smtp-pw",
        "q=tok",
    ];

    fn assert_no_secrets(debug: &str) {
        for s in SECRETS {
            assert!(!debug.contains(s), "Debug shows `{s}`: {debug}");
        }
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn debug_shows_no_secrets() {
        let mut c = Config::default();
        c.server.admin_key = Some("adm-s3cret-key-000".into());
        c.database.url = "postgres://huddle:pgpass@db:5432/huddle?sslkey=q=tok".into();
        c.livekit.url = Some("wss://u:pgpass@lk.example.com?q=tok".into());
        c.livekit.api_key = Some("lk-key-1".into());
        c.livekit.api_secret = Some("lk-s3cret".into());
        c.notify.inbound.push(InboundConfig {
            name: "github".into(),
            scheme: "standard".into(),
            secret: "whsec_in".into(),
            header: default_signature_header(),
            timestamp_header: None,
            tolerance_secs: 300,
        });
        c.notify.twilio.account_sid = Some("AC0123456789".into());
        c.notify.twilio.auth_token = Some("tw-token".into());
        c.notify.twilio.base_url = "https://AC0123456789:tw-token@api.twilio.com".into();
        c.notify.twilio.status_callback_url = Some("https://huddle.example.com/webhooks/twilio/status?q=tok".into());
        c.notify.smtp.username = Some("mailer".into());
        c.notify.smtp.password = Some("smtp-pw".into());
        let debug = format!("{c:?}");
        assert_no_secrets(&debug);
        // What is not secret stays readable.
        assert!(debug.contains("db:5432/huddle") && debug.contains("mailer") && debug.contains("github"), "{debug}");

        let smtp = SmtpSettings {
            host: "mail.example.com".into(),
            port: 587,
            tls: SmtpTls::StartTls,
            username: Some("mailer".into()),
            password: Some("smtp-pw".into()),
            from: "huddle <noreply@example.com>".into(),
            timeout: Duration::from_secs(5),
        };
        assert_no_secrets(&format!("{smtp:?}"));
        let twilio = TwilioSettings {
            account_sid: "AC0123456789".into(),
            auth_token: "tw-token".into(),
            from: "+15550001".into(),
            base_url: "https://api.twilio.com".into(),
            status_callback_url: Some("https://huddle.example.com/cb?q=tok".into()),
            timeout: Duration::from_secs(5),
        };
        let debug = format!("{twilio:?}");
        assert_no_secrets(&debug);
        assert!(debug.contains("+15550001"), "{debug}");
    }
}
