//! `faasflow top`: a local cluster's metrics, live. Every interval it scrapes each process's
//! `/metrics` (the addresses `up` recorded) and shows the rates and latency quantiles over the
//! interval: the planner's invocations, and per worker its calls, trigger latency, bytes read
//! per tier, spills, instances and arena use.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use faasflow_core::metrics::{Sample, buckets, parse, quantile};

use crate::Failure;
use crate::metrics::fetch;
use crate::record::{DirArg, cluster_record};
use faasflow_rpc::tls::{ALPN_HTTP1, ClusterTrust, api_client_config};
use rustls::ClientConfig;
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub(crate) struct TopArgs {
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
    /// Print one screen (rates over one interval) and exit, without clearing the terminal.
    #[arg(long)]
    once: bool,
    #[command(flatten)]
    dir: DirArg,
}

/// One scrape of every process of the cluster: (name, samples or why not).
type Scrape = Vec<(String, anyhow::Result<Vec<Sample>>)>;

fn scrape(targets: &[(String, SocketAddr)], tls: &Arc<ClientConfig>) -> Scrape {
    targets
        .iter()
        .map(|(name, addr)| {
            let text = fetch(*addr, name, Some(tls), Duration::from_secs(2));
            (name.clone(), text.map(|t| parse(&t)))
        })
        .collect()
}

fn sum(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && with
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        // (An empty float sum is -0.0, which prints as "-0".)
        .fold(0.0, |a, b| a + b)
}

fn fmt_bytes_rate(b: f64) -> String {
    match b {
        b if b >= 1e9 => format!("{:.1} GB/s", b / 1e9),
        b if b >= 1e6 => format!("{:.1} MB/s", b / 1e6),
        b if b >= 1e3 => format!("{:.1} kB/s", b / 1e3),
        b => format!("{b:.0} B/s"),
    }
}

fn fmt_latency(s: Option<f64>) -> String {
    match s {
        None => "–".into(),
        Some(s) if s >= 1.0 => format!("{s:.2} s"),
        Some(s) if s >= 1e-3 => format!("{:.2} ms", s * 1e3),
        Some(s) => format!("{:.0} µs", s * 1e6),
    }
}

/// The quantile of the observations a histogram got between two scrapes.
fn window_quantile(before: &[Sample], after: &[Sample], name: &str, q: f64) -> Option<f64> {
    let none = BTreeMap::new();
    let a = buckets(after, name, &none);
    let b = buckets(before, name, &none);
    let delta: Vec<(f64, f64)> = a
        .iter()
        .map(|(le, c)| (*le, c - b.iter().find(|(l, _)| l == le).map_or(0.0, |(_, c)| *c)))
        .collect();
    quantile(&delta, q)
}

