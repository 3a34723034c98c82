//! SQLite-only behaviour: the file on disk, durability across reopen, and the
//! in-memory database.

use huddle_core::{ApiKey, NewDepartment, RoomStatus};
use huddle_storage::sqlite::SqliteStore;
use huddle_storage::{EntityStore, PageRequest, RoomStore, StorageError};
use sqlx::Connection;
use sqlx::sqlite::SqliteConnection;

use crate::assert_err;
use crate::common::{Backend, TestDb, change, create_room, entity, participant, room, run};

#[tokio::test]
async fn persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("durable.db");
    assert!(!path.exists());
    let url = format!("sqlite://{}", path.display());

    let store = SqliteStore::open(&url).await.unwrap();
    assert!(path.exists(), "open creates the database file");
    let acme = entity(&store, "Acme").await;
    let sales = store
        .create_department(NewDepartment {
            entity_id: acme.id.clone(),
            name: "Sales".into(),
            instructions: "sell".into(),
        })
        .await
        .unwrap();
    let key = ApiKey {
        id: "k1".into(),
        entity_id: acme.id.clone(),
        key_hash: "aa".repeat(32),
        prefix: "hk_aa".into(),
        created_at_ms: 1,
        last_used_at_ms: None,
        revoked_at_ms: None,
    };
    store.create_api_key(key.clone()).await.unwrap();
    let mut r = room(&acme.id, "r1", 1_000);
    r.department_id = Some(sales.id.clone());
    let r = create_room(&store, r).await;
    let c = change(&r, |room| room.status = RoomStatus::Active, vec![participant("r1", "p1", 1_100)], &["started"]);
    store.commit_room_change(c.clone()).await.unwrap();
    drop(store);

    let store = SqliteStore::open(&url).await.unwrap();
    assert_eq!(store.get_entity(&acme.id).await.unwrap(), acme);
    assert_eq!(store.get_department(&sales.id).await.unwrap(), sales);
    assert_eq!(store.find_api_key(&key.key_hash).await.unwrap(), key);
    assert_eq!(store.get_room("r1").await.unwrap(), c.room);
    assert_eq!(store.list_participants("r1").await.unwrap(), c.participants);
    let events = store.list_events("r1", 0, 10).await.unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(events[1..], c.events[..]);
    assert_eq!(store.list_open_room_ids().await.unwrap(), vec!["r1".to_string()]);
}

#[tokio::test]
async fn database_is_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("wal.db").display());
    let store = SqliteStore::open(&url).await.unwrap();
    entity(&store, "Acme").await;

    // The journal mode is a property of the file: a plain connection sees it.
    let mut conn = SqliteConnection::connect(&url).await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut conn).await.unwrap();
    assert_eq!(mode, "wal");
    let tables: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    for table in ["api_keys", "departments", "entities", "participants", "room_events", "rooms"] {
        assert!(tables.iter().any(|t| t == table), "missing table {table} in {tables:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_store_is_one_database() {
    let store = huddle_storage::open("sqlite::memory:").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.backend(), "sqlite");

    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { entity(&*store, &format!("e{i}")).await }));
    }
    let mut created = Vec::new();
    for task in tasks {
        created.push(task.await.unwrap());
    }
    let listed = store.list_entities(PageRequest::default()).await.unwrap();
    assert_eq!(listed.items.len(), 8, "every connection sees the same in-memory database");
    for e in &created {
        assert_eq!(store.get_entity(&e.id).await.unwrap(), *e);
    }
    // Lists that fall back to an existence check hold their connection.
    assert_eq!(store.list_departments(&created[0].id).await.unwrap(), vec![]);
    assert_err!(store.list_departments("missing").await, StorageError::NotFound { what: "entity", .. });

    // A second in-memory store is a database of its own.
    let other = huddle_storage::open("sqlite::memory:").await.unwrap_or_else(|e| panic!("{e}"));
    assert!(other.list_entities(PageRequest::default()).await.unwrap().items.is_empty());
}

#[tokio::test]
async fn corrupt_event_json_is_an_error() {
    run(Backend::Sqlite, |db| async move { corrupt_event_json(&db).await }).await;
}

async fn corrupt_event_json(db: &TestDb) {
    let store = db.store();
    let acme = entity(store, "Acme").await;
    create_room(store, room(&acme.id, "r1", 1_000)).await;
    assert_eq!(store.list_events("r1", 0, 10).await.unwrap().len(), 1);
    assert_eq!(db.execute_raw("UPDATE room_events SET data = '{oops' WHERE room_id = $1", "r1").await, 1);
    assert_err!(store.list_events("r1", 0, 10).await, StorageError::Corrupt { column: "room_events.data", .. });
}
