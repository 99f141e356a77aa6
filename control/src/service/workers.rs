//! The worker registry, and the watch that keeps every deployment where it should be.
//!
//! A worker is known by its name and its daemon's *incarnation* (random, new at every start
//! of the daemon), never by a number the planner hands out: a heartbeat with an incarnation
//! the planner does not know is answered "unknown", so a restarted daemon registers again
//! and is taken to hold only what it reports. Registrations and heartbeats carry the plan
//! versions the daemon holds. Once per heartbeat interval the watch compares that with what
//! each worker should hold and puts it right, converging rather than reacting to each event:
//!
//! - a version a live worker should hold and does not (its daemon restarted) is installed on
//!   it again, with the addresses it was made with (when the worker is back on the same ones);
//! - a version a worker holds that the planner does not know (dropped while the worker was
//!   unreachable, or installed by the planner before it restarted) is dropped from it;
//! - a workflow whose newest version uses a worker that is lost, gone or back on another
//!   address is planned again onto the live workers: a new version only while the newest is
//!   broken, and the new one uses live workers only, so one loss makes one version;
//! - a workflow whose newest version was planned without a worker that is live now (back, or
//!   new) is planned again to use it, once that worker has been live for [`LOST_AFTER`]
//!   intervals and at most once per [`REBALANCE_EVERY`] intervals; a plan that would place
//!   every task where it is makes no version.
//!
//! A worker found lost is named to every other daemon (`WorkerLost`), whose invocations that
//! involve it fail at once rather than when the peer connection times out. A planner that
//! itself did not run for a whole loss window (frozen, starved) cannot tell who stopped
//! answering: it gives every worker a new window instead of finding them all lost.

use super::*;
use crate::registry::{Beat, HeldPlan, Joined, Load};
use crate::versions::{Fault, RepairError, holds, newest_fault, placement};

/// Heartbeat intervals an install or drop that failed waits before it is tried again.
const RETRY_AFTER: u32 = 5;

/// How often the uploads kept unused past their time are looked for.
const UPLOAD_SWEEP: Duration = Duration::from_secs(60);

/// A worker's registration, checked: its name, its daemon's incarnation and addresses, its
/// slots and the versions it holds.
#[derive(Debug, Clone)]
pub(crate) struct Registration {
    pub(crate) name: String,
    pub(crate) incarnation: u64,
    pub(crate) grpc_addr: SocketAddr,
    pub(crate) quic_addr: Option<SocketAddr>,
    pub(crate) slots: u32,
    pub(crate) plans: Vec<HeldPlan>,
}

/// The request that installs `v` (as it was installed when it was made).
fn install_request(v: &Version) -> Install {
    Install {
        plan: v.wire.clone(),
        peers: v
            .peers
            .iter()
            .filter_map(|(name, addr)| addr.map(|a| (name.clone(), a)))
            .collect(),
    }
}

/// A registered worker as clients see it (`faasflow status`).
#[derive(Debug, Clone)]
pub(crate) struct WorkerSummary {
    pub(crate) name: String,
    pub(crate) grpc_addr: SocketAddr,
    pub(crate) quic_addr: Option<SocketAddr>,
    pub(crate) slots: u32,
    /// Since its last heartbeat, ms.
    pub(crate) silent_ms: u64,
    pub(crate) lost: bool,
    /// What its last heartbeat said it holds.
    pub(crate) load: crate::registry::Load,
}

impl PlannerService {
    /// Every registered worker, lost ones too, by name.
    pub(crate) fn workers(&self) -> Vec<WorkerSummary> {
        let now = Instant::now();
        let state = self.state();
        state
            .registry
            .iter()
            .map(|(name, w)| WorkerSummary {
                name: name.clone(),
                grpc_addr: w.grpc_addr,
                quic_addr: w.quic_addr,
                slots: w.slots,
                silent_ms: u64::try_from(now.duration_since(w.last_seen).as_millis()).unwrap_or(u64::MAX),
                lost: Registry::is_lost(w),
                load: w.load,
            })
            .collect()
    }
}

