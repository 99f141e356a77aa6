//! A client of one daemon's `Daemon` service that speaks the core's types: the control plane
//! installs and drops plan versions with it, starts invocations on an entry daemon, asks a
//! daemon which worker it is, tells it of a lost worker, and has it execute one step for the
//! central engine. Every failure is a [`DaemonError`] that names the worker and its address.

use std::net::SocketAddr;
use std::time::Duration;

use faasflow_core::dag::FailureKind;
use faasflow_proto::v1 as pb;
use faasflow_proto::v1::daemon_client::DaemonClient;
use tonic::Code;

use crate::auth::AuthChannel;
use crate::channel::{Credentials, daemon_client};
use crate::convert::WirePlan;
use crate::convert::execute::{ExecDone, ExecRequest, Owner, execute_request_to_proto, execute_response_from_proto};
use crate::status::{chain, describe, is_transport};

/// The daemon of a worker: its name, its address and a connection to it (which reconnects by
/// itself). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Daemon {
    name: String,
    addr: SocketAddr,
    client: DaemonClient<AuthChannel>,
}

/// Why a call to a daemon failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The connection failed (refused, reset, closed): the daemon is gone or unreachable.
    #[error("cannot reach worker `{worker}` at {addr}: {cause}; is its daemon running?")]
    Unreachable {
        worker: String,
        addr: SocketAddr,
        cause: String,
    },
    /// No answer within the call's time limit.
    #[error("worker `{worker}` at {addr} did not answer within {} ms", limit.as_millis())]
    Timeout {
        worker: String,
        addr: SocketAddr,
        limit: Duration,
    },
    /// The daemon has too much to do (`RESOURCE_EXHAUSTED`); `message` is its own.
    #[error("worker `{worker}` at {addr} is overloaded: {message}")]
    Overloaded {
        worker: String,
        addr: SocketAddr,
        message: String,
    },
    /// The daemon answered with an error; `message` is its status with the causes behind it.
    #[error("worker `{worker}` at {addr} refused: {message}")]
    Refused {
        worker: String,
        addr: SocketAddr,
        message: String,
    },
    /// The daemon's answer breaks the protocol.
    #[error("worker `{worker}` at {addr} sent an answer that breaks the protocol: {cause}")]
    Protocol {
        worker: String,
        addr: SocketAddr,
        cause: String,
    },
}

/// An invocation for its entry daemon to run.
#[derive(Debug, Clone)]
pub struct StartInvocation {
    pub workflow: String,
    pub version: u64,
    /// The id the control plane gave it.
    pub invocation: u64,
    /// The workflow's input, a JSON object.
    pub input_json: Vec<u8>,
    /// Its time limit, from when the daemon starts it.
    pub deadline: Duration,
    /// The execution it runs (`None`: a synchronous invoke): the daemon holds its report
    /// until the planner acknowledges it.
    pub execution: Option<u64>,
    /// Keep the outputs the report does not show whole this long, to be read
    /// ([`Daemon::read_output`]); `None`: freed at the end.
    pub keep_outputs: Option<Duration>,
    /// Inputs put on the daemon beforehand ([`Daemon::put_input`]), by name.
    pub files: Vec<String>,
}

/// Pieces a put input is sent in ([`Daemon::put_input`]).
pub const PUT_CHUNK: usize = 1 << 20;

/// A piece of an output read from its daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    /// The output's size, bytes.
    pub total: u64,
    /// Where `data` starts in it.
    pub offset: u64,
    pub data: Vec<u8>,
}

/// The pieces of an output, in order, as they come.
pub type OutputStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<OutputChunk, DaemonError>> + Send>>;

/// How an entry daemon answered an invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// It ran (to success or failure): its run report (JSON, docs/run-report.md).
    Ran { report_json: Vec<u8> },
    /// It did not start, and why.
    NotStarted { reason: String },
}

impl Daemon {
    /// A daemon whose connection is made at the first call (and again after it breaks).
    /// Must be called within a tokio runtime.
    pub fn lazy(name: &str, addr: SocketAddr, credentials: &Credentials) -> Daemon {
        let Credentials { token, transport } = credentials;
        // A socket address always makes a valid endpoint.
        let channel = transport
            .lazy(&addr.to_string(), name, None)
            .unwrap_or_else(|_| tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy());
        Daemon {
            name: name.to_owned(),
            addr,
            client: daemon_client(channel, token),
        }
    }

    /// A daemon over a connection made now, so that one that cannot be reached is named as
    /// such before anything is sent.
    pub async fn connect(name: &str, addr: SocketAddr, credentials: &Credentials) -> Result<Daemon, DaemonError> {
        let Credentials { token, transport } = credentials;
        let channel = transport
            .connect(&addr.to_string(), name)
            .await
            .map_err(|e| DaemonError::Unreachable {
                worker: name.to_owned(),
                addr,
                cause: chain(&e),
            })?;
        Ok(Daemon {
            name: name.to_owned(),
            addr,
            client: daemon_client(channel, token),
        })
    }

