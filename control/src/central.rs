//! MasterSP, FaaSFlow's baseline: the planner's central engine triggers every function, and
//! every object goes through the remote tier (Redis).
//!
//! One task (the *central engine*) owns an [`Engine`] in which every MasterSP version is installed with
//! all its task nodes local, so the engine decides every step, applies timeouts and retries,
//! and says when an invocation has ended. Each `Trigger` becomes one `Daemon.Execute` RPC to
//! the daemon the plan put the task on (the inputs are keys in Redis, or inline JSON for
//! workflow inputs and foreach elements); its answer (the outputs' keys, the run record) is
//! one `function_done` or `function_failed`. So the planner handles **two messages per
//! executed function**, counted like WorkerSP's one out and one in per invocation.
//!
//! - A daemon that cannot be reached, or a worker that stops sending heartbeats while it runs
//!   a step, fails that attempt at once with an error naming the worker; whether the step is
//!   retried is the engine's decision (the function's retry policy).
//! - When an invocation ends, the output is read (JSON values inline, other objects from Redis:
//!   text when UTF-8 and at most 64 KiB, else `{"bytes": n}`, as a daemon's report shows them),
//!   every key of the invocation is deleted (whether it succeeded or failed), and then the
//!   report is sent. An attempt still running then (cancelled by the failure of another) has
//!   its outputs deleted when its answer comes.
//!
//! What it does not do: stop a running attempt on its daemon (there is no cancel RPC: an
//! attempt that timed out runs to its end there, and its late answer is dropped), or move any
//! object's bytes itself except the result's.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use faasflow_core::dag::{FailureKind, NodeId, STAGE_MIN_BYTES, Workflow};
use faasflow_core::engine::{Action, Engine, EngineConfig, EngineError, Failure, InputValue, InvocationId, ObjectRef};
use faasflow_core::report::{FunctionRecord, Report, add_skipped, critical_path, shown, shows_bytes};
use faasflow_remote::{ObjectKey, RemoteStore};
use faasflow_rpc::convert::execute::{ExecDone, ExecObject, ExecRequest, ExecValue, Owner};
use faasflow_rpc::daemon::{Daemon, DaemonError};

/// What went wrong in the central engine, apart from the steps it runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CentralError {
    #[error("the planner's central engine has stopped")]
    Stopped,
    /// A version the engine does not take.
    #[error("workflow `{workflow}` cannot run in MasterSP mode: {cause}")]
    Refused { workflow: String, cause: EngineError },
    #[error("the central engine lost track of object {0} (a bug)")]
    LostObject(u64),
    #[error("input `{input}` could not be stored in the remote tier: {cause}")]
    Stage { input: String, cause: String },
    #[error("output `{output}` ({key}) is not in the remote tier any more; was Redis restarted or flushed?")]
    OutputGone { output: String, key: String },
    #[error("cannot read output `{output}` from the remote tier: {cause}")]
    OutputUnreadable { output: String, cause: String },
    /// A worker a step is placed on cannot take it (not registered, lost); the message says
    /// which and what the planner does about it.
    #[error("{0}")]
    NoDaemon(String),
}

/// The daemons, as the planner's registry knows them.
pub(crate) trait Workers: Send + Sync + 'static {
    /// Worker `name`'s daemon, or why there is none (not registered, lost).
    fn daemon(&self, name: &str) -> Result<Daemon, CentralError>;
    /// Worker `name`'s daemon could not be reached: new plans leave it out until it sends a
    /// heartbeat again.
    fn unreachable(&self, name: &str);
}

/// The planner's counts of invocation messages (shared with the WorkerSP path).
#[derive(Debug, Default)]
pub(crate) struct Messages {
    /// Messages sent to daemons for invocations.
    pub(crate) sent: AtomicU64,
    /// Messages received from daemons for invocations.
    pub(crate) received: AtomicU64,
}

/// Why an invocation did not start.
#[derive(Debug)]
pub(crate) enum StartError {
    /// The engine refused it (bad input, unknown version).
    Engine(EngineError),
    /// The central engine has stopped.
    Stopped,
}

/// A handle on the central engine's task; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Central {
    tx: mpsc::UnboundedSender<Msg>,
}

