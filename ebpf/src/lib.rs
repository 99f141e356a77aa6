//! faasflow's memory probe: how much memory a process (an instance) really used, as the peak
//! of its resident set since the daemon last asked, so that the memory a function was given
//! but does not use can hold objects (design.md §3, §6).
//!
//! Two ways, both real measurements:
//! - [`Probe::Ebpf`]: a BPF program (`src/rss.bpf.c`, built by build.rs with clang) on the
//!   kernel's `kmem/rss_stat` tracepoint keeps, for each registered process, its resident
//!   counters and the peak of its own pages (file-backed and anonymous), and the same sum and
//!   peak per cgroup (a container). Loaded and read with aya.
//! - [`Probe::Proc`]: `VmHWM` from `/proc/<pid>/status` less its current `RssShmem`, reset by
//!   writing `5` to `/proc/<pid>/clear_refs`.
//!
//! Shared memory is left out: an instance maps the daemon's whole arena, whose pages are the
//! daemon's (the quota accounts for them), not the function's. The /proc way can only
//! subtract the shared pages resident *now*, which is exact while they do not change during a
//! measurement (the arena is mapped whole when the instance starts).
//!
//! [`Probe::new`] with [`ProbeMode::Auto`] tries BPF and falls back to /proc, saying why.
//!
//! What it does not do: know instances or functions (the daemon maps pids to them), or
//! measure processes it was not told about.

use std::fmt;
use std::path::Path;

use aya::maps::{HashMap as BpfHashMap, MapData};
use aya::programs::TracePoint;

/// The BPF object build.rs produced (empty when clang was missing).
static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/rss.bpf.o"));

/// Errors of the probe.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The BPF program could not be loaded or attached.
    #[error("the eBPF memory probe cannot run: {0}")]
    Ebpf(String),
    /// The process is not (or no longer) there, or its /proc files cannot be used.
    #[error("process {pid}: {cause}")]
    Process { pid: u32, cause: String },
}

/// Which probe to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeMode {
    /// BPF when it loads, else /proc.
    Auto,
    /// BPF only: an error when it cannot load.
    Ebpf,
    /// /proc only.
    Proc,
}

impl fmt::Display for ProbeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProbeMode::Auto => "auto",
            ProbeMode::Ebpf => "ebpf",
            ProbeMode::Proc => "proc",
        })
    }
}

/// A memory probe name that is none of `auto`, `ebpf` and `proc`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown memory probe `{0}` (auto, ebpf or proc)")]
pub struct UnknownProbe(pub String);

impl std::str::FromStr for ProbeMode {
    type Err = UnknownProbe;
    fn from_str(s: &str) -> Result<Self, UnknownProbe> {
        match s {
            "auto" => Ok(ProbeMode::Auto),
            "ebpf" => Ok(ProbeMode::Ebpf),
            "proc" => Ok(ProbeMode::Proc),
            _ => Err(UnknownProbe(s.to_owned())),
        }
    }
}

/// One process's resident counters as the BPF program keeps them (`struct proc_rss`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct ProcRss {
    member: [i64; 4],
    peak: i64,
    cgroup: u64,
}

/// One cgroup's resident bytes and peak (`struct cgroup_rss`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct CgroupRss {
    current: i64,
    peak: i64,
}

// SAFETY: both are `repr(C)` structs of plain integers with no padding (4 + 1 + 1 eight-byte
// fields; 2 eight-byte fields), so every byte pattern is a valid value, as `Pod` requires.
unsafe impl aya::Pod for ProcRss {}
// SAFETY: as above.
unsafe impl aya::Pod for CgroupRss {}

/// The loaded BPF program and its maps.
pub struct EbpfProbe {
    // Keeps the program loaded and attached.
    _ebpf: aya::Ebpf,
    procs: BpfHashMap<MapData, u32, ProcRss>,
    cgroups: BpfHashMap<MapData, u64, CgroupRss>,
}

impl fmt::Debug for EbpfProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EbpfProbe").finish_non_exhaustive()
    }
}

/// The memory probe.
#[derive(Debug)]
pub enum Probe {
    /// The BPF program on `kmem/rss_stat`.
    Ebpf(Box<EbpfProbe>),
    /// `/proc/<pid>/status` `VmHWM`.
    Proc,
}

impl Probe {
    /// The probe `mode` asks for. With [`ProbeMode::Auto`], also why BPF was not used when it
    /// was not (for one log line).
    pub fn new(mode: ProbeMode) -> Result<(Probe, Option<String>), ProbeError> {
        match mode {
            ProbeMode::Proc => Ok((Probe::Proc, None)),
            ProbeMode::Ebpf => Ok((Probe::Ebpf(Box::new(EbpfProbe::load()?)), None)),
            ProbeMode::Auto => match EbpfProbe::load() {
                Ok(p) => Ok((Probe::Ebpf(Box::new(p)), None)),
                Err(e) => Ok((Probe::Proc, Some(e.to_string()))),
            },
        }
    }

