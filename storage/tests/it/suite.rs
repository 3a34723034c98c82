//! The conformance suite: every backend must pass every test here. Each test
//! is an async fn over a fresh [`TestDb`]; `main.rs` instantiates the suite
//! once per backend.

use std::collections::BTreeSet;

use huddle_core::limits::DEFAULT_MAX_PARTICIPANTS;
use huddle_core::{ApiKey, NewDepartment, NewEntity, ParticipantKind, RoomStatus, now_ms};
use huddle_storage::{DepartmentUpdate, EntityUpdate, PageRequest, RoomFilter, StorageError};

use crate::assert_err;
use crate::common::{Backend, TestDb, change, create_room, entity, event, participant, room};

fn page(size: u32, token: &str) -> PageRequest {
    PageRequest { size, token: token.to_string() }
}

pub async fn backend_name(db: &TestDb) {
    let expected = match db.backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(db.store().backend(), expected);
}

pub async fn entity_crud(db: &TestDb) {
    let store = db.store();
    let before = now_ms();
    let created = store
        .create_entity(NewEntity {
            name: "Acme".into(),
            kind: "company".into(),
            default_instructions: "be polite".into(),
            max_participants: None,
            recording_retention_days: 30,
        })
        .await
        .unwrap();
    assert!(!created.id.is_empty());
    assert_eq!(created.name, "Acme");
    assert_eq!(created.kind, "company");
    assert_eq!(created.default_instructions, "be polite");
    assert_eq!(created.max_participants, DEFAULT_MAX_PARTICIPANTS);
    assert_eq!(created.recording_retention_days, 30);
    assert!(created.active);
    assert!(created.created_at_ms >= before && created.created_at_ms <= now_ms());
    assert_eq!(created.updated_at_ms, created.created_at_ms);
    assert_eq!(store.get_entity(&created.id).await.unwrap(), created);

    let small = store
        .create_entity(NewEntity { name: "Tiny".into(), max_participants: Some(7), ..Default::default() })
        .await
        .unwrap();
    assert_ne!(small.id, created.id);
    assert_eq!(store.get_entity(&small.id).await.unwrap().max_participants, 7);

    let updated = store
        .update_entity(
            &created.id,
            EntityUpdate {
                name: Some("Acme Ltd".into()),
                max_participants: Some(9),
                active: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.name, "Acme Ltd");
    assert_eq!(updated.max_participants, 9);
    assert!(!updated.active);
    // Fields left as None keep their values.
    assert_eq!(updated.kind, "company");
    assert_eq!(updated.default_instructions, "be polite");
    assert_eq!(updated.recording_retention_days, 30);
    assert_eq!(updated.created_at_ms, created.created_at_ms);
    assert!(updated.updated_at_ms >= created.updated_at_ms);
    assert_eq!(store.get_entity(&created.id).await.unwrap(), updated);
    // The other entity is untouched.
    assert_eq!(store.get_entity(&small.id).await.unwrap(), small);

    let updated = store
        .update_entity(
            &created.id,
            EntityUpdate {
                kind: Some("school".into()),
                default_instructions: Some(String::new()),
                recording_retention_days: Some(0),
                active: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.name, "Acme Ltd");
    assert_eq!(updated.kind, "school");
    assert_eq!(updated.default_instructions, "");
    assert_eq!(updated.recording_retention_days, 0);
    assert!(updated.active);

    assert_err!(
        store.get_entity("missing").await,
        StorageError::NotFound { what: "entity", ref id } if id == "missing"
    );
    assert_err!(
        store.update_entity("missing", EntityUpdate { name: Some("x".into()), ..Default::default() }).await,
        StorageError::NotFound { what: "entity", .. }
    );
}

pub async fn entity_pagination(db: &TestDb) {
    let store = db.store();
    let mut expected = Vec::new();
    for i in 0..7 {
        expected.push(entity(store, &format!("e{i}")).await);
    }
    expected.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));

    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut token = String::new();
    loop {
        let p = store.list_entities(page(3, &token)).await.unwrap();
        sizes.push(p.items.len());
        seen.extend(p.items);
        if p.next_token.is_empty() {
            break;
        }
        assert_ne!(p.next_token, token, "the token must advance");
        token = p.next_token;
    }
    assert_eq!(sizes, vec![3, 3, 1]);
    assert_eq!(seen, expected, "oldest first, each entity exactly once");

    // A page that holds exactly the rest has no next page.
    let all = store.list_entities(page(7, "")).await.unwrap();
    assert_eq!(all.items, expected);
    assert!(all.next_token.is_empty());
    // Size 0 means the default size.
    let default = store.list_entities(PageRequest::default()).await.unwrap();
    assert_eq!(default.items.len(), 7);
    assert!(default.next_token.is_empty());
    // A page after the last item is empty.
    let p6 = store.list_entities(page(6, "")).await.unwrap();
    assert_eq!(p6.items, expected[..6]);
    let rest = store.list_entities(page(6, &p6.next_token)).await.unwrap();
    assert_eq!(rest.items, expected[6..]);
    assert!(rest.next_token.is_empty());
}

pub async fn invalid_page_tokens(db: &TestDb) {
    let store = db.store();
    let e = entity(store, "Acme").await;
    create_room(store, room(&e.id, "r1", 1_000)).await;
    for token in ["not a token", "!!", "bm8tY29sb24", "eDox"] {
        // "bm8tY29sb24" is base64url of "no-colon", "eDox" of "x:1".
        assert_err!(store.list_entities(page(2, token)).await, StorageError::InvalidPageToken);
        assert_err!(store.list_rooms(RoomFilter::default(), page(2, token)).await, StorageError::InvalidPageToken);
    }
}

pub async fn department_uniqueness_and_update(db: &TestDb) {
    let store = db.store();
    let acme = entity(store, "Acme").await;
    let other = entity(store, "Other").await;
    let new = |entity_id: &str, name: &str| NewDepartment {
        entity_id: entity_id.to_string(),
        name: name.to_string(),
        instructions: format!("{name} rules"),
    };

    let sales = store.create_department(new(&acme.id, "Sales")).await.unwrap();
    assert_eq!(sales.entity_id, acme.id);
    assert_eq!(sales.name, "Sales");
    assert_eq!(sales.instructions, "Sales rules");
    assert_eq!(sales.created_at_ms, sales.updated_at_ms);
    assert_eq!(store.get_department(&sales.id).await.unwrap(), sales);

    assert_err!(
        store.create_department(new(&acme.id, "Sales")).await,
        StorageError::AlreadyExists { what: "department", ref value } if value == "Sales"
    );
    // The same name in another entity is fine.
    let other_sales = store.create_department(new(&other.id, "Sales")).await.unwrap();
    assert_ne!(other_sales.id, sales.id);
    assert_err!(
        store.create_department(new("missing", "Sales")).await,
        StorageError::NotFound { what: "entity", ref id } if id == "missing"
    );

    let eng = store.create_department(new(&acme.id, "Engineering")).await.unwrap();
    let names: Vec<String> = store.list_departments(&acme.id).await.unwrap().into_iter().map(|d| d.name).collect();
    assert_eq!(names, vec!["Engineering", "Sales"], "ordered by name");
    assert_eq!(store.list_departments(&other.id).await.unwrap(), vec![other_sales.clone()]);

    let updated = store
        .update_department(&eng.id, DepartmentUpdate { name: None, instructions: Some("ship it".into()) })
        .await
        .unwrap();
    assert_eq!(updated.name, "Engineering");
    assert_eq!(updated.instructions, "ship it");
    assert!(updated.updated_at_ms >= eng.updated_at_ms);
    assert_eq!(updated.created_at_ms, eng.created_at_ms);
    assert_eq!(store.get_department(&eng.id).await.unwrap(), updated);

    assert_err!(
        store
            .update_department(&eng.id, DepartmentUpdate { name: Some("Sales".into()), instructions: None })
            .await,
        StorageError::AlreadyExists { what: "department", ref value } if value == "Sales"
    );
    assert_eq!(store.get_department(&eng.id).await.unwrap(), updated, "a refused update writes nothing");

    let renamed = store
        .update_department(&eng.id, DepartmentUpdate { name: Some("R&D".into()), instructions: None })
        .await
        .unwrap();
    assert_eq!(renamed.name, "R&D");
    assert_eq!(renamed.instructions, "ship it");
    // The old name is free again.
    store.create_department(new(&acme.id, "Engineering")).await.unwrap();

    assert_err!(
        store.get_department("missing").await,
        StorageError::NotFound { what: "department", ref id } if id == "missing"
    );
    assert_err!(
        store.update_department("missing", DepartmentUpdate::default()).await,
        StorageError::NotFound { what: "department", .. }
    );
    assert_err!(store.list_departments("missing").await, StorageError::NotFound { what: "entity", .. });
    let empty = entity(store, "Empty").await;
    assert_eq!(store.list_departments(&empty.id).await.unwrap(), vec![]);
}

