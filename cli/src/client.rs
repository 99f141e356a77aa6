//! The commands that call a running cluster's planner: `deploy`, `invoke`, `status` and
//! `trace`. They find the planner through `--planner`, or the address `up` recorded in
//! DIR/cluster.json, and call it with the cluster's API token.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use faasflow_core::report::Report;
use faasflow_planner::load::{MAX_FILE_BYTES, default_name};
use faasflow_rpc::auth::{TOKEN_FILE, Token};
use faasflow_rpc::channel::{Credentials, MAX_MESSAGE, Transport};
use faasflow_rpc::planner::{Deploy, Invocation, InvocationStatus, Planned, Planner, PlannerError, WorkflowMemory};
use faasflow_rpc::tls::{ALPN_H2, CA_CERT_FILE, ClusterTrust, api_client_config};

use crate::files::{ReadError, holds, mib, read_bounded};
use crate::record::{CLUSTER_FILE, DirArg, read_record};
use crate::run::{ReportFormat, note_filled, parse_input, print_report};
use crate::{Failure, ModeArg, runtime};

/// Time limit of a deploy.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(120);

/// How a client finds the planner.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Target {
    #[command(flatten)]
    dir: DirArg,
    /// The planner's address (host:port), instead of the one in DIR/cluster.json.
    #[arg(long, conflicts_with = "dir")]
    planner: Option<String>,
    /// The file with the cluster's API token [default: DIR/certs/token, when there is one].
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// The cluster CA's certificate, to check the planner's against [default: DIR/certs/ca.pem].
    #[arg(long, value_name = "FILE", conflicts_with = "insecure_loopback")]
    ca: Option<PathBuf>,
    /// Call a planner on this host that serves without TLS (started with --insecure-loopback).
    #[arg(long)]
    insecure_loopback: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct DeployArgs {
    /// The workflow file (faasflow WDL, or FaaSFlow's workflow.yaml / flat_workflow.yaml).
    file: PathBuf,
    /// workersp: partitioned, the daemons trigger one another and pass data directly;
    /// mastersp: FaaSFlow's baseline, placed round robin, the planner triggers every function
    /// and every object goes through Redis (the planner needs --redis; `up` gives it);
    /// workersp-remote: placed and triggered as workersp, every edge through Redis (the
    /// daemons need --redis; `up` gives it).
    #[arg(long, value_enum, default_value_t = ModeArg::Workersp)]
    mode: ModeArg,
    /// Plan even when the workflow needs more slots than the cluster has.
    #[arg(long)]
    allow_overcommit: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// One workflow's memory (as --memory shows it).
    name: Option<String>,
    /// Each deployed workflow's memory: per task the memory given, the peak declared and the
    /// peak measured, and the in-memory quota from each.
    #[arg(long)]
    memory: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Args)]
pub(crate) struct TraceArgs {
    /// An invocation id (the planner keeps the latest invocations' reports), or a file of
    /// JSON reports, one per line (`faasflow run` or `invoke --report json`).
    invocation: String,
    /// Where to write the trace (Chrome trace-event JSON).
    #[arg(long, value_name = "FILE")]
    chrome: PathBuf,
    /// With a file of several reports: the invocation to export (default: the first).
    #[arg(long = "invocation", value_name = "ID")]
    pick: Option<u64>,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Args)]
pub(crate) struct InvokeArgs {
    #[command(flatten)]
    what: WhatToRun,
    /// How to print the report: text (human) or json (docs/run-report.md).
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    report: ReportFormat,
}

/// What `invoke` and `start` run.
#[derive(Debug, clap::Args)]
pub(crate) struct WhatToRun {
    /// The workflow's name (as `deploy` printed it).
    pub(crate) name: String,
    /// The version to run (default: the newest).
    #[arg(long = "version", value_name = "V")]
    version: Option<u64>,
    /// The workflow's input: a JSON object, or @FILE to read it from a file.
    #[arg(long, short = 'i', default_value = "{}")]
    input: String,
    /// An input given as a file's bytes, NAME=PATH (any size, binary or not; repeat for
    /// several): uploaded to the planner first, then read by the functions by reference.
    #[arg(long = "input-file", value_name = "NAME=PATH")]
    input_files: Vec<String>,
    /// Time limit of the invocation, ms, at least 1 (default: the workflow's `deadline`, else the
    /// planner's, 300 s).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    deadline_ms: Option<u64>,
    /// Scales the synthetic bytes filled in for FaaSFlow's staged inputs that --input does not
    /// give, as `faasflow run` does [default: the cluster's --data-scale from DIR/cluster.json,
    /// else 1].
    #[arg(long, value_name = "X")]
    data_scale: Option<f64>,
    #[command(flatten)]
    pub(crate) target: Target,
}

