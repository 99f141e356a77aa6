//! The pack runtime: the instance side of the daemon protocol ([`faasflow_shm`]).
//!
//! # Threads: leader/follower
//! An instance runs up to `Welcome::threads` calls at once. One thread at a time is the
//! *leader*: it pops frames from the daemon's ring (spinning up to 50 µs, then parked on the
//! ring's futex). When it pops an `Invoke` it gives up leadership (an idle thread takes it
//! over; a new thread is started if none is idle and fewer than `threads` exist) and runs the
//! call itself, so a call is run by the thread that popped it, with no hand-off between
//! threads. It then pushes the `Complete`, rings the daemon's doorbell, and competes for
//! leadership again.
//!
//! A call that asks for room (`Alloc`) waits for its `Grant`, which arrives on the same ring.
//! If no thread leads (all others are busy running functions), the waiting thread leads
//! itself: it hands grants to their waiting calls and queues any `Invoke` it pops in a pending
//! queue, which threads take before touching the ring. So an instance never deadlocks on a
//! grant, whatever its number of threads.
//!
//! # Calls that follow calls
//! An `Invoke` with `after` set names the call it follows: when that call succeeds, the thread
//! that ran it pushes its `Complete` and runs the follower at once, its `Prior` inputs bound to
//! the outputs just written, with no frame from the daemon in between (the daemon learns it
//! started from the `Complete`). A follower that arrives after its call ended runs at once
//! when the instance still knows that call's outputs ([`RECENT`] calls back), and is answered
//! `Declined` otherwise; one whose call failed is answered `Declined` too.
//!
//! Leadership is a flag under the state mutex (not a lock on the ring) so that idle threads
//! can be woken for pending calls as well as for leadership; the ring's consumer is behind its
//! own mutex, which only the leader takes.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use faasflow_shm::doorbell::DoorbellError;
use faasflow_shm::frame::{Alloc, Complete, Frame, Invoke, MAX_TEXT, ObjectRef, Status, Value, monotonic_ns};
use faasflow_shm::handshake::{HandshakeError, Hello, PROTOCOL_VERSION, Welcome};
use faasflow_shm::ring::{AttachError, PushError};
use faasflow_shm::{Consumer, Doorbell, Producer, Region, Ring};

use crate::context::{AllocError, Arena, CallSpec, Grants, SendError};
use crate::log;
use crate::{Context, Pack};

/// The exit status of an instance that ended itself after a call it could not end cleanly
/// ([`Context::abandon_instance`]).
pub(crate) const ABANDONED: i32 = 70;

/// How often a waiting leader or producer checks whether the instance is stopping.
const POLL: Duration = Duration::from_millis(200);

/// A function whose calls take less than this on average (once measured) runs on the leader
/// thread without handing leadership over; frames that arrive meanwhile wait at most about
/// this long. Longer or not yet measured functions hand leadership to another thread first.
const SHORT: Duration = Duration::from_micros(50);

/// How long a leader spins before parking when calls have been coming in quick succession.
/// When they have not, it spins only [`COLD_SPIN`]: on 2 cores, an instance that spins in vain
/// takes the core that the instance of the next call (another process) needs to wake up on;
/// measured with the data-plane bench, a 200 µs spin makes a cross-process edge 5× slower.
const HOT_SPIN: Duration = Duration::from_micros(50);
/// How long a leader spins before parking otherwise.
const COLD_SPIN: Duration = Duration::from_micros(5);
/// A call of function `f` counts as *followed* when the next frame came within this after it
/// ended (parking and waking included); the wait after a call of a followed function spins
/// [`HOT_SPIN`]. This learns, per function, whether its successors run in this instance.
const FOLLOW_WINDOW: Duration = Duration::from_micros(200);

/// How many ended calls' outputs the instance remembers for followers that arrive late.
const RECENT: usize = 64;

