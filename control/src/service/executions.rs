//! Executions: a workflow started without waiting (`StartExecution`), answered at once with an
//! id under which it is found later (`GetExecution`, `ListExecutions`). An execution runs as
//! `Invoke` runs an invocation (it may be run again on the live workers when it loses one and
//! its functions are idempotent); the planner records its status when it starts and when it
//! ends, on disk with a state directory, before it answers.
//!
//! An idempotency key makes a start safe to retry: the same key with the same request answers
//! the execution it started; with another request it is refused. Executions that have ended
//! are kept up to a count and an age ([`ServiceConfig::keep_executions`],
//! [`ServiceConfig::keep_executions_for`]).
//!
//! The entry daemon of an execution's invocation holds its report until the planner has
//! recorded it for good (the heartbeats name the executions a daemon runs and the reports it
//! holds; their answers acknowledge the recorded ones). An execution that ran when the planner
//! stopped is restored as running: a heartbeat that names it keeps it so, and its report is
//! taken from the daemon that holds it (`HeldReport`) and recorded. One no daemon speaks of
//! within the grace (10 heartbeat intervals, at least 3 s) is `lost`; a daemon that speaks of
//! it later brings it back.

use super::*;
use crate::service::invoke::{Ending, InvokeAnswer, InvokeRequest};
use crate::versions::unix_ms;
use faasflow_rpc::convert::state::{ExecutionRecord, ExecutionStatus, request_digest};

/// Longest idempotency key, bytes.
pub(crate) const MAX_KEY_BYTES: usize = 256;

/// Most executions one `ListExecutions` page holds.
pub(crate) const MAX_PAGE: usize = 1000;

/// The executions the planner keeps.
#[derive(Debug, Default)]
pub(crate) struct Executions {
    pub(crate) map: BTreeMap<u64, ExecutionRecord>,
    /// The execution each idempotency key started.
    pub(crate) keys: BTreeMap<String, u64>,
    /// The last id given.
    pub(crate) last_id: u64,
    /// The executions running: what runs each now, and whether it is cancelled.
    pub(crate) running: BTreeMap<u64, Running>,
    /// Executions that ran when the planner stopped, restored as running: they wait for a
    /// daemon to say it runs them or holds their reports.
    pub(crate) orphans: BTreeMap<u64, Orphan>,
    /// Executions whose end is not yet on disk (not acknowledged to daemons meanwhile).
    pub(crate) unpersisted: BTreeSet<u64>,
    /// Held reports being taken from daemons.
    pub(crate) taking: BTreeSet<u64>,
    /// Executions ended since the planner started, by status (`/metrics`).
    pub(crate) ended: BTreeMap<&'static str, u64>,
}

/// A running execution the planner did not start (it ran when the planner stopped).
#[derive(Debug)]
pub(crate) struct Orphan {
    /// When the planner restored it (or heard of it again): its held report is taken only
    /// once every worker has had time to say whether it runs it now (a rerun's entry), so
    /// that a stale one is not.
    pub(crate) restored: Instant,
    /// When a daemon last said it runs it (or since the restore).
    pub(crate) heard: Instant,
    /// The worker that said so (its entry).
    pub(crate) entry: Option<String>,
    /// Why it was cancelled, once it is; whether the entry was told.
    pub(crate) cancel: Option<(String, bool)>,
}

/// A running execution.
#[derive(Debug, Default)]
pub(crate) struct Running {
    /// The invocation running it now, and where (`None`: none is started yet, or it is
    /// between runs).
    pub(crate) invocation: Option<(u64, RunsOn)>,
    /// Why it was cancelled, once it is: no invocation of it starts any more.
    pub(crate) cancelled: Option<String>,
}

impl Orphan {
    /// One restored (or heard of again) at `now`, by no daemon yet.
    fn at(now: Instant) -> Orphan {
        Orphan {
            restored: now,
            heard: now,
            entry: None,
            cancel: None,
        }
    }
}

/// Where an execution's invocation runs.
#[derive(Debug, Clone)]
pub(crate) enum RunsOn {
    /// The daemons of its version, its entry first (WorkerSP).
    Workers(Vec<(String, Daemon)>),
    /// The planner's central engine (MasterSP).
    Central,
}

/// An output being read from its worker.
struct Read {
    stream: faasflow_rpc::daemon::OutputStream,
    /// The first piece, taken to learn the size, not yet given to the reader.
    first: Option<faasflow_rpc::daemon::OutputChunk>,
    got: u64,
    total: u64,
    daemon: faasflow_rpc::daemon::Daemon,
    /// (invocation, output, element).
    at: (u64, String, u32),
}

impl Drop for Read {
    /// A reader that took every byte lets the stream go (an HTTP body with its length is not
    /// asked for more after its last byte): the worker may free the output.
    fn drop(&mut self) {
        if self.got != self.total {
            return;
        }
        let daemon = self.daemon.clone();
        let (invocation, name, element) = std::mem::take(&mut self.at);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = daemon.output_read(invocation, &name, element, RELEASE_TIMEOUT).await {
                    tracing::debug!(cause = %e, "could not say an output was read; it goes when its time is up");
                }
            });
        }
    }
}

