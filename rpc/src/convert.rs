//! The boundary between the planner's types and the wire: a [`Plan`], with its [`Workflow`]
//! and [`ClusterView`], to and from `faasflow.v1.Plan` ([`pb::Plan`]).
//!
//! Everything outside `faasflow-rpc` and the two server adapters uses the types of
//! [`faasflow_core::dag`] and [`faasflow_core::plan`].
//!
//! The proto side is untrusted bytes from the network. [`plan_from_proto`] never panics: it
//! checks every node, edge, group and worker index, the lengths of the per-node and per-edge
//! tables, group membership, enum values, numbers, the switch and foreach cross-references,
//! foreach scopes, and that the graph is acyclic, before it hands anything out. Code that gets
//! a plan from it may index the graph and the plan without checks of its own
//! ([`Plan::worker_of`], [`Plan::tier`], `graph[node]`).
//!
//! The parts: [`ConvertError`] in `error.rs`; encoding in `to_proto.rs`, and [`WirePlan`] with
//! its digest in `digest.rs`; the checked decoding of a plan in `from_proto.rs` and of its
//! workflow graph in `graph_from_proto.rs`; enum values both ways in `enums.rs`; and
//! `Daemon.Execute` in [`execute`]; the planner's stored records (its state directory) in
//! [`state`].
//!
//! [`Plan`]: faasflow_core::plan::Plan
//! [`Plan::worker_of`]: faasflow_core::plan::Plan::worker_of
//! [`Plan::tier`]: faasflow_core::plan::Plan::tier
//! [`Workflow`]: faasflow_core::dag::Workflow
//! [`ClusterView`]: faasflow_core::plan::ClusterView
//! [`pb::Plan`]: faasflow_proto::v1::Plan

mod digest;
mod enums;
mod error;
pub mod execute;
mod from_proto;
mod graph_from_proto;
pub mod state;
mod to_proto;

pub use digest::{WirePlan, plan_digest, short_digest};
pub use enums::{mode_from_proto, mode_to_proto};
pub use error::ConvertError;
pub use from_proto::plan_from_proto;
pub use graph_from_proto::workflow_from_proto;
pub use to_proto::{plan_to_proto, workflow_to_proto};

#[cfg(test)]
mod tests;
