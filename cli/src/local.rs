//! The local cluster: `faasflow up` starts a planner and N daemons as processes of this binary
//! on loopback (with a private Redis when one is installed) and records them, with their
//! command lines, in `DIR/cluster.json` ([`crate::record`]); `faasflow down` stops exactly the
//! processes named there. `faasflow up` on a cluster some of whose processes are gone starts
//! those again as they were started, on the addresses the cluster uses (the planner gets back
//! its state from `DIR/state`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use faasflow_rpc::auth::{TOKEN_FILE, Token};
use faasflow_rpc::channel::Transport;
use faasflow_rpc::planner::{Planner, RegisteredWorker};
use rustix::process::Signal;
use serde_json::json;

use crate::cluster::{ensure_certs, ensure_token, local_transport};
use crate::files::read_bounded;
use crate::log::LogFormat;
use crate::process::{Started, signal, wait_gone};
use crate::record::{CLUSTER_FILE, DirArg, Recorded, processes, read_record, write_record};
use crate::{Failure, runtime};

/// Most workers `up` starts.
const MAX_WORKERS: usize = 64;
/// Time `up` gives the planner and the workers to come up.
const UP_TIMEOUT: Duration = Duration::from_secs(30);
/// Time `down` gives a process to exit after SIGTERM, before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// The largest input file the planner takes, MiB (see `faasflow planner --help`).
    #[arg(long, value_name = "MIB", default_value_t = faasflow_control::uploads::DEFAULT_MAX_UPLOAD_BYTES >> 20,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_upload_mib: u64,
    /// How the workers measure their instances' memory: auto, ebpf or proc (see
    /// `faasflow daemon --help`).
    #[arg(long, value_name = "auto|ebpf|proc", default_value = "auto", value_parser = crate::run::parse_probe)]
    memory_probe: faasflow_daemon::config::ProbeMode,
    /// The Python interpreter the workers serve functions in Python with (see `faasflow daemon
    /// --help`).
    #[arg(long, value_name = "PATH", default_value = "python3")]
    python: std::path::PathBuf,
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

// ---- up ---------------------------------------------------------------------------------

/// `faasflow up`; the processes it starts log in `log_format`.
pub(crate) fn up(args: &UpArgs, log_format: LogFormat) -> Result<(), Failure> {
    check_up_args(args)?;
    let layout = match prepare_dir(&args.dir)? {
        Prepared::Fresh(layout) => layout,
        Prepared::PartlyDown { layout, record, down } => return restart(&layout, record, &down),
    };
    let program = Program::find(log_format)?;
    let names: Vec<String> = (0..args.workers).map(|i| format!("worker-{i}")).collect();
    let nodes: Vec<String> = std::iter::once("planner".to_owned())
        .chain(names.iter().cloned())
        .collect();
    ensure_certs(&layout.certs, &nodes)?;
    let token = ensure_token(&layout.certs)?;
    let mut started = Started::new(&layout.logs, UP_TIMEOUT);
    let redis = start_redis(&mut started, &layout)?;
    let planner = start_planner(&mut started, &program, &layout, args, redis.as_ref())?;
    let workers = start_workers(
        &mut started,
        &program,
        &layout,
        args,
        &names,
        planner.addr,
        redis.as_ref(),
    )?;
    let names: BTreeSet<String> = workers.keys().cloned().collect();
    let transport = local_transport(&layout.certs)?;
    let registered = wait_registered(&mut started, planner.addr, token, &transport, &names)?;
    let up = Up {
        planner,
        workers,
        registered,
        redis,
    };
    write_record(&layout.record, &up.record(&layout, args.data_scale))?;
    started.keep();
    up.print(&layout)
}

fn check_up_args(args: &UpArgs) -> Result<(), Failure> {
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
    Ok(())
}

/// This binary, as the program of the planner and the workers.
struct Program {
    exe: PathBuf,
    /// How they log: as `up` was asked to.
    log_format: LogFormat,
}

