//! The messages posted to the runtime's loop ([`Msg`]) and the plumbing that carries them:
//! a queue behind a lock, a flag the loop checks without taking it, and the arena's doorbell,
//! which the poster rings so that a parked loop wakes at once ([`Inbox::post`]).
//!
//! Everything outside the loop talks to it through here: the [`Daemon`](crate::daemon::Daemon)
//! handle (API callers), the spawner and the watchers ([`pool::Report`]), the network driver
//! ([`NetEvent`]) and the remote-store driver ([`RemoteEvent`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use faasflow_core::NodeId;
use faasflow_core::dag::Workflow;
use faasflow_core::plan::Plan;
use faasflow_core::report::Report;
use faasflow_shm::Doorbell;

use crate::api::{Answer, DaemonError, ExecError, Execute, Executed, InstalledPlan, Invoke, Stats};
use crate::net::NetEvent;
use crate::pool::{self, ListError, Runner};
use crate::remote::RemoteEvent;

/// A message to the loop.
pub(crate) enum Msg {
    /// Install a plan version; answered when its pools' first instances are up.
    Install(Box<Install>),
    /// Start an invocation with this daemon as its entry.
    Invoke(Invoke, Answer<Result<Report, DaemonError>>),
    /// Run one function for a central engine (MasterSP).
    Execute(Box<Execute>, Answer<Result<Executed, ExecError>>),
    /// Drop a plan version (removed when its invocations here have ended).
    Drop {
        workflow: String,
        version: u64,
        reply: Answer<Result<u64, DaemonError>>,
    },
    /// The plan versions installed.
    Plans(Answer<Vec<InstalledPlan>>),
    /// A worker is lost (the planner says so): fail the invocations of plans it is in.
    WorkerLost {
        name: String,
        reason: String,
        reply: Answer<u64>,
    },
    /// Cancel an invocation (the planner asks): whether it ran here.
    Cancel {
        invocation: u64,
        reason: String,
        reply: Answer<bool>,
    },
    /// Bytes of a kept output: (its size, the bytes from `offset`, at most `max`).
    ReadOutput {
        invocation: u64,
        name: String,
        element: u32,
        offset: u64,
        max: u64,
        reply: Answer<Result<crate::api::OutputPiece, crate::api::OutputError>>,
    },
    /// A kept output's element was read whole.
    OutputRead {
        invocation: u64,
        name: String,
        element: u32,
        reply: Answer<()>,
    },
    /// A step of putting a workflow input before its invocation starts: a spill file to
    /// write the bytes to, when its `Begin` found no room in the arena.
    Put(
        crate::api::Put,
        Answer<Result<Option<std::path::PathBuf>, crate::api::InputError>>,
    ),
    /// Frees the outputs kept for these invocations; answers how many had some.
    ReleaseOutputs { invocations: Vec<u64>, reply: Answer<u32> },
    /// What the daemon holds.
    Stats(Answer<Stats>),
    /// The metrics, as Prometheus text.
    Metrics(Answer<String>),
    /// From the spawner and the watchers.
    Pool(pool::Report),
    /// From the network driver.
    Net(NetEvent),
    /// From the remote-store driver.
    Remote(RemoteEvent),
    /// Stop the loop.
    Shutdown,
}

/// A plan version to install.
pub(crate) struct Install {
    pub(crate) wf: Arc<Workflow>,
    pub(crate) plan: Plan,
    pub(crate) placement: Placement,
    /// What each pack or image the workflow uses says it serves (asked on the caller's
    /// thread).
    pub(crate) listed: Listed,
    /// What the plan was sent as ([`InstalledPlan::digest`]).
    pub(crate) digest: Vec<u8>,
    pub(crate) reply: Answer<Result<(), DaemonError>>,
}

/// The functions each pack command or image serves, or why it could not say.
pub(crate) type Listed = HashMap<Runner, Result<Vec<String>, ListError>>;

/// Where a plan puts this daemon: the task nodes it runs, and the peers running the others.
#[derive(Debug, Clone, Default)]
pub(crate) struct Placement {
    /// Task nodes run here.
    pub(crate) local: HashSet<NodeId>,
    /// The plan's worker index of every task node.
    pub(crate) owner: HashMap<NodeId, u32>,
    /// The plan's worker index of this daemon.
    pub(crate) me: u32,
    /// Every worker of the plan that runs a task, by plan index: name and QUIC address.
    pub(crate) workers: Vec<(u32, String, Option<SocketAddr>)>,
}

/// The loop's inbox: posted to from any thread, drained by the loop.
pub(crate) struct Inbox {
    queue: Mutex<VecDeque<Msg>>,
    /// Something was posted since the loop last drained the queue.
    pending: AtomicBool,
    doorbell: Doorbell,
}

impl Inbox {
    /// An empty inbox whose posts ring `doorbell` (the arena's, which instances ring too).
    pub(crate) fn new(doorbell: Doorbell) -> Self {
        Inbox {
            queue: Mutex::new(VecDeque::new()),
            pending: AtomicBool::new(false),
            doorbell,
        }
    }

    /// Posts a message and wakes the loop.
    pub(crate) fn post(&self, msg: Msg) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).push_back(msg);
        self.pending.store(true, Ordering::Release);
        self.doorbell.ring();
    }

    /// Whether something was posted that the loop has not taken.
    pub(crate) fn has_mail(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Takes every message posted so far, oldest first (`None` when there is none).
    pub(crate) fn take(&self) -> Option<Vec<Msg>> {
        if !self.pending.swap(false, Ordering::Acquire) {
            return None;
        }
        Some(self.queue.lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect())
    }

    /// Waits on the doorbell: spins for `spin`, then parks until it rings or `timeout` has
    /// passed, or at once when `ready` (checked as it spins) or the inbox has mail.
    pub(crate) fn wait(&self, spin: Duration, timeout: Duration, mut ready: impl FnMut() -> bool) {
        self.doorbell.wait(spin, Some(timeout), || self.has_mail() || ready());
    }
}

/// Posts to the loop from another thread: each driver gets one for its events.
pub(crate) fn poster<E: 'static>(inbox: &Arc<Inbox>, wrap: fn(E) -> Msg) -> Arc<dyn Fn(E) + Send + Sync> {
    let inbox = inbox.clone();
    Arc::new(move |e| inbox.post(wrap(e)))
}
