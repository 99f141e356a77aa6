//! The planner's gRPC side: the `Planner` service (workers register and send heartbeats;
//! clients deploy, invoke, read plans and counters), and the calls it makes to daemons.
//!
//! A thin driver over the planner's pure logic ([`load_str`], [`partition`],
//! [`plan_to_proto`]); this module is the only one of the crate that touches sockets or the
//! clock. What it holds: the registered workers (a worker silent for [`LOST_AFTER`]
//! heartbeat intervals is lost and left out of new plans), and every deployed workflow's
//! versions, newest first, with the invocations in flight on each.
//!
//! - **Deploy** plans for the live workers (sorted by name, so the same cluster gives the same
//!   plan), gives the plan the workflow's next version and installs it, in parallel, on every
//!   worker that runs one of its tasks; if one install fails, the version is dropped again
//!   from the daemons that took it and the error names the worker, its address and the cause.
//! - **Invoke** sends one message to the entry daemon (the owner of the first task on the plan's
//!   critical path, so that starting the other workers is off that path)
//!   and receives one back when the invocation has ended (WorkerSP: one message out and one in
//!   per invocation, counted in `Metrics`). A daemon lost mid-invocation fails it at once,
//!   naming the worker; every invocation ends within its deadline.
//! - **Red-black**: new invocations take the newest version; a version that is not the newest
//!   is dropped from its daemons as soon as no invocation runs on it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use faasflow_proto::v1 as pb;
use faasflow_proto::v1::daemon_client::DaemonClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::master::{Master, Messages, StartError, Workers};
use faasflow_core::dag::{NodeKind, Workflow};
use faasflow_core::engine::{DEADLINE_PASSED, EngineError};
use faasflow_core::plan::{ClusterView, Mode, Plan, PlannerConfig, WorkerView};
use faasflow_core::text::list_names;
use faasflow_planner::load::load_str;
use faasflow_planner::partition::partition;
use faasflow_remote::{RemoteError, RemoteStore};
use faasflow_rpc::auth::{AuthChannel, Check, Token};
use faasflow_rpc::channel::{MAX_MESSAGE, daemon_client, endpoint};
use faasflow_rpc::convert::plan_to_proto;
use faasflow_rpc::status::{chain, describe, is_transport};

mod workers;

/// Time limit of an invocation whose request sets none.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(300);

/// Invocations in flight at once on a planner, by default ([`ServiceConfig::max_in_flight`]).
pub const DEFAULT_MAX_IN_FLIGHT: u64 = 4096;

/// How much longer than an invocation's deadline the planner waits for its entry daemon's
/// answer (the daemon ends the invocation at the deadline itself).
const DEADLINE_GRACE: Duration = Duration::from_secs(2);
/// A worker that missed this many heartbeat intervals is lost.
pub const LOST_AFTER: u32 = 3;
/// Time limit of installing a plan on a daemon (it waits for its pools' first instances).
const INSTALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Time limit of dropping a plan on a daemon.
const DROP_TIMEOUT: Duration = Duration::from_secs(10);

/// Time limit of connecting to Redis and of each of its operations.
const REDIS_TIMEOUT: Duration = Duration::from_secs(3);

/// Settings of the planner service.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    /// How often workers must send a heartbeat.
    pub heartbeat_interval: Duration,
    /// Time limit of invocations that set none.
    pub default_deadline: Duration,
    /// Safety margin μ of the memory quota, MiB per function.
    pub margin_mib: f64,
    /// The remote tier, a Redis URL (`redis://host:port`): MasterSP passes every object
    /// through it (the daemons must use the same one). Without it, MasterSP deploys fail;
    /// WorkerSP does not need it.
    pub redis: Option<String>,
    /// A task whose measured peak memory differs from the peak its newest version was
    /// planned with by more than this, MiB, makes the planner plan the workflow again with the
    /// measured peaks and deploy that as a new version (red-black). `None` (the default):
    /// never; versions change only when a user deploys. With it set, a pack function's
    /// measured runtime or output size off its planned one by more than
    /// [`ServiceConfig::replan_factor`] does too (synthetic bodies excepted: their declared
    /// runtime and sizes are what they do).
    pub replan_threshold_mib: Option<f64>,
    /// How far (a factor, either way) a measured runtime (beyond 1 ms apart) or output size
    /// (beyond 64 KiB apart) may be from the planned one before the planner plans again
    /// (infinite: never for those; memory alone).
    pub replan_factor: f64,
    /// The cluster's API token: calls without it are refused, and calls to the daemons carry
    /// it. `None`: the API is open (a planner on a private network, tests).
    pub token: Option<Token>,
    /// Invocations in flight at once (every workflow and mode together); one more is refused
    /// at once as overloaded (`RESOURCE_EXHAUSTED`), never queued.
    pub max_in_flight: u64,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            heartbeat_interval: Duration::from_secs(1),
            default_deadline: DEFAULT_DEADLINE,
            margin_mib: PlannerConfig::default().margin_mib,
            redis: None,
            replan_threshold_mib: None,
            replan_factor: 2.0,
            token: None,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

/// A registered worker, known by its name (and the incarnation of its daemon: a restarted
/// daemon holds nothing, whatever the worker held before).
#[derive(Debug, Clone)]
struct Worker {
    /// Its daemon's incarnation (new at every start).
    incarnation: u64,
    grpc_addr: SocketAddr,
    quic_addr: Option<SocketAddr>,
    slots: u32,
    last_seen: Instant,
    /// A connection to its daemon, made when it registered (reconnects by itself).
    client: DaemonClient<AuthChannel>,
    /// It is lost: silent for [`LOST_AFTER`] intervals and it did not answer a direct call
    /// either ([`PlannerService::is_lost`]), or an invocation lost it.
    noted_lost: bool,
    /// A direct call asks whether it still answers (it sent no heartbeat for a while).
    probing: bool,
    /// Since when it is live (registered, or back after it was lost).
    live_since: Instant,
    /// The versions its daemon holds and does not drop (its latest report, and what was
    /// installed on it since).
    held: BTreeMap<(String, u64), Vec<u8>>,
    /// Every version its daemon reported, dropping ones too: (workflow, version, dropping,
    /// digest).
    reported: Vec<(String, u64, bool, Vec<u8>)>,
    /// Its daemon started again and the others are being told: nothing is installed on it
    /// until they know (their old connections to it must not fail its new invocations).
    restarting: bool,
}

/// One deployed version of a workflow.
#[derive(Debug)]
struct Version {
    version: u64,
    wf: Arc<Workflow>,
    plan: Plan,
    cluster: ClusterView,
    proto: pb::Plan,
    /// The workers whose daemons hold it, by name.
    daemons: Vec<String>,
    /// The digest of its plan ([`faasflow_rpc::convert::plan_digest`]): what a daemon holding it
    /// reports.
    digest: Vec<u8>,
    /// Their QUIC addresses when it was made (a daemon back on another address breaks it:
    /// the others would dial the old one).
    peers: BTreeMap<String, Option<SocketAddr>>,
    /// The live workers it was planned, or last found good, for.
    considered: BTreeSet<String>,
    in_flight: u64,
    /// How it was deployed (a re-plan deploys the same way).
    mode: Mode,
    allow_overcommit: bool,
    /// The workflow as its user deployed it (`wf` less the measured peaks of re-plans).
    declared: Arc<Workflow>,
}

/// A workflow's versions.
#[derive(Debug, Default)]
struct Deployed {
    /// Installed versions, newest first.
    versions: Vec<Version>,
    /// The last version number given (versions are never reused, dropped ones included).
    last: u64,
    /// What each task was measured at, from the reports of its invocations (every
    /// version's).
    measured: BTreeMap<String, Measured>,
    /// A re-plan from measured values is under way.
    replanning: bool,
    /// A repair of its newest version (re-plan or install, [`PlannerService::repair`]) is
    /// under way in the background.
    repairing: bool,
    /// When its newest version was last planned again because workers changed.
    last_replan: Option<Instant>,
    /// When a repair last failed, and why (said once per cause).
    repair_failed: Option<(Instant, String)>,
}

/// What the reports say about one task.
#[derive(Debug, Default, Clone)]
struct Measured {
    /// The largest peak memory, bytes.
    peak: u64,
    /// Calls whose peak was measured.
    peak_calls: u64,
    /// The runtimes of its latest calls, ms (at most [`RUNTIME_SAMPLES`]).
    runtimes: std::collections::VecDeque<f64>,
    /// The largest size of each output, bytes.
    outputs: BTreeMap<String, u64>,
}

/// Runtimes kept per task (their median is the measured runtime).
const RUNTIME_SAMPLES: usize = 64;

