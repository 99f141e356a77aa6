//! Golden plans: FaaSFlow's 8 benchmark workflows planned for 3 workers of 64 slots, in both
//! modes. A change to the compiler or the partitioner that moves a function or an edge tier
//! shows up here as a readable diff (regenerate with UPDATE_EXPECT=1 after checking it).

use std::path::Path;

use expect_test::expect_file;
use faasflow_core::{ClusterView, Mode, PlannerConfig};
use faasflow_planner::load::load_file;
use faasflow_planner::partition;
use faasflow_planner::render::{plan_json_string, plan_text};

include!("../../tests/support/benchmarks.rs");

#[test]
fn benchmark_plans_match_their_golden_files() {
    let cluster = ClusterView::uniform(3, 64);
    for (name, rel) in BENCHMARKS {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/faasflow-v1")
            .join(rel);
        let wf = load_file(&path).unwrap().workflow;
        for mode in [Mode::WorkerSp, Mode::MasterSp] {
            let cfg = PlannerConfig {
                mode,
                ..PlannerConfig::default()
            };
            let plan = partition(&wf, &cluster, &cfg).unwrap();
            let text = plan_text(&wf, &plan, &cluster);
            expect_file![format!("golden/plans/{name}.{}.txt", mode.as_str())].assert_eq(&text);
            // The JSON is a pure function of the same inputs.
            let again = partition(&wf, &cluster, &cfg).unwrap();
            assert_eq!(
                plan_json_string(&wf, &plan, &cluster),
                plan_json_string(&wf, &again, &cluster)
            );
        }
    }
}

/// Faastlane's rule in the text plan: which Python functions share an interpreter, and why the
/// others get processes.
#[test]
fn the_plan_says_which_python_functions_share_an_interpreter_and_why() {
    let src = "name: py
functions:
  a: {language: python, handler: 'm:a', outputs: {x: list}}
  b: {language: python, handler: 'm:b'}
  c: {language: python, handler: 'm:c'}
  d: {language: python, handler: 'm:d'}
  e: {language: python, handler: 'm:e', isolation: process}
steps:
  - task: a
  - parallel:
      - task: b
      - task: c
  - foreach:
      over: a.x
      width: 5
      do:
        - task: d
  - task: e
";
    let wf = faasflow_planner::load::load_str_in(src, "py.yaml", "py", Some(Path::new("/srv")))
        .expect("valid")
        .workflow;
    let cluster = faasflow_core::plan::ClusterView::uniform(1, 64);
    let plan = faasflow_planner::partition::partition(&wf, &cluster, &Default::default()).expect("plan");
    let text = faasflow_planner::render::plan_text(&wf, &plan, &cluster);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("python:"))
        .expect("a python line");
    assert!(line.contains("a, b, c, d share a pool of interpreters"), "{line}");
    assert!(line.contains("up to 7 calls at once"), "{line}");
    assert!(line.contains("b: beside c") && line.contains("c: beside b"), "{line}");
    assert!(line.contains("d: ~5 elements of `foreach"), "{line}");
    assert!(!line.contains("d, e"), "isolation: process is not shared: {line}");
    let sharing = faasflow_core::faastlane::python_sharing(&wf, &plan);
    let group = sharing.values().next().expect("one group");
    assert_eq!(group.concurrent.len(), 3, "a runs before everything else: {group:?}");
}
