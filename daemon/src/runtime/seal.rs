//! A call's completion: its outputs are checked against the room the daemon gave it, parsed
//! when they are JSON, and *sealed* into objects (immutable from then on; the unused tail of
//! each reservation is freed). An output that must leave the arena before anyone reads it (a
//! workflow planned with every edge remote stores each output in Redis; an output over its
//! workflow's quota is spilled) is written by the storage driver first, and the completion
//! waits for those writes ([`Seals`]): only then is it [`Sealed`], so that the engine, and the
//! readers on other workers, learn of it when its outputs are where they will be read.

use std::collections::HashMap;
use std::sync::Arc;

use faasflow_core::dag::{FailureKind, ValueKind};
use faasflow_core::engine::ObjectRef;
use faasflow_remote::ObjectKey;
use faasflow_shm::frame::{self, Status};

use super::calls::{Call, Calls, Cx, MAX_JSON};
use super::io::{Part, arena_source};
use super::objects::{Object, Place};
use super::types::{ended_at, us_between};
use crate::remote::{Dest, RemoteIoError};
use crate::store::arena::Extent;

/// Why a call's outputs cannot be sealed (the call fails with it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SealError {
    #[error("it reported output `{0}` twice")]
    Twice(String),
    #[error("it reported output `{0}` outside the room the daemon gave it (protocol violation)")]
    Outside(String),
    #[error("it returned without its declared output `{0}`")]
    Missing(String),
    #[error("output `{name}` is {len} bytes, more than the {MAX_JSON} a JSON value may have")]
    TooLarge { name: String, len: u64 },
    #[error("output `{name}` is declared `{kind}` but is not valid JSON: {cause}")]
    NotJson {
        name: String,
        kind: &'static str,
        cause: String,
    },
    #[error("output `{0}` is declared `list` but is not a JSON array")]
    NotList(String),
}

/// A call whose outputs are sealed and where they will be read.
pub(crate) struct Sealed {
    pub(crate) call: Call,
    pub(crate) objs: Vec<(String, ObjectRef)>,
}

/// A sealed call waiting for its outputs' writes.
struct Sealing {
    sealed: Sealed,
    /// Writes not through yet.
    waiting: u32,
    /// When its writes started.
    since: std::time::Instant,
    /// Some of its outputs were stored in the remote tier: the wall-clock time until its last
    /// write is through is its data time (its successors wait for the stores as for its own
    /// work; the writes run side by side).
    stored: bool,
}

/// An output being stored in the remote tier.
struct Store {
    call: u64,
    object: u64,
    extent: Extent,
    key: ObjectKey,
}

/// Completions waiting for their outputs' writes.
#[derive(Default)]
pub(crate) struct Seals {
    parked: HashMap<u64, Sealing>,
    /// Stores in flight, by token.
    stores: HashMap<u64, Store>,
    /// New outputs being spilled: object → call.
    spills: HashMap<u64, u64>,
}

/// An output a call reported, checked: name, its extent, its length.
type Used = (String, Extent, u64);

impl Seals {
    /// Instance `inst_id` pushed completion `c`: a decline of a call sent to follow another
    /// (it goes as a plain call, or is forgotten), the completion of a follower not triggered
    /// yet (it waits for its trigger), or a call's end ([`Seals::complete`], once the follower
    /// sent with the call is known to have started or not). Returns what is sealed now, and
    /// the pool to dispatch.
    pub(crate) fn completion(
        &mut self,
        calls: &mut Calls,
        inst_id: u32,
        c: frame::Complete,
        cx: &mut Cx<'_>,
    ) -> (Option<Sealed>, Option<usize>) {
        if c.status == Status::Declined {
            return (None, calls.declined(inst_id, c.call, cx));
        }
        let Some(c) = calls.early(c) else {
            return (None, None);
        };
        // Read once: a follower starts exactly when the call it follows ended.
        let ended = ended_at(c.ended_ns, cx.now);
        calls.completing(inst_id, &c, ended, cx);
        self.complete(calls, inst_id, (c, ended), cx)
    }