// ---- deploy -----------------------------------------------------------------------------

pub(crate) fn deploy(args: &DeployArgs) -> Result<(), Failure> {
    // The file first: a file that cannot be deployed is said so without a cluster.
    let source = faasflow_planner::load::read_file(&args.file)?;
    let (addr, token) = planner_of(&args.target)?;
    let request = Deploy {
        source,
        file_name: args.file.display().to_string(),
        mode: args.mode.mode(),
        allow_overcommit: args.allow_overcommit,
        default_name: default_name(&args.file),
        code_dir: faasflow_planner::load::file_dir(&args.file)
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let deployed = runtime()?.block_on(async {
        let mut planner = connect(&addr, token).await?;
        tokio::time::timeout(DEPLOY_TIMEOUT, planner.deploy(request))
            .await
            .map_err(|_| {
                Failure::Other(anyhow!(
                    "the planner at {addr} did not answer within {} s",
                    DEPLOY_TIMEOUT.as_secs()
                ))
            })?
            .map_err(failure)
    })?;
    let placement = deployed.plan.as_ref().map(placement_text).unwrap_or_default();
    outln!(
        "deployed workflow `{}` version {}{placement}",
        deployed.workflow,
        deployed.version
    )?;
    Ok(())
}

/// `: f1, f2 on worker-0; f3 on worker-1` from a plan.
fn placement_text(planned: &Planned) -> String {
    let parts: Vec<String> = planned
        .placement()
        .iter()
        .map(|(w, fs)| format!("{} on {w}", fs.join(", ")))
        .collect();
    format!(": {}", parts.join("; "))
}

// ---- invoke -----------------------------------------------------------------------------

/// The invocation `args` ask for, checked before any connection (an input too large for the
/// API is said so without a cluster). FaaSFlow's workflows read staged files: the planner
/// fills those the input does not give, as `run` does.
pub(crate) fn prepared_invocation(args: &WhatToRun) -> Result<Prepared, Failure> {
    let input = parse_input(&args.input)?;
    let files = input_files(&args.input_files, &input)?;
    let invocation = invocation(args, &input)?;
    let data_scale = match args.data_scale {
        Some(x) if !x.is_finite() || x < 0.0 => {
            return Err(Failure::Input("error: --data-scale must be a number ≥ 0".into()));
        }
        Some(x) => x,
        None => cluster_data_scale(&args.target).unwrap_or(1.0),
    };
    Ok(Prepared {
        invocation: invocation.fill_staged(data_scale),
        files,
    })
}

/// An invocation ready to send once its input files are uploaded.
pub(crate) struct Prepared {
    invocation: Invocation,
    /// `--input-file`s: input name, path.
    files: Vec<(String, PathBuf)>,
}

impl Prepared {
    /// Uploads the input files to `planner` (saying so for large ones): the invocation
    /// naming them.
    pub(crate) async fn upload(self, planner: &mut Planner) -> Result<Invocation, Failure> {
        let mut invocation = self.invocation;
        for (name, path) in self.files {
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let loud = len >= LOUD_UPLOAD;
            if loud {
                sayln!("uploading {} for input `{name}` ({})…", path.display(), mib_text(len));
            }
            let started = std::time::Instant::now();
            let (id, _) = planner
                .upload(&path, |_| {})
                .await
                .map_err(|e| Failure::Other(anyhow!("--input-file {name}={}: {e}", path.display())))?;
            if loud {
                sayln!("uploaded in {:.1} s", started.elapsed().as_secs_f64());
            }
            invocation = invocation.file(name, id);
        }
        Ok(invocation)
    }
}

/// Uploads at least this large are said on stderr, with the time they took.
const LOUD_UPLOAD: u64 = 64 << 20;

fn mib_text(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}

/// The `--input-file NAME=PATH` arguments, each a readable regular file whose name the JSON
/// `input` does not give too.
fn input_files(args: &[String], input: &serde_json::Value) -> Result<Vec<(String, PathBuf)>, Failure> {
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for arg in args {
        let Some((name, path)) = arg.split_once('=').filter(|(n, p)| !n.is_empty() && !p.is_empty()) else {
            return Err(Failure::Input(format!(
                "error: --input-file `{arg}`: expected NAME=PATH, e.g. --input-file video=clip.mp4"
            )));
        };
        let path = PathBuf::from(path);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(Failure::Input(format!(
                    "error: --input-file {name}={}: not a regular file",
                    path.display()
                )));
            }
            Err(e) => {
                return Err(Failure::Input(format!(
                    "error: --input-file {name}={}: cannot read it: {e}",
                    path.display()
                )));
            }
        }
        if input.get(name).is_some() {
            return Err(Failure::Input(format!(
                "error: input `{name}` is given twice, in --input and --input-file; give it once"
            )));
        }
        if files.iter().any(|(n, _)| n == name) {
            return Err(Failure::Input(format!(
                "error: --input-file gives input `{name}` twice"
            )));
        }
        files.push((name.to_owned(), path));
    }
    Ok(files)
}

