//! The graph partitioner: FaaSFlow's Algorithm 1 (WorkerSP) and the round-robin baseline
//! (MasterSP).
//!
//! [`partition`] is a pure function of the workflow, the cluster view and the configuration: no
//! I/O, no clock, no randomness, no hash-map iteration. Every choice that could go two ways has
//! an explicit tie-break (smallest node, edge or worker index), so the same input always gives
//! the same [`Plan`].
//!
//! ## Weights
//! A task costs its `runtime_ms`, uses `scale` slots and brings a quota of
//! `O(v) = max(memory_mib − memory_use_mib − μ, 0)` MiB. Virtual nodes (switch, foreach, join)
//! cost nothing, use no slot and bring no quota. An edge carries `Edge::bytes`; it costs
//! `cfg.local` when both ends are in one group and `cfg.remote` otherwise. A `catch` step and
//! the edge to it cost the path nothing (they run only when their task fails for good); the
//! step's slots and quota still count.
//!
//! ## WorkerSP (Algorithm 1)
//! 1. Every node starts in a group of its own.
//! 2. The critical path is the longest path through the DAG (node costs plus edge costs; ties go
//!    to the smallest node index).
//! 3. Its edges whose ends are in different groups are tried, heaviest first (then by edge
//!    index). The first pair of groups that may merge is merged, and the loop goes back to 2.
//!    A merge must keep the group within the largest worker's slots, keep the bytes of its
//!    inner edges within its quota, never put a contention pair into one group, and leave a set
//!    of groups that best-fit decreasing can still pack onto the workers.
//! 4. When no edge of the critical path can merge, the groups are placed by best-fit
//!    decreasing, edges get their tiers, and the per-worker quota turns the in-memory edges
//!    that do not fit into planned spills ([`Tier::Remote`]).
//!
//! ## MasterSP
//! One group per node, tasks placed round-robin in topological order, every edge remote.

use std::collections::BTreeMap;

use petgraph::visit::EdgeRef;

use faasflow_core::dag::{Isolation, NodeId, Workflow};
use faasflow_core::plan::{ClusterView, CriticalPath, Group, Mode, Plan, PlanError, PlannerConfig, Tier, WorkerLoad};

/// Bytes in a MiB.
const MIB: f64 = 1_048_576.0;
/// "No node" / "no edge" in the index vectors.
const NONE: u32 = u32::MAX;

/// Partitions `wf` for `cluster`: groups its nodes, places the groups on workers and gives every
/// edge a data tier.
///
/// Checks, in this order: the cluster has a worker ([`PlanError::NoWorkers`]); the workflow's
/// slots fit the cluster ([`PlanError::Overcommit`]); every function fits the largest worker
/// ([`PlanError::FunctionTooLarge`]); in WorkerSP mode, the functions, one group each, can be
/// packed onto the workers ([`PlanError::Packing`]). With `cfg.allow_overcommit` only the first
/// check remains.
///
/// `Plan::overcommitted` is set whenever some worker is given more slots than it has. In
/// WorkerSP that happens only with `allow_overcommit`; MasterSP's round robin does not look at
/// the workers' slots, so its plan can be overcommitted even without it.
pub fn partition(wf: &Workflow, cluster: &ClusterView, cfg: &PlannerConfig) -> Result<Plan, PlanError> {
    if cluster.workers.is_empty() {
        return Err(PlanError::NoWorkers);
    }
    let model = Model::new(wf, cfg);
    check_capacity(wf, &model, cluster, cfg)?;
    let layout = match cfg.mode {
        Mode::WorkerSp | Mode::WorkerSpRemote => worker_sp(wf, &model, cluster, cfg)?,
        Mode::MasterSp => master_sp(&model, cluster),
    };
    Ok(assemble(wf, &model, cluster, cfg, layout))
}

/// The workflow reduced to the numbers the partitioner needs, in flat vectors indexed by node
/// or edge index.
#[derive(Debug)]
struct Model {
    /// Cost of each node, ms.
    cost: Vec<f64>,
    /// Slots of each node.
    slots: Vec<u32>,
    /// Quota `O(v)` of each node, bytes.
    quota: Vec<u64>,
    /// Source of each edge.
    src: Vec<u32>,
    /// Target of each edge.
    dst: Vec<u32>,
    /// Bytes of each edge.
    bytes: Vec<u64>,
    /// Cost of each edge between groups, ms.
    remote_ms: Vec<f64>,
    /// Nodes in topological order.
    topo: Vec<u32>,
    /// Position of each node in `topo`.
    topo_pos: Vec<u32>,
    /// Incoming edges of each node, by (source index, edge index).
    ins: Adjacency,
    /// `ins.items` as the critical-path search reads them, in the same order.
    in_edges: Vec<InEdge>,
    /// Outgoing edges of each node, by (target index, edge index).
    outs: Adjacency,
    /// Contention partners of each node, by index.
    rivals: Adjacency,
}

/// An incoming edge with what the critical-path search needs, so that its inner loop reads
/// memory in order.
#[derive(Debug, Clone, Copy)]
struct InEdge {
    src: u32,
    edge: u32,
    local_ms: f64,
    remote_ms: f64,
}

/// Per-node lists in one buffer (compressed sparse rows).
#[derive(Debug)]
struct Adjacency {
    start: Vec<u32>,
    items: Vec<u32>,
}

impl Adjacency {
    /// Builds the lists from (node, item) pairs; each list is sorted by (`key`, item).
    fn build(n: usize, mut pairs: Vec<(u32, u32, u32)>) -> Self {
        // (node, key, item)
        pairs.sort_unstable();
        pairs.dedup();
        let mut start = vec![0u32; n + 1];
        for &(v, _, _) in &pairs {
            start[v as usize + 1] += 1;
        }
        for i in 0..n {
            start[i + 1] += start[i];
        }
        let items = pairs.into_iter().map(|(_, _, item)| item).collect();
        Adjacency { start, items }
    }

    fn of(&self, v: u32) -> &[u32] {
        &self.items[self.range(v)]
    }

    fn range(&self, v: u32) -> std::ops::Range<usize> {
        self.start[v as usize] as usize..self.start[v as usize + 1] as usize
    }
}

