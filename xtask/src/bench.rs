//! `cargo xtask bench`: every benchmark, each into its section of `benchmarks/RESULTS.md`
//! (rendered from `xtask/templates/bench-*.md`), their figures into `benchmarks/results.json`
//! and plots into `benchmarks/plots/`; `--quick` a reduced run into `target/bench-quick/`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::images::{docker_version, images};
use crate::suite::{self, ClusterRuns};
use crate::util::{cargo, cargo_target_dir, heading, machine_line, project_root, render, run};
use crate::{plots, targets};

/// The three deploy modes the bench compares.
const ALL_MODES: [&str; 3] = [suite::WORKERSP, suite::REMOTE_ONLY, suite::MASTERSP];

// The sections of RESULTS.md, each starting with its heading.
const PLANNER: &str = include_str!("../templates/bench-planner.md");
const RING: &str = include_str!("../templates/bench-ring.md");
const DATAPLANE: &str = include_str!("../templates/bench-dataplane.md");
const EDGES: &str = include_str!("../templates/bench-edges.md");
const CLUSTER: &str = include_str!("../templates/bench-cluster.md");
const PEER: &str = include_str!("../templates/bench-peer.md");
const PROBE: &str = include_str!("../templates/bench-probe.md");
const CONTAINERS: &str = include_str!("../templates/bench-containers.md");
const CONTROL: &str = include_str!("../templates/bench-control.md");
const PYTHON: &str = include_str!("../templates/bench-python.md");
const ONE_WORKER: &str = include_str!("../templates/bench-one-worker.md");
const THREE_WORKERS: &str = include_str!("../templates/bench-three-workers.md");
const TARGETS: &str = include_str!("../templates/bench-targets.md");
/// The whole RESULTS.md of `cargo xtask bench --quick`.
const QUICK: &str = include_str!("../templates/bench-quick.md");

/// The heading the three-worker section had before WorkerSP-remote was measured.
const THREE_WORKERS_BEFORE: &str = "## FaaSFlow's 8 workflows on 3 workers: WorkerSP vs MasterSP\n";