pub(crate) fn invoke(args: &InvokeArgs) -> Result<(), Failure> {
    let prepared = prepared_invocation(&args.what)?;
    let (addr, token) = planner_of(&args.what.target)?;
    let invoked = runtime()?.block_on(async {
        let mut planner = connect(&addr, token).await?;
        let invocation = prepared.upload(&mut planner).await?;
        planner.invoke(invocation).await.map_err(failure)
    })?;
    note_filled(&args.what.name, invoked.filled.0, invoked.filled.1);
    if let Some(report) = &invoked.report {
        print_report(report, args.report)?;
    }
    match invoked.status {
        InvocationStatus::Succeeded => {
            if invoked.report.is_none() {
                outln!("{}", String::from_utf8_lossy(&invoked.output_json))?;
            }
            Ok(())
        }
        _ if invoked.report.is_some() => Err(Failure::Silent),
        _ => Err(Failure::Other(anyhow!("{}", invoked.error))),
    }
}

/// The invocation to send; refused when larger than the planner's API takes in one message.
fn invocation(args: &WhatToRun, input: &serde_json::Value) -> Result<Invocation, Failure> {
    let input_json = serde_json::to_vec(input).context("cannot encode the input")?;
    let input_len = input_json.len();
    let invocation = Invocation::new(args.name.clone(), args.version, input_json, args.deadline_ms);
    let len = invocation.encoded_len();
    if len > MAX_MESSAGE {
        return Err(Failure::Input(format!(
            "error: the input of `{}` is {input_len} bytes of JSON ({len} bytes with the rest of the request), more \
             than the {} the planner's API takes in one message; pass a smaller input",
            args.name,
            mib(MAX_MESSAGE),
        )));
    }
    Ok(invocation)
}

/// The data scale the cluster's daemons were started with (recorded by `up`), when the
/// planner is found through DIR/cluster.json.
fn cluster_data_scale(target: &Target) -> Option<f64> {
    if target.planner.is_some() {
        return None;
    }
    let record = read_record(&target.dir.path().join(CLUSTER_FILE)).ok()??;
    crate::record::data_scale(&record)
}

// ---- status -----------------------------------------------------------------------------

/// `faasflow status`: each deployed workflow's memory, declared and measured, and its quota.
impl StatusArgs {
    /// `status` alone: the cluster's view (else the memory table).
    pub(crate) fn wants_cluster(&self) -> bool {
        self.name.is_none() && !self.memory
    }

    /// The planner to ask.
    pub(crate) fn target(&self) -> &Target {
        &self.target
    }
}

/// `faasflow status --memory [NAME]`.
pub(crate) fn status(args: &StatusArgs) -> Result<(), Failure> {
    let (addr, token) = planner_of(&args.target)?;
    let workflows = runtime()?.block_on(async {
        let mut planner = connect(&addr, token).await?;
        planner.memory(args.name.as_deref()).await.map_err(failure)
    })?;
    if workflows.is_empty() {
        outln!("no workflow is deployed (`faasflow deploy FILE`)")?;
    }
    crate::out(&memory_text(&workflows))
}

/// The memory table of `faasflow status`.
fn memory_text(workflows: &[WorkflowMemory]) -> String {
    use std::fmt::Write as _;
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64);
    let mut out = String::new();
    for w in workflows {
        let _ = writeln!(
            out,
            "workflow `{}` version {}: quota {} declared, {} with measured peaks (margin {} MiB per task)",
            w.workflow,
            w.version,
            mib(w.declared_quota_bytes),
            mib(w.quota_bytes),
            w.margin_mib
        );
        let _ = writeln!(
            out,
            "  {:<32} {:>12} {:>14} {:>22} {:>14} {:>14} {:>14}",
            "task", "memory", "declared use", "measured peak (calls)", "planned use", "O(v) declared", "O(v)"
        );
        for t in &w.tasks {
            let measured = t
                .measured_peak_bytes
                .map_or_else(|| "–".to_owned(), |p| format!("{} ({})", mib(p), t.calls_measured));
            let _ = writeln!(
                out,
                "  {:<32} {:>12} {:>14} {:>22} {:>14} {:>14} {:>14}",
                t.task,
                mib(t.memory_bytes),
                mib(t.declared_use_bytes),
                measured,
                mib(t.planned_use_bytes),
                mib(t.declared_quota_bytes),
                mib(t.quota_bytes)
            );
        }
    }
    out
}

