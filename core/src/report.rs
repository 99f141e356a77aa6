//! The report of one invocation: what ran where and when, what moved, and where the time went.
//! Its JSON form is stable and documented in `docs/run-report.md`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::NodeId;
use crate::dag::{NodeKind, Workflow};

/// One invocation's report. Times are µs since the invocation started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `"ok"` or `"failed"`.
    pub status: String,
    /// The workflow's outputs by name (`null` when it failed).
    pub output: serde_json::Value,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Invocation id.
    pub invocation: u64,
    /// Start to end, µs, as the entry daemon (or, MasterSP, the planner's central engine)
    /// measured it.
    pub e2e_us: f64,
    /// The planner's time from receiving the invocation to answering it, µs (set by the
    /// planner's API, absent under `faasflow run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planner_us: Option<f64>,
    /// The client's time from sending the invocation to reading the answer, µs (set by the
    /// client).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_us: Option<f64>,
    /// `e2e_us` minus the critical path's execution time and its data waits
    /// (`critical_path_us + critical_data_us`): the time spent deciding, triggering and
    /// dispatching. FaaSFlow's functions fetch and store their data inside their bodies, so
    /// its "execution time" holds what faasflow reports apart as data waits.
    pub scheduling_overhead_us: f64,
    /// Time spent moving objects: writing inputs into the arena, spilling and reloading,
    /// transfers between workers and to and from the remote tier (summed over all functions).
    pub data_overhead_us: f64,
    /// Execution time of the critical path (functions' own time), µs.
    pub critical_path_us: f64,
    /// Time the critical path's functions waited for their data (inputs arriving from other
    /// workers or fetched from the remote tier, outputs stored there), plus the entry's wait
    /// for the result's bytes, µs.
    #[serde(default)]
    pub critical_data_us: f64,
    /// Task names on the critical path, first to last.
    pub critical_path: Vec<String>,
    /// Every function attempt, and every task that did not run (`skipped`).
    pub functions: Vec<FunctionRecord>,
    /// Every object read by a function.
    pub edges: Vec<EdgeRecord>,
    /// Objects spilled out of the arena because the workflow's quota was full.
    pub spills: u64,
    /// The worker whose loss ended the invocation, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_worker: Option<String>,
    /// Why earlier runs of this invocation ended, when the planner ran it again from its
    /// input (a worker was lost and every function is idempotent), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_runs: Vec<String>,
}

/// One function attempt (or a task that was skipped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionRecord {
    /// Task name.
    pub name: String,
    /// The worker that ran it (the daemon's name; `local` for `faasflow run`).
    pub worker: String,
    /// Index of the foreach element, if in a foreach body.
    pub element: Option<u32>,
    /// Id of the instance that ran it (`null` if it never started).
    pub instance: Option<u32>,
    /// When the daemon sent it to its instance; for a call that followed another on its
    /// thread (`chained`), when that call ended, as the instance measured it.
    pub start_us: f64,
    /// When it ended, as its instance measured it (the daemon's time of learning it for a
    /// call that never reached an instance, or failed there by crashing).
    pub end_us: f64,
    /// Time the function itself ran, measured in the instance.
    pub exec_us: f64,
    /// Time the run waited for its data outside the function: from its trigger until inputs
    /// coming from other workers had arrived, or (MasterSP) fetching its inputs from the
    /// remote tier and storing its outputs there.
    #[serde(default)]
    pub data_us: f64,
    /// The peak of the resident memory of the instance that ran it, while it ran, bytes: its
    /// own pages (anonymous and file-backed), not the shared arena every instance maps. Calls
    /// running at the same time in one instance share it. `null` when it was not measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory_bytes: Option<u64>,
    /// The size of each output it produced, bytes, by output name (empty when it produced
    /// none, or failed).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub output_bytes: std::collections::BTreeMap<String, u64>,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// It did not run: a switch did not take its branch.
    pub skipped: bool,
    /// Why the attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The kind of that failure (`error`, `panic`, `crash`, `timeout`, `data`; `retry.on`
    /// says which are retried); `null` for an attempt cancelled or failed elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Its instance started it on the thread of the call it follows the moment that call
    /// ended, with no round trip through the daemon.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub chained: bool,
}

impl FunctionRecord {
    /// Its task's name, with its foreach element in brackets (`count[3]`).
    pub fn label(&self) -> String {
        match self.element {
            Some(e) => format!("{}[{e}]", self.name),
            None => self.name.clone(),
        }
    }
}

