//! The loop's side of a cluster: what it tells the other workers of a plan and what it does
//! with what they tell it.
//!
//! Every daemon of a plan runs the same engine over the whole workflow and triggers its own
//! tasks only. The entry daemon (the one the planner invoked) sends [`Start`] to the others;
//! each daemon sends [`Done`] to the others when one of its tasks finishes (outputs by id,
//! small JSON values inline, the run's records for the report) and pushes the bytes of each
//! output to the workers with a task that reads it (and to the entry when the workflow's
//! result reads it), as soon as it is sealed. A task whose inputs are still arriving waits
//! for them; the entry's end waits for result objects still arriving. A failure decided on
//! one daemon ([`Failed`]), or a worker lost, ends the invocation everywhere.
//!
//! Objects of other workers get local ids here (`remote_ids`), so that ids never collide.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use faasflow_core::NodeId;
use faasflow_core::dag::{DataSource, ValueKind, Workflow};
use faasflow_core::plan::{Plan, Tier};
use serde::{Deserialize, Serialize};

use super::{Call, InputValue, InvocationId, Object, ObjectRef, Place, Placement, Runtime, WfKey, us};
use crate::io::message::{Caught, ControlMessage, Done, Failed, ObjectHeader, OutputRef, StagedInput, Start};
use crate::net::{Landing, NetEvent, Source};
use faasflow_core::report::{EdgeRecord, FunctionRecord};
use faasflow_remote::ObjectKey;

/// How long messages and objects about an invocation that has not started here are kept.
const STRAY_TTL: Duration = Duration::from_secs(60);
/// Ended invocations remembered (to drop what arrives late about them).
const ENDED_KEPT: usize = 65_536;

/// Invocations that ended here lately.
#[derive(Default)]
pub(super) struct Ended {
    set: HashSet<InvocationId>,
    order: VecDeque<InvocationId>,
}

impl Ended {
    pub(super) fn contains(&self, id: InvocationId) -> bool {
        self.set.contains(&id)
    }

