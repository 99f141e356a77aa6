//! The local cluster: `faasflow up` (a planner and N daemons as processes of this binary on
//! loopback, with a private Redis when one is installed), `deploy`, `invoke` and `down`.
//!
//! `up` records what it started in `DIR/cluster.json`; `deploy` and `invoke` find the planner
//! there (or take `--planner`), and `down` stops exactly the processes it names.

use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use faasflow_core::dag::SourceFormat;
use faasflow_core::report::Report;
use faasflow_daemon::io::tls::{ClusterCa, NodeIdentity};
use faasflow_planner::load::{MAX_FILE_BYTES, default_name};
use faasflow_proto::v1 as pb;
use faasflow_proto::v1::planner_client::PlannerClient;
use faasflow_rpc::auth::{Attach, AuthChannel, TOKEN_FILE, Token};
use faasflow_rpc::channel::MAX_MESSAGE;
use faasflow_rpc::status::describe;
use rustix::io::Errno;
use rustix::process::{Pid, Signal, geteuid, kill_process};
use serde_json::json;
use tonic::transport::Endpoint;

use crate::Failure;
use crate::files::{ReadError, holds, mib, read_bounded};
use crate::run::{ReportFormat, fill_staged_inputs, parse_input, print_report};
use crate::services::runtime;

/// Most workers `up` starts.
const MAX_WORKERS: usize = 64;
/// Time `up` gives the planner and the workers to come up.
const UP_TIMEOUT: Duration = Duration::from_secs(30);
/// Time `down` gives a process to exit after SIGTERM, before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Time limit of connecting to the planner.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time limit of a deploy.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(120);
/// Lines of a log shown when its process failed.
const LOG_TAIL: usize = 20;
/// The record of a running local cluster, in its directory.
const CLUSTER_FILE: &str = "cluster.json";

/// Where the local cluster lives: `--dir`, else $FAASFLOW_DIR, else ./.faasflow.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DirArg {
    /// The local cluster's directory (certificates, logs, cluster.json) [default: $FAASFLOW_DIR, else ./.faasflow]
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

