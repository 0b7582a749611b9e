//! Per-Ingress bounds: proxy-read-timeout, proxy-connect-timeout and the
//! request rate limit (limit-rps).

use std::time::Duration;

use xingress_tests::{agent::ManifestDir, http1};

use crate::common::{CLASS, ingress_yaml, one_pod_per_host, ready_agent, send};

#[test]
fn proxy_read_timeout_bounds_the_wait_for_a_slow_pod_per_ingress() {
    let (_live, dir) = one_pod_per_host(&[
        (
            "slow",
            "nginx.ingress.kubernetes.io/proxy-read-timeout: \"1\"",
        ),
        ("patient", ""),
    ]);
    let agent = ready_agent(&dir, &[]);
    // The HTTP/1.1 fast path.
    let started = std::time::Instant::now();
    let r = http1::get(agent.http, "slow.test", "/delay/1500").unwrap();
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(started.elapsed() < Duration::from_millis(1400));
    assert_eq!(
        http1::get(agent.http, "slow.test", "/delay/200")
            .unwrap()
            .status,
        200
    );
    // HTTP/1.0 is served by the hyper path.
    let r = http1::Conn::connect(agent.http)
        .unwrap()
        .raw(b"GET /delay/1500 HTTP/1.0\r\nHost: slow.test\r\n\r\n")
        .unwrap();
    assert_eq!(r.status, 504, "{}", r.text());
    // A pod that stalls in the body: the response is cut after the read
    // timeout, on the fast path (HTTP/1.1) and hyper's (HTTP/1.0).
    for version in ["1.1", "1.0"] {
        let started = std::time::Instant::now();
        let mut conn = std::net::TcpStream::connect(agent.http).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        std::io::Write::write_all(
            &mut conn,
            format!("GET /drip/2500 HTTP/{version}\r\nHost: slow.test\r\n\r\n").as_bytes(),
        )
        .unwrap();
        let mut got = Vec::new();
        let _ = std::io::Read::read_to_end(&mut conn, &mut got);
        let got = String::from_utf8_lossy(&got);
        assert!(got.contains("first"), "HTTP/{version}: {got}");
        assert!(!got.contains("last"), "HTTP/{version}: {got}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_millis(2000),
            "HTTP/{version}: {took:?}"
        );
    }
    // Without the annotation: the default (60 s).
    assert_eq!(
        http1::get(agent.http, "patient.test", "/delay/1500")
            .unwrap()
            .status,
        200
    );
}

#[test]
fn a_request_handed_to_hyper_is_counted_once() {
    // One token per source: a second count of the same request is a 503.
    let p = "nginx.ingress.kubernetes.io/";
    let limit = format!("{p}limit-rps: \"1\", {p}limit-burst-multiplier: \"1\"");
    let (_live, dir) = one_pod_per_host(&[
        // upstream-vhost takes hyper's path.
        ("handed", &format!("{limit}, {p}upstream-vhost: inner.svc")),
        ("fast", &limit),
    ]);
    let agent = ready_agent(&dir, &[]);
    for host in ["handed.test", "fast.test"] {
        let r = send(&agent, "GET", host, "/", "1.1", "");
        assert_eq!(r.status, 200, "{host}: {}", r.text());
        // The limit does bite: the bucket is now empty.
        assert_eq!(
            send(&agent, "GET", host, "/", "1.1", "").status,
            503,
            "{host}"
        );
    }
}

/// A loopback listener whose accept queue is full: a new connection to it
/// gets no answer to its SYN, as a pod on a dead node.
fn unanswering_listener() -> (socket2::Socket, Vec<std::net::TcpStream>) {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut held = Vec::new();
    for _ in 0..16 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => held.push(s),
            Err(_) => return (socket, held),
        }
    }
    panic!("the accept queue of {addr} never filled");
}

#[test]
fn proxy_connect_timeout_bounds_the_connect_per_ingress() {
    let (listener, _held) = unanswering_listener();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let dir = ManifestDir::new();
    dir.write("class.yaml", CLASS);
    dir.write(
        "svc.yaml",
        &xingress_tests::backend::service_yaml_at("dead", 80, &[addr]),
    );
    dir.write(
        "ing.yaml",
        &ingress_yaml(
            "quick",
            "quick.test",
            "dead",
            "nginx.ingress.kubernetes.io/proxy-connect-timeout: \"1\"",
        ),
    );
    let agent = ready_agent(&dir, &[]);
    // The fast path (HTTP/1.1) and hyper's (HTTP/1.0) both give up after
    // the Ingress's second, not the agent's default five.
    for version in ["1.1", "1.0"] {
        let started = std::time::Instant::now();
        let r = send(&agent, "GET", "quick.test", "/", version, "");
        let took = started.elapsed();
        assert_eq!(r.status, 502, "HTTP/{version}: {}", r.text());
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(3),
            "HTTP/{version}: {took:?}"
        );
    }
}
