//! Reconfiguration under load: 1,000 manifest changes (hosts, paths,
//! endpoints and certificates added and removed) while clients keep using a
//! route that stays. Every change is checked to be served before the next
//! one; the clients on the stable route must see no failure, and their
//! WebSocket and HTTP/2 connections must never be cut.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use tokio_tungstenite::tungstenite::Message;
use xingress_tests::{
    agent::{Agent, ManifestDir},
    backend::{self, Backend, Mode, service_yaml},
    http1::Conn,
    tls_client::{self, fixture, h2_client, leaf, secret_yaml},
};

const CHANGES: usize = 1000;
const STAY: &str = "cafe.example.com";

fn local() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn ingress(name: &str, host: &str, svc: &str, paths: &[(&str, &str)], tls: Option<&str>) -> String {
    let paths: String = paths
        .iter()
        .map(|(p, kind)| {
            format!("      - {{path: \"{p}\", pathType: {kind}, backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}}}\n")
        })
        .collect();
    let tls = tls.map_or(String::new(), |secret| {
        format!("  tls:\n  - hosts: [{host}]\n    secretName: {secret}\n")
    });
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  annotations:\n    kubernetes.io/ingress.class: xingress\n    nginx.ingress.kubernetes.io/ssl-redirect: \"false\"\n\
         spec:\n{tls}  rules:\n  - host: {host}\n    http:\n      paths:\n{paths}---\n"
    )
}

struct World {
    stay: [Backend; 2],
    churn: [Backend; 3],
}

/// What change `i` is about; the manifests of every state differ from the
/// previous one in the unique path `/v{i}` and in this.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// The churn Ingress moves to a new host; the old host is gone.
    Host,
    /// Endpoints: the churn Service moves to another pod, and the stable
    /// Service gains or loses its second pod.
    Endpoints,
    /// The `rot` Secret changes certificate, or disappears.
    Certificate,
    /// An extra Exact path is added (and removed by the next change).
    Path,
}

fn kind(i: usize) -> Kind {
    [Kind::Host, Kind::Endpoints, Kind::Certificate, Kind::Path][i % 4]
}

fn churn_host(i: usize) -> String {
    format!("h{}.test", i / 4)
}

fn churn_pod(i: usize) -> usize {
    // Changes with (i % 4) >= 1 move the pod; Host changes keep it.
    (i.saturating_sub(1) / 4) % 3
}

/// Which `rot` certificate state `i` has: Some(fixture) or None (no
/// Secret, after rot-b).
fn rot_cert(i: usize) -> Option<&'static str> {
    [Some("rot-a"), Some("rot-b"), None][(i.saturating_sub(2) / 4) % 3]
}

fn state(w: &World, i: usize) -> String {
    let host = churn_host(i);
    let v = format!("/v{i}");
    let extra = format!("/extra{i}");
    let mut paths = vec![(v.as_str(), "Prefix")];
    if kind(i) == Kind::Path {
        paths.push((extra.as_str(), "Exact"));
    }
    let stay_pods: Vec<&Backend> = if (i / 4).is_multiple_of(2) {
        vec![&w.stay[0], &w.stay[1]]
    } else {
        vec![&w.stay[0]]
    };
    let mut out = String::new();
    out += &service_yaml("stay", 80, &stay_pods);
    out += "---\n";
    out += &service_yaml("churn", 80, &[&w.churn[churn_pod(i)]]);
    out += "---\n";
    out += &ingress("churn", &host, "churn", &paths, None);
    out += &ingress("rot", "rot.test", "churn", &[("/", "Prefix")], Some("rot"));
    if let Some(cert) = rot_cert(i) {
        out += &secret_yaml("rot", cert);
    }
    out
}

fn stable(dir: &ManifestDir) {
    dir.write("stay-secret.yaml", &secret_yaml("cafe", "cafe"));
    dir.write(
        "stay.yaml",
        &ingress("stay", STAY, "stay", &[("/", "Prefix")], Some("cafe")),
    );
}

/// Load on the stable route until `stop`: each client counts its requests
/// and its failures (any status but 200, any broken connection).
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    failed: AtomicUsize,
}

