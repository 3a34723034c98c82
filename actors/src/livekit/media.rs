//! [`WebRtcTransport`]: joins a LiveKit room with media. Signalling is [`SignalClient`]; the
//! subscriber peer connection (offered by the server, answered here) is webrtc-rs; each
//! remote Opus track is decoded to 48 kHz mono PCM16 and delivered as [`AudioFrame`]s on
//! [`RoomSession::audio`].
//!
//! Only the subscriber connection exists so far: nothing is published, and there are no data
//! channels (so no `DataPacket`s or transcriptions).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use livekit_protocol as proto;
use proto::signal_request::Message as Req;
use proto::signal_response::Message as Resp;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, warn};
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::{MIME_TYPE_OPUS, MediaEngine};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::{API, APIBuilder};
use webrtc::ice_transport::ice_candidate::RTCIceCandidateInit;
use webrtc::ice_transport::ice_server::RTCIceServer;
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
use webrtc::track::track_remote::TrackRemote;

use super::signal::{SignalOptions, SignalSender};
use super::{LiveKitError, Result, RoomControl, RoomSession, RoomTransport, SignalClient};

/// The sample rate of decoded audio.
pub const AUDIO_SAMPLE_RATE: u32 = 48_000;

/// Decoded audio from one remote track: usually 20 ms (960 samples) per frame.
#[derive(Clone, Debug, PartialEq)]
pub struct AudioFrame {
    /// The publishing participant (`PA_xxx`).
    pub participant_sid: String,
    /// The track (`TR_xxx`).
    pub track_sid: String,
    pub sample_rate: u32,
    /// Mono PCM16.
    pub pcm: Vec<i16>,
}

#[derive(Clone, Debug)]
pub struct WebRtcOptions {
    pub signal: SignalOptions,
    /// Gathers ICE candidates on loopback interfaces too (off by default, as in browsers);
    /// needed to reach a server on 127.0.0.1.
    pub include_loopback_candidates: bool,
    /// Frames buffered on [`RoomSession::audio`] before the receiver applies back-pressure.
    pub audio_buffer: usize,
}

impl Default for WebRtcOptions {
    fn default() -> Self {
        Self { signal: SignalOptions::default(), include_loopback_candidates: false, audio_buffer: 500 }
    }
}

/// [`super::RoomTransport`] with media: subscribes to remote audio over WebRTC.
#[derive(Clone, Debug, Default)]
pub struct WebRtcTransport {
    pub options: WebRtcOptions,
}

impl WebRtcTransport {
    pub fn new(options: WebRtcOptions) -> Self {
        Self { options }
    }

    fn api(&self) -> Result<API> {
        let media_error = |e: webrtc::Error| LiveKitError::Media(e.to_string());
        let mut media = MediaEngine::default();
        media.register_default_codecs().map_err(media_error)?;
        let registry = register_default_interceptors(Registry::new(), &mut media).map_err(media_error)?;
        let mut settings = SettingEngine::default();
        if self.options.include_loopback_candidates {
            settings.set_include_loopback_candidate(true);
        }
        Ok(APIBuilder::new()
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .with_setting_engine(settings)
            .build())
    }
}

#[async_trait]
impl RoomTransport for WebRtcTransport {
    async fn join(&self, url: &str, token: &str) -> Result<RoomSession> {
        let api = self.api()?;
        let (client, signal_rx) = SignalClient::connect_with(url, token, self.options.signal.clone()).await?;
        let join = client.join_response().clone();
        let config = RTCConfiguration { ice_servers: ice_servers(&join), ..Default::default() };
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (audio_tx, audio_rx) = mpsc::channel(self.options.audio_buffer.max(1));
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let subscriber = Subscriber {
            api,
            config,
            signal: client.sender(),
            audio_tx,
            pc: None,
            pending: Vec::new(),
            candidates_tx: None,
        };
        let task = tokio::spawn(run(subscriber, signal_rx, events_tx, shutdown_rx));
        let control = WebRtcControl { client, shutdown_tx, task };
        Ok(RoomSession::new(join, events_rx, Box::new(control)).with_audio(audio_rx))
    }
}

fn ice_servers(join: &proto::JoinResponse) -> Vec<RTCIceServer> {
    join.ice_servers
        .iter()
        .map(|s| RTCIceServer { urls: s.urls.clone(), username: s.username.clone(), credential: s.credential.clone() })
        .collect()
}

