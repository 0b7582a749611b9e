//! Annotations over the controller ConfigMap: upstream retry policy, body
//! size fallback, and OpenTelemetry tracing.

use super::*;

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
