//! Installed workflow versions: what the daemon derives from a plan once, at install, so that
//! nothing on an invocation's path needs the plan again — where each local task runs
//! ([`Site`]: its pool, function and reservations), who reads each output on other workers,
//! which inputs each worker needs, which inputs may be staged, and which pools to pre-warm.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use faasflow_core::NodeId;
use faasflow_core::dag::{DataSource, Isolation, NodeKind, Task, ValueKind, Workflow};
use faasflow_core::engine::Engine;
use faasflow_core::plan::{Mode, Plan, Tier};

use super::pools::{PoolKey, Pools, Shape};
use super::types::WfKey;
use crate::config::DaemonConfig;
use crate::inbox::{Listed, Placement};
use crate::pool::{ListError, Runner, UnknownPack};
use crate::store::arena::Arena;

/// Most bytes of a new workflow version's arena segment allocated at install.
const PREFAULT_BYTES: u64 = 32 << 20;

/// Why a plan version cannot be installed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum InstallError {
    #[error(
        "workflow `{workflow}`: version {version} is already installed here with another plan or being dropped; \
         deploy it as a new version"
    )]
    Taken { workflow: String, version: u64 },
    #[error("workflow `{workflow}`: cannot create its arena segment: {cause}")]
    Segment { workflow: String, cause: std::io::Error },
    #[error("workflow `{workflow}`: step `{step}` {cause}")]
    UnknownPack {
        workflow: String,
        step: String,
        cause: UnknownPack,
    },
    #[error("workflow `{workflow}`: step `{step}`: {what}: {cause}")]
    List {
        workflow: String,
        step: String,
        what: String,
        cause: Box<ListError>,
    },
    #[error("workflow `{workflow}`: step `{step}` (in Python): {message}")]
    Python {
        workflow: String,
        step: String,
        message: String,
    },
    #[error("workflow `{workflow}`: {what} was not asked for its functions")]
    NotListed { workflow: String, what: String },
    #[error(
        "workflow `{workflow}`: step `{step}` calls function `{function}`, which {what} does not have (it has: {has})"
    )]
    NoFunction {
        workflow: String,
        step: String,
        function: String,
        what: String,
        has: String,
    },
    #[error("workflow `{workflow}`: the plan runs functions on other workers, but this daemon has no peer transport")]
    NoPeers { workflow: String },
    #[error(
        "workflow `{workflow}`: version {version} is planned `{mode}` (every edge through remote storage), but worker \
         `{worker}` has no remote tier: start its daemon with --redis URL (`faasflow up` gives every daemon the \
         cluster's Redis), or deploy in another mode"
    )]
    NoRemoteTier {
        workflow: String,
        version: u64,
        mode: &'static str,
        worker: String,
    },
    #[error("{0}")]
    Engine(#[from] faasflow_core::engine::EngineError),
}

/// Where a call site runs and what it needs.
#[derive(Debug, Clone)]
pub(crate) struct Site {
    pub(crate) pool: usize,
    pub(crate) function: String,
    pub(crate) params: Vec<u8>,
    /// Declared outputs: name, bytes to reserve, kind.
    pub(crate) outputs: Vec<(String, u64, ValueKind)>,
    pub(crate) synthetic: bool,
}

/// An output of a task: (node index, output name).
pub(crate) type OutputKey = (u32, String);

