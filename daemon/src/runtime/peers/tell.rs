//! What this worker tells the other workers of a plan: an invocation's `Start` (with the
//! large inputs staged apart, pushed on streams of their own), a task's `Done` (with its
//! outputs pushed to their readers, and copied to the remote tier for edges the plan marks
//! remote: the `Done` waits for those copies), a caught failure, and an invocation's failure.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use faasflow_core::NodeId;
use faasflow_core::engine::{InvocationId, ObjectRef};
use faasflow_remote::ObjectKey;

use super::{Followup, PeerRecord, arrivals, broadcast, unix_us};
use crate::io::message::{Caught, ControlMessage, Done, Failed, ObjectHeader, OutputRef, StagedInput, Start};
use crate::net::Net;
use crate::net::Source as PushSource;
use crate::remote::{Dest, RemoteEvent, RemoteIoError, Source};
use crate::runtime::calls::{Call, Calls, Cx};
use crate::runtime::install::Installed;
use crate::runtime::invocations::{Outcome, refs};
use crate::runtime::io::{Part, arena_source};
use crate::runtime::objects::{Object, Place};
use crate::runtime::seal::{Sealed, edge_key};
use crate::runtime::types::{us, us_between};

/// Why an object could not be copied to the remote tier for its readers.
#[derive(Debug, thiserror::Error)]
enum CopyRefused {
    #[error("the object is gone")]
    Gone,
    #[error("the object has no bytes here")]
    NoBytes,
    #[error("{0}")]
    Io(#[from] RemoteIoError),
}

/// A push: (worker name, its address), object id.
type Target = ((String, SocketAddr), u64);

/// A task's completion, told: the engine learns of it, then the others (`msg`).
pub(crate) struct Told {
    pub(crate) invocation: InvocationId,
    pub(crate) node: NodeId,
    pub(crate) element: Option<u32>,
    pub(crate) objs: Vec<(String, ObjectRef)>,
    pub(crate) msg: Option<(Vec<(String, SocketAddr)>, ControlMessage)>,
}

/// A `Done` waiting for copies of its outputs to the remote tier.
struct Waiting {
    call: Call,
    objs: Vec<(String, ObjectRef)>,
    others: Vec<(String, SocketAddr)>,
    targets: Vec<Target>,
    /// Per copied object, where it is pushed instead if its copy fails.
    fallback: HashMap<u64, Vec<Target>>,
    /// Objects in the remote tier for their readers.
    in_remote: Vec<u64>,
    copies: u32,
    /// When the copies started, and whether one went through: the wall-clock time until the
    /// last is through is the producer's data time (they run side by side).
    since: Instant,
    copied: bool,
}

/// A staged input being written to a spill file.
struct StageFile {
    invocation: InvocationId,
    object: u64,
    path: std::path::PathBuf,
    name: String,
    len: u64,
}

/// What is being told, and the writes it waits for.
#[derive(Default)]
pub(super) struct Telling {
    /// Pushes of staged inputs from memory (no local object): object → (invocation, pushes
    /// not through yet).
    staged_sends: HashMap<u64, (InvocationId, u32)>,
    /// Staged inputs being written to spill files, by token.
    stage_files: HashMap<u64, StageFile>,
    /// `Done`s waiting for copies, by call.
    waiting: HashMap<u64, Waiting>,
    /// Copies in flight, by token: (call, object, key).
    copies: HashMap<u64, (u64, u64, ObjectKey)>,
    /// Pushes whose bytes are read from the remote tier first, by token.
    fetches: HashMap<u64, (String, SocketAddr, ObjectHeader)>,
}

impl Telling {
    /// A push of staged object `object` ended: its invocation, when it was one.
    pub(super) fn staged_sent(&mut self, object: u64) -> Option<InvocationId> {
        let (inv, left) = self.staged_sends.get_mut(&object)?;
        let inv = *inv;
        *left -= 1;
        if *left == 0 {
            self.staged_sends.remove(&object);
        }
        Some(inv)
    }
}

/// The staged inputs of an invocation whose `Start`s went: their bytes go next.
pub(crate) struct Staging {
    invocation: InvocationId,
    staged: Vec<(String, Vec<u8>)>,
    ids: Vec<Option<u64>>,
    named: Vec<Vec<StagedInput>>,
    others: Vec<(String, SocketAddr)>,
    /// Inputs put here beforehand: object, the other workers (by index) that read it, and
    /// whether a task here does.
    put: Vec<(u64, Vec<usize>, bool)>,
}

/// An invocation starting here as its entry, as the other workers get it.
pub(crate) struct Starting {
    /// The other workers of its plan.
    pub(crate) others: Vec<(String, SocketAddr)>,
    /// Large inputs taken out of its input, sent apart: name, bytes.
    staged: Vec<(String, Vec<u8>)>,
    /// The input each other worker gets in its `Start`.
    inputs: Vec<Vec<u8>>,
    /// Inputs put here beforehand ([`crate::api::Put`]), staged on one worker too: name,
    /// object.
    put: Vec<(String, u64)>,
}

impl Telling {
    /// What the other workers of `key`'s plan get of an invocation's `input`: the large
    /// inputs only tasks read are taken out (to go apart, as objects: they would hold up
    /// `Start`), and each worker gets the inputs its tasks, conditions and foreach lists read.
    /// On one worker, nothing is taken out (each call copies what it reads).
    pub(super) fn starting(
        installed: Option<&Installed>,
        input: &mut serde_json::Value,
        put: Vec<(String, u64)>,
    ) -> Starting {
        let others = installed.map(Installed::other_workers).unwrap_or_default();
        let staged = match installed {
            Some(i) if !others.is_empty() => take_staged(i, input),
            _ => Vec::new(),
        };
        let inputs = others
            .iter()
            .map(|(name, _)| input_for(installed, name, input))
            .collect();
        Starting {
            others,
            staged,
            inputs,
            put,
        }
    }

