//! LiveKit: rooms bound to LiveKit rooms. Webhooks are signed the way a
//! LiveKit server signs them (an HS256 JWT from the API key pair whose
//! `sha256` claim is the body's SHA-256, made here with livekit-api's
//! AccessToken) and posted to a real node's `POST /webhooks/livekit`; their
//! bodies are the JSON a LiveKit server sends. Participant tokens from
//! JoinRoom are checked with livekit-api's TokenVerifier.

use base64::Engine;
use huddle_core::{NewRoom, ParticipantKind, RoomStatus};
use huddle_runtime::server::Server;
use huddle_runtime::{ApiError, Config, LiveKitConfig, Runtime};
use livekit_api::access_token::{AccessToken, TokenVerifier};
use sha2::Digest;
use tokio_util::sync::CancellationToken;

const KEY: &str = "APIhuddletest";
const SECRET: &str = "livekit-test-secret-0123456789abcdef";

struct Node {
    rt: Runtime,
    http: std::net::SocketAddr,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn node(livekit: bool) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.http = "127.0.0.1:0".parse().unwrap();
    config.database.url = format!("sqlite://{}", dir.path().join("lk.db").display());
    if livekit {
        config.livekit = LiveKitConfig {
            url: Some("http://livekit.test:7880".into()),
            api_key: Some(KEY.into()),
            api_secret: Some(SECRET.into()),
            ..Default::default()
        };
    }
    let server = Server::bind(config).await.unwrap();
    let http = server.http_addr();
    let rt = server.runtime().clone();
    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move { server.run(stop).await.unwrap() }
    });
    Node { rt, http, stop, _dir: dir }
}

/// The `Authorization` value a LiveKit server sends with `body`.
fn signature(body: &str, key: &str, secret: &str) -> String {
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(body.as_bytes()));
    AccessToken::with_api_key(key, secret).with_sha256(&hash).to_jwt().unwrap()
}

async fn post(http: std::net::SocketAddr, body: &str, authorization: Option<String>) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .post(format!("http://{http}/webhooks/livekit"))
        .header("content-type", "application/webhook+json")
        .body(body.to_string());
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn deliver(http: std::net::SocketAddr, body: &str) -> (u16, String) {
    post(http, body, Some(signature(body, KEY, SECRET))).await
}

async fn bound(
    api: &huddle_runtime::Api,
    entity_id: &str,
    title: &str,
    livekit_room: &str,
) -> Result<huddle_runtime::RoomDetails, ApiError> {
    api.create_room(NewRoom {
        entity_id: entity_id.to_string(),
        title: title.into(),
        livekit_room: Some(livekit_room.into()),
        ..Default::default()
    })
    .await
}

/// Now, in the Unix seconds of webhook timestamps.
fn now_s() -> i64 {
    huddle_core::now_ms() / 1000
}

/// A room event of LiveKit session `RM_{room}`, made now.
fn room_event(event: &str, room: &str, id: &str) -> String {
    session_event(event, room, &format!("RM_{room}"), id, now_s())
}

/// A room event of LiveKit session `sid` of room `room`, made at `created_at` (Unix seconds).
fn session_event(event: &str, room: &str, sid: &str, id: &str, created_at: i64) -> String {
    format!(
        r#"{{"event":"{event}","room":{{"sid":"{sid}","name":"{room}","emptyTimeout":300,"creationTime":"{created_at}"}},"id":"{id}","createdAt":"{created_at}"}}"#
    )
}

fn participant_event(event: &str, room: &str, identity: &str, name: &str, kind: &str, id: &str) -> String {
    let at = now_s();
    format!(
        r#"{{"event":"{event}","room":{{"sid":"RM_{room}","name":"{room}"}},"participant":{{"sid":"PA_{identity}","identity":"{identity}","name":"{name}","state":"ACTIVE","kind":"{kind}","joinedAt":"{at}"}},"id":"{id}","createdAt":"{at}"}}"#
    )
}

