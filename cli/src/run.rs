//! `faasflow run`: one worker, embedded — load, plan, start a daemon, invoke, report.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use faasflow_core::dag::{SourceFormat, Workflow};
use faasflow_core::report::Report;
use faasflow_core::{ClusterView, PlannerConfig};
use faasflow_daemon::api::Invoke;
use faasflow_daemon::config::{DaemonConfig, ProbeMode};
use faasflow_daemon::daemon::Daemon;
use faasflow_daemon::pool::PackCommand;
use faasflow_planner::partition::partition;
use faasflow_planner::render::{count, fmt_bytes};

use crate::files::{ReadError, holds, mib, read_bounded};
use crate::{Failure, load};

/// Most invocations `--repeat` runs.
const MAX_REPEAT: u32 = 1_000_000;

#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// The workflow file (faasflow WDL, or FaaSFlow's workflow.yaml / flat_workflow.yaml).
    file: PathBuf,
    /// The workflow's input: a JSON object, or @FILE to read it from a file.
    #[arg(long, short = 'i', default_value = "{}")]
    input: String,
    /// How to print the report: text (human) or json (docs/run-report.md).
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    report: ReportFormat,
    /// Run this many invocations, one after another.
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    #[command(flatten)]
    data: DataPlaneArgs,
}

/// How synthetic bodies wait out their runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SyntheticWait {
    /// Sleeping, as FaaSFlow's body does: the core is free meanwhile.
    Sleep,
    /// Spinning on the core, like a function that computes.
    Busy,
}

/// The data-plane settings of an embedded or cluster daemon (`faasflow run`, `faasflow daemon`).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DataPlaneArgs {
    /// Multiplies the declared runtime of functions without a pack (synthetic bodies).
    #[arg(long, default_value_t = 1.0)]
    runtime_scale: f64,
    /// Multiplies the declared output sizes of functions without a pack.
    #[arg(long, default_value_t = 1.0)]
    data_scale: f64,
    /// How functions without a pack (synthetic bodies) wait out their declared runtime.
    #[arg(long, value_enum, default_value_t = SyntheticWait::Sleep)]
    synthetic_wait: SyntheticWait,
    /// Send every call on its own, even when its predecessor in the same instance could start
    /// it on its thread the moment it succeeds (for measuring what that saves).
    #[arg(long)]
    no_chain: bool,
    /// A pack by name: NAME=PATH of its executable (repeatable). Packs not given are looked up
    /// as `faasflow-pack-NAME` next to `faasflow`, then on PATH.
    #[arg(long = "pack", value_name = "NAME=PATH")]
    packs: Vec<String>,
    /// Size of the shared-memory arena, MiB.
    #[arg(long, default_value_t = 1024)]
    arena_mib: u64,
    /// The workflow's in-memory quota, MiB (default: the plan's, from declared memory).
    #[arg(long)]
    quota_mib: Option<u64>,
    /// The directory in which the daemon makes a directory of its own (mode 0700) for objects
    /// over quota, removed when it stops; nothing else in DIR is touched (default: the
    /// system's temporary directory).
    #[arg(long, value_name = "DIR")]
    spill_dir: Option<PathBuf>,
    /// Instances each pool keeps warm (started when a workflow is installed; 0: started on
    /// demand, and when a predecessor of one of its functions starts).
    #[arg(long, default_value_t = 1)]
    min_instances: usize,
    /// Most instances per pool.
    #[arg(long, default_value_t = 4)]
    max_instances: usize,
    /// An instance idle this long beyond its pool's minimum is stopped, seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    idle_timeout: u64,
    /// The Docker engine's socket, for functions that run in containers (default: DOCKER_HOST
    /// when it is a unix:// URL, else /var/run/docker.sock).
    #[arg(long, value_name = "PATH")]
    docker_socket: Option<PathBuf>,
    /// The Python interpreter that serves functions in Python (`python -m faasflow.serve`); it
    /// needs the faasflow package (`pip install sdk/python`).
    #[arg(long, value_name = "PATH", default_value = "python3")]
    python: PathBuf,
    /// Calls one instance runs at once.
    #[arg(long, default_value_t = 32)]
    threads: u32,
    /// Invocations the daemon runs at once (at least 1); one more is refused at once as
    /// overloaded.
    #[arg(long, value_name = "N", default_value_t = faasflow_daemon::config::DEFAULT_MAX_INVOCATIONS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_invocations: usize,
    /// How instances' memory is measured: `ebpf` (a BPF program on kmem/rss_stat; needs the
    /// privilege to load it and tracefs), `proc` (/proc/PID/status), or `auto` (eBPF when it
    /// loads, else /proc, saying why once).
    #[arg(long, value_name = "auto|ebpf|proc", default_value = "auto", value_parser = parse_probe)]
    memory_probe: ProbeMode,
}

