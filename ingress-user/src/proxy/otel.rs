//! Request tracing: a server span per traced request, a W3C
//! `traceparent` (our span as the parent) on the request to the pod, and
//! the spans exported over OTLP gRPC (`opentelemetry-proto`'s messages and
//! client) in batches by a task of their own. A request only hands its
//! finished span to a bounded queue: full, the span is dropped and
//! counted, never waited for.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use http::{HeaderMap, HeaderValue};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, trace_service_client::TraceServiceClient},
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span as ProtoSpan, Status, span::SpanKind, status},
};

use crate::model::otel::{OperationPiece, OtelExport, OtelRoute, Sampler};

pub const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
pub const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");

/// A `traceparent`'s trace id, parent span id and sampled flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

/// Reads a W3C `traceparent` (`VERSION-TRACEID-SPANID-FLAGS`, lowercase
/// hex); `None` for anything malformed, all-zero ids or version ff.
pub fn parse_traceparent(v: &[u8]) -> Option<Parent> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let mut parts = s.split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let span = parts.next()?;
    let flags = parts.next()?;
    let lower_hex = |p: &str, n: usize| {
        p.len() == n
            && p.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !lower_hex(version, 2)
        || version == "ff"
        || !lower_hex(trace, 32)
        || !lower_hex(span, 16)
        || !lower_hex(flags, 2)
    {
        return None;
    }
    // Version 00 has exactly four parts; later versions may add more.
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let mut trace_id = [0u8; 16];
    let mut span_id = [0u8; 8];
    hex_into(trace, &mut trace_id)?;
    hex_into(span, &mut span_id)?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(Parent {
        trace_id,
        span_id,
        sampled: flags & 1 == 1,
    })
}

