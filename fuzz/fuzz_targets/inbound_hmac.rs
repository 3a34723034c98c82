//! Inbound webhooks signed with a GitHub-style HMAC header (`sha256=<hex>` /
//! `sha512=<hex>`), with and without a timestamp header: `InboundSource::verify` and
//! `verify_hmac_header` on any request. What they accept must be the body's HMAC.
//!
//! Input: `name: value` header lines, a blank line, the body (see `huddle_fuzz::Request`).

#![no_main]

use huddle_actors::notify::inbound::{InboundScheme, InboundSource};
use huddle_actors::notify::signing::{HmacAlgorithm, hmac_header, verify_hmac_header};
use huddle_fuzz::Request;
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "s3cret";
const NOW_S: i64 = 1_700_000_000;

fn source(header: &str, timestamp_header: Option<&str>) -> InboundSource {
    InboundSource {
        name: "fuzz".into(),
        scheme: InboundScheme::Hmac { header: header.into(), timestamp_header: timestamp_header.map(Into::into) },
        secret: SECRET.into(),
        tolerance_s: 300,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(req) = Request::parse(data) else { return };
    for (header, timestamp) in [("X-Hub-Signature-256", None), ("X-Signature", Some("X-Timestamp"))] {
        if source(header, timestamp).verify(|name| req.header(name), req.body, NOW_S).is_err() {
            continue;
        }
        let value = req.header(&header.to_ascii_lowercase()).expect("verified without its header").trim();
        let genuine = [HmacAlgorithm::Sha256, HmacAlgorithm::Sha512]
            .into_iter()
            .any(|alg| hmac_header(alg, SECRET.as_bytes(), req.body).eq_ignore_ascii_case(value));
        assert!(genuine, "accepted {value:?}, which is not the body's HMAC");
        if let Some(ts) = timestamp {
            let ts: i64 = req.header(&ts.to_ascii_lowercase()).unwrap().trim().parse().unwrap();
            assert!(NOW_S.abs_diff(ts) <= 300, "accepted a stale timestamp {ts}");
        }
    }
    for (_, value) in &req.headers {
        let _ = verify_hmac_header(SECRET.as_bytes(), value, req.body);
    }
});
