//! The daemon's gRPC side: the `Daemon` service the planner calls (install and drop plans,
//! start invocations with this daemon as their entry, status), and the client that registers
//! this worker with the planner and keeps it registered with heartbeats.
//!
//! A thin driver over [`Daemon`]: it converts messages at the boundary (plans through
//! `faasflow_rpc::convert`, the only place that trusts nothing of them), runs the
//! daemon's blocking calls on tokio's blocking pool, and waits for an invocation's report on
//! a oneshot channel (the report's callback runs on the daemon's loop thread and must not
//! block). What it does not do: plan, retry invocations, or decide anything the planner asks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use faasflow_rpc::auth::{Attach, AuthChannel, Check};
use faasflow_rpc::channel::Credentials;
use faasflow_rpc::tls::PLANNER_NODE;
use tonic::service::interceptor::InterceptedService;

use faasflow_proto::v1 as pb;
use faasflow_proto::v1::planner_client::PlannerClient;
use faasflow_rpc::convert::execute::{
    ExecDone, ExecObject, ExecValue, execute_request_from_proto, execute_response_to_proto,
};
use faasflow_rpc::convert::{plan_digest, plan_from_proto, short_digest};
use faasflow_rpc::status::describe;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::api::{DaemonError, ExecInput, Execute, Executed, Invoke, RemoteObject, Stats};
use crate::daemon::Daemon;

/// The `Daemon` gRPC service over a running [`Daemon`].
#[derive(Debug, Clone)]
pub struct DaemonService {
    daemon: Arc<Daemon>,
    credentials: Credentials,
    held: Arc<HeldReports>,
}

/// Most reports of ended executions held for the planner; past it the oldest is forgotten
/// (said in the log: that execution is then `lost` for a planner restarted meanwhile).
const MAX_HELD_REPORTS: usize = 10_000;

/// The executions whose invocations this daemon runs as their entry, and the reports of those
/// that ended here, held until the planner acknowledges them (in a heartbeat's answer, once it
/// has recorded them for good): a planner restarted while one ran learns from the heartbeats
/// that it ran on, and takes its report with `HeldReport`.
#[derive(Debug, Default)]
pub struct HeldReports {
    inner: std::sync::Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    /// Execution → the invocation running it here.
    running: std::collections::BTreeMap<u64, u64>,
    /// Execution → (invocation, report JSON).
    ended: HashMap<u64, (u64, Arc<[u8]>)>,
    /// `ended`'s keys, oldest first.
    order: std::collections::VecDeque<u64>,
}

impl HeldReports {
    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Execution `execution` runs here as `invocation`: a report held of an earlier run of it
    /// is stale.
    fn started(&self, execution: u64, invocation: u64) {
        let mut h = self.lock();
        h.running.insert(execution, invocation);
        if h.ended.remove(&execution).is_some() {
            h.order.retain(|e| *e != execution);
        }
    }

    /// The invocation running execution `execution` here.
    fn invocation_of(&self, execution: u64) -> Option<u64> {
        self.lock().running.get(&execution).copied()
    }

    /// Execution `execution` ended: its report is held (`None`: it did not run, nothing to hold).
    fn ended(&self, execution: u64, invocation: u64, report: Option<Arc<[u8]>>) {
        let mut h = self.lock();
        h.running.remove(&execution);
        let Some(report) = report else { return };
        if h.ended.insert(execution, (invocation, report)).is_none() {
            h.order.push_back(execution);
        }
        while h.order.len() > MAX_HELD_REPORTS {
            if let Some(old) = h.order.pop_front() {
                h.ended.remove(&old);
                tracing::warn!(
                    execution = old,
                    "the planner has not acknowledged this execution's report, and more than {MAX_HELD_REPORTS} are held: it is forgotten"
                );
            }
        }
    }

    /// The executions running, and those ended whose reports are held.
    fn lists(&self) -> (Vec<u64>, Vec<u64>) {
        let h = self.lock();
        let mut ended: Vec<u64> = h.ended.keys().copied().collect();
        ended.sort_unstable();
        (h.running.keys().copied().collect(), ended)
    }

    fn get(&self, execution: u64) -> Option<(u64, Arc<[u8]>)> {
        self.lock().ended.get(&execution).cloned()
    }

