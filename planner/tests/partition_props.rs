//! Invariants of the partitioner on random workflows and clusters: every node placed once, no
//! edge lost, capacity and quota respected, groups connected, contention honoured, and the
//! same input always giving the same plan.

use faasflow_core::dag::NodeId;
use faasflow_core::plan::WorkerView;
use faasflow_core::{ClusterView, Mode, Plan, PlanError, PlannerConfig, Tier, Workflow};
use faasflow_planner::{GenParams, partition, random_workflow};
use petgraph::visit::EdgeRef;
use proptest::prelude::*;

/// One random case: a workflow, a cluster sized relative to what the workflow needs, and a
/// configuration.
#[derive(Debug, Clone)]
struct Case {
    seed: u64,
    tasks: usize,
    fan_out: f64,
    max_width: usize,
    /// Spare memory per task is tight (0–40 MiB) and outputs large, so quotas bind.
    tight_memory: bool,
    /// Cluster slots as a fraction of the slots the workflow needs.
    capacity: f64,
    /// Per-worker share of the capacity (relative weights).
    shares: Vec<u32>,
    allow_overcommit: bool,
    mode: Mode,
    /// Contention pairs as node index pairs (taken modulo the node count).
    contention: Vec<(usize, usize)>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<u64>(),
        1usize..=150,
        1.0f64..3.0,
        1usize..=10,
        any::<bool>(),
        prop_oneof![0.95f64..1.15, 0.7f64..3.0],
        prop::collection::vec(1u32..=4, 1..=8),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.2),
        prop::collection::vec((0usize..1000, 0usize..1000), 0..6),
    )
        .prop_map(
            |(seed, tasks, fan_out, max_width, tight_memory, capacity, shares, over, master, contention)| Case {
                seed,
                tasks,
                fan_out,
                max_width,
                tight_memory,
                capacity,
                shares,
                allow_overcommit: over,
                mode: if master { Mode::MasterSp } else { Mode::WorkerSp },
                contention,
            },
        )
}

fn build(case: &Case) -> (Workflow, ClusterView, PlannerConfig) {
    let mut params = GenParams {
        tasks: case.tasks,
        fan_out: case.fan_out,
        max_width: case.max_width,
        ..GenParams::default()
    };
    if case.tight_memory {
        params.memory_mib = 80..=120;
        params.output_bytes = 1 << 20..=16 << 20;
    }
    let mut wf = random_workflow(case.seed, &params);
    let n = wf.graph.node_count();
    wf.contention = case
        .contention
        .iter()
        .map(|&(a, b)| (NodeId::new(a % n), NodeId::new(b % n)))
        .collect();
    let needed = wf.slots_needed();
    let total = (needed as f64 * case.capacity).ceil() as u64;
    let weight: u64 = case.shares.iter().map(|&s| u64::from(s)).sum();
    let cluster = ClusterView {
        workers: case
            .shares
            .iter()
            .enumerate()
            .map(|(i, &s)| WorkerView {
                name: format!("worker-{i}"),
                slots: (total * u64::from(s)).div_ceil(weight) as u32,
            })
            .collect(),
    };
    let cfg = PlannerConfig {
        mode: case.mode,
        allow_overcommit: case.allow_overcommit,
        ..PlannerConfig::default()
    };
    (wf, cluster, cfg)
}

fn quota_of(wf: &Workflow, v: NodeId, cfg: &PlannerConfig) -> u64 {
    wf.graph[v].task().map_or(0, |t| {
        ((t.spec.memory_mib as f64 - t.spec.memory_use_mib - cfg.margin_mib) * 1_048_576.0) as u64
    })
}

