//! A client of the planner's API for its users (the `faasflow` commands): it connects with the
//! cluster's token and faasflow's message limits, takes and returns the core's types and the
//! plain structs below, and turns refusals into [`PlannerError`]s that keep the planner's
//! whole text ([`describe`]).
//!
//! What it does not do: retry, or decide what a refusal means to the user (the caller says it).

use std::collections::BTreeMap;

use faasflow_core::report::Report;
use faasflow_core::{ClusterView, Mode, Plan, Workflow};
use faasflow_proto::v1 as pb;
use faasflow_proto::v1::planner_client::PlannerClient;
use tonic::Code;
use tonic::transport::Endpoint;

use crate::auth::{Attach, AuthChannel, Token};
use crate::channel::{MAX_MESSAGE, Transport};
use crate::convert::state::{ExecutionRecord, ExecutionStatus, execution_from_proto, execution_status_to_proto};
use crate::convert::{ConvertError, mode_from_proto, mode_to_proto, plan_from_proto};
use crate::status::describe;
use crate::tls::PLANNER_NODE;

/// Why a call to the planner failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlannerError {
    /// No connection: the address is not `host:port`, or nothing answers there.
    #[error("cannot reach the planner at {addr}: {cause}")]
    Unreachable {
        /// The address tried.
        addr: String,
        /// Why, with the chain of causes.
        cause: String,
    },
    /// The planner refused the request as the caller's to fix: an input that is not valid
    /// (`INVALID_ARGUMENT`), a workflow or version that is not there (`NOT_FOUND`), one
    /// that cannot run as asked (`FAILED_PRECONDITION`), or an idempotency key used for
    /// another request (`ALREADY_EXISTS`).
    #[error("{message}")]
    Rejected {
        /// The status's code.
        code: Code,
        /// The planner's text and the causes behind it.
        message: String,
    },
    /// The call failed otherwise: the planner is overloaded, unavailable, or failed itself.
    #[error("{message}")]
    Failed {
        /// The status's code.
        code: Code,
        /// The planner's text and the causes behind it.
        message: String,
    },
    /// The planner answered with a plan that does not convert.
    #[error("the planner sent a plan that is not valid: {0}")]
    InvalidPlan(ConvertError),
    /// The planner answered with a record (an execution, a version) that does not convert.
    #[error("the planner's answer is not valid: {0}")]
    InvalidAnswer(ConvertError),
    /// The planner answered with a report that is not a report's JSON.
    #[error("{}", invalid_report(*.invocation, .reason))]
    InvalidReport {
        /// The invocation asked for, when a kept report was asked for.
        invocation: Option<u64>,
        /// Why it does not parse.
        reason: String,
    },
}

fn invalid_report(invocation: Option<u64>, reason: &str) -> String {
    match invocation {
        Some(id) => format!("the planner's report of invocation {id} is not valid: {reason}"),
        None => format!("the planner sent a report that is not valid: {reason}"),
    }
}

impl PlannerError {
    fn from_status(status: &tonic::Status) -> PlannerError {
        let code = status.code();
        let message = describe(status);
        match code {
            Code::InvalidArgument | Code::NotFound | Code::FailedPrecondition | Code::AlreadyExists => {
                PlannerError::Rejected { code, message }
            }
            _ => PlannerError::Failed { code, message },
        }
    }
}

/// A workflow to deploy: its source and how to plan it.
#[derive(Debug, Clone)]
pub struct Deploy {
    /// The workflow's source text.
    pub source: String,
    /// The file it was read from, for the planner's error messages.
    pub file_name: String,
    /// How it is scheduled.
    pub mode: Mode,
    /// Plan even when it needs more slots than the cluster has.
    pub allow_overcommit: bool,
    /// Its name when the file names none (FaaSFlow's files are named after their directory).
    pub default_name: String,
    /// The directory of its file, absolute (Python functions' `code` is relative to it);
    /// empty when it has none.
    pub code_dir: String,
}

/// A workflow version and its plan, as the planner holds them.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The workflow.
    pub workflow: Workflow,
    /// Its placement.
    pub plan: Plan,
    /// The workers it was planned for.
    pub cluster: ClusterView,
}

