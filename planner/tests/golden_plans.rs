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
