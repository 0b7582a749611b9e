//! Tracing (issue 19, part 5): the ConfigMap's OpenTelemetry keys and the
//! per-Ingress annotations, checked against an OTLP gRPC receiver this test
//! starts (the spans arrive as OTLP protobuf and are decoded): span names,
//! parent ids, attributes and status, and the `traceparent` the pod gets.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value,
    trace::v1::Span,
};
use xingress_tests::{
    agent::{Agent, ManifestDir, free_port},
    backend::{self, Backend, Mode, service_yaml, service_yaml_at},
    http1::{Conn, Response},
};

/// What the receiver got: each span with its resource's service.name.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, Span)>>>);

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut got = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                    any_value::Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    got.push((service.clone(), s));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// An OTLP gRPC receiver on loopback, on its own thread.
fn receiver() -> (SocketAddr, Received) {
    let received = Received::default();
    let service = received.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(service))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
    });
    (addr, received)
}

fn pod(name: &str) -> Backend {
    backend::start(SocketAddr::from(([127, 0, 0, 1], 0)), name, Mode::Echo).unwrap()
}

fn ingress(name: &str, host: &str, svc: &str, annotations: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  annotations:\n    \
         kubernetes.io/ingress.class: xingress\n{annotations}\
         spec:\n  rules:\n  - host: {host}\n    http:\n      paths:\n      \
         - {{path: /app, pathType: Prefix, backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}}}\n---\n"
    )
}

fn get(agent: &Agent, host: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: trace-test\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    Conn::connect(agent.http)
        .unwrap()
        .raw(req.as_bytes())
        .unwrap()
}

/// A pod that sends its response head and five bytes, then the other five
/// 300 ms later, on every connection.
fn slow_pod() -> SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello");
                std::thread::sleep(Duration::from_millis(300));
                let _ = s.write_all(b"world");
            });
        }
    });
    addr
}

/// The first span received for requests to `host`, waiting up to 10 s.
fn span_of_host(received: &Received, host: &str) -> Span {
    let t = Instant::now();
    loop {
        let found = received
            .0
            .lock()
            .unwrap()
            .iter()
            .find(|(_, s)| attr(s, "server.address").as_deref() == Some(host))
            .cloned();
        if let Some(f) = found {
            return f.1;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "no span for {host}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            any_value::Value::IntValue(i) => Some(i.to_string()),
            _ => None,
        }
    })
}

