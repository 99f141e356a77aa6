//! Calls that follow calls on their instance's thread, with no round trip through the daemon
//! ([`frame::Invoke::after`]).
//!
//! When a call `f` is sent and the engine foresees the task that `f`'s success alone triggers
//! ([`Engine::follower`](faasflow_core::engine::Engine::follower)) in the same pool, reading
//! only `f`'s outputs, that task's call `g` is sent right behind `f`, its outputs reserved,
//! its inputs naming `f`'s outputs. The instance runs `g` on `f`'s thread the moment `f`
//! succeeds with every output reserved for it written, and not otherwise: the rule the daemon
//! applies to `f`'s completion to know whether `g` started ([`Calls::completing`]).
//!
//! A started `g` is a call running on its instance before the engine triggers it: it holds a
//! thread of its instance, it pins `f`'s outputs it reads once they are sealed
//! ([`Calls::sealed`]), and the engine's trigger, when `f`'s completion reaches the engine,
//! adopts it ([`Calls::adopt`]) rather than making a new call; its completion, if it comes
//! first, waits for that. When the engine will not trigger it (`f`'s outputs fail their
//! checks, `f` was abandoned, the invocation ended), it is an abandoned call: it keeps what
//! it reads until it ends, and its result is dropped. A `g` the instance declined (it came
//! after `f` ended and the instance no longer knew `f`'s outputs) goes back to its pool's
//! queue as a plain call, or is forgotten when the engine has not triggered it yet.

use std::time::{Duration, Instant};

use faasflow_core::NodeId;
use faasflow_core::dag::ValueKind;
use faasflow_core::engine::{InputValue, InvocationId, ObjectRef};
use faasflow_shm::frame::{self, Status, Value};

use super::prepare::{reserve, unprepare};
use super::{Call, Calls, Cx, DEFAULT_ABANDONED_TIMEOUT_MS, encode_invoke, record_edges};
use crate::runtime::types::us_between;

impl Calls {
    /// Call `f_id` was just sent to instance `inst_id`: the call that follows it, if the engine
    /// foresees one this instance runs, is sent right behind it.
    pub(super) fn chain(&mut self, f_id: u64, inst_id: u32, cx: &mut Cx<'_>) {
        if !cx.config.chain || self.chained.contains_key(&f_id) {
            return;
        }
        let Some(f) = self.map.get(&f_id) else { return };
        // Outputs the daemon parses (JSON) may fail its checks after the follower ran.
        if f.execute.is_some() || f.abandoned || f.kinds.iter().any(|(_, k)| *k != ValueKind::Bytes) {
            return;
        }
        let Some(installed) = cx.installs.get(&f.wf) else {
            return;
        };
        if installed.remote_only {
            return;
        }
        let Some(follower) = cx.engine.follower(f.invocation, f.node, f.element) else {
            return;
        };
        let Some(site) = installed.sites.get(&(follower.node.index() as u32)) else {
            return;
        };
        if site.pool != f.pool {
            return;
        }
        let Some(&index) = cx.pools.instance(inst_id).and_then(|i| i.functions.get(&site.function)) else {
            return;
        };
        let step = installed.wf.graph[follower.node].name.clone();
        let segment = installed.segment;
        let (site, wf) = (site.clone(), f.wf.clone());
        let after_outputs = f.invoke.outputs.iter().map(|(n, _)| n.clone()).collect();
        let (invocation, element) = (f.invocation, f.element);
        let id = self.new_id();
        let mut g = Call::new(
            id,
            (invocation, follower.node, element),
            wf,
            site,
            step,
            usize::MAX,
            Vec::new(),
            cx.now,
        );
        g.invoke.after = f_id;
        g.invoke.function = index;
        g.instance = Some(inst_id);
        g.invoke.inputs = follower
            .inputs
            .iter()
            .map(|(input, output)| (input.clone(), Value::Prior(output.clone())))
            .collect();
        g.prior = follower.inputs;
        g.after_outputs = after_outputs;
        for (name, size, _) in g.outputs.clone() {
            match reserve(&mut g, &name, size, &self.map, segment, cx) {
                Ok(r) => g.invoke.outputs.push((name, r)),
                Err(_) => {
                    // No room now: it goes as a plain call when triggered.
                    unprepare(&mut g, cx.arena);
                    return;
                }
            }
        }
        let encoded = encode_invoke(&mut g.invoke, &mut self.encode_buf).is_ok();
        let pushed = encoded
            && cx
                .pools
                .instance_mut(inst_id)
                .is_some_and(|i| i.send(&self.encode_buf).is_ok());
        if !pushed {
            unprepare(&mut g, cx.arena);
            return;
        }
        self.chained.insert(f_id, g);
    }

