//! Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`):
//! `InboundSource::verify`, `verify_standard` with two secrets (rotation) and
//! `decode_secret` on any request. What they accept must carry a genuine `v1` signature.
//!
//! Input: `name: value` header lines, a blank line, the body (see `huddle_fuzz::Request`).
//! The secret and the clock are the Standard Webhooks specification's example, so its
//! example request verifies.

#![no_main]

use huddle_actors::notify::inbound::{InboundScheme, InboundSource};
use huddle_actors::notify::signing::{decode_secret, sign, verify_standard};
use huddle_fuzz::Request;
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OLD_SECRET: &str = "whsec_c2VjcmV0LWJlZm9yZS1yb3RhdGlvbg==";
const NOW_S: i64 = 1_614_265_330;
const TOLERANCE_S: i64 = 300;

/// Whether one of the header's `v1` entries is the signature under one of `secrets`.
fn genuine(secrets: &[Vec<u8>], id: &str, ts: &str, header: &str, body: &[u8]) -> bool {
    let ts: i64 = ts.trim().parse().expect("verified with a timestamp that is not an integer");
    assert!(NOW_S.abs_diff(ts) <= TOLERANCE_S as u64, "accepted a stale timestamp {ts}");
    let entries: Vec<&str> = header.split_whitespace().collect();
    secrets.iter().any(|s| entries.contains(&sign(s, id, ts, body).as_str()))
}

fuzz_target!(|data: &[u8]| {
    let Some(req) = Request::parse(data) else { return };
    let key = decode_secret(SECRET).unwrap();
    let old = decode_secret(OLD_SECRET).unwrap();
    let src = InboundSource {
        name: "fuzz".into(),
        scheme: InboundScheme::Standard,
        secret: SECRET.into(),
        tolerance_s: TOLERANCE_S,
    };
    let headers = (req.header("webhook-id"), req.header("webhook-timestamp"), req.header("webhook-signature"));
    let verified = src.verify(|name| req.header(name), req.body, NOW_S).is_ok();
    if let (Some(id), Some(ts), Some(sig)) = headers {
        if verified {
            assert!(genuine(std::slice::from_ref(&key), id, ts, sig, req.body), "accepted a forged signature {sig:?}");
        }
        let secrets = [old, key];
        if verify_standard(&secrets, id, ts, sig, req.body, NOW_S, TOLERANCE_S).is_ok() {
            assert!(genuine(&secrets, id, ts, sig, req.body), "accepted a forged signature {sig:?}");
        }
    } else {
        assert!(!verified, "verified without all three headers");
    }
    for (_, value) in &req.headers {
        if let Ok(secret) = decode_secret(value) {
            assert!(!secret.is_empty());
        }
    }
});
