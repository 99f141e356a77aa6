//! The connections the planner's and the daemons' servers take: TLS 1.3 from the cluster CA
//! (ALPN `h2` and `http/1.1`, so gRPC and HTTP/JSON share the port), or plain TCP when a
//! process was started with `--insecure-loopback` (then it listens on loopback only).
//!
//! Each TLS handshake runs in a task of its own with a time limit, so a client that stalls in
//! it holds up no other. A client certificate, when one is presented, has been checked against
//! the cluster CA by rustls; the node it names is known to every call on that connection as
//! [`Peer::node`] (tonic puts the [`Peer`] into each request's extensions).
//!
//! A plain HTTP request to a TLS port is answered with a JSON error that says to use
//! `https://`, rather than a dropped connection.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

use crate::tls::node_name_of;

/// Time limit of a client's TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections accepted but not yet taken by the server.
const BACKLOG: usize = 256;

/// TLS handshakes under way at once; accepting waits for one to end past it (a flood of
/// silent connections holds at most this many sockets for [`HANDSHAKE_TIMEOUT`]).
const MAX_HANDSHAKES: usize = 256;

/// The first byte of a TLS record that opens a handshake.
const TLS_HANDSHAKE: u8 = 0x16;

/// Who is at the other end of a connection.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    /// The client's address.
    pub addr: Option<SocketAddr>,
    /// The cluster node the client's certificate names (checked against the cluster CA), if
    /// it presented one.
    pub node: Option<String>,
    /// Whether the connection is TLS.
    pub tls: bool,
}

impl Peer {
    /// The peer of a request served here (`None`: not served through [`incoming`], e.g. in a
    /// test that calls a service directly).
    pub fn of<T>(request: &tonic::Request<T>) -> Option<&Peer> {
        request.extensions().get::<Peer>()
    }
}

/// An accepted connection, TLS or plain.
#[derive(Debug)]
pub enum Conn {
    /// Plain TCP (`--insecure-loopback`).
    Plain(TcpStream, Peer),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>, Peer),
}

impl Connected for Conn {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        match self {
            Conn::Plain(_, p) | Conn::Tls(_, p) => p.clone(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s, _) => s.is_write_vectored(),
            Conn::Tls(s, _) => s.is_write_vectored(),
        }
    }
}

/// The connections accepted on `listener`: TLS with `tls`, plain without. Accepted sockets get
/// `TCP_NODELAY` (without it a response's frames, written apart, wait for the client's delayed
/// ACK: tens of ms per call). Must be called within a tokio runtime; the accepting task ends
/// when the stream is dropped.
pub fn incoming(listener: TcpListener, tls: Option<Arc<ServerConfig>>) -> impl Stream<Item = io::Result<Conn>> {
    let (tx, rx) = mpsc::channel::<Conn>(BACKLOG);
    tokio::spawn(accept_loop(listener, tls.map(TlsAcceptor::from), tx));
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (Ok(c), rx)) })
}

async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, tx: mpsc::Sender<Conn>) {
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, and go on serving.
                    tracing::warn!(cause = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = tx.closed() => return,
        };
        let _ = stream.set_nodelay(true);
        let tx = tx.clone();
        match &tls {
            None => {
                let peer = Peer {
                    addr: Some(addr),
                    node: None,
                    tls: false,
                };
                if tx.send(Conn::Plain(stream, peer)).await.is_err() {
                    return;
                }
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let Ok(permit) = handshakes.clone().acquire_owned().await else {
                    return;
                };
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&acceptor, stream, addr)).await {
                        Ok(Some(conn)) => {
                            let _ = tx.send(conn).await;
                        }
                        Ok(None) => {}
                        Err(_) => tracing::debug!(client = %addr, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
}

/// The TLS handshake of a client at `addr`; `None` when it fails (logged at debug: a scanner or
/// a client without the CA's trust is not the server's problem). A plain HTTP request is
/// answered with a JSON error saying to use `https://`.
async fn handshake(acceptor: &TlsAcceptor, mut stream: TcpStream, addr: SocketAddr) -> Option<Conn> {
    let mut first = [0u8; H2_PREFACE.len()];
    match stream.peek(&mut first).await {
        Ok(n) if n > 0 && first[0] != TLS_HANDSHAKE => {
            // An HTTP/1 request (a method in capitals), not plain gRPC (HTTP/2's preface,
            // which an HTTP/1 answer would only confuse).
            if first[0].is_ascii_uppercase() && !H2_PREFACE.starts_with(&first[..n]) {
                // Read the request's head first (bounded): a socket closed with unread bytes
                // is reset, and the answer lost with it.
                let mut head = Vec::new();
                let mut buf = [0u8; 2048];
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    while head.len() < 16 << 10 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                })
                .await;
                let _ = stream.write_all(plain_http_answer().as_bytes()).await;
                let _ = stream.shutdown().await;
            }
            tracing::debug!(client = %addr, "a client spoke plain TCP to the TLS port");
            return None;
        }
        Ok(n) if n > 0 => {}
        _ => return None,
    }
    match acceptor.accept(stream).await {
        Ok(tls) => {
            let node = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|cert| node_name_of(cert).ok());
            let peer = Peer {
                addr: Some(addr),
                node,
                tls: true,
            };
            Some(Conn::Tls(Box::new(tls), peer))
        }
        Err(e) => {
            tracing::debug!(client = %addr, cause = %e, "TLS handshake failed");
            None
        }
    }
}

/// How an HTTP/2 connection without TLS starts (gRPC over plain TCP).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// The body of the answer to a plain HTTP/1 request to a TLS port.
const PLAIN_HTTP_BODY: &str = r#"{"error":{"code":"FAILED_PRECONDITION","message":"this port speaks TLS: use https:// and trust the cluster CA (curl --cacert ca.pem), ca.pem from `faasflow cluster init`"}}"#;

/// What a plain HTTP/1 request to a TLS port gets.
fn plain_http_answer() -> String {
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{PLAIN_HTTP_BODY}",
        PLAIN_HTTP_BODY.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_http_answer_says_its_length_right() {
        let answer = plain_http_answer();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, body.len());
        serde_json::from_str::<serde_json::Value>(body).unwrap();
    }
}
