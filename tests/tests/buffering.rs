//! `proxy-request-buffering` and `client-body-buffer-size` (issue 20,
//! part 2), through real sockets: a body is read whole before any pod is
//! asked, goes to the pod with a Content-Length, spills to a temporary file
//! past the memory buffer (removed after), is refused with 413 past
//! `proxy-body-size` before any pod sees it, and is sent again when a pod
//! fails after reading it (`proxy-next-upstream: ... non_idempotent`).

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use xingress_tests::{
    agent::{Agent, ManifestDir},
    backend::{self, Backend, Mode, service_yaml, service_yaml_at},
    http1::Response,
};

fn pod(name: &str) -> Backend {
    backend::start(SocketAddr::from(([127, 0, 0, 1], 0)), name, Mode::Echo).unwrap()
}

fn ingress(name: &str, host: &str, svc: &str, annotations: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  annotations:\n    \
         kubernetes.io/ingress.class: xingress\n{annotations}\
         spec:\n  rules:\n  - host: {host}\n    http:\n      paths:\n      \
         - {{path: /, pathType: Prefix, backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}}}\n---\n"
    )
}

/// A chunked POST sent in two halves with a pause between them; returns
/// the stream after the first half, for the caller to finish.
fn half_sent(agent: &Agent, host: &str, body: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(agent.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body[..body.len() / 2]).unwrap();
    s
}

fn finish(mut s: TcpStream, body: &[u8]) -> Response {
    // The agent may answer (413) before the rest is sent.
    let _ = s.write_all(&body[body.len() / 2..]);
    let _ = s.write_all(b"\r\n0\r\n\r\n");
    let mut conn = xingress_tests::http1::Conn::over(Box::new(s));
    conn.raw(b"").unwrap()
}

/// Open files of process `pid` whose path holds `needle`.
fn open_files(pid: u32, needle: &str) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| p.contains(needle))
        .collect()
}

#[test]
fn bodies_are_read_whole_before_the_pod_and_spill_to_a_file() {
    let buffered = pod("buffered-1");
    let streamed = pod("streamed-1");
    let dir = ManifestDir::new();
    dir.write(
        "all.yaml",
        &format!(
            "{}{}{}{}",
            service_yaml("buffered", 80, &[&buffered]),
            service_yaml("streamed", 80, &[&streamed]),
            ingress(
                "buffered",
                "buffered.test",
                "buffered",
                "    nginx.ingress.kubernetes.io/proxy-request-buffering: \"on\"\n    \
                 nginx.ingress.kubernetes.io/client-body-buffer-size: 1k\n    \
                 nginx.ingress.kubernetes.io/proxy-body-size: 1m\n"
            ),
            ingress("streamed", "streamed.test", "streamed", ""),
        ),
    );
    let mut agent = Agent::start_local(&dir.path, &[]).unwrap();
    agent.wait_ready().unwrap();
    let body: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();

    // Streaming (the default): the pod has the request before the body ends.
    let s = half_sent(&agent, "streamed.test", &body);
    let t = Instant::now();
    while streamed.requests().is_empty() && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(streamed.requests().len(), 1, "streamed before the end");
    let r = finish(s, &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.echo_field("transfer-encoding").as_deref(),
        Some("chunked")
    );

    // Buffered: half a body reaches no pod; it is in a temporary file.
    let s = half_sent(&agent, "buffered.test", &body);
    std::thread::sleep(Duration::from_millis(300));
    assert!(buffered.requests().is_empty(), "a pod saw half a body");
    let files = open_files(agent.pid(), "xingress-body-");
    assert_eq!(files.len(), 1, "past 1k the body goes to a file: {files:?}");
    let r = finish(s, &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.echo_field("content-length"), Some(body.len().to_string()));
    assert_eq!(r.echo_field("transfer-encoding"), None);
    assert_eq!(r.echo_field("body-bytes"), Some(body.len().to_string()));
    assert!(r.body.ends_with(&body), "the pod got the body as sent");
    assert!(
        !std::path::Path::new(&files[0]).exists(),
        "the file is removed with the request"
    );
    assert!(open_files(agent.pid(), "xingress-body-").is_empty());

    // A small body stays in memory: no file.
    let small = &body[..800];
    let s = half_sent(&agent, "buffered.test", small);
    std::thread::sleep(Duration::from_millis(200));
    assert!(open_files(agent.pid(), "xingress-body-").is_empty());
    let r = finish(s, small);
    assert_eq!(r.echo_field("content-length").as_deref(), Some("800"));

    // Past proxy-body-size: 413, and no pod ever sees it.
    let seen = buffered.requests().len();
    let big = vec![b'x'; 1_200_000];
    let s = half_sent(&agent, "buffered.test", &big);
    let r = finish(s, &big);
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(buffered.requests().len(), seen);
    // Closed by tokio's blocking pool once its last write is done.
    let t = Instant::now();
    while !open_files(agent.pid(), "xingress-body-").is_empty()
        && t.elapsed() < Duration::from_secs(3)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = open_files(agent.pid(), "xingress-body-");
    assert!(left.is_empty(), "{left:?}");
}

