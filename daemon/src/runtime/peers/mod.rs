//! The loop's side of a cluster: what it tells the other workers of a plan ([`tell`]) and
//! what it does with what they tell it.
//!
//! Every daemon of a plan runs the same engine over the whole workflow and triggers its own
//! tasks only. The entry daemon (the one the planner invoked) sends [`Start`] to the others;
//! each daemon sends `Done` to the others when one of its tasks finishes (outputs by id,
//! small JSON values inline, the run's records for the report) and pushes the bytes of each
//! output to the workers with a task that reads it (and to the entry when the workflow's
//! result reads it), as soon as it is sealed. A task whose inputs are still arriving waits
//! for them; the entry's end waits for result objects still arriving. A failure decided on
//! one daemon (`Failed`), or a worker lost, ends the invocation everywhere.
//!
//! Objects of other workers get local ids here ([`Peers::local_id`]), so that ids never
//! collide. What a flow here cannot finish itself (ending an invocation) it returns as a
//! [`Followup`] for the loop.

mod put;
mod tell;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use faasflow_core::NodeId;
use faasflow_core::dag::{ValueKind, Workflow};
use faasflow_core::engine::{EngineError, InvocationId, ObjectRef};
use faasflow_core::report::{EdgeRecord, FunctionRecord};
use serde::{Deserialize, Serialize};

pub(crate) use self::tell::Told;
use self::tell::{Staging, Starting, Telling};
use crate::io::message::{Caught, ControlMessage, Done, Failed, ObjectHeader, OutputRef, StagedInput, Start};
use crate::net::{Landing, Net, NetEvent};
use crate::runtime::calls::{Calls, Cx};
use crate::runtime::install::Installed;
use crate::runtime::invocations::InvState;
use crate::runtime::objects::{Object, Place};
use crate::runtime::seal::edge_key;
use crate::runtime::types::{WfKey, no_version};

/// How long messages and objects about an invocation that has not started here are kept.
const STRAY_TTL: Duration = Duration::from_secs(60);

/// Why what another worker said ends an invocation here (or is refused).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    #[error("worker `{me}` does not have workflow `{workflow}` version {version} installed with worker `{from}` in it")]
    NotInstalled {
        me: String,
        workflow: String,
        version: u64,
        from: String,
    },
    #[error("the input sent by worker `{from}` is not JSON: {cause}")]
    BadInput { from: String, cause: serde_json::Error },
    #[error("worker `{me}` cannot start it: {cause}")]
    CannotStart { me: String, cause: EngineError },
    #[error("worker `{from}` reported step {node} of this worker as done")]
    NotTheirs { from: String, node: u32 },
    #[error("worker `{from}` sent output `{output}` of `{producer}` as invalid JSON: {cause}")]
    BadJson {
        from: String,
        output: String,
        producer: String,
        cause: serde_json::Error,
    },
    #[error("worker `{from}` sent output `{output}` of `{producer}` without its JSON value")]
    NoJson {
        from: String,
        output: String,
        producer: String,
    },
    #[error("worker `{from}` reported step {node} as caught, which is not its to run")]
    NotTheirsToCatch { from: String, node: u32 },
    #[error("worker `{from}` sent the failure of step {node} as invalid JSON: {cause}")]
    BadFailure {
        from: String,
        node: u32,
        cause: serde_json::Error,
    },
}

/// What a peer flow leaves to the loop.
#[derive(Debug, PartialEq)]
pub(crate) enum Followup {
    /// End an invocation with an error (`quiet`: decided elsewhere, not told).
    Abort {
        invocation: InvocationId,
        error: String,
        quiet: bool,
    },
    /// Something an invocation's end waited for arrived: end it if it can.
    Finish(InvocationId),
}

fn abort(invocation: InvocationId, error: String) -> Followup {
    Followup::Abort {
        invocation,
        error,
        quiet: false,
    }
}

