//! Faults injected into local clusters of real processes (`faasflow up`: a planner, daemons,
//! a private Redis, instances), on loopback: a burst of invocations, instances killed in the
//! middle of a function, functions that never return, a daemon killed in the middle of a
//! workflow, a daemon frozen (its peers hear nothing: the connection is cut), Redis killed.
//! For every scenario it counts the invocations sent, those that completed, those that failed
//! with a clear error (one that names the cause the scenario injected), those that failed
//! with any other error (must be 0), those that never ended (hung, must be 0) and what leaked
//! afterwards (arena bytes, invocations or queued calls on a daemon, Redis keys, instance
//! processes after `down`: must be none).
//!
//! `chaos_short` runs a short version with every test (CI); `cargo xtask chaos` runs
//! `chaos_full` (ignored otherwise: `FAASFLOW_CHAOS_REPORT=FILE` makes it write the table
//! there, `docs/reliability.md`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use faasflow_proto::v1 as pb;
use faasflow_proto::v1::planner_client::PlannerClient;
use faasflow_rpc::auth::{Attach, AuthChannel};

mod support;

use support::local::{Cluster, alive, children_of, kill9, pair_workflow, plan_workers, signal, sum};

/// How much of everything a run does.
#[derive(Debug, Clone, Copy)]
struct Scale {
    /// Invocations of the burst.
    burst: usize,
    /// Invocations sent while each other fault happens.
    per_fault: usize,
    /// Instances killed in the instance scenario.
    kills: usize,
    /// Versions deployed one after the other in the redeploy storm.
    redeploys: usize,
}

const SHORT: Scale = Scale {
    burst: 1_000,
    per_fault: 24,
    kills: 3,
    redeploys: 60,
};

const FULL: Scale = Scale {
    burst: 10_000,
    per_fault: 120,
    kills: 10,
    redeploys: 300,
};

/// What one scenario saw.
#[derive(Debug, Default)]
struct Tally {
    scenario: String,
    faults: String,
    sent: u64,
    completed: u64,
    clear: u64,
    /// Errors that do not name the injected cause.
    unclear: Vec<String>,
    hung: u64,
    leaked: Vec<String>,
    /// What else went wrong (more versions made than the faults call for).
    problems: Vec<String>,
    took: Duration,
    started: Option<Instant>,
}

impl Tally {
    /// A scenario starting now.
    fn new(scenario: &str) -> Tally {
        Tally {
            scenario: scenario.to_owned(),
            started: Some(Instant::now()),
            ..Tally::default()
        }
    }

    /// The scenario is over: how long it took, and what the cluster still holds.
    fn end(mut self, c: &Cluster) -> Tally {
        self.took = self.started.map_or(Duration::ZERO, |t| t.elapsed());
        self.leaked = leaks(c);
        self
    }

    fn row(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.1} s |",
            self.scenario,
            self.faults,
            self.sent,
            self.completed,
            self.clear,
            self.unclear.len(),
            self.hung,
            self.leaked.len(),
            self.took.as_secs_f64()
        )
    }
}

/// A planner client with the cluster's token, on a connection of its own.
fn client(rt: &tokio::runtime::Runtime, c: &Cluster) -> PlannerClient<AuthChannel> {
    let channel = c.channel(rt, &c.planner(), "planner");
    PlannerClient::with_interceptor(channel, Attach::new(Some(c.token())))
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20)
}

/// How one invocation ended, as its client saw it.
enum Outcome {
    Completed,
    Failed(String),
    Hung,
}

