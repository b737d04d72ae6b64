//! Compiles `smb/**/*.proto` with protox (pure Rust; no system `protoc`) and tonic-prost-build.
use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "smb/common/v1/common.proto",
    "smb/auth/v1/auth.proto",
    "smb/auth/v1/auth_service.proto",
    "smb/orchestrator/v1/orchestrator.proto",
    "smb/orchestrator/v1/orchestrator_service.proto",
    "smb/connectors/v1/connectors.proto",
    "smb/connectors/v1/connectors_service.proto",
    "smb/events/v1/events.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for p in PROTOS {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(PROTOS, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("smb_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
