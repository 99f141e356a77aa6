//! FaaSFlow v1.1's own files load, and compile to the graphs their authors meant.

use std::path::{Path, PathBuf};

use expect_test::expect_file;
use faasflow_core::{Workflow, graph};
use faasflow_planner::load::load_file;
use faasflow_planner::render::graph_text;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/faasflow-v1")
        .join(rel)
}

fn load(rel: &str) -> Workflow {
    load_file(&fixture(rel)).unwrap_or_else(|e| panic!("{e}")).workflow
}

/// Tasks per level, where a task's level is the longest chain of tasks before it.
fn level_widths(wf: &Workflow) -> Vec<usize> {
    let order = graph::topo_order(&wf.graph).unwrap();
    let mut level = vec![0usize; wf.graph.node_count()];
    for n in order {
        let own = usize::from(!wf.graph[n].is_virtual());
        let base = wf
            .graph
            .neighbors_directed(n, petgraph::Direction::Incoming)
            .map(|p| level[p.index()])
            .max()
            .unwrap_or(0);
        level[n.index()] = base + own;
    }
    let depth = level.iter().copied().max().unwrap_or(0);
    let mut widths = vec![0; depth];
    for n in wf.graph.node_indices().filter(|n| !wf.graph[*n].is_virtual()) {
        widths[level[n.index()] - 1] += 1;
    }
    widths
}

#[test]
fn scientific_workflows_have_their_published_shapes() {
    // benchmarks.md: functions / edges / level widths.
    for (dir, tasks, edges, widths) in [
        ("cycles", 46, 52, vec![10, 20, 12, 4]),
        ("epigenomics", 45, 50, vec![3, 9, 9, 9, 9, 3, 1, 1, 1]),
        ("genome", 50, 74, vec![20, 2, 28]),
        ("soykb", 45, 77, vec![2, 2, 2, 2, 2, 2, 18, 10, 1, 2, 2]),
    ] {
        let wf = load(&format!("benchmark/generator/{dir}/flat_workflow.yaml"));
        assert_eq!(wf.name, dir);
        assert_eq!(wf.task_count(), tasks, "{dir} tasks");
        assert_eq!(wf.graph.edge_count(), edges, "{dir} edges");
        assert_eq!(level_widths(&wf), widths, "{dir} level widths");
        // Every edge carries the file its consumer reads, matched by name.
        assert!(
            wf.graph
                .edge_weights()
                .all(|e| e.control && !e.data.is_empty() && e.bytes > 0),
            "{dir}"
        );
    }
}

#[test]
fn cycles_moves_about_1_2_gb_per_run() {
    let wf = load("benchmark/generator/cycles/flat_workflow.yaml");
    let total: u64 = wf.graph.edge_weights().map(|e| e.bytes).sum();
    assert!((1_000_000_000..1_500_000_000).contains(&total), "{total}");
}

#[test]
fn applications_and_examples_compile_to_expected_graphs() {
    for rel in [
        "benchmark/video/flat_workflow.yaml",
        "benchmark/illgal_recognizer/flat_workflow.yaml",
        "benchmark/fileprocessing/flat_workflow.yaml",
        "benchmark/wordcount/flat_workflow.yaml",
        "examples/switch/flat_workflow.yaml",
        "examples/switch/workflow.yaml",
        "examples/switch/workflow2.yaml",
        "examples/parallel/flat_workflow.yaml",
        "examples/parallel/workflow.yaml",
        "examples/parallel/workflow2.yaml",
        "examples/parallel2/flat_workflow.yaml",
        "examples/parallel2/workflow.yaml",
        "examples/foreach/flat_workflow.yaml",
        "examples/foreach/workflow.yaml",
    ] {
        let wf = load(rel);
        let name = rel
            .trim_start_matches("benchmark/")
            .trim_start_matches("examples/")
            .replace('/', "_")
            .replace(".yaml", ".txt");
        expect_file![format!("golden/graphs/{name}")].assert_eq(&graph_text(&wf));
    }
}

