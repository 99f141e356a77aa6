//! Which task may follow a running one on the thread that runs it: the instance starts it the
//! moment the running task succeeds, before the driver hears of the success (worker-side
//! scheduling within one instance, with no round trip through the driver).

use petgraph::Direction;
use petgraph::visit::EdgeRef;

use super::semantics::{activated, source_skipped};
use super::{Engine, InvocationId, Status};
use crate::NodeId;
use crate::dag::DataSource;

/// A local task that [`Engine::function_done`] of a running task will trigger, whatever
/// else happens before: every other predecessor is resolved, it is not a catch step, and
/// each of its inputs is an output of the running task. Its trigger, when it comes, carries
/// exactly those outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Follower {
    /// The task.
    pub node: NodeId,
    /// Each of its inputs and the output of the running task it is: (input, output).
    pub inputs: Vec<(String, String)>,
}

impl Engine {
    /// The task that follows running task `node` (foreach `element`) of `invocation`, if one
    /// does (the first such successor in edge order). Only the success of `node` is foreseen:
    /// when it fails, or the invocation ends first, the follower is not triggered.
    pub fn follower(&self, invocation: InvocationId, node: NodeId, element: Option<u32>) -> Option<Follower> {
        let inv = self.invocations.get(&invocation)?;
        let key = (node.index() as u32, element);
        if !matches!(inv.inst.get(&key)?.status, Status::Running { .. }) {
            return None;
        }
        let wf = &inv.inst_key.wf;
        let scope = wf.graph[node].scope;
        wf.graph
            .edges_directed(node, Direction::Outgoing)
            .filter(|e| !e.weight().on_failure)
            .find_map(|e| {
                let g = e.target();
                if wf.graph[g].scope != scope || !inv.inst_key.local.contains(&g) {
                    return None;
                }
                let task = wf.graph[g].task()?;
                let gi = inv.inst.get(&(g.index() as u32, element))?;
                // Waiting for `node` alone (one edge from it).
                if gi.status != Status::Waiting || gi.remaining != 1 {
                    return None;
                }
                if wf
                    .graph
                    .edges_directed(g, Direction::Incoming)
                    .any(|e| e.weight().on_failure)
                {
                    return None;
                }
                // `node` running counts as not skipped, as it will once done.
                if !activated(inv, g, element) {
                    return None;
                }
                let mut inputs = Vec::with_capacity(task.inputs.len());
                for b in &task.inputs {
                    // The first source not skipped is what the input reads.
                    let first = b.sources.iter().find(|s| match s {
                        DataSource::Output { node: p, .. } => *p == node || !source_skipped(inv, *p, scope, element),
                        _ => true,
                    })?;
                    match first {
                        DataSource::Output { node: p, output } if *p == node => {
                            inputs.push((b.name.clone(), output.clone()));
                        }
                        _ => return None,
                    }
                }
                Some(Follower { node: g, inputs })
            })
    }
}
