//! Metrics in the Prometheus text exposition format (version 0.0.4): histograms with fixed
//! buckets, a writer for counters, gauges and histograms, and a parser of the same format (for
//! `faasflow top`). No sockets here: the planner and daemon services serve the text.

use std::collections::BTreeMap;
use std::fmt::Write;

/// Bucket bounds (seconds) for latencies from microseconds to seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A histogram with fixed bucket bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last is above every bound.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Default for Histogram {
    /// An empty histogram over [`LATENCY_BUCKETS`].
    fn default() -> Self {
        Histogram::new(LATENCY_BUCKETS)
    }
}

impl Histogram {
    /// An empty histogram over `bounds` (ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    /// Records one value.
    pub fn observe(&mut self, v: f64) {
        let i = self.bounds.partition_point(|b| *b < v);
        self.counts[i] += 1;
        self.sum += v;
        self.count += 1;
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// A label set: `[("tier", "peer")]`.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

/// Writes metrics as Prometheus text.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
    /// Names whose HELP and TYPE lines are written.
    declared: Vec<String>,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn labels_text(labels: Labels<'_>, extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

impl Exposition {
    /// An empty document.
    pub fn new() -> Self {
        Self::default()
    }

    fn declare(&mut self, name: &str, help: &str, kind: &str) {
        if !self.declared.iter().any(|d| d == name) {
            let _ = writeln!(self.text, "# HELP {name} {help}");
            let _ = writeln!(self.text, "# TYPE {name} {kind}");
            self.declared.push(name.to_owned());
        }
    }

    /// A counter's value.
    pub fn counter(&mut self, name: &str, help: &str, labels: Labels<'_>, value: f64) {
        self.declare(name, help, "counter");
        let _ = writeln!(self.text, "{name}{} {value}", labels_text(labels, None));
    }

    /// A gauge's value.
    pub fn gauge(&mut self, name: &str, help: &str, labels: Labels<'_>, value: f64) {
        self.declare(name, help, "gauge");
        let _ = writeln!(self.text, "{name}{} {value}", labels_text(labels, None));
    }

    /// A histogram: cumulative `_bucket` lines, `_sum` and `_count`.
    pub fn histogram(&mut self, name: &str, help: &str, labels: Labels<'_>, h: &Histogram) {
        self.declare(name, help, "histogram");
        let mut cumulative = 0;
        for (i, c) in h.counts.iter().enumerate() {
            cumulative += c;
            let le = h.bounds.get(i).map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
            let _ = writeln!(
                self.text,
                "{name}_bucket{} {cumulative}",
                labels_text(labels, Some(("le", le)))
            );
        }
        let l = labels_text(labels, None);
        let _ = writeln!(self.text, "{name}_sum{l} {}", h.sum);
        let _ = writeln!(self.text, "{name}_count{l} {}", h.count);
    }

    /// The document.
    pub fn finish(self) -> String {
        self.text
    }
}

/// One sample of a parsed document.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name (with `_bucket`, `_sum`, `_count` for histograms).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// Parses Prometheus text (comments skipped; lines that do not parse are skipped too).
pub fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (head, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let Ok(value) = value.parse::<f64>() else { continue };
        let (name, labels) = match head.split_once('{') {
            None => (head.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let Some(body) = rest.strip_suffix('}') else { continue };
                let mut labels = BTreeMap::new();
                let mut chars = body.chars().peekable();
                loop {
                    let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                    if key.is_empty() {
                        break;
                    }
                    if chars.next() != Some('"') {
                        break;
                    }
                    let mut v = String::new();
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => match chars.next() {
                                Some('n') => v.push('\n'),
                                Some(c) => v.push(c),
                                None => break,
                            },
                            '"' => break,
                            c => v.push(c),
                        }
                    }
                    labels.insert(key.trim_start_matches(',').to_owned(), v);
                    if chars.peek() == Some(&',') {
                        chars.next();
                    }
                }
                (name.to_owned(), labels)
            }
        };
        out.push(Sample { name, labels, value });
    }
    out
}

/// The `q` quantile (0–1) of a histogram given as its cumulative `(le, count)` buckets
/// (`+Inf` last), interpolated linearly within the bucket; `None` without observations.
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for &(le, c) in buckets {
        if c >= rank {
            if le.is_infinite() {
                return Some(prev.0);
            }
            let span = c - prev.1;
            let frac = if span > 0.0 { (rank - prev.1) / span } else { 1.0 };
            return Some(prev.0 + (le - prev.0) * frac);
        }
        prev = (le, c);
    }
    Some(prev.0)
}

/// The cumulative buckets of histogram `name` with labels `with` among `samples`, in `le`
/// order.
pub fn buckets(samples: &[Sample], name: &str, with: &BTreeMap<String, String>) -> Vec<(f64, f64)> {
    let bucket = format!("{name}_bucket");
    let mut out: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.name == bucket)
        .filter(|s| with.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .filter_map(|s| {
            let le = s.labels.get("le")?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, s.value))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_text_parses_back_with_its_labels_and_histogram() {
        let mut h = Histogram::new(LATENCY_BUCKETS);
        for us in [20.0, 30.0, 40.0, 400.0, 20_000.0] {
            h.observe(us / 1e6);
        }
        let mut e = Exposition::new();
        e.counter("faasflow_bytes_total", "Bytes moved", &[("tier", "peer")], 1024.0);
        e.counter(
            "faasflow_bytes_total",
            "Bytes moved",
            &[("tier", "in \"process\"")],
            8.0,
        );
        e.gauge("faasflow_instances", "Live instances", &[], 3.0);
        e.histogram("faasflow_trigger_seconds", "Trigger latency", &[("worker", "w0")], &h);
        let text = e.finish();
        assert_eq!(text.matches("# TYPE faasflow_bytes_total counter").count(), 1, "{text}");
        assert!(
            text.contains("faasflow_trigger_seconds_bucket{worker=\"w0\",le=\"0.00005\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("faasflow_trigger_seconds_bucket{worker=\"w0\",le=\"+Inf\"} 5"),
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
                .any(|s| s.labels.get("tier").map(String::as_str) == Some("in \"process\""))
        );
        let b = buckets(
            &samples,
            "faasflow_trigger_seconds",
            &BTreeMap::from([("worker".to_owned(), "w0".to_owned())]),
        );
        assert_eq!(b.len(), LATENCY_BUCKETS.len() + 1);
        // The median (3rd of 5) is in the 25–50 µs bucket.
        let p50 = quantile(&b, 0.5).unwrap();
        assert!((25e-6..=50e-6).contains(&p50), "{p50}");
        let p99 = quantile(&b, 0.99).unwrap();
        assert!((10e-3..=25e-3).contains(&p99), "{p99}");
        assert_eq!(quantile(&[(1.0, 0.0), (f64::INFINITY, 0.0)], 0.5), None);
    }
}
