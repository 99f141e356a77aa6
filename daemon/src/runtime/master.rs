//! Functions run for a central engine (MasterSP): inputs fetched from the remote tier into
//! the arena, the function run on an instance of its pool like any other call, outputs stored
//! in the remote tier, and the result sent back to the caller instead of to this daemon's
//! engine. The daemon keeps nothing of them afterwards: the caller deletes the invocation's
//! keys.
//!
//! Redis I/O runs on a small tokio runtime beside the loop; the loop never waits on it. Input
//! objects are `Pending` until fetched (the call waits like one whose inputs come from a
//! peer); outputs stay pinned in the arena until stored.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{
    Call, ExecInput, ExecReply, Execute, Executed, InputValue, InvState, Msg, Object, ObjectRef, Place, RemoteObject,
    Runtime, Shared,
};
use faasflow_core::dag::FailureKind;
use faasflow_core::report::EdgeRecord;
use faasflow_remote::{ObjectKey, RemoteStore};

/// How long the daemon waits for Redis at start.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// What the remote tier's I/O tells the loop.
pub(crate) enum MasterEvent {
    /// An input object's bytes (or why they could not be read), and the time it took, µs.
    Fetched {
        object: u64,
        result: Result<Vec<u8>, String>,
        us: f64,
    },
    /// A call's outputs are stored (or not).
    Stored {
        token: u64,
        result: Result<(), String>,
        us: f64,
    },
}

/// Connects to the remote tier; says so once and goes on without it when it cannot.
pub(super) fn connect(url: &str) -> Option<(Arc<RemoteStore>, tokio::runtime::Runtime)> {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("faasflow-remote")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("faasflow daemon: no remote tier: cannot start its threads: {e}");
            return None;
        }
    };
    match rt.block_on(RemoteStore::connect(url, CONNECT_TIMEOUT)) {
        Ok(store) => Some((Arc::new(store), rt)),
        Err(e) => {
            eprintln!(
                "faasflow daemon: no remote tier: {e}; functions cannot run for a MasterSP plan, \
                 WorkerSP plans use peer transfers and the local spill directory"
            );
            None
        }
    }
}

impl Runtime {
    pub(super) fn execute(&mut self, request: Execute, reply: ExecReply) {
        match self.start_execute(request, reply) {
            Ok(()) => {}
            Err((message, reply)) => reply(Err((message, FailureKind::Crash))),
        }
    }

    fn start_execute(&mut self, request: Execute, reply: ExecReply) -> Result<(), (String, ExecReply)> {
        let step = |s: &Runtime| {
            s.installed
                .get(&(request.workflow.clone(), request.version))
                .filter(|i| request.node.index() < i.wf.graph.node_count())
                .map_or_else(
                    || format!("step {}", request.node.index()),
                    |i| format!("step `{}`", i.wf.graph[request.node].name),
                )
        };
        let Some((store, rt)) = &self.remote else {
            let m = format!(
                "{} of `{}`: worker `{}` has no remote tier (start its daemon with --redis URL)",
                step(self),
                request.workflow,
                self.config.name
            );
            return Err((m, reply));
        };
        let (store, handle) = (store.clone(), rt.handle().clone());
        let key = (request.workflow.clone(), request.version);
        let Some((wf_key, installed)) = self.installed.get_key_value(&key) else {
            let m = format!(
                "workflow `{}` version {} is not installed on worker `{}`",
                request.workflow, request.version, self.config.name
            );
            return Err((m, reply));
        };
        if !installed.placement.local.contains(&request.node) {
            let m = format!(
                "{} is not placed on worker `{}` by the plan",
                step(self),
                self.config.name
            );
            return Err((m, reply));
        }
        let wf_key = wf_key.clone();
        let id = request.invocation;
        let inv = self.invocations.entry(id).or_insert_with(|| InvState {
            wf: wf_key.clone(),
            start: Instant::now(),
            reply: None,
            entry: 0,
            quiet: true,
            lost: None,
            deferred: None,
            deferred_at: None,
            result_wait_us: 0.0,
            staged: std::collections::HashMap::new(),
            staged_left: std::collections::HashMap::new(),
            reported: (0.0, 0),
            master: true,
            functions: Vec::new(),
            edges: Vec::new(),
            data_us: 0.0,
            spills: 0,
            running: std::collections::HashMap::new(),
            objects: std::collections::HashSet::new(),
        });
        if !inv.master {
            let m = format!("invocation {id} runs on this worker's own engine, not a central one");
            return Err((m, reply));
        }
        if inv
            .running
            .contains_key(&(request.node.index() as u32, request.element))
        {
            let m = format!(
                "{} (element {:?}) of invocation {id} is already running here",
                step(self),
                request.element
            );
            return Err((m, reply));
        }
        // Input objects: pending until fetched from the remote tier.
        let mut owned = Vec::new();
        let mut inputs = Vec::with_capacity(request.inputs.len());
        for (name, v) in request.inputs {
            let value = match v {
                ExecInput::Absent => InputValue::Absent,
                ExecInput::Json(j) => InputValue::Json(j),
                ExecInput::Object(o) => InputValue::Object(self.fetch(&store, &handle, &wf_key, id, o, &mut owned)),
                ExecInput::List(l) => InputValue::List(
                    l.into_iter()
                        .map(|o| self.fetch(&store, &handle, &wf_key, id, o, &mut owned))
                        .collect(),
                ),
            };
            inputs.push((name, value));
        }
        self.trigger(id, request.node, request.element, request.attempt, inputs);
        let call_id = self
            .invocations
            .get(&id)
            .and_then(|inv| inv.running.get(&(request.node.index() as u32, request.element)))
            .copied();
        match call_id.and_then(|c| self.calls.get_mut(&c)) {
            Some(call) => {
                call.master = Some(reply);
                call.owned = owned;
                Ok(())
            }
            None => {
                // Not even queued (the daemon cannot run this node): undo.
                for o in owned {
                    self.free_object(o);
                }
                self.drop_master_state(id);
                Err((
                    format!("{} could not be queued on worker `{}`", step(self), self.config.name),
                    reply,
                ))
            }
        }
    }

