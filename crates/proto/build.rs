//! Compiles `proto/shardgate/v1/gateway.proto` with protox, so building needs
//! no system `protoc`. Also writes the file descriptor set for server reflection.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let file = root.join("shardgate/v1/gateway.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    let fds = protox::compile([&file], [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut bytes = Vec::new();
    prost::Message::encode(&fds, &mut bytes)?;
    std::fs::write(out.join("shardgate_descriptor.bin"), bytes)?;
    tonic_prost_build::configure()
        // Uploads are kept (and resent on retries) without copies.
        .bytes(".shardgate.v1.InputFile.data")
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
