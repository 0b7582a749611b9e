//! Safe snippets (issue 20, part 4): `configuration-snippet`,
//! `server-snippet` and `auth-snippet` carried out through real sockets,
//! over HTTP/1.1 and h2c; a snippet with a directive outside the closed set
//! refuses its Ingress (503) and nothing else; `allow-snippet-annotations`
//! off (the default) ignores snippets, and turning it on is served live.

use std::net::SocketAddr;

use xingress_tests::{
    agent::{Agent, ManifestDir},
    backend::{self, Backend, Mode, service_yaml},
    h2c,
    http1::{Conn, Response},
};

fn pod(name: &str) -> Backend {
    backend::start(SocketAddr::from(([127, 0, 0, 1], 0)), name, Mode::Echo).unwrap()
}

fn controller(allow: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: xingress-controller, namespace: xingress}}\n\
         data:\n  allow-snippet-annotations: \"{allow}\"\n---\n"
    )
}

/// An Ingress for `host` with `annotations` (YAML lines, indented 4).
fn ingress(name: &str, host: &str, svc: &str, annotations: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  annotations:\n    \
         kubernetes.io/ingress.class: xingress\n{annotations}\
         spec:\n  rules:\n  - host: {host}\n    http:\n      paths:\n      \
         - {{path: /, pathType: Prefix, backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}}}\n---\n"
    )
}

/// A block-scalar annotation of nginx text.
fn snippet(name: &str, text: &str) -> String {
    let mut out = format!("    nginx.ingress.kubernetes.io/{name}: |\n");
    for line in text.lines() {
        out.push_str(&format!("      {line}\n"));
    }
    out
}

fn h1(agent: &Agent, method: &str, host: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut conn = Conn::connect(agent.http).unwrap();
    conn.raw(req.as_bytes()).unwrap()
}

fn all<'a>(r: &'a Response, name: &str) -> Vec<&'a str> {
    r.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

const LOCATION: &str = r#"more_set_headers "X-Frame-Options: DENY";
more_clear_headers "X-Debug-*";
more_set_input_headers "X-Tenant: $http_x_org";
more_clear_input_headers Cookie;
add_header X-Served-Path $uri;
if ($request_method = OPTIONS) {
  return 204;
}
if ($http_user_agent ~* "badbot") {
  return 403 "go away";
}
rewrite ^/old/(.*)$ /new/$1 break;
rewrite ^/moved$ /here permanent;"#;

const SERVER: &str = r#"if ($arg_maintenance = on) {
  return 503 "down for maintenance";
}"#;

