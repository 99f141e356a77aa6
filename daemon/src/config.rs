//! The daemon's settings ([`DaemonConfig`]), parsed once by the binary and passed down, and
//! how it reaches the other workers of its cluster ([`PeerSettings`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How instances' memory is measured (the eBPF probe, /proc, or the probe when it loads).
pub use faasflow_ebpf::ProbeMode;

use crate::container::ContainerSettings;
use crate::io::peer::PeerConfig;
use crate::io::tls::{ClusterTrust, NodeIdentity};
use crate::pool::PackCommand;

/// Invocations a daemon runs at once, by default ([`DaemonConfig::max_invocations`]).
pub const DEFAULT_MAX_INVOCATIONS: usize = 2048;

/// How long a peer may stay silent before it is declared lost, by default
/// ([`PeerConfig::idle_timeout`]).
pub const DEFAULT_PEER_TIMEOUT: Duration = crate::io::peer::DEFAULT_IDLE_TIMEOUT;

/// Settings of a [`Daemon`](crate::daemon::Daemon).
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
    /// Synthetic bodies wait out their runtime busy (on the core, like functions that
    /// compute) instead of sleeping (as FaaSFlow's body does).
    pub synthetic_busy: bool,
    /// A call whose successor in the same instance waits for it alone is sent with that
    /// successor, which the instance starts on the same thread the moment the call succeeds
    /// (no round trip through the daemon: [`faasflow_shm::frame::Invoke::after`]).
    pub chain: bool,
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
    /// The Python interpreter that serves functions in Python (`python -m faasflow.serve`;
    /// `python3` on PATH by default).
    pub python: PathBuf,
}

impl DaemonConfig {
    /// Defaults: 1 GiB arena, spill directory in the system's temporary directory.
    pub fn new(synthetic: PackCommand) -> Self {
        DaemonConfig {
            arena_bytes: 1 << 30,
            spill_dir: None,
            packs: HashMap::new(),
            synthetic,
            runtime_scale: 1.0,
            synthetic_busy: false,
            chain: true,
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
            python: PathBuf::from("python3"),
        }
    }
}

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
