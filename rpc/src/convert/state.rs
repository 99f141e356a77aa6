//! The planner's stored records (`faasflow.v1.StoredVersion`, `StoredWorker`) to and from
//! bytes. They are read back from a file: checked like any plan from the wire, so that a
//! damaged or foreign state file is an error naming the field, never a planner that serves a
//! broken plan.

use std::net::SocketAddr;

use faasflow_core::dag::Workflow;
use faasflow_core::plan::{ClusterView, Plan};
use faasflow_proto::v1 as pb;
use prost::Message as _;

use super::error::missing;
use super::{ConvertError, WirePlan, plan_from_proto, workflow_from_proto, workflow_to_proto};

/// One installed version of a workflow, as the planner keeps it.
#[derive(Debug, Clone)]
pub struct StoredVersion {
    /// Its plan, as daemons received it.
    pub plan: WirePlan,
    /// The workflow as its user deployed it.
    pub declared: Workflow,
    /// The workers whose daemons hold it.
    pub daemons: Vec<String>,
    /// Each of its workers' QUIC address when it was made.
    pub peers: Vec<(String, Option<SocketAddr>)>,
    /// Deployed with `--allow-overcommit`.
    pub allow_overcommit: bool,
    /// The source its user deployed (YAML), and the file it came from (empty: kept before
    /// sources were).
    pub source: String,
    pub file_name: String,
    /// When its source was deployed, and when it was planned, ms since the Unix epoch.
    pub deployed_unix_ms: u64,
    pub planned_unix_ms: u64,
}

/// A [`StoredVersion`] read back, with its plan decoded.
#[derive(Debug, Clone)]
pub struct LoadedVersion {
    /// The record.
    pub stored: StoredVersion,
    /// The workflow its plan was made for.
    pub workflow: Workflow,
    /// Its plan.
    pub plan: Plan,
    /// The cluster its plan was made for.
    pub cluster: ClusterView,
}

/// A registered worker, as the planner last knew it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWorker {
    /// Its daemon's incarnation.
    pub incarnation: u64,
    /// Its daemon's gRPC address.
    pub grpc_addr: SocketAddr,
    /// Its QUIC address.
    pub quic_addr: Option<SocketAddr>,
    /// Its container slots.
    pub slots: u32,
}

/// `v` as bytes.
pub fn encode_version(v: &StoredVersion) -> Vec<u8> {
    pb::StoredVersion {
        plan: Some(v.plan.proto().clone()),
        declared: Some(workflow_to_proto(&v.declared)),
        daemons: v.daemons.clone(),
        peers: v
            .peers
            .iter()
            .map(|(name, addr)| pb::StoredPeer {
                name: name.clone(),
                addr: addr.map(|a| a.to_string()).unwrap_or_default(),
            })
            .collect(),
        allow_overcommit: v.allow_overcommit,
        source: v.source.clone(),
        file_name: v.file_name.clone(),
        deployed_unix_ms: v.deployed_unix_ms,
        planned_unix_ms: v.planned_unix_ms,
    }
    .encode_to_vec()
}

/// A version read back from `bytes`, checked.
pub fn decode_version(bytes: &[u8]) -> Result<LoadedVersion, ConvertError> {
    let p = pb::StoredVersion::decode(bytes).map_err(undecodable)?;
    let plan_pb = p.plan.ok_or_else(|| missing("plan"))?;
    let (workflow, plan, cluster) = plan_from_proto(&plan_pb)?;
    let declared = workflow_from_proto(p.declared.as_ref().ok_or_else(|| missing("declared"))?)?;
    let mut peers = Vec::with_capacity(p.peers.len());
    for (i, peer) in p.peers.into_iter().enumerate() {
        let addr = optional_addr(&peer.addr, || format!("peers[{i}].addr"))?;
        peers.push((peer.name, addr));
    }
    Ok(LoadedVersion {
        stored: StoredVersion {
            plan: WirePlan::from_proto(plan_pb),
            declared,
            daemons: p.daemons,
            peers,
            allow_overcommit: p.allow_overcommit,
            source: p.source,
            file_name: p.file_name,
            deployed_unix_ms: p.deployed_unix_ms,
            planned_unix_ms: p.planned_unix_ms,
        },
        workflow,
        plan,
        cluster,
    })
}

/// `w` as bytes.
pub fn encode_worker(w: &StoredWorker) -> Vec<u8> {
    pb::StoredWorker {
        incarnation: w.incarnation,
        grpc_addr: w.grpc_addr.to_string(),
        quic_addr: w.quic_addr.map(|a| a.to_string()).unwrap_or_default(),
        slots: w.slots,
    }
    .encode_to_vec()
}

