//! Instances in Docker containers next to instances as processes, through the real daemon
//! runtime: the first call of a function whose pool has no instance (cold: the container is
//! created, started and does its handshake), later calls (warm), and the per-edge trigger
//! latency along a chain of functions each in a container of its own. References in the same
//! run: the same with process instances, and `docker run` of the same image. Functions are the
//! synthetic body (`faasflow/synthetic`, built by `cargo xtask images`; processes:
//! `faasflow __pack synthetic`). Prints Markdown tables on stdout and progress on stderr.
//!
//! Run: `cargo xtask images && cargo build --release -p faasflow-cli && cargo bench -p
//! faasflow-benchmarks --bench containers` (or `cargo xtask bench`).

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use faasflow_benchmarks::{faasflow_bin, fmt_ratio, fmt_us, machine_line, median, pct, runs};
use faasflow_core::report::{FunctionRecord, Report};
use faasflow_core::{ClusterView, PlannerConfig};
use faasflow_daemon::api::Invoke;
use faasflow_daemon::config::DaemonConfig;
use faasflow_daemon::daemon::Daemon;
use faasflow_daemon::pool::PackCommand;
use faasflow_planner::load::load_str;
use faasflow_planner::partition::partition;
use serde_json::json;

/// Daemons started for the cold calls.
fn cold_runs() -> usize {
    runs(10, 3)
}
/// Warm calls per daemon.
const WARM_PER_DAEMON: usize = 5;
const DOCKER_RUNS: usize = 5;
/// Functions in the chain (each in an instance of its own).
const CHAIN: usize = 10;
const CHAIN_WARMUP: usize = 10;
/// Invocations of the chain (after the warm-up ones).
fn chain_runs() -> usize {
    runs(100, 20)
}

fn config(bin: &Path) -> DaemonConfig {
    let mut c = DaemonConfig::new(PackCommand {
        program: bin.to_path_buf(),
        args: vec!["__pack".into(), "synthetic".into()],
    });
    c.arena_bytes = 64 << 20;
    c
}

fn install(d: &Daemon, yaml: &str) {
    let wf = Arc::new(load_str(yaml, "bench.yaml", "bench").expect("valid workflow").workflow);
    let cfg = PlannerConfig {
        allow_overcommit: true,
        ..PlannerConfig::default()
    };
    let plan = partition(&wf, &ClusterView::uniform(1, 64), &cfg).expect("plan");
    d.install(wf, plan).expect("install");
}

fn invoke(d: &Daemon, wf: &str) -> Report {
    let r = d
        .invoke(Invoke::new(wf, 1, json!({})))
        .report()
        .expect("the invocation starts");
    assert_eq!(r.status, "ok", "invocation failed: {:?}", r.error);
    r
}

/// (cold e2e µs per daemon, warm e2e µs) of a one-function workflow with `isolation`.
fn start_times(bin: &Path, isolation: &str) -> (Vec<f64>, Vec<f64>) {
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for _ in 0..cold_runs() {
        let mut c = config(bin);
        // Nothing starts at install: the first call waits for its instance.
        c.min_instances = 0;
        let d = Daemon::start(c).expect("daemon starts");
        install(
            &d,
            &format!("name: one\nfunctions:\n  f: {{isolation: {isolation}, runtime: 0ms}}\nsteps:\n  - task: f\n"),
        );
        let t = Instant::now();
        invoke(&d, "one");
        cold.push(t.elapsed().as_secs_f64() * 1e6);
        for _ in 0..WARM_PER_DAEMON {
            let t = Instant::now();
            invoke(&d, "one");
            warm.push(t.elapsed().as_secs_f64() * 1e6);
        }
        drop(d);
    }
    (cold, warm)
}

/// Wall time of `docker run --rm` of the synthetic image listing its functions, µs.
fn docker_run() -> Vec<f64> {
    (0..DOCKER_RUNS)
        .map(|_| {
            let t = Instant::now();
            let ok = Command::new("docker")
                .args([
                    "run",
                    "--rm",
                    "--network",
                    "none",
                    "--read-only",
                    "faasflow/synthetic",
                    "--list",
                ])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "docker run faasflow/synthetic failed");
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect()
}

fn record<'a>(r: &'a Report, name: &str) -> &'a FunctionRecord {
    r.functions
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no record of `{name}`"))
}

