//! Random task-only workflows for property tests and planning benchmarks, and their FaaSFlow
//! v1.1 flat form.
//!
//! [`random_workflow`] is a pure function of its seed and parameters: it draws from its own
//! splitmix64 generator, so the same seed gives the same workflow on every machine and every
//! build.

use std::fmt::Write as _;
use std::ops::RangeInclusive;

use petgraph::Direction;
use petgraph::visit::EdgeRef;

use crate::error::Pos;
use faasflow_core::NodeId;
use faasflow_core::dag::{
    DataSource, Edge, FunctionSpec, InputBinding, Isolation, Node, NodeKind, OutputDecl, Retry, SourceFormat, Task,
    ValueKind, Workflow,
};

/// Most tasks a [`random_workflow`] with [`GenParams::default`]'s shape may have for its
/// [`to_flat_yaml`] text to load: a task takes about 435 bytes and 54 YAML values (about two
/// edges each), so 70,000 tasks make about 30.4 MB of the 32 MiB of
/// [`MAX_FILE_BYTES`](crate::load::MAX_FILE_BYTES) and 3.75 million of the 4 million
/// [`MAX_VALUES`](crate::yaml::MAX_VALUES), whatever the seed
/// (`the_largest_generated_workflow_loads`).
pub const MAX_GENERATED_TASKS: usize = 70_000;

/// The shape and weights of a random workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct GenParams {
    /// Number of tasks.
    pub tasks: usize,
    /// Average number of predecessors (and so of successors) of a task outside the first layer.
    pub fan_out: f64,
    /// Most tasks in one layer (at least 1).
    pub max_width: usize,
    /// Runtime of a task, whole ms.
    pub runtime_ms: RangeInclusive<u64>,
    /// Size of a task's output, bytes.
    pub output_bytes: RangeInclusive<u64>,
    /// Container slots of a task.
    pub scale: RangeInclusive<u32>,
    /// Memory given to a task's instance, MiB.
    pub memory_mib: RangeInclusive<u64>,
    /// Peak memory a task's instance uses, MiB.
    pub memory_use_mib: RangeInclusive<u64>,
}

impl Default for GenParams {
    /// 50 tasks, about 2 edges per task, layers up to 8 wide, 10 ms–1 s, 1 KiB–4 MiB outputs,
    /// scale 1–3, 256 MiB of which 64 MiB are used.
    fn default() -> Self {
        GenParams {
            tasks: 50,
            fan_out: 2.0,
            max_width: 8,
            runtime_ms: 10..=1_000,
            output_bytes: 1_024..=4 << 20,
            scale: 1..=3,
            memory_mib: 256..=256,
            memory_use_mib: 64..=64,
        }
    }
}

