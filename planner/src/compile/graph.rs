//! The edges of the graph being built: control and data edges added (or merged into one
//! already there), the node and output a value is read from, and the check that the graph has
//! no cycle. Shared by the compiler and the FaaSFlow import.

use petgraph::visit::EdgeRef;

use crate::error::{ErrorKind, Pos, WdlError};
use faasflow_core::dag::{DataSource, Edge, NodeId, Workflow};

/// Fails with a readable message if the graph has a cycle.
pub fn check_acyclic(wf: &Workflow) -> Result<(), WdlError> {
    let Err(cycle) = faasflow_core::graph::topo_order(&wf.graph) else {
        return Ok(());
    };
    let name = |n: NodeId| wf.graph[n].name.as_str();
    let mut names: Vec<&str> = cycle.iter().map(|&n| name(n)).collect();
    if let Some(first) = names.first().copied() {
        names.push(first);
    }
    let circle = names.join(" → ");
    // A data edge in a loop of otherwise ordered steps: a step reads one that runs after it.
    let steps = cycle.len();
    for i in 0..steps {
        let (s, t) = (cycle[i], cycle[(i + 1) % steps]);
        let reads = wf
            .graph
            .edges_connecting(s, t)
            .find(|e| !e.weight().control && !e.weight().data.is_empty());
        if let Some(e) = reads {
            let output = &e.weight().data[0].0;
            return Err(WdlError::new(
                ErrorKind::Cycle,
                wf.graph[t].pos,
                format!(
                    "`{}` reads `{}.{output}`, but `{}` runs after `{}` ({circle})",
                    name(t),
                    name(s),
                    name(s),
                    name(t)
                ),
            )
            .expected("each step reads only outputs of steps that run before it")
            .hint(format!(
                "move `{}` before `{}`, or read an output of a step that runs earlier",
                name(s),
                name(t)
            )));
        }
    }
    let pos = cycle.first().map_or(Pos::UNKNOWN, |&n| wf.graph[n].pos);
    Err(
        WdlError::new(ErrorKind::Cycle, pos, format!("the steps lead in a circle: {circle}"))
            .expected("a graph without cycles")
            .hint("remove the `next` entry (or the reference) that leads back to an earlier step"),
    )
}

/// The node that carries a value to its readers.
pub(crate) fn source_node(s: &DataSource) -> Option<NodeId> {
    match s {
        DataSource::Input(_) => None,
        DataSource::Output { node, .. } | DataSource::Item(node) | DataSource::Index(node) => Some(*node),
    }
}

pub(super) fn data_name(s: &DataSource) -> &str {
    match s {
        DataSource::Output { output, .. } => output,
        DataSource::Item(_) => "item",
        DataSource::Index(_) => "index",
        DataSource::Input(name) => name,
    }
}

/// Adds (or marks) a control edge `from → to` for `case`.
pub(crate) fn connect_control(wf: &mut Workflow, from: NodeId, to: NodeId, case: Option<u32>) {
    let existing = wf
        .graph
        .edges_connecting(from, to)
        .find(|e| e.weight().case == case && !e.weight().on_failure)
        .map(|e| e.id());
    match existing {
        Some(e) => wf.graph[e].control = true,
        None => {
            wf.graph.add_edge(
                from,
                to,
                Edge {
                    control: true,
                    case,
                    ..Edge::default()
                },
            );
        }
    }
}

/// Adds data `output → input` of `bytes` to the edge `from → to` (creating it if needed).
pub(crate) fn add_data(wf: &mut Workflow, from: NodeId, to: NodeId, output: &str, input: &str, bytes: u64) {
    let existing = wf
        .graph
        .edges_connecting(from, to)
        .find(|e| e.weight().case.is_none() && !e.weight().on_failure)
        .map(|e| e.id());
    let e = match existing {
        Some(e) => e,
        None => wf.graph.add_edge(from, to, Edge::default()),
    };
    let edge = &mut wf.graph[e];
    let pair = (output.to_owned(), input.to_owned());
    if !edge.data.contains(&pair) {
        // The same output read twice by one task crosses once.
        if !edge.data.iter().any(|(o, _)| o == output) {
            edge.bytes = edge.bytes.saturating_add(bytes);
        }
        edge.data.push(pair);
    }
}
