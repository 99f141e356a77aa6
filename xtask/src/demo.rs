//! `cargo xtask demo`: FaaSFlow's 8 benchmark workflows on one embedded worker, then on a
//! local cluster in WorkerSP and MasterSP, then their plans; prints the tables and writes the
//! figures, a latency-breakdown plot and a trace into `target/faasflow-demo/`.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::plots;
use crate::suite::{self, BENCHMARKS};
use crate::util::{cargo_target_dir, render};

/// What the one-worker table shows.
const ONE_WORKER: &str = include_str!("../templates/demo-one-worker.md");
/// Read after the one-worker table.
const ONE_WORKER_NOTE: &str = include_str!("../templates/demo-one-worker-note.md");
/// What the cluster tables show.
const CLUSTER: &str = include_str!("../templates/demo-cluster.md");
/// How scheduling overhead is counted, after the cluster tables.
const CLUSTER_NOTE: &str = include_str!("../templates/demo-cluster-note.md");

pub(crate) fn demo(root: &Path, workers: usize, runtime_scale: f64, data_scale: f64, repeat: u32) -> Result<()> {
    let bin = suite::build_cli()?;
    println!("\n{}", one_worker_intro(runtime_scale, data_scale, repeat));
    print!(
        "{}",
        suite::one_worker_table(&bin, root, runtime_scale, data_scale, repeat)?
    );
    println!("\n{ONE_WORKER_NOTE}");
    println!("\n{}", cluster_intro(workers, repeat));
    let scales = suite::Scales {
        workers,
        runtime_scale,
        data_scale,
        repeat,
    };
    cluster(&bin, root, scales)?;
    println!("\n{CLUSTER_NOTE}");
    plans(&bin, root, workers)
}

fn one_worker_intro(runtime_scale: f64, data_scale: f64, repeat: u32) -> String {
    render(
        ONE_WORKER,
        &[
            ("runtime_scale", &runtime_scale.to_string()),
            ("data_scale", &data_scale.to_string()),
            ("repeat", &repeat.to_string()),
        ],
    )
}

fn cluster_intro(workers: usize, repeat: u32) -> String {
    render(
        CLUSTER,
        &[("workers", &workers.to_string()), ("repeat", &repeat.to_string())],
    )
}

/// The workflows on a local cluster in WorkerSP and MasterSP and all 8 at once: prints the
/// tables and writes `results.json`, the breakdown plot and a soykb trace.
fn cluster(bin: &Path, root: &Path, scales: suite::Scales) -> Result<()> {
    let suite::Scales {
        workers,
        runtime_scale,
        data_scale,
        repeat,
    } = scales;
    let out = cargo_target_dir(root).join("faasflow-demo");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let runs = suite::cluster_runs(
        bin,
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
    Ok(())
}

/// The table of the workflows' plans for `workers` workers, WorkerSP against MasterSP.
fn plans(bin: &Path, root: &Path, workers: usize) -> Result<()> {
    println!("\nThe same workflows planned for {workers} workers (64 slots each)\n");
    println!(
        "| workflow | functions | edges | groups | workers used | critical path ms (WorkerSP / MasterSP) \
         | MB kept local | MB crossing workers | MB remote (MasterSP) | plan ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, rel, _) in BENCHMARKS {
        let file = root.join(rel);
        let (w, ms) = plan_json(bin, &file, workers, "workersp")?;
        let (m, _) = plan_json(bin, &file, workers, "mastersp")?;
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

/// `faasflow plan --format json` of `file` for `workers` in `mode`, and how long it took (ms).
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

/// Bytes as MB with one decimal.
fn mb(v: &serde_json::Value) -> String {
    format!("{:.1}", v.as_f64().unwrap_or(0.0) / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::tests::{assert_filled, placeholders};

    #[test]
    fn the_one_worker_intro_is_filled() {
        assert_filled(&one_worker_intro(0.25, 3.5, 7), &["0.25", "3.5", "7 invocations"]);
    }

    #[test]
    fn the_one_worker_note_has_no_placeholder() {
        assert_eq!(placeholders(ONE_WORKER_NOTE), Vec::<&str>::new());
    }

    #[test]
    fn the_cluster_intro_is_filled() {
        assert_filled(&cluster_intro(5, 9), &["5 workers", "5 daemons", "9 invocations"]);
    }

    #[test]
    fn the_cluster_note_has_no_placeholder() {
        assert_eq!(placeholders(CLUSTER_NOTE), Vec::<&str>::new());
    }
}