impl PlannerService {
    /// `RegisterWorker` (the request already checked by the adapter): the heartbeat
    /// interval the worker must keep.
    pub(crate) async fn register(&self, req: Registration) -> Result<Duration, Status> {
        let (grpc_addr, quic_addr) = (req.grpc_addr, req.quic_addr);
        if !self.inner.config.transport.is_tls() && !grpc_addr.ip().is_loopback() {
            return Err(Status::failed_precondition(format!(
                "worker `{}` at {grpc_addr}: this planner serves without TLS (--insecure-loopback) and takes only \
                 workers on its host; start it and the workers with the cluster's certificates (--certs)",
                req.name
            )));
        }
        self.name_is_free(&req.name, req.incarnation, grpc_addr).await?;
        let client = Daemon::lazy(&req.name, grpc_addr, &self.inner.config.credentials());
        let now = Instant::now();
        let held = req.plans.iter().filter(|p| !p.dropping).count();
        let plans = req.plans;
        let mut state = self.state();
        note_seen(&mut state, &plans);
        let joined = state
            .registry
            .join(&req.name, req.incarnation, grpc_addr, quic_addr, req.slots, plans, now);
        state.clients.insert(req.name.clone(), client);
        drop(state);
        self.keep_worker(
            &req.name,
            faasflow_rpc::convert::state::StoredWorker {
                incarnation: req.incarnation,
                grpc_addr,
                quic_addr,
                slots: req.slots,
            },
        );
        self.watch_workers();
        tracing::info!(
            worker = %req.name,
            addr = %grpc_addr,
            peers = %quic_addr.map_or_else(|| "none".to_owned(), |a| a.to_string()),
            slots = req.slots,
            versions_held = held,
            "worker {}",
            joined.describe()
        );
        let restarted = joined == Joined::Restarted;
        if restarted {
            // The others' connections to its old process must not fail the new one's
            // invocations: they forget them first; then it gets what it should hold.
            let this = self.clone();
            let name = req.name.clone();
            tokio::spawn(async move {
                this.tell_lost_and_wait(&name, "its daemon started again").await;
                if let Some(w) = this.state().registry.get_mut(&name) {
                    w.restarting = false;
                }
                this.reconcile();
            });
        } else {
            // What it should hold is installed now, not at the next watch.
            self.reconcile();
        }
        Ok(self.inner.config.heartbeat_interval)
    }

    /// Refuses a registration under the name of another live daemon: a known worker of that
    /// name, with another incarnation at another address, that still answers a direct call.
    /// (A daemon started again on the same address cannot share it with its old process.)
    async fn name_is_free(&self, name: &str, incarnation: u64, grpc_addr: SocketAddr) -> Result<(), Status> {
        let other = {
            let state = self.state();
            state
                .registry
                .other_daemon(name, incarnation, grpc_addr)
                .and_then(|at| Some((state.clients.get(name)?.clone(), at)))
        };
        let Some((client, at)) = other else { return Ok(()) };
        match self.ask(client).await {
            Ok(worker) if worker == name => Err(Status::invalid_argument(format!(
                "RegisterWorker: worker name `{name}` is taken by a live daemon at {at}; give every daemon a name of its own (--name)"
            ))),
            _ => Ok(()),
        }
    }

    /// [`PlannerService::tell_lost`], returning once every daemon has answered (or its time
    /// limit passed).
    async fn tell_lost_and_wait(&self, lost: &str, reason: &str) {
        for task in self.tell_lost(lost, reason) {
            let _ = task.await;
        }
    }

    /// `Heartbeat` of worker `name`'s daemon `incarnation`, holding `plans`: whether the
    /// worker is known (else its daemon must register again).
    pub(crate) fn beat(&self, name: &str, incarnation: u64, plans: Vec<HeldPlan>, load: Load) -> bool {
        let mut state = self.state();
        note_seen(&mut state, &plans);
        let beat = state.registry.beat(name, incarnation, plans, Instant::now());
        if beat != Beat::Unknown
            && let Some(w) = state.registry.get_mut(name)
        {
            w.load = load;
        }
        if beat == Beat::Back {
            tracing::info!(
                worker = %name,
                "worker is back: plans use it again once it has been live for {} ms",
                state.registry.loss_window().as_millis()
            );
        }
        beat != Beat::Unknown
    }

