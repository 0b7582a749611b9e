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

use crate::model::ANY_HOST_LABEL;

/// The labels of ingress-nginx's request metrics.
const ROUTE_LABELS_STATUS: [&str; 10] = [
    "controller_class",
    "controller_namespace",
    "controller_pod",
    "host",
    "ingress",
    "method",
    "namespace",
    "path",
    "service",
    "status",
];
const ROUTE_LABELS_LE: [&str; 9] = [
    "controller_class",
    "controller_namespace",
    "controller_pod",
    "host",
    "ingress",
    "le",
    "namespace",
    "path",
    "service",
];
const CONTROLLER_LABELS: [&str; 3] = ["controller_class", "controller_namespace", "controller_pod"];
const CERT_LABELS: [&str; 6] = [
    "controller_class",
    "controller_namespace",
    "controller_pod",
    "host",
    "namespace",
    "secret_name",
];
/// ingress-nginx's default `--time-buckets`, `--length-buckets` and
/// `--size-buckets`.
const TIME_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const LENGTH_BUCKETS: [f64; 10] = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0];
const SIZE_BUCKETS: [f64; 7] = [10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7];
/// Methods counted by name; any other is `OTHER`.
const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "OTHER",
];

/// The index of a method in `METHODS`.
pub fn method_index(method: &[u8]) -> u8 {
    METHODS[..9]
        .iter()
        .position(|m| m.as_bytes() == method)
        .unwrap_or(9) as u8
}

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

/// Who caused a failed request, for metrics (`source` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorSource {
    Client,
    Upstream,
    Internal,
}

impl ErrorSource {
    pub const fn label(self) -> &'static str {
        match self {
            ErrorSource::Client => "client",
            ErrorSource::Upstream => "upstream",
            ErrorSource::Internal => "internal",
        }
    }
}

/// Why the HTTP/1.1 fast path handed a connection to hyper.
#[derive(Debug, Clone, Copy)]
pub enum HandOffReason {
    /// The route's plan needs hyper's path; the plan goes along.
    Route = 0,
    /// HTTP/1.0, an upgrade, `Expect`, a target not in origin form.
    Protocol = 1,
    /// The HTTP/2 connection preface (h2c with prior knowledge).
    H2c = 2,
}

