//! `/metrics` over HTTP for the planner and the daemons (`--metrics-listen ADDR`), and the HTTP
//! GET that reads them back (`faasflow top`).
//!
//! The server is a thread answering one request per connection: `GET /metrics` gets the
//! Prometheus text the service renders at that moment, anything else a 404. Requests are read
//! with a deadline and a size limit, so a slow or hostile client cannot hold the thread long.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::Failure;

/// What `/metrics` answers: the text, or why there is none.
pub(crate) type Render = Arc<dyn Fn() -> anyhow::Result<String> + Send + Sync>;

/// Largest request head read.
const MAX_REQUEST: usize = 8 << 10;
/// Time a client has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves `render` at `http://ADDR/metrics` on a thread of its own; returns the bound address.
pub(crate) fn serve(addr: SocketAddr, what: &str, render: Render) -> Result<SocketAddr, Failure> {
    let listener = TcpListener::bind(addr)
        .with_context(|| format!("cannot listen for /metrics on {addr}"))
        .map_err(|e| Failure::Input(format!("error: {e:#}")))?;
    let local = listener
        .local_addr()
        .context("the metrics address")
        .map_err(Failure::Other)?;
    std::thread::Builder::new()
        .name(format!("{what}-metrics"))
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let _ = answer(&mut conn, &render);
            }
        })
        .context("cannot start the metrics thread")
        .map_err(Failure::Other)?;
    Ok(local)
}

fn answer(conn: &mut TcpStream, render: &Render) -> std::io::Result<()> {
    conn.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    conn.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf)?;
        if n == 0 || head.len() + n > MAX_REQUEST {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.lines().next().unwrap_or_default().split_whitespace();
    let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let (status, body) = match (method, path.split('?').next().unwrap_or_default()) {
        ("GET", "/metrics") => match render() {
            Ok(text) => ("200 OK", text),
            Err(e) => ("503 Service Unavailable", format!("{e}\n")),
        },
        ("GET", _) => ("404 Not Found", "only /metrics is served here\n".to_owned()),
        _ => ("405 Method Not Allowed", "only GET /metrics\n".to_owned()),
    };
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()
}

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

/// Where `--metrics-listen` was given: serve, and log where (`what` names the serving thread).
pub(crate) fn serve_if(addr: Option<SocketAddr>, what: &str, render: Render) -> Result<(), Failure> {
    if let Some(addr) = addr {
        let local = serve(addr, what, render)?;
        tracing::info!(url = %format_args!("http://{local}/metrics"), "serving metrics");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn serves_metrics_and_refuses_the_rest() {
        let render: Render = Arc::new(|| Ok("faasflow_calls_total 3\n".to_owned()));
        let addr = serve("127.0.0.1:0".parse().unwrap(), "test", render).unwrap();
        assert_eq!(fetch(addr, Duration::from_secs(2)).unwrap(), "faasflow_calls_total 3\n");
        let mut c = TcpStream::connect(addr).unwrap();
        write!(c, "GET /other HTTP/1.1\r\n\r\n").unwrap();
        let mut text = String::new();
        c.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.1 404"), "{text}");
        let failing: Render = Arc::new(|| Err(anyhow::anyhow!("the daemon stopped")));
        let addr = serve("127.0.0.1:0".parse().unwrap(), "test", failing).unwrap();
        let e = fetch(addr, Duration::from_secs(2)).unwrap_err().to_string();
        assert!(e.contains("503"), "{e}");
        // A client that never finishes its request does not stop the next one.
        let render: Render = Arc::new(|| Ok("x 1\n".to_owned()));
        let addr = serve("127.0.0.1:0".parse().unwrap(), "test", render).unwrap();
        let _silent = TcpStream::connect(addr).unwrap();
        let t = Instant::now();
        assert_eq!(fetch(addr, Duration::from_secs(5)).unwrap(), "x 1\n");
        assert!(t.elapsed() < Duration::from_secs(4));
    }
}