impl Measured {
    /// The median of the latest runtimes, ms.
    fn runtime_ms(&self) -> Option<f64> {
        if self.runtimes.is_empty() {
            return None;
        }
        let mut v: Vec<f64> = self.runtimes.iter().copied().collect();
        v.sort_by(f64::total_cmp);
        Some(v[v.len() / 2])
    }
}

/// Reports the planner keeps (the latest invocations', for `Report`).
pub const KEPT_REPORTS: usize = 256;

#[derive(Debug, Default)]
struct State {
    workers: BTreeMap<String, Worker>,
    workflows: BTreeMap<String, Deployed>,
    /// The highest version of each workflow a daemon reported holding: versions deployed
    /// from here are higher (a planner started again never reuses one).
    seen_versions: BTreeMap<String, u64>,
    /// Versions being installed by a deploy (not yet in `workflows`): never dropped as
    /// unknown meanwhile.
    installing: BTreeSet<(String, u64)>,
    /// When the watch last looked at the workers.
    last_check: Option<Instant>,
    next_invocation: u64,
    /// Invocations answered, by outcome (`ok`, `failed`, `deadline`, `refused`).
    outcomes: BTreeMap<&'static str, u64>,
    /// End to end of the invocations the planner forwarded, seconds.
    invocation_seconds: faasflow_core::metrics::Histogram,
    /// The latest invocations' reports: (id, workflow, JSON), oldest first.
    reports: std::collections::VecDeque<(u64, String, Arc<[u8]>)>,
}

#[derive(Debug, Default)]
struct Counters {
    invocations: AtomicU64,
    /// Invocation messages to and from daemons (WorkerSP and MasterSP).
    messages: Arc<Messages>,
}

#[derive(Debug)]
struct Inner {
    config: ServiceConfig,
    state: Mutex<State>,
    counters: Counters,
    /// Deploys one at a time, so that versions are given in order.
    deploying: tokio::sync::Mutex<()>,
    /// The central engine of MasterSP versions, started by the first MasterSP deploy.
    master: OnceLock<Master>,
    /// The remote tier, connected by the first MasterSP deploy.
    remote: tokio::sync::Mutex<Option<RemoteStore>>,
    /// The watch over workers' heartbeats runs ([`PlannerService::watch_workers`]).
    watching: std::sync::atomic::AtomicBool,
    /// Installs and drops the watch has under way: (worker, workflow, version).
    pending: Mutex<BTreeSet<(String, String, u64)>>,
}

/// The registry as the central engine sees it (weak: it does not keep the service alive).
struct Registry(Weak<Inner>);

impl Workers for Registry {
    fn daemon(&self, name: &str) -> Result<(SocketAddr, DaemonClient<AuthChannel>), String> {
        let inner = self.0.upgrade().ok_or("the planner has stopped")?;
        let service = PlannerService { inner };
        let now = Instant::now();
        let state = service.state();
        match state.workers.get(name) {
            None => Err(format!(
                "worker `{name}` is not registered; start its daemon (the planner plans its workflows again onto the live workers meanwhile)"
            )),
            Some(w) if service.is_lost(w, now) => Err(format!(
                "worker `{name}` ({}) is lost (no heartbeat for {} ms); the planner plans its workflows again onto the live workers: retry shortly",
                w.grpc_addr,
                now.duration_since(w.last_seen).as_millis()
            )),
            Some(w) => Ok((w.grpc_addr, w.client.clone())),
        }
    }

    fn unreachable(&self, name: &str) {
        if let Some(inner) = self.0.upgrade() {
            PlannerService { inner }.mark_lost(name);
        }
    }
}

/// The `Planner` gRPC service.
#[derive(Debug, Clone)]
pub struct PlannerService {
    inner: Arc<Inner>,
}

