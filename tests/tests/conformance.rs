//! The scenarios of the kubernetes-sigs ingress-controller-conformance
//! suite (default backend, host rules, path rules, ingress class, load
//! balancing), run against `xingress run --manifests` with one echo pod per
//! Service; "served by service S" means the answering pod belongs to S.
//! (The suite's Ingress status steps belong to Kubernetes mode, and its TLS
//! host-rule scenario to TLS termination.)

use std::{collections::BTreeSet, net::SocketAddr};

use xingress_tests::{
    agent::{Agent, ManifestDir},
    backend::{self, Backend, Mode},
    http1::{self, Conn, Response},
};

const CLASS: &str = include_str!("../examples/cafe/ingressclass.yaml");

/// Echo pods for a Service `name` with ServicePort 8080 named `http`.
fn service(dir: &ManifestDir, name: &str, replicas: usize) -> Vec<Backend> {
    let pods: Vec<Backend> = (1..=replicas)
        .map(|i| {
            backend::start(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                &format!("{name}-{i}"),
                Mode::Echo,
            )
            .unwrap()
        })
        .collect();
    let refs: Vec<&Backend> = pods.iter().collect();
    dir.write(
        &format!("svc-{name}.yaml"),
        &backend::service_yaml(name, 8080, &refs),
    );
    pods
}

fn start(dir: &ManifestDir) -> Agent {
    dir.write("class.yaml", CLASS);
    let mut agent = Agent::start_local(&dir.path, &[]).unwrap();
    agent.wait_ready().unwrap();
    agent
}

fn served_by(r: &Response, service: &str) -> bool {
    r.header("x-pod")
        .is_some_and(|p| p.rsplit_once('-').is_some_and(|(s, _)| s == service))
}

fn request(agent: &Agent, method: &str, host: &str, path: &str) -> Response {
    let host = if host.is_empty() {
        agent.http.to_string()
    } else {
        host.to_string()
    };
    let body = if matches!(method, "POST" | "PUT" | "PATCH") {
        "{}"
    } else {
        ""
    };
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Go-http-client/1.1\r\nConnection: close\r\n"
    );
    if !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    Conn::connect(agent.http)
        .unwrap()
        .raw(req.as_bytes())
        .unwrap()
}

#[test]
fn default_backend_feature() {
    let dir = ManifestDir::new();
    let _pods = service(&dir, "echo-service", 1);
    dir.write("ing.yaml", "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: default-backend}\nspec:\n  defaultBackend:\n    service:\n      name: echo-service\n      port:\n        number: 8080\n");
    let agent = start(&dir);
    let examples = [
        ("GET", "my-host", "/"),
        ("GET", "my-host", "/sub-path"),
        ("POST", "some-host", "/"),
        ("PUT", "", "/resource"),
        ("DELETE", "some-host", "/resource"),
        ("PATCH", "my-host", "/resource"),
    ];
    for (method, host, path) in examples {
        let r = request(&agent, method, host, path);
        let what = format!("{method} http://{host}{path}");
        assert_eq!(r.status, 200, "{what}");
        assert!(served_by(&r, "echo-service"), "{what}");
        for h in ["content-length", "content-type", "date", "server"] {
            assert!(r.header(h).is_some(), "{what}: response lacks {h}");
        }
        assert_eq!(r.echo_field("method").as_deref(), Some(method), "{what}");
        assert_eq!(r.echo_field("uri").as_deref(), Some(path), "{what}");
        assert_eq!(
            r.echo_field("version").as_deref(),
            Some("HTTP/1.1"),
            "{what}"
        );
        assert_eq!(
            r.echo_field("user-agent").as_deref(),
            Some("Go-http-client/1.1"),
            "{what}"
        );
    }
}

#[test]
fn host_rules_feature() {
    let dir = ManifestDir::new();
    let _a = service(&dir, "wildcard-foo-com", 1);
    let _b = service(&dir, "foo-bar-com", 1);
    let rules = [
        "  - host: \"*.foo.com\"\n    http:\n      paths:\n",
        "      - {path: /, pathType: Prefix, backend: {service: {name: wildcard-foo-com, port: {number: 8080}}}}\n",
        "  - host: foo.bar.com\n    http:\n      paths:\n",
        "      - {path: /, pathType: Prefix, backend: {service: {name: foo-bar-com, port: {name: http}}}}\n",
    ]
    .concat();
    dir.write("ing.yaml", &format!("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: host-rules}}\nspec:\n  rules:\n{rules}"));
    let agent = start(&dir);
    let r = request(&agent, "GET", "foo.bar.com", "/");
    assert!(r.status == 200 && served_by(&r, "foo-bar-com"));
    assert_eq!(r.echo_field("host").as_deref(), Some("foo.bar.com"));
    assert_eq!(request(&agent, "GET", "subdomain.bar.com", "/").status, 404);
    let r = request(&agent, "GET", "bar.foo.com", "/");
    assert!(r.status == 200 && served_by(&r, "wildcard-foo-com"));
    assert_eq!(r.echo_field("host").as_deref(), Some("bar.foo.com"));
    assert_eq!(
        request(&agent, "GET", "baz.bar.foo.com", "/").status,
        404,
        "one DNS label only"
    );
    assert_eq!(
        request(&agent, "GET", "foo.com", "/").status,
        404,
        "no label is not one label"
    );
}

