//! The access log (issue 19): one line per request on stdout, on the fast
//! path, hyper's path and HTTP/2, in ingress-nginx's `upstreaminfo` format
//! or JSON; `enable-access-log: "false"` per Ingress; a stdout that nobody
//! reads drops lines (counted) and never slows a request.

use std::{
    net::{SocketAddr, TcpListener},
    process::Stdio,
    time::{Duration, Instant},
};

use xingress_tests::{
    agent::{Agent, ManifestDir},
    backend::{self, Backend, Mode, service_yaml, service_yaml_at},
    http1::Conn,
};

fn ingress(name: &str, host: &str, svc: &str, annotations: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  annotations: {{kubernetes.io/ingress.class: xingress{annotations}}}\n\
         spec:\n  rules:\n  - host: {host}\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}}}\n---\n"
    )
}

struct Site {
    app: Backend,
    dead: SocketAddr,
    dir: ManifestDir,
}

fn site() -> Site {
    let app = backend::start(SocketAddr::from(([127, 0, 0, 1], 0)), "app-1", Mode::Echo).unwrap();
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = ManifestDir::new();
    dir.write(
        "all.yaml",
        &[
            service_yaml("app", 80, &[&app]),
            // The refusing endpoint first: the first request tries it.
            service_yaml_at("flaky", 80, &[dead, app.addr]),
            ingress("app", "app.test", "app", ""),
            ingress("flaky", "flaky.test", "flaky", ""),
            ingress(
                "quiet",
                "quiet.test",
                "app",
                ", nginx.ingress.kubernetes.io/enable-access-log: \"false\"",
            ),
        ]
        .concat(),
    );
    Site { app, dead, dir }
}

fn start(s: &Site, extra: &[&str]) -> Agent {
    let mut agent = Agent::start_local(&s.dir.path, extra).unwrap();
    agent.wait_ready().unwrap();
    agent
}

/// The access log's lines once `n` have been written.
fn lines(agent: &Agent, n: usize) -> Vec<String> {
    agent.eventually(&format!("{n} access log lines"), || {
        agent.access_log().lines().count() >= n
    });
    agent.access_log().lines().map(str::to_string).collect()
}

/// An `upstreaminfo` line split into its fields: the quoted ones and the
/// bracketed ones as single fields.
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let (field, next) = match rest.as_bytes()[0] {
            b'"' => {
                let end = rest[1..].find('"').unwrap() + 1;
                (&rest[1..end], &rest[end + 1..])
            }
            b'[' => {
                let end = rest.find(']').unwrap();
                (&rest[1..end], &rest[end + 1..])
            }
            _ => match rest.find(' ') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            },
        };
        out.push(field.to_string());
        rest = next;
    }
    out
}