pub async fn api_keys(db: &TestDb) {
    let store = db.store();
    let acme = entity(store, "Acme").await;
    let key = ApiKey {
        id: "key-1".into(),
        entity_id: acme.id.clone(),
        key_hash: "ab".repeat(32),
        prefix: "hk_live_ab".into(),
        created_at_ms: 1_234,
        last_used_at_ms: None,
        revoked_at_ms: None,
    };
    assert_eq!(store.create_api_key(key.clone()).await.unwrap(), key);
    let other = ApiKey { id: "key-2".into(), key_hash: "cd".repeat(32), ..key.clone() };
    store.create_api_key(other.clone()).await.unwrap();

    assert_eq!(store.find_api_key(&key.key_hash).await.unwrap(), key);
    assert_eq!(store.find_api_key(&other.key_hash).await.unwrap(), other);
    assert_err!(store.find_api_key(&"ef".repeat(32)).await, StorageError::NotFound { what: "api key", .. });
    assert_err!(
        store.create_api_key(ApiKey { id: "key-3".into(), ..key.clone() }).await,
        StorageError::AlreadyExists { what: "api key", .. }
    );
    assert_err!(
        store
            .create_api_key(ApiKey {
                id: "key-4".into(),
                entity_id: "missing".into(),
                key_hash: "01".repeat(32),
                ..key.clone()
            })
            .await,
        StorageError::NotFound { what: "entity", ref id } if id == "missing"
    );
    assert_err!(store.find_api_key(&"01".repeat(32)).await, StorageError::NotFound { .. });
}

pub async fn api_key_list_revoke_touch(db: &TestDb) {
    let store = db.store();
    let acme = entity(store, "Acme").await;
    let globex = entity(store, "Globex").await;
    let key = |id: &str, entity_id: &str, hash: &str, at: i64| ApiKey {
        id: id.into(),
        entity_id: entity_id.into(),
        key_hash: hash.repeat(32),
        prefix: format!("hk_{id}"),
        created_at_ms: at,
        last_used_at_ms: None,
        revoked_at_ms: None,
    };
    let a1 = store.create_api_key(key("a1", &acme.id, "a1", 1_000)).await.unwrap();
    let a2 = store.create_api_key(key("a2", &acme.id, "a2", 2_000)).await.unwrap();
    let g1 = store.create_api_key(key("g1", &globex.id, "b1", 1_500)).await.unwrap();

    // Oldest first, only the entity's own.
    assert_eq!(store.list_api_keys(&acme.id).await.unwrap(), vec![a1.clone(), a2.clone()]);
    assert_eq!(store.list_api_keys(&globex.id).await.unwrap(), vec![g1.clone()]);
    let empty = entity(store, "Empty").await;
    assert_eq!(store.list_api_keys(&empty.id).await.unwrap(), vec![]);
    assert_err!(store.list_api_keys("missing").await, StorageError::NotFound { what: "entity", .. });
    assert_eq!(store.get_api_key("a2").await.unwrap(), a2);
    assert_err!(store.get_api_key("missing").await, StorageError::NotFound { what: "api key", .. });

    // A use is recorded, and a second one within the minute is not.
    store.touch_api_key("a1", 100_000).await.unwrap();
    assert_eq!(store.get_api_key("a1").await.unwrap().last_used_at_ms, Some(100_000));
    store.touch_api_key("a1", 130_000).await.unwrap();
    assert_eq!(store.get_api_key("a1").await.unwrap().last_used_at_ms, Some(100_000));
    store.touch_api_key("a1", 160_000).await.unwrap();
    assert_eq!(store.get_api_key("a1").await.unwrap().last_used_at_ms, Some(160_000));
    store.touch_api_key("missing", 160_000).await.unwrap();

    // Revoked: still listed and readable, no longer found by hash; a second
    // revocation keeps the first time.
    let revoked = store.revoke_api_key("a1", 200_000).await.unwrap();
    assert_eq!(revoked.revoked_at_ms, Some(200_000));
    assert_eq!(revoked.last_used_at_ms, Some(160_000));
    assert_err!(store.find_api_key(&a1.key_hash).await, StorageError::NotFound { what: "api key", .. });
    assert_eq!(store.revoke_api_key("a1", 300_000).await.unwrap().revoked_at_ms, Some(200_000));
    assert_eq!(store.list_api_keys(&acme.id).await.unwrap()[0].revoked_at_ms, Some(200_000));
    assert_eq!(store.find_api_key(&a2.key_hash).await.unwrap().id, "a2");
    assert_err!(store.revoke_api_key("missing", 1).await, StorageError::NotFound { what: "api key", .. });

    // An inactive entity's keys are not found by hash; reactivated, they are again.
    store.update_entity(&acme.id, EntityUpdate { active: Some(false), ..Default::default() }).await.unwrap();
    assert_err!(store.find_api_key(&a2.key_hash).await, StorageError::NotFound { .. });
    assert_eq!(store.find_api_key(&g1.key_hash).await.unwrap(), g1);
    store.update_entity(&acme.id, EntityUpdate { active: Some(true), ..Default::default() }).await.unwrap();
    assert_eq!(store.find_api_key(&a2.key_hash).await.unwrap(), a2);
}

pub async fn room_create_and_get(db: &TestDb) {
    let store = db.store();
    let acme = entity(store, "Acme").await;
    let other = entity(store, "Other").await;
    let sales = store
        .create_department(NewDepartment { entity_id: acme.id.clone(), name: "Sales".into(), ..Default::default() })
        .await
        .unwrap();
    let foreign = store
        .create_department(NewDepartment { entity_id: other.id.clone(), name: "Ops".into(), ..Default::default() })
        .await
        .unwrap();

    let mut r = room(&acme.id, "r1", 5_000);
    r.department_id = Some(sales.id.clone());
    r.max_participants = 12;
    r.event_seq = 2;
    let events = vec![event("r1", 1, "created", 5_000), event("r1", 2, "note", 5_001)];
    assert_eq!(store.create_room(r.clone(), events.clone()).await.unwrap(), r);
    assert_eq!(store.get_room("r1").await.unwrap(), r);
    assert_eq!(store.list_events("r1", 0, 100).await.unwrap(), events);
    assert_eq!(store.list_participants("r1").await.unwrap(), vec![]);

    // A room with every optional field set round-trips too.
    let mut full = room(&acme.id, "r2", 6_000);
    full.status = RoomStatus::Cancelled;
    full.started_at_ms = Some(6_100);
    full.ended_at_ms = Some(6_200);
    full.cancel_reason = Some("no quorum".into());
    full.scheduled_for_ms = None;
    create_room(store, full.clone()).await;
    assert_eq!(store.get_room("r2").await.unwrap(), full);

    assert_err!(
        store.create_room(room("missing", "r3", 1), vec![event("r3", 1, "created", 1)]).await,
        StorageError::NotFound { what: "entity", ref id } if id == "missing"
    );
    let mut bad = room(&acme.id, "r3", 1);
    bad.department_id = Some("missing".into());
    assert_err!(
        store.create_room(bad.clone(), vec![event("r3", 1, "created", 1)]).await,
        StorageError::NotFound { what: "department", ref id } if id == "missing"
    );
    bad.department_id = Some(foreign.id.clone());
    assert_err!(
        store.create_room(bad.clone(), vec![event("r3", 1, "created", 1)]).await,
        StorageError::NotFound { what: "department", ref id } if *id == foreign.id
    );
    // Events that do not match the room's event_seq are refused.
    let mut unmatched = room(&acme.id, "r3", 1);
    unmatched.event_seq = 3;
    assert!(store.create_room(unmatched, vec![event("r3", 1, "created", 1)]).await.is_err());
    assert_err!(store.get_room("r3").await, StorageError::NotFound { what: "room", .. });
    assert_err!(store.list_events("r3", 0, 10).await, StorageError::NotFound { what: "room", .. });

    assert_err!(
        store.create_room(r.clone(), events.clone()).await,
        StorageError::AlreadyExists { what: "room", ref value } if value == "r1"
    );
    assert_eq!(store.list_events("r1", 0, 100).await.unwrap(), events, "a refused create writes nothing");
    assert_err!(
        store.get_room("missing").await,
        StorageError::NotFound { what: "room", ref id } if id == "missing"
    );
}

/// Rooms of two entities in every status, at distinct and equal times.
async fn room_fixture(db: &TestDb) -> (String, String) {
    let store = db.store();
    let a = entity(store, "A").await;
    let b = entity(store, "B").await;
    let rooms = [
        (&a.id, "a1", 1_000, RoomStatus::Scheduled),
        (&a.id, "a2", 2_000, RoomStatus::Active),
        (&a.id, "a3", 3_000, RoomStatus::Completed),
        (&a.id, "a4", 3_000, RoomStatus::Active),
        (&a.id, "a5", 4_000, RoomStatus::Cancelled),
        (&b.id, "b1", 1_500, RoomStatus::Active),
        (&b.id, "b2", 3_000, RoomStatus::Scheduled),
    ];
    for (entity_id, id, at, status) in rooms {
        let mut r = room(entity_id, id, at);
        r.status = status;
        create_room(store, r).await;
    }
    (a.id, b.id)
}

async fn room_ids(db: &TestDb, filter: RoomFilter) -> Vec<String> {
    let p = db.store().list_rooms(filter, PageRequest::default()).await.unwrap();
    assert!(p.next_token.is_empty());
    p.items.into_iter().map(|r| r.id).collect()
}

