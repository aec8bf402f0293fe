//! Compiles the muster.v1 protos with protox (pure Rust), so no system `protoc` is needed, and
//! writes the encoded descriptor set for gRPC server reflection, and serde implementations in
//! protobuf's JSON mapping (pbjson) for the coordinator's HTTP/JSON gateway.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/muster/v1/common.proto",
        "proto/muster/v1/agent.proto",
        "proto/muster/v1/admin.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let encoded = descriptors.encode_to_vec();
    std::fs::write(out_dir.join("muster_descriptor.bin"), &encoded)?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    // serde for every message in protobuf's JSON mapping, for the HTTP/JSON gateway.
    pbjson_build::Builder::new()
        .register_descriptors(&encoded)?
        .build(&[".muster.v1"])?;
    Ok(())
}
