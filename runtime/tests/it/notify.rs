//! Notifications end to end through the embeddable API: the outbox delivers to a
//! real HTTP receiver on loopback (an axum server in this process that answers as
//! each test scripts it), with retries, dead-lettering, 410 handling, timeouts,
//! `Retry-After`, idempotency, scheduling, opt-outs, secret rotation, the SSRF
//! guard and entity scoping.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use huddle_actors::notify::signing::{decode_secret, verify_standard};
use huddle_core::{Channel, NotificationStatus as S};
use huddle_runtime::{Api, ApiError, NewEndpoint, NotifyConfig, Runtime, SendRequest};

use crate::common::entity;

#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
    at: std::time::Instant,
}

/// Per path: the statuses to answer in turn, with an optional `Retry-After`.
type Script = HashMap<String, Vec<(u16, Option<&'static str>)>>;

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    /// Per path: the statuses to answer in turn (the last one repeats).
    script: Arc<Mutex<Script>>,
}

impl Receiver {
    fn count(&self, path: &str) -> usize {
        self.got.lock().unwrap().iter().filter(|r| r.path == path).count()
    }

    fn requests(&self, path: &str) -> Vec<Received> {
        self.got.lock().unwrap().iter().filter(|r| r.path == path).cloned().collect()
    }
}

