//! Starting pack instances: the spawner thread, the handshake, and the watcher that reports an
//! instance's death the moment its socket closes.
//!
//! The runtime asks for an instance with [`Spawner::spawn`]; the spawner (one long-lived
//! thread, so that `PR_SET_PDEATHSIG` ties every instance to the daemon's life) starts the
//! process, does the handshake with a deadline, lays out the instance's two rings, and posts
//! [`Ready`] to the runtime's inbox. Each instance then has a watcher thread blocked on its
//! socket: end-of-file means the process is gone, and the watcher posts its exit status.
//!
//! A container instance ([`Launch::Container`]) is started on a thread of its own (a container
//! takes hundreds of milliseconds to start; process instances do not wait behind it) through
//! [`crate::container`], and then does the same handshake over the socket its pack connected
//! to. Its watcher asks Docker how it ended (exit status, OOM kill) and removes it.

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use faasflow_shm::handshake::{self, Hello, Welcome, WelcomeFiles};
use faasflow_shm::{Consumer, Producer, Region, Ring};

use crate::container::{self, ContainerSpec, Docker, DockerError, DockerLink};
use crate::{stderr, threads};

/// Why a pack or image could not say which functions it serves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ListError {
    /// The pack's program could not be run.
    #[error("cannot run `{}`: {cause}", program.display())]
    Run {
        /// The program.
        program: PathBuf,
        /// Why.
        cause: String,
    },
    /// It did not answer in time.
    #[error("`{} --list` did not answer within {timeout:?}: is it a faasflow pack?", program.display())]
    Silent {
        /// The program.
        program: PathBuf,
        /// How long it had.
        timeout: Duration,
    },
    /// It could not be waited for.
    #[error("`{} --list`: {cause}", program.display())]
    Wait {
        /// The program.
        program: PathBuf,
        /// Why.
        cause: String,
    },
    /// It failed.
    #[error("`{} --list` failed ({how}): {stderr}", program.display())]
    Failed {
        /// The program.
        program: PathBuf,
        /// How it ended.
        how: String,
        /// What it wrote on standard error.
        stderr: String,
    },
    /// Docker could not say what the image serves.
    #[error("{0}")]
    Docker(#[from] DockerError),
}

/// A function's pack that the daemon does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "uses pack `{pack}`, which this daemon does not know (known: {known}); pass `--pack {pack}=PATH`, or put \
     `faasflow-pack-{pack}` next to `faasflow` or on PATH"
)]
#[non_exhaustive]
pub struct UnknownPack {
    /// The pack named.
    pub pack: String,
    /// The packs the daemon knows, comma-separated (`none`).
    pub known: String,
}

/// Why an instance did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Its workflow version was removed before it could start.
    #[error("the workflow version of pool `{pool}` is no longer installed")]
    VersionGone {
        /// The pool's sharing domain.
        pool: String,
    },
    /// No thread could be started for it.
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    /// The pack's process could not be started.
    #[error("cannot start pack `{program}`: {cause}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        cause: String,
    },
    /// The pack's process started but not its instance (the handshake failed).
    #[error("pack `{program}` (pid {pid}) did not start: {what}{}", if status.is_empty() { String::new() } else { format!(" (it {status})") })]
    Pack {
        /// The program.
        program: String,
        /// Its process.
        pid: u32,
        /// What went wrong.
        what: String,
        /// How it ended, when it did.
        status: String,
    },
    /// The container could not be started.
    #[error("a container of image `{image}` did not start: {cause}")]
    Container {
        /// The image.
        image: String,
        /// Why.
        cause: DockerError,
    },
    /// The container started but not its instance (the handshake failed).
    #[error(
        "a container of image `{image}` ({}, pid {pid}) did not start: {what} (it {how})",
        container::short(id)
    )]
    Handshake {
        /// The image.
        image: String,
        /// The container.
        id: String,
        /// Its pack's process.
        pid: u32,
        /// What went wrong.
        what: String,
        /// How it ended.
        how: String,
    },
    /// Docker cannot be reached.
    #[error("{0}")]
    Docker(#[from] DockerError),
    /// The launch asked for the wrong kind of instance.
    #[error("not a {0}")]
    Launch(&'static str),
}

/// The pack name of the instances serving functions in Python (in logs and errors).
pub(crate) const PYTHON_PACK: &str = "python";

/// What runs a function: a pack's program, or an image in containers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Runner {
    /// A pack's program, as a process of the daemon's.
    Process(PackCommand),
    /// An image, in Docker containers.
    Container(ContainerRun),
}

