//! The data plane on one worker, end to end through the real daemon runtime and real instance
//! processes (`faasflow __pack synthetic`): per-edge trigger latency along a chain of no-op
//! functions, object hand-off time by size and tier next to memcpy, and no-op executions per
//! second. Every reference is measured in the same run. Prints Markdown tables on stdout and
//! progress on stderr.
//!
//! Run: `cargo build --release -p faasflow-cli && cargo bench -p faasflow-benchmarks --bench
//! dataplane` (or `cargo xtask bench`, which sets `FAASFLOW_BIN`).

use std::collections::{HashSet, VecDeque};
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use faasflow_benchmarks::{
    faasflow_bin, fmt_ratio, fmt_size, fmt_us, machine_line, median, pct, quick, record_figure, runs,
};
use faasflow_core::report::{FunctionRecord, Report};
use faasflow_core::{ClusterView, PlannerConfig};
use faasflow_daemon::api::{DaemonError, Invocation, Invoke};
use faasflow_daemon::config::DaemonConfig;
use faasflow_daemon::daemon::Daemon;
use faasflow_daemon::pool::PackCommand;
use faasflow_planner::load::load_str;
use faasflow_planner::partition::partition;
use serde_json::json;

/// Functions in the chain.
const CHAIN: usize = 50;
const CHAIN_WARMUP: usize = 20;
/// Invocations of the chain (after the warm-up ones).
fn chain_runs() -> usize {
    runs(200, 30)
}
const MPSC_ROUNDS: usize = 20_000;
const HANDOFF_WARMUP: usize = 2;
/// Outstanding invocations of the closed loop.
const K: usize = 64;
const LOOP_WARMUP: Duration = Duration::from_secs(1);
/// How long the closed loop is measured.
fn loop_time() -> Duration {
    if quick() {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(3)
    }
}
/// Each point of the throughput/latency sweep: warm-up, then measured.
const SWEEP_WARMUP: Duration = Duration::from_millis(300);
const SWEEP_TIME: Duration = Duration::from_secs(1);
const FOREACH_WIDTH: usize = 1000;
const FOREACH_WARMUP: usize = 3;
/// Invocations of the foreach (after the warm-up ones).
fn foreach_runs() -> usize {
    runs(10, 3)
}
const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

fn config(bin: &Path) -> DaemonConfig {
    let mut c = DaemonConfig::new(PackCommand {
        program: bin.to_path_buf(),
        args: vec!["__pack".into(), "synthetic".into()],
    });
    c.arena_bytes = 1 << 30;
    c
}

struct Bench {
    daemon: Daemon,
}

impl Bench {
    fn start(c: DaemonConfig) -> Self {
        Bench {
            daemon: Daemon::start(c).expect("the daemon starts"),
        }
    }

    fn install(&self, yaml: &str) {
        let wf = Arc::new(load_str(yaml, "bench.yaml", "bench").expect("valid workflow").workflow);
        let cfg = PlannerConfig {
            allow_overcommit: true,
            ..PlannerConfig::default()
        };
        let plan = partition(&wf, &ClusterView::uniform(1, 64), &cfg).expect("plan");
        self.daemon.install(wf, plan).expect("install");
    }

    fn invoke(&self, wf: &str, input: serde_json::Value) -> Report {
        ok(self.daemon.invoke(Invoke::new(wf, 1, input)).report())
    }
}

fn ok(r: Result<Report, DaemonError>) -> Report {
    let r = r.expect("the invocation starts");
    assert_eq!(r.status, "ok", "invocation failed: {:?}", r.error);
    r
}

fn record<'a>(r: &'a Report, name: &str) -> &'a FunctionRecord {
    r.functions
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no record of `{name}`"))
}

// ---------------------------------------------------------------------------------------------
// 1. Per-edge trigger latency

fn chain_yaml(name: &str, isolation: Option<&str>) -> String {
    let mut y = format!("name: {name}\nfunctions:\n");
    for i in 0..CHAIN {
        match isolation {
            Some(iso) => y.push_str(&format!("  f{i:02}: {{isolation: {iso}, runtime: 0ms}}\n")),
            None => y.push_str(&format!("  f{i:02}: {{runtime: 0ms}}\n")),
        }
    }
    y.push_str("steps:\n  - sequence:\n");
    for i in 0..CHAIN {
        y.push_str(&format!("      - task: f{i:02}\n"));
    }
    y
}

