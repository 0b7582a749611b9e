//! TCP and UDP services (`--tcp-services-configmap`,
//! `--udp-services-configmap`) through the userspace relay, on loopback:
//! each flow reaches the pod of its Maglev slot, live connections survive
//! endpoint changes, a removed endpoint gets no new flow, a dead one is
//! skipped, PROXY headers are decoded and encoded, and a bad entry is a
//! warning naming its key while the others serve.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use xingress::model::l4::L4Protocol;
use xingress_tests::{
    agent::{Agent, ManifestDir, free_port},
    fake_api::FakeApi,
    l4::{
        TcpPod, UdpPod, expected_pod, read_line, service_yaml, services_configmap, tcp_echo,
        tcp_hello, udp_ask,
    },
};

const TCP_CM: &str = "ingress/tcp-services";
const UDP_CM: &str = "ingress/udp-services";

fn tcp_pods(n: u8) -> Vec<TcpPod> {
    (0..n)
        .map(|i| {
            TcpPod::start(
                SocketAddr::from(([127, 0, 0, 11 + i], 0)),
                &format!("pod-{i}"),
            )
            .unwrap()
        })
        .collect()
}

fn agent_with(dir: &ManifestDir, extra: &[&str]) -> Agent {
    let mut agent = Agent::start_local(&dir.path, extra).unwrap();
    agent.wait_ready().unwrap();
    agent
}

/// The node address of a service port (the agent binds `--http-addr`'s IP).
fn node(agent: &Agent, port: u16) -> SocketAddr {
    SocketAddr::new(agent.http.ip(), port)
}

/// Waits until the port answers with a greeting.
fn wait_open(agent: &Agent, port: u16) {
    agent.eventually(&format!("TCP port {port} relayed"), || {
        tcp_hello(node(agent, port)).is_ok()
    });
}

#[test]
fn tcp_flows_reach_their_maglev_pod_and_live_ones_survive_endpoint_changes() {
    let pods = tcp_pods(4);
    let port = free_port();
    let dir = ManifestDir::new();
    let addrs = |idx: &[usize]| idx.iter().map(|&i| pods[i].addr).collect::<Vec<_>>();
    let first = addrs(&[0, 1, 2]);
    dir.write(
        "svc.yaml",
        &service_yaml("echo", 7000, L4Protocol::Tcp, &first),
    );
    dir.write(
        "cm.yaml",
        &services_configmap("tcp-services", &[(port, "default/echo:7000")]),
    );
    let agent = agent_with(&dir, &["--tcp-services-configmap", TCP_CM]);
    wait_open(&agent, port);

    // Each connection lands on the pod its client port hashes to.
    let mut live = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let (name, mut s) = tcp_hello(node(&agent, port)).unwrap();
        let want = expected_pod(L4Protocol::Tcp, port, &first, s.local_addr().unwrap());
        let pod = pods.iter().find(|p| p.addr == want).unwrap();
        assert_eq!(name, pod.name, "client {}", s.local_addr().unwrap());
        assert_eq!(tcp_echo(&mut s, b"ping").unwrap(), b"ping");
        seen.insert(name);
        live.push((pod.addr, s));
    }
    assert_eq!(seen.len(), 3, "30 flows over 3 pods: {seen:?}");

    // pod-0 leaves the Service, pod-3 joins.
    let second = addrs(&[1, 2, 3]);
    dir.replace(
        "svc.yaml",
        &service_yaml("echo", 7000, L4Protocol::Tcp, &second),
    );
    agent.eventually("pod-3 takes flows", || {
        (0..20).any(|_| tcp_hello(node(&agent, port)).is_ok_and(|(n, _)| n == "pod-3"))
    });
    // Every live connection still talks to its pod, pod-0's included.
    for (i, (_, s)) in live.iter_mut().enumerate() {
        let msg = format!("still-{i}");
        assert_eq!(tcp_echo(s, msg.as_bytes()).unwrap(), msg.as_bytes());
    }
    // New flows: never pod-0, each on its new Maglev pod.
    let before = pods[0].connections();
    for _ in 0..30 {
        let (name, s) = tcp_hello(node(&agent, port)).unwrap();
        let want = expected_pod(L4Protocol::Tcp, port, &second, s.local_addr().unwrap());
        assert_eq!(name, pods.iter().find(|p| p.addr == want).unwrap().name);
        assert_ne!(name, "pod-0");
    }
    assert_eq!(
        pods[0].connections(),
        before,
        "a removed endpoint got a new flow"
    );
    assert!(
        agent
            .metric(&format!("xingress_l4_relay_flows_total{{protocol=\"TCP\",port=\"{port}\",result=\"relayed\"}}"))
            .unwrap_or(0.0)
            >= 60.0,
        "{}",
        agent.logs()
    );
}

