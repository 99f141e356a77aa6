//! Faastlane's rule for functions in Python: which of a plan group's Python functions share an
//! interpreter, and which may run at once and so need processes of their own.
//!
//! Python runs one thread at a time per interpreter (the GIL). Functions that run one after
//! another lose nothing by sharing an interpreter, and gain hand-overs in place (the in-process
//! tier); functions that could run at the same time would be serialised by it. So the
//! thread-isolated Python functions of a plan group share one pool of interpreters, each
//! running one call at a time: calls in sequence reuse the warm one, and calls that may run at
//! once (branches of a `parallel`, elements of a `foreach`) go to other processes of the pool,
//! as many as can run at once, up to the worker's cores (the daemon caps it). `isolation:
//! process` or `container` still gives a function a pool of its own.

use std::collections::BTreeMap;

use petgraph::Direction;
use petgraph::visit::{Dfs, Reversed};

use crate::dag::{Isolation, NodeId, NodeKind, Workflow};
use crate::plan::Plan;

/// Why a Python function may run at the same time as another call of its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Concurrent {
    /// It is in the body of foreach `foreach`, whose elements may run at once (`width` of them
    /// expected).
    Foreach { foreach: NodeId, width: u32 },
    /// Nothing orders it with `other` (a branch of a `parallel` beside it).
    Parallel { other: NodeId },
}

/// The thread-isolated Python functions of one plan group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sharing {
    /// The group.
    pub group: u32,
    /// Its Python functions that share the group's interpreters, in node order.
    pub tasks: Vec<NodeId>,
    /// Those that may run at once with another call, and why.
    pub concurrent: Vec<(NodeId, Concurrent)>,
    /// How many calls of the group may run at once (1 when all run in sequence): the processes
    /// the group's pool warms, before the worker's cores cap it.
    pub at_once: u32,
}

/// The sharing of every plan group with thread-isolated Python functions, by group.
pub fn python_sharing(wf: &Workflow, plan: &Plan) -> BTreeMap<u32, Sharing> {
    let mut groups: BTreeMap<u32, Vec<NodeId>> = BTreeMap::new();
    for n in wf.graph.node_indices() {
        let Some(task) = wf.graph[n].task() else { continue };
        if task.spec.python.is_none() || task.spec.isolation != Isolation::Thread {
            continue;
        }
        let group = plan.node_group.get(n.index()).copied().unwrap_or(0);
        groups.entry(group).or_default().push(n);
    }
    groups
        .into_iter()
        .map(|(group, tasks)| {
            let concurrent = concurrency(wf, &tasks);
            // Each foreach's elements at once, and each branch that may run beside another.
            let mut foreach: BTreeMap<NodeId, u32> = BTreeMap::new();
            let mut branches = 0u32;
            for (_, why) in &concurrent {
                match why {
                    Concurrent::Foreach { foreach: fe, width } => {
                        foreach.insert(*fe, (*width).max(1));
                    }
                    Concurrent::Parallel { .. } => branches += 1,
                }
            }
            let at_once = foreach.values().fold(branches, |a, w| a.saturating_add(*w));
            let sharing = Sharing {
                group,
                tasks,
                concurrent,
                at_once: at_once.max(1),
            };
            (group, sharing)
        })
        .collect()
}

/// Which of `tasks` may run at once with another call of `tasks`.
fn concurrency(wf: &Workflow, tasks: &[NodeId]) -> Vec<(NodeId, Concurrent)> {
    let mut out = Vec::new();
    for &t in tasks {
        // The innermost foreach around it whose elements may run at once.
        let mut scope = wf.graph[t].scope;
        let mut found = None;
        while let Some(fe) = scope {
            if let NodeKind::Foreach(f) = &wf.graph[fe].kind
                && f.max_concurrency != 1
            {
                let width = if f.max_concurrency == 0 {
                    f.width
                } else {
                    f.width.min(f.max_concurrency)
                };
                found = Some(Concurrent::Foreach { foreach: fe, width });
                break;
            }
            scope = wf.graph[fe].scope;
        }
        if let Some(why) = found {
            out.push((t, why));
            continue;
        }
        // Another task of the group that neither reaches nor is reached by it.
        let after = reachable(wf, t, Direction::Outgoing);
        let before = reachable(wf, t, Direction::Incoming);
        if let Some(&other) = tasks
            .iter()
            .find(|&&u| u != t && !after.contains(&u) && !before.contains(&u))
        {
            out.push((t, Concurrent::Parallel { other }));
        }
    }
    out
}

/// The nodes reachable from `from` along the control and data edges (`Incoming`: that reach
/// it), `from` excluded.
fn reachable(wf: &Workflow, from: NodeId, direction: Direction) -> Vec<NodeId> {
    let mut seen = Vec::new();
    match direction {
        Direction::Outgoing => {
            let mut dfs = Dfs::new(&wf.graph, from);
            while let Some(n) = dfs.next(&wf.graph) {
                seen.push(n);
            }
        }
        Direction::Incoming => {
            let reversed = Reversed(&wf.graph);
            let mut dfs = Dfs::new(reversed, from);
            while let Some(n) = dfs.next(reversed) {
                seen.push(n);
            }
        }
    }
    seen.retain(|&n| n != from);
    seen
}
