//! The TCP and UDP services' userspace relay (`--tcp-services-configmap`,
//! `--udp-services-configmap`): each port of the live snapshot's L4 table
//! bound on `--http-addr`'s address, each new flow sent to the endpoint its
//! Maglev slot names (the same choice the XDP program makes), with
//! ingress-nginx's `proxy-stream-*` behaviour. Ports open and close as
//! snapshots change; live connections keep their pod until they end.

mod tcp;
mod udp;

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
};

use crate::{
    model::l4::{L4Protocol, L4Service, L4Table},
    proxy::guard::UpstreamGuard,
    shutdown::{Shutdown, StoppableTask},
    snapshot::SnapshotCell,
};

/// Backlog of a TCP service's socket (as the agent's own listeners).
const BACKLOG: u32 = 1024;

/// What every relayed flow reads.
pub(crate) struct Relay {
    snapshots: Arc<SnapshotCell>,
    guard: UpstreamGuard,
    pub(crate) counters: Counters,
    /// UDP sessions alive on every port together, each holding a socket.
    udp_sessions: AtomicUsize,
    /// At most this many (`udp_budget`): sources a flood can spoof at will
    /// cannot take the file descriptors the agent's other clients need.
    udp_budget: usize,
    /// The budget was reached and said so; said again once it has room.
    udp_full: AtomicBool,
}

/// UDP sessions at most: 16,384, and no more than a quarter of the file
/// descriptors the agent may open (`RLIMIT_NOFILE`), so that the HTTP
/// listeners and pod connections keep the rest.
fn udp_budget() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given.
    let files = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
    } else {
        1024
    };
    (files / 4).clamp(16, udp::MAX_SESSIONS)
}

/// One live UDP session's share of the budget, given back when it ends.
struct UdpSlot(Arc<Relay>);

impl UdpSlot {
    /// A slot if the budget has room.
    fn take(relay: &Arc<Relay>) -> Option<Self> {
        let taken = relay
            .udp_sessions
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < relay.udp_budget).then_some(n + 1)
            });
        match taken {
            Ok(_) => {
                relay.udp_full.store(false, Ordering::Relaxed);
                Some(Self(relay.clone()))
            }
            Err(_) => {
                if !relay.udp_full.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        budget = relay.udp_budget,
                        "UDP services: {} sessions are open, the most the file limit allows; new clients' datagrams are dropped until sessions end",
                        relay.udp_budget
                    );
                }
                None
            }
        }
    }
}

impl Drop for UdpSlot {
    fn drop(&mut self) {
        self.0.udp_sessions.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Relay {
    /// The service on `port` in the live snapshot, and the stream settings.
    fn service(
        &self,
        protocol: L4Protocol,
        port: u16,
    ) -> Option<(Arc<L4Service>, crate::model::l4::StreamSettings)> {
        let snap = self.snapshots.load();
        let s = snap.table.l4.get(protocol, port)?.clone();
        Some((s, snap.table.l4.stream))
    }

    /// The endpoints to try for a flow from `client` to `service`, with
    /// the ones the guard refuses left out (and said).
    fn candidates(&self, service: &L4Service, client: SocketAddr) -> Vec<SocketAddr> {
        let slot = flow_slot(client, service.port, service.protocol);
        let mut out = service.candidates(slot);
        out.retain(|ep| match self.guard.check(*ep) {
            Ok(()) => true,
            Err(why) => {
                tracing::warn!(service = %service.describe(), endpoint = %ep, "endpoint refused: {}", why.reason());
                false
            }
        });
        out
    }
}

/// A flow's Maglev slot, as the XDP program computes it from the packet.
pub fn flow_slot(client: SocketAddr, service_port: u16, protocol: L4Protocol) -> u32 {
    let ports = ingress_common::l4_ports_word(client.port(), service_port);
    match client.ip().to_canonical() {
        IpAddr::V4(ip) => ingress_common::l4_slot(&ingress_common::l4_flow_words4(
            ip.octets(),
            ports,
            protocol.number(),
        )),
        IpAddr::V6(ip) => ingress_common::l4_slot(&ingress_common::l4_flow_words6(
            ip.octets(),
            ports,
            protocol.number(),
        )),
    }
}

/// The relay's counters, for /metrics (`xingress_l4_relay_*`), per
/// protocol and port.
#[derive(Default)]
pub(crate) struct Counters {
    ports: Mutex<HashMap<(L4Protocol, u16), Arc<PortCounters>>>,
}

/// One port's counters.
#[derive(Default, Debug)]
pub struct PortCounters {
    /// TCP connections accepted, UDP sessions started.
    pub flows: AtomicU64,
    /// Flows no endpoint took (none ready, all refused or unreachable).
    pub failed: AtomicU64,
    /// Bytes from clients to pods, and back.
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// UDP datagrams dropped (session table full, queue full).
    pub dropped: AtomicU64,
}

impl Counters {
    fn port(&self, protocol: L4Protocol, port: u16) -> Arc<PortCounters> {
        self.ports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((protocol, port))
            .or_default()
            .clone()
    }

    /// Every port's counters, sorted.
    pub fn all(&self) -> Vec<((L4Protocol, u16), Arc<PortCounters>)> {
        let mut v: Vec<_> = self
            .ports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, c)| (*k, c.clone()))
            .collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }
}

/// The relay's ports, kept as the live snapshot says.
pub struct L4Ports {
    ip: IpAddr,
    relay: Arc<Relay>,
    shutdown: Shutdown,
    runtime: tokio::runtime::Handle,
    /// Each bound port's serving task.
    ports: Mutex<HashMap<(L4Protocol, u16), StoppableTask>>,
}

