//! Renderers: the compiled graph as text (for tests and `faasflow plan --format graph`), and
//! a plan as text, stable JSON (docs/plan-json.md) or Graphviz DOT.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use petgraph::visit::EdgeRef;
use serde::Serialize;

use faasflow_core::dag::{DataSource, NodeId, NodeKind, Workflow};
use faasflow_core::faastlane::{Concurrent, Sharing};
use faasflow_core::plan::{ClusterView, Plan, Tier};

/// `1.3 MB`, `512 B` (decimal units, as FaaSFlow reports data sizes).
pub fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `1 edge`, `3 edges`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `4,000,000`.
pub fn fmt_thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// `176.0 MiB` (binary units, for memory).
pub fn fmt_mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
}

fn source_text(wf: &Workflow, s: &DataSource) -> String {
    match s {
        DataSource::Input(n) => format!("input.{n}"),
        DataSource::Output { node, output } => format!("{}.{output}", wf.graph[*node].name),
        DataSource::Item(n) => format!("{}.item", wf.graph[*n].name),
        DataSource::Index(n) => format!("{}.index", wf.graph[*n].name),
    }
}

/// The compiled graph, one line per node and edge, in index order.
pub fn graph_text(wf: &Workflow) -> String {
    let mut s = String::new();
    let virt = wf.graph.node_weights().filter(|n| n.is_virtual()).count();
    let _ = writeln!(
        s,
        "workflow {} ({}): {}, {}, {}",
        wf.name,
        wf.format.as_str(),
        count(wf.task_count(), "task"),
        count(virt, "virtual node"),
        count(wf.graph.edge_count(), "edge")
    );
    if !wf.inputs.is_empty() {
        let ins: Vec<String> = wf
            .inputs
            .iter()
            .map(|i| format!("{} ({}, {})", i.name, i.kind.as_str(), fmt_bytes(i.size)))
            .collect();
        let _ = writeln!(s, "inputs: {}", ins.join(", "));
    }
    for n in wf.graph.node_indices() {
        let node = &wf.graph[n];
        let scope = node
            .scope
            .map(|f| format!(" in {}", wf.graph[f].name))
            .unwrap_or_default();
        match &node.kind {
            NodeKind::Task(t) => {
                let outs: Vec<String> = t
                    .spec
                    .outputs
                    .iter()
                    .map(|o| format!("{}:{}:{}", o.name, o.kind.as_str(), o.size))
                    .collect();
                let _ = writeln!(
                    s,
                    "  {} = task {}{scope} [runtime {}ms, scale {}, mem {}/{:.0} MiB] -> {}",
                    node.name,
                    t.function,
                    t.spec.runtime_ms,
                    t.spec.scale,
                    t.spec.memory_mib,
                    t.spec.memory_use_mib,
                    if outs.is_empty() {
                        "()".to_owned()
                    } else {
                        outs.join(", ")
                    }
                );
                for i in &t.inputs {
                    let src: Vec<String> = i.sources.iter().map(|x| source_text(wf, x)).collect();
                    let _ = writeln!(s, "      {} <- {}", i.name, src.join(" | "));
                }
            }
            NodeKind::Switch(sw) => {
                let cases: Vec<String> = sw
                    .cases
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("{i}: {}", c.condition))
                    .collect();
                let _ = writeln!(
                    s,
                    "  {} = switch{scope} [{}; {}: default]",
                    node.name,
                    cases.join("; "),
                    sw.cases.len()
                );
            }
            NodeKind::Foreach(f) => {
                let _ = writeln!(
                    s,
                    "  {} = foreach{scope} over {} [max {}, width {}] collect {}",
                    node.name,
                    source_text(wf, &f.over),
                    f.max_concurrency,
                    f.width,
                    wf.graph[f.collect].name
                );
            }
            NodeKind::Join(_) => {
                let _ = writeln!(s, "  {} = {}{scope}", node.name, node.kind.as_str());
            }
        }
    }
    for e in wf.graph.edge_references() {
        let w = e.weight();
        let mut parts = Vec::new();
        if w.control {
            parts.push(match (w.case, w.on_failure) {
                (_, true) => "on failure".to_owned(),
                (Some(c), _) => format!("case {c}"),
                (None, _) => "control".to_owned(),
            });
        }
        for (o, i) in &w.data {
            parts.push(format!("{o}->{i}"));
        }
        let _ = writeln!(
            s,
            "  {} -> {} : {} ({} B)",
            wf.graph[e.source()].name,
            wf.graph[e.target()].name,
            parts.join(", "),
            w.bytes
        );
    }
    for o in &wf.outputs {
        let src: Vec<String> = o.sources.iter().map(|x| source_text(wf, x)).collect();
        let _ = writeln!(s, "output {} <- {}", o.name, src.join(" | "));
    }
    s
}

