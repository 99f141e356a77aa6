//! Setting up a connection: the peer's certificate checked (by TLS, against the cluster's CA)
//! and its node name read from it, then [`HELLO`] exchanged on the control stream; a server
//! finishes each incoming peer's handshake ([`Handshake`]) on its own.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;

use super::super::tls::{self, TlsError};
use super::endpoint::{Settings, settings_for};
use super::{CODE_PROTOCOL, HELLO, PeerConnection, PeerError};

/// A peer whose connection is being set up ([`PeerEndpoint::incoming`]).
///
/// [`PeerEndpoint::incoming`]: super::PeerEndpoint::incoming
#[derive(Debug)]
pub struct Handshake {
    pub(super) incoming: quinn::Incoming,
    pub(super) chunk: usize,
    pub(super) settings: Arc<[Settings; 2]>,
}

impl Handshake {
    /// Where the peer's packets come from.
    pub fn remote_address(&self) -> SocketAddr {
        self.incoming.remote_address()
    }

    /// Checks the peer's certificate, exchanges [`HELLO`] and returns the connection; a peer
    /// outside the cluster is a [`PeerError::Handshake`].
    pub async fn finish(self) -> Result<PeerConnection, PeerError> {
        let remote = self.incoming.remote_address();
        let handshake = |cause| PeerError::Handshake {
            remote,
            node: None,
            cause,
        };
        let server = settings_for(&self.settings, remote).server.clone();
        let conn = self
            .incoming
            .accept_with(server)
            .map_err(handshake)?
            .await
            .map_err(handshake)?;
        let node = peer_node(&conn)?;
        let (mut send, mut recv) = conn.accept_bi().await.map_err(handshake)?;
        let mut hello = [0; HELLO.len()];
        recv.read_exact(&mut hello)
            .await
            .map_err(|e| stream_handshake(&conn, remote, None, e.to_string()))?;
        check_hello(&conn, remote, &hello)?;
        send.write_all(HELLO)
            .await
            .map_err(|e| stream_handshake(&conn, remote, None, e.to_string()))?;
        Ok(PeerConnection::new(conn, node, send, recv, self.chunk))
    }
}

/// A failure of the hello exchange: the connection's close reason when there is one (it says
/// why the peer refused), else what the stream said.
pub(super) fn stream_handshake(
    conn: &quinn::Connection,
    remote: SocketAddr,
    node: Option<&str>,
    what: String,
) -> PeerError {
    match conn.close_reason() {
        Some(cause) => PeerError::Handshake {
            remote,
            node: node.map(str::to_owned),
            cause,
        },
        None => PeerError::NotAPeer { remote, what },
    }
}

pub(super) fn check_hello(
    conn: &quinn::Connection,
    remote: SocketAddr,
    hello: &[u8; HELLO.len()],
) -> Result<(), PeerError> {
    if hello == HELLO {
        return Ok(());
    }
    conn.close(CODE_PROTOCOL, b"bad hello");
    Err(PeerError::NotAPeer {
        remote,
        what: format!("hello {hello:02x?}, expected {HELLO:02x?}"),
    })
}

/// The node name in the (already verified) certificate of a connection's peer.
pub(super) fn peer_node(conn: &quinn::Connection) -> Result<String, PeerError> {
    let certs = conn
        .peer_identity()
        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or_else(|| TlsError::PeerCertificate("the peer presented no certificate".into()))?;
    let leaf = certs
        .first()
        .ok_or_else(|| TlsError::PeerCertificate("the peer presented no certificate".into()))?;
    let node = tls::node_name_of(leaf);
    if node.is_err() {
        conn.close(CODE_PROTOCOL, b"certificate names no node");
    }
    Ok(node?)
}
