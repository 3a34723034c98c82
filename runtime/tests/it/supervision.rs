//! A room actor that panics is rebuilt from persisted state by its
//! supervisor: nothing acknowledged is lost and watchers see `restarted`.

use futures::StreamExt;
use huddle_core::RoomStatus;
use huddle_runtime::WatchItem;

use crate::common::{self, Fixture, entity, eventually, human, room};

async fn panic_restarts_room_from_persisted_state(f: Fixture) {
    let api = f.rt.admin();
    let e = entity(&api, "Acme", None).await;
    let id = room(&api, &e.id).await.view.room.id;
    api.start_room(&id).await.unwrap();
    let ada = api.join_room(&id, human("Ada")).await.unwrap();
    let bob = api.join_room(&id, human("Bob")).await.unwrap();
    api.leave_room(&id, &bob.id).await.unwrap();
    let before = api.get_room(&id).await.unwrap();

    let mut watch = api.watch_room(&id).await.unwrap();
    let Some(Ok(WatchItem::Snapshot(snap))) = watch.next().await else { panic!("first item must be a snapshot") };
    assert_eq!(snap.view, before.view);

    let restarts_before = f.rt.stats().await.unwrap().restarts_total;
    api.inject_room_panic(&id).await.unwrap();

    // the watcher sees the restart, with the next sequence number
    let Some(Ok(WatchItem::Event(ev))) = watch.next().await else { panic!("expected an event") };
    assert_eq!(ev.kind(), "restarted");
    assert_eq!(ev.seq, before.view.room.event_seq + 1);
    assert!(ev.data.data_value()["reason"].as_str().unwrap().contains("injected panic"), "{}", ev.data);
    eventually("restart counted", || async { f.rt.stats().await.unwrap().restarts_total == restarts_before + 1 }).await;

    // everything acknowledged before the panic is still there
    let after = api.get_room(&id).await.unwrap();
    assert_eq!(after.view.participants, before.view.participants);
    assert_eq!(after.view.room.status, RoomStatus::Active);
    assert_eq!(after.view.room.event_seq, before.view.room.event_seq + 1);

    // and the room keeps working; the watcher sees the new change
    let cy = api.join_room(&id, human("Cy")).await.unwrap();
    let Some(Ok(WatchItem::Event(ev))) = watch.next().await else { panic!("expected an event") };
    assert_eq!(
        (ev.kind(), ev.data.data_value()["participant_id"].as_str()),
        ("participant_joined", Some(cy.id.as_str()))
    );
    api.leave_room(&id, &ada.id).await.unwrap();
    f.rt.shutdown().await;
}

#[tokio::test]
async fn panic_restarts_room_sqlite() {
    panic_restarts_room_from_persisted_state(common::sqlite().await).await;
}

#[tokio::test]
async fn panic_restarts_room_postgres() {
    panic_restarts_room_from_persisted_state(common::postgres().await).await;
}

#[tokio::test]
async fn repeated_panics_back_off_and_other_rooms_are_untouched() {
    let f = common::sqlite().await;
    let api = f.rt.admin();
    let e = entity(&api, "Acme", None).await;
    let flaky = room(&api, &e.id).await.view.room.id;
    let calm = room(&api, &e.id).await.view.room.id;
    api.start_room(&calm).await.unwrap();
    api.join_room(&calm, human("Ada")).await.unwrap();
    for n in 1..=3u64 {
        // wait until the previous incarnation is back before crashing it again
        eventually("room back", || async { api.get_room(&flaky).await.is_ok() }).await;
        api.join_room(&flaky, human(&format!("P{n}"))).await.unwrap();
        api.inject_room_panic(&flaky).await.unwrap();
        eventually("restart", || async { f.rt.stats().await.unwrap().restarts_total == n }).await;
    }
    let events = f.rt.store().list_events(&flaky, 0, 100).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.kind() == "restarted").count(), 3);
    assert_eq!(api.get_room(&flaky).await.unwrap().view.participants.len(), 3);
    // the calm room never restarted
    let calm_events = f.rt.store().list_events(&calm, 0, 100).await.unwrap();
    assert!(calm_events.iter().all(|e| e.kind() != "restarted"));
    f.rt.shutdown().await;
}
