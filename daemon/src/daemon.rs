//! The handle callers use: [`Daemon`] starts a worker (its arena, spill directory, drivers and
//! the runtime's loop thread) and posts every request to the loop's inbox, returning at once
//! or waiting for the loop's answer. Asking packs and images for their functions before an
//! install happens here, on the caller's thread, never on the loop.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use faasflow_core::NodeId;
use faasflow_core::dag::Workflow;
use faasflow_core::plan::{ClusterView, Plan};
use faasflow_ebpf::Probe;

use crate::api::{self, DaemonError, Execute, Execution, InstalledPlan, Invocation, Invoke, Pending, Stats};
use crate::config::DaemonConfig;
use crate::container::{ContainerSettings, DockerLink};
use crate::inbox::{Inbox, Install, Listed, Msg, Placement, poster};
use crate::net::Net;
use crate::pool::{PackCommand, Runner, Spawner};
use crate::remote::RemoteIo;
use crate::runtime::{Drivers, Runtime};
use crate::store::arena::{self, Arena};
use crate::store::spill::SpillDir;
use crate::threads;

/// Why a plan made for a cluster cannot be placed on this daemon.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum PlacementError {
    #[error("the plan has no worker named `{0}` (this daemon)")]
    NotInPlan(String),
    #[error("the plan refers to worker {0}, which it does not list")]
    UnknownWorker(u32),
    #[error(
        "the plan runs functions on worker `{0}`, but this daemon has no peer transport (start it with a cluster \
         certificate)"
    )]
    NoPeers(String),
    #[error("no QUIC address was given for worker `{0}`, which runs functions of the plan")]
    NoAddress(String),
}

/// Sets the socket directories of daemons apart within one process.
static DAEMONS: AtomicU32 = AtomicU32::new(0);

/// A running daemon (one worker). Dropping it stops the loop and every instance.
pub struct Daemon {
    inbox: Arc<Inbox>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The packs, to ask for their functions before an install.
    packs: HashMap<String, PackCommand>,
    synthetic: PackCommand,
    /// The Python interpreter, for the commands of functions in Python.
    python: std::path::PathBuf,
    /// Docker, to ask images for their functions.
    docker: Arc<DockerLink>,
    /// The removal of an earlier run's containers.
    cleanup: Option<std::thread::JoinHandle<()>>,
    spawn_timeout: Duration,
    name: String,
    peer_addr: Option<SocketAddr>,
    spill_path: PathBuf,
    /// The remote tier's URL, if it has one.
    redis: Option<String>,
    /// `worker{name}`: every thread and task of the daemon logs inside it.
    span: tracing::Span,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Daemon {
    /// Creates the arena and the spill directory, starts the drivers and the loop.
    pub fn start(config: DaemonConfig) -> Result<Daemon, DaemonError> {
        let span = tracing::info_span!("worker", worker = %config.name);
        let _entered = span.enter();
        let arena = Arena::create("faasflow-arena", config.arena_bytes)
            .map_err(|e| DaemonError::Start(format!("arena of {} bytes: {e}", config.arena_bytes)))?;
        let spill_parent = config.spill_dir.clone().unwrap_or_else(std::env::temp_dir);
        let spill = SpillDir::create(&spill_parent, &config.name).map_err(|e| DaemonError::Start(e.to_string()))?;
        let spill_path = spill.path().to_owned();
        let inbox = Arc::new(Inbox::new(arena.doorbell().clone()));
        let docker = docker_link(&config, &spill_path);
        // Remove what an earlier run with this name and directory left, off the start path
        // (a daemon that stops joins it first). Quiet when Docker cannot be reached: a daemon
        // whose functions run as processes needs none, and an install that needs it says so.
        let cleanup = if config.docker_socket.exists() {
            let docker = docker.clone();
            threads::spawn("faasflow-docker-connect", move || {
                let _ = docker.get();
            })
            .ok()
        } else {
            None
        };
        let spawner = Spawner::start(
            arena.bell().clone(),
            arena::DOORBELL_OFFSET,
            docker.clone(),
            poster(&inbox, Msg::Pool),
        );
        let net = start_net(&config, &inbox)?;
        let peer_addr = net.as_ref().and_then(Net::local_addr);
        let (probe, why) = Probe::new(config.memory_probe).map_err(|e| DaemonError::Start(e.to_string()))?;
        if let Some(why) = why {
            tracing::info!(cause = %why, "measuring memory through /proc ({why})");
        }
        let remote = RemoteIo::start(config.redis.as_deref(), poster(&inbox, Msg::Remote))
            .map_err(|e| DaemonError::Start(e.to_string()))?;
        let loop_inbox = inbox.clone();
        let (packs, synthetic, spawn_timeout) = (config.packs.clone(), config.synthetic.clone(), config.spawn_timeout);
        let python = config.python.clone();
        let name = config.name.clone();
        let redis = config.redis.clone();
        let drivers = Drivers {
            spawner,
            net,
            remote,
            probe,
            docker: docker.clone(),
        };
        let thread = threads::spawn("faasflow-daemon", move || {
            Runtime::new(config, (arena, spill), drivers, loop_inbox).run();
        })
        .map_err(|e| DaemonError::Start(e.to_string()))?;
        drop(_entered);
        Ok(Daemon {
            inbox,
            thread: Some(thread),
            packs,
            synthetic,
            python,
            docker,
            cleanup,
            spawn_timeout,
            name,
            peer_addr,
            spill_path,
            redis,
            span,
        })
    }

    /// The daemon's own spill directory (inside [`DaemonConfig::spill_dir`]; removed when the
    /// daemon stops).
    pub fn spill_dir(&self) -> &Path {
        &self.spill_path
    }

    /// The remote tier's URL, if the daemon has one.
    pub fn redis_url(&self) -> Option<&str> {
        self.redis.as_deref()
    }

    /// This worker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the peer transport listens, when the daemon has one.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer_addr
    }