impl Model {
    fn new(wf: &Workflow, cfg: &PlannerConfig) -> Self {
        let g = &wf.graph;
        let n = g.node_count();
        let mut cost = Vec::with_capacity(n);
        let mut slots = Vec::with_capacity(n);
        let mut quota = Vec::with_capacity(n);
        // A catch step runs only when its task fails for good: it adds nothing to the path an
        // invocation takes (its slots and quota still count, as it may run).
        let mut catches = vec![false; n];
        for e in g.edge_references() {
            if e.weight().on_failure {
                catches[e.target().index()] = true;
            }
        }
        for (v, node) in g.node_weights().enumerate() {
            match node.task() {
                Some(t) => {
                    let spare = t.spec.memory_mib as f64 - t.spec.memory_use_mib - cfg.margin_mib;
                    cost.push(if catches[v] { 0.0 } else { t.spec.runtime_ms });
                    slots.push(t.spec.scale);
                    // `as` saturates: negative (and NaN) spare memory gives 0.
                    quota.push((spare * MIB) as u64);
                }
                None => {
                    cost.push(0.0);
                    slots.push(0);
                    quota.push(0);
                }
            }
        }
        let m = g.edge_count();
        let (mut src, mut dst, mut bytes) = (Vec::with_capacity(m), Vec::with_capacity(m), Vec::with_capacity(m));
        for e in g.edge_indices() {
            let (s, d) = g.edge_endpoints(e).expect("edge index from the graph itself");
            src.push(s.index() as u32);
            dst.push(d.index() as u32);
            bytes.push(g[e].bytes);
        }
        let local_ms: Vec<f64> = bytes.iter().map(|&b| cfg.local.cost_ms(b)).collect();
        let remote_ms: Vec<f64> = bytes.iter().map(|&b| cfg.remote.cost_ms(b)).collect();

        let mut topo: Vec<u32> = wf.topo_order().iter().map(|v| v.index() as u32).collect();
        if topo.len() != n {
            // The compiler rejects cycles; should one get here anyway, index order keeps the
            // partitioner total (the plan is then merely poor, never a panic).
            topo = (0..n as u32).collect();
        }
        let mut topo_pos = vec![0u32; n];
        for (i, &v) in topo.iter().enumerate() {
            topo_pos[v as usize] = i as u32;
        }

        let ins = Adjacency::build(n, (0..m).map(|e| (dst[e], src[e], e as u32)).collect());
        let in_edges = ins
            .items
            .iter()
            .map(|&e| {
                // The edge to a catch step is taken only on failure: it costs the path nothing.
                let taken = !g[petgraph::graph::EdgeIndex::new(e as usize)].on_failure;
                InEdge {
                    src: src[e as usize],
                    edge: e,
                    local_ms: if taken { local_ms[e as usize] } else { 0.0 },
                    remote_ms: if taken { remote_ms[e as usize] } else { 0.0 },
                }
            })
            .collect();
        let outs = Adjacency::build(n, (0..m).map(|e| (src[e], dst[e], e as u32)).collect());
        let mut pairs = Vec::with_capacity(2 * wf.contention.len());
        for &(a, b) in &wf.contention {
            let (a, b) = (a.index() as u32, b.index() as u32);
            if a != b && (a as usize) < n && (b as usize) < n {
                pairs.push((a, b, b));
                pairs.push((b, a, a));
            }
        }
        let rivals = Adjacency::build(n, pairs);

        Model {
            cost,
            slots,
            quota,
            src,
            dst,
            bytes,
            remote_ms,
            topo,
            topo_pos,
            ins,
            in_edges,
            outs,
            rivals,
        }
    }

    fn node_count(&self) -> usize {
        self.cost.len()
    }

    fn edge_count(&self) -> usize {
        self.src.len()
    }
}

/// The checks that do not depend on the grouping.
fn check_capacity(wf: &Workflow, model: &Model, cluster: &ClusterView, cfg: &PlannerConfig) -> Result<(), PlanError> {
    if cfg.allow_overcommit {
        return Ok(());
    }
    let needed: u64 = model.slots.iter().map(|&s| u64::from(s)).sum();
    let available = cluster.total_slots();
    if needed > available {
        return Err(PlanError::Overcommit {
            workflow: wf.name.clone(),
            needed,
            available,
            workers: cluster.workers.len(),
        });
    }
    let max_slots = cluster.workers.iter().map(|w| w.slots).max().unwrap_or(0);
    if let Some(v) = (0..model.node_count()).find(|&v| model.slots[v] > max_slots) {
        return Err(PlanError::FunctionTooLarge {
            function: wf.graph[NodeId::new(v)].name.clone(),
            scale: model.slots[v],
            max_slots,
        });
    }
    Ok(())
}

/// A grouping and placement, before it becomes a [`Plan`].
#[derive(Debug)]
struct Layout {
    /// Group of each node; groups are numbered by their smallest node.
    node_group: Vec<u32>,
    /// Worker of each group.
    group_worker: Vec<u32>,
    /// Merges made.
    merges: u32,
    /// The critical path of the final grouping.
    critical: CriticalPath,
}

/// Algorithm 1: merge along the critical path until no merge is allowed, then place.
fn worker_sp(wf: &Workflow, model: &Model, cluster: &ClusterView, cfg: &PlannerConfig) -> Result<Layout, PlanError> {
    let mut groups = Groups::singletons(model);
    let mut packer = Packer::new(cluster);
    let packing_error = || PlanError::Packing {
        workflow: wf.name.clone(),
        available: cluster.total_slots(),
        workers: cluster.workers.len(),
    };
    let check_packing = !cfg.allow_overcommit;
    if check_packing && !packer.fits(&groups.sizes) {
        return Err(packing_error());
    }
    let max_slots = packer.max_cap;
    let mut finder = PathFinder::new(model.node_count());
    let mut candidates: Vec<u32> = Vec::new();
    let mut tried: Vec<(u32, u32)> = Vec::new();
    let mut merges = 0u32;
    loop {
        let of = &groups.of;
        finder.run(model, of);
        candidates.clear();
        candidates.extend(
            finder
                .edges
                .iter()
                .copied()
                .filter(|&e| of[model.src[e as usize] as usize] != of[model.dst[e as usize] as usize]),
        );
        candidates.sort_by(|&a, &b| {
            let (ca, cb) = (model.remote_ms[a as usize], model.remote_ms[b as usize]);
            cb.total_cmp(&ca).then(a.cmp(&b))
        });
        tried.clear();
        let mut merged = false;
        for &e in &candidates {
            let a = groups.of[model.src[e as usize] as usize];
            let b = groups.of[model.dst[e as usize] as usize];
            let pair = (a.min(b), a.max(b));
            if tried.contains(&pair) {
                continue;
            }
            tried.push(pair);
            let packer = if check_packing { Some(&mut packer) } else { None };
            if groups.try_merge(model, (a, b), max_slots, packer) {
                merged = true;
                break;
            }
        }
        if !merged {
            break;
        }
        merges += 1;
    }
    // The last search ran on the final grouping (no merge followed it).
    let critical = finder.critical_path();

    let (node_group, group_count) = groups.renumber();
    let mut group_slots = vec![0u64; group_count];
    for (&g, &s) in node_group.iter().zip(&model.slots) {
        group_slots[g as usize] += u64::from(s);
    }
    let mut order: Vec<u32> = (0..group_count as u32)
        .filter(|&g| group_slots[g as usize] > 0)
        .collect();
    // Ties in slots go to the group with the smallest node, which is the smaller group id.
    order.sort_by(|&a, &b| group_slots[b as usize].cmp(&group_slots[a as usize]).then(a.cmp(&b)));
    let mut group_worker = vec![NONE; group_count];
    let mut remaining: Vec<i64> = cluster.workers.iter().map(|w| i64::from(w.slots)).collect();
    for g in order {
        let s = group_slots[g as usize] as i64;
        let best_fit = (0..remaining.len())
            .filter(|&w| remaining[w] >= s)
            .min_by_key(|&w| (remaining[w], w));
        let w = match best_fit {
            Some(w) => w,
            None if cfg.allow_overcommit => (0..remaining.len())
                .max_by_key(|&w| (remaining[w], std::cmp::Reverse(w)))
                .unwrap_or(0),
            // The merge loop only ever accepted packable groupings.
            None => return Err(packing_error()),
        };
        remaining[w] -= s;
        group_worker[g as usize] = w as u32;
    }
    place_zero_slot_groups(model, &node_group, &mut group_worker);
    Ok(Layout {
        node_group,
        group_worker,
        merges,
        critical,
    })
}

