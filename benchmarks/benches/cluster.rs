//! Across workers, end to end through the real daemon runtime: two daemons in this process,
//! each with its own arena, instance processes (`faasflow __pack synthetic`) and QUIC
//! endpoint on loopback (certificates from a cluster CA made here). Measures the per-edge
//! trigger latency along a chain of no-op functions whose every edge crosses workers, next to
//! the same chain on one worker (one process per function); and the hand-off of objects from
//! 1 MiB to 256 MiB from a producer on one worker to a consumer on the other, next to a raw
//! single-stream loopback TCP transfer of the same bytes and memcpy; and, on one worker, a
//! chain passing a 1 KiB object along every edge through shared memory and, deployed
//! WorkerSP-remote, through a private `redis-server`. Prints Markdown tables.
//!
//! Run: `cargo build --release -p faasflow-cli && cargo bench -p faasflow-benchmarks --bench
//! cluster` (or `cargo xtask bench`).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use faasflow_benchmarks::{faasflow_bin, fmt_ratio, fmt_size, fmt_us, machine_line, median, pct};
use faasflow_core::dag::Workflow;
use faasflow_core::plan::{Mode, Plan, Tier};
use faasflow_core::report::{FunctionRecord, Report};
use faasflow_core::{ClusterView, PlannerConfig};
use faasflow_daemon::api::Invoke;
use faasflow_daemon::config::{DaemonConfig, PeerSettings};
use faasflow_daemon::daemon::Daemon;
use faasflow_daemon::io::peer::PeerConfig;
use faasflow_daemon::io::tls::ClusterCa;
use faasflow_daemon::pool::PackCommand;
use faasflow_planner::load::load_str;
use faasflow_planner::partition::partition;
use serde_json::json;

const CHAIN: usize = 50;
const CHAIN_WARMUP: usize = 20;
const CHAIN_RUNS: usize = 100;
const MIB: u64 = 1 << 20;
const SIZES: [u64; 5] = [MIB, 4 * MIB, 16 * MIB, 64 * MIB, 256 * MIB];
const HANDOFF_WARMUP: usize = 2;

fn runs_for(size: u64) -> usize {
    if size >= 64 * MIB { 5 } else { 15 }
}

struct Workers {
    daemons: Vec<Daemon>,
    view: ClusterView,
    peers: HashMap<String, SocketAddr>,
    next: u64,
}

/// A private `redis-server` on a free loopback port, stopped when dropped.
struct Redis {
    child: std::process::Child,
    url: String,
}

