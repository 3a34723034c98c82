//! `huddle.v1.Rooms`.

use futures::StreamExt;
use huddle_core::{NewParticipant, NewRoom, now_ms};
use huddle_proto::conversions::{self as conv, ms};
use huddle_proto::v1::{self, rooms_server::Rooms};
use huddle_storage::{PageRequest, RoomFilter};
use tonic::{Request, Response, Status, Streaming};

use super::{Services, non_empty};
use crate::api::{RoomDetails, WatchItem, WatchStream};
use crate::error::ApiError;

pub struct RoomsService(pub(super) Services);

type Reply<T> = Result<Response<T>, Status>;

fn room_reply(d: RoomDetails) -> v1::Room {
    conv::room(d.view.room, d.view.participants, d.effective_instructions, now_ms())
}

#[tonic::async_trait]
impl Rooms for RoomsService {
    async fn create_room(&self, req: Request<v1::CreateRoomRequest>) -> Reply<v1::Room> {
        let api = self.0.api(&req).await?;
        let r = req.into_inner();
        let new = NewRoom {
            entity_id: r.entity_id,
            department_id: non_empty(r.department_id),
            title: r.title,
            custom_instructions: r.custom_instructions,
            max_participants: r.max_participants,
            scheduled_for_ms: r.scheduled_for.as_ref().map(ms),
            livekit_room: non_empty(r.livekit_room),
        };
        Ok(Response::new(room_reply(api.create_room(new).await?)))
    }

    async fn get_room(&self, req: Request<v1::GetRoomRequest>) -> Reply<v1::Room> {
        let api = self.0.api(&req).await?;
        Ok(Response::new(room_reply(api.get_room(&req.into_inner().id).await?)))
    }

    async fn list_rooms(&self, req: Request<v1::ListRoomsRequest>) -> Reply<v1::ListRoomsResponse> {
        let api = self.0.api(&req).await?;
        let r = req.into_inner();
        let status = match r.status {
            0 => None,
            raw => Some(
                conv::room_status(raw)
                    .ok_or_else(|| ApiError::invalid("status", format!("unknown room status {raw}")))?,
            ),
        };
        let filter = RoomFilter {
            entity_id: non_empty(r.entity_id),
            status,
            created_from_ms: r.created_after.as_ref().map(ms),
            created_to_ms: r.created_before.as_ref().map(ms),
        };
        let page = api.list_rooms(filter, PageRequest { size: r.page_size, token: r.page_token }).await?;
        let now = now_ms();
        Ok(Response::new(v1::ListRoomsResponse {
            // Listings carry rooms without participants or instructions: use GetRoom for those.
            rooms: page.items.into_iter().map(|room| conv::room(room, vec![], String::new(), now)).collect(),
            next_page_token: page.next_token,
        }))
    }

    async fn start_room(&self, req: Request<v1::StartRoomRequest>) -> Reply<v1::Room> {
        let api = self.0.api(&req).await?;
        Ok(Response::new(room_reply(api.start_room(&req.into_inner().id).await?)))
    }

    async fn end_room(&self, req: Request<v1::EndRoomRequest>) -> Reply<v1::Room> {
        let api = self.0.api(&req).await?;
        Ok(Response::new(room_reply(api.end_room(&req.into_inner().id).await?)))
    }

    async fn cancel_room(&self, req: Request<v1::CancelRoomRequest>) -> Reply<v1::Room> {
        let api = self.0.api(&req).await?;
        let r = req.into_inner();
        Ok(Response::new(room_reply(api.cancel_room(&r.id, &r.reason).await?)))
    }

    async fn join_room(&self, req: Request<v1::JoinRoomRequest>) -> Reply<v1::Participant> {
        let api = self.0.api(&req).await?;
        let r = req.into_inner();
        let kind = conv::participant_kind(r.kind)
            .ok_or_else(|| ApiError::invalid("kind", "must be PARTICIPANT_KIND_HUMAN or PARTICIPANT_KIND_AGENT"))?;
        let new = NewParticipant {
            kind,
            display_name: r.display_name,
            email: non_empty(r.email),
            phone: non_empty(r.phone),
            identity: r.identity,
        };
        let (p, access) = api.join_room_with_access(&r.room_id, new).await?;
        let mut reply = conv::participant(p, now_ms());
        if let Some(a) = access {
            reply.livekit_token = a.token;
            reply.livekit_url = a.url;
        }
        Ok(Response::new(reply))
    }

