//! MasterSP and WorkerSP with remote storage only next to WorkerSP on one cluster: a `PlannerService` and three `Daemon`s with
//! their `DaemonService`s in this process, on real loopback sockets, with QUIC peers and a
//! private `redis-server` per test. The same workflows run in both modes and must give the
//! same output; MasterSP's functions run on the workers its plan chose, the planner handles
//! two messages per executed function, and no Redis key outlives an invocation.

mod support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use faasflow_control::service::ServiceConfig;
use faasflow_core::report::Report;
use faasflow_daemon::config::DaemonConfig;
use faasflow_daemon::daemon::Daemon;
use faasflow_daemon::io::tls::ClusterCa;
use faasflow_daemon::pool::PackCommand;
use faasflow_proto::v1 as pb;
use faasflow_proto::v1::planner_client::PlannerClient;
use faasflow_rpc::auth::AuthChannel;
use serde_json::json;
use support::Redis;

/// A guard against a hang, not a speed target: the test of every workflow in every mode takes
/// 40–60 s alone under a full parallel test run on 2 cores.
const LIMIT: Duration = Duration::from_secs(180);

fn sibling(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_faasflow")).with_file_name(name);
    assert!(p.is_file(), "{} is missing: build every binary first", p.display());
    p
}

struct TestCluster {
    planner: PlannerClient<AuthChannel>,
    _daemons: Vec<Arc<Daemon>>,
}

/// A planner using `planner_redis` and three daemons (`w0` … `w2`, QUIC peers) using
/// `daemon_redis`, synthetic bodies at a tenth of their declared runtime and size.
async fn cluster(planner_redis: Option<String>, daemon_redis: Option<String>) -> TestCluster {
    let config = ServiceConfig {
        // No test here loses a worker on purpose: 1.5 s of silence before a worker counts as
        // lost, so that another 3-worker test sharing the 2 cores cannot starve one that long.
        heartbeat_interval: Duration::from_millis(500),
        redis: planner_redis,
        ..ServiceConfig::default()
    };
    let ca = ClusterCa::generate("test").expect("ca");
    let daemons = (0..3)
        .map(|i| {
            let name = format!("w{i}");
            let mut c = DaemonConfig::new(PackCommand {
                program: env!("CARGO_BIN_EXE_faasflow").into(),
                args: vec!["__pack".into(), "synthetic".into()],
            });
            c.packs
                .insert("testkit".into(), PackCommand::program(sibling("faasflow-pack-testkit")));
            c.packs
                .insert("example".into(), PackCommand::program(sibling("faasflow-pack-example")));
            c.arena_bytes = 128 << 20;
            c.runtime_scale = 0.1;
            c.data_scale = 0.1;
            c.redis = daemon_redis.clone();
            c.peer = Some(support::peer_settings(&ca, &name));
            c.name = name;
            c
        })
        .collect();
    let (planner, daemons) = support::services(config, daemons, 64).await;
    TestCluster {
        planner,
        _daemons: daemons,
    }
}