/// A worker read back from `bytes`, checked.
pub fn decode_worker(bytes: &[u8]) -> Result<StoredWorker, ConvertError> {
    let p = pb::StoredWorker::decode(bytes).map_err(undecodable)?;
    let grpc_addr = optional_addr(&p.grpc_addr, || "grpc_addr".into())?.ok_or_else(|| missing("grpc_addr"))?;
    Ok(StoredWorker {
        incarnation: p.incarnation,
        grpc_addr,
        quic_addr: optional_addr(&p.quic_addr, || "quic_addr".into())?,
        slots: p.slots,
    })
}

fn undecodable(e: prost::DecodeError) -> ConvertError {
    ConvertError::Invalid {
        field: "(message)".into(),
        reason: format!("is not a valid protobuf message: {e}"),
    }
}

/// An address field: empty for none.
fn optional_addr(text: &str, field: impl FnOnce() -> String) -> Result<Option<SocketAddr>, ConvertError> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|e| ConvertError::Invalid {
        field: field(),
        reason: format!("is `{text}`, not an address ({e})"),
    })
}

/// Where an execution is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExecutionStatus {
    /// It runs.
    Running,
    /// It finished with an output.
    Succeeded,
    /// A step failed, or it could not start.
    Failed,
    /// It did not finish within its deadline.
    DeadlineExceeded,
    /// The planner stopped while it ran: how it ended is not known.
    Lost,
    /// It was cancelled (`CancelExecution`) before it finished.
    Cancelled,
}

impl ExecutionStatus {
    /// How people and `--status` name it.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Running => "running",
            ExecutionStatus::Succeeded => "succeeded",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::DeadlineExceeded => "deadline-exceeded",
            ExecutionStatus::Lost => "lost",
            ExecutionStatus::Cancelled => "cancelled",
        }
    }

    /// Every status, in the order above.
    pub const ALL: [ExecutionStatus; 6] = [
        ExecutionStatus::Running,
        ExecutionStatus::Succeeded,
        ExecutionStatus::Failed,
        ExecutionStatus::DeadlineExceeded,
        ExecutionStatus::Lost,
        ExecutionStatus::Cancelled,
    ];
}

/// An execution (`StartExecution`) as the planner keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecutionRecord {
    /// Its id.
    pub id: u64,
    /// The workflow.
    pub workflow: String,
    /// The version asked for (`None`: the newest when it started).
    pub version: Option<u64>,
    /// Where it is (`None` only in [`Default`]).
    pub status: Option<ExecutionStatus>,
    /// When it started and ended, ms since the Unix epoch (0: not yet).
    pub started_unix_ms: u64,
    /// See `started_unix_ms`.
    pub ended_unix_ms: u64,
    /// The invocation that ran it (0: none started).
    pub invocation_id: u64,
    /// The workflow's output, a JSON object (when it succeeded).
    pub output_json: Vec<u8>,
    /// What went wrong.
    pub error: String,
    /// Its report, JSON, once it has ended.
    pub report_json: Vec<u8>,
    /// Its idempotency key (empty: none).
    pub idempotency_key: String,
    /// SHA-256 of the request that started it.
    pub request_digest: Vec<u8>,
    /// The worker that ran its invocation's entry, which keeps the outputs its report does
    /// not show whole (empty: none, or the planner's central engine).
    pub entry_worker: String,
}

/// SHA-256 of a start request: what a start under the same idempotency key must repeat
/// (`files`: inputs given as uploads, name → upload id).
pub fn request_digest(
    workflow: &str,
    version: Option<u64>,
    (input_json, files): (&[u8], &std::collections::BTreeMap<String, String>),
    deadline_ms: u64,
) -> Vec<u8> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [
        workflow.as_bytes(),
        &version.map_or([0xff; 8], u64::to_le_bytes),
        &deadline_ms.to_le_bytes(),
    ] {
        ctx.update(&(part.len() as u64).to_le_bytes());
        ctx.update(part);
    }
    ctx.update(input_json);
    // A request without files digests as it did before uploads were taken.
    for (name, upload) in files {
        for part in [name.as_bytes(), upload.as_bytes()] {
            ctx.update(&(part.len() as u64).to_le_bytes());
            ctx.update(part);
        }
    }
    ctx.finish().as_ref().to_vec()
}

