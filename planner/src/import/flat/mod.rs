//! Import of FaaSFlow v1.1's flat form (`flat_workflow.yaml`).
//!
//! The flat form is already a graph: each function lists its successors under `next`
//! (`pass`, `parallel`, `switch` with conditions, `foreach`), and `source: VIRTUAL` marks
//! control nodes. Inputs name their producer (`function: <name>`) or say `function: INPUT`,
//! in which case the producer is found by the output name in `parameter` (the nearest
//! ancestor that produces it), or else it is a workflow input.
//!
//! The parts: [`import`] here, with the workflow's inputs and the importer's state; `decode.rs`
//! reads the YAML into functions, `nodes.rs` makes them nodes and their `next` control edges,
//! `data.rs` finds the producer of every input and of the workflow's outputs (data edges), and
//! `conditions.rs` translates switch conditions into CEL.

use std::collections::{BTreeSet, HashMap};

use crate::compile::{check_acyclic, check_name};
use crate::error::{ErrorKind, WdlError};
use crate::import::{Imported, check_default_name};
use crate::yaml::{Fields, Yaml};
use faasflow_core::dag::{NodeId, SourceFormat, ValueKind, Workflow, WorkflowInput};

mod conditions;
mod data;
mod decode;
mod nodes;

use decode::{TOP_KEYS, decode_fn};

/// Imports a flat FaaSFlow workflow; `name` is the workflow's name (the file's directory).
pub fn import(root: &Yaml, name: &str) -> Result<Imported, WdlError> {
    let mut top = Fields::new(root, "the FaaSFlow workflow")?;
    let functions_node = match (top.get("functions"), top.get("fuctions")) {
        (Some(f), _) | (None, Some(f)) => f,
        (None, None) => {
            return Err(WdlError::new(
                ErrorKind::MissingKey,
                root.pos,
                "the FaaSFlow workflow has no `functions`",
            )
            .expected("`functions:` with a list of functions"));
        }
    };
    let (workflow_key, name_key) = (top.get("workflow"), top.get("name"));
    let name = match workflow_key.or(name_key) {
        Some(n) => {
            let (name, pos) = n.name("the workflow's name")?;
            check_name("the workflow's name", &name, pos)?;
            name
        }
        None => {
            check_default_name(name)?;
            name.to_owned()
        }
    };
    let global_input = top.get("global_input");
    let global_output = top.get("global_output");
    top.finish(&[TOP_KEYS, &["fuctions"]].concat())?;

    let fns = functions_node
        .seq("a list of functions")?
        .iter()
        .map(decode_fn)
        .collect::<Result<Vec<_>, _>>()?;
    let mut imp = Importer {
        wf: Workflow::new(name, SourceFormat::FaasflowFlat),
        ids: HashMap::new(),
        warnings: Vec::new(),
        json_outputs: BTreeSet::new(),
    };
    if let Some(gi) = global_input {
        for (k, v) in gi.map("`global_input`: a mapping of inputs")? {
            let (key, _) = k.name("an input name")?;
            let mut f = Fields::new(v, "a global input")?;
            let _ = f.get("type");
            let param = match f.get("value") {
                Some(val) => {
                    let mut vf = Fields::new(val, "an input value")?;
                    let _ = vf.get("function");
                    let p = vf
                        .get("parameter")
                        .map(|p| p.name("a parameter name"))
                        .transpose()?
                        .map(|p| p.0);
                    vf.finish(&["function", "parameter"])?;
                    p
                }
                None => None,
            };
            let size = f
                .get("size")
                .map(|s| s.bytes("a size in bytes"))
                .transpose()?
                .unwrap_or(0);
            f.finish(&["type", "value", "size"])?;
            imp.wf.inputs.push(WorkflowInput {
                name: param.unwrap_or(key),
                kind: ValueKind::Json,
                size,
            });
        }
    }
    imp.nodes(&fns)?;
    imp.control_edges(&fns)?;
    imp.data_edges(&fns)?;
    imp.key_reads(&fns);
    imp.conditions()?;
    if let Some(go) = global_output {
        imp.outputs(go)?;
    }
    imp.mark_json_outputs();
    check_acyclic(&imp.wf)?;
    Ok(Imported {
        workflow: imp.wf,
        warnings: imp.warnings,
    })
}

struct Importer {
    wf: Workflow,
    /// Node ids by name (never iterated).
    ids: HashMap<String, NodeId>,
    warnings: Vec<WdlError>,
    /// Outputs that conditions read: (node, output), made json.
    json_outputs: BTreeSet<(NodeId, String)>,
}
