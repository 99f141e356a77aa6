//! The targets of the earlier issues, each against what this run measured: met, or missed
//! with its cause, in numbers the same run measured (RESULTS.md's `## Targets`).

use std::fmt::Write as _;

use serde_json::Value;

use crate::suite::{BENCHMARKS, ClusterRuns, MASTERSP, WORKERSP};

/// One target: what it asks, what was measured, and why it was missed (when it was).
struct Row {
    target: &'static str,
    section: &'static str,
    measured: String,
    met: Option<bool>,
    cause: Option<String>,
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// The element of a list figure whose `key` is `value`.
fn row_where<'a>(list: &'a Value, key: &str, value: f64) -> Option<&'a Value> {
    list.as_array()?
        .iter()
        .find(|r| r[key].as_f64().is_some_and(|v| v == value))
}

fn mb(bytes: f64) -> String {
    format!("{:.0} MB", bytes / 1e6)
}

/// The section: a table of every target, then the causes of the misses.
pub(crate) fn section(figures: &Value, data: &ClusterRuns, no_data: &ClusterRuns) -> String {
    let mut rows = planner(figures);
    rows.extend(one_worker(figures));
    rows.extend(across_workers(figures));
    rows.push(master_ratio(data, no_data));
    rows.push(worker_overhead(data, no_data));
    rows.push(probe(figures));
    rows.push(executions(figures));
    rows.push(download(figures));
    rows.extend(python(figures));
    rows.extend(working_edges(figures));
    table(&rows)
}

/// Issue 20: the added latency per edge of functions that work 1 ms and pass 1 KiB.
fn working_edges(figures: &Value) -> Vec<Row> {
    let edges = &figures["edges"];
    let added = |key: &str| num(&edges[key]["added_us"]);
    let one_by_one = added("1000us_1024B_in-process,_one_by_one");
    let rows: [(&'static str, &'static str, Option<f64>, f64, String); 3] = [
        (
            "per edge, 1 ms functions passing 1 KiB, in-process ≤ 5 µs",
            "Per-edge cost for functions that do work",
            added("1000us_1024B_in-process"),
            5.0,
            format!(
                "each call starts on its predecessor's thread at its end ({} µs one by one, same run); what is                  left is the instance's: pushing the completion and ringing the parked daemon's doorbell (a                  futex wake-up, about 4.6 µs of the 8 µs an instance spends between two calls, measured inside                  the instance), the call's end and the next one's binding",
                one_by_one.map_or("?".into(), |us| format!("{us:.1}"))
            ),
        ),
        (
            "per edge, 1 ms functions passing 1 KiB, across processes ≤ 20 µs",
            "Per-edge cost for functions that do work",
            added("1000us_1024B_across_processes"),
            20.0,
            "the next call's instance and the daemon have parked during the 1 ms: each edge pays the daemon's              wake-up and the instance's (20–50 µs each on this VM); waking them ahead of the expected end              (spinning) was measured slower on 2 vCPUs, where the spinning takes the core the other needs"
                .into(),
        ),
        (
            "per edge, 1 ms functions passing 1 KiB, across workers ≤ 100 µs",
            "Across workers",
            num(&figures["work_edge_across_workers"]["added_us"]),
            100.0,
            "as across processes, and each daemon's QUIC endpoint parks too: the message wakes the receiving              endpoint's thread, then its daemon, then the instance, on 2 vCPUs shared by both daemons"
                .into(),
        ),
    ];
    rows.into_iter()
        .map(|(target, section, us, limit, cause)| match us {
            Some(us) => Row {
                target,
                section,
                measured: format!("{us:.1} µs"),
                met: Some(us <= limit),
                cause: (us > limit).then_some(cause),
            },
            None => Row::unmeasured(target, section),
        })
        .collect()
}

impl Row {
    fn unmeasured(target: &'static str, section: &'static str) -> Row {
        Row {
            target,
            section,
            measured: "not measured in this run".into(),
            met: None,
            cause: None,
        }
    }
}