pub use crate::container::ContainerRun;

/// The image a container function in Python runs when its workflow names none (`cargo xtask
/// images` builds it: the interpreter with the faasflow package).
pub const PYTHON_IMAGE: &str = "faasflow/python";

impl Runner {
    /// How `spec`'s function runs on a daemon with `packs`: `(runner, pack name, synthetic)`.
    /// A function runs in a container when it says `isolation: container` or names an
    /// `image`; its image is then the one named, else [`container::default_image`]. A
    /// function in Python runs with `python`, the command serving it
    /// (made by the `python` module).
    pub fn of(
        spec: &faasflow_core::dag::FunctionSpec,
        packs: &HashMap<String, PackCommand>,
        synthetic: &PackCommand,
        python: Option<&PackCommand>,
    ) -> Result<(Runner, String, bool), UnknownPack> {
        if let Some(command) = python.filter(|_| spec.python.is_some()) {
            if spec.isolation == faasflow_core::dag::Isolation::Container || spec.image.is_some() {
                return Ok((
                    Runner::Container(python_container(spec, command)),
                    PYTHON_PACK.to_owned(),
                    false,
                ));
            }
            return Ok((Runner::Process(command.clone()), PYTHON_PACK.to_owned(), false));
        }
        let pack_name = spec.pack.clone().unwrap_or_else(|| "synthetic".to_owned());
        if spec.isolation == faasflow_core::dag::Isolation::Container || spec.image.is_some() {
            let image = spec
                .image
                .clone()
                .unwrap_or_else(|| container::default_image(spec.pack.as_deref()));
            return Ok((
                Runner::Container(ContainerRun::image(image)),
                pack_name,
                spec.pack.is_none(),
            ));
        }
        match &spec.pack {
            None => Ok((Runner::Process(synthetic.clone()), pack_name, true)),
            Some(p) => match packs.get(p) {
                Some(c) => Ok((Runner::Process(c.clone()), pack_name, false)),
                None => {
                    let mut known: Vec<&str> = packs.keys().map(String::as_str).collect();
                    known.sort_unstable();
                    Err(UnknownPack {
                        pack: p.clone(),
                        known: if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        },
                    })
                }
            },
        }
    }

    /// Asks the pack or image for its functions.
    pub fn list(&self, docker: &DockerLink, timeout: Duration) -> Result<Vec<String>, ListError> {
        match self {
            Runner::Process(c) => c.list_functions(timeout),
            Runner::Container(run) if run.args.is_empty() => Ok(docker.get()?.functions_of(&run.image)?),
            Runner::Container(run) => Ok(docker.get()?.list_by_running(run)?),
        }
    }
}

/// The containers of a function in Python: its image (the one named, else [`PYTHON_IMAGE`],
/// whose entrypoint is `python -m faasflow.serve`), the arguments of `command` after `-m
/// faasflow.serve`, and its code directories mounted where the arguments name them.
fn python_container(spec: &faasflow_core::dag::FunctionSpec, command: &PackCommand) -> ContainerRun {
    let args: Vec<String> = command.args.iter().skip(2).cloned().collect();
    let mut mounts = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let dir = match a.as_str() {
            "--code" => it.next().map(PathBuf::from),
            "--faasflow-v1" => it
                .next()
                .and_then(|p| std::path::Path::new(p).parent().map(std::path::Path::to_path_buf)),
            _ => None,
        };
        if let Some(dir) = dir.filter(|d| !mounts.contains(d)) {
            mounts.push(dir);
        }
    }
    ContainerRun {
        image: spec.image.clone().unwrap_or_else(|| PYTHON_IMAGE.to_owned()),
        args,
        mounts,
    }
}

/// How to start a pack: a program and its arguments.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PackCommand {
    /// The executable.
    pub program: PathBuf,
    /// Arguments before any the daemon adds.
    pub args: Vec<String>,
}

impl PackCommand {
    /// A pack that is a program of its own.
    pub fn program(path: impl Into<PathBuf>) -> Self {
        PackCommand {
            program: path.into(),
            args: Vec::new(),
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args);
        c
    }

