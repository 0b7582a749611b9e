//! Prometheus metrics: lock-free counters written on the request path,
//! rendered as text on /metrics.

use std::{
    fmt::Write,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

use http::StatusCode;

use crate::proxy::ErrorSource;

/// Upper bounds (seconds) of the request duration histogram.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
const CLASSES: [&str; 6] = ["other", "1xx", "2xx", "3xx", "4xx", "5xx"];
const SOURCES: [ErrorSource; 3] = [
    ErrorSource::Client,
    ErrorSource::Upstream,
    ErrorSource::Internal,
];

#[derive(Debug, Default)]
pub struct Metrics {
    by_class: [AtomicU64; 6],
    errors: [AtomicU64; 3],
    buckets: [AtomicU64; BUCKETS.len()],
    duration_sum_us: AtomicU64,
    duration_count: AtomicU64,
}

impl Metrics {
    pub fn request(&self, status: StatusCode, took: Duration) {
        let class = match status.as_u16() / 100 {
            c @ 1..=5 => c as usize,
            _ => 0,
        };
        self.by_class[class].fetch_add(1, Relaxed);
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.duration_sum_us
            .fetch_add(took.as_micros() as u64, Relaxed);
        self.duration_count.fetch_add(1, Relaxed);
    }

    pub fn error(&self, source: ErrorSource) {
        let i = SOURCES.iter().position(|s| *s == source).unwrap_or(2);
        self.errors[i].fetch_add(1, Relaxed);
    }

    /// Requests answered with a status of class `class` (1..=5).
    pub fn requests_of_class(&self, class: usize) -> u64 {
        self.by_class.get(class).map_or(0, |c| c.load(Relaxed))
    }

    pub fn render(&self, out: &mut String) {
        out.push_str("# HELP xingress_requests_total Requests answered, by status class.\n");
        out.push_str("# TYPE xingress_requests_total counter\n");
        for (i, c) in self.by_class.iter().enumerate() {
            let _ = writeln!(
                out,
                "xingress_requests_total{{class=\"{}\"}} {}",
                CLASSES[i],
                c.load(Relaxed)
            );
        }
        out.push_str("# HELP xingress_request_errors_total Failed requests, by who caused them.\n");
        out.push_str("# TYPE xingress_request_errors_total counter\n");
        for (i, s) in SOURCES.iter().enumerate() {
            let _ = writeln!(
                out,
                "xingress_request_errors_total{{source=\"{}\"}} {}",
                s.label(),
                self.errors[i].load(Relaxed)
            );
        }
        out.push_str(
            "# HELP xingress_request_duration_seconds Time from request head to response head.\n",
        );
        out.push_str("# TYPE xingress_request_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Relaxed);
            let _ = writeln!(
                out,
                "xingress_request_duration_seconds_bucket{{le=\"{b}\"}} {cumulative}"
            );
        }
        let count = self.duration_count.load(Relaxed);
        let _ = writeln!(
            out,
            "xingress_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = self.duration_sum_us.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "xingress_request_duration_seconds_sum {sum}");
        let _ = writeln!(out, "xingress_request_duration_seconds_count {count}");
    }
}
