//! faasflow's core: the compiled workflow (a DAG of tasks and control nodes), plans, the
//! sans-IO invocation engine every daemon and MasterSP's central engine run, run reports and
//! their critical path, Chrome trace conversion, and metric types.
//!
//! What it does not do: no I/O of any kind (sockets, files, processes), no clock, no
//! unseeded randomness, no async runtime. Time is passed in as a [`std::time::Duration`] since
//! an origin the caller chooses; objects are opaque handles. `clippy.toml` at the workspace
//! root and `xtask`'s tidy checks enforce it.
#![forbid(unsafe_code)]

pub mod dag;
pub mod engine;
pub mod faastlane;
pub mod graph;
pub mod metrics;
pub mod plan;
mod pos;
pub mod report;
pub mod text;
pub mod trace;

pub use dag::{NodeId, Workflow};
pub use plan::{ClusterView, Mode, Plan, PlanError, PlannerConfig, Tier};
pub use pos::Pos;
