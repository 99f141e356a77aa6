//! What callers of a [`Daemon`](crate::daemon::Daemon) send it and get back: an invocation
//! ([`Invoke`]) and its report's [`Pending`] answer, a MasterSP step ([`Execute`] →
//! [`Executed`]), the plans it holds ([`InstalledPlan`]), what it holds ([`Stats`]) and its
//! errors ([`DaemonError`]).

use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use faasflow_core::NodeId;
use faasflow_core::dag::FailureKind;
use faasflow_core::engine::InvocationId;
use faasflow_core::report::{EdgeRecord, FunctionRecord, Report};
use faasflow_remote::ObjectKey;

/// Errors of the daemon's API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The workflow cannot be installed.
    #[error("{0}")]
    Install(String),
    /// The invocation could not start (unknown workflow, missing inputs…).
    #[error("{0}")]
    Invoke(String),
    /// The daemon could not start.
    #[error("cannot start the daemon: {0}")]
    Start(String),
    /// The daemon has stopped.
    #[error("the daemon has stopped")]
    Stopped,
    /// The daemon runs as many invocations as it may: this one was refused, not queued.
    #[error("{0}")]
    Overloaded(String),
}

/// One invocation to start with the daemon as its entry: it tells the plan's other workers
/// and reports the end.
#[derive(Debug, Clone, PartialEq)]
pub struct Invoke {
    /// The workflow.
    pub workflow: String,
    /// The plan version (installed on this daemon).
    pub version: u64,
    /// Its input (a JSON object of the workflow's inputs).
    pub input: serde_json::Value,
    /// The id to use, unique in the cluster (the planner's); `None` takes the daemon's next.
    pub id: Option<InvocationId>,
    /// A time limit: when it (or else the workflow's own `deadline`) has passed since the
    /// start, the invocation fails, naming the steps still open, and everything it runs is
    /// stopped (here and on the plan's other workers).
    pub deadline: Option<Duration>,
    /// Keep the outputs its report does not show whole (binary, or over 64 KiB) for this
    /// long after it ends, to be read with [`Daemon::read_output`] (`None`: freed at the end).
    ///
    /// [`Daemon::read_output`]: crate::daemon::Daemon::read_output
    pub keep_outputs: Option<Duration>,
    /// Inputs given as objects put here beforehand ([`Daemon::put_input`]), by name: each is
    /// read by reference, like a large string input, and its entry in `input` is ignored.
    ///
    /// [`Daemon::put_input`]: crate::daemon::Daemon::put_input
    pub files: Vec<String>,
}

impl Invoke {
    /// An invocation of `workflow` version `version` with `input`, with the daemon's next id
    /// and no time limit but the workflow's.
    pub fn new(workflow: impl Into<String>, version: u64, input: serde_json::Value) -> Self {
        Invoke {
            workflow: workflow.into(),
            version,
            input,
            id: None,
            deadline: None,
            keep_outputs: None,
            files: Vec::new(),
        }
    }

    /// With the id `id` (unique in the cluster).
    #[must_use]
    pub fn with_id(mut self, id: InvocationId) -> Self {
        self.id = Some(id);
        self
    }

    /// With the time limit `deadline` (`None`: the workflow's own).
    #[must_use]
    pub fn with_deadline(mut self, deadline: Option<Duration>) -> Self {
        self.deadline = deadline;
        self
    }
}

/// The answer to a request the daemon's loop answers later: waited for on a thread
/// ([`Pending::wait`], [`Pending::wait_timeout`]), checked ([`Pending::try_take`]), or
/// awaited (it is a [`Future`]). A daemon that stops first answers
/// [`DaemonError::Stopped`] (for an invocation) or drops the answer (see [`Pending::wait`]).
#[derive(Debug)]
pub struct Pending<T> {
    slot: Arc<Slot<T>>,
}