struct ChainResult {
    instances: usize,
    edges: Vec<f64>,
    e2e: Vec<f64>,
}

fn chain(bin: &Path, isolation: Option<&str>) -> ChainResult {
    let b = Bench::start(config(bin));
    b.install(&chain_yaml("chain", isolation));
    for _ in 0..CHAIN_WARMUP {
        b.invoke("chain", json!({}));
    }
    let mut res = ChainResult {
        instances: 0,
        edges: Vec::with_capacity(chain_runs() * (CHAIN - 1)),
        e2e: Vec::with_capacity(chain_runs()),
    };
    let mut instances = HashSet::new();
    for _ in 0..chain_runs() {
        let r = b.invoke("chain", json!({}));
        let recs: Vec<&FunctionRecord> = (0..CHAIN).map(|i| record(&r, &format!("f{i:02}"))).collect();
        for w in recs.windows(2) {
            res.edges.push((w[1].end_us - w[0].end_us) - w[1].exec_us);
        }
        instances.extend(recs.iter().filter_map(|f| f.instance));
        res.e2e.push(r.e2e_us);
    }
    res.instances = instances.len();
    res
}

/// One-way latency between two threads through std mpsc: half of each round trip, µs.
fn mpsc_one_way() -> Vec<f64> {
    let (to_echo, echo_in) = mpsc::channel::<u64>();
    let (to_ping, ping_in) = mpsc::channel::<u64>();
    let echo = std::thread::spawn(move || {
        for v in echo_in {
            if to_ping.send(v).is_err() {
                break;
            }
        }
    });
    let mut samples = Vec::with_capacity(MPSC_ROUNDS);
    for i in 0..(MPSC_ROUNDS + 1000) as u64 {
        let t = Instant::now();
        to_echo.send(i).expect("echo thread");
        let v = ping_in.recv().expect("echo thread");
        let d = t.elapsed();
        assert_eq!(v, i);
        if i >= 1000 {
            samples.push(d.as_secs_f64() * 1e6 / 2.0);
        }
    }
    drop(to_echo);
    echo.join().expect("echo thread");
    samples
}

fn verdict(value: f64, target: f64) -> &'static str {
    if value <= target { "met" } else { "missed" }
}

fn trigger_latency(bin: &Path) {
    eprintln!("dataplane: chain of {CHAIN}, in one instance");
    let mut inproc = chain(bin, None);
    eprintln!("dataplane: chain of {CHAIN}, one process per function");
    let mut procs = chain(bin, Some("process"));
    eprintln!("dataplane: mpsc reference");
    let mut mpsc = mpsc_one_way();

    println!(
        "Per-edge trigger latency along a chain of {CHAIN} no-op functions: (end_us[i+1] − end_us[i]) − exec_us[i+1], over all {} edges of {} invocations after {CHAIN_WARMUP} warm-up ones",
        CHAIN - 1,
        chain_runs()
    );
    println!();
    println!("| path | instances | edges | p50 per edge | p99 per edge | e2e p50 (50 functions) | target per edge |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    for (name, r, target) in [
        ("in-process (one instance, default isolation)", &mut inproc, 5.0),
        ("across processes (`isolation: process` each)", &mut procs, 50.0),
    ] {
        let p50 = pct(&mut r.edges, 50.0);
        let p99 = pct(&mut r.edges, 99.0);
        println!(
            "| {name} | {} | {} | {} | {} | {} | ≤ {target} µs: {} |",
            r.instances,
            r.edges.len(),
            fmt_us(p50),
            fmt_us(p99),
            fmt_us(median(&mut r.e2e)),
            verdict(p50, target)
        );
    }
    record_figure(
        "per_edge_one_worker",
        json!({
            "in_process_us": {"p50": pct(&mut inproc.edges, 50.0), "p99": pct(&mut inproc.edges, 99.0)},
            "across_processes_us": {"p50": pct(&mut procs.edges, 50.0), "p99": pct(&mut procs.edges, 99.0)},
            "mpsc_us": {"p50": pct(&mut mpsc, 50.0), "p99": pct(&mut mpsc, 99.0)},
        }),
    );
    println!(
        "| reference: std mpsc round trip / 2, 2 threads | – | {} | {} | {} | – | – |",
        mpsc.len(),
        fmt_us(pct(&mut mpsc, 50.0)),
        fmt_us(pct(&mut mpsc, 99.0))
    );
    println!("| for scale: Ray | – | – | ≈ 1.7 ms | – | – | – |");
    println!("| for scale: FaaSFlow (WorkerSP) | – | – | ≈ 15 ms | – | – | – |");
    println!();
}

