//! Chat delivery: `GET /chat/ws?channel=NAME[&after=ID]` upgrades to a WebSocket
//! that streams the chat messages sent to `channel`, oldest first, as JSON text
//! frames: `{"type":"message","id","channel","text","data","created_at"}`.
//!
//! Messages are rows of the outbox (channel `chat`, recipient = the channel name),
//! so nothing is lost while nobody listens: a subscriber first gets everything
//! after `after` (the id of the last message it saw; none: from the start), then
//! live messages, in order, each once. A message handed to a socket becomes
//! DELIVERED; the client's `{"type":"read","id":ID}` records a read receipt
//! (answered with `{"type":"read_ack","id"}`).
//!
//! Authentication: `authorization: Bearer KEY` or `?access_token=KEY` (browsers
//! cannot set headers on a WebSocket). An entity key sees only its entity's
//! messages. Live delivery is woken by an in-process hub; a one-second poll of
//! storage also picks up messages sent through other nodes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;
use huddle_core::Notification;
use huddle_core::time::Millis;
use serde::Deserialize;
use tokio::sync::broadcast;
use tracing::{debug, warn};

use crate::auth::Authenticator;
use crate::{Runtime, Scope};

/// Wakes the sockets of a channel when a message is sent to it on this node.
#[derive(Clone, Default)]
pub(crate) struct ChatHub {
    channels: Arc<DashMap<String, broadcast::Sender<()>>>,
}

impl ChatHub {
    pub(crate) fn notify(&self, channel: &str) {
        if let Some(tx) = self.channels.get(channel) {
            let _ = tx.send(());
        }
    }

    fn subscribe(&self, channel: &str) -> broadcast::Receiver<()> {
        self.channels.entry(channel.to_string()).or_insert_with(|| broadcast::channel(16).0).subscribe()
    }

    fn release(&self, channel: &str) {
        self.channels.remove_if(channel, |_, tx| tx.receiver_count() == 0);
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ChatQuery {
    channel: String,
    after: Option<String>,
    access_token: Option<String>,
}

/// Messages fetched per storage read.
const PAGE: u32 = 200;

pub(crate) async fn ws(
    State((rt, auth)): State<(Runtime, Arc<Authenticator>)>,
    Query(q): Query<ChatQuery>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let header = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    let header = header.or_else(|| q.access_token.as_ref().map(|t| format!("Bearer {t}")));
    let scope = match auth.authenticate(&rt, header.as_deref()).await {
        Ok(s) => s,
        Err(e) => {
            warn!(channel = %q.channel, "chat subscription refused: {e}");
            return (StatusCode::UNAUTHORIZED, format!("{e}\n")).into_response();
        }
    };
    if q.channel.is_empty() || q.channel.len() > 200 {
        return (StatusCode::BAD_REQUEST, "channel must be 1-200 characters\n").into_response();
    }
    let cursor = match &q.after {
        None => None,
        Some(id) => match rt.store().get_notification(id).await {
            Ok(n) if n.recipient == q.channel && scope.sees(&n.entity_id) => Some((n.created_at_ms, n.id)),
            _ => {
                return (StatusCode::BAD_REQUEST, format!("`after`: no message {id} in this channel\n"))
                    .into_response();
            }
        },
    };
    upgrade.on_upgrade(move |socket| serve(rt, scope, q.channel, cursor, socket))
}

fn frame(n: &Notification) -> Message {
    let v = serde_json::json!({
        "type": "message",
        "id": n.id,
        "channel": n.recipient,
        "text": n.content.text,
        "data": n.content.data,
        "created_at": huddle_core::time::rfc3339(n.created_at_ms, true),
    });
    Message::Text(v.to_string().into())
}

async fn serve(
    rt: Runtime,
    scope: Scope,
    channel: String,
    mut cursor: Option<(Millis, String)>,
    mut socket: WebSocket,
) {
    let hub = rt.chat_hub().clone();
    let mut wake = hub.subscribe(&channel);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let closing = rt.closing().clone();
    'outer: loop {
        // Everything after the cursor, in order.
        loop {
            let batch = match rt.store().list_chat_messages(&channel, cursor.clone(), PAGE).await {
                Ok(b) => b,
                Err(e) => {
                    warn!(%channel, error = %e, "cannot read chat messages; retrying");
                    break;
                }
            };
            let full = batch.len() as u32 == PAGE;
            let mut sent = Vec::new();
            for n in batch {
                cursor = Some((n.created_at_ms, n.id.clone()));
                if !scope.sees(&n.entity_id) {
                    continue;
                }
                if socket.send(frame(&n)).await.is_err() {
                    break 'outer;
                }
                sent.push(n.id);
            }
            if let Err(e) = rt.store().mark_chat_delivered(&sent).await {
                warn!(%channel, error = %e, "cannot record chat delivery");
            }
            if !full {
                break;
            }
        }
        tokio::select! {
            _ = wake.recv() => {}
            _ = tick.tick() => {}
            _ = closing.cancelled() => {
                let _ = socket.send(Message::Close(None)).await;
                break;
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(t))) => receipt(&rt, &scope, &channel, &t, &mut socket).await,
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    drop(wake);
    hub.release(&channel);
    debug!(%channel, "chat subscriber left");
}

async fn receipt(rt: &Runtime, scope: &Scope, channel: &str, text: &str, socket: &mut WebSocket) {
    let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    let reply = match (v["type"].as_str(), v["id"].as_str()) {
        (Some("read"), Some(id)) => match rt.store().get_notification(id).await {
            Ok(n) if n.recipient == channel && scope.sees(&n.entity_id) => match rt.store().mark_read(id).await {
                Ok(_) => serde_json::json!({"type": "read_ack", "id": id}),
                Err(e) => serde_json::json!({"type": "error", "message": e.to_string()}),
            },
            _ => serde_json::json!({"type": "error", "message": format!("no message {id} in this channel")}),
        },
        _ => serde_json::json!({"type": "error", "message": "expected {\"type\":\"read\",\"id\":ID}"}),
    };
    let _ = socket.send(Message::Text(reply.to_string().into())).await;
}