async fn hook(
    State(rx): State<Receiver>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let n = {
        let mut got = rx.got.lock().unwrap();
        got.push(Received { path: path.clone(), headers, body: body.to_vec(), at: std::time::Instant::now() });
        got.iter().filter(|r| r.path == path).count()
    };
    if path == "slow" {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let script = rx.script.lock().unwrap().get(&path).cloned().unwrap_or_else(|| vec![(200, None)]);
    let (status, retry_after) = script[(n - 1).min(script.len() - 1)];
    let mut resp = (StatusCode::from_u16(status).unwrap(), format!("answer {n}")).into_response();
    if let Some(ra) = retry_after {
        resp.headers_mut().insert("retry-after", ra.parse().unwrap());
    }
    resp
}

async fn receiver() -> (Receiver, String) {
    let rx = Receiver::default();
    let app = axum::Router::new().route("/{path}", post(hook)).with_state(rx.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (rx, base)
}

fn fast_config() -> NotifyConfig {
    NotifyConfig {
        allow_private_targets: true,
        retry_schedule: "0s,50ms,50ms".into(),
        timeout_ms: 500,
        poll_interval_ms: 20,
        ..NotifyConfig::default()
    }
}

struct Fixture {
    rt: Runtime,
    api: Api,
    entity: String,
    _dir: tempfile::TempDir,
}

async fn fixture(config: NotifyConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("it.db").display());
    let rt = Runtime::builder().database_url(url).notify(config).build().await.unwrap();
    let api = rt.admin();
    let e = entity(&api, "Acme", None).await;
    Fixture { rt, api, entity: e.id, _dir: dir }
}

fn webhook(entity: &str, endpoint: &str, event_type: &str) -> SendRequest {
    SendRequest {
        entity_id: entity.into(),
        channel: Some(Channel::Webhook),
        recipients: vec![endpoint.into()],
        event_type: event_type.into(),
        data: serde_json::json!({"room": "r1", "minutes": 42}),
        ..Default::default()
    }
}

async fn endpoint(api: &Api, entity: &str, url: String) -> huddle_core::WebhookEndpoint {
    api.create_endpoint(NewEndpoint {
        entity_id: entity.into(),
        url,
        event_types: vec![],
        headers: vec![("X-Team".into(), "blue".into())],
    })
    .await
    .unwrap()
}

/// Waits until the notification reaches a final status and returns it.
async fn settled(api: &Api, id: &str) -> huddle_core::Notification {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = api.get_notification(id).await.unwrap();
        if n.status.is_final() {
            return n;
        }
        assert!(tokio::time::Instant::now() < deadline, "notification {id} still {} after 10 s", n.status);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_is_delivered_signed_with_the_notification_id() {
    let f = fixture(fast_config()).await;
    let (rx, base) = receiver().await;
    let ep = endpoint(&f.api, &f.entity, format!("{base}/ok")).await;
    assert!(ep.secret.starts_with("whsec_"));
    let sent = f.api.send_notification(webhook(&f.entity, &ep.id, "room.ended")).await.unwrap();
    assert_eq!(sent.ids.len(), 1);
    let n = settled(&f.api, &sent.ids[0]).await;
    assert_eq!(n.status, S::Delivered, "{n:?}");
    assert_eq!(n.attempts.len(), 1);
    assert_eq!(n.attempts[0].response_code, Some(200));

    let req = &rx.requests("ok")[0];
    let h = |k: &str| req.headers.get(k).unwrap().to_str().unwrap().to_string();
    assert_eq!(h("webhook-id"), sent.ids[0]);
    assert_eq!(h("x-team"), "blue");
    assert_eq!(h("content-type"), "application/json");
    let secret = decode_secret(&ep.secret).unwrap();
    let now = huddle_core::now_ms() / 1000;
    verify_standard(&[secret], &h("webhook-id"), &h("webhook-timestamp"), &h("webhook-signature"), &req.body, now, 300)
        .expect("the signature verifies with the endpoint's secret");
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body["type"], "room.ended");
    assert_eq!(body["data"], serde_json::json!({"room": "r1", "minutes": 42}));
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    let other = decode_secret(&huddle_actors::notify::signing::generate_secret()).unwrap();
    assert!(
        verify_standard(
            &[other],
            &h("webhook-id"),
            &h("webhook-timestamp"),
            &h("webhook-signature"),
            &req.body,
            now,
            300
        )
        .is_err()
    );
    f.rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_follow_the_schedule_then_dead_letter() {
    let f = fixture(fast_config()).await;
    let (rx, base) = receiver().await;
    rx.script.lock().unwrap().insert("flaky".into(), vec![(500, None), (503, None), (200, None)]);
    rx.script.lock().unwrap().insert("down".into(), vec![(502, None)]);
    let flaky = endpoint(&f.api, &f.entity, format!("{base}/flaky")).await;
    let down = endpoint(&f.api, &f.entity, format!("{base}/down")).await;
    let a = f.api.send_notification(webhook(&f.entity, &flaky.id, "t")).await.unwrap().ids.remove(0);
    let b = f.api.send_notification(webhook(&f.entity, &down.id, "t")).await.unwrap().ids.remove(0);

    let a = settled(&f.api, &a).await;
    assert_eq!(a.status, S::Delivered);
    assert_eq!(a.attempts.iter().map(|x| x.response_code).collect::<Vec<_>>(), [Some(500), Some(503), Some(200)]);
    let ids: Vec<_> =
        rx.requests("flaky").iter().map(|r| r.headers["webhook-id"].to_str().unwrap().to_string()).collect();
    assert_eq!(ids, vec![a.id.clone(); 3], "every redelivery carries the same id");

    let b = settled(&f.api, &b).await;
    assert_eq!(b.status, S::Dead, "three attempts of the schedule, then dead");
    assert_eq!(b.attempts.len(), 3);
    assert_eq!(rx.count("down"), 3);
    assert!(b.last_error.unwrap().contains("HTTP 502"));
    f.rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_the_endpoint_and_4xx_fails_without_retry() {
    let f = fixture(fast_config()).await;
    let (rx, base) = receiver().await;
    rx.script.lock().unwrap().insert("gone".into(), vec![(410, None)]);
    rx.script.lock().unwrap().insert("bad".into(), vec![(400, None)]);
    rx.script.lock().unwrap().insert("limited".into(), vec![(429, Some("1")), (200, None)]);
    let gone = endpoint(&f.api, &f.entity, format!("{base}/gone")).await;
    let bad = endpoint(&f.api, &f.entity, format!("{base}/bad")).await;
    let limited = endpoint(&f.api, &f.entity, format!("{base}/limited")).await;

    let g = f.api.send_notification(webhook(&f.entity, &gone.id, "t")).await.unwrap().ids.remove(0);
    let g = settled(&f.api, &g).await;
    assert_eq!((g.status, g.attempts.len()), (S::Failed, 1));
    crate::common::eventually("the gone endpoint is disabled", || async {
        f.api.list_endpoints(&f.entity).await.unwrap().iter().any(|e| e.id == gone.id && e.disabled)
    })
    .await;
    let refused = f.api.send_notification(webhook(&f.entity, &gone.id, "t")).await.unwrap_err();
    assert!(matches!(refused, ApiError::FailedPrecondition(_)), "{refused:?}");

    let b = f.api.send_notification(webhook(&f.entity, &bad.id, "t")).await.unwrap().ids.remove(0);
    let b = settled(&f.api, &b).await;
    assert_eq!((b.status, b.attempts.len(), rx.count("bad")), (S::Failed, 1, 1));

    // 429 with Retry-After: 1 waits at least a second although the schedule says 50 ms
    let l = f.api.send_notification(webhook(&f.entity, &limited.id, "t")).await.unwrap().ids.remove(0);
    let l = settled(&f.api, &l).await;
    assert_eq!(l.status, S::Delivered);
    let reqs = rx.requests("limited");
    assert!(reqs[1].at.duration_since(reqs[0].at) >= Duration::from_millis(950), "Retry-After honoured");
    f.rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_are_retried_and_recorded() {
    let f = fixture(NotifyConfig { retry_schedule: "0s,10ms".into(), timeout_ms: 300, ..fast_config() }).await;
    let (_rx, base) = receiver().await;
    let slow = endpoint(&f.api, &f.entity, format!("{base}/slow")).await;
    let id = f.api.send_notification(webhook(&f.entity, &slow.id, "t")).await.unwrap().ids.remove(0);
    let n = settled(&f.api, &id).await;
    assert_eq!((n.status, n.attempts.len()), (S::Dead, 2));
    assert!(n.attempts.iter().all(|a| a.error.as_deref().unwrap_or("").contains("timed out")), "{n:?}");
    assert!(n.attempts.iter().all(|a| a.duration_ms >= 250 && a.duration_ms < 2_000), "{n:?}");
    f.rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_scheduling_cancel_and_opt_out() {
    let f = fixture(fast_config()).await;
    let (rx, base) = receiver().await;
    let ep = endpoint(&f.api, &f.entity, format!("{base}/ok")).await;
    let mut req = webhook(&f.entity, &ep.id, "t");
    req.idempotency_key = Some("order-17".into());
    let first = f.api.send_notification(req.clone()).await.unwrap();
    let second = f.api.send_notification(req).await.unwrap();
    assert_eq!((second.ids.clone(), second.duplicate), (first.ids.clone(), true));
    settled(&f.api, &first.ids[0]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rx.count("ok"), 1, "the repeated request sent nothing");

    let mut later = webhook(&f.entity, &ep.id, "t");
    later.scheduled_for_ms = Some(huddle_core::now_ms() + 3_600_000);
    let later = f.api.send_notification(later).await.unwrap().ids.remove(0);
    assert_eq!(f.api.get_notification(&later).await.unwrap().status, S::Pending);
    assert_eq!(f.api.cancel_notification(&later).await.unwrap().status, S::Cancelled);
    let again = f.api.cancel_notification(&later).await.unwrap_err();
    assert!(matches!(again, ApiError::FailedPrecondition(_)), "{again:?}");

    f.api.set_preference(&f.entity, &ep.id, Channel::Webhook, true).await.unwrap();
    let skipped = f.api.send_notification(webhook(&f.entity, &ep.id, "t")).await.unwrap().ids.remove(0);
    assert_eq!(f.api.get_notification(&skipped).await.unwrap().status, S::Skipped);

    // an endpoint with a type filter skips other types; fan-out without recipients
    let typed = f
        .api
        .create_endpoint(NewEndpoint {
            entity_id: f.entity.clone(),
            url: format!("{base}/typed"),
            event_types: vec!["room.started".into()],
            headers: vec![],
        })
        .await
        .unwrap();
    let other_type = f.api.send_notification(webhook(&f.entity, &typed.id, "room.ended")).await.unwrap().ids.remove(0);
    assert_eq!(f.api.get_notification(&other_type).await.unwrap().status, S::Skipped);
    let mut fan = webhook(&f.entity, "", "room.started");
    fan.recipients.clear();
    let fanned = f.api.send_notification(fan).await.unwrap();
    assert_eq!(fanned.ids.len(), 2, "every enabled endpoint taking the type");
    f.rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_signs_with_both_secrets_during_the_overlap() {
    let f = fixture(fast_config()).await;
    let (rx, base) = receiver().await;
    let ep = endpoint(&f.api, &f.entity, format!("{base}/ok")).await;
    let rotated = f.api.rotate_endpoint_secret(&ep.id).await.unwrap();
    assert_ne!(rotated.secret, ep.secret);
    assert_eq!(rotated.previous_secret.as_deref(), Some(ep.secret.as_str()));
    let id = f.api.send_notification(webhook(&f.entity, &ep.id, "t")).await.unwrap().ids.remove(0);
    settled(&f.api, &id).await;
    let req = &rx.requests("ok")[0];
    let h = |k: &str| req.headers.get(k).unwrap().to_str().unwrap().to_string();
    assert_eq!(h("webhook-signature").split(' ').count(), 2);
    let now = huddle_core::now_ms() / 1000;
    for secret in [&ep.secret, &rotated.secret] {
        let key = decode_secret(secret).unwrap();
        verify_standard(&[key], &id, &h("webhook-timestamp"), &h("webhook-signature"), &req.body, now, 300)
            .expect("old and new secret both verify");
    }
    f.rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_targets_are_refused_by_default() {
    let f = fixture(NotifyConfig { allow_private_targets: false, ..fast_config() }).await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.0.0.7/hook",
        "http://[::1]/x",
        "http://169.254.169.254/latest",
    ] {
        let err = f
            .api
            .create_endpoint(NewEndpoint { entity_id: f.entity.clone(), url: url.into(), ..Default::default() })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("SSRF"), "{url}: {err}");
    }
    for url in ["ftp://example.com/x", "not a url"] {
        let err = f
            .api
            .create_endpoint(NewEndpoint { entity_id: f.entity.clone(), url: url.into(), ..Default::default() })
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::InvalidArgument { .. }), "{url}: {err}");
    }
    f.rt.shutdown().await;

    // an endpoint created where private targets were allowed is refused at delivery
    // by a node that does not allow them, and nothing reaches the receiver
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ssrf.db").display());
    let (rx, base) = receiver().await;
    let open = Runtime::builder()
        .database_url(&url)
        .notify(NotifyConfig { enabled: false, ..fast_config() })
        .build()
        .await
        .unwrap();
    let e = entity(&open.admin(), "Acme", None).await;
    let ep = endpoint(&open.admin(), &e.id, format!("{base}/ok")).await;
    let id = open.admin().send_notification(webhook(&e.id, &ep.id, "t")).await.unwrap().ids.remove(0);
    open.shutdown().await;
    let guarded = Runtime::builder()
        .database_url(&url)
        .notify(NotifyConfig { allow_private_targets: false, ..fast_config() })
        .build()
        .await
        .unwrap();
    let n = settled(&guarded.admin(), &id).await;
    assert_eq!(n.status, S::Failed);
    assert!(n.last_error.unwrap().contains("SSRF"));
    assert_eq!(rx.count("ok"), 0);
    guarded.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entity_keys_see_only_their_own_notifications() {
    let f = fixture(fast_config()).await;
    let (_rx, base) = receiver().await;
    let ep = endpoint(&f.api, &f.entity, format!("{base}/ok")).await;
    let id = f.api.send_notification(webhook(&f.entity, &ep.id, "t")).await.unwrap().ids.remove(0);
    let other = entity(&f.api, "Other", None).await;
    let theirs = f.rt.for_entity(other.id.clone());
    assert!(matches!(theirs.get_notification(&id).await.unwrap_err(), ApiError::NotFound { .. }));
    assert!(matches!(theirs.cancel_notification(&id).await.unwrap_err(), ApiError::NotFound { .. }));
    assert!(matches!(theirs.rotate_endpoint_secret(&ep.id).await.unwrap_err(), ApiError::NotFound { .. }));
    assert!(matches!(
        theirs.send_notification(webhook(&f.entity, &ep.id, "t")).await.unwrap_err(),
        ApiError::NotFound { .. }
    ));
    // sending to another entity's endpoint from one's own entity is NOT_FOUND too
    assert!(matches!(
        theirs.send_notification(webhook(&other.id, &ep.id, "t")).await.unwrap_err(),
        ApiError::NotFound { .. }
    ));
    let listed = theirs.list_notifications(Default::default(), Default::default()).await.unwrap();
    assert!(listed.items.is_empty());
    let mine =
        f.rt.for_entity(f.entity.clone()).list_notifications(Default::default(), Default::default()).await.unwrap();
    assert_eq!(mine.items.len(), 1);
    // bad requests are refused with the field named
    let mut bad = webhook(&f.entity, &ep.id, "");
    let err = f.api.send_notification(bad.clone()).await.unwrap_err();
    assert!(err.to_string().contains("event_type"), "{err}");
    bad.event_type = "t".into();
    bad.channel = None;
    assert!(f.api.send_notification(bad).await.unwrap_err().to_string().contains("channel"));
    let sms = SendRequest {
        entity_id: f.entity.clone(),
        channel: Some(Channel::Sms),
        recipients: vec!["12345".into()],
        text: Some("hi".into()),
        ..Default::default()
    };
    let err = f.api.send_notification(sms).await.unwrap_err();
    assert!(matches!(err, ApiError::FailedPrecondition(_)) && err.to_string().contains("TWILIO"), "{err}");
    f.rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_events_become_webhooks_and_templates_render() {
    let config = NotifyConfig {
        rooms: huddle_runtime::RoomNotifyConfig { webhooks: true, ..Default::default() },
        ..fast_config()
    };
    let f = fixture(config).await;
    let (rx, base) = receiver().await;
    f.api
        .create_endpoint(NewEndpoint {
            entity_id: f.entity.clone(),
            url: format!("{base}/rooms"),
            event_types: vec!["room.participant_joined".into(), "room.completed".into()],
            headers: vec![],
        })
        .await
        .unwrap();
    let room = crate::common::room(&f.api, &f.entity).await;
    let id = room.view.room.id.clone();
    f.api.start_room(&id).await.unwrap();
    f.api.join_room(&id, crate::common::human("Ada")).await.unwrap();
    f.api.end_room(&id).await.unwrap();
    crate::common::eventually("two room webhooks", || async { rx.count("rooms") >= 2 }).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let types: Vec<String> = rx
        .requests("rooms")
        .iter()
        .map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(types, ["room.participant_joined", "room.completed"], "only the types the endpoint takes, once each");
    let joined: serde_json::Value = serde_json::from_slice(&rx.requests("rooms")[0].body).unwrap();
    assert_eq!(joined["data"]["room_id"], id.as_str());
    assert_eq!(joined["data"]["event"]["display_name"], "Ada");

    // templates render for chat/email/SMS; errors name the problem
    let chat = SendRequest {
        entity_id: f.entity.clone(),
        channel: Some(Channel::Chat),
        recipients: vec!["entity/acme/user/ada".into()],
        template: Some("room_cancelled".into()),
        data: serde_json::json!({
            "entity": {"name": "Acme"},
            "room": {"title": "Weekly sync", "cancel_reason": "no quorum"},
            "participant": {"display_name": "Ada"},
        }),
        ..Default::default()
    };
    let sent = f.api.send_notification(chat.clone()).await.unwrap();
    let n = f.api.get_notification(&sent.ids[0]).await.unwrap();
    assert_eq!(n.content.subject.as_deref(), Some("Cancelled: Weekly sync"));
    assert!(n.content.text.unwrap().contains("has been cancelled: no quorum"));
    let err = f.api.send_notification(SendRequest { template: Some("nope".into()), ..chat.clone() }).await.unwrap_err();
    assert!(err.to_string().contains("unknown template `nope`"), "{err}");
    let err = f.api.send_notification(SendRequest { data: serde_json::json!({}), ..chat }).await.unwrap_err();
    assert!(err.to_string().contains("room_cancelled."), "{err}");
    let mut hook = webhook(&f.entity, "", "t");
    hook.template = Some("room_summary".into());
    assert!(f.api.send_notification(hook).await.unwrap_err().to_string().contains("templates apply to"));
    f.rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_a_postgres_outbox_and_deliver_each_notification_once() {
    let schema = format!("rt_notify_{}", &huddle_core::new_id().replace('-', "")[16..]);
    let url = crate::common::postgres_url();
    let open = || async {
        let store = huddle_storage::postgres::PostgresStore::open_in_schema(&url, &schema)
            .await
            .unwrap_or_else(|e| panic!("postgres at {url} is required for this test: {e}"));
        std::sync::Arc::new(store) as huddle_storage::DynStore
    };
    let node = |name: &str| NotifyConfig { node_id: Some(name.into()), ..fast_config() };
    let a = Runtime::builder().store(open().await).notify(node("node-a")).build().await.unwrap();
    let b = Runtime::builder().store(open().await).notify(node("node-b")).build().await.unwrap();
    let (rx, base) = receiver().await;
    let e = entity(&a.admin(), "Acme", None).await;
    let ep = endpoint(&a.admin(), &e.id, format!("{base}/ok")).await;
    let mut ids = Vec::new();
    for i in 0..60 {
        let api = if i % 2 == 0 { a.admin() } else { b.admin() };
        ids.extend(api.send_notification(webhook(&e.id, &ep.id, "t")).await.unwrap().ids);
    }
    for id in &ids {
        assert_eq!(settled(&a.admin(), id).await.status, S::Delivered);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got: Vec<String> =
        rx.requests("ok").iter().map(|r| r.headers["webhook-id"].to_str().unwrap().to_string()).collect();
    let unique: std::collections::BTreeSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), 60, "every notification delivered");
    assert_eq!(got.len(), 60, "and none twice: the two nodes never claimed the same row");
    let (sa, sb) = (a.admin().outbox_stats().await.unwrap(), b.admin().outbox_stats().await.unwrap());
    assert_eq!(sa.claimed + sb.claimed, 60, "claims: node-a {} node-b {}", sa.claimed, sb.claimed);
    eprintln!("postgres outbox: node-a claimed {}, node-b claimed {}", sa.claimed, sb.claimed);
    a.shutdown().await;
    b.shutdown().await;
}

fn routing_config(rooms: huddle_runtime::RoomNotifyConfig) -> NotifyConfig {
    NotifyConfig { rooms, ..fast_config() }
}

/// Room events committed while nothing routed them (the router was off, or the
/// node died between the commit and the routing) are routed from the event log at
/// the next start, once: the stored cursor means a third start sends nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrouted_room_events_are_routed_from_the_log_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("it.db").display());
    let (rx, base) = receiver().await;

    // Node 1 routes nothing: its events stay unrouted.
    let rt = Runtime::builder().database_url(url.clone()).notify(fast_config()).build().await.unwrap();
    let api = rt.admin();
    let e = entity(&api, "Acme", None).await;
    api.create_endpoint(NewEndpoint {
        entity_id: e.id.clone(),
        url: format!("{base}/rooms"),
        event_types: vec!["room.participant_joined".into(), "room.completed".into()],
        headers: vec![],
    })
    .await
    .unwrap();
    let room = crate::common::room(&api, &e.id).await;
    let id = room.view.room.id.clone();
    api.start_room(&id).await.unwrap();
    api.join_room(&id, crate::common::human("Ada")).await.unwrap();
    api.end_room(&id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.count("rooms"), 0, "node 1 does not route room events");
    let unrouted = rt.store().list_unrouted_rooms(0).await.unwrap();
    assert_eq!(unrouted, vec![(id.clone(), 0)], "the room's log is unrouted from its start");
    rt.shutdown().await;

    // Node 2 routes room webhooks: it finds the room's unrouted events in the log.
    let rooms = huddle_runtime::RoomNotifyConfig { webhooks: true, ..Default::default() };
    let rt = Runtime::builder().database_url(url.clone()).notify(routing_config(rooms.clone())).build().await.unwrap();
    crate::common::eventually("the two room webhooks", || async { rx.count("rooms") >= 2 }).await;
    crate::common::eventually("the cursor stored", || async {
        rt.store().list_unrouted_rooms(0).await.unwrap().is_empty()
    })
    .await;
    let types: Vec<String> = rx
        .requests("rooms")
        .iter()
        .map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(types, ["room.participant_joined", "room.completed"]);
    rt.shutdown().await;

    // Node 3: nothing is left to route, and nothing is sent again.
    let rt = Runtime::builder().database_url(url).notify(routing_config(rooms)).build().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.count("rooms"), 2, "a routed event is not routed again");
    let sent = rt.admin().list_notifications(Default::default(), Default::default()).await.unwrap();
    assert_eq!(sent.items.iter().filter(|n| n.channel == Channel::Webhook).count(), 2);
    rt.shutdown().await;
}

/// A participant who cannot be notified (here an address stored before the
/// contact rule was one rule) is passed over; everyone after them is notified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_contact_does_not_stop_the_others_notices() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("it.db").display());
    let mut config = routing_config(huddle_runtime::RoomNotifyConfig { cancellations: true, ..Default::default() });
    config.smtp.host = Some("127.0.0.1".into());
    config.smtp.port = 9;
    config.smtp.tls = "none".into();

    let rt = Runtime::builder().database_url(url.clone()).notify(fast_config()).build().await.unwrap();
    let api = rt.admin();
    let e = entity(&api, "Acme", None).await;
    let room = crate::common::room(&api, &e.id).await;
    let id = room.view.room.id.clone();
    let mut ada = crate::common::human("Ada");
    ada.email = Some("ada@example.com".into());
    let mut bob = crate::common::human("Bob");
    bob.email = Some("bob@example.com".into());
    let ada = api.join_room(&id, ada).await.unwrap();
    api.join_room(&id, bob).await.unwrap();
    rt.shutdown().await;

    // Ada's address as an older release stored it: no dotted domain.
    let store = huddle_storage::open(&url).await.unwrap();
    let stored = store.get_room(&id).await.unwrap();
    let mut bad = ada.clone();
    bad.email = Some("ada@localhost".into());
    store
        .commit_room_change(huddle_storage::RoomChange {
            expected_seq: stored.event_seq,
            room: stored,
            participants: vec![bad],
            events: vec![],
            segments: vec![],
        })
        .await
        .unwrap();
    drop(store);

    let rt = Runtime::builder().database_url(url).notify(config).build().await.unwrap();
    let api = rt.admin();
    api.cancel_room(&id, "no quorum").await.unwrap();
    let to = |who: &'static str| {
        let api = api.clone();
        async move {
            let filter = huddle_storage::NotificationFilter { recipient: Some(who.into()), ..Default::default() };
            api.list_notifications(filter, Default::default()).await.unwrap().items
        }
    };
    crate::common::eventually("Bob's cancellation", || async { !to("bob@example.com").await.is_empty() }).await;
    let bobs = to("bob@example.com").await;
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].content.event_type, "room_cancelled");
    assert!(to("ada@localhost").await.is_empty(), "the bad address gets nothing");
    rt.shutdown().await;
}

