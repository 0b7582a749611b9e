//! Table tests of the routing model against INGRESS-SPEC.md.

use super::*;
use crate::k8s::parse_documents;

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

#[test]
fn path_table_of_the_spec() {
    type Case<'a> = (&'a [(&'a str, &'a str, &'a str)], &'a str, Option<&'a str>);
    let cases: &[Case] = &[
        (&[("/", "Prefix", "a")], "/anything/at/all", Some("a")),
        (&[("/foo", "Exact", "a")], "/foo", Some("a")),
        (&[("/foo", "Exact", "a")], "/foo/", None),
        (&[("/foo", "Exact", "a")], "/bar", None),
        (&[("/foo/", "Exact", "a")], "/foo", None),
        (&[("/foo", "Prefix", "a")], "/foo", Some("a")),
        (&[("/foo", "Prefix", "a")], "/foo/", Some("a")),
        (&[("/foo/", "Prefix", "a")], "/foo", Some("a")),
        (&[("/foo/", "Prefix", "a")], "/foo/", Some("a")),
        (&[("/aaa/bb", "Prefix", "a")], "/aaa/bbb", None),
        (&[("/aaa/bbb", "Prefix", "a")], "/aaa/bbb/ccc", Some("a")),
        (&[("/aaa/bbb", "Prefix", "a")], "/aaa/bbbxyz", None),
        (
            &[("/", "Prefix", "a"), ("/aaa", "Prefix", "b")],
            "/aaa/ccc",
            Some("b"),
        ),
        (&[("/aaa", "Prefix", "a")], "/ccc", None),
        (
            &[("/foo", "Prefix", "a"), ("/foo", "Exact", "b")],
            "/foo",
            Some("b"),
        ),
        (
            &[("/foo", "Prefix", "a"), ("/foo", "Exact", "b")],
            "/foo/x",
            Some("a"),
        ),
        (
            &[("/foo", "ImplementationSpecific", "a")],
            "/foo/bar",
            Some("a"),
        ),
        (&[("/Foo", "Prefix", "a")], "/foo", None),
    ];
    for (paths, req, want) in cases {
        let t = table(&rule("example.com", paths));
        assert_eq!(
            routed(&t, "example.com", req).as_deref(),
            *want,
            "{paths:?} {req}"
        );
    }
}

#[test]
fn hosts_precise_wildcard_and_none() {
    let rules = format!(
        "{}{}{}",
        rule("foo.bar.com", &[("/", "Prefix", "a")]),
        rule("*.bar.com", &[("/", "Prefix", "b")]),
        rule("", &[("/", "Prefix", "c")]),
    );
    let t = table(&rules);
    assert_eq!(routed(&t, "foo.bar.com", "/").as_deref(), Some("a"));
    assert_eq!(routed(&t, "FOO.Bar.com:8080", "/").as_deref(), Some("a"));
    assert_eq!(routed(&t, "foo.bar.com.", "/").as_deref(), Some("a"));
    assert_eq!(routed(&t, "baz.bar.com", "/").as_deref(), Some("b"));
    // One label exactly: neither the parent nor two labels deep.
    assert_eq!(routed(&t, "bar.com", "/").as_deref(), Some("c"));
    assert_eq!(routed(&t, "x.baz.bar.com", "/").as_deref(), Some("c"));
    assert_eq!(routed(&t, "other.org", "/").as_deref(), Some("c"));
}

#[test]
fn default_backends_in_order() {
    let svcs: String = ["a", "b", "fallback"]
        .iter()
        .map(|s| service(s, 1, 1))
        .collect();
    let with_db = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: d}\nspec:\n  ingressClassName: xingress\n  defaultBackend: {service: {name: b, port: {number: 80}}}\n---\n";
    let o = objects(&format!(
        "{CLASS}{svcs}{}",
        ingress("i", &rule("x.com", &[("/a", "Prefix", "a")]))
    ));
    let opts = TranslateOptions {
        default_backend: Some(NamespacedName::new("default", "fallback")),
        ..Default::default()
    };
    let t = translate(&o, &opts);
    assert_eq!(routed(&t, "nomatch.com", "/").as_deref(), Some("fallback"));
    assert!(
        routed(
            &translate(&o, &TranslateOptions::default()),
            "nomatch.com",
            "/"
        )
        .is_none()
    );
    let o = objects(&format!("{CLASS}{svcs}{with_db}"));
    assert_eq!(
        routed(&translate(&o, &opts), "nomatch.com", "/").as_deref(),
        Some("b")
    );
}

#[test]
fn class_ownership() {
    let svc = service("a", 1, 1);
    let mk = |meta_extra: &str, class: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: i{meta_extra}}}\nspec:\n  {class}rules:\n{}---\n",
            rule("x.com", &[("/", "Prefix", "a")])
        )
    };
    let other_class = "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: nginx}\nspec: {controller: k8s.io/ingress-nginx}\n---\n";
    let default_class = "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: xingress\n  annotations: {ingressclass.kubernetes.io/is-default-class: \"true\"}\nspec: {controller: xingress.dev/controller}\n---\n";
    let cases = [
        (
            format!("{CLASS}{}", mk("", "ingressClassName: xingress\n  ")),
            false,
            true,
        ),
        (
            format!("{other_class}{}", mk("", "ingressClassName: nginx\n  ")),
            true,
            false,
        ),
        (mk("", "ingressClassName: missing\n  "), true, false),
        (
            mk(", annotations: {kubernetes.io/ingress.class: xingress}", ""),
            false,
            true,
        ),
        (
            mk(", annotations: {kubernetes.io/ingress.class: nginx}", ""),
            true,
            false,
        ),
        (mk("", ""), false, false),
        (mk("", ""), true, true),
        (format!("{default_class}{}", mk("", "")), false, true),
    ];
    for (i, (yaml, without_class, ours)) in cases.iter().enumerate() {
        let o = objects(&format!("{svc}{yaml}"));
        let mut opts = TranslateOptions::default();
        opts.classes.watch_without_class = *without_class;
        let t = translate(&o, &opts);
        assert_eq!(routed(&t, "x.com", "/").is_some(), *ours, "case {i}");
        assert_eq!(t.ingresses.len(), usize::from(*ours), "case {i}");
    }
}

#[test]
fn conflicts_older_ingress_wins_and_rules_merge() {
    let svcs: String = ["a", "b"].iter().map(|s| service(s, 1, 1)).collect();
    let mk = |name: &str, ts: &str, paths: &[(&str, &str, &str)]| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, creationTimestamp: \"{ts}\"}}\nspec:\n  ingressClassName: xingress\n  rules:\n{}---\n",
            rule("x.com", paths)
        )
    };
    let yaml = format!(
        "{CLASS}{svcs}{}{}",
        mk(
            "newer",
            "2024-01-02T00:00:00Z",
            &[("/p", "Prefix", "b"), ("/only-b", "Prefix", "b")]
        ),
        mk("older", "2024-01-01T00:00:00Z", &[("/p", "Prefix", "a")]),
    );
    let t = translate(&objects(&yaml), &TranslateOptions::default());
    assert_eq!(routed(&t, "x.com", "/p").as_deref(), Some("a"));
    assert_eq!(routed(&t, "x.com", "/only-b").as_deref(), Some("b"));
    assert!(
        t.warnings
            .iter()
            .any(|w| w.object == "Ingress default/newer" && w.message.contains("older"))
    );
}

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
fn a_bad_path_is_skipped_and_the_rest_served() {
    let t = table(&rule(
        "x.com",
        &[
            ("nope", "Prefix", "a"),
            ("/ok", "Prefix", "b"),
            ("/weird", "Regex", "c"),
        ],
    ));
    assert_eq!(routed(&t, "x.com", "/ok").as_deref(), Some("b"));
    assert!(routed(&t, "x.com", "/weird").is_none());
    assert_eq!(
        t.warnings
            .iter()
            .filter(|w| w.severity == Severity::Error)
            .count(),
        2,
        "{:?}",
        t.warnings
    );
}