    /// Sends the `Start`s of invocation `id` (just started here), naming its staged inputs;
    /// their bytes go next ([`Peers::stage`]).
    pub(super) fn start(
        &mut self,
        net: Option<&Net>,
        id: InvocationId,
        key: &(String, u64),
        s: Starting,
        cx: &mut Cx<'_>,
    ) -> Staging {
        let (mut named, ids) = name_staged(id, &s.staged, &s.others, cx);
        let put = name_put(id, &s.put, &s.others, &mut named, cx);
        let origin_us = cx.invocations.get(id).map_or(0, |i| unix_us(i.start));
        for ((peer, input), staged) in s.others.iter().zip(s.inputs).zip(named.iter()) {
            let msg = ControlMessage::Start(Start {
                workflow: key.0.clone(),
                version: key.1,
                invocation: id,
                origin_us,
                input,
                staged: staged.clone(),
            });
            broadcast(net, std::slice::from_ref(peer), &msg);
        }
        Staging {
            invocation: id,
            staged: s.staged,
            ids,
            named,
            others: s.others,
            put,
        }
    }

    /// Pushes the staged inputs of invocation `id` to the workers whose `Start` names them,
    /// from memory (no copy), and copies each into the arena (or a spill file) when this
    /// worker's tasks read it.
    pub(super) fn stage(
        &mut self,
        net: Option<&Net>,
        s: Staging,
        calls: &mut Calls,
        cx: &mut Cx<'_>,
        out: &mut Vec<Followup>,
    ) {
        let Staging {
            invocation: id,
            staged,
            ids,
            named,
            others,
            put,
        } = s;
        for (object, readers, here) in put {
            for k in readers {
                let (name, addr) = &others[k];
                self.push(net, name, *addr, id, object, cx);
            }
            if !here {
                // Freed once its pushes are through (now, when there are none).
                cx.objects.mark_released(object);
                calls.unpin(&[object], cx);
            }
        }
        let Some(wf_key) = cx.invocations.get(id).map(|i| i.wf.clone()) else {
            return;
        };
        for ((name, bytes), object) in staged.into_iter().zip(ids) {
            let Some(object) = object else { continue };
            let readers: Vec<usize> = (0..others.len())
                .filter(|&k| named[k].iter().any(|s| s.object == object))
                .collect();
            let len = bytes.len() as u64;
            // Pushed from memory, without a copy (and without pinning the local copy).
            let bytes = bytes::Bytes::from(bytes);
            if !readers.is_empty() {
                self.staged_sends.insert(object, (id, readers.len() as u32));
            }
            for k in readers {
                cx.objects.transfers += 1;
                if let Some(net) = net {
                    let (name, addr) = &others[k];
                    let header = ObjectHeader {
                        invocation: id,
                        object,
                        len,
                    };
                    net.push(name, *addr, header, PushSource::Bytes(bytes.clone()));
                }
            }
            if !cx.objects.contains(object) {
                continue;
            }
            let segment = cx.installs.segment_of(&wf_key);
            match cx.arena.alloc(segment, len) {
                Ok(e) => {
                    // Measures the copy (the invocation's data time).
                    let t = Instant::now();
                    cx.arena.write(e, 0, &bytes);
                    cx.objects.add_resident(&wf_key, e.len);
                    if let Some(o) = cx.objects.get_mut(object) {
                        o.place = Place::Arena(e);
                    }
                    cx.invocations.add_data_us(id, None, us(t.elapsed()));
                    // Calls waiting for this one start now, not after the other copies.
                    arrivals(id, calls, cx, out);
                }
                Err(_) => {
                    let path = cx.objects.spill_path(&format!("input-{id}-{object}"));
                    let token = cx.io.write(Part::Peers, Source::Bytes(bytes), Dest::File(path.clone()));
                    self.stage_files.insert(
                        token,
                        StageFile {
                            invocation: id,
                            object,
                            path,
                            name,
                            len,
                        },
                    );
                }
            }
        }
        arrivals(id, calls, cx, out);
    }

