//! Functions run for a central engine (MasterSP): inputs fetched from the remote tier into
//! the arena, the function run on an instance of its pool like any other call, outputs stored
//! in the remote tier, and the result sent back to the caller instead of to this daemon's
//! engine. The daemon keeps nothing of them afterwards: the caller deletes the invocation's
//! keys.
//!
//! The fetches and stores run on the storage driver; the loop never waits on them. Input
//! objects are `Pending` until fetched (the call waits like one whose inputs come from a
//! peer); outputs stay pinned in the arena until stored.

use std::collections::HashMap;
use std::path::PathBuf;

use faasflow_core::dag::FailureKind;
use faasflow_core::engine::{InputValue, InvocationId, ObjectRef};
use faasflow_core::report::EdgeRecord;
use faasflow_remote::ObjectKey;

use super::calls::{Calls, Cx, ExecReply, drop_central_state};
use super::install::Installs;
use super::invocations::InvState;
use super::io::{Part, arena_source};
use super::objects::{Object, Place};
use super::seal::Sealed;
use super::types::WfKey;
use crate::api::{ExecError, ExecInput, Execute, Executed, RemoteObject};
use crate::remote::{Dest, Done, RemoteIoError, Source};

/// Outputs of a central engine's call being stored.
struct Storing {
    reply: ExecReply,
    executed: Executed,
    invocation: InvocationId,
    objects: Vec<u64>,
}

/// A fetched input written to a spill file (the arena had no room).
struct InputFile {
    object: u64,
    path: PathBuf,
    fetch_us: f64,
}

/// Calls run for central engines: their inputs' fetches and their outputs' stores.
#[derive(Default)]
pub(crate) struct Central {
    /// Inputs being fetched, by token: the object.
    fetches: HashMap<u64, u64>,
    /// Fetched inputs being written to spill files, by token.
    files: HashMap<u64, InputFile>,
    /// Outputs being stored, by token.
    storing: HashMap<u64, Storing>,
}

impl Central {
    /// Runs `request` for a central engine; `reply` gets its result.
    pub(crate) fn execute(&mut self, request: Execute, reply: ExecReply, calls: &mut Calls, cx: &mut Cx<'_>) {
        if let Err((error, reply)) = self.start(request, reply, calls, cx) {
            reply.send(Err(error));
        }
    }

    fn start(
        &mut self,
        mut request: Execute,
        reply: ExecReply,
        calls: &mut Calls,
        cx: &mut Cx<'_>,
    ) -> Result<(), (ExecError, ExecReply)> {
        let wf_key = match admit(&request, cx) {
            Ok(k) => k,
            Err(e) => return Err((e, reply)),
        };
        let id = request.invocation;
        // Input objects: pending until fetched from the remote tier.
        let mut owned = Vec::new();
        let mut inputs = Vec::with_capacity(request.inputs.len());
        for (name, v) in std::mem::take(&mut request.inputs) {
            let value = match v {
                ExecInput::Absent => InputValue::Absent,
                ExecInput::Json(j) => InputValue::Json(j),
                ExecInput::Object(o) => InputValue::Object(self.fetch(&wf_key, id, o, &mut owned, cx)),
                ExecInput::List(l) => InputValue::List(
                    l.into_iter()
                        .map(|o| self.fetch(&wf_key, id, o, &mut owned, cx))
                        .collect(),
                ),
            };
            inputs.push((name, value));
        }
        let call = calls.trigger(id, request.node, request.element, request.attempt, inputs, cx);
        match call.and_then(|c| calls.get_mut(c)) {
            Some(call) => {
                call.execute = Some(reply);
                call.owned = owned;
                Ok(())
            }
            None => {
                // Not even queued (the daemon cannot run this node): undo.
                for o in owned {
                    calls.free_object(o, cx);
                }
                drop_central_state(id, cx.invocations);
                let m = format!(
                    "{} could not be queued on worker `{}`",
                    step_name(&request, cx.installs),
                    cx.config.name
                );
                Err((refused(m), reply))
            }
        }
    }

