//! The per-worker invocation engine: a sans-IO state machine.
//!
//! Events come in through [`Engine::start`], [`Engine::function_done`],
//! [`Engine::function_failed`] and [`Engine::tick`]; what the driver must do comes out of
//! [`Engine::poll_action`]; [`Engine::poll_timeout`] says when to call `tick` next. Time is a
//! [`Duration`] since any fixed origin the driver chooses.
//!
//! It implements the execution semantics documented in `faasflow_core::dag`:
//! - a node runs the moment every predecessor is done or skipped; it is skipped when every
//!   activation edge is skipped (the reference is `Workflow::runs`);
//! - joins, collect nodes and switches take no time; a switch evaluates its CEL conditions
//!   over `input` and the JSON outputs of steps that are done (`step.output`);
//! - a foreach starts its scope once per element of its list, in element order, at most
//!   `max_concurrency` elements at a time. **A foreach over an empty list is not skipped**:
//!   its collect node completes at once and every output of its body read after it is an
//!   empty list;
//! - each object a function outputs is held while a consumer may still read it, and is
//!   released exactly once ([`Action::Release`]), whatever the outcome. Objects named in the
//!   workflow's result are released right after [`Action::Finished`], so the driver reads them
//!   when it handles `Finished`.
//!
//! `element` in triggers and events is the index of the element in its foreach (`None` outside
//! any foreach). Nested foreach scopes are not supported yet ([`EngineError::Unsupported`]).
//!
//! A completion (done or failed) carries no attempt number: one that arrives while the step
//! waits for a retry is dropped (its objects released); one that arrives after a timeout
//! while the next attempt runs is taken as that attempt's result.

mod chain;
mod cond;
mod failure;
mod objects;
mod semantics;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::NodeId;
use crate::dag::{DataSource, FailureKind, NodeKind, Workflow};
use petgraph::Direction;
use petgraph::visit::EdgeRef;

pub use chain::Follower;
pub use failure::Failure;
use objects::{adjust_fanout_tokens, drop_reads, readers_of, release_all};
use semantics::{activated, cel_variables, value_of};

/// Settings of an [`Engine`].
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    /// Seed of the generator that spreads retry waits (`retry.jitter`).
    pub seed: u64,
}

/// An invocation's id, chosen by the caller of [`Engine::start`].
pub type InvocationId = u64;

/// An opaque handle on an object held by the data plane (an arena slot, a remote copy).
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectRef {
    /// The object's id, unique among live objects.
    pub id: u64,
    /// Its size in bytes.
    pub len: u64,
    /// The parsed value of a small `json` or `list` output; switch conditions and foreach
    /// lists read it. The engine never sees bytes.
    pub json: Option<Arc<serde_json::Value>>,
}

/// A value handed to a function (an input) or returned as a workflow output.
#[derive(Debug, Clone, PartialEq)]
pub enum InputValue {
    /// One object.
    Object(ObjectRef),
    /// The outputs of a foreach body read after the foreach, in element order.
    List(Vec<ObjectRef>),
    /// A JSON value: a workflow input, a foreach element or its index (shared, not copied:
    /// workflow inputs may be large).
    Json(Arc<serde_json::Value>),
    /// Every source of the input was skipped.
    Absent,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Run one attempt of a function.
    Trigger {
        /// The invocation.
        invocation: InvocationId,
        /// The task node.
        node: NodeId,
        /// The foreach element, if the node is in a foreach body.
        element: Option<u32>,
        /// 1 for the first attempt.
        attempt: u32,
        /// The function's inputs, by name.
        inputs: Vec<(String, InputValue)>,
    },
    /// Stop a running attempt (it timed out, or the invocation failed).
    Cancel {
        /// The invocation.
        invocation: InvocationId,
        /// The task node.
        node: NodeId,
        /// The foreach element.
        element: Option<u32>,
        /// The attempt ran past its timeout, or the invocation past its deadline (it may never
        /// return: stop it by force); otherwise the invocation ended and its result is no
        /// longer wanted.
        timed_out: bool,
    },
    /// A local task failed for good and its catch step runs in its place (the driver tells
    /// the other workers of the plan: [`Engine::function_caught`] there).
    Caught {
        /// The invocation.
        invocation: InvocationId,
        /// The task node that failed.
        node: NodeId,
        /// The foreach element.
        element: Option<u32>,
        /// The failure, as the catch step receives it (`step`, `element`, `error`, `kind`,
        /// `attempts`).
        failure: Arc<serde_json::Value>,
    },
    /// No consumer needs this object any more: free it.
    Release {
        /// The object's id.
        object: u64,
    },
    /// The invocation ended; the engine holds nothing of it any more (except the release of
    /// result objects, which follows at once).
    Finished {
        /// The invocation.
        invocation: InvocationId,
        /// The workflow's outputs by name, or why it failed.
        result: Result<Vec<(String, InputValue)>, Failure>,
    },
}