#[test]
fn invalid_hosts_are_rejected() {
    let t = table(&format!(
        "{}{}",
        rule("10.0.0.1", &[("/", "Prefix", "a")]),
        rule("ok.com", &[("/", "Prefix", "b")])
    ));
    assert!(routed(&t, "10.0.0.1", "/").is_none());
    assert_eq!(routed(&t, "ok.com", "/").as_deref(), Some("b"));
}

#[test]
fn normalize_host_forms() {
    let mut buf = [0u8; HOST_BUF_LEN];
    assert_eq!(
        normalize_host("Example.COM:80", &mut buf),
        Some("example.com")
    );
    let mut buf = [0u8; HOST_BUF_LEN];
    assert_eq!(
        normalize_host("example.com.", &mut buf),
        Some("example.com")
    );
    let mut buf = [0u8; HOST_BUF_LEN];
    assert_eq!(normalize_host("[::1]:8080", &mut buf), Some("::1"));
    let mut buf = [0u8; HOST_BUF_LEN];
    assert_eq!(normalize_host("", &mut buf), None);
    // Found by the host_and_path fuzz target: a colon or a dot left after
    // the port and the trailing dot are gone made normalisation not
    // idempotent.
    for bad in [
        "a:.",
        "x:y:z",
        "[zz:]:80",
        "..",
        "a..:80",
        "8 :",
        "a b",
        "caf\u{e9}.test",
    ] {
        let mut buf = [0u8; HOST_BUF_LEN];
        assert_eq!(normalize_host(bad, &mut buf), None, "{bad}");
    }
    let mut buf = [0u8; HOST_BUF_LEN];
    assert_eq!(
        normalize_host("[2001:DB8::1]", &mut buf),
        Some("2001:db8::1")
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
fn limit_annotations_give_one_limit_per_ingress() {
    let with = |name: &str, host: &str, annotations: &str| {
        annotated(
            name,
            annotations,
            &rule(host, &[("/", "Prefix", "a"), ("/x", "Exact", "a")]),
        )
    };
    let yaml = format!(
        "{CLASS}{}{}{}{}",
        service("a", 1, 1),
        with(
            "limited",
            "l.test",
            "nginx.ingress.kubernetes.io/limit-connections: \"3\", nginx.ingress.kubernetes.io/limit-rps: \"10\", \
             xingress.dev/limit-burst-multiplier: \"2\", nginx.ingress.kubernetes.io/limit-whitelist: \"10.0.0.0/8, nonsense\""
        ),
        with(
            "plain",
            "p.test",
            "nginx.ingress.kubernetes.io/limit-allowlist: \"10.0.0.0/8\""
        ),
        with(
            "broken",
            "b.test",
            "nginx.ingress.kubernetes.io/limit-rps: \"-4\", nginx.ingress.kubernetes.io/limit-rpm: \"120\""
        ),
    );
    let mut o = Objects::default();
    parse_documents(&yaml, "test.yaml", &mut o);
    let t = translate(&o, &TranslateOptions::default());
    let limit_of = |host: &str, path: &str| {
        let rule = t.table.route(Some(host), path).unwrap().rule.unwrap();
        rule.settings
            .limit
            .map(|i| t.table.limits()[i as usize].clone())
    };
    let (id, l) = limit_of("l.test", "/").unwrap();
    assert_eq!(id, NamespacedName::new("default", "limited"));
    assert_eq!(
        (l.connections, l.rps, l.rpm, l.burst_multiplier),
        (Some(3), Some(10), None, 2)
    );
    assert_eq!(l.exempt.len(), 1);
    // Both rules of the Ingress share one limit.
    assert_eq!(
        t.table
            .route(Some("l.test"), "/x")
            .unwrap()
            .rule
            .unwrap()
            .settings
            .limit,
        t.table
            .route(Some("l.test"), "/")
            .unwrap()
            .rule
            .unwrap()
            .settings
            .limit
    );
    // An allow list alone limits nothing.
    assert!(limit_of("p.test", "/").is_none());
    // A bad value is a warning; the good one still applies.
    let (_, b) = limit_of("b.test", "/").unwrap();
    assert_eq!((b.rps, b.rpm, b.burst_multiplier), (None, Some(120), 5));
    let warned = |needle: &str| t.warnings.iter().any(|w| w.message.contains(needle));
    assert!(warned("limit-rps \"-4\" is not a positive whole number"));
    assert!(warned("limit-allowlist:"));
    assert_eq!(t.table.limits().len(), 2);
}

#[test]
fn put_decimal_writes_any_u64() {
    for n in [0, 7, 10, 80, 8080, 65535, u64::from(u32::MAX), u64::MAX] {
        let mut buf = [0; 20];
        let len = super::put_decimal(&mut buf, n);
        assert_eq!(&buf[..len], n.to_string().as_bytes());
    }
}

#[test]
fn unimplemented_annotations_are_noted_and_unenforceable_access_rules_refuse() {
    let with = |name: &str, annotations: &str| {
        // The auth Ingress also sets the default backend.
        let default_backend = if name == "auth" {
            "  defaultBackend: {service: {name: a, port: {number: 80}}}\n"
        } else {
            ""
        };
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  annotations: {{{annotations}}}\n\
             spec:\n  ingressClassName: xingress\n{default_backend}  rules:\n{}---\n",
            rule(&format!("{name}.test"), &[("/", "Prefix", "a")])
        )
    };
    let yaml = format!(
        "{CLASS}{}{}{}{}{}{}",
        service("a", 1, 1),
        with(
            "verify",
            "nginx.ingress.kubernetes.io/backend-protocol: HTTPS, nginx.ingress.kubernetes.io/proxy-ssl-verify: \"on\", \
             nginx.ingress.kubernetes.io/proxy-ssl-secret: default/ca"
        ),
        with(
            "noverify",
            "nginx.ingress.kubernetes.io/backend-protocol: HTTPS, nginx.ingress.kubernetes.io/proxy-ssl-verify: \"off\""
        ),
        with(
            "ignored",
            "nginx.ingress.kubernetes.io/mirror-target: \"http://m/\", xingress.dev/limit-rate: \"10\", \
             nginx.ingress.kubernetes.io/proxy-body-size: 8m, other.example/x: y"
        ),
        with(
            "auth",
            "nginx.ingress.kubernetes.io/auth-tls-match-cn: \"CN=admin\""
        ),
        with(
            "deny",
            "nginx.ingress.kubernetes.io/denylist-source-range: \"10.1.0.0/16, 192.0.2.7\""
        ),
    );
    let mut o = Objects::default();
    parse_documents(&yaml, "test.yaml", &mut o);
    let t = translate(&o, &TranslateOptions::default());
    let of = |name: &str| {
        t.warnings
            .iter()
            .filter(|w| w.object == format!("Ingress default/{name}"))
            .collect::<Vec<_>>()
    };
    // Ignored ones: one note listing them, served as written.
    let ignored = of("ignored");
    assert_eq!(ignored.len(), 1, "{ignored:?}");
    assert_eq!(ignored[0].severity, Severity::Note);
    assert_eq!(ignored[0].reason, "UnsupportedAnnotation");
    assert!(
        ignored[0]
            .message
            .ends_with("ignored: limit-rate, mirror-target"),
        "{}",
        ignored[0].message
    );
    let pick = |host: &str| t.table.route(Some(host), "/").unwrap().backend.pick();
    assert!(pick("ignored.test").is_ok());
    // An access rule xingress does not implement: an error, and every path
    // of that Ingress refuses.
    let auth = of("auth");
    assert!(
        auth.iter().any(|w| w.severity == Severity::Error
            && w.message
                .starts_with("auth-tls-match-cn needs auth-tls-secret")),
        "{auth:?}"
    );
    assert_eq!(pick("auth.test"), Err(BackendError::Unsupported));
    // Its default backend too.
    assert_eq!(pick("elsewhere.test"), Err(BackendError::Unsupported));
    // Asked to verify the pod's certificate without the CA: refused,
    // never unverified.
    assert_eq!(pick("verify.test"), Err(BackendError::Unsupported));
    assert!(
        of("verify").iter().any(|w| w.severity == Severity::Error
            && w.message == "proxy-ssl-secret default/ca not found; its paths answer 503"),
        "{:?}",
        of("verify")
    );
    assert!(pick("noverify.test").is_ok());
    assert!(of("noverify").is_empty(), "{:?}", of("noverify"));
    // The deny list refuses its sources, and nobody else.
    let rule = t.table.route(Some("deny.test"), "/").unwrap().rule.unwrap();
    assert!(!rule.admits("10.1.200.3".parse().unwrap()));
    assert!(!rule.admits("192.0.2.7".parse().unwrap()));
    assert!(rule.admits("192.0.2.8".parse().unwrap()));
    assert!(of("deny").is_empty(), "{:?}", of("deny"));
}

#[test]
fn a_deny_list_wins_over_the_allow_list() {
    let yaml = format!(
        "{CLASS}{}apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: both\n  annotations:\n    \
         nginx.ingress.kubernetes.io/allowlist-source-range: 10.0.0.0/8\n    \
         xingress.dev/denylist-source-range: 10.9.0.0/16\n\
         spec:\n  ingressClassName: xingress\n  rules:\n{}---\n",
        service("a", 1, 1),
        rule("both.test", &[("/", "Prefix", "a")])
    );
    let t = translate(&objects(&yaml), &TranslateOptions::default());
    let rule = t.table.route(Some("both.test"), "/").unwrap().rule.unwrap();
    assert!(rule.admits("10.1.2.3".parse().unwrap()));
    assert!(!rule.admits("10.9.2.3".parse().unwrap()));
    assert!(!rule.admits("11.1.2.3".parse().unwrap()));
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
}

#[test]
fn proxy_read_timeout_is_whole_seconds_per_ingress() {
    let with = |name: &str, value: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  annotations: {{nginx.ingress.kubernetes.io/proxy-read-timeout: \"{value}\"}}\n\
             spec:\n  ingressClassName: xingress\n  rules:\n{}---\n",
            rule(&format!("{name}.test"), &[("/", "Prefix", "a")])
        )
    };
    let yaml = format!(
        "{CLASS}{}{}{}{}",
        service("a", 1, 1),
        with("long", "3600"),
        with("zero", "0"),
        with("unit", "30s"),
    );
    let mut o = Objects::default();
    parse_documents(&yaml, "test.yaml", &mut o);
    let t = translate(&o, &TranslateOptions::default());
    let timeout = |host: &str| {
        t.table
            .route(Some(host), "/")
            .unwrap()
            .rule
            .unwrap()
            .settings
            .read_timeout
    };
    assert_eq!(
        timeout("long.test"),
        Some(std::time::Duration::from_secs(3600))
    );
    assert_eq!(timeout("zero.test"), None);
    assert_eq!(timeout("unit.test"), None);
    let warned = |name: &str| {
        t.warnings.iter().any(|w| {
            w.object == format!("Ingress default/{name}")
                && w.message.contains("not a positive whole number of seconds")
        })
    };
    assert!(!warned("long") && warned("zero") && warned("unit"));
    // proxy-connect-timeout reads the same way.
    let o = objects(&format!(
        "{CLASS}{}{}",
        service("a", 1, 1),
        annotated(
            "c",
            "nginx.ingress.kubernetes.io/proxy-connect-timeout: \"2\"",
            &rule("c.test", &[("/", "Prefix", "a")])
        )
    ));
    let t = translate(&o, &TranslateOptions::default());
    let rule = t.table.route(Some("c.test"), "/").unwrap().rule.unwrap();
    assert_eq!(
        rule.settings.connect_timeout,
        Some(std::time::Duration::from_secs(2))
    );
    assert_eq!(rule.settings.read_timeout, None);
}

#[test]
fn client_certificate_annotations_bind_hosts_or_refuse_the_ingress() {
    let with = |name: &str, host: &str, annotations: &str| {
        annotated(name, annotations, &rule(host, &[("/", "Prefix", "a")]))
    };
    let p = "nginx.ingress.kubernetes.io/";
    let yaml = format!(
        "{CLASS}{}{}{}{}{}{}{}{}",
        service("a", 1, 1),
        with(
            "a-on",
            "on.test",
            &format!("{p}auth-tls-secret: default/ca")
        ),
        with(
            "b-wild",
            "*.wild.test",
            &format!(
                "{p}auth-tls-secret: ca, {p}auth-tls-verify-client: optional_no_ca, {p}auth-tls-verify-depth: \"2\""
            )
        ),
        with(
            "c-off",
            "off.test",
            &format!("{p}auth-tls-secret: ca, {p}auth-tls-verify-client: \"off\"")
        ),
        with(
            "d-elsewhere",
            "x.test",
            &format!("{p}auth-tls-secret: other/ca")
        ),
        with(
            "e-typo",
            "y.test",
            &format!("{p}auth-tls-secret: ca, {p}auth-tls-verify-client: maybe")
        ),
        with(
            "f-cn",
            "z.test",
            &format!("{p}auth-tls-secret: ca, {p}auth-tls-match-cn: \"CN=(alice|bob)\"")
        ),
        with(
            "g-cn-alone",
            "w.test",
            &format!("{p}auth-tls-match-cn: CN=alice")
        ),
    );
    let mut o = Objects::default();
    parse_documents(&yaml, "test.yaml", &mut o);
    let t = translate(&o, &TranslateOptions::default());
    let hosts: Vec<(&str, ClientVerify, u8)> = t
        .client_auth
        .iter()
        .map(|(h, a)| (h.as_str(), a.verify, a.depth))
        .collect();
    assert_eq!(
        hosts,
        [
            ("*.wild.test", ClientVerify::OptionalNoCa, 2),
            ("on.test", ClientVerify::On, 1),
            ("z.test", ClientVerify::On, 1)
        ]
    );
    // auth-tls-match-cn: a subject pattern on the rule.
    let cn = t.table.route(Some("z.test"), "/").unwrap().rule.unwrap();
    let cn = cn.settings.client_cn.as_ref().expect("a subject pattern");
    assert!(cn.is_match("CN=bob,O=Example"));
    assert!(!cn.is_match("CN=mallory"));
    let rule_auth = |host: &str| {
        t.table
            .route(Some(host), "/")
            .unwrap()
            .rule
            .unwrap()
            .settings
            .client_auth
            .clone()
    };
    assert_eq!(
        rule_auth("on.test").unwrap().secret,
        NamespacedName::new("default", "ca")
    );
    assert!(rule_auth("a.wild.test").is_some());
    // "off" asks for nothing.
    assert!(rule_auth("off.test").is_none());
    assert!(
        t.table
            .route(Some("off.test"), "/")
            .unwrap()
            .backend
            .pick()
            .is_ok()
    );
    // Another namespace's Secret, an unknown mode, a CN match without a
    // certificate to match: refused.
    for host in ["x.test", "y.test", "w.test"] {
        assert_eq!(
            t.table.route(Some(host), "/").unwrap().backend.pick(),
            Err(BackendError::Unsupported),
            "{host}"
        );
    }
    let warned = |needle: &str| t.warnings.iter().any(|w| w.message.contains(needle));
    assert!(warned("must name a Secret of the Ingress's own namespace"));
    assert!(warned("auth-tls-verify-client \"maybe\""));
    assert!(warned("auth-tls-match-cn needs auth-tls-secret"));
}

#[test]
fn redirect_annotations_are_validated_per_ingress() {
    let with = own_host;
    let p = "nginx.ingress.kubernetes.io/";
    let yaml = format!(
        "{CLASS}{}{}{}{}{}{}{}",
        service("a", 1, 1),
        with(
            "perm",
            &format!("{p}permanent-redirect: https://new.example/x")
        ),
        with(
            "code",
            &format!(
                "{p}permanent-redirect: http://new.example/, {p}permanent-redirect-code: \"308\", {p}temporal-redirect: https://ignored.example/"
            )
        ),
        with(
            "temp",
            &format!(
                "{p}temporal-redirect: https://new.example/, {p}temporal-redirect-code: \"399\""
            )
        ),
        with("bad", &format!("{p}permanent-redirect: /relative")),
        with(
            "root",
            &format!("{p}app-root: /app, {p}force-ssl-redirect: \"true\"")
        ),
        with("badroot", &format!("{p}app-root: //evil.example")),
    );
    let mut o = Objects::default();
    parse_documents(&yaml, "test.yaml", &mut o);
    let t = translate(&o, &TranslateOptions::default());
    let rule_of = |name: &str| {
        t.table
            .route(Some(&format!("{name}.test")), "/")
            .unwrap()
            .rule
            .unwrap()
    };
    let redirect = |name: &str| {
        rule_of(name)
            .settings
            .redirect
            .as_ref()
            .map(|r| (r.code, r.location.to_string()))
    };
    assert_eq!(
        redirect("perm"),
        Some((301, "https://new.example/x".into()))
    );
    assert_eq!(redirect("code"), Some((308, "http://new.example/".into())));
    assert_eq!(redirect("temp"), Some((302, "https://new.example/".into())));
    assert_eq!(redirect("bad"), None);
    assert_eq!(rule_of("root").settings.app_root.as_deref(), Some("/app"));
    assert!(rule_of("root").redirect_https);
    assert!(!rule_of("perm").redirect_https);
    assert_eq!(rule_of("badroot").settings.app_root, None);
    let warned = |needle: &str| t.warnings.iter().any(|w| w.message.contains(needle));
    assert!(warned(
        "temporal-redirect-code \"399\" is not a redirect code"
    ));
    assert!(warned(
        "permanent-redirect \"/relative\" is not an absolute http(s) URL"
    ));
    assert!(warned("app-root \"//evil.example\" is not a path"));
}

#[test]
fn use_regex_and_rewrite_target_follow_ingress_nginx() {
    let with = |name: &str, annotations: &str, paths: &[(&str, &str, &str)]| {
        annotated(name, annotations, &rule("r.test", paths))
    };
    let p = "nginx.ingress.kubernetes.io/";
    let yaml = format!(
        "{CLASS}{}{}{}{}{}",
        service("a", 1, 1),
        service("b", 2, 1),
        with(
            "rewrite",
            &format!("{p}rewrite-target: /$2"),
            &[("/something(/|$)(.*)", "ImplementationSpecific", "a")]
        ),
        with(
            "regex",
            &format!("{p}use-regex: \"true\""),
            &[
                ("/api/v[0-9]+/users", "Prefix", "b"),
                ("/exact", "Exact", "b"),
                ("/broken(", "Prefix", "b"),
            ]
        ),
        with("plain", "", &[("/plain", "Prefix", "a")]),
    );
    let mut o = Objects::default();
    parse_documents(&yaml, "test.yaml", &mut o);
    let t = translate(&o, &TranslateOptions::default());
    let hit = |path: &str| {
        t.table
            .route(Some("r.test"), path)
            .map(|r| r.backend.service.name.clone())
    };
    let rewritten = |path: &str, query: Option<&str>| {
        t.table
            .route(Some("r.test"), path)
            .and_then(|r| r.rule)
            .and_then(|r| r.rewritten(path, query))
    };
    assert_eq!(rewritten("/something", None).as_deref(), Some("/"));
    assert_eq!(rewritten("/something/", None).as_deref(), Some("/"));
    assert_eq!(
        rewritten("/something/new/x", None).as_deref(),
        Some("/new/x")
    );
    // Case-insensitive, and the query stays.
    assert_eq!(
        rewritten("/SOMETHING/new", Some("a=1")).as_deref(),
        Some("/new?a=1")
    );
    // `(/|$)` does not match "else": not this rule.
    assert_eq!(hit("/somethingelse"), None);
    assert_eq!(hit("/api/v2/users/7").as_deref(), Some("b"));
    assert_eq!(hit("/API/V10/users").as_deref(), Some("b"));
    assert_eq!(hit("/api/vx/users"), None);
    assert_eq!(rewritten("/api/v2/users", None), None);
    // Exact stays exact; other Ingresses keep Prefix semantics.
    assert_eq!(hit("/exact").as_deref(), Some("b"));
    assert_eq!(hit("/exact/more"), None);
    assert_eq!(hit("/plain/x").as_deref(), Some("a"));
    assert_eq!(hit("/plainer"), None);
    // A pattern that does not compile: a warning, and the path is skipped.
    assert!(
        t.warnings.iter().any(|w| w
            .message
            .contains("\"/broken(\" is not a regular expression")),
        "{:?}",
        t.warnings
    );
    assert_eq!(hit("/broken("), None);
}

#[test]
fn rewrite_targets_expand_captures_like_nginx() {
    let rule = |pattern: &str, target: &str| PathRule {
        path: pattern.into(),
        kind: PathKind::Regex,
        backend: Arc::new(Backend::new(
            NamespacedName::new("d", "b"),
            String::new(),
            BackendTarget::MissingService,
        )),
        ingress: Arc::new(NamespacedName::new("d", "i")),
        redirect_https: false,
        regex: Some(Arc::new(
            regex::RegexBuilder::new(&format!("^(?:{pattern})"))
                .case_insensitive(true)
                .build()
                .unwrap(),
        )),
        canary: None,
        matcher: None,
        stats: 0,
        settings: Arc::new(crate::model::table::RouteSettings {
            rewrite: Some(target.into()),
            ..Default::default()
        }),
        order: 0,
    };
    let r = rule("/(a)(b)?/(.*)", "/x/$1-$2-$3/$9$$z?k=v");
    // A missing group is empty; `$` not before a digit is kept.
    assert_eq!(
        r.rewritten("/a/rest", Some("q=1")).as_deref(),
        Some("/x/a--rest/$$z?k=v&q=1")
    );
    // A target without a leading slash still makes an origin-form target.
    let r = rule("/app/(.*)", "$1");
    assert_eq!(r.rewritten("/app/page", None).as_deref(), Some("/page"));
    // No match: nothing to rewrite.
    assert_eq!(r.rewritten("/other", None), None);
}

#[test]
fn cors_origins_are_exact_or_one_label_wildcards() {
    use annotations::{CorsOrigin, cors_origin};
    assert_eq!(
        cors_origin("HTTPS://App.Example").unwrap(),
        CorsOrigin::Exact("https://app.example".into())
    );
    for bad in [
        "app.example",
        "ftp://x.example",
        "https://",
        "https://x.example:",
        "https://a b",
    ] {
        assert!(cors_origin(bad).is_err(), "{bad}");
    }
    let cors = annotations::Cors {
        origins: vec![
            cors_origin("https://*.corp.example:8443").unwrap(),
            cors_origin("http://localhost:3000").unwrap(),
        ],
        methods: "GET".into(),
        headers: "X".into(),
        expose: None,
        credentials: true,
        max_age: 1,
    };
    assert!(cors.allows("https://a.corp.example:8443"));
    assert!(cors.allows("HTTPS://A-1.CORP.EXAMPLE:8443"));
    assert!(cors.allows("http://localhost:3000"));
    for no in [
        "https://corp.example:8443",
        "https://a.b.corp.example:8443",
        "https://a.corp.example",
        "http://a.corp.example:8443",
        "https://a.corp.example:8443.evil",
        "http://localhost:30000",
    ] {
        assert!(!cors.allows(no), "{no}");
    }
}

#[test]
fn canary_ingresses_attach_to_the_main_rule_of_their_host_and_path() {
    let with = |name: &str, svc: &str, host: &str, annotations: &str| {
        annotated(name, annotations, &rule(host, &[("/", "Prefix", svc)]))
    };
    let c = "nginx.ingress.kubernetes.io/canary: \"true\"";
    let yaml = format!(
        "{CLASS}{}{}{}{}{}{}",
        service("a", 1, 1),
        service("b", 2, 1),
        // The canary is older than the main Ingress: still the canary.
        with(
            "a-canary",
            "b",
            "m.test",
            &format!("{c}, nginx.ingress.kubernetes.io/canary-weight: \"30\"")
        ),
        with("b-main", "a", "m.test", ""),
        with("c-second", "b", "m.test", c),
        with("d-orphan", "b", "o.test", c),
    );
    let mut o = Objects::default();
    parse_documents(&yaml, "test.yaml", &mut o);
    let t = translate(&o, &TranslateOptions::default());
    let route = t.table.route(Some("m.test"), "/").unwrap();
    assert_eq!(route.backend.service.name, "a");
    let canary = route.rule.unwrap().canary.as_ref().expect("a canary");
    assert_eq!(canary.backend.service.name, "b");
    assert_eq!((canary.weight, canary.total), (30, 100));
    assert_eq!(canary.ingress.name, "a-canary");
    // A canary with no main rule does not serve on its own.
    assert!(t.table.route(Some("o.test"), "/").is_none());
    let warned = |needle: &str| t.warnings.iter().any(|w| w.message.contains(needle));
    assert!(warned("already has the canary Ingress default/a-canary"));
    assert!(warned("no main Ingress defines it"));
}

#[test]
fn server_aliases_serve_the_hosts_rules_but_never_take_a_host() {
    let with = |name: &str, host: &str, svc: &str, annotations: &str| {
        annotated(
            name,
            annotations,
            &rule(host, &[("/", "Prefix", svc), ("/api", "Prefix", svc)]),
        )
    };
    let yaml = format!(
        "{CLASS}{}{}{}{}",
        service("a", 1, 1),
        service("b", 2, 1),
        with(
            "main",
            "www.test",
            "a",
            "nginx.ingress.kubernetes.io/server-alias: \"alias.test, other.test, *.wild.test\""
        ),
        with("other", "other.test", "b", ""),
    );
    let mut o = Objects::default();
    parse_documents(&yaml, "test.yaml", &mut o);
    let t = translate(&o, &TranslateOptions::default());
    let svc = |host: &str, path: &str| {
        t.table
            .route(Some(host), path)
            .map(|r| r.backend.service.name.clone())
    };
    assert_eq!(svc("alias.test", "/api/x").as_deref(), Some("a"));
    assert_eq!(svc("alias.test", "/").as_deref(), Some("a"));
    // A host with rules of its own keeps them.
    assert_eq!(svc("other.test", "/").as_deref(), Some("b"));
    let warned = |needle: &str| t.warnings.iter().any(|w| w.message.contains(needle));
    assert!(warned(
        "server-alias other.test is a host with rules of its own"
    ));
    assert!(warned("server-alias \"*.wild.test\" is not a host name"));
    assert!(t.table.host_names().any(|h| h == "alias.test"));
}

#[test]
fn basic_auth_reads_its_secret_or_refuses_the_ingress() {
    use crate::model::basic_auth::Check;
    let secret = |name: &str, data: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\ntype: Opaque\nstringData:\n{data}---\n"
        )
    };
    let auth = own_host;
    let yaml = [
        CLASS.to_string(),
        service("a", 1, 1),
        secret(
            "file",
            "  auth: |\n    alice:{PLAIN}wonderland\n    bob:rl0uE2tF/cGzA\n",
        ),
        secret("map", "  carol: \"{PLAIN}c\"\n  dave: \"{PLAIN}d\"\n"),
        secret("nothing", "  other: x\n"),
        auth(
            "file",
            "nginx.ingress.kubernetes.io/auth-type: basic, nginx.ingress.kubernetes.io/auth-secret: file, \
             nginx.ingress.kubernetes.io/auth-realm: Staff only",
        ),
        auth(
            "map",
            "xingress.dev/auth-type: Basic, xingress.dev/auth-secret: default/map, xingress.dev/auth-secret-type: auth-map",
        ),
        auth(
            "digest",
            "nginx.ingress.kubernetes.io/auth-type: digest, nginx.ingress.kubernetes.io/auth-secret: file",
        ),
        auth("no-type", "nginx.ingress.kubernetes.io/auth-secret: file"),
        auth("no-secret", "nginx.ingress.kubernetes.io/auth-type: basic"),
        auth(
            "missing",
            "nginx.ingress.kubernetes.io/auth-type: basic, nginx.ingress.kubernetes.io/auth-secret: gone",
        ),
        auth(
            "elsewhere",
            "nginx.ingress.kubernetes.io/auth-type: basic, nginx.ingress.kubernetes.io/auth-secret: other/file",
        ),
        auth(
            "no-key",
            "nginx.ingress.kubernetes.io/auth-type: basic, nginx.ingress.kubernetes.io/auth-secret: nothing",
        ),
        auth(
            "bad-kind",
            "nginx.ingress.kubernetes.io/auth-type: basic, nginx.ingress.kubernetes.io/auth-secret: file, \
             nginx.ingress.kubernetes.io/auth-secret-type: ldap",
        ),
        auth("open", ""),
    ]
    .concat();
    let mut o = Objects::default();
    parse_documents(&yaml, "test.yaml", &mut o);
    let t = translate(&o, &TranslateOptions::default());
    let of = |name: &str| messages(&t, name);
    let rule = |host: &str| t.table.route(Some(host), "/").unwrap().rule.unwrap();
    let basic = |user: &str, pw: &str| {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
        format!("Basic {token}").into_bytes()
    };
    let check = |host: &str, user: &str, pw: &str| {
        rule(host)
            .settings
            .basic_auth
            .as_ref()
            .unwrap()
            .check(Some(&basic(user, pw)), |f| f())
    };

    let file = rule("file.test").settings.basic_auth.clone().unwrap();
    assert_eq!(file.challenge, "Basic realm=\"Staff only\"");
    assert_eq!(file.users(), 1);
    assert_eq!(check("file.test", "alice", "wonderland"), Check::Allowed);
    assert_eq!(check("file.test", "alice", "x"), Check::Refused);
    // The DES line is named by number and costs nobody else anything.
    assert_eq!(
        of("file"),
        [
            "auth-secret default/file: entry 2 is ignored: traditional DES crypt hashes are not supported (use htpasswd -B or -m)"
        ]
    );
    assert_eq!(check("map.test", "dave", "d"), Check::Allowed);
    assert_eq!(check("map.test", "carol", "d"), Check::Refused);
    assert!(of("map").is_empty(), "{:?}", of("map"));

    // Authentication that cannot be applied refuses the Ingress (503).
    for (name, says) in [
        ("digest", "auth-type \"digest\" is not implemented"),
        ("no-type", "auth-secret is set without auth-type"),
        ("no-secret", "auth-type: basic needs auth-secret"),
        ("missing", "auth-secret default/gone not found"),
        (
            "elsewhere",
            "must name a Secret of the Ingress's own namespace",
        ),
        ("no-key", "has no key \"auth\""),
        (
            "bad-kind",
            "auth-secret-type \"ldap\" is not auth-file or auth-map",
        ),
    ] {
        let r = rule(&format!("{name}.test"));
        assert_eq!(r.backend.pick(), Err(BackendError::Unsupported), "{name}");
        assert!(r.settings.basic_auth.is_none());
        assert!(
            of(name).iter().any(|m| m.contains(says)),
            "{name}: {:?}",
            of(name)
        );
    }
    assert!(rule("open.test").settings.basic_auth.is_none());
    assert!(rule("open.test").backend.pick().is_ok());
}