#[derive(Debug)]
struct Slot<T> {
    state: Mutex<SlotState<T>>,
    ready: Condvar,
}

#[derive(Debug)]
struct SlotState<T> {
    value: Option<T>,
    /// The answering side is gone without an answer.
    dropped: bool,
    waker: Option<Waker>,
}

/// The answering side of a [`Pending`]; dropping it unanswered wakes the waiter with nothing.
pub(crate) struct Answer<T> {
    slot: Option<Arc<Slot<T>>>,
}

impl<T> std::fmt::Debug for Answer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer").finish_non_exhaustive()
    }
}

/// A request's answer and where it goes.
pub(crate) fn pending<T>() -> (Answer<T>, Pending<T>) {
    let slot = Arc::new(Slot {
        state: Mutex::new(SlotState {
            value: None,
            dropped: false,
            waker: None,
        }),
        ready: Condvar::new(),
    });
    (
        Answer {
            slot: Some(slot.clone()),
        },
        Pending { slot },
    )
}

impl<T> Answer<T> {
    /// Answers (once).
    pub(crate) fn send(mut self, value: T) {
        if let Some(slot) = self.slot.take() {
            slot.finish(Some(value));
        }
    }
}

impl<T> Drop for Answer<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.finish(None);
        }
    }
}

impl<T> Slot<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn finish(&self, value: Option<T>) {
        let waker = {
            let mut s = self.lock();
            match value {
                Some(v) => s.value = Some(v),
                None => s.dropped = true,
            }
            s.waker.take()
        };
        self.ready.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Pending<T> {
    /// Waits for the answer; `None` when the daemon stopped without one.
    pub fn wait(self) -> Option<T> {
        let mut s = self.slot.lock();
        loop {
            if let Some(v) = s.value.take() {
                return Some(v);
            }
            if s.dropped {
                return None;
            }
            s = self.slot.ready.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Waits at most `timeout` for the answer: `Err(self)` when it has not come by then,
    /// `Ok(None)` when the daemon stopped without one.
    pub fn wait_timeout(self, timeout: Duration) -> Result<Option<T>, Self> {
        let until = Instant::now() + timeout;
        {
            let mut s = self.slot.lock();
            loop {
                if let Some(v) = s.value.take() {
                    return Ok(Some(v));
                }
                if s.dropped {
                    return Ok(None);
                }
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                s = self
                    .slot
                    .ready
                    .wait_timeout(s, left)
                    .map(|(s, _)| s)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
        }
        Err(self)
    }

    /// The answer if it has come (`Some(None)`: the daemon stopped without one).
    pub fn try_take(&mut self) -> Option<Option<T>> {
        let mut s = self.slot.lock();
        match s.value.take() {
            Some(v) => Some(Some(v)),
            None if s.dropped => Some(None),
            None => None,
        }
    }
}

impl<T> std::future::Future for Pending<T> {
    type Output = Option<T>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut s = self.slot.lock();
        if let Some(v) = s.value.take() {
            return Poll::Ready(Some(v));
        }
        if s.dropped {
            return Poll::Ready(None);
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// An invocation's report, when it is over (a failed invocation is a report with status
/// `failed`; an invocation that cannot start is an error).
pub type Invocation = Pending<Result<Report, DaemonError>>;

impl Invocation {
    /// Waits for the report ([`DaemonError::Stopped`] when the daemon stopped first).
    pub fn report(self) -> Result<Report, DaemonError> {
        self.wait().unwrap_or(Err(DaemonError::Stopped))
    }
}

/// A plan version installed on a daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledPlan {
    /// The workflow.
    pub workflow: String,
    /// The plan version.
    pub version: u64,
    /// Invocations running on it here.
    pub in_flight: u64,
    /// It is being dropped: removed when `in_flight` reaches 0.
    pub dropping: bool,
    /// What the plan was installed as (SHA-256 of its wire form; empty when it was installed
    /// from memory, not from the wire).
    pub digest: Vec<u8>,
}

/// What the daemon holds, for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Arena bytes held by objects and reservations.
    pub arena_used: u64,
    /// Arena bytes for objects.
    pub arena_capacity: u64,
    /// Objects held (in the arena or spilled).
    pub objects: usize,
    /// Files in the spill directory held by objects.
    pub spilled_objects: usize,
    /// Invocations running.
    pub invocations: usize,
    /// Calls sent or queued.
    pub calls: usize,
    /// Live instances.
    pub instances: usize,
    /// Objects spilled since start.
    pub spills_total: u64,
    /// Instances started since start.
    pub instances_started: u64,
}

/// An object in the remote tier (MasterSP: every object lives there).
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteObject {
    /// Where it is.
    pub key: ObjectKey,
    /// Its size in bytes.
    pub len: u64,
    /// Its parsed value when it is a `json` or `list` output (conditions and foreach lists
    /// read it).
    pub json: Option<Arc<serde_json::Value>>,
}

/// One input of a function [executed](crate::daemon::Daemon::execute) for a central engine.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecInput {
    /// Every source was skipped.
    Absent,
    /// A JSON value: a workflow input, a foreach element or its index.
    Json(Arc<serde_json::Value>),
    /// An object in the remote tier.
    Object(RemoteObject),
    /// The outputs of a foreach body read after it, in element order.
    List(Vec<RemoteObject>),
}

/// One function attempt a central engine (MasterSP) asks a daemon to run: its inputs are
/// fetched from the remote tier into the arena, and its outputs stored there.
#[derive(Debug, Clone)]
pub struct Execute {
    /// The workflow.
    pub workflow: String,
    /// The plan version (installed on this daemon).
    pub version: u64,
    /// The invocation.
    pub invocation: InvocationId,
    /// The task (this daemon must run it in the plan).
    pub node: NodeId,
    /// The foreach element.
    pub element: Option<u32>,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The function's inputs, by name.
    pub inputs: Vec<(String, ExecInput)>,
}

/// What an [`Execute`] produced.
#[derive(Debug, Clone)]
pub struct Executed {
    /// Its outputs, stored in the remote tier under keys of its invocation (the caller
    /// deletes them with the invocation: [`faasflow_remote::RemoteStore::delete_invocation`]).
    pub outputs: Vec<(String, RemoteObject)>,
    /// The run, for the invocation's report.
    pub record: FunctionRecord,
    /// Its inputs, for the report (tier `remote`).
    pub edges: Vec<EdgeRecord>,
    /// Time spent fetching inputs and storing outputs, µs.
    pub data_us: f64,
}

/// Why an [`Execute`] failed: the message names the step and the cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct ExecError {
    /// What went wrong, naming the step.
    pub message: String,
    /// The kind of failure (what `retry.on` is checked against).
    pub kind: FailureKind,
}

impl ExecError {
    /// A failure of `kind` saying `message`.
    pub fn new(message: impl Into<String>, kind: FailureKind) -> Self {
        ExecError {
            message: message.into(),
            kind,
        }
    }
}

/// The answer to an [`Execute`] (`None` when the daemon stopped first).
pub type Execution = Pending<Result<Executed, ExecError>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_reaches_a_waiting_thread_and_a_dropped_one_says_none() {
        let (answer, waiting) = pending::<u32>();
        let t = std::thread::spawn(move || waiting.wait());
        std::thread::sleep(Duration::from_millis(10));
        answer.send(7);
        assert_eq!(t.join().unwrap(), Some(7));
        let (answer, waiting) = pending::<u32>();
        drop(answer);
        assert_eq!(waiting.wait(), None);
    }

    #[test]
    fn a_timed_wait_gives_the_request_back_until_it_is_answered() {
        let (answer, mut waiting) = pending::<&str>();
        assert_eq!(waiting.try_take(), None);
        let waiting = waiting
            .wait_timeout(Duration::from_millis(5))
            .expect_err("no answer yet");
        answer.send("done");
        assert_eq!(waiting.wait_timeout(Duration::from_secs(5)).ok(), Some(Some("done")));
    }
}

/// A piece of a kept output ([`Daemon::read_output`]).
///
/// [`Daemon::read_output`]: crate::daemon::Daemon::read_output
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputPiece {
    /// Its bytes from the offset asked for.
    Bytes { total: u64, bytes: Vec<u8> },
    /// It is in the spill file `path`: bytes `offset..end` of it are the piece.
    File {
        total: u64,
        path: std::path::PathBuf,
        end: u64,
    },
    /// It is in the remote tier under `key`: bytes `offset..end` of it are the piece.
    Remote {
        total: u64,
        key: faasflow_remote::ObjectKey,
        end: u64,
    },
}

/// Why a kept output cannot be read ([`Daemon::read_output`]).
///
/// [`Daemon::read_output`]: crate::daemon::Daemon::read_output
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// It is not kept here: never was (shown whole, another worker's), read whole already,
    /// or its time ran out; the message says which names there are.
    #[error("{0}")]
    NotKept(String),
    /// The offset is past its end.
    #[error("output `{name}` has {len} bytes; offset {offset} is past its end")]
    PastEnd { name: String, len: u64, offset: u64 },
    /// Its bytes could not be read.
    #[error("output `{name}`: {cause}")]
    Unreadable { name: String, cause: String },
}

