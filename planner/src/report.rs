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
    /// Start to end, µs.
    pub e2e_us: f64,
    /// `e2e_us` minus the execution time of the critical path (FaaSFlow's definition).
    pub scheduling_overhead_us: f64,
    /// Time spent moving objects: writing inputs into the arena, spilling and reloading.
    pub data_overhead_us: f64,
    /// Execution time of the critical path (functions' own time), µs.
    pub critical_path_us: f64,
    /// Task names on the critical path, first to last.
    pub critical_path: Vec<String>,
    /// Every function attempt, and every task that did not run (`skipped`).
    pub functions: Vec<FunctionRecord>,
    /// Every object read by a function.
    pub edges: Vec<EdgeRecord>,
    /// Objects spilled out of the arena because the workflow's quota was full.
    pub spills: u64,
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
    /// When the daemon triggered it.
    pub start_us: f64,
    /// When the daemon learned that it ended.
    pub end_us: f64,
    /// Time the function itself ran, measured in the instance.
    pub exec_us: f64,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// It did not run: a switch did not take its branch.
    pub skipped: bool,
    /// Why the attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
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
    /// (pushed from another worker over QUIC) or `spill` (reloaded from the spill directory).
    pub tier: String,
    /// Time spent moving it for this consumer, µs (0 when passed by reference).
    pub transfer_us: f64,
}

impl Report {
    /// A human-readable summary.
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
            "  end-to-end {:.3} ms = critical path {:.3} ms + scheduling {:.3} ms; data movement {:.3} ms; {} spill(s)",
            self.e2e_us / 1e3,
            self.critical_path_us / 1e3,
            self.scheduling_overhead_us / 1e3,
            self.data_overhead_us / 1e3,
            self.spills
        );
        if !self.critical_path.is_empty() {
            let _ = writeln!(s, "  critical path: {}", self.critical_path.join(" → "));
        }
        let _ = writeln!(
            s,
            "  {:<28} {:>8} {:>10} {:>10} {:>10}  attempt",
            "function", "instance", "start ms", "end ms", "exec ms"
        );
        for f in &self.functions {
            let name = match f.element {
                Some(e) => format!("{}[{e}]", f.name),
                None => f.name.clone(),
            };
            if f.skipped {
                let _ = writeln!(s, "  {name:<28} {:>8}", "skipped");
                continue;
            }
            let _ = writeln!(
                s,
                "  {name:<28} {:>8} {:>10.3} {:>10.3} {:>10.3}  {}{}",
                f.instance.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
                f.start_us / 1e3,
                f.end_us / 1e3,
                f.exec_us / 1e3,
                f.attempt,
                f.error.as_ref().map(|e| format!("  error: {e}")).unwrap_or_default()
            );
        }
        s
    }
}

/// The execution time of the critical path and its task names: the longest path through the
/// workflow where a task weighs its slowest attempt (a foreach body, its slowest element).
pub fn critical_path(wf: &Workflow, functions: &[FunctionRecord]) -> (f64, Vec<String>) {
    let mut weight: HashMap<&str, f64> = HashMap::new();
    for f in functions.iter().filter(|f| !f.skipped) {
        let w = weight.entry(f.name.as_str()).or_default();
        *w = w.max(f.exec_us);
    }
    let order = wf.topo_order();
    let mut best: HashMap<NodeId, (f64, Option<NodeId>)> = HashMap::new();
    for &n in &order {
        let own = if matches!(wf.graph[n].kind, NodeKind::Task(_)) {
            weight.get(wf.graph[n].name.as_str()).copied().unwrap_or(0.0)
        } else {
            0.0
        };
        let (prev, from) = wf
            .graph
            .neighbors_directed(n, petgraph::Direction::Incoming)
            .map(|p| (best.get(&p).map_or(0.0, |b| b.0), Some(p)))
            .fold((0.0, None), |a, b| if b.0 > a.0 { b } else { a });
        best.insert(n, (prev + own, from));
    }
    let Some((&end, &(total, _))) = best.iter().max_by(|a, b| a.1.0.total_cmp(&b.1.0).then(b.0.cmp(a.0))) else {
        return (0.0, Vec::new());
    };
    let mut names = Vec::new();
    let mut at = Some(end);
    while let Some(n) = at {
        if matches!(wf.graph[n].kind, NodeKind::Task(_)) && weight.contains_key(wf.graph[n].name.as_str()) {
            names.push(wf.graph[n].name.clone());
        }
        at = best.get(&n).and_then(|b| b.1);
    }
    names.reverse();
    (total, names)
}
