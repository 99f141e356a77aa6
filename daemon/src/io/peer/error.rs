//! What goes wrong on the peer transport ([`PeerError`]), and what its messages tell to check.

use std::net::SocketAddr;

use super::super::message::{DecodeError, EncodeError};
use super::super::tls::TlsError;

/// What went wrong on the peer transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The certificates or settings are unusable.
    #[error("peer transport: {0}")]
    Tls(#[from] TlsError),
    /// A setting is unusable.
    #[error("peer transport: {0}")]
    Config(String),
    /// The UDP socket could not be bound.
    #[error("cannot listen for peers on {addr}: {cause}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        cause: std::io::Error,
    },
    /// The connection could not be set up: unreachable, or the TLS handshake failed (a
    /// certificate not from this cluster's CA, none at all, or not the node dialled).
    #[error("TLS handshake with {remote}{} failed: {cause} ({})", dialled(.node), handshake_hint(.cause))]
    Handshake {
        /// The peer's address.
        remote: SocketAddr,
        /// The node dialled (`None` for an incoming connection).
        node: Option<String>,
        /// What QUIC or TLS said.
        cause: quinn::ConnectionError,
    },
    /// The peer answered something else than faasflow's hello.
    #[error("{remote} does not speak faasflow's peer protocol: {what}")]
    NotAPeer {
        /// The peer's address.
        remote: SocketAddr,
        /// What was wrong.
        what: String,
    },
    /// The connection broke or was closed.
    #[error("connection with {node} lost: {cause}")]
    Connection {
        /// The peer's node name.
        node: String,
        /// Why.
        cause: quinn::ConnectionError,
    },
    /// A stream broke (reset or stopped by the peer, or the connection closed under it).
    #[error("stream with {node}: {cause}")]
    Stream {
        /// The peer's node name.
        node: String,
        /// What happened.
        cause: String,
    },
    /// The peer sent bytes that are not a message.
    #[error("{node} sent a malformed message: {cause}")]
    Malformed {
        /// The peer's node name.
        node: String,
        /// What was wrong.
        cause: DecodeError,
    },
    /// A message cannot be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// An object's stream holds more or fewer bytes than its header says.
    #[error("object {object} from {node}: {what}")]
    ObjectLength {
        /// The peer's node name.
        node: String,
        /// The object.
        object: u64,
        /// What was wrong.
        what: String,
    },
    /// The source of an object being sent failed or ended early.
    #[error("object {object}: cannot read its bytes: {cause}")]
    Source {
        /// The object.
        object: u64,
        /// Why.
        cause: std::io::Error,
    },
    /// The sink of an object being received failed.
    #[error("object {object}: cannot store its bytes: {cause}")]
    Sink {
        /// The object.
        object: u64,
        /// Why.
        cause: std::io::Error,
    },
    /// The endpoint was closed.
    #[error("the peer endpoint is closed")]
    EndpointClosed,
}

/// What to check when a handshake failed, by what failed: a certificate refused, or nothing
/// answering at that address at all (the daemon gone, or started again on another port).
pub(super) fn handshake_hint(cause: &quinn::ConnectionError) -> &'static str {
    match cause {
        quinn::ConnectionError::TimedOut => {
            "nothing answered at that address: is the peer's daemon running there? A daemon started again on \
             other ports is found again through the planner"
        }
        quinn::ConnectionError::TransportError(_) | quinn::ConnectionError::ConnectionClosed(_) => {
            "peers need certificates from the same `faasflow cluster init`, and are dialled by the node name in \
             their certificate"
        }
        _ => "the peer closed or reset the connection during the handshake: is it shutting down?",
    }
}

fn dialled(node: &Option<String>) -> String {
    node.as_ref()
        .map(|n| format!(" (dialled as node `{n}`)"))
        .unwrap_or_default()
}
