//! The service and its state directory ([`crate::store`]): what a planner started again on
//! the same directory gets back, and the writes that keep it there.
//!
//! Kept: each workflow's last version number, every installed version (its plan as daemons
//! hold it, the workflow as deployed, its workers), the registered workers (name,
//! incarnation, addresses, slots) and the invocation ids handed out. A deploy answers only
//! once its version is on disk. Not kept (yet): reports, measured costs, counters.
//!
//! On a restart the workers come back as they were, each with a new loss window: their
//! daemons' next heartbeats carry the incarnations the planner knows, so they neither register
//! again nor get their versions installed again (the watch compares digests, as always); a
//! worker that is gone is found lost after one window, as a live planner would.

use std::collections::HashMap;

use super::*;
use crate::store::{ID_BLOCK, StateDir, StateError};
use crate::versions::master_placement;
use faasflow_core::dag::NodeId;
use faasflow_rpc::convert::state::{StoredVersion, StoredWorker};

/// Why something could not be kept in the state directory.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeepError {
    #[error(transparent)]
    State(#[from] StateError),
    /// The blocking task that wrote it ended without an answer.
    #[error("the write was cut short: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl PlannerService {
    /// A planner with what `store` kept: it serves every kept version at once.
    pub fn restore(config: ServiceConfig, store: StateDir) -> Result<Self, StateError> {
        let loaded = store.load()?;
        // Ids at or below the mark may have been handed out before the restart.
        let reserved = loaded.ids_reserved + ID_BLOCK;
        store.reserve_ids(reserved)?;
        let dir = store.dir().to_owned();
        let service = PlannerService::build(config, Some(Arc::new(store)));
        let token = service.inner.config.token.clone();
        let now = Instant::now();
        let mut state = service.state();
        let mut held: BTreeMap<String, BTreeMap<(String, u64), Vec<u8>>> = BTreeMap::new();
        for lv in loaded.versions {
            let (s, workflow, plan, cluster) = (lv.stored, lv.workflow, lv.plan, lv.cluster);
            let name = plan.workflow.clone();
            let digest = s.plan.digest().to_vec();
            for d in &s.daemons {
                held.entry(d.clone())
                    .or_default()
                    .insert((name.clone(), plan.version), digest.clone());
            }
            let version = Version {
                version: plan.version,
                wf: Arc::new(workflow),
                considered: cluster.workers.iter().map(|w| w.name.clone()).collect(),
                mode: plan.mode,
                plan,
                cluster,
                wire: s.plan,
                daemons: s.daemons,
                digest,
                peers: s.peers.into_iter().collect(),
                in_flight: 0,
                allow_overcommit: s.allow_overcommit,
                declared: Arc::new(Declared {
                    wf: s.declared,
                    source: s.source,
                    file_name: s.file_name,
                    deployed_unix_ms: s.deployed_unix_ms,
                }),
                planned_unix_ms: s.planned_unix_ms,
            };
            let deployed = state.workflows.entry(name).or_default();
            deployed.last = deployed.last.max(version.version);
            deployed.versions.push(version);
        }
        for (name, last) in loaded.workflows {
            if let Some(d) = state.workflows.get_mut(&name) {
                d.last = d.last.max(last);
            }
            state.seen_versions.insert(name, last);
        }
        for d in state.workflows.values_mut() {
            d.versions.sort_by_key(|v| std::cmp::Reverse(v.version));
        }
        for (name, w) in &loaded.workers {
            let held = held.remove(name).unwrap_or_default();
            state.registry.restore(name, w, held, now);
            state
                .clients
                .insert(name.clone(), Daemon::lazy(name, w.grpc_addr, &token));
        }
        state.next_invocation = loaded.ids_reserved;
        state.ids_reserved = reserved;
        state.executions = super::executions::Executions::restored(loaded.executions, loaded.execution_ids);
        let orphans = state.executions.orphans.len();
        tracing::info!(
            dir = %dir.display(),
            workflows = state.workflows.len(),
            versions = state.workflows.values().map(|d| d.versions.len()).sum::<usize>(),
            workers = loaded.workers.len(),
            next_invocation = loaded.ids_reserved + 1,
            "state restored"
        );
        drop(state);
        if orphans > 0 {
            tracing::info!(
                executions = orphans,
                "executions ran when the planner stopped: waiting for their workers to report how they ended"
            );
        }
        Ok(service)
    }

    /// What a restored planner does once it serves: the central engine takes the MasterSP
    /// versions back, and the watch over the workers starts.
    pub async fn resume(&self) {
        let masters: Vec<(Arc<Workflow>, u64, HashMap<NodeId, String>)> = {
            let state = self.state();
            state
                .workflows
                .values()
                .flat_map(|d| d.versions.iter())
                .filter(|v| v.mode == Mode::MasterSp)
                .map(|v| (v.wf.clone(), v.version, master_placement(&v.wf, &v.plan, &v.cluster)))
                .collect()
        };
        for (wf, version, placement) in masters {
            if let Err(e) = self.remote_store(&wf.name).await {
                tracing::warn!(workflow = %wf.name, version, cause = %e.message(), "a kept MasterSP version cannot run");
                continue;
            }
            if let Err(e) = self.central().install(wf.clone(), version, placement).await {
                tracing::warn!(workflow = %wf.name, version, cause = %e, "a kept MasterSP version cannot run");
            }
        }
        if !self.state().registry.is_empty() {
            self.watch_workers();
        }
    }

    /// The state directory, if the planner has one.
    fn store(&self) -> Option<Arc<StateDir>> {
        self.inner.store.clone()
    }

    /// Runs `f` on the state directory off the async threads (nothing without one): on disk
    /// when this returns.
    async fn with_store(
        &self,
        f: impl FnOnce(&StateDir) -> Result<(), StateError> + Send + 'static,
    ) -> Result<(), KeepError> {
        let Some(store) = self.store() else { return Ok(()) };
        Ok(tokio::task::spawn_blocking(move || f(&store)).await??)
    }

    /// Runs `f` on the state directory in the background; a failure is logged as `what`.
    fn in_background(&self, what: String, f: impl FnOnce(&StateDir) -> Result<(), StateError> + Send + 'static) {
        let Some(store) = self.store() else { return };
        tokio::task::spawn_blocking(move || {
            if let Err(e) = f(&store) {
                tracing::warn!(cause = %e, "{what}");
            }
        });
    }

    /// Keeps a new version (on disk when this returns): an error says the version serves now
    /// but would be forgotten by a restart.
    pub(crate) async fn keep_version(&self, workflow: &str, version: u64, v: StoredVersion) -> Result<(), Status> {
        let name = workflow.to_owned();
        self.with_store(move |s| s.put_version(&name, version, &v))
            .await
            .map_err(|e| not_kept(workflow, version, &e.to_string()))
    }

    /// Forgets dropped versions, in the background (a version left behind by a failure is
    /// dropped again after the next restart).
    pub(crate) fn forget_versions(&self, workflow: &str, versions: Vec<u64>) {
        if versions.is_empty() {
            return;
        }
        let name = workflow.to_owned();
        self.in_background(
            format!("cannot forget dropped versions {versions:?} of workflow `{workflow}`"),
            move |s| s.drop_versions(&name, &versions),
        );
    }

    /// Forgets the versions of an undeployed workflow, on disk when this returns.
    pub(crate) async fn forget_versions_now(&self, workflow: &str, versions: &[u64]) -> Result<(), Status> {
        let (name, versions) = (workflow.to_owned(), versions.to_vec());
        self.with_store(move |s| s.drop_versions(&name, &versions))
            .await
            .map_err(|cause| {
                Status::internal(format!(
                    "workflow `{workflow}` left its daemons, but the planner could not forget it in its state directory \
                     ({cause}): a restart of the planner would bring it back; fix the state directory and undeploy again"
                ))
            })
    }

    /// Keeps an execution as it is now (on disk when this returns).
    pub(crate) async fn keep_execution(
        &self,
        e: faasflow_rpc::convert::state::ExecutionRecord,
    ) -> Result<(), KeepError> {
        self.with_store(move |s| s.put_execution(&e)).await
    }

    /// Forgets executions past their retention, in the background.
    pub(crate) fn forget_executions(&self, ids: Vec<u64>) {
        if !ids.is_empty() {
            self.in_background("cannot forget executions past their retention".into(), move |s| {
                s.drop_executions(&ids)
            });
        }
    }

    /// Keeps a worker as it registered, in the background.
    pub(crate) fn keep_worker(&self, name: &str, w: StoredWorker) {
        let name = name.to_owned();
        self.in_background(
            format!("cannot keep worker `{name}` in the state directory"),
            move |s| s.put_worker(&name, &w),
        );
    }

    /// Reserves the next block of invocation ids when `id` passes the reserved ones (once per
    /// [`ID_BLOCK`] ids; the write is on disk before the id is used).
    pub(crate) fn reserve_ids(&self, state: &mut State, id: u64) -> Result<(), Status> {
        if id <= state.ids_reserved {
            return Ok(());
        }
        let Some(store) = self.store() else {
            state.ids_reserved = u64::MAX;
            return Ok(());
        };
        let upto = id.saturating_add(ID_BLOCK);
        store.reserve_ids(upto).map_err(|e| {
            Status::unavailable(format!(
                "the planner cannot keep its invocation ids in its state directory ({e}); nothing was started"
            ))
        })?;
        state.ids_reserved = upto;
        Ok(())
    }
}

fn not_kept(workflow: &str, version: u64, cause: &str) -> Status {
    tracing::error!(%workflow, version, %cause, "a deployed version is not kept in the state directory");
    Status::internal(format!(
        "workflow `{workflow}` version {version} is installed and serves, but the planner could not keep it in its state \
         directory ({cause}): a restart of the planner would forget it; fix the state directory and deploy again"
    ))
}
