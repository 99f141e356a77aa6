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

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::sync::Mutex;

use super::message::{
    ControlMessage, DecodeError, EncodeError, FRAME_PREFIX, OBJECT_HEADER_LEN, ObjectHeader, frame_len,
};
use super::tls::{self, ClusterTrust, NodeIdentity, TlsError};

/// The first bytes each side writes on the control stream.
pub const HELLO: &[u8; 4] = b"FFP\x01";

/// Bytes of a control frame read at a time (the body grows by this much as bytes arrive).
const CONTROL_CHUNK: usize = 1 << 20;

/// Priority of the control stream: QUIC sends the data of higher-priority streams first, and
/// object streams have the default, 0.
const CONTROL_PRIORITY: i32 = 1;

/// Error code of a stream stopped or reset because the object is refused or broken.
const CODE_ABORTED: VarInt = VarInt::from_u32(1);
/// Error code of a connection closed by [`PeerConnection::close`].
const CODE_CLOSED: VarInt = VarInt::from_u32(0);
/// Error code of a connection closed because the peer broke the protocol.
const CODE_PROTOCOL: VarInt = VarInt::from_u32(2);

/// Settings of the peer transport.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Bytes of one object a receiver buffers before its reader takes them (QUIC stream
    /// receive window).
    pub stream_window: u32,
    /// Bytes of all streams of one connection a receiver buffers (QUIC connection receive
    /// window). From a loopback peer, at most what the UDP socket's receive buffer holds
    /// (three quarters of what the kernel granted for [`PeerConfig::socket_buffer`]), and the stream
    /// window at most this: a peer on the same host sends faster than a busy receiver drains
    /// the socket, and datagrams beyond its buffer would be dropped and sent again.
    pub connection_window: u32,
    /// Bytes a sender keeps in flight, not yet acknowledged, per connection.
    pub send_window: u64,
    /// Objects a peer may be sending to this daemon at once.
    pub max_incoming_objects: u32,
    /// Bytes read from an object's source per write.
    pub chunk: usize,
    /// A ping is sent after this long without traffic, so an idle connection stays up.
    pub keep_alive: Duration,
    /// A connection that hears nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Largest UDP payload sent to a peer on another host. Path MTU discovery starts every
    /// such connection at 1200 bytes and probes up to this; lost probes are harmless. 1472
    /// fits an Ethernet MTU of 1500 (IPv4); a network with jumbo frames may raise it.
    pub max_udp_payload: u16,
    /// Largest UDP payload sent to a peer on a loopback address (another daemon on this host,
    /// where the MTU is 64 KiB): such connections start at this size. Each packet costs the
    /// same CPU work (encryption, syscalls, bookkeeping) whatever its size, so large ones move
    /// objects several times faster. Set it to `max_udp_payload` to treat loopback peers like
    /// any other.
    pub loopback_udp_payload: u16,
    /// Bytes asked of the kernel for the UDP socket's send and receive buffers (it caps them at
    /// `net.core.wmem_max` / `rmem_max`): room for a burst of packets while the endpoint's
    /// task is busy, rather than dropping them.
    pub socket_buffer: usize,
}

/// How long a peer may stay silent before its connection is closed and it is declared lost,
/// by default ([`PeerConfig::idle_timeout`]).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            stream_window: 8 << 20,
            connection_window: 32 << 20,
            send_window: 32 << 20,
            max_incoming_objects: 64,
            chunk: 1 << 20,
            keep_alive: Duration::from_secs(2),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_udp_payload: 1472,
            loopback_udp_payload: LOOPBACK_UDP_PAYLOAD,
            socket_buffer: 4 << 20,
        }
    }
}

/// The largest UDP payload of an IPv4 datagram (65 535 bytes less the IP and UDP headers),
/// which a loopback interface's 64 KiB MTU carries unfragmented.
const LOOPBACK_UDP_PAYLOAD: u16 = 65_507;