    /// A pending local copy of a remote object, fetched in the background.
    fn fetch(
        &mut self,
        wf: &WfKey,
        invocation: InvocationId,
        o: RemoteObject,
        owned: &mut Vec<u64>,
        cx: &mut Cx<'_>,
    ) -> ObjectRef {
        let id = cx.objects.new_id();
        owned.push(id);
        let place = if o.len == 0 { Place::Empty } else { Place::Pending };
        let mut obj = Object::foreign(place, o.len, wf.clone(), invocation, producer_of(&o.key), cx.now);
        // An empty object is not fetched: its edge is still a remote one.
        obj.transfer_us = (o.len == 0).then_some(("remote", 0.0));
        cx.objects.insert(id, obj);
        if o.len > 0 {
            let token = cx.io.fetch(Part::Execute, Source::Key(o.key.clone()));
            self.fetches.insert(token, id);
        }
        ObjectRef {
            id,
            len: o.len,
            json: o.json,
        }
    }

    /// A storage operation for a central engine's call ended.
    pub(crate) fn io_done(&mut self, token: u64, result: Done, us: f64, calls: &mut Calls, cx: &mut Cx<'_>) {
        if let Some(object) = self.fetches.remove(&token) {
            let result = match result {
                Done::Read(r) => r,
                Done::Stored(r) => r.map(|()| Vec::new()),
                Done::Batch(r) => r.map(|()| Vec::new()).map_err(|(_, e)| e),
            };
            return self.fetched(object, result, us, calls, cx);
        }
        if let Some(f) = self.files.remove(&token) {
            let result = match result {
                Done::Stored(r) => r,
                Done::Read(r) => r.map(|_| ()),
                Done::Batch(r) => r.map_err(|(_, e)| e),
            };
            return match result {
                Ok(()) => self.landed(f.object, Place::Spilled(f.path), f.fetch_us, calls, cx),
                Err(e) => {
                    cx.io.remove_file(f.path.clone());
                    let cause = match e {
                        RemoteIoError::File { cause, .. } => cause.to_string(),
                        e => e.to_string(),
                    };
                    let why = format!("no room in the arena, and the spill file {}: {cause}", f.path.display());
                    fail_fetch(f.object, why, calls, cx)
                }
            };
        }
        if let Some(s) = self.storing.remove(&token) {
            let result = match result {
                Done::Batch(r) => r,
                // A batch of writes ends as a batch.
                Done::Stored(_) | Done::Read(_) => Ok(()),
            };
            self.stored(s, result, us, calls, cx);
        }
    }

    /// An input object's bytes were fetched (or not): into the arena, else a spill file.
    fn fetched(
        &mut self,
        object: u64,
        result: Result<Vec<u8>, RemoteIoError>,
        us: f64,
        calls: &mut Calls,
        cx: &mut Cx<'_>,
    ) {
        let Some(obj) = cx.objects.get(object) else {
            return; // Its call ended meanwhile.
        };
        let (len, invocation) = (obj.len, obj.invocation);
        let segment = cx.installs.segment_of(&obj.wf);
        let bytes = match result {
            Ok(bytes) if bytes.len() as u64 == len => bytes,
            Ok(bytes) => {
                let e = RemoteIoError::Size {
                    found: bytes.len() as u64,
                    expected: len,
                };
                return fail_fetch(object, e.to_string(), calls, cx);
            }
            Err(RemoteIoError::Missing(key)) => {
                return fail_fetch(object, format!("object `{key}` is not in the remote tier"), calls, cx);
            }
            Err(e) => return fail_fetch(object, e.to_string(), calls, cx),
        };
        match cx.arena.alloc(segment, len) {
            Ok(e) => {
                cx.arena.write(e, 0, &bytes);
                self.landed(object, Place::Arena(e), us, calls, cx);
            }
            Err(_) => {
                let path = cx.objects.spill_path(&format!("remote-{invocation}-{object}"));
                let token = cx
                    .io
                    .write(Part::Execute, Source::Bytes(bytes.into()), Dest::File(path.clone()));
                self.files.insert(
                    token,
                    InputFile {
                        object,
                        path,
                        fetch_us: us,
                    },
                );
            }
        }
    }