/// One installed plan version.
pub(crate) struct Installed {
    pub(crate) wf: Arc<Workflow>,
    pub(crate) quota: u64,
    /// Its arena segment: its objects, mapped by its instances alone.
    pub(crate) segment: u32,
    pub(crate) sites: HashMap<u32, Site>,
    pub(crate) placement: Placement,
    /// Dropped: removed when its last invocation ends.
    pub(crate) dropping: bool,
    /// What the plan was installed as ([`crate::api::InstalledPlan::digest`]).
    pub(crate) digest: Vec<u8>,
    /// Other workers (plan index) with a task reading each output over a peer edge.
    pub(crate) readers: HashMap<OutputKey, Vec<u32>>,
    /// Other workers reading an output over an edge the plan marks remote (Redis).
    pub(crate) remote_readers: HashMap<OutputKey, Vec<u32>>,
    /// The workflow inputs each worker (by name) needs: those its tasks read, and those any
    /// condition or foreach reads (every worker evaluates those).
    pub(crate) input_needs: HashMap<String, HashSet<String>>,
    /// Inputs that may be staged ([`Workflow::stageable_inputs`]).
    pub(crate) stageable: Vec<String>,
    /// Inputs the tasks of this worker read.
    pub(crate) read_here: HashSet<String>,
    /// Per input, how many tasks of this worker read it alone through a binding (none in a
    /// foreach body): once they all ran, its staged object is released.
    pub(crate) staged_readers: HashMap<String, u32>,
    /// Outputs the workflow's result reads.
    pub(crate) result_reads: HashSet<OutputKey>,
    /// The pools of the tasks here that directly follow each task here (through control
    /// nodes), to pre-warm when it starts.
    pub(crate) successor_pools: HashMap<u32, Vec<usize>>,
    /// Planned [`Mode::WorkerSpRemote`]: every output goes to the remote tier as it is
    /// sealed, and its readers here read it there too.
    pub(crate) remote_only: bool,
}

impl Installed {
    /// The workers other than this one that run tasks of it: name, address.
    pub(crate) fn other_workers(&self) -> Vec<(String, std::net::SocketAddr)> {
        self.placement
            .workers
            .iter()
            .filter(|(w, _, _)| *w != self.placement.me)
            .filter_map(|(_, name, addr)| addr.map(|a| (name.clone(), a)))
            .collect()
    }

    /// The name and address of the plan's worker `w`.
    pub(crate) fn worker(&self, w: u32) -> Option<(String, std::net::SocketAddr)> {
        self.placement
            .workers
            .iter()
            .find(|(i, _, _)| *i == w)
            .and_then(|(_, name, addr)| addr.map(|a| (name.clone(), a)))
    }

    /// Whether worker `name` runs a task of it.
    pub(crate) fn has_worker(&self, name: &str) -> bool {
        self.placement.workers.iter().any(|(_, n, _)| n == name)
    }

    /// The plan index of worker `name`.
    pub(crate) fn index_of(&self, name: &str) -> Option<u32> {
        self.placement
            .workers
            .iter()
            .find(|(_, n, _)| n == name)
            .map(|(w, _, _)| *w)
    }

    /// The name of the worker that runs task `n` (`me`: this worker's name).
    pub(crate) fn worker_of(&self, n: NodeId, me: &str) -> String {
        if self.placement.local.contains(&n) {
            return me.to_owned();
        }
        let w = self.placement.owner.get(&n).copied();
        self.placement
            .workers
            .iter()
            .find(|(idx, _, _)| Some(*idx) == w)
            .map_or_else(String::new, |(_, name, _)| name.clone())
    }
}

/// What an install uses besides the installed versions.
pub(crate) struct InstallCx<'a> {
    pub(crate) config: &'a DaemonConfig,
    pub(crate) arena: &'a mut Arena,
    pub(crate) pools: &'a mut Pools,
    pub(crate) engine: &'a mut Engine,
    /// The daemon has a peer transport.
    pub(crate) peers: bool,
    /// The daemon has a remote tier.
    pub(crate) remote_tier: bool,
}

/// A plan version to install.
pub(crate) struct NewVersion<'a> {
    pub(crate) wf: Arc<Workflow>,
    pub(crate) plan: Plan,
    pub(crate) placement: Placement,
    pub(crate) listed: &'a Listed,
    pub(crate) digest: Vec<u8>,
}

/// The installed plan versions.
#[derive(Default)]
pub(crate) struct Installs {
    map: HashMap<WfKey, Installed>,
}

impl Installs {
    pub(crate) fn get(&self, key: &(String, u64)) -> Option<&Installed> {
        self.map.get(key)
    }

    pub(crate) fn get_mut(&mut self, key: &(String, u64)) -> Option<&mut Installed> {
        self.map.get_mut(key)
    }

    /// The shared key of an installed version.
    pub(crate) fn key(&self, key: &(String, u64)) -> Option<WfKey> {
        self.map.get_key_value(key).map(|(k, _)| k.clone())
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&WfKey, &Installed)> {
        self.map.iter()
    }

    pub(crate) fn remove(&mut self, key: &(String, u64)) -> Option<Installed> {
        self.map.remove(key)
    }

