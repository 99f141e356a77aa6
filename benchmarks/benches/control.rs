//! The control plane, end to end on a local cluster (`faasflow up`: a planner with its state
//! directory and one daemon, real processes on loopback): the start-to-result latency of a
//! no-op workflow over HTTP and over gRPC, waiting (`invoke`) and as an execution (start, then
//! `GetExecution` waiting for its end), next to the synchronous gRPC `Invoke`; and the
//! executions per second the planner accepts from concurrent clients, each start on disk
//! (redb commit) before it is answered, with the commits it took, next to synchronous
//! invocations per second from the same clients; and downloading a 256 MiB output (over HTTPS
//! and over gRPC, streamed from the worker that keeps it) next to a raw loopback TCP stream of
//! the same bytes. Prints Markdown tables.
//!
//! Run: `cargo build --release -p faasflow-cli && cargo bench -p faasflow-benchmarks --bench
//! control` (or `cargo xtask bench`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use faasflow_benchmarks::{faasflow_bin, fmt_ratio, fmt_us, machine_line, median, pct, record_figure, runs, unique};
use std::sync::Arc;

use faasflow_rpc::auth::Token;
use faasflow_rpc::channel::Transport;
use faasflow_rpc::planner::{Invocation, Planner};
use faasflow_rpc::tls::{
    ALPN_H2, ALPN_HTTP1, ClusterTrust, NodeIdentity, PLANNER_NODE, api_client_config, api_server_config,
};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

const NOOP: &str = "name: noop
functions:
  noop:
    runtime: 0ms
    outputs:
      out: {type: json, size: 16B}
steps:
  - task: noop
output:
  out: noop.out
";

/// A workflow whose one output is `BLOB_MIB` MiB of bytes (kept on its worker, to be read).
const BLOB: &str = "name: blob
functions:
  blob:
    runtime: 0ms
    outputs:
      out: {type: bytes, size: 256MiB}
steps:
  - task: blob
output:
  out: blob.out
";

/// The size of `BLOB`'s output, MiB.
const BLOB_MIB: usize = 256;

/// A local cluster for the run, stopped when dropped.
struct Cluster {
    dir: PathBuf,
    planner: String,
    token: Token,
    /// gRPC over TLS, checked against the cluster's CA.
    transport: Transport,
    /// HTTP/1.1 over TLS, likewise.
    https: Arc<ClientConfig>,
    /// `Authorization` of HTTP calls.
    bearer: String,
}

impl Cluster {
    fn up() -> Cluster {
        let dir = std::env::current_dir()
            .expect("cwd")
            .join("../target/bench-control")
            .join(format!("run-{}-{}", std::process::id(), unique()));
        let _ = std::fs::remove_dir_all(&dir);
        let bin = faasflow_bin();
        let out = Command::new(&bin)
            .args(["up", "--workers", "1", "--slots", "64", "--dir"])
            .arg(&dir)
            .output()
            .expect("faasflow up");
        assert!(out.status.success(), "up: {}", String::from_utf8_lossy(&out.stderr));
        let record: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("cluster.json")).expect("cluster.json"))
                .expect("JSON");
        let planner = record["planner"]["addr"].as_str().expect("addr").to_owned();
        let token_file = dir.join("certs").join("token");
        let token = Token::load(&token_file).expect("token");
        let bearer = format!("Bearer {}", std::fs::read_to_string(&token_file).expect("token").trim());
        for (name, source) in [("noop.yaml", NOOP), ("blob.yaml", BLOB)] {
            let wf = dir.join(name);
            std::fs::write(&wf, source).expect("write");
            let out = Command::new(&bin)
                .args(["deploy", "--dir"])
                .arg(&dir)
                .arg(&wf)
                .output()
                .expect("deploy");
            assert!(out.status.success(), "deploy: {}", String::from_utf8_lossy(&out.stderr));
        }
        let trust = ClusterTrust::load(&dir.join("certs")).expect("CA");
        let grpc = api_client_config(&trust, None, &[ALPN_H2]).expect("TLS");
        let https = Arc::new(api_client_config(&trust, None, &[ALPN_HTTP1]).expect("TLS"));
        Cluster {
            dir,
            planner,
            token,
            transport: Transport::Tls(Arc::new(grpc)),
            https,
            bearer,
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(faasflow_bin())
            .args(["down", "--dir"])
            .arg(&self.dir)
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One persistent HTTPS/1.1 connection (keep-alive), as a client library keeps one.
struct Http {
    reader: BufReader<StreamOwned<ClientConnection, TcpStream>>,
    host: String,
    auth: String,
}

impl Http {
    fn connect(c: &Cluster) -> Http {
        let s = TcpStream::connect(&c.planner).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        let session =
            ClientConnection::new(c.https.clone(), ServerName::try_from("planner").expect("name")).expect("TLS");
        Http {
            reader: BufReader::new(StreamOwned::new(session, s)),
            host: c.planner.clone(),
            auth: c.bearer.clone(),
        }
    }

    /// The status and body of `method path` with `body` (JSON).
    fn call(&mut self, method: &str, path: &str, body: &str) -> (u16, Vec<u8>) {
        let (status, length) = self.ask(&format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.host,
            self.auth,
            body.len()
        ));
        let mut out = vec![0; length as usize];
        self.reader.read_exact(&mut out).expect("body");
        (status, out)
    }

    /// `GET path`, its body read to its end in pieces and dropped: (status, body bytes).
    fn download(&mut self, path: &str, buf: &mut [u8]) -> (u16, u64) {
        let (status, length) = self.ask(&format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\n\r\n",
            self.host, self.auth
        ));
        drain(&mut self.reader, length, buf);
        (status, length)
    }

    /// Sends `request` and reads the answer's head: (status, `Content-Length`).
    fn ask(&mut self, request: &str) -> (u16, u64) {
        let w = self.reader.get_mut();
        w.write_all(request.as_bytes()).expect("write");
        w.flush().expect("flush");
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        let mut length = 0;
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("header");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((n, v)) = l.split_once(':')
                && n.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().expect("length");
            }
        }
        (status, length)
    }
}

