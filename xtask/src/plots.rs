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
        .draw(&Text::new(
            caption.to_owned(),
            (10, 15),
            ("sans-serif", 18).into_font(),
        ))
        .map_err(err)?;
    let legend = [("execution (critical path)", EXEC), ("data waits", DATA), ("scheduling", SCHED)];
    for (i, (label, color)) in legend.iter().enumerate() {
        let x = 700 + i as i32 * 170;
        title
            .draw(&Rectangle::new([(x, 18), (x + 14, 32)], color.filled()))
            .map_err(err)?;
        title
            .draw(&Text::new(label.to_string(), (x + 18, 19), ("sans-serif", 13).into_font()))
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
            * 1.1;
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
            .x_labels(modes.len().max(1))
            .x_label_formatter(&|x| {
                modes
                    .get(x.floor() as usize)
                    .map(|r| if r.mode == "workersp" { "WorkerSP" } else { "MasterSP" }.to_owned())
                    .unwrap_or_default()
            })
            .y_desc("ms")
            .draw()
            .map_err(err)?;
        for (i, r) in modes.iter().enumerate() {
            let (exec, data, sched) = parts(r);
            let x0 = i as f64 + 0.2;
            let x1 = i as f64 + 0.8;
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
