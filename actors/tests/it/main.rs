//! huddle-actors integration tests: one binary, one module per area.

mod common;
mod livekit;