#[test]
fn a_dead_endpoint_is_skipped_and_a_service_without_pods_resets() {
    let pods = tcp_pods(1);
    // An address nothing listens on: connecting is refused at once.
    let dead = SocketAddr::from(([127, 0, 0, 30], free_port()));
    let (port, empty_port) = (free_port(), free_port());
    let dir = ManifestDir::new();
    dir.write(
        "svc.yaml",
        &format!(
            "{}{}",
            service_yaml("echo", 7000, L4Protocol::Tcp, &[pods[0].addr, dead]),
            service_yaml("nobody", 7000, L4Protocol::Tcp, &[])
        ),
    );
    dir.write(
        "cm.yaml",
        &services_configmap(
            "tcp-services",
            &[
                (port, "default/echo:7000"),
                (empty_port, "default/nobody:p"),
            ],
        ),
    );
    let agent = agent_with(&dir, &["--tcp-services-configmap", TCP_CM]);
    wait_open(&agent, port);
    // Half the flows hash to the dead pod: proxy-stream-next-upstream
    // sends them on to the live one.
    for _ in 0..20 {
        let (name, _) = tcp_hello(node(&agent, port)).unwrap();
        assert_eq!(name, "pod-0");
    }
    // No pod at all: the connection is accepted, then reset.
    let mut s = TcpStream::connect(node(&agent, empty_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 1];
    assert!(matches!(s.read(&mut b), Ok(0) | Err(_)));
    // Counted as the relay's task ends, just after the reset.
    agent.eventually("the failed flow counted", || {
        agent
            .metric(&format!("xingress_l4_relay_flows_total{{protocol=\"TCP\",port=\"{empty_port}\",result=\"failed\"}}"))
            .unwrap_or(0.0)
            >= 1.0
    });
}

#[test]
fn proxy_headers_are_decoded_from_clients_and_encoded_to_pods() {
    let pods = tcp_pods(1);
    let (encode, both) = (free_port(), free_port());
    let dir = ManifestDir::new();
    dir.write(
        "svc.yaml",
        &service_yaml("echo", 7000, L4Protocol::Tcp, &[pods[0].addr]),
    );
    dir.write(
        "cm.yaml",
        &services_configmap(
            "tcp-services",
            &[
                (encode, "default/echo:7000::PROXY"),
                (both, "default/echo:7000:PROXY:PROXY"),
            ],
        ),
    );
    let agent = agent_with(&dir, &["--tcp-services-configmap", TCP_CM]);
    wait_open(&agent, encode);
    // The pod reads a v1 header naming the client, then the bytes.
    let (_, mut s) = tcp_hello(node(&agent, encode)).unwrap();
    let client = s.local_addr().unwrap();
    assert_eq!(
        read_line(&mut s).unwrap(),
        format!(
            "PROXY TCP4 {} {} {} {encode}\r",
            client.ip(),
            agent.http.ip(),
            client.port()
        )
    );
    assert_eq!(tcp_echo(&mut s, b"data").unwrap(), b"data");
    // Decoded from the client: the pod is told the balancer's client.
    let mut s = TcpStream::connect(node(&agent, both)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"PROXY TCP4 192.0.2.9 198.51.100.1 4242 5432\r\nhello")
        .unwrap();
    assert_eq!(read_line(&mut s).unwrap(), "pod-0");
    assert_eq!(
        read_line(&mut s).unwrap(),
        "PROXY TCP4 192.0.2.9 198.51.100.1 4242 5432\r"
    );
    let mut rest = [0u8; 5];
    s.read_exact(&mut rest).unwrap();
    assert_eq!(&rest, b"hello");
    // Without the header the client is dropped, and the pod sees nothing.
    let before = pods[0].connections();
    let mut s = TcpStream::connect(node(&agent, both)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut b = [0u8; 16];
    assert!(matches!(s.read(&mut b), Ok(0) | Err(_)));
    assert_eq!(pods[0].connections(), before);
}

#[test]
fn udp_sessions_reach_their_maglev_pod_and_follow_endpoint_changes() {
    let pods: Vec<UdpPod> = (0..3)
        .map(|i| {
            UdpPod::start(
                SocketAddr::from(([127, 0, 0, 21 + i], 0)),
                &format!("udp-{i}"),
            )
            .unwrap()
        })
        .collect();
    let port = free_port();
    let dir = ManifestDir::new();
    let all: Vec<SocketAddr> = pods.iter().map(|p| p.addr).collect();
    dir.write("svc.yaml", &service_yaml("dns", 53, L4Protocol::Udp, &all));
    dir.write(
        "cm.yaml",
        &services_configmap("udp-services", &[(port, "default/dns:53")]),
    );
    let agent = agent_with(&dir, &["--udp-services-configmap", UDP_CM]);
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    agent.eventually("UDP port relayed", || {
        udp_ask(any, node(&agent, port), b"q").is_ok()
    });
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..30 {
        let q = format!("query-{i}");
        let (client, answer) = udp_ask(any, node(&agent, port), q.as_bytes()).unwrap();
        let want = expected_pod(L4Protocol::Udp, port, &all, client);
        let pod = pods.iter().find(|p| p.addr == want).unwrap();
        assert_eq!(answer, format!("{}:{q}", pod.name));
        seen.insert(pod.name.clone());
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    // udp-0 leaves: no new session reaches it.
    let rest = vec![all[1], all[2]];
    dir.replace("svc.yaml", &service_yaml("dns", 53, L4Protocol::Udp, &rest));
    agent.eventually("udp-0 gone from the relay", || {
        (0..20).all(|_| {
            udp_ask(any, node(&agent, port), b"x").is_ok_and(|(_, a)| !a.starts_with("udp-0"))
        })
    });
    let before = pods[0].datagrams();
    for _ in 0..20 {
        let (client, answer) = udp_ask(any, node(&agent, port), b"y").unwrap();
        let want = expected_pod(L4Protocol::Udp, port, &rest, client);
        let pod = pods.iter().find(|p| p.addr == want).unwrap();
        assert_eq!(answer, format!("{}:y", pod.name));
    }
    assert_eq!(pods[0].datagrams(), before);
}

#[test]
fn bad_entries_are_warnings_naming_their_key_and_the_others_serve() {
    let pods = tcp_pods(1);
    let port = free_port();
    let dir = ManifestDir::new();
    dir.write(
        "svc.yaml",
        &service_yaml("echo", 7000, L4Protocol::Tcp, &[pods[0].addr]),
    );
    dir.write(
        "cm.yaml",
        &services_configmap(
            "tcp-services",
            &[
                (port, "default/echo:7000"),
                (9, "default/missing:80"),
                (10, "default/echo:7001"),
                (11, "echo:7000"),
                (12, "default/echo:7000:PROXY:NOPE"),
            ],
        ),
    );
    let agent = agent_with(&dir, &["--tcp-services-configmap", TCP_CM]);
    wait_open(&agent, port);
    let logs = agent.logs();
    for (key, says) in [
        ("9", "Service default/missing not found"),
        ("10", "has no TCP port 7001"),
        ("11", "is not NAMESPACE/SERVICE"),
        ("12", "only PROXY"),
    ] {
        assert!(
            logs.lines()
                .any(|l| l.contains(&format!("key {key}")) && l.contains(says)),
            "no warning for key {key} ({says}):\n{logs}"
        );
    }
    // `xingress check` says the same, and lists the good one.
    let out = std::process::Command::new(xingress_tests::agent::xingress_bin())
        .args([
            "check",
            dir.path.to_str().unwrap(),
            "--tcp-services-configmap",
            TCP_CM,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&format!("TCP {port} → default/echo:7000: 1 ready")),
        "{text}"
    );
    assert!(text.contains("key 12: field 4 is \"NOPE\""), "{text}");
}

#[test]
fn services_come_from_the_api_server_and_a_new_port_opens_live() {
    let pods = tcp_pods(2);
    let (port, later) = (free_port(), free_port());
    let addrs: Vec<SocketAddr> = pods.iter().map(|p| p.addr).collect();
    let api = FakeApi::start();
    api.apply_yaml(&service_yaml("echo", 7000, L4Protocol::Tcp, &addrs));
    api.apply_yaml(&services_configmap(
        "tcp-services",
        &[(port, "default/echo:7000")],
    ));
    let dir = ManifestDir::new();
    dir.write("kubeconfig", &api.kubeconfig());
    let mut agent = Agent::start_cluster(
        &dir.path.join("kubeconfig"),
        &["--tcp-services-configmap", TCP_CM],
    )
    .unwrap();
    agent.wait_ready().unwrap();
    wait_open(&agent, port);
    let (name, s) = tcp_hello(node(&agent, port)).unwrap();
    let want = expected_pod(L4Protocol::Tcp, port, &addrs, s.local_addr().unwrap());
    assert_eq!(name, pods.iter().find(|p| p.addr == want).unwrap().name);
    api.apply_yaml(&services_configmap(
        "tcp-services",
        &[(port, "default/echo:7000"), (later, "default/echo:p")],
    ));
    wait_open(&agent, later);
    // An entry removed: its port closes; the connection made before goes on.
    let (_, mut live) = tcp_hello(node(&agent, later)).unwrap();
    api.apply_yaml(&services_configmap(
        "tcp-services",
        &[(port, "default/echo:7000")],
    ));
    agent.eventually("the removed port closed", || {
        TcpStream::connect_timeout(&node(&agent, later), Duration::from_millis(500)).is_err()
    });
    assert_eq!(tcp_echo(&mut live, b"still").unwrap(), b"still");
}

/// Spoofed sources against a UDP service: each new source would open a
/// session, and each session holds a socket until it ends (here, with
/// `proxy-stream-responses: "0"`, only at its idle timeout). Under an open-file limit of
/// 512 the relay keeps at most a quarter of it (128 sessions): 400 sources
/// later, the first client still gets its answers, the sources past the
/// budget are dropped (and counted, and said once in the log), and the
/// agent's HTTP listener and admin still answer.
#[test]
fn a_flood_of_udp_sources_cannot_take_the_agents_file_descriptors() {
    let pod = UdpPod::start(SocketAddr::from(([127, 0, 0, 31], 0)), "udp-0").unwrap();
    let port = free_port();
    let dir = ManifestDir::new();
    dir.write(
        "svc.yaml",
        &service_yaml("dns", 53, L4Protocol::Udp, &[pod.addr]),
    );
    dir.write(
        "cm.yaml",
        &services_configmap("udp-services", &[(port, "default/dns:53")]),
    );
    dir.write(
        "controller.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: xingress-controller, namespace: xingress}\ndata:\n  proxy-stream-responses: \"0\"\n",
    );
    let mut agent = Agent::start_local_with_file_limit(
        &dir.path,
        &[
            "--udp-services-configmap",
            UDP_CM,
            "--configmap",
            "xingress/xingress-controller",
        ],
        512,
    )
    .unwrap();
    agent.wait_ready().unwrap();
    let to = node(&agent, port);
    let first = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    first
        .set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    let ask = |s: &std::net::UdpSocket, q: &[u8]| -> Option<String> {
        s.send_to(q, to).ok()?;
        let mut b = [0u8; 256];
        let (n, _) = s.recv_from(&mut b).ok()?;
        Some(String::from_utf8_lossy(&b[..n]).into_owned())
    };
    agent.eventually("UDP port relayed", || ask(&first, b"hello").is_some());
    let before = pod.datagrams();
    // 400 more sources, one datagram each (the sockets close, the
    // sessions stay until their idle timeout).
    for i in 0..400 {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.send_to(format!("flood-{i}").as_bytes(), to).unwrap();
        // Paced, so that the socket's queue does not drop them first.
        if i % 20 == 19 {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
    let dropped = format!("xingress_l4_relay_dropped_datagrams_total{{port=\"{port}\"}}");
    agent.eventually("datagrams past the budget dropped", || {
        agent.metric(&dropped).is_some_and(|n| n >= 200.0)
    });
    // Sessions within the budget: the first client's goes on.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let flood = pod.datagrams() - before;
    // At most the budget's sessions (128 with the first client's), and a
    // few datagrams more: a closed socket's port can come back to a later
    // source, whose datagram then joins the session already open.
    assert!(
        (100..=150).contains(&flood),
        "{flood} flood datagrams reached the pod"
    );
    assert_eq!(ask(&first, b"again").as_deref(), Some("udp-0:again"));
    // A new source now is past the budget: no answer.
    let late = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    late.set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    assert_eq!(ask(&late, b"late"), None);
    // The agent still serves HTTP and its admin, file descriptors to spare.
    let r = xingress_tests::http1::get(agent.http, "nothing.test", "/").unwrap();
    assert_eq!(r.status, 404);
    assert!(
        agent.logs().contains("most the file limit allows"),
        "{}",
        agent.logs()
    );
}
