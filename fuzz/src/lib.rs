//! Shared code of faasflow's fuzz targets (see `docs/testing.md`).
//!
//! - [`check_workflow`]: what every accepted workflow file must survive (partitioning in both
//!   modes, every renderer, the wire round trip).
//! - [`check_faasflow_text`]: FaaSFlow's two file forms, each importer forced on every input.
//! - [`check_plan_message`]: what every decoded `faasflow.v1.Plan` must survive.
//! - [`check_peer_bytes`]: what the daemons' peer codec must do with any bytes.
//! - [`structured`]: a small grammar of WDL files driven by `arbitrary`, so that the fuzzer
//!   spends its time in the compiler and the partitioner rather than in the YAML parser.

use faasflow_daemon::io::message::{
    ControlMessage, DecodeError, FRAME_PREFIX, OBJECT_HEADER_LEN, ObjectHeader, frame_len,
};
use faasflow_planner::import::{Imported, flat, hier};
use faasflow_planner::load::load_str;
use faasflow_planner::render::{graph_text, plan_dot, plan_json_string, plan_text};
use faasflow_core::{ClusterView, Mode, PlannerConfig, Workflow};
use faasflow_planner::partition;
use faasflow_rpc::{plan_from_proto, plan_to_proto};
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

/// Which of FaaSFlow's importers accepted a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaasflowImport {
    /// The flat form's importer (`flat_workflow.yaml`).
    pub flat: bool,
    /// The hierarchical form's importer (`workflow.yaml`).
    pub hierarchical: bool,
}

/// Parses `text` as YAML and gives the document to both of FaaSFlow's importers, whatever
/// form `load::detect` would recognise: each must reject it with an error message or import
/// it, and what it imports is checked as [`check_workflow`] does.
pub fn check_faasflow_text(text: &str, selector: u8) -> FaasflowImport {
    let Ok(root) = faasflow_planner::yaml::parse(text) else {
        return FaasflowImport::default();
    };
    let check = |imported: Result<Imported, faasflow_planner::WdlError>| match imported {
        Ok(i) => {
            for w in &i.warnings {
                assert!(!w.message.is_empty(), "a warning without a message");
            }
            check_workflow(&i.workflow, selector);
            true
        }
        Err(e) => {
            assert!(!e.message.is_empty(), "an error without a message");
            false
        }
    };
    FaasflowImport {
        flat: check(flat::import(&root, "fuzz")),
        hierarchical: check(hier::import(&root, "fuzz")),
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

/// Bytes from another daemon, read three ways: as one control frame's body, as a control
/// stream (frames one after another, as `PeerConnection::recv` reads them), and as the
/// header that opens an object's stream. Decoding never panics, and whatever decodes encodes
/// back to exactly the bytes it came from (the codec has one encoding per value).
pub fn check_peer_bytes(data: &[u8]) {
    if let Ok(msg) = ControlMessage::decode(data) {
        check_encodes_back(&msg, data);
    }
    let mut rest = data;
    loop {
        match ControlMessage::decode_frame(rest) {
            Ok(Some((msg, used))) => {
                assert!(
                    (FRAME_PREFIX..=rest.len()).contains(&used),
                    "decode_frame used {used} of {} bytes",
                    rest.len()
                );
                check_encodes_back(&msg, &rest[FRAME_PREFIX..used]);
                rest = &rest[used..];
            }
            Ok(None) => {
                // Incomplete: no prefix yet, or a body still to come.
                if let Some(prefix) = rest.first_chunk::<FRAME_PREFIX>() {
                    let len = frame_len(*prefix).expect("decode_frame accepted the prefix");
                    assert!(rest.len() < FRAME_PREFIX + len, "decode_frame waits for bytes it has");
                }
                break;
            }
            Err(e) => {
                // Either the prefix announces too much, or the body is bad on its own.
                let prefix = rest.first_chunk::<FRAME_PREFIX>().expect("an error needs a prefix");
                match frame_len(*prefix) {
                    Err(oversized) => assert_eq!(e, oversized),
                    Ok(len) => assert_eq!(Err(e), ControlMessage::decode(&rest[FRAME_PREFIX..FRAME_PREFIX + len])),
                }
                break;
            }
        }
    }
    if let Some(bytes) = data.first_chunk::<OBJECT_HEADER_LEN>() {
        match ObjectHeader::decode(bytes) {
            Ok(header) => assert_eq!(&header.encode(), bytes, "a decoded object header encodes back"),
            Err(e) => assert_eq!(e, DecodeError::UnknownTag(bytes[0])),
        }
    }
}

/// `msg` was decoded from `body`: its frame is `body` behind its length, and decodes to `msg`.
fn check_encodes_back(msg: &ControlMessage, body: &[u8]) {
    let mut frame = vec![0xa5];
    msg.encode(&mut frame).expect("a decoded message encodes");
    let frame = &frame[1..];
    let prefix = frame.first_chunk::<FRAME_PREFIX>().expect("a frame has a prefix");
    assert_eq!(frame_len(*prefix), Ok(body.len()), "the prefix gives the body's length");
    assert_eq!(&frame[FRAME_PREFIX..], body, "a decoded message encodes to other bytes");
    let (again, used) = ControlMessage::decode_frame(frame)
        .expect("our own frame decodes")
        .expect("our own frame is complete");
    assert_eq!((&again, used), (msg, frame.len()));
    let _ = msg.invocation();
}