#[test]
fn recognizer_mosaic_joins_both_switches() {
    // FaaSFlow v1 never ran `mosaic`: it waits for both switches. Here it is activated by
    // either switch's first case, and skipped only when both skip it.
    let wf = load("benchmark/illgal_recognizer/flat_workflow.yaml");
    let mosaic = wf.node_by_name("mosaic").unwrap();
    let mut cases: Vec<(String, Option<u32>)> = wf
        .graph
        .edges_directed(mosaic, petgraph::Direction::Incoming)
        .map(|e| {
            (
                wf.graph[petgraph::visit::EdgeRef::source(&e)].name.clone(),
                e.weight().case,
            )
        })
        .collect();
    cases.sort();
    assert_eq!(cases, vec![("virtual1".into(), Some(0)), ("virtual2".into(), Some(0))]);
}

#[test]
fn flat_and_hierarchical_forms_agree() {
    // The same workflow in both of FaaSFlow's forms gives the same graph (virtual nodes are
    // named differently: `virtual3` in one, the parallel's name in the other).
    for (a, b) in [
        (
            "examples/parallel/flat_workflow.yaml",
            "examples/parallel/workflow.yaml",
        ),
        (
            "examples/parallel2/flat_workflow.yaml",
            "examples/parallel2/workflow.yaml",
        ),
    ] {
        let (a, b) = (load(a), load(b));
        let names = |wf: &Workflow| {
            let mut v: Vec<(String, String)> = wf
                .graph
                .edge_indices()
                .map(|e| {
                    let (s, t) = wf.graph.edge_endpoints(e).unwrap();
                    let name = |n: faasflow_core::NodeId| {
                        if wf.graph[n].is_virtual() {
                            "(join)".to_owned()
                        } else {
                            wf.graph[n].name.clone()
                        }
                    };
                    (name(s), name(t))
                })
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(&a), names(&b));
    }
}

/// Names of the tasks that run when the switches named in `choices` take those cases.
fn running(wf: &Workflow, choices: &[(&str, u32)]) -> Vec<String> {
    let choices = choices.iter().map(|(n, c)| (wf.node_by_name(n).unwrap(), *c)).collect();
    let ran = wf.runs(&choices);
    wf.graph
        .node_indices()
        .filter(|n| ran[n.index()] && !wf.graph[*n].is_virtual())
        .map(|n| wf.graph[n].name.clone())
        .collect()
}

#[test]
fn skips_propagate_and_joins_after_a_switch_run() {
    let wf = load("benchmark/illgal_recognizer/flat_workflow.yaml");
    // Illegal at the first check: mosaic runs, the text path is skipped.
    assert_eq!(
        running(&wf, &[("virtual1", 0)]),
        ["upload", "adult", "violence", "mosaic"]
    );
    // Legal image, illegal words: the text path runs, then mosaic.
    assert_eq!(
        running(&wf, &[("virtual1", 1), ("virtual2", 0)]),
        [
            "upload",
            "adult",
            "violence",
            "mosaic",
            "extract",
            "translate",
            "word_censor"
        ]
    );
    // Legal throughout: mosaic is skipped by both switches.
    assert_eq!(
        running(&wf, &[("virtual1", 1), ("virtual2", 1)]),
        ["upload", "adult", "violence", "extract", "translate", "word_censor"]
    );

    let video = load("benchmark/video/flat_workflow.yaml");
    assert_eq!(
        running(&video, &[("virtual1", 0)]),
        ["upload", "split", "transcode", "merge"]
    );
    assert_eq!(running(&video, &[("virtual1", 1)]), ["upload", "simple_process"]);
}

#[test]
fn a_step_after_a_switch_runs_whichever_branch_ran() {
    let doc = include_str!("../../docs/wdl.md");
    let src = doc
        .split("```yaml\n")
        .find(|b| b.starts_with("name: recognizer"))
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let wf = faasflow_planner::load::load_str(src, "recognizer.yaml", "r")
        .unwrap()
        .workflow;
    let outer = wf
        .graph
        .node_indices()
        .find(|&n| wf.graph[n].name.starts_with("switch@") && wf.graph[n].scope.is_none())
        .unwrap();
    let outer = wf.graph[outer].name.clone();
    for case in [0, 1] {
        let runs = running(&wf, &[(&outer, case)]);
        assert!(runs.contains(&"publish".to_owned()), "case {case}: {runs:?}");
        assert_eq!(runs.contains(&"mosaic".to_owned()), case == 0);
        assert_eq!(runs.contains(&"extract".to_owned()), case == 1);
    }
}
