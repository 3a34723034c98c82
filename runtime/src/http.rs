//! The HTTP side of a node: `GET /healthz` (200 when the database answers,
//! 503 otherwise), `GET /metrics` (Prometheus text format) and
//! `POST /webhooks/twilio/status` (SMS delivery reports, signed by Twilio) and
//! `POST /webhooks/inbound/{name}` (webhooks from configured senders, verified)
//! and `POST /webhooks/livekit` (LiveKit's room events, verified).

use std::sync::OnceLock;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::routing::{get, post};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::Runtime;
use crate::error::ApiError;

/// The process-wide Prometheus recorder (installed on first use).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed by an embedding
        // application; then ours only renders what it was given.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

fn describe() {
    metrics::describe_counter!("huddle_room_restarts_total", "Room actors restarted after a failure");
    metrics::describe_counter!("huddle_supervisor_restarts_total", "Room supervisors restarted after a failure");
    metrics::describe_gauge!("huddle_rooms_live", "Room actors currently running");
    metrics::describe_counter!("huddle_grpc_requests_total", "gRPC requests by method and code");
    metrics::gauge!("huddle_up").set(1.0);
}

pub fn router(rt: Runtime, auth: std::sync::Arc<crate::auth::Authenticator>) -> Router {
    prometheus();
    let gate = std::sync::Arc::new(crate::chat::ChatGate::default());
    let chat = Router::new().route("/chat/ws", get(crate::chat::ws)).with_state((rt.clone(), auth, gate));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/webhooks/twilio/status", post(twilio_status))
        .route("/webhooks/inbound/{name}", post(inbound))
        .route("/webhooks/livekit", post(livekit_webhook))
        .with_state(rt)
        .merge(chat)
}

async fn healthz(State(rt): State<Runtime>) -> (StatusCode, String) {
    let probe = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        rt.store().list_entities(huddle_storage::PageRequest { size: 1, token: String::new() }),
    )
    .await;
    match probe {
        Ok(Ok(_)) if !rt.closing().is_cancelled() => (StatusCode::OK, "ok\n".into()),
        Ok(Ok(_)) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into()),
        Ok(Err(e)) => {
            // The error's text (hosts, user names) is for the log, not for whoever probes.
            tracing::warn!(error = %e, "health check: the database failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n".into())
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database did not answer within 2s\n".into()),
    }
}

async fn metrics_text() -> String {
    prometheus().render()
}

