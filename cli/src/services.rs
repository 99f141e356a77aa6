//! `faasflow planner` and `faasflow daemon`: the cluster's long-running processes.
//!
//! Each logs in a span naming the process (`planner`, or `worker` with the worker's name),
//! entered on the main thread and on every thread of its async runtime, so that every line of
//! its log says whose it is.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use faasflow_control::service::{PlannerService, ServiceConfig};
use faasflow_control::store::StateDir;
use faasflow_daemon::config::PeerSettings;
use faasflow_daemon::daemon::Daemon;
use faasflow_daemon::io::peer::PeerConfig;
use faasflow_daemon::io::tls::{ClusterTrust, NodeIdentity, check_node_name};
use faasflow_daemon::service::{DaemonService, Registration, keep_registered};
use faasflow_remote::{RemoteStore, redact_url};
use faasflow_rpc::channel::{Credentials, Transport};
use faasflow_rpc::tls::{ALPN_H2, PLANNER_NODE, api_client_config, api_server_config};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::Server;

use faasflow_rpc::auth::Token;

use crate::run::DataPlaneArgs;
use crate::{Failure, runtime};

#[derive(Debug, clap::Args)]
pub(crate) struct PlannerArgs {
    /// Address to serve the planner's gRPC API, its HTTP/JSON API (`/v1/…`) and `/metrics`
    /// on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:5300")]
    listen: SocketAddr,
    /// How often workers must send a heartbeat, ms (a worker silent for 3 intervals that does not answer a direct call is lost).
    #[arg(long, default_value_t = 1000)]
    heartbeat_ms: u64,
    /// Write the address actually listened on to this file once listening.
    #[arg(long, value_name = "FILE")]
    addr_file: Option<PathBuf>,
    /// The remote tier, a Redis URL (redis://HOST:PORT), shared with the daemons: needed to
    /// deploy and invoke workflows in MasterSP mode (every object goes through it); WorkerSP
    /// runs without it.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// Plan a workflow again, as a new version (red-black), when a task's measured peak
    /// memory differs from the peak its newest version was planned with by more than this,
    /// MiB, or a pack function's measured runtime or output size is off by more than
    /// --replan-factor (default: never; versions change only when a user deploys).
    #[arg(long, value_name = "MIB")]
    replan_threshold_mib: Option<f64>,
    /// With --replan-threshold-mib: how far a measured runtime (beyond 1 ms apart) or output
    /// size (beyond 64 KiB apart) may be from the planned one, as a factor either way (`inf`:
    /// only memory plans again).
    #[arg(long, value_name = "F", default_value_t = 2.0)]
    replan_factor: f64,
    /// The cluster's API token (`faasflow cluster init` writes DIR/token): calls without it
    /// are refused, and calls to the daemons carry it. Without it the API is open to anyone
    /// who can reach the address.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Invocations in flight at once (at least 1); one more is refused at once as overloaded
    /// (RESOURCE_EXHAUSTED), never queued.
    #[arg(long, value_name = "N", default_value_t = faasflow_control::service::DEFAULT_MAX_IN_FLIGHT,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_in_flight: u64,
    /// Keep the planner's state (workflows and their versions, workers, invocation ids) in
    /// this directory (made, mode 0700, when missing): a planner started again on it serves
    /// every deployed workflow at once. One planner at a time uses a directory. Without it,
    /// the planner forgets everything when it stops.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Executions that have ended are kept (for `faasflow describe`) up to this many, the
    /// oldest forgotten first…
    #[arg(long, value_name = "N", default_value_t = faasflow_control::service::DEFAULT_KEEP_EXECUTIONS)]
    keep_executions: usize,
    /// …and for this many hours after they ended.
    #[arg(long, value_name = "H", default_value_t = faasflow_control::service::DEFAULT_KEEP_EXECUTIONS_FOR.as_secs() / 3600)]
    keep_executions_hours: u64,
    /// The largest file taken as an input upload (`--input-file`, `POST /v1/uploads`), MiB;
    /// a larger one is refused (HTTP 413) and nothing of it is kept.
    #[arg(long, value_name = "MIB", default_value_t = faasflow_control::uploads::DEFAULT_MAX_UPLOAD_BYTES >> 20,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_upload_mib: u64,
    /// An upload is deleted once it has gone this many minutes without being uploaded again
    /// or used by a run.
    #[arg(long, value_name = "MIN", default_value_t = faasflow_control::uploads::DEFAULT_KEEP_UPLOADS_FOR.as_secs() / 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    keep_uploads_minutes: u64,
    /// Directory with the cluster's ca.pem and the planner's planner.pem and planner-key.pem
    /// (`faasflow cluster init`): the API is served over TLS, and the daemons are called over
    /// TLS and must present their workers' certificates.
    #[arg(long, value_name = "DIR", required_unless_present = "insecure_loopback")]
    certs: Option<PathBuf>,
    /// Serve without TLS, on a loopback address only, and take only workers on this host
    /// (tests, a cluster on one machine).
    #[arg(long, conflicts_with = "certs")]
    insecure_loopback: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct DaemonArgs {
    /// The planner's address, host:port.
    #[arg(long)]
    planner: String,
    /// This worker's name (unique in the cluster; its certificate's name with --certs).
    #[arg(long)]
    name: String,
    /// Address to serve the Daemon gRPC API on; the planner dials it, so it must be a
    /// reachable address, not 0.0.0.0 (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Address of the QUIC endpoint other workers send triggers and objects to (with --certs).
    #[arg(long, default_value = "127.0.0.1:0")]
    peer_listen: SocketAddr,
    /// Directory with the cluster's ca.pem and this worker's NAME.pem and NAME-key.pem
    /// (`faasflow cluster init`): the daemon's API is served over TLS (for the planner alone),
    /// the planner is called over TLS, and other workers over QUIC with mutual TLS.
    #[arg(long, value_name = "DIR", required_unless_present = "insecure_loopback")]
    certs: Option<PathBuf>,
    /// Serve the daemon's API and call the planner without TLS, on loopback addresses only
    /// (with --certs, the peer transport still uses them; without, the worker runs only plans
    /// placed wholly on it).
    #[arg(long)]
    insecure_loopback: bool,
    /// The cluster's API token (`faasflow cluster init` writes DIR/token): calls without it
    /// are refused, and the worker's calls to the planner carry it.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// A peer silent this long is lost, ms: the invocations touching it fail, naming it (or
    /// run again, when their functions are idempotent). Keep-alives go out at a quarter of it.
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_PEER_TIMEOUT_MS)]
    peer_timeout_ms: u64,
    /// Container slots (instances at once) the worker offers to the planner.
    #[arg(long, default_value_t = 64)]
    slots: u32,
    /// Write the gRPC address actually listened on to this file once listening.
    #[arg(long, value_name = "FILE")]
    addr_file: Option<PathBuf>,
    /// The remote tier, a Redis URL (redis://HOST:PORT), the planner's: needed to run
    /// functions for MasterSP's central engine; WorkerSP runs without it (peer transfers and
    /// the local spill directory).
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    #[command(flatten)]
    data: DataPlaneArgs,
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, Failure> {
    TcpListener::bind(addr).await.map_err(|e| {
        Failure::Other(anyhow::anyhow!(
            "cannot listen on {addr} for the {what}: {e}; choose another address (--listen)"
        ))
    })
}