pub async fn room_filters(db: &TestDb) {
    let (a, b) = room_fixture(db).await;
    let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    // Newest first; equal times by id, descending.
    assert_eq!(room_ids(db, RoomFilter::default()).await, ids(&["a5", "b2", "a4", "a3", "a2", "b1", "a1"]));
    assert_eq!(
        room_ids(db, RoomFilter { entity_id: Some(a.clone()), ..Default::default() }).await,
        ids(&["a5", "a4", "a3", "a2", "a1"])
    );
    assert_eq!(room_ids(db, RoomFilter { entity_id: Some(b.clone()), ..Default::default() }).await, ids(&["b2", "b1"]));
    assert_eq!(
        room_ids(db, RoomFilter { status: Some(RoomStatus::Active), ..Default::default() }).await,
        ids(&["a4", "a2", "b1"])
    );
    assert_eq!(
        room_ids(db, RoomFilter { entity_id: Some(a.clone()), status: Some(RoomStatus::Active), ..Default::default() })
            .await,
        ids(&["a4", "a2"])
    );
    // The time range is half-open: [from, to).
    assert_eq!(
        room_ids(db, RoomFilter { created_from_ms: Some(3_000), ..Default::default() }).await,
        ids(&["a5", "b2", "a4", "a3"])
    );
    assert_eq!(room_ids(db, RoomFilter { created_to_ms: Some(2_000), ..Default::default() }).await, ids(&["b1", "a1"]));
    assert_eq!(
        room_ids(db, RoomFilter { created_from_ms: Some(1_500), created_to_ms: Some(3_000), ..Default::default() })
            .await,
        ids(&["a2", "b1"])
    );
    assert_eq!(
        room_ids(
            db,
            RoomFilter {
                entity_id: Some(a.clone()),
                status: Some(RoomStatus::Completed),
                created_from_ms: Some(3_000),
                created_to_ms: Some(3_001),
            }
        )
        .await,
        ids(&["a3"])
    );
    assert!(room_ids(db, RoomFilter { entity_id: Some("missing".into()), ..Default::default() }).await.is_empty());
    assert!(
        room_ids(db, RoomFilter { created_from_ms: Some(5_000), created_to_ms: Some(1_000), ..Default::default() })
            .await
            .is_empty()
    );
}

pub async fn room_pagination(db: &TestDb) {
    let (a, _) = room_fixture(db).await;
    let store = db.store();

    // All rooms, two at a time, across the equal-time boundary.
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let p = store.list_rooms(RoomFilter::default(), page(2, &token)).await.unwrap();
        pages.push(p.items.iter().map(|r| r.id.clone()).collect::<Vec<_>>());
        if p.next_token.is_empty() {
            break;
        }
        token = p.next_token;
    }
    assert_eq!(pages, vec![vec!["a5", "b2"], vec!["a4", "a3"], vec!["a2", "b1"], vec!["a1"]]);

    // The filter applies on every page.
    let filter = RoomFilter { entity_id: Some(a), ..Default::default() };
    let first = store.list_rooms(filter.clone(), page(3, "")).await.unwrap();
    let ids: Vec<_> = first.items.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec!["a5", "a4", "a3"]);
    assert!(!first.next_token.is_empty());
    let second = store.list_rooms(filter.clone(), page(3, &first.next_token)).await.unwrap();
    let ids: Vec<_> = second.items.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec!["a2", "a1"]);
    assert!(second.next_token.is_empty());

    // Full rows come back, not just ids.
    assert_eq!(first.items[0], store.get_room("a5").await.unwrap());
}

pub async fn commit_room_change_and_conflict(db: &TestDb) {
    let store = db.store();
    let acme = entity(store, "Acme").await;
    let r = create_room(store, room(&acme.id, "r1", 1_000)).await;

    let ann = participant("r1", "p-ann", 1_100);
    let start = change(
        &r,
        |room| {
            room.status = RoomStatus::Active;
            room.started_at_ms = Some(1_100);
        },
        vec![ann.clone()],
        &["started", "participant_joined"],
    );
    store.commit_room_change(start.clone()).await.unwrap();
    let active = store.get_room("r1").await.unwrap();
    assert_eq!(active, start.room);
    assert_eq!(active.event_seq, 3);
    assert_eq!(active.status, RoomStatus::Active);
    assert_eq!(store.list_participants("r1").await.unwrap(), vec![ann.clone()]);
    let events = store.list_events("r1", 0, 100).await.unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(events[1..], start.events[..]);

    // A writer that still believes the seq is 1 loses, and writes nothing.
    let stale = change(
        &r,
        |room| {
            room.status = RoomStatus::Cancelled;
            room.cancel_reason = Some("stale".into());
        },
        vec![participant("r1", "p-bob", 1_200)],
        &["cancelled"],
    );
    assert_err!(
        store.commit_room_change(stale).await,
        StorageError::Conflict { ref room_id, expected: 1, found: 3 } if room_id == "r1"
    );
    assert_eq!(store.get_room("r1").await.unwrap(), active);
    assert_eq!(store.list_participants("r1").await.unwrap(), vec![ann.clone()]);
    assert_eq!(store.list_events("r1", 0, 100).await.unwrap(), events);

    // A change that does not continue the log is refused before writing.
    let mut gap = change(&active, |_| {}, vec![], &["note"]);
    gap.events[0].seq = 5;
    gap.room.event_seq = 5;
    assert!(store.commit_room_change(gap).await.is_err());
    assert_eq!(store.get_room("r1").await.unwrap(), active);

    // The winner's successor goes through.
    let done = change(
        &active,
        |room| {
            room.status = RoomStatus::Completed;
            room.ended_at_ms = Some(2_000);
        },
        vec![],
        &["completed"],
    );
    store.commit_room_change(done.clone()).await.unwrap();
    assert_eq!(store.get_room("r1").await.unwrap(), done.room);
    assert_eq!(store.list_events("r1", 3, 100).await.unwrap(), done.events);

    let mut ghost = change(&r, |_| {}, vec![], &["note"]);
    ghost.room.id = "missing".into();
    ghost.events[0].room_id = "missing".into();
    assert_err!(
        store.commit_room_change(ghost).await,
        StorageError::NotFound { what: "room", ref id } if id == "missing"
    );
}