/// The version a deploy made.
#[derive(Debug, Clone)]
pub struct Deployed {
    /// The workflow's name.
    pub workflow: String,
    /// The new version.
    pub version: u64,
    /// Its plan; `None` when the planner sent none, or one that does not convert (the deploy
    /// itself succeeded either way).
    pub plan: Option<Planned>,
}

/// One invocation to run: built once, so that its size can be checked before it is sent.
#[derive(Debug, Clone)]
pub struct Invocation(pb::InvokeRequest);

impl Invocation {
    /// An invocation of `workflow` (its newest version when `version` is `None`) with the input
    /// `input_json` (a JSON object), within `deadline_ms` (`None`: the planner's default).
    pub fn new(workflow: String, version: Option<u64>, input_json: Vec<u8>, deadline_ms: Option<u64>) -> Invocation {
        Invocation(pb::InvokeRequest {
            workflow,
            version,
            input_json,
            deadline_ms: deadline_ms.unwrap_or(0),
            fill_staged_scale: None,
            files: Default::default(),
        })
    }

    /// Gives input `name` as upload `upload` ([`Planner::upload`]).
    pub fn file(mut self, name: String, upload: String) -> Invocation {
        self.0.files.insert(name, upload);
        self
    }

    /// Has the planner fill the staged inputs (FaaSFlow's files no function produces) that the
    /// input does not give, with bytes of their declared size times `scale`.
    pub fn fill_staged(mut self, scale: f64) -> Invocation {
        self.0.fill_staged_scale = Some(scale);
        self
    }

    /// Bytes the request takes on the wire: more than [`MAX_MESSAGE`] is refused unsent.
    pub fn encoded_len(&self) -> usize {
        prost::Message::encoded_len(&self.0)
    }
}

/// How an invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvocationStatus {
    /// It finished with an output.
    Succeeded,
    /// A step failed.
    Failed,
    /// It did not finish within its deadline.
    DeadlineExceeded,
    /// The planner sent no status, or one this client does not know.
    Unknown,
}

/// The answer to an invocation.
#[derive(Debug, Clone)]
pub struct Invoked {
    /// The invocation's id.
    pub invocation: u64,
    /// How it ended.
    pub status: InvocationStatus,
    /// The workflow's output, a JSON object (when it succeeded).
    pub output_json: Vec<u8>,
    /// What went wrong (when it did not succeed).
    pub error: String,
    /// Where the time went, when the planner sent a report.
    pub report: Option<Report>,
    /// Staged inputs the planner filled ([`Invocation::fill_staged`]), and their bytes.
    pub filled: (usize, u64),
}

/// A report the planner kept.
#[derive(Debug, Clone)]
pub struct KeptReport {
    /// The workflow the invocation ran.
    pub workflow: String,
    /// The report.
    pub report: Report,
}

/// A worker as the planner knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredWorker {
    /// Its name.
    pub name: String,
    /// Its daemon's gRPC address, `host:port`.
    pub grpc_addr: String,
    /// Its QUIC endpoint, `host:port` (`None`: it has no peer transport).
    pub quic_addr: Option<String>,
    /// Container slots it offers.
    pub slots: u32,
    /// Milliseconds since its last heartbeat (or registration).
    pub silent_ms: u64,
    /// It missed three heartbeats: new plans leave it out.
    pub lost: bool,
    /// Running instances, as its last heartbeat said.
    pub instances: u32,
    /// Calls running or waiting on it.
    pub calls: u32,
    /// Bytes in use in its arena.
    pub arena_bytes_used: u64,
    /// Its arena's size.
    pub arena_bytes: u64,
}

/// A deployed workflow ([`Planner::workflows`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DeployedWorkflow {
    /// Its name.
    pub name: String,
    /// The last version number given.
    pub last_version: u64,
    /// Its installed versions, newest first.
    pub versions: Vec<InstalledVersion>,
    /// It is being undeployed.
    pub undeploying: bool,
}

