//! faasflow's per-worker daemon. Its runtime ([`runtime`], private) drives the invocation
//! engine of `faasflow-core` (the same sans-IO state machine MasterSP's central engine runs):
//! it starts function instances ([`pool`], [`container`]), turns the engine's triggers into
//! calls on their rings, keeps objects in FaaStore's arena ([`store`]), moves them to other
//! workers over the peer transport ([`io`]: QUIC with mutual TLS from the cluster CA) or to
//! the remote tier (Redis), and serves the `Daemon` gRPC service ([`service`]). Callers hold a
//! [`daemon::Daemon`] (configured by [`config::DaemonConfig`]) and speak to it in the types of
//! [`api`].
//!
//! What it does not do: compute plans (the planner does), or decide when a step runs (the
//! engine does; the runtime acts on its actions).
#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod container;
pub mod daemon;
mod inbox;
pub mod io;
mod net;
pub mod pool;
mod python;
mod remote;
mod runtime;
pub mod service;
mod stderr;
pub mod store;
mod threads;
