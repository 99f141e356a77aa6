//! Channels and clients: every gRPC connection between faasflow's processes is made here, with
//! the same message limit and connect timeout.

use std::net::SocketAddr;
use std::time::Duration;

use faasflow_proto::v1::daemon_client::DaemonClient;
use tonic::transport::{Channel, Endpoint};

use crate::auth::{Attach, AuthChannel, Token};

/// Largest gRPC message faasflow accepts or sends (plans of 100,000 functions fit).
pub const MAX_MESSAGE: usize = 256 << 20;
/// Time limit of connecting to a daemon.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A client of a daemon over `channel`, carrying `token`.
pub fn daemon_client(channel: Channel, token: &Option<Token>) -> DaemonClient<AuthChannel> {
    DaemonClient::with_interceptor(channel, Attach::new(token.clone()))
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

/// The endpoint of a daemon or planner at `addr`, with [`CONNECT_TIMEOUT`].
pub fn endpoint(addr: SocketAddr) -> Endpoint {
    // A SocketAddr always makes a valid URI.
    Endpoint::from_shared(format!("http://{addr}"))
        .map(|e| e.connect_timeout(CONNECT_TIMEOUT))
        .unwrap_or_else(|_| Endpoint::from_static("http://127.0.0.1:9"))
}