enum Msg {
    Install {
        wf: Arc<Workflow>,
        version: u64,
        /// The worker of each task node.
        placement: HashMap<NodeId, String>,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    Uninstall {
        workflow: String,
        version: u64,
    },
    Start {
        workflow: String,
        version: u64,
        invocation: InvocationId,
        input: serde_json::Value,
        /// Inputs given as uploaded files: name, file, size.
        files: Vec<(String, std::path::PathBuf, u64)>,
        store: RemoteStore,
        reply: oneshot::Sender<Result<Report, StartError>>,
    },
    /// Large inputs of a `Start` are stored in the remote tier: start it.
    Begin {
        begin: Box<Begin>,
    },
    Abort {
        invocation: InvocationId,
        message: String,
    },
    Answer {
        exec: u64,
        outcome: Outcome,
    },
}

/// An invocation whose large inputs went to the remote tier first.
struct Begin {
    workflow: String,
    version: u64,
    invocation: InvocationId,
    input: serde_json::Value,
    store: RemoteStore,
    reply: oneshot::Sender<Result<Report, StartError>>,
    start: Instant,
    /// The inputs stored, by name, or why one could not be.
    staged: Result<HashMap<String, ExecObject>, CentralError>,
    /// Time spent storing them.
    staging_us: f64,
}

/// How an Execute RPC ended.
enum Outcome {
    /// The daemon answered with the attempt's outputs.
    Done(Box<ExecDone>),
    /// The attempt failed (the daemon said why, or its answer broke the protocol).
    Failed(String, FailureKind),
    /// The daemon could not be reached.
    Unreachable(String),
}

impl Central {
    /// Starts the central engine's task (on the current tokio runtime). `check_every`: how often running
    /// steps are checked for lost workers.
    pub(crate) fn start(workers: Arc<dyn Workers>, messages: Arc<Messages>, check_every: Duration) -> Central {
        let (tx, rx) = mpsc::unbounded_channel();
        let actor = Actor {
            engine: Engine::new(EngineConfig { seed: 0x6d61_7374_6572 }),
            origin: Instant::now(),
            workers,
            messages,
            tx: tx.downgrade(),
            versions: HashMap::new(),
            invocations: HashMap::new(),
            objects: HashMap::new(),
            next_object: 1,
            execs: HashMap::new(),
            next_exec: 1,
        };
        tokio::spawn(actor.run(rx, check_every));
        Central { tx }
    }

    /// Installs a MasterSP version in the central engine.
    pub(crate) async fn install(
        &self,
        wf: Arc<Workflow>,
        version: u64,
        placement: HashMap<NodeId, String>,
    ) -> Result<(), CentralError> {
        let (reply, rx) = oneshot::channel();
        let name = wf.name.clone();
        self.tx
            .send(Msg::Install {
                wf,
                version,
                placement,
                reply,
            })
            .map_err(|_| CentralError::Stopped)?;
        match rx.await {
            Ok(r) => r.map_err(|cause| CentralError::Refused { workflow: name, cause }),
            Err(_) => Err(CentralError::Stopped),
        }
    }

    /// Removes a version from the central engine (invocations running on it finish).
    pub(crate) fn uninstall(&self, workflow: &str, version: u64) {
        let _ = self.tx.send(Msg::Uninstall {
            workflow: workflow.to_owned(),
            version,
        });
    }

    /// Runs an invocation to its end: its report (status `ok` or `failed`).
    pub(crate) async fn invoke(
        &self,
        workflow: &str,
        version: u64,
        invocation: InvocationId,
        input: serde_json::Value,
        files: Vec<(String, std::path::PathBuf, u64)>,
        store: RemoteStore,
    ) -> Result<Report, StartError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Start {
                workflow: workflow.to_owned(),
                version,
                invocation,
                input,
                files,
                store,
                reply,
            })
            .map_err(|_| StartError::Stopped)?;
        rx.await.map_err(|_| StartError::Stopped)?
    }

    /// Ends an invocation with `message` as its error (its deadline passed).
    pub(crate) fn abort(&self, invocation: InvocationId, message: String) {
        let _ = self.tx.send(Msg::Abort { invocation, message });
    }
}

/// A large input stored in the remote tier before its invocation starts.
enum Large {
    /// A string of the input JSON.
    Bytes(Vec<u8>),
    /// An uploaded file, and its size.
    File(std::path::PathBuf, u64),
}

/// An installed version.
struct VersionInfo {
    wf: Arc<Workflow>,
    placement: HashMap<NodeId, String>,
}