pub(crate) fn parse_probe(s: &str) -> Result<ProbeMode, <ProbeMode as std::str::FromStr>::Err> {
    s.parse()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ReportFormat {
    /// The output, then a breakdown per function.
    Text,
    /// One JSON report per invocation, one per line.
    Json,
}

fn input_error(msg: String) -> Failure {
    Failure::Input(format!("error: {msg}"))
}

/// Where the pack named `name` is: `--pack`, next to this executable, or on PATH.
fn find_pack(name: &str, given: &HashMap<String, PathBuf>) -> Option<PathBuf> {
    if let Some(p) = given.get(name) {
        return Some(p.clone());
    }
    let file = format!("faasflow-pack-{name}");
    let beside = std::env::current_exe().ok()?.parent()?.join(&file);
    if beside.is_file() {
        return Some(beside);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(&file))
            .find(|p| p.is_file())
    })
}

/// Largest input file (`--input @FILE`): the most the cluster's API takes in one message.
pub(crate) const MAX_INPUT_BYTES: usize = faasflow_rpc::channel::MAX_MESSAGE;

/// The text of an input file, at most [`MAX_INPUT_BYTES`].
fn read_input_file(path: &str) -> Result<String, Failure> {
    let bytes = read_bounded(Path::new(path), MAX_INPUT_BYTES).map_err(|e| match e {
        ReadError::Io(e) => input_error(format!("--input @{path}: cannot read the input file: {e}")),
        ReadError::TooLarge(size) => input_error(format!(
            "--input @{path}: the input file is larger than {}{}, the most the cluster's API takes in one \
             message; pass a smaller input (a device or a pipe that never ends is refused once past the limit)",
            mib(MAX_INPUT_BYTES),
            holds(size)
        )),
    })?;
    String::from_utf8(bytes).map_err(|_| input_error(format!("--input @{path}: the input file is not UTF-8 text")))
}

pub(crate) fn parse_input(text: &str) -> Result<serde_json::Value, Failure> {
    let (text, source) = match text.strip_prefix('@') {
        Some(path) => (read_input_file(path)?, format!("file {path}")),
        None => (text.to_owned(), "--input".to_owned()),
    };
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| input_error(format!("{source} is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(input_error(format!(
            "{source} must be a JSON object of the workflow's named inputs, e.g. '{{\"text\": \"hello\"}}'"
        )));
    }
    Ok(v)
}

impl DataPlaneArgs {
    /// Checks the settings and builds a daemon's configuration; `packs` are the packs to look
    /// up (those not found are left out: installing a workflow that needs one says so).
    pub(crate) fn daemon_config<'a>(&self, packs: impl IntoIterator<Item = &'a str>) -> Result<DaemonConfig, Failure> {
        for (flag, v) in [
            ("--runtime-scale", self.runtime_scale),
            ("--data-scale", self.data_scale),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(input_error(format!("{flag} must be a number ≥ 0")));
            }
        }
        if self.arena_mib == 0 {
            return Err(input_error("--arena-mib must be at least 1".into()));
        }
        if self.threads == 0 || self.max_instances == 0 {
            return Err(input_error("--threads and --max-instances must be at least 1".into()));
        }
        let given = self.given_packs()?;
        let exe =
            std::env::current_exe().map_err(|e| Failure::Other(anyhow::anyhow!("cannot find faasflow itself: {e}")))?;
        let mut config = DaemonConfig::new(PackCommand {
            program: exe,
            args: vec!["__pack".into(), "synthetic".into()],
        });
        for name in packs {
            if let Some(path) = find_pack(name, &given) {
                config.packs.insert(name.to_owned(), PackCommand::program(path));
            }
        }
        config.runtime_scale = self.runtime_scale;
        config.synthetic_busy = self.synthetic_wait == SyntheticWait::Busy;
        config.chain = !self.no_chain;
        config.data_scale = self.data_scale;
        config.memory_probe = self.memory_probe;
        config.arena_bytes = self.arena_mib << 20;
        config.quota_bytes = self.quota_mib.map(|m| m << 20);
        config.max_instances = self.max_instances;
        config.min_instances = self.min_instances.min(self.max_instances);
        config.idle_timeout = std::time::Duration::from_secs(self.idle_timeout);
        if let Some(socket) = &self.docker_socket {
            config.docker_socket = socket.clone();
        }
        config.threads = self.threads;
        config.python = self.python.clone();
        config.max_invocations = self.max_invocations;
        config.spill_dir = self.spill_dir.clone();
        Ok(config)
    }

    /// `--pack NAME=PATH`, by name.
    fn given_packs(&self) -> Result<HashMap<String, PathBuf>, Failure> {
        let mut given = HashMap::new();
        for p in &self.packs {
            let Some((name, path)) = p.split_once('=') else {
                return Err(input_error(format!("--pack {p}: expected NAME=PATH")));
            };
            given.insert(name.to_owned(), PathBuf::from(path));
        }
        Ok(given)
    }

    /// Every pack a daemon can find: given with `--pack`, or named `faasflow-pack-NAME` next
    /// to `faasflow` or on PATH (a cluster daemon does not know its workflows in advance).
    pub(crate) fn available_packs(&self) -> Result<Vec<String>, Failure> {
        let mut names: Vec<String> = self.given_packs()?.into_keys().collect();
        let mut dirs: Vec<PathBuf> = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(PathBuf::from))
            .into_iter()
            .collect();
        if let Some(paths) = std::env::var_os("PATH") {
            dirs.extend(std::env::split_paths(&paths));
        }
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                let file = entry.file_name();
                if let Some(name) = file.to_str().and_then(|f| f.strip_prefix("faasflow-pack-"))
                    && !name.is_empty()
                    && !name.contains('.')
                    && entry.path().is_file()
                {
                    names.push(name.to_owned());
                }
            }
        }
        names.sort_unstable();
        names.dedup();
        Ok(names)
    }
}

