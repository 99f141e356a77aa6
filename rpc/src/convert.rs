//! The boundary between the planner's types and the wire: a [`Plan`], with its [`Workflow`]
//! and [`ClusterView`], to and from `faasflow.v1.Plan` ([`pb::Plan`]).
//!
//! Everything outside `faasflow-rpc` and the two server adapters uses the types of
//! [`faasflow_core::dag`] and [`faasflow_core::plan`].
//!
//! The proto side is untrusted bytes from the network. [`plan_from_proto`] never panics: it
//! checks every node, edge, group and worker index, the lengths of the per-node and per-edge
//! tables, group membership, enum values, numbers, the switch and foreach cross-references,
//! foreach scopes, and that the graph is acyclic, before it hands anything out. Code that gets
//! a plan from it may index the graph and the plan without checks of its own
//! ([`Plan::worker_of`], [`Plan::tier`], `graph[node]`).

use std::collections::HashMap;

use faasflow_proto::v1 as pb;
use petgraph::graph::{DiGraph, NodeIndex};

use faasflow_core::Pos;
use faasflow_core::dag::{
    Case, DataSource, Edge, FailureKind, FailureKinds, Foreach, FunctionSpec, InputBinding, Isolation, JoinKind, Node,
    NodeId, NodeKind, OutputDecl, Retry, SourceFormat, Switch, Task, ValueKind, Workflow, WorkflowInput,
    WorkflowOutput,
};
use faasflow_core::plan::{ClusterView, CriticalPath, Group, Mode, Plan, Tier, WorkerLoad, WorkerView};

pub mod execute;

/// Why a `faasflow.v1.Plan` (or one of its parts) was rejected.
///
/// Fields are named as in the `.proto` files, with indices: `graph.nodes[3].scope`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// A required message, or a `oneof` that must have one member, is not set.
    #[error("`{field}` is missing")]
    Missing {
        /// The field.
        field: String,
    },
    /// An enum field holds a value this version does not know (or `*_UNSPECIFIED`).
    #[error(
        "`{field}` is {value}, which is not a known {enum_name} (0 means the sender left it unset; larger values may come from a newer peer)"
    )]
    UnknownEnum {
        /// The field.
        field: String,
        /// The proto enum's name.
        enum_name: &'static str,
        /// The value received.
        value: i32,
    },
    /// An index points past the end of the list it refers to.
    #[error("`{field}` is {index}, but there are only {len} {what}")]
    IndexOutOfRange {
        /// The field holding the index.
        field: String,
        /// The index received.
        index: u32,
        /// The length of the list it indexes.
        len: usize,
        /// What the list holds (`nodes`, `edges`, `groups`, `workers`).
        what: &'static str,
    },
    /// A table that needs one entry per node (or edge) has another length.
    #[error("`{field}` has {len} entries, but it needs one per {what} and the graph has {expected}")]
    LengthMismatch {
        /// The table.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The length it must have.
        expected: usize,
        /// What it needs one entry for (`node`, `edge`).
        what: &'static str,
    },
    /// A list is too long to be indexed by `u32`.
    #[error("`{field}` has {len} entries, more than the {max} a plan can index")]
    TooMany {
        /// The list.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The most it may have.
        max: usize,
    },
    /// A group's id is not its position in `groups`.
    #[error("`groups[{index}].id` is {id}; a group's id must be its position in `groups` ({index})")]
    GroupId {
        /// The group's position.
        index: usize,
        /// The id received.
        id: u32,
    },
    /// A node is listed in two groups.
    #[error(
        "node {node} is listed in both `groups[{first}].nodes` and `groups[{second}].nodes`; every node must be in exactly one group"
    )]
    NodeInSeveralGroups {
        /// The node.
        node: u32,
        /// The first group listing it.
        first: u32,
        /// The second group listing it.
        second: u32,
    },
    /// A node is listed in no group.
    #[error(
        "node {node} is not listed in any group's `nodes` (`node_group[{node}]` is {node_group}); every node must be in exactly one group"
    )]
    NodeInNoGroup {
        /// The node.
        node: u32,
        /// Its entry in `node_group`.
        node_group: u32,
    },
    /// `node_group` and the groups' node lists disagree.
    #[error("`node_group[{node}]` is {node_group}, but node {node} is listed in `groups[{group}].nodes`")]
    GroupMismatch {
        /// The node.
        node: u32,
        /// Its entry in `node_group`.
        node_group: u32,
        /// The group that lists it.
        group: u32,
    },
    /// The edges form a cycle.
    #[error("`graph.edges` form a cycle through nodes {nodes:?}; a workflow graph must be acyclic")]
    Cycle {
        /// The nodes of one cycle, in order.
        nodes: Vec<u32>,
    },
    /// A reference that must name a foreach node names another kind of node.
    #[error("`{field}` is node {node}, a {kind} node; it must be a foreach node")]
    NotAForeach {
        /// The field.
        field: String,
        /// The node it names.
        node: u32,
        /// That node's kind.
        kind: &'static str,
    },
    /// A foreach's collect node is not a join node.
    #[error("`{field}` is node {node}, a {kind} node; a foreach's collect node must be a join node")]
    CollectNotJoin {
        /// The field.
        field: String,
        /// The node it names.
        node: u32,
        /// That node's kind.
        kind: &'static str,
    },
    /// An edge's case is larger than its switch's default case.
    #[error(
        "`{field}` is {case}, but its source, node {switch}, is a switch with {cases} case(s); the case must be at most {cases} (the default)"
    )]
    CaseOutOfRange {
        /// The field.
        field: String,
        /// The case received.
        case: u32,
        /// The switch node.
        switch: u32,
        /// The switch's number of conditions.
        cases: usize,
    },
    /// An edge has a case, but its source is not a switch.
    #[error("`{field}` is set, but its source, node {node}, is a {kind} node; only edges leaving a switch have a case")]
    CaseWithoutSwitch {
        /// The field.
        field: String,
        /// The source node.
        node: u32,
        /// Its kind.
        kind: &'static str,
    },
    /// Following `scope` from a node comes back to it: a foreach inside itself.
    #[error("following `scope` from node {node} comes back to it; a foreach cannot be inside itself")]
    ScopeCycle {
        /// A node on the cycle.
        node: u32,
    },
    /// A number is not finite, or outside its range.
    #[error("`{field}` is {value}; it must be {range}")]
    InvalidNumber {
        /// The field.
        field: String,
        /// The value received.
        value: f64,
        /// The values allowed.
        range: &'static str,
    },
    /// Two nodes (or workers) have the same name.
    #[error("`{field}` repeats the name `{name}` of `{first}`; names must be unique")]
    DuplicateName {
        /// The field with the second occurrence.
        field: String,
        /// The name.
        name: String,
        /// The field with the first occurrence.
        first: String,
    },
    /// The plan's workflow name differs from its graph's.
    #[error("`workflow` is `{plan}`, but `graph.name` is `{graph}`; they must be equal")]
    NameMismatch {
        /// `workflow`.
        plan: String,
        /// `graph.name`.
        graph: String,
    },
    /// A field's value is not acceptable (an empty name, JSON that does not parse, an object
    /// of another invocation).
    #[error("`{field}` {reason}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Node and edge lists may have at most this many entries: petgraph's `u32` indices reserve