async fn deploy(
    planner: &mut PlannerClient<AuthChannel>,
    source: &str,
    file: &str,
    mode: pb::Mode,
) -> Result<pb::DeployResponse, tonic::Status> {
    let default_name = Path::new(file)
        .parent()
        .and_then(|d| d.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("workflow")
        .to_owned();
    planner
        .deploy(pb::DeployRequest {
            source: source.into(),
            file_name: file.into(),
            mode: mode as i32,
            allow_overcommit: true,
            default_name,
            code_dir: String::new(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn invoke(
    planner: &mut PlannerClient<AuthChannel>,
    name: &str,
    version: u64,
    input: &serde_json::Value,
) -> Report {
    let r = planner
        .invoke(pb::InvokeRequest {
            workflow: name.into(),
            version: Some(version),
            input_json: serde_json::to_vec(input).unwrap(),
            deadline_ms: 50_000,
            fill_staged_scale: None,
            files: Default::default(),
        })
        .await
        .expect("invoke")
        .into_inner();
    assert!(!r.report_json.is_empty(), "no report: {}", r.error);
    serde_json::from_slice(&r.report_json).expect("a report")
}

async fn messages(planner: &mut PlannerClient<AuthChannel>) -> (u64, u64) {
    let m = planner
        .metrics(pb::MetricsRequest {})
        .await
        .expect("metrics")
        .into_inner();
    (m.invocation_messages_sent, m.invocation_messages_received)
}

/// Every function that ran did so on the worker the plan put it on.
fn check_placement(plan: &pb::Plan, r: &Report) {
    let (wf, plan, cluster) = faasflow_rpc::plan_from_proto(plan).expect("a valid plan");
    for f in &r.functions {
        let n = wf
            .graph
            .node_indices()
            .find(|n| wf.graph[*n].name == f.name)
            .unwrap_or_else(|| panic!("`{}` is no task of the workflow", f.name));
        let planned = &cluster.workers[plan.worker_of(n) as usize].name;
        assert_eq!(
            &f.worker, planned,
            "`{}` ran on {}, planned on {planned}",
            f.name, f.worker
        );
    }
}

/// Deploys `source` in `mode` and invokes it once: the deploy, the (successful) report, and
/// the planner's messages out and in during the invocation.
async fn run_once(
    c: &mut TestCluster,
    source: &str,
    file: &str,
    mode: pb::Mode,
    input: &serde_json::Value,
) -> (pb::DeployResponse, Report, (u64, u64)) {
    let d = deploy(&mut c.planner, source, file, mode)
        .await
        .unwrap_or_else(|e| panic!("{file}: {mode:?} deploy: {e}"));
    let before = messages(&mut c.planner).await;
    let r = invoke(&mut c.planner, &d.workflow, d.version, input).await;
    assert_eq!(r.status, "ok", "{file} ({mode:?}): {:?}", r.error);
    let after = messages(&mut c.planner).await;
    (d, r, (after.0 - before.0, after.1 - before.1))
}

/// Runs `source` once in each mode (WorkerSP, MasterSP, WorkerSP with remote storage only)
/// on the same cluster; checks outputs, placement, message counts, tiers and that Redis is
/// empty after each.
async fn same_in_every_mode(
    c: &mut TestCluster,
    redis: &Redis,
    source: &str,
    file: &str,
    input: &serde_json::Value,
) -> usize {
    let (_, rw, sent) = run_once(c, source, file, pb::Mode::WorkerSp, input).await;
    assert_eq!(sent, (1, 1), "{file}: WorkerSP messages");

    let (m, rm, sent) = run_once(c, source, file, pb::Mode::MasterSp, input).await;
    let ran = rm.functions.iter().filter(|f| !f.skipped).count() as u64;
    assert!(ran > 0, "{file}: nothing ran");
    assert_eq!(
        sent,
        (ran, ran),
        "{file}: MasterSP handles one message out and one in per executed function"
    );
    assert_eq!(rm.output, rw.output, "{file}: MasterSP and WorkerSP outputs differ");
    check_placement(m.plan.as_ref().expect("a plan"), &rm);

    // Worker-side triggering with every edge through Redis: the daemons still trigger one
    // another (one message in, one out), but no byte moves outside the remote tier, even
    // between functions on one worker. (A foreach element is copied for its call out of the
    // list the daemon read: its `element` edge moves nothing between functions; the list came
    // through Redis, the edges to the foreach say.)
    let (r, rr, sent) = run_once(c, source, file, pb::Mode::WorkerSpRemote, input).await;
    assert_eq!(sent, (1, 1), "{file}: WorkerSP-remote messages");
    assert_eq!(
        rr.output, rw.output,
        "{file}: WorkerSP-remote and WorkerSP outputs differ"
    );
    check_placement(r.plan.as_ref().expect("a plan"), &rr);
    let fn_edges: Vec<_> = rr
        .edges
        .iter()
        .filter(|e| e.bytes > 0 && !e.from.starts_with("input.") && e.tier != "element")
        .collect();
    assert!(
        fn_edges.iter().all(|e| e.tier == "remote"),
        "{file}: WorkerSP-remote moved data between functions outside Redis: {fn_edges:?}"
    );
    // Storing an output in Redis is its producer's data wait (its readers wait for it).
    for e in &fn_edges {
        assert!(
            rr.functions.iter().any(|f| f.name == e.from && f.data_us > 0.0),
            "{file}: `{}` stored {} bytes in Redis without a data wait: {:?}",
            e.from,
            e.bytes,
            rr.functions
        );
    }
    let on = |name: &str| rr.functions.iter().find(|f| f.name == name).map(|f| f.worker.clone());
    let same_worker = fn_edges.iter().filter(|e| on(&e.from) == on(&e.to)).count();
    // Empty objects are not fetched (there are no bytes to move); every other one comes
    // from Redis (foreach elements are copied out of their list, as above).
    assert!(
        rm.edges
            .iter()
            .filter(|e| e.bytes > 0 && e.tier != "element")
            .all(|e| e.tier == "remote"),
        "{file}: MasterSP moved data outside Redis: {:?}",
        rm.edges
    );
    // The critical path's own time and data waits lie within the invocation (each measured
    // on the wall clock of its step): they never add up to more than its end-to-end time.
    for (mode, r) in [("WorkerSP", &rw), ("MasterSP", &rm), ("WorkerSP-remote", &rr)] {
        // Each function's own time lies within its window (send to end seen).
        support::assert_exec_within_windows(r, &format!("{file} ({mode})"));
        assert!(
            r.critical_path_us + r.critical_data_us <= r.e2e_us + 100.0,
            "{file} ({mode}): critical path {} µs + data waits {} µs > end-to-end {} µs",
            r.critical_path_us,
            r.critical_data_us,
            r.e2e_us
        );
    }
    assert_eq!(redis.dbsize(), 0, "{file}: Redis keys left after the invocations");
    same_worker
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_faasflow_workflow_and_the_example_give_the_same_output_in_every_mode() {
    tokio::time::timeout(LIMIT, async {
        let redis = Redis::start();
        let mut c = cluster(Some(redis.url()), Some(redis.url())).await;
        let files = support::faasflow_files();
        assert!(files.len() >= 18, "{files:?}");
        let mut seen = HashSet::new();
        let mut same_worker = 0;
        for file in files {
            let source = std::fs::read_to_string(&file).unwrap();
            let wf = faasflow_planner::load::load_file(&file).expect("loads").workflow;
            // Both forms of one benchmark share its directory's name: deploy each once.
            if !seen.insert(wf.name.clone()) {
                continue;
            }
            let mut input = serde_json::Map::new();
            for i in &wf.inputs {
                input.insert(i.name.clone(), json!("x".repeat((i.size / 100).min(4096) as usize)));
            }
            same_worker += same_in_every_mode(
                &mut c,
                &redis,
                &source,
                &file.to_string_lossy(),
                &serde_json::Value::Object(input),
            )
            .await;
        }
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packs/example/wordcount.yaml");
        let source = std::fs::read_to_string(&example).unwrap();
        same_worker += same_in_every_mode(
            &mut c,
            &redis,
            &source,
            &example.to_string_lossy(),
            &json!({"text": "the cat and the dog and the bird", "parts": 3}),
        )
        .await;
        // WorkerSP keeps these in memory: in WorkerSP-remote they went through Redis too.
        assert!(
            same_worker > 10,
            "only {same_worker} same-worker edges went through Redis"
        );
    })
    .await
    .expect("the test ran past its time limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_mastersp_invocation_names_the_step_and_leaves_no_key() {
    tokio::time::timeout(LIMIT, async {
        let redis = Redis::start();
        let mut c = cluster(Some(redis.url()), Some(redis.url())).await;
        let d = deploy(&mut c.planner, support::FAILING, "failing.yaml", pb::Mode::MasterSp)
            .await
            .expect("deploy");
        for text in ["x", "y"] {
            let before = messages(&mut c.planner).await;
            let r = invoke(&mut c.planner, "failing", d.version, &json!({ "text": text })).await;
            assert_eq!(r.status, "failed");
            let e = r.error.clone().unwrap();
            assert!(e.contains("step `b`"), "{e}");
            let ran: Vec<&str> = r
                .functions
                .iter()
                .filter(|f| !f.skipped)
                .map(|f| f.name.as_str())
                .collect();
            assert_eq!(ran, ["a", "b"], "{r:?}");
            assert!(r.functions.iter().any(|f| f.name == "c" && f.skipped), "{r:?}");
            let after = messages(&mut c.planner).await;
            assert_eq!((after.0 - before.0, after.1 - before.1), (2, 2));
            check_placement(d.plan.as_ref().unwrap(), &r);
            assert_eq!(redis.dbsize(), 0, "Redis keys left after a failed invocation");
        }
    })
    .await
    .expect("the test ran past its time limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_caught_step_is_rescued_in_every_mode() {
    tokio::time::timeout(LIMIT, async {
        let redis = Redis::start();
        let mut c = cluster(Some(redis.url()), Some(redis.url())).await;
        for mode in [pb::Mode::WorkerSp, pb::Mode::MasterSp, pb::Mode::WorkerSpRemote] {
            let d = deploy(&mut c.planner, support::RESCUED, "rescued.yaml", mode)
                .await
                .expect("deploy");
            let r = invoke(&mut c.planner, "rescued", d.version, &json!({"text": "x"})).await;
            support::check_rescued(&r);
            check_placement(d.plan.as_ref().unwrap(), &r);
            assert_eq!(redis.dbsize(), 0, "{mode:?}: Redis keys left");
        }
    })
    .await
    .expect("the test ran past its time limit");
}

const CHAIN: &str = "name: chain
inputs:
  x: json
functions:
  a: {runtime: 1ms, outputs: {out: {type: json, size: 16B}}}
  b: {runtime: 1ms, outputs: {out: {type: json, size: 16B}}}
steps:
  - task: a
    inputs: {x: input.x}
  - task: b
    inputs: {x: a.out}
output:
  b: b.out
";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mastersp_without_redis_is_refused_clearly_and_workersp_still_runs() {
    tokio::time::timeout(LIMIT, async {
        // No remote tier configured at all.
        let mut c = cluster(None, None).await;
        let e = deploy(&mut c.planner, CHAIN, "chain.yaml", pb::Mode::MasterSp)
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        assert_eq!(
            e.message(),
            "workflow `chain` cannot run in MasterSP mode: the planner has no remote tier (Redis), which MasterSP \
             passes every object through; start the planner with --redis redis://HOST:PORT (`faasflow up` does when \
             redis-server is installed), or deploy in WorkerSP mode"
        );
        // Worker-side triggering with remote storage only needs the daemons' Redis.
        let e = deploy(&mut c.planner, CHAIN, "chain.yaml", pb::Mode::WorkerSpRemote)
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        assert!(
            e.message()
                .starts_with("chain.yaml: workflow `chain` version 1 was not deployed: ")
                && e.message()
                    .contains("is planned `workersp-remote` (every edge through remote storage), but worker `w")
                && e.message()
                    .contains("has no remote tier: start its daemon with --redis URL"),
            "{}",
            e.message()
        );
        let d = deploy(&mut c.planner, CHAIN, "chain.yaml", pb::Mode::WorkerSp)
            .await
            .expect("WorkerSP deploys");
        let r = invoke(&mut c.planner, "chain", d.version, &json!({"x": 1})).await;
        assert_eq!(r.status, "ok", "{:?}", r.error);

        // A remote tier configured where nothing answers.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("redis://127.0.0.1:{port}");
        let mut c = cluster(Some(url.clone()), Some(url.clone())).await;
        let e = deploy(&mut c.planner, CHAIN, "chain.yaml", pb::Mode::MasterSp)
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable);
        assert!(
            e.message().starts_with(&format!(
                "workflow `chain` cannot run in MasterSP mode: the planner cannot reach Redis at {url} ("
            )) && e
                .message()
                .ends_with("start redis-server there, or deploy in WorkerSP mode"),
            "{}",
            e.message()
        );
        let d = deploy(&mut c.planner, CHAIN, "chain.yaml", pb::Mode::WorkerSp)
            .await
            .expect("WorkerSP deploys");
        let r = invoke(&mut c.planner, "chain", d.version, &json!({"x": 2})).await;
        assert_eq!(r.status, "ok", "{:?}", r.error);
    })
    .await
    .expect("the test ran past its time limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_going_away_fails_a_mastersp_invocation_with_a_clear_error() {
    tokio::time::timeout(LIMIT, async {
        let redis = Redis::start();
        let mut c = cluster(Some(redis.url()), Some(redis.url())).await;
        let d = deploy(&mut c.planner, CHAIN, "chain.yaml", pb::Mode::MasterSp)
            .await
            .expect("deploy");
        let r = invoke(&mut c.planner, "chain", d.version, &json!({"x": 1})).await;
        assert_eq!(r.status, "ok", "{:?}", r.error);
        assert_eq!(r.output, json!({"b": r.output["b"].clone()}));
        drop(redis);
        let r = invoke(&mut c.planner, "chain", d.version, &json!({"x": 1})).await;
        assert_eq!(r.status, "failed");
        let e = r.error.unwrap();
        assert!(e.contains("Redis") && e.contains("step `a`"), "{e}");
    })
    .await
    .expect("the test ran past its time limit");
}

const STAGED: &str = "name: staged
inputs:
  big: bytes
functions:
  len: {pack: testkit, outputs: {out: json}}
steps:
  - task: a
    function: len
    inputs: {in: input.big}
  - task: b
    function: len
    inputs: {in: input.big}
output:
  a: a.out
  b: b.out
";

/// A large input goes through Redis in MasterSP (a step reads it as an object of the remote
/// tier, `input.big → a`); WorkerSP gives the same output (how it travels there is in
/// `workers.rs`: this plan may put both steps on one worker); no key is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_inputs_travel_as_objects_in_both_modes() {
    tokio::time::timeout(LIMIT, async {
        let redis = Redis::start();
        let mut c = cluster(Some(redis.url()), Some(redis.url())).await;
        let big = "z".repeat(200_000);
        let mut outputs = Vec::new();
        for mode in [pb::Mode::MasterSp, pb::Mode::WorkerSp] {
            let d = deploy(&mut c.planner, STAGED, "staged.yaml", mode)
                .await
                .expect("deploy");
            let r = invoke(&mut c.planner, "staged", d.version, &json!({ "big": big })).await;
            assert_eq!(r.status, "ok", "{mode:?}: {:?}", r.error);
            if mode == pb::Mode::MasterSp {
                for t in ["a", "b"] {
                    let e = r
                        .edges
                        .iter()
                        .find(|e| e.from == "input.big" && e.to == t)
                        .unwrap_or_else(|| panic!("no edge input.big → {t}: {:?}", r.edges));
                    assert_eq!((e.bytes, e.tier.as_str()), (200_000, "remote"));
                }
            }
            assert_eq!(redis.dbsize(), 0, "{mode:?}: Redis keys left");
            outputs.push(r.output);
        }
        assert_eq!(outputs[0], json!({"a": 200_000, "b": 200_000}));
        assert_eq!(outputs[0], outputs[1]);
    })
    .await
    .expect("the test ran past its time limit");
}