    /// The planner has recorded these for good.
    fn acked(&self, executions: &[u64]) {
        if executions.is_empty() {
            return;
        }
        let mut h = self.lock();
        for e in executions {
            h.ended.remove(e);
        }
        let Held { order, ended, .. } = &mut *h;
        order.retain(|e| ended.contains_key(e));
    }
}

impl DaemonService {
    /// Serves `daemon`; with `token`, calls without it are refused.
    /// The service of `daemon`; `credentials` are the token its callers must present (and it
    /// presents to the planner) and how it reaches the planner (TLS, or plain loopback).
    pub fn new(daemon: Arc<Daemon>, credentials: Credentials) -> Self {
        DaemonService {
            daemon,
            credentials,
            held: Arc::default(),
        }
    }

    /// The tonic server for this service.
    pub fn into_server(self) -> InterceptedService<pb::daemon_server::DaemonServer<Self>, Check> {
        // Over TLS, only the planner may call a daemon.
        let check = Check::new(
            self.credentials.token.clone(),
            &format!("worker `{}`", self.daemon.name()),
        )
        .planner_only();
        InterceptedService::new(
            pb::daemon_server::DaemonServer::new(self)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            check,
        )
    }

    /// Runs `f` with the daemon on the blocking pool (install, drop and the listings wait for
    /// the daemon's loop).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Daemon) -> Result<T, DaemonError> + Send + 'static,
    ) -> Result<T, Status> {
        let daemon = self.daemon.clone();
        in_worker(&self.daemon, move || f(&daemon))
            .await
            .map_err(|e| Status::internal(format!("the daemon's task failed: {e}")))?
            .map_err(|e| match e {
                DaemonError::Stopped => Status::unavailable(format!("daemon `{}` has stopped", self.daemon.name())),
                other => Status::failed_precondition(other.to_string()),
            })
    }

    /// Puts the input the stream carries: its length.
    async fn put(&self, mut stream: tonic::Streaming<pb::PutInputChunk>) -> Result<u64, Status> {
        use crate::api::Put;
        let Some(first) = stream.message().await? else {
            return Err(Status::invalid_argument(
                "PutInput: the stream is empty; its first message names the input",
            ));
        };
        let (invocation, name, len) = (first.invocation_id, first.name.clone(), first.len);
        let begin = Put::Begin {
            invocation,
            workflow: first.workflow,
            version: first.version,
            name: name.clone(),
            len,
        };
        let file = self.put_step(begin).await?;
        let written = match file {
            Some(path) => put_file(&path, first.data, &mut stream, len).await,
            None => self.put_arena(invocation, &name, first.data, &mut stream, len).await,
        };
        let ok = matches!(written, Ok(n) if n == len);
        let ended = self
            .put_step(Put::End {
                invocation,
                name: name.clone(),
                ok,
            })
            .await;
        let received = written?;
        if received != len {
            return Err(Status::invalid_argument(format!(
                "input `{name}` of invocation {invocation}: {received} bytes came, not the {len} announced"
            )));
        }
        ended?;
        Ok(received)
    }

    /// One step of a put, on the loop.
    async fn put_step(&self, put: crate::api::Put) -> Result<Option<std::path::PathBuf>, Status> {
        self.blocking(move |d| d.put_input(put)).await?.map_err(|e| match e {
            crate::api::InputError::Overloaded(why) => Status::resource_exhausted(why),
            other => Status::failed_precondition(other.to_string()),
        })
    }

    /// Copies a put's bytes into the arena, piece by piece, on the loop; how many came.
    async fn put_arena(
        &self,
        invocation: u64,
        name: &str,
        first: Vec<u8>,
        stream: &mut tonic::Streaming<pb::PutInputChunk>,
        len: u64,
    ) -> Result<u64, Status> {
        let mut offset = 0u64;
        let mut data = first;
        loop {
            if !data.is_empty() {
                let n = data.len() as u64;
                if offset + n > len {
                    return Ok(offset + n);
                }
                let put = crate::api::Put::Bytes {
                    invocation,
                    name: name.to_owned(),
                    offset,
                    bytes: bytes::Bytes::from(data),
                };
                self.put_step(put).await?;
                offset += n;
            }
            match stream.message().await? {
                Some(chunk) => data = chunk.data,
                None => return Ok(offset),
            }
        }
    }
}