fn hex_into(s: &str, out: &mut [u8]) -> Option<()> {
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a new trace (or a child) is recorded.
pub fn sampled(export: &OtelExport, trace_id: &[u8; 16], parent: Option<&Parent>) -> bool {
    if export.parent_based
        && let Some(p) = parent
    {
        return p.sampled;
    }
    match export.sampler {
        Sampler::AlwaysOn => true,
        Sampler::AlwaysOff => false,
        // The trace id's low 8 bytes against the ratio of 2^64, as the
        // specification's TraceIdRatioBased.
        Sampler::Ratio(r) => {
            let low = u64::from_be_bytes(trace_id[8..].try_into().unwrap_or([0; 8]));
            (low as f64) < r * (u64::MAX as f64)
        }
    }
}

/// A request's span while it is under way.
pub struct Span {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub sampled: bool,
    name: String,
    start: u64,
    attributes: Vec<KeyValue>,
}

/// What a span's name and attributes are made of.
pub struct SpanInput<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub scheme: &'a str,
    pub host: &'a str,
    pub client: std::net::IpAddr,
    pub user_agent: Option<&'a str>,
    pub rule_path: &'a str,
    pub namespace: &'a str,
    pub ingress: &'a str,
    pub service: &'a str,
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn attr(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn text(key: &str, v: &str) -> KeyValue {
    attr(key, any_value::Value::StringValue(v.into()))
}

impl Span {
    /// Starts the span of a request whose fields are `headers`: the
    /// client's `traceparent` is its parent if the route trusts it.
    pub fn start(
        route: &OtelRoute,
        export: &OtelExport,
        headers: &HeaderMap,
        input: &SpanInput<'_>,
    ) -> Span {
        let parent = route
            .trust_incoming
            .then(|| headers.get(&TRACEPARENT))
            .flatten()
            .and_then(|v| parse_traceparent(v.as_bytes()));
        let trace_id = parent
            .map(|p| p.trace_id)
            .unwrap_or_else(|| fastrand::u128(1..).to_be_bytes());
        let span_id = fastrand::u64(1..).to_be_bytes();
        let sampled = sampled(export, &trace_id, parent.as_ref());
        let name = match &route.operation {
            None => format!("{} {}", input.method, input.rule_path),
            Some(pieces) => {
                let mut out = String::new();
                for p in pieces {
                    out.push_str(match p {
                        OperationPiece::Text(t) => t,
                        OperationPiece::Method => input.method,
                        OperationPiece::Uri => input.path,
                        OperationPiece::Host => input.host,
                        OperationPiece::ServiceName => input.service,
                        OperationPiece::Namespace => input.namespace,
                        OperationPiece::IngressName => input.ingress,
                        OperationPiece::RulePath => input.rule_path,
                    });
                }
                out
            }
        };
        let mut attributes = Vec::new();
        if sampled {
            attributes = vec![
                text("http.request.method", input.method),
                text("url.path", input.path),
                text("url.scheme", input.scheme),
                text("server.address", input.host),
                text("client.address", &input.client.to_string()),
                text("http.route", input.rule_path),
                text("k8s.namespace.name", input.namespace),
                text("xingress.ingress", input.ingress),
                text("xingress.service", input.service),
            ];
            if let Some(ua) = input.user_agent {
                attributes.push(text("user_agent.original", ua));
            }
        }
        Span {
            trace_id,
            span_id,
            parent: parent.map(|p| p.span_id),
            sampled,
            name,
            start: now_nanos(),
            attributes,
        }
    }

    /// The `traceparent` the pod gets: this span as its parent.
    pub fn traceparent(&self) -> HeaderValue {
        let v = format!(
            "00-{}-{}-{}",
            hex(&self.trace_id),
            hex(&self.span_id),
            if self.sampled { "01" } else { "00" }
        );
        HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(
            "00-00000000000000000000000000000001-0000000000000001-00",
        ))
    }

    /// Ends the span with the response's status (`None`: no response,
    /// `error` says why) and the pod that answered.
    pub fn end(
        mut self,
        status: Option<u16>,
        error: Option<&str>,
        upstream: Option<&str>,
    ) -> Option<ProtoSpan> {
        if !self.sampled {
            return None;
        }
        if let Some(s) = status {
            self.attributes.push(attr(
                "http.response.status_code",
                any_value::Value::IntValue(i64::from(s)),
            ));
        }
        if let Some(u) = upstream {
            self.attributes.push(text("network.peer.address", u));
        }
        let failed = error.is_some() || status.is_some_and(|s| s >= 500);
        Some(ProtoSpan {
            trace_id: self.trace_id.to_vec(),
            span_id: self.span_id.to_vec(),
            parent_span_id: self.parent.map(|p| p.to_vec()).unwrap_or_default(),
            name: self.name,
            kind: SpanKind::Server as i32,
            start_time_unix_nano: self.start,
            end_time_unix_nano: now_nanos().max(self.start),
            attributes: self.attributes,
            status: Some(Status {
                message: error.unwrap_or_default().to_string(),
                code: if failed {
                    status::StatusCode::Error as i32
                } else {
                    status::StatusCode::Unset as i32
                },
            }),
            ..Default::default()
        })
    }
}

/// The span of a request whose response head has come: it ends when the
/// response body has gone out (or broke, or the client left).
pub struct PendingSpan {
    span: Span,
    status: u16,
    upstream: Option<String>,
    error: Option<String>,
    exporter: Arc<Exporter>,
}

impl PendingSpan {
    pub fn new(
        span: Span,
        status: u16,
        upstream: Option<String>,
        exporter: Arc<Exporter>,
    ) -> Box<Self> {
        Box::new(Self {
            span,
            status,
            upstream,
            error: None,
            exporter,
        })
    }

    /// The response body failed (the pod's read timeout, a reset): the
    /// span ends as an error.
    pub fn body_failed(&mut self, error: &dyn std::fmt::Display) {
        if self.error.is_none() {
            self.error = Some(format!("response body: {error}"));
        }
    }

    /// Ends the span with the body's size and queues it.
    pub fn finish(self, body_bytes: u64) {
        let Self {
            mut span,
            status,
            upstream,
            error,
            exporter,
        } = self;
        span.attributes.push(attr(
            "http.response.body.size",
            any_value::Value::IntValue(i64::try_from(body_bytes).unwrap_or(i64::MAX)),
        ));
        if let Some(s) = span.end(Some(status), error.as_deref(), upstream.as_deref()) {
            exporter.send(s);
        }
    }
}

/// Spans on their way to the collector.
pub struct Exporter {
    pub config: Arc<OtelExport>,
    tx: tokio::sync::mpsc::Sender<ProtoSpan>,
    pub dropped: AtomicU64,
}

impl Exporter {
    /// Starts the export task for `config` (connecting when the first batch
    /// goes).
    pub fn start(config: Arc<OtelExport>) -> Arc<Exporter> {
        let (tx, rx) = tokio::sync::mpsc::channel(config.max_queue);
        let exporter = Arc::new(Exporter {
            config: config.clone(),
            tx,
            dropped: AtomicU64::new(0),
        });
        tokio::spawn(export_loop(config, rx));
        exporter
    }

    /// Queues a finished span; never waits.
    pub fn send(&self, span: ProtoSpan) {
        if self.tx.try_send(span).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped = n,
                    "tracing: the span queue is full (otel-max-queuesize); spans dropped"
                );
            }
        }
    }
}