impl PlannerService {
    /// A planner with no workers and no workflows.
    pub fn new(config: ServiceConfig) -> Self {
        PlannerService {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(State::default()),
                counters: Counters::default(),
                deploying: tokio::sync::Mutex::new(()),
                watching: std::sync::atomic::AtomicBool::new(false),
                pending: Mutex::new(BTreeSet::new()),
                master: OnceLock::new(),
                remote: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// The tonic server for this service (refusing calls without the token, when it has one).
    pub fn into_server(self) -> InterceptedService<pb::planner_server::PlannerServer<Self>, Check> {
        let check = Check::new(self.inner.config.token.clone(), "the planner");
        InterceptedService::new(
            pb::planner_server::PlannerServer::new(self)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            check,
        )
    }

    /// A client of a daemon over `channel`, carrying the cluster's token.
    fn daemon_client(&self, channel: Channel) -> DaemonClient<AuthChannel> {
        daemon_client(channel, &self.inner.config.token)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether worker `w` is lost: the watch found it silent for [`LOST_AFTER`] heartbeat
    /// intervals and not answering a direct call either, or an invocation lost it. `now` is
    /// when the caller looks (kept for the callers that report for how long).
    fn is_lost(&self, w: &Worker, _now: Instant) -> bool {
        w.noted_lost
    }

    /// The central engine, started on first use (on the caller's tokio runtime).
    fn master(&self) -> &Master {
        self.inner.master.get_or_init(|| {
            Master::start(
                Arc::new(Registry(Arc::downgrade(&self.inner))),
                self.inner.counters.messages.clone(),
                self.inner.config.heartbeat_interval,
            )
        })
    }

    /// The remote tier MasterSP needs, connected on first use; `workflow` is named in errors.
    async fn remote_store(&self, workflow: &str) -> Result<RemoteStore, Status> {
        let mut remote = self.inner.remote.lock().await;
        if let Some(store) = remote.as_ref() {
            return Ok(store.clone());
        }
        let Some(url) = &self.inner.config.redis else {
            return Err(Status::failed_precondition(format!(
                "workflow `{workflow}` cannot run in MasterSP mode: the planner has no remote tier (Redis), which \
                 MasterSP passes every object through; start the planner with --redis redis://HOST:PORT (`faasflow up` \
                 does when redis-server is installed), or deploy in WorkerSP mode"
            )));
        };
        match RemoteStore::connect(url, REDIS_TIMEOUT).await {
            Ok(store) => {
                *remote = Some(store.clone());
                Ok(store)
            }
            Err(RemoteError::Unreachable { url, reason }) => Err(Status::unavailable(format!(
                "workflow `{workflow}` cannot run in MasterSP mode: the planner cannot reach Redis at {url} ({reason}), \
                 which MasterSP passes every object through; start redis-server there, or deploy in WorkerSP mode"
            ))),
            Err(e) => Err(Status::failed_precondition(format!(
                "workflow `{workflow}` cannot run in MasterSP mode: {e}; fix the planner's --redis URL, or deploy in WorkerSP mode"
            ))),
        }
    }
}

/// The task whose worker is an invocation's entry: the first task on the plan's critical path
/// (the `Start` to the other workers then happens off that path), else the first task in
/// topological order.
fn entry_task(wf: &Workflow, plan: &Plan) -> Option<faasflow_core::NodeId> {
    plan.critical_path
        .nodes
        .iter()
        .copied()
        .find(|n| wf.graph[*n].task().is_some())
        .or_else(|| wf.topo_order().into_iter().find(|n| wf.graph[*n].task().is_some()))
}

/// A worker of a plan: its name and its daemon's address.
#[derive(Debug, Clone)]
struct Target {
    name: String,
    addr: SocketAddr,
}

/// Installs `req` on one daemon, with a fresh connection so that an unreachable daemon is
/// named as such.
async fn install_on(target: &Target, token: &Option<Token>, req: pb::InstallPlanRequest) -> Result<(), String> {
    let channel = endpoint(target.addr).connect().await.map_err(|e| {
        format!(
            "cannot reach worker `{}` at {}: {}; is its daemon running?",
            target.name,
            target.addr,
            chain(&e)
        )
    })?;
    let mut client = daemon_client(channel, token);
    match tokio::time::timeout(INSTALL_TIMEOUT, client.install_plan(req)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(status)) if is_transport(&status) => Err(format!(
            "cannot reach worker `{}` at {}: {}; is its daemon running?",
            target.name,
            target.addr,
            describe(&status)
        )),
        Ok(Err(status)) => Err(format!(
            "worker `{}` at {} refused the plan: {}",
            target.name,
            target.addr,
            describe(&status)
        )),
        Err(_) => Err(format!(
            "worker `{}` at {} did not install the plan within {} s",
            target.name,
            target.addr,
            INSTALL_TIMEOUT.as_secs()
        )),
    }
}

/// Drops a version from one daemon; failures are logged (the daemon may be gone).
async fn drop_on(target: Target, token: Option<Token>, workflow: String, version: u64) {
    let result = async {
        let channel = endpoint(target.addr).connect().await.map_err(|e| chain(&e))?;
        let req = pb::DropPlanRequest {
            workflow: workflow.clone(),
            version,
        };
        match tokio::time::timeout(DROP_TIMEOUT, daemon_client(channel, &token).drop_plan(req)).await {
            Err(_) => Err(format!("no answer within {} s", DROP_TIMEOUT.as_secs())),
            // Gone already (dropped once, or its daemon started again): what was asked.
            Ok(Err(s)) if s.code() == tonic::Code::NotFound => Ok(()),
            Ok(Err(s)) => Err(describe(&s)),
            Ok(Ok(_)) => Ok(()),
        }
    }
    .await;
    if let Err(e) = result {
        eprintln!(
            "planner: could not drop workflow `{workflow}` version {version} from worker `{}` at {}: {e}",
            target.name, target.addr
        );
    }
}

impl PlannerService {
    /// Drops every version of `workflow` that is not the newest and has no invocation in
    /// flight: removed here at once, and from its daemons in the background.
    fn drop_drained(&self, state: &mut State, workflow: &str) {
        let Some(deployed) = state.workflows.get_mut(workflow) else {
            return;
        };
        let mut drained = Vec::new();
        let mut i = 1;
        while i < deployed.versions.len() {
            if deployed.versions[i].in_flight == 0 {
                drained.push(deployed.versions.remove(i));
            } else {
                i += 1;
            }
        }
        for v in drained {
            if v.plan.mode == Mode::MasterSp
                && let Some(master) = self.inner.master.get()
            {
                master.uninstall(workflow, v.version);
            }
            for name in &v.daemons {
                let Some(w) = state.workers.get(name) else { continue };
                let target = Target {
                    name: name.clone(),
                    addr: w.grpc_addr,
                };
                tokio::spawn(drop_on(
                    target,
                    self.inner.config.token.clone(),
                    workflow.to_owned(),
                    v.version,
                ));
            }
        }
    }

    /// The live workers, sorted by name, as the partitioner sees them.
    fn live_cluster(&self) -> (ClusterView, BTreeMap<String, Worker>) {
        let now = Instant::now();
        let state = self.state();
        let live: BTreeMap<String, Worker> = state
            .workers
            .iter()
            .filter(|(_, w)| !self.is_lost(w, now))
            .map(|(n, w)| (n.clone(), w.clone()))
            .collect();
        let cluster = ClusterView {
            workers: live
                .iter()
                .map(|(name, w)| WorkerView {
                    name: name.clone(),
                    slots: w.slots,
                })
                .collect(),
        };
        (cluster, live)
    }

    fn not_found_workflow(&self, state: &State, workflow: &str) -> Status {
        let known: Vec<&str> = state.workflows.keys().map(String::as_str).collect();
        if known.is_empty() {
            Status::not_found(format!(
                "workflow `{workflow}` is not deployed; no workflow is (deploy one with `faasflow deploy FILE`)"
            ))
        } else {
            Status::not_found(format!(
                "workflow `{workflow}` is not deployed; deployed workflows: {}",
                list_names(known, 20)
            ))
        }
    }
}

/// Index of the version asked for (`None`: the newest) in a workflow's versions.
fn find_version(workflow: &str, deployed: &Deployed, version: Option<u64>) -> Result<usize, Status> {
    match version {
        None if deployed.versions.is_empty() => Err(Status::not_found(format!(
            "workflow `{workflow}` has no installed version"
        ))),
        None => Ok(0),
        Some(v) => deployed.versions.iter().position(|x| x.version == v).ok_or_else(|| {
            let mut known: Vec<String> = deployed.versions.iter().map(|x| x.version.to_string()).collect();
            if known.is_empty() {
                known.push("none".into());
            }
            let dropped = if v <= deployed.last && v > 0 {
                " (it was dropped once no invocation ran on it and a newer version existed)"
            } else {
                ""
            };
            Status::not_found(format!(
                "workflow `{workflow}` has no version {v}{dropped}; its versions: {}",
                known.join(", ")
            ))
        }),
    }
}

/// Decrements a version's in-flight count when an invocation ends, however it ends (the
/// client may go away mid-invocation, which drops the request's future).
struct InFlight {
    service: PlannerService,
    workflow: String,
    version: u64,
}

impl InFlight {
    /// Counts one more invocation in flight on version `index` (number `version`) of
    /// `workflow`, until the guard is dropped.
    fn hold(service: &PlannerService, state: &mut State, workflow: &str, index: usize, version: u64) -> InFlight {
        if let Some(v) = state
            .workflows
            .get_mut(workflow)
            .and_then(|d| d.versions.get_mut(index))
        {
            v.in_flight += 1;
        }
        InFlight {
            service: service.clone(),
            workflow: workflow.to_owned(),
            version,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.service.state();
        if let Some(v) = state
            .workflows
            .get_mut(&self.workflow)
            .and_then(|d| d.versions.iter_mut().find(|v| v.version == self.version))
        {
            v.in_flight = v.in_flight.saturating_sub(1);
        }
        let workflow = std::mem::take(&mut self.workflow);
        self.service.drop_drained(&mut state, &workflow);
    }
}

#[tonic::async_trait]
impl pb::planner_server::Planner for PlannerService {
    async fn register_worker(
        &self,
        request: Request<pb::RegisterWorkerRequest>,
    ) -> Result<Response<pb::RegisterWorkerResponse>, Status> {
        self.register(request.into_inner()).await.map(Response::new)
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        Ok(Response::new(self.beat(request.into_inner())))
    }

    async fn deploy(&self, request: Request<pb::DeployRequest>) -> Result<Response<pb::DeployResponse>, Status> {
        let req = request.into_inner();
        let mode = match pb::Mode::try_from(req.mode) {
            Ok(pb::Mode::WorkerSp) | Ok(pb::Mode::Unspecified) => Mode::WorkerSp,
            Ok(pb::Mode::MasterSp) => Mode::MasterSp,
            Ok(pb::Mode::WorkerSpRemote) => Mode::WorkerSpRemote,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "Deploy: `mode` {} is unknown",
                    req.mode
                )));
            }
        };
        let file = if req.file_name.is_empty() {
            "<deploy request>"
        } else {
            &req.file_name
        };
        let default_name = if req.default_name.is_empty() {
            std::path::Path::new(file)
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("workflow")
                .to_owned()
        } else {
            req.default_name.clone()
        };
        let loaded = load_str(&req.source, file, &default_name).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let wf = Arc::new(loaded.workflow);
        self.deploy_workflow(wf.clone(), wf, mode, req.allow_overcommit, file)
            .await
            .map(Response::new)
    }

    async fn invoke(&self, request: Request<pb::InvokeRequest>) -> Result<Response<pb::InvokeResponse>, Status> {
        let started = Instant::now();
        let result = self.invoke_rerunning(request.into_inner()).await.map(Response::new);
        let outcome = match &result {
            Ok(r) => match pb::InvocationStatus::try_from(r.get_ref().status) {
                Ok(pb::InvocationStatus::Succeeded) => "ok",
                Ok(pb::InvocationStatus::DeadlineExceeded) => "deadline",
                _ => "failed",
            },
            Err(s) if s.code() == tonic::Code::ResourceExhausted => "overloaded",
            Err(_) => "refused",
        };
        let mut state = self.state();
        *state.outcomes.entry(outcome).or_default() += 1;
        if outcome != "refused" && outcome != "overloaded" {
            state.invocation_seconds.observe(started.elapsed().as_secs_f64());
        }
        result
    }

    async fn get_plan(&self, request: Request<pb::GetPlanRequest>) -> Result<Response<pb::GetPlanResponse>, Status> {
        let req = request.into_inner();
        let state = self.state();
        let Some(deployed) = state.workflows.get(&req.workflow) else {
            return Err(self.not_found_workflow(&state, &req.workflow));
        };
        let index = find_version(&req.workflow, deployed, req.version)?;
        Ok(Response::new(pb::GetPlanResponse {
            plan: Some(deployed.versions[index].proto.clone()),
        }))
    }

    async fn metrics(&self, _request: Request<pb::MetricsRequest>) -> Result<Response<pb::MetricsResponse>, Status> {
        let now = Instant::now();
        let state = self.state();
        let c = &self.inner.counters;
        let registered: Vec<pb::RegisteredWorker> = state
            .workers
            .iter()
            .map(|(name, w)| pb::RegisteredWorker {
                name: name.clone(),
                grpc_addr: w.grpc_addr.to_string(),
                quic_addr: w.quic_addr.map(|a| a.to_string()).unwrap_or_default(),
                slots: w.slots,
                silent_ms: u64::try_from(now.duration_since(w.last_seen).as_millis()).unwrap_or(u64::MAX),
                lost: self.is_lost(w, now),
            })
            .collect();
        Ok(Response::new(pb::MetricsResponse {
            invocations: c.invocations.load(Ordering::Relaxed),
            invocation_messages_sent: c.messages.sent.load(Ordering::Relaxed),
            invocation_messages_received: c.messages.received.load(Ordering::Relaxed),
            workers: registered.iter().filter(|w| !w.lost).count() as u32,
            versions: state.workflows.values().map(|d| d.versions.len() as u32).sum(),
            registered,
        }))
    }

    async fn report(&self, request: Request<pb::ReportRequest>) -> Result<Response<pb::ReportResponse>, Status> {
        let id = request.into_inner().invocation_id;
        let state = self.state();
        match state.reports.iter().find(|(i, _, _)| *i == id) {
            Some((_, workflow, json)) => Ok(Response::new(pb::ReportResponse {
                workflow: workflow.clone(),
                report_json: json.to_vec(),
            })),
            None => Err(Status::not_found(format!(
                "the planner has no report of invocation {id}: it keeps the reports of the latest {KEPT_REPORTS} \
                 invocations{}",
                match (state.reports.front(), state.reports.back()) {
                    (Some((first, _, _)), Some((last, _, _))) => format!(" (now {first} to {last})"),
                    _ => ", and none has ended yet".to_owned(),
                }
            ))),
        }
    }

    async fn memory(&self, request: Request<pb::MemoryRequest>) -> Result<Response<pb::MemoryResponse>, Status> {
        let req = request.into_inner();
        let state = self.state();
        if !req.workflow.is_empty() && !state.workflows.contains_key(&req.workflow) {
            return Err(self.not_found_workflow(&state, &req.workflow));
        }
        let margin = self.inner.config.margin_mib;
        let workflows = state
            .workflows
            .iter()
            .filter(|(name, _)| req.workflow.is_empty() || **name == req.workflow)
            .filter_map(|(name, d)| {
                let v = d.versions.first()?;
                Some(workflow_memory(
                    name,
                    v.version,
                    &v.declared,
                    &v.wf,
                    &d.measured,
                    margin,
                ))
            })
            .collect();
        Ok(Response::new(pb::MemoryResponse { workflows }))
    }
}