/// `u32::MAX`.
const MAX_ITEMS: usize = u32::MAX as usize - 1;

// ---------------------------------------------------------------------------------------------
// To proto
// ---------------------------------------------------------------------------------------------

/// What a plan is known by: SHA-256 of its wire form. A daemon asked to install a version it
/// holds compares digests, so that a different plan under a known (workflow, version) is
/// refused rather than answered with the one it holds.
pub fn plan_digest(plan: &pb::Plan) -> Vec<u8> {
    let bytes = prost::Message::encode_to_vec(plan);
    ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref().to_vec()
}

/// A plan encoded for the wire once, when it is deployed, and sent as is to every daemon that
/// installs it; its digest is what a daemon holding it reports.
#[derive(Debug, Clone, PartialEq)]
pub struct WirePlan {
    proto: pb::Plan,
    digest: Vec<u8>,
}

impl WirePlan {
    /// Encodes `plan` of `wf` for `cluster`.
    pub fn new(wf: &Workflow, plan: &Plan, cluster: &ClusterView) -> Self {
        let proto = plan_to_proto(wf, plan, cluster);
        let digest = plan_digest(&proto);
        WirePlan { proto, digest }
    }

    /// The SHA-256 digest of the encoded plan ([`plan_digest`]).
    pub fn digest(&self) -> &[u8] {
        &self.digest
    }

    /// The generated message, for the server adapters and clients that send it.
    pub fn proto(&self) -> &pb::Plan {
        &self.proto
    }
}