/// MasterSP: one group per node, tasks round-robin in topological order.
fn master_sp(model: &Model, cluster: &ClusterView) -> Layout {
    let n = model.node_count();
    let node_group: Vec<u32> = (0..n as u32).collect();
    let mut group_worker = vec![NONE; n];
    let workers = cluster.workers.len() as u32;
    let mut next = 0u32;
    for &v in &model.topo {
        if model.slots[v as usize] > 0 {
            group_worker[v as usize] = next;
            next = (next + 1) % workers;
        }
    }
    place_zero_slot_groups(model, &node_group, &mut group_worker);
    let mut finder = PathFinder::new(n);
    // One group per node: every edge costs remote.
    finder.run(model, &node_group);
    Layout {
        node_group,
        group_worker,
        merges: 0,
        critical: finder.critical_path(),
    }
}

/// Places the groups that are still unplaced (those that use no slot: only virtual nodes) on the
/// worker of their first predecessor in topological order, else of their first successor, else
/// on worker 0.
///
/// The groups are visited in the topological order of their first node, and only already
/// placed neighbours count, so a chain of virtual groups follows its placed ancestor.
fn place_zero_slot_groups(model: &Model, node_group: &[u32], group_worker: &mut [u32]) {
    let mut first_pos = vec![NONE; group_worker.len()];
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); group_worker.len()];
    for &v in &model.topo {
        let g = node_group[v as usize] as usize;
        if group_worker[g] == NONE {
            if first_pos[g] == NONE {
                first_pos[g] = model.topo_pos[v as usize];
            }
            members[g].push(v);
        }
    }
    let mut order: Vec<u32> = (0..group_worker.len() as u32)
        .filter(|&g| group_worker[g as usize] == NONE)
        .collect();
    order.sort_by_key(|&g| first_pos[g as usize]);
    for g in order {
        // The placed neighbours with the smallest topological position: (position, worker).
        let mut pred: Option<(u32, u32)> = None;
        let mut succ: Option<(u32, u32)> = None;
        let consider = |best: &mut Option<(u32, u32)>, u: u32| {
            let h = node_group[u as usize];
            if h != g && group_worker[h as usize] != NONE {
                let cand = (model.topo_pos[u as usize], group_worker[h as usize]);
                if best.is_none_or(|b| cand < b) {
                    *best = Some(cand);
                }
            }
        };
        for &v in &members[g as usize] {
            for &e in model.ins.of(v) {
                consider(&mut pred, model.src[e as usize]);
            }
            for &e in model.outs.of(v) {
                consider(&mut succ, model.dst[e as usize]);
            }
        }
        group_worker[g as usize] = pred.or(succ).map_or(0, |(_, w)| w);
    }
}

/// Turns a layout into the plan: group totals, tiers, per-worker quota and spills.
fn assemble(wf: &Workflow, model: &Model, cluster: &ClusterView, cfg: &PlannerConfig, layout: Layout) -> Plan {
    let Layout {
        node_group,
        group_worker,
        merges,
        critical,
    } = layout;
    let mut groups: Vec<Group> = group_worker
        .iter()
        .enumerate()
        .map(|(id, &worker)| Group {
            id: id as u32,
            worker,
            nodes: Vec::new(),
            slots: 0,
            quota_bytes: 0,
            local_bytes: 0,
        })
        .collect();
    let mut workers: Vec<WorkerLoad> = cluster
        .workers
        .iter()
        .map(|_| WorkerLoad {
            slots_used: 0,
            quota_bytes: 0,
            memory_bytes: 0,
        })
        .collect();
    for v in 0..model.node_count() {
        let group = &mut groups[node_group[v] as usize];
        group.nodes.push(NodeId::new(v));
        group.slots = group.slots.saturating_add(model.slots[v]);
        group.quota_bytes = group.quota_bytes.saturating_add(model.quota[v]);
        let load = &mut workers[group.worker as usize];
        load.slots_used = load.slots_used.saturating_add(model.slots[v]);
        load.quota_bytes = load.quota_bytes.saturating_add(model.quota[v]);
    }
    let worker_of = |v: u32| group_worker[node_group[v as usize] as usize];
    let same_group = |e: usize| node_group[model.src[e] as usize] == node_group[model.dst[e] as usize];
    for e in 0..model.edge_count() {
        if same_group(e) {
            let group = &mut groups[node_group[model.src[e] as usize] as usize];
            group.local_bytes = group.local_bytes.saturating_add(model.bytes[e]);
        }
    }

    let edge_tiers = match cfg.mode {
        Mode::MasterSp | Mode::WorkerSpRemote => vec![Tier::Remote; model.edge_count()],
        Mode::WorkerSp => {
            let mut tiers: Vec<Tier> = (0..model.edge_count())
                .map(|e| {
                    let (u, v) = (model.src[e], model.dst[e]);
                    if same_group(e) {
                        if share_instance(wf, u, v) {
                            Tier::InProcess
                        } else {
                            Tier::SharedMemory
                        }
                    } else if worker_of(u) == worker_of(v) {
                        Tier::SharedMemory
                    } else {
                        Tier::Peer
                    }
                })
                .collect();
            // Charge in-memory edges to their target's worker: first the edges inside groups,
            // then the others, each in (topological position of the source, edge index) order.
            let mut order: Vec<(bool, u32, u32)> = (0..model.edge_count())
                .filter(|&e| tiers[e].is_in_memory() && model.bytes[e] > 0)
                .map(|e| (!same_group(e), model.topo_pos[model.src[e] as usize], e as u32))
                .collect();
            order.sort_unstable();
            for (_, _, e) in order {
                let e = e as usize;
                let load = &mut workers[worker_of(model.dst[e]) as usize];
                match load.memory_bytes.checked_add(model.bytes[e]) {
                    Some(total) if total <= load.quota_bytes => load.memory_bytes = total,
                    _ => tiers[e] = Tier::Remote,
                }
            }
            tiers
        }
    };
    let overcommitted = workers
        .iter()
        .zip(&cluster.workers)
        .any(|(load, w)| load.slots_used > w.slots);
    Plan {
        workflow: wf.name.clone(),
        version: cfg.version,
        mode: cfg.mode,
        groups,
        node_group,
        edge_tiers,
        workers,
        critical_path: critical,
        merges,
        overcommitted,
    }
}