/// What a daemon tells the entry about one finished task, for the report.
#[derive(Serialize, Deserialize)]
struct PeerRecord {
    functions: Vec<FunctionRecord>,
    edges: Vec<EdgeRecord>,
    /// Data time and spills on the sending daemon since its last record.
    data_us: f64,
    spills: u64,
}

/// Both clocks read together: the monotonic one and the wall clock (µs since the Unix
/// epoch). Converting between them needs a pair read at one moment, not the turn's `now`.
fn clocks() -> (Instant, Duration) {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (Instant::now(), wall)
}

/// `at` in µs since the Unix epoch, by this machine's clock.
pub(crate) fn unix_us(at: Instant) -> u64 {
    let (now, wall) = clocks();
    let ago = now.saturating_duration_since(at);
    u64::try_from(wall.saturating_sub(ago).as_micros()).unwrap_or(u64::MAX)
}

/// The instant of `unix_us` (µs since the Unix epoch), by this machine's clock; now if it
/// lies in the future.
fn instant_of(unix_us: u64) -> Instant {
    let (now, wall) = clocks();
    let ago = wall.saturating_sub(Duration::from_micros(unix_us));
    now.checked_sub(ago).unwrap_or(now)
}

/// Adds every input of `wf` that `input` (an object) lacks, as `null`: a `Start` carries only
/// the inputs its receiver reads, and the engine wants them all (the entry checked them).
fn fill_inputs(wf: &Workflow, input: &mut serde_json::Value) {
    if let serde_json::Value::Object(m) = input {
        for i in &wf.inputs {
            if !m.contains_key(&i.name) {
                m.insert(i.name.clone(), serde_json::Value::Null);
            }
        }
    }
}

/// The cluster's side of the loop: the transport and what it knows of other workers.
pub(crate) struct Peers {
    /// The peer transport (cluster daemons only).
    net: Option<Net>,
    /// Local ids of objects of other workers: (worker name, invocation, their id) → ours.
    ids: HashMap<(String, InvocationId, u64), u64>,
    /// Where each peer that sent a control message dials from (its endpoint): a start for a
    /// version not held here is answered there.
    addrs: HashMap<String, SocketAddr>,
    /// Messages about invocations not started here yet: invocation → (first seen, messages).
    early: HashMap<InvocationId, (Instant, Vec<(String, ControlMessage)>)>,
    /// What this worker tells the others, and the writes its messages wait for.
    tell: Telling,
    /// Inputs put before their invocation starts: (invocation, name) → object.
    puts: HashMap<(InvocationId, String), u64>,
}

impl Peers {
    pub(crate) fn new(net: Option<Net>) -> Self {
        Peers {
            net,
            ids: HashMap::new(),
            addrs: HashMap::new(),
            early: HashMap::new(),
            tell: Telling::default(),
            puts: HashMap::new(),
        }
    }

    /// Whether the daemon has a peer transport.
    pub(crate) fn has_net(&self) -> bool {
        self.net.is_some()
    }

    /// Closes every connection (the daemon stops).
    pub(crate) fn close(&mut self) {
        self.net = None;
    }

    /// Sends `msg` to each of `to`.
    pub(crate) fn broadcast(&self, to: &[(String, SocketAddr)], msg: &ControlMessage) {
        broadcast(self.net.as_ref(), to, msg);
    }

    /// What the other workers of `installed`'s plan get of an invocation's `input`
    /// ([`tell::Starting`]).
    pub(crate) fn starting(
        &self,
        installed: Option<&crate::runtime::install::Installed>,
        input: &mut serde_json::Value,
        put: Vec<(String, u64)>,
    ) -> Starting {
        Telling::starting(installed, input, put)
    }

    /// Sends the `Start`s of invocation `id` (just started here as its entry).
    pub(crate) fn start(&mut self, id: InvocationId, key: &(String, u64), s: Starting, cx: &mut Cx<'_>) -> Staging {
        self.tell.start(self.net.as_ref(), id, key, s, cx)
    }