#[test]
fn auth_url_settings_are_read_or_refuse_the_ingress() {
    let with = |name: &str, host: &str, annotations: &str| {
        annotated(
            name,
            annotations,
            &rule(host, &[(&format!("/{name}"), "Prefix", "a")]),
        )
    };
    let p = "nginx.ingress.kubernetes.io/";
    let yaml = [
        CLASS.to_string(),
        service("a", 1, 1),
        with(
            "full",
            "full.test",
            &format!(
                "{p}auth-url: \"https://$host/oauth2/auth\", {p}auth-signin: \"https://$host/oauth2/start\", \
                 {p}auth-method: post, {p}auth-response-headers: \"X-Auth-Request-User, X-Auth-Request-Email\", \
                 {p}auth-signin-redirect-param: next, {p}auth-request-redirect: /landing"
            ),
        ),
        with("plain", "plain.test", &format!("{p}auth-url: http://auth.svc:4180/check")),
        with("bad-url", "bad-url.test", &format!("{p}auth-url: \"auth.svc/check\"")),
        with("bad-var", "bad-var.test", &format!("{p}auth-url: \"http://auth/$cookie_session\"")),
        with("http-host", "http-host.test", &format!("{p}auth-url: \"http://$http_host/auth\"")),
        with(
            "bad-method",
            "bad-method.test",
            &format!("{p}auth-url: http://auth/, {p}auth-method: \"GE T\""),
        ),
        with(
            "bad-header",
            "bad-header.test",
            &format!("{p}auth-url: http://auth/, {p}auth-response-headers: \"X-Ok, bad header\""),
        ),
        with(
            "framing-header",
            "framing-header.test",
            &format!("{p}auth-url: http://auth/, {p}auth-response-headers: \"X-Ok, Content-Length\""),
        ),
        with(
            "hop-header",
            "hop-header.test",
            &format!("{p}auth-url: http://auth/, {p}auth-response-headers: \"Transfer-Encoding\""),
        ),
        with(
            "bad-signin",
            "bad-signin.test",
            &format!("{p}auth-url: http://auth/, {p}auth-signin: /start"),
        ),
        // No host: `$host` would be the client's choice.
        with("any-host", "", &format!("{p}auth-url: \"http://$host/auth\"")),
        with("any-fixed", "", &format!("{p}auth-url: \"http://auth.svc/check\"")),
    ]
    .concat();
    let mut o = Objects::default();
    parse_documents(&yaml, "test.yaml", &mut o);
    let t = translate(&o, &TranslateOptions::default());
    let of = |name: &str| messages(&t, name);
    let rule = |host: Option<&str>, path: &str| t.table.route(host, path).unwrap().rule.unwrap();

    let full = rule(Some("full.test"), "/full")
        .settings
        .external_auth
        .clone()
        .unwrap();
    assert_eq!(full.method, http::Method::POST);
    assert_eq!(full.redirect_param, "next");
    assert_eq!(full.request_redirect.as_deref(), Some("/landing"));
    assert_eq!(
        full.response_headers,
        ["x-auth-request-user", "x-auth-request-email"]
    );
    assert!(full.signin.is_some());
    assert!(of("full").is_empty(), "{:?}", of("full"));
    let plain = rule(Some("plain.test"), "/plain")
        .settings
        .external_auth
        .clone()
        .unwrap();
    assert_eq!(plain.method, http::Method::GET);
    assert_eq!(plain.redirect_param, "rd");
    assert!(plain.signin.is_none() && plain.response_headers.is_empty());

    for (name, says) in [
        ("bad-url", "not an absolute http or https URL"),
        ("bad-var", "$cookie_session is not one xingress fills in"),
        ("http-host", "uses $http_host"),
        ("bad-method", "is not an HTTP method"),
        ("bad-header", "\"bad header\" is not a header name"),
        ("framing-header", "\"Content-Length\" frames the message"),
        ("hop-header", "\"Transfer-Encoding\" frames the message"),
        ("bad-signin", "auth-signin \"/start\""),
    ] {
        let r = rule(Some(&format!("{name}.test")), &format!("/{name}"));
        assert_eq!(r.backend.pick(), Err(BackendError::Unsupported), "{name}");
        assert!(r.settings.external_auth.is_none());
        assert!(
            of(name).iter().any(|m| m.contains(says)),
            "{name}: {:?}",
            of(name)
        );
    }
    assert_eq!(
        rule(None, "/any-host").backend.pick(),
        Err(BackendError::Unsupported)
    );
    assert!(
        of("any-host")
            .iter()
            .any(|m| m.contains("the client would choose")),
        "{:?}",
        of("any-host")
    );
    assert!(rule(None, "/any-fixed").backend.pick().is_ok());
}