/// A participant who leaves the identity to huddle (rooms bound to LiveKit insist).
fn nobody(name: &str) -> huddle_core::NewParticipant {
    huddle_core::NewParticipant { identity: String::new(), ..crate::common::human(name) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livekit_webhooks_keep_the_bound_room_in_step() {
    let n = node(true).await;
    let api = n.rt.admin();
    let acme = crate::common::entity(&api, "Acme", None).await;
    let room = bound(&api, &acme.id, "Standup", "standup-42").await.unwrap();
    let id = room.view.room.id.clone();
    assert_eq!(room.view.room.livekit_room.as_deref(), Some("standup-42"));

    // room_started -> ACTIVE; a redelivery changes nothing
    let started = room_event("room_started", "standup-42", "EV_1");
    let (code, text) = deliver(n.http, &started).await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(api.get_room(&id).await.unwrap().view.room.status, RoomStatus::Active);
    let seq = api.get_room(&id).await.unwrap().view.room.event_seq;
    let (code, text) = deliver(n.http, &started).await;
    assert_eq!((code, text.starts_with("ignored")), (200, true), "{text}");
    assert_eq!(api.get_room(&id).await.unwrap().view.room.event_seq, seq);

    // participants join (the agent as an agent, the egress recorder not at all)
    for (who, name, kind, ev) in
        [("ada", "Ada", "STANDARD", "EV_2"), ("huddle-agent", "", "AGENT", "EV_3"), ("EG_rec", "", "EGRESS", "EV_4")]
    {
        let (code, text) =
            deliver(n.http, &participant_event("participant_joined", "standup-42", who, name, kind, ev)).await;
        assert_eq!(code, 200, "{text}");
    }
    // a repeated join is idempotent
    let again = participant_event("participant_joined", "standup-42", "ada", "Ada", "STANDARD", "EV_2");
    assert_eq!(deliver(n.http, &again).await.0, 200);
    let got = api.get_room(&id).await.unwrap();
    let people: Vec<_> =
        got.view.participants.iter().map(|p| (p.identity.as_str(), p.display_name.as_str(), p.kind)).collect();
    assert_eq!(
        people,
        vec![("ada", "Ada", ParticipantKind::Human), ("huddle-agent", "huddle-agent", ParticipantKind::Agent)]
    );

    // participant_left -> left
    let (code, text) =
        deliver(n.http, &participant_event("participant_left", "standup-42", "ada", "Ada", "STANDARD", "EV_5")).await;
    assert_eq!(code, 200, "{text}");
    let ada = api.get_room(&id).await.unwrap().view.participants.into_iter().find(|p| p.identity == "ada").unwrap();
    assert!(!ada.is_present());

    // room_finished -> COMPLETED, everyone gone
    let (code, text) = deliver(n.http, &room_event("room_finished", "standup-42", "EV_6")).await;
    assert_eq!(code, 200, "{text}");
    let done = api.get_room(&id).await.unwrap();
    assert_eq!(done.view.room.status, RoomStatus::Completed);
    assert!(done.view.participants.iter().all(|p| !p.is_present()));

    // egress_ended after the room finished -> a recording; a redelivery updates it
    let egress = |status: &str| {
        format!(
            r#"{{"event":"egress_ended","egressInfo":{{"egressId":"EG_abc","roomId":"RM_standup-42","roomName":"standup-42","status":"{status}","startedAt":"1764480000000000000","endedAt":"1764480060000000000","fileResults":[{{"filename":"standup.mp4","location":"s3://rec/standup.mp4","duration":"60000000000"}}]}},"id":"EV_7","createdAt":"1764480061"}}"#
        )
    };
    let (code, text) = deliver(n.http, &egress("EGRESS_COMPLETE")).await;
    assert_eq!(code, 200, "{text}");
    deliver(n.http, &egress("EGRESS_COMPLETE")).await;
    let recs = api.list_recordings(&id).await.unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].egress_id, "EG_abc");
    assert_eq!(recs[0].status, "EGRESS_COMPLETE");
    assert_eq!(recs[0].locations, vec!["s3://rec/standup.mp4".to_string()]);
    assert_eq!(recs[0].started_at_ms, Some(1_764_480_000_000));
    assert_eq!(recs[0].ended_at_ms, Some(1_764_480_060_000));

    // the name is free again for a new room; the next LiveKit session's webhooks go to it
    let next = bound(&api, &acme.id, "Standup 2", "standup-42").await.unwrap();
    deliver(n.http, &session_event("room_started", "standup-42", "RM_standup-42-b", "EV_8", now_s())).await;
    assert_eq!(api.get_room(&next.view.room.id).await.unwrap().view.room.status, RoomStatus::Active);
    // ... but not while it is open
    let dup = bound(&api, &acme.id, "Clash", "standup-42").await.unwrap_err();
    assert!(matches!(dup, ApiError::AlreadyExists { .. }), "{dup}");

    // rooms huddle does not know are acknowledged and ignored
    let (code, text) = deliver(n.http, &room_event("room_started", "someone-elses", "EV_9")).await;
    assert_eq!((code, text.contains("no room is bound")), (200, true), "{text}");
    n.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livekit_webhooks_with_bad_signatures_are_refused() {
    let n = node(true).await;
    let api = n.rt.admin();
    let acme = crate::common::entity(&api, "Acme", None).await;
    let room = bound(&api, &acme.id, "Standup", "guarded").await.unwrap();
    let body = room_event("room_started", "guarded", "EV_1");
    let other = room_event("room_finished", "guarded", "EV_2");
    let forged = [
        None,                                                         // no Authorization
        Some("Bearer not-a-jwt".to_string()),                         // garbage
        Some(signature(&body, KEY, "another-secret-00000000000000")), // wrong secret
        Some(signature(&body, "APIother", SECRET)),                   // wrong key (issuer)
        Some(signature(&other, KEY, SECRET)),                         // a valid JWT for another body
    ];
    for auth in forged {
        let (code, text) = post(n.http, &body, auth.clone()).await;
        assert_eq!(code, 401, "{auth:?}: {text}");
    }
    assert_eq!(api.get_room(&room.view.room.id).await.unwrap().view.room.status, RoomStatus::Scheduled);
    // a good signature on a body that is not an event is a client error
    assert_eq!(deliver(n.http, "{\"event\": 5}").await.0, 400);
    // with "Bearer " or without, the genuine one applies
    assert_eq!(post(n.http, &body, Some(format!("Bearer {}", signature(&body, KEY, SECRET)))).await.0, 200);
    assert_eq!(api.get_room(&room.view.room.id).await.unwrap().view.room.status, RoomStatus::Active);
    n.stop.cancel();

    // a node without LiveKit has no such endpoint, and refuses LiveKit rooms
    let bare = node(false).await;
    assert_eq!(deliver(bare.http, &body).await.0, 404);
    let acme = crate::common::entity(&bare.rt.admin(), "Acme", None).await;
    let err = bare
        .rt
        .admin()
        .create_room(NewRoom {
            entity_id: acme.id,
            title: "x".into(),
            livekit_room: Some("r".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::FailedPrecondition(ref m) if m.contains("livekit.url")), "{err}");
    bare.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livekit_join_returns_a_participant_token() {
    let n = node(true).await;
    let api = n.rt.admin();
    let acme = crate::common::entity(&api, "Acme", None).await;
    let daily = bound(&api, &acme.id, "Standup", "daily").await.unwrap();
    api.start_room(&daily.view.room.id).await.unwrap();
    let (p, access) = api.join_room_with_access(&daily.view.room.id, nobody("Ada")).await.unwrap();
    let access = access.expect("a LiveKit-backed room gives LiveKit access");
    assert_eq!(access.url, "ws://livekit.test:7880");
    let claims = TokenVerifier::with_api_key(KEY, SECRET).verify(&access.token).unwrap();
    assert_eq!((claims.sub.as_str(), claims.name.as_str()), (p.identity.as_str(), "Ada"));
    assert!(claims.video.room_join);
    assert_eq!(claims.video.room, "daily");
    assert_eq!((claims.video.can_publish, claims.video.can_subscribe), (Some(true), Some(true)));
    let ttl = claims.exp - claims.nbf;
    assert!((6 * 3600 - 5..=6 * 3600 + 5).contains(&ttl), "ttl {ttl}");
    assert_eq!(p.identity, format!("p_{}", p.id));

    // a room without LiveKit gives none
    let plain = crate::common::room(&api, &acme.id).await;
    api.start_room(&plain.view.room.id).await.unwrap();
    let (_, none) = api.join_room_with_access(&plain.view.room.id, crate::common::human("Bo")).await.unwrap();
    assert!(none.is_none());

    // names LiveKit would refuse are refused up front
    let err = bound(&api, &acme.id, "x", "line\nbreak").await.unwrap_err();
    assert!(matches!(err, ApiError::InvalidArgument { field: "livekit_room", .. }), "{err}");
    n.stop.cancel();
}

/// The issue's attack, in every order: entity A binds a LiveKit room name and takes its
/// room through its life; at each point entity B (its own key, or the admin key on B's
/// behalf) tries to bind the same name. B is refused every time, without learning who
/// owns it, so B never gets a token for A's LiveKit room nor its webhooks. And the other
/// way round when B is first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livekit_names_stay_with_the_entity_that_bound_them_first() {
    let n = node(true).await;
    let admin = n.rt.admin();
    let a = crate::common::entity(&admin, "A", None).await;
    let b = crate::common::entity(&admin, "B", None).await;
    let (api_a, api_b) = (n.rt.for_entity(&a.id), n.rt.for_entity(&b.id));
    let refused = |err: ApiError, when: &str, owner: &str| {
        assert!(
            matches!(err, ApiError::PermissionDenied(ref m) if m.contains("another entity") && !m.contains(owner)),
            "{when}: {err}"
        );
    };
    for (i, when) in ["created", "started", "joined", "ended"].into_iter().enumerate() {
        let name = format!("board-{i}");
        let room = bound(&api_a, &a.id, "Board", &name).await.unwrap();
        let id = room.view.room.id.clone();
        if when != "created" {
            api_a.start_room(&id).await.unwrap();
        }
        if when == "joined" || when == "ended" {
            let (_, access) = api_a.join_room_with_access(&id, nobody("Ada")).await.unwrap();
            assert!(access.is_some());
        }
        if when == "ended" {
            api_a.end_room(&id).await.unwrap();
        }
        refused(bound(&api_b, &b.id, "Mine", &name).await.unwrap_err(), when, &a.id);
        refused(bound(&admin, &b.id, "Mine", &name).await.unwrap_err(), when, &a.id);
        // webhooks of the name reach A's room only (the one that is not over, else A's latest)
        let (code, text) = deliver(n.http, &room_event("room_started", &name, &format!("EV_{i}"))).await;
        assert_eq!(code, 200, "{text}");
        let expected = if when == "ended" { RoomStatus::Completed } else { RoomStatus::Active };
        assert_eq!(api_a.get_room(&id).await.unwrap().view.room.status, expected, "{when}");
        // A itself may bind it again once its room is over
        if when == "ended" {
            let again = bound(&api_a, &a.id, "Board again", &name).await.unwrap();
            api_a.start_room(&again.view.room.id).await.unwrap();
            refused(bound(&api_b, &b.id, "Mine", &name).await.unwrap_err(), "A's second room", &a.id);
        }
    }
    // B has no room at all, so no token and no webhook of A's names
    let b_rooms = api_b.list_rooms(Default::default(), Default::default()).await.unwrap();
    assert!(b_rooms.items.is_empty(), "{:?}", b_rooms.items);

    // B first: the name is B's; A is refused before, during and after B's room
    let mine = bound(&api_b, &b.id, "B's", "b-first").await.unwrap();
    refused(bound(&api_a, &a.id, "A's", "b-first").await.unwrap_err(), "B's room open", &b.id);
    api_b.start_room(&mine.view.room.id).await.unwrap();
    api_b.end_room(&mine.view.room.id).await.unwrap();
    refused(bound(&api_a, &a.id, "A's", "b-first").await.unwrap_err(), "B's room over", &b.id);
    // a refused create left nothing behind: A's rooms are all on A's names
    let a_rooms = api_a.list_rooms(Default::default(), Default::default()).await.unwrap();
    assert!(a_rooms.items.iter().all(|r| r.livekit_room.as_deref() != Some("b-first")));
    assert_eq!(n.rt.store().livekit_owner("b-first").await.unwrap().as_deref(), Some(b.id.as_str()));
    n.stop.cancel();
}

/// In a room bound to LiveKit huddle assigns the identity a token carries
/// (`p_<participant id>`): a chosen one is refused, the agent's above all, and a
/// participant token for the agent's identity is never minted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livekit_join_identities_are_assigned_and_the_agents_is_reserved() {
    let n = node(true).await;
    let acme = crate::common::entity(&n.rt.admin(), "Acme", None).await;
    let api = n.rt.for_entity(&acme.id);
    let room = bound(&api, &acme.id, "Standup", "assigned").await.unwrap();
    let id = room.view.room.id.clone();
    api.start_room(&id).await.unwrap();
    for chosen in ["ada", "huddle-agent", "p_0190aaaa-0000-7000-8000-000000000000"] {
        let err = api
            .join_room_with_access(&id, huddle_core::NewParticipant { identity: chosen.into(), ..nobody("Eve") })
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::InvalidArgument { field: "identity", .. }), "{chosen}: {err}");
        let err = api
            .join_room(&id, huddle_core::NewParticipant { identity: chosen.into(), ..nobody("Eve") })
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::InvalidArgument { field: "identity", .. }), "{chosen}: {err}");
    }
    let mut seen = std::collections::HashSet::new();
    for name in ["Ada", "Bo"] {
        let (p, access) = api.join_room_with_access(&id, nobody(name)).await.unwrap();
        assert_eq!(p.identity, format!("p_{}", p.id));
        let claims = TokenVerifier::with_api_key(KEY, SECRET).verify(&access.unwrap().token).unwrap();
        assert_eq!((claims.sub.as_str(), claims.video.room.as_str()), (p.identity.as_str(), "assigned"));
        assert!(!claims.video.agent);
        assert!(seen.insert(claims.sub));
    }
    // the agent's identity gets no participant token, and cannot be configured into huddle's space
    let lk = n.rt.livekit().unwrap();
    let err = lk.participant_token("assigned", "huddle-agent", "", None).unwrap_err();
    assert!(matches!(err, ApiError::PermissionDenied(ref m) if m.contains("agent")), "{err}");
    let livekit = LiveKitConfig {
        url: Some("http://livekit.test:7880".into()),
        api_key: Some(KEY.into()),
        api_secret: Some(SECRET.into()),
        agent_identity: "p_agent".into(),
        ..Default::default()
    };
    let err = Config { livekit, ..Default::default() }.validate().unwrap_err().to_string();
    assert!(err.contains("livekit.agent_identity"), "{err}");
    // a room without LiveKit keeps caller-chosen identities
    let plain = crate::common::room(&api, &acme.id).await;
    api.start_room(&plain.view.room.id).await.unwrap();
    let (p, none) = api.join_room_with_access(&plain.view.room.id, crate::common::human("Cy")).await.unwrap();
    assert_eq!((p.identity.as_str(), none), ("cy", None));
    n.stop.cancel();
}

