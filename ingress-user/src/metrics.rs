//! Prometheus metrics: lock-free counters written on the request path,
//! rendered as text on /metrics.
//!
//! Per-host counters live in a registry keyed by the host labels of the
//! routing table; each snapshot carries the `Arc`s for its hosts, so the
//! request path touches atomics only.

use std::{
    collections::HashMap,
    fmt::Write,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use http::StatusCode;

use crate::{model::ANY_HOST_LABEL, proxy::ErrorSource};

/// Upper bounds (seconds) of the upstream latency histogram.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
const CLASSES: [&str; 6] = ["other", "1xx", "2xx", "3xx", "4xx", "5xx"];
const SOURCES: [ErrorSource; 3] = [
    ErrorSource::Client,
    ErrorSource::Upstream,
    ErrorSource::Internal,
];

/// One metric on /metrics, as the reference page lists it. Every `# HELP`
/// and `# TYPE` line is written from here ([`header`]), so a metric cannot
/// be exported without its entry.
#[derive(Debug, Clone, Copy)]
pub struct MetricDoc {
    pub name: &'static str,
    /// `counter`, `gauge` or `histogram`.
    pub kind: &'static str,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

const fn m(
    name: &'static str,
    kind: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
) -> MetricDoc {
    MetricDoc {
        name,
        kind,
        labels,
        help,
    }
}

pub const CATALOG: &[MetricDoc] = &[
    m(
        "xingress_snapshot_generation",
        "gauge",
        &[],
        "Generation of the live routing snapshot.",
    ),
    m(
        "xingress_config_warnings",
        "gauge",
        &[],
        "Objects skipped or degraded in the live snapshot.",
    ),
    m(
        "xingress_requests_total",
        "counter",
        &["class", "host"],
        "Requests answered, by status class and Ingress host (\"*\": no host rule).",
    ),
    m(
        "xingress_request_errors_total",
        "counter",
        &["source"],
        "Failed requests, by who caused them.",
    ),
    m(
        "xingress_passthrough_connections_total",
        "counter",
        &[],
        "TLS connections passed to a pod undecrypted (ssl-passthrough).",
    ),
    m(
        "xingress_upstream_ejections_total",
        "counter",
        &[],
        "Endpoints skipped by passive health after upstream-max-fails failures within upstream-fail-timeout.",
    ),
    m(
        "xingress_upstream_returns_total",
        "counter",
        &[],
        "Ejected endpoints that answered again.",
    ),
    m(
        "xingress_upstream_retries_total",
        "counter",
        &[],
        "Requests sent again to another endpoint (proxy-next-upstream).",
    ),
    m(
        "xingress_upstream_mirrored_total",
        "counter",
        &[],
        "Copies of requests sent to a Gateway API RequestMirror backend.",
    ),
    m(
        "xingress_proxy_protocol_errors_total",
        "counter",
        &[],
        "Connections closed for a missing or malformed PROXY protocol header (--use-proxy-protocol).",
    ),
    m(
        "xingress_upstream_response_seconds",
        "histogram",
        &["le"],
        "Time from forwarding a request to a pod to its response head.",
    ),
    m(
        "xingress_config_reload_seconds",
        "gauge",
        &["phase"],
        "Time the last configuration reload took, by phase (read: manifests read and parsed; build: translate, certificates, XDP policy, publish).",
    ),
    m(
        "xingress_access_log_lines_total",
        "counter",
        &[],
        "Access log lines queued for writing.",
    ),
    m(
        "xingress_access_log_dropped_total",
        "counter",
        &[],
        "Access log lines dropped because the writer could not keep up (stdout blocked or slow).",
    ),
    m(
        "xingress_xdp_attached",
        "gauge",
        &["iface", "mode"],
        "1 when the XDP program is attached (labels: interface, mode).",
    ),
    m(
        "xingress_xdp_packets_total",
        "counter",
        &["class"],
        "Packets and flows seen by the XDP program, by class and verdict.",
    ),
    m(
        "xingress_xdp_host_flows_total",
        "counter",
        &["host", "verdict"],
        "Flows XDP classified to each host, by verdict.",
    ),
];

/// Writes the `# HELP` and `# TYPE` lines of `name` from [`CATALOG`].
pub fn header(out: &mut String, name: &str) {
    match CATALOG.iter().find(|m| m.name == name) {
        Some(m) => {
            let _ = writeln!(
                out,
                "# HELP {} {}\n# TYPE {} {}",
                m.name, m.help, m.name, m.kind
            );
        }
        None => debug_assert!(false, "metric {name} is not in metrics::CATALOG"),
    }
}

/// Requests of one host label, by status class.
#[derive(Debug, Default)]
pub struct HostStats {
    by_class: [AtomicU64; 6],
}

impl HostStats {
    pub fn record(&self, status: StatusCode) {
        let class = match status.as_u16() / 100 {
            c @ 1..=5 => c as usize,
            _ => 0,
        };
        self.by_class[class].fetch_add(1, Relaxed);
    }
}

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.sum_us.fetch_add(took.as_micros() as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    fn render(&self, name: &str, out: &mut String) {
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_us.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// A phase of a configuration reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadPhase {
    /// Manifests read and parsed (file mode).
    Read = 0,
    /// translate, certificates, XDP policy sync and publication.
    Build = 1,
}

const RELOAD_PHASES: [&str; 2] = ["read", "build"];

#[derive(Debug)]
pub struct Metrics {
    errors: [AtomicU64; 3],
    /// Connections spliced to a pod undecrypted (`ssl-passthrough`).
    passthrough: AtomicU64,
    /// Endpoints ejected by passive health, and back in rotation.
    ejections: AtomicU64,
    returns: AtomicU64,
    /// Requests sent again to another endpoint (`proxy-next-upstream`).
    retries: AtomicU64,
    mirrored: AtomicU64,
    /// Connections closed for a missing or malformed PROXY protocol header.
    proxy_protocol_errors: AtomicU64,
    /// Microseconds the last reload spent in each phase.
    reload_us: [AtomicU64; 2],
    upstream_latency: Histogram,
    /// Host label → counters; touched only when a snapshot is published or rendered.
    hosts: Mutex<HashMap<Box<str>, Arc<HostStats>>>,
    any_host: Arc<HostStats>,
}

impl Default for Metrics {
    fn default() -> Self {
        let any_host = Arc::new(HostStats::default());
        let hosts = HashMap::from([(Box::from(ANY_HOST_LABEL), any_host.clone())]);
        Self {
            errors: Default::default(),
            passthrough: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
            returns: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            mirrored: AtomicU64::new(0),
            proxy_protocol_errors: AtomicU64::new(0),
            reload_us: Default::default(),
            upstream_latency: Histogram::default(),
            hosts: Mutex::new(hosts),
            any_host,
        }
    }
}

impl Metrics {
    /// Counters for requests that matched no host (and before the first snapshot).
    pub fn any_host(&self) -> &Arc<HostStats> {
        &self.any_host
    }

    /// Counters for each label of a new routing table, in label order. Hosts
    /// that left the configuration are dropped from the registry.
    pub fn host_stats(&self, labels: &[Box<str>]) -> Vec<Arc<HostStats>> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        let out: Vec<_> = labels
            .iter()
            .map(|l| match hosts.get(l) {
                Some(stats) => stats.clone(),
                None => hosts.entry(l.clone()).or_default().clone(),
            })
            .collect();
        let live: std::collections::HashSet<&str> = labels.iter().map(|l| &**l).collect();
        hosts.retain(|k, _| **k == *ANY_HOST_LABEL || live.contains(&**k));
        out
    }

    /// Time from sending a request to a pod to its response head.
    pub fn upstream_latency(&self, took: Duration) {
        self.upstream_latency.observe(took);
    }

    /// How long the last reload spent in `phase` (reloads are counted by
    /// the snapshot generation).
    pub fn reload_phase(&self, phase: ReloadPhase, took: Duration) {
        self.reload_us[phase as usize].store(took.as_micros() as u64, Relaxed);
    }

    pub fn error(&self, source: ErrorSource) {
        let i = SOURCES.iter().position(|s| *s == source).unwrap_or(2);
        self.errors[i].fetch_add(1, Relaxed);
    }

    pub fn passthrough_connection(&self) {
        self.passthrough.fetch_add(1, Relaxed);
    }

    pub fn endpoint_ejected(&self) {
        self.ejections.fetch_add(1, Relaxed);
    }

    pub fn endpoint_returned(&self) {
        self.returns.fetch_add(1, Relaxed);
    }

    pub fn upstream_retry(&self) {
        self.retries.fetch_add(1, Relaxed);
    }

    pub fn upstream_mirrored(&self) {
        self.mirrored.fetch_add(1, Relaxed);
    }

    pub fn proxy_protocol_error(&self) {
        self.proxy_protocol_errors.fetch_add(1, Relaxed);
    }

    pub fn render(&self, out: &mut String) {
        header(out, "xingress_requests_total");
        let hosts: Vec<(Box<str>, Arc<HostStats>)> = {
            let map = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
            let mut v: Vec<_> = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        for (host, stats) in &hosts {
            for (i, c) in stats.by_class.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "xingress_requests_total{{class=\"{}\",host=\"{}\"}} {}",
                    CLASSES[i],
                    escape(host),
                    c.load(Relaxed)
                );
            }
        }
        header(out, "xingress_request_errors_total");
        for (i, s) in SOURCES.iter().enumerate() {
            let _ = writeln!(
                out,
                "xingress_request_errors_total{{source=\"{}\"}} {}",
                s.label(),
                self.errors[i].load(Relaxed)
            );
        }
        header(out, "xingress_passthrough_connections_total");
        let _ = writeln!(
            out,
            "xingress_passthrough_connections_total {}",
            self.passthrough.load(Relaxed)
        );
        for (name, v) in [
            ("xingress_upstream_ejections_total", &self.ejections),
            ("xingress_upstream_returns_total", &self.returns),
            ("xingress_upstream_retries_total", &self.retries),
            ("xingress_upstream_mirrored_total", &self.mirrored),
            (
                "xingress_proxy_protocol_errors_total",
                &self.proxy_protocol_errors,
            ),
        ] {
            header(out, name);
            let _ = writeln!(out, "{name} {}", v.load(Relaxed));
        }
        header(out, "xingress_upstream_response_seconds");
        self.upstream_latency
            .render("xingress_upstream_response_seconds", out);
        header(out, "xingress_config_reload_seconds");
        for (i, phase) in RELOAD_PHASES.iter().enumerate() {
            let _ = writeln!(
                out,
                "xingress_config_reload_seconds{{phase=\"{phase}\"}} {}",
                self.reload_us[i].load(Relaxed) as f64 / 1e6
            );
        }
    }
}

/// Label values come from Ingress hosts (DNS names), but escape anyway.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
