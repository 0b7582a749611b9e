//! The L7 path end to end: `xingress run --manifests` on loopback, in-process
//! echo backends on ephemeral ports standing in for pods.

use std::{collections::BTreeSet, net::SocketAddr, time::Duration};

use xingress_tests::{
    agent::{Agent, ManifestDir},
    backend::{self, Backend, Mode},
    http1::{self, Conn},
};

const CLASS: &str = include_str!("../examples/cafe/ingressclass.yaml");
const CAFE_INGRESS: &str = include_str!("../examples/cafe/cafe-ingress.yaml");

fn pods(prefix: &str, n: usize) -> Vec<Backend> {
    (1..=n)
        .map(|i| {
            backend::start(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                &format!("{prefix}-{i}"),
                Mode::Echo,
            )
            .expect("backend")
        })
        .collect()
}

fn service(name: &str, pods: &[&Backend]) -> String {
    backend::service_yaml(name, 80, pods)
}

struct Cafe {
    dir: ManifestDir,
    tea: Vec<Backend>,
    coffee: Vec<Backend>,
}

fn cafe() -> Cafe {
    let tea = pods("tea", 2);
    let coffee = pods("coffee", 2);
    let dir = ManifestDir::new();
    dir.write("ingressclass.yaml", CLASS);
    // These tests are about plain-HTTP routing: opt out of the HTTPS redirect
    // the cafe Ingress's TLS section would otherwise cause (tls.rs covers it).
    let ingress = CAFE_INGRESS.replace(
        "  name: cafe-ingress\n",
        "  name: cafe-ingress\n  annotations: {nginx.ingress.kubernetes.io/ssl-redirect: \"false\"}\n",
    );
    assert_ne!(ingress, CAFE_INGRESS);
    dir.write("cafe-ingress.yaml", &ingress);
    dir.write(
        "tea.yaml",
        &service("tea-svc", &tea.iter().collect::<Vec<_>>()),
    );
    dir.write(
        "coffee.yaml",
        &service("coffee-svc", &coffee.iter().collect::<Vec<_>>()),
    );
    Cafe { dir, tea, coffee }
}

