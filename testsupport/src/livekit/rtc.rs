//! `/rtc`: one participant's signalling connection (livekit_rtc.proto). Sends `join`, tells
//! the other participants through `update`, answers `ping`/`ping_req`, and treats `leave`
//! or a closed socket as leaving. When the room has published audio, a subscriber peer
//! ([`super::media`]) offers it to the participant; its `answer` and subscriber trickles go
//! to that peer. The participant's publisher `offer` and publisher trickles go to a publisher
//! peer, which answers and records the data packets the participant sends.

use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use livekit_api::access_token::Claims;
use livekit_protocol as proto;
use prost::Message as _;
use proto::signal_request::Message as Req;
use proto::signal_response::Message as Resp;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tracing::debug;

use super::media::{PeerInput, PeerOwner, PublisherInput, PublisherPeer, SubscriberPeer};
use super::{Inner, JoinRecord, Participant, RoomState, ServerEvent, now_ms};

/// A failure the test injects into one participant's connection.
pub(crate) enum Fault {
    /// Drop the socket without a close frame.
    DropSocket,
    /// Close the server's peer connections; signalling stays up.
    DropMedia,
}

/// An authorised `/rtc` upgrade.
pub(crate) struct RtcJoin {
    pub protocol: Option<i32>,
    pub sdk: Option<String>,
    pub bearer: bool,
    pub claims: Claims,
}

