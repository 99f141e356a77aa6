//! The peer transport: QUIC between daemons, authenticated both ways by the cluster's
//! certificates ([`super::tls`]).
//!
//! One [`PeerEndpoint`] per daemon serves and dials on one UDP socket. A [`PeerConnection`]
//! has one bidirectional *control stream* (opened by the dialling side, which says [`HELLO`]
//! and waits for the same answer, so a refused certificate fails [`PeerEndpoint::connect`]
//! itself) carrying framed [`ControlMessage`]s, and one unidirectional stream per object: an
//! [`ObjectHeader`] and then exactly `len` bytes, sent in chunks as they are read from the
//! source and handed to a sink chunk by chunk as they arrive. The control stream has a
//! higher priority than object streams, so a message never waits behind queued object bytes.
//!
//! Memory is bounded by QUIC flow control, set in [`PeerConfig`]: a receiver buffers at most
//! [`PeerConfig::stream_window`] bytes per object and [`PeerConfig::connection_window`] per
//! connection that it has not read yet; a sender's writes wait for credit, so a slow consumer
//! slows its producer instead of filling either side's memory.
//!
//! Packet size is set in [`PeerConfig`] too: up to [`PeerConfig::max_udp_payload`] bytes per
//! UDP datagram to a peer on another host (found by MTU discovery), and
//! [`PeerConfig::loopback_udp_payload`] (64 KiB by default) from the first packet on to a peer on
//! a loopback address, where the cost per packet, not per byte, bounds the bandwidth. Packets to
//! a loopback peer leave one per send, each as soon as it is encrypted, not in segmentation
//! offload (GSO) batches: with 64 KiB packets, a batch would hold up to 640 KiB, all encrypted
//! before its first byte leaves, while the receiver, on the same host, sits idle.
//!
//! Objects from one peer are read concurrently ([`PeerConnection::serve_objects`]): a stream
//! opened first may get its first bytes after later streams took the connection's credit, and
//! reading headers one after the other would wait on it forever.
//!
//! What it does not do: act on lost peers (keep-alive and an idle timeout close a silent
//! connection; reacting to that belongs to the daemon), reconnect, or know the engine.
//!
//! The parts: `config.rs` the settings, `error.rs` what goes wrong, `socket.rs` the UDP socket,
//! `endpoint.rs` the endpoint that binds, dials and accepts, `handshake.rs` the certificate
//! check and hello exchange of a new connection, `connection.rs` a connection, `control.rs` its
//! control stream, and `send.rs` and `receive.rs` its object streams.
//!
//! [`ControlMessage`]: super::message::ControlMessage
//! [`ObjectHeader`]: super::message::ObjectHeader

use quinn::VarInt;

mod config;
mod connection;
mod control;
mod endpoint;
mod error;
mod handshake;
mod receive;
mod send;
mod socket;

pub use config::{DEFAULT_IDLE_TIMEOUT, PeerConfig};
pub use connection::PeerConnection;
pub use endpoint::PeerEndpoint;
pub use error::PeerError;
pub use handshake::Handshake;
pub use receive::{IncomingObject, ObjectSink, ObjectStream};
pub use socket::BIND_RETRY;

/// The first bytes each side writes on the control stream.
pub const HELLO: &[u8; 4] = b"FFP\x01";

/// Error code of a stream stopped or reset because the object is refused or broken.
const CODE_ABORTED: VarInt = VarInt::from_u32(1);
/// Error code of a connection closed by [`PeerConnection::close`].
const CODE_CLOSED: VarInt = VarInt::from_u32(0);
/// Error code of a connection closed because the peer broke the protocol.
const CODE_PROTOCOL: VarInt = VarInt::from_u32(2);

#[cfg(test)]
mod tests;
