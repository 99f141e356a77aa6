//! Invocations: admission (the planner's in-flight limit), the route to the entry daemon or the
//! central engine, waiting for the answer within the deadline, and running an invocation
//! again on the live workers when a worker it used was lost and its functions are idempotent.

use super::*;
use crate::service::executions::RunsOn;
use faasflow_core::dag::fill_staged_inputs;
use faasflow_rpc::channel::MAX_MESSAGE;

/// An invocation as a client asks for it.
#[derive(Debug, Clone)]
pub(crate) struct InvokeRequest {
    pub(crate) workflow: String,
    /// The version to run; `None` runs the newest.
    pub(crate) version: Option<u64>,
    /// The workflow's input, a JSON object.
    pub(crate) input_json: Vec<u8>,
    /// Time limit of the whole invocation, ms (0: the workflow's, else the planner's default).
    pub(crate) deadline_ms: u64,
    /// Fill the staged inputs the input does not give, with bytes of their declared size
    /// times this scale ([`faasflow_core::dag::fill_staged_inputs`]).
    pub(crate) fill_staged_scale: Option<f64>,
    /// The execution it runs (`None`: a synchronous `Invoke`).
    pub(crate) execution: Option<u64>,
    /// Inputs given as uploaded files: input name → upload id (`uploads.rs`).
    pub(crate) files: BTreeMap<String, String>,
}

/// How an invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Succeeded,
    /// A step failed; the answer's `error` names the step and the cause.
    Failed,
    DeadlineExceeded,
}

/// The answer to an invocation.
#[derive(Debug, Clone)]
pub(crate) struct InvokeAnswer {
    pub(crate) invocation_id: u64,
    pub(crate) status: Ending,
    /// The workflow's output, a JSON object (when it succeeded).
    pub(crate) output_json: Vec<u8>,
    /// What went wrong (when it did not succeed).
    pub(crate) error: String,
    /// The run report (JSON).
    pub(crate) report_json: Vec<u8>,
    /// Staged inputs the planner filled, and their bytes.
    pub(crate) filled: (usize, u64),
}

/// Where an invocation goes.
enum Route {
    /// WorkerSP: to the entry daemon.
    Worker {
        id: u64,
        version: u64,
        entry: Target,
        daemon: Box<Daemon>,
        guard: InFlight,
    },
    /// MasterSP: to the central engine.
    Central { id: u64, version: u64, guard: InFlight },
    /// A worker of the version is lost, or does not hold it (it restarted): nothing started;
    /// the version must be repaired first ([`PlannerService::repair`]).
    NotReady { message: String },
}

impl PlannerService {
    /// `Invoke`: [`PlannerService::invoke_rerunning`], counted in the planner's metrics by
    /// outcome and time; with the answer, the planner's time from receiving it to answering,
    /// µs (the report's `planner_us`).
    pub(crate) async fn invoke_counted(&self, req: InvokeRequest) -> Result<(InvokeAnswer, f64), Status> {
        let started = Instant::now();
        let result = self.invoke_rerunning(req).await;
        let outcome = match &result {
            Ok(r) => match r.status {
                Ending::Succeeded => "ok",
                Ending::DeadlineExceeded => "deadline",
                Ending::Failed => "failed",
            },
            Err(s) if s.code() == tonic::Code::ResourceExhausted => "overloaded",
            Err(_) => "refused",
        };
        let took = started.elapsed().as_secs_f64();
        let mut state = self.state();
        *state.outcomes.entry(outcome).or_default() += 1;
        if outcome != "refused" && outcome != "overloaded" {
            state.invocation_seconds.observe(took);
        }
        result.map(|answer| (answer, took * 1e6))
    }

