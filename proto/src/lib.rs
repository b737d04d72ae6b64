//! Generated protobuf messages and gRPC services of SMB Command. Generated types stop at the service
//! boundary: services convert them into domain types with `TryFrom` before doing anything else.
#![allow(clippy::all, clippy::pedantic)]

/// The encoded file descriptor set of every `smb.*` package, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/smb_descriptor.bin"));

/// Every gRPC method path the platform serves (`/smb.auth.v1.AuthService/Login`, …), with the standard health
/// and reflection services: the bounded set that request metrics label by.
pub fn grpc_methods() -> &'static std::collections::HashSet<String> {
    static METHODS: std::sync::OnceLock<std::collections::HashSet<String>> =
        std::sync::OnceLock::new();
    METHODS.get_or_init(|| {
        let set = <prost_types::FileDescriptorSet as prost::Message>::decode(FILE_DESCRIPTOR_SET)
            .expect("the descriptor set is built from proto/");
        let mut out: std::collections::HashSet<String> = set
            .file
            .iter()
            .flat_map(|f| {
                let package = f.package().to_string();
                f.service.iter().flat_map(move |s| {
                    let service = format!("{package}.{}", s.name());
                    s.method
                        .iter()
                        .map(move |m| format!("/{service}/{}", m.name()))
                })
            })
            .collect();
        for standard in [
            "/grpc.health.v1.Health/Check",
            "/grpc.health.v1.Health/Watch",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            out.insert(standard.to_string());
        }
        out
    })
}

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

/// The JSON forms of messages that the HTTP routes and the answer's `result` show, in one place.
pub mod json;