impl Program {
    fn find(log_format: LogFormat) -> Result<Program, Failure> {
        let exe = std::env::current_exe().context("cannot find faasflow itself")?;
        Ok(Program { exe, log_format })
    }

    /// The first arguments of its subcommand `command`.
    fn args(&self, command: &str) -> Vec<String> {
        vec![
            command.to_owned(),
            "--log-format".to_owned(),
            self.log_format.as_arg().to_owned(),
        ]
    }
}

/// Where a local cluster keeps its files.
struct Layout {
    /// The cluster's directory, absolute.
    dir: PathBuf,
    /// DIR/cluster.json.
    record: PathBuf,
    /// Each process's log, `<name>.log`.
    logs: PathBuf,
    /// Files the processes write while running (the planner's address).
    run: PathBuf,
    /// The CA, the nodes' certificates and the API token.
    certs: PathBuf,
}

/// What `up` finds in the cluster's directory.
enum Prepared {
    /// No cluster (or one whose processes are all gone): start one.
    Fresh(Layout),
    /// A cluster some of whose processes are gone (`down`): start those again.
    PartlyDown {
        layout: Layout,
        record: serde_json::Value,
        down: Vec<Recorded>,
    },
}

/// Makes the cluster's directory ready: refused when a cluster is up in it; the record of one
/// whose processes are all gone is replaced.
fn prepare_dir(dir: &DirArg) -> Result<Prepared, Failure> {
    let dir = dir.path();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = std::fs::canonicalize(&dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    let layout = Layout {
        record: dir.join(CLUSTER_FILE),
        logs: dir.join("logs"),
        run: dir.join("run"),
        certs: dir.join("certs"),
        dir,
    };
    if let Some(record) = read_record(&layout.record)? {
        let (alive, down): (Vec<Recorded>, Vec<Recorded>) =
            processes(&record).into_iter().partition(Recorded::is_running);
        if !alive.is_empty() && !down.is_empty() {
            return Ok(Prepared::PartlyDown { layout, record, down });
        }
        if !alive.is_empty() {
            let alive: Vec<String> = alive.iter().map(|p| format!("{} (pid {})", p.name, p.pid)).collect();
            return Err(Failure::Input(format!(
                "error: a cluster is already up in {}: {}; every process of it runs, so there is nothing to start \
                 again; stop it with `faasflow down --dir {}` first to start another",
                layout.dir.display(),
                alive.join(", "),
                layout.dir.display()
            )));
        }
        sayln!(
            "note: {} was left by a cluster whose processes are gone; replacing it",
            layout.record.display()
        );
        std::fs::remove_file(&layout.record).with_context(|| format!("cannot remove {}", layout.record.display()))?;
    }
    for d in [&layout.logs, &layout.run] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    Ok(Prepared::Fresh(layout))
}

/// The private Redis `up` started.
struct Redis {
    url: String,
    pid: u32,
    command: Command,
}

/// How a process was started (recorded, to start it again the same way).
#[derive(Debug, Clone)]
struct Command {
    program: PathBuf,
    args: Vec<String>,
}

impl Command {
    fn record(&self) -> serde_json::Value {
        json!({"program": self.program, "args": self.args})
    }
}

/// Starts a private Redis when redis-server is installed: on loopback, nothing written to disk.
fn start_redis(started: &mut Started, layout: &Layout) -> Result<Option<Redis>, Failure> {
    let Some(program) = on_path("redis-server") else {
        outln!("note: no redis-server on PATH: the cluster runs without the remote tier (Redis)")?;
        return Ok(None);
    };
    let port = free_port()?;
    let redis_dir = layout.dir.join("redis");
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
    let pid = started.spawn("redis", &program, &redis_args, &redis_dir)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_redis(started, addr)?;
    Ok(Some(Redis {
        url: format!("redis://{addr}"),
        pid,
        command: Command {
            program,
            args: redis_args,
        },
    }))
}

fn wait_redis(started: &mut Started, addr: SocketAddr) -> Result<(), Failure> {
    started.wait_for("Redis accepting connections", || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()
    })?;
    Ok(())
}

