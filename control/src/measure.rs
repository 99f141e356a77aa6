//! What invocations' reports say about each task (peak memory, runtimes, output sizes), and
//! the workflow as measured: the model a re-plan uses.

use std::collections::BTreeMap;

use faasflow_core::dag::{NodeKind, Workflow};

/// What the reports say about one task.
#[derive(Debug, Default, Clone)]
pub(crate) struct Measured {
    /// The largest peak memory, bytes.
    pub(crate) peak: u64,
    /// Calls whose peak was measured.
    pub(crate) peak_calls: u64,
    /// The runtimes of its latest calls, ms (at most [`RUNTIME_SAMPLES`]).
    pub(crate) runtimes: std::collections::VecDeque<f64>,
    /// The largest size of each output, bytes.
    pub(crate) outputs: BTreeMap<String, u64>,
}

/// Runtimes kept per task (their median is the measured runtime).
pub(crate) const RUNTIME_SAMPLES: usize = 64;

impl Measured {
    /// The median of the latest runtimes, ms.
    pub(crate) fn runtime_ms(&self) -> Option<f64> {
        if self.runtimes.is_empty() {
            return None;
        }
        let mut v: Vec<f64> = self.runtimes.iter().copied().collect();
        v.sort_by(f64::total_cmp);
        Some(v[v.len() / 2])
    }
}

