//! The control plane's settings and limits.

use std::time::Duration;

use faasflow_core::plan::PlannerConfig;
use faasflow_rpc::auth::Token;
use faasflow_rpc::channel::{Credentials, Transport};

/// Time limit of an invocation whose request sets none.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(300);

/// Invocations in flight at once on a planner, by default ([`ServiceConfig::max_in_flight`]).
pub const DEFAULT_MAX_IN_FLIGHT: u64 = 4096;

/// How much longer than an invocation's deadline the planner waits for its entry daemon's
/// answer (the daemon ends the invocation at the deadline itself).
pub(crate) const DEADLINE_GRACE: Duration = Duration::from_secs(2);

/// Time limit of telling a daemon something (a worker is lost, an invocation is cancelled).
pub(crate) const TELL_TIMEOUT: Duration = Duration::from_secs(5);

/// Time limit of connecting to Redis and of each of its operations.
pub(crate) const REDIS_TIMEOUT: Duration = Duration::from_secs(3);

/// Executions kept after they ended, by default. Each is kept whole (its output and report
/// too), in memory and on disk: a report of a large workflow is tens of KiB.
pub const DEFAULT_KEEP_EXECUTIONS: usize = 1_000;

/// How long an execution is kept after it ended, by default (7 days).
pub const DEFAULT_KEEP_EXECUTIONS_FOR: Duration = Duration::from_secs(7 * 24 * 3600);

/// Settings of the planner service.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    /// How often workers must send a heartbeat.
    pub heartbeat_interval: Duration,
    /// Time limit of invocations that set none.
    pub default_deadline: Duration,
    /// Safety margin μ of the memory quota, MiB per function.
    pub margin_mib: f64,
    /// The remote tier, a Redis URL (`redis://host:port`): MasterSP passes every object
    /// through it (the daemons must use the same one). Without it, MasterSP deploys fail;
    /// WorkerSP does not need it.
    pub redis: Option<String>,
    /// A task whose measured peak memory differs from the peak its newest version was
    /// planned with by more than this, MiB, makes the planner plan the workflow again with the
    /// measured peaks and deploy that as a new version (red-black). `None` (the default):
    /// never; versions change only when a user deploys. With it set, a pack function's
    /// measured runtime or output size off its planned one by more than
    /// [`ServiceConfig::replan_factor`] does too (synthetic bodies excepted: their declared
    /// runtime and sizes are what they do).
    pub replan_threshold_mib: Option<f64>,
    /// How far (a factor, either way) a measured runtime (beyond 1 ms apart) or output size
    /// (beyond 64 KiB apart) may be from the planned one before the planner plans again
    /// (infinite: never for those; memory alone).
    pub replan_factor: f64,
    /// The cluster's API token: calls without it are refused, and calls to the daemons carry
    /// it. `None`: the API is open (a planner on a private network, tests).
    pub token: Option<Token>,
    /// How the planner reaches the daemons: TLS (each daemon must present the certificate of
    /// the worker it registered as) or, on loopback only, plain TCP (the default, for tests).
    pub transport: Transport,
    /// Invocations in flight at once (every workflow and mode together); one more is refused
    /// at once as overloaded (`RESOURCE_EXHAUSTED`), never queued.
    pub max_in_flight: u64,
    /// Executions that have ended are kept (for `GetExecution`) up to this many…
    pub keep_executions: usize,
    /// …and for this long after they ended.
    pub keep_executions_for: Duration,
    /// Limits of uploaded input files.
    pub uploads: crate::uploads::UploadConfig,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            heartbeat_interval: Duration::from_secs(1),
            default_deadline: DEFAULT_DEADLINE,
            margin_mib: PlannerConfig::default().margin_mib,
            redis: None,
            replan_threshold_mib: None,
            replan_factor: 2.0,
            token: None,
            transport: Transport::Plain,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            keep_executions: DEFAULT_KEEP_EXECUTIONS,
            keep_executions_for: DEFAULT_KEEP_EXECUTIONS_FOR,
            uploads: crate::uploads::UploadConfig::default(),
        }
    }
}

/// Reports the planner keeps (the latest invocations', for `Report`).
pub const KEPT_REPORTS: usize = 256;

impl ServiceConfig {
    /// What the planner's calls to the daemons carry and go over.
    pub(crate) fn credentials(&self) -> Credentials {
        Credentials {
            token: self.token.clone(),
            transport: self.transport.clone(),
        }
    }
}
