//! Which Ingresses are ours and who wins: IngressClass ownership, conflicts
//! between Ingresses, and default backends (with the settings they carry).

use super::*;

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