fn ready_agent(dir: &ManifestDir, extra: &[&str]) -> Agent {
    let mut agent = Agent::start_local(&dir.path, extra).expect("spawn agent");
    agent.wait_ready().expect("agent ready");
    agent
}

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
fn forwarded_headers_are_added_and_the_request_is_otherwise_unchanged() {
    let cafe = cafe();
    let agent = ready_agent(&cafe.dir, &[]);
    let mut conn = Conn::connect(agent.http).unwrap();
    let body = "hello, tea";
    let r = conn
        .raw(format!(
            "POST /tea/order?cup=2&sugar HTTP/1.1\r\nHost: cafe.example.com\r\nUser-Agent: curl/8.0\r\nX-Forwarded-For: 192.0.2.7\r\n\
             Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: keep-alive, x-drop-me\r\nX-Drop-Me: 1\r\n\r\n{body}",
            body.len()
        ).as_bytes())
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.echo_field("method").as_deref(), Some("POST"));
    assert_eq!(
        r.echo_field("uri").as_deref(),
        Some("/tea/order?cup=2&sugar")
    );
    assert_eq!(r.echo_field("version").as_deref(), Some("HTTP/1.1"));
    assert_eq!(r.echo_field("user-agent").as_deref(), Some("curl/8.0"));
    assert_eq!(r.echo_field("host").as_deref(), Some("cafe.example.com"));
    // ingress-nginx's default: the client's own list is replaced.
    assert_eq!(
        r.echo_field("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(r.echo_field("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(r.echo_field("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        r.echo_field("x-forwarded-host").as_deref(),
        Some("cafe.example.com")
    );
    assert_eq!(
        r.echo_field("x-forwarded-port"),
        Some(agent.http.port().to_string())
    );
    assert_eq!(r.echo_field("x-request-id").map(|v| v.len()), Some(32));
    assert_eq!(r.echo_field("content-length").as_deref(), Some("10"));
    assert_eq!(
        r.echo_field("x-drop-me"),
        None,
        "headers named in Connection are hop-by-hop"
    );
    assert!(r.text().ends_with(body), "body forwarded unchanged");
    assert_eq!(r.header("server"), Some("xingress"));

    // A client-supplied request id is kept; a chunked body keeps its framing.
    let r = conn
        .raw(b"POST /coffee HTTP/1.1\r\nHost: cafe.example.com\r\nX-Request-ID: abc-123\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.echo_field("x-request-id").as_deref(), Some("abc-123"));
    assert_eq!(
        r.echo_field("transfer-encoding").as_deref(),
        Some("chunked")
    );
    assert!(r.text().ends_with("hello world"));
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
fn manifest_changes_apply_without_restart_or_dropping_connections() {
    let cafe = cafe();
    let agent = ready_agent(&cafe.dir, &[]);
    let mut conn = Conn::connect(agent.http).unwrap();
    assert_eq!(conn.get("cafe.example.com", "/tea").unwrap().status, 200);
    assert_eq!(conn.get("juice.example.com", "/").unwrap().status, 404);
    let generation = agent.metric("xingress_snapshot_generation").unwrap();

    // A new Ingress appears, and a broken file lands next to it.
    cafe.dir.write("juice.yaml", "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: juice}\nspec:\n  rules:\n  - host: juice.example.com\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: coffee-svc, port: {number: 80}}}}\n");
    cafe.dir.write("broken.yaml", "kind: [this is not yaml\n");
    agent.eventually("the new route", || {
        conn.get("juice.example.com", "/").unwrap().status == 200
    });
    let r = conn.get("juice.example.com", "/").unwrap();
    assert!(r.header("x-pod").unwrap().starts_with("coffee"));
    assert!(agent.metric("xingress_snapshot_generation").unwrap() > generation);
    // The agent says how long the reload took, by phase.
    for phase in ["read", "build"] {
        let s = agent
            .metric(&format!(
                "xingress_config_reload_seconds{{phase=\"{phase}\"}}"
            ))
            .unwrap_or_else(|| panic!("no {phase} time on /metrics"));
        assert!(s > 0.0 && s < 10.0, "{phase}: {s} s");
    }
    // The same keep-alive connection still serves the old routes.
    assert_eq!(conn.get("cafe.example.com", "/tea").unwrap().status, 200);
    assert!(agent.metric("xingress_config_warnings").unwrap() >= 1.0);
    assert!(
        agent.logs().contains("broken.yaml"),
        "the bad file is named in the log"
    );
}

#[test]
fn readiness_health_and_graceful_exit() {
    let cafe = cafe();
    let mut agent = ready_agent(&cafe.dir, &[]);
    assert_eq!(
        http1::get(agent.admin, "localhost", "/healthz")
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        http1::get(agent.admin, "localhost", "/readyz")
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        agent.metric("xingress_xdp_attached"),
        Some(0.0),
        "XDP was not requested"
    );
    let status = agent.stop(Duration::from_secs(15)).unwrap();
    assert!(
        status.success(),
        "exit on SIGTERM: {status}\n{}",
        agent.logs()
    );
    assert!(agent.logs().contains("shutting down"));
}

#[test]
fn invalid_flags_exit_64_with_a_message() {
    for (flags, message) in [
        (
            &["--client-header-timeout", "0"][..],
            "clients need at least a second",
        ),
        (&["--xdp-strict-hosts"], "needs --xdp-iface"),
        (
            &["--xdp-iface", "eth0", "--xdp-deny-cidr", "10.0.0.0/99"],
            "prefix length",
        ),
    ] {
        let out = std::process::Command::new(xingress_tests::agent::xingress_bin())
            .args(["run", "--manifests", "/"])
            .args(flags)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{flags:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{flags:?}: {stderr}");
    }
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
fn requests_are_counted_per_ingress_host() {
    let cafe = cafe();
    let agent = ready_agent(&cafe.dir, &[]);
    for _ in 0..3 {
        assert_eq!(
            http1::get(agent.http, "cafe.example.com", "/tea")
                .unwrap()
                .status,
            200
        );
    }
    assert_eq!(
        http1::get(agent.http, "cafe.example.com", "/none")
            .unwrap()
            .status,
        404
    );
    assert_eq!(
        http1::get(agent.http, "evil\"host.test", "/")
            .unwrap()
            .status,
        404
    );
    let get = |s: &str| agent.metric(s).unwrap_or(-1.0);
    assert_eq!(
        get("xingress_requests_total{class=\"2xx\",host=\"cafe.example.com\"}"),
        3.0
    );
    // No rule matched: counted under "*", never under a client-chosen host.
    assert_eq!(
        get("xingress_requests_total{class=\"4xx\",host=\"*\"}"),
        2.0
    );
    let text = http1::get(agent.admin, "localhost", "/metrics")
        .unwrap()
        .text();
    assert!(
        !text.contains("evil"),
        "client Host values never become labels"
    );
    assert_eq!(get("xingress_upstream_response_seconds_count"), 3.0);
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

/// An Ingress `name` with `annotations` (flow-style YAML map entries)
/// routing `host` `/` to Service `svc`.
fn ingress_yaml(name: &str, host: &str, svc: &str, annotations: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  annotations: {{{annotations}}}\n\
         spec:\n  rules:\n  - host: {host}\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}}}\n---\n"
    )
}

/// One echo pod behind Service `live`, and per `(name, annotations)` an
/// Ingress routing `name.test` to it with those annotations.
fn one_pod_per_host(ingresses: &[(&str, &str)]) -> (Vec<Backend>, ManifestDir) {
    let live = pods("live", 1);
    let dir = ManifestDir::new();
    dir.write("class.yaml", CLASS);
    dir.write("svc.yaml", &service("live", &[&live[0]]));
    let yaml: String = ingresses
        .iter()
        .map(|(name, annotations)| ingress_yaml(name, &format!("{name}.test"), "live", annotations))
        .collect();
    dir.write("ing.yaml", &yaml);
    (live, dir)
}

/// One request on a new connection: `METHOD TARGET HTTP/VERSION`, Host,
/// the `extra` header lines (each ending in CRLF), Connection: close.
fn send(
    agent: &Agent,
    method: &str,
    host: &str,
    target: &str,
    version: &str,
    extra: &str,
) -> http1::Response {
    http1::Conn::connect(agent.http)
        .unwrap()
        .raw(
            format!("{method} {target} HTTP/{version}\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap()
}

#[test]
fn source_ranges_and_unimplemented_access_rules_are_enforced() {
    let (_live, dir) = one_pod_per_host(&[
        (
            "lists",
            "nginx.ingress.kubernetes.io/allowlist-source-range: \"127.0.0.0/24\", \
             nginx.ingress.kubernetes.io/denylist-source-range: \"127.0.0.3/32\"",
        ),
        (
            "auth",
            "nginx.ingress.kubernetes.io/auth-tls-match-cn: \"CN=admin\"",
        ),
        (
            "baddeny",
            "xingress.dev/denylist-source-range: \"127.0.0.3/32, 10.0.0.0/33\"",
        ),
        (
            "ignored",
            "nginx.ingress.kubernetes.io/proxy-read-timeout: \"30\"",
        ),
    ]);
    let agent = ready_agent(&dir, &[]);
    let status = |from: [u8; 4], host: &str| {
        http1::Conn::connect_from(from.into(), agent.http)
            .unwrap()
            .get(host, "/")
            .unwrap()
            .status
    };
    assert_eq!(status([127, 0, 0, 2], "lists.test"), 200);
    // Denied inside the allow list, and outside the allow list.
    assert_eq!(status([127, 0, 0, 3], "lists.test"), 403);
    assert_eq!(status([127, 0, 1, 5], "lists.test"), 403);
    // An access rule xingress does not implement: refused, never served open.
    assert_eq!(status([127, 0, 0, 2], "auth.test"), 503);
    // A deny list with an entry that does not parse cannot be enforced.
    assert_eq!(status([127, 0, 0, 2], "baddeny.test"), 503);
    // An annotation that restricts nothing is ignored: served.
    assert_eq!(status([127, 0, 0, 2], "ignored.test"), 200);
}

#[test]
fn proxy_read_timeout_bounds_the_wait_for_a_slow_pod_per_ingress() {
    let (_live, dir) = one_pod_per_host(&[
        (
            "slow",
            "nginx.ingress.kubernetes.io/proxy-read-timeout: \"1\"",
        ),
        ("patient", ""),
    ]);
    let agent = ready_agent(&dir, &[]);
    // The HTTP/1.1 fast path.
    let started = std::time::Instant::now();
    let r = http1::get(agent.http, "slow.test", "/delay/1500").unwrap();
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(started.elapsed() < Duration::from_millis(1400));
    assert_eq!(
        http1::get(agent.http, "slow.test", "/delay/200")
            .unwrap()
            .status,
        200
    );
    // HTTP/1.0 is served by the hyper path.
    let r = http1::Conn::connect(agent.http)
        .unwrap()
        .raw(b"GET /delay/1500 HTTP/1.0\r\nHost: slow.test\r\n\r\n")
        .unwrap();
    assert_eq!(r.status, 504, "{}", r.text());
    // A pod that stalls in the body: the response is cut after the read
    // timeout, on the fast path (HTTP/1.1) and hyper's (HTTP/1.0).
    for version in ["1.1", "1.0"] {
        let started = std::time::Instant::now();
        let mut conn = std::net::TcpStream::connect(agent.http).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        std::io::Write::write_all(
            &mut conn,
            format!("GET /drip/2500 HTTP/{version}\r\nHost: slow.test\r\n\r\n").as_bytes(),
        )
        .unwrap();
        let mut got = Vec::new();
        let _ = std::io::Read::read_to_end(&mut conn, &mut got);
        let got = String::from_utf8_lossy(&got);
        assert!(got.contains("first"), "HTTP/{version}: {got}");
        assert!(!got.contains("last"), "HTTP/{version}: {got}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_millis(2000),
            "HTTP/{version}: {took:?}"
        );
    }
    // Without the annotation: the default (60 s).
    assert_eq!(
        http1::get(agent.http, "patient.test", "/delay/1500")
            .unwrap()
            .status,
        200
    );
}

#[test]
fn redirect_annotations_answer_without_the_pod() {
    let p = "nginx.ingress.kubernetes.io/";
    let (_live, dir) = one_pod_per_host(&[
        (
            "moved",
            &format!("{p}permanent-redirect: https://new.example/landing"),
        ),
        (
            "moved308",
            &format!(
                "{p}permanent-redirect: https://new.example/, {p}permanent-redirect-code: \"308\""
            ),
        ),
        (
            "away",
            &format!("{p}temporal-redirect: http://elsewhere.example/"),
        ),
        ("rooted", &format!("{p}app-root: /app")),
        ("forced", &format!("{p}force-ssl-redirect: \"true\"")),
    ]);
    let agent = ready_agent(&dir, &[]);
    let check = |host: &str, path: &str, status: u16, location: Option<&str>| {
        // The fast path (HTTP/1.1) and hyper's (HTTP/1.0) answer alike.
        for version in ["1.1", "1.0"] {
            let r = send(&agent, "GET", host, path, version, "");
            assert_eq!(
                r.status,
                status,
                "{host}{path} HTTP/{version}: {}",
                r.text()
            );
            assert_eq!(
                r.header("location"),
                location,
                "{host}{path} HTTP/{version}"
            );
        }
    };
    check(
        "moved.test",
        "/any/path?q=1",
        301,
        Some("https://new.example/landing"),
    );
    check("moved308.test", "/", 308, Some("https://new.example/"));
    check("away.test", "/x", 302, Some("http://elsewhere.example/"));
    // app-root: only `/`, on the host as the client wrote it.
    check(
        "rooted.test:8080",
        "/",
        302,
        Some("http://rooted.test:8080/app"),
    );
    check("rooted.test", "/app", 200, None);
    check("rooted.test", "/other", 200, None);
    // force-ssl-redirect: to HTTPS although the Ingress has no TLS section.
    let port = agent.https.port();
    check(
        "forced.test",
        "/a?b",
        308,
        Some(&*format!("https://forced.test:{port}/a?b")),
    );
}

#[test]
fn rewrite_target_sends_the_pod_the_rewritten_target() {
    let live = pods("live", 1);
    let dir = ManifestDir::new();
    dir.write("class.yaml", CLASS);
    dir.write("svc.yaml", &service("live", &[&live[0]]));
    dir.write(
        "ing.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: rw\n  annotations:\n    \
         nginx.ingress.kubernetes.io/rewrite-target: /$2\n\
         spec:\n  rules:\n  - host: rw.test\n    http:\n      paths:\n      \
         - {path: \"/something(/|$)(.*)\", pathType: ImplementationSpecific, backend: {service: {name: live, port: {number: 80}}}}\n",
    );
    let agent = ready_agent(&dir, &[]);
    for version in ["1.1", "1.0"] {
        for (path, want) in [
            ("/something", "/"),
            ("/something/", "/"),
            ("/something/new?x=1", "/new?x=1"),
            ("/Something/a/b", "/a/b"),
        ] {
            let r = send(&agent, "GET", "rw.test", path, version, "");
            assert_eq!(r.status, 200, "{path} HTTP/{version}: {}", r.text());
            assert_eq!(
                r.echo_field("uri").as_deref(),
                Some(want),
                "{path} HTTP/{version}"
            );
        }
    }
    // Outside the pattern: no rule.
    assert_eq!(
        http1::get(agent.http, "rw.test", "/somethingelse")
            .unwrap()
            .status,
        404
    );
}

#[test]
fn upstream_vhost_and_forwarded_prefix_reach_the_pod() {
    let p = "nginx.ingress.kubernetes.io/";
    let (_live, dir) = one_pod_per_host(&[
        (
            "vhost",
            &format!("{p}upstream-vhost: internal.svc.local, {p}x-forwarded-prefix: /api"),
        ),
        // Not a host: ignored with a warning, the Ingress still served.
        ("badvhost", &format!("{p}upstream-vhost: \"a/b\"")),
    ]);
    let agent = ready_agent(&dir, &[]);
    for version in ["1.1", "1.0"] {
        let r = send(&agent, "GET", "vhost.test", "/x", version, "");
        assert_eq!(r.status, 200, "HTTP/{version}: {}", r.text());
        assert_eq!(r.echo_field("host").as_deref(), Some("internal.svc.local"));
        assert_eq!(
            r.echo_field("x-forwarded-host").as_deref(),
            Some("vhost.test")
        );
        assert_eq!(r.echo_field("x-forwarded-prefix").as_deref(), Some("/api"));
    }
    let r = http1::get(agent.http, "badvhost.test", "/").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.echo_field("host").as_deref(), Some("badvhost.test"));
}

#[test]
fn cors_preflights_are_answered_and_responses_carry_the_headers() {
    let p = "nginx.ingress.kubernetes.io/";
    let (_live, dir) = one_pod_per_host(&[
        ("open", &format!("{p}enable-cors: \"true\"")),
        (
            "strict",
            &format!(
                "{p}enable-cors: \"true\", {p}cors-allow-origin: \"https://app.example, https://*.corp.example:8443\", \
                 {p}cors-allow-credentials: \"false\", {p}cors-expose-headers: X-Total, {p}cors-max-age: \"600\""
            ),
        ),
    ]);
    let agent = ready_agent(&dir, &[]);
    let ask = |method: &str, host: &str, origin: Option<&str>| {
        let origin = origin
            .map(|o| format!("Origin: {o}\r\n"))
            .unwrap_or_default();
        send(&agent, method, host, "/x", "1.1", &origin)
    };
    // Any origin: the preflight is answered here with ingress-nginx's defaults.
    let r = ask("OPTIONS", "open.test", Some("https://x.example"));
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("GET, PUT, POST, DELETE, PATCH, OPTIONS")
    );
    assert_eq!(r.header("access-control-max-age"), Some("1728000"));
    assert!(r.header("access-control-allow-headers").is_some());
    let r = ask("GET", "open.test", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));

    // Listed origins, an exact one and a one-label wildcard with a port.
    for origin in ["https://app.example", "https://a.corp.example:8443"] {
        let r = ask("OPTIONS", "strict.test", Some(origin));
        assert_eq!(r.status, 204, "{origin}: {}", r.text());
        assert_eq!(r.header("access-control-allow-origin"), Some(origin));
        assert_eq!(r.header("vary"), Some("Origin"));
        assert_eq!(r.header("access-control-allow-credentials"), None);
        assert_eq!(r.header("access-control-max-age"), Some("600"));
    }
    // Other origins: the pod answers, without Access-Control headers.
    for origin in [
        "https://a.b.corp.example:8443",
        "https://evil.example",
        "http://app.example",
    ] {
        let r = ask("OPTIONS", "strict.test", Some(origin));
        assert_eq!(r.status, 200, "{origin}: {}", r.text());
        assert_eq!(r.echo_field("method").as_deref(), Some("OPTIONS"));
        assert_eq!(r.header("access-control-allow-origin"), None, "{origin}");
    }
    let r = ask("GET", "strict.test", Some("https://app.example"));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(r.header("access-control-expose-headers"), Some("X-Total"));
    let r = ask("GET", "strict.test", None);
    assert_eq!(r.header("access-control-allow-origin"), None);
}

#[test]
fn cookie_affinity_keeps_a_client_on_one_pod() {
    let sticky = pods("sticky", 3);
    let dir = ManifestDir::new();
    dir.write("class.yaml", CLASS);
    dir.write(
        "svc.yaml",
        &service("sticky", &sticky.iter().collect::<Vec<_>>()),
    );
    let p = "nginx.ingress.kubernetes.io/";
    let ingress = |name: &str, annotations: &str| {
        ingress_yaml(name, &format!("{name}.test"), "sticky", annotations)
    };
    dir.write(
        "ing.yaml",
        &[
            ingress("aff", &format!("{p}affinity: cookie")),
            ingress(
                "custom",
                &format!(
                    "{p}affinity: cookie, {p}session-cookie-name: route, {p}session-cookie-max-age: \"3600\", \
                     {p}session-cookie-samesite: None"
                ),
            ),
        ]
        .concat(),
    );
    let agent = ready_agent(&dir, &[]);
    let get = |host: &str, cookie: Option<&str>| {
        let cookie = cookie
            .map(|c| format!("Cookie: {c}\r\n"))
            .unwrap_or_default();
        send(&agent, "GET", host, "/", "1.1", &cookie)
    };
    let first = get("aff.test", None);
    assert_eq!(first.status, 200, "{}", first.text());
    let set = first.header("set-cookie").expect("Set-Cookie").to_string();
    assert!(set.starts_with("INGRESSCOOKIE="), "{set}");
    assert!(set.ends_with("; Path=/; HttpOnly"), "{set}");
    let value = set.split(';').next().unwrap().to_string();
    let pod = first.header("x-pod").unwrap().to_string();
    // Every later request with the cookie, among other cookies: the same
    // pod, and no new cookie.
    for _ in 0..6 {
        let r = get("aff.test", Some(&format!("a=1; {value}; b=2")));
        assert_eq!(r.header("x-pod"), Some(pod.as_str()));
        assert_eq!(r.header("set-cookie"), None);
    }
    // Without it, requests spread; a value naming no pod gets a new cookie.
    let pods_seen: std::collections::BTreeSet<String> = (0..6)
        .map(|_| get("aff.test", None).header("x-pod").unwrap().to_string())
        .collect();
    assert_eq!(pods_seen.len(), 3, "{pods_seen:?}");
    let r = get("aff.test", Some("INGRESSCOOKIE=0123456789abcdef"));
    assert!(r.header("set-cookie").is_some());
    // Name and attributes from the annotations.
    let set = get("custom.test", None)
        .header("set-cookie")
        .unwrap()
        .to_string();
    assert!(set.starts_with("route="), "{set}");
    assert!(
        set.ends_with("; Path=/; Max-Age=3600; SameSite=None; Secure; HttpOnly"),
        "{set}"
    );
}

#[test]
fn a_canary_ingress_takes_its_share_and_what_its_header_or_cookie_asks() {
    let stable = pods("stable", 1);
    let canary = pods("canary", 1);
    let dir = ManifestDir::new();
    dir.write("class.yaml", CLASS);
    dir.write(
        "svc.yaml",
        &format!(
            "{}{}",
            service("stable", &[&stable[0]]),
            service("canary", &[&canary[0]])
        ),
    );
    let p = "nginx.ingress.kubernetes.io/";
    let ingress =
        |name: &str, svc: &str, annotations: &str| ingress_yaml(name, "c.test", svc, annotations);
    dir.write(
        "ing.yaml",
        &[
            ingress("main", "stable", ""),
            ingress(
                "new",
                "canary",
                &format!(
                    "{p}canary: \"true\", {p}canary-weight: \"25\", {p}canary-by-header: X-Canary, {p}canary-by-cookie: canary"
                ),
            ),
        ]
        .concat(),
    );
    let agent = ready_agent(&dir, &[]);
    let pod = |extra: &str| {
        let r = send(&agent, "GET", "c.test", "/", "1.1", extra);
        assert_eq!(r.status, 200, "{}", r.text());
        r.header("x-pod")
            .unwrap()
            .split('-')
            .next()
            .unwrap()
            .to_string()
    };
    // 25 of 100: every 4th request.
    let picks: Vec<String> = (0..8).map(|_| pod("")).collect();
    assert_eq!(
        picks.iter().filter(|p| *p == "canary").count(),
        2,
        "{picks:?}"
    );
    // The header decides first, then the cookie; other values fall through.
    for _ in 0..4 {
        assert_eq!(pod("X-Canary: always\r\n"), "canary");
        assert_eq!(
            pod("X-Canary: never\r\nCookie: canary=always\r\n"),
            "stable"
        );
        assert_eq!(pod("Cookie: canary=always\r\n"), "canary");
        assert_eq!(pod("X-Canary: maybe\r\nCookie: canary=never\r\n"), "stable");
    }
}

#[test]
fn a_request_handed_to_hyper_is_counted_once() {
    // One token per source: a second count of the same request is a 503.
    let p = "nginx.ingress.kubernetes.io/";
    let limit = format!("{p}limit-rps: \"1\", {p}limit-burst-multiplier: \"1\"");
    let (_live, dir) = one_pod_per_host(&[
        // upstream-vhost takes hyper's path.
        ("handed", &format!("{limit}, {p}upstream-vhost: inner.svc")),
        ("fast", &limit),
    ]);
    let agent = ready_agent(&dir, &[]);
    for host in ["handed.test", "fast.test"] {
        let r = send(&agent, "GET", host, "/", "1.1", "");
        assert_eq!(r.status, 200, "{host}: {}", r.text());
        // The limit does bite: the bucket is now empty.
        assert_eq!(
            send(&agent, "GET", host, "/", "1.1", "").status,
            503,
            "{host}"
        );
    }
}

/// An Opaque Secret `users` with an htpasswd file: alice's password is
/// "p@ss word" (Apache MD5), erin's "secret" (SHA-512 crypt); both hashes
/// were written by `openssl passwd`.
const HTPASSWD: &str = "apiVersion: v1\nkind: Secret\nmetadata: {name: users}\ntype: Opaque\nstringData:\n  auth: |\n    \
    alice:$apr1$sAlT1234$oxRisveopu06NEn52YXjC.\n    \
    erin:$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1\n";

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Authorization: Basic {token}\r\n")
}

#[test]
fn basic_auth_admits_the_secrets_users_and_challenges_everyone_else() {
    let p = "nginx.ingress.kubernetes.io/";
    let (_live, dir) = one_pod_per_host(&[
        (
            "private",
            &format!("{p}auth-type: basic, {p}auth-secret: users, {p}auth-realm: \"Staff only\""),
        ),
        ("public", ""),
    ]);
    dir.write("users.yaml", HTPASSWD);
    let agent = ready_agent(&dir, &[]);
    let ask = |host: &str, extra: &str| send(&agent, "GET", host, "/x", "1.1", extra);

    for (user, password) in [("alice", "p@ss word"), ("erin", "secret")] {
        let r = ask("private.test", &basic(user, password));
        assert_eq!(r.status, 200, "{user}: {}", r.text());
        // The pod sees the credentials, as behind ingress-nginx.
        assert_eq!(
            r.echo_field("authorization"),
            Some(
                basic(user, password)["Authorization: ".len()..]
                    .trim_end()
                    .to_string()
            )
        );
    }
    for extra in [
        String::new(),
        basic("alice", "wrong"),
        basic("mallory", "p@ss word"),
        "Authorization: Bearer abc\r\n".to_string(),
    ] {
        let r = ask("private.test", &extra);
        assert_eq!(r.status, 401, "{extra:?}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Basic realm=\"Staff only\"")
        );
        assert_eq!(r.text(), "401 authorization required\n");
    }
    // HTTP/1.0 and keep-alive requests are checked each time.
    let r = send(&agent, "GET", "private.test", "/", "1.0", "");
    assert_eq!(r.status, 401);
    let mut conn = http1::Conn::connect(agent.http).unwrap();
    let authed = conn
        .raw(
            format!(
                "GET / HTTP/1.1\r\nHost: private.test\r\n{}\r\n",
                basic("alice", "p@ss word")
            )
            .as_bytes(),
        )
        .unwrap();
    assert_eq!(authed.status, 200);
    let again = conn
        .raw(b"GET / HTTP/1.1\r\nHost: private.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(again.status, 401);
    // Other Ingresses are not touched.
    assert_eq!(ask("public.test", "").status, 200);
    // HTTP/2 (hyper's path) checks the same way.
    assert_eq!(
        h2_statuses(
            agent.http,
            "private.test",
            &["", &basic("erin", "secret"), &basic("erin", "x")]
        ),
        [
            (401, Some("Basic realm=\"Staff only\"".to_string())),
            (200, None),
            (401, Some("Basic realm=\"Staff only\"".to_string()))
        ]
    );

    // A catch-all Ingress (only a defaultBackend) keeps its auth there.
    dir.write(
        "catchall.yaml",
        &format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: catch-all\n  annotations:\n    \
             {p}auth-type: basic\n    {p}auth-secret: users\nspec:\n  \
             defaultBackend: {{service: {{name: live, port: {{number: 80}}}}}}\n"
        ),
    );
    agent.eventually("the catch-all Ingress", || {
        ask("elsewhere.test", "").status == 401
    });
    assert_eq!(ask("elsewhere.test", &basic("erin", "secret")).status, 200);
    assert_eq!(ask("public.test", "").status, 200);
    // A changed Secret applies without a restart: alice's old password stops working.
    dir.replace(
        "users.yaml",
        &HTPASSWD.replace(
            "alice:$apr1$sAlT1234$oxRisveopu06NEn52YXjC.",
            "alice:{PLAIN}new one",
        ),
    );
    agent.eventually("the new htpasswd file", || {
        ask("private.test", &basic("alice", "new one")).status == 200
    });
    assert_eq!(
        ask("private.test", &basic("alice", "p@ss word")).status,
        401
    );
    // A deleted Secret: the paths refuse (503), never served open.
    dir.remove("users.yaml");
    agent.eventually("503 without the Secret", || {
        ask("private.test", &basic("alice", "new one")).status == 503
    });
    assert_eq!(ask("public.test", "").status, 200);
}