/// The planner `up` started.
struct PlannerProcess {
    addr: SocketAddr,
    pid: u32,
    command: Command,
}

/// Starts the planner and waits until it listens.
fn start_planner(
    started: &mut Started,
    program: &Program,
    layout: &Layout,
    args: &UpArgs,
    redis: Option<&Redis>,
) -> Result<PlannerProcess, Failure> {
    // A port of its own from the start, so that a planner started again is where the workers
    // and the clients look for it.
    let port = match args.base_port {
        Some(p) => p,
        None => free_port()?,
    };
    let addr_file = layout.run.join("planner.addr");
    let _ = std::fs::remove_file(&addr_file);
    let mut planner_args = program.args("planner");
    planner_args.extend([
        "--listen".to_owned(),
        format!("127.0.0.1:{port}"),
        "--heartbeat-ms".to_owned(),
        args.heartbeat_ms.to_string(),
        "--addr-file".to_owned(),
        addr_file.to_string_lossy().into_owned(),
        "--token-file".to_owned(),
        layout.certs.join(TOKEN_FILE).to_string_lossy().into_owned(),
        "--certs".to_owned(),
        layout.certs.to_string_lossy().into_owned(),
        "--max-in-flight".to_owned(),
        args.max_in_flight.to_string(),
        "--max-upload-mib".to_owned(),
        args.max_upload_mib.to_string(),
        "--state-dir".to_owned(),
        layout.dir.join("state").to_string_lossy().into_owned(),
    ]);
    if let Some(redis) = redis {
        planner_args.extend(["--redis".to_owned(), redis.url.clone()]);
    }
    if let Some(t) = args.replan_threshold_mib {
        planner_args.extend(["--replan-threshold-mib".to_owned(), t.to_string()]);
        planner_args.extend(["--replan-factor".to_owned(), args.replan_factor.to_string()]);
    }
    let pid = started.spawn("planner", &program.exe, &planner_args, &layout.dir)?;
    let addr = started.wait_for("the planner listening", || read_addr(&addr_file))?;
    Ok(PlannerProcess {
        addr,
        pid,
        command: Command {
            program: program.exe.clone(),
            args: planner_args,
        },
    })
}

/// A worker's daemon `up` started.
struct WorkerProcess {
    pid: u32,
    command: Command,
}

/// Starts a daemon for each of `names`, registering with the planner at `planner`.
fn start_workers(
    started: &mut Started,
    program: &Program,
    layout: &Layout,
    args: &UpArgs,
    names: &[String],
    planner: SocketAddr,
    redis: Option<&Redis>,
) -> Result<BTreeMap<String, WorkerProcess>, Failure> {
    let mut workers = BTreeMap::new();
    for (i, name) in names.iter().enumerate() {
        let (grpc, quic) = match args.base_port {
            Some(p) => (p + 1 + 2 * i as u16, p + 2 + 2 * i as u16),
            None => (0, 0),
        };
        let mut worker_args = program.args("daemon");
        worker_args.extend([
            "--planner".to_owned(),
            planner.to_string(),
            "--name".to_owned(),
            name.clone(),
            "--listen".to_owned(),
            format!("127.0.0.1:{grpc}"),
            "--peer-listen".to_owned(),
            format!("127.0.0.1:{quic}"),
            "--certs".to_owned(),
            layout.certs.to_string_lossy().into_owned(),
            "--token-file".to_owned(),
            layout.certs.join(TOKEN_FILE).to_string_lossy().into_owned(),
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
            layout.dir.join("spill").join(name).to_string_lossy().into_owned(),
            "--python".to_owned(),
            args.python.to_string_lossy().into_owned(),
        ]);
        if let Some(redis) = redis {
            worker_args.extend(["--redis".to_owned(), redis.url.clone()]);
        }
        let pid = started.spawn(name, &program.exe, &worker_args, &layout.dir)?;
        let command = Command {
            program: program.exe.clone(),
            args: worker_args,
        };
        workers.insert(name.clone(), WorkerProcess { pid, command });
    }
    Ok(workers)
}