    async fn list_recordings(&self, req: Request<v1::ListRecordingsRequest>) -> Reply<v1::ListRecordingsResponse> {
        let api = self.0.api(&req).await?;
        let recordings = api.list_recordings(&req.into_inner().room_id).await?;
        Ok(Response::new(v1::ListRecordingsResponse { recordings: recordings.into_iter().map(Into::into).collect() }))
    }

    async fn leave_room(&self, req: Request<v1::LeaveRoomRequest>) -> Reply<v1::Participant> {
        let api = self.0.api(&req).await?;
        let r = req.into_inner();
        let p = api.leave_room(&r.room_id, &r.participant_id).await?;
        Ok(Response::new(conv::participant(p, now_ms())))
    }

    type WatchRoomStream = futures::stream::BoxStream<'static, Result<v1::RoomEvent, Status>>;

    async fn watch_room(&self, req: Request<v1::WatchRoomRequest>) -> Reply<Self::WatchRoomStream> {
        let api = self.0.api(&req).await?;
        let stream: WatchStream = api.watch_room(&req.into_inner().id).await?;
        let out = stream.map(|item| match item {
            Ok(WatchItem::Snapshot(d)) => {
                let room = room_reply(d);
                Ok(v1::RoomEvent {
                    room_id: room.id.clone(),
                    seq: room.event_seq,
                    r#type: "snapshot".into(),
                    data_json: "{}".into(),
                    at: Some(conv::ts(now_ms())),
                    snapshot: Some(room),
                    segment: None,
                    suggestion: None,
                })
            }
            Ok(WatchItem::Event(e)) => Ok(e.into()),
            Err(e) => Err(Status::from(e)),
        });
        Ok(Response::new(out.boxed()))
    }

    async fn stream_audio(&self, req: Request<Streaming<v1::AudioChunk>>) -> Reply<v1::StreamAudioResult> {
        let api = self.0.api(&req).await?;
        let mut chunks = req.into_inner();
        let first = match chunks.message().await? {
            Some(c) => c,
            None => return Err(ApiError::invalid("audio", "the stream ended before its first chunk").into()),
        };
        if first.room_id.is_empty() || first.participant_id.is_empty() || first.sample_rate == 0 {
            return Err(ApiError::invalid(
                "audio",
                "the first chunk must carry room_id, participant_id and sample_rate",
            )
            .into());
        }
        let mut stream = api.open_audio(&first.room_id, &first.participant_id, first.sample_rate).await?;
        stream.push_pcm16(&first.pcm16).await?;
        while let Some(c) = chunks.message().await? {
            let same = |given: &str, opened: &str| given.is_empty() || given == opened;
            if !same(&c.room_id, stream.room_id())
                || !same(&c.participant_id, stream.participant_id())
                || (c.sample_rate != 0 && c.sample_rate != first.sample_rate)
            {
                return Err(ApiError::invalid(
                    "audio",
                    "room_id, participant_id and sample_rate cannot change within a stream",
                )
                .into());
            }
            stream.push_pcm16(&c.pcm16).await?;
        }
        let audio_ms = stream.received_ms();
        let s = stream.finish().await?;
        Ok(Response::new(v1::StreamAudioResult {
            audio_ms,
            utterances: s.utterances,
            segments: s.segments,
            dropped_ms: s.dropped_ms,
        }))
    }

    async fn get_transcript(&self, req: Request<v1::GetTranscriptRequest>) -> Reply<v1::GetTranscriptResponse> {
        let api = self.0.api(&req).await?;
        let r = req.into_inner();
        let page = api.get_transcript(&r.room_id, PageRequest { size: r.page_size, token: r.page_token }).await?;
        Ok(Response::new(v1::GetTranscriptResponse {
            segments: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_token,
        }))
    }
}
