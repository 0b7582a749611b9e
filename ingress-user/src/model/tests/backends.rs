//! Backend resolution: ready endpoints by port name, missing Services and
//! empty endpoints, ExternalName and resource backends, and `put_decimal`.

use super::*;

#[test]
fn backends_resolve_ready_endpoints_by_port_name() {
    let yaml = format!(
        "{CLASS}apiVersion: v1\nkind: Service\nmetadata: {{name: s}}\nspec:\n  ports: [{{name: web, port: 80}}, {{name: admin, port: 9000}}]\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: s-1, labels: {{kubernetes.io/service-name: s}}}}\naddressType: IPv4\n\
         ports: [{{name: web, port: 8080}}, {{name: admin, port: 9090}}]\nendpoints:\n\
         - addresses: [10.1.0.1]\n  conditions: {{ready: true}}\n\
         - addresses: [10.1.0.2]\n  conditions: {{ready: false}}\n\
         - addresses: [10.1.0.3]\n---\n{}",
        ingress(
            "i",
            &format!(
                "{}  - host: admin.x.com\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend: {{service: {{name: s, port: {{name: admin}}}}}}\n",
                rule("x.com", &[("/", "Prefix", "s")])
            )
        )
    );
    let t = translate(&objects(&yaml), &TranslateOptions::default());
    let web = t.table.route(Some("x.com"), "/").unwrap().backend;
    assert_eq!(
        web.target,
        BackendTarget::Endpoints(vec![
            "10.1.0.1:8080".parse().unwrap(),
            "10.1.0.3:8080".parse().unwrap()
        ])
    );
    let admin = t.table.route(Some("admin.x.com"), "/").unwrap().backend;
    assert_eq!(
        admin.target,
        BackendTarget::Endpoints(vec![
            "10.1.0.1:9090".parse().unwrap(),
            "10.1.0.3:9090".parse().unwrap()
        ])
    );
    // Per-request round robin over every ready endpoint.
    let picks: std::collections::BTreeSet<_> =
        (0..4).map(|_| web.pick().unwrap().to_string()).collect();
    assert_eq!(picks.len(), 2);
}

#[test]
fn missing_service_and_no_endpoints_are_503_targets() {
    let yaml = format!(
        "{CLASS}apiVersion: v1\nkind: Service\nmetadata: {{name: empty}}\nspec: {{ports: [{{port: 80}}]}}\n---\n{}",
        ingress(
            "i",
            &rule(
                "x.com",
                &[("/gone", "Prefix", "nope"), ("/empty", "Prefix", "empty")]
            )
        )
    );
    let t = translate(&objects(&yaml), &TranslateOptions::default());
    let gone = t.table.route(Some("x.com"), "/gone").unwrap().backend;
    assert_eq!(gone.pick(), Err(BackendError::MissingService));
    let empty = t.table.route(Some("x.com"), "/empty").unwrap().backend;
    assert_eq!(empty.pick(), Err(BackendError::NoEndpoints));
    assert!(
        t.warnings
            .iter()
            .any(|w| w.message.contains("Service default/nope not found"))
    );
}

#[test]
fn external_name_services_only_with_the_flag() {
    let yaml = format!(
        "{CLASS}apiVersion: v1\nkind: Service\nmetadata: {{name: ext}}\nspec: {{type: ExternalName, externalName: api.example.net, ports: [{{port: 80}}]}}\n---\n{}",
        ingress("i", &rule("x.com", &[("/", "Prefix", "ext")]))
    );
    let o = objects(&yaml);
    let off = translate(&o, &TranslateOptions::default());
    assert_eq!(
        off.table.route(Some("x.com"), "/").unwrap().backend.pick(),
        Err(BackendError::Unsupported)
    );
    assert!(
        off.warnings
            .iter()
            .any(|w| w.message.contains("ExternalName"))
    );
    let opts = TranslateOptions {
        allow_external_name: true,
        ..Default::default()
    };
    let on = translate(&o, &opts);
    assert_eq!(
        on.table.route(Some("x.com"), "/").unwrap().backend.pick(),
        Ok(Peer::Name("api.example.net".into(), 80))
    );
}

#[test]
fn resource_backends_are_503_with_a_warning() {
    let yaml = format!(
        "{CLASS}apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: r}}\nspec:\n  ingressClassName: xingress\n  rules:\n  - host: x.com\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend: {{resource: {{apiGroup: k8s.example.com, kind: StorageBucket, name: static-assets}}}}\n"
    );
    let t = translate(&objects(&yaml), &TranslateOptions::default());
    let route = t
        .table
        .route(Some("x.com"), "/")
        .expect("the rule still exists");
    assert_eq!(route.backend.pick(), Err(BackendError::Unsupported));
    assert!(
        t.warnings
            .iter()
            .any(|w| w.message.contains("resource backends are not supported"))
    );
}

#[test]
fn put_decimal_writes_any_u64() {
    for n in [0, 7, 10, 80, 8080, 65535, u64::from(u32::MAX), u64::MAX] {
        let mut buf = [0; 20];
        let len = super::put_decimal(&mut buf, n);
        assert_eq!(&buf[..len], n.to_string().as_bytes());
    }
}