/// `cargo xtask bench`: runs every benchmark and replaces its section of RESULTS.md.
pub(crate) fn bench(root: &Path) -> Result<()> {
    let machine = machine_line();
    let _ = std::fs::remove_file(figures_path());
    let path = root.join("benchmarks/RESULTS.md");
    let mut doc = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmark results\n\n".into());
    micro_benchmarks(root, &machine, &mut doc)?;
    workflows(root, &machine, &mut doc)?;
    std::fs::write(&path, doc).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// The sections of the `cargo bench` benchmarks: the planner, the control ring, the data plane
/// on one worker and across workers, the peer transport, the memory probe and containers.
fn micro_benchmarks(root: &Path, machine: &str, doc: &mut String) -> Result<()> {
    let table = bench_table("faasflow-planner", "plan")?;
    put_section(doc, &planner_section(machine, &table));

    let table = bench_table("faasflow-shm", "ring")?;
    put_section(doc, &measured_section(RING, machine, &table));

    // The data plane bench runs the release `faasflow` binary as the synthetic pack.
    run(
        "cargo build --release --locked -p faasflow-cli",
        cargo().args(["build", "--release", "--locked", "-p", "faasflow-cli"]),
    )?;
    let bin = cargo_target_dir(root).join("release/faasflow");
    let table = bench_table_with("faasflow-benchmarks", "dataplane", &[("FAASFLOW_BIN", bin.as_os_str())])?;
    put_section(doc, &measured_section(DATAPLANE, machine, &table));

    let table = edges_table(root, &bin)?;
    put_section(doc, &measured_section(EDGES, machine, &table));

    let table = bench_table_with("faasflow-benchmarks", "cluster", &[("FAASFLOW_BIN", bin.as_os_str())])?;
    put_section(doc, &measured_section(CLUSTER, machine, &table));

    let table = bench_table_with("faasflow-benchmarks", "control", &[("FAASFLOW_BIN", bin.as_os_str())])?;
    put_section(doc, &measured_section(CONTROL, machine, &table));

    python_section(root, machine, &bin, doc);

    let table = bench_table("faasflow-benchmarks", "peer")?;
    put_section(doc, &measured_section(PEER, machine, &table));

    let table = bench_table("faasflow-benchmarks", "probe")?;
    put_section(doc, &measured_section(PROBE, machine, &table));

    containers_section(root, machine, &bin, doc);
    Ok(())
}

/// The container bench runs the images of `images` on the Docker engine; without one, the
/// section keeps its earlier numbers and says they are not from this run.
fn containers_section(root: &Path, machine: &str, bin: &Path, doc: &mut String) {
    let measured = images(root).and_then(|_| {
        bench_table_with(
            "faasflow-benchmarks",
            "containers",
            &[("FAASFLOW_BIN", bin.as_os_str())],
        )
    });
    let section = match measured {
        Ok(table) => measured_section(CONTAINERS, machine, &table),
        Err(e) => {
            eprintln!("==> containers skipped: {e}");
            kept_from_earlier(doc, heading(CONTAINERS), &e.to_string())
        }
    };
    put_section(doc, &section);
}

/// `cargo xtask bench --only cluster`: the across-workers section alone, into RESULTS.md.
pub(crate) fn bench_cluster(root: &Path) -> Result<()> {
    only_section(root, |machine, bin, doc| {
        let table = bench_table_with("faasflow-benchmarks", "cluster", &[("FAASFLOW_BIN", bin.as_os_str())])?;
        put_section(doc, &measured_section(CLUSTER, machine, &table));
        Ok(())
    })
}

/// `cargo xtask bench --only containers`: the containers section alone, into RESULTS.md.
pub(crate) fn bench_containers(root: &Path) -> Result<()> {
    only_section(root, |machine, bin, doc| {
        containers_section(root, machine, bin, doc);
        Ok(())
    })
}

/// The sections of FaaSFlow's 8 workflows (on one worker; on 3 workers in each mode, with and
/// without data, and on 1), their figures and plots, and the targets against the whole run.
fn workflows(root: &Path, machine: &str, doc: &mut String) -> Result<()> {
    let bin = suite::build_cli()?;
    let (scale, repeat) = (0.01, 5);
    let table = suite::one_worker_table(&bin, root, scale, 1.0, repeat)?;
    put_section(doc, &one_worker_section(machine, scale, repeat, &table));
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
    let tables = ClusterTables::of(&with_data, &without, &one);
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
    *doc = doc.replace(THREE_WORKERS_BEFORE, &format!("{}\n", heading(THREE_WORKERS)));
    put_section(doc, &three_workers_section(machine, workers, scale, repeat, &tables));
    // The targets first: each earlier issue's, against this run.
    let targets_heading = heading(TARGETS);
    if !doc.contains(&format!("{targets_heading}\n")) {
        *doc = match doc.find("\n## ") {
            Some(i) => format!("{}\n{targets_heading}\n{}", &doc[..=i], &doc[i..]),
            None => format!("{}\n\n{targets_heading}\n", doc.trim_end()),
        };
    }
    let targets = targets::section(&figures, &with_data, &without);
    put_section(doc, &targets_section(machine, &targets));
    Ok(())
}

/// Functions in Python against Ray and Dask, in a private environment with both (from PyPI);
/// without it, the section keeps its earlier numbers and says why.
fn python_section(root: &Path, machine: &str, bin: &Path, doc: &mut String) {
    let measured = crate::python::bench_env(root).and_then(|python| {
        build_apps()?;
        bench_table_with(
            "faasflow-benchmarks",
            "python",
            &[
                ("FAASFLOW_BIN", bin.as_os_str()),
                ("FAASFLOW_PYTHON", python.as_os_str()),
            ],
        )
    });
    let section = match measured {
        Ok(table) => measured_section(PYTHON, machine, &table),
        Err(e) => {
            eprintln!("==> python skipped: {e}");
            kept_from_earlier(doc, heading(PYTHON), &e.to_string())
        }
    };
    put_section(doc, &section);
}

/// `cargo xtask bench --only SECTION`: builds the release `faasflow`, lets `section` put its
/// section into RESULTS.md (given the machine line and the binary), and writes the file.
fn only_section(root: &Path, section: impl FnOnce(&str, &Path, &mut String) -> Result<()>) -> Result<()> {
    let machine = machine_line();
    let path = root.join("benchmarks/RESULTS.md");
    let mut doc = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmark results\n\n".into());
    run(
        "cargo build --release --locked -p faasflow-cli",
        cargo().args(["build", "--release", "--locked", "-p", "faasflow-cli"]),
    )?;
    let bin = cargo_target_dir(root).join("release/faasflow");
    section(&machine, &bin, &mut doc)?;
    std::fs::write(&path, doc).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// `cargo xtask bench --only python`: the Python section alone, into RESULTS.md.
pub(crate) fn bench_python(root: &Path) -> Result<()> {
    only_section(root, |machine, bin, doc| {
        python_section(root, machine, bin, doc);
        Ok(())
    })
}

/// The per-edge bench's table, with Ray beside it when the private environment with Ray can be
/// made (the table says why not otherwise).
fn edges_table(root: &Path, bin: &Path) -> Result<String> {
    let mut env = vec![("FAASFLOW_BIN", bin.as_os_str().to_owned())];
    match crate::python::bench_env(root) {
        Ok(python) => env.push(("FAASFLOW_PYTHON", python.into_os_string())),
        Err(e) => eprintln!("==> edges: Ray not measured: {e}"),
    }
    let env: Vec<(&str, &std::ffi::OsStr)> = env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
    bench_table_with("faasflow-benchmarks", "edges", &env)
}

/// `cargo xtask bench --only edges`: the per-edge section alone, into RESULTS.md, right after
/// the data plane's section (where the full run puts it) when it is not there yet.
pub(crate) fn bench_edges(root: &Path) -> Result<()> {
    only_section(root, |machine, bin, doc| {
        let section = measured_section(EDGES, machine, &edges_table(root, bin)?);
        if !doc.contains(heading(&section)) {
            let after = heading(DATAPLANE);
            let next = doc
                .find(after)
                .and_then(|i| doc[i + after.len()..].find("\n## ").map(|j| i + after.len() + j + 1));
            if let Some(at) = next {
                doc.insert_str(at, &format!("{section}\n"));
            }
        }
        put_section(doc, &section);
        Ok(())
    })
}

/// The Rust word count's pack, next to the release `faasflow`.
fn build_apps() -> Result<()> {
    run(
        "cargo build --release --locked -p faasflow-pack-apps",
        cargo().args(["build", "--release", "--locked", "-p", "faasflow-pack-apps"]),
    )
}

/// Replaces (or appends) the section of `doc` that `section`'s first line heads.
fn put_section(doc: &mut String, section: &str) {
    *doc = replace_section(doc, heading(section), section);
}

/// A section that shows a bench's `table`, measured on `machine`.
fn measured_section(template: &str, machine: &str, table: &str) -> String {
    render(template, &[("machine", machine), ("table", table.trim())])
}

/// The planner's section: its bench's `table`, and how it compares with FaaSFlow's partitioner.
fn planner_section(machine: &str, table: &str) -> String {
    let versus = versus_faasflow(table).unwrap_or_else(|| "(the 200-function row is missing)".into());
    render(
        PLANNER,
        &[("machine", machine), ("table", table.trim()), ("versus", &versus)],
    )
}

/// The section of FaaSFlow's 8 workflows on one worker.
fn one_worker_section(machine: &str, scale: f64, repeat: u32, table: &str) -> String {
    render(
        ONE_WORKER,
        &[
            ("machine", machine),
            ("scale", &scale.to_string()),
            ("repeat", &repeat.to_string()),
            ("table", table.trim()),
        ],
    )
}

/// The tables of the section of FaaSFlow's 8 workflows on a cluster, as Markdown.
struct ClusterTables {
    /// 3 workers, data scale 1: WorkerSP against MasterSP.
    table: String,
    /// 3 workers, data scale 1: the data tiers.
    storage_table: String,
    /// 3 workers, data scale 0.
    no_data_table: String,
    /// 1 worker, data scale 1.
    one_worker_table: String,
    /// 1 worker, data scale 1: the data tiers.
    one_worker_storage_table: String,
    /// All 8 at once on 3 workers.
    colocation_table: String,
}

impl ClusterTables {
    fn of(with_data: &ClusterRuns, without: &ClusterRuns, one: &ClusterRuns) -> Self {
        ClusterTables {
            table: with_data.table(),
            storage_table: with_data.storage_table(),
            no_data_table: without.table(),
            one_worker_table: one.table(),
            one_worker_storage_table: one.storage_table(),
            colocation_table: with_data.colocation_table(),
        }
    }
}

/// The section of FaaSFlow's 8 workflows on `workers` workers in each mode.
fn three_workers_section(machine: &str, workers: usize, scale: f64, repeat: u32, tables: &ClusterTables) -> String {
    render(
        THREE_WORKERS,
        &[
            ("machine", machine),
            ("workers", &workers.to_string()),
            ("scale", &scale.to_string()),
            ("repeat", &repeat.to_string()),
            ("table", tables.table.trim()),
            ("storage_table", tables.storage_table.trim()),
            ("no_data_table", tables.no_data_table.trim()),
            ("one_worker_table", tables.one_worker_table.trim()),
            ("one_worker_storage_table", tables.one_worker_storage_table.trim()),
            ("colocation_table", tables.colocation_table.trim()),
        ],
    )
}

/// The section of the earlier issues' targets (`targets::section`) against this run.
fn targets_section(machine: &str, targets: &str) -> String {
    render(TARGETS, &[("machine", machine), ("targets", targets.trim())])
}

/// `cargo xtask bench --quick`: the data plane and containers with fewer runs, and FaaSFlow's 8
/// workflows on 3 workers once each, into `target/bench-quick/` (RESULTS.md, results.json, the
/// plots, a trace).
pub(crate) fn bench_quick(root: &Path) -> Result<()> {
    let start = Instant::now();
    let machine = machine_line();
    let out = cargo_target_dir(root).join("bench-quick");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let _ = std::fs::remove_file(figures_path());
    let bin = suite::build_cli()?;
    let env = [
        ("FAASFLOW_BIN", bin.as_os_str()),
        ("FAASFLOW_BENCH_QUICK", OsStr::new("1")),
    ];
    let dataplane = bench_table_with("faasflow-benchmarks", "dataplane", &env)?;
    let control = bench_table_with("faasflow-benchmarks", "control", &env)?;
    let containers = match docker_version() {
        Ok(_) => {
            images(root)?;
            bench_table_with("faasflow-benchmarks", "containers", &env)?
                .trim()
                .to_owned()
        }
        Err(e) => {
            eprintln!("==> containers skipped: {e}");
            format!("Skipped: {e}.")
        }
    };
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
    let no_runs = ClusterRuns {
        workers,
        runs: Vec::new(),
        no_master: None,
        trace: None,
        colocated: Vec::new(),
    };
    let targets = targets::section(&figures, &runs, &no_runs);
    let doc = quick_results(&machine, [&dataplane, &control, &containers], &runs, &targets);
    std::fs::write(out.join("RESULTS.md"), doc)?;
    eprintln!(
        "quick bench done in {:.0} s: {} (tables), results.json, breakdown.svg, handoff.svg, throughput.svg, \
         edges.svg, trace-soykb.json",
        start.elapsed().as_secs_f64(),
        out.join("RESULTS.md").display()
    );
    Ok(())
}

/// The RESULTS.md of a quick run: the data plane's and the control plane's tables, the
/// containers' section (their table, or why they were skipped), the `runs` on a cluster, and
/// the `targets` section.
fn quick_results(
    machine: &str,
    [dataplane, control, containers]: [&str; 3],
    runs: &ClusterRuns,
    targets: &str,
) -> String {
    let master_skipped = match &runs.no_master {
        Some(why) => format!("MasterSP skipped: {why}.\n\n"),
        None => String::new(),
    };
    render(
        QUICK,
        &[
            ("machine", machine),
            ("dataplane", dataplane.trim()),
            ("control", control.trim()),
            ("containers", containers),
            ("workers", &runs.workers.to_string()),
            ("table", runs.table().trim()),
            ("storage_table", runs.storage_table().trim()),
            ("master_skipped", &master_skipped),
            ("colocation_table", runs.colocation_table().trim_end()),
            ("targets", targets.trim_end()),
        ],
    )
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
fn bench_table_with(package: &str, bench: &str, env: &[(&str, &OsStr)]) -> Result<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::tests::assert_filled;

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
            "## Containers\n\nNot measured in the latest `cargo xtask bench`: no Docker. \
             The numbers below are from an earlier run.\n\nold table\n"
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

    /// Renders a section that shows one bench table and checks it.
    fn check_measured(template: &str, heading_text: &str) {
        let section = measured_section(template, "MACHINE", "\n| TABLE |\n\n");
        assert!(section.starts_with(&format!("{heading_text}\n\n")), "{section}");
        assert!(section.ends_with("| TABLE |\n"), "{section}");
        assert_filled(&section, &["MACHINE", "| TABLE |"]);
    }

    #[test]
    fn the_planner_section_is_filled() {
        let table = "| 200 | 402 | 147 | 53 | 480.0 µs | 311.2 µs | 35.0 KiB | 4.5 µs | 75× |";
        let section = planner_section("MACHINE", table);
        assert!(section.starts_with("## Planner: partitioning time and peak memory\n\n"));
        assert_filled(
            &section,
            &["MACHINE", table, "faasflow needs 480.0 µs (2000× less time)"],
        );
    }

    #[test]
    fn the_ring_section_is_filled() {
        check_measured(RING, "## Control ring: one-way latency of a 64-byte frame");
    }

    #[test]
    fn the_dataplane_section_is_filled() {
        check_measured(DATAPLANE, "## Data plane on one worker");
    }

    #[test]
    fn the_cluster_section_is_filled() {
        check_measured(
            CLUSTER,
            "## Across workers: per-edge trigger latency and object hand-off",
        );
    }

    #[test]
    fn the_peer_section_is_filled() {
        check_measured(PEER, "## Peer transport between two workers (loopback)");
    }

    #[test]
    fn the_probe_section_is_filled() {
        check_measured(PROBE, "## Memory probe: cost per page fault");
    }

    #[test]
    fn the_containers_section_is_filled() {
        check_measured(CONTAINERS, "## Containers: cold start, warm calls, per-edge latency");
    }

    #[test]
    fn the_python_section_is_filled() {
        check_measured(PYTHON, "## Functions in Python against Ray and Dask");
    }

    #[test]
    fn the_one_worker_section_is_filled() {
        let section = one_worker_section("MACHINE", 0.25, 7, "| TABLE |\n");
        assert!(section.starts_with("## FaaSFlow's 8 workflows on one worker\n\n"));
        assert_filled(
            &section,
            &[
                "MACHINE",
                "--repeat 7 --runtime-scale 0.25",
                "× 0.25",
                "Medians of 7",
                "| TABLE |",
            ],
        );
    }

    #[test]
    fn the_three_workers_section_is_filled() {
        let tables = ClusterTables {
            table: "| T1 |\n".into(),
            storage_table: "| T2 |\n".into(),
            no_data_table: "| T3 |\n".into(),
            one_worker_table: "| T4 |\n".into(),
            one_worker_storage_table: "| T5 |\n".into(),
            colocation_table: "| T6 |\n".into(),
        };
        let section = three_workers_section("MACHINE", 4, 0.25, 7, &tables);
        assert!(section.starts_with(heading(THREE_WORKERS)));
        assert_filled(
            &section,
            &[
                "MACHINE",
                "--workers 4 --runtime-scale 0.25",
                "7 × `faasflow invoke",
                "| T1 |",
                "| T2 |",
                "| T3 |",
                "| T4 |",
                "| T5 |",
                "| T6 |",
            ],
        );
    }

    #[test]
    fn the_targets_section_is_filled() {
        let section = targets_section("MACHINE", "| TARGETS |\n");
        assert!(section.starts_with("## Targets\n\n"));
        assert_filled(&section, &["MACHINE", "| TARGETS |\n"]);
    }

    #[test]
    fn the_quick_results_are_filled() {
        let runs = ClusterRuns {
            workers: 3,
            runs: Vec::new(),
            no_master: Some("NO REDIS".into()),
            trace: None,
            colocated: Vec::new(),
        };
        let doc = quick_results(
            "MACHINE",
            ["| DATAPLANE |\n", "| CONTROL |\n", "Skipped: NO DOCKER."],
            &runs,
            "| TARGETS |\n",
        );
        assert!(doc.starts_with("# Quick benchmark results\n\n"));
        assert!(doc.ends_with("\n\n| TARGETS |\n"), "{doc}");
        assert_filled(
            &doc,
            &[
                "MACHINE",
                "| DATAPLANE |\n\n## Control plane\n\n| CONTROL |\n\n## Containers\n\nSkipped: NO DOCKER.\n\n",
                "on 3 workers, one invocation each",
                "MasterSP\n\n\n\nMasterSP skipped: NO REDIS.\n\n## All 8 at once\n\n| workflow | alone",
            ],
        );
    }
}
