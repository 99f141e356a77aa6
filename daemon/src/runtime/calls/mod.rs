//! Calls: an engine's trigger becomes a call queued in its pool; when an instance has a free
//! thread, its inputs are resolved to arena references (workflow inputs and foreach elements
//! written into the arena, spilled objects loaded back) and an extent is reserved for each
//! declared output, then it is pushed on the instance's ring. Every reservation, input copy
//! and load of a call is freed when the call ends, whatever the outcome.
//!
//! A call whose inputs are out of the arena waits while they are loaded back (by the storage
//! driver, into extents of its own), like a call whose inputs still arrive from other workers;
//! a call that finds the arena full waits for running calls, transfers and spills to free
//! room (backpressure).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use faasflow_core::NodeId;
use faasflow_core::dag::{FailureKind, ValueKind};
use faasflow_core::engine::{Engine, InputValue, InvocationId, ObjectRef};
use faasflow_core::report::EdgeRecord;
use faasflow_shm::frame::{self, Frame};

mod chain;
mod prepare;

use self::prepare::{Loads, Unprepared, prepare, unprepare};
use crate::api::{Answer, ExecError, Executed};
use crate::config::DaemonConfig;
use crate::remote::RemoteIoError;
use crate::runtime::install::{Installs, Site};
use crate::runtime::invocations::{Invocations, object_ids};
use crate::runtime::io::Io;
use crate::runtime::metrics::{Measure, Metrics};
use crate::runtime::objects::{Objects, Place};
use crate::runtime::pools::Pools;
use crate::runtime::types::{WfKey, us_between};
use crate::store::arena::{Arena, Extent};

/// Largest JSON value (a `json`/`list` output, or an input written into the arena) the daemon
/// parses or writes.
pub(crate) const MAX_JSON: u64 = 64 << 20;
/// The timeout of an abandoned call whose workflow is no longer installed, ms.
const DEFAULT_ABANDONED_TIMEOUT_MS: u64 = 60_000;

/// Where a central engine's call's result goes.
pub(crate) type ExecReply = Answer<Result<Executed, ExecError>>;