fn check_error(wf: &Workflow, cluster: &ClusterView, cfg: &PlannerConfig, err: &PlanError) {
    assert!(
        !cfg.allow_overcommit,
        "allow_overcommit never fails with workers: {err}"
    );
    let needed = wf.slots_needed();
    let max = cluster.workers.iter().map(|w| w.slots).max().unwrap_or(0);
    match err {
        PlanError::Overcommit {
            needed: n, available, ..
        } => {
            assert_eq!(*n, needed);
            assert!(needed > *available);
        }
        PlanError::FunctionTooLarge { scale, max_slots, .. } => {
            assert!(needed <= cluster.total_slots());
            assert!(scale > max_slots);
            assert_eq!(*max_slots, max);
        }
        PlanError::Packing { .. } => {
            assert_eq!(cfg.mode, Mode::WorkerSp, "MasterSP does not pack");
            assert!(needed <= cluster.total_slots());
            // One function per group cannot be packed by plain best-fit decreasing either.
            let mut scales: Vec<u32> = wf
                .graph
                .node_weights()
                .filter_map(|v| v.task())
                .map(|t| t.spec.scale)
                .collect();
            scales.sort_unstable_by(|a, b| b.cmp(a));
            let mut room: Vec<u32> = cluster.workers.iter().map(|w| w.slots).collect();
            let packed = scales.iter().all(|&s| {
                let best = room.iter_mut().filter(|r| **r >= s).min_by_key(|r| **r);
                best.map(|r| *r -= s).is_some()
            });
            assert!(
                !packed,
                "best-fit decreasing packs what the partitioner called unpackable"
            );
        }
        other => panic!("unexpected error {other}"),
    }
}

