//! The HTTP/1.1 fast path on the wire: against a scripted pod that answers
//! with exact bytes, the proxy must frame every kind of response body right,
//! reuse pod connections, survive pod connections closed under it, keep
//! pipelined requests in order, and hand a connection to the general path
//! mid-stream without losing a byte.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use xingress_tests::{
    agent::{Agent, ManifestDir},
    backend::service_yaml_at,
};

/// A pod that speaks HTTP/1.1 by hand. Every connection gets a number
/// (from 1); the request path picks the reply.
struct Pod {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    /// Request heads as received, one string each.
    heads: Arc<Mutex<Vec<String>>>,
}

impl Pod {
    fn start() -> Pod {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (c, h) = (connections.clone(), heads.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let id = c.fetch_add(1, Ordering::SeqCst) + 1;
                let h = h.clone();
                std::thread::spawn(move || pod_conn(stream, id, &h));
            }
        });
        Pod {
            addr,
            connections,
            heads,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// The Content-Length of a lowercased head.
fn content_length(head: &str) -> Option<usize> {
    head.lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|n| n.trim().parse().ok())
}

fn pod_conn(stream: TcpStream, id: usize, heads: &Mutex<Vec<String>>) {
    let mut out = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let end = line == "\r\n";
            head.push_str(&line);
            if end {
                break;
            }
        }
        let lower = head.to_ascii_lowercase();
        let mut body = Vec::new();
        if let Some(n) = content_length(&lower) {
            body.resize(n, 0);
            r.read_exact(&mut body).unwrap();
        } else if lower.contains("transfer-encoding: chunked") {
            // Read up to the last chunk and the empty trailer line.
            loop {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let size =
                    usize::from_str_radix(line.trim().split(';').next().unwrap(), 16).unwrap();
                if size == 0 {
                    let mut end = String::new();
                    while end != "\r\n" {
                        end.clear();
                        r.read_line(&mut end).unwrap();
                    }
                    break;
                }
                let mut chunk = vec![0; size + 2];
                r.read_exact(&mut chunk).unwrap();
                body.extend_from_slice(&chunk[..size]);
            }
        }
        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
        heads.lock().unwrap().push(head);
        let reply: Vec<u8> = match path.as_str() {
            "/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n".to_vec(),
            "/until-close" => {
                let _ = out.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the pod closes");
                return;
            }
            "/interim" => b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal".to_vec(),
            "/no-content" => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
            "/bye" => b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbye".to_vec(),
            "/garbage" => b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n".to_vec(),
            "/big" => {
                let mut v = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", 3 << 20).into_bytes();
                v.extend(std::iter::repeat_n(b'z', 3 << 20));
                v
            }
            "/huge" => {
                // 256 MiB, streamed: more than any socket buffers hold.
                let _ = out.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", 256 << 20).as_bytes());
                let chunk = vec![b'h'; 1 << 16];
                for _ in 0..(256 << 20) / chunk.len() {
                    if out.write_all(&chunk).is_err() {
                        return;
                    }
                }
                continue;
            }
            "/drop-after" => {
                // Answers, then closes without a word: the proxy's pooled
                // connection goes stale.
                let _ = out.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nX-Conn: {id}\r\n\r\n{id}").as_bytes());
                std::thread::sleep(Duration::from_millis(50));
                return;
            }
            _ => {
                let text = format!("conn={id} path={path} body={}", body.len());
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Conn: {id}\r\n\r\n{text}", text.len()).into_bytes()
            }
        };
        if out.write_all(&reply).is_err() {
            return;
        }
    }
}

struct Site {
    pod: Pod,
    agent: Agent,
    _dir: ManifestDir,
}

fn site() -> Site {
    site_with(&[])
}

fn site_with(flags: &[&str]) -> Site {
    let pod = Pod::start();
    let dir = ManifestDir::new();
    dir.write(
        "all.yaml",
        &format!(
            "{}apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: raw\n  annotations: {{kubernetes.io/ingress.class: xingress}}\n\
             spec:\n  rules:\n  - host: raw.test\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: raw, port: {{number: 80}}}}}}}}\n",
            service_yaml_at("raw", 80, &[pod.addr]),
        ),
    );
    let mut agent = Agent::start_local(&dir.path, flags).unwrap();
    agent.wait_ready().unwrap();
    Site {
        pod,
        agent,
        _dir: dir,
    }
}