/// A digest as people read it (its first 8 bytes in hex).
pub fn short_digest(digest: &[u8]) -> String {
    if digest.is_empty() {
        return "none".into();
    }
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Encodes a plan with the workflow and cluster it was made for.
///
/// Expects what the partitioner produces: `plan.workflow == wf.name` and one
/// [`WorkerLoad`] per worker of `cluster` (the wire has one `Worker` per worker, so extra
/// entries on either side would be dropped; debug builds assert it).
pub fn plan_to_proto(wf: &Workflow, plan: &Plan, cluster: &ClusterView) -> pb::Plan {
    debug_assert_eq!(plan.workers.len(), cluster.workers.len(), "one WorkerLoad per worker");
    pb::Plan {
        workflow: plan.workflow.clone(),
        graph: Some(workflow_to_proto(wf)),
        version: plan.version,
        mode: mode_to_proto(plan.mode),
        workers: cluster
            .workers
            .iter()
            .zip(&plan.workers)
            .map(|(w, load)| pb::Worker {
                name: w.name.clone(),
                slots: w.slots,
                slots_used: load.slots_used,
                quota_bytes: load.quota_bytes,
                memory_bytes: load.memory_bytes,
            })
            .collect(),
        groups: plan
            .groups
            .iter()
            .map(|g| pb::Group {
                id: g.id,
                worker: g.worker,
                nodes: node_indices(&g.nodes),
                slots: g.slots,
                quota_bytes: g.quota_bytes,
                local_bytes: g.local_bytes,
            })
            .collect(),
        node_group: plan.node_group.clone(),
        edge_tiers: plan.edge_tiers.iter().map(|&t| tier_to_proto(t)).collect(),
        critical_path: Some(pb::CriticalPath {
            nodes: node_indices(&plan.critical_path.nodes),
            cost_ms: plan.critical_path.cost_ms,
        }),
        merges: plan.merges,
        overcommitted: plan.overcommitted,
    }
}

/// Encodes a compiled workflow graph. Node and edge indices become positions in
/// `nodes` and `edges`.
pub fn workflow_to_proto(wf: &Workflow) -> pb::WorkflowGraph {
    let g = &wf.graph;
    pb::WorkflowGraph {
        name: wf.name.clone(),
        format: format_to_proto(wf.format),
        nodes: g.node_weights().map(node_to_proto).collect(),
        edges: g
            .edge_indices()
            .filter_map(|e| {
                let (source, target) = g.edge_endpoints(e)?;
                let edge = g.edge_weight(e)?;
                Some(pb::Edge {
                    source: node_index(source),
                    target: node_index(target),
                    control: edge.control,
                    case: edge.case,
                    data: edge
                        .data
                        .iter()
                        .map(|(output, input)| pb::DataPair {
                            output: output.clone(),
                            input: input.clone(),
                        })
                        .collect(),
                    bytes: edge.bytes,
                    on_failure: edge.on_failure,
                })
            })
            .collect(),
        inputs: wf
            .inputs
            .iter()
            .map(|i| pb::WorkflowInput {
                name: i.name.clone(),
                kind: value_kind_to_proto(i.kind),
                size: i.size,
            })
            .collect(),
        outputs: wf
            .outputs
            .iter()
            .map(|o| pb::WorkflowOutput {
                name: o.name.clone(),
                sources: o.sources.iter().map(source_to_proto).collect(),
            })
            .collect(),
        contention: wf
            .contention
            .iter()
            .map(|&(a, b)| pb::ContentionPair {
                a: node_index(a),
                b: node_index(b),
            })
            .collect(),
        deadline_ms: wf.deadline_ms.unwrap_or(0),
    }
}

/// The wire value of a scheduling mode (for `DeployRequest.mode`).
pub fn mode_to_proto(mode: Mode) -> i32 {
    match mode {
        Mode::WorkerSp => pb::Mode::WorkerSp as i32,
        Mode::MasterSp => pb::Mode::MasterSp as i32,
        Mode::WorkerSpRemote => pb::Mode::WorkerSpRemote as i32,
    }
}

fn node_to_proto(n: &Node) -> pb::Node {
    use pb::node::Kind;
    let kind = match &n.kind {
        NodeKind::Task(t) => Kind::Task(pb::Task {
            function: t.function.clone(),
            spec: Some(spec_to_proto(&t.spec)),
            inputs: t
                .inputs
                .iter()
                .map(|i| pb::InputBinding {
                    name: i.name.clone(),
                    sources: i.sources.iter().map(source_to_proto).collect(),
                })
                .collect(),
        }),
        NodeKind::Switch(s) => Kind::Switch(pb::Switch {
            cases: s
                .cases
                .iter()
                .map(|c| pb::Case {
                    condition: c.condition.clone(),
                    line: c.pos.line,
                    col: c.pos.col,
                })
                .collect(),
        }),
        NodeKind::Foreach(f) => Kind::Foreach(pb::Foreach {
            over: Some(source_to_proto(&f.over)),
            max_concurrency: f.max_concurrency,
            width: f.width,
            collect: node_index(f.collect),
        }),
        NodeKind::Join(j) => Kind::Join(join_kind_to_proto(*j)),
    };
    pb::Node {
        name: n.name.clone(),
        line: n.pos.line,
        col: n.pos.col,
        scope: n.scope.map(node_index),
        kind: Some(kind),
    }
}

fn spec_to_proto(s: &FunctionSpec) -> pb::FunctionSpec {
    pb::FunctionSpec {
        pack: s.pack.clone(),
        image: s.image.clone(),
        memory_mib: s.memory_mib,
        cpu_millis: s.cpu_millis,
        timeout_ms: s.timeout_ms,
        retry: Some(pb::Retry {
            attempts: s.retry.attempts,
            backoff_ms: s.retry.backoff_ms,
            jitter: s.retry.jitter,
            on: failure_kinds_to_proto(s.retry.on),
        }),
        isolation: isolation_to_proto(s.isolation),
        network: s.network,
        idempotent: s.idempotent,
        scale: s.scale,
        runtime_ms: s.runtime_ms,
        memory_use_mib: s.memory_use_mib,
        outputs: s
            .outputs
            .iter()
            .map(|o| pb::OutputDecl {
                name: o.name.clone(),
                kind: value_kind_to_proto(o.kind),
                size: o.size,
            })
            .collect(),
    }
}

fn source_to_proto(s: &DataSource) -> pb::DataSource {
    use pb::data_source::Source;
    let source = match s {
        DataSource::Input(name) => Source::Input(name.clone()),
        DataSource::Output { node, output } => Source::Output(pb::NodeOutput {
            node: node_index(*node),
            output: output.clone(),
        }),
        DataSource::Item(node) => Source::Item(node_index(*node)),
        DataSource::Index(node) => Source::Index(node_index(*node)),
    };
    pb::DataSource { source: Some(source) }
}

/// A node's index on the wire. `NodeId` is `NodeIndex<u32>`, so this never truncates.
fn node_index(n: NodeId) -> u32 {
    n.index() as u32
}

fn node_indices(nodes: &[NodeId]) -> Vec<u32> {
    nodes.iter().map(|&n| node_index(n)).collect()
}

fn format_to_proto(f: SourceFormat) -> i32 {
    match f {
        SourceFormat::Native => pb::SourceFormat::Native as i32,
        SourceFormat::FaasflowFlat => pb::SourceFormat::FaasflowFlat as i32,
        SourceFormat::FaasflowHierarchical => pb::SourceFormat::FaasflowHierarchical as i32,
    }
}

fn value_kind_to_proto(k: ValueKind) -> i32 {
    match k {
        ValueKind::Bytes => pb::ValueKind::Bytes as i32,
        ValueKind::Json => pb::ValueKind::Json as i32,
        ValueKind::List => pb::ValueKind::List as i32,
    }
}

fn isolation_to_proto(i: Isolation) -> i32 {
    match i {
        Isolation::Thread => pb::Isolation::Thread as i32,
        Isolation::Process => pb::Isolation::Process as i32,
        Isolation::Container => pb::Isolation::Container as i32,
    }
}

fn join_kind_to_proto(j: JoinKind) -> i32 {
    match j {
        JoinKind::Parallel => pb::JoinKind::Parallel as i32,
        JoinKind::Collect => pb::JoinKind::Collect as i32,
        JoinKind::Pass => pb::JoinKind::Pass as i32,
        JoinKind::End => pb::JoinKind::End as i32,
    }
}

fn tier_to_proto(t: Tier) -> i32 {
    match t {
        Tier::InProcess => pb::Tier::InProcess as i32,
        Tier::SharedMemory => pb::Tier::SharedMemory as i32,
        Tier::Peer => pb::Tier::Peer as i32,
        Tier::Remote => pb::Tier::Remote as i32,
    }
}

// ---------------------------------------------------------------------------------------------
// From proto
// ---------------------------------------------------------------------------------------------

/// Decodes and validates a plan received from the network, giving back the workflow graph,
/// the plan and the cluster it was made for (the plan's workers, in order).
///
/// Never panics; any inconsistency is a [`ConvertError`] naming the field and index.
pub fn plan_from_proto(p: &pb::Plan) -> Result<(Workflow, Plan, ClusterView), ConvertError> {
    let graph = p.graph.as_ref().ok_or_else(|| missing("graph"))?;
    let wf = workflow_from_proto(graph)?;
    if p.workflow != wf.name {
        return Err(ConvertError::NameMismatch {
            plan: p.workflow.clone(),
            graph: wf.name.clone(),
        });
    }
    let mode = mode_from_proto(p.mode, "mode")?;
    let node_count = wf.graph.node_count();
    let edge_count = wf.graph.edge_count();

    // Workers.
    let mut cluster = ClusterView {
        workers: Vec::with_capacity(p.workers.len()),
    };
    let mut loads = Vec::with_capacity(p.workers.len());
    let mut worker_names: HashMap<&str, usize> = HashMap::new();
    for (i, w) in p.workers.iter().enumerate() {
        if let Some(first) = worker_names.insert(&w.name, i) {
            return Err(ConvertError::DuplicateName {
                field: format!("workers[{i}].name"),
                name: w.name.clone(),
                first: format!("workers[{first}].name"),
            });
        }
        cluster.workers.push(WorkerView {
            name: w.name.clone(),
            slots: w.slots,
        });
        loads.push(WorkerLoad {
            slots_used: w.slots_used,
            quota_bytes: w.quota_bytes,
            memory_bytes: w.memory_bytes,
        });
    }

    // Groups, and the membership of every node.
    let groups = groups_from_proto(&p.groups, node_count, p.workers.len())?;
    let node_group = node_group_from_proto(&p.node_group, &p.groups, node_count)?;

    // Edge tiers.
    if p.edge_tiers.len() != edge_count {
        return Err(ConvertError::LengthMismatch {
            field: "edge_tiers",
            len: p.edge_tiers.len(),
            expected: edge_count,
            what: "edge",
        });
    }
    let edge_tiers = p
        .edge_tiers
        .iter()
        .enumerate()
        .map(|(i, &t)| tier_from_proto(t, || format!("edge_tiers[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;

    // Critical path.
    let cp = p.critical_path.as_ref().ok_or_else(|| missing("critical_path"))?;
    let critical_path = CriticalPath {
        nodes: cp
            .nodes
            .iter()
            .enumerate()
            .map(|(i, &n)| node_in_range(n, node_count, || format!("critical_path.nodes[{i}]")))
            .collect::<Result<_, _>>()?,
        cost_ms: non_negative(cp.cost_ms, || "critical_path.cost_ms".to_owned())?,
    };

    let plan = Plan {
        workflow: p.workflow.clone(),
        version: p.version,
        mode,
        groups,
        node_group,
        edge_tiers,
        workers: loads,
        critical_path,
        merges: p.merges,
        overcommitted: p.overcommitted,
    };
    Ok((wf, plan, cluster))
}

/// Decodes and validates a compiled workflow graph: indices in range, enums known, switch and
/// foreach references consistent, scopes pointing at foreach nodes, node names unique, and the
/// graph acyclic.
pub fn workflow_from_proto(g: &pb::WorkflowGraph) -> Result<Workflow, ConvertError> {
    let format = format_from_proto(g.format)?;
    for (field, len) in [("graph.nodes", g.nodes.len()), ("graph.edges", g.edges.len())] {
        if len > MAX_ITEMS {
            return Err(ConvertError::TooMany {
                field,
                len,
                max: MAX_ITEMS,
            });
        }
    }
    let shapes = g
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| Shape::of(n, i))
        .collect::<Result<Vec<_>, _>>()?;
    let cx = Nodes { shapes: &shapes };

    let mut graph: DiGraph<Node, Edge, u32> = DiGraph::with_capacity(g.nodes.len(), g.edges.len());
    let mut names: HashMap<&str, usize> = HashMap::with_capacity(g.nodes.len());
    for (i, n) in g.nodes.iter().enumerate() {
        if let Some(first) = names.insert(&n.name, i) {
            return Err(ConvertError::DuplicateName {
                field: format!("graph.nodes[{i}].name"),
                name: n.name.clone(),
                first: format!("graph.nodes[{first}].name"),
            });
        }
        graph.add_node(cx.node(n, i)?);
    }
    check_scopes(&graph)?;

    for (i, e) in g.edges.iter().enumerate() {
        let (source, target, edge) = cx.edge(e, i)?;
        graph.add_edge(source, target, edge);
    }
    if let Err(cycle) = faasflow_core::graph::topo_order(&graph) {
        return Err(ConvertError::Cycle {
            nodes: node_indices(&cycle),
        });
    }

    let inputs = g
        .inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            Ok(WorkflowInput {
                name: input.name.clone(),
                kind: value_kind_from_proto(input.kind, || format!("graph.inputs[{i}].kind"))?,
                size: input.size,
            })
        })
        .collect::<Result<_, ConvertError>>()?;
    let outputs = g
        .outputs
        .iter()
        .enumerate()
        .map(|(i, o)| {
            Ok(WorkflowOutput {
                name: o.name.clone(),
                sources: cx.sources(&o.sources, &|| format!("graph.outputs[{i}].sources"))?,
            })
        })
        .collect::<Result<_, ConvertError>>()?;
    let contention = g
        .contention
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let a = cx.node_ref(c.a, || format!("graph.contention[{i}].a"))?;
            let b = cx.node_ref(c.b, || format!("graph.contention[{i}].b"))?;
            Ok((a, b))
        })
        .collect::<Result<_, ConvertError>>()?;

    Ok(Workflow {
        name: g.name.clone(),
        format,
        graph,
        inputs,
        outputs,
        contention,
        deadline_ms: (g.deadline_ms > 0).then_some(g.deadline_ms),
    })
}