    /// A storage operation for peers ended: a staged input's file, a copy for a remote edge,
    /// or the bytes of a push. Returns a completion told, when one waited for it.
    pub(super) fn io_done(
        &mut self,
        net: Option<&Net>,
        event: RemoteEvent,
        calls: &mut Calls,
        cx: &mut Cx<'_>,
        out: &mut Vec<Followup>,
    ) -> Option<Told> {
        use crate::remote::Done;
        let RemoteEvent { token, result, us } = event;
        if let Some(f) = self.stage_files.remove(&token) {
            match result {
                Done::Stored(Ok(())) => {
                    match cx.objects.get_mut(f.object) {
                        Some(o) => o.place = Place::Spilled(f.path),
                        // Its invocation ended meanwhile.
                        None => cx.io.remove_file(f.path),
                    }
                    cx.invocations.add_data_us(f.invocation, None, us);
                    arrivals(f.invocation, calls, cx, out);
                }
                Done::Stored(Err(e)) | Done::Batch(Err((_, e))) => {
                    cx.io.remove_file(f.path.clone());
                    let cause = match e {
                        RemoteIoError::File { cause, .. } => cause.to_string(),
                        e => e.to_string(),
                    };
                    let msg = format!(
                        "input `{}` ({} bytes) fits neither in the arena nor in the spill file {}: {cause}",
                        f.name,
                        f.len,
                        f.path.display()
                    );
                    out.push(super::abort(f.invocation, msg));
                }
                Done::Read(_) | Done::Batch(Ok(())) => {}
            }
            return None;
        }
        if let Some((name, addr, header)) = self.fetches.remove(&token) {
            match result {
                Done::Read(Ok(bytes)) => {
                    if let Some(net) = net {
                        net.push(&name, addr, header, PushSource::Bytes(bytes.into()));
                    }
                }
                other => {
                    let cause = match other {
                        Done::Read(Err(e)) | Done::Stored(Err(e)) | Done::Batch(Err((_, e))) => e.to_string(),
                        _ => String::new(),
                    };
                    tracing::warn!(
                        object = header.object,
                        invocation = header.invocation,
                        worker = %name,
                        cause = %cause,
                        "cannot push an object to another worker"
                    );
                    cx.objects.transfers = cx.objects.transfers.saturating_sub(1);
                    if let Some(o) = cx.objects.get_mut(header.object) {
                        o.pushes = o.pushes.saturating_sub(1);
                    }
                    calls.unpin(&[header.object], cx);
                }
            }
            return None;
        }
        let result = match result {
            crate::remote::Done::Stored(r) => r,
            crate::remote::Done::Read(r) => r.map(|_| ()),
            crate::remote::Done::Batch(r) => r.map_err(|(_, e)| e),
        };
        self.copied(net, token, result, calls, cx)
    }

