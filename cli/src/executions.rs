//! `faasflow start` (run a workflow without waiting), `faasflow executions` (list them),
//! `faasflow describe ID` (one, with its output or error) and `faasflow cancel ID`.

use faasflow_core::report::not_shown;
use faasflow_rpc::convert::state::{ExecutionRecord, ExecutionStatus};

use crate::client::{Target, WhatToRun, connect, failure, planner_of, prepared_invocation};
use crate::{Failure, runtime};

#[derive(Debug, clap::Args)]
pub(crate) struct StartArgs {
    #[command(flatten)]
    what: WhatToRun,
    /// A key of your choice: starting again with the same key and request answers the
    /// execution it started (safe to retry); with another request it is refused.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ExecutionsArgs {
    /// Only this workflow's.
    #[arg(long, value_name = "NAME")]
    workflow: Option<String>,
    /// Only those in this status.
    #[arg(long, value_parser = parse_status)]
    status: Option<ExecutionStatus>,
    /// At most this many, newest first (at most 1,000).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    limit: u32,
    /// Only those older than this execution id (the last id of a page gives the next).
    #[arg(long, value_name = "ID")]
    before: Option<u64>,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Args)]
pub(crate) struct DescribeArgs {
    /// The execution's id (as `start` printed it).
    id: u64,
    /// Print it as JSON.
    #[arg(long)]
    json: bool,
    /// Wait up to this many seconds for it to end (at most 60).
    #[arg(long, value_name = "SECONDS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=60))]
    wait: u64,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ResultArgs {
    /// The execution's id.
    id: u64,
    /// Write every output into this directory: those its output shows whole as NAME.json,
    /// the others (binary, or over 64 KiB) as NAME (a foreach's as NAME.0, NAME.1, …).
    #[arg(long, value_name = "DIR", conflicts_with = "output")]
    output_dir: Option<std::path::PathBuf>,
    /// Write this output's bytes to standard output (element 0 of a list; see --element).
    #[arg(long, value_name = "NAME")]
    output: Option<String>,
    /// With --output: the element of a list output.
    #[arg(long, value_name = "I", default_value_t = 0, requires = "output")]
    element: u32,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Args)]
pub(crate) struct CancelArgs {
    /// The execution's id.
    id: u64,
    /// Why (said in the execution's error).
    #[arg(long, value_name = "TEXT", default_value = "cancelled with faasflow cancel")]
    reason: String,
    #[command(flatten)]
    target: Target,
}

fn parse_status(s: &str) -> anyhow::Result<ExecutionStatus> {
    ExecutionStatus::ALL
        .into_iter()
        .find(|st| st.as_str() == s)
        .ok_or_else(|| {
            let all: Vec<&str> = ExecutionStatus::ALL.iter().map(|s| s.as_str()).collect();
            anyhow::anyhow!("`{s}` is not a status; one of: {}", all.join(", "))
        })
}

fn status_of(e: &ExecutionRecord) -> &'static str {
    e.status.map_or("unknown", ExecutionStatus::as_str)
}

/// `faasflow start`.
pub(crate) fn start(args: &StartArgs) -> Result<(), Failure> {
    let prepared = prepared_invocation(&args.what)?;
    let (addr, token) = planner_of(&args.what.target)?;
    let key = args.idempotency_key.clone().unwrap_or_default();
    let (id, existing) = runtime()?.block_on(async {
        let mut planner = connect(&addr, token).await?;
        let invocation = prepared.upload(&mut planner).await?;
        planner.start_execution(invocation, &key).await.map_err(failure)
    })?;
    if existing {
        sayln!("note: idempotency key `{key}` already started execution {id}; not started again");
    }
    outln!("{id}")
}

/// `faasflow executions`.
pub(crate) fn executions(args: &ExecutionsArgs) -> Result<(), Failure> {
    let (addr, token) = planner_of(&args.target)?;
    let (page, more) = runtime()?.block_on(async {
        let mut planner = connect(&addr, token).await?;
        planner
            .executions(args.workflow.as_deref(), args.status, args.limit, args.before)
            .await
            .map_err(failure)
    })?;
    if page.is_empty() {
        return outln!("no execution matches");
    }
    let mut rows: Vec<[String; 5]> = vec![["ID", "WORKFLOW", "STATUS", "TOOK", "ERROR"].map(str::to_owned)];
    for e in &page {
        let took = if e.ended_unix_ms > 0 && e.status != Some(ExecutionStatus::Lost) {
            format!("{} ms", e.ended_unix_ms.saturating_sub(e.started_unix_ms))
        } else {
            "-".to_owned()
        };
        let error: String = e.error.chars().take(80).collect();
        rows.push([
            e.id.to_string(),
            e.workflow.clone(),
            status_of(e).to_owned(),
            took,
            error,
        ]);
    }
    let out = crate::table::aligned(&rows);
    crate::out(&out)?;
    if more && let Some(last) = page.last() {
        sayln!(
            "note: more match: `faasflow executions --before {}` shows the next page",
            last.id
        );
    }
    Ok(())
}