#[test]
fn snippets_are_carried_out_on_both_protocols() {
    let app = pod("app-1");
    let auth = pod("auth-1");
    let dir = ManifestDir::new();
    let annotations = format!(
        "{}{}{}    nginx.ingress.kubernetes.io/auth-url: http://{}/check\n    \
         nginx.ingress.kubernetes.io/auth-response-headers: X-Auth-Saw\n",
        snippet("configuration-snippet", LOCATION),
        snippet("server-snippet", SERVER),
        // The echo pod answers with the headers X-Echo-Set-Header names:
        // what the auth request carried comes back in X-Auth-Saw, which
        // auth-response-headers copies to the pod's request.
        snippet(
            "auth-snippet",
            "proxy_set_header X-Echo-Set-Header \"X-Auth-Saw:$http_x_org\";"
        ),
        auth.addr,
    );
    dir.write(
        "all.yaml",
        &format!(
            "{}{}{}",
            controller("true"),
            service_yaml("app", 80, &[&app]),
            ingress("app", "app.test", "app", &annotations),
        ),
    );
    let mut agent =
        Agent::start_local(&dir.path, &["--configmap", "xingress/xingress-controller"]).unwrap();
    agent.wait_ready().unwrap();

    let sent = [
        ("X-Org", "acme"),
        ("Cookie", "session=secret"),
        ("X-Echo-Set-Header", "X-Debug-Trace:1,X-Kept:yes"),
    ];
    for (proto, r) in [
        (
            "HTTP/1.1",
            h1(&agent, "GET", "app.test", "/old/x?k=v", &sent),
        ),
        (
            "h2c",
            h2c::request(agent.http, "GET", "app.test", "/old/x?k=v", &sent),
        ),
    ] {
        assert_eq!(r.status, 200, "{proto}: {}", r.text());
        // rewrite ... break: the pod gets the new path, the query kept.
        assert_eq!(
            r.echo_field("uri").as_deref(),
            Some("/new/x?k=v"),
            "{proto}"
        );
        // Request fields set and cleared.
        assert_eq!(r.echo_field("x-tenant").as_deref(), Some("acme"), "{proto}");
        assert_eq!(r.echo_field("cookie"), None, "{proto}: {}", r.text());
        // auth-snippet: the auth request carried the client's X-Org.
        assert_eq!(
            r.echo_field("x-auth-saw").as_deref(),
            Some("acme"),
            "{proto}: {}",
            r.text()
        );
        // Response fields: set, cleared by prefix, added with $uri after
        // the rewrite; the pod's others kept.
        assert_eq!(all(&r, "x-frame-options"), ["DENY"], "{proto}");
        assert_eq!(all(&r, "x-debug-trace"), [] as [&str; 0], "{proto}");
        assert_eq!(all(&r, "x-kept"), ["yes"], "{proto}");
        assert_eq!(all(&r, "x-served-path"), ["/new/x"], "{proto}");
    }
    // `return` answers without the pod (nor the auth service), with the
    // top-level header directives.
    let before = app.requests().len();
    for (proto, r) in [
        ("HTTP/1.1", h1(&agent, "OPTIONS", "app.test", "/", &[])),
        (
            "h2c",
            h2c::request(agent.http, "OPTIONS", "app.test", "/", &[]),
        ),
    ] {
        assert_eq!(r.status, 204, "{proto}: {}", r.text());
        assert_eq!(all(&r, "x-frame-options"), ["DENY"], "{proto}");
    }
    let r = h1(
        &agent,
        "GET",
        "app.test",
        "/",
        &[("User-Agent", "BadBot/2")],
    );
    assert_eq!((r.status, r.text().as_str()), (403, "go away"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    let r = h1(&agent, "GET", "app.test", "/moved?q=1", &[]);
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("http://app.test/here?q=1"));
    // The server snippet runs first.
    let r = h2c::request(agent.http, "GET", "app.test", "/old/x?maintenance=on", &[]);
    assert_eq!((r.status, r.text().as_str()), (503, "down for maintenance"));
    assert_eq!(
        app.requests().len(),
        before,
        "no answered request reached the pod"
    );
}

#[test]
fn a_refused_snippet_refuses_its_ingress_only_and_snippets_are_opt_in() {
    let app = pod("app-1");
    let other = pod("other-1");
    let dir = ManifestDir::new();
    let headers = snippet(
        "configuration-snippet",
        "more_set_headers \"X-Snippet: on\";",
    );
    let services = format!(
        "{}{}",
        service_yaml("app", 80, &[&app]),
        service_yaml("other", 80, &[&other])
    );
    let bad = snippet(
        "configuration-snippet",
        "more_set_headers \"X-A: b\";\nproxy_pass http://169.254.169.254;",
    );
    dir.write("services.yaml", &services);
    dir.write("controller.yaml", &controller("false"));
    dir.write(
        "ingresses.yaml",
        &format!(
            "{}{}",
            ingress("app", "app.test", "app", &headers),
            ingress("bad", "bad.test", "other", &bad)
        ),
    );
    let mut agent =
        Agent::start_local(&dir.path, &["--configmap", "xingress/xingress-controller"]).unwrap();
    agent.wait_ready().unwrap();
    // Off (the default): snippets are ignored, each named in the log.
    let r = h1(&agent, "GET", "app.test", "/", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-snippet"), None);
    assert_eq!(h1(&agent, "GET", "bad.test", "/", &[]).status, 200);
    assert!(
        agent
            .logs()
            .contains("configuration-snippet is ignored: the controller ConfigMap does not set allow-snippet-annotations"),
        "{}",
        agent.logs()
    );
    // On, live: the good snippet applies; the bad one refuses its Ingress,
    // naming the directive, and only that Ingress.
    dir.replace("controller.yaml", &controller("true"));
    agent.eventually("snippets on", || {
        h1(&agent, "GET", "app.test", "/", &[]).header("x-snippet") == Some("on")
    });
    let r = h1(&agent, "GET", "bad.test", "/", &[]);
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("x-a"), None, "never half-applied");
    assert!(
        agent
            .logs()
            .contains("configuration-snippet refused, line 2: proxy_pass")
            && agent
                .logs()
                .contains("the backend is the Ingress's Service"),
        "{}",
        agent.logs()
    );
    assert_eq!(h1(&agent, "GET", "app.test", "/", &[]).status, 200);
}
