//! The single-worker runtime: the thread that drives the [`Engine`] with real instances, the
//! arena and the spill directory.
//!
//! One thread (the *loop*) owns the engine, the arena's bookkeeping, every instance's rings
//! and every call. It never blocks on anything but the arena's doorbell: instances ring it
//! after each completion, and other threads (API callers, the spawner, the watchers) ring it
//! after posting to the inbox. When there is nothing to do it spins over its rings for up to
//! 50 µs ([`DaemonConfig::spin`]) and then parks until the doorbell rings or the engine's next
//! timer is due, so an idle daemon uses no CPU.
//!
//! Calls: a [`Action::Trigger`] becomes a *call* queued in its *pool*; when an instance has a
//! free thread, its inputs are resolved to arena references (workflow inputs and foreach
//! elements are written into the arena; spilled objects are reloaded) and an extent is
//! reserved for each declared output, then it is sent. A pool is the instances of one pack
//! serving one sharing domain (a plan group's thread-isolated functions share instances; a
//! function with `isolation: process` or `container` has its own pool). A pool starts instances up to its maximum; beyond that calls wait in its queue, in
//! order, and are sent as soon as an instance has a free thread: backpressure, never deadlock.
//! When the arena is full for now, the call waits for running calls to free memory.
//!
//! Objects: a completion's outputs are *sealed* into objects (immutable from then on) and the
//! unused tail of their reservation is freed. When the workflow's resident bytes would exceed
//! its quota, the object is written to the spill directory and its arena extent freed; a
//! consumer then reads a reloaded copy. The engine's [`Action::Release`] frees an object
//! exactly once; every reservation, input copy and reload of a call is freed when the call
//! ends, whatever the outcome, so no arena byte outlives its invocation.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use faasflow_core::NodeId;
use faasflow_core::dag::{DataSource, FailureKind, Isolation, NodeKind, ValueKind, Workflow};
use faasflow_core::plan::{ClusterView, Mode, Plan};
use faasflow_ebpf::Probe;
pub use faasflow_ebpf::ProbeMode;
use faasflow_shm::frame::{self, Frame, Status, Value};
use faasflow_shm::{Consumer, Doorbell, Producer};

use crate::container::{self, ContainerSettings, ContainerSpec, DockerLink};
use crate::io::peer::PeerConfig;
use crate::io::tls::{ClusterTrust, NodeIdentity};
use crate::net::{Net, NetEvent};
use crate::pool::{self, Handle, Launch, PackCommand, SpawnRequest, Spawner};
use crate::store::arena::{self, Arena, Extent};
use crate::store::spill::SpillDir;
use faasflow_core::engine::{Action, Engine, EngineConfig, InputValue, InvocationId, ObjectRef};
use faasflow_core::report::{EdgeRecord, FunctionRecord, Report};
use faasflow_remote::{ObjectKey, RemoteStore};

mod cluster;
mod master;

/// Largest JSON value (a `json`/`list` output, or an input written into the arena) the daemon
/// parses or writes.
pub const MAX_JSON: u64 = 64 << 20;
/// Bytes reserved for a pack function's output of unknown size.
const DEFAULT_RESERVATION: u64 = 4096;
/// Largest object a report shows as a string; larger or binary ones show as `{"bytes": n}`.
const MAX_TEXT_OUTPUT: u64 = 64 << 10;

/// Settings of a [`Daemon`].
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Bytes of the shared arena (header included).
    pub arena_bytes: u64,
    /// The directory the daemon makes its own spill directory in (objects over quota go
    /// there), created when missing; `None`: the system's temporary directory. Only the
    /// daemon's own directory is removed when it stops.
    pub spill_dir: Option<PathBuf>,
    /// Packs by name.
    pub packs: HashMap<String, PackCommand>,
    /// The pack that runs functions without a pack (FaaSFlow's synthetic body).
    pub synthetic: PackCommand,
    /// Multiplies declared runtimes of synthetic bodies.
    pub runtime_scale: f64,
    /// Multiplies declared output sizes of synthetic bodies.
    pub data_scale: f64,
    /// Replaces every workflow's quota (bytes in the arena), instead of the plan's.
    pub quota_bytes: Option<u64>,
    /// Instances kept warm per pool.
    pub min_instances: usize,
    /// Most instances per pool.
    pub max_instances: usize,
    /// Calls one instance runs at once.
    pub threads: u32,
    /// An instance idle this long (beyond the pool's minimum) is stopped.
    pub idle_timeout: Duration,
    /// Time an instance has to start and complete its handshake.
    pub spawn_timeout: Duration,
    /// Ring capacity each way, bytes.
    pub ring_capacity: usize,
    /// How long the loop spins before parking.
    pub spin: Duration,
    /// Seed of the engine's retry jitter.
    pub seed: u64,
    /// This worker's name in its cluster (reports name it); `local` by default.
    pub name: String,
    /// The peer transport to other workers; without it every function of a plan must run
    /// here.
    pub peer: Option<PeerSettings>,
    /// The remote tier: a Redis URL (`redis://host:port`). Needed to execute functions for
    /// MasterSP; when it is missing or unreachable the daemon says so once and runs WorkerSP
    /// plans with peer transfers and the local spill directory.
    pub redis: Option<String>,
    /// How instances' memory is measured (each call's `peak_memory_bytes`): the eBPF probe,
    /// /proc, or the probe when it loads and /proc otherwise (the default, said once).
    pub memory_probe: ProbeMode,
    /// The Docker engine's socket, for functions that run in containers
    /// ([`ContainerSettings::default_socket`] by default). Its containers are labelled with
    /// the daemon's name and spill directory (when one is given): a daemon started again with
    /// both the same removes the containers an earlier run left.
    pub docker_socket: PathBuf,
    /// Invocations running here at once (those it entered and those other workers started);
    /// one more entering here is refused at once as overloaded, never queued.
    pub max_invocations: usize,
}

/// Invocations a daemon runs at once, by default ([`DaemonConfig::max_invocations`]).
pub const DEFAULT_MAX_INVOCATIONS: usize = 2048;

/// How a daemon reaches the other workers of its cluster.
#[derive(Debug, Clone)]
pub struct PeerSettings {
    /// This node's certificate (its name must be [`DaemonConfig::name`]).
    pub identity: NodeIdentity,
    /// The cluster's CA.
    pub trust: ClusterTrust,
    /// Where the QUIC endpoint listens (port 0: any free port).
    pub bind: SocketAddr,
    /// Transport settings.
    pub transport: PeerConfig,
}

/// A plan version installed on a daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledPlan {
    /// The workflow.
    pub workflow: String,
    /// The plan version.
    pub version: u64,
    /// Invocations running on it here.
    pub in_flight: u64,
    /// It is being dropped: removed when `in_flight` reaches 0.
    pub dropping: bool,
    /// What the plan was installed as (SHA-256 of its wire form; empty when it was installed
    /// from memory, not from the wire).
    pub digest: Vec<u8>,
}

/// Where an invocation's report goes.
pub type Reply = Box<dyn FnOnce(Result<Report, DaemonError>) + Send>;

/// An object in the remote tier (MasterSP: every object lives there).
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteObject {
    /// Where it is.
    pub key: ObjectKey,
    /// Its size in bytes.
    pub len: u64,
    /// Its parsed value when it is a `json` or `list` output (conditions and foreach lists
    /// read it).
    pub json: Option<Arc<serde_json::Value>>,
}

/// One input of a function [executed](Daemon::execute) for a central engine.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecInput {
    /// Every source was skipped.
    Absent,
    /// A JSON value: a workflow input, a foreach element or its index.
    Json(Arc<serde_json::Value>),
    /// An object in the remote tier.
    Object(RemoteObject),
    /// The outputs of a foreach body read after it, in element order.
    List(Vec<RemoteObject>),
}

/// One function attempt a central engine (MasterSP) asks a daemon to run: its inputs are
/// fetched from the remote tier into the arena, and its outputs stored there.
#[derive(Debug, Clone)]
pub struct Execute {
    /// The workflow.
    pub workflow: String,
    /// The plan version (installed on this daemon).
    pub version: u64,
    /// The invocation.
    pub invocation: InvocationId,
    /// The task (this daemon must run it in the plan).
    pub node: NodeId,
    /// The foreach element.
    pub element: Option<u32>,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The function's inputs, by name.
    pub inputs: Vec<(String, ExecInput)>,
}

/// What an [`Execute`] produced.
#[derive(Debug, Clone)]
pub struct Executed {
    /// Its outputs, stored in the remote tier under keys of its invocation (the caller
    /// deletes them with the invocation: [`faasflow_remote::RemoteStore::delete_invocation`]).
    pub outputs: Vec<(String, RemoteObject)>,
    /// The run, for the invocation's report.
    pub record: FunctionRecord,
    /// Its inputs, for the report (tier `remote`).
    pub edges: Vec<EdgeRecord>,
    /// Time spent fetching inputs and storing outputs, µs.
    pub data_us: f64,
}

/// Where an [`Execute`]'s result goes (called once, on the daemon's thread or its I/O
/// threads; it must not block). An error names the step and the cause.
pub type ExecReply = Box<dyn FnOnce(Result<Executed, (String, FailureKind)>) + Send>;

impl DaemonConfig {
    /// Defaults: 1 GiB arena, spill directory in the system's temporary directory.
    pub fn new(synthetic: PackCommand) -> Self {
        DaemonConfig {
            arena_bytes: 1 << 30,
            spill_dir: None,
            packs: HashMap::new(),
            synthetic,
            runtime_scale: 1.0,
            data_scale: 1.0,
            quota_bytes: None,
            min_instances: 1,
            max_instances: 4,
            threads: 32,
            idle_timeout: Duration::from_secs(60),
            spawn_timeout: Duration::from_secs(10),
            ring_capacity: 256 << 10,
            spin: faasflow_shm::ring::DEFAULT_SPIN,
            seed: 0,
            name: "local".into(),
            peer: None,
            redis: None,
            memory_probe: ProbeMode::Auto,
            docker_socket: ContainerSettings::default_socket(),
            max_invocations: DEFAULT_MAX_INVOCATIONS,
        }
    }
}

/// Errors of the daemon's API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The workflow cannot be installed.
    #[error("{0}")]
    Install(String),
    /// The invocation could not start (unknown workflow, missing inputs…).
    #[error("{0}")]
    Invoke(String),
    /// The daemon could not start.
    #[error("cannot start the daemon: {0}")]
    Start(String),
    /// The daemon has stopped.
    #[error("the daemon has stopped")]
    Stopped,
    /// The daemon runs as many invocations as it may: this one was refused, not queued.
    #[error("{0}")]
    Overloaded(String),
}

/// What the daemon holds, for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Arena bytes held by objects and reservations.
    pub arena_used: u64,
    /// Arena bytes for objects.
    pub arena_capacity: u64,
    /// Objects held (in the arena or spilled).
    pub objects: usize,
    /// Files in the spill directory held by objects.
    pub spilled_objects: usize,
    /// Invocations running.
    pub invocations: usize,
    /// Calls sent or queued.
    pub calls: usize,
    /// Live instances.
    pub instances: usize,
    /// Objects spilled since start.
    pub spills_total: u64,
    /// Instances started since start.
    pub instances_started: u64,
}

enum Msg {
    Install {
        wf: Arc<Workflow>,
        plan: Box<Plan>,
        placement: Placement,
        /// What each pack the workflow uses says it serves (asked on the caller's thread).
        listed: Listed,
        digest: Vec<u8>,
        reply: mpsc::Sender<Result<(), DaemonError>>,
    },
    Invoke {
        workflow: String,
        version: u64,
        invocation: Option<InvocationId>,
        input: serde_json::Value,
        deadline: Option<Duration>,
        reply: Reply,
    },
    Drop {
        workflow: String,
        version: u64,
        reply: mpsc::Sender<Result<u64, DaemonError>>,
    },
    Plans(mpsc::Sender<Vec<InstalledPlan>>),
    WorkerLost {
        name: String,
        reason: String,
        reply: mpsc::Sender<u64>,
    },
    Execute(Box<Execute>, ExecReply),
    Master(master::MasterEvent),
    Stats(mpsc::Sender<Stats>),
    Metrics(mpsc::Sender<String>),
    Pool(pool::Report),
    Net(NetEvent),
    Shutdown,
}

struct Shared {
    inbox: Mutex<VecDeque<Msg>>,
    pending: AtomicBool,
    doorbell: Doorbell,
}

impl Shared {
    fn post(&self, msg: Msg) {
        self.inbox.lock().unwrap_or_else(|e| e.into_inner()).push_back(msg);
        self.pending.store(true, Ordering::Release);
        self.doorbell.ring();
    }
}

/// Where a plan puts this daemon: the task nodes it runs, and the peers running the others.
#[derive(Debug, Clone, Default)]
struct Placement {
    /// Task nodes run here.
    local: HashSet<NodeId>,
    /// The plan's worker index of every task node.
    owner: HashMap<NodeId, u32>,
    /// The plan's worker index of this daemon.
    me: u32,
    /// Every worker of the plan that runs a task, by plan index: name and QUIC address.
    workers: Vec<(u32, String, Option<SocketAddr>)>,
}

/// A running daemon (one worker). Dropping it stops the loop and every instance.
pub struct Daemon {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The packs, to ask for their functions before an install.
    packs: HashMap<String, PackCommand>,
    synthetic: PackCommand,
    /// Docker, to ask images for their functions.
    docker: Arc<DockerLink>,
    /// The removal of an earlier run's containers.
    cleanup: Option<std::thread::JoinHandle<()>>,
    spawn_timeout: Duration,
    name: String,
    peer_addr: Option<SocketAddr>,
    spill_path: PathBuf,
}

/// The functions each pack command or image serves, or why it could not say.
type Listed = HashMap<Runner, Result<Vec<String>, String>>;

/// What runs a function: a pack's program, or an image in containers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Runner {
    Process(PackCommand),
    Container(String),
}

impl Runner {
    /// How `spec`'s function runs on a daemon with `packs`: `(runner, pack name, synthetic)`.
    /// A function runs in a container when it says `isolation: container` or names an
    /// `image`; its image is then the one named, else [`container::default_image`].
    fn of(
        spec: &faasflow_core::dag::FunctionSpec,
        packs: &HashMap<String, PackCommand>,
        synthetic: &PackCommand,
    ) -> Result<(Runner, String, bool), String> {
        let pack_name = spec.pack.clone().unwrap_or_else(|| "synthetic".to_owned());
        if spec.isolation == Isolation::Container || spec.image.is_some() {
            let image = spec
                .image
                .clone()
                .unwrap_or_else(|| container::default_image(spec.pack.as_deref()));
            return Ok((Runner::Container(image), pack_name, spec.pack.is_none()));
        }
        match &spec.pack {
            None => Ok((Runner::Process(synthetic.clone()), pack_name, true)),
            Some(p) => match packs.get(p) {
                Some(c) => Ok((Runner::Process(c.clone()), pack_name, false)),
                None => {
                    let known: Vec<&str> = packs.keys().map(String::as_str).collect();
                    Err(format!(
                        "uses pack `{p}`, which this daemon does not know (known: {}); pass `--pack {p}=PATH`, or \
                         put `faasflow-pack-{p}` next to `faasflow` or on PATH",
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    ))
                }
            },
        }
    }

    /// Asks the pack or image for its functions.
    fn list(&self, docker: &DockerLink, timeout: Duration) -> Result<Vec<String>, String> {
        match self {
            Runner::Process(c) => c.list_functions(timeout),
            Runner::Container(image) => docker.get()?.functions_of(image),
        }
    }
}