/// One object read by one function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeRecord {
    /// Producer task.
    pub from: String,
    /// Consumer task.
    pub to: String,
    /// Bytes of the object.
    pub bytes: u64,
    /// `in-process` (same instance), `shared-memory` (same worker, another instance), `peer`
    /// (pushed from another worker over QUIC), `spill` (reloaded from the spill directory) or
    /// `element` (a foreach element copied out of its list for the element's call).
    pub tier: String,
    /// Time spent moving it for this consumer, µs (0 when passed by reference).
    pub transfer_us: f64,
    /// The foreach element of the producer that made it, when it is one and the reading
    /// worker knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_element: Option<u32>,
    /// The foreach element of the consumer that read it, when it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_element: Option<u32>,
}

/// Most edges the text report lists (the JSON form has every one).
const MAX_TEXT_EDGES: usize = 64;

impl Report {
    /// A human-readable summary: the times, then a line per function attempt (its worker,
    /// instance and times) and per edge read (its tier, bytes and transfer time).
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "invocation {}: {}{}",
            self.invocation,
            self.status,
            self.error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
        );
        let _ = writeln!(
            s,
            "  end-to-end {:.3} ms = critical path {:.3} ms + its data waits {:.3} ms + scheduling {:.3} ms; data movement {:.3} ms; {} spill(s)",
            self.e2e_us / 1e3,
            self.critical_path_us / 1e3,
            self.critical_data_us / 1e3,
            self.scheduling_overhead_us / 1e3,
            self.data_overhead_us / 1e3,
            self.spills
        );
        if let (Some(planner), Some(client)) = (self.planner_us, self.client_us) {
            let _ = writeln!(
                s,
                "  client {:.3} ms ⊇ planner {:.3} ms ⊇ entry daemon {:.3} ms",
                client / 1e3,
                planner / 1e3,
                self.e2e_us / 1e3
            );
        }
        if !self.critical_path.is_empty() {
            let _ = writeln!(s, "  critical path: {}", self.critical_path.join(" → "));
        }
        let _ = writeln!(
            s,
            "  {:<28} {:<12} {:>8} {:>10} {:>10} {:>10}  attempt",
            "function", "worker", "instance", "start ms", "end ms", "exec ms"
        );
        for f in &self.functions {
            let name = f.label();
            if f.skipped {
                let _ = writeln!(s, "  {name:<28} {:<12} {:>8}", f.worker, "skipped");
                continue;
            }
            let _ = writeln!(
                s,
                "  {name:<28} {:<12} {:>8} {:>10.3} {:>10.3} {:>10.3}  {}{}{}",
                f.worker,
                f.instance.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
                f.start_us / 1e3,
                f.end_us / 1e3,
                f.exec_us / 1e3,
                f.attempt,
                // Started on its predecessor's thread, with no round trip through the daemon.
                if f.chained { "  chained" } else { "" },
                match (&f.error, &f.failure) {
                    (Some(e), Some(kind)) => format!("  {kind}: {e}"),
                    (Some(e), None) => format!("  error: {e}"),
                    _ => String::new(),
                }
            );
        }
        if !self.edges.is_empty() {
            let _ = writeln!(
                s,
                "  {:<40} {:<14} {:>12} {:>12}",
                "edge", "tier", "bytes", "transfer ms"
            );
            for e in self.edges.iter().take(MAX_TEXT_EDGES) {
                let end = |name: &str, element: Option<u32>| match element {
                    Some(i) => format!("{name}[{i}]"),
                    None => name.to_owned(),
                };
                let edge = format!("{} → {}", end(&e.from, e.from_element), end(&e.to, e.to_element));
                let _ = writeln!(
                    s,
                    "  {edge:<40} {:<14} {:>12} {:>12.3}",
                    e.tier,
                    e.bytes,
                    e.transfer_us / 1e3
                );
            }
            if self.edges.len() > MAX_TEXT_EDGES {
                let _ = writeln!(
                    s,
                    "  … {} more edges (`--report json` has them all)",
                    self.edges.len() - MAX_TEXT_EDGES
                );
            }
        }
        if let Some(w) = &self.lost_worker {
            let _ = writeln!(s, "  lost worker: {w}");
        }
        for (i, e) in self.earlier_runs.iter().enumerate() {
            let _ = writeln!(s, "  earlier run {}: {e}", i + 1);
        }
        s
    }
}

/// The critical path of an invocation as it ran: the chain of function attempts that
/// determined its end. It starts from the attempt that ended last and goes back, at each
/// attempt, to the input that arrived last: among the attempts of the tasks it waits for
/// (through switches, foreach and joins; the same element within a foreach body) and its own
/// earlier attempt (a retry waits for it), the one that ended last before it started. The gaps
/// between the attempts on it (deciding, triggering, queueing for an instance, transfers) are
/// what `scheduling_overhead_us` and the data waits are made of, so queueing elsewhere, off
/// the path, is not counted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CriticalPath {
    /// Execution time of its functions, µs.
    pub exec_us: f64,
    /// Their data waits, µs.
    pub data_us: f64,
    /// Its attempts' task names (with the foreach element in brackets), first to last.
    pub names: Vec<String>,
}

