//! The transport's settings ([`PeerConfig`]): flow-control windows, packet sizes, keep-alive
//! and idle timeout, and the QUIC transport configuration made from them for each kind of peer.

use std::sync::Arc;
use std::time::Duration;

use quinn::{IdleTimeout, TransportConfig, VarInt};

use super::PeerError;

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
    pub(super) fn transport(
        &self,
        udp_payload: u16,
        loopback: bool,
        socket_window: u32,
    ) -> Result<TransportConfig, PeerError> {
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
