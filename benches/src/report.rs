//! Output: one JSON object per line (`--json`) or aligned text, the machine
//! description, latency percentiles and resident memory.
//!
//! Every measurement line carries `bench`, `metric`, `value` and `unit`,
//! plus extra fields. The last line of a bench is its [`Summary`]: huddle
//! against a peer, with `ratio > 1` meaning huddle is ahead.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Map, Value, json};

/// One measured number and its context.
#[derive(Debug, Clone)]
pub struct Measurement {
    pub bench: &'static str,
    pub metric: String,
    pub value: f64,
    pub unit: &'static str,
    pub extra: Map<String, Value>,
}

impl Measurement {
    pub fn new(bench: &'static str, metric: impl Into<String>, value: f64, unit: &'static str) -> Self {
        Measurement { bench, metric: metric.into(), value, unit, extra: Map::new() }
    }

    /// Adds an extra field.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    /// Records the target and whether this run met it (reported, never asserted).
    pub fn target(self, target: &str, met: bool) -> Self {
        self.with("target", target).with("meets_target", met)
    }

    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("bench".into(), json!(self.bench));
        m.insert("metric".into(), json!(self.metric));
        m.insert("value".into(), json!(round(self.value)));
        m.insert("unit".into(), json!(self.unit));
        for (k, v) in &self.extra {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m)
    }
}

/// huddle against a peer on one metric.
#[derive(Debug, Clone)]
pub struct Summary {
    pub bench: &'static str,
    pub metric: &'static str,
    pub huddle: f64,
    pub peer: &'static str,
    pub peer_value: f64,
    pub ratio: f64,
}

impl Summary {
    /// For throughputs: `ratio = huddle / peer`.
    pub fn higher_is_better(
        bench: &'static str,
        metric: &'static str,
        huddle: f64,
        peer: &'static str,
        peer_value: f64,
    ) -> Self {
        Summary { bench, metric, huddle, peer, peer_value, ratio: ratio(huddle, peer_value) }
    }

    /// For latencies and memory: `ratio = peer / huddle`.
    pub fn lower_is_better(
        bench: &'static str,
        metric: &'static str,
        huddle: f64,
        peer: &'static str,
        peer_value: f64,
    ) -> Self {
        Summary { bench, metric, huddle, peer, peer_value, ratio: ratio(peer_value, huddle) }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "bench": self.bench,
            "metric": self.metric,
            "huddle": round(self.huddle),
            "peer": self.peer,
            "peer_value": round(self.peer_value),
            "ratio": (self.ratio * 10_000.0).round() / 10_000.0,
        })
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}

/// Three decimals are plenty for any figure here and keep lines short.
pub fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Prints measurements as JSON lines or as text. Progress goes to stderr,
/// so stdout stays machine-readable.
#[derive(Debug, Clone, Copy)]
pub struct Reporter {
    pub json: bool,
}

impl Reporter {
    pub fn new(json: bool) -> Self {
        Reporter { json }
    }

    /// The first line of every run: cores, CPU model, memory, kernel.
    pub fn machine(&self) {
        let m = machine();
        if self.json {
            println!("{m}");
        } else {
            println!(
                "machine: {} cores, {}, {:.1} GiB RAM, Linux {}",
                m["nproc"],
                m["cpu_model"].as_str().unwrap_or("?"),
                m["mem_total_bytes"].as_f64().unwrap_or(0.0) / (1u64 << 30) as f64,
                m["kernel"].as_str().unwrap_or("?"),
            );
        }
    }

    pub fn emit(&self, m: Measurement) {
        if self.json {
            println!("{}", m.to_json());
            return;
        }
        let mut extra = String::new();
        for (k, v) in &m.extra {
            let _ = write!(extra, " {k}={v}");
        }
        println!("{:<7} {:<46} {:>12} {:<6}{}", m.bench, m.metric, human(m.value), m.unit, extra);
    }

    pub fn summary(&self, s: Summary) {
        if self.json {
            println!("{}", s.to_json());
        } else {
            println!(
                "summary {}: huddle {} vs {} {} -> ratio {:.3} ({})",
                s.metric,
                human(s.huddle),
                s.peer,
                human(s.peer_value),
                s.ratio,
                if s.ratio >= 1.0 { "huddle ahead" } else { "peer ahead" }
            );
        }
    }

    /// A progress line on stderr.
    pub fn progress(&self, what: &str) {
        eprintln!("[huddle-bench] {what}");
    }
}

fn human(v: f64) -> String {
    if v.abs() >= 1e6 {
        format!("{:.3}M", v / 1e6)
    } else if v.abs() >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{v}")
    } else {
        format!("{v:.3}")
    }
}

/// Cores, CPU model, total memory and kernel of this machine.
pub fn machine() -> Value {
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string()))
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_total_bytes = kb_field(&meminfo, "MemTotal:").unwrap_or(0) * 1024;
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    json!({
        "bench": "machine",
        "nproc": nproc,
        "cpu_model": cpu_model,
        "mem_total_bytes": mem_total_bytes,
        "kernel": kernel,
    })
}

fn kb_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Resident set size of this process, from `/proc/self/status`.
pub fn rss_bytes() -> u64 {
    rss_bytes_of("self")
}

/// Resident set size of a process (`"self"` or a pid), 0 if unreadable.
pub fn rss_bytes_of(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    kb_field(&status, "VmRSS:").unwrap_or(0) * 1024
}

/// A sorted set of latency samples.
#[derive(Debug, Clone)]
pub struct Latencies {
    sorted_ns: Vec<u64>,
}

impl Latencies {
    pub fn from_nanos(mut ns: Vec<u64>) -> Self {
        ns.sort_unstable();
        Latencies { sorted_ns: ns }
    }

    pub fn from_durations(d: impl IntoIterator<Item = Duration>) -> Self {
        Self::from_nanos(d.into_iter().map(|d| d.as_nanos() as u64).collect())
    }

    pub fn len(&self) -> usize {
        self.sorted_ns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted_ns.is_empty()
    }

    /// The `q` quantile (0..=1, nearest rank) in microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        if self.sorted_ns.is_empty() {
            return 0.0;
        }
        let rank = ((q * self.sorted_ns.len() as f64).ceil() as usize).clamp(1, self.sorted_ns.len());
        self.sorted_ns[rank - 1] as f64 / 1000.0
    }

    pub fn mean_us(&self) -> f64 {
        if self.sorted_ns.is_empty() {
            return 0.0;
        }
        self.sorted_ns.iter().map(|&n| n as f64).sum::<f64>() / self.sorted_ns.len() as f64 / 1000.0
    }

    pub fn max_us(&self) -> f64 {
        self.sorted_ns.last().map_or(0.0, |&n| n as f64 / 1000.0)
    }
}

/// The median of a few runs.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let l = Latencies::from_nanos((1..=1000).map(|i| i * 1000).collect());
        assert_eq!(l.quantile_us(0.5), 500.0);
        assert_eq!(l.quantile_us(0.99), 990.0);
        assert_eq!(l.quantile_us(0.999), 999.0);
        assert_eq!(l.max_us(), 1000.0);
    }

    #[test]
    fn summary_ratio_direction() {
        assert_eq!(Summary::higher_is_better("b", "m", 2.0, "p", 1.0).ratio, 2.0);
        assert_eq!(Summary::lower_is_better("b", "m", 2.0, "p", 1.0).ratio, 0.5);
    }

    #[test]
    fn median_of_runs() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
