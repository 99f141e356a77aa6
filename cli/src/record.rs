//! The record of a local cluster: `DIR/cluster.json`, which `up` writes once every worker has
//! registered, and which `down`, `top` and the client commands read to find the cluster's
//! processes and addresses. Where DIR is (`--dir`, `$FAASFLOW_DIR`, `./.faasflow`) is decided
//! here too.
//!
//! A file of that name that is not such a record is never replaced or removed: it may be the
//! user's.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use faasflow_planner::load::MAX_FILE_BYTES;

use crate::Failure;
use crate::files::{ReadError, holds, mib, read_bounded};

/// The record of a running local cluster, in its directory.
pub(crate) const CLUSTER_FILE: &str = "cluster.json";

/// Where the local cluster lives: `--dir`, else $FAASFLOW_DIR, else ./.faasflow.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DirArg {
    /// The local cluster's directory (certificates, logs, cluster.json) [default: $FAASFLOW_DIR, else ./.faasflow]
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

impl DirArg {
    pub(crate) fn path(&self) -> PathBuf {
        self.dir
            .clone()
            .or_else(|| std::env::var_os("FAASFLOW_DIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(".faasflow"))
    }

    /// What to do about a token file of the cluster's directory that cannot be used: `--dir`
    /// is suggested only when it was not given.
    pub(crate) fn token_hint(&self) -> String {
        let fix = "fix or replace it (`faasflow up` and `faasflow cluster init` write it), or pass the token with \
                   --token-file";
        if self.dir.is_some() {
            return fix.to_owned();
        }
        let from = if std::env::var_os("FAASFLOW_DIR").is_some() {
            "$FAASFLOW_DIR"
        } else {
            "the default"
        };
        format!(
            "{fix}; the cluster's directory is {} ({from}): pass --dir DIR when the cluster is elsewhere",
            self.path().display()
        )
    }
}

/// The record of the cluster `up` started in `dir` (an error saying so when there is none).
pub(crate) fn cluster_record(dir: &DirArg) -> Result<serde_json::Value, Failure> {
    let d = dir.path();
    read_record(&d.join(CLUSTER_FILE))?.ok_or_else(|| {
        Failure::Input(format!(
            "error: no local cluster in {} (no {CLUSTER_FILE}): start one with `faasflow up`",
            d.display()
        ))
    })
}

/// The record `up` wrote at `path`, if there is one. A file of that name that is not such a
/// record is an error (it may be the user's: nothing replaces or removes it).
pub(crate) fn read_record(path: &Path) -> Result<Option<serde_json::Value>, Failure> {
    let bytes = match read_bounded(path, MAX_FILE_BYTES) {
        Ok(bytes) => bytes,
        Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(ReadError::Io(e)) => return Err(Failure::Other(anyhow!("cannot read {}: {e}", path.display()))),
        Err(ReadError::TooLarge(size)) => {
            return Err(Failure::Other(anyhow!(
                "{} is larger than {}{}: `faasflow up` did not write it; choose another --dir",
                path.display(),
                mib(MAX_FILE_BYTES),
                holds(size)
            )));
        }
    };
    let record: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        Failure::Other(anyhow!(
            "{} is not valid JSON ({e}): `faasflow up` did not write it, or it was damaged; it is left as it is: \
             move it away, or choose another --dir",
            path.display()
        ))
    })?;
    if !record["planner"]["addr"].is_string() || !record["workers"].is_array() {
        return Err(Failure::Other(anyhow!(
            "{} is not the record of a cluster `faasflow up` started (it names no planner and workers); it is \
             left as it is: move it away, or choose another --dir",
            path.display()
        )));
    }
    Ok(Some(record))
}

/// Writes the record to `path`.
pub(crate) fn write_record(path: &Path, record: &serde_json::Value) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(record).context("cannot encode cluster.json")?;
    std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The data scale the cluster's daemons were started with, when the record says.
pub(crate) fn data_scale(record: &serde_json::Value) -> Option<f64> {
    record["data_scale"].as_f64()
}

/// A process named in cluster.json.
pub(crate) struct Recorded {
    pub(crate) name: String,
    pub(crate) pid: u32,
    /// A word its command line must contain (a pid may have been reused since).
    pub(crate) expect: &'static str,
}

impl Recorded {
    /// True while the process runs (and is still the one recorded).
    pub(crate) fn is_running(&self) -> bool {
        is_running(self.pid, self.expect)
    }
}

/// The processes of a record: workers first, then the planner, then Redis.
pub(crate) fn processes(record: &serde_json::Value) -> Vec<Recorded> {
    let pid = |v: &serde_json::Value| {
        v.get("pid")
            .and_then(|p| p.as_u64())
            .and_then(|p| u32::try_from(p).ok())
    };
    let mut out = Vec::new();
    for w in record["workers"].as_array().into_iter().flatten() {
        if let Some(p) = pid(w) {
            let name = w["name"].as_str().unwrap_or("worker").to_owned();
            out.push(Recorded {
                name,
                pid: p,
                expect: "faasflow",
            });
        }
    }
    if let Some(p) = pid(&record["planner"]) {
        out.push(Recorded {
            name: "planner".into(),
            pid: p,
            expect: "faasflow",
        });
    }
    if let Some(p) = pid(&record["redis"]) {
        out.push(Recorded {
            name: "redis".into(),
            pid: p,
            expect: "redis-server",
        });
    }
    out
}

/// True when `pid` runs and its command line contains `expect` (a zombie is not running).
fn is_running(pid: u32, expect: &str) -> bool {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let Ok(stat) = std::fs::read_to_string(proc.join("stat")) else {
        return false;
    };
    // The state follows the command name in parentheses, which may itself hold spaces.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    if state == Some("Z") || state == Some("X") {
        return false;
    }
    // An exiting process has released its memory, and so its command line, before it has
    // closed its files (a daemon's BPF probe, its sockets) and become a zombie: still ours.
    std::fs::read(proc.join("cmdline"))
        .map(|c| c.is_empty() || String::from_utf8_lossy(&c).contains(expect))
        .unwrap_or(false)
}
