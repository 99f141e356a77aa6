//! Per-edge cost for functions that do work: along a chain of 50 synthetic functions that each
//! take 0, 20 µs, 1 ms or 10 ms (the synthetic body waits out its runtime sleeping, as
//! FaaSFlow's does, or, for 20 µs and 1 ms, also busy: spinning on its core like a function
//! that computes, `DaemonConfig::synthetic_busy`), passing nothing or 1 KiB along each edge, in one instance (the
//! functions share a group's instance: in-process hand-off) and one process per function
//! (shared memory between instances), through the real daemon runtime and real instance
//! processes (`faasflow __pack synthetic`). Added per edge = (e2e − Σ exec) / edges, median
//! over invocations; the CPU time the daemon (this process) and the instances (its children)
//! spent per edge, spinning counted, is read from the kernel's per-thread run time
//! (`/proc/PID/task/TID/schedstat`) around the measured invocations and divided by their
//! edges. With `FAASFLOW_PYTHON` naming an interpreter that has Ray, Ray runs the same chain
//! in the same run (`benchmarks/python/reference.py ray-edges`: tasks that sleep the same time
//! and return the same bytes), its added per edge beside ours. Prints a Markdown table on
//! stdout and progress on stderr.
//!
//! Run: `cargo build --release -p faasflow-cli && cargo bench -p faasflow-benchmarks --bench
//! edges` (or `cargo xtask bench --only edges`, which sets `FAASFLOW_BIN`).

use std::path::Path;
use std::sync::Arc;

use faasflow_benchmarks::{faasflow_bin, fmt_us, machine_line, median, quick, record_figure};
use faasflow_core::report::Report;
use faasflow_core::{ClusterView, PlannerConfig};
use faasflow_daemon::api::Invoke;
use faasflow_daemon::config::DaemonConfig;
use faasflow_daemon::daemon::Daemon;
use faasflow_daemon::pool::PackCommand;
use faasflow_planner::load::load_str;
use faasflow_planner::partition::partition;
use serde_json::json;

/// Functions in the chain.
const CHAIN: usize = 50;
const WARMUP: usize = 5;

/// The work of each function, µs, whether it is busy (else it sleeps), and the invocations
/// measured (full, quick).
const WORK: [(u64, bool, usize, usize); 6] = [
    (0, false, 30, 5),
    (20, false, 30, 5),
    (20, true, 30, 5),
    (1_000, false, 20, 3),
    (1_000, true, 20, 3),
    (10_000, false, 8, 2),
];

/// Where the functions run, and whether a call's successor is sent with it (to start on its
/// thread: `DaemonConfig::chain`) or on its own once the daemon sees the call end.
const TIERS: [(&str, Option<&str>, bool); 3] = [
    ("in-process", None, true),
    ("in-process, one by one", None, false),
    ("across processes", Some("process"), true),
];

/// Targets for 1 ms functions with 1 KiB along each edge (issue 20), µs per edge.
fn target(tier: &str) -> Option<f64> {
    match tier {
        "in-process" => Some(5.0),
        "across processes" => Some(20.0),
        _ => None,
    }
}

fn chain_yaml(work_us: u64, bytes: u64, isolation: Option<&str>) -> String {
    let mut y = String::from("name: chain\nfunctions:\n");
    for i in 0..CHAIN {
        let iso = isolation.map(|s| format!("isolation: {s}, ")).unwrap_or_default();
        let out = if bytes > 0 {
            format!(", outputs: {{out: {{size: {bytes}}}}}")
        } else {
            String::new()
        };
        y.push_str(&format!("  f{i:02}: {{{iso}runtime: {work_us}us{out}}}\n"));
    }
    y.push_str("steps:\n  - sequence:\n");
    for i in 0..CHAIN {
        y.push_str(&format!("      - task: f{i:02}\n"));
        if bytes > 0 && i > 0 {
            y.push_str(&format!("        inputs: {{in: f{:02}.out}}\n", i - 1));
        }
    }
    y
}

/// CPU time (ns) of every thread of process `pid` so far, from the scheduler's statistics.
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// This process's children (the daemon's instances).
fn children() -> Vec<u32> {
    let me = std::process::id();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .filter_map(|p| p.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                // `pid (comm) state ppid …`: the fields after the last `)`.
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(me)
            })
        })
        .collect()
}

/// CPU time so far of this process (the daemon) and of its children (the instances), ns.
fn cpu_now() -> (u64, u64) {
    let kids = children().into_iter().map(cpu_ns).sum();
    (cpu_ns(std::process::id()), kids)
}

struct Measured {
    e2e: f64,
    exec: f64,
    added: f64,
    daemon_cpu: f64,
    instances_cpu: f64,
}

