//! Notifications as the [`Api`] offers them: send (into the durable outbox),
//! inspect, cancel; webhook endpoints and their secrets; opt-out preferences. And
//! the outbox wiring: which channels this node delivers and how.

use std::sync::Arc;
use std::time::Duration;

use huddle_actors::notify::email::{EmailDeliverer, SmtpSettings, SmtpTls};
use huddle_actors::notify::gsm7::count_segments;
use huddle_actors::notify::signing::generate_secret;
use huddle_actors::notify::sms::{SmsDeliverer, TwilioSettings};
use huddle_actors::notify::webhook::{EndpointCache, RESERVED_HEADERS, WebhookConfig, WebhookDeliverer, check_url};
use huddle_actors::notify::{Deliver, schedule::RetrySchedule};
use huddle_actors::outbox::{OutboxArgs, OutboxMsg, OutboxStats, OutboxWaker, outbox};
use huddle_core::time::Millis;
use huddle_core::{
    Channel, NewNotification, Notification, NotificationContent, NotificationStatus, Preference, WebhookEndpoint,
    new_id, now_ms,
};
use huddle_storage::{DynStore, EnqueueRequest, Enqueued, NotificationFilter, Page, PageRequest};

mod rooms;
pub(crate) mod templates;

pub(crate) use rooms::RoomRouter;

use crate::api::check_id;
use crate::config::NotifyConfig;
use crate::{Api, ApiError};

type Result<T> = std::result::Result<T, ApiError>;

/// A send request: one notification per recipient.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SendRequest {
    pub entity_id: String,
    pub channel: Option<Channel>,
    /// Webhook endpoint ids (empty: every enabled endpoint of the entity that takes
    /// `event_type`), email addresses, E.164 phone numbers or chat channel names.
    pub recipients: Vec<String>,
    /// The webhook event type (required for webhooks), else a label.
    pub event_type: String,
    /// Render this template (email, SMS, chat) with `data` as its variables; parts
    /// given explicitly (subject, text, html) win.
    pub template: Option<String>,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    /// An iCalendar attachment for email.
    pub ics: Option<String>,
    pub data: serde_json::Value,
    /// Not before this time (unix ms); unset or past means now.
    pub scheduled_for_ms: Option<Millis>,
    /// A repeated key returns the first request's ids and sends nothing new.
    pub idempotency_key: Option<String>,
}

/// What a send request produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub ids: Vec<String>,
    /// The idempotency key had been seen: these are the first request's ids.
    pub duplicate: bool,
    /// Things the caller should know (an SMS that needs several segments).
    pub warnings: Vec<String>,
}

/// A new webhook endpoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewEndpoint {
    pub entity_id: String,
    pub url: String,
    pub event_types: Vec<String>,
    pub headers: Vec<(String, String)>,
}

/// Group commit for send requests: one task writes the outbox, and the requests
/// that arrive while a write is in flight go into the next transaction together
/// (one commit and one sync for all of them). On a batch error each request is
/// written alone, so one bad request cannot fail the others.
#[derive(Clone)]
pub(crate) struct Enqueuer {
    jobs_tx: tokio::sync::mpsc::Sender<EnqueueJob>,
}

struct EnqueueJob {
    request: EnqueueRequest,
    reply: tokio::sync::oneshot::Sender<std::result::Result<Enqueued, huddle_storage::StorageError>>,
}

/// Send requests per transaction at most.
const MAX_GROUP: usize = 64;