    /// Starts the watch over the workers (once): every heartbeat interval it finds lost and
    /// returned workers ([`PlannerService::check_workers`]) and puts deployments right
    /// ([`PlannerService::reconcile`]). Runs until the service is dropped.
    pub(super) fn watch_workers(&self) {
        if self.inner.watching.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        let interval = self.inner.config.heartbeat_interval;
        tokio::spawn(async move {
            let mut swept = Instant::now();
            loop {
                tokio::time::sleep(interval).await;
                let Some(inner) = weak.upgrade() else { return };
                let service = PlannerService { inner };
                service.check_workers();
                service.reconcile();
                service.expire_orphans().await;
                if swept.elapsed() >= UPLOAD_SWEEP {
                    swept = Instant::now();
                    // A directory scan, off the runtime's threads.
                    let s = service.clone();
                    let swept_now = tokio::task::spawn_blocking(move || s.uploads().map(|u| u.sweep())).await;
                    if let Ok(Ok(n)) = swept_now
                        && n > 0
                    {
                        tracing::info!(uploads = n, "deleted uploads kept unused past their time");
                    }
                }
            }
        });
    }

    /// Finds the workers lost since the last look, and those back.
    fn check_workers(&self) {
        let silent_ones: Vec<_> = {
            let mut state = self.state();
            let look = state.registry.look(Instant::now());
            if let Some(gap) = look.not_run_for {
                // Heartbeats could not be taken meanwhile: whoever is silent is not known to be.
                tracing::warn!(
                    "did not run for {} ms (stopped or starved): every worker has {} ms from now to send a heartbeat \
                     before it is found lost",
                    gap.as_millis(),
                    state.registry.loss_window().as_millis()
                );
            }
            // Heartbeats can be late without the daemon being gone (its host is busy): it is
            // lost only if it does not answer a direct call either.
            look.silent
                .into_iter()
                .filter_map(|(name, silent)| Some((state.clients.get(&name)?.clone(), name, silent)))
                .collect()
        };
        for (client, name, silent) in silent_ones {
            let this = self.clone();
            tokio::spawn(async move { this.probe(name, client, silent).await });
        }
    }

    /// Asks the daemon of worker `name`, silent for `silent`, whether it answers; if it does
    /// not within [`PlannerService::probe_timeout`], it is lost.
    async fn probe(&self, name: String, client: Daemon, silent: Duration) {
        let why = self.ask(client).await.err();
        let now = Instant::now();
        let lost = {
            let mut state = self.state();
            match why {
                None => {
                    tracing::info!(
                        worker = %name,
                        "worker sent no heartbeat for {} ms but answers: not lost",
                        silent.as_millis()
                    );
                    state.registry.answered(&name, now);
                    None
                }
                Some(why) => {
                    let silence = state.registry.unanswered(&name, now);
                    if let (Some(silence), Some(w)) = (silence, state.registry.get(&name)) {
                        tracing::warn!(
                            worker = %name,
                            addr = %w.grpc_addr,
                            "worker is lost: no heartbeat for {} ms, and {why}",
                            silence.as_millis()
                        );
                    }
                    silence
                }
            }
        };
        if let Some(silence) = lost {
            let reason = format!(
                "the planner found it lost (no heartbeat for {} ms, and no answer to a direct call)",
                silence.as_millis()
            );
            self.tell_lost(&name, &reason);
            self.reconcile();
        }
    }

    /// Whether worker `name`, which a daemon reported lost, is: it is when the watch found it
    /// so, or when it does not answer a direct call now (then it is marked lost, and the other
    /// daemons are told).
    pub(super) async fn confirm_lost(&self, name: &str) -> bool {
        let client = {
            let state = self.state();
            match state.registry.get(name) {
                None => return true,
                Some(w) if w.noted_lost => return true,
                Some(_) => match state.clients.get(name) {
                    Some(c) => c.clone(),
                    None => return false,
                },
            }
        };
        match self.ask(client).await {
            Ok(_) => {
                tracing::info!(worker = %name, "worker was reported lost by a peer but answers: not lost");
                false
            }
            Err(_) => {
                self.mark_lost(name);
                self.tell_lost(
                    name,
                    "the planner found it lost (a peer lost it, and it does not answer a direct call)",
                );
                true
            }
        }
    }