    /// Instance `inst_id` completed call `c.call`: the call ends, sealed (now, or once its
    /// outputs are written: `None` then) or failed. Returns what is sealed now, and the pool
    /// to dispatch (its instance has a free thread again).
    fn complete(
        &mut self,
        calls: &mut Calls,
        inst_id: u32,
        (c, ended): (frame::Complete, std::time::Instant),
        cx: &mut Cx<'_>,
    ) -> (Option<Sealed>, Option<usize>) {
        let Some(call) = calls.get(c.call).filter(|call| call.instance == Some(inst_id)) else {
            let why = format!("it completed call {}, which is not its own", c.call);
            cx.pools.protocol_violation(inst_id, why);
            return (None, None);
        };
        let (pool, abandoned, invocation, record) = (call.pool, call.abandoned, call.invocation, call.record);
        let function = call.function.clone();
        if let Some(inst) = cx.pools.instance_mut(inst_id) {
            inst.ended(c.call, call.invoke.function, invocation, cx.now);
        }
        let peak = calls.peak_of(c.call, Some(inst_id), cx);
        if abandoned {
            if let Some(mut call) = calls.take(c.call) {
                calls.predecessor_gone(&mut call, cx);
                calls.free_call(&call, cx);
            }
            return (None, Some(pool));
        }
        if let Some(inv) = cx.invocations.get_mut(invocation) {
            let end_us = inv.elapsed_us(ended);
            let rec = &mut inv.functions[record];
            rec.end_us = end_us.max(rec.start_us);
            rec.exec_us = c.exec_ns as f64 / 1e3;
            rec.peak_memory_bytes = peak;
        }
        let failed = match c.status {
            Status::Ok => match self.seal(calls, c.call, inst_id, c.outputs, cx) {
                Ok(sealed) => return (sealed, Some(pool)),
                Err(e) => (format!("function `{function}`: {e}"), FailureKind::Error),
            },
            Status::Failed => (
                format!("function `{function}` returned an error: {}", c.message),
                FailureKind::Error,
            ),
            Status::Panicked => (
                format!("function `{function}` panicked: {}", c.message),
                FailureKind::Panic,
            ),
            Status::Declined => (
                format!("function `{function}`: its instance declined a call that was not sent to follow another"),
                FailureKind::Crash,
            ),
        };
        calls.fail(c.call, failed.0, failed.1, cx);
        (None, Some(pool))
    }

    /// Turns a successful call's outputs into objects; starts the writes that must come first.
    fn seal(
        &mut self,
        calls: &mut Calls,
        call_id: u64,
        inst_id: u32,
        outputs: Vec<(String, frame::ObjectRef)>,
        cx: &mut Cx<'_>,
    ) -> Result<Option<Sealed>, SealError> {
        let Some(call) = calls.get(call_id) else {
            return Ok(None);
        };
        // Validate everything before taking anything.
        let used = check_outputs(call, &outputs)?;
        let mut parsed = parse_json(call, &used, cx)?;
        let Some(call) = calls.take(call_id) else {
            return Ok(None);
        };
        let installed = cx.installs.get(&call.wf);
        let producer = installed
            .map(|i| i.wf.graph[call.node].name.clone())
            .unwrap_or_default();
        let quota = installed.map_or(u64::MAX, |i| i.quota);
        let remote_only = installed.is_some_and(|i| i.remote_only);
        // Its follower already reads these outputs: they stay in the arena while it runs.
        let followed = calls.follower_reads(call_id);
        free_unkept(&call, &used, cx);
        for id in cx.invocations.read_staged(call.invocation, &call.reads) {
            cx.objects.mark_released(id);
        }
        calls.unpin(&call.reads, cx);
        let mut sealing = Sealing {
            sealed: Sealed {
                objs: Vec::with_capacity(used.len()),
                call,
            },
            waiting: 0,
            since: cx.now,
            stored: false,
        };
        // Bytes of this call's outputs already on their way out of the arena.
        let mut leaving = 0;
        for (name, e, len) in used {
            let call = &sealing.sealed.call;
            let (id, kept) = new_object(call, &producer, inst_id, e, len, cx);
            if let Some(kept) = kept {
                if remote_only {
                    self.store(call_id, id, kept, cx);
                    sealing.waiting += 1;
                } else if !followed.contains(&name)
                    && cx.objects.resident(&call.wf).saturating_sub(leaving) > quota
                    && cx.objects.spill(id, cx.arena, cx.io, &cx.config.name)
                {
                    self.spills.insert(id, call_id);
                    sealing.waiting += 1;
                    leaving += kept.len;
                }
            }
            let json = parsed.remove(&name);
            sealing.sealed.objs.push((name, ObjectRef { id, len, json }));
        }
        calls.sealed(call_id, &sealing.sealed.objs);
        if sealing.waiting > 0 {
            self.parked.insert(call_id, sealing);
            return Ok(None);
        }
        Ok(Some(ready(sealing, cx)))
    }