    /// Sends the staged inputs of an invocation whose `Start`s went.
    pub(crate) fn stage(&mut self, s: Staging, calls: &mut Calls, cx: &mut Cx<'_>, out: &mut Vec<Followup>) {
        self.tell.stage(self.net.as_ref(), s, calls, cx, out);
    }

    /// A local task finished: its pushes and its `Done` (`None` while copies it waits for
    /// are written).
    pub(crate) fn tell_done(&mut self, sealed: crate::runtime::seal::Sealed, cx: &mut Cx<'_>) -> Option<Told> {
        self.tell.tell_done(self.net.as_ref(), sealed, cx)
    }

    /// A storage operation for peers ended.
    pub(crate) fn io_done(
        &mut self,
        event: crate::remote::RemoteEvent,
        calls: &mut Calls,
        cx: &mut Cx<'_>,
        out: &mut Vec<Followup>,
    ) -> Option<Told> {
        self.tell.io_done(self.net.as_ref(), event, calls, cx, out)
    }

    /// Whether an invocation can end now; when it fails here, tells the other workers.
    pub(crate) fn ending(
        &self,
        invocation: InvocationId,
        result: &crate::runtime::invocations::Outcome,
        cx: &Cx<'_>,
    ) -> bool {
        Telling::ending(self.net.as_ref(), invocation, result, cx)
    }

    /// A local task failed for good and was caught: the other workers learn of it.
    pub(crate) fn tell_caught(
        &self,
        invocation: InvocationId,
        node: NodeId,
        element: Option<u32>,
        failure: &serde_json::Value,
        cx: &Cx<'_>,
    ) {
        Telling::tell_caught(self.net.as_ref(), invocation, node, element, failure, cx);
    }

    /// An invocation ended here: what arrives about it later is dropped.
    pub(crate) fn forget(&mut self, invocation: InvocationId) {
        self.early.remove(&invocation);
        self.ids.retain(|(_, inv, _), _| *inv != invocation);
    }

    /// The local id of another worker's object.
    fn local_id(&mut self, from: &str, invocation: InvocationId, theirs: u64, cx: &mut Cx<'_>) -> u64 {
        *self
            .ids
            .entry((from.to_owned(), invocation, theirs))
            .or_insert_with(|| cx.objects.new_id())
    }

    /// Worker `node` is lost (its connection failed, or the planner says so): every
    /// invocation of a plan it is in fails, naming it. Returns how many.
    pub(crate) fn worker_lost(&mut self, node: &str, error: &str, cx: &mut Cx<'_>, out: &mut Vec<Followup>) -> u64 {
        // Its old connections say nothing of it any more (it may be a new process).
        if let Some(net) = &self.net {
            net.forget(node);
        }
        lose(node, error, cx, out)
    }

    /// What the network told the loop.
    pub(crate) fn net_event(&mut self, event: NetEvent, calls: &mut Calls, cx: &mut Cx<'_>, out: &mut Vec<Followup>) {
        match event {
            NetEvent::Message { from, addr, msg } => {
                if self.addrs.get(&from) != Some(&addr) {
                    self.addrs.insert(from.clone(), addr);
                }
                self.message(from, msg, calls, cx, out)
            }
            NetEvent::Incoming { from, header, reply } => {
                let landing = self.landing(&from, header, cx);
                let refused = matches!(landing, Landing::Refuse);
                if reply.send(landing.clone()).is_err() {
                    // The stream is gone already: nothing will arrive there.
                    let gone = Err(crate::net::TransferError::Closed);
                    self.arrived(from, header, landing, gone, calls, cx, out);
                } else if !refused {
                    cx.objects.transfers += 1;
                }
            }
            NetEvent::Arrived {
                from,
                header,
                landing,
                result,
            } => {
                cx.objects.transfers = cx.objects.transfers.saturating_sub(1);
                self.arrived(from, header, landing, result, calls, cx, out);
            }
            NetEvent::Sent { object, result } => {
                cx.objects.transfers = cx.objects.transfers.saturating_sub(1);
                let invocation = match self.tell.staged_sent(object) {
                    // A staged input pushed from memory (its local copy, if any, is not pinned).
                    Some(inv) => Some(inv),
                    None => cx.objects.get_mut(object).map(|o| {
                        o.pushes = o.pushes.saturating_sub(1);
                        o.invocation
                    }),
                };
                if let (Err(e), Some(inv)) = (result, invocation) {
                    // The receiver is lost or refused it: its invocation cannot go on there.
                    out.push(abort(
                        inv,
                        format!("an object could not be sent to another worker: {e}"),
                    ));
                }
                calls.unpin(&[object], cx);
            }
            NetEvent::Unsendable { invocation, error } => out.push(abort(invocation, error)),
            NetEvent::Lost { node, error } => {
                self.worker_lost(&node, &error, cx, out);
            }
        }
    }

