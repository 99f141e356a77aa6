//! Functions in Python, through the real daemon runtime and real interpreters, against Ray and
//! Dask on the same shapes in the same run (`benchmarks/python/reference.py`):
//! - a chain of 50 no-op functions, per edge: `(median(chain of 50) − median(chain of 1)) / 49`,
//!   in one interpreter (the default: a group's functions in sequence share one) and across
//!   processes (`isolation: process`: every function a process of its own);
//! - a fan-out of 100 no-ops (a `foreach`), end to end;
//! - a numpy array of 1 MiB and 64 MiB written in place by a producer and read in place by a
//!   consumer in another process: the hand-off is the consumer's start minus the producer's end
//!   (the daemon's trigger; no byte is copied), next to the same function pair's end to end;
//! - FaaSFlow's word count with its own Python functions (`main.py`, unmodified), and the Rust
//!   version (`benchmarks/workflows/wordcount.yaml`, pack `apps`), end to end.
//!
//! The interpreter is `FAASFLOW_PYTHON` (with the faasflow package, numpy, ray and
//! dask[distributed]: `cargo xtask bench` makes it); without ray or dask their rows say so.
//! Prints a Markdown table on stdout and progress on stderr.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use faasflow_benchmarks::{faasflow_bin, fmt_ratio, fmt_us, machine_line, median, record_figure, runs};
use faasflow_core::report::Report;
use faasflow_core::{ClusterView, PlannerConfig};
use faasflow_daemon::api::Invoke;
use faasflow_daemon::config::DaemonConfig;
use faasflow_daemon::daemon::Daemon;
use faasflow_daemon::pool::PackCommand;
use faasflow_planner::load::{load_file, load_str_in};
use faasflow_planner::partition::partition;
use serde_json::json;

const CHAIN: usize = 50;
const FANOUT: usize = 100;
const WARMUP: usize = 5;

const FUNCTIONS: &str = r#"
import numpy

import faasflow


@faasflow.function
def noop(ctx):
    pass


@faasflow.function
def produce(ctx):
    n = ctx.input_json("n")
    out = numpy.frombuffer(ctx.output("array", n), dtype=numpy.uint8)
    out.fill(1)


@faasflow.function
def consume(ctx):
    a = numpy.frombuffer(ctx.input("array"), dtype=numpy.uint8)
    ctx.output_json("first", int(a[0]))
"#;

fn python() -> PathBuf {
    match std::env::var_os("FAASFLOW_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => {
            eprintln!(
                "bench: FAASFLOW_PYTHON must name an interpreter with the faasflow package and numpy \
                 (`cargo xtask bench` makes one)"
            );
            std::process::exit(1);
        }
    }
}

fn chain(name: &str, n: usize, isolation: &str) -> String {
    let mut s = format!("name: {name}\nfunctions:\n");
    for i in 0..n {
        s += &format!("  f{i}: {{language: python, handler: 'bench_functions:noop', isolation: {isolation}}}\n");
    }
    s += "steps:\n";
    for i in 0..n {
        s += &format!("  - task: f{i}\n");
    }
    s
}

fn fanout() -> String {
    "name: fanout
inputs:
  items: list
functions:
  noop: {language: python, handler: 'bench_functions:noop'}
steps:
  - foreach:
      over: input.items
      do:
        - task: noop
          inputs: {i: each.item}
"
    .into()
}

fn arrays() -> String {
    "name: arrays
functions:
  produce: {language: python, handler: 'bench_functions:produce', outputs: {array: bytes}}
  consume: {language: python, handler: 'bench_functions:consume', isolation: process, outputs: {first: json}}
steps:
  - task: produce
    inputs: {n: input.n}
  - task: consume
    inputs: {array: produce.array}
output:
  first: consume.first
"
    .into()
}

struct Bench {
    daemon: Daemon,
    dir: PathBuf,
}

impl Bench {
    fn install_text(&self, yaml: &str) {
        let wf = load_str_in(yaml, "bench.yaml", "bench", Some(&self.dir))
            .expect("valid workflow")
            .workflow;
        self.install(wf);
    }

    fn install(&self, wf: faasflow_core::dag::Workflow) {
        let cfg = PlannerConfig {
            allow_overcommit: true,
            ..PlannerConfig::default()
        };
        let plan = partition(&wf, &ClusterView::uniform(1, 256), &cfg).expect("plan");
        self.daemon.install(Arc::new(wf), plan).expect("install");
    }

