//! `faasflow workflows` (what is deployed), `faasflow undeploy` (remove a workflow) and
//! `faasflow status`'s view of the cluster.

use std::time::Duration;

use faasflow_rpc::convert::short_digest;
use faasflow_rpc::convert::state::ExecutionStatus;
use faasflow_rpc::planner::{DeployedWorkflow, RegisteredWorker, VersionDetail};

use crate::client::{StatusArgs, Target, connect, failure, planner_of};
use crate::{Failure, runtime};

#[derive(Debug, clap::Args)]
pub(crate) struct WorkflowsArgs {
    /// Only this workflow, in detail.
    name: Option<String>,
    /// With NAME: print the source (YAML) of its newest version (or of --version's).
    #[arg(long, requires = "name")]
    source: bool,
    /// With NAME: only this version.
    #[arg(long, requires = "name")]
    version: Option<u64>,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Args)]
pub(crate) struct UndeployArgs {
    /// The workflow to remove.
    name: String,
    /// Longest wait for its invocations in flight to end, ms (default: the planner's default
    /// deadline); when they have not ended by then, it is not undeployed and serves again.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    drain_ms: Option<u64>,
    #[command(flatten)]
    target: Target,
}

/// `faasflow workflows`.
pub(crate) fn workflows(args: &WorkflowsArgs) -> Result<(), Failure> {
    let (addr, token) = planner_of(&args.target)?;
    if let Some(name) = &args.name {
        let (w, details) = runtime()?.block_on(async {
            let mut planner = connect(&addr, token).await?;
            planner.describe_workflow(name).await.map_err(failure)
        })?;
        let details: Vec<&VersionDetail> = details
            .iter()
            .filter(|d| args.version.is_none_or(|v| v == d.version))
            .collect();
        if let (Some(v), true) = (args.version, details.is_empty()) {
            let have: Vec<String> = w.versions.iter().map(|v| v.version.to_string()).collect();
            return Err(Failure::Input(format!(
                "error: workflow `{name}` has no installed version {v} (installed: {})",
                have.join(", ")
            )));
        }
        if args.source {
            let d = details[0];
            if d.source.is_empty() {
                return Err(Failure::Input(format!(
                    "error: version {} of `{name}` was kept before sources were: deploy it again to keep its source",
                    d.version
                )));
            }
            return crate::out(&d.source);
        }
        return crate::out(&describe_text(&w, &details));
    }
    let workflows = runtime()?.block_on(async {
        let mut planner = connect(&addr, token).await?;
        planner.workflows().await.map_err(failure)
    })?;
    if workflows.is_empty() {
        return outln!("no workflow is deployed (`faasflow deploy FILE`)");
    }
    crate::out(&workflows_text(&workflows))
}

/// The table of `faasflow workflows`: one line per installed version, newest first, in
/// aligned columns.
fn workflows_text(workflows: &[DeployedWorkflow]) -> String {
    let mut rows: Vec<[String; 7]> =
        vec![["WORKFLOW", "VERSION", "MODE", "TASKS", "IN FLIGHT", "WORKERS", "PLAN"].map(str::to_owned)];
    for w in workflows {
        let name = if w.undeploying {
            format!("{} (undeploying)", w.name)
        } else {
            w.name.clone()
        };
        for v in &w.versions {
            rows.push([
                name.clone(),
                v.version.to_string(),
                v.mode.as_str().to_owned(),
                v.tasks.to_string(),
                v.in_flight.to_string(),
                v.workers.join(","),
                short_digest(&v.digest),
            ]);
        }
    }
    crate::table::aligned(&rows)
}

