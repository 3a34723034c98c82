//! SMS through Twilio's Messages REST API: `POST
//! {base}/2010-04-01/Accounts/{AccountSid}/Messages.json` with HTTP basic auth
//! (account SID, auth token) and the form fields `To`, `From`, `Body` and, when a
//! public callback URL is configured, `StatusCallback`.
//!
//! A 201 means Twilio accepted the message: the notification is DELIVERED with
//! Twilio's message SID as its provider id, and a later status callback
//! (`undelivered`, `failed`) can still turn it FAILED. Twilio signs callbacks with
//! `X-Twilio-Signature`: base64 HMAC-SHA1, keyed with the auth token, of the full
//! callback URL followed by every POST parameter name and value sorted by name
//! ([`twilio_signature`]).

use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use huddle_core::Notification;
use subtle::ConstantTimeEq;

use super::{AttemptResult, Deliver, retry_after_header};

/// Where and as whom text messages are sent. `Debug` shows neither the account
/// SID nor the auth token.
#[derive(Clone)]
pub struct TwilioSettings {
    pub account_sid: String,
    pub auth_token: String,
    /// The sending number (E.164) or messaging service.
    pub from: String,
    /// `https://api.twilio.com`, or a compatible server.
    pub base_url: String,
    /// The public URL of this node's `POST /webhooks/twilio/status`, if Twilio
    /// should report delivery.
    pub status_callback_url: Option<String>,
    pub timeout: Duration,
}

impl std::fmt::Debug for TwilioSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use huddle_core::redact;
        f.debug_struct("TwilioSettings")
            .field("account_sid", &redact::REDACTED)
            .field("auth_token", &redact::REDACTED)
            .field("from", &self.from)
            .field("base_url", &redact::url(&self.base_url))
            .field("status_callback_url", &redact::optional_url(&self.status_callback_url))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Delivers SMS notifications (`recipient` is the E.164 number).
pub struct SmsDeliverer {
    settings: TwilioSettings,
    client: reqwest::Client,
}

impl SmsDeliverer {
    pub fn new(settings: TwilioSettings) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .user_agent(concat!("huddle-sms/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the SMS http client: {e}"))?;
        Ok(SmsDeliverer { settings, client })
    }

    fn messages_url(&self) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.settings.base_url.trim_end_matches('/'),
            self.settings.account_sid
        )
    }
}

#[async_trait::async_trait]
impl Deliver for SmsDeliverer {
    async fn deliver(&self, n: &Notification) -> AttemptResult {
        let body = n.content.text.clone().unwrap_or_default();
        let mut form = vec![("To", n.recipient.clone()), ("From", self.settings.from.clone()), ("Body", body)];
        if let Some(cb) = &self.settings.status_callback_url {
            form.push(("StatusCallback", cb.clone()));
        }
        let sent = self
            .client
            .post(self.messages_url())
            .basic_auth(&self.settings.account_sid, Some(&self.settings.auth_token))
            .form(&form)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return AttemptResult::retry(None, None, "Twilio did not answer in time"),
            // Without the URL: it carries the account SID.
            Err(e) => return AttemptResult::retry(None, None, format!("cannot reach Twilio: {}", e.without_url())),
        };
        let status = resp.status().as_u16();
        let retry_after = retry_after_header(resp.headers());
        let json: serde_json::Value = resp.json().await.unwrap_or_default();
        if (200..300).contains(&status) {
            let sid = json["sid"].as_str().map(str::to_string);
            if sid.is_none() {
                return AttemptResult::retry(Some(u32::from(status)), None, "Twilio's answer carried no message sid");
            }
            return AttemptResult::delivered(Some(u32::from(status)), sid);
        }
        // Twilio errors: {"code": 21211, "message": "The 'To' number ... is not a valid phone number."}
        let detail = match (json["code"].as_i64(), json["message"].as_str()) {
            (Some(code), Some(msg)) => format!("Twilio error {code}: {msg}"),
            (_, Some(msg)) => msg.to_string(),
            _ => String::new(),
        };
        // Twilio's words may name the account ("The requested resource
        // /2010-04-01/Accounts/AC.../Messages.json was not found"); `last_error` is
        // shown to the tenant.
        let detail = redact_account(&detail, &self.settings.account_sid);
        AttemptResult::from_http_status(status, retry_after, &detail)
    }
}

/// `text` with every occurrence of the account SID replaced by `<redacted>`.
fn redact_account(text: &str, account_sid: &str) -> String {
    if account_sid.is_empty() { text.to_string() } else { text.replace(account_sid, huddle_core::redact::REDACTED) }
}

/// Twilio's request signature: base64 of HMAC-SHA1(auth token, URL + every
/// parameter name and value, sorted by name).
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut data = url.to_string();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key length");
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks an `X-Twilio-Signature` header in constant time.
pub fn verify_twilio_signature(auth_token: &str, url: &str, params: &[(String, String)], header: &str) -> bool {
    let expected = twilio_signature(auth_token, url, params);
    expected.as_bytes().ct_eq(header.trim().as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_twilios_published_algorithm() {
        // computed independently with Python's hmac/hashlib over the same inputs
        let params = vec![
            ("MessageStatus".to_string(), "delivered".to_string()),
            ("MessageSid".to_string(), "SM123".to_string()),
            ("AccountSid".to_string(), "AC1".to_string()),
        ];
        let url = "https://example.com/webhooks/twilio/status";
        assert_eq!(twilio_signature("token123", url, &params), "Uy6cc2AW/1fexmOSD6Aikb34M6Q=");
        assert!(verify_twilio_signature("token123", url, &params, "Uy6cc2AW/1fexmOSD6Aikb34M6Q="));
        assert!(!verify_twilio_signature("token124", url, &params, "Uy6cc2AW/1fexmOSD6Aikb34M6Q="));
        assert!(!verify_twilio_signature(
            "token123",
            "https://example.com/other",
            &params,
            "Uy6cc2AW/1fexmOSD6Aikb34M6Q="
        ));
    }
}
