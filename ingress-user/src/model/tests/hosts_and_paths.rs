//! Host and path matching: the spec's path table, precise and wildcard hosts,
//! host normalisation, invalid hosts and paths, and server aliases.

use super::*;

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
