//! A database written before room events were typed reads unchanged.
//!
//! `tests/fixtures/events-v1.db` is a SQLite file written by the pre-typed-events
//! code (see `tests/fixtures/README.md`): two rooms whose logs hold every event
//! kind, produced by the room actor and the API of that code.

use std::collections::BTreeSet;

use huddle_core::{RoomEvent, RoomEventData};
use huddle_storage::RoomStore;
use huddle_storage::sqlite::SqliteStore;
use sqlx::Connection;
use sqlx::sqlite::SqliteConnection;

/// `(room_id, seq, kind, data)` of every stored event, as plain SQL reads them.
async fn raw_events(url: &str) -> Vec<(String, i64, String, String)> {
    let mut conn = SqliteConnection::connect(url).await.unwrap();
    let rows = sqlx::query_as("SELECT room_id, seq, kind, data FROM room_events ORDER BY room_id, seq")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    rows
}

#[tokio::test]
async fn a_database_written_before_typed_events_reads_and_writes_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events-v1.db");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/events-v1.db"), &path).unwrap();
    let url = format!("sqlite://{}", path.display());
    let before = raw_events(&url).await;
    assert!(before.len() > 11, "{before:?}");

    let store = SqliteStore::open(&url).await.unwrap();
    let mut kinds = BTreeSet::new();
    for room_id in ["room-1", "room-2"] {
        let events = store.list_events(room_id, 0, 1_000).await.unwrap();
        let stored: Vec<_> = before.iter().filter(|r| r.0 == room_id).collect();
        assert_eq!(events.len(), stored.len(), "{room_id}");
        for (e, (_, seq, kind, data)) in events.iter().zip(&stored) {
            assert_eq!(e.seq as i64, *seq);
            assert_eq!(e.kind(), kind);
            assert!(!matches!(e.data, RoomEventData::Unknown { .. }), "`{kind}` reads as its type");
            assert_eq!(&e.data.data_json(), data, "`{kind}` #{seq} of {room_id}");
            kinds.insert(kind.clone());
        }

        // written again under another room id, the rows hold the same bytes
        let mut room = store.get_room(room_id).await.unwrap();
        room.id = format!("{room_id}-copy");
        room.livekit_room = None;
        let copies = events.into_iter().map(|e| RoomEvent { room_id: room.id.clone(), ..e }).collect();
        store.create_room(room, copies).await.unwrap();
    }
    assert_eq!(kinds, RoomEventData::KINDS.iter().map(|k| k.to_string()).collect(), "the fixture has every kind");

    // a few payloads, typed
    let events = store.list_events("room-2", 0, 100).await.unwrap();
    let RoomEventData::Cancelled(cancelled) = &events.last().unwrap().data else { panic!("{events:?}") };
    assert_eq!(cancelled.reason.as_deref(), Some("storm"));
    let events = store.list_events("room-1", 0, 100).await.unwrap();
    let RoomEventData::Created(created) = &events[0].data else { panic!("{events:?}") };
    assert_eq!(created.livekit_room.as_deref(), Some("standup-42"));
    let segment = events
        .iter()
        .find_map(|e| match &e.data {
            RoomEventData::TranscriptSegment(s) => Some(s),
            _ => None,
        })
        .unwrap();
    assert_eq!((segment.start_ms, segment.end_ms, segment.confidence), (1_230, 3_400, 0.9));
    drop(store);

    let after = raw_events(&url).await;
    for (room_id, seq, kind, data) in &before {
        let copy = after.iter().find(|r| r.0 == format!("{room_id}-copy") && r.1 == *seq).unwrap();
        assert_eq!((&copy.2, &copy.3), (kind, data), "`{kind}` #{seq} of {room_id}, written again");
    }
}
