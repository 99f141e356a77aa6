//! faasflow's wire types: the gRPC services and messages spoken between clients, the planner
//! and the daemons, generated from `proto/faasflow/v1/*.proto` at build time with `protox`
//! (no system `protoc`) and `tonic-prost-build`.
//!
//! - [`v1::planner_client`] / [`v1::planner_server`]: the `Planner` service (workers register
//!   and send heartbeats; clients deploy, invoke and read plans).
//! - [`v1::daemon_client`] / [`v1::daemon_server`]: the `Daemon` service (install and drop
//!   plans, start invocations, report status).
//! - [`v1::Plan`] and [`v1::WorkflowGraph`]: a partitioned workflow as it travels to a daemon.
//!
//! What it does not know: planner and daemon logic. It does not validate anything — every
//! index in a [`v1::Plan`] is untrusted until `faasflow_rpc::convert` has checked it — and
//! the rest of the code base uses its own types, not these: the generated types stop at `faasflow-rpc`
//! and the two server adapters.
#![forbid(unsafe_code)]

/// Version 1 of the protocol (protobuf package `faasflow.v1`).
///
/// Generated code: the workspace lints are relaxed here only, since its shape is up to
/// `prost`/`tonic` (none of them fires with tonic-prost-build 0.14.9; the allowance keeps a
/// codegen upgrade from breaking `-D warnings` builds).
#[allow(unreachable_pub, missing_debug_implementations, missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("faasflow.v1");
}