/// Webhooks follow the LiveKit session (room sid) a room is in: a late
/// `room_finished` (or any event) of an earlier session of the same name never
/// reaches a newer room, whether that room is pinned to its own session yet or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livekit_a_late_room_finished_never_ends_a_newer_room() {
    let n = node(true).await;
    let api = n.rt.admin();
    let acme = crate::common::entity(&api, "Acme", None).await;
    let status = |id: String| {
        let api = api.clone();
        async move { api.get_room(&id).await.unwrap().view.room.status }
    };
    let first = bound(&api, &acme.id, "First", "late").await.unwrap().view.room.id;
    let started_at = now_s();
    assert_eq!(deliver(n.http, &session_event("room_started", "late", "RM_1", "EV_1", started_at)).await.0, 200);
    assert_eq!(status(first.clone()).await, RoomStatus::Active);
    assert_eq!(n.rt.store().livekit_sid(&first).await.unwrap().as_deref(), Some("RM_1"));
    api.end_room(&first).await.unwrap();

    // a second room: not in a session yet. An event of a session that was made before
    // the room was created (LiveKit's late delivery of session 1's end) is not its
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let second = bound(&api, &acme.id, "Second", "late").await.unwrap().view.room.id;
    let (code, text) = deliver(n.http, &session_event("room_finished", "late", "RM_0", "EV_2", started_at)).await;
    assert_eq!((code, text.starts_with("ignored")), (200, true), "{text}");
    let (code, text) = deliver(n.http, &session_event("room_finished", "late", "RM_1", "EV_3", now_s())).await;
    assert_eq!((code, text.starts_with("ignored")), (200, true), "{text}");
    assert_eq!(status(second.clone()).await, RoomStatus::Scheduled);

    // session 2 starts: the second room is in it; session 1's late events stay with the first room
    assert_eq!(deliver(n.http, &session_event("room_started", "late", "RM_2", "EV_4", now_s())).await.0, 200);
    assert_eq!(status(second.clone()).await, RoomStatus::Active);
    for (event, ev) in [("room_finished", "EV_5"), ("room_started", "EV_6")] {
        let (code, text) = deliver(n.http, &session_event(event, "late", "RM_1", ev, now_s())).await;
        assert_eq!((code, text.starts_with("ignored")), (200, true), "{event}: {text}");
    }
    let egress = r#"{"event":"egress_ended","egressInfo":{"egressId":"EG_1","roomId":"RM_1","roomName":"late","status":"EGRESS_COMPLETE","fileResults":[{"filename":"one.mp4","location":"s3://rec/one.mp4"}]},"id":"EV_7","createdAt":"1"}"#;
    assert_eq!(deliver(n.http, egress).await.0, 200);
    assert_eq!(api.list_recordings(&first).await.unwrap().len(), 1, "session 1's recording is the first room's");
    assert!(api.list_recordings(&second).await.unwrap().is_empty());
    assert_eq!(status(second.clone()).await, RoomStatus::Active);
    // only session 2's end ends it
    assert_eq!(deliver(n.http, &session_event("room_finished", "late", "RM_2", "EV_8", now_s())).await.0, 200);
    assert_eq!(status(second).await, RoomStatus::Completed);
    n.stop.cancel();
}

