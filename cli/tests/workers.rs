//! Several workers, with real processes and real sockets: three daemons in this process, each
//! with its own arena, pools and QUIC endpoint (certificates from a cluster CA made here), run
//! plans that spread the tasks over them round robin. Every check ends with every daemon
//! holding no arena byte, object, call or invocation.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use faasflow_core::dag::Workflow;
use faasflow_core::plan::{Mode, Plan, Tier};
use faasflow_core::report::Report;
use faasflow_core::{ClusterView, PlannerConfig};
use faasflow_daemon::api::{ExecInput, Execute, Executed, Invoke, RemoteObject};
use faasflow_daemon::config::{DaemonConfig, PeerSettings};
use faasflow_daemon::daemon::Daemon;
use faasflow_daemon::io::peer::PeerConfig;
use faasflow_daemon::io::tls::ClusterCa;
use faasflow_daemon::pool::PackCommand;
use faasflow_planner::load::{load_file, load_str};
use faasflow_planner::partition::partition;
use serde_json::json;

mod support;

fn testkit() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_faasflow")).with_file_name("faasflow-pack-testkit");
    assert!(p.is_file(), "{} is missing: build every binary first", p.display());
    p
}

struct Cluster {
    daemons: Vec<Option<Daemon>>,
    view: ClusterView,
    peers: HashMap<String, SocketAddr>,
    next_invocation: u64,
}

impl Cluster {
    fn new(n: usize) -> Cluster {
        Cluster::scaled(n, 1.0, None)
    }

    /// Synthetic bodies run `scale` of their declared runtime and write `scale` of their
    /// declared bytes.
    fn scaled(n: usize, scale: f64, redis: Option<String>) -> Cluster {
        Cluster::build(n, |c| {
            c.runtime_scale = scale;
            c.data_scale = scale;
            c.redis = redis.clone();
        })
    }

    /// `n` daemons, each configured by `f` after the defaults.
    fn build(n: usize, f: impl Fn(&mut DaemonConfig)) -> Cluster {
        let ca = ClusterCa::generate("test").unwrap();
        let view = ClusterView::uniform(n, 64);
        let mut daemons = Vec::new();
        let mut peers = HashMap::new();
        for w in &view.workers {
            let mut c = DaemonConfig::new(PackCommand {
                program: env!("CARGO_BIN_EXE_faasflow").into(),
                args: vec!["__pack".into(), "synthetic".into()],
            });
            c.packs.insert("testkit".into(), PackCommand::program(testkit()));
            // FaaSFlow's workflows at full data scale need room for their largest objects.
            c.arena_bytes = 256 << 20;
            c.name = w.name.clone();
            c.peer = Some(PeerSettings {
                identity: ca.issue(&w.name).unwrap(),
                trust: ca.trust(),
                bind: "127.0.0.1:0".parse().unwrap(),
                transport: PeerConfig {
                    keep_alive: Duration::from_millis(300),
                    idle_timeout: Duration::from_secs(2),
                    ..PeerConfig::default()
                },
            });
            f(&mut c);
            let d = Daemon::start(c).expect("daemon starts");
            peers.insert(w.name.clone(), d.peer_addr().expect("a peer address"));
            daemons.push(Some(d));
        }
        Cluster {
            daemons,
            view,
            peers,
            next_invocation: 1,
        }
    }

    fn daemon(&self, i: usize) -> &Daemon {
        self.daemons[i].as_ref().expect("daemon running")
    }

    /// Plans round robin over the workers (MasterSP's placement, every edge between workers
    /// a peer edge) and installs on every one.
    fn install(&self, wf: Arc<Workflow>) -> Plan {
        self.install_tiered(wf, Tier::Peer)
    }