pub async fn concurrent_commits_one_wins(db: &TestDb) {
    let store = db.store.clone();
    let acme = entity(&*store, "Acme").await;
    let r = create_room(&*store, room(&acme.id, "r1", 1_000)).await;

    let mut tasks = Vec::new();
    for i in 0..4 {
        let store = store.clone();
        let c = change(&r, |room| room.title = format!("writer {i}"), vec![], &["renamed"]);
        tasks.push(tokio::spawn(async move { (c.clone(), store.commit_room_change(c).await) }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            (c, Ok(())) => winners.push(c),
            (_, Err(StorageError::Conflict { expected: 1, found: 2, .. })) => {}
            (_, Err(e)) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one concurrent writer wins");
    let winner = &winners[0];
    assert_eq!(store.get_room("r1").await.unwrap(), winner.room);
    let events = store.list_events("r1", 1, 100).await.unwrap();
    assert_eq!(events, winner.events);
}

pub async fn participants_upsert(db: &TestDb) {
    let store = db.store();
    let acme = entity(store, "Acme").await;
    let r = create_room(store, room(&acme.id, "r1", 1_000)).await;

    let ann = participant("r1", "p-ann", 2_000);
    let joined = change(&r, |_| {}, vec![ann.clone()], &["participant_joined"]);
    store.commit_room_change(joined.clone()).await.unwrap();

    // Two more join at the same time; ties order by id.
    let mut zed = participant("r1", "p-zed", 1_500);
    zed.kind = ParticipantKind::Agent;
    zed.email = None;
    zed.phone = Some("+15550100".into());
    let bob = participant("r1", "p-bob", 1_500);
    let more =
        change(&joined.room, |_| {}, vec![zed.clone(), bob.clone()], &["participant_joined", "participant_joined"]);
    store.commit_room_change(more.clone()).await.unwrap();
    assert_eq!(store.list_participants("r1").await.unwrap(), vec![bob.clone(), zed.clone(), ann.clone()]);

    // Ann leaves: her record is updated, not duplicated.
    let mut ann_left = ann.clone();
    ann_left.left_at_ms = Some(3_000);
    ann_left.display_name = "Ann (left)".into();
    let left = change(&more.room, |_| {}, vec![ann_left.clone()], &["participant_left"]);
    store.commit_room_change(left).await.unwrap();
    let list = store.list_participants("r1").await.unwrap();
    assert_eq!(list, vec![bob, zed, ann_left.clone()]);
    assert_eq!(list.iter().filter(|p| p.id == "p-ann").count(), 1);
    assert!(!list[2].is_present());

    // Participants of another room stay apart.
    let r2 = create_room(store, room(&acme.id, "r2", 1_000)).await;
    assert_eq!(store.list_participants(&r2.id).await.unwrap(), vec![]);
    assert_err!(store.list_participants("missing").await, StorageError::NotFound { what: "room", .. });
}

pub async fn events_ordering_and_limits(db: &TestDb) {
    let store = db.store();
    let acme = entity(store, "Acme").await;
    let mut r = create_room(store, room(&acme.id, "r1", 1_000)).await;
    let mut all = store.list_events("r1", 0, 10).await.unwrap();
    assert_eq!(all.len(), 1);
    for kinds in [&["a", "b"][..], &["c"], &["d", "e"]] {
        let c = change(&r, |_| {}, vec![], kinds);
        store.commit_room_change(c.clone()).await.unwrap();
        all.extend(c.events);
        r = c.room;
    }
    // Another room's events do not mix in.
    let other = create_room(store, room(&acme.id, "r2", 1_000)).await;
    store.commit_room_change(change(&other, |_| {}, vec![], &["x", "y"])).await.unwrap();

    let seqs = |events: &[huddle_core::RoomEvent]| events.iter().map(|e| e.seq).collect::<Vec<_>>();
    let listed = store.list_events("r1", 0, 100).await.unwrap();
    assert_eq!(seqs(&listed), vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(listed, all, "kinds, data and times round-trip");
    assert_eq!(listed[1].kind(), "a");
    assert_eq!(listed[1].data.data_value()["nested"]["list"][1], 2.5);

    assert_eq!(seqs(&store.list_events("r1", 2, 3).await.unwrap()), vec![3, 4, 5]);
    assert_eq!(seqs(&store.list_events("r1", 5, 3).await.unwrap()), vec![6]);
    assert_eq!(seqs(&store.list_events("r1", 0, 1).await.unwrap()), vec![1]);
    assert!(store.list_events("r1", 6, 10).await.unwrap().is_empty());
    assert!(store.list_events("r1", 0, 0).await.unwrap().is_empty());
    assert!(store.list_events("r1", u64::MAX, 10).await.unwrap().is_empty());
    assert_eq!(seqs(&store.list_events("r2", 0, 10).await.unwrap()), vec![1, 2, 3]);
    assert_err!(
        store.list_events("missing", 0, 10).await,
        StorageError::NotFound { what: "room", ref id } if id == "missing"
    );
}

fn segment(room_id: &str, seq: u64, participant_id: &str, text: &str) -> huddle_core::TranscriptSegment {
    huddle_core::TranscriptSegment {
        room_id: room_id.to_string(),
        seq,
        participant_id: participant_id.to_string(),
        start_ms: seq * 1_000,
        end_ms: seq * 1_000 + 750,
        text: text.to_string(),
        confidence: 0.875,
        no_speech_prob: 0.015625,
        language: "en".into(),
        at_ms: 5_000 + seq as i64,
    }
}

pub async fn transcript_segments_round_trip_and_page(db: &TestDb) {
    let store = db.store();
    let acme = entity(store, "Acme").await;
    let r = create_room(store, room(&acme.id, "r1", 1_000)).await;
    let ada = participant("r1", "p-ada", 1_100);
    let joined = change(&r, |_| {}, vec![ada.clone()], &["participant_joined"]);
    store.commit_room_change(joined.clone()).await.unwrap();
    let mut r = joined.room;
    let mut written = Vec::new();
    for i in 0..5 {
        let mut c = change(&r, |_| {}, vec![], &["transcript_segment", "transcript_segment"]);
        c.segments = c.events.iter().map(|e| segment("r1", e.seq, &ada.id, &format!("words {i} {}", e.seq))).collect();
        store.commit_room_change(c.clone()).await.unwrap();
        written.extend(c.segments);
        r = c.room;
    }
    // all of them, in order, with every field intact
    let all = store.list_transcript("r1", page(100, "")).await.unwrap();
    assert_eq!(all.items, written);
    assert!(all.next_token.is_empty());
    // pages of 4 cover the same segments exactly once
    let (mut token, mut paged) = (String::new(), Vec::new());
    loop {
        let p = store.list_transcript("r1", page(4, &token)).await.unwrap();
        assert!(p.items.len() <= 4);
        paged.extend(p.items);
        if p.next_token.is_empty() {
            break;
        }
        token = p.next_token;
    }
    assert_eq!(paged, written);
    // a token from another room, garbage, an unknown room
    let other = create_room(store, room(&acme.id, "r2", 1_000)).await;
    assert!(store.list_transcript("r2", page(10, "")).await.unwrap().items.is_empty());
    let token = store.list_transcript("r1", page(1, "")).await.unwrap().next_token;
    assert_err!(store.list_transcript("r2", page(10, &token)).await, StorageError::InvalidPageToken);
    assert_err!(store.list_transcript("r1", page(10, "garbage!")).await, StorageError::InvalidPageToken);
    assert_err!(store.list_transcript("nope", page(10, "")).await, StorageError::NotFound { what: "room", .. });
    // a segment without its event, or for an unknown participant, is refused and writes nothing
    let mut bad = change(&other, |_| {}, vec![], &["note"]);
    bad.segments = vec![segment("r2", bad.room.event_seq, "p-ada", "no event")];
    assert!(store.commit_room_change(bad).await.is_err());
    let mut bad = change(&other, |_| {}, vec![], &["transcript_segment"]);
    bad.segments = vec![segment("r2", bad.room.event_seq, "p-ghost", "nobody")];
    assert!(store.commit_room_change(bad).await.is_err());
    assert_eq!(store.get_room("r2").await.unwrap().event_seq, other.event_seq);
    assert!(store.list_transcript("r2", page(10, "")).await.unwrap().items.is_empty());
}

fn doc(id: &str, entity_id: &str, department_id: Option<&str>, at: i64) -> huddle_core::Document {
    huddle_core::Document {
        id: id.into(),
        entity_id: entity_id.into(),
        department_id: department_id.map(str::to_string),
        filename: format!("{id}.md"),
        content_type: "text/markdown".into(),
        bytes: 1234,
        sha256: "ab".repeat(32),
        status: huddle_core::DocumentStatus::Processing,
        error: None,
        chunks: 0,
        node_id: Some("node-a".into()),
        created_at_ms: at,
        updated_at_ms: at,
    }
}

fn item(entity_id: &str, document_id: Option<&str>, chunk: u32, text: &str) -> huddle_core::NewKnowledgeItem {
    huddle_core::NewKnowledgeItem {
        entity_id: entity_id.into(),
        kind: huddle_core::ItemKind::DocumentChunk,
        department_id: None,
        document_id: document_id.map(str::to_string),
        chunk_index: Some(chunk),
        room_id: None,
        segment_seq: None,
        participant_id: None,
        text: text.into(),
        vector: vec![0.5, -0.25, 1.0e-7, f32::MIN_POSITIVE],
    }
}

pub async fn knowledge_documents_and_items(db: &TestDb) {
    use huddle_core::DocumentStatus::{self, Processing};
    let store = db.store();
    let acme = entity(store, "Acme").await;
    let other = entity(store, "Other").await;
    for (i, id) in ["d1", "d2", "d3"].iter().enumerate() {
        store.create_document(doc(id, &acme.id, None, 1_000 + i as i64)).await.unwrap();
    }
    store.create_document(doc("o1", &other.id, None, 1_000)).await.unwrap();
    assert_err!(store.create_document(doc("x", "ghost", None, 1)).await, StorageError::NotFound { .. });
    assert_err!(store.get_document("nope").await, StorageError::NotFound { what: "document", .. });

    // a completed ingest writes its items and status in one go; ids are increasing
    let items = vec![item(&acme.id, Some("d1"), 0, "alpha"), item(&acme.id, Some("d1"), 1, "beta")];
    let (d1, ids) = store
        .finish_document("d1", DocumentStatus::Processing, DocumentStatus::Completed, None, items.clone())
        .await
        .unwrap();
    assert_eq!((d1.status, d1.chunks, ids.len()), (DocumentStatus::Completed, 2, 2));
    assert!(ids[0] < ids[1]);
    let (d2, none) = store
        .finish_document("d2", Processing, DocumentStatus::Failed, Some("not a PDF".into()), vec![])
        .await
        .unwrap();
    assert_eq!((d2.status, d2.error.as_deref(), none.len()), (DocumentStatus::Failed, Some("not a PDF"), 0));
    let got = store.get_knowledge_items(&ids).await.unwrap();
    let mut got_items: Vec<_> = got.iter().map(|k| k.item.clone()).collect();
    got_items.sort_by_key(|i| i.chunk_index);
    assert_eq!(got_items, items, "text, filters and vectors round-trip bit for bit");
    let other_ids = store.add_knowledge_items(vec![item(&other.id, None, 0, "theirs")]).await.unwrap();

    // listing is per entity, paged, oldest first
    let page1 = store.list_documents(&acme.id, page(2, "")).await.unwrap();
    assert_eq!(page1.items.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["d1", "d2"]);
    let page2 = store.list_documents(&acme.id, page(2, &page1.next_token)).await.unwrap();
    assert_eq!(page2.items.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["d3"]);
    assert!(page2.next_token.is_empty());
    let listed = store.list_knowledge_items(&acme.id, 0, 10).await.unwrap();
    assert_eq!(listed.iter().map(|k| k.id).collect::<Vec<_>>(), ids);
    assert!(store.list_knowledge_items(&acme.id, ids[0], 10).await.unwrap().iter().all(|k| k.id == ids[1]));
    assert_eq!(store.knowledge_fingerprint(&acme.id).await.unwrap(), (2, ids[1]));
    assert_eq!(store.knowledge_fingerprint(&other.id).await.unwrap(), (1, other_ids[0]));

    // deleting a document removes its items and reports their ids; ids are not reused
    assert_eq!(store.delete_document("d1").await.unwrap(), ids);
    assert_err!(store.delete_document("d1").await, StorageError::NotFound { .. });
    assert!(store.get_knowledge_items(&ids).await.unwrap().is_empty());
    assert_eq!(store.knowledge_fingerprint(&acme.id).await.unwrap(), (0, 0));
    let again = store.add_knowledge_items(vec![item(&acme.id, None, 0, "new")]).await.unwrap();
    assert!(again[0] > ids[1].max(other_ids[0]), "ids are never reused");

    // an interrupted ingest is failed at start-up
    assert_eq!(store.fail_interrupted_documents("node-a", 0).await.unwrap(), 2); // d3, o1
    let d3 = store.get_document("d3").await.unwrap();
    assert_eq!(d3.status, DocumentStatus::Failed);
    assert!(d3.error.unwrap().contains("ingest the document again"));
}

/// Several nodes on one database: a node starting up fails only its own interrupted
/// jobs (and those no node owns any more), and a job's result is recorded only while
/// its document is still PROCESSING.
pub async fn ingest_jobs_of_several_nodes(db: &TestDb) {
    use huddle_core::DocumentStatus::{Completed, Failed, Processing};
    let store = db.store();
    let acme = entity(store, "Acme").await;
    let on = |id: &str, node: Option<&str>, at: i64| {
        let mut d = doc(id, &acme.id, None, at);
        d.node_id = node.map(str::to_string);
        d
    };
    for d in [
        on("a1", Some("node-a"), 1_000),
        on("a2", Some("node-a"), 1_001),
        on("b1", Some("node-b"), 1_002),
        on("b2", Some("node-b"), 1_003),
        on("b-gone", Some("node-b"), 100), // node-b vanished long ago with this job
        on("legacy", None, 1_004),         // from before nodes were recorded
    ] {
        store.create_document(d).await.unwrap();
    }
    assert_eq!(store.get_document("b1").await.unwrap().node_id.as_deref(), Some("node-b"));

    // node-a restarts: its own jobs, the stale one and the legacy one fail; node-b's live jobs run on
    assert_eq!(store.fail_interrupted_documents("node-a", 500).await.unwrap(), 4);
    let status = |id: &'static str| async move { store.get_document(id).await.unwrap().status };
    for (id, want) in [("a1", Failed), ("a2", Failed), ("b-gone", Failed), ("legacy", Failed)] {
        assert_eq!(status(id).await, want, "{id}");
    }
    for id in ["b1", "b2"] {
        assert_eq!(status(id).await, Processing, "{id}");
    }
    assert_eq!(store.fail_interrupted_documents("node-a", 500).await.unwrap(), 0);
    assert_eq!(store.fail_interrupted_documents("node-c", 500).await.unwrap(), 0);

    // the old node-a process (or a job that raced the restart) cannot complete a failed job
    let items = |d: &str| vec![item(&acme.id, Some(d), 0, "alpha"), item(&acme.id, Some(d), 1, "beta")];
    let e = store.finish_document("a1", Processing, Completed, None, items("a1")).await.unwrap_err();
    assert!(matches!(&e, StorageError::Precondition(m) if m.contains("FAILED, not PROCESSING")), "{e}");
    let a1 = store.get_document("a1").await.unwrap();
    assert_eq!((a1.status, a1.chunks), (Failed, 0));
    assert!(a1.error.unwrap().contains("interrupted by a restart"));
    assert_eq!(store.knowledge_fingerprint(&acme.id).await.unwrap(), (0, 0), "nothing was written");

    // node-b finishes its own job, once
    let (b1, ids) = store.finish_document("b1", Processing, Completed, None, items("b1")).await.unwrap();
    assert_eq!((b1.status, b1.chunks, ids.len()), (Completed, 2, 2));
    let e = store.finish_document("b1", Processing, Failed, Some("late".into()), vec![]).await.unwrap_err();
    assert!(matches!(&e, StorageError::Precondition(m) if m.contains("COMPLETED")), "{e}");
    assert_eq!(status("b1").await, Completed);

    // a document deleted while its job ran: the result is refused and no item is left behind
    store.delete_document("b2").await.unwrap();
    assert_err!(
        store.finish_document("b2", Processing, Completed, None, items("b2")).await,
        StorageError::NotFound { what: "document", .. }
    );
    assert_eq!(store.knowledge_fingerprint(&acme.id).await.unwrap(), (2, ids[1]));
}

pub async fn open_room_ids(db: &TestDb) {
    let store = db.store();
    assert!(store.list_open_room_ids().await.unwrap().is_empty());
    room_fixture(db).await;
    let open: BTreeSet<String> = store.list_open_room_ids().await.unwrap().into_iter().collect();
    let expected: BTreeSet<String> = ["a1", "a2", "a4", "b1", "b2"].into_iter().map(String::from).collect();
    assert_eq!(open, expected);

    // Completing a room takes it off the list.
    let a2 = store.get_room("a2").await.unwrap();
    let done = change(&a2, |room| room.status = RoomStatus::Completed, vec![], &["completed"]);
    store.commit_room_change(done).await.unwrap();
    let open = store.list_open_room_ids().await.unwrap();
    assert_eq!(open.len(), 4);
    assert!(!open.contains(&"a2".to_string()));
}

pub async fn room_routing_cursors(db: &TestDb) {
    let store = db.store();
    assert!(store.list_unrouted_rooms(0).await.unwrap().is_empty());
    room_fixture(db).await;
    // Every room has its `created` event unrouted.
    let unrouted = store.list_unrouted_rooms(0).await.unwrap();
    assert_eq!(unrouted.len(), 7, "{unrouted:?}");
    assert!(unrouted.iter().all(|(_, seq)| *seq == 0));

    // Cursors move forward, never back, and only for the rooms named.
    store.advance_routed_seqs(&[("a1".into(), 1), ("a2".into(), 1)]).await.unwrap();
    store.advance_routed_seqs(&[("a1".into(), 0)]).await.unwrap();
    let left: BTreeSet<String> = store.list_unrouted_rooms(0).await.unwrap().into_iter().map(|r| r.0).collect();
    assert!(!left.contains("a1") && !left.contains("a2") && left.len() == 5, "{left:?}");

    // A new event makes a room unrouted again, from its cursor.
    let a1 = store.get_room("a1").await.unwrap();
    store.commit_room_change(change(&a1, |_| {}, vec![], &["participant_joined"])).await.unwrap();
    let unrouted = store.list_unrouted_rooms(0).await.unwrap();
    assert!(unrouted.contains(&("a1".to_string(), 1)), "{unrouted:?}");

    // An ended room drops out once it ended before the window's start.
    let a1 = store.get_room("a1").await.unwrap();
    let ended_at = now_ms();
    let done = change(
        &a1,
        |room| {
            room.status = RoomStatus::Completed;
            room.ended_at_ms = Some(ended_at);
        },
        vec![],
        &["completed"],
    );
    store.commit_room_change(done).await.unwrap();
    assert!(store.list_unrouted_rooms(ended_at).await.unwrap().iter().any(|r| r.0 == "a1"));
    assert!(!store.list_unrouted_rooms(ended_at + 1).await.unwrap().iter().any(|r| r.0 == "a1"));

    // An unknown room is NotFound, and the batch writes nothing.
    assert_err!(
        store.advance_routed_seqs(&[("b1".into(), 1), ("nope".into(), 1)]).await,
        StorageError::NotFound { .. }
    );
    assert!(store.list_unrouted_rooms(0).await.unwrap().iter().any(|r| r.0 == "b1"), "b1 is still unrouted");
}

pub async fn corrupt_values_are_errors(db: &TestDb) {
    let store = db.store();
    let acme = entity(store, "Acme").await;
    let r = create_room(store, room(&acme.id, "r1", 1_000)).await;
    store
        .commit_room_change(change(&r, |_| {}, vec![participant("r1", "p1", 1_100)], &["participant_joined"]))
        .await
        .unwrap();

    assert_eq!(db.execute_raw("UPDATE rooms SET status = 'ENDED' WHERE id = $1", "r1").await, 1);
    assert_err!(store.get_room("r1").await, StorageError::Corrupt { column: "rooms.status", .. });
    assert_err!(
        store.list_rooms(RoomFilter::default(), PageRequest::default()).await,
        StorageError::Corrupt { column: "rooms.status", .. }
    );

    assert_eq!(db.execute_raw("UPDATE participants SET kind = 'ROBOT' WHERE id = $1", "p1").await, 1);
    assert_err!(store.list_participants("r1").await, StorageError::Corrupt { column: "participants.kind", .. });

    assert_eq!(db.execute_raw("UPDATE entities SET max_participants = -1 WHERE id = $1", &acme.id).await, 1);
    assert_err!(store.get_entity(&acme.id).await, StorageError::Corrupt { column: "entities.max_participants", .. });
}

pub async fn reopen_sees_committed_data(db: &TestDb) {
    let store = db.store();
    let acme = entity(store, "Acme").await;
    let r = create_room(store, room(&acme.id, "r1", 1_000)).await;
    let c = change(&r, |room| room.status = RoomStatus::Active, vec![participant("r1", "p1", 1_100)], &["started"]);
    store.commit_room_change(c.clone()).await.unwrap();

    // A second store on the same database (re-running the migrations) reads
    // everything back.
    let again = db.reopen().await;
    assert_eq!(again.get_entity(&acme.id).await.unwrap(), acme);
    assert_eq!(again.get_room("r1").await.unwrap(), c.room);
    assert_eq!(again.list_participants("r1").await.unwrap(), c.participants);
    assert_eq!(again.list_events("r1", 1, 10).await.unwrap(), c.events);
    // And writes through either are seen by the other.
    let other = entity(&*again, "Other").await;
    assert_eq!(store.get_entity(&other.id).await.unwrap(), other);
}

fn notification(
    entity_id: &str,
    id: &str,
    channel: huddle_core::Channel,
    due_at_ms: i64,
) -> huddle_core::NewNotification {
    huddle_core::NewNotification {
        id: id.into(),
        entity_id: entity_id.into(),
        channel,
        recipient: format!("{id}@example.com"),
        content: huddle_core::NotificationContent {
            event_type: "room.ended".into(),
            subject: Some("hi".into()),
            text: Some("text".into()),
            data: serde_json::json!({"n": id}),
            ..Default::default()
        },
        due_at_ms,
        status: huddle_core::NotificationStatus::Pending,
        last_error: None,
    }
}

pub async fn outbox_enqueue_claim_record(db: &TestDb) {
    use huddle_core::{Channel, DeliveryAttempt, NotificationStatus as S, Preference};
    use huddle_storage::{DeliveryOutcome, Next, NotificationFilter};
    let store = db.store();
    let acme = entity(store, "Acme").await;
    let now = now_ms();
    let attempt = |n: u32, code: Option<u32>| DeliveryAttempt {
        attempt: n,
        at_ms: now,
        duration_ms: 3,
        response_code: code,
        error: code.filter(|c| *c >= 400).map(|c| format!("HTTP {c}")),
    };

    // idempotency: the second request with the key gets the first ids and writes nothing
    let first = store
        .enqueue_notifications(&acme.id, Some("k1"), vec![notification(&acme.id, "n1", Channel::Email, now)])
        .await
        .unwrap();
    assert_eq!((first.ids.clone(), first.duplicate), (vec!["n1".to_string()], false));
    let again = store
        .enqueue_notifications(&acme.id, Some("k1"), vec![notification(&acme.id, "n1b", Channel::Email, now)])
        .await
        .unwrap();
    assert_eq!((again.ids, again.duplicate), (vec!["n1".to_string()], true));
    assert_err!(store.get_notification("n1b").await, StorageError::NotFound { .. });
    assert_err!(
        store.enqueue_notifications("ghost", None, vec![notification("ghost", "g", Channel::Email, now)]).await,
        StorageError::NotFound { .. }
    );

    // an opted-out recipient is skipped in the same transaction
    store
        .set_preference(Preference {
            entity_id: acme.id.clone(),
            recipient: "n2@example.com".into(),
            channel: Channel::Email,
            opted_out: true,
            updated_at_ms: now,
        })
        .await
        .unwrap();
    store
        .enqueue_notifications(
            &acme.id,
            None,
            vec![
                notification(&acme.id, "n2", Channel::Email, now),
                notification(&acme.id, "n3", Channel::Email, now + 60_000),
                notification(&acme.id, "n4", Channel::Webhook, now),
            ],
        )
        .await
        .unwrap();
    let n2 = store.get_notification("n2").await.unwrap();
    assert_eq!(n2.status, S::Skipped);
    assert!(n2.last_error.unwrap().contains("opted out"));

    // claims take only due rows of the asked channels, and only once while claimed
    let claimed = store.claim_notifications("node-a", &[Channel::Email], &[], now, 30_000, 10).await.unwrap();
    assert_eq!(claimed.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(), ["n1"]);
    assert_eq!(claimed[0].status, S::Sending);
    assert_eq!(claimed[0].content.data, serde_json::json!({"n": "n1"}));
    assert!(store.claim_notifications("node-b", &[Channel::Email], &[], now, 30_000, 10).await.unwrap().is_empty());
    // a lapsed claim is claimed again
    let reclaimed =
        store.claim_notifications("node-b", &[Channel::Email], &[], now + 30_001, 30_000, 10).await.unwrap();
    assert_eq!(reclaimed.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(), ["n1", "n3"].map(String::from)[..1]);

    // a retry, then delivery; both attempts are kept
    store
        .record_deliveries(&[DeliveryOutcome {
            id: "n1".into(),
            attempt: attempt(1, Some(503)),
            next: Next::Retry { due_at_ms: now + 5_000 },
        }])
        .await
        .unwrap();
    let n1 = store.get_notification("n1").await.unwrap();
    assert_eq!((n1.status, n1.due_at_ms, n1.attempts.len()), (S::Pending, now + 5_000, 1));
    assert_eq!(n1.last_error.as_deref(), Some("HTTP 503"));
    let c = store.claim_notifications("node-a", &[Channel::Email], &[], now + 5_000, 30_000, 10).await.unwrap();
    assert_eq!(c[0].attempt_count, 1, "a claimed row carries how many attempts were made");
    store
        .record_deliveries(&[DeliveryOutcome {
            id: "n1".into(),
            attempt: attempt(2, Some(250)),
            next: Next::Delivered { provider_id: Some("SM1".into()) },
        }])
        .await
        .unwrap();
    let n1 = store.get_notification("n1").await.unwrap();
    assert_eq!(n1.status, S::Delivered);
    assert_eq!(n1.attempts.iter().map(|a| a.response_code).collect::<Vec<_>>(), [Some(503), Some(250)]);
    assert_eq!(n1.provider_id.as_deref(), Some("SM1"));
    let by_provider = store.update_by_provider_id("SM1", S::Failed, Some("undelivered".into())).await.unwrap();
    assert_eq!(by_provider.id, "n1");

    // cancel only while pending
    let n3 = store.cancel_notification("n3").await.unwrap();
    assert_eq!(n3.status, S::Cancelled);
    assert_err!(store.cancel_notification("n3").await, StorageError::Precondition(_));
    assert_err!(store.cancel_notification("nope").await, StorageError::NotFound { .. });

    // release: a restarted node takes its claims back at once
    let w = store.claim_notifications("node-a", &[Channel::Webhook], &[], now, 30_000, 10).await.unwrap();
    assert_eq!(w.len(), 1);
    assert_eq!(store.release_claims("node-b").await.unwrap(), 0);
    assert_eq!(store.release_claims("node-a").await.unwrap(), 1);
    assert_eq!(store.get_notification("n4").await.unwrap().status, S::Pending);

    // a skipped recipient is not claimed; released claims are due again at once, for
    // any node, without an attempt
    let later = huddle_core::now_ms() + 1;
    let skip = ["n4@example.com".to_string()];
    assert!(
        store.claim_notifications("node-a", &[Channel::Webhook], &skip, later, 30_000, 10).await.unwrap().is_empty()
    );
    let other = ["x@example.com".to_string(), "y@example.com".to_string()];
    assert_eq!(
        store.claim_notifications("node-a", &[Channel::Webhook], &other, later, 30_000, 10).await.unwrap().len(),
        1
    );
    let ids = ["n4".to_string(), "nope".to_string()];
    assert_eq!(store.release_notifications("node-b", &ids).await.unwrap(), 0, "not node-b's claim");
    assert_eq!(store.release_notifications("node-a", &ids).await.unwrap(), 1);
    let n4 = store.get_notification("n4").await.unwrap();
    assert_eq!((n4.status, n4.attempt_count, n4.attempts.len()), (S::Pending, 0, 0));
    let again = huddle_core::now_ms() + 1;
    assert_eq!(
        store.claim_notifications("node-b", &[Channel::Webhook], &[], again, 30_000, 10).await.unwrap().len(),
        1
    );
    assert_eq!(store.release_claims("node-b").await.unwrap(), 1);

    // listing: newest first, filtered, paged
    let all = store.list_notifications(NotificationFilter::default(), page(2, "")).await.unwrap();
    assert_eq!(all.items.len(), 2);
    assert!(!all.next_token.is_empty());
    let rest = store.list_notifications(NotificationFilter::default(), page(10, &all.next_token)).await.unwrap();
    assert_eq!(all.items.len() + rest.items.len(), 4);
    let delivered = store
        .list_notifications(
            NotificationFilter { status: Some(S::Failed), entity_id: Some(acme.id.clone()), ..Default::default() },
            page(10, ""),
        )
        .await
        .unwrap();
    assert_eq!(delivered.items.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(), ["n1"]);
    let counts = store.notification_counts(Some(&acme.id)).await.unwrap();
    assert_eq!(counts.iter().map(|(_, c)| c).sum::<u64>(), 4);
}

pub async fn outbox_concurrent_claims_never_overlap(db: &TestDb) {
    use huddle_core::Channel;
    let store = db.reopen().await;
    let acme = entity(store.as_ref(), "Acme").await;
    let now = now_ms();
    let items: Vec<_> = (0..200).map(|i| notification(&acme.id, &format!("c{i:03}"), Channel::Webhook, now)).collect();
    store.enqueue_notifications(&acme.id, None, items).await.unwrap();
    let mut tasks = Vec::new();
    for node in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let c = store
                    .claim_notifications(&format!("node-{node}"), &[Channel::Webhook], &[], now, 60_000, 17)
                    .await
                    .unwrap();
                if c.is_empty() {
                    break;
                }
                mine.extend(c.into_iter().map(|n| n.id));
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: BTreeSet<_> = all.iter().cloned().collect();
    assert_eq!(all.len(), 200, "every row claimed exactly once");
    assert_eq!(unique.len(), 200);
}

/// Many rows at once: a send and a record larger than one statement's rows, an
/// opt-out that holds for one channel only, and a batch naming a notification twice.
pub async fn outbox_writes_many_rows_at_once(db: &TestDb) {
    use huddle_core::{Channel, DeliveryAttempt, NotificationStatus as S, Preference};
    use huddle_storage::{DeliveryOutcome, Next};
    let store = db.store();
    let acme = entity(store, "Acme").await;
    let now = now_ms();
    store
        .set_preference(Preference {
            entity_id: acme.id.clone(),
            recipient: "m0007@example.com".into(),
            channel: Channel::Email,
            opted_out: true,
            updated_at_ms: now,
        })
        .await
        .unwrap();
    let mut items: Vec<_> =
        (0..600).map(|i| notification(&acme.id, &format!("m{i:04}"), Channel::Email, now)).collect();
    // the same person on another channel has not opted out
    let mut sms = notification(&acme.id, "x0007", Channel::Sms, now);
    sms.recipient = "m0007@example.com".into();
    items.push(sms);
    let done = store.enqueue_notifications(&acme.id, None, items).await.unwrap();
    assert_eq!(done.ids.len(), 601);
    assert_eq!(done.ids[0], "m0000");
    assert_eq!(done.ids[599], "m0599");
    assert_eq!(store.get_notification("m0007").await.unwrap().status, S::Skipped);
    assert_eq!(store.get_notification("x0007").await.unwrap().status, S::Pending);
    assert_eq!(store.get_notification("m0599").await.unwrap().content.data, serde_json::json!({"n": "m0599"}));

    let claimed = store.claim_notifications("node-a", &[Channel::Email], &[], now, 60_000, 1_000).await.unwrap();
    assert_eq!(claimed.len(), 599, "all but the skipped one");
    let attempt = |n: u32, code: u32| DeliveryAttempt {
        attempt: n,
        at_ms: now,
        duration_ms: 2,
        response_code: Some(code),
        error: (code >= 400).then(|| format!("HTTP {code}")),
    };
    let mut outcomes: Vec<DeliveryOutcome> = claimed
        .iter()
        .enumerate()
        .map(|(i, n)| match i % 3 {
            0 => DeliveryOutcome {
                id: n.id.clone(),
                attempt: attempt(1, 200),
                next: Next::Delivered { provider_id: None },
            },
            1 => DeliveryOutcome {
                id: n.id.clone(),
                attempt: attempt(1, 503),
                next: Next::Retry { due_at_ms: now + 7_000 },
            },
            _ => DeliveryOutcome { id: n.id.clone(), attempt: attempt(1, 404), next: Next::Failed },
        })
        .collect();
    // a second outcome for the first one: its attempt is kept, but the first outcome set the status
    outcomes.push(DeliveryOutcome {
        id: claimed[0].id.clone(),
        attempt: attempt(2, 500),
        next: Next::Retry { due_at_ms: now + 1 },
    });
    store.record_deliveries(&outcomes).await.unwrap();
    // recording again changes nothing (attempts are keyed by number; rows are no longer SENDING)
    store.record_deliveries(&outcomes).await.unwrap();
    let first = store.get_notification(&claimed[0].id).await.unwrap();
    assert_eq!(first.status, S::Delivered);
    assert_eq!(first.attempts.iter().map(|a| a.response_code).collect::<Vec<_>>(), [Some(200), Some(500)]);
    let retry = store.get_notification(&claimed[1].id).await.unwrap();
    assert_eq!((retry.status, retry.due_at_ms, retry.attempt_count), (S::Pending, now + 7_000, 1));
    assert_eq!(retry.last_error.as_deref(), Some("HTTP 503"));
    let failed = store.get_notification(&claimed[596].id).await.unwrap();
    assert_eq!((failed.status, failed.attempts.len()), (S::Failed, 1));
    let counts = store.notification_counts(Some(&acme.id)).await.unwrap();
    let count = |s: S| counts.iter().find(|(x, _)| *x == s).map_or(0, |(_, c)| *c);
    assert_eq!((count(S::Delivered), count(S::Pending), count(S::Failed), count(S::Skipped)), (200, 200 + 1, 199, 1));
}

pub async fn webhook_endpoints_and_rotation(db: &TestDb) {
    use huddle_core::WebhookEndpoint;
    let store = db.store();
    let acme = entity(store, "Acme").await;
    let ep = |id: &str, at: i64| WebhookEndpoint {
        id: id.into(),
        entity_id: acme.id.clone(),
        url: "https://example.com/hook".into(),
        event_types: vec!["room.ended".into()],
        headers: vec![("X-Team".into(), "blue".into())],
        secret: "whsec_AAAA".into(),
        previous_secret: None,
        previous_secret_until_ms: None,
        disabled: false,
        disabled_reason: None,
        created_at_ms: at,
        updated_at_ms: at,
    };
    store.create_endpoint(ep("e1", 1)).await.unwrap();
    store.create_endpoint(ep("e2", 2)).await.unwrap();
    assert_err!(
        store.create_endpoint(WebhookEndpoint { entity_id: "ghost".into(), ..ep("e3", 3) }).await,
        StorageError::NotFound { .. }
    );
    assert_eq!(store.get_endpoint("e1").await.unwrap(), ep("e1", 1));
    let rotated = store.rotate_endpoint_secret("e1", "whsec_BBBB", 99).await.unwrap();
    assert_eq!(
        (rotated.secret.as_str(), rotated.previous_secret.as_deref(), rotated.previous_secret_until_ms),
        ("whsec_BBBB", Some("whsec_AAAA"), Some(99))
    );
    let disabled = store.disable_endpoint("e2", "410 Gone").await.unwrap();
    assert!(disabled.disabled);
    assert_eq!(disabled.disabled_reason.as_deref(), Some("410 Gone"));
    let listed = store.list_endpoints(&acme.id).await.unwrap();
    assert_eq!(listed.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["e1", "e2"]);
    assert_err!(store.disable_endpoint("nope", "x").await, StorageError::NotFound { .. });
    assert_err!(store.rotate_endpoint_secret("nope", "x", 1).await, StorageError::NotFound { .. });
}

pub async fn livekit_rooms_and_recordings(db: &TestDb) {
    let store = db.store();
    let acme = entity(store, "Acme").await;
    let mut first = room(&acme.id, "lk1", 1_000);
    first.livekit_room = Some("standup".into());
    let first = create_room(store, first).await;
    assert_eq!(store.get_room("lk1").await.unwrap().livekit_room.as_deref(), Some("standup"));
    assert_eq!(store.find_livekit_room("standup").await.unwrap().id, "lk1");
    assert_err!(store.find_livekit_room("other").await, StorageError::NotFound { .. });

    // one open room per LiveKit room name
    let mut clash = room(&acme.id, "lk2", 2_000);
    clash.livekit_room = Some("standup".into());
    assert_err!(
        store.create_room(clash.clone(), vec![event("lk2", 1, "created", 2_000)]).await,
        StorageError::AlreadyExists { what: "open room for LiveKit room", .. }
    );
    assert_err!(store.get_room("lk2").await, StorageError::NotFound { .. });

    // once the first is over the name is free, and the open room wins lookups
    let done = change(
        &first,
        |room| {
            room.status = RoomStatus::Cancelled;
            room.cancel_reason = Some("moved".into());
        },
        vec![],
        &["cancelled"],
    );
    store.commit_room_change(done).await.unwrap();
    assert_eq!(store.find_livekit_room("standup").await.unwrap().id, "lk1");
    store.create_room(clash, vec![event("lk2", 1, "created", 2_000)]).await.unwrap();
    assert_eq!(store.find_livekit_room("standup").await.unwrap().id, "lk2");

    // recordings: a repeated egress id updates its row
    let mut rec = huddle_core::Recording {
        egress_id: "EG_1".into(),
        room_id: "lk1".into(),
        status: "EGRESS_ACTIVE".into(),
        locations: vec![],
        started_at_ms: Some(1_500),
        ended_at_ms: None,
        error: None,
        recorded_at_ms: 1_600,
    };
    store.upsert_recording(&rec).await.unwrap();
    rec.status = "EGRESS_COMPLETE".into();
    rec.locations = vec!["s3://bucket/a.mp4".into(), "https://cdn/a.m3u8".into()];
    rec.ended_at_ms = Some(1_900);
    rec.recorded_at_ms = 1_950;
    store.upsert_recording(&rec).await.unwrap();
    assert_eq!(store.list_recordings("lk1").await.unwrap(), vec![rec.clone()]);
    assert!(store.list_recordings("lk2").await.unwrap().is_empty());
    let orphan = huddle_core::Recording { egress_id: "EG_2".into(), room_id: "nope".into(), ..rec };
    assert_err!(store.upsert_recording(&orphan).await, StorageError::NotFound { .. });
}

/// A LiveKit room name belongs to the entity that bound it first, for ever: another
/// entity can never bind it (while the owner's room is open, after it is over, in
/// any order), the owner can bind it again, a refused or failed create claims
/// nothing, and lookups only see the owner's rooms.
pub async fn livekit_names_belong_to_one_entity(db: &TestDb) {
    let store = db.store();
    let (acme, globex) = (entity(store, "Acme").await, entity(store, "Globex").await);
    let bound = |entity_id: &str, id: &str, at: i64, name: &str| {
        let mut r = room(entity_id, id, at);
        r.livekit_room = Some(name.into());
        r
    };
    let create = |r: huddle_core::Room| {
        let events = vec![event(&r.id, 1, "created", r.created_at_ms)];
        store.create_room(r, events)
    };
    assert_eq!(store.livekit_owner("board").await.unwrap(), None);
    let a1 = create(bound(&acme.id, "a1", 1_000, "board")).await.unwrap();
    assert_eq!(store.livekit_owner("board").await.unwrap().as_deref(), Some(acme.id.as_str()));

    // another entity: refused while the owner's room is open, without naming the owner
    match create(bound(&globex.id, "g1", 2_000, "board")).await {
        Err(e @ StorageError::Claimed { what: "LiveKit room", .. }) => {
            assert!(!e.to_string().contains(&acme.id), "{e}");
        }
        other => panic!("expected Claimed, got {other:?}"),
    }
    assert_err!(store.get_room("g1").await, StorageError::NotFound { .. });

    // ... and after it is over: the name never moves
    let over = change(&a1, |r| r.status = RoomStatus::Completed, vec![], &["completed"]);
    store.commit_room_change(over).await.unwrap();
    assert_err!(create(bound(&globex.id, "g1", 3_000, "board")).await, StorageError::Claimed { .. });
    // the owner binds it again once its room is over, not twice at once
    create(bound(&acme.id, "a2", 4_000, "board")).await.unwrap();
    assert_err!(
        create(bound(&acme.id, "a3", 5_000, "board")).await,
        StorageError::AlreadyExists { what: "open room for LiveKit room", .. }
    );
    assert_eq!(store.find_livekit_room("board").await.unwrap().id, "a2");
    assert_eq!(store.livekit_owner("board").await.unwrap().as_deref(), Some(acme.id.as_str()));

    // the other way round: Globex's name is Globex's
    create(bound(&globex.id, "g2", 6_000, "huddle-room")).await.unwrap();
    assert_err!(create(bound(&acme.id, "a4", 7_000, "huddle-room")).await, StorageError::Claimed { .. });
    assert_eq!(store.find_livekit_room("huddle-room").await.unwrap().id, "g2");

    // a create that fails claims nothing (the claim is in its transaction)
    assert_err!(create(bound(&globex.id, "a1", 8_000, "fresh")).await, StorageError::AlreadyExists { .. });
    assert_eq!(store.livekit_owner("fresh").await.unwrap(), None);
    create(bound(&acme.id, "a5", 9_000, "fresh")).await.unwrap();
    assert_eq!(store.livekit_owner("fresh").await.unwrap().as_deref(), Some(acme.id.as_str()));

    // sessions: the first sid recorded stays unless replaced
    assert_eq!(store.livekit_sid("a2").await.unwrap(), None);
    assert_eq!(store.find_livekit_session("board", "RM_1").await.unwrap(), None);
    assert_eq!(store.set_livekit_sid("a2", "RM_1", false).await.unwrap(), "RM_1");
    assert_eq!(store.set_livekit_sid("a2", "RM_2", false).await.unwrap(), "RM_1");
    assert_eq!(store.find_livekit_session("board", "RM_1").await.unwrap().unwrap().id, "a2");
    assert_eq!(store.set_livekit_sid("a2", "RM_2", true).await.unwrap(), "RM_2");
    assert_eq!(store.livekit_sid("a2").await.unwrap().as_deref(), Some("RM_2"));
    assert_eq!(store.find_livekit_session("board", "RM_1").await.unwrap(), None);
    assert_eq!(store.find_livekit_session("board", "RM_2").await.unwrap().unwrap().id, "a2");
    // an earlier room of the same session: the open one wins, then the latest
    store.set_livekit_sid("a1", "RM_2", true).await.unwrap();
    assert_eq!(store.find_livekit_session("board", "RM_2").await.unwrap().unwrap().id, "a2");
    // a sid is only for a bound room of the owner's name
    assert_eq!(store.find_livekit_session("huddle-room", "RM_2").await.unwrap(), None);
    create_room(store, room(&acme.id, "plain", 10_000)).await;
    assert_err!(store.set_livekit_sid("plain", "RM_9", true).await, StorageError::Precondition(_));
    assert_err!(store.set_livekit_sid("nope", "RM_9", true).await, StorageError::NotFound { .. });
    assert_err!(store.livekit_sid("nope").await, StorageError::NotFound { .. });
    // a room change leaves the session alone
    let a2 = store.get_room("a2").await.unwrap();
    let ended = change(&a2, |r| r.status = RoomStatus::Completed, vec![], &["completed"]);
    store.commit_room_change(ended).await.unwrap();
    assert_eq!(store.livekit_sid("a2").await.unwrap().as_deref(), Some("RM_2"));
}

/// Send requests written together: several entities in one statement, idempotency
/// keys (a repeated one writes nothing), and a request that cannot be written
/// failing the whole batch, with or without a transaction around it.
pub async fn outbox_batches_are_all_or_nothing(db: &TestDb) {
    use huddle_core::{Channel, NotificationStatus as S, Preference};
    use huddle_storage::EnqueueRequest;
    let store = db.store();
    let (acme, globex) = (entity(store, "Acme").await, entity(store, "Globex").await);
    let now = now_ms();
    store
        .set_preference(Preference {
            entity_id: globex.id.clone(),
            recipient: "g1@example.com".into(),
            channel: Channel::Email,
            opted_out: true,
            updated_at_ms: now,
        })
        .await
        .unwrap();
    let req = |e: &str, key: Option<&str>, ids: &[&str]| EnqueueRequest {
        entity_id: e.to_string(),
        idempotency_key: key.map(str::to_string),
        items: ids.iter().map(|id| notification(e, id, Channel::Email, now)).collect(),
    };

    // no keys: one statement for both entities; the opt-out is Globex's only
    let done = store
        .enqueue_notification_batch(vec![req(&acme.id, None, &["a1", "a2"]), req(&globex.id, None, &["g1"])])
        .await
        .unwrap();
    assert_eq!(done.iter().map(|d| (d.ids.len(), d.duplicate)).collect::<Vec<_>>(), [(2, false), (1, false)]);
    assert_eq!(store.get_notification("a1").await.unwrap().entity_id, acme.id);
    assert_eq!(store.get_notification("g1").await.unwrap().status, S::Skipped);
    assert_eq!(store.get_notification("a2").await.unwrap().status, S::Pending);

    // keys: the first use writes, a repeat returns the first ids and writes nothing
    let done = store
        .enqueue_notification_batch(vec![req(&acme.id, Some("k"), &["a3"]), req(&globex.id, None, &["g2"])])
        .await
        .unwrap();
    assert_eq!((done[0].ids.clone(), done[0].duplicate), (vec!["a3".to_string()], false));
    let done = store
        .enqueue_notification_batch(vec![req(&globex.id, None, &["g3"]), req(&acme.id, Some("k"), &["a4"])])
        .await
        .unwrap();
    assert_eq!((done[0].ids.clone(), done[0].duplicate), (vec!["g3".to_string()], false));
    assert_eq!((done[1].ids.clone(), done[1].duplicate), (vec!["a3".to_string()], true));
    assert_err!(store.get_notification("a4").await, StorageError::NotFound { .. });
    assert_eq!(store.get_notification("g3").await.unwrap().status, S::Pending);

    // an unknown entity fails the batch and nothing of it is written: one statement ...
    match store.enqueue_notification_batch(vec![req(&acme.id, None, &["a5"]), req("ghost", None, &["x1"])]).await {
        Err(StorageError::NotFound { what: "entity", id }) => assert!(id.contains("ghost"), "names {id}"),
        other => panic!("expected an unknown entity, got {other:?}"),
    }
    assert_err!(store.get_notification("a5").await, StorageError::NotFound { .. });
    // ... or a transaction (a key, so the batch takes one)
    assert_err!(
        store.enqueue_notification_batch(vec![req(&acme.id, Some("k2"), &["a6"]), req("ghost", None, &["x2"])]).await,
        StorageError::NotFound { .. }
    );
    assert_err!(store.get_notification("a6").await, StorageError::NotFound { .. });
    // the key of the failed batch was not kept either
    let done = store.enqueue_notification_batch(vec![req(&acme.id, Some("k2"), &["a7"])]).await.unwrap();
    assert_eq!((done[0].ids.clone(), done[0].duplicate), (vec!["a7".to_string()], false));
    // a repeated id is refused, and the rest of its statement with it
    assert_err!(
        store.enqueue_notification_batch(vec![req(&acme.id, None, &["a8", "a1"])]).await,
        StorageError::AlreadyExists { .. }
    );
    assert_err!(store.get_notification("a8").await, StorageError::NotFound { .. });
}