/// The agent's join pins the room to the LiveKit session it joined: that session's
/// `room_finished` ends the room, another session's does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livekit_the_agents_join_pins_the_room_to_its_session() {
    let server = huddle_testsupport::livekit::LiveKitTestServer::start(KEY, SECRET).await.unwrap();
    let rt = node_on(&server, None).await;
    let api = rt.admin();
    let acme = crate::common::entity(&api, "Acme", None).await;
    let id = started_with_agent(&api, &server, &acme.id, "pinned").await;
    let (ada, _) =
        huddle_actors::livekit::SignalClient::connect(server.url(), &server.token("pinned", "ada")).await.unwrap();
    let sid = ada.join_response().room.as_ref().unwrap().sid.clone();
    assert!(!sid.is_empty());
    crate::common::eventually("the room is pinned to the agent's session", || async {
        rt.store().livekit_sid(&id).await.unwrap().as_deref() == Some(sid.as_str())
    })
    .await;
    let event = |sid: &str| livekit_protocol::WebhookEvent {
        event: "room_finished".into(),
        room: Some(livekit_protocol::Room { sid: sid.into(), name: "pinned".into(), ..Default::default() }),
        created_at: now_s(),
        ..Default::default()
    };
    let other = huddle_runtime::livekit::apply_webhook(&rt, event("RM_earlier")).await.unwrap();
    assert!(matches!(other, huddle_runtime::livekit::Applied::Ignored(_)), "{other:?}");
    assert_eq!(api.get_room(&id).await.unwrap().view.room.status, RoomStatus::Active);
    let own = huddle_runtime::livekit::apply_webhook(&rt, event(&sid)).await.unwrap();
    assert!(matches!(own, huddle_runtime::livekit::Applied::Done(_)), "{own:?}");
    assert_eq!(api.get_room(&id).await.unwrap().view.room.status, RoomStatus::Completed);
    drop(ada);
    rt.shutdown().await;
}

