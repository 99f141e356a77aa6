//! A daemon's QUIC endpoint ([`PeerEndpoint`]): binds the UDP socket with this node's
//! certificate and the settings for each kind of peer (on another host, or on a loopback
//! address), dials peers and accepts them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

use super::super::tls::{self, ClusterTrust, NodeIdentity};
use super::handshake::{check_hello, peer_node, stream_handshake};
use super::socket::{SplitGso, bind_udp};
use super::{CODE_CLOSED, HELLO, Handshake, PeerConfig, PeerConnection, PeerError};

/// A daemon's QUIC endpoint: serves peers and dials them, with this node's certificate.
#[derive(Debug)]
pub struct PeerEndpoint {
    endpoint: quinn::Endpoint,
    node: String,
    config: PeerConfig,
    /// For peers on other hosts, then for peers on loopback addresses.
    settings: Arc<[Settings; 2]>,
}

/// The QUIC settings of connections with one kind of peer.
#[derive(Debug)]
pub(super) struct Settings {
    pub(super) server: Arc<quinn::ServerConfig>,
    pub(super) client: quinn::ClientConfig,
}

fn is_loopback(addr: SocketAddr) -> bool {
    match addr.ip() {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|ip| ip.is_loopback()),
    }
}

/// The settings for a peer at `remote`.
pub(super) fn settings_for(settings: &[Settings; 2], remote: SocketAddr) -> &Settings {
    &settings[usize::from(is_loopback(remote))]
}

impl PeerEndpoint {
    /// Binds a UDP socket on `addr` and serves peers there as node `identity`, trusting
    /// certificates of `trust`'s CA. Must be called inside a tokio runtime.
    pub fn bind(
        addr: SocketAddr,
        identity: &NodeIdentity,
        trust: &ClusterTrust,
        config: PeerConfig,
    ) -> Result<PeerEndpoint, PeerError> {
        tls::install_crypto_provider();
        if config.chunk == 0 {
            return Err(PeerError::Config("the chunk size must be at least 1 byte".into()));
        }
        if config.max_udp_payload < 1200 || config.loopback_udp_payload < 1200 {
            return Err(PeerError::Config(
                "UDP payloads must be allowed at least 1200 bytes (QUIC's minimum)".into(),
            ));
        }
        let server_tls = Arc::new(
            QuicServerConfig::try_from(tls::server_config(identity, trust)?)
                .map_err(|e| PeerError::Config(e.to_string()))?,
        );
        let client_tls = Arc::new(
            QuicClientConfig::try_from(tls::client_config(identity, trust)?)
                .map_err(|e| PeerError::Config(e.to_string()))?,
        );
        let bind_err = |cause| PeerError::Bind { addr, cause };
        let socket = bind_udp(addr).map_err(bind_err)?;
        let state = quinn::udp::UdpSocketState::new((&socket).into()).map_err(bind_err)?;
        // Best effort: the kernel caps the sizes, and a smaller buffer only costs speed.
        let _ = state.set_send_buffer_size((&socket).into(), config.socket_buffer);
        let _ = state.set_recv_buffer_size((&socket).into(), config.socket_buffer);
        // Linux grants twice what it was asked for, to pay for its bookkeeping: a few hundred
        // bytes per datagram, little next to 64 KiB ones. A quarter of it is left for that,
        // for acknowledgements and for other connections' packets.
        let socket_window = state
            .recv_buffer_size((&socket).into())
            .map_or(config.socket_buffer, |b| b / 4 * 3);
        let socket_window = u32::try_from(socket_window).unwrap_or(u32::MAX).max(64 << 10);
        let settings = |loopback: bool| -> Result<Settings, PeerError> {
            let payload = if loopback {
                config.loopback_udp_payload
            } else {
                config.max_udp_payload
            };
            let transport = Arc::new(config.transport(payload, loopback, socket_window)?);
            let mut server = quinn::ServerConfig::with_crypto(server_tls.clone());
            server.transport_config(transport.clone());
            let mut client = quinn::ClientConfig::new(client_tls.clone());
            client.transport_config(transport);
            Ok(Settings {
                server: Arc::new(server),
                client,
            })
        };
        let settings = Arc::new([settings(false)?, settings(true)?]);
        // The endpoint takes datagrams as large as either kind of peer may send.
        let mut endpoint_config = quinn::EndpointConfig::default();
        endpoint_config
            .max_udp_payload_size(config.max_udp_payload.max(config.loopback_udp_payload))
            .map_err(|e| PeerError::Config(format!("UDP payload size: {e}")))?;
        let runtime = quinn::default_runtime()
            .ok_or_else(|| PeerError::Config("no async runtime (bind inside a tokio runtime)".into()))?;
        let socket = Arc::new(SplitGso {
            inner: runtime.wrap_udp_socket(socket).map_err(bind_err)?,
        });
        let endpoint = quinn::Endpoint::new_with_abstract_socket(
            endpoint_config,
            Some(settings[0].server.as_ref().clone()),
            socket,
            runtime,
        )
        .map_err(bind_err)?;
        Ok(PeerEndpoint {
            endpoint,
            node: identity.name().to_owned(),
            config,
            settings,
        })
    }

