//! What `/metrics` counts ([`Metrics`]), the memory probe's use ([`Measure`]: which calls are
//! measured, their instance's peak), and the Prometheus text ([`text`]) made from the counters
//! and a [`Gauges`] view of the runtime's state taken when it is asked.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use faasflow_ebpf::{Probe, ProbeError};
use faasflow_rpc::metrics::{Exposition, Histogram, LATENCY_BUCKETS, buckets_to};

/// Which calls of a function get their memory measured: the first `.0` in the daemon's life,
/// then one in `.1` (a measurement costs a few system calls on the daemon's loop; the quota
/// needs a function's peak, not every call's).
pub(crate) const MEASURED_CALLS: (u64, u64) = (8, 32);

/// The longest invocation `faasflow_invocation_seconds` has a bucket for (a workflow's
/// `deadline` may be longer than the planner's default).
const INVOCATION_BUCKETS_TO: std::time::Duration = std::time::Duration::from_secs(3600);

/// Counters and histograms for `/metrics` (the gauges are read from the runtime's state when
/// asked).
pub(crate) struct Metrics {
    /// From the engine's trigger to the call's dispatch to an instance, seconds.
    pub(crate) trigger_seconds: Histogram,
    /// End to end of the invocations this daemon was the entry of, seconds.
    pub(crate) invocation_seconds: Histogram,
    /// Invocations ended here as their entry, by outcome.
    pub(crate) invocations: BTreeMap<&'static str, u64>,
    /// Calls dispatched to instances.
    pub(crate) calls: u64,
    /// Of those, calls their instance started right after the call they follow.
    pub(crate) chained: u64,
    /// Bytes of objects read by calls, by tier.
    pub(crate) bytes: BTreeMap<&'static str, u64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            trigger_seconds: Histogram::new(LATENCY_BUCKETS),
            invocation_seconds: Histogram::new(&buckets_to(INVOCATION_BUCKETS_TO)),
            invocations: BTreeMap::new(),
            calls: 0,
            chained: 0,
            bytes: BTreeMap::new(),
        }
    }
}

impl Metrics {
    /// One more invocation ended here as its entry with `outcome`.
    pub(crate) fn invocation(&mut self, outcome: &'static str) {
        *self.invocations.entry(outcome).or_default() += 1;
    }
}

/// The memory probe, as the runtime uses it: instances are tracked while they live, and some
/// calls of each function are measured.
pub(crate) struct Measure {
    probe: Probe,
    /// The probe failed once (said once in the log; records stay `null`).
    failed: bool,
    /// Calls started per function, to choose which to measure.
    calls_of: HashMap<Arc<str>, u64>,
}

impl Measure {
    pub(crate) fn new(probe: Probe) -> Self {
        Measure {
            probe,
            failed: false,
            calls_of: HashMap::new(),
        }
    }

    /// Starts tracking instance process `pid`.
    pub(crate) fn track(&mut self, pid: u32) {
        let r = self.probe.track(pid);
        self.result(r);
    }

    /// Stops tracking instance process `pid`.
    pub(crate) fn forget(&mut self, pid: u32) {
        self.probe.forget(pid);
    }

    /// Whether the next call of `function` is one to measure ([`MEASURED_CALLS`]).
    pub(crate) fn choose(&mut self, function: &str) -> bool {
        let n = match self.calls_of.get_mut(function) {
            Some(n) => {
                *n += 1;
                *n
            }
            None => {
                self.calls_of.insert(function.into(), 1);
                1
            }
        };
        n <= MEASURED_CALLS.0 || n % MEASURED_CALLS.1 == 0
    }

    /// The peak of process `pid` starts over.
    pub(crate) fn reset(&mut self, pid: u32) {
        let r = self.probe.reset(pid);
        self.result(r);
    }

    /// The peak of process `pid` since its last reset.
    pub(crate) fn peak(&mut self, pid: u32) -> Option<u64> {
        let r = self.probe.peak(pid);
        self.result(r)
    }

