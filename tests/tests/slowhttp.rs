//! slowhttptest (Debian's package) against `xingress run --manifests`:
//! Slowloris (headers trickled forever) and Slow Read (a tiny receive
//! window, read a few bytes at a time) must not starve other clients, and
//! the agent must close the attacking connections itself
//! (`--client-header-timeout`, `--client-send-timeout`) rather than hold
//! them for as long as the attacker likes. Each attack is bounded in time.

use std::{
    net::SocketAddr,
    path::Path,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use xingress_tests::{
    agent::{Agent, ManifestDir},
    backend::{self, Mode, service_yaml},
    http1,
};

/// A rule without a host: slowhttptest sends `Host: 127.0.0.1:PORT`.
const INGRESS: &str = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: any
  annotations: {kubernetes.io/ingress.class: xingress}
spec:
  rules:
  - http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}
"#;

/// One row of slowhttptest's CSV: seconds, closed, pending, connected, service available.
#[derive(Debug)]
struct Row {
    seconds: u32,
    closed: u32,
    connected: u32,
    available: bool,
}

/// Runs slowhttptest with `args` to its end; `during` is called once
/// `at` has passed, while the attack still runs.
fn slowhttptest(args: &[&str], out: &Path, at: Duration, during: impl FnOnce()) -> Vec<Row> {
    let prefix = out.join("stats");
    let mut child = Command::new("slowhttptest")
        .args(args)
        .args(["-g", "-o", prefix.to_str().unwrap()])
        .current_dir(out)
        .stdout(Stdio::null())
        .spawn()
        .expect("slowhttptest is missing: `cargo xtask setup` installs it (Debian package slowhttptest)");
    thread::sleep(at);
    during();
    let status = child.wait().unwrap();
    assert!(status.success(), "slowhttptest failed: {status}");
    let csv = std::fs::read_to_string(prefix.with_extension("csv")).unwrap();
    csv.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            Some(Row {
                seconds: f.first()?.parse().ok()?,
                closed: f.get(1)?.parse().ok()?,
                connected: f.get(3)?.parse().ok()?,
                available: f.get(4)?.parse::<u32>().ok()? != 0,
            })
        })
        .collect()
}

/// The agent's live sockets on `port` with a peer, from /proc/net/tcp: how many,
/// and the bytes queued in them for their clients.
fn held_sockets(port: u16) -> (usize, u64) {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let (mut count, mut queued) = (0, 0);
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(state), Some(queues)) = (f.get(1), f.get(3), f.get(4)) else {
            continue;
        };
        let local_port = local
            .rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok());
        // 0A: LISTEN; 06: TIME_WAIT (a closed connection, nothing queued).
        if local_port != Some(port) || matches!(*state, "0A" | "06") {
            continue;
        }
        count += 1;
        queued += queues
            .split(':')
            .next()
            .and_then(|q| u64::from_str_radix(q, 16).ok())
            .unwrap_or(0);
    }
    (count, queued)
}

/// While `attack` runs, a normal client asks every 100 ms; returns the
/// slowest answer and the failures.
fn served_during(agent: SocketAddr, attack: impl FnOnce()) -> (Duration, Vec<String>) {
    let done = Arc::new(AtomicBool::new(false));
    let probe = {
        let done = done.clone();
        thread::spawn(move || {
            let (mut slowest, mut failures) = (Duration::ZERO, Vec::new());
            while !done.load(Ordering::Relaxed) {
                let t = Instant::now();
                match http1::get(agent, "normal.test", "/") {
                    Ok(r) if r.status == 200 => slowest = slowest.max(t.elapsed()),
                    Ok(r) => failures.push(format!("status {}", r.status)),
                    Err(e) => failures.push(e.to_string()),
                }
                thread::sleep(Duration::from_millis(100));
            }
            (slowest, failures)
        })
    };
    attack();
    done.store(true, Ordering::Relaxed);
    probe.join().unwrap()
}