/// Time limit of telling a worker to free kept outputs, and of the first piece of an output.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest wait of `GetExecution` for an execution to end.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(60);

/// Longest wait of `CancelExecution` for the execution to end.
pub(crate) const CANCEL_WAIT: Duration = Duration::from_secs(10);

impl Executions {
    /// Executions kept from a state directory: one that ran when the planner stopped is
    /// running still, until a daemon speaks of it or the grace ends.
    pub(crate) fn restored(kept: BTreeMap<u64, ExecutionRecord>, last_id: u64) -> Executions {
        let now = Instant::now();
        let map = kept;
        let orphans = map
            .values()
            .filter(|e| e.status == Some(ExecutionStatus::Running))
            .map(|e| (e.id, Orphan::at(now)))
            .collect();
        let keys = map
            .values()
            .filter(|e| !e.idempotency_key.is_empty())
            .map(|e| (e.idempotency_key.clone(), e.id))
            .collect();
        let last_id = map.keys().next_back().copied().unwrap_or(0).max(last_id);
        Executions {
            map,
            keys,
            last_id,
            orphans,
            ..Executions::default()
        }
    }
}

/// Which executions `ListExecutions` wants.
#[derive(Debug, Clone, Default)]
pub(crate) struct ExecutionFilter {
    pub(crate) workflow: Option<String>,
    pub(crate) status: Option<ExecutionStatus>,
    pub(crate) since_unix_ms: u64,
    pub(crate) limit: usize,
    pub(crate) before_id: Option<u64>,
}