pub(crate) fn run(args: &RunArgs) -> Result<(), Failure> {
    if !(1..=MAX_REPEAT).contains(&args.repeat) {
        return Err(input_error(format!("--repeat must be from 1 to {MAX_REPEAT}")));
    }
    // Flags first, so that a bad flag is reported before the input and the file are read.
    args.data.daemon_config([])?;
    let mut input = parse_input(&args.input)?;
    let loaded = load(&args.file)?;
    let wf = Arc::new(loaded.workflow);
    if wf.format != SourceFormat::Native {
        fill_staged_inputs(&wf, &mut input, args.data.data_scale);
    }
    let cluster = ClusterView::uniform(1, wf.slots_needed().clamp(1, u64::from(u32::MAX)) as u32);
    let cfg = PlannerConfig {
        allow_overcommit: true,
        ..PlannerConfig::default()
    };
    let plan =
        partition(&wf, &cluster, &cfg).map_err(|e| Failure::Input(format!("{}: error: {e}", args.file.display())))?;
    let mut packs: Vec<&str> = wf
        .graph
        .node_weights()
        .filter_map(|n| n.task().and_then(|t| t.spec.pack.as_deref()))
        .collect();
    packs.sort_unstable();
    packs.dedup();
    let config = args.data.daemon_config(packs)?;
    let daemon = Daemon::start(config).map_err(|e| Failure::Other(e.into()))?;
    let version = plan.version;
    daemon
        .install(wf.clone(), plan)
        .map_err(|e| Failure::Input(format!("{}: error: {e}", args.file.display())))?;
    let mut failed = 0u32;
    let mut e2e = Vec::with_capacity(args.repeat as usize);
    for _ in 0..args.repeat {
        let report = daemon
            .invoke(Invoke::new(wf.name.clone(), version, input.clone()))
            .report()
            .map_err(|e| Failure::Input(format!("error: {e}")))?;
        if report.status != "ok" {
            failed += 1;
        }
        e2e.push(report.e2e_us);
        // A closed output stops the runs; the daemon stops (and cleans up) on the way out.
        print_report(&report, args.report)?;
    }
    if args.repeat > 1 && args.report == ReportFormat::Text {
        e2e.sort_by(f64::total_cmp);
        let pct = |q: f64| e2e[((e2e.len() - 1) as f64 * q).round() as usize] / 1e3;
        sayln!(
            "{} invocations: {} ok, {failed} failed; end-to-end p50 {:.3} ms, p99 {:.3} ms",
            args.repeat,
            args.repeat - failed,
            pct(0.5),
            pct(0.99)
        );
    }
    drop(daemon);
    if failed > 0 {
        return Err(Failure::Silent);
    }
    Ok(())
}

/// FaaSFlow's workflows read files staged before the run: fills those `--input` does not
/// give ([`faasflow_core::dag::fill_staged_inputs`]) and says so.
pub(crate) fn fill_staged_inputs(wf: &Workflow, input: &mut serde_json::Value, data_scale: f64) {
    let (filled, bytes) = faasflow_core::dag::fill_staged_inputs(wf, input, data_scale);
    note_filled(&wf.name, filled, bytes);
}

/// Says that `filled` staged inputs of `workflow` were filled with `bytes` of synthetic data.
pub(crate) fn note_filled(workflow: &str, filled: usize, bytes: u64) {
    if filled > 0 {
        sayln!(
            "note: {} of workflow `{workflow}` (FaaSFlow's staged files) not given in --input: filled with {} of synthetic bytes",
            count(filled, "input"),
            fmt_bytes(bytes)
        );
    }
}

pub(crate) fn print_report(report: &Report, format: ReportFormat) -> Result<(), Failure> {
    match format {
        ReportFormat::Json => outln!("{}", serde_json::to_string(report).unwrap_or_default()),
        ReportFormat::Text => {
            if report.status == "ok" {
                outln!("{}", serde_json::to_string_pretty(&report.output).unwrap_or_default())?;
            }
            crate::say(&report.to_text());
            Ok(())
        }
    }
}
