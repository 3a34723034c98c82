//! Verifying webhooks that other systems send to huddle: Standard Webhooks
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature`) or a GitHub-style HMAC
//! header (`sha256=<hex>` / `sha512=<hex>`, header name configurable, with an
//! optional timestamp header checked against the tolerance; with one, the HMAC
//! covers `{timestamp}.{body}`). Comparisons are constant-time.
//!
//! A verified request names what makes it unique ([`Verified::replay_key`]: the
//! `webhook-id`, or the signature of a timestamped HMAC request) and how long that
//! must be remembered; [`ReplayGuard`] refuses it a second time within that time.

use std::collections::HashMap;
use std::sync::Mutex;

use super::signing::{
    VerifyError, decode_secret, verify_hmac_header, verify_hmac_header_with_timestamp, verify_standard,
};

/// How an inbound source signs its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundScheme {
    /// Standard Webhooks; the secret is `whsec_` + base64.
    Standard,
    /// `sha256=<hex>` or `sha512=<hex>` in `header`; the secret is used as given.
    Hmac { header: String, timestamp_header: Option<String> },
}

/// One configured sender.
#[derive(Debug, Clone)]
pub struct InboundSource {
    pub name: String,
    pub scheme: InboundScheme,
    pub secret: String,
    /// Largest accepted difference between the sender's timestamp and now.
    pub tolerance_s: i64,
}

/// Why an inbound request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InboundError {
    #[error("missing header {0}")]
    MissingHeader(String),
    #[error("signature does not verify: {0}")]
    Verify(#[from] VerifyError),
    #[error("the source's secret is not valid base64 after `whsec_`")]
    BadSecret,
}

/// What a verified request is known by, for refusing it a second time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The `webhook-id` (Standard Webhooks) or the signature (HMAC with a
    /// timestamp header); none for an HMAC request without a timestamp, which
    /// nothing limits in time.
    pub replay_key: Option<String>,
    /// Until when (unix seconds) the request could verify again: the key must be
    /// remembered that long.
    pub remember_until_s: i64,
}

impl InboundSource {
    /// Checks a request; `header` looks a header up by lowercase name.
    pub fn verify<'a>(
        &self,
        header: impl Fn(&str) -> Option<&'a str>,
        body: &[u8],
        now_s: i64,
    ) -> Result<Verified, InboundError> {
        let need = |name: &str| header(name).ok_or_else(|| InboundError::MissingHeader(name.to_string()));
        let tolerance = self.tolerance_s.max(0);
        // a timestamp `ts` verifies until ts + tolerance; the key is kept at least
        // the tolerance from now as well (a sender's fresh retry of the same id)
        let until = |ts: i64| ts.max(now_s).saturating_add(tolerance);
        match &self.scheme {
            InboundScheme::Standard => {
                let key = decode_secret(&self.secret).map_err(|_| InboundError::BadSecret)?;
                let (id, ts, sig) = (need("webhook-id")?, need("webhook-timestamp")?, need("webhook-signature")?);
                verify_standard(&[key], id, ts, sig, body, now_s, self.tolerance_s)?;
                let ts: i64 = ts.trim().parse().map_err(|_| VerifyError::InvalidTimestamp)?;
                Ok(Verified { replay_key: Some(format!("id:{id}")), remember_until_s: until(ts) })
            }
            InboundScheme::Hmac { header: name, timestamp_header: None } => {
                verify_hmac_header(self.secret.as_bytes(), need(&name.to_ascii_lowercase())?, body)?;
                Ok(Verified { replay_key: None, remember_until_s: now_s })
            }
            InboundScheme::Hmac { header: name, timestamp_header: Some(ts_name) } => {
                let ts_text = need(&ts_name.to_ascii_lowercase())?.trim();
                let ts: i64 = ts_text.parse().map_err(|_| InboundError::Verify(VerifyError::InvalidTimestamp))?;
                if now_s.abs_diff(ts) > tolerance as u64 {
                    return Err(InboundError::Verify(VerifyError::Timestamp));
                }
                let value = need(&name.to_ascii_lowercase())?;
                verify_hmac_header_with_timestamp(self.secret.as_bytes(), value, ts_text, body)?;
                // hex digits verify in either case: one spelling of the signature
                let key = format!("sig:{}", value.trim().to_ascii_lowercase());
                Ok(Verified { replay_key: Some(key), remember_until_s: until(ts) })
            }
        }
    }
}

/// Why [`ReplayGuard::remember`] refused a request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReplayError {
    #[error(
        "this webhook was already accepted (same webhook-id or signature within the tolerance): not accepted again"
    )]
    Seen,
    #[error(
        "more than {0} webhooks from this source within the tolerance: retry later (or lower the source's tolerance_secs)"
    )]
    Full(usize),
}

/// The replay keys of recently accepted requests, per source, each until the
/// request could no longer verify. Held in memory by one node: nodes behind one
/// load balancer each keep their own, so a replay sent to another node is not
/// recognised (a shared store is future work).
pub struct ReplayGuard {
    seen: Mutex<HashMap<String, HashMap<String, i64>>>,
    max_per_source: usize,
}

impl ReplayGuard {
    /// Keys remembered per source at most; past that, requests are refused until
    /// older keys expire (never forgotten early: that would reopen the replay).
    pub fn new(max_per_source: usize) -> Self {
        ReplayGuard { seen: Mutex::new(HashMap::new()), max_per_source }
    }

    /// Records `key` of `source` until `until_s`; refuses a key already held.
    pub fn remember(&self, source: &str, key: &str, until_s: i64, now_s: i64) -> Result<(), ReplayError> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let keys = seen.entry(source.to_string()).or_default();
        if let Some(&until) = keys.get(key)
            && until >= now_s
        {
            return Err(ReplayError::Seen);
        }
        if keys.len() >= self.max_per_source {
            keys.retain(|_, until| *until >= now_s);
            if keys.len() >= self.max_per_source {
                return Err(ReplayError::Full(self.max_per_source));
            }
        }
        keys.insert(key.to_string(), until_s);
        Ok(())
    }

    /// Forgets a key whose request was not accepted after all (its sender retries).
    pub fn forget(&self, source: &str, key: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(keys) = seen.get_mut(source) {
            keys.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::notify::signing::{HmacAlgorithm, generate_secret, hmac_header, hmac_header_with_timestamp, sign};

    fn lookup<'a>(h: &'a HashMap<&str, String>) -> impl Fn(&str) -> Option<&'a str> + 'a {
        move |k| h.get(k).map(String::as_str)
    }

    #[test]
    fn standard_webhooks_verify_with_tolerance() {
        let secret = generate_secret();
        let src = InboundSource {
            name: "crm".into(),
            scheme: InboundScheme::Standard,
            secret: secret.clone(),
            tolerance_s: 300,
        };
        let body = br#"{"type":"deal.won"}"#;
        let sig = sign(&decode_secret(&secret).unwrap(), "msg_1", 1_000, body);
        let mut h = HashMap::from([
            ("webhook-id", "msg_1".to_string()),
            ("webhook-timestamp", "1000".into()),
            ("webhook-signature", sig),
        ]);
        let verified = src.verify(lookup(&h), body, 1_100).unwrap();
        assert_eq!(verified, Verified { replay_key: Some("id:msg_1".into()), remember_until_s: 1_400 });
        assert_eq!(src.verify(lookup(&h), body, 2_000), Err(InboundError::Verify(VerifyError::Timestamp)));
        assert_eq!(src.verify(lookup(&h), b"{}", 1_100), Err(InboundError::Verify(VerifyError::Signature)));
        h.remove("webhook-id");
        assert_eq!(src.verify(lookup(&h), body, 1_100), Err(InboundError::MissingHeader("webhook-id".into())));
    }

    #[test]
    fn hmac_headers_verify_with_optional_timestamp() {
        let scheme = InboundScheme::Hmac {
            header: "X-Webhook-Signature".into(),
            timestamp_header: Some("X-Webhook-Timestamp".into()),
        };
        let src = InboundSource { name: "gh".into(), scheme, secret: "s3cret".into(), tolerance_s: 60 };
        let body = b"payload";
        for alg in [HmacAlgorithm::Sha256, HmacAlgorithm::Sha512] {
            let sig = hmac_header_with_timestamp(alg, b"s3cret", "500", body);
            let h = HashMap::from([("x-webhook-signature", sig.clone()), ("x-webhook-timestamp", "500".to_string())]);
            let verified = src.verify(lookup(&h), body, 520).unwrap();
            assert_eq!(verified.replay_key, Some(format!("sig:{sig}")));
            assert_eq!(verified.remember_until_s, 580);
            assert!(src.verify(lookup(&h), body, 700).is_err(), "stale timestamp");
            assert!(src.verify(lookup(&h), b"other", 520).is_err(), "tampered body");
            // the body-only signature of old does not verify with a timestamp header
            let old = HashMap::from([
                ("x-webhook-signature", hmac_header(alg, b"s3cret", body)),
                ("x-webhook-timestamp", "520".to_string()),
            ]);
            let r = src.verify(lookup(&old), body, 520);
            assert_eq!(r, Err(InboundError::Verify(VerifyError::Signature)), "an unsigned timestamp");
        }
        let plain = InboundSource {
            scheme: InboundScheme::Hmac { header: "X-Webhook-Signature".into(), timestamp_header: None },
            ..src.clone()
        };
        let h = HashMap::from([("x-webhook-signature", hmac_header(HmacAlgorithm::Sha256, b"s3cret", body))]);
        assert_eq!(plain.verify(lookup(&h), body, 520).unwrap().replay_key, None);
        let h = HashMap::from([("x-webhook-signature", hmac_header(HmacAlgorithm::Sha256, b"wrong", body))]);
        assert!(src.verify(lookup(&h), body, 520).is_err());
    }

    #[test]
    fn replay_guard_refuses_a_key_until_it_expires() {
        let guard = ReplayGuard::new(2);
        assert_eq!(guard.remember("crm", "id:a", 100, 10), Ok(()));
        assert_eq!(guard.remember("crm", "id:a", 100, 50), Err(ReplayError::Seen));
        assert_eq!(guard.remember("other", "id:a", 100, 50), Ok(()), "keys are per source");
        assert_eq!(guard.remember("crm", "id:b", 60, 50), Ok(()));
        assert_eq!(guard.remember("crm", "id:c", 200, 50), Err(ReplayError::Full(2)), "never forgotten early");
        assert_eq!(guard.remember("crm", "id:c", 200, 70), Ok(()), "id:b expired at 60 and made room");
        assert_eq!(guard.remember("crm", "id:a", 300, 101), Ok(()), "id:a expired at 100");
        guard.forget("crm", "id:a");
        assert_eq!(guard.remember("crm", "id:a", 300, 102), Ok(()), "a forgotten key is accepted again");
    }
}