fn inbound_sources(standard_secret: &str) -> Vec<huddle_runtime::InboundConfig> {
    vec![
        huddle_runtime::InboundConfig {
            name: "crm".into(),
            scheme: "standard".into(),
            secret: standard_secret.into(),
            header: "X-Webhook-Signature".into(),
            timestamp_header: None,
            tolerance_secs: 300,
        },
        huddle_runtime::InboundConfig {
            name: "gh".into(),
            scheme: "sha256".into(),
            secret: "s3cret".into(),
            header: "X-Hub-Signature-256".into(),
            timestamp_header: Some("X-Hub-Timestamp".into()),
            tolerance_secs: 300,
        },
    ]
}

async fn post_inbound(http: std::net::SocketAddr, source: &str, headers: &[(&str, String)], body: &str) -> u16 {
    let mut req =
        reqwest::Client::new().post(format!("http://{http}/webhooks/inbound/{source}")).body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    req.send().await.unwrap().status().as_u16()
}

fn standard_headers(secret: &str, id: &str, body: &str) -> Vec<(&'static str, String)> {
    use huddle_actors::notify::signing::sign;
    let ts = huddle_core::now_ms() / 1000;
    vec![
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", ts.to_string()),
        ("webhook-signature", sign(&decode_secret(secret).unwrap(), id, ts, body.as_bytes())),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_hmac_signature_covers_the_timestamp() {
    use huddle_actors::notify::signing::{HmacAlgorithm, hmac_header};
    let mut config = huddle_runtime::Config::default();
    config.notify.inbound = inbound_sources(&huddle_actors::notify::signing::generate_secret());
    let served = crate::common::serve(config).await;
    let mut inbound = served.rt.inbound_webhooks();
    let body = r#"{"action":"opened"}"#;
    let now = (huddle_core::now_ms() / 1000).to_string();

    // a capture signed over the body alone, replayed with a fresh (unsigned) timestamp
    let body_only = hmac_header(HmacAlgorithm::Sha256, b"s3cret", body.as_bytes());
    let replayed = [("X-Hub-Signature-256", body_only), ("X-Hub-Timestamp", now.clone())];
    assert_eq!(post_inbound(served.http, "gh", &replayed, body).await, 401, "the timestamp must be signed");

    // signed over `{timestamp}.{body}`: accepted once; the same request again is a replay
    let signed = hmac_header(HmacAlgorithm::Sha256, b"s3cret", format!("{now}.{body}").as_bytes());
    let good = [("X-Hub-Signature-256", signed.clone()), ("X-Hub-Timestamp", now.clone())];
    assert_eq!(post_inbound(served.http, "gh", &good, body).await, 202);
    assert_eq!(inbound.recv().await.unwrap().body, body.as_bytes());
    let shouted =
        [("X-Hub-Signature-256", signed.to_uppercase().replace("SHA256=", "sha256=")), ("X-Hub-Timestamp", now)];
    assert_eq!(post_inbound(served.http, "gh", &shouted, body).await, 409, "the same signature again is a replay");
    // another timestamp with the old signature does not verify
    let later = (huddle_core::now_ms() / 1000 + 1).to_string();
    let moved = [("X-Hub-Signature-256", signed), ("X-Hub-Timestamp", later)];
    assert_eq!(post_inbound(served.http, "gh", &moved, body).await, 401);
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_webhook_ids_are_not_accepted_twice_and_503_without_a_consumer() {
    let secret = huddle_actors::notify::signing::generate_secret();
    let mut config = huddle_runtime::Config::default();
    config.notify.inbound = inbound_sources(&secret);
    let served = crate::common::serve(config).await;
    let body = r#"{"type":"deal.won"}"#;

    // nobody subscribed: 503, and the id is not spent (the sender's retry goes through)
    let first = standard_headers(&secret, "msg_1", body);
    assert_eq!(post_inbound(served.http, "crm", &first, body).await, 503, "nothing takes the webhook");
    let mut inbound = served.rt.inbound_webhooks();
    assert_eq!(post_inbound(served.http, "crm", &first, body).await, 202);
    let got = inbound.recv().await.unwrap();
    assert_eq!((got.source.as_str(), got.id.as_deref()), ("crm", Some("msg_1")));

    // the same webhook-id again within the tolerance: refused, even freshly signed
    assert_eq!(post_inbound(served.http, "crm", &first, body).await, 409, "a replayed capture");
    let resigned = standard_headers(&secret, "msg_1", body);
    assert_eq!(post_inbound(served.http, "crm", &resigned, body).await, 409, "a repeated webhook-id");
    assert!(inbound.try_recv().is_err(), "nothing more reached the consumer");

    // a consumer that does not keep up: 202 while its queue has room, then 503 (never dropped)
    let mut accepted = 0;
    let mut refused = 0;
    for i in 0..300 {
        match post_inbound(served.http, "crm", &standard_headers(&secret, &format!("bulk_{i}"), body), body).await {
            202 => accepted += 1,
            503 => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(accepted > 0 && refused > 0, "accepted {accepted}, refused {refused}");
    for _ in 0..accepted {
        assert!(inbound.try_recv().is_ok(), "every accepted webhook reaches the consumer");
    }
    assert!(inbound.try_recv().is_err());
    drop(inbound);
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_error_body_is_cut_without_reading_it_all() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const TEN_MB: usize = 10 * 1024 * 1024;
    let produced = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/huge",
        post({
            let produced = produced.clone();
            move || async move {
                // 1 KiB at once, then the rest of 10 MB in 64 KiB pieces every 20 ms
                let stream = futures::stream::unfold(0usize, move |sent| {
                    let produced = produced.clone();
                    async move {
                        if sent >= TEN_MB {
                            return None;
                        }
                        let n = if sent == 0 { 1024 } else { 64 * 1024 };
                        if sent > 0 {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        produced.fetch_add(n, Ordering::SeqCst);
                        Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b'x'; n])), sent + n))
                    }
                });
                (StatusCode::INTERNAL_SERVER_ERROR, axum::body::Body::from_stream(stream))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let f = fixture(NotifyConfig { retry_schedule: "0s".into(), timeout_ms: 10_000, ..fast_config() }).await;
    let ep = endpoint(&f.api, &f.entity, format!("{base}/huge")).await;
    let id = f.api.send_notification(webhook(&f.entity, &ep.id, "t")).await.unwrap().ids.remove(0);
    let n = settled(&f.api, &id).await;
    assert_eq!(n.status, S::Dead);
    let attempt = &n.attempts[0];
    assert_eq!(attempt.response_code, Some(500));
    assert!(attempt.error.as_deref().unwrap_or("").starts_with("HTTP 500: xxxx"), "{attempt:?}");
    assert!(attempt.duration_ms < 1_500, "the excerpt did not wait for the body: {attempt:?}");
    let read = produced.load(Ordering::SeqCst);
    assert!(read < TEN_MB / 2, "only a prefix of the body was read ({read} bytes produced)");
    f.rt.shutdown().await;
}

/// Runs in a child process of this test binary with proxy variables pointing at
/// a listener of the parent, which counts the connections it gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_variables_do_not_route_deliveries() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const CHILD: &str = "HUDDLE_IT_PROXY_CHILD";
    if std::env::var_os(CHILD).is_some() {
        let f = fixture(NotifyConfig { retry_schedule: "0s".into(), timeout_ms: 2_000, ..fast_config() }).await;
        let (rx, base) = receiver().await;
        let ep = endpoint(&f.api, &f.entity, format!("{base}/ok")).await;
        let id = f.api.send_notification(webhook(&f.entity, &ep.id, "t")).await.unwrap().ids.remove(0);
        let n = settled(&f.api, &id).await;
        assert_eq!(n.status, S::Delivered, "{n:?}");
        assert_eq!(rx.count("ok"), 1, "the receiver got the delivery directly");
        f.rt.shutdown().await;
        return;
    }
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    std::thread::spawn({
        let hits = hits.clone();
        move || {
            let mut open = Vec::new();
            for conn in proxy.incoming().flatten() {
                hits.fetch_add(1, Ordering::SeqCst);
                open.push(conn); // never answered
            }
        }
    });
    let name = "notify::proxy_variables_do_not_route_deliveries";
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap());
    child.args([name, "--exact", "--nocapture", "--test-threads=1"]).env(CHILD, "1");
    for var in ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
        child.env(var, &proxy_url);
    }
    let out = child.env_remove("NO_PROXY").env_remove("no_proxy").output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0, "a delivery went to the proxy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_endpoint_holds_only_its_own_delivery_slots() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // an endpoint that accepts connections and never answers, counting requests
    let hanging = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/never",
        post({
            let hanging = hanging.clone();
            move || async move {
                hanging.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<()>().await;
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let never_base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (rx, base) = receiver().await;

    let config = NotifyConfig {
        retry_schedule: "0s".into(),
        timeout_ms: 30_000,
        max_in_flight: 8,
        max_in_flight_per_endpoint: 2,
        claim_batch: 8,
        ..fast_config()
    };
    let f = fixture(config).await;
    let never = endpoint(&f.api, &f.entity, format!("{never_base}/never")).await;
    let ok = endpoint(&f.api, &f.entity, format!("{base}/ok")).await;
    for _ in 0..40 {
        f.api.send_notification(webhook(&f.entity, &never.id, "t")).await.unwrap();
    }
    crate::common::eventually("the silent endpoint has its deliveries", || async {
        hanging.load(Ordering::SeqCst) >= 2
    })
    .await;
    let started = std::time::Instant::now();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.extend(f.api.send_notification(webhook(&f.entity, &ok.id, "t")).await.unwrap().ids);
    }
    for id in &ids {
        assert_eq!(settled(&f.api, id).await.status, S::Delivered);
    }
    assert!(started.elapsed() < Duration::from_secs(5), "other endpoints are not held up: {:?}", started.elapsed());
    assert_eq!(rx.count("ok"), 5);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hanging.load(Ordering::SeqCst), 2, "the silent endpoint never gets more than its cap");
    let stats = f.api.outbox_stats().await.unwrap();
    assert_eq!(stats.in_flight, 2, "{stats:?}");
    assert!(stats.queued <= 2, "{stats:?}");
    f.rt.shutdown().await;
}
