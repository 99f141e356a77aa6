//! Deployed workflows and their versions, and what can be wrong with a version: pure
//! functions of the registry and `now`, which the driver acts on.
//!
//! Each deploy of a workflow gets a new version; daemons hold old and new ones; new
//! invocations take the newest; a version that is not the newest is dropped once no invocation
//! runs on it (red-black).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use faasflow_core::dag::{NodeId, Workflow};
use faasflow_core::plan::{ClusterView, Mode, Plan, Tier};
use faasflow_rpc::convert::WirePlan;

use crate::measure::Measured;
use crate::registry::{LOST_AFTER, Registry, Worker};

/// Heartbeat intervals between two re-plans of a workflow onto a worker that is live again.
pub(crate) const REBALANCE_EVERY: u32 = 10;

/// One deployed version of a workflow.
#[derive(Debug)]
pub(crate) struct Version {
    pub(crate) version: u64,
    pub(crate) wf: Arc<Workflow>,
    pub(crate) plan: Plan,
    pub(crate) cluster: ClusterView,
    /// Its plan as daemons receive it.
    pub(crate) wire: WirePlan,
    /// The workers whose daemons hold it, by name.
    pub(crate) daemons: Vec<String>,
    /// The digest of its plan ([`faasflow_rpc::convert::plan_digest`]): what a daemon holding it
    /// reports.
    pub(crate) digest: Vec<u8>,
    /// Their QUIC addresses when it was made (a daemon back on another address breaks it:
    /// the others would dial the old one).
    pub(crate) peers: BTreeMap<String, Option<SocketAddr>>,
    /// The live workers it was planned, or last found good, for.
    pub(crate) considered: BTreeSet<String>,
    pub(crate) in_flight: u64,
    /// How it was deployed (a re-plan deploys the same way).
    pub(crate) mode: Mode,
    pub(crate) allow_overcommit: bool,
    /// The workflow as its user deployed it (`wf` less the measured peaks of re-plans).
    pub(crate) declared: Arc<Declared>,
    /// When it was planned, ms since the Unix epoch.
    pub(crate) planned_unix_ms: u64,
}

/// A workflow as its user deployed it: what re-plans start from, and what `DescribeWorkflow`
/// shows.
#[derive(Debug, Clone)]
pub(crate) struct Declared {
    pub(crate) wf: Workflow,
    /// Its source (YAML) and the file it came from.
    pub(crate) source: String,
    pub(crate) file_name: String,
    /// When it was deployed, ms since the Unix epoch.
    pub(crate) deployed_unix_ms: u64,
}

impl Declared {
    /// `wf` with no source (a test's, or the simulator's).
    #[cfg(test)]
    pub(crate) fn bare(wf: &Workflow) -> Arc<Declared> {
        Arc::new(Declared {
            wf: wf.clone(),
            source: String::new(),
            file_name: String::new(),
            deployed_unix_ms: 0,
        })
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A workflow's versions.
#[derive(Debug, Default)]
pub(crate) struct Deployed {
    /// Installed versions, newest first.
    pub(crate) versions: Vec<Version>,
    /// The last version number given (versions are never reused, dropped ones included).
    pub(crate) last: u64,
    /// What each task was measured at, from the reports of its invocations (every
    /// version's).
    pub(crate) measured: BTreeMap<String, Measured>,
    /// A re-plan from measured values is under way.
    pub(crate) replanning: bool,
    /// A repair of its newest version (re-plan or install, `PlannerService::repair`) is
    /// under way in the background.
    pub(crate) repairing: bool,
    /// When its newest version was last planned again because workers changed.
    pub(crate) last_replan: Option<Instant>,
    /// When a repair last failed, and why (said once per cause).
    pub(crate) repair_failed: Option<(Instant, RepairError)>,
    /// It is being undeployed: new invocations, deploys and repairs are refused.
    pub(crate) undeploying: bool,
}

/// Why a workflow's newest version could not be put right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RepairError {
    #[error("workflow `{0}` is no longer deployed")]
    Undeployed(String),
    #[error("workflow `{0}` has no version")]
    NoVersion(String),
    #[error("workflow `{workflow}` version {version} was dropped meanwhile")]
    Dropped { workflow: String, version: u64 },
    /// Installing it again failed on these workers (one message per worker, sorted).
    #[error("{}", .0.join("; "))]
    Install(Vec<String>),
    /// Planning it again failed; the message is the deploy's.
    #[error("{0}")]
    Replan(String),
}

/// A worker of a plan: its name and its daemon's address.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) name: String,
    pub(crate) addr: SocketAddr,
}

