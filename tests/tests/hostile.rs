//! Hostile HTTP clients against `xingress run --manifests`: slow headers,
//! oversized heads, bodies over the `proxy-body-size` limit, and request
//! smuggling shapes. Each case checks what the client gets, what the pod
//! saw, and that other clients are still served.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use xingress_tests::{
    agent::{Agent, ManifestDir},
    backend::{self, Backend, Mode, service_yaml},
    http1::{self, Conn},
};

struct Site {
    pod: Backend,
    agent: Agent,
    _dir: ManifestDir,
}

fn ingress(name: &str, host: &str, annotations: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  annotations: {{kubernetes.io/ingress.class: xingress{annotations}}}\n\
         spec:\n  rules:\n  - host: {host}\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: app, port: {{number: 80}}}}}}}}\n---\n"
    )
}

fn site() -> Site {
    let pod = backend::start(SocketAddr::from(([127, 0, 0, 1], 0)), "app-1", Mode::Echo).unwrap();
    let dir = ManifestDir::new();
    dir.write(
        "all.yaml",
        &format!(
            "{}{}{}{}{}{}",
            service_yaml("app", 80, &[&pod]),
            ingress("open", "open.test", ""),
            ingress("small", "small.test", ", xingress.dev/proxy-body-size: 1k"),
            ingress(
                "unlimited",
                "unlimited.test",
                ", nginx.ingress.kubernetes.io/proxy-body-size: \"0\""
            ),
            ingress(
                "held",
                "held.test",
                ", nginx.ingress.kubernetes.io/limit-connections: \"2\""
            ),
            ingress(
                "rated",
                "rated.test",
                ", nginx.ingress.kubernetes.io/limit-rps: \"2\", xingress.dev/limit-burst-multiplier: \"1\", \
                 nginx.ingress.kubernetes.io/limit-whitelist: 127.0.0.5/32"
            ),
        ),
    );
    let mut agent = Agent::start_local(&dir.path, &["--client-header-timeout", "1"]).unwrap();
    agent.wait_ready().unwrap();
    Site {
        pod,
        agent,
        _dir: dir,
    }
}

/// Whether the server closed `s` within `within` (reads until EOF or timeout).
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
        if Instant::now() > deadline {
            return false;
        }
    }
}

fn post(host: &str, len: usize) -> Vec<u8> {
    let mut r = format!("POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len}\r\n\r\n")
        .into_bytes();
    r.extend(std::iter::repeat_n(b'x', len));
    r
}

fn chunked(host: &str, len: usize) -> Vec<u8> {
    let mut r =
        format!("POST /upload HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n")
            .into_bytes();
    for piece in vec![b'y'; len].chunks(500) {
        r.extend(format!("{:x}\r\n", piece.len()).bytes());
        r.extend(piece);
        r.extend(b"\r\n");
    }
    r.extend(b"0\r\n\r\n");
    r
}