struct WebRtcControl {
    client: SignalClient,
    shutdown_tx: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

#[async_trait]
impl RoomControl for WebRtcControl {
    async fn leave(self: Box<Self>) -> Result<()> {
        let WebRtcControl { client, shutdown_tx, task } = *self;
        let _ = shutdown_tx.send(());
        // The task closes the peer connection; don't wait forever for webrtc-rs.
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        client.leave().await
    }
}

/// The subscriber side: one peer connection, created on the first offer.
struct Subscriber {
    api: API,
    config: RTCConfiguration,
    signal: SignalSender,
    audio_tx: mpsc::Sender<AudioFrame>,
    pc: Option<Arc<RTCPeerConnection>>,
    /// Server candidates that arrived before the offer was applied.
    pending: Vec<RTCIceCandidateInit>,
    candidates_tx: Option<mpsc::UnboundedSender<RTCIceCandidateInit>>,
}

/// Handles offers and trickles; forwards every server message to the session's events.
async fn run(
    mut subscriber: Subscriber,
    mut signal_rx: mpsc::UnboundedReceiver<proto::SignalResponse>,
    events_tx: mpsc::UnboundedSender<proto::SignalResponse>,
    mut shutdown_rx: oneshot::Receiver<()>,
) {
    // Local candidates come through a channel so that each goes out after its answer.
    let (candidates_tx, mut candidates_rx) = mpsc::unbounded_channel::<RTCIceCandidateInit>();
    subscriber.candidates_tx = Some(candidates_tx);
    loop {
        tokio::select! {
            _ = &mut shutdown_rx => break,
            Some(candidate) = candidates_rx.recv() => subscriber.send_candidate(&candidate),
            response = signal_rx.recv() => {
                let Some(response) = response else { break };
                match &response.message {
                    Some(Resp::Offer(offer)) => {
                        if let Err(e) = subscriber.answer(&offer.sdp).await {
                            warn!(error = %e, "cannot answer the subscriber offer");
                        }
                    }
                    Some(Resp::Trickle(trickle)) if trickle.target == proto::SignalTarget::Subscriber as i32 => {
                        subscriber.add_candidate(&trickle.candidate_init).await;
                    }
                    _ => {}
                }
                if events_tx.send(response).is_err() {
                    debug!("room session events dropped; media continues");
                }
            }
        }
    }
    if let Some(pc) = subscriber.pc.take()
        && let Err(e) = pc.close().await
    {
        debug!(error = %e, "closing the subscriber peer connection failed");
    }
}

impl Subscriber {
    async fn answer(&mut self, sdp: &str) -> Result<()> {
        let media_error = |e: webrtc::Error| LiveKitError::Media(e.to_string());
        let offer = RTCSessionDescription::offer(sdp.to_string())
            .map_err(|e| LiveKitError::Media(format!("invalid subscriber offer: {e}")))?;
        let pc = match &self.pc {
            Some(pc) => pc.clone(),
            None => {
                let pc = Arc::new(self.api.new_peer_connection(self.config.clone()).await.map_err(media_error)?);
                let candidates_tx = self.candidates_tx.clone();
                pc.on_ice_candidate(Box::new(move |candidate| {
                    if let (Some(tx), Some(init)) = (&candidates_tx, candidate.and_then(|c| c.to_json().ok())) {
                        let _ = tx.send(init);
                    }
                    Box::pin(async {})
                }));
                let audio_tx = self.audio_tx.clone();
                pc.on_track(Box::new(move |track, _receiver, _transceiver| {
                    tokio::spawn(decode_track(track, audio_tx.clone()));
                    Box::pin(async {})
                }));
                self.pc = Some(pc.clone());
                pc
            }
        };
        pc.set_remote_description(offer)
            .await
            .map_err(|e| LiveKitError::Media(format!("invalid subscriber offer: {e}")))?;
        for candidate in std::mem::take(&mut self.pending) {
            if let Err(e) = pc.add_ice_candidate(candidate).await {
                debug!(error = %e, "cannot add a server candidate");
            }
        }
        let answer = pc.create_answer(None).await.map_err(media_error)?;
        pc.set_local_description(answer.clone()).await.map_err(media_error)?;
        self.signal.send(Req::Answer(proto::SessionDescription {
            r#type: "answer".into(),
            sdp: answer.sdp,
            ..Default::default()
        }))
    }