#[test]
fn path_rules_feature() {
    let dir = ManifestDir::new();
    let services = [
        "foo-exact",
        "foo-prefix",
        "aaa-slash-bbb-prefix",
        "aaa-prefix",
        "aaa-slash-bbb-slash-prefix",
        "foo-slash-exact",
    ];
    let _pods: Vec<_> = services.iter().map(|s| service(&dir, s, 1)).collect();
    let rule = |host: &str, paths: &[(&str, &str, &str)]| {
        let mut r = format!("  - host: {host}\n    http:\n      paths:\n");
        for (p, t, s) in paths {
            r.push_str(&format!("      - {{path: \"{p}\", pathType: {t}, backend: {{service: {{name: {s}, port: {{number: 8080}}}}}}}}\n"));
        }
        r
    };
    let rules = [
        rule("exact-path-rules", &[("/foo", "Exact", "foo-exact")]),
        rule(
            "prefix-path-rules",
            &[
                ("/foo", "Prefix", "foo-prefix"),
                ("/aaa/bbb", "Prefix", "aaa-slash-bbb-prefix"),
                ("/aaa", "Prefix", "aaa-prefix"),
            ],
        ),
        rule(
            "mixed-path-rules",
            &[
                ("/foo", "Prefix", "foo-prefix"),
                ("/foo", "Exact", "foo-exact"),
            ],
        ),
        rule(
            "trailing-slash-path-rules",
            &[
                ("/aaa/bbb/", "Prefix", "aaa-slash-bbb-slash-prefix"),
                ("/foo/", "Exact", "foo-slash-exact"),
            ],
        ),
    ]
    .concat();
    dir.write("ing.yaml", &format!("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: path-rules}}\nspec:\n  rules:\n{rules}"));
    let agent = start(&dir);
    let scenarios: &[(&str, &str, Option<&str>)] = &[
        ("exact-path-rules", "/foo", Some("foo-exact")),
        ("exact-path-rules", "/foo/", None),
        ("exact-path-rules", "/FOO", None),
        ("exact-path-rules", "/bar", None),
        ("prefix-path-rules", "/foo", Some("foo-prefix")),
        ("prefix-path-rules", "/foo/", Some("foo-prefix")),
        ("prefix-path-rules", "/FOO", None),
        (
            "prefix-path-rules",
            "/aaa/bbb",
            Some("aaa-slash-bbb-prefix"),
        ),
        (
            "prefix-path-rules",
            "/aaa/bbb/ccc",
            Some("aaa-slash-bbb-prefix"),
        ),
        ("prefix-path-rules", "/aaa/ccc", Some("aaa-prefix")),
        ("prefix-path-rules", "/aaaccc", None),
        ("mixed-path-rules", "/foo", Some("foo-exact")),
        (
            "trailing-slash-path-rules",
            "/aaa/bbb",
            Some("aaa-slash-bbb-slash-prefix"),
        ),
        (
            "trailing-slash-path-rules",
            "/aaa/bbb/",
            Some("aaa-slash-bbb-slash-prefix"),
        ),
        ("trailing-slash-path-rules", "/foo", None),
    ];
    for (host, path, want) in scenarios {
        let r = request(&agent, "GET", host, path);
        match want {
            Some(svc) => {
                assert_eq!(r.status, 200, "http://{host}{path}");
                assert!(
                    served_by(&r, svc),
                    "http://{host}{path} served by {:?}, want {svc}",
                    r.header("x-pod")
                );
                assert_eq!(
                    r.echo_field("uri").as_deref(),
                    Some(*path),
                    "request path unchanged"
                );
            }
            None => assert_eq!(r.status, 404, "http://{host}{path}"),
        }
    }
}

#[test]
fn ingress_class_feature() {
    let dir = ManifestDir::new();
    let _pods = service(&dir, "ingress-class-prefix", 1);
    dir.write("ing.yaml", "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: test-ingress-class}\nspec:\n  ingressClassName: some-invalid-class-name\n  rules:\n  - host: ingress-class\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: ingress-class-prefix, port: {number: 8080}}}}\n");
    let agent = start(&dir);
    assert_eq!(request(&agent, "GET", "ingress-class", "/").status, 404);
    // Not ours at all: `check` does not count it among our Ingresses.
    let out = std::process::Command::new(xingress_tests::agent::xingress_bin())
        .args(["check", "--output", "json"])
        .arg(&dir.path)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ingresses"], serde_json::json!([]), "{report}");
}

#[test]
fn load_balancing_feature() {
    let dir = ManifestDir::new();
    let _pods = service(&dir, "echo-service", 10);
    dir.write("ing.yaml", "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: load-balancing}\nspec:\n  defaultBackend: {service: {name: echo-service, port: {number: 8080}}}\n");
    let agent = start(&dir);
    let pods: BTreeSet<String> = (0..100)
        .map(|_| {
            let r = http1::get(agent.http, "load-balancing", "/").unwrap();
            assert_eq!(r.status, 200);
            r.header("x-pod").unwrap().to_string()
        })
        .collect();
    assert_eq!(pods.len(), 10, "{pods:?}");
}