pub(crate) async fn serve(inner: Arc<Inner>, ws: WebSocketStream<super::BoxIo>, join: RtcJoin) {
    let room_name = join.claims.video.room.clone();
    let identity = join.claims.sub.clone();
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<proto::SignalResponse>();
    let (control_tx, mut control_rx) = mpsc::unbounded_channel::<Fault>();

    let info = proto::ParticipantInfo {
        sid: inner.new_id("PA_"),
        identity: identity.clone(),
        name: join.claims.name.clone(),
        metadata: join.claims.metadata.clone(),
        attributes: join.claims.attributes.clone(),
        state: proto::participant_info::State::Joined as i32,
        joined_at: now_ms() / 1000,
        joined_at_ms: now_ms(),
        kind: if join.claims.kind == "agent" {
            proto::participant_info::Kind::Agent as i32
        } else {
            proto::participant_info::Kind::Standard as i32
        },
        permission: Some(proto::ParticipantPermission {
            can_subscribe: join.claims.video.can_subscribe(),
            can_publish: join.claims.video.can_publish(),
            can_publish_data: join.claims.video.can_publish_data(),
            ..Default::default()
        }),
        client_protocol: join.protocol.unwrap_or_default(),
        version: 1,
        ..Default::default()
    };
    let sid = info.sid.clone();

    let publications;
    let join_response = {
        let mut state = inner.state();
        let room_sid = inner.new_id("RM_");
        let room = state.rooms.entry(room_name.clone()).or_insert_with(|| RoomState {
            sid: room_sid,
            created_ms: now_ms(),
            participants: Default::default(),
            publications: Vec::new(),
        });
        // A second connection with the same identity replaces the first, as on a real server.
        if let Some(old) = room.participants.remove(&identity) {
            let _ = old.tx.send(leave(proto::DisconnectReason::DuplicateIdentity));
        }
        let others: Vec<_> = room.participants.values().map(|p| p.info.clone()).collect();
        let room_publications = room.publications.clone();
        for other in room.participants.values() {
            let _ = other.tx.send(update(info.clone()));
        }
        room.participants
            .insert(identity.clone(), Participant { info: info.clone(), tx: tx.clone(), control: Some(control_tx) });
        let room_info = proto::Room {
            sid: room.sid.clone(),
            name: room_name.clone(),
            creation_time: room.created_ms / 1000,
            creation_time_ms: room.created_ms,
            num_participants: room.participants.len() as u32,
            ..Default::default()
        };
        state.joins.push(JoinRecord {
            room: room_name.clone(),
            identity: identity.clone(),
            sid: sid.clone(),
            protocol: join.protocol,
            sdk: join.sdk.clone(),
            bearer: join.bearer,
        });
        state.requests.entry((room_name.clone(), identity.clone())).or_default();
        publications = room_publications;
        proto::JoinResponse {
            room: Some(room_info),
            participant: Some(info.clone()),
            other_participants: others,
            server_version: "huddle-testsupport".into(),
            subscriber_primary: true,
            ping_interval: inner.config.ping_interval_secs,
            ping_timeout: inner.config.ping_timeout_secs,
            server_info: Some(inner.server_info()),
            ..Default::default()
        }
    };
    inner.emit(ServerEvent::ParticipantJoined {
        room: room_name.clone(),
        identity: identity.clone(),
        sid: sid.clone(),
    });
    debug!(room = %room_name, %identity, %sid, "participant joined");

    let first = proto::SignalResponse { message: Some(Resp::Join(join_response)) };
    if sink.send(Message::Binary(first.encode_to_vec().into())).await.is_err() {
        depart(&inner, &room_name, &identity, &sid);
        return;
    }

    let owner =
        PeerOwner { inner: inner.clone(), room: room_name.clone(), identity: identity.clone(), signal_tx: tx.clone() };
    let mut subscriber = (!publications.is_empty() && join.claims.video.can_subscribe())
        .then(|| SubscriberPeer::spawn(owner.clone(), publications));
    // Created on the participant's first publisher offer.
    let mut publisher: Option<PublisherPeer> = None;

    loop {
        tokio::select! {
            Some(fault) = control_rx.recv() => match fault {
                // Dropping the stream halves without a close frame is what a dead network looks like.
                Fault::DropSocket => {
                    debug!(room = %room_name, %identity, "test: dropping the socket");
                    break;
                }
                Fault::DropMedia => {
                    debug!(room = %room_name, %identity, "test: closing the peer connections");
                    subscriber = None;
                    publisher = None;
                }
            },
            outgoing = rx.recv() => {
                let Some(response) = outgoing else { break };
                let is_leave = matches!(response.message, Some(Resp::Leave(_)));
                if sink.send(Message::Binary(response.encode_to_vec().into())).await.is_err() || is_leave {
                    let _ = sink.close().await;
                    break;
                }
            }
            incoming = stream.next() => {
                let bytes = match incoming {
                    Some(Ok(Message::Binary(bytes))) => bytes,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                let request = match proto::SignalRequest::decode(bytes.as_ref()) {
                    Ok(request) => request,
                    Err(e) => {
                        debug!(%identity, error = %e, "undecodable SignalRequest");
                        continue;
                    }
                };
                inner.state().requests.entry((room_name.clone(), identity.clone())).or_default().push(request.clone());
                inner.emit(ServerEvent::SignalRequest {
                    room: room_name.clone(),
                    identity: identity.clone(),
                    request: Box::new(request.clone()),
                });
                let reply = match request.message {
                    Some(Req::Ping(ts)) => Some(Resp::Pong(ts)),
                    Some(Req::PingReq(ping)) => {
                        Some(Resp::PongResp(proto::Pong { last_ping_timestamp: ping.timestamp, timestamp: now_ms() }))
                    }
                    Some(Req::Leave(_)) => {
                        let _ = sink.close().await;
                        break;
                    }
                    Some(Req::Answer(answer)) => {
                        if let Some(peer) = &subscriber {
                            peer.send(PeerInput::Answer(answer.sdp));
                        }
                        None
                    }
                    Some(Req::Trickle(trickle)) if trickle.target == proto::SignalTarget::Subscriber as i32 => {
                        if let Some(peer) = &subscriber {
                            peer.send(PeerInput::Candidate(trickle.candidate_init));
                        }
                        None
                    }
                    Some(Req::Offer(offer)) => {
                        publisher.get_or_insert_with(|| PublisherPeer::spawn(owner.clone())).send(PublisherInput::Offer(offer.sdp));
                        None
                    }
                    Some(Req::Trickle(trickle)) if trickle.target == proto::SignalTarget::Publisher as i32 => {
                        if let Some(peer) = &publisher {
                            peer.send(PublisherInput::Candidate(trickle.candidate_init));
                        }
                        None
                    }
                    _ => None,
                };
                if let Some(reply) = reply {
                    let response = proto::SignalResponse { message: Some(reply) };
                    if sink.send(Message::Binary(response.encode_to_vec().into())).await.is_err() {
                        break;
                    }
                }
            }
        }
    }
    depart(&inner, &room_name, &identity, &sid);
}

/// Removes the participant (if this connection still owns the identity) and tells the others.
fn depart(inner: &Inner, room_name: &str, identity: &str, sid: &str) {
    {
        let mut state = inner.state();
        let Some(room) = state.rooms.get_mut(room_name) else { return };
        match room.participants.get(identity) {
            Some(p) if p.info.sid == sid => {}
            _ => return,
        }
        let mut gone = room.participants.remove(identity).map(|p| p.info).unwrap_or_default();
        gone.state = proto::participant_info::State::Disconnected as i32;
        gone.disconnect_reason = proto::DisconnectReason::ClientInitiated as i32;
        gone.version += 1;
        for other in room.participants.values() {
            let _ = other.tx.send(update(gone.clone()));
        }
        if room.participants.is_empty() {
            state.rooms.remove(room_name);
        }
    }
    debug!(room = %room_name, %identity, %sid, "participant left");
    inner.emit(ServerEvent::ParticipantLeft { room: room_name.into(), identity: identity.into(), sid: sid.into() });
}

pub(crate) fn update(info: proto::ParticipantInfo) -> proto::SignalResponse {
    proto::SignalResponse { message: Some(Resp::Update(proto::ParticipantUpdate { participants: vec![info] })) }
}

fn leave(reason: proto::DisconnectReason) -> proto::SignalResponse {
    proto::SignalResponse {
        message: Some(Resp::Leave(proto::LeaveRequest {
            can_reconnect: false,
            reason: reason as i32,
            action: proto::leave_request::Action::Disconnect as i32,
            regions: None,
        })),
    }
}
