//! [`SignalClient`]: a participant's signalling connection to LiveKit (`/rtc`,
//! livekit_rtc.proto). Connects, returns the `JoinResponse`, forwards every later
//! `SignalResponse`, sends `SignalRequest`s, pings per the server's `ping_interval` and gives
//! up after `ping_timeout` without a pong. Protocol 17 on purpose: data channels are then
//! negotiated in-band, which the media peer to come expects.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::{SinkExt, StreamExt};
use livekit_protocol as proto;
use prost::Message as _;
use proto::signal_request::Message as Req;
use proto::signal_response::Message as Resp;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::{debug, warn};

use super::{LiveKitError, Result, RoomControl, RoomSession, RoomTransport, endpoint_url, now_ms};

/// The signalling protocol version huddle speaks.
pub const PROTOCOL_VERSION: u32 = 17;

#[derive(Clone, Debug)]
pub struct SignalOptions {
    /// Time allowed for the WebSocket handshake plus the `join` response.
    pub connect_timeout: Duration,
    pub auto_subscribe: bool,
    /// TLS for `wss://` servers; `None` trusts the Mozilla roots (webpki-roots).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl Default for SignalOptions {
    fn default() -> Self {
        Self { connect_timeout: Duration::from_secs(10), auto_subscribe: true, tls: None }
    }
}

enum Command {
    Send(Box<proto::SignalRequest>),
    Leave(oneshot::Sender<()>),
}

/// A joined participant's signalling connection. Dropping it closes the connection without
/// a `leave` (the server then sees the participant disconnect).
pub struct SignalClient {
    join: proto::JoinResponse,
    /// The connection task closes the socket once this sender is dropped.
    commands_tx: mpsc::UnboundedSender<Command>,
}

impl SignalClient {
    /// Joins with default options; see [`SignalClient::connect_with`].
    pub async fn connect(
        url: &str,
        token: &str,
    ) -> Result<(SignalClient, mpsc::UnboundedReceiver<proto::SignalResponse>)> {
        Self::connect_with(url, token, SignalOptions::default()).await
    }

    /// Connects to `{url}/rtc?access_token=..&protocol=17&sdk=rust&auto_subscribe=1` and waits
    /// for the `join` response. The receiver gets every later server message and ends when the
    /// connection closes.
    pub async fn connect_with(
        url: &str,
        token: &str,
        options: SignalOptions,
    ) -> Result<(SignalClient, mpsc::UnboundedReceiver<proto::SignalResponse>)> {
        let mut rtc_url = endpoint_url(url, "rtc")?;
        rtc_url
            .query_pairs_mut()
            .append_pair("access_token", token)
            .append_pair("protocol", &PROTOCOL_VERSION.to_string())
            .append_pair("sdk", "rust")
            .append_pair("version", env!("CARGO_PKG_VERSION"))
            .append_pair("auto_subscribe", if options.auto_subscribe { "1" } else { "0" });

        let connect = async {
            let connector = options.tls.clone().map(tokio_tungstenite::Connector::Rustls);
            let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(rtc_url.as_str(), None, true, connector)
                .await
                .map_err(|e| connect_error(url, e))?;
            loop {
                let bytes = match ws.next().await {
                    Some(Ok(Message::Binary(bytes))) => bytes,
                    Some(Ok(Message::Close(_))) | None => return Err(LiveKitError::Closed),
                    Some(Err(e)) => return Err(connect_error(url, e)),
                    Some(Ok(_)) => continue,
                };
                match proto::SignalResponse::decode(bytes.as_ref())?.message {
                    Some(Resp::Join(join)) => return Ok((ws, join)),
                    Some(Resp::Leave(leave)) => {
                        return Err(LiveKitError::Protocol(format!(
                            "the server refused the join (leave reason {})",
                            leave.reason
                        )));
                    }
                    other => debug!(?other, "signal message before join; ignored"),
                }
            }
        };
        let (ws, join) = tokio::time::timeout(options.connect_timeout, connect).await.map_err(|_| {
            LiveKitError::Timeout { after: options.connect_timeout, what: "the LiveKit join response" }
        })??;

        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let ping_interval = Duration::from_secs(join.ping_interval.max(0) as u64);
        let ping_timeout = Duration::from_secs(join.ping_timeout.max(0) as u64);
        tokio::spawn(run(ws, commands_rx, events_tx, ping_interval, ping_timeout));
        debug!(
            room = join.room.as_ref().map(|r| r.name.as_str()).unwrap_or(""),
            identity = join.participant.as_ref().map(|p| p.identity.as_str()).unwrap_or(""),
            "joined LiveKit room"
        );
        Ok((SignalClient { join, commands_tx }, events_rx))
    }

    /// The server's `JoinResponse`.
    pub fn join_response(&self) -> &proto::JoinResponse {
        &self.join
    }

    /// Sends one request; fails once the connection is closed.
    pub fn send(&self, message: Req) -> Result<()> {
        self.commands_tx
            .send(Command::Send(Box::new(proto::SignalRequest { message: Some(message) })))
            .map_err(|_| LiveKitError::Closed)
    }

    /// A handle that sends requests without keeping the connection open.
    pub(crate) fn sender(&self) -> SignalSender {
        SignalSender { commands_tx: self.commands_tx.downgrade() }
    }

