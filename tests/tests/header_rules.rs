//! Header rules and error pages (issue 19, part 4): the controller
//! ConfigMap's `add-headers`, `hide-headers` and `proxy-set-headers`, the
//! `custom-headers` annotation under `global-allowed-response-headers`, and
//! `custom-http-errors` with the `default-backend` annotation or
//! `--default-backend-service`. Each checked on the HTTP/1.1 fast path and
//! on hyper's path (h2c), through real sockets.

use std::net::SocketAddr;

use xingress_tests::{
    agent::{Agent, ManifestDir},
    backend::{self, Backend, Mode, service_yaml},
    http1::{Conn, Response},
};

fn pod(name: &str) -> Backend {
    backend::start(SocketAddr::from(([127, 0, 0, 1], 0)), name, Mode::Echo).unwrap()
}

fn config_map(ns: &str, name: &str, data: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {ns}}}\ndata:\n{data}---\n"
    )
}

fn ingress(name: &str, host: &str, svc: &str, annotations: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  annotations: {{kubernetes.io/ingress.class: xingress{annotations}}}\n\
         spec:\n  rules:\n  - host: {host}\n    http:\n      paths:\n      \
         - {{path: /, pathType: Prefix, backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}}}\n---\n"
    )
}

fn start(dir: &ManifestDir, extra: &[&str]) -> Agent {
    let mut args = vec!["--configmap", "xingress/xingress-controller"];
    args.extend_from_slice(extra);
    let mut agent = Agent::start_local(&dir.path, &args).unwrap();
    agent.wait_ready().unwrap();
    agent
}

/// A request over HTTP/1.1 (the fast path serves plain routes).
fn h1(agent: &Agent, host: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    Conn::connect(agent.http)
        .unwrap()
        .raw(req.as_bytes())
        .unwrap()
}

/// The same request over h2c (hyper's path).
fn h2(agent: &Agent, host: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    xingress_tests::h2c::request(agent.http, "GET", host, path, headers)
}

/// Every value of a response header, in order.
fn all<'a>(r: &'a Response, name: &str) -> Vec<&'a str> {
    r.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Every `name: value` line the echo pod got for `name`.
fn seen(r: &Response, name: &str) -> Vec<String> {
    let prefix = format!("{name}: ");
    r.text()
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix).map(str::to_string))
        .collect()
}

#[test]
fn configmap_header_rules_hold_on_both_proxy_paths_and_change_live() {
    let app = pod("app-1");
    let dir = ManifestDir::new();
    let headers = |served_by: &str| {
        config_map(
            "default",
            "response-headers",
            &format!("  X-Frame-Options: DENY\n  X-Served-By: {served_by}\n"),
        )
    };
    dir.write(
        "all.yaml",
        &format!(
            "{}{}{}",
            config_map(
                "xingress",
                "xingress-controller",
                "  add-headers: default/response-headers\n  proxy-set-headers: default/request-headers\n  hide-headers: X-Powered-By, X-AspNet-Version\n"
            ),
            service_yaml("app", 80, &[&app]),
            ingress("app", "app.test", "app", ""),
        ),
    );
    dir.write("headers.yaml", &headers("edge"));
    dir.write(
        "request.yaml",
        &config_map(
            "default",
            "request-headers",
            "  X-Team: platform\n  X-Client-Supplied: ours\n",
        ),
    );
    let agent = start(&dir, &[]);
    // The pod answers with its own X-Frame-Options and X-Powered-By.
    let sent = [
        ("X-Client-Supplied", "theirs"),
        (
            "X-Echo-Set-Header",
            "X-Frame-Options:SAMEORIGIN,X-Powered-By:php,X-AspNet-Version:4,X-Kept:yes",
        ),
    ];
    for (path, r) in [
        ("fast path", h1(&agent, "app.test", "/", &sent)),
        ("hyper's path", h2(&agent, "app.test", "/", &sent)),
    ] {
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(
            all(&r, "x-frame-options"),
            ["DENY"],
            "{path}: {:?}",
            r.headers
        );
        assert_eq!(all(&r, "x-served-by"), ["edge"], "{path}");
        assert_eq!(all(&r, "x-powered-by"), [] as [&str; 0], "{path}");
        assert_eq!(all(&r, "x-aspnet-version"), [] as [&str; 0], "{path}");
        assert_eq!(all(&r, "x-kept"), ["yes"], "{path}");
        assert_eq!(seen(&r, "x-team"), ["platform"], "{path}: {}", r.text());
        assert_eq!(seen(&r, "x-client-supplied"), ["ours"], "{path}");
    }
    // The ConfigMap add-headers names changes: served without a restart.
    dir.replace("headers.yaml", &headers("edge-2"));
    agent.eventually("the new add-headers value", || {
        all(&h1(&agent, "app.test", "/", &[]), "x-served-by") == ["edge-2"]
    });
    // A field that would frame the request: the key is refused, named in
    // the log, and nothing of it is set; the other keys still apply.
    dir.replace(
        "request.yaml",
        &config_map(
            "default",
            "request-headers",
            "  Content-Length: \"5\"\n  X-Team: platform\n",
        ),
    );
    agent.eventually("the refused proxy-set-headers", || {
        let r = h1(&agent, "app.test", "/", &[]);
        r.status == 200 && seen(&r, "x-team").is_empty()
    });
    assert!(
        agent.logs().contains("key proxy-set-headers")
            && agent.logs().contains("Content-Length frames the message"),
        "{}",
        agent.logs()
    );
}