/// The JSON form of a plan (stable; documented in docs/plan-json.md).
#[derive(Debug, Serialize)]
pub struct PlanJson<'a> {
    /// The workflow's name.
    pub workflow: &'a str,
    /// The plan's version.
    pub version: u64,
    /// `workersp` or `mastersp`.
    pub mode: &'static str,
    /// The form of the source file.
    pub source_format: &'static str,
    /// One entry per worker.
    pub workers: Vec<WorkerJson<'a>>,
    /// One entry per group.
    pub groups: Vec<GroupJson<'a>>,
    /// One entry per edge, in graph order.
    pub edges: Vec<EdgeJson<'a>>,
    /// The critical path.
    pub critical_path: CriticalPathJson<'a>,
    /// Totals.
    pub summary: SummaryJson,
}

/// A worker in [`PlanJson`].
#[derive(Debug, Serialize)]
pub struct WorkerJson<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its slots.
    pub slots: u32,
    /// Slots the plan uses on it.
    pub slots_used: u32,
    /// The workflow's in-memory quota on it, bytes.
    pub quota_bytes: u64,
    /// Bytes the plan keeps in its memory.
    pub memory_bytes: u64,
}

/// A group in [`PlanJson`].
#[derive(Debug, Serialize)]
pub struct GroupJson<'a> {
    /// Its id.
    pub id: u32,
    /// Its worker's name.
    pub worker: &'a str,
    /// Its functions (task names), in graph order.
    pub functions: Vec<&'a str>,
    /// Its virtual control nodes.
    pub virtual_nodes: Vec<VirtualJson<'a>>,
    /// Slots it uses.
    pub slots: u32,
    /// Its quota, bytes.
    pub quota_bytes: u64,
    /// Bytes of edges inside it.
    pub local_bytes: u64,
}

/// A virtual node in [`GroupJson`].
#[derive(Debug, Serialize)]
pub struct VirtualJson<'a> {
    /// Its name.
    pub name: &'a str,
    /// switch, foreach, join, collect, pass or end.
    pub kind: &'static str,
    /// Always true.
    #[serde(rename = "virtual")]
    pub is_virtual: bool,
}

/// An edge in [`PlanJson`].
#[derive(Debug, Serialize)]
pub struct EdgeJson<'a> {
    /// Source node.
    pub from: &'a str,
    /// Target node.
    pub to: &'a str,
    /// Expected bytes.
    pub bytes: u64,
    /// Data tier.
    pub tier: &'static str,
    /// Activates its target.
    pub control: bool,
    /// Switch case, for edges leaving a switch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case: Option<u32>,
    /// A catch edge: its target runs when its source fails for good.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub on_failure: bool,
}

/// The critical path in [`PlanJson`].
#[derive(Debug, Serialize)]
pub struct CriticalPathJson<'a> {
    /// The functions (tasks) on it, first to last.
    pub functions: Vec<&'a str>,
    /// All nodes on it, virtual ones included.
    pub nodes: Vec<&'a str>,
    /// Its cost, ms (rounded to µs).
    pub cost_ms: f64,
}