    /// The worker's span (`worker{name}`), for work done on its behalf elsewhere (its gRPC
    /// service) to log inside.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Installs a workflow with its plan (version = the plan's version), starts the minimum
    /// instances of its pools and returns when they are up (an instance that cannot start is
    /// an error here, not at the first invocation).
    pub fn install(&self, wf: Arc<Workflow>, plan: Plan) -> Result<(), DaemonError> {
        let local: HashSet<NodeId> = wf
            .graph
            .node_indices()
            .filter(|n| wf.graph[*n].task().is_some())
            .collect();
        let placement = Placement {
            owner: local.iter().map(|n| (*n, 0)).collect(),
            local,
            me: 0,
            workers: vec![(0, self.name.clone(), self.peer_addr)],
        };
        self.install_placed(wf, plan, placement, Vec::new())
    }

    /// Installs this worker's part of a plan made for `cluster` (which must name this daemon):
    /// the daemon runs the tasks the plan puts on it and exchanges completions and objects
    /// with the other workers' daemons, found at `peers` (QUIC addresses by worker name; every
    /// worker that runs a task of the plan must be there). Versions install side by side
    /// (red-black): invocations keep the version they started on.
    pub fn install_plan(
        &self,
        wf: Arc<Workflow>,
        plan: Plan,
        cluster: &ClusterView,
        peers: &HashMap<String, SocketAddr>,
    ) -> Result<(), DaemonError> {
        self.install_plan_as(wf, plan, cluster, peers, Vec::new())
    }

    /// [`Daemon::install_plan`], recording the plan's `digest` (what it was sent as), which
    /// [`Daemon::plans`] reports so that a different plan under the same version is told apart.
    pub fn install_plan_as(
        &self,
        wf: Arc<Workflow>,
        plan: Plan,
        cluster: &ClusterView,
        peers: &HashMap<String, SocketAddr>,
        digest: Vec<u8>,
    ) -> Result<(), DaemonError> {
        let placement = self
            .placement(&wf, &plan, cluster, peers)
            .map_err(|m| DaemonError::Install(format!("workflow `{}` version {}: {m}", wf.name, plan.version)))?;
        self.install_placed(wf, plan, placement, digest)
    }