fn check_plan(wf: &Workflow, cluster: &ClusterView, cfg: &PlannerConfig, plan: &Plan) {
    let g = &wf.graph;
    let n = g.node_count();

    // Every node in exactly one group; groups numbered by their smallest node.
    assert_eq!(plan.node_group.len(), n);
    let mut seen = vec![false; n];
    for (i, group) in plan.groups.iter().enumerate() {
        assert_eq!(group.id as usize, i);
        assert!(!group.nodes.is_empty(), "empty group {i}");
        assert!(group.nodes.windows(2).all(|w| w[0] < w[1]), "nodes sorted");
        assert!((group.worker as usize) < cluster.workers.len());
        for &v in &group.nodes {
            assert!(!seen[v.index()], "node {v:?} in two groups");
            seen[v.index()] = true;
            assert_eq!(plan.node_group[v.index()] as usize, i);
        }
    }
    assert!(seen.iter().all(|&s| s), "every node placed");
    assert!(
        plan.groups.windows(2).all(|w| w[0].nodes[0] < w[1].nodes[0]),
        "groups ordered by first node"
    );

    // No edge lost.
    assert_eq!(plan.edge_tiers.len(), g.edge_count());

    // Slots.
    let mut slots = vec![0u64; cluster.workers.len()];
    for group in &plan.groups {
        let s: u64 = group
            .nodes
            .iter()
            .filter_map(|&v| g[v].task())
            .map(|t| u64::from(t.spec.scale))
            .sum();
        assert_eq!(u64::from(group.slots), s);
        slots[group.worker as usize] += s;
    }
    let mut exceeded = false;
    for (w, load) in plan.workers.iter().enumerate() {
        assert_eq!(u64::from(load.slots_used), slots[w]);
        exceeded |= slots[w] > u64::from(cluster.workers[w].slots);
    }
    assert_eq!(plan.overcommitted, exceeded);
    if cfg.mode == Mode::WorkerSp && !cfg.allow_overcommit {
        assert!(
            !plan.overcommitted,
            "WorkerSP without allow_overcommit never exceeds a worker"
        );
    }

    // Quota and memory.
    let mut quota = vec![0u64; cluster.workers.len()];
    let mut memory = vec![0u64; cluster.workers.len()];
    for v in g.node_indices() {
        quota[plan.worker_of(v) as usize] += quota_of(wf, v, cfg);
    }
    for e in g.edge_references() {
        let (u, v) = (e.source(), e.target());
        let same_group = plan.node_group[u.index()] == plan.node_group[v.index()];
        let same_worker = plan.worker_of(u) == plan.worker_of(v);
        match plan.tier(e.id()) {
            Tier::InProcess => assert!(same_group),
            Tier::SharedMemory => assert!(same_worker),
            Tier::Peer => assert!(!same_worker),
            Tier::Remote => {}
        }
        if cfg.mode == Mode::MasterSp {
            assert_eq!(plan.tier(e.id()), Tier::Remote);
        } else if same_group {
            // Inner edges fit their group's quota, so they never spill.
            assert_ne!(plan.tier(e.id()), Tier::Remote, "inner edge spilled");
        }
        if plan.tier(e.id()).is_in_memory() {
            memory[plan.worker_of(v) as usize] += e.weight().bytes;
        }
    }
    for (w, load) in plan.workers.iter().enumerate() {
        assert_eq!(load.quota_bytes, quota[w]);
        assert_eq!(load.memory_bytes, memory[w]);
        assert!(load.memory_bytes <= load.quota_bytes, "worker {w} memory within quota");
    }
    for group in &plan.groups {
        let q: u64 = group.nodes.iter().map(|&v| quota_of(wf, v, cfg)).sum();
        assert_eq!(group.quota_bytes, q);
        let local: u64 = g
            .edge_references()
            .filter(|e| {
                plan.node_group[e.source().index()] == group.id && plan.node_group[e.target().index()] == group.id
            })
            .map(|e| e.weight().bytes)
            .sum();
        assert_eq!(group.local_bytes, local);
        assert!(
            group.local_bytes <= group.quota_bytes,
            "group {} within quota",
            group.id
        );
    }

    // Groups are connected through their inner edges (merges only along edges).
    for group in &plan.groups {
        let mut reached = vec![group.nodes[0]];
        let mut stack = vec![group.nodes[0]];
        while let Some(v) = stack.pop() {
            for u in g.neighbors_undirected(v) {
                if plan.node_group[u.index()] == group.id && !reached.contains(&u) {
                    reached.push(u);
                    stack.push(u);
                }
            }
        }
        assert_eq!(reached.len(), group.nodes.len(), "group {} connected", group.id);
    }

    // Contention pairs never share a group.
    for &(a, b) in &wf.contention {
        if a != b {
            assert_ne!(
                plan.node_group[a.index()],
                plan.node_group[b.index()],
                "contention {a:?} {b:?}"
            );
        }
    }

    // MasterSP: one group per node.
    if cfg.mode == Mode::MasterSp {
        assert_eq!(plan.groups.len(), n);
        assert_eq!(plan.merges, 0);
    } else {
        assert_eq!(plan.groups.len() + plan.merges as usize, n);
    }

    // The critical path is a path, and its cost adds up. A catch step (the target of an
    // `on_failure` edge) runs only on failure: it and the edge to it cost nothing.
    let catch_step = |v: petgraph::graph::NodeIndex| {
        g.edges_directed(v, petgraph::Direction::Incoming)
            .any(|e| e.weight().on_failure)
    };
    let own_cost = |v| {
        if catch_step(v) {
            0.0
        } else {
            g[v].task().map_or(0.0, |t| t.spec.runtime_ms)
        }
    };
    let path = &plan.critical_path.nodes;
    assert_eq!(path.is_empty(), n == 0);
    let mut cost = 0.0;
    for (i, &v) in path.iter().enumerate() {
        cost += own_cost(v);
        if i > 0 {
            let u = path[i - 1];
            let e = g.find_edge(u, v).expect("consecutive path nodes are joined by an edge");
            let bytes = g[e].bytes;
            let local = cfg.mode == Mode::WorkerSp && plan.node_group[u.index()] == plan.node_group[v.index()];
            cost += if g[e].on_failure {
                0.0
            } else if local {
                cfg.local.cost_ms(bytes)
            } else {
                cfg.remote.cost_ms(bytes)
            };
        }
    }
    assert!(
        (cost - plan.critical_path.cost_ms).abs() <= 1e-6 * cost.max(1.0),
        "{cost} vs {}",
        plan.critical_path.cost_ms
    );
    // And it is the longest path: a reference longest-path search gives the same cost.
    let order = faasflow_core::graph::topo_order(g).unwrap();
    let mut best = vec![0.0f64; n];
    for &v in &order {
        let own = own_cost(v);
        let mut into = 0.0f64;
        for e in g.edges_directed(v, petgraph::Direction::Incoming) {
            let u = e.source();
            let local = cfg.mode == Mode::WorkerSp && plan.node_group[u.index()] == plan.node_group[v.index()];
            let link = if e.weight().on_failure {
                0.0
            } else if local {
                cfg.local.cost_ms(e.weight().bytes)
            } else {
                cfg.remote.cost_ms(e.weight().bytes)
            };
            into = into.max(best[u.index()] + link);
        }
        best[v.index()] = into + own;
    }
    let longest = best.iter().copied().fold(0.0, f64::max);
    assert!(
        (longest - plan.critical_path.cost_ms).abs() <= 1e-6 * longest.max(1.0),
        "the critical path costs {} but the longest path costs {longest}",
        plan.critical_path.cost_ms
    );
}

