//! The memory probe's cost per page fault: the time to fault in 64 MiB of fresh anonymous
//! pages (16,384 faults, each updating the process's resident counters and so firing the
//! `kmem/rss_stat` tracepoint) without the BPF program loaded, with it loaded but this process
//! not registered (what every other process on the machine pays), and with this process
//! registered (what a measured instance pays). The three are interleaved, round after round,
//! so that the machine's drift hits them alike. Prints a Markdown table on stdout.
//!
//! Run: `cargo bench -p faasflow-benchmarks --bench probe` (or `cargo xtask bench`); needs the
//! privilege to load BPF programs (root).

use std::time::Instant;

use faasflow_benchmarks::{fmt_us, machine_line, median, pct};
use faasflow_ebpf::{Probe, ProbeMode};

const BYTES: usize = 64 << 20;
const PAGE: usize = 4096;
const ROUNDS: usize = 41;

/// Faults in `BYTES` of fresh pages (a new mapping each time: glibc maps an allocation this
/// large on its own and unmaps it when it is freed) and returns the time, µs.
fn fault_in() -> f64 {
    let t = Instant::now();
    // Zeroed memory this large comes from a fresh mapping whose pages are not touched until
    // written (calloc maps it; the kernel zeroes each page on its first fault).
    let mut buf = vec![0u8; BYTES];
    for i in (0..BYTES).step_by(PAGE) {
        buf[i] = 1;
    }
    std::hint::black_box(&buf);
    let us = t.elapsed().as_secs_f64() * 1e6;
    drop(buf);
    us
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("probe bench: run with `cargo bench -p faasflow-benchmarks --bench probe`");
        return;
    }
    println!("Machine: {}", machine_line());
    println!();
    let faults = (BYTES / PAGE) as f64;
    let (mut off, mut idle, mut measured) = (Vec::new(), Vec::new(), Vec::new());
    let pid = std::process::id();
    for round in 0..=ROUNDS {
        let a = fault_in();
        let mut probe = match Probe::new(ProbeMode::Ebpf) {
            Ok((p, _)) => p,
            Err(e) => {
                println!("Not measured: {e}");
                return;
            }
        };
        let b = fault_in();
        probe.track(pid).expect("register this process");
        let c = fault_in();
        let peak = probe.peak(pid).expect("its peak");
        assert!(
            peak >= BYTES as u64,
            "the probe saw {peak} bytes of a {BYTES}-byte touch"
        );
        drop(probe);
        // The first round warms up allocator and page tables.
        if round > 0 {
            off.push(a);
            idle.push(b);
            measured.push(c);
        }
    }
    // Each round's difference to its own reference, so that drift between rounds cancels.
    let cost = |v: &[f64]| -> Vec<f64> { v.iter().zip(&off).map(|(x, a)| (x - a) / faults * 1e3).collect() };
    let (mut idle_ns, mut measured_ns) = (cost(&idle), cost(&measured));
    let base = median(&mut off);
    println!(
        "Time to fault in 64 MiB of fresh pages ({} faults), median of {ROUNDS} interleaved rounds; the probe's cost per fault is the median of each round's difference to its reference (p25–p75 beside it: differences within that spread are noise)",
        faults as u64
    );
    println!();
    println!("| probe | 64 MiB | per fault | probe's cost per fault (p25–p75) | target < 1 µs |");
    println!("|---|---:|---:|---:|---|");
    println!(
        "| not loaded (reference) | {} | {:.0} ns | – | – |",
        fmt_us(base),
        base / faults * 1e3
    );
    let row = |what: &str, v: &mut Vec<f64>, ns: &mut Vec<f64>| {
        let m = median(ns);
        println!(
            "| {what} | {} | {:.0} ns | {m:.0} ns ({:.0} – {:.0}) | {} |",
            fmt_us(median(v)),
            median(v) / faults * 1e3,
            pct(ns, 25.0),
            pct(ns, 75.0),
            if m < 1000.0 { "met" } else { "missed" }
        );
    };
    faasflow_benchmarks::record_figure(
        "probe_cost_per_fault_ns",
        serde_json::json!({
            "not_registered": median(&mut idle_ns),
            "registered": median(&mut measured_ns),
        }),
    );
    row("loaded, this process not registered", &mut idle, &mut idle_ns);
    row("loaded, this process registered", &mut measured, &mut measured_ns);
}
