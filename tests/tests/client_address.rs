//! The real client address (issue 19): PROXY protocol v1 and v2 on both
//! listeners (frames built here, malformed ones included), trusted
//! X-Forwarded-For, and X-Forwarded-For replaced by default as
//! ingress-nginx does. The address found is what allow lists, the pod's
//! X-Real-IP and the access log see.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::Arc,
    time::Duration,
};

use xingress_tests::{
    agent::{Agent, ManifestDir},
    backend::{self, Backend, Mode, service_yaml},
    http1::{self, Conn},
    tls_client,
};

fn ingress(name: &str, host: &str, annotations: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  annotations: {{kubernetes.io/ingress.class: xingress{annotations}}}\n\
         spec:\n  rules:\n  - host: {host}\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: app, port: {{number: 80}}}}}}}}\n---\n"
    )
}

fn site(extra: &[&str]) -> (Agent, Backend, ManifestDir) {
    let app = backend::start(SocketAddr::from(([127, 0, 0, 1], 0)), "app-1", Mode::Echo).unwrap();
    let dir = ManifestDir::new();
    dir.write(
        "all.yaml",
        &[
            service_yaml("app", 80, &[&app]),
            ingress("open", "open.test", ""),
            ingress(
                "listed",
                "listed.test",
                ", nginx.ingress.kubernetes.io/allowlist-source-range: 192.0.2.0/24",
            ),
        ]
        .concat(),
    );
    let mut agent = Agent::start_local(&dir.path, extra).unwrap();
    agent.wait_ready().unwrap();
    (agent, app, dir)
}

fn v1(src: &str) -> Vec<u8> {
    format!("PROXY TCP4 {src} 10.0.0.1 40000 80\r\n").into_bytes()
}

fn v2(src: [u8; 4], command: u8) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x20 | command);
    h.push(0x11);
    h.extend_from_slice(&12u16.to_be_bytes());
    h.extend_from_slice(&src);
    h.extend_from_slice(&[10, 0, 0, 1]);
    h.extend_from_slice(&40000u16.to_be_bytes());
    h.extend_from_slice(&443u16.to_be_bytes());
    h
}

/// Sends `header` then `request` on one connection; the response, if any.
fn send(agent: &Agent, header: &[u8], request: &str) -> Option<http1::Response> {
    let mut s = TcpStream::connect(agent.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(header).unwrap();
    let mut c = Conn::over(Box::new(s));
    c.raw(request.as_bytes()).ok()
}

fn get(host: &str) -> String {
    format!("GET / HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n")
}

#[test]
fn proxy_protocol_v1_and_v2_name_the_client() {
    let (agent, _app, _dir) = site(&["--use-proxy-protocol"]);
    let r = send(&agent, &v1("192.0.2.7"), &get("open.test")).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.echo_field("x-real-ip").as_deref(), Some("192.0.2.7"));
    assert_eq!(
        r.echo_field("x-forwarded-for").as_deref(),
        Some("192.0.2.7")
    );
    let r = send(&agent, &v2([192, 0, 2, 8], 1), &get("open.test")).unwrap();
    assert_eq!(r.echo_field("x-real-ip").as_deref(), Some("192.0.2.8"));
    // LOCAL (a balancer's health check): the TCP peer.
    let r = send(&agent, &v2([192, 0, 2, 8], 0), &get("open.test")).unwrap();
    assert_eq!(r.echo_field("x-real-ip").as_deref(), Some("127.0.0.1"));
    // Allow lists see the PROXY address.
    assert_eq!(
        send(&agent, &v1("192.0.2.7"), &get("listed.test"))
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        send(&agent, &v1("198.51.100.1"), &get("listed.test"))
            .unwrap()
            .status,
        403
    );
    // The access log too.
    agent.eventually("the access log", || agent.access_log().lines().count() >= 5);
    assert!(
        agent.access_log().starts_with("192.0.2.7 - - ["),
        "{}",
        agent.access_log()
    );

    // Missing, malformed or truncated headers: closed, counted, no answer.
    for bad in [
        &b""[..],
        b"PROXY TCP4 192.0.2.7\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 99999\r\n",
        b"\r\n\r\n\0\r\nQUIT\n\x21\x12\x00\x0c",
    ] {
        let mut s = TcpStream::connect(agent.http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(bad).unwrap();
        s.write_all(get("open.test").as_bytes()).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        assert!(
            out.is_empty(),
            "{:?}: {}",
            String::from_utf8_lossy(bad),
            String::from_utf8_lossy(&out)
        );
    }
    assert_eq!(
        agent.metric("xingress_proxy_protocol_errors_total"),
        Some(4.0)
    );
}

#[test]
fn proxy_protocol_before_tls() {
    let (agent, _app, _dir) = site(&["--use-proxy-protocol"]);
    let mut tcp = TcpStream::connect(agent.https).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(&v2([192, 0, 2, 9], 1)).unwrap();
    let config: Arc<rustls::ClientConfig> = tls_client::config(&[b"http/1.1"]);
    let name = rustls::pki_types::ServerName::try_from("open.test").unwrap();
    let tls = rustls::ClientConnection::new(config, name).unwrap();
    let mut c = Conn::over(Box::new(rustls::StreamOwned::new(tls, tcp)));
    let r = c.get("open.test", "/").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.echo_field("x-real-ip").as_deref(), Some("192.0.2.9"));
    assert_eq!(r.echo_field("x-forwarded-proto").as_deref(), Some("https"));
}

