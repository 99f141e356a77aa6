//! Listing and describing the deployed workflows, and removing one: `Undeploy` refuses new invocations (and
//! deploys and repairs) of the workflow at once, waits for the ones in flight to end, then
//! drops every version from its daemons (and MasterSP's central engine) and forgets it, on
//! disk too. Its version numbers are never given again: a deploy under the same name later
//! goes on past them.

use super::*;
use faasflow_core::plan::Tier;

/// An installed version, as `ListWorkflows` shows it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VersionSummary {
    pub(crate) version: u64,
    pub(crate) mode: Mode,
    pub(crate) workers: Vec<String>,
    pub(crate) tasks: u32,
    pub(crate) in_flight: u64,
    pub(crate) digest: Vec<u8>,
}

/// A deployed workflow, as `ListWorkflows` shows it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WorkflowSummary {
    pub(crate) name: String,
    pub(crate) last_version: u64,
    pub(crate) versions: Vec<VersionSummary>,
    pub(crate) undeploying: bool,
}

/// What an undeploy removed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Undeployed {
    pub(crate) versions: Vec<u64>,
    pub(crate) workers: Vec<String>,
    pub(crate) drained: u64,
}

/// How often an undeploy looks whether the invocations in flight have ended.
const DRAIN_POLL: Duration = Duration::from_millis(20);

impl PlannerService {
    /// Every deployed workflow, by name.
    pub(crate) fn workflows(&self) -> Vec<WorkflowSummary> {
        let state = self.state();
        state.workflows.iter().map(|(name, d)| summary(name, d)).collect()
    }

    /// `DescribeWorkflow`: workflow `name` and its installed versions in detail, newest first.
    pub(crate) fn describe_workflow(&self, name: &str) -> Result<(WorkflowSummary, Vec<VersionDescription>), Status> {
        let state = self.state();
        let Some(d) = state.workflows.get(name) else {
            return Err(self.not_found_workflow(&state, name));
        };
        Ok((summary(name, d), d.versions.iter().map(describe_version).collect()))
    }

