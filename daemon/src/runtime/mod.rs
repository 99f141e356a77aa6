//! The runtime: the thread (the *loop*) that drives the [`Engine`] with real instances, the
//! arena, the spill directory, the remote tier and the other workers.
//!
//! The loop owns the engine and the runtime's parts, each a type of its own that owns its
//! state: the [`calls`] (and their preparation), the [`objects`], the [`pools`] of instances,
//! the [`invocations`], the [`install`]ed plan versions, the [`seal`]ing of completions, the
//! [`peers`] of a cluster, the calls run for a central engine ([`execute`]), the [`metrics`],
//! and the storage operations in flight ([`io`]). The parts never see the loop: a flow gets
//! the parts it touches as arguments ([`calls::Cx`]) and returns what it cannot finish.
//!
//! Each turn the loop takes its inbox (API callers, the spawner and watchers, the network and
//! storage drivers), reads its instances' rings, fires the engine's due timers and acts on the
//! engine's actions. Only the loop reads the clock: once for each message or frame it handles,
//! and once for the timers and actions of the turn; the time (`now`) is passed down, so the
//! parts never read a clock (a report's times are when the loop saw each event: events of
//! one busy turn are not all given its start). It never blocks on
//! anything but the arena's doorbell: instances ring it after each completion, and other
//! threads after posting to the inbox; Redis and spill files are read and written by the
//! storage driver ([`crate::remote`]), whose results come back as inbox messages; a frame that
//! does not fit in an instance's ring waits in that instance's backlog (`pools::Backlog`) and
//! the loop looks again within a millisecond. When there is
//! nothing to do it spins over its rings for up to 50 µs ([`DaemonConfig::spin`]) and then
//! parks until the doorbell rings or the engine's next timer is due, so an idle daemon uses no
//! CPU; while a storage operation is in flight it yields its core instead of spinning
//! ([`IO_YIELD`]), since the driver's thread needs one.

mod calls;
mod execute;
mod install;
mod invocations;
mod io;
mod kept;
mod metrics;
mod objects;
mod peers;
mod pools;
mod said;
mod seal;
mod types;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use faasflow_core::dag::FailureKind;
use faasflow_core::engine::{Action, Engine, EngineConfig, Failure, InvocationId};
use faasflow_ebpf::Probe;
use faasflow_shm::frame::{Complete, Frame};

use self::calls::{Calls, Cx};
use self::execute::Central;
use self::install::{InstallCx, Installs, NewVersion};
use self::invocations::{Ending, Invocations, Outcome, Reply, object_ids, refs};
use self::io::{Io, Part};
use self::metrics::{Gauges, Measure, Metrics};
use self::objects::{Objects, Spilled};
use self::peers::{Followup, Peers, Told};
use self::pools::{Pools, Ready};
use self::seal::{Sealed, Seals};
use self::types::us_between;
use crate::api::{DaemonError, InstalledPlan, Invoke, Stats};
use crate::config::DaemonConfig;
use crate::container::DockerLink;
use crate::inbox::{Inbox, Install, Msg};
use crate::net::Net;
use crate::pool::{self, Runner, Spawner, StartError};
use crate::remote::{Done, RemoteEvent, RemoteIo};
use crate::store::arena::Arena;
use crate::store::spill::SpillDir;

/// How soon the loop looks again at frames waiting for room in an instance's ring.
const BACKLOG_POLL: Duration = Duration::from_millis(1);

/// How long the loop with nothing to do but a storage operation in flight yields its core
/// (to the driver's thread, often woken onto it) before it parks: a spill hand-off of 1 KiB
/// took 150–160 µs so against 165–195 µs spinning and 165–185 µs parking at once
/// (`faasflow run` of a two-step workflow at quota 0 on 2 vCPUs).
const IO_YIELD: Duration = Duration::from_micros(200);

/// The drivers the loop runs with.
pub(crate) struct Drivers {
    pub(crate) spawner: Spawner,
    pub(crate) net: Option<Net>,
    pub(crate) remote: RemoteIo,
    pub(crate) probe: Probe,
    /// Docker, for container instances (connected on first use).
    pub(crate) docker: Arc<DockerLink>,
}

