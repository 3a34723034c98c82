//! Compiles proto/huddle/v1/*.proto with protox (pure Rust, no protoc needed)
//! and generates prost messages and tonic clients and servers. The encoded
//! descriptor set is kept for gRPC server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/huddle/v1/entities.proto",
        "proto/huddle/v1/rooms.proto",
        "proto/huddle/v1/knowledge.proto",
        "proto/huddle/v1/notifications.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("huddle_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;
    Ok(())
}