/// An installed version in detail ([`Planner::describe_workflow`]).
#[derive(Debug, Clone, PartialEq)]
pub struct VersionDetail {
    /// The version.
    pub version: u64,
    /// The source its user deployed (YAML), and its file (empty: not kept).
    pub source: String,
    pub file_name: String,
    /// When its source was deployed, and when it was planned, ms since the Unix epoch.
    pub deployed_unix_ms: u64,
    pub planned_unix_ms: u64,
    /// Where each task runs: (task, function, worker).
    pub tasks: Vec<(String, String, String)>,
    /// Edges by data tier: (tier, edges).
    pub edges: Vec<(String, u32)>,
    /// Groups the partition made, and its merges.
    pub groups: u32,
    pub merges: u32,
    /// The critical path's estimated length, ms.
    pub critical_path_ms: f64,
}

/// A workflow from the wire.
fn deployed_workflow(w: pb::WorkflowInfo) -> Result<DeployedWorkflow, PlannerError> {
    let mut versions = Vec::with_capacity(w.versions.len());
    for v in w.versions {
        let mode = mode_from_proto(v.mode, "versions.mode").map_err(PlannerError::InvalidAnswer)?;
        versions.push(InstalledVersion {
            version: v.version,
            mode,
            workers: v.workers,
            tasks: v.tasks,
            in_flight: v.in_flight,
            digest: v.digest,
        });
    }
    Ok(DeployedWorkflow {
        name: w.name,
        last_version: w.last_version,
        versions,
        undeploying: w.undeploying,
    })
}

/// An installed version of a workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct InstalledVersion {
    /// The version.
    pub version: u64,
    /// The mode it was planned for.
    pub mode: Mode,
    /// The workers whose daemons hold it.
    pub workers: Vec<String>,
    /// Its tasks.
    pub tasks: u32,
    /// Invocations of it in flight.
    pub in_flight: u64,
    /// SHA-256 of its plan.
    pub digest: Vec<u8>,
}

/// What an undeploy removed ([`Planner::undeploy`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Undeployed {
    /// The versions, newest first.
    pub versions: Vec<u64>,
    /// The workers they were dropped from.
    pub workers: Vec<String>,
    /// Invocations in flight it waited for.
    pub drained: u64,
}

/// One deployed workflow's memory and in-memory quota (its newest version).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowMemory {
    /// Its name.
    pub workflow: String,
    /// The newest version.
    pub version: u64,
    /// The safety margin μ per task, MiB.
    pub margin_mib: f64,
    /// Its tasks, in the workflow's order.
    pub tasks: Vec<TaskMemory>,
    /// The quota from the declared peaks.
    pub declared_quota_bytes: u64,
    /// The quota with each measured task's peak in place of its declared one.
    pub quota_bytes: u64,
}

/// One task's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskMemory {
    /// The task's name.
    pub task: String,
    /// The memory it is given.
    pub memory_bytes: u64,
    /// The peak it declares.
    pub declared_use_bytes: u64,
    /// The largest peak its daemons measured (`None`: none measured yet).
    pub measured_peak_bytes: Option<u64>,
    /// Calls measured.
    pub calls_measured: u64,
    /// Its part of the quota from the declared peak.
    pub declared_quota_bytes: u64,
    /// Its part of the quota from the measured peak when there is one, else the declared.
    pub quota_bytes: u64,
    /// The peak the newest version was planned with.
    pub planned_use_bytes: u64,
}

/// A connection to the planner's API.
#[derive(Debug, Clone)]
pub struct Planner {
    client: PlannerClient<AuthChannel>,
}

