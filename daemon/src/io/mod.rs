//! The daemon's network drivers. For now: the peer transport between daemons, QUIC with
//! mutual TLS from the cluster CA ([`tls`], [`peer`]) and the messages it carries
//! ([`message`]).
//!
//! What it does not do: drive the engine or touch the arena (`net.rs` connects this transport
//! to the runtime).

pub mod message;
pub mod peer;
pub mod tls;
