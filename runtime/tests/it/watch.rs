//! WatchRoom: a snapshot first, then every event in order, ending with the room.

use std::time::Duration;

use futures::StreamExt;
use huddle_runtime::{RoomsConfig, Runtime, WatchItem};

use crate::common::{self, entity, human, room};

#[tokio::test]
async fn snapshot_then_ordered_events_then_end() {
    let f = common::sqlite().await;
    let api = f.rt.admin();
    let e = entity(&api, "Acme", None).await;
    let id = room(&api, &e.id).await.view.room.id;
    let mut w = api.watch_room(&id).await.unwrap();
    let Some(Ok(WatchItem::Snapshot(s))) = w.next().await else { panic!("snapshot first") };
    assert_eq!(s.view.room.event_seq, 1);
    api.start_room(&id).await.unwrap();
    let p = api.join_room(&id, human("Ada")).await.unwrap();
    api.leave_room(&id, &p.id).await.unwrap();
    api.end_room(&id).await.unwrap();
    let mut kinds = vec![];
    while let Some(item) = tokio::time::timeout(Duration::from_secs(5), w.next()).await.expect("stream stalled") {
        let WatchItem::Event(ev) = item.unwrap() else { panic!("only one snapshot") };
        kinds.push((ev.seq, ev.kind().to_string()));
    }
    assert_eq!(
        kinds,
        [
            (2, "started".to_string()),
            (3, "participant_joined".to_string()),
            (4, "participant_left".to_string()),
            (5, "completed".to_string())
        ]
    );
    // watching an ended room yields the snapshot and ends
    let mut w = api.watch_room(&id).await.unwrap();
    assert!(matches!(w.next().await, Some(Ok(WatchItem::Snapshot(_)))));
    assert!(w.next().await.is_none());
    f.rt.shutdown().await;
}

#[tokio::test]
async fn a_lagging_watcher_catches_up_from_the_log_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::builder()
        .database_url(format!("sqlite://{}", dir.path().join("w.db").display()))
        .rooms(RoomsConfig { watch_buffer: 2, ..RoomsConfig::default() })
        .build()
        .await
        .unwrap();
    let api = rt.admin();
    let e = entity(&api, "Acme", Some(1000)).await;
    let id = room(&api, &e.id).await.view.room.id;
    let mut w = api.watch_room(&id).await.unwrap();
    assert!(matches!(w.next().await, Some(Ok(WatchItem::Snapshot(_)))));
    for i in 0..150 {
        api.join_room(&id, human(&format!("P{i}"))).await.unwrap();
    }
    let mut seqs = vec![];
    while seqs.len() < 150 {
        let item = tokio::time::timeout(Duration::from_secs(5), w.next()).await.expect("stalled").unwrap();
        let WatchItem::Event(ev) = item.unwrap() else { panic!() };
        seqs.push(ev.seq);
    }
    assert_eq!(seqs, (2..=151).collect::<Vec<u64>>());
    rt.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_watch_streams() {
    let f = common::sqlite().await;
    let api = f.rt.admin();
    let e = entity(&api, "Acme", None).await;
    let id = room(&api, &e.id).await.view.room.id;
    let mut w = api.watch_room(&id).await.unwrap();
    assert!(matches!(w.next().await, Some(Ok(WatchItem::Snapshot(_)))));
    f.rt.shutdown().await;
    let end = tokio::time::timeout(Duration::from_secs(5), w.next()).await.expect("stream must end on shutdown");
    assert!(end.is_none());
}