impl Planner {
    /// Connects to the planner at `addr` (`host:port`) over `transport` (over TLS, the
    /// server must present the certificate of node [`PLANNER_NODE`]), within the connect
    /// timeout of [`crate::channel`]; every call carries `token`.
    pub async fn connect(addr: &str, token: Option<Token>, transport: &Transport) -> Result<Planner, PlannerError> {
        let unreachable = |cause: String| PlannerError::Unreachable {
            addr: addr.to_owned(),
            cause,
        };
        Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| unreachable(format!("`{addr}` is not a planner address (host:port): {e}")))?;
        let channel = transport
            .connect(addr, PLANNER_NODE)
            .await
            .map_err(|e| unreachable(with_causes(&e)))?;
        let client = PlannerClient::with_interceptor(channel, Attach::new(token))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        Ok(Planner { client })
    }

    /// Deploys a new version of a workflow.
    pub async fn deploy(&mut self, deploy: Deploy) -> Result<Deployed, PlannerError> {
        let request = pb::DeployRequest {
            source: deploy.source,
            file_name: deploy.file_name,
            mode: mode_to_proto(deploy.mode),
            allow_overcommit: deploy.allow_overcommit,
            default_name: deploy.default_name,
            code_dir: deploy.code_dir,
        };
        let r = self
            .client
            .deploy(request)
            .await
            .map_err(|s| PlannerError::from_status(&s))?
            .into_inner();
        Ok(Deployed {
            workflow: r.workflow,
            version: r.version,
            plan: r.plan.as_ref().and_then(|p| planned(p).ok()),
        })
    }

    /// The plan of a deployed workflow version (its newest when `version` is `None`); `None`
    /// when the planner sent none.
    pub async fn plan(&mut self, workflow: &str, version: Option<u64>) -> Result<Option<Planned>, PlannerError> {
        let request = pb::GetPlanRequest {
            workflow: workflow.to_owned(),
            version,
        };
        let r = self
            .client
            .get_plan(request)
            .await
            .map_err(|s| PlannerError::from_status(&s))?
            .into_inner();
        r.plan
            .as_ref()
            .map(planned)
            .transpose()
            .map_err(PlannerError::InvalidPlan)
    }

    /// Uploads the file at `path`, streamed in 1 MiB pieces, to give as a workflow input
    /// ([`Invocation::file`]): its upload id and size. `sent` is told the bytes sent so far.
    pub async fn upload(
        &mut self,
        path: &std::path::Path,
        sent: impl Fn(u64) + Send + Sync + 'static,
    ) -> Result<(String, u64), PlannerError> {
        use futures_util::StreamExt as _;
        let unreadable = |e: std::io::Error| PlannerError::Failed {
            code: Code::InvalidArgument,
            message: format!("cannot read {}: {e}", path.display()),
        };
        let file = tokio::fs::File::open(path).await.map_err(unreadable)?;
        let len = file.metadata().await.map_err(unreadable)?.len();
        let failed_read: std::sync::Arc<std::sync::Mutex<Option<std::io::Error>>> = Default::default();
        let failed = failed_read.clone();
        let mut total = 0u64;
        let first = pb::UploadChunk {
            data: Vec::new(),
            declared_bytes: Some(len),
        };
        let pieces = crate::pieces::of_file(file, 1 << 20, move |e| {
            *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        })
        .map(move |data| {
            total += data.len() as u64;
            sent(total);
            pb::UploadChunk {
                data,
                declared_bytes: None,
            }
        });
        // The planner refuses a stream of another length than announced: a read error here
        // leaves nothing there.
        let pieces = futures_util::stream::iter([first]).chain(pieces);
        let r = self
            .client
            .upload(pieces)
            .await
            .map_err(|s| PlannerError::from_status(&s))?
            .into_inner();
        if let Some(e) = failed_read.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(unreadable(e));
        }
        if r.bytes != len {
            return Err(PlannerError::Failed {
                code: Code::DataLoss,
                message: format!(
                    "{} has {len} bytes but the planner received {} (did it change meanwhile?)",
                    path.display(),
                    r.bytes
                ),
            });
        }
        Ok((r.upload_id, r.bytes))
    }

    /// Runs an invocation and waits for its end.
    pub async fn invoke(&mut self, invocation: Invocation) -> Result<Invoked, PlannerError> {
        let sent = std::time::Instant::now();
        let r = self
            .client
            .invoke(invocation.0)
            .await
            .map_err(|s| PlannerError::from_status(&s))?
            .into_inner();
        let client_us = sent.elapsed().as_secs_f64() * 1e6;
        let mut report = (!r.report_json.is_empty())
            .then(|| serde_json::from_slice::<Report>(&r.report_json))
            .transpose()
            .map_err(|e| PlannerError::InvalidReport {
                invocation: None,
                reason: e.to_string(),
            })?;
        if let Some(report) = &mut report {
            // The three ends of the invocation: the entry's e2e, the planner's, this client's.
            report.planner_us = Some(r.planner_us);
            report.client_us = Some(client_us);
        }
        let status = match pb::InvocationStatus::try_from(r.status) {
            Ok(pb::InvocationStatus::Succeeded) => InvocationStatus::Succeeded,
            Ok(pb::InvocationStatus::Failed) => InvocationStatus::Failed,
            Ok(pb::InvocationStatus::DeadlineExceeded) => InvocationStatus::DeadlineExceeded,
            Ok(pb::InvocationStatus::Unspecified) | Err(_) => InvocationStatus::Unknown,
        };
        Ok(Invoked {
            invocation: r.invocation_id,
            status,
            output_json: r.output_json,
            error: r.error,
            report,
            filled: (r.filled_inputs as usize, r.filled_bytes),
        })
    }

    /// Starts `invocation` without waiting for it: the execution's id, and whether an earlier
    /// start with the same `idempotency_key` (empty: none) made it.
    pub async fn start_execution(
        &mut self,
        invocation: Invocation,
        idempotency_key: &str,
    ) -> Result<(u64, bool), PlannerError> {
        let request = pb::StartExecutionRequest {
            invoke: Some(invocation.0),
            idempotency_key: idempotency_key.to_owned(),
        };
        let r = self
            .client
            .start_execution(request)
            .await
            .map_err(|s| PlannerError::from_status(&s))?
            .into_inner();
        Ok((r.execution_id, r.existing))
    }

    /// Execution `id`, with its output and report once it has ended; `wait`: the planner
    /// answers once it has ended, or after `wait` (at most a minute) as it is.
    pub async fn execution(&mut self, id: u64, wait: std::time::Duration) -> Result<ExecutionRecord, PlannerError> {
        let r = self
            .client
            .get_execution(pb::GetExecutionRequest {
                execution_id: id,
                wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            })
            .await
            .map_err(|s| PlannerError::from_status(&s))?
            .into_inner();
        execution_from_proto(r).map_err(PlannerError::InvalidAnswer)
    }

    /// Output `name` (element `element` of a list) of execution `id`, which its output shows
    /// as `{"bytes": N}`: written to `out` as its pieces come; returns its size.
    pub async fn read_output(
        &mut self,
        id: u64,
        name: &str,
        element: u32,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<u64, PlannerError> {
        let mut stream = self
            .client
            .read_execution_output(pb::ReadExecutionOutputRequest {
                execution_id: id,
                name: name.to_owned(),
                element,
            })
            .await
            .map_err(|s| PlannerError::from_status(&s))?
            .into_inner();
        let (mut total, mut got) = (None, 0u64);
        while let Some(chunk) = stream.message().await.map_err(|s| PlannerError::from_status(&s))? {
            total.get_or_insert(chunk.total_bytes);
            out.write_all(&chunk.data).map_err(|e| PlannerError::Failed {
                code: Code::Internal,
                message: format!("cannot write output `{name}`: {e}"),
            })?;
            got += chunk.data.len() as u64;
        }
        let total = total.unwrap_or(0);
        if got != total {
            return Err(PlannerError::Failed {
                code: Code::DataLoss,
                message: format!("output `{name}` of execution {id} was cut off: {got} of {total} bytes came"),
            });
        }
        Ok(total)
    }

    /// Executions, newest first (without outputs and reports): `workflow`'s (`None`: every
    /// one's), in `status` (`None`: any), at most `limit` (0: 100), older than `before_id`;
    /// and whether more match.
    pub async fn executions(
        &mut self,
        workflow: Option<&str>,
        status: Option<ExecutionStatus>,
        limit: u32,
        before_id: Option<u64>,
    ) -> Result<(Vec<ExecutionRecord>, bool), PlannerError> {
        let request = pb::ListExecutionsRequest {
            workflow: workflow.unwrap_or_default().to_owned(),
            status: execution_status_to_proto(status),
            since_unix_ms: 0,
            limit,
            before_id: before_id.unwrap_or(0),
        };
        let r = self
            .client
            .list_executions(request)
            .await
            .map_err(|s| PlannerError::from_status(&s))?
            .into_inner();
        let page = r
            .executions
            .into_iter()
            .map(execution_from_proto)
            .collect::<Result<_, _>>()
            .map_err(PlannerError::InvalidAnswer)?;
        Ok((page, r.more))
    }

    /// The report the planner kept of invocation `id`.
    pub async fn report(&mut self, id: u64) -> Result<KeptReport, PlannerError> {
        let request = pb::ReportRequest { invocation_id: id };
        let r = self
            .client
            .report(request)
            .await
            .map_err(|s| PlannerError::from_status(&s))?
            .into_inner();
        let report = serde_json::from_slice(&r.report_json).map_err(|e| PlannerError::InvalidReport {
            invocation: Some(id),
            reason: e.to_string(),
        })?;
        Ok(KeptReport {
            workflow: r.workflow,
            report,
        })
    }

    /// The memory of deployed workflows: `workflow`'s alone, or every one's.
    pub async fn memory(&mut self, workflow: Option<&str>) -> Result<Vec<WorkflowMemory>, PlannerError> {
        let request = pb::MemoryRequest {
            workflow: workflow.unwrap_or_default().to_owned(),
        };
        let r = self
            .client
            .memory(request)
            .await
            .map_err(|s| PlannerError::from_status(&s))?
            .into_inner();
        Ok(r.workflows.into_iter().map(workflow_memory).collect())
    }

    /// Every deployed workflow, by name.
    pub async fn workflows(&mut self) -> Result<Vec<DeployedWorkflow>, PlannerError> {
        let r = self
            .client
            .list_workflows(pb::ListWorkflowsRequest {})
            .await
            .map_err(|s| PlannerError::from_status(&s))?
            .into_inner();
        r.workflows.into_iter().map(deployed_workflow).collect()
    }

    /// A deployed workflow and its installed versions in detail, newest first.
    pub async fn describe_workflow(
        &mut self,
        workflow: &str,
    ) -> Result<(DeployedWorkflow, Vec<VersionDetail>), PlannerError> {
        let r = self
            .client
            .describe_workflow(pb::DescribeWorkflowRequest {
                workflow: workflow.to_owned(),
            })
            .await
            .map_err(|s| PlannerError::from_status(&s))?
            .into_inner();
        let info = r.workflow.ok_or_else(|| {
            PlannerError::InvalidAnswer(crate::convert::ConvertError::Missing {
                field: "workflow".to_owned(),
            })
        })?;
        let details = r
            .versions
            .into_iter()
            .map(|v| VersionDetail {
                version: v.version,
                source: v.source,
                file_name: v.file_name,
                deployed_unix_ms: v.deployed_unix_ms,
                planned_unix_ms: v.planned_unix_ms,
                tasks: v.tasks.into_iter().map(|t| (t.task, t.function, t.worker)).collect(),
                edges: v.edges.into_iter().map(|e| (e.tier, e.edges)).collect(),
                groups: v.groups,
                merges: v.merges,
                critical_path_ms: v.critical_path_ms,
            })
            .collect();
        Ok((deployed_workflow(info)?, details))
    }

    /// Cancels execution `id` (`reason` is said in its error) and answers it once it has
    /// ended (or, after the planner's wait, still running).
    pub async fn cancel_execution(&mut self, id: u64, reason: &str) -> Result<ExecutionRecord, PlannerError> {
        let r = self
            .client
            .cancel_execution(pb::CancelExecutionRequest {
                execution_id: id,
                reason: reason.to_owned(),
            })
            .await
            .map_err(|s| PlannerError::from_status(&s))?
            .into_inner();
        execution_from_proto(r).map_err(PlannerError::InvalidAnswer)
    }

    /// Removes `workflow` once its invocations in flight have ended (waiting up to `drain`,
    /// `None`: the planner's default deadline).
    pub async fn undeploy(
        &mut self,
        workflow: &str,
        drain: Option<std::time::Duration>,
    ) -> Result<Undeployed, PlannerError> {
        let request = pb::UndeployRequest {
            workflow: workflow.to_owned(),
            drain_ms: drain.map_or(0, |d| d.as_millis().max(1) as u64),
        };
        let r = self
            .client
            .undeploy(request)
            .await
            .map_err(|s| PlannerError::from_status(&s))?
            .into_inner();
        Ok(Undeployed {
            versions: r.versions,
            workers: r.workers,
            drained: r.drained,
        })
    }

    /// Every worker the planner knows, lost ones too.
    pub async fn workers(&mut self) -> Result<Vec<RegisteredWorker>, PlannerError> {
        let r = self
            .client
            .metrics(pb::MetricsRequest {})
            .await
            .map_err(|s| PlannerError::from_status(&s))?
            .into_inner();
        Ok(r.registered.into_iter().map(registered_worker).collect())
    }
}