/// Status and WWW-Authenticate of one h2c request per `extra` header line
/// (`Name: value\r\n`, or empty), all on one HTTP/2 connection.
fn h2_statuses(
    addr: std::net::SocketAddr,
    host: &str,
    extra: &[&str],
) -> Vec<(u16, Option<String>)> {
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("h2c handshake");
        tokio::spawn(conn);
        let mut out = Vec::new();
        for line in extra {
            let mut req = http::Request::get(format!("http://{host}/"));
            if let Some((name, value)) = line.trim_end().split_once(": ") {
                req = req.header(name, value);
            }
            let resp = send
                .send_request(req.body(Empty::<bytes::Bytes>::new()).unwrap())
                .await
                .expect("h2 request");
            assert_eq!(resp.version(), http::Version::HTTP_2);
            out.push((
                resp.status().as_u16(),
                resp.headers()
                    .get("www-authenticate")
                    .map(|v| v.to_str().unwrap().to_string()),
            ));
        }
        out
    })
}

/// A small auth service on loopback: by the request's Authorization,
/// `Bearer good` → 200 with X-Auth-Request-User: alice, `Bearer banned` →
/// 403, `Bearer broken` → 502, anything else → 401 with a challenge. It
/// keeps every request head it got.
struct AuthService {
    addr: std::net::SocketAddr,
    heads: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl AuthService {
    fn start() -> Self {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = heads.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                let lower = head.to_ascii_lowercase();
                let reply = if lower.contains("\r\nauthorization: bearer good\r\n") {
                    "200 OK\r\nX-Auth-Request-User: alice\r\nX-Other: not copied"
                } else if lower.contains("\r\nauthorization: bearer banned\r\n") {
                    "403 Forbidden"
                } else if lower.contains("\r\nauthorization: bearer broken\r\n") {
                    "502 Bad Gateway"
                } else {
                    "401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"auth\""
                };
                seen.lock().unwrap().push(head);
                let _ = write!(
                    conn,
                    "HTTP/1.1 {reply}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Self { addr, heads }
    }

    fn last_head(&self) -> String {
        self.heads
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }
}

#[test]
fn auth_url_asks_the_auth_service_before_the_pod() {
    let auth = AuthService::start();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let p = "nginx.ingress.kubernetes.io/";
    let (_live, dir) = one_pod_per_host(&[
        (
            "private",
            &format!(
                "{p}auth-url: \"http://{}/check?for=$host\", {p}auth-response-headers: X-Auth-Request-User",
                auth.addr
            ),
        ),
        (
            "signin",
            &format!(
                "{p}auth-url: \"http://{}/check\", {p}auth-signin: \"https://login.test/start\"",
                auth.addr
            ),
        ),
        (
            "down",
            &format!("{p}auth-url: \"http://127.0.0.1:{closed_port}/check\""),
        ),
        (
            "cached",
            &format!(
                "{p}auth-url: \"http://{}/check\", {p}auth-cache-key: \"$http_authorization\", \
                 {p}auth-cache-duration: \"200 1m\", {p}auth-response-headers: X-Auth-Request-User",
                auth.addr
            ),
        ),
    ]);
    let agent = ready_agent(&dir, &[]);
    let ask = |host: &str, token: Option<&str>, extra: &str| {
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        send(
            &agent,
            "GET",
            host,
            "/x?y=1",
            "1.1",
            &format!("{auth}{extra}"),
        )
    };

    // Allowed: the pod gets the request, with the auth service's user in
    // place of the one the client claimed.
    let r = ask(
        "private.test",
        Some("good"),
        "X-Auth-Request-User: mallory\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.echo_field("x-auth-request-user").as_deref(),
        Some("alice")
    );
    assert_eq!(r.echo_field("x-other"), None);
    let head = auth.last_head();
    assert!(
        head.starts_with("GET /check?for=private.test HTTP/1.1\r\n"),
        "{head}"
    );
    for line in [
        "x-original-url: http://private.test/x?y=1",
        "x-original-method: GET",
        "x-auth-request-redirect: /x?y=1",
        "x-real-ip: 127.0.0.1",
        &format!("host: {}", auth.addr),
        "authorization: Bearer good",
    ] {
        assert!(head.contains(&format!("{line}\r\n")), "{line} in {head}");
    }
    // Without the auth service's header, the client's is dropped, never passed.
    let r = ask("private.test", Some("banned"), "");
    assert_eq!(r.status, 403);
    let r = ask("private.test", None, "X-Auth-Request-User: mallory\r\n");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"auth\""));
    // An auth service that fails is a 500, as nginx's auth_request.
    assert_eq!(ask("private.test", Some("broken"), "").status, 500);
    assert_eq!(ask("down.test", Some("good"), "").status, 500);

