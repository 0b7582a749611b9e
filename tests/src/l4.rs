//! Pods of the TCP and UDP services tests: a TCP pod greets each
//! connection with its name and a newline, then echoes what it reads; a
//! UDP pod answers each datagram with its name, a colon and the datagram.
//! Both count what they served, and a flow's expected pod comes from the
//! agent's own Maglev table and flow hash.

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::Duration,
};

use std::path::Path;

use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use ingress_common::{L4_STATE_OPEN, L4Flow, L4Key4, L4Nat};
use xingress::{
    dataplane::{Dataplane, l4::Ageing},
    model::l4::{L4Protocol, L4Service, L4Table, StreamSettings, parse_entry},
};

use crate::xdp::{checksum, require_xdp, unique_pin_path};

/// A TCP pod.
pub struct TcpPod {
    pub addr: SocketAddr,
    pub name: String,
    pub connections: Arc<AtomicUsize>,
    /// Where each connection came from, in order.
    pub peers: Arc<std::sync::Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
}

impl TcpPod {
    pub fn start(addr: SocketAddr, name: &str) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let connections = Arc::new(AtomicUsize::new(0));
        let peers = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, seen, halt, greeting) = (
            connections.clone(),
            peers.clone(),
            stop.clone(),
            format!("{name}\n").into_bytes(),
        );
        thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, peer)) => {
                        count.fetch_add(1, Ordering::Relaxed);
                        seen.lock().unwrap().push(peer);
                        let greeting = greeting.clone();
                        let _ = s.set_nonblocking(false);
                        thread::spawn(move || {
                            if s.write_all(&greeting).is_err() {
                                return;
                            }
                            let mut buf = [0u8; 4096];
                            while let Ok(n) = s.read(&mut buf) {
                                if n == 0 || s.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(Self {
            addr,
            name: name.to_string(),
            connections,
            peers,
            stop,
        })
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for TcpPod {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A UDP pod.
pub struct UdpPod {
    pub addr: SocketAddr,
    pub name: String,
    pub datagrams: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl UdpPod {
    pub fn start(addr: SocketAddr, name: &str) -> io::Result<Self> {
        let socket = UdpSocket::bind(addr)?;
        let addr = socket.local_addr()?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let datagrams = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, halt, prefix) = (
            datagrams.clone(),
            stop.clone(),
            format!("{name}:").into_bytes(),
        );
        thread::spawn(move || {
            let mut buf = [0u8; 65_536];
            while !halt.load(Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    count.fetch_add(1, Ordering::Relaxed);
                    let mut reply = prefix.clone();
                    reply.extend_from_slice(&buf[..n]);
                    let _ = socket.send_to(&reply, from);
                }
            }
        });
        Ok(Self {
            addr,
            name: name.to_string(),
            datagrams,
            stop,
        })
    }

    pub fn datagrams(&self) -> usize {
        self.datagrams.load(Ordering::Relaxed)
    }
}

impl Drop for UdpPod {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A Service `name` with one port `port` of `protocol` named `p`, and one
/// EndpointSlice per pod address (loopback pods differ in port).
pub fn service_yaml(name: &str, port: u16, protocol: L4Protocol, pods: &[SocketAddr]) -> String {
    let proto = protocol.label();
    let mut out = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  ports: [{{name: p, port: {port}, protocol: {proto}}}]\n---\n"
    );
    for (i, p) in pods.iter().enumerate() {
        let family = if p.is_ipv4() { "IPv4" } else { "IPv6" };
        out.push_str(&format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-{i}, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}\n\
             addressType: {family}\nports: [{{name: p, port: {}, protocol: {proto}}}]\nendpoints: [{{addresses: [\"{}\"], conditions: {{ready: true}}}}]\n---\n",
            p.port(),
            p.ip()
        ));
    }
    out
}

/// A services ConfigMap `name` in namespace `ingress` with these entries.
pub fn services_configmap(name: &str, entries: &[(u16, &str)]) -> String {
    let mut out = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: ingress}}\ndata:\n"
    );
    for (port, value) in entries {
        out.push_str(&format!("  \"{port}\": \"{value}\"\n"));
    }
    out
}

/// The endpoint the agent sends a new flow from `client` to (its Maglev
/// choice over `endpoints` for the node port `port`).
pub fn expected_pod(
    protocol: L4Protocol,
    port: u16,
    endpoints: &[SocketAddr],
    client: SocketAddr,
) -> SocketAddr {
    let entry = parse_entry(&port.to_string(), "a/b:1").expect("entry");
    let service = L4Service::new(entry, protocol, endpoints.to_vec());
    let slot = xingress::l4::flow_slot(client, port, protocol);
    service.candidates(slot)[0]
}

/// Connects to a TCP service and reads the greeting: the pod's name, and
/// the connection (for more).
pub fn tcp_hello(addr: SocketAddr) -> io::Result<(String, TcpStream)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let name = read_line(&mut s)?;
    Ok((name, s))
}

/// One line, without its newline.
pub fn read_line(s: &mut TcpStream) -> io::Result<String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match s.read(&mut b)? {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("closed after {:?}", String::from_utf8_lossy(&line)),
                ));
            }
            _ if b[0] == b'\n' => return Ok(String::from_utf8_lossy(&line).into_owned()),
            _ => line.push(b[0]),
        }
    }
}

