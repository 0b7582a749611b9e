//! Memory per idle client connection, for each proxy `cargo xtask bench
//! idle` started: RSS of the proxy (its process and direct children, so
//! nginx's worker counts) before and after `IDLE_CONNECTIONS` keep-alive
//! connections that each made one request and then wait, plain HTTP/1.1
//! and TLS 1.3 (SNI sent, ALPN http/1.1).
//!
//! `IDLE_TARGETS`: `name:pid:http_port:https_port` entries separated by
//! `;`; `IDLE_PROTOCOL`: `http` or `tls` (else both). Prints one line per
//! proxy and protocol, and JSON lines to `target/bench-results/idle-PROTOCOL.json`.

use std::{
    io::Write as _,
    net::SocketAddr,
    time::{Duration, Instant},
};

use xingress_tests::{http1::Conn, tls_client};

/// RSS in KiB of `pid` and its direct children.
fn rss_kib(pid: u32) -> u64 {
    let own = |p: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{p}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0)
    };
    let children: Vec<u32> = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .collect();
    own(pid) + children.into_iter().map(own).sum::<u64>()
}

fn raise_fd_limit(n: u64) {
    let lim = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: setrlimit with a valid struct; failure leaves the old limit.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
}

struct Target {
    name: String,
    pid: u32,
    http: u16,
    https: u16,
}

fn targets() -> Vec<Target> {
    let spec = std::env::var("IDLE_TARGETS").expect("IDLE_TARGETS (run `cargo xtask bench idle`)");
    spec.split(';')
        .filter(|s| !s.is_empty())
        .map(|t| {
            let f: Vec<&str> = t.split(':').collect();
            assert_eq!(f.len(), 4, "name:pid:http:https, not {t:?}");
            Target {
                name: f[0].to_string(),
                pid: f[1].parse().unwrap(),
                http: f[2].parse().unwrap(),
                https: f[3].parse().unwrap(),
            }
        })
        .collect()
}

fn main() {
    let n: usize = std::env::var("IDLE_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    raise_fd_limit(4 * n as u64 + 1024);
    let tls = tls_client::config(&[b"http/1.1"]);
    let mut json = String::new();
    println!(
        "| proxy | protocol | connections | RSS before (MiB) | RSS after (MiB) | KiB per idle connection |\n|---|---|---|---|---|---|"
    );
    let protocols: &[&str] = match std::env::var("IDLE_PROTOCOL").as_deref() {
        Ok("http") => &["HTTP/1.1"],
        Ok("tls") => &["TLS 1.3"],
        _ => &["HTTP/1.1", "TLS 1.3"],
    };
    for t in targets() {
        for &protocol in protocols {
            let before = rss_kib(t.pid);
            let started = Instant::now();
            let mut open = Vec::with_capacity(n);
            for i in 0..n {
                let conn = if protocol == "HTTP/1.1" {
                    Conn::connect(SocketAddr::from(([127, 0, 0, 1], t.http)))
                } else {
                    tls_client::connect(
                        SocketAddr::from(([127, 0, 0, 1], t.https)),
                        "cafe.example.com",
                        &tls,
                    )
                    .map(|(c, _)| c)
                };
                let mut conn = conn.unwrap_or_else(|e| panic!("{} {protocol} #{i}: {e}", t.name));
                let r = conn
                    .get("cafe.example.com", "/tea")
                    .unwrap_or_else(|e| panic!("{} {protocol} #{i}: {e}", t.name));
                assert_eq!(r.status, 200, "{} {protocol}", t.name);
                open.push(conn);
            }
            // Let the proxy settle (timers, deferred frees).
            std::thread::sleep(Duration::from_secs(1));
            let after = rss_kib(t.pid);
            let per = (after.saturating_sub(before)) as f64 / n as f64;
            println!(
                "| {} | {protocol} | {n} | {:.1} | {:.1} | {per:.2} |",
                t.name,
                before as f64 / 1024.0,
                after as f64 / 1024.0
            );
            json.push_str(&format!(
                "{{\"proxy\":\"{}\",\"protocol\":\"{protocol}\",\"connections\":{n},\"rss_before_kib\":{before},\"rss_after_kib\":{after},\"kib_per_connection\":{per:.3},\"open_seconds\":{:.1}}}\n",
                t.name,
                started.elapsed().as_secs_f64()
            ));
            drop(open);
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-results");
    let _ = std::fs::create_dir_all(&dir);
    let name = format!(
        "idle-{}.json",
        std::env::var("IDLE_PROTOCOL").unwrap_or_else(|_| "all".into())
    );
    if let Ok(mut f) = std::fs::File::create(dir.join(name)) {
        let _ = f.write_all(json.as_bytes());
    }
}
