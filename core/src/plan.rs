//! The partitioner's inputs (cluster view, configuration) and output (the plan).

use serde::Serialize;

use crate::dag::{EdgeId, NodeId};

/// Scheduling mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Worker-side scheduling: the plan is partitioned by Algorithm 1, each daemon triggers its
    /// own functions, data stays local where the plan allows.
    #[default]
    WorkerSp,
    /// Master-side scheduling (FaaSFlow's baseline): round-robin placement, a central engine,
    /// every edge through remote storage.
    MasterSp,
    /// Worker-side scheduling without FaaStore: placed and triggered as [`Mode::WorkerSp`], but
    /// every edge goes through remote storage, even between functions on one worker (the
    /// middle configuration of FaaSFlow's evaluation, which separates what worker-side
    /// triggering gains from what in-memory data gains).
    #[serde(rename = "workersp-remote")]
    WorkerSpRemote,
}

impl Mode {
    /// `workersp`, `mastersp` or `workersp-remote`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::WorkerSp => "workersp",
            Mode::MasterSp => "mastersp",
            Mode::WorkerSpRemote => "workersp-remote",
        }
    }

    /// Whether daemons trigger the functions (no central engine).
    pub fn worker_side(self) -> bool {
        !matches!(self, Mode::MasterSp)
    }
}

/// How the data of an edge moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    /// Same instance: handed over by reference.
    InProcess,
    /// Same worker, other instance: the worker's shared-memory arena.
    SharedMemory,
    /// Other worker: pushed over QUIC into the consumer's arena.
    Peer,
    /// Remote storage (Redis).
    Remote,
}

impl Tier {
    /// The stable name used in JSON and text output.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::InProcess => "in-process",
            Tier::SharedMemory => "shared-memory",
            Tier::Peer => "peer",
            Tier::Remote => "remote",
        }
    }

    /// True for the tiers that keep the bytes in a worker's memory.
    pub fn is_in_memory(self) -> bool {
        !matches!(self, Tier::Remote)
    }
}

/// One worker as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerView {
    /// Its name (unique in the cluster).
    pub name: String,
    /// Container slots (instances) it can run at once.
    pub slots: u32,
}

/// The cluster the plan is made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// The workers, in a fixed order (the plan refers to them by index).
    pub workers: Vec<WorkerView>,
}

impl ClusterView {
    /// `n` workers named `worker-0` … with `slots` slots each.
    pub fn uniform(n: usize, slots: u32) -> Self {
        ClusterView {
            workers: (0..n)
                .map(|i| WorkerView {
                    name: format!("worker-{i}"),
                    slots,
                })
                .collect(),
        }
    }

    /// Slots of all workers together.
    pub fn total_slots(&self) -> u64 {
        self.workers.iter().map(|w| u64::from(w.slots)).sum()
    }
}

/// Cost model of one data tier: `latency + bytes / bandwidth`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkModel {
    /// Fixed cost per transfer, ms.
    pub latency_ms: f64,
    /// Bytes per millisecond (1 MB/s = 1,000 bytes/ms).
    pub bytes_per_ms: f64,
}

impl LinkModel {
    /// Cost of moving `bytes`, ms.
    pub fn cost_ms(&self, bytes: u64) -> f64 {
        self.latency_ms + bytes as f64 / self.bytes_per_ms
    }
}

/// Planner settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannerConfig {
    /// WorkerSP (partitioned) or MasterSP (round robin, all remote).
    pub mode: Mode,
    /// Plan even when the workflow needs more slots than the cluster has.
    pub allow_overcommit: bool,
    /// Safety margin μ of the quota, MiB per function.
    pub margin_mib: f64,
    /// Cost of an edge that crosses workers (the critical-path weight of a cut edge).
    pub remote: LinkModel,
    /// Cost of an edge kept on one worker.
    pub local: LinkModel,
    /// The version number written into the plan.
    pub version: u64,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        PlannerConfig {
            mode: Mode::WorkerSp,
            allow_overcommit: false,
            margin_mib: 16.0,
            // Remote storage as FaaSFlow measured it: about 1 ms per request and ~100 MB/s.
            remote: LinkModel {
                latency_ms: 1.0,
                bytes_per_ms: 100_000.0,
            },
            // Shared memory: ~10 µs per hand-off and ~5 GB/s.
            local: LinkModel {
                latency_ms: 0.01,
                bytes_per_ms: 5_000_000.0,
            },
            version: 1,
        }
    }
}

