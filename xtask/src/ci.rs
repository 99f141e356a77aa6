//! `cargo xtask ci`: the tidy checks, the format check, clippy with warnings denied, the ring's
//! loom check, every binary, the whole test suite, then a short run of every fuzz target.

use std::process::Command;

use anyhow::{Result, bail};

use crate::fuzz::{fuzz, has_cargo_fuzz};
use crate::images::{docker_version, images};
use crate::tidy::tidy;
use crate::util::{cargo, project_root, run};

/// Seconds `cargo xtask ci` runs each fuzz target.
const CI_FUZZ_SECONDS: u64 = 10;

pub(crate) fn ci() -> Result<()> {
    // First, as it needs no build: it stops the run with every problem listed.
    tidy(&project_root())?;
    run("cargo fmt --check", cargo().args(["fmt", "--all", "--", "--check"]))?;
    // The container tests need Docker and the packs' images. `.ci/run` sets
    // FAASFLOW_REQUIRE_DOCKER=1, so that there a missing Docker fails the run; elsewhere those
    // tests say they are skipped.
    // `images` builds the Python package too (for `faasflow/python`); without Docker it is
    // built on its own below, before the tests.
    let imaged = match docker_version() {
        Ok(_) => {
            images(&project_root())?;
            true
        }
        Err(e) if std::env::var_os("FAASFLOW_REQUIRE_DOCKER").is_some_and(|v| v == "1") => {
            bail!("{e} (FAASFLOW_REQUIRE_DOCKER=1: the container tests must run)")
        }
        Err(e) => {
            eprintln!("==> note: {e}: the container tests will be skipped");
            false
        }
    };
    run(
        "cargo clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    // The control ring under loom's model checker (its own target dir: other cfg flags).
    run(
        "loom: faasflow-shm ring",
        cargo()
            .args(["test", "--locked", "-p", "faasflow-shm", "--release", "--lib", "loom"])
            .env("RUSTFLAGS", "--cfg loom")
            .env("CARGO_TARGET_DIR", project_root().join("target/loom")),
    )?;
    // The end-to-end tests start the packs' executables (found next to `faasflow`): build
    // every binary of the workspace, which test builds alone do not.
    run(
        "cargo build --workspace --bins",
        cargo().args(["build", "--workspace", "--bins", "--locked"]),
    )?;
    // The Python package, into the environment the Python tests give the daemon.
    if !imaged {
        crate::python::python(&project_root())?;
    }
    // Doc tests first (nextest does not run them), so that the run ends with the main summary.
    run(
        "cargo test --doc",
        cargo().args(["test", "--workspace", "--locked", "--doc"]),
    )?;
    let nextest = Command::new("cargo-nextest")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if nextest {
        run(
            "cargo nextest run",
            cargo().args(["nextest", "run", "--workspace", "--locked", "--no-fail-fast"]),
        )?;
    } else {
        run(
            "cargo test",
            cargo().args(["test", "--workspace", "--locked", "--no-fail-fast"]),
        )?;
    }
    // Last, a short fuzz run: one build of every target, the inputs of fuzz/regressions
    // replayed, then each target for a few seconds from its seeds.
    if !has_cargo_fuzz() {
        run(
            "cargo install cargo-fuzz --locked",
            cargo().args(["install", "cargo-fuzz", "--locked"]),
        )?;
    }
    fuzz(&project_root(), None, CI_FUZZ_SECONDS)
}
