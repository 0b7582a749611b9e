//! What the pod gets and what the client gets back: forwarded headers,
//! rewrite-target, upstream-vhost and X-Forwarded-Prefix, proxy-http-version,
//! and the pod's Location and Set-Cookie rewritten.

use xingress_tests::{
    agent::ManifestDir,
    http1::{self, Conn},
};

use crate::common::{CLASS, cafe, one_pod_per_host, pods, ready_agent, send, service};

#[test]
fn forwarded_headers_are_added_and_the_request_is_otherwise_unchanged() {
    let cafe = cafe();
    let agent = ready_agent(&cafe.dir, &[]);
    let mut conn = Conn::connect(agent.http).unwrap();
    let body = "hello, tea";
    let r = conn
        .raw(format!(
            "POST /tea/order?cup=2&sugar HTTP/1.1\r\nHost: cafe.example.com\r\nUser-Agent: curl/8.0\r\nX-Forwarded-For: 192.0.2.7\r\n\
             Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: keep-alive, x-drop-me\r\nX-Drop-Me: 1\r\n\r\n{body}",
            body.len()
        ).as_bytes())
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.echo_field("method").as_deref(), Some("POST"));
    assert_eq!(
        r.echo_field("uri").as_deref(),
        Some("/tea/order?cup=2&sugar")
    );
    assert_eq!(r.echo_field("version").as_deref(), Some("HTTP/1.1"));
    assert_eq!(r.echo_field("user-agent").as_deref(), Some("curl/8.0"));
    assert_eq!(r.echo_field("host").as_deref(), Some("cafe.example.com"));
    // ingress-nginx's default: the client's own list is replaced.
    assert_eq!(
        r.echo_field("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(r.echo_field("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(r.echo_field("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        r.echo_field("x-forwarded-host").as_deref(),
        Some("cafe.example.com")
    );
    assert_eq!(
        r.echo_field("x-forwarded-port"),
        Some(agent.http.port().to_string())
    );
    assert_eq!(r.echo_field("x-request-id").map(|v| v.len()), Some(32));
    assert_eq!(r.echo_field("content-length").as_deref(), Some("10"));
    assert_eq!(
        r.echo_field("x-drop-me"),
        None,
        "headers named in Connection are hop-by-hop"
    );
    assert!(r.text().ends_with(body), "body forwarded unchanged");
    assert_eq!(r.header("server"), Some("xingress"));

    // A client-supplied request id is kept; a chunked body keeps its framing.
    let r = conn
        .raw(b"POST /coffee HTTP/1.1\r\nHost: cafe.example.com\r\nX-Request-ID: abc-123\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.echo_field("x-request-id").as_deref(), Some("abc-123"));
    assert_eq!(
        r.echo_field("transfer-encoding").as_deref(),
        Some("chunked")
    );
    assert!(r.text().ends_with("hello world"));
}

#[test]
fn rewrite_target_sends_the_pod_the_rewritten_target() {
    let live = pods("live", 1);
    let dir = ManifestDir::new();
    dir.write("class.yaml", CLASS);
    dir.write("svc.yaml", &service("live", &[&live[0]]));
    dir.write(
        "ing.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: rw\n  annotations:\n    \
         nginx.ingress.kubernetes.io/rewrite-target: /$2\n\
         spec:\n  rules:\n  - host: rw.test\n    http:\n      paths:\n      \
         - {path: \"/something(/|$)(.*)\", pathType: ImplementationSpecific, backend: {service: {name: live, port: {number: 80}}}}\n",
    );
    let agent = ready_agent(&dir, &[]);
    for version in ["1.1", "1.0"] {
        for (path, want) in [
            ("/something", "/"),
            ("/something/", "/"),
            ("/something/new?x=1", "/new?x=1"),
            ("/Something/a/b", "/a/b"),
        ] {
            let r = send(&agent, "GET", "rw.test", path, version, "");
            assert_eq!(r.status, 200, "{path} HTTP/{version}: {}", r.text());
            assert_eq!(
                r.echo_field("uri").as_deref(),
                Some(want),
                "{path} HTTP/{version}"
            );
        }
    }
    // Outside the pattern: no rule.
    assert_eq!(
        http1::get(agent.http, "rw.test", "/somethingelse")
            .unwrap()
            .status,
        404
    );
}

#[test]
fn upstream_vhost_and_forwarded_prefix_reach_the_pod() {
    let p = "nginx.ingress.kubernetes.io/";
    let (_live, dir) = one_pod_per_host(&[
        (
            "vhost",
            &format!("{p}upstream-vhost: internal.svc.local, {p}x-forwarded-prefix: /api"),
        ),
        // Not a host: ignored with a warning, the Ingress still served.
        ("badvhost", &format!("{p}upstream-vhost: \"a/b\"")),
    ]);
    let agent = ready_agent(&dir, &[]);
    for version in ["1.1", "1.0"] {
        let r = send(&agent, "GET", "vhost.test", "/x", version, "");
        assert_eq!(r.status, 200, "HTTP/{version}: {}", r.text());
        assert_eq!(r.echo_field("host").as_deref(), Some("internal.svc.local"));
        assert_eq!(
            r.echo_field("x-forwarded-host").as_deref(),
            Some("vhost.test")
        );
        assert_eq!(r.echo_field("x-forwarded-prefix").as_deref(), Some("/api"));
    }
    let r = http1::get(agent.http, "badvhost.test", "/").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.echo_field("host").as_deref(), Some("badvhost.test"));
}

/// `proxy-redirect-from`/`-to`, `proxy-cookie-path` and
/// `proxy-cookie-domain` rewrite the pod's Location and Set-Cookie, on
/// both proxy paths.
#[test]
fn proxy_redirect_and_cookie_rewrites() {
    let (_live, dir) = one_pod_per_host(&[(
        "app",
        "nginx.ingress.kubernetes.io/proxy-redirect-from: http://pod.internal:8080/, nginx.ingress.kubernetes.io/proxy-redirect-to: https://app.test/shop/, nginx.ingress.kubernetes.io/proxy-cookie-path: \"/ /shop/\", nginx.ingress.kubernetes.io/proxy-cookie-domain: pod.internal app.test",
    )]);
    let agent = ready_agent(&dir, &[]);
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        let r = Conn::connect(agent.http)
            .unwrap()
            .raw(
                format!(
                    "GET / {version}\r\nHost: app.test\r\nX-Echo-Set-Header: Location:http://pod.internal:8080/login?next=%2F,Set-Cookie:sid=7; Path=/cart; Domain=pod.internal\r\n\r\n"
                )
                .as_bytes(),
            )
            .unwrap();
        assert_eq!(
            r.header("location"),
            Some("https://app.test/shop/login?next=%2F"),
            "{version}: {:?}",
            r.headers
        );
        assert_eq!(
            r.header("set-cookie"),
            Some("sid=7; Path=/shop/cart; Domain=app.test"),
            "{version}"
        );
    }
}

/// `proxy-http-version: "1.0"`: the pod gets HTTP/1.0 (from either client
/// protocol); without it, HTTP/1.1.
#[test]
fn proxy_http_version_sends_http_1_0_to_the_pod() {
    let (_live, dir) = one_pod_per_host(&[
        (
            "old",
            "nginx.ingress.kubernetes.io/proxy-http-version: \"1.0\"",
        ),
        ("new", ""),
    ]);
    let agent = ready_agent(&dir, &[]);
    let version = |host: &str| {
        Conn::connect(agent.http)
            .unwrap()
            .get(host, "/")
            .unwrap()
            .echo_field("version")
    };
    assert_eq!(version("old.test").as_deref(), Some("HTTP/1.0"));
    assert_eq!(version("new.test").as_deref(), Some("HTTP/1.1"));
}
