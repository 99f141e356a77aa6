//! Faults an operator meets, on local clusters of real processes (`faasflow up`): a worker or
//! the planner that stops answering for a while, a daemon or the planner started again, many
//! versions deployed one after the other. Each test checks what the cluster converges to:
//! versions made, versions and instances the daemons hold, and that invocations run (or fail
//! at once, naming the cause) instead of waiting for a worker that cannot answer.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use faasflow_proto::v1 as pb;

mod support;

use support::local::{Cluster, pair_workflow, plan_workers, rt, signal, sum};

fn pid_of(c: &Cluster, who: &str) -> u32 {
    if who == "planner" {
        c.record["planner"]["pid"].as_u64().expect("pid") as u32
    } else {
        c.worker(who)["pid"].as_u64().expect("pid") as u32
    }
}

/// The newest version of `workflow` and where its tasks run.
fn newest(c: &Cluster, rt: &tokio::runtime::Runtime, workflow: &str) -> (u64, BTreeMap<String, String>) {
    let p = c.newest_plan(rt, workflow);
    (p.version, plan_workers(&p))
}

/// Waits until the newest version of `workflow` has not changed for `quiet`, at most `limit`;
/// returns it.
fn settled(c: &Cluster, rt: &tokio::runtime::Runtime, workflow: &str, quiet: Duration, limit: Duration) -> u64 {
    let end = Instant::now() + limit;
    let mut last = newest(c, rt, workflow).0;
    let mut since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let v = newest(c, rt, workflow).0;
        if v != last {
            last = v;
            since = Instant::now();
        }
        if since.elapsed() >= quiet {
            return last;
        }
        assert!(
            Instant::now() < end,
            "the versions of `{workflow}` did not settle within {limit:?} (now {v})"
        );
    }
}

