//! Integration tests of the runtime: rooms through the embeddable API,
//! supervision with injected panics, watch streams, scoping, and the gRPC
//! server with real tonic clients.

mod chat;
mod common;
mod dead_database;
mod grpc;
mod knowledge;
mod livekit;
mod notify;
mod rooms;
mod sms;
mod speech;
mod supervision;
mod watch;
