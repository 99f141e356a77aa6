//! The local cluster's processes: starting them with their output in log files and watching
//! them come up ([`Started`]), and signalling them to stop.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use rustix::io::Errno;
use rustix::process::{Pid, Signal, geteuid, kill_process};

use crate::Failure;
use crate::record::Recorded;

/// Lines of a log shown when its process failed.
const LOG_TAIL: usize = 20;

/// Processes started by a `up` that has not finished: killed (and waited for) if it fails.
pub(crate) struct Started {
    /// Where each process's log goes.
    logs: PathBuf,
    /// When [`Started::wait_for`] gives up, and after how long.
    deadline: Instant,
    timeout: Duration,
    children: Vec<(String, Child)>,
    armed: bool,
}

impl Started {
    /// Processes whose logs go to `logs`, which have `timeout` to get ready.
    pub(crate) fn new(logs: &Path, timeout: Duration) -> Started {
        Started {
            logs: logs.to_owned(),
            deadline: Instant::now() + timeout,
            timeout,
            children: Vec::new(),
            armed: true,
        }
    }

    /// `up` succeeded: the processes are left running.
    pub(crate) fn keep(&mut self) {
        self.armed = false;
    }

    /// Starts `program` as process `name`, its output to `<logs>/<name>.log` (appended to:
    /// a process started again keeps the log of the one before, which may say why it
    /// ended); returns its pid.
    pub(crate) fn spawn(&mut self, name: &str, program: &Path, args: &[String], cwd: &Path) -> Result<u32, Failure> {
        let log_path = self.logs.join(format!("{name}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let err = log.try_clone().context("cannot open the log twice")?;
        let child = Command::new(program)
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .with_context(|| format!("cannot start {name} ({})", program.display()))?;
        let pid = child.id();
        self.children.push((name.to_owned(), child));
        Ok(pid)
    }

    /// Polls `ready` until it gives a value; fails when a started process exits or the time
    /// given to start passes, saying `what` did not happen.
    pub(crate) fn wait_for<T>(&mut self, what: &str, mut ready: impl FnMut() -> Option<T>) -> Result<T, Failure> {
        loop {
            if let Some(v) = ready() {
                return Ok(v);
            }
            if let Some(dead) = self.find_dead() {
                return Err(Failure::Other(anyhow!("{dead}")));
            }
            if Instant::now() > self.deadline {
                return Err(Failure::Other(anyhow!(
                    "{what} did not happen within {} s; see the logs in {}",
                    self.timeout.as_secs(),
                    self.logs.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A process that exited, and the end of its log.
    fn find_dead(&mut self) -> Option<String> {
        for (name, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                let log = self.logs.join(format!("{name}.log"));
                return Some(format!(
                    "{name} exited ({status}) while the cluster was starting; the end of {}:\n{}",
                    log.display(),
                    tail(&log, LOG_TAIL)
                ));
            }
        }
        None
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        for (_, child) in &mut self.children {
            let _ = child.kill();
        }
        for (_, child) in &mut self.children {
            let _ = child.wait();
        }
    }
}

/// The last `n` lines of a log file.
fn tail(path: &Path, n: usize) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return format!("  ({} cannot be read)", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 << 10)));
    let mut text = String::new();
    let _ = f.read_to_string(&mut text);
    let lines: Vec<&str> = text.lines().collect();
    let lines = &lines[lines.len().saturating_sub(n)..];
    if lines.is_empty() {
        return "  (empty)".into();
    }
    lines.iter().map(|l| format!("  {l}\n")).collect()
}

/// Sends `sig` to a recorded process (one already gone is fine). The error says why it could
/// not be signalled.
pub(crate) fn signal(p: &Recorded, sig: Signal) -> anyhow::Result<()> {
    let Some(pid) = i32::try_from(p.pid).ok().and_then(Pid::from_raw) else {
        anyhow::bail!("{} (pid {}): not a process id", p.name, p.pid);
    };
    match kill_process(pid, sig) {
        Ok(()) | Err(Errno::SRCH) => Ok(()),
        Err(e) => {
            use std::os::unix::fs::MetadataExt as _;
            let owner = std::fs::metadata(format!("/proc/{}", p.pid)).ok().map(|m| m.uid());
            Err(anyhow::anyhow!(signal_error(
                &p.name,
                p.pid,
                e,
                owner,
                geteuid().as_raw()
            )))
        }
    }
}

/// Why `down` could not signal process `pid` (`owner`: its user, when known; `me`: ours).
fn signal_error(name: &str, pid: u32, errno: Errno, owner: Option<u32>, me: u32) -> String {
    if errno != Errno::PERM {
        return format!("{name} (pid {pid}): cannot signal it: {}", std::io::Error::from(errno));
    }
    let whose = match owner {
        Some(uid) if uid != me => format!("it belongs to another user (uid {uid}; you are uid {me})"),
        _ => "the system does not let you signal it".to_owned(),
    };
    format!(
        "{name} (pid {pid}): not permitted to stop it ({}): {whose}; run `faasflow down` as the user who ran \
         `faasflow up`, or as root",
        std::io::Error::from(errno)
    )
}

/// True once none of `procs` runs; false when some still do after `timeout`.
pub(crate) fn wait_gone(procs: &[&Recorded], timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if procs.iter().all(|p| !p.is_running()) {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_of_another_user_is_said_to_be_one() {
        assert_eq!(
            signal_error("worker-0", 4242, Errno::PERM, Some(1000), 65534),
            "worker-0 (pid 4242): not permitted to stop it (Operation not permitted (os error 1)): it belongs to \
             another user (uid 1000; you are uid 65534); run `faasflow down` as the user who ran `faasflow up`, or \
             as root"
        );
        // Same user, and still refused (a security module, a namespace): said as it is.
        let e = signal_error("planner", 7, Errno::PERM, Some(0), 0);
        assert!(e.contains("the system does not let you signal it"), "{e}");
        let e = signal_error("planner", 7, Errno::INVAL, None, 0);
        assert_eq!(e, "planner (pid 7): cannot signal it: Invalid argument (os error 22)");
    }
}