/// Waits until every worker `up` started has registered with the planner (and is not lost);
/// returns them as the planner knows them.
fn wait_registered(
    started: &mut Started,
    planner: SocketAddr,
    token: Option<Token>,
    transport: &Transport,
    workers: &BTreeSet<String>,
) -> Result<Vec<RegisteredWorker>, Failure> {
    let rt = runtime()?;
    let addr = planner.to_string();
    let mut shown = usize::MAX;
    started.wait_for("every worker registering", || {
        let known = rt.block_on(async {
            let mut planner = Planner::connect(&addr, token.clone(), transport).await.ok()?;
            planner.workers().await.ok()
        })?;
        let live: Vec<RegisteredWorker> = known
            .into_iter()
            .filter(|w| !w.lost && workers.contains(&w.name))
            .collect();
        if live.len() != shown {
            shown = live.len();
            tracing::info!(registered = live.len(), workers = workers.len(), "waiting for workers");
        }
        (live.len() == workers.len()).then_some(live)
    })
}

/// A cluster `up` started, once every worker has registered.
struct Up {
    planner: PlannerProcess,
    workers: BTreeMap<String, WorkerProcess>,
    /// The workers as the planner knows them.
    registered: Vec<RegisteredWorker>,
    redis: Option<Redis>,
}

impl Up {
    /// Its record (DIR/cluster.json).
    fn record(&self, layout: &Layout, data_scale: f64) -> serde_json::Value {
        let logs = &layout.logs;
        json!({
            "dir": layout.dir,
            "planner": {
                "addr": self.planner.addr.to_string(),
                "pid": self.planner.pid,
                "log": logs.join("planner.log"),
                // `/metrics` is served on its API port.
                "metrics": self.planner.addr.to_string(),
                "command": self.planner.command.record(),
            },
            "workers": self.registered.iter().map(|w| json!({
                "name": w.name,
                "pid": self.workers.get(&w.name).map(|p| p.pid),
                "grpc_addr": w.grpc_addr,
                "quic_addr": w.quic_addr.clone().unwrap_or_default(),
                "metrics": w.grpc_addr,
                "log": logs.join(format!("{}.log", w.name)),
                "command": self.workers.get(&w.name).map(|p| p.command.record()),
            })).collect::<Vec<_>>(),
            "redis": self.redis.as_ref().map(|r| json!({
                "url": r.url,
                "pid": r.pid,
                "log": logs.join("redis.log"),
                "command": r.command.record(),
            })),
            "certs": layout.certs,
            "data_scale": data_scale,
        })
    }