    /// Asks a daemon directly whether it answers (`Status`, within
    /// [`PlannerService::probe_timeout`]): the name it answers with, or why it did not.
    async fn ask(&self, daemon: Daemon) -> Result<String, DaemonError> {
        daemon.worker(self.probe_timeout()).await
    }

    /// How long a silent worker has to answer a direct call before it is lost.
    fn probe_timeout(&self) -> Duration {
        (self.inner.config.heartbeat_interval * 2).max(Duration::from_secs(1))
    }

    /// Tells every other live daemon that worker `lost` is lost: their invocations that
    /// involve it fail at once, naming it (the entry's report carries it, so an idempotent
    /// workflow runs again on the live workers).
    fn tell_lost(&self, lost: &str, reason: &str) -> Vec<tokio::task::JoinHandle<()>> {
        let targets: Vec<Daemon> = {
            let state = self.state();
            state
                .registry
                .live()
                .filter(|(name, _)| name.as_str() != lost)
                .filter_map(|(name, _)| state.clients.get(name).cloned())
                .collect()
        };
        let mut tasks = Vec::new();
        for daemon in targets {
            let (lost, reason) = (lost.to_owned(), reason.to_owned());
            tasks.push(tokio::spawn(async move {
                if let Err(e) = daemon.worker_lost(&lost, &reason, TELL_TIMEOUT).await {
                    tracing::warn!(worker = %daemon.name(), %lost, cause = %e, "could not tell a worker of a lost worker");
                }
            }));
        }
        tasks
    }

