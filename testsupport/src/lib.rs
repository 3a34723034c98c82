//! Test support for huddle: doubles of peers that cannot run on this machine. Each double
//! follows its peer's published protocol and is named for what it is.
//!
//! # Layout
//! - [`livekit`]: [`livekit::LiveKitTestServer`], a test double of a LiveKit server's
//!   signalling (`/rtc`) and agent (`/agent`) endpoints; no media
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