    /// Instance `inst_id` completed call `c.call` (not a decline): the call sent to follow it
    /// started if it succeeded with every output reserved for it written, and never will
    /// otherwise.
    pub(crate) fn completing(&mut self, inst_id: u32, c: &frame::Complete, ended: Instant, cx: &mut Cx<'_>) {
        let Some(mut g) = self.chained.remove(&c.call) else {
            return;
        };
        let written = |n: &String| c.outputs.iter().any(|(o, _)| o == n);
        let started = c.status == Status::Ok && g.after_outputs.iter().all(written) && g.instance == Some(inst_id);
        if !started {
            unprepare(&mut g, cx.arena);
            return;
        }
        g.started_at = Some(ended);
        g.awaiting = true;
        if let Some(inst) = cx.pools.instance_mut(inst_id) {
            inst.calls.insert(g.id());
        }
        self.followers.insert(c.call, g.id());
        self.started
            .insert((g.invocation, g.node.index() as u32, g.element), g.id());
        self.map.insert(g.id(), g);
    }

    /// The outputs of call `f_id` its started follower reads (they stay in the arena while
    /// it runs: spilling them would be thrown away).
    pub(crate) fn follower_reads(&self, f_id: u64) -> Vec<String> {
        let g = self.followers.get(&f_id).and_then(|g| self.map.get(g));
        g.map(|g| g.prior.iter().map(|(_, output)| output.clone()).collect())
            .unwrap_or_default()
    }

    /// Call `g` ended (and the engine is told, or was told it failed): the outputs of the call
    /// it followed that it read (kept in the arena for it, over quota or not) are looked at
    /// again at the end of the turn, once the engine has released those nobody else reads
    /// ([`Calls::spill_kept`]).
    pub(crate) fn spill_left(&self, g: &Call, cx: &mut Cx<'_>) {
        if g.prior.is_empty() || g.started_at.is_none() {
            return;
        }
        for &id in &g.reads {
            cx.objects.recheck(id);
        }
    }

    /// End of a turn: objects kept in the arena for a follower that are still needed, and
    /// over their workflow's quota, are spilled (unless a running call reads them).
    pub(crate) fn spill_kept(&self, cx: &mut Cx<'_>) {
        let installs = cx.installs;
        let ids = cx
            .objects
            .take_recheck(|wf| installs.get(wf).map_or(u64::MAX, |i| i.quota));
        for id in ids {
            if !self.read_by_a_sent_call(id) {
                cx.objects.spill(id, cx.arena, cx.io, &cx.config.name);
            }
        }
    }

    /// Call `f_id`'s outputs are sealed into `objs`: its started follower reads those it was
    /// bound to, so that none is freed before it ends.
    pub(crate) fn sealed(&mut self, f_id: u64, objs: &[(String, ObjectRef)]) {
        let Some(g) = self.followers.remove(&f_id).and_then(|g| self.map.get_mut(&g)) else {
            return;
        };
        for (_, output) in &g.prior {
            if let Some((_, o)) = objs.iter().find(|(n, _)| n == output) {
                g.reads.push(o.id);
            }
        }
    }

    /// A completion that comes for a follower not triggered yet waits for its trigger (`None`).
    pub(crate) fn early(&mut self, c: frame::Complete) -> Option<frame::Complete> {
        match self.map.get_mut(&c.call) {
            Some(g) if g.awaiting => {
                g.early = Some(c);
                None
            }
            _ => Some(c),
        }
    }

    /// Call `f` ended without its outputs sealed (it failed, or was abandoned): a follower
    /// sent with it and not started is dropped; one that started runs on `f`'s outputs,
    /// which it keeps until it ends, and is abandoned.
    pub(crate) fn predecessor_gone(&mut self, f: &mut Call, cx: &mut Cx<'_>) {
        if let Some(mut g) = self.chained.remove(&f.id()) {
            unprepare(&mut g, cx.arena);
        }
        let Some(g_id) = self.followers.remove(&f.id()) else {
            return;
        };
        let Some(g) = self.map.get_mut(&g_id) else { return };
        g.temps.extend(f.extents.drain(..).map(|(_, e)| e));
        let key = (g.invocation, g.node.index() as u32, g.element);
        if self.started.get(&key) == Some(&g_id) {
            self.started.remove(&key);
            self.give_up(g_id, cx);
        }
    }

    /// The followers of `invocation` (it ended) that started and were not triggered: abandoned.
    pub(super) fn abandon_started(&mut self, invocation: InvocationId, cx: &mut Cx<'_>) {
        let ids: Vec<u64> = self
            .started
            .iter()
            .filter(|(k, _)| k.0 == invocation)
            .map(|(_, id)| *id)
            .collect();
        self.started.retain(|k, _| k.0 != invocation);
        for id in ids {
            self.give_up(id, cx);
        }
    }