/// Sends `count` invocations of `workflow`, `concurrency` at a time over `channels`
/// connections, each with `deadline`; the client gives up on one 10 s after its deadline.
fn send(
    rt: &tokio::runtime::Runtime,
    c: &Cluster,
    workflow: &str,
    count: usize,
    concurrency: usize,
    channels: usize,
    deadline: Duration,
) -> Vec<Outcome> {
    let clients: Vec<_> = (0..channels.max(1)).map(|_| client(rt, c)).collect();
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..count {
            let mut cl = clients[i % clients.len()].clone();
            let gate = gate.clone();
            let req = pb::InvokeRequest {
                workflow: workflow.to_owned(),
                version: None,
                input_json: br#"{"text": "chaos"}"#.to_vec(),
                deadline_ms: deadline.as_millis() as u64,
                fill_staged_scale: None,
                files: Default::default(),
            };
            tasks.spawn(async move {
                let _permit = gate.acquire_owned().await.expect("gate");
                match tokio::time::timeout(deadline + Duration::from_secs(10), cl.invoke(req)).await {
                    Err(_) => Outcome::Hung,
                    Ok(Err(status)) => Outcome::Failed(status.message().to_owned()),
                    Ok(Ok(r)) => {
                        let r = r.into_inner();
                        if r.status == pb::InvocationStatus::Succeeded as i32 {
                            Outcome::Completed
                        } else {
                            Outcome::Failed(r.error)
                        }
                    }
                }
            });
        }
        let mut out = Vec::with_capacity(count);
        while let Some(o) = tasks.join_next().await {
            out.push(o.expect("invocation task"));
        }
        out
    })
}

/// Adds `outcomes` to `t`: a failure is clear when its error contains one of `causes`.
fn count(t: &mut Tally, outcomes: Vec<Outcome>, causes: &[&str]) {
    for o in outcomes {
        t.sent += 1;
        match o {
            Outcome::Completed => t.completed += 1,
            Outcome::Hung => t.hung += 1,
            Outcome::Failed(e) if !e.is_empty() && causes.iter().any(|c| e.contains(c)) => t.clear += 1,
            Outcome::Failed(e) => t.unclear.push(e),
        }
    }
}

/// What the live daemons and Redis still hold (after waiting up to 15 s for stragglers).
fn leaks(c: &Cluster) -> Vec<String> {
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let mut held = Vec::new();
        for w in c.record["workers"].as_array().expect("workers") {
            let pid = w["pid"].as_u64().unwrap_or(0) as u32;
            let (Some(name), Some(addr)) = (w["name"].as_str(), w["metrics"].as_str()) else {
                continue;
            };
            if !alive(pid) {
                continue;
            }
            let Some(m) = c.scrape(name, addr) else {
                held.push(format!("worker `{name}`: /metrics does not answer"));
                continue;
            };
            for (metric, what) in [
                ("faasflow_arena_used_bytes", "arena bytes"),
                ("faasflow_invocations_running", "invocations"),
                ("faasflow_pool_queued_calls", "queued calls"),
            ] {
                let v = sum(&m, metric);
                if v > 0.0 {
                    held.push(format!("worker `{name}`: {v} {what}"));
                }
            }
            held.extend(versions_left(name, pid, &m));
        }
        if let Some(keys) = c.redis_keys().filter(|k| *k > 0) {
            held.push(format!("Redis: {keys} keys"));
        }
        if let Some(m) = c.record["planner"]["metrics"]
            .as_str()
            .and_then(|a| c.scrape("planner", a))
        {
            for s in m
                .iter()
                .filter(|s| s.name == "faasflow_planner_versions" && s.value > 1.0)
            {
                held.push(format!(
                    "planner: {} versions of {:?} with nothing in flight",
                    s.value, s.labels
                ));
            }
        }
        held.extend(spill_files(c));
        if held.is_empty() || Instant::now() > end {
            return held;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What a daemon holds of versions beyond those in use: more than one version of a workflow,
/// instances of dropped versions' pools, arena segments or memory files of versions it no
/// longer holds.
fn versions_left(name: &str, pid: u32, m: &[faasflow_core::metrics::Sample]) -> Vec<String> {
    let mut out = Vec::new();
    let versions = m.iter().filter(|s| s.name == "faasflow_installed_versions");
    let mut installed = 0.0;
    for s in versions {
        installed += s.value;
        if s.value > 1.0 {
            out.push(format!("worker `{name}`: {} versions of {:?}", s.value, s.labels));
        }
    }
    let instances = sum(m, "faasflow_instances");
    let in_pools = sum(m, "faasflow_pool_instances");
    if instances > in_pools {
        out.push(format!(
            "worker `{name}`: {} instances of dropped versions",
            instances - in_pools
        ));
    }
    // One segment per installed version, and the daemon's own.
    let segments = sum(m, "faasflow_arena_segments");
    if segments > installed + 1.0 {
        out.push(format!(
            "worker `{name}`: {segments} arena segments for {installed} versions"
        ));
    }
    let files = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|t| t.to_string_lossy().starts_with("/memfd:") && t.to_string_lossy().contains('@'))
        .count() as f64;
    if files > installed {
        out.push(format!(
            "worker `{name}`: {files} shared-memory files of workflow versions for {installed} versions"
        ));
    }
    out
}

/// Spill files left in the cluster's spill directories. A daemon creates its next two spill
/// files ahead of need (empty, `spill-N`): up to two such per directory hold nothing.
fn spill_files(c: &Cluster) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![c.dir.join("spill")];
    while let Some(d) = todo.pop() {
        let mut ahead = 0;
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let empty = p.metadata().is_ok_and(|m| m.len() == 0);
            if p.is_dir() {
                todo.push(p);
            } else if empty && e.file_name().to_string_lossy().starts_with("spill-") && ahead < 2 {
                ahead += 1;
            } else {
                out.push(format!("spill file {}", p.display()));
            }
        }
    }
    out
}

