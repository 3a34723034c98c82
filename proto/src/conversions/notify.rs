//! Conversions for `huddle.v1.Notifications`.

use huddle_core::{Channel, DeliveryAttempt, Notification, NotificationStatus, Preference, WebhookEndpoint};

use super::{opt_ts, ts};
use crate::v1;

impl From<Channel> for v1::Channel {
    fn from(c: Channel) -> Self {
        match c {
            Channel::Webhook => v1::Channel::Webhook,
            Channel::Email => v1::Channel::Email,
            Channel::Sms => v1::Channel::Sms,
            Channel::Chat => v1::Channel::Chat,
        }
    }
}

/// The channel a proto enum value names; `None` for UNSPECIFIED or unknown values.
pub fn channel(raw: i32) -> Option<Channel> {
    match v1::Channel::try_from(raw).ok()? {
        v1::Channel::Unspecified => None,
        v1::Channel::Webhook => Some(Channel::Webhook),
        v1::Channel::Email => Some(Channel::Email),
        v1::Channel::Sms => Some(Channel::Sms),
        v1::Channel::Chat => Some(Channel::Chat),
    }
}

impl From<NotificationStatus> for v1::NotificationStatus {
    fn from(s: NotificationStatus) -> Self {
        match s {
            NotificationStatus::Pending => v1::NotificationStatus::Pending,
            NotificationStatus::Sending => v1::NotificationStatus::Sending,
            NotificationStatus::Delivered => v1::NotificationStatus::Delivered,
            NotificationStatus::Failed => v1::NotificationStatus::Failed,
            NotificationStatus::Dead => v1::NotificationStatus::Dead,
            NotificationStatus::Skipped => v1::NotificationStatus::Skipped,
            NotificationStatus::Cancelled => v1::NotificationStatus::Cancelled,
        }
    }
}

/// The status a proto enum value names; `None` for UNSPECIFIED or unknown values.
pub fn notification_status(raw: i32) -> Option<NotificationStatus> {
    match v1::NotificationStatus::try_from(raw).ok()? {
        v1::NotificationStatus::Unspecified => None,
        v1::NotificationStatus::Pending => Some(NotificationStatus::Pending),
        v1::NotificationStatus::Sending => Some(NotificationStatus::Sending),
        v1::NotificationStatus::Delivered => Some(NotificationStatus::Delivered),
        v1::NotificationStatus::Failed => Some(NotificationStatus::Failed),
        v1::NotificationStatus::Dead => Some(NotificationStatus::Dead),
        v1::NotificationStatus::Skipped => Some(NotificationStatus::Skipped),
        v1::NotificationStatus::Cancelled => Some(NotificationStatus::Cancelled),
    }
}

impl From<DeliveryAttempt> for v1::DeliveryAttempt {
    fn from(a: DeliveryAttempt) -> Self {
        v1::DeliveryAttempt {
            attempt: a.attempt,
            at: Some(ts(a.at_ms)),
            duration_ms: a.duration_ms,
            response_code: a.response_code.unwrap_or(0),
            error: a.error.unwrap_or_default(),
        }
    }
}

impl From<Notification> for v1::Notification {
    fn from(n: Notification) -> Self {
        v1::Notification {
            channel: v1::Channel::from(n.channel) as i32,
            status: v1::NotificationStatus::from(n.status) as i32,
            id: n.id,
            entity_id: n.entity_id,
            recipient: n.recipient,
            event_type: n.content.event_type,
            due_at: Some(ts(n.due_at_ms)),
            attempts: n.attempts.into_iter().map(Into::into).collect(),
            last_error: n.last_error.unwrap_or_default(),
            provider_id: n.provider_id.unwrap_or_default(),
            created_at: Some(ts(n.created_at_ms)),
            updated_at: Some(ts(n.updated_at_ms)),
            subject: n.content.subject.unwrap_or_default(),
            text: n.content.text.unwrap_or_default(),
            read_at: opt_ts(n.read_at_ms),
            data_json: if n.content.data.is_null() { String::new() } else { n.content.data.to_string() },
        }
    }
}

impl From<WebhookEndpoint> for v1::WebhookEndpoint {
    fn from(e: WebhookEndpoint) -> Self {
        v1::WebhookEndpoint {
            id: e.id,
            entity_id: e.entity_id,
            url: e.url,
            event_types: e.event_types,
            headers: e.headers.into_iter().collect(),
            secret: e.secret,
            disabled: e.disabled,
            disabled_reason: e.disabled_reason.unwrap_or_default(),
            previous_secret_expires_at: opt_ts(e.previous_secret_until_ms),
            created_at: Some(ts(e.created_at_ms)),
        }
    }
}

impl From<Preference> for v1::Preference {
    fn from(p: Preference) -> Self {
        v1::Preference {
            channel: v1::Channel::from(p.channel) as i32,
            entity_id: p.entity_id,
            recipient: p.recipient,
            opted_out: p.opted_out,
            updated_at: Some(ts(p.updated_at_ms)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_and_reject_unspecified() {
        for c in Channel::ALL {
            assert_eq!(channel(v1::Channel::from(c) as i32), Some(c));
        }
        for s in NotificationStatus::ALL {
            assert_eq!(notification_status(v1::NotificationStatus::from(s) as i32), Some(s));
        }
        assert_eq!(channel(0), None);
        assert_eq!(channel(99), None);
        assert_eq!(notification_status(0), None);
    }
}