/// The spans received with this trace id, waiting up to 10 s for `n`.
fn spans_of(received: &Received, trace_id: &str, n: usize) -> Vec<(String, Span)> {
    let t = Instant::now();
    loop {
        let got: Vec<(String, Span)> = received
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| hex(&s.trace_id) == trace_id)
            .cloned()
            .collect();
        if got.len() >= n || t.elapsed() > Duration::from_secs(10) {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

#[test]
fn spans_reach_an_otlp_collector_and_pods_get_our_traceparent() {
    let (collector, received) = receiver();
    let app = pod("app-1");
    let dead = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let slow = slow_pod();
    let dir = ManifestDir::new();
    dir.write(
        "all.yaml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: xingress-controller, namespace: xingress}}\ndata:\n  \
             enable-opentelemetry: \"true\"\n  otlp-collector-host: \"127.0.0.1\"\n  otlp-collector-port: \"{}\"\n  \
             otel-sampler: AlwaysOn\n  otel-schedule-delay-millis: \"100\"\n  otel-service-name: edge\n---\n{}{}{}{}{}{}{}{}",
            collector.port(),
            service_yaml("app", 80, &[&app]),
            service_yaml_at("dead", 80, &[dead]),
            service_yaml_at("slow", 80, &[slow]),
            ingress("slow", "slow.test", "slow", ""),
            ingress("traced", "traced.test", "app", ""),
            ingress(
                "trusting",
                "trusting.test",
                "app",
                "    nginx.ingress.kubernetes.io/opentelemetry-trust-incoming-span: \"true\"\n"
            ),
            ingress(
                "untraced",
                "untraced.test",
                "app",
                "    nginx.ingress.kubernetes.io/enable-opentelemetry: \"false\"\n"
            ),
            ingress("broken", "broken.test", "dead", ""),
        ),
    );
    let mut agent =
        Agent::start_local(&dir.path, &["--configmap", "xingress/xingress-controller"]).unwrap();
    agent.wait_ready().unwrap();
    let client = [
        ("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01")),
        ("tracestate", "vendor=secret".to_string()),
    ];
    let client: Vec<(&str, &str)> = client.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // Not trusted (the default): a new trace starts at the edge.
    let r = get(&agent, "traced.test", "/app/x?q=1", &client);
    assert_eq!(r.status, 200, "{}", r.text());
    let tp = r
        .echo_field("traceparent")
        .expect("the pod gets a traceparent");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!((parts.len(), parts[0], parts[3]), (4, "00", "01"), "{tp}");
    assert_ne!(parts[1], CLIENT_TRACE, "the client's trace is not trusted");
    assert_eq!(r.echo_field("tracestate"), None, "nor its tracestate");
    let spans = spans_of(&received, parts[1], 1);
    assert_eq!(spans.len(), 1, "one span for the request");
    let (service, span) = &spans[0];
    assert_eq!(service, "edge");
    assert_eq!(hex(&span.span_id), parts[2], "the pod's parent is our span");
    assert!(span.parent_span_id.is_empty(), "a root span");
    assert_eq!(span.name, "GET /app");
    assert_eq!(span.kind, 2, "SERVER");
    assert!(span.end_time_unix_nano >= span.start_time_unix_nano && span.start_time_unix_nano > 0);
    for (key, want) in [
        ("http.request.method", "GET"),
        ("url.path", "/app/x"),
        ("url.scheme", "http"),
        ("server.address", "traced.test"),
        ("http.route", "/app"),
        ("http.response.status_code", "200"),
        ("client.address", "127.0.0.1"),
        ("user_agent.original", "trace-test"),
        ("k8s.namespace.name", "default"),
        ("xingress.ingress", "traced"),
        ("xingress.service", "app"),
        ("network.peer.address", &app.addr.to_string()),
    ] {
        assert_eq!(attr(span, key).as_deref(), Some(want), "{key}");
    }

    // Trusted: our span is the client's span's child, in its trace.
    let r = get(&agent, "trusting.test", "/app", &client);
    let tp = r.echo_field("traceparent").unwrap();
    assert!(tp.starts_with(&format!("00-{CLIENT_TRACE}-")), "{tp}");
    assert!(!tp.contains(CLIENT_SPAN), "a new span id per hop: {tp}");
    assert_eq!(r.echo_field("tracestate").as_deref(), Some("vendor=secret"));
    let spans = spans_of(&received, CLIENT_TRACE, 1);
    assert_eq!(spans.len(), 1);
    assert_eq!(hex(&spans[0].1.parent_span_id), CLIENT_SPAN);

    // A pod that cannot be reached: the span says so.
    let r = get(&agent, "broken.test", "/app", &[]);
    assert_eq!(r.status, 502);
    let failed = span_of_host(&received, "broken.test");
    assert_eq!(
        attr(&failed, "http.response.status_code").as_deref(),
        Some("502")
    );
    assert_eq!(
        failed.status.as_ref().map(|s| s.code),
        Some(2),
        "STATUS_CODE_ERROR"
    );

    // A body that takes 300 ms after its head: the span covers it.
    let r = get(&agent, "slow.test", "/app", &[]);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"helloworld"[..]));
    let slow_span = span_of_host(&received, "slow.test");
    let took = slow_span.end_time_unix_nano - slow_span.start_time_unix_nano;
    assert!(
        took >= 300_000_000,
        "the span ended {took} ns after it began"
    );
    assert_eq!(
        attr(&slow_span, "http.response.body.size").as_deref(),
        Some("10")
    );

    // Off for one Ingress: the client's headers pass as sent, no span.
    let before = received.0.lock().unwrap().len();
    let r = get(&agent, "untraced.test", "/app", &client);
    assert_eq!(
        r.echo_field("traceparent"),
        Some(format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(received.0.lock().unwrap().len(), before, "no span");
}

#[test]
fn the_sampler_decides_what_is_exported_and_traceparent_always_goes() {
    let (collector, received) = receiver();
    let app = pod("app-1");
    let dir = ManifestDir::new();
    // ingress-nginx's default sampler: AlwaysOff.
    dir.write(
        "all.yaml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: xingress-controller, namespace: xingress}}\ndata:\n  \
             enable-opentelemetry: \"true\"\n  otlp-collector-host: \"127.0.0.1\"\n  otlp-collector-port: \"{}\"\n  \
             otel-schedule-delay-millis: \"100\"\n---\n{}{}",
            collector.port(),
            service_yaml("app", 80, &[&app]),
            ingress("traced", "traced.test", "app", ""),
        ),
    );
    let mut agent =
        Agent::start_local(&dir.path, &["--configmap", "xingress/xingress-controller"]).unwrap();
    agent.wait_ready().unwrap();
    for _ in 0..5 {
        let r = get(&agent, "traced.test", "/app", &[]);
        let tp = r.echo_field("traceparent").unwrap();
        assert!(tp.ends_with("-00"), "not sampled: {tp}");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        received.0.lock().unwrap().is_empty(),
        "AlwaysOff exports nothing"
    );
}
