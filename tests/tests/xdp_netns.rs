//! The agent with XDP attached in native mode to a veth whose peer lives in
//! a client namespace: real TCP through the program, counters on /metrics,
//! clean detach on SIGTERM. Needs root; fails (never skips) without it.

use std::{net::SocketAddr, time::Duration};

use xingress_tests::{
    agent::{Agent, ManifestDir, parse_metric},
    backend::{self, Mode},
    http1,
    netns::{Netns, veth},
};

const NODE_IP: [u8; 4] = [10, 98, 0, 1];
const CLIENT_IP: &str = "10.98.0.2/24";
const HTTP_PORT: u16 = 8080;
const REQUESTS: usize = 20;

struct Topology {
    node: Netns,
    client: Netns,
}

fn topology() -> Topology {
    xingress_tests::xdp::require_xdp("the netns XDP test");
    let node = Netns::unique("xgt-node").expect("node namespace");
    let client = Netns::unique("xgt-client").expect("client namespace");
    veth(
        (&node, "node0", "10.98.0.1/24"),
        (&client, "client0", CLIENT_IP),
    )
    .expect("veth pair");
    Topology { node, client }
}

fn metrics(node: &Netns, admin: SocketAddr) -> String {
    node.run(move || {
        http1::get(admin, "localhost", "/metrics")
            .expect("metrics")
            .text()
    })
    .expect("node ns")
}

#[test]
fn xdp_counts_real_traffic_and_detaches_on_exit() {
    let t = topology();
    // The "pod": an echo backend on the node's loopback.
    let pod = t
        .node
        .run(|| backend::start(SocketAddr::from(([127, 0, 0, 1], 0)), "pod-1", Mode::Echo))
        .expect("node ns")
        .expect("backend");
    let dir = ManifestDir::new();
    dir.write(
        "class.yaml",
        include_str!("../examples/cafe/ingressclass.yaml"),
    );
    dir.write("app.yaml", &format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: app}}\nspec: {{ports: [{{port: 80}}]}}\n---\n\
         apiVersion: v1\nkind: Endpoints\nmetadata: {{name: app}}\nsubsets: [{{addresses: [{{ip: 127.0.0.1}}], ports: [{{port: {}}}]}}]\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: app}}\nspec: {{defaultBackend: {{service: {{name: app, port: {{number: 80}}}}}}}}\n",
        pod.addr.port()
    ));
    let pin = xingress_tests::xdp::unique_pin_path().display().to_string();
    let http = SocketAddr::from((NODE_IP, HTTP_PORT));
    let admin: SocketAddr = "127.0.0.1:10254".parse().unwrap();
    let mut agent = Agent::start(
        &dir.path,
        http,
        admin,
        &[
            "--xdp-iface",
            "node0",
            "--xdp-mode",
            "native",
            "--xdp-pin-path",
            &pin,
        ],
        Some(&t.node),
    )
    .expect("agent");
    let mut agent = t
        .node
        .run(move || agent.wait_ready().map(|()| agent))
        .expect("node ns")
        .expect("ready");

    let m = metrics(&t.node, admin);
    assert_eq!(
        parse_metric(&m, "xingress_xdp_attached{iface=\"node0\",mode=\"native\"}"),
        Some(1.0),
        "{m}\n{}",
        agent.logs()
    );
    let listener_before =
        parse_metric(&m, "xingress_xdp_packets_total{class=\"listener\"}").unwrap();

    // Real requests from the client namespace, each on its own connection.
    let statuses = t
        .client
        .run(move || {
            (0..REQUESTS)
                .map(|_| http1::get(http, "app.test", "/").map(|r| r.status))
                .collect::<Result<Vec<_>, _>>()
        })
        .expect("client ns")
        .expect("requests");
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");

    let m = metrics(&t.node, admin);
    let get = |class: &str| {
        parse_metric(
            &m,
            &format!("xingress_xdp_packets_total{{class=\"{class}\"}}"),
        )
        .unwrap()
    };
    // Each connection sends at least SYN, ACK + request, FIN to the listener.
    let listener = get("listener") - listener_before;
    assert!(
        listener >= (3 * REQUESTS) as f64,
        "only {listener} listener packets for {REQUESTS} connections"
    );
    assert!(get("tcp") >= get("listener") && get("packets") >= get("tcp"));
    assert_eq!(get("malformed"), 0.0);

    // TCP to a port that is not a listener is seen as TCP, not as listener traffic.
    let (tcp_before, listener_before) = (get("tcp"), get("listener"));
    let closed = SocketAddr::from((NODE_IP, 9));
    let refused = t
        .client
        .run(move || std::net::TcpStream::connect_timeout(&closed, Duration::from_secs(2)).is_err())
        .unwrap();
    assert!(refused);
    let m2 = metrics(&t.node, admin);
    let get2 = |class: &str| {
        parse_metric(
            &m2,
            &format!("xingress_xdp_packets_total{{class=\"{class}\"}}"),
        )
        .unwrap()
    };
    assert!(get2("tcp") > tcp_before);
    // Only the metrics scrape itself is on loopback, not on node0: the listener count is unchanged.
    assert_eq!(get2("listener"), listener_before);

    let status = agent.stop(Duration::from_secs(15)).unwrap();
    assert!(status.success(), "SIGTERM exit: {status}\n{}", agent.logs());
    assert!(
        agent.logs().contains("XDP program detached"),
        "{}",
        agent.logs()
    );
    let link = t
        .node
        .command("ip")
        .args(["link", "show", "dev", "node0"])
        .output()
        .unwrap();
    let link = String::from_utf8_lossy(&link.stdout);
    assert!(
        !link.contains("xdp"),
        "XDP still attached after exit: {link}"
    );
    drop(pod);
}

#[test]
fn unknown_interface_keeps_serving_l7() {
    let t = topology();
    let dir = ManifestDir::new();
    let pin = xingress_tests::xdp::unique_pin_path().display().to_string();
    let http = SocketAddr::from((NODE_IP, HTTP_PORT));
    let admin: SocketAddr = "127.0.0.1:10254".parse().unwrap();
    let mut agent = Agent::start(
        &dir.path,
        http,
        admin,
        &["--xdp-iface", "nosuch0", "--xdp-pin-path", &pin],
        Some(&t.node),
    )
    .expect("agent");
    let agent = t
        .node
        .run(move || agent.wait_ready().map(|()| agent))
        .expect("node ns")
        .expect("ready");
    let m = metrics(&t.node, admin);
    assert_eq!(parse_metric(&m, "xingress_xdp_attached"), Some(0.0));
    assert!(
        agent.logs().contains("XDP disabled, serving L7 only"),
        "{}",
        agent.logs()
    );
    // L7 still answers (404: no Ingress in the directory).
    let status = t
        .client
        .run(move || http1::get(http, "x.test", "/").map(|r| r.status))
        .unwrap()
        .unwrap();
    assert_eq!(status, 404);
}
