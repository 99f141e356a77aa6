//! Sending objects: each on a unidirectional stream of its own, its header and then exactly
//! `len` bytes, read from a source (or sliced from memory) a chunk at a time as flow control
//! gives credit.

use bytes::{Bytes, BytesMut};
use quinn::VarInt;
use tokio::io::{AsyncRead, AsyncReadExt as _};

use super::super::message::ObjectHeader;
use super::{CODE_ABORTED, PeerConnection, PeerError};

impl PeerConnection {
    /// Sends an object on a stream of its own: the header, then exactly `header.len` bytes
    /// read from `source` in chunks. Each write waits for flow-control credit, so at most the
    /// peer's receive window plus one chunk is buffered on this side. Returns once the peer
    /// has acknowledged every byte: received, not necessarily stored. A refusal by the peer's
    /// reader ([`IncomingObject::refuse`], a failing sink) is an error here only if it comes
    /// before that; after it, the receiving daemon must report it. A source that ends early
    /// or fails resets the stream.
    ///
    /// [`IncomingObject::refuse`]: super::IncomingObject::refuse
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
}
