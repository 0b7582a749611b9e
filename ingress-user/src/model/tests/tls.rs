//! TLS on both sides: client-certificate bindings per host, SSL passthrough,
//! and verifying HTTPS pods (`proxy-ssl-*`).

use super::*;

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
    // That it makes a client config is tested in `tls::upstream`.
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