/// The tasks whose attempts task `n` waits for: its predecessors, looking through virtual
/// nodes (switch, foreach, collect, join) to the tasks before them.
fn tasks_before(wf: &Workflow, n: NodeId) -> Vec<NodeId> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut stack: Vec<NodeId> = wf.graph.neighbors_directed(n, petgraph::Direction::Incoming).collect();
    while let Some(p) = stack.pop() {
        if !seen.insert(p) {
            continue;
        }
        if matches!(wf.graph[p].kind, NodeKind::Task(_)) {
            out.push(p);
        } else {
            stack.extend(wf.graph.neighbors_directed(p, petgraph::Direction::Incoming));
        }
    }
    out
}

/// The [`CriticalPath`] of an invocation of `wf` whose function attempts are `functions`
/// (their times on one clock).
pub fn critical_path(wf: &Workflow, functions: &[FunctionRecord]) -> CriticalPath {
    /// Clocks of different workers may disagree by this much.
    const SLACK_US: f64 = 1.0;
    let node_of: HashMap<&str, NodeId> = wf
        .graph
        .node_indices()
        .filter(|&n| matches!(wf.graph[n].kind, NodeKind::Task(_)))
        .map(|n| (wf.graph[n].name.as_str(), n))
        .collect();
    let ran: Vec<&FunctionRecord> = functions.iter().filter(|f| !f.skipped).collect();
    let Some(mut at) = ran
        .iter()
        .copied()
        .reduce(|a, b| if b.end_us > a.end_us { b } else { a })
    else {
        return CriticalPath::default();
    };
    let mut path = CriticalPath::default();
    let mut steps = 0;
    loop {
        path.names.push(at.label());
        path.exec_us += at.exec_us;
        path.data_us += at.data_us;
        steps += 1;
        let Some(&n) = node_of.get(at.name.as_str()) else { break };
        let before = tasks_before(wf, n);
        let scope = wf.graph[n].scope;
        let waits_for = |f: &FunctionRecord| {
            if f.name == at.name && f.element == at.element {
                return f.attempt < at.attempt;
            }
            let Some(&p) = node_of.get(f.name.as_str()) else {
                return false;
            };
            before.contains(&p) && (scope.is_none() || wf.graph[p].scope != scope || f.element == at.element)
        };
        let last = ran
            .iter()
            .copied()
            .filter(|f| waits_for(f) && f.end_us <= at.start_us + SLACK_US)
            .reduce(|a, b| if b.end_us > a.end_us { b } else { a });
        // Each step goes back in time; the bound guards against records that say otherwise.
        match last {
            Some(p) if steps <= ran.len() => at = p,
            _ => break,
        }
    }
    path.names.reverse();
    path
}

/// Adds a `skipped` record for every task of `wf` that has none in `functions` (it never ran
/// on any worker), placed by `worker_of`.
pub fn add_skipped(wf: &Workflow, functions: &mut Vec<FunctionRecord>, worker_of: impl Fn(NodeId) -> String) {
    for n in wf.graph.node_indices() {
        if wf.graph[n].task().is_some() && !functions.iter().any(|f| f.name == wf.graph[n].name) {
            functions.push(FunctionRecord {
                name: wf.graph[n].name.clone(),
                worker: worker_of(n),
                element: None,
                instance: None,
                start_us: 0.0,
                end_us: 0.0,
                exec_us: 0.0,
                data_us: 0.0,
                peak_memory_bytes: None,
                output_bytes: Default::default(),
                attempt: 0,
                skipped: true,
                error: None,
                failure: None,
                chained: false,
            });
        }
    }
}

/// Largest output a report shows as text ([`shown`]).
pub const MAX_TEXT_OUTPUT: u64 = 64 << 10;

/// The size a report gives for an output it does not show whole (`{"bytes": N}`, as [`shown`]
/// makes it), or `None` when `v` is shown whole.
pub fn not_shown(v: &serde_json::Value) -> Option<u64> {
    let o = v.as_object()?;
    (o.len() == 1).then(|| o.get("bytes")?.as_u64()).flatten()
}

/// Whether an output of `len` bytes is small enough for a report to show its bytes as text
/// (whether they are worth reading for [`shown`]).
pub fn shows_bytes(len: u64) -> bool {
    len <= MAX_TEXT_OUTPUT
}

/// How a report shows a workflow output of `len` bytes (one that has no JSON value of its
/// own): as a string when its `bytes` are UTF-8 and it is at most [`MAX_TEXT_OUTPUT`] long,
/// else as `{"bytes": len}` (also when its bytes could not be read: `None`).
pub fn shown(len: u64, bytes: Option<Vec<u8>>) -> serde_json::Value {
    let summary = || serde_json::json!({ "bytes": len });
    if !shows_bytes(len) {
        return summary();
    }
    match bytes.map(String::from_utf8) {
        Some(Ok(s)) => serde_json::Value::String(s),
        _ => summary(),
    }
}