/// Writes a put's bytes to its spill file; how many came.
async fn put_file(
    path: &std::path::Path,
    first: Vec<u8>,
    stream: &mut tonic::Streaming<pb::PutInputChunk>,
    len: u64,
) -> Result<u64, Status> {
    use tokio::io::AsyncWriteExt;
    let failed = |e: std::io::Error| Status::internal(format!("cannot write spill file {}: {e}", path.display()));
    let mut file = tokio::fs::File::create(path).await.map_err(failed)?;
    let mut n = 0u64;
    let mut data = first;
    loop {
        n += data.len() as u64;
        if n > len {
            return Ok(n);
        }
        file.write_all(&data).await.map_err(failed)?;
        match stream.message().await? {
            Some(chunk) => data = chunk.data,
            None => break,
        }
    }
    file.flush().await.map_err(failed)?;
    Ok(n)
}

/// Runs `f` on tokio's blocking pool, inside `daemon`'s worker span.
fn in_worker<T: Send + 'static>(daemon: &Daemon, f: impl FnOnce() -> T + Send + 'static) -> tokio::task::JoinHandle<T> {
    let span = daemon.span().clone();
    tokio::task::spawn_blocking(move || span.in_scope(f))
}

/// Bytes of a kept output per `ReadOutput` message.
const OUTPUT_CHUNK: u64 = 4 << 20;

/// Pieces of an output read ahead of the one being sent.
const READ_AHEAD: usize = 2;

/// Reads the pieces of the kept output a `ReadOutput` request names: from the daemon's loop
/// (arena, spill file), or from the remote tier where the loop says it is.
struct OutputReader {
    daemon: Arc<Daemon>,
    req: pb::ReadOutputRequest,
    /// Connected at the first piece in the remote tier.
    remote: Option<faasflow_remote::RemoteStore>,
}

impl OutputReader {
    /// The piece from `offset`.
    async fn piece(&mut self, offset: u64) -> Result<pb::OutputChunk, Status> {
        let d = self.daemon.clone();
        let (invocation, name, element) = (self.req.invocation_id, self.req.name.clone(), self.req.element);
        let read = in_worker(&self.daemon, move || {
            d.read_output(invocation, &name, element, offset, OUTPUT_CHUNK)
        })
        .await
        .map_err(|e| Status::internal(format!("the daemon's task failed: {e}")))?
        .map_err(|_| self.stopped())?;
        let worker = self.daemon.name().to_owned();
        let data_loss =
            |what: String| Status::data_loss(format!("worker `{worker}`: output `{}`: {what}", self.req.name));
        match read {
            Ok(crate::api::OutputPiece::Bytes { total, bytes }) => Ok(pb::OutputChunk {
                total_bytes: total,
                offset,
                data: bytes,
            }),
            Ok(crate::api::OutputPiece::File { total, path, end }) => {
                let data = tokio::task::spawn_blocking(move || {
                    use std::os::unix::fs::FileExt as _;
                    let mut buf = vec![0u8; usize::try_from(end - offset).unwrap_or(0)];
                    std::fs::File::open(&path)
                        .and_then(|f| f.read_exact_at(&mut buf, offset))
                        .map(|()| buf)
                        .map_err(|e| format!("its spill file {}: {e}", path.display()))
                })
                .await
                .map_err(|e| Status::internal(format!("the daemon's task failed: {e}")))?
                .map_err(data_loss)?;
                Ok(pb::OutputChunk {
                    total_bytes: total,
                    offset,
                    data,
                })
            }
            Ok(crate::api::OutputPiece::Remote { total, key, end }) => {
                if self.remote.is_none() {
                    let url = self
                        .daemon
                        .redis_url()
                        .ok_or_else(|| data_loss("it is in the remote tier, and this worker has no --redis".into()))?;
                    let store = faasflow_remote::RemoteStore::connect(url, PLANNER_CALL_TIMEOUT)
                        .await
                        .map_err(|e| data_loss(format!("the remote tier: {e}")))?;
                    self.remote = Some(store);
                }
                let store = self.remote.as_ref().ok_or_else(|| data_loss("no remote tier".into()))?;
                let data = store
                    .get_range(&key, offset, end)
                    .await
                    .map_err(|e| data_loss(format!("the remote tier: {e}")))?
                    .ok_or_else(|| data_loss(format!("{key} is no longer in the remote tier")))?;
                if data.len() as u64 != end - offset {
                    return Err(data_loss(format!(
                        "the remote tier holds {} bytes at {offset}, not {}",
                        data.len(),
                        end - offset
                    )));
                }
                Ok(pb::OutputChunk {
                    total_bytes: total,
                    offset,
                    data,
                })
            }
            Err(e) => {
                let message = format!("worker `{worker}`: {e}");
                Err(match e {
                    crate::api::OutputError::NotKept(_) => Status::not_found(message),
                    crate::api::OutputError::PastEnd { .. } => Status::out_of_range(message),
                    _ => Status::data_loss(message),
                })
            }
        }
    }