/// Issue 2: the planner's time for 200 and 5,000 functions.
fn planner(figures: &Value) -> Vec<Row> {
    let section = "Planner";
    [
        (200.0, 10.0, "planning 200 functions < 10 ms"),
        (5000.0, 1000.0, "planning 5,000 functions < 1 s"),
    ]
    .into_iter()
    .map(|(tasks, limit_ms, target)| {
        match row_where(&figures["planner"], "tasks", tasks).and_then(|r| num(&r["median_ms"])) {
            Some(ms) => Row {
                target,
                section,
                measured: format!("{ms:.2} ms"),
                met: Some(ms < limit_ms),
                cause: (ms >= limit_ms).then(|| {
                    "the partitioner computes the critical path again after every merge, so its time grows as \
                     merges × graph size; the section's topological sort of the same graph, timed in the same \
                     run, shows how fast the machine was"
                        .to_owned()
                }),
            },
            None => Row::unmeasured(target, section),
        }
    })
    .collect()
}

/// Issue 3: one worker: the latency per edge, the 64 MiB hand-off and executions per second.
fn one_worker(figures: &Value) -> Vec<Row> {
    let section = "Data plane on one worker";
    let edge = &figures["per_edge_one_worker"];
    let mpsc = num(&edge["mpsc_us"]["p50"]);
    let mut rows: Vec<Row> = [
        ("in_process_us", 5.0, "per edge in-process ≤ 5 µs (p50)"),
        ("across_processes_us", 50.0, "per edge across processes ≤ 50 µs (p50)"),
    ]
    .into_iter()
    .map(|(key, limit, target)| match num(&edge[key]["p50"]) {
        Some(us) => Row {
            target,
            section,
            measured: format!("{us:.1} µs (p99 {:.0} µs)", num(&edge[key]["p99"]).unwrap_or(0.0)),
            met: Some(us <= limit),
            cause: (us > limit).then(|| {
                format!(
                    "each edge wakes the daemon's loop and a parked instance; a wake-up between two threads \
                     alone (half a std mpsc round trip, same run) took {:.1} µs, and the daemon, the instances \
                     and the bench share 2 vCPUs",
                    mpsc.unwrap_or(f64::NAN)
                )
            }),
        },
        None => Row::unmeasured(target, section),
    })
    .collect();
    let handoff = &figures["handoff_one_worker"];
    let at_64 = handoff["sizes"]
        .as_array()
        .and_then(|s| s.iter().position(|b| b.as_f64() == Some(64.0 * 1048576.0)));
    let target = "64 MiB hand-off across processes < 1 ms (no copy)";
    rows.push(
        match at_64.and_then(|i| Some((num(&handoff["shared_memory_us"][i])?, num(&handoff["memcpy_us"][i])?))) {
            Some((us, memcpy)) => Row {
                target,
                section,
                measured: format!("{us:.0} µs (memcpy of 64 MiB: {:.1} ms)", memcpy / 1e3),
                met: Some(us < 1000.0),
                cause: (us >= 1000.0).then(|| {
                    format!(
                        "the consumer is handed a reference into the arena, not the bytes, so the time is the \
                         trigger and the wake-ups, as for 1 KiB ({:.0} µs in the same run)",
                        num(&handoff["shared_memory_us"][0]).unwrap_or(f64::NAN)
                    )
                }),
            },
            None => Row::unmeasured(target, section),
        },
    );
    let best = figures["throughput_latency_one_worker"]
        .as_array()
        .and_then(|a| a.iter().filter_map(|r| num(&r["per_s"])).reduce(f64::max));
    let target = "≥ 10,000 no-op executions/s";
    rows.push(match best {
        Some(per_s) => Row {
            target,
            section,
            measured: format!("{per_s:.0}/s (best of the closed-loop sweep)"),
            met: Some(per_s >= 10_000.0),
            cause: (per_s < 10_000.0).then(|| {
                "the caller, the daemon's loop and the instance share 2 vCPUs; the sweep's latencies show \
                 where it saturates"
                    .to_owned()
            }),
        },
        None => Row::unmeasured(target, section),
    });
    rows
}