/// Decodes a scheduling mode (`Plan.mode`, `DeployRequest.mode`); `field` names it in errors.
pub fn mode_from_proto(value: i32, field: &str) -> Result<Mode, ConvertError> {
    match pb::Mode::try_from(value) {
        Ok(pb::Mode::WorkerSp) => Ok(Mode::WorkerSp),
        Ok(pb::Mode::MasterSp) => Ok(Mode::MasterSp),
        Ok(pb::Mode::WorkerSpRemote) => Ok(Mode::WorkerSpRemote),
        Ok(pb::Mode::Unspecified) | Err(_) => Err(unknown_enum(field.to_owned(), "Mode", value)),
    }
}

/// What [`Nodes`] needs to know about every node to check references to it before the nodes
/// themselves are built.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Task,
    Switch { cases: usize },
    Foreach,
    Join,
}

impl Shape {
    fn of(n: &pb::Node, i: usize) -> Result<Shape, ConvertError> {
        use pb::node::Kind;
        match &n.kind {
            Some(Kind::Task(_)) => Ok(Shape::Task),
            Some(Kind::Switch(s)) => Ok(Shape::Switch { cases: s.cases.len() }),
            Some(Kind::Foreach(_)) => Ok(Shape::Foreach),
            Some(Kind::Join(_)) => Ok(Shape::Join),
            None => Err(ConvertError::Missing {
                field: format!("graph.nodes[{i}].kind"),
            }),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Shape::Task => "task",
            Shape::Switch { .. } => "switch",
            Shape::Foreach => "foreach",
            Shape::Join => "join",
        }
    }
}

