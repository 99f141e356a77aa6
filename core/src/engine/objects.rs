//! Reference counts of objects: one read per consumer instance (a foreach body reads once
//! per element) and one for the workflow's result; released exactly once.

use std::collections::VecDeque;

use crate::NodeId;
use petgraph::Direction;
use petgraph::visit::EdgeRef;

use super::{Action, Installed, Invocation, Key, Status};

/// How many reads will be made of output `name` of instance `key`: one per consumer
/// instance, one for the workflow result. A consumer in a foreach body that has not fanned out
/// yet counts one token, replaced by the element count at fan-out.
pub(super) fn readers_of(installed: &Installed, inv: &Invocation, key: Key, name: &str) -> u32 {
    let wf = &installed.wf;
    let n = NodeId::new(key.0 as usize);
    let scope = wf.graph[n].scope;
    let mut count = u32::from(installed.result_reads.contains(&(key.0, name.to_owned())));
    for e in wf.graph.edges_directed(n, Direction::Outgoing) {
        if !e.weight().data.iter().any(|(o, _)| o == name) {
            continue;
        }
        let mscope = wf.graph[e.target()].scope;
        count += match (scope, mscope) {
            (s, m) if s == m => 1,
            (None, Some(f)) => match inv.inst.get(&(f.index() as u32, None)).map(|i| i.status) {
                Some(Status::Done) => inv.foreach.get(&(f.index() as u32)).map_or(0, |s| s.list.len() as u32),
                Some(Status::Skipped) => 0,
                _ => 1,
            },
            _ => 1,
        };
    }
    count
}

/// At fan-out of foreach `f` with `k` elements, or its skip (`k` = 0): each object of a
/// root-scope producer read by the body held one token; it now holds `k` reads.
pub(super) fn adjust_fanout_tokens(actions: &mut VecDeque<Action>, inv: &mut Invocation, f: NodeId, k: u32) {
    let wf = inv.inst_key.wf.clone();
    // `readers_of` counts one token per (edge, output); mirror that exactly.
    let mut per_edge: Vec<(NodeId, String)> = Vec::new();
    for m in wf.graph.node_indices().filter(|&m| wf.graph[m].scope == Some(f)) {
        for e in wf.graph.edges_directed(m, Direction::Incoming) {
            if wf.graph[e.source()].scope.is_none() && e.source() != f {
                let mut seen: Vec<&String> = Vec::new();
                for (o, _) in &e.weight().data {
                    if !seen.contains(&o) {
                        seen.push(o);
                        per_edge.push((e.source(), o.clone()));
                    }
                }
            }
        }
    }
    for (p, o) in per_edge {
        let Some(obj) = inv
            .inst
            .get(&(p.index() as u32, None))
            .filter(|i| i.status == Status::Done)
            .and_then(|i| i.outputs.iter().find(|(x, _)| *x == o).map(|(_, r)| r.id))
        else {
            continue;
        };
        // Token → k reads.
        if k == 0 {
            release_one(actions, inv, obj);
        } else if let Some(c) = inv.objects.get_mut(&obj) {
            *c += k - 1;
        }
    }
}

pub(super) fn release_one(actions: &mut VecDeque<Action>, inv: &mut Invocation, obj: u64) {
    if let Some(c) = inv.objects.get_mut(&obj) {
        *c -= 1;
        if *c == 0 {
            inv.objects.remove(&obj);
            actions.push_back(Action::Release { object: obj });
        }
    }
}

/// Instance `key` is done or skipped: it will read none of the objects it could have read.
pub(super) fn drop_reads(actions: &mut VecDeque<Action>, installed: &Installed, inv: &mut Invocation, key: Key) {
    let wf = &installed.wf;
    let m = NodeId::new(key.0 as usize);
    let mscope = wf.graph[m].scope;
    let mut objs = Vec::new();
    for e in wf.graph.edges_directed(m, Direction::Incoming) {
        let p = e.source();
        let pscope = wf.graph[p].scope;
        let mut seen: Vec<&String> = Vec::new();
        for (o, _) in &e.weight().data {
            if seen.contains(&o) {
                continue;
            }
            seen.push(o);
            let producers: Vec<Key> = if pscope == mscope {
                vec![(p.index() as u32, key.1)]
            } else if pscope.is_none() {
                vec![(p.index() as u32, None)]
            } else {
                let f = pscope.map_or(0, |f| f.index() as u32);
                let n = inv.foreach.get(&f).map_or(0, |s| s.list.len() as u32);
                (0..n).map(|el| (p.index() as u32, Some(el))).collect()
            };
            for pk in producers {
                if let Some(id) = inv
                    .inst
                    .get(&pk)
                    .and_then(|i| i.outputs.iter().find(|(x, _)| x == o).map(|(_, r)| r.id))
                {
                    objs.push(id);
                }
            }
        }
    }
    for id in objs {
        release_one(actions, inv, id);
    }
}

/// Releases every object an ending invocation still holds, in id order.
pub(super) fn release_all(actions: &mut VecDeque<Action>, inv: Invocation) {
    let early = inv
        .early
        .into_values()
        .flat_map(|e| match e {
            super::Early::Done(outputs) => outputs,
            super::Early::Caught(_) => Vec::new(),
        })
        .map(|(_, o)| o.id);
    let mut ids: Vec<u64> = inv.objects.into_keys().chain(early).collect();
    ids.sort_unstable();
    for id in ids {
        actions.push_back(Action::Release { object: id });
    }
}
