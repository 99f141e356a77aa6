//! Shared code of faasflow's fuzz targets (see `docs/testing.md`).
//!
//! - [`check_workflow`]: what every accepted workflow file must survive (partitioning in both
//!   modes, every renderer, the wire round trip).
//! - [`check_plan_message`]: what every decoded `faasflow.v1.Plan` must survive.
//! - [`structured`]: a small grammar of WDL files driven by `arbitrary`, so that the fuzzer
//!   spends its time in the compiler and the partitioner rather than in the YAML parser.

use faasflow_planner::load::load_str;
use faasflow_planner::render::{graph_text, plan_dot, plan_json_string, plan_text};
use faasflow_planner::{ClusterView, Mode, PlannerConfig, Workflow, partition, plan_from_proto, plan_to_proto};
use faasflow_proto::v1 as pb;

pub mod structured;

/// The cluster and configuration picked by one selector byte:
/// bits 0–1: 1–4 workers; bits 2–3: 64, 1, 4 or 16 slots each; bit 4: allow overcommit.
pub fn cluster_for(selector: u8) -> (ClusterView, bool) {
    let workers = 1 + usize::from(selector & 3);
    let slots = [64, 1, 4, 16][usize::from((selector >> 2) & 3)];
    (ClusterView::uniform(workers, slots), selector & 16 != 0)
}

/// Loads `text`; when it loads, checks it as [`check_workflow`] does. Returns whether it loaded.
pub fn check_text(text: &str, selector: u8) -> bool {
    match load_str(text, "fuzz.yaml", "fuzz") {
        Ok(loaded) => {
            check_workflow(&loaded.workflow, selector);
            true
        }
        Err(e) => {
            assert!(!e.message.is_empty(), "an error without a message");
            false
        }
    }
}

/// Everything the CLI does with a loaded workflow (`faasflow check`, `faasflow plan` in every
/// format and both modes) must work without panicking; a plan the partitioner made must go
/// over the wire and come back unchanged.
pub fn check_workflow(wf: &Workflow, selector: u8) {
    let _ = graph_text(wf);
    let _ = wf.slots_needed();
    let _ = wf.task_count();
    let (cluster, allow_overcommit) = cluster_for(selector);
    for mode in [Mode::WorkerSp, Mode::MasterSp, Mode::WorkerSpRemote] {
        let cfg = PlannerConfig {
            mode,
            allow_overcommit,
            ..PlannerConfig::default()
        };
        let Ok(plan) = partition(wf, &cluster, &cfg) else {
            continue;
        };
        let _ = plan_text(wf, &plan, &cluster);
        let _ = plan_dot(wf, &plan, &cluster);
        let json = plan_json_string(wf, &plan, &cluster);
        if let Err(e) = serde_json::from_str::<serde_json::Value>(&json) {
            panic!("plan_json_string printed invalid JSON ({e}):\n{json}");
        }
        let message = plan_to_proto(wf, &plan, &cluster);
        if let Err(e) = plan_from_proto(&message) {
            panic!("the partitioner's own plan is rejected by plan_from_proto: {e}");
        }
    }
}

/// A plan from the network: the conversion either rejects it or accepts it whole, in which
/// case encoding the result gives back the same message and every node and edge can be
/// looked up in the plan.
pub fn check_plan_message(p: &pb::Plan) {
    use prost::Message as _;
    let Ok((wf, plan, cluster)) = plan_from_proto(p) else {
        return;
    };
    let again = plan_to_proto(&wf, &plan, &cluster);
    let decoded = pb::Plan::decode(again.encode_to_vec().as_slice()).expect("our own encoding decodes");
    assert_eq!(&decoded, p, "plan_to_proto(plan_from_proto(p)) differs from p");
    for n in wf.graph.node_indices() {
        assert!((plan.worker_of(n) as usize) < cluster.workers.len());
    }
    for e in wf.graph.edge_indices() {
        let _ = plan.tier(e);
    }
}