/// Per-edge latencies and instances used along a chain of `CHAIN` functions, each with
/// `isolation`; `work`: each works 1 ms and passes a 1 KiB output to the next (else no-ops).
fn chain(bin: &Path, isolation: &str, work: bool) -> (Vec<f64>, usize) {
    let c = config(bin);
    let d = Daemon::start(c).expect("daemon starts");
    let mut y = "name: chain\nfunctions:\n".to_owned();
    let body = if work {
        "runtime: 1ms, outputs: {out: {type: bytes, size: 1KiB}}"
    } else {
        "runtime: 0ms"
    };
    for i in 0..CHAIN {
        y.push_str(&format!("  f{i:02}: {{isolation: {isolation}, {body}}}\n"));
    }
    y.push_str("steps:\n  - sequence:\n");
    for i in 0..CHAIN {
        y.push_str(&format!("      - task: f{i:02}\n"));
        if work && i > 0 {
            y.push_str(&format!("        inputs: {{in: f{:02}.out}}\n", i - 1));
        }
    }
    install(&d, &y);
    for _ in 0..CHAIN_WARMUP {
        invoke(&d, "chain");
    }
    let mut edges = Vec::new();
    let mut instances = HashSet::new();
    for _ in 0..chain_runs() {
        let r = invoke(&d, "chain");
        let recs: Vec<&FunctionRecord> = (0..CHAIN).map(|i| record(&r, &format!("f{i:02}"))).collect();
        for w in recs.windows(2) {
            edges.push((w[1].end_us - w[0].end_us) - w[1].exec_us);
        }
        instances.extend(recs.iter().filter_map(|f| f.instance));
    }
    drop(d);
    (edges, instances.len())
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("containers bench: run with `cargo bench -p faasflow-benchmarks --bench containers`");
        return;
    }
    let images = Command::new("docker")
        .args(["image", "inspect", "faasflow/synthetic"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        images,
        "Docker is not reachable or the image faasflow/synthetic is missing: start dockerd and run `cargo xtask images`"
    );
    let bin = faasflow_bin();
    println!(
        "Machine: {}; functions: FaaSFlow's synthetic body (runtime 0) as `faasflow/synthetic` containers and as `faasflow __pack synthetic` processes",
        machine_line()
    );
    println!();

    eprintln!("containers: cold and warm starts, processes");
    let (mut p_cold, mut p_warm) = start_times(&bin, "process");
    eprintln!("containers: cold and warm starts, containers");
    let (mut c_cold, mut c_warm) = start_times(&bin, "container");
    eprintln!("containers: docker run reference");
    let mut docker = docker_run();
    let (pc, pw, cc, cw, dr) = (
        median(&mut p_cold),
        median(&mut p_warm),
        median(&mut c_cold),
        median(&mut c_warm),
        median(&mut docker),
    );
    println!(
        "Invocation of a one-function workflow, end to end as the caller sees it: cold = the first call, whose pool has no instance yet ({} daemons with `min_instances` 0), warm = the {WARM_PER_DAEMON} calls after it",
        cold_runs()
    );
    println!();
    println!("| instance | cold p50 | warm p50 | warm p99 | cold / warm |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| container (`isolation: container`) | {} | {} | {} | {} |",
        fmt_us(cc),
        fmt_us(cw),
        fmt_us(pct(&mut c_warm, 99.0)),
        fmt_ratio(cc / cw)
    );
    println!(
        "| process (`isolation: process`) | {} | {} | {} | {} |",
        fmt_us(pc),
        fmt_us(pw),
        fmt_us(pct(&mut p_warm, 99.0)),
        fmt_ratio(pc / pw)
    );
    println!(
        "| reference: `docker run --rm --network none --read-only faasflow/synthetic --list` ({DOCKER_RUNS} runs) | {} | – | – | – |",
        fmt_us(dr)
    );
    println!();
    println!(
        "Container cold start is {} of a process's cold start and {} of `docker run`; a warm call in a container is {} of one in a process.",
        fmt_ratio(cc / pc),
        fmt_ratio(cc / dr),
        fmt_ratio(cw / pw)
    );
    println!();

    eprintln!("containers: chain in containers");
    let (mut c_edges, c_inst) = chain(&bin, "container", false);
    eprintln!("containers: chain in processes");
    let (mut p_edges, p_inst) = chain(&bin, "process", false);
    println!(
        "Per-edge trigger latency along a chain of {CHAIN} no-op functions, each in an instance of its own: (end_us[i+1] − end_us[i]) − exec_us[i+1], over all {} edges of {} invocations after {CHAIN_WARMUP} warm-up ones",
        CHAIN - 1,
        chain_runs()
    );
    println!();
    println!("| instances | count | edges | p50 per edge | p99 per edge |");
    println!("|---|---:|---:|---:|---:|");
    let (cp50, pp50) = (pct(&mut c_edges, 50.0), pct(&mut p_edges, 50.0));
    println!(
        "| containers | {c_inst} | {} | {} | {} |",
        c_edges.len(),
        fmt_us(cp50),
        fmt_us(pct(&mut c_edges, 99.0))
    );
    println!(
        "| processes (reference) | {p_inst} | {} | {} | {} |",
        p_edges.len(),
        fmt_us(pp50),
        fmt_us(pct(&mut p_edges, 99.0))
    );
    println!();
    eprintln!("containers: chain of functions that work, in containers and in processes");
    let (mut cw_edges, _) = chain(&bin, "container", true);
    let (mut pw_edges, _) = chain(&bin, "process", true);
    println!("The same for functions that do work: each sleeps 1 ms and passes a 1 KiB output to the next");
    println!();
    println!("| instances | edges | p50 per edge | p99 per edge |");
    println!("|---|---:|---:|---:|");
    let (cwp50, pwp50) = (pct(&mut cw_edges, 50.0), pct(&mut pw_edges, 50.0));
    for (what, edges, p50) in [
        ("containers", &mut cw_edges, cwp50),
        ("processes (reference)", &mut pw_edges, pwp50),
    ] {
        println!(
            "| {what} | {} | {} | {} |",
            edges.len(),
            fmt_us(p50),
            fmt_us(pct(edges, 99.0))
        );
    }
    println!();
    faasflow_benchmarks::record_figure(
        "containers",
        json!({
            "cold_ms": {"container": cc / 1e3, "process": pc / 1e3, "docker_run": dr / 1e3},
            "warm_us": {"container": cw, "process": pw},
            "per_edge_us": {
                "container": {"p50": cp50, "p99": pct(&mut c_edges, 99.0)},
                "process": {"p50": pp50, "p99": pct(&mut p_edges, 99.0)},
                "container_1ms_1KiB": {"p50": cwp50},
                "process_1ms_1KiB": {"p50": pwp50},
            },
        }),
    );
    println!(
        "Between containers an edge takes {} of an edge between processes (p50).",
        fmt_ratio(cp50 / pp50)
    );
}
