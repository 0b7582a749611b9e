//! Canary Ingresses: attaching to the main rule, and canary-by-header patterns.

use super::*;

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