    fn stopped(&self) -> Status {
        Status::unavailable(format!("daemon `{}` has stopped", self.daemon.name()))
    }
}

/// Largest gRPC message the services accept or send (plans of 100,000 functions fit).
pub const MAX_MESSAGE: usize = 256 << 20;

#[tonic::async_trait]
impl pb::daemon_server::Daemon for DaemonService {
    async fn install_plan(
        &self,
        request: Request<pb::InstallPlanRequest>,
    ) -> Result<Response<pb::InstallPlanResponse>, Status> {
        let req = request.into_inner();
        let plan = req
            .plan
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("InstallPlan: `plan` is missing"))?;
        let (wf, plan, cluster) = plan_from_proto(plan)
            .map_err(|e| Status::invalid_argument(format!("InstallPlan: the plan is invalid: {e}")))?;
        let mut peers = HashMap::new();
        for (i, p) in req.peers.iter().enumerate() {
            let addr: SocketAddr = p.quic_addr.parse().map_err(|e| {
                Status::invalid_argument(format!(
                    "InstallPlan: `peers[{i}].quic_addr` of worker `{}` is `{}`, not an address (host:port): {e}",
                    p.name, p.quic_addr
                ))
            })?;
            peers.insert(p.name.clone(), addr);
        }
        let digest = plan_digest(req.plan.as_ref().unwrap_or(&pb::Plan::default()));
        let (name, version) = (wf.name.clone(), plan.version);
        let held = self
            .blocking(move |d| d.plans())
            .await?
            .into_iter()
            .find(|p| p.workflow == name && p.version == version);
        if let Some(held) = held {
            if held.digest == digest && !held.dropping {
                return Ok(Response::new(pb::InstallPlanResponse {
                    already_installed: true,
                }));
            }
            // Never answer for a plan with another one: stale code would run.
            let what = if held.digest == digest {
                "is being dropped here (it is removed when its invocations end)".to_owned()
            } else {
                format!(
                    "is installed here with another plan (digest {}, this one {})",
                    short_digest(&held.digest),
                    short_digest(&digest)
                )
            };
            return Err(Status::already_exists(format!(
                "worker `{}`: workflow `{}` version {} {what}; deploy it as a new version",
                self.daemon.name(),
                held.workflow,
                held.version
            )));
        }
        let wf = Arc::new(wf);
        let daemon = self.daemon.clone();
        in_worker(&self.daemon, move || {
            daemon.install_plan_as(wf, plan, &cluster, &peers, digest)
        })
        .await
        .map_err(|e| Status::internal(format!("the install task failed: {e}")))?
        .map_err(|e| match e {
            DaemonError::Stopped => Status::unavailable("the daemon has stopped"),
            other => Status::invalid_argument(other.to_string()),
        })?;
        Ok(Response::new(pb::InstallPlanResponse {
            already_installed: false,
        }))
    }

    async fn drop_plan(&self, request: Request<pb::DropPlanRequest>) -> Result<Response<pb::DropPlanResponse>, Status> {
        let req = request.into_inner();
        let daemon = self.daemon.clone();
        let in_flight = in_worker(&self.daemon, move || daemon.drop_plan(&req.workflow, req.version))
            .await
            .map_err(|e| Status::internal(format!("the drop task failed: {e}")))?
            .map_err(|e| match e {
                DaemonError::Stopped => Status::unavailable("the daemon has stopped"),
                other => Status::not_found(other.to_string()),
            })?;
        Ok(Response::new(pb::DropPlanResponse { in_flight }))
    }

    async fn invoke(
        &self,
        request: Request<pb::DaemonInvokeRequest>,
    ) -> Result<Response<pb::DaemonInvokeResponse>, Status> {
        let req = request.into_inner();
        let input: serde_json::Value = serde_json::from_slice(&req.input_json).map_err(|e| {
            Status::invalid_argument(format!(
                "invocation {}: the input is not valid JSON: {e}",
                req.invocation_id
            ))
        })?;
        let invoke = Invoke::new(req.workflow, req.version, input)
            .with_id(req.invocation_id)
            .with_deadline((req.deadline_ms > 0).then(|| Duration::from_millis(req.deadline_ms)));
        let invoke = Invoke {
            keep_outputs: (req.keep_outputs_ms > 0).then(|| Duration::from_millis(req.keep_outputs_ms)),
            files: req.files,
            ..invoke
        };
        let running = self.daemon.invoke(invoke);
        let (execution, invocation) = (req.execution_id, req.invocation_id);
        let ended = if execution == 0 {
            running.await.map(|r| r.map(|report| serde_json::to_vec(&report)))
        } else {
            // An execution's report is held even when the planner that asked goes away
            // meanwhile (this handler is then dropped; the task is not).
            let held = self.held.clone();
            held.started(execution, invocation);
            let task = tokio::spawn(async move {
                let ended = running.await.map(|r| r.map(|report| serde_json::to_vec(&report)));
                let report = match &ended {
                    Some(Ok(Ok(json))) => Some(Arc::from(json.as_slice())),
                    _ => None,
                };
                held.ended(execution, invocation, report);
                ended
            });
            task.await
                .map_err(|e| Status::internal(format!("invocation {invocation}: {e}")))?
        };
        let response = match ended {
            Some(Ok(report)) => pb::DaemonInvokeResponse {
                accepted: true,
                reason: String::new(),
                report_json: report.map_err(|e| Status::internal(format!("cannot encode the report: {e}")))?,
            },
            Some(Err(DaemonError::Stopped)) | None => {
                return Err(Status::unavailable(format!(
                    "daemon `{}` stopped during invocation {}",
                    self.daemon.name(),
                    req.invocation_id
                )));
            }
            Some(Err(DaemonError::Overloaded(why))) => return Err(Status::resource_exhausted(why)),
            Some(Err(e)) => pb::DaemonInvokeResponse {
                accepted: false,
                reason: e.to_string(),
                report_json: Vec::new(),
            },
        };
        Ok(Response::new(response))
    }

    async fn execute(&self, request: Request<pb::ExecuteRequest>) -> Result<Response<pb::ExecuteResponse>, Status> {
        let req = execute_request_from_proto(request.get_ref())
            .map_err(|e| Status::invalid_argument(format!("Execute: {e}")))?;
        let (invocation, node) = (req.invocation, req.node.index());
        let execution = self.daemon.execute(Execute {
            workflow: req.workflow,
            version: req.version,
            invocation: req.invocation,
            node: req.node,
            element: req.element,
            attempt: req.attempt,
            inputs: req.inputs.into_iter().map(|(n, v)| (n, exec_input(v))).collect(),
        });
        match execution.await {
            Some(result) => {
                let result = result.map(exec_done).map_err(|e| (e.message, e.kind));
                Ok(Response::new(execute_response_to_proto(&result)))
            }
            None => Err(Status::unavailable(format!(
                "daemon `{}` stopped while running step {node} of invocation {invocation}",
                self.daemon.name()
            ))),
        }
    }

    async fn worker_lost(
        &self,
        request: Request<pb::WorkerLostRequest>,
    ) -> Result<Response<pb::WorkerLostResponse>, Status> {
        let req = request.into_inner();
        if req.name.is_empty() {
            return Err(Status::invalid_argument("WorkerLost: `name` is empty"));
        }
        let aborted = self.blocking(move |d| d.worker_lost(&req.name, &req.reason)).await?;
        Ok(Response::new(pb::WorkerLostResponse { aborted }))
    }

    async fn cancel(&self, request: Request<pb::CancelRequest>) -> Result<Response<pb::CancelResponse>, Status> {
        let req = request.into_inner();
        // A planner started again knows an execution, not its invocation.
        let invocation = match (req.invocation_id, req.execution_id) {
            (0, 0) => {
                return Err(Status::invalid_argument(
                    "Cancel: neither `invocation_id` nor `execution_id` is set",
                ));
            }
            (0, e) => match self.held.invocation_of(e) {
                Some(i) => i,
                None => return Ok(Response::new(pb::CancelResponse { running: false })),
            },
            (i, _) => i,
        };
        let running = self.blocking(move |d| d.cancel(invocation, &req.reason)).await?;
        Ok(Response::new(pb::CancelResponse { running }))
    }

    type ReadOutputStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<pb::OutputChunk, Status>> + Send>>;

    async fn read_output(
        &self,
        request: Request<pb::ReadOutputRequest>,
    ) -> Result<Response<Self::ReadOutputStream>, Status> {
        let req = request.into_inner();
        let offset = req.offset;
        let mut reader = OutputReader {
            daemon: self.daemon.clone(),
            req,
            remote: None,
        };
        // The first piece now, so that an output that is not here is an error of the call.
        let first = reader.piece(offset).await?;
        // The pieces after it are read ahead of the sender (`READ_AHEAD` queued, one more in
        // the reading task's hands: at most 16 MiB per read), so the reading overlaps the
        // sending; none once the reader has gone. The reader says
        // when it has passed the last byte on (`OutputRead`): a reader gone before then lets
        // nothing go.
        let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
        let mut end = first.offset + first.data.len() as u64;
        let more = end < first.total_bytes && !first.data.is_empty();
        let total = first.total_bytes;
        let _ = tx.try_send(Ok(first));
        if more {
            tokio::spawn(async move {
                while end < total {
                    let piece = reader.piece(end).await;
                    let stop = match &piece {
                        Ok(p) => {
                            end += p.data.len() as u64;
                            p.data.is_empty()
                        }
                        Err(_) => true,
                    };
                    if tx.send(piece).await.is_err() || stop {
                        break;
                    }
                }
            });
        }
        let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|p| (p, rx)) });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn output_read(
        &self,
        request: Request<pb::OutputReadRequest>,
    ) -> Result<Response<pb::OutputReadResponse>, Status> {
        let r = request.into_inner();
        self.blocking(move |d| d.output_read(r.invocation_id, &r.name, r.element))
            .await?;
        Ok(Response::new(pb::OutputReadResponse {}))
    }

    async fn release_outputs(
        &self,
        request: Request<pb::ReleaseOutputsRequest>,
    ) -> Result<Response<pb::ReleaseOutputsResponse>, Status> {
        let ids = request.into_inner().invocation_ids;
        let released = self.blocking(move |d| d.release_outputs(ids)).await?;
        Ok(Response::new(pb::ReleaseOutputsResponse { released }))
    }

    async fn put_input(
        &self,
        request: Request<tonic::Streaming<pb::PutInputChunk>>,
    ) -> Result<Response<pb::PutInputResponse>, Status> {
        // In a task of its own: a call cut short (the planner's deadline, a reset) drops this
        // handler, not the put, which then reads the stream's end and lets go of its room.
        let this = self.clone();
        let stream = request.into_inner();
        let len = tokio::spawn(async move { this.put(stream).await })
            .await
            .map_err(|e| Status::internal(format!("the daemon's task failed: {e}")))??;
        Ok(Response::new(pb::PutInputResponse { len }))
    }

    async fn held_report(
        &self,
        request: Request<pb::HeldReportRequest>,
    ) -> Result<Response<pb::HeldReportResponse>, Status> {
        let execution = request.into_inner().execution_id;
        Ok(Response::new(match self.held.get(execution) {
            Some((invocation_id, report)) => pb::HeldReportResponse {
                found: true,
                invocation_id,
                report_json: report.to_vec(),
            },
            None => pb::HeldReportResponse::default(),
        }))
    }

    async fn status(&self, _request: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        let (plans, stats) = self.blocking(|d| Ok((d.plans()?, d.stats()?))).await?;
        Ok(Response::new(pb::StatusResponse {
            worker: self.daemon.name().to_owned(),
            plans: plans
                .into_iter()
                .map(|p| pb::InstalledPlan {
                    workflow: p.workflow,
                    version: p.version,
                    in_flight: p.in_flight,
                    dropping: p.dropping,
                })
                .collect(),
            instances: u32::try_from(stats.instances).unwrap_or(u32::MAX),
            arena_bytes_used: stats.arena_used,
        }))
    }
}