#[test]
fn slowloris_connections_are_cut_and_others_served() {
    let s = site();
    // 40 clients that trickle their headers one byte at a time.
    let mut slow: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut c = TcpStream::connect(s.agent.http).unwrap();
            c.write_all(b"GET / HTTP/1.1\r\nHost: open.test\r\nX-a: ")
                .unwrap();
            c
        })
        .collect();
    let started = Instant::now();
    // Meanwhile a normal client is served.
    for _ in 0..5 {
        assert_eq!(
            http1::get(s.agent.http, "open.test", "/").unwrap().status,
            200
        );
        for c in &mut slow {
            let _ = c.write_all(b"a");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The header timeout (1 s here) closes every slow connection.
    for c in &mut slow {
        assert!(
            closed_within(c, Duration::from_secs(3)),
            "a slow client kept its connection"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(6));
    // Only the five normal requests reached the pod.
    assert_eq!(s.pod.requests().len(), 5, "{:?}", s.pod.requests());
}

#[test]
fn oversized_heads_get_431() {
    let s = site();
    let big = format!(
        "GET / HTTP/1.1\r\nHost: open.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40 * 1024)
    );
    let r = Conn::connect(s.agent.http)
        .unwrap()
        .raw(big.as_bytes())
        .unwrap();
    assert_eq!(r.status, 431);
    // Many headers of modest size add up the same way.
    let mut many = String::from("GET / HTTP/1.1\r\nHost: open.test\r\n");
    for i in 0..90 {
        many.push_str(&format!("X-H{i}: {}\r\n", "b".repeat(400)));
    }
    many.push_str("\r\n");
    let r = Conn::connect(s.agent.http)
        .unwrap()
        .raw(many.as_bytes())
        .unwrap();
    assert_eq!(r.status, 431);
    assert!(s.pod.requests().is_empty(), "{:?}", s.pod.requests());
    assert_eq!(
        http1::get(s.agent.http, "open.test", "/").unwrap().status,
        200
    );
}

#[test]
fn bodies_over_proxy_body_size_get_413() {
    let s = site();
    let send = |req: &[u8]| Conn::connect(s.agent.http).unwrap().raw(req).unwrap();
    // proxy-body-size: 1k
    assert_eq!(send(&post("small.test", 1000)).status, 200);
    assert_eq!(send(&post("small.test", 1025)).status, 413);
    assert_eq!(send(&chunked("small.test", 1000)).status, 200);
    assert_eq!(send(&chunked("small.test", 3000)).status, 413);
    // No annotation: ingress-nginx's default of 1m.
    assert_eq!(send(&post("open.test", 1 << 20)).status, 200);
    assert_eq!(send(&post("open.test", (1 << 20) + 1)).status, 413);
    // "0": no limit.
    assert_eq!(send(&post("unlimited.test", 3 << 20)).status, 200);
    // A declared length over the limit never reaches the pod.
    let uploads = s.pod.requests().len();
    assert_eq!(send(&post("small.test", 50_000)).status, 413);
    assert_eq!(s.pod.requests().len(), uploads);
}

#[test]
fn smuggling_shapes_are_rejected_or_neutralised() {
    let s = site();
    let send = |req: &str| Conn::connect(s.agent.http).unwrap().raw(req.as_bytes());
    // Two different Content-Lengths, obs-fold, a transfer coding that does
    // not end in chunked, a bad chunk size: 400, nothing reaches the pod.
    for (what, req) in [
        (
            "two Content-Lengths",
            "POST / HTTP/1.1\r\nHost: open.test\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        ),
        (
            "obs-fold",
            "GET / HTTP/1.1\r\nHost: open.test\r\nX-Folded: a\r\n b\r\n\r\n",
        ),
        (
            "chunked not last",
            "POST / HTTP/1.1\r\nHost: open.test\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        ),
        (
            "Content-Length not a number",
            "POST / HTTP/1.1\r\nHost: open.test\r\nContent-Length: 4x\r\n\r\nabcd",
        ),
    ] {
        let r = send(req).unwrap();
        assert_eq!(r.status, 400, "{what}");
    }
    assert!(s.pod.requests().is_empty(), "{:?}", s.pod.requests());

    let r = send(
        "POST / HTTP/1.1\r\nHost: open.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    );
    assert!(
        r.map_or(true, |r| r.status == 400),
        "a bad chunk size is not served"
    );

    // Content-Length with Transfer-Encoding (CL.TE / TE.CL smuggling), in
    // either order: 400 as nginx, and the connection closes, so the bytes
    // hidden behind either framing never become a request (issue 23, 8).
    for head in [
        "Content-Length: 4\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked\r\nContent-Length: 4",
    ] {
        let mut c = TcpStream::connect(s.agent.http).unwrap();
        c.write_all(
            format!(
                "POST /first HTTP/1.1\r\nHost: open.test\r\n{head}\r\n\r\n\
                 20\r\nGET /smuggled HTTP/1.1\r\nX: y\r\n\r\n\r\n0\r\n\r\nGET /after HTTP/1.1\r\nHost: open.test\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        let mut out = String::new();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = c.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "one response: {out}");
    }
    assert!(s.pod.requests().is_empty(), "{:?}", s.pod.requests());
}

fn from(last: u8) -> std::net::IpAddr {
    std::net::IpAddr::from([127, 0, 0, last])
}

#[test]
fn limit_connections_counts_requests_in_flight_per_source() {
    let s = site();
    // Two uploads from 127.0.0.2 stay in flight: half their body is sent.
    let mut held: Vec<Conn> = (0..2)
        .map(|_| {
            let mut c = Conn::connect_from(from(2), s.agent.http).unwrap();
            c.send(b"POST /up HTTP/1.1\r\nHost: held.test\r\nContent-Length: 10\r\n\r\nhello")
                .unwrap();
            c
        })
        .collect();
    s.agent.eventually("both uploads reach the pod", || {
        s.pod.requests().iter().filter(|r| *r == "POST /up").count() == 2
    });
    // A third request from the same source is refused; another source and
    // another Ingress are not affected.
    let third = Conn::connect_from(from(2), s.agent.http)
        .unwrap()
        .get("held.test", "/")
        .unwrap();
    assert_eq!(third.status, 503);
    assert!(third.text().contains("too many requests from your address"));
    let mut other = Conn::connect_from(from(3), s.agent.http).unwrap();
    assert_eq!(other.get("held.test", "/").unwrap().status, 200);
    let mut same = Conn::connect_from(from(2), s.agent.http).unwrap();
    assert_eq!(same.get("open.test", "/").unwrap().status, 200);
    // When one upload completes, the source may send again.
    let done = held[0].raw(b"world").unwrap();
    assert_eq!(done.status, 200);
    assert_eq!(same.get("held.test", "/").unwrap().status, 200);
    assert_eq!(same.get("held.test", "/").unwrap().status, 200);
    drop(held);
}

#[test]
fn limit_connections_holds_streamed_responses_and_upgrades_to_their_end() {
    let s = site();
    // Two requests of 127.0.0.4 that take the hyper path: an HTTP/1.0
    // response still streaming after its head, and a WebSocket.
    let mut streaming = Conn::connect_from(from(4), s.agent.http).unwrap();
    let head = streaming
        .head(b"GET /drip/1500 HTTP/1.0\r\nHost: held.test\r\n\r\n")
        .unwrap();
    assert_eq!(head.status, 200);
    let mut ws = Conn::connect_from(from(4), s.agent.http).unwrap();
    let up = ws
        .head(
            b"GET /chat HTTP/1.1\r\nHost: held.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .unwrap();
    assert_eq!(up.status, 101);
    // Both still count: a third request of that source is refused (a
    // refusal closes its connection, so each try is a new one).
    let third = || {
        Conn::connect_from(from(4), s.agent.http)
            .and_then(|mut c| c.get("held.test", "/"))
            .map(|r| r.status)
            .unwrap_or(0)
    };
    assert_eq!(third(), 503);
    // The streamed response ends: one slot is free again.
    let mut rest = Vec::new();
    streaming.read_rest(&mut rest).unwrap();
    assert!(
        String::from_utf8_lossy(&rest).ends_with("last\n"),
        "{rest:?}"
    );
    assert_eq!(third(), 200);
    // The WebSocket still holds the other: with an upload in flight, the
    // source is at its limit again; closing the WebSocket frees a slot.
    let mut held = Conn::connect_from(from(4), s.agent.http).unwrap();
    held.send(b"POST /up HTTP/1.1\r\nHost: held.test\r\nContent-Length: 2\r\n\r\nh")
        .unwrap();
    s.agent.eventually("the upload reaches the pod", || {
        s.pod.requests().iter().any(|r| r == "POST /up")
    });
    assert_eq!(third(), 503);
    drop(ws);
    s.agent
        .eventually("the closed WebSocket frees its slot", || third() == 200);
}

#[test]
fn limit_rps_refuses_a_source_over_its_rate() {
    let s = site();
    // limit-rps 2 with a burst multiplier of 1: two at once, then 503 until
    // the bucket refills (one every 500 ms).
    let mut fast = Conn::connect_from(from(6), s.agent.http).unwrap();
    let statuses: Vec<u16> = (0..5)
        .map(|_| fast.get("rated.test", "/").unwrap().status)
        .collect();
    assert_eq!(statuses, [200, 200, 503, 503, 503]);
    // Another source has its own budget; the allow-listed one has none.
    let mut other = Conn::connect_from(from(7), s.agent.http).unwrap();
    assert_eq!(other.get("rated.test", "/").unwrap().status, 200);
    let mut exempt = Conn::connect_from(from(5), s.agent.http).unwrap();
    for _ in 0..20 {
        assert_eq!(exempt.get("rated.test", "/").unwrap().status, 200);
    }
    // Refused requests never reach the pod.
    let served = s.pod.requests().len();
    assert_eq!(served, 2 + 1 + 20, "{:?}", s.pod.requests());
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(fast.get("rated.test", "/").unwrap().status, 200);
    assert_eq!(fast.get("rated.test", "/").unwrap().status, 503);
}