    /// The arena segment of workflow version `wf` (`u32::MAX`, which holds nothing, when it is
    /// not installed).
    pub(crate) fn segment_of(&self, wf: &(String, u64)) -> u32 {
        self.map.get(wf).map_or(u32::MAX, |i| i.segment)
    }

    /// Installs a plan version and starts its new pools' minimum instances; returns their ids.
    pub(crate) fn install(&mut self, v: NewVersion<'_>, cx: InstallCx<'_>) -> Result<HashSet<u32>, InstallError> {
        let key = (v.wf.name.clone(), v.plan.version);
        if let Some(held) = self.map.get(&key) {
            // Two installs of one version raced (the planner's watch and an invocation's
            // repair): the same plan is installed already; another one is never taken.
            return if held.digest == v.digest && !held.dropping {
                Ok(HashSet::new())
            } else {
                Err(InstallError::Taken {
                    workflow: key.0,
                    version: key.1,
                })
            };
        }
        let InstallCx {
            config,
            arena,
            pools,
            engine,
            peers,
            remote_tier,
        } = cx;
        let label = format!("{}@{}", v.wf.name, v.plan.version);
        let segment = arena.add_segment(&label).map_err(|cause| InstallError::Segment {
            workflow: v.wf.name.clone(),
            cause,
        })?;
        let result = self.install_in(segment, v, config, arena, pools, engine, (peers, remote_tier));
        if result.is_err() {
            arena.drop_segment(segment);
        }
        result
    }

    /// [`Installs::install`] with the workflow version's new arena `segment`.
    #[allow(clippy::too_many_arguments)]
    fn install_in(
        &mut self,
        segment: u32,
        v: NewVersion<'_>,
        config: &DaemonConfig,
        arena: &mut Arena,
        pools: &mut Pools,
        engine: &mut Engine,
        (peers, remote_tier): (bool, bool),
    ) -> Result<HashSet<u32>, InstallError> {
        let NewVersion {
            wf,
            plan,
            placement,
            listed,
            digest,
        } = v;
        let version = plan.version;
        let (sites, new_pools) = sites(&wf, &plan, &placement, listed, segment, config, pools)?;
        if placement.workers.iter().any(|(w, _, _)| *w != placement.me) && !peers {
            return Err(InstallError::NoPeers {
                workflow: wf.name.clone(),
            });
        }
        let remote_only = plan.mode == Mode::WorkerSpRemote;
        if remote_only && !remote_tier {
            return Err(InstallError::NoRemoteTier {
                workflow: wf.name.clone(),
                version,
                mode: plan.mode.as_str(),
                worker: config.name.clone(),
            });
        }
        engine.install(wf.clone(), version, placement.local.clone())?;
        // The quotas the plan gives the workers whose tasks run here (all of them when the
        // whole plan runs on this daemon).
        let quota = config.quota_bytes.unwrap_or_else(|| {
            let here: BTreeSet<u32> = placement.local.iter().map(|n| plan.worker_of(*n)).collect();
            here.iter()
                .filter_map(|w| plan.workers.get(*w as usize))
                .map(|w| w.quota_bytes)
                .sum()
        });
        // The pages of its first objects are allocated now rather than by its first calls (a
        // bounded amount: zeroing pages holds the loop).
        arena.prefault(segment, quota.min(PREFAULT_BYTES));
        let (readers, remote_readers) = readers(&wf, &plan, &placement);
        let installed = Installed {
            quota,
            segment,
            successor_pools: successor_pools(&wf, &sites),
            sites,
            readers,
            remote_readers,
            result_reads: wf.result_reads(),
            input_needs: input_needs(&wf, &placement),
            stageable: wf.stageable_inputs(),
            read_here: read_here(&wf, &placement),
            staged_readers: staged_readers(&wf, &placement),
            placement,
            dropping: false,
            digest,
            remote_only,
            wf: wf.clone(),
        };
        self.map.insert(Arc::new((wf.name.clone(), version)), installed);
        let mut warming = HashSet::new();
        for p in new_pools {
            let Shape { threads, warm, .. } = pools.get(p).shape;
            for _ in 0..warm {
                warming.insert(pools.spawn(p, arena, threads, config.spawn_timeout, config.ring_capacity));
            }
        }
        Ok(warming)
    }
}

