//! The text of the planner's and the daemons' `/metrics`: the OpenMetrics text format, written
//! through `prometheus-client` (which groups each family's samples as the format requires),
//! and histograms with fixed buckets. `faasflow_core::metrics` reads it back.

use std::collections::HashMap;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The content type of the text [`Exposition::finish`] makes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Bucket bounds (seconds) for latencies from microseconds to seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    0.5, 1.0, 2.5, 5.0, 10.0,
];

/// [`LATENCY_BUCKETS`], then on by 1–2.5–5 steps until a bound reaches `deadline`: the
/// buckets of a run that may last up to its deadline.
pub fn buckets_to(deadline: Duration) -> Vec<f64> {
    let mut out = LATENCY_BUCKETS.to_vec();
    let end = deadline.as_secs_f64();
    let mut decade = 10.0;
    'up: loop {
        for step in [2.5, 5.0, 10.0] {
            if out.last().is_none_or(|b| *b >= end) {
                break 'up;
            }
            out.push(decade * step);
        }
        decade *= 10.0;
    }
    out
}

/// A histogram with fixed bucket bounds (its observations are atomic: any thread may add).
#[derive(Debug, Clone)]
pub struct Histogram {
    inner: prometheus_client::metrics::histogram::Histogram,
}

impl Default for Histogram {
    /// An empty histogram over [`LATENCY_BUCKETS`].
    fn default() -> Self {
        Histogram::new(LATENCY_BUCKETS)
    }
}

impl Histogram {
    /// An empty histogram over `bounds` (ascending).
    pub fn new(bounds: &[f64]) -> Self {
        Histogram {
            inner: prometheus_client::metrics::histogram::Histogram::new(bounds.iter().copied()),
        }
    }

    /// Records one value.
    pub fn observe(&self, v: f64) {
        self.inner.observe(v);
    }
}

/// A label set: `[("tier", "peer")]`.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

type LabelSet = Vec<(String, String)>;

/// A family's samples as they are set.
#[derive(Debug)]
enum Metric {
    Counters(Family<LabelSet, Counter>),
    Gauges(Family<LabelSet, Gauge>),
    Counter(Counter),
    Gauge(Gauge),
}

/// Collects metrics and writes them as OpenMetrics text.
#[derive(Debug, Default)]
pub struct Exposition {
    registry: Registry,
    families: HashMap<String, Metric>,
}

/// The label set of `labels`, values escaped as the text format requires (`prometheus-client`
/// 0.24 writes label values as they are given).
fn label_set(labels: Labels<'_>) -> LabelSet {
    let escape = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    labels.iter().map(|(k, v)| ((*k).to_owned(), escape(v))).collect()
}

impl Exposition {
    /// An empty document.
    pub fn new() -> Self {
        Self::default()
    }

    /// A counter's value (`name` ends in `_total`, as the format names counters).
    pub fn counter(&mut self, name: &str, help: &str, labels: Labels<'_>, value: u64) {
        let base = name.strip_suffix("_total").unwrap_or(name);
        let registry = &mut self.registry;
        let m = self.families.entry(base.to_owned()).or_insert_with(|| {
            if labels.is_empty() {
                let c = Counter::default();
                registry.register(base, help, c.clone());
                Metric::Counter(c)
            } else {
                let f = Family::<LabelSet, Counter>::default();
                registry.register(base, help, f.clone());
                Metric::Counters(f)
            }
        });
        match m {
            Metric::Counters(f) => {
                f.get_or_create(&label_set(labels)).inc_by(value);
            }
            Metric::Counter(c) => {
                c.inc_by(value);
            }
            Metric::Gauges(_) | Metric::Gauge(_) => {}
        }
    }