    /// `ebpf` or `proc`.
    pub fn kind(&self) -> &'static str {
        match self {
            Probe::Ebpf(_) => "ebpf",
            Probe::Proc => "proc",
        }
    }

    /// Starts measuring process `pid`: its peak is its current resident size from now on.
    pub fn track(&mut self, pid: u32) -> Result<(), ProbeError> {
        match self {
            Probe::Ebpf(p) => p.track(pid),
            Probe::Proc => reset_hwm(pid),
        }
    }

    /// The peak of `pid`'s own resident bytes (file-backed and anonymous) since
    /// [`Probe::track`] or the last [`Probe::reset`].
    pub fn peak(&self, pid: u32) -> Result<u64, ProbeError> {
        match self {
            Probe::Ebpf(p) => p.peak(pid),
            Probe::Proc => {
                let hwm = status_field(pid, "VmHWM:")?;
                Ok(hwm.saturating_sub(status_field(pid, "RssShmem:")?))
            }
        }
    }

    /// Makes `pid`'s current resident size its peak (the start of a new measurement).
    pub fn reset(&mut self, pid: u32) -> Result<(), ProbeError> {
        match self {
            Probe::Ebpf(p) => p.reset(pid),
            Probe::Proc => reset_hwm(pid),
        }
    }

    /// Stops measuring `pid` (it exited or is no longer an instance).
    pub fn forget(&mut self, pid: u32) {
        if let Probe::Ebpf(p) = self {
            let _ = p.procs.remove(&pid);
        }
    }

    /// The peak resident bytes of the registered processes of cgroup `id` together (a
    /// container), BPF only, on a cgroup v2 host ([`cgroup_id`]): `None` with the /proc probe
    /// or an unknown cgroup.
    pub fn cgroup_peak(&self, id: u64) -> Option<u64> {
        match self {
            Probe::Ebpf(p) => p.cgroups.get(&id, 0).ok().map(|c| c.peak.max(0) as u64),
            Probe::Proc => None,
        }
    }
}

impl EbpfProbe {
    /// Loads the program and attaches it to `kmem/rss_stat` (tracefs must be mounted).
    pub fn load() -> Result<EbpfProbe, ProbeError> {
        let err = |what: &str, e: &dyn fmt::Display| ProbeError::Ebpf(format!("{what}: {e}"));
        if OBJECT.is_empty() {
            let clang = option_env!("FAASFLOW_BPF_CLANG").unwrap_or("clang");
            return Err(ProbeError::Ebpf(missing_program(
                option_env!("FAASFLOW_BPF_MISSING").unwrap_or("clang missing"),
                option_env!("FAASFLOW_BPF_NO_CLANG").is_some(),
                on_path(clang),
            )));
        }
        let mut ebpf = aya::Ebpf::load(OBJECT).map_err(|e| {
            err(
                "loading the BPF object (it needs root, or CAP_BPF and CAP_PERFMON; `--memory-probe proc` needs neither)",
                &e,
            )
        })?;
        let program: &mut TracePoint = ebpf
            .program_mut("rss_stat")
            .ok_or_else(|| ProbeError::Ebpf("the BPF object has no `rss_stat` program".into()))?
            .try_into()
            .map_err(|e| err("the `rss_stat` program", &e))?;
        program.load().map_err(|e| err("the kernel refused the program", &e))?;
        program.attach("kmem", "rss_stat").map_err(|e| {
            err(
                "attaching to the kmem/rss_stat tracepoint (is tracefs mounted? `mount -t tracefs nodev /sys/kernel/tracing`)",
                &e,
            )
        })?;
        let map = |ebpf: &mut aya::Ebpf, name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| ProbeError::Ebpf(format!("the BPF object has no `{name}` map")))
        };
        let procs = BpfHashMap::try_from(map(&mut ebpf, "PROCS")?).map_err(|e| err("map PROCS", &e))?;
        let cgroups = BpfHashMap::try_from(map(&mut ebpf, "CGROUPS")?).map_err(|e| err("map CGROUPS", &e))?;
        Ok(EbpfProbe {
            _ebpf: ebpf,
            procs,
            cgroups,
        })
    }

    fn track(&mut self, pid: u32) -> Result<(), ProbeError> {
        // The program only updates registered processes, from the counters' new values: the
        // entry starts from what the process holds now.
        let rss = |field| status_field(pid, field);
        let mut entry = ProcRss {
            member: [
                rss("RssFile:")? as i64,
                rss("RssAnon:")? as i64,
                0,
                rss("RssShmem:")? as i64,
            ],
            ..ProcRss::default()
        };
        entry.peak = entry.member[0] + entry.member[1];
        entry.cgroup = cgroup_id(pid).unwrap_or(0);
        if entry.cgroup != 0 {
            let mut cg = self.cgroups.get(&entry.cgroup, 0).unwrap_or_default();
            cg.current += entry.peak;
            cg.peak = cg.peak.max(cg.current);
            self.cgroups
                .insert(entry.cgroup, cg, 0)
                .map_err(|e| ProbeError::Ebpf(format!("map CGROUPS: {e}")))?;
        }
        self.procs.insert(pid, entry, 0).map_err(|e| ProbeError::Process {
            pid,
            cause: format!("cannot register it with the BPF probe: {e}"),
        })
    }

    fn entry(&self, pid: u32) -> Result<ProcRss, ProbeError> {
        self.procs.get(&pid, 0).map_err(|e| ProbeError::Process {
            pid,
            cause: format!("not measured by the BPF probe ({e})"),
        })
    }

    fn peak(&self, pid: u32) -> Result<u64, ProbeError> {
        Ok(self.entry(pid)?.peak.max(0) as u64)
    }

    fn reset(&mut self, pid: u32) -> Result<(), ProbeError> {
        let mut e = self.entry(pid)?;
        e.peak = e.member[0] + e.member[1];
        self.procs.insert(pid, e, 0).map_err(|e| ProbeError::Process {
            pid,
            cause: format!("cannot reset its peak: {e}"),
        })
    }
}

