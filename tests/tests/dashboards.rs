//! Dashboards (issue 19, part 6): the request metrics under ingress-nginx's
//! names and labels, so its published Grafana dashboards read them
//! unchanged; label values bounded by the configuration (the rule's path,
//! never the request's); our own dashboard in `deploy/` queries only
//! metrics the agent exports.

use std::net::SocketAddr;

use xingress_tests::{
    agent::{Agent, ManifestDir},
    backend::{self, Mode, service_yaml},
    http1::{self, Conn},
};

fn ingress(name: &str, host: &str, path: &str, svc: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: shop\n  annotations: {{kubernetes.io/ingress.class: xingress}}\n\
         spec:\n  rules:\n  - host: {host}\n    http:\n      paths:\n      \
         - {{path: {path}, pathType: Prefix, backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}}}\n---\n"
    )
}

fn metrics(agent: &Agent) -> String {
    http1::get(agent.admin, "localhost", "/metrics")
        .unwrap()
        .text()
}

/// The value of the one sample whose line starts with `series` exactly.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn request_metrics_carry_ingress_nginx_names_and_labels() {
    let api = backend::start(SocketAddr::from(([127, 0, 0, 1], 0)), "api-1", Mode::Echo).unwrap();
    let dir = ManifestDir::new();
    dir.write(
        "all.yaml",
        &format!(
            "{}{}{}",
            service_yaml("api", 80, &[&api])
                .replace("metadata: {name:", "metadata: {namespace: shop, name:"),
            ingress("shop-api", "shop.test", "/api", "api"),
            ingress("shop-web", "shop.test", "/web", "missing"),
        ),
    );
    let mut agent = Agent::start_local(
        &dir.path,
        &["--pod-name", "edge-7", "--pod-namespace", "ingress"],
    )
    .unwrap();
    agent.wait_ready().unwrap();
    // Three GETs on the fast path (raw paths under the rule's prefix), one
    // POST with a body on hyper's path (HTTP/1.0), one to no rule.
    for path in ["/api/a", "/api/b?x=1", "/api/c/d"] {
        let r = Conn::connect(agent.http)
            .unwrap()
            .get("shop.test", path)
            .unwrap();
        assert_eq!(r.status, 200);
    }
    let r = Conn::connect(agent.http)
        .unwrap()
        .raw(b"POST /api/up HTTP/1.0\r\nHost: shop.test\r\nContent-Length: 5\r\n\r\nhello")
        .unwrap();
    assert_eq!(r.status, 200);
    let r = Conn::connect(agent.http)
        .unwrap()
        .get("other.test", "/x")
        .unwrap();
    assert_eq!(r.status, 404);
    let controller =
        "controller_class=\"xingress\",controller_namespace=\"ingress\",controller_pod=\"edge-7\"";
    let route = format!(
        "{controller},host=\"shop.test\",ingress=\"shop-api\",namespace=\"shop\",path=\"/api\",service=\"api\""
    );
    let text = metrics(&agent);
    assert_eq!(
        sample(
            &text,
            &format!("nginx_ingress_controller_requests{{{route},method=\"GET\",status=\"200\"}}")
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!("nginx_ingress_controller_requests{{{route},method=\"POST\",status=\"200\"}}")
        ),
        Some(1.0),
        "{text}"
    );
    // The rule's path, never the request's: one series for the four paths.
    assert!(!text.contains("path=\"/api/a\""), "{text}");
    // No rule: the host label "*" and empty route labels.
    assert_eq!(
        sample(
            &text,
            &format!(
                "nginx_ingress_controller_requests{{{controller},host=\"*\",ingress=\"\",namespace=\"\",path=\"\",service=\"\",method=\"GET\",status=\"404\"}}"
            )
        ),
        Some(1.0),
        "{text}"
    );
    // Histograms, one observation per request.
    for name in [
        "nginx_ingress_controller_request_duration_seconds",
        "nginx_ingress_controller_request_size",
        "nginx_ingress_controller_response_size",
    ] {
        assert_eq!(
            sample(&text, &format!("{name}_count{{{route}}}")),
            Some(4.0),
            "{name}: {text}"
        );
        assert_eq!(
            sample(&text, &format!("{name}_bucket{{{route},le=\"+Inf\"}}")),
            Some(4.0),
            "{name}"
        );
    }
    // The response bodies as the client got them (the echo pod's text).
    let sizes = sample(
        &text,
        &format!("nginx_ingress_controller_response_size_sum{{{route}}}"),
    )
    .unwrap();
    assert!(sizes > 4.0 * 100.0, "{sizes}");
    // The POST's body counts in its request size.
    let requests = sample(
        &text,
        &format!("nginx_ingress_controller_request_size_sum{{{route}}}"),
    )
    .unwrap();
    assert!(requests >= 3.0 * 20.0 + 5.0, "{requests}");
    assert_eq!(
        sample(
            &text,
            &format!("nginx_ingress_controller_config_last_reload_successful{{{controller}}}")
        ),
        Some(1.0)
    );
    let at = sample(
        &text,
        &format!(
            "nginx_ingress_controller_config_last_reload_successful_timestamp_seconds{{{controller}}}"
        ),
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - at).abs() < 120.0, "{at} vs {now}");
    // A route that leaves the configuration leaves /metrics.
    dir.replace("all.yaml", &service_yaml("api", 80, &[&api]));
    agent.eventually("the route's series gone", || {
        !metrics(&agent).contains("ingress=\"shop-api\"")
    });
}

/// Every metric our Grafana dashboard queries is one the agent exports.
#[test]
fn the_dashboard_queries_only_exported_metrics() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana-dashboard.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(exprs.len() >= 6, "{exprs:?}");
    let catalog = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/reference/metrics.md"),
    )
    .unwrap();
    for expr in &exprs {
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if !(word.starts_with("nginx_ingress_controller_") || word.starts_with("xingress_")) {
                continue;
            }
            let base = word
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(
                catalog.contains(&format!("`{base}`")),
                "{word} (in {expr}) is not a metric the agent exports"
            );
        }
    }
}

/// `nginx_ingress_controller_ssl_expire_time_seconds`: each TLS host's
/// certificate expiry, by its Secret.
#[test]
fn certificate_expiry_is_exported_per_host() {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["secure.test".to_string()]).unwrap();
    params.not_after = rcgen::date_time_ymd(2031, 3, 14);
    let cert = params.self_signed(&key).unwrap();
    let indent = |pem: String| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    let dir = ManifestDir::new();
    dir.write(
        "all.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: secure-tls, namespace: shop}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}---\n{}",
            indent(cert.pem()),
            indent(key.serialize_pem()),
            ingress("secure", "secure.test", "/", "api").replace(
                "spec:\n  rules:",
                "spec:\n  tls: [{hosts: [secure.test], secretName: secure-tls}]\n  rules:"
            ),
        ),
    );
    let mut agent = Agent::start_local(
        &dir.path,
        &["--pod-name", "edge-7", "--pod-namespace", "ingress"],
    )
    .unwrap();
    agent.wait_ready().unwrap();
    let text = metrics(&agent);
    assert_eq!(
        sample(
            &text,
            "nginx_ingress_controller_ssl_expire_time_seconds{controller_class=\"xingress\",controller_namespace=\"ingress\",controller_pod=\"edge-7\",host=\"secure.test\",namespace=\"shop\",secret_name=\"secure-tls\"}"
        ),
        // 2031-03-14T00:00:00Z
        Some(1_931_212_800.0),
        "{text}"
    );
}
