//! Test support for huddle: doubles of peers that cannot run on this machine (each follows
//! its peer's published protocol and is named for what it is), and committed speech fixtures.
//!
//! # Layout
//! - [`livekit`]: [`livekit::LiveKitTestServer`], a test double of a LiveKit server's
//!   signalling (`/rtc`) and agent (`/agent`) endpoints, with an Opus media peer
//! - [`speech`]: committed speech fixtures (espeak-ng sentences, sox-written files), so
//!   tests need neither tool; `fixtures/speech/make.sh` regenerates them
//! - [`eventually`] and [`within`]: polling helpers for tests (no fixed sleeps)
//!
//! # Example
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use huddle_testsupport::livekit::LiveKitTestServer;
//! let server = LiveKitTestServer::start("devkey", "secret-secret-secret-secret").await.unwrap();
//! assert!(server.url().starts_with("ws://127.0.0.1:"));
//! assert!(server.participants("standup").is_empty());
//! # });
//! ```

pub mod livekit;
pub mod speech;

use std::future::Future;
use std::time::Duration;

/// Polls `check` every 10 ms until it returns true or 10 s pass, then panics naming `what`.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Awaits `future` for at most 10 s, then panics naming `what`.
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for: {what}"))
}