/// Sends `payload` and reads back exactly as many bytes (the echo).
pub fn tcp_echo(s: &mut TcpStream, payload: &[u8]) -> io::Result<Vec<u8>> {
    s.write_all(payload)?;
    let mut back = vec![0u8; payload.len()];
    s.read_exact(&mut back)?;
    Ok(back)
}

/// One datagram from a fresh socket (bound on `from`), and its answer.
pub fn udp_ask(
    from: SocketAddr,
    to: SocketAddr,
    payload: &[u8],
) -> io::Result<(SocketAddr, String)> {
    let s = UdpSocket::bind(from)?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    let local = s.local_addr()?;
    s.send_to(payload, to)?;
    let mut buf = [0u8; 65_536];
    let (n, _) = s.recv_from(&mut buf)?;
    Ok((local, String::from_utf8_lossy(&buf[..n]).into_owned()))
}

// ---- BPF_PROG_TEST_RUN rig for the XDP steering (tests and bench) ----

pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;
/// The pod's MAC on the route `route_to_pod` makes.
pub const ROUTE_POD_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x91];

/// In `ns`: a route to the pod through a veth with a permanent neighbour
/// entry for it, and forwarding on, so a next-hop lookup succeeds as on a
/// node (BPF_PROG_TEST_RUN looks up in its caller's namespace).
pub fn route_to_pod(ns: &crate::netns::Netns) {
    for args in [
        &["link", "add", "d0", "type", "veth", "peer", "name", "d1"][..],
        &["addr", "add", "10.0.0.1/24", "dev", "d0"],
        &["link", "set", "d0", "up"],
        &["link", "set", "d1", "up"],
        &[
            "neigh",
            "add",
            "10.0.0.5",
            "lladdr",
            "02:00:00:00:00:91",
            "dev",
            "d0",
            "nud",
            "permanent",
        ],
    ] {
        ns.exec_ip(args).expect("ip");
    }
    let ok = ns
        .command("sysctl")
        .args(["-qw", "net.ipv4.conf.all.forwarding=1"])
        .status()
        .expect("sysctl");
    assert!(ok.success(), "sysctl forwarding");
}

pub const CLIENT: [u8; 4] = [192, 0, 2, 7];
pub const NODE: [u8; 4] = [198, 18, 0, 1];
pub const POD: [u8; 4] = [10, 0, 0, 5];
pub const CLIENT_PORT: u16 = 40_000;
pub const TCP_PORT: u16 = 5432;
pub const UDP_PORT: u16 = 5353;
pub const POD_PORT: u16 = 7000;
pub const NAT_PORT: u16 = 61_234;
pub const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xc1];
pub const NODE_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x01];
pub const POD_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x90];
/// BPF_PROG_TEST_RUN's packets come in on the loopback device.
pub const LOOPBACK: u32 = 1;

/// Ethernet + IPv4 (TTL `ttl`) + TCP (ACK|PSH) or UDP with valid checksums
/// (`udp_checksum: false` leaves UDP's at zero).
pub fn packet(
    proto: u8,
    (src, sport): ([u8; 4], u16),
    (dst, dport): ([u8; 4], u16),
    payload: &[u8],
    ttl: u8,
    udp_checksum: bool,
) -> Vec<u8> {
    let l4_len = if proto == 6 { 20 } else { 8 } + payload.len();
    let mut p = Vec::new();
    p.extend_from_slice(&NODE_MAC);
    p.extend_from_slice(&CLIENT_MAC);
    p.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + l4_len) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, ttl, proto, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let c = checksum(&ip, 0);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&ip);
    let mut l4 = Vec::new();
    l4.extend_from_slice(&sport.to_be_bytes());
    l4.extend_from_slice(&dport.to_be_bytes());
    if proto == 6 {
        l4.extend_from_slice(&1u32.to_be_bytes());
        l4.extend_from_slice(&1u32.to_be_bytes());
        l4.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    } else {
        l4.extend_from_slice(&(l4_len as u16).to_be_bytes());
        l4.extend_from_slice(&[0, 0]);
    }
    l4.extend_from_slice(payload);
    let at = if proto == 6 { 16 } else { 6 };
    if proto == 6 || udp_checksum {
        let c = l4_checksum(&src, &dst, proto, &l4);
        l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
    p.extend_from_slice(&l4);
    p
}

