//! `cargo xtask fuzz`: the cargo-fuzz targets of `fuzz/`, each for a while, after the inputs
//! that once made it fail (see `docs/testing.md`).

use std::collections::BTreeSet;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use anyhow::{Context, Result, bail};

use crate::util::{cargo, run};

/// A fuzz target of `fuzz/` and how to run it.
#[derive(Debug, Clone, Copy)]
struct FuzzTarget {
    name: &'static str,
    /// The largest input libFuzzer may make. The `wdl` seeds include FaaSFlow's 134 KB
    /// generated workflows; mutating inputs that large makes runs slow without finding more.
    max_len: usize,
    /// More libFuzzer flags (paths relative to the project root).
    flags: &'static [&'static str],
}

const FUZZ_TARGETS: [FuzzTarget; 7] = [
    FuzzTarget {
        name: "wdl",
        max_len: 16384,
        flags: &["-dict=fuzz/dicts/wdl.dict"],
    },
    FuzzTarget {
        name: "faasflow_import",
        max_len: 8192,
        flags: &["-dict=fuzz/dicts/faasflow.dict"],
    },
    FuzzTarget {
        name: "plan_proto",
        max_len: 8192,
        flags: &[],
    },
    // Every byte is a choice of the grammar: short inputs make small workflows, so let
    // libFuzzer use long inputs from the start.
    FuzzTarget {
        name: "wdl_structured",
        max_len: 4096,
        flags: &["-len_control=0"],
    },
    FuzzTarget {
        name: "ring_frame",
        max_len: 8192,
        flags: &[],
    },
    FuzzTarget {
        name: "handshake",
        max_len: 65536,
        flags: &[],
    },
    FuzzTarget {
        name: "peer_message",
        max_len: 8192,
        flags: &[],
    },
];

/// Whether `cargo fuzz` runs.
pub(crate) fn has_cargo_fuzz() -> bool {
    cargo()
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `cargo xtask fuzz`: for every target, runs the inputs of `fuzz/regressions/<target>` (once
/// failing, since fixed), copies `fuzz/seeds/<target>` into the corpus `fuzz/corpus/<target>`
/// and runs `cargo fuzz run` for `seconds`. cargo-fuzz needs nightly flags
/// (`-Zsanitizer=address`, sanitizer coverage); `RUSTC_BOOTSTRAP=1` lets the stable compiler
/// accept them. `-a` keeps debug assertions and overflow checks on.
pub(crate) fn fuzz(root: &Path, only: Option<&str>, seconds: u64) -> Result<()> {
    let targets = select(only)?;
    if !has_cargo_fuzz() {
        bail!("cargo-fuzz is not installed; run `cargo install cargo-fuzz --locked`");
    }
    // One build of every target first (with the flags `run` uses, so `run` does not rebuild).
    run(
        "cargo fuzz build -a",
        cargo()
            .current_dir(root)
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "build", "-a"]),
    )?;
    let mut summary = Vec::new();
    for target in targets {
        let name = target.name;
        replay_regressions(root, name)?;
        let (corpus, copied) = seed_corpus(root, name)?;
        eprintln!(
            "==> fuzz {name} for {seconds}s ({copied} seeds copied into {})",
            corpus.display()
        );
        let runs = run_target(root, target, &corpus, seconds)?;
        let runs = runs.map_or_else(|| "?".to_owned(), |n| n.to_string());
        eprintln!("    fuzz {name}: ok, {runs} executions in {seconds}s");
        summary.push(format!("{name}: {runs} executions, no crash"));
    }
    eprintln!("==> fuzzing done\n    {}", summary.join("\n    "));
    Ok(())
}

/// The target named `only`, or all of them.
fn select(only: Option<&str>) -> Result<Vec<FuzzTarget>> {
    Ok(match only {
        None => FUZZ_TARGETS.to_vec(),
        Some(name) => match FUZZ_TARGETS.iter().find(|t| t.name == name) {
            Some(&t) => vec![t],
            None => bail!(
                "unknown fuzz target `{name}`; the targets are: {}",
                FUZZ_TARGETS.map(|t| t.name).join(", ")
            ),
        },
    })
}

/// Runs the inputs of `fuzz/regressions/<target>` once each (libFuzzer runs each file given by
/// name once, and stops at the first failure).
fn replay_regressions(root: &Path, target: &str) -> Result<()> {
    let regressions = list_files(&root.join("fuzz/regressions").join(target));
    if regressions.is_empty() {
        return Ok(());
    }
    run(
        &format!("fuzz {target}: {} regression inputs", regressions.len()),
        cargo()
            .current_dir(root)
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", "-a", target])
            .args(&regressions)
            .args(["--", "-timeout=10"]),
    )
}

