//! Integration tests of the `huddle` binary: each test runs the real
//! `huddle serve` as a child process on free ports with its own SQLite file,
//! and talks to it with the `huddle` CLI, a tonic client, raw HTTP, or
//! Python grpcio.
//!
//! # Layout
//! - `common`: fixtures (data directory, server process, CLI runs)
//! - `cli`: the client commands end to end
//! - `durability`: acknowledged writes survive `kill -9`
//! - `serve`: config layering, bad config, SIGTERM/SIGINT, `/healthz` and `/metrics`
//! - `foreign`: a Python grpcio client that knows huddle only through reflection
//! - `transcribe`: `huddle transcribe` on espeak-ng speech with the real tiny.en weights
//! - `webhooks`: deliveries checked by Python `standardwebhooks`; kill -9 mid-burst loses nothing

mod cli;
mod common;
mod demo;
mod durability;
mod foreign;
mod livekit;
mod serve;
mod transcribe;
mod webhooks;