impl Enqueuer {
    pub(crate) fn start(store: DynStore) -> Enqueuer {
        let (jobs_tx, mut jobs_rx) = tokio::sync::mpsc::channel::<EnqueueJob>(4 * MAX_GROUP);
        tokio::spawn(async move {
            while let Some(first) = jobs_rx.recv().await {
                let mut jobs = vec![first];
                while jobs.len() < MAX_GROUP {
                    match jobs_rx.try_recv() {
                        Ok(j) => jobs.push(j),
                        Err(_) => break,
                    }
                }
                if jobs.len() > 1 {
                    let requests = jobs.iter().map(|j| j.request.clone()).collect();
                    if let Ok(done) = store.enqueue_notification_batch(requests).await {
                        for (job, enqueued) in jobs.into_iter().zip(done) {
                            let _ = job.reply.send(Ok(enqueued));
                        }
                        continue;
                    }
                }
                for job in jobs {
                    let r = job.request;
                    let result = store.enqueue_notifications(&r.entity_id, r.idempotency_key.as_deref(), r.items).await;
                    let _ = job.reply.send(result);
                }
            }
        });
        Enqueuer { jobs_tx }
    }

    async fn enqueue(&self, request: EnqueueRequest) -> Result<Enqueued> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let gone = || ApiError::Unavailable("the outbox writer stopped: the runtime is shutting down".into());
        self.jobs_tx.send(EnqueueJob { request, reply }).await.map_err(|_| gone())?;
        Ok(rx.await.map_err(|_| gone())??)
    }
}

/// The node name used in outbox claims when none is configured.
pub(crate) fn default_node_id() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "huddle-node".into())
}

/// The outbox actor's arguments for this node's configuration.
pub(crate) fn outbox_args(
    namespace: &str,
    store: &DynStore,
    config: &NotifyConfig,
    endpoints: EndpointCache,
    waker: OutboxWaker,
) -> Result<Option<OutboxArgs>> {
    if !config.enabled {
        return Ok(None);
    }
    let schedule: RetrySchedule =
        config.retry_schedule.parse().map_err(|e| ApiError::invalid("notify.retry_schedule", format!("{e}")))?;
    let timeout = Duration::from_millis(config.timeout_ms);
    let webhook = WebhookDeliverer::new(
        store.clone(),
        WebhookConfig { timeout, allow_private_targets: config.allow_private_targets, ..Default::default() },
        endpoints,
    )
    .map_err(ApiError::Internal)?;
    let mut deliverers: Vec<(Channel, Arc<dyn Deliver>)> = vec![(Channel::Webhook, Arc::new(webhook))];
    if let Some(settings) = twilio_settings(config) {
        let sms = SmsDeliverer::new(settings).map_err(ApiError::Internal)?;
        deliverers.push((Channel::Sms, Arc::new(sms)));
    }
    if let Some(settings) = smtp_settings(config)? {
        let email = EmailDeliverer::new(&settings).map_err(|e| ApiError::invalid("notify.smtp", e))?;
        deliverers.push((Channel::Email, Arc::new(email)));
    }
    Ok(Some(OutboxArgs {
        namespace: namespace.to_string(),
        store: store.clone(),
        node_id: config.node_id.clone().unwrap_or_else(default_node_id),
        schedule,
        deliverers,
        max_in_flight: config.max_in_flight,
        max_in_flight_per_endpoint: config.max_in_flight_per_endpoint,
        claim_batch: config.claim_batch,
        poll_interval: Duration::from_millis(config.poll_interval_ms),
        // A claim outlives the longest attempt with room to record it.
        lease: timeout * 2 + Duration::from_secs(10),
        waker,
        yield_to_requests: Duration::from_millis(config.yield_to_requests_ms),
    }))
}

/// The Twilio settings, when SMS is configured.
pub(crate) fn twilio_settings(config: &NotifyConfig) -> Option<TwilioSettings> {
    let t = &config.twilio;
    Some(TwilioSettings {
        account_sid: t.account_sid.clone().filter(|s| !s.is_empty())?,
        auth_token: t.auth_token.clone()?,
        from: t.from.clone()?,
        base_url: t.base_url.clone(),
        status_callback_url: t.status_callback_url.clone(),
        timeout: Duration::from_millis(config.timeout_ms),
    })
}