/// Reads one response (Content-Length, chunked, or until close) from `r`;
/// returns its head and body as the client saw them.
fn read_response(r: &mut BufReader<TcpStream>, head_request: bool) -> (String, Vec<u8>) {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        assert!(
            r.read_line(&mut line).unwrap() > 0,
            "connection closed; head so far: {head}"
        );
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let lower = head.to_ascii_lowercase();
    let status: u16 = head[9..12].parse().unwrap();
    let mut body = Vec::new();
    if head_request || status == 204 || status == 304 {
    } else if let Some(n) = content_length(&lower) {
        body.resize(n, 0);
        r.read_exact(&mut body).unwrap();
    } else if lower.contains("transfer-encoding: chunked") {
        // Kept raw: the test checks the framing as sent.
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            body.extend_from_slice(line.as_bytes());
            if line == "\r\n" && body.ends_with(b"0\r\n\r\n")
                || body.ends_with(b"\r\n\r\n") && body.windows(3).any(|w| w == b"\n0\r")
            {
                break;
            }
        }
    } else {
        r.read_to_end(&mut body).unwrap();
    }
    (head, body)
}

fn connect(site: &Site) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect(site.agent.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: raw.test\r\n\r\n").into_bytes()
}

#[test]
fn every_response_framing_reaches_the_client_intact() {
    let s = site();
    let (mut c, mut r) = connect(&s);

    c.write_all(&get("/chunked")).unwrap();
    let (head, body) = read_response(&mut r, false);
    assert!(head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
        "chunks and trailers pass unchanged"
    );

    // Interim responses are dropped; the final one follows.
    c.write_all(&get("/interim")).unwrap();
    let (head, body) = read_response(&mut r, false);
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(body, b"final");

    c.write_all(&get("/no-content")).unwrap();
    let (head, _) = read_response(&mut r, false);
    assert!(head.starts_with("HTTP/1.1 204 "), "{head}");

    // HEAD: the pod's Content-Length, no body; the connection stays in step.
    c.write_all(b"HEAD /x HTTP/1.1\r\nHost: raw.test\r\n\r\n")
        .unwrap();
    let (head, _) = read_response(&mut r, true);
    assert!(
        head.to_ascii_lowercase().contains("content-length: "),
        "{head}"
    );

    c.write_all(&get("/big")).unwrap();
    let (_, body) = read_response(&mut r, false);
    assert_eq!(body.len(), 3 << 20);
    assert!(body.iter().all(|&b| b == b'z'));

    // A body that ends when the pod closes: the client's connection closes too.
    c.write_all(&get("/until-close")).unwrap();
    let (head, body) = read_response(&mut r, false);
    assert!(head.contains("Connection: close\r\n"), "{head}");
    assert_eq!(body, b"until the pod closes");
}

#[test]
fn pod_connections_are_reused_and_stale_ones_replaced() {
    let s = site();
    let (mut c, mut r) = connect(&s);
    for i in 0..20 {
        c.write_all(&get(&format!("/n{i}"))).unwrap();
        let (_, body) = read_response(&mut r, false);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            format!("conn=1 path=/n{i} body=0")
        );
    }
    // A second client gets the same pooled connection when the first is idle.
    let (mut c2, mut r2) = connect(&s);
    c2.write_all(&get("/other")).unwrap();
    let (_, body) = read_response(&mut r2, false);
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "conn=1 path=/other body=0"
    );
    assert_eq!(s.pod.connections(), 1);

    // The pod closes connections behind the proxy's back: the next request
    // is sent again on a new connection instead of failing.
    for _ in 0..3 {
        c.write_all(&get("/drop-after")).unwrap();
        let (head, _) = read_response(&mut r, false);
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        std::thread::sleep(Duration::from_millis(200));
        c.write_all(&get("/after")).unwrap();
        let (head, _) = read_response(&mut r, false);
        assert!(
            head.starts_with("HTTP/1.1 200 "),
            "a stale pod connection failed the request: {head}"
        );
    }
    // "Connection: close" from the pod: not pooled.
    let before = s.pod.connections();
    c.write_all(&get("/bye")).unwrap();
    let (head, body) = read_response(&mut r, false);
    assert!(
        !head.contains("Connection: close"),
        "the client connection stays: {head}"
    );
    assert_eq!(body, b"bye");
    c.write_all(&get("/next")).unwrap();
    let (_, body) = read_response(&mut r, false);
    assert!(
        String::from_utf8(body)
            .unwrap()
            .starts_with(&format!("conn={} ", before + 1))
    );
}

