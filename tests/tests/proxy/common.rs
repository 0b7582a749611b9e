//! Shared helpers: the cafe example, echo pods, manifests and the agent.

use std::net::SocketAddr;

use xingress_tests::{
    agent::{Agent, ManifestDir},
    backend::{self, Backend, Mode},
    http1,
};

pub(crate) const CLASS: &str = include_str!("../../examples/cafe/ingressclass.yaml");
pub(crate) const CAFE_INGRESS: &str = include_str!("../../examples/cafe/cafe-ingress.yaml");

pub(crate) fn pods(prefix: &str, n: usize) -> Vec<Backend> {
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

pub(crate) fn service(name: &str, pods: &[&Backend]) -> String {
    backend::service_yaml(name, 80, pods)
}

pub(crate) struct Cafe {
    pub(crate) dir: ManifestDir,
    pub(crate) tea: Vec<Backend>,
    pub(crate) coffee: Vec<Backend>,
}

pub(crate) fn cafe() -> Cafe {
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

pub(crate) fn ready_agent(dir: &ManifestDir, extra: &[&str]) -> Agent {
    let mut agent = Agent::start_local(&dir.path, extra).expect("spawn agent");
    agent.wait_ready().expect("agent ready");
    agent
}

/// An Ingress `name` with `annotations` (flow-style YAML map entries)
/// routing `host` `/` to Service `svc`.
pub(crate) fn ingress_yaml(name: &str, host: &str, svc: &str, annotations: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  annotations: {{{annotations}}}\n\
         spec:\n  rules:\n  - host: {host}\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}}}\n---\n"
    )
}

/// One echo pod behind Service `live`, and per `(name, annotations)` an
/// Ingress routing `name.test` to it with those annotations.
pub(crate) fn one_pod_per_host(ingresses: &[(&str, &str)]) -> (Vec<Backend>, ManifestDir) {
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
pub(crate) fn send(
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
