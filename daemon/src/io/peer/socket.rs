//! The endpoint's UDP socket: bound with a retry while a given port is still held, and
//! wrapped so that a segmented send never exceeds what the kernel takes at once.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// How long binding a given UDP port that is taken is tried again: a daemon started again on
/// the ports of one that just died may find them held a moment longer (by its instances, or
/// the kernel).
pub const BIND_RETRY: Duration = Duration::from_secs(5);

/// Binds `addr`, trying again for up to [`BIND_RETRY`] while a given port is in use.
pub(super) fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
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

/// Bytes one `sendmsg` carries at most, all its GSO segments together: the payload limit of one
/// IPv4 datagram, which the kernel applies to a segmented send as a whole.
const MAX_SEND: usize = 65_507;

/// The runtime's UDP socket, except that a transmit of several segments whose total exceeds
/// [`MAX_SEND`] (packets to another host with a large [`PeerConfig::max_udp_payload`], several
/// to a transmit; loopback peers get one packet per transmit) goes out in several sends.
///
/// [`PeerConfig::max_udp_payload`]: super::PeerConfig::max_udp_payload
#[derive(Debug)]
pub(super) struct SplitGso {
    pub(super) inner: Arc<dyn quinn::AsyncUdpSocket>,
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