fn remote_object(o: ExecObject) -> RemoteObject {
    RemoteObject {
        key: o.key,
        len: o.len,
        json: o.json,
    }
}

fn exec_input(v: ExecValue) -> ExecInput {
    match v {
        ExecValue::Absent => ExecInput::Absent,
        ExecValue::Json(j) => ExecInput::Json(j),
        ExecValue::Object(o) => ExecInput::Object(remote_object(o)),
        ExecValue::List(l) => ExecInput::List(l.into_iter().map(remote_object).collect()),
    }
}

fn exec_done(e: Executed) -> ExecDone {
    ExecDone {
        outputs: e
            .outputs
            .into_iter()
            .map(|(n, o)| {
                (
                    n,
                    ExecObject {
                        key: o.key,
                        len: o.len,
                        json: o.json,
                    },
                )
            })
            .collect(),
        record: e.record,
        edges: e.edges,
        data_us: e.data_us,
    }
}

/// What the daemon serves over HTTP beside gRPC, on its port: `GET /metrics`, Prometheus text.
pub fn http_router(daemon: Arc<Daemon>) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let daemon = daemon.clone();
            async move {
                use axum::response::IntoResponse;
                let text = tokio::task::spawn_blocking(move || daemon.metrics_text()).await;
                match text {
                    Ok(Ok(text)) => (
                        [(axum::http::header::CONTENT_TYPE, faasflow_rpc::metrics::CONTENT_TYPE)],
                        text,
                    )
                        .into_response(),
                    Ok(Err(e)) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
                    Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
                }
            }
        }),
    )
}

