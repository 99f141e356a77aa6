//! The runtime's network driver: the QUIC endpoint shared with the other workers of the
//! cluster, run on a tokio runtime of its own, with one worker thread, beside the loop thread.
//! One thread is enough: a connection's QUIC work (encryption, packets, acknowledgements) runs
//! in one task whatever the number of threads, and a second thread mostly costs a wake-up of an
//! idle thread per packet sent, taken from the CPU the receiving side of a transfer needs.
//!
//! The loop never waits on the network. What it sends goes into a queue per peer, served by
//! one task per peer that dials it on first use (messages to one peer leave in order; each
//! object leaves on a stream of its own, read straight from the arena). What arrives is posted
//! to the loop's inbox ([`NetEvent`]): control messages as they are; an object's stream first
//! asks the loop where its bytes go ([`NetEvent::Incoming`] → [`Landing`]), then writes them
//! there chunk by chunk as QUIC flow control lets them in, then reports
//! [`NetEvent::Arrived`]. Peers are accepted in a loop, each handshake in a task of its own;
//! a peer the cluster CA did not certify is refused and logged. Every task runs inside the
//! worker's span.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use faasflow_shm::Region;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

use crate::config::PeerSettings;
use crate::io::message::{ControlMessage, ObjectHeader};
use crate::io::peer::{PeerConnection, PeerEndpoint, PeerError};
use crate::store::arena::Extent;

/// Why the network driver could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum NetError {
    /// Its threads could not start.
    #[error("cannot start the network threads: {0}")]
    Threads(std::io::Error),
    /// The endpoint could not be bound.
    #[error("{0}")]
    Bind(#[from] PeerError),
}

/// Why an object did not get through (either way).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum TransferError {
    /// The stream closed before the object's bytes could be written.
    #[error("the stream closed")]
    Closed,
    /// The transport failed.
    #[error("{0}")]
    Peer(#[from] PeerError),
    /// A spill file could not be written.
    #[error("spill file {}: {cause}", path.display())]
    File { path: PathBuf, cause: io::Error },
    /// The connection to the peer is gone.
    #[error("{0}")]
    Lost(String),
}

/// What the network tells the loop.
pub(crate) enum NetEvent {
    /// A control message from peer `from`, whose endpoint is at `addr` (it dials from the
    /// endpoint it listens on, so that is where it can be answered).
    Message {
        from: String,
        addr: SocketAddr,
        msg: ControlMessage,
    },
    /// An object's stream opened: where do its bytes go?
    Incoming {
        from: String,
        header: ObjectHeader,
        reply: oneshot::Sender<Landing>,
    },
    /// An object's bytes are all where [`Landing`] said (or the transfer failed).
    Arrived {
        from: String,
        header: ObjectHeader,
        landing: Landing,
        /// Time from the stream's first byte to its last, µs.
        result: Result<f64, TransferError>,
    },
    /// A push ended (the bytes are acknowledged by the peer, or it failed).
    Sent {
        object: u64,
        result: Result<(), TransferError>,
    },
    /// A peer cannot be reached any more.
    Lost { node: String, error: String },
    /// A message about `invocation` could not be encoded (too large).
    Unsendable { invocation: u64, error: String },
}

/// Where an arriving object's bytes go.
#[derive(Debug, Clone)]
pub(crate) enum Landing {
    /// A reserved arena extent, in this memory file (its segment's).
    Arena(Extent, Arc<Region>),
    /// A file in the spill directory (the arena or the quota is full).
    File(PathBuf),
    /// Nowhere: the object is refused (its invocation is over, or it is empty).
    Refuse,
}

/// Where an object to push is read from.
pub(crate) enum Source {
    /// Arena bytes, in `region` (their segment's; the object is pinned until
    /// [`NetEvent::Sent`]).
    Arena { region: Arc<Region>, offset: u64, len: u64 },
    /// A spill file.
    File(PathBuf),
    /// Bytes in memory (read back from the remote tier, or a workflow input sent to several
    /// workers), sent without a copy.
    Bytes(Bytes),
}

