//! Receiving objects: the streams a peer opens ([`ObjectStream`]), each header read on its own
//! ([`PeerConnection::serve_objects`]), then the object's bytes ([`IncomingObject`]) read chunk
//! by chunk into an [`ObjectSink`], no more and no fewer than its header says.

use std::sync::Arc;

use bytes::Bytes;

use super::super::message::{OBJECT_HEADER_LEN, ObjectHeader};
use super::{CODE_ABORTED, PeerConnection, PeerError};

impl PeerConnection {
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