/// The loop and the parts it owns.
pub(crate) struct Runtime {
    config: DaemonConfig,
    inbox: Arc<Inbox>,
    /// The engine's time origin.
    origin: Instant,
    engine: Engine,
    arena: Arena,
    objects: Objects,
    pools: Pools,
    calls: Calls,
    seals: Seals,
    invocations: Invocations,
    installs: Installs,
    metrics: Metrics,
    measure: Measure,
    io: Io,
    peers: Peers,
    central: Central,
    docker: Arc<DockerLink>,
    /// Outputs kept past their invocation's end, to be read.
    kept: kept::Kept,
    stop: bool,
}

/// The parts a flow gets besides those in [`Cx`].
struct Rest<'a> {
    calls: &'a mut Calls,
    seals: &'a mut Seals,
    peers: &'a mut Peers,
    central: &'a mut Central,
}

impl Runtime {
    pub(crate) fn new(
        config: DaemonConfig,
        (arena, spill_dir): (Arena, SpillDir),
        drivers: Drivers,
        inbox: Arc<Inbox>,
    ) -> Self {
        let mut arena = arena;
        let objects = Objects::new(&mut arena, spill_dir);
        Runtime {
            engine: Engine::new(EngineConfig { seed: config.seed }),
            pools: Pools::new(drivers.spawner, config.ring_capacity),
            config,
            inbox,
            origin: Instant::now(),
            arena,
            objects,
            calls: Calls::default(),
            seals: Seals::default(),
            invocations: Invocations::default(),
            installs: Installs::default(),
            metrics: Metrics::default(),
            measure: Measure::new(drivers.probe),
            io: Io::new(drivers.remote),
            peers: Peers::new(drivers.net),
            central: Central::default(),
            docker: drivers.docker,
            kept: kept::Kept::default(),
            stop: false,
        }
    }

    /// The parts, split for a flow at `now`.
    fn parts(&mut self, now: Instant) -> (Cx<'_>, Rest<'_>) {
        let Runtime {
            config,
            origin,
            engine,
            arena,
            objects,
            pools,
            calls,
            seals,
            invocations,
            installs,
            metrics,
            measure,
            io,
            peers,
            central,
            stop,
            ..
        } = self;
        let cx = Cx {
            config,
            now,
            origin: *origin,
            engine,
            arena,
            objects,
            pools,
            invocations,
            installs,
            metrics,
            measure,
            io,
            stopping: *stop,
        };
        (
            cx,
            Rest {
                calls,
                seals,
                peers,
                central,
            },
        )
    }

    /// Runs the loop until the daemon stops.
    pub(crate) fn run(mut self) {
        let mut last_check = Instant::now();
        while !self.stop {
            let mut progressed = self.drain_inbox();
            progressed |= self.drain_rings();
            let now = Instant::now();
            let engine_now = now.saturating_duration_since(self.origin);
            if self.engine.poll_timeout().is_some_and(|t| t <= engine_now) {
                self.engine.tick(engine_now);
            }
            progressed |= self.apply_actions(now);
            progressed |= self.replay(now);
            {
                let (mut cx, rest) = self.parts(now);
                rest.calls.spill_kept(&mut cx);
            }
            // What spills left this turn and no call took.
            self.objects.drop_shadows(&mut self.arena);
            if progressed {
                let (mut cx, rest) = self.parts(now);
                if rest.calls.retry_room(&mut cx) {
                    self.apply_actions(now);
                }
            }
            if now.saturating_duration_since(last_check) >= Duration::from_secs(1) {
                self.periodic(now);
                last_check = now;
            }
            if progressed || self.stop {
                continue;
            }
            // Instances do not say when they make room in their rings: look again soon.
            let backlog = self.pools.send_backlogs();
            let timeout = self
                .engine
                .poll_timeout()
                .map(|t| t.saturating_sub(engine_now))
                .unwrap_or(Duration::from_secs(1))
                .min(if backlog { BACKLOG_POLL } else { Duration::from_secs(1) });
            let (inbox, pools) = (&self.inbox, &mut self.pools);
            let spin = if self.io.in_flight() > 0 {
                // The storage driver's thread needs a core now (there may be only two): yield
                // rather than spin, then park.
                let until = Instant::now() + IO_YIELD;
                while !inbox.has_mail() && !pools.any_ready() && Instant::now() < until {
                    std::thread::yield_now();
                }
                Duration::ZERO
            } else {
                self.config.spin
            };
            inbox.wait(spin, timeout, || pools.any_ready());
        }
        self.shutdown();
    }