/// `faasflow workflows NAME`: each version, where its tasks run and its edges by tier.
fn describe_text(w: &DeployedWorkflow, details: &[&VersionDetail]) -> String {
    let when = |ms: u64| {
        if ms == 0 {
            "-".to_owned()
        } else {
            httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_millis(ms))
        }
    };
    let mut out = format!(
        "workflow `{}`{}: {} version(s) installed, last given {}\n",
        w.name,
        if w.undeploying { " (undeploying)" } else { "" },
        w.versions.len(),
        w.last_version
    );
    for d in details {
        let info = w.versions.iter().find(|v| v.version == d.version);
        out.push_str(&format!(
            "\nversion {}{}: {} mode, {} in flight, plan {}\n",
            d.version,
            if d.file_name.is_empty() {
                String::new()
            } else {
                format!(" from {}", d.file_name)
            },
            info.map_or("?", |v| v.mode.as_str()),
            info.map_or(0, |v| v.in_flight),
            info.map_or_else(String::new, |v| short_digest(&v.digest)),
        ));
        out.push_str(&format!(
            "  deployed {}, planned {}\n  {} group(s), {} merge(s), critical path {:.1} ms; edges: {}\n",
            when(d.deployed_unix_ms),
            when(d.planned_unix_ms),
            d.groups,
            d.merges,
            d.critical_path_ms,
            if d.edges.is_empty() {
                "none".to_owned()
            } else {
                d.edges
                    .iter()
                    .map(|(t, n)| format!("{n} {t}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ));
        let mut rows = vec![["  TASK", "FUNCTION", "WORKER"].map(str::to_owned)];
        for (task, function, worker) in &d.tasks {
            rows.push([format!("  {task}"), function.clone(), worker.clone()]);
        }
        out.push_str(&crate::table::aligned(&rows));
    }
    out
}

/// `faasflow undeploy NAME`.
pub(crate) fn undeploy(args: &UndeployArgs) -> Result<(), Failure> {
    let (addr, token) = planner_of(&args.target)?;
    let drain = args.drain_ms.map(Duration::from_millis);
    let u = runtime()?.block_on(async {
        let mut planner = connect(&addr, token).await?;
        planner.undeploy(&args.name, drain).await.map_err(failure)
    })?;
    let versions: Vec<String> = u.versions.iter().map(u64::to_string).collect();
    outln!(
        "undeployed `{}`: version{} {} dropped from {}{}",
        args.name,
        if versions.len() == 1 { "" } else { "s" },
        versions.join(", "),
        if u.workers.is_empty() {
            "no worker".to_owned()
        } else {
            u.workers.join(", ")
        },
        match u.drained {
            0 => String::new(),
            n => format!(" (after {n} invocation(s) in flight ended)"),
        }
    )
}

/// `faasflow status`: the workers (live or lost, slots, instances, calls, arena use), the
/// deployed workflows and the executions running.
pub(crate) fn cluster_status(args: &StatusArgs) -> Result<(), Failure> {
    let (addr, token) = planner_of(args.target())?;
    let (workers, workflows, running, more) = runtime()?.block_on(async {
        let mut planner = connect(&addr, token).await?;
        let workers = planner.workers().await.map_err(failure)?;
        let workflows = planner.workflows().await.map_err(failure)?;
        let (running, more) = planner
            .executions(None, Some(ExecutionStatus::Running), 1000, None)
            .await
            .map_err(failure)?;
        Ok::<_, Failure>((workers, workflows, running.len(), more))
    })?;
    let live: Vec<&RegisteredWorker> = workers.iter().filter(|w| !w.lost).collect();
    let slots: u32 = live.iter().map(|w| w.slots).sum();
    let instances: u32 = live.iter().map(|w| w.instances).sum();
    let versions: usize = workflows.iter().map(|w| w.versions.len()).sum();
    outln!(
        "planner at {addr}: {} of {} workers live, {instances} of {slots} slots in use; {} workflow(s) deployed \
         ({versions} version(s)); {running}{} execution(s) running",
        live.len(),
        workers.len(),
        workflows.len(),
        if more { "+" } else { "" }
    )?;
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64);
    let mut rows: Vec<[String; 6]> =
        vec![["WORKER", "STATE", "ADDRESS", "INSTANCES/SLOTS", "CALLS", "ARENA"].map(str::to_owned)];
    for w in &workers {
        rows.push([
            w.name.clone(),
            if w.lost {
                format!("lost ({} ms silent)", w.silent_ms)
            } else {
                "live".to_owned()
            },
            w.grpc_addr.clone(),
            format!("{}/{}", w.instances, w.slots),
            w.calls.to_string(),
            format!("{} of {}", mib(w.arena_bytes_used), mib(w.arena_bytes)),
        ]);
    }
    let mut out = crate::table::aligned(&rows);
    out.push_str("`faasflow status --memory` shows each workflow's memory; `faasflow workflows` its versions\n");
    crate::out(&out)
}
