//! The `shardgate.v1` gRPC API, generated at build time from `proto/`.
//!
//! Everything here is generated; edit the `.proto` file, not this crate.

#![allow(clippy::all, missing_docs)]

pub mod v1 {
    tonic::include_proto!("shardgate.v1");
}

/// Encoded `FileDescriptorSet` of the API, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/shardgate_descriptor.bin"));