    /// One round of the watch's repairs: installs what live workers miss, drops what they
    /// hold and the planner does not know, and starts a repair of every workflow whose newest
    /// version is broken or may use a worker that is live again.
    pub(super) fn reconcile(&self) {
        let now = Instant::now();
        let mut installs = Vec::new();
        let mut drops = Vec::new();
        let mut repairs = Vec::new();
        {
            let mut state = self.state();
            let mut pending = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
            for (workflow, d) in &state.workflows {
                for v in &d.versions {
                    for name in &v.daemons {
                        let Some(w) = state.registry.get(name) else { continue };
                        let same_place = v.peers.get(name).copied().flatten() == w.quic_addr;
                        if !Registry::is_lost(w)
                            && same_place
                            && !w.restarting
                            && !holds(w, v)
                            && pending.insert((name.clone(), workflow.clone(), v.version))
                        {
                            let target = Target {
                                name: name.clone(),
                                addr: w.grpc_addr,
                            };
                            installs.push((target, workflow.clone(), v.version, install_request(v)));
                        }
                    }
                }
            }
            for (name, w) in state.registry.iter() {
                if Registry::is_lost(w) {
                    continue;
                }
                for HeldPlan {
                    workflow,
                    version,
                    dropping,
                    digest,
                } in &w.reported
                {
                    // Known: the same plan under the same number (another plan under it is
                    // stale, from before the planner started again).
                    let known = state
                        .workflows
                        .get(workflow)
                        .is_some_and(|d| d.versions.iter().any(|v| v.version == *version && v.digest == *digest))
                        || state.installing.contains(&(workflow.clone(), *version));
                    if !*dropping && !known && pending.insert((name.clone(), workflow.clone(), *version)) {
                        let target = Target {
                            name: name.clone(),
                            addr: w.grpc_addr,
                        };
                        // Versions of a workflow it knows were dropped from here (and are
                        // again, quietly); others come from before the planner started.
                        let said = !state.workflows.contains_key(workflow);
                        drops.push((target, workflow.clone(), *version, said));
                    }
                }
            }
            drop(pending);
            let faulty: Vec<String> = state
                .workflows
                .iter()
                .filter(|(_, d)| !d.repairing && !d.replanning)
                .filter(|(_, d)| {
                    // A repair that failed is tried again after a while, not at every look.
                    d.repair_failed.as_ref().is_none_or(|(t, _)| {
                        now.duration_since(*t) >= self.inner.config.heartbeat_interval * RETRY_AFTER
                    })
                })
                .filter(|(_, d)| {
                    matches!(
                        newest_fault(&state.registry, d, now, true),
                        Some(Fault::Broken(_) | Fault::Rebalance(_))
                    )
                })
                .map(|(name, _)| name.clone())
                .collect();
            for name in faulty {
                if let Some(d) = state.workflows.get_mut(&name) {
                    d.repairing = true;
                }
                repairs.push(name);
            }
        }
        let retry = self.inner.config.heartbeat_interval * RETRY_AFTER;
        let token = self.inner.config.credentials();
        for (target, workflow, version, req) in installs {
            let this = self.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let result = install_on(&target, &token, &req).await;
                let key = (target.name.clone(), workflow.clone(), version);
                match result {
                    Ok(()) => this.installed_again(&target.name, &workflow, version),
                    Err(e) => {
                        tracing::warn!(%workflow, version, worker = %target.name, cause = %e, "a version is missing on a worker");
                        tokio::time::sleep(retry).await;
                    }
                }
                this.settled(&key);
            });
        }
        for (target, workflow, version, say) in drops {
            let this = self.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let key = (target.name.clone(), workflow.clone(), version);
                if say {
                    tracing::info!(
                        worker = %target.name,
                        %workflow,
                        version,
                        "a worker holds a version that is not deployed: dropping it"
                    );
                }
                drop_on(target, token, workflow, version).await;
                // Its next heartbeat says whether it went.
                tokio::time::sleep(retry).await;
                this.settled(&key);
            });
        }
        for workflow in repairs {
            let this = self.clone();
            tokio::spawn(async move {
                let result = this.repair_as(&workflow, true).await;
                let mut state = this.state();
                if let Some(d) = state.workflows.get_mut(&workflow) {
                    d.repairing = false;
                    match result {
                        Ok(()) => d.repair_failed = None,
                        Err(e) => {
                            if d.repair_failed.as_ref().is_none_or(|(_, said)| *said != e) {
                                tracing::warn!(%workflow, cause = %e, "the workflow could not be repaired");
                            }
                            d.repair_failed = Some((Instant::now(), e));
                        }
                    }
                }
            });
        }
    }

    /// Puts the newest version of `workflow` right, so that an invocation can start on it:
    /// planned again onto the live workers when it uses one that cannot run its part,
    /// installed again where a live worker misses it. Returns at once when nothing is wrong.
    pub(super) async fn repair(&self, workflow: &str) -> Result<(), RepairError> {
        self.repair_as(workflow, false).await
    }

    /// [`PlannerService::repair`]; `rebalance`: also plan it again to use a worker that is
    /// live again (the watch does; an invocation does not wait for it).
    async fn repair_as(&self, workflow: &str, rebalance: bool) -> Result<(), RepairError> {
        let _one_at_a_time = self.inner.deploying.lock().await;
        let now = Instant::now();
        let (fault, wf, declared, mode, allow_overcommit, version) = {
            let state = self.state();
            let d = state
                .workflows
                .get(workflow)
                .ok_or_else(|| RepairError::Undeployed(workflow.to_owned()))?;
            let v = d
                .versions
                .first()
                .ok_or_else(|| RepairError::NoVersion(workflow.to_owned()))?;
            if d.undeploying {
                return Ok(());
            }
            let Some(fault) = newest_fault(&state.registry, d, now, rebalance) else {
                return Ok(());
            };
            (
                fault,
                v.wf.clone(),
                v.declared.clone(),
                v.mode,
                v.allow_overcommit,
                v.version,
            )
        };
        let why = match fault {
            Fault::Missing(targets) => return self.install_again(workflow, version, targets).await,
            Fault::Rebalance(_) if self.same_placement(workflow, &wf, mode, allow_overcommit) => {
                // Planned again, every task would stay where it is: no new version.
                let mut state = self.state();
                let live: BTreeSet<String> = self.live_cluster_names(&state);
                if let Some(v) = state.workflows.get_mut(workflow).and_then(|d| d.versions.first_mut()) {
                    v.considered = live;
                }
                return Ok(());
            }
            Fault::Broken(why) | Fault::Rebalance(why) => why,
        };
        let what = format!("the re-plan of `{workflow}` version {version} ({why})");
        let result = self.deploy_locked(wf, declared, mode, allow_overcommit, &what).await;
        if let Some(d) = self.state().workflows.get_mut(workflow) {
            d.last_replan = Some(Instant::now());
        }
        let deployed = result.map_err(|e| RepairError::Replan(e.message().to_owned()))?;
        tracing::info!(
            %workflow,
            version,
            new_version = deployed.version,
            "{why}; planned again on the live workers"
        );
        Ok(())
    }

    /// Installs version `version` of `workflow` again on `targets`.
    async fn install_again(&self, workflow: &str, version: u64, targets: Vec<Target>) -> Result<(), RepairError> {
        // A daemon that started again gets nothing until the others have forgotten its old
        // process ([`PlannerService::register`]).
        let end = Instant::now() + TELL_TIMEOUT + Duration::from_secs(1);
        while Instant::now() < end
            && targets
                .iter()
                .any(|t| self.state().registry.get(&t.name).is_some_and(|w| w.restarting))
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let req = {
            let state = self.state();
            let v = state
                .workflows
                .get(workflow)
                .and_then(|d| d.versions.iter().find(|v| v.version == version))
                .ok_or_else(|| RepairError::Dropped {
                    workflow: workflow.to_owned(),
                    version,
                })?;
            install_request(v)
        };
        let mut installs = tokio::task::JoinSet::new();
        for t in targets {
            let (req, token) = (req.clone(), self.inner.config.credentials());
            installs.spawn(async move {
                let r = install_on(&t, &token, &req).await.map_err(|e| e.to_string());
                (t, r)
            });
        }
        let mut errors = Vec::new();
        while let Some(joined) = installs.join_next().await {
            match joined {
                Ok((t, Ok(()))) => self.installed_again(&t.name, workflow, version),
                Ok((_, Err(e))) => errors.push(e),
                Err(e) => errors.push(format!("an install task failed: {e}")),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            errors.sort();
            Err(RepairError::Install(errors))
        }
    }

    /// Version `version` of `workflow` was installed again on `worker`, which did not hold it.
    fn installed_again(&self, worker: &str, workflow: &str, version: u64) {
        tracing::info!(%workflow, version, %worker, "installed a version again on a worker that did not hold it");
        let mut state = self.state();
        let digest = state
            .workflows
            .get(workflow)
            .and_then(|d| d.versions.iter().find(|v| v.version == version))
            .map(|v| v.digest.clone());
        if let (Some(digest), Some(w)) = (digest, state.registry.get_mut(worker)) {
            w.held.insert((workflow.to_owned(), version), digest);
        }
    }

    /// An install or drop the watch started is over (it may start another).
    fn settled(&self, key: &(String, String, u64)) {
        self.inner.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// Whether planning `workflow` again for the live workers would place every task on the
    /// worker its newest version has it on, with the same tiers.
    fn same_placement(&self, workflow: &str, wf: &Arc<Workflow>, mode: Mode, allow_overcommit: bool) -> bool {
        let (cluster, _) = self.live_cluster();
        let cfg = PlannerConfig {
            mode,
            allow_overcommit,
            margin_mib: self.inner.config.margin_mib,
            ..PlannerConfig::default()
        };
        let Ok(plan) = partition(wf, &cluster, &cfg) else {
            return false;
        };
        let state = self.state();
        let Some(v) = state.workflows.get(workflow).and_then(|d| d.versions.first()) else {
            return false;
        };
        placement(wf, &plan, &cluster) == placement(&v.wf, &v.plan, &v.cluster)
    }

    /// The names of the live workers.
    fn live_cluster_names(&self, state: &State) -> BTreeSet<String> {
        state.registry.live().map(|(n, _)| n.clone()).collect()
    }
}

/// Notes the versions a daemon reports: versions deployed from here are higher.
fn note_seen(state: &mut State, plans: &[HeldPlan]) {
    for p in plans {
        let seen = state.seen_versions.entry(p.workflow.clone()).or_default();
        *seen = (*seen).max(p.version);
    }
}
