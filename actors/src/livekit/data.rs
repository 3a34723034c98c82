//! Data the agent publishes into a LiveKit room: protobuf `DataPacket`s on the publisher
//! connection's `_reliable` (ordered, retransmitted) or `_lossy` (unordered, no
//! retransmits) data channel, as LiveKit clients send them.
//!
//! [`DataSender`] queues packets for the session's media task, which sends them once the
//! channel is open; [`transcription`] and [`user_packet`] build the two packets huddle sends
//! (captions LiveKit clients display, and JSON on a topic).

use livekit_protocol as proto;
use tokio::sync::mpsc;

use super::{LiveKitError, Result};

/// LiveKit's label of the ordered, reliable data channel.
pub const RELIABLE_LABEL: &str = "_reliable";
/// LiveKit's label of the unordered data channel without retransmits.
pub const LOSSY_LABEL: &str = "_lossy";

/// Which data channel a packet travels on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reliability {
    /// `_reliable`: ordered, retransmitted until delivered.
    Reliable,
    /// `_lossy`: unordered, never retransmitted; for data that is stale when late.
    Lossy,
}

impl Reliability {
    pub fn label(self) -> &'static str {
        match self {
            Reliability::Reliable => RELIABLE_LABEL,
            Reliability::Lossy => LOSSY_LABEL,
        }
    }
}

pub(crate) struct Outgoing {
    pub packet: proto::DataPacket,
    pub reliability: Reliability,
}

/// Publishes `DataPacket`s into the joined room. Cheap to clone; sending never waits.
///
/// Packets sent before the data channels open are queued (up to the session's
/// `data_buffer`); a full queue refuses new packets rather than delaying the caller.
#[derive(Clone, Debug)]
pub struct DataSender {
    tx: mpsc::Sender<Outgoing>,
}

impl DataSender {
    pub(crate) fn channel(buffer: usize) -> (DataSender, mpsc::Receiver<Outgoing>) {
        let (tx, rx) = mpsc::channel(buffer.max(1));
        (DataSender { tx }, rx)
    }

    /// Queues `packet` for the room. Fails with [`LiveKitError::Closed`] once the session has
    /// ended, and with [`LiveKitError::Media`] when the queue is full (the data channel is
    /// not open yet, or the connection is slower than the sender).
    pub fn send(&self, packet: proto::DataPacket, reliability: Reliability) -> Result<()> {
        self.tx.try_send(Outgoing { packet, reliability }).map_err(|e| match e {
            mpsc::error::TrySendError::Closed(_) => LiveKitError::Closed,
            mpsc::error::TrySendError::Full(_) => {
                LiveKitError::Media("the data channel queue is full; packet dropped".into())
            }
        })
    }

    /// True once the session's media task has ended.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// One final caption for `identity`'s speech on `track_sid`, as LiveKit's `Transcription`
/// packet (clients show it as captions). Times are milliseconds.
pub fn transcription(identity: &str, track_sid: &str, segment: proto::TranscriptionSegment) -> proto::DataPacket {
    #[allow(deprecated)] // `kind` is deprecated but still read by older clients.
    proto::DataPacket {
        kind: proto::data_packet::Kind::Reliable as i32,
        value: Some(proto::data_packet::Value::Transcription(proto::Transcription {
            transcribed_participant_identity: identity.into(),
            track_id: track_sid.into(),
            segments: vec![segment],
        })),
        ..Default::default()
    }
}

/// An application message on `topic`, delivered to every participant.
pub fn user_packet(topic: &str, payload: Vec<u8>) -> proto::DataPacket {
    #[allow(deprecated)]
    proto::DataPacket {
        kind: proto::data_packet::Kind::Reliable as i32,
        value: Some(proto::data_packet::Value::User(proto::UserPacket {
            payload,
            topic: Some(topic.into()),
            ..Default::default()
        })),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn packets_round_trip_as_livekit_reads_them() {
        let segment = proto::TranscriptionSegment {
            id: "r/7".into(),
            text: "hello".into(),
            start_time: 10,
            end_time: 900,
            r#final: true,
            language: "en".into(),
        };
        let bytes = transcription("ada", "TR_1", segment.clone()).encode_to_vec();
        let back = proto::DataPacket::decode(bytes.as_slice()).unwrap();
        let Some(proto::data_packet::Value::Transcription(t)) = back.value else { panic!("not a transcription") };
        assert_eq!((t.transcribed_participant_identity.as_str(), t.track_id.as_str()), ("ada", "TR_1"));
        assert_eq!(t.segments, vec![segment]);

        let bytes = user_packet("huddle.suggestion", b"{}".to_vec()).encode_to_vec();
        let back = proto::DataPacket::decode(bytes.as_slice()).unwrap();
        let Some(proto::data_packet::Value::User(u)) = back.value else { panic!("not a user packet") };
        assert_eq!((u.topic.as_deref(), u.payload.as_slice()), (Some("huddle.suggestion"), &b"{}"[..]));
    }

    #[tokio::test]
    async fn a_full_or_closed_queue_refuses_instead_of_waiting() {
        let (sender, rx) = DataSender::channel(1);
        sender.send(user_packet("t", vec![1]), Reliability::Reliable).unwrap();
        assert!(matches!(sender.send(user_packet("t", vec![2]), Reliability::Lossy), Err(LiveKitError::Media(_))));
        drop(rx);
        assert!(sender.is_closed());
        assert!(matches!(sender.send(user_packet("t", vec![3]), Reliability::Reliable), Err(LiveKitError::Closed)));
    }
}