/// A random layered DAG of tasks named `f0000`, `f0001`, … in topological order.
///
/// Tasks are dealt into layers of 1 to `max_width` tasks. Every task after the first layer
/// reads from at least one task of the layer just before it and from a few more tasks of
/// earlier layers, about `fan_out` predecessors on average; every task before the last layer
/// feeds at least one task of the next layer, so only the last layer ends the workflow. Each task has one output `out` of
/// random size; an edge carries it to the input `in_<producer>` of the consumer.
pub fn random_workflow(seed: u64, params: &GenParams) -> Workflow {
    let mut rng = SplitMix64(seed);
    let mut wf = Workflow::new(format!("random-{seed}"), SourceFormat::FaasflowFlat);

    let mut layers: Vec<std::ops::Range<usize>> = Vec::new();
    let mut next = 0;
    while next < params.tasks {
        let width = rng.in_range(1..=params.max_width.max(1) as u64) as usize;
        let end = (next + width).min(params.tasks);
        layers.push(next..end);
        next = end;
    }

    let names: Vec<String> = (0..params.tasks).map(|i| format!("f{i:04}")).collect();
    let sizes: Vec<u64> = (0..params.tasks)
        .map(|_| rng.in_range(params.output_bytes.clone()))
        .collect();
    let mut preds_of: Vec<Vec<usize>> = vec![Vec::new(); params.tasks];
    let mut has_succ = vec![false; params.tasks];
    // Extra predecessors beyond the first: 0 ..= 2·(fan_out − 1), so fan_out on average.
    let extra_max = (2.0 * (params.fan_out - 1.0)).round().max(0.0) as u64;
    for l in 1..layers.len() {
        let prev = layers[l - 1].clone();
        let earlier = layers[0].start..layers[l].start;
        for v in layers[l].clone() {
            let lonely: Vec<usize> = prev.clone().filter(|&u| !has_succ[u]).collect();
            let first = if lonely.is_empty() {
                rng.in_range(prev.start as u64..=prev.end as u64 - 1) as usize
            } else {
                lonely[rng.in_range(0..=lonely.len() as u64 - 1) as usize]
            };
            let mut preds = vec![first];
            let extra = rng.in_range(0..=extra_max);
            for _ in 0..extra {
                // Half from the layer just before, half from any earlier layer.
                let from = if rng.next_u64() & 1 == 0 {
                    prev.clone()
                } else {
                    earlier.clone()
                };
                let u = rng.in_range(from.start as u64..=from.end as u64 - 1) as usize;
                if !preds.contains(&u) {
                    preds.push(u);
                }
            }
            for &u in &preds {
                has_succ[u] = true;
            }
            preds_of[v] = preds;
        }
        // Whatever the layer left without a successor feeds a random task of it.
        for u in prev {
            if has_succ[u] {
                continue;
            }
            let v = rng.in_range(layers[l].start as u64..=layers[l].end as u64 - 1) as usize;
            preds_of[v].push(u);
            has_succ[u] = true;
        }
    }
    for preds in &mut preds_of {
        preds.sort_unstable();
    }

    for v in 0..params.tasks {
        let memory_mib = rng.in_range(params.memory_mib.clone());
        let memory_use_mib = rng.in_range(params.memory_use_mib.clone());
        let spec = FunctionSpec {
            pack: None,
            image: None,
            memory_mib,
            cpu_millis: 1_000,
            timeout_ms: 60_000,
            retry: Retry::default(),
            isolation: Isolation::Thread,
            network: false,
            idempotent: false,
            python: None,
            scale: rng.in_range(u64::from(*params.scale.start())..=u64::from(*params.scale.end())) as u32,
            runtime_ms: rng.in_range(params.runtime_ms.clone()) as f64,
            memory_use_mib: memory_use_mib as f64,
            outputs: vec![OutputDecl {
                name: "out".to_owned(),
                kind: ValueKind::Bytes,
                size: sizes[v],
            }],
        };
        let inputs = preds_of[v]
            .iter()
            .map(|&u| InputBinding {
                name: format!("in_{}", names[u]),
                sources: vec![DataSource::Output {
                    node: NodeId::new(u),
                    output: "out".to_owned(),
                }],
            })
            .collect();
        wf.graph.add_node(Node {
            name: names[v].clone(),
            pos: Pos::UNKNOWN,
            kind: NodeKind::Task(Task {
                function: names[v].clone(),
                spec,
                inputs,
            }),
            scope: None,
        });
    }
    for (v, preds) in preds_of.iter().enumerate() {
        for &u in preds {
            wf.graph.add_edge(
                NodeId::new(u),
                NodeId::new(v),
                Edge {
                    control: true,
                    case: None,
                    data: vec![("out".to_owned(), format!("in_{}", names[u]))],
                    bytes: sizes[u],
                    on_failure: false,
                },
            );
        }
    }
    wf
}