impl Redis {
    /// Starts one and waits until it answers `PING`; why not, when it cannot.
    fn start() -> Result<Redis, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start redis-server ({e}; Debian: apt-get install redis-server)"))?;
        let redis = Redis {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pong = TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
                s.write_all(b"PING\r\n")?;
                let mut b = [0u8; 7];
                s.read_exact(&mut b)?;
                Ok(b == *b"+PONG\r\n")
            });
            if pong.unwrap_or(false) {
                return Ok(redis);
            }
            if Instant::now() > deadline {
                return Err(format!("redis-server on port {port} did not answer within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Workers {
    fn start(bin: &Path, n: usize) -> Workers {
        Workers::start_with(bin, n, None)
    }

    /// [`Workers::start`] with the daemons' remote tier at `redis`.
    fn start_with(bin: &Path, n: usize, redis: Option<&str>) -> Workers {
        let ca = ClusterCa::generate("bench").expect("a cluster CA");
        let view = ClusterView::uniform(n, 64);
        let mut daemons = Vec::new();
        let mut peers = HashMap::new();
        for w in &view.workers {
            let mut c = DaemonConfig::new(PackCommand {
                program: bin.to_path_buf(),
                args: vec!["__pack".into(), "synthetic".into()],
            });
            c.arena_bytes = 1 << 30;
            c.name = w.name.clone();
            c.redis = redis.map(str::to_owned);
            c.peer = Some(PeerSettings {
                identity: ca.issue(&w.name).expect("a node certificate"),
                trust: ca.trust(),
                bind: "127.0.0.1:0".parse().expect("an address"),
                transport: PeerConfig::default(),
            });
            let d = Daemon::start(c).expect("the daemon starts");
            peers.insert(w.name.clone(), d.peer_addr().expect("a peer address"));
            daemons.push(d);
        }
        Workers {
            daemons,
            view,
            peers,
            next: 1,
        }
    }

    /// Installs `yaml` with its tasks placed round robin over the workers, in step order, and
    /// every edge between workers a peer edge.
    fn install(&self, yaml: &str) -> (Arc<Workflow>, Plan) {
        self.install_as(yaml, Mode::WorkerSp)
    }

    /// [`Workers::install`] planned in `mode`: WorkerSP-remote keeps every edge remote.
    fn install_as(&self, yaml: &str, mode: Mode) -> (Arc<Workflow>, Plan) {
        let wf = Arc::new(load_str(yaml, "bench.yaml", "bench").expect("valid workflow").workflow);
        let cfg = PlannerConfig {
            mode: Mode::MasterSp,
            allow_overcommit: true,
            ..PlannerConfig::default()
        };
        let mut plan = partition(&wf, &self.view, &cfg).expect("plan");
        plan.mode = mode;
        for t in &mut plan.edge_tiers {
            *t = if mode == Mode::WorkerSpRemote {
                Tier::Remote
            } else {
                Tier::Peer
            };
        }
        for d in &self.daemons {
            d.install_plan(wf.clone(), plan.clone(), &self.view, &self.peers)
                .expect("install");
        }
        (wf, plan)
    }

    fn invoke(&mut self, wf: &str, input: serde_json::Value) -> Report {
        self.next += 1;
        let r = self.daemons[0]
            .invoke(Invoke::new(wf, 1, input).with_id(self.next))
            .wait_timeout(Duration::from_secs(120))
            .ok()
            .flatten()
            .expect("the invocation ends")
            .expect("the invocation starts");
        assert_eq!(r.status, "ok", "invocation failed: {:?}", r.error);
        r
    }
}

fn record<'a>(r: &'a Report, name: &str) -> &'a FunctionRecord {
    r.functions
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no record of `{name}`"))
}

fn chain_yaml(isolation: &str) -> String {
    let mut y = "name: chain\nfunctions:\n".to_owned();
    for i in 0..CHAIN {
        y.push_str(&format!("  f{i:02}: {{runtime: 0ms{isolation}}}\n"));
    }
    y.push_str("steps:\n  - sequence:\n");
    for i in 0..CHAIN {
        y.push_str(&format!("      - task: f{i:02}\n"));
    }
    y
}

/// A chain of no-op functions, one process each, each passing a 1 KiB object to the next.
fn data_chain_yaml() -> String {
    passing_chain_yaml("runtime: 0ms, isolation: process")
}

/// A chain of functions with settings `spec`, each passing a 1 KiB output to the next.
fn passing_chain_yaml(spec: &str) -> String {
    let mut y = "name: chain\nfunctions:\n".to_owned();
    for i in 0..CHAIN {
        y.push_str(&format!(
            "  f{i:02}: {{{spec}, outputs: {{out: {{type: bytes, size: 1KiB}}}}}}\n"
        ));
    }
    y.push_str("steps:\n");
    for i in 0..CHAIN {
        y.push_str(&format!("  - task: f{i:02}\n"));
        if i > 0 {
            y.push_str(&format!("    inputs: {{x: f{:02}.out}}\n", i - 1));
        }
    }
    y
}

/// Per-edge latencies (µs) and e2e (µs) of [`data_chain_yaml`] on one worker, planned in
/// `mode`, and the tier its edges took (checked to be the same for all).
fn data_chain(bin: &Path, redis: Option<&str>, mode: Mode) -> (Vec<f64>, Vec<f64>, String) {
    let mut w = Workers::start_with(bin, 1, redis);
    w.install_as(&data_chain_yaml(), mode);
    let mut tiers = Vec::new();
    let (edges, e2e) = measure_chain(&mut w, |r| tiers.extend(r.edges.iter().map(|e| e.tier.clone())));
    tiers.dedup();
    assert_eq!(tiers.len(), 1, "the chain's edges took several tiers: {tiers:?}");
    (edges, e2e, tiers.remove(0))
}

/// A chain of functions that work 1 ms each and pass a 1 KiB output to the next.
fn work_chain_yaml() -> String {
    passing_chain_yaml("runtime: 1ms")
}

