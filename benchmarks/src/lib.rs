//! faasflow's end-to-end benchmarks. The code is in `benches/` (`harness = false` benches that
//! print Markdown tables); `cargo xtask bench` runs them and writes `benchmarks/RESULTS.md`.
//! See `benchmarks/README.md`.
//!
//! This library holds what the benches share: finding the `faasflow` binary, percentiles and
//! formatting.

use std::path::{Path, PathBuf};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// The release `faasflow` binary that serves the synthetic pack.
pub fn faasflow_bin() -> PathBuf {
    let path = match std::env::var_os("FAASFLOW_BIN") {
        // `cargo bench` runs the bench in `benchmarks/`: a relative path that is not there is
        // taken from the workspace root, where the command was probably typed.
        Some(p) => {
            let p = PathBuf::from(p);
            let from_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(&p);
            if p.is_relative() && !p.is_file() && from_root.is_file() {
                from_root
            } else {
                p
            }
        }
        None => {
            // target/release/deps/<bench>-* → target/release/faasflow
            let exe = std::env::current_exe().expect("the bench's own path");
            let release = exe.parent().and_then(|deps| deps.parent()).expect("target/release");
            release.join("faasflow")
        }
    };
    if !path.is_file() {
        eprintln!(
            "bench: the faasflow binary {} is missing; build it with `cargo build --release -p faasflow-cli` or point FAASFLOW_BIN at it",
            path.display()
        );
        std::process::exit(1);
    }
    path
}

/// A quick run (`cargo xtask bench --quick` sets `FAASFLOW_BENCH_QUICK=1`): fewer runs, so
/// noisier numbers.
pub fn quick() -> bool {
    std::env::var_os("FAASFLOW_BENCH_QUICK").is_some_and(|v| v == "1")
}

/// `full` runs, or `quick` ones in a quick run.
pub fn runs(full: usize, quick: usize) -> usize {
    if self::quick() { quick } else { full }
}

/// Adds figure `name` to the JSON file named by `FAASFLOW_BENCH_JSON` (an object of figures,
/// created when missing), so that `cargo xtask bench` can plot and keep every number; does
/// nothing without it.
pub fn record_figure(name: &str, value: serde_json::Value) {
    let Some(path) = std::env::var_os("FAASFLOW_BENCH_JSON") else {
        return;
    };
    let mut all: serde_json::Map<String, serde_json::Value> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    all.insert(name.to_owned(), value);
    let text = serde_json::to_string_pretty(&all).expect("figures are JSON");
    if let Err(e) = std::fs::write(&path, text) {
        eprintln!("bench: cannot write the figures to {}: {e}", Path::new(&path).display());
    }
}

/// A number unique in this process (names of spill directories…).
pub fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The `p`-th percentile (nearest rank) of `v`, which it sorts.
pub fn pct(v: &mut [f64], p: f64) -> f64 {
    assert!(!v.is_empty());
    v.sort_by(f64::total_cmp);
    let i = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[i.clamp(1, v.len()) - 1]
}

/// The median of `v`, which it sorts.
pub fn median(v: &mut [f64]) -> f64 {
    pct(v, 50.0)
}

/// µs, with a precision that suits the value.
pub fn fmt_us(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1e3)
    } else if us >= 1_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else if us >= 10.0 {
        format!("{us:.1} µs")
    } else {
        format!("{us:.2} µs")
    }
}

/// A ratio with two or three significant digits.
pub fn fmt_ratio(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}×")
    } else if r >= 10.0 {
        format!("{r:.1}×")
    } else if r >= 0.1 {
        format!("{r:.2}×")
    } else {
        format!("{r:.4}×")
    }
}

/// A size in KiB or MiB.
pub fn fmt_size(b: u64) -> String {
    if b >= MIB {
        format!("{} MiB", b / MIB)
    } else {
        format!("{} KiB", b / KIB)
    }
}

/// The machine, for the tables' captions: cores and CPU model.
pub fn machine_line() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("nproc {cores}, {cpu}")
}