    // A POST body goes to the pod, not to the auth service.
    let r = http1::Conn::connect(agent.http)
        .unwrap()
        .raw(
            b"POST /form HTTP/1.1\r\nHost: private.test\r\nAuthorization: Bearer good\r\n\
              Content-Length: 5\r\nConnection: close\r\n\r\nhello",
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.echo_field("body-bytes").as_deref(), Some("5"));
    let head = auth.last_head();
    assert!(head.contains("x-original-method: POST\r\n"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("content-length: 5"),
        "{head}"
    );

    // With auth-signin a 401 becomes a redirect to sign in, with the way back.
    let r = ask("signin.test", None, "");
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("https://login.test/start?rd=http%3A%2F%2Fsignin.test%2Fx%3Fy%3D1")
    );
    assert_eq!(ask("signin.test", Some("good"), "").status, 200);
    // auth-cache-key: one question per token while the answer is kept
    // (200 for a minute); 401s are not kept here, so asked each time.
    let asked = || auth.heads.lock().unwrap().len();
    let before = asked();
    for _ in 0..3 {
        let r = ask(
            "cached.test",
            Some("good"),
            "X-Auth-Request-User: mallory\r\n",
        );
        assert_eq!(r.status, 200);
        // The kept answer's headers still replace the client's.
        assert_eq!(
            r.echo_field("x-auth-request-user").as_deref(),
            Some("alice")
        );
    }
    assert_eq!(asked(), before + 1);
    for _ in 0..2 {
        assert_eq!(ask("cached.test", None, "").status, 401);
    }
    assert_eq!(asked(), before + 3);
    // HTTP/2 asks the same way.
    assert_eq!(
        h2_statuses(
            agent.http,
            "private.test",
            &["", "Authorization: Bearer good\r\n"]
        ),
        [
            (401, Some("Bearer realm=\"auth\"".to_string())),
            (200, None)
        ]
    );
}