    /// The worker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The daemon's gRPC address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Installs `plan`, whose workers' peer (QUIC) addresses are `peers`.
    pub async fn install(
        &self,
        plan: &WirePlan,
        peers: &[(String, SocketAddr)],
        limit: Duration,
    ) -> Result<(), DaemonError> {
        let req = pb::InstallPlanRequest {
            plan: Some(plan.proto().clone()),
            peers: peers
                .iter()
                .map(|(name, addr)| pb::PeerAddress {
                    name: name.clone(),
                    quic_addr: addr.to_string(),
                })
                .collect(),
        };
        let mut client = self.client.clone();
        self.within(limit, client.install_plan(req)).await.map(drop)
    }

    /// Drops version `version` of `workflow`; one the daemon does not hold (dropped once, or
    /// its daemon started again) is what was asked.
    pub async fn drop_version(&self, workflow: &str, version: u64, limit: Duration) -> Result<(), DaemonError> {
        let req = pb::DropPlanRequest {
            workflow: workflow.to_owned(),
            version,
        };
        let mut client = self.client.clone();
        match tokio::time::timeout(limit, client.drop_plan(req)).await {
            Ok(Err(s)) if s.code() == Code::NotFound => Ok(()),
            Ok(r) => r.map(drop).map_err(|s| self.error(&s)),
            Err(_) => Err(self.timeout(limit)),
        }
    }

    /// The name of the worker the daemon says it is.
    pub async fn worker(&self, limit: Duration) -> Result<String, DaemonError> {
        let mut client = self.client.clone();
        let status = self.within(limit, client.status(pb::StatusRequest {})).await?;
        Ok(status.worker)
    }

    /// Tells the daemon that worker `lost` is lost, and why.
    pub async fn worker_lost(&self, lost: &str, reason: &str, limit: Duration) -> Result<(), DaemonError> {
        let req = pb::WorkerLostRequest {
            name: lost.to_owned(),
            reason: reason.to_owned(),
        };
        let mut client = self.client.clone();
        self.within(limit, client.worker_lost(req)).await.map(drop)
    }

    /// Cancels invocation `invocation` on this daemon; whether it ran there (one that has not
    /// started there yet never starts).
    pub async fn cancel(&self, invocation: u64, reason: &str, limit: Duration) -> Result<bool, DaemonError> {
        let req = pb::CancelRequest {
            invocation_id: invocation,
            reason: reason.to_owned(),
            execution_id: 0,
        };
        let mut client = self.client.clone();
        Ok(self.within(limit, client.cancel(req)).await?.running)
    }

    /// The report of execution `execution`'s invocation, held by this daemon since it ended
    /// there: (invocation, report JSON), or `None` when it holds none.
    pub async fn held_report(&self, execution: u64, limit: Duration) -> Result<Option<(u64, Vec<u8>)>, DaemonError> {
        let mut client = self.client.clone();
        let r = self
            .within(
                limit,
                client.held_report(pb::HeldReportRequest {
                    execution_id: execution,
                }),
            )
            .await?;
        Ok(r.found.then_some((r.invocation_id, r.report_json)))
    }

    /// Reads output `name` (element `element`) of invocation `invocation`, which this daemon
    /// keeps as its entry: its pieces as the daemon sends them (each call waits at most `limit`
    /// to begin; the pieces come as fast as the reader takes them).
    pub async fn read_output(
        &self,
        invocation: u64,
        name: &str,
        element: u32,
        limit: Duration,
    ) -> Result<OutputStream, DaemonError> {
        use futures_util::StreamExt as _;
        let req = pb::ReadOutputRequest {
            invocation_id: invocation,
            name: name.to_owned(),
            element,
            offset: 0,
        };
        let mut client = self.client.clone();
        let stream = self.within(limit, client.read_output(req)).await?;
        let me = self.clone();
        Ok(Box::pin(stream.map(move |r| {
            r.map(|c| OutputChunk {
                total: c.total_bytes,
                offset: c.offset,
                data: c.data,
            })
            .map_err(|s| me.error(&s))
        })))
    }

    /// Puts input `name` of invocation `invocation` (of `workflow` version `version`), which
    /// has not started yet, on this daemon from the file at `path` (of `len` bytes), streamed
    /// in [`PUT_CHUNK`] pieces; the invocation then names it in [`StartInvocation::files`].
    /// `limit` bounds the whole transfer.
    pub async fn put_input(
        &self,
        (invocation, workflow, version): (u64, &str, u64),
        name: &str,
        (path, len): (&std::path::Path, u64),
        limit: Duration,
    ) -> Result<u64, DaemonError> {
        use futures_util::StreamExt as _;
        let file = tokio::fs::File::open(path).await.map_err(|e| DaemonError::Refused {
            worker: self.name.clone(),
            addr: self.addr,
            message: format!("cannot open {} to send input `{name}`: {e}", path.display()),
        })?;
        let first = pb::PutInputChunk {
            invocation_id: invocation,
            workflow: workflow.to_owned(),
            version,
            name: name.to_owned(),
            len,
            data: Vec::new(),
        };
        // A read error ends the stream short: the daemon refuses the put for its length.
        let pieces = crate::pieces::of_file(file, PUT_CHUNK, |_| {}).map(|data| pb::PutInputChunk {
            data,
            ..pb::PutInputChunk::default()
        });
        let stream = futures_util::StreamExt::chain(futures_util::stream::iter([first]), pieces);
        let mut client = self.client.clone();
        Ok(self.within(limit, client.put_input(stream)).await?.len)
    }