/// Whether the two ends of an edge inside one group may share one instance: both are tasks that
/// run as threads of the same pack, or one of them is a virtual node (which runs nowhere).
fn share_instance(wf: &Workflow, u: u32, v: u32) -> bool {
    let (a, b) = (&wf.graph[NodeId::new(u as usize)], &wf.graph[NodeId::new(v as usize)]);
    match (a.task(), b.task()) {
        (Some(a), Some(b)) => {
            a.spec.isolation == Isolation::Thread
                && b.spec.isolation == Isolation::Thread
                && a.spec.pack == b.spec.pack
                && a.spec.image == b.spec.image
        }
        _ => true,
    }
}

/// The groups during Algorithm 1, with their totals cached so a merge costs time in the size
/// of the smaller group, not of the graph.
#[derive(Debug)]
struct Groups {
    /// Group of each node (a group is named by one of its nodes).
    of: Vec<u32>,
    /// Nodes of each group (empty for names no longer in use).
    members: Vec<Vec<u32>>,
    /// Slots of each group.
    slots: Vec<u64>,
    /// Quota of each group, bytes.
    quota: Vec<u64>,
    /// Bytes of the edges inside each group.
    inner: Vec<u64>,
    /// How many groups have each non-zero slot count (what packing depends on).
    sizes: BTreeMap<u64, u32>,
}

impl Groups {
    fn singletons(model: &Model) -> Self {
        let n = model.node_count();
        let mut sizes = BTreeMap::new();
        for &s in &model.slots {
            add_size(&mut sizes, u64::from(s));
        }
        Groups {
            of: (0..n as u32).collect(),
            members: (0..n as u32).map(|v| vec![v]).collect(),
            slots: model.slots.iter().map(|&s| u64::from(s)).collect(),
            quota: model.quota.clone(),
            inner: vec![0; n],
            sizes,
        }
    }

    /// Merges groups `a` and `b` if (a) the result fits the largest worker, (b) its inner bytes
    /// fit its quota, (c) it holds no contention pair, and (d) with a packer, all groups can
    /// still be packed. Returns whether it merged.
    fn try_merge(&mut self, model: &Model, (a, b): (u32, u32), max_slots: u64, packer: Option<&mut Packer>) -> bool {
        let (au, bu) = (a as usize, b as usize);
        let slots = self.slots[au] + self.slots[bu];
        if slots > max_slots {
            return false;
        }
        let (small, big) = if self.members[au].len() <= self.members[bu].len() {
            (au, bu)
        } else {
            (bu, au)
        };
        let big_id = big as u32;
        let rival_inside = self.members[small]
            .iter()
            .any(|&v| model.rivals.of(v).iter().any(|&r| self.of[r as usize] == big_id));
        if rival_inside {
            return false;
        }
        let mut cross = 0u64;
        for &v in &self.members[small] {
            for &e in model.outs.of(v) {
                if self.of[model.dst[e as usize] as usize] == big_id {
                    cross = cross.saturating_add(model.bytes[e as usize]);
                }
            }
            for &e in model.ins.of(v) {
                if self.of[model.src[e as usize] as usize] == big_id {
                    cross = cross.saturating_add(model.bytes[e as usize]);
                }
            }
        }
        let inner = self.inner[au].saturating_add(self.inner[bu]).saturating_add(cross);
        if inner > self.quota[au].saturating_add(self.quota[bu]) {
            return false;
        }
        let (sa, sb) = (self.slots[au], self.slots[bu]);
        remove_size(&mut self.sizes, sa);
        remove_size(&mut self.sizes, sb);
        add_size(&mut self.sizes, slots);
        if let Some(packer) = packer
            && !packer.fits(&self.sizes)
        {
            remove_size(&mut self.sizes, slots);
            add_size(&mut self.sizes, sa);
            add_size(&mut self.sizes, sb);
            return false;
        }
        let moved = std::mem::take(&mut self.members[small]);
        for &v in &moved {
            self.of[v as usize] = big_id;
        }
        self.members[big].extend(moved);
        self.slots[big] = slots;
        self.quota[big] = self.quota[au].saturating_add(self.quota[bu]);
        self.inner[big] = inner;
        self.slots[small] = 0;
        self.quota[small] = 0;
        self.inner[small] = 0;
        true
    }

    /// The group of each node, with groups numbered by their smallest node; and the number of
    /// groups.
    fn renumber(&self) -> (Vec<u32>, usize) {
        let mut id = vec![NONE; self.of.len()];
        let mut next = 0u32;
        let node_group = self
            .of
            .iter()
            .map(|&g| {
                if id[g as usize] == NONE {
                    id[g as usize] = next;
                    next += 1;
                }
                id[g as usize]
            })
            .collect();
        (node_group, next as usize)
    }
}

/// Removes `n` workers with `room` free slots from a free-slot multiset.
fn take(free: &mut BTreeMap<u64, u64>, room: u64, n: u64) {
    if n == 0 {
        return;
    }
    if let Some(count) = free.get_mut(&room) {
        *count -= n;
        if *count == 0 {
            free.remove(&room);
        }
    }
}

/// Adds `n` workers with `room` free slots to a free-slot multiset.
fn put(free: &mut BTreeMap<u64, u64>, room: u64, n: u64) {
    if n > 0 {
        *free.entry(room).or_insert(0) += n;
    }
}

fn add_size(sizes: &mut BTreeMap<u64, u32>, s: u64) {
    if s > 0 {
        *sizes.entry(s).or_insert(0) += 1;
    }
}

fn remove_size(sizes: &mut BTreeMap<u64, u32>, s: u64) {
    if s > 0
        && let Some(count) = sizes.get_mut(&s)
    {
        *count -= 1;
        if *count == 0 {
            sizes.remove(&s);
        }
    }
}