#[test]
fn custom_headers_set_only_what_the_operator_allows() {
    let app = pod("app-1");
    let dir = ManifestDir::new();
    dir.write(
        "all.yaml",
        &format!(
            "{}{}{}{}",
            config_map(
                "xingress",
                "xingress-controller",
                "  global-allowed-response-headers: X-Allowed, Cache-Control\n"
            ),
            config_map(
                "default",
                "app-headers",
                "  X-Allowed: yes\n  Cache-Control: no-store\n  X-Sneaky: no\n"
            ),
            service_yaml("app", 80, &[&app]),
            ingress(
                "app",
                "app.test",
                "app",
                ", nginx.ingress.kubernetes.io/custom-headers: default/app-headers"
            ),
        ),
    );
    let agent = start(&dir, &[]);
    let sent = [("X-Echo-Set-Header", "Cache-Control:max-age=60")];
    for (path, r) in [
        ("fast path", h1(&agent, "app.test", "/", &sent)),
        ("hyper's path", h2(&agent, "app.test", "/", &sent)),
    ] {
        assert_eq!(all(&r, "x-allowed"), ["yes"], "{path}: {:?}", r.headers);
        assert_eq!(all(&r, "cache-control"), ["no-store"], "{path}");
        assert_eq!(all(&r, "x-sneaky"), [] as [&str; 0], "{path}");
    }
    assert!(
        agent
            .logs()
            .contains("x-sneaky not in the controller ConfigMap's global-allowed-response-headers"),
        "{}",
        agent.logs()
    );
}

#[test]
fn custom_http_errors_ask_the_error_backend_with_ingress_nginx_headers() {
    let app = pod("app-1");
    let errors = pod("errors-1");
    let fallback = pod("fallback-1");
    let dir = ManifestDir::new();
    dir.write(
        "all.yaml",
        &format!(
            "{}{}{}{}{}{}",
            config_map("xingress", "xingress-controller", "  custom-http-errors: \"502\"\n"),
            service_yaml("app", 80, &[&app]),
            service_yaml("errors", 80, &[&errors]),
            service_yaml("fallback", 80, &[&fallback]),
            ingress(
                "shop",
                "shop.test",
                "app",
                ", nginx.ingress.kubernetes.io/custom-http-errors: \"404,503\", nginx.ingress.kubernetes.io/default-backend: errors"
            ),
            ingress("plain", "plain.test", "app", ""),
        ),
    );
    let agent = start(&dir, &["--default-backend-service", "default/fallback"]);
    // The pod's 503: the Ingress's error backend answers, told why.
    for (path, r) in [
        (
            "HTTP/1.1",
            h1(
                &agent,
                "shop.test",
                "/status/503?q=1",
                &[("Accept", "application/json"), ("X-Request-ID", "req-42")],
            ),
        ),
        (
            "h2c",
            h2(
                &agent,
                "shop.test",
                "/status/503?q=1",
                &[("Accept", "application/json"), ("X-Request-ID", "req-42")],
            ),
        ),
    ] {
        assert_eq!(r.status, 503, "{path}: {}", r.text());
        assert_eq!(r.header("x-pod"), Some("errors-1"), "{path}: {}", r.text());
        for (field, want) in [
            ("x-code", "503"),
            ("x-format", "application/json"),
            ("x-original-uri", "/status/503?q=1"),
            ("x-namespace", "default"),
            ("x-ingress-name", "shop"),
            ("x-service-name", "app"),
            ("x-service-port", "80"),
            ("x-request-id", "req-42"),
            ("host", "shop.test"),
            ("method", "GET"),
        ] {
            assert_eq!(
                r.echo_field(field).as_deref(),
                Some(want),
                "{path} {field}: {}",
                r.text()
            );
        }
    }
    // Not listed: the pod's own answer.
    let r = h1(&agent, "shop.test", "/status/500", &[]);
    assert_eq!((r.status, r.header("x-pod")), (500, Some("app-1")));
    let r = h1(&agent, "shop.test", "/", &[]);
    assert_eq!((r.status, r.header("x-pod")), (200, Some("app-1")));
    // The ConfigMap's codes and --default-backend-service for the others.
    let r = h1(&agent, "plain.test", "/status/502", &[]);
    assert_eq!(
        (
            r.status,
            r.header("x-pod"),
            r.echo_field("x-code").as_deref()
        ),
        (502, Some("fallback-1"), Some("502")),
        "{}",
        r.text()
    );
    let r = h1(&agent, "plain.test", "/status/503", &[]);
    assert_eq!((r.status, r.header("x-pod")), (503, Some("app-1")));
    // The error backend gone: the pod's answer passes.
    drop(errors);
    let r = h1(&agent, "shop.test", "/status/404", &[]);
    assert_eq!(
        (r.status, r.header("x-pod")),
        (404, Some("app-1")),
        "{}",
        r.text()
    );
}