/// Issue 4: across workers: the latency per edge and the hand-off against raw TCP.
fn across_workers(figures: &Value) -> Vec<Row> {
    let section = "Across workers";
    let target = "per cross-worker edge ≤ 150 µs (p50)";
    let edge = match num(&figures["per_edge_across_workers"]["p50"]) {
        Some(us) => {
            let quic = num(&figures["peer_message_one_way_us"]["quic"]["p50"]);
            let tcp = num(&figures["peer_message_one_way_us"]["tcp"]["p50"]);
            let local = num(&figures["per_edge_one_worker"]["across_processes_us"]["p50"]);
            Row {
                target,
                section,
                measured: format!(
                    "{us:.0} µs (p99 {:.0} µs)",
                    num(&figures["per_edge_across_workers"]["p99"]).unwrap_or(0.0)
                ),
                met: Some(us <= 150.0),
                cause: (us > 150.0).then(|| match (quic, tcp, local) {
                    (Some(q), Some(t), Some(l)) => format!(
                        "one control message alone takes {q:.0} µs one way between two endpoints on this machine \
                         (a TCP ping-pong of the same frame: {t:.0} µs), and an edge between two processes of one \
                         worker {l:.0} µs: {:.0} µs before anything specific to crossing workers, with both daemons, \
                         their instances and both QUIC stacks on 2 shared vCPUs",
                        q + l
                    ),
                    _ => "the peer transport's message latency was not measured in this run".into(),
                }),
            }
        }
        None => Row::unmeasured(target, section),
    };
    let target = "cross-worker hand-off ≥ 50% of raw TCP, 1–256 MiB";
    let handoff = match figures["handoff_across_workers"].as_array() {
        Some(list) if !list.is_empty() => {
            let ratios: Vec<(f64, f64)> = list
                .iter()
                .filter_map(|r| Some((num(&r["bytes"])?, num(&r["tcp_us"])? / num(&r["handoff_us"])?)))
                .collect();
            let missed: Vec<String> = ratios
                .iter()
                .filter(|(_, r)| *r < 0.5)
                .map(|(b, r)| format!("{} MiB ({r:.2}×)", b / 1048576.0))
                .collect();
            let peer_1mib = row_where(&figures["peer_bandwidth"], "bytes", 1048576.0)
                .and_then(|r| Some(num(&r["quic_gbps"])? / num(&r["tcp_gbps"])?));
            Row {
                target,
                section,
                measured: ratios
                    .iter()
                    .map(|(b, r)| format!("{} MiB {r:.2}×", b / 1048576.0))
                    .collect::<Vec<_>>()
                    .join(", "),
                met: Some(missed.is_empty()),
                cause: (!missed.is_empty()).then(|| {
                    format!(
                        "missed at {}: a hand-off pays a fixed cost (the trigger, the copy from the arena into \
                         send buffers, encryption, the receiver's copy into its arena) that a bare TCP stream of \
                         the same bytes does not, and sender and receiver share 2 cores; the transport alone (peer \
                         section) reaches {} of TCP at 1 MiB; from 16 MiB the ratio is transfer-bound",
                        missed.join(", "),
                        peer_1mib.map_or("?".into(), |r| format!("{:.0}%", r * 100.0))
                    )
                }),
            }
        }
        _ => Row::unmeasured(target, section),
    };
    vec![edge, handoff]
}

/// The 8 workflows on 3 workers.
const WORKFLOWS: &str = "FaaSFlow's 8 workflows on 3 workers";

/// The median scheduling overhead of `name` in `mode`, ms.
fn sched(runs: &ClusterRuns, name: &str, mode: &str) -> Option<f64> {
    runs.run(name, mode).map(|r| r.ms("scheduling_overhead_us", 0.5))
}

