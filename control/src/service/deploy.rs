//! Deploys: plan a workflow for the live workers, give it the next version, install it on
//! every worker that runs one of its tasks (in parallel), and drop it again from the others
//! when one install fails.

use super::*;
use faasflow_rpc::convert::state::StoredVersion;

/// A workflow's source to deploy.
#[derive(Debug, Clone)]
pub(crate) struct DeploySource {
    /// The source (YAML).
    pub(crate) source: String,
    /// The file it came from (named in errors; empty: `<deploy request>`).
    pub(crate) file_name: String,
    /// The name of a workflow whose source carries none (empty: the file's stem).
    pub(crate) default_name: String,
    /// The directory of its file (Python functions' `code` is relative to it; empty: none).
    pub(crate) code_dir: String,
    pub(crate) mode: Mode,
    pub(crate) allow_overcommit: bool,
}

/// A version a deploy made.
#[derive(Debug, Clone)]
pub(crate) struct NewVersion {
    pub(crate) workflow: String,
    pub(crate) version: u64,
    /// Its plan, as daemons received it.
    pub(crate) plan: WirePlan,
}

impl PlannerService {
    /// `Deploy`: loads `d.source` and deploys it as its workflow's next version.
    pub(crate) async fn deploy_source(&self, d: DeploySource) -> Result<NewVersion, Status> {
        let file = if d.file_name.is_empty() {
            "<deploy request>"
        } else {
            &d.file_name
        };
        let default_name = if d.default_name.is_empty() {
            std::path::Path::new(file)
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("workflow")
                .to_owned()
        } else {
            d.default_name.clone()
        };
        let dir = (!d.code_dir.is_empty()).then(|| std::path::Path::new(&d.code_dir));
        if let Some(dir) = dir
            && !dir.is_absolute()
        {
            return Err(Status::invalid_argument(format!(
                "the workflow's directory `{}` is not absolute",
                d.code_dir
            )));
        }
        let loaded = faasflow_planner::load::load_str_in(&d.source, file, &default_name, dir)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let declared = Arc::new(Declared {
            wf: loaded.workflow.clone(),
            file_name: file.to_owned(),
            source: d.source,
            deployed_unix_ms: crate::versions::unix_ms(),
        });
        self.deploy_workflow(Arc::new(loaded.workflow), declared, d.mode, d.allow_overcommit, file)
            .await
    }

    /// Plans `wf` for the live workers and installs it as the workflow's next version;
    /// `declared` is the workflow as its user deployed it (`wf` itself, or for a re-plan from
    /// measured memory, the one it came from). `file` names where it came from in errors.
    pub(crate) async fn deploy_workflow(
        &self,
        wf: Arc<Workflow>,
        declared: Arc<Declared>,
        mode: Mode,
        allow_overcommit: bool,
        file: &str,
    ) -> Result<NewVersion, Status> {
        if mode == Mode::MasterSp {
            self.remote_store(&wf.name).await?;
        }
        let _one_at_a_time = self.inner.deploying.lock().await;
        self.deploy_locked(wf, declared, mode, allow_overcommit, file).await
    }