    fn message(
        &mut self,
        from: String,
        msg: ControlMessage,
        calls: &mut Calls,
        cx: &mut Cx<'_>,
        out: &mut Vec<Followup>,
    ) {
        let id = msg.invocation();
        if cx.invocations.ended.contains(id) {
            return;
        }
        if let ControlMessage::Start(start) = msg {
            return self.peer_start(from, start, calls, cx, out);
        }
        if !cx.invocations.contains(id) {
            // Its start is still on its way (from the entry, on another connection).
            self.early
                .entry(id)
                .or_insert_with(|| (cx.now, Vec::new()))
                .1
                .push((from, msg));
            return;
        }
        match msg {
            ControlMessage::Done(done) => {
                if let Err(e) = self.peer_done(&from, done, cx) {
                    out.push(abort(id, e.to_string()));
                }
            }
            ControlMessage::Failed(f) => {
                if let (Some(inv), Some(lost)) = (cx.invocations.get_mut(id), f.lost_worker) {
                    inv.lost.get_or_insert(lost);
                }
                out.push(Followup::Abort {
                    invocation: f.invocation,
                    error: f.error,
                    quiet: true,
                });
            }
            ControlMessage::Caught(c) => {
                if let Err(e) = peer_caught(&from, c, cx) {
                    out.push(abort(id, e.to_string()));
                }
            }
            ControlMessage::Start(_) => {}
        }
    }

    /// Another worker, the entry, started an invocation of a plan this worker is in.
    fn peer_start(&mut self, from: String, start: Start, calls: &mut Calls, cx: &mut Cx<'_>, out: &mut Vec<Followup>) {
        let id = start.invocation;
        if cx.invocations.contains(id) || cx.invocations.cancelled.contains(id) {
            return;
        }
        let key = (start.workflow.clone(), start.version);
        let installs = cx.installs;
        let installed = installs.get(&key);
        let entry = installed.and_then(|i| i.index_of(&from));
        let input = serde_json::from_slice::<serde_json::Value>(&start.input).map(|mut input| {
            if let Some(i) = installed {
                fill_inputs(&i.wf, &mut input);
            }
            input
        });
        let started = match (entry, input) {
            (None, _) => Err(Refused::NotInstalled {
                me: cx.config.name.clone(),
                workflow: start.workflow,
                version: start.version,
                from: from.clone(),
            }),
            (_, Err(cause)) => Err(Refused::BadInput {
                from: from.clone(),
                cause,
            }),
            (Some(entry), Ok(input)) => {
                let at = instant_of(start.origin_us);
                begin(id, &key, input, None, (entry, at), cx).map_err(|(cause, _)| Refused::CannotStart {
                    me: cx.config.name.clone(),
                    cause,
                })
            }
        };
        match started {
            Ok(()) => {
                self.expect_staged(&from, id, start.staged, cx, out);
                if let Some((_, msgs)) = self.early.remove(&id) {
                    for (from, msg) in msgs {
                        self.message(from, msg, calls, cx, out);
                    }
                }
            }
            Err(error) => {
                cx.invocations.ended.insert(id);
                self.early.remove(&id);
                // A worker that does not hold the version (it restarted, say) still answers,
                // where the start came from: the entry must not wait for it.
                let addr = cx
                    .installs
                    .get(&key)
                    .and_then(|i| i.placement.workers.iter().find(|(_, n, _)| *n == from))
                    .and_then(|(_, _, a)| *a)
                    .or_else(|| self.addrs.get(&from).copied());
                if let Some(addr) = addr {
                    let failed = ControlMessage::Failed(Failed {
                        invocation: id,
                        error: error.to_string(),
                        lost_worker: None,
                    });
                    self.broadcast(&[(from, addr)], &failed);
                }
            }
        }
    }

