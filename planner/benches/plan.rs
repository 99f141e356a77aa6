//! Planning benchmark: time and peak heap of one `partition` call on generated layered DAGs
//! (about 2 edges per task) for a 3-worker cluster whose slots never bind, next to a reference
//! measured in the same run on the same graphs (a topological sort), so that ratios can be
//! compared across machines.
//!
//! Run with `cargo bench -p faasflow-planner --bench plan`; prints a Markdown table.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use faasflow_core::{ClusterView, PlannerConfig};
use faasflow_planner::{GenParams, partition, random_workflow};

/// The system allocator, counting the bytes currently allocated and their high-water mark.
struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

impl Counting {
    fn grew(by: usize) {
        let now = CURRENT.fetch_add(by, Ordering::Relaxed) + by;
        PEAK.fetch_max(now, Ordering::Relaxed);
    }

    fn shrank(by: usize) {
        CURRENT.fetch_sub(by, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract holds exactly as it does for `System`; the counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller guarantees `layout` has a non-zero size, as `System.alloc` needs.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            Counting::grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            Counting::grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller guarantees `ptr` came from this allocator (so from `System`) with
        // this `layout`.
        unsafe { System.dealloc(ptr, layout) };
        Counting::shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `ptr` came from `System` with `layout` and that
        // `new_size` is valid for `layout`'s alignment.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            Counting::shrank(layout.size());
            Counting::grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Median and minimum of `runs` timings of `f`, after one warm-up call.
fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, Duration) {
    black_box(f());
    let mut samples: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            black_box(f());
            start.elapsed()
        })
        .collect();
    samples.sort();
    (samples[samples.len() / 2], samples[0])
}

fn fmt_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.1} µs")
    } else {
        format!("{:.2} ms", us / 1_000.0)
    }
}

fn fmt_bytes(b: usize) -> String {
    if b < 1 << 20 {
        format!("{:.1} KiB", b as f64 / 1024.0)
    } else {
        format!("{:.2} MiB", b as f64 / f64::from(1 << 20))
    }
}

fn main() {
    let cfg = PlannerConfig::default();
    println!(
        "| tasks | edges | groups | merges | partition median | partition min | peak heap | topo sort median | partition / topo |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut figure = Vec::new();
    for tasks in [50usize, 200, 1_000, 5_000] {
        let wf = random_workflow(
            0x5eed_0000 + tasks as u64,
            &GenParams {
                tasks,
                ..GenParams::default()
            },
        );
        let needed = wf.slots_needed();
        // Each worker has room for half of the workflow: packing never binds.
        let cluster = ClusterView::uniform(3, needed.div_ceil(2) as u32);
        let runs = (2_000 / tasks).clamp(7, 41);

        let (median, min) = time(runs, || partition(&wf, &cluster, &cfg).expect("slots are large enough"));
        let (topo_median, _) = time(runs.max(21), || wf.topo_order());

        let before = CURRENT.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let plan = black_box(partition(&wf, &cluster, &cfg).expect("slots are large enough"));
        let peak = PEAK.load(Ordering::Relaxed) - before;

        println!(
            "| {tasks} | {} | {} | {} | {} | {} | {} | {} | {:.0}× |",
            wf.graph.edge_count(),
            plan.groups.len(),
            plan.merges,
            fmt_duration(median),
            fmt_duration(min),
            fmt_bytes(peak),
            fmt_duration(topo_median),
            median.as_secs_f64() / topo_median.as_secs_f64(),
        );
        figure.push(serde_json::json!({
            "tasks": tasks,
            "median_ms": median.as_secs_f64() * 1e3,
            "peak_heap_bytes": peak,
        }));
    }
    faasflow_benchmarks::record_figure("planner", serde_json::json!(figure));
}