/// The SMTP settings, when email is configured.
pub(crate) fn smtp_settings(config: &NotifyConfig) -> Result<Option<SmtpSettings>> {
    let s = &config.smtp;
    let Some(host) = s.host.clone().filter(|h| !h.is_empty()) else { return Ok(None) };
    let tls = SmtpTls::parse(&s.tls).ok_or_else(|| ApiError::invalid("notify.smtp.tls", "none, starttls or tls"))?;
    Ok(Some(SmtpSettings {
        host,
        port: s.port,
        tls,
        username: s.username.clone(),
        password: s.password.clone(),
        from: s.from.clone(),
        timeout: Duration::from_millis(config.timeout_ms),
    }))
}

fn check_header(name: &str, value: &str) -> Result<()> {
    let lower = name.to_ascii_lowercase();
    if RESERVED_HEADERS.contains(&lower.as_str()) {
        return Err(ApiError::invalid("headers", format!("`{name}` is set by huddle itself")));
    }
    http::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| ApiError::invalid("headers", format!("`{name}` is not a valid header name")))?;
    http::HeaderValue::from_str(value)
        .map_err(|_| ApiError::invalid("headers", format!("the value of `{name}` is not a valid header value")))?;
    Ok(())
}

fn check_email(addr: &str) -> Result<()> {
    crate::api::validate::email("recipients", addr)
}

fn check_phone(number: &str) -> Result<()> {
    crate::api::validate::phone("recipients", number)
}

fn check_chat_channel(name: &str) -> Result<()> {
    let ok =
        !name.is_empty() && name.len() <= 200 && name.chars().all(|c| c.is_ascii_alphanumeric() || "/-_.:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "recipients",
            format!("`{name}` is not a chat channel (letters, digits and / - _ . : up to 200)"),
        ))
    }
}

fn check_text(field: &'static str, value: &Option<String>, max: usize) -> Result<()> {
    if let Some(v) = value
        && v.len() > max
    {
        return Err(ApiError::invalid(field, format!("must be at most {max} bytes (got {})", v.len())));
    }
    Ok(())
}

impl Api {
    fn notify_config(&self) -> &NotifyConfig {
        self.runtime().notify_config()
    }