// ---------------------------------------------------------------------------------------------
// 2. Object hand-off

/// Object sizes of the hand-off (256 MiB only in a full run).
fn sizes() -> Vec<u64> {
    if quick() {
        vec![KIB, MIB, 64 * MIB]
    } else {
        vec![KIB, MIB, 64 * MIB, 256 * MIB]
    }
}

fn handoff_runs(size: u64, tier: &str) -> usize {
    if size >= 256 * MIB && tier == "spill" {
        5
    } else {
        runs(20, 5)
    }
}

/// Both functions declare 2 GiB of memory so that the planner's quota keeps a 256 MiB edge in
/// memory (and groups the two when the consumer's isolation allows).
fn handoff_yaml(name: &str, size: u64, consumer_isolation: Option<&str>) -> String {
    let iso = consumer_isolation
        .map(|i| format!("isolation: {i}, "))
        .unwrap_or_default();
    format!(
        "name: {name}\nfunctions:\n  produce: {{memory: 2GiB, runtime: 0ms, outputs: {{out: {{type: bytes, size: {size}}}}}}}\n  consume: {{{iso}memory: 2GiB, runtime: 0ms}}\nsteps:\n  - task: produce\n  - task: consume\n    inputs: {{in: produce.out}}\n"
    )
}

/// Median hand-off time (µs) of `size` bytes, checking that the edge went through `tier`.
fn handoff(b: &Bench, name: &str, size: u64, tier: &str) -> f64 {
    let runs = handoff_runs(size, tier);
    let mut samples = Vec::with_capacity(runs);
    for i in 0..HANDOFF_WARMUP + runs {
        let r = b.invoke(name, json!({}));
        assert_eq!(r.edges.len(), 1, "{:?}", r.edges);
        let e = &r.edges[0];
        assert_eq!((e.tier.as_str(), e.bytes), (tier, size), "{name}: {e:?}");
        let (p, c) = (record(&r, "produce"), record(&r, "consume"));
        if tier == "in-process" {
            assert_eq!(p.instance, c.instance, "{name}: one instance");
        }
        if i >= HANDOFF_WARMUP {
            samples.push((c.end_us - p.end_us) - c.exec_us);
        }
    }
    median(&mut samples)
}