/// Why the probe has no program and what to do: `why` the build left it out, whether clang
/// could not be run then (`no_clang`), and whether it can be found now (`clang_now`).
fn missing_program(why: &str, no_clang: bool, clang_now: bool) -> String {
    let what = match (no_clang, clang_now) {
        (true, true) => "clang is installed now: rebuild faasflow",
        (true, false) => "install clang and rebuild faasflow",
        (false, _) => "rebuild faasflow once clang compiles src/rss.bpf.c",
    };
    format!("faasflow was built without its BPF program ({why}); {what}")
}

/// Whether `program` (a path, or a name looked up on PATH) is there.
fn on_path(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// A `kB` field of `/proc/<pid>/status`, in bytes.
fn status_field(pid: u32, field: &str) -> Result<u64, ProbeError> {
    let err = |cause: String| ProbeError::Process { pid, cause };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| err(e.to_string()))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .ok_or_else(|| err(format!("no `{field}` in /proc/{pid}/status")))?;
    let kb: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .map_err(|e| err(format!("`{line}`: {e}")))?;
    Ok(kb * 1024)
}

/// Resets `VmHWM` to the current resident size.
fn reset_hwm(pid: u32) -> Result<(), ProbeError> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), b"5").map_err(|e| ProbeError::Process {
        pid,
        cause: format!("cannot reset its peak through /proc/{pid}/clear_refs: {e}"),
    })
}

/// The id of `pid`'s cgroup: the inode number of its directory in the cgroup v2 hierarchy at
/// /sys/fs/cgroup, which is what the BPF program sees. `None` on a host without that hierarchy
/// (cgroup v1 only), where every process is in the v2 root and per-cgroup peaks mean nothing.
pub fn cgroup_id(pid: u32) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let root = Path::new("/sys/fs/cgroup");
    // Only a cgroup2 mount has this file at its root.
    if !root.join("cgroup.controllers").exists() {
        return None;
    }
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = root.join(path.trim_start_matches('/'));
    std::fs::metadata(dir).ok().map(|m| m.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_built_without_clang_says_whether_to_install_it_or_only_to_rebuild() {
        let why = "`clang` could not be run: No such file or directory (os error 2)";
        assert_eq!(
            missing_program(why, true, false),
            "faasflow was built without its BPF program (`clang` could not be run: No such file or directory (os \
             error 2)); install clang and rebuild faasflow"
        );
        assert_eq!(
            missing_program(why, true, true),
            "faasflow was built without its BPF program (`clang` could not be run: No such file or directory (os \
             error 2)); clang is installed now: rebuild faasflow"
        );
        let failed = missing_program("`clang` failed: rss.bpf.c:3: error", false, true);
        assert!(
            failed.ends_with("rebuild faasflow once clang compiles src/rss.bpf.c"),
            "{failed}"
        );
        assert!(!failed.contains("install clang"), "{failed}");
    }

    #[test]
    fn programs_are_found_on_path_or_by_their_path() {
        assert!(on_path("sh"));
        assert!(on_path("/bin/sh"));
        assert!(!on_path("faasflow-no-such-program"));
        assert!(!on_path("/nonexistent/clang"));
    }
}
