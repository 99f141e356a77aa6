//! Getting a call ready to send: its inputs resolved to arena references (JSON values written
//! into the arena, objects of another segment copied, objects out of the arena loaded back
//! first), and an extent reserved for each declared output. Loads run on the storage driver;
//! [`Loads`] keeps those in flight.

use std::collections::HashMap;
use std::time::Instant;

use faasflow_core::dag::{DataSource, NodeKind};
use faasflow_core::engine::InputValue;
use faasflow_core::report::EdgeRecord;
use faasflow_shm::frame::{self, Value};

use super::{Call, Cx};
use crate::remote::{RemoteIoError, Source};
use crate::runtime::install::Installs;
use crate::runtime::io::{Part, arena_target};
use crate::runtime::objects::Place;
use crate::runtime::types::us;
use crate::store::arena::{Arena, Extent};

/// Bytes reserved for a pack function's output of unknown size.
const DEFAULT_RESERVATION: u64 = 4096;

/// Why a call could not be prepared.
pub(crate) enum Unprepared {
    /// The arena is full for now.
    Full(String),
    /// Some of its inputs are being loaded back into the arena.
    Loading,
    /// It never will be ready.
    Fatal(String),
}

/// `len` bytes do not fit now: a wait if they could ever fit in `capacity`, else an error.
fn no_room(len: u64, capacity: u64, message: String) -> Unprepared {
    if len > capacity {
        Unprepared::Fatal(message)
    } else {
        Unprepared::Full(message)
    }
}

/// A load of a call's input in flight.
struct Load {
    call: u64,
    object: u64,
    extent: Extent,
    tier: &'static str,
    /// How its failure is said.
    what: LoadOf,
}

enum LoadOf {
    Spilled,
    Remote { producer: String, len: u64 },
}

/// Why an input could not be loaded back into the arena (its call fails with it).
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    #[error("{0}")]
    Spilled(RemoteIoError),
    #[error("the output of `{producer}` in the remote tier has {found} bytes, not {len}")]
    Size { producer: String, found: u64, len: u64 },
    #[error("cannot read the output of `{producer}` from the remote tier: {cause}")]
    Remote { producer: String, cause: RemoteIoError },
}

/// How a load ended, for the call it was for ([`Loads::done`]).
pub(crate) struct Loaded {
    pub(crate) call: u64,
    pub(crate) object: u64,
    pub(crate) extent: Extent,
    /// The edge's tier and the load's time, or what the call fails with.
    pub(crate) result: Result<(&'static str, f64), LoadError>,
}

/// Loads of calls' inputs in flight, by token.
#[derive(Default)]
pub(crate) struct Loads {
    map: HashMap<u64, Load>,
}

impl Loads {
    /// Whether `object` is being loaded for call `call`.
    fn loading(&self, call: u64, object: u64) -> bool {
        self.map.values().any(|l| l.call == call && l.object == object)
    }

