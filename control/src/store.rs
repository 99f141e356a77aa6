//! The planner's state directory (`faasflow planner --state-dir DIR`): what survives a
//! restart of the planner, `kill -9` included.
//!
//! - `DIR/planner.lock` is held (`flock`) by the planner that uses the directory and says who
//!   that is (process, address, since when): a second planner started on the same directory
//!   refuses, naming it. The lock goes with the process, however it ends.
//! - `DIR/state.redb` is a [redb](https://www.redb.org) database: one file of copy-on-write
//!   B-trees whose commits are atomic and, with the default durability used here, on disk when
//!   `commit` returns; a write cut short leaves the previous commit. redb rather than SQLite:
//!   the planner needs keyed records, not queries; it is pure Rust (no C toolchain), one
//!   file, and maintained. Its tables:
//!   - `meta`: the state's format ([`FORMAT`]) and the invocation ids handed out so far
//!     (reserved in blocks of [`ID_BLOCK`]: ids never repeat across restarts, at one write
//!     per block);
//!   - `workflows`: each workflow's last version number (versions are never reused);
//!   - `versions`: each installed version (`faasflow.v1.StoredVersion`);
//!   - `workers`: each registered worker (`faasflow.v1.StoredWorker`);
//!   - `executions`: each kept execution (`faasflow.v1.StoredExecution`, its idempotency
//!     key in it); `meta` holds the last execution id given (ids are never given twice, kept
//!     executions or not).
//!
//! A state it cannot read (damaged, not a redb file, a record that does not decode) or of a
//! newer format is an error that names the file and changes nothing in it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

use faasflow_rpc::convert::ConvertError;
use faasflow_rpc::convert::state::{
    ExecutionRecord, LoadedVersion, StoredVersion, StoredWorker, decode_execution, decode_version, decode_worker,
    encode_execution, encode_version, encode_worker,
};
use redb::{Database, ReadOnlyDatabase, ReadableDatabase, ReadableTable as _, TableDefinition};

/// The format of the state this planner writes (and the newest it reads).
pub const FORMAT: u64 = 1;

/// Invocation ids reserved by one write.
pub const ID_BLOCK: u64 = 4096;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const WORKFLOWS: TableDefinition<&str, u64> = TableDefinition::new("workflows");
const VERSIONS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("versions");
const WORKERS: TableDefinition<&str, &[u8]> = TableDefinition::new("workers");
const EXECUTIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("executions");

const FORMAT_KEY: &str = "format";
const IDS_KEY: &str = "invocation_ids_reserved";
const EXECUTION_IDS_KEY: &str = "execution_ids_given";

/// Why the state directory cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Another planner holds the directory.
    #[error(
        "the state directory {dir} is in use by another planner ({holder}); stop that planner first, or give this one \
         another --state-dir"
    )]
    Locked {
        /// The directory.
        dir: PathBuf,
        /// Who holds it, as it wrote itself into the lock file.
        holder: String,
    },
    /// The directory or its lock file cannot be made or opened.
    #[error("cannot use the state directory {dir}: {cause}")]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// The database cannot be opened, read or written.
    #[error(
        "the planner state {file} cannot be used: {cause}; nothing in it was changed (move the file away to start \
         with an empty state)"
    )]
    Database {
        /// The database file.
        file: PathBuf,
        /// redb's error.
        cause: String,
    },
    /// The state was written by a newer faasflow.
    #[error(
        "the planner state {file} has format {found}, newer than format {supported} that this faasflow reads; run the \
         newer faasflow that wrote it (nothing in it was changed)"
    )]
    Newer {
        /// The database file.
        file: PathBuf,
        /// Its format.
        found: u64,
        /// The newest format this build reads.
        supported: u64,
    },
    /// A record does not decode.
    #[error("the planner state {file}: {what} `{key}` cannot be read: {cause}; nothing in it was changed")]
    Record {
        /// The database file.
        file: PathBuf,
        /// The kind of record.
        what: &'static str,
        /// Its key.
        key: String,
        /// Why.
        cause: Box<ConvertError>,
    },
}

