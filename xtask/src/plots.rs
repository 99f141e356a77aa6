//! SVG plots of benchmark figures (plotters, SVG backend only).

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use crate::suite::ClusterRuns;

const EXEC: RGBColor = RGBColor(0x4c, 0x72, 0xb0);
const DATA: RGBColor = RGBColor(0xdd, 0x84, 0x52);
const SCHED: RGBColor = RGBColor(0xc4, 0x4e, 0x52);

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing the plot: {e}")
}

/// Every plot into `dir`: the cluster runs' breakdown and co-location, and the
/// micro-benchmarks' hand-off, throughput and per-edge figures.
pub(crate) fn all(dir: &Path, runs: &ClusterRuns, figures: &serde_json::Value, runtime_scale: f64) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| anyhow!("cannot create {}: {e}", dir.display()))?;
    breakdown(
        &dir.join("breakdown.svg"),
        runs,
        &format!(
            "Median invocation on {} workers (runtime scale {runtime_scale}, data scale 1)",
            runs.workers
        ),
    )?;
    handoff(&dir.join("handoff.svg"), figures)?;
    throughput(&dir.join("throughput.svg"), figures)?;
    edges(&dir.join("edges.svg"), figures)?;
    colocation(&dir.join("colocation.svg"), runs)
}