    /// The `Start` of invocation `id` named `staged` inputs sent by `from`: calls reading them
    /// wait for them (and those that arrived already are the invocation's).
    fn expect_staged(
        &mut self,
        from: &str,
        id: InvocationId,
        staged: Vec<StagedInput>,
        cx: &mut Cx<'_>,
        out: &mut Vec<Followup>,
    ) {
        let Some(wf_key) = cx.invocations.get(id).map(|i| i.wf.clone()) else {
            return;
        };
        for s in staged {
            let local = self.local_id(from, id, s.object, cx);
            let producer = format!("input.{}", s.name);
            match cx.objects.get_mut(local) {
                Some(o) if o.len == s.len => {
                    // Arrived before its Start.
                    o.producer = producer;
                    o.wf = wf_key.clone();
                    // Counted by its extent's length, as freeing it subtracts.
                    if let Place::Arena(e) = o.place {
                        cx.objects.add_resident(&wf_key, e.len);
                    }
                }
                Some(o) => {
                    let msg = format!(
                        "worker `{from}` sent input `{}` with {} bytes; its Start says {}",
                        s.name, o.len, s.len
                    );
                    return out.push(abort(id, msg));
                }
                None => {
                    let place = if s.len == 0 { Place::Empty } else { Place::Pending };
                    let o = Object::foreign(place, s.len, wf_key.clone(), id, producer, cx.now);
                    cx.objects.insert(local, o);
                }
            }
            let readers = cx
                .installs
                .get(&wf_key)
                .and_then(|i| i.staged_readers.get(&s.name))
                .copied();
            cx.invocations.note_staged(id, s.name, local, readers);
        }
    }

    /// Another worker's task finished: its outputs become objects here (pending until their
    /// bytes arrive, when a task here or this entry's result reads them) and the engine
    /// learns of it. An error ends the invocation.
    fn peer_done(&mut self, from: &str, done: Done, cx: &mut Cx<'_>) -> Result<(), Refused> {
        let id = done.invocation;
        let Some(inv) = cx.invocations.get(id) else {
            return Ok(());
        };
        let (wf_key, entry) = (inv.wf.clone(), inv.entry);
        let installs = cx.installs;
        let Some(installed) = installs.get(&wf_key) else {
            return Ok(());
        };
        let wf = installed.wf.clone();
        if !installed.has_worker(from) {
            tracing::warn!(
                worker = %from,
                workflow = %wf_key.0,
                version = wf_key.1,
                invocation = id,
                "ignored a completion from a worker that runs nothing of the workflow"
            );
            return Ok(());
        }
        let node = NodeId::new(done.node as usize);
        if done.node as usize >= wf.graph.node_count() || installed.placement.local.contains(&node) {
            return Err(Refused::NotTheirs {
                from: from.to_owned(),
                node: done.node,
            });
        }
        let ways = ways(installed, done.node, entry, &done.outputs);
        let producer = wf.graph[node].name.clone();
        let kinds: HashMap<String, ValueKind> = wf.graph[node]
            .task()
            .map(|t| t.spec.outputs.iter().map(|o| (o.name.clone(), o.kind)).collect())
            .unwrap_or_default();
        let mut outputs = Vec::with_capacity(done.outputs.len());
        for (o, way) in done.outputs.into_iter().zip(ways) {
            let kind = kinds.get(&o.name).copied();
            let output = Output {
                from,
                invocation: id,
                wf: &wf_key,
                producer: &producer,
            };
            outputs.push(self.peer_output(output, o, kind, way, cx)?);
        }
        if let Some(inv) = cx.invocations.get_mut(id)
            && inv.reply.is_some()
            && let Ok(rec) = serde_json::from_slice::<PeerRecord>(&done.record)
        {
            inv.functions.extend(rec.functions);
            inv.edges.extend(rec.edges);
            inv.data_us += rec.data_us;
            inv.spills += rec.spills;
        }
        let now = cx.engine_now();
        cx.engine.function_done(now, id, node, done.element, outputs);
        Ok(())
    }

