//! The driver of the daemon's slow storage: the remote tier (Redis) and the spill directory's
//! files. The loop never waits on either: it hands an operation to [`RemoteIo`] with a token
//! and goes on; the operation runs elsewhere and its result comes back to the loop's inbox as
//! a [`RemoteEvent`] carrying the token. File operations run in order on a thread of their own
//! (one wake-up each way, as the loop did them in order before); Redis operations on a tokio
//! runtime with one worker thread (a file read or written for Redis on its blocking pool). Arena bytes are read and written in place through the
//! segment's memory file; the loop keeps their extent allocated until the event has come.
//!
//! Deleting a key or a file is fire-and-forget: a failure is logged (a key expires on its
//! own, a file goes with the spill directory).

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use faasflow_remote::{ObjectKey, RemoteError, RemoteStore};
use faasflow_shm::Region;

use crate::threads;

/// How long the daemon waits for Redis at start.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Bytes copied at once between a file and the arena.
const CHUNK: usize = 1 << 20;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum RemoteIoError {
    /// The daemon has no remote tier.
    #[error("this daemon has no remote tier")]
    NoStore,
    /// A key that should be in the remote tier is not.
    #[error("`{0}` is not there")]
    Missing(String),
    /// The remote tier failed.
    #[error("{0}")]
    Store(#[from] RemoteError),
    /// A spill file could not be read or written.
    #[error("spill file {}: {cause}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        cause: std::io::Error,
    },
    /// The bytes found are not as many as expected.
    #[error("it holds {found} bytes, {expected} were expected")]
    Size {
        /// Bytes found.
        found: u64,
        /// Bytes expected.
        expected: u64,
    },
    /// An arena extent lies outside its segment's memory file.
    #[error("the object lies outside the arena")]
    OutsideArena,
    /// The driver's threads could not start.
    #[error("cannot start the storage threads: {0}")]
    Threads(std::io::Error),
    /// The operation's thread ended before it did (the daemon is stopping).
    #[error("the operation was interrupted: {0}")]
    Interrupted(String),
}

/// Where bytes are read from.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// An arena extent: its segment's memory file and the extent's place there.
    Arena { region: Arc<Region>, offset: u64, len: u64 },
    /// A spill file.
    File(PathBuf),
    /// A key of the remote tier.
    Key(ObjectKey),
    /// Bytes in memory.
    Bytes(bytes::Bytes),
}

/// Where bytes are written.
#[derive(Debug, Clone)]
pub(crate) enum Dest {
    /// A spill file (created or truncated).
    File(PathBuf),
    /// A key of the remote tier.
    Key(ObjectKey),
}