/// One call.
pub(crate) struct Call {
    pub(crate) invocation: InvocationId,
    pub(crate) node: NodeId,
    pub(crate) element: Option<u32>,
    pub(crate) pool: usize,
    pub(crate) wf: WfKey,
    /// What to send (its `function` index is set when an instance is chosen).
    pub(crate) invoke: frame::Invoke,
    pub(crate) function: String,
    /// Output kinds by name, to parse `json`/`list` outputs.
    pub(crate) kinds: Vec<(String, ValueKind)>,
    /// Reserved and granted extents by output name (several for one name only after Alloc).
    pub(crate) extents: Vec<(String, Extent)>,
    /// Input copies, freed at the end of the call.
    pub(crate) temps: Vec<Extent>,
    /// Inputs loaded back into the arena for it: object → (extent, tier of the edge, µs);
    /// freed at the end of the call.
    pub(crate) loaded: HashMap<u64, (Extent, &'static str, f64)>,
    /// Loads for it in flight.
    loading: u32,
    /// Since when it waits for loads (they run side by side: its wait is the wall-clock time
    /// until the last is through), and the time it waited for them, µs.
    loading_since: Option<Instant>,
    load_wait_us: f64,
    /// Why a load for it failed (it fails once the others are through).
    load_error: Option<String>,
    /// Objects read (id), for the edge records.
    pub(crate) reads: Vec<u64>,
    /// Objects loaded for it: id → (tier of the edge, µs).
    reload_us: HashMap<u64, (&'static str, f64)>,
    pub(crate) instance: Option<u32>,
    pub(crate) record: usize,
    pub(crate) abandoned: bool,
    /// Abandoned while it runs (its invocation ended): when its instance is stopped if it
    /// has not returned by then (the function's timeout from the abandon), so that a hung
    /// function of an ended invocation never holds its instance for good.
    stop_by: Option<Instant>,
    /// The engine's inputs, resolved to arena references when the call is sent.
    pub(crate) pending: Vec<(String, InputValue)>,
    /// Declared outputs: name, bytes to reserve, kind.
    outputs: Vec<(String, u64, ValueKind)>,
    synthetic: bool,
    pub(crate) step: String,
    /// Its edge records (indices in the invocation's `edges`).
    pub(crate) edge_range: std::ops::Range<usize>,
    /// Run for a central engine: where its result goes (not to this daemon's engine).
    pub(crate) execute: Option<ExecReply>,
    /// Input objects fetched for it alone (freed when it ends).
    pub(crate) owned: Vec<u64>,
    /// When the engine triggered it.
    triggered: Instant,
    /// Its memory is measured ([`super::metrics::MEASURED_CALLS`]).
    measured: bool,
    /// Sent to run after another call ([`frame::Invoke::after`]): its inputs, each an output of
    /// that call (input, output), and the outputs reserved for that call (the instance runs
    /// it when all of those were written).
    prior: Vec<(String, String)>,
    after_outputs: Vec<String>,
    /// Its instance started it right after the call it follows ended, at this time.
    started_at: Option<Instant>,
    /// Started by its instance and not triggered by the engine yet.
    awaiting: bool,
    /// Its completion, when it came before its trigger (handled once triggered).
    early: Option<frame::Complete>,
}

impl Call {
    /// A new call `id` of `node` (foreach `element`) of `invocation`, run at `site` with
    /// `inputs`, triggered at `now`, recorded at `record` of its invocation.
    #[allow(clippy::too_many_arguments)]
    fn new(
        id: u64,
        (invocation, node, element): (InvocationId, NodeId, Option<u32>),
        wf: WfKey,
        site: Site,
        step: String,
        record: usize,
        inputs: Vec<(String, InputValue)>,
        now: Instant,
    ) -> Call {
        Call {
            invocation,
            node,
            element,
            pool: site.pool,
            wf,
            invoke: frame::Invoke {
                call: id,
                after: 0,
                function: 0,
                params: site.params,
                inputs: Vec::new(),
                outputs: Vec::new(),
            },
            function: site.function,
            kinds: site.outputs.iter().map(|(n, _, k)| (n.clone(), *k)).collect(),
            extents: Vec::new(),
            temps: Vec::new(),
            loaded: HashMap::new(),
            loading: 0,
            loading_since: None,
            load_wait_us: 0.0,
            load_error: None,
            reads: Vec::new(),
            reload_us: HashMap::new(),
            instance: None,
            record,
            abandoned: false,
            stop_by: None,
            pending: inputs,
            outputs: site.outputs,
            synthetic: site.synthetic,
            step,
            edge_range: 0..0,
            execute: None,
            owned: Vec::new(),
            triggered: now,
            measured: false,
            prior: Vec::new(),
            after_outputs: Vec::new(),
            started_at: None,
            awaiting: false,
            early: None,
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.invoke.call
    }

    /// The objects its inputs name.
    fn input_objects(&self) -> impl Iterator<Item = u64> + '_ {
        self.pending.iter().flat_map(|(_, v)| object_ids(v))
    }
}

/// What a call's life touches besides the calls themselves.
pub(crate) struct Cx<'a> {
    pub(crate) config: &'a DaemonConfig,
    /// This loop turn's time.
    pub(crate) now: Instant,
    /// The engine's time origin.
    pub(crate) origin: Instant,
    pub(crate) engine: &'a mut Engine,
    pub(crate) arena: &'a mut Arena,
    pub(crate) objects: &'a mut Objects,
    pub(crate) pools: &'a mut Pools,
    pub(crate) invocations: &'a mut Invocations,
    pub(crate) installs: &'a Installs,
    pub(crate) metrics: &'a mut Metrics,
    pub(crate) measure: &'a mut Measure,
    pub(crate) io: &'a mut Io,
    /// The daemon is stopping: no instance is started.
    pub(crate) stopping: bool,
}

impl Cx<'_> {
    /// The engine's clock now.
    pub(crate) fn engine_now(&self) -> Duration {
        self.now.saturating_duration_since(self.origin)
    }

    /// Starts one instance of `pool`.
    pub(crate) fn spawn(&mut self, pool: usize) -> u32 {
        let c = self.config;
        let threads = self.pools.get(pool).shape.threads;
        self.pools
            .spawn(pool, self.arena, threads, c.spawn_timeout, c.ring_capacity)
    }
}

/// Every call, sent or waiting.
pub(crate) struct Calls {
    map: HashMap<u64, Call>,
    next: u64,
    /// Calls waiting for input objects still arriving from other workers, or being loaded.
    awaiting: Vec<u64>,
    /// A call waits for arena room: dispatch again when something ends.
    waiting_for_room: bool,
    /// Loads of inputs in flight.
    loads: Loads,
    /// Instances' requests for room that wait for spills to end: (instance, request).
    grants: Vec<(u32, frame::Alloc)>,
    /// Where frames are encoded (cleared, never shrunk).
    encode_buf: Vec<u8>,
    /// Calls sent to run after a running call, by that call ([`chain`]).
    chained: HashMap<u64, Call>,
    /// Calls whose follower started, until their outputs are sealed: call → follower.
    followers: HashMap<u64, u64>,
    /// Followers started and not triggered yet, by (invocation, node, element).
    started: HashMap<(InvocationId, u32, Option<u32>), u64>,
    /// Completions to handle now: of followers triggered after they ended, or abandoned.
    pub(crate) replay: Vec<(u32, frame::Complete)>,
}