enum Outbound {
    Control(ControlMessage),
    Object { header: ObjectHeader, source: Source },
}

type Post = Arc<dyn Fn(NetEvent) + Send + Sync>;

/// The task that dials one peer: the address it dials, its generation, its queue.
struct Dialled {
    addr: SocketAddr,
    generation: u64,
    tx: mpsc::UnboundedSender<Outbound>,
}

/// Which connections to each peer are current. A connection replaced (the peer is now
/// elsewhere, or was forgotten because its daemon started again) ends without a
/// [`NetEvent::Lost`]: the invocations of the peer's new process must not fail because its
/// old one's connection timed out.
#[derive(Default)]
struct Current {
    /// The task dialling each peer.
    dialled: HashMap<String, Dialled>,
    /// The generation of the newest connection each peer dialled to us; older ones are stale.
    incoming: HashMap<String, u64>,
    next: u64,
}

impl Current {
    fn generation(&mut self) -> u64 {
        self.next += 1;
        self.next
    }
}

/// The driver. Dropping it closes every connection.
pub(crate) struct Net {
    rt: tokio::runtime::Runtime,
    endpoint: Arc<PeerEndpoint>,
    current: Arc<Mutex<Current>>,
    post: Post,
}

impl Net {
    /// Binds the endpoint and starts accepting peers.
    pub(crate) fn start(settings: &PeerSettings, post: Post) -> Result<Net, NetError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("faasflow-net")
            .enable_all()
            .build()
            .map_err(NetError::Threads)?;
        let endpoint = rt.block_on(async {
            PeerEndpoint::bind(
                settings.bind,
                &settings.identity,
                &settings.trust,
                settings.transport.clone(),
            )
        })?;
        let endpoint = Arc::new(endpoint);
        let current = Arc::new(Mutex::new(Current::default()));
        rt.spawn(accept_loop(endpoint.clone(), post.clone(), current.clone()).in_current_span());
        Ok(Net {
            rt,
            endpoint,
            current,
            post,
        })
    }

    /// Forgets the connections with `node` (its daemon started again, or is lost): the next
    /// message dials it anew, and the old connections end without a [`NetEvent::Lost`].
    pub(crate) fn forget(&self, node: &str) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current.dialled.remove(node);
        let generation = current.generation();
        current.incoming.insert(node.to_owned(), generation);
    }

    /// Where the endpoint listens.
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.local_addr().ok()
    }

    /// Sends a control message to `node` (at `addr`); messages to one node arrive in order.
    pub(crate) fn send(&self, node: &str, addr: SocketAddr, msg: ControlMessage) {
        self.enqueue(node, addr, Outbound::Control(msg));
    }

    /// Pushes an object to `node`; [`NetEvent::Sent`] says when it is through.
    pub(crate) fn push(&self, node: &str, addr: SocketAddr, header: ObjectHeader, source: Source) {
        self.enqueue(node, addr, Outbound::Object { header, source });
    }

    fn enqueue(&self, node: &str, addr: SocketAddr, out: Outbound) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let out = match current.dialled.get(node) {
            // A peer on another address is another process (its daemon started again): the
            // old connection's task ends with its queue, and the new address is dialled.
            Some(d) if d.addr == addr => match d.tx.send(out) {
                Ok(()) => return,
                Err(mpsc::error::SendError(out)) => out,
            },
            _ => out,
        };
        // No task for this peer, or its last one ended with its connection: dial again.
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(out);
        let generation = current.generation();
        current
            .dialled
            .insert(node.to_owned(), Dialled { addr, generation, tx });
        self.rt.spawn(
            peer_task(
                self.endpoint.clone(),
                Peer {
                    node: node.to_owned(),
                    addr,
                    generation,
                    current: self.current.clone(),
                },
                rx,
                self.post.clone(),
            )
            .in_current_span(),
        );
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.endpoint.close();
    }
}