#[test]
fn pipelined_requests_and_bodies_stay_in_order() {
    let s = site();
    let (mut c, mut r) = connect(&s);
    let mut burst = Vec::new();
    burst.extend(get("/one"));
    burst.extend(b"POST /two HTTP/1.1\r\nHost: raw.test\r\nContent-Length: 5\r\n\r\nhello");
    burst.extend(b"POST /three HTTP/1.1\r\nHost: raw.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nX-T: 1\r\n\r\n");
    burst.extend(get("/four"));
    c.write_all(&burst).unwrap();
    for (path, len) in [("/one", 0), ("/two", 5), ("/three", 5), ("/four", 0)] {
        let (_, body) = read_response(&mut r, false);
        let body = String::from_utf8(body).unwrap();
        assert!(body.ends_with(&format!("path={path} body={len}")), "{body}");
    }
    // What the pod got: one Host, X-Forwarded-*, framing re-declared.
    let heads = s.pod.heads();
    let three = heads.iter().find(|h| h.starts_with("POST /three")).unwrap();
    assert!(three.contains("Transfer-Encoding: chunked\r\n"), "{three}");
    assert!(three.contains("X-Forwarded-For: 127.0.0.1\r\n"), "{three}");
    assert!(three.contains("X-Forwarded-Host: raw.test\r\n"), "{three}");
    assert_eq!(
        three.matches("Host: raw.test").count(),
        2,
        "Host and X-Forwarded-Host: {three}"
    );
}

#[test]
fn a_connection_moves_to_the_general_path_mid_stream() {
    let s = site();
    let (mut c, mut r) = connect(&s);
    // HTTP/1.1 on the fast path, then HTTP/1.0 (hyper's), pipelined.
    let mut burst = get("/fast");
    burst.extend(b"GET /old HTTP/1.0\r\nHost: raw.test\r\n\r\n");
    c.write_all(&burst).unwrap();
    let (head, body) = read_response(&mut r, false);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        String::from_utf8(body)
            .unwrap()
            .ends_with("path=/fast body=0")
    );
    let mut rest = String::new();
    r.read_to_string(&mut rest).unwrap();
    assert!(
        rest.starts_with("HTTP/1.0 200") || rest.starts_with("HTTP/1.1 200"),
        "{rest}"
    );
    assert!(rest.ends_with("path=/old body=0"), "{rest}");
}

#[test]
fn broken_pods_get_502_and_do_not_poison_the_pool() {
    let s = site();
    let (mut c, mut r) = connect(&s);
    c.write_all(&get("/garbage")).unwrap();
    let (head, _) = read_response(&mut r, false);
    assert!(head.starts_with("HTTP/1.1 502 "), "{head}");
    let (mut c, mut r) = connect(&s);
    c.write_all(&get("/fine")).unwrap();
    let (head, body) = read_response(&mut r, false);
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(
        String::from_utf8(body)
            .unwrap()
            .ends_with("path=/fine body=0")
    );
}

#[test]
fn clients_that_stop_reading_are_dropped() {
    let s = site_with(&["--client-send-timeout", "1"]);
    let (mut c, mut r) = connect(&s);
    c.write_all(&get("/huge")).unwrap();
    // Read nothing while the proxy's and the kernel's buffers fill up and
    // the send timeout runs out.
    std::thread::sleep(Duration::from_secs(4));
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let ended = loop {
        match r.read(&mut buf) {
            Ok(0) => break "closed",
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break "reset",
            Err(e) => {
                panic!("the proxy kept a client that stopped reading ({total} bytes read): {e}")
            }
        }
    };
    assert!(
        total < 256 << 20,
        "all {total} bytes arrived: the slow reader was kept ({ended})"
    );
    // Others are served meanwhile and after.
    let (mut c2, mut r2) = connect(&s);
    c2.write_all(&get("/fine")).unwrap();
    let (head, _) = read_response(&mut r2, false);
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
}