/// Median time (µs) of copying `size` bytes from a buffer into a fresh, prefaulted one.
fn memcpy(size: u64, runs: usize) -> f64 {
    let src = vec![0x5au8; size as usize];
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs + 1 {
        let mut dst = vec![0u8; size as usize];
        dst.fill(1); // fault every page in before the clock starts
        let t = Instant::now();
        dst.copy_from_slice(black_box(&src));
        black_box(&mut dst);
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    samples.remove(0);
    median(&mut samples)
}

fn object_handoff(bin: &Path) {
    let tiers: [(&str, Option<&str>); 3] = [
        ("in-process", None),
        ("shared-memory", Some("process")),
        ("spill", None),
    ];
    // results[size][tier]
    let sizes = sizes();
    let mut results = vec![[0.0f64; 3]; sizes.len()];
    {
        // Quota = the arena, so that nothing spills.
        let mut c = config(bin);
        c.quota_bytes = Some(c.arena_bytes);
        let b = Bench::start(c);
        for (si, &size) in sizes.iter().enumerate() {
            for (ti, &(tier, iso)) in tiers[..2].iter().enumerate() {
                eprintln!("dataplane: hand-off of {} through {tier}", fmt_size(size));
                let name = format!("h{si}{ti}");
                b.install(&handoff_yaml(&name, size, iso));
                results[si][ti] = handoff(&b, &name, size, tier);
            }
        }
    }
    {
        let mut c = config(bin);
        c.quota_bytes = Some(0);
        // Each call on its own: a consumer started on its producer's thread reads the output
        // in place, before any spill.
        c.chain = false;
        let b = Bench::start(c);
        for (si, &size) in sizes.iter().enumerate() {
            eprintln!("dataplane: hand-off of {} through spill", fmt_size(size));
            let name = format!("s{si}");
            b.install(&handoff_yaml(&name, size, tiers[2].1));
            results[si][2] = handoff(&b, &name, size, "spill");
        }
    }
    let memcpys: Vec<f64> = sizes
        .iter()
        .map(|&size| {
            eprintln!("dataplane: memcpy of {}", fmt_size(size));
            memcpy(size, 20)
        })
        .collect();

    println!(
        "Object hand-off producer → consumer: (end_us[consumer] − end_us[producer]) − exec_us[consumer], median of 20 runs per cell (5 for 256 MiB spill) after {HANDOFF_WARMUP} warm-up ones; memcpy into a fresh, prefaulted buffer, median of 20"
    );
    println!();
    println!(
        "| size | memcpy | in-process | × memcpy | shared memory (other process) | × memcpy | spill (quota 0) | × memcpy |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (si, &size) in sizes.iter().enumerate() {
        let m = memcpys[si];
        let r = results[si];
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            fmt_size(size),
            fmt_us(m),
            fmt_us(r[0]),
            fmt_ratio(r[0] / m),
            fmt_us(r[1]),
            fmt_ratio(r[1] / m),
            fmt_us(r[2]),
            fmt_ratio(r[2] / m)
        );
    }
    record_figure(
        "handoff_one_worker",
        json!({
            "sizes": sizes,
            "memcpy_us": memcpys,
            "in_process_us": results.iter().map(|r| r[0]).collect::<Vec<_>>(),
            "shared_memory_us": results.iter().map(|r| r[1]).collect::<Vec<_>>(),
            "spill_us": results.iter().map(|r| r[2]).collect::<Vec<_>>(),
        }),
    );
    let shm64 = results[2][1];
    println!();
    println!(
        "Target: 64 MiB across processes < 1 ms (no copy): {} ({}).",
        fmt_us(shm64),
        if shm64 < 1000.0 { "met" } else { "missed" }
    );
    println!();
}

// ---------------------------------------------------------------------------------------------
// 3. No-op executions per second

const NOOP: &str = "name: noop\nfunctions:\n  noop: {runtime: 0ms}\nsteps:\n  - task: noop\n";

const FOREACH: &str = "name: fan\nfunctions:\n  noop: {runtime: 0ms}\nsteps:\n  - foreach:\n      over: input.items\n      max_concurrency: 0\n      do:\n        - task: noop\n          inputs: {item: each.item}\n";

/// Closed loop with `K` invocations outstanding for `time`: (invocations completed, elapsed,
/// e2e µs of each).
fn closed_loop(b: &Bench, time: Duration) -> (usize, Duration, Vec<f64>) {
    closed_loop_k(b, K, time)
}

/// `k` invocations outstanding for `time`: (ended, time taken, their e2e µs).
fn closed_loop_k(b: &Bench, k: usize, time: Duration) -> (usize, Duration, Vec<f64>) {
    let mut outstanding: VecDeque<Invocation> = VecDeque::with_capacity(k);
    let mut e2e = Vec::new();
    let start = Instant::now();
    while outstanding.len() < k {
        outstanding.push_back(b.daemon.invoke(Invoke::new("noop", 1, json!({}))));
    }
    let mut done = 0;
    while start.elapsed() < time {
        // Wait for the oldest (invocations of one task end about in order), then collect
        // whatever else has ended, and top up to K.
        let oldest = outstanding.pop_front().expect("k > 0");
        e2e.push(ok(oldest.report()).e2e_us);
        done += 1;
        let mut i = 0;
        while i < outstanding.len() {
            match outstanding[i].try_take() {
                Some(r) => {
                    e2e.push(ok(r.unwrap_or(Err(DaemonError::Stopped))).e2e_us);
                    done += 1;
                    outstanding.remove(i);
                }
                None => i += 1,
            }
        }
        while outstanding.len() < k {
            outstanding.push_back(b.daemon.invoke(Invoke::new("noop", 1, json!({}))));
        }
    }
    let elapsed = start.elapsed();
    for rx in outstanding {
        ok(rx.report());
    }
    (done, elapsed, e2e)
}