    /// Starts loading `call`'s inputs that are out of the arena (spilled, or in the remote
    /// tier) into extents of its own: [`Unprepared::Loading`] while some are on their way. An
    /// input spilled this turn needs no load: the call takes the extent it left, which still
    /// holds its bytes ([`Objects::take_shadow`](crate::runtime::objects::Objects::take_shadow)).
    /// `others`: the other calls (no spill may move what they read).
    pub(crate) fn start(&mut self, call: &mut Call, others: &Others, cx: &mut Cx<'_>) -> Result<(), Unprepared> {
        let out_of_arena = |id: u64| {
            cx.objects
                .get(id)
                .is_some_and(|o| matches!(o.place, Place::Spilled(_) | Place::Remote { .. }))
        };
        if call.loading == 0 && !call.input_objects().any(out_of_arena) {
            // Every input is in the arena (the usual case): nothing to load.
            return Ok(());
        }
        let segment = cx.installs.segment_of(&call.wf);
        let capacity = cx.arena.capacity();
        let ids: Vec<u64> = call.input_objects().collect();
        for id in ids {
            if call.loaded.contains_key(&id) || self.loading(call.id(), id) {
                continue;
            }
            // Spilled this turn (only a spilled object has a shadow): its old extent still holds
            // the bytes.
            if let Some(e) = cx.objects.take_shadow(id, segment) {
                call.loaded.insert(id, (e, "spill", 0.0));
                continue;
            }
            let Some(obj) = cx.objects.get(id) else { continue };
            let (source, tier, what) = match &obj.place {
                Place::Spilled(path) => (Source::File(path.clone()), "spill", LoadOf::Spilled),
                Place::Remote { key, spilled, .. } => (
                    Source::Key(key.clone()),
                    if *spilled { "spill" } else { "remote" },
                    LoadOf::Remote {
                        producer: obj.producer.clone(),
                        len: obj.len,
                    },
                ),
                _ => continue,
            };
            let (len, producer) = (obj.len, obj.producer.clone());
            let e = alloc(call, others, segment, len, cx).map_err(|e| {
                let m = match what {
                    LoadOf::Spilled => match producer.strip_prefix("input.") {
                        // A workflow input put here as a file (or staged) that went to disk.
                        Some(input) => format!("cannot reload workflow input `{input}` from its spill file: {e}"),
                        None => format!("cannot reload the spilled output of `{producer}`: {e}"),
                    },
                    LoadOf::Remote { .. } => format!("cannot load the output of `{producer}`: {e}"),
                };
                no_room(len, capacity, m)
            })?;
            let Some(into) = arena_target(cx.arena, e, len) else {
                cx.arena.free(e);
                return Err(Unprepared::Fatal(format!(
                    "the output of `{producer}` lies outside the arena"
                )));
            };
            let token = cx.io.load(Part::Load, source, into);
            if let Some(o) = cx.objects.get_mut(id) {
                o.io += 1;
            }
            call.loading += 1;
            self.map.insert(
                token,
                Load {
                    call: call.id(),
                    object: id,
                    extent: e,
                    tier,
                    what,
                },
            );
        }
        if call.loading > 0 {
            call.loading_since.get_or_insert(cx.now);
            return Err(Unprepared::Loading);
        }
        Ok(())
    }