/// `wf` with what its tasks were measured at — each measured task's peak as its `memory_use`
/// (at most its `memory`), and for pack functions the median runtime as `runtime` and the
/// largest sizes of its outputs — when some task's peak differs from its `memory_use` by more
/// than `threshold_mib`, or a pack function's runtime or an output's size is off by more than
/// `factor` (and by more than 1 ms, or 64 KiB); also says which tasks are, and how.
fn with_measured(
    wf: &Workflow,
    measured: &BTreeMap<String, Measured>,
    threshold_mib: f64,
    factor: f64,
) -> Option<(Workflow, String)> {
    const MIB: f64 = (1u64 << 20) as f64;
    const RUNTIME_FLOOR_MS: f64 = 1.0;
    const SIZE_FLOOR: f64 = 64.0 * 1024.0;
    // (With an infinite factor, `factor * 0.0` is NaN and the comparison false: never off.)
    let off = |a: f64, b: f64, floor: f64| (a - b).abs() > floor && a.max(b) > factor * a.min(b);
    // What is far enough off, per task; the workflow is copied only when something is (this
    // runs after every invocation).
    let mut diverging = Vec::new();
    for n in wf.graph.node_indices() {
        let Some(t) = wf.graph[n].task() else { continue };
        let Some(m) = measured.get(&wf.graph[n].name) else {
            continue;
        };
        let name = &wf.graph[n].name;
        if m.peak_calls > 0 {
            let (peak, planned) = (
                (m.peak as f64 / MIB).min(t.spec.memory_mib as f64),
                t.spec.memory_use_mib,
            );
            if (peak - planned).abs() > threshold_mib {
                diverging.push(format!("`{name}`: planned with {planned:.0} MiB, measured {peak:.0}"));
            }
        }
        if t.spec.pack.is_none() {
            continue;
        }
        if let Some(ms) = m.runtime_ms()
            && off(ms, t.spec.runtime_ms, RUNTIME_FLOOR_MS)
        {
            diverging.push(format!(
                "`{name}`: planned to run {:.1} ms, measured {ms:.1}",
                t.spec.runtime_ms
            ));
        }
        for o in &t.spec.outputs {
            if let Some(&size) = m.outputs.get(&o.name)
                && off(size as f64, o.size as f64, SIZE_FLOOR)
            {
                diverging.push(format!(
                    "`{name}.{}`: planned at {} bytes, measured {size}",
                    o.name, o.size
                ));
            }
        }
    }
    if diverging.is_empty() {
        return None;
    }
    let mut out = wf.clone();
    for n in wf.graph.node_indices() {
        let Some(m) = measured.get(&wf.graph[n].name) else {
            continue;
        };
        let NodeKind::Task(t) = &mut out.graph[n].kind else {
            continue;
        };
        if m.peak_calls > 0 {
            t.spec.memory_use_mib = (m.peak as f64 / MIB).min(t.spec.memory_mib as f64);
        }
        if t.spec.pack.is_none() {
            continue;
        }
        if let Some(ms) = m.runtime_ms() {
            t.spec.runtime_ms = ms;
        }
        for o in &mut t.spec.outputs {
            if let Some(&size) = m.outputs.get(&o.name) {
                o.size = size;
            }
        }
    }
    Some((out, diverging.join(", ")))
}

/// A workflow's memory: per task, declared and measured, and the quota `Σ O(v)` with
/// `O(v) = max(memory − use − μ, 0)` from either.
fn workflow_memory(
    name: &str,
    version: u64,
    wf: &Workflow,
    planned: &Workflow,
    measured: &BTreeMap<String, Measured>,
    margin_mib: f64,
) -> pb::WorkflowMemory {
    const MIB: f64 = (1u64 << 20) as f64;
    let quota = |memory: u64, used: f64| -> u64 { (memory as f64 - used - margin_mib * MIB).max(0.0) as u64 };
    let tasks: Vec<pb::TaskMemory> = wf
        .graph
        .node_indices()
        .filter_map(|n| {
            let t = wf.graph[n].task()?;
            let memory = t.spec.memory_mib << 20;
            let declared = t.spec.memory_use_mib * MIB;
            let m = measured
                .get(&wf.graph[n].name)
                .filter(|m| m.peak_calls > 0)
                .map(|m| (m.peak, m.peak_calls));
            let declared_quota_bytes = quota(memory, declared);
            let planned_use = planned
                .graph
                .node_weights()
                .find(|p| p.name == wf.graph[n].name)
                .and_then(|p| p.task())
                .map_or(declared, |p| p.spec.memory_use_mib * MIB);
            Some(pb::TaskMemory {
                planned_use_bytes: planned_use as u64,
                task: wf.graph[n].name.clone(),
                memory_bytes: memory,
                declared_use_bytes: declared as u64,
                measured_peak_bytes: m.map(|(peak, _)| peak),
                calls_measured: m.map_or(0, |(_, n)| n),
                declared_quota_bytes,
                quota_bytes: m.map_or(declared_quota_bytes, |(peak, _)| quota(memory, peak as f64)),
            })
        })
        .collect();
    pb::WorkflowMemory {
        workflow: name.to_owned(),
        version,
        margin_mib,
        declared_quota_bytes: tasks.iter().map(|t| t.declared_quota_bytes).sum(),
        quota_bytes: tasks.iter().map(|t| t.quota_bytes).sum(),
        tasks,
    }
}

/// Where an invocation goes.
enum Route {
    /// WorkerSP: to the entry daemon.
    Worker {
        id: u64,
        version: u64,
        entry: Target,
        client: Box<DaemonClient<AuthChannel>>,
        guard: InFlight,
    },
    /// MasterSP: to the central engine.
    Master { id: u64, version: u64, guard: InFlight },
    /// A worker of the version is lost, or does not hold it (it restarted): nothing started;
    /// the version must be repaired first ([`PlannerService::repair`]).
    NotReady { message: String },
}