/// The screen for two scrapes `secs` apart.
fn screen(before: &Scrape, after: &Scrape, secs: f64) -> String {
    let mut out = String::new();
    let find = |scrape: &Scrape, name: &str| -> Option<Vec<Sample>> {
        scrape
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, r)| r.as_ref().ok().cloned())
    };
    for (name, now) in after {
        let Ok(now) = now else { continue };
        if name != "planner" {
            continue;
        }
        let then = find(before, name).unwrap_or_default();
        let rate = |metric: &str, with: &[(&str, &str)]| (sum(now, metric, with) - sum(&then, metric, with)) / secs;
        out.push_str(&format!(
            "planner   invocations {:.1}/s ok, {:.1}/s failed   e2e p50 {} p99 {}   workers {} live, {} lost\n\n",
            rate("faasflow_planner_invocations_total", &[("outcome", "ok")]),
            rate("faasflow_planner_invocations_total", &[("outcome", "failed")])
                + rate("faasflow_planner_invocations_total", &[("outcome", "deadline")]),
            fmt_latency(window_quantile(&then, now, "faasflow_planner_invocation_seconds", 0.5)),
            fmt_latency(window_quantile(&then, now, "faasflow_planner_invocation_seconds", 0.99)),
            sum(now, "faasflow_planner_workers", &[("state", "live")]),
            sum(now, "faasflow_planner_workers", &[("state", "lost")]),
        ));
    }
    out.push_str(&format!(
        "{:<10} {:>9} {:>10} {:>10} {:>12} {:>12} {:>12} {:>7} {:>9} {:>13}\n",
        "worker", "calls/s", "trig p50", "trig p99", "in-process", "shared-mem", "peer", "spills", "instances", "arena"
    ));
    for (name, now) in after {
        if name == "planner" {
            continue;
        }
        let now = match now {
            Ok(s) => s,
            Err(e) => {
                out.push_str(&format!("{name:<10} unreachable: {e}\n"));
                continue;
            }
        };
        let then = find(before, name).unwrap_or_default();
        let rate = |metric: &str, with: &[(&str, &str)]| (sum(now, metric, with) - sum(&then, metric, with)) / secs;
        out.push_str(&format!(
            "{name:<10} {:>9.1} {:>10} {:>10} {:>12} {:>12} {:>12} {:>7} {:>9} {:>13}\n",
            rate("faasflow_calls_total", &[]),
            fmt_latency(window_quantile(&then, now, "faasflow_trigger_latency_seconds", 0.5)),
            fmt_latency(window_quantile(&then, now, "faasflow_trigger_latency_seconds", 0.99)),
            fmt_bytes_rate(rate("faasflow_bytes_read_total", &[("tier", "in-process")])),
            fmt_bytes_rate(rate("faasflow_bytes_read_total", &[("tier", "shared-memory")])),
            fmt_bytes_rate(rate("faasflow_bytes_read_total", &[("tier", "peer")])),
            sum(now, "faasflow_spills_total", &[]),
            sum(now, "faasflow_pool_instances", &[]),
            format!(
                "{:.0}/{:.0} MiB",
                sum(now, "faasflow_arena_used_bytes", &[]) / (1u64 << 20) as f64,
                sum(now, "faasflow_arena_capacity_bytes", &[]) / (1u64 << 20) as f64
            ),
        ));
    }
    out
}

pub(crate) fn top(args: &TopArgs) -> Result<(), Failure> {
    if !(args.interval.is_finite() && args.interval >= 0.1) {
        return Err(Failure::Input("error: --interval must be at least 0.1 seconds".into()));
    }
    let record = cluster_record(&args.dir)?;
    let mut targets = Vec::new();
    if let Some(a) = record["planner"]["metrics"].as_str().and_then(|a| a.parse().ok()) {
        targets.push(("planner".to_owned(), a));
    }
    for w in record["workers"].as_array().into_iter().flatten() {
        if let (Some(name), Some(a)) = (
            w["name"].as_str(),
            w["metrics"].as_str().and_then(|a| a.parse::<SocketAddr>().ok()),
        ) {
            targets.push((name.to_owned(), a));
        }
    }
    if targets.is_empty() {
        return Err(Failure::Input(
            "error: the cluster's cluster.json names no metrics addresses: start it again with this `faasflow up`"
                .into(),
        ));
    }
    let certs = args.dir.path().join("certs");
    let trust = ClusterTrust::load(&certs).map_err(|e| Failure::Input(format!("error: the cluster's CA: {e}")))?;
    let tls = Arc::new(api_client_config(&trust, None, &[ALPN_HTTP1]).map_err(|e| Failure::Other(e.into()))?);
    let interval = Duration::from_secs_f64(args.interval);
    let mut before = scrape(&targets, &tls);
    let mut at = Instant::now();
    loop {
        std::thread::sleep(interval);
        let after = scrape(&targets, &tls);
        let secs = at.elapsed().as_secs_f64();
        at = Instant::now();
        let text = screen(&before, &after, secs);
        if args.once {
            return crate::out(&text);
        }
        // Clear the screen and go home, then draw.
        crate::out(&format!(
            "\x1b[2J\x1b[H{}\n(every {:.1} s; Ctrl-C to quit)\n",
            text, args.interval
        ))?;
        before = after;
    }
}