/// Reads `len` bytes from `from` in pieces of at most `buf`'s size, dropping them; panics
/// when the stream ends before.
fn drain(from: &mut impl Read, len: u64, buf: &mut [u8]) {
    let mut left = len;
    while left > 0 {
        let piece = left.min(buf.len() as u64) as usize;
        let n = from.read(&mut buf[..piece]).expect("read");
        assert!(n > 0, "cut at {} of {len} bytes", len - left);
        left -= n as u64;
    }
}

/// Seconds to read `bytes` from a raw loopback TCP connection (the reference): a writer
/// thread sends them from memory in one `write_all`, the reader reads them in 1 MiB pieces.
fn raw_tcp(bytes: &[u8], buf: &mut [u8]) -> f64 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let t = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            let (mut conn, _) = listener.accept().expect("accept");
            conn.write_all(bytes).expect("send");
        });
        let mut conn = TcpStream::connect(addr).expect("connect");
        drain(&mut conn, bytes.len() as u64, buf);
    });
    t.elapsed().as_secs_f64()
}

/// Seconds to read `bytes` over one loopback TLS 1.3 connection with the cluster's
/// settings (the planner's certificate, rustls on both ends, 1 MiB writes, no HTTP): what any
/// download over TLS can reach on this machine.
fn bare_tls(c: &Cluster, bytes: &[u8], buf: &mut [u8]) -> f64 {
    let certs = c.dir.join("certs");
    let identity = NodeIdentity::load(&certs, PLANNER_NODE).expect("the planner's certificate");
    let trust = ClusterTrust::load(&certs).expect("CA");
    let server = Arc::new(api_server_config(&identity, &trust).expect("TLS"));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let t = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            let (conn, _) = listener.accept().expect("accept");
            let session = rustls::ServerConnection::new(server.clone()).expect("TLS");
            let mut conn = StreamOwned::new(session, conn);
            for piece in bytes.chunks(1 << 20) {
                conn.write_all(piece).expect("send");
            }
            conn.conn.send_close_notify();
            conn.flush().expect("flush");
        });
        let tcp = TcpStream::connect(addr).expect("connect");
        let session =
            ClientConnection::new(c.https.clone(), ServerName::try_from(PLANNER_NODE).expect("name")).expect("TLS");
        let mut conn = StreamOwned::new(session, tcp);
        drain(&mut conn, bytes.len() as u64, buf);
    });
    t.elapsed().as_secs_f64()
}

/// A `blob` execution run to its end: its id.
fn blob(rt: &tokio::runtime::Runtime, grpc: &mut Planner) -> u64 {
    let inv = Invocation::new("blob".to_owned(), None, b"{}".to_vec(), None);
    let (id, _) = rt.block_on(grpc.start_execution(inv, "")).expect("start");
    let e = rt.block_on(grpc.execution(id, Duration::from_secs(60))).expect("get");
    assert_eq!(e.status.map(|s| s.as_str()), Some("succeeded"), "{}", e.error);
    id
}

