//! Endpoint churn and shutdown: retries on refused connections (every
//! method: nothing was sent) and passive health, removed endpoints finishing what they started,
//! and SIGTERM draining in-flight requests before a clean exit.

use std::{
    net::{SocketAddr, TcpListener},
    time::{Duration, Instant},
};

use xingress_tests::{
    agent::{Agent, ManifestDir},
    backend::{self, Backend, Mode, service_yaml_at},
    http1::{self, Conn},
};

const INGRESS: &str = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: app\n  annotations: {kubernetes.io/ingress.class: xingress}\nspec:\n  rules:\n  - host: app.test\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}\n---\n";

/// Service `app` on port 80 with these endpoints.
fn service(pods: &[SocketAddr]) -> String {
    service_yaml_at("app", 80, pods)
}

fn pod(name: &str) -> Backend {
    backend::start(SocketAddr::from(([127, 0, 0, 1], 0)), name, Mode::Echo).unwrap()
}

/// A loopback port nothing listens on (connections are refused).
fn refused_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn start(dir: &ManifestDir, pods: &[SocketAddr]) -> Agent {
    dir.write("app.yaml", &format!("{}{INGRESS}", service(pods)));
    let mut agent = Agent::start_local(&dir.path, &[]).unwrap();
    agent.wait_ready().unwrap();
    agent
}

/// `start` with more annotations on the Ingress.
fn start_annotated(dir: &ManifestDir, pods: &[SocketAddr], annotations: &str) -> Agent {
    let ingress = INGRESS.replace(
        "kubernetes.io/ingress.class: xingress",
        &format!("kubernetes.io/ingress.class: xingress, {annotations}"),
    );
    dir.write("app.yaml", &format!("{}{ingress}", service(pods)));
    let mut agent = Agent::start_local(&dir.path, &[]).unwrap();
    agent.wait_ready().unwrap();
    agent
}

fn request(agent: &Agent, method: &str, path: &str, body: &str) -> u16 {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: app.test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    Conn::connect(agent.http)
        .unwrap()
        .raw(req.as_bytes())
        .unwrap()
        .status
}

#[test]
fn refused_connections_are_retried_for_every_method_and_the_endpoint_ejected() {
    let live = pod("live-1");
    let dead = refused_port();
    let dir = ManifestDir::new();
    let agent = start(&dir, &[live.addr, dead]);
    // A refused connection sent nothing: every request goes on to the live
    // endpoint, bodies and non-idempotent methods included (issue 23).
    for method in ["GET", "PUT", "DELETE", "OPTIONS", "POST", "PATCH"] {
        for body in ["", "data"] {
            for _ in 0..3 {
                assert_eq!(request(&agent, method, "/", body), 200, "{method} {body:?}");
            }
        }
    }
    // The first refusal ejected the dead endpoint (upstream-max-fails 1,
    // upstream-fail-timeout 10 s): later requests did not try it.
    assert_eq!(
        agent.metric("xingress_upstream_ejections_total"),
        Some(1.0),
        "{}",
        agent.logs()
    );
    assert!(
        agent.metric("xingress_upstream_retries_total").unwrap() <= 1.0,
        "{}",
        agent.logs()
    );
    assert!(
        agent.logs().contains("endpoint ejected"),
        "{}",
        agent.logs()
    );
    // Every endpoint refusing: 502 after trying each once.
    let dir2 = ManifestDir::new();
    let all_dead = start(&dir2, &[refused_port(), refused_port()]);
    assert_eq!(request(&all_dead, "GET", "/", ""), 502);
    assert_eq!(request(&all_dead, "POST", "/", "x"), 502);
}

#[test]
fn next_upstream_off_and_max_fails_zero_keep_the_old_failures() {
    let live = pod("live-1");
    let dead = refused_port();
    let dir = ManifestDir::new();
    let agent = start_annotated(
        &dir,
        &[live.addr, dead],
        "nginx.ingress.kubernetes.io/proxy-next-upstream: \"off\", \
         nginx.ingress.kubernetes.io/upstream-max-fails: \"0\"",
    );
    let statuses: Vec<u16> = (0..6).map(|_| request(&agent, "GET", "/", "")).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 502).count(),
        3,
        "round robin, no retry, no ejection: {statuses:?}"
    );
    assert_eq!(agent.metric("xingress_upstream_ejections_total"), Some(0.0));
}