    /// One output of another worker's task, as the engine gets it: its JSON value checked,
    /// and an object here when it is read here (`way.0`; in the remote tier when read over an
    /// edge the plan marks remote, `way.1`, else pending until its bytes arrive) or empty.
    fn peer_output(
        &mut self,
        output: Output<'_>,
        o: OutputRef,
        kind: Option<ValueKind>,
        (needed, from_remote): (bool, bool),
        cx: &mut Cx<'_>,
    ) -> Result<(String, ObjectRef), Refused> {
        let Output {
            from,
            invocation: id,
            wf: wf_key,
            producer,
        } = output;
        let local = self.local_id(from, id, o.object, cx);
        let json = match o.json {
            None => None,
            Some(bytes) => match serde_json::from_slice::<serde_json::Value>(&bytes) {
                Ok(v) => Some(Arc::new(v)),
                Err(cause) => {
                    return Err(Refused::BadJson {
                        from: from.to_owned(),
                        output: o.name,
                        producer: producer.to_owned(),
                        cause,
                    });
                }
            },
        };
        if json.is_none() && matches!(kind, Some(ValueKind::Json | ValueKind::List)) {
            return Err(Refused::NoJson {
                from: from.to_owned(),
                output: o.name,
                producer: producer.to_owned(),
            });
        }
        if needed || o.len == 0 {
            let place = if o.len == 0 {
                Place::Empty
            } else if from_remote {
                Place::Remote {
                    key: edge_key(wf_key, id, from, o.object),
                    owned: false,
                    spilled: false,
                }
            } else {
                Place::Pending
            };
            match cx.objects.get_mut(local) {
                Some(obj) => {
                    obj.producer = producer.to_owned();
                    obj.wf = wf_key.clone();
                }
                None => {
                    let obj = Object::foreign(place, o.len, wf_key.clone(), id, producer.to_owned(), cx.now);
                    cx.objects.insert(local, obj);
                }
            }
            if let Some(inv) = cx.invocations.get_mut(id) {
                inv.objects.insert(local);
            }
        }
        let r = ObjectRef {
            id: local,
            len: o.len,
            json,
        };
        Ok((o.name, r))
    }

    /// Where an arriving object's bytes go: the arena when it has room, else a spill file.
    fn landing(&mut self, from: &str, header: ObjectHeader, cx: &mut Cx<'_>) -> Landing {
        if cx.invocations.ended.contains(header.invocation) || header.len == 0 {
            return Landing::Refuse;
        }
        // In its workflow's segment; before its invocation starts here, in the daemon's own
        // (its readers get a copy: see `calls::prepare`).
        let segment = cx
            .invocations
            .get(header.invocation)
            .map_or(cx.objects.private_segment(), |i| cx.installs.segment_of(&i.wf));
        if header.len <= cx.arena.capacity()
            && let Ok(e) = cx.arena.alloc(segment, header.len)
        {
            match cx.arena.region(e.segment) {
                Some(region) => return Landing::Arena(e, region.clone()),
                None => {
                    cx.arena.free(e);
                }
            }
        }
        Landing::File(cx.objects.spill_path(&format!(
            "peer-{}-{}-{}",
            faasflow_remote::escape(from),
            header.invocation,
            header.object
        )))
    }