#[test]
fn a_catch_all_ingress_keeps_its_access_rules_on_the_default_backend() {
    let yaml = format!(
        "{CLASS}{}apiVersion: v1\nkind: Secret\nmetadata: {{name: users}}\ntype: Opaque\nstringData: {{auth: \"alice:{{PLAIN}}x\\n\"}}\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: catch-all\n  annotations:\n    \
         nginx.ingress.kubernetes.io/auth-type: basic\n    nginx.ingress.kubernetes.io/auth-secret: users\n    \
         nginx.ingress.kubernetes.io/allowlist-source-range: 10.0.0.0/8\n    nginx.ingress.kubernetes.io/proxy-body-size: 2k\n\
         spec:\n  ingressClassName: xingress\n  defaultBackend: {{service: {{name: a, port: {{number: 80}}}}}}\n---\n{}",
        service("a", 1, 1),
        ingress("open", &rule("open.test", &[("/", "Prefix", "a")])),
    );
    let t = translate(&objects(&yaml), &TranslateOptions::default());
    let fallback = t.table.route(Some("anything.test"), "/x").unwrap();
    let rule = fallback
        .rule
        .expect("the default backend carries its Ingress's settings");
    assert_eq!(*rule.ingress, NamespacedName::new("default", "catch-all"));
    assert!(rule.settings.basic_auth.is_some());
    assert!(!rule.admits("192.0.2.1".parse().unwrap()));
    assert!(rule.admits("10.1.2.3".parse().unwrap()));
    assert_eq!(rule.settings.body_limit, Some(2048));
    // Other Ingresses' rules are untouched.
    let open = t.table.route(Some("open.test"), "/").unwrap().rule.unwrap();
    assert!(open.settings.basic_auth.is_none() && open.settings.allow.is_none());
    // The controller's own default backend has no settings.
    let o = objects(&format!("{CLASS}{}", service("a", 1, 1)));
    let t = translate(
        &o,
        &TranslateOptions {
            default_backend: Some(NamespacedName::new("default", "a")),
            ..Default::default()
        },
    );
    assert!(t.table.route(Some("x.test"), "/").unwrap().rule.is_none());
}

