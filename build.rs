//! Compiles `proto/rerank.proto` and `proto/tei.proto` (TEI's re-rank interface) into the gRPC
//! server and client code (tonic + prost), and the descriptor set served by gRPC reflection.
//! `protoc` comes from the vendored binary, so nothing needs to be installed on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build finds protoc through PROTOC.
    std::env::set_var("PROTOC", protoc);
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("rerank_descriptor.bin"))
        .compile_protos(&["proto/rerank.proto", "proto/tei.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto/rerank.proto");
    println!("cargo:rerun-if-changed=proto/tei.proto");
    Ok(())
}