/// Kubernetes mode: the ConfigMaps `add-headers` and `custom-headers` name
/// are watched like the controller's, wherever they are, and a change of
/// one is served live.
#[test]
fn configmaps_named_by_keys_are_watched_in_kubernetes_mode() {
    use xingress_tests::fake_api::FakeApi;
    let app = pod("app-1");
    let api = FakeApi::start();
    api.apply_yaml(&format!(
        "{}{}{}{}",
        config_map(
            "xingress",
            "xingress-controller",
            "  add-headers: edge/response-headers\n  global-allowed-response-headers: X-App\n"
        ),
        config_map("edge", "response-headers", "  X-Served-By: edge\n"),
        config_map("default", "app-headers", "  X-App: shop\n"),
        service_yaml("app", 80, &[&app]),
    ));
    api.apply_yaml(&ingress(
        "app",
        "app.test",
        "app",
        ", nginx.ingress.kubernetes.io/custom-headers: default/app-headers",
    ));
    let dir = ManifestDir::new();
    dir.write("kubeconfig", &api.kubeconfig());
    let mut agent = Agent::start_cluster(
        &dir.path.join("kubeconfig"),
        &["--configmap", "xingress/xingress-controller"],
    )
    .unwrap();
    agent.wait_ready().unwrap();
    agent.eventually("both ConfigMaps' fields", || {
        let r = h1(&agent, "app.test", "/", &[]);
        all(&r, "x-served-by") == ["edge"] && all(&r, "x-app") == ["shop"]
    });
    api.apply_yaml(&config_map(
        "edge",
        "response-headers",
        "  X-Served-By: edge-2\n",
    ));
    agent.eventually("the changed ConfigMap", || {
        all(&h1(&agent, "app.test", "/", &[]), "x-served-by") == ["edge-2"]
    });
}

/// The `default-backend` annotation also answers for the Ingress's rules
/// whose Service has no ready endpoint (instead of 503).
#[test]
fn default_backend_answers_when_the_service_has_no_endpoints() {
    let errors = pod("errors-1");
    let dir = ManifestDir::new();
    dir.write(
        "all.yaml",
        &format!(
            "{}{}{}{}",
            service_yaml("empty", 80, &[]),
            service_yaml("errors", 80, &[&errors]),
            ingress(
                "shop",
                "shop.test",
                "empty",
                ", nginx.ingress.kubernetes.io/default-backend: errors"
            ),
            ingress("plain", "plain.test", "empty", ""),
        ),
    );
    let agent = start(&dir, &[]);
    let r = h1(&agent, "shop.test", "/x", &[]);
    assert_eq!(
        (r.status, r.header("x-pod")),
        (200, Some("errors-1")),
        "{}",
        r.text()
    );
    // Without the annotation: 503.
    assert_eq!(h1(&agent, "plain.test", "/x", &[]).status, 503);
}
