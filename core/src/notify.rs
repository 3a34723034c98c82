//! Notifications: messages to people and systems outside a room (webhooks, email,
//! SMS, chat), accepted into a durable outbox and delivered at least once, and the
//! webhook endpoints and opt-out preferences they are sent by.

use serde::{Deserialize, Serialize};

use crate::time::Millis;

/// How a notification travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Channel {
    /// An HTTP POST to a webhook endpoint, signed as Standard Webhooks specify.
    Webhook,
    /// Mail over SMTP.
    Email,
    /// A text message through Twilio's Messages API.
    Sms,
    /// A message to the WebSocket subscribers of a chat channel.
    Chat,
}

impl Channel {
    pub const ALL: [Channel; 4] = [Channel::Webhook, Channel::Email, Channel::Sms, Channel::Chat];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Webhook => "webhook",
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Chat => "chat",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a notification is. `Pending` and `Sending` are the only states that change
/// by themselves; the others are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NotificationStatus {
    /// Waiting for its next attempt (the first one, or a retry).
    Pending,
    /// Claimed by a node that is delivering it.
    Sending,
    Delivered,
    /// Refused for good by the receiver (a 4xx other than 408 and 429).
    Failed,
    /// Every attempt of the retry schedule failed.
    Dead,
    /// Not sent: the recipient opted out, or the endpoint does not take this type.
    Skipped,
    /// Cancelled before it was sent.
    Cancelled,
}

impl NotificationStatus {
    pub const ALL: [NotificationStatus; 7] = [
        NotificationStatus::Pending,
        NotificationStatus::Sending,
        NotificationStatus::Delivered,
        NotificationStatus::Failed,
        NotificationStatus::Dead,
        NotificationStatus::Skipped,
        NotificationStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotificationStatus::Pending => "PENDING",
            NotificationStatus::Sending => "SENDING",
            NotificationStatus::Delivered => "DELIVERED",
            NotificationStatus::Failed => "FAILED",
            NotificationStatus::Dead => "DEAD",
            NotificationStatus::Skipped => "SKIPPED",
            NotificationStatus::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(s: &str) -> Option<NotificationStatus> {
        NotificationStatus::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether nothing more will happen to the notification.
    pub fn is_final(self) -> bool {
        !matches!(self, NotificationStatus::Pending | NotificationStatus::Sending)
    }
}

impl std::fmt::Display for NotificationStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a notification carries, already rendered: a delivery never fails on a
/// template.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NotificationContent {
    /// The event type (webhooks: the body's `type`) or the template's name.
    pub event_type: String,
    /// Email subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Email plain-text body, SMS text, chat text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Email HTML body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// An iCalendar attachment (a meeting invitation or cancellation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ics: Option<String>,
    /// Structured data: a webhook's `data`, a chat message's payload.
    #[serde(default)]
    pub data: serde_json::Value,
}

/// A notification to enqueue: one recipient of a send request.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    pub id: String,
    pub entity_id: String,
    pub channel: Channel,
    /// A webhook endpoint id, an email address, a phone number (E.164) or a chat
    /// channel name.
    pub recipient: String,
    pub content: NotificationContent,
    /// The first attempt is due then (now, or a scheduled time).
    pub due_at_ms: Millis,
    /// `Pending`, or `Skipped` with a reason in `last_error`.
    pub status: NotificationStatus,
    pub last_error: Option<String>,
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    /// 1 for the first attempt.
    pub attempt: u32,
    pub at_ms: Millis,
    pub duration_ms: u64,
    /// The receiver's answer: an HTTP status, or an SMTP reply code.
    pub response_code: Option<u32>,
    pub error: Option<String>,
}

/// A notification and its delivery history.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub id: String,
    pub entity_id: String,
    pub channel: Channel,
    pub recipient: String,
    pub content: NotificationContent,
    pub status: NotificationStatus,
    /// When the next attempt is due (pending), or when the claim on it lapses (sending).
    pub due_at_ms: Millis,
    /// Attempts made so far (`attempts` is empty on freshly claimed notifications).
    pub attempt_count: u32,
    pub attempts: Vec<DeliveryAttempt>,
    pub last_error: Option<String>,
    /// The provider's id for the message (a Twilio message SID).
    pub provider_id: Option<String>,
    /// When the recipient reported reading it (chat read receipts).
    pub read_at_ms: Option<Millis>,
    pub created_at_ms: Millis,
    pub updated_at_ms: Millis,
}

/// A webhook endpoint of an entity.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEndpoint {
    pub id: String,
    pub entity_id: String,
    pub url: String,
    /// Event types it takes; empty means every type.
    pub event_types: Vec<String>,
    /// Extra headers sent with every delivery.
    pub headers: Vec<(String, String)>,
    /// `whsec_` + base64 of the signing key.
    pub secret: String,
    /// The secret before the last rotation; it signs too until `previous_secret_until_ms`.
    pub previous_secret: Option<String>,
    pub previous_secret_until_ms: Option<Millis>,
    pub disabled: bool,
    pub disabled_reason: Option<String>,
    pub created_at_ms: Millis,
    pub updated_at_ms: Millis,
}

impl WebhookEndpoint {
    /// Whether this endpoint takes events of `event_type`.
    pub fn accepts(&self, event_type: &str) -> bool {
        self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type)
    }

    /// The secrets that sign a delivery at `now_ms`: the current one, and the
    /// previous one during its overlap window.
    pub fn signing_secrets(&self, now_ms: Millis) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let (Some(prev), Some(until)) = (&self.previous_secret, self.previous_secret_until_ms)
            && now_ms < until
        {
            secrets.push(prev.as_str());
        }
        secrets
    }
}

/// Whether a recipient takes notifications on a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preference {
    pub entity_id: String,
    pub recipient: String,
    pub channel: Channel,
    pub opted_out: bool,
    pub updated_at_ms: Millis,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Channel::ALL {
            assert_eq!(Channel::parse(c.as_str()), Some(c));
        }
        for s in NotificationStatus::ALL {
            assert_eq!(NotificationStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(Channel::parse("fax"), None);
        assert!(NotificationStatus::Dead.is_final());
        assert!(!NotificationStatus::Sending.is_final());
    }

    #[test]
    fn previous_secret_signs_only_inside_its_window() {
        let ep = WebhookEndpoint {
            id: "e".into(),
            entity_id: "x".into(),
            url: "https://example.com".into(),
            event_types: vec!["room.ended".into()],
            headers: vec![],
            secret: "new".into(),
            previous_secret: Some("old".into()),
            previous_secret_until_ms: Some(100),
            disabled: false,
            disabled_reason: None,
            created_at_ms: 0,
            updated_at_ms: 0,
        };
        assert_eq!(ep.signing_secrets(99), vec!["new", "old"]);
        assert_eq!(ep.signing_secrets(100), vec!["new"]);
        assert!(ep.accepts("room.ended"));
        assert!(!ep.accepts("room.started"));
    }
}