/// Per workflow and mode, the median invocation split into the critical path's execution,
/// its data waits and the scheduling overhead, as stacked bars (WorkerSP left, MasterSP
/// right), on a log-free linear axis scaled per workflow to the larger bar.
pub(crate) fn breakdown(path: &Path, runs: &ClusterRuns, caption: &str) -> Result<()> {
    let workflows: Vec<&str> = {
        let mut v: Vec<&str> = Vec::new();
        for r in &runs.runs {
            if !v.contains(&r.workflow) {
                v.push(r.workflow);
            }
        }
        v
    };
    let cols = 4usize;
    let rows = workflows.len().div_ceil(cols).max(1);
    let root = SVGBackend::new(path, (1200, 300 * rows as u32 + 60)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (title, body) = root.split_vertically(50);
    title
        .draw(&Text::new(caption.to_owned(), (10, 15), ("sans-serif", 18).into_font()))
        .map_err(err)?;
    let legend = [
        ("execution (critical path)", EXEC),
        ("data waits", DATA),
        ("scheduling", SCHED),
    ];
    for (i, (label, color)) in legend.iter().enumerate() {
        let x = 700 + i as i32 * 170;
        title
            .draw(&Rectangle::new([(x, 18), (x + 14, 32)], color.filled()))
            .map_err(err)?;
        title
            .draw(&Text::new(
                label.to_string(),
                (x + 18, 19),
                ("sans-serif", 13).into_font(),
            ))
            .map_err(err)?;
    }
    let cells = body.split_evenly((rows, cols));
    for (cell, wf) in cells.iter().zip(&workflows) {
        let modes: Vec<&crate::suite::Run> = runs.runs.iter().filter(|r| r.workflow == *wf).collect();
        let parts = |r: &crate::suite::Run| {
            let exec = r.ms("critical_path_us", 0.5);
            let data = r.ms("critical_data_us", 0.5);
            let e2e = r.ms("e2e_us", 0.5);
            (exec, data, (e2e - exec - data).max(0.0))
        };
        let top = modes
            .iter()
            .map(|r| {
                let (a, b, c) = parts(r);
                a + b + c
            })
            .fold(1e-3, f64::max)
            * 1.15;
        let mut chart = ChartBuilder::on(cell)
            .caption(*wf, ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(22)
            .y_label_area_size(52)
            .build_cartesian_2d(0.0..(modes.len().max(1) as f64), 0.0..top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_labels(6)
            .y_desc("ms")
            .draw()
            .map_err(err)?;
        for (i, r) in modes.iter().enumerate() {
            let (exec, data, sched) = parts(r);
            let x0 = i as f64 + 0.2;
            let x1 = i as f64 + 0.8;
            let mode = crate::suite::mode_label(r.mode);
            // Two lines (mode, then total) so that three bars' labels fit side by side.
            let total = exec + data + sched;
            for (text, dy) in [(mode.to_owned(), 0.13), (format!("{total:.0} ms"), 0.06)] {
                chart
                    .draw_series(std::iter::once(Text::new(
                        text,
                        (x0 - 0.15, total + top * dy),
                        ("sans-serif", 10).into_font(),
                    )))
                    .map_err(err)?;
            }
            let mut y = 0.0;
            for (h, color) in [(exec, EXEC), (data, DATA), (sched, SCHED)] {
                chart
                    .draw_series(std::iter::once(Rectangle::new([(x0, y), (x1, y + h)], color.filled())))
                    .map_err(err)?;
                y += h;
            }
        }
    }
    root.present().map_err(err)?;
    Ok(())
}

/// A labelled, coloured line of points.
type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

fn f64s(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
        .unwrap_or_default()
}

/// Hand-off time by object size (log–log): within one worker by tier, next to memcpy, and
/// between two workers over QUIC next to raw TCP (from the bandwidths of the peer bench).
pub(crate) fn handoff(path: &Path, figures: &serde_json::Value) -> Result<()> {
    let one = &figures["handoff_one_worker"];
    let sizes = f64s(&one["sizes"]);
    let mut series: Vec<Series<'_>> = Vec::new();
    for (key, label, color) in [
        ("memcpy_us", "memcpy (reference)", RGBColor(0x55, 0x55, 0x55)),
        ("in_process_us", "in-process", EXEC),
        (
            "shared_memory_us",
            "shared memory (other process)",
            RGBColor(0x55, 0xa8, 0x68),
        ),
        ("spill_us", "spill and reload", DATA),
    ] {
        let ys = f64s(&one[key]);
        series.push((label, color, sizes.iter().copied().zip(ys).collect()));
    }
    let mut quic = Vec::new();
    let mut tcp = Vec::new();
    for p in figures["peer_bandwidth"].as_array().into_iter().flatten() {
        let bytes = p["bytes"].as_f64().unwrap_or(0.0);
        for (key, out) in [("quic_gbps", &mut quic), ("tcp_gbps", &mut tcp)] {
            if let Some(g) = p[key].as_f64().filter(|g| *g > 0.0) {
                out.push((bytes, bytes / (g * 1e3)));
            }
        }
    }
    // Between workers only when the peer bench ran.
    if !quic.is_empty() {
        series.push(("peer: QUIC between two workers", SCHED, quic));
        series.push(("raw loopback TCP (reference)", RGBColor(0x93, 0x70, 0xdb), tcp));
    }
    let points: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.2.iter().copied())
        .filter(|p| p.1 > 0.0)
        .collect();
    if points.is_empty() {
        return Err(anyhow!("no hand-off figures to plot"));
    }
    let (x0, x1) = points
        .iter()
        .fold((f64::MAX, 0.0f64), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y0, y1) = points
        .iter()
        .fold((f64::MAX, 0.0f64), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Object hand-off time by size", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((x0 * 0.8..x1 * 1.25).log_scale(), (y0 * 0.5..y1 * 2.0).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("object size, bytes")
        .y_desc("µs")
        .x_label_formatter(&|b| {
            if *b >= (1 << 20) as f64 {
                format!("{:.0} MiB", b / (1 << 20) as f64)
            } else {
                format!("{:.0} KiB", b / 1024.0)
            }
        })
        .draw()
        .map_err(err)?;
    for (label, color, pts) in series {
        let pts: Vec<(f64, f64)> = pts.into_iter().filter(|p| p.1 > 0.0).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Throughput against latency of a one-task no-op workflow on one worker, as the closed loop
/// keeps more invocations outstanding.
pub(crate) fn throughput(path: &Path, figures: &serde_json::Value) -> Result<()> {
    let pts: Vec<(f64, f64, f64, u64)> = figures["throughput_latency_one_worker"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["per_s"].as_f64().unwrap_or(0.0),
                p["e2e_p50_us"].as_f64().unwrap_or(0.0) / 1e3,
                p["e2e_p99_us"].as_f64().unwrap_or(0.0) / 1e3,
                p["outstanding"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    if pts.is_empty() {
        return Err(anyhow!("no throughput figures to plot"));
    }
    let xmax = pts.iter().map(|p| p.0).fold(1.0, f64::max) * 1.15;
    let ymax = pts.iter().map(|p| p.2).fold(1e-3, f64::max) * 1.15;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Closed loop on one worker: throughput against latency (labels: invocations outstanding)",
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..xmax, 0.0..ymax)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("invocations per second")
        .y_desc("end to end, ms")
        .draw()
        .map_err(err)?;
    for (key, color, idx) in [("p50", EXEC, 1usize), ("p99", SCHED, 2)] {
        let line: Vec<(f64, f64)> = pts.iter().map(|p| (p.0, if idx == 1 { p.1 } else { p.2 })).collect();
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(key)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        chart
            .draw_series(line.into_iter().map(|p| Circle::new(p, 3, color.filled())))
            .map_err(err)?;
    }
    chart
        .draw_series(
            pts.iter()
                .map(|p| Text::new(format!("{}", p.3), (p.0, p.1), ("sans-serif", 12).into_font())),
        )
        .map_err(err)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Per-edge trigger latency (p50 and p99) by where the two functions run.
pub(crate) fn edges(path: &Path, figures: &serde_json::Value) -> Result<()> {
    let one = &figures["per_edge_one_worker"];
    let c = &figures["containers"]["per_edge_us"];
    let bars: Vec<(&str, f64, f64)> = [
        ("same instance", &one["in_process_us"]),
        ("other process", &one["across_processes_us"]),
        ("other container", &c["container"]),
        ("other worker (QUIC)", &figures["per_edge_across_workers"]),
        ("via Redis (1 KiB)", &figures["per_edge_1kib_one_worker"]["remote"]),
        ("std mpsc (reference)", &one["mpsc_us"]),
    ]
    .into_iter()
    .filter_map(|(l, v)| Some((l, v["p50"].as_f64()?, v["p99"].as_f64()?)))
    .collect();
    if bars.is_empty() {
        return Err(anyhow!("no per-edge figures to plot"));
    }
    let ymax = bars.iter().map(|b| b.2).fold(1.0, f64::max) * 4.0;
    let root = SVGBackend::new(path, (1100, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let n = bars.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Per-edge trigger latency by where the two functions run (p50 bar, p99 line)",
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..n as f64, (0.5..ymax).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("µs (log)")
        .draw()
        .map_err(err)?;
    for (i, (label, p50, p99)) in bars.iter().enumerate() {
        let x = i as f64;
        chart
            .draw_series(std::iter::once(Text::new(
                format!("{label}: {p50:.1} / {p99:.0} µs"),
                (x + 0.1, p99 * 1.5),
                ("sans-serif", 12).into_font(),
            )))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(x + 0.2, 0.5), (x + 0.8, *p50)],
                EXEC.filled(),
            )))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x + 0.15, *p99), (x + 0.85, *p99)],
                SCHED.stroke_width(3),
            )))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Each workflow's median end-to-end time alone and with all 8 running at once (WorkerSP),
/// side by side on a log axis.
pub(crate) fn colocation(path: &Path, runs: &ClusterRuns) -> Result<()> {
    let pairs: Vec<(&str, f64, f64)> = runs
        .colocated
        .iter()
        .filter_map(|r| {
            let alone = runs.run(r.workflow, crate::suite::WORKERSP)?.ms("e2e_us", 0.5);
            Some((r.workflow, alone, r.ms("e2e_us", 0.5)))
        })
        .filter(|p| p.1 > 0.0 && p.2 > 0.0)
        .collect();
    if pairs.is_empty() {
        return Err(anyhow!("no co-location figures to plot"));
    }
    let ymin = pairs.iter().map(|p| p.1.min(p.2)).fold(f64::MAX, f64::min) * 0.5;
    let ymax = pairs.iter().map(|p| p.1.max(p.2)).fold(0.0, f64::max) * 3.0;
    let root = SVGBackend::new(path, (1000, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "All 8 workflows at once on {} workers (WorkerSP): median end to end, alone (blue) and together (red)",
                runs.workers
            ),
            ("sans-serif", 15),
        )
        .margin(12)
        .x_label_area_size(10)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..pairs.len() as f64, (ymin..ymax).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("ms (log)")
        .draw()
        .map_err(err)?;
    for (i, (name, alone, together)) in pairs.iter().enumerate() {
        let x = i as f64;
        chart
            .draw_series([
                Rectangle::new([(x + 0.1, ymin), (x + 0.48, *alone)], EXEC.filled()),
                Rectangle::new([(x + 0.52, ymin), (x + 0.9, *together)], SCHED.filled()),
            ])
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Text::new(
                format!("{name} {:.1}×", together / alone),
                (x + 0.1, alone.max(*together) * 1.8),
                ("sans-serif", 12).into_font(),
            )))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures() -> serde_json::Value {
        serde_json::json!({
            "handoff_one_worker": {
                "sizes": [1024, 1048576, 67108864],
                "memcpy_us": [0.1, 60.0, 9000.0],
                "in_process_us": [3.0, 3.5, 4.0],
                "shared_memory_us": [20.0, 21.0, 25.0],
                "spill_us": [40.0, 900.0, 60000.0],
            },
            "peer_bandwidth": [{"bytes": 1048576, "quic_gbps": 0.4, "tcp_gbps": 2.0}],
            "throughput_latency_one_worker": [
                {"outstanding": 1, "per_s": 900.0, "e2e_p50_us": 800.0, "e2e_p99_us": 2000.0},
                {"outstanding": 64, "per_s": 9000.0, "e2e_p50_us": 7000.0, "e2e_p99_us": 15000.0},
            ],
            "per_edge_one_worker": {
                "in_process_us": {"p50": 4.0, "p99": 80.0},
                "across_processes_us": {"p50": 45.0, "p99": 200.0},
                "mpsc_us": {"p50": 30.0, "p99": 90.0},
            },
            "containers": {"per_edge_us": {"container": {"p50": 28.0, "p99": 130.0}}},
            "per_edge_across_workers": {"p50": 120.0, "p99": 900.0},
            "per_edge_1kib_one_worker": {
                "shared_memory": {"p50": 40.0, "p99": 90.0},
                "remote": {"p50": 310.0, "p99": 1200.0},
            },
        })
    }

    #[test]
    fn the_breakdown_splits_each_median_invocation() {
        use crate::suite::{ClusterRuns, Run};
        let report = |e2e: f64, exec: f64, data: f64| {
            serde_json::json!({
                "e2e_us": e2e,
                "critical_path_us": exec,
                "critical_data_us": data,
                "edges": [],
            })
        };
        let runs = ClusterRuns {
            workers: 3,
            runs: vec![
                Run {
                    workflow: "soykb",
                    mode: "workersp",
                    reports: vec![report(150_000.0, 120_000.0, 10_000.0)],
                },
                Run {
                    workflow: "soykb",
                    mode: "mastersp",
                    reports: vec![report(900_000.0, 130_000.0, 550_000.0)],
                },
                Run {
                    workflow: "soykb",
                    mode: "workersp-remote",
                    reports: vec![report(400_000.0, 125_000.0, 250_000.0)],
                },
            ],
            no_master: None,
            trace: None,
            colocated: vec![Run {
                workflow: "soykb",
                mode: "workersp",
                reports: vec![report(300_000.0, 120_000.0, 10_000.0)],
            }],
        };
        let path = std::env::temp_dir().join(format!("faasflow-breakdown-{}.svg", std::process::id()));
        breakdown(&path, &runs, "test").unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(
            ["WorkerSP", "150 ms", "MasterSP", "900 ms", "WorkerSP-remote", "400 ms"]
                .iter()
                .all(|l| svg.contains(&format!("\n{l}\n"))),
            "{svg}"
        );
        // The storage table: the data waits of each mode and the ratios that separate them.
        let t = runs.storage_table();
        let row = t.lines().find(|l| l.starts_with("| soykb |")).expect("a soykb row");
        assert_eq!(
            row,
            "| soykb | 150.0 / 150.0 | 10.0 | 400.0 / 400.0 | 250.0 | 900.0 / 900.0 | 550.0 | 2.67× | 2.25× \
             | 0.0 / 0.0 |"
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn each_plot_is_an_svg_with_its_series() {
        let dir = std::env::temp_dir().join(format!("faasflow-plots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = figures();
        handoff(&dir.join("h.svg"), &f).unwrap();
        throughput(&dir.join("t.svg"), &f).unwrap();
        edges(&dir.join("e.svg"), &f).unwrap();
        let h = std::fs::read_to_string(dir.join("h.svg")).unwrap();
        assert!(h.starts_with("<svg"), "{}", &h[..100]);
        for label in [
            "memcpy (reference)",
            "shared memory (other process)",
            "peer: QUIC between two workers",
        ] {
            assert!(h.contains(label), "{label} missing");
        }
        let t = std::fs::read_to_string(dir.join("t.svg")).unwrap();
        assert!(t.contains("invocations per second") && t.contains("\n64\n"), "{t}");
        let e = std::fs::read_to_string(dir.join("e.svg")).unwrap();
        assert!(e.contains("other container: 28.0 / 130 µs"), "{e}");
        assert!(e.contains("other worker (QUIC): 120.0 / 900 µs"), "{e}");
        assert!(e.contains("via Redis (1 KiB): 310.0 / 1200 µs"), "{e}");
        // Figures without the data they need are an error, not an empty plot.
        assert!(handoff(&dir.join("x.svg"), &serde_json::json!({})).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
