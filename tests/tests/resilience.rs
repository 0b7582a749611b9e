//! Dead, black-holed, hung and out-of-step pods (issue 23): concurrent
//! clients see no failure when one of two pods refuses, a black-holed pod
//! costs one connect timeout per fail-timeout window, a hung pod one read
//! timeout, and a pod that answers what nobody asked never answers the
//! next client.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use xingress_tests::{
    agent::{Agent, ManifestDir},
    backend::{self, Backend, Mode, service_yaml_at},
    http1::Conn,
};

fn ingress(annotations: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: app\n  annotations: {{kubernetes.io/ingress.class: xingress{annotations}}}\n\
         spec:\n  rules:\n  - host: app.test\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: app, port: {{number: 80}}}}}}}}\n---\n"
    )
}

fn pod(name: &str) -> Backend {
    backend::start(SocketAddr::from(([127, 0, 0, 1], 0)), name, Mode::Echo).unwrap()
}

fn start(pods: &[SocketAddr], annotations: &str) -> (Agent, ManifestDir) {
    let dir = ManifestDir::new();
    dir.write(
        "app.yaml",
        &format!(
            "{}{}",
            service_yaml_at("app", 80, pods),
            ingress(annotations)
        ),
    );
    let mut agent = Agent::start_local(&dir.path, &[]).unwrap();
    agent.wait_ready().unwrap();
    (agent, dir)
}

/// A loopback port nothing listens on.
fn refused_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A listener that never accepts, its accept queue full: the kernel drops
/// further SYNs, as a firewall or a dead node does (connects hang).
struct BlackHole {
    addr: SocketAddr,
    _listener: socket2::Socket,
    _queued: Vec<TcpStream>,
}

fn black_hole() -> BlackHole {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    s.listen(0).unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    // Fill the queue (backlog 0 holds one) until a connect hangs.
    let mut queued = Vec::new();
    for _ in 0..4 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(c) => queued.push(c),
            Err(_) => break,
        }
    }
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err(),
        "the accept queue did not fill"
    );
    BlackHole {
        addr,
        _listener: s,
        _queued: queued,
    }
}

fn get(agent: &Agent, method: &str, body: &str) -> u16 {
    let req = format!(
        "{method} /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    match Conn::connect(agent.http).and_then(|mut c| c.raw(req.as_bytes())) {
        Ok(r) => r.status,
        Err(_) => 0,
    }
}

#[test]
fn one_of_two_pods_refusing_fails_no_concurrent_request() {
    let live = pod("live-1");
    let (agent, _dir) = start(&[live.addr, refused_port()], "");
    let agent = Arc::new(agent);
    // 16 clients, keep-alive connections, GETs and POSTs with bodies.
    let workers: Vec<_> = (0..16)
        .map(|w| {
            let agent = agent.clone();
            std::thread::spawn(move || {
                let mut c = Conn::connect(agent.http).unwrap();
                let mut failed = Vec::new();
                for i in 0..94 {
                    let req = if (w + i) % 2 == 0 {
                        "GET /x HTTP/1.1\r\nHost: app.test\r\n\r\n".to_string()
                    } else {
                        "POST /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 4\r\n\r\ndata"
                            .to_string()
                    };
                    match c.raw(req.as_bytes()) {
                        Ok(r) if r.status == 200 => {}
                        Ok(r) => failed.push(r.status),
                        Err(_) => {
                            failed.push(0);
                            c = Conn::connect(agent.http).unwrap();
                        }
                    }
                }
                failed
            })
        })
        .collect();
    let failed: Vec<u16> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of 1504 failed: {failed:?}",
        failed.len()
    );
    assert_eq!(live.requests().len(), 1504);
    // Ejected once; it stays out for the fail timeout.
    assert_eq!(agent.metric("xingress_upstream_ejections_total"), Some(1.0));
}

#[test]
fn a_black_holed_pod_costs_one_connect_timeout_per_fail_timeout() {
    let live = pod("live-1");
    let hole = black_hole();
    let (agent, _dir) = start(
        &[live.addr, hole.addr],
        ", nginx.ingress.kubernetes.io/proxy-connect-timeout: \"1\", \
         nginx.ingress.kubernetes.io/upstream-fail-timeout: \"3\"",
    );
    let mut slow = 0;
    let started = Instant::now();
    for method in ["GET", "POST"].iter().cycle().take(20) {
        let t = Instant::now();
        assert_eq!(get(&agent, method, "body"), 200, "{method}");
        if t.elapsed() >= Duration::from_millis(900) {
            slow += 1;
        }
    }
    assert_eq!(slow, 1, "one request waited for the connect timeout");
    assert!(started.elapsed() < Duration::from_secs(3));
    // After the fail timeout, one request tries the pod again (and waits),
    // then it is out again.
    std::thread::sleep(Duration::from_millis(3100));
    let mut slow = 0;
    for _ in 0..10 {
        let t = Instant::now();
        assert_eq!(get(&agent, "GET", ""), 200);
        if t.elapsed() >= Duration::from_millis(900) {
            slow += 1;
        }
    }
    assert_eq!(slow, 1);
    assert_eq!(agent.metric("xingress_upstream_ejections_total"), Some(2.0));
}

/// A pod that reads requests and never answers.
fn hung_pod() -> (SocketAddr, Arc<AtomicBool>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let done = stop.clone();
    std::thread::spawn(move || {
        l.set_nonblocking(true).unwrap();
        let mut held = Vec::new();
        while !done.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((s, _)) => held.push(s),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    (addr, stop)
}

#[test]
fn a_hung_pod_costs_one_read_timeout_then_requests_go_elsewhere() {
    let live = pod("live-1");
    let (hung, stop) = hung_pod();
    let (agent, _dir) = start(
        &[live.addr, hung],
        ", nginx.ingress.kubernetes.io/proxy-read-timeout: \"1\"",
    );
    let mut slow = 0;
    for _ in 0..10 {
        let t = Instant::now();
        // GET: idempotent, so a timeout goes on to the other pod.
        assert_eq!(get(&agent, "GET", ""), 200);
        if t.elapsed() >= Duration::from_millis(900) {
            slow += 1;
        }
    }
    assert_eq!(slow, 1);
    // A POST was sent when the pod hung: it is not sent twice (504), but
    // the pod is already out of rotation, so POSTs now reach the live one.
    for _ in 0..4 {
        assert_eq!(get(&agent, "POST", "x"), 200);
    }
    stop.store(true, Ordering::Relaxed);
}

/// A pod that follows every response with a second one nobody asked for.
fn chatty_pod() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut s = s;
                loop {
                    let mut line = String::new();
                    // Read one bodiless request head.
                    loop {
                        line.clear();
                        match r.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    let out = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                    if s.write_all(out).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                    let evil = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!";
                    if s.write_all(evil).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn a_response_nobody_asked_for_never_answers_the_next_client() {
    let chatty = chatty_pod();
    let (agent, _dir) = start(&[chatty], "");
    for i in 0..10 {
        // A new client connection each time: the pooled pod connection is
        // what would carry the stray response over.
        let mut c = Conn::connect(agent.http).unwrap();
        let r = c.get("app.test", "/").unwrap();
        assert_eq!((r.status, r.text()), (200, "ok".to_string()), "request {i}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut s = TcpStream::connect(agent.http).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(!out.contains("EVIL"), "{out}");
}
