//! faasflow's planner: the workflow language (WDL), the FaaSFlow importers, the compiler from
//! YAML to a DAG, and the graph partitioner that turns a DAG and a cluster into a plan.
//!
//! What it does not do: no sockets, no files outside [`load`], no clock, no randomness, except
//! in [`service`], the thin gRPC driver (the `Planner` service) over that logic, its MasterSP
//! central engine's driver (`master`), and the remote tier ([`remote`]). The
//! partitioner ([`partition::partition`]) is a pure function: the same workflow, cluster and
//! configuration always give a byte-identical plan.
#![forbid(unsafe_code)]

pub mod auth;
pub mod compile;
pub mod convert;
pub mod dag;
pub mod engine;
pub mod error;
pub mod faasflow;
pub mod r#gen;
pub mod graph;
pub mod load;
mod master;
pub mod metrics;
pub mod partition;
pub mod plan;
pub mod remote;
pub mod render;
pub mod report;
pub mod service;
pub mod trace;
pub mod wdl;
pub mod yaml;

pub use convert::{ConvertError, plan_from_proto, plan_to_proto};
pub use dag::{NodeId, Workflow};
pub use error::{ErrorKind, Pos, WdlError};
pub use r#gen::{GenParams, random_workflow, to_flat_yaml};
pub use partition::partition;
pub use plan::{ClusterView, Mode, Plan, PlanError, PlannerConfig, Tier};