impl L4Ports {
    /// Must be called within the runtime that will serve the ports.
    pub fn new(
        ip: IpAddr,
        snapshots: Arc<SnapshotCell>,
        guard: UpstreamGuard,
        shutdown: Shutdown,
    ) -> Arc<Self> {
        Arc::new(Self {
            ip,
            relay: Arc::new(Relay {
                snapshots,
                guard,
                counters: Counters::default(),
                udp_sessions: AtomicUsize::new(0),
                udp_budget: udp_budget(),
                udp_full: AtomicBool::new(false),
            }),
            shutdown,
            runtime: tokio::runtime::Handle::current(),
            ports: Mutex::new(HashMap::new()),
        })
    }

    /// Whether the relay would connect to `endpoint` (XDP steers only
    /// to endpoints it would).
    pub fn allowed(&self, endpoint: SocketAddr) -> bool {
        self.relay.guard.check(endpoint).is_ok()
    }

    /// `xingress_l4_relay_*`, for /metrics.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let all = self.relay.counters.all();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        crate::metrics::header(out, "xingress_l4_relay_flows_total");
        for ((protocol, port), c) in &all {
            let (flows, failed) = (load(&c.flows), load(&c.failed));
            for (result, n) in [
                ("relayed", flows.saturating_sub(failed)),
                ("failed", failed),
            ] {
                let _ = writeln!(
                    out,
                    "xingress_l4_relay_flows_total{{protocol=\"{}\",port=\"{port}\",result=\"{result}\"}} {n}",
                    protocol.label()
                );
            }
        }
        crate::metrics::header(out, "xingress_l4_relay_bytes_total");
        for ((protocol, port), c) in &all {
            for (direction, n) in [("in", load(&c.bytes_in)), ("out", load(&c.bytes_out))] {
                let _ = writeln!(
                    out,
                    "xingress_l4_relay_bytes_total{{protocol=\"{}\",port=\"{port}\",direction=\"{direction}\"}} {n}",
                    protocol.label()
                );
            }
        }
        crate::metrics::header(out, "xingress_l4_relay_dropped_datagrams_total");
        for ((protocol, port), c) in &all {
            if *protocol == L4Protocol::Udp {
                let _ = writeln!(
                    out,
                    "xingress_l4_relay_dropped_datagrams_total{{port=\"{port}\"}} {}",
                    load(&c.dropped)
                );
            }
        }
    }

    /// Serves exactly the ports of `table`: binds the new ones, closes the
    /// rest (their live connections go on). A port that cannot be bound is
    /// an error naming it; the next change retries it.
    pub fn sync(&self, table: &L4Table) {
        let mut ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        ports.retain(|(protocol, port), _| {
            // A port dropped here stops (its live connections go on).
            let keep = table.get(*protocol, *port).is_some();
            if !keep {
                tracing::info!(
                    protocol = protocol.label(),
                    port,
                    "L4 port closed: no service on it any more"
                );
            }
            keep
        });
        for s in &table.services {
            let key = (s.protocol, s.port);
            if ports.contains_key(&key) {
                continue;
            }
            match self.serve(s.protocol, s.port) {
                Ok(serving) => {
                    tracing::info!(service = %s.describe(), endpoints = s.endpoints.len(), "L4 port open (userspace relay)");
                    ports.insert(key, serving);
                }
                Err(e) => tracing::error!(
                    service = %s.describe(),
                    "cannot listen on {}:{}: {e}; the next change retries",
                    self.ip,
                    s.port
                ),
            }
        }
    }

    fn serve(&self, protocol: L4Protocol, port: u16) -> std::io::Result<StoppableTask> {
        let _in_runtime = self.runtime.enter();
        let addr = SocketAddr::new(self.ip, port);
        let (relay, counters) = (self.relay.clone(), self.relay.counters.port(protocol, port));
        Ok(match protocol {
            L4Protocol::Tcp => {
                let socket = if addr.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()?
                } else {
                    tokio::net::TcpSocket::new_v6()?
                };
                socket.set_reuseaddr(true)?;
                socket.bind(addr)?;
                let listener = socket.listen(BACKLOG)?;
                StoppableTask::spawn(&self.runtime, &self.shutdown, move |stop| {
                    tcp::serve(listener, port, relay, counters, stop)
                })
            }
            L4Protocol::Udp => {
                let socket = std::net::UdpSocket::bind(addr)?;
                socket.set_nonblocking(true)?;
                let socket = Arc::new(tokio::net::UdpSocket::from_std(socket)?);
                StoppableTask::spawn(&self.runtime, &self.shutdown, move |stop| {
                    udp::serve(socket, port, relay, counters, stop)
                })
            }
        })
    }

    /// Waits until every port has stopped accepting (after the agent's
    /// shutdown fired).
    pub async fn drained(&self) {
        let tasks: Vec<_> = {
            let mut ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
            ports.drain().filter_map(|(_, s)| s.stop()).collect()
        };
        for t in tasks {
            let _ = t.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slot_of_a_mapped_ipv4_client_is_its_ipv4_slot() {
        let v4: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:192.0.2.7]:40000".parse().unwrap();
        assert_eq!(
            flow_slot(v4, 9000, L4Protocol::Tcp),
            flow_slot(mapped, 9000, L4Protocol::Tcp)
        );
        assert_ne!(
            flow_slot(v4, 9000, L4Protocol::Tcp),
            flow_slot(v4, 9000, L4Protocol::Udp)
        );
    }
}
