//! Counters and histograms in the Prometheus text format.
//!
//! One registry per running interq (no global recorder), so that several
//! servers in one process, as in the tests, keep their numbers apart. The broker
//! records events; gauges (queue lengths, workers by state) are read from the
//! broker when `/metrics` is scraped.

use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use dashmap::DashMap;

use crate::model::QueueName;

/// Per-queue event counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueEvent {
    /// Copies made into the queue by publishes.
    Routed,
    Completed,
    /// Copies that entered the failed set.
    Failed,
    /// Failures scheduled to run again.
    Retried,
    /// Running copies stopped on request.
    Cancelled,
}

impl QueueEvent {
    const ALL: [QueueEvent; 5] = [
        Self::Routed,
        Self::Completed,
        Self::Failed,
        Self::Retried,
        Self::Cancelled,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Routed => "interq_queue_routed_total",
            Self::Completed => "interq_queue_completed_total",
            Self::Failed => "interq_queue_failed_total",
            Self::Retried => "interq_queue_retried_total",
            Self::Cancelled => "interq_queue_cancelled_total",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Self::Routed => "Copies routed into the queue by publishes.",
            Self::Completed => "Copies of the queue completed.",
            Self::Failed => "Copies of the queue that entered the failed set.",
            Self::Retried => "Failures of the queue scheduled to run again.",
            Self::Cancelled => "Running copies of the queue stopped on request and reported.",
        }
    }
}

/// A histogram with fixed buckets, in seconds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, seconds: f64) {
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((seconds.max(0.0) * 1e6) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

const LATENCY: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const DURATION: &[f64] = &[
    0.01, 0.1, 1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 14_400.0, 86_400.0,
];

/// Everything interq counts while it runs.
#[derive(Debug)]
pub struct Metrics {
    queue_events: DashMap<(QueueEvent, QueueName), AtomicU64>,
    /// Seconds from receiving a publish to its durable answer.
    pub publish_latency: Histogram,
    /// Seconds a copy waited ready (from its runAt) before a claim.
    pub wait_time: Histogram,
    /// Seconds from a claim to its completion or failure.
    pub run_time: Histogram,
    /// Each queue's last `WAITS_KEPT` waits before a claim (milliseconds),
    /// for its page: this node's claims only.
    recent_waits: DashMap<QueueName, Mutex<VecDeque<u64>>>,
}

/// Waits remembered per queue.
pub const WAITS_KEPT: usize = 1000;

/// How long a queue's last claimed copies waited ready, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waits {
    pub claims: usize,
    pub median: u64,
    pub p95: u64,
    pub max: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            queue_events: DashMap::new(),
            publish_latency: Histogram::new(LATENCY),
            wait_time: Histogram::new(DURATION),
            run_time: Histogram::new(DURATION),
            recent_waits: DashMap::new(),
        }
    }
}

/// A gauge's value for one label set, gathered at scrape time.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

impl Metrics {
    pub fn add(&self, event: QueueEvent, queue: &QueueName, n: u64) {
        if let Some(c) = self.queue_events.get(&(event, queue.clone())) {
            c.fetch_add(n, Ordering::Relaxed);
            return;
        }
        self.queue_events
            .entry((event, queue.clone()))
            .or_insert_with(|| AtomicU64::new(0))
            .fetch_add(n, Ordering::Relaxed);
    }