/// An invocation in flight.
struct Inv {
    info: Arc<VersionInfo>,
    version: u64,
    start: Instant,
    store: RemoteStore,
    reply: oneshot::Sender<Result<Report, StartError>>,
    functions: Vec<FunctionRecord>,
    edges: Vec<faasflow_core::report::EdgeRecord>,
    data_us: f64,
    /// Large inputs stored in the remote tier, by name.
    staged: HashMap<String, ExecObject>,
    /// Time spent storing them before it started.
    staging_us: f64,
    /// A worker that could not be reached or was lost while it ran a step of it.
    lost: Option<String>,
}

/// An Execute RPC in flight.
struct Exec {
    invocation: InvocationId,
    node: NodeId,
    element: Option<u32>,
    attempt: u32,
    worker: String,
    sent: Instant,
    store: RemoteStore,
    workflow: String,
    version: u64,
    task: tokio::task::AbortHandle,
}

struct Actor {
    engine: Engine,
    origin: Instant,
    workers: Arc<dyn Workers>,
    messages: Arc<Messages>,
    /// For RPC tasks to answer on (weak: the central engine ends when every handle is gone).
    tx: mpsc::WeakUnboundedSender<Msg>,
    versions: HashMap<(String, u64), Arc<VersionInfo>>,
    invocations: HashMap<InvocationId, Inv>,
    /// The engine's object ids and where the objects are.
    objects: HashMap<u64, ExecObject>,
    next_object: u64,
    execs: HashMap<u64, Exec>,
    next_exec: u64,
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>, check_every: Duration) {
        let mut check = tokio::time::interval(check_every.max(Duration::from_millis(10)));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.act();
            let timer = self.engine.poll_timeout();
            let wake = tokio::time::Instant::from_std(self.origin + timer.unwrap_or(Duration::ZERO));
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(m) => self.handle(m),
                    None => break,
                },
                () = tokio::time::sleep_until(wake), if timer.is_some() => {
                    let now = self.now();
                    self.engine.tick(now);
                }
                _ = check.tick(), if !self.execs.is_empty() => self.check_workers(),
            }
        }
        for e in self.execs.values() {
            e.task.abort();
        }
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Install {
                wf,
                version,
                placement,
                reply,
            } => {
                let local: HashSet<NodeId> = placement.keys().copied().collect();
                let r = self.engine.install(wf.clone(), version, local);
                if r.is_ok() {
                    self.versions
                        .insert((wf.name.clone(), version), Arc::new(VersionInfo { wf, placement }));
                }
                let _ = reply.send(r);
            }
            Msg::Uninstall { workflow, version } => {
                self.engine.uninstall(&workflow, version);
                self.versions.remove(&(workflow, version));
            }
            Msg::Start {
                workflow,
                version,
                invocation,
                mut input,
                files,
                store,
                reply,
            } => {
                let Some(info) = self.versions.get(&(workflow.clone(), version)).cloned() else {
                    let _ = reply.send(Err(StartError::Engine(EngineError::UnknownWorkflow {
                        name: workflow,
                        version,
                    })));
                    return;
                };
                let start = Instant::now();
                // Large inputs only tasks read go to the remote tier, like every object here;
                // the steps get their keys.
                let mut large = Vec::new();
                if let serde_json::Value::Object(map) = &mut input {
                    for name in info.wf.stageable_inputs() {
                        if let Some(v) = map.get_mut(&name)
                            && matches!(v, serde_json::Value::String(t) if t.len() >= STAGE_MIN_BYTES)
                            && let serde_json::Value::String(t) = std::mem::take(v)
                        {
                            large.push((name, Large::Bytes(t.into_bytes())));
                        }
                    }
                }
                large.extend(
                    files
                        .into_iter()
                        .map(|(name, path, len)| (name, Large::File(path, len))),
                );
                let mut begin = Begin {
                    workflow,
                    version,
                    invocation,
                    input,
                    store,
                    reply,
                    start,
                    staged: Ok(HashMap::new()),
                    staging_us: 0.0,
                };
                if large.is_empty() {
                    return self.begin(begin);
                }
                let Some(tx) = self.tx.upgrade() else { return };
                tokio::spawn(async move {
                    let t = Instant::now();
                    let mut staged = HashMap::new();
                    for (name, large) in large {
                        let key = ObjectKey::new(
                            begin.workflow.clone(),
                            begin.version,
                            begin.invocation,
                            format!("input.{name}"),
                        );
                        let (stored, len) = match large {
                            Large::Bytes(bytes) => (begin.store.put(&key, &bytes).await, bytes.len() as u64),
                            Large::File(path, len) => (begin.store.put_file(&key, &path, len, 1 << 20).await, len),
                        };
                        if let Err(e) = stored {
                            begin.staged = Err(CentralError::Stage {
                                input: name,
                                cause: e.to_string(),
                            });
                            break;
                        }
                        staged.insert(name, ExecObject { key, len, json: None });
                    }
                    if begin.staged.is_ok() {
                        begin.staged = Ok(staged);
                    }
                    begin.staging_us = us(t.elapsed());
                    let _ = tx.send(Msg::Begin { begin: Box::new(begin) });
                });
            }
            Msg::Begin { begin } => self.begin(*begin),
            Msg::Abort { invocation, message } => self.engine.abort(invocation, message),
            Msg::Answer { exec, outcome } => self.answer(exec, outcome),
        }
    }

    /// Starts an invocation in the engine (its large inputs stored already).
    fn begin(&mut self, mut b: Begin) {
        let refused = |b: Begin, e: EngineError| {
            if !matches!(&b.staged, Ok(s) if s.is_empty()) {
                // Its inputs went to the remote tier already (the version was dropped meanwhile).
                let (store, workflow, version, invocation) = (b.store, b.workflow, b.version, b.invocation);
                tokio::spawn(async move {
                    if let Err(err) = store.delete_invocation(&workflow, version, invocation).await {
                        tracing::warn!(%workflow, version, invocation, cause = %err, "could not delete the inputs stored for an invocation");
                    }
                });
            }
            let _ = b.reply.send(Err(StartError::Engine(e)));
        };
        let Some(info) = self.versions.get(&(b.workflow.clone(), b.version)).cloned() else {
            let e = EngineError::UnknownWorkflow {
                name: b.workflow.clone(),
                version: b.version,
            };
            return refused(b, e);
        };
        let now = self.now();
        let input = std::mem::take(&mut b.input);
        if let Err(e) = self.engine.start(now, &b.workflow, b.version, b.invocation, input) {
            return refused(b, e);
        }
        let (staged, failed) = match b.staged {
            Ok(staged) => (staged, None),
            Err(e) => (HashMap::new(), Some(e)),
        };
        self.invocations.insert(
            b.invocation,
            Inv {
                info,
                version: b.version,
                start: b.start,
                store: b.store,
                reply: b.reply,
                functions: Vec::new(),
                edges: Vec::new(),
                data_us: b.staging_us,
                staged,
                staging_us: b.staging_us,
                lost: None,
            },
        );
        if let Some(e) = failed {
            self.engine.abort(b.invocation, e.to_string());
        }
    }

    /// Carries out what the engine asks.
    fn act(&mut self) {
        while let Some(action) = self.engine.poll_action() {
            match action {
                Action::Trigger {
                    invocation,
                    node,
                    element,
                    attempt,
                    inputs,
                } => self.trigger(invocation, node, element, attempt, inputs),
                // No cancel RPC: the attempt runs to its end on its daemon; its answer is
                // taken as the next attempt's (the engine's rule) or dropped.
                Action::Cancel { .. } => {}
                // Every task is this engine's: no other engine to tell.
                Action::Caught { .. } => {}
                Action::Release { object } => {
                    self.objects.remove(&object);
                }
                Action::Finished { invocation, result } => self.finished(invocation, result),
            }
        }
    }

    fn object(&self, r: &ObjectRef) -> Result<ExecObject, CentralError> {
        self.objects.get(&r.id).cloned().ok_or(CentralError::LostObject(r.id))
    }

    fn trigger(
        &mut self,
        invocation: InvocationId,
        node: NodeId,
        element: Option<u32>,
        attempt: u32,
        inputs: Vec<(String, InputValue)>,
    ) {
        let Some(inv) = self.invocations.get(&invocation) else {
            return;
        };
        let info = inv.info.clone();
        let store = inv.store.clone();
        let version = inv.version;
        let worker = info.placement.get(&node).cloned().unwrap_or_default();
        let name = info.wf.graph[node].name.clone();
        let task = info.wf.graph[node].task();
        let values: Result<Vec<(String, ExecValue)>, CentralError> = inputs
            .iter()
            .map(|(n, v)| {
                let staged = task
                    .and_then(|t| t.reads_input_alone(n))
                    .and_then(|i| inv.staged.get(i));
                Ok((
                    n.clone(),
                    match (v, staged) {
                        (InputValue::Json(_), Some(o)) => ExecValue::Object(o.clone()),
                        (InputValue::Absent, _) => ExecValue::Absent,
                        (InputValue::Json(j), None) => ExecValue::Json(j.clone()),
                        (InputValue::Object(r), _) => ExecValue::Object(self.object(r)?),
                        (InputValue::List(l), _) => {
                            ExecValue::List(l.iter().map(|r| self.object(r)).collect::<Result<_, _>>()?)
                        }
                    },
                ))
            })
            .collect();
        let target = values.and_then(|v| self.workers.daemon(&worker).map(|d| (v, d)));
        let (values, daemon) = match target {
            Ok(t) => t,
            Err(why) => {
                let why = why.to_string();
                let now = self.now();
                self.record_failure(
                    invocation,
                    &name,
                    &worker,
                    element,
                    attempt,
                    Instant::now(),
                    &why,
                    FailureKind::Crash,
                );
                self.engine
                    .function_failed(now, invocation, node, element, why, FailureKind::Crash);
                return;
            }
        };
        let addr = daemon.addr();
        let request = ExecRequest {
            workflow: info.wf.name.clone(),
            version,
            invocation,
            node,
            element,
            attempt,
            inputs: values,
        };
        let exec = self.next_exec;
        self.next_exec += 1;
        let Some(tx) = self.tx.upgrade() else { return };
        let messages = self.messages.clone();
        let (wf_name, w) = (info.wf.name.clone(), worker.clone());
        self.messages.sent.fetch_add(1, Ordering::Relaxed);
        let task = tokio::spawn(async move {
            let owner = Owner {
                workflow: &wf_name,
                version,
                invocation,
            };
            let answer = daemon.execute(&request, owner).await;
            if matches!(answer, Ok(_) | Err(DaemonError::Protocol { .. })) {
                messages.received.fetch_add(1, Ordering::Relaxed);
            }
            let outcome = match answer {
                Ok(Ok(done)) => Outcome::Done(Box::new(done)),
                Ok(Err((why, kind))) => Outcome::Failed(why, kind),
                Err(DaemonError::Unreachable { cause, .. }) => {
                    Outcome::Unreachable(format!("worker `{w}` ({addr}) could not be reached: {cause}"))
                }
                Err(DaemonError::Protocol { cause, .. }) => Outcome::Failed(
                    format!("worker `{w}` ({addr}) sent an answer that breaks the protocol: {cause}"),
                    FailureKind::Crash,
                ),
                Err(e @ DaemonError::Timeout { .. }) => Outcome::Failed(e.to_string(), FailureKind::Crash),
                Err(DaemonError::Refused { message, .. } | DaemonError::Overloaded { message, .. }) => Outcome::Failed(
                    format!("worker `{w}` ({addr}) refused to run it: {message}"),
                    FailureKind::Crash,
                ),
                Err(e) => Outcome::Failed(e.to_string(), FailureKind::Crash),
            };
            let _ = tx.send(Msg::Answer { exec, outcome });
        });
        self.execs.insert(
            exec,
            Exec {
                invocation,
                node,
                element,
                attempt,
                worker,
                sent: Instant::now(),
                store,
                workflow: info.wf.name.clone(),
                version,
                task: task.abort_handle(),
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn record_failure(
        &mut self,
        invocation: InvocationId,
        name: &str,
        worker: &str,
        element: Option<u32>,
        attempt: u32,
        sent: Instant,
        error: &str,
        kind: FailureKind,
    ) {
        if let Some(inv) = self.invocations.get_mut(&invocation) {
            inv.functions.push(FunctionRecord {
                name: name.to_owned(),
                worker: worker.to_owned(),
                element,
                instance: None,
                start_us: us(sent.saturating_duration_since(inv.start)),
                end_us: us(inv.start.elapsed()),
                exec_us: 0.0,
                data_us: 0.0,
                peak_memory_bytes: None,
                output_bytes: Default::default(),
                attempt,
                skipped: false,
                error: Some(error.to_owned()),
                failure: Some(kind.as_str().to_owned()),
                chained: false,
            });
        }
    }

    fn answer(&mut self, exec: u64, outcome: Outcome) {
        let Some(e) = self.execs.remove(&exec) else {
            // Already failed (its worker was lost).
            return;
        };
        let now = self.now();
        if !self.engine.is_running(e.invocation) {
            // The invocation has ended and its keys are deleted: delete what this attempt
            // stored since.
            if let Outcome::Done(done) = &outcome
                && !done.outputs.is_empty()
            {
                let (store, workflow, version, invocation) = (e.store, e.workflow, e.version, e.invocation);
                tokio::spawn(async move {
                    if let Err(err) = store.delete_invocation(&workflow, version, invocation).await {
                        tracing::warn!(
                            %workflow,
                            version,
                            invocation,
                            cause = %err,
                            "could not delete the objects a late step stored for an invocation"
                        );
                    }
                });
            }
            return;
        }
        let name = self
            .invocations
            .get(&e.invocation)
            .map(|inv| inv.info.wf.graph[e.node].name.clone())
            .unwrap_or_default();
        match outcome {
            Outcome::Done(done) => {
                let done = *done;
                let mut outputs = Vec::with_capacity(done.outputs.len());
                for (n, o) in done.outputs {
                    let id = self.next_object;
                    self.next_object += 1;
                    outputs.push((
                        n,
                        ObjectRef {
                            id,
                            len: o.len,
                            json: o.json.clone(),
                        },
                    ));
                    self.objects.insert(id, o);
                }
                if let Some(inv) = self.invocations.get_mut(&e.invocation) {
                    let mut record = done.record;
                    // The planner's view of the step: sent to answered.
                    record.start_us = us(e.sent.saturating_duration_since(inv.start));
                    record.end_us = us(inv.start.elapsed());
                    // Fetching its inputs from the remote tier and storing its outputs there.
                    record.data_us = done.data_us;
                    inv.functions.push(record);
                    inv.edges.extend(done.edges);
                    inv.data_us += done.data_us;
                }
                self.engine.function_done(now, e.invocation, e.node, e.element, outputs);
            }
            Outcome::Failed(why, kind) => self.step_failed(&e, &name, why, kind),
            Outcome::Unreachable(why) => {
                self.workers.unreachable(&e.worker);
                self.note_lost(e.invocation, &e.worker);
                self.step_failed(&e, &name, why, FailureKind::Crash);
            }
        }
    }

    /// Records the failed attempt `e` of step `name` and tells the engine.
    fn step_failed(&mut self, e: &Exec, name: &str, why: String, kind: FailureKind) {
        self.record_failure(e.invocation, name, &e.worker, e.element, e.attempt, e.sent, &why, kind);
        let now = self.now();
        self.engine
            .function_failed(now, e.invocation, e.node, e.element, why, kind);
    }

    /// Remembers that `worker` was lost while it ran a step of `invocation` (its report names
    /// it when the invocation fails).
    fn note_lost(&mut self, invocation: InvocationId, worker: &str) {
        if let Some(inv) = self.invocations.get_mut(&invocation) {
            inv.lost.get_or_insert_with(|| worker.to_owned());
        }
    }

    /// Fails the steps running on workers that the registry has lost.
    fn check_workers(&mut self) {
        let lost: Vec<(u64, String)> = self
            .execs
            .iter()
            .filter_map(|(id, e)| self.workers.daemon(&e.worker).err().map(|why| (*id, why.to_string())))
            .collect();
        for (id, why) in lost {
            let Some(e) = self.execs.remove(&id) else { continue };
            e.task.abort();
            self.note_lost(e.invocation, &e.worker);
            let name = self
                .invocations
                .get(&e.invocation)
                .map(|inv| inv.info.wf.graph[e.node].name.clone())
                .unwrap_or_default();
            self.step_failed(&e, &name, why, FailureKind::Crash);
        }
    }

    /// The invocation ended: read its output, delete its keys, send its report.
    fn finished(&mut self, invocation: InvocationId, result: Result<Vec<(String, InputValue)>, Failure>) {
        let Some(mut inv) = self.invocations.remove(&invocation) else {
            return;
        };
        // The result's objects are released right after `Finished`: resolve them now.
        let result: Result<Vec<(String, Resolved)>, Failure> = result.map(|values| {
            values
                .into_iter()
                .map(|(n, v)| {
                    let r = match v {
                        InputValue::Absent => Resolved::Json(serde_json::Value::Null),
                        InputValue::Json(j) => Resolved::Json((*j).clone()),
                        InputValue::Object(r) => Resolved::Object(self.objects.get(&r.id).cloned(), r.len),
                        InputValue::List(l) => {
                            Resolved::List(l.iter().map(|r| (self.objects.get(&r.id).cloned(), r.len)).collect())
                        }
                    };
                    (n, r)
                })
                .collect()
        });
        let wf = inv.info.wf.clone();
        let placement = &inv.info.placement;
        add_skipped(&wf, &mut inv.functions, |n| {
            placement.get(&n).cloned().unwrap_or_default()
        });
        tokio::spawn(async move {
            let t = Instant::now();
            let (status, output, error) = match result {
                Ok(values) => match read_output(&inv.store, values).await {
                    Ok(map) => ("ok", serde_json::Value::Object(map), None),
                    Err(e) => ("failed", serde_json::Value::Null, Some(e.to_string())),
                },
                Err(e) => ("failed", serde_json::Value::Null, Some(e.to_string())),
            };
            let read_us = us(t.elapsed());
            inv.data_us += read_us;
            let (status, output, error) = match inv.store.delete_invocation(&wf.name, inv.version, invocation).await {
                Ok(_) => (status, output, error),
                Err(e) => {
                    let why = format!(
                        "the objects of invocation {invocation} could not be deleted from the remote tier: {e}"
                    );
                    tracing::warn!(workflow = %wf.name, version = inv.version, invocation, "{why}");
                    match error {
                        Some(first) => (status, output, Some(format!("{first}; {why}"))),
                        None => ("failed", serde_json::Value::Null, Some(why)),
                    }
                }
            };
            let e2e_us = us(inv.start.elapsed());
            let path = critical_path(&wf, &inv.functions);
            let report = Report {
                status: status.into(),
                output,
                error,
                invocation,
                e2e_us,
                planner_us: None,
                client_us: None,
                scheduling_overhead_us: path.scheduling_overhead_us(e2e_us, read_us + inv.staging_us),
                data_overhead_us: inv.data_us,
                critical_path_us: path.exec_us,
                critical_data_us: path.data_us + read_us + inv.staging_us,
                critical_path: path.names,
                functions: inv.functions,
                edges: inv.edges,
                spills: 0,
                lost_worker: if status == "ok" { None } else { inv.lost },
                earlier_runs: Vec::new(),
            };
            let _ = inv.reply.send(Ok(report));
        });
    }
}

/// A workflow output with its objects resolved (`None`: unknown to the central engine, a bug).
enum Resolved {
    Json(serde_json::Value),
    Object(Option<ExecObject>, u64),
    List(Vec<(Option<ExecObject>, u64)>),
}

async fn read_output(
    store: &RemoteStore,
    values: Vec<(String, Resolved)>,
) -> Result<serde_json::Map<String, serde_json::Value>, CentralError> {
    let mut map = serde_json::Map::new();
    for (name, v) in values {
        let json = match v {
            Resolved::Json(j) => j,
            Resolved::Object(o, len) => object_json(store, &name, o, len).await?,
            Resolved::List(l) => {
                let mut items = Vec::with_capacity(l.len());
                for (o, len) in l {
                    items.push(object_json(store, &name, o, len).await?);
                }
                serde_json::Value::Array(items)
            }
        };
        map.insert(name, json);
    }
    Ok(map)
}

/// An object as the report shows it.
async fn object_json(
    store: &RemoteStore,
    output: &str,
    o: Option<ExecObject>,
    len: u64,
) -> Result<serde_json::Value, CentralError> {
    let Some(o) = o else {
        return Ok(shown(len, None));
    };
    if let Some(j) = &o.json {
        return Ok((**j).clone());
    }
    if !shows_bytes(o.len) {
        return Ok(shown(o.len, None));
    }
    let key: &ObjectKey = &o.key;
    match store.get(key).await {
        Ok(Some(bytes)) => Ok(shown(o.len, Some(bytes))),
        Ok(None) if o.len == 0 => Ok(shown(0, Some(Vec::new()))),
        Ok(None) => Err(CentralError::OutputGone {
            output: output.to_owned(),
            key: key.to_string(),
        }),
        Err(e) => Err(CentralError::OutputUnreadable {
            output: output.to_owned(),
            cause: e.to_string(),
        }),
    }
}
