//! Calls the control plane makes to daemons outside an invocation: installing and dropping
//! plan versions, each over a fresh connection so that an unreachable daemon is named as such.

use std::net::SocketAddr;
use std::time::Duration;

use faasflow_rpc::channel::Credentials;
use faasflow_rpc::convert::WirePlan;
use faasflow_rpc::daemon::{Daemon, DaemonError};

use crate::versions::Target;

/// Time limit of installing a plan on a daemon (it waits for its pools' first instances).
pub(crate) const INSTALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Time limit of dropping a plan on a daemon.
const DROP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a plan could not be installed on a worker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InstallError {
    /// Its daemon cannot be reached.
    #[error("{0}")]
    Unreachable(DaemonError),
    /// Its daemon refused the plan.
    #[error("worker `{worker}` at {addr} refused the plan: {message}")]
    Refused {
        worker: String,
        addr: SocketAddr,
        message: String,
    },
    /// Its daemon did not answer in time.
    #[error("worker `{worker}` at {addr} did not install the plan within {} s", INSTALL_TIMEOUT.as_secs())]
    Timeout { worker: String, addr: SocketAddr },
}

/// What installs a version on a daemon: its plan and its workers' peer (QUIC) addresses.
#[derive(Debug, Clone)]
pub(crate) struct Install {
    pub(crate) plan: WirePlan,
    pub(crate) peers: Vec<(String, SocketAddr)>,
}

/// Installs a version on one daemon.
pub(crate) async fn install_on(target: &Target, token: &Credentials, install: &Install) -> Result<(), InstallError> {
    let result = async {
        let daemon = Daemon::connect(&target.name, target.addr, token).await?;
        daemon.install(&install.plan, &install.peers, INSTALL_TIMEOUT).await
    }
    .await;
    match result {
        Ok(()) => Ok(()),
        Err(e @ DaemonError::Unreachable { .. }) => Err(InstallError::Unreachable(e)),
        Err(DaemonError::Timeout { .. }) => Err(InstallError::Timeout {
            worker: target.name.clone(),
            addr: target.addr,
        }),
        Err(DaemonError::Refused { message, .. } | DaemonError::Overloaded { message, .. }) => {
            Err(InstallError::Refused {
                worker: target.name.clone(),
                addr: target.addr,
                message,
            })
        }
        Err(e) => Err(InstallError::Refused {
            worker: target.name.clone(),
            addr: target.addr,
            message: e.to_string(),
        }),
    }
}

/// Drops a version from one daemon; failures are logged (the daemon may be gone).
pub(crate) async fn drop_on(target: Target, token: Credentials, workflow: String, version: u64) {
    let result = async {
        let daemon = Daemon::connect(&target.name, target.addr, &token).await?;
        daemon.drop_version(&workflow, version, DROP_TIMEOUT).await
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