    async fn add_candidate(&mut self, json: &str) {
        let candidate: RTCIceCandidateInit = match serde_json::from_str(json) {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, %json, "undecodable subscriber ICE candidate; ignored");
                return;
            }
        };
        match &self.pc {
            Some(pc) if pc.remote_description().await.is_some() => {
                if let Err(e) = pc.add_ice_candidate(candidate).await {
                    debug!(error = %e, "cannot add a server candidate");
                }
            }
            _ => self.pending.push(candidate),
        }
    }

    fn send_candidate(&self, candidate: &RTCIceCandidateInit) {
        let Ok(candidate_init) = serde_json::to_string(candidate) else { return };
        let trickle =
            proto::TrickleRequest { candidate_init, target: proto::SignalTarget::Subscriber as i32, r#final: false };
        if let Err(e) = self.signal.send(Req::Trickle(trickle)) {
            debug!(error = %e, "cannot trickle a subscriber candidate");
        }
    }
}

/// `PA_xxx|TR_xxx` -> (participant sid, track sid); otherwise the stream id and the track id.
fn attribution(stream_id: &str, track_id: &str) -> (String, String) {
    match stream_id.split_once('|') {
        Some((participant, track)) => (participant.to_string(), track.to_string()),
        None => (stream_id.to_string(), track_id.to_string()),
    }
}

/// Decodes one remote Opus track until it ends or the session's audio receiver is dropped.
async fn decode_track(track: Arc<TrackRemote>, audio_tx: mpsc::Sender<AudioFrame>) {
    let mime = track.codec().capability.mime_type;
    if track.kind() != RTPCodecType::Audio || !mime.eq_ignore_ascii_case(MIME_TYPE_OPUS) {
        debug!(%mime, "remote track is not Opus audio; ignored");
        return;
    }
    let (participant_sid, track_sid) = attribution(&track.stream_id(), &track.id());
    let mut decoder = match opus::Decoder::new(AUDIO_SAMPLE_RATE, opus::Channels::Mono) {
        Ok(decoder) => decoder,
        Err(e) => {
            warn!(error = %e, "cannot create an Opus decoder");
            return;
        }
    };
    debug!(%participant_sid, %track_sid, "subscribed to remote audio");
    // 120 ms, Opus's longest frame.
    let mut pcm = vec![0i16; 5760];
    while let Ok((packet, _)) = track.read_rtp().await {
        if packet.payload.is_empty() {
            continue;
        }
        let samples = match decoder.decode(&packet.payload, &mut pcm, false) {
            Ok(samples) => samples,
            Err(e) => {
                debug!(error = %e, "undecodable Opus packet; skipped");
                continue;
            }
        };
        let frame = AudioFrame {
            participant_sid: participant_sid.clone(),
            track_sid: track_sid.clone(),
            sample_rate: AUDIO_SAMPLE_RATE,
            pcm: pcm[..samples].to_vec(),
        };
        if audio_tx.send(frame).await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_attribute_audio_to_participant_and_track() {
        assert_eq!(attribution("PA_1|TR_2", "x"), ("PA_1".into(), "TR_2".into()));
        assert_eq!(attribution("stream", "TR_9"), ("stream".into(), "TR_9".into()));
    }

    #[tokio::test]
    async fn a_bad_subscriber_offer_is_an_error_not_a_panic() {
        let transport = WebRtcTransport::default();
        let (audio_tx, _audio_rx) = mpsc::channel(1);
        let mut subscriber = Subscriber {
            api: transport.api().unwrap(),
            config: RTCConfiguration::default(),
            signal: SignalSender::closed(),
            audio_tx,
            pc: None,
            pending: Vec::new(),
            candidates_tx: None,
        };
        for sdp in ["", "not sdp", "v=0\r\n"] {
            let err = subscriber.answer(sdp).await.expect_err("a bad offer must fail");
            assert!(matches!(err, LiveKitError::Media(_)), "got {err:?}");
        }
        subscriber.add_candidate("{not json").await;
        assert!(subscriber.pending.is_empty());
    }
}
