//! Nothing to generate. The build-dependency on `protoc-bin-vendored` exists
//! so that cargo downloads the protoc binary before etcd-client's build
//! script runs it through `tools/protoc` (see `.cargo/config.toml`).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
}