#[test]
fn upstreaminfo_lines_for_every_path_and_protocol() {
    let s = site();
    let agent = start(&s, &[]);
    let mut c = Conn::connect(agent.http).unwrap();
    let r = c
        .raw(b"GET /x?q=1 HTTP/1.1\r\nHost: app.test\r\nUser-Agent: probe/1\r\nReferer: http://r.test/\r\n\r\n")
        .unwrap();
    assert_eq!(r.status, 200);
    let seen_id = r.echo_field("x-request-id").unwrap();
    let body_len = r.body.len();
    let l = lines(&agent, 1);
    let f = fields(&l[0]);
    // $remote_addr - $remote_user [$time_local] "$request" $status
    // $body_bytes_sent "$http_referer" "$http_user_agent" $request_length
    // $request_time [$proxy_upstream_name] [$proxy_alternative_upstream_name]
    // $upstream_addr $upstream_response_length $upstream_response_time
    // $upstream_status $req_id
    assert_eq!(f.len(), 18, "{l:?}");
    assert_eq!(f[0], "127.0.0.1");
    assert_eq!((f[1].as_str(), f[2].as_str()), ("-", "-"));
    assert!(f[3].ends_with(" +0000") && f[3].len() == 26, "{}", f[3]);
    assert_eq!(f[4], "GET /x?q=1 HTTP/1.1");
    assert_eq!(f[5], "200");
    assert_eq!(f[6], body_len.to_string());
    assert_eq!(
        (f[7].as_str(), f[8].as_str()),
        ("http://r.test/", "probe/1")
    );
    assert!(f[9].parse::<u64>().unwrap() > 50);
    assert!(f[10].contains('.'));
    assert_eq!((f[11].as_str(), f[12].as_str()), ("default-app-80", ""));
    assert_eq!(f[13], s.app.addr.to_string());
    assert_eq!(f[14], body_len.to_string());
    assert_eq!(f[16], "200");
    assert_eq!(
        f[17], seen_id,
        "the pod's X-Request-ID is the log's $req_id"
    );

    // A retry: both endpoints, their statuses, one line. Round robin sends
    // one of the first two requests to the refusing endpoint.
    for _ in 0..2 {
        let r = Conn::connect(agent.http)
            .unwrap()
            .get("flaky.test", "/")
            .unwrap();
        assert_eq!(r.status, 200);
    }
    let l = lines(&agent, 3);
    let retried: Vec<Vec<String>> = l[1..3]
        .iter()
        .map(|l| fields(l))
        .filter(|f| f.len() == 22)
        .collect();
    // The lists ("A, B") split into two fields each.
    assert_eq!(retried.len(), 1, "{l:?}");
    let f = &retried[0];
    assert_eq!(f[11], "default-flaky-80");
    assert_eq!(
        f[13..15].join(" "),
        format!("{}, {}", s.dead, s.app.addr),
        "{f:?}"
    );
    assert_eq!(f[19..21].join(" "), "502, 200", "{f:?}");

    // hyper's path (HTTP/1.0), a local 404, a malformed head, a quiet rule.
    let r = Conn::connect(agent.http)
        .unwrap()
        .raw(b"GET /old HTTP/1.0\r\nHost: app.test\r\n\r\n")
        .unwrap();
    assert_eq!(r.status, 200);
    let r = Conn::connect(agent.http)
        .unwrap()
        .get("nowhere.test", "/")
        .unwrap();
    assert_eq!(r.status, 404);
    let r = Conn::connect(agent.http)
        .unwrap()
        .raw(b"GET / HTTP/1.1\r\nHost: app.test\r\nBad Header\r\n\r\n")
        .unwrap();
    assert_eq!(r.status, 400);
    let r = Conn::connect(agent.http)
        .unwrap()
        .get("quiet.test", "/")
        .unwrap();
    assert_eq!(r.status, 200);
    let l = lines(&agent, 6);
    std::thread::sleep(Duration::from_millis(300));
    let l2 = agent.access_log();
    assert_eq!(l2.lines().count(), 6, "no line for quiet.test: {l2}");
    let f = fields(&l[3]);
    assert_eq!((f[4].as_str(), f[5].as_str()), ("GET /old HTTP/1.0", "200"));
    assert_eq!(f[13], s.app.addr.to_string());
    let f = fields(&l[4]);
    assert_eq!(
        (f[5].as_str(), f[11].as_str(), f[13].as_str()),
        ("404", "", "-")
    );
    let f = fields(&l[5]);
    assert_eq!((f[4].as_str(), f[5].as_str()), ("-", "400"));
    assert_eq!(
        agent.metric("xingress_access_log_lines_total"),
        Some(6.0),
        "{}",
        agent.logs()
    );
}

#[test]
fn json_lines_parse_with_stable_names() {
    let s = site();
    let agent = start(&s, &["--access-log", "json"]);
    let r = Conn::connect(agent.http)
        .unwrap()
        .get("app.test", "/j")
        .unwrap();
    assert_eq!(r.status, 200);
    let l = lines(&agent, 1);
    let v: serde_json::Value = serde_json::from_str(&l[0]).unwrap();
    assert_eq!(v["request_method"], "GET");
    assert_eq!(v["request_uri"], "/j");
    assert_eq!(v["server_protocol"], "HTTP/1.1");
    assert_eq!(v["host"], "app.test");
    assert_eq!(v["status"], 200);
    assert_eq!(v["remote_addr"], "127.0.0.1");
    assert_eq!(v["proxy_upstream_name"], "default-app-80");
    assert_eq!(v["upstream_addr"], s.app.addr.to_string());
    assert_eq!(v["upstream_status"], "200");
    assert_eq!(v["req_id"].as_str().unwrap().len(), 32);
    assert!(v["time"].as_str().unwrap().ends_with("+00:00"));
}

#[test]
fn an_unknown_format_is_refused_at_start() {
    let out = std::process::Command::new(xingress_tests::agent::xingress_bin())
        .args(["run", "--manifests", "/", "--access-log", "combined"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--access-log"));
}

#[test]
fn a_stdout_nobody_reads_drops_lines_and_never_slows_requests() {
    let s = site();
    // The pipe's read end stays open in the test and is never read: once
    // its 64 KiB and the 16-line queue are full, the writer is stuck.
    let mut agent =
        Agent::start_local_with_stdout(&s.dir.path, &["--access-log-buffer", "16"], Stdio::piped())
            .unwrap();
    agent.wait_ready().unwrap();
    let mut c = Conn::connect(agent.http).unwrap();
    let started = Instant::now();
    for i in 0..2000 {
        let r = c.get("app.test", "/spam").unwrap();
        assert_eq!(r.status, 200, "request {i}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let dropped = agent.metric("xingress_access_log_dropped_total").unwrap();
    assert!(dropped > 1000.0, "dropped {dropped}");
    agent.kill().unwrap();
}