impl Tally {
    fn record(&self, good: bool, what: &str) {
        if good {
            self.ok.fetch_add(1, Relaxed);
        } else if self.failed.fetch_add(1, Relaxed) < 5 {
            eprintln!("failure on the stable route: {what}");
        }
    }
}

/// Paces a load client: a bounded load, not a flood (2 cores are shared
/// with the agent, the pods and the test itself).
const PACE: Duration = Duration::from_millis(4);

fn http_client(agent: &Agent, stop: Arc<AtomicBool>, tally: Arc<Tally>) -> JoinHandle<()> {
    let addr = agent.http;
    std::thread::spawn(move || {
        let mut conn = Conn::connect(addr).unwrap();
        let mut n = 0u32;
        while !stop.load(Relaxed) {
            // A new connection now and then, keep-alive otherwise.
            if n % 50 == 49 {
                conn = Conn::connect(addr).unwrap();
            }
            n += 1;
            match conn.get(STAY, "/") {
                Ok(r) => tally.record(r.status == 200, &format!("HTTP status {}", r.status)),
                Err(e) => {
                    tally.record(false, &format!("HTTP: {e}"));
                    conn = Conn::connect(addr).unwrap();
                }
            }
            std::thread::sleep(PACE);
        }
    })
}

fn https_client(agent: &Agent, stop: Arc<AtomicBool>, tally: Arc<Tally>) -> JoinHandle<()> {
    let addr = agent.https;
    std::thread::spawn(move || {
        let config = tls_client::config(&[b"http/1.1"]);
        let (mut conn, _) = tls_client::connect(addr, STAY, &config).unwrap();
        while !stop.load(Relaxed) {
            match conn.get(STAY, "/") {
                Ok(r) => tally.record(r.status == 200, &format!("HTTPS status {}", r.status)),
                Err(e) => {
                    tally.record(false, &format!("HTTPS: {e}"));
                    conn = tls_client::connect(addr, STAY, &config).unwrap().0;
                }
            }
            std::thread::sleep(PACE);
        }
    })
}

/// One HTTP/2 connection and one WebSocket, both opened before the churn
/// and used throughout: any error means a stream was cut.
fn long_lived(agent: &Agent, stop: Arc<AtomicBool>, tally: Arc<Tally>) -> JoinHandle<()> {
    let (http, https) = (agent.http, agent.https);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut h2 = h2_client(https, STAY).await;
            let tcp = tokio::net::TcpStream::connect(http).await.unwrap();
            let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{STAY}/chat"), tcp)
                .await
                .expect("WebSocket upgrade");
            let mut n = 0u64;
            while !stop.load(Relaxed) {
                n += 1;
                let req = http::Request::get(format!("https://{STAY}/h2/{n}"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                match h2.send_request(req).await {
                    Ok(r) => {
                        let status = r.status();
                        let body = r.into_body().collect().await;
                        tally.record(
                            status == 200 && body.is_ok(),
                            &format!("HTTP/2 status {status}"),
                        );
                    }
                    Err(e) => {
                        tally.record(false, &format!("HTTP/2 connection: {e}"));
                        return;
                    }
                }
                let text = format!("message {n}");
                let echoed = async {
                    ws.send(Message::text(text.clone())).await.ok()?;
                    match ws.next().await?.ok()? {
                        Message::Text(t) => Some(t.to_string()),
                        _ => None,
                    }
                };
                match echoed.await {
                    Some(t) if t.ends_with(&text) => tally.record(true, ""),
                    other => {
                        tally.record(false, &format!("WebSocket: {other:?}"));
                        return;
                    }
                }
                tokio::time::sleep(PACE * 4).await;
            }
        });
    })
}

/// Polls until `ok` holds; returns how long it took.
fn until(what: &str, i: usize, mut ok: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !ok() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "change {i}: {what} not served after 10 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    started.elapsed()
}

fn status(conn: &mut Option<Conn>, addr: SocketAddr, host: &str, path: &str) -> (u16, String) {
    let c = conn.get_or_insert_with(|| Conn::connect(addr).unwrap());
    match c.get(host, path) {
        Ok(r) => (r.status, r.header("x-pod").unwrap_or("").to_string()),
        Err(_) => {
            *conn = None;
            (0, String::new())
        }
    }
}