    /// Once a second: idle instances, overdue abandoned calls, strays.
    fn periodic(&mut self, now: Instant) {
        self.pools.stop_idle(now, self.config.idle_timeout);
        self.calls.stop_overdue(now, &mut self.pools);
        let (mut cx, rest) = self.parts(now);
        rest.peers.sweep(rest.calls, &mut cx);
        let expired = self.kept.expired(now);
        if !expired.is_empty() {
            self.let_go(&expired, now);
        }
    }

    fn shutdown(&mut self) {
        self.pools.kill_all();
        self.last_words();
        // Containers are not children: remove them (and any still starting) now, rather than
        // leave them to the watchers, which may not get to it before the process ends.
        if let Some(d) = self.docker.connected() {
            if let Err(e) = d.remove_orphans() {
                tracing::warn!(cause = %e, "cannot remove the daemon's containers");
            }
            let _ = std::fs::remove_dir_all(&d.settings().dir);
        }
        for inv in self.invocations.drain() {
            if let Some(reply) = inv.reply {
                reply.send(Err(DaemonError::Stopped));
            }
        }
        self.peers.close();
        if let Err(e) = self.objects.spill_dir().remove() {
            tracing::warn!(
                dir = %self.objects.spill_dir().path().display(),
                cause = %e,
                "cannot remove its spill directory"
            );
        }
    }

    /// Waits (at most [`crate::stderr::DRAIN`]) for the killed instances' exits, logging what
    /// they wrote meanwhile: a watcher reports an exit once the instance's stderr is read to
    /// its end, so the last lines of a stopping daemon's instances (a container's come through
    /// Docker's log stream, later than a process's) are in its log. Other messages are dropped,
    /// as they would be once the loop is gone.
    fn last_words(&mut self) {
        let deadline = Instant::now() + crate::stderr::DRAIN;
        while self.pools.live_at(0).is_some() && Instant::now() < deadline {
            self.inbox.wait(Duration::ZERO, Duration::from_millis(10), || false);
            for msg in self.inbox.take().into_iter().flatten() {
                match msg {
                    Msg::Pool(pool::Report::Said { instance, lines }) => {
                        said::instance_said(&self.pools, &self.calls, instance, &lines)
                    }
                    Msg::Pool(pool::Report::Exited { instance, status }) => {
                        self.pools.remove(instance, &status);
                    }
                    _ => {}
                }
            }
        }
    }

    // ---- the inbox -------------------------------------------------------------------------

    fn drain_inbox(&mut self) -> bool {
        let Some(msgs) = self.inbox.take() else {
            return false;
        };
        for msg in msgs {
            self.handle(msg, Instant::now());
        }
        true
    }

    fn handle(&mut self, msg: Msg, now: Instant) {
        match msg {
            Msg::Install(install) => self.install(*install),
            Msg::Invoke(invoke, reply) => self.start_invocation(invoke, reply, now),
            Msg::Execute(request, reply) => {
                let (mut cx, rest) = self.parts(now);
                rest.central.execute(*request, reply, rest.calls, &mut cx);
            }
            Msg::Drop {
                workflow,
                version,
                reply,
            } => reply.send(self.drop_plan(workflow, version, now)),
            Msg::Plans(reply) => reply.send(self.plans()),
            Msg::WorkerLost { name, reason, reply } => {
                let mut out = Vec::new();
                let (mut cx, rest) = self.parts(now);
                let n = rest.peers.worker_lost(&name, &reason, &mut cx, &mut out);
                self.followups(out, now);
                reply.send(n);
            }
            Msg::Cancel {
                invocation,
                reason,
                reply,
            } => {
                // Its calls' instances stop as the engine abandons them (or now, when a peer's
                // `Failed` ended it here first); one not started here yet never starts.
                self.invocations.cancelled.insert(invocation);
                let running = self.invocations.get(invocation).is_some();
                if running {
                    self.abort(invocation, format!("cancelled: {reason}"), false, now);
                } else {
                    self.calls.stop_cancelled(invocation, &mut self.pools);
                }
                reply.send(running);
            }
            Msg::ReadOutput {
                invocation,
                name,
                element,
                offset,
                max,
                reply,
            } => reply.send(self.kept.read(
                (&self.objects, &self.arena),
                invocation,
                (&name, element),
                (offset, max),
            )),
            Msg::OutputRead {
                invocation,
                name,
                element,
                reply,
            } => {
                if let Some(ids) = self.kept.read_whole(invocation, &name, element) {
                    self.let_go(&ids, now);
                }
                reply.send(());
            }
            Msg::Put(put, reply) => {
                let (mut cx, rest) = self.parts(now);
                reply.send(rest.peers.put(put, rest.calls, &mut cx));
            }
            Msg::ReleaseOutputs { invocations, reply } => {
                let released: Vec<Vec<u64>> = invocations.iter().filter_map(|i| self.kept.release(*i)).collect();
                for ids in &released {
                    self.let_go(ids, now);
                }
                reply.send(released.len() as u32);
            }
            Msg::Stats(reply) => reply.send(self.stats()),
            Msg::Metrics(reply) => reply.send(self.metrics_text()),
            Msg::Pool(pool::Report::Ready { instance, result }) => self.instance_ready(instance, result, now),
            Msg::Pool(pool::Report::Exited { instance, status }) => self.instance_exited(instance, status, now),
            Msg::Pool(pool::Report::Said { instance, lines }) => {
                said::instance_said(&self.pools, &self.calls, instance, &lines)
            }
            Msg::Net(event) => {
                let mut out = Vec::new();
                let (mut cx, rest) = self.parts(now);
                rest.peers.net_event(event, rest.calls, &mut cx, &mut out);
                self.followups(out, now);
            }
            Msg::Remote(event) => self.io_done(event, now),
            Msg::Shutdown => self.stop = true,
        }
    }