    /// `Undeploy`: waits up to `drain` (`None`: the default deadline) for the workflow's
    /// invocations in flight to end; when they do not, the workflow serves again and the error
    /// says how many still run.
    pub(crate) async fn undeploy(&self, workflow: &str, drain: Option<Duration>) -> Result<Undeployed, Status> {
        let drain = drain.unwrap_or(self.inner.config.default_deadline);
        let drained = {
            let mut state = self.state();
            let Some(d) = state.workflows.get_mut(workflow) else {
                return Err(self.not_found_workflow(&state, workflow));
            };
            if d.undeploying {
                return Err(Status::failed_precondition(format!(
                    "workflow `{workflow}` is already being undeployed"
                )));
            }
            d.undeploying = true;
            in_flight_of(d)
        };
        if drained > 0 {
            tracing::info!(%workflow, in_flight = drained, "undeploying: waiting for its invocations in flight");
        }
        let end = Instant::now() + drain;
        loop {
            let left = self.state().workflows.get(workflow).map_or(0, in_flight_of);
            if left == 0 {
                break;
            }
            if Instant::now() >= end {
                if let Some(d) = self.state().workflows.get_mut(workflow) {
                    d.undeploying = false;
                }
                return Err(Status::deadline_exceeded(format!(
                    "workflow `{workflow}` was not undeployed: {left} of its invocations still run after {} ms; it \
                     serves again; retry once they have ended, or give them longer (--drain-ms)",
                    drain.as_millis()
                )));
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
        // No deploy or repair of it meanwhile.
        let _one_at_a_time = self.inner.deploying.lock().await;
        let (removed, targets) = {
            let mut state = self.state();
            let Some(d) = state.workflows.remove(workflow) else {
                return Err(self.not_found_workflow(&state, workflow));
            };
            let last = state.seen_versions.get(workflow).copied().unwrap_or(0).max(d.last);
            state.seen_versions.insert(workflow.to_owned(), last);
            let mut targets = Vec::new();
            for v in &d.versions {
                for name in &v.daemons {
                    if let Some(w) = state.registry.get_mut(name) {
                        w.held.remove(&(workflow.to_owned(), v.version));
                        targets.push((
                            Target {
                                name: name.clone(),
                                addr: w.grpc_addr,
                            },
                            v.version,
                        ));
                    }
                }
            }
            (d.versions, targets)
        };
        for v in &removed {
            if v.plan.mode == Mode::MasterSp
                && let Some(central) = self.inner.central.get()
            {
                central.uninstall(workflow, v.version);
            }
        }
        let token = self.inner.config.credentials();
        let mut drops = tokio::task::JoinSet::new();
        for (target, version) in targets.iter().cloned() {
            drops.spawn(drop_on(target, token.clone(), workflow.to_owned(), version));
        }
        // A daemon that does not answer drops it when the watch finds it holds a version the
        // planner does not know.
        while drops.join_next().await.is_some() {}
        let versions: Vec<u64> = removed.iter().map(|v| v.version).collect();
        self.forget_versions_now(workflow, &versions).await?;
        let workers: BTreeSet<String> = targets.into_iter().map(|(t, _)| t.name).collect();
        tracing::info!(%workflow, ?versions, workers = %workers.iter().cloned().collect::<Vec<_>>().join(","), "undeployed");
        Ok(Undeployed {
            versions,
            workers: workers.into_iter().collect(),
            drained,
        })
    }
}

/// Invocations in flight on any version of a workflow.
fn in_flight_of(d: &Deployed) -> u64 {
    d.versions.iter().map(|v| v.in_flight).sum()
}

/// An installed version in detail (`DescribeWorkflow`).
#[derive(Debug, Clone)]
pub(crate) struct VersionDescription {
    pub(crate) version: u64,
    /// Its source and file (empty: kept before sources were).
    pub(crate) source: String,
    pub(crate) file_name: String,
    pub(crate) deployed_unix_ms: u64,
    pub(crate) planned_unix_ms: u64,
    /// Where each task runs: (task, function, worker), in the workflow's order.
    pub(crate) tasks: Vec<(String, String, String)>,
    /// Its edges by data tier, in tier order.
    pub(crate) edges: Vec<(Tier, u32)>,
    pub(crate) groups: u32,
    pub(crate) merges: u32,
    pub(crate) critical_path_ms: f64,
}

/// Workflow `name` as `ListWorkflows` shows it.
fn summary(name: &str, d: &Deployed) -> WorkflowSummary {
    WorkflowSummary {
        name: name.to_owned(),
        last_version: d.last,
        undeploying: d.undeploying,
        versions: d
            .versions
            .iter()
            .map(|v| VersionSummary {
                version: v.version,
                mode: v.mode,
                workers: v.daemons.clone(),
                tasks: v.wf.graph.node_weights().filter(|n| n.task().is_some()).count() as u32,
                in_flight: v.in_flight,
                digest: v.digest.clone(),
            })
            .collect(),
    }
}

fn describe_version(v: &Version) -> VersionDescription {
    let graph = &v.wf.graph;
    let tasks = graph
        .node_indices()
        .filter_map(|n| {
            let t = graph[n].task()?;
            let worker = v.cluster.workers.get(v.plan.worker_of(n) as usize);
            Some((
                graph[n].name.clone(),
                t.function.clone(),
                worker.map(|w| w.name.clone()).unwrap_or_default(),
            ))
        })
        .collect();
    let mut tiers: BTreeMap<Tier, u32> = BTreeMap::new();
    for t in &v.plan.edge_tiers {
        *tiers.entry(*t).or_default() += 1;
    }
    VersionDescription {
        version: v.version,
        source: v.declared.source.clone(),
        file_name: v.declared.file_name.clone(),
        deployed_unix_ms: v.declared.deployed_unix_ms,
        planned_unix_ms: v.planned_unix_ms,
        tasks,
        edges: tiers.into_iter().collect(),
        groups: u32::try_from(v.plan.groups.len()).unwrap_or(u32::MAX),
        merges: v.plan.merges,
        critical_path_ms: v.plan.critical_path.cost_ms,
    }
}
