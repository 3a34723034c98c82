//! Webhook signing and verification.
//!
//! Implements the [Standard Webhooks](https://www.standardwebhooks.com)
//! scheme (`webhook-id`, `webhook-timestamp`, `webhook-signature` headers
//! carrying `v1,<base64 HMAC-SHA256>` entries, several entries during secret
//! rotation) and the simpler GitHub-style `sha256=<hex>` / `sha512=<hex>`
//! body HMAC headers. All comparisons of signatures are constant time.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;

/// Prefix of secrets in the Standard Webhooks textual form.
pub const SECRET_PREFIX: &str = "whsec_";

/// Version tag of the only signature scheme defined by Standard Webhooks.
const V1_PREFIX: &str = "v1,";

/// Errors raised while handling signing secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    /// The secret decodes to zero bytes.
    #[error("signing secret is empty; configure a secret such as one from generate_secret")]
    EmptySecret,
    /// The secret is not standard base64.
    #[error("signing secret is not valid base64; use the standard base64 alphabet, optionally prefixed with whsec_")]
    InvalidSecret,
}

/// Errors raised while verifying an incoming signed request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A required header is absent; carries the header name.
    #[error("missing {0} header; send it with the request")]
    MissingHeader(&'static str),
    /// The timestamp header is not an integer number of seconds.
    #[error("timestamp header is not an integer; send unix time in seconds")]
    InvalidTimestamp,
    /// The timestamp is too far from the current time.
    #[error("timestamp is outside the allowed tolerance; check the sender clock and resend")]
    Timestamp,
    /// No signature entry matched any configured secret.
    #[error("no signature matched; check the shared secret and that the body was not modified")]
    Signature,
    /// The HMAC header names an algorithm other than sha256 or sha512.
    #[error("unsupported signature algorithm; use a sha256= or sha512= prefix")]
    UnsupportedAlgorithm,
}

/// Hash function used by GitHub-style HMAC headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmacAlgorithm {
    /// `sha256=<hex>`.
    Sha256,
    /// `sha512=<hex>`.
    Sha512,
}

impl HmacAlgorithm {
    /// Header prefix including the `=` separator.
    pub fn prefix(self) -> &'static str {
        match self {
            HmacAlgorithm::Sha256 => "sha256=",
            HmacAlgorithm::Sha512 => "sha512=",
        }
    }

    fn mac(self, secret: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        match self {
            HmacAlgorithm::Sha256 => hmac_sha256(secret, parts).to_vec(),
            HmacAlgorithm::Sha512 => {
                let mut mac = <Hmac<Sha512> as Mac>::new_from_slice(secret).expect("hmac accepts keys of any length");
                for part in parts {
                    mac.update(part);
                }
                mac.finalize().into_bytes().to_vec()
            }
        }
    }
}