#[test]
fn removed_endpoints_get_no_new_requests_and_finish_in_flight_ones() {
    let (a, b) = (pod("a-1"), pod("b-1"));
    let dir = ManifestDir::new();
    let agent = start(&dir, &[a.addr, b.addr]);
    // A slow request lands on one pod; that pod is then removed.
    let http = agent.http;
    let slow = std::thread::spawn(move || http1::get(http, "app.test", "/delay/1500").unwrap());
    let deadline = Instant::now() + Duration::from_secs(2);
    let victim = loop {
        if a.requests().iter().any(|r| r.contains("/delay/")) {
            break &a;
        }
        if b.requests().iter().any(|r| r.contains("/delay/")) {
            break &b;
        }
        assert!(Instant::now() < deadline, "the slow request reached no pod");
        std::thread::sleep(Duration::from_millis(10));
    };
    let survivor = if std::ptr::eq(victim, &a) { &b } else { &a };
    dir.write(
        "app.yaml",
        &format!("{}{INGRESS}", service(&[survivor.addr])),
    );
    let before = victim.requests().len();
    agent.eventually("the endpoint removal", || {
        (0..4).all(|_| {
            http1::get(agent.http, "app.test", "/")
                .unwrap()
                .header("x-pod")
                == Some(if std::ptr::eq(survivor, &a) {
                    "a-1"
                } else {
                    "b-1"
                })
        })
    });
    let removed_at = victim.requests().len();
    for _ in 0..10 {
        assert_eq!(http1::get(agent.http, "app.test", "/").unwrap().status, 200);
    }
    assert_eq!(
        victim.requests().len(),
        removed_at,
        "no new requests to a removed endpoint"
    );
    let r = slow.join().unwrap();
    assert_eq!(r.status, 200, "the in-flight request completed");
    assert_eq!(
        r.header("x-pod"),
        Some(if std::ptr::eq(victim, &a) {
            "a-1"
        } else {
            "b-1"
        })
    );
    assert!(before >= 1);
}

#[test]
fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let p = pod("app-1");
    let dir = ManifestDir::new();
    let mut agent = start(&dir, &[p.addr]);
    let http = agent.http;
    let slow = std::thread::spawn(move || http1::get(http, "app.test", "/delay/1500").unwrap());
    let deadline = Instant::now() + Duration::from_secs(2);
    while !p.requests().iter().any(|r| r.contains("/delay/")) {
        assert!(Instant::now() < deadline, "the slow request never arrived");
        std::thread::sleep(Duration::from_millis(10));
    }
    let signalled = Instant::now();
    agent.terminate();
    // Readiness turns false at once while the request is still in flight,
    // and no new connection is accepted.
    agent.eventually("/readyz turning 503", || {
        http1::get(agent.admin, "localhost", "/readyz").is_ok_and(|r| r.status == 503)
    });
    assert!(
        !slow.is_finished(),
        "the readiness check came after the request ended"
    );
    agent.eventually("the listener closing", || {
        std::net::TcpStream::connect(agent.http).is_err()
    });
    let r = slow.join().unwrap();
    assert_eq!(r.status, 200, "the in-flight request finished");
    let status = agent.wait(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "exit status {status:?}\n{}", agent.logs());
    assert!(signalled.elapsed() < Duration::from_secs(5));
}

#[test]
fn sighup_is_logged_and_ignored() {
    let p = pod("app-1");
    let dir = ManifestDir::new();
    let mut agent = start(&dir, &[p.addr]);
    // SAFETY: kill(2) with a pid we own.
    unsafe { libc::kill(agent.pid() as libc::pid_t, libc::SIGHUP) };
    agent.eventually("the SIGHUP log line", || {
        agent.logs().contains("SIGHUP ignored")
    });
    assert_eq!(http1::get(agent.http, "app.test", "/").unwrap().status, 200);
    let status = agent.stop(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn shutdown_delay_turns_readiness_off_while_still_serving() {
    let p = pod("app-1");
    let dir = ManifestDir::new();
    dir.write("app.yaml", &format!("{}{INGRESS}", service(&[p.addr])));
    let mut agent = Agent::start_local(
        &dir.path,
        &["--shutdown-delay", "2", "--shutdown-grace-period", "3"],
    )
    .unwrap();
    agent.wait_ready().unwrap();
    let signalled = Instant::now();
    agent.terminate();
    agent.eventually("/readyz turning 503", || {
        http1::get(agent.admin, "localhost", "/readyz").is_ok_and(|r| r.status == 503)
    });
    // During the delay new clients are still served.
    let r = http1::get(agent.http, "app.test", "/").unwrap();
    assert_eq!(r.status, 200);
    assert!(signalled.elapsed() < Duration::from_millis(1500));
    agent.eventually("the listener closing", || {
        std::net::TcpStream::connect(agent.http).is_err()
    });
    assert!(signalled.elapsed() >= Duration::from_secs(2));
    let status = agent.wait(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "{status:?}\n{}", agent.logs());
}

#[test]
fn an_invalid_log_filter_is_an_error_at_start() {
    let out = std::process::Command::new(xingress_tests::agent::xingress_bin())
        .args(["run", "--manifests", "/nonexistent"])
        .env("XINGRESS_LOG", "xingress=loud")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid XINGRESS_LOG \"xingress=loud\""),
        "{stderr}"
    );
}

#[test]
fn hypers_path_takes_an_unsent_body_to_the_next_endpoint() {
    let live = pod("live-1");
    let dead = refused_port();
    let dir = ManifestDir::new();
    // No ejection: every other request meets the refusing endpoint.
    let agent = start_annotated(
        &dir,
        &[live.addr, dead],
        "nginx.ingress.kubernetes.io/upstream-max-fails: \"0\"",
    );
    // HTTP/1.0 takes hyper's path; the bodies must reach the live pod whole.
    for i in 0..6 {
        let body = format!("order number {i}");
        let r = Conn::connect(agent.http)
            .unwrap()
            .raw(
                format!(
                    "POST /o HTTP/1.0\r\nHost: app.test\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .unwrap();
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert!(r.text().contains(&body), "{}", r.text());
    }
    assert!(agent.metric("xingress_upstream_retries_total").unwrap() >= 2.0);
}
