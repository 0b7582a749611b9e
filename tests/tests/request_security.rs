//! The request-path security fixes of issue 23, each with the exact bytes
//! a hostile client sends, on the HTTP/1.1 fast path, hyper's path
//! (HTTP/1.0, or a connection handed over) and HTTP/2 where it applies.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use xingress_tests::{
    agent::{Agent, ManifestDir, free_port},
    backend::{self, Backend, Mode, service_yaml, service_yaml_at},
    http1::{self, Conn},
};

/// alice's password is "p@ss word" (Apache MD5, from `openssl passwd`).
const USERS: &str = "apiVersion: v1\nkind: Secret\nmetadata: {name: users}\ntype: Opaque\nstringData:\n  auth: |\n    \
    alice:$apr1$sAlT1234$oxRisveopu06NEn52YXjC.\n";

fn ingress(name: &str, host: &str, path: &str, svc: &str, annotations: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  annotations: {{kubernetes.io/ingress.class: xingress{annotations}}}\n\
         spec:\n  rules:\n  - host: {host}\n    http:\n      paths:\n      - {{path: {path}, pathType: Prefix, backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}}}\n---\n"
    )
}

struct Site {
    app: Backend,
    other: Backend,
    agent: Agent,
    _dir: ManifestDir,
}

fn site() -> Site {
    let p = ", nginx.ingress.kubernetes.io/";
    let local = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let app = backend::start(local(0), "app-1", Mode::Echo).unwrap();
    let other = backend::start(local(0), "other-1", Mode::Echo).unwrap();
    let (http, admin) = (local(free_port()), local(free_port()));
    let dir = ManifestDir::new();
    dir.write("users.yaml", USERS);
    dir.write(
        "all.yaml",
        &[
            service_yaml("app", 80, &[&app]),
            service_yaml("other", 80, &[&other]),
            // An endpoint that is the agent's own admin listener.
            service_yaml_at("admin", 80, &[admin]),
            ingress("public", "sec.test", "/public", "app", ""),
            ingress(
                "admin",
                "sec.test",
                "/admin",
                "app",
                &format!("{p}auth-type: basic{p}auth-secret: users"),
            ),
            // upstream-vhost takes hyper's path.
            ingress(
                "hyper",
                "hyper.test",
                "/",
                "app",
                &format!("{p}upstream-vhost: inner.svc"),
            ),
            ingress("other", "other.test", "/", "other", ""),
            ingress(
                "metrics-auth",
                "auth.test",
                "/",
                "app",
                &format!("{p}auth-url: \"http://127.0.0.1:{}/metrics\"", admin.port()),
            ),
            ingress("self", "self.test", "/", "admin", ""),
        ]
        .concat(),
    );
    let mut agent = Agent::start(&dir.path, http, admin, &[], None).unwrap();
    agent.wait_ready().unwrap();
    Site {
        app,
        other,
        agent,
        _dir: dir,
    }
}

fn raw(s: &Site, bytes: &[u8]) -> http1::Response {
    Conn::connect(s.agent.http).unwrap().raw(bytes).unwrap()
}

/// Everything the agent sends back on one connection until it closes.
fn exchange(s: &Site, bytes: &[u8]) -> String {
    let mut c = TcpStream::connect(s.agent.http).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// One h2c request: status and the echo body.
fn h2(s: &Site, uri: &str, headers: &[(&str, &str)]) -> (u16, String) {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let stream = tokio::net::TcpStream::connect(s.agent.http).await.unwrap();
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("h2c handshake");
        tokio::spawn(conn);
        let mut req = http::Request::get(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = send
            .send_request(req.body(Empty::<bytes::Bytes>::new()).unwrap())
            .await
            .expect("h2 request");
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    })
}

fn echo_field(body: &str, key: &str) -> Option<String> {
    let prefix = format!("{key}: ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
}

#[test]
fn x_forwarded_host_is_the_proxys_on_every_protocol() {
    let s = site();
    // HTTP/2: a client's own X-Forwarded-Host never reaches the pod, and
    // :authority alone gives one.
    for headers in [&[("x-forwarded-host", "evil.example")][..], &[]] {
        let (status, body) = h2(&s, "http://sec.test/public/x", headers);
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            echo_field(&body, "x-forwarded-host").as_deref(),
            Some("sec.test")
        );
        assert_eq!(echo_field(&body, "host").as_deref(), Some("sec.test"));
    }
    // HTTP/1.1 on both paths.
    for host in ["sec.test", "hyper.test"] {
        let path = if host == "sec.test" {
            "/public/x"
        } else {
            "/x"
        };
        let r = raw(
            &s,
            format!(
                "GET {path} HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-Host: evil.example\r\n\r\n"
            )
            .as_bytes(),
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.echo_field("x-forwarded-host").as_deref(), Some(host));
    }
    // An HTTP/2 host that disagrees with :authority is malformed (RFC 9113
    // §8.3.1): 400, and the pod sees nothing.
    let before = s.app.requests().len();
    let (status, _) = h2(&s, "http://sec.test/public/x", &[("host", "other.test")]);
    assert_eq!(status, 400);
    assert_eq!(s.app.requests().len(), before);
    assert!(s.other.requests().is_empty());
}

