//! Encoding: a plan, its workflow graph and the cluster it was made for, as proto messages.
//! Infallible: core's types are already consistent.

use faasflow_core::dag::{DataSource, FunctionSpec, Node, NodeId, NodeKind, Workflow};
use faasflow_core::plan::{ClusterView, Plan};
use faasflow_proto::v1 as pb;

use super::enums::{
    failure_kinds_to_proto, format_to_proto, isolation_to_proto, join_kind_to_proto, mode_to_proto, tier_to_proto,
    value_kind_to_proto,
};

/// Encodes a plan with the workflow and cluster it was made for.
///
/// Expects what the partitioner produces: `plan.workflow == wf.name` and one
/// [`WorkerLoad`] per worker of `cluster` (the wire has one `Worker` per worker, so extra
/// entries on either side would be dropped; debug builds assert it).
///
/// [`WorkerLoad`]: faasflow_core::plan::WorkerLoad
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
        python: s.python.as_ref().map(|p| pb::PythonFunction {
            handler: p.handler.clone(),
            code: p.code.clone(),
            requirements: p.requirements.clone(),
            faasflow_v1: p.faasflow_v1,
        }),
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
pub(super) fn node_index(n: NodeId) -> u32 {
    n.index() as u32
}

pub(super) fn node_indices(nodes: &[NodeId]) -> Vec<u32> {
    nodes.iter().map(|&n| node_index(n)).collect()
}
