//! The compiler: a WDL [`Document`] becomes a [`Workflow`] DAG.
//!
//! Structure becomes control edges (a sequence chains its steps, a parallel fans out, a switch
//! gets a virtual node whose out-edges carry case numbers, a foreach gets a virtual fan-out
//! node and a collect node); references become data edges. Names and references are checked
//! here, with the whole workflow in view, so forward references are reported as cycles rather
//! than as unknown names.
//!
//! The parts: `steps.rs` turns the structure into nodes and control edges,
//! `references.rs` resolves references into data edges once every node exists,
//! `conditions.rs` checks switch conditions (CEL) and finds what they read, `names.rs` checks
//! names, and `graph.rs` adds edges and checks that the graph has no cycle (the last three are
//! shared with the FaaSFlow import).

use std::collections::{BTreeMap, HashMap};

use crate::error::{ErrorKind, WdlError};
use crate::wdl::{Condition, Document, FunctionDecl, Ref};
use faasflow_core::dag::{NodeId, SourceFormat, Workflow, WorkflowInput, WorkflowOutput};

mod conditions;
mod graph;
mod names;
mod references;
mod steps;

pub(crate) use conditions::check_cel_syntax;
pub use graph::check_acyclic;
pub(crate) use graph::{add_data, connect_control};
pub(crate) use names::is_identifier;
pub use names::{MAX_NAME_BYTES, check_name};

pub use faasflow_core::dag::CATCH_INPUT;

/// The element name a foreach body uses when the foreach has no name.
pub const DEFAULT_ELEMENT: &str = "each";

/// A predecessor of the next step: a node and, for a switch, the case that leads on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pred {
    node: NodeId,
    case: Option<u32>,
}

/// A reference waiting for every node to exist.
#[derive(Debug)]
enum Pending {
    Input {
        node: NodeId,
        input: usize,
        refs: Vec<Ref>,
        elements: Vec<(String, NodeId)>,
    },
    Condition {
        node: NodeId,
        cond: Condition,
        elements: Vec<(String, NodeId)>,
    },
    Over {
        node: NodeId,
        over: Ref,
        elements: Vec<(String, NodeId)>,
    },
    Output {
        index: usize,
        refs: Vec<Ref>,
    },
}

/// Compiles a decoded document.
pub fn compile(doc: &Document, format: SourceFormat) -> Result<Workflow, WdlError> {
    let mut c = Compiler {
        doc,
        wf: Workflow::new(doc.name.0.clone(), format),
        functions: BTreeMap::new(),
        names: HashMap::new(),
        pending: Vec::new(),
        elements: Vec::new(),
        cases: Vec::new(),
        case_path: Vec::new(),
        catches: HashMap::new(),
    };
    check_name("the workflow's name", &doc.name.0, doc.name.1)?;
    for f in &doc.functions {
        check_name("the function name", &f.name.0, f.name.1)?;
        c.functions.insert(f.name.0.as_str(), f);
    }
    if let Some(inputs) = &doc.inputs {
        for i in inputs {
            if c.wf.inputs.iter().any(|x| x.name == i.name.0) {
                return Err(WdlError::new(
                    ErrorKind::DuplicateName,
                    i.name.1,
                    format!("input `{}` is declared twice", i.name.0),
                ));
            }
            c.wf.inputs.push(WorkflowInput {
                name: i.name.0.clone(),
                kind: i.kind,
                size: i.size,
            });
        }
    }
    c.steps(&doc.steps, Vec::new())?;
    for (i, (name, refs)) in doc.output.iter().enumerate() {
        c.wf.outputs.push(WorkflowOutput {
            name: name.0.clone(),
            sources: Vec::new(),
        });
        c.pending.push(Pending::Output {
            index: i,
            refs: refs.clone(),
        });
    }
    let pending = std::mem::take(&mut c.pending);
    for p in pending {
        c.resolve(p)?;
    }
    for (a, b) in &doc.contention {
        if a.0 == b.0 {
            return Err(WdlError::new(
                ErrorKind::Type,
                b.1,
                format!("the contention pair names `{}` twice", a.0),
            )
            .expected("two different tasks"));
        }
        let a = c.task_named(a)?;
        let b = c.task_named(b)?;
        c.wf.contention.push((a, b));
    }
    c.wf.deadline_ms = doc.deadline_ms;
    check_acyclic(&c.wf)?;
    Ok(c.wf)
}

struct Compiler<'d> {
    doc: &'d Document,
    wf: Workflow,
    functions: BTreeMap<&'d str, &'d FunctionDecl>,
    /// Node names, for duplicates and lookups (never iterated).
    names: HashMap<String, NodeId>,
    pending: Vec<Pending>,
    /// Enclosing foreach steps: (element name, foreach node), innermost last.
    elements: Vec<(String, NodeId)>,
    /// Enclosing switch cases: (switch node, case), outermost first.
    cases: Vec<(NodeId, u32)>,
    /// The enclosing switch cases of every node, by node index.
    case_path: Vec<Vec<(NodeId, u32)>>,
    /// The catch step of each task that has one.
    catches: HashMap<NodeId, NodeId>,
}