impl PlannerService {
    /// `StartExecution`: the execution's id, and whether an earlier start with the same
    /// idempotency key made it.
    pub(crate) async fn start_execution(&self, req: InvokeRequest, key: String) -> Result<(u64, bool), Status> {
        if key.len() > MAX_KEY_BYTES {
            return Err(Status::invalid_argument(format!(
                "StartExecution: the idempotency key has {} bytes, more than the {MAX_KEY_BYTES} allowed",
                key.len()
            )));
        }
        let digest = request_digest(
            &req.workflow,
            req.version,
            (&req.input_json, &req.files),
            req.deadline_ms,
        );
        // Inputs given as uploads are looked up on disk before the lock is taken, and refused
        // (after a start under the same key has had its answer) when a start cannot run.
        let files = match req.files.is_empty() {
            true => Ok(Vec::new()),
            false => serde_json::from_slice(&req.input_json)
                .map_err(|e| Status::invalid_argument(format!("the input is not valid JSON: {e}")))
                .and_then(|mut input| self.upload_files(&req.workflow, &req.files, &mut input)),
        };
        let record = {
            let mut state = self.state();
            if let Some(&id) = state.executions.keys.get(&key)
                && let Some(e) = state.executions.map.get(&id)
            {
                if e.request_digest == digest {
                    return Ok((id, true));
                }
                return Err(Status::already_exists(format!(
                    "idempotency key `{key}` started execution {id} of workflow `{}` with another request (workflow, \
                     version, input or deadline); use a new key for a new execution",
                    e.workflow
                )));
            }
            let Some(d) = state.workflows.get(&req.workflow) else {
                return Err(self.not_found_workflow(&state, &req.workflow));
            };
            if d.undeploying {
                return Err(Status::failed_precondition(format!(
                    "workflow `{}` is being undeployed: it takes no new executions",
                    req.workflow
                )));
            }
            let index = find_version(&req.workflow, d, req.version).map_err(|e| Status::not_found(e.0))?;
            let files = files?;
            if !files.is_empty() {
                super::invoke::file_inputs_read_alone(&req.workflow, &d.versions[index].wf, &files)?;
            }
            state.executions.last_id += 1;
            let record = ExecutionRecord {
                id: state.executions.last_id,
                workflow: req.workflow.clone(),
                version: req.version,
                status: Some(ExecutionStatus::Running),
                started_unix_ms: unix_ms(),
                idempotency_key: key.clone(),
                request_digest: digest,
                ..ExecutionRecord::default()
            };
            state.executions.map.insert(record.id, record.clone());
            if !key.is_empty() {
                state.executions.keys.insert(key, record.id);
            }
            record
        };
        let id = record.id;
        self.state().executions.running.insert(id, Running::default());
        // Kept, then run, in a task of its own: a caller that goes away meanwhile does not
        // leave a kept execution that never runs.
        let this = self.clone();
        let req = InvokeRequest {
            execution: Some(id),
            ..req
        };
        let (kept, answer) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            if let Err(e) = this.keep_execution(record).await {
                {
                    let mut state = this.state();
                    if let Some(e) = state.executions.map.remove(&id) {
                        state.executions.keys.remove(&e.idempotency_key);
                    }
                    state.executions.running.remove(&id);
                }
                let _ = kept.send(Err(Status::unavailable(format!(
                    "the execution was not started: the planner cannot keep it in its state directory ({e})"
                ))));
                return;
            }
            let _ = kept.send(Ok(()));
            let result = this.run_queued(req).await;
            this.execution_ended(id, result).await;
        });
        answer
            .await
            .map_err(|_| Status::internal("the execution's start was cut short"))??;
        self.prune_executions();
        Ok((id, false))
    }

    /// Runs an execution's invocation; while the planner or its entry worker has too many in
    /// flight, it waits its turn (backing off, up to its deadline) instead of failing: an
    /// execution started is queued, not refused.
    async fn run_queued(&self, req: InvokeRequest) -> Result<InvokeAnswer, Status> {
        let limit = match req.deadline_ms {
            0 => self.inner.config.default_deadline,
            ms => Duration::from_millis(ms),
        };
        let until = Instant::now() + limit;
        let mut backoff = Duration::from_millis(5);
        loop {
            // The time queued counts against its deadline.
            let left = until.saturating_duration_since(Instant::now());
            let attempt = InvokeRequest {
                deadline_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1),
                ..req.clone()
            };
            match self.invoke_rerunning(attempt).await {
                Err(s) if s.code() == tonic::Code::ResourceExhausted && Instant::now() + backoff < until => {
                    let cancelled = req.execution.and_then(|id| {
                        let state = self.state();
                        state.executions.running.get(&id).and_then(|r| r.cancelled.clone())
                    });
                    if let Some(why) = cancelled {
                        return Err(Status::cancelled(format!("cancelled: {why}")));
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(200));
                }
                result => return result,
            }
        }
    }

    /// Records how execution `id` ended.
    async fn execution_ended(&self, id: u64, result: Result<InvokeAnswer, Status>) {
        self.execution_ended_at(id, result, None).await;
    }

    /// Records how execution `id` ended; `reporter`: the worker whose held report says so.
    async fn execution_ended_at(&self, id: u64, result: Result<InvokeAnswer, Status>, reporter: Option<&str>) {
        let record = {
            let mut state = self.state();
            let ex = &mut state.executions;
            // Its entry worker keeps the outputs the report does not show whole.
            let (cancelled, entry) = match ex.running.remove(&id) {
                Some(r) => {
                    let entry = match r.invocation {
                        Some((_, RunsOn::Workers(w))) => w.first().map(|(name, _)| name.clone()),
                        _ => None,
                    };
                    (r.cancelled, entry)
                }
                None => match ex.orphans.remove(&id) {
                    Some(o) => (o.cancel.map(|(why, _)| why), o.entry),
                    None => (None, None),
                },
            };
            let Some(e) = ex.map.get_mut(&id) else {
                return;
            };
            ex.unpersisted.insert(id);
            e.ended_unix_ms = unix_ms();
            match result {
                Ok(a) => {
                    e.status = Some(match (a.status, &cancelled) {
                        // It finished before the cancel reached it: it stays as it ended.
                        (Ending::Succeeded, _) => ExecutionStatus::Succeeded,
                        (_, Some(_)) => ExecutionStatus::Cancelled,
                        (Ending::Failed, None) => ExecutionStatus::Failed,
                        (Ending::DeadlineExceeded, None) => ExecutionStatus::DeadlineExceeded,
                    });
                    e.invocation_id = a.invocation_id;
                    e.entry_worker = reporter.map(str::to_owned).or(entry).unwrap_or_default();
                    e.output_json = a.output_json;
                    e.error = a.error;
                    e.report_json = a.report_json;
                }
                Err(s) => {
                    e.status = Some(match (s.code(), &cancelled) {
                        (_, Some(_)) => ExecutionStatus::Cancelled,
                        (tonic::Code::DeadlineExceeded, None) => ExecutionStatus::DeadlineExceeded,
                        _ => ExecutionStatus::Failed,
                    });
                    e.error = s.message().to_owned();
                }
            }
            if let (Some(why), Some(ExecutionStatus::Cancelled)) = (cancelled, e.status) {
                e.error = format!("cancelled: {why}");
            }
            let record = e.clone();
            if let Some(status) = record.status {
                *ex.ended.entry(status.as_str()).or_default() += 1;
            }
            record
        };
        self.inner.execution_ended.notify_waiters();
        self.kept_ending(record).await;
    }

    /// Keeps how an execution ended in the state directory.
    async fn kept_ending(&self, record: ExecutionRecord) {
        let id = record.id;
        match self.keep_execution(record).await {
            // Daemons may forget its report now.
            Ok(()) => {
                self.state().executions.unpersisted.remove(&id);
            }
            Err(e) => {
                tracing::error!(execution = id, cause = %e, "cannot keep how an execution ended in the state directory")
            }
        }
    }

    /// How long an execution restored as running waits to be heard of from a daemon before
    /// it is `lost`.
    fn orphan_grace(&self) -> Duration {
        (self.inner.config.heartbeat_interval * 10).max(Duration::from_secs(3))
    }

    /// What worker `worker`'s heartbeat says of executions: those it runs as their entry, and
    /// those that ended there whose reports it holds. Returns the ended ones recorded for
    /// good (it may forget their reports); takes the reports of those that ran across a
    /// planner restart, and hears again of those given up as lost.
    pub(crate) fn executions_heard(&self, worker: &str, running: &[u64], ended: &[u64]) -> Vec<u64> {
        let now = Instant::now();
        let mut take = Vec::new();
        let mut cancel = Vec::new();
        let mut acked = Vec::new();
        {
            let mut state = self.state();
            let ex = &mut state.executions;
            for id in running {
                let Some(e) = ex.map.get_mut(id) else { continue };
                if e.status == Some(ExecutionStatus::Lost) {
                    // Given up too early: it runs.
                    e.status = Some(ExecutionStatus::Running);
                    e.ended_unix_ms = 0;
                    e.error.clear();
                    ex.orphans.insert(*id, Orphan::at(now));
                }
                if let Some(o) = ex.orphans.get_mut(id) {
                    o.heard = now;
                    o.entry = Some(worker.to_owned());
                    if let Some((why, told @ false)) = &mut o.cancel {
                        *told = true;
                        cancel.push((*id, why.clone()));
                    }
                }
            }
            for id in ended {
                match ex.map.get(id).and_then(|e| e.status) {
                    // Not kept (any more): nothing to record.
                    None => acked.push(*id),
                    // This planner runs it: its answer comes with the invocation's.
                    Some(ExecutionStatus::Running) if ex.running.contains_key(id) => {}
                    Some(ExecutionStatus::Running | ExecutionStatus::Lost) => {
                        // Not while another worker runs it now (a rerun), nor before every
                        // worker has had a heartbeat to say so.
                        let settled = self.inner.config.heartbeat_interval * 2;
                        if let Some(o) = ex.orphans.get_mut(id) {
                            o.heard = now;
                            if now.duration_since(o.restored) < settled
                                || o.entry.as_deref().is_some_and(|e| e != worker)
                            {
                                continue;
                            }
                        }
                        if ex.taking.insert(*id) {
                            take.push(*id);
                        }
                    }
                    Some(_) if ex.unpersisted.contains(id) => {}
                    Some(_) => acked.push(*id),
                }
            }
        }
        for id in take {
            let this = self.clone();
            let worker = worker.to_owned();
            tokio::spawn(async move { this.take_held(&worker, id).await });
        }
        for (id, why) in cancel {
            let this = self.clone();
            let worker = worker.to_owned();
            tokio::spawn(async move { this.cancel_orphan(&worker, id, &why).await });
        }
        acked
    }

    /// Takes execution `id`'s report from worker `worker`, which holds it, and records how it
    /// ended.
    async fn take_held(&self, worker: &str, id: u64) {
        let client = self.state().clients.get(worker).cloned();
        let held = match client {
            Some(c) => c.held_report(id, TELL_TIMEOUT).await.map_err(|e| e.to_string()),
            None => Err("no connection".to_owned()),
        };
        match held {
            Ok(Some((invocation, report))) => {
                let (answer, _) = super::invoke::report_response(invocation, worker, report);
                // Whatever the planner heard of it before, the worker holding its report is its
                // entry (and keeps its outputs).
                if let Some(o) = self.state().executions.orphans.get_mut(&id) {
                    o.entry = Some(worker.to_owned());
                }
                self.execution_ended_at(id, Ok(answer), Some(worker)).await;
                tracing::info!(
                    execution = id,
                    %worker,
                    "recorded how an execution that ran across a planner restart ended"
                );
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(execution = id, %worker, cause = %e, "cannot take a held report; trying at the next heartbeat")
            }
        }
        self.state().executions.taking.remove(&id);
    }

    /// Cancels execution `id`, restored as running, on worker `worker`, its entry (whose
    /// `Failed` ends it on the plan's other workers); when that fails, the next heartbeat that
    /// names it tries again.
    async fn cancel_orphan(&self, worker: &str, id: u64, why: &str) {
        let client = self.state().clients.get(worker).cloned();
        let told = match client {
            Some(c) => c.cancel_execution(id, why, TELL_TIMEOUT).await.is_ok(),
            None => false,
        };
        if !told
            && let Some(Orphan {
                cancel: Some((_, told)),
                ..
            }) = self.state().executions.orphans.get_mut(&id)
        {
            *told = false;
        }
    }

    /// Executions restored as running that no daemon has spoken of within the grace: `lost`
    /// (a daemon that speaks of one later brings it back).
    pub(crate) async fn expire_orphans(&self) {
        let grace = self.orphan_grace();
        let now = Instant::now();
        let lost: Vec<ExecutionRecord> = {
            let mut state = self.state();
            let ex = &mut state.executions;
            let gone: Vec<u64> = ex
                .orphans
                .iter()
                .filter(|(id, o)| now.duration_since(o.heard) > grace && !ex.taking.contains(id))
                .map(|(id, _)| *id)
                .collect();
            gone.iter()
                .filter_map(|id| {
                    ex.orphans.remove(id);
                    let e = ex.map.get_mut(id)?;
                    e.status = Some(ExecutionStatus::Lost);
                    e.ended_unix_ms = unix_ms();
                    e.error = format!(
                        "the planner stopped while it ran, and no worker has spoken of it in the {} s since: its entry \
                         daemon stopped too, so how it ended is not known",
                        grace.as_secs()
                    );
                    Some(e.clone())
                })
                .collect()
        };
        if lost.is_empty() {
            return;
        }
        tracing::warn!(
            executions = lost.len(),
            "executions that ran when the planner stopped are lost"
        );
        self.inner.execution_ended.notify_waiters();
        for e in lost {
            // One a daemon spoke of meanwhile (and that may have ended since) is not written
            // over with its loss.
            let still_lost = self
                .state()
                .executions
                .map
                .get(&e.id)
                .is_some_and(|k| k.status == Some(ExecutionStatus::Lost));
            if still_lost {
                self.kept_ending(e).await;
            }
        }
    }

    /// `CancelExecution`: no invocation of execution `id` starts any more, and the one
    /// running is ended on every worker (its calls abandoned, its objects freed). Answers the
    /// execution once it has ended (or at [`CANCEL_WAIT`], still running).
    pub(crate) async fn cancel_execution(&self, id: u64, reason: &str) -> Result<ExecutionRecord, Status> {
        let reason = if reason.is_empty() { "asked by a client" } else { reason };
        let target = {
            let mut state = self.state();
            let record = match state.executions.map.get(&id) {
                Some(e) => e,
                None => {
                    drop(state);
                    return Err(self.execution(id).expect_err("not kept"));
                }
            };
            if record.status != Some(ExecutionStatus::Running) {
                let status = record.status.map_or("unknown", ExecutionStatus::as_str);
                return Err(Status::failed_precondition(format!(
                    "execution {id} has already ended ({status}): there is nothing to cancel"
                )));
            }
            if let Some(o) = state.executions.orphans.get_mut(&id) {
                // It ran across a restart: its entry is told once a heartbeat names it.
                if o.cancel.is_none() {
                    o.cancel = Some((reason.to_owned(), o.entry.is_some()));
                    if let Some(worker) = o.entry.clone() {
                        let this = self.clone();
                        let why = reason.to_owned();
                        tokio::spawn(async move { this.cancel_orphan(&worker, id, &why).await });
                    }
                }
                None
            } else {
                let running = state.executions.running.entry(id).or_default();
                if running.cancelled.is_some() {
                    None
                } else {
                    running.cancelled = Some(reason.to_owned());
                    running.invocation.clone()
                }
            }
        };
        tracing::info!(execution = id, reason, "cancelling an execution");
        let message = format!("cancelled: {reason}");
        match target {
            Some((invocation, RunsOn::Workers(daemons))) => {
                let mut told = tokio::task::JoinSet::new();
                for (name, daemon) in daemons {
                    let reason = reason.to_owned();
                    told.spawn(async move { (name, daemon.cancel(invocation, &reason, TELL_TIMEOUT).await) });
                }
                let mut untold = Vec::new();
                while let Some(Ok((name, r))) = told.join_next().await {
                    if let Err(e) = r {
                        untold.push(format!("`{name}` ({e})"));
                    }
                }
                if !untold.is_empty() {
                    untold.sort();
                    return Err(Status::unavailable(format!(
                        "execution {id} is cancelled, but not every worker running its invocation {invocation} was \
                         told: {}; what runs there ends when the worker is found lost or at the invocation's deadline",
                        untold.join(", ")
                    )));
                }
            }
            Some((invocation, RunsOn::Central)) => self.central().abort(invocation, message),
            None => {}
        }
        self.execution_waiting(id, CANCEL_WAIT).await
    }

    /// Execution `id` once it has ended, or as it is after `wait` (at most [`MAX_WAIT`]).
    pub(crate) async fn execution_waiting(&self, id: u64, wait: Duration) -> Result<ExecutionRecord, Status> {
        let until = Instant::now() + wait.min(MAX_WAIT);
        loop {
            let ended = self.inner.execution_ended.notified();
            let record = self.execution(id)?;
            if record.status != Some(ExecutionStatus::Running) {
                return Ok(record);
            }
            if tokio::time::timeout_at(until.into(), ended).await.is_err() {
                return Ok(record);
            }
        }
    }

    /// Execution `id`, if the planner keeps it.
    pub(crate) fn execution(&self, id: u64) -> Result<ExecutionRecord, Status> {
        let state = self.state();
        state.executions.map.get(&id).cloned().ok_or_else(|| {
            let kept = &state.executions.map;
            Status::not_found(match (kept.keys().next(), kept.keys().next_back()) {
                _ if id > state.executions.last_id || id == 0 => {
                    format!("there is no execution {id}: no execution has that id yet")
                }
                (Some(first), Some(last)) => format!(
                    "execution {id} is no longer kept: it ended longer ago than the retention (the planner keeps \
                     executions {first} to {last} now)"
                ),
                _ => format!("execution {id} is no longer kept: it ended longer ago than the retention"),
            })
        })
    }

    /// The executions `filter` wants, newest first (without outputs and reports), and whether
    /// more match beyond them.
    pub(crate) fn list_executions(&self, filter: &ExecutionFilter) -> (Vec<ExecutionRecord>, bool) {
        let limit = match filter.limit {
            0 => 100,
            n => n.min(MAX_PAGE),
        };
        let state = self.state();
        let upper = filter.before_id.unwrap_or(u64::MAX);
        let mut page = Vec::new();
        let mut more = false;
        for e in state.executions.map.range(..upper).rev().map(|(_, e)| e) {
            if filter.workflow.as_ref().is_some_and(|w| *w != e.workflow)
                || filter.status.is_some_and(|s| e.status != Some(s))
                || e.started_unix_ms < filter.since_unix_ms
            {
                continue;
            }
            if page.len() == limit {
                more = true;
                break;
            }
            page.push(ExecutionRecord {
                output_json: Vec::new(),
                report_json: Vec::new(),
                ..e.clone()
            });
        }
        (page, more)
    }

    /// Forgets executions that ended beyond the retention's count or age (oldest first).
    fn prune_executions(&self) {
        let config = &self.inner.config;
        let now = unix_ms();
        let max_age = u64::try_from(config.keep_executions_for.as_millis()).unwrap_or(u64::MAX);
        let mut outputs: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        let gone: Vec<(u64, String)> = {
            let mut state = self.state();
            let ended: Vec<u64> = state
                .executions
                .map
                .values()
                .filter(|e| e.status != Some(ExecutionStatus::Running))
                .map(|e| e.id)
                .collect();
            let over = state.executions.map.len().saturating_sub(config.keep_executions);
            let mut gone = Vec::new();
            for (n, id) in ended.into_iter().enumerate() {
                let e = &state.executions.map[&id];
                if n < over || now.saturating_sub(e.ended_unix_ms) > max_age {
                    gone.push((id, e.idempotency_key.clone()));
                }
            }
            for (id, key) in &gone {
                if let Some(e) = state.executions.map.get(id)
                    && !e.entry_worker.is_empty()
                {
                    outputs.entry(e.entry_worker.clone()).or_default().push(e.invocation_id);
                }
                state.executions.map.remove(id);
                state.executions.unpersisted.remove(id);
                if !key.is_empty() {
                    state.executions.keys.remove(key);
                }
            }
            gone
        };
        self.forget_executions(gone.into_iter().map(|(id, _)| id).collect());
        self.release_outputs(outputs);
    }

    /// Tells each worker of `outputs` to free the outputs it keeps for those invocations (in
    /// the background: one that does not answer frees them when their time is up).
    fn release_outputs(&self, outputs: BTreeMap<String, Vec<u64>>) {
        for (worker, invocations) in outputs {
            let Some(daemon) = self.state().clients.get(&worker).cloned() else {
                continue;
            };
            tokio::spawn(async move {
                if let Err(e) = daemon.release_outputs(invocations, RELEASE_TIMEOUT).await {
                    tracing::debug!(worker = %worker, cause = %e, "could not free kept outputs; they go when their time is up");
                }
            });
        }
    }

    /// Output `name` (element `element` of a list) of execution `id`, from the worker that
    /// keeps it: the pieces as they come.
    pub(crate) async fn read_execution_output(
        &self,
        id: u64,
        name: &str,
        element: u32,
    ) -> Result<(u64, faasflow_rpc::daemon::OutputStream), Status> {
        let (e, daemon) = {
            let state = self.state();
            let Some(e) = state.executions.map.get(&id).cloned() else {
                return Err(Status::not_found(format!(
                    "execution {id} is not known (never started, or forgotten past its retention)"
                )));
            };
            let daemon = state.clients.get(&e.entry_worker).cloned();
            (e, daemon)
        };
        if e.status != Some(ExecutionStatus::Succeeded) {
            return Err(Status::failed_precondition(format!(
                "execution {id} has no outputs: it is {}",
                e.status.map_or("unknown", |s| s.as_str())
            )));
        }
        let shown: serde_json::Value = serde_json::from_slice(&e.output_json).unwrap_or_default();
        let Some(value) = shown.get(name) else {
            let names: Vec<&str> = shown
                .as_object()
                .map_or(Vec::new(), |o| o.keys().map(String::as_str).collect());
            return Err(Status::not_found(format!(
                "execution {id} has no output `{name}` (its outputs: {})",
                names.join(", ")
            )));
        };
        let part = match value.as_array() {
            Some(elements) => elements.get(element as usize).ok_or_else(|| {
                Status::not_found(format!(
                    "output `{name}` of execution {id} has {} element(s); element {element} is not one of them",
                    elements.len()
                ))
            })?,
            None => value,
        };
        let unshown = faasflow_core::report::not_shown(part).is_some();
        if !unshown {
            return Err(Status::failed_precondition(format!(
                "execution {id}'s output `{name}` is shown whole in its output (GetExecution); only outputs shown as \
                 {{\"bytes\": N}} are kept to be read"
            )));
        }
        if e.entry_worker.is_empty() {
            return Err(Status::failed_precondition(format!(
                "execution {id} ran on the planner's central engine (MasterSP), which keeps no outputs: only WorkerSP \
                 executions' outputs can be read"
            )));
        }
        let Some(daemon) = daemon else {
            return Err(Status::unavailable(format!(
                "worker `{}`, which keeps execution {id}'s outputs, is not registered",
                e.entry_worker
            )));
        };
        // A connection of its own: a reader that stalls holds up no other call to the worker
        // (HTTP/2 flow control is shared by a connection's streams).
        let daemon =
            faasflow_rpc::daemon::Daemon::connect(daemon.name(), daemon.addr(), &self.inner.config.credentials())
                .await
                .map_err(|err| Status::unavailable(format!("execution {id}, output `{name}`: {err}")))?;
        let mut stream = daemon
            .read_output(e.invocation_id, name, element, RELEASE_TIMEOUT)
            .await
            .map_err(|err| match err {
                faasflow_rpc::daemon::DaemonError::Refused { message, .. } => {
                    Status::not_found(format!("execution {id}, output `{name}`: {message}"))
                }
                other => Status::unavailable(format!("execution {id}, output `{name}`: {other}")),
            })?;
        // Once the reader has taken the last byte and lets the stream go, the worker is told the
        // output was read whole (`Read`'s drop); a reader gone before then leaves it kept.
        // The first piece says the size (an answer's length comes before its body); it counts
        // as read only once the reader takes it.
        let first = {
            use futures_util::StreamExt as _;
            match stream.next().await {
                Some(Ok(c)) => c,
                Some(Err(err)) => return Err(Status::unavailable(format!("execution {id}, output `{name}`: {err}"))),
                None => {
                    return Err(Status::data_loss(format!(
                        "execution {id}, output `{name}`: the worker sent nothing"
                    )));
                }
            }
        };
        let total = first.total;
        let read = Read {
            stream,
            first: Some(first),
            got: 0,
            total,
            daemon,
            at: (e.invocation_id, name.to_owned(), element),
        };
        let stream = futures_util::stream::unfold(Some(read), |state| async move {
            use futures_util::StreamExt as _;
            let mut r = state?;
            let next = match r.first.take() {
                Some(first) => Some(Ok(first)),
                None => r.stream.next().await,
            };
            match next {
                Some(Ok(c)) => {
                    r.got += c.data.len() as u64;
                    Some((Ok(c), Some(r)))
                }
                Some(Err(e)) => Some((Err(e), None)),
                None => None,
            }
        });
        Ok((total, Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(id: u64, workflow: &str, status: ExecutionStatus, ended_unix_ms: u64) -> ExecutionRecord {
        ExecutionRecord {
            id,
            workflow: workflow.into(),
            status: Some(status),
            started_unix_ms: ended_unix_ms.saturating_sub(10),
            ended_unix_ms,
            idempotency_key: format!("key-{id}"),
            ..ExecutionRecord::default()
        }
    }

    fn service(keep: usize, keep_for: Duration) -> PlannerService {
        PlannerService::new(ServiceConfig {
            keep_executions: keep,
            keep_executions_for: keep_for,
            ..ServiceConfig::default()
        })
    }

    fn put(s: &PlannerService, e: ExecutionRecord) {
        let mut state = s.state();
        state.executions.keys.insert(e.idempotency_key.clone(), e.id);
        state.executions.last_id = state.executions.last_id.max(e.id);
        state.executions.map.insert(e.id, e);
    }

    #[test]
    fn ended_executions_beyond_the_count_or_age_go_oldest_first_and_running_ones_stay() {
        let now = unix_ms();
        let s = service(3, Duration::from_secs(3600));
        put(&s, ended(1, "a", ExecutionStatus::Succeeded, now - 7_200_000));
        put(&s, ended(2, "a", ExecutionStatus::Failed, now - 100));
        put(
            &s,
            ExecutionRecord {
                status: Some(ExecutionStatus::Running),
                ended_unix_ms: 0,
                ..ended(3, "a", ExecutionStatus::Running, now)
            },
        );
        put(&s, ended(4, "b", ExecutionStatus::Succeeded, now - 50));
        put(&s, ended(5, "b", ExecutionStatus::Succeeded, now - 10));
        s.prune_executions();
        let state = s.state();
        let kept: Vec<u64> = state.executions.map.keys().copied().collect();
        // 1 is too old; then the oldest ended one (2) goes to keep 3.
        assert_eq!(kept, [3, 4, 5]);
        assert!(!state.executions.keys.contains_key("key-1") && !state.executions.keys.contains_key("key-2"));
        drop(state);
        assert!(s.execution(1).unwrap_err().message().contains("is no longer kept"));
        assert!(
            s.execution(6)
                .unwrap_err()
                .message()
                .contains("there is no execution 6")
        );
    }

    #[test]
    fn a_list_is_filtered_and_paged_newest_first_without_outputs() {
        let s = service(100, Duration::from_secs(3600));
        let now = unix_ms();
        for id in 1..=7 {
            let mut e = ended(
                id,
                if id % 2 == 0 { "even" } else { "odd" },
                ExecutionStatus::Succeeded,
                now,
            );
            e.output_json = b"{}".to_vec();
            put(&s, e);
        }
        let ids = |f: &ExecutionFilter| {
            let (page, more) = s.list_executions(f);
            assert!(page.iter().all(|e| e.output_json.is_empty()));
            (page.iter().map(|e| e.id).collect::<Vec<_>>(), more)
        };
        let mut f = ExecutionFilter {
            limit: 3,
            ..ExecutionFilter::default()
        };
        assert_eq!(ids(&f), (vec![7, 6, 5], true));
        f.before_id = Some(5);
        assert_eq!(ids(&f), (vec![4, 3, 2], true));
        f.before_id = Some(2);
        assert_eq!(ids(&f), (vec![1], false));
        let odd = ExecutionFilter {
            workflow: Some("odd".into()),
            ..ExecutionFilter::default()
        };
        assert_eq!(ids(&odd), (vec![7, 5, 3, 1], false));
        let failed = ExecutionFilter {
            status: Some(ExecutionStatus::Failed),
            ..ExecutionFilter::default()
        };
        assert_eq!(ids(&failed), (vec![], false));
    }

    #[test]
    fn a_restart_keeps_running_executions_running_until_heard_of_and_ids_go_on() {
        let kept = BTreeMap::from([
            (4, ended(4, "a", ExecutionStatus::Succeeded, 100)),
            (
                5,
                ExecutionRecord {
                    status: Some(ExecutionStatus::Running),
                    ..ended(5, "a", ExecutionStatus::Running, 0)
                },
            ),
        ]);
        let e = Executions::restored(kept, 9);
        assert_eq!(e.map[&5].status, Some(ExecutionStatus::Running));
        assert_eq!(e.orphans.keys().collect::<Vec<_>>(), [&5]);
        assert_eq!(e.map[&4].status, Some(ExecutionStatus::Succeeded));
        assert_eq!(e.last_id, 9, "ids given to pruned executions are not given again");
        assert_eq!(e.keys["key-5"], 5);
    }

    /// Heartbeats: ended executions recorded for good are acknowledged (and unknown ones, so
    /// that daemons let go), those not yet on disk or still answered by an invocation are not;
    /// an orphan no daemon speaks of is lost after the grace, and comes back when one does.
    #[tokio::test]
    async fn heartbeats_acknowledge_what_is_recorded_and_orphans_are_lost_then_heard_again() {
        let s = service(100, Duration::from_secs(3600));
        put(&s, ended(1, "a", ExecutionStatus::Succeeded, 100));
        put(&s, ended(2, "a", ExecutionStatus::Failed, 100));
        let running = |id| ExecutionRecord {
            status: Some(ExecutionStatus::Running),
            ended_unix_ms: 0,
            ..ended(id, "a", ExecutionStatus::Running, 0)
        };
        put(&s, running(3));
        put(&s, running(4));
        {
            let mut state = s.state();
            state.executions.unpersisted.insert(2);
            state.executions.running.insert(3, Running::default());
            let long_ago = Instant::now() - Duration::from_secs(60);
            state.executions.orphans.insert(4, Orphan::at(long_ago));
        }
        let acked = s.executions_heard("w", &[], &[1, 2, 3, 77]);
        assert_eq!(acked, [1, 77]);
        assert!(
            s.state().executions.taking.is_empty(),
            "3 is answered by its invocation"
        );
        s.expire_orphans().await;
        let lost = s.execution(4).expect("kept");
        assert_eq!(lost.status, Some(ExecutionStatus::Lost));
        assert!(lost.error.contains("no worker has spoken of it"), "{}", lost.error);
        assert!(s.state().executions.orphans.is_empty());
        // A daemon that runs it after all brings it back, as its entry.
        s.executions_heard("w", &[4], &[]);
        assert_eq!(s.execution(4).expect("kept").status, Some(ExecutionStatus::Running));
        assert_eq!(s.state().executions.orphans[&4].entry.as_deref(), Some("w"));
        s.expire_orphans().await;
        assert_eq!(
            s.execution(4).expect("kept").status,
            Some(ExecutionStatus::Running),
            "heard of just now"
        );
    }
}