    /// The address the endpoint listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, PeerError> {
        self.endpoint
            .local_addr()
            .map_err(|e| PeerError::Config(format!("no local address: {e}")))
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Dials node `node_name` at `addr`. Returns once both sides have checked each other's
    /// certificate and exchanged [`HELLO`]; a peer outside the cluster is a
    /// [`PeerError::Handshake`].
    pub async fn connect(&self, addr: SocketAddr, node_name: &str) -> Result<PeerConnection, PeerError> {
        let handshake = |cause| PeerError::Handshake {
            remote: addr,
            node: Some(node_name.to_owned()),
            cause,
        };
        let connecting = self
            .endpoint
            .connect_with(settings_for(&self.settings, addr).client.clone(), addr, node_name)
            .map_err(|e| PeerError::Config(e.to_string()))?;
        let conn = connecting.await.map_err(handshake)?;
        let node = peer_node(&conn)?;
        // The server checks our certificate after the client's side of the handshake is done:
        // its answer to our hello is what says it accepted us.
        let (mut send, mut recv) = conn.open_bi().await.map_err(handshake)?;
        send.write_all(HELLO)
            .await
            .map_err(|e| stream_handshake(&conn, addr, Some(node_name), e.to_string()))?;
        let mut hello = [0; HELLO.len()];
        recv.read_exact(&mut hello)
            .await
            .map_err(|e| stream_handshake(&conn, addr, Some(node_name), e.to_string()))?;
        check_hello(&conn, addr, &hello)?;
        Ok(PeerConnection::new(conn, node, send, recv, self.config.chunk))
    }

    /// Waits for the next peer and sets up its connection. A peer that fails the handshake is
    /// an error for this call only (log it and accept again); [`PeerError::EndpointClosed`]
    /// means no peer will come any more. Handshakes run one after the other here: a server
    /// takes each peer with [`PeerEndpoint::incoming`] and finishes its handshake in a task of
    /// its own, so that a silent peer holds up no other.
    pub async fn accept(&self) -> Result<PeerConnection, PeerError> {
        self.incoming().await?.finish().await
    }

    /// Waits for the next peer's first packet; [`Handshake::finish`] completes its handshake.
    pub async fn incoming(&self) -> Result<Handshake, PeerError> {
        let incoming = self.endpoint.accept().await.ok_or(PeerError::EndpointClosed)?;
        Ok(Handshake {
            incoming,
            chunk: self.config.chunk,
            settings: self.settings.clone(),
        })
    }

    /// Closes every connection and stops accepting.
    pub fn close(&self) {
        self.endpoint.close(CODE_CLOSED, b"endpoint closed");
    }

    /// Waits until every connection is closed and its last packets are sent.
    pub async fn wait_idle(&self) {
        self.endpoint.wait_idle().await;
    }
}