/// Seconds to download a `BLOB_MIB` MiB output over HTTPS and over gRPC (each from an
/// execution of its own), and to read the same bytes over raw loopback TCP, `n` runs each,
/// interleaved.
fn downloads(c: &Cluster, rt: &tokio::runtime::Runtime, n: usize) -> [Vec<f64>; 4] {
    let mut grpc = rt
        .block_on(Planner::connect(&c.planner, Some(c.token.clone()), &c.transport))
        .expect("connect");
    let mut http = Http::connect(c);
    let bytes = vec![0x5au8; BLOB_MIB << 20];
    let mut buf = vec![0u8; 1 << 20];
    let mut took = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..n {
        let id = blob(rt, &mut grpc);
        let t = Instant::now();
        let (status, len) = http.download(&format!("/v1/executions/{id}/outputs/out"), &mut buf);
        took[0].push(t.elapsed().as_secs_f64());
        assert_eq!((status, len), (200, (BLOB_MIB as u64) << 20));
        let id = blob(rt, &mut grpc);
        let t = Instant::now();
        let len = rt
            .block_on(grpc.read_output(id, "out", 0, &mut std::io::sink()))
            .expect("read");
        took[1].push(t.elapsed().as_secs_f64());
        assert_eq!(len, (BLOB_MIB as u64) << 20);
        took[2].push(raw_tcp(&bytes, &mut buf));
        took[3].push(bare_tls(c, &bytes, &mut buf));
    }
    took
}

fn json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b).expect("JSON")
}

fn noop() -> Invocation {
    Invocation::new("noop".to_owned(), None, b"{}".to_vec(), None)
}

/// Latencies, µs, of `n` runs of each way, interleaved.
fn latencies(c: &Cluster, rt: &tokio::runtime::Runtime, n: usize) -> Vec<(&'static str, Vec<f64>)> {
    let mut grpc = rt
        .block_on(Planner::connect(&c.planner, Some(c.token.clone()), &c.transport))
        .expect("connect");
    let mut http = Http::connect(c);
    let mut ways: Vec<(&'static str, Vec<f64>)> = vec![
        ("gRPC `Invoke` (waits; the reference)", Vec::new()),
        ("HTTP `POST /v1/workflows/noop/invoke` (waits)", Vec::new()),
        ("gRPC `StartExecution`, then `GetExecution` waiting", Vec::new()),
        (
            "HTTP `POST …/executions`, then `GET /v1/executions/{id}?wait_ms=`",
            Vec::new(),
        ),
    ];
    for i in 0..n + 10 {
        let mut took = [0.0; 4];
        let t = Instant::now();
        let r = rt.block_on(grpc.invoke(noop())).expect("invoke");
        assert!(r.error.is_empty(), "{}", r.error);
        took[0] = t.elapsed().as_secs_f64() * 1e6;
        let t = Instant::now();
        let (status, body) = http.call("POST", "/v1/workflows/noop/invoke", "{}");
        assert_eq!((status, &json(&body)["status"]), (200, &serde_json::json!("succeeded")));
        took[1] = t.elapsed().as_secs_f64() * 1e6;
        let t = Instant::now();
        let (id, _) = rt.block_on(grpc.start_execution(noop(), "")).expect("start");
        let e = rt
            .block_on(grpc.execution(id, Duration::from_secs(30)))
            .expect("execution");
        assert_eq!(e.status.map(|s| s.as_str()), Some("succeeded"), "{}", e.error);
        took[2] = t.elapsed().as_secs_f64() * 1e6;
        let t = Instant::now();
        let (status, body) = http.call("POST", "/v1/workflows/noop/executions", "{}");
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
        let id = json(&body)["execution_id"].as_u64().expect("id");
        let (status, body) = http.call("GET", &format!("/v1/executions/{id}?wait_ms=30000"), "");
        assert_eq!((status, &json(&body)["status"]), (200, &serde_json::json!("succeeded")));
        took[3] = t.elapsed().as_secs_f64() * 1e6;
        if i >= 10 {
            for (w, t) in ways.iter_mut().zip(took) {
                w.1.push(t);
            }
        }
    }
    ways
}

/// `total` calls from `clients` concurrent clients (each its own connection), `f` one call:
/// calls per second.
fn rate<F, Fut>(c: &Cluster, rt: &tokio::runtime::Runtime, clients: usize, total: usize, f: F) -> f64
where
    F: Fn(Planner) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Planner> + Send + 'static,
{
    let planners: Vec<Planner> = (0..clients)
        .map(|_| {
            rt.block_on(Planner::connect(&c.planner, Some(c.token.clone()), &c.transport))
                .expect("connect")
        })
        .collect();
    let per = total / clients;
    let t = Instant::now();
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for p in planners {
            let f = f.clone();
            tasks.spawn(async move {
                let mut p = p;
                for _ in 0..per {
                    p = f(p).await;
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("a client");
        }
    });
    (per * clients) as f64 / t.elapsed().as_secs_f64()
}

/// The planner's `faasflow_planner_state_{commits,records}_total`.
fn commits(c: &Cluster) -> (f64, f64) {
    let mut http = Http::connect(c);
    let (_, body) = http.call("GET", "/metrics", "");
    let text = String::from_utf8_lossy(&body).into_owned();
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        value("faasflow_planner_state_commits_total"),
        value("faasflow_planner_state_records_total"),
    )
}

