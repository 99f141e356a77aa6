//! The daemon's network drivers. For now: the peer transport between daemons, QUIC with
//! mutual TLS from the cluster CA ([`tls`], [`peer`]) and the messages it carries
//! ([`message`]); and the remote tier, objects kept in Redis ([`remote`]).
//!
//! What it does not do: drive the engine or touch the arena; the single-worker runtime
//! (`runtime.rs`) does not use it yet.

pub mod message;
pub mod peer;
pub use faasflow_planner::remote;
pub mod tls;
