//! FaaSFlow's 8 benchmark workflows: on one worker (`faasflow run`), and on a local cluster
//! (`faasflow up`) in WorkerSP, MasterSP and (for the bench) WorkerSP with remote storage
//! only, with a progress bar: the runs, their tables, their figures as JSON, and a trace of
//! one invocation.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::util::{cargo, cargo_target_dir, project_root, run};

/// The 8 FaaSFlow benchmark workflows, as (name, file relative to the repository, input): the
/// scientific four are FaaSFlow's own files with its synthetic body (inputs read, declared
/// bytes written, declared runtime slept); the four applications do real work of the same
/// kind and size in the pack `apps` (`benchmarks/apps`), their inputs generated from a seed.
pub(crate) const BENCHMARKS: [(&str, &str, &str); 8] = [
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

/// FaaSFlow's published WorkerSP scheduling overhead per workflow, ms (benchmarks.md).
pub(crate) const FAASFLOW_SCHED_MS: [f64; 8] = [98.0, 145.0, 169.0, 155.0, 51.0, 76.0, 39.0, 40.0];

/// FaaSFlow's published MasterSP scheduling overhead per workflow, ms (BENCHMARKS order).
pub(crate) const FAASFLOW_MASTER_SCHED_MS: [f64; 8] = [352.0, 785.0, 947.0, 765.0, 183.0, 300.0, 130.0, 113.0];

/// Builds the release `faasflow` and the pack `apps` (which the applications run in); returns
/// the path of `faasflow`.
pub(crate) fn build_cli() -> Result<PathBuf> {
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
pub(crate) fn one_worker_table(
    bin: &Path,
    root: &Path,
    runtime_scale: f64,
    data_scale: f64,
    repeat: u32,
) -> Result<String> {
    let mut t = String::from(
        "| workflow | functions | status | e2e ms | critical path ms | scheduling overhead ms | data overhead ms \
         | MB handed over | spills | FaaSFlow WorkerSP scheduling overhead ms |\n\
         |---|---:|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for ((name, rel, input), theirs) in BENCHMARKS.iter().zip(FAASFLOW_SCHED_MS) {
        eprintln!("==> faasflow run {rel}");
        let reports = run_reports(bin, &root.join(rel), input, runtime_scale, data_scale, repeat)?;
        t.push_str(&one_worker_row(name, &reports, repeat, theirs));
    }
    Ok(t)
}

/// One workflow's row of [`one_worker_table`] (medians of its `reports`; FaaSFlow's overhead
/// `theirs`), and a line with the error when an invocation failed.
fn one_worker_row(name: &str, reports: &[serde_json::Value], repeat: u32, theirs: f64) -> String {
    let field = |k: &str| quantile(reports.iter().map(|r| r[k].as_f64().unwrap_or(0.0)).collect(), 0.5) / 1e3;
    let ok = reports.iter().filter(|r| r["status"] == "ok").count();
    let first = &reports[0];
    let functions = first["functions"]
        .as_array()
        .map_or(0, |f| f.iter().filter(|x| x["skipped"] == false).count());
    let bytes: f64 = first["edges"].as_array().map_or(0.0, |e| {
        e.iter().fold(0.0, |acc, x| acc + x["bytes"].as_f64().unwrap_or(0.0))
    });
    let spills: u64 = reports.iter().map(|r| r["spills"].as_u64().unwrap_or(0)).sum();
    let mut row = String::new();
    let _ = writeln!(
        row,
        "| {name} | {functions} | {ok}/{repeat} ok | {:.1} | {:.1} | {:.2} | {:.2} | {:.1} | {spills} \
         | {theirs:.0} |",
        field("e2e_us"),
        field("critical_path_us"),
        field("scheduling_overhead_us"),
        field("data_overhead_us"),
        bytes / 1e6,
    );
    if ok < reports.len()
        && let Some(err) = reports.iter().find_map(|r| r["error"].as_str())
    {
        let _ = writeln!(row, "|   ↳ {err} |||||||||");
    }
    row
}

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

    /// Writes invocation `id`'s trace to `file` in Chrome's format.
    fn chrome_trace(&self, id: u64, file: &Path) -> Result<()> {
        let out = Command::new(&self.bin)
            .args(["trace", &id.to_string(), "--chrome"])
            .arg(file)
            .arg("--dir")
            .arg(&self.dir)
            .output()
            .context("cannot run faasflow trace")?;
        if !out.status.success() {
            bail!("faasflow trace failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
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

/// A progress bar on stderr (a line per step when stderr is not a terminal).
pub(crate) struct Progress {
    total: usize,
    done: usize,
    start: Instant,
    tty: bool,
}

impl Progress {
    pub(crate) fn new(total: usize) -> Self {
        Progress {
            total,
            done: 0,
            start: Instant::now(),
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// Says what runs now (step `done + 1` of `total`).
    pub(crate) fn step(&mut self, what: &str) {
        let width = 30;
        let filled = (self.done * width).checked_div(self.total).unwrap_or(width);
        let bar = format!("{}{}", "#".repeat(filled), "-".repeat(width - filled));
        let line = format!(
            "[{bar}] {}/{} {what} ({:.0} s)",
            self.done + 1,
            self.total,
            self.start.elapsed().as_secs_f64()
        );
        if self.tty {
            eprint!("\r\x1b[2K{line}");
            let _ = std::io::stderr().flush();
        } else {
            eprintln!("{line}");
        }
        self.done += 1;
    }

    pub(crate) fn finish(&self) {
        if self.tty {
            eprintln!(
                "\r\x1b[2K[{}] done in {:.0} s",
                "#".repeat(30),
                self.start.elapsed().as_secs_f64()
            );
        }
    }
}

/// The deploy modes, as `faasflow deploy --mode` names them: WorkerSP with FaaStore (data in
/// memory where the plan allows), MasterSP, and WorkerSP with every edge through Redis.
pub(crate) const WORKERSP: &str = "workersp";
pub(crate) const MASTERSP: &str = "mastersp";
pub(crate) const REMOTE_ONLY: &str = "workersp-remote";

/// A mode's name in tables and plots.
pub(crate) fn mode_label(mode: &str) -> &'static str {
    match mode {
        WORKERSP => "WorkerSP",
        MASTERSP => "MasterSP",
        REMOTE_ONLY => "WorkerSP-remote",
        _ => "?",
    }
}

/// The invocations of one workflow in one mode.
pub(crate) struct Run {
    pub(crate) workflow: &'static str,
    pub(crate) mode: &'static str,
    pub(crate) reports: Vec<serde_json::Value>,
}

/// The `q` quantile of `v`, interpolated between the two nearest values (the median of two
/// values is their mean).
pub(crate) fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let at = (v.len() - 1) as f64 * q;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (at - lo as f64)
}

impl Run {
    /// The `q` quantile of report field `key` (µs) over the invocations, ms.
    pub(crate) fn ms(&self, key: &str, q: f64) -> f64 {
        quantile(
            self.reports
                .iter()
                .map(|r| r[key].as_f64().unwrap_or(0.0) / 1e3)
                .collect(),
            q,
        )
    }

    /// The median bytes read per invocation through each tier.
    pub(crate) fn bytes_by_tier(&self) -> BTreeMap<String, f64> {
        let mut per: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for r in &self.reports {
            let mut sums: BTreeMap<String, f64> = BTreeMap::new();
            for e in r["edges"].as_array().into_iter().flatten() {
                *sums.entry(e["tier"].as_str().unwrap_or("?").to_owned()).or_default() +=
                    e["bytes"].as_f64().unwrap_or(0.0);
            }
            for (t, b) in sums {
                per.entry(t).or_default().push(b);
            }
        }
        per.into_iter().map(|(t, v)| (t, quantile(v, 0.5))).collect()
    }
}

/// How a suite runs: workers, the synthetic bodies' scales, invocations per workflow and mode.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scales {
    pub(crate) workers: usize,
    pub(crate) runtime_scale: f64,
    pub(crate) data_scale: f64,
    pub(crate) repeat: u32,
}

/// What the cluster runs measured.
pub(crate) struct ClusterRuns {
    pub(crate) workers: usize,
    pub(crate) runs: Vec<Run>,
    /// Why the modes that need Redis (MasterSP, WorkerSP-remote) were not run, when they
    /// were not.
    pub(crate) no_master: Option<String>,
    /// The trace written, if one was asked for.
    pub(crate) trace: Option<PathBuf>,
    /// WorkerSP invocations of every workflow run all at once (co-location), when asked for.
    pub(crate) colocated: Vec<Run>,
}

/// Runs FaaSFlow's 8 workflows on a local cluster of `workers`, in each of `modes` in turn
/// (each deploy is a new version; those needing Redis are skipped without it), `repeat`
/// invocations each; with `trace`, also writes the Chrome trace of the last WorkerSP
/// invocation of that workflow to that file.
pub(crate) fn cluster_runs(
    bin: &Path,
    root: &Path,
    scales: Scales,
    modes: &[&'static str],
    trace: Option<(&str, PathBuf)>,
    colocate: bool,
) -> Result<ClusterRuns> {
    let Scales {
        workers,
        runtime_scale,
        data_scale,
        repeat,
    } = scales;
    let dir = cargo_target_dir(&project_root()).join("faasflow-demo-cluster");
    let cluster = LocalCluster::up(bin, &dir, workers, runtime_scale, data_scale)?;
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("cluster.json")).context("cannot read the cluster's cluster.json")?,
    )?;
    let no_master = record["redis"].is_null().then(|| {
        "no redis-server on PATH: MasterSP and WorkerSP-remote need Redis (Debian: apt-get install redis-server)"
            .to_owned()
    });
    let modes: Vec<&'static str> = modes
        .iter()
        .copied()
        .filter(|m| no_master.is_none() || *m == WORKERSP)
        .collect();
    let mut progress = Progress::new(BENCHMARKS.len() * modes.len() + usize::from(colocate));
    let mut runs = Vec::new();
    let mut traced = None;
    for (name, rel, input) in BENCHMARKS {
        for &mode in &modes {
            progress.step(&format!("{name} · {mode} on {workers} workers"));
            let wf = cluster.deploy(&root.join(rel), mode)?;
            let mut reports = Vec::new();
            for _ in 0..repeat {
                reports.push(cluster.invoke(&wf, input)?);
            }
            if let Some(r) = reports.iter().find(|r| r["status"] != "ok") {
                bail!("{name} ({mode}) failed on the cluster: {}", r["error"]);
            }
            if let Some((want, file)) = &trace
                && *want == name
                && mode == WORKERSP
                && let Some(id) = reports.last().and_then(|r| r["invocation"].as_u64())
            {
                cluster.chrome_trace(id, file)?;
                traced = Some(file.clone());
            }
            runs.push(Run {
                workflow: name,
                mode,
                reports,
            });
        }
    }
    let mut colocated = Vec::new();
    if colocate {
        progress.step(&format!("all 8 workflows at once on {workers} workers"));
        colocated = all_at_once(&cluster, root, repeat)?;
    }
    progress.finish();
    drop(cluster);
    Ok(ClusterRuns {
        workers,
        runs,
        no_master,
        trace: traced,
        colocated,
    })
}

/// All 8 in WorkerSP at once on `cluster`: each workflow invoked `repeat` times on a thread of
/// its own, all threads started together.
fn all_at_once(cluster: &LocalCluster, root: &Path, repeat: u32) -> Result<Vec<Run>> {
    let mut names = Vec::new();
    for (name, rel, input) in BENCHMARKS {
        names.push((name, cluster.deploy(&root.join(rel), WORKERSP)?, input));
    }
    let results: Vec<(&'static str, Result<Vec<serde_json::Value>>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = names
            .iter()
            .map(|(name, wf, input)| {
                (
                    *name,
                    scope.spawn(move || -> Result<Vec<serde_json::Value>> {
                        (0..repeat).map(|_| cluster.invoke(wf, input)).collect()
                    }),
                )
            })
            .collect();
        handles
            .into_iter()
            .map(|(name, h)| {
                (
                    name,
                    h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the thread panicked"))),
                )
            })
            .collect()
    });
    let mut colocated = Vec::new();
    for (name, reports) in results {
        let reports = reports?;
        if let Some(r) = reports.iter().find(|r| r["status"] != "ok") {
            bail!("{name} failed when run with the others: {}", r["error"]);
        }
        colocated.push(Run {
            workflow: name,
            mode: WORKERSP,
            reports,
        });
    }
    Ok(colocated)
}

impl ClusterRuns {
    pub(crate) fn run(&self, workflow: &str, mode: &str) -> Option<&Run> {
        self.runs.iter().find(|r| r.workflow == workflow && r.mode == mode)
    }

    /// The comparison table: per workflow, WorkerSP and MasterSP end to end (p50, p99), data
    /// waits and scheduling overhead, their ratio, and FaaSFlow's numbers.
    pub(crate) fn table(&self) -> String {
        let mut t = String::from(
            "| workflow | WorkerSP e2e ms p50 / p99 | WorkerSP data waits ms | WorkerSP scheduling ms \
             | MasterSP e2e ms p50 / p99 | MasterSP data waits ms | MasterSP scheduling ms \
             | MasterSP / WorkerSP scheduling | FaaSFlow scheduling ms (MasterSP / WorkerSP) | targets |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
        );
        for (i, (name, _, _)) in BENCHMARKS.iter().enumerate() {
            let Some(w) = self.run(name, WORKERSP) else { continue };
            let ws = w.ms("scheduling_overhead_us", 0.5);
            let mut targets = vec![if ws <= 5.0 {
                "WorkerSP ≤ 5 ms: met"
            } else {
                "WorkerSP ≤ 5 ms: missed"
            }];
            let master = match self.run(name, MASTERSP) {
                Some(m) => {
                    let ms = m.ms("scheduling_overhead_us", 0.5);
                    let ratio = ms / ws.max(1e-3);
                    if i < 4 {
                        targets.push(if ratio >= 5.0 {
                            "MasterSP ≥ 5×: met"
                        } else {
                            "MasterSP ≥ 5×: missed"
                        });
                    }
                    format!(
                        "{:.1} / {:.1} | {:.1} | {ms:.2} | {ratio:.1}×",
                        m.ms("e2e_us", 0.5),
                        m.ms("e2e_us", 0.99),
                        m.ms("critical_data_us", 0.5)
                    )
                }
                None => "– | – | – | –".to_owned(),
            };
            let _ = writeln!(
                t,
                "| {name} | {:.1} / {:.1} | {:.1} | {ws:.2} | {master} | {:.0} / {:.0} | {} |",
                w.ms("e2e_us", 0.5),
                w.ms("e2e_us", 0.99),
                w.ms("critical_data_us", 0.5),
                FAASFLOW_MASTER_SCHED_MS[i],
                FAASFLOW_SCHED_MS[i],
                targets.join("; ")
            );
        }
        t
    }

    /// Where the data tiers' time goes: per workflow, end to end and the critical path's data
    /// waits in WorkerSP (FaaStore: memory where the plan allows), WorkerSP-remote (the same
    /// placement and triggering, every edge through Redis) and MasterSP, and the two ratios
    /// that separate what in-memory data gains (remote-only / FaaStore) from what worker-side
    /// triggering gains (MasterSP / remote-only). Empty when WorkerSP-remote was not run.
    pub(crate) fn storage_table(&self) -> String {
        if !self.runs.iter().any(|r| r.mode == REMOTE_ONLY) {
            return String::new();
        }
        let mut t = String::from(
            "| workflow | WorkerSP e2e ms p50 / p99 | data waits ms | WorkerSP-remote e2e ms p50 / p99 \
             | data waits ms | MasterSP e2e ms p50 / p99 | data waits ms | e2e WorkerSP-remote / WorkerSP \
             | e2e MasterSP / WorkerSP-remote | MB through Redis (WorkerSP / WorkerSP-remote) |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        let cells = |r: Option<&Run>| match r {
            Some(r) => format!(
                "{:.1} / {:.1} | {:.1}",
                r.ms("e2e_us", 0.5),
                r.ms("e2e_us", 0.99),
                r.ms("critical_data_us", 0.5)
            ),
            None => "– | –".to_owned(),
        };
        let e2e = |r: Option<&Run>| r.map(|r| r.ms("e2e_us", 0.5));
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => format!("{:.2}×", a / b.max(1e-3)),
            _ => "–".to_owned(),
        };
        let redis_mb = |r: Option<&Run>| {
            r.map_or("–".to_owned(), |r| {
                let b = r.bytes_by_tier();
                format!(
                    "{:.1}",
                    (b.get("remote").unwrap_or(&0.0) + b.get("spill").unwrap_or(&0.0)) / 1e6
                )
            })
        };
        for (name, _, _) in BENCHMARKS {
            let (w, r, m) = (
                self.run(name, WORKERSP),
                self.run(name, REMOTE_ONLY),
                self.run(name, MASTERSP),
            );
            if r.is_none() {
                continue;
            }
            let _ = writeln!(
                t,
                "| {name} | {} | {} | {} | {} | {} | {} / {} |",
                cells(w),
                cells(r),
                cells(m),
                ratio(e2e(r), e2e(w)),
                ratio(e2e(m), e2e(r)),
                redis_mb(w),
                redis_mb(r)
            );
        }
        t
    }

    /// Each workflow run with all the others at once against alone (WorkerSP).
    pub(crate) fn colocation_table(&self) -> String {
        let mut t = String::from(
            "| workflow | alone e2e ms p50 | all 8 at once e2e ms p50 / p99 | slowdown |\n|---|---:|---:|---:|\n",
        );
        for r in &self.colocated {
            let together = r.ms("e2e_us", 0.5);
            let alone = self.run(r.workflow, WORKERSP).map(|a| a.ms("e2e_us", 0.5));
            let _ = writeln!(
                t,
                "| {} | {} | {together:.1} / {:.1} | {} |",
                r.workflow,
                alone.map_or("–".into(), |a| format!("{a:.1}")),
                r.ms("e2e_us", 0.99),
                alone.map_or("–".into(), |a| format!("{:.2}×", together / a.max(1e-3)))
            );
        }
        t
    }

    /// Every figure of the runs, for `results.json`.
    pub(crate) fn json(&self) -> serde_json::Value {
        let runs: Vec<serde_json::Value> = self
            .runs
            .iter()
            .map(|r| {
                let i = BENCHMARKS.iter().position(|(n, _, _)| *n == r.workflow).unwrap_or(0);
                let faasflow_ms = if r.mode == MASTERSP {
                    FAASFLOW_MASTER_SCHED_MS[i]
                } else {
                    FAASFLOW_SCHED_MS[i]
                };
                serde_json::json!({
                    "workflow": r.workflow,
                    "mode": r.mode,
                    "workers": self.workers,
                    "invocations": r.reports.len(),
                    "e2e_ms": {"p50": r.ms("e2e_us", 0.5), "p99": r.ms("e2e_us", 0.99)},
                    "scheduling_overhead_ms": {
                        "p50": r.ms("scheduling_overhead_us", 0.5),
                        "p99": r.ms("scheduling_overhead_us", 0.99),
                    },
                    "critical_path_ms": {"p50": r.ms("critical_path_us", 0.5)},
                    "critical_data_ms": {"p50": r.ms("critical_data_us", 0.5)},
                    "data_overhead_ms": {"p50": r.ms("data_overhead_us", 0.5)},
                    "bytes_by_tier": r.bytes_by_tier(),
                    "faasflow_scheduling_ms": faasflow_ms,
                })
            })
            .collect();
        let colocated: Vec<serde_json::Value> = self
            .colocated
            .iter()
            .map(|r| {
                serde_json::json!({
                    "workflow": r.workflow,
                    "e2e_ms": {"p50": r.ms("e2e_us", 0.5), "p99": r.ms("e2e_us", 0.99)},
                    "alone_e2e_ms": self.run(r.workflow, WORKERSP).map(|a| a.ms("e2e_us", 0.5)),
                })
            })
            .collect();
        serde_json::json!({
            "workers": self.workers,
            "mastersp_skipped": self.no_master,
            "runs": runs,
            "colocated": colocated,
        })
    }
}