    /// What it is, on standard output.
    fn print(&self, layout: &Layout) -> Result<(), Failure> {
        outln!(
            "cluster up in {}: planner at {}, {} workers",
            layout.dir.display(),
            self.planner.addr,
            self.workers.len()
        )?;
        for w in &self.registered {
            outln!(
                "  {}  daemon {}  peers {}  pid {}",
                w.name,
                w.grpc_addr,
                w.quic_addr.as_deref().unwrap_or("none"),
                self.workers.get(&w.name).map_or(0, |p| p.pid)
            )?;
        }
        match &self.redis {
            Some(r) => outln!("  redis  {}", faasflow_remote::redact_url(&r.url))?,
            None => outln!("  redis  none")?,
        }
        outln!(
            "  api    https://{}/v1 over TLS from the cluster's CA (curl --cacert {})",
            self.planner.addr,
            layout.certs.join(faasflow_rpc::tls::CA_CERT_FILE).display()
        )?;
        outln!(
            "logs in {}; stop it with `faasflow down --dir {}`",
            layout.logs.display(),
            layout.dir.display()
        )
    }
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

/// A planner address from a file a process writes once listening.
fn read_addr(file: &Path) -> Option<SocketAddr> {
    let bytes = read_bounded(file, 256).ok()?;
    std::str::from_utf8(&bytes).ok()?.trim().parse().ok()
}

// ---- up again -----------------------------------------------------------------------------

/// Starts again the processes of the cluster in `layout` that are `down`, each with the
/// command line it was first started with (a worker on the addresses it had), and waits until
/// every worker is registered and live.
fn restart(layout: &Layout, mut record: serde_json::Value, down: &[Recorded]) -> Result<(), Failure> {
    let names: Vec<&str> = down.iter().map(|p| p.name.as_str()).collect();
    sayln!(
        "note: {} of the cluster in {} stopped: starting {} again as first started (options given now are not used)",
        names.join(", "),
        layout.dir.display(),
        if names.len() == 1 { "it" } else { "them" }
    );
    let token = ensure_token(&layout.certs)?;
    let mut started = Started::new(&layout.logs, UP_TIMEOUT);
    let mut order: Vec<&Recorded> = down.iter().collect();
    order.sort_by_key(|p| match p.name.as_str() {
        "redis" => 0,
        "planner" => 1,
        _ => 2,
    });
    let mut again = Vec::new();
    for p in order {
        let entry = entry_of(&mut record, &p.name)
            .ok_or_else(|| Failure::Other(anyhow!("{} names no process `{}`", layout.record.display(), p.name)))?;
        let mut command = recorded_command(entry, &p.name, &layout.record)?;
        // A planner recorded before its API was served over TLS: it takes the cluster's
        // certificates now (the workers' commands always named them).
        if p.name == "planner"
            && !command
                .args
                .iter()
                .any(|a| a == "--certs" || a == "--insecure-loopback")
        {
            command
                .args
                .extend(["--certs".to_owned(), layout.certs.to_string_lossy().into_owned()]);
        }
        let addr_file = layout.run.join("planner.addr");
        if p.name == "planner" {
            let _ = std::fs::remove_file(&addr_file);
        }
        let cwd = if p.name == "redis" {
            layout.dir.join("redis")
        } else {
            layout.dir.clone()
        };
        // Its log is appended to: what it says from here on is the new process's.
        let log = layout.logs.join(format!("{}.log", p.name));
        let said_before = std::fs::metadata(&log).map_or(0, |m| m.len());
        let pid = started.spawn(&p.name, &command.program, &command.args, &cwd)?;
        entry["pid"] = json!(pid);
        match p.name.as_str() {
            "redis" => {
                let addr = entry["url"]
                    .as_str()
                    .and_then(|u| u.strip_prefix("redis://"))
                    .and_then(|a| a.parse().ok())
                    .ok_or_else(|| Failure::Other(anyhow!("{} names no Redis address", layout.record.display())))?;
                wait_redis(&mut started, addr)?;
            }
            "planner" => {
                let want = entry["addr"].as_str().and_then(|a| a.parse::<SocketAddr>().ok());
                started.wait_for("the planner listening on its address", || {
                    read_addr(&addr_file).filter(|a| Some(*a) == want)
                })?;
            }
            // The planner may still take the worker's old process for live: wait for the new
            // one to register (invocations then wait for it to hold its versions).
            _ => {
                started.wait_for(&format!("{} registering with the planner", p.name), || {
                    said_since(&log, said_before)
                        .contains("registered with the planner")
                        .then_some(())
                })?;
            }
        }
        again.push(format!("{} (pid {pid})", p.name));
    }
    let planner = record["planner"]["addr"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| Failure::Other(anyhow!("{} names no planner address", layout.record.display())))?;
    let workers: BTreeSet<String> = record["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["name"].as_str().map(str::to_owned))
        .collect();
    let transport = local_transport(&layout.certs)?;
    wait_registered(&mut started, planner, token, &transport, &workers)?;
    write_record(&layout.record, &record)?;
    started.keep();
    outln!(
        "started again in {}: {}; planner at {planner}, {} workers live",
        layout.dir.display(),
        again.join(", "),
        workers.len()
    )
}

/// What `log` says after its first `from` bytes.
fn said_since(log: &Path, from: u64) -> String {
    use std::io::{Read as _, Seek as _};
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(log)
        && f.seek(std::io::SeekFrom::Start(from)).is_ok()
    {
        let _ = f.take(1 << 20).read_to_string(&mut text);
    }
    text
}

/// The entry of process `name` in a cluster's record.
fn entry_of<'a>(record: &'a mut serde_json::Value, name: &str) -> Option<&'a mut serde_json::Value> {
    match name {
        "planner" | "redis" => record.get_mut(name),
        _ => record["workers"]
            .as_array_mut()?
            .iter_mut()
            .find(|w| w["name"].as_str() == Some(name)),
    }
}