/// A loopback listener whose accept queue is full: a new connection to it
/// gets no answer to its SYN, as a pod on a dead node.
fn unanswering_listener() -> (socket2::Socket, Vec<std::net::TcpStream>) {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut held = Vec::new();
    for _ in 0..16 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => held.push(s),
            Err(_) => return (socket, held),
        }
    }
    panic!("the accept queue of {addr} never filled");
}

#[test]
fn proxy_connect_timeout_bounds_the_connect_per_ingress() {
    let (listener, _held) = unanswering_listener();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let dir = ManifestDir::new();
    dir.write("class.yaml", CLASS);
    dir.write(
        "svc.yaml",
        &xingress_tests::backend::service_yaml_at("dead", 80, &[addr]),
    );
    dir.write(
        "ing.yaml",
        &ingress_yaml(
            "quick",
            "quick.test",
            "dead",
            "nginx.ingress.kubernetes.io/proxy-connect-timeout: \"1\"",
        ),
    );
    let agent = ready_agent(&dir, &[]);
    // The fast path (HTTP/1.1) and hyper's (HTTP/1.0) both give up after
    // the Ingress's second, not the agent's default five.
    for version in ["1.1", "1.0"] {
        let started = std::time::Instant::now();
        let r = send(&agent, "GET", "quick.test", "/", version, "");
        let took = started.elapsed();
        assert_eq!(r.status, 502, "HTTP/{version}: {}", r.text());
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(3),
            "HTTP/{version}: {took:?}"
        );
    }
}

