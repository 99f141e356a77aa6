//! Test support shared by the cli integration tests: a private `redis-server`, FaaSFlow's
//! workflow files, the planner and daemon services in this process; a local cluster of processes (`local`).

pub(crate) mod local;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use faasflow_control::service::{PlannerService, ServiceConfig};
use faasflow_daemon::config::{DaemonConfig, PeerSettings};
use faasflow_daemon::daemon::Daemon;
use faasflow_daemon::io::peer::PeerConfig;
use faasflow_daemon::io::tls::ClusterCa;
use faasflow_daemon::service::{DaemonService, Registration, keep_registered};
use faasflow_proto::v1 as pb;
use faasflow_proto::v1::planner_client::PlannerClient;
use faasflow_rpc::auth::{Attach, AuthChannel};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

/// A private redis-server on a free port (nothing saved to disk), killed on drop.
#[allow(dead_code)] // Not every test file asks.
pub(crate) struct Redis {
    child: Child,
    port: u16,
}

#[allow(dead_code)] // Not every test file asks.
impl Redis {
    /// Starts one and waits until it answers.
    pub(crate) fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): install it (Debian: apt-get install redis-server; .ci/run does)"
                )
            });
        let mut redis = Redis { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while redis.command("PING").as_deref() != Some("+PONG") {
            if let Some(status) = redis.child.try_wait().unwrap() {
                panic!("redis-server on port {port} exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {port} did not answer within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    /// Its URL.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// How many keys it holds.
    pub(crate) fn dbsize(&self) -> usize {
        let reply = self.command("DBSIZE").expect("DBSIZE answered");
        reply
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("DBSIZE answered {reply:?}"))
    }

    /// Stops it (as if it crashed).
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends an inline command; the first line of the answer.
    fn command(&self, cmd: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(format!("{cmd}\r\n").as_bytes()).ok()?;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).ok()?;
        let line = String::from_utf8_lossy(&buf[..n]);
        Some(line.trim_end().to_owned())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `wf` with its functions in Python (FaaSFlow's own, found beside its file) made synthetic
/// bodies again, for the tests that run every FaaSFlow workflow with its declared runtimes and
/// sizes (`cli/tests/python.rs` runs the Python ones).
#[allow(dead_code)] // Not every test file asks.
pub(crate) fn synthetic(mut wf: faasflow_core::dag::Workflow) -> faasflow_core::dag::Workflow {
    for n in wf.graph.node_indices() {
        if let Some(t) = wf.graph[n].task_mut() {
            t.spec.python = None;
        }
    }
    wf
}

/// The interpreter with the faasflow package (and numpy) that `cargo xtask python` prepares in
/// the target directory.
#[allow(dead_code)] // Not every test file asks.
pub(crate) fn python() -> PathBuf {
    let target = Path::new(env!("CARGO_BIN_EXE_faasflow"))
        .parent()
        .and_then(Path::parent)
        .expect("the target directory");
    let python = target.join("python/venv/bin/python");
    let ok = std::process::Command::new(&python)
        .args(["-c", "import faasflow, numpy"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} cannot import faasflow and numpy: run `cargo xtask python` first (`cargo xtask ci` does)",
        python.display()
    );
    python
}

/// Waits (up to 10 s: calls abandoned by a failed invocation may still be finishing) until
/// `daemon` holds no arena byte, object, invocation or call.
#[allow(dead_code)] // Not every test file asks.
pub(crate) fn assert_clean(daemon: &faasflow_daemon::daemon::Daemon) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let s = daemon.stats().expect("stats");
        if s.arena_used == 0 && s.objects == 0 && s.invocations == 0 && s.calls == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon still holds something: {s:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Every FaaSFlow workflow file in `tests/fixtures/faasflow-v1`, sorted.
#[allow(dead_code)] // Not every test file asks.
pub(crate) fn faasflow_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/faasflow-v1");
    let mut files = Vec::new();
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains("workflow"))
            {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 18, "FaaSFlow's files are missing: {files:?}");
    files
}

/// A chain of three testkit steps whose middle one fails: `a` runs, `b` fails, `c` never runs.
#[allow(dead_code)] // Not every test file asks.
pub(crate) const FAILING: &str = "
name: failing
functions:
  echo: {pack: testkit, outputs: {out: bytes}}
  fail: {pack: testkit, outputs: {out: bytes}}
steps:
  - task: a
    function: echo
    inputs: {in: input.text}
  - task: b
    function: fail
    inputs: {in: a.out}
  - task: c
    function: echo
    inputs: {in: b.out}
output:
  out: c.out
";

/// Peer settings for node `name`, certified by `ca`, on a free loopback port.
#[allow(dead_code)] // Not every test file asks.
pub(crate) fn peer_settings(ca: &ClusterCa, name: &str) -> PeerSettings {
    PeerSettings {
        identity: ca.issue(name).expect("cert"),
        trust: ca.trust(),
        bind: "127.0.0.1:0".parse().expect("addr"),
        transport: PeerConfig::default(),
    }
}

/// A planner service with `config` and one daemon per config in `daemons` (each with its
/// `DaemonService` and registration loop, `slots` slots), on loopback; returns a client of
/// the planner once every daemon has registered, and the daemons.
#[allow(dead_code)] // Not every test file asks.
pub(crate) async fn services(
    config: ServiceConfig,
    daemons: Vec<DaemonConfig>,
    slots: u32,
) -> (PlannerClient<AuthChannel>, Vec<Arc<Daemon>>) {
    let token = config.token.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let planner_addr = listener.local_addr().expect("addr");
    tokio::spawn(
        Server::builder().serve_with_incoming(PlannerService::new(config).into_server(), TcpIncoming::from(listener)),
    );
    let n = daemons.len();
    let mut started = Vec::new();
    for c in daemons {
        let name = c.name.clone();
        let daemon = Arc::new(
            tokio::task::spawn_blocking(move || Daemon::start(c))
                .await
                .unwrap()
                .expect("daemon"),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let me = Registration {
            name,
            grpc_addr: listener.local_addr().expect("addr"),
            quic_addr: daemon.peer_addr(),
            slots,
            memory_mib: 0,
        };
        let service = DaemonService::new(
            daemon.clone(),
            faasflow_rpc::channel::Credentials {
                token: token.clone(),
                transport: faasflow_rpc::channel::Transport::Plain,
            },
        );
        tokio::spawn(Server::builder().serve_with_incoming(service.clone().into_server(), TcpIncoming::from(listener)));
        tokio::spawn(keep_registered(planner_addr.to_string(), me, service));
        started.push(daemon);
    }
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{planner_addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("planner");
    let mut planner = PlannerClient::with_interceptor(channel, Attach::new(token))
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20);
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let m = planner
            .metrics(pb::MetricsRequest {})
            .await
            .expect("metrics")
            .into_inner();
        if m.workers as usize == n {
            break;
        }
        assert!(Instant::now() < end, "workers did not register: {m:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (planner, started)
}

/// A step that always fails (twice: it has two attempts) and is caught: its catch step
/// `rescue` gets the failure and stands in for it, so `after` reads the failure as `bad.out`.
#[allow(dead_code)] // Not every test file asks.
pub(crate) const RESCUED: &str = "name: rescued
functions:
  echo: {pack: testkit, outputs: {out: bytes}}
  fail: {pack: testkit, retry: {attempts: 2, backoff: 10ms}, outputs: {out: bytes}}
  concat: {pack: testkit, outputs: {out: bytes}}
steps:
  - task: first
    function: echo
    inputs: {in: input.text}
  - task: bad
    function: fail
    inputs: {in: first.out}
    catch: {task: rescue, function: concat}
  - task: after
    function: echo
    inputs: {in: bad.out}
output:
  out: after.out
";

/// Checks the report of [`RESCUED`]: `bad` failed twice, `rescue` ran once on its failure,
/// and the output is that failure.
#[allow(dead_code)] // Not every test file asks.
pub(crate) fn check_rescued(r: &faasflow_core::report::Report) {
    assert_eq!(r.status, "ok", "the catch step saves the invocation: {:?}", r.error);
    let out = r.output["out"].as_str().expect("the failure, as text");
    let failure: serde_json::Value = serde_json::from_str(out).expect("the failure is JSON");
    assert_eq!(failure["step"], "bad");
    assert_eq!(failure["kind"], "error");
    assert_eq!(failure["attempts"], 2);
    assert!(
        failure["error"]
            .as_str()
            .is_some_and(|e| e.contains("testkit: asked to fail")),
        "{failure}"
    );
    let bad: Vec<(u32, Option<&str>)> = r
        .functions
        .iter()
        .filter(|f| f.name == "bad")
        .map(|f| (f.attempt, f.failure.as_deref()))
        .collect();
    assert_eq!(bad, [(1, Some("error")), (2, Some("error"))]);
    let ran = |name: &str| {
        r.functions
            .iter()
            .filter(|f| f.name == name && !f.skipped && f.error.is_none())
            .count()
    };
    assert_eq!((ran("first"), ran("rescue"), ran("after")), (1, 1, 1));
}

/// Checks that every attempt's own time (`exec_us`, the instance's) lies within its window
/// (`end_us − start_us`, the daemon's send to its seeing the end); `what` names the run.
#[allow(dead_code)] // Not every test file asks.
pub(crate) fn assert_exec_within_windows(r: &faasflow_core::report::Report, what: &str) {
    for f in r.functions.iter().filter(|f| !f.skipped) {
        assert!(
            f.exec_us <= f.end_us - f.start_us + 1.0,
            "{what}: {} ran {} µs in a window of {} µs ({} to {}) on {}",
            f.label(),
            f.exec_us,
            f.end_us - f.start_us,
            f.start_us,
            f.end_us,
            f.worker
        );
    }
}
