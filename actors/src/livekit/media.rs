//! [`WebRtcTransport`]: joins a LiveKit room with media, in LiveKit's dual peer-connection
//! mode. Signalling is [`SignalClient`]; both peer connections are webrtc-rs.
//! - Subscriber (offered by the server, answered here): each remote Opus track is decoded to
//!   48 kHz mono PCM16 and delivered as [`AudioFrame`]s on [`RoomSession::audio`].
//! - Publisher (offered here, answered by the server): carries the `_reliable` and `_lossy`
//!   data channels, negotiated in-band (protocol 17), on which [`RoomSession::data`] sends
//!   `DataPacket`s. No media tracks are published.
//!
//! ICE candidates trickle both ways, tagged with the connection they belong to.

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
use webrtc::data_channel::RTCDataChannel;
use webrtc::data_channel::data_channel_init::RTCDataChannelInit;
use webrtc::ice_transport::ice_candidate::RTCIceCandidateInit;
use webrtc::ice_transport::ice_server::RTCIceServer;
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
use webrtc::track::track_remote::TrackRemote;

use super::data::{DataSender, LOSSY_LABEL, Outgoing, RELIABLE_LABEL, Reliability};
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
    /// Packets [`RoomSession::data`] holds while the data channels open (or fall behind);
    /// beyond this, sends are refused.
    pub data_buffer: usize,
    /// ICE gives a connection up as failed after this long without traffic (webrtc-rs's
    /// default, 25 s); the session then ends so that the caller can rejoin.
    pub ice_failed_timeout: Duration,
}

impl Default for WebRtcOptions {
    fn default() -> Self {
        Self {
            signal: SignalOptions::default(),
            include_loopback_candidates: false,
            audio_buffer: 500,
            data_buffer: 256,
            ice_failed_timeout: Duration::from_secs(25),
        }
    }
}

/// [`super::RoomTransport`] with media: subscribes to remote audio and publishes data over
/// WebRTC.
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
        // Disconnected at a fifth of the failure timeout (webrtc-rs: 5 s of 25 s), keepalives
        // often enough to notice.
        let failed = self.options.ice_failed_timeout.max(Duration::from_millis(100));
        settings.set_ice_timeouts(Some(failed / 5), Some(failed), Some((failed / 10).min(Duration::from_secs(2))));
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
        let (data, data_rx) = DataSender::channel(self.options.data_buffer);
        let (candidates_tx, candidates_rx) = mpsc::unbounded_channel();
        let (states_tx, states_rx) = mpsc::unbounded_channel();
        let identity = join.participant.as_ref().map(|p| p.identity.clone()).unwrap_or_default();
        let connections = Connections { candidates_tx: candidates_tx.clone(), states_tx: states_tx.clone() };
        let publisher = Publisher::start(&api, config.clone(), client.sender(), connections, identity)
            .await?
            .with_queue(self.options.data_buffer);
        let subscriber = Subscriber {
            api,
            config,
            signal: client.sender(),
            audio_tx,
            pc: None,
            pending: Vec::new(),
            connections: Some(Connections { candidates_tx, states_tx }),
        };
        let channels = Channels { signal_rx, events_tx, shutdown_rx, candidates_rx, states_rx, data_rx };
        let task = tokio::spawn(run(subscriber, publisher, channels));
        let control = WebRtcControl { client, shutdown_tx, task };
        Ok(RoomSession::new(join, events_rx, Box::new(control)).with_audio(audio_rx).with_data(data))
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

/// A local ICE candidate and the connection it belongs to.
type LocalCandidate = (proto::SignalTarget, RTCIceCandidateInit);

/// Where both peer connections report candidates and state changes.
#[derive(Clone)]
struct Connections {
    candidates_tx: mpsc::UnboundedSender<LocalCandidate>,
    states_tx: mpsc::UnboundedSender<(proto::SignalTarget, RTCPeerConnectionState)>,
}

