//! faasflow's wire boundary: conversion between the generated proto types and the core's types
//! (proto input is untrusted and validated here, without panicking), the API token, channels,
//! reading gRPC statuses, the cluster's certificates and the TLS of every connection ([`tls`], [`serve`]), the `/metrics` text ([`metrics`]), and clients that speak the core's types: of a daemon ([`daemon`],
//! for the control plane) and of the planner ([`planner`], for the CLI).
//!
//! What it does not do: decide anything. Policies live in `faasflow-control` and the daemon;
//! this crate only carries their messages. Besides the two server adapters
//! (`faasflow_control::rpc` and `faasflow_daemon::service`), it is the only crate that names
//! generated proto types (`xtask`'s tidy checks enforce it).
#![forbid(unsafe_code)]

pub mod auth;
pub mod channel;
pub mod convert;
pub mod daemon;
pub mod metrics;
pub mod pieces;
pub mod planner;
pub mod serve;
pub mod status;
pub mod tls;

pub use convert::{ConvertError, plan_from_proto, plan_to_proto};