#[test]
fn ssl_passthrough_hosts_go_to_their_first_paths_backend() {
    let p = "nginx.ingress.kubernetes.io/";
    let yaml = [
        CLASS.to_string(),
        service("a", 1, 1),
        service("b", 2, 1),
        annotated(
            "pass",
            &format!("{p}ssl-passthrough: \"true\", {p}allowlist-source-range: 10.0.0.0/8"),
            &[
                rule(
                    "pass.test",
                    &[("/", "Prefix", "a"), ("/other", "Prefix", "b")],
                ),
                rule("*.wild.test", &[("/", "Prefix", "b")]),
                rule("", &[("/nohost", "Prefix", "a")]),
            ]
            .concat(),
        ),
        annotated(
            "pass2",
            &format!("{p}ssl-passthrough: \"true\""),
            &rule("pass.test", &[("/later", "Prefix", "b")]),
        ),
        annotated(
            "auth",
            &format!("{p}ssl-passthrough: \"true\", {p}auth-url: http://auth.svc/check"),
            &rule("auth.test", &[("/", "Prefix", "a")]),
        ),
        annotated("plain", "", &rule("plain.test", &[("/", "Prefix", "a")])),
    ]
    .concat();
    let mut o = Objects::default();
    parse_documents(&yaml, "test.yaml", &mut o);
    let t = translate(&o, &TranslateOptions::default());
    let of = |name: &str| messages(&t, name);
    let pass = t.table.passthrough("pass.test").unwrap();
    assert_eq!(pass.backend.service.name, "a");
    assert_eq!(*pass.ingress, NamespacedName::new("default", "pass"));
    assert!(pass.admits("10.9.9.9".parse().unwrap()));
    assert!(!pass.admits("192.0.2.1".parse().unwrap()));
    assert_eq!(
        t.table
            .passthrough("x.wild.test")
            .unwrap()
            .backend
            .service
            .name,
        "b"
    );
    assert!(t.table.passthrough("wild.test").is_none());
    // An Ingress wildcard covers one label (a Gateway API one any number).
    assert!(t.table.passthrough("x.y.wild.test").is_none());
    assert!(t.table.passthrough("plain.test").is_none());
    assert!(t.table.has_passthrough());
    let warned = of("pass");
    for says in ["its paths cannot be told apart", "on a rule without a host"] {
        assert!(
            warned.iter().any(|m| m.contains(says)),
            "{says}: {warned:?}"
        );
    }
    assert!(
        of("pass2")
            .iter()
            .any(|m| m.contains("already set by the older Ingress default/pass"))
    );
    // Plain HTTP still routes by path.
    assert_eq!(routed(&t, "pass.test", "/other").as_deref(), Some("b"));
    // Auth cannot apply to bytes the agent never decrypts: refused.
    assert!(t.table.passthrough("auth.test").is_none());
    let r = t.table.route(Some("auth.test"), "/").unwrap();
    assert_eq!(r.backend.pick(), Err(BackendError::Unsupported));
    assert!(
        of("auth")
            .iter()
            .any(|m| m.contains("auth-url cannot be applied")),
        "{:?}",
        of("auth")
    );
}

