//! Delivering notifications: what the channel deliverers share, and the pure pieces
//! they are built from. The actors that drive them are [`crate::outbox`] (claims due
//! notifications and records outcomes) and [`crate::notifier`] (one per channel).
//!
//! # Layout
//! - [`email`]: SMTP (lettre), multipart text + HTML, iCalendar invitations
//! - [`webhook`]: HTTP POST signed as Standard Webhooks specify, with an SSRF guard
//! - [`sms`]: Twilio's Messages API, status-callback signatures
//! - [`inbound`]: verifying webhooks other systems send to huddle
//! - [`signing`]: Standard Webhooks and `sha256=`/`sha512=` HMAC signatures
//! - [`schedule`]: retry schedules, jitter, `Retry-After`
//! - [`gsm7`]: SMS segment counting
//! - [`ics`]: iCalendar invitations

use std::time::Duration;

use huddle_core::Notification;

pub mod email;
pub mod gsm7;
pub mod ics;
pub mod inbound;
pub mod schedule;
pub mod signing;
pub mod sms;
pub mod webhook;

/// What one delivery attempt concluded.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Delivered {
        provider_id: Option<String>,
    },
    /// Worth another attempt (5xx, 408, 429, a timeout, a refused connection); the
    /// receiver may have said when.
    Retry {
        after: Option<Duration>,
    },
    /// Refused for good (another 4xx, a bad address).
    Fail,
    /// The receiver is gone for good (410): fail, and disable the endpoint.
    Gone,
}

/// One attempt's result, as a deliverer reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptResult {
    pub verdict: Verdict,
    /// HTTP status or SMTP reply code, when the receiver answered.
    pub response_code: Option<u32>,
    pub error: Option<String>,
}

impl AttemptResult {
    pub fn delivered(code: Option<u32>, provider_id: Option<String>) -> Self {
        AttemptResult { verdict: Verdict::Delivered { provider_id }, response_code: code, error: None }
    }

    pub fn retry(code: Option<u32>, after: Option<Duration>, error: impl Into<String>) -> Self {
        AttemptResult { verdict: Verdict::Retry { after }, response_code: code, error: Some(error.into()) }
    }

    pub fn fail(code: Option<u32>, error: impl Into<String>) -> Self {
        AttemptResult { verdict: Verdict::Fail, response_code: code, error: Some(error.into()) }
    }

    /// The verdict for an HTTP response status: 2xx delivered, 410 gone, 408 and 429
    /// and 5xx retried, other statuses failed.
    pub fn from_http_status(status: u16, retry_after: Option<Duration>, body_excerpt: &str) -> Self {
        let code = Some(u32::from(status));
        match status {
            200..=299 => AttemptResult::delivered(code, None),
            410 => AttemptResult {
                verdict: Verdict::Gone,
                response_code: code,
                error: Some(http_error(status, body_excerpt)),
            },
            408 | 429 | 500..=599 => AttemptResult::retry(code, retry_after, http_error(status, body_excerpt)),
            _ => AttemptResult::fail(code, http_error(status, body_excerpt)),
        }
    }
}

fn http_error(status: u16, body: &str) -> String {
    let body: String = body.chars().take(200).collect();
    if body.trim().is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {}", body.trim()) }
}

/// The delay an HTTP response's `Retry-After` header asks for (seconds or an
/// HTTP date), if any.
pub fn retry_after_header(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    schedule::parse_retry_after(value, std::time::SystemTime::now())
}

/// A channel's way of delivering one notification. Implementations never panic on
/// bad input: every problem becomes an [`AttemptResult`].
#[async_trait::async_trait]
pub trait Deliver: Send + Sync + 'static {
    async fn deliver(&self, notification: &Notification) -> AttemptResult;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses_map_to_verdicts() {
        assert!(matches!(AttemptResult::from_http_status(204, None, "").verdict, Verdict::Delivered { .. }));
        assert_eq!(AttemptResult::from_http_status(410, None, "").verdict, Verdict::Gone);
        for s in [408, 429, 500, 503] {
            assert!(matches!(AttemptResult::from_http_status(s, None, "").verdict, Verdict::Retry { .. }), "{s}");
        }
        for s in [400, 401, 404, 413] {
            assert_eq!(AttemptResult::from_http_status(s, None, "").verdict, Verdict::Fail, "{s}");
        }
        let r = AttemptResult::from_http_status(500, Some(Duration::from_secs(3)), "  oops ");
        assert_eq!(r.error.as_deref(), Some("HTTP 500: oops"));
        assert_eq!(r.verdict, Verdict::Retry { after: Some(Duration::from_secs(3)) });
    }
}