    /// As [`Cluster::install`], with every edge between workers of tier `tier`.
    fn install_tiered(&self, wf: Arc<Workflow>, tier: Tier) -> Plan {
        let cfg = PlannerConfig {
            mode: Mode::MasterSp,
            allow_overcommit: true,
            ..PlannerConfig::default()
        };
        let mut plan = partition(&wf, &self.view, &cfg).expect("plan");
        plan.mode = Mode::WorkerSp;
        for e in wf.graph.edge_indices() {
            let (a, b) = wf.graph.edge_endpoints(e).unwrap();
            let crosses =
                wf.graph[a].task().is_some() && wf.graph[b].task().is_some() && plan.worker_of(a) != plan.worker_of(b);
            plan.edge_tiers[e.index()] = if crosses { tier } else { Tier::SharedMemory };
        }
        for d in self.daemons.iter().flatten() {
            d.install_plan(wf.clone(), plan.clone(), &self.view, &self.peers)
                .unwrap_or_else(|e| panic!("install on {}: {e}", d.name()));
        }
        plan
    }

    fn invoke_on(&mut self, entry: usize, wf: &str, input: serde_json::Value) -> Report {
        let id = self.next_invocation;
        self.next_invocation += 1;
        self.daemon(entry)
            .invoke(Invoke::new(wf, 1, input).with_id(id))
            .wait_timeout(Duration::from_secs(60))
            .ok()
            .flatten()
            .expect("the invocation ends")
            .expect("the invocation starts")
    }

