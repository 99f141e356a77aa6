//! Decoding a plan from the wire (untrusted): its workers, groups and the group of every node,
//! edge tiers and critical path, each index range-checked and group membership consistent,
//! around the workflow graph decoded by `graph_from_proto.rs`.

use std::collections::HashMap;

use faasflow_core::dag::{NodeId, Workflow};
use faasflow_core::plan::{ClusterView, CriticalPath, Group, Plan, WorkerLoad, WorkerView};
use faasflow_proto::v1 as pb;
use petgraph::graph::NodeIndex;

use super::ConvertError;
use super::enums::{mode_from_proto, tier_from_proto};
use super::error::{missing, non_negative};
use super::graph_from_proto::workflow_from_proto;

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
