//! The `Planner` gRPC server adapter: turns requests into calls on [`PlannerService`] and its
//! answers into responses.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use faasflow_proto::v1 as pb;
use faasflow_rpc::auth::Check;
use faasflow_rpc::channel::MAX_MESSAGE;
use faasflow_rpc::serve::Peer;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use faasflow_core::dag::Workflow;
use faasflow_core::plan::Mode;

use crate::config::KEPT_REPORTS;
use crate::measure::Measured;
use crate::registry::{HeldPlan, Load};
use crate::service::PlannerService;
use crate::service::deploy::DeploySource;
use crate::service::executions::ExecutionFilter;
use crate::service::invoke::{Ending, InvokeRequest};
use crate::service::undeploy::{VersionDescription, WorkflowSummary};
use crate::service::workers::Registration;
use crate::versions::find_version;
use faasflow_rpc::convert::state::{execution_status_from_proto, execution_to_proto};

impl PlannerService {
    /// The tonic server for this service (refusing calls without the token, when it has one).
    pub fn into_server(self) -> InterceptedService<pb::planner_server::PlannerServer<Self>, Check> {
        let check = Check::new(self.inner.config.token.clone(), "the planner");
        InterceptedService::new(
            pb::planner_server::PlannerServer::new(self)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            check,
        )
    }
}

/// Over TLS, a worker is who its certificate says: a call on behalf of worker `name` must
/// come with the certificate the cluster CA issued to `name` (never a counter or a claim).
fn as_worker<T>(request: &Request<T>, name: &str) -> Result<(), Status> {
    match Peer::of(request) {
        Some(peer) if peer.tls => match &peer.node {
            Some(node) if node == name => Ok(()),
            Some(node) => Err(Status::permission_denied(format!(
                "a worker cannot speak as `{name}` with the certificate of node `{node}`: start each daemon with its own \
                 name (--name) and its own certificate (--certs)"
            ))),
            None => Err(Status::permission_denied(format!(
                "worker `{name}` presented no certificate of the cluster CA: a daemon registers with the certificate \
                 `faasflow cluster init` issued to its name (--certs DIR)"
            ))),
        },
        _ => Ok(()),
    }
}

#[tonic::async_trait]
impl pb::planner_server::Planner for PlannerService {
    type ReadExecutionOutputStream =
        std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<pb::ExecutionOutputChunk, Status>> + Send>>;

    async fn read_execution_output(
        &self,
        request: Request<pb::ReadExecutionOutputRequest>,
    ) -> Result<Response<Self::ReadExecutionOutputStream>, Status> {
        use futures_util::StreamExt as _;
        let req = request.into_inner();
        let (_, stream) = PlannerService::read_execution_output(self, req.execution_id, &req.name, req.element).await?;
        Ok(Response::new(Box::pin(stream.map(|r| {
            r.map(|c| pb::ExecutionOutputChunk {
                total_bytes: c.total,
                offset: c.offset,
                data: c.data,
            })
            .map_err(|e| Status::unavailable(e.to_string()))
        }))))
    }

    async fn upload(
        &self,
        request: Request<tonic::Streaming<pb::UploadChunk>>,
    ) -> Result<Response<pb::UploadResponse>, Status> {
        use futures_util::StreamExt as _;
        let mut stream = request.into_inner();
        let first = stream.message().await?;
        let declared = first.as_ref().and_then(|c| c.declared_bytes);
        let first = first.map(|c| Ok(bytes::Bytes::from(c.data)));
        let rest = stream.map(|r| {
            r.map(|c| bytes::Bytes::from(c.data))
                .map_err(|s| s.message().to_owned())
        });
        let body = futures_util::stream::iter(first).chain(rest);
        let (upload_id, bytes) = self.uploads()?.receive(declared, body).await?;
        Ok(Response::new(pb::UploadResponse { upload_id, bytes }))
    }