#[test]
fn proxy_ssl_settings_verify_https_pods_or_refuse_the_ingress() {
    let ca = rcgen::generate_simple_self_signed(vec!["ca.test".to_string()]).unwrap();
    let ca_pem: String = ca
        .cert
        .pem()
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect();
    let secret = |name: &str, ca: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\nstringData:\n  ca.crt: |\n{ca}---\n"
        )
    };
    let p = "nginx.ingress.kubernetes.io/";
    let https = format!("{p}backend-protocol: HTTPS");
    let with = own_host;
    let yaml = [
        CLASS.to_string(),
        service("a", 1, 1),
        secret("ca", &ca_pem),
        secret("junk", "    not a certificate\n"),
        with(
            "full",
            &format!(
                "{https}, {p}proxy-ssl-verify: \"on\", {p}proxy-ssl-secret: default/ca, {p}proxy-ssl-name: pod.internal, \
                 {p}proxy-ssl-server-name: \"on\", {p}proxy-ssl-verify-depth: \"2\""
            ),
        ),
        with("defaults", &format!("{https}, {p}proxy-ssl-verify: \"on\", {p}proxy-ssl-secret: ca")),
        with("no-secret", &format!("{https}, {p}proxy-ssl-verify: \"on\"")),
        with("junk", &format!("{https}, {p}proxy-ssl-verify: \"on\", {p}proxy-ssl-secret: junk")),
        with(
            "bad-name",
            &format!("{https}, {p}proxy-ssl-verify: \"on\", {p}proxy-ssl-secret: ca, {p}proxy-ssl-name: \"a b\""),
        ),
        with("bad-verify", &format!("{https}, {p}proxy-ssl-verify: maybe")),
        with("plain", &format!("{p}proxy-ssl-verify: \"on\", {p}proxy-ssl-secret: ca")),
    ]
    .concat();
    let mut o = Objects::default();
    parse_documents(&yaml, "test.yaml", &mut o);
    let t = translate(&o, &TranslateOptions::default());
    let of = |name: &str| messages(&t, name);
    let rule = |name: &str| {
        t.table
            .route(Some(&format!("{name}.test")), "/")
            .unwrap()
            .rule
            .unwrap()
    };

    let full = rule("full").settings.upstream_tls.clone().unwrap();
    assert!(full.ca_pem.is_some());
    assert_eq!(full.name.as_deref(), Some("pod.internal"));
    assert!(full.sni);
    assert_eq!(full.depth, 2);
    assert!(crate::tls::client_config(&full).is_ok());
    let defaults = rule("defaults").settings.upstream_tls.clone().unwrap();
    assert_eq!(
        (defaults.name.as_deref(), defaults.sni, defaults.depth),
        (None, false, 1)
    );
    for name in ["full", "defaults"] {
        assert!(of(name).is_empty(), "{name}: {:?}", of(name));
        assert!(rule(name).backend.pick().is_ok());
    }
    for (name, says) in [
        ("no-secret", "needs proxy-ssl-secret"),
        ("junk", "has no readable ca.crt"),
        ("bad-name", "is not a DNS name or IP address"),
        ("bad-verify", "is not on or off"),
    ] {
        assert_eq!(
            rule(name).backend.pick(),
            Err(BackendError::Unsupported),
            "{name}"
        );
        assert!(
            of(name).iter().any(|m| m.contains(says)),
            "{name}: {:?}",
            of(name)
        );
    }
    // A plain-HTTP backend has no certificate to check.
    assert!(rule("plain").settings.upstream_tls.is_none());
    assert!(rule("plain").backend.pick().is_ok());
    assert!(of("plain")[0].contains("applies to HTTPS backends"));
}

