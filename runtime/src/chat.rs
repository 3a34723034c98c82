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
//! Authentication: `authorization: Bearer KEY`, or (browsers cannot set headers on
//! a WebSocket) the first frame, `{"type":"auth","key":KEY}` within 10 s, answered
//! `{"type":"auth_ok"}`. `?access_token=KEY` only with `notify.chat_access_token`
//! (a key in a URL ends up in proxy and access logs). An entity key sees only its
//! entity's messages. A key has at most `notify.chat_max_sockets_per_key` sockets
//! open (429 beyond). Failed key look-ups are remembered for a while (the same
//! wrong key costs no database read) and limited per client address: after
//! [`FAILED_LOOKUP_BURST`] failures, one more every [`FAILED_LOOKUP_REFILL`] (429
//! meanwhile, for any key from that address). Frames and messages from clients are
//! at most 64 KiB; a bigger one ends the socket (close code 1009). Live delivery
//! is woken by an in-process hub; a one-second poll of storage also picks up
//! messages sent through other nodes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::connect_info::ConnectInfo;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;
use huddle_core::Notification;
use huddle_core::time::Millis;
use serde::Deserialize;
use tokio::sync::broadcast;
use tracing::{debug, warn};

use crate::auth::{Authenticator, hash_key};
use crate::{ApiError, Runtime, Scope};

/// Largest frame and message a client may send.
pub const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

/// Failed key look-ups one client address may make at once ...
pub const FAILED_LOOKUP_BURST: u32 = 10;
/// ... and then one more per this interval.
pub const FAILED_LOOKUP_REFILL: Duration = Duration::from_secs(6);

/// How long a key that was not found is answered 401 without a look-up.
const FAILED_KEY_TTL: Duration = Duration::from_secs(30);

/// Entries of the failed-key and per-address maps at most (then the stale ones go).
const MAX_TRACKED: usize = 10_000;

/// How long a socket without an `authorization` header has for its auth frame.
const AUTH_FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// Admission to chat sockets: failed key look-ups (remembered, and limited per
/// client address) and the open sockets of each key. Per node, in memory.
#[derive(Default)]
pub(crate) struct ChatGate {
    failed_keys: DashMap<String, Instant>,
    /// Per client address: failures left, and when the last refill was counted.
    budgets: DashMap<IpAddr, (u32, Instant)>,
    sockets: DashMap<String, usize>,
}

/// Why a client was not let in.
enum Refusal {
    Unauthenticated(String),
    TooManyFailures(Duration),
    TooManySockets(usize),
    Unavailable(String),
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Refusal::TooManyFailures(_) | Refusal::TooManySockets(_) => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn message(&self) -> String {
        match self {
            Refusal::Unauthenticated(m) | Refusal::Unavailable(m) => m.clone(),
            Refusal::TooManyFailures(wait) => format!(
                "too many failed key look-ups from this address: retry in {} s with a valid key",
                wait.as_secs().max(1)
            ),
            Refusal::TooManySockets(cap) => format!(
                "this key has {cap} chat sockets open already (notify.chat_max_sockets_per_key): close one first"
            ),
        }
    }

    fn into_response(self) -> Response {
        let mut resp = (self.status(), format!("{}\n", self.message())).into_response();
        if let Refusal::TooManyFailures(wait) = &self
            && let Ok(v) = wait.as_secs().max(1).to_string().parse()
        {
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
        }
        resp
    }
}

/// One open socket of a key; dropping it frees the place.
pub(crate) struct SocketSlot {
    gate: Arc<ChatGate>,
    key_hash: String,
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        if let Some(mut n) = self.gate.sockets.get_mut(&self.key_hash) {
            *n = n.saturating_sub(1);
        }
        self.gate.sockets.remove_if(&self.key_hash, |_, n| *n == 0);
    }
}