    async fn register_worker(
        &self,
        request: Request<pb::RegisterWorkerRequest>,
    ) -> Result<Response<pb::RegisterWorkerResponse>, Status> {
        as_worker(&request, &request.get_ref().name)?;
        let interval = self.register(registration(request.into_inner())?).await?;
        Ok(Response::new(pb::RegisterWorkerResponse {
            heartbeat_interval_ms: u32::try_from(interval.as_millis()).unwrap_or(u32::MAX),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        as_worker(&request, &request.get_ref().name)?;
        let req = request.into_inner();
        let load = Load {
            instances: req.instances,
            calls: req.calls,
            arena_used: req.arena_bytes_used,
            arena_bytes: req.arena_bytes,
        };
        let known = self.beat(&req.name, req.incarnation, held_plans(&req.plans), load);
        let executions_acked = if known {
            self.executions_heard(&req.name, &req.executions_running, &req.executions_ended)
        } else {
            Vec::new()
        };
        Ok(Response::new(pb::HeartbeatResponse {
            known_worker: known,
            install: Vec::new(),
            drop: Vec::new(),
            executions_acked,
        }))
    }

    async fn deploy(&self, request: Request<pb::DeployRequest>) -> Result<Response<pb::DeployResponse>, Status> {
        let req = request.into_inner();
        let mode = match pb::Mode::try_from(req.mode) {
            Ok(pb::Mode::WorkerSp) | Ok(pb::Mode::Unspecified) => Mode::WorkerSp,
            Ok(pb::Mode::MasterSp) => Mode::MasterSp,
            Ok(pb::Mode::WorkerSpRemote) => Mode::WorkerSpRemote,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "Deploy: `mode` {} is unknown",
                    req.mode
                )));
            }
        };
        let made = self
            .deploy_source(DeploySource {
                source: req.source,
                file_name: req.file_name,
                default_name: req.default_name,
                code_dir: req.code_dir,
                mode,
                allow_overcommit: req.allow_overcommit,
            })
            .await?;
        Ok(Response::new(pb::DeployResponse {
            workflow: made.workflow,
            version: made.version,
            plan: Some(made.plan.proto().clone()),
        }))
    }

    async fn invoke(&self, request: Request<pb::InvokeRequest>) -> Result<Response<pb::InvokeResponse>, Status> {
        let (answer, planner_us) = self.invoke_counted(invoke_request(request.into_inner())).await?;
        Ok(Response::new(pb::InvokeResponse {
            invocation_id: answer.invocation_id,
            status: match answer.status {
                Ending::Succeeded => pb::InvocationStatus::Succeeded,
                Ending::Failed => pb::InvocationStatus::Failed,
                Ending::DeadlineExceeded => pb::InvocationStatus::DeadlineExceeded,
            } as i32,
            output_json: answer.output_json,
            error: answer.error,
            report_json: answer.report_json,
            filled_inputs: u32::try_from(answer.filled.0).unwrap_or(u32::MAX),
            filled_bytes: answer.filled.1,
            planner_us,
        }))
    }

    async fn get_plan(&self, request: Request<pb::GetPlanRequest>) -> Result<Response<pb::GetPlanResponse>, Status> {
        let req = request.into_inner();
        let state = self.state();
        let Some(deployed) = state.workflows.get(&req.workflow) else {
            return Err(self.not_found_workflow(&state, &req.workflow));
        };
        let index = find_version(&req.workflow, deployed, req.version).map_err(|e| Status::not_found(e.0))?;
        Ok(Response::new(pb::GetPlanResponse {
            plan: Some(deployed.versions[index].wire.proto().clone()),
        }))
    }

    async fn metrics(&self, _request: Request<pb::MetricsRequest>) -> Result<Response<pb::MetricsResponse>, Status> {
        let registered: Vec<pb::RegisteredWorker> = self
            .workers()
            .into_iter()
            .map(|w| pb::RegisteredWorker {
                name: w.name,
                grpc_addr: w.grpc_addr.to_string(),
                quic_addr: w.quic_addr.map(|a| a.to_string()).unwrap_or_default(),
                slots: w.slots,
                silent_ms: w.silent_ms,
                lost: w.lost,
                instances: w.load.instances,
                calls: w.load.calls,
                arena_bytes_used: w.load.arena_used,
                arena_bytes: w.load.arena_bytes,
            })
            .collect();
        let state = self.state();
        let c = &self.inner.counters;
        Ok(Response::new(pb::MetricsResponse {
            invocations: c.invocations.load(Ordering::Relaxed),
            invocation_messages_sent: c.messages.sent.load(Ordering::Relaxed),
            invocation_messages_received: c.messages.received.load(Ordering::Relaxed),
            workers: registered.iter().filter(|w| !w.lost).count() as u32,
            versions: state.workflows.values().map(|d| d.versions.len() as u32).sum(),
            registered,
        }))
    }

    async fn report(&self, request: Request<pb::ReportRequest>) -> Result<Response<pb::ReportResponse>, Status> {
        let id = request.into_inner().invocation_id;
        let state = self.state();
        match state.reports.iter().find(|(i, _, _)| *i == id) {
            Some((_, workflow, json)) => Ok(Response::new(pb::ReportResponse {
                workflow: workflow.clone(),
                report_json: json.to_vec(),
            })),
            None => Err(Status::not_found(format!(
                "the planner has no report of invocation {id}: it keeps the reports of the latest {KEPT_REPORTS} \
                 invocations{}",
                match (state.reports.front(), state.reports.back()) {
                    (Some((first, _, _)), Some((last, _, _))) => format!(" (now {first} to {last})"),
                    _ => ", and none has ended yet".to_owned(),
                }
            ))),
        }
    }

    async fn list_workflows(
        &self,
        _request: Request<pb::ListWorkflowsRequest>,
    ) -> Result<Response<pb::ListWorkflowsResponse>, Status> {
        let workflows = self.workflows().into_iter().map(workflow_info).collect();
        Ok(Response::new(pb::ListWorkflowsResponse { workflows }))
    }

    async fn describe_workflow(
        &self,
        request: Request<pb::DescribeWorkflowRequest>,
    ) -> Result<Response<pb::DescribeWorkflowResponse>, Status> {
        let (summary, versions) = PlannerService::describe_workflow(self, &request.into_inner().workflow)?;
        Ok(Response::new(pb::DescribeWorkflowResponse {
            workflow: Some(workflow_info(summary)),
            versions: versions.into_iter().map(version_detail).collect(),
        }))
    }

    async fn cancel_execution(
        &self,
        request: Request<pb::CancelExecutionRequest>,
    ) -> Result<Response<pb::Execution>, Status> {
        let req = request.into_inner();
        let e = PlannerService::cancel_execution(self, req.execution_id, &req.reason).await?;
        Ok(Response::new(execution_to_proto(&e, true)))
    }

    async fn undeploy(&self, request: Request<pb::UndeployRequest>) -> Result<Response<pb::UndeployResponse>, Status> {
        let req = request.into_inner();
        if req.workflow.is_empty() {
            return Err(Status::invalid_argument(
                "Undeploy: `workflow` is empty; name the workflow to remove",
            ));
        }
        let drain = (req.drain_ms > 0).then(|| std::time::Duration::from_millis(req.drain_ms));
        let u = PlannerService::undeploy(self, &req.workflow, drain).await?;
        Ok(Response::new(pb::UndeployResponse {
            versions: u.versions,
            workers: u.workers,
            drained: u.drained,
        }))
    }

    async fn start_execution(
        &self,
        request: Request<pb::StartExecutionRequest>,
    ) -> Result<Response<pb::StartExecutionResponse>, Status> {
        let req = request.into_inner();
        let invoke = req
            .invoke
            .ok_or_else(|| Status::invalid_argument("StartExecution: `invoke` is missing"))?;
        let invoke = invoke_request(invoke);
        let (execution_id, existing) = PlannerService::start_execution(self, invoke, req.idempotency_key).await?;
        Ok(Response::new(pb::StartExecutionResponse { execution_id, existing }))
    }

    async fn get_execution(
        &self,
        request: Request<pb::GetExecutionRequest>,
    ) -> Result<Response<pb::Execution>, Status> {
        let req = request.into_inner();
        let wait = std::time::Duration::from_millis(req.wait_ms);
        let e = self.execution_waiting(req.execution_id, wait).await?;
        Ok(Response::new(execution_to_proto(&e, true)))
    }

    async fn list_executions(
        &self,
        request: Request<pb::ListExecutionsRequest>,
    ) -> Result<Response<pb::ListExecutionsResponse>, Status> {
        let req = request.into_inner();
        let status = execution_status_from_proto(req.status, "status")
            .map_err(|e| Status::invalid_argument(format!("ListExecutions: {e}")))?;
        let filter = ExecutionFilter {
            workflow: (!req.workflow.is_empty()).then_some(req.workflow),
            status,
            since_unix_ms: req.since_unix_ms,
            limit: req.limit as usize,
            before_id: (req.before_id > 0).then_some(req.before_id),
        };
        let (page, more) = self.list_executions(&filter);
        Ok(Response::new(pb::ListExecutionsResponse {
            executions: page.iter().map(|e| execution_to_proto(e, false)).collect(),
            more,
        }))
    }

    async fn memory(&self, request: Request<pb::MemoryRequest>) -> Result<Response<pb::MemoryResponse>, Status> {
        let req = request.into_inner();
        let state = self.state();
        if !req.workflow.is_empty() && !state.workflows.contains_key(&req.workflow) {
            return Err(self.not_found_workflow(&state, &req.workflow));
        }
        let margin = self.inner.config.margin_mib;
        let workflows = state
            .workflows
            .iter()
            .filter(|(name, _)| req.workflow.is_empty() || **name == req.workflow)
            .filter_map(|(name, d)| {
                let v = d.versions.first()?;
                Some(workflow_memory(
                    name,
                    v.version,
                    &v.declared.wf,
                    &v.wf,
                    &d.measured,
                    margin,
                ))
            })
            .collect();
        Ok(Response::new(pb::MemoryResponse { workflows }))
    }
}