    /// Asks the pack for its functions (`PACK --list`), waiting at most `timeout`.
    pub fn list_functions(&self, timeout: Duration) -> Result<Vec<String>, ListError> {
        let program = self.program.clone();
        let mut child = self
            .command()
            .arg("--list")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| ListError::Run {
                program: program.clone(),
                cause: e.to_string(),
            })?;
        // Read both pipes on threads, so that a chatty pack cannot block on a full pipe.
        let read = |pipe: Option<Box<dyn Read + Send>>| {
            threads::spawn("faasflow-list", move || {
                let mut out = Vec::new();
                if let Some(p) = pipe {
                    let _ = p.take(1 << 20).read_to_end(&mut out);
                }
                out
            })
        };
        let stdout = read(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
        let stderr = read(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
        let deadline = std::time::Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(ListError::Silent { program, timeout });
                }
                Err(e) => {
                    return Err(ListError::Wait {
                        program,
                        cause: e.to_string(),
                    });
                }
            }
        };
        let joined = |t: std::io::Result<std::thread::JoinHandle<Vec<u8>>>| {
            t.ok().and_then(|t| t.join().ok()).unwrap_or_default()
        };
        let stdout = joined(stdout);
        let stderr = joined(stderr);
        if !status.success() {
            return Err(ListError::Failed {
                program,
                how: describe_exit(status),
                stderr: String::from_utf8_lossy(&stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }
}

/// "exited with status 3", "was killed by signal 9 (SIGKILL)".
pub fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        format!("exited with status {code}")
    } else if let Some(sig) = status.signal() {
        let name = match sig {
            6 => " (SIGABRT)",
            9 => " (SIGKILL)",
            11 => " (SIGSEGV)",
            15 => " (SIGTERM)",
            _ => "",
        };
        format!("was killed by signal {sig}{name}")
    } else {
        format!("ended ({status})")
    }
}

/// How an instance is started.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Launch {
    /// As a process of the daemon's.
    Process(PackCommand),
    /// As a Docker container.
    Container(ContainerSpec),
}

/// What the runtime holds of a running instance, to stop it.
#[derive(Debug, Clone)]
pub enum Handle {
    /// A child process.
    Process(Arc<Mutex<Child>>),
    /// A container: its id and a pidfd of its pack's process.
    Container {
        /// The container's id.
        id: String,
        /// The pack's process.
        pidfd: Arc<OwnedFd>,
    },
}

impl Handle {
    /// Kills the instance (`SIGKILL`); its watcher then reports it gone.
    pub fn kill(&self) {
        match self {
            Handle::Process(child) => {
                let _ = child.lock().unwrap_or_else(|e| e.into_inner()).kill();
            }
            Handle::Container { pidfd, .. } => {
                let _ = handshake::pidfd_kill(pidfd.as_fd());
            }
        }
    }

    /// "pid 123", or "pid 123, container 0123456789ab".
    pub fn describe(&self, pid: u32) -> String {
        match self {
            Handle::Process(_) => format!("pid {pid}"),
            Handle::Container { id, .. } => format!("pid {pid}, container {}", container::short(id)),
        }
    }
}

/// A started instance, handed to the runtime.
#[derive(Debug)]
pub struct Ready {
    /// The process or container.
    pub handle: Handle,
    /// Its process id (on the host).
    pub pid: u32,
    /// Daemon → instance ring.
    pub to_instance: Producer,
    /// Instance → daemon ring.
    pub to_daemon: Consumer,
    /// Its functions by name → index.
    pub functions: HashMap<String, u32>,
}

/// A request to the spawner.
#[derive(Debug)]
pub struct SpawnRequest {
    /// The id the runtime gave the instance.
    pub instance: u32,
    /// What to run.
    pub launch: Launch,
    /// Calls it may run at once.
    pub threads: u32,
    /// Ring capacity in bytes (each way).
    pub ring_capacity: usize,
    /// Time allowed for start-up and handshake.
    pub timeout: Duration,
    /// The arena segment of the instance's workflow: the only objects it can map.
    pub arena: Arc<Region>,
    /// That segment's number.
    pub segment: u32,
    /// Bytes at its start that are resident (mapped eagerly by the instance).
    pub prefault: u64,
}