/// What a planner starting on the directory gets back.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Each workflow's last version number.
    pub workflows: BTreeMap<String, u64>,
    /// The installed versions.
    pub versions: Vec<LoadedVersion>,
    /// The registered workers.
    pub workers: BTreeMap<String, StoredWorker>,
    /// Invocation ids handed out (or reserved) so far: new ones are larger.
    pub ids_reserved: u64,
    /// The kept executions, by id.
    pub executions: BTreeMap<u64, ExecutionRecord>,
    /// The last execution id given.
    pub execution_ids: u64,
}

/// An open state directory (the lock is held while it lives).
#[derive(Debug)]
pub struct StateDir {
    dir: PathBuf,
    file: PathBuf,
    lock: File,
    db: Database,
}

impl StateDir {
    /// Opens (or makes, mode 0700) the state directory `dir` and takes its lock, then opens
    /// (or makes) its database, checking its format.
    pub fn open(dir: &Path) -> Result<StateDir, StateError> {
        let dir_err = |cause| StateError::Dir {
            dir: dir.to_owned(),
            cause,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(dir_err)?;
        let mut lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("planner.lock"))
            .map_err(dir_err)?;
        if let Err(e) = lock.try_lock() {
            return Err(match e {
                std::fs::TryLockError::WouldBlock => {
                    let mut holder = String::new();
                    let _ = lock.read_to_string(&mut holder);
                    let holder = holder.trim();
                    StateError::Locked {
                        dir: dir.to_owned(),
                        holder: if holder.is_empty() {
                            "it has not said who it is yet".into()
                        } else {
                            holder.into()
                        },
                    }
                }
                std::fs::TryLockError::Error(e) => dir_err(e),
            });
        }
        let file = dir.join("state.redb");
        let db_err = |cause: redb::Error| StateError::Database {
            file: file.clone(),
            cause: cause.to_string(),
        };
        if file.exists() {
            // Read-only first: a file it cannot use is left exactly as it is. One a planner
            // left mid-write (killed) needs the repair a writable open makes: checked after.
            match ReadOnlyDatabase::open(&file) {
                Ok(ro) => {
                    check_newer(&file, format_of(&ro).map_err(db_err)?)?;
                    ro.close().map_err(|e| db_err(e.into()))?;
                }
                Err(redb::DatabaseError::RepairAborted) => {}
                Err(e) => return Err(db_err(e.into())),
            }
        }
        let db = Database::create(&file).map_err(|e| db_err(e.into()))?;
        let state = StateDir {
            dir: dir.to_owned(),
            file: file.clone(),
            lock,
            db,
        };
        state.check_format()?;
        Ok(state)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Says who holds the directory (in its lock file): `holder`, e.g. the process and the
    /// address it serves on.
    pub fn set_holder(&mut self, holder: &str) -> Result<(), StateError> {
        let err = |cause| StateError::Dir {
            dir: self.dir.clone(),
            cause,
        };
        self.lock.set_len(0).map_err(err)?;
        self.lock.rewind().map_err(err)?;
        self.lock.write_all(holder.as_bytes()).map_err(err)?;
        self.lock.sync_data().map_err(err)
    }

    fn db_err(&self, cause: impl Into<redb::Error>) -> StateError {
        StateError::Database {
            file: self.file.clone(),
            cause: cause.into().to_string(),
        }
    }

    /// Refuses a newer format; gives a new state the current one (and every table).
    fn check_format(&self) -> Result<(), StateError> {
        check_newer(&self.file, format_of(&self.db).map_err(|e| self.db_err(e))?)?;
        self.write(|tx| {
            tx.open_table(META)?.insert(FORMAT_KEY, FORMAT)?;
            tx.open_table(WORKFLOWS)?;
            tx.open_table(VERSIONS)?;
            tx.open_table(WORKERS)?;
            tx.open_table(EXECUTIONS)?;
            Ok(())
        })
    }

    /// Runs `f` in a write transaction and commits it (on disk when this returns).
    fn write(&self, f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>) -> Result<(), StateError> {
        let tx = self.db.begin_write().map_err(|e| self.db_err(e))?;
        f(&tx).map_err(|e| self.db_err(e))?;
        tx.commit().map_err(|e| self.db_err(e))
    }

    /// Everything the state holds.
    pub fn load(&self) -> Result<Loaded, StateError> {
        let tx = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let mut loaded = Loaded::default();
        let meta = tx.open_table(META).map_err(|e| self.db_err(e))?;
        loaded.ids_reserved = meta.get(IDS_KEY).map_err(|e| self.db_err(e))?.map_or(0, |v| v.value());
        loaded.execution_ids = meta
            .get(EXECUTION_IDS_KEY)
            .map_err(|e| self.db_err(e))?
            .map_or(0, |v| v.value());
        for entry in tx
            .open_table(EXECUTIONS)
            .map_err(|e| self.db_err(e))?
            .iter()
            .map_err(|e| self.db_err(e))?
        {
            let (k, v) = entry.map_err(|e| self.db_err(e))?;
            let execution = decode_execution(v.value()).map_err(|cause| StateError::Record {
                file: self.file.clone(),
                what: "execution",
                key: k.value().to_string(),
                cause: Box::new(cause),
            })?;
            loaded.executions.insert(k.value(), execution);
        }
        for entry in tx
            .open_table(WORKFLOWS)
            .map_err(|e| self.db_err(e))?
            .iter()
            .map_err(|e| self.db_err(e))?
        {
            let (k, v) = entry.map_err(|e| self.db_err(e))?;
            loaded.workflows.insert(k.value().to_owned(), v.value());
        }
        for entry in tx
            .open_table(VERSIONS)
            .map_err(|e| self.db_err(e))?
            .iter()
            .map_err(|e| self.db_err(e))?
        {
            let (k, v) = entry.map_err(|e| self.db_err(e))?;
            let (workflow, version) = k.value();
            let record = |cause| StateError::Record {
                file: self.file.clone(),
                what: "version",
                key: format!("{workflow}@{version}"),
                cause: Box::new(cause),
            };
            let loaded_version = decode_version(v.value()).map_err(record)?;
            if loaded_version.plan.workflow != workflow || loaded_version.plan.version != version {
                return Err(record(ConvertError::Invalid {
                    field: "plan".into(),
                    reason: format!(
                        "is {}@{}, not the version it is kept under",
                        loaded_version.plan.workflow, loaded_version.plan.version
                    ),
                }));
            }
            loaded.versions.push(loaded_version);
        }
        for entry in tx
            .open_table(WORKERS)
            .map_err(|e| self.db_err(e))?
            .iter()
            .map_err(|e| self.db_err(e))?
        {
            let (k, v) = entry.map_err(|e| self.db_err(e))?;
            let worker = decode_worker(v.value()).map_err(|cause| StateError::Record {
                file: self.file.clone(),
                what: "worker",
                key: k.value().to_owned(),
                cause: Box::new(cause),
            })?;
            loaded.workers.insert(k.value().to_owned(), worker);
        }
        Ok(loaded)
    }

    /// Keeps a new version of its workflow (and that workflow's last version number).
    pub fn put_version(&self, workflow: &str, version: u64, v: &StoredVersion) -> Result<(), StateError> {
        let bytes = encode_version(v);
        self.write(|tx| {
            tx.open_table(VERSIONS)?.insert((workflow, version), bytes.as_slice())?;
            let mut workflows = tx.open_table(WORKFLOWS)?;
            let last = workflows.get(workflow)?.map_or(0, |v| v.value());
            workflows.insert(workflow, last.max(version))?;
            Ok(())
        })
    }

    /// Forgets versions that are no longer installed, in one write (the workflow's last number
    /// stays).
    pub fn drop_versions(&self, workflow: &str, versions: &[u64]) -> Result<(), StateError> {
        self.write(|tx| {
            let mut table = tx.open_table(VERSIONS)?;
            for v in versions {
                table.remove((workflow, *v))?;
            }
            Ok(())
        })
    }

    /// Keeps (or updates) a registered worker.
    pub fn put_worker(&self, name: &str, w: &StoredWorker) -> Result<(), StateError> {
        let bytes = encode_worker(w);
        self.write(|tx| {
            tx.open_table(WORKERS)?.insert(name, bytes.as_slice())?;
            Ok(())
        })
    }

    /// Keeps an execution (new, or updated), as the last id given when it is.
    pub fn put_execution(&self, e: &ExecutionRecord) -> Result<(), StateError> {
        self.put_executions(&[e])
    }

    /// Keeps executions as they are now, in one commit (one write to disk for them all).
    pub fn put_executions(&self, es: &[&ExecutionRecord]) -> Result<(), StateError> {
        let encoded: Vec<(u64, Vec<u8>)> = es.iter().map(|e| (e.id, encode_execution(e))).collect();
        let last = es.iter().map(|e| e.id).max().unwrap_or(0);
        self.write(|tx| {
            let mut table = tx.open_table(EXECUTIONS)?;
            for (id, bytes) in &encoded {
                table.insert(*id, bytes.as_slice())?;
            }
            let mut meta = tx.open_table(META)?;
            let given = meta.get(EXECUTION_IDS_KEY)?.map_or(0, |v| v.value());
            meta.insert(EXECUTION_IDS_KEY, given.max(last))?;
            Ok(())
        })
    }

    /// Forgets executions past their retention.
    pub fn drop_executions(&self, ids: &[u64]) -> Result<(), StateError> {
        self.write(|tx| {
            let mut executions = tx.open_table(EXECUTIONS)?;
            for id in ids {
                executions.remove(*id)?;
            }
            Ok(())
        })
    }

    /// Reserves invocation ids up to `upto` (ids at or below it are never handed out again).
    pub fn reserve_ids(&self, upto: u64) -> Result<(), StateError> {
        self.write(|tx| {
            tx.open_table(META)?.insert(IDS_KEY, upto)?;
            Ok(())
        })
    }
}

/// The format a database says it has (`None`: a new one).
fn format_of(db: &impl ReadableDatabase) -> Result<Option<u64>, redb::Error> {
    let tx = db.begin_read()?;
    match tx.open_table(META) {
        Ok(meta) => Ok(meta.get(FORMAT_KEY)?.map(|v| v.value())),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn check_newer(file: &Path, found: Option<u64>) -> Result<(), StateError> {
    match found {
        Some(found) if found > FORMAT => Err(StateError::Newer {
            file: file.to_owned(),
            found,
            supported: FORMAT,
        }),
        _ => Ok(()),
    }
}

use std::os::unix::fs::DirBuilderExt as _;

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory removed when dropped.
    struct Scratch(PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn scratch(name: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("faasflow-state-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        Scratch(d)
    }

    fn version(name: &str, version: u64) -> StoredVersion {
        let wf = faasflow_planner::load::load_str(
            &format!("name: {name}\nfunctions:\n  f: {{}}\nsteps:\n  - task: f\n"),
            "t.yaml",
            "t",
        )
        .expect("valid")
        .workflow;
        let cluster = faasflow_core::plan::ClusterView::uniform(1, 4);
        let cfg = faasflow_core::plan::PlannerConfig {
            version,
            ..Default::default()
        };
        let plan = faasflow_planner::partition::partition(&wf, &cluster, &cfg).expect("plan");
        StoredVersion {
            plan: faasflow_rpc::convert::WirePlan::new(&wf, &plan, &cluster),
            declared: wf,
            daemons: vec!["worker-0".into()],
            peers: vec![("worker-0".into(), None)],
            allow_overcommit: false,
            source: format!("name: {name}\n"),
            file_name: format!("{name}.yaml"),
            deployed_unix_ms: 1,
            planned_unix_ms: 2,
        }
    }

    #[test]
    fn what_is_kept_comes_back_after_the_directory_is_opened_again() {
        let d = scratch("kept");
        {
            let s = StateDir::open(&d.0).expect("a new state");
            s.put_version("a", 1, &version("a", 1)).unwrap();
            s.put_version("a", 2, &version("a", 2)).unwrap();
            s.put_version("b", 5, &version("b", 5)).unwrap();
            s.drop_versions("a", &[1]).unwrap();
            let w = StoredWorker {
                incarnation: 9,
                grpc_addr: "127.0.0.1:7001".parse().unwrap(),
                quic_addr: None,
                slots: 4,
            };
            s.put_worker("worker-0", &w).unwrap();
            s.reserve_ids(ID_BLOCK).unwrap();
        }
        let s = StateDir::open(&d.0).expect("opened again");
        let l = s.load().unwrap();
        assert_eq!(l.workflows, BTreeMap::from([("a".into(), 2), ("b".into(), 5)]));
        let mut kept: Vec<(String, u64)> = l
            .versions
            .iter()
            .map(|v| (v.plan.workflow.clone(), v.plan.version))
            .collect();
        kept.sort();
        assert_eq!(kept, [("a".into(), 2), ("b".into(), 5)]);
        assert_eq!(l.workers["worker-0"].incarnation, 9);
        assert_eq!(l.ids_reserved, ID_BLOCK);
    }

    #[test]
    fn a_second_opener_is_refused_naming_the_holder() {
        let d = scratch("locked");
        let mut first = StateDir::open(&d.0).expect("first");
        first.set_holder("planner pid 123 on 127.0.0.1:7000").unwrap();
        let e = StateDir::open(&d.0).expect_err("held");
        assert_eq!(
            e.to_string(),
            format!(
                "the state directory {} is in use by another planner (planner pid 123 on 127.0.0.1:7000); stop that \
                 planner first, or give this one another --state-dir",
                d.0.display()
            )
        );
        drop(first);
        StateDir::open(&d.0).expect("free once the first is gone");
    }

    #[test]
    fn a_newer_or_damaged_state_is_refused_and_left_as_it_is() {
        let d = scratch("newer");
        {
            let s = StateDir::open(&d.0).unwrap();
            s.write(|tx| {
                tx.open_table(META)?.insert(FORMAT_KEY, FORMAT + 1)?;
                Ok(())
            })
            .unwrap();
        }
        let file = d.0.join("state.redb");
        let before = std::fs::read(&file).unwrap();
        let e = StateDir::open(&d.0).expect_err("newer");
        assert!(
            matches!(e, StateError::Newer { found, .. } if found == FORMAT + 1),
            "{e}"
        );
        assert!(e.to_string().contains("run the newer faasflow"), "{e}");
        assert!(std::fs::read(&file).unwrap() == before, "nothing changed");

        // Not a database at all.
        std::fs::write(&file, b"these are not the pages of a database").unwrap();
        let e = StateDir::open(&d.0).expect_err("garbage");
        assert!(matches!(e, StateError::Database { .. }), "{e}");
        assert!(e.to_string().contains("nothing in it was changed"), "{e}");
        assert!(
            std::fs::read(&file).unwrap() == b"these are not the pages of a database",
            "nothing changed"
        );

        // A record that does not decode.
        std::fs::remove_file(&file).unwrap();
        {
            let s = StateDir::open(&d.0).unwrap();
            s.write(|tx| {
                tx.open_table(VERSIONS)?.insert(("a", 1), b"\xff\xff".as_slice())?;
                Ok(())
            })
            .unwrap();
        }
        let e = StateDir::open(&d.0).unwrap().load().expect_err("bad record");
        assert!(e.to_string().contains("version `a@1` cannot be read"), "{e}");
    }
}
