//! huddle's gRPC API, package `huddle.v1`: the generated prost messages and
//! tonic clients/servers, the encoded file descriptor set (for server
//! reflection), and conversions between proto messages and
//! [`huddle_core`] domain types.
//!
//! The .proto files live in `proto/proto/huddle/v1/` and are compiled by
//! `build.rs` with protox, so building needs no `protoc`.
//!
//! # Layout
//! - [`v1`]: generated code (`v1::rooms_client::RoomsClient`, `v1::entities_server::Entities`, ...)
//! - [`conversions`]: `From` impls between proto and domain types, timestamp helpers
//!
//! # Example
//! ```
//! use huddle_proto::v1;
//! let req = v1::GetRoomRequest { id: "r1".into() };
//! assert_eq!(req.id, "r1");
//! assert!(!huddle_proto::FILE_DESCRIPTOR_SET.is_empty());
//! ```

pub mod conversions;

/// Generated code for package `huddle.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("huddle.v1");
}

/// The encoded `FileDescriptorSet` of every huddle .proto file, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/huddle_descriptor.bin"));

/// The HTTP/2 paths (`/huddle.v1.Rooms/GetRoom`) of every method of every huddle
/// service, from [`FILE_DESCRIPTOR_SET`].
pub fn method_paths() -> Vec<String> {
    let fds: prost_types::FileDescriptorSet =
        prost::Message::decode(FILE_DESCRIPTOR_SET).expect("the descriptor set is built by build.rs");
    let mut paths = Vec::new();
    for file in fds.file {
        let package = file.package.unwrap_or_default();
        for service in file.service {
            let service_name = service.name.unwrap_or_default();
            for method in service.method {
                paths.push(format!("/{package}.{service_name}/{}", method.name.unwrap_or_default()));
            }
        }
    }
    paths
}

/// Fully qualified names of the services huddle serves.
pub const SERVICE_NAMES: &[&str] =
    &["huddle.v1.Entities", "huddle.v1.Rooms", "huddle.v1.Knowledge", "huddle.v1.Notifications"];