/// `upstream-hash-by`: one key, one pod, on both proxy paths; keys spread
/// over the pods; a pod leaving moves only its own keys.
#[test]
fn upstream_hash_by_keeps_a_key_on_its_pod() {
    let shop = pods("shop", 4);
    let dir = ManifestDir::new();
    let write = |pods: &[&Backend]| {
        dir.replace(
            "all.yaml",
            &format!(
                "{}{}",
                service("shop", pods),
                ingress_yaml(
                    "shop",
                    "shop.test",
                    "shop",
                    "nginx.ingress.kubernetes.io/upstream-hash-by: \"$http_x_user\""
                )
            ),
        )
    };
    dir.write("class.yaml", CLASS);
    write(&shop.iter().collect::<Vec<_>>());
    let agent = ready_agent(&dir, &[]);
    let pod_of = |user: &str, version: &str| -> String {
        Conn::connect(agent.http)
            .unwrap()
            .raw(format!("GET / {version}\r\nHost: shop.test\r\nX-User: {user}\r\n\r\n").as_bytes())
            .unwrap()
            .header("x-pod")
            .unwrap_or("")
            .to_string()
    };
    let users: Vec<String> = (0..40).map(|i| format!("user-{i}")).collect();
    let before: Vec<String> = users.iter().map(|u| pod_of(u, "HTTP/1.1")).collect();
    for (u, pod) in users.iter().zip(&before) {
        // Again on the fast path, and on hyper's (HTTP/1.0): the same pod.
        assert_eq!(&pod_of(u, "HTTP/1.1"), pod, "{u}");
        assert_eq!(&pod_of(u, "HTTP/1.0"), pod, "{u}");
    }
    let distinct: BTreeSet<&String> = before.iter().collect();
    assert_eq!(distinct.len(), 4, "{before:?}");
    // shop-2 leaves: its users move, nobody else's does.
    write(&[&shop[0], &shop[2], &shop[3]]);
    agent.eventually("shop-2 gone", || {
        users.iter().all(|u| pod_of(u, "HTTP/1.1") != "shop-2")
    });
    for (u, was) in users.iter().zip(&before) {
        if was != "shop-2" {
            assert_eq!(&pod_of(u, "HTTP/1.1"), was, "{u} moved");
        }
    }
}