    /// Accepts a send request into the outbox: one notification per recipient, all
    /// written in one transaction, then wakes the outbox.
    pub async fn send_notification(&self, req: SendRequest) -> Result<Sent> {
        self.visible_entity(&req.entity_id).await?;
        let config = self.notify_config();
        let channel = req.channel.ok_or_else(|| ApiError::invalid("channel", "is required"))?;
        if req.recipients.len() > config.max_recipients {
            return Err(ApiError::invalid(
                "recipients",
                format!("at most {} per request (got {})", config.max_recipients, req.recipients.len()),
            ));
        }
        if let Some(k) = &req.idempotency_key
            && (k.is_empty() || k.len() > 200)
        {
            return Err(ApiError::invalid("idempotency_key", "must be 1-200 characters"));
        }
        check_text("event_type", &Some(req.event_type.clone()), 200)?;
        check_text("subject", &req.subject, 1_000)?;
        check_text("text", &req.text, 256 * 1024)?;
        check_text("html", &req.html, 1024 * 1024)?;
        check_text("ics", &req.ics, 256 * 1024)?;
        let data_bytes = serde_json::to_vec(&req.data).map(|v| v.len()).unwrap_or(0);
        if data_bytes > config.max_data_bytes {
            return Err(ApiError::invalid(
                "data",
                format!("must be at most {} bytes of JSON (got {data_bytes})", config.max_data_bytes),
            ));
        }
        let now = now_ms();
        crate::api::validate::scheduled_for("scheduled_for", req.scheduled_for_ms, now)?;
        let due = req.scheduled_for_ms.map_or(now, |t| t.max(now));
        let mut req = req;
        if let Some(name) = req.template.clone() {
            if channel == Channel::Webhook {
                return Err(ApiError::invalid(
                    "template",
                    "templates apply to email, SMS and chat; webhooks send data",
                ));
            }
            let r =
                self.runtime().templates().render(&name, &req.data).map_err(|e| ApiError::invalid("template", e))?;
            if req.event_type.is_empty() {
                req.event_type = name;
            }
            if channel == Channel::Sms {
                req.text = req.text.or(r.sms).or(r.text);
            } else {
                req.subject = req.subject.or(r.subject);
                req.text = req.text.or(r.text);
                if channel == Channel::Email {
                    req.html = req.html.or(r.html);
                }
            }
        }
        let req = req;
        let content = NotificationContent {
            event_type: req.event_type.clone(),
            subject: req.subject.clone(),
            text: req.text.clone(),
            html: req.html.clone(),
            ics: req.ics.clone(),
            data: req.data.clone(),
        };
        let mut recipients: Vec<(String, NotificationStatus, Option<String>)> = Vec::new();
        let mut warnings = Vec::new();
        match channel {
            Channel::Webhook => {
                if req.event_type.trim().is_empty() {
                    return Err(ApiError::invalid("event_type", "is required for webhooks"));
                }
                if req.recipients.is_empty() {
                    let endpoints = self.runtime().store().list_endpoints(&req.entity_id).await?;
                    for ep in endpoints.into_iter().filter(|e| !e.disabled && e.accepts(&req.event_type)) {
                        recipients.push((ep.id, NotificationStatus::Pending, None));
                    }
                    if recipients.is_empty() {
                        return Err(ApiError::FailedPrecondition(format!(
                            "entity `{}` has no enabled webhook endpoint for `{}`: create one with CreateEndpoint",
                            req.entity_id, req.event_type
                        )));
                    }
                } else {
                    for id in &req.recipients {
                        check_id("recipients", id)?;
                        let ep = self.runtime().store().get_endpoint(id).await?;
                        if ep.entity_id != req.entity_id {
                            return Err(ApiError::NotFound { what: "webhook endpoint", id: id.clone() });
                        }
                        if ep.disabled {
                            return Err(ApiError::FailedPrecondition(format!(
                                "webhook endpoint `{id}` is disabled ({})",
                                ep.disabled_reason.as_deref().unwrap_or("by request")
                            )));
                        }
                        if ep.accepts(&req.event_type) {
                            recipients.push((ep.id, NotificationStatus::Pending, None));
                        } else {
                            let why = format!("endpoint `{id}` does not take `{}` events", req.event_type);
                            recipients.push((ep.id, NotificationStatus::Skipped, Some(why)));
                        }
                    }
                }
            }
            Channel::Email => {
                if config.smtp.host.as_deref().unwrap_or("").is_empty() {
                    return Err(ApiError::FailedPrecondition(
                        "email is not configured on this node: set notify.smtp.host (HUDDLE__NOTIFY__SMTP__HOST)"
                            .into(),
                    ));
                }
                if req.subject.as_deref().unwrap_or("").trim().is_empty() {
                    return Err(ApiError::invalid("subject", "is required for email"));
                }
                if req.text.is_none() && req.html.is_none() {
                    return Err(ApiError::invalid("text", "email needs a text or an html body"));
                }
                for r in &req.recipients {
                    check_email(r)?;
                    recipients.push((r.clone(), NotificationStatus::Pending, None));
                }
            }
            Channel::Sms => {
                if twilio_settings(config).is_none() {
                    return Err(ApiError::FailedPrecondition(
                        "SMS is not configured on this node: set notify.twilio.account_sid, auth_token and from \
                         (HUDDLE__NOTIFY__TWILIO__ACCOUNT_SID, ...)"
                            .into(),
                    ));
                }
                let text = req.text.as_deref().unwrap_or("");
                if text.is_empty() {
                    return Err(ApiError::invalid("text", "is required for SMS"));
                }
                let seg = count_segments(text);
                if seg.segments > 10 {
                    return Err(ApiError::invalid("text", format!("needs {} SMS segments; at most 10", seg.segments)));
                }
                if seg.segments > 1 {
                    let w = format!(
                        "the text needs {} SMS segments ({:?}, {} units, {} per segment): each is billed",
                        seg.segments, seg.encoding, seg.units, seg.per_segment
                    );
                    tracing::warn!(entity = %req.entity_id, segments = seg.segments, "multi-segment SMS");
                    warnings.push(w);
                }
                for r in &req.recipients {
                    check_phone(r)?;
                    recipients.push((r.clone(), NotificationStatus::Pending, None));
                }
            }
            Channel::Chat => {
                if req.scheduled_for_ms.is_some_and(|t| t > now) {
                    return Err(ApiError::invalid("scheduled_for", "chat messages are sent at once"));
                }
                if req.text.is_none() && req.data.is_null() {
                    return Err(ApiError::invalid("text", "a chat message needs text or data"));
                }
                for r in &req.recipients {
                    check_chat_channel(r)?;
                    recipients.push((r.clone(), NotificationStatus::Pending, None));
                }
            }
        }
        if recipients.is_empty() {
            return Err(ApiError::invalid("recipients", "at least one is required"));
        }
        let items = recipients
            .into_iter()
            .map(|(recipient, status, last_error)| NewNotification {
                id: new_id(),
                entity_id: req.entity_id.clone(),
                channel,
                recipient,
                content: content.clone(),
                due_at_ms: due,
                status,
                last_error,
            })
            .collect();
        let request = EnqueueRequest { entity_id: req.entity_id.clone(), idempotency_key: req.idempotency_key, items };
        // the write counts as one a request waits on from the moment it is queued for
        // the group commit (the outbox's bookkeeping yields to it on SQLite)
        let queued = self.runtime().store().foreground_write();
        let enqueued = self.runtime().enqueuer().enqueue(request).await?;
        drop(queued);
        if channel == Channel::Chat && !enqueued.duplicate {
            for r in &req.recipients {
                self.runtime().chat_hub().notify(r);
            }
        }
        if !enqueued.duplicate
            && channel != Channel::Chat
            && due <= now
            && let Some(outbox) = outbox(self.runtime().namespace())
        {
            self.runtime().outbox_waker().wake(&outbox);
        }
        Ok(Sent { ids: enqueued.ids, duplicate: enqueued.duplicate, warnings })
    }