/// A group of nodes that the partitioner keeps together on one worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// Its id (index in [`Plan::groups`]).
    pub id: u32,
    /// Index of its worker in [`ClusterView::workers`].
    pub worker: u32,
    /// Its nodes, by index.
    pub nodes: Vec<NodeId>,
    /// Slots its functions use.
    pub slots: u32,
    /// Its memory quota, bytes: `Σ max(Mem(v) − S(v) − μ, 0)`.
    pub quota_bytes: u64,
    /// Bytes of the edges inside the group (kept in memory).
    pub local_bytes: u64,
}

/// The critical path of the partitioned graph.
#[derive(Debug, Clone, PartialEq)]
pub struct CriticalPath {
    /// Its nodes, first to last (virtual nodes included).
    pub nodes: Vec<NodeId>,
    /// Its cost: node runtimes plus the transfer costs of its edges, ms.
    pub cost_ms: f64,
}

/// Per-worker totals of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerLoad {
    /// Slots used on the worker.
    pub slots_used: u32,
    /// The workflow's in-memory quota on the worker, bytes.
    pub quota_bytes: u64,
    /// Bytes the plan keeps in the worker's memory (in-process, shared-memory, incoming peer).
    pub memory_bytes: u64,
}

/// The partitioner's output for one workflow version.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The workflow's name.
    pub workflow: String,
    /// Plan version (one per deploy).
    pub version: u64,
    /// The mode it was made for.
    pub mode: Mode,
    /// Groups, ordered by id.
    pub groups: Vec<Group>,
    /// The group of each node, by node index.
    pub node_group: Vec<u32>,
    /// The tier of each edge, by edge index.
    pub edge_tiers: Vec<Tier>,
    /// Per-worker totals, by worker index.
    pub workers: Vec<WorkerLoad>,
    /// The critical path after partitioning.
    pub critical_path: CriticalPath,
    /// Merges Algorithm 1 made.
    pub merges: u32,
    /// Some worker runs more slots than it has: a WorkerSP plan made with `allow_overcommit`,
    /// or a MasterSP plan whose round robin ignores worker slots.
    pub overcommitted: bool,
}

impl Plan {
    /// The worker (index) of a node.
    pub fn worker_of(&self, node: NodeId) -> u32 {
        self.groups[self.node_group[node.index()] as usize].worker
    }

    /// The tier of an edge.
    pub fn tier(&self, edge: EdgeId) -> Tier {
        self.edge_tiers[edge.index()]
    }
}

/// Why a plan could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The cluster has no worker.
    #[error(
        "the cluster has no worker to place functions on; start at least one daemon (or pass --workers N with N ≥ 1)"
    )]
    NoWorkers,
    /// The workflow needs more slots than all workers have together.
    #[error(
        "workflow `{workflow}` needs {needed} container slots (the sum of its functions' `scale`), but the cluster has {available} ({workers} workers); add workers, give them more slots (--slots), lower some `scale`, or pass --allow-overcommit to plan anyway"
    )]
    Overcommit {
        /// The workflow.
        workflow: String,
        /// Slots its functions need.
        needed: u64,
        /// Slots the cluster has.
        available: u64,
        /// Number of workers.
        workers: usize,
    },
    /// One function needs more slots than the largest worker has.
    #[error(
        "function `{function}` has scale {scale}, but the largest worker has {max_slots} slots; lower its `scale`, give workers more slots (--slots), or pass --allow-overcommit"
    )]
    FunctionTooLarge {
        /// The task.
        function: String,
        /// Its scale.
        scale: u32,
        /// Slots of the largest worker.
        max_slots: u32,
    },
    /// The groups could not be packed onto the workers without exceeding a worker's slots.
    #[error(
        "workflow `{workflow}` fits the cluster's {available} slots in total, but its functions cannot be packed onto {workers} workers without exceeding one; add a worker, raise --slots, or pass --allow-overcommit"
    )]
    Packing {
        /// The workflow.
        workflow: String,
        /// Slots the cluster has.
        available: u64,
        /// Number of workers.
        workers: usize,
    },
}