/// `status` on the wire.
pub fn execution_status_to_proto(status: Option<ExecutionStatus>) -> i32 {
    (match status {
        None => pb::ExecutionStatus::Unspecified,
        Some(ExecutionStatus::Running) => pb::ExecutionStatus::Running,
        Some(ExecutionStatus::Succeeded) => pb::ExecutionStatus::Succeeded,
        Some(ExecutionStatus::Failed) => pb::ExecutionStatus::Failed,
        Some(ExecutionStatus::DeadlineExceeded) => pb::ExecutionStatus::DeadlineExceeded,
        Some(ExecutionStatus::Lost) => pb::ExecutionStatus::Lost,
        Some(ExecutionStatus::Cancelled) => pb::ExecutionStatus::Cancelled,
    }) as i32
}

/// A status from the wire (`None`: unspecified).
pub fn execution_status_from_proto(value: i32, field: &str) -> Result<Option<ExecutionStatus>, ConvertError> {
    match pb::ExecutionStatus::try_from(value) {
        Ok(pb::ExecutionStatus::Unspecified) => Ok(None),
        Ok(pb::ExecutionStatus::Running) => Ok(Some(ExecutionStatus::Running)),
        Ok(pb::ExecutionStatus::Succeeded) => Ok(Some(ExecutionStatus::Succeeded)),
        Ok(pb::ExecutionStatus::Failed) => Ok(Some(ExecutionStatus::Failed)),
        Ok(pb::ExecutionStatus::DeadlineExceeded) => Ok(Some(ExecutionStatus::DeadlineExceeded)),
        Ok(pb::ExecutionStatus::Lost) => Ok(Some(ExecutionStatus::Lost)),
        Ok(pb::ExecutionStatus::Cancelled) => Ok(Some(ExecutionStatus::Cancelled)),
        Err(_) => Err(ConvertError::UnknownEnum {
            field: field.to_owned(),
            enum_name: "ExecutionStatus",
            value,
        }),
    }
}

/// `e` on the wire; `full`: with its output and report.
pub fn execution_to_proto(e: &ExecutionRecord, full: bool) -> pb::Execution {
    pb::Execution {
        execution_id: e.id,
        workflow: e.workflow.clone(),
        version: e.version,
        status: execution_status_to_proto(e.status),
        started_unix_ms: e.started_unix_ms,
        ended_unix_ms: e.ended_unix_ms,
        invocation_id: e.invocation_id,
        output_json: if full { e.output_json.clone() } else { Vec::new() },
        error: e.error.clone(),
        report_json: if full { e.report_json.clone() } else { Vec::new() },
        idempotency_key: e.idempotency_key.clone(),
    }
}

/// An execution from the wire.
pub fn execution_from_proto(p: pb::Execution) -> Result<ExecutionRecord, ConvertError> {
    Ok(ExecutionRecord {
        id: p.execution_id,
        status: Some(execution_status_from_proto(p.status, "status")?.ok_or_else(|| missing("status"))?),
        workflow: p.workflow,
        version: p.version,
        started_unix_ms: p.started_unix_ms,
        ended_unix_ms: p.ended_unix_ms,
        invocation_id: p.invocation_id,
        output_json: p.output_json,
        error: p.error,
        report_json: p.report_json,
        idempotency_key: p.idempotency_key,
        request_digest: Vec::new(),
        entry_worker: String::new(),
    })
}

/// `e` as bytes.
pub fn encode_execution(e: &ExecutionRecord) -> Vec<u8> {
    pb::StoredExecution {
        execution: Some(execution_to_proto(e, true)),
        request_digest: e.request_digest.clone(),
        entry_worker: e.entry_worker.clone(),
    }
    .encode_to_vec()
}