/// Invocations of [`work_chain_yaml`] measured (after 5 warm-up ones).
const WORK_RUNS: usize = 20;

/// Added per edge, µs, of [`work_chain_yaml`] on `workers` (placed alternately on 2): the
/// median over invocations of (e2e − Σ exec) / edges, as the edges bench reports it.
fn work_chain(bin: &Path, workers: usize) -> f64 {
    let mut w = Workers::start(bin, workers);
    w.install(&work_chain_yaml());
    for _ in 0..5 {
        w.invoke("chain", json!({}));
    }
    let mut added: Vec<f64> = (0..WORK_RUNS)
        .map(|_| {
            let r = w.invoke("chain", json!({}));
            let exec: f64 = r.functions.iter().map(|f| f.exec_us).sum();
            (r.e2e_us - exec) / (CHAIN - 1) as f64
        })
        .collect();
    median(&mut added)
}

/// Per-edge latencies (µs) and e2e (µs) of the chain on `workers`.
fn chain(bin: &Path, workers: usize) -> (Vec<f64>, Vec<f64>) {
    let mut w = Workers::start(bin, workers);
    // On one worker, one process per function: every edge crosses processes.
    let iso = if workers == 1 { ", isolation: process" } else { "" };
    let (wf, plan) = w.install(&chain_yaml(iso));
    if workers > 1 {
        let tasks: Vec<_> = wf
            .graph
            .node_indices()
            .filter(|n| wf.graph[*n].task().is_some())
            .collect();
        assert!(
            tasks.windows(2).all(|p| plan.worker_of(p[0]) != plan.worker_of(p[1])),
            "every edge of the chain crosses workers"
        );
    }
    measure_chain(&mut w, |_| {})
}

/// Invokes the installed chain `CHAIN_WARMUP` times, then `CHAIN_RUNS` times measured: the
/// per-edge latencies (µs) and end-to-end times (µs); `each` sees every measured report.
fn measure_chain(w: &mut Workers, mut each: impl FnMut(&Report)) -> (Vec<f64>, Vec<f64>) {
    for _ in 0..CHAIN_WARMUP {
        w.invoke("chain", json!({}));
    }
    let (mut edges, mut e2e) = (Vec::new(), Vec::new());
    for _ in 0..CHAIN_RUNS {
        let r = w.invoke("chain", json!({}));
        let recs: Vec<&FunctionRecord> = (0..CHAIN).map(|i| record(&r, &format!("f{i:02}"))).collect();
        for p in recs.windows(2) {
            edges.push((p[1].end_us - p[0].end_us) - p[1].exec_us);
        }
        e2e.push(r.e2e_us);
        each(&r);
    }
    (edges, e2e)
}

/// The cells `edges | p50 | p99 | e2e p50` of a per-edge table row.
fn edge_cells(edges: &mut [f64], e2e: &mut [f64]) -> String {
    format!(
        "{} | {} | {} | {}",
        edges.len(),
        fmt_us(pct(edges, 50.0)),
        fmt_us(pct(edges, 99.0)),
        fmt_us(median(e2e))
    )
}

fn handoff_yaml(size: u64) -> String {
    format!(
        "name: handoff\nfunctions:\n  produce: {{memory: 2GiB, runtime: 0ms, outputs: {{blob: {{type: bytes, size: {size}}}}}}}\n  consume: {{memory: 2GiB, runtime: 0ms}}\nsteps:\n  - task: produce\n  - task: consume\n    inputs: {{blob: produce.blob}}\n"
    )
}

/// Median hand-off time (consumer's end − producer's end − consumer's execution) and median
/// stream time (first to last byte at the receiver), µs.
fn handoff(bin: &Path, size: u64) -> (f64, f64) {
    let mut w = Workers::start(bin, 2);
    let (wf, plan) = w.install(&handoff_yaml(size));
    let node = |name: &str| {
        wf.graph
            .node_indices()
            .find(|n| wf.graph[*n].name == name)
            .expect("a task")
    };
    assert_ne!(plan.worker_of(node("produce")), plan.worker_of(node("consume")));
    let mut total = Vec::new();
    let mut stream = Vec::new();
    for i in 0..HANDOFF_WARMUP + runs_for(size) {
        let r = w.invoke("handoff", json!({}));
        let (p, c) = (record(&r, "produce"), record(&r, "consume"));
        let edge = r.edges.iter().find(|e| e.to == "consume").expect("the edge");
        assert_eq!((edge.tier.as_str(), edge.bytes), ("peer", size));
        if i >= HANDOFF_WARMUP {
            total.push((c.end_us - p.end_us) - c.exec_us);
            stream.push(edge.transfer_us);
        }
    }
    (median(&mut total), median(&mut stream))
}