fn site() -> (backend::Backend, Agent, ManifestDir) {
    let pod = backend::start(SocketAddr::from(([127, 0, 0, 1], 0)), "app-1", Mode::Echo).unwrap();
    let dir = ManifestDir::new();
    dir.write(
        "all.yaml",
        &format!("{}{INGRESS}", service_yaml("app", 80, &[&pod])),
    );
    let mut agent = Agent::start_local(
        &dir.path,
        &["--client-header-timeout", "2", "--client-send-timeout", "2"],
    )
    .unwrap();
    agent.wait_ready().unwrap();
    (pod, agent, dir)
}

#[test]
fn slowloris_is_cut_by_the_header_timeout_and_others_are_served() {
    let (_pod, agent, dir) = site();
    let url = format!("http://{}/", agent.http);
    let mut rows = Vec::new();
    let (slowest, failures) = served_during(agent.http, || {
        // 300 connections at 100/s, a header line every second, for 8 s.
        rows = slowhttptest(
            &[
                "-H", "-c", "300", "-r", "100", "-i", "1", "-x", "10", "-l", "8", "-p", "2", "-u",
                &url,
            ],
            &dir.path,
            Duration::ZERO,
            || {},
        );
    });
    eprintln!("slowloris: {rows:?}");
    assert!(failures.is_empty(), "normal client failed: {failures:?}");
    assert!(
        slowest < Duration::from_secs(1),
        "normal client waited {slowest:?}"
    );
    assert!(rows.len() >= 5, "{rows:?}");
    assert!(
        rows.iter().all(|r| r.available),
        "slowhttptest's probe was not served: {rows:?}"
    );
    // The agent closed the trickling connections (2 s header timeout):
    // nearly all of them were closed before the test time ran out, and
    // never were all 300 open at once.
    let last = rows.last().unwrap();
    assert!(
        last.closed >= 250,
        "the agent kept slow connections: {rows:?}"
    );
    assert!(
        rows.iter().all(|r| r.connected < 300),
        "every slow connection was open at once: {rows:?}"
    );
    // slowhttptest stops early when it has no connection left to hold.
    assert!(last.seconds < 8, "the attack held on to the end: {rows:?}");
}

#[test]
fn slow_readers_are_reset_by_the_send_timeout_and_others_are_served() {
    let (_pod, agent, dir) = site();
    // 50 connections each ask 10 times for 4 MiB and read 16 bytes every
    // 3 s through a receive buffer of a couple of KiB.
    let url = format!("http://{}/bytes/4194304", agent.http);
    let mut rows = Vec::new();
    let mut held = (0, 0);
    let (slowest, failures) = served_during(agent.http, || {
        rows = slowhttptest(
            &[
                "-X", "-c", "50", "-r", "50", "-k", "10", "-n", "3", "-w", "16", "-y", "64", "-z",
                "16", "-l", "10", "-p", "3", "-u", &url,
            ],
            &dir.path,
            // Connected within 1 s, stalled 2 s later: by 6 s the agent
            // has given every one of them up.
            Duration::from_secs(6),
            || held = held_sockets(agent.http.port()),
        );
    });
    eprintln!("slow read: {rows:?}; agent sockets mid-attack: {held:?}");
    assert!(failures.is_empty(), "normal client failed: {failures:?}");
    assert!(
        slowest < Duration::from_secs(1),
        "normal client waited {slowest:?}"
    );
    assert!(
        rows.iter().all(|r| r.available),
        "slowhttptest's probe was not served: {rows:?}"
    );
    assert!(
        rows.iter().any(|r| r.connected == 50),
        "the attack did not connect: {rows:?}"
    );
    // Without the timeout each reader would pin megabytes of response in
    // its socket; closed without a reset, the socket would linger in
    // FIN-WAIT-1 with its queue for as long as the reader keeps its window
    // shut. Reset, neither is left (the normal client's socket may be).
    let (sockets, queued) = held;
    assert!(
        sockets <= 2 && queued < 256 * 1024,
        "the agent still holds {sockets} sockets with {queued} bytes queued for slow readers"
    );
}
