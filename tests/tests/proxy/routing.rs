//! Routing: by host and path (HTTP/1.1 and h2c), over every pod of a Service,
//! to the default backend, ExternalName Services and a Service's cluster IP;
//! 503 without endpoints and 502 from a dead pod.

use std::{collections::BTreeSet, net::SocketAddr};

use xingress_tests::{
    agent::ManifestDir,
    backend::{self, Mode},
    http1::{self, Conn},
};

use crate::common::{CLASS, cafe, ingress_yaml, one_pod_per_host, pods, ready_agent, service};

#[test]
fn cafe_routes_by_host_and_path_to_the_right_pods() {
    let cafe = cafe();
    let agent = ready_agent(&cafe.dir, &[]);
    let mut seen = BTreeSet::new();
    for _ in 0..4 {
        for (path, svc) in [
            ("/tea", "tea"),
            ("/coffee", "coffee"),
            ("/tea/green?x=1", "tea"),
        ] {
            let r = http1::get(agent.http, "cafe.example.com", path).unwrap();
            assert_eq!(r.status, 200, "{path}: {}", r.text());
            let pod = r.header("x-pod").unwrap().to_string();
            assert!(pod.starts_with(svc), "{path} answered by {pod}");
            assert_eq!(
                r.echo_field("uri").as_deref(),
                Some(path),
                "request target forwarded as received"
            );
            seen.insert(pod);
        }
    }
    assert_eq!(seen.len(), 4, "every pod answered: {seen:?}");
    assert_eq!(cafe.tea.len() + cafe.coffee.len(), 4);
    // No rule matches: 404 from the agent itself.
    for (host, path) in [
        ("cafe.example.com", "/milk"),
        ("other.example.com", "/tea"),
        ("cafe.example.com", "/teapot"),
    ] {
        let r = http1::get(agent.http, host, path).unwrap();
        assert_eq!(r.status, 404, "{host}{path}");
        assert_eq!(r.header("server"), Some("xingress"));
    }
    // Host matching ignores case, port and a trailing dot.
    let r = http1::get(agent.http, "CAFE.example.com.:80", "/coffee").unwrap();
    assert!(r.header("x-pod").unwrap().starts_with("coffee"));
}

#[test]
fn requests_on_one_keepalive_connection_spread_over_every_pod() {
    let cafe = cafe();
    let agent = ready_agent(&cafe.dir, &[]);
    let mut conn = Conn::connect(agent.http).unwrap();
    let mut seen = BTreeSet::new();
    for _ in 0..100 {
        let r = conn.get("cafe.example.com", "/tea").unwrap();
        assert_eq!(r.status, 200);
        seen.insert(r.header("x-pod").unwrap().to_string());
    }
    assert_eq!(
        seen,
        BTreeSet::from(["tea-1".to_string(), "tea-2".to_string()])
    );
}

#[test]
fn unavailable_backends_get_503_and_dead_pods_502() {
    let live = pods("live", 1);
    // A port that was free a moment ago: connecting to it is refused.
    let dead_port = xingress_tests::agent::free_port();
    let dir = ManifestDir::new();
    dir.write("class.yaml", CLASS);
    dir.write("svc.yaml", &format!(
        "{}apiVersion: v1\nkind: Service\nmetadata: {{name: empty}}\nspec: {{ports: [{{port: 80}}]}}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {{name: dead}}\nspec: {{ports: [{{port: 80}}]}}\n---\n\
         apiVersion: v1\nkind: Endpoints\nmetadata: {{name: dead}}\nsubsets: [{{addresses: [{{ip: 127.0.0.1}}], ports: [{{port: {dead_port}}}]}}]\n",
        service("live", &[&live[0]])
    ));
    let paths: String = ["live", "empty", "missing", "dead"]
        .iter()
        .map(|s| format!("      - {{path: /{s}, pathType: Prefix, backend: {{service: {{name: {s}, port: {{number: 80}}}}}}}}\n"))
        .collect();
    dir.write(
        "ing.yaml",
        &format!("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: x}}\nspec:\n  rules:\n  - host: x.test\n    http:\n      paths:\n{paths}"),
    );
    let agent = ready_agent(&dir, &[]);
    assert_eq!(
        http1::get(agent.http, "x.test", "/live").unwrap().status,
        200
    );
    assert_eq!(
        http1::get(agent.http, "x.test", "/empty").unwrap().status,
        503
    );
    assert_eq!(
        http1::get(agent.http, "x.test", "/missing").unwrap().status,
        503
    );
    assert_eq!(
        http1::get(agent.http, "x.test", "/dead").unwrap().status,
        502
    );
    assert_eq!(
        agent.metric("xingress_request_errors_total{source=\"upstream\"}"),
        Some(1.0)
    );
    assert_eq!(
        agent.metric("xingress_requests_total{class=\"5xx\"}"),
        Some(3.0)
    );
    assert_eq!(
        agent.metric("xingress_requests_total{class=\"2xx\"}"),
        Some(1.0)
    );
}