/// `faasflow describe ID`.
pub(crate) fn describe(args: &DescribeArgs) -> Result<(), Failure> {
    let (addr, token) = planner_of(&args.target)?;
    let e = runtime()?.block_on(async {
        let mut planner = connect(&addr, token).await?;
        planner
            .execution(args.id, std::time::Duration::from_secs(args.wait))
            .await
            .map_err(failure)
    })?;
    if args.json {
        let text = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).unwrap_or(serde_json::Value::Null);
        let v = serde_json::json!({
            "execution": e.id,
            "workflow": e.workflow,
            "version": e.version,
            "status": status_of(&e),
            "started_unix_ms": e.started_unix_ms,
            "ended_unix_ms": e.ended_unix_ms,
            "invocation": e.invocation_id,
            "output": text(&e.output_json),
            "error": e.error,
            "report": text(&e.report_json),
            "idempotency_key": e.idempotency_key,
        });
        return outln!("{v}");
    }
    outln!("execution {}: workflow `{}`, {}", e.id, e.workflow, status_of(&e))?;
    if e.invocation_id > 0 {
        outln!("  invocation {}", e.invocation_id)?;
    }
    if e.ended_unix_ms > 0 && e.status != Some(ExecutionStatus::Lost) {
        outln!("  took {} ms", e.ended_unix_ms.saturating_sub(e.started_unix_ms))?;
    }
    if !e.output_json.is_empty() {
        outln!("  output {}", String::from_utf8_lossy(&e.output_json))?;
    }
    if !e.error.is_empty() {
        outln!("  error {}", e.error)?;
    }
    Ok(())
}

/// `faasflow cancel ID`: exits 0 once it has ended cancelled (or finished first: said).
pub(crate) fn cancel(args: &CancelArgs) -> Result<(), Failure> {
    let (addr, token) = planner_of(&args.target)?;
    let e = runtime()?.block_on(async {
        let mut planner = connect(&addr, token).await?;
        planner.cancel_execution(args.id, &args.reason).await.map_err(failure)
    })?;
    match e.status {
        Some(ExecutionStatus::Cancelled) => outln!("execution {} cancelled", e.id),
        Some(ExecutionStatus::Running) => outln!(
            "execution {} is cancelled and still stopping (`faasflow describe {}` shows when it has ended)",
            e.id,
            e.id
        ),
        _ => outln!(
            "execution {} ended before the cancel reached it: {}",
            e.id,
            status_of(&e)
        ),
    }
}

/// `faasflow result ID`: the outputs of a succeeded execution; those its output shows as
/// `{"bytes": N}` are read from the worker that keeps them (which frees each once read whole).
pub(crate) fn result(args: &ResultArgs) -> Result<(), Failure> {
    let (addr, token) = planner_of(&args.target)?;
    runtime()?.block_on(async {
        let mut planner = connect(&addr, token).await?;
        if let Some(name) = &args.output {
            let mut stdout = std::io::stdout();
            planner
                .read_output(args.id, name, args.element, &mut stdout)
                .await
                .map_err(failure)?;
            return std::io::Write::flush(&mut stdout).map_err(|e| Failure::Other(e.into()));
        }
        let e = planner
            .execution(args.id, std::time::Duration::ZERO)
            .await
            .map_err(failure)?;
        if e.status != Some(ExecutionStatus::Succeeded) {
            return Err(Failure::Input(format!(
                "error: execution {} has no outputs: it is {}{}",
                e.id,
                status_of(&e),
                if e.error.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", e.error)
                }
            )));
        }
        let output: serde_json::Value = serde_json::from_slice(&e.output_json).unwrap_or_default();
        let Some(dir) = &args.output_dir else {
            return outln!("{output}");
        };
        std::fs::create_dir_all(dir)
            .map_err(|err| Failure::Other(anyhow::anyhow!("cannot create {}: {err}", dir.display())))?;
        for (name, v) in output.as_object().into_iter().flatten() {
            let parts: Vec<(Option<u32>, &serde_json::Value)> = match v.as_array() {
                Some(elements) if elements.iter().any(|e| not_shown(e).is_some()) => {
                    elements.iter().enumerate().map(|(i, e)| (Some(i as u32), e)).collect()
                }
                _ => vec![(None, v)],
            };
            for (element, part) in parts {
                let file = match element {
                    Some(i) => dir.join(format!("{name}.{i}")),
                    None if not_shown(part).is_some() => dir.join(name),
                    None => dir.join(format!("{name}.json")),
                };
                let written = if not_shown(part).is_some() {
                    let mut f = std::fs::File::create(&file)
                        .map_err(|err| Failure::Other(anyhow::anyhow!("cannot create {}: {err}", file.display())))?;
                    planner
                        .read_output(args.id, name, element.unwrap_or(0), &mut f)
                        .await
                        .map_err(failure)?
                } else {
                    let text = format!("{part}\n");
                    std::fs::write(&file, &text)
                        .map_err(|err| Failure::Other(anyhow::anyhow!("cannot write {}: {err}", file.display())))?;
                    text.len() as u64
                };
                outln!("{}  {written} bytes", file.display())?;
            }
        }
        Ok(())
    })
}