    /// A probe result; its first failure is said once.
    fn result<T>(&mut self, r: Result<T, ProbeError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                if !self.failed {
                    self.failed = true;
                    tracing::warn!(
                        cause = %e,
                        probe = %self.probe.kind(),
                        "the memory probe failed: it leaves such calls unmeasured"
                    );
                }
                None
            }
        }
    }
}

/// The runtime's state as `/metrics` shows it.
pub(crate) struct Gauges<'a> {
    pub(crate) spills_total: u64,
    pub(crate) spill_failures_total: u64,
    pub(crate) instances_started: u64,
    pub(crate) arena_used: u64,
    pub(crate) arena_capacity: u64,
    pub(crate) arena_segments: usize,
    pub(crate) arena_resident: u64,
    pub(crate) arena_trims: u64,
    pub(crate) invocations: usize,
    pub(crate) instances: usize,
    /// Bytes of outputs kept past their invocation's end, and for how many invocations.
    pub(crate) kept_bytes: u64,
    pub(crate) kept_invocations: usize,
    /// Installed versions per workflow.
    pub(crate) versions: BTreeMap<&'a str, u64>,
    /// Per live pool: pack, domain, runtime (`process`, `container`), instances, queued calls.
    pub(crate) pools: Vec<(&'a str, &'a str, &'static str, usize, usize)>,
    /// Per installed version: workflow, version, quota, arena bytes used.
    pub(crate) quotas: Vec<(&'a str, u64, u64, u64)>,
}

/// The Prometheus text of `m` and `g`.
pub(crate) fn text(m: &Metrics, g: &Gauges<'_>) -> String {
    let mut e = Exposition::new();
    measured(&mut e, m);
    counters(&mut e, g);
    arena(&mut e, g);
    pools(&mut e, g);
    e.finish()
}

/// What the runtime counts as it goes ([`Metrics`]).
fn measured(e: &mut Exposition, m: &Metrics) {
    e.histogram(
        "faasflow_trigger_latency_seconds",
        "From a function's trigger to its call's dispatch to an instance",
        &m.trigger_seconds,
    );
    e.histogram(
        "faasflow_invocation_seconds",
        "End to end of the invocations this daemon was the entry of",
        &m.invocation_seconds,
    );
    for outcome in ["ok", "failed", "overloaded"] {
        e.counter(
            "faasflow_invocations_total",
            "Invocations ended here as their entry, by outcome",
            &[("outcome", outcome)],
            m.invocations.get(outcome).copied().unwrap_or(0),
        );
    }
    e.counter("faasflow_calls_total", "Calls dispatched to instances", &[], m.calls);
    e.counter(
        "faasflow_calls_chained_total",
        "Calls their instance started on the thread of the call they follow, the moment it succeeded",
        &[],
        m.chained,
    );
    for tier in ["in-process", "shared-memory", "peer", "remote", "spill"] {
        e.counter(
            "faasflow_bytes_read_total",
            "Bytes of objects read by calls, by the tier they came through",
            &[("tier", tier)],
            m.bytes.get(tier).copied().unwrap_or(0),
        );
    }
}

/// Versions, pools and quotas.
fn pools(e: &mut Exposition, g: &Gauges<'_>) {
    for (workflow, n) in &g.versions {
        e.gauge(
            "faasflow_installed_versions",
            "Workflow versions installed here (dropped ones included until their invocations end)",
            &[("workflow", workflow)],
            *n,
        );
    }
    e.gauge(
        "faasflow_instances",
        "Instances running here (every pool)",
        &[],
        g.instances as u64,
    );
    for (pack, domain, runtime, instances, queued) in &g.pools {
        let labels = [("pack", *pack), ("domain", *domain), ("runtime", *runtime)];
        e.gauge(
            "faasflow_pool_instances",
            "Live instances per pool",
            &labels,
            *instances as u64,
        );
        e.gauge(
            "faasflow_pool_queued_calls",
            "Calls waiting for an instance per pool",
            &labels,
            *queued as u64,
        );
    }
    for (workflow, version, quota, used) in &g.quotas {
        let version = version.to_string();
        let labels = [("workflow", *workflow), ("version", version.as_str())];
        e.gauge(
            "faasflow_quota_bytes",
            "The workflow's in-memory quota on this worker",
            &labels,
            *quota,
        );
        e.gauge(
            "faasflow_quota_used_bytes",
            "Arena bytes the workflow's objects hold on this worker",
            &labels,
            *used,
        );
    }
}

fn counters(e: &mut Exposition, g: &Gauges<'_>) {
    e.counter(
        "faasflow_spills_total",
        "Objects written to the spill directory",
        &[],
        g.spills_total,
    );
    e.counter(
        "faasflow_spill_failures_total",
        "Objects whose spill file could not be written (they stayed in memory, over quota)",
        &[],
        g.spill_failures_total,
    );
    e.counter(
        "faasflow_instances_started_total",
        "Instances started",
        &[],
        g.instances_started,
    );
}

fn arena(e: &mut Exposition, g: &Gauges<'_>) {
    e.gauge(
        "faasflow_kept_output_bytes",
        "Bytes of executions' outputs kept to be read (until read whole once, or their time is up)",
        &[],
        g.kept_bytes,
    );
    e.gauge(
        "faasflow_kept_output_invocations",
        "Invocations whose outputs are kept to be read",
        &[],
        g.kept_invocations as u64,
    );
    e.gauge(
        "faasflow_arena_used_bytes",
        "Arena bytes held by objects and reservations",
        &[],
        g.arena_used,
    );
    e.gauge(
        "faasflow_arena_capacity_bytes",
        "Arena bytes for objects",
        &[],
        g.arena_capacity,
    );
    e.gauge(
        "faasflow_arena_segments",
        "Arena segments (one per installed workflow version, and the daemon's own)",
        &[],
        g.arena_segments as u64,
    );
    e.gauge(
        "faasflow_arena_resident_bytes",
        "Upper bound of the arena pages the segments hold (kept within the capacity)",
        &[],
        g.arena_resident,
    );
    e.counter(
        "faasflow_arena_trims_total",
        "Times a segment's free pages were given back to keep the segments within the capacity",
        &[],
        g.arena_trims,
    );
    e.gauge(
        "faasflow_invocations_running",
        "Invocations running here",
        &[],
        g.invocations as u64,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_calls_of_a_function_are_measured_then_one_in_thirty_two() {
        let mut m = Measure::new(Probe::new(faasflow_ebpf::ProbeMode::Proc).expect("the /proc probe").0);
        let chosen: Vec<u64> = (1..=100).filter(|_| m.choose("f")).collect();
        assert_eq!(chosen, vec![1, 2, 3, 4, 5, 6, 7, 8, 32, 64, 96]);
        // Another function is counted apart.
        assert!(m.choose("g"));
    }

    #[test]
    fn the_text_shows_counters_pools_and_quotas() {
        let mut m = Metrics::default();
        m.invocation("ok");
        m.invocation("ok");
        m.calls = 3;
        let g = Gauges {
            spills_total: 1,
            spill_failures_total: 0,
            instances_started: 2,
            arena_used: 10,
            arena_capacity: 100,
            arena_segments: 2,
            arena_resident: 10,
            arena_trims: 0,
            invocations: 1,
            instances: 2,
            kept_bytes: 7,
            kept_invocations: 1,
            versions: BTreeMap::from([("wf", 2)]),
            pools: vec![("synthetic", "wf@1/group-0", "process", 1, 4)],
            quotas: vec![("wf", 1, 64, 10)],
        };
        let t = text(&m, &g);
        assert!(t.contains("faasflow_invocations_total{outcome=\"ok\"} 2"), "{t}");
        assert!(t.contains("faasflow_calls_total 3"), "{t}");
        assert!(
            t.contains("faasflow_pool_queued_calls{pack=\"synthetic\",domain=\"wf@1/group-0\",runtime=\"process\"} 4"),
            "{t}"
        );
        assert!(
            t.contains("faasflow_quota_bytes{workflow=\"wf\",version=\"1\"} 64"),
            "{t}"
        );
        assert!(t.contains("faasflow_installed_versions{workflow=\"wf\"} 2"), "{t}");
    }
}
