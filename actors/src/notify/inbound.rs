//! Verifying webhooks that other systems send to huddle: Standard Webhooks
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature`) or a GitHub-style HMAC
//! header (`sha256=<hex>` / `sha512=<hex>`, header name configurable, with an
//! optional timestamp header checked against the tolerance). Comparisons are
//! constant-time.

use super::signing::{VerifyError, decode_secret, verify_hmac_header, verify_standard};

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

impl InboundSource {
    /// Checks a request; `header` looks a header up by lowercase name.
    pub fn verify<'a>(
        &self,
        header: impl Fn(&str) -> Option<&'a str>,
        body: &[u8],
        now_s: i64,
    ) -> Result<(), InboundError> {
        let need = |name: &str| header(name).ok_or_else(|| InboundError::MissingHeader(name.to_string()));
        match &self.scheme {
            InboundScheme::Standard => {
                let key = decode_secret(&self.secret).map_err(|_| InboundError::BadSecret)?;
                let (id, ts, sig) = (need("webhook-id")?, need("webhook-timestamp")?, need("webhook-signature")?);
                verify_standard(&[key], id, ts, sig, body, now_s, self.tolerance_s)?;
            }
            InboundScheme::Hmac { header: name, timestamp_header } => {
                if let Some(ts_name) = timestamp_header {
                    let ts: i64 = need(&ts_name.to_ascii_lowercase())?
                        .trim()
                        .parse()
                        .map_err(|_| InboundError::Verify(VerifyError::InvalidTimestamp))?;
                    if now_s.abs_diff(ts) > self.tolerance_s.max(0) as u64 {
                        return Err(InboundError::Verify(VerifyError::Timestamp));
                    }
                }
                let value = need(&name.to_ascii_lowercase())?;
                verify_hmac_header(self.secret.as_bytes(), value, body)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::notify::signing::{HmacAlgorithm, generate_secret, hmac_header, sign};

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
        assert_eq!(src.verify(lookup(&h), body, 1_100), Ok(()));
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
            let h = HashMap::from([
                ("x-webhook-signature", hmac_header(alg, b"s3cret", body)),
                ("x-webhook-timestamp", "500".to_string()),
            ]);
            assert_eq!(src.verify(lookup(&h), body, 520), Ok(()));
            assert!(src.verify(lookup(&h), body, 700).is_err(), "stale timestamp");
            assert!(src.verify(lookup(&h), b"other", 520).is_err(), "tampered body");
        }
        let h = HashMap::from([("x-webhook-signature", hmac_header(HmacAlgorithm::Sha256, b"wrong", body))]);
        assert!(src.verify(lookup(&h), body, 520).is_err());
    }
}
