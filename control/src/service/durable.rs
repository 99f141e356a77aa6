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
use faasflow_rpc::convert::state::{ExecutionRecord, StoredVersion, StoredWorker};

/// Why something could not be kept in the state directory.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeepError {
    #[error(transparent)]
    State(#[from] StateError),
    /// The blocking task that wrote it ended without an answer.
    #[error("the write was cut short: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A commit of several records failed.
    #[error("{0}")]
    Batch(Arc<StateError>),
    /// The writer thread is gone.
    #[error("the planner's state writer stopped")]
    Stopped,
}

impl Drop for ExecutionWriter {
    fn drop(&mut self) {
        // Its queue closed, the thread writes what is queued and ends.
        drop(self.queue.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Most execution records in one commit.
const MAX_BATCH: usize = 4096;

/// An execution record to write, and who waits for it.
type Queued = (
    ExecutionRecord,
    tokio::sync::oneshot::Sender<Result<(), Arc<StateError>>>,
);

/// Writes execution records from a thread of its own, many per commit (group commit): each
/// commit takes every record queued when it starts, so that under load one write to disk
/// (redb's commit is durable when it returns) keeps many, and each waiter is answered once
/// its record is on disk.
#[derive(Debug)]
pub(crate) struct ExecutionWriter {
    queue: Option<std::sync::mpsc::Sender<Queued>>,
    /// The thread, joined when the writer is dropped (it has let go of the directory then).
    thread: Option<std::thread::JoinHandle<()>>,
    /// Commits made, and records they kept (`/metrics`).
    pub(crate) commits: Arc<AtomicU64>,
    pub(crate) records: Arc<AtomicU64>,
}

impl ExecutionWriter {
    /// Starts the writer of `store` (it stops when the writer is dropped).
    pub(crate) fn start(store: Arc<StateDir>) -> std::io::Result<ExecutionWriter> {
        let (queue, rx) = std::sync::mpsc::channel::<Queued>();
        let commits = Arc::new(AtomicU64::new(0));
        let records = Arc::new(AtomicU64::new(0));
        let (c, r) = (commits.clone(), records.clone());
        let thread = std::thread::Builder::new()
            .name("planner-state".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(q) => batch.push(q),
                            Err(_) => break,
                        }
                    }
                    let refs: Vec<&ExecutionRecord> = batch.iter().map(|(e, _)| e).collect();
                    let result = store.put_executions(&refs).map_err(Arc::new);
                    c.fetch_add(1, Ordering::Relaxed);
                    r.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    for (_, waiter) in batch {
                        let _ = waiter.send(result.clone());
                    }
                }
            })?;
        Ok(ExecutionWriter {
            queue: Some(queue),
            thread: Some(thread),
            commits,
            records,
        })
    }

    /// Keeps `e`: on disk when this returns.
    async fn write(&self, e: ExecutionRecord) -> Result<(), KeepError> {
        let (done, wait) = tokio::sync::oneshot::channel();
        let queue = self.queue.as_ref().ok_or(KeepError::Stopped)?;
        queue.send((e, done)).map_err(|_| KeepError::Stopped)?;
        wait.await.map_err(|_| KeepError::Stopped)?.map_err(KeepError::Batch)
    }
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
        let token = service.inner.config.credentials();
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

    /// Keeps an execution as it is now (on disk when this returns; with others in one commit
    /// under load, [`ExecutionWriter`]).
    pub(crate) async fn keep_execution(&self, e: ExecutionRecord) -> Result<(), KeepError> {
        match &self.inner.writer {
            Some(w) => w.write(e).await,
            None => Ok(()),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use faasflow_rpc::convert::state::ExecutionStatus;

    /// Records queued while a commit runs go to disk together in the next one, and every one
    /// of them is there when the directory is opened again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn execution_records_queued_together_are_committed_together() {
        let dir = std::env::temp_dir().join(format!("faasflow-group-commit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let service =
            PlannerService::restore(ServiceConfig::default(), StateDir::open(&dir).expect("open")).expect("restore");
        let records: Vec<ExecutionRecord> = (1..=200)
            .map(|id| ExecutionRecord {
                id,
                workflow: "w".into(),
                status: Some(ExecutionStatus::Succeeded),
                ..ExecutionRecord::default()
            })
            .collect();
        let writes: Vec<_> = records
            .into_iter()
            .map(|e| {
                let s = service.clone();
                tokio::spawn(async move { s.keep_execution(e).await })
            })
            .collect();
        for w in writes {
            w.await.expect("joined").expect("kept");
        }
        let writer = service.inner.writer.as_ref().expect("a writer");
        let (commits, kept) = (
            writer.commits.load(Ordering::Relaxed),
            writer.records.load(Ordering::Relaxed),
        );
        assert_eq!(kept, 200);
        assert!(commits < 50, "{commits} commits for 200 records");
        drop(service);
        let loaded = StateDir::open(&dir).expect("open again").load().expect("load");
        assert_eq!(loaded.executions.len(), 200);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