/// How long a status callback waits for its message's send to be recorded.
const EARLY_CALLBACK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Twilio's status callback: `MessageSid`, `MessageStatus` (and `ErrorCode`), form
/// encoded, signed with `X-Twilio-Signature` over the configured callback URL.
/// `delivered` makes the notification DELIVERED, `undelivered` and `failed` make it
/// FAILED; other statuses (queued, sent, ...) change nothing. An unknown sid is
/// waited for up to [`EARLY_CALLBACK_WAIT`], then answered 404.
async fn twilio_status(State(rt): State<Runtime>, headers: HeaderMap, body: axum::body::Bytes) -> (StatusCode, String) {
    use huddle_core::NotificationStatus;
    let Some(settings) = crate::notify::twilio_settings(rt.notify_config()) else {
        return (StatusCode::NOT_FOUND, "SMS is not configured on this node\n".into());
    };
    let Some(url) = settings.status_callback_url.as_deref() else {
        return (StatusCode::NOT_FOUND, "no status callback URL is configured\n".into());
    };
    let params: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let signature = headers.get("x-twilio-signature").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !huddle_actors::notify::sms::verify_twilio_signature(&settings.auth_token, url, &params, signature) {
        tracing::warn!("twilio status callback with a missing or wrong signature refused");
        return (StatusCode::UNAUTHORIZED, "bad X-Twilio-Signature\n".into());
    }
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let (Some(sid), Some(status)) = (get("MessageSid"), get("MessageStatus")) else {
        return (StatusCode::BAD_REQUEST, "MessageSid and MessageStatus are required\n".into());
    };
    let (new, error) = match status {
        "delivered" => (NotificationStatus::Delivered, None),
        "undelivered" | "failed" => (
            NotificationStatus::Failed,
            Some(format!("Twilio reports {status} (error code {})", get("ErrorCode").unwrap_or("none"))),
        ),
        _ => return (StatusCode::OK, "ignored\n".into()),
    };
    // Twilio can call back before this node has recorded the send that gave the
    // message its sid (outcomes are written in batches): wait for it a while.
    let deadline = tokio::time::Instant::now() + EARLY_CALLBACK_WAIT;
    let updated = loop {
        match rt.store().update_by_provider_id(sid, new, error.clone()).await {
            Err(huddle_storage::StorageError::NotFound { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            other => break other,
        }
    };
    match updated {
        Ok(n) => {
            tracing::info!(notification = %n.id, sid, status, "sms status updated");
            (StatusCode::OK, "ok\n".into())
        }
        Err(huddle_storage::StorageError::NotFound { .. }) => {
            (StatusCode::NOT_FOUND, format!("no notification has sid {sid}\n"))
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("database error: {e}\n")),
    }
}

/// A verified webhook from a configured sender, as embedders receive it from
/// [`Runtime::inbound_webhooks`].
#[derive(Debug, Clone)]
pub struct InboundWebhook {
    pub source: String,
    /// `webhook-id` when the sender set one.
    pub id: Option<String>,
    pub body: axum::body::Bytes,
    pub received_at_ms: i64,
}

/// Webhooks queued for the subscribers of [`Runtime::inbound_webhooks`] at most.
const INBOUND_QUEUE: usize = 256;

/// Replay keys remembered per inbound source at most (see
/// [`huddle_actors::notify::inbound::ReplayGuard`]).
const INBOUND_REPLAY_KEYS: usize = 100_000;

/// Where verified inbound webhooks go: to the subscribers, only while every one
/// of them will see it (so an accepted webhook is never dropped for a lagging
/// subscriber), and the replay keys of the accepted ones.
pub(crate) struct InboundHub {
    tx: std::sync::Mutex<tokio::sync::broadcast::Sender<InboundWebhook>>,
    replays: huddle_actors::notify::inbound::ReplayGuard,
}

impl Default for InboundHub {
    fn default() -> Self {
        InboundHub {
            tx: std::sync::Mutex::new(tokio::sync::broadcast::channel(INBOUND_QUEUE).0),
            replays: huddle_actors::notify::inbound::ReplayGuard::new(INBOUND_REPLAY_KEYS),
        }
    }
}

impl InboundHub {
    pub(crate) fn subscribe(&self) -> tokio::sync::broadcast::Receiver<InboundWebhook> {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).subscribe()
    }

    /// Queues `webhook` for the subscribers; an error says why nobody has it.
    fn hand_over(&self, webhook: InboundWebhook) -> Result<(), &'static str> {
        // under the lock: no other send fills the queue between the check and the send
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        if tx.receiver_count() == 0 {
            return Err("no consumer is subscribed to inbound webhooks on this node: retry later");
        }
        if tx.len() >= INBOUND_QUEUE {
            return Err("the consumer of inbound webhooks is behind: retry later");
        }
        tx.send(webhook).map(|_| ()).map_err(|_| "no consumer is subscribed to inbound webhooks: retry later")
    }
}