/// Sets the socket directories of daemons apart within one process.
static DAEMONS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon").finish_non_exhaustive()
    }
}

impl Daemon {
    /// Creates the arena and the spill directory and starts the loop.
    pub fn start(config: DaemonConfig) -> Result<Daemon, DaemonError> {
        let arena = Arena::create("faasflow-arena", config.arena_bytes)
            .map_err(|e| DaemonError::Start(format!("arena of {} bytes: {e}", config.arena_bytes)))?;
        let spill_parent = config.spill_dir.clone().unwrap_or_else(std::env::temp_dir);
        let spill = SpillDir::create(&spill_parent, &config.name).map_err(DaemonError::Start)?;
        let spill_path = spill.path().to_owned();
        // Containers are labelled with the directory given, so that a daemon started again with
        // the same name and directory removes those a crashed run left; without one, with its
        // own directory (no other run's containers are its).
        let owner_dir = config.spill_dir.as_deref().unwrap_or(&spill_path).display().to_string();
        let shared = Arc::new(Shared {
            inbox: Mutex::new(VecDeque::new()),
            pending: AtomicBool::new(false),
            doorbell: arena.doorbell().clone(),
        });
        let post_to = shared.clone();
        let post: Arc<dyn Fn(pool::Report) + Send + Sync> = Arc::new(move |r| post_to.post(Msg::Pool(r)));
        let docker = Arc::new(DockerLink::new(ContainerSettings {
            socket: config.docker_socket.clone(),
            owner: format!("{}:{owner_dir}", config.name),
            // Short: a socket's path has at most 107 bytes.
            dir: std::env::temp_dir().join(format!(
                "faasflow-sockets-{}-{}",
                std::process::id(),
                DAEMONS.fetch_add(1, Ordering::Relaxed)
            )),
        }));
        // Remove what an earlier run with this name and directory left, off the start path
        // (a daemon that stops joins it first). Quiet when Docker cannot be reached: a daemon
        // whose functions run as processes needs none, and an install that needs it says so.
        let cleanup = if config.docker_socket.exists() {
            let docker = docker.clone();
            std::thread::Builder::new()
                .name("faasflow-docker-connect".into())
                .spawn(move || {
                    let _ = docker.get();
                })
                .ok()
        } else {
            None
        };
        let spawner = Spawner::start(arena.bell().clone(), arena::DOORBELL_OFFSET, docker.clone(), post);
        let net = match &config.peer {
            None => None,
            Some(settings) if settings.identity.name() != config.name => {
                return Err(DaemonError::Start(format!(
                    "the certificate is for node `{}`, but this daemon is named `{}`",
                    settings.identity.name(),
                    config.name
                )));
            }
            Some(settings) => {
                let post_to = shared.clone();
                let post: Arc<dyn Fn(NetEvent) + Send + Sync> = Arc::new(move |e| post_to.post(Msg::Net(e)));
                Some(
                    Net::start(settings, post)
                        .map_err(|e| DaemonError::Start(format!("peer transport on {}: {e}", settings.bind)))?,
                )
            }
        };
        let peer_addr = net.as_ref().and_then(Net::local_addr);
        let (probe, why) = Probe::new(config.memory_probe).map_err(|e| DaemonError::Start(e.to_string()))?;
        if let Some(why) = why {
            eprintln!(
                "faasflow daemon `{}`: measuring memory through /proc ({why})",
                config.name
            );
        }
        let remote = config.redis.as_deref().and_then(master::connect);
        let loop_shared = shared.clone();
        let (packs, synthetic, spawn_timeout) = (config.packs.clone(), config.synthetic.clone(), config.spawn_timeout);
        let name = config.name.clone();
        let loop_docker = docker.clone();
        let thread = std::thread::Builder::new()
            .name("faasflow-daemon".into())
            .spawn(move || {
                let mut rt = Runtime::new(config, (arena, spill), spawner, loop_shared, net, probe, loop_docker);
                rt.remote = remote;
                rt.run()
            })
            .map_err(|e| DaemonError::Start(e.to_string()))?;
        Ok(Daemon {
            shared,
            thread: Some(thread),
            packs,
            synthetic,
            docker,
            cleanup,
            spawn_timeout,
            name,
            peer_addr,
            spill_path,
        })
    }

    /// The daemon's own spill directory (inside [`DaemonConfig::spill_dir`]; removed when the
    /// daemon stops).
    pub fn spill_dir(&self) -> &std::path::Path {
        &self.spill_path
    }