/// Every FaaSFlow file and every docs example (switch, foreach, joins: virtual nodes the random
/// workflows lack) keeps the invariants on clusters from tight to roomy, in both modes.
#[test]
fn fixtures_and_docs_examples_keep_the_invariants() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut workflows = Vec::new();
    let mut dirs = vec![root.join("tests/fixtures/faasflow-v1")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.to_str().unwrap().ends_with("workflow.yaml") || p.to_str().unwrap().ends_with("workflow2.yaml")
            {
                workflows.push(faasflow_planner::load::load_file(&p).unwrap().workflow);
            }
        }
    }
    let docs = std::fs::read_to_string(root.join("docs/wdl.md")).unwrap();
    for block in docs.split("```yaml\n").skip(1) {
        let src = block.split("```").next().unwrap();
        workflows.push(
            faasflow_planner::load::load_str(src, "doc.yaml", "doc")
                .unwrap()
                .workflow,
        );
    }
    assert!(workflows.len() >= 26, "{}", workflows.len());
    for wf in &workflows {
        for workers in [1, 2, 3, 5] {
            for slots in [3, 8, 16, 64, 1000] {
                for mode in [Mode::WorkerSp, Mode::MasterSp] {
                    for allow_overcommit in [false, true] {
                        let cluster = ClusterView::uniform(workers, slots);
                        let cfg = PlannerConfig {
                            mode,
                            allow_overcommit,
                            ..PlannerConfig::default()
                        };
                        match partition(wf, &cluster, &cfg) {
                            Ok(plan) => check_plan(wf, &cluster, &cfg, &plan),
                            Err(e) => check_error(wf, &cluster, &cfg, &e),
                        }
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn plans_keep_their_invariants(case in case()) {
        let (wf, cluster, cfg) = build(&case);
        let first = partition(&wf, &cluster, &cfg);
        let again = partition(&wf, &cluster, &cfg);
        prop_assert_eq!(&first, &again, "deterministic");
        match &first {
            Ok(plan) => check_plan(&wf, &cluster, &cfg, plan),
            Err(err) => check_error(&wf, &cluster, &cfg, err),
        }
    }

    #[test]
    fn small_tight_clusters(
        seed in any::<u64>(),
        tasks in 1usize..=6,
        slots in prop::collection::vec(1u32..=8, 1..=4),
        allow_overcommit in prop::bool::weighted(0.2),
    ) {
        let wf = random_workflow(seed, &GenParams { tasks, max_width: 4, ..GenParams::default() });
        let cluster = ClusterView {
            workers: slots
                .iter()
                .enumerate()
                .map(|(i, &slots)| WorkerView { name: format!("worker-{i}"), slots })
                .collect(),
        };
        let cfg = PlannerConfig { allow_overcommit, ..PlannerConfig::default() };
        match partition(&wf, &cluster, &cfg) {
            Ok(plan) => check_plan(&wf, &cluster, &cfg, &plan),
            Err(err) => check_error(&wf, &cluster, &cfg, &err),
        }
    }

    #[test]
    fn enough_slots_always_plans(seed in any::<u64>(), tasks in 1usize..=150, workers in 1usize..=8) {
        let wf = random_workflow(seed, &GenParams { tasks, ..GenParams::default() });
        // Every worker could hold the whole workflow: no check can fail.
        let cluster = ClusterView::uniform(workers, 3 * tasks as u32);
        for mode in [Mode::WorkerSp, Mode::MasterSp] {
            let cfg = PlannerConfig { mode, ..PlannerConfig::default() };
            let plan = partition(&wf, &cluster, &cfg).expect("a plan");
            check_plan(&wf, &cluster, &cfg, &plan);
        }
    }
}

#[test]
fn no_workers_is_an_error_in_every_mode() {
    let wf = random_workflow(1, &GenParams::default());
    for allow_overcommit in [false, true] {
        for mode in [Mode::WorkerSp, Mode::MasterSp] {
            let cfg = PlannerConfig {
                mode,
                allow_overcommit,
                ..PlannerConfig::default()
            };
            assert_eq!(
                partition(&wf, &ClusterView::uniform(0, 8), &cfg),
                Err(PlanError::NoWorkers)
            );
        }
    }
}