impl PeerConfig {
    /// The transport settings of a connection whose packets carry at most `udp_payload` bytes.
    /// `socket_window`: the bytes of datagrams the UDP socket really holds (see
    /// [`PeerConfig::socket_buffer`]).
    fn transport(&self, udp_payload: u16, loopback: bool, socket_window: u32) -> Result<TransportConfig, PeerError> {
        let mut t = TransportConfig::default();
        let mut mtud = quinn::MtuDiscoveryConfig::default();
        mtud.upper_bound(udp_payload);
        t.mtu_discovery_config(Some(mtud));
        if loopback {
            // Loopback carries any datagram up to its MTU: no need to discover it. The
            // congestion window must start with room for a few such packets, or none is sent:
            // its default of 12 000 bytes is sized for 1200-byte ones.
            t.initial_mtu(udp_payload);
            let mut cubic = quinn::congestion::CubicConfig::default();
            cubic.initial_window(10 * u64::from(udp_payload));
            t.congestion_controller_factory(Arc::new(cubic));
            // No segmentation offload: quinn would build up to 10 packets (640 KiB of 64 KiB
            // ones) into one batch, encrypting all of them before the first is sent, and the
            // kernel takes at most 64 KiB per send anyway (see `SplitGso`). One packet per send
            // lets the receiving daemon decrypt and store each packet while the next is being
            // encrypted, instead of starting only once a whole batch is out.
            t.enable_segmentation_offload(false);
        }
        let (mut stream_window, mut connection_window) = (self.stream_window, self.connection_window);
        if loopback {
            // A loopback peer sends as fast as this daemon's CPU lets it, and datagrams that
            // do not fit the socket's buffer are dropped: each costs a retransmission and a
            // congestion event. With no more credit than the buffer holds, the sender waits
            // instead (credit comes back as fast as the bytes are read).
            connection_window = connection_window.min(socket_window);
            stream_window = stream_window.min(connection_window);
        }
        t.stream_receive_window(VarInt::from_u32(stream_window))
            .receive_window(VarInt::from_u32(connection_window))
            .send_window(self.send_window)
            .max_concurrent_uni_streams(VarInt::from_u32(self.max_incoming_objects))
            .max_concurrent_bidi_streams(VarInt::from_u32(1))
            .keep_alive_interval(Some(self.keep_alive))
            .max_idle_timeout(Some(
                IdleTimeout::try_from(self.idle_timeout)
                    .map_err(|_| PeerError::Config("idle timeout too long".into()))?,
            ));
        Ok(t)
    }
}

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
fn handshake_hint(cause: &quinn::ConnectionError) -> &'static str {
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

/// How long binding a given UDP port that is taken is tried again: a daemon started again on
/// the ports of one that just died may find them held a moment longer (by its instances, or
/// the kernel).
pub const BIND_RETRY: Duration = Duration::from_secs(5);

