//! Webhooks through the `huddle` binary: endpoints and sends over the CLI, with
//! every delivery verified by a real peer (the Python `standardwebhooks`
//! package); and an outbox that loses nothing when the server is `kill -9`ed in
//! the middle of a burst.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use huddle_proto::v1;
use huddle_proto::v1::entities_client::EntitiesClient;
use huddle_proto::v1::notifications_client::NotificationsClient;

use crate::common::{Data, s, stdout_lines, venv_python};

const ALLOW_PRIVATE: (&str, &str) = ("HUDDLE__NOTIFY__ALLOW_PRIVATE_TARGETS", "true");

#[test]
fn standardwebhooks_python_receiver_verifies_every_delivery() {
    let python = venv_python("huddle-py-webhooks", &["standardwebhooks"], "import standardwebhooks.webhooks");
    let data = Data::new();
    let node = data.start_env(&[ALLOW_PRIVATE, ("HUDDLE__NOTIFY__RETRY_SCHEDULE", "0s,100ms")]);
    let entity = node.cli(&["entity", "create", "--name", "Acme", "--json"]).json();
    let entity = s(&entity, "id").to_string();

    let secret_file = data.path().join("receiver.secret");
    std::fs::write(&secret_file, "whsec_placeholder").unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/webhook_receiver.py");
    let mut receiver = Command::new(&python)
        .arg(&script)
        .arg(&secret_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let lines = stdout_lines(&mut receiver);
    let port_line = lines.recv_timeout(Duration::from_secs(30)).expect("the receiver prints its port");
    let port = port_line.strip_prefix("PORT ").expect("PORT line");
    let url = format!("http://127.0.0.1:{port}/hooks");

    let ep = node
        .cli(&["endpoint", "create", "--entity", &entity, "--url", &url, "--header", "X-Team: blue", "--json"])
        .json();
    assert!(s(&ep, "secret").starts_with("whsec_"));
    std::fs::write(&secret_file, s(&ep, "secret")).unwrap();
    let ep_id = s(&ep, "id").to_string();

    let sent = node
        .cli(&[
            "notify",
            "send",
            "--entity",
            &entity,
            "--channel",
            "webhook",
            "--endpoint",
            &ep_id,
            "--type",
            "room.ended",
            "--data",
            r#"{"room":"r1","minutes":42}"#,
            "--json",
        ])
        .json();
    let first_id = sent["ids"][0].as_str().unwrap().to_string();

    // rotate: the receiver only knows the new secret, the server signs with both
    let rotated = node.cli(&["endpoint", "rotate", &ep_id, "--json"]).json();
    assert_ne!(s(&rotated, "secret"), s(&ep, "secret"));
    let got = lines.recv_timeout(Duration::from_secs(20)).expect("the first delivery reaches the receiver");
    std::fs::write(&secret_file, s(&rotated, "secret")).unwrap();
    let sent2 = node
        .cli(&[
            "notify",
            "send",
            "--entity",
            &entity,
            "--channel",
            "webhook",
            "--endpoint",
            &ep_id,
            "--type",
            "room.started",
            "--json",
        ])
        .json();
    let second_id = sent2["ids"][0].as_str().unwrap().to_string();
    let got2 = lines.recv_timeout(Duration::from_secs(20)).expect("the second delivery reaches the receiver");
    let _ = receiver.kill();

    let results: Vec<serde_json::Value> =
        [got, got2].iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect();
    let first = results.iter().find(|r| r["id"] == first_id.as_str()).expect("first delivery");
    assert_eq!(first["ok"], true, "standardwebhooks rejected huddle's signature: {first}");
    assert_eq!(first["wrong_secret_rejected"], true);
    assert_eq!(first["body"]["type"], "room.ended");
    assert_eq!(first["body"]["data"]["minutes"], 42);
    let second = results.iter().find(|r| r["id"] == second_id.as_str()).expect("second delivery");
    assert_eq!(second["ok"], true, "after rotation: {second}");

    let n = node.cli(&["notify", "get", &first_id, "--json"]).json();
    assert_eq!(s(&n, "status"), "DELIVERED", "{n}");
    assert_eq!(n["attempts"][0]["response_code"], 204);
}

/// One webhook-id per data `seq`, and how many deliveries each got.
type Seen = Arc<Mutex<BTreeMap<u64, (BTreeSet<String>, usize)>>>;

async fn counting_receiver(seen: Seen) -> String {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let seq = v["data"]["seq"].as_u64().unwrap_or(u64::MAX);
                let id = headers.get("webhook-id").and_then(|h| h.to_str().ok()).unwrap_or("").to_string();
                // a little work per delivery, so the kill lands mid-burst
                tokio::time::sleep(Duration::from_millis(5)).await;
                let mut seen = seen.lock().unwrap();
                let e = seen.entry(seq).or_default();
                e.0.insert(id);
                e.1 += 1;
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_loses_nothing_when_killed_mid_burst() {
    const BURST: u64 = 400;
    let seen: Seen = Arc::default();
    let url = counting_receiver(seen.clone()).await;
    let data = Data::new();
    let envs = [ALLOW_PRIVATE, ("HUDDLE__NOTIFY__RETRY_SCHEDULE", "0s,200ms,200ms,200ms")];
    let node = data.start_env(&envs);
    let channel = node.channel().await;
    let mut entities = EntitiesClient::new(channel.clone());
    let mut notify = NotificationsClient::new(channel);
    let entity = entities
        .create_entity(node.req(v1::CreateEntityRequest { name: "Burst".into(), ..Default::default() }))
        .await
        .unwrap()
        .into_inner();
    let ep = notify
        .create_endpoint(node.req(v1::CreateEndpointRequest {
            entity_id: entity.id.clone(),
            url,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();

    // Send the burst from 8 concurrent clients; kill the server part-way through.
    let acked: Arc<Mutex<BTreeMap<u64, String>>> = Arc::default();
    let mut senders = Vec::new();
    for worker in 0..8u64 {
        let mut client = notify.clone();
        let (acked, entity_id, ep_id, key) = (acked.clone(), entity.id.clone(), ep.id.clone(), node.key.clone());
        senders.push(tokio::spawn(async move {
            for seq in (worker..BURST).step_by(8) {
                let mut req = tonic::Request::new(v1::SendRequest {
                    entity_id: entity_id.clone(),
                    channel: v1::Channel::Webhook as i32,
                    recipients: vec![ep_id.clone()],
                    event_type: "burst".into(),
                    data_json: format!(r#"{{"seq":{seq}}}"#),
                    idempotency_key: format!("burst-{seq}"),
                    ..Default::default()
                });
                req.metadata_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
                match client.send(req).await {
                    Ok(r) => {
                        acked.lock().unwrap().insert(seq, r.into_inner().ids[0].clone());
                    }
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < (BURST / 2) as usize {
        assert!(tokio::time::Instant::now() < deadline, "the burst did not get going");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    node.kill_9();
    if std::env::var_os("HUDDLE_TEST_DEBUG").is_some() {
        eprintln!("{}", std::fs::read_to_string(data.path().join("server-0.log")).unwrap_or_default());
    }
    for s in senders {
        s.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let delivered_before = seen.lock().unwrap().len();
    assert!((delivered_before as u64) < BURST, "the kill landed after everything was delivered");

    // Restart on the same database: every acknowledged send is delivered, each
    // under the one id it was acknowledged with.
    let node = data.start_env(&envs);
    let channel = node.channel().await;
    let mut notify = NotificationsClient::new(channel);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let done = {
            let seen = seen.lock().unwrap();
            acked.keys().all(|seq| seen.contains_key(seq))
        };
        if done {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "acknowledged sends were not delivered after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = seen.lock().unwrap().clone();
    for (seq, id) in &acked {
        let (ids, _) = &seen[seq];
        assert_eq!(ids.iter().collect::<Vec<_>>(), vec![id], "seq {seq}: delivered under other ids");
    }
    for (seq, (ids, _)) in &seen {
        assert_eq!(ids.len(), 1, "seq {seq} went out under {} different ids", ids.len());
    }
    let redelivered = seen.values().filter(|(_, n)| *n > 1).count();
    // the server's records agree: every acknowledged notification is DELIVERED
    for id in acked.values() {
        let n = notify
            .get_notification(node.req(v1::GetNotificationRequest { id: id.clone() }))
            .await
            .unwrap()
            .into_inner();
        let delivered = v1::NotificationStatus::Delivered as i32;
        if n.status != delivered {
            // recorded a moment after the receiver saw it
            tokio::time::sleep(Duration::from_millis(500)).await;
            let n = notify
                .get_notification(node.req(v1::GetNotificationRequest { id: id.clone() }))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(n.status, delivered, "{n:?}");
        }
    }
    eprintln!(
        "burst: {} acknowledged before the kill, {delivered_before} delivered before it, {redelivered} delivered twice (same id)",
        acked.len()
    );
}

#[test]
fn email_reaches_a_real_smtp_server_as_multipart_with_the_invitation() {
    let python = venv_python("huddle-py-smtp", &["aiosmtpd"], "import aiosmtpd.controller");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/smtp_server.py");
    let mut smtp = Command::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let lines = stdout_lines(&mut smtp);
    let port = lines.recv_timeout(Duration::from_secs(30)).expect("the SMTP server prints its port");
    let port = port.strip_prefix("PORT ").expect("PORT line").to_string();

    let data = Data::new();
    let node = data.start_env(&[
        ("HUDDLE__NOTIFY__SMTP__HOST", "127.0.0.1"),
        ("HUDDLE__NOTIFY__SMTP__PORT", &port),
        ("HUDDLE__NOTIFY__SMTP__TLS", "none"),
        ("HUDDLE__NOTIFY__SMTP__FROM", "huddle <meetings@example.com>"),
        ("HUDDLE__NOTIFY__ROOMS__INVITATIONS", "true"),
        ("HUDDLE__NOTIFY__ROOMS__CANCELLATIONS", "true"),
        ("HUDDLE__NOTIFY__ROOMS__SUMMARIES", "true"),
    ]);
    let entity = node.cli(&["entity", "create", "--name", "Acme", "--json"]).json();
    let entity = s(&entity, "id").to_string();
    let ics = huddle_actors::notify::ics::render(
        &huddle_actors::notify::ics::IcsEvent {
            uid: "room-1@huddle".into(),
            sequence: 0,
            method: huddle_actors::notify::ics::IcsMethod::Request,
            summary: "Weekly sync".into(),
            description: Some("Agenda: refunds, onboarding".into()),
            location: None,
            start_ms: 1_800_000_000_000,
            end_ms: 1_800_001_800_000,
            organizer_email: "meetings@example.com".into(),
            attendees: vec![("Ada".into(), "ada@example.com".into())],
            url: None,
        },
        1_799_000_000_000,
    );
    let ics_file = data.path().join("invite.ics");
    std::fs::write(&ics_file, &ics).unwrap();
    let sent = node
        .cli(&[
            "notify",
            "send",
            "--entity",
            &entity,
            "--channel",
            "email",
            "--to",
            "ada@example.com",
            "--subject",
            "Invitation: Weekly sync",
            "--text",
            "You are invited.",
            "--html",
            "<p>You are <b>invited</b>.</p>",
            "--ics",
            ics_file.to_str().unwrap(),
            "--json",
        ])
        .json();
    let id = sent["ids"][0].as_str().unwrap().to_string();
    let line = lines.recv_timeout(Duration::from_secs(30)).expect("the SMTP server receives the message");

    // room lifecycle routing: an invitation when Ada joins, a summary when the room
    // ends; in a second room, a cancellation notice
    let room = node.cli(&["room", "create", "--entity", &entity, "--title", "Weekly sync", "--json"]).json();
    let room = s(&room, "id").to_string();
    node.cli(&["room", "start", &room]);
    node.cli(&["room", "join", &room, "--name", "Ada", "--email", "ada@example.com"]);
    node.cli(&["room", "end", &room]);
    let other = node.cli(&["room", "create", "--entity", &entity, "--title", "Planning", "--json"]).json();
    let other = s(&other, "id").to_string();
    node.cli(&["room", "join", &other, "--name", "Ben", "--email", "ben@example.com"]);
    node.cli(&["room", "cancel", &other, "--reason", "no quorum"]);
    let mut routed = BTreeMap::new();
    for _ in 0..4 {
        let l = lines.recv_timeout(Duration::from_secs(30)).expect("a routed room email");
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        routed.insert(v["subject"].as_str().unwrap().to_string(), v);
    }
    drop(smtp.stdin.take());
    let _ = smtp.wait();
    let subjects: Vec<&String> = routed.keys().collect();
    assert_eq!(
        subjects,
        ["Cancelled: Planning", "Invitation: Planning", "Invitation: Weekly sync", "Summary: Weekly sync"]
    );
    let cal = |v: &serde_json::Value| {
        v["parts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["content_type"].as_str().unwrap().starts_with("text/calendar"))
            .map(|p| p["payload"].as_str().unwrap().to_string())
    };
    assert!(cal(&routed["Invitation: Weekly sync"]).unwrap().contains("METHOD:REQUEST"));
    assert!(cal(&routed["Cancelled: Planning"]).unwrap().contains("METHOD:CANCEL"));
    assert!(cal(&routed["Summary: Weekly sync"]).is_none());
    assert_eq!(routed["Cancelled: Planning"]["rcpt_tos"], serde_json::json!(["ben@example.com"]));
    let summary_text = routed["Summary: Weekly sync"]["parts"][2]["payload"].as_str().unwrap();
    assert!(summary_text.contains("with 1 participant(s): Ada"), "{summary_text}");

    let m: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(m["mail_from"], "meetings@example.com");
    assert_eq!(m["rcpt_tos"], serde_json::json!(["ada@example.com"]));
    assert_eq!(m["subject"], "Invitation: Weekly sync");
    assert_eq!(m["message_id"], format!("<{id}@huddle.notifications>"));
    let parts = m["parts"].as_array().unwrap();
    let kinds: Vec<&str> = parts.iter().map(|p| p["content_type"].as_str().unwrap()).collect();
    assert_eq!(kinds[0], "multipart/mixed", "{kinds:?}");
    assert_eq!(kinds[1], "multipart/alternative", "{kinds:?}");
    assert!(kinds[2].starts_with("text/plain"), "{kinds:?}");
    assert!(kinds[3].starts_with("text/html"), "{kinds:?}");
    assert!(kinds[4].starts_with("text/calendar") && kinds[4].replace('"', "").contains("method=REQUEST"), "{kinds:?}");
    assert_eq!(parts[2]["payload"].as_str().unwrap().trim(), "You are invited.");
    assert!(parts[3]["payload"].as_str().unwrap().contains("<b>invited</b>"));
    assert_eq!(parts[4]["filename"], "invite.ics");
    let cal = parts[4]["payload"].as_str().unwrap();
    assert!(cal.contains("SUMMARY:Weekly sync") && cal.contains("DTSTART:20270115T080000Z"), "{cal}");

    // the notification records the SMTP reply
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = node.cli(&["notify", "get", &id, "--json"]).json();
        if s(&n, "status") == "DELIVERED" {
            assert_eq!(n["attempts"][0]["response_code"], 250);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not recorded as delivered: {n}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // email on a node without SMTP is refused with what to set
    let plain = Data::new();
    let bare = plain.start();
    let e2 = bare.cli(&["entity", "create", "--name", "B", "--json"]).json();
    let err = bare
        .cli(&[
            "notify",
            "send",
            "--entity",
            s(&e2, "id"),
            "--channel",
            "email",
            "--to",
            "a@example.com",
            "--subject",
            "x",
            "--text",
            "y",
        ])
        .err()
        .to_string();
    assert!(err.contains("FAILED_PRECONDITION") && err.contains("HUDDLE__NOTIFY__SMTP__HOST"), "{err}");
}

/// Standard Webhooks headers for `body`, made by the Python `standardwebhooks`
/// package (the sender's side), `age_s` seconds in the past.
fn python_signed_headers(python: &Path, secret: &str, msg_id: &str, body: &str, age_s: i64) -> serde_json::Value {
    let code = r#"
import datetime, json, sys
from standardwebhooks.webhooks import Webhook
secret, msg_id, body, age = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ts = datetime.datetime.now(tz=datetime.timezone.utc) - datetime.timedelta(seconds=age)
sig = Webhook(secret).sign(msg_id, ts, body)
print(json.dumps({"webhook-id": msg_id, "webhook-timestamp": str(int(ts.timestamp())), "webhook-signature": sig}))
"#;
    let out = Command::new(python).args(["-c", code, secret, msg_id, body, &age_s.to_string()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_webhooks_are_verified_and_forgeries_refused() {
    let python = venv_python("huddle-py-webhooks", &["standardwebhooks"], "import standardwebhooks.webhooks");
    let secret = huddle_actors::notify::signing::generate_secret();
    let data = Data::new();
    let config = data.path().join("inbound.toml");
    std::fs::write(
        &config,
        format!(
            "[[notify.inbound]]\nname = \"crm\"\nscheme = \"standard\"\nsecret = \"{secret}\"\n\n\
             [[notify.inbound]]\nname = \"gh\"\nscheme = \"sha256\"\nsecret = \"s3cret\"\nheader = \"X-Hub-Signature-256\"\n"
        ),
    )
    .unwrap();
    let db = data.db_url();
    let node = data.start_with(
        &[
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--database",
            &db,
            "--admin-key",
            &data.key,
        ],
        &[],
    );
    let base = format!("http://{}/webhooks/inbound", node.http);
    let client = reqwest::Client::new();
    let post = |path: &str, headers: &serde_json::Value, body: &str| {
        let mut req = client.post(format!("{base}/{path}")).body(body.to_string());
        for (k, v) in headers.as_object().unwrap() {
            req = req.header(k.as_str(), v.as_str().unwrap());
        }
        req.send()
    };
    let body = r#"{"type":"deal.won","data":{"amount":1200}}"#;
    let good = python_signed_headers(&python, &secret, "msg_1", body, 0);
    // `huddle serve` alone has no consumer of inbound webhooks (embedders subscribe
    // with Runtime::inbound_webhooks): a verified webhook is answered 503 so that
    // the sender retries, never 202 and dropped; a forgery is 401
    let verified = post("crm", &good, body).await.unwrap();
    assert_eq!(verified.status(), 503, "a standardwebhooks signature verifies, and nothing takes it");
    assert!(verified.text().await.unwrap().contains("no consumer"));
    assert_eq!(post("crm", &good, &body.replace("1200", "9999")).await.unwrap().status(), 401, "tampered body");
    let stale = python_signed_headers(&python, &secret, "msg_2", body, 3600);
    assert_eq!(post("crm", &stale, body).await.unwrap().status(), 401, "replayed an hour later");
    let other = python_signed_headers(&python, &huddle_actors::notify::signing::generate_secret(), "msg_3", body, 0);
    assert_eq!(post("crm", &other, body).await.unwrap().status(), 401, "someone else's secret");
    assert_eq!(post("crm", &serde_json::json!({}), body).await.unwrap().status(), 401, "no headers");
    assert_eq!(post("nobody", &good, body).await.unwrap().status(), 404);

    // GitHub-style sha256= header, computed with Python's hmac
    let out = Command::new(&python)
        .args(["-c", "import hmac,hashlib,sys; print('sha256=' + hmac.new(b's3cret', sys.argv[1].encode(), hashlib.sha256).hexdigest())", body])
        .output()
        .unwrap();
    let sig = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let h = serde_json::json!({ "X-Hub-Signature-256": sig });
    assert_eq!(post("gh", &h, body).await.unwrap().status(), 503, "verified, and nothing takes it");
    assert_eq!(post("gh", &h, "{}").await.unwrap().status(), 401);
    assert!(node.logs().contains("inbound webhook refused"), "refusals are logged");
}