    /// `runs` invocations after the warm-up ones, their reports.
    fn reports(&self, wf: &str, input: serde_json::Value, runs: usize) -> Vec<Report> {
        let mut out = Vec::new();
        for i in 0..WARMUP + runs {
            let r = self
                .daemon
                .invoke(Invoke::new(wf, 1, input.clone()))
                .report()
                .expect("invocation starts");
            assert_eq!(r.status, "ok", "{wf}: {:?}", r.error);
            if i >= WARMUP {
                out.push(r);
            }
        }
        out
    }

    /// Drops workflow `wf` (version 1), and with it its instances.
    fn drop(&self, wf: &str) {
        self.daemon.drop_plan(wf, 1).expect("dropped");
    }

    fn e2e_us(&self, wf: &str, input: serde_json::Value, runs: usize) -> f64 {
        let mut v: Vec<f64> = self.reports(wf, input, runs).iter().map(|r| r.e2e_us).collect();
        median(&mut v)
    }
}

/// Ray's or Dask's figures (µs), or why there are none.
fn reference(python: &Path, which: &str, runs: usize) -> Result<serde_json::Value, String> {
    eprintln!("bench: {which} …");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/reference.py");
    let out = Command::new(python)
        .arg(&script)
        .arg(which)
        .arg(runs.to_string())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
        return Err(format!("{which} did not run ({last})"));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.starts_with('{')).unwrap_or("");
    serde_json::from_str(line).map_err(|e| format!("{which} printed no figures: {e}"))
}

