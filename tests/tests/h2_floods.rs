//! HTTP/2 frame floods against `xingress run --manifests`, written frame by
//! frame over h2c (prior knowledge): rapid reset (CVE-2023-44487) and
//! CONTINUATION floods (CVE-2024-27316 and kin). Each must end with the
//! connection closed, bounded work for the pods, bounded memory, and other
//! clients still served.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use xingress_tests::{
    agent::{Agent, ManifestDir},
    backend::{self, Backend, Mode, service_yaml},
    http1,
};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const CANCEL: u32 = 0x8;

struct Site {
    pod: Backend,
    agent: Agent,
    _dir: ManifestDir,
}

fn site() -> Site {
    let pod = backend::start(SocketAddr::from(([127, 0, 0, 1], 0)), "app-1", Mode::Echo).unwrap();
    let dir = ManifestDir::new();
    dir.write(
        "all.yaml",
        &format!(
            "{}apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: app\n  annotations: {{kubernetes.io/ingress.class: xingress}}\n\
             spec:\n  rules:\n  - host: app.test\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: app, port: {{number: 80}}}}}}}}\n",
            service_yaml("app", 80, &[&pod]),
        ),
    );
    let mut agent = Agent::start_local(&dir.path, &[]).unwrap();
    agent.wait_ready().unwrap();
    Site {
        pod,
        agent,
        _dir: dir,
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend_from_slice(&len.to_be_bytes()[1..]);
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK for `GET http://app.test/`: static-table :method GET, :path /,
/// :scheme http, and :authority as a literal that is not indexed.
fn get_block() -> Vec<u8> {
    let host = b"app.test";
    let mut b = vec![0x82, 0x84, 0x86, 0x01, host.len() as u8];
    b.extend_from_slice(host);
    b
}

/// A literal header (name and value not indexed) of `len` value bytes.
fn filler_header(i: usize, len: usize) -> Vec<u8> {
    let name = format!("x-filler-{i}");
    let mut b = vec![0x00, name.len() as u8];
    b.extend_from_slice(name.as_bytes());
    // Value length as an HPACK integer with a 7-bit prefix.
    let mut n = len;
    if n < 127 {
        b.push(n as u8);
    } else {
        b.push(127);
        n -= 127;
        while n >= 128 {
            b.push((n % 128) as u8 | 0x80);
            n /= 128;
        }
        b.push(n as u8);
    }
    b.extend(std::iter::repeat_n(b'v', len));
    b
}

/// What the server sent, read on another thread so that our writes never
/// stall on a full receive window.
#[derive(Default, Debug)]
struct Seen {
    /// Error code of the server's GOAWAY, if one came.
    goaway: Option<u32>,
    frames: usize,
    closed: bool,
}

fn reader(mut s: TcpStream) -> (Arc<Mutex<Seen>>, JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let out = seen.clone();
    let handle = std::thread::spawn(move || {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16384];
        loop {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            while buf.len() >= 9 {
                let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
                if buf.len() < 9 + len {
                    break;
                }
                let mut seen = out.lock().unwrap();
                seen.frames += 1;
                if buf[3] == GOAWAY && len >= 8 {
                    seen.goaway = Some(u32::from_be_bytes([buf[13], buf[14], buf[15], buf[16]]));
                }
                buf.drain(..9 + len);
            }
        }
        out.lock().unwrap().closed = true;
    });
    (seen, handle)
}

fn h2c(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(PREFACE).unwrap();
    s.write_all(&frame(SETTINGS, 0, 0, &[])).unwrap();
    s
}

/// Writes until the server closes the connection or `bytes` are sent;
/// returns how many were sent.
fn write_until_closed(s: &mut TcpStream, chunks: impl Iterator<Item = Vec<u8>>) -> usize {
    let mut sent = 0;
    for c in chunks {
        if s.write_all(&c).is_err() {
            break;
        }
        sent += c.len();
    }
    sent
}

#[test]
fn rapid_reset_is_cut_off_with_goaway() {
    let s = site();
    let mut c = h2c(s.agent.http);
    let (seen, read) = reader(c.try_clone().unwrap());
    // 20,000 streams, each opened and cancelled at once, in batches of 100.
    const STREAMS: u32 = 20_000;
    let block = get_block();
    let batches = (0..STREAMS / 100).map(|b| {
        let mut out = Vec::new();
        for i in 0..100 {
            let id = 1 + 2 * (b * 100 + i);
            out.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, &block));
            out.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
        }
        out
    });
    let started = Instant::now();
    write_until_closed(&mut c, batches);
    let _ = c.shutdown(std::net::Shutdown::Write);
    read.join().unwrap();
    let seen = seen.lock().unwrap();
    assert!(seen.closed, "{seen:?}");
    // ENHANCE_YOUR_CALM (0xb): h2's pending-accept-reset guard tripped.
    assert_eq!(seen.goaway, Some(0xb), "{seen:?}");
    let reached = s.pod.requests().len();
    eprintln!("rapid reset: {reached} reached the pod, {seen:?}");
    assert!(
        reached < STREAMS as usize / 10,
        "{reached} of {STREAMS} cancelled streams reached the pod"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    // Others are still served.
    assert_eq!(
        http1::get(s.agent.http, "app.test", "/").unwrap().status,
        200
    );
}

#[test]
fn continuation_flood_is_bounded() {
    let s = site();
    let pid = s.agent.pid();
    let before = xingress_tests::agent::rss_kib(pid);
    let mut c = h2c(s.agent.http);
    let (seen, read) = reader(c.try_clone().unwrap());
    // One HEADERS without END_HEADERS, then up to 64 MiB of CONTINUATION
    // frames that never end the block.
    let mut first = get_block();
    first.extend(filler_header(0, 1000));
    let opening = std::iter::once(frame(HEADERS, END_STREAM, 1, &first));
    let continuations = (1..4096).map(|i| frame(CONTINUATION, 0, 1, &filler_header(i, 16_000)));
    let sent = write_until_closed(&mut c, opening.chain(continuations));
    let _ = c.shutdown(std::net::Shutdown::Write);
    read.join().unwrap();
    let seen = seen.lock().unwrap().closed;
    assert!(seen, "the connection stayed open");
    assert!(
        sent < 16 << 20,
        "the server read {sent} bytes of one header block before closing"
    );
    let grown = xingress_tests::agent::rss_kib(pid).saturating_sub(before);
    eprintln!("continuation: {sent} bytes sent, RSS +{grown} KiB");
    assert!(grown < 16 << 10, "RSS grew by {grown} KiB");
    assert!(s.pod.requests().is_empty(), "{:?}", s.pod.requests());
    assert_eq!(
        http1::get(s.agent.http, "app.test", "/").unwrap().status,
        200
    );
}

#[test]
fn well_behaved_h2c_streams_are_served() {
    // The same frame writer, used properly: a request gets its response.
    // Without this, the floods above could pass for a server that never
    // speaks HTTP/2 at all.
    let s = site();
    let mut c = h2c(s.agent.http);
    let (seen, read) = reader(c.try_clone().unwrap());
    c.write_all(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &get_block()))
        .unwrap();
    s.agent.eventually("the request reaches the pod", || {
        s.pod.requests().len() == 1
    });
    std::thread::sleep(Duration::from_millis(200));
    let _ = c.shutdown(std::net::Shutdown::Both);
    read.join().unwrap();
    let seen = seen.lock().unwrap();
    // SETTINGS, SETTINGS ACK, response HEADERS and DATA at least.
    assert!(seen.frames >= 4, "{seen:?}");
    assert_eq!(seen.goaway, None);
}
