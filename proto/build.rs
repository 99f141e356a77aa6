//! Compiles `proto/**/*.proto` with `protox` (pure Rust, no system `protoc`) and generates the
//! prost messages and tonic clients and servers with `tonic-prost-build`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The `.proto` files, relative to the include root `proto/`.
const PROTOS: &[&str] = &[
    "faasflow/v1/plan.proto",
    "faasflow/v1/planner.proto",
    "faasflow/v1/daemon.proto",
    "faasflow/v1/state.proto",
];

fn main() -> Result<()> {
    let root = Path::new("proto");
    // Rebuild when any file under proto/ changes (cargo scans directories recursively), and
    // name each file too so a touched file is noticed even if the directory's listing is not.
    println!("cargo:rerun-if-changed={}", root.display());
    let files: Vec<PathBuf> = PROTOS.iter().map(|p| root.join(p)).collect();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let fds = protox::compile(&files, [root]).context("compiling the .proto files with protox")?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .emit_rerun_if_changed(false)
        .compile_fds(fds)
        .context("generating Rust code with tonic-prost-build")?;
    Ok(())
}
