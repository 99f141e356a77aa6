//! An invocation's report as a Chrome trace (the trace-event JSON format that Perfetto and
//! `chrome://tracing` open): one process per worker, and in it the tracks of each instance
//! with the function attempts that ran there (one track per call running at once: an
//! instance running two calls at a time has two, `instance 3` and `instance 3 · 2`, so that
//! no two slices of a track overlap), a `triggers` track with each function's wait from its
//! last input's producer ending to its start, and a `transfers` track with the objects that
//! were moved to it (bytes and tier), plus an arrow from each producer to each consumer.
//!
//! Times are the report's (µs since the invocation started, as each worker's daemon measured
//! them).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::report::{FunctionRecord, Report};

/// Track of a worker's triggers.
const TRIGGERS: u64 = 1;
/// Track of a worker's transfers.
const TRANSFERS: u64 = 2;
/// Tracks of instances start here.
const INSTANCES: u64 = 10;

/// A track of an instance: (pid, instance, lane).
type Lane = (u64, u32, usize);

/// The track (tid) of each attempt that ran on an instance, by its index in
/// `report.functions`, and each track's (pid, instance, lane): attempts of one instance that
/// overlap in time get lanes of their own (greedy: the first lane free at its start), so that
/// slices on a track never overlap (trace viewers draw overlapping slices of one track as if
/// nested).
fn tracks(report: &Report, pid_of: impl Fn(&FunctionRecord) -> u64) -> (Vec<Option<u64>>, BTreeMap<u64, Lane>) {
    let mut by_instance: BTreeMap<(u64, u32), Vec<usize>> = BTreeMap::new();
    for (k, f) in report.functions.iter().enumerate() {
        if let (false, Some(i)) = (f.skipped, f.instance) {
            by_instance.entry((pid_of(f), i)).or_default().push(k);
        }
    }
    let mut lane_of = vec![None; report.functions.len()];
    let mut lanes_used: BTreeSet<Lane> = BTreeSet::new();
    for ((pid, i), mut ks) in by_instance {
        let f = &report.functions;
        ks.sort_by(|&a, &b| {
            f[a].start_us
                .total_cmp(&f[b].start_us)
                .then(f[a].end_us.total_cmp(&f[b].end_us))
        });
        let mut ends: Vec<f64> = Vec::new();
        for k in ks {
            let lane = match ends.iter().position(|&end| end <= f[k].start_us) {
                Some(l) => l,
                None => {
                    ends.push(f64::NEG_INFINITY);
                    ends.len() - 1
                }
            };
            ends[lane] = f[k].end_us.max(f[k].start_us);
            lane_of[k] = Some((pid, i, lane));
            lanes_used.insert((pid, i, lane));
        }
    }
    // Instance i's first track is INSTANCES + i; its lane l beyond the first, that plus l × 2³².
    let tid = |(_, i, lane): Lane| INSTANCES + u64::from(i) + ((lane as u64) << 32);
    let names = lanes_used.into_iter().map(|key| (tid(key), key)).collect();
    (lane_of.into_iter().map(|l| l.map(tid)).collect(), names)
}