    pub async fn get_notification(&self, id: &str) -> Result<Notification> {
        check_id("id", id)?;
        let n = self.runtime().store().get_notification(id).await?;
        if !self.scope().sees(&n.entity_id) {
            return Err(ApiError::NotFound { what: "notification", id: id.to_string() });
        }
        Ok(n)
    }

    /// Newest first. An entity key sees only its own entity's notifications.
    pub async fn list_notifications(
        &self,
        mut filter: NotificationFilter,
        page: PageRequest,
    ) -> Result<Page<Notification>> {
        match (self.scope(), &filter.entity_id) {
            (crate::Scope::Entity(own), None) => filter.entity_id = Some(own.clone()),
            (_, Some(e)) => {
                self.visible_entity(e).await?;
            }
            (crate::Scope::Admin, None) => {}
        }
        Ok(self.runtime().store().list_notifications(filter, page).await?)
    }

    pub async fn cancel_notification(&self, id: &str) -> Result<Notification> {
        self.get_notification(id).await?;
        Ok(self.runtime().store().cancel_notification(id).await?)
    }

    /// A new webhook endpoint with a generated `whsec_` secret.
    pub async fn create_endpoint(&self, new: NewEndpoint) -> Result<WebhookEndpoint> {
        self.visible_entity(&new.entity_id).await?;
        if new.url.len() > 2_000 {
            return Err(ApiError::invalid("url", "must be at most 2000 characters"));
        }
        check_url(&new.url, self.notify_config().allow_private_targets).map_err(|m| ApiError::invalid("url", m))?;
        if new.headers.len() > 20 {
            return Err(ApiError::invalid("headers", "at most 20"));
        }
        for (k, v) in &new.headers {
            check_header(k, v)?;
        }
        if new.event_types.len() > 100 || new.event_types.iter().any(|t| t.trim().is_empty() || t.len() > 200) {
            return Err(ApiError::invalid("event_types", "at most 100 non-empty types of up to 200 characters"));
        }
        let now = now_ms();
        let ep = WebhookEndpoint {
            id: new_id(),
            entity_id: new.entity_id,
            url: new.url,
            event_types: new.event_types,
            headers: new.headers,
            secret: generate_secret(),
            previous_secret: None,
            previous_secret_until_ms: None,
            disabled: false,
            disabled_reason: None,
            created_at_ms: now,
            updated_at_ms: now,
        };
        Ok(self.runtime().store().create_endpoint(ep).await?)
    }