/// Copies the seeds of `target` into its corpus (`fuzz/corpus/<target>`); returns the corpus
/// and how many seeds it copied.
fn seed_corpus(root: &Path, target: &str) -> Result<(PathBuf, usize)> {
    let fuzz_dir = root.join("fuzz");
    let corpus = fuzz_dir.join("corpus").join(target);
    std::fs::create_dir_all(&corpus).with_context(|| format!("cannot create {}", corpus.display()))?;
    let seeds = fuzz_dir.join("seeds").join(target);
    let mut copied = 0;
    if seeds.is_dir() {
        for entry in std::fs::read_dir(&seeds).with_context(|| format!("cannot read {}", seeds.display()))? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::copy(entry.path(), corpus.join(entry.file_name()))
                    .with_context(|| format!("cannot copy {}", entry.path().display()))?;
                copied += 1;
            }
        }
    }
    Ok((corpus, copied))
}

/// Runs `cargo fuzz run` of `target` on `corpus` for `seconds`, passing libFuzzer's output
/// through; returns how many inputs it ran (when it said), or fails naming the failing inputs.
fn run_target(root: &Path, target: FuzzTarget, corpus: &Path, seconds: u64) -> Result<Option<u64>> {
    let FuzzTarget { name, max_len, flags } = target;
    let artifacts = root.join("fuzz/artifacts").join(name);
    let before = list_files(&artifacts);
    let mut child = cargo()
        .current_dir(root)
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", "run", "-a", name])
        .arg(corpus)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-max_len={max_len}"))
        .arg("-timeout=10")
        .arg("-print_final_stats=1")
        .args(flags.iter().map(|f| match f.strip_prefix("-dict=") {
            Some(path) => format!("-dict={}", root.join(path).display()),
            None => (*f).to_owned(),
        }))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("cannot start cargo fuzz run")?;
    let mut output = LibFuzzerOutput::default();
    if let Some(stderr) = child.stderr.take() {
        for line in std::io::BufReader::new(stderr).split(b'\n') {
            let line = String::from_utf8_lossy(&line.context("cannot read the output of cargo fuzz run")?).into_owned();
            eprintln!("{line}");
            output.read(&line);
        }
    }
    let status = child.wait().context("cargo fuzz run did not finish")?;
    let new: Vec<PathBuf> = list_files(&artifacts)
        .into_iter()
        .filter(|p| !before.contains(p))
        .chain(output.written)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !status.success() || !new.is_empty() {
        return Err(failure(name, status, &new));
    }
    Ok(output.runs)
}

/// What the fuzz summary needs from libFuzzer's output.
#[derive(Debug, Default)]
struct LibFuzzerOutput {
    /// Inputs run (`stat::number_of_executed_units`).
    runs: Option<u64>,
    /// Failing inputs written (`Test unit written to …`).
    written: Vec<PathBuf>,
}

impl LibFuzzerOutput {
    fn read(&mut self, line: &str) {
        if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
            self.runs = n.trim().parse::<u64>().ok();
        }
        if let Some((_, path)) = line.split_once("Test unit written to ") {
            self.written.push(PathBuf::from(path.trim()));
        }
    }
}

/// Says how to reproduce and minimize each failing input of `target`; the error to return.
fn failure(target: &str, status: ExitStatus, new: &[PathBuf]) -> anyhow::Error {
    for path in new {
        eprintln!("fuzz target `{target}` found a failing input: {}", path.display());
        eprintln!(
            "  reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run -a {target} {}",
            path.display()
        );
        eprintln!(
            "  minimize:  RUSTC_BOOTSTRAP=1 cargo fuzz tmin -a {target} {}",
            path.display()
        );
    }
    anyhow::anyhow!(
        "fuzz target `{target}` failed ({status}){}",
        match new.first() {
            Some(p) => format!("; failing input: {}", p.display()),
            None => String::new(),
        }
    )
}

/// The files directly in `dir` (none when it does not exist).
fn list_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_chosen_by_name() {
        assert_eq!(select(None).unwrap().len(), FUZZ_TARGETS.len());
        assert_eq!(select(Some("ring_frame")).unwrap()[0].max_len, 8192);
        let e = select(Some("nope")).unwrap_err().to_string();
        assert!(
            e.starts_with("unknown fuzz target `nope`; the targets are: wdl, "),
            "{e}"
        );
    }

    #[test]
    fn libfuzzer_output_gives_runs_and_failing_inputs() {
        let mut out = LibFuzzerOutput::default();
        out.read("#1024 pulse cov: 3");
        out.read("stat::number_of_executed_units: 4096");
        out.read("==1== Test unit written to fuzz/artifacts/wdl/crash-1 ");
        assert_eq!(out.runs, Some(4096));
        assert_eq!(out.written, [PathBuf::from("fuzz/artifacts/wdl/crash-1")]);
    }
}
