//! LiveKit: joining rooms over the signalling protocol and serving as an agent worker.
//!
//! The official `livekit` crate does not build here (its webrtc-sys build downloads
//! libwebrtc), so huddle speaks the protocol itself: binary protobuf frames
//! (`livekit-protocol`) over a WebSocket, with tokens from `livekit-api`.
//!
//! # Layout
//! - this file: [`LiveKitError`], the [`RoomTransport`] trait and [`RoomSession`]
//! - [`signal`]: [`signal::SignalClient`], a participant's `/rtc` signalling connection
//! - [`media`]: [`media::WebRtcTransport`], signalling plus both peer connections
//!   (webrtc-rs): remote Opus audio decoded to [`media::AudioFrame`]s, and data channels
//! - [`data`]: [`data::DataSender`] and the `DataPacket`s huddle publishes (captions, topics)
//! - [`worker`]: [`worker::WorkerActor`], LiveKit's agent worker protocol (`/agent`)
//!
//! `wss://` (and `https://`) servers are reached over rustls, trusting the Mozilla roots
//! unless [`SignalOptions::tls`] / [`WorkerArgs::tls`] say otherwise ([`tls_trusting`]).

pub mod data;
pub mod media;
pub mod signal;
pub mod worker;

use std::time::Duration;

use async_trait::async_trait;
use livekit_protocol as proto;
use tokio::sync::mpsc;

pub use data::{DataSender, Reliability};
pub use media::{AUDIO_SAMPLE_RATE, AudioFrame, WebRtcOptions, WebRtcTransport};
pub use signal::{SignalClient, SignalOptions, SignalTransport};
pub use worker::{JobHandler, JobRun, WorkerActor, WorkerArgs, WorkerMsg, WorkerView};

#[derive(Debug, thiserror::Error)]
pub enum LiveKitError {
    /// Shown without the URL's userinfo and query string (where an access token goes).
    #[error("invalid LiveKit url {}: {reason}", huddle_core::redact::url(url))]
    InvalidUrl { url: String, reason: String },
    #[error("cannot connect to LiveKit at {}: {reason}", huddle_core::redact::url(url))]
    Connect { url: String, reason: String },
    #[error("LiveKit rejected the token (HTTP 401: {message}): check the api key, secret and grants")]
    Unauthorized { message: String },
    #[error("LiveKit protocol error: {0}")]
    Protocol(String),
    #[error("cannot decode a LiveKit message: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { after: Duration, what: &'static str },
    #[error("cannot mint a LiveKit token: {0}")]
    Token(String),
    #[error("the LiveKit connection is closed")]
    Closed,
    #[error("WebRTC media error: {0}")]
    Media(String),
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("job failed: {0}")]
    Job(String),
}

pub type Result<T, E = LiveKitError> = std::result::Result<T, E>;

/// Joins LiveKit rooms. [`SignalTransport`] speaks the signalling protocol directly,
/// [`WebRtcTransport`] adds subscribed audio and published data; an
/// adapter over the official `livekit` crate can implement this where that crate builds.
#[async_trait]
pub trait RoomTransport: Send + Sync + 'static {
    async fn join(&self, url: &str, token: &str) -> Result<RoomSession>;
}

/// A joined room: the server's `JoinResponse`, then every later `SignalResponse`.
pub struct RoomSession {
    pub join: proto::JoinResponse,
    /// Server messages after `join`; ends when the connection closes.
    pub events: mpsc::UnboundedReceiver<proto::SignalResponse>,
    /// Decoded remote audio, when the transport carries media (`None` for
    /// [`SignalTransport`]); ends when the session ends.
    pub audio: Option<mpsc::Receiver<AudioFrame>>,
    /// Publishes `DataPacket`s into the room, when the transport carries data (`None` for
    /// [`SignalTransport`]).
    pub data: Option<DataSender>,
    control: Box<dyn RoomControl>,
}

impl RoomSession {
    pub fn new(
        join: proto::JoinResponse,
        events: mpsc::UnboundedReceiver<proto::SignalResponse>,
        control: Box<dyn RoomControl>,
    ) -> Self {
        Self { join, events, audio: None, data: None, control }
    }

    /// Attaches the receiver of decoded remote audio.
    pub fn with_audio(mut self, audio: mpsc::Receiver<AudioFrame>) -> Self {
        self.audio = Some(audio);
        self
    }

    /// Attaches the sender of published data.
    pub fn with_data(mut self, data: DataSender) -> Self {
        self.data = Some(data);
        self
    }

    /// Leaves the room and closes the connection.
    pub async fn leave(self) -> Result<()> {
        self.control.leave().await
    }
}

/// The transport-specific half of a [`RoomSession`].
#[async_trait]
pub trait RoomControl: Send + Sync {
    async fn leave(self: Box<Self>) -> Result<()>;
}

/// A TLS client configuration for `wss://` LiveKit servers trusting the Mozilla roots plus
/// every CA certificate in `pem` (for servers with a private CA).
pub fn tls_trusting(pem: &[u8]) -> Result<std::sync::Arc<rustls::ClientConfig>> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let invalid = |reason: String| LiveKitError::Tls(reason);
    let mut roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let mut added = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| invalid(format!("unreadable PEM certificate: {e}")))?;
        roots.add(cert).map_err(|e| invalid(format!("unusable CA certificate: {e}")))?;
        added += 1;
    }
    if added == 0 {
        return Err(invalid("no PEM certificate (-----BEGIN CERTIFICATE-----) found".into()));
    }
    Ok(std::sync::Arc::new(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth()))
}

/// Milliseconds since the Unix epoch, as LiveKit's ping timestamps use.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// `http(s)://host/path` or `ws(s)://host/path` -> `ws(s)://host/path/{endpoint}`.
pub(crate) fn endpoint_url(base: &str, endpoint: &str) -> Result<url::Url> {
    let invalid = |reason: &str| LiveKitError::InvalidUrl { url: base.into(), reason: reason.into() };
    let mut url = url::Url::parse(base).map_err(|e| invalid(&e.to_string()))?;
    let scheme = match url.scheme() {
        "ws" | "http" => "ws",
        "wss" | "https" => "wss",
        _ => return Err(invalid("the scheme must be ws, wss, http or https")),
    };
    url.set_scheme(scheme).map_err(|_| invalid("cannot change the scheme"))?;
    let path = format!("{}/{endpoint}", url.path().trim_end_matches('/'));
    url.set_path(&path);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls_keep_the_base_path_and_use_websocket_schemes() {
        assert_eq!(endpoint_url("http://h:7880", "rtc").unwrap().as_str(), "ws://h:7880/rtc");
        assert_eq!(endpoint_url("wss://lk.example/base/", "agent").unwrap().as_str(), "wss://lk.example/base/agent");
        assert!(matches!(endpoint_url("ftp://h", "rtc"), Err(LiveKitError::InvalidUrl { .. })));
    }
}