fn main() {
    let python = python();
    let bin = faasflow_bin();
    let dir = std::env::temp_dir().join(format!("faasflow-python-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    std::fs::write(dir.join("bench_functions.py"), FUNCTIONS).expect("written");
    let mut config = DaemonConfig::new(PackCommand {
        program: bin.clone(),
        args: vec!["__pack".into(), "synthetic".into()],
    });
    config.arena_bytes = 512 << 20;
    config.python = python.clone();
    config.packs.insert(
        "apps".into(),
        PackCommand::program(bin.with_file_name("faasflow-pack-apps")),
    );
    let b = Bench {
        daemon: Daemon::start(config).expect("daemon starts"),
        dir: dir.clone(),
    };
    let n = runs(30, 8);
    eprintln!("bench: faasflow chains …");
    let per_edge = |one: f64, many: f64| (many - one) / (CHAIN - 1) as f64;
    // Each workflow alone on the daemon: the instances of the others are gone.
    let alone = |name: &str, yaml: String| {
        b.install_text(&yaml);
        let us = b.e2e_us(name, json!({}), n);
        b.drop(name);
        eprintln!("bench: {name}: {}", fmt_us(us));
        us
    };
    let c1 = alone("chain1", chain("chain1", 1, "thread"));
    let c50 = alone("chain50", chain("chain50", CHAIN, "thread"));
    let p1 = alone("pchain1", chain("pchain1", 1, "process"));
    let p50 = alone("pchain50", chain("pchain50", CHAIN, "process"));
    let edge_thread = per_edge(c1, c50);
    let edge_process = per_edge(p1, p50);
    eprintln!("bench: faasflow fan-out …");
    b.install_text(&fanout());
    let items: Vec<u32> = (0..FANOUT as u32).collect();
    let fan = b.e2e_us("fanout", json!({ "items": items }), n);
    eprintln!("bench: faasflow arrays …");
    b.install_text(&arrays());
    let mut arrays_us = Vec::new();
    for size in [1u64 << 20, 64 << 20] {
        let reports = b.reports("arrays", json!({ "n": size }), n);
        let mut handoff: Vec<f64> = reports
            .iter()
            .map(|r| {
                let p = r.functions.iter().find(|f| f.name == "produce").expect("produce");
                let c = r.functions.iter().find(|f| f.name == "consume").expect("consume");
                c.start_us - p.end_us
            })
            .collect();
        let mut e2e: Vec<f64> = reports.iter().map(|r| r.e2e_us).collect();
        arrays_us.push((size, median(&mut handoff), median(&mut e2e)));
    }
    eprintln!("bench: word count, FaaSFlow's Python and the Rust version …");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let faasflow_wc = load_file(&root.join("tests/fixtures/faasflow-v1/benchmark/wordcount/flat_workflow.yaml"))
        .expect("FaaSFlow's word count loads")
        .workflow;
    b.install(faasflow_wc);
    let wc_runs = runs(10, 3);
    let wc_python = b.e2e_us("wordcount", json!({}), wc_runs);
    let mut rust_wc = load_file(&root.join("benchmarks/workflows/wordcount.yaml"))
        .expect("the Rust word count loads")
        .workflow;
    rust_wc.name = "wordcount_rust".into();
    b.install(rust_wc);
    let wc_rust = b.e2e_us(
        "wordcount_rust",
        json!({"seed": 1, "bytes": 3_400_000, "parts": 8}),
        wc_runs,
    );
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);

    let ray = reference(&python, "ray", n);
    let dask = reference(&python, "dask", n);
    let fig = |r: &Result<serde_json::Value, String>, k: &str| r.as_ref().ok().and_then(|v| v[k].as_f64());
    let edge_of = |r: &Result<serde_json::Value, String>| Some(per_edge(fig(r, "chain1")?, fig(r, "chain50")?));
    // The array's cost beyond a no-op task's round trip.
    let array_of = |r: &Result<serde_json::Value, String>, k: &str| Some(fig(r, k)? - fig(r, "noop_roundtrip")?);
    let cell = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), fmt_us);
    let ratio = |theirs: Option<f64>, ours: f64| theirs.map_or_else(|| "—".to_owned(), |t| fmt_ratio(t / ours));

    println!(
        "Machine: {}. Medians of {n} invocations after {WARMUP} (word count: {wc_runs}).\n",
        machine_line()
    );
    println!("| shape | faasflow | Ray | Dask | Ray / faasflow | Dask / faasflow |");
    println!("|---|---:|---:|---:|---:|---:|");
    let (ray_edge, dask_edge) = (edge_of(&ray), edge_of(&dask));
    println!(
        "| chain of {CHAIN} no-ops, per edge, one interpreter | {} | {} | {} | {} | {} |",
        fmt_us(edge_thread),
        cell(ray_edge),
        cell(dask_edge),
        ratio(ray_edge, edge_thread),
        ratio(dask_edge, edge_thread)
    );
    println!(
        "| chain of {CHAIN} no-ops, per edge, across processes | {} | {} | {} | {} | {} |",
        fmt_us(edge_process),
        cell(ray_edge),
        cell(dask_edge),
        ratio(ray_edge, edge_process),
        ratio(dask_edge, edge_process)
    );
    let (ray_fan, dask_fan) = (fig(&ray, "fanout100"), fig(&dask, "fanout100"));
    println!(
        "| fan-out of {FANOUT} no-ops, end to end | {} | {} | {} | {} | {} |",
        fmt_us(fan),
        cell(ray_fan),
        cell(dask_fan),
        ratio(ray_fan, fan),
        ratio(dask_fan, fan)
    );
    for (size, handoff, e2e) in &arrays_us {
        let key = if *size == 1 << 20 { "array_1MiB" } else { "array_64MiB" };
        let (r, d) = (array_of(&ray, key), array_of(&dask, key));
        println!(
            "| numpy array of {} to another process: hand-off (faasflow: trigger, no copy; Ray: put + get; Dask: scatter + task, beyond a no-op task) | {} | {} | {} | {} | {} |",
            faasflow_benchmarks::fmt_size(*size),
            fmt_us(*handoff),
            cell(r),
            cell(d),
            ratio(r, handoff.max(1.0)),
            ratio(d, handoff.max(1.0))
        );
        println!(
            "| the same, producer and consumer end to end (faasflow) | {} | | | | |",
            fmt_us(*e2e)
        );
    }
    println!(
        "| FaaSFlow's word count, its own Python functions (8 books, 3.3 MB) | {} | | | | |",
        fmt_us(wc_python)
    );
    println!(
        "| the Rust version (pack `apps`, 8 texts, 3.4 MB) | {} | | | | |",
        fmt_us(wc_rust)
    );
    println!();
    for (which, r) in [("Ray", &ray), ("Dask", &dask)] {
        match r {
            Ok(v) => println!("{which} {}", v["version"].as_str().unwrap_or("?")),
            Err(e) => println!("{which}: not measured: {e}"),
        }
    }
    let arrays_json: Vec<_> = arrays_us
        .iter()
        .map(|(s, h, e)| json!({"bytes": s, "handoff_us": h, "e2e_us": e}))
        .collect();
    record_figure(
        "python",
        json!({
            "per_edge_thread_us": edge_thread,
            "per_edge_process_us": edge_process,
            "fanout100_us": fan,
            "arrays": arrays_json,
            "wordcount_python_us": wc_python,
            "wordcount_rust_us": wc_rust,
            "ray": ray.as_ref().ok(),
            "dask": dask.as_ref().ok(),
        }),
    );
}