/// Builds nodes and edges, checking every node reference against the shapes of all nodes.
#[derive(Debug)]
struct Nodes<'a> {
    shapes: &'a [Shape],
}

impl Nodes<'_> {
    fn node(&self, n: &pb::Node, i: usize) -> Result<Node, ConvertError> {
        use pb::node::Kind;
        let at = |rest: &str| format!("graph.nodes[{i}].{rest}");
        let kind = match &n.kind {
            Some(Kind::Task(t)) => NodeKind::Task(self.task(t, i)?),
            Some(Kind::Switch(s)) => NodeKind::Switch(Switch {
                cases: s
                    .cases
                    .iter()
                    .map(|c| Case {
                        condition: c.condition.clone(),
                        pos: Pos::new(c.line, c.col),
                    })
                    .collect(),
            }),
            Some(Kind::Foreach(f)) => NodeKind::Foreach(Foreach {
                over: self.source(f.over.as_ref().ok_or_else(|| missing(&at("foreach.over")))?, &|| {
                    at("foreach.over")
                })?,
                max_concurrency: f.max_concurrency,
                width: f.width,
                collect: self.collect(f.collect, || at("foreach.collect"))?,
            }),
            Some(Kind::Join(j)) => NodeKind::Join(join_kind_from_proto(*j, || at("join"))?),
            None => return Err(missing(&at("kind"))),
        };
        let scope = n.scope.map(|s| self.foreach(s, || at("scope"))).transpose()?;
        Ok(Node {
            name: n.name.clone(),
            pos: Pos::new(n.line, n.col),
            kind,
            scope,
        })
    }

    fn task(&self, t: &pb::Task, i: usize) -> Result<Task, ConvertError> {
        let at = |rest: &str| format!("graph.nodes[{i}].task.{rest}");
        let spec = t.spec.as_ref().ok_or_else(|| missing(&at("spec")))?;
        let retry = spec.retry.as_ref().ok_or_else(|| missing(&at("spec.retry")))?;
        let jitter = non_negative(retry.jitter, || at("spec.retry.jitter"))?;
        if jitter > 1.0 {
            return Err(ConvertError::InvalidNumber {
                field: at("spec.retry.jitter"),
                value: jitter,
                range: "a fraction from 0.0 to 1.0",
            });
        }
        let spec = FunctionSpec {
            pack: spec.pack.clone(),
            image: spec.image.clone(),
            memory_mib: spec.memory_mib,
            cpu_millis: spec.cpu_millis,
            timeout_ms: spec.timeout_ms,
            retry: Retry {
                attempts: retry.attempts,
                backoff_ms: retry.backoff_ms,
                jitter,
                on: failure_kinds_from_proto(&retry.on, || at("spec.retry.on"))?,
            },
            isolation: isolation_from_proto(spec.isolation, || at("spec.isolation"))?,
            network: spec.network,
            idempotent: spec.idempotent,
            scale: spec.scale,
            runtime_ms: non_negative(spec.runtime_ms, || at("spec.runtime_ms"))?,
            memory_use_mib: non_negative(spec.memory_use_mib, || at("spec.memory_use_mib"))?,
            outputs: spec
                .outputs
                .iter()
                .enumerate()
                .map(|(j, o)| {
                    Ok(OutputDecl {
                        name: o.name.clone(),
                        kind: value_kind_from_proto(o.kind, || at(&format!("spec.outputs[{j}].kind")))?,
                        size: o.size,
                    })
                })
                .collect::<Result<_, ConvertError>>()?,
        };
        let inputs = t
            .inputs
            .iter()
            .enumerate()
            .map(|(j, b)| {
                Ok(InputBinding {
                    name: b.name.clone(),
                    sources: self.sources(&b.sources, &|| at(&format!("inputs[{j}].sources")))?,
                })
            })
            .collect::<Result<_, ConvertError>>()?;
        Ok(Task {
            function: t.function.clone(),
            spec,
            inputs,
        })
    }

    fn edge(&self, e: &pb::Edge, i: usize) -> Result<(NodeId, NodeId, Edge), ConvertError> {
        let at = |rest: &str| format!("graph.edges[{i}].{rest}");
        let (source, source_shape) = self.checked(e.source, || at("source"))?;
        let target = self.node_ref(e.target, || at("target"))?;
        if let Some(case) = e.case {
            match source_shape {
                Shape::Switch { cases } => {
                    if usize::try_from(case).map_or(true, |c| c > cases) {
                        return Err(ConvertError::CaseOutOfRange {
                            field: at("case"),
                            case,
                            switch: e.source,
                            cases,
                        });
                    }
                }
                other => {
                    return Err(ConvertError::CaseWithoutSwitch {
                        field: at("case"),
                        node: e.source,
                        kind: other.as_str(),
                    });
                }
            }
        }
        if e.on_failure && (!matches!(source_shape, Shape::Task) || !e.control || e.case.is_some()) {
            return Err(ConvertError::Invalid {
                field: at("on_failure"),
                reason: format!(
                    "is set, but the edge is not a control edge without a case leaving a task (its source, node {}, is a {} node)",
                    e.source,
                    source_shape.as_str()
                ),
            });
        }
        let edge = Edge {
            control: e.control,
            case: e.case,
            data: e.data.iter().map(|d| (d.output.clone(), d.input.clone())).collect(),
            bytes: e.bytes,
            on_failure: e.on_failure,
        };
        Ok((source, target, edge))
    }

    fn sources(&self, sources: &[pb::DataSource], at: &dyn Fn() -> String) -> Result<Vec<DataSource>, ConvertError> {
        sources
            .iter()
            .enumerate()
            .map(|(k, s)| self.source(s, &|| format!("{}[{k}]", at())))
            .collect()
    }

    fn source(&self, s: &pb::DataSource, at: &dyn Fn() -> String) -> Result<DataSource, ConvertError> {
        use pb::data_source::Source;
        match &s.source {
            Some(Source::Input(name)) => Ok(DataSource::Input(name.clone())),
            Some(Source::Output(o)) => Ok(DataSource::Output {
                node: self.node_ref(o.node, || format!("{}.output.node", at()))?,
                output: o.output.clone(),
            }),
            Some(Source::Item(n)) => Ok(DataSource::Item(self.foreach(*n, || format!("{}.item", at()))?)),
            Some(Source::Index(n)) => Ok(DataSource::Index(self.foreach(*n, || format!("{}.index", at()))?)),
            None => Err(ConvertError::Missing {
                field: format!("{}.source", at()),
            }),
        }
    }

    fn node_ref(&self, n: u32, at: impl FnOnce() -> String) -> Result<NodeId, ConvertError> {
        self.checked(n, at).map(|(id, _)| id)
    }

    /// A node reference, range-checked, with the shape of the node it names.
    fn checked(&self, n: u32, at: impl FnOnce() -> String) -> Result<(NodeId, Shape), ConvertError> {
        match usize::try_from(n).ok().and_then(|i| Some((i, *self.shapes.get(i)?))) {
            Some((i, shape)) => Ok((NodeIndex::new(i), shape)),
            None => Err(ConvertError::IndexOutOfRange {
                field: at(),
                index: n,
                len: self.shapes.len(),
                what: "nodes",
            }),
        }
    }

    /// A reference that must name a foreach node.
    fn foreach(&self, n: u32, at: impl Fn() -> String) -> Result<NodeId, ConvertError> {
        match self.checked(n, &at)? {
            (id, Shape::Foreach) => Ok(id),
            (_, other) => Err(ConvertError::NotAForeach {
                field: at(),
                node: n,
                kind: other.as_str(),
            }),
        }
    }

    /// A foreach's collect node, which must be a join node.
    fn collect(&self, n: u32, at: impl Fn() -> String) -> Result<NodeId, ConvertError> {
        match self.checked(n, &at)? {
            (id, Shape::Join) => Ok(id),
            (_, other) => Err(ConvertError::CollectNotJoin {
                field: at(),
                node: n,
                kind: other.as_str(),
            }),
        }
    }
}