    /// [`PlannerService::deploy_workflow`] with the deploy lock held (and, for MasterSP, the
    /// remote tier connected).
    pub(crate) async fn deploy_locked(
        &self,
        wf: Arc<Workflow>,
        declared: Arc<Declared>,
        mode: Mode,
        allow_overcommit: bool,
        file: &str,
    ) -> Result<NewVersion, Status> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (cluster, live) = self.live_cluster();
            let version = {
                let mut state = self.state();
                if state.workflows.get(&wf.name).is_some_and(|d| d.undeploying) {
                    return Err(Status::failed_precondition(format!(
                        "{file}: workflow `{}` is being undeployed; deploy it again once that is done",
                        wf.name
                    )));
                }
                let last = state.workflows.get(&wf.name).map_or(0, |d| d.last);
                let seen = state.seen_versions.get(&wf.name).copied().unwrap_or(0);
                let version = last.max(seen) + 1;
                state.installing.insert((wf.name.clone(), version));
                // Never given again, whatever happens to it.
                state.seen_versions.insert(wf.name.clone(), version);
                version
            };
            let result = self
                .install_version(
                    wf.clone(),
                    declared.clone(),
                    mode,
                    allow_overcommit,
                    file,
                    cluster,
                    live,
                    version,
                )
                .await;
            self.state().installing.remove(&(wf.name.clone(), version));
            match result {
                Ok(r) => return Ok(r),
                // Only lost workers failed it: plan it again for the live ones, once.
                Err((status, true)) if attempt == 1 => {
                    tracing::warn!(workflow = %wf.name, "{}; planning it again onto the live workers", status.message());
                }
                Err((status, _)) => return Err(status),
            }
        }
    }

    /// Returns once worker `name` is lost (or gone from the registry).
    async fn until_lost(&self, name: &str) {
        let interval = self.inner.config.heartbeat_interval;
        loop {
            tokio::time::sleep(interval / 2).await;
            if self.state().registry.get(name).is_none_or(Registry::is_lost) {
                return;
            }
        }
    }

    /// Plans `wf` as `version` for `cluster` and installs it on its workers.
    #[allow(clippy::too_many_arguments)]
    async fn install_version(
        &self,
        wf: Arc<Workflow>,
        declared: Arc<Declared>,
        mode: Mode,
        allow_overcommit: bool,
        file: &str,
        cluster: ClusterView,
        live: BTreeMap<String, Worker>,
        version: u64,
    ) -> Result<NewVersion, (Status, bool)> {
        let cfg = PlannerConfig {
            mode,
            allow_overcommit,
            margin_mib: self.inner.config.margin_mib,
            version,
            ..PlannerConfig::default()
        };
        let plan = partition(&wf, &cluster, &cfg).map_err(|e| {
            let status = Status::failed_precondition(format!("{file}: cannot plan workflow `{}`: {e}", wf.name));
            (status, false)
        })?;
        let wire = WirePlan::new(&wf, &plan, &cluster);
        let digest = wire.digest().to_vec();
        // The workers running a task, in plan order.
        let mut used: Vec<u32> = wf
            .graph
            .node_indices()
            .filter(|n| wf.graph[*n].task().is_some())
            .map(|n| plan.worker_of(n))
            .collect();
        used.sort_unstable();
        used.dedup();
        let targets: Vec<Target> = used
            .iter()
            .filter_map(|w| cluster.workers.get(*w as usize))
            .filter_map(|v| {
                live.get(&v.name).map(|w| Target {
                    name: v.name.clone(),
                    addr: w.grpc_addr,
                })
            })
            .collect();
        let peers: Vec<(String, SocketAddr)> = targets
            .iter()
            .filter_map(|t| live.get(&t.name).and_then(|w| w.quic_addr).map(|a| (t.name.clone(), a)))
            .collect();
        if mode == Mode::MasterSp {
            // Every task is triggered by the central engine, on the worker the plan chose.
            let placement = crate::versions::master_placement(&wf, &plan, &cluster);
            self.central()
                .install(wf.clone(), version, placement)
                .await
                .map_err(|e| (Status::failed_precondition(format!("{file}: {e}")), false))?;
        }
        let request = Install {
            plan: wire.clone(),
            peers,
        };
        let mut installs = tokio::task::JoinSet::new();
        for t in targets.iter().cloned() {
            let req = request.clone();
            let token = self.inner.config.credentials();
            let this = self.clone();
            installs.spawn(async move {
                // A worker that stops answering meanwhile does not hold the deploy up until
                // the install's time limit: it is lost, and the deploy plans without it.
                let r = tokio::select! {
                    r = install_on(&t, &token, &req) => r.map_err(|e| (e.to_string(), false)),
                    () = this.until_lost(&t.name) => Err((
                        format!("worker `{}` at {} was lost while the plan was installed", t.name, t.addr),
                        true,
                    )),
                };
                (t, r)
            });
        }
        let mut took = Vec::new();
        let mut errors = Vec::new();
        let mut lost = 0;
        while let Some(joined) = installs.join_next().await {
            match joined {
                Ok((t, Ok(()))) => took.push(t),
                Ok((_, Err((e, was_lost)))) => {
                    lost += usize::from(was_lost);
                    errors.push(e);
                }
                Err(e) => errors.push(format!("an install task failed: {e}")),
            }
        }
        if !errors.is_empty() {
            errors.sort();
            for t in took {
                drop_on(t, self.inner.config.credentials(), wf.name.clone(), version).await;
            }
            if mode == Mode::MasterSp {
                self.central().uninstall(&wf.name, version);
            }
            let unreachable = errors.iter().all(|e| e.starts_with("cannot reach"));
            let message = format!(
                "{file}: workflow `{}` version {version} was not deployed: {}",
                wf.name,
                errors.join("; ")
            );
            let status = if unreachable || lost > 0 {
                Status::unavailable(message)
            } else {
                Status::failed_precondition(message)
            };
            return Err((status, lost == errors.len()));
        }
        let peers: BTreeMap<String, Option<SocketAddr>> = targets
            .iter()
            .map(|t| (t.name.clone(), live.get(&t.name).and_then(|w| w.quic_addr)))
            .collect();
        let planned_unix_ms = crate::versions::unix_ms();
        let kept = StoredVersion {
            plan: wire.clone(),
            declared: declared.wf.clone(),
            daemons: targets.iter().map(|t| t.name.clone()).collect(),
            peers: peers.clone().into_iter().collect(),
            allow_overcommit,
            source: declared.source.clone(),
            file_name: declared.file_name.clone(),
            deployed_unix_ms: declared.deployed_unix_ms,
            planned_unix_ms,
        };
        {
            let mut state = self.state();
            for t in &targets {
                if let Some(w) = state.registry.get_mut(&t.name) {
                    w.held.insert((wf.name.clone(), version), digest.clone());
                }
            }
            let deployed = state.workflows.entry(wf.name.clone()).or_default();
            deployed.last = version;
            deployed.versions.insert(
                0,
                Version {
                    version,
                    wf: wf.clone(),
                    plan,
                    considered: cluster.workers.iter().map(|w| w.name.clone()).collect(),
                    cluster,
                    wire: wire.clone(),
                    daemons: kept.daemons.clone(),
                    digest,
                    peers,
                    in_flight: 0,
                    mode,
                    allow_overcommit,
                    declared,
                    planned_unix_ms,
                },
            );
            self.drop_drained(&mut state, &wf.name);
        }
        // Answered only once kept: nothing acknowledged is forgotten by a restart.
        self.keep_version(&wf.name, version, kept)
            .await
            .map_err(|s| (s, false))?;
        tracing::info!(
            workflow = %wf.name,
            version,
            workers = %targets.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(","),
            "deployed"
        );
        Ok(NewVersion {
            workflow: wf.name.clone(),
            version,
            plan: wire,
        })
    }
}
