//! Everything the server acknowledged is still there after `kill -9`.

use std::collections::BTreeMap;
use std::time::Duration;

use huddle_proto::v1;
use huddle_proto::v1::entities_client::EntitiesClient;
use huddle_proto::v1::rooms_client::RoomsClient;
use tokio_stream::StreamExt;

use crate::common::Data;

const JOINS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let data = Data::new();
    let node = data.start();
    let channel = node.channel().await;
    let mut entities = EntitiesClient::new(channel.clone());
    let mut rooms = RoomsClient::new(channel);

    let entity = entities
        .create_entity(node.req(v1::CreateEntityRequest { name: "Durable".into(), ..Default::default() }))
        .await
        .expect("create entity")
        .into_inner();
    let new_room =
        |title: &str| v1::CreateRoomRequest { entity_id: entity.id.clone(), title: title.into(), ..Default::default() };
    let scheduled = rooms.create_room(node.req(new_room("later"))).await.expect("create room").into_inner();
    let cancelled = rooms.create_room(node.req(new_room("called off"))).await.expect("create room").into_inner();
    rooms
        .cancel_room(node.req(v1::CancelRoomRequest { id: cancelled.id.clone(), reason: "no quorum".into() }))
        .await
        .expect("cancel room");
    let live = rooms.create_room(node.req(new_room("live"))).await.expect("create room").into_inner();
    rooms.start_room(node.req(v1::StartRoomRequest { id: live.id.clone() })).await.expect("start room");

    // participant id -> whether their leave was acknowledged
    let mut acked: BTreeMap<String, bool> = BTreeMap::new();
    for i in 0..JOINS {
        let p = rooms
            .join_room(node.req(v1::JoinRoomRequest {
                room_id: live.id.clone(),
                kind: if i % 2 == 0 { v1::ParticipantKind::Human } else { v1::ParticipantKind::Agent } as i32,
                display_name: format!("p{i}"),
                ..Default::default()
            }))
            .await
            .expect("join room")
            .into_inner();
        acked.insert(p.id, false);
    }
    let leaver = acked.keys().next().unwrap().clone();
    rooms
        .leave_room(node.req(v1::LeaveRoomRequest { room_id: live.id.clone(), participant_id: leaver.clone() }))
        .await
        .expect("leave room");
    acked.insert(leaver, true);

    let before = rooms.get_room(node.req(v1::GetRoomRequest { id: live.id.clone() })).await.unwrap().into_inner();
    // created, started, JOINS joins, one leave
    let acked_events = 2 + JOINS as u64 + 1;
    assert!(before.event_seq >= acked_events, "event_seq {} < {acked_events}", before.event_seq);

    // Pull the plug, and come back on the same database file.
    node.kill_9();
    let node = data.start();
    let channel = node.channel().await;
    let mut entities = EntitiesClient::new(channel.clone());
    let mut rooms = RoomsClient::new(channel);

    let got = entities.get_entity(node.req(v1::GetEntityRequest { id: entity.id.clone() })).await;
    assert_eq!(got.expect("entity survives").into_inner().name, "Durable");

    let after = rooms.get_room(node.req(v1::GetRoomRequest { id: live.id.clone() })).await;
    let after = after.unwrap_or_else(|e| panic!("live room lost: {e}\n{}", node.logs())).into_inner();
    assert_eq!(after.status, v1::RoomStatus::Active as i32, "{after:?}");
    assert!(after.event_seq >= before.event_seq, "event_seq went back: {} -> {}", before.event_seq, after.event_seq);
    for (id, left) in &acked {
        let p = after.participants.iter().find(|p| &p.id == id);
        let p = p.unwrap_or_else(|| panic!("acknowledged participant {id} lost: {after:?}"));
        assert_eq!(p.left_at.is_some(), *left, "participant {id}: {p:?}");
    }

    let s = rooms.get_room(node.req(v1::GetRoomRequest { id: scheduled.id.clone() })).await.unwrap().into_inner();
    assert_eq!(s.status, v1::RoomStatus::Scheduled as i32);
    let c = rooms.get_room(node.req(v1::GetRoomRequest { id: cancelled.id.clone() })).await.unwrap().into_inner();
    assert_eq!(c.status, v1::RoomStatus::Cancelled as i32);
    assert_eq!(c.cancel_reason, "no quorum");

    // The event log: the snapshot covers every acknowledged event, and the
    // room still takes new ones after it.
    let mut watch = rooms
        .watch_room(node.req(v1::WatchRoomRequest { id: live.id.clone() }))
        .await
        .expect("watch room")
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(10), watch.next()).await;
    let first = first.expect("snapshot within 10s").expect("stream not empty").expect("snapshot ok");
    assert_eq!(first.r#type, "snapshot");
    let snap = first.snapshot.expect("snapshot carries the room");
    assert!(snap.event_seq >= acked_events && snap.event_seq >= before.event_seq, "{snap:?}");
    assert_eq!(snap.participants.len(), JOINS);

    rooms
        .join_room(node.req(v1::JoinRoomRequest {
            room_id: live.id.clone(),
            kind: v1::ParticipantKind::Human as i32,
            display_name: "after the crash".into(),
            ..Default::default()
        }))
        .await
        .expect("the recovered room takes new participants");
    let next = tokio::time::timeout(Duration::from_secs(10), watch.next()).await;
    let next = next.expect("an event within 10s").expect("stream open").expect("event ok");
    assert_eq!(next.seq, snap.event_seq + 1, "{next:?}");

    let listed = rooms
        .list_rooms(node.req(v1::ListRoomsRequest { entity_id: entity.id.clone(), ..Default::default() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.rooms.len(), 3, "{listed:?}");
}