/// Issue 4: MasterSP's scheduling overhead at least 5× WorkerSP's, every scientific workflow.
fn master_ratio(data: &ClusterRuns, no_data: &ClusterRuns) -> Row {
    let target = "MasterSP ≥ 5× WorkerSP scheduling overhead, every scientific workflow";
    let ratios: Vec<(&str, f64)> = BENCHMARKS[..4]
        .iter()
        .filter_map(|(n, _, _)| Some((*n, sched(data, n, MASTERSP)? / sched(data, n, WORKERSP)?.max(1e-3))))
        .collect();
    if ratios.len() != 4 {
        return Row::unmeasured(target, WORKFLOWS);
    }
    let low: Vec<String> = ratios
        .iter()
        .filter(|(_, r)| *r < 5.0)
        .map(|(n, r)| format!("{n} {r:.1}×"))
        .collect();
    Row {
        target,
        section: WORKFLOWS,
        measured: ratios
            .iter()
            .map(|(n, r)| format!("{n} {r:.1}×"))
            .collect::<Vec<_>>()
            .join(", "),
        met: Some(low.is_empty()),
        cause: (!low.is_empty()).then(|| {
            let zero: Vec<String> = BENCHMARKS[..4]
                .iter()
                .filter_map(|(n, _, _)| {
                    Some(format!(
                        "{n} {:.1}×",
                        sched(no_data, n, MASTERSP)? / sched(no_data, n, WORKERSP)?.max(1e-3)
                    ))
                })
                .collect();
            let mut c = format!(
                "{}: WorkerSP's overhead there is inflated by moving its data on 2 shared vCPUs (see the next \
                 row)",
                low.join(", ")
            );
            if !zero.is_empty() {
                let _ = write!(c, "; at data scale 0 the ratios are {}", zero.join(", "));
            }
            c
        }),
    }
}

/// Issue 4: WorkerSP's scheduling overhead at most 5 ms per workflow on 3 workers, at data
/// scale 1 (`data`) and, when it ran, 0 (`no_data`).
fn worker_overhead(data: &ClusterRuns, no_data: &ClusterRuns) -> Row {
    let target = "WorkerSP scheduling overhead ≤ 5 ms per workflow (3 workers)";
    let measured_here = BENCHMARKS
        .iter()
        .filter(|(n, _, _)| data.run(n, WORKERSP).is_some())
        .count();
    if measured_here != BENCHMARKS.len() {
        return Row::unmeasured(target, WORKFLOWS);
    }
    // Whether the same workflows ran without bytes too (not in a quick run).
    let zero_ran = BENCHMARKS.iter().all(|(n, _, _)| no_data.run(n, WORKERSP).is_some());
    let (o1, o0) = (over_5_ms(data), over_5_ms(no_data));
    Row {
        target,
        section: WORKFLOWS,
        measured: if zero_ran {
            format!(
                "{}/8 within at data scale 1, {}/8 at data scale 0",
                8 - o1.len(),
                8 - o0.len()
            )
        } else {
            format!("{}/8 within at data scale 1", 8 - o1.len())
        },
        met: Some(o1.is_empty()),
        cause: (!o1.is_empty()).then(|| worker_overhead_cause(data, &o1, &o0, zero_ran)),
    }
}

/// The workflows whose WorkerSP scheduling overhead is over 5 ms, with it (ms).
fn over_5_ms(runs: &ClusterRuns) -> Vec<(&'static str, f64)> {
    BENCHMARKS
        .iter()
        .filter_map(|(n, _, _)| Some((*n, sched(runs, n, WORKERSP)?)))
        .filter(|(_, ms)| *ms > 5.0)
        .collect()
}