#[test]
fn a_thousand_changes_under_load_lose_nothing_on_stable_routes() {
    let w = World {
        stay: [
            backend::start(local(), "stay-1", Mode::Echo).unwrap(),
            backend::start(local(), "stay-2", Mode::Echo).unwrap(),
        ],
        churn: [
            backend::start(local(), "churn-0", Mode::Echo).unwrap(),
            backend::start(local(), "churn-1", Mode::Echo).unwrap(),
            backend::start(local(), "churn-2", Mode::Echo).unwrap(),
        ],
    };
    let dir = ManifestDir::new();
    stable(&dir);
    dir.replace("churn.yaml", &state(&w, 0));
    let mut agent = Agent::start_local(&dir.path, &[]).unwrap();
    agent.wait_ready().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let clients = vec![
        http_client(&agent, stop.clone(), tally.clone()),
        http_client(&agent, stop.clone(), tally.clone()),
        https_client(&agent, stop.clone(), tally.clone()),
        long_lived(&agent, stop.clone(), tally.clone()),
    ];

    let tls = tls_client::config(&[]);
    let rot_leaf = |name: &str| leaf(&fixture(&format!("{name}.crt")));
    let mut probe = None;
    let mut latencies = Vec::with_capacity(CHANGES);
    let started = Instant::now();
    for i in 1..=CHANGES {
        let written = Instant::now();
        dir.replace("churn.yaml", &state(&w, i));
        let host = churn_host(i);
        // Every change has its own path: once it answers, change i is live.
        until("its unique path", i, || {
            status(&mut probe, agent.http, &host, &format!("/v{i}")).0 == 200
        });
        latencies.push(written.elapsed());
        match kind(i) {
            Kind::Host => {
                let old = churn_host(i - 1);
                assert_eq!(
                    status(&mut probe, agent.http, &old, &format!("/v{i}")).0,
                    404,
                    "change {i}: the old host {old} is gone"
                );
            }
            Kind::Endpoints => {
                let pod = format!("churn-{}", churn_pod(i));
                let (code, served_by) = status(&mut probe, agent.http, &host, &format!("/v{i}"));
                assert_eq!(
                    (code, served_by.as_str()),
                    (200, pod.as_str()),
                    "change {i}"
                );
            }
            Kind::Certificate => {
                let presented = || {
                    tls_client::connect(agent.https, "rot.test", &tls)
                        .map(|(_, info)| info.chain[0].clone())
                        .unwrap_or_default()
                };
                let leaf_now = presented();
                match rot_cert(i) {
                    Some(name) => assert_eq!(leaf_now, rot_leaf(name), "change {i}: {name}"),
                    // A Secret that disappears keeps its last good
                    // certificate (certs.rs), here rot-b.
                    None => assert_eq!(leaf_now, rot_leaf("rot-b"), "change {i}: removed"),
                }
            }
            Kind::Path => {
                assert_eq!(
                    status(&mut probe, agent.http, &host, &format!("/extra{i}")).0,
                    200,
                    "change {i}"
                );
                if let Some(before) = i.checked_sub(4) {
                    assert_eq!(
                        status(&mut probe, agent.http, &host, &format!("/extra{before}")).0,
                        404,
                        "change {i}: the previous extra path is gone"
                    );
                }
            }
        }
    }
    let churn_took = started.elapsed();
    // Let the load run on the final state for a moment, then stop it.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Relaxed);
    for c in clients {
        c.join().expect("a load client panicked");
    }
    let (ok, failed) = (tally.ok.load(Relaxed), tally.failed.load(Relaxed));
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    eprintln!(
        "{CHANGES} changes in {churn_took:.1?}; change → served p50 {:.1?}, p99 {:.1?}, max {:.1?}; \
         stable route: {ok} ok, {failed} failed",
        pct(0.5),
        pct(0.99),
        latencies[latencies.len() - 1],
    );
    assert_eq!(failed, 0, "requests on the stable route failed");
    assert!(ok > 1000, "the load ran ({ok} requests)");
    // The stable route's second pod came and went: both served, and the
    // agent published (at least) one snapshot per change.
    assert!(!w.stay[1].requests().is_empty());
    let generation = agent.metric("xingress_snapshot_generation").unwrap();
    assert!(generation >= CHANGES as f64, "{generation} snapshots");
    assert!(agent.stop(Duration::from_secs(10)).unwrap().success());
}