/// The TCP/UDP checksum of `l4` (its checksum field zero or not: a valid
/// segment sums to zero, so this returns 0 for one).
pub fn l4_checksum(src: &[u8; 4], dst: &[u8; 4], proto: u8, l4: &[u8]) -> u16 {
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(src);
    pseudo.extend_from_slice(dst);
    pseudo.extend_from_slice(&[0, proto]);
    pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    let mut sum = 0u32;
    for chunk in pseudo.chunks(2).chain(l4.chunks(2)) {
        let w = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        sum += u32::from(w);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// What a packet says, read back.
#[derive(Debug, PartialEq, Eq)]
pub struct Seen {
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
    pub ttl: u8,
    pub src: ([u8; 4], u16),
    pub dst: ([u8; 4], u16),
    pub ip_ok: bool,
    pub l4_ok: bool,
    /// UDP's checksum field is zero.
    pub no_udp_checksum: bool,
}

pub fn read(p: &[u8]) -> Seen {
    let ip = &p[14..34];
    let l4 = &p[34..];
    let proto = ip[9];
    let src: [u8; 4] = ip[12..16].try_into().unwrap();
    let dst: [u8; 4] = ip[16..20].try_into().unwrap();
    let udp_zero = proto == 17 && l4[6..8] == [0, 0];
    Seen {
        dmac: p[0..6].try_into().unwrap(),
        smac: p[6..12].try_into().unwrap(),
        ttl: ip[8],
        src: (src, u16::from_be_bytes([l4[0], l4[1]])),
        dst: (dst, u16::from_be_bytes([l4[2], l4[3]])),
        ip_ok: checksum(ip, 0) == 0,
        l4_ok: udp_zero || l4_checksum(&src, &dst, proto, l4) == 0,
        no_udp_checksum: udp_zero,
    }
}

pub fn map<K: aya::Pod, V: aya::Pod>(pin: &Path, name: &str) -> BpfHashMap<MapData, K, V> {
    let data = MapData::from_pin(pin.join(name)).expect("pinned map");
    BpfHashMap::try_from(Map::from_map_data(data).expect("map")).expect("hash map")
}

pub fn key(proto: u8, src: ([u8; 4], u16), dst: ([u8; 4], u16)) -> L4Key4 {
    L4Key4 {
        src: src.0,
        dst: dst.0,
        src_port_be: src.1.to_be(),
        dst_port_be: dst.1.to_be(),
        proto,
        _pad: [0; 3],
    }
}

pub struct Rig {
    pub dp: Dataplane,
    pub pin: std::path::PathBuf,
    pub l4: xingress::dataplane::l4::SharedL4,
}

/// The program with a TCP service on 5432 and a UDP one on 5353 (one pod),
/// and one steered flow of each (client 192.0.2.7:40000 → pod 10.0.0.5:7000
/// from the node's SNAT port 61234), entered as the program would.
pub fn rig() -> Rig {
    require_xdp("the L4 BPF_PROG_TEST_RUN tests");
    let pin = unique_pin_path();
    let mut dp = Dataplane::load(&pin).expect("load");
    let l4 = dp
        .take_l4(
            (61_000, 65_535),
            Ageing {
                opening: Duration::from_secs(30),
                closing: Duration::from_secs(30),
                idle: Duration::from_secs(600),
            },
        )
        .expect("L4 maps")
        .expect("L4 sync");
    let pod = SocketAddr::from((POD, POD_PORT));
    let service = |port: u16, protocol| {
        Arc::new(L4Service::new(
            parse_entry(&port.to_string(), "default/db:7000").unwrap(),
            protocol,
            vec![pod],
        ))
    };
    let table = L4Table {
        services: vec![
            service(TCP_PORT, L4Protocol::Tcp),
            service(UDP_PORT, L4Protocol::Udp),
        ],
        stream: StreamSettings::default(),
    };
    let report = l4.lock().unwrap().apply(&table, &|_| true).expect("apply");
    assert_eq!(report.steered, 2);
    let mut ct = map::<L4Key4, L4Flow>(&pin, "L4_CT4");
    let mut nat = map::<L4Key4, L4Nat>(&pin, "L4_NAT4");
    for (proto, port) in [(6u8, TCP_PORT), (17, UDP_PORT)] {
        ct.insert(
            key(proto, (CLIENT, CLIENT_PORT), (NODE, port)),
            L4Flow {
                pod: ingress_common::ipv4_mapped(POD),
                pod_port_be: POD_PORT.to_be(),
                nat_port_be: NAT_PORT.to_be(),
                ifindex: LOOPBACK,
                dmac: POD_MAC,
                smac: NODE_MAC,
                state: L4_STATE_OPEN,
                ..Default::default()
            },
            0,
        )
        .unwrap();
        nat.insert(
            key(proto, (POD, POD_PORT), (NODE, NAT_PORT)),
            L4Nat {
                client: ingress_common::ipv4_mapped(CLIENT),
                client_port_be: CLIENT_PORT.to_be(),
                service_port_be: port.to_be(),
                ifindex: LOOPBACK,
                client_mac: CLIENT_MAC,
                node_mac: NODE_MAC,
                state: L4_STATE_OPEN,
                ..Default::default()
            },
            0,
        )
        .unwrap();
    }
    Rig { dp, pin, l4 }
}