/// An execution read back from `bytes`, checked.
pub fn decode_execution(bytes: &[u8]) -> Result<ExecutionRecord, ConvertError> {
    let p = pb::StoredExecution::decode(bytes).map_err(undecodable)?;
    let mut e = execution_from_proto(p.execution.ok_or_else(|| missing("execution"))?)?;
    e.request_digest = p.request_digest;
    e.entry_worker = p.entry_worker;
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wf(yaml: &str) -> Workflow {
        faasflow_planner::load::load_str(yaml, "t.yaml", "t")
            .expect("valid")
            .workflow
    }

    #[test]
    fn a_version_comes_back_as_it_was_stored_and_damage_is_named() {
        let w = wf("name: t\nfunctions:\n  f: {}\nsteps:\n  - task: f\n");
        let cluster = ClusterView::uniform(2, 4);
        let cfg = faasflow_core::plan::PlannerConfig {
            version: 7,
            ..Default::default()
        };
        let plan = faasflow_planner::partition::partition(&w, &cluster, &cfg).expect("plan");
        let wire = WirePlan::new(&w, &plan, &cluster);
        let v = StoredVersion {
            plan: wire.clone(),
            declared: w.clone(),
            daemons: vec!["worker-0".into()],
            peers: vec![
                ("worker-0".into(), Some("127.0.0.1:4000".parse().unwrap())),
                ("worker-1".into(), None),
            ],
            allow_overcommit: true,
            source: "name: t\n".into(),
            file_name: "t.yaml".into(),
            deployed_unix_ms: 1_700_000_000_000,
            planned_unix_ms: 1_700_000_000_500,
        };
        let bytes = encode_version(&v);
        let back = decode_version(&bytes).expect("decodes");
        assert_eq!(back.plan, plan);
        assert_eq!(back.plan.version, 7);
        assert_eq!(back.stored.plan.digest(), wire.digest(), "the same plan, byte for byte");
        assert_eq!(back.stored.daemons, v.daemons);
        assert_eq!(back.stored.peers, v.peers);
        assert!(back.stored.allow_overcommit);
        assert_eq!(
            (
                &*back.stored.source,
                &*back.stored.file_name,
                back.stored.deployed_unix_ms,
                back.stored.planned_unix_ms
            ),
            ("name: t\n", "t.yaml", 1_700_000_000_000, 1_700_000_000_500)
        );
        assert_eq!(back.stored.declared.name, "t");
        assert_eq!(back.cluster.workers.len(), 2);

        let e = decode_version(&bytes[..bytes.len() / 2]).expect_err("cut short");
        assert!(e.to_string().contains("not a valid protobuf message"), "{e}");
        let mut p = pb::StoredVersion::decode(&bytes[..]).unwrap();
        p.peers[0].addr = "nowhere".into();
        let e = decode_version(&p.encode_to_vec()).expect_err("bad address");
        assert_eq!(
            e.to_string(),
            "`peers[0].addr` is `nowhere`, not an address (invalid socket address syntax)"
        );
        p.plan = None;
        assert_eq!(
            decode_version(&p.encode_to_vec()).expect_err("no plan").to_string(),
            "`plan` is missing"
        );
    }

    #[test]
    fn an_execution_comes_back_as_it_was_stored() {
        let no_files = std::collections::BTreeMap::new();
        let e = ExecutionRecord {
            id: 12,
            workflow: "wc".into(),
            version: Some(3),
            status: Some(ExecutionStatus::Succeeded),
            started_unix_ms: 1000,
            ended_unix_ms: 1500,
            invocation_id: 4097,
            output_json: br#"{"n": 2}"#.to_vec(),
            error: String::new(),
            report_json: b"{}".to_vec(),
            idempotency_key: "k".into(),
            request_digest: request_digest("wc", Some(3), (b"{}", &no_files), 0),
            entry_worker: "worker-1".into(),
        };
        assert_eq!(decode_execution(&encode_execution(&e)).unwrap(), e);
        let brief = execution_from_proto(execution_to_proto(&e, false)).unwrap();
        assert!(brief.output_json.is_empty() && brief.report_json.is_empty());
        assert_ne!(
            e.request_digest,
            request_digest("wc", None, (b"{}", &no_files), 0),
            "the version counts"
        );
        let files = std::collections::BTreeMap::from([("video".to_owned(), "ab12".to_owned())]);
        assert_ne!(
            e.request_digest,
            request_digest("wc", Some(3), (b"{}", &files), 0),
            "the files count"
        );
        assert_ne!(
            e.request_digest,
            request_digest("wc", Some(3), (b"{ }", &no_files), 0),
            "the input counts"
        );
        let mut p = execution_to_proto(&e, true);
        p.status = 42;
        assert!(
            execution_from_proto(p)
                .unwrap_err()
                .to_string()
                .contains("not a known ExecutionStatus")
        );
    }

    #[test]
    fn a_worker_comes_back_as_it_was_stored() {
        let w = StoredWorker {
            incarnation: 42,
            grpc_addr: "127.0.0.1:5000".parse().unwrap(),
            quic_addr: None,
            slots: 8,
        };
        assert_eq!(decode_worker(&encode_worker(&w)).unwrap(), w);
        let e = decode_worker(&pb::StoredWorker::default().encode_to_vec()).unwrap_err();
        assert_eq!(e.to_string(), "`grpc_addr` is missing");
    }
}