    /// Starts storing new output `object` (at `e`) of a workflow planned with every edge
    /// remote in the remote tier, under the key the readers on other workers read; the
    /// readers here read it there too.
    fn store(&mut self, call: u64, object: u64, e: Extent, cx: &mut Cx<'_>) {
        let Some(obj) = cx.objects.get_mut(object) else { return };
        let key = edge_key(&obj.wf, obj.invocation, &cx.config.name, object);
        let Some(from) = arena_source(cx.arena, e, obj.len) else {
            return;
        };
        obj.io += 1;
        let token = cx.io.write(Part::Seal, from, Dest::Key(key.clone()));
        self.stores.insert(
            token,
            Store {
                call,
                object,
                extent: e,
                key,
            },
        );
    }

    /// Store `token` ended: the object leaves the arena; when the tier refused it, it stays
    /// in the arena (said once). Returns the call when its outputs are all written.
    pub(crate) fn stored(
        &mut self,
        token: u64,
        result: Result<(), RemoteIoError>,
        calls: &Calls,
        cx: &mut Cx<'_>,
    ) -> Option<Sealed> {
        let store = self.stores.remove(&token)?;
        if let Some(o) = cx.objects.get_mut(store.object) {
            o.io = o.io.saturating_sub(1);
        }
        let mut moved = false;
        match result {
            Ok(()) => {
                let place = Place::Remote {
                    key: store.key,
                    owned: true,
                    spilled: false,
                };
                moved = cx
                    .objects
                    .moved_out(store.object, store.extent, place, cx.arena)
                    .is_some();
            }
            Err(err) => {
                if cx.io.first_refusal() {
                    tracing::warn!(cause = %err, "outputs planned remote stay in memory instead");
                }
            }
        }
        calls.unpin(&[store.object], cx);
        let sealing = self.parked.get_mut(&store.call)?;
        sealing.stored |= moved;
        self.written(store.call, cx)
    }

    /// New output `object` was spilled (or stays): returns its call when its outputs are all
    /// written.
    pub(crate) fn spilled(&mut self, object: u64, cx: &mut Cx<'_>) -> Option<Sealed> {
        let call = self.spills.remove(&object)?;
        self.written(call, cx)
    }

    fn written(&mut self, call: u64, cx: &mut Cx<'_>) -> Option<Sealed> {
        let sealing = self.parked.get_mut(&call)?;
        sealing.waiting = sealing.waiting.saturating_sub(1);
        if sealing.waiting > 0 {
            return None;
        }
        let sealing = self.parked.remove(&call)?;
        Some(ready(sealing, cx))
    }
}

/// Frees what a sealed call does not keep: unused reservations and the tails of used ones,
/// input copies and loads.
fn free_unkept(call: &Call, used: &[Used], cx: &mut Cx<'_>) {
    for (name, e) in &call.extents {
        if !used.iter().any(|(n, u, l)| n == name && u == e && *l > 0) {
            cx.arena.free(*e);
        }
    }
    for e in call.temps.iter().chain(call.loaded.values().map(|(e, _, _)| e)) {
        cx.arena.free(*e);
    }
}

/// Seals output bytes `len` of `call` at `e` into a new object of its invocation (its
/// reservation trimmed to them); returns its id and its extent (`None`: it is empty).
fn new_object(
    call: &Call,
    producer: &str,
    inst_id: u32,
    e: Extent,
    len: u64,
    cx: &mut Cx<'_>,
) -> (u64, Option<Extent>) {
    let id = cx.objects.new_id();
    let kept = (len > 0).then(|| cx.arena.trim(e, len));
    let place = match kept {
        Some(kept) => {
            cx.objects.add_resident(&call.wf, kept.len);
            Place::Arena(kept)
        }
        None => Place::Empty,
    };
    let mut object = Object::new(
        place,
        len,
        call.wf.clone(),
        call.invocation,
        producer.to_owned(),
        inst_id,
        cx.now,
    );
    object.element = call.element;
    cx.objects.insert(id, object);
    if let Some(inv) = cx.invocations.get_mut(call.invocation) {
        inv.objects.insert(id);
    }
    (id, kept)
}