/// `from-to-www-redirect`: www.HOST → HOST and HOST → www.HOST with 308
/// and the request's path and query; never over a host with rules.
#[test]
fn from_to_www_redirect_sends_the_other_name_to_the_ingress_host() {
    let (_live, dir) = one_pod_per_host(&[]);
    let www = "nginx.ingress.kubernetes.io/from-to-www-redirect: \"true\"";
    dir.write(
        "www.yaml",
        &format!(
            "{}{}{}",
            ingress_yaml("bare", "shop.test", "live", www),
            ingress_yaml("prefixed", "www.blog.test", "live", www),
            ingress_yaml("both", "docs.test", "live", www)
                + &ingress_yaml("both-www", "www.docs.test", "live", "")
        ),
    );
    let agent = ready_agent(&dir, &[]);
    let get = |host: &str, target: &str| {
        Conn::connect(agent.http)
            .unwrap()
            .get(host, target)
            .unwrap()
    };
    let r = get("www.shop.test", "/cart?id=7");
    assert_eq!(
        (r.status, r.header("location")),
        (308, Some("http://shop.test/cart?id=7"))
    );
    let r = get("blog.test", "/post");
    assert_eq!(
        (r.status, r.header("location")),
        (308, Some("http://www.blog.test/post"))
    );
    assert_eq!(get("shop.test", "/cart").status, 200);
    // www.docs.test has an Ingress of its own: served, not redirected.
    assert_eq!(get("www.docs.test", "/").status, 200);
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

/// A pod that answers every request 150 ms late (keep-alive).
fn slow_pod() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                use std::io::{BufRead, BufReader, Write};
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let mut line = String::new();
                    // The head ends with an empty line; requests have no body.
                    loop {
                        line.clear();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    std::thread::sleep(Duration::from_millis(150));
                    if stream
                        .write_all(b"HTTP/1.1 200 OK\r\nx-pod: slow-1\r\nContent-Length: 0\r\n\r\n")
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// `load-balance: ewma`: a slow pod gets few requests once measured, on
/// both proxy paths (round robin would give it half).
#[test]
fn ewma_load_balancing_avoids_a_slow_pod() {
    let fast = pods("fast", 1);
    let slow = slow_pod();
    let dir = ManifestDir::new();
    dir.write("class.yaml", CLASS);
    dir.write(
        "all.yaml",
        &format!(
            "{}{}",
            backend::service_yaml_at("mixed", 80, &[fast[0].addr, slow]),
            ingress_yaml(
                "mixed",
                "mixed.test",
                "mixed",
                "nginx.ingress.kubernetes.io/load-balance: ewma"
            ),
        ),
    );
    let agent = ready_agent(&dir, &[]);
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        let mut to_slow = 0;
        for _ in 0..60 {
            let r = Conn::connect(agent.http)
                .unwrap()
                .raw(format!("GET / {version}\r\nHost: mixed.test\r\n\r\n").as_bytes())
                .unwrap();
            assert_eq!(r.status, 200);
            if r.header("x-pod") == Some("slow-1") {
                to_slow += 1;
            }
        }
        assert!(
            to_slow <= 6,
            "{version}: {to_slow} of 60 went to the slow pod"
        );
    }
}

/// `proxy-redirect-from`/`-to`, `proxy-cookie-path` and
/// `proxy-cookie-domain` rewrite the pod's Location and Set-Cookie, on
/// both proxy paths.
#[test]
fn proxy_redirect_and_cookie_rewrites() {
    let (_live, dir) = one_pod_per_host(&[(
        "app",
        "nginx.ingress.kubernetes.io/proxy-redirect-from: http://pod.internal:8080/, nginx.ingress.kubernetes.io/proxy-redirect-to: https://app.test/shop/, nginx.ingress.kubernetes.io/proxy-cookie-path: \"/ /shop/\", nginx.ingress.kubernetes.io/proxy-cookie-domain: pod.internal app.test",
    )]);
    let agent = ready_agent(&dir, &[]);
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        let r = Conn::connect(agent.http)
            .unwrap()
            .raw(
                format!(
                    "GET / {version}\r\nHost: app.test\r\nX-Echo-Set-Header: Location:http://pod.internal:8080/login?next=%2F,Set-Cookie:sid=7; Path=/cart; Domain=pod.internal\r\n\r\n"
                )
                .as_bytes(),
            )
            .unwrap();
        assert_eq!(
            r.header("location"),
            Some("https://app.test/shop/login?next=%2F"),
            "{version}: {:?}",
            r.headers
        );
        assert_eq!(
            r.header("set-cookie"),
            Some("sid=7; Path=/shop/cart; Domain=app.test"),
            "{version}"
        );
    }
}

