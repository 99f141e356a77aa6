//! The skip rule and how inputs are read, per node instance.

use std::sync::Arc;

use crate::NodeId;
use crate::dag::DataSource;
use petgraph::Direction;
use petgraph::visit::EdgeRef;

use super::{InputValue, Invocation, Key, Status};

/// Whether source `p` counts as skipped, seen from a consumer in scope `cscope` at `element`.
pub(super) fn source_skipped(inv: &Invocation, p: NodeId, cscope: Option<NodeId>, element: Option<u32>) -> bool {
    let wf = &inv.inst_key.wf;
    let pscope = wf.graph[p].scope;
    // A caught task counts as skipped (its catch step stands in for it).
    let skipped = |k: Key| {
        inv.inst
            .get(&k)
            .is_some_and(|i| matches!(i.status, Status::Skipped | Status::Caught))
    };
    if cscope == Some(p) {
        return false; // the foreach, seen from its body, ran
    }
    match pscope {
        None => skipped((p.index() as u32, None)),
        Some(_) if pscope == cscope => skipped((p.index() as u32, element)),
        Some(f) => {
            // A body node read from outside: skipped when its foreach was, or in every element.
            if skipped((f.index() as u32, None)) {
                return true;
            }
            let n = inv.foreach.get(&(f.index() as u32)).map_or(0, |s| s.list.len());
            n > 0 && (0..n as u32).all(|e| skipped((p.index() as u32, Some(e))))
        }
    }
}

/// The skip rule: does instance (n, element) run?
pub(super) fn activated(inv: &Invocation, n: NodeId, element: Option<u32>) -> bool {
    let wf = &inv.inst_key.wf;
    let scope = wf.graph[n].scope;
    let incoming: Vec<_> = wf.graph.edges_directed(n, Direction::Incoming).collect();
    if incoming.is_empty() {
        return true;
    }
    let has_control = incoming.iter().any(|e| e.weight().control);
    incoming.iter().filter(|e| e.weight().control || !has_control).any(|e| {
        let p = e.source();
        if e.weight().on_failure {
            // A catch step runs when its task (same scope) was caught.
            return inv
                .inst
                .get(&(p.index() as u32, element))
                .is_some_and(|i| i.status == Status::Caught);
        }
        if source_skipped(inv, p, scope, element) {
            return false;
        }
        match e.weight().case {
            None => true,
            Some(case) => {
                let pk = if wf.graph[p].scope == scope {
                    (p.index() as u32, element)
                } else {
                    (p.index() as u32, None)
                };
                inv.inst.get(&pk).and_then(|i| i.chosen) == Some(case)
            }
        }
    })
}

/// The value of an input or output with these sources, read by `consumer` (None: the
/// workflow result) at `element`.
pub(super) fn value_of(
    inv: &Invocation,
    sources: &[DataSource],
    consumer: Option<NodeId>,
    element: Option<u32>,
) -> InputValue {
    let wf = &inv.inst_key.wf;
    let cscope = consumer.and_then(|c| wf.graph[c].scope);
    for s in sources {
        match s {
            DataSource::Input(name) => {
                return inv
                    .input
                    .get(name)
                    .cloned()
                    .map_or(InputValue::Absent, InputValue::Json);
            }
            DataSource::Item(f) | DataSource::Index(f) => {
                let (Some(el), Some(fs)) = (element, inv.foreach.get(&(f.index() as u32))) else {
                    return InputValue::Absent;
                };
                return match s {
                    DataSource::Item(_) => fs
                        .list
                        .get(el as usize)
                        .map_or(InputValue::Absent, |v| InputValue::Json(Arc::new(v.clone()))),
                    _ => InputValue::Json(Arc::new(el.into())),
                };
            }
            DataSource::Output { node, output } => {
                if source_skipped(inv, *node, cscope, element) {
                    continue;
                }
                let find = |k: Key| {
                    inv.inst
                        .get(&k)
                        .and_then(|i| i.outputs.iter().find(|(o, _)| o == output).map(|(_, r)| r.clone()))
                };
                let pscope = wf.graph[*node].scope;
                return match pscope {
                    Some(f) if pscope != cscope => {
                        let n = inv.foreach.get(&(f.index() as u32)).map_or(0, |s| s.list.len());
                        InputValue::List(
                            (0..n as u32)
                                .filter_map(|e| find((node.index() as u32, Some(e))))
                                .collect(),
                        )
                    }
                    Some(_) => find((node.index() as u32, element)).map_or(InputValue::Absent, InputValue::Object),
                    None => find((node.index() as u32, None)).map_or(InputValue::Absent, InputValue::Object),
                };
            }
        }
    }
    InputValue::Absent
}

/// CEL variables for a switch at `element`: `input` and `step` → {output: json} of every done
/// step of the root scope and of the same element.
pub(super) fn cel_variables(inv: &Invocation, element: Option<u32>) -> Vec<(String, serde_json::Value)> {
    let wf = &inv.inst_key.wf;
    let input = inv.input.iter().map(|(k, v)| (k.clone(), (**v).clone())).collect();
    let mut vars = vec![("input".to_owned(), serde_json::Value::Object(input))];
    let mut keys: Vec<&Key> = inv.inst.keys().filter(|k| k.1.is_none() || k.1 == element).collect();
    keys.sort();
    for k in keys {
        let mut i = &inv.inst[k];
        if i.status == Status::Caught {
            // Conditions read a caught task's values from its catch step, under its own name.
            let n = NodeId::new(k.0 as usize);
            let stand_in = super::stand_in(inv, n, k.1);
            match inv.inst.get(&(stand_in.index() as u32, k.1)) {
                Some(c) if stand_in != n => i = c,
                _ => continue,
            }
        }
        if i.status != Status::Done {
            continue;
        }
        let fields: serde_json::Map<String, serde_json::Value> = i
            .outputs
            .iter()
            .filter_map(|(name, r)| r.json.as_deref().map(|j| (name.clone(), j.clone())))
            .collect();
        if !fields.is_empty() {
            let name = wf.graph[NodeId::new(k.0 as usize)].name.clone();
            vars.push((name, serde_json::Value::Object(fields)));
        }
    }
    vars
}