async fn export_loop(config: Arc<OtelExport>, mut rx: tokio::sync::mpsc::Receiver<ProtoSpan>) {
    let channel = match tonic::transport::Channel::from_shared(config.endpoint.clone()) {
        Ok(e) => e
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .connect_lazy(),
        Err(e) => {
            tracing::warn!(
                "tracing: the collector address {} is not usable: {e}",
                config.endpoint
            );
            return;
        }
    };
    let mut client = TraceServiceClient::new(channel);
    let resource = Resource {
        attributes: vec![text("service.name", &config.service_name)],
        ..Default::default()
    };
    let scope = InstrumentationScope {
        name: "xingress".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    };
    let mut batch = Vec::with_capacity(config.max_batch);
    loop {
        // The first span of a batch, then the rest until the batch is
        // full or the delay has passed.
        match rx.recv().await {
            Some(s) => batch.push(s),
            None => return,
        }
        let deadline = tokio::time::Instant::now() + config.delay;
        while batch.len() < config.max_batch {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(s)) => batch.push(s),
                Ok(None) | Err(_) => break,
            }
        }
        let n = batch.len();
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope.clone()),
                    spans: std::mem::take(&mut batch),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        if let Err(e) = client.export(request).await {
            tracing::warn!(
                spans = n,
                "tracing: export to {} failed: {}",
                config.endpoint,
                e.message()
            );
        }
    }
}

/// The exporter of the live configuration, made again when it changes.
#[derive(Default)]
pub struct Exporters {
    current: Mutex<Option<Arc<Exporter>>>,
}

impl Exporters {
    pub fn get(&self, config: &Arc<OtelExport>) -> Arc<Exporter> {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        match &*cur {
            Some(e) if Arc::ptr_eq(&e.config, config) || *e.config == **config => e.clone(),
            _ => {
                let e = Exporter::start(config.clone());
                *cur = Some(e.clone());
                e
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_read_as_w3c_trace_context_says() {
        let p =
            parse_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(hex(&p.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&p.span_id), "00f067aa0ba902b7");
        assert!(p.sampled);
        for bad in [
            &b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"[..],
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            b"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            b"",
        ] {
            assert_eq!(
                parse_traceparent(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // A later version may carry more fields.
        assert!(
            parse_traceparent(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra")
                .is_some()
        );
    }

    #[test]
    fn the_ratio_sampler_keeps_its_share_and_a_parent_decides_when_asked() {
        let mut export = OtelExport {
            endpoint: "http://x:4317".into(),
            service_name: "t".into(),
            sampler: Sampler::Ratio(0.25),
            parent_based: false,
            max_queue: 1,
            delay: Duration::from_secs(1),
            max_batch: 1,
        };
        let kept = (0..20_000)
            .filter(|_| sampled(&export, &fastrand::u128(..).to_be_bytes(), None))
            .count();
        assert!((4_500..5_500).contains(&kept), "{kept} of 20000 at 0.25");
        let parent = Parent {
            trace_id: [1; 16],
            span_id: [1; 8],
            sampled: true,
        };
        export.sampler = Sampler::AlwaysOff;
        assert!(!sampled(&export, &[1; 16], Some(&parent)));
        export.parent_based = true;
        assert!(sampled(&export, &[1; 16], Some(&parent)));
    }
}