#[test]
fn canary_by_header_pattern_takes_matching_values_and_falls_through_otherwise() {
    let p = "nginx.ingress.kubernetes.io/";
    let main = |host: &str| {
        annotated(
            &format!("main-{host}"),
            "",
            &rule(host, &[("/", "Prefix", "a")]),
        )
    };
    let canary = |host: &str, annotations: &str| {
        annotated(
            &format!("z-canary-{host}"),
            &format!("{p}canary: \"true\", {annotations}"),
            &rule(host, &[("/", "Prefix", "b")]),
        )
    };
    let yaml = [
        CLASS.to_string(),
        service("a", 1, 1),
        service("b", 2, 1),
        main("p.test"),
        canary(
            "p.test",
            &format!("{p}canary-by-header: X-Canary, {p}canary-by-header-pattern: \"^(beta|alpha)-[0-9]+$\""),
        ),
        main("v.test"),
        // A value wins over a pattern, as ingress-nginx.
        canary(
            "v.test",
            &format!("{p}canary-by-header: X-Canary, {p}canary-by-header-value: exact, {p}canary-by-header-pattern: \".*\""),
        ),
        main("bad.test"),
        canary(
            "bad.test",
            &format!("{p}canary-by-header: X-Canary, {p}canary-by-header-pattern: \"(unclosed\""),
        ),
    ]
    .concat();
    let mut o = Objects::default();
    parse_documents(&yaml, "test.yaml", &mut o);
    let t = translate(&o, &TranslateOptions::default());
    let takes = |host: &str, value: Option<&'static str>| {
        let route = t.table.route(Some(host), "/").unwrap();
        let canary = route.rule.unwrap().canary.as_ref().unwrap();
        let header = move |name: &str| {
            assert_eq!(name, "X-Canary");
            value.map(str::as_bytes)
        };
        canary.takes(&header, &|_| None)
    };
    assert!(takes("p.test", Some("beta-7")));
    assert!(takes("p.test", Some("alpha-12")));
    for other in [Some("gamma-1"), Some("beta-"), Some("always"), None] {
        assert!(!takes("p.test", other), "{other:?}");
    }
    assert!(takes("v.test", Some("exact")));
    assert!(!takes("v.test", Some("anything")));
    assert!(
        messages(&t, "z-canary-bad.test")
            .iter()
            .any(|m| m
                .contains("canary-by-header-pattern \"(unclosed\" is not a regular expression")),
        "{:?}",
        t.warnings
    );
    // Without its pattern the canary still falls back to always/never.
    assert!(takes("bad.test", Some("always")));
}

