//! Pools and their instances: which instances serve which calls, when a pool grows, shrinks or
//! starts over, and the rings to each instance.
//!
//! A pool is the instances of one pack (or image) serving one sharing domain of one workflow
//! version (a plan group's thread-isolated functions share a pool; a function with
//! `isolation: process` or `container` has its own). It starts instances up to its maximum
//! when calls queue beyond what its starting instances will take; beyond that, calls wait in
//! its queue, in order. An instance idle beyond the pool's minimum is stopped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use faasflow_core::engine::InvocationId;
use faasflow_shm::frame::Frame;
use faasflow_shm::ring::PushError;
use faasflow_shm::{Consumer, Producer};

use crate::api::{Answer, DaemonError};
use crate::container::ContainerSpec;
use crate::pool::{self, Handle, Launch, Runner, SpawnRequest, Spawner, StartError};
use crate::store::arena::Arena;

/// Why what an instance sent could not be read (it broke the protocol).
#[derive(Debug, thiserror::Error)]
pub(crate) enum BadFrame {
    #[error("{0}")]
    Ring(#[from] faasflow_shm::ring::PopError),
    #[error("{0}")]
    Decode(#[from] faasflow_shm::frame::DecodeError),
}

/// What makes two functions share a pool.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    pub(crate) runner: Runner,
    pub(crate) domain: String,
    /// The arena segment its instances map (a version installed again gets new pools).
    pub(crate) segment: u32,
}

/// How a pool's instances run calls: how many each runs at once, how many it may have, and
/// how many it keeps warm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    pub(crate) threads: u32,
    pub(crate) max: usize,
    pub(crate) warm: usize,
}

/// One pool.
#[derive(Debug)]
pub(crate) struct Pool {
    pub(crate) key: PoolKey,
    pub(crate) shape: Shape,
    /// For containers: the largest memory (bytes) and CPU (thousandths) of the functions it
    /// serves, and whether any asks for a network.
    pub(crate) limits: (u64, u64, bool),
    pub(crate) pack_name: String,
    pub(crate) instances: Vec<u32>,
    pub(crate) spawning: usize,
    /// Calls waiting for a free thread of an instance, in order.
    pub(crate) queue: VecDeque<u64>,
    /// Its workflow version was removed: its instances are stopped, it starts none, and its
    /// slot is reused once the last of them has exited.
    pub(crate) retired: bool,
}

impl Pool {
    fn new(key: PoolKey, limits: (u64, u64, bool), pack_name: String, shape: Shape) -> Self {
        Pool {
            key,
            shape,
            limits,
            pack_name,
            instances: Vec::new(),
            spawning: 0,
            queue: VecDeque::new(),
            retired: false,
        }
    }

    /// Whether the pool should start one more instance for its queue: it may grow
    /// (`max` instances) and its queue is longer than its starting instances will take
    /// (`threads` calls each).
    pub(crate) fn should_grow(&self, max: usize, threads: usize) -> bool {
        let room = self.spawning * threads;
        self.instances.len() + self.spawning < max.max(1) && self.queue.len() > room
    }

    /// Whether an instance that just went should be replaced: the pool still serves, and it
    /// has calls queued or fewer instances than its minimum `min`.
    pub(crate) fn needs_replacing(&self, min: usize) -> bool {
        !self.retired && (!self.queue.is_empty() || self.instances.len() + self.spawning < min)
    }

    /// [`needs_replacing`](Self::needs_replacing) with the pool's own warm count.
    pub(crate) fn wants_replacement(&self) -> bool {
        self.needs_replacing(self.shape.warm)
    }
}

/// Frames for an instance that did not fit in its ring yet, in order.
#[derive(Default)]
struct Backlog {
    frames: VecDeque<Vec<u8>>,
}