/// The FaaSFlow v1.1 `flat_workflow.yaml` text of a task-only workflow such as
/// [`random_workflow`] makes: a top-level `functions:` list where each function names its
/// inputs (`in_<producer>`, passed from the producer's `out`), its one output `out` and its
/// successors. Virtual nodes are left out; a task without an `out` output is written with size 0.
pub fn to_flat_yaml(wf: &Workflow) -> String {
    let g = &wf.graph;
    let mut out = String::from("functions:\n");
    for v in g.node_indices() {
        let Some(task) = g[v].task() else { continue };
        let name = &g[v].name;
        let spec = &task.spec;
        let mem_usage = if spec.memory_mib == 0 {
            0.0
        } else {
            spec.memory_use_mib / spec.memory_mib as f64
        };
        let size = spec.output("out").map_or(0, |o| o.size);
        // Writing to a String cannot fail.
        let _ = writeln!(out, "- name: {name}");
        let _ = writeln!(out, "  source: {name}");
        let _ = writeln!(out, "  runtime: {}", spec.runtime_ms / 1000.0);
        let _ = writeln!(out, "  scale: {}", spec.scale);
        let _ = writeln!(out, "  mem_usage: {mem_usage}");
        let mut preds: Vec<_> = g.edges_directed(v, Direction::Incoming).collect();
        preds.sort_by_key(EdgeRef::id);
        if preds.is_empty() {
            out.push_str("  input: {}\n");
        } else {
            out.push_str("  input:\n");
            for e in preds {
                let producer = &g[e.source()].name;
                let _ = writeln!(out, "    in_{producer}:");
                out.push_str("      type: pass\n");
                out.push_str("      value:\n");
                let _ = writeln!(out, "        function: {producer}");
                out.push_str("        parameter: out\n");
                let _ = writeln!(out, "      size: {}", e.weight().bytes);
            }
        }
        out.push_str("  output:\n    out:\n      type: normal\n");
        let _ = writeln!(out, "      size: {size}");
        out.push_str("  next:\n    type: pass\n");
        let mut succs: Vec<_> = g.edges_directed(v, Direction::Outgoing).collect();
        succs.sort_by_key(EdgeRef::id);
        if succs.is_empty() {
            out.push_str("    nodes: []\n");
        } else {
            out.push_str("    nodes:\n");
            for e in succs {
                let _ = writeln!(out, "    - {}", g[e.target()].name);
            }
        }
    }
    out
}