fn measure(
    bin: &Path,
    (work_us, busy): (u64, bool),
    bytes: u64,
    (isolation, chain): (Option<&str>, bool),
    runs: usize,
) -> Measured {
    let mut c = DaemonConfig::new(PackCommand {
        program: bin.to_path_buf(),
        args: vec!["__pack".into(), "synthetic".into()],
    });
    c.arena_bytes = 256 << 20;
    c.synthetic_busy = busy;
    c.chain = chain;
    let daemon = Daemon::start(c).expect("the daemon starts");
    let wf = Arc::new(
        load_str(&chain_yaml(work_us, bytes, isolation), "chain.yaml", "chain")
            .expect("valid workflow")
            .workflow,
    );
    let cfg = PlannerConfig {
        allow_overcommit: true,
        ..PlannerConfig::default()
    };
    let plan = partition(&wf, &ClusterView::uniform(1, 64), &cfg).expect("plan");
    daemon.install(wf, plan).expect("install");
    let invoke = || -> Report {
        let r = daemon
            .invoke(Invoke::new("chain", 1, json!({})))
            .report()
            .expect("the invocation starts");
        assert_eq!(r.status, "ok", "{:?}", r.error);
        r
    };
    for _ in 0..WARMUP {
        invoke();
    }
    let (d0, i0) = cpu_now();
    let (mut e2e, mut exec, mut added) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let r = invoke();
        let sum: f64 = r.functions.iter().map(|f| f.exec_us).sum();
        e2e.push(r.e2e_us);
        exec.push(sum);
        added.push((r.e2e_us - sum) / (CHAIN - 1) as f64);
    }
    let (d1, i1) = cpu_now();
    let edges = (runs * (CHAIN - 1)) as f64;
    Measured {
        e2e: median(&mut e2e),
        exec: median(&mut exec),
        added: median(&mut added),
        daemon_cpu: d1.saturating_sub(d0) as f64 / 1e3 / edges,
        instances_cpu: i1.saturating_sub(i0) as f64 / 1e3 / edges,
    }
}

/// Ray's added per edge by `WORKus_BYTESB` (µs), or why there is none.
fn ray(runs: usize) -> Result<serde_json::Value, String> {
    let python = std::env::var_os("FAASFLOW_PYTHON").ok_or("FAASFLOW_PYTHON is not set")?;
    eprintln!("edges: Ray …");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/reference.py");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .args(["ray-edges", &runs.to_string()])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", Path::new(&python).display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
        return Err(format!("Ray did not run ({last})"));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.starts_with('{')).unwrap_or("");
    serde_json::from_str(line).map_err(|e| format!("Ray printed no figures: {e}"))
}

fn work_label(us: u64, busy: bool) -> String {
    let how = if busy { ", busy" } else { "" };
    match us {
        0 => "0".into(),
        u if u < 1000 => format!("{u} µs{how}"),
        u => format!("{} ms{how}", u / 1000),
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("edges bench: run with `cargo bench -p faasflow-benchmarks --bench edges`");
        return;
    }
    let bin = faasflow_bin();
    println!(
        "Machine: {}; a chain of {CHAIN} `faasflow __pack synthetic` functions, medians over the invocations after {WARMUP} warm-up ones",
        machine_line()
    );
    println!();
    let ray = ray(if quick() { 3 } else { 12 });
    println!(
        "| work per function | data per edge | tier | invocations | e2e | Σ exec | added per edge | CPU per edge: daemon | CPU per edge: instances | Ray, added per edge | target (1 ms, 1 KiB) |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
    let mut figures = serde_json::Map::new();
    for (work, busy, full, short) in WORK {
        let runs = if quick() { short } else { full };
        for bytes in [0u64, 1024] {
            for (tier, isolation, chain) in TIERS {
                eprintln!("edges: {} of work, {bytes} B per edge, {tier}", work_label(work, busy));
                let m = measure(&bin, (work, busy), bytes, (isolation, chain), runs);
                let target = match (work, bytes, target(tier)) {
                    (1_000, 1024, Some(t)) => {
                        format!("≤ {} µs: {}", t, if m.added <= t { "met" } else { "missed" })
                    }
                    _ => String::new(),
                };
                let ray_cell = match &ray {
                    Ok(v) if isolation.is_some() && !busy => v[format!("{work}us_{bytes}B")]
                        .as_f64()
                        .map(|us| format!("{} ({:.0}×)", fmt_us(us), us / m.added.max(0.01)))
                        .unwrap_or_default(),
                    _ => String::new(),
                };
                println!(
                    "| {} | {} | {tier} | {runs} | {} | {} | {} | {} | {} | {ray_cell} | {target} |",
                    work_label(work, busy),
                    if bytes == 0 {
                        "none".to_owned()
                    } else {
                        "1 KiB".to_owned()
                    },
                    fmt_us(m.e2e),
                    fmt_us(m.exec),
                    fmt_us(m.added),
                    fmt_us(m.daemon_cpu),
                    fmt_us(m.instances_cpu),
                );
                figures.insert(
                    format!(
                        "{work}us{}_{bytes}B_{}",
                        if busy { "_busy" } else { "" },
                        tier.replace(' ', "_")
                    ),
                    json!({"added_us": m.added, "e2e_us": m.e2e, "exec_us": m.exec,
                           "daemon_cpu_us": m.daemon_cpu, "instances_cpu_us": m.instances_cpu}),
                );
            }
        }
    }
    if let Ok(v) = &ray {
        figures.insert("ray".into(), v.clone());
    }
    record_figure("edges", serde_json::Value::Object(figures));
    println!();
    match &ray {
        Ok(v) => println!(
            "Ray {} in a private virtualenv, 2 CPUs, on the same chain in the same run: tasks that sleep the same time and return the same bytes; its added per edge is (chain time − 50 × the task's own time, measured in the driver) / 49, beside the across-processes row (Ray runs tasks in worker processes); the ratio is Ray's over faasflow's.",
            v["version"].as_str().unwrap_or("?")
        ),
        Err(why) => println!("Ray: not measured in this run: {why}."),
    }
}