/// Rejects a foreach that is (directly or through other foreach nodes) inside itself, so that
/// walking a node's scopes outwards always ends. Every `scope` already names a foreach node.
fn check_scopes(graph: &DiGraph<Node, Edge, u32>) -> Result<(), ConvertError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Unvisited,
        OnPath,
        Done,
    }
    let mut marks = vec![Mark::Unvisited; graph.node_count()];
    let mut path = Vec::new();
    for start in graph.node_indices() {
        let mut cur = Some(start);
        while let Some(n) = cur {
            match marks.get(n.index()).copied() {
                Some(Mark::Unvisited) => {}
                Some(Mark::OnPath) => {
                    return Err(ConvertError::ScopeCycle { node: node_index(n) });
                }
                Some(Mark::Done) | None => break,
            }
            if let Some(m) = marks.get_mut(n.index()) {
                *m = Mark::OnPath;
            }
            path.push(n);
            cur = graph.node_weight(n).and_then(|node| node.scope);
        }
        for n in path.drain(..) {
            if let Some(m) = marks.get_mut(n.index()) {
                *m = Mark::Done;
            }
        }
    }
    Ok(())
}

fn groups_from_proto(groups: &[pb::Group], node_count: usize, worker_count: usize) -> Result<Vec<Group>, ConvertError> {
    groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            if usize::try_from(g.id).ok() != Some(i) {
                return Err(ConvertError::GroupId { index: i, id: g.id });
            }
            if usize::try_from(g.worker).map_or(true, |w| w >= worker_count) {
                return Err(ConvertError::IndexOutOfRange {
                    field: format!("groups[{i}].worker"),
                    index: g.worker,
                    len: worker_count,
                    what: "workers",
                });
            }
            Ok(Group {
                id: g.id,
                worker: g.worker,
                nodes: g
                    .nodes
                    .iter()
                    .enumerate()
                    .map(|(j, &n)| node_in_range(n, node_count, || format!("groups[{i}].nodes[{j}]")))
                    .collect::<Result<_, _>>()?,
                slots: g.slots,
                quota_bytes: g.quota_bytes,
                local_bytes: g.local_bytes,
            })
        })
        .collect()
}

