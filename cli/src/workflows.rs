//! `faasflow workflows` (what is deployed) and `faasflow undeploy` (remove a workflow).

use std::time::Duration;

use faasflow_rpc::convert::short_digest;
use faasflow_rpc::planner::DeployedWorkflow;

use crate::client::{Target, connect, failure, planner_of};
use crate::{Failure, runtime};

#[derive(Debug, clap::Args)]
pub(crate) struct WorkflowsArgs {
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
    let mut widths = [0; 7];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row.iter().zip(widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
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
