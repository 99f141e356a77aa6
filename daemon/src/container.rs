//! Instances in Docker containers, through the Docker engine's API ([`bollard`]).
//!
//! A container instance speaks the same handshake as a process instance, over a Unix socket
//! the daemon listens on and bind-mounts into the container (the only mount): the pack finds
//! its path in `FAASFLOW_INSTANCE_SOCKET`, connects, and receives the arena and its rings as
//! file descriptors (`SCM_RIGHTS`), so nothing else of the host is visible to it. Each
//! container runs with its function's memory and CPU limits, as user 65534, with a read-only
//! root filesystem, every capability dropped, `no-new-privileges`, and no network unless the
//! function asks for it. It is labelled with its daemon's owner key, so that a daemon started
//! again with the same name and directory finds and removes the containers a previous run left
//! behind ([`Docker::remove_orphans`]).
//!
//! Docker is reached lazily: a daemon whose workflows run no container never connects, and one
//! that finds Docker stopped says where it looked and keeps serving process instances.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    WaitContainerOptionsBuilder,
};
use faasflow_shm::handshake;
use futures_util::StreamExt;

/// Label naming the daemon a container belongs to (its [`ContainerSettings::owner`]).
pub const OWNER_LABEL: &str = "faasflow.owner";
/// Label of an image listing its pack's functions, comma-separated (`cargo xtask images` sets
/// it), so that the daemon need not run the image to ask.
pub const FUNCTIONS_LABEL: &str = "faasflow.functions";
/// Where the daemon's socket appears inside a container.
const SOCKET_IN_CONTAINER: &str = "/run/faasflow.sock";
/// The user containers run as (nobody).
const USER: &str = "65534:65534";
/// Time allowed for one call to the Docker engine.
const API_TIMEOUT: Duration = Duration::from_secs(30);

/// Why Docker could not do what the daemon asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DockerError {
    /// The engine cannot be reached.
    #[error(
        "Docker is not reachable at {} ({why}): start dockerd, or pass --docker-socket; functions that do not run in \
         containers need no Docker",
        socket.display()
    )]
    Unreachable {
        /// Where it was looked for.
        socket: PathBuf,
        /// Why it cannot be reached.
        why: String,
    },
    /// The client's thread could not start.
    #[error("cannot start the Docker client's thread: {0}")]
    Thread(String),
    /// The directory of the sockets mounted into containers could not be made.
    #[error("cannot create the socket directory {}: {cause}", dir.display())]
    SocketDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        cause: String,
    },
    /// An image is missing.
    #[error(
        "image `{image}` does not exist on this worker: build it (`cargo xtask images` builds the repo's packs), or \
         `docker load` it"
    )]
    NoImage {
        /// The image.
        image: String,
    },
    /// A call to the engine failed.
    #[error("{what}: {cause}")]
    Api {
        /// What was asked.
        what: String,
        /// The engine's answer.
        cause: String,
    },
    /// An image's `--list` failed.
    #[error("`{image} --list` failed (exit status {code}): {stderr}")]
    ListFailed {
        /// The image.
        image: String,
        /// Its exit status (`unknown` when Docker did not say).
        code: String,
        /// The last lines it wrote on standard error.
        stderr: String,
    },
    /// The socket a container connects to failed.
    #[error("{0}")]
    Socket(String),
    /// A container's pack did not connect in time.
    #[error(
        "its pack did not connect to {SOCKET_IN_CONTAINER} within the start-up time: is `{image}` a faasflow pack, \
         built with the sdk of this faasflow?"
    )]
    NoConnection {
        /// The image.
        image: String,
    },
    /// A container ended before its pack connected.
    #[error(
        "its container ({}, image `{image}`) {how} before its pack connected{}",
        short(id),
        if stderr.is_empty() { String::new() } else { format!(": {stderr}") }
    )]
    Exited {
        /// The container.
        id: String,
        /// The image.
        image: String,
        /// How it ended.
        how: String,
        /// The last lines it wrote on standard error.
        stderr: String,
    },
}

impl DockerError {
    fn api(what: impl Into<String>, e: bollard::errors::Error) -> Self {
        DockerError::Api {
            what: what.into(),
            cause: api(e),
        }
    }
}

/// The image a container function runs when its workflow names none: `faasflow/<pack>`
/// (`faasflow/synthetic` for a function without a pack), as `cargo xtask images` builds them.
pub fn default_image(pack: Option<&str>) -> String {
    format!("faasflow/{}", pack.unwrap_or("synthetic"))
}