    /// Where `plan` (made for `cluster`) puts this daemon and the workers it talks to.
    fn placement(
        &self,
        wf: &Workflow,
        plan: &Plan,
        cluster: &ClusterView,
        peers: &HashMap<String, SocketAddr>,
    ) -> Result<Placement, PlacementError> {
        let me = cluster
            .workers
            .iter()
            .position(|w| w.name == self.name)
            .ok_or_else(|| PlacementError::NotInPlan(self.name.clone()))? as u32;
        let mut local = HashSet::new();
        let mut owner = HashMap::new();
        let mut used = BTreeSet::new();
        for n in wf.graph.node_indices() {
            if wf.graph[n].task().is_none() {
                continue;
            }
            let w = plan.worker_of(n);
            owner.insert(n, w);
            used.insert(w);
            if w == me {
                local.insert(n);
            }
        }
        let mut workers = Vec::new();
        for w in used {
            let name = cluster
                .workers
                .get(w as usize)
                .map(|v| v.name.clone())
                .ok_or(PlacementError::UnknownWorker(w))?;
            let addr = if w == me {
                self.peer_addr
            } else {
                if self.peer_addr.is_none() {
                    return Err(PlacementError::NoPeers(name));
                }
                Some(
                    *peers
                        .get(&name)
                        .ok_or_else(|| PlacementError::NoAddress(name.clone()))?,
                )
            };
            workers.push((w, name, addr));
        }
        Ok(Placement {
            local,
            owner,
            me,
            workers,
        })
    }

    fn install_placed(
        &self,
        wf: Arc<Workflow>,
        plan: Plan,
        placement: Placement,
        digest: Vec<u8>,
    ) -> Result<(), DaemonError> {
        // Running the packs (`--list`) takes a while: here, not on the loop, which serves the
        // other invocations meanwhile.
        let _entered = self.span.enter();
        let mut listed = Listed::new();
        let python = crate::python::commands(&wf, &plan, &placement.local, &self.python);
        for n in &placement.local {
            let Some(task) = wf.graph[*n].task() else { continue };
            // An unknown pack is reported by the install itself.
            let Ok((runner, _, _)) = Runner::of(&task.spec, &self.packs, &self.synthetic, python.get(n)) else {
                continue;
            };
            if let std::collections::hash_map::Entry::Vacant(e) = listed.entry(runner) {
                let fns = e.key().list(&self.docker, self.spawn_timeout);
                e.insert(fns);
            }
        }
        let (reply, answer) = api::pending();
        self.inbox.post(Msg::Install(Box::new(Install {
            wf,
            plan,
            placement,
            listed,
            digest,
            reply,
        })));
        answer.wait().unwrap_or(Err(DaemonError::Stopped))
    }

    /// Starts one invocation with this daemon as its entry (it tells the plan's other workers
    /// and reports the end); its report comes through the returned [`Invocation`]
    /// (`daemon.invoke(Invoke::new("wf", 1, input)).report()` waits for it).
    pub fn invoke(&self, request: Invoke) -> Invocation {
        let (reply, answer) = api::pending();
        self.inbox.post(Msg::Invoke(request, reply));
        answer
    }

    /// Runs one function attempt for a central engine (MasterSP): fetches its inputs from the
    /// remote tier into the arena, runs it on an instance of its pool, stores its outputs in
    /// the remote tier and answers. The plan must be installed here and put `node` on this
    /// daemon; the daemon needs the remote tier ([`DaemonConfig::redis`]).
    pub fn execute(&self, request: Execute) -> Execution {
        let (reply, answer) = api::pending();
        self.inbox.post(Msg::Execute(Box::new(request), reply));
        answer
    }

    /// Drops a plan version: new invocations of it are refused at once, and it is removed
    /// when its invocations in flight here have ended. Returns how many are in flight.
    pub fn drop_plan(&self, workflow: &str, version: u64) -> Result<u64, DaemonError> {
        self.ask(|reply| Msg::Drop {
            workflow: workflow.to_owned(),
            version,
            reply,
        })?
    }

    /// Worker `name` is lost (the planner says so, `reason` why): every invocation here of a
    /// plan it is in fails at once, naming it, rather than when the peer connection times
    /// out. Returns how many.
    pub fn worker_lost(&self, name: &str, reason: &str) -> Result<u64, DaemonError> {
        self.ask(|reply| Msg::WorkerLost {
            name: name.to_owned(),
            reason: reason.to_owned(),
            reply,
        })
    }

    /// Cancels invocation `invocation` (`reason` is said in its error): it ends here at once as
    /// failed (the plan's other workers are told), and the instances running only its calls
    /// are stopped. Whether it ran here; one that has not started here yet never starts.
    pub fn cancel(&self, invocation: u64, reason: &str) -> Result<bool, DaemonError> {
        self.ask(|reply| Msg::Cancel {
            invocation,
            reason: reason.to_owned(),
            reply,
        })
    }