fn write_addr_file(file: Option<&Path>, addr: SocketAddr) -> Result<(), Failure> {
    let Some(file) = file else { return Ok(()) };
    // Written whole under another name beside it (a name of its own: no other file is
    // replaced), then renamed: a reader never sees half an address.
    let mut tmp = file.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| std::io::Write::write_all(&mut f, addr.to_string().as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, file));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
        .with_context(|| format!("cannot write {}", file.display()))
        .map_err(Failure::Other)
}

pub(crate) fn planner(args: &PlannerArgs) -> Result<(), Failure> {
    if args.heartbeat_ms == 0 {
        return Err(Failure::Input("error: --heartbeat-ms must be at least 1".into()));
    }
    if let Some(t) = args.replan_threshold_mib
        && !(t.is_finite() && t >= 0.0)
    {
        return Err(Failure::Input(
            "error: --replan-threshold-mib must be a number ≥ 0".into(),
        ));
    }
    if args.replan_factor.is_nan() || args.replan_factor < 1.0 {
        return Err(Failure::Input(
            "error: --replan-factor must be a number ≥ 1 (`inf`: memory alone)".into(),
        ));
    }
    let _span = tracing::info_span!("planner").entered();
    let token = load_token(args.token_file.as_deref())?;
    let (tls, transport) = match &args.certs {
        Some(dir) => {
            let (server, client) = tls_of(dir, PLANNER_NODE)?;
            (Some(server), Transport::Tls(client))
        }
        None => {
            insecure_listen(args.listen)?;
            tracing::warn!("--insecure-loopback: serving without TLS, on loopback only");
            (None, Transport::Plain)
        }
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let config = ServiceConfig {
        heartbeat_interval: Duration::from_millis(args.heartbeat_ms),
        redis: args.redis.clone(),
        replan_threshold_mib: args.replan_threshold_mib,
        replan_factor: args.replan_factor,
        token,
        transport,
        max_in_flight: args.max_in_flight,
        keep_executions: args.keep_executions,
        keep_executions_for: Duration::from_secs(args.keep_executions_hours.saturating_mul(3600)),
        uploads: faasflow_control::uploads::UploadConfig {
            max_bytes: args.max_upload_mib.saturating_mul(1 << 20),
            keep_for: Duration::from_secs(args.keep_uploads_minutes.saturating_mul(60)),
        },
        ..ServiceConfig::default()
    };
    runtime()?.block_on(async {
        match &args.redis {
            Some(url) => match RemoteStore::connect(url, Duration::from_secs(3)).await {
                Ok(_) => tracing::info!(redis = %redact_url(url), "remote tier reachable (MasterSP available)"),
                Err(e) => tracing::warn!(
                    redis = %redact_url(url),
                    cause = %e,
                    "cannot reach the remote tier now; MasterSP deploys fail until Redis answers"
                ),
            },
            None => tracing::info!("no --redis: MasterSP deploys are refused; WorkerSP runs without Redis"),
        }
        // Before the port: a second planner on the same directory says so, not "address in use".
        let store = match &args.state_dir {
            Some(dir) => Some(StateDir::open(dir).map_err(|e| Failure::Input(format!("error: --state-dir: {e}")))?),
            None => {
                tracing::warn!(
                    "no --state-dir: deployments, workers and invocation ids are forgotten when the planner stops"
                );
                None
            }
        };
        let listener = bind(args.listen, "planner").await?;
        let local = listener
            .local_addr()
            .context("the planner's address")
            .map_err(Failure::Other)?;
        write_addr_file(args.addr_file.as_deref(), local)?;
        tracing::info!(addr = %local, "listening");
        let service = match store {
            Some(mut store) => {
                let holder = format!(
                    "pid {} serving on {local}, since {}",
                    std::process::id(),
                    httpdate::fmt_http_date(std::time::SystemTime::now())
                );
                store
                    .set_holder(&holder)
                    .map_err(|e| Failure::Input(format!("error: --state-dir: {e}")))?;
                let service = PlannerService::restore(config, store)
                    .map_err(|e| Failure::Input(format!("error: --state-dir: {e}")))?;
                service.resume().await;
                service
            }
            None => PlannerService::new(config),
        };
        tracing::info!(
            api = %format_args!("{scheme}://{local}/v1"),
            metrics = %format_args!("{scheme}://{local}/metrics"),
            "serving gRPC and HTTP"
        );
        let routes = Routes::from(faasflow_control::http::router(service.clone())).add_service(service.into_server());
        serve(routes, listener, tls, "planner").await
    })
}

/// Serves `routes` (gRPC, and HTTP/1.1 beside it) on `listener`, over TLS with `tls`, until it
/// fails; `what` is named in the error.
async fn serve(
    routes: Routes,
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    what: &str,
) -> Result<(), Failure> {
    Server::builder()
        .accept_http1(true)
        .initial_stream_window_size(faasflow_rpc::channel::STREAM_WINDOW)
        .initial_connection_window_size(faasflow_rpc::channel::CONNECTION_WINDOW)
        .add_routes(routes)
        .serve_with_incoming(faasflow_rpc::serve::incoming(listener, tls))
        .await
        .with_context(|| format!("the {what}'s gRPC server failed"))
        .map_err(Failure::Other)
}

/// The TLS settings of node `node` from the cluster directory `dir`: its server's (the API)
/// and its client's (calls to other nodes, presenting its certificate).
fn tls_of(dir: &Path, node: &str) -> Result<(Arc<ServerConfig>, Arc<rustls::ClientConfig>), Failure> {
    let (identity, trust) = node_certs(dir, node)?;
    tls_with(&identity, &trust, dir)
}

/// The TLS settings of the node whose certificate and CA are `identity` and `trust` (from `dir`).
fn tls_with(
    identity: &NodeIdentity,
    trust: &ClusterTrust,
    dir: &Path,
) -> Result<(Arc<ServerConfig>, Arc<rustls::ClientConfig>), Failure> {
    let hint = |e: &dyn std::fmt::Display| certs_failure(dir, identity.name(), e);
    let server = api_server_config(identity, trust).map_err(|e| hint(&e))?;
    let client = api_client_config(trust, Some(identity), &[ALPN_H2]).map_err(|e| hint(&e))?;
    Ok((Arc::new(server), Arc::new(client)))
}

/// Node `node`'s certificate and the cluster's CA, from the cluster directory `dir`.
fn node_certs(dir: &Path, node: &str) -> Result<(NodeIdentity, ClusterTrust), Failure> {
    let hint = |e: &dyn std::fmt::Display| certs_failure(dir, node, e);
    let identity = NodeIdentity::load(dir, node).map_err(|e| hint(&e))?;
    let trust = ClusterTrust::load(dir).map_err(|e| hint(&e))?;
    Ok((identity, trust))
}

/// Node `node`'s certificates in `dir` cannot be used, because of `e`: what to do.
fn certs_failure(dir: &Path, node: &str, e: &dyn std::fmt::Display) -> Failure {
    Failure::Input(format!(
        "error: --certs: cannot load node `{node}`'s certificate from {}: {e}; create it with \
         `faasflow cluster init --dir {} --node {node}` (with the cluster's CA there), or pass \
         --insecure-loopback to serve without TLS on this host only",
        dir.display(),
        dir.display()
    ))
}

/// With --insecure-loopback, `listen` must be a loopback address.
fn insecure_listen(listen: SocketAddr) -> Result<(), Failure> {
    if listen.ip().is_loopback() {
        return Ok(());
    }
    Err(Failure::Input(format!(
        "error: --insecure-loopback serves without TLS, so only on a loopback address; --listen {listen} is not one \
         (use 127.0.0.1:PORT, or serve over TLS with --certs DIR)"
    )))
}

/// How long a daemon's peer may stay silent before it is lost, ms, by default.
pub(crate) const DEFAULT_PEER_TIMEOUT_MS: u64 = faasflow_daemon::config::DEFAULT_PEER_TIMEOUT.as_millis() as u64;

/// The token of --token-file, or none (then the process's API is open: it logs so).
fn load_token(file: Option<&std::path::Path>) -> Result<Option<Token>, Failure> {
    match file {
        Some(f) => Token::load(f)
            .map(Some)
            .map_err(|e| Failure::Input(format!("error: --token-file: {e}"))),
        None => {
            tracing::warn!("no --token-file: its gRPC API takes calls from anyone who reaches it");
            Ok(None)
        }
    }
}

pub(crate) fn daemon(args: &DaemonArgs) -> Result<(), Failure> {
    check_node_name(&args.name).map_err(|e| Failure::Input(format!("error: --name: {e}")))?;
    let _span = tracing::info_span!("worker", worker = %args.name).entered();
    if args.listen.ip().is_unspecified() {
        return Err(Failure::Input(format!(
            "error: --listen {}: the planner dials this address, so it must name this host (e.g. 127.0.0.1:0), not {}",
            args.listen,
            args.listen.ip()
        )));
    }
    if args.slots == 0 {
        return Err(Failure::Input("error: --slots must be at least 1".into()));
    }
    let packs = args.data.available_packs()?;
    let mut config = args.data.daemon_config(packs.iter().map(String::as_str))?;
    config.name = args.name.clone();
    config.redis = args.redis.clone();
    // Read once: the API's TLS and the peer transport use them.
    let certs = match &args.certs {
        Some(dir) => Some((dir, node_certs(dir, &args.name)?)),
        None => None,
    };
    let (tls, transport) = match (&certs, args.insecure_loopback) {
        (Some((dir, (identity, trust))), false) => {
            let (server, client) = tls_with(identity, trust, dir)?;
            (Some(server), Transport::Tls(client))
        }
        _ => {
            insecure_listen(args.listen)?;
            crate::client::check_loopback(&args.planner, "--planner ")?;
            tracing::warn!("--insecure-loopback: serving and calling the planner without TLS, on loopback only");
            (None, Transport::Plain)
        }
    };
    if let Some((_, (identity, trust))) = certs {
        let timeout = Duration::from_millis(args.peer_timeout_ms.max(100));
        config.peer = Some(PeerSettings {
            identity,
            trust,
            bind: args.peer_listen,
            transport: PeerConfig {
                idle_timeout: timeout,
                keep_alive: timeout / 4,
                ..PeerConfig::default()
            },
        });
    } else {
        tracing::warn!("no --certs: no peer transport, so this worker runs only plans placed wholly on it");
    }
    let token = load_token(args.token_file.as_deref())?;
    let daemon = Arc::new(Daemon::start(config).map_err(|e| Failure::Other(e.into()))?);
    let found = if packs.is_empty() {
        "none (only synthetic bodies)".to_owned()
    } else {
        packs.join(", ")
    };
    tracing::info!(packs = %found, "packs found");
    runtime()?.block_on(async {
        let listener = bind(args.listen, "daemon").await?;
        let local = listener
            .local_addr()
            .context("the daemon's address")
            .map_err(Failure::Other)?;
        write_addr_file(args.addr_file.as_deref(), local)?;
        tracing::info!(
            addr = %local,
            peers = %daemon.peer_addr().map_or_else(|| "none".to_owned(), |a| a.to_string()),
            "serving the daemon API"
        );
        let me = Registration {
            name: args.name.clone(),
            grpc_addr: local,
            quic_addr: daemon.peer_addr(),
            slots: args.slots,
            memory_mib: 0,
        };
        let service = DaemonService::new(daemon.clone(), Credentials { token, transport });
        tokio::spawn(keep_registered(args.planner.clone(), me, service.clone()));
        let routes = Routes::from(faasflow_daemon::service::http_router(daemon)).add_service(service.into_server());
        serve(routes, listener, tls, "daemon").await
    })
}