/// What is wrong with a workflow's newest version.
#[derive(Debug)]
pub(crate) enum Fault {
    /// It uses a worker that cannot run its part: plan it again onto the live workers.
    Broken(String),
    /// Live workers that should hold it do not (their daemons restarted): install it again.
    Missing(Vec<Target>),
    /// A live worker it was not planned for (back, or new): plan it again to use it.
    Rebalance(String),
}

/// A version that was asked for does not exist (the message says which exist).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct NoVersion(pub(crate) String);

pub(crate) fn find_version(workflow: &str, deployed: &Deployed, version: Option<u64>) -> Result<usize, NoVersion> {
    match version {
        None if deployed.versions.is_empty() => {
            Err(NoVersion(format!("workflow `{workflow}` has no installed version")))
        }
        None => Ok(0),
        Some(v) => deployed.versions.iter().position(|x| x.version == v).ok_or_else(|| {
            let mut known: Vec<String> = deployed.versions.iter().map(|x| x.version.to_string()).collect();
            if known.is_empty() {
                known.push("none".into());
            }
            let dropped = if v <= deployed.last && v > 0 {
                " (it was dropped once no invocation ran on it and a newer version existed)"
            } else {
                ""
            };
            NoVersion(format!(
                "workflow `{workflow}` has no version {v}{dropped}; its versions: {}",
                known.join(", ")
            ))
        }),
    }
}

/// The task whose worker is an invocation's entry: the first task on the plan's critical path
/// (the `Start` to the other workers then happens off that path), else the first task in
/// topological order.
pub(crate) fn entry_task(wf: &Workflow, plan: &Plan) -> Option<faasflow_core::NodeId> {
    plan.critical_path
        .nodes
        .iter()
        .copied()
        .find(|n| wf.graph[*n].task().is_some())
        .or_else(|| wf.topo_order().into_iter().find(|n| wf.graph[*n].task().is_some()))
}

/// Whether worker `w` holds version `v` (the same plan: a daemon holding another plan under
/// its number does not).
pub(crate) fn holds(w: &Worker, v: &Version) -> bool {
    w.held
        .get(&(v.wf.name.clone(), v.version))
        .is_some_and(|d| *d == v.digest)
}

/// Where a plan puts each task, by worker name, and the tier of each edge: two plans with the
/// same placement run the same way.
pub(crate) fn placement(wf: &Workflow, plan: &Plan, cluster: &ClusterView) -> (Vec<String>, Vec<Tier>) {
    let workers = task_workers(wf, plan, cluster)
        .map(|(_, w)| w.map_or_else(String::new, str::to_owned))
        .collect();
    (workers, plan.edge_tiers.clone())
}

/// The worker of each task of a MasterSP plan: where the central engine triggers it.
pub(crate) fn master_placement(wf: &Workflow, plan: &Plan, cluster: &ClusterView) -> HashMap<NodeId, String> {
    task_workers(wf, plan, cluster)
        .filter_map(|(n, w)| Some((n, w?.to_owned())))
        .collect()
}