// ---- trace ------------------------------------------------------------------------------

/// `faasflow trace`: an invocation's report, from a file or the planner, as a Chrome trace.
pub(crate) fn trace(args: &TraceArgs) -> Result<(), Failure> {
    let path = Path::new(&args.invocation);
    if path.is_file() && std::path::absolute(path).ok() == std::path::absolute(&args.chrome).ok() {
        return Err(Failure::Input(format!(
            "error: --chrome {} would overwrite the file of reports it reads; write the trace to another file",
            args.chrome.display()
        )));
    }
    let (workflow, report) = if path.is_file() {
        report_from_file(path, args.pick)?
    } else {
        let id: u64 = args.invocation.parse().map_err(|_| {
            Failure::Input(format!(
                "error: `{}` is neither an invocation id nor a file of JSON reports",
                args.invocation
            ))
        })?;
        let (addr, token) = planner_of(&args.target)?;
        let kept = runtime()?.block_on(async {
            let mut planner = connect(&addr, token).await?;
            planner.report(id).await.map_err(failure)
        })?;
        (kept.workflow, kept.report)
    };
    let trace = faasflow_core::trace::chrome_trace(&report, &workflow);
    let bytes = serde_json::to_vec(&trace).map_err(|e| Failure::Other(anyhow!("cannot encode the trace: {e}")))?;
    std::fs::write(&args.chrome, bytes)
        .map_err(|e| Failure::Input(format!("error: cannot write {}: {e}", args.chrome.display())))?;
    let events = trace["traceEvents"].as_array().map_or(0, Vec::len);
    sayln!(
        "wrote {} ({events} events; invocation {} of `{workflow}`): open it in Perfetto (https://ui.perfetto.dev) or chrome://tracing",
        args.chrome.display(),
        report.invocation
    );
    Ok(())
}

