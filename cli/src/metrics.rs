//! The HTTP GET that reads a process's `/metrics` (`faasflow top`). The planner and the
//! daemons serve `/metrics` on their own port, beside gRPC (`faasflow_control::http`,
//! `faasflow_daemon::service::http_router`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// `GET http://ADDR/metrics`: the body of a 200 answer.
pub(crate) fn fetch(addr: SocketAddr, timeout: Duration) -> anyhow::Result<String> {
    let mut conn = TcpStream::connect_timeout(&addr, timeout).map_err(|e| anyhow::anyhow!("{addr}: {e}"))?;
    conn.set_read_timeout(Some(timeout))
        .map_err(|e| anyhow::anyhow!("{addr}: {e}"))?;
    write!(
        conn,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| anyhow::anyhow!("{addr}: {e}"))?;
    let mut text = String::new();
    conn.read_to_string(&mut text)
        .map_err(|e| anyhow::anyhow!("{addr}: {e}"))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("{addr}: not an HTTP answer"))?;
    if !head.starts_with("HTTP/1.1 200") {
        anyhow::bail!("{addr}: {}", head.lines().next().unwrap_or_default());
    }
    Ok(body.to_owned())
}