fn throughput(bin: &Path) {
    let b = Bench::start(config(bin));
    b.install(NOOP);
    b.install(FOREACH);
    eprintln!("dataplane: closed loop, K = {K}");
    closed_loop(&b, LOOP_WARMUP);
    let (done, elapsed, mut e2e) = closed_loop(&b, loop_time());
    let per_s = done as f64 / elapsed.as_secs_f64();
    let stats = b.daemon.stats().expect("stats");

    // Throughput against latency: the same closed loop with 1, 4, 16, 64 and 256 outstanding.
    let mut sweep = Vec::new();
    for k in [1usize, 4, 16, 64, 256] {
        eprintln!("dataplane: closed loop, k = {k}");
        closed_loop_k(&b, k, SWEEP_WARMUP);
        let (n, t, mut lat) = closed_loop_k(&b, k, SWEEP_TIME);
        sweep.push(json!({
            "outstanding": k,
            "per_s": n as f64 / t.as_secs_f64(),
            "e2e_p50_us": pct(&mut lat, 50.0),
            "e2e_p99_us": pct(&mut lat, 99.0),
        }));
    }
    record_figure("throughput_latency_one_worker", json!(sweep));

    eprintln!("dataplane: foreach over {FOREACH_WIDTH}");
    let items: Vec<u32> = (0..FOREACH_WIDTH as u32).collect();
    let mut fan = Vec::with_capacity(foreach_runs());
    for i in 0..FOREACH_WARMUP + foreach_runs() {
        let r = b.invoke("fan", json!({ "items": items }));
        let n = r.functions.iter().filter(|f| f.name == "noop" && !f.skipped).count();
        assert_eq!(n, FOREACH_WIDTH);
        if i >= FOREACH_WARMUP {
            fan.push(r.e2e_us);
        }
    }
    let fan_e2e = median(&mut fan);

    println!("No-op function executions per second on one worker (synthetic body, runtime 0; default isolation)");
    println!();
    println!("| workload | executions | time | executions/s | e2e p50 | e2e p99 | target |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    println!(
        "| one-task workflow, closed loop, {K} invocations outstanding ({} instance(s) at the end) | {done} | {:.2} s | {:.0} | {} | {} | ≥ 10,000/s: {} |",
        stats.instances,
        elapsed.as_secs_f64(),
        per_s,
        fmt_us(pct(&mut e2e, 50.0)),
        fmt_us(pct(&mut e2e, 99.0)),
        if per_s >= 10_000.0 { "met" } else { "missed" }
    );
    println!(
        "| foreach over {FOREACH_WIDTH} elements in one invocation, max_concurrency 0 (median of {}) | {FOREACH_WIDTH} | {} | {:.0} | {} | – | – |",
        foreach_runs(),
        fmt_us(fan_e2e),
        FOREACH_WIDTH as f64 / (fan_e2e / 1e6),
        fmt_us(fan_e2e)
    );
    println!();
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench`-less arguments: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("dataplane bench: run with `cargo bench -p faasflow-benchmarks --bench dataplane`");
        return;
    }
    let bin = faasflow_bin();
    let t = Instant::now();
    println!(
        "Machine: {}; functions: `faasflow __pack synthetic` instances",
        machine_line()
    );
    println!();
    trigger_latency(&bin);
    object_handoff(&bin);
    throughput(&bin);
    eprintln!("dataplane: done in {:.0} s", t.elapsed().as_secs_f64());
}