    /// A pending local copy of a remote object, fetched in the background.
    fn fetch(
        &mut self,
        store: &Arc<RemoteStore>,
        handle: &tokio::runtime::Handle,
        wf: &super::WfKey,
        invocation: u64,
        o: RemoteObject,
        owned: &mut Vec<u64>,
    ) -> ObjectRef {
        let id = self.next_object;
        self.next_object += 1;
        owned.push(id);
        let place = if o.len == 0 { Place::Empty } else { Place::Pending };
        let mut obj = Object::foreign(place, o.len, wf.clone(), invocation, producer_of(&o.key));
        // An empty object is not fetched: its edge is still a remote one.
        obj.transfer_us = (o.len == 0).then_some(("remote", 0.0));
        self.objects.insert(id, obj);
        if o.len > 0 {
            let (store, shared, key) = (store.clone(), self.shared.clone(), o.key.clone());
            self.transfers += 1;
            handle.spawn(async move {
                let t = Instant::now();
                let result = match store.get(&key).await {
                    Ok(Some(bytes)) => Ok(bytes),
                    Ok(None) => Err(format!("object `{}` is not in the remote tier", key.redis_key())),
                    Err(e) => Err(e.to_string()),
                };
                post(
                    &shared,
                    MasterEvent::Fetched {
                        object: id,
                        result,
                        us: t.elapsed().as_secs_f64() * 1e6,
                    },
                );
            });
        }
        ObjectRef {
            id,
            len: o.len,
            json: o.json,
        }
    }

    pub(super) fn master_event(&mut self, event: MasterEvent) {
        match event {
            MasterEvent::Fetched { object, result, us } => {
                self.transfers = self.transfers.saturating_sub(1);
                self.fetched(object, result, us);
            }
            MasterEvent::Stored { token, result, us } => {
                self.transfers = self.transfers.saturating_sub(1);
                let Some((reply, mut executed, objects)) = self.storing.remove(&token) else {
                    return;
                };
                let invocation = objects.iter().find_map(|id| self.objects.get(id).map(|o| o.invocation));
                for id in &objects {
                    if let Some(o) = self.objects.get_mut(id) {
                        o.pushes = o.pushes.saturating_sub(1);
                    }
                }
                self.unpin(&objects);
                if let Some(invocation) = invocation {
                    self.drop_master_state(invocation);
                }
                executed.data_us += us;
                let where_ = format!("step `{}` on worker `{}`", executed.record.name, self.config.name);
                reply(
                    result
                        .map(|()| executed)
                        .map_err(|e| (format!("{where_}: {e}"), FailureKind::Data)),
                );
            }
        }
    }

    fn fetched(&mut self, object: u64, result: Result<Vec<u8>, String>, us: f64) {
        let Some(obj) = self.objects.get(&object) else {
            return; // Its call ended meanwhile.
        };
        let (len, invocation) = (obj.len, obj.invocation);
        let segment = self.segment_of(&obj.wf);
        let result = result.and_then(|bytes| {
            if bytes.len() as u64 != len {
                return Err(format!("it holds {} bytes, {len} were expected", bytes.len()));
            }
            match self.alloc_or_spill(segment, len, &[object]) {
                Ok(e) => {
                    self.arena.write(e, 0, &bytes);
                    Ok(Place::Arena(e))
                }
                Err(_) => {
                    let path = self.spill_dir.path().join(format!("remote-{invocation}-{object}"));
                    std::fs::write(&path, &bytes)
                        .map(|()| Place::Spilled(path.clone()))
                        .map_err(|e| format!("no room in the arena, and the spill file {}: {e}", path.display()))
                }
            }
        });
        match result {
            Ok(place) => {
                if let Some(o) = self.objects.get_mut(&object) {
                    o.place = place;
                    o.transfer_us = Some(("remote", us));
                }
                self.arrivals_done(invocation);
                // A call that ended meanwhile released it.
                self.unpin(&[object]);
            }
            Err(e) => {
                let waiting: Vec<u64> = self
                    .calls
                    .iter()
                    .filter(|(_, c)| c.owned.contains(&object))
                    .map(|(id, _)| *id)
                    .collect();
                let producer = self
                    .objects
                    .get(&object)
                    .map(|o| o.producer.clone())
                    .unwrap_or_default();
                for c in waiting {
                    self.fail_call(
                        c,
                        format!("cannot fetch input {producer} from the remote tier: {e}"),
                        FailureKind::Data,
                    );
                }
                // It has no bytes and never will.
                self.objects.remove(&object);
            }
        }
    }

