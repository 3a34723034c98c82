//! The test server's media peers (webrtc-rs), one pair per participant connection:
//! - [`SubscriberPeer`]: for a participant joining a room with published audio, offers one
//!   Opus track per publication (stream id `PA_xxx|TR_xxx`, as LiveKit's SFU does), applies
//!   the client's answer, trickles ICE both ways and, once connected, plays each
//!   publication's PCM as 20 ms Opus frames in real time.
//! - [`PublisherPeer`]: answers the client's publisher offer, accepts the data channels it
//!   opens in-band (`_reliable`, `_lossy`) and records every `DataPacket` received.
//!
//! Loopback only: host candidates on 127.0.0.1, no mDNS; ICE-lite like LiveKit's SFU (the
//! client drives the connectivity checks).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use livekit_protocol as proto;
use prost::Message as _;
use proto::signal_response::Message as Resp;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, warn};
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::{MIME_TYPE_OPUS, MediaEngine};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::{API, APIBuilder};
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::network_type::NetworkType;
use webrtc::ice_transport::ice_candidate::RTCIceCandidateInit;
use webrtc::interceptor::registry::Registry;
use webrtc::media::Sample;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::rtp_transceiver::rtp_codec::RTCRtpCodecCapability;
use webrtc::track::track_local::TrackLocal;
use webrtc::track::track_local::track_local_static_sample::TrackLocalStaticSample;

use super::{Inner, ReceivedData};

/// 20 ms at 48 kHz.
const FRAME_SAMPLES: usize = 960;
const FRAME: Duration = Duration::from_millis(20);

/// Audio published into a room by a server-side (virtual) participant.
#[derive(Clone, Debug)]
pub(crate) struct Publication {
    pub participant_sid: String,
    pub track_sid: String,
    /// 48 kHz mono PCM.
    pub pcm: Arc<Vec<i16>>,
}

/// What the `/rtc` connection forwards to the peer.
pub(crate) enum PeerInput {
    Answer(String),
    Candidate(String),
}

/// Who a peer serves: the participant's `/rtc` connection.
#[derive(Clone)]
pub(crate) struct PeerOwner {
    pub inner: Arc<Inner>,
    pub room: String,
    pub identity: String,
    pub signal_tx: mpsc::UnboundedSender<proto::SignalResponse>,
}

/// A running subscriber peer; dropping it closes the peer connection.
pub(crate) struct SubscriberPeer {
    inputs_tx: mpsc::UnboundedSender<PeerInput>,
}

impl SubscriberPeer {
    /// Starts the peer; it sends its `offer` and trickles through the owner's signalling.
    pub fn spawn(owner: PeerOwner, publications: Vec<Publication>) -> Self {
        let (inputs_tx, inputs_rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let identity = owner.identity.clone();
            if let Err(e) = run(owner, publications, inputs_rx).await {
                warn!(%identity, error = %e, "test server media peer failed");
            }
        });
        Self { inputs_tx }
    }

    pub fn send(&self, input: PeerInput) {
        let _ = self.inputs_tx.send(input);
    }
}

fn loopback_api() -> webrtc::error::Result<API> {
    let mut media = MediaEngine::default();
    media.register_default_codecs()?;
    let registry = register_default_interceptors(Registry::new(), &mut media)?;
    let mut settings = SettingEngine::default();
    settings.set_include_loopback_candidate(true);
    settings.set_ip_filter(Box::new(|ip: IpAddr| ip.is_loopback()));
    settings.set_network_types(vec![NetworkType::Udp4]);
    settings.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
    // LiveKit's SFU is ICE-lite: it never sends connectivity checks, the client drives ICE.
    settings.set_lite(true);
    Ok(APIBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .build())
}

/// A client's trickled candidate; `None` (logged) when it is not valid JSON.
fn parse_candidate(json: &str) -> Option<RTCIceCandidateInit> {
    serde_json::from_str(json).map_err(|e| debug!(error = %e, %json, "undecodable client candidate")).ok()
}

