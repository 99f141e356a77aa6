//! `cargo xtask python`: builds the `faasflow` Python package (sdk/python, a PyO3 extension,
//! abi3 for CPython 3.9 and later) into a wheel with maturin, and installs it, with numpy,
//! into a virtual environment of its own: `target/python/venv`. Its interpreter is the one
//! the Python tests (`cli/tests/python.rs`) and benchmarks give the daemon (`--python`).
//! maturin and numpy come from PyPI, into that environment only, the first time.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{cargo_target_dir, run};

/// What the environment needs besides the package: the build tool, and numpy for the tests
/// and benchmarks that hand arrays over.
const TOOLS: &[(&str, &str)] = &[("maturin", "maturin>=1.9,<2"), ("numpy", "numpy")];

/// Builds the wheel into `target/wheels` and installs it into `target/python/venv`; returns
/// the environment's interpreter.
pub(crate) fn python(root: &Path) -> Result<PathBuf> {
    install(root, "venv", TOOLS)
}

/// The environment of the Python benchmark, `target/python/bench`: the package, numpy, and the
/// systems it is measured against (Ray, Dask), from PyPI. Fails, saying why, when PyPI cannot be
/// reached.
pub(crate) fn bench_env(root: &Path) -> Result<PathBuf> {
    install(
        root,
        "bench",
        &[
            ("maturin", "maturin>=1.9,<2"),
            ("numpy", "numpy"),
            ("ray", "ray"),
            ("distributed", "dask[distributed]"),
        ],
    )
}

/// Makes (or reuses) the environment `target/python/NAME` with `tools` (module, requirement)
/// and the package built now.
fn install(root: &Path, name: &str, tools: &[(&str, &str)]) -> Result<PathBuf> {
    let venv = cargo_target_dir(root).join("python").join(name);
    let python = venv.join("bin/python");
    if !python.is_file() {
        // The interpreter the environments are made from: `PYTHON`, else python3 on PATH.
        let system = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        run(
            &format!("{system} -m venv {}", venv.display()),
            Command::new(&system).arg("-m").arg("venv").arg(&venv),
        )
        .with_context(|| {
            format!("cannot make a virtual environment with `{system}`: install Python 3.9 or later with venv (Debian: apt-get install python3-venv)")
        })?;
    }
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(module, _)| {
            !Command::new(&python)
                .args(["-c", &format!("import {module}")])
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|(_, requirement)| *requirement)
        .collect();
    if !missing.is_empty() {
        run(
            &format!("pip install {}", missing.join(" ")),
            Command::new(&python)
                .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
                .args(&missing),
        )
        .with_context(|| format!("cannot install {} from PyPI (is it reachable?)", missing.join(", ")))?;
    }
    let wheels = cargo_target_dir(root).join("wheels");
    let _ = std::fs::remove_dir_all(&wheels);
    run(
        "maturin build --release (sdk/python)",
        Command::new(venv.join("bin/maturin"))
            .args(["build", "--release", "--quiet", "--manifest-path"])
            .arg(root.join("sdk/python/Cargo.toml"))
            // A target directory of its own: maturin's settings differ from a plain release
            // build's, and sharing one would rebuild the workspace's release crates each time.
            .arg("--target-dir")
            .arg(cargo_target_dir(root).join("python/build"))
            .arg("--out")
            .arg(&wheels)
            .arg("--interpreter")
            .arg(&python),
    )?;
    let wheel = std::fs::read_dir(&wheels)
        .with_context(|| format!("cannot read {}", wheels.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .with_context(|| format!("maturin made no wheel in {}", wheels.display()))?;
    run(
        &format!("pip install {}", wheel.display()),
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--force-reinstall",
                "--no-deps",
            ])
            .arg(&wheel),
    )?;
    let ok = Command::new(&python)
        .args(["-c", "import faasflow, faasflow.serve"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        bail!("{} cannot import the faasflow package it installed", python.display());
    }
    eprintln!(
        "    the faasflow package: {} (interpreter {})",
        wheel.display(),
        python.display()
    );
    Ok(python)
}
