//! Table tests of the routing model against INGRESS-SPEC.md.
//!
//! This module holds the shared builders (YAML objects, `translate` runs,
//! route and warning lookups); each submodule holds the tests of one concern.

use super::*;
use crate::model::manifest::parse_documents;

mod access_control;
mod backends;
mod canaries;
mod configmaps;
mod hosts_and_paths;
mod ingress_annotations;
mod ownership;
mod redirects_and_rewrites;
mod tls;

fn objects(yaml: &str) -> Objects {
    let mut o = Objects::default();
    let out = parse_documents(yaml, "test.yaml", &mut o);
    assert!(
        out.warnings.iter().all(|w| w.severity == Severity::Note),
        "{:?}",
        out.warnings
    );
    o
}

fn service(name: &str, ip_base: u8, n: u8) -> String {
    let eps: String = (1..=n)
        .map(|i| {
            format!("  - addresses: [\"10.0.{ip_base}.{i}\"]\n    conditions: {{ready: true}}\n")
        })
        .collect();
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-x\n  labels: {{kubernetes.io/service-name: {name}}}\n\
         addressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n{eps}---\n"
    )
}

fn ingress(name: &str, rules: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}}}\nspec:\n  ingressClassName: xingress\n  rules:\n{rules}---\n"
    )
}

const CLASS: &str = "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: xingress}\nspec: {controller: xingress.dev/controller}\n---\n";

fn rule(host: &str, paths: &[(&str, &str, &str)]) -> String {
    let host = if host.is_empty() {
        String::new()
    } else {
        format!("host: \"{host}\"\n    ")
    };
    let paths: String = paths
        .iter()
        .map(|(p, t, svc)| {
            format!("      - path: \"{p}\"\n        pathType: {t}\n        backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}\n")
        })
        .collect();
    format!("  - {host}http:\n      paths:\n{paths}")
}

/// An Ingress of class xingress named `name`, with `annotations` (flow-map
/// entries) and `rules` (from [`rule`]).
fn annotated(name: &str, annotations: &str, rules: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  annotations: {{{annotations}}}\n\
         spec:\n  ingressClassName: xingress\n  rules:\n{rules}---\n"
    )
}

/// An Ingress `name` with `annotations` routing `NAME.test` `/` to Service `a`.
fn own_host(name: &str, annotations: &str) -> String {
    annotated(
        name,
        annotations,
        &rule(&format!("{name}.test"), &[("/", "Prefix", "a")]),
    )
}

/// The warning messages about Ingress `default/NAME`.
fn messages(t: &Translation, name: &str) -> Vec<String> {
    t.warnings
        .iter()
        .filter(|w| w.object == format!("Ingress default/{name}"))
        .map(|w| w.message.clone())
        .collect()
}

/// Which service answers `host` + `path`, or None for 404.
fn routed(t: &Translation, host: &str, path: &str) -> Option<String> {
    let mut buf = [0u8; HOST_BUF_LEN];
    let host = normalize_host(host, &mut buf);
    t.table
        .route(host, path)
        .map(|r| r.backend.service.name.clone())
}

fn table(rules: &str) -> Translation {
    let svcs: String = ["a", "b", "c", "d"]
        .iter()
        .map(|s| service(s, 1, 1))
        .collect();
    let o = objects(&format!("{CLASS}{svcs}{}", ingress("ing", rules)));
    translate(&o, &TranslateOptions::default())
}
