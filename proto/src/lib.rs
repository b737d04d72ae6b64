//! Generated protobuf messages and gRPC services of SMB Command. Generated types stop at the service
//! boundary: services convert them into domain types with `TryFrom` before doing anything else.
#![allow(clippy::all, clippy::pedantic)]

/// The encoded file descriptor set of every `smb.*` package, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/smb_descriptor.bin"));

pub mod common {
    pub mod v1 {
        tonic::include_proto!("smb.common.v1");
    }
}
pub mod auth {
    pub mod v1 {
        tonic::include_proto!("smb.auth.v1");
    }
}
pub mod orchestrator {
    pub mod v1 {
        tonic::include_proto!("smb.orchestrator.v1");
    }
}
pub mod connectors {
    pub mod v1 {
        tonic::include_proto!("smb.connectors.v1");
    }
}
pub mod events {
    pub mod v1 {
        tonic::include_proto!("smb.events.v1");
    }
}
