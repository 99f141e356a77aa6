//! The control plane's driver: [`PlannerService`] owns the state (the worker registry, the
//! deployed workflows' versions, counters and kept reports) behind one lock and does the I/O
//! the pure parts ask for: calls to daemons, the central engine, the remote tier, the clock.
//! The gRPC adapter is `crate::rpc`; the pure parts are `crate::registry` (workers, loss),
//! `crate::versions` (versions and what is wrong with one) and `crate::measure` (re-plans
//! from measured costs).
//!
//! - **Deploy** (`deploy.rs`) plans for the live workers (sorted by name, so the same cluster
//!   gives the same plan), gives the plan the workflow's next version and installs it, in
//!   parallel, on every worker that runs one of its tasks; if one install fails, the version
//!   is dropped again from the daemons that took it and the error names the worker, its
//!   address and the cause.
//! - **Invoke** (`invoke.rs`) sends one message to the entry daemon (the owner of the first
//!   task on the plan's critical path, so that starting the other workers is off that path)
//!   and receives one back when the invocation has ended (WorkerSP: one message out and one in
//!   per invocation, counted in `Metrics`). A daemon lost mid-invocation fails it at once,
//!   naming the worker; every invocation ends within its deadline.
//! - **Workers** (`workers.rs`): registration, heartbeats, and the watch that keeps every
//!   deployment where it should be.
//! - **Red-black**: new invocations take the newest version; a version that is not the newest
//!   is dropped from its daemons as soon as no invocation runs on it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use tonic::Status;

use crate::central::{Central, CentralError, Messages, StartError, Workers};
use crate::config::{DEADLINE_GRACE, REDIS_TIMEOUT, TELL_TIMEOUT};
pub use crate::config::{
    DEFAULT_DEADLINE, DEFAULT_KEEP_EXECUTIONS, DEFAULT_KEEP_EXECUTIONS_FOR, DEFAULT_MAX_IN_FLIGHT, KEPT_REPORTS,
    ServiceConfig,
};
use crate::daemons::{Install, drop_on, install_on};
use crate::measure::{RUNTIME_SAMPLES, with_measured};
use crate::registry::{Registry, Worker};
use crate::versions::{Declared, Deployed, Target, Version, entry_task, find_version, version_fault};
use faasflow_core::dag::Workflow;
use faasflow_core::engine::{DEADLINE_PASSED, EngineError};
use faasflow_core::plan::{ClusterView, Mode, PlannerConfig, WorkerView};
use faasflow_core::text::list_names;
use faasflow_planner::partition::partition;
use faasflow_remote::{RemoteError, RemoteStore};
use faasflow_rpc::convert::WirePlan;
use faasflow_rpc::convert::state::ExecutionStatus;
use faasflow_rpc::daemon::{Daemon, DaemonError, StartInvocation, Started};

pub(crate) mod deploy;
mod durable;
pub(crate) mod executions;
pub(crate) mod invoke;
pub(crate) mod undeploy;
pub(crate) mod workers;

#[derive(Debug)]
pub(crate) struct State {
    /// The workers, live and lost.
    pub(crate) registry: Registry,
    /// A connection to each registered worker's daemon, made when it registered (reconnects
    /// by itself).
    pub(crate) clients: BTreeMap<String, Daemon>,
    pub(crate) workflows: BTreeMap<String, Deployed>,
    /// The highest version of each workflow a daemon reported holding: versions deployed
    /// from here are higher (a planner started again never reuses one).
    pub(crate) seen_versions: BTreeMap<String, u64>,
    /// Versions being installed by a deploy (not yet in `workflows`): never dropped as
    /// unknown meanwhile.
    pub(crate) installing: BTreeSet<(String, u64)>,
    pub(crate) next_invocation: u64,
    /// Invocation ids up to this one are reserved in the state directory (`u64::MAX`:
    /// without one, none need be).
    pub(crate) ids_reserved: u64,
    /// Invocations answered, by outcome (`ok`, `failed`, `deadline`, `refused`).
    pub(crate) outcomes: BTreeMap<&'static str, u64>,
    /// End to end of the invocations the planner forwarded, seconds.
    pub(crate) invocation_seconds: faasflow_rpc::metrics::Histogram,
    /// The executions kept (`executions.rs`).
    pub(crate) executions: executions::Executions,
    /// The latest invocations' reports: (id, workflow, JSON), oldest first.
    pub(crate) reports: std::collections::VecDeque<(u64, String, Arc<[u8]>)>,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) invocations: AtomicU64,
    /// Invocation messages to and from daemons (WorkerSP and MasterSP).
    pub(crate) messages: Arc<Messages>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: ServiceConfig,
    pub(crate) state: Mutex<State>,
    pub(crate) counters: Counters,
    /// Deploys one at a time, so that versions are given in order.
    pub(crate) deploying: tokio::sync::Mutex<()>,
    /// The central engine of MasterSP versions, started by the first MasterSP deploy.
    pub(crate) central: OnceLock<Central>,
    /// The remote tier, connected by the first MasterSP deploy.
    pub(crate) remote: tokio::sync::Mutex<Option<RemoteStore>>,
    /// The watch over workers' heartbeats runs ([`PlannerService::watch_workers`]).
    pub(crate) watching: std::sync::atomic::AtomicBool,
    /// Installs and drops the watch has under way: (worker, workflow, version).
    pub(crate) pending: Mutex<BTreeSet<(String, String, u64)>>,
    /// The state directory, when it has one (`durable.rs`).
    pub(crate) store: Option<Arc<crate::store::StateDir>>,
    /// Woken whenever an execution ends.
    pub(crate) execution_ended: tokio::sync::Notify,
    /// Writes execution records to the state directory (with one).
    pub(crate) writer: Option<durable::ExecutionWriter>,
    /// Uploaded input files (in the state directory, else a temporary one), or why there
    /// is nowhere to keep them.
    pub(crate) uploads: Result<crate::uploads::Uploads, crate::uploads::NoUploads>,
}

