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
        };
        let bytes = encode_version(&v);
        let back = decode_version(&bytes).expect("decodes");
        assert_eq!(back.plan, plan);
        assert_eq!(back.plan.version, 7);
        assert_eq!(back.stored.plan.digest(), wire.digest(), "the same plan, byte for byte");
        assert_eq!(back.stored.daemons, v.daemons);
        assert_eq!(back.stored.peers, v.peers);
        assert!(back.stored.allow_overcommit);
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