impl Planned {
    /// The tasks placed on each worker, by worker name, each in the workflow's order.
    pub fn placement(&self) -> BTreeMap<String, Vec<String>> {
        let mut by_worker: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for n in self.workflow.topo_order() {
            if self.workflow.graph[n].task().is_some() {
                let worker = self
                    .cluster
                    .workers
                    .get(self.plan.worker_of(n) as usize)
                    .map_or_else(String::new, |w| w.name.clone());
                by_worker
                    .entry(worker)
                    .or_default()
                    .push(self.workflow.graph[n].name.clone());
            }
        }
        by_worker
    }
}

fn planned(p: &pb::Plan) -> Result<Planned, ConvertError> {
    let (workflow, plan, cluster) = plan_from_proto(p)?;
    Ok(Planned {
        workflow,
        plan,
        cluster,
    })
}

fn registered_worker(w: pb::RegisteredWorker) -> RegisteredWorker {
    RegisteredWorker {
        name: w.name,
        grpc_addr: w.grpc_addr,
        quic_addr: (!w.quic_addr.is_empty()).then_some(w.quic_addr),
        slots: w.slots,
        silent_ms: w.silent_ms,
        lost: w.lost,
        instances: w.instances,
        calls: w.calls,
        arena_bytes_used: w.arena_bytes_used,
        arena_bytes: w.arena_bytes,
    }
}