fn trickle(candidate: &RTCIceCandidateInit, target: proto::SignalTarget) -> Option<proto::SignalResponse> {
    let candidate_init = serde_json::to_string(candidate).ok()?;
    Some(proto::SignalResponse {
        message: Some(Resp::Trickle(proto::TrickleRequest { candidate_init, target: target as i32, r#final: false })),
    })
}

async fn run(
    owner: PeerOwner,
    publications: Vec<Publication>,
    mut inputs_rx: mpsc::UnboundedReceiver<PeerInput>,
) -> Result<(), String> {
    let api = loopback_api().map_err(|e| e.to_string())?;
    let pc = Arc::new(api.new_peer_connection(RTCConfiguration::default()).await.map_err(|e| e.to_string())?);
    let result = negotiate_and_play(&pc, &owner, publications, &mut inputs_rx).await;
    let _ = pc.close().await;
    result
}

async fn negotiate_and_play(
    pc: &Arc<RTCPeerConnection>,
    owner: &PeerOwner,
    publications: Vec<Publication>,
    inputs_rx: &mut mpsc::UnboundedReceiver<PeerInput>,
) -> Result<(), String> {
    let signal_tx = &owner.signal_tx;
    let mut tracks = Vec::new();
    for publication in publications {
        let track = Arc::new(TrackLocalStaticSample::new(
            RTCRtpCodecCapability {
                mime_type: MIME_TYPE_OPUS.to_owned(),
                clock_rate: 48_000,
                channels: 2,
                sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
                ..Default::default()
            },
            publication.track_sid.clone(),
            format!("{}|{}", publication.participant_sid, publication.track_sid),
        ));
        let sender =
            pc.add_track(track.clone() as Arc<dyn TrackLocal + Send + Sync>).await.map_err(|e| e.to_string())?;
        // RTCP must be read for the interceptors to run.
        tokio::spawn(async move {
            let mut buf = vec![0u8; 1500];
            while sender.read(&mut buf).await.is_ok() {}
        });
        tracks.push((track, publication.track_sid, publication.pcm));
    }

    // Candidates and state changes come through channels, so the offer is sent first.
    let (candidates_tx, mut candidates_rx) = mpsc::unbounded_channel();
    pc.on_ice_candidate(Box::new(move |candidate| {
        if let Some(init) = candidate.and_then(|c| c.to_json().ok()) {
            let _ = candidates_tx.send(init);
        }
        Box::pin(async {})
    }));
    let (states_tx, mut states_rx) = mpsc::unbounded_channel();
    pc.on_peer_connection_state_change(Box::new(move |state| {
        let _ = states_tx.send(state);
        Box::pin(async {})
    }));

    let offer = pc.create_offer(None).await.map_err(|e| e.to_string())?;
    pc.set_local_description(offer.clone()).await.map_err(|e| e.to_string())?;
    let offer = proto::SignalResponse {
        message: Some(Resp::Offer(proto::SessionDescription {
            r#type: "offer".into(),
            sdp: offer.sdp,
            ..Default::default()
        })),
    };
    if signal_tx.send(offer).is_err() {
        return Ok(());
    }

    let mut remote_set = false;
    let mut pending: Vec<RTCIceCandidateInit> = Vec::new();
    let mut players = JoinSet::new();
    loop {
        tokio::select! {
            input = inputs_rx.recv() => match input {
                None => break,
                Some(PeerInput::Answer(sdp)) => {
                    let answer = RTCSessionDescription::answer(sdp).map_err(|e| e.to_string())?;
                    pc.set_remote_description(answer).await.map_err(|e| format!("bad answer: {e}"))?;
                    remote_set = true;
                    for candidate in pending.drain(..) {
                        if let Err(e) = pc.add_ice_candidate(candidate).await {
                            debug!(error = %e, "cannot add a client candidate");
                        }
                    }
                }
                Some(PeerInput::Candidate(json)) => {
                    let Some(candidate) = parse_candidate(&json) else { continue };
                    if remote_set {
                        if let Err(e) = pc.add_ice_candidate(candidate).await {
                            debug!(error = %e, "cannot add a client candidate");
                        }
                    } else {
                        pending.push(candidate);
                    }
                }
            },
            Some(candidate) = candidates_rx.recv() => {
                if let Some(response) = trickle(&candidate, proto::SignalTarget::Subscriber) {
                    let _ = signal_tx.send(response);
                }
            }
            Some(state) = states_rx.recv() => {
                debug!(?state, "test server subscriber peer state");
                match state {
                    RTCPeerConnectionState::Connected if players.is_empty() => {
                        for (track, track_sid, pcm) in tracks.drain(..) {
                            owner.inner.record_playback(super::Playback {
                                room: owner.room.clone(),
                                subscriber: owner.identity.clone(),
                                track_sid,
                                started: Instant::now(),
                            });
                            players.spawn(play(track, pcm));
                        }
                    }
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => break,
                    _ => {}
                }
            }
            Some(played) = players.join_next(), if !players.is_empty() => {
                if let Ok(Err(e)) = played {
                    warn!(error = %e, "test server cannot play a publication");
                }
            }
        }
    }
    players.abort_all();
    Ok(())
}

/// Encodes `pcm` as 20 ms Opus frames and writes them in real time.
async fn play(track: Arc<TrackLocalStaticSample>, pcm: Arc<Vec<i16>>) -> Result<(), String> {
    let mut encoder = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)
        .map_err(|e| format!("cannot create an Opus encoder: {e}"))?;
    let mut ticker = tokio::time::interval(FRAME);
    let mut frame = vec![0i16; FRAME_SAMPLES];
    for chunk in pcm.chunks(FRAME_SAMPLES) {
        frame.fill(0);
        frame[..chunk.len()].copy_from_slice(chunk);
        let data = encoder.encode_vec(&frame, 4000).map_err(|e| format!("Opus encoding failed: {e}"))?;
        ticker.tick().await;
        let sample = Sample { data: data.into(), duration: FRAME, ..Default::default() };
        track.write_sample(&sample).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// What the `/rtc` connection forwards to the publisher peer.
pub(crate) enum PublisherInput {
    Offer(String),
    Candidate(String),
}

/// A running publisher peer (answers the client's publisher offers); dropping it closes the
/// peer connection.
pub(crate) struct PublisherPeer {
    inputs_tx: mpsc::UnboundedSender<PublisherInput>,
}

impl PublisherPeer {
    pub fn spawn(owner: PeerOwner) -> Self {
        let (inputs_tx, inputs_rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let identity = owner.identity.clone();
            if let Err(e) = run_publisher(owner, inputs_rx).await {
                warn!(%identity, error = %e, "test server publisher peer failed");
            }
        });
        Self { inputs_tx }
    }

    pub fn send(&self, input: PublisherInput) {
        let _ = self.inputs_tx.send(input);
    }
}

async fn run_publisher(owner: PeerOwner, mut inputs_rx: mpsc::UnboundedReceiver<PublisherInput>) -> Result<(), String> {
    let api = loopback_api().map_err(|e| e.to_string())?;
    let pc = Arc::new(api.new_peer_connection(RTCConfiguration::default()).await.map_err(|e| e.to_string())?);
    let (candidates_tx, mut candidates_rx) = mpsc::unbounded_channel();
    pc.on_ice_candidate(Box::new(move |candidate| {
        if let Some(init) = candidate.and_then(|c| c.to_json().ok()) {
            let _ = candidates_tx.send(init);
        }
        Box::pin(async {})
    }));
    let recorder = owner.clone();
    pc.on_data_channel(Box::new(move |dc| {
        let owner = recorder.clone();
        let channel = dc.label().to_string();
        debug!(identity = %owner.identity, %channel, "client opened a data channel");
        dc.on_message(Box::new(move |message| {
            match proto::DataPacket::decode(message.data.as_ref()) {
                Ok(packet) => owner.inner.record_data(ReceivedData {
                    room: owner.room.clone(),
                    identity: owner.identity.clone(),
                    channel: channel.clone(),
                    packet,
                    at: Instant::now(),
                }),
                Err(e) => warn!(identity = %owner.identity, error = %e, "undecodable DataPacket"),
            }
            Box::pin(async {})
        }));
        Box::pin(async {})
    }));

    let mut remote_set = false;
    let mut pending: Vec<RTCIceCandidateInit> = Vec::new();
    let result = loop {
        tokio::select! {
            input = inputs_rx.recv() => match input {
                None => break Ok(()),
                Some(PublisherInput::Offer(sdp)) => {
                    let offer = match RTCSessionDescription::offer(sdp) {
                        Ok(offer) => offer,
                        Err(e) => break Err(format!("bad publisher offer: {e}")),
                    };
                    if let Err(e) = pc.set_remote_description(offer).await {
                        break Err(format!("bad publisher offer: {e}"));
                    }
                    remote_set = true;
                    for candidate in pending.drain(..) {
                        if let Err(e) = pc.add_ice_candidate(candidate).await {
                            debug!(error = %e, "cannot add a client publisher candidate");
                        }
                    }
                    let answer = match pc.create_answer(None).await {
                        Ok(answer) => answer,
                        Err(e) => break Err(e.to_string()),
                    };
                    if let Err(e) = pc.set_local_description(answer.clone()).await {
                        break Err(e.to_string());
                    }
                    let answer = proto::SignalResponse {
                        message: Some(Resp::Answer(proto::SessionDescription {
                            r#type: "answer".into(),
                            sdp: answer.sdp,
                            ..Default::default()
                        })),
                    };
                    if owner.signal_tx.send(answer).is_err() {
                        break Ok(());
                    }
                }
                Some(PublisherInput::Candidate(json)) => {
                    let Some(candidate) = parse_candidate(&json) else { continue };
                    if !remote_set {
                        pending.push(candidate);
                    } else if let Err(e) = pc.add_ice_candidate(candidate).await {
                        debug!(error = %e, "cannot add a client publisher candidate");
                    }
                }
            },
            Some(candidate) = candidates_rx.recv() => {
                if let Some(response) = trickle(&candidate, proto::SignalTarget::Publisher) {
                    let _ = owner.signal_tx.send(response);
                }
            }
        }
    };
    let _ = pc.close().await;
    result
}