/// How a daemon reaches Docker.
#[derive(Debug, Clone)]
pub struct ContainerSettings {
    /// The engine's Unix socket.
    pub socket: PathBuf,
    /// Who the containers belong to (the daemon's name and directory): the value of
    /// [`OWNER_LABEL`].
    pub owner: String,
    /// Where the daemon creates the sockets it bind-mounts into containers.
    pub dir: PathBuf,
}

impl ContainerSettings {
    /// The socket of `DOCKER_HOST` when it is a `unix://` URL, else `/var/run/docker.sock`.
    pub fn default_socket() -> PathBuf {
        std::env::var("DOCKER_HOST")
            .ok()
            .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"))
    }
}

/// What a container instance runs with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerSpec {
    /// The image.
    pub image: String,
    /// Memory limit, bytes (swap included: none beyond it).
    pub memory_bytes: u64,
    /// CPU limit, in thousandths of a CPU.
    pub cpu_millis: u64,
    /// Whether it gets a network (the default bridge); otherwise only loopback.
    pub network: bool,
    /// The arguments after the image's entrypoint (none: the image's own command).
    pub args: Vec<String>,
    /// Host directories mounted read-only at the same path.
    pub mounts: Vec<PathBuf>,
}

/// How containers of an image run a function.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerRun {
    /// The image.
    pub image: String,
    /// The arguments after the image's entrypoint (none: the image's own command).
    pub args: Vec<String>,
    /// Host directories mounted read-only at the same path (a Python function's code).
    pub mounts: Vec<PathBuf>,
}

impl ContainerRun {
    /// An image run as it is.
    pub fn image(image: impl Into<String>) -> ContainerRun {
        ContainerRun {
            image: image.into(),
            args: Vec::new(),
            mounts: Vec::new(),
        }
    }
}

/// A started container whose pack has connected.
#[derive(Debug)]
pub struct Started {
    /// The container's id.
    pub id: String,
    /// Its pack's end of the connection, for the handshake.
    pub sock: UnixStream,
    /// The pack's process id on the host.
    pub pid: u32,
    /// A pidfd of that process.
    pub pidfd: OwnedFd,
}

/// The daemon's link to Docker: connected on first use (and again after a failure), the
/// previous run's orphans removed on the first connection.
#[derive(Debug)]
pub struct DockerLink {
    settings: ContainerSettings,
    docker: Mutex<Option<Arc<Docker>>>,
}

impl DockerLink {
    /// A link that connects when first used.
    pub fn new(settings: ContainerSettings) -> Self {
        DockerLink {
            settings,
            docker: Mutex::new(None),
        }
    }

    /// Where it looks for Docker.
    pub fn settings(&self) -> &ContainerSettings {
        &self.settings
    }

    /// The connection, if one was made.
    pub fn connected(&self) -> Option<Arc<Docker>> {
        self.docker.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The connection, made (and the orphans of an earlier run removed) if there is none yet.
    pub fn get(&self) -> Result<Arc<Docker>, DockerError> {
        let mut slot = self.docker.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = slot.as_ref() {
            return Ok(d.clone());
        }
        let d = Arc::new(Docker::connect(&self.settings)?);
        match d.remove_orphans() {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                owner = %self.settings.owner,
                "removed {n} container(s) left by an earlier run"
            ),
            Err(e) => tracing::warn!(cause = %e, "could not remove the containers of an earlier run"),
        }
        *slot = Some(d.clone());
        Ok(d)
    }
}

/// A connection to the Docker engine.
pub struct Docker {
    client: bollard::Docker,
    /// Runs the client's futures (one worker thread; callers block on it). Always `Some`
    /// until dropped.
    rt: Option<tokio::runtime::Runtime>,
    settings: ContainerSettings,
    /// Functions by image id.
    functions: Mutex<HashMap<String, Vec<String>>>,
}

impl std::fmt::Debug for Docker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Docker")
            .field("socket", &self.settings.socket)
            .finish_non_exhaustive()
    }
}

fn api(e: bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, message } => {
            format!("{message} (HTTP {status_code})")
        }
        e => {
            // The client's own message hides the cause ("client error (Connect)"): add the
            // chain of sources (permission denied, connection refused…).
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                let s_text = s.to_string();
                if !text.contains(&s_text) {
                    text = format!("{text}: {s_text}");
                }
                source = s.source();
            }
            text
        }
    }
}

fn not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }
    )
}

