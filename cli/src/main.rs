//! `faasflow`: the command-line tool of the faasflow workflow platform.
//!
//! It checks and plans workflows (`check`, `plan`), runs them on one embedded worker (`run`),
//! creates a cluster's certificates (`cluster init`), runs the cluster's processes (`planner`,
//! `daemon`), starts and stops a local cluster (`up`, `down`), deploys and invokes workflows on
//! a cluster (`deploy`, `invoke`), and generates large synthetic workflows for testing
//! (`generate`).
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `println!` to standard output through [`out`]: evaluates to `Result<(), Failure>`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::out(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprintln!` through [`say`]: a line a one-shot command tells its user on standard error.
macro_rules! sayln {
    ($($arg:tt)*) => {
        $crate::say(&format!("{}\n", format_args!($($arg)*)))
    };
}

mod client;
mod cluster;
mod executions;
mod files;
mod local;
mod log;
mod metrics;
mod process;
mod record;
mod run;
mod services;
mod table;
mod top;
mod workflows;

use clap::{Parser, Subcommand, ValueEnum};
use faasflow_core::{ClusterView, PlannerConfig};
use faasflow_planner::load::{Loaded, MAX_FILE_BYTES, load_file};
use faasflow_planner::partition::partition;
use faasflow_planner::random::MAX_GENERATED_TASKS;
use faasflow_planner::render::{count, fmt_bytes, fmt_thousands, graph_text, plan_dot, plan_json_string, plan_text};
use faasflow_planner::{GenParams, WdlError, random_workflow, to_flat_yaml};

/// Serverless workflows with worker-side scheduling and in-memory data passing.
#[derive(Debug, Parser)]
#[command(name = "faasflow", version, about, long_about = None)]
struct Cli {
    /// How log lines are written (the filter is `FAASFLOW_LOG`, `info` when unset); `up` starts
    /// the cluster's processes with it.
    #[arg(long, global = true, value_enum, default_value_t)]
    log_format: log::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a workflow on one embedded worker and report where the time went.
    Run(run::RunArgs),
    /// Partition a workflow for a cluster and show the plan.
    Plan(PlanArgs),
    /// Check a workflow file and summarise it, without planning.
    Check {
        /// The workflow file (faasflow WDL, or FaaSFlow's workflow.yaml / flat_workflow.yaml).
        file: PathBuf,
    },
    /// Manage the cluster: `cluster init` creates its CA and the nodes' certificates.
    Cluster(cluster::ClusterArgs),
    /// Start a local cluster: a planner and N daemons as processes on 127.0.0.1 (and a private
    /// Redis when redis-server is installed), recorded in DIR/cluster.json.
    Up(local::UpArgs),
    /// Deploy a workflow to the cluster: a new version, planned for the live workers.
    Deploy(client::DeployArgs),
    /// Invoke a deployed workflow on the cluster and print its output and report.
    Invoke(client::InvokeArgs),
    /// Start a deployed workflow without waiting: prints the execution's id at once (see
    /// `describe` and `executions`).
    Start(executions::StartArgs),
    /// List executions, newest first (filter by workflow and status).
    Executions(executions::ExecutionsArgs),
    /// Show an execution: its status, and once it has ended its output or error.
    Describe(executions::DescribeArgs),
    /// Read a succeeded execution's outputs, those too large or binary to show included
    /// (each is kept on its worker until read whole once).
    Result(executions::ResultArgs),
    /// Cancel a running execution: it ends on every worker, its calls are abandoned and its
    /// data freed.
    Cancel(executions::CancelArgs),
    /// List the deployed workflows: each installed version, its mode, workers and invocations
    /// in flight; with a NAME, that workflow in detail (where each task runs, its edges by
    /// tier, its source with --source).
    Workflows(workflows::WorkflowsArgs),
    /// Remove a deployed workflow: new invocations are refused at once, those in flight end,
    /// then every version leaves the workers and the planner's state.
    Undeploy(workflows::UndeployArgs),
    /// Show each deployed workflow's memory: per task the memory given, the peak declared and
    /// the peak measured by the daemons' memory probe, and the in-memory quota from each.
    Status(client::StatusArgs),
    /// Export an invocation as a Chrome trace (open it in Perfetto, ui.perfetto.dev): one track
    /// per worker and instance, function spans, trigger and transfer spans, edges as arrows.
    Trace(client::TraceArgs),
    /// Show the local cluster's metrics live: invocations, trigger latency, bytes per tier,
    /// spills, instances, arena use (from each process's /metrics).
    Top(top::TopArgs),
    /// Stop the local cluster that `up` started in DIR.
    Down(local::DownArgs),
    /// Run the planner: workers register with it; it plans, deploys and forwards invocations.
    Planner(services::PlannerArgs),
    /// Run a worker's daemon: it registers with the planner, installs plans and runs functions.
    Daemon(services::DaemonArgs),
    /// Write a random layered workflow in FaaSFlow's flat form (for tests and benchmarks).
    Generate {
        /// Number of functions, at most 70,000 (the largest workflow whose file loads).
        #[arg(long, default_value_t = 200)]
        functions: usize,
        /// Seed of the generator (same seed, same workflow).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
struct PlanArgs {
    /// The workflow file (faasflow WDL, or FaaSFlow's workflow.yaml / flat_workflow.yaml).
    file: PathBuf,
    /// Number of workers in the cluster.
    #[arg(long, short = 'w', default_value_t = 3)]
    workers: usize,
    /// Container slots per worker (instances it can run at once).
    #[arg(long, short = 's', default_value_t = 64)]
    slots: u32,
    /// Worker-side scheduling (partitioned), the master-side baseline, or worker-side with
    /// every edge through remote storage.
    #[arg(long, value_enum, default_value_t = ModeArg::Workersp)]
    mode: ModeArg,
    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Plan even when the workflow needs more slots than the cluster has.
    #[arg(long)]
    allow_overcommit: bool,
    /// Safety margin μ of the memory quota, MiB per function.
    #[arg(long, default_value_t = 16.0)]
    margin_mib: f64,
    /// Version number to write into the plan.
    #[arg(long = "plan-version", default_value_t = 1)]
    plan_version: u64,
    /// Write to this file instead of standard output.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ModeArg {
    /// Partitioned, worker-side scheduling.
    Workersp,
    /// FaaSFlow's master-side baseline: the planner triggers every function, data goes
    /// through Redis.
    Mastersp,
    /// Partitioned, worker-side scheduling, but every edge goes through Redis (even between
    /// functions on one worker): what worker-side triggering gains without in-memory data.
    WorkerspRemote,
}

impl ModeArg {
    /// The planner's mode.
    pub(crate) fn mode(self) -> faasflow_core::Mode {
        use faasflow_core::Mode;
        match self {
            ModeArg::Workersp => Mode::WorkerSp,
            ModeArg::Mastersp => Mode::MasterSp,
            ModeArg::WorkerspRemote => Mode::WorkerSpRemote,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// Groups per worker, tiers, critical path, bytes local vs crossing.
    Text,
    /// Stable JSON (docs/plan-json.md).
    Json,
    /// Graphviz DOT, clustered by worker.
    Dot,
    /// The compiled graph, before partitioning.
    Graph,
}

/// Most workers `plan` simulates.
const MAX_WORKERS: usize = 10_000;

/// Exit status for a workflow or plan the user must fix.
const EXIT_INPUT: u8 = 2;

/// The hidden subcommand that makes `faasflow` a pack: `faasflow __pack synthetic [--list]`
/// serves FaaSFlow's synthetic benchmark body for functions without a pack of their own.
const PACK_SUBCOMMAND: &str = "__pack";

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|a| a == PACK_SUBCOMMAND) {
        match args.next() {
            Some(p) if p == faasflow_sdk::synthetic::NAME => {
                faasflow_sdk::serve_with_args(faasflow_sdk::synthetic::pack(), args)
            }
            other => {
                eprintln!(
                    "error: `faasflow {PACK_SUBCOMMAND}` serves the built-in pack `{}` (got {other:?}); the daemon starts it",
                    faasflow_sdk::synthetic::NAME
                );
                return ExitCode::from(EXIT_INPUT);
            }
        }
    }
    let cli = Cli::parse();
    log::init(cli.log_format);
    let result = match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Plan(args) => plan(&args),
        Command::Check { file } => check(&file),
        Command::Cluster(args) => cluster::run(&args),
        Command::Up(args) => local::up(&args, cli.log_format),
        Command::Deploy(args) => client::deploy(&args),
        Command::Invoke(args) => client::invoke(&args),
        Command::Start(args) => executions::start(&args),
        Command::Executions(args) => executions::executions(&args),
        Command::Describe(args) => executions::describe(&args),
        Command::Result(args) => executions::result(&args),
        Command::Cancel(args) => executions::cancel(&args),
        Command::Workflows(args) => workflows::workflows(&args),
        Command::Undeploy(args) => workflows::undeploy(&args),
        Command::Status(args) if args.wants_cluster() => workflows::cluster_status(&args),
        Command::Status(args) => client::status(&args),
        Command::Trace(args) => client::trace(&args),
        Command::Top(args) => top::top(&args),
        Command::Down(args) => local::down(&args),
        Command::Planner(args) => services::planner(&args),
        Command::Daemon(args) => services::daemon(&args),
        Command::Generate {
            functions,
            seed,
            output,
        } => generate(functions, seed, output.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Input(msg)) => {
            eprintln!("{msg}");
            ExitCode::from(EXIT_INPUT)
        }
        Err(Failure::Other(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
        Err(Failure::Silent) => ExitCode::FAILURE,
        Err(Failure::Closed) => ExitCode::from(EXIT_CLOSED),
    }
}

#[derive(Debug)]
enum Failure {
    /// Something in the user's input (already a complete message).
    Input(String),
    /// Anything else.
    Other(anyhow::Error),
    /// Failed, and the output already says why (e.g. a failed invocation's report).
    Silent,
    /// Standard output was closed by its reader: nothing more to say.
    Closed,
}

impl From<WdlError> for Failure {
    fn from(e: WdlError) -> Self {
        Failure::Input(e.to_string())
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

fn load(file: &Path) -> Result<Loaded, Failure> {
    let loaded = load_file(file)?;
    for w in &loaded.warnings {
        eprintln!("{}", w.to_string().replacen(": error: ", ": warning: ", 1));
    }
    Ok(loaded)
}

/// Exit status of a command whose standard output was closed by its reader (`| head`): what a
/// shell shows for a process ended by SIGPIPE.
const EXIT_CLOSED: u8 = 141;

/// Writes `text` to standard output. A reader that went away (`faasflow … | head`) ends the
/// command quietly ([`Failure::Closed`]); another failure (a full disk) is an error.
pub(crate) fn out(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => Failure::Closed,
            _ => Failure::Other(anyhow::anyhow!("cannot write to standard output: {e}")),
        })
}

/// Writes `text` to standard error as it is: what a one-shot command tells its user besides
/// its output (notes, summaries, a report's breakdown). The long-running processes log through
/// `tracing` instead.
pub(crate) fn say(text: &str) {
    eprint!("{text}");
}

/// A multi-threaded tokio runtime. Each of its threads enters the span current here for its
/// whole life, so that a service's events on any thread carry its span (`planner`, `worker`).
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    let span = tracing::Span::current();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || log::enter_for_thread(span.clone()))
        .on_thread_stop(log::leave_for_thread)
        .build()
        .map_err(|e| Failure::Other(anyhow::anyhow!("cannot start the async runtime: {e}")))
}

fn emit(text: &str, output: Option<&Path>) -> Result<(), Failure> {
    match output {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| Failure::Other(anyhow::anyhow!("cannot write {}: {e}", path.display()))),
        None => out(text),
    }
}

fn plan(args: &PlanArgs) -> Result<(), Failure> {
    if let Some(out) = &args.output
        && std::path::absolute(out).ok() == std::path::absolute(&args.file).ok()
    {
        return Err(Failure::Input(format!(
            "error: -o {} would overwrite the workflow file",
            out.display()
        )));
    }
    let loaded = load(&args.file)?;
    let wf = &loaded.workflow;
    if matches!(args.format, Format::Graph) {
        return emit(&graph_text(wf), args.output.as_deref());
    }
    if !(1..=MAX_WORKERS).contains(&args.workers) {
        return Err(Failure::Input(format!(
            "error: --workers must be from 1 to {MAX_WORKERS}"
        )));
    }
    if !(args.margin_mib.is_finite() && args.margin_mib >= 0.0) {
        return Err(Failure::Input("error: --margin-mib must be a number ≥ 0".into()));
    }
    if args.slots == 0 {
        return Err(Failure::Input("error: --slots must be at least 1".into()));
    }
    let cluster = ClusterView::uniform(args.workers, args.slots);
    let cfg = PlannerConfig {
        mode: args.mode.mode(),
        allow_overcommit: args.allow_overcommit,
        margin_mib: args.margin_mib,
        version: args.plan_version,
        ..PlannerConfig::default()
    };
    let plan =
        partition(wf, &cluster, &cfg).map_err(|e| Failure::Input(format!("{}: error: {e}", args.file.display())))?;
    let text = match args.format {
        Format::Text => plan_text(wf, &plan, &cluster),
        Format::Json => plan_json_string(wf, &plan, &cluster),
        Format::Dot => plan_dot(wf, &plan, &cluster),
        Format::Graph => unreachable!("handled above"),
    };
    emit(&text, args.output.as_deref())
}

fn check(file: &Path) -> Result<(), Failure> {
    let loaded = load(file)?;
    let wf = &loaded.workflow;
    let bytes = wf.graph.edge_weights().fold(0u64, |acc, e| acc.saturating_add(e.bytes));
    let slots = wf.slots_needed();
    let line = format!(
        "{}: workflow `{}` ({}) is valid: {}, {}, {}, {}, {}, {}, {} per invocation\n",
        file.display(),
        wf.name,
        wf.format.as_str(),
        count(wf.task_count(), "function"),
        count(wf.graph.node_count() - wf.task_count(), "virtual node"),
        count(wf.graph.edge_count(), "edge"),
        count(wf.inputs.len(), "input"),
        count(wf.outputs.len(), "output"),
        count(slots as usize, "slot"),
        fmt_bytes(bytes)
    );
    emit(&line, None)
}

fn generate(functions: usize, seed: u64, output: Option<&Path>) -> Result<(), Failure> {
    let limits = || {
        format!(
            "a workflow file holds at most {} MiB and {} YAML values",
            MAX_FILE_BYTES >> 20,
            fmt_thousands(faasflow_planner::yaml::MAX_VALUES)
        )
    };
    if !(1..=MAX_GENERATED_TASKS).contains(&functions) {
        return Err(Failure::Input(format!(
            "error: --functions must be from 1 to {}: more would not load ({})",
            fmt_thousands(MAX_GENERATED_TASKS),
            limits()
        )));
    }
    let params = GenParams {
        tasks: functions,
        ..GenParams::default()
    };
    let text = to_flat_yaml(&random_workflow(seed, &params));
    // The range above keeps well within the limit; never write a file that cannot load.
    if text.len() > MAX_FILE_BYTES {
        return Err(Failure::Other(anyhow::anyhow!(
            "the workflow of {functions} functions (seed {seed}) takes {} bytes, over the limit ({}); ask for fewer",
            text.len(),
            limits()
        )));
    }
    emit(&text, output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_thread_of_the_runtime_is_in_the_span_it_was_built_in() {
        // Spans are recorded only under a subscriber, and the runtime's threads see only the
        // global one.
        let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry());
        let span = tracing::info_span!("worker", worker = "worker-0");
        let rt = span.in_scope(runtime).expect("runtime");
        let current = || tracing::Span::current().metadata().map(|m| m.name());
        let seen = rt.block_on(async move {
            let mut seen = Vec::new();
            for _ in 0..8 {
                seen.push(tokio::spawn(async move { current() }).await.expect("task"));
            }
            seen.push(tokio::task::spawn_blocking(current).await.expect("blocking task"));
            seen
        });
        assert!(seen.iter().all(|s| *s == Some("worker")), "{seen:?}");
        // The thread that built it is not left in the span.
        assert_eq!(current(), None);
    }
}