#[test]
fn default_backend_service_answers_unmatched_requests() {
    let cafe = cafe();
    let fallback = backend::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        "default-http-backend-1",
        Mode::DefaultBackend,
    )
    .unwrap();
    cafe.dir.write(
        "default.yaml",
        &service("default-http-backend", &[&fallback]),
    );
    let agent = ready_agent(
        &cafe.dir,
        &["--default-backend-service", "default/default-http-backend"],
    );
    let r = http1::get(agent.http, "unknown.example.com", "/").unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "default backend - 404\n");
    assert_eq!(r.header("x-pod"), Some("default-http-backend-1"));
    assert_eq!(
        http1::get(agent.http, "cafe.example.com", "/tea")
            .unwrap()
            .status,
        200
    );
}

#[test]
fn http2_prior_knowledge_routes_by_authority() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let cafe = cafe();
    let agent = ready_agent(&cafe.dir, &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let stream = tokio::net::TcpStream::connect(agent.http).await.unwrap();
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("h2c handshake");
        tokio::spawn(conn);
        for (path, svc) in [
            ("/tea", "tea-"),
            ("/coffee", "coffee-"),
            ("/tea/x?y=1", "tea-"),
        ] {
            // No Host header: HTTP/2 carries the host in :authority.
            let req = http::Request::get(format!("http://CAFE.example.com:80{path}"))
                .body(Empty::<bytes::Bytes>::new())
                .unwrap();
            let resp = send.send_request(req).await.expect("h2 request");
            assert_eq!(resp.status(), 200, "{path}");
            assert_eq!(resp.version(), http::Version::HTTP_2);
            let pod = resp.headers()["x-pod"].to_str().unwrap().to_string();
            assert!(pod.starts_with(svc), "{path} → {pod}");
            let body = String::from_utf8(
                resp.into_body()
                    .collect()
                    .await
                    .unwrap()
                    .to_bytes()
                    .to_vec(),
            )
            .unwrap();
            // The pod gets HTTP/1.1 with a Host header and the original target.
            assert!(body.contains("version: HTTP/1.1\n"), "{body}");
            assert!(body.contains("\nhost: CAFE.example.com:80\n"), "{body}");
            assert!(body.contains(&format!("uri: {path}\n")), "{body}");
        }
        let req = http::Request::get("http://nope.example.com/tea")
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        assert_eq!(send.send_request(req).await.unwrap().status(), 404);
    });
}

#[test]
fn external_name_services_route_only_when_enabled() {
    let pod = pods("ext", 1);
    let dir = ManifestDir::new();
    dir.write("class.yaml", CLASS);
    dir.write("ext.yaml", &format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: ext}}\nspec: {{type: ExternalName, externalName: localhost, ports: [{{port: {}}}]}}\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: ext}}\nspec: {{defaultBackend: {{service: {{name: ext, port: {{number: {}}}}}}}}}\n",
        pod[0].addr.port(),
        pod[0].addr.port()
    ));
    let off = ready_agent(&dir, &[]);
    assert_eq!(http1::get(off.http, "a.test", "/").unwrap().status, 503);
    let on = ready_agent(&dir, &["--enable-external-name-services"]);
    let r = http1::get(on.http, "a.test", "/").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-pod"), Some("ext-1"));
}

/// `service-upstream`: the Service's cluster IP and port, not its
/// endpoints (here the slice names a closed port, the cluster IP the pod).
#[test]
fn service_upstream_sends_requests_to_the_cluster_ip() {
    let (live, dir) = one_pod_per_host(&[]);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    dir.write(
        "svc2.yaml",
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: vip}}\nspec:\n  clusterIP: 127.0.0.1\n  ports: [{{name: http, port: {}}}]\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: vip-1, labels: {{kubernetes.io/service-name: vip}}}}\n\
             addressType: IPv4\nports: [{{name: http, port: {}}}]\nendpoints: [{{addresses: [\"127.0.0.1\"], conditions: {{ready: true}}}}]\n---\n{}{}",
            live[0].addr.port(),
            closed.port(),
            ingress_yaml("vip", "vip.test", "vip", "nginx.ingress.kubernetes.io/service-upstream: \"true\"")
                .replace("number: 80", &format!("number: {}", live[0].addr.port())),
            ingress_yaml("pods", "pods.test", "vip", "")
                .replace("number: 80", &format!("number: {}", live[0].addr.port())),
        ),
    );
    let agent = ready_agent(&dir, &[]);
    let r = Conn::connect(agent.http)
        .unwrap()
        .get("vip.test", "/")
        .unwrap();
    assert_eq!(
        (r.status, r.header("x-pod")),
        (200, Some("live-1")),
        "{}",
        r.text()
    );
    // Without it, the endpoints (the closed port): 502.
    let r = Conn::connect(agent.http)
        .unwrap()
        .get("pods.test", "/")
        .unwrap();
    assert_eq!(r.status, 502);
}
