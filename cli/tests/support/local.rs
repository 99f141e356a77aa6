//! A local cluster of real processes started by `faasflow up`, for the tests that drive one
//! as a user would (`cluster.rs`, `chaos.rs`).
#![allow(dead_code)] // Not every test file uses every helper.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use faasflow_core::report::Report;
use faasflow_proto::v1 as pb;
use faasflow_proto::v1::daemon_client::DaemonClient;
use faasflow_proto::v1::planner_client::PlannerClient;
use faasflow_rpc::auth::{Attach, AuthChannel, Token};
use faasflow_rpc::channel::Transport;
use faasflow_rpc::tls::{ALPN_H2, ALPN_HTTP1, ClusterTrust, NodeIdentity, api_client_config};
use std::sync::Arc;

pub(crate) const FAASFLOW: &str = env!("CARGO_BIN_EXE_faasflow");

pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub(crate) fn faasflow(args: &[&str]) -> Output {
    Command::new(FAASFLOW).args(args).output().expect("faasflow runs")
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub(crate) fn unique_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "faasflow-cluster-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}

pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A cluster started by `faasflow up`; `down` runs when it is dropped, so a failing test
/// leaves no process behind.
pub(crate) struct Cluster {
    pub(crate) dir: PathBuf,
    pub(crate) record: serde_json::Value,
    down_done: bool,
    /// Processes started again by a test ([`Cluster::restart`]), reaped when it is dropped.
    restarted: Vec<std::process::Child>,
}

impl Cluster {
    pub(crate) fn up(tag: &str, workers: usize, extra: &[&str]) -> Cluster {
        Cluster::up_with_env(tag, workers, extra, &[])
    }

    /// As [`Cluster::up`], with `env` set for `up` and so for the processes it starts.
    pub(crate) fn up_with_env(tag: &str, workers: usize, extra: &[&str], env: &[(&str, &str)]) -> Cluster {
        let dir = unique_dir(tag);
        let n = workers.to_string();
        let d = dir.to_string_lossy().into_owned();
        let mut args = vec!["up", "--workers", &n, "--dir", &d, "--arena-mib", "64"];
        args.extend_from_slice(extra);
        let out = Command::new(FAASFLOW)
            .args(&args)
            .envs(env.iter().copied())
            .output()
            .expect("faasflow runs");
        assert!(
            out.status.success(),
            "up failed: {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        let record: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("cluster.json")).expect("cluster.json"))
                .expect("cluster.json is JSON");
        Cluster {
            dir,
            record,
            down_done: false,
            restarted: Vec::new(),
        }
    }

    /// Kills `who` (`planner` or a worker's name) with SIGKILL and starts it again with the
    /// command line it had; `same_ports`: on the addresses it had (else on new ones, for a
    /// worker). Its output goes to `DIR/logs/<who>.restart-<n>.log`; `cluster.json` is
    /// updated, so that `down` stops the new process. Returns once a worker has registered
    /// again (its log says so) or the planner listens. Returns the new pid.
    pub(crate) fn restart(&mut self, who: &str, same_ports: bool) -> u32 {
        let (entry, old_pid) = if who == "planner" {
            let pid = self.record["planner"]["pid"].as_u64().expect("pid") as u32;
            ("planner".to_owned(), pid)
        } else {
            (who.to_owned(), self.worker(who)["pid"].as_u64().expect("pid") as u32)
        };
        let (program, mut args) = command_line(old_pid);
        let set = |args: &mut Vec<String>, flag: &str, value: String| {
            if let Some(i) = args.iter().position(|a| a == flag) {
                args[i + 1] = value;
            }
        };
        if who == "planner" {
            set(&mut args, "--listen", self.planner());
        } else if same_ports {
            let w = self.worker(who).clone();
            set(&mut args, "--listen", w["grpc_addr"].as_str().expect("grpc").to_owned());
            set(
                &mut args,
                "--peer-listen",
                w["quic_addr"].as_str().expect("quic").to_owned(),
            );
        } else {
            set(&mut args, "--listen", "127.0.0.1:0".into());
            set(&mut args, "--peer-listen", "127.0.0.1:0".into());
        }
        // Its instances die with it; until they have, a port of its may still be held.
        let mut gone = children_of(&[old_pid]);
        gone.push(old_pid);
        kill9(old_pid);
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while gone.iter().any(|p| alive(*p)) && std::time::Instant::now() < end {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let ready = if who == "planner" {
            "listening"
        } else {
            "registered with the planner"
        };
        let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let pid = 'started: loop {
            let n = self.restarted.len();
            let log_path = self.dir.join("logs").join(format!("{entry}.restart-{n}.log"));
            let log = std::fs::File::create(&log_path).expect("log");
            let mut child = Command::new(&program)
                .args(&args)
                .current_dir(&self.dir)
                .stdin(std::process::Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("started again");
            let pid = child.id();
            loop {
                let said = std::fs::read_to_string(&log_path).unwrap_or_default();
                if said.contains(ready) {
                    self.restarted.push(child);
                    break 'started pid;
                }
                let exited = child.try_wait().ok().flatten().is_some();
                // A port of the old process may take a moment to be free again.
                let busy = said.contains("Address already in use");
                assert!(
                    std::time::Instant::now() < end && (!exited || busy),
                    "`{who}` did not get ready again; its log:\n{said}\nsockets:\n{}",
                    String::from_utf8_lossy(
                        &Command::new("ss")
                            .arg("-uanp")
                            .output()
                            .map(|o| o.stdout)
                            .unwrap_or_default()
                    )
                );
                if exited {
                    self.restarted.push(child);
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    continue 'started;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        };
        if who == "planner" {
            self.record["planner"]["pid"] = pid.into();
        } else {
            let rt = rt();
            let m = rt
                .block_on(self.planner_client(&rt).metrics(pb::MetricsRequest {}))
                .expect("metrics")
                .into_inner();
            let r = m.registered.iter().find(|w| w.name == who).expect("registered");
            let workers = self.record["workers"].as_array_mut().expect("workers");
            let w = workers.iter_mut().find(|w| w["name"] == who).expect("worker");
            w["pid"] = pid.into();
            w["grpc_addr"] = r.grpc_addr.clone().into();
            w["quic_addr"] = r.quic_addr.clone().into();
            // `/metrics` is served on the daemon's API port.
            w["metrics"] = r.grpc_addr.clone().into();
        }
        let text = serde_json::to_string_pretty(&self.record).expect("JSON");
        std::fs::write(self.dir.join("cluster.json"), text + "\n").expect("cluster.json");
        pid
    }

    /// The last lines of every log of the cluster, for failure messages.
    pub(crate) fn logs(&self) -> String {
        let mut out = String::new();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.dir.join("logs"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        paths.sort();
        for p in paths {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {}\n", p.display()));
            for l in &lines[lines.len().saturating_sub(40)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    pub(crate) fn dir(&self) -> String {
        self.dir.to_string_lossy().into_owned()
    }

    pub(crate) fn planner(&self) -> String {
        self.record["planner"]["addr"]
            .as_str()
            .expect("planner addr")
            .to_owned()
    }

    pub(crate) fn worker(&self, name: &str) -> &serde_json::Value {
        self.record["workers"]
            .as_array()
            .expect("workers")
            .iter()
            .find(|w| w["name"] == name)
            .unwrap_or_else(|| panic!("no worker {name} in {}", self.record))
    }

    pub(crate) fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.record["workers"]
            .as_array()
            .expect("workers")
            .iter()
            .map(|w| w["pid"].as_u64().expect("pid") as u32)
            .collect();
        pids.push(self.record["planner"]["pid"].as_u64().expect("pid") as u32);
        if let Some(p) = self.record["redis"]["pid"].as_u64() {
            pids.push(p as u32);
        }
        pids
    }

    /// `faasflow <cmd> … --dir DIR`.
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        let d = self.dir();
        let mut all = args.to_vec();
        all.extend_from_slice(&["--dir", &d]);
        faasflow(&all)
    }

    /// Writes `contents` to `name` in the cluster's directory; returns its path.
    pub(crate) fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, contents).expect("write");
        path
    }

    pub(crate) fn deploy(&self, file: &Path) -> String {
        let out = self.run(&["deploy", &file.to_string_lossy()]);
        assert!(out.status.success(), "deploy failed: {}", text(&out.stderr));
        text(&out.stdout)
    }

    pub(crate) fn invoke_json(&self, name: &str, input: &str) -> Report {
        let out = self.run(&["invoke", name, "--input", input, "--report", "json"]);
        assert!(out.status.success(), "invoke failed: {}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("one JSON report")
    }

    /// The cluster's API token (`up` made it in DIR/certs/token).
    pub(crate) fn token(&self) -> Token {
        Token::load(&self.dir.join("certs").join("token")).expect("the cluster's token")
    }

    /// The cluster's API token as it is written in its file.
    pub(crate) fn token_text(&self) -> String {
        std::fs::read_to_string(self.certs().join("token"))
            .expect("the cluster's token")
            .trim()
            .to_owned()
    }

    /// Keys in the cluster's Redis (`None` when it has none, or it is gone).
    pub(crate) fn redis_keys(&self) -> Option<u64> {
        let url = self.record["redis"]["url"].as_str()?;
        let mut s = std::net::TcpStream::connect(url.trim_start_matches("redis://")).ok()?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(2))).ok()?;
        s.write_all(b"*1\r\n$6\r\nDBSIZE\r\n").ok()?;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).ok()?;
        std::str::from_utf8(&buf[..n])
            .ok()?
            .trim()
            .strip_prefix(':')?
            .parse()
            .ok()
    }

    /// The cluster's certificates (`up` made them in DIR/certs).
    pub(crate) fn certs(&self) -> PathBuf {
        self.dir.join("certs")
    }

    /// TLS to the cluster's servers with ALPN `alpn`, as node `as_node` (its certificate
    /// presented) or as a person (none).
    pub(crate) fn tls(&self, as_node: Option<&str>, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
        let trust = ClusterTrust::load(&self.certs()).expect("the cluster's CA");
        let identity = as_node.map(|n| NodeIdentity::load(&self.certs(), n).expect("a node's certificate"));
        Arc::new(api_client_config(&trust, identity.as_ref(), &[alpn]).expect("TLS settings"))
    }

    /// A gRPC channel to node `node` at `addr`, over TLS, presenting the planner's certificate
    /// (a daemon takes calls only from the planner).
    pub(crate) fn channel(&self, rt: &tokio::runtime::Runtime, addr: &str, node: &str) -> tonic::transport::Channel {
        let transport = Transport::Tls(self.tls(Some("planner"), ALPN_H2));
        rt.block_on(async { transport.connect(addr, node).await })
            .expect("reachable")
    }

    pub(crate) fn planner_client(&self, rt: &tokio::runtime::Runtime) -> PlannerClient<AuthChannel> {
        PlannerClient::with_interceptor(
            self.channel(rt, &self.planner(), "planner"),
            Attach::new(Some(self.token())),
        )
    }

    /// One HTTPS/1.1 request to node `node` at `addr` (`None`: no answer): the raw answer.
    pub(crate) fn https(&self, addr: &str, node: &str, request: &[u8]) -> Option<Vec<u8>> {
        https(&self.tls(None, ALPN_HTTP1), addr, node, request)
    }

    /// The samples of the Prometheus metrics node `node` serves at `addr` (`None` when it does
    /// not answer).
    pub(crate) fn scrape(&self, node: &str, addr: &str) -> Option<Vec<faasflow_core::metrics::Sample>> {
        let answer = self.https(
            addr,
            node,
            format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )?;
        let text = String::from_utf8(answer).ok()?;
        let body = text.split_once("\r\n\r\n")?.1;
        Some(faasflow_core::metrics::parse(body))
    }

    /// A client of worker `name`'s daemon API, with the cluster's token.
    pub(crate) fn daemon_client(&self, rt: &tokio::runtime::Runtime, name: &str) -> DaemonClient<AuthChannel> {
        let addr = self.worker(name)["grpc_addr"].as_str().expect("addr").to_owned();
        DaemonClient::with_interceptor(self.channel(rt, &addr, name), Attach::new(Some(self.token())))
    }

    /// The newest plan of `workflow`, from the planner.
    pub(crate) fn newest_plan(&self, rt: &tokio::runtime::Runtime, workflow: &str) -> pb::Plan {
        rt.block_on(self.planner_client(rt).get_plan(pb::GetPlanRequest {
            workflow: workflow.into(),
            version: None,
        }))
        .expect("plan")
        .into_inner()
        .plan
        .expect("plan")
    }

    /// Waits (up to 20 s) until worker `name`'s daemon holds an invocation: on a loaded
    /// machine a client may take a while to get there, and a fault injected before would test
    /// something else.
    pub(crate) fn wait_in_flight(&self, rt: &tokio::runtime::Runtime, name: &str) {
        let mut daemon = self.daemon_client(rt, name);
        let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let s = rt
                .block_on(daemon.status(pb::StatusRequest {}))
                .expect("status")
                .into_inner();
            if s.plans.iter().any(|p| p.in_flight > 0) {
                return;
            }
            assert!(std::time::Instant::now() < end, "no invocation reached `{name}`");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub(crate) fn down(&mut self) -> Output {
        self.down_done = true;
        self.run(&["down"])
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.down_done {
            let _ = self.down();
        }
        for mut child in self.restarted.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().to_owned()))
        .is_some_and(|r| !r.starts_with('Z') && !r.starts_with('X'))
}

pub(crate) fn kill9(pid: u32) {
    let st = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
}

/// The program and arguments process `pid` was started with.
pub(crate) fn command_line(pid: u32) -> (String, Vec<String>) {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline of a live process");
    let mut args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let program = args.remove(0);
    (program, args)
}

/// Sends signal `sig` (`STOP`, `CONT`, …) to `pid`.
pub(crate) fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
}

/// The worker of every task, from a plan.
pub(crate) fn plan_workers(plan: &pb::Plan) -> std::collections::BTreeMap<String, String> {
    let (wf, plan, cluster) = faasflow_rpc::plan_from_proto(plan).expect("valid plan");
    wf.graph
        .node_indices()
        .filter(|n| wf.graph[*n].task().is_some())
        .map(|n| {
            (
                wf.graph[n].name.clone(),
                cluster.workers[plan.worker_of(n) as usize].name.clone(),
            )
        })
        .collect()
}

/// Workflow `name`: tasks `a` and `b` in parallel, each running `runtime` (synthetic) on 2
/// slots, so that on workers of 2 slots they run on two different workers.
pub(crate) fn pair_workflow(name: &str, runtime: &str, idempotent: bool) -> String {
    format!(
        "name: {name}
functions:
  a: {{runtime: {runtime}, scale: 2, idempotent: {idempotent}, outputs: {{out: {{type: json, size: 16B}}}}}}
  b: {{runtime: {runtime}, scale: 2, idempotent: {idempotent}, outputs: {{out: {{type: json, size: 16B}}}}}}
steps:
  - parallel:
      - - task: a
      - - task: b
output:
  a: a.out
  b: b.out
"
    )
}

/// One request over TLS (`tls`) to node `node` at `addr`, read to its end (the request should
/// say `Connection: close`); `None` when there is no answer.
pub(crate) fn https(tls: &Arc<rustls::ClientConfig>, addr: &str, node: &str, request: &[u8]) -> Option<Vec<u8>> {
    let s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(30))).ok()?;
    let name = rustls::pki_types::ServerName::try_from(node.to_owned()).ok()?;
    let session = rustls::ClientConnection::new(tls.clone(), name).ok()?;
    let mut s = rustls::StreamOwned::new(session, s);
    // A server that refuses early may close before it reads everything.
    let _ = s.write_all(request).and_then(|()| s.flush());
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => Some(raw),
        // Closed without TLS's close_notify after the whole answer: what was read is the answer.
        Err(_) if !raw.is_empty() => Some(raw),
        Err(_) => None,
    }
}

pub(crate) fn sum(samples: &[faasflow_core::metrics::Sample], name: &str) -> f64 {
    samples.iter().filter(|s| s.name == name).map(|s| s.value).sum()
}

/// Processes whose parent is one of `parents`.
pub(crate) fn children_of(parents: &[u32]) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid.is_some_and(|p| parents.contains(&p)) {
            out.push(pid);
        }
    }
    out
}