    /// Sends `LeaveRequest` and closes the connection.
    pub async fn leave(self) -> Result<()> {
        let (done_tx, done_rx) = oneshot::channel();
        self.commands_tx.send(Command::Leave(done_tx)).map_err(|_| LiveKitError::Closed)?;
        done_rx.await.map_err(|_| LiveKitError::Closed)
    }
}

/// Sends requests on a [`SignalClient`]'s connection while it is open; holding one does not
/// keep the connection open.
#[derive(Clone)]
pub(crate) struct SignalSender {
    commands_tx: mpsc::WeakUnboundedSender<Command>,
}

impl SignalSender {
    /// A sender whose connection is already closed.
    #[cfg(test)]
    pub(crate) fn closed() -> Self {
        let (commands_tx, _) = mpsc::unbounded_channel();
        Self { commands_tx: commands_tx.downgrade() }
    }

    pub(crate) fn send(&self, message: Req) -> Result<()> {
        let commands_tx = self.commands_tx.upgrade().ok_or(LiveKitError::Closed)?;
        commands_tx
            .send(Command::Send(Box::new(proto::SignalRequest { message: Some(message) })))
            .map_err(|_| LiveKitError::Closed)
    }
}

fn connect_error(url: &str, e: tungstenite::Error) -> LiveKitError {
    match e {
        tungstenite::Error::Http(response) if response.status() == 401 => {
            let message = response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "unauthorized".into());
            LiveKitError::Unauthorized { message }
        }
        e => LiveKitError::Connect { url: url.into(), reason: e.to_string() },
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn run(
    ws: Ws,
    mut commands_rx: mpsc::UnboundedReceiver<Command>,
    events_tx: mpsc::UnboundedSender<proto::SignalResponse>,
    ping_interval: Duration,
    ping_timeout: Duration,
) {
    let (mut sink, mut stream) = ws.split();
    // A zero interval means the server asked for no pings.
    let mut ticker =
        tokio::time::interval(if ping_interval.is_zero() { Duration::from_secs(3600) } else { ping_interval });
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut last_pong = Instant::now();
    let mut rtt = 0i64;
    loop {
        tokio::select! {
            command = commands_rx.recv() => match command {
                Some(Command::Send(request)) => {
                    if sink.send(Message::Binary(request.encode_to_vec().into())).await.is_err() {
                        break;
                    }
                }
                Some(Command::Leave(done)) => {
                    let leave = proto::SignalRequest {
                        message: Some(Req::Leave(proto::LeaveRequest {
                            can_reconnect: false,
                            reason: proto::DisconnectReason::ClientInitiated as i32,
                            action: proto::leave_request::Action::Disconnect as i32,
                            regions: None,
                        })),
                    };
                    let _ = sink.send(Message::Binary(leave.encode_to_vec().into())).await;
                    let _ = sink.close().await;
                    let _ = done.send(());
                    break;
                }
                None => {
                    let _ = sink.close().await;
                    break;
                }
            },
            _ = ticker.tick(), if !ping_interval.is_zero() => {
                if !ping_timeout.is_zero() && last_pong.elapsed() > ping_timeout {
                    warn!(?ping_timeout, "no pong from LiveKit within the ping timeout; closing");
                    break;
                }
                let ts = now_ms();
                let pings = [Req::Ping(ts), Req::PingReq(proto::Ping { timestamp: ts, rtt })];
                let mut failed = false;
                for ping in pings {
                    let request = proto::SignalRequest { message: Some(ping) };
                    failed |= sink.send(Message::Binary(request.encode_to_vec().into())).await.is_err();
                }
                if failed {
                    break;
                }
            }
            incoming = stream.next() => {
                let bytes = match incoming {
                    Some(Ok(Message::Binary(bytes))) => bytes,
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(e)) => {
                        debug!(error = %e, "LiveKit signalling connection failed");
                        break;
                    }
                    Some(Ok(_)) => continue,
                };
                let response = match proto::SignalResponse::decode(bytes.as_ref()) {
                    Ok(response) => response,
                    Err(e) => {
                        warn!(error = %e, "undecodable SignalResponse; ignored");
                        continue;
                    }
                };
                match &response.message {
                    Some(Resp::Pong(_)) => last_pong = Instant::now(),
                    Some(Resp::PongResp(pong)) => {
                        last_pong = Instant::now();
                        rtt = (now_ms() - pong.last_ping_timestamp).max(0);
                    }
                    _ => {}
                }
                let is_leave = matches!(response.message, Some(Resp::Leave(_)));
                let _ = events_tx.send(response);
                if is_leave {
                    let _ = sink.close().await;
                    break;
                }
            }
        }
    }
}

/// [`RoomTransport`] over [`SignalClient`]: signalling only, no media yet.
#[derive(Clone, Debug, Default)]
pub struct SignalTransport {
    pub options: SignalOptions,
}

#[async_trait]
impl RoomTransport for SignalTransport {
    async fn join(&self, url: &str, token: &str) -> Result<RoomSession> {
        let (client, events) = SignalClient::connect_with(url, token, self.options.clone()).await?;
        let join = client.join_response().clone();
        Ok(RoomSession::new(join, events, Box::new(client)))
    }
}

#[async_trait]
impl RoomControl for SignalClient {
    async fn leave(self: Box<Self>) -> Result<()> {
        SignalClient::leave(*self).await
    }
}
