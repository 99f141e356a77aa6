//! The HTTP GET that reads a process's `/metrics` (`faasflow top`). The planner and the
//! daemons serve `/metrics` on their own port, beside gRPC (`faasflow_control::http`,
//! `faasflow_daemon::service::http_router`), over TLS from the cluster CA.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

/// `GET https://ADDR/metrics` of node `node` (its certificate checked with `tls`; plain HTTP
/// without): the body of a 200 answer.
pub(crate) fn fetch(
    addr: SocketAddr,
    node: &str,
    tls: Option<&Arc<ClientConfig>>,
    timeout: Duration,
) -> anyhow::Result<String> {
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("{node} at {addr}: {e}");
    let conn = TcpStream::connect_timeout(&addr, timeout).map_err(|e| err(&e))?;
    conn.set_read_timeout(Some(timeout)).map_err(|e| err(&e))?;
    conn.set_write_timeout(Some(timeout)).map_err(|e| err(&e))?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    match tls {
        Some(config) => {
            let name = ServerName::try_from(node.to_owned()).map_err(|e| err(&e))?;
            let session = ClientConnection::new(config.clone(), name).map_err(|e| err(&e))?;
            let mut stream = StreamOwned::new(session, conn);
            stream.write_all(request.as_bytes()).map_err(|e| err(&e))?;
            stream.read_to_string(&mut text).map_err(|e| err(&e))?;
        }
        None => {
            let mut conn = conn;
            conn.write_all(request.as_bytes()).map_err(|e| err(&e))?;
            conn.read_to_string(&mut text).map_err(|e| err(&e))?;
        }
    }
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| err(&"not an HTTP answer"))?;
    if !head.starts_with("HTTP/1.1 200") {
        anyhow::bail!("{node} at {addr}: {}", head.lines().next().unwrap_or_default());
    }
    Ok(body.to_owned())
}