impl ChatGate {
    /// Failures `ip` may still make now (refilled by the time passed).
    fn budget(&self, ip: IpAddr) -> u32 {
        let Some(mut entry) = self.budgets.get_mut(&ip) else { return FAILED_LOOKUP_BURST };
        let (left, since) = *entry;
        let refills = (since.elapsed().as_millis() / FAILED_LOOKUP_REFILL.as_millis()) as u32;
        if refills > 0 {
            *entry = (left.saturating_add(refills).min(FAILED_LOOKUP_BURST), since + FAILED_LOOKUP_REFILL * refills);
        }
        entry.0
    }

    /// Counts a failed look-up of `ip`, and remembers the key that was not found.
    fn failed(&self, ip: IpAddr, key_hash: Option<String>) {
        if self.budgets.len() > MAX_TRACKED {
            // an entry refilled by now says nothing
            let full = FAILED_LOOKUP_REFILL * FAILED_LOOKUP_BURST;
            self.budgets.retain(|_, (left, since)| *left < FAILED_LOOKUP_BURST && since.elapsed() < full);
        }
        let mut entry = self.budgets.entry(ip).or_insert((FAILED_LOOKUP_BURST, Instant::now()));
        entry.0 = entry.0.saturating_sub(1);
        drop(entry);
        if let Some(hash) = key_hash {
            if self.failed_keys.len() > MAX_TRACKED {
                self.failed_keys.retain(|_, at| at.elapsed() < FAILED_KEY_TTL);
            }
            self.failed_keys.insert(hash, Instant::now());
        }
    }

    /// The scope of `key` and a socket place for it, or why not.
    async fn admit(
        self: &Arc<Self>,
        rt: &Runtime,
        auth: &Authenticator,
        ip: IpAddr,
        key: &str,
    ) -> Result<(Scope, SocketSlot), Refusal> {
        if self.budget(ip) == 0 {
            let wait = self
                .budgets
                .get(&ip)
                .map_or(FAILED_LOOKUP_REFILL, |e| FAILED_LOOKUP_REFILL.saturating_sub(e.1.elapsed()));
            return Err(Refusal::TooManyFailures(wait));
        }
        let key_hash = hash_key(key.trim());
        let wrong = || Refusal::Unauthenticated("missing or unknown API key".into());
        if self.failed_keys.get(&key_hash).is_some_and(|at| at.elapsed() < FAILED_KEY_TTL) {
            self.failed(ip, None);
            return Err(wrong());
        }
        let scope = match auth.authenticate(rt, Some(&format!("Bearer {key}"))).await {
            Ok(scope) => scope,
            Err(ApiError::Unauthenticated) => {
                self.failed(ip, Some(key_hash));
                return Err(wrong());
            }
            Err(e) => return Err(Refusal::Unavailable(format!("cannot check the key now: {e}"))),
        };
        let cap = rt.notify_config().chat_max_sockets_per_key;
        let mut open = self.sockets.entry(key_hash.clone()).or_insert(0);
        if *open >= cap {
            return Err(Refusal::TooManySockets(cap));
        }
        *open += 1;
        drop(open);
        Ok((scope, SocketSlot { gate: self.clone(), key_hash }))
    }
}

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

/// The router state of `/chat/ws`.
pub(crate) type ChatState = (Runtime, Arc<Authenticator>, Arc<ChatGate>);

