//! faasflow's control plane: the `Planner` gRPC service. Workers register and send heartbeats;
//! clients deploy workflows and invoke them. It keeps the worker registry and every deployed
//! workflow's versions, admits invocations, routes each to its entry daemon, plans again when
//! workers are lost or come back, and runs MasterSP's central engine. With a state directory
//! ([`store`]) its workflows, versions, workers and invocation ids survive a restart.
//!
//! What it does not do: compile or partition workflows (`faasflow-planner` does, as pure
//! functions), convert proto messages (`faasflow-rpc`), or run functions (daemons do).
#![forbid(unsafe_code)]

mod central;
pub mod config;
mod daemons;
pub mod http;
mod measure;
mod registry;
mod rpc;
pub mod service;
#[cfg(test)]
mod sim;
pub mod store;
pub mod uploads;
mod versions;

pub use registry::LOST_AFTER;