/// The report of invocation `pick` (else the first) in a file of JSON reports, and the
/// workflow's name (the file's stem).
fn report_from_file(path: &Path, pick: Option<u64>) -> Result<(String, Report), Failure> {
    let bytes = read_bounded(path, MAX_FILE_BYTES).map_err(|e| match e {
        ReadError::Io(e) => Failure::Input(format!("error: cannot read {}: {e}", path.display())),
        ReadError::TooLarge(size) => Failure::Input(format!(
            "error: {} is larger than {}{}, the limit for files of reports; put the report you want in a file \
             of its own (`grep '\"invocation\":ID,' FILE`), or give its invocation id",
            path.display(),
            mib(MAX_FILE_BYTES),
            holds(size)
        )),
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let mut reports = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let r: Report = serde_json::from_str(line).map_err(|e| {
            Failure::Input(format!(
                "error: {}:{}: not a JSON report (`faasflow run FILE --report json` writes them): {e}",
                path.display(),
                i + 1
            ))
        })?;
        reports.push(r);
    }
    let report = match pick {
        None => reports.into_iter().next(),
        Some(id) => reports.into_iter().find(|r| r.invocation == id),
    }
    .ok_or_else(|| {
        Failure::Input(format!(
            "error: {} holds no report{}",
            path.display(),
            pick.map(|id| format!(" of invocation {id}")).unwrap_or_default()
        ))
    })?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((name, report))
}

// ---- finding and calling the planner ----------------------------------------------------

/// The planner's address and how to call it: `--planner`, or the address in
/// DIR/cluster.json; the token, and TLS checked against the cluster CA (or plain loopback).
pub(crate) fn planner_of(target: &Target) -> Result<(String, Credentials), Failure> {
    let addr = planner_addr(target)?;
    let token = token_of(target)?;
    let transport = transport_of(target, &addr)?;
    Ok((addr, Credentials { token, transport }))
}

/// TLS with the cluster CA of `--ca` (or DIR/certs/ca.pem), or plain TCP with
/// `--insecure-loopback` to a planner at a loopback address.
fn transport_of(target: &Target, addr: &str) -> Result<Transport, Failure> {
    if target.insecure_loopback {
        check_loopback(addr, "")?;
        PLAIN.store(true, std::sync::atomic::Ordering::Relaxed);
        return Ok(Transport::Plain);
    }
    let ca = match (&target.ca, &target.planner) {
        (Some(file), _) => file.clone(),
        (None, Some(addr)) => {
            return Err(Failure::Input(format!(
                "error: calling the planner at {addr} needs the cluster CA's certificate to check it by: pass --ca FILE \
                 (the ca.pem `faasflow cluster init` wrote), or --insecure-loopback for a planner on this host that \
                 serves without TLS"
            )));
        }
        (None, None) => target.dir.path().join("certs").join(CA_CERT_FILE),
    };
    let trust = ClusterTrust::load_file(&ca).map_err(|e| Failure::Input(format!("error: the cluster CA: {e}")))?;
    let config = api_client_config(&trust, None, &[ALPN_H2]).map_err(|e| Failure::Other(anyhow!("{e}")))?;
    Ok(Transport::Tls(Arc::new(config)))
}

/// Checks that `addr` (`host:port`) is on this host (a loopback IP address or `localhost`);
/// `what` names the flag in the error.
pub(crate) fn check_loopback(addr: &str, what: &str) -> Result<(), Failure> {
    // Exactly IP:PORT or localhost:PORT: nothing else (a user part, a path) can hide a host.
    let on_this_host = match addr.parse::<std::net::SocketAddr>() {
        Ok(a) => a.ip().is_loopback(),
        Err(_) => addr
            .strip_prefix("localhost:")
            .is_some_and(|port| port.parse::<u16>().is_ok()),
    };
    match on_this_host {
        true => Ok(()),
        false => Err(Failure::Input(format!(
            "error: --insecure-loopback: {what}{addr} is not on this host; without TLS only loopback addresses \
             (127.0.0.1, ::1, localhost) may be used"
        ))),
    }
}

/// The token to call the planner with: `--token-file`, or DIR/certs/token when there is one
/// (not with `--planner`). A token file that is there but cannot be used is an error naming
/// it and the cause.
fn token_of(target: &Target) -> Result<Option<Token>, Failure> {
    if let Some(f) = &target.token_file {
        return Token::load(f)
            .map(Some)
            .map_err(|e| Failure::Input(format!("error: cannot use the token file given with --token-file: {e}")));
    }
    if target.planner.is_some() {
        return Ok(None);
    }
    let file = target.dir.path().join("certs").join(TOKEN_FILE);
    // Only a file that is not there means no token (`exists` is false for one that cannot
    // even be looked at).
    if let Ok(false) = file.try_exists() {
        return Ok(None);
    }
    Token::load(&file).map(Some).map_err(|e| {
        Failure::Input(format!(
            "error: cannot use the cluster's token file: {e}; {}",
            target.dir.token_hint()
        ))
    })
}

fn planner_addr(target: &Target) -> Result<String, Failure> {
    if let Some(addr) = &target.planner {
        return Ok(addr.clone());
    }
    let dir = target.dir.path();
    let path = dir.join(CLUSTER_FILE);
    let record = read_record(&path)?.ok_or_else(|| {
        Failure::Input(format!(
            "error: no cluster is up in {} (no {CLUSTER_FILE}); start one with `faasflow up --dir {}`, or pass --planner ADDR",
            dir.display(),
            dir.display()
        ))
    })?;
    record["planner"]["addr"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| Failure::Other(anyhow!("{} names no planner address", path.display())))
}

pub(crate) async fn connect(addr: &str, credentials: Credentials) -> Result<Planner, Failure> {
    Planner::connect(addr, credentials.token, &credentials.transport)
        .await
        .map_err(failure)
}

/// Whether this command calls the planner without TLS (`--insecure-loopback`): a broken
/// connection then most likely means the planner serves TLS, and its error says so.
static PLAIN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A failed call to the planner as the command's failure: a refusal that is the user's to fix
/// exits with 2, anything else with 1.
pub(crate) fn failure(e: PlannerError) -> Failure {
    let broken = matches!(&e, PlannerError::Unreachable { .. })
        || matches!(&e, PlannerError::Failed { message, .. } if message.contains("transport error"));
    if broken && PLAIN.load(std::sync::atomic::Ordering::Relaxed) {
        return Failure::Other(anyhow!(
            "{e}; the planner may serve TLS: call it without --insecure-loopback, trusting the cluster's CA \
             (--ca FILE, or the cluster's --dir)"
        ));
    }
    match e {
        PlannerError::Unreachable { .. } => Failure::Other(anyhow!("{e}; is the cluster up (`faasflow up`)?")),
        PlannerError::Rejected { .. } => Failure::Input(format!("error: {e}")),
        _ => Failure::Other(anyhow!("{e}")),
    }
}
