//! Invocations running here: their records (what ran, what moved, the data time), the calls
//! they run, the objects they hold, their staged inputs, and the report the entry daemon
//! answers with when one ends. Invocations that ended lately are remembered, so that what
//! arrives about them afterwards is dropped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use faasflow_core::dag::Workflow;
use faasflow_core::engine::{Failure, InputValue, InvocationId, ObjectRef};
use faasflow_core::report::{self, EdgeRecord, FunctionRecord, Report};

use super::objects::{Objects, Shown};
use super::types::{WfKey, us_between};
use crate::api::{Answer, DaemonError};
use crate::remote::Source;
use crate::store::arena::Arena;

/// Ended invocations remembered (to drop what arrives late about them).
const ENDED_KEPT: usize = 65_536;

/// An invocation's outcome as the engine gives it: the workflow's outputs, or why it failed.
pub(crate) type Outcome = Result<Vec<(String, InputValue)>, Failure>;

/// Where an invocation's report goes (the entry daemon only).
pub(crate) type Reply = Answer<Result<Report, DaemonError>>;

/// One invocation.
pub(crate) struct InvState {
    pub(crate) wf: WfKey,
    pub(crate) start: Instant,
    /// Where the report goes (the entry daemon only).
    pub(crate) reply: Option<Reply>,
    /// The plan index of the entry daemon.
    pub(crate) entry: u32,
    /// It failed because another worker said so (or was lost): not told again.
    pub(crate) quiet: bool,
    /// The worker whose loss ended it (seen here, or told by the worker that saw it).
    pub(crate) lost: Option<String>,
    /// Its end waits: for result objects still arriving from other workers, or for the bytes
    /// of results the report shows.
    pub(crate) deferred: Option<Outcome>,
    /// Since when its end waits for arriving results, and how long it waited.
    pub(crate) deferred_at: Option<Instant>,
    pub(crate) result_wait_us: f64,
    /// When the engine ended it, if its report then waited for result bytes to be read.
    pub(crate) finished_at: Option<Instant>,
    /// Result bytes read for the report (spilled or in the remote tier), by object.
    pub(crate) shown: HashMap<u64, Option<Vec<u8>>>,
    /// Reads of result bytes in flight.
    pub(crate) showing: u32,
    /// Workflow inputs sent on streams of their own, landed as objects: input name → object.
    pub(crate) staged: HashMap<String, u64>,
    /// Staged objects released once this many more of their reading tasks have run.
    pub(crate) staged_left: HashMap<u64, u32>,
    /// Data time and spills already reported to the entry daemon.
    pub(crate) reported: (f64, u64),
    /// It runs on a central engine: this daemon only executes some of its functions.
    pub(crate) central: bool,
    /// Outputs of its central-engine calls being stored in the remote tier.
    pub(crate) storing: u32,
    pub(crate) functions: Vec<FunctionRecord>,
    pub(crate) edges: Vec<EdgeRecord>,
    pub(crate) data_us: f64,
    pub(crate) spills: u64,
    /// Running calls by (node, element).
    pub(crate) running: HashMap<(u32, Option<u32>), u64>,
    /// Objects produced by this invocation and still held.
    pub(crate) objects: HashSet<u64>,
    /// Keep the outputs the report does not show whole this long after the end (the entry).
    pub(crate) keep_outputs: Option<std::time::Duration>,
}

impl InvState {
    /// A new invocation of `wf`, started at `start`, whose entry is plan worker `entry`.
    pub(crate) fn new(wf: WfKey, start: Instant, entry: u32, reply: Option<Reply>) -> Self {
        InvState {
            wf,
            start,
            reply,
            entry,
            quiet: false,
            lost: None,
            deferred: None,
            deferred_at: None,
            result_wait_us: 0.0,
            finished_at: None,
            shown: HashMap::new(),
            showing: 0,
            staged: HashMap::new(),
            staged_left: HashMap::new(),
            reported: (0.0, 0),
            central: false,
            storing: 0,
            functions: Vec::new(),
            edges: Vec::new(),
            data_us: 0.0,
            spills: 0,
            running: HashMap::new(),
            objects: HashSet::new(),
            keep_outputs: None,
        }
    }

    /// µs since it started, at `now`.
    pub(crate) fn elapsed_us(&self, now: Instant) -> f64 {
        us_between(self.start, now)
    }