const HANDOFF_REASONS: [&str; 3] = ["route", "protocol", "h2c"];

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
        "xingress_http1_handoffs_total",
        "counter",
        &["reason"],
        "HTTP/1.x connections the fast path handed to the general path: \"route\" (the route's plan needs it; the request is routed once), \"protocol\" (HTTP/1.0, an upgrade, Expect, an absolute target), \"h2c\" (the HTTP/2 preface).",
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
        "xingress_l4_relay_flows_total",
        "counter",
        &["protocol", "port", "result"],
        "TCP connections and UDP sessions of the TCP and UDP services the userspace relay took, by result (relayed, failed: no pod took it).",
    ),
    m(
        "xingress_l4_relay_bytes_total",
        "counter",
        &["protocol", "port", "direction"],
        "Bytes the userspace relay moved for the TCP and UDP services (direction: in, client to pod; out, pod to client).",
    ),
    m(
        "xingress_l4_relay_dropped_datagrams_total",
        "counter",
        &["port"],
        "UDP datagrams the relay dropped: the session table or a session's queue was full.",
    ),
    m(
        "xingress_xdp_l4_packets_total",
        "counter",
        &["protocol", "port", "service", "direction"],
        "Packets of the TCP and UDP services forwarded in XDP, per service (direction: in, client to pod; out, pod to client).",
    ),
    m(
        "xingress_xdp_l4_bytes_total",
        "counter",
        &["protocol", "port", "service", "direction"],
        "Bytes (after the IP header) of the TCP and UDP services forwarded in XDP, per service.",
    ),
    m(
        "xingress_xdp_l4_flows_total",
        "counter",
        &["protocol", "port", "service", "result"],
        "New flows of the TCP and UDP services: steered in XDP, or left to the relay (fallback: no route or neighbour to the pod yet, no free SNAT port).",
    ),
    m(
        "xingress_xdp_l4_endpoint_packets_total",
        "counter",
        &["protocol", "port", "endpoint", "direction"],
        "Packets forwarded in XDP, per endpoint of each steered service.",
    ),
    m(
        "xingress_xdp_l4_endpoint_flows_total",
        "counter",
        &["protocol", "port", "endpoint"],
        "New flows steered in XDP, per endpoint of each steered service.",
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
    m(
        "nginx_ingress_controller_requests",
        "counter",
        &ROUTE_LABELS_STATUS,
        "Requests answered, by the route's Ingress, Service and path, status and method (ingress-nginx's name and labels, so its dashboards work unchanged).",
    ),
    m(
        "nginx_ingress_controller_request_duration_seconds",
        "histogram",
        &ROUTE_LABELS_LE,
        "Time from a request's head to the last byte of its response, by route.",
    ),
    m(
        "nginx_ingress_controller_request_size",
        "histogram",
        &ROUTE_LABELS_LE,
        "Request size in bytes (head and body), by route.",
    ),
    m(
        "nginx_ingress_controller_response_size",
        "histogram",
        &ROUTE_LABELS_LE,
        "Response body size in bytes, by route.",
    ),
    m(
        "nginx_ingress_controller_config_last_reload_successful",
        "gauge",
        &CONTROLLER_LABELS,
        "1 once a configuration is live (xingress never rejects a whole configuration: bad objects are skipped and counted in xingress_config_warnings).",
    ),
    m(
        "nginx_ingress_controller_config_last_reload_successful_timestamp_seconds",
        "gauge",
        &CONTROLLER_LABELS,
        "When the live configuration was published (Unix time).",
    ),
    m(
        "nginx_ingress_controller_ssl_expire_time_seconds",
        "gauge",
        &CERT_LABELS,
        "When each host's certificate expires (Unix time), by the Secret it comes from.",
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

pub use crate::model::RouteLabels;

/// The counters of one route: its host's (`xingress_requests_total`) and
/// ingress-nginx's per-route ones.
#[derive(Debug)]
pub struct RouteStats {
    pub host: Arc<HostStats>,
    labels: RouteLabels,
    /// (status, method index) → requests: a route sees few pairs.
    counts: Mutex<Vec<(u16, u8, u64)>>,
    duration: Buckets<11>,
    request_size: Buckets<10>,
    response_size: Buckets<7>,
}

impl RouteStats {
    fn new(host: Arc<HostStats>, labels: RouteLabels) -> Self {
        Self {
            host,
            labels,
            counts: Mutex::new(Vec::new()),
            duration: Buckets::default(),
            request_size: Buckets::default(),
            response_size: Buckets::default(),
        }
    }

    /// The response head went out with `status` (`xingress_requests_total`).
    pub fn record(&self, status: StatusCode) {
        self.host.record(status);
    }

    /// The request is done: its response's last byte went out (or the
    /// connection ended).
    pub fn observe(
        &self,
        status: u16,
        method: u8,
        request_len: u64,
        response_len: u64,
        took: Duration,
    ) {
        {
            let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            match counts
                .iter_mut()
                .find(|(s, m, _)| *s == status && *m == method)
            {
                Some((_, _, n)) => *n += 1,
                None => counts.push((status, method, 1)),
            }
        }
        self.duration
            .observe(&TIME_BUCKETS, took.as_secs_f64(), took.as_micros() as u64);
        self.request_size
            .observe(&LENGTH_BUCKETS, request_len as f64, request_len);
        self.response_size
            .observe(&SIZE_BUCKETS, response_len as f64, response_len);
    }
}

/// A histogram over fixed bounds; the sum kept in whole units (µs, bytes).
#[derive(Debug)]
struct Buckets<const N: usize> {
    buckets: [AtomicU64; N],
    sum: AtomicU64,
    count: AtomicU64,
}

impl<const N: usize> Default for Buckets<N> {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl<const N: usize> Buckets<N> {
    fn observe(&self, bounds: &[f64; N], v: f64, units: u64) {
        if let Some(i) = bounds.iter().position(|b| v <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.sum.fetch_add(units, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// `NAME_bucket{labels,le=..}`, `NAME_sum{labels}`, `NAME_count{labels}`;
    /// `scale` turns the sum's units into the metric's.
    fn render(&self, name: &str, labels: &str, bounds: &[f64; N], scale: f64, out: &mut String) {
        let mut cumulative = 0;
        for (i, b) in bounds.iter().enumerate() {
            cumulative += self.buckets[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {}",
            self.sum.load(Relaxed) as f64 * scale
        );
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
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
    /// Connections handed from the fast path to hyper, by `HandOffReason`.
    handoffs: [AtomicU64; 3],
    /// Connections closed for a missing or malformed PROXY protocol header.
    proxy_protocol_errors: AtomicU64,
    /// Microseconds the last reload spent in each phase.
    reload_us: [AtomicU64; 2],
    upstream_latency: Histogram,
    /// Host label → counters; touched only when a snapshot is published or rendered.
    hosts: Mutex<HashMap<Box<str>, Arc<HostStats>>>,
    /// Route labels → counters, the same way.
    routes: Mutex<HashMap<RouteLabels, Arc<RouteStats>>>,
    any_host: Arc<RouteStats>,
    /// `controller_class="..",controller_namespace="..",controller_pod=".."`.
    controller: std::sync::OnceLock<String>,
    /// When the live configuration was published (Unix seconds; 0: none yet).
    published_at: AtomicU64,
    /// (host, Secret, expiry) of the live certificates.
    cert_expiry: Mutex<Vec<(Box<str>, crate::model::NamespacedName, i64)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let host = Arc::new(HostStats::default());
        let hosts = HashMap::from([(Box::from(ANY_HOST_LABEL), host.clone())]);
        let any_labels = RouteLabels {
            host: ANY_HOST_LABEL.into(),
            ..RouteLabels::default()
        };
        let any_host = Arc::new(RouteStats::new(host, any_labels.clone()));
        let routes = HashMap::from([(any_labels, any_host.clone())]);
        Self {
            errors: Default::default(),
            passthrough: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
            returns: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            mirrored: AtomicU64::new(0),
            handoffs: Default::default(),
            proxy_protocol_errors: AtomicU64::new(0),
            reload_us: Default::default(),
            upstream_latency: Histogram::default(),
            hosts: Mutex::new(hosts),
            routes: Mutex::new(routes),
            any_host,
            controller: std::sync::OnceLock::new(),
            published_at: AtomicU64::new(0),
            cert_expiry: Mutex::new(Vec::new()),
        }
    }
}

impl Metrics {
    /// Counters for requests that matched no host (and before the first snapshot).
    pub fn any_host(&self) -> &Arc<RouteStats> {
        &self.any_host
    }

    /// The controller labels of ingress-nginx's metrics: the IngressClass
    /// name, and this agent's pod namespace and name. Set once at start.
    pub fn set_controller(&self, class: &str, namespace: &str, pod: &str) {
        let _ = self.controller.set(format!(
            "controller_class=\"{}\",controller_namespace=\"{}\",controller_pod=\"{}\"",
            escape(class),
            escape(namespace),
            escape(pod)
        ));
    }

    /// The live certificates' expiry (host, Secret, Unix seconds).
    pub fn set_cert_expiry(&self, expiry: Vec<(Box<str>, crate::model::NamespacedName, i64)>) {
        *self.cert_expiry.lock().unwrap_or_else(|e| e.into_inner()) = expiry;
    }

    /// A configuration was published now.
    pub fn published(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.published_at.store(now.as_secs(), Relaxed);
    }

    /// Counters for each of `labels`, in order (a route's host counters
    /// shared with its host label's). Routes that left the configuration
    /// are dropped from the registry.
    pub fn route_stats(&self, labels: &[RouteLabels]) -> Vec<Arc<RouteStats>> {
        let hosts: Vec<Box<str>> = {
            let mut h: Vec<Box<str>> = labels.iter().map(|l| l.host.clone()).collect();
            h.sort();
            h.dedup();
            h
        };
        let host_stats: HashMap<Box<str>, Arc<HostStats>> = {
            let mut map = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
            let out = hosts
                .iter()
                .map(|h| (h.clone(), map.entry(h.clone()).or_default().clone()))
                .collect();
            map.retain(|k, _| **k == *ANY_HOST_LABEL || hosts.binary_search(k).is_ok());
            out
        };
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        let out: Vec<_> = labels
            .iter()
            .map(|l| {
                routes
                    .entry(l.clone())
                    .or_insert_with(|| {
                        Arc::new(RouteStats::new(host_stats[&l.host].clone(), l.clone()))
                    })
                    .clone()
            })
            .collect();
        let live: std::collections::HashSet<&RouteLabels> = labels.iter().collect();
        let any = &self.any_host.labels;
        routes.retain(|k, _| k == any || live.contains(k));
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

    pub fn handoff(&self, reason: HandOffReason) {
        self.handoffs[reason as usize].fetch_add(1, Relaxed);
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
        header(out, "xingress_http1_handoffs_total");
        for (i, reason) in HANDOFF_REASONS.iter().enumerate() {
            let _ = writeln!(
                out,
                "xingress_http1_handoffs_total{{reason=\"{reason}\"}} {}",
                self.handoffs[i].load(Relaxed)
            );
        }
        header(out, "xingress_upstream_response_seconds");
        self.upstream_latency
            .render("xingress_upstream_response_seconds", out);
        self.render_routes(out);
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

impl Metrics {
    /// ingress-nginx's request and reload metrics.
    fn render_routes(&self, out: &mut String) {
        let controller = self.controller.get().map_or(
            "controller_class=\"\",controller_namespace=\"\",controller_pod=\"\"",
            String::as_str,
        );
        let mut routes: Vec<Arc<RouteStats>> = {
            let map = self.routes.lock().unwrap_or_else(|e| e.into_inner());
            map.values().cloned().collect()
        };
        routes.sort_by(|a, b| a.labels.cmp(&b.labels));
        let labels_of = |r: &RouteStats| {
            let l = &r.labels;
            format!(
                "{controller},host=\"{}\",ingress=\"{}\",namespace=\"{}\",path=\"{}\",service=\"{}\"",
                escape(&l.host),
                escape(&l.ingress),
                escape(&l.namespace),
                escape(&l.path),
                escape(&l.service)
            )
        };
        header(out, "nginx_ingress_controller_requests");
        for r in &routes {
            let labels = labels_of(r);
            let mut counts = r.counts.lock().unwrap_or_else(|e| e.into_inner()).clone();
            counts.sort_unstable();
            for (status, method, n) in counts {
                let _ = writeln!(
                    out,
                    "nginx_ingress_controller_requests{{{labels},method=\"{}\",status=\"{status}\"}} {n}",
                    METHODS[usize::from(method)]
                );
            }
        }
        for (name, pick, bounds_scale) in [
            ("nginx_ingress_controller_request_duration_seconds", 0, 1e-6),
            ("nginx_ingress_controller_request_size", 1, 1.0),
            ("nginx_ingress_controller_response_size", 2, 1.0),
        ] {
            header(out, name);
            for r in routes.iter().filter(|r| r.duration.count.load(Relaxed) > 0) {
                let labels = labels_of(r);
                match pick {
                    0 => r
                        .duration
                        .render(name, &labels, &TIME_BUCKETS, bounds_scale, out),
                    1 => r
                        .request_size
                        .render(name, &labels, &LENGTH_BUCKETS, bounds_scale, out),
                    _ => r
                        .response_size
                        .render(name, &labels, &SIZE_BUCKETS, bounds_scale, out),
                }
            }
        }
        header(out, "nginx_ingress_controller_ssl_expire_time_seconds");
        for (host, secret, at) in self
            .cert_expiry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "nginx_ingress_controller_ssl_expire_time_seconds{{{controller},host=\"{}\",namespace=\"{}\",secret_name=\"{}\"}} {at}",
                escape(host),
                escape(&secret.namespace),
                escape(&secret.name)
            );
        }
        let at = self.published_at.load(Relaxed);
        header(
            out,
            "nginx_ingress_controller_config_last_reload_successful",
        );
        let _ = writeln!(
            out,
            "nginx_ingress_controller_config_last_reload_successful{{{controller}}} {}",
            u8::from(at > 0)
        );
        header(
            out,
            "nginx_ingress_controller_config_last_reload_successful_timestamp_seconds",
        );
        let _ = writeln!(
            out,
            "nginx_ingress_controller_config_last_reload_successful_timestamp_seconds{{{controller}}} {at}"
        );
    }
}

/// Label values come from Ingress hosts (DNS names), but escape anyway.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