impl DirArg {
    fn path(&self) -> PathBuf {
        self.dir
            .clone()
            .or_else(|| std::env::var_os("FAASFLOW_DIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(".faasflow"))
    }

    /// What to do about a token file of the cluster's directory that cannot be used: `--dir`
    /// is suggested only when it was not given.
    fn token_hint(&self) -> String {
        let fix = "fix or replace it (`faasflow up` and `faasflow cluster init` write it), or pass the token with \
                   --token-file";
        if self.dir.is_some() {
            return fix.to_owned();
        }
        let from = if std::env::var_os("FAASFLOW_DIR").is_some() {
            "$FAASFLOW_DIR"
        } else {
            "the default"
        };
        format!(
            "{fix}; the cluster's directory is {} ({from}): pass --dir DIR when the cluster is elsewhere",
            self.path().display()
        )
    }
}

/// How a client finds the planner.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Target {
    #[command(flatten)]
    dir: DirArg,
    /// The planner's address (host:port), instead of the one in DIR/cluster.json.
    #[arg(long, conflicts_with = "dir")]
    planner: Option<String>,
    /// The file with the cluster's API token [default: DIR/certs/token, when there is one].
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct UpArgs {
    /// Number of workers (daemons worker-0 … worker-N−1).
    #[arg(long, short = 'w', default_value_t = 3)]
    workers: usize,
    #[command(flatten)]
    dir: DirArg,
    /// Listen on fixed ports: the planner on P, worker i's gRPC on P+1+2i and QUIC on P+2+2i
    /// (default: free ports chosen by the system).
    #[arg(long, value_name = "P")]
    base_port: Option<u16>,
    /// Container slots each worker offers.
    #[arg(long, default_value_t = 64)]
    slots: u32,
    /// Size of each worker's shared-memory arena, MiB.
    #[arg(long, default_value_t = 1024)]
    arena_mib: u64,
    /// Multiplies the declared runtime of functions without a pack (synthetic bodies).
    #[arg(long, default_value_t = 1.0)]
    runtime_scale: f64,
    /// Multiplies the declared output sizes of functions without a pack.
    #[arg(long, default_value_t = 1.0)]
    data_scale: f64,
    /// How often workers send heartbeats, ms (a worker silent for 3 intervals that does not answer a direct call is lost).
    #[arg(long, default_value_t = 1000)]
    heartbeat_ms: u64,
    /// A worker's peers that stay silent this long are lost (and its invocations that touch
    /// them fail, or run again), ms (see `faasflow daemon --help`).
    #[arg(long, value_name = "MS", default_value_t = crate::services::DEFAULT_PEER_TIMEOUT_MS)]
    peer_timeout_ms: u64,
    /// Invocations the planner takes at once (at least 1); more are refused as overloaded.
    #[arg(long, value_name = "N", default_value_t = faasflow_control::service::DEFAULT_MAX_IN_FLIGHT,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_in_flight: u64,
    /// How the workers measure their instances' memory: auto, ebpf or proc (see
    /// `faasflow daemon --help`).
    #[arg(long, value_name = "auto|ebpf|proc", default_value = "auto", value_parser = crate::run::parse_probe)]
    memory_probe: faasflow_daemon::config::ProbeMode,
    /// Let the planner plan a workflow again from measured memory when a task's measured peak
    /// differs from its planned one by more than this, MiB (see `faasflow planner --help`).
    #[arg(long, value_name = "MIB")]
    replan_threshold_mib: Option<f64>,
    /// With --replan-threshold-mib: how far a measured runtime or output size may be from the
    /// planned one, as a factor (see `faasflow planner --help`).
    #[arg(long, value_name = "F", default_value_t = 2.0)]
    replan_factor: f64,
}

#[derive(Debug, clap::Args)]
pub(crate) struct DownArgs {
    #[command(flatten)]
    dir: DirArg,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
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

#[derive(Debug, clap::Args)]
pub(crate) struct DeployArgs {
    /// The workflow file (faasflow WDL, or FaaSFlow's workflow.yaml / flat_workflow.yaml).
    file: PathBuf,
    /// workersp: partitioned, the daemons trigger one another and pass data directly;
    /// mastersp: FaaSFlow's baseline, placed round robin, the planner triggers every function
    /// and every object goes through Redis (the planner needs --redis; `up` gives it);
    /// workersp-remote: placed and triggered as workersp, every edge through Redis (the
    /// daemons need --redis; `up` gives it).
    #[arg(long, value_enum, default_value_t = ModeArg::Workersp)]
    mode: ModeArg,
    /// Plan even when the workflow needs more slots than the cluster has.
    #[arg(long)]
    allow_overcommit: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// One workflow (default: every deployed workflow).
    name: Option<String>,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Args)]
pub(crate) struct TraceArgs {
    /// An invocation id (the planner keeps the latest invocations' reports), or a file of
    /// JSON reports, one per line (`faasflow run` or `invoke --report json`).
    invocation: String,
    /// Where to write the trace (Chrome trace-event JSON).
    #[arg(long, value_name = "FILE")]
    chrome: PathBuf,
    /// With a file of several reports: the invocation to export (default: the first).
    #[arg(long = "invocation", value_name = "ID")]
    pick: Option<u64>,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Args)]
pub(crate) struct InvokeArgs {
    /// The workflow's name (as `deploy` printed it).
    name: String,
    /// The version to run (default: the newest).
    #[arg(long = "version", value_name = "V")]
    version: Option<u64>,
    /// The workflow's input: a JSON object, or @FILE to read it from a file.
    #[arg(long, short = 'i', default_value = "{}")]
    input: String,
    /// How to print the report: text (human) or json (docs/run-report.md).
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    report: ReportFormat,
    /// Time limit of the invocation, ms, at least 1 (default: the workflow's `deadline`, else the
    /// planner's, 300 s).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    deadline_ms: Option<u64>,
    /// Scales the synthetic bytes filled in for FaaSFlow's staged inputs that --input does not
    /// give, as `faasflow run` does [default: the cluster's --data-scale from DIR/cluster.json,
    /// else 1].
    #[arg(long, value_name = "X")]
    data_scale: Option<f64>,
    #[command(flatten)]
    target: Target,
}

// ---- up ---------------------------------------------------------------------------------

/// Processes started by a `up` that has not finished: killed (and waited for) if it fails.
struct Started {
    children: Vec<(String, Child)>,
    armed: bool,
}

impl Started {
    fn find_dead(&mut self, logs: &Path) -> Option<String> {
        for (name, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                let log = logs.join(format!("{name}.log"));
                return Some(format!(
                    "{name} exited ({status}) while the cluster was starting; the end of {}:\n{}",
                    log.display(),
                    tail(&log, LOG_TAIL)
                ));
            }
        }
        None
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        for (_, child) in &mut self.children {
            let _ = child.kill();
        }
        for (_, child) in &mut self.children {
            let _ = child.wait();
        }
    }
}

/// The last `n` lines of a log file.
fn tail(path: &Path, n: usize) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return format!("  ({} cannot be read)", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 << 10)));
    let mut text = String::new();
    let _ = f.read_to_string(&mut text);
    let lines: Vec<&str> = text.lines().collect();
    let lines = &lines[lines.len().saturating_sub(n)..];
    if lines.is_empty() {
        return "  (empty)".into();
    }
    lines.iter().map(|l| format!("  {l}\n")).collect()
}

/// A free TCP port on loopback (the system's choice).
fn free_port() -> Result<u16, Failure> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .context("cannot find a free port on 127.0.0.1")
        .map_err(Failure::Other)
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

/// Creates the cluster CA in `dir` if missing, and the certificates of `names` that are missing.
/// The cluster's API token in `dir` (made when there is none).
fn ensure_token(dir: &Path) -> Result<Option<Token>, Failure> {
    let path = dir.join(TOKEN_FILE);
    if path.exists() {
        return Token::load(&path).map(Some).map_err(|e| Failure::Other(anyhow!("{e}")));
    }
    let token = Token::generate().map_err(|e| Failure::Other(anyhow!("cannot make the cluster's token: {e}")))?;
    token
        .write(&path)
        .map_err(|e| Failure::Other(anyhow!("cannot write the cluster's token: {e}")))?;
    Ok(Some(token))
}

fn ensure_certs(dir: &Path, names: &[String]) -> Result<(), Failure> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let ca = if ClusterCa::exists_in(dir) {
        ClusterCa::load(dir).map_err(|e| anyhow!("cannot load the cluster CA from {}: {e}", dir.display()))?
    } else {
        let ca = ClusterCa::generate("faasflow-local").map_err(|e| anyhow!("cannot create the cluster CA: {e}"))?;
        ca.write_to(dir).context("cannot write the cluster CA")?;
        ca
    };
    for name in names {
        let (cert, key) = NodeIdentity::file_names(name);
        if dir.join(&cert).is_file() && dir.join(&key).is_file() {
            continue;
        }
        let identity = ca
            .issue(name)
            .with_context(|| format!("cannot issue node `{name}`'s certificate"))?;
        identity.write_to(dir).context("cannot write a node certificate")?;
    }
    Ok(())
}