    /// A central-engine call ended: its inputs go, and the invocation's state when nothing of
    /// it runs here any more.
    pub(super) fn master_done(&mut self, call: &Call) {
        for id in &call.owned {
            if let Some(o) = self.objects.get_mut(id) {
                o.released = true;
            }
        }
        self.unpin(&call.owned);
        self.drop_master_state(call.invocation);
    }

    fn drop_master_state(&mut self, invocation: u64) {
        if self
            .invocations
            .get(&invocation)
            .is_some_and(|inv| inv.master && inv.running.is_empty())
            && !self.storing.values().any(|(_, _, objs)| {
                objs.iter()
                    .any(|o| self.objects.get(o).is_some_and(|o| o.invocation == invocation))
            })
        {
            self.invocations.remove(&invocation);
        }
    }

    /// A central-engine call succeeded with `objs`: stores them in the remote tier, then
    /// answers.
    pub(super) fn store_outputs(
        &mut self,
        call: Call,
        objs: Vec<(String, ObjectRef)>,
        reply: ExecReply,
    ) -> Result<(), String> {
        let (record, edges) = match self.invocations.get_mut(&call.invocation) {
            Some(inv) => {
                inv.running.remove(&(call.node.index() as u32, call.element));
                let record = inv.functions[call.record].clone();
                let edges: Vec<EdgeRecord> = inv
                    .edges
                    .get(call.edge_range.clone())
                    .map(<[_]>::to_vec)
                    .unwrap_or_default();
                (record, edges)
            }
            None => return Ok(()),
        };
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
            if let Some(obj) = self.objects.get_mut(&o.id)
                && let Place::Remote {
                    key: spilled, owned, ..
                } = &mut obj.place
            {
                // Spilled there already: the caller gets that key (and deletes it with the
                // invocation).
                key = spilled.clone();
                *owned = false;
                obj.released = true;
                stored_already.push(o.id);
            } else if let Some(obj) = self.objects.get_mut(&o.id) {
                obj.pushes += 1;
                obj.released = true;
                let source = match &obj.place {
                    Place::Arena(e) => self.arena.region(e.segment).map(|r| Source::Arena(r.clone(), e.offset)),
                    Place::Spilled(p) => Some(Source::File(p.clone())),
                    Place::Empty | Place::Pending | Place::Remote { .. } => None,
                };
                puts.push((key.clone(), source, o.len));
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
        let token = self.next_call;
        self.next_call += 1;
        self.storing.insert(token, (reply, executed, ids));
        self.master_done(&call);
        self.unpin(&stored_already);
        let Some((store, rt)) = &self.remote else {
            // Checked at start; the tier does not go away.
            return Err("no remote tier".into());
        };
        let (store, shared) = (store.clone(), self.shared.clone());
        self.transfers += 1;
        rt.spawn(async move {
            let t = Instant::now();
            let mut result = Ok(());
            for (key, source, len) in puts {
                let bytes = match source {
                    None => Vec::new(),
                    Some(Source::Arena(region, offset)) => {
                        let mut v = vec![0; len as usize];
                        region.copy_out(offset, &mut v);
                        v
                    }
                    Some(Source::File(p)) => match std::fs::read(&p) {
                        Ok(v) => v,
                        Err(e) => {
                            result = Err(format!("spill file {}: {e}", p.display()));
                            break;
                        }
                    },
                };
                if let Err(e) = store.put(&key, &bytes).await {
                    result = Err(format!("cannot store output `{}`: {e}", key.object));
                    break;
                }
            }
            post(
                &shared,
                MasterEvent::Stored {
                    token,
                    result,
                    us: t.elapsed().as_secs_f64() * 1e6,
                },
            );
        });
        Ok(())
    }
}

enum Source {
    /// Arena bytes: the segment's memory file and the offset there.
    Arena(Arc<faasflow_shm::Region>, u64),
    File(std::path::PathBuf),
}

fn post(shared: &Shared, event: MasterEvent) {
    shared.post(Msg::Master(event));
}

/// The producing step of an object stored by [`Runtime::store_outputs`] (`step[el].out#n`),
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
