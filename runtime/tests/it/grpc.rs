//! The gRPC server with real tonic clients on loopback: auth, scoping,
//! status codes, message limits, health and both reflection versions.

use std::time::Duration;

use huddle_proto::v1::entities_client::EntitiesClient;
use huddle_proto::v1::rooms_client::RoomsClient;
use huddle_proto::v1::{self};
use huddle_runtime::Config;
use huddle_runtime::server::Server;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

const ADMIN: &str = "test-admin-key-0123456789abcdef";

struct Node {
    addr: String,
    http: std::net::SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.http = "127.0.0.1:0".parse().unwrap();
    config.server.admin_key = Some(ADMIN.into());
    config.database.url = format!("sqlite://{}", dir.path().join("g.db").display());
    let server = Server::bind(config).await.unwrap();
    let addr = format!("http://{}", server.grpc_addr());
    let http = server.http_addr();
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(async move { server.run(token).await.unwrap() });
    Node { addr, http, stop, task, _dir: dir }
}

impl Node {
    async fn channel(&self) -> Channel {
        Channel::from_shared(self.addr.clone()).unwrap().connect().await.unwrap()
    }

    /// A plain HTTP/1.0 GET: (status line, body).
    async fn http_get(&self, path: &str) -> (String, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.http).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        (head.lines().next().unwrap().to_string(), body.to_string())
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task).await.expect("server must stop").unwrap();
    }
}

fn authed<T>(msg: T, key: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert("authorization", MetadataValue::try_from(format!("Bearer {key}")).unwrap());
    req
}