impl Default for Calls {
    fn default() -> Self {
        Calls {
            map: HashMap::new(),
            next: 1,
            awaiting: Vec::new(),
            waiting_for_room: false,
            loads: Loads::default(),
            grants: Vec::new(),
            encode_buf: Vec::new(),
            chained: HashMap::new(),
            followers: HashMap::new(),
            started: HashMap::new(),
            replay: Vec::new(),
        }
    }
}

impl Calls {
    pub(crate) fn get(&self, id: u64) -> Option<&Call> {
        self.map.get(&id)
    }

    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut Call> {
        self.map.get_mut(&id)
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Takes a call out (it ended).
    pub(crate) fn take(&mut self, id: u64) -> Option<Call> {
        self.map.remove(&id)
    }

    /// A new id for something counted with calls (ids are never reused).
    pub(crate) fn new_id(&mut self) -> u64 {
        let id = self.next;
        self.next += 1;
        id
    }

    /// The function call `id` runs (empty when it is gone).
    pub(crate) fn function(&self, id: u64) -> String {
        self.map.get(&id).map(|c| c.function.clone()).unwrap_or_default()
    }

    /// The function and invocation of running call `id`.
    pub(crate) fn origin(&self, id: u64) -> Option<(&str, InvocationId)> {
        self.map.get(&id).map(|c| (c.function.as_str(), c.invocation))
    }

    /// Whether some call runs on an instance.
    fn any_running(&self) -> bool {
        self.map.values().any(|c| c.instance.is_some())
    }

    /// The objects calls read: what no spill may move.
    fn held(&self) -> HashSet<u64> {
        self.map.values().flat_map(|c| c.reads.iter().copied()).collect()
    }

    /// Whether a call that was sent reads `object`.
    pub(crate) fn read_by_a_sent_call(&self, object: u64) -> bool {
        self.map
            .values()
            .any(|c| c.instance.is_some() && c.reads.contains(&object))
    }

    // ---- triggers --------------------------------------------------------------------------

    /// The engine triggered `node` (foreach `element`, attempt `attempt`) of `invocation`:
    /// makes its call and queues it (or keeps it while inputs arrive). Returns the call.
    pub(crate) fn trigger(
        &mut self,
        invocation: InvocationId,
        node: NodeId,
        element: Option<u32>,
        attempt: u32,
        inputs: Vec<(String, InputValue)>,
        cx: &mut Cx<'_>,
    ) -> Option<u64> {
        let inputs = match self.adopt((invocation, node, element), attempt, inputs, cx) {
            Ok(id) => return Some(id),
            Err(inputs) => inputs,
        };
        let mut inputs = inputs;
        let inv = cx.invocations.get_mut(invocation)?;
        let wf_key = inv.wf.clone();
        let installed = cx.installs.get(&wf_key)?;
        let site = installed.sites.get(&(node.index() as u32))?.clone();
        let name = installed.wf.graph[node].name.clone();
        if !inv.staged.is_empty()
            && let Some(task) = installed.wf.graph[node].task()
        {
            read_staged_inputs(task, &inv.staged, &mut inputs, cx.objects);
        }
        let record = inv.record(name.clone(), &cx.config.name, element, attempt, cx.now);
        let id = self.new_id();
        inv.running.insert((node.index() as u32, element), id);
        let pool = site.pool;
        let call = Call::new(
            id,
            (invocation, node, element),
            wf_key.clone(),
            site,
            name,
            record,
            inputs,
            cx.now,
        );
        let waits = inputs_arriving(&call, cx.objects);
        self.prewarm(&wf_key, node, cx);
        self.map.insert(id, call);
        if waits {
            // Inputs from other workers are still on their way.
            self.awaiting.push(id);
            return Some(id);
        }
        cx.pools.get_mut(pool).queue.push_back(id);
        self.dispatch(pool, cx);
        Some(id)
    }

    /// A function of `wf` starts at `node`: the pools of the tasks that follow it here and
    /// have no instance, running or starting, start one now, so that they are warm by the
    /// time they are triggered.
    fn prewarm(&mut self, wf: &WfKey, node: NodeId, cx: &mut Cx<'_>) {
        if cx.stopping {
            return;
        }
        let Some(pools) = cx
            .installs
            .get(wf)
            .and_then(|i| i.successor_pools.get(&(node.index() as u32)))
        else {
            return;
        };
        for &p in pools {
            let pool = cx.pools.get(p);
            if pool.instances.is_empty() && pool.spawning == 0 {
                cx.spawn(p);
            }
        }
    }

    /// Something arrived: the calls that waited for it and need nothing more go to their
    /// pools' queues and are dispatched.
    pub(crate) fn inputs_arrived(&mut self, cx: &mut Cx<'_>) {
        let mut pools = Vec::new();
        for c in self.awaiting.clone() {
            let Some(call) = self.map.get(&c) else { continue };
            if call.loading > 0 || inputs_arriving(call, cx.objects) {
                continue;
            }
            let pool = call.pool;
            // Its data wait: from its trigger until its last input arrived.
            if let Some(rec) = cx
                .invocations
                .get_mut(call.invocation)
                .and_then(|i| i.functions.get_mut(call.record))
            {
                rec.data_us = us_between(call.triggered, cx.now);
            }
            self.awaiting.retain(|&x| x != c);
            cx.pools.get_mut(pool).queue.push_back(c);
            if !pools.contains(&pool) {
                pools.push(pool);
            }
        }
        for p in pools {
            self.dispatch(p, cx);
        }
    }

    // ---- dispatch --------------------------------------------------------------------------

    /// Sends queued calls of `pool` to instances with a free thread; starts instances when
    /// none has one and the pool may grow.
    pub(crate) fn dispatch(&mut self, pool: usize, cx: &mut Cx<'_>) {
        let shape = cx.pools.get(pool).shape;
        let threads = shape.threads as usize;
        while let Some(&call_id) = cx.pools.get(pool).queue.front() {
            // Prefer the instance that produced an input (in-process hand-off), then the least
            // loaded one.
            let producers: Vec<u32> = self
                .map
                .get(&call_id)
                .map(|c| {
                    c.input_objects()
                        .filter_map(|o| cx.objects.get(o).map(|o| o.instance))
                        .collect()
                })
                .unwrap_or_default();
            let Some(inst_id) = cx.pools.choose(pool, &producers, threads) else {
                if cx.pools.get(pool).should_grow(shape.max, threads) {
                    cx.spawn(pool);
                }
                return;
            };
            let Some(mut call) = self.map.remove(&call_id) else {
                cx.pools.get_mut(pool).queue.pop_front();
                continue;
            };
            let prepared = self
                .loads
                .start(&mut call, &self.map, cx)
                .and_then(|()| prepare(&mut call, &self.map, cx));
            if prepared.is_err() {
                unprepare(&mut call, cx.arena);
            }
            self.map.insert(call_id, call);
            match prepared {
                Ok(()) => {
                    cx.pools.get_mut(pool).queue.pop_front();
                    self.send(call_id, inst_id, cx);
                }
                Err(Unprepared::Loading) => {
                    cx.pools.get_mut(pool).queue.pop_front();
                    self.awaiting.push(call_id);
                }
                Err(Unprepared::Full(m)) => {
                    // Running calls, transfers and spills will free memory: wait for them
                    // (backpressure). With none, nothing ever will.
                    if self.any_running() || cx.objects.transfers > 0 || cx.io.in_flight() > 0 {
                        self.waiting_for_room = true;
                        return;
                    }
                    cx.pools.get_mut(pool).queue.pop_front();
                    self.fail(call_id, m, FailureKind::Data, cx);
                }
                Err(Unprepared::Fatal(m)) => {
                    cx.pools.get_mut(pool).queue.pop_front();
                    self.fail(call_id, m, FailureKind::Data, cx);
                }
            }
        }
    }

    /// After something ended: the calls and grants that waited for arena room try again.
    pub(crate) fn retry_room(&mut self, cx: &mut Cx<'_>) -> bool {
        if !self.waiting_for_room && self.grants.is_empty() {
            return false;
        }
        self.waiting_for_room = false;
        for (inst, a) in std::mem::take(&mut self.grants) {
            self.answer_alloc(inst, a, true, cx);
        }
        for p in 0..cx.pools.count() {
            if !cx.pools.get(p).queue.is_empty() {
                self.dispatch(p, cx);
            }
        }
        true
    }

    /// Load `token` of a call's input ended: when the call's loads are all through, it goes
    /// back to the front of its pool's queue (or fails, when one failed).
    pub(crate) fn load_done(&mut self, token: u64, result: Result<(), RemoteIoError>, us: f64, cx: &mut Cx<'_>) {
        let Some(loaded) = self.loads.done(token, result, us) else {
            return;
        };
        if let Some(o) = cx.objects.get_mut(loaded.object) {
            o.io = o.io.saturating_sub(1);
        }
        let Some(call) = self.map.get_mut(&loaded.call) else {
            // The call ended meanwhile.
            cx.arena.free(loaded.extent);
            self.unpin(&[loaded.object], cx);
            return;
        };
        call.loading = call.loading.saturating_sub(1);
        match loaded.result {
            Ok((tier, t)) => {
                call.loaded.insert(loaded.object, (loaded.extent, tier, t));
            }
            Err(e) => {
                cx.arena.free(loaded.extent);
                call.load_error.get_or_insert(e.to_string());
            }
        }
        let (id, pool, loading) = (call.id(), call.pool, call.loading);
        if loading == 0
            && let Some(since) = call.loading_since.take()
        {
            call.load_wait_us += us_between(since, cx.now);
        }
        if loading == 0 {
            // A call parked for its loads goes back to the front of its queue; one still in
            // the queue (it waits for room) is dispatched from there.
            let parked = self.awaiting.contains(&id);
            match self.map.get_mut(&id).and_then(|c| c.load_error.take()) {
                Some(m) => self.fail(id, m, FailureKind::Data, cx),
                None if parked => {
                    self.awaiting.retain(|&c| c != id);
                    cx.pools.get_mut(pool).queue.push_front(id);
                    self.dispatch(pool, cx);
                }
                None => {}
            }
        }
        self.unpin(&[loaded.object], cx);
    }

    // ---- sending ---------------------------------------------------------------------------

    /// Starts measuring the memory of call `call_id` on instance `inst_id` when it is one to
    /// measure: the instance's peak starts over when no other call runs there (with others
    /// running, the call shares their peak).
    fn start_measuring(&mut self, call_id: u64, inst_id: u32, cx: &mut Cx<'_>) {
        let Some(call) = self.map.get_mut(&call_id) else {
            return;
        };
        call.measured = cx.measure.choose(&call.function);
        if call.measured
            && let Some(inst) = cx.pools.instance(inst_id)
            && inst.calls.is_empty()
        {
            cx.measure.reset(inst.pid);
        }
    }

    /// The peak memory of instance `inst` while call `call_id` ran, if the call is measured.
    pub(crate) fn peak_of(&self, call_id: u64, inst: Option<u32>, cx: &mut Cx<'_>) -> Option<u64> {
        if !self.map.get(&call_id)?.measured {
            return None;
        }
        let pid = cx.pools.instance(inst?)?.pid;
        cx.measure.peak(pid)
    }

    /// Pushes a prepared call on instance `inst_id`'s ring and records how each of its inputs
    /// reached the instance.
    fn send(&mut self, call_id: u64, inst_id: u32, cx: &mut Cx<'_>) {
        self.start_measuring(call_id, inst_id, cx);
        let Some(call) = self.map.get_mut(&call_id) else {
            return;
        };
        let Some(inst) = cx.pools.instance_mut(inst_id) else {
            return;
        };
        let Some(&index) = inst.functions.get(&call.function) else {
            let f = call.function.clone();
            self.fail(
                call_id,
                format!("its instance does not serve function `{f}`"),
                FailureKind::Crash,
                cx,
            );
            return;
        };
        call.invoke.function = index;
        call.instance = Some(inst_id);
        let pushed = match encode_invoke(&mut call.invoke, &mut self.encode_buf) {
            Err(e) => Err(format!("cannot send the call: {e}")),
            Ok(()) => inst
                .send(&self.encode_buf)
                .map_err(|e| format!("cannot send the call to its instance: {e}")),
        };
        if let Err(e) = pushed {
            call.instance = None;
            self.fail(call_id, e, FailureKind::Crash, cx);
            return;
        }
        inst.calls.insert(call_id);
        // Its outputs will be spilled to a file: the file thread wakes now, while the function
        // runs (the map lookups only for a call with outputs, on a daemon without Redis).
        if !call.extents.is_empty()
            && !cx.io.has_store()
            && cx.objects.resident(&call.wf) >= cx.installs.get(&call.wf).map_or(u64::MAX, |i| i.quota)
        {
            cx.io.expect_file_work();
        }
        cx.metrics
            .trigger_seconds
            .observe(cx.now.saturating_duration_since(call.triggered).as_secs_f64());
        cx.metrics.calls += 1;
        let fan_out = prepare::element_edges(call, cx.installs);
        let Some(inv) = cx.invocations.get_mut(call.invocation) else {
            return;
        };
        let rec = &mut inv.functions[call.record];
        rec.instance = Some(inst_id);
        rec.start_us = us_between(inv.start, cx.now);
        record_edges(call, inst_id, inv, (cx.objects, fan_out), cx.metrics);
        self.chain(call_id, inst_id, cx);
    }

    // ---- the end of a call -----------------------------------------------------------------

    /// Ends a call with an error: frees what it holds and tells the engine (unless the engine
    /// already gave up on it), or the central engine it runs for.
    pub(crate) fn fail(&mut self, call_id: u64, message: String, kind: FailureKind, cx: &mut Cx<'_>) {
        let instance = self.map.get(&call_id).and_then(|c| c.instance);
        let peak = instance.and_then(|i| self.peak_of(call_id, Some(i), cx));
        let Some(mut call) = self.map.remove(&call_id) else {
            return;
        };
        self.predecessor_gone(&mut call, cx);
        self.free_call(&call, cx);
        if let Some(inst) = instance.and_then(|i| cx.pools.instance_mut(i)) {
            inst.ended(call_id, call.invoke.function, call.invocation, cx.now);
        }
        cx.pools.get_mut(call.pool).queue.retain(|&c| c != call_id);
        self.awaiting.retain(|&c| c != call_id);
        if call.awaiting {
            // Never triggered: the engine does not know of it.
            self.started
                .remove(&(call.invocation, call.node.index() as u32, call.element));
            return;
        }
        if call.abandoned {
            return;
        }
        if let Some(inv) = cx.invocations.get_mut(call.invocation) {
            inv.running.remove(&(call.node.index() as u32, call.element));
            let end_us = inv.elapsed_us(cx.now);
            let rec = &mut inv.functions[call.record];
            rec.end_us = end_us;
            rec.error = Some(message.clone());
            rec.failure = Some(kind.as_str().to_owned());
            rec.peak_memory_bytes = peak;
        }
        if let Some(reply) = call.execute.take() {
            self.central_done(&call, cx);
            let m = format!("step `{}` failed on worker `{}`: {message}", call.step, cx.config.name);
            reply.send(Err(ExecError::new(m, kind)));
            return;
        }
        let now = cx.engine_now();
        cx.engine
            .function_failed(now, call.invocation, call.node, call.element, message, kind);
    }

    /// Frees what an ended call held (it is already out of `calls`): its reservations, input
    /// copies and loads, and the objects whose release waited for it.
    pub(crate) fn free_call(&self, call: &Call, cx: &mut Cx<'_>) {
        for (_, e) in &call.extents {
            cx.arena.free(*e);
        }
        for e in &call.temps {
            cx.arena.free(*e);
        }
        for (e, _, _) in call.loaded.values() {
            cx.arena.free(*e);
        }
        self.unpin(&call.reads, cx);
        self.spill_left(call, cx);
    }

    /// A central-engine call ended: its inputs go, and the invocation's state when nothing of
    /// it runs here any more.
    pub(crate) fn central_done(&self, call: &Call, cx: &mut Cx<'_>) {
        for id in &call.owned {
            cx.objects.mark_released(*id);
        }
        self.unpin(&call.owned, cx);
        drop_central_state(call.invocation, cx.invocations);
    }

    /// The engine gave up on a call (its invocation ended, or it timed out).
    pub(crate) fn cancel(
        &mut self,
        invocation: InvocationId,
        node: NodeId,
        element: Option<u32>,
        timed_out: bool,
        cx: &mut Cx<'_>,
    ) {
        let Some(call_id) = cx
            .invocations
            .get_mut(invocation)
            .and_then(|inv| inv.running.remove(&(node.index() as u32, element)))
        else {
            return;
        };
        let Some(call) = self.map.get_mut(&call_id) else {
            return;
        };
        call.abandoned = true;
        let (instance, function, record) = (call.instance, call.function.clone(), call.record);
        let call_wf = call.wf.clone();
        if let Some(inv) = cx.invocations.get_mut(invocation) {
            let end_us = inv.elapsed_us(cx.now);
            let rec = &mut inv.functions[record];
            rec.end_us = end_us;
            rec.error = Some(if timed_out { "timed out" } else { "cancelled" }.into());
            rec.failure = timed_out.then(|| FailureKind::Timeout.as_str().to_owned());
        }
        let Some(inst_id) = instance else {
            // Still queued: drop it.
            self.fail(call_id, String::new(), FailureKind::Crash, cx);
            return;
        };
        // A call past its deadline may never return: stop its instance. Otherwise let it end
        // and drop its outputs (other invocations may be running in the same instance), but
        // no later than its timeout from now.
        if timed_out {
            if let Some(inst) = cx.pools.instance_mut(inst_id) {
                inst.kill(format!("function `{function}` running in it timed out"));
            }
        } else {
            let timeout = cx
                .installs
                .get(&call_wf)
                .and_then(|i| i.wf.graph[node].task().map(|t| t.spec.timeout_ms))
                .unwrap_or(DEFAULT_ABANDONED_TIMEOUT_MS);
            call.stop_by = Some(cx.now + Duration::from_millis(timeout));
            if cx.invocations.cancelled.contains(invocation) {
                self.stop_cancelled(invocation, cx.pools);
            }
        }
    }

    /// Stops the instances of `invocation`'s abandoned calls that run nothing else: the work
    /// of a cancelled invocation ends at once (an instance running other invocations' calls
    /// too is left to the calls' timeouts). Returns how many it stopped.
    pub(crate) fn stop_cancelled(&self, invocation: InvocationId, pools: &mut Pools) -> usize {
        let mut stopped = 0;
        for c in self.map.values().filter(|c| c.invocation == invocation && c.abandoned) {
            // Every call it runs is an abandoned one of this invocation.
            let only_these = |k: &u64| {
                self.map
                    .get(k)
                    .is_some_and(|o| o.invocation == invocation && o.abandoned)
            };
            if let Some(inst) = c.instance.and_then(|i| pools.instance_mut(i))
                && inst.killed.is_none()
                && inst.calls.iter().all(only_these)
            {
                inst.kill(format!(
                    "function `{}` running in it was called by invocation {invocation}, which was cancelled",
                    c.function
                ));
                stopped += 1;
            }
        }
        stopped
    }

    /// Stops the instances of abandoned calls that ran past their `stop_by`.
    pub(crate) fn stop_overdue(&self, now: Instant, pools: &mut Pools) {
        for c in self.map.values().filter(|c| c.stop_by.is_some_and(|t| t <= now)) {
            if let Some(inst) = c.instance.and_then(|i| pools.instance_mut(i))
                && inst.killed.is_none()
            {
                inst.kill(format!(
                    "function `{}` running in it for an invocation that had ended ran past its timeout",
                    c.function
                ));
            }
        }
    }

    // ---- objects ---------------------------------------------------------------------------

    /// The engine is done with `object`. Its bytes are freed at once, unless a call that was
    /// sent still reads them (a call of a failed invocation, left to finish) or something else
    /// still needs them: then when that ends, so that nothing is ever written under a running
    /// function.
    pub(crate) fn release(&self, object: u64, cx: &mut Cx<'_>) {
        if self.read_by_a_sent_call(object) || cx.objects.get(object).is_some_and(|o| o.busy()) {
            cx.objects.mark_released(object);
            return;
        }
        self.free_object(object, cx);
    }

    /// Frees the objects of `reads` whose release waited for what just ended.
    pub(crate) fn unpin(&self, reads: &[u64], cx: &mut Cx<'_>) {
        for &id in reads {
            let idle = cx.objects.get(id).is_some_and(|o| o.released && !o.busy());
            if idle && !self.read_by_a_sent_call(id) {
                self.free_object(id, cx);
            }
        }
    }

    /// Frees an object now.
    pub(crate) fn free_object(&self, object: u64, cx: &mut Cx<'_>) {
        if let Some(obj) = cx.objects.free(object, cx.arena, cx.io)
            && let Some(inv) = cx.invocations.get_mut(obj.invocation)
        {
            inv.objects.remove(&object);
        }
    }

    /// After the engine's releases for an invocation that just ended: frees what it never
    /// knew of (objects that arrived before their Done), and forgets objects still arriving.
    pub(crate) fn clear_ended(&mut self, invocation: InvocationId, cx: &mut Cx<'_>) {
        self.abandon_started(invocation, cx);
        for id in cx.objects.unreleased_of(invocation) {
            // Freed now, or when its last push or the last call reading it ends.
            cx.objects.mark_released(id);
            self.unpin(&[id], cx);
        }
        cx.objects.forget_arriving(invocation);
    }

    // ---- room asked for by instances -------------------------------------------------------

    /// An instance asks for room for an output of its call: granted, refused, or kept until
    /// spills under way have made room.
    pub(crate) fn answer_alloc(&mut self, inst_id: u32, a: frame::Alloc, retrying: bool, cx: &mut Cx<'_>) {
        let Some(call) = self.map.get(&a.call).filter(|c| c.instance == Some(inst_id)) else {
            if !retrying {
                let why = format!("it asked for room for call {}, not its own", a.call);
                cx.pools.protocol_violation(inst_id, why);
            }
            return;
        };
        let segment = cx.installs.segment_of(&call.wf);
        let held = || self.held();
        let allocated = cx
            .objects
            .alloc_or_spill(cx.arena, segment, a.len.max(1), held, cx.io, &cx.config.name);
        let result = match allocated {
            Ok(e) => {
                if let Some(call) = self.map.get_mut(&a.call) {
                    call.extents.push((a.name.clone(), e));
                }
                Ok(frame::ObjectRef {
                    segment: e.segment,
                    offset: e.offset,
                    len: e.len,
                })
            }
            Err(_) if cx.objects.spilling() => {
                self.grants.push((inst_id, a));
                return;
            }
            Err(e) => Err(frame::Refusal(format!(
                "output `{}` needs {} bytes: {e}; give the daemon a larger arena (--arena-mib)",
                a.name, a.len
            ))),
        };
        let mut bytes = Vec::new();
        let frame = Frame::Grant(frame::Grant { call: a.call, result });
        if let Err(e) = frame.encode(&mut bytes) {
            return cx.pools.protocol_violation(inst_id, format!("grant: {e}"));
        }
        if let Some(inst) = cx.pools.instance_mut(inst_id)
            && let Err(e) = inst.send(&bytes)
        {
            cx.pools
                .protocol_violation(inst_id, format!("its ring cannot take a grant: {e}"));
        }
    }

    /// The calls whose central engine fetched input `object` for them alone.
    pub(crate) fn owning(&self, object: u64) -> Vec<u64> {
        self.map
            .iter()
            .filter(|(_, c)| c.owned.contains(&object))
            .map(|(id, _)| *id)
            .collect()
    }
}

/// Edge records of a call just sent to instance `inst_id`: how each input reached it.
fn record_edges(
    call: &mut Call,
    inst_id: u32,
    inv: &mut crate::runtime::invocations::InvState,
    (objects, fan_out): (&Objects, Vec<EdgeRecord>),
    metrics: &mut Metrics,
) {
    let to = inv.functions[call.record].name.clone();
    let first_edge = inv.edges.len();
    inv.edges
        .extend(fan_out.into_iter().map(|e| EdgeRecord { to: to.clone(), ..e }));
    for o in &call.reads {
        let Some(obj) = objects.get(*o) else { continue };
        let (tier, transfer_us) = match (call.reload_us.get(o), obj.transfer_us) {
            (Some((tier, t)), _) => (*tier, *t),
            (None, Some((tier, t))) => (tier, t),
            (None, None) if obj.instance == inst_id => ("in-process", 0.0),
            (None, None) => ("shared-memory", 0.0),
        };
        *metrics.bytes.entry(tier).or_default() += obj.len;
        inv.edges.push(EdgeRecord {
            from: obj.producer.clone(),
            to: to.clone(),
            bytes: obj.len,
            tier: tier.into(),
            transfer_us,
            from_element: obj.element,
            to_element: call.element,
        });
        if obj.transfer_us.is_some() {
            inv.data_us += transfer_us;
        }
    }
    call.edge_range = first_edge..inv.edges.len();
}

/// Inputs staged apart (their invocation's large inputs, landed as objects) are read as
/// those objects.
fn read_staged_inputs(
    task: &faasflow_core::dag::Task,
    staged: &HashMap<String, u64>,
    inputs: &mut [(String, InputValue)],
    objects: &Objects,
) {
    for (binding, v) in inputs.iter_mut() {
        if let InputValue::Json(_) = v
            && let Some(i) = task.reads_input_alone(binding)
            && let Some(&id) = staged.get(i)
            && let Some(o) = objects.get(id)
        {
            *v = InputValue::Object(ObjectRef {
                id,
                len: o.len,
                json: None,
            });
        }
    }
}

/// Whether some input object of `call` is still arriving from another worker (or from the
/// remote tier).
pub(crate) fn inputs_arriving(call: &Call, objects: &Objects) -> bool {
    call.input_objects()
        .any(|id| objects.get(id).is_some_and(|o| matches!(o.place, Place::Pending)))
}

/// Forgets an invocation run by a central engine once nothing of it runs or is stored here.
pub(crate) fn drop_central_state(invocation: InvocationId, invocations: &mut Invocations) {
    if invocations
        .get(invocation)
        .is_some_and(|inv| inv.central && inv.running.is_empty() && inv.storing == 0)
    {
        invocations.remove(invocation);
    }
}

/// Encodes `invoke` as a frame into `buf`, a buffer kept for that (cleared, never shrunk or
/// zeroed again); `invoke` is left as it was.
fn encode_invoke(invoke: &mut frame::Invoke, buf: &mut Vec<u8>) -> Result<(), frame::EncodeError> {
    buf.clear();
    let frame = Frame::Invoke(std::mem::replace(invoke, empty_invoke()));
    let encoded = frame.encode(buf);
    if let Frame::Invoke(taken) = frame {
        *invoke = taken;
    }
    encoded
}

fn empty_invoke() -> frame::Invoke {
    frame::Invoke {
        call: 0,
        after: 0,
        function: 0,
        params: Vec::new(),
        inputs: Vec::new(),
        outputs: Vec::new(),
    }
}