/// The sites of the tasks `placement` puts here, in the pools they share (made when new:
/// returned apart).
fn sites(
    wf: &Workflow,
    plan: &Plan,
    placement: &Placement,
    listed: &Listed,
    segment: u32,
    config: &DaemonConfig,
    pools: &mut Pools,
) -> Result<(HashMap<u32, Site>, Vec<usize>), InstallError> {
    let widths = list_widths(wf);
    let python = crate::python::commands(wf, plan, &placement.local, &config.python);
    let sharing = faasflow_core::faastlane::python_sharing(wf, plan);
    let mut sites = HashMap::new();
    let mut new_pools = Vec::new();
    for n in wf.graph.node_indices() {
        let Some(task) = wf.graph[n].task() else { continue };
        if !placement.local.contains(&n) {
            continue;
        }
        let name = &wf.graph[n].name;
        let (runner, pack_name, synthetic) = Runner::of(&task.spec, &config.packs, &config.synthetic, python.get(&n))
            .map_err(|cause| InstallError::UnknownPack {
            workflow: wf.name.clone(),
            step: name.clone(),
            cause,
        })?;
        let function = match (&task.spec.python, synthetic) {
            (Some(py), _) => py.served_as(),
            (None, true) => "synthetic".to_owned(),
            (None, false) => task.function.clone(),
        };
        check_listed(wf, name, &runner, &pack_name, &function, listed)?;
        let group = plan.node_group.get(n.index()).copied().unwrap_or(0);
        let domain = match task.spec.isolation {
            Isolation::Thread => format!("{}@{}/group-{group}", wf.name, plan.version),
            Isolation::Process | Isolation::Container => format!("{}@{}/{name}", wf.name, plan.version),
        };
        let limits = (
            task.spec.memory_mib << 20,
            u64::from(task.spec.cpu_millis),
            task.spec.network,
        );
        let key = PoolKey {
            runner,
            domain,
            segment,
        };
        let shape = match &task.spec.python {
            Some(_) => {
                // A function isolated in a pool of its own runs one call at a time per instance
                // too; it warms one.
                let at_once = match task.spec.isolation {
                    Isolation::Thread => sharing.get(&group).map_or(1, |s| s.at_once),
                    Isolation::Process | Isolation::Container => 1,
                };
                let (threads, max, warm) = crate::python::shape(config, at_once);
                Shape { threads, max, warm }
            }
            None => Shape {
                threads: config.threads,
                max: config.max_instances,
                warm: config.min_instances.min(config.max_instances),
            },
        };
        let (pool, new) = pools.find_or_add(key, limits, &pack_name, shape);
        if new {
            new_pools.push(pool);
        }
        let scale = if synthetic { config.data_scale } else { 1.0 };
        let outputs = task
            .spec
            .outputs
            .iter()
            .map(|o| (o.name.clone(), (o.size as f64 * scale).round() as u64, o.kind))
            .collect();
        let params = if synthetic {
            synthetic_params(task, n, (config.runtime_scale, config.synthetic_busy), &widths)
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
    Ok((sites, new_pools))
}

/// Checks that the pack or image `runner` serves `function`, as it said when asked.
fn check_listed(
    wf: &Workflow,
    step: &str,
    runner: &Runner,
    pack_name: &str,
    function: &str,
    listed: &Listed,
) -> Result<(), InstallError> {
    let what = match runner {
        Runner::Process(_) => format!("pack `{pack_name}`"),
        Runner::Container(run) => format!("image `{}`", run.image),
    };
    let fns = match listed.get(runner) {
        Some(Ok(fns)) => fns,
        Some(Err(cause)) if pack_name == crate::python::PACK => {
            return Err(InstallError::Python {
                workflow: wf.name.clone(),
                step: step.to_owned(),
                message: crate::python::explain(runner, cause),
            });
        }
        Some(Err(cause)) => {
            return Err(InstallError::List {
                workflow: wf.name.clone(),
                step: step.to_owned(),
                what,
                cause: Box::new(cause.clone()),
            });
        }
        None => {
            return Err(InstallError::NotListed {
                workflow: wf.name.clone(),
                what,
            });
        }
    };
    if !fns.iter().any(|f| f == function) {
        return Err(InstallError::NoFunction {
            workflow: wf.name.clone(),
            step: step.to_owned(),
            function: function.to_owned(),
            what,
            has: fns.join(", "),
        });
    }
    Ok(())
}

/// The width of each list a foreach iterates, by (producer node, output).
fn list_widths(wf: &Workflow) -> HashMap<(usize, &str), u32> {
    let mut widths = HashMap::new();
    for n in wf.graph.node_indices() {
        if let NodeKind::Foreach(f) = &wf.graph[n].kind
            && let DataSource::Output { node, output } = &f.over
        {
            widths.insert((node.index(), output.as_str()), f.width.max(1));
        }
    }
    widths
}

/// The parameters of a synthetic body: its runtime (scaled), and the values of the outputs a
/// switch or a foreach reads, which must be JSON: `true` (the first case is taken), and lists
/// of the width the planner expects; `busy` when it is to wait busy. Empty for the body's
/// default (no runtime, no values).
fn synthetic_params(
    task: &Task,
    n: NodeId,
    (runtime_scale, busy): (f64, bool),
    widths: &HashMap<(usize, &str), u32>,
) -> Vec<u8> {
    let runtime_us = (task.spec.runtime_ms * 1000.0 * runtime_scale).max(0.0).round() as u64;
    let mut values = serde_json::Map::new();
    for o in &task.spec.outputs {
        match o.kind {
            ValueKind::Json => {
                values.insert(o.name.clone(), serde_json::Value::Bool(true));
            }
            ValueKind::List => {
                let width = widths.get(&(n.index(), o.name.as_str())).copied().unwrap_or(3);
                values.insert(o.name.clone(), (0..width).collect());
            }
            ValueKind::Bytes => {}
        }
    }
    if runtime_us == 0 && values.is_empty() {
        // The body's default; it skips parsing.
        Vec::new()
    } else {
        let mut params = serde_json::json!({ "runtime_us": runtime_us, "values": values });
        if busy && runtime_us > 0 {
            params["busy"] = serde_json::Value::Bool(true);
        }
        serde_json::to_vec(&params).unwrap_or_default()
    }
}

/// For each output a task of another worker reads: the workers (plan index) reading it, apart
/// by the tier the plan gives their edge (peer, remote).
fn readers(
    wf: &Workflow,
    plan: &Plan,
    placement: &Placement,
) -> (HashMap<OutputKey, Vec<u32>>, HashMap<OutputKey, Vec<u32>>) {
    let mut peer: HashMap<OutputKey, Vec<u32>> = HashMap::new();
    let mut remote: HashMap<OutputKey, Vec<u32>> = HashMap::new();
    for n in wf.graph.node_indices() {
        let Some(task) = wf.graph[n].task() else { continue };
        let Some(&w) = placement.owner.get(&n) else { continue };
        for src in task.inputs.iter().flat_map(|b| b.sources.iter()) {
            let DataSource::Output { node, output } = src else {
                continue;
            };
            if placement.owner.get(node).copied() == Some(w) {
                continue;
            }
            let tier = wf
                .graph
                .find_edge(*node, n)
                .and_then(|e| plan.edge_tiers.get(e.index()).copied());
            let map = if tier == Some(Tier::Remote) {
                &mut remote
            } else {
                &mut peer
            };
            let r = map.entry((node.index() as u32, output.clone())).or_default();
            if !r.contains(&w) {
                r.push(w);
            }
        }
    }
    (peer, remote)
}

/// The workflow inputs each worker of `placement` needs, by worker name: those its tasks
/// read, and, for every worker, those a switch condition or a foreach reads.
fn input_needs(wf: &Workflow, placement: &Placement) -> HashMap<String, HashSet<String>> {
    let everyone = wf.inputs_read_by_control();
    let mut needs: HashMap<String, HashSet<String>> = HashMap::new();
    for (w, name, _) in &placement.workers {
        let mut own = everyone.clone();
        for (n, owner) in &placement.owner {
            if owner != w {
                continue;
            }
            let Some(task) = wf.graph[*n].task() else { continue };
            own.extend(inputs_of(task).map(str::to_owned));
        }
        needs.insert(name.clone(), own);
    }
    needs
}

/// The workflow inputs a task reads.
fn inputs_of(task: &Task) -> impl Iterator<Item = &str> {
    task.inputs
        .iter()
        .flat_map(|b| b.sources.iter())
        .filter_map(|src| match src {
            DataSource::Input(i) => Some(i.as_str()),
            _ => None,
        })
}

/// The workflow inputs the tasks of this worker read.
fn read_here(wf: &Workflow, placement: &Placement) -> HashSet<String> {
    placement
        .local
        .iter()
        .filter_map(|n| wf.graph[*n].task())
        .flat_map(inputs_of)
        .map(str::to_owned)
        .collect()
}

/// Per input, how many tasks of this worker read it alone through a binding; an input some
/// foreach body here reads is left out (its readers run any number of times).
fn staged_readers(wf: &Workflow, placement: &Placement) -> HashMap<String, u32> {
    let mut counts: HashMap<String, u32> = HashMap::new();
    let mut in_bodies: HashSet<String> = HashSet::new();
    for n in &placement.local {
        let Some(task) = wf.graph[*n].task() else { continue };
        let read: HashSet<&str> = task
            .inputs
            .iter()
            .filter_map(|b| task.reads_input_alone(&b.name))
            .collect();
        for i in read {
            if wf.graph[*n].scope.is_some() {
                in_bodies.insert(i.to_owned());
            }
            *counts.entry(i.to_owned()).or_default() += 1;
        }
    }
    counts.retain(|i, _| !in_bodies.contains(i));
    counts
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

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Workflow {
        faasflow_planner::load::load_str(yaml, "test.yaml", "test")
            .unwrap()
            .workflow
    }

    fn node(wf: &Workflow, name: &str) -> NodeId {
        wf.node_by_name(name).unwrap()
    }

    fn site(pool: usize) -> Site {
        Site {
            pool,
            function: "f".into(),
            params: Vec::new(),
            outputs: Vec::new(),
            synthetic: true,
        }
    }

    /// `a` then a switch choosing `b` or `c`, then `d`; every task on the worker given.
    const BRANCHES: &str = "name: branches
functions:
  a: {outputs: {flag: json}}
  b: {}
  c: {}
  d: {}
steps:
  - task: a
    inputs: {x: input.x}
  - switch:
      cases:
        - if: a.flag == true
          then:
            - task: b
              inputs: {y: input.y}
      default:
        - task: c
  - task: d
    inputs: {y: input.y, z: input.z}
";

    fn placement(wf: &Workflow, on: &[(&str, u32)], me: u32) -> Placement {
        let owner: HashMap<NodeId, u32> = on.iter().map(|(n, w)| (node(wf, n), *w)).collect();
        Placement {
            local: owner.iter().filter(|(_, w)| **w == me).map(|(n, _)| *n).collect(),
            owner,
            me,
            workers: vec![(0, "w0".into(), None), (1, "w1".into(), None)],
        }
    }

    #[test]
    fn a_task_prewarms_the_pools_of_the_tasks_after_it_through_control_nodes() {
        let wf = load(BRANCHES);
        let (a, b, c, d) = (node(&wf, "a"), node(&wf, "b"), node(&wf, "c"), node(&wf, "d"));
        let sites: HashMap<u32, Site> = [(a, 0), (b, 1), (c, 2), (d, 3)]
            .into_iter()
            .map(|(n, p)| (n.index() as u32, site(p)))
            .collect();
        let after = successor_pools(&wf, &sites);
        let mut of_a = after[&(a.index() as u32)].clone();
        of_a.sort_unstable();
        assert_eq!(
            of_a,
            vec![1, 2],
            "both cases of the switch after `a`, not `d` beyond them"
        );
        assert_eq!(after[&(b.index() as u32)], vec![3]);
        assert!(!after.contains_key(&(d.index() as u32)), "nothing follows `d`");
        // A task with no site here is not warmed.
        let only_a_and_d: HashMap<u32, Site> = [(a, 0), (d, 3)]
            .into_iter()
            .map(|(n, p)| (n.index() as u32, site(p)))
            .collect();
        assert!(!successor_pools(&wf, &only_a_and_d).contains_key(&(a.index() as u32)));
    }

    #[test]
    fn each_worker_gets_the_inputs_its_tasks_and_every_condition_read() {
        let wf = load(BRANCHES);
        let p = placement(&wf, &[("a", 0), ("b", 1), ("c", 1), ("d", 1)], 0);
        let needs = input_needs(&wf, &p);
        let sorted = |w: &str| {
            let mut v: Vec<&String> = needs[w].iter().collect();
            v.sort();
            v.into_iter().cloned().collect::<Vec<_>>()
        };
        assert_eq!(sorted("w0"), vec!["x".to_owned()]);
        assert_eq!(sorted("w1"), vec!["y".to_owned(), "z".to_owned()]);
        let mut here: Vec<String> = read_here(&wf, &p).into_iter().collect();
        here.sort();
        assert_eq!(here, vec!["x".to_owned()]);
    }

    #[test]
    fn a_staged_input_counts_its_readers_here_but_not_in_foreach_bodies() {
        let wf = load(
            "name: staged
functions:
  a: {}
  b: {}
  body: {}
steps:
  - task: a
    inputs: {t: input.text, u: input.text}
  - task: b
    inputs: {t: input.text}
  - foreach:
      over: input.items
      do:
        - task: body
          inputs: {t: input.body}
",
        );
        let everything = placement(&wf, &[("a", 0), ("b", 0), ("body", 0)], 0);
        let readers = staged_readers(&wf, &everything);
        assert_eq!(readers.get("text"), Some(&2), "a task reading it twice counts once");
        assert_eq!(readers.get("body"), None, "a foreach body reads it any number of times");
    }

    #[test]
    fn outputs_read_on_other_workers_are_apart_by_the_tier_of_their_edge() {
        let wf = load(
            "name: tiers
functions:
  a: {outputs: {out: bytes}}
  b: {}
  c: {}
steps:
  - task: a
  - task: b
    inputs: {i: a.out}
  - task: c
    inputs: {i: a.out}
output:
  r: a.out
",
        );
        let mut plan = faasflow_planner::partition::partition(
            &wf,
            &faasflow_core::plan::ClusterView::uniform(1, 64),
            &faasflow_core::PlannerConfig::default(),
        )
        .unwrap();
        let edge = |to: &str| wf.graph.find_edge(node(&wf, "a"), node(&wf, to)).unwrap().index();
        plan.edge_tiers[edge("b")] = Tier::Peer;
        plan.edge_tiers[edge("c")] = Tier::Remote;
        let p = placement(&wf, &[("a", 0), ("b", 1), ("c", 1)], 0);
        let (peer, remote) = readers(&wf, &plan, &p);
        let a_out = (node(&wf, "a").index() as u32, "out".to_owned());
        assert_eq!(peer.get(&a_out), Some(&vec![1]));
        assert_eq!(remote.get(&a_out), Some(&vec![1]));
        // On one worker nothing is read elsewhere.
        let alone = placement(&wf, &[("a", 0), ("b", 0), ("c", 0)], 0);
        let (peer, remote) = readers(&wf, &plan, &alone);
        assert!(peer.is_empty() && remote.is_empty());
    }

    #[test]
    fn synthetic_params_carry_the_scaled_runtime_and_how_to_wait() {
        let wf = load("name: s\nfunctions:\n  a: {runtime: 2ms}\n  b: {}\nsteps:\n  - task: a\n  - task: b\n");
        let params = |name: &str, how: (f64, bool)| {
            let n = node(&wf, name);
            let task = wf.graph[n].task().expect("a task");
            let p = synthetic_params(task, n, how, &HashMap::new());
            (!p.is_empty()).then(|| serde_json::from_slice::<serde_json::Value>(&p).expect("JSON"))
        };
        let slept = params("a", (0.5, false)).expect("params");
        assert_eq!((slept["runtime_us"].as_u64(), slept.get("busy")), (Some(1000), None));
        let busy = params("a", (0.5, true)).expect("params");
        assert_eq!(
            (busy["runtime_us"].as_u64(), busy["busy"].as_bool()),
            (Some(1000), Some(true))
        );
        assert_eq!(
            params("b", (1.0, true)),
            None,
            "no runtime: the body's default, busy or not"
        );
    }
}