impl CriticalPath {
    /// The scheduling overhead of an invocation that took `e2e_us`, whose entry waited
    /// `result_wait_us` for its result's bytes: what is neither the critical path's execution
    /// nor its data waits.
    pub fn scheduling_overhead_us(&self, e2e_us: f64, result_wait_us: f64) -> f64 {
        (e2e_us - self.exec_us - self.data_us - result_wait_us).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_shows_as_text_only_when_small_and_utf8() {
        assert_eq!(shown(5, Some(b"hello".to_vec())), serde_json::json!("hello"));
        assert_eq!(shown(0, Some(Vec::new())), serde_json::json!(""));
        assert_eq!(shown(2, Some(vec![0xff, 0xfe])), serde_json::json!({"bytes": 2}));
        assert_eq!(shown(3, None), serde_json::json!({"bytes": 3}));
        let big = vec![b'a'; (MAX_TEXT_OUTPUT + 1) as usize];
        assert_eq!(
            shown(MAX_TEXT_OUTPUT + 1, Some(big)),
            serde_json::json!({"bytes": MAX_TEXT_OUTPUT + 1})
        );
        let edge = vec![b'a'; MAX_TEXT_OUTPUT as usize];
        assert!(shown(MAX_TEXT_OUTPUT, Some(edge)).is_string());
        assert!(shows_bytes(MAX_TEXT_OUTPUT) && !shows_bytes(MAX_TEXT_OUTPUT + 1));
    }

    #[test]
    fn the_text_report_shows_failure_kinds_the_lost_worker_and_earlier_runs() {
        let attempt = |n: u32, failure: Option<&str>| FunctionRecord {
            name: "fetch".into(),
            worker: "worker-1".into(),
            element: None,
            instance: Some(1),
            start_us: 0.0,
            end_us: 1000.0,
            exec_us: 900.0,
            data_us: 0.0,
            peak_memory_bytes: None,
            output_bytes: Default::default(),
            attempt: n,
            skipped: false,
            error: failure.map(|_| "its instance exited with status 3".to_owned()),
            failure: failure.map(str::to_owned),
            chained: false,
        };
        let report = Report {
            status: "ok".into(),
            output: serde_json::json!({}),
            error: None,
            invocation: 9,
            e2e_us: 2000.0,
            planner_us: Some(2400.0),
            client_us: Some(3100.0),
            scheduling_overhead_us: 100.0,
            data_overhead_us: 0.0,
            critical_path_us: 1800.0,
            critical_data_us: 100.0,
            critical_path: vec!["fetch".into()],
            functions: vec![
                attempt(1, Some("crash")),
                FunctionRecord {
                    chained: true,
                    ..attempt(2, None)
                },
            ],
            edges: vec![EdgeRecord {
                from: "split".into(),
                to: "fetch".into(),
                bytes: 1024,
                tier: "peer".into(),
                transfer_us: 250.0,
                from_element: None,
                to_element: Some(3),
            }],
            spills: 0,
            lost_worker: None,
            earlier_runs: vec!["worker `worker-2` (127.0.0.1:9) was lost during invocation 8".into()],
        };
        let text = report.to_text();
        assert!(text.contains("1  crash: its instance exited with status 3"), "{text}");
        // A call started on its predecessor's thread says so.
        assert!(text.contains("     0.900  2  chained\n"), "{text}");
        // The three ends of the invocation.
        assert!(
            text.contains("\n  client 3.100 ms ⊇ planner 2.400 ms ⊇ entry daemon 2.000 ms\n"),
            "{text}"
        );
        // Each attempt says its worker, and each edge its tier.
        assert!(
            text.contains("  fetch                        worker-1            1"),
            "{text}"
        );
        assert!(
            text.contains("  split → fetch[3]                         peer                   1024        0.250\n"),
            "{text}"
        );
        assert!(
            text.ends_with("  earlier run 1: worker `worker-2` (127.0.0.1:9) was lost during invocation 8\n"),
            "{text}"
        );
        let lost = Report {
            status: "failed".into(),
            lost_worker: Some("worker-2".into()),
            earlier_runs: Vec::new(),
            ..report
        };
        assert!(lost.to_text().contains("  lost worker: worker-2\n"));
        // The JSON form round-trips, and leaves the new fields out when they are empty.
        let json = serde_json::to_value(&lost).expect("json");
        assert_eq!(json["lost_worker"], "worker-2");
        assert!(json.get("earlier_runs").is_none());
        assert_eq!(serde_json::from_value::<Report>(json).expect("back"), lost);
    }
}
