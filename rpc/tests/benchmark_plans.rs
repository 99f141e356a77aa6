//! FaaSFlow's 8 benchmark workflows, planned in both modes, survive the trip to a daemon: what
//! the daemon decodes is the same workflow and the same plan.

use std::path::Path;

use faasflow_core::{ClusterView, Mode, PlannerConfig};
use faasflow_planner::load::load_file;
use faasflow_planner::partition;
use faasflow_planner::render::{graph_text, plan_json_string};
use faasflow_rpc::{plan_from_proto, plan_to_proto};
use prost::Message;

include!("../../tests/support/benchmarks.rs");

#[test]
fn benchmark_plans_survive_the_wire() {
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
            let bytes = plan_to_proto(&wf, &plan, &cluster).encode_to_vec();
            let decoded = faasflow_proto::v1::Plan::decode(bytes.as_slice()).unwrap();
            let (wf2, plan2, cluster2) = plan_from_proto(&decoded).unwrap();
            assert_eq!(graph_text(&wf2), graph_text(&wf), "{name}");
            assert_eq!(
                plan_json_string(&wf2, &plan2, &cluster2),
                plan_json_string(&wf, &plan, &cluster),
                "{name}"
            );
        }
    }
}