fn daemon_pids(c: &Cluster) -> Vec<u32> {
    c.record["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .filter_map(|w| w["pid"].as_u64().map(|p| p as u32))
        .collect()
}

/// Stops the cluster; which of its processes and instance processes outlived it counts as
/// leaked by the last scenario of `tallies`.
fn down_and_check(c: Cluster, mut tallies: Vec<Tally>) -> Vec<Tally> {
    let left = outliving_down(c);
    if let Some(last) = tallies.last_mut() {
        last.leaked.extend(left);
    }
    tallies
}

/// Stops the cluster and says which of its processes and instance processes outlived it.
fn outliving_down(mut c: Cluster) -> Vec<String> {
    let instances = children_of(&daemon_pids(&c));
    let mut pids = c.pids();
    pids.extend(&instances);
    let out = c.down();
    assert!(out.status.success(), "down: {}", String::from_utf8_lossy(&out.stderr));
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() || Instant::now() > end {
            return left.iter().map(|p| format!("process {p} outlived `down`")).collect();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn deploy(c: &Cluster, name: &str, yaml: &str, mode: &str) {
    let file = c.dir.join(format!("{name}.yaml"));
    std::fs::write(&file, yaml).expect("write");
    let out = c.run(&["deploy", &file.to_string_lossy(), "--mode", mode]);
    assert!(
        out.status.success(),
        "deploy {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const NOOP: &str = "name: noop
functions:
  a: {runtime: 0ms, outputs: {out: {type: json, size: 16B}}}
  b: {runtime: 0ms, outputs: {out: {type: json, size: 16B}}}
steps:
  - task: a
  - task: b
    inputs: {x: a.out}
output:
  b: b.out
";

const NAPPER: &str = "name: napper
functions:
  nap: {runtime: 150ms, isolation: process, retry: {attempts: 3, backoff: 20ms, on: [crash]}, outputs: {out: {type: json, size: 16B}}}
steps:
  - task: nap
output:
  out: nap.out
";

const HANG: &str = "name: hang
functions:
  hang: {pack: testkit, timeout: 300ms, outputs: {out: bytes}}
steps:
  - task: hang
    inputs: {in: input.text}
";

/// Runs `send` on a thread while `fault` runs here; returns the outcomes.
fn during(
    c: &Cluster,
    workflow: &str,
    count: usize,
    concurrency: usize,
    deadline: Duration,
    fault: impl FnOnce(),
) -> Vec<Outcome> {
    std::thread::scope(|s| {
        let sender = s.spawn(|| {
            let rt = multi_rt();
            send(&rt, c, workflow, count, concurrency, 2, deadline)
        });
        fault();
        sender.join().expect("sender")
    })
}

fn multi_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Cluster A: the burst, instances killed, hung functions, Redis killed.
fn cluster_a(scale: Scale) -> Vec<Tally> {
    let c = Cluster::up("chaos-a", 3, &["--max-in-flight", "256", "--heartbeat-ms", "300"]);
    deploy(&c, "noop", NOOP, "workersp");
    deploy(&c, "napper", NAPPER, "workersp");
    deploy(&c, "hang", HANG, "workersp");
    let has_redis = c.record["redis"]["url"].is_string();
    if has_redis {
        deploy(&c, "noop-m", &NOOP.replace("name: noop", "name: noop-m"), "mastersp");
    }
    let rt = multi_rt();
    let mut tallies = Vec::new();

    // A burst: every invocation sent at once over 8 connections; the planner takes 256.
    let mut t = Tally::new("burst of invocations, 3 workers, planner limit 256 in flight");
    t.faults = format!("{} at once", scale.burst);
    let out = send(&rt, &c, "noop", scale.burst, scale.burst, 8, Duration::from_secs(60));
    count(&mut t, out, &["overloaded"]);
    tallies.push(t.end(&c));

    // Instances killed (kill -9) while their functions run; `nap` retries crashes.
    let mut t = Tally::new("instance killed mid-function (`retry.on: [crash]`)");
    let daemons = daemon_pids(&c);
    let mut killed = 0;
    let out = during(&c, "napper", scale.per_fault, 4, Duration::from_secs(30), || {
        for _ in 0..scale.kills {
            std::thread::sleep(Duration::from_millis(250));
            if let Some(&pid) = children_of(&daemons).iter().max() {
                kill9(pid);
                killed += 1;
            }
        }
    });
    t.faults = format!("{killed} kill -9");
    count(&mut t, out, &["exited", "killed", "was stopped", "signal"]);
    tallies.push(t.end(&c));

    // Functions that never return: each attempt is stopped at its timeout.
    let mut t = Tally::new("function that never returns (timeout 300 ms)");
    let out = send(&rt, &c, "hang", scale.per_fault / 4, 4, 1, Duration::from_secs(30));
    t.faults = format!("{} hung calls", out.len());
    // Calls sharing the stopped instance fail naming the timeout that stopped it.
    count(&mut t, out, &["timed out after 300 ms", "running in it timed out"]);
    count(&mut t, send(&rt, &c, "noop", 8, 4, 1, Duration::from_secs(30)), &[]);
    tallies.push(t.end(&c));

    // Redis killed while MasterSP invocations pass every object through it; WorkerSP runs on.
    if has_redis {
        let mut t = Tally::new("Redis killed (MasterSP through it; WorkerSP after)");
        let redis = c.record["redis"]["pid"].as_u64().expect("redis pid") as u32;
        let out = during(&c, "noop-m", scale.per_fault, 2, Duration::from_secs(30), || {
            std::thread::sleep(Duration::from_millis(300));
            kill9(redis);
        });
        t.faults = "1 kill -9".into();
        count(&mut t, out, &["Redis", "remote tier", "redis"]);
        count(&mut t, send(&rt, &c, "noop", 8, 4, 1, Duration::from_secs(30)), &[]);
        tallies.push(t.end(&c));
    }
    down_and_check(c, tallies)
}

/// Cluster B: a daemon killed mid-workflow, then a daemon frozen (its peers hear nothing).
fn cluster_b(scale: Scale) -> Vec<Tally> {
    let c = Cluster::up(
        "chaos-b",
        4,
        &["--slots", "2", "--peer-timeout-ms", "1000", "--heartbeat-ms", "300"],
    );
    deploy(&c, "pair", &pair_workflow("pair", "300ms", true), "workersp");
    deploy(&c, "pair-once", &pair_workflow("pair-once", "300ms", false), "workersp");
    let rt = multi_rt();
    let mut tallies = Vec::new();
    let placed = |name: &str| {
        let mut p = client(&rt, &c);
        let plan = rt
            .block_on(p.get_plan(pb::GetPlanRequest {
                workflow: name.into(),
                version: None,
            }))
            .expect("plan")
            .into_inner()
            .plan
            .expect("plan");
        plan_workers(&plan)
    };

    // A daemon killed while both workflows run on it: the idempotent one runs again on the
    // live workers, the other fails naming the worker.
    let mut t = Tally::new("daemon killed mid-workflow (idempotent: run again; else: fail naming it)");
    let victim = placed("pair")["b"].clone();
    let pid = c.worker(&victim)["pid"].as_u64().expect("pid") as u32;
    let outs = std::thread::scope(|s| {
        let idem = s.spawn(|| {
            send(
                &multi_rt(),
                &c,
                "pair",
                scale.per_fault / 2,
                2,
                1,
                Duration::from_secs(30),
            )
        });
        let once = s.spawn(|| {
            send(
                &multi_rt(),
                &c,
                "pair-once",
                scale.per_fault / 2,
                2,
                1,
                Duration::from_secs(30),
            )
        });
        std::thread::sleep(Duration::from_millis(700));
        kill9(pid);
        (idem.join().expect("idem"), once.join().expect("once"))
    });
    t.faults = format!("kill -9 of `{victim}`");
    count(&mut t, outs.0, &["was lost"]);
    count(&mut t, outs.1, &["was lost", &format!("`{victim}`")]);
    // New invocations run on the live workers.
    count(&mut t, send(&rt, &c, "pair", 4, 2, 1, Duration::from_secs(30)), &[]);
    tallies.push(t.end(&c));

    // A daemon frozen (SIGSTOP) for 2.5 s: its connections go silent past the peer timeout.
    let mut t = Tally::new("peer connection cut (daemon frozen 2.5 s, then resumed)");
    let frozen = placed("pair")["a"].clone();
    let pid = c.worker(&frozen)["pid"].as_u64().expect("pid") as u32;
    let out = during(&c, "pair", scale.per_fault / 2, 2, Duration::from_secs(30), || {
        std::thread::sleep(Duration::from_millis(500));
        signal(pid, "STOP");
        std::thread::sleep(Duration::from_millis(2_500));
        signal(pid, "CONT");
    });
    t.faults = format!("`{frozen}` frozen once");
    count(
        &mut t,
        out,
        &["was lost", "is lost", "overloaded", "cannot plan", "deadline"],
    );
    // Afterwards the cluster serves again.
    count(&mut t, send(&rt, &c, "pair", 4, 2, 1, Duration::from_secs(30)), &[]);
    tallies.push(t.end(&c));
    down_and_check(c, tallies)
}

/// Workflow `chain6`: six functions in a sequence, 1 KB passed along each edge.
fn chain6() -> String {
    let mut y = String::from("name: chain6\nfunctions:\n");
    for i in 0..6 {
        y.push_str(&format!(
            "  f{i}: {{runtime: 1ms, outputs: {{out: {{type: bytes, size: 1KB}}}}}}\n"
        ));
    }
    y.push_str("steps:\n  - task: f0\n");
    for i in 1..6 {
        y.push_str(&format!("  - task: f{i}\n    inputs: {{x: f{}.out}}\n", i - 1));
    }
    y.push_str("output:\n  out: f5.out\n");
    y
}

/// The newest version of `workflow`.
fn newest_version(rt: &tokio::runtime::Runtime, c: &Cluster, workflow: &str) -> u64 {
    c.newest_plan(rt, workflow).version
}

/// Waits (up to 30 s) until the newest version of `workflow` has not changed for 3 s, and
/// notes in `t` how many versions were made since `before`: more than `allowed` is a problem
/// (a re-plan storm).
fn versions_made(rt: &tokio::runtime::Runtime, c: &Cluster, t: &mut Tally, workflow: &str, before: u64, allowed: u64) {
    let end = Instant::now() + Duration::from_secs(30);
    let mut last = newest_version(rt, c, workflow);
    let mut since = Instant::now();
    while since.elapsed() < Duration::from_secs(3) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
        let v = newest_version(rt, c, workflow);
        if v != last {
            last = v;
            since = Instant::now();
        }
    }
    let made = last - before;
    t.faults.push_str(&format!("; {made} version(s) made"));
    if made > allowed {
        t.problems.push(format!(
            "{made} versions of `{workflow}` made, at most {allowed} expected"
        ));
    }
}

/// Cluster C, faults an operator meets: a worker frozen during a deploy, the planner frozen,
/// a daemon started again on the same and on new ports, a storm of redeploys while invoking.
fn cluster_c(scale: Scale) -> Vec<Tally> {
    let mut c = Cluster::up(
        "chaos-c",
        3,
        &["--slots", "3", "--heartbeat-ms", "300", "--peer-timeout-ms", "3000"],
    );
    let pair = pair_workflow("pair", "100ms", true);
    deploy(&c, "pair", &pair, "workersp");
    deploy(&c, "chain6", &chain6(), "workersp");
    let rt = multi_rt();
    let mut tallies = Vec::new();
    let causes = [
        "was lost",
        "is lost",
        "cannot run now",
        "does not hold",
        "lost while",
        "not installed",
    ];

    // A worker frozen 4.5 s (past its loss window) while a new version is deployed and
    // invocations run: one version for the deploy, at most one for the loss and one for the
    // return, and the deploy ends deployed.
    let mut t = Tally::new("worker frozen 4.5 s during a deploy (one version per deploy, loss, return)");
    let before = newest_version(&rt, &c, "pair");
    let frozen = plan_workers(&c.newest_plan(&rt, "pair"))["b"].clone();
    let pid = c.worker(&frozen)["pid"].as_u64().expect("pid") as u32;
    let mut deployed = None;
    let out = during(&c, "pair", scale.per_fault, 2, Duration::from_secs(30), || {
        std::thread::sleep(Duration::from_millis(300));
        signal(pid, "STOP");
        std::thread::scope(|s| {
            let d = s.spawn(|| {
                let file = c.dir.join("pair.yaml");
                c.run(&["deploy", &file.to_string_lossy()])
            });
            std::thread::sleep(Duration::from_millis(4_500));
            signal(pid, "CONT");
            deployed = Some(d.join().expect("deploy"));
        });
    });
    t.faults = format!("`{frozen}` frozen once");
    if let Some(d) = deployed.filter(|d| !d.status.success()) {
        t.problems
            .push(format!("the deploy failed: {}", String::from_utf8_lossy(&d.stderr)));
    }
    count(&mut t, out, &causes);
    versions_made(&rt, &c, &mut t, "pair", before, 3);
    count(&mut t, send(&rt, &c, "pair", 4, 2, 1, Duration::from_secs(30)), &[]);
    tallies.push(t.end(&c));

    // The planner frozen 8 s while invocations run: the daemons finish them, nobody is lost.
    let mut t = Tally::new("planner frozen 8 s (no worker found lost, no version made)");
    let before = newest_version(&rt, &c, "pair");
    let planner = c.record["planner"]["pid"].as_u64().expect("pid") as u32;
    let out = during(&c, "pair", scale.per_fault, 2, Duration::from_secs(30), || {
        std::thread::sleep(Duration::from_millis(300));
        signal(planner, "STOP");
        std::thread::sleep(Duration::from_secs(8));
        signal(planner, "CONT");
    });
    t.faults = "planner frozen once".into();
    count(&mut t, out, &[]);
    versions_made(&rt, &c, &mut t, "pair", before, 0);
    tallies.push(t.end(&c));

    // A daemon killed and started again, on the same ports, then on new ones.
    let mut t = Tally::new("daemon restarted on the same ports, then on new ones");
    let before = newest_version(&rt, &c, "pair");
    let victim = plan_workers(&c.newest_plan(&rt, "pair"))["b"].clone();
    c.restart(&victim, true);
    count(
        &mut t,
        send(&rt, &c, "pair", scale.per_fault / 2, 2, 1, Duration::from_secs(30)),
        &causes,
    );
    c.restart(&victim, false);
    count(
        &mut t,
        send(&rt, &c, "pair", scale.per_fault / 2, 2, 1, Duration::from_secs(30)),
        &causes,
    );
    t.faults = format!("`{victim}` kill -9 and started twice");
    // New ports make one version; a call that saw it lost may make one more and its return one.
    versions_made(&rt, &c, &mut t, "pair", before, 3);
    count(&mut t, send(&rt, &c, "pair", 4, 2, 1, Duration::from_secs(30)), &[]);
    tallies.push(t.end(&c));

    // Versions deployed one after the other while invocations run: each old one leaves once
    // its invocations have ended.
    let mut t = Tally::new("redeploy storm while invoking (old versions leave)");
    let source = chain6();
    let mut deploys = 0;
    let out = during(&c, "chain6", scale.per_fault * 2, 4, Duration::from_secs(60), || {
        let rt = multi_rt();
        let mut p = client(&rt, &c);
        for _ in 0..scale.redeploys {
            let r = rt.block_on(p.deploy(pb::DeployRequest {
                source: source.clone(),
                file_name: "chain6.yaml".into(),
                mode: pb::Mode::WorkerSp as i32,
                allow_overcommit: false,
                default_name: String::new(),
                code_dir: String::new(),
            }));
            match r {
                Ok(_) => deploys += 1,
                Err(e) => t.problems.push(format!("deploy {deploys}: {}", e.message())),
            }
        }
    });
    t.faults = format!("{deploys} versions deployed");
    count(&mut t, out, &[]);
    tallies.push(t.end(&c));
    down_and_check(c, tallies)
}

fn run(scale: Scale) -> Vec<Tally> {
    let mut t = cluster_a(scale);
    t.extend(cluster_b(scale));
    t.extend(cluster_c(scale));
    t
}

fn table(tallies: &[Tally]) -> String {
    let mut s = String::from(
        "| scenario | faults injected | invocations sent | completed | failed with a clear error | other errors (must be 0) | hung (must be 0) | leaked (must be 0) | time |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for t in tallies {
        s.push_str(&t.row());
        s.push('\n');
    }
    let total = |f: fn(&Tally) -> u64| tallies.iter().map(f).sum::<u64>();
    s.push_str(&format!(
        "| **all** | | {} | {} | {} | {} | {} | {} | |\n",
        total(|t| t.sent),
        total(|t| t.completed),
        total(|t| t.clear),
        total(|t| t.unclear.len() as u64),
        total(|t| t.hung),
        total(|t| t.leaked.len() as u64)
    ));
    s
}

fn check(tallies: &[Tally]) {
    let mut problems = BTreeMap::new();
    for t in tallies {
        let mut p = Vec::new();
        if t.hung > 0 {
            p.push(format!("{} hung", t.hung));
        }
        if !t.unclear.is_empty() {
            p.push(format!(
                "errors that do not name the cause: {:?}",
                &t.unclear[..t.unclear.len().min(5)]
            ));
        }
        if !t.leaked.is_empty() {
            p.push(format!("leaked: {:?}", t.leaked));
        }
        if t.completed == 0 {
            p.push("nothing completed".into());
        }
        p.extend(t.problems.iter().cloned());
        if !p.is_empty() {
            problems.insert(t.scenario.clone(), p);
        }
    }
    assert!(problems.is_empty(), "{}\n{problems:#?}", table(tallies));
}

#[test]
fn chaos_short() {
    let tallies = run(SHORT);
    println!("{}", table(&tallies));
    check(&tallies);
}

#[test]
#[ignore = "minutes long: `cargo xtask chaos` runs it"]
fn chaos_full() {
    let tallies = run(FULL);
    let t = table(&tallies);
    println!("{t}");
    if let Ok(path) = std::env::var("FAASFLOW_CHAOS_REPORT") {
        std::fs::write(&path, &t).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
    }
    check(&tallies);
}