/// The Chrome trace of `report` (`{"traceEvents": [...], ...}`), for `workflow`.
pub fn chrome_trace(report: &Report, workflow: &str) -> Value {
    // Workers in name order are processes 1, 2, …
    let mut workers: BTreeMap<&str, u64> = BTreeMap::new();
    for f in &report.functions {
        workers.entry(f.worker.as_str()).or_insert(0);
    }
    for (i, pid) in workers.values_mut().enumerate() {
        *pid = i as u64 + 1;
    }
    let pid_of = |f: &FunctionRecord| workers.get(f.worker.as_str()).copied().unwrap_or(0);
    let mut events = Vec::new();
    for (name, pid) in &workers {
        events.push(json!({"ph": "M", "name": "process_name", "pid": pid, "args": {"name": format!("worker {name}")}}));
        events.push(json!({"ph": "M", "name": "process_sort_index", "pid": pid, "args": {"sort_index": pid}}));
        for (tid, track) in [(TRIGGERS, "triggers"), (TRANSFERS, "transfers")] {
            events.push(json!({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": track}}));
        }
    }
    let (track_of, tracks) = tracks(report, pid_of);
    // The attempt that produced each task's (or foreach element's) objects: its last
    // successful one (by index).
    let mut produced: BTreeMap<(&str, Option<u32>), usize> = BTreeMap::new();
    for (k, f) in report.functions.iter().enumerate() {
        if !f.skipped && f.error.is_none() && f.instance.is_some() {
            produced.insert((f.name.as_str(), f.element), k);
        }
    }
    // The producer of an edge: the element it names, or the task's only producing attempt
    // (an edge from another worker's foreach element does not say which; no arrow then).
    let producer_of = |from: &str, element: Option<u32>| -> Option<usize> {
        if let Some(p) = produced.get(&(from, element)) {
            return Some(*p);
        }
        if element.is_some() {
            return None;
        }
        let mut attempts = produced.range((from, None)..).take_while(|((n, _), _)| *n == from);
        match (attempts.next(), attempts.next()) {
            (Some((_, p)), None) => Some(*p),
            _ => None,
        }
    };
    for (k, f) in report.functions.iter().enumerate() {
        let pid = pid_of(f);
        let label = f.label();
        if f.skipped {
            events.push(json!({
                "ph": "i", "s": "t", "name": format!("{label} skipped"), "cat": "skip",
                "pid": pid, "tid": TRIGGERS, "ts": f.start_us,
            }));
            continue;
        }
        let tid = track_of[k].unwrap_or(TRIGGERS);
        let mut args = json!({
            "exec_us": f.exec_us,
            "data_us": f.data_us,
            "attempt": f.attempt,
        });
        if let Some(p) = f.peak_memory_bytes {
            args["peak_memory_bytes"] = json!(p);
        }
        if !f.output_bytes.is_empty() {
            args["output_bytes"] = json!(f.output_bytes);
        }
        if let Some(e) = &f.error {
            args["error"] = json!(e);
        }
        events.push(json!({
            "ph": "X", "name": label, "cat": if f.error.is_some() { "failed" } else { "function" },
            "pid": pid, "tid": tid, "ts": f.start_us, "dur": (f.end_us - f.start_us).max(0.0), "args": args,
        }));
    }
    // Per consumer attempt: the objects it read.
    let mut flow = 0u64;
    for (k, f) in report.functions.iter().enumerate() {
        let Some(tid) = track_of[k] else { continue };
        let pid = pid_of(f);
        let mut last_end: Option<f64> = None;
        for e in report
            .edges
            .iter()
            .filter(|e| e.to == f.name && e.to_element == f.element)
        {
            let Some(pk) = producer_of(&e.from, e.from_element) else {
                continue;
            };
            let p = &report.functions[pk];
            if p.end_us > f.start_us {
                continue;
            }
            last_end = Some(last_end.map_or(p.end_us, |t: f64| t.max(p.end_us)));
            if e.transfer_us > 0.0 {
                events.push(json!({
                    "ph": "X", "name": format!("{} → {} ({})", e.from, e.to, e.tier), "cat": "transfer",
                    "pid": pid, "tid": TRANSFERS, "ts": (f.start_us - e.transfer_us).max(p.end_us),
                    "dur": e.transfer_us.min(f.start_us - p.end_us).max(0.0),
                    "args": {"bytes": e.bytes, "tier": e.tier, "from": e.from, "to": e.to, "transfer_us": e.transfer_us},
                }));
            }
            flow += 1;
            let from_tid = track_of[pk].unwrap_or(TRIGGERS);
            events.push(json!({
                "ph": "s", "id": flow, "name": e.tier, "cat": "edge",
                "pid": pid_of(p), "tid": from_tid, "ts": p.end_us,
            }));
            events.push(json!({
                "ph": "f", "bp": "e", "id": flow, "name": e.tier, "cat": "edge",
                "pid": pid, "tid": tid, "ts": f.start_us,
            }));
        }
        if let Some(t) = last_end {
            events.push(json!({
                "ph": "X", "name": format!("trigger {}", f.name), "cat": "trigger",
                "pid": pid, "tid": TRIGGERS, "ts": t, "dur": (f.start_us - t).max(0.0),
            }));
        }
    }
    for (tid, (pid, i, lane)) in &tracks {
        let name = match lane {
            0 => format!("instance {i}"),
            l => format!("instance {i} · {}", l + 1),
        };
        events.push(json!({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}}));
        let sort = (u64::from(*i) << 16) + *lane as u64;
        events.push(
            json!({"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": tid, "args": {"sort_index": sort}}),
        );
    }
    json!({
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "metadata": {
            "workflow": workflow,
            "invocation": report.invocation,
            "status": report.status,
            "e2e_us": report.e2e_us,
            "scheduling_overhead_us": report.scheduling_overhead_us,
            "data_overhead_us": report.data_overhead_us,
            "critical_path": report.critical_path,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::EdgeRecord;

    fn rec(name: &str, worker: &str, instance: u32, start: f64, end: f64) -> FunctionRecord {
        FunctionRecord {
            name: name.into(),
            worker: worker.into(),
            element: None,
            instance: Some(instance),
            start_us: start,
            end_us: end,
            exec_us: end - start - 1.0,
            data_us: 0.0,
            peak_memory_bytes: Some(4 << 20),
            output_bytes: BTreeMap::from([("out".to_owned(), 100)]),
            attempt: 1,
            skipped: false,
            error: None,
            failure: None,
            chained: false,
        }
    }

    #[test]
    fn workers_are_processes_instances_tracks_and_edges_arrows() {
        let mut skipped = rec("never", "w0", 0, 50.0, 50.0);
        skipped.skipped = true;
        skipped.instance = None;
        let report = Report {
            status: "ok".into(),
            output: json!({}),
            error: None,
            invocation: 7,
            e2e_us: 100.0,
            planner_us: None,
            client_us: None,
            scheduling_overhead_us: 5.0,
            data_overhead_us: 8.0,
            critical_path_us: 80.0,
            critical_data_us: 8.0,
            critical_path: vec!["a".into(), "b".into()],
            functions: vec![rec("a", "w0", 1, 0.0, 40.0), rec("b", "w1", 3, 55.0, 90.0), skipped],
            edges: vec![EdgeRecord {
                from: "a".into(),
                to: "b".into(),
                bytes: 100,
                tier: "peer".into(),
                transfer_us: 8.0,
                from_element: None,
                to_element: None,
            }],
            spills: 0,
            lost_worker: None,
            earlier_runs: Vec::new(),
        };
        let trace = chrome_trace(&report, "wf");
        let events = trace["traceEvents"].as_array().unwrap();
        let find = |ph: &str, name: &str| {
            events
                .iter()
                .filter(|e| e["ph"] == ph && e["name"] == name)
                .collect::<Vec<_>>()
        };
        // Two workers, two processes.
        let procs = find("M", "process_name");
        assert_eq!(procs.len(), 2);
        assert_eq!(procs[1]["args"]["name"], "worker w1");
        // `b` runs on w1 (pid 2), instance 3's track, from 55 to 90.
        let b = find("X", "b");
        assert_eq!(b.len(), 1);
        assert_eq!((b[0]["pid"].as_u64(), b[0]["tid"].as_u64()), (Some(2), Some(13)));
        assert_eq!((b[0]["ts"].as_f64(), b[0]["dur"].as_f64()), (Some(55.0), Some(35.0)));
        assert_eq!(b[0]["args"]["output_bytes"]["out"], 100);
        // Its trigger waited from a's end (40) to its start (55); the transfer took the last 8.
        let t = find("X", "trigger b");
        assert_eq!((t[0]["ts"].as_f64(), t[0]["dur"].as_f64()), (Some(40.0), Some(15.0)));
        let x = find("X", "a → b (peer)");
        assert_eq!((x[0]["ts"].as_f64(), x[0]["dur"].as_f64()), (Some(47.0), Some(8.0)));
        assert_eq!(
            (x[0]["tid"].as_u64(), x[0]["args"]["bytes"].as_u64()),
            (Some(TRANSFERS), Some(100))
        );
        // An arrow from a (w0, instance 1) at 40 to b at 55.
        let s = find("s", "peer");
        let f = find("f", "peer");
        assert_eq!((s.len(), f.len()), (1, 1));
        assert_eq!(
            (s[0]["pid"].as_u64(), s[0]["tid"].as_u64(), s[0]["ts"].as_f64()),
            (Some(1), Some(11), Some(40.0))
        );
        assert_eq!(s[0]["id"], f[0]["id"]);
        // The skipped task is an instant on its worker's triggers track.
        assert_eq!(find("i", "never skipped").len(), 1);
        assert_eq!(trace["metadata"]["invocation"], 7);
        // Instances are named.
        assert!(
            events
                .iter()
                .any(|e| e["name"] == "thread_name" && e["args"]["name"] == "instance 3" && e["pid"] == 2)
        );
    }

    /// Calls that overlap in one instance get tracks of their own; one that starts as another
    /// ends shares its track; no two slices of a track overlap.
    #[test]
    fn overlapping_calls_of_an_instance_get_tracks_of_their_own() {
        let mut functions = vec![
            rec("a", "w0", 4, 0.0, 50.0),
            rec("b", "w0", 4, 10.0, 30.0),
            rec("c", "w0", 4, 20.0, 60.0),
            rec("d", "w0", 4, 30.0, 40.0),
            rec("e", "w0", 5, 15.0, 25.0),
        ];
        functions[3].element = Some(1);
        let report = Report {
            status: "ok".into(),
            output: json!({}),
            error: None,
            invocation: 1,
            e2e_us: 60.0,
            planner_us: None,
            client_us: None,
            scheduling_overhead_us: 0.0,
            data_overhead_us: 0.0,
            critical_path_us: 0.0,
            critical_data_us: 0.0,
            critical_path: Vec::new(),
            functions,
            edges: Vec::new(),
            spills: 0,
            lost_worker: None,
            earlier_runs: Vec::new(),
        };
        let trace = chrome_trace(&report, "wf");
        let events = trace["traceEvents"].as_array().unwrap();
        let slices: Vec<(&str, u64, f64, f64)> = events
            .iter()
            .filter(|e| e["ph"] == "X" && e["cat"] == "function")
            .map(|e| {
                let ts = e["ts"].as_f64().unwrap();
                (
                    e["name"].as_str().unwrap(),
                    e["tid"].as_u64().unwrap(),
                    ts,
                    ts + e["dur"].as_f64().unwrap(),
                )
            })
            .collect();
        let tid = |name: &str| slices.iter().find(|s| s.0 == name).map(|s| s.1).unwrap();
        let lane = |l: u64| INSTANCES + 4 + (l << 32);
        // a on the first track; b overlaps it; c overlaps both; d starts as b ends: b's track.
        assert_eq!(
            (tid("a"), tid("b"), tid("c"), tid("d[1]")),
            (lane(0), lane(1), lane(2), lane(1))
        );
        assert_eq!(tid("e"), INSTANCES + 5, "another instance, its own first track");
        for x in &slices {
            for y in &slices {
                if x.0 != y.0 && x.1 == y.1 {
                    assert!(x.3 <= y.2 || y.3 <= x.2, "{x:?} and {y:?} overlap on one track");
                }
            }
        }
        let named = |name: &str| {
            events
                .iter()
                .any(|e| e["name"] == "thread_name" && e["args"]["name"] == name)
        };
        assert!(named("instance 4") && named("instance 4 · 2") && named("instance 4 · 3") && !named("instance 4 · 4"));
    }
}
