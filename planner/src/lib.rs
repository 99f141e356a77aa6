//! faasflow's planner: the workflow language (WDL), the FaaSFlow importers, the compiler from
//! YAML to a DAG, the graph partitioner that turns a DAG and a cluster into a plan, and the
//! renderers of plans.
//!
//! What it does not do: no sockets, no async runtime, no clock, no randomness other than the
//! seeded generator of [`random`], and no files outside [`load`]. The partitioner
//! ([`partition::partition`]) is a pure function: the same workflow, cluster and configuration
//! always give a byte-identical plan. The types it produces (`Workflow`, `Plan`) are
//! `faasflow-core`'s.
#![forbid(unsafe_code)]

pub mod compile;
pub mod error;
pub mod import;
pub mod load;
pub mod partition;
pub mod random;
pub mod render;
pub mod wdl;
pub mod yaml;

pub use error::{ErrorKind, Pos, WdlError};
pub use partition::partition;
pub use random::{GenParams, random_workflow, to_flat_yaml};