/// `POST /webhooks/inbound/{name}`: 202 once the webhook is verified and queued
/// for a subscriber of [`Runtime::inbound_webhooks`]; 401 (and a warning in the
/// log) when the signature does not verify; 409 for a request accepted before
/// (the same `webhook-id`, or the same timestamped HMAC signature, within the
/// tolerance); 503 when no subscriber takes it (the sender retries); 404 for an
/// unknown sender.
async fn inbound(
    State(rt): State<Runtime>,
    axum::extract::Path(name): axum::extract::Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, String) {
    use huddle_actors::notify::inbound::{InboundScheme, InboundSource, ReplayError};
    let Some(cfg) = rt.notify_config().inbound.iter().find(|i| i.name == name) else {
        return (StatusCode::NOT_FOUND, format!("no inbound webhook source `{name}`\n"));
    };
    let scheme = match cfg.scheme.as_str() {
        "standard" => InboundScheme::Standard,
        _ => InboundScheme::Hmac { header: cfg.header.clone(), timestamp_header: cfg.timestamp_header.clone() },
    };
    let source = InboundSource {
        name: cfg.name.clone(),
        scheme,
        secret: cfg.secret.clone(),
        tolerance_s: cfg.tolerance_secs as i64,
    };
    let now_s = huddle_core::now_ms() / 1000;
    let verified = match source.verify(|k| headers.get(k).and_then(|v| v.to_str().ok()), &body, now_s) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(source = %name, error = %e, "inbound webhook refused");
            metrics::counter!("huddle_inbound_webhooks_refused_total", "source" => name.clone()).increment(1);
            return (StatusCode::UNAUTHORIZED, format!("{e}\n"));
        }
    };
    let hub = rt.inbound_hub();
    if let Some(key) = &verified.replay_key
        && let Err(e) = hub.replays.remember(&name, key, verified.remember_until_s, now_s)
    {
        tracing::warn!(source = %name, error = %e, "inbound webhook refused");
        metrics::counter!("huddle_inbound_webhooks_refused_total", "source" => name.clone()).increment(1);
        let status = match e {
            ReplayError::Seen => StatusCode::CONFLICT,
            ReplayError::Full(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        return (status, format!("{e}\n"));
    }
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).map(str::to_string);
    let webhook = InboundWebhook { source: name.clone(), id, body, received_at_ms: huddle_core::now_ms() };
    if let Err(why) = hub.hand_over(webhook) {
        if let Some(key) = &verified.replay_key {
            hub.replays.forget(&name, key);
        }
        tracing::warn!(source = %name, "inbound webhook answered 503: {why}");
        metrics::counter!("huddle_inbound_webhooks_unavailable_total", "source" => name.clone()).increment(1);
        return (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n"));
    }
    metrics::counter!("huddle_inbound_webhooks_total", "source" => name).increment(1);
    (StatusCode::ACCEPTED, "accepted\n".into())
}

/// `POST /webhooks/livekit`: LiveKit's webhook, verified with the configured
/// API key pair (401 when the signature or body hash does not verify, 404 when
/// LiveKit is not configured) and applied to the bound room. A transient
/// failure answers 503 so that LiveKit retries; events for rooms huddle does
/// not know answer 200.
async fn livekit_webhook(
    State(rt): State<Runtime>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, String) {
    let Some(lk) = rt.livekit() else {
        return (StatusCode::NOT_FOUND, "LiveKit is not configured on this node\n".into());
    };
    let Ok(body) = std::str::from_utf8(&body) else {
        return (StatusCode::BAD_REQUEST, "the body is not UTF-8\n".into());
    };
    let auth = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    let event = match lk.verify_webhook(body, auth) {
        Ok(ev) => ev,
        Err(e) => {
            use livekit_api::webhooks::WebhookError;
            if let WebhookError::InvalidData(e) = &e {
                tracing::warn!(error = %e, "signed LiveKit webhook with a body that is not a WebhookEvent");
                return (StatusCode::BAD_REQUEST, format!("not a LiveKit webhook event: {e}\n"));
            }
            tracing::warn!(error = %e, "LiveKit webhook refused");
            metrics::counter!("huddle_livekit_webhooks_refused_total").increment(1);
            return (StatusCode::UNAUTHORIZED, format!("{e}\n"));
        }
    };
    let (kind, id) = (event.event.clone(), event.id.clone());
    match crate::livekit::apply_webhook(&rt, event).await {
        Ok(applied) => {
            metrics::counter!("huddle_livekit_webhooks_total", "event" => kind.clone()).increment(1);
            match applied {
                crate::livekit::Applied::Done(what) => {
                    tracing::info!(event = %kind, id = %id, "{what}");
                    (StatusCode::OK, format!("{what}\n"))
                }
                crate::livekit::Applied::Ignored(why) => {
                    tracing::debug!(event = %kind, id = %id, "LiveKit webhook ignored: {why}");
                    (StatusCode::OK, format!("ignored: {why}\n"))
                }
            }
        }
        Err(
            e @ (ApiError::Unavailable(_)
            | ApiError::Aborted(_)
            | ApiError::DeadlineExceeded(_)
            | ApiError::Internal(_)),
        ) => {
            tracing::warn!(event = %kind, id = %id, error = %e, "LiveKit webhook not applied yet: LiveKit will retry");
            (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n"))
        }
        Err(e) => {
            // Retrying would not help (a full room, an unknown participant, ...).
            tracing::warn!(event = %kind, id = %id, error = %e, "LiveKit webhook could not be applied");
            (StatusCode::OK, format!("not applied: {e}\n"))
        }
    }
}
