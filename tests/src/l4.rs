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

use xingress::model::l4::{L4Protocol, L4Service, parse_entry};

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