    /// Records how long claimed copies waited, by queue. A claim's copies
    /// are mostly of one queue: its window is locked once for a run of them.
    pub fn record_waits<'a>(&self, waits: impl IntoIterator<Item = (&'a QueueName, u64)>) {
        let mut waits = waits.into_iter().peekable();
        while let Some((queue, ms)) = waits.next() {
            let window = self
                .recent_waits
                .entry(queue.clone())
                .or_insert_with(|| Mutex::new(VecDeque::with_capacity(WAITS_KEPT)));
            let mut w = window.lock().unwrap_or_else(|e| e.into_inner());
            let mut push = |ms| {
                if w.len() == WAITS_KEPT {
                    w.pop_front();
                }
                w.push_back(ms);
            };
            push(ms);
            while let Some((_, ms)) = waits.next_if(|(q, _)| *q == queue) {
                push(ms);
            }
        }
    }

    /// How long `queue`'s last claimed copies waited (none claimed yet:
    /// `None`).
    pub fn waits(&self, queue: &QueueName) -> Option<Waits> {
        let window = self.recent_waits.get(queue)?;
        let mut w: Vec<u64> = window
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        w.sort_unstable();
        let at = |q: f64| w[((w.len() - 1) as f64 * q).round() as usize];
        (!w.is_empty()).then(|| Waits {
            claims: w.len(),
            median: at(0.5),
            p95: at(0.95),
            max: w[w.len() - 1],
        })
    }

    /// The Prometheus text for everything recorded, plus `gauges` and
    /// `totals` gathered by the caller: (name, help, samples).
    pub fn render(
        &self,
        gauges: &[(&str, &str, Vec<Sample>)],
        totals: &[(&str, &str, Vec<Sample>)],
    ) -> String {
        let mut out = String::new();
        for event in QueueEvent::ALL {
            let _ = writeln!(
                out,
                "# HELP {} {}\n# TYPE {} counter",
                event.name(),
                event.help(),
                event.name()
            );
            let mut rows: Vec<(String, u64)> = self
                .queue_events
                .iter()
                .filter(|e| e.key().0 == event)
                .map(|e| (e.key().1.to_string(), e.value().load(Ordering::Relaxed)))
                .collect();
            rows.sort();
            for (queue, n) in rows {
                let _ = writeln!(out, "{}{{queue=\"{queue}\"}} {n}", event.name());
            }
        }
        let mut family = |kind: &str, (name, help, samples): &(&str, &str, Vec<Sample>)| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for s in samples {
                let labels: Vec<String> = s
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect();
                if labels.is_empty() {
                    let _ = writeln!(out, "{name} {}", s.value);
                } else {
                    let _ = writeln!(out, "{name}{{{}}} {}", labels.join(","), s.value);
                }
            }
        };
        for g in gauges {
            family("gauge", g);
        }
        for t in totals {
            family("counter", t);
        }
        self.publish_latency.render(
            &mut out,
            "interq_publish_seconds",
            "Seconds from receiving a publish to its durable answer.",
        );
        self.wait_time.render(
            &mut out,
            "interq_wait_seconds",
            "Seconds a copy waited ready before it was claimed.",
        );
        self.run_time.render(
            &mut out,
            "interq_run_seconds",
            "Seconds from a claim to its completion or failure.",
        );
        out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_keeps_its_last_waits() {
        let m = Metrics::default();
        let (a, b) = (
            QueueName::parse("a").unwrap(),
            QueueName::parse("b").unwrap(),
        );
        assert_eq!(m.waits(&a), None);
        let many: Vec<(&QueueName, u64)> = (0..WAITS_KEPT as u64 + 10).map(|ms| (&a, ms)).collect();
        m.record_waits(many.into_iter().chain([(&b, 7), (&a, 5_000)]));
        let w = m.waits(&a).unwrap();
        assert_eq!((w.claims, w.max), (WAITS_KEPT, 5_000), "the oldest went");
        assert_eq!(w.median, 511, "of 11..=1009 and 5,000");
        assert_eq!(
            m.waits(&b),
            Some(Waits {
                claims: 1,
                median: 7,
                p95: 7,
                max: 7
            })
        );
    }

    #[test]
    fn renders_counters_gauges_and_histograms() {
        let m = Metrics::default();
        let q = QueueName::parse("emails").unwrap();
        m.add(QueueEvent::Routed, &q, 3);
        m.add(QueueEvent::Routed, &q, 2);
        m.publish_latency.observe(0.002);
        m.publish_latency.observe(0.3);
        let gauges = [(
            "interq_ready",
            "Ready copies.",
            vec![Sample {
                labels: vec![("queue", "emails".into())],
                value: 4.0,
            }],
        )];
        let text = m.render(&gauges, &[]);
        assert!(
            text.contains("interq_queue_routed_total{queue=\"emails\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE interq_ready gauge\ninterq_ready{queue=\"emails\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("interq_publish_seconds_bucket{le=\"0.0025\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("interq_publish_seconds_bucket{le=\"0.5\"} 2"),
            "{text}"
        );
        assert!(text.contains("interq_publish_seconds_count 2"), "{text}");
    }
}

/// The process's own figures, as Prometheus names them, read from `/proc`
/// (zero where there is none).
pub mod process {
    /// Clock ticks per second as `/proc` counts them (`getconf CLK_TCK`,
    /// 100 on every Linux this runs on).
    const TICKS_PER_SEC: f64 = 100.0;
    const PAGE_BYTES: u64 = 4096;

    /// CPU seconds, user and system, since the process started.
    pub fn cpu_seconds() -> f64 {
        let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
            return 0.0;
        };
        // The command name (field 2) may hold spaces: count from its end.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        // utime and stime are fields 14 and 15, so 11 and 12 after the name.
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        (ticks(11) + ticks(12)) as f64 / TICKS_PER_SEC
    }

    /// Resident bytes now.
    pub fn resident_bytes() -> u64 {
        std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map_or(0, |pages| pages * PAGE_BYTES)
    }
}