/// What the spawner and watchers report.
#[derive(Debug)]
pub enum Report {
    /// An instance is ready, or could not start.
    Ready {
        /// Its id.
        instance: u32,
        /// The instance or why it could not start.
        result: Result<Box<Ready>, StartError>,
    },
    /// An instance wrote these lines to its stderr.
    Said {
        /// Its id.
        instance: u32,
        /// The lines, without their newlines.
        lines: Vec<String>,
    },
    /// An instance's process ended.
    Exited {
        /// Its id.
        instance: u32,
        /// How it ended, in words.
        status: String,
    },
}

/// Where the spawner and the watchers report.
pub type Post = Arc<dyn Fn(Report) + Send + Sync>;

/// Handle on the spawner thread.
pub struct Spawner {
    tx: mpsc::Sender<SpawnRequest>,
    post: Post,
}

impl std::fmt::Debug for Spawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spawner").finish_non_exhaustive()
    }
}

impl Spawner {
    /// Starts the spawner; it posts [`Report`]s through `post` (which must wake the runtime)
    /// and gives every instance the daemon's doorbell (at `doorbell_offset` in `bell`) and the
    /// arena segment its request names. Container instances reach Docker through `docker`.
    pub fn start(bell: Arc<Region>, doorbell_offset: u64, docker: Arc<DockerLink>, post: Post) -> Spawner {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        let to = post.clone();
        threads::spawn("faasflow-spawner", move || {
            for req in rx {
                let id = req.instance;
                if let Launch::Container(_) = req.launch {
                    let (bell, docker, post) = (bell.clone(), docker.clone(), to.clone());
                    let started = threads::spawn(format!("faasflow-start-{id}"), move || {
                        let result = start_container(&req, &bell, doorbell_offset, &docker, &post).map(Box::new);
                        post(Report::Ready { instance: id, result });
                    });
                    if let Err(e) = started {
                        to(Report::Ready {
                            instance: id,
                            result: Err(StartError::Thread(e)),
                        });
                    }
                    continue;
                }
                let result = start_instance(&req, &bell, doorbell_offset, &to).map(Box::new);
                to(Report::Ready { instance: id, result });
            }
        })
        .expect("spawn the spawner thread");
        Spawner { tx, post }
    }

    /// Asks for an instance; the answer comes as [`Report::Ready`].
    pub fn spawn(&self, req: SpawnRequest) {
        // The spawner thread only ends when this sender is dropped.
        let _ = self.tx.send(req);
    }

    /// Answers the request for instance `instance` at once: it cannot start.
    pub fn fail(&self, instance: u32, error: StartError) {
        (self.post)(Report::Ready {
            instance,
            result: Err(error),
        });
    }
}

/// The rings and function table an instance got from its handshake.
type Handshaken = (Producer, Consumer, HashMap<String, u32>);

