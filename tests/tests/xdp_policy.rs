//! XDP policy with real TCP, the agent attached natively to a veth whose
//! peer (two client addresses) lives in a namespace of the test's own.
//! Needs root; fails, never skips.

use std::{
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpStream},
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use socket2::{Domain, Socket, Type};
use xingress_tests::{
    agent::{Agent, ManifestDir, parse_metric, xingress_bin},
    backend::{self, Backend, Mode},
    http1,
    netns::{Netns, veth},
    tls_client::{self, secret_yaml},
};

const NODE: [u8; 4] = [10, 98, 0, 1];
const CLIENT_A: &str = "10.98.0.2";
const CLIENT_B: &str = "10.98.0.3";
const HTTP: u16 = 8080;

struct Rig {
    node: Netns,
    client: Netns,
    _pod: Backend,
    dir: ManifestDir,
    pin: PathBuf,
}

/// Node and client namespaces; the client has two addresses; a pod on the
/// node's loopback; Ingresses `open.test` (no list), `allowed.test`
/// (allow list: client A only), TLS for both.
fn rig() -> Rig {
    xingress_tests::xdp::require_xdp("the XDP policy tests");
    let node = Netns::unique("xgp-node").unwrap();
    let client = Netns::unique("xgp-client").unwrap();
    veth(
        (&node, "node0", "10.98.0.1/24"),
        (&client, "client0", &format!("{CLIENT_A}/24")),
    )
    .unwrap();
    client
        .exec_ip(&["addr", "add", &format!("{CLIENT_B}/24"), "dev", "client0"])
        .unwrap();
    let pod = node
        .run(|| backend::start(SocketAddr::from(([127, 0, 0, 1], 0)), "pod-1", Mode::Echo))
        .unwrap()
        .unwrap();
    let dir = ManifestDir::new();
    dir.write(
        "class.yaml",
        include_str!("../examples/cafe/ingressclass.yaml"),
    );
    dir.write("secret.yaml", &secret_yaml("certs", "wild"));
    let ingress = |name: &str, host: &str, annotations: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  annotations: {{{annotations}}}\nspec:\n  \
             tls: [{{hosts: [\"{host}\"], secretName: certs}}]\n  rules:\n  - host: {host}\n    http:\n      paths:\n      \
             - {{path: /, pathType: Prefix, backend: {{service: {{name: app, port: {{number: 80}}}}}}}}\n---\n"
        )
    };
    dir.write(
        "app.yaml",
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: app}}\nspec: {{ports: [{{port: 80}}]}}\n---\n\
             apiVersion: v1\nkind: Endpoints\nmetadata: {{name: app}}\nsubsets: [{{addresses: [{{ip: 127.0.0.1}}], ports: [{{port: {}}}]}}]\n---\n{}{}",
            pod.addr.port(),
            ingress("open", "open.test", "xingress.dev/ssl-redirect: \"false\""),
            ingress(
                "allowed",
                "allowed.test",
                &format!("xingress.dev/ssl-redirect: \"false\", nginx.ingress.kubernetes.io/allowlist-source-range: \"{CLIENT_A}/32\""),
            ),
        ),
    );
    let pin = xingress_tests::xdp::unique_pin_path();
    Rig {
        node,
        client,
        _pod: pod,
        dir,
        pin,
    }
}

impl Rig {
    fn agent(&self, extra: &[&str]) -> Agent {
        let pin = self.pin.display().to_string();
        let mut args = vec![
            "--xdp-iface",
            "node0",
            "--xdp-mode",
            "native",
            "--xdp-pin-path",
            &pin,
        ];
        args.extend_from_slice(extra);
        let http = SocketAddr::from((NODE, HTTP));
        let admin: SocketAddr = "127.0.0.1:10254".parse().unwrap();
        let mut agent = Agent::start(&self.dir.path, http, admin, &args, Some(&self.node)).unwrap();
        self.node
            .run(move || agent.wait_ready().map(|()| agent))
            .unwrap()
            .unwrap()
    }

    fn metric(&self, agent: &Agent, series: &str) -> f64 {
        let admin = agent.admin;
        let text = self
            .node
            .run(move || http1::get(admin, "localhost", "/metrics").unwrap().text())
            .unwrap();
        parse_metric(&text, series).unwrap_or(0.0)
    }
}

/// A TCP connection from `src` (one of the client's addresses).
fn connect_from(src: &str, dst: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.bind(&SocketAddr::new(src.parse::<IpAddr>().unwrap(), 0).into())?;
    s.connect_timeout(&dst.into(), timeout)?;
    let stream: TcpStream = s.into();
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(stream)
}

/// GET over a connection from `src`: Ok(status) or the I/O error.
fn get_from(src: &str, host: &str) -> std::io::Result<u16> {
    let mut s = connect_from(src, SocketAddr::from((NODE, HTTP)), Duration::from_secs(2))?;
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no response: {text:?}")))
}

#[test]
fn denied_cidrs_cannot_connect() {
    let r = rig();
    let deny = format!("{CLIENT_B}/32");
    let agent = r.agent(&["--xdp-deny-cidr", &deny]);
    let ok = r.client.run(|| get_from(CLIENT_A, "open.test")).unwrap();
    assert_eq!(ok.unwrap(), 200, "{}", agent.logs());
    let denied = r
        .client
        .run(|| {
            connect_from(
                CLIENT_B,
                SocketAddr::from((NODE, HTTP)),
                Duration::from_millis(800),
            )
            .map(drop)
        })
        .unwrap();
    let err = denied.expect_err("a denied source must not connect");
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
        ),
        "SYNs are dropped, not refused: {err}"
    );
    assert!(r.metric(&agent, "xingress_xdp_packets_total{class=\"denied\"}") >= 1.0);
}