/// What the driver reports; [`Engine::handle`] takes it (the same as calling
/// [`Engine::function_done`] or [`Engine::function_failed`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A function attempt finished.
    FunctionDone {
        /// The invocation.
        invocation: InvocationId,
        /// The task node.
        node: NodeId,
        /// The foreach element.
        element: Option<u32>,
        /// Its outputs by name.
        outputs: Vec<(String, ObjectRef)>,
    },
    /// A function attempt failed (error, panic, crash of its instance).
    FunctionFailed {
        /// The invocation.
        invocation: InvocationId,
        /// The task node.
        node: NodeId,
        /// The foreach element.
        element: Option<u32>,
        /// What went wrong, for the invocation's error.
        error: String,
        /// What kind of failure it was (`retry.on` says which kinds are retried).
        kind: FailureKind,
    },
}

/// Errors of the engine's commands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// No workflow of this name and version is installed.
    #[error("workflow `{name}` version {version} is not installed on this worker")]
    UnknownWorkflow {
        /// The name asked for.
        name: String,
        /// The version asked for.
        version: u64,
    },
    /// The input lacks declared inputs.
    #[error("workflow `{workflow}` is missing inputs: {}; pass them as a JSON object", names.join(", "))]
    MissingInputs {
        /// The workflow.
        workflow: String,
        /// The missing inputs, in declaration order.
        names: Vec<String>,
    },
    /// The input is not a JSON object.
    #[error("the input of workflow `{workflow}` must be a JSON object of named inputs, got {got}")]
    InputNotObject {
        /// The workflow.
        workflow: String,
        /// What was given.
        got: String,
    },
    /// The invocation id is in use.
    #[error("invocation {0} is already running")]
    DuplicateInvocation(InvocationId),
    /// The workflow uses something the engine cannot run yet.
    #[error("workflow `{workflow}` cannot run on this engine: {what}")]
    Unsupported {
        /// The workflow.
        workflow: String,
        /// What is not supported.
        what: String,
    },
}

#[derive(Debug)]
struct Installed {
    wf: Arc<Workflow>,
    /// Nodes of each foreach body, by foreach node index.
    bodies: HashMap<u32, Vec<NodeId>>,
    /// Compiled conditions of each switch, by node index.
    conditions: HashMap<u32, Vec<cel::Program>>,
    /// Outputs read by the workflow's result: (node, output).
    result_reads: HashSet<(u32, String)>,
    /// Task nodes this worker runs; the others run on other workers, whose completions the
    /// driver reports like local ones.
    local: HashSet<NodeId>,
}

type Key = (u32, Option<u32>);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Status {
    Waiting,
    Running {
        attempt: u32,
        deadline: Option<u64>,
    },
    Backoff {
        next_attempt: u32,
        at: u64,
    },
    Done,
    Skipped,
    /// Failed for good, with a catch step that runs in its place (counts as skipped for
    /// every other edge).
    Caught,
}

#[derive(Debug)]
struct Inst {
    remaining: u32,
    status: Status,
    chosen: Option<u32>,
    outputs: Vec<(String, ObjectRef)>,
    /// When caught: the failure its catch step receives as `error`.
    failure: Option<Arc<serde_json::Value>>,
}

#[derive(Debug)]
struct ForeachState {
    list: Vec<serde_json::Value>,
    next: u32,
    completed: u32,
    /// Body nodes not yet resolved, per started element.
    open: HashMap<u32, u32>,
}

#[derive(Debug)]
struct Invocation {
    inst_key: Arc<Installed>,
    /// The workflow's inputs by name.
    input: HashMap<String, Arc<serde_json::Value>>,
    inst: HashMap<Key, Inst>,
    foreach: HashMap<u32, ForeachState>,
    /// Held objects: id → (remaining readers).
    objects: HashMap<u64, u32>,
    /// Root-scope nodes not yet done or skipped.
    open_roots: usize,
    /// Completions of other workers' tasks reported before this engine saw them start (their
    /// predecessors' completions are still on their way): applied when they do.
    early: HashMap<Key, Early>,
    /// When it must end (µs on the engine's clock) and the limit as given (ms).
    deadline: Option<(u64, u64)>,
}

/// A completion of another worker's task that came before this engine saw the task start.
#[derive(Debug)]
enum Early {
    Done(Vec<(String, ObjectRef)>),
    Caught(Arc<serde_json::Value>),
}

/// How the error of an invocation that ran past its deadline begins.
pub const DEADLINE_PASSED: &str = "the invocation did not end within its deadline";

/// The node index of an invocation's deadline in `Engine::timers` (no node has it: node
/// indices are below the graph's size).
const DEADLINE_NODE: u32 = u32::MAX;

/// The engine. See the module docs.
#[derive(Debug)]
pub struct Engine {
    installed: HashMap<(String, u64), Arc<Installed>>,
    invocations: HashMap<InvocationId, Invocation>,
    actions: VecDeque<Action>,
    /// (deadline µs, invocation, node, element) of running attempts and pending retries.
    timers: BTreeSet<(u64, InvocationId, u32, Option<u32>)>,
    rng: u64,
}