#[tokio::test]
async fn auth_scoping_and_status_codes() {
    let n = node().await;
    let ch = n.channel().await;
    let mut ents = EntitiesClient::new(ch.clone());
    let mut rooms = RoomsClient::new(ch);

    // no key, wrong key
    let err = ents.list_entities(v1::ListEntitiesRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = ents.list_entities(authed(v1::ListEntitiesRequest::default(), "nope")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let mk = |name: &str| v1::CreateEntityRequest { name: name.into(), ..Default::default() };
    let a = ents.create_entity(authed(mk("A"), ADMIN)).await.unwrap().into_inner();
    let b = ents.create_entity(authed(mk("B"), ADMIN)).await.unwrap().into_inner();
    let key = ents
        .create_api_key(authed(v1::CreateApiKeyRequest { entity_id: a.id.clone() }, ADMIN))
        .await
        .unwrap()
        .into_inner();
    assert!(key.secret.starts_with(&key.api_key.as_ref().unwrap().prefix));
    let a_key = key.secret;

    let room = |entity_id: &str| v1::CreateRoomRequest {
        entity_id: entity_id.into(),
        title: "Sync".into(),
        ..Default::default()
    };
    let ra = rooms.create_room(authed(room(&a.id), &a_key)).await.unwrap().into_inner();
    let rb = rooms.create_room(authed(room(&b.id), ADMIN)).await.unwrap().into_inner();
    // another entity's room is NOT_FOUND for A's key, and so is creating in B
    let err = rooms.get_room(authed(v1::GetRoomRequest { id: rb.id.clone() }, &a_key)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = rooms.create_room(authed(room(&b.id), &a_key)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = ents.create_entity(authed(mk("C"), &a_key)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let listed = rooms.list_rooms(authed(v1::ListRoomsRequest::default(), &a_key)).await.unwrap().into_inner();
    assert_eq!(listed.rooms.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), vec![ra.id.clone()]);

    // bad input names the field; lifecycle errors name both states
    let err = rooms
        .create_room(authed(v1::CreateRoomRequest { entity_id: a.id.clone(), ..Default::default() }, ADMIN))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("title"), "{}", err.message());
    let join = v1::JoinRoomRequest { room_id: ra.id.clone(), display_name: "Ada".into(), ..Default::default() };
    let err = rooms.join_room(authed(join.clone(), ADMIN)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("kind"));
    let err = rooms.end_room(authed(v1::EndRoomRequest { id: ra.id.clone() }, ADMIN)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("SCHEDULED") && err.message().contains("COMPLETED"), "{}", err.message());
    let err = rooms.get_room(authed(v1::GetRoomRequest { id: "missing".into() }, ADMIN)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // cap: RESOURCE_EXHAUSTED
    let small = ents
        .create_entity(authed(
            v1::CreateEntityRequest { name: "S".into(), max_participants: Some(1), ..Default::default() },
            ADMIN,
        ))
        .await
        .unwrap()
        .into_inner();
    let rs = rooms.create_room(authed(room(&small.id), ADMIN)).await.unwrap().into_inner();
    let human = |room_id: &str, name: &str| v1::JoinRoomRequest {
        room_id: room_id.into(),
        kind: v1::ParticipantKind::Human as i32,
        display_name: name.into(),
        ..Default::default()
    };
    rooms.join_room(authed(human(&rs.id, "Ada"), ADMIN)).await.unwrap();
    let err = rooms.join_room(authed(human(&rs.id, "Bob"), ADMIN)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);

    // a message over 4 MiB is refused and writes nothing
    let huge = v1::CreateDepartmentRequest {
        entity_id: a.id.clone(),
        name: "Huge".into(),
        instructions: "x".repeat(5 * 1024 * 1024),
    };
    let err = ents.create_department(authed(huge, ADMIN)).await.unwrap_err();
    assert_ne!(err.code(), Code::Ok);
    let depts = ents
        .list_departments(authed(v1::ListDepartmentsRequest { entity_id: a.id.clone() }, ADMIN))
        .await
        .unwrap()
        .into_inner();
    assert!(depts.departments.is_empty());
    n.stop().await;
}

#[tokio::test]
async fn watch_room_over_grpc_starts_with_a_snapshot() {
    let n = node().await;
    let ch = n.channel().await;
    let mut ents = EntitiesClient::new(ch.clone());
    let mut rooms = RoomsClient::new(ch);
    let e = ents
        .create_entity(authed(v1::CreateEntityRequest { name: "A".into(), ..Default::default() }, ADMIN))
        .await
        .unwrap()
        .into_inner();
    let r = rooms
        .create_room(authed(v1::CreateRoomRequest { entity_id: e.id, title: "T".into(), ..Default::default() }, ADMIN))
        .await
        .unwrap()
        .into_inner();
    let mut stream =
        rooms.watch_room(authed(v1::WatchRoomRequest { id: r.id.clone() }, ADMIN)).await.unwrap().into_inner();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.r#type, "snapshot");
    assert_eq!(first.snapshot.unwrap().id, r.id);
    rooms.start_room(authed(v1::StartRoomRequest { id: r.id.clone() }, ADMIN)).await.unwrap();
    let ev = stream.next().await.unwrap().unwrap();
    assert_eq!((ev.r#type.as_str(), ev.seq), ("started", 2));
    let data: serde_json::Value = serde_json::from_str(&ev.data_json).unwrap();
    assert_eq!(data["to"], "ACTIVE");
    // the open stream must not hold up shutdown
    n.stop().await;
}

#[tokio::test]
async fn health_and_reflection_v1_and_v1alpha() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let n = node().await;
    let ch = n.channel().await;
    let mut health = HealthClient::new(ch.clone());
    for service in ["", "huddle.v1.Rooms", "huddle.v1.Entities"] {
        let r = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "{service}");
    }

    {
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        let mut c = ServerReflectionClient::new(ch.clone());
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut resp = c.server_reflection_info(tokio_stream::iter([req])).await.unwrap().into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) = resp.next().await.unwrap().unwrap().message_response
        else {
            panic!("expected a service list")
        };
        let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
        for want in ["huddle.v1.Rooms", "huddle.v1.Entities", "grpc.health.v1.Health"] {
            assert!(names.iter().any(|n| n == want), "v1alpha lacks {want}: {names:?}");
        }
    }
    {
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        let mut c = ServerReflectionClient::new(ch);
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol("huddle.v1.Rooms".into())),
        };
        let mut resp = c.server_reflection_info(tokio_stream::iter([req])).await.unwrap().into_inner();
        let Some(MessageResponse::FileDescriptorResponse(files)) = resp.next().await.unwrap().unwrap().message_response
        else {
            panic!("expected file descriptors")
        };
        assert!(!files.file_descriptor_proto.is_empty());
    }
    n.stop().await;
}

#[tokio::test]
async fn healthz_and_metrics_over_http() {
    let n = node().await;
    let (status, body) = n.http_get("/healthz").await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(body.trim(), "ok");
    let mut ents = EntitiesClient::new(n.channel().await);
    let err = ents.list_entities(v1::ListEntitiesRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    ents.list_entities(authed(v1::ListEntitiesRequest::default(), ADMIN)).await.unwrap();
    let (status, body) = n.http_get("/metrics").await;
    assert!(status.contains("200"), "{status}");
    assert!(
        body.contains(r#"huddle_grpc_requests_total{method="huddle.v1.Entities/ListEntities",code="16"}"#),
        "{body}"
    );
    assert!(body.contains(r#"huddle_grpc_requests_total{method="huddle.v1.Entities/ListEntities",code="0"}"#));
    assert!(body.contains("huddle_grpc_request_duration_seconds"));
    n.stop().await;
}

/// Whether any of `needles` appears in the encoded message (every string field
/// of a proto message is in its bytes as it is).
fn encoded_contains(msg: &impl prost::Message, needles: &[&str]) -> bool {
    let bytes = msg.encode_to_vec();
    needles.iter().any(|n| bytes.windows(n.len()).any(|w| w == n.as_bytes()))
}

#[tokio::test]
async fn revoked_keys_and_inactive_entities_are_refused_at_once() {
    let n = node().await;
    let mut ents = EntitiesClient::new(n.channel().await);
    let mk = |name: &str| v1::CreateEntityRequest { name: name.into(), ..Default::default() };
    let a = ents.create_entity(authed(mk("A"), ADMIN)).await.unwrap().into_inner();
    let b = ents.create_entity(authed(mk("B"), ADMIN)).await.unwrap().into_inner();
    let new_key = |entity_id: &str| v1::CreateApiKeyRequest { entity_id: entity_id.into() };
    let a1 = ents.create_api_key(authed(new_key(&a.id), ADMIN)).await.unwrap().into_inner();
    let a2 = ents.create_api_key(authed(new_key(&a.id), ADMIN)).await.unwrap().into_inner();
    let a3 = ents.create_api_key(authed(new_key(&a.id), ADMIN)).await.unwrap().into_inner();
    let b1 = ents.create_api_key(authed(new_key(&b.id), ADMIN)).await.unwrap().into_inner();
    let id = |k: &v1::CreateApiKeyResponse| k.api_key.as_ref().unwrap().id.clone();
    let get = |key: &str, entity_id: &str| authed(v1::GetEntityRequest { id: entity_id.into() }, key);

    // A successful call puts the key in the node's cache; the revocation still
    // applies to the very next call.
    ents.get_entity(get(&a1.secret, &a.id)).await.unwrap();
    let revoked = ents.revoke_api_key(authed(v1::RevokeApiKeyRequest { id: id(&a1) }, ADMIN)).await.unwrap();
    assert!(revoked.into_inner().revoked_at.is_some());
    let err = ents.get_entity(get(&a1.secret, &a.id)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    // Revoking again changes nothing.
    ents.revoke_api_key(authed(v1::RevokeApiKeyRequest { id: id(&a1) }, ADMIN)).await.unwrap();

    // An entity key lists its entity's keys, revoked ones too, without secrets or hashes.
    let listed = ents
        .list_api_keys(authed(v1::ListApiKeysRequest { entity_id: a.id.clone() }, &a2.secret))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.api_keys.iter().map(|k| k.id.clone()).collect::<Vec<_>>(), vec![id(&a1), id(&a2), id(&a3)]);
    assert!(listed.api_keys[0].revoked_at.is_some() && listed.api_keys[1].revoked_at.is_none());
    let secrets = [&a1, &a2, &a3].map(|k| k.secret.clone());
    let hashes = secrets.clone().map(|s| huddle_runtime::auth::hash_key(&s));
    let needles: Vec<&str> = secrets.iter().chain(&hashes).map(String::as_str).collect();
    assert!(!encoded_contains(&listed, &needles), "ListApiKeys leaks a secret or hash: {listed:?}");
    // The admin key sees the same list.
    let by_admin = ents.list_api_keys(authed(v1::ListApiKeysRequest { entity_id: a.id.clone() }, ADMIN)).await.unwrap();
    assert_eq!(by_admin.into_inner().api_keys.len(), 3);

    // Another entity's keys: NOT_FOUND, listing and revoking alike, and the key keeps working.
    let err =
        ents.list_api_keys(authed(v1::ListApiKeysRequest { entity_id: b.id.clone() }, &a2.secret)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = ents.revoke_api_key(authed(v1::RevokeApiKeyRequest { id: id(&b1) }, &a2.secret)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    ents.get_entity(get(&b1.secret, &b.id)).await.unwrap();
    // Its own entity's keys it may revoke.
    ents.get_entity(get(&a3.secret, &a.id)).await.unwrap();
    ents.revoke_api_key(authed(v1::RevokeApiKeyRequest { id: id(&a3) }, &a2.secret)).await.unwrap();
    assert_eq!(ents.get_entity(get(&a3.secret, &a.id)).await.unwrap_err().code(), Code::Unauthenticated);

    // A use is recorded (in the background, at most once a minute).
    let mut used = false;
    for _ in 0..100 {
        let keys = ents
            .list_api_keys(authed(v1::ListApiKeysRequest { entity_id: a.id.clone() }, ADMIN))
            .await
            .unwrap()
            .into_inner();
        if keys.api_keys[1].last_used_at.is_some() {
            used = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(used, "the use of a key is recorded");

    // Deactivating the entity refuses its keys at once, right after a cached call;
    // reactivating it lets them in again.
    ents.get_entity(get(&a2.secret, &a.id)).await.unwrap();
    let off = v1::UpdateEntityRequest { id: a.id.clone(), active: Some(false), ..Default::default() };
    ents.update_entity(authed(off, ADMIN)).await.unwrap();
    let err = ents.get_entity(get(&a2.secret, &a.id)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    ents.get_entity(get(&b1.secret, &b.id)).await.unwrap();
    let on = v1::UpdateEntityRequest { id: a.id.clone(), active: Some(true), ..Default::default() };
    ents.update_entity(authed(on, ADMIN)).await.unwrap();
    ents.get_entity(get(&a2.secret, &a.id)).await.unwrap();
    assert_eq!(ents.get_entity(get(&a1.secret, &a.id)).await.unwrap_err().code(), Code::Unauthenticated);
    n.stop().await;
}

#[tokio::test]
async fn unknown_grpc_paths_count_as_other() {
    use tower_service::Service;
    let n = node().await;
    let mut ch = n.channel().await;
    let made_up = format!("huddle.v1.Made{}", huddle_core::new_id().replace('-', ""));
    for path in [format!("/{made_up}/Anything"), format!("/zz{made_up}/X")] {
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("{}{path}", n.addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(tonic::body::Body::empty())
            .unwrap();
        futures::future::poll_fn(|cx| ch.poll_ready(cx)).await.unwrap();
        let resp = ch.call(req).await.unwrap();
        assert_eq!(resp.headers().get("grpc-status").map(|v| v.to_str().unwrap()), Some("12"), "{path}");
    }
    let (_, body) = n.http_get("/metrics").await;
    assert!(!body.contains(&made_up), "an unknown path became a label: {body}");
    assert!(body.contains(r#"huddle_grpc_requests_total{method="other",code="12"}"#), "{body}");
    n.stop().await;
}

#[tokio::test]
async fn database_errors_reach_clients_as_internal_with_a_request_id() {
    let n = node().await;
    let mut ents = EntitiesClient::new(n.channel().await);
    let e = ents
        .create_entity(authed(v1::CreateEntityRequest { name: "A".into(), ..Default::default() }, ADMIN))
        .await
        .unwrap()
        .into_inner();
    // Pull a table out from under the node.
    let url = format!("sqlite://{}", n._dir.path().join("g.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("ALTER TABLE departments RENAME TO departments_gone").execute(&pool).await.unwrap();
    pool.close().await;

    let err =
        ents.list_departments(authed(v1::ListDepartmentsRequest { entity_id: e.id.clone() }, ADMIN)).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    let msg = err.message();
    assert!(msg.contains("request id "), "{msg}");
    for sqlx_text in ["departments", "no such table", "database", "sqlite", "returned"] {
        assert!(!msg.to_lowercase().contains(sqlx_text), "the client sees `{sqlx_text}`: {msg}");
    }
    n.stop().await;
}