/// Serves the queue of one peer: dials it, sends control messages in order and starts a
/// stream per object. Ends (dropping its queue) when the connection fails.
async fn peer_task(endpoint: Arc<PeerEndpoint>, peer: Peer, mut rx: mpsc::UnboundedReceiver<Outbound>, post: Post) {
    let (node, addr) = (peer.node.clone(), peer.addr);
    let conn = match endpoint.connect(addr, &node).await {
        Ok(c) => Arc::new(c),
        Err(e) => {
            let error = format!("cannot reach worker `{node}` at {addr}: {e}");
            return give_up(&mut rx, &post, &peer, error);
        }
    };
    loop {
        let out = tokio::select! {
            out = rx.recv() => out,
            why = conn.closed() => {
                let error = format!("the connection to worker `{node}` ({addr}) closed: {why}");
                return give_up(&mut rx, &post, &peer, error);
            }
        };
        let Some(out) = out else { return };
        match out {
            Outbound::Control(msg) => match conn.send(&msg).await {
                Ok(()) => {}
                Err(PeerError::Encode(e)) => {
                    // This message only: its invocation fails, the connection is fine.
                    post(NetEvent::Unsendable {
                        invocation: msg.invocation(),
                        error: format!("cannot send to worker `{node}`: {e}"),
                    });
                }
                Err(e) => {
                    let error = format!("lost the connection to worker `{node}` ({addr}): {e}");
                    return give_up(&mut rx, &post, &peer, error);
                }
            },
            Outbound::Object { header, source } => {
                let (conn, post) = (conn.clone(), post.clone());
                tokio::spawn(
                    async move {
                        let result = send_object(&conn, header, source).await;
                        post(NetEvent::Sent {
                            object: header.object,
                            result: result.map_err(TransferError::from),
                        });
                    }
                    .in_current_span(),
                );
            }
        }
    }
}

/// The peer a task dials, and which of its tasks this is.
struct Peer {
    node: String,
    addr: SocketAddr,
    generation: u64,
    current: Arc<Mutex<Current>>,
}

/// The connection to a peer failed: fails the pushes still queued, and says the peer is lost
/// once, unless this connection was replaced meanwhile ([`Net::forget`], a new address).
fn give_up(rx: &mut mpsc::UnboundedReceiver<Outbound>, post: &Post, peer: &Peer, error: String) {
    rx.close();
    while let Ok(out) = rx.try_recv() {
        if let Outbound::Object { header, .. } = out {
            post(NetEvent::Sent {
                object: header.object,
                result: Err(TransferError::Lost(error.clone())),
            });
        }
    }
    let still_current = {
        let mut current = peer.current.lock().unwrap_or_else(|e| e.into_inner());
        let mine = current
            .dialled
            .get(&peer.node)
            .is_some_and(|d| d.generation == peer.generation);
        if mine {
            current.dialled.remove(&peer.node);
        }
        mine
    };
    if still_current {
        post(NetEvent::Lost {
            node: peer.node.clone(),
            error,
        });
    }
}

async fn send_object(conn: &PeerConnection, header: ObjectHeader, source: Source) -> Result<(), PeerError> {
    match source {
        Source::Arena { region, offset, len } => {
            conn.send_object(
                header,
                RegionReader {
                    region,
                    offset,
                    left: len,
                },
            )
            .await
        }
        Source::File(path) => {
            let file = std::fs::File::open(&path).map_err(|cause| PeerError::Source {
                object: header.object,
                cause,
            })?;
            conn.send_object(header, tokio::fs::File::from_std(file)).await
        }
        Source::Bytes(bytes) => conn.send_bytes(header, bytes).await,
    }
}

/// Reads arena bytes (which the loop keeps from being freed until the push ends).
struct RegionReader {
    region: Arc<Region>,
    offset: u64,
    left: u64,
}

impl AsyncRead for RegionReader {
    fn poll_read(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.left) as usize;
        let dst = buf.initialize_unfilled_to(n);
        if !self.region.copy_out(self.offset, dst) {
            return Poll::Ready(Err(io::Error::other("the object lies outside the arena")));
        }
        buf.advance(n);
        self.offset += n as u64;
        self.left -= n as u64;
        Poll::Ready(Ok(()))
    }
}