/// Each task of `wf` and the name of the worker `plan` puts it on.
fn task_workers<'a>(
    wf: &'a Workflow,
    plan: &'a Plan,
    cluster: &'a ClusterView,
) -> impl Iterator<Item = (NodeId, Option<&'a str>)> + 'a {
    wf.graph
        .node_indices()
        .filter(|n| wf.graph[*n].task().is_some())
        .map(|n| {
            let worker = cluster.workers.get(plan.worker_of(n) as usize).map(|w| w.name.as_str());
            (n, worker)
        })
}

/// What is wrong with the newest version of a workflow, if anything (`rebalance`: a live
/// worker it was not planned for counts).
pub(crate) fn newest_fault(registry: &Registry, d: &Deployed, now: Instant, rebalance: bool) -> Option<Fault> {
    let v = d.versions.first()?;
    if let Some(why) = broken(registry, v, now) {
        return Some(Fault::Broken(why));
    }
    let missing: Vec<Target> = v
        .daemons
        .iter()
        .filter_map(|name| {
            let w = registry.get(name)?;
            (!holds(w, v)).then(|| Target {
                name: name.clone(),
                addr: w.grpc_addr,
            })
        })
        .collect();
    if !missing.is_empty() {
        return Some(Fault::Missing(missing));
    }
    let interval = registry.interval();
    if rebalance
        && d.last_replan
            .is_none_or(|t| now.saturating_duration_since(t) >= interval * REBALANCE_EVERY)
    {
        let back = registry.iter().find(|(name, w)| {
            !Registry::is_lost(w)
                && now.saturating_duration_since(w.live_since) >= interval * LOST_AFTER
                && !v.considered.contains(*name)
        });
        if let Some((name, _)) = back {
            return Some(Fault::Rebalance(format!(
                "worker `{name}` is live and it was planned without it"
            )));
        }
    }
    None
}

/// Why version `v` cannot run its part on one of its workers, if so.
pub(crate) fn broken(registry: &Registry, v: &Version, now: Instant) -> Option<String> {
    for name in &v.daemons {
        let Some(w) = registry.get(name) else {
            return Some(format!("it uses worker `{name}`, which is not registered"));
        };
        if Registry::is_lost(w) {
            return Some(format!(
                "it uses worker `{name}` ({}), which is lost (no heartbeat for {} ms)",
                w.grpc_addr,
                now.saturating_duration_since(w.last_seen).as_millis()
            ));
        }
        let was = v.peers.get(name).copied().flatten();
        if was != w.quic_addr {
            return Some(format!(
                "it uses worker `{name}`, whose daemon is back on another peer address ({}, was {})",
                w.quic_addr.map_or_else(|| "none".to_owned(), |a| a.to_string()),
                was.map_or_else(|| "none".to_owned(), |a| a.to_string())
            ));
        }
    }
    None
}

/// Why an invocation of version `v` cannot start now, if so: one of its workers is lost,
/// gone, elsewhere, or does not hold it.
pub(crate) fn version_fault(registry: &Registry, v: &Version, now: Instant) -> Option<String> {
    if let Some(why) = broken(registry, v, now) {
        return Some(why);
    }
    v.daemons
        .iter()
        .find(|name| registry.get(name).is_some_and(|w| !holds(w, v)))
        .map(|name| format!("worker `{name}` does not hold it (its daemon started again)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use faasflow_core::PlannerConfig;
    use faasflow_planner::load::load_str;
    use faasflow_planner::partition;

    #[test]
    fn the_entry_is_where_the_critical_path_starts() {
        let wf = load_str(
            "
name: two
functions:
  quick: {runtime: 1ms, outputs: {out: {type: bytes, size: 1MB}}}
  slow: {runtime: 900ms, outputs: {out: {type: bytes, size: 1MB}}}
  join: {runtime: 1ms}
steps:
  - parallel:
      - task: quick
      - task: slow
  - task: join
    inputs: {a: quick.out, b: slow.out}
",
            "two.yaml",
            "two",
        )
        .unwrap()
        .workflow;
        let cluster = ClusterView::uniform(3, 1);
        let cfg = PlannerConfig {
            mode: Mode::MasterSp,
            ..PlannerConfig::default()
        };
        let plan = partition(&wf, &cluster, &cfg).unwrap();
        let name = |n: faasflow_core::NodeId| wf.graph[n].name.clone();
        let topo_first = wf
            .topo_order()
            .into_iter()
            .find(|n| wf.graph[*n].task().is_some())
            .unwrap();
        assert_eq!(
            name(topo_first),
            "quick",
            "the test needs another first task than the path's"
        );
        assert_eq!(name(entry_task(&wf, &plan).unwrap()), "slow");
    }

    #[test]
    fn unknown_versions_are_listed() {
        let deployed = Deployed {
            last: 2,
            ..Deployed::default()
        };
        let e = find_version("wc", &deployed, Some(2)).unwrap_err();
        assert_eq!(
            e.0,
            "workflow `wc` has no version 2 (it was dropped once no invocation ran on it and a newer version existed); its versions: none"
        );
        let e = find_version("wc", &deployed, Some(9)).unwrap_err();
        assert_eq!(e.0, "workflow `wc` has no version 9; its versions: none");
    }

    /// A registry of workers `a` and `b` registered at `t0`, and version 1 of a two-task
    /// workflow planned on both and held by both.
    fn deployed_on_two(t0: Instant) -> (Registry, Deployed) {
        use crate::registry::HeldPlan;
        let wf = Arc::new(
            load_str(
                "name: two\nfunctions:\n  f: {runtime: 1ms, memory: 64MB}\n  g: {runtime: 1ms, memory: 64MB}\n\
                 steps:\n  - task: f\n  - task: g\n",
                "two.yaml",
                "two",
            )
            .unwrap()
            .workflow,
        );
        // One slot each: f and g land on different workers.
        let cluster = ClusterView {
            workers: ["a", "b"]
                .map(|n| faasflow_core::plan::WorkerView {
                    name: n.to_owned(),
                    slots: 1,
                })
                .to_vec(),
        };
        let plan = faasflow_planner::partition(&wf, &cluster, &faasflow_core::PlannerConfig::default()).unwrap();
        let wire = WirePlan::new(&wf, &plan, &cluster);
        let digest = wire.digest().to_vec();
        let mut registry = Registry::new(INTERVAL);
        let held = vec![HeldPlan {
            workflow: "two".to_owned(),
            version: 1,
            dropping: false,
            digest: digest.clone(),
        }];
        for (i, n) in ["a", "b"].into_iter().enumerate() {
            let addr = SocketAddr::from(([127, 0, 0, 1], 10 + i as u16));
            registry.join(n, i as u64, addr, None, 1, held.clone(), t0);
        }
        let version = Version {
            version: 1,
            wf: wf.clone(),
            plan,
            cluster,
            wire,
            daemons: vec!["a".to_owned(), "b".to_owned()],
            digest,
            peers: BTreeMap::from([("a".to_owned(), None), ("b".to_owned(), None)]),
            considered: BTreeSet::from(["a".to_owned(), "b".to_owned()]),
            in_flight: 0,
            mode: Mode::WorkerSp,
            allow_overcommit: false,
            declared: Declared::bare(&wf),
            planned_unix_ms: 0,
        };
        let deployed = Deployed {
            versions: vec![version],
            last: 1,
            ..Deployed::default()
        };
        (registry, deployed)
    }

    const INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

    #[test]
    fn a_version_on_live_workers_that_hold_it_has_no_fault() {
        let t0 = Instant::now();
        let (registry, d) = deployed_on_two(t0);
        assert_eq!(version_fault(&registry, &d.versions[0], t0), None);
        assert!(newest_fault(&registry, &d, t0 + INTERVAL * 100, true).is_none());
    }

    #[test]
    fn a_lost_worker_breaks_the_version() {
        let t0 = Instant::now();
        let (mut registry, d) = deployed_on_two(t0);
        registry.mark_lost("b", t0 + INTERVAL);
        let why = version_fault(&registry, &d.versions[0], t0 + INTERVAL).unwrap();
        assert!(why.contains("worker `b`") && why.contains("which is lost"), "{why}");
        assert!(matches!(
            newest_fault(&registry, &d, t0 + INTERVAL, false),
            Some(Fault::Broken(_))
        ));
    }

    #[test]
    fn a_restarted_worker_that_does_not_hold_the_version_gets_it_installed_again() {
        let t0 = Instant::now();
        let (mut registry, d) = deployed_on_two(t0);
        let addr = SocketAddr::from(([127, 0, 0, 1], 11));
        registry.join("b", 99, addr, None, 1, vec![], t0 + INTERVAL);
        let why = version_fault(&registry, &d.versions[0], t0 + INTERVAL).unwrap();
        assert!(why.contains("does not hold it"), "{why}");
        match newest_fault(&registry, &d, t0 + INTERVAL, false) {
            Some(Fault::Missing(targets)) => {
                assert_eq!(targets.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["b"])
            }
            other => panic!("expected Missing, got {other:?}"),
        }
    }

    #[test]
    fn a_new_worker_is_used_once_it_has_been_live_for_a_loss_window() {
        let t0 = Instant::now();
        let (mut registry, mut d) = deployed_on_two(t0);
        let addr = SocketAddr::from(([127, 0, 0, 1], 12));
        let joined = t0 + INTERVAL;
        registry.join("c", 5, addr, None, 1, vec![], joined);
        // Not before it has been live for LOST_AFTER intervals.
        let early = joined + INTERVAL * (LOST_AFTER - 1);
        assert!(newest_fault(&registry, &d, early, true).is_none());
        let late = joined + INTERVAL * LOST_AFTER;
        assert!(matches!(
            newest_fault(&registry, &d, late, true),
            Some(Fault::Rebalance(_))
        ));
        // Not when rebalancing is not asked for, and not again within REBALANCE_EVERY of the last.
        assert!(newest_fault(&registry, &d, late, false).is_none());
        d.last_replan = Some(late);
        assert!(newest_fault(&registry, &d, late + INTERVAL * (REBALANCE_EVERY - 1), true).is_none());
        assert!(newest_fault(&registry, &d, late + INTERVAL * REBALANCE_EVERY, true).is_some());
    }
}