    /// What peer flows left to the loop.
    fn followups(&mut self, out: Vec<Followup>, now: Instant) {
        for f in out {
            match f {
                Followup::Abort {
                    invocation,
                    error,
                    quiet,
                } => self.abort(invocation, error, quiet, now),
                Followup::Finish(invocation) => {
                    if let Some(result) = self.invocations.get_mut(invocation).and_then(|i| i.deferred.take()) {
                        self.finish(invocation, result, now);
                    }
                }
            }
        }
    }

    /// A storage operation ended: its result goes to the part that asked for it.
    fn io_done(&mut self, event: RemoteEvent, now: Instant) {
        let RemoteEvent { token, result, us } = event;
        let Some(part) = self.io.finished(token) else { return };
        let mut out = Vec::new();
        let (mut cx, rest) = self.parts(now);
        match (part, result) {
            (Part::Spill, Done::Stored(result)) => {
                let calls = &*rest.calls;
                let spilled = cx
                    .objects
                    .spill_done(token, result, us, cx.arena, cx.io, |id| calls.read_by_a_sent_call(id));
                let object = match spilled {
                    Some(Spilled::Moved { object, invocation, us }) => {
                        if let Some(inv) = cx.invocations.get_mut(invocation) {
                            inv.spills += 1;
                            inv.data_us += us;
                        }
                        object
                    }
                    Some(Spilled::Stayed { object }) => object,
                    Some(Spilled::Retried) | None => return,
                };
                calls.unpin(&[object], &mut cx);
                if let Some(sealed) = rest.seals.spilled(object, &mut cx) {
                    self.after_seal(sealed, now);
                }
            }
            (Part::Load, Done::Stored(result)) => rest.calls.load_done(token, result, us, &mut cx),
            (Part::Seal, Done::Stored(result)) => {
                if let Some(sealed) = rest.seals.stored(token, result, rest.calls, &mut cx) {
                    self.after_seal(sealed, now);
                }
            }
            (Part::Report, Done::Read(result)) => {
                if let Some(id) = cx.invocations.shown(token, result.ok()) {
                    out.push(Followup::Finish(id));
                }
            }
            (Part::Peers, result) => {
                let event = RemoteEvent { token, result, us };
                if let Some(told) = rest.peers.io_done(event, rest.calls, &mut cx, &mut out) {
                    self.told(told, now);
                }
            }
            (Part::Execute, result) => rest.central.io_done(token, result, us, rest.calls, &mut cx),
            (part, result) => tracing::warn!(?part, ?result, "a storage operation ended unexpectedly"),
        }
        self.followups(out, now);
    }

    // ---- plan versions ---------------------------------------------------------------------

    fn install(&mut self, install: Install) {
        let Install {
            wf,
            plan,
            placement,
            listed,
            digest,
            reply,
        } = install;
        let version = NewVersion {
            wf,
            plan,
            placement,
            listed: &listed,
            digest,
        };
        let cx = InstallCx {
            config: &self.config,
            arena: &mut self.arena,
            pools: &mut self.pools,
            engine: &mut self.engine,
            peers: self.peers.has_net(),
            remote_tier: self.io.has_store(),
        };
        match self.installs.install(version, cx) {
            // Answered when the pools' first instances are up.
            Ok(warming) => self.pools.answer_when_up(warming, reply),
            Err(e) => reply.send(Err(DaemonError::Install(e.to_string()))),
        }
    }