/// The plan versions each worker's daemon holds, dropping ones too.
fn held(c: &Cluster, rt: &tokio::runtime::Runtime) -> BTreeMap<String, Vec<(String, u64, bool)>> {
    let names: Vec<String> = c.record["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .map(|w| w["name"].as_str().expect("name").to_owned())
        .collect();
    names
        .into_iter()
        .map(|name| {
            let s = rt
                .block_on(c.daemon_client(rt, &name).status(pb::StatusRequest {}))
                .expect("status")
                .into_inner();
            let plans = s
                .plans
                .into_iter()
                .map(|p| (p.workflow, p.version, p.dropping))
                .collect();
            (name, plans)
        })
        .collect()
}

/// Waits (up to 15 s) until every daemon holds version `version` of `workflow` where its plan
/// runs tasks, and nothing else.
fn only_newest_held(c: &Cluster, rt: &tokio::runtime::Runtime, workflow: &str) {
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let (version, placed) = newest(c, rt, workflow);
        let held = held(c, rt);
        let good = held.iter().all(|(name, plans)| {
            let should = placed.values().any(|w| w == name);
            let expected: Vec<(String, u64, bool)> = if should {
                vec![(workflow.to_owned(), version, false)]
            } else {
                Vec::new()
            };
            *plans == expected
        });
        if good {
            return;
        }
        assert!(
            Instant::now() < end,
            "the daemons do not hold just version {version} of `{workflow}` ({placed:?}): {held:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn invoke(c: &Cluster, workflow: &str, deadline_ms: u64) -> (Duration, std::process::Output) {
    let started = Instant::now();
    let deadline = deadline_ms.to_string();
    let out = c.run(&["invoke", workflow, "--input", "{}", "--deadline-ms", &deadline]);
    (started.elapsed(), out)
}

fn assert_ok(c: &Cluster, workflow: &str) {
    let (took, out) = invoke(c, workflow, 20_000);
    assert!(
        out.status.success(),
        "invoke {workflow} failed after {took:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_worker_frozen_during_a_deploy_makes_one_version_per_loss_and_return() {
    let c = Cluster::up("frozen-deploy", 3, &["--slots", "2", "--heartbeat-ms", "200"]);
    let wf = c.write("pair.yaml", &pair_workflow("pair", "1ms", true));
    c.deploy(&wf);
    let rt = rt();
    let (v1, placed) = newest(&c, &rt, "pair");
    let frozen = placed["b"].clone();
    let pid = pid_of(&c, &frozen);
    // The worker stops answering (3 loss windows and more) while a new version is deployed.
    signal(pid, "STOP");
    let deploy = std::thread::scope(|s| {
        let d = s.spawn(|| c.run(&["deploy", &wf.to_string_lossy()]));
        std::thread::sleep(Duration::from_millis(2_500));
        signal(pid, "CONT");
        d.join().expect("deploy thread")
    });
    assert!(
        deploy.status.success(),
        "a deploy racing a loss ends deployed: {}",
        String::from_utf8_lossy(&deploy.stderr)
    );
    // The deploy, the loss and the return: at most one version each, then no more.
    let v = settled(&c, &rt, "pair", Duration::from_secs(4), Duration::from_secs(30));
    assert!(
        v <= v1 + 3,
        "{} versions made after version {v1}: a re-plan storm",
        v - v1
    );
    only_newest_held(&c, &rt, "pair");
    assert_ok(&c, "pair");
}

#[test]
fn a_frozen_planner_finds_no_worker_lost_when_it_runs_again() {
    let c = Cluster::up("frozen-planner", 3, &["--slots", "2", "--heartbeat-ms", "200"]);
    let wf = c.write("pair.yaml", &pair_workflow("pair", "1ms", true));
    c.deploy(&wf);
    let rt = rt();
    let (v1, _) = newest(&c, &rt, "pair");
    let pid = pid_of(&c, "planner");
    signal(pid, "STOP");
    std::thread::sleep(Duration::from_millis(3_000));
    signal(pid, "CONT");
    let v = settled(&c, &rt, "pair", Duration::from_secs(3), Duration::from_secs(20));
    assert_eq!(v, v1, "the planner planned `pair` again after it was itself frozen");
    let log = std::fs::read_to_string(c.dir.join("logs").join("planner.log")).expect("planner log");
    // Whether it saw that it did not run (and gave every worker a new window) or asked the
    // silent workers directly, none is lost.
    assert!(!log.contains("is lost"), "{log}");
    assert_ok(&c, "pair");
}

#[test]
fn a_restarted_daemon_gets_its_plans_back_on_the_same_and_on_new_ports() {
    let mut c = Cluster::up("restart", 3, &["--slots", "2", "--heartbeat-ms", "200"]);
    // Not idempotent: a first run that failed would not be hidden by a second.
    let wf = c.write("pair.yaml", &pair_workflow("pair", "1ms", false));
    c.deploy(&wf);
    let rt = rt();
    let (v1, placed) = newest(&c, &rt, "pair");
    let victim = placed["b"].clone();

    // Same ports: it gets the version it held back, and calls run at once.
    restart_and_invoke(&mut c, &victim, true);
    assert_eq!(
        newest(&c, &rt, "pair").0,
        v1,
        "a restart on the same ports needs no new version"
    );
    only_newest_held(&c, &rt, "pair");
    // New ports: the others could not reach it where the plan says; planned again.
    restart_and_invoke(&mut c, &victim, false);
    let v = settled(&c, &rt, "pair", Duration::from_secs(3), Duration::from_secs(20));
    assert!(v > v1 && v <= v1 + 3, "versions {v1} → {v}");
    only_newest_held(&c, &rt, "pair");
    assert_ok(&c, "pair");
}

/// Starts `victim`'s daemon again and invokes `pair`: it runs, and at once.
fn restart_and_invoke(c: &mut Cluster, victim: &str, same_ports: bool) {
    c.restart(victim, same_ports);
    let (took, out) = invoke(c, "pair", 20_000);
    assert!(
        out.status.success(),
        "after a restart (same ports: {same_ports}), invoke failed after {took:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took < Duration::from_secs(10), "the call took {took:?}\n{}", c.logs());
}

const SAME_V1: &str = "name: same
functions:
  old: {runtime: 1ms, outputs: {out: {type: json, size: 16B}}}
steps:
  - task: old
output:
  from_old: old.out
";

const SAME_V2: &str = "name: same
functions:
  new: {runtime: 1ms, outputs: {out: {type: json, size: 16B}}}
steps:
  - task: new
output:
  from_new: new.out
";

#[test]
fn a_restarted_planner_knows_workers_by_name_and_never_runs_a_stale_plan() {
    let mut c = Cluster::up("planner-restart", 3, &["--heartbeat-ms", "200"]);
    let v1 = c.write("same-v1.yaml", SAME_V1);
    c.deploy(&v1);
    let rt = rt();
    c.restart("planner", true);
    // Every worker registers again, under its own name.
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let m = rt
            .block_on(c.planner_client(&rt).metrics(pb::MetricsRequest {}))
            .expect("metrics")
            .into_inner();
        let live: Vec<&str> = m
            .registered
            .iter()
            .filter(|w| !w.lost)
            .map(|w| w.name.as_str())
            .collect();
        if live.len() == 3 {
            break;
        }
        assert!(Instant::now() < end, "live after a planner restart: {live:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Another workflow under the old name: its own functions run, never the old ones.
    let v2 = c.write("same-v2.yaml", SAME_V2);
    c.deploy(&v2);
    let out = c.run(&["invoke", "same", "--input", "{}"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("from_new") && !stdout.contains("from_old"),
        "a stale plan ran: {stdout}"
    );
    // What the planner no longer knows leaves the daemons.
    only_newest_held(&c, &rt, "same");
    // A worker lost later is found lost (no other worker answers for it).
    let victim = newest(&c, &rt, "same").1["new"].clone();
    let pid = pid_of(&c, &victim);
    signal(pid, "STOP");
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let m = rt
            .block_on(c.planner_client(&rt).metrics(pb::MetricsRequest {}))
            .expect("metrics")
            .into_inner();
        if m.registered.iter().any(|w| w.name == victim && w.lost) {
            break;
        }
        assert!(Instant::now() < end, "`{victim}` was not found lost");
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(pid, "CONT");
}

#[test]
fn old_versions_leave_the_daemons_with_their_instances_and_segments() {
    let c = Cluster::up("old-versions", 1, &["--heartbeat-ms", "200"]);
    let chain = "name: chain
functions:
  a: {runtime: 1ms, outputs: {out: {type: bytes, size: 1KB}}}
  b: {runtime: 1ms, isolation: process, outputs: {out: {type: bytes, size: 1KB}}}
  c: {runtime: 1ms, outputs: {out: {type: json, size: 16B}}}
steps:
  - task: a
  - task: b
    inputs: {x: a.out}
  - task: c
    inputs: {x: b.out}
output:
  c: c.out
";
    let wf = c.write("chain.yaml", chain);
    for _ in 0..8 {
        c.deploy(&wf);
        assert_ok(&c, "chain");
    }
    let rt = rt();
    only_newest_held(&c, &rt, "chain");
    let metrics = c.worker("worker-0")["metrics"].as_str().expect("metrics").to_owned();
    let pid = pid_of(&c, "worker-0");
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let m = c.scrape("worker-0", &metrics).expect("daemon metrics");
        let instances = sum(&m, "faasflow_instances");
        let in_pools = sum(&m, "faasflow_pool_instances");
        let segments = sum(&m, "faasflow_arena_segments");
        let versions = sum(&m, "faasflow_installed_versions");
        // The memory files of workflow versions this daemon keeps open.
        let files = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("fds")
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .filter(|t| t.to_string_lossy().contains("chain@"))
            .count();
        let children = support::local::children_of(&[pid]);
        // Two pools of the newest version (a and c share one; b has its own), one instance
        // each; one segment for it and one of the daemon's own.
        if instances == in_pools
            && in_pools <= 2.0
            && segments <= 2.0
            && versions == 1.0
            && files == 1
            && children.len() <= 2
        {
            break;
        }
        assert!(
            Instant::now() < end,
            "old versions stay: {instances} instances ({in_pools} in live pools), {segments} segments, {versions} versions, {files} version memory files, {} instance processes",
            children.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_lost_worker_fails_its_invocations_as_soon_as_the_planner_knows() {
    let c = Cluster::up(
        "lost-fast",
        3,
        &["--slots", "2", "--heartbeat-ms", "200", "--peer-timeout-ms", "30000"],
    );
    let wf = c.write("pair.yaml", &pair_workflow("pair", "5s", false));
    c.deploy(&wf);
    let rt = rt();
    let (_, placed) = newest(&c, &rt, "pair");
    // `a` starts the plan (first on its critical path): freeze the other worker.
    let frozen = placed["b"].clone();
    let pid = pid_of(&c, &frozen);
    let (took, out) = std::thread::scope(|s| {
        let call = s.spawn(|| invoke(&c, "pair", 60_000));
        c.wait_in_flight(&rt, &frozen);
        signal(pid, "STOP");
        call.join().expect("invoke thread")
    });
    signal(pid, "CONT");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&format!("`{frozen}`")), "{stderr}");
    // Well before the 30 s peer timeout: the planner found it lost and told the entry.
    assert!(took < Duration::from_secs(12), "failed after {took:?}: {stderr}");
    eprintln!("failed after {took:?}: {stderr}");
}

#[test]
fn a_second_daemon_under_a_live_workers_name_is_refused() {
    let c = Cluster::up("same-name", 2, &["--heartbeat-ms", "200"]);
    let wf = c.write("pair.yaml", &pair_workflow("pair", "1ms", true));
    c.deploy(&wf);
    let rt = rt();
    let (v1, _) = newest(&c, &rt, "pair");
    // `worker-0`'s own command line, on other ports.
    let pid = pid_of(&c, "worker-0");
    let (program, mut args) = support::local::command_line(pid);
    for flag in ["--listen", "--peer-listen"] {
        if let Some(i) = args.iter().position(|a| a == flag) {
            args[i + 1] = "127.0.0.1:0".into();
        }
    }
    let log = c.dir.join("logs").join("impostor.log");
    let mut impostor = std::process::Command::new(program)
        .args(&args)
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(std::fs::File::create(log.with_extension("err")).expect("log"))
        .spawn()
        .expect("a second daemon");
    let end = Instant::now() + Duration::from_secs(15);
    let said = loop {
        let said = std::fs::read_to_string(log.with_extension("err")).unwrap_or_default();
        if said.contains("taken by a live daemon") {
            break said;
        }
        assert!(
            Instant::now() < end,
            "the second daemon was not refused:\n{said}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(said.contains("give every daemon a name of its own"), "{said}");
    // Meanwhile the cluster goes on as it was: no re-plan for an address that flips.
    std::thread::sleep(Duration::from_secs(2));
    let _ = impostor.kill();
    let _ = impostor.wait();
    assert_eq!(newest(&c, &rt, "pair").0, v1, "{}", c.logs());
    assert_ok(&c, "pair");
}