/// What a worker tells the planner about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The worker's name.
    pub name: String,
    /// Where its `Daemon` gRPC service listens.
    pub grpc_addr: SocketAddr,
    /// Where its QUIC peer endpoint listens (none without a peer transport).
    pub quic_addr: Option<SocketAddr>,
    /// Container slots it offers.
    pub slots: u32,
    /// Memory it offers to functions, MiB.
    pub memory_mib: u64,
}

/// First wait between attempts to reach the planner; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between attempts to reach the planner.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Time limit of one call to the planner.
const PLANNER_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Registers with the planner at `planner` (`host:port`), retrying with backoff until it
/// answers, then sends heartbeats at the interval it asks for, registering again whenever it
/// no longer knows this worker (it restarted, or declared the worker lost). Runs until the
/// task is dropped; logs what happens, one line per change, inside the worker's span. The
/// heartbeats carry `service`'s executions, running and ended (their reports held until the
/// planner acknowledges them).
pub async fn keep_registered(planner: String, me: Registration, service: DaemonService) {
    let span = service.daemon.span().clone();
    register_for_good(planner, me, service).instrument(span).await;
}

async fn register_for_good(planner: String, me: Registration, service: DaemonService) {
    let DaemonService {
        daemon,
        credentials: Credentials { token, transport },
        held,
    } = service;
    let channel = match transport.lazy(&planner, PLANNER_NODE, Some(PLANNER_CALL_TIMEOUT)) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(planner = %planner, cause = %e, "the planner address is not valid");
            return;
        }
    };
    let client = PlannerClient::with_interceptor(channel, Attach::new(token));
    let incarnation = incarnation();
    loop {
        let interval = register(&client, &planner, &me, &daemon, incarnation).await;
        heartbeats(&client, &planner, &me, (&daemon, &held), incarnation, interval).await;
    }
}