impl PlannerService {
    /// The planner's metrics, as Prometheus text (`faasflow planner --metrics-listen` serves
    /// them at `/metrics`).
    pub fn metrics_text(&self) -> String {
        let now = Instant::now();
        let state = self.state();
        let c = &self.inner.counters;
        let mut e = faasflow_core::metrics::Exposition::new();
        for outcome in ["ok", "failed", "deadline", "refused", "overloaded"] {
            e.counter(
                "faasflow_planner_invocations_total",
                "Invocations answered, by outcome",
                &[("outcome", outcome)],
                state.outcomes.get(outcome).copied().unwrap_or(0) as f64,
            );
        }
        e.histogram(
            "faasflow_planner_invocation_seconds",
            "End to end of the invocations the planner forwarded",
            &[],
            &state.invocation_seconds,
        );
        e.counter(
            "faasflow_planner_invocation_messages_total",
            "Invocation messages between the planner and daemons",
            &[("direction", "sent")],
            c.messages.sent.load(Ordering::Relaxed) as f64,
        );
        e.counter(
            "faasflow_planner_invocation_messages_total",
            "Invocation messages between the planner and daemons",
            &[("direction", "received")],
            c.messages.received.load(Ordering::Relaxed) as f64,
        );
        let lost = state.workers.values().filter(|w| self.is_lost(w, now)).count();
        e.gauge(
            "faasflow_planner_workers",
            "Registered workers, live or lost",
            &[("state", "live")],
            (state.workers.len() - lost) as f64,
        );
        e.gauge(
            "faasflow_planner_workers",
            "Registered workers, live or lost",
            &[("state", "lost")],
            lost as f64,
        );
        for (name, d) in &state.workflows {
            e.gauge(
                "faasflow_planner_versions",
                "Installed versions per workflow",
                &[("workflow", name)],
                d.versions.len() as f64,
            );
        }
        e.finish()
    }

