//! TCP and UDP services steered in XDP, on an edge node built of network
//! namespaces: a LAN (a bridge) joins the client, the pods and the node;
//! the agent runs in the node with XDP attached natively to its one NIC
//! (`node0`), so a steered packet leaves by XDP_TX, rewritten: the
//! one-armed shape of an edge node behind a switch. Each scenario also runs
//! with XDP off, where the userspace relay serves the same ports and makes
//! the same Maglev choice. Needs root; fails (never skips) without it.
//!
//! Two settings stand in for what real NICs do: the client's and pods'
//! veths compute full checksums (`tx off`: veth otherwise hands over
//! partial ones, which a rewritten frame sent by XDP_TX cannot carry), and
//! the switch's port facing the node runs a pass-through XDP program (a
//! veth takes XDP_TX frames from its peer only in its XDP mode).

use std::{
    net::{SocketAddr, TcpStream},
    process::Command,
    time::{Duration, Instant},
};

use xingress::model::l4::L4Protocol;
use xingress_tests::{
    agent::{Agent, ManifestDir},
    http1,
    l4::{
        TcpPod, UdpPod, expected_pod, service_yaml, services_configmap, tcp_echo, tcp_hello,
        udp_ask,
    },
    netns::{Netns, veth},
};

const NODE: [u8; 4] = [10, 97, 0, 1];
const CLIENT: [u8; 4] = [10, 97, 0, 2];
const SERVICE_PORT: u16 = 5432;
const UDP_PORT: u16 = 5353;
/// The agent's default SNAT range.
const SNAT: std::ops::RangeInclusive<u16> = 61000..=65535;

struct Lan {
    /// The pass-through program on the switch port facing the node.
    _port_xdp: std::os::fd::OwnedFd,
    node: Netns,
    client: Netns,
    pods: Vec<Netns>,
    _lan: Netns,
}

fn pod_ip(i: usize) -> [u8; 4] {
    [10, 97, 0, 10 + i as u8]
}