/// A pod that reads a whole request and closes without answering.
fn swallowing_pod(hits: Arc<AtomicUsize>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let hits = hits.clone();
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                // Head, then as many bytes as Content-Length says.
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if got.len() >= end + 4 + len {
                            hits.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
                // Closed without a response.
            });
        }
    });
    addr
}

#[test]
fn a_buffered_body_is_sent_again_when_a_pod_fails_after_reading_it() {
    let good = pod("good-1");
    // One failing pod per Service: passive health ejects a pod for both.
    let hits = Arc::new(AtomicUsize::new(0));
    let bad = swallowing_pod(hits.clone());
    let bad_plain = swallowing_pod(Arc::new(AtomicUsize::new(0)));
    let dir = ManifestDir::new();
    let policy =
        "    nginx.ingress.kubernetes.io/proxy-next-upstream: error timeout non_idempotent\n";
    dir.write(
        "all.yaml",
        &format!(
            "{}{}{}{}",
            service_yaml_at("app", 80, &[bad, good.addr]),
            service_yaml_at("plain", 80, &[bad_plain, good.addr]),
            ingress(
                "app",
                "app.test",
                "app",
                &format!(
                    "{policy}    nginx.ingress.kubernetes.io/proxy-request-buffering: \"on\"\n"
                )
            ),
            ingress("plain", "plain.test", "plain", policy),
        ),
    );
    let mut agent = Agent::start_local(&dir.path, &[]).unwrap();
    agent.wait_ready().unwrap();
    let body = vec![b'z'; 5000];
    let post = |host: &str| {
        let s = half_sent(&agent, host, &body);
        finish(s, &body)
    };
    // Buffered: every POST ends on the good pod with its whole body, also
    // those the swallowing pod read first.
    for _ in 0..4 {
        let r = post("app.test");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.echo_field("body-bytes").as_deref(), Some("5000"));
    }
    let swallowed = hits.load(Ordering::Relaxed);
    assert!(swallowed >= 1, "the failing pod was tried");
    // Streamed, the body cannot be sent twice: a POST the failing pod
    // swallowed fails (the contrast this setting exists for).
    let statuses: Vec<u16> = (0..4).map(|_| post("plain.test").status).collect();
    assert!(
        statuses.contains(&502),
        "streamed bodies cannot be retried after the pod read them: {statuses:?}"
    );
}

/// A pod that answers every request with `len` bytes and reports when its
/// last byte went into the socket.
fn big_answer_pod(len: usize, done: std::sync::mpsc::Sender<Instant>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let done = done.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n");
                if s.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let chunk = vec![b'r'; 1 << 20];
                let mut left = len;
                while left > 0 {
                    let n = left.min(chunk.len());
                    if s.write_all(&chunk[..n]).is_err() {
                        return;
                    }
                    left -= n;
                }
                let _ = done.send(Instant::now());
                // Hold the connection as a pod would (keep-alive).
                std::thread::sleep(Duration::from_secs(10));
            });
        }
    });
    addr
}

#[test]
fn a_buffered_response_frees_the_pod_while_the_client_is_slow() {
    // More than every socket buffer on the way can hold (loopback's grow
    // to a few MiB each), less than the read-ahead (4 × 16m).
    const LEN: usize = 48 << 20;
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let pod = big_answer_pod(LEN, done_tx);
    let dir = ManifestDir::new();
    dir.write(
        "all.yaml",
        &format!(
            "{}{}{}",
            service_yaml_at("app", 80, &[pod]),
            ingress(
                "buffered",
                "buffered.test",
                "app",
                "    nginx.ingress.kubernetes.io/proxy-buffering: \"on\"\n    \
                 nginx.ingress.kubernetes.io/proxy-buffer-size: 16m\n"
            ),
            ingress("streamed", "streamed.test", "app", ""),
        ),
    );
    let mut agent = Agent::start_local(&dir.path, &[]).unwrap();
    agent.wait_ready().unwrap();
    let ask = |host: &str| {
        let mut s = TcpStream::connect(agent.http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
            .unwrap();
        s
    };
    let read_all = |mut s: TcpStream| {
        let mut n = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        let mut head = Vec::new();
        // Head, then the body's bytes.
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let k = s.read(&mut buf[..1]).unwrap();
            assert!(k > 0, "closed in the head");
            head.push(buf[0]);
        }
        while n < LEN {
            let k = s.read(&mut buf).unwrap();
            assert!(k > 0, "closed after {n} bytes");
            assert!(buf[..k].iter().all(|b| *b == b'r'));
            n += k;
        }
        assert!(String::from_utf8_lossy(&head).starts_with("HTTP/1.1 200"));
        n
    };

    // Streamed: a client that reads nothing holds the pod.
    let slow = ask("streamed.test");
    assert!(
        done_rx.recv_timeout(Duration::from_secs(2)).is_err(),
        "streamed: the pod finished although the client read nothing"
    );
    assert_eq!(read_all(slow), LEN);
    done_rx.recv_timeout(Duration::from_secs(5)).unwrap();

    // Buffered: the pod is done while the client has read nothing.
    let slow = ask("buffered.test");
    done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("buffered: the pod should finish before the client reads");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(read_all(slow), LEN, "every byte reaches the client");
}