/// Median time to send `size` bytes over one loopback TCP connection into a prefaulted
/// buffer (connect excluded), µs.
fn tcp(size: u64, runs: usize) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a TCP port");
    let addr = listener.local_addr().expect("its address");
    let len = size as usize;
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("a connection");
        let mut buf = vec![1u8; len];
        for _ in 0..runs {
            s.read_exact(&mut buf).expect("the bytes");
            s.write_all(&[1]).expect("the ack");
        }
    });
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let data = vec![7u8; len];
    let mut ack = [0u8; 1];
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        s.write_all(&data).expect("send");
        s.read_exact(&mut ack).expect("ack");
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    server.join().expect("the server");
    median(&mut times)
}

fn memcpy(size: u64, runs: usize) -> f64 {
    let src = vec![3u8; size as usize];
    let mut dst = vec![0u8; size as usize];
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&dst);
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    median(&mut times)
}

fn gbps(size: u64, us: f64) -> String {
    format!("{:.2} GB/s", size as f64 / us / 1e3)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("cluster bench: run with `cargo bench -p faasflow-benchmarks --bench cluster`");
        return;
    }
    let bin = faasflow_bin();
    let t = Instant::now();
    println!(
        "Machine: {}; 2 daemons on loopback in one process, QUIC with mutual TLS between them; functions: `faasflow __pack synthetic` instances",
        machine_line()
    );
    println!();

    eprintln!("cluster: chain of {CHAIN}, every edge across workers");
    let (mut cross, mut cross_e2e) = chain(&bin, 2);
    eprintln!("cluster: chain of {CHAIN} on one worker, one process per function");
    let (mut local, mut local_e2e) = chain(&bin, 1);
    println!(
        "Per-edge trigger latency across workers along a chain of {CHAIN} no-op functions placed alternately on 2 workers: (end_us[i+1] − end_us[i]) − exec_us[i+1], over all {} edges of {CHAIN_RUNS} invocations after {CHAIN_WARMUP} warm-up ones (times of both workers on one clock)",
        CHAIN - 1
    );
    println!();
    println!("| path | edges | p50 per edge | p99 per edge | e2e p50 | target per edge |");
    println!("|---|---:|---:|---:|---:|---|");
    let p50 = pct(&mut cross, 50.0);
    faasflow_benchmarks::record_figure(
        "per_edge_across_workers",
        serde_json::json!({"p50": p50, "p99": pct(&mut cross, 99.0)}),
    );
    println!(
        "| across workers (QUIC: Done message, object pushed) | {} | ≤ 150 µs: {} |",
        edge_cells(&mut cross, &mut cross_e2e),
        if p50 <= 150.0 { "met" } else { "missed" }
    );
    println!(
        "| reference: one worker, one process per function (shared memory) | {} | – |",
        edge_cells(&mut local, &mut local_e2e)
    );
    println!("| for scale: FaaSFlow (WorkerSP, across workers) | – | ≈ 13–20 ms | – | – | – |");
    println!();

    eprintln!("cluster: chain of {CHAIN} functions working 1 ms and passing 1 KiB, across workers and on one");
    let work_cross = work_chain(&bin, 2);
    let work_local = work_chain(&bin, 1);
    println!(
        "Functions that do work: a chain of {CHAIN} functions each working 1 ms (sleeping) and passing a 1 KiB output to the next; added per edge = (e2e − Σ exec) / {}, median of {WORK_RUNS} invocations after 5 warm-up ones (the edges section's measure)",
        CHAIN - 1
    );
    println!();
    println!("| path | added per edge | target |");
    println!("|---|---:|---|");
    println!(
        "| across workers (placed alternately on 2) | {} | ≤ 100 µs: {} |",
        fmt_us(work_cross),
        if work_cross <= 100.0 { "met" } else { "missed" }
    );
    println!(
        "| reference: the same chain and plan on one worker (a group, so an instance, per function: every edge across processes) | {} | – |",
        fmt_us(work_local)
    );
    faasflow_benchmarks::record_figure(
        "work_edge_across_workers",
        serde_json::json!({"added_us": work_cross, "one_worker_added_us": work_local}),
    );
    println!();

    eprintln!("cluster: chain passing 1 KiB objects on one worker, shared memory and Redis");
    let (mut shm, mut shm_e2e, shm_tier) = data_chain(&bin, None, Mode::WorkerSp);
    println!(
        "Per-edge trigger latency with a 1 KiB object on every edge, one worker, one process per function, along a chain of {CHAIN} (as above): the object in the worker's shared memory (WorkerSP), and stored in a private redis-server by its producer and read back by its consumer (WorkerSP-remote: the same plan and triggering)"
    );
    println!();
    println!("| tier | edges | p50 per edge | p99 per edge | e2e p50 |");
    println!("|---|---:|---:|---:|---:|");
    println!("| {shm_tier} | {} |", edge_cells(&mut shm, &mut shm_e2e));
    let mut figure = serde_json::json!({"shared_memory": {"p50": pct(&mut shm, 50.0), "p99": pct(&mut shm, 99.0)}});
    match Redis::start() {
        Ok(redis) => {
            let (mut remote, mut remote_e2e, tier) = data_chain(&bin, Some(&redis.url), Mode::WorkerSpRemote);
            println!("| {tier} (Redis) | {} |", edge_cells(&mut remote, &mut remote_e2e));
            figure["remote"] = serde_json::json!({"p50": pct(&mut remote, 50.0), "p99": pct(&mut remote, 99.0)});
        }
        Err(e) => println!("| remote (Redis) | not measured: {e} | | | |"),
    }
    faasflow_benchmarks::record_figure("per_edge_1kib_one_worker", figure);
    println!();

    let mut rows = Vec::new();
    for &size in &SIZES {
        eprintln!("cluster: hand-off of {} across workers", fmt_size(size));
        let (total, stream) = handoff(&bin, size);
        eprintln!("cluster: TCP and memcpy of {}", fmt_size(size));
        let tcp = tcp(size, runs_for(size) + 2);
        let m = memcpy(size, runs_for(size));
        rows.push((size, total, stream, tcp, m));
    }
    println!(
        "Object hand-off across workers, producer → consumer on the other worker: hand-off = (end_us[consumer] − end_us[producer]) − exec_us[consumer] (the push starts when the object is sealed, before the consumer is triggered); stream = first to last byte the receiver reads, written into its arena (it starts after the sender may have filled the windows, so it understates the transfer; the ratio to TCP uses the whole hand-off). Medians of 15 runs (5 from 64 MiB) after {HANDOFF_WARMUP} warm-up ones. Reference: one loopback TCP stream (std, Nagle off) of the same bytes into a prefaulted buffer, and memcpy; same run"
    );
    println!();
    println!(
        "| size | hand-off | hand-off rate | stream | raw TCP | TCP rate | hand-off rate / TCP rate | memcpy | target ≥ 50% of TCP |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    faasflow_benchmarks::record_figure(
        "handoff_across_workers",
        serde_json::json!(
            rows.iter()
                .map(|(size, total, stream, tcp, m)| serde_json::json!({
                    "bytes": size, "handoff_us": total, "stream_us": stream, "tcp_us": tcp, "memcpy_us": m
                }))
                .collect::<Vec<_>>()
        ),
    );
    for (size, total, stream, tcp, m) in rows {
        // The whole hand-off (trigger included) against the bare transfer: the conservative
        // ratio. The stream time alone starts at the first byte the receiver reads, after the
        // sender may have filled the flow-control windows.
        let ratio = tcp / total;
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            fmt_size(size),
            fmt_us(total),
            gbps(size, total),
            fmt_us(stream),
            fmt_us(tcp),
            gbps(size, tcp),
            fmt_ratio(ratio),
            fmt_us(m),
            if ratio >= 0.5 { "met" } else { "missed" }
        );
    }
    println!();
    eprintln!("cluster: done in {:.0} s", t.elapsed().as_secs_f64());
}