fn ethtool(ns: &Netns, args: &[&str]) {
    let out = ns.command("ethtool").args(args).output().expect("ethtool");
    assert!(
        out.status.success(),
        "ethtool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sysctl(ns: &Netns, setting: &str) {
    let out = ns
        .command("sysctl")
        .args(["-qw", setting])
        .output()
        .expect("sysctl");
    assert!(
        out.status.success(),
        "sysctl {setting}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn lan(pods: usize) -> Lan {
    xingress_tests::xdp::require_xdp("the XDP L4 steering test");
    let lan = Netns::unique("xgl-lan").expect("lan namespace");
    lan.exec_ip(&["link", "add", "br0", "type", "bridge"])
        .unwrap();
    lan.exec_ip(&["link", "set", "br0", "up"]).unwrap();
    let join = |ns: &Netns, inner: &str, addr: String, port: &str| {
        veth((ns, inner, &addr), (&lan, port, "")).expect("veth");
        lan.exec_ip(&["link", "set", port, "master", "br0"])
            .unwrap();
    };
    let node = Netns::unique("xgl-node").expect("node namespace");
    join(&node, "node0", "10.97.0.1/24".into(), "ln");
    let port_xdp =
        xingress_tests::netns::attach_xdp_pass(&lan, "ln").expect("XDP on the switch port");
    sysctl(&node, "net.ipv4.conf.all.forwarding=1");
    let client = Netns::unique("xgl-client").expect("client namespace");
    join(&client, "c0", "10.97.0.2/24".into(), "lc");
    ethtool(&client, &["-K", "c0", "tx", "off"]);
    let pods = (0..pods)
        .map(|i| {
            let ns = Netns::unique("xgl-pod").expect("pod namespace");
            let ip = pod_ip(i);
            join(
                &ns,
                "p0",
                format!("{}.{}.{}.{}/24", ip[0], ip[1], ip[2], ip[3]),
                &format!("lp{i}"),
            );
            ethtool(&ns, &["-K", "p0", "tx", "off"]);
            ns
        })
        .collect();
    Lan {
        _port_xdp: port_xdp,
        node,
        client,
        pods,
        _lan: lan,
    }
}

fn metrics(node: &Netns, admin: SocketAddr) -> String {
    node.run(move || {
        http1::get(admin, "localhost", "/metrics")
            .map(|r| r.text())
            .unwrap_or_default()
    })
    .expect("node ns")
}

/// Sums the series of `name` whose labels contain every `(label, value)`.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn start_agent(
    t: &Lan,
    dir: &ManifestDir,
    xdp: bool,
    extra: &[&str],
) -> (Agent, SocketAddr, String) {
    let pin = xingress_tests::xdp::unique_pin_path().display().to_string();
    let http = SocketAddr::from((NODE, 8080));
    let admin: SocketAddr = "127.0.0.1:10254".parse().unwrap();
    let mut args: Vec<&str> = extra.to_vec();
    if xdp {
        args.extend([
            "--xdp-iface",
            "node0",
            "--xdp-mode",
            "native",
            "--xdp-pin-path",
            &pin,
        ]);
    }
    let agent = Agent::start(&dir.path, http, admin, &args, Some(&t.node)).expect("agent");
    let agent = t
        .node
        .run(move || {
            let mut agent = agent;
            agent.wait_ready().map(|()| agent)
        })
        .expect("node ns")
        .expect("ready");
    (agent, admin, pin)
}

/// Resolves the node's neighbours (as any earlier traffic would): a flow
/// whose pod has no neighbour entry yet is left to the relay.
fn warm_neighbours(t: &Lan, pods: &[SocketAddr]) {
    let pods = pods.to_vec();
    t.node
        .run(move || {
            for p in pods {
                let _ = TcpStream::connect_timeout(&p, Duration::from_secs(2));
                let _ = std::net::UdpSocket::bind("0.0.0.0:0").and_then(|s| s.send_to(b"warm", p));
            }
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
}

fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

fn tcp_scenario(xdp: bool) {
    let t = lan(4);
    let pods: Vec<TcpPod> = t
        .pods
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            let addr = SocketAddr::from((pod_ip(i), 7000));
            ns.run(move || TcpPod::start(addr, &format!("pod-{i}")).unwrap())
                .unwrap()
        })
        .collect();
    let addrs = |idx: &[usize]| idx.iter().map(|&i| pods[i].addr).collect::<Vec<_>>();
    let first = addrs(&[0, 1, 2]);
    let dir = ManifestDir::new();
    dir.write(
        "svc.yaml",
        &service_yaml("db", 7000, L4Protocol::Tcp, &first),
    );
    dir.write(
        "cm.yaml",
        &services_configmap("tcp-services", &[(SERVICE_PORT, "default/db:7000")]),
    );
    let (agent, admin, pin) = start_agent(
        &t,
        &dir,
        xdp,
        &["--tcp-services-configmap", "ingress/tcp-services"],
    );
    warm_neighbours(&t, &addrs(&[0, 1, 2, 3]));
    for p in &pods {
        p.peers.lock().unwrap().clear();
    }
    let node = SocketAddr::from((NODE, SERVICE_PORT));
    let connect = |t: &Lan| t.client.run(move || tcp_hello(node).unwrap()).unwrap();

    let mut live = Vec::new();
    for _ in 0..30 {
        let (name, mut s) = connect(&t);
        let client = s.local_addr().unwrap();
        assert_eq!(client.ip(), std::net::IpAddr::from(CLIENT));
        let want = expected_pod(L4Protocol::Tcp, SERVICE_PORT, &first, client);
        let pod = pods.iter().find(|p| p.addr == want).unwrap();
        assert_eq!(name, pod.name, "client {client}\n{}", agent.logs());
        assert_eq!(tcp_echo(&mut s, b"ping").unwrap(), b"ping");
        live.push(s);
    }
    // What the pods saw: the node, from an SNAT port (XDP) or the
    // kernel's ephemeral ports (the relay's own connections).
    for p in &pods {
        for peer in p.peers.lock().unwrap().iter() {
            assert_eq!(peer.ip(), std::net::IpAddr::from(NODE));
            if xdp {
                assert!(
                    SNAT.contains(&peer.port()),
                    "{peer} not from the SNAT range"
                );
            } else {
                assert!(!SNAT.contains(&peer.port()), "{peer}");
            }
        }
    }
    let m = metrics(&t.node, admin);
    let port = SERVICE_PORT.to_string();
    let relayed = metric(&m, "xingress_l4_relay_flows_total", &[("port", &port)]);
    let steered = metric(
        &m,
        "xingress_xdp_l4_flows_total",
        &[("port", &port), ("result", "steered")],
    );
    if xdp {
        // The agent's sockets never saw these flows.
        assert_eq!(relayed, 0.0, "{m}");
        assert_eq!(steered, 30.0, "{m}");
        assert!(
            metric(
                &m,
                "xingress_xdp_l4_packets_total",
                &[("port", &port), ("direction", "out")]
            ) >= 60.0,
            "{m}"
        );
        assert!(
            metric(
                &m,
                "xingress_xdp_l4_endpoint_flows_total",
                &[("endpoint", &pods[0].addr.to_string())]
            ) >= 1.0,
            "{m}"
        );
        // `xingress xdp flows` lists each live one: client, pod, SNAT port.
        let out = std::process::Command::new(xingress_tests::agent::xingress_bin())
            .args(["xdp", "flows", "--output", "json", "--pin-path", &pin])
            .output()
            .unwrap();
        let flows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for s in &live {
            let client = s.local_addr().unwrap();
            let want = expected_pod(L4Protocol::Tcp, SERVICE_PORT, &first, client);
            let row = flows
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["kind"] == "l4" && f["client"] == client.to_string().as_str())
                .unwrap_or_else(|| panic!("{client} not listed: {flows:#}"));
            assert_eq!(row["pod"], want.to_string().as_str());
            assert_eq!(row["state"], "open");
            assert!(SNAT.contains(&(row["snat_port"].as_u64().unwrap() as u16)));
        }
    } else {
        assert_eq!(relayed, 30.0, "{m}");
        assert_eq!(steered, 0.0, "{m}");
    }

    // pod-0 leaves, pod-3 joins: live connections keep their pod.
    let second = addrs(&[1, 2, 3]);
    dir.replace(
        "svc.yaml",
        &service_yaml("db", 7000, L4Protocol::Tcp, &second),
    );
    eventually("pod-3 takes new flows", || {
        (0..20).any(|_| connect(&t).0 == "pod-3")
    });
    for (i, s) in live.iter_mut().enumerate() {
        let msg = format!("after-{i}");
        assert_eq!(
            tcp_echo(s, msg.as_bytes()).unwrap(),
            msg.as_bytes(),
            "connection {i}"
        );
    }
    let before = pods[0].connections();
    for _ in 0..30 {
        let (name, s) = connect(&t);
        let want = expected_pod(
            L4Protocol::Tcp,
            SERVICE_PORT,
            &second,
            s.local_addr().unwrap(),
        );
        assert_eq!(name, pods.iter().find(|p| p.addr == want).unwrap().name);
    }
    assert_eq!(
        pods[0].connections(),
        before,
        "the removed pod got a new flow"
    );
    drop(live);
    drop(agent);
}

