//! The planner and daemon services in one process, on real loopback sockets: a
//! `PlannerService` and 1 or 3 `Daemon`s with their `DaemonService`s and registration loops
//! (functions without a pack run in `faasflow __pack synthetic` instances).

use std::sync::Arc;
use std::time::Duration;

use faasflow_control::service::{PlannerService, ServiceConfig};
use faasflow_core::report::Report;
use faasflow_daemon::config::DaemonConfig;
use faasflow_daemon::daemon::Daemon;
use faasflow_daemon::io::tls::ClusterCa;
use faasflow_daemon::pool::PackCommand;
use faasflow_daemon::service::DaemonService;
use faasflow_proto::v1 as pb;
use faasflow_proto::v1::daemon_client::DaemonClient;
use faasflow_proto::v1::planner_client::PlannerClient;
use faasflow_rpc::auth::{Attach, AuthChannel, Token};
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

mod support;

fn daemon_config(name: &str) -> DaemonConfig {
    let mut c = DaemonConfig::new(PackCommand {
        program: env!("CARGO_BIN_EXE_faasflow").into(),
        args: vec!["__pack".into(), "synthetic".into()],
    });
    c.arena_bytes = 32 << 20;
    c.name = name.into();
    c
}

struct TestCluster {
    planner: PlannerClient<AuthChannel>,
    daemons: Vec<Arc<Daemon>>,
}

/// A planner and `n` daemons (`w0` …, `slots` slots each); with `peers`, each daemon has a
/// certificate from one cluster CA and a QUIC endpoint.
async fn cluster(n: usize, slots: u32, peers: bool) -> TestCluster {
    // Every call of these tests carries the cluster's token (planner → daemons, daemons →
    // planner, the test's client → planner).
    let config = ServiceConfig {
        heartbeat_interval: Duration::from_millis(200),
        token: Some(Token::generate().expect("token")),
        ..ServiceConfig::default()
    };
    let ca = ClusterCa::generate("test").expect("ca");
    let daemons = (0..n)
        .map(|i| {
            let name = format!("w{i}");
            let mut c = daemon_config(&name);
            if peers {
                c.peer = Some(support::peer_settings(&ca, &name));
            }
            c
        })
        .collect();
    let (planner, daemons) = support::services(config, daemons, slots).await;
    TestCluster { planner, daemons }
}

async fn deploy(planner: &mut PlannerClient<AuthChannel>, source: &str) -> pb::DeployResponse {
    planner
        .deploy(pb::DeployRequest {
            source: source.into(),
            file_name: "test.yaml".into(),
            mode: pb::Mode::WorkerSp as i32,
            allow_overcommit: false,
            default_name: String::new(),
            code_dir: String::new(),
        })
        .await
        .expect("deploy")
        .into_inner()
}

async fn invoke(planner: &mut PlannerClient<AuthChannel>, name: &str, input: &str) -> pb::InvokeResponse {
    planner
        .invoke(pb::InvokeRequest {
            workflow: name.into(),
            version: None,
            input_json: input.as_bytes().to_vec(),
            deadline_ms: 20_000,
            fill_staged_scale: None,
            files: Default::default(),
        })
        .await
        .expect("invoke")
        .into_inner()
}

const CHAIN: &str = "name: chain
inputs:
  x: json
functions:
  a: {runtime: 1ms, scale: 2, outputs: {out: {type: json, size: 16B}}}
  b: {runtime: 1ms, scale: 2, outputs: {out: {type: json, size: 16B}}}
  c: {runtime: 1ms, scale: 2, outputs: {out: {type: json, size: 16B}}}
steps:
  - task: a
    inputs: {x: input.x}
  - task: b
    inputs: {x: a.out}
  - task: c
    inputs: {x: b.out}