    /// Bytes of output `name` (element `element` of a list) that invocation `invocation`'s
    /// report did not show whole, kept here as its entry ([`Invoke::keep_outputs`]), from
    /// `offset`, at most `max`: the bytes, or where to read them in the remote tier. Reading
    /// it whole is said with [`Daemon::output_read`].
    ///
    /// [`Invoke::keep_outputs`]: crate::api::Invoke::keep_outputs
    pub fn read_output(
        &self,
        invocation: u64,
        name: &str,
        element: u32,
        offset: u64,
        max: u64,
    ) -> Result<Result<crate::api::OutputPiece, crate::api::OutputError>, DaemonError> {
        self.ask(|reply| Msg::ReadOutput {
            invocation,
            name: name.to_owned(),
            element,
            offset,
            max,
            reply,
        })
    }

    /// Element `element` of kept output `name` of `invocation` was read whole (its last piece
    /// is out): when every kept output of the invocation has been, they are freed.
    pub fn output_read(&self, invocation: u64, name: &str, element: u32) -> Result<(), DaemonError> {
        self.ask(|reply| Msg::OutputRead {
            invocation,
            name: name.to_owned(),
            element,
            reply,
        })
    }

    /// A step of putting input `name` of an invocation that has not started yet, to be read
    /// by reference once it does ([`Invoke::files`]): `Begin` makes room for its bytes in
    /// the arena (answering `None`, the bytes then come with `Bytes`) or in a spill file
    /// (answering its path, which the caller writes), and `End` says they are all there.
    /// An input its invocation does not take within a minute is freed.
    ///
    /// [`Invoke::files`]: crate::api::Invoke::files
    pub fn put_input(
        &self,
        put: crate::api::Put,
    ) -> Result<Result<Option<std::path::PathBuf>, crate::api::InputError>, DaemonError> {
        self.ask(|reply| Msg::Put(put, reply))
    }

    /// Frees the outputs kept for `invocations`; how many had some.
    pub fn release_outputs(&self, invocations: Vec<u64>) -> Result<u32, DaemonError> {
        self.ask(|reply| Msg::ReleaseOutputs { invocations, reply })
    }

    /// The plan versions installed.
    pub fn plans(&self) -> Result<Vec<InstalledPlan>, DaemonError> {
        self.ask(Msg::Plans)
    }

    /// The daemon's metrics, as Prometheus text (served at `/metrics` on its port,
    /// beside gRPC).
    pub fn metrics_text(&self) -> Result<String, DaemonError> {
        self.ask(Msg::Metrics)
    }

    /// What the daemon holds now.
    pub fn stats(&self) -> Result<Stats, DaemonError> {
        self.ask(Msg::Stats)
    }

    /// Posts a request and waits for the loop's answer.
    fn ask<T>(&self, msg: impl FnOnce(api::Answer<T>) -> Msg) -> Result<T, DaemonError> {
        let (reply, answer): (_, Pending<T>) = api::pending();
        self.inbox.post(msg(reply));
        answer.wait().ok_or(DaemonError::Stopped)
    }
}

/// The link to Docker of a daemon with `config`. Its containers are labelled with the
/// directory given, so that a daemon started again with the same name and directory removes
/// those a crashed run left; without one, with its own directory (no other run's containers
/// are its).
fn docker_link(config: &DaemonConfig, spill_path: &Path) -> Arc<DockerLink> {
    let owner_dir = config.spill_dir.as_deref().unwrap_or(spill_path).display().to_string();
    Arc::new(DockerLink::new(ContainerSettings {
        socket: config.docker_socket.clone(),
        owner: format!("{}:{owner_dir}", config.name),
        // Short: a socket's path has at most 107 bytes.
        dir: std::env::temp_dir().join(format!(
            "faasflow-sockets-{}-{}",
            std::process::id(),
            DAEMONS.fetch_add(1, Ordering::Relaxed)
        )),
    }))
}

/// The peer transport of a daemon with `config`, posting to `inbox` (none without peer
/// settings).
fn start_net(config: &DaemonConfig, inbox: &Arc<Inbox>) -> Result<Option<Net>, DaemonError> {
    let Some(settings) = &config.peer else {
        return Ok(None);
    };
    if settings.identity.name() != config.name {
        return Err(DaemonError::Start(format!(
            "the certificate is for node `{}`, but this daemon is named `{}`",
            settings.identity.name(),
            config.name
        )));
    }
    Net::start(settings, poster(inbox, Msg::Net))
        .map(Some)
        .map_err(|e| DaemonError::Start(format!("peer transport on {}: {e}", settings.bind)))
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(t) = self.cleanup.take() {
            let _ = t.join();
        }
        self.inbox.post(Msg::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