    /// Adds a record of a run of `name` starting at `now`; returns its index.
    pub(crate) fn record(
        &mut self,
        name: String,
        worker: &str,
        element: Option<u32>,
        attempt: u32,
        now: Instant,
    ) -> usize {
        let start_us = self.elapsed_us(now);
        self.functions.push(FunctionRecord {
            name,
            worker: worker.to_owned(),
            element,
            instance: None,
            start_us,
            end_us: 0.0,
            exec_us: 0.0,
            data_us: 0.0,
            peak_memory_bytes: None,
            output_bytes: Default::default(),
            attempt,
            skipped: false,
            error: None,
            failure: None,
            chained: false,
        });
        self.functions.len() - 1
    }

    /// Staged object `object` was read by a task here: when no task here will read it any
    /// more, returns it (to be released).
    fn read_staged(&mut self, object: u64) -> Option<u64> {
        let left = self.staged_left.get_mut(&object)?;
        *left = left.saturating_sub(1);
        if *left > 0 {
            return None;
        }
        self.staged_left.remove(&object);
        Some(object)
    }
}

/// Invocations that ended here lately.
#[derive(Default)]
pub(crate) struct Ended {
    set: HashSet<InvocationId>,
    order: VecDeque<InvocationId>,
}

impl Ended {
    pub(crate) fn contains(&self, id: InvocationId) -> bool {
        self.set.contains(&id)
    }

    pub(crate) fn insert(&mut self, id: InvocationId) {
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

/// The invocations running here.
pub(crate) struct Invocations {
    map: HashMap<InvocationId, InvState>,
    next: InvocationId,
    /// Invocations that ended here lately (late messages and objects about them are dropped).
    pub(crate) ended: Ended,
    /// Invocations cancelled before they started here (refused when they come).
    pub(crate) cancelled: Ended,
    /// Invocations ended since the last [`Invocations::take_just_ended`].
    just_ended: Vec<InvocationId>,
    /// Reads of result bytes for reports in flight: token → (invocation, object).
    showing: HashMap<u64, (InvocationId, u64)>,
}

impl Default for Invocations {
    fn default() -> Self {
        Invocations {
            map: HashMap::new(),
            next: 1,
            ended: Ended::default(),
            cancelled: Ended::default(),
            just_ended: Vec::new(),
            showing: HashMap::new(),
        }
    }
}

impl Invocations {
    /// The id to give a new invocation: `requested`, or the daemon's next.
    pub(crate) fn new_id(&mut self, requested: Option<InvocationId>) -> InvocationId {
        requested.unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        })
    }

    /// Why invocation `id` cannot start here now (`worker` and `max`: this daemon's name and
    /// `--max-invocations`), if it cannot.
    pub(crate) fn refusal(&self, id: InvocationId, worker: &str, max: usize) -> Option<DaemonError> {
        if self.cancelled.contains(id) {
            Some(DaemonError::Invoke(format!(
                "invocation {id} was cancelled before it started"
            )))
        } else if self.taken(id) {
            Some(DaemonError::Invoke(format!("invocation {id} is already running")))
        } else if self.len() >= max {
            Some(DaemonError::Overloaded(format!(
                "worker `{worker}` is overloaded: {} invocations are running on it (its --max-invocations); retry \
                 later",
                self.len()
            )))
        } else {
            None
        }
    }

    /// Whether `id` runs or ran lately here (a new invocation cannot have it).
    pub(crate) fn taken(&self, id: InvocationId) -> bool {
        self.map.contains_key(&id) || self.ended.contains(id)
    }

    pub(crate) fn insert(&mut self, id: InvocationId, inv: InvState) {
        self.map.insert(id, inv);
    }

    pub(crate) fn get(&self, id: InvocationId) -> Option<&InvState> {
        self.map.get(&id)
    }

    pub(crate) fn get_mut(&mut self, id: InvocationId) -> Option<&mut InvState> {
        self.map.get_mut(&id)
    }

    pub(crate) fn contains(&self, id: InvocationId) -> bool {
        self.map.contains_key(&id)
    }

    pub(crate) fn remove(&mut self, id: InvocationId) -> Option<InvState> {
        self.map.remove(&id)
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (InvocationId, &InvState)> {
        self.map.iter().map(|(id, i)| (*id, i))
    }

    /// Takes every invocation (the daemon stops).
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = InvState> + '_ {
        self.map.drain().map(|(_, i)| i)
    }

    /// Invocations of `wf` running here.
    pub(crate) fn in_flight(&self, wf: &(String, u64)) -> u64 {
        self.map.values().filter(|i| *i.wf == *wf).count() as u64
    }

    /// Adds `us` of data time to invocation `id` (and to record `record`, when given).
    pub(crate) fn add_data_us(&mut self, id: InvocationId, record: Option<usize>, us: f64) {
        let Some(inv) = self.map.get_mut(&id) else { return };
        inv.data_us += us;
        if let Some(rec) = record.and_then(|r| inv.functions.get_mut(r)) {
            rec.data_us += us;
        }
    }