#[test]
fn upstream_policy_annotations_apply_over_the_configmaps() {
    let p = "nginx.ingress.kubernetes.io/";
    let yaml = format!(
        "{CLASS}{}{}{}{}",
        service("a", 1, 1),
        own_host(
            "tuned",
            &format!(
                "{p}proxy-next-upstream-tries: \"x\", {p}upstream-max-fails: \"2\", {p}proxy-next-upstream: \"error http_503\""
            ),
        ),
        own_host("plain", ""),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: ns}\ndata: {proxy-next-upstream-timeout: \"7\", proxy-next-upstream-tries: \"5\"}\n---\n",
    );
    let mut o = Objects::default();
    parse_documents(&yaml, "test.yaml", &mut o);
    let opts = TranslateOptions {
        configmap: Some(NamespacedName::new("ns", "c")),
        ..TranslateOptions::default()
    };
    let t = translate(&o, &opts);
    let policy = |host: &str| {
        *t.table
            .route(Some(host), "/")
            .unwrap()
            .rule
            .unwrap()
            .settings
            .upstream_policy
            .clone()
            .unwrap()
    };
    let tuned = policy("tuned.test");
    // The ConfigMap's timeout and tries stay where the Ingress says nothing
    // valid; the Ingress's own keys win.
    assert_eq!(tuned.next_timeout, Some(std::time::Duration::from_secs(7)));
    assert_eq!(tuned.tries, 5);
    assert_eq!(tuned.max_fails, 2);
    assert!(tuned.retries_on(annotations::NEXT_HTTP_503));
    assert!(!tuned.retries_on(annotations::NEXT_TIMEOUT));
    assert!(
        messages(&t, "tuned").iter().any(
            |m| m == "proxy-next-upstream-tries \"x\" is not a whole number; the default stays"
        ),
        "{:?}",
        messages(&t, "tuned")
    );
    let plain = policy("plain.test");
    assert_eq!(
        (plain.tries, plain.next_timeout),
        (5, Some(std::time::Duration::from_secs(7)))
    );
}

#[test]
fn a_bad_body_size_annotation_falls_back_to_the_configmaps() {
    let p = "nginx.ingress.kubernetes.io/";
    let yaml = format!(
        "{CLASS}{}{}{}",
        service("a", 1, 1),
        own_host("bad", &format!("{p}proxy-body-size: \"lots\"")),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: ns}\ndata: {proxy-body-size: \"8m\"}\n---\n",
    );
    let mut o = Objects::default();
    parse_documents(&yaml, "test.yaml", &mut o);
    let opts = TranslateOptions {
        configmap: Some(NamespacedName::new("ns", "c")),
        ..TranslateOptions::default()
    };
    let t = translate(&o, &opts);
    let rule = t.table.route(Some("bad.test"), "/").unwrap().rule.unwrap();
    assert_eq!(rule.settings.body_limit, Some(8 << 20));
    assert!(
        messages(&t, "bad")
            .iter()
            .any(|m| m.contains("proxy-body-size \"lots\"") && m.contains("8388608 bytes")),
        "{:?}",
        messages(&t, "bad")
    );
}

#[test]
fn tracing_needs_a_collector_and_says_so_once() {
    let p = "nginx.ingress.kubernetes.io/";
    let cm = |data: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c, namespace: ns}}\ndata: {{{data}}}\n---\n"
        )
    };
    let yaml = |data: &str| {
        format!(
            "{CLASS}{}{}{}{}",
            service("a", 1, 1),
            own_host("plain", ""),
            own_host("asks", &format!("{p}enable-opentelemetry: \"true\"")),
            cm(data),
        )
    };
    let opts = TranslateOptions {
        configmap: Some(NamespacedName::new("ns", "c")),
        ..TranslateOptions::default()
    };
    let run = |data: &str| {
        let mut o = Objects::default();
        parse_documents(&yaml(data), "test.yaml", &mut o);
        translate(&o, &opts)
    };
    let traced = |t: &Translation, host: &str| {
        t.table
            .route(Some(host), "/")
            .unwrap()
            .rule
            .unwrap()
            .settings
            .otel
            .is_some()
    };
    // No collector: nothing traced; the ConfigMap is told once, and the
    // Ingress that asks for itself.
    let t = run("enable-opentelemetry: \"true\"");
    assert!(!traced(&t, "plain.test") && !traced(&t, "asks.test"));
    assert!(
        messages(&t, "plain").is_empty(),
        "{:?}",
        messages(&t, "plain")
    );
    assert!(
        messages(&t, "asks")
            .iter()
            .any(|m| m.contains("otlp-collector-host"))
    );
    assert!(
        t.warnings
            .iter()
            .any(|w| w.object == "ConfigMap ns/c"
                && w.message.contains("without otlp-collector-host"))
    );
    // With one: the ConfigMap turns it on for all, the annotation off for one.
    let t = run("otlp-collector-host: otel.test");
    assert!(!traced(&t, "plain.test") && traced(&t, "asks.test"));
    assert_eq!(
        t.table.otel.as_ref().unwrap().endpoint,
        "http://otel.test:4317"
    );
    let t = run("otlp-collector-host: otel.test, enable-opentelemetry: \"true\"");
    assert!(traced(&t, "plain.test") && traced(&t, "asks.test"));
}