    /// `Invoke`: routes one invocation and waits for its result.
    /// Runs an invocation; when a worker it used is lost and every function of its workflow
    /// is idempotent (and no version was asked for), plans the workflow again onto the live
    /// workers and runs it again from its input, within its deadline (at most
    /// [`MAX_RERUNS`] times). The answer's report lists the earlier runs' errors.
    async fn invoke_rerunning(&self, mut req: pb::InvokeRequest) -> Result<pb::InvokeResponse, Status> {
        let started = Instant::now();
        let mut earlier: Vec<String> = Vec::new();
        loop {
            let (mut response, run) = self.invoke_one(req.clone()).await?;
            let left = run.deadline.saturating_sub(started.elapsed());
            let failed = response.status == pb::InvocationStatus::Failed as i32;
            let lost = match run.lost {
                Some(w) if failed && run.idempotent && req.version.is_none() && earlier.len() < MAX_RERUNS => w,
                _ => return Ok(with_earlier_runs(response, earlier)),
            };
            if left.is_zero() {
                return Ok(with_earlier_runs(response, earlier));
            }
            eprintln!(
                "planner: invocation {} of workflow `{}` lost worker `{lost}`; its functions are idempotent: running it again from its input on the live workers",
                response.invocation_id, req.workflow
            );
            // A daemon said so (one that was itself frozen finds every peer gone): the
            // planner asks the worker before it plans around it.
            let _ = tokio::time::timeout(left, self.confirm_lost(&lost)).await;
            match tokio::time::timeout(left, self.repair(&req.workflow)).await {
                Ok(Ok(())) => {}
                Ok(Err(why)) => {
                    response.error = format!("{}; it was not run again: {why}", response.error);
                    return Ok(with_earlier_runs(response, earlier));
                }
                Err(_) => {
                    response.error = format!(
                        "{}; it was not run again: the workflow was not planned again within its deadline",
                        response.error
                    );
                    return Ok(with_earlier_runs(response, earlier));
                }
            }
            earlier.push(response.error);
            let left = run.deadline.saturating_sub(started.elapsed());
            req.deadline_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1);
        }
    }

    async fn invoke_one(&self, req: pb::InvokeRequest) -> Result<(pb::InvokeResponse, RunInfo), Status> {
        self.inner.counters.invocations.fetch_add(1, Ordering::Relaxed);
        let input: serde_json::Value = serde_json::from_slice(&req.input_json)
            .map_err(|e| Status::invalid_argument(format!("the input is not valid JSON: {e}")))?;
        if !input.is_object() {
            return Err(Status::invalid_argument(
                "the input must be a JSON object of the workflow's named inputs, e.g. {\"text\": \"hello\"}",
            ));
        }
        let requested = (req.deadline_ms > 0).then(|| Duration::from_millis(req.deadline_ms));
        // The request's limit, else the workflow's `deadline`, else the planner's default.
        let mut deadline = requested.unwrap_or(self.inner.config.default_deadline);
        let mut idempotent: bool;
        let mut replanned = false;
        // Choose the version, count the invocation in, and find the entry daemon, under one
        // lock; when the entry is lost, plan the workflow again onto the live workers (nothing
        // has run yet, so that is safe for any workflow) and choose again, once.
        let route = loop {
            let route = 'route: {
                let mut state = self.state();
                let now = Instant::now();
                state.next_invocation += 1;
                let id = state.next_invocation;
                let Some(deployed) = state.workflows.get(&req.workflow) else {
                    return Err(self.not_found_workflow(&state, &req.workflow));
                };
                let index = find_version(&req.workflow, deployed, req.version)?;
                let in_flight: u64 = state
                    .workflows
                    .values()
                    .flat_map(|d| d.versions.iter())
                    .map(|v| v.in_flight)
                    .sum();
                let limit = self.inner.config.max_in_flight;
                if in_flight >= limit {
                    return Err(Status::resource_exhausted(format!(
                        "overloaded: {in_flight} invocations are in flight on the planner (its --max-in-flight is {limit}); \
                     invocation of workflow `{}` refused, retry later",
                        req.workflow
                    )));
                }
                let Some(deployed) = state.workflows.get(&req.workflow) else {
                    return Err(self.not_found_workflow(&state, &req.workflow));
                };
                let v = &deployed.versions[index];
                if let (None, Some(ms)) = (requested, v.wf.deadline_ms) {
                    deadline = Duration::from_millis(ms);
                }
                idempotent = v.wf.idempotent();
                // Never start what would wait on a worker that cannot run its part.
                if let Some(why) = self.version_fault(&state, v, now) {
                    let message = format!(
                        "workflow `{}` version {} cannot run now: {why}",
                        req.workflow, v.version
                    );
                    break 'route Route::NotReady { message };
                }
                if v.plan.mode == Mode::MasterSp {
                    let version = v.version;
                    let guard = InFlight::hold(self, &mut state, &req.workflow, index, version);
                    Route::Master { id, version, guard }
                } else {
                    let Some(first) = entry_task(&v.wf, &v.plan) else {
                        return Err(Status::failed_precondition(format!(
                            "workflow `{}` has no task to start",
                            req.workflow
                        )));
                    };
                    let entry = v.cluster.workers[v.plan.worker_of(first) as usize].name.clone();
                    let version = v.version;
                    let Some(w) = state.workers.get(&entry) else {
                        return Err(Status::unavailable(format!(
                            "worker `{entry}`, which starts workflow `{}` version {version}, is not registered; \
                     start its daemon or deploy the workflow again",
                            req.workflow
                        )));
                    };
                    let entry = Target {
                        name: entry,
                        addr: w.grpc_addr,
                    };
                    let client = w.client.clone();
                    let guard = InFlight::hold(self, &mut state, &req.workflow, index, version);
                    Route::Worker {
                        id,
                        version,
                        entry,
                        client: Box::new(client),
                        guard,
                    }
                }
            };
            match route {
                Route::NotReady { message } if req.version.is_none() && !replanned => {
                    replanned = true;
                    // Nothing has run: planning it again (or installing it where it is
                    // missing) is safe for any workflow.
                    match tokio::time::timeout(deadline, self.repair(&req.workflow)).await {
                        Ok(Ok(())) => continue,
                        Ok(Err(why)) => {
                            return Err(Status::unavailable(format!("{message}; repairing it failed: {why}")));
                        }
                        Err(_) => {
                            return Err(Status::unavailable(format!(
                                "{message}; it was not repaired within the deadline"
                            )));
                        }
                    }
                }
                Route::NotReady { message } => {
                    let hint = if req.version.is_some() {
                        "invoke the newest version (without --version), which the planner repairs"
                    } else {
                        "retry shortly: the planner plans it again onto the live workers"
                    };
                    return Err(Status::unavailable(format!("{message}; {hint}")));
                }
                route => break route,
            }
        };
        let (id, version, entry, mut client, guard) = match route {
            Route::Master { id, version, guard } => {
                let response = self.invoke_master(&req.workflow, version, id, input, deadline).await;
                drop(guard);
                if let Ok((r, _)) = &response {
                    self.note_report(id, &req.workflow, &r.report_json);
                }
                return response.map(|(r, lost)| {
                    let run = RunInfo {
                        deadline,
                        idempotent,
                        lost,
                    };
                    (r, run)
                });
            }
            Route::Worker {
                id,
                version,
                entry,
                client,
                guard,
            } => (id, version, entry, *client, guard),
            Route::NotReady { message } => return Err(Status::unavailable(message)),
        };
        let message = pb::DaemonInvokeRequest {
            workflow: req.workflow.clone(),
            version,
            invocation_id: id,
            input_json: req.input_json,
            deadline_ms: u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
        };
        self.inner.counters.messages.sent.fetch_add(1, Ordering::Relaxed);
        // The entry daemon ends the invocation at its deadline and answers with the report;
        // waiting a little longer lets that answer arrive (it names the steps still open).
        let outcome = tokio::time::timeout(deadline + DEADLINE_GRACE, client.invoke(message)).await;
        drop(guard);
        let failed = |status: pb::InvocationStatus, error: String| pb::InvokeResponse {
            invocation_id: id,
            status: status as i32,
            output_json: Vec::new(),
            error,
            report_json: Vec::new(),
        };
        let mut lost = None;
        let response = match outcome {
            Err(_) => failed(
                pb::InvocationStatus::DeadlineExceeded,
                format!(
                    "invocation {id} of workflow `{}` version {version} did not end within its deadline of {} ms \
                     (entry worker `{}` at {})",
                    req.workflow,
                    deadline.as_millis(),
                    entry.name,
                    entry.addr
                ),
            ),
            Ok(Err(status)) if status.code() == tonic::Code::ResourceExhausted => {
                return Err(Status::resource_exhausted(format!(
                    "invocation {id} of workflow `{}` version {version} was refused by worker `{}`: {}",
                    req.workflow,
                    entry.name,
                    status.message()
                )));
            }
            Ok(Err(status)) => {
                if is_transport(&status) {
                    self.mark_lost(&entry.name);
                    lost = Some(entry.name.clone());
                }
                failed(
                    pb::InvocationStatus::Failed,
                    format!(
                        "worker `{}` ({}) was lost during invocation {id} of workflow `{}` version {version}: {}",
                        entry.name,
                        entry.addr,
                        req.workflow,
                        describe(&status)
                    ),
                )
            }
            Ok(Ok(answer)) => {
                self.inner.counters.messages.received.fetch_add(1, Ordering::Relaxed);
                let answer = answer.into_inner();
                if !answer.accepted {
                    return Err(Status::failed_precondition(format!(
                        "worker `{}` did not start invocation {id} of workflow `{}` version {version}: {}",
                        entry.name, req.workflow, answer.reason
                    )));
                }
                let (response, lost_there) = report_response(id, &entry.name, answer.report_json);
                lost = lost_there;
                response
            }
        };
        self.note_report(id, &req.workflow, &response.report_json);
        Ok((
            response,
            RunInfo {
                deadline,
                idempotent,
                lost,
            },
        ))
    }

    /// Plans `wf` for the live workers and installs it as the workflow's next version;
    /// `declared` is the workflow as its user deployed it (`wf` itself, or for a re-plan from
    /// measured memory, the one it came from). `file` names where it came from in errors.
    async fn deploy_workflow(
        &self,
        wf: Arc<Workflow>,
        declared: Arc<Workflow>,
        mode: Mode,
        allow_overcommit: bool,
        file: &str,
    ) -> Result<pb::DeployResponse, Status> {
        if mode == Mode::MasterSp {
            self.remote_store(&wf.name).await?;
        }
        let _one_at_a_time = self.inner.deploying.lock().await;
        self.deploy_locked(wf, declared, mode, allow_overcommit, file).await
    }

    /// [`PlannerService::deploy_workflow`] with the deploy lock held (and, for MasterSP, the
    /// remote tier connected).
    async fn deploy_locked(
        &self,
        wf: Arc<Workflow>,
        declared: Arc<Workflow>,
        mode: Mode,
        allow_overcommit: bool,
        file: &str,
    ) -> Result<pb::DeployResponse, Status> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (cluster, live) = self.live_cluster();
            let version = {
                let mut state = self.state();
                let last = state.workflows.get(&wf.name).map_or(0, |d| d.last);
                let seen = state.seen_versions.get(&wf.name).copied().unwrap_or(0);
                let version = last.max(seen) + 1;
                state.installing.insert((wf.name.clone(), version));
                // Never given again, whatever happens to it.
                state.seen_versions.insert(wf.name.clone(), version);
                version
            };
            let result = self
                .install_version(
                    wf.clone(),
                    declared.clone(),
                    mode,
                    allow_overcommit,
                    file,
                    cluster,
                    live,
                    version,
                )
                .await;
            self.state().installing.remove(&(wf.name.clone(), version));
            match result {
                Ok(r) => return Ok(r),
                // Only lost workers failed it: plan it again for the live ones, once.
                Err((status, true)) if attempt == 1 => {
                    eprintln!("planner: {}; planning it again onto the live workers", status.message());
                }
                Err((status, _)) => return Err(status),
            }
        }
    }

    /// Returns once worker `name` is lost (or gone from the registry).
    async fn until_lost(&self, name: &str) {
        let interval = self.inner.config.heartbeat_interval;
        loop {
            tokio::time::sleep(interval / 2).await;
            let now = Instant::now();
            if self.state().workers.get(name).is_none_or(|w| self.is_lost(w, now)) {
                return;
            }
        }
    }

    /// Plans `wf` as `version` for `cluster` and installs it on its workers.
    #[allow(clippy::too_many_arguments)]
    async fn install_version(
        &self,
        wf: Arc<Workflow>,
        declared: Arc<Workflow>,
        mode: Mode,
        allow_overcommit: bool,
        file: &str,
        cluster: ClusterView,
        live: BTreeMap<String, Worker>,
        version: u64,
    ) -> Result<pb::DeployResponse, (Status, bool)> {
        let cfg = PlannerConfig {
            mode,
            allow_overcommit,
            margin_mib: self.inner.config.margin_mib,
            version,
            ..PlannerConfig::default()
        };
        let plan = partition(&wf, &cluster, &cfg).map_err(|e| {
            let status = Status::failed_precondition(format!("{file}: cannot plan workflow `{}`: {e}", wf.name));
            (status, false)
        })?;
        let proto = plan_to_proto(&wf, &plan, &cluster);
        let digest = faasflow_rpc::convert::plan_digest(&proto);
        // The workers running a task, in plan order.
        let mut used: Vec<u32> = wf
            .graph
            .node_indices()
            .filter(|n| wf.graph[*n].task().is_some())
            .map(|n| plan.worker_of(n))
            .collect();
        used.sort_unstable();
        used.dedup();
        let targets: Vec<Target> = used
            .iter()
            .filter_map(|w| cluster.workers.get(*w as usize))
            .filter_map(|v| {
                live.get(&v.name).map(|w| Target {
                    name: v.name.clone(),
                    addr: w.grpc_addr,
                })
            })
            .collect();
        let peers: Vec<pb::PeerAddress> = targets
            .iter()
            .filter_map(|t| {
                live.get(&t.name).and_then(|w| w.quic_addr).map(|a| pb::PeerAddress {
                    name: t.name.clone(),
                    quic_addr: a.to_string(),
                })
            })
            .collect();
        if mode == Mode::MasterSp {
            // Every task is triggered by the central engine, on the worker the plan chose.
            let placement = wf
                .graph
                .node_indices()
                .filter(|n| wf.graph[*n].task().is_some())
                .filter_map(|n| {
                    cluster
                        .workers
                        .get(plan.worker_of(n) as usize)
                        .map(|w| (n, w.name.clone()))
                })
                .collect();
            self.master()
                .install(wf.clone(), version, placement)
                .await
                .map_err(|e| (Status::failed_precondition(format!("{file}: {e}")), false))?;
        }
        let request = pb::InstallPlanRequest {
            plan: Some(proto.clone()),
            peers,
        };
        let mut installs = tokio::task::JoinSet::new();
        for t in targets.iter().cloned() {
            let req = request.clone();
            let token = self.inner.config.token.clone();
            let this = self.clone();
            installs.spawn(async move {
                // A worker that stops answering meanwhile does not hold the deploy up until
                // the install's time limit: it is lost, and the deploy plans without it.
                let r = tokio::select! {
                    r = install_on(&t, &token, req) => r.map_err(|e| (e, false)),
                    () = this.until_lost(&t.name) => Err((
                        format!("worker `{}` at {} was lost while the plan was installed", t.name, t.addr),
                        true,
                    )),
                };
                (t, r)
            });
        }
        let mut took = Vec::new();
        let mut errors = Vec::new();
        let mut lost = 0;
        while let Some(joined) = installs.join_next().await {
            match joined {
                Ok((t, Ok(()))) => took.push(t),
                Ok((_, Err((e, was_lost)))) => {
                    lost += usize::from(was_lost);
                    errors.push(e);
                }
                Err(e) => errors.push(format!("an install task failed: {e}")),
            }
        }
        if !errors.is_empty() {
            errors.sort();
            for t in took {
                drop_on(t, self.inner.config.token.clone(), wf.name.clone(), version).await;
            }
            if mode == Mode::MasterSp {
                self.master().uninstall(&wf.name, version);
            }
            let unreachable = errors.iter().all(|e| e.starts_with("cannot reach"));
            let message = format!(
                "{file}: workflow `{}` version {version} was not deployed: {}",
                wf.name,
                errors.join("; ")
            );
            let status = if unreachable || lost > 0 {
                Status::unavailable(message)
            } else {
                Status::failed_precondition(message)
            };
            return Err((status, lost == errors.len()));
        }
        let mut state = self.state();
        for t in &targets {
            if let Some(w) = state.workers.get_mut(&t.name) {
                w.held.insert((wf.name.clone(), version), digest.clone());
            }
        }
        let deployed = state.workflows.entry(wf.name.clone()).or_default();
        deployed.last = version;
        deployed.versions.insert(
            0,
            Version {
                version,
                wf: wf.clone(),
                plan,
                considered: cluster.workers.iter().map(|w| w.name.clone()).collect(),
                cluster,
                proto: proto.clone(),
                daemons: targets.iter().map(|t| t.name.clone()).collect(),
                digest,
                peers: targets
                    .iter()
                    .map(|t| (t.name.clone(), live.get(&t.name).and_then(|w| w.quic_addr)))
                    .collect(),
                in_flight: 0,
                mode,
                allow_overcommit,
                declared,
            },
        );
        self.drop_drained(&mut state, &wf.name);
        eprintln!(
            "planner: deployed workflow `{}` version {version} on {}",
            wf.name,
            targets
                .iter()
                .map(|t| format!("`{}`", t.name))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(pb::DeployResponse {
            workflow: wf.name.clone(),
            version,
            plan: Some(proto),
        })
    }

    /// Keeps an invocation's report (for `Report`) and what each of its functions was
    /// measured at.
    fn note_report(&self, id: u64, workflow: &str, report_json: &[u8]) {
        if report_json.is_empty() {
            return;
        }
        {
            let mut state = self.state();
            if state.reports.len() == KEPT_REPORTS {
                state.reports.pop_front();
            }
            state
                .reports
                .push_back((id, workflow.to_owned(), Arc::from(report_json)));
        }
        self.note_measured(workflow, report_json);
    }

    /// Keeps what each function of an invocation's report was measured at: its peak memory,
    /// runtime and output sizes.
    fn note_measured(&self, workflow: &str, report_json: &[u8]) {
        #[derive(serde::Deserialize)]
        struct Record {
            name: String,
            #[serde(default)]
            exec_us: f64,
            #[serde(default)]
            skipped: bool,
            #[serde(default)]
            error: Option<String>,
            #[serde(default)]
            peak_memory_bytes: Option<u64>,
            #[serde(default)]
            output_bytes: BTreeMap<String, u64>,
        }
        #[derive(serde::Deserialize)]
        struct Functions {
            #[serde(default)]
            functions: Vec<Record>,
        }
        let Ok(report) = serde_json::from_slice::<Functions>(report_json) else {
            return;
        };
        let mut state = self.state();
        let Some(deployed) = state.workflows.get_mut(workflow) else {
            return;
        };
        for r in report.functions {
            if r.skipped {
                continue;
            }
            let m = deployed.measured.entry(r.name).or_default();
            if let Some(peak) = r.peak_memory_bytes {
                m.peak = m.peak.max(peak);
                m.peak_calls += 1;
            }
            // A failed attempt's time and outputs say nothing about the function's.
            if r.error.is_some() {
                continue;
            }
            if m.runtimes.len() == RUNTIME_SAMPLES {
                m.runtimes.pop_front();
            }
            m.runtimes.push_back(r.exec_us / 1e3);
            for (output, bytes) in r.output_bytes {
                let e = m.outputs.entry(output).or_default();
                *e = (*e).max(bytes);
            }
        }
        let Some(threshold) = self.inner.config.replan_threshold_mib else {
            return;
        };
        if deployed.replanning {
            return;
        }
        let Some(newest) = deployed.versions.first() else {
            return;
        };
        let factor = self.inner.config.replan_factor;
        let Some((wf, diverging)) = with_measured(&newest.wf, &deployed.measured, threshold, factor) else {
            return;
        };
        deployed.replanning = true;
        let (mode, allow_overcommit, version) = (newest.mode, newest.allow_overcommit, newest.version);
        let declared = newest.declared.clone();
        drop(state);
        eprintln!(
            "planner: workflow `{workflow}` version {version}: what was measured differs from its plan's model ({diverging}); planning it again"
        );
        let this = self.clone();
        let name = workflow.to_owned();
        tokio::spawn(async move {
            let what = format!("the re-plan of `{name}` from measured values");
            if let Err(e) = this
                .deploy_workflow(Arc::new(wf), declared, mode, allow_overcommit, &what)
                .await
            {
                eprintln!("planner: {}", e.message());
            }
            if let Some(d) = this.state().workflows.get_mut(&name) {
                d.replanning = false;
            }
        });
    }

    /// Runs a MasterSP invocation on the central engine.
    async fn invoke_master(
        &self,
        workflow: &str,
        version: u64,
        id: u64,
        input: serde_json::Value,
        deadline: Duration,
    ) -> Result<(pb::InvokeResponse, Option<String>), Status> {
        let store = self.remote_store(workflow).await?;
        let master = self.master().clone();
        let run = master.invoke(workflow, version, id, input, store);
        match tokio::time::timeout(deadline, run).await {
            Ok(Ok(report)) => {
                let json = serde_json::to_vec(&report)
                    .map_err(|e| Status::internal(format!("cannot encode the report of invocation {id}: {e}")))?;
                Ok(report_response(id, "the central engine", json))
            }
            Ok(Err(StartError::Engine(e))) => {
                let message = format!("invocation {id} of workflow `{workflow}` version {version} did not start: {e}");
                Err(match e {
                    EngineError::MissingInputs { .. } | EngineError::InputNotObject { .. } => {
                        Status::invalid_argument(message)
                    }
                    _ => Status::failed_precondition(message),
                })
            }
            Ok(Err(StartError::Stopped)) => Err(Status::unavailable(format!(
                "the planner's central engine stopped during invocation {id} of workflow `{workflow}` version {version}"
            ))),
            Err(_) => {
                let message = format!(
                    "invocation {id} of workflow `{workflow}` version {version} (MasterSP) did not end within its deadline of {} ms",
                    deadline.as_millis()
                );
                // Ends it in the engine too, which deletes its objects.
                master.abort(id, message.clone());
                let response = pb::InvokeResponse {
                    invocation_id: id,
                    status: pb::InvocationStatus::DeadlineExceeded as i32,
                    output_json: Vec::new(),
                    error: message,
                    report_json: Vec::new(),
                };
                Ok((response, None))
            }
        }
    }

    /// Leaves a worker whose daemon could not be reached out of new plans until it sends a
    /// heartbeat again.
    /// An invocation lost worker `name` (its daemon unreachable, or a peer's connection to it
    /// failed): it is lost until it sends heartbeats again.
    fn mark_lost(&self, name: &str) {
        let lost_for = self.inner.config.heartbeat_interval * (LOST_AFTER + 1);
        let mut state = self.state();
        if let Some(w) = state.workers.get_mut(name) {
            if let Some(t) = Instant::now().checked_sub(lost_for) {
                w.last_seen = w.last_seen.min(t);
            }
            if !w.noted_lost {
                w.noted_lost = true;
                eprintln!(
                    "planner: worker `{name}` ({}) is lost: an invocation lost it",
                    w.grpc_addr
                );
            }
        }
    }
}