/// A workflow's memory: per task, declared and measured, and the quota `Σ O(v)` with
/// `O(v) = max(memory − use − μ, 0)` from either.
fn workflow_memory(
    name: &str,
    version: u64,
    wf: &Workflow,
    planned: &Workflow,
    measured: &BTreeMap<String, Measured>,
    margin_mib: f64,
) -> pb::WorkflowMemory {
    const MIB: f64 = (1u64 << 20) as f64;
    let quota = |memory: u64, used: f64| -> u64 { (memory as f64 - used - margin_mib * MIB).max(0.0) as u64 };
    let tasks: Vec<pb::TaskMemory> = wf
        .graph
        .node_indices()
        .filter_map(|n| {
            let t = wf.graph[n].task()?;
            let memory = t.spec.memory_mib << 20;
            let declared = t.spec.memory_use_mib * MIB;
            let m = measured
                .get(&wf.graph[n].name)
                .filter(|m| m.peak_calls > 0)
                .map(|m| (m.peak, m.peak_calls));
            let declared_quota_bytes = quota(memory, declared);
            let planned_use = planned
                .graph
                .node_weights()
                .find(|p| p.name == wf.graph[n].name)
                .and_then(|p| p.task())
                .map_or(declared, |p| p.spec.memory_use_mib * MIB);
            Some(pb::TaskMemory {
                planned_use_bytes: planned_use as u64,
                task: wf.graph[n].name.clone(),
                memory_bytes: memory,
                declared_use_bytes: declared as u64,
                measured_peak_bytes: m.map(|(peak, _)| peak),
                calls_measured: m.map_or(0, |(_, n)| n),
                declared_quota_bytes,
                quota_bytes: m.map_or(declared_quota_bytes, |(peak, _)| quota(memory, peak as f64)),
            })
        })
        .collect();
    pb::WorkflowMemory {
        workflow: name.to_owned(),
        version,
        margin_mib,
        declared_quota_bytes: tasks.iter().map(|t| t.declared_quota_bytes).sum(),
        quota_bytes: tasks.iter().map(|t| t.quota_bytes).sum(),
        tasks,
    }
}