    /// An object's bytes arrived (or did not).
    #[allow(clippy::too_many_arguments)]
    fn arrived(
        &mut self,
        from: String,
        header: ObjectHeader,
        landing: Landing,
        result: Result<f64, crate::net::TransferError>,
        calls: &mut Calls,
        cx: &mut Cx<'_>,
        out: &mut Vec<Followup>,
    ) {
        let place = match landing {
            Landing::Arena(e, _) => Place::Arena(e),
            Landing::File(p) => Place::Spilled(p),
            Landing::Refuse => return,
        };
        let discard = |cx: &mut Cx<'_>, place: Place| match place {
            Place::Arena(e) => {
                cx.arena.free(e);
            }
            Place::Spilled(p) => cx.io.remove_file(p),
            Place::Empty | Place::Pending | Place::Remote { .. } => {}
        };
        let inv_id = header.invocation;
        let transfer_us = match result {
            Ok(t) => t,
            Err(e) => {
                discard(cx, place);
                return out.push(abort(
                    inv_id,
                    format!("an object from worker `{from}` did not arrive: {e}"),
                ));
            }
        };
        if cx.invocations.ended.contains(inv_id) {
            return discard(cx, place);
        }
        let id = self.local_id(&from, inv_id, header.object, cx);
        let wf_key: Option<WfKey> = cx.invocations.get(inv_id).map(|i| i.wf.clone());
        // Counted by its extent's length, as freeing it subtracts.
        let resident = match place {
            Place::Arena(e) => Some(e.len),
            _ => None,
        };
        match cx.objects.get_mut(id) {
            Some(obj) if matches!(obj.place, Place::Pending) && obj.len == header.len => {
                obj.place = place;
                obj.transfer_us = Some(("peer", transfer_us));
            }
            Some(_) => {
                discard(cx, place);
                let msg = format!(
                    "worker `{from}` sent object {} twice or with another size",
                    header.object
                );
                return out.push(abort(inv_id, msg));
            }
            None => {
                // Before its Done (or its invocation's start): kept until they come.
                let wf = wf_key.clone().unwrap_or_else(no_version);
                let mut o = Object::foreign(place, header.len, wf, inv_id, String::new(), cx.now);
                o.transfer_us = Some(("peer", transfer_us));
                cx.objects.insert(id, o);
            }
        }
        if let Some(wf) = wf_key {
            if let Some(len) = resident {
                cx.objects.add_resident(&wf, len);
            }
            if let Some(inv) = cx.invocations.get_mut(inv_id) {
                inv.objects.insert(id);
            }
            let quota = cx.installs.get(&wf).map_or(u64::MAX, |i| i.quota);
            if resident.is_some() && cx.objects.resident(&wf) > quota {
                cx.objects.spill(id, cx.arena, cx.io, &cx.config.name);
            }
        }
        arrivals(inv_id, calls, cx, out);
        calls.unpin(&[id], cx);
    }

    /// Frees objects and forgets messages of invocations that never started here.
    pub(crate) fn sweep(&mut self, calls: &Calls, cx: &mut Cx<'_>) {
        let now = cx.now;
        self.early
            .retain(|_, (seen, _)| now.saturating_duration_since(*seen) < STRAY_TTL);
        let invocations = &*cx.invocations;
        let stray = cx.objects.strays(|i| invocations.contains(i), now, STRAY_TTL);
        for id in stray {
            calls.free_object(id, cx);
        }
        self.forget_swept_puts(cx);
    }
}

/// Whose output a [`Peers::peer_output`] is.
struct Output<'a> {
    from: &'a str,
    invocation: InvocationId,
    wf: &'a WfKey,
    producer: &'a str,
}

/// For each output of another worker's task `node`: whether it is read here (over a peer
/// edge, over an edge the plan marks remote, or by the result at this entry), and whether it
/// is read from the remote tier (over such an edge alone, and stored there: `remote`).
fn ways(installed: &Installed, node: u32, entry: u32, outputs: &[OutputRef]) -> Vec<(bool, bool)> {
    let me = installed.placement.me;
    outputs
        .iter()
        .map(|o| {
            let k = (node, o.name.clone());
            let peer = installed.readers.get(&k).is_some_and(|r| r.contains(&me));
            let remote = installed.remote_readers.get(&k).is_some_and(|r| r.contains(&me));
            let result = entry == me && installed.result_reads.contains(&k);
            (peer || remote || result, o.remote && remote && !peer && !result)
        })
        .collect()
}