/// Waits until the planner runs no execution.
fn drained(c: &Cluster, rt: &tokio::runtime::Runtime) {
    let mut p = rt
        .block_on(Planner::connect(&c.planner, Some(c.token.clone()), &c.transport))
        .expect("connect");
    let end = Instant::now() + Duration::from_secs(600);
    loop {
        let (running, _) = rt
            .block_on(p.executions(
                None,
                Some(faasflow_rpc::convert::state::ExecutionStatus::Running),
                1,
                None,
            ))
            .expect("executions");
        if running.is_empty() {
            return;
        }
        assert!(Instant::now() < end, "executions never drained");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn main() {
    let bin = faasflow_bin();
    assert!(
        Path::new(&bin).exists(),
        "build the release binary first: {}",
        bin.display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let c = Cluster::up();
    let n = runs(200, 30);
    let ways = latencies(&c, &rt, n);
    println!("### Start to result of a no-op workflow (one daemon, {n} runs of each, interleaved)\n");
    println!("| way | median | p99 | median / gRPC `Invoke` |");
    println!("|---|---:|---:|---:|");
    let mut reference = 0.0;
    for (i, (name, mut v)) in ways.into_iter().enumerate() {
        let (m, p99) = (median(&mut v), pct(&mut v, 99.0));
        if i == 0 {
            reference = m;
        }
        println!(
            "| {name} | {} | {} | {} |",
            fmt_us(m),
            fmt_us(p99),
            fmt_ratio(m / reference)
        );
        record_figure(&format!("control_latency_{i}_us"), serde_json::json!(m));
    }
    let clients = 64;
    let total = runs(20_000, 4_000);
    let (c0, r0) = commits(&c);
    let started = rate(&c, &rt, clients, total, |mut p: Planner| async move {
        p.start_execution(noop(), "").await.expect("start");
        p
    });
    let (c1, r1) = commits(&c);
    drained(&c, &rt);
    let invoked = rate(&c, &rt, clients, total / 4, |mut p: Planner| async move {
        p.invoke(noop()).await.expect("invoke");
        p
    });
    println!("\n### Executions accepted per second ({clients} concurrent gRPC clients, {total} starts)\n");
    println!("| what | per second | durability |");
    println!("|---|---:|---|");
    println!(
        "| `StartExecution` answered | {started:.0} | each start on disk (one redb commit, fsync) before its answer; {:.0} commits for {:.0} records ({:.1} per commit) |",
        c1 - c0,
        r1 - r0,
        (r1 - r0) / (c1 - c0).max(1.0)
    );
    println!("| `Invoke` answered (reference: waits for the run, nothing on disk) | {invoked:.0} | none |");
    record_figure("control_starts_per_s", serde_json::json!(started));
    record_figure("control_invokes_per_s", serde_json::json!(invoked));
    let n = runs(7, 2);
    let [mut https, mut grpc, mut tcp, mut tls] = downloads(&c, &rt, n);
    let mib = BLOB_MIB as f64;
    let reference = median(&mut tcp);
    println!("\n### Downloading a {BLOB_MIB} MiB output ({n} runs of each, interleaved)\n");
    let ceiling = median(&mut tls);
    println!("| way | median | MiB/s | vs raw TCP | vs bare TLS |");
    println!("|---|---:|---:|---:|---:|");
    for (name, v) in [
        (
            "HTTPS `GET /v1/executions/{id}/outputs/out` (planner, from the worker over gRPC/TLS)",
            &mut https,
        ),
        ("gRPC `ReadExecutionOutput` (`faasflow result`)", &mut grpc),
    ] {
        let m = median(v);
        println!(
            "| {name} | {:.0} ms | {:.0} | {:.0}% | {:.0}% |",
            m * 1e3,
            mib / m,
            100.0 * reference / m,
            100.0 * ceiling / m
        );
    }
    println!(
        "| bare TLS 1.3 stream of the same bytes (rustls both ends, no HTTP: what any download over TLS can reach) | {:.0} ms | {:.0} | {:.0}% | 100% |",
        ceiling * 1e3,
        mib / ceiling,
        100.0 * reference / ceiling
    );
    println!(
        "| raw loopback TCP of the same bytes (the reference) | {:.0} ms | {:.0} | 100% | |",
        reference * 1e3,
        mib / reference
    );
    record_figure("control_download_tls_share", serde_json::json!(reference / ceiling));
    record_figure(
        "control_download_share",
        serde_json::json!(reference / median(&mut https)),
    );
    println!("\n{}", machine_line());
}