    fn insert(&mut self, id: InvocationId) {
        if self.set.insert(id) {
            self.order.push_back(id);
            if self.order.len() > ENDED_KEPT
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }
}

/// Where the producer's daemon `from` puts its object `id` for edges the plan marks remote.
fn edge_key(wf: &WfKey, invocation: InvocationId, from: &str, id: u64) -> ObjectKey {
    ObjectKey::new(wf.0.clone(), wf.1, invocation, format!("edge/{from}/{id}"))
}

/// The objects of a value.
pub(super) fn object_ids(v: &InputValue) -> Vec<u64> {
    match v {
        InputValue::Object(r) => vec![r.id],
        InputValue::List(l) => l.iter().map(|r| r.id).collect(),
        _ => Vec::new(),
    }
}

/// `at` in µs since the Unix epoch.
pub(super) fn unix_us(at: Instant) -> u64 {
    let ago = at.elapsed();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(now.saturating_sub(ago).as_micros()).unwrap_or(u64::MAX)
}

/// The instant of `unix_us` (µs since the Unix epoch), by this machine's clock; now if it
/// lies in the future.
pub(super) fn instant_of(unix_us: u64) -> Instant {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let ago = now.saturating_sub(Duration::from_micros(unix_us));
    Instant::now().checked_sub(ago).unwrap_or_else(Instant::now)
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

/// A push: (worker name, its address), object id.
type Target = ((String, SocketAddr), u64);

/// An output of a task: (node index, output name).
pub(super) type OutputKey = (u32, String);

/// Who needs which output, by plan index: (other workers with a task reading it over a peer
/// edge, those reading it over an edge the plan marks remote, the outputs the workflow's
/// result reads).
type Readers = (
    HashMap<OutputKey, Vec<u32>>,
    HashMap<OutputKey, Vec<u32>>,
    HashSet<OutputKey>,
);

/// For each output a task of another worker reads: the workers (plan index) reading it, apart
/// by the tier the plan gives their edge; and the outputs the workflow's result reads.
pub(super) fn readers(wf: &Workflow, plan: &Plan, placement: &Placement) -> Readers {
    let mut peer: HashMap<OutputKey, Vec<u32>> = HashMap::new();
    let mut remote: HashMap<OutputKey, Vec<u32>> = HashMap::new();
    for n in wf.graph.node_indices() {
        let Some(task) = wf.graph[n].task() else { continue };
        let Some(&w) = placement.owner.get(&n) else { continue };
        for b in &task.inputs {
            for src in &b.sources {
                if let DataSource::Output { node, output } = src {
                    let from = placement.owner.get(node).copied();
                    if from == Some(w) {
                        continue;
                    }
                    let tier = wf
                        .graph
                        .find_edge(*node, n)
                        .and_then(|e| plan.edge_tiers.get(e.index()).copied());
                    let map = if tier == Some(Tier::Remote) {
                        &mut remote
                    } else {
                        &mut peer
                    };
                    let r = map.entry((node.index() as u32, output.clone())).or_default();
                    if !r.contains(&w) {
                        r.push(w);
                    }
                }
            }
        }
    }
    let result = wf
        .outputs
        .iter()
        .flat_map(|o| o.sources.iter())
        .filter_map(|s| match s {
            DataSource::Output { node, output } => Some((node.index() as u32, output.clone())),
            _ => None,
        })
        .collect();
    (peer, remote, result)
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

/// The workflow version invocation `id` runs on.
fn installed_key(rt: &Runtime, id: InvocationId) -> WfKey {
    rt.invocations
        .get(&id)
        .map_or_else(|| Arc::new((String::new(), 0)), |i| i.wf.clone())
}

/// The workflow inputs each worker of `placement` needs, by worker name: those its tasks
/// read, and, for every worker, those a switch condition or a foreach reads.
pub(super) fn input_needs(wf: &Workflow, placement: &Placement) -> HashMap<String, HashSet<String>> {
    let everyone = wf.inputs_read_by_control();
    let mut needs: HashMap<String, HashSet<String>> = HashMap::new();
    for (w, name, _) in &placement.workers {
        let mut own = everyone.clone();
        for (n, owner) in &placement.owner {
            if owner != w {
                continue;
            }
            let Some(task) = wf.graph[*n].task() else { continue };
            for b in &task.inputs {
                for src in &b.sources {
                    if let DataSource::Input(i) = src {
                        own.insert(i.clone());
                    }
                }
            }
        }
        needs.insert(name.clone(), own);
    }
    needs
}

impl Runtime {
    /// The input to send to worker `peer` in its `Start`: only the inputs it needs (it fills
    /// in the others as `null`, [`fill_inputs`]).
    pub(super) fn input_for(&self, key: &(String, u64), peer: &str, input: &serde_json::Value) -> Vec<u8> {
        let needs = self.installed.get(key).and_then(|i| i.input_needs.get(peer));
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

    /// Takes the inputs to stage out of an invocation's `input` (leaving `null` in their
    /// place): large strings of [`Workflow::stageable_inputs`], name and bytes.
    pub(super) fn take_staged(&self, key: &(String, u64), input: &mut serde_json::Value) -> Vec<(String, Vec<u8>)> {
        let (Some(installed), serde_json::Value::Object(map)) = (self.installed.get(key), input) else {
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

    /// Names the staged inputs of invocation `id` (just started here) that each of `others`
    /// reads, giving each input its object id (`None`: no task anywhere reads it). The
    /// `Start`s carry these names and go before the bytes ([`Self::stage`]).
    pub(super) fn name_staged(
        &mut self,
        id: InvocationId,
        staged: &[(String, Vec<u8>)],
        others: &[(String, SocketAddr)],
    ) -> (Vec<Vec<StagedInput>>, Vec<Option<u64>>) {
        let mut named: Vec<Vec<StagedInput>> = vec![Vec::new(); others.len()];
        let mut ids = Vec::with_capacity(staged.len());
        let installed = self.invocations.get(&id).and_then(|inv| self.installed.get(&inv.wf));
        let Some(installed) = installed else {
            return (named, vec![None; staged.len()]);
        };
        for (name, bytes) in staged {
            let mut read = installed.read_here.contains(name);
            let object = self.next_object;
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
            if read {
                self.next_object += 1;
            }
        }
        // Read here too: an object still arriving, which calls wait for (it is copied into
        // the arena after the first triggers).
        let here: Vec<(u64, String, u64)> = staged
            .iter()
            .zip(&ids)
            .filter(|((name, _), _)| installed.read_here.contains(name))
            .filter_map(|((name, bytes), id)| id.map(|id| (id, name.clone(), bytes.len() as u64)))
            .collect();
        let wf_key = installed_key(self, id);
        for (object, name, len) in here {
            let o = Object::foreign(Place::Pending, len, wf_key.clone(), id, format!("input.{name}"));
            self.objects.insert(object, o);
            self.note_staged(id, name, object);
        }
        (named, ids)
    }

    /// Sends the staged inputs of invocation `id` named by [`Self::name_staged`] to the
    /// workers of `others` whose `Start` names them, from memory (no copy), and stores each as
    /// an object of the invocation when this worker's tasks read it.
    pub(super) fn stage(
        &mut self,
        id: InvocationId,
        staged: Vec<(String, Vec<u8>)>,
        ids: Vec<Option<u64>>,
        named: &[Vec<StagedInput>],
        others: &[(String, SocketAddr)],
    ) -> Result<(), String> {
        let Some(wf_key) = self.invocations.get(&id).map(|i| i.wf.clone()) else {
            return Ok(());
        };
        for ((name, bytes), object) in staged.into_iter().zip(ids) {
            let Some(object) = object else { continue };
            let readers: Vec<usize> = (0..others.len())
                .filter(|&k| named[k].iter().any(|s| s.object == object))
                .collect();
            let here = self.objects.contains_key(&object);
            let len = bytes.len() as u64;
            // Pushed from memory, without a copy (and without pinning the local copy).
            let bytes = bytes::Bytes::from(bytes);
            if !readers.is_empty() {
                self.staged_sends.insert(object, (id, readers.len() as u32));
            }
            for k in readers {
                let source = Source::Bytes(bytes.clone());
                self.transfers += 1;
                if let Some(net) = &self.net {
                    let (name, addr) = &others[k];
                    net.push(
                        name,
                        *addr,
                        ObjectHeader {
                            invocation: id,
                            object,
                            len,
                        },
                        source,
                    );
                }
            }
            if here {
                let t = Instant::now();
                let segment = self.segment_of(&wf_key);
                let place = match self.alloc_or_spill(segment, len, &[]) {
                    Ok(e) => {
                        self.arena.write(e, 0, &bytes);
                        *self.resident.entry(wf_key.clone()).or_default() += len;
                        Place::Arena(e)
                    }
                    Err(_) => {
                        let path = self.spill_dir.path().join(format!("input-{id}-{object}"));
                        std::fs::write(&path, &bytes).map_err(|e| {
                            format!(
                                "input `{name}` ({len} bytes) fits neither in the arena nor in the spill file {}: {e}",
                                path.display()
                            )
                        })?;
                        Place::Spilled(path)
                    }
                };
                if let Some(o) = self.objects.get_mut(&object) {
                    o.place = place;
                }
                if let Some(inv) = self.invocations.get_mut(&id) {
                    inv.data_us += us(t.elapsed());
                }
                // Calls waiting for this one start now, not after the other copies.
                self.arrivals_done(id);
            }
        }
        self.arrivals_done(id);
        Ok(())
    }

    /// The `Start` of invocation `id` named `staged` inputs sent by `from`: calls reading them
    /// wait for them (and those that arrived already are the invocation's).
    fn expect_staged(&mut self, from: &str, id: InvocationId, staged: Vec<StagedInput>) {
        let Some(wf_key) = self.invocations.get(&id).map(|i| i.wf.clone()) else {
            return;
        };
        for s in staged {
            let local = self.local_id(from, id, s.object);
            let producer = format!("input.{}", s.name);
            match self.objects.get_mut(&local) {
                Some(o) if o.len == s.len => {
                    // Arrived before its Start.
                    o.producer = producer;
                    o.wf = wf_key.clone();
                    if matches!(o.place, Place::Arena(_)) {
                        *self.resident.entry(wf_key.clone()).or_default() += o.len;
                    }
                }
                Some(o) => {
                    let msg = format!(
                        "worker `{from}` sent input `{}` with {} bytes; its Start says {}",
                        s.name, o.len, s.len
                    );
                    return self.abort(id, msg, false);
                }
                None => {
                    let place = if s.len == 0 { Place::Empty } else { Place::Pending };
                    let o = Object::foreign(place, s.len, wf_key.clone(), id, producer);
                    self.objects.insert(local, o);
                }
            }
            self.note_staged(id, s.name, local);
        }
    }

    /// Staged input `name` of invocation `id` is object `object` here.
    fn note_staged(&mut self, id: InvocationId, name: String, object: u64) {
        let Some(inv) = self.invocations.get_mut(&id) else {
            return;
        };
        let readers = self
            .installed
            .get(&inv.wf)
            .and_then(|i| i.staged_readers.get(&name))
            .copied();
        inv.objects.insert(object);
        inv.staged.insert(name, object);
        if let Some(n) = readers {
            inv.staged_left.insert(object, n);
        }
    }

    /// `call` ran: the staged inputs it read that no task here will read any more are
    /// released (freed when no push or call uses them).
    pub(super) fn read_staged(&mut self, call: &Call) {
        let Some(inv) = self.invocations.get_mut(&call.invocation) else {
            return;
        };
        if inv.staged_left.is_empty() {
            return;
        }
        let mut seen = HashSet::new();
        let mut done = Vec::new();
        for id in call.reads.iter().filter(|id| seen.insert(**id)) {
            if let Some(left) = inv.staged_left.get_mut(id) {
                *left = left.saturating_sub(1);
                if *left == 0 {
                    inv.staged_left.remove(id);
                    done.push(*id);
                }
            }
        }
        for id in done {
            if let Some(o) = self.objects.get_mut(&id) {
                o.released = true;
            }
        }
    }

    /// The workers other than this one that run tasks of a workflow version: name, address.
    pub(super) fn other_workers(&self, key: &(String, u64)) -> Vec<(String, SocketAddr)> {
        let Some(i) = self.installed.get(key) else {
            return Vec::new();
        };
        i.placement
            .workers
            .iter()
            .filter(|(w, _, _)| *w != i.placement.me)
            .filter_map(|(_, name, addr)| addr.map(|a| (name.clone(), a)))
            .collect()
    }

    pub(super) fn broadcast(&self, to: &[(String, SocketAddr)], msg: &ControlMessage) {
        let Some(net) = &self.net else { return };
        for (name, addr) in to {
            net.send(name, *addr, msg.clone());
        }
    }

    /// Whether some input object of `call` is still arriving from another worker.
    pub(super) fn inputs_arriving(&self, call: &Call) -> bool {
        call.pending.iter().any(|(_, v)| {
            let ids: Vec<u64> = match v {
                InputValue::Object(r) => vec![r.id],
                InputValue::List(l) => l.iter().map(|r| r.id).collect(),
                _ => Vec::new(),
            };
            ids.iter()
                .any(|id| self.objects.get(id).is_some_and(|o| matches!(o.place, Place::Pending)))
        })
    }

    /// A local task finished with `objs`: pushes the objects other workers read and returns
    /// the [`Done`] to send to the others (sent once the engine has the completion).
    pub(super) fn tell_done(
        &mut self,
        call: &Call,
        objs: &[(String, ObjectRef)],
    ) -> Option<(Vec<(String, SocketAddr)>, ControlMessage)> {
        let key: (String, u64) = (*call.wf).clone();
        let others = self.other_workers(&key);
        if others.is_empty() {
            return None;
        }
        let installed = self.installed.get(&key)?;
        let node = call.node.index() as u32;
        let entry = self.invocations.get(&call.invocation).map(|i| i.entry);
        let me = installed.placement.me;
        let mut pushes: Vec<(u32, u64)> = Vec::new();
        // Objects for edges the plan marks remote: (id, readers over such edges).
        let mut remote: Vec<(u64, Vec<u32>)> = Vec::new();
        for (name, o) in objs {
            if o.len == 0 {
                continue;
            }
            let k = (node, name.clone());
            let mut to: Vec<u32> = installed.readers.get(&k).cloned().unwrap_or_default();
            if let Some(r) = installed.remote_readers.get(&k) {
                remote.push((o.id, r.clone()));
            }
            if let Some(e) = entry
                && e != me
                && installed.result_reads.contains(&k)
                && !to.contains(&e)
            {
                to.push(e);
            }
            pushes.extend(to.into_iter().map(|w| (w, o.id)));
        }
        let addr_of = |w: u32| {
            installed
                .placement
                .workers
                .iter()
                .find(|(i, _, _)| *i == w)
                .and_then(|(_, name, addr)| addr.map(|a| (name.clone(), a)))
        };
        let mut targets: Vec<Target> = pushes
            .into_iter()
            .filter_map(|(w, id)| addr_of(w).map(|a| (a, id)))
            .collect();
        // Remote edges: one copy in the remote tier, read there by their readers; pushed
        // instead when the tier is missing or refuses it.
        let remote: Vec<(u64, Vec<Target>)> = remote
            .into_iter()
            .map(|(id, readers)| {
                (
                    id,
                    readers.iter().filter_map(|w| addr_of(*w).map(|a| (a, id))).collect(),
                )
            })
            .collect();
        let mut in_remote = Vec::new();
        for (id, fallback) in remote {
            match self.remote_copy(call, id) {
                Ok(()) => in_remote.push(id),
                Err(e) => {
                    if !self.said_no_remote {
                        self.said_no_remote = true;
                        eprintln!("faasflow daemon: edges planned remote go peer to peer instead: {e}");
                    }
                    for t in fallback {
                        if !targets.contains(&t) {
                            targets.push(t);
                        }
                    }
                }
            }
        }
        for ((name, addr), id) in targets {
            let Some(obj) = self.objects.get_mut(&id) else { continue };
            let source = match &obj.place {
                Place::Arena(e) => match self.arena.region(e.segment) {
                    Some(region) => Source::Arena {
                        region: region.clone(),
                        offset: e.offset,
                        len: obj.len,
                    },
                    None => continue,
                },
                Place::Spilled(p) => Source::File(p.clone()),
                Place::Remote { key, .. } => {
                    let key = key.clone();
                    match self.remote_get(&key) {
                        Ok(bytes) => Source::Bytes(bytes.into()),
                        Err(e) => {
                            eprintln!("faasflow daemon: cannot push object {id} to `{name}`: {e}");
                            continue;
                        }
                    }
                }
                Place::Empty | Place::Pending => continue,
            };
            let Some(obj) = self.objects.get_mut(&id) else { continue };
            obj.pushes += 1;
            self.transfers += 1;
            let header = ObjectHeader {
                invocation: call.invocation,
                object: id,
                len: obj.len,
            };
            if let Some(net) = &self.net {
                net.push(&name, addr, header, source);
            }
        }
        let outputs = objs
            .iter()
            .map(|(name, o)| OutputRef {
                name: name.clone(),
                object: o.id,
                len: o.len,
                json: o.json.as_ref().map(|j| serde_json::to_vec(&**j).unwrap_or_default()),
                remote: in_remote.contains(&o.id),
            })
            .collect();
        let record = self.invocations.get_mut(&call.invocation).map(|inv| {
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
            node,
            element: call.element,
            outputs,
            record: record.unwrap_or_default(),
        });
        Some((others, msg))
    }

    /// Moves a new output of a workflow planned with every edge remote
    /// ([`Mode::WorkerSpRemote`](faasflow_core::Mode::WorkerSpRemote)) out of the arena
    /// into the remote tier, under the key the readers on other workers read; the readers
    /// here read it there too. When the tier refuses it, it stays in the arena (said once).
    /// Returns how long the store took, µs (also added to the invocation's data time).
    pub(super) fn store_edge(&mut self, id: u64) -> f64 {
        let Some(obj) = self.objects.get(&id) else { return 0.0 };
        let Place::Arena(e) = obj.place else { return 0.0 };
        let t = Instant::now();
        let key = edge_key(&obj.wf, obj.invocation, &self.config.name, id);
        let stored = match self.arena.read(e, obj.len) {
            Some(bytes) => self.remote_put(&key, &bytes),
            None => Err("the object lies outside the arena".into()),
        };
        if let Err(err) = stored {
            if !self.said_no_remote {
                self.said_no_remote = true;
                eprintln!("faasflow daemon: outputs planned remote stay in memory instead: {err}");
            }
            return 0.0;
        }
        let place = Place::Remote {
            key,
            owned: true,
            spilled: false,
        };
        self.moved_out(id, e, place, t).map_or(0.0, |(_, took)| took)
    }

    /// Stores a copy of a local object in the remote tier for the workers that read it over
    /// an edge the plan marks remote; the copy is deleted when the object is freed.
    fn remote_copy(&mut self, call: &Call, id: u64) -> Result<(), String> {
        let key = edge_key(&call.wf, call.invocation, &self.config.name, id);
        let obj = self.objects.get(&id).ok_or("the object is gone")?;
        if matches!(&obj.place, Place::Remote { key: k, owned: true, spilled: false } if *k == key) {
            // Stored there as it was sealed ([`Runtime::store_edge`]).
            return Ok(());
        }
        let t = Instant::now();
        let bytes = match &obj.place {
            Place::Arena(e) => self
                .arena
                .read(*e, obj.len)
                .ok_or("the object lies outside the arena")?,
            Place::Spilled(p) => std::fs::read(p).map_err(|e| format!("spill file {}: {e}", p.display()))?,
            Place::Remote { key, .. } => self.remote_get(key)?,
            Place::Empty | Place::Pending => return Err("the object has no bytes here".into()),
        };
        self.remote_put(&key, &bytes)?;
        if let Some(o) = self.objects.get_mut(&id) {
            o.remote_copy = Some(key);
        }
        if let Some(inv) = self.invocations.get_mut(&call.invocation) {
            let took = us(t.elapsed());
            inv.data_us += took;
            // The readers on other workers wait for it as for the producer's own work.
            if let Some(rec) = inv.functions.get_mut(call.record) {
                rec.data_us += took;
            }
        }
        Ok(())
    }

    /// Whether an invocation can end now; when it fails here, tells the other workers.
    pub(super) fn ending(
        &mut self,
        invocation: InvocationId,
        result: &Result<Vec<(String, InputValue)>, String>,
    ) -> bool {
        let Some(inv) = self.invocations.get(&invocation) else {
            return true;
        };
        match result {
            Ok(values) => {
                if inv.reply.is_none() {
                    return true;
                }
                // JSON values came with their Done: only bytes are waited for.
                !values.iter().any(|(_, v)| {
                    let refs: Vec<&ObjectRef> = match v {
                        InputValue::Object(r) => vec![r],
                        InputValue::List(l) => l.iter().collect(),
                        _ => Vec::new(),
                    };
                    refs.iter().any(|r| {
                        r.json.is_none()
                            && self
                                .objects
                                .get(&r.id)
                                .is_some_and(|o| matches!(o.place, Place::Pending))
                    })
                })
            }
            Err(error) => {
                if !inv.quiet {
                    let others = self.other_workers(&inv.wf);
                    let msg = ControlMessage::Failed(Failed {
                        invocation,
                        error: error.clone(),
                        lost_worker: inv.lost.clone(),
                    });
                    self.broadcast(&others, &msg);
                }
                true
            }
        }
    }

    /// An invocation ended here: what arrives about it later is dropped.
    pub(super) fn forget(&mut self, invocation: InvocationId) {
        self.ended.insert(invocation);
        self.early.remove(&invocation);
        self.remote_ids.retain(|(_, inv, _), _| *inv != invocation);
        self.just_ended.push(invocation);
    }

    /// After the engine's releases for invocations that just ended: frees what it never knew
    /// of (objects that arrived before their Done), and forgets objects still arriving.
    pub(super) fn clear_ended(&mut self) {
        for invocation in std::mem::take(&mut self.just_ended) {
            let left: Vec<u64> = self
                .objects
                .iter()
                .filter(|(_, o)| o.invocation == invocation && !o.released)
                .map(|(id, _)| *id)
                .collect();
            for id in left {
                // Freed now, or when its last push or the last call reading it ends.
                if let Some(o) = self.objects.get_mut(&id) {
                    o.released = true;
                }
                self.unpin(&[id]);
            }
            let arriving: Vec<u64> = self
                .objects
                .iter()
                .filter(|(_, o)| o.invocation == invocation && matches!(o.place, Place::Pending))
                .map(|(id, _)| *id)
                .collect();
            for id in arriving {
                self.objects.remove(&id);
            }
        }
    }

    pub(super) fn net_event(&mut self, event: NetEvent) {
        match event {
            NetEvent::Message { from, addr, msg } => {
                if self.peer_addrs.get(&from) != Some(&addr) {
                    self.peer_addrs.insert(from.clone(), addr);
                }
                self.message(from, msg)
            }
            NetEvent::Incoming { from, header, reply } => {
                let landing = self.landing(&from, header);
                let refused = matches!(landing, Landing::Refuse);
                if reply.send(landing.clone()).is_err() {
                    // The stream is gone already: nothing will arrive there.
                    self.arrived(from, header, landing, Err("the stream closed".into()));
                } else if !refused {
                    self.transfers += 1;
                }
            }
            NetEvent::Arrived {
                from,
                header,
                landing,
                result,
            } => {
                self.transfers = self.transfers.saturating_sub(1);
                self.arrived(from, header, landing, result);
            }
            NetEvent::Sent { object, result } => {
                self.transfers = self.transfers.saturating_sub(1);
                let mut invocation = None;
                if let Some((inv, left)) = self.staged_sends.get_mut(&object) {
                    // A staged input pushed from memory (its local copy, if any, is not pinned).
                    *left -= 1;
                    invocation = Some(*inv);
                    if *left == 0 {
                        self.staged_sends.remove(&object);
                    }
                } else if let Some(o) = self.objects.get_mut(&object) {
                    o.pushes = o.pushes.saturating_sub(1);
                    invocation = Some(o.invocation);
                }
                if let Err(e) = result {
                    // The receiver is lost or refused it: its invocation cannot go on there.
                    if let Some(inv) = invocation {
                        let msg = format!("an object could not be sent to another worker: {e}");
                        self.abort(inv, msg, false);
                    }
                }
                self.unpin(&[object]);
            }
            NetEvent::Unsendable { invocation, error } => self.abort(invocation, error, false),
            NetEvent::Lost { node, error } => {
                self.worker_lost(&node, &error);
            }
        }
    }

    /// Worker `node` is lost (its connection failed, or the planner says so): every
    /// invocation of a plan it is in fails, naming it. Returns how many.
    pub(super) fn worker_lost(&mut self, node: &str, error: &str) -> u64 {
        let hit: Vec<InvocationId> = self
            .invocations
            .iter()
            .filter(|(_, inv)| {
                self.installed
                    .get(&inv.wf)
                    .is_some_and(|i| i.placement.workers.iter().any(|(_, n, _)| *n == node))
            })
            .map(|(id, _)| *id)
            .collect();
        for &id in &hit {
            if let Some(inv) = self.invocations.get_mut(&id) {
                inv.lost.get_or_insert_with(|| node.to_owned());
            }
            self.abort(id, format!("worker `{node}` was lost: {error}"), false);
        }
        hit.len() as u64
    }

    /// Ends an invocation with an error decided here (`quiet`: decided elsewhere, not told).
    pub(super) fn abort(&mut self, invocation: InvocationId, error: String, quiet: bool) {
        let Some(inv) = self.invocations.get_mut(&invocation) else {
            return;
        };
        inv.quiet |= quiet;
        if let Some(deferred) = inv.deferred.take() {
            // The engine is done with it; its end waited for result objects that will not come.
            self.finish(invocation, Err(error));
            if let Ok(values) = deferred {
                let held: Vec<u64> = values.iter().flat_map(|(_, v)| object_ids(v)).collect();
                self.let_go(&held);
            }
        } else {
            self.engine.abort(invocation, error);
        }
    }

    fn message(&mut self, from: String, msg: ControlMessage) {
        let id = msg.invocation();
        if self.ended.contains(id) {
            return;
        }
        if let ControlMessage::Start(start) = msg {
            return self.remote_start(from, start);
        }
        if !self.invocations.contains_key(&id) {
            // Its start is still on its way (from the entry, on another connection).
            self.early
                .entry(id)
                .or_insert_with(|| (Instant::now(), Vec::new()))
                .1
                .push((from, msg));
            return;
        }
        match msg {
            ControlMessage::Done(done) => self.remote_done(from, done),
            ControlMessage::Failed(f) => {
                if let (Some(inv), Some(lost)) = (self.invocations.get_mut(&id), f.lost_worker) {
                    inv.lost.get_or_insert(lost);
                }
                self.abort(f.invocation, f.error, true)
            }
            ControlMessage::Caught(c) => self.remote_caught(from, c),
            ControlMessage::Start(_) => {}
        }
    }

    /// A local task failed for good and its catch step runs: the plan's other workers (whose
    /// engines wait on the task) learn of it, with the records of its attempts here.
    pub(super) fn tell_caught(
        &mut self,
        invocation: InvocationId,
        node: NodeId,
        element: Option<u32>,
        failure: &serde_json::Value,
    ) {
        let Some(inv) = self.invocations.get(&invocation) else {
            return;
        };
        let others = self.other_workers(&inv.wf);
        if others.is_empty() {
            return;
        }
        let name = self
            .installed
            .get(&inv.wf)
            .map(|i| i.wf.graph[node].name.clone())
            .unwrap_or_default();
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
        self.broadcast(&others, &msg);
    }

    /// Another worker's task failed for good and was caught there.
    fn remote_caught(&mut self, from: String, caught: Caught) {
        let id = caught.invocation;
        let Some(inv) = self.invocations.get(&id) else { return };
        let Some(installed) = self.installed.get(&inv.wf) else {
            return;
        };
        let node = NodeId::new(caught.node as usize);
        let from_plan = installed.placement.workers.iter().any(|(_, n, _)| *n == from);
        if !from_plan
            || caught.node as usize >= installed.wf.graph.node_count()
            || installed.placement.local.contains(&node)
        {
            let msg = format!(
                "worker `{from}` reported step {} as caught, which is not its to run",
                caught.node
            );
            return self.abort(id, msg, false);
        }
        let failure = match serde_json::from_slice::<serde_json::Value>(&caught.failure) {
            Ok(v) => v,
            Err(e) => {
                let msg = format!(
                    "worker `{from}` sent the failure of step {} as invalid JSON: {e}",
                    caught.node
                );
                return self.abort(id, msg, false);
            }
        };
        if let Some(inv) = self.invocations.get_mut(&id)
            && inv.reply.is_some()
            && let Ok(rec) = serde_json::from_slice::<PeerRecord>(&caught.record)
        {
            inv.functions.extend(rec.functions);
        }
        let now = self.now();
        self.engine.function_caught(now, id, node, caught.element, failure);
    }

    fn remote_start(&mut self, from: String, start: Start) {
        let id = start.invocation;
        if self.invocations.contains_key(&id) {
            return;
        }
        let key = (start.workflow.clone(), start.version);
        let entry = self.installed.get(&key).and_then(|i| {
            i.placement
                .workers
                .iter()
                .find(|(_, n, _)| *n == from)
                .map(|(w, _, _)| *w)
        });
        let input = serde_json::from_slice::<serde_json::Value>(&start.input).map(|mut input| {
            if let Some(i) = self.installed.get(&key) {
                fill_inputs(&i.wf, &mut input);
            }
            input
        });
        let started = match (entry, input) {
            (None, _) => Err(format!(
                "worker `{}` does not have workflow `{}` version {} installed with worker `{from}` in it",
                self.config.name, start.workflow, start.version
            )),
            (_, Err(e)) => Err(format!("the input sent by worker `{from}` is not JSON: {e}")),
            (Some(entry), Ok(input)) => self
                .begin(
                    id,
                    &start.workflow,
                    start.version,
                    input,
                    None,
                    Some((entry, start.origin_us)),
                )
                .map_err(|(e, _)| format!("worker `{}` cannot start it: {e}", self.config.name)),
        };
        match started {
            Ok(()) => {
                self.expect_staged(&from, id, start.staged);
                if let Some((_, msgs)) = self.early.remove(&id) {
                    for (from, msg) in msgs {
                        self.message(from, msg);
                    }
                }
            }
            Err(error) => {
                self.ended.insert(id);
                self.early.remove(&id);
                // A worker that does not hold the version (it restarted, say) still answers,
                // where the start came from: the entry must not wait for it.
                if let Some(addr) = self
                    .installed
                    .get(&key)
                    .and_then(|i| i.placement.workers.iter().find(|(_, n, _)| *n == from))
                    .and_then(|(_, _, a)| *a)
                    .or_else(|| self.peer_addrs.get(&from).copied())
                {
                    self.broadcast(
                        &[(from, addr)],
                        &ControlMessage::Failed(Failed {
                            invocation: id,
                            error,
                            lost_worker: None,
                        }),
                    );
                }
            }
        }
    }

    /// The local id of another worker's object.
    fn local_id(&mut self, from: &str, invocation: InvocationId, theirs: u64) -> u64 {
        let key = (from.to_owned(), invocation, theirs);
        if let Some(&id) = self.remote_ids.get(&key) {
            return id;
        }
        let id = self.next_object;
        self.next_object += 1;
        self.remote_ids.insert(key, id);
        id
    }

    fn remote_done(&mut self, from: String, done: Done) {
        let id = done.invocation;
        let Some(inv) = self.invocations.get(&id) else { return };
        let wf_key = inv.wf.clone();
        let Some(installed) = self.installed.get(&wf_key) else {
            return;
        };
        let wf = installed.wf.clone();
        if !installed.placement.workers.iter().any(|(_, n, _)| *n == from) {
            eprintln!(
                "faasflow daemon: ignored a completion from worker `{from}`, which runs nothing of `{}` version {}",
                wf_key.0, wf_key.1
            );
            return;
        }
        let node = NodeId::new(done.node as usize);
        if done.node as usize >= wf.graph.node_count() || installed.placement.local.contains(&node) {
            let msg = format!("worker `{from}` reported step {} of this worker as done", done.node);
            return self.abort(id, msg, false);
        }
        let me = installed.placement.me;
        let entry = inv.entry;
        let needed: Vec<bool> = done
            .outputs
            .iter()
            .map(|o| {
                let k = (done.node, o.name.clone());
                installed.readers.get(&k).is_some_and(|r| r.contains(&me))
                    || installed.remote_readers.get(&k).is_some_and(|r| r.contains(&me))
                    || (entry == me && installed.result_reads.contains(&k))
            })
            .collect();
        // Read over an edge the plan marks remote (and not pushed for another reason).
        let from_remote: Vec<bool> = done
            .outputs
            .iter()
            .map(|o| {
                let k = (done.node, o.name.clone());
                o.remote
                    && installed.remote_readers.get(&k).is_some_and(|r| r.contains(&me))
                    && !installed.readers.get(&k).is_some_and(|r| r.contains(&me))
                    && !(entry == me && installed.result_reads.contains(&k))
            })
            .collect();
        let producer = wf.graph[node].name.clone();
        let kinds: HashMap<String, ValueKind> = wf.graph[node]
            .task()
            .map(|t| t.spec.outputs.iter().map(|o| (o.name.clone(), o.kind)).collect())
            .unwrap_or_default();
        let mut outputs = Vec::with_capacity(done.outputs.len());
        for ((o, needed), from_remote) in done.outputs.into_iter().zip(needed).zip(from_remote) {
            let local = self.local_id(&from, id, o.object);
            let json = match o.json {
                None => None,
                Some(bytes) => match serde_json::from_slice::<serde_json::Value>(&bytes) {
                    Ok(v) => Some(Arc::new(v)),
                    Err(e) => {
                        let msg = format!(
                            "worker `{from}` sent output `{}` of `{producer}` as invalid JSON: {e}",
                            o.name
                        );
                        return self.abort(id, msg, false);
                    }
                },
            };
            if json.is_none() && matches!(kinds.get(&o.name), Some(ValueKind::Json | ValueKind::List)) {
                let msg = format!(
                    "worker `{from}` sent output `{}` of `{producer}` without its JSON value",
                    o.name
                );
                return self.abort(id, msg, false);
            }
            if needed || o.len == 0 {
                let place = if o.len == 0 {
                    Place::Empty
                } else if from_remote {
                    Place::Remote {
                        key: edge_key(&wf_key, id, &from, o.object),
                        owned: false,
                        spilled: false,
                    }
                } else {
                    Place::Pending
                };
                let obj = self
                    .objects
                    .entry(local)
                    .or_insert_with(|| Object::foreign(place, o.len, wf_key.clone(), id, producer.clone()));
                obj.producer = producer.clone();
                obj.wf = wf_key.clone();
                if let Some(inv) = self.invocations.get_mut(&id) {
                    inv.objects.insert(local);
                }
            }
            outputs.push((
                o.name,
                ObjectRef {
                    id: local,
                    len: o.len,
                    json,
                },
            ));
        }
        if let Some(inv) = self.invocations.get_mut(&id)
            && inv.reply.is_some()
            && let Ok(rec) = serde_json::from_slice::<PeerRecord>(&done.record)
        {
            inv.functions.extend(rec.functions);
            inv.edges.extend(rec.edges);
            inv.data_us += rec.data_us;
            inv.spills += rec.spills;
        }
        let now = self.now();
        self.engine.function_done(now, id, node, done.element, outputs);
    }

    /// Where an arriving object's bytes go: the arena when it has room (spilling to make
    /// room as for local outputs), else a spill file.
    fn landing(&mut self, from: &str, header: ObjectHeader) -> Landing {
        if self.ended.contains(header.invocation) {
            return Landing::Refuse;
        }
        if header.len == 0 {
            return Landing::Refuse;
        }
        // In its workflow's segment; before its invocation starts here, in the daemon's own
        // (its readers get a copy: see `input_ref`).
        let segment = self
            .invocations
            .get(&header.invocation)
            .map_or(self.private_segment, |i| self.segment_of(&i.wf));
        if header.len <= self.arena.capacity()
            && let Ok(e) = self.alloc_or_spill(segment, header.len, &[])
            && let Some(region) = self.arena.region(e.segment)
        {
            return Landing::Arena(e, region.clone());
        }
        Landing::File(self.spill_dir.path().join(format!(
            "peer-{}-{}-{}",
            faasflow_remote::escape(from),
            header.invocation,
            header.object
        )))
    }

    fn arrived(&mut self, from: String, header: ObjectHeader, landing: Landing, result: Result<f64, String>) {
        let place = match landing {
            Landing::Arena(e, _) => Place::Arena(e),
            Landing::File(p) => Place::Spilled(p),
            Landing::Refuse => return,
        };
        let discard = |rt: &mut Runtime, place: Place| match place {
            Place::Arena(e) => {
                rt.arena.free(e);
            }
            Place::Spilled(p) => {
                let _ = std::fs::remove_file(p);
            }
            Place::Empty | Place::Pending | Place::Remote { .. } => {}
        };
        let inv_id = header.invocation;
        let transfer_us = match result {
            Ok(t) => t,
            Err(e) => {
                discard(self, place);
                let msg = format!("an object from worker `{from}` did not arrive: {e}");
                return self.abort(inv_id, msg, false);
            }
        };
        if self.ended.contains(inv_id) {
            return discard(self, place);
        }
        let id = self.local_id(&from, inv_id, header.object);
        let wf_key: Option<WfKey> = self.invocations.get(&inv_id).map(|i| i.wf.clone());
        let resident = matches!(place, Place::Arena(_));
        match self.objects.get_mut(&id) {
            Some(obj) if matches!(obj.place, Place::Pending) && obj.len == header.len => {
                obj.place = place;
                obj.transfer_us = Some(("peer", transfer_us));
            }
            Some(_) => {
                discard(self, place);
                let msg = format!(
                    "worker `{from}` sent object {} twice or with another size",
                    header.object
                );
                return self.abort(inv_id, msg, false);
            }
            None => {
                // Before its Done (or its invocation's start): kept until they come.
                let wf = wf_key.clone().unwrap_or_else(|| Arc::new((String::new(), 0)));
                let mut o = Object::foreign(place, header.len, wf, inv_id, String::new());
                o.transfer_us = Some(("peer", transfer_us));
                self.objects.insert(id, o);
            }
        }
        if let Some(wf) = wf_key {
            if resident {
                *self.resident.entry(wf.clone()).or_default() += header.len;
            }
            if let Some(inv) = self.invocations.get_mut(&inv_id) {
                inv.objects.insert(id);
            }
            let quota = self.installed.get(&wf).map_or(u64::MAX, |i| i.quota);
            if resident && self.resident.get(&wf).copied().unwrap_or(0) > quota {
                self.spill(id);
            }
        }
        self.arrivals_done(inv_id);
        self.unpin(&[id]);
    }

    /// Something arrived for `invocation`: starts the calls and the end that waited for it.
    pub(super) fn arrivals_done(&mut self, invocation: InvocationId) {
        let waiting: Vec<u64> = self.awaiting.clone();
        let mut pools = Vec::new();
        for c in waiting {
            let ready = self.calls.get(&c).is_some_and(|call| !self.inputs_arriving(call));
            if ready && let Some(call) = self.calls.get(&c) {
                let pool = call.pool;
                // Its data wait: from its trigger until its last input arrived.
                if let Some(rec) = self
                    .invocations
                    .get_mut(&call.invocation)
                    .and_then(|i| i.functions.get_mut(call.record))
                {
                    rec.data_us = us(call.triggered.elapsed());
                }
                self.awaiting.retain(|&x| x != c);
                self.pools[pool].queue.push_back(c);
                if !pools.contains(&pool) {
                    pools.push(pool);
                }
            }
        }
        for p in pools {
            self.dispatch(p);
        }
        if let Some(result) = self.invocations.get_mut(&invocation).and_then(|i| i.deferred.take()) {
            self.finish(invocation, result);
        }
    }

    /// Frees objects and forgets messages of invocations that never started here.
    pub(super) fn sweep_strays(&mut self) {
        self.early.retain(|_, (seen, _)| seen.elapsed() < STRAY_TTL);
        let stray: Vec<u64> = self
            .objects
            .iter()
            .filter(|(_, o)| !self.invocations.contains_key(&o.invocation) && o.born.elapsed() >= STRAY_TTL)
            .map(|(id, _)| *id)
            .collect();
        for id in stray {
            self.free_object(id);
        }
    }
}
