//! Per-Ingress annotations: unsupported ones, rate and connection limits,
//! proxy timeouts, and CORS origins.

use super::*;

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