output:
  c: c.out
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_one_message_out_and_one_in_per_invocation() {
    let mut c = cluster(1, 64, false).await;
    let d = deploy(&mut c.planner, CHAIN).await;
    assert_eq!((d.workflow.as_str(), d.version), ("chain", 1));
    for i in 1..=5u64 {
        let r = invoke(&mut c.planner, "chain", r#"{"x": 1}"#).await;
        assert_eq!(r.status, pb::InvocationStatus::Succeeded as i32, "{r:?}");
        assert_eq!(r.invocation_id, i, "invocation ids come from one counter");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&r.output_json).unwrap(),
            serde_json::json!({"c": true})
        );
        let report: Report = serde_json::from_slice(&r.report_json).expect("report");
        assert!(report.functions.iter().all(|f| f.worker == "w0"), "{report:?}");
        let m = c
            .planner
            .metrics(pb::MetricsRequest {})
            .await
            .expect("metrics")
            .into_inner();
        assert_eq!((m.invocation_messages_sent, m.invocation_messages_received), (i, i));
    }
    // Unknown names and versions: NOT_FOUND, with what is known.
    let e = c
        .planner
        .invoke(pb::InvokeRequest {
            workflow: "chain".into(),
            version: Some(4),
            input_json: b"{}".to_vec(),
            deadline_ms: 0,
            fill_staged_scale: None,
            files: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert_eq!(e.message(), "workflow `chain` has no version 4; its versions: 1");
    let e = c
        .planner
        .get_plan(pb::GetPlanRequest {
            workflow: "other".into(),
            version: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert_eq!(
        e.message(),
        "workflow `other` is not deployed; deployed workflows: chain"
    );
    // A refused invocation sends nothing to a daemon.
    let m = c
        .planner
        .metrics(pb::MetricsRequest {})
        .await
        .expect("metrics")
        .into_inner();
    assert_eq!((m.invocation_messages_sent, m.invocation_messages_received), (5, 5));
    drop(c.daemons);
}

/// Serves `daemon`'s gRPC API on a port of its own; a channel to it.
async fn serve_daemon(daemon: Arc<Daemon>, token: Option<Token>) -> tonic::transport::Channel {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(
        Server::builder().serve_with_incoming(
            DaemonService::new(
                daemon,
                faasflow_rpc::channel::Credentials {
                    token,
                    transport: faasflow_rpc::channel::Transport::Plain,
                },
            )
            .into_server(),
            TcpIncoming::from(listener),
        ),
    );
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("daemon")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_plan_is_refused_by_the_daemon_service() {
    let c = cluster(1, 64, false).await;
    let token = Token::generate().expect("token");
    let channel = serve_daemon(c.daemons[0].clone(), Some(token.clone())).await;
    // Without the token, or with another, nothing is done.
    for other in [None, Some(Token::generate().expect("token"))] {
        let mut stranger = DaemonClient::with_interceptor(channel.clone(), Attach::new(other.clone()));
        let e = stranger
            .status(pb::StatusRequest {})
            .await
            .expect_err("a call without the token");
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
        assert!(e.message().starts_with("worker `w0`"), "{}", e.message());
    }
    let mut client = DaemonClient::with_interceptor(channel, Attach::new(Some(token)));
    let e = client
        .install_plan(pb::InstallPlanRequest {
            plan: None,
            peers: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert_eq!(e.message(), "InstallPlan: `plan` is missing");
    let e = client
        .install_plan(pb::InstallPlanRequest {
            plan: Some(pb::Plan::default()),
            peers: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().starts_with("InstallPlan: the plan is invalid: "),
        "{}",
        e.message()
    );
    let e = client
        .drop_plan(pb::DropPlanRequest {
            workflow: "none".into(),
            version: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let s = client.status(pb::StatusRequest {}).await.expect("status").into_inner();
    assert_eq!(s.worker, "w0");
    assert!(s.plans.is_empty());
}

/// A plan of workflow `same` version 1 for worker `w0` whose one task is `function`.
fn same_plan(function: &str) -> pb::Plan {
    let yaml = format!(
        "name: same\nfunctions:\n  {function}: {{runtime: 1ms, outputs: {{out: {{type: json, size: 16B}}}}}}\nsteps:\n  - task: {function}\n"
    );
    let wf = faasflow_planner::load::load_str(&yaml, "same.yaml", "same")
        .expect("loads")
        .workflow;
    let cluster = faasflow_core::ClusterView {
        workers: vec![faasflow_core::plan::WorkerView {
            name: "w0".into(),
            slots: 64,
        }],
    };
    let cfg = faasflow_core::PlannerConfig {
        version: 1,
        ..faasflow_core::PlannerConfig::default()
    };
    let plan = faasflow_planner::partition(&wf, &cluster, &cfg).expect("plan");
    faasflow_rpc::plan_to_proto(&wf, &plan, &cluster)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_plan_under_a_held_version_is_refused() {
    let c = cluster(1, 64, false).await;
    let channel = serve_daemon(c.daemons[0].clone(), None).await;
    let mut client = DaemonClient::with_interceptor(channel, Attach::new(None));
    let install = |plan: pb::Plan| pb::InstallPlanRequest {
        plan: Some(plan),
        peers: Vec::new(),
    };
    let first = client.install_plan(install(same_plan("old"))).await.expect("installs");
    assert!(!first.into_inner().already_installed);
    // The same plan again: nothing to do.
    let again = client.install_plan(install(same_plan("old"))).await.expect("same plan");
    assert!(again.into_inner().already_installed);
    // Another plan under the same workflow and version: refused, never answered with the old.
    let e = client.install_plan(install(same_plan("new"))).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::AlreadyExists, "{e:?}");
    assert!(
        e.message()
            .starts_with("worker `w0`: workflow `same` version 1 is installed here with another plan (digest "),
        "{}",
        e.message()
    );
    assert!(e.message().ends_with("deploy it as a new version"), "{}", e.message());
    let s = client.status(pb::StatusRequest {}).await.expect("status").into_inner();
    assert_eq!(s.plans.len(), 1);
}

/// Three workers of 2 slots and three functions of scale 2: one function on each worker, so
/// the invocation crosses workers twice (over QUIC) and still costs the planner one message
/// each way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_run_the_plan_where_it_says() {
    let mut c = cluster(3, 2, true).await;
    let d = deploy(&mut c.planner, CHAIN).await;
    let (wf, plan, view) = faasflow_rpc::plan_from_proto(d.plan.as_ref().expect("plan")).expect("valid plan");
    let mut placed = std::collections::BTreeMap::new();
    for n in wf.graph.node_indices().filter(|n| wf.graph[*n].task().is_some()) {
        placed.insert(
            wf.graph[n].name.clone(),
            view.workers[plan.worker_of(n) as usize].name.clone(),
        );
    }
    let workers: std::collections::BTreeSet<&String> = placed.values().collect();
    assert_eq!(workers.len(), 3, "one function per worker: {placed:?}");
    for i in 1..=3u64 {
        let r = invoke(&mut c.planner, "chain", r#"{"x": 1}"#).await;
        assert_eq!(r.status, pb::InvocationStatus::Succeeded as i32, "{r:?}");
        let report: Report = serde_json::from_slice(&r.report_json).expect("report");
        for f in &report.functions {
            assert_eq!(Some(&f.worker), placed.get(&f.name), "{report:?}");
        }
        // Every edge took the tier the plan gave it: across workers `peer` (or `remote`),
        // within one worker `in-process` or `shared-memory`.
        assert!(!report.edges.is_empty(), "{report:?}");
        for e in &report.edges {
            let node = |name: &str| {
                wf.graph
                    .node_indices()
                    .find(|n| wf.graph[*n].name == name)
                    .expect("a task")
            };
            let edge = wf.graph.find_edge(node(&e.from), node(&e.to)).expect("a data edge");
            let planned = plan.tier(edge).as_str();
            let ok = match planned {
                "peer" | "remote" => e.tier == planned,
                _ => e.tier == "in-process" || e.tier == "shared-memory",
            };
            assert!(ok, "edge {} → {} planned {planned}, took {}", e.from, e.to, e.tier);
        }
        let m = c
            .planner
            .metrics(pb::MetricsRequest {})
            .await
            .expect("metrics")
            .into_inner();
        assert_eq!((m.invocation_messages_sent, m.invocation_messages_received), (i, i));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_planner_refuses_calls_without_the_clusters_token() {
    let token = Token::generate().expect("token");
    let config = ServiceConfig {
        token: Some(token.clone()),
        ..ServiceConfig::default()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(
        Server::builder().serve_with_incoming(PlannerService::new(config).into_server(), TcpIncoming::from(listener)),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("planner");
    let mut anonymous = PlannerClient::new(channel.clone());
    let e = anonymous
        .invoke(pb::InvokeRequest {
            workflow: "wordcount".into(),
            ..Default::default()
        })
        .await
        .expect_err("no token");
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    assert_eq!(
        e.message(),
        "the planner needs the cluster's token with every call (`authorization: Bearer …`): pass the cluster's directory (`--dir`) or --token-file"
    );
    // A worker of another cluster cannot register.
    let mut impostor =
        PlannerClient::with_interceptor(channel.clone(), Attach::new(Some(Token::generate().expect("token"))));
    let e = impostor
        .register_worker(pb::RegisterWorkerRequest {
            name: "w9".into(),
            grpc_addr: "127.0.0.1:1".into(),
            slots: 1,
            ..Default::default()
        })
        .await
        .expect_err("another token");
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    assert!(e.message().contains("not the cluster's"), "{}", e.message());
    let mut member = PlannerClient::with_interceptor(channel, Attach::new(Some(token)));
    let m = member
        .metrics(pb::MetricsRequest {})
        .await
        .expect("metrics")
        .into_inner();
    assert_eq!(m.workers, 0, "the impostor was not registered");
}

/// One worker; the planner takes `planner_max` invocations in flight, the daemon runs
/// `daemon_max`.
async fn limited(planner_max: u64, daemon_max: usize) -> TestCluster {
    let config = ServiceConfig {
        heartbeat_interval: Duration::from_millis(200),
        max_in_flight: planner_max,
        ..ServiceConfig::default()
    };
    let mut c = daemon_config("w0");
    c.max_invocations = daemon_max;
    let (planner, daemons) = support::services(config, vec![c], 64).await;
    TestCluster { planner, daemons }
}

const NAP: &str = "name: nap\nfunctions:\n  nap: {runtime: 600ms, outputs: {out: {type: json, size: 16B}}}\nsteps:\n  - task: nap\noutput:\n  out: nap.out\n";

/// Starts one invocation of `nap` and waits until the planner counts it in flight.
async fn one_in_flight(c: &mut TestCluster) -> tokio::task::JoinHandle<pb::InvokeResponse> {
    let mut planner = c.planner.clone();
    let running = tokio::spawn(async move { invoke(&mut planner, "nap", "{}").await });
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while c.daemons[0].stats().expect("stats").invocations == 0 {
        assert!(std::time::Instant::now() < end, "the first invocation never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    running
}

/// One more invocation of `nap`, which must be refused (`why`).
async fn invoke_refused(c: &mut TestCluster, why: &str) -> tonic::Status {
    c.planner
        .invoke(pb::InvokeRequest {
            workflow: "nap".into(),
            input_json: b"{}".to_vec(),
            ..Default::default()
        })
        .await
        .expect_err(why)
}

/// The invocation in flight succeeds, and so does the next one.
async fn serves_again(c: &mut TestCluster, running: tokio::task::JoinHandle<pb::InvokeResponse>) {
    assert_eq!(
        running.await.expect("first").status,
        pb::InvocationStatus::Succeeded as i32
    );
    let again = invoke(&mut c.planner, "nap", "{}").await;
    assert_eq!(again.status, pb::InvocationStatus::Succeeded as i32, "{}", again.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_planner_refuses_at_once_and_serves_again() {
    let mut c = limited(1, 64).await;
    deploy(&mut c.planner, NAP).await;
    let running = one_in_flight(&mut c).await;
    let started = std::time::Instant::now();
    let e = invoke_refused(&mut c, "the planner is full").await;
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "refused at once, not queued"
    );
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    assert_eq!(
        e.message(),
        "overloaded: 1 invocations are in flight on the planner (its --max-in-flight is 1); invocation of workflow `nap` refused, retry later"
    );
    serves_again(&mut c, running).await;
    let m = c
        .planner
        .metrics(pb::MetricsRequest {})
        .await
        .expect("metrics")
        .into_inner();
    assert_eq!(m.workers, 1);
    drop(c.daemons);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_daemon_refuses_at_once_naming_itself_and_serves_again() {
    let mut c = limited(64, 1).await;
    deploy(&mut c.planner, NAP).await;
    let running = one_in_flight(&mut c).await;
    let e = invoke_refused(&mut c, "the daemon is full").await;
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    assert!(
        e.message().ends_with(
            "was refused by worker `w0`: worker `w0` is overloaded: 1 invocations are running on it (its --max-invocations); retry later"
        ),
        "{}",
        e.message()
    );
    serves_again(&mut c, running).await;
    let s = c.daemons[0].stats().expect("stats");
    assert_eq!((s.invocations, s.calls, s.arena_used), (0, 0, 0));
    drop(c.daemons);
}