/// A registration checked: a name, addresses that parse, slots.
fn registration(req: pb::RegisterWorkerRequest) -> Result<Registration, Status> {
    if req.name.is_empty() {
        return Err(Status::invalid_argument("RegisterWorker: `name` is empty"));
    }
    if req.name.len() > 253 || req.name.chars().any(char::is_control) {
        return Err(Status::invalid_argument(format!(
            "RegisterWorker: the worker name {:?} is not a name (at most 253 bytes, no control characters)",
            req.name.chars().take(64).collect::<String>()
        )));
    }
    let grpc_addr: SocketAddr = req.grpc_addr.parse().map_err(|e| {
        Status::invalid_argument(format!(
            "RegisterWorker: `grpc_addr` of worker `{}` is `{}`, not an address (host:port): {e}",
            req.name, req.grpc_addr
        ))
    })?;
    let quic_addr = if req.quic_addr.is_empty() {
        None
    } else {
        Some(req.quic_addr.parse().map_err(|e| {
            Status::invalid_argument(format!(
                "RegisterWorker: `quic_addr` of worker `{}` is `{}`, not an address (host:port): {e}",
                req.name, req.quic_addr
            ))
        })?)
    };
    if req.slots == 0 {
        return Err(Status::invalid_argument(format!(
            "RegisterWorker: worker `{}` offers 0 slots",
            req.name
        )));
    }
    Ok(Registration {
        plans: held_plans(&req.plans),
        name: req.name,
        incarnation: req.incarnation,
        grpc_addr,
        quic_addr,
        slots: req.slots,
    })
}

