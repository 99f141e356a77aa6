//! Calls the control plane makes to daemons outside an invocation: installing and dropping
//! plan versions, each over a fresh connection so that an unreachable daemon is named as such.

use std::time::Duration;

use faasflow_proto::v1 as pb;
use faasflow_rpc::auth::Token;
use faasflow_rpc::channel::{daemon_client, endpoint};
use faasflow_rpc::status::{chain, describe, is_transport};

use crate::versions::Target;

/// Time limit of installing a plan on a daemon (it waits for its pools' first instances).
pub(crate) const INSTALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Time limit of dropping a plan on a daemon.
const DROP_TIMEOUT: Duration = Duration::from_secs(10);

/// Installs `req` on one daemon, with a fresh connection so that an unreachable daemon is
/// named as such.
pub(crate) async fn install_on(
    target: &Target,
    token: &Option<Token>,
    req: pb::InstallPlanRequest,
) -> Result<(), String> {
    let channel = endpoint(target.addr).connect().await.map_err(|e| {
        format!(
            "cannot reach worker `{}` at {}: {}; is its daemon running?",
            target.name,
            target.addr,
            chain(&e)
        )
    })?;
    let mut client = daemon_client(channel, token);
    match tokio::time::timeout(INSTALL_TIMEOUT, client.install_plan(req)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(status)) if is_transport(&status) => Err(format!(
            "cannot reach worker `{}` at {}: {}; is its daemon running?",
            target.name,
            target.addr,
            describe(&status)
        )),
        Ok(Err(status)) => Err(format!(
            "worker `{}` at {} refused the plan: {}",
            target.name,
            target.addr,
            describe(&status)
        )),
        Err(_) => Err(format!(
            "worker `{}` at {} did not install the plan within {} s",
            target.name,
            target.addr,
            INSTALL_TIMEOUT.as_secs()
        )),
    }
}

/// Drops a version from one daemon; failures are logged (the daemon may be gone).
pub(crate) async fn drop_on(target: Target, token: Option<Token>, workflow: String, version: u64) {
    let result = async {
        let channel = endpoint(target.addr).connect().await.map_err(|e| chain(&e))?;
        let req = pb::DropPlanRequest {
            workflow: workflow.clone(),
            version,
        };
        match tokio::time::timeout(DROP_TIMEOUT, daemon_client(channel, &token).drop_plan(req)).await {
            Err(_) => Err(format!("no answer within {} s", DROP_TIMEOUT.as_secs())),
            // Gone already (dropped once, or its daemon started again): what was asked.
            Ok(Err(s)) if s.code() == tonic::Code::NotFound => Ok(()),
            Ok(Err(s)) => Err(describe(&s)),
            Ok(Ok(_)) => Ok(()),
        }
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(
            %workflow,
            version,
            worker = %target.name,
            addr = %target.addr,
            cause = %e,
            "could not drop a version from a worker"
        );
    }
}