/// splitmix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough for test data.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `range` (an empty range gives its start). Multiply-shift, so the bias is at
    /// most `len / 2^64`.
    fn in_range(&mut self, range: RangeInclusive<u64>) -> u64 {
        let (lo, hi) = (*range.start(), *range.end());
        if hi <= lo {
            return lo;
        }
        let span = hi - lo;
        if span == u64::MAX {
            return self.next_u64();
        }
        lo + ((u128::from(self.next_u64()) * u128::from(span + 1)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn small() -> GenParams {
        GenParams {
            tasks: 5,
            max_width: 2,
            ..GenParams::default()
        }
    }

    #[test]
    fn same_seed_same_workflow() {
        let p = GenParams {
            tasks: 120,
            ..GenParams::default()
        };
        assert_eq!(
            to_flat_yaml(&random_workflow(7, &p)),
            to_flat_yaml(&random_workflow(7, &p))
        );
        assert_ne!(
            to_flat_yaml(&random_workflow(7, &p)),
            to_flat_yaml(&random_workflow(8, &p))
        );
    }

    #[test]
    fn layered_and_about_fan_out_edges_per_task() {
        let p = GenParams {
            tasks: 2_000,
            ..GenParams::default()
        };
        let wf = random_workflow(1, &p);
        assert_eq!(wf.graph.node_count(), 2_000);
        assert_eq!(wf.topo_order().len(), 2_000, "acyclic");
        for e in wf.graph.edge_indices() {
            let (u, v) = wf.graph.edge_endpoints(e).unwrap();
            assert!(u < v, "edges go forward in index order");
            let edge = &wf.graph[e];
            let out = wf.graph[u].task().unwrap().spec.output("out").unwrap().size;
            assert!(edge.control);
            assert_eq!(edge.bytes, out);
            assert_eq!(edge.data, vec![("out".to_owned(), format!("in_{}", wf.graph[u].name))]);
        }
        let per_task = wf.graph.edge_count() as f64 / wf.graph.node_count() as f64;
        assert!((1.5..2.5).contains(&per_task), "{per_task} edges per task");
        // Only the last layer has no successor.
        let sinks = wf
            .graph
            .node_indices()
            .filter(|&v| wf.graph.neighbors_directed(v, Direction::Outgoing).count() == 0)
            .count();
        assert!(sinks <= p.max_width, "{sinks} sinks");
    }

    #[test]
    fn ranges_are_respected() {
        let p = GenParams {
            tasks: 300,
            runtime_ms: 5..=6,
            output_bytes: 10..=20,
            scale: 2..=2,
            memory_mib: 128..=512,
            memory_use_mib: 32..=32,
            ..GenParams::default()
        };
        for n in random_workflow(3, &p).graph.node_weights() {
            let s = &n.task().unwrap().spec;
            assert!((5.0..=6.0).contains(&s.runtime_ms));
            assert!((10..=20).contains(&s.outputs[0].size));
            assert_eq!(s.scale, 2);
            assert!((128..=512).contains(&s.memory_mib));
            assert_eq!(s.memory_use_mib, 32.0);
        }
    }

    #[test]
    fn flat_yaml_of_a_small_workflow() {
        expect![[r#"
            functions:
            - name: f0000
              source: f0000
              runtime: 0.112
              scale: 1
              mem_usage: 0.25
              input: {}
              output:
                out:
                  type: normal
                  size: 160495
              next:
                type: pass
                nodes:
                - f0002
            - name: f0001
              source: f0001
              runtime: 0.102
              scale: 2
              mem_usage: 0.25
              input: {}
              output:
                out:
                  type: normal
                  size: 3641748
              next:
                type: pass
                nodes:
                - f0002
            - name: f0002
              source: f0002
              runtime: 0.958
              scale: 3
              mem_usage: 0.25
              input:
                in_f0000:
                  type: pass
                  value:
                    function: f0000
                    parameter: out
                  size: 160495
                in_f0001:
                  type: pass
                  value:
                    function: f0001
                    parameter: out
                  size: 3641748
              output:
                out:
                  type: normal
                  size: 916858
              next:
                type: pass
                nodes:
                - f0003
            - name: f0003
              source: f0003
              runtime: 0.604
              scale: 1
              mem_usage: 0.25
              input:
                in_f0002:
                  type: pass
                  value:
                    function: f0002
                    parameter: out
                  size: 916858
              output:
                out:
                  type: normal
                  size: 3358298
              next:
                type: pass
                nodes:
                - f0004
            - name: f0004
              source: f0004
              runtime: 0.083
              scale: 2
              mem_usage: 0.25
              input:
                in_f0003:
                  type: pass
                  value:
                    function: f0003
                    parameter: out
                  size: 3358298
              output:
                out:
                  type: normal
                  size: 1426450
              next:
                type: pass
                nodes: []
        "#]]
        .assert_eq(&to_flat_yaml(&random_workflow(42, &small())));
    }

    /// Takes about 15 s in a debug build.
    #[test]
    fn the_largest_generated_workflow_loads() {
        let p = GenParams {
            tasks: MAX_GENERATED_TASKS,
            ..GenParams::default()
        };
        let text = to_flat_yaml(&random_workflow(1, &p));
        // A margin for other seeds (they differ by a fraction of a percent).
        assert!(
            text.len() < crate::load::MAX_FILE_BYTES / 100 * 95,
            "{} bytes",
            text.len()
        );
        let loaded = crate::load::load_str(&text, "generated.yaml", "generated").expect("it loads");
        assert_eq!(loaded.workflow.task_count(), MAX_GENERATED_TASKS);
    }

    #[test]
    fn flat_yaml_is_well_formed_yaml() {
        let text = to_flat_yaml(&random_workflow(
            9,
            &GenParams {
                tasks: 40,
                ..GenParams::default()
            },
        ));
        let mut parser = saphyr_parser::Parser::new_from_str(&text);
        let mut events = 0;
        for event in &mut parser {
            event.expect("well-formed YAML");
            events += 1;
        }
        assert!(events > 40);
    }
}