    /// Says that output `name` (element `element`) of `invocation` was read whole and passed
    /// on: when every kept output of the invocation has been, the daemon frees them.
    pub async fn output_read(
        &self,
        invocation: u64,
        name: &str,
        element: u32,
        limit: Duration,
    ) -> Result<(), DaemonError> {
        let mut client = self.client.clone();
        self.within(
            limit,
            client.output_read(pb::OutputReadRequest {
                invocation_id: invocation,
                name: name.to_owned(),
                element,
            }),
        )
        .await?;
        Ok(())
    }

    /// Frees the outputs this daemon keeps for `invocations`; how many had some.
    pub async fn release_outputs(&self, invocations: Vec<u64>, limit: Duration) -> Result<u32, DaemonError> {
        let mut client = self.client.clone();
        let r = self
            .within(
                limit,
                client.release_outputs(pb::ReleaseOutputsRequest {
                    invocation_ids: invocations,
                }),
            )
            .await?;
        Ok(r.released)
    }

    /// Cancels the invocation of execution `execution` that runs on this daemon as its entry
    /// (a planner started again knows the execution, not its invocation); whether it ran.
    pub async fn cancel_execution(&self, execution: u64, reason: &str, limit: Duration) -> Result<bool, DaemonError> {
        let req = pb::CancelRequest {
            invocation_id: 0,
            reason: reason.to_owned(),
            execution_id: execution,
        };
        let mut client = self.client.clone();
        Ok(self.within(limit, client.cancel(req)).await?.running)
    }

    /// Runs an invocation on this daemon, its entry, and waits for its end (at most `limit`).
    pub async fn invoke(&self, inv: &StartInvocation, limit: Duration) -> Result<Started, DaemonError> {
        let req = pb::DaemonInvokeRequest {
            workflow: inv.workflow.clone(),
            version: inv.version,
            invocation_id: inv.invocation,
            input_json: inv.input_json.clone(),
            deadline_ms: u64::try_from(inv.deadline.as_millis()).unwrap_or(u64::MAX),
            execution_id: inv.execution.unwrap_or(0),
            keep_outputs_ms: inv
                .keep_outputs
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)),
            files: inv.files.clone(),
        };
        let mut client = self.client.clone();
        let answer = self.within(limit, client.invoke(req)).await?;
        Ok(if answer.accepted {
            Started::Ran {
                report_json: answer.report_json,
            }
        } else {
            Started::NotStarted { reason: answer.reason }
        })
    }

    /// Runs one attempt of a step for the central engine: its outputs, or how it failed.
    pub async fn execute(
        &self,
        req: &ExecRequest,
        owner: Owner<'_>,
    ) -> Result<Result<ExecDone, (String, FailureKind)>, DaemonError> {
        let mut client = self.client.clone();
        let answer = client
            .execute(execute_request_to_proto(req))
            .await
            .map_err(|s| self.error(&s))?;
        execute_response_from_proto(answer.get_ref(), owner).map_err(|e| DaemonError::Protocol {
            worker: self.name.clone(),
            addr: self.addr,
            cause: e.to_string(),
        })
    }

    /// Awaits `call` for at most `limit`, its status turned into a [`DaemonError`].
    async fn within<T>(
        &self,
        limit: Duration,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, DaemonError> {
        match tokio::time::timeout(limit, call).await {
            Ok(r) => r.map(tonic::Response::into_inner).map_err(|s| self.error(&s)),
            Err(_) => Err(self.timeout(limit)),
        }
    }

    fn timeout(&self, limit: Duration) -> DaemonError {
        DaemonError::Timeout {
            worker: self.name.clone(),
            addr: self.addr,
            limit,
        }
    }

    /// What a status from this daemon means.
    fn error(&self, status: &tonic::Status) -> DaemonError {
        let (worker, addr) = (self.name.clone(), self.addr);
        if status.code() == Code::ResourceExhausted {
            DaemonError::Overloaded {
                worker,
                addr,
                message: status.message().to_owned(),
            }
        } else if is_transport(status) {
            DaemonError::Unreachable {
                worker,
                addr,
                cause: describe(status),
            }
        } else {
            DaemonError::Refused {
                worker,
                addr,
                message: describe(status),
            }
        }
    }
}
