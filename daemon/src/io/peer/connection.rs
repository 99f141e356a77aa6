//! A connection with one peer daemon ([`PeerConnection`]): what it is (the peer's node name,
//! address and packet size), how its errors read, and closing it. Its control stream is in
//! `control.rs`, its object streams in `send.rs` and `receive.rs`.

use std::net::SocketAddr;

use tokio::sync::Mutex;

use super::control::CONTROL_PRIORITY;
use super::{CODE_CLOSED, PeerError};

/// A connection with one peer daemon.
#[derive(Debug)]
pub struct PeerConnection {
    pub(super) conn: quinn::Connection,
    pub(super) node: String,
    pub(super) control_send: Mutex<quinn::SendStream>,
    pub(super) control_recv: Mutex<quinn::RecvStream>,
    pub(super) chunk: usize,
}

impl PeerConnection {
    pub(super) fn new(
        conn: quinn::Connection,
        node: String,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        chunk: usize,
    ) -> PeerConnection {
        // Control messages (a Done triggers the next function) go before the bytes of objects
        // queued on the same connection. Setting it fails only on a stream already closed,
        // whose next use says so.
        let _ = send.set_priority(CONTROL_PRIORITY);
        PeerConnection {
            conn,
            node,
            control_send: Mutex::new(send),
            control_recv: Mutex::new(recv),
            chunk,
        }
    }

    /// The peer's node name, from its verified certificate.
    pub fn peer_node(&self) -> &str {
        &self.node
    }

    /// The peer's address.
    pub fn remote_address(&self) -> SocketAddr {
        self.conn.remote_address()
    }

    /// The largest UDP payload this side sends on the connection now (see
    /// [`PeerConfig::max_udp_payload`] and [`PeerConfig::loopback_udp_payload`]).
    ///
    /// [`PeerConfig::max_udp_payload`]: super::PeerConfig::max_udp_payload
    /// [`PeerConfig::loopback_udp_payload`]: super::PeerConfig::loopback_udp_payload
    pub fn udp_payload(&self) -> u16 {
        self.conn.stats().path.current_mtu
    }

    pub(super) fn stream_err(&self, cause: impl ToString) -> PeerError {
        match self.conn.close_reason() {
            Some(cause) => PeerError::Connection {
                node: self.node.clone(),
                cause,
            },
            None => PeerError::Stream {
                node: self.node.clone(),
                cause: cause.to_string(),
            },
        }
    }

    /// Closes the connection at once; unread and unsent data is dropped.
    pub fn close(&self) {
        self.conn.close(CODE_CLOSED, b"closed");
    }

    /// Waits until the connection is closed (by either side, or by the idle timeout when the
    /// peer went silent) and says why.
    pub async fn closed(&self) -> quinn::ConnectionError {
        self.conn.closed().await
    }

    /// Why the connection closed, if it has.
    pub fn close_reason(&self) -> Option<quinn::ConnectionError> {
        self.conn.close_reason()
    }
}