fn workflow_memory(w: pb::WorkflowMemory) -> WorkflowMemory {
    WorkflowMemory {
        workflow: w.workflow,
        version: w.version,
        margin_mib: w.margin_mib,
        tasks: w
            .tasks
            .into_iter()
            .map(|t| TaskMemory {
                task: t.task,
                memory_bytes: t.memory_bytes,
                declared_use_bytes: t.declared_use_bytes,
                measured_peak_bytes: t.measured_peak_bytes,
                calls_measured: t.calls_measured,
                declared_quota_bytes: t.declared_quota_bytes,
                quota_bytes: t.quota_bytes,
                planned_use_bytes: t.planned_use_bytes,
            })
            .collect(),
        declared_quota_bytes: w.declared_quota_bytes,
        quota_bytes: w.quota_bytes,
    }
}

/// An error and every cause behind it, on one line.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_keeps_the_planners_text_and_says_whose_it_is_to_fix() {
        let e = PlannerError::from_status(&tonic::Status::not_found("workflow `x` is not deployed"));
        assert!(
            matches!(
                e,
                PlannerError::Rejected {
                    code: Code::NotFound,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "workflow `x` is not deployed");
        let e = PlannerError::from_status(&tonic::Status::resource_exhausted("overloaded"));
        assert!(
            matches!(
                e,
                PlannerError::Failed {
                    code: Code::ResourceExhausted,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "overloaded");
    }

    #[test]
    fn an_invalid_report_says_which() {
        let e = PlannerError::InvalidReport {
            invocation: Some(7),
            reason: "EOF".into(),
        };
        assert_eq!(e.to_string(), "the planner's report of invocation 7 is not valid: EOF");
        let e = PlannerError::InvalidReport {
            invocation: None,
            reason: "EOF".into(),
        };
        assert_eq!(e.to_string(), "the planner sent a report that is not valid: EOF");
    }

    #[test]
    fn the_size_of_an_invocation_grows_with_its_input() {
        let small = Invocation::new("wf".into(), None, b"{}".to_vec(), None);
        let large = Invocation::new("wf".into(), Some(2), vec![b' '; 1000], Some(5));
        assert!(large.encoded_len() > small.encoded_len() + 1000);
    }

    #[tokio::test]
    async fn an_address_that_is_not_one_is_unreachable_and_says_why() {
        let e = Planner::connect("not an address", None, &Transport::Plain)
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("cannot reach the planner at not an address: `not an address` is not a planner address"),
            "{text}"
        );
    }
}