    fn plans(&self) -> Vec<InstalledPlan> {
        let mut v: Vec<InstalledPlan> = self
            .installs
            .iter()
            .map(|(k, i)| InstalledPlan {
                workflow: k.0.clone(),
                version: k.1,
                in_flight: self.invocations.in_flight(k),
                dropping: i.dropping,
                digest: i.digest.clone(),
            })
            .collect();
        v.sort_by(|a, b| (&a.workflow, a.version).cmp(&(&b.workflow, b.version)));
        v
    }

    fn drop_plan(&mut self, workflow: String, version: u64, now: Instant) -> Result<u64, DaemonError> {
        let key = (workflow, version);
        let Some(installed) = self.installs.get_mut(&key) else {
            return Err(DaemonError::Invoke(format!(
                "workflow `{}` version {} is not installed on this worker",
                key.0, key.1
            )));
        };
        installed.dropping = true;
        self.engine.uninstall(&key.0, key.1);
        let n = self.invocations.in_flight(&key);
        if n == 0 {
            self.uninstall(&key, now);
        }
        Ok(n)
    }

    /// Removes a dropped workflow version once it runs nothing.
    fn remove_if_dropped(&mut self, wf: &(String, u64), now: Instant) {
        if self.installs.get(wf).is_some_and(|i| i.dropping) && self.invocations.in_flight(wf) == 0 {
            self.uninstall(wf, now);
        }
    }

    /// Removes a workflow version that runs nothing: its pools' instances are stopped (each
    /// maps the version's segment, and a pool keeps its minimum warm for good otherwise) and
    /// its arena segment goes as soon as it holds no object.
    fn uninstall(&mut self, wf: &(String, u64), now: Instant) {
        let Some(i) = self.installs.remove(wf) else { return };
        let why = format!("workflow `{}` version {} was dropped", wf.0, wf.1);
        let queued = self.pools.retire(i.segment, &why);
        let (mut cx, rest) = self.parts(now);
        for c in queued {
            let f = rest.calls.function(c);
            rest.calls
                .fail(c, format!("function `{f}`: {why}"), FailureKind::Crash, &mut cx);
        }
        self.arena.drop_segment(i.segment);
    }

    // ---- instances -------------------------------------------------------------------------

    fn instance_ready(&mut self, id: u32, result: Result<Box<pool::Ready>, StartError>, now: Instant) {
        let measure = &mut self.measure;
        match self.pools.ready(id, result, now, |pid| measure.track(pid)) {
            Ready::Up { pool } => {
                let (mut cx, rest) = self.parts(now);
                rest.calls.dispatch(pool, &mut cx);
            }
            Ready::Exited { status } => self.instance_exited(id, status, now),
            Ready::Failed { calls, error } => {
                let (mut cx, rest) = self.parts(now);
                for c in calls {
                    let f = rest.calls.function(c);
                    let m = format!("function `{f}` could not run: {error}");
                    rest.calls.fail(c, m, FailureKind::Crash, &mut cx);
                }
            }
            Ready::Nothing => {}
        }
    }

    fn instance_exited(&mut self, id: u32, status: String, now: Instant) {
        if self.pools.exited_while_starting(id, &status) || self.pools.instance(id).is_none() {
            return;
        }
        // Completions it pushed before dying still count.
        self.drain_instance(id);
        let Some((inst, why)) = self.pools.remove(id, &status) else {
            return;
        };
        self.measure.forget(inst.pid);
        let mut calls: Vec<u64> = inst.calls.into_iter().collect();
        calls.sort_unstable();
        let (mut cx, rest) = self.parts(now);
        for c in calls {
            let f = rest.calls.function(c);
            rest.calls
                .fail(c, format!("function `{f}`: {why}"), FailureKind::Crash, &mut cx);
        }
        if !cx.stopping && cx.pools.get(inst.pool).wants_replacement() {
            cx.spawn(inst.pool);
        }
    }

    fn drain_rings(&mut self) -> bool {
        let mut any = false;
        let mut k = 0;
        while let Some(id) = self.pools.live_at(k) {
            any |= self.drain_instance(id);
            k += 1;
        }
        any
    }

