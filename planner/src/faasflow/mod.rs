//! Import of FaaSFlow v1.1 workflow files, so that FaaSFlow's users can bring their workflows.
//!
//! Two forms exist: the flat `flat_workflow.yaml` (a graph, [`flat`]) and the hierarchical
//! `workflow.yaml` (steps, [`hier`]). FaaSFlow ran functions in containers of 256 MiB by
//! default; imported functions get that memory, and `mem_usage` (a fraction of it) becomes the
//! declared memory use.

pub(crate) mod cond;
pub mod flat;
pub mod hier;

use crate::dag::Workflow;
use crate::error::WdlError;

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