/// Checks `node_group` against the groups' node lists (already range-checked): one entry per
/// node, each naming a group, every node listed in exactly the group `node_group` names.
fn node_group_from_proto(
    node_group: &[u32],
    groups: &[pb::Group],
    node_count: usize,
) -> Result<Vec<u32>, ConvertError> {
    if node_group.len() != node_count {
        return Err(ConvertError::LengthMismatch {
            field: "node_group",
            len: node_group.len(),
            expected: node_count,
            what: "node",
        });
    }
    for (n, &g) in node_group.iter().enumerate() {
        if usize::try_from(g).map_or(true, |g| g >= groups.len()) {
            return Err(ConvertError::IndexOutOfRange {
                field: format!("node_group[{n}]"),
                index: g,
                len: groups.len(),
                what: "groups",
            });
        }
    }
    let mut listed_in: Vec<Option<u32>> = vec![None; node_count];
    for group in groups {
        let gi = group.id; // its position, checked by `groups_from_proto`
        for &n in &group.nodes {
            let Some(slot) = listed_in.get_mut(n as usize) else {
                continue; // out of range, rejected by `groups_from_proto`
            };
            if let Some(first) = *slot {
                return Err(ConvertError::NodeInSeveralGroups {
                    node: n,
                    first,
                    second: gi,
                });
            }
            *slot = Some(gi);
            let ng = node_group.get(n as usize).copied().unwrap_or(u32::MAX);
            if ng != gi {
                return Err(ConvertError::GroupMismatch {
                    node: n,
                    node_group: ng,
                    group: gi,
                });
            }
        }
    }
    if let Some(n) = listed_in.iter().position(Option::is_none) {
        return Err(ConvertError::NodeInNoGroup {
            node: n as u32,
            node_group: node_group.get(n).copied().unwrap_or(u32::MAX),
        });
    }
    Ok(node_group.to_vec())
}

fn node_in_range(n: u32, len: usize, at: impl FnOnce() -> String) -> Result<NodeId, ConvertError> {
    match usize::try_from(n) {
        Ok(i) if i < len => Ok(NodeIndex::new(i)),
        _ => Err(ConvertError::IndexOutOfRange {
            field: at(),
            index: n,
            len,
            what: "nodes",
        }),
    }
}