/// Binds `addr`, trying again for up to [`BIND_RETRY`] while a given port is in use.
fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let end = std::time::Instant::now() + BIND_RETRY;
    loop {
        match std::net::UdpSocket::bind(addr) {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse && addr.port() != 0 && std::time::Instant::now() < end =>
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

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
struct Settings {
    server: Arc<quinn::ServerConfig>,
    client: quinn::ClientConfig,
}

fn is_loopback(addr: SocketAddr) -> bool {
    match addr.ip() {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|ip| ip.is_loopback()),
    }
}

/// The settings for a peer at `remote`.
fn settings_for(settings: &[Settings; 2], remote: SocketAddr) -> &Settings {
    &settings[usize::from(is_loopback(remote))]
}

/// Bytes one `sendmsg` carries at most, all its GSO segments together: the payload limit of one
/// IPv4 datagram, which the kernel applies to a segmented send as a whole.
const MAX_SEND: usize = 65_507;

/// The runtime's UDP socket, except that a transmit of several segments whose total exceeds
/// [`MAX_SEND`] (packets to another host with a large [`PeerConfig::max_udp_payload`], several
/// to a transmit; loopback peers get one packet per transmit) goes out in several sends.
#[derive(Debug)]
struct SplitGso {
    inner: Arc<dyn quinn::AsyncUdpSocket>,
}

impl quinn::AsyncUdpSocket for SplitGso {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn quinn::UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &quinn::udp::Transmit<'_>) -> std::io::Result<()> {
        let segment = match transmit.segment_size {
            Some(segment) if transmit.contents.len() > MAX_SEND => segment,
            _ => return self.inner.try_send(transmit),
        };
        let per_send = (MAX_SEND / segment).max(1) * segment;
        for (i, part) in transmit.contents.chunks(per_send).enumerate() {
            let mut sub = transmit.clone();
            sub.contents = part;
            sub.segment_size = (part.len() > segment).then_some(segment);
            match self.inner.try_send(&sub) {
                // Part of the transmit is gone: what is left counts as lost, and is sent again.
                Err(e) if i > 0 && e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                r => r?,
            }
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [std::io::IoSliceMut<'_>],
        meta: &mut [quinn::udp::RecvMeta],
    ) -> Poll<std::io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
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

/// A peer whose connection is being set up ([`PeerEndpoint::incoming`]).
#[derive(Debug)]
pub struct Handshake {
    incoming: quinn::Incoming,
    chunk: usize,
    settings: Arc<[Settings; 2]>,
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
fn stream_handshake(conn: &quinn::Connection, remote: SocketAddr, node: Option<&str>, what: String) -> PeerError {
    match conn.close_reason() {
        Some(cause) => PeerError::Handshake {
            remote,
            node: node.map(str::to_owned),
            cause,
        },
        None => PeerError::NotAPeer { remote, what },
    }
}

fn check_hello(conn: &quinn::Connection, remote: SocketAddr, hello: &[u8; HELLO.len()]) -> Result<(), PeerError> {
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
fn peer_node(conn: &quinn::Connection) -> Result<String, PeerError> {
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

/// A connection with one peer daemon.
#[derive(Debug)]
pub struct PeerConnection {
    conn: quinn::Connection,
    node: String,
    control_send: Mutex<quinn::SendStream>,
    control_recv: Mutex<quinn::RecvStream>,
    chunk: usize,
}

impl PeerConnection {
    fn new(
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
    pub fn udp_payload(&self) -> u16 {
        self.conn.stats().path.current_mtu
    }

    fn stream_err(&self, cause: impl ToString) -> PeerError {
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

    /// Sends a control message. Messages arrive in the order they are sent.
    pub async fn send(&self, msg: &ControlMessage) -> Result<(), PeerError> {
        let mut frame = Vec::new();
        msg.encode(&mut frame)?;
        let mut send = self.control_send.lock().await;
        send.write_all(&frame).await.map_err(|e| self.stream_err(e))
    }

    /// The next control message; `None` once the peer has closed its side of the control
    /// stream. A malformed frame closes the connection.
    pub async fn recv(&self) -> Result<Option<ControlMessage>, PeerError> {
        let mut recv = self.control_recv.lock().await;
        let mut prefix = [0; FRAME_PREFIX];
        match recv.read_exact(&mut prefix).await {
            Ok(()) => {}
            Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
            Err(e) => return Err(self.stream_err(e)),
        }
        let len = frame_len(prefix).map_err(|cause| self.malformed(cause))?;
        // The body grows as its bytes arrive: a length alone (up to `MAX_FRAME`) makes this
        // side allocate no more than one chunk beyond what the peer really sent.
        let mut body = Vec::with_capacity(len.min(CONTROL_CHUNK));
        while body.len() < len {
            let start = body.len();
            body.resize(start + (len - start).min(CONTROL_CHUNK), 0);
            recv.read_exact(&mut body[start..])
                .await
                .map_err(|e| self.stream_err(e))?;
        }
        ControlMessage::decode(&body)
            .map(Some)
            .map_err(|cause| self.malformed(cause))
    }

    /// Closes this side of the control stream: the peer's [`PeerConnection::recv`] returns
    /// `None` after the messages already sent.
    pub async fn finish_control(&self) -> Result<(), PeerError> {
        let mut send = self.control_send.lock().await;
        send.finish().map_err(|e| self.stream_err(e))
    }

    fn malformed(&self, cause: DecodeError) -> PeerError {
        self.conn.close(CODE_PROTOCOL, b"malformed control frame");
        PeerError::Malformed {
            node: self.node.clone(),
            cause,
        }
    }

    /// Sends an object on a stream of its own: the header, then exactly `header.len` bytes
    /// read from `source` in chunks. Each write waits for flow-control credit, so at most the
    /// peer's receive window plus one chunk is buffered on this side. Returns once the peer
    /// has acknowledged every byte: received, not necessarily stored. A refusal by the peer's
    /// reader ([`IncomingObject::refuse`], a failing sink) is an error here only if it comes
    /// before that; after it, the receiving daemon must report it. A source that ends early
    /// or fails resets the stream.
    pub async fn send_object<R>(&self, header: ObjectHeader, source: R) -> Result<(), PeerError>
    where
        R: AsyncRead + Unpin,
    {
        let mut stream = self.open_object(header).await?;
        let mut source = source.take(header.len);
        let chunk = usize::try_from(header.len).unwrap_or(usize::MAX).min(self.chunk);
        let mut sent = 0u64;
        let mut buf = BytesMut::new();
        while sent < header.len {
            // What is read is handed to QUIC as it is (quinn keeps it until the peer
            // acknowledges it) instead of being copied once more; the next read goes to the
            // rest of the buffer, or to a new one (the old one is reused once all of it is
            // acknowledged).
            if buf.capacity() < chunk.div_ceil(8) {
                buf.reserve(chunk);
            }
            let n = match source.read_buf(&mut buf).await {
                Ok(0) => Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the source ended after {sent} of {} bytes", header.len),
                )),
                Ok(n) => Ok(n),
                Err(e) => Err(e),
            };
            let n = match n {
                Ok(n) => n,
                Err(cause) => {
                    let _ = stream.reset(CODE_ABORTED);
                    return Err(PeerError::Source {
                        object: header.object,
                        cause,
                    });
                }
            };
            stream
                .write_chunk(buf.split().freeze())
                .await
                .map_err(|e| self.write_err(header.object, e))?;
            sent += n as u64;
        }
        self.end_object(stream, header).await
    }

    /// Sends an object held in memory, as [`PeerConnection::send_object`] does, without
    /// copying it: QUIC keeps slices of `bytes` until the peer acknowledges them. `bytes` must
    /// be exactly `header.len` long.
    pub async fn send_bytes(&self, header: ObjectHeader, bytes: Bytes) -> Result<(), PeerError> {
        if bytes.len() as u64 != header.len {
            return Err(PeerError::Source {
                object: header.object,
                cause: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{} bytes given for an object of {}", bytes.len(), header.len),
                ),
            });
        }
        let mut stream = self.open_object(header).await?;
        let mut at = 0;
        while at < bytes.len() {
            let end = bytes.len().min(at.saturating_add(self.chunk));
            stream
                .write_chunk(bytes.slice(at..end))
                .await
                .map_err(|e| self.write_err(header.object, e))?;
            at = end;
        }
        self.end_object(stream, header).await
    }

    /// Opens an object's stream and writes its header.
    async fn open_object(&self, header: ObjectHeader) -> Result<quinn::SendStream, PeerError> {
        let mut stream = self.conn.open_uni().await.map_err(|cause| PeerError::Connection {
            node: self.node.clone(),
            cause,
        })?;
        stream
            .write_all(&header.encode())
            .await
            .map_err(|e| self.write_err(header.object, e))?;
        Ok(stream)
    }

    /// Ends an object's stream once all of it is written, and waits until the peer has
    /// acknowledged every byte (or refused the object).
    async fn end_object(&self, mut stream: quinn::SendStream, header: ObjectHeader) -> Result<(), PeerError> {
        stream.finish().map_err(|e| self.stream_err(e))?;
        match stream.stopped().await {
            Ok(None) => Ok(()),
            Ok(Some(code)) => Err(self.refused(header.object, code)),
            Err(e) => Err(self.stream_err(e)),
        }
    }

    fn write_err(&self, object: u64, e: quinn::WriteError) -> PeerError {
        match e {
            quinn::WriteError::Stopped(code) => self.refused(object, code),
            e => self.stream_err(e),
        }
    }

    fn refused(&self, object: u64, code: VarInt) -> PeerError {
        PeerError::Stream {
            node: self.node.clone(),
            cause: format!("object {object} refused by the peer (code {code})"),
        }
    }

    /// Waits for the next object stream the peer opens; its header is read by
    /// [`ObjectStream::header`]. Streams come in the order the peer opened them, but a
    /// stream's first bytes may come after later streams' bytes: it may have waited for
    /// flow-control credit that they took. So read headers concurrently (as
    /// [`PeerConnection::serve_objects`] does), not one after the other: waiting for one
    /// stream's header while the bytes of later ones stay unread can hold all of the
    /// connection's credit, and then nothing moves again.
    pub async fn accept_stream(&self) -> Result<ObjectStream, PeerError> {
        let stream = self.conn.accept_uni().await.map_err(|cause| PeerError::Connection {
            node: self.node.clone(),
            cause,
        })?;
        Ok(ObjectStream {
            stream,
            node: self.node.clone(),
            chunk: self.chunk,
        })
    }

    /// Waits for the next object the peer sends and reads its header; its bytes are read
    /// with [`IncomingObject::read_into`] or [`IncomingObject::next_chunk`]. For one object at
    /// a time: with several in flight, see [`PeerConnection::accept_stream`].
    pub async fn accept_object(&self) -> Result<IncomingObject, PeerError> {
        self.accept_stream().await?.header().await
    }

    /// Accepts the peer's objects until the connection closes, and returns why it closed.
    /// Each object's header is read on a task of its own, which then runs `each` on it; a
    /// stream whose header cannot be read (malformed, or reset by the peer) is given to
    /// `refused` and holds up no other. Must be called inside a tokio runtime.
    pub async fn serve_objects<F, Fut>(&self, each: F, refused: impl Fn(PeerError) + Send + Sync + 'static) -> PeerError
    where
        F: Fn(IncomingObject) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let each = Arc::new(each);
        let refused = Arc::new(refused);
        loop {
            let stream = match self.accept_stream().await {
                Ok(s) => s,
                Err(e) => return e,
            };
            let (each, refused) = (each.clone(), refused.clone());
            tokio::spawn(async move {
                match stream.header().await {
                    Ok(obj) => each(obj).await,
                    Err(e) => refused(e),
                }
            });
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

/// Where a received object's bytes go (the arena, later): chunks in order, at increasing
/// offsets, `len` bytes in all.
pub trait ObjectSink {
    /// Stores `chunk` at `offset` in the object.
    fn write_chunk(&mut self, offset: u64, chunk: &[u8]) -> std::io::Result<()>;
}

impl ObjectSink for Vec<u8> {
    fn write_chunk(&mut self, _offset: u64, chunk: &[u8]) -> std::io::Result<()> {
        self.extend_from_slice(chunk);
        Ok(())
    }
}

impl<F> ObjectSink for F
where
    F: FnMut(u64, &[u8]) -> std::io::Result<()>,
{
    fn write_chunk(&mut self, offset: u64, chunk: &[u8]) -> std::io::Result<()> {
        self(offset, chunk)
    }
}

/// An object stream the peer opened, its header not read yet.
#[derive(Debug)]
pub struct ObjectStream {
    stream: quinn::RecvStream,
    node: String,
    chunk: usize,
}

impl ObjectStream {
    /// Reads the object's header. A malformed one stops the stream (the sender fails).
    pub async fn header(mut self) -> Result<IncomingObject, PeerError> {
        let mut header = [0; OBJECT_HEADER_LEN];
        self.stream
            .read_exact(&mut header)
            .await
            .map_err(|e| PeerError::Stream {
                node: self.node.clone(),
                cause: e.to_string(),
            })?;
        let header = ObjectHeader::decode(&header).map_err(|cause| {
            let _ = self.stream.stop(CODE_ABORTED);
            PeerError::Malformed {
                node: self.node.clone(),
                cause,
            }
        })?;
        Ok(IncomingObject {
            header,
            stream: self.stream,
            node: self.node,
            received: 0,
            chunk: self.chunk,
        })
    }
}

/// An object arriving from a peer, its header read.
#[derive(Debug)]
pub struct IncomingObject {
    header: ObjectHeader,
    stream: quinn::RecvStream,
    node: String,
    received: u64,
    chunk: usize,
}

impl IncomingObject {
    /// The object's header.
    pub fn header(&self) -> ObjectHeader {
        self.header
    }

    /// Bytes read so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The next chunk of the object's bytes, `None` after the last. Never returns more than
    /// the header's `len` in all; a stream that ends early or holds more is an error.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, PeerError> {
        let left = self.header.len - self.received;
        let max = usize::try_from(left).unwrap_or(usize::MAX).clamp(1, self.chunk);
        let chunk = self.stream.read_chunk(max, true).await.map_err(|e| PeerError::Stream {
            node: self.node.clone(),
            cause: format!("object {}: {e}", self.header.object),
        })?;
        match chunk {
            None if left == 0 => Ok(None),
            None => Err(self.length_error(format!(
                "the stream ended after {} of {} bytes",
                self.received, self.header.len
            ))),
            Some(_) if left == 0 => {
                let _ = self.stream.stop(CODE_ABORTED);
                Err(self.length_error(format!(
                    "the stream holds more than the {} bytes announced",
                    self.header.len
                )))
            }
            Some(c) => {
                self.received += c.bytes.len() as u64;
                Ok(Some(c.bytes))
            }
        }
    }

    fn length_error(&self, what: String) -> PeerError {
        PeerError::ObjectLength {
            node: self.node.clone(),
            object: self.header.object,
            what,
        }
    }

    /// Reads the whole object into `sink`; returns its length. A failing sink stops the stream
    /// (the sender's [`PeerConnection::send_object`] fails).
    pub async fn read_into(mut self, sink: &mut impl ObjectSink) -> Result<u64, PeerError> {
        while let Some(chunk) = self.next_chunk().await? {
            let offset = self.received - chunk.len() as u64;
            if let Err(cause) = sink.write_chunk(offset, &chunk) {
                let _ = self.stream.stop(CODE_ABORTED);
                return Err(PeerError::Sink {
                    object: self.header.object,
                    cause,
                });
            }
        }
        Ok(self.received)
    }

    /// Refuses the object: the sender's [`PeerConnection::send_object`] fails.
    pub fn refuse(mut self) {
        let _ = self.stream.stop(CODE_ABORTED);
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_handshake_that_times_out_does_not_blame_the_certificates() {
        let timed_out = handshake_hint(&quinn::ConnectionError::TimedOut);
        assert!(timed_out.starts_with("nothing answered at that address"), "{timed_out}");
        assert!(!timed_out.contains("certificate"), "{timed_out}");
        let refused = handshake_hint(&quinn::ConnectionError::ConnectionClosed(quinn::ConnectionClose {
            error_code: quinn::TransportErrorCode::crypto(42),
            frame_type: None,
            reason: Vec::new().into(),
        }));
        assert!(refused.contains("certificates from the same"), "{refused}");
        let closed = handshake_hint(&quinn::ConnectionError::LocallyClosed);
        assert!(!closed.contains("certificate"), "{closed}");
    }
    use super::*;
    use crate::io::tls::ClusterCa;

    /// A stream opened first but silent (its bytes wait for credit) must not keep later
    /// objects from being read: they hold the connection's credit until they are.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_silent_stream_does_not_hold_up_later_objects() {
        let limit = Duration::from_secs(20);
        let ca = ClusterCa::generate("test").unwrap();
        let trust = ca.trust();
        // Windows far smaller than the object: it can only arrive if it is read as it comes.
        let config = PeerConfig {
            stream_window: 64 << 10,
            connection_window: 64 << 10,
            ..PeerConfig::default()
        };
        let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let a = PeerEndpoint::bind(local, &ca.issue("worker-0").unwrap(), &trust, config.clone()).unwrap();
        let b = PeerEndpoint::bind(local, &ca.issue("worker-1").unwrap(), &trust, config).unwrap();
        let (ab, ba) = tokio::join!(a.connect(b.local_addr().unwrap(), "worker-1"), b.accept());
        let (ab, ba) = (ab.unwrap(), Arc::new(ba.unwrap()));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let server = ba.clone();
        tokio::spawn(async move {
            server
                .serve_objects(
                    move |obj| {
                        let tx = tx.clone();
                        async move {
                            let id = obj.header().object;
                            let mut got = Vec::new();
                            let _ = obj.read_into(&mut got).await;
                            let _ = tx.send((id, got));
                        }
                    },
                    |e| panic!("refused: {e}"),
                )
                .await
        });
        // The first stream is opened and says nothing yet; the next carries 1 MiB.
        let mut silent = ab.conn.open_uni().await.unwrap();
        let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        let header = |object, len| ObjectHeader {
            invocation: 1,
            object,
            len,
        };
        tokio::time::timeout(limit, ab.send_object(header(2, big.len() as u64), &big[..]))
            .await
            .expect("the later object was held up by the silent stream")
            .unwrap();
        let (id, got) = tokio::time::timeout(limit, rx.recv()).await.unwrap().unwrap();
        assert_eq!(id, 2);
        assert!(got == big, "the object's bytes differ");
        // The silent stream speaks at last, and is read too.
        silent.write_all(&header(1, 3).encode()).await.unwrap();
        silent.write_all(b"abc").await.unwrap();
        silent.finish().unwrap();
        let (id, got) = tokio::time::timeout(limit, rx.recv()).await.unwrap().unwrap();
        assert_eq!((id, got.as_slice()), (1, &b"abc"[..]));
    }
}