/// A node whose LiveKit is `server` (a LiveKitTestServer: no LiveKit server
/// can run here), optionally as an agent worker taking `max_jobs` jobs for
/// rooms of `worker_entity`.
async fn node_on(server: &huddle_testsupport::livekit::LiveKitTestServer, worker: Option<(usize, &str)>) -> Runtime {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.keep().join("lk.db").display());
    let mut livekit = lk_config(server);
    if let Some((max_jobs, entity)) = worker {
        livekit.worker = true;
        livekit.max_jobs = max_jobs;
        livekit.worker_entity = Some(entity.to_string());
    }
    Runtime::builder().database_url(url).livekit(livekit).build().await.unwrap()
}

fn identities(server: &huddle_testsupport::livekit::LiveKitTestServer, room: &str) -> Vec<String> {
    server.participants(room).into_iter().map(|p| p.identity).collect()
}

/// Creates a room of `entity_id` bound to LiveKit room `lk_room`, starts it, and waits until
/// the agent is the only one in the LiveKit room. Returns the room id.
async fn started_with_agent(
    api: &huddle_runtime::Api,
    server: &huddle_testsupport::livekit::LiveKitTestServer,
    entity_id: &str,
    lk_room: &str,
) -> String {
    let room = bound(api, entity_id, lk_room, lk_room).await.unwrap();
    let id = room.view.room.id.clone();
    api.start_room(&id).await.unwrap();
    crate::common::eventually("the agent in the LiveKit room", || async {
        identities(server, lk_room) == ["huddle-agent"]
    })
    .await;
    id
}

/// LiveKit configuration for a node whose LiveKit is `server`.
fn lk_config(server: &huddle_testsupport::livekit::LiveKitTestServer) -> LiveKitConfig {
    LiveKitConfig {
        url: Some(server.url().to_string()),
        api_key: Some(KEY.into()),
        api_secret: Some(SECRET.into()),
        ..Default::default()
    }
}

/// A runtime on a SQLite file in `dir` whose agent joins with WebRTC media over loopback
/// (`options` with loopback candidates on).
fn media_node(
    dir: &std::path::Path,
    livekit: LiveKitConfig,
    options: huddle_actors::livekit::WebRtcOptions,
) -> huddle_runtime::RuntimeBuilder {
    let options = huddle_actors::livekit::WebRtcOptions { include_loopback_candidates: true, ..options };
    Runtime::builder()
        .database_url(format!("sqlite://{}", dir.join("media.db").display()))
        .livekit(livekit)
        .livekit_transport(std::sync::Arc::new(huddle_actors::livekit::WebRtcTransport::new(options)))
}

