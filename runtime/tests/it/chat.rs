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