pub(crate) async fn ws(
    State((rt, auth, gate)): State<ChatState>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    Query(q): Query<ChatQuery>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let upgrade = upgrade.max_message_size(MAX_CLIENT_MESSAGE).max_frame_size(MAX_CLIENT_MESSAGE);
    let ip = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.0.0.ip());
    if q.channel.is_empty() || q.channel.len() > 200 {
        return (StatusCode::BAD_REQUEST, "channel must be 1-200 characters\n").into_response();
    }
    let header = headers.get("authorization").map(|v| v.to_str().unwrap_or_default());
    let key = match (header, &q.access_token) {
        (Some(h), _) => h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")).unwrap_or("").to_string(),
        (None, Some(token)) if rt.notify_config().chat_access_token => token.clone(),
        (None, Some(_)) => {
            warn!(channel = %q.channel, "chat subscription with ?access_token= refused");
            let msg = "?access_token= is off: send the key as `authorization: Bearer KEY` or in the first frame \
                       {\"type\":\"auth\",\"key\":KEY} (or set notify.chat_access_token = true)\n";
            return (StatusCode::UNAUTHORIZED, msg).into_response();
        }
        (None, None) => {
            return upgrade.on_upgrade(move |socket| first_frame(rt, auth, gate, ip, q, socket));
        }
    };
    let (scope, slot) = match gate.admit(&rt, &auth, ip, &key).await {
        Ok(admitted) => admitted,
        Err(refusal) => {
            warn!(channel = %q.channel, %ip, "chat subscription refused: {}", refusal.message());
            return refusal.into_response();
        }
    };
    let cursor = match cursor(&rt, &scope, &q).await {
        Ok(c) => c,
        Err(msg) => return (StatusCode::BAD_REQUEST, format!("{msg}\n")).into_response(),
    };
    upgrade.on_upgrade(move |socket| serve(rt, scope, slot, q.channel, cursor, socket))
}

/// Where a subscriber resumes: after the message `after`, which must be in its channel.
async fn cursor(rt: &Runtime, scope: &Scope, q: &ChatQuery) -> Result<Option<(Millis, String)>, String> {
    match &q.after {
        None => Ok(None),
        Some(id) => match rt.store().get_notification(id).await {
            Ok(n) if n.recipient == q.channel && scope.sees(&n.entity_id) => Ok(Some((n.created_at_ms, n.id))),
            _ => Err(format!("`after`: no message {id} in this channel")),
        },
    }
}

/// Sends an error frame, then closes the socket with `code`.
async fn refuse(mut socket: WebSocket, code: u16, message: String) {
    let frame = serde_json::json!({"type": "error", "message": message});
    let _ = socket.send(Message::Text(frame.to_string().into())).await;
    let reason = if code == close_code::POLICY { "refused" } else { "try again later" };
    let _ = socket.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
}

/// A socket without an `authorization` header: the key comes in the first frame.
async fn first_frame(
    rt: Runtime,
    auth: Arc<Authenticator>,
    gate: Arc<ChatGate>,
    ip: IpAddr,
    q: ChatQuery,
    mut socket: WebSocket,
) {
    let first = tokio::time::timeout(AUTH_FRAME_TIMEOUT, socket.recv()).await;
    let key = match first {
        Ok(Some(Ok(Message::Text(t)))) => {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
            match (v["type"].as_str(), v["key"].as_str()) {
                (Some("auth"), Some(key)) => key.to_string(),
                _ => String::new(),
            }
        }
        _ => String::new(),
    };
    if key.is_empty() {
        let msg = "expected {\"type\":\"auth\",\"key\":KEY} as the first frame (or an authorization header)";
        return refuse(socket, close_code::POLICY, msg.into()).await;
    }
    let (scope, slot) = match gate.admit(&rt, &auth, ip, &key).await {
        Ok(admitted) => admitted,
        Err(refusal) => {
            warn!(channel = %q.channel, %ip, "chat subscription refused: {}", refusal.message());
            let code =
                if refusal.status() == StatusCode::UNAUTHORIZED { close_code::POLICY } else { close_code::AGAIN };
            return refuse(socket, code, refusal.message()).await;
        }
    };
    let cursor = match cursor(&rt, &scope, &q).await {
        Ok(c) => c,
        Err(msg) => return refuse(socket, close_code::POLICY, msg).await,
    };
    let ok = serde_json::json!({"type": "auth_ok"});
    if socket.send(Message::Text(ok.to_string().into())).await.is_err() {
        return;
    }
    serve(rt, scope, slot, q.channel, cursor, socket).await
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
    _slot: SocketSlot,
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
                Some(Ok(Message::Close(_))) | None => break,
                Some(Err(e)) => {
                    debug!(%channel, error = %e, "chat socket ended by a bad frame");
                    let close = CloseFrame { code: close_code::SIZE, reason: "frames and messages are at most 64 KiB".into() };
                    let _ = socket.send(Message::Close(Some(close))).await;
                    break;
                }
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