    /// A local task finished with `objs`: pushes the objects other workers read and makes the
    /// `Done` to send to the others (sent once the engine has the completion). Outputs read
    /// over edges the plan marks remote are copied to the remote tier first (`None`: the
    /// `Done` waits for those copies).
    pub(super) fn tell_done(&mut self, net: Option<&Net>, sealed: Sealed, cx: &mut Cx<'_>) -> Option<Told> {
        let Sealed { call, objs } = sealed;
        let installs = cx.installs;
        let Some(installed) = installs.get(&call.wf) else {
            return Some(told(&call, objs, None));
        };
        let others = installed.other_workers();
        if others.is_empty() || !cx.invocations.contains(call.invocation) {
            return Some(told(&call, objs, None));
        }
        let node = call.node.index() as u32;
        let entry = cx.invocations.get(call.invocation).map(|i| i.entry);
        let me = installed.placement.me;
        let mut targets: Vec<Target> = Vec::new();
        // Objects for edges the plan marks remote: (id, readers over such edges).
        let mut remote: Vec<(u64, Vec<Target>)> = Vec::new();
        for (name, o) in &objs {
            if o.len == 0 {
                continue;
            }
            let k = (node, name.clone());
            let mut to: Vec<u32> = installed.readers.get(&k).cloned().unwrap_or_default();
            if let Some(r) = installed.remote_readers.get(&k) {
                remote.push((
                    o.id,
                    r.iter()
                        .filter_map(|w| installed.worker(*w).map(|a| (a, o.id)))
                        .collect(),
                ));
            }
            if let Some(e) = entry
                && e != me
                && installed.result_reads.contains(&k)
                && !to.contains(&e)
            {
                to.push(e);
            }
            targets.extend(to.into_iter().filter_map(|w| installed.worker(w).map(|a| (a, o.id))));
        }
        let mut waiting = Waiting {
            call,
            objs,
            others,
            targets,
            fallback: HashMap::new(),
            in_remote: Vec::new(),
            copies: 0,
            since: cx.now,
            copied: false,
        };
        // Remote edges: one copy in the remote tier, read there by their readers; pushed
        // instead when the tier is missing or refuses it.
        for (id, fallback) in remote {
            match self.start_copy(&waiting.call, id, cx) {
                Ok(Some(())) => {
                    waiting.fallback.insert(id, fallback);
                    waiting.copies += 1;
                }
                Ok(None) => waiting.in_remote.push(id),
                Err(e) => {
                    refused(cx, &e);
                    add_targets(&mut waiting.targets, fallback);
                }
            }
        }
        if waiting.copies > 0 {
            self.waiting.insert(waiting.call.id(), waiting);
            return None;
        }
        Some(self.done_message(net, waiting, cx))
    }

    /// Starts copying object `id` of `call` to the remote tier for its readers over edges the
    /// plan marks remote (`Ok(None)`: it is there already, stored as it was sealed).
    fn start_copy(&mut self, call: &Call, id: u64, cx: &mut Cx<'_>) -> Result<Option<()>, CopyRefused> {
        let key = edge_key(&call.wf, call.invocation, &cx.config.name, id);
        let obj = cx.objects.get(id).ok_or(CopyRefused::Gone)?;
        if matches!(&obj.place, Place::Remote { key: k, owned: true, spilled: false } if *k == key) {
            return Ok(None);
        }
        if !cx.io.has_store() {
            return Err(RemoteIoError::NoStore.into());
        }
        let source = match &obj.place {
            Place::Arena(e) => arena_source(cx.arena, *e, obj.len).ok_or(RemoteIoError::OutsideArena)?,
            Place::Spilled(p) => Source::File(p.clone()),
            Place::Remote { key, .. } => Source::Key(key.clone()),
            Place::Empty | Place::Pending => return Err(CopyRefused::NoBytes),
        };
        if let Some(o) = cx.objects.get_mut(id) {
            o.io += 1;
        }
        let token = cx.io.write(Part::Peers, source, Dest::Key(key.clone()));
        self.copies.insert(token, (call.id(), id, key));
        Ok(Some(()))
    }