fn spawn(
    started: &mut Started,
    logs: &Path,
    name: &str,
    program: &Path,
    args: &[String],
    cwd: &Path,
) -> Result<u32, Failure> {
    let log_path = logs.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let err = log.try_clone().context("cannot open the log twice")?;
    let child = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .with_context(|| format!("cannot start {name} ({})", program.display()))?;
    let pid = child.id();
    started.children.push((name.to_owned(), child));
    Ok(pid)
}

/// A planner address from a file a process writes once listening.
fn read_addr(file: &Path) -> Option<SocketAddr> {
    let bytes = read_bounded(file, 256).ok()?;
    std::str::from_utf8(&bytes).ok()?.trim().parse().ok()
}

fn wait_for<T>(
    started: &mut Started,
    logs: &Path,
    what: &str,
    deadline: Instant,
    mut ready: impl FnMut() -> Option<T>,
) -> Result<T, Failure> {
    loop {
        if let Some(v) = ready() {
            return Ok(v);
        }
        if let Some(dead) = started.find_dead(logs) {
            return Err(Failure::Other(anyhow!("{dead}")));
        }
        if Instant::now() > deadline {
            return Err(Failure::Other(anyhow!(
                "{what} did not happen within {} s; see the logs in {}",
                UP_TIMEOUT.as_secs(),
                logs.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn up(args: &UpArgs) -> Result<(), Failure> {
    if !(1..=MAX_WORKERS).contains(&args.workers) {
        return Err(Failure::Input(format!(
            "error: --workers must be from 1 to {MAX_WORKERS}"
        )));
    }
    if args.slots == 0 || args.arena_mib == 0 || args.heartbeat_ms == 0 {
        return Err(Failure::Input(
            "error: --slots, --arena-mib and --heartbeat-ms must be at least 1".into(),
        ));
    }
    if let Some(p) = args.base_port
        && u32::from(p) + 2 * args.workers as u32 > u32::from(u16::MAX)
    {
        return Err(Failure::Input(format!(
            "error: --base-port {p} leaves no room for {} workers' ports (up to P+2N)",
            args.workers
        )));
    }
    let dir = args.dir.path();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = std::fs::canonicalize(&dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    let record_path = dir.join(CLUSTER_FILE);
    if let Some(record) = read_record(&record_path)? {
        let alive: Vec<String> = processes(&record)
            .into_iter()
            .filter(|p| is_running(p.pid, p.expect))
            .map(|p| format!("{} (pid {})", p.name, p.pid))
            .collect();
        if !alive.is_empty() {
            return Err(Failure::Input(format!(
                "error: a cluster is already up in {}: {}; stop it with `faasflow down --dir {}` first",
                dir.display(),
                alive.join(", "),
                dir.display()
            )));
        }
        eprintln!(
            "note: {} was left by a cluster whose processes are gone; replacing it",
            record_path.display()
        );
        std::fs::remove_file(&record_path).with_context(|| format!("cannot remove {}", record_path.display()))?;
    }
    let logs = dir.join("logs");
    let run = dir.join("run");
    let certs = dir.join("certs");
    for d in [&logs, &run] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let names: Vec<String> = (0..args.workers).map(|i| format!("worker-{i}")).collect();
    let mut nodes = vec!["planner".to_owned()];
    nodes.extend(names.iter().cloned());
    ensure_certs(&certs, &nodes)?;
    let token = ensure_token(&certs)?;
    let token_file = certs.join(TOKEN_FILE);
    let exe = std::env::current_exe().context("cannot find faasflow itself")?;
    let mut started = Started {
        children: Vec::new(),
        armed: true,
    };
    let deadline = Instant::now() + UP_TIMEOUT;

    // Redis, when installed: private, nothing written to disk.
    let redis = match on_path("redis-server") {
        Some(program) => {
            let port = free_port()?;
            let redis_dir = dir.join("redis");
            std::fs::create_dir_all(&redis_dir).with_context(|| format!("cannot create {}", redis_dir.display()))?;
            let redis_args: Vec<String> = [
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                &redis_dir.to_string_lossy(),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let pid = spawn(&mut started, &logs, "redis", &program, &redis_args, &redis_dir)?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            wait_for(&mut started, &logs, "Redis accepting connections", deadline, || {
                TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()
            })?;
            Some((format!("redis://{addr}"), pid))
        }
        None => {
            outln!("note: no redis-server on PATH: the cluster runs without the remote tier (Redis)")?;
            None
        }
    };

    // The planner.
    let planner_port = args.base_port.unwrap_or(0);
    let addr_file = run.join("planner.addr");
    let _ = std::fs::remove_file(&addr_file);
    let mut planner_args = vec![
        "planner".to_owned(),
        "--listen".to_owned(),
        format!("127.0.0.1:{planner_port}"),
        "--heartbeat-ms".to_owned(),
        args.heartbeat_ms.to_string(),
        "--addr-file".to_owned(),
        addr_file.to_string_lossy().into_owned(),
        "--token-file".to_owned(),
        token_file.to_string_lossy().into_owned(),
        "--max-in-flight".to_owned(),
        args.max_in_flight.to_string(),
    ];
    let planner_metrics = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    planner_args.extend(["--metrics-listen".to_owned(), planner_metrics.to_string()]);
    if let Some((url, _)) = &redis {
        planner_args.extend(["--redis".to_owned(), url.clone()]);
    }
    if let Some(t) = args.replan_threshold_mib {
        planner_args.extend(["--replan-threshold-mib".to_owned(), t.to_string()]);
        planner_args.extend(["--replan-factor".to_owned(), args.replan_factor.to_string()]);
    }
    let planner_pid = spawn(&mut started, &logs, "planner", &exe, &planner_args, &dir)?;
    let planner_addr = wait_for(&mut started, &logs, "the planner listening", deadline, || {
        read_addr(&addr_file)
    })?;

    // The workers.
    let mut worker_pids = BTreeMap::new();
    let mut worker_metrics = BTreeMap::new();
    for (i, name) in names.iter().enumerate() {
        let (grpc, quic) = match args.base_port {
            Some(p) => (p + 1 + 2 * i as u16, p + 2 + 2 * i as u16),
            None => (0, 0),
        };
        let mut worker_args = vec![
            "daemon".to_owned(),
            "--planner".to_owned(),
            planner_addr.to_string(),
            "--name".to_owned(),
            name.clone(),
            "--listen".to_owned(),
            format!("127.0.0.1:{grpc}"),
            "--peer-listen".to_owned(),
            format!("127.0.0.1:{quic}"),
            "--certs".to_owned(),
            certs.to_string_lossy().into_owned(),
            "--token-file".to_owned(),
            token_file.to_string_lossy().into_owned(),
            "--peer-timeout-ms".to_owned(),
            args.peer_timeout_ms.to_string(),
            "--slots".to_owned(),
            args.slots.to_string(),
            "--arena-mib".to_owned(),
            args.arena_mib.to_string(),
            "--runtime-scale".to_owned(),
            args.runtime_scale.to_string(),
            "--data-scale".to_owned(),
            args.data_scale.to_string(),
            "--memory-probe".to_owned(),
            args.memory_probe.to_string(),
            "--spill-dir".to_owned(),
            dir.join("spill").join(name).to_string_lossy().into_owned(),
        ];
        if let Some((url, _)) = &redis {
            worker_args.extend(["--redis".to_owned(), url.clone()]);
        }
        let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        worker_args.extend(["--metrics-listen".to_owned(), metrics.to_string()]);
        worker_metrics.insert(name.clone(), metrics);
        let pid = spawn(&mut started, &logs, name, &exe, &worker_args, &dir)?;
        worker_pids.insert(name.clone(), pid);
    }

    // Wait until every worker has registered.
    let rt = runtime()?;
    let mut shown = usize::MAX;
    let registered = wait_for(&mut started, &logs, "every worker registering", deadline, || {
        let metrics = rt.block_on(async {
            let mut client = connect(&planner_addr.to_string(), &token).await.ok()?;
            client.metrics(pb::MetricsRequest {}).await.ok().map(|r| r.into_inner())
        })?;
        let live: Vec<pb::RegisteredWorker> = metrics
            .registered
            .into_iter()
            .filter(|w| !w.lost && worker_pids.contains_key(&w.name))
            .collect();
        if live.len() != shown {
            shown = live.len();
            eprintln!("waiting for workers: {}/{} registered", live.len(), args.workers);
        }
        (live.len() == args.workers).then_some(live)
    })?;

    let record = json!({
        "dir": dir,
        "planner": {
            "addr": planner_addr.to_string(),
            "pid": planner_pid,
            "log": logs.join("planner.log"),
            "metrics": planner_metrics.to_string(),
        },
        "workers": registered.iter().map(|w| json!({
            "name": w.name,
            "pid": worker_pids[&w.name],
            "grpc_addr": w.grpc_addr,
            "quic_addr": w.quic_addr,
            "metrics": worker_metrics.get(&w.name).map(ToString::to_string),
            "log": logs.join(format!("{}.log", w.name)),
        })).collect::<Vec<_>>(),
        "redis": redis.as_ref().map(|(url, pid)| json!({"url": url, "pid": pid, "log": logs.join("redis.log")})),
        "certs": certs,
        "data_scale": args.data_scale,
    });
    let text = serde_json::to_string_pretty(&record).context("cannot encode cluster.json")?;
    std::fs::write(&record_path, text + "\n").with_context(|| format!("cannot write {}", record_path.display()))?;
    started.armed = false;

    outln!(
        "cluster up in {}: planner at {planner_addr}, {} workers",
        dir.display(),
        args.workers
    )?;
    for w in &registered {
        outln!(
            "  {}  daemon {}  peers {}  pid {}",
            w.name,
            w.grpc_addr,
            if w.quic_addr.is_empty() { "none" } else { &w.quic_addr },
            worker_pids[&w.name]
        )?;
    }
    match &redis {
        Some((url, _)) => outln!("  redis  {}", faasflow_remote::redact_url(url))?,
        None => outln!("  redis  none")?,
    }
    outln!(
        "logs in {}; stop it with `faasflow down --dir {}`",
        logs.display(),
        dir.display()
    )?;
    Ok(())
}

// ---- down -------------------------------------------------------------------------------

/// A process named in cluster.json.
struct Recorded {
    name: String,
    pid: u32,
    /// A word its command line must contain (a pid may have been reused since).
    expect: &'static str,
}

/// The record of the cluster `up` started in `dir` (an error saying so when there is none).
pub(crate) fn cluster_record(dir: &DirArg) -> Result<serde_json::Value, Failure> {
    let d = dir.path();
    read_record(&d.join(CLUSTER_FILE))?.ok_or_else(|| {
        Failure::Input(format!(
            "error: no local cluster in {} (no {CLUSTER_FILE}): start one with `faasflow up`",
            d.display()
        ))
    })
}

/// The record `up` wrote at `path`, if there is one. A file of that name that is not such a
/// record is an error (it may be the user's: nothing replaces or removes it).
fn read_record(path: &Path) -> Result<Option<serde_json::Value>, Failure> {
    let bytes = match read_bounded(path, MAX_FILE_BYTES) {
        Ok(bytes) => bytes,
        Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(ReadError::Io(e)) => return Err(Failure::Other(anyhow!("cannot read {}: {e}", path.display()))),
        Err(ReadError::TooLarge(size)) => {
            return Err(Failure::Other(anyhow!(
                "{} is larger than {}{}: `faasflow up` did not write it; choose another --dir",
                path.display(),
                mib(MAX_FILE_BYTES),
                holds(size)
            )));
        }
    };
    let record: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        Failure::Other(anyhow!(
            "{} is not valid JSON ({e}): `faasflow up` did not write it, or it was damaged; it is left as it is: \
             move it away, or choose another --dir",
            path.display()
        ))
    })?;
    if !record["planner"]["addr"].is_string() || !record["workers"].is_array() {
        return Err(Failure::Other(anyhow!(
            "{} is not the record of a cluster `faasflow up` started (it names no planner and workers); it is \
             left as it is: move it away, or choose another --dir",
            path.display()
        )));
    }
    Ok(Some(record))
}

/// The processes of a record: workers first, then the planner, then Redis.
fn processes(record: &serde_json::Value) -> Vec<Recorded> {
    let pid = |v: &serde_json::Value| {
        v.get("pid")
            .and_then(|p| p.as_u64())
            .and_then(|p| u32::try_from(p).ok())
    };
    let mut out = Vec::new();
    for w in record["workers"].as_array().into_iter().flatten() {
        if let Some(p) = pid(w) {
            let name = w["name"].as_str().unwrap_or("worker").to_owned();
            out.push(Recorded {
                name,
                pid: p,
                expect: "faasflow",
            });
        }
    }
    if let Some(p) = pid(&record["planner"]) {
        out.push(Recorded {
            name: "planner".into(),
            pid: p,
            expect: "faasflow",
        });
    }
    if let Some(p) = pid(&record["redis"]) {
        out.push(Recorded {
            name: "redis".into(),
            pid: p,
            expect: "redis-server",
        });
    }
    out
}

/// True when `pid` runs and its command line contains `expect` (a zombie is not running).
fn is_running(pid: u32, expect: &str) -> bool {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let Ok(stat) = std::fs::read_to_string(proc.join("stat")) else {
        return false;
    };
    // The state follows the command name in parentheses, which may itself hold spaces.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    if state == Some("Z") || state == Some("X") {
        return false;
    }
    // An exiting process has released its memory, and so its command line, before it has
    // closed its files (a daemon's BPF probe, its sockets) and become a zombie: still ours.
    std::fs::read(proc.join("cmdline"))
        .map(|c| c.is_empty() || String::from_utf8_lossy(&c).contains(expect))
        .unwrap_or(false)
}

/// Sends `sig` to a recorded process (one already gone is fine). The error says why it could
/// not be signalled.
fn signal(p: &Recorded, sig: Signal) -> Result<(), String> {
    let Some(pid) = i32::try_from(p.pid).ok().and_then(Pid::from_raw) else {
        return Err(format!("{} (pid {}): not a process id", p.name, p.pid));
    };
    match kill_process(pid, sig) {
        Ok(()) | Err(Errno::SRCH) => Ok(()),
        Err(e) => {
            use std::os::unix::fs::MetadataExt as _;
            let owner = std::fs::metadata(format!("/proc/{}", p.pid)).ok().map(|m| m.uid());
            Err(signal_error(&p.name, p.pid, e, owner, geteuid().as_raw()))
        }
    }
}

/// Why `down` could not signal process `pid` (`owner`: its user, when known; `me`: ours).
fn signal_error(name: &str, pid: u32, errno: Errno, owner: Option<u32>, me: u32) -> String {
    if errno != Errno::PERM {
        return format!("{name} (pid {pid}): cannot signal it: {}", std::io::Error::from(errno));
    }
    let whose = match owner {
        Some(uid) if uid != me => format!("it belongs to another user (uid {uid}; you are uid {me})"),
        _ => "the system does not let you signal it".to_owned(),
    };
    format!(
        "{name} (pid {pid}): not permitted to stop it ({}): {whose}; run `faasflow down` as the user who ran \
         `faasflow up`, or as root",
        std::io::Error::from(errno)
    )
}

fn wait_gone(procs: &[&Recorded], timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if procs.iter().all(|p| !is_running(p.pid, p.expect)) {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn down(args: &DownArgs) -> Result<(), Failure> {
    let dir = args.dir.path();
    let path = dir.join(CLUSTER_FILE);
    let Some(record) = read_record(&path)? else {
        outln!(
            "no cluster is up in {} (no {CLUSTER_FILE}); nothing to stop",
            dir.display()
        )?;
        return Ok(());
    };
    let procs: Vec<Recorded> = processes(&record)
        .into_iter()
        .filter(|p| is_running(p.pid, p.expect))
        .collect();
    // Those that cannot be signalled (another user's) are said so at once, not waited for.
    let mut denied = Vec::new();
    let mut signalled = Vec::new();
    for p in &procs {
        match signal(p, Signal::TERM) {
            Ok(()) => signalled.push(p),
            Err(why) => denied.push(why),
        }
    }
    if !wait_gone(&signalled, STOP_TIMEOUT) {
        for p in signalled.iter().filter(|p| is_running(p.pid, p.expect)) {
            eprintln!(
                "{} (pid {}) did not stop within {} s: killing it",
                p.name,
                p.pid,
                STOP_TIMEOUT.as_secs()
            );
            if let Err(why) = signal(p, Signal::KILL) {
                denied.push(why);
            }
        }
        if !wait_gone(&signalled, STOP_TIMEOUT) {
            let left: Vec<String> = signalled
                .iter()
                .filter(|p| is_running(p.pid, p.expect))
                .map(|p| format!("{} (pid {})", p.name, p.pid))
                .collect();
            denied.push(format!("{} did not stop", left.join(", ")));
        }
    }
    if !denied.is_empty() {
        return Err(Failure::Other(anyhow!(
            "could not stop the cluster in {}: {}; {} is kept so that `faasflow down` can try again",
            dir.display(),
            denied.join("; "),
            path.display()
        )));
    }
    std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    let _ = std::fs::remove_file(dir.join("run").join("planner.addr"));
    let names: Vec<&str> = procs.iter().map(|p| p.name.as_str()).collect();
    if names.is_empty() {
        outln!(
            "the cluster in {} had already stopped; removed {CLUSTER_FILE}",
            dir.display()
        )?;
    } else {
        outln!("stopped {} ({}) in {}", names.len(), names.join(", "), dir.display())?;
    }
    Ok(())
}

// ---- clients ----------------------------------------------------------------------------

/// The planner's address and the token to call it with: `--planner`, or the address in
/// DIR/cluster.json.
fn planner_of(target: &Target) -> Result<(String, Option<Token>), Failure> {
    Ok((planner_addr(target)?, token_of(target)?))
}

/// The token to call the planner with: `--token-file`, or DIR/certs/token when there is one
/// (not with `--planner`). A token file that is there but cannot be used is an error naming
/// it and the cause.
fn token_of(target: &Target) -> Result<Option<Token>, Failure> {
    if let Some(f) = &target.token_file {
        return Token::load(f)
            .map(Some)
            .map_err(|e| Failure::Input(format!("error: cannot use the token file given with --token-file: {e}")));
    }
    if target.planner.is_some() {
        return Ok(None);
    }
    let file = target.dir.path().join("certs").join(TOKEN_FILE);
    // Only a file that is not there means no token (`exists` is false for one that cannot
    // even be looked at).
    if let Ok(false) = file.try_exists() {
        return Ok(None);
    }
    Token::load(&file).map(Some).map_err(|e| {
        Failure::Input(format!(
            "error: cannot use the cluster's token file: {e}; {}",
            target.dir.token_hint()
        ))
    })
}

fn planner_addr(target: &Target) -> Result<String, Failure> {
    if let Some(addr) = &target.planner {
        return Ok(addr.clone());
    }
    let dir = target.dir.path();
    let path = dir.join(CLUSTER_FILE);
    let record = read_record(&path)?.ok_or_else(|| {
        Failure::Input(format!(
            "error: no cluster is up in {} (no {CLUSTER_FILE}); start one with `faasflow up --dir {}`, or pass --planner ADDR",
            dir.display(),
            dir.display()
        ))
    })?;
    record["planner"]["addr"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| Failure::Other(anyhow!("{} names no planner address", path.display())))
}

async fn connect(addr: &str, token: &Option<Token>) -> Result<PlannerClient<AuthChannel>, String> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("`{addr}` is not a planner address (host:port): {e}"))?
        .connect_timeout(CONNECT_TIMEOUT);
    let channel = endpoint.connect().await.map_err(|e| {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        text
    })?;
    Ok(PlannerClient::with_interceptor(channel, Attach::new(token.clone()))
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE))
}

async fn client(addr: &str, token: &Option<Token>) -> Result<PlannerClient<AuthChannel>, Failure> {
    connect(addr, token).await.map_err(|e| {
        Failure::Other(anyhow!(
            "cannot reach the planner at {addr}: {e}; is the cluster up (`faasflow up`)?"
        ))
    })
}

/// A refusal by the planner: the user's to fix (exit 2) or not (exit 1).
fn refused(status: &tonic::Status) -> Failure {
    use tonic::Code;
    let text = describe(status);
    match status.code() {
        Code::InvalidArgument | Code::NotFound | Code::FailedPrecondition => Failure::Input(format!("error: {text}")),
        _ => Failure::Other(anyhow!("{text}")),
    }
}

pub(crate) fn deploy(args: &DeployArgs) -> Result<(), Failure> {
    // The file first: a file that cannot be deployed is said so without a cluster.
    let source = faasflow_planner::load::read_file(&args.file)?;
    let (addr, token) = planner_of(&args.target)?;
    let request = pb::DeployRequest {
        source,
        file_name: args.file.display().to_string(),
        mode: faasflow_rpc::convert::mode_to_proto(args.mode.mode()),
        allow_overcommit: args.allow_overcommit,
        default_name: default_name(&args.file),
    };
    let response = runtime()?.block_on(async {
        let mut client = client(&addr, &token).await?;
        tokio::time::timeout(DEPLOY_TIMEOUT, client.deploy(request))
            .await
            .map_err(|_| {
                Failure::Other(anyhow!(
                    "the planner at {addr} did not answer within {} s",
                    DEPLOY_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|s| refused(&s))
    })?;
    let r = response.into_inner();
    let placement = r.plan.as_ref().map(placement_text).unwrap_or_default();
    outln!("deployed workflow `{}` version {}{placement}", r.workflow, r.version)?;
    Ok(())
}

/// `faasflow status`: each deployed workflow's memory, declared and measured, and its quota.
pub(crate) fn trace(args: &TraceArgs) -> Result<(), Failure> {
    let path = Path::new(&args.invocation);
    if path.is_file() && std::path::absolute(path).ok() == std::path::absolute(&args.chrome).ok() {
        return Err(Failure::Input(format!(
            "error: --chrome {} would overwrite the file of reports it reads; write the trace to another file",
            args.chrome.display()
        )));
    }
    let (workflow, report) = if path.is_file() {
        let bytes = read_bounded(path, MAX_FILE_BYTES).map_err(|e| match e {
            ReadError::Io(e) => Failure::Input(format!("error: cannot read {}: {e}", path.display())),
            ReadError::TooLarge(size) => Failure::Input(format!(
                "error: {} is larger than {}{}, the limit for files of reports; put the report you want in a file \
                 of its own (`grep '\"invocation\":ID,' FILE`), or give its invocation id",
                path.display(),
                mib(MAX_FILE_BYTES),
                holds(size)
            )),
        })?;
        let text = String::from_utf8_lossy(&bytes);
        let mut reports = Vec::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let r: faasflow_core::report::Report = serde_json::from_str(line).map_err(|e| {
                Failure::Input(format!(
                    "error: {}:{}: not a JSON report (`faasflow run FILE --report json` writes them): {e}",
                    path.display(),
                    i + 1
                ))
            })?;
            reports.push(r);
        }
        let report = match args.pick {
            None => reports.into_iter().next(),
            Some(id) => reports.into_iter().find(|r| r.invocation == id),
        }
        .ok_or_else(|| {
            Failure::Input(format!(
                "error: {} holds no report{}",
                path.display(),
                args.pick.map(|id| format!(" of invocation {id}")).unwrap_or_default()
            ))
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        (name, report)
    } else {
        let id: u64 = args.invocation.parse().map_err(|_| {
            Failure::Input(format!(
                "error: `{}` is neither an invocation id nor a file of JSON reports",
                args.invocation
            ))
        })?;
        let (addr, token) = planner_of(&args.target)?;
        let response = runtime()?.block_on(async {
            let mut client = client(&addr, &token).await?;
            client
                .report(pb::ReportRequest { invocation_id: id })
                .await
                .map_err(|s| refused(&s))
        })?;
        let response = response.into_inner();
        let report = serde_json::from_slice(&response.report_json)
            .map_err(|e| Failure::Other(anyhow!("the planner's report of invocation {id} is not valid: {e}")))?;
        (response.workflow, report)
    };
    let trace = faasflow_core::trace::chrome_trace(&report, &workflow);
    let bytes = serde_json::to_vec(&trace).map_err(|e| Failure::Other(anyhow!("cannot encode the trace: {e}")))?;
    std::fs::write(&args.chrome, bytes)
        .map_err(|e| Failure::Input(format!("error: cannot write {}: {e}", args.chrome.display())))?;
    let events = trace["traceEvents"].as_array().map_or(0, Vec::len);
    eprintln!(
        "wrote {} ({events} events; invocation {} of `{workflow}`): open it in Perfetto (https://ui.perfetto.dev) or chrome://tracing",
        args.chrome.display(),
        report.invocation
    );
    Ok(())
}

pub(crate) fn status(args: &StatusArgs) -> Result<(), Failure> {
    let (addr, token) = planner_of(&args.target)?;
    let request = pb::MemoryRequest {
        workflow: args.name.clone().unwrap_or_default(),
    };
    let response = runtime()?.block_on(async {
        let mut client = client(&addr, &token).await?;
        client.memory(request).await.map_err(|s| refused(&s))
    })?;
    let workflows = response.into_inner().workflows;
    if workflows.is_empty() {
        outln!("no workflow is deployed (`faasflow deploy FILE`)")?;
    }
    crate::out(&memory_text(&workflows))
}

/// The memory table of `faasflow status`.
fn memory_text(workflows: &[pb::WorkflowMemory]) -> String {
    use std::fmt::Write as _;
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64);
    let mut out = String::new();
    for w in workflows {
        let _ = writeln!(
            out,
            "workflow `{}` version {}: quota {} declared, {} with measured peaks (margin {} MiB per task)",
            w.workflow,
            w.version,
            mib(w.declared_quota_bytes),
            mib(w.quota_bytes),
            w.margin_mib
        );
        let _ = writeln!(
            out,
            "  {:<32} {:>12} {:>14} {:>22} {:>14} {:>14} {:>14}",
            "task", "memory", "declared use", "measured peak (calls)", "planned use", "O(v) declared", "O(v)"
        );
        for t in &w.tasks {
            let measured = t
                .measured_peak_bytes
                .map_or_else(|| "–".to_owned(), |p| format!("{} ({})", mib(p), t.calls_measured));
            let _ = writeln!(
                out,
                "  {:<32} {:>12} {:>14} {:>22} {:>14} {:>14} {:>14}",
                t.task,
                mib(t.memory_bytes),
                mib(t.declared_use_bytes),
                measured,
                mib(t.planned_use_bytes),
                mib(t.declared_quota_bytes),
                mib(t.quota_bytes)
            );
        }
    }
    out
}

/// `: f1, f2 on worker-0; f3 on worker-1` from a plan.
fn placement_text(plan: &pb::Plan) -> String {
    let Ok((wf, plan, cluster)) = faasflow_rpc::plan_from_proto(plan) else {
        return String::new();
    };
    let mut by_worker: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in wf.topo_order() {
        if wf.graph[n].task().is_some() {
            let worker = cluster.workers[plan.worker_of(n) as usize].name.clone();
            by_worker.entry(worker).or_default().push(wf.graph[n].name.clone());
        }
    }
    let parts: Vec<String> = by_worker
        .iter()
        .map(|(w, fs)| format!("{} on {w}", fs.join(", ")))
        .collect();
    format!(": {}", parts.join("; "))
}

/// The data scale the cluster's daemons were started with (recorded by `up`), when the
/// planner is found through DIR/cluster.json.
fn cluster_data_scale(target: &Target) -> Option<f64> {
    if target.planner.is_some() {
        return None;
    }
    let record = read_record(&target.dir.path().join(CLUSTER_FILE)).ok()??;
    record["data_scale"].as_f64()
}

/// The invocation's request; refused when larger than the planner's API takes in one message
/// (`filled`: synthetic bytes were filled in for staged inputs).
fn invoke_request(args: &InvokeArgs, input: &serde_json::Value, filled: bool) -> Result<pb::InvokeRequest, Failure> {
    let input_json = serde_json::to_vec(input).context("cannot encode the input")?;
    let input_len = input_json.len();
    let request = pb::InvokeRequest {
        workflow: args.name.clone(),
        version: args.version,
        input_json,
        deadline_ms: args.deadline_ms.unwrap_or(0),
    };
    let len = prost::Message::encoded_len(&request);
    if len > MAX_MESSAGE {
        return Err(Failure::Input(format!(
            "error: the input of `{}` is {input_len} bytes of JSON ({len} bytes with the rest of the request), more \
             than the {} the planner's API takes in one message; pass a smaller input{}",
            args.name,
            mib(MAX_MESSAGE),
            if filled {
                " (the synthetic bytes filled in for FaaSFlow's staged inputs count: give those inputs in --input, \
                 or lower --data-scale)"
            } else {
                ""
            }
        )));
    }
    Ok(request)
}

pub(crate) fn invoke(args: &InvokeArgs) -> Result<(), Failure> {
    let mut input = parse_input(&args.input)?;
    // Before connecting: an input too large for the API is said so without a cluster.
    let mut request = invoke_request(args, &input, false)?;
    let data_scale = match args.data_scale {
        Some(x) if !x.is_finite() || x < 0.0 => {
            return Err(Failure::Input("error: --data-scale must be a number ≥ 0".into()));
        }
        Some(x) => x,
        None => cluster_data_scale(&args.target).unwrap_or(1.0),
    };
    let (addr, token) = planner_of(&args.target)?;
    let response = runtime()?
        .block_on(async {
            let mut client = client(&addr, &token).await?;
            // FaaSFlow's workflows read staged files: fill those not given, as `run` does.
            let plan = client
                .get_plan(pb::GetPlanRequest {
                    workflow: args.name.clone(),
                    version: args.version,
                })
                .await
                .map_err(|s| refused(&s))?
                .into_inner();
            let wf = plan
                .plan
                .as_ref()
                .map(faasflow_rpc::plan_from_proto)
                .transpose()
                .map_err(|e| anyhow!("the planner sent a plan that is not valid: {e}"))?
                .map(|(wf, _, _)| wf);
            if let Some(wf) = wf
                && wf.format != SourceFormat::Native
            {
                let given = input.as_object().map_or(0, serde_json::Map::len);
                fill_staged_inputs(&wf, &mut input, data_scale);
                if input.as_object().map_or(0, serde_json::Map::len) != given {
                    request = invoke_request(args, &input, true)?;
                }
            }
            client.invoke(request).await.map_err(|s| refused(&s))
        })?
        .into_inner();
    let report = (!response.report_json.is_empty())
        .then(|| serde_json::from_slice::<Report>(&response.report_json))
        .transpose()
        .map_err(|e| anyhow!("the planner sent a report that is not valid: {e}"))?;
    if let Some(report) = &report {
        print_report(report, args.report)?;
    }
    match pb::InvocationStatus::try_from(response.status) {
        Ok(pb::InvocationStatus::Succeeded) => {
            if report.is_none() {
                outln!("{}", String::from_utf8_lossy(&response.output_json))?;
            }
            Ok(())
        }
        _ if report.is_some() => Err(Failure::Silent),
        _ => Err(Failure::Other(anyhow!("{}", response.error))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_of_another_user_is_said_to_be_one() {
        assert_eq!(
            signal_error("worker-0", 4242, Errno::PERM, Some(1000), 65534),
            "worker-0 (pid 4242): not permitted to stop it (Operation not permitted (os error 1)): it belongs to \
             another user (uid 1000; you are uid 65534); run `faasflow down` as the user who ran `faasflow up`, or \
             as root"
        );
        // Same user, and still refused (a security module, a namespace): said as it is.
        let e = signal_error("planner", 7, Errno::PERM, Some(0), 0);
        assert!(e.contains("the system does not let you signal it"), "{e}");
        let e = signal_error("planner", 7, Errno::INVAL, None, 0);
        assert_eq!(e, "planner (pid 7): cannot signal it: Invalid argument (os error 22)");
    }
}
