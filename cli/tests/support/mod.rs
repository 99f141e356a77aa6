//! Test support shared by the cli integration tests: a private `redis-server`, FaaSFlow's
//! workflow files.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private redis-server on a free port (nothing saved to disk), killed on drop.
pub(crate) struct Redis {
    child: Child,
    port: u16,
}

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
    #[allow(dead_code)] // Not every test file asks.
    pub(crate) fn dbsize(&self) -> usize {
        let reply = self.command("DBSIZE").expect("DBSIZE answered");
        reply
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("DBSIZE answered {reply:?}"))
    }

    /// Stops it (as if it crashed).
    #[allow(dead_code)] // Not every test file asks.
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