    /// Copy `token` ended: the `Done` it waited for goes when it was the last.
    fn copied(
        &mut self,
        net: Option<&Net>,
        token: u64,
        result: Result<(), RemoteIoError>,
        calls: &mut Calls,
        cx: &mut Cx<'_>,
    ) -> Option<Told> {
        let (call, object, key) = self.copies.remove(&token)?;
        if let Some(o) = cx.objects.get_mut(object) {
            o.io = o.io.saturating_sub(1);
        }
        let w = self.waiting.get_mut(&call);
        match (result, w) {
            (Ok(()), Some(w)) => {
                if let Some(o) = cx.objects.get_mut(object) {
                    o.remote_copy = Some(key);
                }
                w.in_remote.push(object);
                w.copied = true;
            }
            (Ok(()), None) => cx.io.delete(key),
            (Err(e), w) => {
                refused(cx, &e);
                if let Some(w) = w
                    && let Some(fallback) = w.fallback.remove(&object)
                {
                    add_targets(&mut w.targets, fallback);
                }
            }
        }
        calls.unpin(&[object], cx);
        let w = self.waiting.get_mut(&call)?;
        w.copies = w.copies.saturating_sub(1);
        if w.copies > 0 {
            return None;
        }
        let w = self.waiting.remove(&call)?;
        if w.copied {
            // The readers on other workers wait for the copies as for the producer's own work.
            let took = us_between(w.since, cx.now);
            cx.invocations.add_data_us(w.call.invocation, Some(w.call.record), took);
        }
        Some(self.done_message(net, w, cx))
    }

    /// Pushes a completion's objects to their readers and makes its `Done`.
    fn done_message(&mut self, net: Option<&Net>, w: Waiting, cx: &mut Cx<'_>) -> Told {
        for ((name, addr), id) in &w.targets {
            self.push(net, name, *addr, w.call.invocation, *id, cx);
        }
        let outputs = w
            .objs
            .iter()
            .map(|(name, o)| OutputRef {
                name: name.clone(),
                object: o.id,
                len: o.len,
                json: o.json.as_ref().map(|j| serde_json::to_vec(&**j).unwrap_or_default()),
                remote: w.in_remote.contains(&o.id),
            })
            .collect();
        let call = &w.call;
        let record = cx.invocations.get_mut(call.invocation).map(|inv| {
            let rec = PeerRecord {
                functions: inv.functions.get(call.record).cloned().into_iter().collect(),
                edges: inv
                    .edges
                    .get(call.edge_range.clone())
                    .map(<[_]>::to_vec)
                    .unwrap_or_default(),
                data_us: inv.data_us - inv.reported.0,
                spills: inv.spills - inv.reported.1,
            };
            inv.reported = (inv.data_us, inv.spills);
            serde_json::to_vec(&rec).unwrap_or_default()
        });
        let msg = ControlMessage::Done(Done {
            invocation: call.invocation,
            node: call.node.index() as u32,
            element: call.element,
            outputs,
            record: record.unwrap_or_default(),
        });
        told(&w.call, w.objs, Some((w.others, msg)))
    }

    /// Pushes object `id` to worker `name` (its bytes read from the remote tier first when
    /// they are there).
    fn push(
        &mut self,
        net: Option<&Net>,
        name: &str,
        addr: SocketAddr,
        invocation: InvocationId,
        id: u64,
        cx: &mut Cx<'_>,
    ) {
        let Some(obj) = cx.objects.get(id) else { return };
        let header = ObjectHeader {
            invocation,
            object: id,
            len: obj.len,
        };
        let source = match &obj.place {
            Place::Arena(e) => match cx.arena.region(e.segment) {
                Some(region) => Some(PushSource::Arena {
                    region: region.clone(),
                    offset: e.offset,
                    len: obj.len,
                }),
                None => return,
            },
            Place::Spilled(p) => Some(PushSource::File(p.clone())),
            Place::Remote { key, .. } => {
                let token = cx.io.fetch(Part::Peers, Source::Key(key.clone()));
                self.fetches.insert(token, (name.to_owned(), addr, header));
                None
            }
            Place::Empty | Place::Pending => return,
        };
        if let Some(o) = cx.objects.get_mut(id) {
            o.pushes += 1;
        }
        cx.objects.transfers += 1;
        if let (Some(source), Some(net)) = (source, net) {
            net.push(name, addr, header, source);
        }
    }