/// Where a request is planned and where it is carried out are apart: the
/// fast path routes every HTTP/1.1 request once, and a route whose plan it
/// cannot carry out (here `upstream-vhost`) goes to the general path with
/// the plan as made, not routed again. A canary's 50% weight must then
/// alternate exactly, one request each, even with a new connection (so a
/// hand-over) per request: routing the request twice would count it twice
/// and send every one to the same side. Routes the fast path carries
/// (basic auth, a plain route) are never handed over; an `auth-url` route
/// is.
#[test]
fn a_route_the_fast_path_cannot_carry_is_routed_once() {
    use xingress_tests::{
        backend::{self, Mode, service_yaml},
        http1::Conn,
    };
    let pod =
        |name| backend::start(SocketAddr::from(([127, 0, 0, 1], 0)), name, Mode::Echo).unwrap();
    let (main, canary, auth) = (pod("main"), pod("canary"), pod("auth"));
    let p = "nginx.ingress.kubernetes.io/";
    let ingress = |name: &str, host: &str, svc: &str, annotations: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  \
             annotations: {{kubernetes.io/ingress.class: xingress{annotations}}}\n\
             spec:\n  rules:\n  - host: {host}\n    http:\n      paths:\n      \
             - {{path: /, pathType: Prefix, backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}}}\n---\n"
        )
    };
    let dir = ManifestDir::new();
    dir.write(
        "all.yaml",
        &[
            service_yaml("main", 80, &[&main]),
            service_yaml("canary", 80, &[&canary]),
            ingress("main", "vhost.test", "main", &format!(", {p}upstream-vhost: inner.test")),
            ingress(
                "canary",
                "vhost.test",
                "canary",
                &format!(", {p}canary: \"true\", {p}canary-weight: \"50\""),
            ),
            ingress("plain", "plain.test", "main", ""),
            ingress(
                "basic",
                "basic.test",
                "main",
                &format!(", {p}auth-type: basic, {p}auth-secret: users"),
            ),
            ingress(
                "ext",
                "ext.test",
                "main",
                &format!(", {p}auth-url: \"http://{}/check\"", auth.addr),
            ),
            // alice:secret (SHA-512 crypt, written by `openssl passwd -6`).
            "apiVersion: v1\nkind: Secret\nmetadata: {name: users}\ntype: Opaque\nstringData:\n  auth: |\n    \
             alice:$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1\n---\n"
                .to_string(),
        ]
        .concat(),
    );
    let mut agent = Agent::start_local(&dir.path, &[]).unwrap();
    agent.wait_ready().unwrap();
    let handoffs = |reason: &str| {
        agent
            .metric(&format!(
                "xingress_http1_handoffs_total{{reason=\"{reason}\"}}"
            ))
            .unwrap()
    };
    let ask = |host: &str, extra: &str| {
        Conn::connect(agent.http)
            .unwrap()
            .raw(
                format!("GET /x HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")
                    .as_bytes(),
            )
            .unwrap()
    };

    let mut sides = Vec::new();
    for _ in 0..12 {
        let r = ask("vhost.test", "");
        assert_eq!(r.status, 200, "{}", r.text());
        // Carried out as planned: the Host the route says.
        assert_eq!(r.echo_field("host").as_deref(), Some("inner.test"));
        sides.push(r.echo_field("pod").unwrap());
    }
    let alternating: Vec<String> = (0..12)
        .map(|i| if i % 2 == 0 { "main" } else { "canary" }.to_string())
        .collect();
    assert_eq!(
        sides, alternating,
        "each request counted once by the canary's weight"
    );
    assert_eq!(handoffs("route"), 12.0);

    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode("alice:secret");
    assert_eq!(ask("plain.test", "").status, 200);
    assert_eq!(
        ask("basic.test", &format!("Authorization: Basic {token}\r\n")).status,
        200
    );
    assert_eq!(ask("basic.test", "").status, 401);
    assert_eq!(
        handoffs("route"),
        12.0,
        "the fast path carries plain and basic-auth routes"
    );
    let r = ask("ext.test", "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(auth.requests(), ["GET /check"]);
    assert_eq!(handoffs("route"), 13.0, "auth-url is the general path's");
    assert_eq!(handoffs("protocol"), 0.0);
    // HTTP/1.0 is the general path's too, routed there.
    let r = Conn::connect(agent.http)
        .unwrap()
        .raw(b"GET /x HTTP/1.0\r\nHost: plain.test\r\n\r\n")
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(handoffs("protocol"), 1.0);
}
