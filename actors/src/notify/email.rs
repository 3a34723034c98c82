//! Email delivery over SMTP (lettre): multipart plain text + HTML, and an
//! iCalendar attachment (`text/calendar; method=...`) for meeting invitations.
//! The Message-ID is derived from the notification id, so a redelivery is the
//! same message to the receiving system.
//!
//! SMTP replies decide what happens next: 2xx delivered, 5xx (permanent) failed,
//! 4xx (transient), timeouts and connection errors retried.

use std::time::Duration;

use huddle_core::Notification;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{AttemptResult, Deliver};

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text (a local relay or a test server).
    None,
    /// STARTTLS, required (usually port 587).
    StartTls,
    /// TLS from the first byte (usually port 465).
    Tls,
}

impl SmtpTls {
    pub fn parse(s: &str) -> Option<SmtpTls> {
        match s {
            "none" => Some(SmtpTls::None),
            "starttls" => Some(SmtpTls::StartTls),
            "tls" => Some(SmtpTls::Tls),
            _ => None,
        }
    }
}

/// Where and how mail is sent. `Debug` does not show the password.
#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The From address, optionally with a name: `huddle <noreply@example.com>`.
    pub from: String,
    pub timeout: Duration,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &huddle_core::redact::secret(&self.password))
            .field("from", &self.from)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Delivers email notifications (`recipient` is the address).
/// Connections to the SMTP server are pooled and reused (build it inside a tokio
/// runtime).
pub struct EmailDeliverer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl EmailDeliverer {
    pub fn new(s: &SmtpSettings) -> Result<Self, String> {
        let from: Mailbox = s.from.parse().map_err(|e| format!("invalid notify.smtp.from `{}`: {e}", s.from))?;
        let tls_params =
            || TlsParameters::new(s.host.clone()).map_err(|e| format!("cannot set up TLS for {}: {e}", s.host));
        let tls = match s.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::StartTls => Tls::Required(tls_params()?),
            SmtpTls::Tls => Tls::Wrapper(tls_params()?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host)
            .port(s.port)
            .tls(tls)
            .timeout(Some(s.timeout));
        if let Some(user) = &s.username {
            builder = builder.credentials(Credentials::new(user.clone(), s.password.clone().unwrap_or_default()));
        }
        Ok(EmailDeliverer { transport: builder.build(), from })
    }

    /// The MIME message for a notification.
    pub fn message(&self, n: &Notification) -> Result<Message, String> {
        let to: Mailbox = n.recipient.parse().map_err(|e| format!("invalid recipient `{}`: {e}", n.recipient))?;
        let c = &n.content;
        let builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(c.subject.clone().unwrap_or_default())
            .message_id(Some(format!("<{}@huddle.notifications>", n.id)));
        let body = match (&c.text, &c.html) {
            (Some(text), Some(html)) => MultiPart::alternative_plain_html(text.clone(), html.clone()),
            (None, Some(html)) => MultiPart::alternative().singlepart(SinglePart::html(html.clone())),
            (text, None) => MultiPart::alternative().singlepart(SinglePart::plain(text.clone().unwrap_or_default())),
        };
        let message = match &c.ics {
            Some(ics) => {
                let method = if ics.contains("METHOD:CANCEL") { "CANCEL" } else { "REQUEST" };
                let kind = ContentType::parse(&format!("text/calendar; method={method}; charset=UTF-8"))
                    .map_err(|e| format!("bad calendar content type: {e}"))?;
                let invite = Attachment::new("invite.ics".into()).body(ics.clone(), kind);
                builder.multipart(MultiPart::mixed().multipart(body).singlepart(invite))
            }
            None => builder.multipart(body),
        };
        message.map_err(|e| format!("cannot build the message: {e}"))
    }
}

fn code_of(code: lettre::transport::smtp::response::Code) -> Option<u32> {
    code.to_string().parse().ok()
}

#[async_trait::async_trait]
impl Deliver for EmailDeliverer {
    async fn deliver(&self, n: &Notification) -> AttemptResult {
        let message = match self.message(n) {
            Ok(m) => m,
            Err(e) => return AttemptResult::fail(None, e),
        };
        match self.transport.send(message).await {
            Ok(response) => AttemptResult::delivered(code_of(response.code()), None),
            Err(e) => {
                let code = e.status().and_then(code_of);
                if e.is_permanent() {
                    AttemptResult::fail(code, format!("SMTP refused the message: {e}"))
                } else {
                    AttemptResult::retry(code, None, format!("SMTP: {e}"))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use huddle_core::{Channel, NotificationContent, NotificationStatus};

    use super::*;

    fn deliverer() -> EmailDeliverer {
        EmailDeliverer::new(&SmtpSettings {
            host: "127.0.0.1".into(),
            port: 2525,
            tls: SmtpTls::None,
            username: None,
            password: None,
            from: "huddle <noreply@example.com>".into(),
            timeout: Duration::from_secs(5),
        })
        .unwrap()
    }

    fn notification(content: NotificationContent) -> Notification {
        Notification {
            id: "n1".into(),
            entity_id: "e".into(),
            channel: Channel::Email,
            recipient: "ada@example.com".into(),
            content,
            status: NotificationStatus::Sending,
            due_at_ms: 0,
            attempt_count: 0,
            attempts: vec![],
            last_error: None,
            provider_id: None,
            read_at_ms: None,
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    // the transport keeps a connection pool, which needs a tokio runtime
    #[tokio::test]
    async fn messages_are_multipart_with_the_invitation_attached() {
        let d = deliverer();
        let n = notification(NotificationContent {
            subject: Some("Standup".into()),
            text: Some("plain words".into()),
            html: Some("<p>html words</p>".into()),
            ics: Some("BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n".into()),
            ..Default::default()
        });
        let raw = String::from_utf8(d.message(&n).unwrap().formatted()).unwrap();
        assert!(raw.contains("Message-ID: <n1@huddle.notifications>"), "{raw}");
        assert!(raw.contains("multipart/mixed"));
        assert!(raw.contains("multipart/alternative"));
        assert!(raw.contains("text/calendar; method=REQUEST"));
        assert!(raw.contains("invite.ics"));
        assert!(raw.contains("plain words") && raw.contains("html words"));
        let bad = notification(NotificationContent { subject: Some("x".into()), ..Default::default() });
        let bad = Notification { recipient: "not an address".into(), ..bad };
        assert!(d.message(&bad).unwrap_err().contains("invalid recipient"));
        assert!(SmtpTls::parse("starttls").is_some() && SmtpTls::parse("ssl").is_none());
    }
}
