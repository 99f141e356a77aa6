//! The control stream of a connection: framed [`ControlMessage`]s, in order, at a higher
//! priority than object bytes; a malformed frame closes the connection.

use super::super::message::{ControlMessage, DecodeError, FRAME_PREFIX, frame_len};
use super::{CODE_PROTOCOL, PeerConnection, PeerError};

/// Bytes of a control frame read at a time (the body grows by this much as bytes arrive).
const CONTROL_CHUNK: usize = 1 << 20;

/// Priority of the control stream: QUIC sends the data of higher-priority streams first, and
/// object streams have the default, 0.
pub(super) const CONTROL_PRIORITY: i32 = 1;

impl PeerConnection {
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
}