thread_local! {
    /// This thread leads and runs a short call inline (see [`Led::RunInline`]).
    static INLINE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Why an instance stopped serving.
///
/// ```
/// use std::os::unix::net::UnixStream;
///
/// // A daemon that hangs up before the handshake: the instance stops with a handshake error.
/// let (daemon, instance) = UnixStream::pair()?;
/// drop(daemon);
/// let pack = faasflow_sdk::Pack::new("p").function("f", |_ctx| Ok(()));
/// let err = faasflow_sdk::serve_on(pack, instance).unwrap_err();
/// assert!(matches!(err, faasflow_sdk::ServeError::Handshake(_)), "{err}");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The handshake with the daemon failed.
    #[error("handshake with the daemon: {0}")]
    Handshake(#[from] HandshakeError),
    /// A memory file from the daemon could not be mapped.
    #[error("cannot map the daemon's {what}: {source}")]
    Map {
        /// `arena` or `rings`.
        what: &'static str,
        /// Why.
        source: io::Error,
    },
    /// A ring named in the welcome is not usable.
    #[error("the daemon's {what} ring: {source}")]
    Ring {
        /// Which ring.
        what: &'static str,
        /// Why.
        source: AttachError,
    },
    /// The doorbell named in the welcome is not usable.
    #[error("the daemon's doorbell: {0}")]
    Doorbell(#[from] DoorbellError),
    /// The daemon broke the protocol (a bad frame, an unexpected grant, a corrupt ring).
    #[error("protocol violation by the daemon: {0}")]
    Protocol(String),
    /// No thread could be started.
    #[error("cannot start a thread: {0}")]
    Thread(io::Error),
}

/// Serves `pack` on `sock`, the instance's end of the handshake socket: the handshake, then
/// calls until the daemon closes the socket (`Ok`) or breaks the protocol. Returns as soon as
/// the socket closes; calls still running are abandoned (the process is expected to exit).
#[doc(hidden)]
pub fn serve_on(pack: Pack, mut sock: UnixStream) -> Result<(), ServeError> {
    Hello {
        version: PROTOCOL_VERSION,
        pack: pack.name().to_owned(),
        pid: std::process::id(),
        functions: pack.function_names().map(str::to_owned).collect(),
    }
    .send(&mut sock)?;
    log::tie_panics_to_calls();
    let (welcome, files) = Welcome::recv(&mut sock)?;
    // The arena segment of this instance's workflow is sparse: mapped eagerly only where the
    // daemon says its pages are (mapping all of it eagerly would allocate all of it).
    let arena = Arc::new(Region::open_sparse(files.arena).map_err(|source| ServeError::Map { what: "arena", source })?);
    arena
        .prefault(welcome.prefault)
        .map_err(|source| ServeError::Map { what: "arena", source })?;
    let rings = Arc::new(Region::open(files.rings).map_err(|source| ServeError::Map { what: "rings", source })?);
    let bell = Arc::new(Region::open(files.bell).map_err(|source| ServeError::Map {
        what: "doorbell",
        source,
    })?);
    let ring = |what, offset: u64| {
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        Ring::attach(&rings, offset).map_err(|source| ServeError::Ring { what, source })
    };
    let consumer = ring("invocation", welcome.to_instance)?.into_consumer();
    let producer = ring("completion", welcome.to_daemon)?.into_producer();
    let doorbell = Doorbell::attach(&bell, usize::try_from(welcome.doorbell).unwrap_or(usize::MAX))?;
    let functions = pack.len();
    // Mapped (and pre-faulted) and attached: calls may come.
    faasflow_shm::handshake::send_ready(&mut sock)?;
    let runtime = Arc::new(Runtime {
        arena: Arena::new(arena, welcome.segment),
        pack,
        consumer: Mutex::new(Reader {
            buf: vec![0; consumer.max_frame_len()],
            consumer,
            hot: false,
        }),
        producer: Mutex::new(Writer {
            buf: Vec::new(),
            producer,
        }),
        doorbell,
        state: Mutex::new(State::default()),
        idle_cv: Condvar::new(),
        grant_cv: Condvar::new(),
        max_threads: welcome.threads.max(1) as usize,
        stopping: AtomicBool::new(false),
        sock: sock.try_clone().map_err(|e| ServeError::Handshake(e.into()))?,
        followed: (0..functions).map(|_| AtomicBool::new(false)).collect(),
        last_done: std::sync::atomic::AtomicU32::new(u32::MAX),
        exec_avg: (0..functions)
            .map(|_| std::sync::atomic::AtomicU64::new(u64::MAX))
            .collect(),
    });
    {
        let mut st = runtime.lock();
        runtime.spawn(&mut st).map_err(ServeError::Thread)?;
    }
    // The socket carries nothing more; its end-of-file says the daemon is gone (or, after a
    // protocol violation, that this instance shut it down).
    let mut byte = [0u8; 64];
    loop {
        match sock.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    runtime.stop();
    match runtime.lock().fatal.take() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

struct Reader {
    consumer: Consumer,
    buf: Vec<u8>,
    /// The last wait ended within [`HOT_SPIN`]: calls come in quick succession (a chain through
    /// this instance), so the next wait spins long before parking.
    hot: bool,
}

struct Writer {
    producer: Producer,
    buf: Vec<u8>,
}

#[derive(Default)]
struct State {
    /// Whether some thread leads (pops the ring).
    leader: bool,
    /// Invocations popped by a thread that was waiting for a grant, not yet started.
    pending: VecDeque<Invoke>,
    /// Calls waiting for a grant, and the grant once it arrived.
    grants: HashMap<u64, Option<Result<ObjectRef, AllocError>>>,
    /// Threads started and not finished.
    threads: usize,
    /// Threads waiting for work or leadership on `idle_cv`.
    idle: usize,
    /// Threads waiting for a grant on `grant_cv`.
    waiting: usize,
    stop: bool,
    fatal: Option<ServeError>,
    /// Calls popped and not ended, with the call to run after each (if one came).
    running: HashMap<u64, Option<Invoke>>,
    /// Outputs of calls that ended well (every output reserved for them written), for
    /// followers that arrive after them; the last [`RECENT`].
    recent: HashMap<u64, Vec<(String, ObjectRef)>>,
    recent_order: VecDeque<u64>,
}

struct Runtime {
    pack: Pack,
    arena: Arena,
    consumer: Mutex<Reader>,
    producer: Mutex<Writer>,
    doorbell: Doorbell,
    state: Mutex<State>,
    idle_cv: Condvar,
    grant_cv: Condvar,
    max_threads: usize,
    stopping: AtomicBool,
    sock: UnixStream,
    /// Moving average of each function's run time, ns (`u64::MAX`: not measured yet).
    exec_avg: Vec<std::sync::atomic::AtomicU64>,
    /// Per function: its last call was followed by a frame within [`FOLLOW_WINDOW`].
    followed: Vec<AtomicBool>,
    /// The function whose call ended last (`u32::MAX`: none since the last wait).
    last_done: std::sync::atomic::AtomicU32,
}

/// How a stint as leader ended.
enum Led {
    /// An invocation to run (leadership was given up).
    Run(Invoke),
    /// An invocation of a function that usually returns within [`SHORT`]: run it on this
    /// thread while keeping leadership, so that a chain of short calls needs no thread wake-up.
    RunInline(Invoke),
    /// The grant the leader was waiting for.
    Granted(Result<ObjectRef, AllocError>),
    /// The instance is stopping.
    Stop,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking function never holds these locks (functions run outside them), so poison
    // can only come from a bug here; the data is still consistent enough to shut down.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Runtime {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn spawn(self: &Arc<Self>, st: &mut State) -> io::Result<()> {
        let me = self.clone();
        st.threads += 1;
        let spawned = std::thread::Builder::new()
            .name(format!("{}-{}", self.pack.name(), st.threads))
            .spawn(move || me.work());
        if spawned.is_err() {
            st.threads -= 1;
        }
        spawned.map(drop)
    }

    /// Stops serving: every thread returns once it is done with its call.
    fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        let mut st = self.lock();
        st.stop = true;
        drop(st);
        self.idle_cv.notify_all();
        self.grant_cv.notify_all();
    }

    /// Records a fatal error and stops; shutting the socket down wakes `serve_on` (and tells
    /// the daemon this instance is gone).
    fn fail(&self, e: ServeError) {
        self.lock().fatal.get_or_insert(e);
        self.stop();
        let _ = self.sock.shutdown(Shutdown::Both);
    }

    /// A worker thread: runs pending calls, leads when nobody does, else waits.
    fn work(self: Arc<Self>) {
        let mut st = self.lock();
        loop {
            if st.stop {
                break;
            }
            if let Some(invoke) = st.pending.pop_front() {
                drop(st);
                self.run(invoke);
                st = self.lock();
                continue;
            }
            if !st.leader {
                st.leader = true;
                drop(st);
                loop {
                    match self.lead(None) {
                        Led::RunInline(invoke) => {
                            // Still the leader: run it here, then lead on.
                            INLINE.set(true);
                            self.run(invoke);
                            INLINE.set(false);
                        }
                        Led::Run(invoke) => {
                            self.run(invoke);
                            break;
                        }
                        Led::Granted(_) | Led::Stop => break,
                    }
                }
                st = self.lock();
                continue;
            }
            st.idle += 1;
            st = self.idle_cv.wait(st).unwrap_or_else(|e| e.into_inner());
            st.idle -= 1;
        }
        st.threads -= 1;
    }

    /// Leads (the caller set `leader`) until there is a call to run or, when `waiting` is a
    /// call, until that call's grant arrives; then gives leadership up.
    fn lead(self: &Arc<Self>, waiting: Option<u64>) -> Led {
        let led = {
            let mut reader = lock(&self.consumer);
            self.lead_locked(&mut reader, waiting)
        };
        if let Led::Run(invoke) = &led
            && self.is_short(invoke.function)
            && !self.consumer_ready()
        {
            // Nothing else waits: keep leading, wake nobody.
            let Led::Run(invoke) = led else { unreachable!() };
            return Led::RunInline(invoke);
        }
        let mut st = self.lock();
        st.leader = false;
        if !st.stop {
            if st.idle > 0 {
                self.idle_cv.notify_one();
            } else if st.threads < self.max_threads && !matches!(led, Led::Stop) {
                // The leader goes back to running a call and nobody is idle: grow by one
                // thread to lead.
                if let Err(e) = self.spawn(&mut st) {
                    log::line(None, &format!("{}: cannot start another thread: {e}", self.pack.name()));
                }
            }
            if st.waiting > 0 {
                self.grant_cv.notify_all();
            }
        }
        led
    }

    fn lead_locked(self: &Arc<Self>, reader: &mut Reader, waiting: Option<u64>) -> Led {
        let Reader { consumer, buf, hot } = reader;
        loop {
            if self.stopping.load(Ordering::Acquire) {
                return Led::Stop;
            }
            let last = self.last_done.swap(u32::MAX, Ordering::Relaxed);
            let followed = self.followed.get(last as usize);
            let expected = *hot || followed.is_some_and(|f| f.load(Ordering::Relaxed));
            consumer.set_spin(if expected { HOT_SPIN } else { COLD_SPIN });
            let waited = Instant::now();
            let popped = consumer.pop_wait(buf, Some(POLL));
            let waited = waited.elapsed();
            *hot = waited <= HOT_SPIN;
            if let Some(f) = followed {
                f.store(waited <= FOLLOW_WINDOW, Ordering::Relaxed);
            }
            let n = match popped {
                Ok(None) => continue,
                Ok(Some(n)) => n,
                Err(e) => {
                    self.fail(ServeError::Protocol(format!("the invocation ring: {e}")));
                    return Led::Stop;
                }
            };
            match Frame::decode(&buf[..n]) {
                Ok(Frame::Invoke(invoke)) => {
                    let Some(invoke) = self.arrived(invoke) else { continue };
                    if waiting.is_none() {
                        return Led::Run(invoke);
                    }
                    self.queue(invoke);
                }
                Ok(Frame::Grant(grant)) if Some(grant.call) == waiting => {
                    return Led::Granted(grant.result.map_err(|r| AllocError::Refused(r.0)));
                }
                Ok(Frame::Grant(grant)) => {
                    let mut st = self.lock();
                    match st.grants.get_mut(&grant.call) {
                        Some(slot @ None) => {
                            *slot = Some(grant.result.map_err(|r| AllocError::Refused(r.0)));
                            drop(st);
                            self.grant_cv.notify_all();
                        }
                        _ => {
                            drop(st);
                            self.fail(ServeError::Protocol(format!(
                                "a grant for call {}, which is not waiting for one",
                                grant.call
                            )));
                            return Led::Stop;
                        }
                    }
                }
                Ok(Frame::Complete(c)) => {
                    self.fail(ServeError::Protocol(format!(
                        "a completion (call {}) on the invocation ring",
                        c.call
                    )));
                    return Led::Stop;
                }
                Ok(Frame::Alloc(a)) => {
                    self.fail(ServeError::Protocol(format!(
                        "an allocation request (call {}) on the invocation ring",
                        a.call
                    )));
                    return Led::Stop;
                }
                Err(e) => {
                    self.fail(ServeError::Protocol(format!("an undecodable frame: {e}")));
                    return Led::Stop;
                }
            }
        }
    }

    /// An invocation popped: a call to run now, or `None` when it follows a call still running
    /// (it runs after it) or cannot run (it is declined).
    fn arrived(&self, invoke: Invoke) -> Option<Invoke> {
        let mut st = self.lock();
        if invoke.after == 0 {
            st.running.insert(invoke.call, None);
            return Some(invoke);
        }
        if let Some(slot @ None) = st.running.get_mut(&invoke.after) {
            *slot = Some(invoke);
            return None;
        }
        let bound = st.recent.get(&invoke.after).and_then(|outputs| bind(&invoke, outputs));
        self.start_or_decline(st, invoke.call, bound)
    }

    /// A follower `call`, `bound` to the outputs of the call it follows: registered as
    /// running and returned to run, or (`None`: it cannot run) declined.
    fn start_or_decline(&self, mut st: MutexGuard<'_, State>, call: u64, bound: Option<Invoke>) -> Option<Invoke> {
        match bound {
            Some(bound) => {
                st.running.insert(bound.call, None);
                Some(bound)
            }
            None => {
                drop(st);
                self.decline(call);
                None
            }
        }
    }

    /// Tells the daemon a follower was not run.
    fn decline(&self, call: u64) {
        let declined = Frame::Complete(Complete {
            call,
            status: Status::Declined,
            exec_ns: 0,
            ended_ns: monotonic_ns(),
            message: String::new(),
            outputs: Vec::new(),
        });
        if let Err(why) = self.push(&declined) {
            log::line(
                Some(call),
                &format!("a call to run after another cannot be declined: {why}"),
            );
        }
    }

    /// Call `invoke` succeeded with these outputs, its completion not sent yet: the call that
    /// follows it, if it came, bound to them and registered as running (so that a call sent to
    /// follow *it*, which the daemon may send the moment it reads the completion, finds it).
    fn take_follower(&self, invoke: &Invoke, outputs: &[(String, ObjectRef)]) -> Option<Invoke> {
        let mut st = self.lock();
        let next = st.running.get_mut(&invoke.call)?.take()?;
        let bound = bind(&next, outputs);
        self.start_or_decline(st, next.call, bound)
    }

    /// Call `invoke` ended (`ok`: it succeeded with every output reserved for it written, and
    /// its completion was sent): the call that follows it, bound to its outputs, when one came
    /// since [`take_follower`](Self::take_follower) and may run; remembers its outputs for a
    /// follower still on its way.
    fn ended(&self, invoke: &Invoke, ok: bool, outputs: &[(String, ObjectRef)]) -> Option<Invoke> {
        let mut st = self.lock();
        let next = st.running.remove(&invoke.call).flatten();
        if ok {
            if st.recent_order.len() >= RECENT
                && let Some(old) = st.recent_order.pop_front()
            {
                st.recent.remove(&old);
            }
            st.recent.insert(invoke.call, outputs.to_vec());
            st.recent_order.push_back(invoke.call);
        }
        let next = next?;
        let bound = if ok { bind(&next, outputs) } else { None };
        self.start_or_decline(st, next.call, bound)
    }

    /// Whether calls of function `index` usually return within [`SHORT`].
    fn is_short(&self, index: u32) -> bool {
        self.exec_avg
            .get(index as usize)
            .is_some_and(|a| a.load(Ordering::Relaxed) < SHORT.as_nanos() as u64)
    }

    /// Whether another frame is already waiting in the ring.
    fn consumer_ready(&self) -> bool {
        lock(&self.consumer).consumer.is_ready()
    }

    fn record_exec(&self, index: u32, ns: u64) {
        if let Some(a) = self.exec_avg.get(index as usize) {
            let old = a.load(Ordering::Relaxed);
            let new = if old == u64::MAX { ns } else { (old / 8) * 7 + ns / 8 };
            a.store(new, Ordering::Relaxed);
        }
    }

    /// Queues a call popped by a leader that cannot run it (it waits for a grant).
    fn queue(self: &Arc<Self>, invoke: Invoke) {
        let mut st = self.lock();
        st.pending.push_back(invoke);
        if st.idle > 0 {
            self.idle_cv.notify_one();
        } else if st.threads < self.max_threads
            && let Err(e) = self.spawn(&mut st)
        {
            log::line(None, &format!("{}: cannot start another thread: {e}", self.pack.name()));
        }
    }

    /// Pushes `frame` to the daemon and rings its doorbell. Waits for room while the daemon
    /// is there; fails when it is gone or the frame cannot be sent.
    fn push(&self, frame: &Frame) -> Result<(), SendError> {
        let mut writer = lock(&self.producer);
        let Writer { producer, buf } = &mut *writer;
        buf.clear();
        frame.encode(buf).map_err(|e| SendError::Unsendable(e.to_string()))?;
        loop {
            match producer.push_wait(buf, Some(POLL)) {
                Ok(()) => break,
                Err(PushError::Full) if !self.stopping.load(Ordering::Acquire) => {}
                Err(PushError::Full) => return Err(SendError::Gone),
                Err(e @ PushError::TooLarge { .. }) => return Err(SendError::Unsendable(e.to_string())),
                Err(e) => {
                    drop(writer);
                    self.fail(ServeError::Protocol(format!("the completion ring: {e}")));
                    return Err(SendError::Ring(e.to_string()));
                }
            }
        }
        drop(writer);
        // The daemon parks on its doorbell, not on our ring's futex.
        self.doorbell.ring();
        Ok(())
    }

    /// Runs a call on this thread and reports it, then the calls that follow it.
    fn run(self: &Arc<Self>, invoke: Invoke) {
        let mut next = Some(invoke);
        while let Some(invoke) = next.take() {
            next = self.run_one(invoke);
            if let Some(n) = &next
                && INLINE.get()
                && !self.is_short(n.function)
            {
                // This thread leads: a longer follower goes to another thread.
                let n = next.take().expect("just seen");
                self.queue(n);
            }
        }
    }

    /// Runs one call on this thread and reports it; returns the call that follows it, ready.
    fn run_one(self: &Arc<Self>, invoke: Invoke) -> Option<Invoke> {
        let started = Instant::now();
        let mut complete = Complete {
            call: invoke.call,
            status: Status::Failed,
            exec_ns: 0,
            ended_ns: 0,
            message: String::new(),
            outputs: Vec::new(),
        };
        match self.pack.get(invoke.function) {
            None => {
                complete.message = format!(
                    "protocol violation: function index {}, but pack `{}` has {} functions",
                    invoke.function,
                    self.pack.name(),
                    self.pack.len()
                );
            }
            Some((name, function)) => {
                let spec = CallSpec {
                    function: name,
                    call: invoke.call,
                    params: &invoke.params,
                    inputs: &invoke.inputs,
                    reserved: &invoke.outputs,
                };
                let mut ctx = Context::new(spec, &self.arena, self, started);
                let result = log::in_call(invoke.call, || catch_unwind(AssertUnwindSafe(|| function(&mut ctx))));
                complete.exec_ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                complete.ended_ns = monotonic_ns();
                self.record_exec(invoke.function, complete.exec_ns);
                let finished = ctx.finish();
                match (result, finished.violation) {
                    (_, Some(violation)) => complete.message = violation,
                    (Ok(Ok(())), None) => {
                        complete.status = Status::Ok;
                        complete.outputs = finished.written;
                    }
                    (Ok(Err(e)), None) => complete.message = e.message().to_owned(),
                    (Err(payload), None) => {
                        complete.status = Status::Panicked;
                        complete.message = panic_message(payload.as_ref());
                    }
                }
            }
        }
        if complete.ended_ns == 0 {
            complete.ended_ns = monotonic_ns();
        }
        truncate(&mut complete.message, MAX_TEXT);
        let covered = complete.status == Status::Ok
            && invoke
                .outputs
                .iter()
                .all(|(n, _)| complete.outputs.iter().any(|(o, _)| o == n));
        // Before the completion goes (see `take_follower`).
        let early = if covered {
            self.take_follower(&invoke, &complete.outputs)
        } else {
            None
        };
        let frame = Frame::Complete(complete);
        let pushed = self.push(&frame);
        self.last_done.store(invoke.function, Ordering::Relaxed);
        let Frame::Complete(complete) = frame else { return None };
        let next = match (early, &pushed) {
            (Some(n), Err(_)) => {
                // Its call's success never reached the daemon: it does not run.
                self.lock().running.remove(&n.call);
                self.decline(n.call);
                None
            }
            (early, _) => early,
        };
        let late = self.ended(&invoke, covered && pushed.is_ok(), &complete.outputs);
        let next = next.or(late);
        if let Err(why) = pushed {
            if self.stopping.load(Ordering::Acquire) {
                return next;
            }
            // The completion itself cannot be sent (e.g. too many outputs for the ring): the
            // call fails, and says why.
            let mut failed = Complete {
                status: Status::Failed,
                message: format!("the completion cannot be sent: {why}"),
                outputs: Vec::new(),
                ..complete
            };
            truncate(&mut failed.message, MAX_TEXT);
            if let Err(why) = self.push(&Frame::Complete(failed)) {
                log::line(Some(invoke.call), &format!("the failure cannot be sent either: {why}"));
            }
        }
        next
    }
}

/// `next` with its [`Value::Prior`] inputs bound to `outputs` (`None`: one is not there).
fn bind(next: &Invoke, outputs: &[(String, ObjectRef)]) -> Option<Invoke> {
    let mut bound = next.clone();
    bound.after = 0;
    for (_, v) in &mut bound.inputs {
        if let Value::Prior(name) = v {
            let (_, r) = outputs.iter().find(|(o, _)| o == name)?;
            *v = Value::One(*r);
        }
    }
    Some(bound)
}

impl Grants for Arc<Runtime> {
    fn abandon(&self, call: u64, exec_ns: u64, mut message: String) -> ! {
        truncate(&mut message, MAX_TEXT);
        // The daemon frees the call's memory once it reads the completion, and the process is
        // still running until `_exit`: from here on, any access to the arena from this process
        // (a thread working on a view without the interpreter, say) faults instead of reading
        // memory the daemon has reused.
        // SAFETY: nothing of this process uses the arena after this: the completion goes on the
        // rings (another mapping) and the process ends.
        if let Err(e) = unsafe { self.arena.revoke() } {
            log::line(Some(call), &format!("the arena cannot be made inaccessible: {e}"));
        }
        let failed = Frame::Complete(Complete {
            call,
            status: Status::Failed,
            exec_ns,
            ended_ns: monotonic_ns(),
            message,
            outputs: Vec::new(),
        });
        if let Err(why) = self.push(&failed) {
            log::line(Some(call), &format!("the failure cannot be sent: {why}"));
        }
        // The daemon reads what an instance pushed before it died before it fails the
        // instance's other calls (as crashed).
        // SAFETY: _exit takes an integer and ends the process; nothing runs after it.
        unsafe { libc::_exit(ABANDONED) }
    }

    fn alloc(&self, call: u64, name: &str, len: u64) -> Result<ObjectRef, AllocError> {
        if self.lock().grants.insert(call, None).is_some() {
            return Err(AllocError::AlreadyWaiting(call));
        }
        let asked = Frame::Alloc(Alloc {
            call,
            name: name.to_owned(),
            len,
        });
        if let Err(why) = self.push(&asked) {
            self.lock().grants.remove(&call);
            return Err(why.into());
        }
        if INLINE.get() {
            // This thread leads (it runs a short call inline): read the ring itself.
            let led = {
                let mut reader = lock(&self.consumer);
                self.lead_locked(&mut reader, Some(call))
            };
            self.lock().grants.remove(&call);
            return match led {
                Led::Granted(result) => result,
                _ => Err(SendError::Gone.into()),
            };
        }
        let mut st = self.lock();
        loop {
            if matches!(st.grants.get(&call), Some(Some(_))) {
                return st.grants.remove(&call).flatten().unwrap_or(Err(SendError::Gone.into()));
            }
            if st.stop {
                st.grants.remove(&call);
                return Err(SendError::Gone.into());
            }
            if !st.leader {
                st.leader = true;
                drop(st);
                match self.lead(Some(call)) {
                    Led::Granted(result) => {
                        self.lock().grants.remove(&call);
                        return result;
                    }
                    // Not returned while waiting; queue it rather than lose it.
                    Led::Run(invoke) | Led::RunInline(invoke) => self.queue(invoke),
                    Led::Stop => {}
                }
                st = self.lock();
                continue;
            }
            st.waiting += 1;
            st = self.grant_cv.wait(st).unwrap_or_else(|e| e.into_inner());
            st.waiting -= 1;
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "the function panicked with a payload that is not a string".to_owned()
    }
}

/// Cuts `s` to at most `max` bytes, on a character boundary.
pub(crate) fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_whole_characters() {
        let mut s = "aé".repeat(10);
        truncate(&mut s, 4);
        assert_eq!(s, "aéa");
        let mut s = "short".to_owned();
        truncate(&mut s, 100);
        assert_eq!(s, "short");
        let mut s = "é".repeat(MAX_TEXT);
        truncate(&mut s, MAX_TEXT);
        assert_eq!(s.len(), MAX_TEXT);
    }

    #[test]
    fn panic_payloads_become_messages() {
        let p = catch_unwind(|| panic!("plain")).unwrap_err();
        assert_eq!(panic_message(p.as_ref()), "plain");
        let p = catch_unwind(|| panic!("formatted {}", 7)).unwrap_err();
        assert_eq!(panic_message(p.as_ref()), "formatted 7");
        let p = catch_unwind(|| std::panic::panic_any(7u8)).unwrap_err();
        assert!(panic_message(p.as_ref()).contains("not a string"));
    }
}