/// A sealed call's outputs are where they will be read: its run's record is complete.
fn ready(sealing: Sealing, cx: &mut Cx<'_>) -> Sealed {
    let Sealing {
        sealed, since, stored, ..
    } = sealing;
    let call = &sealed.call;
    let stored_us = if stored { us_between(since, cx.now) } else { 0.0 };
    if let Some(inv) = cx.invocations.get_mut(call.invocation) {
        inv.data_us += stored_us;
        inv.running.remove(&(call.node.index() as u32, call.element));
        if let Some(rec) = inv.functions.get_mut(call.record) {
            rec.output_bytes = sealed.objs.iter().map(|(name, o)| (name.clone(), o.len)).collect();
            // Its successors wait for these stores as for its own work.
            rec.data_us += stored_us;
        }
    }
    sealed
}

/// Where the producer's daemon `from` puts its object `id` for edges the plan marks remote.
pub(crate) fn edge_key(wf: &(String, u64), invocation: u64, from: &str, id: u64) -> ObjectKey {
    ObjectKey::new(wf.0.clone(), wf.1, invocation, format!("edge/{from}/{id}"))
}

/// Checks a call's reported outputs: each once, each inside room the daemon gave it, and
/// every declared one there.
fn check_outputs(call: &Call, outputs: &[(String, frame::ObjectRef)]) -> Result<Vec<Used>, SealError> {
    let mut used: Vec<Used> = Vec::new();
    for (name, r) in outputs {
        if used.iter().any(|(n, _, _)| n == name) {
            return Err(SealError::Twice(name.clone()));
        }
        if r.len == 0 {
            let none = Extent {
                segment: 0,
                offset: 0,
                len: 0,
            };
            used.push((name.clone(), none, 0));
            continue;
        }
        let Some((_, e)) = call
            .extents
            .iter()
            .find(|(n, e)| n == name && r.segment == e.segment && r.offset == e.offset && r.len <= e.len)
        else {
            return Err(SealError::Outside(name.clone()));
        };
        used.push((name.clone(), *e, r.len));
    }
    if let Some((missing, _)) = call.kinds.iter().find(|(d, _)| !used.iter().any(|(n, _, _)| n == d)) {
        return Err(SealError::Missing(missing.clone()));
    }
    Ok(used)
}

/// Parses the call's `json` and `list` outputs.
fn parse_json(call: &Call, used: &[Used], cx: &Cx<'_>) -> Result<HashMap<String, Arc<serde_json::Value>>, SealError> {
    let mut parsed = HashMap::new();
    for (name, e, len) in used {
        let kind = call.kinds.iter().find(|(n, _)| n == name).map(|(_, k)| *k);
        if !matches!(kind, Some(ValueKind::Json | ValueKind::List)) {
            continue;
        }
        if *len > MAX_JSON {
            return Err(SealError::TooLarge {
                name: name.clone(),
                len: *len,
            });
        }
        let bytes = if *len == 0 {
            Vec::new()
        } else {
            cx.arena.read(*e, *len).unwrap_or_default()
        };
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|err| SealError::NotJson {
            name: name.clone(),
            kind: kind.map_or("json", |k| k.as_str()),
            cause: err.to_string(),
        })?;
        if kind == Some(ValueKind::List) && !v.is_array() {
            return Err(SealError::NotList(name.clone()));
        }
        parsed.insert(name.clone(), Arc::new(v));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_errors_say_what_the_function_did_wrong() {
        assert_eq!(
            SealError::Twice("out".into()).to_string(),
            "it reported output `out` twice"
        );
        assert_eq!(
            SealError::Missing("out".into()).to_string(),
            "it returned without its declared output `out`"
        );
        assert_eq!(
            SealError::TooLarge {
                name: "out".into(),
                len: MAX_JSON + 1
            }
            .to_string(),
            format!(
                "output `out` is {} bytes, more than the {MAX_JSON} a JSON value may have",
                MAX_JSON + 1
            )
        );
    }

    #[test]
    fn an_edge_key_names_the_producing_worker_and_object() {
        let k = edge_key(&("wf".into(), 3), 7, "worker-1", 42);
        assert_eq!((k.workflow.as_str(), k.version, k.invocation), ("wf", 3, 7));
        assert_eq!(k.object, "edge/worker-1/42");
    }
}