    fn assert_clean(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        for d in self.daemons.iter().flatten() {
            loop {
                let s = d.stats().expect("stats");
                if s.arena_used == 0 && s.objects == 0 && s.invocations == 0 && s.calls == 0 {
                    break;
                }
                assert!(Instant::now() < deadline, "{} still holds something: {s:?}", d.name());
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Every function that ran did so on the worker the plan put it on.
fn check_placement(wf: &Workflow, plan: &Plan, view: &ClusterView, r: &Report) {
    for f in r.functions.iter() {
        let n = wf
            .graph
            .node_indices()
            .find(|n| wf.graph[*n].name == f.name)
            .expect("a task of the workflow");
        let planned = &view.workers[plan.worker_of(n) as usize].name;
        assert_eq!(
            &f.worker, planned,
            "`{}` ran on {}, planned on {planned}",
            f.name, f.worker
        );
    }
}

const CHAIN: &str = "
name: chain
functions:
  echo: {pack: testkit, outputs: {out: bytes}}
  concat: {pack: testkit, outputs: {out: bytes}}
  len: {pack: testkit, outputs: {out: json}}
steps:
  - task: a
    function: echo
    inputs: {in: input.text}
  - parallel:
      - task: b
        function: echo
        inputs: {in: a.out}
      - task: c
        function: echo
        inputs: {in: a.out}
  - task: d
    function: concat
    inputs: {a: b.out, b: c.out}
  - task: e
    function: len
    inputs: {in: d.out}
output:
  joined: d.out
  n: e.out
";

#[test]
fn objects_and_completions_cross_workers() {
    let mut c = Cluster::new(3);
    let wf = Arc::new(load_str(CHAIN, "chain.yaml", "chain").unwrap().workflow);
    let plan = c.install(wf.clone());
    let workers: std::collections::HashSet<u32> = wf
        .graph
        .node_indices()
        .filter(|n| wf.graph[*n].task().is_some())
        .map(|n| plan.worker_of(n))
        .collect();
    assert_eq!(workers.len(), 3, "the plan spreads the tasks over every worker");
    for entry in 0..3 {
        let r = c.invoke_on(entry, "chain", json!({"text": "abc"}));
        assert_eq!(r.status, "ok", "{:?}", r.error);
        assert_eq!(r.output, json!({"joined": "abcabc", "n": 6}), "entry {entry}: {r:?}");
        check_placement(&wf, &plan, &c.view, &r);
        let peer_edges = r.edges.iter().filter(|e| e.tier == "peer").count();
        assert!(peer_edges > 0, "no edge crossed workers: {:?}", r.edges);
        // Times share one origin: every function started after its predecessors ended.
        let end = |name: &str| r.functions.iter().find(|f| f.name == name).unwrap().end_us;
        let start = |name: &str| r.functions.iter().find(|f| f.name == name).unwrap().start_us;
        assert!(
            start("d") >= end("b") && start("d") >= end("c") && start("e") >= end("d"),
            "{r:?}"
        );
        c.assert_clean();
    }
}

#[test]
fn large_objects_stream_between_workers() {
    let mut c = Cluster::new(2);
    let wf = Arc::new(
        load_str(
            "
name: big
functions:
  emit: {pack: testkit, outputs: {out: bytes}}
  len: {pack: testkit, outputs: {out: json}}
steps:
  - task: emit
    inputs: {bytes: input.n}
  - task: len
    inputs: {in: emit.out}
output:
  n: len.out
",
            "big.yaml",
            "big",
        )
        .unwrap()
        .workflow,
    );
    let plan = c.install(wf.clone());
    let (e, l) = (
        wf.graph.node_indices().find(|n| wf.graph[*n].name == "emit").unwrap(),
        wf.graph.node_indices().find(|n| wf.graph[*n].name == "len").unwrap(),
    );
    assert_ne!(plan.worker_of(e), plan.worker_of(l));
    let r = c.invoke_on(0, "big", json!({"n": 20_000_000}));
    assert_eq!(r.status, "ok", "{:?}", r.error);
    assert_eq!(r.output, json!({"n": 20_000_000}));
    let edge = r.edges.iter().find(|e| e.to == "len").expect("an edge into len");
    assert_eq!((edge.tier.as_str(), edge.bytes), ("peer", 20_000_000));
    c.assert_clean();
}

#[test]
fn a_step_failing_on_another_worker_fails_the_invocation_everywhere() {
    let mut c = Cluster::new(3);
    let wf = Arc::new(load_str(support::FAILING, "failing.yaml", "failing").unwrap().workflow);
    c.install(wf);
    let r = c.invoke_on(0, "failing", json!({"text": "x"}));
    assert_eq!(r.status, "failed");
    let e = r.error.unwrap();
    assert!(e.contains("step `b`") && e.contains("returned an error"), "{e}");
    c.assert_clean();
    // The cluster keeps serving.
    let r = c.invoke_on(1, "failing", json!({"text": "y"}));
    assert_eq!(r.status, "failed");
    c.assert_clean();
}

#[test]
fn a_step_caught_on_one_worker_runs_its_catch_step_on_another() {
    let mut c = Cluster::new(3);
    let wf = Arc::new(load_str(support::RESCUED, "rescued.yaml", "rescued").unwrap().workflow);
    let plan = c.install(wf.clone());
    // Round robin: `bad` and its catch step `rescue` on different workers, `after` on a third
    // party to both, so the failure and the catch step's output both cross workers.
    let on = |name: &str| plan.worker_of(wf.node_by_name(name).unwrap());
    assert_ne!(on("bad"), on("rescue"));
    assert_ne!(on("rescue"), on("after"));
    for entry in 0..3 {
        let r = c.invoke_on(entry, "rescued", json!({"text": "x"}));
        support::check_rescued(&r);
        c.assert_clean();
    }
}

#[test]
fn a_lost_worker_fails_the_invocation_fast_naming_it() {
    let mut c = Cluster::new(3);
    let wf = Arc::new(
        load_str(
            "
name: slow
functions:
  echo: {pack: testkit, outputs: {out: bytes}}
  hang: {pack: testkit, outputs: {out: bytes}}
steps:
  - task: a
    function: echo
    inputs: {in: input.text}
  - task: b
    function: hang
    inputs: {in: a.out}
  - task: c
    function: echo
    inputs: {in: b.out}
output:
  out: c.out
",
            "slow.yaml",
            "slow",
        )
        .unwrap()
        .workflow,
    );
    let plan = c.install(wf.clone());
    let b = wf.graph.node_indices().find(|n| wf.graph[*n].name == "b").unwrap();
    let lost = plan.worker_of(b) as usize;
    let entry = (lost + 1) % 3;
    let id = c.next_invocation;
    let rx = c
        .daemon(entry)
        .invoke(Invoke::new("slow", 1, json!({"text": "x"})).with_id(id));
    // Let `b` start, then take its worker away.
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    c.daemons[lost] = None;
    let r = rx
        .wait_timeout(Duration::from_secs(20))
        .ok()
        .flatten()
        .expect("the invocation ends")
        .expect("it started");
    assert_eq!(r.status, "failed");
    let e = r.error.unwrap();
    assert!(e.contains(&format!("worker `worker-{lost}`")), "{e}");
    assert!(t.elapsed() < Duration::from_secs(10), "took {:?}", t.elapsed());
    c.assert_clean();
}

#[test]
fn every_faasflow_workflow_gives_the_same_output_on_three_workers_as_on_one() {
    // A tenth of the declared runtimes and sizes: every object still crosses workers.
    let mut c = Cluster::scaled(3, 0.1, None);
    let mut one = Cluster::scaled(1, 0.1, None);
    let mut names = std::collections::HashSet::new();
    let files = support::faasflow_files();
    assert!(files.len() >= 18, "{files:?}");
    for file in files {
        let mut wf = support::synthetic(load_file(&file).expect("loads").workflow);
        while !names.insert(wf.name.clone()) {
            wf.name.push('_');
        }
        let wf = Arc::new(wf);
        let plan = c.install(wf.clone());
        one.install(wf.clone());
        let mut input = serde_json::Map::new();
        for i in &wf.inputs {
            input.insert(i.name.clone(), json!("x".repeat((i.size / 100).min(4096) as usize)));
        }
        let input = serde_json::Value::Object(input);
        let r = c.invoke_on(0, &wf.name, input.clone());
        assert_eq!(r.status, "ok", "{}: {:?}", file.display(), r.error);
        let r1 = one.invoke_on(0, &wf.name, input);
        assert_eq!(r.output, r1.output, "{}", file.display());
        check_placement(&wf, &plan, &c.view, &r);
        c.assert_clean();
        one.assert_clean();
    }
}

fn execute(d: &Daemon, request: Execute) -> Result<Executed, String> {
    d.execute(request)
        .wait_timeout(Duration::from_secs(30))
        .ok()
        .flatten()
        .expect("execute answers")
        .map_err(|e| e.message)
}

/// What a central engine (MasterSP) does, by hand: each step executed on the worker the plan
/// put it on, inputs and outputs through Redis; nothing left in Redis or the daemons after.
#[test]
fn daemons_execute_steps_for_a_central_engine_through_redis() {
    let redis = support::Redis::start();
    let c = Cluster::scaled(2, 1.0, Some(redis.url()));
    let wf = Arc::new(
        load_str(
            "
name: central
functions:
  echo: {pack: testkit, outputs: {out: bytes}}
  concat: {pack: testkit, outputs: {out: bytes}}
  len: {pack: testkit, outputs: {out: json}}
steps:
  - task: a
    function: echo
    inputs: {in: input.text}
  - task: b
    function: concat
    inputs: {a: a.out, b: a.out}
  - task: c
    function: len
    inputs: {in: b.out}
output:
  n: c.out
",
            "central.yaml",
            "central",
        )
        .unwrap()
        .workflow,
    );
    let plan = c.install(wf.clone());
    let node = |name: &str| wf.graph.node_indices().find(|n| wf.graph[*n].name == name).unwrap();
    let on = |name: &str| c.daemon(plan.worker_of(node(name)) as usize);
    let step = |name: &str, inputs: Vec<(String, ExecInput)>| Execute {
        workflow: "central".into(),
        version: 1,
        invocation: 77,
        node: node(name),
        element: None,
        attempt: 1,
        inputs,
    };
    let a = execute(
        on("a"),
        step("a", vec![("in".into(), ExecInput::Json(Arc::new(json!("hey"))))]),
    )
    .expect("a runs");
    let a_out: RemoteObject = a.outputs[0].1.clone();
    assert_eq!((a.outputs[0].0.as_str(), a_out.len), ("out", 3));
    assert_eq!(a.record.worker, on("a").name());
    assert_ne!(on("a").name(), on("b").name(), "the plan spreads the steps");
    let b = execute(
        on("b"),
        step(
            "b",
            vec![
                ("a".into(), ExecInput::Object(a_out.clone())),
                ("b".into(), ExecInput::Object(a_out.clone())),
            ],
        ),
    )
    .expect("b runs");
    assert_eq!(b.outputs[0].1.len, 6);
    assert!(
        b.edges.iter().all(|e| e.tier == "remote" && e.from == "a"),
        "{:?}",
        b.edges
    );
    let cc = execute(
        on("c"),
        step("c", vec![("in".into(), ExecInput::Object(b.outputs[0].1.clone()))]),
    )
    .expect("c runs");
    assert_eq!(cc.outputs[0].1.json.as_deref(), Some(&json!(6)));
    assert_eq!(redis.dbsize(), 4, "three objects and the invocation's index");
    // A step the plan puts elsewhere, or a missing input, is a clear error.
    let e = execute(
        on("b"),
        step("a", vec![("in".into(), ExecInput::Json(Arc::new(json!("x"))))]),
    )
    .unwrap_err();
    assert!(e.contains("is not placed on worker"), "{e}");
    let mut gone = a_out.clone();
    gone.key.object = "nothing".into();
    let e = execute(on("c"), step("c", vec![("in".into(), ExecInput::Object(gone))])).unwrap_err();
    assert!(e.contains("step `c`") && e.contains("is not in the remote tier"), "{e}");
    c.assert_clean();
    // The caller clears the invocation's keys.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = faasflow_remote::RemoteStore::connect(&redis.url(), Duration::from_secs(3))
            .await
            .unwrap();
        store.delete_invocation("central", 1, 77).await.unwrap();
    });
    assert_eq!(redis.dbsize(), 0);
}

#[test]
fn a_daemon_without_redis_says_so() {
    let c = Cluster::scaled(1, 1.0, Some("redis://127.0.0.1:1".into()));
    let wf = Arc::new(load_str(CHAIN, "chain.yaml", "chain").unwrap().workflow);
    c.install(wf.clone());
    let a = wf.graph.node_indices().find(|n| wf.graph[*n].name == "a").unwrap();
    let e = execute(
        c.daemon(0),
        Execute {
            workflow: "chain".into(),
            version: 1,
            invocation: 1,
            node: a,
            element: None,
            attempt: 1,
            inputs: Vec::new(),
        },
    )
    .unwrap_err();
    assert!(e.contains("has no remote tier") && e.contains("--redis"), "{e}");
}

/// Edges the plan marks remote go through Redis: the producer stores a copy, the consumer on
/// the other worker reads it there; the copy goes when the object does.
#[test]
fn edges_planned_remote_go_through_redis() {
    let redis = support::Redis::start();
    let mut c = Cluster::scaled(2, 1.0, Some(redis.url()));
    let wf = Arc::new(load_str(CHAIN, "chain.yaml", "chain").unwrap().workflow);
    c.install_tiered(wf, Tier::Remote);
    for entry in 0..2 {
        let r = c.invoke_on(entry, "chain", json!({"text": "abc"}));
        assert_eq!(r.output, json!({"joined": "abcabc", "n": 6}), "{r:?}");
        // `d.out` is also the workflow's result, pushed to the entry: a reader there uses
        // that copy.
        let tiers: Vec<&str> = r.edges.iter().map(|e| e.tier.as_str()).collect();
        assert!(tiers.contains(&"remote"), "{:?}", r.edges);
        assert!(
            r.edges.iter().all(|e| e.tier != "peer" || e.from == "d"),
            "{:?}",
            r.edges
        );
        c.assert_clean();
        wait_for_no_keys(&redis);
    }
}

fn wait_for_no_keys(redis: &support::Redis) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis.dbsize() != 0 {
        assert!(Instant::now() < deadline, "{} keys left in Redis", redis.dbsize());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Without a reachable Redis, an edge planned remote is pushed peer to peer instead.
#[test]
fn edges_planned_remote_fall_back_to_peers_without_redis() {
    let mut c = Cluster::scaled(2, 1.0, None);
    let wf = Arc::new(load_str(CHAIN, "chain.yaml", "chain").unwrap().workflow);
    c.install_tiered(wf, Tier::Remote);
    let r = c.invoke_on(0, "chain", json!({"text": "abc"}));
    assert_eq!(r.output, json!({"joined": "abcabc", "n": 6}), "{r:?}");
    assert!(r.edges.iter().any(|e| e.tier == "peer"), "{:?}", r.edges);
    c.assert_clean();
}

/// A worker over its quota spills to Redis when it has one, and reloads from there.
#[test]
fn spills_go_to_redis_when_there_is_one() {
    let redis = support::Redis::start();
    let mut c = Cluster::build(1, |c| {
        c.redis = Some(redis.url());
        c.quota_bytes = Some(0);
    });
    let wf = Arc::new(load_str(CHAIN, "chain.yaml", "chain").unwrap().workflow);
    c.install(wf);
    let r = c.invoke_on(0, "chain", json!({"text": "abc"}));
    assert_eq!(r.output, json!({"joined": "abcabc", "n": 6}), "{r:?}");
    assert!(r.spills > 0 && r.edges.iter().all(|e| e.tier == "spill"), "{r:?}");
    c.assert_clean();
    wait_for_no_keys(&redis);
}

/// A peer with a certificate from another CA is refused by a daemon, which goes on serving.
#[test]
fn a_daemon_refuses_a_peer_from_another_cluster_and_keeps_serving() {
    let mut c = Cluster::new(2);
    let wf = Arc::new(load_str(CHAIN, "chain.yaml", "chain").unwrap().workflow);
    c.install(wf);
    let target = c.peers["worker-0"];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let refused = rt.block_on(async {
        let foreign = ClusterCa::generate("other").unwrap();
        let intruder = faasflow_daemon::io::peer::PeerEndpoint::bind(
            "127.0.0.1:0".parse().unwrap(),
            &foreign.issue("worker-1").unwrap(),
            &foreign.trust(),
            PeerConfig::default(),
        )
        .unwrap();
        let r = tokio::time::timeout(Duration::from_secs(10), intruder.connect(target, "worker-0")).await;
        r.expect("the handshake ends").map(|_| ())
    });
    let e = refused.expect_err("a foreign certificate was accepted");
    assert!(
        e.to_string().contains("worker-0") || e.to_string().contains("certificate"),
        "{e}"
    );
    let r = c.invoke_on(0, "chain", json!({"text": "abc"}));
    assert_eq!(r.output, json!({"joined": "abcabc", "n": 6}));
    c.assert_clean();
}

/// Redis going away: spills and edges planned remote fall back to the spill directory and
/// peer pushes, steps for a central engine fail with a clear error; nothing panics or hangs.
#[test]
fn redis_going_away_is_survived() {
    let mut redis = support::Redis::start();
    let mut c = Cluster::build(2, |c| {
        c.redis = Some(redis.url());
        c.quota_bytes = Some(0);
    });
    let wf = Arc::new(load_str(CHAIN, "chain.yaml", "chain").unwrap().workflow);
    let plan = c.install_tiered(wf.clone(), Tier::Remote);
    let r = c.invoke_on(0, "chain", json!({"text": "abc"}));
    assert_eq!(r.output, json!({"joined": "abcabc", "n": 6}));
    redis.kill();
    let t = Instant::now();
    let r = c.invoke_on(0, "chain", json!({"text": "abc"}));
    assert_eq!(r.output, json!({"joined": "abcabc", "n": 6}), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(30), "took {:?}", t.elapsed());
    c.assert_clean();
    let a = wf.graph.node_indices().find(|n| wf.graph[*n].name == "a").unwrap();
    let e = execute(
        c.daemon(plan.worker_of(a) as usize),
        Execute {
            workflow: "chain".into(),
            version: 1,
            invocation: 99,
            node: a,
            element: None,
            attempt: 1,
            inputs: vec![("in".into(), ExecInput::Json(Arc::new(json!("x"))))],
        },
    )
    .unwrap_err();
    assert!(e.contains("step `a`") && e.contains("redis://"), "{e}");
    c.assert_clean();
}

/// An invocation that fails after objects went to Redis (remote edges, spills) leaves no key.
#[test]
fn a_failed_invocation_leaves_no_key_in_redis() {
    let redis = support::Redis::start();
    let mut c = Cluster::build(3, |c| {
        c.redis = Some(redis.url());
        c.quota_bytes = Some(0);
    });
    let wf = Arc::new(
        load_str(
            "
name: failing
functions:
  echo: {pack: testkit, outputs: {out: bytes}}
  fail: {pack: testkit, outputs: {out: bytes}}
steps:
  - task: a
    function: echo
    inputs: {in: input.text}
  - parallel:
      - task: b
        function: echo
        inputs: {in: a.out}
      - task: c
        function: echo
        inputs: {in: a.out}
  - task: d
    function: fail
    inputs: {in: b.out, other: c.out}
output:
  out: d.out
",
            "failing.yaml",
            "failing",
        )
        .unwrap()
        .workflow,
    );
    c.install_tiered(wf, Tier::Remote);
    for entry in 0..3 {
        let r = c.invoke_on(entry, "failing", json!({"text": "x"}));
        assert_eq!(r.status, "failed", "{r:?}");
        assert!(
            r.edges.iter().any(|e| e.tier == "remote" || e.tier == "spill"),
            "{:?}",
            r.edges
        );
        c.assert_clean();
        wait_for_no_keys(&redis);
    }
}

/// Workers get the inputs their tasks and conditions read (the others are left out of their `Start`): a switch
/// over an input and tasks reading other inputs still see the right values on every worker.
#[test]
fn inputs_reach_the_workers_that_read_them() {
    let mut c = Cluster::new(3);
    let wf = Arc::new(
        load_str(
            "
name: inputs
inputs:
  flag: json
  left: bytes
  right: bytes
functions:
  echo: {pack: testkit, outputs: {out: bytes}}
  concat: {pack: testkit, outputs: {out: bytes}}
steps:
  - task: l
    function: echo
    inputs: {in: input.left}
  - task: r
    function: echo
    inputs: {in: input.right}
  - switch:
      cases:
        - if: input.flag == 1
          then:
            - task: one
              function: concat
              inputs: {a: l.out, b: r.out}
      default:
        - task: other
          function: concat
          inputs: {a: r.out, b: l.out}
output:
  one: one.out
  other: other.out
",
            "inputs.yaml",
            "inputs",
        )
        .unwrap()
        .workflow,
    );
    c.install(wf);
    for (entry, flag, want) in [
        (0, 1, json!({"one": "LR", "other": null})),
        (2, 2, json!({"one": null, "other": "RL"})),
    ] {
        let r = c.invoke_on(entry, "inputs", json!({"flag": flag, "left": "L", "right": "R"}));
        assert_eq!(r.output, want, "{r:?}");
        c.assert_clean();
    }
}

/// A large input that only tasks read goes to the workers whose tasks read it as an object on
/// a stream of its own (an edge from `input.NAME` in the report), lands once per worker, and
/// reads the same as when it is small enough to travel inside `Start`.
#[test]
fn large_inputs_travel_as_objects_to_the_workers_that_read_them() {
    let mut c = Cluster::new(3);
    let wf = Arc::new(
        load_str(
            "
name: staged
inputs:
  big: bytes
  small: bytes
functions:
  len: {pack: testkit, outputs: {out: json}}
  concat: {pack: testkit, outputs: {out: bytes}}
steps:
  - task: a
    function: len
    inputs: {in: input.big}
  - task: b
    function: len
    inputs: {in: input.big}
  - task: c
    function: concat
    inputs: {a: input.small, b: input.big}
  - task: d
    function: len
    inputs: {in: input.big}
  - task: e
    function: len
    inputs: {in: c.out}
output:
  a: a.out
  b: b.out
  d: d.out
  e: e.out
",
            "staged.yaml",
            "staged",
        )
        .unwrap()
        .workflow,
    );
    let plan = c.install(wf.clone());
    let view = c.view.clone();
    let worker = |name: &str| {
        let n = wf.graph.node_indices().find(|n| wf.graph[*n].name == name).unwrap();
        view.workers[plan.worker_of(n) as usize].name.clone()
    };
    assert_eq!(worker("a"), worker("d"), "round robin puts a and d together");
    for (entry, size) in [(0, 300_000), (1, 300_000), (2, 1_000)] {
        let big: String = (0..size).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let r = c.invoke_on(entry, "staged", json!({"big": big, "small": "S"}));
        assert_eq!(r.status, "ok", "{:?}", r.error);
        assert_eq!(r.output, json!({"a": size, "b": size, "d": size, "e": size + 1}));
        let from_input: Vec<_> = r.edges.iter().filter(|e| e.from == "input.big").collect();
        if size < faasflow_core::dag::STAGE_MIN_BYTES {
            assert!(
                from_input.is_empty(),
                "a small input travels inside Start: {:?}",
                r.edges
            );
        } else {
            // Every reader got it; those on other workers than the entry over the peer tier.
            let entry_name = c.daemon(entry).name().to_owned();
            for t in ["a", "b", "c", "d"] {
                let e = from_input
                    .iter()
                    .find(|e| e.to == t)
                    .unwrap_or_else(|| panic!("no edge input.big → {t}: {:?}", r.edges));
                assert_eq!(e.bytes, size as u64);
                let want = if worker(t) == entry_name {
                    "shared-memory"
                } else {
                    "peer"
                };
                assert_eq!(e.tier, want, "input.big → {t} on {}", worker(t));
            }
        }
        c.assert_clean();
    }
}

/// A staged input is released once the tasks of its worker that read it have run: an object
/// arriving later takes its room in a small arena without spilling anything.
#[test]
fn a_staged_input_is_released_after_its_last_reader() {
    // a and c run on the entry, b on the other worker (round robin).
    let mut c = Cluster::build(2, |c| {
        c.arena_bytes = 6 << 20;
        c.quota_bytes = Some(6 << 20);
    });
    let wf = Arc::new(
        load_str(
            "
name: release
inputs:
  big: bytes
  n: json
functions:
  len: {pack: testkit, outputs: {out: json}}
  emit: {pack: testkit, outputs: {out: bytes}}
steps:
  - task: a
    function: len
    inputs: {in: input.big}
  - task: b
    function: emit
    inputs: {bytes: input.n}
  - task: c
    function: len
    inputs: {in: b.out}
output:
  a: a.out
  c: c.out
",
            "release.yaml",
            "release",
        )
        .unwrap()
        .workflow,
    );
    c.install(wf);
    let big = "b".repeat(4 << 20);
    let r = c.invoke_on(0, "release", json!({"big": big, "n": 4 << 20}));
    assert_eq!(r.status, "ok", "{:?}", r.error);
    assert_eq!(r.output, json!({"a": 4 << 20, "c": 4 << 20}));
    assert_eq!(r.spills, 0, "the input was still held when b's output needed its room");
    c.assert_clean();
}
