//! Project automation (`cargo xtask …`): everything that is not a plain cargo build.
//!
//! - `ci`: the tidy checks, format check, clippy with warnings denied, the ring's loom check,
//!   every binary, the whole test suite, then a short run of every fuzz target (installing
//!   cargo-fuzz if needed).
//! - `tidy`: checks that read the workspace's source text, no build needed (see `tidy.rs`):
//!   the generated proto types stay in proto/, rpc/ and the two server adapters; faasflow-core
//!   reads no clock, does no I/O and depends only on thiserror, serde, serde_json, petgraph
//!   and cel, and the planner uses no runtime or RPC and reads files only in `load.rs`; the
//!   libraries (and the CLI's modules) neither print nor return `Result<_, String>`; no source
//!   file has more than 1,000 lines of non-test code; the top-level modules of a crate use
//!   each other in no cycle. What does not pass yet is listed, with why, in each check's
//!   `KNOWN` (printed as notes); an entry that passes fails the check until it is removed.
//! - `demo`: runs FaaSFlow's 8 benchmark workflows (the scientific four with synthetic bodies,
//!   the four applications for real in the pack `apps`) on one embedded worker (real processes
//!   and shared memory), then on a 3-worker local cluster (`faasflow up`) in WorkerSP and
//!   MasterSP with a progress bar, and prints their tables and plans; writes the figures, a
//!   latency-breakdown plot and a trace into `target/faasflow-demo/`.
//! - `bench`: the planner's benchmark (planning time and peak memory for generated DAGs), the
//!   control ring's latency, the data plane on one worker (`benchmarks/`), the peer transport
//!   between two workers on loopback (`benchmarks/`), the memory probe's cost per page fault
//!   (`benchmarks/`), containers against processes (cold start, warm calls, per edge; after
//!   `images`) and FaaSFlow's 8 workflows on one worker (the demo's table), written into
//!   `benchmarks/RESULTS.md`.
//! - `python`: builds the `faasflow` Python package (sdk/python) into a wheel with maturin and
//!   installs it, with numpy, into `target/python/venv`, the interpreter the Python tests use.
//! - `images`: builds the repo's packs as static executables and each into a `FROM scratch`
//!   Docker image `faasflow/<pack>` (see `images::PACKS`), for functions that run in containers.
//! - `chaos`: injects faults into local clusters (`cli/tests/chaos.rs`, `chaos_full`, on release
//!   builds) and writes the table into `docs/reliability.md`.
//! - `fuzz`: runs the cargo-fuzz targets of `fuzz/` for a while each (see `docs/testing.md`).
//!
//! One module per task; `suite` runs FaaSFlow's 8 workflows for `demo` and `bench`, `targets`
//! judges the earlier issues' targets, `plots` draws the figures, and `util` holds what every
//! task shares. The prose of the documents `bench` and `demo` write is in `xtask/templates/`.
#![forbid(unsafe_code)]

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

mod bench;
mod chaos;
mod ci;
mod demo;
mod fuzz;
mod images;
mod plots;
mod python;
mod python_image;
mod suite;
mod targets;
mod tidy;
mod util;

#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Tidy checks, format check, clippy (-D warnings), all tests, then every fuzz target for a
    /// few seconds.
    Ci,
    /// Check the workspace's source text: proto confinement, a pure core, no printing and no
    /// `Result<_, String>` in libraries, file size, no import cycles between modules.
    Tidy,
    /// Run FaaSFlow's 8 benchmark workflows on one worker, then on a local cluster in both modes.
    Demo {
        /// Workers of the local cluster.
        #[arg(long, default_value_t = 3)]
        workers: usize,
        /// Multiplies FaaSFlow's declared runtimes (1 s → 10 ms by default).
        #[arg(long, default_value_t = 0.01)]
        runtime_scale: f64,
        /// Multiplies FaaSFlow's declared data sizes.
        #[arg(long, default_value_t = 1.0)]
        data_scale: f64,
        /// Invocations per workflow (the table shows medians).
        #[arg(long, default_value_t = 3)]
        repeat: u32,
    },
    /// Run the planner, ring, data plane and peer transport benchmarks and record them in benchmarks/RESULTS.md.
    Bench {
        /// A reduced run (the data plane with fewer runs, containers, FaaSFlow's 8 workflows on 3
        /// workers once each) in a few minutes, written to target/bench-quick/ instead.
        #[arg(long)]
        quick: bool,
        /// One section only, into RESULTS.md: `python` (functions in Python against Ray and Dask),
        /// `edges` (per-edge cost for functions that do work), `cluster` (across workers) or
        /// `containers`.
        #[arg(long, value_name = "SECTION", value_parser = ["python", "edges", "cluster", "containers"], conflicts_with = "quick")]
        only: Option<String>,
    },
    /// Inject faults into local clusters (killed instances, daemons and Redis, a frozen daemon,
    /// hung functions, a burst of 10,000 invocations) and write the table to docs/reliability.md.
    Chaos,
    /// Build the faasflow Python package (sdk/python) into a wheel and install it, with numpy,
    /// into target/python/venv (maturin and numpy from PyPI, the first time).
    Python,
    /// Build the repo's packs into Docker images from scratch (faasflow/testkit, faasflow/example, faasflow/synthetic).
    Images,
    /// Run the fuzz targets of fuzz/ (cargo-fuzz on stable Rust, via RUSTC_BOOTSTRAP=1).
    Fuzz {
        /// One target (wdl, wdl_structured, faasflow_import, plan_proto, ring_frame, handshake,
        /// peer_message); all of them when omitted.
        #[arg(long)]
        target: Option<String>,
        /// Seconds to run each target (at least 1).
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
        seconds: u64,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = util::project_root();
    std::env::set_current_dir(&root).context("cannot enter the project root")?;
    match cli.task {
        Task::Ci => ci::ci(),
        Task::Tidy => tidy::tidy(&root),
        Task::Demo {
            workers,
            runtime_scale,
            data_scale,
            repeat,
        } => demo::demo(&root, workers, runtime_scale, data_scale, repeat),
        Task::Bench { only: Some(s), .. } if s == "edges" => bench::bench_edges(&root),
        Task::Bench { only: Some(s), .. } if s == "cluster" => bench::bench_cluster(&root),
        Task::Bench { only: Some(s), .. } if s == "containers" => bench::bench_containers(&root),
        Task::Bench { only: Some(_), .. } => bench::bench_python(&root),
        Task::Bench { quick: false, .. } => bench::bench(&root),
        Task::Bench { quick: true, .. } => bench::bench_quick(&root),
        Task::Images => images::images(&root).map(|_| ()),
        Task::Python => python::python(&root).map(|_| ()),
        Task::Chaos => chaos::chaos(&root),
        Task::Fuzz { target, seconds } => fuzz::fuzz(&root, target.as_deref(), seconds),
    }
}
