//! Compiles the BPF program (`src/rss.bpf.c`) with clang into `$OUT_DIR/rss.bpf.o`, which the
//! crate embeds. Without clang the object is left empty and the probe says at run time that it
//! was built without BPF (the daemon then measures through /proc): a machine with only the
//! Rust toolchain still builds the workspace.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "src/rss.bpf.c";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-env-changed=CLANG");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("rss.bpf.o");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let arch_include = format!("-I/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    let result = Command::new(&clang)
        .args([
            "-O2",
            "-g",
            "-target",
            "bpf",
            "-Wall",
            "-Werror",
            &arch_include,
            "-c",
            src,
            "-o",
        ])
        .arg(&out)
        .output();
    // What to do is said at run time, where it depends on whether clang is there by then.
    let (why, not_run) = match result {
        Ok(o) if o.status.success() => return,
        Ok(o) => (
            format!("`{clang}` failed: {}", String::from_utf8_lossy(&o.stderr).trim()),
            false,
        ),
        Err(e) => (format!("`{clang}` could not be run: {e}"), true),
    };
    println!("cargo:warning=the BPF memory probe is built without its program: {why}; install clang and rebuild");
    println!("cargo:rustc-env=FAASFLOW_BPF_MISSING={}", why.replace('\n', " "));
    println!("cargo:rustc-env=FAASFLOW_BPF_CLANG={clang}");
    if not_run {
        println!("cargo:rustc-env=FAASFLOW_BPF_NO_CLANG=1");
    }
    std::fs::write(&out, b"").expect("write the empty BPF object");
}