#[test]
fn forwarded_for_is_replaced_by_default_and_appended_on_request() {
    let (agent, _app, _dir) = site(&[]);
    let r = send(&agent, b"", &get("open.test")).unwrap();
    assert_eq!(
        r.echo_field("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    // The client's list does not open an allow list either.
    let r = send(
        &agent,
        b"",
        "GET / HTTP/1.1\r\nHost: listed.test\r\nX-Forwarded-For: 192.0.2.7\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 403);
    drop(agent);
    let (agent, _app, _dir) = site(&["--compute-full-forwarded-for"]);
    let r = send(&agent, b"", &get("open.test")).unwrap();
    assert_eq!(
        r.echo_field("x-forwarded-for").as_deref(),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(r.echo_field("x-real-ip").as_deref(), Some("127.0.0.1"));
}

#[test]
fn trusted_forwarded_headers_name_the_client_and_the_scheme() {
    let (agent, _app, _dir) = site(&[
        "--use-forwarded-headers",
        "--proxy-real-ip-cidr",
        "127.0.0.0/8,10.0.0.0/8",
    ]);
    let ask = |host: &str, xff: &str, extra: &str| {
        send(
            &agent,
            b"",
            &format!("GET / HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-For: {xff}\r\n{extra}\r\n"),
        )
        .unwrap()
    };
    // The right-most untrusted address, over HTTP/1.1's fast path...
    let r = ask(
        "open.test",
        "198.51.100.1, 192.0.2.7, 10.0.0.3",
        "X-Forwarded-Proto: https\r\n",
    );
    assert_eq!(r.echo_field("x-real-ip").as_deref(), Some("192.0.2.7"));
    assert_eq!(
        r.echo_field("x-forwarded-for").as_deref(),
        Some("192.0.2.7")
    );
    assert_eq!(r.echo_field("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(ask("listed.test", "192.0.2.7", "").status, 200);
    assert_eq!(ask("listed.test", "198.51.100.1", "").status, 403);
    // ...and hyper's (HTTP/1.0).
    let r = send(
        &agent,
        b"",
        "GET / HTTP/1.0\r\nHost: listed.test\r\nX-Forwarded-For: 192.0.2.7\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.echo_field("x-real-ip").as_deref(), Some("192.0.2.7"));
    drop(agent);
    // A peer outside proxy-real-ip-cidr is not believed.
    let (agent, _app, _dir) = site(&[
        "--use-forwarded-headers",
        "--proxy-real-ip-cidr",
        "10.0.0.0/8",
    ]);
    let r = send(
        &agent,
        b"",
        "GET / HTTP/1.1\r\nHost: listed.test\r\nX-Forwarded-For: 192.0.2.7\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 403);
}

/// The ConfigMap's `use-forwarded-headers`, `proxy-real-ip-cidr` and
/// `use-proxy-protocol` over the flags, changed live.
#[test]
fn configmap_keys_set_the_client_address_rules_live() {
    let (agent, _app, dir) = site(&["--configmap", "x/c"]);
    let config = |data: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c, namespace: x}}\ndata:\n{data}"
        )
    };
    let real_ip = |version: &str| {
        send(
            &agent,
            b"",
            &format!("GET / {version}\r\nHost: open.test\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n"),
        )
        .and_then(|r| r.echo_field("x-real-ip"))
    };
    // No key: the flags' defaults (X-Forwarded-For not trusted).
    assert_eq!(real_ip("HTTP/1.1").as_deref(), Some("127.0.0.1"));
    dir.write(
        "config.yaml",
        &config("  use-forwarded-headers: \"true\"\n  proxy-real-ip-cidr: 127.0.0.1/32\n"),
    );
    agent.eventually("X-Forwarded-For trusted", || {
        real_ip("HTTP/1.1").as_deref() == Some("203.0.113.9")
    });
    assert_eq!(
        real_ip("HTTP/1.0").as_deref(),
        Some("203.0.113.9"),
        "hyper's path"
    );
    // Loopback no longer trusted.
    dir.replace(
        "config.yaml",
        &config("  use-forwarded-headers: \"true\"\n  proxy-real-ip-cidr: 10.0.0.0/8\n"),
    );
    agent.eventually("the balancer not trusted", || {
        real_ip("HTTP/1.1").as_deref() == Some("127.0.0.1")
    });
    // PROXY protocol from now on: a connection without the header is closed.
    dir.replace("config.yaml", &config("  use-proxy-protocol: \"true\"\n"));
    agent.eventually("PROXY protocol expected", || {
        send(&agent, &v1("198.51.100.7"), &get("open.test"))
            .and_then(|r| r.echo_field("x-real-ip"))
            .as_deref()
            == Some("198.51.100.7")
    });
    assert!(send(&agent, b"", &get("open.test")).is_none());
}

/// `forwarded-for-header`: a CDN's own header names the client (and
/// X-Forwarded-For no longer does), on both paths.
#[test]
fn forwarded_for_header_names_the_header_the_client_is_in() {
    let (agent, _app, dir) = site(&["--configmap", "x/c"]);
    dir.write(
        "config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: x}\ndata:\n  use-forwarded-headers: \"true\"\n  proxy-real-ip-cidr: 127.0.0.1/32\n  forwarded-for-header: CF-Connecting-IP\n",
    );
    let real_ip = |version: &str| {
        send(
            &agent,
            b"",
            &format!(
                "GET / {version}\r\nHost: open.test\r\nX-Forwarded-For: 198.51.100.1\r\nCF-Connecting-IP: 203.0.113.50\r\n\r\n"
            ),
        )
        .and_then(|r| r.echo_field("x-real-ip"))
    };
    agent.eventually("the CDN's header read", || {
        real_ip("HTTP/1.1").as_deref() == Some("203.0.113.50")
    });
    assert_eq!(
        real_ip("HTTP/1.0").as_deref(),
        Some("203.0.113.50"),
        "hyper's path"
    );
}

/// `enable-real-ip`: a trusted balancer's X-Forwarded-For names the
/// client (allow lists see it), but its X-Forwarded-Proto is not believed,
/// on both paths.
#[test]
fn enable_real_ip_takes_the_address_only() {
    let (agent, _app, dir) = site(&["--configmap", "x/c"]);
    dir.write(
        "config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: x}\ndata:\n  enable-real-ip: \"true\"\n  proxy-real-ip-cidr: 127.0.0.1/32\n",
    );
    let ask = |host: &str, version: &str| {
        send(
            &agent,
            b"",
            &format!(
                "GET / {version}\r\nHost: {host}\r\nX-Forwarded-For: 192.0.2.44\r\nX-Forwarded-Proto: https\r\n\r\n"
            ),
        )
    };
    agent.eventually("the balancer's X-Forwarded-For read", || {
        ask("open.test", "HTTP/1.1")
            .and_then(|r| r.echo_field("x-real-ip"))
            .as_deref()
            == Some("192.0.2.44")
    });
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        let r = ask("open.test", version).unwrap();
        assert_eq!(
            r.echo_field("x-real-ip").as_deref(),
            Some("192.0.2.44"),
            "{version}"
        );
        assert_eq!(
            r.echo_field("x-forwarded-proto").as_deref(),
            Some("http"),
            "{version}"
        );
        // The allow list (192.0.2.0/24) sees the client, not loopback.
        assert_eq!(
            ask("listed.test", version).unwrap().status,
            200,
            "{version}"
        );
    }
}