#[test]
fn allow_listed_hosts_refuse_outside_sources_promptly() {
    let r = rig();
    let agent = r.agent(&[]);
    assert_eq!(
        r.client
            .run(|| get_from(CLIENT_A, "allowed.test"))
            .unwrap()
            .unwrap(),
        200,
        "inside the allow list"
    );
    assert_eq!(
        r.client
            .run(|| get_from(CLIENT_B, "open.test"))
            .unwrap()
            .unwrap(),
        200,
        "a host without a list"
    );
    let started = Instant::now();
    let refused = r.client.run(|| get_from(CLIENT_B, "allowed.test")).unwrap();
    let err = refused.expect_err("an outside source is torn down, not served");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "torn down promptly, not timed out ({:?})",
        started.elapsed()
    );
    assert_eq!(
        r.metric(
            &agent,
            "xingress_xdp_packets_total{class=\"rejected_allowlist\"}"
        ),
        1.0
    );
    assert_eq!(
        r.metric(
            &agent,
            "xingress_xdp_host_flows_total{host=\"allowed.test\",verdict=\"reject\"}"
        ),
        1.0
    );
    assert!(
        r.metric(
            &agent,
            "xingress_xdp_host_flows_total{host=\"allowed.test\",verdict=\"l7\"}"
        ) >= 1.0
    );
}

#[test]
fn a_syn_flood_from_one_source_is_cut_while_another_is_served() {
    let r = rig();
    let agent = r.agent(&["--xdp-syn-rate", "5"]);
    const FLOOD: usize = 40;
    // All SYNs at once (non-blocking connects), then count who got through.
    let connected = r
        .client
        .run(|| {
            let dst: SocketAddr = SocketAddr::from((NODE, HTTP));
            let sockets: Vec<Socket> = (0..FLOOD)
                .map(|_| {
                    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
                    s.bind(&SocketAddr::new(CLIENT_B.parse::<IpAddr>().unwrap(), 0).into())
                        .unwrap();
                    s.set_nonblocking(true).unwrap();
                    let _ = s.connect(&dst.into());
                    s
                })
                .collect();
            std::thread::sleep(Duration::from_millis(500));
            sockets.iter().filter(|s| s.peer_addr().is_ok()).count()
        })
        .unwrap();
    assert!(
        connected <= 8,
        "{connected} of {FLOOD} flood connections got through a 5/s limit"
    );
    assert!(connected >= 5, "the burst is let through ({connected})");
    assert_eq!(
        r.client
            .run(|| get_from(CLIENT_A, "open.test"))
            .unwrap()
            .unwrap(),
        200,
        "another source is served"
    );
    assert!(
        r.metric(
            &agent,
            "xingress_xdp_packets_total{class=\"syn_rate_limited\"}"
        ) >= 20.0
    );
}

#[test]
fn strict_mode_rejects_an_unknown_sni_and_flows_are_listed() {
    let r = rig();
    let agent = r.agent(&["--xdp-strict-hosts"]);
    let https = agent.https;
    let known = r
        .client
        .run(move || {
            let (mut conn, _) =
                tls_client::connect(https, "open.test", &tls_client::config(&[b"http/1.1"]))?;
            conn.get("open.test", "/").map(|r| r.status)
        })
        .unwrap();
    assert_eq!(known.unwrap(), 200);
    let unknown = r
        .client
        .run(move || tls_client::connect(https, "unknown.test", &tls_client::config(&[])).map(drop))
        .unwrap();
    let err = unknown.expect_err("the handshake to an unknown host is torn down");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    assert_eq!(
        r.metric(
            &agent,
            "xingress_xdp_packets_total{class=\"rejected_unknown_host\"}"
        ),
        1.0
    );

    // A flow left open shows in `xingress xdp flows`, with its host and verdict.
    let held = r
        .client
        .run(move || {
            let (mut conn, _) =
                tls_client::connect(https, "open.test", &tls_client::config(&[b"http/1.1"]))
                    .unwrap();
            assert_eq!(conn.get("open.test", "/").unwrap().status, 200);
            conn
        })
        .unwrap();
    let out = Command::new(xingress_bin())
        .args(["xdp", "flows", "--output", "json", "--pin-path"])
        .arg(&r.pin)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let flows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed = flows.as_array().unwrap().iter().any(|f| {
        f["host"] == "open.test"
            && f["verdict"] == "l7"
            && f["client"].as_str().unwrap().starts_with(CLIENT_A)
            && f["local"] == https.to_string()
    });
    assert!(listed, "{flows:#}");
    let text = Command::new(xingress_bin())
        .args(["xdp", "stats", "--pin-path"])
        .arg(&r.pin)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("rejected_unknown_host    1"), "{text}");
    assert!(text.contains("open.test"), "{text}");
    drop(held);
    let mut agent = agent;
    assert!(agent.stop(Duration::from_secs(15)).unwrap().success());
    assert!(
        ingress_common::PINNED_MAPS
            .iter()
            .all(|m| !r.pin.join(m).exists()),
        "pins are removed when the agent stops"
    );
}