/// `wf` with what its tasks were measured at — each measured task's peak as its `memory_use`
/// (at most its `memory`), and for pack functions the median runtime as `runtime` and the
/// largest sizes of its outputs — when some task's peak differs from its `memory_use` by more
/// than `threshold_mib`, or a pack function's runtime or an output's size is off by more than
/// `factor` (and by more than 1 ms, or 64 KiB); also says which tasks are, and how.
pub(crate) fn with_measured(
    wf: &Workflow,
    measured: &BTreeMap<String, Measured>,
    threshold_mib: f64,
    factor: f64,
) -> Option<(Workflow, String)> {
    const MIB: f64 = (1u64 << 20) as f64;
    const RUNTIME_FLOOR_MS: f64 = 1.0;
    const SIZE_FLOOR: f64 = 64.0 * 1024.0;
    // (With an infinite factor, `factor * 0.0` is NaN and the comparison false: never off.)
    let off = |a: f64, b: f64, floor: f64| (a - b).abs() > floor && a.max(b) > factor * a.min(b);
    // What is far enough off, per task; the workflow is copied only when something is (this
    // runs after every invocation).
    let mut diverging = Vec::new();
    for n in wf.graph.node_indices() {
        let Some(t) = wf.graph[n].task() else { continue };
        let Some(m) = measured.get(&wf.graph[n].name) else {
            continue;
        };
        let name = &wf.graph[n].name;
        if m.peak_calls > 0 {
            let (peak, planned) = (
                (m.peak as f64 / MIB).min(t.spec.memory_mib as f64),
                t.spec.memory_use_mib,
            );
            if (peak - planned).abs() > threshold_mib {
                diverging.push(format!("`{name}`: planned with {planned:.0} MiB, measured {peak:.0}"));
            }
        }
        if t.spec.pack.is_none() {
            continue;
        }
        if let Some(ms) = m.runtime_ms()
            && off(ms, t.spec.runtime_ms, RUNTIME_FLOOR_MS)
        {
            diverging.push(format!(
                "`{name}`: planned to run {:.1} ms, measured {ms:.1}",
                t.spec.runtime_ms
            ));
        }
        for o in &t.spec.outputs {
            if let Some(&size) = m.outputs.get(&o.name)
                && off(size as f64, o.size as f64, SIZE_FLOOR)
            {
                diverging.push(format!(
                    "`{name}.{}`: planned at {} bytes, measured {size}",
                    o.name, o.size
                ));
            }
        }
    }
    if diverging.is_empty() {
        return None;
    }
    let mut out = wf.clone();
    for n in wf.graph.node_indices() {
        let Some(m) = measured.get(&wf.graph[n].name) else {
            continue;
        };
        let NodeKind::Task(t) = &mut out.graph[n].kind else {
            continue;
        };
        if m.peak_calls > 0 {
            t.spec.memory_use_mib = (m.peak as f64 / MIB).min(t.spec.memory_mib as f64);
        }
        if t.spec.pack.is_none() {
            continue;
        }
        if let Some(ms) = m.runtime_ms() {
            t.spec.runtime_ms = ms;
        }
        for o in &mut t.spec.outputs {
            if let Some(&size) = m.outputs.get(&o.name) {
                o.size = size;
            }
        }
    }
    Some((out, diverging.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use faasflow_planner::load::load_str;

    #[test]
    fn measured_runtimes_and_sizes_of_pack_functions_change_the_model() {
        let wf = load_str(
            "
name: m
functions:
  packed: {pack: p, memory: 256MiB, memory_use: 64MiB, runtime: 10ms, outputs: {out: {type: bytes, size: 1MB}}}
  synthetic: {memory: 256MiB, memory_use: 64MiB, runtime: 10ms, outputs: {out: {type: bytes, size: 1MB}}}
steps:
  - task: packed
  - task: synthetic
",
            "m.yaml",
            "m",
        )
        .unwrap()
        .workflow;
        let task = |w: &Workflow, name: &str| {
            w.graph
                .node_weights()
                .find(|n| n.name == name)
                .and_then(|n| n.task())
                .unwrap()
                .spec
                .clone()
        };
        let measured = |runtime_ms: f64, out: u64| Measured {
            peak: 64 << 20,
            peak_calls: 3,
            runtimes: [runtime_ms, runtime_ms, runtime_ms].into_iter().collect(),
            outputs: BTreeMap::from([("out".to_owned(), out)]),
        };
        // Within a factor of 2 (and the memory as planned): nothing to do.
        let close = BTreeMap::from([
            ("packed".to_owned(), measured(15.0, 1_500_000)),
            ("synthetic".to_owned(), measured(15.0, 1_500_000)),
        ]);
        assert!(with_measured(&wf, &close, 16.0, 2.0).is_none());
        // 10× slower and 10× larger: the pack function's model follows the measurements.
        let far = BTreeMap::from([("packed".to_owned(), measured(100.0, 10_000_000))]);
        let (replanned, why) = with_measured(&wf, &far, 16.0, 2.0).expect("diverging");
        assert!(
            why.contains("`packed`: planned to run 10.0 ms, measured 100.0"),
            "{why}"
        );
        assert!(
            why.contains("`packed.out`: planned at 1000000 bytes, measured 10000000"),
            "{why}"
        );
        let p = task(&replanned, "packed");
        assert_eq!((p.runtime_ms, p.outputs[0].size), (100.0, 10_000_000));
        // A synthetic body's runtime and sizes are what it does: never replaced.
        let synthetic_only = BTreeMap::from([("synthetic".to_owned(), measured(100.0, 10_000_000))]);
        assert!(with_measured(&wf, &synthetic_only, 16.0, 2.0).is_none());
        // Below the floors (1 ms, 64 KiB), a large factor alone is noise.
        let tiny = load_str(
            "name: t\nfunctions:\n  f: {pack: p, runtime: 0.1ms, outputs: {out: {type: bytes, size: 100}}}\nsteps:\n  - task: f\n",
            "t.yaml",
            "t",
        )
        .unwrap()
        .workflow;
        let mut m = measured(0.5, 5_000);
        m.peak_calls = 0;
        assert!(with_measured(&tiny, &BTreeMap::from([("f".to_owned(), m)]), 16.0, 2.0).is_none());
        // An infinite factor leaves runtimes and sizes alone, even against a declared 0.
        let zero = load_str(
            "name: z\nfunctions:\n  f: {pack: p, outputs: {out: bytes}}\nsteps:\n  - task: f\n",
            "z.yaml",
            "z",
        )
        .unwrap()
        .workflow;
        let mut m = measured(50.0, 10_000_000);
        m.peak_calls = 0;
        let m = BTreeMap::from([("f".to_owned(), m)]);
        assert!(with_measured(&zero, &m, 16.0, 2.0).is_some());
        assert!(with_measured(&zero, &m, 16.0, f64::INFINITY).is_none());
    }
}