    /// Runs an invocation; when a worker it used is lost and every function of its workflow
    /// is idempotent (and no version was asked for), plans the workflow again onto the live
    /// workers and runs it again from its input, within its deadline (at most
    /// [`MAX_RERUNS`] times). The answer's report lists the earlier runs' errors.
    pub(crate) async fn invoke_rerunning(&self, mut req: InvokeRequest) -> Result<InvokeAnswer, Status> {
        let started = Instant::now();
        let mut earlier: Vec<String> = Vec::new();
        loop {
            let (mut response, run) = self.invoke_one(req.clone()).await?;
            let left = run.deadline.saturating_sub(started.elapsed());
            let failed = response.status == Ending::Failed;
            let lost = match run.lost {
                Some(w) if failed && run.idempotent && req.version.is_none() && earlier.len() < MAX_RERUNS => w,
                _ => return Ok(with_earlier_runs(response, earlier)),
            };
            if left.is_zero() {
                return Ok(with_earlier_runs(response, earlier));
            }
            tracing::info!(
                workflow = %req.workflow,
                invocation = response.invocation_id,
                worker = %lost,
                "an invocation lost a worker; its functions are idempotent: running it again from its input on the live workers"
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

    async fn invoke_one(&self, mut req: InvokeRequest) -> Result<(InvokeAnswer, RunInfo), Status> {
        self.inner.counters.invocations.fetch_add(1, Ordering::Relaxed);
        let mut input: serde_json::Value = serde_json::from_slice(&req.input_json)
            .map_err(|e| Status::invalid_argument(format!("the input is not valid JSON: {e}")))?;
        if !input.is_object() {
            return Err(Status::invalid_argument(
                "the input must be a JSON object of the workflow's named inputs, e.g. {\"text\": \"hello\"}",
            ));
        }
        // Inputs given as uploads: their files, and `null` in the input (the engine sees them
        // given; functions read the files' bytes).
        let files = self.upload_files(&req.workflow, &req.files, &mut input)?;
        let requested = (req.deadline_ms > 0).then(|| Duration::from_millis(req.deadline_ms));
        // The request's limit, else the workflow's `deadline`, else the planner's default.
        let mut deadline = requested.unwrap_or(self.inner.config.default_deadline);
        let mut idempotent: bool;
        let mut replanned = false;
        let mut filled = (0, 0);
        // Choose the version, count the invocation in, and find the entry daemon, under one
        // lock; when the entry is lost, plan the workflow again onto the live workers (nothing
        // has run yet, so that is safe for any workflow) and choose again, once.
        let route = loop {
            let route = 'route: {
                let mut state = self.state();
                let now = Instant::now();
                state.next_invocation += 1;
                let id = state.next_invocation;
                self.reserve_ids(&mut state, id)?;
                let Some(deployed) = state.workflows.get(&req.workflow) else {
                    return Err(self.not_found_workflow(&state, &req.workflow));
                };
                if deployed.undeploying {
                    return Err(Status::failed_precondition(format!(
                        "workflow `{}` is being undeployed: it takes no new invocations (deploy it again to invoke \
                         it once that is done)",
                        req.workflow
                    )));
                }
                let index = find_version(&req.workflow, deployed, req.version).map_err(|e| Status::not_found(e.0))?;
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
                if !files.is_empty() {
                    file_inputs_read_alone(&req.workflow, &v.wf, &files)?;
                }
                if let Some(scale) = req.fill_staged_scale
                    && filled == (0, 0)
                {
                    filled = fill_staged_inputs(&v.wf, &mut input, scale);
                }
                // Never start what would wait on a worker that cannot run its part.
                if let Some(why) = version_fault(&state.registry, v, now) {
                    let message = format!(
                        "workflow `{}` version {} cannot run now: {why}",
                        req.workflow, v.version
                    );
                    break 'route Route::NotReady { message };
                }
                if v.plan.mode == Mode::MasterSp {
                    let version = v.version;
                    let guard = InFlight::hold(self, &mut state, &req.workflow, index, version);
                    Route::Central { id, version, guard }
                } else {
                    let Some(first) = entry_task(&v.wf, &v.plan) else {
                        return Err(Status::failed_precondition(format!(
                            "workflow `{}` has no task to start",
                            req.workflow
                        )));
                    };
                    let entry = v.cluster.workers[v.plan.worker_of(first) as usize].name.clone();
                    let version = v.version;
                    let Some(w) = state.registry.get(&entry) else {
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
                    let Some(daemon) = state.clients.get(&entry.name).cloned() else {
                        return Err(Status::unavailable(format!(
                            "worker `{}` has no connection",
                            entry.name
                        )));
                    };
                    let guard = InFlight::hold(self, &mut state, &req.workflow, index, version);
                    Route::Worker {
                        id,
                        version,
                        entry,
                        daemon: Box::new(daemon),
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
        if filled.0 > 0 || !files.is_empty() {
            req.input_json = staged_input_json(&req.workflow, &input)?;
        }
        if let Some(execution) = req.execution {
            let mut state = self.state();
            let (id, runs_on) = match &route {
                Route::Worker {
                    id,
                    entry,
                    daemon,
                    version,
                    ..
                } => {
                    let mut daemons = vec![(entry.name.clone(), (**daemon).clone())];
                    let others = state
                        .workflows
                        .get(&req.workflow)
                        .and_then(|d| d.versions.iter().find(|v| v.version == *version))
                        .map(|v| v.daemons.clone())
                        .unwrap_or_default();
                    for name in others.into_iter().filter(|n| *n != entry.name) {
                        if let Some(c) = state.clients.get(&name) {
                            daemons.push((name, c.clone()));
                        }
                    }
                    (*id, RunsOn::Workers(daemons))
                }
                Route::Central { id, .. } => (*id, RunsOn::Central),
                Route::NotReady { message } => return Err(Status::unavailable(message.clone())),
            };
            let running = state.executions.running.entry(execution).or_default();
            if let Some(why) = &running.cancelled {
                return Err(Status::cancelled(format!("cancelled: {why}")));
            }
            running.invocation = Some((id, runs_on));
        }
        let (id, version, entry, daemon, guard) = match route {
            Route::Central { id, version, guard } => {
                let response = self
                    .invoke_central(&req.workflow, version, id, (input, files), deadline)
                    .await;
                drop(guard);
                if let Ok((r, _)) = &response {
                    self.note_report(id, &req.workflow, &r.report_json);
                }
                return response.map(|(mut r, lost)| {
                    r.filled = filled;
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
                daemon,
                guard,
            } => (id, version, entry, *daemon, guard),
            Route::NotReady { message } => return Err(Status::unavailable(message)),
        };
        let mut start = StartInvocation {
            workflow: req.workflow.clone(),
            version,
            invocation: id,
            input_json: req.input_json,
            deadline,
            execution: req.execution,
            // An execution's outputs that its report does not show whole stay on the entry
            // daemon, to be read, for as long as the execution is kept.
            keep_outputs: req.execution.map(|_| self.inner.config.keep_executions_for),
            files: files.iter().map(|(name, ..)| name.clone()).collect(),
        };
        // Uploaded inputs go to the entry first, straight from disk into its arena; the time
        // they take counts against the deadline, and a failure is the invocation's as if the
        // entry had answered it.
        let began = Instant::now();
        let mut put_failed = None;
        for (name, path, len) in &files {
            let left = deadline.saturating_sub(began.elapsed());
            let put = daemon.put_input((id, &req.workflow, version), name, (path, *len), left);
            if let Err(e) = put.await {
                put_failed = Some(match e {
                    DaemonError::Refused { worker, addr, message } => DaemonError::Refused {
                        worker,
                        addr,
                        message: format!("input `{name}` could not be put there: {message}"),
                    },
                    other => other,
                });
                break;
            }
        }
        if !files.is_empty() {
            start.deadline = deadline.saturating_sub(began.elapsed()).max(Duration::from_millis(1));
        }
        let outcome = match put_failed {
            Some(e) => Err(e),
            None => {
                self.inner.counters.messages.sent.fetch_add(1, Ordering::Relaxed);
                // The entry daemon ends the invocation at its deadline and answers with the
                // report; waiting a little longer lets that answer arrive (it names the steps
                // still open).
                daemon.invoke(&start, start.deadline + DEADLINE_GRACE).await
            }
        };
        drop(guard);
        let failed = |status: Ending, error: String| InvokeAnswer {
            invocation_id: id,
            status,
            output_json: Vec::new(),
            error,
            report_json: Vec::new(),
            filled: (0, 0),
        };
        let mut lost = None;
        let response = match outcome {
            Err(DaemonError::Timeout { .. }) => failed(
                Ending::DeadlineExceeded,
                format!(
                    "invocation {id} of workflow `{}` version {version} did not end within its deadline of {} ms \
                     (entry worker `{}` at {})",
                    req.workflow,
                    deadline.as_millis(),
                    entry.name,
                    entry.addr
                ),
            ),
            Err(DaemonError::Overloaded { message, .. }) => {
                return Err(Status::resource_exhausted(format!(
                    "invocation {id} of workflow `{}` version {version} was refused by worker `{}`: {message}",
                    req.workflow, entry.name,
                )));
            }
            Err(e) => {
                let (what, cause) = match e {
                    DaemonError::Unreachable { cause, .. } => {
                        self.mark_lost(&entry.name);
                        lost = Some(entry.name.clone());
                        ("was lost during", cause)
                    }
                    DaemonError::Refused { message, .. } => ("refused", message),
                    other => ("was lost during", other.to_string()),
                };
                failed(
                    Ending::Failed,
                    format!(
                        "worker `{}` ({}) {what} invocation {id} of workflow `{}` version {version}: {cause}",
                        entry.name, entry.addr, req.workflow,
                    ),
                )
            }
            Ok(Started::NotStarted { reason }) => {
                self.inner.counters.messages.received.fetch_add(1, Ordering::Relaxed);
                return Err(Status::failed_precondition(format!(
                    "worker `{}` did not start invocation {id} of workflow `{}` version {version}: {reason}",
                    entry.name, req.workflow
                )));
            }
            Ok(Started::Ran { report_json }) => {
                self.inner.counters.messages.received.fetch_add(1, Ordering::Relaxed);
                let (response, lost_there) = report_response(id, &entry.name, report_json);
                lost = lost_there;
                response
            }
        };
        self.note_report(id, &req.workflow, &response.report_json);
        Ok((
            InvokeAnswer { filled, ..response },
            RunInfo {
                deadline,
                idempotent,
                lost,
            },
        ))
    }

    /// Runs a MasterSP invocation on the central engine.
    async fn invoke_central(
        &self,
        workflow: &str,
        version: u64,
        id: u64,
        (input, files): (serde_json::Value, Vec<(String, std::path::PathBuf, u64)>),
        deadline: Duration,
    ) -> Result<(InvokeAnswer, Option<String>), Status> {
        let store = self.remote_store(workflow).await?;
        let central = self.central().clone();
        let run = central.invoke(workflow, version, id, input, files, store);
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
                central.abort(id, message.clone());
                let response = InvokeAnswer {
                    invocation_id: id,
                    status: Ending::DeadlineExceeded,
                    output_json: Vec::new(),
                    error: message,
                    report_json: Vec::new(),
                    filled: (0, 0),
                };
                Ok((response, None))
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

/// The input with its staged files filled, encoded; refused when the daemon could not take it.
fn staged_input_json(workflow: &str, input: &serde_json::Value) -> Result<Vec<u8>, Status> {
    let json = serde_json::to_vec(input)
        .map_err(|e| Status::internal(format!("the input of workflow `{workflow}` cannot be encoded: {e}")))?;
    // Room for the rest of the daemon's request.
    let limit = MAX_MESSAGE - (1 << 20);
    if json.len() > limit {
        return Err(Status::invalid_argument(format!(
            "the input of workflow `{workflow}` with its staged files filled is {} bytes, more than the {limit} \
             a daemon takes in one message; lower the data scale (--data-scale)",
            json.len()
        )));
    }
    Ok(json)
}

impl PlannerService {
    /// The files of the uploads `files` names (input name → upload id), each input set to
    /// `null` in `input`: refused when an upload is unknown, or the input gives it too.
    pub(super) fn upload_files(
        &self,
        workflow: &str,
        files: &BTreeMap<String, String>,
        input: &mut serde_json::Value,
    ) -> Result<Vec<(String, std::path::PathBuf, u64)>, Status> {
        if files.is_empty() {
            return Ok(Vec::new());
        }
        let uploads = self.uploads()?;
        let mut out = Vec::with_capacity(files.len());
        for (name, id) in files {
            let (path, len) = uploads
                .find(id)
                .map_err(|e| Status::not_found(format!("input `{name}` of workflow `{workflow}`: {e}")))?;
            let Some(map) = input.as_object_mut() else {
                return Err(Status::invalid_argument(
                    "the input must be a JSON object of the workflow's named inputs, e.g. {\"text\": \"hello\"}",
                ));
            };
            if map.contains_key(name) {
                return Err(Status::invalid_argument(format!(
                    "input `{name}` of workflow `{workflow}` is given twice: in the input JSON and as upload `{id}`; \
                     give it once"
                )));
            }
            map.insert(name.clone(), serde_json::Value::Null);
            out.push((name.clone(), path, len));
        }
        Ok(out)
    }
}

/// Refuses inputs given as files that `wf` does not declare, or reads other than as a
/// task's input on its own (a switch condition, a foreach list, the workflow's outputs or a
/// binding of several sources need the input's JSON value).
pub(super) fn file_inputs_read_alone(
    workflow: &str,
    wf: &Workflow,
    files: &[(String, std::path::PathBuf, u64)],
) -> Result<(), Status> {
    let alone = wf.stageable_inputs();
    for (name, ..) in files {
        if !wf.inputs.iter().any(|i| i.name == *name) {
            return Err(Status::invalid_argument(format!(
                "workflow `{workflow}` has no input `{name}` to give a file for (its inputs: {})",
                list_names(wf.inputs.iter().map(|i| i.name.as_str()), 10)
            )));
        }
        if !alone.contains(name) {
            return Err(Status::invalid_argument(format!(
                "input `{name}` of workflow `{workflow}` cannot be a file: a switch condition, a foreach list, the \
                 workflow's outputs or a binding of several sources reads its JSON value; give it in the input JSON"
            )));
        }
    }
    Ok(())
}

/// Runs of one invocation at most, when workers are lost ([`PlannerService::invoke_rerunning`]).
const MAX_RERUNS: usize = 2;

/// `response` with the errors of the runs before it in its report (`earlier_runs`).
fn with_earlier_runs(mut response: InvokeAnswer, earlier: Vec<String>) -> InvokeAnswer {
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
pub(super) fn report_response(id: u64, worker: &str, report_json: Vec<u8>) -> (InvokeAnswer, Option<String>) {
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
        Ok(o) if o.status == "ok" => InvokeAnswer {
            invocation_id: id,
            status: Ending::Succeeded,
            output_json: serde_json::to_vec(&o.output).unwrap_or_default(),
            error: String::new(),
            report_json,
            filled: (0, 0),
        },
        Ok(o) => InvokeAnswer {
            invocation_id: id,
            status: if o.error.as_deref().is_some_and(|e| e.starts_with(DEADLINE_PASSED)) {
                Ending::DeadlineExceeded
            } else {
                Ending::Failed
            },
            output_json: Vec::new(),
            error: o
                .error
                .unwrap_or_else(|| format!("invocation {id} ended with status `{}`", o.status)),
            report_json,
            filled: (0, 0),
        },
        Err(e) => InvokeAnswer {
            invocation_id: id,
            status: Ending::Failed,
            output_json: Vec::new(),
            error: format!("worker `{worker}` sent a report for invocation {id} that is not valid JSON: {e}"),
            report_json,
            filled: (0, 0),
        },
    };
    (response, lost)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_become_answers() {
        let (ok, _) = report_response(7, "w", br#"{"status":"ok","output":{"a":1}}"#.to_vec());
        assert_eq!(ok.status, Ending::Succeeded);
        assert_eq!(ok.output_json, br#"{"a":1}"#);
        let (failed, lost) = report_response(
            7,
            "w",
            br#"{"status":"failed","output":null,"error":"step `x` failed","lost_worker":"w2"}"#.to_vec(),
        );
        assert_eq!(lost.as_deref(), Some("w2"));
        assert_eq!(failed.status, Ending::Failed);
        assert_eq!(failed.error, "step `x` failed");
        let (garbage, _) = report_response(7, "w", b"nope".to_vec());
        assert!(
            garbage
                .error
                .starts_with("worker `w` sent a report for invocation 7 that is not valid JSON")
        );
    }
}