/// Totals in [`PlanJson`].
#[derive(Debug, Serialize)]
pub struct SummaryJson {
    /// Number of functions (tasks).
    pub functions: usize,
    /// Number of virtual nodes.
    pub virtual_nodes: usize,
    /// Number of edges.
    pub edges: usize,
    /// Merges made by the partitioner.
    pub merges: u32,
    /// Bytes on in-process and shared-memory edges.
    pub bytes_local: u64,
    /// Bytes on edges whose ends are on different workers.
    pub bytes_crossing_workers: u64,
    /// Bytes on remote edges whose ends share a worker: planned spills in WorkerSP; in
    /// MasterSP every edge is remote by design.
    pub bytes_spilled: u64,
    /// Bytes per tier.
    pub bytes_by_tier: BTreeMap<&'static str, u64>,
    /// The plan exceeds some worker's slots (planned with --allow-overcommit).
    pub overcommitted: bool,
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Bytes moved per category: (local, crossing workers, spilled, by tier).
fn byte_totals(wf: &Workflow, plan: &Plan) -> (u64, u64, u64, BTreeMap<&'static str, u64>) {
    let (mut local, mut crossing, mut spilled) = (0u64, 0u64, 0u64);
    let mut by_tier = BTreeMap::new();
    for t in [Tier::InProcess, Tier::SharedMemory, Tier::Peer, Tier::Remote] {
        by_tier.insert(t.as_str(), 0u64);
    }
    for e in wf.graph.edge_references() {
        let b = e.weight().bytes;
        let tier = plan.tier(e.id());
        let t = by_tier.entry(tier.as_str()).or_default();
        *t = u64::saturating_add(*t, b);
        let same_worker = plan.worker_of(e.source()) == plan.worker_of(e.target());
        match tier {
            Tier::InProcess | Tier::SharedMemory => local = local.saturating_add(b),
            _ if !same_worker => crossing = crossing.saturating_add(b),
            _ => spilled = spilled.saturating_add(b),
        }
    }
    (local, crossing, spilled, by_tier)
}

/// Builds the JSON view of a plan.
pub fn plan_json<'a>(wf: &'a Workflow, plan: &Plan, cluster: &'a ClusterView) -> PlanJson<'a> {
    let workers = cluster
        .workers
        .iter()
        .zip(&plan.workers)
        .map(|(w, l)| WorkerJson {
            name: &w.name,
            slots: w.slots,
            slots_used: l.slots_used,
            quota_bytes: l.quota_bytes,
            memory_bytes: l.memory_bytes,
        })
        .collect();
    let groups = plan
        .groups
        .iter()
        .map(|g| GroupJson {
            id: g.id,
            worker: &cluster.workers[g.worker as usize].name,
            functions: g
                .nodes
                .iter()
                .filter(|n| !wf.graph[**n].is_virtual())
                .map(|n| wf.graph[*n].name.as_str())
                .collect(),
            virtual_nodes: g
                .nodes
                .iter()
                .filter(|n| wf.graph[**n].is_virtual())
                .map(|n| VirtualJson {
                    name: &wf.graph[*n].name,
                    kind: wf.graph[*n].kind.as_str(),
                    is_virtual: true,
                })
                .collect(),
            slots: g.slots,
            quota_bytes: g.quota_bytes,
            local_bytes: g.local_bytes,
        })
        .collect();
    let edges = wf
        .graph
        .edge_references()
        .map(|e| EdgeJson {
            from: &wf.graph[e.source()].name,
            to: &wf.graph[e.target()].name,
            bytes: e.weight().bytes,
            tier: plan.tier(e.id()).as_str(),
            control: e.weight().control,
            case: e.weight().case,
            on_failure: e.weight().on_failure,
        })
        .collect();
    let cp = &plan.critical_path;
    let (bytes_local, bytes_crossing_workers, bytes_spilled, bytes_by_tier) = byte_totals(wf, plan);
    PlanJson {
        workflow: &wf.name,
        version: plan.version,
        mode: plan.mode.as_str(),
        source_format: wf.format.as_str(),
        workers,
        groups,
        edges,
        critical_path: CriticalPathJson {
            functions: cp
                .nodes
                .iter()
                .filter(|n| !wf.graph[**n].is_virtual())
                .map(|n| wf.graph[*n].name.as_str())
                .collect(),
            nodes: cp.nodes.iter().map(|n| wf.graph[*n].name.as_str()).collect(),
            cost_ms: round3(cp.cost_ms),
        },
        summary: SummaryJson {
            functions: wf.task_count(),
            virtual_nodes: wf.graph.node_count() - wf.task_count(),
            edges: wf.graph.edge_count(),
            merges: plan.merges,
            bytes_local,
            bytes_crossing_workers,
            bytes_spilled,
            bytes_by_tier,
            overcommitted: plan.overcommitted,
        },
    }
}

/// A plan as pretty JSON (ends with a newline).
pub fn plan_json_string(wf: &Workflow, plan: &Plan, cluster: &ClusterView) -> String {
    let mut s = serde_json::to_string_pretty(&plan_json(wf, plan, cluster)).unwrap_or_default();
    s.push('\n');
    s
}

fn names(wf: &Workflow, nodes: &[NodeId], max: usize) -> String {
    let mut v: Vec<&str> = nodes.iter().take(max).map(|n| wf.graph[*n].name.as_str()).collect();
    if nodes.len() > max {
        v.push("…");
    }
    v.join(", ")
}

/// A plan as text for people.
pub fn plan_text(wf: &Workflow, plan: &Plan, cluster: &ClusterView) -> String {
    let mut s = String::new();
    let virt = wf.graph.node_count() - wf.task_count();
    let _ = writeln!(
        s,
        "plan for `{}` v{} ({}, {}): {}, {}, {}, {}",
        wf.name,
        plan.version,
        plan.mode.as_str(),
        count(cluster.workers.len(), "worker"),
        count(wf.task_count(), "function"),
        count(virt, "virtual node"),
        count(wf.graph.edge_count(), "edge"),
        count(plan.merges as usize, "merge")
    );
    if plan.overcommitted {
        let _ = writeln!(
            s,
            "warning: overcommitted: some worker runs more instances than it has slots"
        );
    }
    let sharing = faasflow_core::faastlane::python_sharing(wf, plan);
    for (wi, (w, load)) in cluster.workers.iter().zip(&plan.workers).enumerate() {
        let _ = writeln!(
            s,
            "\n{}: {}/{} slots, quota {}, {} kept in memory",
            w.name,
            load.slots_used,
            w.slots,
            fmt_mib(load.quota_bytes),
            fmt_bytes(load.memory_bytes)
        );
        for g in plan.groups.iter().filter(|g| g.worker as usize == wi) {
            let tasks: Vec<NodeId> = g.nodes.iter().copied().filter(|n| !wf.graph[*n].is_virtual()).collect();
            let virts: Vec<NodeId> = g.nodes.iter().copied().filter(|n| wf.graph[*n].is_virtual()).collect();
            if tasks.is_empty() && virts.is_empty() {
                continue;
            }
            let mut line = format!("  group {} ({}):", g.id, count(g.slots as usize, "slot"));
            if !tasks.is_empty() {
                let _ = write!(line, " {}", names(wf, &tasks, 12));
            }
            if !virts.is_empty() {
                let _ = write!(line, " [virtual: {}]", names(wf, &virts, 6));
            }
            let _ = writeln!(s, "{line}");
            if let Some(py) = sharing.get(&g.id) {
                let _ = writeln!(s, "    {}", python_line(wf, py));
            }
        }
    }
    let cp = &plan.critical_path;
    let path: Vec<&str> = cp.nodes.iter().map(|n| wf.graph[*n].name.as_str()).collect();
    let shown = if path.len() > 16 {
        format!("{} → … → {}", path[..8].join(" → "), path[path.len() - 4..].join(" → "))
    } else {
        path.join(" → ")
    };
    let _ = writeln!(
        s,
        "\ncritical path ({:.1} ms, {} nodes): {shown}",
        cp.cost_ms,
        path.len()
    );
    let (local, crossing, spilled, _) = byte_totals(wf, plan);
    let _ = writeln!(s, "\nedges by tier:");
    for t in [Tier::InProcess, Tier::SharedMemory, Tier::Peer, Tier::Remote] {
        let (n, b) = wf
            .graph
            .edge_references()
            .filter(|e| plan.tier(e.id()) == t)
            .fold((0, 0u64), |(n, b), e| (n + 1, b.saturating_add(e.weight().bytes)));
        let _ = writeln!(s, "  {:<14} {n:>6} edges  {:>10}", t.as_str(), fmt_bytes(b));
    }
    let _ = writeln!(
        s,
        "data per invocation: {} kept on one worker, {} crossing workers, {} {} remote storage",
        fmt_bytes(local),
        fmt_bytes(crossing),
        fmt_bytes(spilled),
        // Only WorkerSP chooses remote storage for what does not fit its quota.
        if plan.mode == faasflow_core::plan::Mode::WorkerSp {
            "spilled to"
        } else {
            "through"
        }
    );
    let mut cut: Vec<_> = wf
        .graph
        .edge_references()
        .filter(|e| plan.worker_of(e.source()) != plan.worker_of(e.target()))
        .collect();
    cut.sort_by_key(|e| (std::cmp::Reverse(e.weight().bytes), e.id().index()));
    if !cut.is_empty() {
        let _ = writeln!(s, "largest edges crossing workers:");
        for e in cut.iter().take(10) {
            let _ = writeln!(
                s,
                "  {} → {}  {} ({})",
                wf.graph[e.source()].name,
                wf.graph[e.target()].name,
                fmt_bytes(e.weight().bytes),
                plan.tier(e.id()).as_str()
            );
        }
        if cut.len() > 10 {
            let _ = writeln!(s, "  … and {} more", cut.len() - 10);
        }
    }
    s
}

fn dot_id(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// How a group's Python functions share interpreters (Faastlane's rule), for the text plan.
fn python_line(wf: &Workflow, py: &Sharing) -> String {
    let all = names(wf, &py.tasks, 12);
    let one = py.tasks.len() == 1;
    if py.concurrent.is_empty() {
        return if one {
            format!("python: {all} runs in one interpreter (nothing here runs at once)")
        } else {
            format!(
                "python: {all} share one interpreter (they run one after another: one call at a time, objects handed over in place)"
            )
        };
    }
    let whys: Vec<String> = py
        .concurrent
        .iter()
        .take(6)
        .map(|(n, why)| {
            let name = &wf.graph[*n].name;
            match why {
                Concurrent::Foreach { foreach, width } => {
                    format!("{name}: ~{width} elements of `{}` at once", wf.graph[*foreach].name)
                }
                Concurrent::Parallel { other } => format!("{name}: beside {}", wf.graph[*other].name),
            }
        })
        .collect();
    let more = if py.concurrent.len() > 6 { ", …" } else { "" };
    format!(
        "python: {all} {} a pool of interpreters, one call each at a time; up to {} calls at once go to \
         processes of their own, at most the worker's cores (the GIL would serialise them as threads: {}{more})",
        if one { "runs in" } else { "share" },
        py.at_once,
        whys.join("; ")
    )
}

/// A plan as Graphviz DOT, clustered by worker and group.
pub fn plan_dot(wf: &Workflow, plan: &Plan, cluster: &ClusterView) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "digraph {} {{", dot_id(&wf.name));
    let _ = writeln!(s, "  rankdir=LR; compound=true; fontname=\"Helvetica\";");
    let _ = writeln!(
        s,
        "  node [shape=box, style=rounded, fontname=\"Helvetica\"]; edge [fontname=\"Helvetica\", fontsize=9];"
    );
    let on_cp: std::collections::BTreeSet<(usize, usize)> = plan
        .critical_path
        .nodes
        .windows(2)
        .map(|w| (w[0].index(), w[1].index()))
        .collect();
    for (wi, (w, load)) in cluster.workers.iter().zip(&plan.workers).enumerate() {
        let _ = writeln!(s, "  subgraph cluster_w{wi} {{");
        let _ = writeln!(
            s,
            "    label={}; style=filled; fillcolor=\"#f4f4f4\";",
            dot_id(&format!("{} ({}/{} slots)", w.name, load.slots_used, w.slots))
        );
        for g in plan.groups.iter().filter(|g| g.worker as usize == wi) {
            let _ = writeln!(s, "    subgraph cluster_g{} {{", g.id);
            let _ = writeln!(s, "      label=\"group {}\"; style=dashed; fillcolor=white;", g.id);
            for n in &g.nodes {
                let node = &wf.graph[*n];
                let shape = match node.kind {
                    NodeKind::Task(_) => "box",
                    NodeKind::Switch(_) => "diamond",
                    NodeKind::Foreach(_) => "invtrapezium",
                    NodeKind::Join(_) => "circle",
                };
                let label = if node.is_virtual() {
                    format!("{}\\n({})", node.name, node.kind.as_str())
                } else {
                    node.name.clone()
                };
                let _ = writeln!(
                    s,
                    "      {} [shape={shape}, label=\"{}\"];",
                    dot_id(&node.name),
                    label.replace('"', "\\\"")
                );
            }
            let _ = writeln!(s, "    }}");
        }
        let _ = writeln!(s, "  }}");
    }
    for e in wf.graph.edge_references() {
        let tier = plan.tier(e.id());
        let color = match tier {
            Tier::InProcess => "forestgreen",
            Tier::SharedMemory => "royalblue",
            Tier::Peer => "darkorange",
            Tier::Remote => "firebrick",
        };
        let mut label = if e.weight().bytes > 0 {
            format!("{} {}", fmt_bytes(e.weight().bytes), tier.as_str())
        } else {
            String::new()
        };
        if let Some(c) = e.weight().case {
            label = format!("case {c} {label}");
        }
        if e.weight().on_failure {
            label = format!("on failure {label}");
        }
        let bold = if on_cp.contains(&(e.source().index(), e.target().index())) {
            ", penwidth=2.5"
        } else {
            ""
        };
        let style = if e.weight().control { "" } else { ", style=dashed" };
        let _ = writeln!(
            s,
            "  {} -> {} [color={color}, label={}{bold}{style}];",
            dot_id(&wf.graph[e.source()].name),
            dot_id(&wf.graph[e.target()].name),
            dot_id(label.trim())
        );
    }
    let _ = writeln!(s, "}}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_set_apart() {
        assert_eq!(fmt_thousands(0), "0");
        assert_eq!(fmt_thousands(999), "999");
        assert_eq!(fmt_thousands(1_000), "1,000");
        assert_eq!(fmt_thousands(70_000), "70,000");
        assert_eq!(fmt_thousands(4_000_000), "4,000,000");
    }
}