/// `satisfy: any`: an allowed source passes without credentials; another
/// source with credentials passes too (403 without `satisfy: any`).
#[test]
fn satisfy_any_takes_the_allow_list_or_the_credentials() {
    let (_live, dir) = one_pod_per_host(&[
        (
            "either",
            "nginx.ingress.kubernetes.io/auth-type: basic, nginx.ingress.kubernetes.io/auth-secret: users, nginx.ingress.kubernetes.io/allowlist-source-range: 127.0.0.2/32, nginx.ingress.kubernetes.io/satisfy: any",
        ),
        (
            "both",
            "nginx.ingress.kubernetes.io/auth-type: basic, nginx.ingress.kubernetes.io/auth-secret: users, nginx.ingress.kubernetes.io/allowlist-source-range: 127.0.0.2/32",
        ),
    ]);
    // staff:staff, {PLAIN}.
    dir.write(
        "users.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: users}\ntype: Opaque\nstringData: {auth: \"staff:{PLAIN}staff\"}\n",
    );
    let agent = ready_agent(&dir, &[]);
    let status = |from: [u8; 4], host: &str, credentials: bool| {
        let mut c = Conn::connect_from(std::net::IpAddr::from(from), agent.http).unwrap();
        let auth = if credentials {
            "Authorization: Basic c3RhZmY6c3RhZmY=\r\n"
        } else {
            ""
        };
        c.raw(format!("GET / HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n").as_bytes())
            .unwrap()
            .status
    };
    // Listed source: no credentials needed with satisfy any.
    assert_eq!(status([127, 0, 0, 2], "either.test", false), 200);
    // Another source: credentials instead.
    assert_eq!(status([127, 0, 0, 3], "either.test", false), 401);
    assert_eq!(status([127, 0, 0, 3], "either.test", true), 200);
    // satisfy all (the default): both.
    assert_eq!(status([127, 0, 0, 2], "both.test", false), 401);
    assert_eq!(status([127, 0, 0, 3], "both.test", true), 403);
    assert_eq!(status([127, 0, 0, 2], "both.test", true), 200);
}

/// `proxy-http-version: "1.0"`: the pod gets HTTP/1.0 (from either client
/// protocol); without it, HTTP/1.1.
#[test]
fn proxy_http_version_sends_http_1_0_to_the_pod() {
    let (_live, dir) = one_pod_per_host(&[
        (
            "old",
            "nginx.ingress.kubernetes.io/proxy-http-version: \"1.0\"",
        ),
        ("new", ""),
    ]);
    let agent = ready_agent(&dir, &[]);
    let version = |host: &str| {
        Conn::connect(agent.http)
            .unwrap()
            .get(host, "/")
            .unwrap()
            .echo_field("version")
    };
    assert_eq!(version("old.test").as_deref(), Some("HTTP/1.0"));
    assert_eq!(version("new.test").as_deref(), Some("HTTP/1.1"));
}