    /// Whether an invocation can end now (its result's bytes are here); when it fails here,
    /// tells the other workers.
    pub(super) fn ending(net: Option<&Net>, invocation: InvocationId, result: &Outcome, cx: &Cx<'_>) -> bool {
        let Some(inv) = cx.invocations.get(invocation) else {
            return true;
        };
        match result {
            // JSON values came with their Done: only bytes are waited for.
            Ok(values) => {
                inv.reply.is_none()
                    || !values.iter().flat_map(|(_, v)| refs(v)).any(|r| {
                        r.json.is_none() && cx.objects.get(r.id).is_some_and(|o| matches!(o.place, Place::Pending))
                    })
            }
            Err(error) => {
                if !inv.quiet {
                    let others = cx
                        .installs
                        .get(&inv.wf)
                        .map(Installed::other_workers)
                        .unwrap_or_default();
                    let msg = ControlMessage::Failed(Failed {
                        invocation,
                        error: error.to_string(),
                        lost_worker: inv.lost.clone(),
                    });
                    broadcast(net, &others, &msg);
                }
                true
            }
        }
    }

    /// A local task failed for good and its catch step runs: the plan's other workers (whose
    /// engines wait on the task) learn of it, with the records of its attempts here.
    pub(super) fn tell_caught(
        net: Option<&Net>,
        invocation: InvocationId,
        node: NodeId,
        element: Option<u32>,
        failure: &serde_json::Value,
        cx: &Cx<'_>,
    ) {
        let Some(inv) = cx.invocations.get(invocation) else {
            return;
        };
        let installed = cx.installs.get(&inv.wf);
        let others = installed.map(Installed::other_workers).unwrap_or_default();
        if others.is_empty() {
            return;
        }
        let name = installed.map(|i| i.wf.graph[node].name.clone()).unwrap_or_default();
        let record = PeerRecord {
            functions: inv
                .functions
                .iter()
                .filter(|f| f.name == name && f.element == element)
                .cloned()
                .collect(),
            edges: Vec::new(),
            data_us: 0.0,
            spills: 0,
        };
        let msg = ControlMessage::Caught(Caught {
            invocation,
            node: node.index() as u32,
            element,
            failure: serde_json::to_vec(failure).unwrap_or_default(),
            record: serde_json::to_vec(&record).unwrap_or_default(),
        });
        broadcast(net, &others, &msg);
    }
}

fn told(call: &Call, objs: Vec<(String, ObjectRef)>, msg: Option<(Vec<(String, SocketAddr)>, ControlMessage)>) -> Told {
    Told {
        invocation: call.invocation,
        node: call.node,
        element: call.element,
        objs,
        msg,
    }
}

/// Adds pushes not there yet.
fn add_targets(targets: &mut Vec<Target>, more: Vec<Target>) {
    for t in more {
        if !targets.contains(&t) {
            targets.push(t);
        }
    }
}

/// The remote tier is missing or refused a copy: said once.
fn refused(cx: &mut Cx<'_>, why: &dyn std::fmt::Display) {
    if cx.io.first_refusal() {
        tracing::warn!(cause = %why, "edges planned remote go peer to peer instead");
    }
}

/// The input to send to worker `peer` in its `Start`: only the inputs it needs (it fills in
/// the others as `null`).
fn input_for(installed: Option<&Installed>, peer: &str, input: &serde_json::Value) -> Vec<u8> {
    let needs = installed.and_then(|i| i.input_needs.get(peer));
    let filtered = match (input, needs) {
        (serde_json::Value::Object(m), Some(needs)) => serde_json::Value::Object(
            m.iter()
                .filter(|(k, _)| needs.contains(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        _ => input.clone(),
    };
    serde_json::to_vec(&filtered).unwrap_or_default()
}

/// Takes the inputs to stage out of an invocation's `input` (leaving `null` in their place):
/// large strings of [`faasflow_core::dag::Workflow::stageable_inputs`], name and bytes.
fn take_staged(installed: &Installed, input: &mut serde_json::Value) -> Vec<(String, Vec<u8>)> {
    let serde_json::Value::Object(map) = input else {
        return Vec::new();
    };
    let mut staged = Vec::new();
    for name in &installed.stageable {
        if let Some(v) = map.get_mut(name)
            && matches!(v, serde_json::Value::String(s) if s.len() >= faasflow_core::dag::STAGE_MIN_BYTES)
            && let serde_json::Value::String(s) = std::mem::take(v)
        {
            staged.push((name.clone(), s.into_bytes()));
        }
    }
    staged
}

/// Names the inputs put here for invocation `id` ([`crate::api::Put`]) in the `Start`s of
/// the other workers whose tasks read them, and notes those read here as staged: for each,
/// (object, the readers among `others`, whether a task here reads it).
fn name_put(
    id: InvocationId,
    put: &[(String, u64)],
    others: &[(String, SocketAddr)],
    named: &mut [Vec<StagedInput>],
    cx: &mut Cx<'_>,
) -> Vec<(u64, Vec<usize>, bool)> {
    let installs = cx.installs;
    let Some(installed) = cx.invocations.get(id).and_then(|inv| installs.get(&inv.wf)) else {
        return put.iter().map(|(_, object)| (*object, Vec::new(), false)).collect();
    };
    let mut out = Vec::with_capacity(put.len());
    for (name, object) in put {
        let len = cx.objects.get(*object).map_or(0, |o| o.len);
        let readers: Vec<usize> = others
            .iter()
            .enumerate()
            .filter(|(_, (w, _))| installed.input_needs.get(w).is_some_and(|n| n.contains(name)))
            .map(|(k, _)| k)
            .collect();
        for &k in &readers {
            named[k].push(StagedInput {
                name: name.clone(),
                object: *object,
                len,
            });
        }
        let here = installed.read_here.contains(name);
        if here {
            let readers = installed.staged_readers.get(name).copied();
            cx.invocations.note_staged(id, name.clone(), *object, readers);
        }
        out.push((*object, readers, here));
    }
    out
}

/// Names the staged inputs of invocation `id` (just started here) that each of `others`
/// reads, giving each input its object id (`None`: no task anywhere reads it). The `Start`s
/// carry these names and go before the bytes. An input read here too is an object still
/// arriving, which calls wait for (it is copied into the arena after the first triggers).
fn name_staged(
    id: InvocationId,
    staged: &[(String, Vec<u8>)],
    others: &[(String, SocketAddr)],
    cx: &mut Cx<'_>,
) -> (Vec<Vec<StagedInput>>, Vec<Option<u64>>) {
    let mut named: Vec<Vec<StagedInput>> = vec![Vec::new(); others.len()];
    let installs = cx.installs;
    let Some((wf_key, installed)) = cx
        .invocations
        .get(id)
        .and_then(|inv| installs.get(&inv.wf).map(|i| (inv.wf.clone(), i)))
    else {
        return (named, vec![None; staged.len()]);
    };
    let mut ids = Vec::with_capacity(staged.len());
    for (name, bytes) in staged {
        let here = installed.read_here.contains(name);
        let mut read = here;
        let object = cx.objects.new_id();
        for (k, (w, _)) in others.iter().enumerate() {
            if installed.input_needs.get(w).is_some_and(|n| n.contains(name)) {
                read = true;
                named[k].push(StagedInput {
                    name: name.clone(),
                    object,
                    len: bytes.len() as u64,
                });
            }
        }
        ids.push(read.then_some(object));
        if here {
            let len = bytes.len() as u64;
            let o = Object::foreign(Place::Pending, len, wf_key.clone(), id, format!("input.{name}"), cx.now);
            cx.objects.insert(object, o);
            let readers = installed.staged_readers.get(name).copied();
            cx.invocations.note_staged(id, name.clone(), object, readers);
        }
    }
    (named, ids)
}