/// What [`PlannerService::invoke_rerunning`] needs to know of one run.
#[derive(Debug)]
struct RunInfo {
    /// The invocation's time limit.
    deadline: Duration,
    /// Every function of its version is idempotent.
    idempotent: bool,
    /// The worker whose loss ended it, when one did.
    lost: Option<String>,
}

/// Runs of one invocation at most, when workers are lost ([`PlannerService::invoke_rerunning`]).
const MAX_RERUNS: usize = 2;

/// `response` with the errors of the runs before it in its report (`earlier_runs`).
fn with_earlier_runs(mut response: pb::InvokeResponse, earlier: Vec<String>) -> pb::InvokeResponse {
    if earlier.is_empty() {
        return response;
    }
    if let Ok(mut report) = serde_json::from_slice::<faasflow_core::report::Report>(&response.report_json) {
        report.earlier_runs = earlier;
        if let Ok(json) = serde_json::to_vec(&report) {
            response.report_json = json;
        }
    }
    response
}

/// The answer to a client from the entry daemon's report, and the worker whose loss ended the
/// invocation when the report names one.
fn report_response(id: u64, worker: &str, report_json: Vec<u8>) -> (pb::InvokeResponse, Option<String>) {
    #[derive(serde::Deserialize)]
    struct Outcome {
        status: String,
        #[serde(default)]
        output: serde_json::Value,
        #[serde(default)]
        error: Option<String>,
        #[serde(default)]
        lost_worker: Option<String>,
    }
    let outcome = serde_json::from_slice::<Outcome>(&report_json);
    let lost = outcome.as_ref().ok().and_then(|o| o.lost_worker.clone());
    let response = match outcome {
        Ok(o) if o.status == "ok" => pb::InvokeResponse {
            invocation_id: id,
            status: pb::InvocationStatus::Succeeded as i32,
            output_json: serde_json::to_vec(&o.output).unwrap_or_default(),
            error: String::new(),
            report_json,
        },
        Ok(o) => pb::InvokeResponse {
            invocation_id: id,
            status: if o.error.as_deref().is_some_and(|e| e.starts_with(DEADLINE_PASSED)) {
                pb::InvocationStatus::DeadlineExceeded as i32
            } else {
                pb::InvocationStatus::Failed as i32
            },
            output_json: Vec::new(),
            error: o
                .error
                .unwrap_or_else(|| format!("invocation {id} ended with status `{}`", o.status)),
            report_json,
        },
        Err(e) => pb::InvokeResponse {
            invocation_id: id,
            status: pb::InvocationStatus::Failed as i32,
            output_json: Vec::new(),
            error: format!("worker `{worker}` sent a report for invocation {id} that is not valid JSON: {e}"),
            report_json,
        },
    };
    (response, lost)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_is_where_the_critical_path_starts() {
        let wf = load_str(
            "
name: two
functions:
  quick: {runtime: 1ms, outputs: {out: {type: bytes, size: 1MB}}}
  slow: {runtime: 900ms, outputs: {out: {type: bytes, size: 1MB}}}
  join: {runtime: 1ms}
steps:
  - parallel:
      - task: quick
      - task: slow
  - task: join
    inputs: {a: quick.out, b: slow.out}
",
            "two.yaml",
            "two",
        )
        .unwrap()
        .workflow;
        let cluster = ClusterView::uniform(3, 1);
        let cfg = PlannerConfig {
            mode: Mode::MasterSp,
            ..PlannerConfig::default()
        };
        let plan = partition(&wf, &cluster, &cfg).unwrap();
        let name = |n: faasflow_core::NodeId| wf.graph[n].name.clone();
        let topo_first = wf
            .topo_order()
            .into_iter()
            .find(|n| wf.graph[*n].task().is_some())
            .unwrap();
        assert_eq!(
            name(topo_first),
            "quick",
            "the test needs another first task than the path's"
        );
        assert_eq!(name(entry_task(&wf, &plan).unwrap()), "slow");
    }

    #[test]
    fn measured_runtimes_and_sizes_of_pack_functions_change_the_model() {
        let wf = load_str(
            "
name: m
functions:
  packed: {pack: p, memory: 256MiB, memory_use: 64MiB, runtime: 10ms, outputs: {out: {type: bytes, size: 1MB}}}
  synthetic: {memory: 256MiB, memory_use: 64MiB, runtime: 10ms, outputs: {out: {type: bytes, size: 1MB}}}
steps:
  - task: packed
  - task: synthetic
",
            "m.yaml",
            "m",
        )
        .unwrap()
        .workflow;
        let task = |w: &Workflow, name: &str| {
            w.graph
                .node_weights()
                .find(|n| n.name == name)
                .and_then(|n| n.task())
                .unwrap()
                .spec
                .clone()
        };
        let measured = |runtime_ms: f64, out: u64| Measured {
            peak: 64 << 20,
            peak_calls: 3,
            runtimes: [runtime_ms, runtime_ms, runtime_ms].into_iter().collect(),
            outputs: BTreeMap::from([("out".to_owned(), out)]),
        };
        // Within a factor of 2 (and the memory as planned): nothing to do.
        let close = BTreeMap::from([
            ("packed".to_owned(), measured(15.0, 1_500_000)),
            ("synthetic".to_owned(), measured(15.0, 1_500_000)),
        ]);
        assert!(with_measured(&wf, &close, 16.0, 2.0).is_none());
        // 10× slower and 10× larger: the pack function's model follows the measurements.
        let far = BTreeMap::from([("packed".to_owned(), measured(100.0, 10_000_000))]);
        let (replanned, why) = with_measured(&wf, &far, 16.0, 2.0).expect("diverging");
        assert!(
            why.contains("`packed`: planned to run 10.0 ms, measured 100.0"),
            "{why}"
        );
        assert!(
            why.contains("`packed.out`: planned at 1000000 bytes, measured 10000000"),
            "{why}"
        );
        let p = task(&replanned, "packed");
        assert_eq!((p.runtime_ms, p.outputs[0].size), (100.0, 10_000_000));
        // A synthetic body's runtime and sizes are what it does: never replaced.
        let synthetic_only = BTreeMap::from([("synthetic".to_owned(), measured(100.0, 10_000_000))]);
        assert!(with_measured(&wf, &synthetic_only, 16.0, 2.0).is_none());
        // Below the floors (1 ms, 64 KiB), a large factor alone is noise.
        let tiny = load_str(
            "name: t\nfunctions:\n  f: {pack: p, runtime: 0.1ms, outputs: {out: {type: bytes, size: 100}}}\nsteps:\n  - task: f\n",
            "t.yaml",
            "t",
        )
        .unwrap()
        .workflow;
        let mut m = measured(0.5, 5_000);
        m.peak_calls = 0;
        assert!(with_measured(&tiny, &BTreeMap::from([("f".to_owned(), m)]), 16.0, 2.0).is_none());
        // An infinite factor leaves runtimes and sizes alone, even against a declared 0.
        let zero = load_str(
            "name: z\nfunctions:\n  f: {pack: p, outputs: {out: bytes}}\nsteps:\n  - task: f\n",
            "z.yaml",
            "z",
        )
        .unwrap()
        .workflow;
        let mut m = measured(50.0, 10_000_000);
        m.peak_calls = 0;
        let m = BTreeMap::from([("f".to_owned(), m)]);
        assert!(with_measured(&zero, &m, 16.0, 2.0).is_some());
        assert!(with_measured(&zero, &m, 16.0, f64::INFINITY).is_none());
    }

    #[test]
    fn unknown_versions_are_listed() {
        let deployed = Deployed {
            last: 2,
            ..Deployed::default()
        };
        let e = find_version("wc", &deployed, Some(2)).unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        assert_eq!(
            e.message(),
            "workflow `wc` has no version 2 (it was dropped once no invocation ran on it and a newer version existed); its versions: none"
        );
        let e = find_version("wc", &deployed, Some(9)).unwrap_err();
        assert_eq!(e.message(), "workflow `wc` has no version 9; its versions: none");
    }

    #[test]
    fn reports_become_answers() {
        let (ok, _) = report_response(7, "w", br#"{"status":"ok","output":{"a":1}}"#.to_vec());
        assert_eq!(ok.status, pb::InvocationStatus::Succeeded as i32);
        assert_eq!(ok.output_json, br#"{"a":1}"#);
        let (failed, lost) = report_response(
            7,
            "w",
            br#"{"status":"failed","output":null,"error":"step `x` failed","lost_worker":"w2"}"#.to_vec(),
        );
        assert_eq!(lost.as_deref(), Some("w2"));
        assert_eq!(failed.status, pb::InvocationStatus::Failed as i32);
        assert_eq!(failed.error, "step `x` failed");
        let (garbage, _) = report_response(7, "w", b"nope".to_vec());
        assert!(
            garbage
                .error
                .starts_with("worker `w` sent a report for invocation 7 that is not valid JSON")
        );
    }
}