    /// Without their secrets (empty): only creation and rotation hand those out.
    pub async fn list_endpoints(&self, entity_id: &str) -> Result<Vec<WebhookEndpoint>> {
        self.visible_entity(entity_id).await?;
        Ok(self.runtime().store().list_endpoints(entity_id).await?.into_iter().map(without_secrets).collect())
    }

    async fn visible_endpoint(&self, id: &str) -> Result<WebhookEndpoint> {
        check_id("id", id)?;
        let ep = self.runtime().store().get_endpoint(id).await?;
        if !self.scope().sees(&ep.entity_id) {
            return Err(ApiError::NotFound { what: "webhook endpoint", id: id.to_string() });
        }
        Ok(ep)
    }

    pub async fn disable_endpoint(&self, id: &str) -> Result<WebhookEndpoint> {
        self.visible_endpoint(id).await?;
        let ep = self.runtime().store().disable_endpoint(id, "disabled by request").await?;
        self.runtime().endpoint_cache().invalidate(id);
        Ok(without_secrets(ep))
    }

    /// A new secret; the old one keeps signing (both signatures are sent) for
    /// `notify.secret_overlap_ms`.
    pub async fn rotate_endpoint_secret(&self, id: &str) -> Result<WebhookEndpoint> {
        self.visible_endpoint(id).await?;
        let until = now_ms() + self.notify_config().secret_overlap_ms as i64;
        let ep = self.runtime().store().rotate_endpoint_secret(id, &generate_secret(), until).await?;
        self.runtime().endpoint_cache().invalidate(id);
        Ok(ep)
    }

    pub async fn set_preference(
        &self,
        entity_id: &str,
        recipient: &str,
        channel: Channel,
        opted_out: bool,
    ) -> Result<Preference> {
        self.visible_entity(entity_id).await?;
        if recipient.is_empty() || recipient.len() > 320 {
            return Err(ApiError::invalid("recipient", "must be 1-320 characters"));
        }
        let p = Preference {
            entity_id: entity_id.to_string(),
            recipient: recipient.to_string(),
            channel,
            opted_out,
            updated_at_ms: now_ms(),
        };
        Ok(self.runtime().store().set_preference(p).await?)
    }

    /// This node's outbox counters (None when this node does not deliver).
    pub async fn outbox_stats(&self) -> Option<OutboxStats> {
        let outbox = outbox(self.runtime().namespace())?;
        ractor::call_t!(outbox, OutboxMsg::Stats, 5_000).ok()
    }
}

/// An endpoint as shown after its creation: the signing secrets emptied.
fn without_secrets(mut ep: WebhookEndpoint) -> WebhookEndpoint {
    ep.secret.clear();
    ep.previous_secret = None;
    ep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_checked_per_channel() {
        assert!(check_email("ada@example.com").is_ok());
        for bad in ["ada", "@example.com", "ada@localhost", "a b@example.com", "ada@example.com>"] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
        assert!(check_phone("+4915112345678").is_ok());
        for bad in ["015112345678", "+0151", "+49 151 1234", "+12345678901234567"] {
            assert!(check_phone(bad).is_err(), "{bad}");
        }
        assert!(check_chat_channel("entity/e1/user/u1").is_ok());
        assert!(check_chat_channel("").is_err());
        assert!(check_chat_channel("a b").is_err());
        assert!(check_header("X-Team", "blue").is_ok());
        assert!(check_header("Webhook-Signature", "x").is_err());
        assert!(check_header("bad header", "x").is_err());
    }
}