/// A number new at every start of the daemon (random: the planner tells a restarted worker
/// from the one it knew by it, whatever the clocks say).
fn incarnation() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // `RandomState` is seeded from the system's random source, per process.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish().max(1)
}

/// What the daemon holds, as the planner is told: its plan versions and its instances (one
/// trip to the daemon's loop thread).
async fn holdings(daemon: &Arc<Daemon>) -> (Vec<pb::HeldPlan>, Option<Stats>) {
    let d = daemon.clone();
    let (plans, stats) = in_worker(daemon, move || (d.plans().unwrap_or_default(), d.stats().ok()))
        .await
        .unwrap_or_default();
    let plans = plans
        .into_iter()
        .map(|p| pb::HeldPlan {
            workflow: p.workflow,
            version: p.version,
            digest: p.digest,
            dropping: p.dropping,
        })
        .collect();
    (plans, stats)
}

/// Registers, retrying until the planner answers: the heartbeat interval.
async fn register(
    client: &PlannerClient<AuthChannel>,
    planner: &str,
    me: &Registration,
    daemon: &Arc<Daemon>,
    incarnation: u64,
) -> Duration {
    let mut backoff = FIRST_BACKOFF;
    let mut said = false;
    loop {
        let req = pb::RegisterWorkerRequest {
            name: me.name.clone(),
            grpc_addr: me.grpc_addr.to_string(),
            quic_addr: me.quic_addr.map(|a| a.to_string()).unwrap_or_default(),
            slots: me.slots,
            memory_mib: me.memory_mib,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            incarnation,
            plans: holdings(daemon).await.0,
        };
        match client.clone().register_worker(req).await {
            Ok(r) => {
                let r = r.into_inner();
                let interval = Duration::from_millis(u64::from(r.heartbeat_interval_ms.max(10)));
                tracing::info!(
                    planner = %planner,
                    incarnation = %format_args!("{incarnation:016x}"),
                    heartbeat_ms = interval.as_millis() as u64,
                    "registered with the planner"
                );
                return interval;
            }
            Err(status) if status.code() == tonic::Code::InvalidArgument => {
                // The planner refuses this registration: retrying the same will not help soon.
                tracing::warn!(planner = %planner, cause = %status.message(), "the planner refused to register this worker");
                backoff = MAX_BACKOFF;
            }
            Err(status) => {
                if !said {
                    tracing::warn!(
                        planner = %planner,
                        cause = %describe(&status),
                        "cannot reach the planner; retrying until it answers"
                    );
                    said = true;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Sends heartbeats until the planner no longer knows this worker.
async fn heartbeats(
    client: &PlannerClient<AuthChannel>,
    planner: &str,
    me: &Registration,
    (daemon, held): (&Arc<Daemon>, &HeldReports),
    incarnation: u64,
    interval: Duration,
) {
    let mut unreachable = false;
    loop {
        tokio::time::sleep(interval).await;
        let (plans, stats) = holdings(daemon).await;
        let stats = stats.unwrap_or_default();
        let (executions_running, executions_ended) = held.lists();
        let req = pb::HeartbeatRequest {
            name: me.name.clone(),
            incarnation,
            plans,
            instances: u32::try_from(stats.instances).unwrap_or(u32::MAX),
            calls: u32::try_from(stats.calls).unwrap_or(u32::MAX),
            arena_bytes_used: stats.arena_used,
            arena_bytes: stats.arena_capacity,
            pools: Vec::new(),
            profiles: Vec::new(),
            executions_running,
            executions_ended,
        };
        match client.clone().heartbeat(req).await {
            Ok(r) if r.get_ref().known_worker => {
                held.acked(&r.get_ref().executions_acked);
                if unreachable {
                    tracing::info!(planner = %planner, "the planner answers again");
                    unreachable = false;
                }
            }
            Ok(_) => {
                tracing::info!(planner = %planner, "the planner no longer knows this worker; registering again");
                return;
            }
            Err(status) => {
                if !unreachable {
                    tracing::warn!(
                        planner = %planner,
                        cause = %describe(&status),
                        "heartbeat to the planner failed; retrying"
                    );
                    unreachable = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod held_tests {
    use super::*;

    /// A report is held from its execution's end until acknowledged; a new run of the same
    /// execution here makes an earlier report stale (it is dropped, not taken later).
    #[test]
    fn reports_are_held_until_acknowledged_and_a_new_run_drops_a_stale_one() {
        let h = HeldReports::default();
        h.started(7, 70);
        assert_eq!(h.lists(), (vec![7], vec![]));
        assert_eq!(h.invocation_of(7), Some(70));
        h.ended(7, 70, Some(Arc::from(&b"{}"[..])));
        assert_eq!(h.lists(), (vec![], vec![7]));
        assert_eq!(h.get(7).map(|(i, _)| i), Some(70));
        h.started(7, 71);
        assert_eq!(h.lists(), (vec![7], vec![]), "the first run's report is stale");
        h.ended(7, 71, Some(Arc::from(&b"{}"[..])));
        h.ended(8, 80, None);
        assert_eq!(h.lists(), (vec![], vec![7]), "a run that did not start holds nothing");
        h.acked(&[7, 99]);
        assert_eq!(h.lists(), (vec![], vec![]));
        assert!(h.get(7).is_none());
    }
}