    /// Invocation `id` ended here: remembered, and cleared up after the engine's last
    /// releases ([`Invocations::take_just_ended`]).
    pub(crate) fn ended(&mut self, id: InvocationId) {
        self.ended.insert(id);
        self.just_ended.push(id);
    }

    /// The invocations ended since the last call.
    pub(crate) fn take_just_ended(&mut self) -> Vec<InvocationId> {
        std::mem::take(&mut self.just_ended)
    }

    /// Staged input `name` of invocation `id` is object `object` here, read by `readers`
    /// tasks of this worker (when known).
    pub(crate) fn note_staged(&mut self, id: InvocationId, name: String, object: u64, readers: Option<u32>) {
        let Some(inv) = self.map.get_mut(&id) else { return };
        inv.objects.insert(object);
        inv.staged.insert(name, object);
        if let Some(n) = readers {
            inv.staged_left.insert(object, n);
        }
    }

    /// A call of invocation `id` that read `reads` ran: the staged inputs no task here will
    /// read any more (returned) can be released.
    pub(crate) fn read_staged(&mut self, id: InvocationId, reads: &[u64]) -> Vec<u64> {
        let Some(inv) = self.map.get_mut(&id) else {
            return Vec::new();
        };
        if inv.staged_left.is_empty() {
            return Vec::new();
        }
        let mut seen = HashSet::new();
        reads
            .iter()
            .filter(|id| seen.insert(**id))
            .filter_map(|o| inv.read_staged(*o))
            .collect()
    }

    /// The result bytes the report of `id` (whose outcome is `values`) still needs read from
    /// the spill directory or the remote tier: (object, where), each asked for once.
    pub(crate) fn unread_results(
        &mut self,
        id: InvocationId,
        values: &[(String, InputValue)],
        objects: &Objects,
        arena: &Arena,
    ) -> Vec<(u64, Source)> {
        let Some(inv) = self.map.get_mut(&id) else {
            return Vec::new();
        };
        let mut reads = Vec::new();
        for r in values.iter().flat_map(|(_, v)| refs(v)) {
            if r.json.is_some() || !report::shows_bytes(r.len) || inv.shown.contains_key(&r.id) {
                continue;
            }
            if let Shown::Read(source) = objects.shown(r.id, r.len, arena) {
                inv.shown.insert(r.id, None);
                reads.push((r.id, source));
            }
        }
        reads
    }

    /// Reading object `object`'s bytes for invocation `id`'s report is operation `token`.
    pub(crate) fn showing(&mut self, token: u64, id: InvocationId, object: u64) {
        self.showing.insert(token, (id, object));
        if let Some(inv) = self.map.get_mut(&id) {
            inv.showing += 1;
        }
    }

    /// Reading result bytes `token` ended with `bytes`: returns the invocation when its report
    /// has every byte it shows.
    pub(crate) fn shown(&mut self, token: u64, bytes: Option<Vec<u8>>) -> Option<InvocationId> {
        let (id, object) = self.showing.remove(&token)?;
        let inv = self.map.get_mut(&id)?;
        inv.shown.insert(object, bytes);
        inv.showing = inv.showing.saturating_sub(1);
        (inv.showing == 0).then_some(id)
    }
}

/// The object references of a value.
pub(crate) fn refs(v: &InputValue) -> Vec<&ObjectRef> {
    match v {
        InputValue::Object(r) => vec![r],
        InputValue::List(l) => l.iter().collect(),
        _ => Vec::new(),
    }
}

/// The objects of a value.
pub(crate) fn object_ids(v: &InputValue) -> Vec<u64> {
    refs(v).into_iter().map(|r| r.id).collect()
}

/// What the report of an ended invocation is made from.
pub(crate) struct Ending<'a> {
    pub(crate) invocation: InvocationId,
    pub(crate) outcome: Outcome,
    pub(crate) wf: Option<&'a Workflow>,
    /// The worker of each task.
    pub(crate) worker_of: &'a dyn Fn(faasflow_core::NodeId) -> String,
    pub(crate) objects: &'a Objects,
    pub(crate) arena: &'a Arena,
    pub(crate) e2e_us: f64,
}

