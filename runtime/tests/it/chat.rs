//! Chat over WebSockets with a real WebSocket client (tokio-tungstenite): live
//! messages in order, read receipts, messages sent while a subscriber is away
//! arriving in order on reconnect, and authentication and scoping.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use huddle_core::{Channel, NotificationStatus as S};
use huddle_runtime::server::Server;
use huddle_runtime::{Config, Runtime, SendRequest};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;

const ADMIN: &str = "test-admin-key-0123456789abcdef";
const CHANNEL: &str = "entity/acme/user/ada";

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(http: std::net::SocketAddr, key: &str, after: Option<&str>) -> Result<Ws, String> {
    let mut url = format!("ws://{http}/chat/ws?channel={CHANNEL}");
    if let Some(a) = after {
        url.push_str(&format!("&after={a}"));
    }
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(e) => Err(e.to_string()),
    }
}

async fn next_json(ws: &mut Ws) -> serde_json::Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("a frame within 5 s");
        match msg.expect("socket open").expect("frame") {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

async fn say(rt: &Runtime, entity: &str, text: &str) -> String {
    rt.admin()
        .send_notification(SendRequest {
            entity_id: entity.into(),
            channel: Some(Channel::Chat),
            recipients: vec![CHANNEL.into()],
            text: Some(text.into()),
            data: serde_json::json!({"from": "huddle"}),
            ..Default::default()
        })
        .await
        .unwrap()
        .ids
        .remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_messages_arrive_live_in_order_and_after_a_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.http = "127.0.0.1:0".parse().unwrap();
    config.server.admin_key = Some(ADMIN.into());
    config.database.url = format!("sqlite://{}", dir.path().join("chat.db").display());
    let server = Server::bind(config).await.unwrap();
    let http = server.http_addr();
    let rt = server.runtime().clone();
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { server.run(stop).await.unwrap() }
    });
    let acme = crate::common::entity(&rt.admin(), "Acme", None).await;

    // a message sent before anyone listens waits, then arrives first
    let early = say(&rt, &acme.id, "welcome").await;
    assert_eq!(rt.admin().get_notification(&early).await.unwrap().status, S::Pending);
    let mut ws = connect(http, ADMIN, None).await.unwrap();
    let m = next_json(&mut ws).await;
    assert_eq!(
        (m["type"].as_str(), m["id"].as_str(), m["text"].as_str()),
        (Some("message"), Some(early.as_str()), Some("welcome"))
    );

    // live messages, in order
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(say(&rt, &acme.id, &format!("live {i}")).await);
    }
    for (i, id) in ids.iter().enumerate() {
        let m = next_json(&mut ws).await;
        assert_eq!(m["id"].as_str(), Some(id.as_str()));
        assert_eq!(m["text"], format!("live {i}"));
        assert_eq!(m["data"]["from"], "huddle");
    }
    crate::common::eventually("delivered messages are recorded", || async {
        rt.admin().get_notification(&ids[4]).await.unwrap().status == S::Delivered
    })
    .await;

    // a read receipt
    ws.send(Message::Text(serde_json::json!({"type": "read", "id": ids[4]}).to_string().into())).await.unwrap();
    let ack = next_json(&mut ws).await;
    assert_eq!((ack["type"].as_str(), ack["id"].as_str()), (Some("read_ack"), Some(ids[4].as_str())));
    assert!(rt.admin().get_notification(&ids[4]).await.unwrap().read_at_ms.is_some());
    ws.send(Message::Text(r#"{"type":"read","id":"nope"}"#.into())).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "error");

    // go away; three messages wait; reconnect after the last one seen
    ws.close(None).await.unwrap();
    drop(ws);
    let mut away = Vec::new();
    for i in 0..3 {
        away.push(say(&rt, &acme.id, &format!("while away {i}")).await);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(rt.admin().get_notification(&away[0]).await.unwrap().status, S::Pending);
    let mut ws = connect(http, ADMIN, Some(&ids[4])).await.unwrap();
    for id in &away {
        assert_eq!(next_json(&mut ws).await["id"].as_str(), Some(id.as_str()), "in order, none repeated");
    }
    let later = say(&rt, &acme.id, "back").await;
    assert_eq!(next_json(&mut ws).await["id"].as_str(), Some(later.as_str()));
    drop(ws);

    // keys: none is refused; another entity's key sees none of Acme's messages
    assert!(connect(http, "wrong-key", None).await.unwrap_err().contains("401"));
    let other = crate::common::entity(&rt.admin(), "Other", None).await;
    let (_, other_key) = rt.admin().create_api_key(&other.id).await.unwrap();
    let mut theirs = connect(http, &other_key, None).await.unwrap();
    let leaked = tokio::time::timeout(Duration::from_millis(1500), theirs.next()).await;
    assert!(leaked.is_err(), "another entity's key got a frame: {leaked:?}");

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
}

async fn open(url: String, key: Option<&str>) -> Result<Ws, String> {
    let mut req = url.into_client_request().unwrap();
    if let Some(key) = key {
        req.headers_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    }
    tokio_tungstenite::connect_async(req).await.map(|(ws, _)| ws).map_err(|e| e.to_string())
}

/// Whether the server ends the socket (a close frame, an error or the end) within 5 s.
async fn closed_by_server(ws: &mut Ws) -> bool {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Err(_) => return false,
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return true,
            Ok(Some(Ok(Message::Text(t)))) if t.contains("\"error\"") => continue,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(other))) => panic!("unexpected frame {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_frames_over_64_kib_close_the_socket() {
    let served = crate::common::serve(Config::default()).await;
    let url = format!("ws://{}/chat/ws?channel={CHANNEL}", served.http);
    let mut ws = open(url.clone(), Some(ADMIN)).await.unwrap();
    let big = format!(r#"{{"type":"read","id":"{}"}}"#, "a".repeat(64 * 1024 + 1));
    ws.send(Message::Text(big.into())).await.unwrap();
    assert!(closed_by_server(&mut ws).await, "a frame over 64 KiB ends the socket");
    // a message just under the limit is answered
    let mut ws = open(url, Some(ADMIN)).await.unwrap();
    let fits = format!(r#"{{"type":"read","id":"{}"}}"#, "a".repeat(60 * 1024));
    ws.send(Message::Text(fits.into())).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "error");
    drop(ws);
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_access_token_in_the_url_is_refused_by_default() {
    let served = crate::common::serve(Config::default()).await;
    let base = format!("ws://{}/chat/ws?channel={CHANNEL}", served.http);
    let err = open(format!("{base}&access_token={ADMIN}"), None).await.unwrap_err();
    assert!(err.contains("401"), "{err}");

    // the key in the first frame instead of a header
    let acme = crate::common::entity(&served.rt.admin(), "Acme", None).await;
    let mut ws = open(base.clone(), None).await.unwrap();
    ws.send(Message::Text(serde_json::json!({"type": "auth", "key": ADMIN}).to_string().into())).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "auth_ok");
    let id = say(&served.rt, &acme.id, "hello").await;
    let m = next_json(&mut ws).await;
    assert_eq!((m["type"].as_str(), m["id"].as_str()), (Some("message"), Some(id.as_str())));
    drop(ws);
    // a wrong key in the first frame: an error, then the socket ends
    let mut ws = open(base, None).await.unwrap();
    ws.send(Message::Text(r#"{"type":"auth","key":"wrong-key-0123456789"}"#.into())).await.unwrap();
    assert!(closed_by_server(&mut ws).await);
    served.stop().await;

    // with notify.chat_access_token on, the URL form works
    let mut config = Config::default();
    config.notify.chat_access_token = true;
    let served = crate::common::serve(config).await;
    let url = format!("ws://{}/chat/ws?channel={CHANNEL}&access_token={ADMIN}", served.http);
    open(url, None).await.unwrap();
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_sockets_per_key_are_capped() {
    let mut config = Config::default();
    config.notify.chat_max_sockets_per_key = 2;
    let served = crate::common::serve(config).await;
    let url = format!("ws://{}/chat/ws?channel={CHANNEL}", served.http);
    let a = open(url.clone(), Some(ADMIN)).await.unwrap();
    let _b = open(url.clone(), Some(ADMIN)).await.unwrap();
    let err = open(url.clone(), Some(ADMIN)).await.unwrap_err();
    assert!(err.contains("429"), "{err}");
    // another key has its own allowance
    let acme = crate::common::entity(&served.rt.admin(), "Acme", None).await;
    let (_, key) = served.rt.admin().create_api_key(&acme.id).await.unwrap();
    let _c = open(url.clone(), Some(&key)).await.unwrap();
    // a closed socket frees its place
    drop(a);
    crate::common::eventually("a place is free again", || {
        let url = url.clone();
        async move { open(url, Some(ADMIN)).await.is_ok() }
    })
    .await;
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_chat_keys_are_rate_limited() {
    let served = crate::common::serve(Config::default()).await;
    let url = format!("ws://{}/chat/ws?channel={CHANNEL}", served.http);
    let mut statuses = Vec::new();
    for i in 0..30 {
        let err = open(url.clone(), Some(&format!("hk_guess{i:040}"))).await.unwrap_err();
        statuses.push(if err.contains("429") {
            429
        } else if err.contains("401") {
            401
        } else {
            panic!("{err}")
        });
    }
    let first_limited = statuses.iter().position(|s| *s == 429).expect("guessing is rate-limited");
    assert!(first_limited >= 5, "a few mistakes are allowed: {statuses:?}");
    assert!(statuses[first_limited..].iter().all(|s| *s == 429), "{statuses:?}");
    // while limited, even the right key waits
    assert!(open(url, Some(ADMIN)).await.unwrap_err().contains("429"));
    served.stop().await;
}