impl Connections {
    /// Routes `pc`'s local candidates and state changes, tagged with `target`.
    fn watch(&self, pc: &RTCPeerConnection, target: proto::SignalTarget) {
        let candidates_tx = self.candidates_tx.clone();
        pc.on_ice_candidate(Box::new(move |candidate| {
            if let Some(init) = candidate.and_then(|c| c.to_json().ok()) {
                let _ = candidates_tx.send((target, init));
            }
            Box::pin(async {})
        }));
        let states_tx = self.states_tx.clone();
        pc.on_peer_connection_state_change(Box::new(move |state| {
            let _ = states_tx.send((target, state));
            Box::pin(async {})
        }));
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
    connections: Option<Connections>,
}

/// What the session's media task listens to.
struct Channels {
    signal_rx: mpsc::UnboundedReceiver<proto::SignalResponse>,
    events_tx: mpsc::UnboundedSender<proto::SignalResponse>,
    shutdown_rx: oneshot::Receiver<()>,
    /// Local candidates come through a channel so that each goes out after its description.
    candidates_rx: mpsc::UnboundedReceiver<LocalCandidate>,
    states_rx: mpsc::UnboundedReceiver<(proto::SignalTarget, RTCPeerConnectionState)>,
    data_rx: mpsc::Receiver<Outgoing>,
}

/// Handles offers, answers and trickles for both connections, sends queued data, and
/// forwards every server message to the session's events. Ends (closing the events, so the
/// caller can rejoin) when signalling closes or either connection's ICE fails.
async fn run(mut subscriber: Subscriber, mut publisher: Publisher, channels: Channels) {
    let Channels { mut signal_rx, events_tx, mut shutdown_rx, mut candidates_rx, mut states_rx, mut data_rx } =
        channels;
    let mut data_open = true;
    loop {
        tokio::select! {
            _ = &mut shutdown_rx => break,
            Some((target, state)) = states_rx.recv() => {
                debug!(?target, ?state, "peer connection state");
                if state == RTCPeerConnectionState::Failed {
                    warn!(?target, "the LiveKit peer connection failed (ICE); ending the session to rejoin");
                    break;
                }
            }
            Some((target, candidate)) = candidates_rx.recv() => send_candidate(&subscriber.signal, target, &candidate),
            Some(label) = publisher.opened_rx.recv() => publisher.opened(&label).await,
            outgoing = data_rx.recv(), if data_open => match outgoing {
                Some(outgoing) => publisher.send(outgoing).await,
                None => data_open = false,
            },
            response = signal_rx.recv() => {
                let Some(response) = response else { break };
                match &response.message {
                    Some(Resp::Offer(offer)) => {
                        if let Err(e) = subscriber.answer(&offer.sdp).await {
                            warn!(error = %e, "cannot answer the subscriber offer");
                        }
                    }
                    Some(Resp::Answer(answer)) => {
                        if let Err(e) = publisher.accept_answer(&answer.sdp).await {
                            warn!(error = %e, "cannot apply the publisher answer");
                        }
                    }
                    Some(Resp::Trickle(trickle)) if trickle.target == proto::SignalTarget::Subscriber as i32 => {
                        subscriber.add_candidate(&trickle.candidate_init).await;
                    }
                    Some(Resp::Trickle(trickle)) if trickle.target == proto::SignalTarget::Publisher as i32 => {
                        publisher.add_candidate(&trickle.candidate_init).await;
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
    if let Err(e) = publisher.pc.close().await {
        debug!(error = %e, "closing the publisher peer connection failed");
    }
}

fn send_candidate(signal: &SignalSender, target: proto::SignalTarget, candidate: &RTCIceCandidateInit) {
    let Ok(candidate_init) = serde_json::to_string(candidate) else { return };
    let trickle = proto::TrickleRequest { candidate_init, target: target as i32, r#final: false };
    if let Err(e) = signal.send(Req::Trickle(trickle)) {
        debug!(error = %e, ?target, "cannot trickle a local candidate");
    }
}

/// Parses a trickled candidate; `None` (logged) when it is not valid JSON.
fn parse_candidate(json: &str, target: &str) -> Option<RTCIceCandidateInit> {
    match serde_json::from_str(json) {
        Ok(c) => Some(c),
        Err(e) => {
            warn!(error = %e, %json, target, "undecodable ICE candidate; ignored");
            None
        }
    }
}

/// The publisher side: one peer connection offered at join, carrying the two data channels.
struct Publisher {
    pc: Arc<RTCPeerConnection>,
    reliable: Arc<RTCDataChannel>,
    lossy: Arc<RTCDataChannel>,
    /// Labels of channels that have opened.
    opened_rx: mpsc::UnboundedReceiver<String>,
    reliable_open: bool,
    lossy_open: bool,
    /// Packets waiting for their channel to open, oldest first.
    waiting: std::collections::VecDeque<Outgoing>,
    waiting_cap: usize,
    remote_set: bool,
    /// Server candidates that arrived before the answer.
    pending: Vec<RTCIceCandidateInit>,
    /// Sequence number of the next reliable packet.
    sequence: u32,
    identity: String,
}

impl Publisher {
    /// Creates the connection and its data channels and sends the offer.
    async fn start(
        api: &API,
        config: RTCConfiguration,
        signal: SignalSender,
        connections: Connections,
        identity: String,
    ) -> Result<Publisher> {
        let media_error = |e: webrtc::Error| LiveKitError::Media(e.to_string());
        let pc = Arc::new(api.new_peer_connection(config).await.map_err(media_error)?);
        connections.watch(&pc, proto::SignalTarget::Publisher);
        let (opened_tx, opened_rx) = mpsc::unbounded_channel();
        let reliable = RTCDataChannelInit { ordered: Some(true), ..Default::default() };
        let lossy = RTCDataChannelInit { ordered: Some(false), max_retransmits: Some(0), ..Default::default() };
        let mut channels = Vec::new();
        for (label, init) in [(RELIABLE_LABEL, reliable), (LOSSY_LABEL, lossy)] {
            let dc = pc.create_data_channel(label, Some(init)).await.map_err(media_error)?;
            let opened_tx = opened_tx.clone();
            dc.on_open(Box::new(move || {
                let _ = opened_tx.send(label.to_string());
                Box::pin(async {})
            }));
            channels.push(dc);
        }
        let offer = pc.create_offer(None).await.map_err(media_error)?;
        pc.set_local_description(offer.clone()).await.map_err(media_error)?;
        signal.send(Req::Offer(proto::SessionDescription {
            r#type: "offer".into(),
            sdp: offer.sdp,
            ..Default::default()
        }))?;
        let lossy = channels.pop().expect("two channels");
        let reliable = channels.pop().expect("two channels");
        Ok(Publisher {
            pc,
            reliable,
            lossy,
            opened_rx,
            reliable_open: false,
            lossy_open: false,
            waiting: Default::default(),
            waiting_cap: 256,
            remote_set: false,
            pending: Vec::new(),
            sequence: 1,
            identity,
        })
    }

    fn with_queue(mut self, waiting_cap: usize) -> Self {
        self.waiting_cap = waiting_cap.max(1);
        self
    }

    async fn accept_answer(&mut self, sdp: &str) -> Result<()> {
        let answer = RTCSessionDescription::answer(sdp.to_string())
            .map_err(|e| LiveKitError::Media(format!("invalid publisher answer: {e}")))?;
        self.pc
            .set_remote_description(answer)
            .await
            .map_err(|e| LiveKitError::Media(format!("invalid publisher answer: {e}")))?;
        self.remote_set = true;
        for candidate in std::mem::take(&mut self.pending) {
            if let Err(e) = self.pc.add_ice_candidate(candidate).await {
                debug!(error = %e, "cannot add a server publisher candidate");
            }
        }
        Ok(())
    }

    async fn add_candidate(&mut self, json: &str) {
        let Some(candidate) = parse_candidate(json, "publisher") else { return };
        if !self.remote_set {
            self.pending.push(candidate);
        } else if let Err(e) = self.pc.add_ice_candidate(candidate).await {
            debug!(error = %e, "cannot add a server publisher candidate");
        }
    }

    fn is_open(&self, reliability: Reliability) -> bool {
        match reliability {
            Reliability::Reliable => self.reliable_open,
            Reliability::Lossy => self.lossy_open,
        }
    }

    async fn opened(&mut self, label: &str) {
        debug!(label, "data channel open");
        match label {
            RELIABLE_LABEL => self.reliable_open = true,
            LOSSY_LABEL => self.lossy_open = true,
            _ => return,
        }
        let waiting = std::mem::take(&mut self.waiting);
        for outgoing in waiting {
            self.send(outgoing).await;
        }
    }

    /// Sends now if the packet's channel is open, otherwise queues it (dropping the oldest
    /// queued packet when the queue is full).
    async fn send(&mut self, mut outgoing: Outgoing) {
        if !self.is_open(outgoing.reliability) {
            if self.waiting.len() >= self.waiting_cap {
                self.waiting.pop_front();
                warn!("data channel not open; oldest queued packet dropped");
            }
            self.waiting.push_back(outgoing);
            return;
        }
        let packet = &mut outgoing.packet;
        if packet.participant_identity.is_empty() {
            packet.participant_identity = self.identity.clone();
        }
        let dc = match outgoing.reliability {
            Reliability::Reliable => {
                packet.sequence = self.sequence;
                self.sequence = self.sequence.wrapping_add(1);
                &self.reliable
            }
            Reliability::Lossy => &self.lossy,
        };
        let bytes = bytes::Bytes::from(prost::Message::encode_to_vec(packet));
        if let Err(e) = dc.send(&bytes).await {
            warn!(error = %e, label = dc.label(), "cannot send a data packet");
        }
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
                if let Some(connections) = &self.connections {
                    connections.watch(&pc, proto::SignalTarget::Subscriber);
                }
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
        let Some(candidate) = parse_candidate(json, "subscriber") else { return };
        match &self.pc {
            Some(pc) if pc.remote_description().await.is_some() => {
                if let Err(e) = pc.add_ice_candidate(candidate).await {
                    debug!(error = %e, "cannot add a server candidate");
                }
            }
            _ => self.pending.push(candidate),
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
            connections: None,
        };
        for sdp in ["", "not sdp", "v=0\r\n"] {
            let err = subscriber.answer(sdp).await.expect_err("a bad offer must fail");
            assert!(matches!(err, LiveKitError::Media(_)), "got {err:?}");
        }
        subscriber.add_candidate("{not json").await;
        assert!(subscriber.pending.is_empty());
    }
}