    /// A started follower the engine will not trigger: abandoned (its completion, when it
    /// comes or came, is dropped; its instance is stopped if it runs past the default timeout).
    fn give_up(&mut self, g_id: u64, cx: &mut Cx<'_>) {
        let Some(g) = self.map.get_mut(&g_id) else { return };
        g.awaiting = false;
        g.abandoned = true;
        g.stop_by = Some(cx.now + Duration::from_millis(DEFAULT_ABANDONED_TIMEOUT_MS));
        if let (Some(c), Some(inst)) = (g.early.take(), g.instance) {
            self.replay.push((inst, c));
        }
    }

    /// The engine triggered `node` (`element`) of `invocation`: a follower that started for it
    /// is that call (its run is recorded from the end of the call it followed). `Err`: none
    /// did, the inputs back.
    pub(super) fn adopt(
        &mut self,
        (invocation, node, element): (InvocationId, NodeId, Option<u32>),
        attempt: u32,
        inputs: Vec<(String, InputValue)>,
        cx: &mut Cx<'_>,
    ) -> Result<u64, Vec<(String, InputValue)>> {
        let key = (invocation, node.index() as u32, element);
        let Some(&g_id) = self.started.get(&key) else {
            return Err(inputs);
        };
        self.started.remove(&key);
        let Some(inv) = cx.invocations.get_mut(invocation) else {
            self.give_up(g_id, cx);
            return Err(inputs);
        };
        let Some(g) = self.map.get_mut(&g_id) else {
            return Err(inputs);
        };
        // The instance bound the outputs the engine names: both are the follower's outputs.
        let bound = inputs.iter().all(|(_, v)| match v {
            InputValue::Object(o) => g.reads.contains(&o.id),
            _ => false,
        });
        if !bound {
            tracing::error!(
                step = %g.step,
                "a call started after its predecessor reads other objects than the engine's trigger names"
            );
        }
        g.awaiting = false;
        g.pending = inputs;
        g.record = inv.record(g.step.clone(), &cx.config.name, element, attempt, cx.now);
        inv.running.insert((key.1, element), g_id);
        let inst_id = g.instance.unwrap_or_default();
        let rec = &mut inv.functions[g.record];
        rec.instance = g.instance;
        rec.start_us = us_between(inv.start, g.started_at.unwrap_or(cx.now));
        rec.chained = true;
        cx.metrics.calls += 1;
        cx.metrics.chained += 1;
        cx.metrics.trigger_seconds.observe(0.0);
        record_edges(g, inst_id, inv, (cx.objects, Vec::new()), cx.metrics);
        let wf = g.wf.clone();
        match g.early.take() {
            Some(c) => self.replay.push((inst_id, c)),
            None => self.chain(g_id, inst_id, cx),
        }
        self.prewarm(&wf, node, cx);
        Ok(g_id)
    }

    /// Instance `inst_id` declined follower `g_id` (it came after the call it follows had
    /// ended): it goes to its pool's queue as a plain call when triggered, else it is
    /// forgotten. Returns the pool to dispatch.
    pub(crate) fn declined(&mut self, inst_id: u32, g_id: u64, cx: &mut Cx<'_>) -> Option<usize> {
        let spec = self
            .chained
            .iter()
            .find(|(_, g)| g.id() == g_id && g.instance == Some(inst_id))
            .map(|(f, _)| *f);
        if let Some(f) = spec {
            // Declined before the completion of the call it follows was read: it never runs.
            if let Some(mut g) = self.chained.remove(&f) {
                unprepare(&mut g, cx.arena);
            }
            return None;
        }
        let g = self.map.get(&g_id).filter(|g| g.instance == Some(inst_id))?;
        // A follower never taken as started (dropped already): nothing holds it.
        g.started_at?;
        let pool = g.pool;
        if let Some(inst) = cx.pools.instance_mut(inst_id) {
            inst.calls.remove(&g_id);
        }
        if g.awaiting || g.abandoned {
            self.started.remove(&(g.invocation, g.node.index() as u32, g.element));
            if let Some(g) = self.map.remove(&g_id) {
                self.free_call(&g, cx);
            }
            return Some(pool);
        }
        let g = self.map.get_mut(&g_id)?;
        let reads = std::mem::take(&mut g.reads);
        unprepare(g, cx.arena);
        g.instance = None;
        g.invoke.after = 0;
        g.started_at = None;
        if let Some(inv) = cx.invocations.get_mut(g.invocation) {
            if g.edge_range.end == inv.edges.len() {
                inv.edges.truncate(g.edge_range.start);
            }
            if let Some(rec) = inv.functions.get_mut(g.record) {
                rec.chained = false;
            }
        }
        cx.metrics.chained = cx.metrics.chained.saturating_sub(1);
        cx.metrics.calls = cx.metrics.calls.saturating_sub(1);
        self.unpin(&reads, cx);
        cx.pools.get_mut(pool).queue.push_front(g_id);
        Some(pool)
    }
}