impl Backlog {
    /// Pushes `frame` to `ring` after what waits, or keeps it to push later; whether it was
    /// kept. Fails only when it can never be pushed.
    fn send(&mut self, ring: &mut Producer, frame: &[u8]) -> Result<bool, PushError> {
        if self.frames.is_empty() {
            match ring.push(frame) {
                Err(PushError::Full) => {}
                other => return other.map(|()| false),
            }
        } else if frame.len() > ring.max_frame_len() {
            let max = ring.max_frame_len();
            return Err(PushError::TooLarge { len: frame.len(), max });
        }
        self.frames.push_back(frame.to_vec());
        Ok(true)
    }

    /// Pushes what waits, in order, as far as it fits; whether some still waits.
    fn flush(&mut self, ring: &mut Producer) -> Result<bool, PushError> {
        while let Some(frame) = self.frames.front() {
            match ring.push(frame) {
                Ok(()) => {
                    self.frames.pop_front();
                }
                Err(PushError::Full) => return Ok(true),
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }
}

/// How many ended calls an instance remembers, to tie its late stderr lines to them.
const RECENT: usize = 64;

/// A running instance.
pub(crate) struct Instance {
    pub(crate) pool: usize,
    pub(crate) pid: u32,
    pub(crate) handle: Handle,
    pub(crate) to_instance: Producer,
    to_daemon: Consumer,
    pub(crate) functions: HashMap<String, u32>,
    /// Calls sent to it and not yet ended.
    pub(crate) calls: HashSet<u64>,
    /// The last calls that ended on it, oldest first, as (call, function index, invocation):
    /// what it writes to stderr may reach the loop after the call's completion.
    recent: VecDeque<(u64, u32, InvocationId)>,
    pub(crate) idle_since: Instant,
    /// Why the daemon killed it, if it did.
    pub(crate) killed: Option<String>,
    /// It broke the protocol: its ring is not read any more.
    pub(crate) broken: bool,
    /// Frames for it that did not fit in its ring, in order: sent as it makes room
    /// ([`Pools::send_backlogs`]), so the loop never waits for an instance.
    backlog: Backlog,
    /// Set when a frame waits in its backlog: [`Pools::backlogged`], shared.
    backlogged: Arc<AtomicBool>,
}

impl Instance {
    /// Kills it for `why` (its watcher then reports it gone); the first reason given stays.
    pub(crate) fn kill(&mut self, why: String) {
        self.killed.get_or_insert(why);
        self.handle.kill();
    }

    /// Sends `frame` to it, after the frames waiting for room in its ring; a frame that does
    /// not fit now waits too. Fails only when the frame can never be sent.
    pub(crate) fn send(&mut self, frame: &[u8]) -> Result<(), PushError> {
        if self.backlog.send(&mut self.to_instance, frame)? {
            self.backlogged.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Call `call` (of function index `function`, in `invocation`) ended on it at `now`.
    pub(crate) fn ended(&mut self, call: u64, function: u32, invocation: InvocationId, now: Instant) {
        self.calls.remove(&call);
        if self.calls.is_empty() {
            self.idle_since = now;
        }
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((call, function, invocation));
    }

    /// The function and invocation of call `call` if it is one of the last to end on it
    /// (`None`: the last one).
    pub(crate) fn ended_call(&self, call: Option<u64>) -> Option<(&str, InvocationId)> {
        let &(_, function, invocation) = match call {
            Some(call) => self.recent.iter().rev().find(|(c, ..)| *c == call)?,
            None => self.recent.back()?,
        };
        let name = self.functions.iter().find(|(_, i)| **i == function)?.0;
        Some((name, invocation))
    }
}

/// An install waiting for its pools' first instances: their ids, start-up errors, and where
/// the answer goes.
struct Warming {
    ids: HashSet<u32>,
    errors: Vec<String>,
    reply: Answer<Result<(), DaemonError>>,
}

/// What happened when an instance was reported ready ([`Pools::ready`]).
pub(crate) enum Ready {
    /// It is up: calls of its pool can go.
    Up { pool: usize },
    /// It is up but its watcher saw it die first: treat it as exited.
    Exited { status: String },
    /// It did not start and its pool has no instance left: its queued calls cannot run.
    Failed { calls: Vec<u64>, error: StartError },
    /// Nothing to do.
    Nothing,
}

/// Every pool and instance.
pub(crate) struct Pools {
    pools: Vec<Pool>,
    index: HashMap<PoolKey, usize>,
    instances: HashMap<u32, Instance>,
    next_instance: u32,
    /// Instances started since start.
    started: u64,
    /// Instances being started, by id → pool.
    starting: HashMap<u32, usize>,
    /// Exits seen for instances still `starting`, by id → how they ended.
    exited_early: HashMap<u32, String>,
    /// Ids of live instances (iterated on every loop turn).
    live: Vec<u32>,
    /// Installs answered when these instances are up.
    warming: Vec<Warming>,
    spawner: Spawner,
    /// Where frames are popped into (the ring's largest frame).
    frame_buf: Vec<u8>,
    /// Some instance may have frames waiting for room in its ring.
    backlogged: Arc<AtomicBool>,
}

impl Pools {
    pub(crate) fn new(spawner: Spawner, ring_capacity: usize) -> Self {
        Pools {
            pools: Vec::new(),
            index: HashMap::new(),
            instances: HashMap::new(),
            next_instance: 1,
            started: 0,
            starting: HashMap::new(),
            exited_early: HashMap::new(),
            live: Vec::new(),
            warming: Vec::new(),
            spawner,
            frame_buf: vec![0u8; ring_capacity],
            backlogged: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(crate) fn get(&self, pool: usize) -> &Pool {
        &self.pools[pool]
    }

    pub(crate) fn get_mut(&mut self, pool: usize) -> &mut Pool {
        &mut self.pools[pool]
    }

    pub(crate) fn count(&self) -> usize {
        self.pools.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Pool> {
        self.pools.iter()
    }

    pub(crate) fn instance(&self, id: u32) -> Option<&Instance> {
        self.instances.get(&id)
    }

    pub(crate) fn instance_mut(&mut self, id: u32) -> Option<&mut Instance> {
        self.instances.get_mut(&id)
    }

    /// Live instances.
    pub(crate) fn live(&self) -> usize {
        self.instances.len()
    }

    /// Instances started since start.
    pub(crate) fn started(&self) -> u64 {
        self.started
    }

    /// The pool for `key`, made when there is none (in the slot of a retired pool whose
    /// instances have all gone, else a new one); the limits of a pool serving several
    /// functions are the largest of theirs. Returns the pool and whether it is new.
    pub(crate) fn find_or_add(
        &mut self,
        key: PoolKey,
        limits: (u64, u64, bool),
        pack_name: &str,
        shape: Shape,
    ) -> (usize, bool) {
        if let Some(&p) = self.index.get(&key) {
            let l = &mut self.pools[p].limits;
            *l = (l.0.max(limits.0), l.1.max(limits.1), l.2 || limits.2);
            return (p, false);
        }
        let pool = Pool::new(key.clone(), limits, pack_name.to_owned(), shape);
        let free = self
            .pools
            .iter()
            .position(|p| p.retired && p.instances.is_empty() && p.spawning == 0);
        let p = match free {
            Some(p) => {
                self.pools[p] = pool;
                p
            }
            None => {
                self.pools.push(pool);
                self.pools.len() - 1
            }
        };
        self.index.insert(key, p);
        (p, true)
    }

    /// Starts one instance of `pool` (answered by [`pool::Report::Ready`]); returns its id.
    pub(crate) fn spawn(
        &mut self,
        pool: usize,
        arena: &Arena,
        threads: u32,
        timeout: Duration,
        ring_capacity: usize,
    ) -> u32 {
        let id = self.next_instance;
        self.next_instance += 1;
        let p = &mut self.pools[pool];
        p.spawning += 1;
        self.starting.insert(id, pool);
        let segment = p.key.segment;
        let Some(region) = arena.region(segment).cloned() else {
            // Its workflow version is gone: nothing is left for an instance to do.
            self.spawner.fail(
                id,
                StartError::VersionGone {
                    pool: p.key.domain.clone(),
                },
            );
            return id;
        };
        let (memory_bytes, cpu_millis, network) = p.limits;
        let launch = match &p.key.runner {
            Runner::Process(c) => Launch::Process(c.clone()),
            Runner::Container(run) => Launch::Container(ContainerSpec {
                image: run.image.clone(),
                memory_bytes,
                cpu_millis,
                network,
                args: run.args.clone(),
                mounts: run.mounts.clone(),
            }),
        };
        self.spawner.spawn(SpawnRequest {
            instance: id,
            launch,
            threads,
            ring_capacity,
            timeout,
            arena: region,
            segment,
            prefault: arena.populated(segment),
        });
        id
    }

    /// An install is answered when instances `ids` are up (at once when there are none).
    pub(crate) fn answer_when_up(&mut self, ids: HashSet<u32>, reply: Answer<Result<(), DaemonError>>) {
        if ids.is_empty() {
            reply.send(Ok(()));
        } else {
            self.warming.push(Warming {
                ids,
                errors: Vec::new(),
                reply,
            });
        }
    }

    /// Instance `id` started (or could not): answers the installs waiting for it and adds it
    /// to its pool. Its process is tracked by `track`.
    pub(crate) fn ready(
        &mut self,
        id: u32,
        result: Result<Box<pool::Ready>, StartError>,
        now: Instant,
        track: impl FnOnce(u32),
    ) -> Ready {
        let Some(pool) = self.starting.remove(&id) else {
            return Ready::Nothing;
        };
        for w in &mut self.warming {
            if w.ids.remove(&id)
                && let Err(e) = &result
            {
                w.errors.push(e.to_string());
            }
        }
        for w in self.warming.extract_if(.., |w| w.ids.is_empty()) {
            w.reply.send(match w.errors.first() {
                None => Ok(()),
                Some(e) => Err(DaemonError::Install(e.clone())),
            });
        }
        self.pools[pool].spawning -= 1;
        let r = match result {
            Ok(r) => r,
            Err(error) => {
                self.exited_early.remove(&id);
                let p = &mut self.pools[pool];
                // Without any instance the queued calls would wait forever: they fail.
                if p.instances.is_empty() && p.spawning == 0 {
                    let calls = p.queue.drain(..).collect();
                    return Ready::Failed { calls, error };
                }
                return Ready::Nothing;
            }
        };
        self.started += 1;
        let mut instance = Instance {
            pool,
            pid: r.pid,
            handle: r.handle,
            to_instance: r.to_instance,
            to_daemon: r.to_daemon,
            functions: r.functions,
            calls: HashSet::new(),
            recent: VecDeque::with_capacity(RECENT),
            idle_since: now,
            killed: None,
            broken: false,
            backlog: Backlog::default(),
            backlogged: self.backlogged.clone(),
        };
        if self.pools[pool].retired {
            // Started for a version removed meanwhile.
            instance.kill("its workflow version was dropped while it started".into());
        }
        track(instance.pid);
        self.instances.insert(id, instance);
        self.live.push(id);
        self.pools[pool].instances.push(id);
        match self.exited_early.remove(&id) {
            Some(status) => Ready::Exited { status },
            None => Ready::Up { pool },
        }
    }

    /// Whether instance `id` is still starting (its exit is then kept for its `Ready`).
    pub(crate) fn exited_while_starting(&mut self, id: u32, status: &str) -> bool {
        if self.starting.contains_key(&id) {
            self.exited_early.insert(id, status.to_owned());
            return true;
        }
        false
    }

    /// Takes a dead instance out of its pool: the instance, and what its calls fail with.
    pub(crate) fn remove(&mut self, id: u32, status: &str) -> Option<(Instance, String)> {
        let inst = self.instances.remove(&id)?;
        self.live.retain(|&i| i != id);
        let pool = &mut self.pools[inst.pool];
        pool.instances.retain(|&i| i != id);
        let at = inst.handle.describe(inst.pid);
        let pack = &pool.pack_name;
        let why = match &inst.killed {
            Some(reason) => format!("its instance ({at}, pack `{pack}`) was stopped because {reason}"),
            None => format!("its instance ({at}, pack `{pack}`) {status}"),
        };
        Some((inst, why))
    }

    /// Stops instances idle for `idle` or longer at `now`, beyond their pool's `min`.
    /// Stops the instances idle for `idle` beyond each pool's warm ones.
    pub(crate) fn stop_idle(&mut self, now: Instant, idle: Duration) {
        for p in &self.pools {
            let min = p.shape.warm;
            let mut live = p.instances.len();
            for id in &p.instances {
                if live <= min {
                    break;
                }
                let Some(inst) = self.instances.get_mut(id) else {
                    continue;
                };
                if inst.calls.is_empty()
                    && inst.killed.is_none()
                    && now.saturating_duration_since(inst.idle_since) >= idle
                {
                    inst.kill(format!("it was idle for {} s", idle.as_secs()));
                    live -= 1;
                }
            }
        }
    }

    /// The instance of `pool` to send a call to: one with a free thread (of `threads`), the
    /// one that produced an input (`producers`: in-process hand-off) first, then the least
    /// loaded.
    pub(crate) fn choose(&self, pool: usize, producers: &[u32], threads: usize) -> Option<u32> {
        let free = |i: &Instance| i.killed.is_none() && i.calls.len() < threads;
        self.pools[pool]
            .instances
            .iter()
            .copied()
            .filter(|id| self.instances.get(id).is_some_and(free))
            .min_by_key(|id| {
                (
                    !producers.contains(id),
                    self.instances.get(id).map_or(usize::MAX, |i| i.calls.len()),
                )
            })
    }

    /// Retires the pools of arena segment `segment` (a version removed): their instances are
    /// stopped for `why`, and their queued calls returned (they cannot run).
    pub(crate) fn retire(&mut self, segment: u32, why: &str) -> Vec<u64> {
        let mut queued = Vec::new();
        for pool in &mut self.pools {
            if pool.key.segment != segment || pool.retired {
                continue;
            }
            pool.retired = true;
            self.index.remove(&pool.key);
            queued.extend(pool.queue.drain(..));
            for id in &pool.instances {
                if let Some(inst) = self.instances.get_mut(id)
                    && inst.killed.is_none()
                {
                    inst.kill(why.to_owned());
                }
            }
        }
        queued
    }

    /// Stops an instance that broke the protocol; nothing more is read from it (its calls fail
    /// when its exit is seen).
    pub(crate) fn protocol_violation(&mut self, id: u32, why: String) {
        if let Some(inst) = self.instances.get_mut(&id) {
            inst.broken = true;
            inst.kill(why);
        }
    }

    /// Sends what waits for room in instances' rings ([`Instance::send`]); whether some still
    /// waits (the loop then looks again soon: an instance makes room without telling it).
    /// An instance whose ring broke is killed.
    pub(crate) fn send_backlogs(&mut self) -> bool {
        if !self.backlogged.load(Ordering::Relaxed) {
            return false;
        }
        let mut waiting = false;
        let mut broken = Vec::new();
        for (id, inst) in &mut self.instances {
            if inst.backlog.frames.is_empty() || inst.broken {
                continue;
            }
            match inst.backlog.flush(&mut inst.to_instance) {
                Ok(more) => waiting |= more,
                Err(e) => broken.push((*id, format!("its ring cannot take a frame: {e}"))),
            }
        }
        for (id, why) in broken {
            self.protocol_violation(id, why);
        }
        self.backlogged.store(waiting, Ordering::Relaxed);
        waiting
    }

    /// Live instance ids, in the order their rings are read.
    pub(crate) fn live_at(&self, k: usize) -> Option<u32> {
        self.live.get(k).copied()
    }

    /// The next frame instance `id` sent, if any: decoded, or why it could not be.
    pub(crate) fn pop(&mut self, id: u32) -> Option<Result<Frame, BadFrame>> {
        let inst = self.instances.get_mut(&id)?;
        if inst.broken {
            return None;
        }
        match inst.to_daemon.pop(&mut self.frame_buf) {
            Ok(None) => None,
            Ok(Some(n)) => Some(Frame::decode(&self.frame_buf[..n]).map_err(BadFrame::from)),
            Err(e) => Some(Err(BadFrame::from(e))),
        }
    }

    /// Whether some instance has a frame for the loop.
    pub(crate) fn any_ready(&mut self) -> bool {
        self.instances.values_mut().any(|i| !i.broken && i.to_daemon.is_ready())
    }

    /// Kills every instance (the daemon stops).
    pub(crate) fn kill_all(&mut self) {
        for inst in self.instances.values_mut() {
            inst.kill("the daemon stopped".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::PackCommand;

    fn pool(queued: usize, instances: usize, spawning: usize) -> Pool {
        let key = PoolKey {
            runner: Runner::Process(PackCommand::program("/bin/true")),
            domain: "wf@1/group-0".into(),
            segment: 1,
        };
        let shape = Shape {
            threads: 2,
            max: 4,
            warm: 1,
        };
        let mut p = Pool::new(key, (0, 0, false), "synthetic".into(), shape);
        p.queue = (0..queued as u64).collect();
        p.instances = (0..instances as u32).collect();
        p.spawning = spawning;
        p
    }

    #[test]
    fn frames_that_do_not_fit_wait_in_order_and_the_sender_never_waits() {
        let ring = faasflow_shm::Ring::new_local(64).expect("capacity");
        let (mut to, mut from) = (ring.clone_view().into_producer(), ring.into_consumer());
        let mut backlog = Backlog::default();
        let frame = |n: u8| vec![n; 24];
        // 64 bytes hold two 24-byte frames (with their length words): the third waits, and so
        // does the fourth, although it would fit once the third is out of the way.
        for n in 1..=2 {
            assert_eq!(backlog.send(&mut to, &frame(n)), Ok(false));
        }
        assert_eq!(backlog.send(&mut to, &frame(3)), Ok(true));
        assert_eq!(backlog.send(&mut to, &frame(4)), Ok(true));
        assert_eq!(backlog.flush(&mut to), Ok(true), "nothing was read yet");
        let mut buf = [0u8; 64];
        let mut read = Vec::new();
        for _ in 0..2 {
            let n = from.pop(&mut buf).expect("pops").expect("a frame");
            read.push(buf[0]);
            assert_eq!(n, 24);
        }
        assert_eq!(backlog.flush(&mut to), Ok(false), "room for both now");
        while from.pop(&mut buf).expect("pops").is_some() {
            read.push(buf[0]);
        }
        assert_eq!(read, [1, 2, 3, 4]);
        // A frame that can never fit is refused at once, queued or not.
        assert!(matches!(
            backlog.send(&mut to, &[0; 4096]),
            Err(PushError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_pool_grows_only_for_calls_its_starting_instances_will_not_take() {
        // Nothing queued: no growth.
        assert!(!pool(0, 1, 0).should_grow(4, 2));
        // Two queued, one instance starting with two threads: it takes them.
        assert!(!pool(2, 1, 1).should_grow(4, 2));
        // A third is beyond it.
        assert!(pool(3, 1, 1).should_grow(4, 2));
        // At its maximum it does not grow, whatever waits.
        assert!(!pool(100, 3, 1).should_grow(4, 2));
        // A maximum of 0 still allows one instance.
        assert!(pool(1, 0, 0).should_grow(0, 2));
        assert!(!pool(1, 1, 0).should_grow(0, 2));
    }

    #[test]
    fn a_gone_instance_is_replaced_for_queued_calls_or_the_minimum_only() {
        assert!(pool(1, 2, 0).needs_replacing(0));
        assert!(pool(0, 0, 0).needs_replacing(1));
        assert!(!pool(0, 1, 0).needs_replacing(1));
        assert!(!pool(0, 0, 1).needs_replacing(1));
        let mut retired = pool(5, 0, 0);
        retired.retired = true;
        assert!(!retired.needs_replacing(1));
    }
}