    fn drain_instance(&mut self, id: u32) -> bool {
        let mut any = false;
        while let Some(frame) = self.pools.pop(id) {
            any = true;
            let now = Instant::now();
            let (mut cx, rest) = self.parts(now);
            match frame {
                Ok(Frame::Complete(c)) => self.completed(id, c, now),
                Ok(Frame::Alloc(a)) => rest.calls.answer_alloc(id, a, false, &mut cx),
                Ok(other) => cx
                    .pools
                    .protocol_violation(id, format!("it sent a daemon-bound frame: {other:?}")),
                Err(e) => cx
                    .pools
                    .protocol_violation(id, format!("it sent a malformed frame: {e}")),
            }
        }
        any
    }

    /// Instance `id` completed a call (or declined one sent to follow another).
    fn completed(&mut self, id: u32, c: Complete, now: Instant) {
        let (mut cx, rest) = self.parts(now);
        let (sealed, pool) = rest.seals.completion(rest.calls, id, c, &mut cx);
        if let Some(sealed) = sealed {
            self.after_seal(sealed, now);
        }
        if let Some(pool) = pool {
            let (mut cx, rest) = self.parts(now);
            rest.calls.dispatch(pool, &mut cx);
        }
    }

    /// Completions of followers that were triggered after they ended, or abandoned.
    fn replay(&mut self, now: Instant) -> bool {
        let mut any = false;
        while !self.calls.replay.is_empty() {
            any = true;
            for (id, c) in std::mem::take(&mut self.calls.replay) {
                self.completed(id, c, now);
            }
            self.apply_actions(now);
        }
        any
    }

    // ---- invocations -----------------------------------------------------------------------

    fn start_invocation(&mut self, invoke: Invoke, reply: Reply, now: Instant) {
        let id = self.invocations.new_id(invoke.id);
        let refused = self
            .invocations
            .refusal(id, &self.config.name, self.config.max_invocations);
        if let Some(DaemonError::Overloaded(_)) = refused {
            self.metrics.invocation("overloaded");
        }
        let taken = |p: &mut Peers| p.take_puts(id, &invoke.files, &self.objects);
        let put = match refused.map_or_else(
            || taken(&mut self.peers).map_err(|e| DaemonError::Invoke(e.to_string())),
            Err,
        ) {
            Ok(put) => put,
            Err(e) => {
                // What was put for it goes.
                let (mut cx, rest) = self.parts(now);
                rest.peers.drop_puts(id, &invoke.files, rest.calls, &mut cx);
                return reply.send(Err(e));
            }
        };
        let keep_outputs = invoke.keep_outputs;
        let key = (invoke.workflow, invoke.version);
        let installed = self.installs.get(&key);
        let me = installed.map_or(0, |i| i.placement.me);
        let declared = installed.and_then(|i| i.wf.deadline_ms).map(Duration::from_millis);
        // The other workers of the plan start it too: they get its input first.
        let mut input = invoke.input;
        let starting = self.peers.starting(installed, &mut input, put);
        let (mut cx, rest) = self.parts(now);
        if let Err((e, reply)) = peers::begin(id, &key, input, Some(reply), (me, now), &mut cx) {
            if let Some(reply) = reply {
                reply.send(Err(DaemonError::Invoke(e.to_string())));
            }
            return;
        }
        if let Some(inv) = cx.invocations.get_mut(id) {
            inv.keep_outputs = keep_outputs;
        }
        // The entry enforces the deadline; the others learn of its end with `Failed`.
        if let Some(limit) = invoke.deadline.or(declared) {
            let at = cx.engine_now() + limit;
            let ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
            cx.engine.set_deadline(id, at, ms);
        }
        // The `Start`s go first, then the staged inputs' bytes; tasks here that read none of
        // them start before their bytes are copied.
        let staging = rest.peers.start(id, &key, starting, &mut cx);
        self.apply_actions(now);
        let mut out = Vec::new();
        let (mut cx, rest) = self.parts(now);
        rest.peers.stage(staging, rest.calls, &mut cx, &mut out);
        self.followups(out, now);
    }