    /// This worker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the peer transport listens, when the daemon has one.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer_addr
    }

    /// Installs a workflow with its plan (version = the plan's version), starts the minimum
    /// instances of its pools and returns when they are up (an instance that cannot start is
    /// an error here, not at the first invocation).
    pub fn install(&self, wf: Arc<Workflow>, plan: Plan) -> Result<(), DaemonError> {
        let local: HashSet<NodeId> = wf
            .graph
            .node_indices()
            .filter(|n| wf.graph[*n].task().is_some())
            .collect();
        let placement = Placement {
            owner: local.iter().map(|n| (*n, 0)).collect(),
            local,
            me: 0,
            workers: vec![(0, self.name.clone(), self.peer_addr)],
        };
        self.install_placed(wf, plan, placement, Vec::new())
    }

    /// Installs this worker's part of a plan made for `cluster` (which must name this daemon):
    /// the daemon runs the tasks the plan puts on it and exchanges completions and objects
    /// with the other workers' daemons, found at `peers` (QUIC addresses by worker name; every
    /// worker that runs a task of the plan must be there). Versions install side by side
    /// (red-black): invocations keep the version they started on.
    pub fn install_plan(
        &self,
        wf: Arc<Workflow>,
        plan: Plan,
        cluster: &ClusterView,
        peers: &HashMap<String, SocketAddr>,
    ) -> Result<(), DaemonError> {
        self.install_plan_as(wf, plan, cluster, peers, Vec::new())
    }

    /// [`Daemon::install_plan`], recording the plan's `digest` (what it was sent as), which
    /// [`Daemon::plans`] reports so that a different plan under the same version is told apart.
    pub fn install_plan_as(
        &self,
        wf: Arc<Workflow>,
        plan: Plan,
        cluster: &ClusterView,
        peers: &HashMap<String, SocketAddr>,
        digest: Vec<u8>,
    ) -> Result<(), DaemonError> {
        let err = |m: String| DaemonError::Install(format!("workflow `{}` version {}: {m}", wf.name, plan.version));
        let me = cluster
            .workers
            .iter()
            .position(|w| w.name == self.name)
            .ok_or_else(|| err(format!("the plan has no worker named `{}` (this daemon)", self.name)))?
            as u32;
        let mut local = HashSet::new();
        let mut owner = HashMap::new();
        let mut used = std::collections::BTreeSet::new();
        for n in wf.graph.node_indices() {
            if wf.graph[n].task().is_none() {
                continue;
            }
            let w = plan.worker_of(n);
            owner.insert(n, w);
            used.insert(w);
            if w == me {
                local.insert(n);
            }
        }
        let mut workers = Vec::new();
        for w in used {
            let name = cluster
                .workers
                .get(w as usize)
                .map(|v| v.name.clone())
                .ok_or_else(|| err(format!("the plan refers to worker {w}, which it does not list")))?;
            let addr = if w == me {
                self.peer_addr
            } else {
                if self.peer_addr.is_none() {
                    return Err(err(format!(
                        "the plan runs functions on worker `{name}`, but this daemon has no peer transport \
                         (start it with a cluster certificate)"
                    )));
                }
                Some(*peers.get(&name).ok_or_else(|| {
                    err(format!(
                        "no QUIC address was given for worker `{name}`, which runs functions of the plan"
                    ))
                })?)
            };
            workers.push((w, name, addr));
        }
        self.install_placed(
            wf,
            plan,
            Placement {
                local,
                owner,
                me,
                workers,
            },
            digest,
        )
    }

    fn install_placed(
        &self,
        wf: Arc<Workflow>,
        plan: Plan,
        placement: Placement,
        digest: Vec<u8>,
    ) -> Result<(), DaemonError> {
        // Running the packs (`--list`) takes a while: here, not on the loop, which serves the
        // other invocations meanwhile.
        let mut listed = Listed::new();
        for n in &placement.local {
            let Some(task) = wf.graph[*n].task() else { continue };
            // An unknown pack is reported by the install itself.
            let Ok((runner, _, _)) = Runner::of(&task.spec, &self.packs, &self.synthetic) else {
                continue;
            };
            if let std::collections::hash_map::Entry::Vacant(e) = listed.entry(runner) {
                let fns = e.key().list(&self.docker, self.spawn_timeout);
                e.insert(fns);
            }
        }
        let (reply, rx) = mpsc::channel();
        self.shared.post(Msg::Install {
            wf,
            plan: Box::new(plan),
            placement,
            listed,
            digest,
            reply,
        });
        rx.recv().map_err(|_| DaemonError::Stopped)?
    }

    /// Runs one invocation and waits for its report (a failed invocation is a report with
    /// status `failed`; an invocation that cannot start is an error).
    pub fn invoke(&self, workflow: &str, version: u64, input: serde_json::Value) -> Result<Report, DaemonError> {
        self.invoke_async(workflow, version, input)
            .recv()
            .map_err(|_| DaemonError::Stopped)?
    }

    /// Starts one invocation; its report arrives on the returned channel.
    pub fn invoke_async(
        &self,
        workflow: &str,
        version: u64,
        input: serde_json::Value,
    ) -> mpsc::Receiver<Result<Report, DaemonError>> {
        let (tx, rx) = mpsc::channel();
        self.invoke_with(
            workflow,
            version,
            None,
            input,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx
    }

    /// Starts one invocation with this daemon as its entry (it tells the plan's other workers
    /// and reports the end); `reply` is called once with its report, on the daemon's thread
    /// (it must not block). `invocation` is the id to use, unique in the cluster (the
    /// planner's); `None` takes the daemon's next.
    pub fn invoke_with(
        &self,
        workflow: &str,
        version: u64,
        invocation: Option<InvocationId>,
        input: serde_json::Value,
        reply: Reply,
    ) {
        self.invoke_within(workflow, version, invocation, input, None, reply);
    }

    /// [`Daemon::invoke_with`] with a time limit: when `deadline` (or else the workflow's own
    /// `deadline`) has passed since the start, the invocation fails, naming the steps still
    /// open, and everything it runs is stopped (here and on the plan's other workers).
    pub fn invoke_within(
        &self,
        workflow: &str,
        version: u64,
        invocation: Option<InvocationId>,
        input: serde_json::Value,
        deadline: Option<Duration>,
        reply: Reply,
    ) {
        self.shared.post(Msg::Invoke {
            workflow: workflow.to_owned(),
            version,
            invocation,
            input,
            deadline,
            reply,
        });
    }

    /// Runs one function attempt for a central engine (MasterSP): fetches its inputs from the
    /// remote tier into the arena, runs it on an instance of its pool, stores its outputs in
    /// the remote tier and calls `reply`. The plan must be installed here and put `node` on
    /// this daemon; the daemon needs the remote tier ([`DaemonConfig::redis`]).
    pub fn execute(&self, request: Execute, reply: ExecReply) {
        self.shared.post(Msg::Execute(Box::new(request), reply));
    }

    /// Drops a plan version: new invocations of it are refused at once, and it is removed
    /// when its invocations in flight here have ended. Returns how many are in flight.
    pub fn drop_plan(&self, workflow: &str, version: u64) -> Result<u64, DaemonError> {
        let (reply, rx) = mpsc::channel();
        self.shared.post(Msg::Drop {
            workflow: workflow.to_owned(),
            version,
            reply,
        });
        rx.recv().map_err(|_| DaemonError::Stopped)?
    }

    /// Worker `name` is lost (the planner says so, `reason` why): every invocation here of a
    /// plan it is in fails at once, naming it, rather than when the peer connection times
    /// out. Returns how many.
    pub fn worker_lost(&self, name: &str, reason: &str) -> Result<u64, DaemonError> {
        let (reply, rx) = mpsc::channel();
        self.shared.post(Msg::WorkerLost {
            name: name.to_owned(),
            reason: reason.to_owned(),
            reply,
        });
        rx.recv().map_err(|_| DaemonError::Stopped)
    }

    /// The plan versions installed.
    pub fn plans(&self) -> Result<Vec<InstalledPlan>, DaemonError> {
        let (reply, rx) = mpsc::channel();
        self.shared.post(Msg::Plans(reply));
        rx.recv().map_err(|_| DaemonError::Stopped)
    }

    /// The daemon's metrics, as Prometheus text (`faasflow daemon --metrics-listen` serves
    /// them at `/metrics`).
    pub fn metrics_text(&self) -> Result<String, DaemonError> {
        let (reply, rx) = mpsc::channel();
        self.shared.post(Msg::Metrics(reply));
        rx.recv().map_err(|_| DaemonError::Stopped)
    }

    /// What the daemon holds now.
    pub fn stats(&self) -> Result<Stats, DaemonError> {
        let (reply, rx) = mpsc::channel();
        self.shared.post(Msg::Stats(reply));
        rx.recv().map_err(|_| DaemonError::Stopped)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(t) = self.cleanup.take() {
            let _ = t.join();
        }
        self.shared.post(Msg::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A workflow version: (name, version), shared (cloned on every call).
type WfKey = Arc<(String, u64)>;

/// Most bytes of a new workflow version's arena segment allocated at install.
const PREFAULT_BYTES: u64 = 32 << 20;

/// The timeout of an abandoned call whose workflow is no longer installed, ms.
const DEFAULT_ABANDONED_TIMEOUT_MS: u64 = 60_000;

/// An install waiting for its pools' first instances: (their ids, start-up errors, reply).
type Warming = (HashSet<u32>, Vec<String>, mpsc::Sender<Result<(), DaemonError>>);

/// Where a call site runs and what it needs.
struct Site {
    pool: usize,
    function: String,
    params: Vec<u8>,
    /// Declared outputs: name, bytes to reserve, kind.
    outputs: Vec<(String, u64, ValueKind)>,
    synthetic: bool,
}

struct Installed {
    wf: Arc<Workflow>,
    quota: u64,
    /// Its arena segment: its objects, mapped by its instances alone.
    segment: u32,
    sites: HashMap<u32, Site>,
    placement: Placement,
    /// Dropped: removed when its last invocation ends.
    dropping: bool,
    /// What the plan was installed as ([`InstalledPlan::digest`]).
    digest: Vec<u8>,
    /// Other workers (plan index) with a task reading each output: (node, output) → workers.
    readers: HashMap<(u32, String), Vec<u32>>,
    /// Other workers reading an output over an edge the plan marks remote (Redis).
    remote_readers: HashMap<(u32, String), Vec<u32>>,
    /// The workflow inputs each worker (by name) needs: those its tasks read, and those any
    /// condition or foreach reads (every worker evaluates those).
    input_needs: HashMap<String, HashSet<String>>,
    /// Inputs that may be staged ([`Workflow::stageable_inputs`]).
    stageable: Vec<String>,
    /// Inputs the tasks of this worker read.
    read_here: HashSet<String>,
    /// Per input, how many tasks of this worker read it alone through a binding (none in a
    /// foreach body): once they all ran, its staged object is released.
    staged_readers: HashMap<String, u32>,
    /// Outputs the workflow's result reads: (node, output).
    result_reads: HashSet<(u32, String)>,
    /// The pools of the tasks here that directly follow each task here (through control
    /// nodes), to pre-warm when it starts.
    successor_pools: HashMap<u32, Vec<usize>>,
    /// Planned [`Mode::WorkerSpRemote`]: every output goes to the remote tier as it is
    /// sealed, and its readers here read it there too.
    remote_only: bool,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    runner: Runner,
    domain: String,
    /// The arena segment its instances map (a version installed again gets new pools).
    segment: u32,
}

struct Pool {
    key: PoolKey,
    /// For containers: the largest memory (bytes) and CPU (thousandths) of the functions it
    /// serves, and whether any asks for a network.
    limits: (u64, u64, bool),
    pack_name: String,
    /// The arena segment of its workflow version (the only one its instances map).
    segment: u32,
    instances: Vec<u32>,
    spawning: usize,
    queue: VecDeque<u64>,
    /// Its workflow version was removed: its instances are stopped, it starts none, and its
    /// slot is reused once the last of them has exited.
    retired: bool,
}

struct Instance {
    pool: usize,
    pid: u32,
    handle: Handle,
    to_instance: Producer,
    to_daemon: Consumer,
    functions: HashMap<String, u32>,
    calls: HashSet<u64>,
    idle_since: Instant,
    /// Why the daemon killed it, if it did.
    killed: Option<String>,
    /// It broke the protocol: its ring is not read any more.
    broken: bool,
}

impl Object {
    /// An object that no instance of this worker produced (it arrives from another worker or
    /// the remote tier, or is a workflow input), not yet released, pushed or held.
    fn foreign(place: Place, len: u64, wf: WfKey, invocation: InvocationId, producer: String) -> Object {
        Object::new(place, len, wf, invocation, producer, u32::MAX)
    }

    /// An object of `invocation` produced by `instance` of this worker (`u32::MAX`: by
    /// none), not yet released, pushed or held.
    fn new(place: Place, len: u64, wf: WfKey, invocation: InvocationId, producer: String, instance: u32) -> Object {
        Object {
            place,
            len,
            wf,
            invocation,
            producer,
            instance,
            element: None,
            released: false,
            pushes: 0,
            held: false,
            remote_copy: None,
            transfer_us: None,
            born: Instant::now(),
        }
    }

    /// Something other than a call still needs its bytes where they are (or they are not
    /// there yet).
    fn busy(&self) -> bool {
        self.pushes > 0 || self.held || matches!(self.place, Place::Pending)
    }
}

enum Place {
    Arena(Extent),
    Spilled(PathBuf),
    Empty,
    /// Produced on another worker; its bytes are on their way.
    Pending,
    /// In the remote tier: spilled there by this daemon (`spilled`), stored there by it for
    /// a workflow planned with every edge remote ([`Mode::WorkerSpRemote`]), or stored there
    /// by another worker for an edge the plan marks remote. `owned`: deleted when freed.
    Remote {
        key: ObjectKey,
        owned: bool,
        spilled: bool,
    },
}

struct Object {
    place: Place,
    len: u64,
    wf: WfKey,
    invocation: InvocationId,
    producer: String,
    instance: u32,
    /// The foreach element of the call that produced it (here), if any.
    element: Option<u32>,
    /// The engine released it while a sent call still read it (or while it was being pushed,
    /// or was still arriving): freed when that ends.
    released: bool,
    /// Pushes to other workers in progress.
    pushes: u32,
    /// A result of an invocation whose end waits for other result objects still arriving.
    held: bool,
    /// A copy in the remote tier for edges the plan marks remote (deleted with the object).
    remote_copy: Option<ObjectKey>,
    /// Received from another worker (`peer`) or fetched from the remote tier (`remote`):
    /// how, and the transfer's time, µs.
    transfer_us: Option<(&'static str, f64)>,
    /// When it was created (objects of invocations that never start here are swept).
    born: Instant,
}

struct Call {
    invocation: InvocationId,
    node: NodeId,
    element: Option<u32>,
    pool: usize,
    wf: WfKey,
    /// What to send (its `function` index is set when an instance is chosen).
    invoke: frame::Invoke,
    function: String,
    /// Output kinds by name, to parse `json`/`list` outputs.
    kinds: Vec<(String, ValueKind)>,
    /// Reserved and granted extents by output name (several for one name only after Alloc).
    extents: Vec<(String, Extent)>,
    /// Input copies and reloads, freed at the end of the call.
    temps: Vec<Extent>,
    /// Objects read (id), for the edge records.
    reads: Vec<u64>,
    /// Objects reloaded for it: id → (tier of the edge, µs).
    reload_us: HashMap<u64, (&'static str, f64)>,
    instance: Option<u32>,
    record: usize,
    abandoned: bool,
    /// Abandoned while it runs (its invocation ended): when its instance is stopped if it
    /// has not returned by then (the function's timeout from the abandon), so that a hung
    /// function of an ended invocation never holds its instance for good.
    stop_by: Option<Instant>,
    /// The engine's inputs, resolved to arena references when the call is sent.
    pending: Vec<(String, InputValue)>,
    /// Declared outputs: name, bytes to reserve, kind.
    outputs: Vec<(String, u64, ValueKind)>,
    synthetic: bool,
    step: String,
    /// Its edge records (indices in the invocation's `edges`).
    edge_range: std::ops::Range<usize>,
    /// Run for a central engine: where its result goes (not to this daemon's engine).
    master: Option<ExecReply>,
    /// Input objects fetched for it alone (freed when it ends).
    owned: Vec<u64>,
    /// When the engine triggered it.
    triggered: Instant,
    /// Its memory is measured ([`MEASURED_CALLS`]).
    measured: bool,
}

/// `len` bytes do not fit now: a wait if they could ever fit in `capacity`, else an error.
fn no_room(len: u64, capacity: u64, message: String) -> Unprepared {
    if len > capacity {
        Unprepared::Fatal(message)
    } else {
        Unprepared::Full(message)
    }
}

/// Why a call could not be prepared.
enum Unprepared {
    /// The arena is full for now.
    Full(String),
    /// It never will be ready.
    Fatal(String),
}

struct InvState {
    wf: WfKey,
    start: Instant,
    /// Where the report goes (the entry daemon only).
    reply: Option<Reply>,
    /// The plan index of the entry daemon.
    entry: u32,
    /// It failed because another worker said so (or was lost): not told again.
    quiet: bool,
    /// The worker whose loss ended it (seen here, or told by the worker that saw it).
    lost: Option<String>,
    /// Its end waits for result objects still arriving from other workers.
    deferred: Option<Result<Vec<(String, InputValue)>, String>>,
    /// Since when its end waits for them, and how long it waited.
    deferred_at: Option<Instant>,
    result_wait_us: f64,
    /// Workflow inputs sent on streams of their own, landed as objects: input name → object.
    staged: HashMap<String, u64>,
    /// Staged objects released once this many more of their reading tasks have run.
    staged_left: HashMap<u64, u32>,
    /// Data time and spills already reported to the entry daemon.
    reported: (f64, u64),
    /// It runs on a central engine: this daemon only executes some of its functions.
    master: bool,
    functions: Vec<FunctionRecord>,
    edges: Vec<EdgeRecord>,
    data_us: f64,
    spills: u64,
    /// Running calls by (node, element).
    running: HashMap<(u32, Option<u32>), u64>,
    /// Objects produced by this invocation and still held.
    objects: HashSet<u64>,
}

/// Which calls of a function get their memory measured: the first `.0` in the daemon's life,
/// then one in `.1` (a measurement costs a few system calls on the daemon's loop; the quota
/// needs a function's peak, not every call's).
const MEASURED_CALLS: (u64, u64) = (8, 32);

/// What `/metrics` counts (the gauges are read from the runtime's state when asked).
struct Metrics {
    /// From the engine's trigger to the call's dispatch to an instance, seconds.
    trigger_seconds: faasflow_core::metrics::Histogram,
    /// End to end of the invocations this daemon was the entry of, seconds.
    invocation_seconds: faasflow_core::metrics::Histogram,
    /// Invocations ended here as their entry, by outcome.
    invocations: std::collections::BTreeMap<&'static str, u64>,
    /// Calls dispatched to instances.
    calls: u64,
    /// Bytes of objects read by calls, by tier.
    bytes: std::collections::BTreeMap<&'static str, u64>,
}

impl Default for Metrics {
    fn default() -> Self {
        use faasflow_core::metrics::{Histogram, LATENCY_BUCKETS};
        Metrics {
            trigger_seconds: Histogram::new(LATENCY_BUCKETS),
            invocation_seconds: Histogram::new(LATENCY_BUCKETS),
            invocations: std::collections::BTreeMap::new(),
            calls: 0,
            bytes: std::collections::BTreeMap::new(),
        }
    }
}

struct Runtime {
    /// Measures instances' memory (registered when they start).
    probe: Probe,
    /// The probe failed once (said once in the log; records stay `null`).
    probe_failed: bool,
    /// Calls started per function, to choose which to measure (see [`MEASURED_CALLS`]).
    calls_of: HashMap<Arc<str>, u64>,
    /// Counters and histograms for `/metrics`.
    metrics: Metrics,
    /// Docker, for container instances (connected on first use).
    docker: Arc<DockerLink>,
    config: DaemonConfig,
    engine: Engine,
    arena: Arena,
    /// The daemon's own spill directory (removed when it stops).
    spill_dir: SpillDir,
    /// The daemon's own arena segment, mapped by no instance: objects that arrive before their
    /// invocation is known here land in it (and are copied for their readers).
    private_segment: u32,
    spawner: Spawner,
    shared: Arc<Shared>,
    origin: Instant,
    installed: HashMap<WfKey, Installed>,
    pools: Vec<Pool>,
    pool_index: HashMap<PoolKey, usize>,
    instances: HashMap<u32, Instance>,
    next_instance: u32,
    calls: HashMap<u64, Call>,
    next_call: u64,
    invocations: HashMap<InvocationId, InvState>,
    next_invocation: InvocationId,
    objects: HashMap<u64, Object>,
    next_object: u64,
    resident: HashMap<WfKey, u64>,
    spills_total: u64,
    /// Objects whose spill file could not be written (they stayed in the arena), since start.
    spill_failures_total: u64,
    /// Why spill files could not be written, each said once in the log.
    spill_failures_said: HashSet<String>,
    instances_started: u64,
    /// Where frames are popped into (the ring's largest frame).
    frame_buf: Vec<u8>,
    /// Where frames are encoded.
    encode_buf: Vec<u8>,
    /// Instances being started, by id → pool.
    starting: HashMap<u32, usize>,
    /// Exits seen for instances still `starting`, by id → how they ended.
    exited_early: HashMap<u32, String>,
    /// Ids of live instances (iterated on every loop turn).
    live: Vec<u32>,
    /// A call waits for arena room: dispatch again when something ends.
    waiting_for_room: bool,
    /// Installs answered when these instances are up: (ids, start-up errors, reply).
    warming: Vec<Warming>,
    stop: bool,
    /// The peer transport (cluster daemons only).
    net: Option<Net>,
    /// Local ids of objects of other workers: (worker name, invocation, their id) → ours.
    remote_ids: HashMap<(String, InvocationId, u64), u64>,
    /// Where each peer that sent a control message dials from (its endpoint): a start for a
    /// version not held here is answered there.
    peer_addrs: HashMap<String, SocketAddr>,
    /// Messages about invocations not started here yet: invocation → (first seen, messages).
    early: HashMap<InvocationId, (Instant, Vec<(String, crate::io::message::ControlMessage)>)>,
    /// Invocations that ended here lately (late messages and objects about them are dropped).
    ended: cluster::Ended,
    /// Calls waiting for input objects still arriving from other workers.
    awaiting: Vec<u64>,
    /// Invocations ended since the last [`Runtime::clear_ended`].
    just_ended: Vec<InvocationId>,
    /// Pushes to and arrivals from other workers in progress (they hold arena bytes).
    transfers: usize,
    /// The remote tier, and the threads its I/O runs on.
    remote: Option<(Arc<RemoteStore>, tokio::runtime::Runtime)>,
    /// Outputs of central-engine calls being stored: token → (reply, result, their objects).
    storing: HashMap<u64, (ExecReply, Executed, Vec<u64>)>,
    /// It said once that edges planned remote go peer to peer (no remote tier).
    said_no_remote: bool,
    /// Pushes of staged inputs from memory (no local object): object → (invocation, pushes
    /// not through yet).
    staged_sends: HashMap<u64, (InvocationId, u32)>,
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

impl Runtime {
    fn new(
        config: DaemonConfig,
        // Where objects live: the arena, and the spill directory beside it.
        (arena, spill_dir): (Arena, SpillDir),
        spawner: Spawner,
        shared: Arc<Shared>,
        net: Option<Net>,
        probe: Probe,
        docker: Arc<DockerLink>,
    ) -> Self {
        let engine = Engine::new(EngineConfig { seed: config.seed });
        let frame_buf = vec![0u8; config.ring_capacity];
        let mut arena = arena;
        // Without it, early arrivals go to spill files.
        let private_segment = arena.add_segment("daemon").unwrap_or(u32::MAX);
        Runtime {
            probe,
            probe_failed: false,
            calls_of: HashMap::new(),
            metrics: Metrics::default(),
            docker,
            config,
            engine,
            arena,
            spill_dir,
            private_segment,
            spawner,
            shared,
            origin: Instant::now(),
            installed: HashMap::new(),
            pools: Vec::new(),
            pool_index: HashMap::new(),
            instances: HashMap::new(),
            next_instance: 1,
            calls: HashMap::new(),
            next_call: 1,
            invocations: HashMap::new(),
            next_invocation: 1,
            objects: HashMap::new(),
            next_object: 1,
            resident: HashMap::new(),
            spills_total: 0,
            spill_failures_total: 0,
            spill_failures_said: HashSet::new(),
            instances_started: 0,
            frame_buf,
            encode_buf: Vec::new(),
            starting: HashMap::new(),
            exited_early: HashMap::new(),
            live: Vec::new(),
            waiting_for_room: false,
            warming: Vec::new(),
            stop: false,
            net,
            remote_ids: HashMap::new(),
            peer_addrs: HashMap::new(),
            early: HashMap::new(),
            ended: cluster::Ended::default(),
            awaiting: Vec::new(),
            just_ended: Vec::new(),
            transfers: 0,
            remote: None,
            storing: HashMap::new(),
            said_no_remote: false,
            staged_sends: HashMap::new(),
        }
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn run(mut self) {
        let mut last_idle_check = Instant::now();
        while !self.stop {
            let mut progressed = self.drain_inbox();
            progressed |= self.drain_rings();
            let now = self.now();
            if self.engine.poll_timeout().is_some_and(|t| t <= now) {
                self.engine.tick(now);
            }
            progressed |= self.apply_actions();
            if progressed && self.waiting_for_room {
                self.waiting_for_room = false;
                for p in 0..self.pools.len() {
                    if !self.pools[p].queue.is_empty() {
                        self.dispatch(p);
                    }
                }
                self.apply_actions();
            }
            if last_idle_check.elapsed() >= Duration::from_secs(1) {
                self.stop_idle_instances();
                self.stop_overdue_abandoned_calls();
                self.sweep_strays();
                last_idle_check = Instant::now();
            }
            if progressed || self.stop {
                continue;
            }
            let timeout = self
                .engine
                .poll_timeout()
                .map(|t| t.saturating_sub(self.now()))
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1));
            let shared = self.shared.clone();
            let instances = &mut self.instances;
            self.shared.doorbell.wait(self.config.spin, Some(timeout), || {
                shared.pending.load(Ordering::Acquire)
                    || instances.values_mut().any(|i| !i.broken && i.to_daemon.is_ready())
            });
        }
        self.shutdown();
    }

    fn shutdown(&mut self) {
        for inst in self.instances.values_mut() {
            inst.killed = Some("the daemon stopped".into());
            inst.handle.kill();
        }
        // Containers are not children: remove them (and any still starting) now, rather than
        // leave them to the watchers, which may not get to it before the process ends.
        if let Some(d) = self.docker.connected() {
            if let Err(e) = d.remove_orphans() {
                eprintln!("faasflow daemon `{}`: {e}", self.config.name);
            }
            let _ = std::fs::remove_dir_all(&d.settings().dir);
        }
        for (_, inv) in self.invocations.drain() {
            if let Some(reply) = inv.reply {
                reply(Err(DaemonError::Stopped));
            }
        }
        self.net = None;
        if let Err(e) = self.spill_dir.remove() {
            eprintln!(
                "faasflow daemon `{}`: cannot remove its spill directory {}: {e}",
                self.config.name,
                self.spill_dir.path().display()
            );
        }
    }

    fn drain_inbox(&mut self) -> bool {
        if !self.shared.pending.swap(false, Ordering::Acquire) {
            return false;
        }
        let msgs: Vec<Msg> = self
            .shared
            .inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for msg in msgs {
            match msg {
                Msg::Install {
                    wf,
                    plan,
                    placement,
                    listed,
                    digest,
                    reply,
                } => match self.install(wf, *plan, placement, &listed, digest) {
                    // Answered when the pools' first instances are warm.
                    Ok(warming) if !warming.is_empty() => self.warming.push((warming, Vec::new(), reply)),
                    result => {
                        let _ = reply.send(result.map(|_| ()));
                    }
                },
                Msg::Invoke {
                    workflow,
                    version,
                    invocation,
                    input,
                    deadline,
                    reply,
                } => self.start_invocation(workflow, version, invocation, input, deadline, reply),
                Msg::Drop {
                    workflow,
                    version,
                    reply,
                } => {
                    let _ = reply.send(self.drop_plan(workflow, version));
                }
                Msg::Plans(reply) => {
                    let _ = reply.send(self.plans());
                }
                Msg::WorkerLost { name, reason, reply } => {
                    // Its old connections say nothing of it any more (it may be a new process).
                    if let Some(net) = &self.net {
                        net.forget(&name);
                    }
                    let _ = reply.send(self.worker_lost(&name, &reason));
                }
                Msg::Stats(reply) => {
                    let _ = reply.send(self.stats());
                }
                Msg::Metrics(reply) => {
                    let _ = reply.send(self.metrics_text());
                }
                Msg::Pool(pool::Report::Ready { instance, result }) => self.instance_ready(instance, result),
                Msg::Pool(pool::Report::Exited { instance, status }) => self.instance_exited(instance, status),
                Msg::Net(event) => self.net_event(event),
                Msg::Execute(request, reply) => self.execute(*request, reply),
                Msg::Master(event) => self.master_event(event),
                Msg::Shutdown => self.stop = true,
            }
        }
        true
    }

    fn in_flight(&self, key: &WfKey) -> u64 {
        self.invocations.values().filter(|i| &i.wf == key).count() as u64
    }

    fn plans(&self) -> Vec<InstalledPlan> {
        let mut v: Vec<InstalledPlan> = self
            .installed
            .iter()
            .map(|(k, i)| InstalledPlan {
                workflow: k.0.clone(),
                version: k.1,
                in_flight: self.in_flight(k),
                dropping: i.dropping,
                digest: i.digest.clone(),
            })
            .collect();
        v.sort_by(|a, b| (&a.workflow, a.version).cmp(&(&b.workflow, b.version)));
        v
    }

    fn drop_plan(&mut self, workflow: String, version: u64) -> Result<u64, DaemonError> {
        let key = Arc::new((workflow, version));
        let Some(installed) = self.installed.get_mut(&key) else {
            return Err(DaemonError::Invoke(format!(
                "workflow `{}` version {} is not installed on this worker",
                key.0, key.1
            )));
        };
        installed.dropping = true;
        self.engine.uninstall(&key.0, key.1);
        let n = self.in_flight(&key);
        if n == 0 {
            self.uninstall(&key);
        }
        Ok(n)
    }

    fn metrics_text(&self) -> String {
        let mut e = faasflow_core::metrics::Exposition::new();
        let m = &self.metrics;
        e.histogram(
            "faasflow_trigger_latency_seconds",
            "From a function's trigger to its call's dispatch to an instance",
            &[],
            &m.trigger_seconds,
        );
        e.histogram(
            "faasflow_invocation_seconds",
            "End to end of the invocations this daemon was the entry of",
            &[],
            &m.invocation_seconds,
        );
        for outcome in ["ok", "failed", "overloaded"] {
            e.counter(
                "faasflow_invocations_total",
                "Invocations ended here as their entry, by outcome",
                &[("outcome", outcome)],
                m.invocations.get(outcome).copied().unwrap_or(0) as f64,
            );
        }
        e.counter(
            "faasflow_calls_total",
            "Calls dispatched to instances",
            &[],
            m.calls as f64,
        );
        for tier in ["in-process", "shared-memory", "peer", "remote", "spill"] {
            e.counter(
                "faasflow_bytes_read_total",
                "Bytes of objects read by calls, by the tier they came through",
                &[("tier", tier)],
                m.bytes.get(tier).copied().unwrap_or(0) as f64,
            );
        }
        e.counter(
            "faasflow_spills_total",
            "Objects written to the spill directory",
            &[],
            self.spills_total as f64,
        );
        e.counter(
            "faasflow_spill_failures_total",
            "Objects whose spill file could not be written (they stayed in memory, over quota)",
            &[],
            self.spill_failures_total as f64,
        );
        e.counter(
            "faasflow_instances_started_total",
            "Instances started",
            &[],
            self.instances_started as f64,
        );
        e.gauge(
            "faasflow_arena_used_bytes",
            "Arena bytes held by objects and reservations",
            &[],
            self.arena.used() as f64,
        );
        e.gauge(
            "faasflow_arena_capacity_bytes",
            "Arena bytes for objects",
            &[],
            self.arena.capacity() as f64,
        );
        e.gauge(
            "faasflow_arena_segments",
            "Arena segments (one per installed workflow version, and the daemon's own)",
            &[],
            self.arena.segments() as f64,
        );
        e.gauge(
            "faasflow_arena_resident_bytes",
            "Upper bound of the arena pages the segments hold (kept within the capacity)",
            &[],
            self.arena.resident() as f64,
        );
        e.counter(
            "faasflow_arena_trims_total",
            "Times a segment's free pages were given back to keep the segments within the capacity",
            &[],
            self.arena.trims() as f64,
        );
        e.gauge(
            "faasflow_invocations_running",
            "Invocations running here",
            &[],
            self.invocations.len() as f64,
        );
        let mut versions: BTreeMap<&str, u64> = BTreeMap::new();
        for k in self.installed.keys() {
            *versions.entry(k.0.as_str()).or_default() += 1;
        }
        for (workflow, n) in versions {
            e.gauge(
                "faasflow_installed_versions",
                "Workflow versions installed here (dropped ones included until their invocations end)",
                &[("workflow", workflow)],
                n as f64,
            );
        }
        e.gauge(
            "faasflow_instances",
            "Instances running here (every pool)",
            &[],
            self.instances.len() as f64,
        );
        for p in self.pools.iter().filter(|p| !p.retired) {
            let runtime = match p.key.runner {
                Runner::Process(_) => "process",
                Runner::Container(_) => "container",
            };
            let labels = [
                ("pack", p.pack_name.as_str()),
                ("domain", p.key.domain.as_str()),
                ("runtime", runtime),
            ];
            e.gauge(
                "faasflow_pool_instances",
                "Live instances per pool",
                &labels,
                p.instances.len() as f64,
            );
            e.gauge(
                "faasflow_pool_queued_calls",
                "Calls waiting for an instance per pool",
                &labels,
                p.queue.len() as f64,
            );
        }
        for (key, i) in &self.installed {
            let version = key.1.to_string();
            let labels = [("workflow", key.0.as_str()), ("version", version.as_str())];
            e.gauge(
                "faasflow_quota_bytes",
                "The workflow's in-memory quota on this worker",
                &labels,
                i.quota as f64,
            );
            e.gauge(
                "faasflow_quota_used_bytes",
                "Arena bytes the workflow's objects hold on this worker",
                &labels,
                self.resident.get(key).copied().unwrap_or(0) as f64,
            );
        }
        e.finish()
    }

    fn stats(&self) -> Stats {
        Stats {
            arena_used: self.arena.used(),
            arena_capacity: self.arena.capacity(),
            objects: self.objects.len(),
            spilled_objects: self
                .objects
                .values()
                .filter(|o| matches!(o.place, Place::Spilled(_) | Place::Remote { .. }))
                .count(),
            invocations: self.invocations.len(),
            calls: self.calls.len(),
            instances: self.instances.len(),
            spills_total: self.spills_total,
            instances_started: self.instances_started,
        }
    }

    // ---- install -------------------------------------------------------------------------

    /// Installs a workflow and starts its new pools' minimum instances; returns their ids.
    fn install(
        &mut self,
        wf: Arc<Workflow>,
        plan: Plan,
        placement: Placement,
        listed: &Listed,
        digest: Vec<u8>,
    ) -> Result<HashSet<u32>, DaemonError> {
        let key = (wf.name.clone(), plan.version);
        if let Some(held) = self.installed.get(&key) {
            // Two installs of one version raced (the planner's watch and an invocation's
            // repair): the same plan is installed already; another one is never taken.
            return if held.digest == digest && !held.dropping {
                Ok(HashSet::new())
            } else {
                Err(DaemonError::Install(format!(
                    "workflow `{}`: version {} is already installed here with another plan or being dropped; \
                     deploy it as a new version",
                    wf.name, plan.version
                )))
            };
        }
        let label = format!("{}@{}", wf.name, plan.version);
        let segment = self.arena.add_segment(&label).map_err(|e| {
            DaemonError::Install(format!("workflow `{}`: cannot create its arena segment: {e}", wf.name))
        })?;
        let result = self.install_in(segment, wf, plan, placement, listed, digest);
        if result.is_err() {
            self.arena.drop_segment(segment);
        }
        result
    }

    /// [`Runtime::install`] with the workflow version's new arena `segment`.
    fn install_in(
        &mut self,
        segment: u32,
        wf: Arc<Workflow>,
        plan: Plan,
        placement: Placement,
        listed: &Listed,
        digest: Vec<u8>,
    ) -> Result<HashSet<u32>, DaemonError> {
        let err = |m: String| DaemonError::Install(format!("workflow `{}`: {m}", wf.name));
        let version = plan.version;
        let key = Arc::new((wf.name.clone(), version));
        let mut sites = HashMap::new();
        let mut new_pools = Vec::new();
        let mut list_widths: HashMap<(usize, &str), u32> = HashMap::new();
        for n in wf.graph.node_indices() {
            if let NodeKind::Foreach(f) = &wf.graph[n].kind
                && let DataSource::Output { node, output } = &f.over
            {
                list_widths.insert((node.index(), output.as_str()), f.width.max(1));
            }
        }
        for n in wf.graph.node_indices() {
            let Some(task) = wf.graph[n].task() else { continue };
            if !placement.local.contains(&n) {
                continue;
            }
            let name = &wf.graph[n].name;
            let (runner, pack_name, synthetic) = Runner::of(&task.spec, &self.config.packs, &self.config.synthetic)
                .map_err(|e| err(format!("step `{name}` {e}")))?;
            let function = if synthetic {
                "synthetic".to_owned()
            } else {
                task.function.clone()
            };
            let what = match &runner {
                Runner::Process(_) => format!("pack `{pack_name}`"),
                Runner::Container(image) => format!("image `{image}`"),
            };
            let fns = match listed.get(&runner) {
                Some(Ok(fns)) => fns,
                Some(Err(e)) => return Err(err(format!("step `{name}`: {what}: {e}"))),
                None => return Err(err(format!("{what} was not asked for its functions"))),
            };
            if !fns.contains(&function) {
                return Err(err(format!(
                    "step `{name}` calls function `{function}`, which {what} does not have (it has: {})",
                    fns.join(", ")
                )));
            }
            let group = plan.node_group.get(n.index()).copied().unwrap_or(0);
            let domain = match task.spec.isolation {
                Isolation::Thread => format!("{}@{version}/group-{group}", wf.name),
                Isolation::Process | Isolation::Container => format!("{}@{version}/{name}", wf.name),
            };
            let pkey = PoolKey {
                runner,
                domain,
                segment,
            };
            let limits = (
                task.spec.memory_mib << 20,
                u64::from(task.spec.cpu_millis),
                task.spec.network,
            );
            let pool = match self.pool_index.get(&pkey) {
                Some(&p) => {
                    let l = &mut self.pools[p].limits;
                    *l = (l.0.max(limits.0), l.1.max(limits.1), l.2 || limits.2);
                    p
                }
                None => {
                    let pool = Pool {
                        key: pkey.clone(),
                        limits,
                        pack_name: pack_name.clone(),
                        segment,
                        instances: Vec::new(),
                        spawning: 0,
                        queue: VecDeque::new(),
                        retired: false,
                    };
                    // A retired pool's slot whose instances have all gone, else a new one.
                    let free = self
                        .pools
                        .iter()
                        .position(|p| p.retired && p.instances.is_empty() && p.spawning == 0);
                    let p = match free {
                        Some(p) => {
                            self.pools[p] = pool;
                            p
                        }
                        None => {
                            self.pools.push(pool);
                            self.pools.len() - 1
                        }
                    };
                    self.pool_index.insert(pkey, p);
                    new_pools.push(p);
                    p
                }
            };
            let scale = if synthetic { self.config.data_scale } else { 1.0 };
            let outputs = task
                .spec
                .outputs
                .iter()
                .map(|o| (o.name.clone(), (o.size as f64 * scale).round() as u64, o.kind))
                .collect();
            let params = if synthetic {
                let runtime_us = (task.spec.runtime_ms * 1000.0 * self.config.runtime_scale)
                    .max(0.0)
                    .round() as u64;
                // Outputs a switch or a foreach reads must be JSON: `true` (the first case is
                // taken), and lists of the width the planner expects.
                let mut values = serde_json::Map::new();
                for o in &task.spec.outputs {
                    match o.kind {
                        ValueKind::Json => {
                            values.insert(o.name.clone(), serde_json::Value::Bool(true));
                        }
                        ValueKind::List => {
                            let width = list_widths.get(&(n.index(), o.name.as_str())).copied().unwrap_or(3);
                            values.insert(o.name.clone(), (0..width).collect());
                        }
                        ValueKind::Bytes => {}
                    }
                }
                if runtime_us == 0 && values.is_empty() {
                    // The body's default; it skips parsing.
                    Vec::new()
                } else {
                    serde_json::to_vec(&serde_json::json!({ "runtime_us": runtime_us, "values": values }))
                        .unwrap_or_default()
                }
            } else {
                Vec::new()
            };
            sites.insert(
                n.index() as u32,
                Site {
                    pool,
                    function,
                    params,
                    outputs,
                    synthetic,
                },
            );
        }
        if placement.workers.iter().any(|(w, _, _)| *w != placement.me) && self.net.is_none() {
            return Err(err(
                "the plan runs functions on other workers, but this daemon has no peer transport".into(),
            ));
        }
        if self.installed.contains_key(&key) {
            return Err(err(format!("version {version} is already installed")));
        }
        let remote_only = plan.mode == Mode::WorkerSpRemote;
        if remote_only && self.remote.is_none() {
            return Err(err(format!(
                "version {version} is planned `{}` (every edge through remote storage), but worker `{}` has \
                 no remote tier: start its daemon with --redis URL (`faasflow up` gives every daemon the \
                 cluster's Redis), or deploy in another mode",
                plan.mode.as_str(),
                self.config.name
            )));
        }
        self.engine
            .install(wf.clone(), version, placement.local.clone())
            .map_err(|e| DaemonError::Install(e.to_string()))?;
        // The quotas the plan gives the workers whose tasks run here (all of them when the
        // whole plan runs on this daemon).
        let quota = self.config.quota_bytes.unwrap_or_else(|| {
            let here: std::collections::BTreeSet<u32> = placement.local.iter().map(|n| plan.worker_of(*n)).collect();
            here.iter()
                .filter_map(|w| plan.workers.get(*w as usize))
                .map(|w| w.quota_bytes)
                .sum()
        });
        let (readers, remote_readers, result_reads) = cluster::readers(&wf, &plan, &placement);
        let input_needs = cluster::input_needs(&wf, &placement);
        let stageable = wf.stageable_inputs();
        let read_here: HashSet<String> = placement
            .local
            .iter()
            .filter_map(|n| wf.graph[*n].task())
            .flat_map(|t| t.inputs.iter().flat_map(|b| b.sources.iter()))
            .filter_map(|src| match src {
                faasflow_core::dag::DataSource::Input(i) => Some(i.clone()),
                _ => None,
            })
            .collect();
        let mut staged_readers: HashMap<String, u32> = HashMap::new();
        let mut in_bodies: HashSet<String> = HashSet::new();
        for n in &placement.local {
            let Some(task) = wf.graph[*n].task() else { continue };
            let mut read: HashSet<&str> = HashSet::new();
            for b in &task.inputs {
                if let Some(i) = task.reads_input_alone(&b.name) {
                    read.insert(i);
                }
            }
            for i in read {
                if wf.graph[*n].scope.is_some() {
                    in_bodies.insert(i.to_owned());
                }
                *staged_readers.entry(i.to_owned()).or_default() += 1;
            }
        }
        staged_readers.retain(|i, _| !in_bodies.contains(i));
        let successor_pools = successor_pools(&wf, &sites);
        // The pages of its first objects are allocated now rather than by its first calls (a
        // bounded amount: zeroing pages holds the loop).
        self.arena.prefault(segment, quota.min(PREFAULT_BYTES));
        self.installed.insert(
            key,
            Installed {
                wf,
                quota,
                segment,
                sites,
                placement,
                dropping: false,
                digest,
                readers,
                remote_readers,
                result_reads,
                input_needs,
                stageable,
                read_here,
                staged_readers,
                successor_pools,
                remote_only,
            },
        );
        let mut warming = HashSet::new();
        for p in new_pools {
            for _ in 0..self.config.min_instances.min(self.config.max_instances) {
                warming.insert(self.spawn(p));
            }
        }
        Ok(warming)
    }

    // ---- instances -----------------------------------------------------------------------

    fn spawn(&mut self, pool: usize) -> u32 {
        let id = self.next_instance;
        self.next_instance += 1;
        self.pools[pool].spawning += 1;
        self.starting.insert(id, pool);
        let segment = self.pools[pool].segment;
        let Some(arena_region) = self.arena.region(segment).cloned() else {
            // Its workflow version is gone: nothing is left for an instance to do.
            self.shared.post(Msg::Pool(pool::Report::Ready {
                instance: id,
                result: Err(format!(
                    "the workflow version of pool `{}` is no longer installed",
                    self.pools[pool].key.domain
                )),
            }));
            return id;
        };
        let (memory_bytes, cpu_millis, network) = self.pools[pool].limits;
        let launch = match &self.pools[pool].key.runner {
            Runner::Process(c) => Launch::Process(c.clone()),
            Runner::Container(image) => Launch::Container(ContainerSpec {
                image: image.clone(),
                memory_bytes,
                cpu_millis,
                network,
            }),
        };
        self.spawner.spawn(SpawnRequest {
            instance: id,
            launch,
            threads: self.config.threads,
            ring_capacity: self.config.ring_capacity,
            timeout: self.config.spawn_timeout,
            arena: arena_region,
            segment,
            prefault: self.arena.populated(segment),
        });
        id
    }

    fn instance_ready(&mut self, id: u32, result: Result<Box<pool::Ready>, String>) {
        let Some(pool) = self.starting.remove(&id) else {
            return;
        };
        // Installs waiting for their warm instances.
        for (ids, errors, _) in &mut self.warming {
            if ids.remove(&id)
                && let Err(e) = &result
            {
                errors.push(e.clone());
            }
        }
        for (_, errors, reply) in self.warming.extract_if(.., |(ids, _, _)| ids.is_empty()) {
            let _ = reply.send(match errors.first() {
                None => Ok(()),
                Some(e) => Err(DaemonError::Install(e.clone())),
            });
        }
        self.pools[pool].spawning -= 1;
        match result {
            Ok(r) => {
                self.instances_started += 1;
                self.instances.insert(
                    id,
                    Instance {
                        pool,
                        pid: r.pid,
                        handle: r.handle,
                        to_instance: r.to_instance,
                        to_daemon: r.to_daemon,
                        functions: r.functions,
                        calls: HashSet::new(),
                        idle_since: Instant::now(),
                        killed: None,
                        broken: false,
                    },
                );
                self.live.push(id);
                self.pools[pool].instances.push(id);
                if self.pools[pool].retired
                    && let Some(inst) = self.instances.get_mut(&id)
                {
                    // Started for a version removed meanwhile.
                    inst.killed = Some("its workflow version was dropped while it started".into());
                    inst.handle.kill();
                }
                let tracked = self.probe.track(r.pid);
                self.probe_result(tracked);
                if let Some(status) = self.exited_early.remove(&id) {
                    self.instance_exited(id, status);
                    return;
                }
                self.dispatch(pool);
            }
            Err(e) => {
                self.exited_early.remove(&id);
                let p = &mut self.pools[pool];
                // Without any instance the queued calls would wait forever: fail them.
                if p.instances.is_empty() && p.spawning == 0 {
                    let queued: Vec<u64> = p.queue.drain(..).collect();
                    for c in queued {
                        let f = self.calls.get(&c).map(|c| c.function.clone()).unwrap_or_default();
                        self.fail_call(c, format!("function `{f}` could not run: {e}"), FailureKind::Crash);
                    }
                }
            }
        }
    }

    fn instance_exited(&mut self, id: u32, status: String) {
        if self.starting.contains_key(&id) {
            // Its watcher saw it die before the spawner reported it ready: apply at `Ready`.
            self.exited_early.insert(id, status);
            return;
        }
        if !self.instances.contains_key(&id) {
            return;
        }
        // Completions it pushed before dying still count.
        self.drain_instance(id);
        let Some(inst) = self.instances.remove(&id) else { return };
        self.probe.forget(inst.pid);
        self.live.retain(|&i| i != id);
        let pool = inst.pool;
        self.pools[pool].instances.retain(|&i| i != id);
        let pack = self.pools[pool].pack_name.clone();
        let at = inst.handle.describe(inst.pid);
        let why = match &inst.killed {
            Some(reason) => format!("its instance ({at}, pack `{pack}`) was stopped because {reason}"),
            None => format!("its instance ({at}, pack `{pack}`) {status}"),
        };
        let mut calls: Vec<u64> = inst.calls.into_iter().collect();
        calls.sort_unstable();
        for c in calls {
            let f = self.calls.get(&c).map(|c| c.function.clone()).unwrap_or_default();
            self.fail_call(c, format!("function `{f}`: {why}"), FailureKind::Crash);
        }
        let p = &self.pools[pool];
        if !self.stop
            && !p.retired
            && (!p.queue.is_empty() || p.instances.len() + p.spawning < self.config.min_instances)
        {
            self.spawn(pool);
        }
    }

    fn stop_idle_instances(&mut self) {
        let idle = self.config.idle_timeout;
        let min = self.config.min_instances;
        for p in 0..self.pools.len() {
            let mut live = self.pools[p].instances.len();
            for &id in &self.pools[p].instances.clone() {
                if live <= min {
                    break;
                }
                let Some(inst) = self.instances.get_mut(&id) else {
                    continue;
                };
                if inst.calls.is_empty() && inst.killed.is_none() && inst.idle_since.elapsed() >= idle {
                    inst.killed = Some(format!("it was idle for {} s", idle.as_secs()));
                    inst.handle.kill();
                    live -= 1;
                }
            }
        }
    }

    // ---- invocations ---------------------------------------------------------------------

    fn start_invocation(
        &mut self,
        workflow: String,
        version: u64,
        invocation: Option<InvocationId>,
        input: serde_json::Value,
        deadline: Option<Duration>,
        reply: Reply,
    ) {
        let id = invocation.unwrap_or_else(|| {
            self.next_invocation += 1;
            self.next_invocation - 1
        });
        if self.invocations.contains_key(&id) || self.ended.contains(id) {
            return reply(Err(DaemonError::Invoke(format!("invocation {id} is already running"))));
        }
        if self.invocations.len() >= self.config.max_invocations {
            *self.metrics.invocations.entry("overloaded").or_default() += 1;
            return reply(Err(DaemonError::Overloaded(format!(
                "worker `{}` is overloaded: {} invocations are running on it (its --max-invocations); retry later",
                self.config.name,
                self.invocations.len()
            ))));
        }
        // The other workers of the plan start it too: they get its input first.
        let key = (workflow.clone(), version);
        let others = self.other_workers(&key);
        // Large inputs only tasks read go apart, as objects (they would hold up `Start`).
        // On one worker, each call copies what it reads of the input (freed when it ends).
        let mut input = input;
        let staged = if others.is_empty() {
            Vec::new()
        } else {
            self.take_staged(&key, &mut input)
        };
        // Each other worker gets the inputs its tasks, conditions and foreach lists read
        // (the others are left out): a large input goes only where it is needed.
        let inputs: Vec<Vec<u8>> = others
            .iter()
            .map(|(name, _)| self.input_for(&key, name, &input))
            .collect();
        if let Err((e, reply)) = self.begin(id, &workflow, version, input, Some(reply), None) {
            if let Some(reply) = reply {
                reply(Err(DaemonError::Invoke(e)));
            }
            return;
        }
        // The entry enforces the deadline; the others learn of its end with `Failed`.
        let declared = self
            .installed
            .get(&key)
            .and_then(|i| i.wf.deadline_ms)
            .map(Duration::from_millis);
        if let Some(limit) = deadline.or(declared) {
            let at = self.now() + limit;
            self.engine
                .set_deadline(id, at, u64::try_from(limit.as_millis()).unwrap_or(u64::MAX));
        }
        // The `Start`s go first, then the staged inputs' bytes.
        let (named, ids) = self.name_staged(id, &staged, &others);
        let origin_us = self.invocations.get(&id).map_or(0, |i| cluster::unix_us(i.start));
        for ((peer, input), staged) in others.iter().zip(inputs).zip(named.iter()) {
            let msg = crate::io::message::ControlMessage::Start(crate::io::message::Start {
                workflow: workflow.clone(),
                version,
                invocation: id,
                origin_us,
                input,
                staged: staged.clone(),
            });
            self.broadcast(std::slice::from_ref(peer), &msg);
        }
        // Tasks here that read none of them start before their bytes are copied.
        self.apply_actions();
        if let Err(e) = self.stage(id, staged, ids, &named, &others) {
            self.abort(id, e, false);
        }
    }

    /// Creates an invocation's state and starts it in the engine. `entry`: the plan index of
    /// the daemon it started on (`None`: this one). On error, gives the reply back.
    fn begin(
        &mut self,
        id: InvocationId,
        workflow: &str,
        version: u64,
        input: serde_json::Value,
        reply: Option<Reply>,
        entry: Option<(u32, u64)>,
    ) -> Result<(), (String, Option<Reply>)> {
        let key = (workflow.to_owned(), version);
        let (wf, me) = match self.installed.get_key_value(&key) {
            Some((k, i)) => (k.clone(), i.placement.me),
            None => (Arc::new(key), 0),
        };
        self.invocations.insert(
            id,
            InvState {
                wf,
                start: entry.map_or_else(Instant::now, |(_, origin)| cluster::instant_of(origin)),
                reply,
                entry: entry.map_or(me, |(e, _)| e),
                quiet: false,
                lost: None,
                deferred: None,
                deferred_at: None,
                result_wait_us: 0.0,
                staged: HashMap::new(),
                staged_left: HashMap::new(),
                reported: (0.0, 0),
                master: false,
                functions: Vec::new(),
                edges: Vec::new(),
                data_us: 0.0,
                spills: 0,
                running: HashMap::new(),
                objects: HashSet::new(),
            },
        );
        let now = self.now();
        if let Err(e) = self.engine.start(now, workflow, version, id, input) {
            let reply = self.invocations.remove(&id).and_then(|inv| inv.reply);
            return Err((e.to_string(), reply));
        }
        Ok(())
    }

    fn apply_actions(&mut self) -> bool {
        let mut any = false;
        while let Some(a) = self.engine.poll_action() {
            any = true;
            match a {
                Action::Trigger {
                    invocation,
                    node,
                    element,
                    attempt,
                    inputs,
                } => self.trigger(invocation, node, element, attempt, inputs),
                Action::Cancel {
                    invocation,
                    node,
                    element,
                    timed_out,
                } => self.cancel(invocation, node, element, timed_out),
                Action::Caught {
                    invocation,
                    node,
                    element,
                    failure,
                } => self.tell_caught(invocation, node, element, &failure),
                Action::Release { object } => self.release(object),
                Action::Finished { invocation, result } => self.finish(invocation, result),
            }
        }
        if !self.just_ended.is_empty() {
            self.clear_ended();
        }
        any
    }

    fn trigger(
        &mut self,
        invocation: InvocationId,
        node: NodeId,
        element: Option<u32>,
        attempt: u32,
        mut inputs: Vec<(String, InputValue)>,
    ) {
        let Some(inv) = self.invocations.get_mut(&invocation) else {
            return;
        };
        let wf_key = inv.wf.clone();
        let Some(installed) = self.installed.get(&wf_key) else {
            return;
        };
        let wf = installed.wf.clone();
        let Some(site) = installed.sites.get(&(node.index() as u32)) else {
            return;
        };
        let (pool, function, params, outputs, synthetic) = (
            site.pool,
            site.function.clone(),
            site.params.clone(),
            site.outputs.clone(),
            site.synthetic,
        );
        let name = wf.graph[node].name.clone();
        if !inv.staged.is_empty()
            && let Some(task) = wf.graph[node].task()
        {
            // Staged inputs are read as the objects they landed in.
            for (binding, v) in inputs.iter_mut() {
                if let InputValue::Json(_) = v
                    && let Some(i) = task.reads_input_alone(binding)
                    && let Some(&id) = inv.staged.get(i)
                    && let Some(o) = self.objects.get(&id)
                {
                    *v = InputValue::Object(ObjectRef {
                        id,
                        len: o.len,
                        json: None,
                    });
                }
            }
        }
        inv.functions.push(FunctionRecord {
            name: name.clone(),
            worker: self.config.name.clone(),
            element,
            instance: None,
            start_us: us(inv.start.elapsed()),
            end_us: 0.0,
            exec_us: 0.0,
            data_us: 0.0,
            peak_memory_bytes: None,
            output_bytes: Default::default(),
            attempt,
            skipped: false,
            error: None,
            failure: None,
        });
        let record = inv.functions.len() - 1;
        let id = self.next_call;
        self.next_call += 1;
        let call = Call {
            invocation,
            node,
            element,
            pool,
            wf: wf_key.clone(),
            invoke: frame::Invoke {
                call: id,
                function: 0,
                params,
                inputs: Vec::new(),
                outputs: Vec::new(),
            },
            function: function.clone(),
            kinds: outputs.iter().map(|(n, _, k)| (n.clone(), *k)).collect(),
            extents: Vec::new(),
            temps: Vec::new(),
            reads: Vec::new(),
            reload_us: HashMap::new(),
            instance: None,
            record,
            abandoned: false,
            stop_by: None,
            pending: inputs,
            outputs,
            synthetic,
            step: name,
            edge_range: 0..0,
            master: None,
            owned: Vec::new(),
            triggered: Instant::now(),
            measured: false,
        };
        if let Some(inv) = self.invocations.get_mut(&invocation) {
            inv.running.insert((node.index() as u32, element), id);
        }
        let waits = self.inputs_arriving(&call);
        self.prewarm_successors(&call.wf, node);
        self.calls.insert(id, call);
        if waits {
            // Inputs from other workers are still on their way.
            self.awaiting.push(id);
            return;
        }
        self.pools[pool].queue.push_back(id);
        self.dispatch(pool);
    }

    /// A function of `wf` starts at `node`: the pools of the tasks that follow it here and
    /// have no instance, running or starting, start one now, so that they are warm by the
    /// time they are triggered.
    fn prewarm_successors(&mut self, wf: &WfKey, node: NodeId) {
        if self.stop {
            return;
        }
        let Some(pools) = self
            .installed
            .get(wf)
            .and_then(|i| i.successor_pools.get(&(node.index() as u32)))
        else {
            return;
        };
        for p in pools.clone() {
            let pool = &self.pools[p];
            if pool.instances.is_empty() && pool.spawning == 0 {
                self.spawn(p);
            }
        }
    }

    /// Resolves a call's inputs to arena references and reserves its outputs.
    fn prepare(&mut self, call: &mut Call) -> Result<(), Unprepared> {
        // Borrowed, not cloned: workflow inputs may be large JSON strings.
        let inputs = std::mem::take(&mut call.pending);
        let result = self.prepare_with(call, &inputs);
        call.pending = inputs;
        result
    }

    fn prepare_with(&mut self, call: &mut Call, inputs: &[(String, InputValue)]) -> Result<(), Unprepared> {
        let outputs = call.outputs.clone();
        let (synthetic, step) = (call.synthetic, call.step.clone());
        let capacity = self.arena.capacity();
        let segment = self.segment_of(&call.wf);
        let t = Instant::now();
        let mut copied = false;
        for (name, v) in inputs {
            let name = name.clone();
            let value = match v {
                InputValue::Absent => Value::Absent,
                InputValue::Object(r) => Value::One(self.input_ref(call, r.id)?),
                InputValue::List(rs) => {
                    let mut l = Vec::with_capacity(rs.len());
                    for r in rs {
                        l.push(self.input_ref(call, r.id)?);
                    }
                    Value::List(l)
                }
                InputValue::Json(j) => {
                    copied = true;
                    // A string arrives as its UTF-8 bytes, anything else as JSON text.
                    let text;
                    let bytes: &[u8] = match &**j {
                        serde_json::Value::String(s) => s.as_bytes(),
                        v => {
                            text =
                                serde_json::to_vec(v).map_err(|e| Unprepared::Fatal(format!("input `{name}`: {e}")))?;
                            &text
                        }
                    };
                    if bytes.is_empty() {
                        call.invoke.inputs.push((name, Value::One(frame::ObjectRef::default())));
                        continue;
                    }
                    let len = bytes.len() as u64;
                    let e = self.alloc_or_spill(segment, len, &call.reads).map_err(|e| {
                        no_room(
                            len,
                            capacity,
                            format!(
                                "input `{name}` of step `{step}`: {e}; give the daemon a larger arena (--arena-mib)"
                            ),
                        )
                    })?;
                    call.temps.push(e);
                    self.arena.write(e, 0, bytes);
                    Value::One(frame::ObjectRef {
                        segment: e.segment,
                        offset: e.offset,
                        len,
                    })
                }
            };
            call.invoke.inputs.push((name, value));
        }
        for (name, size, _) in &outputs {
            let mut r = frame::ObjectRef::default();
            // An output of unknown size gets a small reservation, so that small outputs need
            // no round trip to ask for room.
            let size = &if *size == 0 && !synthetic {
                DEFAULT_RESERVATION
            } else {
                *size
            };
            if *size > 0 && (synthetic || *size <= capacity) {
                match self.alloc_or_spill(segment, *size, &call.reads) {
                    Ok(e) => {
                        call.extents.push((name.clone(), e));
                        r = frame::ObjectRef {
                            segment: e.segment,
                            offset: e.offset,
                            len: *size,
                        };
                    }
                    Err(e) => {
                        let m = format!(
                            "output `{name}` needs {size} bytes: {e}; give the daemon a larger arena (--arena-mib) \
                             or scale data down (--data-scale)"
                        );
                        return Err(no_room(*size, capacity, m));
                    }
                }
            }
            call.invoke.outputs.push((name.clone(), r));
        }
        // Counted once the call is ready (a call that waits for room is prepared again).
        let reloads: f64 = call.reload_us.values().map(|(_, t)| t).sum();
        if let Some(inv) = self.invocations.get_mut(&call.invocation) {
            // With copies, the whole preparation: the copies and the reloads.
            let waited = if copied { us(t.elapsed()) } else { reloads };
            inv.data_us += waited;
            // The call waited for it before it could run: its data wait.
            if let Some(rec) = inv.functions.get_mut(call.record) {
                rec.data_us += waited;
            }
        }
        Ok(())
    }

    /// Undoes a [`Runtime::prepare`] that could not finish (the call goes back to its queue).
    fn unprepare(&mut self, call: &mut Call) {
        for (_, e) in call.extents.drain(..) {
            self.arena.free(e);
        }
        for e in call.temps.drain(..) {
            self.arena.free(e);
        }
        call.invoke.inputs.clear();
        call.invoke.outputs.clear();
        call.reads.clear();
        call.reload_us.clear();
    }

    /// The arena reference of object `id` for `call` (reloaded if it was spilled).
    fn input_ref(&mut self, call: &mut Call, id: u64) -> Result<frame::ObjectRef, Unprepared> {
        let capacity = self.arena.capacity();
        let segment = self.segment_of(&call.wf);
        let obj = self
            .objects
            .get(&id)
            .ok_or_else(|| Unprepared::Fatal(format!("object {id} is not held")))?;
        call.reads.push(id);
        match &obj.place {
            Place::Empty => Ok(frame::ObjectRef::default()),
            Place::Pending => Err(Unprepared::Fatal(format!("object {id} has not arrived"))),
            Place::Arena(e) if e.segment == segment => Ok(frame::ObjectRef {
                segment: e.segment,
                offset: e.offset,
                len: obj.len,
            }),
            Place::Arena(e) => {
                // In another workflow version's segment, which the call's instance does not
                // map (not made by this daemon's own objects): it gets a copy in its own.
                let (from, len, producer) = (*e, obj.len, obj.producer.clone());
                let bytes = self
                    .arena
                    .read(from, len)
                    .ok_or_else(|| Unprepared::Fatal(format!("the output of `{producer}` lies outside the arena")))?;
                let e = self
                    .alloc_or_spill(segment, len, &call.reads)
                    .map_err(|e| no_room(len, capacity, format!("cannot copy the output of `{producer}`: {e}")))?;
                call.temps.push(e);
                self.arena.write(e, 0, &bytes);
                Ok(frame::ObjectRef {
                    segment: e.segment,
                    offset: e.offset,
                    len,
                })
            }
            Place::Spilled(path) => {
                let t = Instant::now();
                let (len, path, producer) = (obj.len, path.clone(), obj.producer.clone());
                let e = self.alloc_or_spill(segment, len, &call.reads).map_err(|e| {
                    no_room(
                        len,
                        capacity,
                        format!("cannot reload the spilled output of `{producer}`: {e}"),
                    )
                })?;
                call.temps.push(e);
                let fatal = |e: std::io::Error| Unprepared::Fatal(format!("spill file {}: {e}", path.display()));
                let mut f = File::open(&path).map_err(fatal)?;
                let mut buf = vec![0u8; (1 << 20).min(len as usize)];
                let mut at = 0u64;
                while at < len {
                    let n = ((len - at) as usize).min(buf.len());
                    f.read_exact(&mut buf[..n]).map_err(fatal)?;
                    self.arena.write(e, at, &buf[..n]);
                    at += n as u64;
                }
                call.reload_us.insert(id, ("spill", us(t.elapsed())));
                Ok(frame::ObjectRef {
                    segment: e.segment,
                    offset: e.offset,
                    len,
                })
            }
            Place::Remote { key, spilled, .. } => {
                let t = Instant::now();
                let (len, key, producer, tier) = (
                    obj.len,
                    key.clone(),
                    obj.producer.clone(),
                    if *spilled { "spill" } else { "remote" },
                );
                let bytes = self.remote_get(&key).map_err(|e| {
                    Unprepared::Fatal(format!(
                        "cannot read the output of `{producer}` from the remote tier: {e}"
                    ))
                })?;
                if bytes.len() as u64 != len {
                    return Err(Unprepared::Fatal(format!(
                        "the output of `{producer}` in the remote tier has {} bytes, not {len}",
                        bytes.len()
                    )));
                }
                let e = self
                    .alloc_or_spill(segment, len, &call.reads)
                    .map_err(|e| no_room(len, capacity, format!("cannot load the output of `{producer}`: {e}")))?;
                call.temps.push(e);
                self.arena.write(e, 0, &bytes);
                call.reload_us.insert(id, (tier, us(t.elapsed())));
                Ok(frame::ObjectRef {
                    segment: e.segment,
                    offset: e.offset,
                    len,
                })
            }
        }
    }

    /// Reads an object from the remote tier, waiting for it (as a local spill file is read).
    fn remote_get(&self, key: &ObjectKey) -> Result<Vec<u8>, String> {
        let Some((store, rt)) = &self.remote else {
            return Err("this daemon has no remote tier".into());
        };
        match rt.block_on(store.get(key)) {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(format!("`{}` is not there", key.redis_key())),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Stores an object in the remote tier, waiting for it (as a local spill file is written).
    fn remote_put(&self, key: &ObjectKey, bytes: &[u8]) -> Result<(), String> {
        let Some((store, rt)) = &self.remote else {
            return Err("this daemon has no remote tier".into());
        };
        rt.block_on(store.put(key, bytes)).map_err(|e| e.to_string())
    }

    /// Sends queued calls of `pool` to instances with a free thread; starts instances when
    /// none has one and the pool may grow.
    fn dispatch(&mut self, pool: usize) {
        let threads = self.config.threads as usize;
        while let Some(&call_id) = self.pools[pool].queue.front() {
            // Prefer the instance that produced an input (in-process hand-off), then the least
            // loaded one.
            let producer_instances: Vec<u32> = self
                .calls
                .get(&call_id)
                .map(|c| {
                    c.pending
                        .iter()
                        .flat_map(|(_, v)| match v {
                            InputValue::Object(r) => vec![r.id],
                            InputValue::List(l) => l.iter().map(|r| r.id).collect(),
                            _ => Vec::new(),
                        })
                        .filter_map(|o| self.objects.get(&o).map(|o| o.instance))
                        .collect()
                })
                .unwrap_or_default();
            let free = |i: &Instance| i.killed.is_none() && i.calls.len() < threads;
            let chosen = self.pools[pool]
                .instances
                .iter()
                .copied()
                .filter(|id| self.instances.get(id).is_some_and(free))
                .min_by_key(|id| {
                    (
                        !producer_instances.contains(id),
                        self.instances.get(id).map_or(usize::MAX, |i| i.calls.len()),
                    )
                });
            let Some(inst_id) = chosen else {
                let p = &self.pools[pool];
                let room = p.spawning * threads;
                if p.instances.len() + p.spawning < self.config.max_instances.max(1) && p.queue.len() > room {
                    self.spawn(pool);
                }
                return;
            };
            let Some(mut call) = self.calls.remove(&call_id) else {
                self.pools[pool].queue.pop_front();
                continue;
            };
            match self.prepare(&mut call) {
                Ok(()) => {
                    self.calls.insert(call_id, call);
                    self.pools[pool].queue.pop_front();
                    self.send_call(call_id, inst_id);
                }
                Err(Unprepared::Full(m)) => {
                    self.unprepare(&mut call);
                    self.calls.insert(call_id, call);
                    // Running calls and transfers will free memory: wait for them
                    // (backpressure). With none running, nothing ever will.
                    if self.calls.values().any(|c| c.instance.is_some()) || self.transfers > 0 {
                        self.waiting_for_room = true;
                        return;
                    }
                    self.pools[pool].queue.pop_front();
                    self.fail_call(call_id, m, FailureKind::Data);
                }
                Err(Unprepared::Fatal(m)) => {
                    self.unprepare(&mut call);
                    self.calls.insert(call_id, call);
                    self.pools[pool].queue.pop_front();
                    self.fail_call(call_id, m, FailureKind::Data);
                }
            }
        }
    }

    /// Starts measuring the memory of call `call_id` on instance `inst_id` when it is one to
    /// measure ([`MEASURED_CALLS`]): the instance's peak starts over when no other call runs
    /// there (with others running, the call shares their peak).
    fn start_measuring(&mut self, call_id: u64, inst_id: u32) {
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        let n = match self.calls_of.get_mut(call.function.as_str()) {
            Some(n) => {
                *n += 1;
                *n
            }
            None => {
                self.calls_of.insert(call.function.as_str().into(), 1);
                1
            }
        };
        call.measured = n <= MEASURED_CALLS.0 || n % MEASURED_CALLS.1 == 0;
        if !call.measured {
            return;
        }
        if let Some(inst) = self.instances.get(&inst_id)
            && inst.calls.is_empty()
        {
            let reset = self.probe.reset(inst.pid);
            self.probe_result(reset);
        }
    }

    /// The peak memory of instance `inst` while call `call_id` ran, if the call is measured.
    fn peak_of(&mut self, call_id: u64, inst: Option<u32>) -> Option<u64> {
        if !self.calls.get(&call_id)?.measured {
            return None;
        }
        let pid = self.instances.get(&inst?)?.pid;
        let peak = self.probe.peak(pid);
        self.probe_result(peak)
    }

    /// A probe result; its first failure is said once.
    fn probe_result<T>(&mut self, r: Result<T, faasflow_ebpf::ProbeError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                if !self.probe_failed {
                    self.probe_failed = true;
                    eprintln!(
                        "faasflow daemon `{}`: {e} (the {} memory probe leaves such calls unmeasured)",
                        self.config.name,
                        self.probe.kind()
                    );
                }
                None
            }
        }
    }

    fn send_call(&mut self, call_id: u64, inst_id: u32) {
        self.start_measuring(call_id, inst_id);
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        let Some(inst) = self.instances.get_mut(&inst_id) else {
            return;
        };
        let Some(&index) = inst.functions.get(&call.function) else {
            let f = call.function.clone();
            self.fail_call(
                call_id,
                format!("its instance does not serve function `{f}`"),
                FailureKind::Crash,
            );
            return;
        };
        call.invoke.function = index;
        call.instance = Some(inst_id);
        // Encoded into a buffer kept for that (cleared, never shrunk or zeroed again).
        let mut bytes = std::mem::take(&mut self.encode_buf);
        bytes.clear();
        let frame = Frame::Invoke(std::mem::replace(&mut call.invoke, empty_invoke()));
        let encoded = frame.encode(&mut bytes);
        if let Frame::Invoke(invoke) = frame {
            call.invoke = invoke;
        }
        let pushed = match encoded {
            Err(e) => Err(format!("cannot send the call: {e}")),
            Ok(()) => inst
                .to_instance
                .push_wait(&bytes, Some(Duration::from_secs(1)))
                .map_err(|e| format!("cannot send the call to its instance: {e}")),
        };
        self.encode_buf = bytes;
        if let Err(e) = pushed {
            call.instance = None;
            self.fail_call(call_id, e, FailureKind::Crash);
            return;
        }
        inst.calls.insert(call_id);
        // Edge records: how each input reached this instance.
        let Some(inv) = self.invocations.get_mut(&call.invocation) else {
            return;
        };
        inv.functions[call.record].instance = Some(inst_id);
        inv.functions[call.record].start_us = us(inv.start.elapsed());
        self.metrics
            .trigger_seconds
            .observe(call.triggered.elapsed().as_secs_f64());
        self.metrics.calls += 1;
        let to = inv.functions[call.record].name.clone();
        let first_edge = inv.edges.len();
        for o in &call.reads {
            let Some(obj) = self.objects.get(o) else { continue };
            let (tier, transfer_us) = match (call.reload_us.get(o), obj.transfer_us) {
                (Some((tier, t)), _) => (*tier, *t),
                (None, Some((tier, t))) => (tier, t),
                (None, None) if obj.instance == inst_id => ("in-process", 0.0),
                (None, None) => ("shared-memory", 0.0),
            };
            *self.metrics.bytes.entry(tier).or_default() += obj.len;
            inv.edges.push(EdgeRecord {
                from: obj.producer.clone(),
                to: to.clone(),
                bytes: obj.len,
                tier: tier.into(),
                transfer_us,
                from_element: obj.element,
                to_element: call.element,
            });
            if obj.transfer_us.is_some() {
                inv.data_us += transfer_us;
            }
        }
        call.edge_range = first_edge..inv.edges.len();
    }

    /// Ends a call with an error: frees what it holds and tells the engine (unless the engine
    /// already gave up on it).
    fn fail_call(&mut self, call_id: u64, message: String, kind: FailureKind) {
        let peak = self
            .calls
            .get(&call_id)
            .and_then(|c| c.instance)
            .and_then(|i| self.peak_of(call_id, Some(i)));
        let Some(call) = self.calls.remove(&call_id) else {
            return;
        };
        self.free_call(&call);
        if let Some(inst) = call.instance.and_then(|i| self.instances.get_mut(&i)) {
            inst.calls.remove(&call_id);
            if inst.calls.is_empty() {
                inst.idle_since = Instant::now();
            }
        }
        self.pools[call.pool].queue.retain(|&c| c != call_id);
        self.awaiting.retain(|&c| c != call_id);
        if call.abandoned {
            return;
        }
        if let Some(inv) = self.invocations.get_mut(&call.invocation) {
            inv.running.remove(&(call.node.index() as u32, call.element));
            let rec = &mut inv.functions[call.record];
            rec.end_us = us(inv.start.elapsed());
            rec.error = Some(message.clone());
            rec.failure = Some(kind.as_str().to_owned());
            rec.peak_memory_bytes = peak;
        }
        let mut call = call;
        if let Some(reply) = call.master.take() {
            let step = call.step.clone();
            self.master_done(&call);
            reply(Err((
                format!("step `{step}` failed on worker `{}`: {message}", self.config.name),
                kind,
            )));
            return;
        }
        let now = self.now();
        self.engine
            .function_failed(now, call.invocation, call.node, call.element, message, kind);
    }

    /// Frees what an ended call held (it is already out of `calls`).
    fn free_call(&mut self, call: &Call) {
        for (_, e) in &call.extents {
            self.arena.free(*e);
        }
        for e in &call.temps {
            self.arena.free(*e);
        }
        self.unpin(&call.reads);
    }

    fn cancel(&mut self, invocation: InvocationId, node: NodeId, element: Option<u32>, timed_out: bool) {
        let Some(call_id) = self
            .invocations
            .get_mut(&invocation)
            .and_then(|inv| inv.running.remove(&(node.index() as u32, element)))
        else {
            return;
        };
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        call.abandoned = true;
        let (instance, function, record) = (call.instance, call.function.clone(), call.record);
        let call_wf = call.wf.clone();
        if let Some(inv) = self.invocations.get_mut(&invocation) {
            let rec = &mut inv.functions[record];
            rec.end_us = us(inv.start.elapsed());
            rec.error = Some(if timed_out { "timed out" } else { "cancelled" }.into());
            rec.failure = timed_out.then(|| FailureKind::Timeout.as_str().to_owned());
        }
        let Some(inst_id) = instance else {
            // Still queued: drop it.
            self.fail_call(call_id, String::new(), FailureKind::Crash);
            return;
        };
        // A call past its deadline may never return: stop its instance. Otherwise let it end
        // and drop its outputs (other invocations may be running in the same instance), but
        // no later than its timeout from now.
        if timed_out && let Some(inst) = self.instances.get_mut(&inst_id) {
            inst.killed = Some(format!("function `{function}` running in it timed out"));
            inst.handle.kill();
        } else if !timed_out {
            let timeout = self
                .installed
                .get(&*call_wf)
                .and_then(|i| i.wf.graph[node].task().map(|t| t.spec.timeout_ms))
                .unwrap_or(DEFAULT_ABANDONED_TIMEOUT_MS);
            if let Some(call) = self.calls.get_mut(&call_id) {
                call.stop_by = Some(Instant::now() + Duration::from_millis(timeout));
            }
        }
    }

    /// Stops the instances of abandoned calls that ran past their `stop_by`.
    fn stop_overdue_abandoned_calls(&mut self) {
        let now = Instant::now();
        let overdue: Vec<(u32, String)> = self
            .calls
            .values()
            .filter(|c| c.stop_by.is_some_and(|t| t <= now))
            .filter_map(|c| c.instance.map(|i| (i, c.function.clone())))
            .collect();
        for (inst_id, function) in overdue {
            if let Some(inst) = self.instances.get_mut(&inst_id)
                && inst.killed.is_none()
            {
                inst.killed = Some(format!(
                    "function `{function}` running in it for an invocation that had ended ran past its timeout"
                ));
                inst.handle.kill();
            }
        }
    }

    /// The engine is done with `object`. Its bytes are freed at once, unless a call that was
    /// sent still reads them (a call of a failed invocation, left to finish): then when that
    /// call ends, so that nothing is ever written under a running function.
    fn release(&mut self, object: u64) {
        if self.read_by_a_sent_call(object) || self.objects.get(&object).is_some_and(Object::busy) {
            if let Some(obj) = self.objects.get_mut(&object) {
                obj.released = true;
            }
            return;
        }
        self.free_object(object);
    }

    fn read_by_a_sent_call(&self, object: u64) -> bool {
        self.calls
            .values()
            .any(|c| c.instance.is_some() && c.reads.contains(&object))
    }

    /// Frees the objects `reads` whose release waited for the call that just ended.
    fn unpin(&mut self, reads: &[u64]) {
        for &id in reads {
            let idle = self.objects.get(&id).is_some_and(|o| o.released && !o.busy());
            if idle && !self.read_by_a_sent_call(id) {
                self.free_object(id);
            }
        }
    }

    fn free_object(&mut self, object: u64) {
        let Some(obj) = self.objects.remove(&object) else {
            return;
        };
        if let (Some(key), Some((store, rt))) = (obj.remote_copy.clone(), &self.remote) {
            let store = store.clone();
            rt.spawn(async move {
                if let Err(e) = store.delete(&key).await {
                    eprintln!("faasflow daemon: {e} (the key expires on its own)");
                }
            });
        }
        if let Some(inv) = self.invocations.get_mut(&obj.invocation) {
            inv.objects.remove(&object);
        }
        match obj.place {
            Place::Arena(e) => {
                self.arena.free(e);
                if let Some(r) = self.resident.get_mut(&obj.wf) {
                    *r = r.saturating_sub(e.len);
                }
            }
            Place::Spilled(path) => {
                let _ = std::fs::remove_file(path);
            }
            Place::Remote { key, owned: true, .. } => {
                if let Some((store, rt)) = &self.remote {
                    let store = store.clone();
                    rt.spawn(async move {
                        if let Err(e) = store.delete(&key).await {
                            eprintln!("faasflow daemon: {e} (the key expires on its own)");
                        }
                    });
                }
            }
            Place::Empty | Place::Pending | Place::Remote { .. } => {}
        }
    }

    // ---- completions ---------------------------------------------------------------------

    fn drain_rings(&mut self) -> bool {
        let mut any = false;
        let mut k = 0;
        while k < self.live.len() {
            let id = self.live[k];
            any |= self.drain_instance(id);
            k += 1;
        }
        any
    }

    fn drain_instance(&mut self, id: u32) -> bool {
        let mut any = false;
        loop {
            let Some(inst) = self.instances.get_mut(&id) else {
                return any;
            };
            if inst.broken {
                return any;
            }
            let popped = inst.to_daemon.pop(&mut self.frame_buf);
            let frame = match popped {
                Ok(None) => return any,
                Ok(Some(n)) => Frame::decode(&self.frame_buf[..n]).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            any = true;
            match frame {
                Ok(Frame::Complete(c)) => self.complete(id, c),
                Ok(Frame::Alloc(a)) => self.grant(id, a),
                Ok(other) => self.protocol_violation(id, format!("it sent a daemon-bound frame: {other:?}")),
                Err(e) => self.protocol_violation(id, format!("it sent a malformed frame: {e}")),
            }
        }
    }

    /// Stops an instance that broke the protocol; nothing more is read from it (its calls fail
    /// when its exit is seen).
    fn protocol_violation(&mut self, id: u32, why: String) {
        if let Some(inst) = self.instances.get_mut(&id) {
            inst.broken = true;
            inst.killed.get_or_insert(why);
            inst.handle.kill();
        }
    }

    fn grant(&mut self, inst_id: u32, a: frame::Alloc) {
        let owned = self.calls.get(&a.call).is_some_and(|c| c.instance == Some(inst_id));
        let segment = self.calls.get(&a.call).map_or(u32::MAX, |c| self.segment_of(&c.wf));
        let allocated = if owned {
            Some(self.alloc_or_spill(segment, a.len.max(1), &[]))
        } else {
            None
        };
        let result = match (self.calls.get_mut(&a.call), allocated) {
            (Some(call), Some(allocated)) => match allocated {
                Ok(e) => {
                    call.extents.push((a.name.clone(), e));
                    Ok(frame::ObjectRef {
                        segment: e.segment,
                        offset: e.offset,
                        len: e.len,
                    })
                }
                Err(e) => Err(format!(
                    "output `{}` needs {} bytes: {e}; give the daemon a larger arena (--arena-mib)",
                    a.name, a.len
                )),
            },
            _ => {
                return self.protocol_violation(inst_id, format!("it asked for room for call {}, not its own", a.call));
            }
        };
        let mut bytes = Vec::new();
        let frame = Frame::Grant(frame::Grant { call: a.call, result });
        if let Err(e) = frame.encode(&mut bytes) {
            return self.protocol_violation(inst_id, format!("grant: {e}"));
        }
        if let Some(inst) = self.instances.get_mut(&inst_id)
            && inst
                .to_instance
                .push_wait(&bytes, Some(Duration::from_secs(1)))
                .is_err()
        {
            self.protocol_violation(inst_id, "it stopped reading its ring".into());
        }
    }

    fn complete(&mut self, inst_id: u32, c: frame::Complete) {
        let owned = self
            .calls
            .get(&c.call)
            .is_some_and(|call| call.instance == Some(inst_id));
        if !owned {
            return self.protocol_violation(inst_id, format!("it completed call {}, which is not its own", c.call));
        }
        let pool = self.calls[&c.call].pool;
        if let Some(inst) = self.instances.get_mut(&inst_id) {
            inst.calls.remove(&c.call);
            if inst.calls.is_empty() {
                inst.idle_since = Instant::now();
            }
        }
        let exec_us = c.exec_ns as f64 / 1e3;
        let peak = self.peak_of(c.call, Some(inst_id));
        {
            let call = &self.calls[&c.call];
            if let Some(inv) = self.invocations.get_mut(&call.invocation)
                && !call.abandoned
            {
                let rec = &mut inv.functions[call.record];
                rec.end_us = us(inv.start.elapsed());
                rec.exec_us = exec_us;
                rec.peak_memory_bytes = peak;
            }
        }
        if self.calls[&c.call].abandoned {
            if let Some(call) = self.calls.remove(&c.call) {
                self.free_call(&call);
            }
            self.dispatch(pool);
            return;
        }
        let function = self.calls[&c.call].function.clone();
        match c.status {
            Status::Ok => match self.seal(c.call, inst_id, c.outputs) {
                Ok(()) => {}
                Err(e) => self.fail_call(c.call, format!("function `{function}`: {e}"), FailureKind::Error),
            },
            Status::Failed => self.fail_call(
                c.call,
                format!("function `{function}` returned an error: {}", c.message),
                FailureKind::Error,
            ),
            Status::Panicked => self.fail_call(
                c.call,
                format!("function `{function}` panicked: {}", c.message),
                FailureKind::Panic,
            ),
        }
        self.dispatch(pool);
    }

    /// Turns a successful call's outputs into objects and tells the engine.
    fn seal(&mut self, call_id: u64, inst_id: u32, outputs: Vec<(String, frame::ObjectRef)>) -> Result<(), String> {
        let call = &self.calls[&call_id];
        // Validate everything before taking anything.
        let mut used: Vec<(String, Extent, u64)> = Vec::new();
        for (name, r) in &outputs {
            if used.iter().any(|(n, _, _)| n == name) {
                return Err(format!("it reported output `{name}` twice"));
            }
            if r.len == 0 {
                used.push((
                    name.clone(),
                    Extent {
                        segment: 0,
                        offset: 0,
                        len: 0,
                    },
                    0,
                ));
                continue;
            }
            let Some((_, e)) = call
                .extents
                .iter()
                .find(|(n, e)| n == name && r.segment == e.segment && r.offset == e.offset && r.len <= e.len)
            else {
                return Err(format!(
                    "it reported output `{name}` outside the room the daemon gave it (protocol violation)"
                ));
            };
            used.push((name.clone(), *e, r.len));
        }
        let wf = self.installed.get(&call.wf).map(|i| i.wf.clone());
        let declared: Vec<&String> = call.kinds.iter().map(|(n, _)| n).collect();
        if let Some(missing) = declared.iter().find(|d| !used.iter().any(|(n, _, _)| n == **d)) {
            return Err(format!("it returned without its declared output `{missing}`"));
        }
        // Parse json/list outputs.
        let mut parsed: HashMap<String, Arc<serde_json::Value>> = HashMap::new();
        for (name, e, len) in &used {
            let kind = call.kinds.iter().find(|(n, _)| n == name).map(|(_, k)| *k);
            if !matches!(kind, Some(ValueKind::Json | ValueKind::List)) {
                continue;
            }
            if *len > MAX_JSON {
                return Err(format!(
                    "output `{name}` is {len} bytes, more than the {MAX_JSON} a JSON value may have"
                ));
            }
            let bytes = if *len == 0 {
                Vec::new()
            } else {
                self.arena.read(*e, *len).unwrap_or_default()
            };
            let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|err| {
                format!(
                    "output `{name}` is declared `{}` but is not valid JSON: {err}",
                    kind.map_or("json", |k| k.as_str())
                )
            })?;
            if kind == Some(ValueKind::List) && !v.is_array() {
                return Err(format!("output `{name}` is declared `list` but is not a JSON array"));
            }
            parsed.insert(name.clone(), Arc::new(v));
        }
        let Some(mut call) = self.calls.remove(&call_id) else {
            return Ok(());
        };
        let wf_key = call.wf.clone();
        let producer = wf.as_ref().map(|w| w.graph[call.node].name.clone()).unwrap_or_default();
        let quota = self.installed.get(&wf_key).map_or(u64::MAX, |i| i.quota);
        let remote_only = self.installed.get(&wf_key).is_some_and(|i| i.remote_only);
        // Free what is not kept: unused reservations and the tails of used ones.
        for (name, e) in &call.extents {
            if !used.iter().any(|(n, u, l)| n == name && u == e && *l > 0) {
                self.arena.free(*e);
            }
        }
        for e in &call.temps {
            self.arena.free(*e);
        }
        self.read_staged(&call);
        self.unpin(&call.reads);
        let mut objs = Vec::with_capacity(used.len());
        let mut stored_us = 0.0;
        for (name, e, len) in used {
            let id = self.next_object;
            self.next_object += 1;
            let place = if len == 0 {
                Place::Empty
            } else {
                let kept = self.arena.trim(e, len);
                *self.resident.entry(wf_key.clone()).or_default() += kept.len;
                Place::Arena(kept)
            };
            let mut object = Object::new(place, len, wf_key.clone(), call.invocation, producer.clone(), inst_id);
            object.element = call.element;
            self.objects.insert(id, object);
            if let Some(inv) = self.invocations.get_mut(&call.invocation) {
                inv.objects.insert(id);
            }
            if remote_only && len > 0 {
                stored_us += self.store_edge(id);
            } else if self.resident.get(&wf_key).copied().unwrap_or(0) > quota {
                self.spill(id);
            }
            objs.push((
                name.clone(),
                ObjectRef {
                    id,
                    len,
                    json: parsed.remove(&name),
                },
            ));
        }
        if let Some(inv) = self.invocations.get_mut(&call.invocation) {
            inv.running.remove(&(call.node.index() as u32, call.element));
            if let Some(rec) = inv.functions.get_mut(call.record) {
                rec.output_bytes = objs.iter().map(|(name, o)| (name.clone(), o.len)).collect();
                // Its successors wait for these stores as for its own work.
                rec.data_us += stored_us;
            }
        }
        if let Some(reply) = call.master.take() {
            return self.store_outputs(call, objs, reply);
        }
        let now = self.now();
        let told = self.tell_done(&call, &objs);
        self.engine
            .function_done(now, call.invocation, call.node, call.element, objs);
        if let Some((others, msg)) = told {
            self.broadcast(&others, &msg);
        }
        Ok(())
    }

    /// Reserves `len` bytes; when the arena is full, first moves sealed objects that no call
    /// holds (nor `pinned`) to the spill directory, largest first, until the bytes fit.
    fn alloc_or_spill(&mut self, segment: u32, len: u64, pinned: &[u64]) -> Result<Extent, arena::ArenaFull> {
        match self.arena.alloc(segment, len) {
            Ok(e) => return Ok(e),
            Err(full) if len > self.arena.capacity() => return Err(full),
            Err(_) => {}
        }
        let held: HashSet<u64> = self
            .calls
            .values()
            .flat_map(|c| c.reads.iter().copied())
            .chain(pinned.iter().copied())
            .collect();
        let mut movable: Vec<(u64, u64)> = self
            .objects
            .iter()
            .filter_map(|(id, o)| match o.place {
                // Not while a push to another worker reads it.
                Place::Arena(e) if !held.contains(id) && o.pushes == 0 => Some((e.len, *id)),
                _ => None,
            })
            .collect();
        // Spill nothing when even spilling everything movable could not make room.
        let could_free: u64 = movable.iter().map(|(len, _)| len).sum();
        if self.arena.capacity() - self.arena.used() + could_free < len {
            return self.arena.alloc(segment, len);
        }
        movable.sort_unstable_by(|a, b| b.cmp(a));
        for (_, id) in movable {
            self.spill(id);
            if let Ok(e) = self.arena.alloc(segment, len) {
                return Ok(e);
            }
        }
        self.arena.alloc(segment, len)
    }

    /// Moves an object out of the arena into the spill directory.
    fn spill(&mut self, id: u64) {
        let Some(obj) = self.objects.get(&id) else { return };
        let Place::Arena(e) = obj.place else { return };
        let t = Instant::now();
        if self.remote.is_some() {
            let key = ObjectKey::new(
                obj.wf.0.clone(),
                obj.wf.1,
                obj.invocation,
                format!("spill/{}/{id}", self.config.name),
            );
            let bytes = self.arena.read(e, obj.len).unwrap_or_default();
            match self.remote_put(&key, &bytes) {
                Ok(()) => {
                    let place = Place::Remote {
                        key,
                        owned: true,
                        spilled: true,
                    };
                    return self.spilled(id, e, place, t);
                }
                Err(err) => eprintln!(
                    "faasflow daemon: cannot spill to the remote tier ({err}); spilling to {}",
                    self.spill_dir.path().display()
                ),
            }
        }
        let Some(obj) = self.objects.get(&id) else { return };
        let path = self.spill_dir.path().join(format!("object-{id}"));
        let written = (|| -> std::io::Result<()> {
            let mut f = File::create(&path)?;
            let mut buf = vec![0u8; (1 << 20).min(obj.len as usize)];
            let mut at = 0u64;
            while at < obj.len {
                let n = ((obj.len - at) as usize).min(buf.len());
                self.arena.read_into(e, at, &mut buf[..n]);
                f.write_all(&buf[..n])?;
                at += n as u64;
            }
            Ok(())
        })();
        if let Err(err) = written {
            // Keep it in memory, over quota, rather than lose it.
            let _ = std::fs::remove_file(&path);
            self.spill_failed(&err);
            return;
        }
        self.spilled(id, e, Place::Spilled(path), t);
    }

    /// A spill file could not be written: counted, and said once per cause (a full disk would
    /// otherwise say so for every object).
    fn spill_failed(&mut self, err: &std::io::Error) {
        self.spill_failures_total += 1;
        let cause = err.to_string();
        if self.spill_failures_said.insert(cause.clone()) {
            eprintln!(
                "faasflow daemon `{}`: cannot write spill files in {} ({cause}): objects over their workflow's quota \
                 stay in memory; free or fix the spill directory (said once per cause; counted in \
                 faasflow_spill_failures_total)",
                self.config.name,
                self.spill_dir.path().display()
            );
        }
    }

    /// Object `id` left the arena extent `e` for `place`.
    fn spilled(&mut self, id: u64, e: Extent, place: Place, t: Instant) {
        let Some(inv_id) = self.moved_out(id, e, place, t).map(|(inv, _)| inv) else {
            return;
        };
        self.spills_total += 1;
        if let Some(inv) = self.invocations.get_mut(&inv_id) {
            inv.spills += 1;
        }
    }

    /// Object `id`, whose bytes were at `e` in the arena, is now at `place`: frees the extent
    /// and adds the time since `t` to its invocation's data time. Returns the invocation and
    /// that time, µs (`None` when the object is gone).
    fn moved_out(&mut self, id: u64, e: Extent, place: Place, t: Instant) -> Option<(InvocationId, f64)> {
        let obj = self.objects.get_mut(&id)?;
        obj.place = place;
        let (inv_id, wf) = (obj.invocation, obj.wf.clone());
        self.arena.free(e);
        if let Some(r) = self.resident.get_mut(&wf) {
            *r = r.saturating_sub(e.len);
        }
        let took = us(t.elapsed());
        if let Some(inv) = self.invocations.get_mut(&inv_id) {
            inv.data_us += took;
        }
        Some((inv_id, took))
    }

    // ---- the end of an invocation --------------------------------------------------------

    fn finish(&mut self, invocation: InvocationId, result: Result<Vec<(String, InputValue)>, String>) {
        let results: Vec<u64> = match &result {
            Ok(values) => values.iter().flat_map(|(_, v)| cluster::object_ids(v)).collect(),
            Err(_) => Vec::new(),
        };
        if !self.ending(invocation, &result) {
            // Result objects are still arriving: ends when they are here; the others wait.
            for id in &results {
                if let Some(o) = self.objects.get_mut(id) {
                    o.held = true;
                }
            }
            if let Some(inv) = self.invocations.get_mut(&invocation) {
                inv.deferred = Some(result);
                inv.deferred_at.get_or_insert_with(Instant::now);
            }
            return;
        }
        let Some(mut inv) = self.invocations.remove(&invocation) else {
            return;
        };
        if let Some(at) = inv.deferred_at {
            inv.result_wait_us = us(at.elapsed());
        }
        self.forget(invocation);
        let Some(reply) = inv.reply.take() else {
            // Not the entry: the entry reports.
            self.remove_if_dropped(&inv.wf);
            return;
        };
        let e2e_us = us(inv.start.elapsed());
        *self
            .metrics
            .invocations
            .entry(if result.is_ok() { "ok" } else { "failed" })
            .or_default() += 1;
        self.metrics.invocation_seconds.observe(e2e_us / 1e6);
        let wf = self.installed.get(&inv.wf).map(|i| i.wf.clone());
        let (status, output, error) = match result {
            Ok(values) => {
                let mut map = serde_json::Map::new();
                for (name, v) in &values {
                    map.insert(name.clone(), self.value_json(v));
                }
                ("ok", serde_json::Value::Object(map), None)
            }
            Err(e) => ("failed", serde_json::Value::Null, Some(e)),
        };
        let path = match &wf {
            Some(wf) => {
                let key = inv.wf.clone();
                faasflow_core::report::add_skipped(wf, &mut inv.functions, |n| self.worker_of(&key, n));
                faasflow_core::report::critical_path(wf, &inv.functions)
            }
            None => Default::default(),
        };
        let report = Report {
            status: status.into(),
            output,
            error,
            invocation,
            e2e_us,
            scheduling_overhead_us: path.scheduling_overhead_us(e2e_us, inv.result_wait_us),
            data_overhead_us: inv.data_us,
            critical_path_us: path.exec_us,
            critical_data_us: path.data_us + inv.result_wait_us,
            critical_path: path.names,
            functions: std::mem::take(&mut inv.functions),
            edges: std::mem::take(&mut inv.edges),
            spills: inv.spills,
            lost_worker: inv.lost.take(),
            earlier_runs: Vec::new(),
        };
        reply(Ok(report));
        self.let_go(&results);
        self.remove_if_dropped(&inv.wf);
    }

    /// Removes a dropped workflow version once it runs nothing, and lets its arena segment go
    /// (as soon as it holds no object).
    fn remove_if_dropped(&mut self, wf: &WfKey) {
        if self.installed.get(wf).is_some_and(|i| i.dropping) && self.in_flight(wf) == 0 {
            self.uninstall(wf);
        }
    }

    /// Removes a workflow version that runs nothing: its pools' instances are stopped (each
    /// maps the version's segment, and a pool keeps its minimum warm for good otherwise) and
    /// its arena segment goes as soon as it holds no object.
    fn uninstall(&mut self, wf: &WfKey) {
        let Some(i) = self.installed.remove(wf) else { return };
        for p in 0..self.pools.len() {
            if self.pools[p].segment != i.segment || self.pools[p].retired {
                continue;
            }
            let pool = &mut self.pools[p];
            pool.retired = true;
            self.pool_index.remove(&pool.key);
            let queued: Vec<u64> = pool.queue.drain(..).collect();
            for id in pool.instances.clone() {
                if let Some(inst) = self.instances.get_mut(&id)
                    && inst.killed.is_none()
                {
                    inst.killed = Some(format!("workflow `{}` version {} was dropped", wf.0, wf.1));
                    inst.handle.kill();
                }
            }
            for c in queued {
                let f = self.calls.get(&c).map(|c| c.function.clone()).unwrap_or_default();
                let why = format!("function `{f}`: workflow `{}` version {} was dropped", wf.0, wf.1);
                self.fail_call(c, why, FailureKind::Crash);
            }
        }
        self.arena.drop_segment(i.segment);
    }

    /// The arena segment of workflow version `wf` (`u32::MAX`, which holds nothing, when it is
    /// not installed).
    fn segment_of(&self, wf: &WfKey) -> u32 {
        self.installed.get(wf).map_or(u32::MAX, |i| i.segment)
    }

    /// An invocation's result objects are read: those released meanwhile are freed.
    fn let_go(&mut self, results: &[u64]) {
        for id in results {
            if let Some(o) = self.objects.get_mut(id) {
                o.held = false;
            }
        }
        self.unpin(results);
    }

    /// The name of the worker that runs task `n` of a workflow version.
    fn worker_of(&self, wf: &WfKey, n: NodeId) -> String {
        let Some(i) = self.installed.get(wf) else {
            return String::new();
        };
        if i.placement.local.contains(&n) {
            return self.config.name.clone();
        }
        let w = i.placement.owner.get(&n).copied();
        i.placement
            .workers
            .iter()
            .find(|(idx, _, _)| Some(*idx) == w)
            .map_or_else(String::new, |(_, name, _)| name.clone())
    }

    /// The JSON shown for a workflow output.
    fn value_json(&self, v: &InputValue) -> serde_json::Value {
        match v {
            InputValue::Absent => serde_json::Value::Null,
            InputValue::Json(j) => (**j).clone(),
            InputValue::List(l) => l.iter().map(|r| self.object_json(r)).collect(),
            InputValue::Object(r) => self.object_json(r),
        }
    }

    fn object_json(&self, r: &ObjectRef) -> serde_json::Value {
        if let Some(j) = &r.json {
            return (**j).clone();
        }
        let summary = serde_json::json!({ "bytes": r.len });
        if r.len > MAX_TEXT_OUTPUT {
            return summary;
        }
        let bytes = match self.objects.get(&r.id).map(|o| &o.place) {
            Some(Place::Arena(e)) => self.arena.read(*e, r.len),
            Some(Place::Spilled(p)) => std::fs::read(p).ok(),
            Some(Place::Empty) => Some(Vec::new()),
            Some(Place::Remote { key, .. }) => self.remote_get(key).ok(),
            Some(Place::Pending) | None => None,
        };
        match bytes.map(String::from_utf8) {
            Some(Ok(s)) => serde_json::Value::String(s),
            _ => summary,
        }
    }
}

/// For each task with a site here, the pools of the tasks with a site here that follow it:
/// its successors, looking through control nodes (switch, foreach, join) to the tasks beyond.
fn successor_pools(wf: &Workflow, sites: &HashMap<u32, Site>) -> HashMap<u32, Vec<usize>> {
    let mut out = HashMap::new();
    for &n in sites.keys() {
        let mut pools = Vec::new();
        let mut seen = HashSet::new();
        let mut todo: Vec<NodeId> = wf.graph.neighbors(NodeId::new(n as usize)).collect();
        while let Some(m) = todo.pop() {
            if !seen.insert(m) {
                continue;
            }
            if wf.graph[m].task().is_some() {
                if let Some(site) = sites.get(&(m.index() as u32))
                    && !pools.contains(&site.pool)
                {
                    pools.push(site.pool);
                }
            } else {
                todo.extend(wf.graph.neighbors(m));
            }
        }
        if !pools.is_empty() {
            out.insert(n, pools);
        }
    }
    out
}

fn empty_invoke() -> frame::Invoke {
    frame::Invoke {
        call: 0,
        function: 0,
        params: Vec::new(),
        inputs: Vec::new(),
        outputs: Vec::new(),
    }
}
