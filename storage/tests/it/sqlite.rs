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

/// A database from before LiveKit names had owners (migrations 0001-0005) where two
/// entities bound the same LiveKit room name: migrating gives the name to the entity
/// of its earliest room and unbinds the other entity's rooms.
#[tokio::test]
async fn migrating_gives_each_livekit_name_to_its_first_entity() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("legacy.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let old = dir.path().join("migrations");
    std::fs::create_dir(&old).unwrap();
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    for name in
        ["0001_init.sql", "0002_transcripts.sql", "0003_knowledge.sql", "0004_notifications.sql", "0005_livekit.sql"]
    {
        std::fs::copy(all.join(name), old.join(name)).unwrap();
    }
    let mut conn = SqliteConnection::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(old.as_path()).await.unwrap().run(&mut conn).await.unwrap();
    for (id, at) in [("acme", 1), ("globex", 2)] {
        sqlx::query(
            "INSERT INTO entities (id, name, kind, default_instructions, max_participants, \
             recording_retention_days, active, created_at_ms, updated_at_ms) VALUES ($1, $1, '', '', 10, 0, 1, $2, $2)",
        )
        .bind(id)
        .bind(at)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    // Acme's room on `board` ended; Globex then bound `board` too (allowed before 0006)
    for (id, entity, status, at, name) in [
        ("a1", "acme", "COMPLETED", 1_000, Some("board")),
        ("g1", "globex", "ACTIVE", 2_000, Some("board")),
        ("g2", "globex", "SCHEDULED", 3_000, Some("globex-own")),
        ("a2", "acme", "SCHEDULED", 4_000, None),
    ] {
        sqlx::query(
            "INSERT INTO rooms (id, entity_id, title, custom_instructions, status, max_participants, \
             created_at_ms, event_seq, livekit_room) VALUES ($1, $2, $1, '', $3, 0, $4, 1, $5)",
        )
        .bind(id)
        .bind(entity)
        .bind(status)
        .bind(at)
        .bind(name)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    conn.close().await.unwrap();

    let store = SqliteStore::open(&format!("sqlite://{}", path.display())).await.unwrap();
    assert_eq!(store.livekit_owner("board").await.unwrap().as_deref(), Some("acme"));
    assert_eq!(store.livekit_owner("globex-own").await.unwrap().as_deref(), Some("globex"));
    assert_eq!(store.get_room("g1").await.unwrap().livekit_room, None, "Globex's room on Acme's name is unbound");
    assert_eq!(store.get_room("a1").await.unwrap().livekit_room.as_deref(), Some("board"));
    assert_eq!(store.get_room("g2").await.unwrap().livekit_room.as_deref(), Some("globex-own"));
    assert_eq!(store.find_livekit_room("board").await.unwrap().id, "a1");
    let mut again = room("globex", "g3", 5_000);
    again.livekit_room = Some("board".into());
    let created = crate::common::event("g3", 1, "created", 5_000);
    assert_err!(store.create_room(again, vec![created]).await, StorageError::Claimed { .. });
}