    fn apply_actions(&mut self, now: Instant) -> bool {
        let mut any = false;
        while let Some(a) = self.engine.poll_action() {
            any = true;
            let (mut cx, rest) = self.parts(now);
            match a {
                Action::Trigger {
                    invocation,
                    node,
                    element,
                    attempt,
                    inputs,
                } => {
                    rest.calls.trigger(invocation, node, element, attempt, inputs, &mut cx);
                }
                Action::Cancel {
                    invocation,
                    node,
                    element,
                    timed_out,
                } => rest.calls.cancel(invocation, node, element, timed_out, &mut cx),
                Action::Caught {
                    invocation,
                    node,
                    element,
                    failure,
                } => rest.peers.tell_caught(invocation, node, element, &failure, &cx),
                Action::Release { object } => rest.calls.release(object, &mut cx),
                Action::Finished { invocation, result } => self.finish(invocation, result, now),
            }
        }
        let ended = self.invocations.take_just_ended();
        if !ended.is_empty() {
            let (mut cx, rest) = self.parts(now);
            for invocation in ended {
                rest.calls.clear_ended(invocation, &mut cx);
            }
        }
        any
    }

    /// A call's outputs are sealed: a central engine's call stores them; otherwise the other
    /// workers are told (once their copies are written) and the engine learns of it.
    fn after_seal(&mut self, sealed: Sealed, now: Instant) {
        let (mut cx, rest) = self.parts(now);
        rest.calls.spill_left(&sealed.call, &mut cx);
        if sealed.call.execute.is_some() {
            return rest.central.store_outputs(sealed, rest.calls, &mut cx);
        }
        if let Some(told) = rest.peers.tell_done(sealed, &mut cx) {
            self.told(told, now);
        }
    }

    /// A completion is told: the engine learns of it, then the other workers.
    fn told(&mut self, told: Told, now: Instant) {
        let engine_now = now.saturating_duration_since(self.origin);
        let Told {
            invocation,
            node,
            element,
            objs,
            msg,
        } = told;
        self.engine.function_done(engine_now, invocation, node, element, objs);
        if let Some((others, msg)) = msg {
            self.peers.broadcast(&others, &msg);
        }
    }

    /// The engine ended an invocation (or its deferred end can come now).
    fn finish(&mut self, invocation: InvocationId, result: Outcome, now: Instant) {
        let results: Vec<u64> = match &result {
            Ok(values) => values.iter().flat_map(|(_, v)| object_ids(v)).collect(),
            Err(_) => Vec::new(),
        };
        // Each output's objects, (object, bytes), for keeping those the report shows not whole.
        let outputs: Vec<(String, Vec<(u64, u64)>)> = match &result {
            Ok(values) => values
                .iter()
                .map(|(name, v)| (name.clone(), refs(v).iter().map(|r| (r.id, r.len)).collect()))
                .filter(|(_, objs): &(String, Vec<(u64, u64)>)| !objs.is_empty())
                .collect(),
            Err(_) => Vec::new(),
        };
        let (cx, rest) = self.parts(now);
        let arriving = !rest.peers.ending(invocation, &result, &cx);
        if arriving || self.show_results(invocation, &result) {
            // Result objects are still arriving, or being read for the report: it ends when
            // they are here; the others wait.
            for id in &results {
                if let Some(o) = self.objects.get_mut(*id) {
                    o.held = true;
                }
            }
            if let Some(inv) = self.invocations.get_mut(invocation) {
                if arriving {
                    inv.deferred_at.get_or_insert(now);
                } else {
                    inv.finished_at.get_or_insert(now);
                }
                inv.deferred = Some(result);
            }
            return;
        }
        let Some(mut inv) = self.invocations.remove(invocation) else {
            return;
        };
        let end = inv.finished_at.unwrap_or(now);
        if let Some(at) = inv.deferred_at {
            inv.result_wait_us = us_between(at, end);
        }
        self.invocations.ended(invocation);
        self.peers.forget(invocation);
        let Some(reply) = inv.reply.take() else {
            // Not the entry: the entry reports.
            self.remove_if_dropped(&inv.wf, now);
            return;
        };
        let e2e_us = us_between(inv.start, end);
        self.metrics.invocation(if result.is_ok() { "ok" } else { "failed" });
        self.metrics.invocation_seconds.observe(e2e_us / 1e6);
        let installed = self.installs.get(&inv.wf);
        let name = self.config.name.clone();
        let worker_of = |n| installed.map_or_else(String::new, |i| i.worker_of(n, &name));
        let report = inv.report(Ending {
            invocation,
            outcome: result,
            wf: installed.map(|i| &*i.wf),
            worker_of: &worker_of,
            objects: &self.objects,
            arena: &self.arena,
            e2e_us,
        });
        let (kept, before) = match inv.keep_outputs {
            Some(keep) if report.status == "ok" => {
                (self.kept).keep_unshown(&mut self.objects, invocation, &report.output, outputs, now + keep)
            }
            _ => (Vec::new(), Vec::new()),
        };
        self.let_go(&before, now);
        reply.send(Ok(report));
        let go: Vec<u64> = results.into_iter().filter(|id| !kept.contains(id)).collect();
        self.let_go(&go, now);
        self.remove_if_dropped(&inv.wf, now);
    }

