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

/// The JSON forms of messages that the HTTP routes and the answer's `result` show, in one place.
pub mod json {
    use serde_json::{Value, json};

    /// An action: the query result's `action`, and the `/v1/actions` routes.
    pub fn action(a: &crate::orchestrator::v1::Action) -> Value {
        let mut v = json!({
            "id": a.id,
            "type": a.r#type,
            "status": a.status,
            "params": a.params.iter().collect::<std::collections::BTreeMap<_, _>>(),
            "preview": a.preview,
            "needs_owner": a.needs_owner,
            "proposed_by": a.proposed_by,
            "proposed_at": a.proposed_at,
            "expires_at": a.expires_at,
            "attempts": a.attempts,
        });
        for (k, val) in [
            ("decided_by", &a.decided_by),
            ("decided_at", &a.decided_at),
            ("finished_at", &a.finished_at),
            ("outcome", &a.outcome),
        ] {
            if !val.is_empty() {
                v[k] = json!(val);
            }
        }
        v
    }
}