    /// A fetched input is at `place`: the calls that waited for it go.
    fn landed(&mut self, object: u64, place: Place, us: f64, calls: &mut Calls, cx: &mut Cx<'_>) {
        if let Some(o) = cx.objects.get_mut(object) {
            o.place = place;
            o.transfer_us = Some(("remote", us));
        } else {
            // Its call ended meanwhile.
            match place {
                Place::Arena(e) => {
                    cx.arena.free(e);
                }
                Place::Spilled(path) => cx.io.remove_file(path),
                _ => {}
            }
            return;
        }
        calls.inputs_arrived(cx);
        // A call that ended meanwhile released it.
        calls.unpin(&[object], cx);
    }

    /// A central-engine call succeeded: stores its outputs in the remote tier, then answers.
    pub(crate) fn store_outputs(&mut self, sealed: Sealed, calls: &Calls, cx: &mut Cx<'_>) {
        let Sealed { mut call, objs } = sealed;
        let Some(reply) = call.execute.take() else { return };
        let Some(inv) = cx.invocations.get_mut(call.invocation) else {
            return;
        };
        inv.running.remove(&(call.node.index() as u32, call.element));
        let record = inv.functions[call.record].clone();
        let edges: Vec<EdgeRecord> = inv
            .edges
            .get(call.edge_range.clone())
            .map(<[_]>::to_vec)
            .unwrap_or_default();
        inv.storing += 1;
        // Wall-clock: from the request until its last input was fetched (fetches overlap, so
        // their times do not add up); storing the outputs is added when done.
        let data_us = record.data_us;
        let element = call.element.map_or_else(String::new, |e| format!("[{e}]"));
        let mut puts = Vec::new();
        let mut outputs = Vec::new();
        let mut ids = Vec::new();
        let mut stored_already = Vec::new();
        for (name, o) in objs {
            let mut key = ObjectKey::new(
                call.wf.0.clone(),
                call.wf.1,
                call.invocation,
                format!("{}{element}.{name}#{}", call.step, record.attempt),
            );
            let Some(obj) = cx.objects.get_mut(o.id) else { continue };
            obj.released = true;
            if let Place::Remote {
                key: spilled, owned, ..
            } = &mut obj.place
            {
                // Spilled there already: the caller gets that key (and deletes it with the
                // invocation).
                key = spilled.clone();
                *owned = false;
                stored_already.push(o.id);
            } else {
                obj.pushes += 1;
                let source = match &obj.place {
                    Place::Arena(e) => arena_source(cx.arena, *e, obj.len),
                    Place::Spilled(p) => Some(Source::File(p.clone())),
                    Place::Empty | Place::Pending | Place::Remote { .. } => None,
                };
                puts.push((key.clone(), source.unwrap_or(Source::Bytes(bytes::Bytes::new()))));
                ids.push(o.id);
            }
            outputs.push((
                name,
                RemoteObject {
                    key,
                    len: o.len,
                    json: o.json,
                },
            ));
        }
        let executed = Executed {
            outputs,
            record,
            edges,
            data_us,
        };
        let token = cx.io.write_all(Part::Execute, puts);
        self.storing.insert(
            token,
            Storing {
                reply,
                executed,
                invocation: call.invocation,
                objects: ids,
            },
        );
        calls.central_done(&call, cx);
        calls.unpin(&stored_already, cx);
    }

    /// A call's outputs are stored (or not): the caller gets its answer.
    fn stored(
        &mut self,
        s: Storing,
        result: Result<(), (ObjectKey, RemoteIoError)>,
        us: f64,
        calls: &Calls,
        cx: &mut Cx<'_>,
    ) {
        let Storing {
            reply,
            mut executed,
            invocation,
            objects,
        } = s;
        for id in &objects {
            if let Some(o) = cx.objects.get_mut(*id) {
                o.pushes = o.pushes.saturating_sub(1);
            }
        }
        calls.unpin(&objects, cx);
        if let Some(inv) = cx.invocations.get_mut(invocation) {
            inv.storing = inv.storing.saturating_sub(1);
        }
        drop_central_state(invocation, cx.invocations);
        executed.data_us += us;
        let where_ = format!("step `{}` on worker `{}`", executed.record.name, cx.config.name);
        reply.send(result.map(|()| executed).map_err(|(key, e)| {
            let cause = match e {
                e @ RemoteIoError::File { .. } => e.to_string(),
                e => format!("cannot store output `{}`: {e}", key.object),
            };
            ExecError::new(format!("{where_}: {cause}"), FailureKind::Data)
        }));
    }
}