    /// Starts reading the result bytes the entry's report shows that are out of the arena;
    /// whether the report waits for some.
    fn show_results(&mut self, invocation: InvocationId, result: &Outcome) -> bool {
        let Ok(values) = result else { return false };
        if self.invocations.get(invocation).is_none_or(|i| i.reply.is_none()) {
            return false;
        }
        let reads = self
            .invocations
            .unread_results(invocation, values, &self.objects, &self.arena);
        for (object, source) in reads {
            let token = self.io.fetch(Part::Report, source);
            self.invocations.showing(token, invocation, object);
        }
        self.invocations.get(invocation).is_some_and(|i| i.showing > 0)
    }

    /// An invocation's result objects are read: those released meanwhile are freed.
    fn let_go(&mut self, results: &[u64], now: Instant) {
        for id in results {
            if let Some(o) = self.objects.get_mut(*id) {
                o.held = false;
            }
        }
        let (mut cx, rest) = self.parts(now);
        rest.calls.unpin(results, &mut cx);
    }

    /// Ends an invocation with an error decided here (`quiet`: decided elsewhere, not told).
    fn abort(&mut self, invocation: InvocationId, error: String, quiet: bool, now: Instant) {
        let Some(inv) = self.invocations.get_mut(invocation) else {
            return;
        };
        inv.quiet |= quiet;
        match inv.deferred.take() {
            Some(deferred) => {
                // The engine is done with it; its end waited for result objects that will not
                // come.
                self.finish(invocation, Err(Failure::Aborted(error)), now);
                if let Ok(values) = deferred {
                    let held: Vec<u64> = values.iter().flat_map(|(_, v)| object_ids(v)).collect();
                    self.let_go(&held, now);
                }
            }
            None => self.engine.abort(invocation, error),
        }
    }

    // ---- what the daemon holds -------------------------------------------------------------

    fn stats(&self) -> Stats {
        Stats {
            arena_used: self.arena.used(),
            arena_capacity: self.arena.capacity(),
            objects: self.objects.len(),
            spilled_objects: self.objects.spilled_count(),
            invocations: self.invocations.len(),
            calls: self.calls.len(),
            instances: self.pools.live(),
            spills_total: self.objects.spills_total(),
            instances_started: self.pools.started(),
        }
    }

    fn metrics_text(&self) -> String {
        let mut versions: BTreeMap<&str, u64> = BTreeMap::new();
        for (k, _) in self.installs.iter() {
            *versions.entry(k.0.as_str()).or_default() += 1;
        }
        let pools = self
            .pools
            .iter()
            .filter(|p| !p.retired)
            .map(|p| {
                let runtime = match p.key.runner {
                    Runner::Process(_) => "process",
                    Runner::Container(_) => "container",
                };
                (
                    p.pack_name.as_str(),
                    p.key.domain.as_str(),
                    runtime,
                    p.instances.len(),
                    p.queue.len(),
                )
            })
            .collect();
        let quotas = self
            .installs
            .iter()
            .map(|(k, i)| (k.0.as_str(), k.1, i.quota, self.objects.resident(k)))
            .collect();
        let gauges = Gauges {
            spills_total: self.objects.spills_total(),
            spill_failures_total: self.objects.spill_failures_total(),
            instances_started: self.pools.started(),
            arena_used: self.arena.used(),
            arena_capacity: self.arena.capacity(),
            arena_segments: self.arena.segments(),
            arena_resident: self.arena.resident(),
            arena_trims: self.arena.trims(),
            invocations: self.invocations.len(),
            instances: self.pools.live(),
            kept_bytes: self.kept.bytes(),
            kept_invocations: self.kept.len(),
            versions,
            pools,
            quotas,
        };
        metrics::text(&self.metrics, &gauges)
    }
}