/// The registry as the central engine sees it (weak: it does not keep the service alive).
struct CentralWorkers(Weak<Inner>);

impl Workers for CentralWorkers {
    fn daemon(&self, name: &str) -> Result<Daemon, CentralError> {
        let inner = self.0.upgrade().ok_or(CentralError::Stopped)?;
        let service = PlannerService { inner };
        let now = Instant::now();
        let state = service.state();
        match state.registry.get(name) {
            None => Err(CentralError::NoDaemon(format!(
                "worker `{name}` is not registered; start its daemon (the planner plans its workflows again onto the live workers meanwhile)"
            ))),
            Some(w) if Registry::is_lost(w) => Err(CentralError::NoDaemon(format!(
                "worker `{name}` ({}) is lost (no heartbeat for {} ms); the planner plans its workflows again onto the live workers: retry shortly",
                w.grpc_addr,
                now.duration_since(w.last_seen).as_millis()
            ))),
            Some(_) => match state.clients.get(name) {
                Some(c) => Ok(c.clone()),
                None => Err(CentralError::NoDaemon(format!("worker `{name}` has no connection"))),
            },
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
    pub(crate) inner: Arc<Inner>,
}

impl PlannerService {
    /// A planner with no workers and no workflows, and no state directory: what it is told
    /// is forgotten when it stops ([`PlannerService::restore`] keeps it).
    pub fn new(config: ServiceConfig) -> Self {
        PlannerService::build(config, None)
    }

    fn build(config: ServiceConfig, store: Option<Arc<crate::store::StateDir>>) -> Self {
        let interval = config.heartbeat_interval;
        let run_buckets = faasflow_rpc::metrics::buckets_to(config.default_deadline);
        let writer = store
            .as_ref()
            .and_then(|s| match durable::ExecutionWriter::start(s.clone()) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::error!(cause = %e, "cannot start the state writer: executions are not kept on disk");
                    None
                }
            });
        let uploads = crate::uploads::Uploads::open(store.as_ref().map(|s| s.dir()), config.uploads);
        if let Err(e) = &uploads {
            tracing::error!(cause = %e, "uploads are refused");
        }
        PlannerService {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(State {
                    registry: Registry::new(interval),
                    clients: BTreeMap::new(),
                    workflows: BTreeMap::new(),
                    seen_versions: BTreeMap::new(),
                    installing: BTreeSet::new(),
                    next_invocation: 0,
                    ids_reserved: if store.is_some() { 0 } else { u64::MAX },
                    outcomes: BTreeMap::new(),
                    invocation_seconds: faasflow_rpc::metrics::Histogram::new(&run_buckets),
                    reports: Default::default(),
                    executions: Default::default(),
                }),
                counters: Counters::default(),
                deploying: tokio::sync::Mutex::new(()),
                watching: std::sync::atomic::AtomicBool::new(false),
                pending: Mutex::new(BTreeSet::new()),
                central: OnceLock::new(),
                remote: tokio::sync::Mutex::new(None),
                store,
                execution_ended: tokio::sync::Notify::new(),
                writer,
                uploads,
            }),
        }
    }

    /// The uploads, or why the planner has none.
    pub(crate) fn uploads(&self) -> Result<&crate::uploads::Uploads, Status> {
        self.inner
            .uploads
            .as_ref()
            .map_err(|e| Status::unavailable(e.to_string()))
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The central engine, started on first use (on the caller's tokio runtime).
    fn central(&self) -> &Central {
        self.inner.central.get_or_init(|| {
            Central::start(
                Arc::new(CentralWorkers(Arc::downgrade(&self.inner))),
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
        self.forget_versions(workflow, drained.iter().map(|v| v.version).collect());
        for v in drained {
            if v.plan.mode == Mode::MasterSp
                && let Some(central) = self.inner.central.get()
            {
                central.uninstall(workflow, v.version);
            }
            for name in &v.daemons {
                let Some(w) = state.registry.get(name) else { continue };
                let target = Target {
                    name: name.clone(),
                    addr: w.grpc_addr,
                };
                tokio::spawn(drop_on(
                    target,
                    self.inner.config.credentials(),
                    workflow.to_owned(),
                    v.version,
                ));
            }
        }
    }

    /// The live workers, sorted by name, as the partitioner sees them.
    fn live_cluster(&self) -> (ClusterView, BTreeMap<String, Worker>) {
        let state = self.state();
        let live: BTreeMap<String, Worker> = state
            .registry
            .iter()
            .filter(|(_, w)| !Registry::is_lost(w))
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

    pub(crate) fn not_found_workflow(&self, state: &State, workflow: &str) -> Status {
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

impl PlannerService {
    /// The planner's metrics, as Prometheus text (served at `/metrics` on its port,
    /// beside gRPC and the HTTP API).
    pub fn metrics_text(&self) -> String {
        let state = self.state();
        let c = &self.inner.counters;
        let mut e = faasflow_rpc::metrics::Exposition::new();
        for outcome in ["ok", "failed", "deadline", "refused", "overloaded"] {
            e.counter(
                "faasflow_planner_invocations_total",
                "Invocations answered, by outcome",
                &[("outcome", outcome)],
                state.outcomes.get(outcome).copied().unwrap_or(0),
            );
        }
        e.histogram(
            "faasflow_planner_invocation_seconds",
            "End to end of the invocations the planner forwarded",
            &state.invocation_seconds,
        );
        e.counter(
            "faasflow_planner_invocation_messages_total",
            "Invocation messages between the planner and daemons",
            &[("direction", "sent")],
            c.messages.sent.load(Ordering::Relaxed),
        );
        e.counter(
            "faasflow_planner_invocation_messages_total",
            "Invocation messages between the planner and daemons",
            &[("direction", "received")],
            c.messages.received.load(Ordering::Relaxed),
        );
        let lost = state.registry.iter().filter(|(_, w)| Registry::is_lost(w)).count();
        e.gauge(
            "faasflow_planner_workers",
            "Registered workers, live or lost",
            &[("state", "live")],
            (state.registry.len() - lost) as u64,
        );
        e.gauge(
            "faasflow_planner_workers",
            "Registered workers, live or lost",
            &[("state", "lost")],
            lost as u64,
        );
        for status in ExecutionStatus::ALL
            .into_iter()
            .filter(|s| *s != ExecutionStatus::Running)
        {
            e.counter(
                "faasflow_planner_executions_total",
                "Executions ended, by status",
                &[("status", status.as_str())],
                state.executions.ended.get(status.as_str()).copied().unwrap_or(0),
            );
        }
        e.gauge(
            "faasflow_planner_executions_running",
            "Executions running",
            &[],
            state
                .executions
                .map
                .values()
                .filter(|x| x.status == Some(ExecutionStatus::Running))
                .count() as u64,
        );
        if let Some(w) = &self.inner.writer {
            e.counter(
                "faasflow_planner_state_commits_total",
                "Commits of execution records to the state directory (each one write to disk)",
                &[],
                w.commits.load(Ordering::Relaxed),
            );
            e.counter(
                "faasflow_planner_state_records_total",
                "Execution records those commits kept",
                &[],
                w.records.load(Ordering::Relaxed),
            );
        }
        for (name, d) in &state.workflows {
            e.gauge(
                "faasflow_planner_versions",
                "Installed versions per workflow",
                &[("workflow", name)],
                d.versions.len() as u64,
            );
        }
        e.finish()
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
        tracing::info!(
            %workflow,
            version,
            %diverging,
            "what was measured differs from the plan's model; planning it again"
        );
        let this = self.clone();
        let name = workflow.to_owned();
        tokio::spawn(async move {
            let what = format!("the re-plan of `{name}` from measured values");
            if let Err(e) = this
                .deploy_workflow(Arc::new(wf), declared, mode, allow_overcommit, &what)
                .await
            {
                tracing::warn!(workflow = %name, "{}", e.message());
            }
            if let Some(d) = this.state().workflows.get_mut(&name) {
                d.replanning = false;
            }
        });
    }

    /// An invocation lost worker `name` (its daemon unreachable, or a peer's connection to it
    /// failed): it is lost until it sends heartbeats again.
    fn mark_lost(&self, name: &str) {
        let mut state = self.state();
        if state.registry.mark_lost(name, Instant::now())
            && let Some(w) = state.registry.get(name)
        {
            tracing::warn!(worker = %name, addr = %w.grpc_addr, "worker is lost: an invocation lost it");
        }
    }
}