/// Sends `msg` to each of `to` over `net`.
fn broadcast(net: Option<&Net>, to: &[(String, SocketAddr)], msg: &ControlMessage) {
    let Some(net) = net else { return };
    for (name, addr) in to {
        net.send(name, *addr, msg.clone());
    }
}

/// Something arrived for `invocation`: the calls that waited for it go, and its end when it
/// waited for it.
pub(crate) fn arrivals(invocation: InvocationId, calls: &mut Calls, cx: &mut Cx<'_>, out: &mut Vec<Followup>) {
    calls.inputs_arrived(cx);
    if cx.invocations.get(invocation).is_some_and(|i| i.deferred.is_some()) {
        out.push(Followup::Finish(invocation));
    }
}

/// Fails every invocation of a plan worker `node` is in, naming it. Returns how many.
fn lose(node: &str, error: &str, cx: &mut Cx<'_>, out: &mut Vec<Followup>) -> u64 {
    let installs = cx.installs;
    let hit: Vec<InvocationId> = cx
        .invocations
        .iter()
        .filter(|(_, inv)| installs.get(&inv.wf).is_some_and(|i| i.has_worker(node)))
        .map(|(id, _)| id)
        .collect();
    for &id in &hit {
        if let Some(inv) = cx.invocations.get_mut(id) {
            inv.lost.get_or_insert_with(|| node.to_owned());
        }
        out.push(abort(id, format!("worker `{node}` was lost: {error}")));
    }
    hit.len() as u64
}

/// Another worker's task failed for good and was caught there.
fn peer_caught(from: &str, caught: Caught, cx: &mut Cx<'_>) -> Result<(), Refused> {
    let id = caught.invocation;
    let Some(inv) = cx.invocations.get(id) else {
        return Ok(());
    };
    let Some(installed) = cx.installs.get(&inv.wf) else {
        return Ok(());
    };
    let node = NodeId::new(caught.node as usize);
    if !installed.has_worker(from)
        || caught.node as usize >= installed.wf.graph.node_count()
        || installed.placement.local.contains(&node)
    {
        return Err(Refused::NotTheirsToCatch {
            from: from.to_owned(),
            node: caught.node,
        });
    }
    let failure =
        serde_json::from_slice::<serde_json::Value>(&caught.failure).map_err(|cause| Refused::BadFailure {
            from: from.to_owned(),
            node: caught.node,
            cause,
        })?;
    if let Some(inv) = cx.invocations.get_mut(id)
        && inv.reply.is_some()
        && let Ok(rec) = serde_json::from_slice::<PeerRecord>(&caught.record)
    {
        inv.functions.extend(rec.functions);
    }
    let now = cx.engine_now();
    cx.engine.function_caught(now, id, node, caught.element, failure);
    Ok(())
}

/// Creates an invocation's state and starts it in the engine. `entry`: the plan index of the
/// daemon it started on and its start. On error, gives the reply back.
pub(crate) fn begin(
    id: InvocationId,
    key: &(String, u64),
    input: serde_json::Value,
    reply: Option<crate::runtime::invocations::Reply>,
    (entry, start): (u32, Instant),
    cx: &mut Cx<'_>,
) -> Result<(), (EngineError, Option<crate::runtime::invocations::Reply>)> {
    let wf = cx.installs.key(key).unwrap_or_else(|| Arc::new(key.clone()));
    cx.invocations.insert(id, InvState::new(wf, start, entry, reply));
    let now = cx.engine_now();
    if let Err(e) = cx.engine.start(now, &key.0, key.1, id, input) {
        let reply = cx.invocations.remove(id).and_then(|inv| inv.reply);
        return Err((e, reply));
    }
    Ok(())
}