fn non_negative(value: f64, at: impl FnOnce() -> String) -> Result<f64, ConvertError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(ConvertError::InvalidNumber {
            field: at(),
            value,
            range: "a finite number ≥ 0",
        })
    }
}

fn missing(field: &str) -> ConvertError {
    ConvertError::Missing {
        field: field.to_owned(),
    }
}

fn unknown_enum(field: String, enum_name: &'static str, value: i32) -> ConvertError {
    ConvertError::UnknownEnum {
        field,
        enum_name,
        value,
    }
}

fn format_from_proto(value: i32) -> Result<SourceFormat, ConvertError> {
    match pb::SourceFormat::try_from(value) {
        Ok(pb::SourceFormat::Native) => Ok(SourceFormat::Native),
        Ok(pb::SourceFormat::FaasflowFlat) => Ok(SourceFormat::FaasflowFlat),
        Ok(pb::SourceFormat::FaasflowHierarchical) => Ok(SourceFormat::FaasflowHierarchical),
        Ok(pb::SourceFormat::Unspecified) | Err(_) => {
            Err(unknown_enum("graph.format".to_owned(), "SourceFormat", value))
        }
    }
}

fn value_kind_from_proto(value: i32, at: impl FnOnce() -> String) -> Result<ValueKind, ConvertError> {
    match pb::ValueKind::try_from(value) {
        Ok(pb::ValueKind::Bytes) => Ok(ValueKind::Bytes),
        Ok(pb::ValueKind::Json) => Ok(ValueKind::Json),
        Ok(pb::ValueKind::List) => Ok(ValueKind::List),
        Ok(pb::ValueKind::Unspecified) | Err(_) => Err(unknown_enum(at(), "ValueKind", value)),
    }
}

fn isolation_from_proto(value: i32, at: impl FnOnce() -> String) -> Result<Isolation, ConvertError> {
    match pb::Isolation::try_from(value) {
        Ok(pb::Isolation::Thread) => Ok(Isolation::Thread),
        Ok(pb::Isolation::Process) => Ok(Isolation::Process),
        Ok(pb::Isolation::Container) => Ok(Isolation::Container),
        Ok(pb::Isolation::Unspecified) | Err(_) => Err(unknown_enum(at(), "Isolation", value)),
    }
}

/// `retry.on`: empty means every kind.
fn failure_kinds_from_proto(values: &[i32], at: impl Fn() -> String) -> Result<FailureKinds, ConvertError> {
    if values.is_empty() {
        return Ok(FailureKinds::ALL);
    }
    let mut kinds = FailureKinds::NONE;
    for &value in values {
        let kind = failure_kind_from_proto(value).ok_or_else(|| unknown_enum(at(), "FailureKind", value))?;
        kinds = kinds.with(kind);
    }
    Ok(kinds)
}

/// A failure kind from the wire; `None` for unspecified or unknown values.
fn failure_kind_from_proto(value: i32) -> Option<FailureKind> {
    match pb::FailureKind::try_from(value) {
        Ok(pb::FailureKind::Error) => Some(FailureKind::Error),
        Ok(pb::FailureKind::Panic) => Some(FailureKind::Panic),
        Ok(pb::FailureKind::Crash) => Some(FailureKind::Crash),
        Ok(pb::FailureKind::Timeout) => Some(FailureKind::Timeout),
        Ok(pb::FailureKind::Data) => Some(FailureKind::Data),
        Ok(pb::FailureKind::Unspecified) | Err(_) => None,
    }
}

fn failure_kinds_to_proto(kinds: FailureKinds) -> Vec<i32> {
    if kinds == FailureKinds::ALL {
        return Vec::new();
    }
    kinds.kinds().map(failure_kind_to_proto).collect()
}

fn failure_kind_to_proto(kind: FailureKind) -> i32 {
    match kind {
        FailureKind::Error => pb::FailureKind::Error as i32,
        FailureKind::Panic => pb::FailureKind::Panic as i32,
        FailureKind::Crash => pb::FailureKind::Crash as i32,
        FailureKind::Timeout => pb::FailureKind::Timeout as i32,
        FailureKind::Data => pb::FailureKind::Data as i32,
    }
}

fn join_kind_from_proto(value: i32, at: impl FnOnce() -> String) -> Result<JoinKind, ConvertError> {
    match pb::JoinKind::try_from(value) {
        Ok(pb::JoinKind::Parallel) => Ok(JoinKind::Parallel),
        Ok(pb::JoinKind::Collect) => Ok(JoinKind::Collect),
        Ok(pb::JoinKind::Pass) => Ok(JoinKind::Pass),
        Ok(pb::JoinKind::End) => Ok(JoinKind::End),
        Ok(pb::JoinKind::Unspecified) | Err(_) => Err(unknown_enum(at(), "JoinKind", value)),
    }
}

fn tier_from_proto(value: i32, at: impl FnOnce() -> String) -> Result<Tier, ConvertError> {
    match pb::Tier::try_from(value) {
        Ok(pb::Tier::InProcess) => Ok(Tier::InProcess),
        Ok(pb::Tier::SharedMemory) => Ok(Tier::SharedMemory),
        Ok(pb::Tier::Peer) => Ok(Tier::Peer),
        Ok(pb::Tier::Remote) => Ok(Tier::Remote),
        Ok(pb::Tier::Unspecified) | Err(_) => Err(unknown_enum(at(), "Tier", value)),
    }
}

#[cfg(test)]
mod tests;