/// An arena extent bytes are loaded into.
#[derive(Debug, Clone)]
pub(crate) struct InArena {
    pub(crate) region: Arc<Region>,
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

/// What the driver tells the loop: the operation `token` ended, after `us` µs.
#[derive(Debug)]
pub(crate) struct RemoteEvent {
    pub(crate) token: u64,
    pub(crate) result: Done,
    pub(crate) us: f64,
}

/// How an operation ended.
#[derive(Debug)]
pub(crate) enum Done {
    /// A write, a load or a batch of writes.
    Stored(Result<(), RemoteIoError>),
    /// A read: the bytes.
    Read(Result<Vec<u8>, RemoteIoError>),
    /// One write of a batch failed: its destination key, and why.
    Batch(Result<(), (ObjectKey, RemoteIoError)>),
}

type Post = Arc<dyn Fn(RemoteEvent) + Send + Sync>;

/// The driver: its runtime, the remote tier if the daemon has one, and where events go.
pub(crate) struct RemoteIo {
    rt: tokio::runtime::Runtime,
    store: Option<Arc<RemoteStore>>,
    post: Post,
    /// The file thread's queue.
    files: std::sync::mpsc::Sender<FileJob>,
}

/// How long the file thread, told a job comes soon, waits for it before it parks.
const EXPECT_WAIT: Duration = Duration::from_micros(300);

/// Work for the file thread.
type FileJob = Box<dyn FnOnce(&mut Ahead) + Send>;

/// Spill files the file thread created ahead of their writes ([`RemoteIo::create_ahead`]),
/// open: creating a file costs a small spill more than writing it (31 µs against 9 µs for
/// 1 KiB here), and a spill is on its consumer's path.
#[derive(Default)]
pub(crate) struct Ahead {
    files: std::collections::HashMap<PathBuf, std::fs::File>,
    /// A job comes soon ([`RemoteIo::expect_file_work`]).
    expecting: bool,
}

impl Ahead {
    /// The file created ahead at `path`, if it is still there (nothing removed it meanwhile).
    fn take(&mut self, path: &std::path::Path) -> Option<std::fs::File> {
        use std::os::unix::fs::MetadataExt as _;
        let f = self.files.remove(path)?;
        f.metadata().is_ok_and(|m| m.nlink() > 0).then_some(f)
    }
}

impl RemoteIo {
    /// Starts the driver, connected to the remote tier at `redis` when one is given and
    /// reachable (when it is not, says so once and goes on without it).
    pub(crate) fn start(redis: Option<&str>, post: Post) -> Result<RemoteIo, RemoteIoError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("faasflow-remote")
            .enable_all()
            .build()
            .map_err(RemoteIoError::Threads)?;
        let store = redis.and_then(|url| match rt.block_on(RemoteStore::connect(url, CONNECT_TIMEOUT)) {
            Ok(store) => Some(Arc::new(store)),
            Err(e) => {
                tracing::warn!(
                    cause = %e,
                    "no remote tier: functions cannot run for a MasterSP plan, WorkerSP plans use peer \
                     transfers and the local spill directory"
                );
                None
            }
        });
        let (files, jobs) = std::sync::mpsc::channel::<FileJob>();
        threads::spawn("faasflow-spill", move || file_thread(&jobs)).map_err(RemoteIoError::Threads)?;
        Ok(RemoteIo { rt, store, post, files })
    }

    /// Runs `op` on the file thread, then posts its result as `token`'s.
    fn on_file_thread(&self, token: u64, op: impl FnOnce(&mut Ahead) -> Done + Send + 'static) {
        let post = self.post.clone();
        let job: FileJob = Box::new(move |ahead| {
            let t = Instant::now();
            let result = op(ahead);
            post(RemoteEvent {
                token,
                result,
                us: t.elapsed().as_secs_f64() * 1e6,
            });
        });
        if let Err(std::sync::mpsc::SendError(job)) = self.files.send(job) {
            // The file thread is gone (it cannot be: it ends with this sender): run it here.
            job(&mut Ahead::default());
        }
    }

    /// Whether the daemon has a remote tier.
    pub(crate) fn has_store(&self) -> bool {
        self.store.is_some()
    }

    /// Runs `op`, then posts its result as `token`'s.
    fn run<F>(&self, token: u64, op: F)
    where
        F: std::future::Future<Output = Done> + Send + 'static,
    {
        let post = self.post.clone();
        threads::spawn_task(self.rt.handle(), async move {
            let t = Instant::now();
            let result = op.await;
            post(RemoteEvent {
                token,
                result,
                us: t.elapsed().as_secs_f64() * 1e6,
            });
        });
    }

    /// Writes the bytes of `from` to `to` ([`Done::Stored`]).
    pub(crate) fn write(&self, token: u64, from: Source, to: Dest) {
        if let (Dest::File(path), Source::Arena { .. } | Source::Bytes(_) | Source::File(_)) = (&to, &from) {
            let path = path.clone();
            return self.on_file_thread(token, move |ahead| {
                Done::Stored(write_file(&path, from, ahead.take(&path)))
            });
        }
        let store = self.store.clone();
        self.run(
            token,
            async move { Done::Stored(write(store.as_deref(), from, to).await) },
        );
    }

    /// Reads `from`, which must hold exactly `into.len` bytes, into an arena extent
    /// ([`Done::Stored`]).
    pub(crate) fn load(&self, token: u64, from: Source, into: InArena) {
        if let Source::File(path) = from {
            return self.on_file_thread(token, move |_| Done::Stored(load_file(&path, &into)));
        }
        let store = self.store.clone();
        self.run(
            token,
            async move { Done::Stored(load(store.as_deref(), from, into).await) },
        );
    }