/// Decides whether groups of given slot counts can be packed onto the workers by best-fit
/// decreasing.
///
/// Whether best-fit decreasing succeeds depends only on the multiset of group sizes and the
/// multiset of workers' free slots (which of two workers with equal room takes a group changes
/// nothing that follows), so both are kept as counts and equal groups are placed in bulk.
#[derive(Debug)]
struct Packer {
    /// Slots of each worker.
    caps: Vec<u64>,
    /// Slots of the largest worker.
    max_cap: u64,
    /// Slots of all workers.
    total_cap: u64,
    /// Free slots → number of workers with that many, before anything is packed.
    empty: BTreeMap<u64, u64>,
    /// Scratch: the same during packing.
    free: BTreeMap<u64, u64>,
}

impl Packer {
    fn new(cluster: &ClusterView) -> Self {
        let caps: Vec<u64> = cluster.workers.iter().map(|w| u64::from(w.slots)).collect();
        let mut empty = BTreeMap::new();
        for &c in &caps {
            *empty.entry(c).or_insert(0) += 1;
        }
        Packer {
            max_cap: caps.iter().copied().max().unwrap_or(0),
            total_cap: caps.iter().sum(),
            caps,
            free: empty.clone(),
            empty,
        }
    }

    /// Whether best-fit decreasing packs groups of these sizes (size → count).
    fn fits(&mut self, sizes: &BTreeMap<u64, u32>) -> bool {
        let need: u64 = sizes.iter().map(|(&s, &c)| s.saturating_mul(u64::from(c))).sum();
        if need > self.total_cap {
            return false;
        }
        sizes.keys().all(|&s| self.always_fits(s, need)) || self.best_fit_decreasing(sizes)
    }

    /// Packs the sizes, largest first, each onto the worker with the least room that still
    /// fits it.
    ///
    /// For `k` groups of size `s`: the worker with the least room `r ≥ s` takes groups until
    /// its room drops below `s` (nothing lies between `s` and `r`), that is `⌊r/s⌋` of them;
    /// then the next worker with room `r`. So every worker with room `r` is filled at once.
    fn best_fit_decreasing(&mut self, sizes: &BTreeMap<u64, u32>) -> bool {
        self.free.clone_from(&self.empty);
        for (&s, &count) in sizes.iter().rev() {
            let mut left = u64::from(count);
            while left > 0 {
                let Some((&room, &workers)) = self.free.range(s..).next() else {
                    return false;
                };
                let per_worker = room / s;
                let full = workers.min(left / per_worker);
                take(&mut self.free, room, full);
                put(&mut self.free, room - per_worker * s, full);
                left -= full * per_worker;
                if left > 0 && full < workers {
                    // One more worker takes the rest and still has room for a group of `s`.
                    take(&mut self.free, room, 1);
                    put(&mut self.free, room - left * s, 1);
                    left = 0;
                }
            }
        }
        true
    }

    /// A sufficient condition for any any-fit packing (best-fit decreasing among them) to place
    /// an item of `s` slots when `need` slots are packed in all. If it does not fit when it
    /// comes, every worker `j` with `cap_j ≥ s` holds at least `cap_j − s + 1` slots of the
    /// other items, which hold only `need − s`.
    fn always_fits(&self, s: u64, need: u64) -> bool {
        let floor: u64 = self.caps.iter().filter(|&&c| c >= s).map(|&c| c - s + 1).sum();
        need - s < floor
    }
}

/// The longest path through the DAG under a given edge cost, with reusable buffers.
#[derive(Debug)]
struct PathFinder {
    /// Cost of the longest path ending at each node (its own cost included).
    dist: Vec<f64>,
    /// The edge into each node on that path, or `NONE` when the path starts there.
    pred: Vec<u32>,
    /// The edges of the last path found, first to last.
    edges: Vec<u32>,
    /// The nodes of the last path found, first to last.
    nodes: Vec<u32>,
    /// The last node of the last path found, or `NONE` for an empty graph.
    end: u32,
}

impl PathFinder {
    fn new(n: usize) -> Self {
        PathFinder {
            dist: vec![0.0; n],
            pred: vec![NONE; n],
            edges: Vec::new(),
            nodes: Vec::new(),
            end: NONE,
        }
    }

    /// Finds the critical path. Among equally long paths into a node, the one through the
    /// smallest predecessor index (then edge index) wins; among equally long paths overall, the
    /// one ending at the smallest node index.
    ///
    /// `group` is the group of each node: an edge costs local inside a group, remote between.
    fn run(&mut self, model: &Model, group: &[u32]) {
        for &v in &model.topo {
            let mut best = 0.0f64;
            let mut best_edge = NONE;
            let own = group[v as usize];
            for ie in &model.in_edges[model.ins.range(v)] {
                let cost = if group[ie.src as usize] == own {
                    ie.local_ms
                } else {
                    ie.remote_ms
                };
                let c = self.dist[ie.src as usize] + cost;
                if best_edge == NONE || c.total_cmp(&best).is_gt() {
                    best = c;
                    best_edge = ie.edge;
                }
            }
            if best_edge != NONE && best.total_cmp(&0.0).is_lt() {
                // A path that starts here is longer than any path from before.
                best = 0.0;
                best_edge = NONE;
            }
            self.dist[v as usize] = model.cost[v as usize] + best;
            self.pred[v as usize] = best_edge;
        }
        self.end = NONE;
        for v in 0..self.dist.len() {
            if self.end == NONE || self.dist[v].total_cmp(&self.dist[self.end as usize]).is_gt() {
                self.end = v as u32;
            }
        }
        self.edges.clear();
        self.nodes.clear();
        let mut v = self.end;
        while v != NONE {
            self.nodes.push(v);
            let e = self.pred[v as usize];
            if e == NONE {
                break;
            }
            self.edges.push(e);
            v = model.src[e as usize];
        }
        self.edges.reverse();
        self.nodes.reverse();
    }

    /// The last path found, as nodes first to last, and its cost.
    fn critical_path(&self) -> CriticalPath {
        if self.end == NONE {
            return CriticalPath {
                nodes: Vec::new(),
                cost_ms: 0.0,
            };
        }
        let nodes = self.nodes.iter().map(|&v| NodeId::new(v as usize)).collect();
        CriticalPath {
            nodes,
            cost_ms: self.dist[self.end as usize],
        }
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};

    use super::*;
    use crate::error::Pos;
    use faasflow_core::dag::{Edge, FunctionSpec, JoinKind, Node, NodeKind, Retry, SourceFormat, Task};

    const MB: u64 = 1_000_000;

    /// A small workflow written as `name:runtime_ms:scale` tasks, `name` joins and
    /// `a>b:bytes` edges.
    struct Wf(Workflow);

    impl Wf {
        fn new() -> Self {
            Wf(Workflow::new("wf", SourceFormat::Native))
        }

        fn task(mut self, name: &str, runtime_ms: f64, scale: u32) -> Self {
            self.0.graph.add_node(task_node(name, runtime_ms, scale, 256));
            self
        }