/// Memory per buffered upload: 64 uploads of 1 MiB held half-sent at
/// once. Past `client-body-buffer-size` the bodies are in files, so the
/// agent's memory grows by the buffer, not the body; with a 1m buffer the
/// same uploads are in memory (the contrast shows the measure can see it).
#[test]
fn memory_per_buffered_upload_is_the_buffer_not_the_body() {
    const UPLOADS: usize = 64;
    let app = pod("app-1");
    let dir = ManifestDir::new();
    let buffered = |size: &str| {
        format!(
            "    nginx.ingress.kubernetes.io/proxy-request-buffering: \"on\"\n    \
             nginx.ingress.kubernetes.io/client-body-buffer-size: {size}\n    \
             nginx.ingress.kubernetes.io/proxy-body-size: 2m\n"
        )
    };
    dir.write(
        "all.yaml",
        &format!(
            "{}{}{}",
            service_yaml("app", 80, &[&app]),
            ingress("files", "files.test", "app", &buffered("8k")),
            ingress("memory", "memory.test", "app", &buffered("1m")),
        ),
    );
    let mut agent = Agent::start_local(&dir.path, &[]).unwrap();
    agent.wait_ready().unwrap();
    let body = vec![b'm'; 1 << 20];
    let mut per_upload = Vec::new();
    for host in ["files.test", "memory.test"] {
        // Warm up (the runtime's first buffers), then measure.
        let r = finish(half_sent(&agent, host, &body), &body);
        assert_eq!(r.status, 200);
        let before = xingress_tests::agent::rss_kib(agent.pid());
        let held: Vec<TcpStream> = (0..UPLOADS)
            .map(|_| half_sent(&agent, host, &body))
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        let during = xingress_tests::agent::rss_kib(agent.pid());
        let kib = during.saturating_sub(before) / UPLOADS as u64;
        println!(
            "{host}: {UPLOADS} half-sent 1 MiB uploads, RSS {before} -> {during} KiB, {kib} KiB each"
        );
        per_upload.push(kib);
        for s in held {
            let r = finish(s, &body);
            assert_eq!(r.echo_field("body-bytes"), Some(body.len().to_string()));
        }
    }
    // Measured 70-170 KiB (hyper's read buffer and the frame being
    // written); the half MiB each upload has sent is in its file.
    assert!(
        per_upload[0] < 384 && per_upload[0] * 4 < per_upload[1],
        "spilled uploads cost {} KiB each, in-memory ones {}",
        per_upload[0],
        per_upload[1]
    );
    assert!(
        per_upload[1] > 256,
        "in-memory uploads should show their half MiB: {} KiB each",
        per_upload[1]
    );
}

#[test]
fn a_client_silent_past_client_body_timeout_gets_408() {
    let app = pod("app-1");
    let dir = ManifestDir::new();
    dir.write(
        "all.yaml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c, namespace: x}}\ndata:\n  \
             proxy-request-buffering: \"on\"\n  client-body-timeout: \"1\"\n---\n{}{}",
            service_yaml("app", 80, &[&app]),
            ingress("app", "app.test", "app", ""),
        ),
    );
    let mut agent = Agent::start_local(&dir.path, &["--configmap", "x/c"]).unwrap();
    agent.wait_ready().unwrap();
    let body = vec![b'q'; 10_000];
    let s = half_sent(&agent, "app.test", &body);
    let t = Instant::now();
    let mut conn = xingress_tests::http1::Conn::over(Box::new(s));
    let r = conn.raw(b"").unwrap();
    assert_eq!(r.status, 408, "{}", r.text());
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert!(app.requests().is_empty());
}