fn hmac_sha256(secret: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("hmac accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Generates a new random secret in the `whsec_<base64 of 24 bytes>` form.
pub fn generate_secret() -> String {
    let bytes: [u8; 24] = rand::random();
    format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

/// Decodes a secret, accepting it with or without the `whsec_` prefix.
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, SigningError> {
    let trimmed = secret.trim();
    let encoded = trimmed.strip_prefix(SECRET_PREFIX).unwrap_or(trimmed);
    let bytes = STANDARD.decode(encoded).map_err(|_| SigningError::InvalidSecret)?;
    if bytes.is_empty() {
        return Err(SigningError::EmptySecret);
    }
    Ok(bytes)
}

fn raw_signature(secret: &[u8], msg_id: &str, timestamp_s: i64, body: &[u8]) -> [u8; 32] {
    let ts = timestamp_s.to_string();
    hmac_sha256(secret, &[msg_id.as_bytes(), b".", ts.as_bytes(), b".", body])
}

/// Signs one message: `v1,<base64(HMAC-SHA256(secret, "{id}.{ts}.{body}"))>`.
pub fn sign(secret: &[u8], msg_id: &str, timestamp_s: i64, body: &[u8]) -> String {
    let raw = raw_signature(secret, msg_id, timestamp_s, body);
    format!("{V1_PREFIX}{}", STANDARD.encode(raw))
}

/// Builds a `webhook-signature` value with one entry per secret, separated
/// by single spaces, so receivers holding either the old or the new secret
/// accept the message during rotation.
pub fn signature_header(secrets: &[Vec<u8>], msg_id: &str, timestamp_s: i64, body: &[u8]) -> String {
    secrets.iter().map(|s| sign(s, msg_id, timestamp_s, body)).collect::<Vec<_>>().join(" ")
}

/// Verifies a Standard Webhooks request.
///
/// The timestamp must be within `tolerance_s` seconds of `now_s` (either
/// direction). The signature header may hold several space-separated
/// entries; entries with a version other than `v1` are ignored. The request
/// is accepted when any `v1` entry matches any of `secrets`.
pub fn verify_standard(
    secrets: &[Vec<u8>],
    msg_id: &str,
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now_s: i64,
    tolerance_s: i64,
) -> Result<(), VerifyError> {
    let ts: i64 = timestamp_header.trim().parse().map_err(|_| VerifyError::InvalidTimestamp)?;
    let tolerance = u64::try_from(tolerance_s).unwrap_or(0);
    if now_s.abs_diff(ts) > tolerance {
        return Err(VerifyError::Timestamp);
    }
    let candidates: Vec<Vec<u8>> = signature_header
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix(V1_PREFIX))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .collect();
    let mut matched = subtle::Choice::from(0u8);
    for secret in secrets {
        let expected = raw_signature(secret, msg_id, ts, body);
        for candidate in &candidates {
            matched |= expected.as_slice().ct_eq(candidate.as_slice());
        }
    }
    if bool::from(matched) { Ok(()) } else { Err(VerifyError::Signature) }
}

/// Produces a GitHub-style header value such as `sha256=<lowercase hex>`.
pub fn hmac_header(alg: HmacAlgorithm, secret: &[u8], body: &[u8]) -> String {
    format!("{}{}", alg.prefix(), hex::encode(alg.mac(secret, &[body])))
}

/// Produces a header value for a timestamped request: the HMAC covers
/// `{timestamp}.{body}`, so the timestamp cannot be replaced.
pub fn hmac_header_with_timestamp(alg: HmacAlgorithm, secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    format!("{}{}", alg.prefix(), hex::encode(alg.mac(secret, &[timestamp.as_bytes(), b".", body])))
}

/// Verifies a GitHub-style `sha256=<hex>` or `sha512=<hex>` header value.
///
/// The algorithm prefix and the hex digits are case-insensitive.
pub fn verify_hmac_header(secret: &[u8], header_value: &str, body: &[u8]) -> Result<(), VerifyError> {
    verify_hmac_parts(secret, header_value, &[body])
}

/// Verifies a header made by [`hmac_header_with_timestamp`]: the HMAC of
/// `{timestamp}.{body}`, with the timestamp exactly as its header carries it.
pub fn verify_hmac_header_with_timestamp(
    secret: &[u8],
    header_value: &str,
    timestamp: &str,
    body: &[u8],
) -> Result<(), VerifyError> {
    verify_hmac_parts(secret, header_value, &[timestamp.as_bytes(), b".", body])
}

fn verify_hmac_parts(secret: &[u8], header_value: &str, parts: &[&[u8]]) -> Result<(), VerifyError> {
    let value = header_value.trim();
    let (name, hex_sig) = value.split_once('=').ok_or(VerifyError::UnsupportedAlgorithm)?;
    let alg = if name.eq_ignore_ascii_case("sha256") {
        HmacAlgorithm::Sha256
    } else if name.eq_ignore_ascii_case("sha512") {
        HmacAlgorithm::Sha512
    } else {
        return Err(VerifyError::UnsupportedAlgorithm);
    };
    let given = hex::decode(hex_sig).map_err(|_| VerifyError::Signature)?;
    let expected = alg.mac(secret, parts);
    if bool::from(expected.as_slice().ct_eq(given.as_slice())) { Ok(()) } else { Err(VerifyError::Signature) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1_614_265_330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn spec_key() -> Vec<u8> {
        decode_secret(SPEC_SECRET).unwrap()
    }

    #[test]
    fn sign_matches_spec_example() {
        assert_eq!(sign(&spec_key(), SPEC_ID, SPEC_TS, SPEC_BODY), SPEC_SIG);
    }

    #[test]
    fn verify_accepts_spec_example() {
        let ts = SPEC_TS.to_string();
        verify_standard(&[spec_key()], SPEC_ID, &ts, SPEC_SIG, SPEC_BODY, SPEC_TS + 10, 300).unwrap();
    }

    #[test]
    fn decode_secret_with_and_without_prefix() {
        let with = decode_secret(SPEC_SECRET).unwrap();
        let without = decode_secret(SPEC_SECRET.strip_prefix("whsec_").unwrap()).unwrap();
        assert_eq!(with, without);
        assert_eq!(with.len(), 24);
        assert_eq!(decode_secret("whsec_"), Err(SigningError::EmptySecret));
        assert_eq!(decode_secret(""), Err(SigningError::EmptySecret));
        assert_eq!(decode_secret("whsec_not*base64"), Err(SigningError::InvalidSecret));
        // URL-safe alphabet is rejected.
        assert_eq!(decode_secret("ab-_"), Err(SigningError::InvalidSecret));
    }

    #[test]
    fn generated_secrets_decode_and_differ() {
        let a = generate_secret();
        let b = generate_secret();
        assert!(a.starts_with("whsec_"));
        assert_ne!(a, b);
        assert_eq!(decode_secret(&a).unwrap().len(), 24);
    }

    #[test]
    fn rotation_header_accepted_by_either_secret() {
        let old = b"old-secret".to_vec();
        let new = b"new-secret".to_vec();
        let header = signature_header(&[old.clone(), new.clone()], "id1", 100, b"hi");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], sign(&old, "id1", 100, b"hi"));
        assert_eq!(parts[1], sign(&new, "id1", 100, b"hi"));
        verify_standard(&[old], "id1", "100", &header, b"hi", 100, 5).unwrap();
        verify_standard(std::slice::from_ref(&new), "id1", "100", &header, b"hi", 100, 5).unwrap();
        // A receiver with a third secret rejects it.
        assert_eq!(
            verify_standard(&[b"other".to_vec()], "id1", "100", &header, b"hi", 100, 5),
            Err(VerifyError::Signature)
        );
        // A receiver holding both old-unknown and the new secret accepts a single entry.
        let single = sign(&new, "id1", 100, b"hi");
        verify_standard(&[b"x".to_vec(), new], "id1", "100", &single, b"hi", 100, 5).unwrap();
    }

    #[test]
    fn tolerance_window_is_enforced_both_ways() {
        let key = spec_key();
        let ts = SPEC_TS.to_string();
        let ok = |now| verify_standard(std::slice::from_ref(&key), SPEC_ID, &ts, SPEC_SIG, SPEC_BODY, now, 300);
        assert_eq!(ok(SPEC_TS + 300), Ok(()));
        assert_eq!(ok(SPEC_TS - 300), Ok(()));
        assert_eq!(ok(SPEC_TS + 301), Err(VerifyError::Timestamp));
        assert_eq!(ok(SPEC_TS - 301), Err(VerifyError::Timestamp));
        assert_eq!(ok(i64::MIN), Err(VerifyError::Timestamp));
    }

    #[test]
    fn bad_timestamp_is_reported() {
        let r = verify_standard(&[spec_key()], SPEC_ID, "12.5", SPEC_SIG, SPEC_BODY, SPEC_TS, 300);
        assert_eq!(r, Err(VerifyError::InvalidTimestamp));
        let r = verify_standard(&[spec_key()], SPEC_ID, "", SPEC_SIG, SPEC_BODY, SPEC_TS, 300);
        assert_eq!(r, Err(VerifyError::InvalidTimestamp));
    }

    #[test]
    fn tampering_is_rejected() {
        let key = spec_key();
        let ts = SPEC_TS.to_string();
        let check = |id: &str, ts: &str, body: &[u8]| {
            verify_standard(std::slice::from_ref(&key), id, ts, SPEC_SIG, body, SPEC_TS, 300)
        };
        assert_eq!(check(SPEC_ID, &ts, br#"{"test": 2432232315}"#), Err(VerifyError::Signature));
        assert_eq!(check("msg_other", &ts, SPEC_BODY), Err(VerifyError::Signature));
        let shifted = (SPEC_TS + 1).to_string();
        assert_eq!(check(SPEC_ID, &shifted, SPEC_BODY), Err(VerifyError::Signature));
    }

    #[test]
    fn unknown_versions_and_garbage_entries_are_ignored() {
        let key = spec_key();
        let ts = SPEC_TS.to_string();
        let sig_b64 = SPEC_SIG.strip_prefix("v1,").unwrap();
        let v2_only = format!("v2,{sig_b64} v1a,{sig_b64}");
        assert_eq!(
            verify_standard(std::slice::from_ref(&key), SPEC_ID, &ts, &v2_only, SPEC_BODY, SPEC_TS, 300),
            Err(VerifyError::Signature)
        );
        let mixed = format!("v2,{sig_b64} v1,%%%notbase64 {SPEC_SIG}");
        verify_standard(std::slice::from_ref(&key), SPEC_ID, &ts, &mixed, SPEC_BODY, SPEC_TS, 300).unwrap();
        assert_eq!(verify_standard(&[], SPEC_ID, &ts, SPEC_SIG, SPEC_BODY, SPEC_TS, 300), Err(VerifyError::Signature));
    }

    #[test]
    fn hmac_header_round_trip_sha256_and_sha512() {
        let secret = b"It's a Secret to Everybody";
        let body = b"Hello, World!";
        let h256 = hmac_header(HmacAlgorithm::Sha256, secret, body);
        let h512 = hmac_header(HmacAlgorithm::Sha512, secret, body);
        assert!(h256.starts_with("sha256="));
        assert_eq!(h256.len(), "sha256=".len() + 64);
        assert!(h512.starts_with("sha512="));
        assert_eq!(h512.len(), "sha512=".len() + 128);
        verify_hmac_header(secret, &h256, body).unwrap();
        verify_hmac_header(secret, &h512, body).unwrap();
        verify_hmac_header(secret, &h512.to_uppercase(), body).unwrap();
        assert_eq!(verify_hmac_header(secret, &h512, b"Hello, World?"), Err(VerifyError::Signature));
        assert_eq!(verify_hmac_header(b"wrong", &h256, body), Err(VerifyError::Signature));
        // A sha256 digest presented as sha512 does not match.
        let swapped = h256.replacen("sha256=", "sha512=", 1);
        assert_eq!(verify_hmac_header(secret, &swapped, body), Err(VerifyError::Signature));
    }

    #[test]
    fn timestamped_hmac_covers_the_timestamp() {
        let h = hmac_header_with_timestamp(HmacAlgorithm::Sha256, b"k", "1700000000", b"body");
        assert_eq!(h, hmac_header(HmacAlgorithm::Sha256, b"k", b"1700000000.body"));
        verify_hmac_header_with_timestamp(b"k", &h, "1700000000", b"body").unwrap();
        let moved = verify_hmac_header_with_timestamp(b"k", &h, "1700000001", b"body");
        assert_eq!(moved, Err(VerifyError::Signature), "another timestamp does not verify");
        let body_only = hmac_header(HmacAlgorithm::Sha512, b"k", b"body");
        let r = verify_hmac_header_with_timestamp(b"k", &body_only, "1700000000", b"body");
        assert_eq!(r, Err(VerifyError::Signature), "a body-only signature does not verify");
    }

    #[test]
    fn hmac_header_known_answer() {
        // Example from GitHub's webhook validation documentation.
        let h = hmac_header(HmacAlgorithm::Sha256, b"It's a Secret to Everybody", b"Hello, World!");
        assert_eq!(h, "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
    }

    #[test]
    fn hmac_header_rejects_unknown_or_malformed() {
        assert_eq!(verify_hmac_header(b"k", "md5=abcd", b""), Err(VerifyError::UnsupportedAlgorithm));
        assert_eq!(verify_hmac_header(b"k", "abcd", b""), Err(VerifyError::UnsupportedAlgorithm));
        assert_eq!(verify_hmac_header(b"k", "sha256=zz", b""), Err(VerifyError::Signature));
        assert_eq!(verify_hmac_header(b"k", "sha256=", b""), Err(VerifyError::Signature));
    }
}