        /// A task with `memory_mib` (of which 64 MiB are used; margin 16 → quota memory − 80).
        fn task_mem(mut self, name: &str, runtime_ms: f64, memory_mib: u64) -> Self {
            self.0.graph.add_node(task_node(name, runtime_ms, 1, memory_mib));
            self
        }

        fn join(mut self, name: &str) -> Self {
            self.0.graph.add_node(Node {
                name: name.to_owned(),
                pos: Pos::UNKNOWN,
                kind: NodeKind::Join(JoinKind::Parallel),
                scope: None,
            });
            self
        }

        fn edge(mut self, from: &str, to: &str, bytes: u64) -> Self {
            let (a, b) = (self.id(from), self.id(to));
            self.0.graph.add_edge(
                a,
                b,
                Edge {
                    control: true,
                    bytes,
                    ..Edge::default()
                },
            );
            self
        }

        fn chain(mut self, names: &[&str], bytes: u64) -> Self {
            for w in names.windows(2) {
                self = self.edge(w[0], w[1], bytes);
            }
            self
        }

        fn contention(mut self, a: &str, b: &str) -> Self {
            let pair = (self.id(a), self.id(b));
            self.0.contention.push(pair);
            self
        }

        fn spec(mut self, name: &str, f: impl FnOnce(&mut FunctionSpec)) -> Self {
            let id = self.id(name);
            if let NodeKind::Task(t) = &mut self.0.graph[id].kind {
                f(&mut t.spec);
            }
            self
        }

        fn id(&self, name: &str) -> NodeId {
            self.0.node_by_name(name).expect("node exists")
        }
    }

    fn task_node(name: &str, runtime_ms: f64, scale: u32, memory_mib: u64) -> Node {
        Node {
            name: name.to_owned(),
            pos: Pos::UNKNOWN,
            kind: NodeKind::Task(Task {
                function: name.to_owned(),
                spec: FunctionSpec {
                    pack: None,
                    image: None,
                    memory_mib,
                    cpu_millis: 1000,
                    timeout_ms: 60_000,
                    retry: Retry::default(),
                    isolation: Isolation::Thread,
                    network: false,
                    idempotent: false,
                    python: None,
                    scale,
                    runtime_ms,
                    memory_use_mib: 64.0,
                    outputs: Vec::new(),
                },
                inputs: Vec::new(),
            }),
            scope: None,
        }
    }

    fn workers(slots: &[u32]) -> ClusterView {
        let mut c = ClusterView::uniform(slots.len(), 0);
        for (w, &s) in c.workers.iter_mut().zip(slots) {
            w.slots = s;
        }
        c
    }

    fn master() -> PlannerConfig {
        PlannerConfig {
            mode: Mode::MasterSp,
            ..PlannerConfig::default()
        }
    }

    fn overcommit() -> PlannerConfig {
        PlannerConfig {
            allow_overcommit: true,
            ..PlannerConfig::default()
        }
    }

    /// The plan as text: groups, edges with tiers, worker loads, critical path.
    fn render(wf: &Wf, plan: &Plan) -> String {
        let g = &wf.0.graph;
        let mut out = String::new();
        let mib = |b: u64| b as f64 / MIB;
        for group in &plan.groups {
            let names: Vec<&str> = group.nodes.iter().map(|&v| g[v].name.as_str()).collect();
            out += &format!(
                "g{} @w{} slots {} quota {}MiB local {}MiB: {}\n",
                group.id,
                group.worker,
                group.slots,
                mib(group.quota_bytes),
                mib(group.local_bytes),
                names.join(" ")
            );
        }
        for e in g.edge_indices() {
            let (a, b) = g.edge_endpoints(e).unwrap();
            out += &format!("{}>{} {}\n", g[a].name, g[b].name, plan.tier(e).as_str());
        }
        for (i, w) in plan.workers.iter().enumerate() {
            out += &format!(
                "w{i}: slots {} quota {}MiB memory {}MiB\n",
                w.slots_used,
                mib(w.quota_bytes),
                mib(w.memory_bytes)
            );
        }
        let path: Vec<&str> = plan.critical_path.nodes.iter().map(|&v| g[v].name.as_str()).collect();
        out += &format!(
            "critical {} ({:.2} ms), merges {}{}\n",
            path.join(" "),
            plan.critical_path.cost_ms,
            plan.merges,
            if plan.overcommitted { ", overcommitted" } else { "" }
        );
        out
    }

    fn check(wf: &Wf, cluster: &ClusterView, cfg: &PlannerConfig, expect: Expect) {
        let plan = partition(&wf.0, cluster, cfg).expect("a plan");
        expect.assert_eq(&render(wf, &plan));
    }

    #[test]
    fn a_catch_step_is_off_the_critical_path() {
        let mut wf = Wf::new()
            .task("a", 10.0, 1)
            .task("fallback", 1000.0, 1)
            .task("b", 10.0, 1)
            .edge("a", "b", 0)
            .edge("fallback", "b", 0);
        let (a, fallback) = (wf.id("a"), wf.id("fallback"));
        wf.0.graph.add_edge(
            a,
            fallback,
            Edge {
                control: true,
                on_failure: true,
                ..Edge::default()
            },
        );
        let plan = partition(&wf.0, &workers(&[8]), &PlannerConfig::default()).expect("a plan");
        let g = &wf.0.graph;
        let path: Vec<&str> = plan.critical_path.nodes.iter().map(|&v| g[v].name.as_str()).collect();
        assert_eq!(path, ["a", "b"]);
        assert!(plan.critical_path.cost_ms < 100.0, "{}", plan.critical_path.cost_ms);
    }