/// Why WorkerSP's overhead is over 5 ms for `o1` at data scale 1, from what the same workflows
/// took without bytes (`o0`, over 5 ms at data scale 0, when `zero_ran`).
fn worker_overhead_cause(data: &ClusterRuns, o1: &[(&str, f64)], o0: &[(&str, f64)], zero_ran: bool) -> String {
    let list = |v: &[(&str, f64)]| {
        v.iter()
            .map(|(n, ms)| format!("{n} {ms:.1} ms"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let moved: f64 = BENCHMARKS
        .iter()
        .filter(|(n, _, _)| o1.iter().any(|(m, _)| m == n))
        .filter_map(|(n, _, _)| data.run(n, WORKERSP))
        .map(|r| r.bytes_by_tier().values().sum::<f64>())
        .fold(0.0, f64::max);
    let apps_over: Vec<&str> = o0
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| BENCHMARKS[4..].iter().any(|(a, _, _)| a == n))
        .collect();
    let mut c = format!(
        "over at data scale 1: {}. Three daemons, the planner, Redis and the instances share 2 vCPUs: \
         moving up to {} per invocation (encryption, copies) delays the daemons' loops, and the \
         definition counts that as scheduling",
        list(o1),
        mb(moved)
    );
    if !zero_ran {
        c += "; data scale 0, which separates the two, was not run";
    } else if o0.is_empty() {
        c += "; without bytes (data scale 0) every workflow is within 5 ms";
    } else {
        let _ = write!(c, "; without bytes (data scale 0) still over: {}", list(o0));
        if !apps_over.is_empty() {
            let _ = write!(
                c,
                " ({} {} real work at every data scale: parallel functions queue for the 2 cores, and \
                 that wait is neither their own time nor a data wait)",
                apps_over.join(", "),
                if apps_over.len() == 1 { "does" } else { "do" }
            );
        }
    }
    c
}

/// Issue 5: the memory probe's cost per page fault.
fn probe(figures: &Value) -> Row {
    let target = "memory probe < 1 µs per page fault";
    match num(&figures["probe_cost_per_fault_ns"]["registered"]) {
        Some(ns) => Row {
            target,
            section: "Memory probe",
            measured: format!("{ns:.0} ns (a measured instance's)"),
            met: Some(ns < 1000.0),
            cause: (ns >= 1000.0).then(|| {
                "every fault runs the BPF program (a map lookup, then the update of the process's and its \
                 cgroup's counters); the section's p25–p75 shows how much of it is noise"
                    .to_owned()
            }),
        },
        None => Row::unmeasured(target, "Memory probe"),
    }
}

/// Issue 18: executions accepted per second with durable state.
fn executions(figures: &Value) -> Row {
    let target = "≥ 5,000 executions accepted per second, each on disk";
    let section = "Control plane";
    match num(&figures["control_starts_per_s"]) {
        Some(rate) => Row {
            target,
            section,
            measured: format!("{rate:.0}/s"),
            met: Some(rate >= 5000.0),
            cause: (rate < 5000.0).then(|| {
                "each start waits for a commit to disk; the section shows how many records each commit took, and \
                 the synchronous invocations per second of the same clients"
                    .to_owned()
            }),
        },
        None => Row::unmeasured(target, section),
    }
}

/// Issue 18: downloading a 256 MiB output against raw loopback TCP.
fn download(figures: &Value) -> Row {
    let target = "256 MiB output downloaded over HTTPS ≥ 50% of raw loopback TCP";
    let section = "Control plane";
    match num(&figures["control_download_share"]) {
        Some(share) => Row {
            target,
            section,
            measured: format!("{:.0}%", share * 100.0),
            met: Some(share >= 0.5),
            cause: (share < 0.5).then(|| {
                let ceiling = num(&figures["control_download_tls_share"]).map_or_else(String::new, |t| {
                    format!(
                        "; a bare TLS 1.3 stream of the same bytes, with nothing else on either end, reaches {:.0}% here, \
                         so no download over TLS can meet the target on this machine",
                        t * 100.0
                    )
                });
                format!(
                    "the bytes cross two TLS connections (worker to planner over gRPC, planner to client), each \
                     encrypted and decrypted on the same 2 cores, where the reference is one unencrypted copy{ceiling}"
                )
            }),
        },
        None => Row::unmeasured(target, section),
    }
}

/// Issue 19: Python functions' per-edge cost and a 64 MiB array's hand-off.
fn python(figures: &Value) -> Vec<Row> {
    let section = "Functions in Python";
    let py = &figures["python"];
    let edge = |key: &str, target: &'static str, limit: f64, cause: &'static str| match num(&py[key]) {
        Some(us) => Row {
            target,
            section,
            measured: format!("{us:.1} µs"),
            met: Some(us <= limit),
            cause: (us > limit).then(|| cause.to_owned()),
        },
        None => Row::unmeasured(target, section),
    };
    let array = {
        let target = "64 MiB numpy array to another process < 1 ms, independent of size";
        let handoff = |bytes: f64| row_where(&py["arrays"], "bytes", bytes).and_then(|r| num(&r["handoff_us"]));
        match (handoff(f64::from(1u32 << 20)), handoff(f64::from(64u32 << 20))) {
            (Some(small), Some(large)) => Row {
                target,
                section,
                measured: format!("{large:.1} µs (1 MiB: {small:.1} µs)"),
                met: Some(large < 1000.0),
                cause: (large >= 1000.0)
                    .then(|| "the consumer waited longer than 1 ms after its producer ended".to_owned()),
            },
            _ => Row::unmeasured(target, section),
        }
    };
    vec![
        edge(
            "per_edge_thread_us",
            "chain of 50 Python no-ops, per edge, one interpreter ≤ 50 µs",
            50.0,
            "the calls of the chain run one after another in one warm interpreter; the time is the daemon's \
             trigger and the interpreter's attach and call",
        ),
        edge(
            "per_edge_process_us",
            "chain of 50 Python no-ops, per edge, across processes ≤ 100 µs",
            100.0,
            "each edge wakes a parked process on a 2-core VM (a futex wake-up costs 30–50 µs here, and the \
             daemon's loop and the next instance compete for the same cores); issue 20 takes the wake-ups off \
             the critical path",
        ),
        array,
    ]
}

/// The table of `rows`, then the causes of the missed ones.
fn table(rows: &[Row]) -> String {
    let mut s = String::from("| target | section | measured | |\n|---|---|---|---|\n");
    for r in rows {
        let status = match r.met {
            Some(true) => "met",
            Some(false) => "missed",
            None => "–",
        };
        let _ = writeln!(s, "| {} | {} | {} | {status} |", r.target, r.section, r.measured);
    }
    let misses: Vec<&Row> = rows.iter().filter(|r| r.cause.is_some()).collect();
    if !misses.is_empty() {
        s.push_str("\nWhy the missed ones are missed, from the same run:\n\n");
        for r in misses {
            let _ = writeln!(s, "- **{}**: {}.", r.target, r.cause.as_deref().unwrap_or(""));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::Run;

    fn runs(sched_ms: &[(&'static str, &'static str, f64)]) -> ClusterRuns {
        ClusterRuns {
            workers: 3,
            runs: sched_ms
                .iter()
                .map(|(w, m, ms)| Run {
                    workflow: w,
                    mode: m,
                    reports: vec![serde_json::json!({"scheduling_overhead_us": ms * 1e3, "edges": []})],
                })
                .collect(),
            no_master: None,
            trace: None,
            colocated: Vec::new(),
        }
    }

    #[test]
    fn each_target_is_judged_and_a_miss_names_its_cause() {
        let figures = serde_json::json!({
            "planner": [{"tasks": 200, "median_ms": 0.3}, {"tasks": 5000, "median_ms": 1500.0}],
            "per_edge_one_worker": {
                "in_process_us": {"p50": 4.0, "p99": 7.0},
                "across_processes_us": {"p50": 60.0, "p99": 150.0},
                "mpsc_us": {"p50": 2.1, "p99": 8.0},
            },
            "per_edge_across_workers": {"p50": 182.0, "p99": 380.0},
            "peer_message_one_way_us": {"quic": {"p50": 73.0}, "tcp": {"p50": 59.0}},
            "edges": {
                "1000us_1024B_in-process": {"added_us": 10.9},
                "1000us_1024B_in-process,_one_by_one": {"added_us": 51.5},
                "1000us_1024B_across_processes": {"added_us": 19.0},
            },
        });
        let mut all = Vec::new();
        for (n, _, _) in BENCHMARKS {
            all.push((n, WORKERSP, if n == "cycles" { 17.0 } else { 2.0 }));
            all.push((n, MASTERSP, 100.0));
        }
        let data = runs(&all);
        let no_data = runs(&all.iter().map(|(n, m, _)| (*n, *m, 1.0)).collect::<Vec<_>>());
        let s = section(&figures, &data, &no_data);
        let line = |t: &str| {
            s.lines()
                .find(|l| l.starts_with(&format!("| {t} |")))
                .unwrap_or_else(|| panic!("{t}: {s}"))
        };
        assert!(
            line("planning 200 functions < 10 ms").ends_with("| 0.30 ms | met |"),
            "{s}"
        );
        assert!(line("planning 5,000 functions < 1 s").ends_with("| missed |"), "{s}");
        assert!(line("per edge in-process ≤ 5 µs (p50)").ends_with("| met |"), "{s}");
        // Issue 20's, from the per-edge section's figures (across workers not measured here).
        assert!(
            line("per edge, 1 ms functions passing 1 KiB, in-process ≤ 5 µs").ends_with("| 10.9 µs | missed |"),
            "{s}"
        );
        assert!(
            s.contains("futex wake-up") && s.contains("(51.5 µs one by one, same run)"),
            "{s}"
        );
        assert!(
            line("per edge, 1 ms functions passing 1 KiB, across processes ≤ 20 µs").ends_with("| 19.0 µs | met |"),
            "{s}"
        );
        assert!(
            line("per edge, 1 ms functions passing 1 KiB, across workers ≤ 100 µs").contains("not measured"),
            "{s}"
        );
        assert!(
            line("per edge across processes ≤ 50 µs (p50)").ends_with("| missed |"),
            "{s}"
        );
        assert!(
            line("memory probe < 1 µs per page fault").contains("| not measured in this run | – |"),
            "{s}"
        );
        assert!(
            line("MasterSP ≥ 5× WorkerSP scheduling overhead, every scientific workflow")
                .contains("cycles 5.9×, epigenomics 50.0×")
                && line("MasterSP ≥ 5× WorkerSP scheduling overhead, every scientific workflow").ends_with("| met |"),
            "{s}"
        );
        assert!(
            line("WorkerSP scheduling overhead ≤ 5 ms per workflow (3 workers)")
                .contains("7/8 within at data scale 1, 8/8 at data scale 0"),
            "{s}"
        );
        // Causes, with the same run's references, for the missed ones only.
        assert!(
            s.contains("- **per cross-worker edge ≤ 150 µs (p50)**: one control message alone takes 73 µs one way"),
            "{s}"
        );
        assert!(
            s.contains(
                "(a TCP ping-pong of the same frame: 59 µs), and an edge between two processes of one worker 60 µs: \
                 133 µs"
            ),
            "{s}"
        );
        assert!(
            s.contains(
                "- **WorkerSP scheduling overhead ≤ 5 ms per workflow (3 workers)**: over at data scale 1: \
                 cycles 17.0 ms."
            ),
            "{s}"
        );
        assert!(
            s.contains("without bytes (data scale 0) every workflow is within 5 ms"),
            "{s}"
        );
        assert!(!s.contains("- **planning 200"), "{s}");
        assert!(
            s.contains("- **planning 5,000 functions < 1 s**: the partitioner computes"),
            "{s}"
        );
        assert!(!s.contains("- **per edge in-process"), "{s}");
        // Without the data-scale-0 runs (a quick run), nothing is claimed about them.
        let quick = section(&figures, &data, &runs(&[]));
        assert!(quick.contains("| 7/8 within at data scale 1 | missed |"), "{quick}");
        assert!(
            quick.contains("data scale 0, which separates the two, was not run"),
            "{quick}"
        );
    }
}