async fn accept_loop(endpoint: Arc<PeerEndpoint>, post: Post, current: Arc<Mutex<Current>>) {
    loop {
        let handshake = match endpoint.incoming().await {
            Ok(h) => h,
            Err(PeerError::EndpointClosed) => return,
            Err(e) => {
                tracing::warn!(cause = %e, "a peer could not connect");
                continue;
            }
        };
        let (post, current) = (post.clone(), current.clone());
        tokio::spawn(
            async move {
                let remote = handshake.remote_address();
                match handshake.finish().await {
                    Ok(conn) => serve(Arc::new(conn), post, current).await,
                    Err(e) => tracing::warn!(peer = %remote, cause = %e, "refused a peer"),
                }
            }
            .in_current_span(),
        );
    }
}

/// Reads what one peer sends: its control messages in order, its objects in parallel.
async fn serve(conn: Arc<PeerConnection>, post: Post, current: Arc<Mutex<Current>>) {
    let node = conn.peer_node().to_owned();
    let addr = conn.remote_address();
    let generation = {
        let mut c = current.lock().unwrap_or_else(|e| e.into_inner());
        let g = c.generation();
        c.incoming.insert(node.clone(), g);
        g
    };
    let objects = {
        let (conn, post, node) = (conn.clone(), post.clone(), node.clone());
        let span = tracing::Span::current();
        tokio::spawn(
            async move {
                let peer = node.clone();
                conn.serve_objects(
                    move |obj| receive(obj, node.clone(), post.clone()).instrument(span.clone()),
                    move |e| {
                        if matches!(e, PeerError::Malformed { .. }) {
                            tracing::warn!(worker = %peer, cause = %e, "refused an object from a peer");
                        }
                    },
                )
                .await
            }
            .in_current_span(),
        )
    };
    loop {
        match conn.recv().await {
            Ok(Some(msg)) => post(NetEvent::Message {
                from: node.clone(),
                addr,
                msg,
            }),
            Ok(None) => break,
            Err(e) => {
                // A connection the peer's newer one (or a forget) replaced says nothing of it.
                let stale = current
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .incoming
                    .get(&node)
                    .is_some_and(|g| *g != generation);
                if !stale {
                    post(NetEvent::Lost {
                        node: node.clone(),
                        error: format!("lost the connection from worker `{node}`: {e}"),
                    });
                }
                break;
            }
        }
    }
    objects.abort();
}

async fn receive(obj: crate::io::peer::IncomingObject, from: String, post: Post) {
    let header = obj.header();
    let (tx, rx) = oneshot::channel();
    post(NetEvent::Incoming {
        from: from.clone(),
        header,
        reply: tx,
    });
    let Ok(landing) = rx.await else {
        obj.refuse();
        return;
    };
    let t = Instant::now();
    let result = match &landing {
        Landing::Refuse => {
            obj.refuse();
            return;
        }
        Landing::Arena(e, region) => {
            let base = e.offset;
            let mut sink = |offset: u64, chunk: &[u8]| {
                let inside = offset.checked_add(chunk.len() as u64).is_some_and(|end| end <= e.len);
                if inside && region.copy_in(base + offset, chunk) {
                    Ok(())
                } else {
                    Err(io::Error::other("the extent lies outside the arena"))
                }
            };
            obj.read_into(&mut sink).await.map_err(TransferError::from)
        }
        Landing::File(path) => receive_file(obj, path).await,
    };
    post(NetEvent::Arrived {
        from,
        header,
        landing,
        result: result.map(|_| t.elapsed().as_secs_f64() * 1e6),
    });
}

async fn receive_file(mut obj: crate::io::peer::IncomingObject, path: &PathBuf) -> Result<u64, TransferError> {
    let file_error = |cause| TransferError::File {
        path: path.clone(),
        cause,
    };
    let mut f = tokio::fs::File::create(path).await.map_err(file_error)?;
    while let Some(chunk) = obj.next_chunk().await? {
        f.write_all(&chunk).await.map_err(file_error)?;
    }
    f.flush().await.map_err(file_error)?;
    Ok(obj.received())
}