/// The handshake with a started instance whose end of the socket is `sock`. `fail` makes an
/// error of what went wrong (and stops the instance).
fn handshake_with(
    req: &SpawnRequest,
    sock: &mut UnixStream,
    bell: &Region,
    doorbell_offset: u64,
    fail: &dyn Fn(String) -> StartError,
) -> Result<Handshaken, StartError> {
    sock.set_read_timeout(Some(req.timeout))
        .map_err(|e| fail(e.to_string()))?;
    let timeout = req.timeout;
    let explain = move |e: handshake::HandshakeError| match &e {
        handshake::HandshakeError::Io(io)
            if matches!(io.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
        {
            format!(
                "no handshake within {timeout:?}: is it a faasflow pack, built with the sdk of this faasflow \
                 (protocol {})?",
                handshake::PROTOCOL_VERSION
            )
        }
        _ => e.to_string(),
    };
    let deadline = Some(std::time::Instant::now() + timeout);
    let hello = Hello::recv_by(sock, deadline).map_err(|e| fail(explain(e)))?;
    let to_instance_off = 0usize;
    let to_daemon_off = Ring::required_len(req.ring_capacity).next_multiple_of(64);
    let rings = Arc::new(
        Region::create(
            &format!("faasflow-rings-{}", req.instance),
            to_daemon_off + Ring::required_len(req.ring_capacity),
        )
        .map_err(|e| fail(format!("rings: {e}")))?,
    );
    let to_instance = Ring::init(&rings, to_instance_off, req.ring_capacity)
        .map_err(|e| fail(e.to_string()))?
        .into_producer();
    let to_daemon = Ring::init(&rings, to_daemon_off, req.ring_capacity)
        .map_err(|e| fail(e.to_string()))?
        .into_consumer();
    let welcome = Welcome {
        instance: req.instance,
        segment: req.segment,
        prefault: req.prefault,
        doorbell: doorbell_offset,
        to_instance: to_instance_off as u64,
        to_daemon: to_daemon_off as u64,
        threads: req.threads,
    };
    welcome
        .send(
            sock,
            WelcomeFiles {
                arena: req.arena.fd(),
                rings: rings.fd(),
                bell: bell.fd(),
            },
        )
        .map_err(|e| fail(e.to_string()))?;
    handshake::recv_ready_by(sock, deadline).map_err(|e| fail(explain(e)))?;
    let functions = hello
        .functions
        .iter()
        .enumerate()
        .map(|(i, f)| (f.clone(), i as u32))
        .collect();
    let _ = sock.set_read_timeout(None);
    Ok((to_instance, to_daemon, functions))
}

fn start_instance(req: &SpawnRequest, bell: &Region, doorbell_offset: u64, post: &Post) -> Result<Ready, StartError> {
    let Launch::Process(command) = &req.launch else {
        return Err(StartError::Launch("process"));
    };
    let prog = command.program.display().to_string();
    let mut cmd = command.command();
    cmd.stdin(Stdio::null()).stderr(Stdio::piped());
    let (mut child, mut sock) = handshake::spawn_instance(&mut cmd).map_err(|e| StartError::Spawn {
        program: prog.clone(),
        cause: e.to_string(),
    })?;
    let said = child
        .stderr
        .take()
        .map(|pipe| forward_stderr(req.instance, pipe, post.clone()));
    let pid = child.id();
    let child = Arc::new(Mutex::new(child));
    let fail = |what: String| {
        // The instance is useless: make sure it is gone and reaped.
        let mut c = child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = c.kill();
        let status = c.wait().map(describe_exit).unwrap_or_default();
        StartError::Pack {
            program: prog.clone(),
            pid,
            what,
            status,
        }
    };
    let (to_instance, to_daemon, functions) = handshake_with(req, &mut sock, bell, doorbell_offset, &fail)?;
    watch(req.instance, sock, child.clone(), said, post.clone());
    Ok(Ready {
        handle: Handle::Process(child),
        pid,
        to_instance,
        to_daemon,
        functions,
    })
}

fn start_container(
    req: &SpawnRequest,
    bell: &Region,
    doorbell_offset: u64,
    docker: &DockerLink,
    post: &Post,
) -> Result<Ready, StartError> {
    let Launch::Container(spec) = &req.launch else {
        return Err(StartError::Launch("container"));
    };
    let image = &spec.image;
    let docker = docker.get()?;
    let started = docker
        .start(req.instance, spec, req.timeout)
        .map_err(|cause| StartError::Container {
            image: image.clone(),
            cause,
        })?;
    let (id, pid) = (started.id, started.pid);
    let mut sock = started.sock;
    let fail = |what: String| {
        let _ = handshake::pidfd_kill(started.pidfd.as_fd());
        let how = docker.ended(&id);
        let _ = docker.remove(&id);
        StartError::Handshake {
            image: image.clone(),
            id: id.clone(),
            pid,
            what,
            how,
        }
    };
    let (to_instance, to_daemon, functions) = handshake_with(req, &mut sock, bell, doorbell_offset, &fail)?;
    let pidfd = Arc::new(started.pidfd);
    let said = match docker.follow_stderr(&id) {
        Ok(pipe) => Some(forward_stderr(req.instance, pipe, post.clone())),
        Err(e) => {
            tracing::warn!(instance = req.instance, container = %container::short(&id), "the instance's stderr cannot be followed: {e}");
            None
        }
    };
    let watched = Watched {
        instance: req.instance,
        sock,
        id: id.clone(),
        pidfd: pidfd.clone(),
        said,
    };
    watch_container(watched, docker, post.clone());
    Ok(Ready {
        handle: Handle::Container { id, pidfd },
        pid,
        to_instance,
        to_daemon,
        functions,
    })
}

/// Waits for a container instance's socket to close or its process to end, then asks Docker
/// how it ended, removes it and reports.
/// Posts what instance `instance` writes to `pipe` as [`Report::Said`].
fn forward_stderr(instance: u32, pipe: impl Read + Send + 'static, post: Post) -> mpsc::Receiver<()> {
    stderr::forward(instance, pipe, move |lines| post(Report::Said { instance, lines }))
}

/// A container instance to watch: its socket, container and process, and the end of its
/// stderr.
struct Watched {
    instance: u32,
    sock: UnixStream,
    id: String,
    pidfd: Arc<OwnedFd>,
    said: Option<mpsc::Receiver<()>>,
}

fn watch_container(w: Watched, docker: Arc<Docker>, post: Post) {
    let Watched {
        instance,
        mut sock,
        id,
        pidfd,
        said,
    } = w;
    let post2 = post.clone();
    let spawned = threads::spawn(format!("faasflow-watch-{instance}"), move || {
        let mut buf = [0u8; 64];
        loop {
            match handshake::wait_readable(sock.as_fd(), pidfd.as_fd()) {
                Ok((_, true)) | Err(_) => break,
                Ok((true, false)) if !matches!(sock.read(&mut buf), Ok(n) if n > 0) => break,
                Ok(_) => {}
            }
        }
        // A pack that closed its socket but lives on has left the protocol.
        let _ = handshake::pidfd_kill(pidfd.as_fd());
        let status = docker.ended(&id);
        // Its last words first.
        if let Some(said) = said {
            let _ = said.recv_timeout(stderr::DRAIN);
        }
        if let Err(e) = docker.remove(&id) {
            tracing::warn!(instance, container = %container::short(&id), cause = %e, "cannot remove an instance's container");
        }
        post(Report::Exited { instance, status });
    });
    if let Err(e) = spawned {
        post2(Report::Exited {
            instance,
            status: format!("could not be watched: {e}"),
        });
    }
}

/// Reaps an instance whose socket closed, without holding the lock while it waits (the
/// runtime takes it to kill). A process that closed its socket but lives on has left the
/// protocol: after [`ABANDONED`] it is killed.
fn reap(child: &Mutex<Child>) -> String {
    let lock = || child.lock().unwrap_or_else(|e| e.into_inner());
    let since = std::time::Instant::now();
    let mut killed = false;
    loop {
        match lock().try_wait() {
            Ok(Some(status)) => {
                let how = describe_exit(status);
                return if killed {
                    format!("closed its socket and was stopped ({how})")
                } else {
                    how
                };
            }
            Ok(None) if !killed && since.elapsed() >= ABANDONED => {
                let _ = lock().kill();
                killed = true;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => return format!("could not be waited for: {e}"),
        }
    }
}

/// How long an instance may live on after closing its socket.
const ABANDONED: Duration = Duration::from_millis(200);

/// Waits for the instance's socket to close, reaps the process and reports how it ended.
fn watch(instance: u32, mut sock: UnixStream, child: Arc<Mutex<Child>>, said: Option<mpsc::Receiver<()>>, post: Post) {
    use std::os::fd::AsFd;
    let post2 = post.clone();
    let pid = Some(child.lock().unwrap_or_else(|e| e.into_inner()).id());
    let spawned = threads::spawn(format!("faasflow-watch-{instance}"), move || {
        let mut buf = [0u8; 64];
        // Nothing is sent after the handshake: the socket reads end-of-file when the
        // process closes it (by exiting); the pidfd becomes readable when it exits even if
        // a process it forked still holds the socket.
        match pid.and_then(|pid| handshake::pidfd(pid).ok()) {
            Some(pidfd) => loop {
                match handshake::wait_readable(sock.as_fd(), pidfd.as_fd()) {
                    Ok((_, true)) | Err(_) => break,
                    Ok((true, false)) if !matches!(sock.read(&mut buf), Ok(n) if n > 0) => break,
                    Ok(_) => {}
                }
            },
            None => while matches!(sock.read(&mut buf), Ok(n) if n > 0) {},
        }
        let status = reap(&child);
        // Its last words first.
        if let Some(said) = said {
            let _ = said.recv_timeout(stderr::DRAIN);
        }
        post(Report::Exited { instance, status });
    });
    if let Err(e) = spawned {
        post2(Report::Exited {
            instance,
            status: format!("could not be watched: {e}"),
        });
    }
}