/// The versions a daemon reports, as the registry keeps them.
fn held_plans(plans: &[pb::HeldPlan]) -> Vec<HeldPlan> {
    plans
        .iter()
        .map(|p| HeldPlan {
            workflow: p.workflow.clone(),
            version: p.version,
            dropping: p.dropping,
            digest: p.digest.clone(),
        })
        .collect()
}

/// A workflow as `ListWorkflows` shows it.
fn workflow_info(w: WorkflowSummary) -> pb::WorkflowInfo {
    pb::WorkflowInfo {
        name: w.name,
        last_version: w.last_version,
        undeploying: w.undeploying,
        versions: w
            .versions
            .into_iter()
            .map(|v| pb::VersionInfo {
                version: v.version,
                mode: faasflow_rpc::convert::mode_to_proto(v.mode),
                workers: v.workers,
                tasks: v.tasks,
                in_flight: v.in_flight,
                digest: v.digest,
            })
            .collect(),
    }
}

/// A version as `DescribeWorkflow` shows it: its source and a summary of its plan.
fn version_detail(v: VersionDescription) -> pb::VersionDetail {
    pb::VersionDetail {
        version: v.version,
        source: v.source,
        file_name: v.file_name,
        deployed_unix_ms: v.deployed_unix_ms,
        planned_unix_ms: v.planned_unix_ms,
        tasks: v
            .tasks
            .into_iter()
            .map(|(task, function, worker)| pb::TaskPlacement { task, function, worker })
            .collect(),
        edges: v
            .edges
            .into_iter()
            .map(|(tier, edges)| pb::TierEdges {
                tier: tier.as_str().to_owned(),
                edges,
            })
            .collect(),
        groups: v.groups,
        merges: v.merges,
        critical_path_ms: v.critical_path_ms,
    }
}

/// An invocation as a client asks for it (`Invoke`, `StartExecution`).
fn invoke_request(p: pb::InvokeRequest) -> InvokeRequest {
    InvokeRequest {
        workflow: p.workflow,
        version: p.version,
        input_json: p.input_json,
        deadline_ms: p.deadline_ms,
        fill_staged_scale: p.fill_staged_scale,
        execution: None,
        files: p.files.into_iter().collect(),
    }
}
