//! HSTS (ingress-nginx's `hsts` keys, as flags): responses over TLS carry
//! Strict-Transport-Security on both proxy paths, replacing a pod's own;
//! plain HTTP never does; `--hsts=false` turns it off.

use std::net::SocketAddr;

use xingress_tests::{
    agent::{Agent, ManifestDir},
    backend::{self, Mode, service_yaml},
    http1::{self, Conn},
    tls_client,
};

const INGRESS: &str = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: app\n  annotations: {kubernetes.io/ingress.class: xingress}\nspec:\n  rules:\n  - host: app.test\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}\n---\n";

fn https(agent: &Agent, request: &[u8]) -> http1::Response {
    let config = tls_client::config(&[b"http/1.1"]);
    let (mut c, _) = tls_client::connect(agent.https, "app.test", &config).unwrap();
    c.raw(request).unwrap()
}

#[test]
fn responses_over_tls_carry_hsts_and_plain_http_does_not() {
    let app = backend::start(SocketAddr::from(([127, 0, 0, 1], 0)), "app-1", Mode::Echo).unwrap();
    let dir = ManifestDir::new();
    dir.write(
        "all.yaml",
        &format!("{}{INGRESS}", service_yaml("app", 80, &[&app])),
    );
    let mut agent = Agent::start_local(&dir.path, &[]).unwrap();
    agent.wait_ready().unwrap();
    let want = Some("max-age=31536000; includeSubDomains");
    // The fast path (HTTP/1.1), hyper's (HTTP/1.0), a local 404.
    for request in [
        &b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n"[..],
        b"GET / HTTP/1.0\r\nHost: app.test\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: nowhere.test\r\n\r\n",
    ] {
        let r = https(&agent, request);
        assert_eq!(
            r.header("strict-transport-security"),
            want,
            "{}",
            String::from_utf8_lossy(request)
        );
    }
    // Never over plain HTTP.
    let r = Conn::connect(agent.http)
        .unwrap()
        .get("app.test", "/")
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("strict-transport-security"), None);
    drop(agent);

    let mut agent = Agent::start_local(&dir.path, &["--hsts=false"]).unwrap();
    agent.wait_ready().unwrap();
    let r = https(&agent, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("strict-transport-security"), None);
    drop(agent);

    let mut agent = Agent::start_local(
        &dir.path,
        &[
            "--hsts-max-age",
            "600",
            "--hsts-include-subdomains=false",
            "--hsts-preload=true",
        ],
    )
    .unwrap();
    agent.wait_ready().unwrap();
    let r = https(&agent, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n");
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=600; preload")
    );
}

/// The ConfigMap's `hsts*` keys over the flags, live, on both paths.
#[test]
fn configmap_hsts_keys_override_the_flags_live() {
    let app = backend::start(SocketAddr::from(([127, 0, 0, 1], 0)), "app-1", Mode::Echo).unwrap();
    let dir = ManifestDir::new();
    dir.write(
        "all.yaml",
        &format!("{}{INGRESS}", service_yaml("app", 80, &[&app])),
    );
    let config = |data: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c, namespace: x}}\ndata:\n{data}"
        )
    };
    dir.write(
        "config.yaml",
        &config("  hsts-max-age: \"600\"\n  hsts-preload: \"true\"\n"),
    );
    let mut agent = Agent::start_local(
        &dir.path,
        &["--configmap", "x/c", "--hsts-include-subdomains=false"],
    )
    .unwrap();
    agent.wait_ready().unwrap();
    for request in [
        &b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n"[..],
        b"GET / HTTP/1.0\r\nHost: app.test\r\n\r\n",
    ] {
        assert_eq!(
            https(&agent, request).header("strict-transport-security"),
            Some("max-age=600; preload")
        );
    }
    dir.replace("config.yaml", &config("  hsts: \"false\"\n"));
    agent.eventually("HSTS off", || {
        https(&agent, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
            .header("strict-transport-security")
            .is_none()
    });
}