/// How a request's step is named: by its name when its version is installed here.
fn step_name(request: &Execute, installs: &Installs) -> String {
    installs
        .get(&(request.workflow.clone(), request.version))
        .filter(|i| request.node.index() < i.wf.graph.node_count())
        .map_or_else(
            || format!("step {}", request.node.index()),
            |i| format!("step `{}`", i.wf.graph[request.node].name),
        )
}

/// Whether this daemon can run `request` (it has the remote tier, the version installed,
/// the step placed here, and the invocation runs on a central engine without this step
/// running already); the invocation's state is made on its first request here.
fn admit(request: &Execute, cx: &mut Cx<'_>) -> Result<WfKey, ExecError> {
    let key = (request.workflow.clone(), request.version);
    let me = &cx.config.name;
    let step = || step_name(request, cx.installs);
    if !cx.io.has_store() {
        return Err(refused(format!(
            "{} of `{}`: worker `{me}` has no remote tier (start its daemon with --redis URL)",
            step(),
            request.workflow
        )));
    }
    let (Some(wf_key), Some(installed)) = (cx.installs.key(&key), cx.installs.get(&key)) else {
        return Err(refused(format!(
            "workflow `{}` version {} is not installed on worker `{me}`",
            request.workflow, request.version
        )));
    };
    if !installed.placement.local.contains(&request.node) {
        return Err(refused(format!(
            "{} is not placed on worker `{me}` by the plan",
            step()
        )));
    }
    let id = request.invocation;
    if !cx.invocations.contains(id) {
        let mut inv = InvState::new(wf_key.clone(), cx.now, 0, None);
        inv.quiet = true;
        inv.central = true;
        cx.invocations.insert(id, inv);
    }
    if let Some(inv) = cx.invocations.get(id) {
        if !inv.central {
            return Err(refused(format!(
                "invocation {id} runs on this worker's own engine, not a central one"
            )));
        }
        if inv
            .running
            .contains_key(&(request.node.index() as u32, request.element))
        {
            return Err(refused(format!(
                "{} (element {:?}) of invocation {id} is already running here",
                step(),
                request.element
            )));
        }
    }
    Ok(wf_key)
}

/// A request refused: the caller's step fails as a crash (it may be retried elsewhere).
fn refused(message: String) -> ExecError {
    ExecError::new(message, FailureKind::Crash)
}

/// Input `object` cannot be fetched (`why`): the calls waiting for it fail, and it is
/// forgotten (it has no bytes and never will).
fn fail_fetch(object: u64, why: String, calls: &mut Calls, cx: &mut Cx<'_>) {
    let producer = cx.objects.get(object).map(|o| o.producer.clone()).unwrap_or_default();
    for c in calls.owning(object) {
        calls.fail(
            c,
            format!("cannot fetch input {producer} from the remote tier: {why}"),
            FailureKind::Data,
            cx,
        );
    }
    cx.objects.forget(object);
}

/// The producing step of an object stored by [`Central::store_outputs`] (`step[el].out#n`),
/// or `input.NAME` for a workflow input the central engine stored.
fn producer_of(key: &ObjectKey) -> String {
    if key.object.starts_with("input.") && !key.object.contains('#') {
        // A large workflow input the central engine stored (`input.NAME`).
        return key.object.clone();
    }
    let name = key.object.split('#').next().unwrap_or_default();
    let step = name.rsplit_once('.').map_or(name, |(s, _)| s);
    step.split('[').next().unwrap_or(step).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_producer_of_a_stored_output_is_its_step() {
        let key = |object: &str| ObjectKey::new("wf", 1, 7, object);
        assert_eq!(producer_of(&key("split.out#1")), "split");
        assert_eq!(producer_of(&key("count[3].out#2")), "count");
        assert_eq!(producer_of(&key("input.text")), "input.text");
        assert_eq!(producer_of(&key("a.b.out#1")), "a.b");
    }
}