    /// Load `token` ended with `result` after `us`.
    pub(crate) fn done(&mut self, token: u64, result: Result<(), RemoteIoError>, us: f64) -> Option<Loaded> {
        let load = self.map.remove(&token)?;
        let result = match (result, load.what) {
            (Ok(()), _) => Ok((load.tier, us)),
            (Err(e), LoadOf::Spilled) => Err(LoadError::Spilled(e)),
            (Err(RemoteIoError::Size { found, .. }), LoadOf::Remote { producer, len }) => {
                Err(LoadError::Size { producer, found, len })
            }
            (Err(cause), LoadOf::Remote { producer, .. }) => Err(LoadError::Remote { producer, cause }),
        };
        Some(Loaded {
            call: load.call,
            object: load.object,
            extent: load.extent,
            result,
        })
    }
}

/// The other calls (their reads are what no spill may move).
pub(crate) type Others = HashMap<u64, Call>;

/// Reserves `len` bytes for `call` in `segment`, spilling objects that neither it nor other
/// calls read when the arena is full.
fn alloc(
    call: &Call,
    others: &Others,
    segment: u32,
    len: u64,
    cx: &mut Cx<'_>,
) -> Result<Extent, crate::store::arena::ArenaFull> {
    let held = || {
        others
            .values()
            .flat_map(|c| c.reads.iter())
            .chain(call.reads.iter())
            .copied()
            .collect()
    };
    cx.objects
        .alloc_or_spill(cx.arena, segment, len, held, cx.io, &cx.config.name)
}

/// Resolves a call's inputs (already in the arena, or loaded: [`Loads::start`]) to arena
/// references and reserves its outputs. `others`: the other calls.
pub(crate) fn prepare(call: &mut Call, others: &Others, cx: &mut Cx<'_>) -> Result<(), Unprepared> {
    // Borrowed, not cloned: workflow inputs may be large JSON strings.
    let inputs = std::mem::take(&mut call.pending);
    let result = prepare_with(call, &inputs, others, cx);
    call.pending = inputs;
    result
}

fn prepare_with(
    call: &mut Call,
    inputs: &[(String, InputValue)],
    others: &Others,
    cx: &mut Cx<'_>,
) -> Result<(), Unprepared> {
    let segment = cx.installs.segment_of(&call.wf);
    // Measures the copies into the arena (the call's data wait).
    let t = Instant::now();
    let mut copied = false;
    for (name, v) in inputs {
        let value = match v {
            InputValue::Absent => Value::Absent,
            InputValue::Object(r) => Value::One(input_ref(call, r.id, others, cx)?),
            InputValue::List(rs) => {
                let mut l = Vec::with_capacity(rs.len());
                for r in rs {
                    l.push(input_ref(call, r.id, others, cx)?);
                }
                Value::List(l)
            }
            InputValue::Json(j) => {
                copied = true;
                Value::One(json_input(call, name, j, others, segment, cx)?)
            }
        };
        call.invoke.inputs.push((name.clone(), value));
    }
    for (name, size, _) in call.outputs.clone() {
        let r = reserve(call, &name, size, others, segment, cx)?;
        call.invoke.outputs.push((name, r));
    }
    // Counted once the call is ready (a call that waits for room is prepared again).
    let loads = call.load_wait_us;
    // With copies, the whole preparation: the copies and the loads.
    let waited = if copied { us(t.elapsed()) + loads } else { loads };
    cx.invocations.add_data_us(call.invocation, Some(call.record), waited);
    Ok(())
}

/// Writes a JSON input into the arena: a string as its UTF-8 bytes, anything else as JSON
/// text (an empty one takes no room).
fn json_input(
    call: &mut Call,
    name: &str,
    j: &serde_json::Value,
    others: &Others,
    segment: u32,
    cx: &mut Cx<'_>,
) -> Result<frame::ObjectRef, Unprepared> {
    let text;
    let bytes: &[u8] = match j {
        serde_json::Value::String(s) => s.as_bytes(),
        v => {
            text = serde_json::to_vec(v).map_err(|e| Unprepared::Fatal(format!("input `{name}`: {e}")))?;
            &text
        }
    };
    if bytes.is_empty() {
        return Ok(frame::ObjectRef::default());
    }
    let len = bytes.len() as u64;
    let capacity = cx.arena.capacity();
    let e = alloc(call, others, segment, len, cx).map_err(|e| {
        let m = format!(
            "input `{name}` of step `{}`: {e}; give the daemon a larger arena (--arena-mib)",
            call.step
        );
        no_room(len, capacity, m)
    })?;
    call.temps.push(e);
    cx.arena.write(e, 0, bytes);
    Ok(frame::ObjectRef {
        segment: e.segment,
        offset: e.offset,
        len,
    })
}

/// Reserves room for output `name` of declared `size` (a small reservation for a pack
/// function's output of unknown size, so that small outputs need no round trip to ask for
/// room).
pub(super) fn reserve(
    call: &mut Call,
    name: &str,
    size: u64,
    others: &Others,
    segment: u32,
    cx: &mut Cx<'_>,
) -> Result<frame::ObjectRef, Unprepared> {
    let capacity = cx.arena.capacity();
    let synthetic = call.synthetic;
    let size = if size == 0 && !synthetic {
        DEFAULT_RESERVATION
    } else {
        size
    };
    if size == 0 || (!synthetic && size > capacity) {
        return Ok(frame::ObjectRef::default());
    }
    match alloc(call, others, segment, size, cx) {
        Ok(e) => {
            call.extents.push((name.to_owned(), e));
            Ok(frame::ObjectRef {
                segment: e.segment,
                offset: e.offset,
                len: size,
            })
        }
        Err(e) => {
            let m = format!(
                "output `{name}` needs {size} bytes: {e}; give the daemon a larger arena (--arena-mib) or scale data \
                 down (--data-scale)"
            );
            Err(no_room(size, capacity, m))
        }
    }
}

/// The arena reference of object `id` for `call` (its loaded copy when it was out of the
/// arena).
fn input_ref(call: &mut Call, id: u64, others: &Others, cx: &mut Cx<'_>) -> Result<frame::ObjectRef, Unprepared> {
    let capacity = cx.arena.capacity();
    let segment = cx.installs.segment_of(&call.wf);
    let obj = cx
        .objects
        .get(id)
        .ok_or_else(|| Unprepared::Fatal(format!("object {id} is not held")))?;
    call.reads.push(id);
    if let Some(&(e, tier, t)) = call.loaded.get(&id) {
        call.reload_us.insert(id, (tier, t));
        return Ok(frame::ObjectRef {
            segment: e.segment,
            offset: e.offset,
            len: obj.len,
        });
    }
    match &obj.place {
        Place::Empty => Ok(frame::ObjectRef::default()),
        Place::Pending => Err(Unprepared::Fatal(format!("object {id} has not arrived"))),
        Place::Arena(e) if e.segment == segment => Ok(frame::ObjectRef {
            segment: e.segment,
            offset: e.offset,
            len: obj.len,
        }),
        Place::Arena(e) => {
            // In another workflow version's segment, which the call's instance does not map
            // (not made by this daemon's own objects): it gets a copy in its own.
            let (from, len, producer) = (*e, obj.len, obj.producer.clone());
            let bytes = cx
                .arena
                .read(from, len)
                .ok_or_else(|| Unprepared::Fatal(format!("the output of `{producer}` lies outside the arena")))?;
            let e = alloc(call, others, segment, len, cx)
                .map_err(|e| no_room(len, capacity, format!("cannot copy the output of `{producer}`: {e}")))?;
            call.temps.push(e);
            cx.arena.write(e, 0, &bytes);
            Ok(frame::ObjectRef {
                segment: e.segment,
                offset: e.offset,
                len,
            })
        }
        // Loaded by `Loads::start` before.
        Place::Spilled(_) | Place::Remote { .. } => {
            Err(Unprepared::Fatal(format!("object {id} was not loaded into the arena")))
        }
    }
}

/// Undoes a [`prepare`] that could not finish (the call goes back to its queue or waits for
/// its loads); what it loaded stays.
pub(crate) fn unprepare(call: &mut Call, arena: &mut Arena) {
    for (_, e) in call.extents.drain(..) {
        arena.free(e);
    }
    for e in call.temps.drain(..) {
        arena.free(e);
    }
    call.invoke.inputs.clear();
    call.invoke.outputs.clear();
    call.reads.clear();
    call.reload_us.clear();
}

/// The fan-out edges of a foreach element's call: one per input that is the element itself
/// (`each.item`), from the producer of the list iterated over (`input.NAME` for a workflow
/// input) to the element, with the bytes the daemon copied out of the list into the arena
/// for it (tier `element`: the list is parsed once, each element copied for its call); `to`
/// is left for the caller.
pub(crate) fn element_edges(call: &Call, installs: &Installs) -> Vec<EdgeRecord> {
    let Some(element) = call.element else { return Vec::new() };
    let Some(installed) = installs.get(&call.wf) else {
        return Vec::new();
    };
    let graph = &installed.wf.graph;
    let Some(task) = graph[call.node].task() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for binding in &task.inputs {
        let [DataSource::Item(f)] = binding.sources.as_slice() else {
            continue;
        };
        let NodeKind::Foreach(fe) = &graph[*f].kind else {
            continue;
        };
        let from = match &fe.over {
            DataSource::Input(name) => format!("input.{name}"),
            DataSource::Output { node, .. } => graph[*node].name.clone(),
            DataSource::Item(_) | DataSource::Index(_) => continue,
        };
        let bytes = call
            .invoke
            .inputs
            .iter()
            .find(|(name, _)| *name == binding.name)
            .map_or(0, |(_, v)| match v {
                Value::One(r) => r.len,
                Value::Absent | Value::List(_) | Value::Prior(_) => 0,
            });
        out.push(EdgeRecord {
            from,
            to: String::new(),
            bytes,
            tier: "element".into(),
            transfer_us: 0.0,
            from_element: None,
            to_element: Some(element),
        });
    }
    out
}