/// A step of putting a workflow input here before its invocation starts
/// ([`Daemon::put_input`]).
///
/// [`Daemon::put_input`]: crate::daemon::Daemon::put_input
#[derive(Debug, Clone)]
pub enum Put {
    /// Input `name` of `invocation` (of `workflow` version `version`) has `len` bytes: room is
    /// made for it (in the arena, else a spill file, whose path is answered).
    Begin {
        invocation: u64,
        workflow: String,
        version: u64,
        name: String,
        len: u64,
    },
    /// Its bytes from `offset` (into the arena).
    Bytes {
        invocation: u64,
        name: String,
        offset: u64,
        bytes: bytes::Bytes,
    },
    /// Every byte is there (`ok`), or the put is abandoned (its room freed).
    End { invocation: u64, name: String, ok: bool },
}

/// Why an input cannot be put ([`Daemon::put_input`]).
///
/// [`Daemon::put_input`]: crate::daemon::Daemon::put_input
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The plan version is not installed here.
    #[error("workflow `{workflow}` version {version} is not installed on this worker")]
    NotInstalled { workflow: String, version: u64 },
    /// Its invocation started already, or the input was put already.
    #[error("input `{name}` of invocation {invocation}: {why}")]
    Refused { invocation: u64, name: String, why: String },
    /// No put of it is under way (never begun, abandoned, or swept).
    #[error("input `{name}` of invocation {invocation} is not being put on this worker")]
    Unknown { invocation: u64, name: String },
    /// The worker runs as many invocations as it takes: retry later.
    #[error("{0}")]
    Overloaded(String),
    /// Larger than the whole arena: no function could map it.
    #[error(
        "input `{name}` has {len} bytes, more than worker `{worker}`'s whole arena ({capacity} bytes): functions map \
         their inputs, so it cannot be read there; give the worker a larger arena (--arena-mib)"
    )]
    LargerThanArena {
        name: String,
        len: u64,
        capacity: u64,
        worker: String,
    },
    /// An invocation names an input that was not put here whole.
    #[error(
        "input `{name}` of invocation {invocation} was not put on this worker whole (or it waited more than a minute \
         for its invocation and was freed)"
    )]
    NotPut { invocation: u64, name: String },
    /// Bytes past the length it was begun with.
    #[error("input `{name}` was begun with {len} bytes; bytes up to {end} were sent")]
    TooLong { name: String, len: u64, end: u64 },
}
