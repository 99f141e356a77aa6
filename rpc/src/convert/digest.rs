//! A plan encoded once for the wire ([`WirePlan`]) and what it is known by: the SHA-256 digest
//! of its wire form.

use faasflow_core::dag::Workflow;
use faasflow_core::plan::{ClusterView, Plan};
use faasflow_proto::v1 as pb;

use super::to_proto::plan_to_proto;

/// What a plan is known by: SHA-256 of its wire form. A daemon asked to install a version it
/// holds compares digests, so that a different plan under a known (workflow, version) is
/// refused rather than answered with the one it holds.
pub fn plan_digest(plan: &pb::Plan) -> Vec<u8> {
    let bytes = prost::Message::encode_to_vec(plan);
    ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref().to_vec()
}

/// A plan encoded for the wire once, when it is deployed, and sent as is to every daemon that
/// installs it; its digest is what a daemon holding it reports.
#[derive(Debug, Clone, PartialEq)]
pub struct WirePlan {
    proto: pb::Plan,
    digest: Vec<u8>,
}

impl WirePlan {
    /// Encodes `plan` of `wf` for `cluster`.
    pub fn new(wf: &Workflow, plan: &Plan, cluster: &ClusterView) -> Self {
        let proto = plan_to_proto(wf, plan, cluster);
        let digest = plan_digest(&proto);
        WirePlan { proto, digest }
    }

    /// A plan as it was encoded before (read back from where it was kept): checked by
    /// [`super::plan_from_proto`] first.
    pub(crate) fn from_proto(proto: pb::Plan) -> Self {
        let digest = plan_digest(&proto);
        WirePlan { proto, digest }
    }

    /// The SHA-256 digest of the encoded plan ([`plan_digest`]).
    pub fn digest(&self) -> &[u8] {
        &self.digest
    }

    /// The generated message, for the server adapters and clients that send it.
    pub fn proto(&self) -> &pb::Plan {
        &self.proto
    }
}

/// A digest as people read it (its first 8 bytes in hex).
pub fn short_digest(digest: &[u8]) -> String {
    if digest.is_empty() {
        return "none".into();
    }
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}