    /// Reads the bytes of `from` ([`Done::Read`]).
    pub(crate) fn fetch(&self, token: u64, from: Source) {
        if let Source::File(path) = from {
            return self.on_file_thread(token, move |_| {
                Done::Read(std::fs::read(&path).map_err(file_error(&path)))
            });
        }
        let store = self.store.clone();
        self.run(token, async move { Done::Read(read(store.as_deref(), from).await) });
    }

    /// Writes each source to its key, in order, stopping at the first failure
    /// ([`Done::Batch`]).
    pub(crate) fn write_all(&self, token: u64, writes: Vec<(ObjectKey, Source)>) {
        let store = self.store.clone();
        self.run(token, async move {
            for (key, from) in writes {
                if let Err(e) = write(store.as_deref(), from, Dest::Key(key.clone())).await {
                    return Done::Batch(Err((key, e)));
                }
            }
            Done::Batch(Ok(()))
        });
    }

    /// Deletes a key of the remote tier, in the background.
    pub(crate) fn delete(&self, key: ObjectKey) {
        let Some(store) = self.store.clone() else { return };
        threads::spawn_task(self.rt.handle(), async move {
            if let Err(e) = store.delete(&key).await {
                tracing::warn!(cause = %e, "cannot delete a key of the remote tier (the key expires on its own)");
            }
        });
    }

    /// Creates the (empty) spill file `path` ahead of its write, in the background: the
    /// write then only fills it. Nothing is said when it cannot be: the write creates it, and
    /// says why it cannot.
    pub(crate) fn create_ahead(&self, path: PathBuf) {
        let _ = self.files.send(Box::new(move |ahead| {
            if let Ok(f) = std::fs::File::create_new(&path) {
                ahead.files.insert(path, f);
            }
        }));
    }

    /// Wakes the file thread ahead of a job that comes soon (a spill of a call's outputs):
    /// it waits for it a little, yielding, rather than park.
    pub(crate) fn expect_file_work(&self) {
        let _ = self.files.send(Box::new(|ahead| ahead.expecting = true));
    }

    /// Removes a spill file, in the background.
    pub(crate) fn remove_file(&self, path: PathBuf) {
        let _ = self.files.send(Box::new(move |_| {
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), cause = %e, "cannot remove a spill file");
            }
        }));
    }
}

/// The file thread: runs jobs in order until the driver is dropped, keeping the files it
/// creates ahead. It parks between jobs (spinning for the next one was measured slower on 2
/// cores, where the spin takes the core the consumer's instance wakes on), except when told a
/// job comes soon ([`RemoteIo::expect_file_work`]: the loop sent a call whose outputs will
/// spill): then it waits up to [`EXPECT_WAIT`] for it, yielding its core, so that the spill
/// does not wait for a parked thread to wake (a 1 KiB spill hand-off: 78–129 µs against
/// 134–177 µs, `faasflow run` at quota 0, 2 vCPUs).
fn file_thread(jobs: &std::sync::mpsc::Receiver<FileJob>) {
    let mut ahead = Ahead::default();
    while let Ok(job) = jobs.recv() {
        job(&mut ahead);
        if std::mem::take(&mut ahead.expecting) {
            let until = Instant::now() + EXPECT_WAIT;
            while Instant::now() < until {
                match jobs.try_recv() {
                    Ok(job) => {
                        job(&mut ahead);
                        break;
                    }
                    Err(std::sync::mpsc::TryRecvError::Empty) => std::thread::yield_now(),
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
                }
            }
        }
    }
}

/// Runs blocking file work on the runtime's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RemoteIoError> + Send + 'static,
) -> Result<T, RemoteIoError> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _entered = span.entered();
        f()
    })
    .await
    .map_err(|e| RemoteIoError::Interrupted(e.to_string()))?
}

fn file_error(path: &std::path::Path) -> impl Fn(std::io::Error) -> RemoteIoError + '_ {
    move |cause| RemoteIoError::File {
        path: path.to_owned(),
        cause,
    }
}

