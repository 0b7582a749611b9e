//! Redirect and app-root annotations, `use-regex` paths, and rewrite targets.

use super::*;

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
