//! LiveKit's webhooks: `LiveKit::verify_webhook(body, authorization)`, the check behind
//! `POST /webhooks/livekit` (a JWT signed with the API secret whose `sha256` claim is the
//! body's hash, then the body as a `WebhookEvent`).
//!
//! Input: the `Authorization` header's value on the first line, then the body. A first line
//! of exactly `SIGN` stands for a genuine token for this body, so that the fuzzer reaches
//! the JSON decoding of signed bodies; anything else is sent as the header.

#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use huddle_runtime::config::LiveKitConfig;
use huddle_runtime::livekit::LiveKit;
use libfuzzer_sys::fuzz_target;
use livekit_api::access_token::AccessToken;
use sha2::{Digest, Sha256};

const API_KEY: &str = "APIfuzz";
const API_SECRET: &str = "a-secret-of-enough-length-for-fuzzing";

fn livekit() -> &'static LiveKit {
    static LK: OnceLock<LiveKit> = OnceLock::new();
    LK.get_or_init(|| {
        LiveKit::from_config(&LiveKitConfig {
            url: Some("http://127.0.0.1:7880".into()),
            api_key: Some(API_KEY.into()),
            api_secret: Some(API_SECRET.into()),
            ..Default::default()
        })
        .expect("LiveKit is configured")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (auth, body) = text.split_once('\n').unwrap_or((text, ""));
    let signed;
    let auth = if auth == "SIGN" {
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body.as_bytes()));
        let token = AccessToken::with_api_key(API_KEY, API_SECRET).with_sha256(&hash).to_jwt().unwrap();
        signed = format!("Bearer {token}");
        signed.as_str()
    } else {
        auth
    };
    let _ = livekit().verify_webhook(body, auth);
});