    /// A gauge's value.
    pub fn gauge(&mut self, name: &str, help: &str, labels: Labels<'_>, value: u64) {
        let value = i64::try_from(value).unwrap_or(i64::MAX);
        let registry = &mut self.registry;
        let m = self.families.entry(name.to_owned()).or_insert_with(|| {
            if labels.is_empty() {
                let g = Gauge::default();
                registry.register(name, help, g.clone());
                Metric::Gauge(g)
            } else {
                let f = Family::<LabelSet, Gauge>::default();
                registry.register(name, help, f.clone());
                Metric::Gauges(f)
            }
        });
        match m {
            Metric::Gauges(f) => {
                f.get_or_create(&label_set(labels)).set(value);
            }
            Metric::Gauge(g) => {
                g.set(value);
            }
            Metric::Counters(_) | Metric::Counter(_) => {}
        }
    }

    /// A histogram: cumulative `_bucket` samples, `_sum` and `_count`.
    pub fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.registry.register(name, help, h.inner.clone());
    }

    /// The document.
    pub fn finish(self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faasflow_core::metrics::{buckets, parse, quantile};
    use std::collections::BTreeMap;

    #[test]
    fn written_text_parses_back_with_its_labels_and_histogram() {
        let h = Histogram::new(LATENCY_BUCKETS);
        for us in [20.0, 30.0, 40.0, 400.0, 20_000.0] {
            h.observe(us / 1e6);
        }
        let mut e = Exposition::new();
        e.counter("faasflow_bytes_total", "Bytes moved", &[("tier", "peer")], 1024);
        e.gauge("faasflow_instances", "Live instances", &[], 3);
        e.counter(
            "faasflow_bytes_total",
            "Bytes moved",
            &[("tier", "in \"process\"\\")],
            8,
        );
        e.histogram("faasflow_trigger_seconds", "Trigger latency", &h);
        let text = e.finish();
        assert_eq!(text.matches("# TYPE faasflow_bytes counter").count(), 1, "{text}");
        // A family's samples together, whatever order they were set in.
        let bytes: Vec<usize> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.starts_with("faasflow_bytes_total"))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(bytes.len(), 2, "{text}");
        assert_eq!(bytes[1], bytes[0] + 1, "{text}");
        assert!(text.contains("faasflow_instances 3"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("faasflow_trigger_seconds_bucket{le=\"")
                    && l.contains("0.00005")
                    && l.ends_with(" 3")),
            "{text}"
        );
        assert!(
            text.contains("faasflow_trigger_seconds_bucket{le=\"+Inf\"} 5"),
            "{text}"
        );
        let samples = parse(&text);
        let peer = samples
            .iter()
            .find(|s| s.name == "faasflow_bytes_total" && s.labels.get("tier").map(String::as_str) == Some("peer"))
            .unwrap();
        assert_eq!(peer.value, 1024.0);
        assert!(
            samples
                .iter()
                .any(|s| s.labels.get("tier").map(String::as_str) == Some("in \"process\"\\"))
        );
        let b = buckets(&samples, "faasflow_trigger_seconds", &BTreeMap::new());
        assert_eq!(b.len(), LATENCY_BUCKETS.len() + 1);
        // The median (3rd of 5) is in the 25–50 µs bucket.
        let p50 = quantile(&b, 0.5).unwrap();
        assert!((25e-6..=50e-6).contains(&p50), "{p50}");
        let p99 = quantile(&b, 0.99).unwrap();
        assert!((10e-3..=25e-3).contains(&p99), "{p99}");
        assert_eq!(quantile(&[(1.0, 0.0), (f64::INFINITY, 0.0)], 0.5), None);
    }

    #[test]
    fn run_buckets_reach_the_deadline() {
        let b = buckets_to(Duration::from_secs(300));
        assert_eq!(&b[..LATENCY_BUCKETS.len()], LATENCY_BUCKETS);
        assert!(b.windows(2).all(|w| w[0] < w[1]), "{b:?}");
        assert_eq!(b.last(), Some(&500.0));
        assert_eq!(buckets_to(Duration::from_secs(5)), LATENCY_BUCKETS);
    }
}
