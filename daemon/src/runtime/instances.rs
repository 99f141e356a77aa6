//! The loop's side of its instances: an instance up, gone or speaking, and the frames it
//! pushes (completions, declines of calls sent to follow others, requests for room).

use std::time::Instant;

use faasflow_core::dag::FailureKind;
use faasflow_shm::frame::{Complete, Frame, Status};

use super::Runtime;
use super::pools::Ready;
use super::types::ended_at;
use crate::pool::{self, StartError};

impl Runtime {
    pub(super) fn instance_ready(&mut self, id: u32, result: Result<Box<pool::Ready>, StartError>, now: Instant) {
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

    /// Instance `id` wrote `lines` to its stderr: each goes into the log with the instance, its
    /// pack, and the function and invocation of the call it came from where that can be told:
    /// the call a line's `[call N]` tag names, else the one call running on the instance, else
    /// (none running) the last one that ended on it. With several running, it is not told.
    pub(super) fn instance_said(&self, id: u32, lines: &[String]) {
        let inst = self.pools.instance(id);
        let pack = inst.map_or("", |i| self.pools.get(i.pool).pack_name.as_str());
        for line in lines {
            let (tag, text) = faasflow_shm::stderr::untag(line);
            let origin = inst.and_then(|i| {
                let running = match tag {
                    Some(call) => Some(call),
                    None if i.calls.len() == 1 => i.calls.iter().next().copied(),
                    None => None,
                };
                match running.and_then(|c| self.calls.origin(c)) {
                    Some(o) => Some(o),
                    None if tag.is_some() || i.calls.is_empty() => i.ended_call(tag),
                    None => None,
                }
            });
            match origin {
                Some((function, invocation)) => {
                    tracing::info!(target: "faasflow::function", instance = id, pack, function, invocation, "{text}")
                }
                None => tracing::info!(target: "faasflow::function", instance = id, pack, "{text}"),
            }
        }
    }

    pub(super) fn instance_exited(&mut self, id: u32, status: String, now: Instant) {
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

    pub(super) fn drain_rings(&mut self) -> bool {
        let mut any = false;
        let mut k = 0;
        while let Some(id) = self.pools.live_at(k) {
            any |= self.drain_instance(id);
            k += 1;
        }
        any
    }

    pub(super) fn drain_instance(&mut self, id: u32) -> bool {
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
    pub(super) fn completed(&mut self, id: u32, c: Complete, now: Instant) {
        let (mut cx, rest) = self.parts(now);
        if c.status == Status::Declined {
            if let Some(pool) = rest.calls.declined(id, c.call, &mut cx) {
                rest.calls.dispatch(pool, &mut cx);
            }
            return;
        }
        // A follower's completion before its trigger waits for it.
        let Some(c) = rest.calls.early(c) else { return };
        // Read once: a follower starts exactly when the call it follows ended.
        let ended = ended_at(c.ended_ns, now);
        rest.calls.completing(id, &c, ended, &mut cx);
        let (sealed, pool) = rest.seals.complete(rest.calls, id, (c, ended), &mut cx);
        if let Some(sealed) = sealed {
            self.after_seal(sealed, now);
        }
        if let Some(pool) = pool {
            let (mut cx, rest) = self.parts(now);
            rest.calls.dispatch(pool, &mut cx);
        }
    }

    /// Completions of followers that were triggered after they ended, or abandoned.
    pub(super) fn replay(&mut self, now: Instant) -> bool {
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
}
