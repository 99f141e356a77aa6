//! Import of FaaSFlow v1.1 workflow files, so that FaaSFlow's users can bring their workflows.
//!
//! Two forms exist: the flat `flat_workflow.yaml` (a graph, [`flat`]) and the hierarchical
//! `workflow.yaml` (steps, [`hier`]). FaaSFlow ran functions in containers of 256 MiB by
//! default; imported functions get that memory, and `mem_usage` (a fraction of it) becomes the
//! declared memory use.

pub(crate) mod cond;
pub mod flat;
pub mod hier;

use crate::error::WdlError;
use faasflow_core::dag::Workflow;

/// Memory of an imported function's instance, MiB (FaaSFlow's container default).
pub const FAASFLOW_MEMORY_MIB: u64 = 256;

/// An imported workflow and the warnings the import raised.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The workflow.
    pub workflow: Workflow,
    /// Things that were ignored or guessed (each with a position).
    pub warnings: Vec<WdlError>,
}

/// Checks the name a FaaSFlow file without a name of its own gets (from its file or directory
/// name, or given with a deploy) as any workflow name is checked.
pub(crate) fn check_default_name(name: &str) -> Result<(), WdlError> {
    crate::compile::check_name("the workflow's name", name, crate::error::Pos::UNKNOWN).map_err(|e| {
        e.hint(
            "FaaSFlow files carry no name, so it was taken from the file's name (or its directory's): rename \
             them, or give the flat form a `name:`",
        )
    })
}
