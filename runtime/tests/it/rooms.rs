//! Rooms through the embeddable API, on SQLite and on Postgres.

use huddle_core::{NewDepartment, NewRoom, ParticipantKind, RoomStatus};
use huddle_runtime::ApiError;
use huddle_storage::{EntityUpdate, PageRequest, RoomFilter};

use crate::common::{self, Fixture, entity, human, room};

async fn lifecycle_and_participants(f: Fixture) {
    let api = f.rt.admin();
    let e = entity(&api, "Acme", Some(3)).await;
    let r = room(&api, &e.id).await;
    let id = r.view.room.id.clone();
    assert_eq!(r.view.room.status, RoomStatus::Scheduled);

    // illegal edges name both states
    let err = api.end_room(&id).await.unwrap_err();
    assert!(matches!(err, ApiError::InvalidTransition { from: RoomStatus::Scheduled, to: RoomStatus::Completed }));
    assert!(err.to_string().contains("SCHEDULED") && err.to_string().contains("COMPLETED"), "{err}");

    let started = api.start_room(&id).await.unwrap();
    assert_eq!(started.view.room.status, RoomStatus::Active);
    let ada = api.join_room(&id, human("Ada")).await.unwrap();
    let mut bot = human("Notetaker");
    bot.kind = ParticipantKind::Agent;
    api.join_room(&id, bot).await.unwrap();
    api.join_room(&id, human("Bob")).await.unwrap();
    let full = api.join_room(&id, human("Cy")).await.unwrap_err();
    assert!(matches!(full, ApiError::ResourceExhausted(_)), "{full}");

    let left = api.leave_room(&id, &ada.id).await.unwrap();
    assert!(left.left_at_ms.unwrap() >= left.joined_at_ms);
    let got = api.get_room(&id).await.unwrap();
    assert_eq!(got.view.participants.len(), 3);
    assert_eq!(got.view.participants.iter().filter(|p| p.is_present()).count(), 2);

    let ended = api.end_room(&id).await.unwrap();
    assert_eq!(ended.view.room.status, RoomStatus::Completed);
    assert!(ended.view.participants.iter().all(|p| !p.is_present()));
    // ended rooms hold no actor, and refuse changes with clear errors
    common::eventually("room actor to stop", || async { f.rt.stats().await.unwrap().live_rooms == 0 }).await;
    let err = api.start_room(&id).await.unwrap_err();
    assert!(matches!(err, ApiError::InvalidTransition { from: RoomStatus::Completed, to: RoomStatus::Active }));
    let err = api.join_room(&id, human("Late")).await.unwrap_err();
    assert!(matches!(err, ApiError::FailedPrecondition(_)), "{err}");
    assert_eq!(f.rt.stats().await.unwrap().live_rooms, 0, "a refused change must not spawn an actor");

    // the log holds every change, in order
    let events = f.rt.store().list_events(&id, 0, 100).await.unwrap();
    let kinds: Vec<_> = events.iter().map(|e| e.kind()).collect();
    assert_eq!(
        kinds,
        [
            "created",
            "started",
            "participant_joined",
            "participant_joined",
            "participant_joined",
            "participant_left",
            "participant_left",
            "participant_left",
            "completed"
        ]
    );
    assert!(events.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    f.rt.shutdown().await;
}

#[tokio::test]
async fn lifecycle_and_participants_sqlite() {
    lifecycle_and_participants(common::sqlite().await).await;
}

#[tokio::test]
async fn lifecycle_and_participants_postgres() {
    lifecycle_and_participants(common::postgres().await).await;
}

#[tokio::test]
async fn cancel_needs_reason_and_is_recorded() {
    let f = common::sqlite().await;
    let api = f.rt.admin();
    let e = entity(&api, "Acme", None).await;
    let id = room(&api, &e.id).await.view.room.id;
    let err = api.cancel_room(&id, "  ").await.unwrap_err();
    assert!(matches!(err, ApiError::InvalidArgument { field: "reason", .. }));
    let c = api.cancel_room(&id, "speaker ill").await.unwrap();
    assert_eq!(c.view.room.status, RoomStatus::Cancelled);
    assert_eq!(c.view.room.cancel_reason.as_deref(), Some("speaker ill"));
    let err = api.cancel_room(&id, "again").await.unwrap_err();
    assert!(matches!(err, ApiError::InvalidTransition { from: RoomStatus::Cancelled, to: RoomStatus::Cancelled }));
    f.rt.shutdown().await;
}

#[tokio::test]
async fn effective_instructions_join_entity_department_room() {
    let f = common::sqlite().await;
    let api = f.rt.admin();
    let e = api
        .create_entity(huddle_core::NewEntity {
            name: "Acme".into(),
            default_instructions: "Be brief.".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let d = api
        .create_department(NewDepartment {
            entity_id: e.id.clone(),
            name: "Sales".into(),
            instructions: "Track pricing questions.".into(),
        })
        .await
        .unwrap();
    let r = api
        .create_room(NewRoom {
            entity_id: e.id.clone(),
            department_id: Some(d.id.clone()),
            title: "Pipeline review".into(),
            custom_instructions: "Focus on Q3.".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r.effective_instructions, "Be brief.\n\nTrack pricing questions.\n\nFocus on Q3.");
    // instructions over 8,000 characters are refused, naming the field
    let err = api
        .create_department(NewDepartment {
            entity_id: e.id.clone(),
            name: "Ops".into(),
            instructions: "x".repeat(8_001),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::InvalidArgument { field: "instructions", .. }), "{err}");
    let dup = api
        .create_department(NewDepartment { entity_id: e.id.clone(), name: "Sales".into(), instructions: String::new() })
        .await
        .unwrap_err();
    assert!(matches!(dup, ApiError::AlreadyExists { .. }), "{dup}");
    f.rt.shutdown().await;
}

#[tokio::test]
async fn room_cap_never_exceeds_entity_cap() {
    let f = common::sqlite().await;
    let api = f.rt.admin();
    let e = entity(&api, "Small", Some(2)).await;
    let err = api
        .create_room(NewRoom {
            entity_id: e.id.clone(),
            title: "Big".into(),
            max_participants: 5,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::InvalidArgument { field: "max_participants", .. }));
    // lowering the entity's cap later also caps existing rooms
    let id = room(&api, &e.id).await.view.room.id;
    api.update_entity(&e.id, EntityUpdate { max_participants: Some(1), ..Default::default() }).await.unwrap();
    api.join_room(&id, human("Ada")).await.unwrap();
    let full = api.join_room(&id, human("Bob")).await.unwrap_err();
    assert!(matches!(full, ApiError::ResourceExhausted(_)));
    f.rt.shutdown().await;
}

#[tokio::test]
async fn entity_scope_sees_only_its_own_entity() {
    let f = common::sqlite().await;
    let admin = f.rt.admin();
    let a = entity(&admin, "A", None).await;
    let b = entity(&admin, "B", None).await;
    let room_a = room(&admin, &a.id).await.view.room.id;
    let room_b = room(&admin, &b.id).await.view.room.id;
    let as_a = f.rt.for_entity(a.id.clone());

    assert_eq!(as_a.get_room(&room_a).await.unwrap().view.room.id, room_a);
    for err in [
        as_a.get_room(&room_b).await.unwrap_err(),
        as_a.start_room(&room_b).await.unwrap_err(),
        as_a.join_room(&room_b, human("Eve")).await.unwrap_err(),
        as_a.get_entity(&b.id).await.unwrap_err(),
        as_a.watch_room(&room_b).await.err().unwrap(),
    ] {
        assert!(matches!(err, ApiError::NotFound { .. }), "{err}");
    }
    let listed = as_a.list_rooms(RoomFilter::default(), PageRequest::default()).await.unwrap();
    assert_eq!(listed.items.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [room_a.as_str()]);
    let ents = as_a.list_entities(PageRequest::default()).await.unwrap();
    assert_eq!(ents.items.len(), 1);
    assert!(matches!(as_a.create_entity(Default::default()).await.unwrap_err(), ApiError::PermissionDenied(_)));
    assert!(matches!(as_a.create_api_key(&a.id).await.unwrap_err(), ApiError::PermissionDenied(_)));
    // nothing of B changed
    assert_eq!(admin.get_room(&room_b).await.unwrap().view.room.status, RoomStatus::Scheduled);
    f.rt.shutdown().await;
}

#[tokio::test]
async fn bad_input_names_the_field_and_writes_nothing() {
    let f = common::sqlite().await;
    let api = f.rt.admin();
    let e = entity(&api, "Acme", None).await;
    let cases = [
        (api.create_room(NewRoom { entity_id: e.id.clone(), title: "".into(), ..Default::default() }).await, "title"),
        (
            api.create_room(NewRoom { entity_id: "no such/id".into(), title: "t".into(), ..Default::default() }).await,
            "entity_id",
        ),
    ];
    for (res, field) in cases {
        match res.unwrap_err() {
            ApiError::InvalidArgument { field: f, .. } => assert_eq!(f, field),
            other => panic!("expected invalid {field}, got {other}"),
        }
    }
    let rooms = api.list_rooms(RoomFilter::default(), PageRequest::default()).await.unwrap();
    assert!(rooms.items.is_empty(), "a refused request must write nothing");
    let id = room(&api, &e.id).await.view.room.id;
    let mut p = human("Ada");
    p.email = Some("not-an-email".into());
    let err = api.join_room(&id, p).await.unwrap_err();
    assert!(matches!(err, ApiError::InvalidArgument { field: "email", .. }));
    let err = api.get_room("0190f7b2-0000-7000-8000-000000000000").await.unwrap_err();
    assert!(matches!(err, ApiError::NotFound { what: "room", .. }));
    assert_eq!(f.rt.store().list_events(&id, 0, 10).await.unwrap().len(), 1);
    f.rt.shutdown().await;
}

#[tokio::test]
async fn idle_rooms_are_passivated_and_come_back_intact() {
    use futures::StreamExt;
    use huddle_runtime::{RoomsConfig, Runtime, WatchItem};
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::builder()
        .database_url(format!("sqlite://{}", dir.path().join("p.db").display()))
        .rooms(RoomsConfig { idle_timeout_ms: 100, ..RoomsConfig::default() })
        .build()
        .await
        .unwrap();
    let api = rt.admin();
    let e = entity(&api, "Acme", None).await;
    let id = room(&api, &e.id).await.view.room.id;
    api.start_room(&id).await.unwrap();
    let ada = api.join_room(&id, human("Ada")).await.unwrap();
    let mut w = api.watch_room(&id).await.unwrap();
    assert!(matches!(w.next().await, Some(Ok(WatchItem::Snapshot(_)))));
    assert_eq!(rt.stats().await.unwrap().live_rooms, 1);
    common::eventually("idle room passivated", || async { rt.stats().await.unwrap().live_rooms == 0 }).await;
    // the room is still ACTIVE, readable without an actor, and a change brings the actor back
    assert_eq!(api.get_room(&id).await.unwrap().view.room.status, RoomStatus::Active);
    assert_eq!(rt.stats().await.unwrap().live_rooms, 0, "reads must not spawn actors");
    api.leave_room(&id, &ada.id).await.unwrap();
    assert_eq!(rt.stats().await.unwrap().live_rooms, 1);
    // the watcher subscribed before passivation still sees the change
    let Some(Ok(WatchItem::Event(ev))) = w.next().await else { panic!("expected an event") };
    assert_eq!(ev.kind(), "participant_left");
    rt.shutdown().await;
}