/// Speech on the test whisper model, not fetched.
fn test_speech() -> huddle_runtime::SpeechConfig {
    huddle_runtime::SpeechConfig {
        whisper_model: Some(crate::speech::model_path()),
        fetch_missing: false,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livekit_agent_joins_a_started_room_and_leaves_when_it_ends() {
    let server = huddle_testsupport::livekit::LiveKitTestServer::start(KEY, SECRET).await.unwrap();
    let rt = node_on(&server, None).await;
    let api = rt.admin();
    let acme = crate::common::entity(&api, "Acme", None).await;
    let room = bound(&api, &acme.id, "Standup", "lk-standup").await.unwrap();
    let id = room.view.room.id.clone();
    assert!(identities(&server, "lk-standup").is_empty(), "nobody joins a SCHEDULED room");
    api.start_room(&id).await.unwrap();
    crate::common::eventually("the agent is in the LiveKit room", || async {
        identities(&server, "lk-standup") == ["huddle-agent"]
    })
    .await;
    let lk = rt.livekit().unwrap();
    // the server lists the agent before the agent has read its join response
    crate::common::eventually("the agent's presence is Joined", || async {
        matches!(lk.presence().state(&id), Some(huddle_runtime::livekit::Presence::Joined { .. }))
    })
    .await;
    let join = server.joins().into_iter().find(|j| j.room == "lk-standup").unwrap();
    assert_eq!(join.protocol, Some(17), "{join:?}");

    // a person joins on the LiveKit side: the agent sees them, huddle is unchanged by it
    let ada = server.token("lk-standup", "ada");
    let (_ada, _) = huddle_actors::livekit::SignalClient::connect(server.url(), &ada).await.unwrap();
    assert_eq!(identities(&server, "lk-standup").len(), 2);

    api.end_room(&id).await.unwrap();
    crate::common::eventually("the agent left", || async { identities(&server, "lk-standup") == ["ada"] }).await;
    assert!(lk.presence().state(&id).is_none());
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livekit_worker_takes_jobs_up_to_its_capacity_then_drains() {
    use huddle_testsupport::livekit::JobOutcome;
    let server = huddle_testsupport::livekit::LiveKitTestServer::start(KEY, SECRET).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = huddle_storage::open(&format!("sqlite://{}", dir.path().join("w.db").display())).await.unwrap();
    let acme = store.create_entity(huddle_core::NewEntity { name: "Acme".into(), ..Default::default() }).await.unwrap();
    let livekit = LiveKitConfig { worker: true, max_jobs: 2, worker_entity: Some(acme.id), ..lk_config(&server) };
    let rt = Runtime::builder().store(store).livekit(livekit).build().await.unwrap();
    crate::common::eventually("the worker registers", || async { !server.workers().is_empty() }).await;
    assert_eq!(server.workers()[0].register.agent_name, "huddle");

    // a job for a LiveKit room no room is bound to: a room is made, started, and the agent joins
    let first = server.dispatch_job("job-room-1").await.unwrap();
    assert!(first.is_accepted(), "{first:?}");
    crate::common::eventually("a bound room is ACTIVE and the agent in it", || async {
        rt.store().find_livekit_room("job-room-1").await.is_ok_and(|r| r.status == RoomStatus::Active)
            && server.participants("job-room-1").len() == 1
    })
    .await;
    let room = rt.store().find_livekit_room("job-room-1").await.unwrap();
    assert_eq!(room.title, "LiveKit job-room-1");

    // a burst: one slot is left, so exactly one more is accepted
    let burst: Vec<JobOutcome> = futures::future::join_all((0..6).map(|i| {
        let server = &server;
        async move { server.dispatch_job(&format!("burst-{i}")).await.unwrap() }
    }))
    .await;
    assert_eq!(burst.iter().filter(|o| o.is_accepted()).count(), 1, "{burst:?}");
    assert!(server.peak_running_jobs() <= 2);

    // ending a job's room ends the job (SUCCESS) and frees its slot
    rt.admin().end_room(&room.id).await.unwrap();
    crate::common::eventually("the first job succeeded", || async {
        server
            .job_updates()
            .iter()
            .any(|u| u.job_id == first.job_id() && u.status == livekit_protocol::JobStatus::JsSuccess)
    })
    .await;
    let again = server.dispatch_job("job-room-2").await.unwrap();
    assert!(again.is_accepted(), "{again:?}");
    crate::common::eventually("the second job runs", || async {
        server
            .job_updates()
            .iter()
            .any(|u| u.job_id == again.job_id() && u.status == livekit_protocol::JobStatus::JsRunning)
    })
    .await;

    // the server terminates the burst's job: the agent leaves that room
    let (i, taken) = burst.iter().enumerate().find(|(_, o)| o.is_accepted()).unwrap();
    let burst_room = format!("burst-{i}");
    crate::common::eventually("the burst job's agent is in its room", || async {
        server.participants(&burst_room).len() == 1
    })
    .await;
    server.terminate_job(taken.job_id()).unwrap();
    crate::common::eventually("a terminated job takes the agent out", || async {
        server.participants(&burst_room).is_empty()
    })
    .await;

    // shutdown drains: no new jobs, the running ones end, the worker disconnects
    rt.shutdown().await;
    let gone = || {
        server.workers().iter().all(|w| !w.connected)
            && server.running_jobs().is_empty()
            && server.participants("job-room-2").is_empty()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !gone() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        gone(),
        "after shutdown: workers {:?}\nrunning {:?}\nupdates {:?}",
        server.workers(),
        server.running_jobs(),
        server.job_updates()
    );
    let ended: Vec<_> =
        server.job_updates().into_iter().filter(|u| u.status == livekit_protocol::JobStatus::JsSuccess).collect();
    assert_eq!(ended.len(), 3, "the first, the terminated and the second job: {:?}", server.job_updates());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livekit_agent_rejoins_active_rooms_after_a_restart() {
    let server = huddle_testsupport::livekit::LiveKitTestServer::start(KEY, SECRET).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = huddle_storage::open(&format!("sqlite://{}", dir.path().join("r.db").display())).await.unwrap();
    let livekit = lk_config(&server);
    let first = Runtime::builder().store(store.clone()).livekit(livekit.clone()).build().await.unwrap();
    let api = first.admin();
    let acme = crate::common::entity(&api, "Acme", None).await;
    let mut ids = Vec::new();
    for name in ["kept-a", "kept-b", "scheduled"] {
        let r = bound(&api, &acme.id, name, name).await.unwrap();
        ids.push(r.view.room.id);
    }
    api.start_room(&ids[0]).await.unwrap();
    api.start_room(&ids[1]).await.unwrap();
    crate::common::eventually("the agent is in both rooms", || async {
        server.participants("kept-a").len() == 1 && server.participants("kept-b").len() == 1
    })
    .await;
    first.shutdown().await;
    crate::common::eventually("shutdown takes the agent out", || async {
        server.participants("kept-a").is_empty() && server.participants("kept-b").is_empty()
    })
    .await;

    let second = Runtime::builder().store(store).livekit(livekit).build().await.unwrap();
    crate::common::eventually("the restarted node's agent is back in the active rooms", || async {
        identities(&server, "kept-a") == ["huddle-agent"] && identities(&server, "kept-b") == ["huddle-agent"]
    })
    .await;
    assert!(server.participants("scheduled").is_empty(), "a SCHEDULED room is not joined");
    second.shutdown().await;
}

/// espeak-ng speech (a committed fixture, espeak-ng's default voice) resampled to 48 kHz
/// mono, then `silence_ms` of silence.
fn speech_48k(text: &str, silence_ms: usize) -> Vec<i16> {
    use huddle_testsupport::speech::{Voice, spoken_in};
    let mut pcm = spoken_in(Voice::En175, text).resampled(48_000).samples;
    pcm.extend(std::iter::repeat_n(0, 48 * silence_ms));
    pcm
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livekit_agent_hears_a_participant_and_publishes_captions_and_suggestions() {
    let server = huddle_testsupport::livekit::LiveKitTestServer::start(KEY, SECRET).await.unwrap();
    let mut speech = speech_48k("The quarterly numbers look good, let us ship on Friday.", 1_200);
    speech.extend(speech_48k("Can a customer on an annual plan get a refund?", 1_500));
    let published = server.publish_audio("hear-room", "ada", speech);
    let dir = tempfile::tempdir().unwrap();
    let knowledge = tokio::task::spawn_blocking(|| crate::knowledge::config(None)).await.unwrap();
    let rt = media_node(dir.path(), lk_config(&server), Default::default())
        .speech(test_speech())
        .knowledge(knowledge)
        .build()
        .await
        .unwrap();
    let api = rt.admin();
    let acme = crate::common::entity(&api, "Acme", None).await;
    let refunds = crate::knowledge::upload(&acme.id, None, "refunds.md");
    crate::knowledge::ingest(&api, refunds, crate::knowledge::REFUNDS.as_bytes()).await;
    let room = bound(&api, &acme.id, "Hearing", "hear-room").await.unwrap();
    let id = room.view.room.id.clone();
    api.start_room(&id).await.unwrap();

    // the participant's speech arrives over WebRTC, is decoded and transcribed, attributed to them
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let segments = loop {
        let page =
            api.get_transcript(&id, huddle_storage::PageRequest { size: 50, token: String::new() }).await.unwrap();
        if page.items.len() >= 2 || std::time::Instant::now() > deadline {
            break page.items;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(segments.len() >= 2, "two utterances within 60 s, got {segments:?}");
    let text = segments.iter().map(|s| s.text.to_lowercase()).collect::<Vec<_>>().join(" ");
    for word in ["quarterly", "numbers", "friday", "refund"] {
        assert!(text.contains(word), "`{word}` missing from `{text}`");
    }
    let ada = api.get_room(&id).await.unwrap().view.participants.into_iter().find(|p| p.identity == "ada");
    let ada = ada.expect("the LiveKit participant became a room participant");
    assert!(segments.iter().all(|s| s.participant_id == ada.id));

    // every segment came back into the LiveKit room as a final caption for ada's track
    crate::common::eventually("a caption per segment", || async {
        server.data_packets("hear-room").iter().filter(|d| d.transcription().is_some()).count() >= segments.len()
    })
    .await;
    let packets = server.data_packets("hear-room");
    let captions: Vec<_> = packets.iter().filter_map(|d| d.transcription().map(|t| (d, t))).collect();
    assert_eq!(captions.len(), segments.len());
    for ((received, caption), segment) in captions.iter().zip(&segments) {
        assert_eq!(received.identity, "huddle-agent");
        assert_eq!(received.channel, "_reliable");
        assert_eq!(caption.transcribed_participant_identity, "ada");
        assert_eq!(caption.track_id, published.track_sid);
        let [s] = caption.segments.as_slice() else { panic!("one segment per caption: {caption:?}") };
        assert_eq!(s.text, segment.text);
        assert_eq!((s.start_time, s.end_time), (segment.start_ms, segment.end_ms));
        assert!(s.r#final);
        assert_eq!(s.id, format!("{id}-{}", segment.seq));
    }

    // the question brought an answer from the refund policy, published on its topic as JSON
    crate::common::eventually("a suggestion on huddle.suggestion", || async {
        server.data_packets("hear-room").iter().any(|d| d.user_on("huddle.suggestion").is_some())
    })
    .await;
    let packets = server.data_packets("hear-room");
    let suggestion = packets.iter().find_map(|d| d.user_on("huddle.suggestion")).unwrap();
    let body: serde_json::Value = serde_json::from_slice(&suggestion.payload).unwrap();
    assert_eq!(body["filename"], "refunds.md", "{body}");
    assert_eq!(body["answer_to_question"], true, "{body}");
    assert_eq!(body["participant_identity"], "ada", "{body}");
    assert_eq!(body["room_id"], id.as_str(), "{body}");
    assert!(body["text"].as_str().unwrap().contains("annual plan"), "{body}");
    api.end_room(&id).await.unwrap();
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livekit_agent_publishes_nothing_when_publishing_is_off() {
    let server = huddle_testsupport::livekit::LiveKitTestServer::start(KEY, SECRET).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let livekit = LiveKitConfig { captions: false, suggestion_topic: String::new(), ..lk_config(&server) };
    let rt = media_node(dir.path(), livekit, Default::default()).speech(test_speech()).build().await.unwrap();
    let api = rt.admin();
    let acme = crate::common::entity(&api, "Acme", None).await;
    let id = started_with_agent(&api, &server, &acme.id, "quiet-room").await;
    // a participant speaks (over StreamAudio) and is transcribed; with publishing off no
    // caption reaches LiveKit (with it on, this segment would be captioned)
    let ada = api.join_room(&id, nobody("Ada")).await.unwrap();
    let (pcm, rate) = crate::speech::speak_pcm16("Let us ship on Friday.");
    let mut stream = api.open_audio(&id, &ada.id, rate).await.unwrap();
    for chunk in crate::speech::with_silence(pcm, rate, 600).chunks(rate as usize / 10 * 2) {
        stream.push_pcm16(chunk).await.unwrap();
    }
    stream.finish().await.unwrap();
    let page = api.get_transcript(&id, huddle_storage::PageRequest { size: 10, token: String::new() }).await.unwrap();
    assert!(!page.items.is_empty(), "the speech was transcribed");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(server.data_packets("quiet-room").is_empty(), "{:?}", server.data_packets("quiet-room"));
    api.end_room(&id).await.unwrap();
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livekit_agent_rejoins_after_a_dropped_socket_and_after_ice_fails() {
    use huddle_runtime::livekit::Presence;
    let server = huddle_testsupport::livekit::LiveKitTestServer::start(KEY, SECRET).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let options = huddle_actors::livekit::WebRtcOptions {
        ice_failed_timeout: std::time::Duration::from_secs(2),
        ..Default::default()
    };
    let rt = media_node(dir.path(), lk_config(&server), options).build().await.unwrap();
    let api = rt.admin();
    let acme = crate::common::entity(&api, "Acme", None).await;
    let room = bound(&api, &acme.id, "Flaky", "flaky-room").await.unwrap();
    let id = room.view.room.id.clone();
    api.start_room(&id).await.unwrap();
    let lk = rt.livekit().unwrap();
    let joined_sid = || match lk.presence().state(&id) {
        Some(Presence::Joined { sid }) => Some(sid),
        _ => None,
    };
    let agent_joins =
        || server.joins().iter().filter(|j| j.room == "flaky-room" && j.identity == "huddle-agent").count();
    crate::common::eventually("the agent joined", || async { joined_sid().is_some() }).await;
    // the publisher connection is up before faults are injected
    crate::common::eventually("the publisher answered", || async {
        server
            .requests("flaky-room", "huddle-agent")
            .iter()
            .any(|r| matches!(&r.message, Some(livekit_protocol::signal_request::Message::Offer(_))))
    })
    .await;
    let first = joined_sid().unwrap();

    // 1. signalling dies without a close frame: the agent rejoins (backoff starts at 0.5 s)
    assert!(server.drop_connection("flaky-room", "huddle-agent"));
    crate::common::eventually("the agent rejoined after the dropped socket", || async {
        agent_joins() == 2 && joined_sid().is_some_and(|s| s != first)
    })
    .await;
    let second = joined_sid().unwrap();

    // 2. media dies while signalling stays up: ICE fails after 2 s, the session ends, the agent rejoins
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(server.drop_media("flaky-room", "huddle-agent"));
    crate::common::eventually("the agent rejoined after ICE failed", || async {
        agent_joins() == 3 && joined_sid().is_some_and(|s| s != second)
    })
    .await;
    assert_eq!(identities(&server, "flaky-room"), ["huddle-agent"], "one agent, not a stale one beside it");

    api.end_room(&id).await.unwrap();
    crate::common::eventually("the agent left", || async { identities(&server, "flaky-room").is_empty() }).await;
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livekit_agent_and_worker_reach_a_wss_server_with_a_private_ca() {
    use huddle_testsupport::livekit::{LiveKitTestServer, TestServerConfig};
    let server = LiveKitTestServer::start_with(TestServerConfig { tls: true, ..TestServerConfig::new(KEY, SECRET) })
        .await
        .unwrap();
    assert!(server.url().starts_with("wss://"));
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, server.certificate_pem().unwrap()).unwrap();

    // configuration checks name a bad CA file
    let livekit = LiveKitConfig { ca_file: Some(dir.path().join("missing.pem")), ..lk_config(&server) };
    let mut config = Config { livekit, ..Default::default() };
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("livekit.ca_file") && err.contains("missing.pem"), "{err}");
    std::fs::write(dir.path().join("junk.pem"), "not a certificate").unwrap();
    config.livekit.ca_file = Some(dir.path().join("junk.pem"));
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("no PEM certificate"), "{err}");
    config.livekit.ca_file = Some(ca.clone());
    config.validate().unwrap();

    // trusting the CA, the worker registers and the agent joins over wss://
    let livekit = LiveKitConfig { ca_file: Some(ca), worker: true, ..lk_config(&server) };
    let rt = Runtime::builder()
        .database_url(format!("sqlite://{}", dir.path().join("tls.db").display()))
        .livekit(livekit)
        .build()
        .await
        .unwrap();
    crate::common::eventually("the worker registers over wss", || async { !server.workers().is_empty() }).await;
    let api = rt.admin();
    let acme = crate::common::entity(&api, "Acme", None).await;
    let id = started_with_agent(&api, &server, &acme.id, "secure-room").await;
    api.end_room(&id).await.unwrap();
    rt.shutdown().await;
}