async fn read(store: Option<&RemoteStore>, from: Source) -> Result<Vec<u8>, RemoteIoError> {
    match from {
        Source::Arena { region, offset, len } => {
            let mut v = vec![0; len as usize];
            if region.copy_out(offset, &mut v) {
                Ok(v)
            } else {
                Err(RemoteIoError::OutsideArena)
            }
        }
        Source::File(path) => blocking(move || std::fs::read(&path).map_err(file_error(&path))).await,
        Source::Key(key) => {
            let store = store.ok_or(RemoteIoError::NoStore)?;
            store
                .get(&key)
                .await?
                .ok_or_else(|| RemoteIoError::Missing(key.redis_key()))
        }
        Source::Bytes(b) => Ok(b.to_vec()),
    }
}

async fn write(store: Option<&RemoteStore>, from: Source, to: Dest) -> Result<(), RemoteIoError> {
    match to {
        Dest::Key(key) => {
            let store = store.ok_or(RemoteIoError::NoStore)?;
            let bytes = match from {
                Source::Bytes(b) => b,
                from => read(Some(store), from).await?.into(),
            };
            Ok(store.put(&key, &bytes).await?)
        }
        Dest::File(path) => {
            let from = match from {
                Source::Key(key) => Source::Bytes(read(store, Source::Key(key)).await?.into()),
                from => from,
            };
            blocking(move || write_file(&path, from, None)).await
        }
    }
}

/// Writes a file from the arena (in chunks), another file or memory; into `ahead` when the
/// file was created ahead (empty), else a file it creates.
fn write_file(path: &std::path::Path, from: Source, ahead: Option<std::fs::File>) -> Result<(), RemoteIoError> {
    let err = file_error(path);
    let mut f = match ahead {
        Some(f) => f,
        None => std::fs::File::create(path).map_err(&err)?,
    };
    match from {
        Source::Arena { region, offset, len } => {
            let mut buf = vec![0u8; CHUNK.min(len as usize)];
            let mut at = 0u64;
            while at < len {
                let n = ((len - at) as usize).min(buf.len());
                if !region.copy_out(offset + at, &mut buf[..n]) {
                    return Err(RemoteIoError::OutsideArena);
                }
                f.write_all(&buf[..n]).map_err(&err)?;
                at += n as u64;
            }
        }
        Source::File(src) => {
            let mut s = std::fs::File::open(&src).map_err(file_error(&src))?;
            std::io::copy(&mut s, &mut f).map_err(&err)?;
        }
        Source::Bytes(b) => f.write_all(&b).map_err(&err)?,
        // [`write`] reads a key before it writes a file.
        Source::Key(key) => return Err(RemoteIoError::Missing(key.redis_key())),
    }
    Ok(())
}

async fn load(store: Option<&RemoteStore>, from: Source, into: InArena) -> Result<(), RemoteIoError> {
    match from {
        Source::File(path) => blocking(move || load_file(&path, &into)).await,
        from => {
            let bytes = read(store, from).await?;
            if bytes.len() as u64 != into.len {
                return Err(RemoteIoError::Size {
                    found: bytes.len() as u64,
                    expected: into.len,
                });
            }
            if into.region.copy_in(into.offset, &bytes) {
                Ok(())
            } else {
                Err(RemoteIoError::OutsideArena)
            }
        }
    }
}

/// Reads `into.len` bytes of a file into the arena, in chunks.
fn load_file(path: &std::path::Path, into: &InArena) -> Result<(), RemoteIoError> {
    let err = file_error(path);
    let mut f = std::fs::File::open(path).map_err(&err)?;
    let mut buf = vec![0u8; CHUNK.min(into.len as usize)];
    let mut at = 0u64;
    while at < into.len {
        let n = ((into.len - at) as usize).min(buf.len());
        f.read_exact(&mut buf[..n]).map_err(&err)?;
        if !into.region.copy_in(into.offset + at, &buf[..n]) {
            return Err(RemoteIoError::OutsideArena);
        }
        at += n as u64;
    }
    Ok(())
}
