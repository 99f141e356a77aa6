//! Channels and clients: every gRPC connection between faasflow's processes is made here, with
//! the same message limit, connect timeout and transport: TLS 1.3 checked against the cluster
//! CA and the node name the caller expects ([`Transport::Tls`]), or plain TCP to a loopback
//! address ([`Transport::Plain`], `--insecure-loopback`).

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use faasflow_proto::v1::daemon_client::DaemonClient;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::codegen::http::Uri;
use tonic::transport::{Channel, Endpoint};

use crate::auth::{Attach, AuthChannel, Token};
use crate::tls::handshake_failure;

/// Largest gRPC message faasflow accepts or sends (plans of 100,000 functions fit).
pub const MAX_MESSAGE: usize = 256 << 20;
/// Time limit of connecting to a daemon.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How a client reaches a server.
#[derive(Clone)]
pub enum Transport {
    /// TLS with these settings (`tls::api_client_config`); the server must present the
    /// certificate of the node the caller names.
    Tls(Arc<ClientConfig>),
    /// Plain TCP: only for a server on loopback (`--insecure-loopback`).
    Plain,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Tls(_) => "Transport::Tls",
            Transport::Plain => "Transport::Plain",
        })
    }
}

/// Two TLS transports are equal when they share their settings.
impl PartialEq for Transport {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Transport::Tls(a), Transport::Tls(b)) => Arc::ptr_eq(a, b),
            (Transport::Plain, Transport::Plain) => true,
            _ => false,
        }
    }
}

impl Transport {
    /// Whether calls go over TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    /// A channel to the server at `addr` (`host:port`), whose certificate must name `node`;
    /// connected at the first call (and again after it breaks), each call limited to
    /// `call_timeout` when there is one. Must be called within a tokio runtime.
    pub fn lazy(
        &self,
        addr: &str,
        node: &str,
        call_timeout: Option<Duration>,
    ) -> Result<Channel, tonic::transport::Error> {
        let mut endpoint = endpoint(addr)?;
        if let Some(t) = call_timeout {
            endpoint = endpoint.timeout(t);
        }
        Ok(match self {
            Transport::Plain => endpoint.connect_with_connector_lazy(plain_connector()),
            Transport::Tls(config) => endpoint.connect_with_connector_lazy(tls_connector(config.clone(), node)),
        })
    }

    /// A channel to the server at `addr` whose certificate must name `node`, connected now.
    pub async fn connect(&self, addr: &str, node: &str) -> Result<Channel, tonic::transport::Error> {
        let endpoint = endpoint(addr)?;
        match self {
            Transport::Plain => endpoint.connect_with_connector(plain_connector()).await,
            Transport::Tls(config) => {
                endpoint
                    .connect_with_connector(tls_connector(config.clone(), node))
                    .await
            }
        }
    }
}

/// What a client needs to call a server of the cluster: the token its calls carry and how it
/// reaches the server.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// The cluster's API token (none: the server is open).
    pub token: Option<Token>,
    /// TLS, or plain loopback.
    pub transport: Transport,
}

/// A client of a daemon over `channel`, carrying `token`.
pub fn daemon_client(channel: Channel, token: &Option<Token>) -> DaemonClient<AuthChannel> {
    DaemonClient::with_interceptor(channel, Attach::new(token.clone()))
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

/// The endpoint at `addr` (`host:port`). Its time limits are the connectors' own (TCP within
/// [`CONNECT_TIMEOUT`], then the TLS handshake within its own limit), each failing with its
/// own message.
fn endpoint(addr: &str) -> Result<Endpoint, tonic::transport::Error> {
    // The scheme is `http` even over TLS: the TLS is this module's connector's, not tonic's.
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW))
}

/// HTTP/2 flow-control windows of every connection, client and server: a stream may have
/// this many bytes in flight before the receiver acknowledges them, enough for a stream of
/// 4 MiB pieces (an output read, an input put) not to wait on acknowledgements over a link
/// with some latency (on loopback it changes nothing measurable).
pub const STREAM_WINDOW: u32 = 4 << 20;

/// The window of a whole connection (its streams together).
pub const CONNECTION_WINDOW: u32 = 8 << 20;

/// TCP to the URI's host and port, within [`CONNECT_TIMEOUT`], with `TCP_NODELAY`.
async fn tcp(uri: &Uri) -> io::Result<(TcpStream, String)> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("`{uri}`: {what}"));
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(invalid("an address has no user part"));
    }
    let host = uri.host().ok_or_else(|| invalid("names no host"))?;
    let port = uri.port_u16().ok_or_else(|| invalid("names no port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let at = format!("{host}:{port}");
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port)))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no connection to {at} within {CONNECT_TIMEOUT:?}"),
            )
        })??;
    tcp.set_nodelay(true)?;
    Ok((tcp, at))
}

/// Plain TCP, only to a loopback address (checked on the address actually connected to):
/// nothing crosses a network in clear.
fn plain_connector() -> impl tower::Service<
    Uri,
    Response = TokioIo<TcpStream>,
    Error = io::Error,
    Future = impl Future<Output = io::Result<TokioIo<TcpStream>>> + Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(|uri: Uri| async move {
        let (tcp, at) = tcp(&uri).await?;
        if !tcp.peer_addr()?.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{at} is not on this host: without TLS (--insecure-loopback) only loopback addresses are called"
                ),
            ));
        }
        Ok(TokioIo::new(tcp))
    })
}

/// Connects over TCP to the URI's authority, then TLS with `config`, expecting `node`'s
/// certificate; a failed handshake is said for people ([`handshake_failure`]).
fn tls_connector(
    config: Arc<ClientConfig>,
    node: &str,
) -> impl tower::Service<
    Uri,
    Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>,
    Error = io::Error,
    Future = impl Future<Output = io::Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>> + Send,
> + Clone
+ Send
+ 'static {
    let node = node.to_owned();
    tower::service_fn(move |uri: Uri| {
        let config = config.clone();
        let node = node.clone();
        async move {
            let (tcp, authority) = tcp(&uri).await?;
            let name = ServerName::try_from(node.clone())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("`{node}`: {e}")))?;
            let what = if node == "planner" {
                "the planner".to_owned()
            } else {
                format!("node `{node}`")
            };
            let tls = tokio::time::timeout(
                crate::serve::HANDSHAKE_TIMEOUT,
                TlsConnector::from(config).connect(name, tcp),
            )
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{what} at {authority} did not finish the TLS handshake"),
                )
            })?
            .map_err(|e| io::Error::other(handshake_failure(&what, &authority, &e)))?;
            Ok(TokioIo::new(tls))
        }
    })
}