impl Engine {
    /// Creates an engine with nothing installed.
    pub fn new(config: EngineConfig) -> Self {
        Engine {
            installed: HashMap::new(),
            invocations: HashMap::new(),
            actions: VecDeque::new(),
            timers: BTreeSet::new(),
            rng: config.seed ^ 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// Installs a workflow version. `local` holds the task nodes this worker runs: the engine
    /// emits [`Action::Trigger`] for those only. A task of another worker is *running* from
    /// the moment its inputs are ready until the driver reports its completion (done, or the
    /// invocation [aborted](Engine::abort)); it has no timeout or retry here, its own worker
    /// applies them.
    pub fn install(
        &mut self,
        workflow: Arc<Workflow>,
        version: u64,
        local: HashSet<NodeId>,
    ) -> Result<(), EngineError> {
        let unsupported = |what: String| EngineError::Unsupported {
            workflow: workflow.name.clone(),
            what,
        };
        let mut bodies: HashMap<u32, Vec<NodeId>> = HashMap::new();
        let mut conditions = HashMap::new();
        for n in workflow.graph.node_indices() {
            let node = &workflow.graph[n];
            if let Some(s) = node.scope {
                if matches!(node.kind, NodeKind::Foreach(_)) {
                    return Err(unsupported(format!(
                        "foreach `{}` is nested in foreach `{}`",
                        node.name, workflow.graph[s].name
                    )));
                }
                bodies.entry(s.index() as u32).or_default().push(n);
            }
            if let NodeKind::Foreach(_) = node.kind {
                bodies.entry(n.index() as u32).or_default();
            }
            if let NodeKind::Switch(s) = &node.kind {
                let texts: Vec<&str> = s.cases.iter().map(|c| c.condition.as_str()).collect();
                let programs =
                    cond::compile(&texts).map_err(|e| unsupported(format!("switch `{}`: {e}", node.name)))?;
                conditions.insert(n.index() as u32, programs);
            }
        }
        let result_reads = workflow.result_reads();
        let key = (workflow.name.clone(), version);
        self.installed.insert(
            key,
            Arc::new(Installed {
                wf: workflow,
                bodies,
                conditions,
                result_reads,
                local,
            }),
        );
        Ok(())
    }

    /// Removes a workflow version: no invocation can start on it any more; those running
    /// finish on it. Returns whether it was installed.
    pub fn uninstall(&mut self, workflow: &str, version: u64) -> bool {
        self.installed.remove(&(workflow.to_owned(), version)).is_some()
    }

    /// Starts an invocation. `input` is a JSON object holding every declared input.
    pub fn start(
        &mut self,
        now: Duration,
        workflow: &str,
        version: u64,
        invocation: InvocationId,
        input: serde_json::Value,
    ) -> Result<(), EngineError> {
        let installed = self
            .installed
            .get(&(workflow.to_owned(), version))
            .cloned()
            .ok_or_else(|| EngineError::UnknownWorkflow {
                name: workflow.to_owned(),
                version,
            })?;
        if self.invocations.contains_key(&invocation) {
            return Err(EngineError::DuplicateInvocation(invocation));
        }
        let wf = &installed.wf;
        let input = match input {
            serde_json::Value::Null => serde_json::Value::Object(Default::default()),
            serde_json::Value::Object(_) => input,
            other => {
                return Err(EngineError::InputNotObject {
                    workflow: wf.name.clone(),
                    got: json_kind(&other).to_owned(),
                });
            }
        };
        let missing: Vec<String> = wf
            .inputs
            .iter()
            .filter(|i| input.get(&i.name).is_none())
            .map(|i| i.name.clone())
            .collect();
        if !missing.is_empty() {
            return Err(EngineError::MissingInputs {
                workflow: wf.name.clone(),
                names: missing,
            });
        }
        let input = match input {
            serde_json::Value::Object(m) => m.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
            _ => HashMap::new(),
        };
        let mut inv = Invocation {
            inst_key: installed.clone(),
            input,
            inst: HashMap::new(),
            foreach: HashMap::new(),
            objects: HashMap::new(),
            open_roots: 0,
            early: HashMap::new(),
            deadline: None,
        };
        let mut ready = Vec::new();
        for n in wf.graph.node_indices() {
            if wf.graph[n].scope.is_some() {
                continue;
            }
            let remaining = wf.graph.edges_directed(n, Direction::Incoming).count() as u32;
            inv.inst.insert(
                (n.index() as u32, None),
                Inst {
                    remaining,
                    status: Status::Waiting,
                    chosen: None,
                    outputs: Vec::new(),
                    failure: None,
                },
            );
            inv.open_roots += 1;
            if remaining == 0 {
                ready.push((n.index() as u32, None));
            }
        }
        self.invocations.insert(invocation, inv);
        self.run(now, invocation, ready);
        Ok(())
    }

    /// Handles one event from the driver.
    pub fn handle(&mut self, now: Duration, event: Event) {
        match event {
            Event::FunctionDone {
                invocation,
                node,
                element,
                outputs,
            } => self.function_done(now, invocation, node, element, outputs),
            Event::FunctionFailed {
                invocation,
                node,
                element,
                error,
                kind,
            } => self.function_failed(now, invocation, node, element, error, kind),
        }
    }

    /// A function attempt finished with these outputs. A completion for an invocation that
    /// ended, or for an attempt given up, has its objects released at once.
    pub fn function_done(
        &mut self,
        now: Duration,
        invocation: InvocationId,
        node: NodeId,
        element: Option<u32>,
        outputs: Vec<(String, ObjectRef)>,
    ) {
        let key = (node.index() as u32, element);
        let running = self
            .invocations
            .get(&invocation)
            .and_then(|inv| inv.inst.get(&key))
            .and_then(|i| match i.status {
                Status::Running { attempt, deadline } => Some((attempt, deadline)),
                _ => None,
            });
        let early = running.is_none()
            && self.invocations.get(&invocation).is_some_and(|inv| {
                !inv.inst_key.local.contains(&node)
                    && inv.inst.get(&key).is_none_or(|i| i.status == Status::Waiting)
                    && !inv.early.contains_key(&key)
            });
        if early {
            // Another worker's task whose start this engine has not seen yet.
            if let Some(inv) = self.invocations.get_mut(&invocation) {
                inv.early.insert(key, Early::Done(outputs));
            }
            return;
        }
        let Some((_, deadline)) = running else {
            // Stale: the invocation ended or the attempt was given up. Free what it made.
            for (_, o) in outputs {
                self.actions.push_back(Action::Release { object: o.id });
            }
            return;
        };
        if let Some(d) = deadline {
            self.timers.remove(&(d, invocation, key.0, key.1));
        }
        let mut ready = Vec::new();
        self.complete_into(invocation, key, outputs, &mut ready);
        self.run(now, invocation, ready);
    }

    /// Records a task's outputs and resolves it as done.
    fn complete_into(
        &mut self,
        invocation: InvocationId,
        key: Key,
        outputs: Vec<(String, ObjectRef)>,
        ready: &mut Vec<Key>,
    ) {
        let Some(inv) = self.invocations.get_mut(&invocation) else {
            return;
        };
        let installed = inv.inst_key.clone();
        let mut to_release = Vec::new();
        for (name, obj) in &outputs {
            let readers = readers_of(&installed, inv, key, name);
            if readers == 0 {
                to_release.push(obj.id);
            } else {
                *inv.objects.entry(obj.id).or_insert(0) += readers;
            }
        }
        if let Some(i) = inv.inst.get_mut(&key) {
            i.outputs = outputs
                .into_iter()
                .filter(|(_, o)| !to_release.contains(&o.id))
                .collect();
            // Objects with no reader are not kept: they are released now.
        }
        for id in to_release {
            self.actions.push_back(Action::Release { object: id });
        }
        self.resolve_into(Duration::ZERO, invocation, key, Status::Done, ready);
    }

    /// Another worker's task failed for good and was caught there ([`Action::Caught`]): its
    /// catch step runs with `failure` as its input `error`. Ignored when the task is not
    /// running here (the invocation ended) or has no catch step.
    pub fn function_caught(
        &mut self,
        now: Duration,
        invocation: InvocationId,
        node: NodeId,
        element: Option<u32>,
        failure: serde_json::Value,
    ) {
        let key = (node.index() as u32, element);
        let Some(inv) = self.invocations.get_mut(&invocation) else {
            return;
        };
        if inv.inst_key.local.contains(&node) || catch_of(&inv.inst_key.wf, node).is_none() {
            return;
        }
        match inv.inst.get(&key).map(|i| i.status) {
            Some(Status::Running { .. }) => {
                let mut ready = Vec::new();
                self.caught_into(invocation, key, Arc::new(failure), &mut ready);
                self.run(now, invocation, ready);
            }
            None | Some(Status::Waiting) if !inv.early.contains_key(&key) => {
                inv.early.insert(key, Early::Caught(Arc::new(failure)));
            }
            _ => {}
        }
    }

    /// Marks a failed task caught: its catch step will run with `failure`.
    fn caught_into(
        &mut self,
        invocation: InvocationId,
        key: Key,
        failure: Arc<serde_json::Value>,
        ready: &mut Vec<Key>,
    ) {
        let Some(inv) = self.invocations.get_mut(&invocation) else {
            return;
        };
        if let Some(i) = inv.inst.get_mut(&key) {
            i.failure = Some(failure);
        }
        self.resolve_into(Duration::ZERO, invocation, key, Status::Caught, ready);
    }

    /// A function attempt failed; retried per the function's policy (its attempts, when
    /// `retry.on` holds `kind`), else the invocation fails (or, when the task has a catch
    /// step, that step runs in its place).
    pub fn function_failed(
        &mut self,
        now: Duration,
        invocation: InvocationId,
        node: NodeId,
        element: Option<u32>,
        error: String,
        kind: FailureKind,
    ) {
        let key = (node.index() as u32, element);
        let running = self
            .invocations
            .get(&invocation)
            .and_then(|inv| inv.inst.get(&key))
            .and_then(|i| match i.status {
                Status::Running { attempt, deadline } => Some((attempt, deadline)),
                _ => None,
            });
        let Some((attempt, deadline)) = running else {
            return;
        };
        if let Some(d) = deadline {
            self.timers.remove(&(d, invocation, key.0, key.1));
        }
        self.attempt_failed(now, invocation, key, attempt, error, kind);
    }

    /// Sets the time by which `invocation` must end (`at`, on the engine's clock; `limit_ms`
    /// is the limit as the caller gave it, for the error). When it passes, the invocation
    /// fails naming the steps still running or waiting for a retry, and they are cancelled.
    pub fn set_deadline(&mut self, invocation: InvocationId, at: Duration, limit_ms: u64) {
        let Some(inv) = self.invocations.get_mut(&invocation) else {
            return;
        };
        if let Some((old, _)) = inv.deadline.take() {
            self.timers.remove(&(old, invocation, DEADLINE_NODE, None));
        }
        let at = micros(at);
        inv.deadline = Some((at, limit_ms));
        self.timers.insert((at, invocation, DEADLINE_NODE, None));
    }

    /// Ends an invocation with `message` as its error, as if a step had failed: what runs is
    /// cancelled and every object released. For failures decided elsewhere: a step of another
    /// worker that failed for good, a lost worker. Unknown or ended invocations are ignored.
    pub fn abort(&mut self, invocation: InvocationId, message: String) {
        self.fail(invocation, (u32::MAX, None), Failure::Aborted(message));
    }

    /// Whether `invocation` is running.
    pub fn is_running(&self, invocation: InvocationId) -> bool {
        self.invocations.contains_key(&invocation)
    }

    /// Advances time: fires timeouts and due retries.
    pub fn tick(&mut self, now: Duration) {
        let now_us = micros(now);
        while let Some(&first) = self.timers.first() {
            if first.0 > now_us {
                break;
            }
            self.timers.remove(&first);
            let (_, invocation, node, element) = first;
            if node == DEADLINE_NODE {
                self.deadline_passed(invocation);
                continue;
            }
            let key = (node, element);
            let Some(status) = self
                .invocations
                .get(&invocation)
                .and_then(|inv| inv.inst.get(&key))
                .map(|i| i.status)
            else {
                continue;
            };
            match status {
                Status::Running { attempt, .. } => {
                    self.actions.push_back(Action::Cancel {
                        invocation,
                        node: NodeId::new(node as usize),
                        element,
                        timed_out: true,
                    });
                    let timeout = self.task_spec_timeout(invocation, node);
                    self.attempt_failed(
                        now,
                        invocation,
                        key,
                        attempt,
                        format!("timed out after {timeout} ms"),
                        FailureKind::Timeout,
                    );
                }
                Status::Backoff { next_attempt, .. } => {
                    self.trigger(now, invocation, key, next_attempt);
                }
                _ => {}
            }
        }
    }

    /// The next action for the driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Engine::tick`] must be called next, if anything waits on time.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.timers.first().map(|t| Duration::from_micros(t.0))
    }

    /// Invocations started and not finished.
    pub fn invocations_in_flight(&self) -> usize {
        self.invocations.len()
    }

    /// Objects held for invocations in flight.
    pub fn objects_held(&self) -> usize {
        self.invocations.values().map(|i| i.objects.len()).sum()
    }

    /// Timers (timeouts, retries) pending.
    pub fn timers_pending(&self) -> usize {
        self.timers.len()
    }

    fn task_spec_timeout(&self, invocation: InvocationId, node: u32) -> u64 {
        self.invocations
            .get(&invocation)
            .and_then(|inv| inv.inst_key.wf.graph[NodeId::new(node as usize)].task())
            .map_or(0, |t| t.spec.timeout_ms)
    }

    /// The invocation's deadline passed: it fails, naming what was still running.
    fn deadline_passed(&mut self, invocation: InvocationId) {
        let Some(inv) = self.invocations.get(&invocation) else {
            return;
        };
        let limit = inv.deadline.map_or(0, |(_, ms)| ms);
        let wf = &inv.inst_key.wf;
        let mut open: Vec<(Key, Status)> = inv
            .inst
            .iter()
            .filter(|(_, i)| matches!(i.status, Status::Running { .. } | Status::Backoff { .. }))
            .map(|(k, i)| (*k, i.status))
            .collect();
        open.sort_by_key(|(k, _)| *k);
        let names: Vec<String> = open
            .iter()
            .map(|(k, status)| {
                let name = &wf.graph[NodeId::new(k.0 as usize)].name;
                let element = k.1.map(|e| format!(" (element {e})")).unwrap_or_default();
                let what = match status {
                    Status::Running { attempt, .. } => format!("attempt {attempt} running"),
                    Status::Backoff { next_attempt, .. } => format!("attempt {next_attempt} waiting to retry"),
                    _ => String::new(),
                };
                format!("`{name}`{element}: {what}")
            })
            .collect();
        self.fail_as(
            invocation,
            (DEADLINE_NODE, None),
            true,
            Failure::Deadline {
                limit_ms: limit,
                open: names,
            },
        );
    }

    fn attempt_failed(
        &mut self,
        now: Duration,
        invocation: InvocationId,
        key: Key,
        attempt: u32,
        error: String,
        kind: FailureKind,
    ) {
        let Some(wf) = self.invocations.get(&invocation).map(|i| i.inst_key.wf.clone()) else {
            return;
        };
        let node = &wf.graph[NodeId::new(key.0 as usize)];
        let Some(task) = node.task() else { return };
        let retry = task.spec.retry;
        let retried = retry.on.contains(kind);
        if attempt < retry.attempts.max(1) && retried {
            let base = retry
                .backoff_ms
                .saturating_mul(1u64 << (attempt - 1).min(32))
                .saturating_mul(1000) as f64;
            let r = self.next_unit();
            let jitter = retry.jitter.clamp(0.0, 1.0);
            let wait = (base * (1.0 + jitter * (2.0 * r - 1.0))).max(0.0) as u64;
            let at = micros(now).saturating_add(wait);
            if let Some(i) = self
                .invocations
                .get_mut(&invocation)
                .and_then(|inv| inv.inst.get_mut(&key))
            {
                i.status = Status::Backoff {
                    next_attempt: attempt + 1,
                    at,
                };
            }
            self.timers.insert((at, invocation, key.0, key.1));
            return;
        }
        if catch_of(&wf, NodeId::new(key.0 as usize)).is_some() {
            let failure = Arc::new(serde_json::json!({
                "step": node.name,
                "element": key.1,
                "error": error,
                "kind": kind.as_str(),
                "attempts": attempt,
            }));
            self.actions.push_back(Action::Caught {
                invocation,
                node: NodeId::new(key.0 as usize),
                element: key.1,
                failure: failure.clone(),
            });
            let mut ready = Vec::new();
            self.caught_into(invocation, key, failure, &mut ready);
            self.run(now, invocation, ready);
            return;
        }
        let not_retried = if retried || attempt >= retry.attempts.max(1) {
            None
        } else {
            Some((kind, retry.on.kinds().collect()))
        };
        let failure = Failure::Step {
            step: node.name.clone(),
            element: key.1,
            attempts: attempt,
            error,
            not_retried,
        };
        self.fail(invocation, key, failure);
    }

    /// SplitMix64 → [0, 1).
    fn next_unit(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Ends an invocation with an error: cancels what runs, releases every object.
    fn fail(&mut self, invocation: InvocationId, failed: Key, message: Failure) {
        self.fail_as(invocation, failed, false, message);
    }

    /// [`Engine::fail`]; `force`: what runs is past the invocation's deadline and is stopped
    /// by force, like an attempt past its timeout.
    fn fail_as(&mut self, invocation: InvocationId, failed: Key, force: bool, message: Failure) {
        let Some(inv) = self.invocations.remove(&invocation) else {
            return;
        };
        if let Some((at, _)) = inv.deadline {
            self.timers.remove(&(at, invocation, DEADLINE_NODE, None));
        }
        let mut keys: Vec<_> = inv.inst.iter().map(|(k, i)| (*k, i.status)).collect();
        keys.sort_by_key(|(k, _)| *k);
        for (k, status) in keys {
            match status {
                Status::Running { deadline, .. } => {
                    if let Some(d) = deadline {
                        self.timers.remove(&(d, invocation, k.0, k.1));
                    }
                    if k != failed {
                        self.actions.push_back(Action::Cancel {
                            invocation,
                            node: NodeId::new(k.0 as usize),
                            element: k.1,
                            timed_out: force,
                        });
                    }
                }
                Status::Backoff { at, .. } => {
                    self.timers.remove(&(at, invocation, k.0, k.1));
                }
                _ => {}
            }
        }
        self.actions.push_back(Action::Finished {
            invocation,
            result: Err(message),
        });
        release_all(&mut self.actions, inv);
    }

    fn finish(&mut self, invocation: InvocationId) {
        let Some(inv) = self.invocations.remove(&invocation) else {
            return;
        };
        if let Some((at, _)) = inv.deadline {
            self.timers.remove(&(at, invocation, DEADLINE_NODE, None));
        }
        let wf = inv.inst_key.wf.clone();
        let result = wf
            .outputs
            .iter()
            .map(|o| (o.name.clone(), value_of(&inv, &o.sources, None, None)))
            .collect();
        self.actions.push_back(Action::Finished {
            invocation,
            result: Ok(result),
        });
        release_all(&mut self.actions, inv);
    }

    /// Processes ready node instances until none is left.
    fn run(&mut self, now: Duration, invocation: InvocationId, mut ready: Vec<Key>) {
        // First in, first out: foreach elements and parallel branches start in their order.
        let mut next = 0;
        while let Some(&key) = ready.get(next) {
            next += 1;
            let Some(inv) = self.invocations.get_mut(&invocation) else {
                return;
            };
            let installed = inv.inst_key.clone();
            let wf = &installed.wf;
            let n = NodeId::new(key.0 as usize);
            if !activated(inv, n, key.1) {
                let foreach = matches!(wf.graph[n].kind, NodeKind::Foreach(_));
                if foreach {
                    adjust_fanout_tokens(&mut self.actions, inv, n, 0);
                }
                self.resolve_into(now, invocation, key, Status::Skipped, &mut ready);
                if foreach {
                    self.complete_foreach(invocation, n, &mut ready);
                }
                continue;
            }
            match &wf.graph[n].kind {
                NodeKind::Task(_) => {
                    self.trigger(now, invocation, key, 1);
                    // Another worker's task may have finished already.
                    let early = self
                        .invocations
                        .get_mut(&invocation)
                        .and_then(|inv| inv.early.remove(&key));
                    match early {
                        Some(Early::Done(outputs)) => self.complete_into(invocation, key, outputs, &mut ready),
                        Some(Early::Caught(failure)) => self.caught_into(invocation, key, failure, &mut ready),
                        None => {}
                    }
                }
                NodeKind::Join(_) => {
                    self.resolve_into(now, invocation, key, Status::Done, &mut ready);
                }
                NodeKind::Switch(s) => {
                    let programs = installed.conditions.get(&key.0).map_or(&[][..], |p| p);
                    let conds: Vec<(&str, &cel::Program)> =
                        s.cases.iter().map(|c| c.condition.as_str()).zip(programs).collect();
                    let vars = cel_variables(inv, key.1);
                    match cond::choose(&conds, &vars) {
                        Ok(c) => {
                            if let Some(i) = inv.inst.get_mut(&key) {
                                i.chosen = Some(c);
                            }
                            self.resolve_into(now, invocation, key, Status::Done, &mut ready);
                        }
                        Err(e) => {
                            let msg = Failure::Switch {
                                switch: wf.graph[n].name.clone(),
                                cause: e.to_string(),
                            };
                            self.fail(invocation, key, msg);
                            return;
                        }
                    }
                }
                NodeKind::Foreach(f) => {
                    let list = match &f.over {
                        DataSource::Input(name) => inv.input.get(name).map(|v| (**v).clone()),
                        DataSource::Output { node, output } => {
                            // A caught task's list comes from its catch step.
                            let node = stand_in(inv, *node, None);
                            let src = (node.index() as u32, None);
                            inv.inst.get(&src).and_then(|i| {
                                i.outputs
                                    .iter()
                                    .find(|(o, _)| o == output)
                                    .and_then(|(_, r)| r.json.as_deref().cloned())
                            })
                        }
                        _ => None,
                    };
                    let list = match list {
                        Some(serde_json::Value::Array(a)) => a,
                        other => {
                            let got = other.as_ref().map_or("nothing (no JSON value)", json_kind);
                            let msg = Failure::NotAList {
                                foreach: wf.graph[n].name.clone(),
                                got,
                            };
                            self.fail(invocation, key, msg);
                            return;
                        }
                    };
                    let k = list.len() as u32;
                    inv.foreach.insert(
                        key.0,
                        ForeachState {
                            list,
                            next: 0,
                            completed: 0,
                            open: HashMap::new(),
                        },
                    );
                    adjust_fanout_tokens(&mut self.actions, inv, n, k);
                    self.resolve_into(now, invocation, key, Status::Done, &mut ready);
                    self.start_elements(invocation, n, &mut ready);
                    if k == 0 {
                        self.complete_foreach(invocation, n, &mut ready);
                    }
                }
            }
        }
        if self.invocations.get(&invocation).is_some_and(|inv| inv.open_roots == 0) {
            self.finish(invocation);
        }
    }

    /// Marks a node instance done or skipped and propagates to its successors.
    fn resolve_into(
        &mut self,
        _now: Duration,
        invocation: InvocationId,
        key: Key,
        status: Status,
        ready: &mut Vec<Key>,
    ) {
        let Some(inv) = self.invocations.get_mut(&invocation) else {
            return;
        };
        let installed = inv.inst_key.clone();
        let wf = &installed.wf;
        let n = NodeId::new(key.0 as usize);
        if let Some(i) = inv.inst.get_mut(&key) {
            i.status = status;
        }
        // This instance will read nothing more.
        drop_reads(&mut self.actions, &installed, inv, key);
        let scope = wf.graph[n].scope;
        for e in wf.graph.edges_directed(n, Direction::Outgoing) {
            let m = e.target();
            let mscope = wf.graph[m].scope;
            if mscope == scope {
                decrement(inv, (m.index() as u32, key.1), ready);
            } else if mscope == Some(n) {
                // Foreach → body: counted when an element starts.
            } else if let (None, Some(f)) = (scope, mscope) {
                // Outside → body: every element started so far waits on it.
                let started = inv.foreach.get(&(f.index() as u32)).map_or(0, |s| s.next);
                for el in 0..started {
                    decrement(inv, (m.index() as u32, Some(el)), ready);
                }
            }
            // Body → outside: counted when the foreach completes.
        }
        match (scope, key.1) {
            (None, _) => inv.open_roots -= 1,
            (Some(f), Some(el)) => {
                let fs = inv.foreach.get_mut(&(f.index() as u32));
                let closed = fs.and_then(|s| {
                    let open = s.open.get_mut(&el)?;
                    *open -= 1;
                    (*open == 0).then(|| s.open.remove(&el))
                });
                if closed.is_some() {
                    self.element_done(invocation, f, ready);
                }
            }
            (Some(_), None) => {}
        }
    }

    fn element_done(&mut self, invocation: InvocationId, f: NodeId, ready: &mut Vec<Key>) {
        let Some(inv) = self.invocations.get_mut(&invocation) else {
            return;
        };
        let all = inv.foreach.get_mut(&(f.index() as u32)).is_some_and(|s| {
            s.completed += 1;
            s.completed as usize == s.list.len()
        });
        self.start_elements(invocation, f, ready);
        if all {
            self.complete_foreach(invocation, f, ready);
        }
    }

    /// Starts elements of foreach `f` up to its concurrency limit.
    fn start_elements(&mut self, invocation: InvocationId, f: NodeId, ready: &mut Vec<Key>) {
        let Some(inv) = self.invocations.get_mut(&invocation) else {
            return;
        };
        let installed = inv.inst_key.clone();
        let wf = &installed.wf;
        let NodeKind::Foreach(fe) = &wf.graph[f].kind else {
            return;
        };
        let body = installed.bodies.get(&(f.index() as u32)).cloned().unwrap_or_default();
        let mut completed_now = Vec::new();
        loop {
            let Some(s) = inv.foreach.get_mut(&(f.index() as u32)) else {
                return;
            };
            let running = s.open.len() as u32;
            if s.next as usize >= s.list.len() || (fe.max_concurrency > 0 && running >= fe.max_concurrency) {
                break;
            }
            let el = s.next;
            s.next += 1;
            if body.is_empty() {
                completed_now.push(el);
                continue;
            }
            s.open.insert(el, body.len() as u32);
            for &m in &body {
                let mut remaining = 0;
                for e in wf.graph.edges_directed(m, Direction::Incoming) {
                    let p = e.source();
                    if p == f {
                        continue;
                    }
                    // A body predecessor of this element, or an outside one not resolved yet.
                    let outside_resolved = wf.graph[p].scope != Some(f)
                        && matches!(
                            inv.inst.get(&(p.index() as u32, None)).map(|i| i.status),
                            Some(Status::Done | Status::Skipped)
                        );
                    if !outside_resolved {
                        remaining += 1;
                    }
                }
                let key = (m.index() as u32, Some(el));
                inv.inst.insert(
                    key,
                    Inst {
                        remaining,
                        status: Status::Waiting,
                        chosen: None,
                        outputs: Vec::new(),
                        failure: None,
                    },
                );
                if remaining == 0 {
                    ready.push(key);
                }
            }
        }
        for _ in completed_now {
            self.element_done(invocation, f, ready);
        }
    }

    /// Every element of `f` is done: edges leaving its scope resolve.
    fn complete_foreach(&mut self, invocation: InvocationId, f: NodeId, ready: &mut Vec<Key>) {
        let Some(inv) = self.invocations.get_mut(&invocation) else {
            return;
        };
        let installed = inv.inst_key.clone();
        let wf = &installed.wf;
        for &p in installed.bodies.get(&(f.index() as u32)).into_iter().flatten() {
            for e in wf.graph.edges_directed(p, Direction::Outgoing) {
                let m = e.target();
                if wf.graph[m].scope != Some(f) {
                    decrement(inv, (m.index() as u32, None), ready);
                }
            }
        }
    }

    fn trigger(&mut self, now: Duration, invocation: InvocationId, key: Key, attempt: u32) {
        let Some(inv) = self.invocations.get_mut(&invocation) else {
            return;
        };
        let wf = inv.inst_key.wf.clone();
        let n = NodeId::new(key.0 as usize);
        let Some(task) = wf.graph[n].task() else {
            return;
        };
        if !inv.inst_key.local.contains(&n) {
            // Another worker runs it: wait for its completion.
            if let Some(i) = inv.inst.get_mut(&key) {
                i.status = Status::Running {
                    attempt,
                    deadline: None,
                };
            }
            return;
        }
        let mut inputs: Vec<(String, InputValue)> = task
            .inputs
            .iter()
            .map(|b| (b.name.clone(), value_of(inv, &b.sources, Some(n), key.1)))
            .collect();
        // A catch step receives the failure of the task it stands in for.
        if let Some(failure) = caught_failure(inv, n, key.1) {
            inputs.push((crate::dag::CATCH_INPUT.to_owned(), InputValue::Json(failure)));
        }
        let deadline =
            (task.spec.timeout_ms > 0).then(|| micros(now).saturating_add(task.spec.timeout_ms.saturating_mul(1000)));
        if let Some(i) = inv.inst.get_mut(&key) {
            i.status = Status::Running { attempt, deadline };
        }
        if let Some(d) = deadline {
            self.timers.insert((d, invocation, key.0, key.1));
        }
        self.actions.push_back(Action::Trigger {
            invocation,
            node: n,
            element: key.1,
            attempt,
            inputs,
        });
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a bool",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The catch step of task `n`, if it has one.
fn catch_of(wf: &Workflow, n: NodeId) -> Option<NodeId> {
    wf.graph
        .edges_directed(n, Direction::Outgoing)
        .find(|e| e.weight().on_failure)
        .map(|e| e.target())
}

/// `n`, or its catch step when `n` was caught at `element`.
fn stand_in(inv: &Invocation, n: NodeId, element: Option<u32>) -> NodeId {
    let caught = inv
        .inst
        .get(&(n.index() as u32, element))
        .is_some_and(|i| i.status == Status::Caught);
    match caught {
        true => catch_of(&inv.inst_key.wf, n).unwrap_or(n),
        false => n,
    }
}

/// For a catch step `n` at `element` whose task was caught: that failure.
fn caught_failure(inv: &Invocation, n: NodeId, element: Option<u32>) -> Option<Arc<serde_json::Value>> {
    let wf = &inv.inst_key.wf;
    let task = wf
        .graph
        .edges_directed(n, Direction::Incoming)
        .find(|e| e.weight().on_failure)?
        .source();
    inv.inst.get(&(task.index() as u32, element))?.failure.clone()
}

fn decrement(inv: &mut Invocation, key: Key, ready: &mut Vec<Key>) {
    if let Some(i) = inv.inst.get_mut(&key) {
        i.remaining = i.remaining.saturating_sub(1);
        if i.remaining == 0 && i.status == Status::Waiting {
            ready.push(key);
        }
    }
}