#[test]
fn tcp_services_are_steered_in_xdp() {
    tcp_scenario(true);
}

#[test]
fn tcp_services_without_xdp_are_relayed_the_same_way() {
    tcp_scenario(false);
}

fn udp_scenario(xdp: bool) {
    let t = lan(3);
    let pods: Vec<UdpPod> = t
        .pods
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            let addr = SocketAddr::from((pod_ip(i), 53));
            ns.run(move || UdpPod::start(addr, &format!("dns-{i}")).unwrap())
                .unwrap()
        })
        .collect();
    let all: Vec<SocketAddr> = pods.iter().map(|p| p.addr).collect();
    let dir = ManifestDir::new();
    dir.write("svc.yaml", &service_yaml("dns", 53, L4Protocol::Udp, &all));
    dir.write(
        "cm.yaml",
        &services_configmap("udp-services", &[(UDP_PORT, "default/dns:53")]),
    );
    let (agent, admin, _) = start_agent(
        &t,
        &dir,
        xdp,
        &["--udp-services-configmap", "ingress/udp-services"],
    );
    warm_neighbours(&t, &all);
    let node = SocketAddr::from((NODE, UDP_PORT));
    let any = SocketAddr::from((CLIENT, 0));
    let ask = |t: &Lan, q: String| {
        t.client
            .run(move || udp_ask(any, node, q.as_bytes()))
            .unwrap()
    };
    for i in 0..30 {
        let q = format!("q{i}");
        let (client, answer) = ask(&t, q.clone()).unwrap_or_else(|e| {
            let out = Command::new("ip")
                .args(["-n", t._lan.name(), "-s", "link"])
                .output()
                .unwrap();
            let out2 = Command::new("ip")
                .args(["-n", t.node.name(), "-s", "link"])
                .output()
                .unwrap();
            panic!(
                "query {i}: {e}\n{}\n{}\n{}\n{}",
                agent.logs(),
                metrics(&t.node, admin),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out2.stdout)
            )
        });
        let want = expected_pod(L4Protocol::Udp, UDP_PORT, &all, client);
        let pod = pods.iter().find(|p| p.addr == want).unwrap();
        assert_eq!(answer, format!("{}:{q}", pod.name));
    }
    let m = metrics(&t.node, admin);
    let port = UDP_PORT.to_string();
    let relayed = metric(&m, "xingress_l4_relay_flows_total", &[("port", &port)]);
    let steered = metric(
        &m,
        "xingress_xdp_l4_flows_total",
        &[("port", &port), ("result", "steered")],
    );
    if xdp {
        assert_eq!((relayed, steered), (0.0, 30.0), "{m}");
    } else {
        assert_eq!((relayed, steered), (30.0, 0.0), "{m}");
    }
    drop(agent);
}

#[test]
fn udp_services_are_steered_in_xdp() {
    udp_scenario(true);
}

#[test]
fn udp_services_without_xdp_are_relayed_the_same_way() {
    udp_scenario(false);
}