#[test]
fn dot_segments_cannot_escape_path_scoped_auth() {
    let s = site();
    let sneaky = [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/%2E%2E/admin/x",
        "/public/./../admin/x",
        "//admin",
        "/public//..//admin",
        "/%61dmin",
    ];
    for target in sneaky {
        for version in ["1.1", "1.0"] {
            let r = raw(
                &s,
                format!("GET {target} HTTP/{version}\r\nHost: sec.test\r\n\r\n").as_bytes(),
            );
            assert_eq!(r.status, 401, "{target} HTTP/{version}");
        }
        let (status, _) = h2(&s, &format!("http://sec.test{target}"), &[]);
        assert_eq!(status, 401, "{target} over HTTP/2");
    }
    // Encoded slashes that would hide a dot segment, NUL, above the root.
    for target in [
        "/public/..%2fadmin",
        "/public/..%2Fadmin",
        "/public/..%5cadmin",
        "/public/..\\admin",
        "/public/%00/x",
        "/../admin",
        "/public/%zz",
    ] {
        let r = raw(
            &s,
            format!("GET {target} HTTP/1.1\r\nHost: sec.test\r\n\r\n").as_bytes(),
        );
        assert_eq!(r.status, 400, "{target}");
    }
    assert!(
        s.app.requests().is_empty(),
        "nothing reached the pod: {:?}",
        s.app.requests()
    );
    // A path that stays inside /public is served, normalised.
    let r = raw(
        &s,
        b"GET /public/a/./b/../c%7e?q=/../x HTTP/1.1\r\nHost: sec.test\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.echo_field("uri").as_deref(), Some("/public/a/c~?q=/../x"));
    // Credentials still open /admin itself.
    let r = raw(
        &s,
        b"GET /public/../admin HTTP/1.1\r\nHost: sec.test\r\nAuthorization: Basic YWxpY2U6cEBzcyB3b3Jk\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.echo_field("uri").as_deref(), Some("/admin"));
}

#[test]
fn the_agents_own_listeners_are_never_upstreams() {
    let s = site();
    // auth-url at the admin listener: the auth service "fails" (500), the
    // metrics are not fetched, the pod is not reached.
    let r = raw(&s, b"GET / HTTP/1.1\r\nHost: auth.test\r\n\r\n");
    assert_eq!(r.status, 500, "{}", r.text());
    // An endpoint at the admin listener: refused like a dead pod (502).
    let r = raw(&s, b"GET /metrics HTTP/1.1\r\nHost: self.test\r\n\r\n");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(!r.text().contains("xingress_"), "{}", r.text());
    assert!(s.app.requests().is_empty());
    assert!(
        s.agent
            .logs()
            .contains("is one of the agent's own listeners"),
        "{}",
        s.agent.logs()
    );
}

#[test]
fn http11_without_host_is_400_and_absolute_form_wins_over_host() {
    let s = site();
    assert_eq!(raw(&s, b"GET /public/x HTTP/1.1\r\n\r\n").status, 400);
    assert_eq!(
        raw(&s, b"GET /public/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").status,
        400
    );
    // HTTP/1.0 may omit Host: no rule has no host here, so 404.
    assert_eq!(raw(&s, b"GET /public/x HTTP/1.0\r\n\r\n").status, 404);
    assert!(s.app.requests().is_empty());
    // RFC 9112 §3.2.2: the absolute-form target's host is the request's.
    let r = raw(
        &s,
        b"GET http://other.test/x HTTP/1.1\r\nHost: sec.test\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-pod"), Some("other-1"));
    assert_eq!(r.echo_field("host").as_deref(), Some("other.test"));
    assert_eq!(
        r.echo_field("x-forwarded-host").as_deref(),
        Some("other.test")
    );
}

/// A request the first on its connection, so that hyper serves the rest.
const HAND_OVER: &str = "GET /first HTTP/1.1\r\nHost: hyper.test\r\n\r\n";

#[test]
fn bare_lf_trailers_are_400_on_both_paths() {
    let s = site();
    let bad = |host: &str, path: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n\
             3\r\nabc\r\n0\r\nX-Trailer: y\n\r\nGET /smuggled HTTP/1.1\r\nHost: {host}\r\n\r\n"
        )
    };
    // Fast path.
    let out = exchange(&s, bad("sec.test", "/public/up").as_bytes());
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    // hyper's path: the connection was handed over by its first request.
    let out = exchange(
        &s,
        format!("{HAND_OVER}{}", bad("hyper.test", "/up")).as_bytes(),
    );
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(out.matches("HTTP/1.1 200").count(), 1, "{out}");
    assert!(out.contains("HTTP/1.1 400"), "{out}");
    assert!(
        !s.app.requests().iter().any(|r| r.contains("smuggled")),
        "{:?}",
        s.app.requests()
    );
}

#[test]
fn both_framings_are_400_on_both_paths() {
    let s = site();
    for (host, first) in [("sec.test", ""), ("hyper.test", HAND_OVER)] {
        let path = if host == "sec.test" {
            "/public/up"
        } else {
            "/up"
        };
        let out = exchange(
            &s,
            format!(
                "{first}POST {path} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n\
                 0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: {host}\r\n\r\n"
            )
            .as_bytes(),
        );
        assert!(out.contains("HTTP/1.1 400"), "{host}: {out}");
        assert_eq!(
            out.matches("HTTP/1.1 200").count(),
            first.len().min(1),
            "{host}: {out}"
        );
    }
    let seen = s.app.requests();
    assert!(
        !seen
            .iter()
            .any(|r| r.starts_with("POST") || r.contains("smuggled")),
        "{seen:?}"
    );
}