    #[test]
    fn chain_with_room_becomes_one_in_process_group() {
        let wf = Wf::new()
            .task("a", 10.0, 1)
            .task("b", 20.0, 1)
            .task("c", 30.0, 1)
            .chain(&["a", "b", "c"], 10 * MB);
        check(
            &wf,
            &ClusterView::uniform(2, 4),
            &PlannerConfig::default(),
            expect![[r#"
            g0 @w0 slots 3 quota 528MiB local 19.073486328125MiB: a b c
            a>b in-process
            b>c in-process
            w0: slots 3 quota 528MiB memory 19.073486328125MiB
            w1: slots 0 quota 0MiB memory 0MiB
            critical a b c (64.02 ms), merges 2
        "#]],
        );
    }

    /// Four 2-slot tasks in a chain whose middle edge is the heaviest.
    fn heavy_middle_chain() -> Wf {
        Wf::new()
            .task("a", 10.0, 2)
            .task("b", 10.0, 2)
            .task("c", 10.0, 2)
            .task("d", 10.0, 2)
            .edge("a", "b", MB)
            .edge("b", "c", 5 * MB)
            .edge("c", "d", MB)
    }

    #[test]
    fn worker_slots_stop_merges() {
        let wf = heavy_middle_chain();
        check(
            &wf,
            &ClusterView::uniform(2, 4),
            &PlannerConfig::default(),
            expect![[r#"
            g0 @w1 slots 2 quota 176MiB local 0MiB: a
            g1 @w0 slots 4 quota 352MiB local 4.76837158203125MiB: b c
            g2 @w1 slots 2 quota 176MiB local 0MiB: d
            a>b peer
            b>c in-process
            c>d peer
            w0: slots 4 quota 352MiB memory 5.7220458984375MiB
            w1: slots 4 quota 352MiB memory 0.95367431640625MiB
            critical a b c d (63.01 ms), merges 1
        "#]],
        );
    }

    #[test]
    fn remote_only_places_as_workersp_and_sends_every_edge_remote() {
        let wf = heavy_middle_chain();
        let cluster = ClusterView::uniform(2, 4);
        let remote = PlannerConfig {
            mode: Mode::WorkerSpRemote,
            ..PlannerConfig::default()
        };
        let w = partition(&wf.0, &cluster, &PlannerConfig::default()).expect("a plan");
        let r = partition(&wf.0, &cluster, &remote).expect("a plan");
        assert_eq!(r.mode, Mode::WorkerSpRemote);
        assert_eq!(r.node_group, w.node_group, "the same groups as WorkerSP");
        let workers = |p: &Plan| p.groups.iter().map(|g| g.worker).collect::<Vec<_>>();
        assert_eq!(workers(&r), workers(&w), "on the same workers as WorkerSP");
        assert!(w.edge_tiers.contains(&Tier::InProcess), "{:?}", w.edge_tiers);
        assert_eq!(r.edge_tiers, vec![Tier::Remote; 3]);
        assert!(r.workers.iter().all(|l| l.memory_bytes == 0), "{:?}", r.workers);
    }

    #[test]
    fn contention_pair_is_never_grouped() {
        let wf = Wf::new()
            .task("a", 10.0, 1)
            .task("b", 10.0, 1)
            .task("c", 10.0, 1)
            .chain(&["a", "b", "c"], MB)
            .contention("a", "b")
            .contention("a", "c");
        check(
            &wf,
            &ClusterView::uniform(1, 8),
            &PlannerConfig::default(),
            expect![[r#"
            g0 @w0 slots 1 quota 176MiB local 0MiB: a
            g1 @w0 slots 2 quota 352MiB local 0.95367431640625MiB: b c
            a>b shared-memory
            b>c in-process
            w0: slots 3 quota 528MiB memory 1.9073486328125MiB
            critical a b c (41.21 ms), merges 1
        "#]],
        );
    }

    #[test]
    fn quota_stops_merges_and_spills_what_does_not_fit() {
        // Quota 20 MiB per task; b>c (35 MiB) fits the pair's 40 MiB, adding a>b (30 MiB)
        // would need 65 MiB of 60. On one worker the quota is 60 MiB: b>c is charged first,
        // then a>b does not fit and is spilled.
        let wf = Wf::new()
            .task_mem("a", 10.0, 100)
            .task_mem("b", 10.0, 100)
            .task_mem("c", 10.0, 100)
            .edge("a", "b", 30 << 20)
            .edge("b", "c", 35 << 20);
        check(
            &wf,
            &ClusterView::uniform(1, 8),
            &PlannerConfig::default(),
            expect![[r#"
            g0 @w0 slots 1 quota 20MiB local 0MiB: a
            g1 @w0 slots 2 quota 40MiB local 35MiB: b c
            a>b remote
            b>c in-process
            w0: slots 3 quota 60MiB memory 35MiB
            critical a b c (352.92 ms), merges 1
        "#]],
        );
    }

    #[test]
    fn zero_byte_edges_merge_without_quota() {
        // memory 64 MiB: nothing spare, quota 0; edges carry no bytes.
        let wf = Wf::new()
            .task_mem("a", 10.0, 64)
            .task_mem("b", 10.0, 64)
            .edge("a", "b", 0);
        check(
            &wf,
            &ClusterView::uniform(1, 8),
            &PlannerConfig::default(),
            expect![[r#"
            g0 @w0 slots 2 quota 0MiB local 0MiB: a b
            a>b in-process
            w0: slots 2 quota 0MiB memory 0MiB
            critical a b (20.01 ms), merges 1
        "#]],
        );
    }

    #[test]
    fn isolation_and_packs_decide_in_process_or_shared_memory() {
        let wf = Wf::new()
            .task("a", 10.0, 1)
            .task("b", 10.0, 1)
            .task("c", 10.0, 1)
            .task("d", 10.0, 1)
            .join("j")
            .chain(&["a", "b", "c", "d", "j"], MB)
            .spec("b", |s| s.pack = Some("p1".into()))
            .spec("c", |s| s.pack = Some("p1".into()))
            .spec("d", |s| {
                s.pack = Some("p1".into());
                s.isolation = Isolation::Process;
            });
        check(
            &wf,
            &ClusterView::uniform(1, 8),
            &PlannerConfig::default(),
            expect![[r#"
            g0 @w0 slots 4 quota 704MiB local 3.814697265625MiB: a b c d j
            a>b shared-memory
            b>c in-process
            c>d shared-memory
            d>j in-process
            w0: slots 4 quota 704MiB memory 3.814697265625MiB
            critical a b c d j (40.84 ms), merges 4
        "#]],
        );
    }

    #[test]
    fn virtual_nodes_follow_their_first_placed_neighbour() {
        // x and y have no spare memory (quota 0), so no join can take in their 1 MB edges;
        // 0-byte edges could merge, but the critical path (src y end) offers none. The joins
        // stay alone and use no slot: `start` and `src` have no predecessor and follow their
        // first successor (x, y); `end` follows x, its first predecessor in topological order.
        let wf = Wf::new()
            .join("start")
            .task_mem("x", 10.0, 64)
            .task_mem("y", 10.0, 64)
            .join("end")
            .join("src")
            .edge("start", "x", 0)
            .edge("start", "y", 0)
            .edge("x", "end", MB)
            .edge("y", "end", MB)
            .edge("src", "y", MB)
            .spec("x", |s| s.scale = 3)
            .spec("y", |s| s.scale = 3);
        check(
            &wf,
            &ClusterView::uniform(2, 3),
            &PlannerConfig::default(),
            expect![[r#"
            g0 @w0 slots 0 quota 0MiB local 0MiB: start
            g1 @w0 slots 3 quota 0MiB local 0MiB: x
            g2 @w1 slots 3 quota 0MiB local 0MiB: y
            g3 @w0 slots 0 quota 0MiB local 0MiB: end
            g4 @w1 slots 0 quota 0MiB local 0MiB: src
            start>x shared-memory
            start>y peer
            x>end remote
            y>end remote
            src>y remote
            w0: slots 3 quota 0MiB memory 0MiB
            w1: slots 3 quota 0MiB memory 0MiB
            critical src y end (32.00 ms), merges 0
        "#]],
        );
    }

    #[test]
    fn master_sp_is_round_robin_and_all_remote() {
        let wf = Wf::new()
            .task("a", 10.0, 1)
            .join("j")
            .task("b", 10.0, 1)
            .task("c", 10.0, 1)
            .task("d", 10.0, 1)
            .chain(&["a", "j", "b", "c", "d"], MB);
        check(
            &wf,
            &ClusterView::uniform(3, 2),
            &master(),
            expect![[r#"
            g0 @w0 slots 1 quota 176MiB local 0MiB: a
            g1 @w0 slots 0 quota 0MiB local 0MiB: j
            g2 @w1 slots 1 quota 176MiB local 0MiB: b
            g3 @w2 slots 1 quota 176MiB local 0MiB: c
            g4 @w0 slots 1 quota 176MiB local 0MiB: d
            a>j remote
            j>b remote
            b>c remote
            c>d remote
            w0: slots 2 quota 352MiB memory 0MiB
            w1: slots 1 quota 176MiB memory 0MiB
            w2: slots 1 quota 176MiB memory 0MiB
            critical a j b c d (84.00 ms), merges 0
        "#]],
        );
    }

    #[test]
    fn errors_come_in_order() {
        let wf = Wf::new().task("a", 1.0, 2).task("b", 1.0, 2).task("c", 1.0, 2);
        let cfg = PlannerConfig::default();
        assert_eq!(partition(&wf.0, &workers(&[]), &cfg), Err(PlanError::NoWorkers));
        assert_eq!(
            partition(&wf.0, &workers(&[]), &overcommit()),
            Err(PlanError::NoWorkers)
        );
        assert_eq!(
            partition(&wf.0, &workers(&[4, 1]), &cfg),
            Err(PlanError::Overcommit {
                workflow: "wf".into(),
                needed: 6,
                available: 5,
                workers: 2
            })
        );
        assert_eq!(
            partition(&wf.0, &workers(&[1, 1, 1, 1, 1, 1]), &cfg),
            Err(PlanError::FunctionTooLarge {
                function: "a".into(),
                scale: 2,
                max_slots: 1
            })
        );
        assert_eq!(
            partition(&wf.0, &workers(&[1, 1, 1, 1, 1, 1]), &master()),
            Err(PlanError::FunctionTooLarge {
                function: "a".into(),
                scale: 2,
                max_slots: 1
            })
        );
        assert_eq!(
            partition(&wf.0, &workers(&[3, 3]), &cfg),
            Err(PlanError::Packing {
                workflow: "wf".into(),
                available: 6,
                workers: 2
            })
        );
        // MasterSP checks no packing.
        assert!(partition(&wf.0, &workers(&[3, 3]), &master()).is_ok());
    }

    #[test]
    fn allow_overcommit_plans_anyway() {
        let wf = Wf::new()
            .task("a", 1.0, 2)
            .task("b", 1.0, 2)
            .task("c", 1.0, 5)
            .chain(&["a", "b", "c"], MB);
        check(
            &wf,
            &workers(&[3, 3]),
            &overcommit(),
            expect![[r#"
            g0 @w1 slots 2 quota 176MiB local 0MiB: a
            g1 @w1 slots 2 quota 176MiB local 0MiB: b
            g2 @w0 slots 5 quota 176MiB local 0MiB: c
            a>b shared-memory
            b>c peer
            w0: slots 5 quota 176MiB memory 0.95367431640625MiB
            w1: slots 4 quota 352MiB memory 0.95367431640625MiB
            critical a b c (25.00 ms), merges 0, overcommitted
        "#]],
        );
    }

    #[test]
    fn packing_is_checked_before_each_merge() {
        // a and b merge into the only 4-slot worker; c and d would fit a 4-slot worker too,
        // but not a second one: packing refuses that merge.
        let wf = Wf::new()
            .task("a", 1.0, 2)
            .task("b", 1.0, 2)
            .task("c", 1.0, 2)
            .task("d", 1.0, 2)
            .edge("a", "b", 10 * MB)
            .edge("c", "d", MB);
        check(
            &wf,
            &workers(&[4, 2, 2]),
            &PlannerConfig::default(),
            expect![[r#"
            g0 @w0 slots 4 quota 352MiB local 9.5367431640625MiB: a b
            g1 @w1 slots 2 quota 176MiB local 0MiB: c
            g2 @w2 slots 2 quota 176MiB local 0MiB: d
            a>b in-process
            c>d peer
            w0: slots 4 quota 352MiB memory 9.5367431640625MiB
            w1: slots 2 quota 176MiB memory 0MiB
            w2: slots 2 quota 176MiB memory 0.95367431640625MiB
            critical c d (13.00 ms), merges 1
        "#]],
        );
    }

    proptest::proptest! {
        /// The bulk best-fit decreasing agrees with the textbook one (one group at a time, onto
        /// the worker with the least room that fits), and the shortcut in `Packer::fits` never
        /// says yes where it says no.
        #[test]
        fn packing_agrees_with_plain_best_fit_decreasing(
            caps in proptest::collection::vec(1u32..=12, 1..=6),
            items in proptest::collection::vec(1u64..=12, 0..=24),
        ) {
            let mut packer = Packer::new(&workers(&caps));
            let mut sizes = BTreeMap::new();
            for &s in &items {
                add_size(&mut sizes, s);
            }
            let plain = plain_best_fit_decreasing(&caps, &items);
            proptest::prop_assert_eq!(packer.best_fit_decreasing(&sizes), plain);
            proptest::prop_assert_eq!(packer.fits(&sizes), plain);
        }
    }

    fn plain_best_fit_decreasing(caps: &[u32], items: &[u64]) -> bool {
        let mut room: Vec<u64> = caps.iter().map(|&c| u64::from(c)).collect();
        let mut items = items.to_vec();
        items.sort_unstable_by(|a, b| b.cmp(a));
        items.iter().all(|&s| {
            let best = (0..room.len()).filter(|&w| room[w] >= s).min_by_key(|&w| (room[w], w));
            best.map(|w| room[w] -= s).is_some()
        })
    }

    #[test]
    fn empty_workflow_gives_an_empty_plan() {
        let wf = Wf::new();
        check(
            &wf,
            &ClusterView::uniform(1, 1),
            &PlannerConfig::default(),
            expect![[r#"
            w0: slots 0 quota 0MiB memory 0MiB
            critical  (0.00 ms), merges 0
        "#]],
        );
    }
}