/// How process `name` (its `entry` in the record at `file`) was started: a worker's on the
/// addresses the cluster knows it by.
fn recorded_command(entry: &serde_json::Value, name: &str, file: &Path) -> Result<Command, Failure> {
    let command = &entry["command"];
    let program = command["program"].as_str().map(PathBuf::from);
    let args: Option<Vec<String>> = command["args"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect());
    let (Some(program), Some(mut args)) = (program, args) else {
        return Err(Failure::Input(format!(
            "error: {name} is down, but {} does not say how it was started (an older faasflow wrote it); stop the \
             cluster with `faasflow down` and start it with `faasflow up`",
            file.display()
        )));
    };
    for (flag, key) in [("--listen", "grpc_addr"), ("--peer-listen", "quic_addr")] {
        if name == "planner" || name == "redis" {
            break;
        }
        let Some(addr) = entry[key].as_str().filter(|a| !a.is_empty()) else {
            continue;
        };
        if let Some(i) = args.iter().position(|a| a == flag)
            && let Some(value) = args.get_mut(i + 1)
        {
            *value = addr.to_owned();
        }
    }
    Ok(Command { program, args })
}

// ---- down -------------------------------------------------------------------------------

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
    let procs: Vec<Recorded> = processes(&record).into_iter().filter(Recorded::is_running).collect();
    let denied = stop(&procs);
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

/// Stops the processes: SIGTERM, then SIGKILL for those still running after [`STOP_TIMEOUT`].
/// Returns why each one that could not be stopped was not.
fn stop(procs: &[Recorded]) -> Vec<String> {
    // Those that cannot be signalled (another user's) are said so at once, not waited for.
    let mut denied = Vec::new();
    let mut signalled = Vec::new();
    for p in procs {
        match signal(p, Signal::TERM) {
            Ok(()) => signalled.push(p),
            Err(why) => denied.push(why.to_string()),
        }
    }
    if wait_gone(&signalled, STOP_TIMEOUT) {
        return denied;
    }
    for p in signalled.iter().filter(|p| p.is_running()) {
        sayln!(
            "{} (pid {}) did not stop within {} s: killing it",
            p.name,
            p.pid,
            STOP_TIMEOUT.as_secs()
        );
        if let Err(why) = signal(p, Signal::KILL) {
            denied.push(why.to_string());
        }
    }
    if !wait_gone(&signalled, STOP_TIMEOUT) {
        let left: Vec<String> = signalled
            .iter()
            .filter(|p| p.is_running())
            .map(|p| format!("{} (pid {})", p.name, p.pid))
            .collect();
        denied.push(format!("{} did not stop", left.join(", ")));
    }
    denied
}