impl InvState {
    /// The report of this invocation, which just ended (its records are taken).
    pub(crate) fn report(&mut self, end: Ending<'_>) -> Report {
        let (status, output, error) = match end.outcome {
            Ok(values) => {
                let mut map = serde_json::Map::new();
                for (name, v) in &values {
                    map.insert(name.clone(), self.value_json(v, end.objects, end.arena));
                }
                ("ok", serde_json::Value::Object(map), None)
            }
            Err(e) => ("failed", serde_json::Value::Null, Some(e.to_string())),
        };
        let path = match end.wf {
            Some(wf) => {
                report::add_skipped(wf, &mut self.functions, end.worker_of);
                report::critical_path(wf, &self.functions)
            }
            None => Default::default(),
        };
        Report {
            status: status.into(),
            output,
            error,
            invocation: end.invocation,
            e2e_us: end.e2e_us,
            planner_us: None,
            client_us: None,
            scheduling_overhead_us: path.scheduling_overhead_us(end.e2e_us, self.result_wait_us),
            data_overhead_us: self.data_us,
            critical_path_us: path.exec_us,
            critical_data_us: path.data_us + self.result_wait_us,
            critical_path: path.names,
            functions: std::mem::take(&mut self.functions),
            edges: std::mem::take(&mut self.edges),
            spills: self.spills,
            lost_worker: self.lost.take(),
            earlier_runs: Vec::new(),
        }
    }

    /// The JSON shown for a workflow output.
    fn value_json(&mut self, v: &InputValue, objects: &Objects, arena: &Arena) -> serde_json::Value {
        match v {
            InputValue::Absent => serde_json::Value::Null,
            InputValue::Json(j) => (**j).clone(),
            InputValue::List(l) => l.iter().map(|r| self.object_json(r, objects, arena)).collect(),
            InputValue::Object(r) => self.object_json(r, objects, arena),
        }
    }

    fn object_json(&mut self, r: &ObjectRef, objects: &Objects, arena: &Arena) -> serde_json::Value {
        if let Some(j) = &r.json {
            return (**j).clone();
        }
        if !report::shows_bytes(r.len) {
            return report::shown(r.len, None);
        }
        let bytes = match objects.shown(r.id, r.len, arena) {
            Shown::Bytes(b) => b,
            Shown::Read(_) => self.shown.remove(&r.id).flatten(),
        };
        report::shown(r.len, bytes)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn inv() -> InvState {
        InvState::new(Arc::new(("wf".into(), 1)), Instant::now(), 0, None)
    }

    #[test]
    fn ids_are_the_requested_one_or_the_next() {
        let mut invs = Invocations::default();
        assert_eq!(invs.new_id(None), 1);
        assert_eq!(invs.new_id(None), 2);
        assert_eq!(invs.new_id(Some(77)), 77);
        assert_eq!(invs.new_id(None), 3);
    }

    #[test]
    fn an_ended_invocation_is_taken_until_it_is_forgotten() {
        let mut invs = Invocations::default();
        invs.insert(5, inv());
        assert!(invs.taken(5));
        invs.remove(5);
        assert!(!invs.taken(5));
        invs.ended(5);
        assert!(invs.taken(5), "an id that ended lately is not reused");
        assert_eq!(invs.take_just_ended(), vec![5]);
        assert!(invs.take_just_ended().is_empty());
        // The memory of ended ids is bounded: the oldest goes first.
        for id in 1000..1000 + ENDED_KEPT as u64 {
            invs.ended.insert(id);
        }
        assert!(!invs.ended.contains(5));
        assert!(invs.ended.contains(1000 + ENDED_KEPT as u64 - 1));
    }

    #[test]
    fn a_staged_input_is_released_after_its_last_reader_here() {
        let mut invs = Invocations::default();
        invs.insert(1, inv());
        invs.note_staged(1, "text".into(), 40, Some(2));
        invs.note_staged(1, "other".into(), 41, None);
        // A call reading it twice counts once.
        assert!(invs.read_staged(1, &[40, 40]).is_empty());
        assert_eq!(invs.read_staged(1, &[40, 41]), vec![40]);
        assert!(invs.read_staged(1, &[40]).is_empty(), "released once");
        let state = invs.get(1).unwrap();
        assert_eq!(state.staged.get("text"), Some(&40));
        assert!(state.objects.contains(&40) && state.objects.contains(&41));
    }

    #[test]
    fn data_time_goes_to_the_invocation_and_the_record() {
        let mut invs = Invocations::default();
        let mut state = inv();
        let now = state.start;
        let r = state.record("f".into(), "local", None, 1, now);
        invs.insert(1, state);
        invs.add_data_us(1, Some(r), 5.0);
        invs.add_data_us(1, None, 2.0);
        let state = invs.get(1).unwrap();
        assert_eq!(state.data_us, 7.0);
        assert_eq!(state.functions[r].data_us, 5.0);
        assert_eq!(invs.in_flight(&("wf".into(), 1)), 1);
        assert_eq!(invs.in_flight(&("wf".into(), 2)), 0);
    }
}
