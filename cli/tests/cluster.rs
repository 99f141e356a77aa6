//! The local cluster with real processes: `faasflow up` starts a planner and daemons (this
//! binary) on loopback; `deploy`, `invoke` and `down` drive it as a user would, and the tests
//! read the planner's and the daemons' gRPC APIs to check what happened inside.

use std::process::Command;
use std::time::{Duration, Instant};

use faasflow_core::report::Report;
use faasflow_proto::v1 as pb;
use faasflow_proto::v1::planner_client::PlannerClient;

mod support;

use faasflow_proto::v1::daemon_client::DaemonClient;
use support::local::{
    Cluster, alive, children_of, faasflow, kill9, pair_workflow, plan_workers, repo, rt, text, unique_dir,
};

const SLOW_V1: &str = "name: slow
inputs:
  x: json
functions:
  nap:
    runtime: 3s
    outputs:
      out: {type: json, size: 16B}
steps:
  - task: nap
    inputs: {x: input.x}
output:
  v1: nap.out
";

const FAST_V2: &str = "name: slow
inputs:
  x: json
functions:
  quick:
    runtime: 1ms
    outputs:
      out: {type: json, size: 16B}
steps:
  - task: quick
    inputs: {x: input.x}
output:
  v2: quick.out
";

#[test]
fn up_deploy_invoke_down_matches_run_and_the_plan() {
    // FaaSFlow's word count is its own Python functions: the workers serve them with the
    // interpreter that has the faasflow package.
    let python = support::python();
    let python = python.to_string_lossy();
    let mut cluster = Cluster::up("main", 3, &["--python", &python]);
    let rt = rt();
    let mut planner = cluster.planner_client(&rt);
    let before = rt
        .block_on(planner.metrics(pb::MetricsRequest {}))
        .expect("metrics")
        .into_inner();
    assert_eq!(before.workers, 3, "{before:?}");

    let cases = [
        (
            repo().join("packs/example/wordcount.yaml"),
            "wordcount-example",
            r#"{"text": "the cat saw the dog and the bird", "parts": 3}"#,
        ),
        (
            repo().join("tests/fixtures/faasflow-v1/benchmark/wordcount/flat_workflow.yaml"),
            "wordcount",
            "{}",
        ),
    ];
    let mut invocations = 0;
    let mut last: Option<Report> = None;
    for (file, name, input) in &cases {
        let said = cluster.deploy(file);
        assert!(
            said.starts_with(&format!("deployed workflow `{name}` version 1")),
            "{said}"
        );
        let local = faasflow(&[
            "run",
            &file.to_string_lossy(),
            "--input",
            input,
            "--report",
            "json",
            "--arena-mib",
            "64",
            "--python",
            &python,
        ]);
        assert!(local.status.success(), "{}", text(&local.stderr));
        let local: Report = serde_json::from_slice(&local.stdout).expect("run's report");
        let plan = rt
            .block_on(planner.get_plan(pb::GetPlanRequest {
                workflow: name.to_string(),
                version: None,
            }))
            .expect("get plan")
            .into_inner()
            .plan
            .expect("a plan");
        let placed = plan_workers(&plan);
        for _ in 0..2 {
            let report = cluster.invoke_json(name, input);
            last = Some(report.clone());
            invocations += 1;
            assert_eq!(report.status, "ok", "{report:?}");
            // The three ends of the invocation, each within the next.
            let (planner_us, client_us) = (
                report.planner_us.expect("planner_us"),
                report.client_us.expect("client_us"),
            );
            assert!(
                0.0 < report.e2e_us && report.e2e_us <= planner_us && planner_us <= client_us,
                "{name}: entry {} µs, planner {planner_us} µs, client {client_us} µs",
                report.e2e_us
            );
            assert_eq!(
                report.output, local.output,
                "cluster and `faasflow run` differ for {name}"
            );
            // Each function's own time lies within the daemon's window of the call.
            support::assert_exec_within_windows(&report, name);
            for f in report.functions.iter().filter(|f| !f.skipped) {
                let base = f.name.split('[').next().unwrap_or(&f.name);
                assert_eq!(
                    Some(&f.worker),
                    placed.get(base),
                    "function {} ran on {} but the plan puts it on {:?}",
                    f.name,
                    f.worker,
                    placed.get(base)
                );
            }
        }
    }
    // FaaSFlow's staged files not given in the input are filled by the planner, in the one
    // `Invoke` the CLI sends, and the CLI says how many.
    let recognizer = repo().join("tests/fixtures/faasflow-v1/benchmark/illgal_recognizer/flat_workflow.yaml");
    cluster.deploy(&recognizer);
    let out = cluster.run(&["invoke", "illgal_recognizer", "--input", "{}"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr)
            .contains("note: 2 inputs of workflow `illgal_recognizer` (FaaSFlow's staged files) not given"),
        "{}",
        text(&out.stderr)
    );
    invocations += 1;
    // The planner keeps the reports: `faasflow trace ID` exports the last invocation with one
    // process per worker that ran a function of it, and a span per function attempt.
    let last = last.expect("an invocation ran");
    let trace_file = cluster.dir.join("last.trace.json");
    let out = cluster.run(&[
        "trace",
        &last.invocation.to_string(),
        "--chrome",
        &trace_file.to_string_lossy(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let trace: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&trace_file).expect("trace written")).expect("trace JSON");
    let events = trace["traceEvents"].as_array().expect("events");
    let workers: std::collections::BTreeSet<&str> = last
        .functions
        .iter()
        .filter(|f| !f.skipped)
        .map(|f| f.worker.as_str())
        .collect();
    let processes = events.iter().filter(|e| e["name"] == "process_name").count();
    assert_eq!(processes, workers.len(), "{workers:?}");
    let spans = events
        .iter()
        .filter(|e| e["ph"] == "X" && e["cat"] == "function")
        .count();
    assert_eq!(spans, last.functions.iter().filter(|f| !f.skipped).count());
    let out = cluster.run(&["trace", "999999", "--chrome", &trace_file.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("keeps the reports of the latest 256 invocations"),
        "{}",
        text(&out.stderr)
    );
    // Prometheus metrics: the planner counts the invocations it answered; the workers, the
    // calls they dispatched (one trigger latency each) and the bytes their calls read.
    let get = |node: &str, addr: &str| -> String {
        let answer = cluster
            .https(
                addr,
                node,
                b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            .expect("metrics reachable");
        let text = String::from_utf8(answer).expect("text");
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        text
    };
    let value = |text: &str, series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
            .parse()
            .expect("a number")
    };
    let planner_metrics = get(
        "planner",
        cluster.record["planner"]["metrics"].as_str().expect("planner metrics"),
    );
    assert_eq!(
        value(&planner_metrics, "faasflow_planner_invocations_total{outcome=\"ok\"}"),
        invocations as f64
    );
    assert_eq!(
        value(&planner_metrics, "faasflow_planner_invocation_seconds_count"),
        invocations as f64
    );
    let (mut calls, mut triggers, mut bytes, mut pools) = (0.0, 0.0, 0.0, 0);
    for w in cluster.record["workers"].as_array().expect("workers") {
        let text = get(
            w["name"].as_str().expect("name"),
            w["metrics"].as_str().expect("worker metrics"),
        );
        calls += value(&text, "faasflow_calls_total");
        triggers += value(&text, "faasflow_trigger_latency_seconds_count");
        for tier in ["in-process", "shared-memory", "peer"] {
            bytes += value(&text, &format!("faasflow_bytes_read_total{{tier=\"{tier}\"}}"));
        }
        pools += text.matches("faasflow_pool_instances{").count();
    }
    assert!(pools > 0);
    assert!(
        calls >= invocations as f64,
        "{calls} calls for {invocations} invocations"
    );
    assert_eq!(triggers, calls);
    assert!(bytes > 0.0);
    // `faasflow top` shows every worker from them.
    let out = cluster.run(&["top", "--once", "--interval", "0.2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for w in cluster.record["workers"].as_array().expect("workers") {
        let name = w["name"].as_str().expect("name");
        assert!(text(&out.stdout).contains(name), "{}", text(&out.stdout));
    }
    let m = rt
        .block_on(planner.metrics(pb::MetricsRequest {}))
        .expect("metrics")
        .into_inner();
    assert_eq!(m.invocations, invocations);
    assert_eq!(
        m.invocation_messages_sent, invocations,
        "one message out per invocation"
    );
    assert_eq!(
        m.invocation_messages_received, invocations,
        "one message in per invocation"
    );

    // Unknown workflow and version: exit 2, with what is known.
    let out = cluster.run(&["invoke", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr).trim(),
        "error: workflow `nope` is not deployed; deployed workflows: illgal_recognizer, wordcount, wordcount-example"
    );
    let out = cluster.run(&["invoke", "wordcount", "--version", "7"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr).trim(),
        "error: workflow `wordcount` has no version 7; its versions: 1"
    );

    // Down: every process gone, no cluster.json; a second down says there is nothing to stop.
    let pids = cluster.pids();
    assert!(pids.iter().all(|p| alive(*p)));
    let out = cluster.down();
    assert!(out.status.success(), "{}", text(&out.stderr));
    for p in &pids {
        assert!(!alive(*p), "pid {p} outlived `down`");
    }
    assert!(!cluster.dir.join("cluster.json").exists());
    let again = cluster.run(&["down"]);
    assert!(again.status.success());
    assert!(
        text(&again.stdout).contains("no cluster is up"),
        "{}",
        text(&again.stdout)
    );
    let out = cluster.run(&["invoke", "wordcount"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no cluster is up"), "{}", text(&out.stderr));
}

#[test]
fn a_daemon_not_reachable_at_deploy_is_named() {
    // Two workers of 2 slots and two functions of scale 2: one function on each worker.
    let cluster = Cluster::up("unreachable", 2, &["--slots", "2", "--heartbeat-ms", "2000"]);
    let wf = cluster.write("pair.yaml", &pair_workflow("pair", "1ms", false));
    let victim = cluster.worker("worker-0");
    let pid = victim["pid"].as_u64().expect("pid") as u32;
    kill9(pid);
    let end = Instant::now() + Duration::from_secs(5);
    while alive(pid) {
        assert!(Instant::now() < end, "pid {pid} survived kill -9");
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = Instant::now();
    let out = cluster.run(&["deploy", &wf.to_string_lossy()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    let expected = format!(
        "cannot reach worker `worker-0` at {}: ",
        victim["grpc_addr"].as_str().expect("addr")
    );
    assert!(err.contains(&expected), "{err}");
    assert!(err.contains("is its daemon running?"), "{err}");
    assert!(err.contains("workflow `pair` version 1 was not deployed"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn the_entry_daemon_killed_mid_invocation_fails_it_fast() {
    let cluster = Cluster::up("killed", 3, &[]);
    let wf = cluster.dir.join("slow.yaml");
    std::fs::write(&wf, SLOW_V1).expect("write");
    cluster.deploy(&wf);
    let rt = rt();
    let plan = cluster.newest_plan(&rt, "slow");
    let entry = plan_workers(&plan)["nap"].clone();
    let pid = cluster.worker(&entry)["pid"].as_u64().expect("pid") as u32;
    let d = cluster.dir();
    let invoke = std::thread::spawn(move || {
        let out = faasflow(&["invoke", "slow", "--input", r#"{"x": 1}"#, "--dir", &d]);
        (out, Instant::now())
    });
    // Kill the entry daemon once it holds the invocation (on a loaded machine the client may
    // take a while to get there): the failure must then come from the lost connection.
    cluster.wait_in_flight(&rt, &entry);
    let killed = Instant::now();
    kill9(pid);
    let (out, ended) = invoke.join().expect("invoke thread");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("worker `{entry}` (")) && err.contains("was lost during invocation"),
        "{err}"
    );
    // The function sleeps 3 s: the failure came from the lost connection, not the end.
    let took = ended - killed;
    assert!(took < Duration::from_millis(2_500), "took {took:?} after the kill");
}

#[test]
fn an_invocation_past_its_deadline_ends_everywhere_naming_what_ran() {
    let cluster = Cluster::up("deadline", 1, &[]);
    let wf = cluster.dir.join("slow.yaml");
    std::fs::write(&wf, SLOW_V1).expect("write");
    cluster.deploy(&wf);
    let started = Instant::now();
    let out = cluster.run(&["invoke", "slow", "--input", r#"{"x": 1}"#, "--deadline-ms", "500"]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("the invocation did not end within its deadline of 500 ms; still open: `nap`: attempt 1 running"),
        "{err}"
    );
    // The daemon ended it (its report came back), well before `nap`'s 3 s.
    assert!(took < Duration::from_millis(2_500), "took {took:?}");
    let rt = rt();
    let mut daemon = cluster.daemon_client(&rt, "worker-0");
    let s = rt
        .block_on(daemon.status(pb::StatusRequest {}))
        .expect("status")
        .into_inner();
    assert!(s.plans.iter().all(|p| p.in_flight == 0), "{:?}", s.plans);
}

#[test]
fn an_idempotent_invocation_that_loses_a_worker_runs_again_on_the_live_ones() {
    // Workers of 2 slots and functions of scale 2: `a` and `b` on two different workers.
    let cluster = Cluster::up(
        "rerun",
        3,
        &["--slots", "2", "--peer-timeout-ms", "1000", "--heartbeat-ms", "300"],
    );
    let wf = cluster.write("pair.yaml", &pair_workflow("pair", "1500ms", true));
    cluster.deploy(&wf);
    let rt = rt();
    let (victim, took, report) = rerun_after_killing_b(&cluster, &rt);
    assert!(
        report.earlier_runs[0].contains(&format!("worker `{victim}`")),
        "the first run's error names the lost worker: {:?}",
        report.earlier_runs
    );
    assert!(took < Duration::from_secs(15), "took {took:?}");
    // The newest version avoids the lost worker, and new invocations run there.
    let placed = plan_workers(&cluster.newest_plan(&rt, "pair"));
    assert!(placed.values().all(|w| *w != victim), "{placed:?}");
    let again = cluster.invoke_json("pair", "{}");
    assert_eq!(again.status, "ok");
    assert!(again.earlier_runs.is_empty());
}

#[test]
fn an_idempotent_mastersp_invocation_that_loses_a_worker_runs_again() {
    let cluster = Cluster::up("rerun-master", 3, &["--slots", "2", "--heartbeat-ms", "300"]);
    assert!(
        cluster.record["redis"]["url"].is_string(),
        "this test needs redis-server on PATH (MasterSP passes objects through Redis)"
    );
    let wf = cluster.write("pair.yaml", &pair_workflow("pair", "1500ms", true));
    let out = cluster.run(&["deploy", &wf.to_string_lossy(), "--mode", "mastersp"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rt = rt();
    rerun_after_killing_b(&cluster, &rt);
}

/// Invokes `pair` (deployed, every function idempotent, `a` and `b` on different workers),
/// kills `b`'s worker once it runs its step, and checks that the invocation ran again and
/// succeeded without it: the killed worker, the time from the kill to the answer, the report.
fn rerun_after_killing_b(cluster: &Cluster, rt: &tokio::runtime::Runtime) -> (String, Duration, Report) {
    let placed = plan_workers(&cluster.newest_plan(rt, "pair"));
    let victim = placed["b"].clone();
    assert_ne!(placed["a"], victim);
    let pid = cluster.worker(&victim)["pid"].as_u64().expect("pid") as u32;
    let d = cluster.dir();
    let invoke = std::thread::spawn(move || faasflow(&["invoke", "pair", "--report", "json", "--dir", &d]));
    cluster.wait_in_flight(rt, &victim);
    let killed = Instant::now();
    kill9(pid);
    let out = invoke.join().expect("invoke thread");
    let took = killed.elapsed();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Report = serde_json::from_slice(&out.stdout).expect("one JSON report");
    assert_eq!(report.status, "ok");
    assert_eq!(report.earlier_runs.len(), 1, "{:?}", report.earlier_runs);
    assert!(
        report.earlier_runs[0].contains(&format!("`{victim}`")),
        "the first run's error names the lost worker: {:?}",
        report.earlier_runs
    );
    assert!(
        report.functions.iter().all(|f| f.worker != victim),
        "the second run avoided it"
    );
    (victim, took, report)
}

#[test]
fn an_invocation_whose_entry_worker_is_lost_before_it_starts_runs_on_the_live_workers() {
    // Not idempotent: nothing has run when the entry is found lost, so it may go elsewhere.
    let cluster = Cluster::up("entry-lost", 4, &["--slots", "2", "--heartbeat-ms", "1000"]);
    let wf = cluster.write("pair.yaml", &pair_workflow("pair", "1ms", false));
    cluster.deploy(&wf);
    let rt = rt();
    let mut planner = cluster.planner_client(&rt);
    let mut kill_and_wait = |names: Vec<String>| {
        for name in &names {
            kill9(cluster.worker(name)["pid"].as_u64().expect("pid") as u32);
        }
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            let m = rt
                .block_on(planner.metrics(pb::MetricsRequest {}))
                .expect("metrics")
                .into_inner();
            if names
                .iter()
                .all(|n| m.registered.iter().any(|w| w.name == *n && w.lost))
            {
                return;
            }
            assert!(Instant::now() < end, "{names:?} were not found lost");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // Both workers of `pair` die. As soon as the planner counts them lost, before or after its
    // watch plans `pair` again, an invocation runs on the two live workers.
    let placed = plan_workers(&cluster.newest_plan(&rt, "pair"));
    kill_and_wait(vec![placed["a"].clone(), placed["b"].clone()]);
    let r = cluster.invoke_json("pair", "{}");
    assert_eq!(r.status, "ok");
    let placed_now = plan_workers(&cluster.newest_plan(&rt, "pair"));
    assert!(
        r.functions
            .iter()
            .all(|f| f.worker != placed["a"] && f.worker != placed["b"])
    );
    // With no worker left, the invocation is refused, naming the lost entry and why it could
    // not be planned again.
    kill_and_wait(vec![placed_now["a"].clone(), placed_now["b"].clone()]);
    let out = cluster.run(&["invoke", "pair"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("is lost (no heartbeat for"), "{err}");
    assert!(err.contains("cannot plan workflow `pair`"), "{err}");
}

#[test]
fn a_lost_worker_s_workflows_are_planned_again_and_it_rejoins_when_it_returns() {
    let cluster = Cluster::up("rejoin", 3, &["--slots", "2", "--heartbeat-ms", "200"]);
    let wf = cluster.write("pair.yaml", &pair_workflow("pair", "1ms", true));
    cluster.deploy(&wf);
    let rt = rt();
    let mut planner = cluster.planner_client(&rt);
    let newest = || {
        let p = cluster.newest_plan(&rt, "pair");
        (p.version, plan_workers(&p))
    };
    let (v1, placed) = newest();
    let victim = placed["b"].clone();
    let pid = cluster.worker(&victim)["pid"].as_u64().expect("pid") as u32;
    kill9(pid);
    // No invocation needed: its silence alone makes the planner plan `pair` again.
    let end = Instant::now() + Duration::from_secs(10);
    let (v2, placed) = loop {
        let (v, placed) = newest();
        if v > v1 {
            break (v, placed);
        }
        assert!(
            Instant::now() < end,
            "`pair` was not planned again after `{victim}` was lost"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(placed.values().all(|w| *w != victim), "version {v2}: {placed:?}");
    assert_eq!(cluster.invoke_json("pair", "{}").status, "ok");
    // The worker comes back (a new daemon of the same name): it registers again and is live.
    let planner_addr = cluster.planner();
    let certs = cluster.dir.join("certs");
    let mut back = Command::new(env!("CARGO_BIN_EXE_faasflow"))
        .args([
            "daemon",
            "--planner",
            &planner_addr,
            "--name",
            &victim,
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--peer-listen", "127.0.0.1:0", "--slots", "2"])
        .arg("--certs")
        .arg(&certs)
        .arg("--token-file")
        .arg(certs.join("token"))
        .arg("--spill-dir")
        .arg(cluster.dir.join("spill-back"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("daemon");
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let m = rt
            .block_on(planner.metrics(pb::MetricsRequest {}))
            .expect("metrics")
            .into_inner();
        if m.registered.iter().any(|w| w.name == victim && !w.lost) {
            break;
        }
        assert!(Instant::now() < end, "`{victim}` did not rejoin: {:?}", m.registered);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        rt.block_on(planner.metrics(pb::MetricsRequest {}))
            .expect("metrics")
            .into_inner()
            .workers,
        3
    );
    let _ = back.kill();
    let _ = back.wait();
}

#[test]
fn red_black_deploy_keeps_running_invocations_on_their_version() {
    let cluster = Cluster::up("redblack", 1, &[]);
    let v1 = cluster.dir.join("v1.yaml");
    let v2 = cluster.dir.join("v2.yaml");
    std::fs::write(&v1, SLOW_V1).expect("write");
    std::fs::write(&v2, FAST_V2).expect("write");
    assert!(cluster.deploy(&v1).starts_with("deployed workflow `slow` version 1"));
    let d = cluster.dir();
    let old = std::thread::spawn(move || {
        faasflow(&[
            "invoke",
            "slow",
            "--input",
            r#"{"x": 1}"#,
            "--report",
            "json",
            "--dir",
            &d,
        ])
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(cluster.deploy(&v2).starts_with("deployed workflow `slow` version 2"));
    let rt = rt();
    let mut daemon = cluster.daemon_client(&rt, "worker-0");
    let status = |daemon: &mut DaemonClient<_>| -> Vec<(u64, u64)> {
        let s = rt
            .block_on(daemon.status(pb::StatusRequest {}))
            .expect("status")
            .into_inner();
        let mut plans: Vec<(u64, u64)> = s.plans.iter().map(|p| (p.version, p.in_flight)).collect();
        plans.sort_unstable();
        plans
    };
    // Both versions are installed while v1 runs.
    assert_eq!(status(&mut daemon), vec![(1, 1), (2, 0)]);
    let new = cluster.invoke_json("slow", r#"{"x": 2}"#);
    assert_eq!(new.output, serde_json::json!({"v2": true}));
    let out = old.join().expect("old invocation");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let old: Report = serde_json::from_slice(&out.stdout).expect("report");
    assert_eq!(old.output, serde_json::json!({"v1": true}));
    // Drained: the planner dropped v1 from the daemon.
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let plans = status(&mut daemon);
        if plans == vec![(2, 0)] {
            break;
        }
        assert!(Instant::now() < end, "v1 still installed: {plans:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = cluster.run(&["invoke", "slow", "--version", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("has no version 1 (it was dropped"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn up_refuses_a_second_cluster_and_down_without_one_is_fine() {
    let cluster = Cluster::up("twice", 1, &[]);
    let out = faasflow(&["up", "--workers", "1", "--dir", &cluster.dir(), "--arena-mib", "64"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("a cluster is already up in"),
        "{}",
        text(&out.stderr)
    );
    let empty = unique_dir("empty");
    let out = faasflow(&["down", "--dir", &empty.to_string_lossy()]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).starts_with("no cluster is up in"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn measured_memory_changes_the_quota_and_the_plan_and_status_shows_it() {
    const MIB: u64 = 1 << 20;
    // Memory alone: runtimes (`touch` declares none) must not plan it again.
    let cluster = Cluster::up("memory", 1, &["--replan-threshold-mib", "32", "--replan-factor", "inf"]);
    // `touch` is given 256 MiB and says it uses 8 (it uses 64): its share of the quota must
    // shrink. `noop` says it uses 200 of its 256 (it uses a few): its share must grow.
    let file = cluster.dir.join("memory.yaml");
    std::fs::write(
        &file,
        "name: memory\nfunctions:\n  touch: {pack: testkit, memory: 256MiB, memory_use: 8MiB, outputs: {out: json}}\n  noop: {pack: testkit, memory: 256MiB, memory_use: 200MiB}\nsteps:\n  - task: touch\n    inputs: {mib: input.mib}\n  - task: noop\noutput:\n  mib: touch.out\n",
    )
    .unwrap();
    cluster.deploy(&file);
    let rt = rt();
    let mut planner = cluster.planner_client(&rt);
    let memory = |planner: &mut PlannerClient<_>| {
        rt.block_on(planner.memory(pb::MemoryRequest {
            workflow: "memory".into(),
        }))
        .expect("memory")
        .into_inner()
        .workflows
        .remove(0)
    };
    let before = memory(&mut planner);
    assert!(before.tasks.iter().all(|t| t.measured_peak_bytes.is_none()));
    assert_eq!(before.quota_bytes, before.declared_quota_bytes);
    // O(v) = 256 − 8 − 16 and 256 − 200 − 16 MiB.
    assert_eq!(before.declared_quota_bytes, (232 + 40) * MIB);

    let plan_quota = |planner: &mut PlannerClient<_>, version: u64| -> u64 {
        let plan = rt
            .block_on(planner.get_plan(pb::GetPlanRequest {
                workflow: "memory".into(),
                version: Some(version),
            }))
            .expect("the plan")
            .into_inner()
            .plan
            .expect("a plan");
        plan.workers.iter().map(|w| w.quota_bytes).sum()
    };
    assert_eq!(plan_quota(&mut planner, 1), before.declared_quota_bytes);

    let report = cluster.invoke_json("memory", r#"{"mib": 64}"#);
    assert_eq!(report.status, "ok");
    // Both tasks' measured peaks are more than 32 MiB off what version 1 was planned with:
    // the planner plans it again with them, as version 2.
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        let m = memory(&mut planner);
        if m.version == 2 {
            break m;
        }
        assert!(Instant::now() < deadline, "no re-plan from measured memory: {m:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let task = |name: &str| after.tasks.iter().find(|t| t.task == name).expect("the task").clone();
    let (touch, noop) = (task("touch"), task("noop"));
    let touched = touch.measured_peak_bytes.expect("touch measured");
    assert!((64 * MIB..112 * MIB).contains(&touched), "touch: {touched}");
    let idle = noop.measured_peak_bytes.expect("noop measured");
    assert!(idle < 32 * MIB, "{noop:?}");
    assert_eq!((touch.calls_measured, noop.calls_measured), (1, 1));
    // Declared values stay the user's; the new version is planned with the measured ones.
    assert_eq!(
        (touch.declared_use_bytes, noop.declared_use_bytes),
        (8 * MIB, 200 * MIB)
    );
    assert!(touch.planned_use_bytes.abs_diff(touched) < MIB, "{touch:?}");
    assert!(noop.planned_use_bytes.abs_diff(idle) < MIB, "{noop:?}");
    assert!(touch.quota_bytes < touch.declared_quota_bytes, "{touch:?}");
    assert!(noop.quota_bytes > noop.declared_quota_bytes, "{noop:?}");
    assert_eq!(after.quota_bytes, touch.quota_bytes + noop.quota_bytes);
    // The partitioner used them: version 2's plan holds the quota from the measured peaks
    // (to the byte, up to rounding of fractions of a MiB).
    assert!(
        plan_quota(&mut planner, 2).abs_diff(after.quota_bytes) <= 2,
        "{after:?}"
    );
    // It runs, and measuring it again changes nothing that would plan it a third time.
    let again = cluster.invoke_json("memory", r#"{"mib": 64}"#);
    assert_eq!(again.status, "ok");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(memory(&mut planner).version, 2);

    // The same, as a user reads it.
    let out = cluster.run(&["status", "memory"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("workflow `memory` version 2"), "{shown}");
    assert!(
        shown
            .lines()
            .any(|l| l.trim_start().starts_with("touch") && l.contains("(2)")),
        "{shown}"
    );
    let unknown = cluster.run(&["status", "nothing"]);
    assert!(!unknown.status.success());
    assert!(text(&unknown.stderr).contains("nothing"), "{}", text(&unknown.stderr));
}

/// The events of a log written with `--log-format json`: every line that is not one (a library
/// that writes to standard error itself) is left out; every line that is must parse.
fn json_events(log: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

fn message(event: &serde_json::Value) -> &str {
    event["fields"]["message"].as_str().unwrap_or_default()
}

#[test]
fn up_with_json_logs_gives_each_process_json_lines_in_its_span_and_a_bad_filter_is_reported() {
    let cluster = Cluster::up_with_env(
        "json-logs",
        1,
        &["--log-format", "json"],
        &[("FAASFLOW_LOG", "faasflow=loud")],
    );
    let logs = cluster.dir.join("logs");
    let worker = json_events(&logs.join("worker-0.log"));
    let planner = json_events(&logs.join("planner.log"));
    for e in worker.iter().chain(&planner) {
        assert!(e["timestamp"].is_string(), "no timestamp: {e}");
        assert!(e["level"].is_string(), "no level: {e}");
        assert!(
            e["target"].as_str().is_some_and(|t| t.starts_with("faasflow")),
            "no component: {e}"
        );
    }
    for (process, events) in [("worker-0", &worker), ("planner", &planner)] {
        // The filter that does not parse is said first, naming it; the log goes on at `info`.
        let bad = events.first().unwrap_or_else(|| panic!("{process} logged nothing"));
        assert_eq!(bad["level"], "WARN", "{process}: {bad}");
        assert!(
            message(bad).contains("FAASFLOW_LOG is not a filter"),
            "{process}: {bad}"
        );
        assert_eq!(bad["fields"]["filter"], "faasflow=loud", "{process}: {bad}");
        assert!(
            events[1..].iter().any(|e| e["level"] == "INFO"),
            "{process} stopped logging: {events:?}"
        );
    }
    let serving = worker
        .iter()
        .find(|e| message(e) == "serving the daemon API")
        .unwrap_or_else(|| panic!("the daemon did not say where it serves: {worker:?}"));
    assert_eq!(
        serving["spans"],
        serde_json::json!([{"name": "worker", "worker": "worker-0"}]),
        "{serving}"
    );
    assert_eq!(
        serving["fields"]["addr"],
        cluster.worker("worker-0")["grpc_addr"],
        "{serving}"
    );
    let listening = planner
        .iter()
        .find(|e| message(e) == "listening")
        .unwrap_or_else(|| panic!("the planner did not say where it listens: {planner:?}"));
    assert_eq!(
        listening["spans"],
        serde_json::json!([{"name": "planner"}]),
        "{listening}"
    );
    assert_eq!(listening["fields"]["addr"], cluster.planner(), "{listening}");
}

/// Kills process `pid` of the cluster with SIGKILL, waits until it is gone, and runs `faasflow
/// up` on the cluster's directory, which starts it again; reads the updated record. Returns
/// what `up` said (standard output, standard error).
fn kill_and_up(c: &mut Cluster, pid: u32) -> (String, String) {
    kill_dead(pid);
    up_again(c)
}

/// Kills `pid` with SIGKILL and waits until it is gone.
fn kill_dead(pid: u32) {
    kill9(pid);
    let end = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(Instant::now() < end, "pid {pid} outlived SIGKILL");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `faasflow up` on the cluster's directory; reads the updated record.
fn up_again(c: &mut Cluster) -> (String, String) {
    let out = faasflow(&["up", "--dir", &c.dir()]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    c.record =
        serde_json::from_str(&std::fs::read_to_string(c.dir.join("cluster.json")).expect("record")).expect("JSON");
    (text(&out.stdout), text(&out.stderr))
}

/// A planner killed with SIGKILL mid-life and started again by `faasflow up` (on its address,
/// from its state directory) serves what was deployed at once: no deploy again, no version
/// installed again on the workers, and no invocation id handed out twice.
#[test]
fn a_planner_killed_and_started_again_by_up_serves_what_was_deployed() {
    let mut c = Cluster::up("planner-kept", 2, &["--slots", "2", "--heartbeat-ms", "200"]);
    let wf = c.write("kept.yaml", &pair_workflow("kept", "1ms", false));
    c.deploy(&wf);
    let before = c.invoke_json("kept", "{}");
    assert_eq!(before.status, "ok", "{:?}", before.error);
    let planner = c.record["planner"]["pid"].as_u64().expect("pid") as u32;
    let (stdout, stderr) = kill_and_up(&mut c, planner);
    assert!(
        stderr.contains("note: planner of the cluster in") && stdout.contains("started again in"),
        "{stdout}\n{stderr}"
    );
    let again = c.record["planner"]["pid"].as_u64().expect("pid") as u32;
    assert_ne!(again, planner);
    assert!(alive(again));
    // At once, without a deploy.
    let after = c.invoke_json("kept", "{}");
    assert_eq!(after.status, "ok", "{:?}", after.error);
    assert!(
        after.invocation > before.invocation,
        "ids go on: {} then {}",
        before.invocation,
        after.invocation
    );
    let log = std::fs::read_to_string(c.dir.join("logs").join("planner.log")).expect("the planner's log");
    assert!(log.contains("state restored"), "{log}");
    assert!(
        !log.contains("installed a version again"),
        "a version was installed again:\n{log}"
    );
    // A worker too, on the addresses it had.
    let worker = c.worker("worker-1").clone();
    let pid = worker["pid"].as_u64().expect("pid") as u32;
    kill_and_up(&mut c, pid);
    let back = c.worker("worker-1").clone();
    assert_ne!(back["pid"], worker["pid"]);
    assert_eq!(
        (&back["grpc_addr"], &back["quic_addr"]),
        (&worker["grpc_addr"], &worker["quic_addr"])
    );
    let last = c.invoke_json("kept", "{}");
    assert_eq!(last.status, "ok", "{:?}", last.error);
    // `status`: the cluster as its heartbeats say it is.
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let said = text(&c.run(&["status"]).stdout);
        let workers: Vec<&str> = said.lines().filter(|l| l.starts_with("worker-")).collect();
        if said.starts_with(&format!("planner at {}: 2 of 2 workers live", c.planner()))
            && said.contains("1 workflow(s) deployed (1 version(s)); 0 execution(s) running")
            && workers.len() == 2
            && workers
                .iter()
                .all(|l| l.contains(" live ") && l.ends_with(" of 64.0 MiB"))
        {
            break;
        }
        assert!(Instant::now() < end, "{said}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // `up` with every process running has nothing to start.
    let out = faasflow(&["up", "--dir", &c.dir()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("nothing to start again"),
        "{}",
        text(&out.stderr)
    );
}

/// `undeploy` refuses new invocations at once, waits for the one in flight, then removes
/// every version from the workers and the planner's state (a restart does not bring it back);
/// a deploy under the name later goes on past its version numbers.
#[test]
fn undeploy_drains_then_removes_a_workflow_for_good() {
    let mut c = Cluster::up("undeploy", 2, &["--slots", "2", "--heartbeat-ms", "200"]);
    let slow = c.write("slow.yaml", SLOW_V1);
    c.deploy(&slow);
    c.deploy(&slow);
    let other = c.write("other.yaml", &pair_workflow("other", "1ms", false));
    c.deploy(&other);
    let out = c.run(&["workflows"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    assert!(listed.starts_with("WORKFLOW"), "{listed}");
    for expected in ["slow      2", "other     1"] {
        assert!(listed.contains(expected), "{expected:?} in\n{listed}");
    }
    // One invocation of `slow` (3 s) in flight while it is undeployed.
    let mut running = Command::new(env!("CARGO_BIN_EXE_faasflow"))
        .args(["invoke", "slow", "--input", r#"{"x": 1}"#, "--dir", &c.dir()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("invoke runs");
    let rt = rt();
    let end = Instant::now() + Duration::from_secs(20);
    while !["worker-0", "worker-1"].iter().any(|w| {
        let s = rt
            .block_on(c.daemon_client(&rt, w).status(pb::StatusRequest {}))
            .expect("status")
            .into_inner();
        s.plans.iter().any(|p| p.in_flight > 0)
    }) {
        assert!(Instant::now() < end, "the invocation never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let undeploy = Command::new(env!("CARGO_BIN_EXE_faasflow"))
        .args(["undeploy", "slow", "--dir", &c.dir()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("undeploy runs");
    // While it drains, it says so, and refuses new invocations at once.
    let end = Instant::now() + Duration::from_secs(5);
    while !text(&c.run(&["workflows"]).stdout).contains("slow (undeploying)") {
        assert!(Instant::now() < end, "never undeploying");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = c.run(&["invoke", "slow", "--input", r#"{"x": 2}"#]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("workflow `slow` is being undeployed: it takes no new invocations"),
        "{}",
        text(&out.stderr)
    );
    let out = undeploy.wait_with_output().expect("undeploy ends");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.starts_with("undeployed `slow`: version 2 dropped from ")
            && said.contains("(after 1 invocation(s) in flight ended)"),
        "{said}"
    );
    let finished = running.wait().expect("the invocation ends");
    assert!(finished.success(), "the invocation in flight was cut short");
    // Gone from the planner and the daemons.
    let out = c.run(&["invoke", "slow", "--input", r#"{"x": 3}"#]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("workflow `slow` is not deployed; deployed workflows: other"),
        "{}",
        text(&out.stderr)
    );
    for w in ["worker-0", "worker-1"] {
        let status = rt
            .block_on(c.daemon_client(&rt, w).status(pb::StatusRequest {}))
            .expect("status")
            .into_inner();
        assert!(
            status.plans.iter().all(|p| p.workflow != "slow"),
            "{w} holds {:?}",
            status.plans
        );
    }
    // A restart of the planner does not bring it back; a new deploy goes on past version 2.
    let planner = c.record["planner"]["pid"].as_u64().expect("pid") as u32;
    kill_and_up(&mut c, planner);
    let listed = text(&c.run(&["workflows"]).stdout);
    assert!(!listed.contains("slow"), "{listed}");
    assert!(c.deploy(&slow).contains("version 3"), "numbering goes on");
    let out = c.run(&["undeploy", "nothing"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("workflow `nothing` is not deployed; deployed workflows: other, slow"),
        "{}",
        text(&out.stderr)
    );
}

/// The `describe --json` view of execution `id`.
fn describe(c: &Cluster, id: u64) -> serde_json::Value {
    let out = c.run(&["describe", &id.to_string(), "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// `start` answers with an id while the workflow runs; `describe` finds it running, then
/// ended with its output. A retried start under the same idempotency key answers the same
/// execution, another request under it is refused. After a planner `kill -9` and `up`, ended
/// executions are still found, one that ran is `lost`, and ids go on.
#[test]
fn executions_start_at_once_and_are_found_again_after_a_planner_restart() {
    let mut c = Cluster::up("executions", 2, &["--slots", "2", "--heartbeat-ms", "200"]);
    let slow = c.write("slow.yaml", SLOW_V1);
    c.deploy(&slow);
    let start = |c: &Cluster, input: &str, key: &str| {
        let out = c.run(&["start", "slow", "--input", input, "--idempotency-key", key]);
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let (code, said, _) = start(&c, r#"{"x": 7}"#, "k1");
    assert_eq!(code, Some(0));
    let id: u64 = said.trim().parse().expect("an execution id");
    assert_eq!(
        describe(&c, id)["status"],
        "running",
        "it answered before the 3 s workflow ended"
    );
    let (code, said, note) = start(&c, r#"{"x": 7}"#, "k1");
    assert_eq!((code, said.trim()), (Some(0), id.to_string().as_str()));
    assert!(note.contains(&format!("already started execution {id}")), "{note}");
    let (code, _, refused) = start(&c, r#"{"x": 8}"#, "k1");
    assert_eq!(code, Some(2));
    assert!(
        refused.contains(&format!(
            "idempotency key `k1` started execution {id} of workflow `slow` with another request"
        )),
        "{refused}"
    );
    let end = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let d = describe(&c, id);
        if d["status"] != "running" {
            break d;
        }
        assert!(Instant::now() < end, "execution {id} never ended");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(!done["output"]["v1"].is_null(), "its output: {done}");
    assert!(done["report"]["functions"].is_array(), "{done}");
    // One more runs when the planner is killed, and ends while there is none: its entry
    // daemon holds its report until the planner, started again, takes it and records it.
    let (_, said, _) = start(&c, r#"{"x": 9}"#, "k2");
    let across: u64 = said.trim().parse().expect("an execution id");
    let planner = c.record["planner"]["pid"].as_u64().expect("pid") as u32;
    kill_dead(planner);
    std::thread::sleep(Duration::from_millis(3500));
    up_again(&mut c);
    assert_eq!(describe(&c, id)["status"], "succeeded", "kept across the restart");
    let end = Instant::now() + Duration::from_secs(15);
    let recorded = loop {
        let d = describe(&c, across);
        if d["status"] != "running" {
            break d;
        }
        assert!(
            Instant::now() < end,
            "never recorded: {d}
{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(recorded["status"], "succeeded", "{recorded}");
    assert!(!recorded["output"]["v1"].is_null(), "{recorded}");
    assert!(recorded["report"]["functions"].is_array(), "{recorded}");
    // One whose entry daemon is killed with the planner is lost: nobody holds its report.
    let (_, said, _) = start(&c, r#"{"x": 10}"#, "k3");
    let gone: u64 = said.trim().parse().expect("an execution id");
    let rt = rt();
    let plan = c.newest_plan(&rt, "slow");
    let entry = plan_workers(&plan)["nap"].clone();
    c.wait_in_flight(&rt, &entry);
    let planner = c.record["planner"]["pid"].as_u64().expect("pid") as u32;
    kill_dead(planner);
    kill_dead(c.worker(&entry)["pid"].as_u64().expect("pid") as u32);
    up_again(&mut c);
    let end = Instant::now() + Duration::from_secs(20);
    let lost = loop {
        let d = describe(&c, gone);
        if d["status"] != "running" {
            break d;
        }
        assert!(Instant::now() < end, "never given up: {d}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(lost["status"], "lost", "{lost}");
    assert!(
        lost["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no worker has spoken of it"),
        "{lost}"
    );
    let listed = text(&c.run(&["executions", "--status", "lost"]).stdout);
    assert!(
        listed.lines().any(|l| l
            .split_whitespace()
            .take(3)
            .eq([gone.to_string().as_str(), "slow", "lost"])),
        "{listed}"
    );
    let (_, said, _) = start(&c, r#"{"x": 11}"#, "k4");
    let next: u64 = said.trim().parse().expect("an execution id");
    assert!(next > gone, "ids go on: {next} after {gone}");
    let out = c.run(&["describe", "999999"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("there is no execution 999999"),
        "{}",
        text(&out.stderr)
    );
}

/// Two 60 s naps on two workers (two slots each), both reading a 1 MiB object.
const LONG: &str = "name: long
inputs:
  x: json
functions:
  make:
    runtime: 1ms
    outputs:
      blob: {size: 1MiB}
  nap:
    runtime: 60s
    outputs:
      out: {type: json, size: 16B}
steps:
  - task: make
    inputs: {x: input.x}
  - parallel:
      - - task: left
          function: nap
          inputs: {in: make.blob}
      - - task: right
          function: nap
          inputs: {in: make.blob}
";

/// `cancel` ends a running execution on every worker at once: its naps' instances stop, its
/// objects are freed, it is recorded `cancelled`, and a restart keeps it so; cancelling it
/// again or one that does not exist is a clear error.
#[test]
fn cancel_stops_an_execution_on_every_worker_and_frees_what_it_held() {
    let c = Cluster::up("cancel", 2, &["--slots", "2", "--heartbeat-ms", "200"]);
    let long = c.write("long.yaml", LONG);
    c.deploy(&long);
    let rt = rt();
    let plan = c.newest_plan(&rt, "long");
    let placed = plan_workers(&plan);
    assert_ne!(placed["left"], placed["right"], "one nap per worker: {placed:?}");
    let out = c.run(&["start", "long", "--input", r#"{"x": 1}"#]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id: u64 = text(&out.stdout).trim().parse().expect("an execution id");
    // Both naps run (each worker holds the invocation and the blob).
    let status = |w: &str| {
        rt.block_on(c.daemon_client(&rt, w).status(pb::StatusRequest {}))
            .expect("status")
            .into_inner()
    };
    let end = Instant::now() + Duration::from_secs(30);
    while !["worker-0", "worker-1"].iter().all(|w| {
        let s = status(w);
        s.arena_bytes_used > 0 && s.plans.iter().any(|p| p.in_flight > 0)
    }) {
        assert!(Instant::now() < end, "the naps never both ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    let daemons: Vec<u32> = ["worker-0", "worker-1"]
        .iter()
        .map(|w| c.worker(w)["pid"].as_u64().expect("pid") as u32)
        .collect();
    let napping = children_of(&daemons);
    assert!(napping.len() >= 2, "an instance on each worker: {napping:?}");
    let asked = Instant::now();
    let out = c.run(&["cancel", &id.to_string(), "--reason", "not needed any more"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), format!("execution {id} cancelled"));
    assert!(asked.elapsed() < Duration::from_secs(20), "it waited for the naps");
    let d = describe(&c, id);
    assert_eq!(d["status"], "cancelled", "{d}");
    assert_eq!(d["error"], "cancelled: not needed any more", "{d}");
    // Every worker lets go: no invocation, nothing in the arena, the naps' instances stopped
    // (the pools start new ones).
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let now: Vec<_> = ["worker-0", "worker-1"].iter().map(|w| status(w)).collect();
        let left: Vec<u32> = napping.iter().copied().filter(|p| alive(*p)).collect();
        if now
            .iter()
            .all(|s| s.arena_bytes_used == 0 && s.plans.iter().all(|p| p.in_flight == 0))
            && left.is_empty()
        {
            break;
        }
        assert!(
            Instant::now() < end,
            "still held after the cancel: {now:?}; instances {left:?} of {napping:?} run on\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The workflow serves on.
    let quick = c.write("quick.yaml", &pair_workflow("quick", "1ms", false));
    c.deploy(&quick);
    assert_eq!(c.invoke_json("quick", "{}").status, "ok");
    // Nothing to cancel any more, or at all.
    let again = c.run(&["cancel", &id.to_string()]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again.stderr).contains(&format!(
            "execution {id} has already ended (cancelled): there is nothing to cancel"
        )),
        "{}",
        text(&again.stderr)
    );
    let unknown = c.run(&["cancel", "424242"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown.stderr).contains("there is no execution 424242"),
        "{}",
        text(&unknown.stderr)
    );
}

/// `workflows NAME` shows each version's placement, edges by tier and source; the source is
/// kept across a planner restart.
#[test]
fn a_workflow_is_described_with_its_placement_and_source_even_after_a_restart() {
    let mut c = Cluster::up("describe-wf", 2, &["--slots", "2", "--heartbeat-ms", "200"]);
    let long = c.write("long.yaml", LONG);
    c.deploy(&long);
    let out = c.run(&["workflows", "long"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.starts_with("workflow `long`: 1 version(s) installed, last given 1"),
        "{said}"
    );
    assert!(said.contains("version 1 from "), "{said}");
    assert!(said.contains("long.yaml: workersp mode"), "{said}");
    for task in ["make", "left", "right"] {
        assert!(
            said.lines()
                .any(|l| l.trim_start().starts_with(task) && l.contains("worker-")),
            "{task} in\n{said}"
        );
    }
    assert!(said.contains(" peer"), "an edge crosses workers: {said}");
    let planner = c.record["planner"]["pid"].as_u64().expect("pid") as u32;
    kill_and_up(&mut c, planner);
    let source = c.run(&["workflows", "long", "--source"]);
    assert!(source.status.success(), "{}", text(&source.stderr));
    assert_eq!(text(&source.stdout), LONG);
    let none = c.run(&["workflows", "long", "--version", "7"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(
        text(&none.stderr).contains("workflow `long` has no installed version 7 (installed: 1)"),
        "{}",
        text(&none.stderr)
    );
    let unknown = c.run(&["workflows", "nothing"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown.stderr).contains("workflow `nothing` is not deployed"),
        "{}",
        text(&unknown.stderr)
    );
}