impl Drop for Docker {
    fn drop(&mut self) {
        // The last holder may be a task of some other runtime, where a blocking shutdown
        // panics.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Docker {
    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt
            .as_ref()
            .expect("the runtime lives as long as the client")
            .block_on(f)
    }

    /// Connects to the engine at `settings.socket` and checks that it answers.
    pub fn connect(settings: &ContainerSettings) -> Result<Docker, DockerError> {
        let unreachable = |why: String| DockerError::Unreachable {
            socket: settings.socket.clone(),
            why,
        };
        if !settings.socket.exists() {
            return Err(unreachable("no such socket".into()));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("faasflow-docker")
            .enable_all()
            .build()
            .map_err(|e| DockerError::Thread(e.to_string()))?;
        let client = {
            let _in = rt.enter();
            bollard::Docker::connect_with_unix(
                &settings.socket.to_string_lossy(),
                API_TIMEOUT.as_secs(),
                bollard::API_DEFAULT_VERSION,
            )
            .map_err(|e| unreachable(e.to_string()))?
        };
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), client.ping()).await })
            .map_err(|_| unreachable("no answer within 5 s".into()))?
            .map_err(|e| unreachable(api(e)))?;
        // Only the daemon's user may enter it; containers reach their socket through the bind
        // mount, which does not go through the directory.
        std::fs::create_dir_all(&settings.dir)
            .and_then(|()| std::fs::set_permissions(&settings.dir, std::fs::Permissions::from_mode(0o700)))
            .map_err(|e| DockerError::SocketDir {
                dir: settings.dir.clone(),
                cause: e.to_string(),
            })?;
        Ok(Docker {
            client,
            rt: Some(rt),
            settings: settings.clone(),
            functions: Mutex::new(HashMap::new()),
        })
    }

    /// How it reaches Docker.
    pub fn settings(&self) -> &ContainerSettings {
        &self.settings
    }

    /// Removes (stopping them first) every container labelled with this daemon's owner key;
    /// returns how many.
    pub fn remove_orphans(&self) -> Result<usize, DockerError> {
        let filters = HashMap::from([("label", vec![format!("{OWNER_LABEL}={}", self.settings.owner)])]);
        let list = self
            .block_on(self.client.list_containers(Some(
                ListContainersOptionsBuilder::new().all(true).filters(&filters).build(),
            )))
            .map_err(|e| DockerError::api("cannot list the daemon's containers", e))?;
        let mut removed = 0;
        for c in list {
            if let Some(id) = c.id {
                self.remove(&id)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Removes container `id`, killing it if it runs; one that is already gone is fine.
    pub fn remove(&self, id: &str) -> Result<(), DockerError> {
        match self.block_on(
            self.client
                .remove_container(id, Some(RemoveContainerOptionsBuilder::new().force(true).build())),
        ) {
            Ok(()) => Ok(()),
            // Gone, or being removed already (by the watcher, say).
            Err(e)
                if not_found(&e)
                    || matches!(
                        e,
                        bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }
                    ) =>
            {
                Ok(())
            }
            Err(e) => Err(DockerError::api(format!("cannot remove container {}", short(id)), e)),
        }
    }

    /// The functions `image` serves: its [`FUNCTIONS_LABEL`], or what `IMAGE --list` prints.
    pub fn functions_of(&self, image: &str) -> Result<Vec<String>, DockerError> {
        let info = self.block_on(self.client.inspect_image(image)).map_err(|e| {
            if not_found(&e) {
                DockerError::NoImage {
                    image: image.to_owned(),
                }
            } else {
                DockerError::api(format!("cannot inspect image `{image}`"), e)
            }
        })?;
        let id = info.id.clone().unwrap_or_else(|| image.to_owned());
        if let Some(f) = self.functions.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
            return Ok(f.clone());
        }
        let label = info
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(FUNCTIONS_LABEL))
            .cloned();
        let functions: Vec<String> = match label {
            Some(l) => l
                .split(',')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(str::to_owned)
                .collect(),
            None => self.list_by_running(&ContainerRun::image(image))?,
        };
        self.functions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, functions.clone());
        Ok(functions)
    }

    /// Runs `IMAGE [ARGS…] --list` in a container (as locked down as an instance's, with the
    /// same mounts) and reads its output.
    pub fn list_by_running(&self, run: &ContainerRun) -> Result<Vec<String>, DockerError> {
        let image = run.image.as_str();
        let spec = ContainerSpec {
            image: image.to_owned(),
            memory_bytes: 256 << 20,
            cpu_millis: 1000,
            network: false,
            args: run.args.clone(),
            mounts: run.mounts.clone(),
        };
        let mut body = self.body(&spec, u32::MAX, None);
        let mut cmd = run.args.clone();
        cmd.push("--list".into());
        body.cmd = Some(cmd);
        let id = self.create(body)?;
        let result = (|| {
            self.block_on(self.client.start_container(&id, None))
                .map_err(|e| DockerError::api(format!("cannot start `{image} --list`"), e))?;
            let code = self.wait(&id);
            let out = self.logs(&id, false);
            if code != Some(0) {
                return Err(DockerError::ListFailed {
                    image: image.to_owned(),
                    code: code.map_or("unknown".into(), |c| c.to_string()),
                    stderr: self.logs(&id, true).trim().to_owned(),
                });
            }
            Ok(out
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect())
        })();
        let _ = self.remove(&id);
        result
    }

    fn body(&self, spec: &ContainerSpec, instance: u32, socket: Option<&Path>) -> ContainerCreateBody {
        let labels = HashMap::from([
            (OWNER_LABEL.to_owned(), self.settings.owner.clone()),
            ("faasflow.instance".to_owned(), instance.to_string()),
        ]);
        let memory = i64::try_from(spec.memory_bytes).unwrap_or(i64::MAX);
        ContainerCreateBody {
            image: Some(spec.image.clone()),
            env: socket.map(|_| vec![format!("{}={SOCKET_IN_CONTAINER}", handshake::INSTANCE_SOCKET_ENV)]),
            user: Some(USER.into()),
            labels: Some(labels),
            cmd: (!spec.args.is_empty()).then(|| spec.args.clone()),
            host_config: Some(HostConfig {
                binds: Some(
                    socket
                        .map(|s| format!("{}:{SOCKET_IN_CONTAINER}", s.display()))
                        .into_iter()
                        .chain(spec.mounts.iter().map(|m| format!("{0}:{0}:ro", m.display())))
                        .collect(),
                ),
                memory: Some(memory),
                memory_swap: Some(memory),
                nano_cpus: Some(i64::try_from(spec.cpu_millis.saturating_mul(1_000_000)).unwrap_or(i64::MAX)),
                network_mode: Some(if spec.network { "bridge" } else { "none" }.into()),
                readonly_rootfs: Some(true),
                cap_drop: Some(vec!["ALL".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn create(&self, body: ContainerCreateBody) -> Result<String, DockerError> {
        let image = body.image.clone().unwrap_or_default();
        let created = self
            .block_on(
                self.client
                    .create_container(Some(CreateContainerOptionsBuilder::new().build()), body),
            )
            .map_err(|e| {
                if not_found(&e) {
                    DockerError::NoImage { image: image.clone() }
                } else {
                    DockerError::api(format!("cannot create a container of `{image}`"), e)
                }
            })?;
        Ok(created.id)
    }

    /// Waits until container `id` has stopped; its exit status, when Docker says.
    fn wait(&self, id: &str) -> Option<i64> {
        let opts = WaitContainerOptionsBuilder::new().condition("not-running").build();
        let mut stream = self.client.wait_container(id, Some(opts));
        match self.block_on(stream.next()) {
            Some(Ok(r)) => Some(r.status_code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Some(code),
            _ => None,
        }
    }

    /// Follows what container `id` writes to stderr, from its start: a pipe that reads it and
    /// ends when the container stops (or is removed).
    pub(crate) fn follow_stderr(self: &Arc<Self>, id: &str) -> io::Result<io::PipeReader> {
        let (reader, mut writer) = io::pipe()?;
        let docker = self.clone();
        let id = id.to_owned();
        crate::threads::spawn(format!("faasflow-logs-{}", short(&id)), move || {
            let opts = LogsOptionsBuilder::new()
                .stdout(false)
                .stderr(true)
                .follow(true)
                .build();
            let mut stream = docker.client.logs(&id, Some(opts));
            while let Some(Ok(chunk)) = docker.block_on(stream.next()) {
                if io::Write::write_all(&mut writer, &chunk.into_bytes()).is_err() {
                    break;
                }
            }
        })?;
        Ok(reader)
    }

    /// The last lines the container wrote to stderr (`stderr`) or all of its stdout.
    fn logs(&self, id: &str, stderr: bool) -> String {
        let opts = LogsOptionsBuilder::new()
            .stdout(!stderr)
            .stderr(stderr)
            .tail(if stderr { "20" } else { "all" })
            .build();
        let stream = self.client.logs(id, Some(opts));
        let chunks: Vec<_> = self.block_on(stream.collect());
        let mut out = Vec::new();
        for c in chunks.into_iter().flatten() {
            out.extend_from_slice(&c.into_bytes());
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Starts a container for instance `instance` and waits (at most `timeout`) for its pack
    /// to connect; the container is removed again if anything fails.
    pub fn start(&self, instance: u32, spec: &ContainerSpec, timeout: Duration) -> Result<Started, DockerError> {
        let deadline = Instant::now() + timeout;
        let path = self.settings.dir.join(format!("instance-{instance}.sock"));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .map_err(|e| DockerError::Socket(format!("cannot listen on {}: {e}", path.display())))?;
        // The container's user (65534) must be able to connect; on the host, the directory
        // (mode 0700) keeps everyone else out.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
            .map_err(|e| DockerError::Socket(format!("cannot open {} to the container's user: {e}", path.display())))?;
        let id = match self.create(self.body(spec, instance, Some(&path))) {
            Ok(id) => id,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        let result = self.connect_to(&id, spec, &listener, deadline);
        let _ = std::fs::remove_file(&path);
        if result.is_err() {
            let _ = self.remove(&id);
        }
        result
    }

    fn connect_to(
        &self,
        id: &str,
        spec: &ContainerSpec,
        listener: &UnixListener,
        deadline: Instant,
    ) -> Result<Started, DockerError> {
        let image = &spec.image;
        self.block_on(self.client.start_container(id, None))
            .map_err(|e| DockerError::api(format!("cannot start a container of `{image}`"), e))?;
        let info = self
            .block_on(self.client.inspect_container(id, None))
            .map_err(|e| DockerError::api(format!("cannot inspect container {}", short(id)), e))?;
        let pid = info
            .state
            .as_ref()
            .and_then(|s| s.pid)
            .and_then(|p| u32::try_from(p).ok())
            .filter(|&p| p > 0);
        let pidfd = match pid.map(handshake::pidfd) {
            Some(Ok(fd)) => fd,
            // No process (it already ended), or it ended before we opened the pidfd.
            _ => return Err(self.early_exit(id, image)),
        };
        let pid = pid.unwrap_or_default();
        let socket = |e: io::Error| DockerError::Socket(format!("socket: {e}"));
        listener.set_nonblocking(true).map_err(socket)?;
        loop {
            match listener.accept() {
                Ok((sock, _)) => {
                    sock.set_nonblocking(false).map_err(socket)?;
                    return Ok(Started {
                        id: id.to_owned(),
                        sock,
                        pid,
                        pidfd,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    return Err(DockerError::Socket(format!(
                        "cannot accept the container's connection: {e}"
                    )));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(DockerError::NoConnection { image: image.clone() });
            }
            match handshake::wait_readable_for(listener.as_fd(), pidfd.as_fd(), Some(left)) {
                Ok((_, true)) => return Err(self.early_exit(id, image)),
                Ok(_) => {}
                Err(e) => return Err(socket(e)),
            }
        }
    }

    fn early_exit(&self, id: &str, image: &str) -> DockerError {
        let how = self.ended(id);
        let stderr = self.logs(id, true).trim().to_owned();
        DockerError::Exited {
            id: id.to_owned(),
            image: image.to_owned(),
            how,
            stderr,
        }
    }

    /// How container `id` ended ("exited with status 3", "was killed by the kernel for
    /// running out of memory (limit 64 MiB)"), once Docker has seen it stop.
    pub fn ended(&self, id: &str) -> String {
        let code = self.wait(id);
        let info = self.block_on(self.client.inspect_container(id, None)).ok();
        let state = info.as_ref().and_then(|i| i.state.as_ref());
        let code = state.and_then(|s| s.exit_code).or(code);
        let limit = info
            .as_ref()
            .and_then(|i| i.host_config.as_ref())
            .and_then(|h| h.memory)
            .filter(|&m| m > 0);
        if state.and_then(|s| s.oom_killed) == Some(true) {
            return format!(
                "was killed for running out of memory (OOM; its container's limit is {}){}",
                limit.map_or("unknown".into(), |m| format!("{} MiB", m >> 20)),
                code.map(|c| format!(", exit status {c}")).unwrap_or_default()
            );
        }
        match code {
            Some(137) => "was killed (SIGKILL, exit status 137)".into(),
            Some(c) => format!("exited with status {c}"),
            None => "ended (Docker did not say how)".into(),
        }
    }
}

/// The first 12 characters of a container id, as `docker ps` shows them.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
