//! Project automation (`cargo xtask …`): everything that is not a plain cargo build.
//!
//! - `ci`: format check, clippy with warnings denied, the ring's loom check, every binary, the
//!   whole test suite, then a short run of every fuzz target (installing cargo-fuzz if needed).
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
//! - `images`: builds the repo's packs as static executables and each into a `FROM scratch`
//!   Docker image `faasflow/<pack>` (see [`PACKS`]), for functions that run in containers.
//! - `fuzz`: runs the cargo-fuzz targets of `fuzz/` for a while each (see `docs/testing.md`).
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

mod plots;
mod suite;
mod targets;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Format check, clippy (-D warnings), all tests, then every fuzz target for a few seconds.
    Ci,
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
    },
    /// Inject faults into local clusters (killed instances, daemons and Redis, a frozen daemon,
    /// hung functions, a burst of 10,000 invocations) and write the table to docs/reliability.md.
    Chaos,
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
    let root = project_root();
    std::env::set_current_dir(&root).context("cannot enter the project root")?;
    match cli.task {
        Task::Ci => ci(),
        Task::Demo {
            workers,
            runtime_scale,
            data_scale,
            repeat,
        } => demo(&root, workers, runtime_scale, data_scale, repeat),
        Task::Bench { quick: false } => bench(&root),
        Task::Bench { quick: true } => bench_quick(&root),
        Task::Images => images(&root).map(|_| ()),
        Task::Chaos => chaos(&root),
        Task::Fuzz { target, seconds } => fuzz(&root, target.as_deref(), seconds),
    }
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn run(what: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("==> {what}");
    let start = Instant::now();
    let status = cmd.status().with_context(|| format!("cannot start: {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    eprintln!("    {what}: ok in {:.1}s", start.elapsed().as_secs_f64());
    Ok(())
}

fn ci() -> Result<()> {
    run("cargo fmt --check", cargo().args(["fmt", "--all", "--", "--check"]))?;
    // The container tests need Docker and the packs' images. `.ci/run` sets
    // FAASFLOW_REQUIRE_DOCKER=1, so that there a missing Docker fails the run; elsewhere those
    // tests say they are skipped.
    match docker_version() {
        Ok(_) => {
            images(&project_root())?;
        }
        Err(e) if std::env::var_os("FAASFLOW_REQUIRE_DOCKER").is_some_and(|v| v == "1") => {
            bail!("{e} (FAASFLOW_REQUIRE_DOCKER=1: the container tests must run)")
        }
        Err(e) => eprintln!("==> note: {e}: the container tests will be skipped"),
    }
    run(
        "cargo clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    // The control ring under loom's model checker (its own target dir: other cfg flags).
    run(
        "loom: faasflow-shm ring",
        cargo()
            .args(["test", "--locked", "-p", "faasflow-shm", "--release", "--lib", "loom"])
            .env("RUSTFLAGS", "--cfg loom")
            .env("CARGO_TARGET_DIR", project_root().join("target/loom")),
    )?;
    // The end-to-end tests start the packs' executables (found next to `faasflow`): build
    // every binary of the workspace, which test builds alone do not.
    run(
        "cargo build --workspace --bins",
        cargo().args(["build", "--workspace", "--bins", "--locked"]),
    )?;
    // Doc tests first (nextest does not run them), so that the run ends with the main summary.
    run(
        "cargo test --doc",
        cargo().args(["test", "--workspace", "--locked", "--doc"]),
    )?;
    let nextest = Command::new("cargo-nextest")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if nextest {
        run(
            "cargo nextest run",
            cargo().args(["nextest", "run", "--workspace", "--locked", "--no-fail-fast"]),
        )?;
    } else {
        run(
            "cargo test",
            cargo().args(["test", "--workspace", "--locked", "--no-fail-fast"]),
        )?;
    }
    // Last, a short fuzz run: one build of every target, the inputs of fuzz/regressions
    // replayed, then each target for a few seconds from its seeds.
    if !has_cargo_fuzz() {
        run(
            "cargo install cargo-fuzz --locked",
            cargo().args(["install", "cargo-fuzz", "--locked"]),
        )?;
    }
    fuzz(&project_root(), None, CI_FUZZ_SECONDS)
}

/// Seconds `cargo xtask ci` runs each fuzz target.
const CI_FUZZ_SECONDS: u64 = 10;

/// The packs `images` builds: (package, pack name). The image of pack `P` is `faasflow/P`,
/// the name the daemon uses for a container function of pack `P` that names no `image`
/// (`faasflow/synthetic` for functions without a pack).
const PACKS: [(&str, &str); 3] = [
    ("faasflow-pack-testkit", "testkit"),
    ("faasflow-pack-example", "example"),
    ("faasflow-pack-synthetic", "synthetic"),
];

/// The Docker engine's version, or why it cannot be reached.
fn docker_version() -> Result<String> {
    let out = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .context("cannot run `docker`: install Docker (Debian: apt-get install docker.io)")?;
    if !out.status.success() {
        bail!(
            "Docker is not reachable ({}): start dockerd, or point DOCKER_HOST at it",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Builds the packs of [`PACKS`] as statically linked executables (their own target dir:
/// other RUSTFLAGS) and each into a `FROM scratch` image that runs it as user 65534, labelled
/// with its functions (`faasflow.functions`, comma-separated) so that a daemon needs not run
/// the image to list them. Returns the image names.
fn images(root: &Path) -> Result<Vec<String>> {
    let version = docker_version()?;
    eprintln!("==> Docker {version}");
    let host = String::from_utf8(
        Command::new("rustc")
            .arg("-vV")
            .output()
            .context("cannot run rustc")?
            .stdout,
    )?
    .lines()
    .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
    .context("`rustc -vV` names no host")?;
    let target_dir = cargo_target_dir(root).join("images");
    let mut build = cargo();
    build
        .args(["build", "--release", "--locked", "--target", &host, "--target-dir"])
        .arg(&target_dir)
        // A static executable runs in an image with nothing else in it.
        .env("RUSTFLAGS", "-C target-feature=+crt-static");
    for (package, _) in PACKS {
        build.args(["-p", package]);
    }
    run("cargo build (static packs)", &mut build)?;
    let mut names = Vec::new();
    for (package, pack) in PACKS {
        let exe = target_dir.join(&host).join("release").join(package);
        let listed = Command::new(&exe)
            .arg("--list")
            .output()
            .with_context(|| format!("cannot run {}", exe.display()))?;
        if !listed.status.success() {
            bail!(
                "`{} --list` failed: {}",
                exe.display(),
                String::from_utf8_lossy(&listed.stderr)
            );
        }
        let functions: Vec<String> = String::from_utf8_lossy(&listed.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        let context = target_dir.join("context").join(pack);
        std::fs::create_dir_all(&context)?;
        std::fs::copy(&exe, context.join("pack")).with_context(|| format!("cannot copy {}", exe.display()))?;
        std::fs::write(
            context.join("Dockerfile"),
            format!(
                "FROM scratch\nCOPY pack /pack\nLABEL faasflow.pack=\"{pack}\" faasflow.functions=\"{}\"\nUSER 65534:65534\nENTRYPOINT [\"/pack\"]\n",
                functions.join(",")
            ),
        )?;
        let image = format!("faasflow/{pack}");
        run(
            &format!("docker build {image}"),
            Command::new("docker")
                .args(["build", "--quiet", "--tag", &image])
                .arg(&context)
                // The classic builder: Debian's docker.io comes without buildx.
                .env("DOCKER_BUILDKIT", "0"),
        )?;
        names.push(image);
    }
    eprintln!("==> images: {}", names.join(", "));
    Ok(names)
}

/// The 8 FaaSFlow benchmark workflows, as (name, file relative to the repository, input): the
/// scientific four are FaaSFlow's own files with its synthetic body (inputs read, declared
/// bytes written, declared runtime slept); the four applications do real work of the same
/// kind and size in the pack `apps` (`benchmarks/apps`), their inputs generated from a seed.
/// The three deploy modes the bench compares.
const ALL_MODES: [&str; 3] = [suite::WORKERSP, suite::REMOTE_ONLY, suite::MASTERSP];

const BENCHMARKS: [(&str, &str, &str); 8] = [
    (
        "cycles",
        "tests/fixtures/faasflow-v1/benchmark/generator/cycles/flat_workflow.yaml",
        "{}",
    ),
    (
        "epigenomics",
        "tests/fixtures/faasflow-v1/benchmark/generator/epigenomics/flat_workflow.yaml",
        "{}",
    ),
    (
        "genome",
        "tests/fixtures/faasflow-v1/benchmark/generator/genome/flat_workflow.yaml",
        "{}",
    ),
    (
        "soykb",
        "tests/fixtures/faasflow-v1/benchmark/generator/soykb/flat_workflow.yaml",
        "{}",
    ),
    (
        "video",
        "benchmarks/workflows/video.yaml",
        r#"{"seed": 1, "frames": 75, "width": 640, "height": 360, "segment": 20}"#,
    ),
    (
        "recognizer",
        "benchmarks/workflows/recognizer.yaml",
        r#"{"seed": 1, "width": 640, "height": 680, "content": "adult", "text": "el sol"}"#,
    ),
    (
        "fileprocessing",
        "benchmarks/workflows/fileprocessing.yaml",
        r#"{"seed": 1, "bytes": 29600000}"#,
    ),
    (
        "wordcount",
        "benchmarks/workflows/wordcount.yaml",
        r#"{"seed": 1, "bytes": 3400000, "parts": 8}"#,
    ),
];

fn build_cli() -> Result<PathBuf> {
    run(
        "cargo build --release -p faasflow-cli -p faasflow-pack-apps",
        cargo().args([
            "build",
            "--release",
            "--locked",
            "-p",
            "faasflow-cli",
            "-p",
            "faasflow-pack-apps",
        ]),
    )?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| project_root().join("target"), PathBuf::from);
    Ok(target.join("release/faasflow"))
}

fn plan_json(bin: &Path, file: &Path, workers: usize, mode: &str) -> Result<(serde_json::Value, f64)> {
    let start = Instant::now();
    let out = Command::new(bin)
        .args([
            "plan",
            "--format",
            "json",
            "--mode",
            mode,
            "--workers",
            &workers.to_string(),
        ])
        .arg(file)
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    if !out.status.success() {
        bail!(
            "faasflow plan {} failed:\n{}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((
        serde_json::from_slice(&out.stdout).context("faasflow plan printed invalid JSON")?,
        ms,
    ))
}

fn mb(v: &serde_json::Value) -> String {
    format!("{:.1}", v.as_f64().unwrap_or(0.0) / 1e6)
}

/// FaaSFlow's published WorkerSP scheduling overhead per workflow, ms (benchmarks.md).
const FAASFLOW_SCHED_MS: [f64; 8] = [98.0, 145.0, 169.0, 155.0, 51.0, 76.0, 39.0, 40.0];

fn median(v: Vec<f64>) -> f64 {
    suite::quantile(v, 0.5)
}

/// Runs one workflow `repeat` times on one embedded worker; returns the JSON reports.
fn run_reports(
    bin: &Path,
    file: &Path,
    input: &str,
    runtime_scale: f64,
    data_scale: f64,
    repeat: u32,
) -> Result<Vec<serde_json::Value>> {
    let out = Command::new(bin)
        .args(["run", "--report", "json", "--repeat", &repeat.to_string()])
        .args([
            "--runtime-scale",
            &runtime_scale.to_string(),
            "--data-scale",
            &data_scale.to_string(),
        ])
        .args(["--input", input])
        .arg(file)
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    let reports: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    if reports.len() != repeat as usize {
        bail!(
            "faasflow run {} gave {} of {repeat} reports:\n{}",
            file.display(),
            reports.len(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(reports)
}

/// The table of FaaSFlow's 8 workflows run on one worker (Markdown, one row per workflow).
fn one_worker_table(bin: &Path, root: &Path, runtime_scale: f64, data_scale: f64, repeat: u32) -> Result<String> {
    use std::fmt::Write as _;
    let mut t = String::from(
        "| workflow | functions | status | e2e ms | critical path ms | scheduling overhead ms | data overhead ms | MB handed over | spills | FaaSFlow WorkerSP scheduling overhead ms |\n|---|---:|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for ((name, rel, input), theirs) in BENCHMARKS.iter().zip(FAASFLOW_SCHED_MS) {
        eprintln!("==> faasflow run {rel}");
        let reports = run_reports(bin, &root.join(rel), input, runtime_scale, data_scale, repeat)?;
        let field = |k: &str| median(reports.iter().map(|r| r[k].as_f64().unwrap_or(0.0)).collect()) / 1e3;
        let ok = reports.iter().filter(|r| r["status"] == "ok").count();
        let first = &reports[0];
        let functions = first["functions"]
            .as_array()
            .map_or(0, |f| f.iter().filter(|x| x["skipped"] == false).count());
        let bytes: f64 = first["edges"].as_array().map_or(0.0, |e| {
            e.iter().fold(0.0, |acc, x| acc + x["bytes"].as_f64().unwrap_or(0.0))
        });
        let spills: u64 = reports.iter().map(|r| r["spills"].as_u64().unwrap_or(0)).sum();
        let _ = writeln!(
            t,
            "| {name} | {functions} | {ok}/{repeat} ok | {:.1} | {:.1} | {:.2} | {:.2} | {:.1} | {spills} | {theirs:.0} |",
            field("e2e_us"),
            field("critical_path_us"),
            field("scheduling_overhead_us"),
            field("data_overhead_us"),
            bytes / 1e6,
        );
        if ok < reports.len()
            && let Some(err) = reports.iter().find_map(|r| r["error"].as_str())
        {
            let _ = writeln!(t, "|   ↳ {err} |||||||||");
        }
    }
    Ok(t)
}

/// FaaSFlow's published MasterSP scheduling overhead per workflow, ms (BENCHMARKS order).
const FAASFLOW_MASTER_SCHED_MS: [f64; 8] = [352.0, 785.0, 947.0, 765.0, 183.0, 300.0, 130.0, 113.0];

/// A local cluster started with `faasflow up`; stopped (`faasflow down`) when dropped.
struct LocalCluster {
    bin: PathBuf,
    dir: PathBuf,
}

impl LocalCluster {
    fn up(bin: &Path, dir: &Path, workers: usize, runtime_scale: f64, data_scale: f64) -> Result<LocalCluster> {
        let _ = Command::new(bin).arg("down").arg("--dir").arg(dir).output();
        let _ = std::fs::remove_dir_all(dir);
        eprintln!("==> faasflow up --workers {workers}");
        // As many container slots in all as 3 workers of 64 offer (FaaSFlow's largest
        // workflows need up to 150), whatever the number of workers.
        let slots = (192 / workers.max(1)).max(64);
        let status = Command::new(bin)
            .args(["up", "--workers", &workers.to_string(), "--slots", &slots.to_string()])
            .args(["--runtime-scale", &runtime_scale.to_string()])
            .args(["--data-scale", &data_scale.to_string()])
            .arg("--dir")
            .arg(dir)
            .status()
            .context("cannot run faasflow up")?;
        if !status.success() {
            bail!("faasflow up failed ({status}); its logs are in {}/logs", dir.display());
        }
        Ok(LocalCluster {
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
        })
    }

    /// Deploys `file` in `mode`; returns the workflow's name.
    fn deploy(&self, file: &Path, mode: &str) -> Result<String> {
        let out = Command::new(&self.bin)
            .args(["deploy", "--mode", mode, "--dir"])
            .arg(&self.dir)
            .arg(file)
            .output()
            .context("cannot run faasflow deploy")?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "faasflow deploy {} --mode {mode} failed: {}{}",
                file.display(),
                text,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        text.split('`')
            .nth(1)
            .map(str::to_owned)
            .with_context(|| format!("faasflow deploy printed no workflow name: {text}"))
    }

    /// One invocation's JSON report.
    fn invoke(&self, name: &str, input: &str) -> Result<serde_json::Value> {
        let out = Command::new(&self.bin)
            .args(["invoke", name, "--input", input, "--report", "json", "--dir"])
            .arg(&self.dir)
            .output()
            .context("cannot run faasflow invoke")?;
        serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "faasflow invoke {name} gave no report ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let _ = Command::new(&self.bin).arg("down").arg("--dir").arg(&self.dir).status();
    }
}

fn demo(root: &Path, workers: usize, runtime_scale: f64, data_scale: f64, repeat: u32) -> Result<()> {
    let bin = build_cli()?;
    println!(
        "\nFaaSFlow's 8 benchmark workflows run on one worker (`faasflow run`), objects through the shared-memory \
         arena: the scientific four with FaaSFlow's synthetic body in real processes (runtime scale \
         {runtime_scale}, data scale {data_scale}), the four applications doing their real work in the pack `apps` \
         (benchmarks/workflows); medians of {repeat} invocations\n"
    );
    print!("{}", one_worker_table(&bin, root, runtime_scale, data_scale, repeat)?);
    println!(
        "\nFaaSFlow's numbers are its own (1 s functions, several workers, its paper); ours are measured now, here. \
         `faasflow run FILE --report text` shows one invocation in full.\n"
    );
    println!(
        "\nThe same workflows on a local cluster of {workers} workers (`faasflow up`: a planner and {workers} daemons as \
         processes on loopback, QUIC between daemons, a private Redis), deployed in WorkerSP (partitioned, daemons \
         trigger each other) and then MasterSP (the planner's central engine triggers every function, all data \
         through Redis); medians of {repeat} invocations\n"
    );
    let out = cargo_target_dir(root).join("faasflow-demo");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let scales = suite::Scales {
        workers,
        runtime_scale,
        data_scale,
        repeat,
    };
    let runs = suite::cluster_runs(
        &bin,
        root,
        scales,
        &[suite::WORKERSP, suite::MASTERSP],
        Some(("soykb", out.join("trace-soykb.json"))),
        true,
    )?;
    print!("{}", runs.table());
    print!(
        "\nAll 8 at once (WorkerSP, each invoked {repeat} times concurrently with the others):\n\n{}",
        runs.colocation_table()
    );
    if let Some(why) = &runs.no_master {
        println!("\nMasterSP skipped: {why}.");
    }
    let results = out.join("results.json");
    std::fs::write(&results, serde_json::to_string_pretty(&runs.json())? + "\n")
        .with_context(|| format!("cannot write {}", results.display()))?;
    let plot = out.join("breakdown.svg");
    plots::breakdown(
        &plot,
        &runs,
        &format!("Median invocation on {workers} workers (runtime scale {runtime_scale}, data scale {data_scale})"),
    )?;
    println!(
        "\nWritten: {} (every figure), {} (where each invocation's time goes)",
        results.display(),
        plot.display()
    );
    if let Some(t) = &runs.trace {
        println!(
            "and {} (one soykb invocation as a Chrome trace: open it in https://ui.perfetto.dev)",
            t.display()
        );
    }
    println!(
        "\nScheduling overhead is end-to-end time minus, along the critical path, the functions' own time and their \
         data waits (inputs arriving from other workers or fetched from Redis, outputs stored there; a column of \
         its own), as FaaSFlow's functions fetch and store their data inside their own time. \
         `faasflow up`, `faasflow deploy FILE [--mode mastersp]`, `faasflow invoke NAME --report text` and \
         `faasflow down` do the same by hand.\n"
    );
    println!("\nThe same workflows planned for {workers} workers (64 slots each)\n");
    println!(
        "| workflow | functions | edges | groups | workers used | critical path ms (WorkerSP / MasterSP) | MB kept local | MB crossing workers | MB remote (MasterSP) | plan ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, rel, _) in BENCHMARKS {
        let file = root.join(rel);
        let (w, ms) = plan_json(&bin, &file, workers, "workersp")?;
        let (m, _) = plan_json(&bin, &file, workers, "mastersp")?;
        let s = &w["summary"];
        let groups = w["groups"].as_array().map_or(0, Vec::len);
        let used = w["workers"]
            .as_array()
            .map_or(0, |ws| ws.iter().filter(|x| x["slots_used"].as_u64() > Some(0)).count());
        println!(
            "| {name} | {} | {} | {groups} | {used} | {:.0} / {:.0} | {} | {} | {} | {ms:.1} |",
            s["functions"],
            s["edges"],
            w["critical_path"]["cost_ms"].as_f64().unwrap_or(0.0),
            m["critical_path"]["cost_ms"].as_f64().unwrap_or(0.0),
            mb(&s["bytes_local"]),
            mb(&s["bytes_crossing_workers"]),
            mb(&m["summary"]["bytes_by_tier"]["remote"]),
        );
    }
    println!("\n`faasflow plan FILE` shows any one of them in full (try --format dot | dot -Tsvg).");
    Ok(())
}

/// `cargo xtask bench --quick`: the data plane and containers with fewer runs, and FaaSFlow's 8
/// workflows on 3 workers once each, into `target/bench-quick/` (RESULTS.md, results.json, the
/// plots, a trace).
fn bench_quick(root: &Path) -> Result<()> {
    let start = Instant::now();
    let machine = machine_line();
    let out = cargo_target_dir(root).join("bench-quick");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let _ = std::fs::remove_file(figures_path());
    let bin = build_cli()?;
    let quick = std::ffi::OsStr::new("1");
    let mut doc = format!(
        "# Quick benchmark results\n\n`cargo xtask bench --quick` on {machine}: fewer runs than `cargo xtask bench` (whose results are in benchmarks/RESULTS.md), so noisier numbers.\n\n"
    );
    let dataplane = bench_table_with(
        "faasflow-benchmarks",
        "dataplane",
        &[("FAASFLOW_BIN", bin.as_os_str()), ("FAASFLOW_BENCH_QUICK", quick)],
    )?;
    doc.push_str(&format!("## Data plane on one worker\n\n{}\n\n", dataplane.trim()));
    match docker_version() {
        Ok(_) => {
            images(root)?;
            let containers = bench_table_with(
                "faasflow-benchmarks",
                "containers",
                &[("FAASFLOW_BIN", bin.as_os_str()), ("FAASFLOW_BENCH_QUICK", quick)],
            )?;
            doc.push_str(&format!("## Containers\n\n{}\n\n", containers.trim()));
        }
        Err(e) => {
            eprintln!("==> containers skipped: {e}");
            doc.push_str(&format!("## Containers\n\nSkipped: {e}.\n\n"));
        }
    }
    let workers = 3;
    let scales = suite::Scales {
        workers,
        runtime_scale: 0.01,
        data_scale: 1.0,
        repeat: 1,
    };
    let runs = suite::cluster_runs(
        &bin,
        root,
        scales,
        &ALL_MODES,
        Some(("soykb", out.join("trace-soykb.json"))),
        true,
    )?;
    doc.push_str(&format!(
        "## FaaSFlow's 8 workflows on {workers} workers, one invocation each\n\n{}\n\n### Data tiers: FaaStore, remote storage only, MasterSP\n\n{}\n",
        runs.table().trim(),
        runs.storage_table().trim()
    ));
    if let Some(why) = &runs.no_master {
        doc.push_str(&format!("\nMasterSP skipped: {why}.\n"));
    }
    let figures = read_figures();
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "machine": machine,
            "quick": true,
            "cluster": runs.json(),
            "micro": figures,
        }))? + "\n",
    )?;
    plots::all(&out, &runs, &figures, 0.01)?;
    doc.push_str(&format!("\n## All 8 at once\n\n{}", runs.colocation_table()));
    let no_runs = suite::ClusterRuns {
        workers,
        runs: Vec::new(),
        no_master: None,
        trace: None,
        colocated: Vec::new(),
    };
    doc.push_str(&format!(
        "\n## Targets\n\nThe earlier issues' targets against this quick run (the full run measures every one):\n\n{}",
        targets::section(&figures, &runs, &no_runs)
    ));
    std::fs::write(out.join("RESULTS.md"), doc)?;
    eprintln!(
        "quick bench done in {:.0} s: {} (tables), results.json, breakdown.svg, handoff.svg, throughput.svg, edges.svg, trace-soykb.json",
        start.elapsed().as_secs_f64(),
        out.join("RESULTS.md").display()
    );
    Ok(())
}

/// The figures the benches recorded (an empty object when none did).
fn read_figures() -> serde_json::Value {
    std::fs::read(figures_path())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Where the benches of one `cargo xtask bench` put their figures.
fn figures_path() -> PathBuf {
    cargo_target_dir(&project_root()).join("bench-figures.json")
}

fn bench(root: &Path) -> Result<()> {
    let machine = machine_line();
    let _ = std::fs::remove_file(figures_path());
    let path = root.join("benchmarks/RESULTS.md");
    let mut doc = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmark results\n\n".into());

    let table = bench_table("faasflow-planner", "plan")?;
    let versus = versus_faasflow(&table).unwrap_or_else(|| "(the 200-function row is missing)".into());
    let heading = "## Planner: partitioning time and peak memory";
    let section = format!(
        "{heading}\n\n`cargo xtask bench` on {machine}. Random layered DAGs (~2 edges per function), 3 workers; medians over repeated runs, peak heap of one `partition` call, and a topological sort of the same graph as the in-run reference.\n\n{}\n\nFaaSFlow's Python partitioner needs 0.96 core-seconds and 35 MB for 200 functions; {versus}. Targets: under 10 ms for 200 functions and under 1 s for 5,000.\n",
        table.trim()
    );
    doc = replace_section(&doc, heading, &section);

    let table = bench_table("faasflow-shm", "ring")?;
    let heading = "## Control ring: one-way latency of a 64-byte frame";
    let section = format!(
        "{heading}\n\n`cargo xtask bench` on {machine}. Half a ping-pong round trip through the shared-memory SPSC ring, between threads and between processes, next to a std channel and a pipe measured in the same run. Parking latency depends on the machine's load; compare ratios, not absolute times.\n\n{}\n",
        table.trim()
    );
    doc = replace_section(&doc, heading, &section);

    // The data plane bench runs the release `faasflow` binary as the synthetic pack.
    run(
        "cargo build --release --locked -p faasflow-cli",
        cargo().args(["build", "--release", "--locked", "-p", "faasflow-cli"]),
    )?;
    let bin = cargo_target_dir(root).join("release/faasflow");
    let table = bench_table_with("faasflow-benchmarks", "dataplane", &[("FAASFLOW_BIN", bin.as_os_str())])?;
    let heading = "## Data plane on one worker";
    let section = format!(
        "{heading}\n\n`cargo xtask bench` (`cargo bench --locked -p faasflow-benchmarks --bench dataplane`, with `FAASFLOW_BIN` set to the release `faasflow`) on {machine}. One daemon (`faasflow_daemon::daemon::Daemon`, 1 GiB arena) drives real instance processes (`faasflow __pack synthetic`: FaaSFlow's synthetic body, declared runtime 0); times come from the run report: `end_us` is when the daemon learned that a function ended, `exec_us` the function's own time measured in its instance. **Per-edge trigger latency** along a `sequence` of 50 no-op functions is `(end_us[i+1] − end_us[i]) − exec_us[i+1]`: from the daemon seeing the producer end to it seeing the consumer end, minus the consumer's own work, so it counts the trigger, the ring both ways and the instance's dispatch; p50/p99 over all 49 edges of 200 invocations after 20 warm-up ones, with every function in one instance (default isolation) and with every function `isolation: process` (50 instances), next to half a std mpsc round trip between two threads measured in the same run (the shm ring's own latency is in the table above). **Object hand-off** is `(end_us[consumer] − end_us[producer]) − exec_us[consumer]` for a producer with one output of the given size and a consumer that reads all of it (its reading is its own work and does not count): `in-process` both in one instance, `shared memory` the consumer `isolation: process`, `spill` a daemon with `quota_bytes = 0`, so the object goes to the spill directory and is reloaded; medians of 20 runs (5 for 256 MiB spill), next to a memcpy of the same size into a fresh, prefaulted buffer measured in the same run. **Executions per second**: a one-task no-op workflow in a closed loop with 64 invocations outstanding (`Daemon::invoke`) for 3 s after 1 s of warm-up, and a foreach over a 1,000-element input list of no-ops (`max_concurrency: 0`) as executions per second within one invocation. The machine is a shared VM: compare medians and ratios, not single absolute times.\n\n{}\n",
        table.trim()
    );
    doc = replace_section(&doc, heading, &section);

    let table = bench_table_with("faasflow-benchmarks", "cluster", &[("FAASFLOW_BIN", bin.as_os_str())])?;
    let heading = "## Across workers: per-edge trigger latency and object hand-off";
    let section = format!("{heading}\n\n{}\n", cluster_caption(&machine, &table));
    doc = replace_section(&doc, heading, &section);

    let table = bench_table("faasflow-benchmarks", "peer")?;
    let heading = "## Peer transport between two workers (loopback)";
    let section = format!(
        "{heading}\n\n`cargo xtask bench` (`cargo bench --locked -p faasflow-benchmarks --bench peer`) on {machine}. Two `PeerEndpoint`s in one process on 127.0.0.1, each on a tokio runtime of its own (one worker thread, as two daemons would have), mutual TLS with certificates from a cluster CA generated for the run (rustls with ring, AES-256-GCM), `PeerConfig::default()`. **Bandwidth**: one object per run sent with `PeerConnection::send_object` from an in-memory source, the receiver writing every chunk into an extent of its arena (`Arena::create`, `Arena::write` at the extent's offset) as it arrives; timed from the call of `send_object` to the last byte stored. The reference is a raw single-stream TCP transfer of the same bytes over one persistent loopback connection measured in the same run (tokio `TcpStream`, `write_all` of the whole object; the receiver reads into a buffer of the transport's chunk size and copies each read into the same arena extent), its runs interleaved with the QUIC ones. **Control messages**: a `Done` sent on the control stream and echoed back (`send` / `recv`), half the round trip, next to a TCP ping-pong (`TCP_NODELAY`) of the same frame. The cross-worker trigger latency of a whole edge is in the cluster section; this is the transport's floor. The machine is a shared 2-core VM: both endpoints and both copies compete for the same 2 cores; compare medians and ratios, not single absolute times.\n\n{}\n",
        table.trim()
    );
    doc = replace_section(&doc, heading, &section);

    let table = bench_table("faasflow-benchmarks", "probe")?;
    let heading = "## Memory probe: cost per page fault";
    let section = format!(
        "{heading}\n\n`cargo xtask bench` (`cargo bench --locked -p faasflow-benchmarks --bench probe`, as root) on {machine}. The BPF program of `faasflow-ebpf` on `kmem/rss_stat` fires on every change of a process's resident counters, so on every page fault. The bench faults in 64 MiB of fresh anonymous pages (a new mapping each time) without the program loaded, with it loaded and the bench's process not registered (what every other process pays: one failed map lookup), and registered (what a measured instance pays: the lookup, the update of its counters and peak, and its cgroup's), in interleaved rounds. FaaSFlow reports no such number. The machine is a shared VM: the spread shows the noise.\n\n{}\n",
        table.trim()
    );
    doc = replace_section(&doc, heading, &section);
    // The container bench runs the images of `images` on the Docker engine; without one, the
    // section keeps its earlier numbers and says they are not from this run.
    let heading = "## Containers: cold start, warm calls, per-edge latency";
    let release = cargo_target_dir(root).join("release/faasflow");
    let measured = images(root).and_then(|_| {
        bench_table_with(
            "faasflow-benchmarks",
            "containers",
            &[("FAASFLOW_BIN", release.as_os_str())],
        )
    });
    let section = match measured {
        Ok(table) => format!(
            "{heading}\n\n`cargo xtask bench` (`cargo xtask images`, then `cargo bench --locked -p faasflow-benchmarks --bench containers`) on {machine}. One daemon drives FaaSFlow's synthetic body (runtime 0) in Docker containers of `faasflow/synthetic` (a static executable in a `FROM scratch` image; user 65534, read-only root, no network, memory and CPU limits, the daemon's socket bind-mounted; the arena and rings passed over it) and, as the reference, in processes (`faasflow __pack synthetic`). **Cold**: the first invocation of a one-function workflow on a daemon whose pool has no instance (`min_instances` 0): the container is created and started through the engine's API, its pack connects and does the handshake, then the call runs; end to end as the caller sees it, median over 10 daemons. **Warm**: the 5 invocations after it on each daemon. The reference for a cold container is `docker run --rm` of the same image (the CLI's own overhead included) in the same run. **Per edge**: a `sequence` of 10 no-op functions each `isolation: container` (10 containers) or `isolation: process`, measured as in the data-plane section. The machine is a shared VM: compare ratios, not single absolute times.\n\n{}\n",
            table.trim()
        ),
        Err(e) => {
            eprintln!("==> containers skipped: {e}");
            kept_from_earlier(&doc, heading, &e.to_string())
        }
    };
    doc = replace_section(&doc, heading, &section);
    let bin = build_cli()?;
    let (scale, repeat) = (0.01, 5);
    let table = one_worker_table(&bin, root, scale, 1.0, repeat)?;
    let heading = "## FaaSFlow's 8 workflows on one worker";
    let section = format!(
        "{heading}\n\n`cargo xtask bench` (`faasflow run FILE --report json --repeat {repeat} --runtime-scale {scale}`, as `cargo xtask demo` does) on {machine}. The scientific four are FaaSFlow's own workflow files with its synthetic body in real processes (each function reads its inputs, writes its declared output sizes into the shared-memory arena, and sleeps its declared runtime × {scale}); the four applications (video, recognizer, file processing, word count) are `benchmarks/workflows/*.yaml`, doing their real work in the pack `apps` on inputs generated from a seed (FaaSFlow's sizes: a 51.8 MB clip, a 1.3 MB image, a 29.6 MB document, 3.4 MB of text); FaaSFlow's staged input files are filled with bytes of their declared sizes; data scale 1; 1 GiB arena (cycles moves 1.4 GB per invocation, so some objects spill to disk). Medians of {repeat} invocations. Scheduling overhead is end-to-end minus, along the critical path, the functions' own time and their data waits; data overhead is the time the daemon spent copying workflow inputs into the arena and spilling/reloading. FaaSFlow's column is its paper's WorkerSP number (1 s functions, a cluster), for scale only.\n\n{}\n",
        table.trim()
    );
    doc = replace_section(&doc, heading, &section);
    let workers = 3;
    let scales = suite::Scales {
        workers,
        runtime_scale: scale,
        data_scale: 1.0,
        repeat,
    };
    let with_data = suite::cluster_runs(&bin, root, scales, &ALL_MODES, None, true)?;
    // Without bytes, remote-only storage has nothing to move: two modes.
    let without = suite::cluster_runs(
        &bin,
        root,
        suite::Scales {
            data_scale: 0.0,
            ..scales
        },
        &[suite::WORKERSP, suite::MASTERSP],
        None,
        false,
    )?;
    let one = suite::cluster_runs(
        &bin,
        root,
        suite::Scales { workers: 1, ..scales },
        &ALL_MODES,
        None,
        false,
    )?;
    let (table, no_data) = (with_data.table(), without.table());
    let figures = read_figures();
    std::fs::write(
        root.join("benchmarks/results.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "machine": machine,
            "runtime_scale": scale,
            "cluster_data_scale_1": with_data.json(),
            "cluster_data_scale_0": without.json(),
            "one_worker_data_scale_1": one.json(),
            "micro": figures,
        }))? + "\n",
    )
    .context("cannot write benchmarks/results.json")?;
    plots::all(&root.join("benchmarks/plots"), &with_data, &figures, scale)?;
    let heading = "## FaaSFlow's 8 workflows on 3 workers: WorkerSP, WorkerSP-remote, MasterSP";
    // The section's earlier heading, from before WorkerSP-remote was measured.
    doc = doc.replace(
        "## FaaSFlow's 8 workflows on 3 workers: WorkerSP vs MasterSP\n",
        &format!("{heading}\n"),
    );
    let section = format!(
        "{heading}\n\n`cargo xtask bench` (as `cargo xtask demo` does: `faasflow up --workers {workers} --runtime-scale {scale}`, then for each workflow `faasflow deploy FILE --mode workersp`, {repeat} × `faasflow invoke NAME --report json`, the same with `--mode workersp-remote` and `--mode mastersp`) on {machine}. A planner and {workers} daemons as separate processes on loopback, QUIC with mutual TLS between daemons, a private redis-server. WorkerSP (with FaaStore): the partitioned plan, daemons trigger each other, objects stay in the worker's shared memory or are pushed over QUIC, the planner handles one message each way per invocation. WorkerSP-remote: the same plan and triggering, but every output is stored in Redis as it is sealed and every reader, on the same worker or another, reads it there (FaaSFlow's configuration without FaaStore). MasterSP: round-robin placement, the planner's central engine triggers every function (one Execute each way per function) and every object goes through Redis. The scientific four with synthetic bodies (runtime scale {scale}, data scale 1), the four applications doing their real work (pack `apps`); FaaSFlow's staged input files are filled with bytes of their declared sizes and go from the entry daemon to the workers whose tasks read them as objects on streams of their own (the invocation's `Start` names them). Medians of {repeat} invocations. Scheduling overhead follows FaaSFlow's definition (end-to-end minus the critical path's execution time), where FaaSFlow's functions fetch their inputs and store their outputs inside their own time: faasflow moves data outside the functions, so the critical path's data waits (its functions waiting for inputs from other workers or from Redis, storing outputs to Redis, the entry waiting for the result's bytes) are subtracted too and shown in their own column; what remains is deciding, triggering and dispatching, and CPU contention on this 2-core machine. FaaSFlow's column: its paper's numbers (1 s functions, its cluster), for scale only.\n\nData scale 1 (every declared byte is written, moved and read), WorkerSP against MasterSP:\n\n{}\n\nThe data tiers at data scale 1: WorkerSP-remote / WorkerSP is what keeping data in memory (FaaStore) gains with the same placement and triggering; MasterSP / WorkerSP-remote is what worker-side triggering and placement gain with every object in Redis either way. The last column is the median of the bytes read from Redis per invocation (in WorkerSP, only objects the quota sends there):\n\n{}\n\nData scale 0 (the same workflows, no bytes: triggering and dispatching alone, without the CPU that moving and writing data takes from the daemons on 2 cores):\n\n{}\n\nOn 1 worker (`faasflow up --workers 1`, data scale 1; MasterSP and WorkerSP-remote still send every object through Redis):\n\n{}\n\nThe data tiers on 1 worker (every edge is between functions of one worker: WorkerSP keeps all of them in memory):\n\n{}\n\nAll 8 at once on {workers} workers (WorkerSP, data scale 1; each workflow invoked {repeat} times on a thread of its own, all threads started together), next to each alone from the first table; plot: `plots/colocation.svg`:\n\n{}\n",
        table.trim(),
        with_data.storage_table().trim(),
        no_data.trim(),
        one.table().trim(),
        one.storage_table().trim(),
        with_data.colocation_table().trim()
    );
    doc = replace_section(&doc, heading, &section);
    // The targets first: each earlier issue's, against this run.
    let heading = "## Targets";
    if !doc.contains(&format!("{heading}\n")) {
        doc = match doc.find("\n## ") {
            Some(i) => format!("{}\n{heading}\n{}", &doc[..=i], &doc[i..]),
            None => format!("{}\n\n{heading}\n", doc.trim_end()),
        };
    }
    let section = format!(
        "{heading}\n\nEvery target the earlier issues set, against this run of `cargo xtask bench` on {machine}; the sections below have the tables, their references and how each was measured.\n\n{}\n",
        targets::section(&figures, &with_data, &without).trim()
    );
    doc = replace_section(&doc, heading, &section);
    std::fs::write(&path, doc).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// The caption and tables of the cross-worker section of RESULTS.md.
fn cluster_caption(machine: &str, table: &str) -> String {
    format!(
        "`cargo xtask bench` (`cargo bench --locked -p faasflow-benchmarks --bench cluster`, with `FAASFLOW_BIN` set to the release `faasflow`) on {machine}. Two daemons (`faasflow_daemon::daemon::Daemon`, 1 GiB arena each) in one process, each with its own instance processes (`faasflow __pack synthetic`) and its own QUIC endpoint on 127.0.0.1 (mutual TLS, certificates from a cluster CA made for the run); the plan places the tasks round robin in step order, so every edge of the chain crosses workers. Times come from the entry daemon's run report, where the other daemon's times share the entry's clock origin (one machine, one clock). **Per-edge trigger latency**: `(end_us[i+1] − end_us[i]) − exec_us[i+1]` along a chain of 50 no-op functions: the producer's daemon seals, sends `Done` over QUIC; the consumer's daemon's engine triggers the next function on its instance, which ends. Reference: the same chain on one worker with every function in its own process. **Object hand-off**: a producer with one output of the size given on one worker, its consumer on the other: `(end_us[consumer] − end_us[producer]) − exec_us[consumer]`, and the stream time (first to last byte the receiver reads, written into its arena; it starts after the sender may have filled the flow-control windows, so it understates the transfer). The ratio to TCP uses the whole hand-off (trigger and transfer) against one loopback TCP stream of the same bytes into a prefaulted buffer; memcpy for scale; same run. The machine is a shared 2-core VM on which both daemons, their instances and the QUIC stacks compete: compare medians and ratios.\n\n{}",
        table.trim()
    )
}

/// Cargo's target directory: `CARGO_TARGET_DIR` (relative to the project root) or `target/`.
fn cargo_target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

/// Section `heading` of `doc` as an earlier run left it, its first line saying it was not
/// measured now and `why` (just that line when `doc` has no such section).
fn kept_from_earlier(doc: &str, heading: &str, why: &str) -> String {
    let skipped = format!("Not measured in the latest `cargo xtask bench`: {why}.");
    let Some(start) = doc.find(heading) else {
        return format!("{heading}\n\n{skipped}\n");
    };
    let rest = &doc[start + heading.len()..];
    let body = rest[..rest.find("\n## ").unwrap_or(rest.len())].trim();
    // Said already by an earlier skipped run: the numbers follow that line.
    let body = match body.strip_prefix("Not measured in the latest") {
        Some(r) => r.split_once("\n\n").map_or("", |(_, after)| after),
        None => body,
    };
    if body.is_empty() {
        return format!("{heading}\n\n{skipped}\n");
    }
    format!("{heading}\n\n{skipped} The numbers below are from an earlier run.\n\n{body}\n")
}

/// Runs one `harness = false` bench that prints a Markdown table, and returns its output.
fn bench_table(package: &str, bench: &str) -> Result<String> {
    bench_table_with(package, bench, &[])
}

/// [`bench_table`] with more environment variables for the bench.
fn bench_table_with(package: &str, bench: &str, env: &[(&str, &std::ffi::OsStr)]) -> Result<String> {
    eprintln!("==> cargo bench -p {package} --bench {bench}");
    let out = cargo()
        .args(["bench", "--locked", "-p", package, "--bench", bench])
        // Every bench adds its figures there (see `faasflow_benchmarks::record_figure`).
        .env("FAASFLOW_BENCH_JSON", figures_path())
        .envs(env.iter().copied())
        .output()
        .context("cannot run cargo bench")?;
    if !out.status.success() {
        bail!(
            "cargo bench -p {package} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    print!("{table}");
    Ok(table)
}

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
fn has_cargo_fuzz() -> bool {
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
fn fuzz(root: &Path, only: Option<&str>, seconds: u64) -> Result<()> {
    let targets: Vec<FuzzTarget> = match only {
        None => FUZZ_TARGETS.to_vec(),
        Some(name) => match FUZZ_TARGETS.iter().find(|t| t.name == name) {
            Some(&t) => vec![t],
            None => bail!(
                "unknown fuzz target `{name}`; the targets are: {}",
                FUZZ_TARGETS.map(|t| t.name).join(", ")
            ),
        },
    };
    if !has_cargo_fuzz() {
        bail!("cargo-fuzz is not installed; run `cargo install cargo-fuzz --locked`");
    }
    let fuzz_dir = root.join("fuzz");
    // One build of every target first (with the flags `run` uses, so `run` does not rebuild).
    run(
        "cargo fuzz build -a",
        cargo()
            .current_dir(root)
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "build", "-a"]),
    )?;
    let mut summary = Vec::new();
    for FuzzTarget {
        name: target,
        max_len,
        flags,
    } in targets
    {
        let regressions = list_files(&fuzz_dir.join("regressions").join(target));
        if !regressions.is_empty() {
            // libFuzzer runs each file given by name once, and stops at the first failure.
            run(
                &format!("fuzz {target}: {} regression inputs", regressions.len()),
                cargo()
                    .current_dir(root)
                    .env("RUSTC_BOOTSTRAP", "1")
                    .args(["fuzz", "run", "-a", target])
                    .args(&regressions)
                    .args(["--", "-timeout=10"]),
            )?;
        }
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
        eprintln!(
            "==> fuzz {target} for {seconds}s ({copied} seeds copied into {})",
            corpus.display()
        );
        let artifacts = fuzz_dir.join("artifacts").join(target);
        let before = list_files(&artifacts);
        let mut child = cargo()
            .current_dir(root)
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", "-a", target])
            .arg(&corpus)
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
        // Pass libFuzzer's output through, keeping what the summary needs.
        let mut runs = None;
        let mut written = Vec::new();
        if let Some(stderr) = child.stderr.take() {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stderr).split(b'\n') {
                let line =
                    String::from_utf8_lossy(&line.context("cannot read the output of cargo fuzz run")?).into_owned();
                eprintln!("{line}");
                if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
                    runs = n.trim().parse::<u64>().ok();
                }
                if let Some((_, path)) = line.split_once("Test unit written to ") {
                    written.push(PathBuf::from(path.trim()));
                }
            }
        }
        let status = child.wait().context("cargo fuzz run did not finish")?;
        let new: Vec<PathBuf> = list_files(&artifacts)
            .into_iter()
            .filter(|p| !before.contains(p))
            .chain(written)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if !status.success() || !new.is_empty() {
            for path in &new {
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
            bail!(
                "fuzz target `{target}` failed ({status}){}",
                match new.first() {
                    Some(p) => format!("; failing input: {}", p.display()),
                    None => String::new(),
                }
            );
        }
        let runs = runs.map_or_else(|| "?".to_owned(), |n| n.to_string());
        eprintln!("    fuzz {target}: ok, {runs} executions in {seconds}s");
        summary.push(format!("{target}: {runs} executions, no crash"));
    }
    eprintln!("==> fuzzing done\n    {}", summary.join("\n    "));
    Ok(())
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

/// "ours: X for 200 functions (N× less time, M× less memory)", from the bench table.
fn versus_faasflow(table: &str) -> Option<String> {
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("| 200 |"))?
        .split('|')
        .map(str::trim)
        .collect();
    let ms = parse_quantity(row.get(5)?, &[("ns", 1e-6), ("µs", 1e-3), ("ms", 1.0), ("s", 1e3)])?;
    let bytes = parse_quantity(
        row.get(7)?,
        &[("KiB", 1024.0), ("MiB", 1048576.0), ("GiB", 1073741824.0), ("B", 1.0)],
    )?;
    Some(format!(
        "faasflow needs {} ({:.0}× less time) and {} of heap ({:.0}× less memory)",
        row[5],
        960.0 / ms,
        row[7],
        35e6 / bytes
    ))
}

/// `334.3 µs` → 0.3343 with units [("µs", 1e-3), …].
fn parse_quantity(text: &str, units: &[(&str, f64)]) -> Option<f64> {
    let (num, unit) = text.split_once(' ')?;
    let factor = units.iter().find(|(u, _)| *u == unit)?.1;
    Some(num.parse::<f64>().ok()? * factor)
}

/// Replaces the section starting with `heading` (up to the next `## `) or appends it.
fn replace_section(doc: &str, heading: &str, section: &str) -> String {
    match doc.find(heading) {
        Some(start) => {
            let rest = &doc[start + heading.len()..];
            match rest.find("\n## ") {
                // Keep one blank line between the section and the next heading.
                Some(i) => format!(
                    "{}{}\n\n{}",
                    &doc[..start],
                    section.trim_end(),
                    &doc[start + heading.len() + i + 1..]
                ),
                None => format!("{}{}", &doc[..start], section),
            }
        }
        None => format!("{}\n\n{section}", doc.trim_end()),
    }
}

/// `cargo xtask chaos`: the full chaos run (`cli/tests/chaos.rs`, `chaos_full`) on release
/// builds; its table goes into docs/reliability.md between the markers.
fn chaos(root: &Path) -> Result<()> {
    run(
        "cargo build --release --workspace --bins",
        cargo().args(["build", "--release", "--workspace", "--bins", "--locked"]),
    )?;
    let table = root.join("target/chaos-table.md");
    let _ = std::fs::remove_file(&table);
    run(
        "chaos (cli/tests/chaos.rs, chaos_full)",
        cargo()
            .args([
                "test",
                "--release",
                "--locked",
                "-p",
                "faasflow-cli",
                "--test",
                "chaos",
                "--",
                "--ignored",
                "--exact",
                "chaos_full",
                "--nocapture",
            ])
            .env("FAASFLOW_CHAOS_REPORT", &table),
    )?;
    let table = std::fs::read_to_string(&table).context("the chaos run wrote no table")?;
    let doc_path = root.join("docs/reliability.md");
    let doc = std::fs::read_to_string(&doc_path).context("cannot read docs/reliability.md")?;
    let (start, end) = ("<!-- chaos table: start -->", "<!-- chaos table: end -->");
    let (Some(a), Some(b)) = (doc.find(start), doc.find(end)) else {
        bail!("docs/reliability.md has no `{start}` … `{end}` markers");
    };
    let when = Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let section = format!(
        "{start}\n`cargo xtask chaos` on {}, {when} (release build):\n\n{}{end}",
        machine_line(),
        table
    );
    let doc = format!("{}{}{}", &doc[..a], section, &doc[b + end.len()..]);
    std::fs::write(&doc_path, doc).context("cannot write docs/reliability.md")?;
    eprintln!("==> the table is in docs/reliability.md");
    Ok(())
}

fn machine_line() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} × {cpu}")
}

#[cfg(test)]
mod tests {
    use super::{kept_from_earlier, replace_section, versus_faasflow};

    #[test]
    fn compares_the_200_function_row_with_faasflow() {
        let table = "| 200 | 402 | 147 | 53 | 480.0 µs | 311.2 µs | 35.0 KiB | 4.5 µs | 75× |";
        assert_eq!(
            versus_faasflow(table).unwrap(),
            "faasflow needs 480.0 µs (2000× less time) and 35.0 KiB of heap (977× less memory)"
        );
        assert!(versus_faasflow("| 50 | x |").is_none());
    }

    #[test]
    fn a_section_not_measured_keeps_its_earlier_numbers_and_says_so_once() {
        let h = "## Containers";
        let doc = "# R\n\n## Containers\n\nold table\n\n## Next\n\nx\n";
        let once = kept_from_earlier(doc, h, "no Docker");
        assert_eq!(
            once,
            "## Containers\n\nNot measured in the latest `cargo xtask bench`: no Docker. The numbers below are from an earlier run.\n\nold table\n"
        );
        let doc2 = replace_section(doc, h, &once);
        assert_eq!(
            kept_from_earlier(&doc2, h, "still none"),
            once.replace("no Docker", "still none")
        );
        assert_eq!(
            kept_from_earlier("# R\n", h, "no Docker"),
            "## Containers\n\nNot measured in the latest `cargo xtask bench`: no Docker.\n"
        );
    }

    #[test]
    fn sections_are_replaced_or_appended() {
        let doc = "# R\n\n## A\nold\n## B\nb\n";
        assert_eq!(
            replace_section(doc, "## A", "## A\nnew\n"),
            "# R\n\n## A\nnew\n\n## B\nb\n"
        );
        assert_eq!(
            replace_section(doc, "## C", "## C\nc\n"),
            "# R\n\n## A\nold\n## B\nb\n\n## C\nc\n"
        );
        // A blank line before the next heading stays, however often a section is replaced.
        let spaced = "# R\n\n## A\nold\n\n## B\nb\n";
        assert_eq!(
            replace_section(spaced, "## A", "## A\nnew\n"),
            "# R\n\n## A\nnew\n\n## B\nb\n"
        );
        assert_eq!(
            replace_section(spaced, "## B", "## B\nnew\n"),
            "# R\n\n## A\nold\n\n## B\nnew\n"
        );
    }
}
