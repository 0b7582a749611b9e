//! The XDP side of the TCP and UDP services: which services XDP steers,
//! their Maglev tables and endpoints (double-buffered: the table a service
//! does not use is filled, then the service switches to it), the ports'
//! LISTENERS bits, the SNAT range, the ageing of steered flows, and their
//! counters. A service XDP cannot steer — PROXY on either side, a
//! refused endpoint, no endpoint, more services or endpoints than the maps
//! hold — is served by the userspace relay alone, said once in the log.

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use aya::maps::{Array, HashMap as BpfHashMap, MapData, MapError, PerCpuArray, PerCpuValues};
use ingress_common::{
    F_LISTENER_L4_NAT, F_LISTENER_L4_TCP, F_LISTENER_L4_UDP, L4_STATE_CLOSING, L4_STATE_NEW,
    L4Config, L4Counters, L4Endpoint, L4Flow, L4Key4, L4Nat, L4ServiceKey, L4ServiceValue,
    MAGLEV_SIZE, MAX_L4_ENDPOINT_IDS, MAX_L4_ENDPOINTS, MAX_L4_SERVICES, MaglevTable,
};

use super::loader::ListenerTable;
use crate::model::l4::{L4Protocol, L4Service, L4Table};

/// The program's L4 maps.
pub struct L4Maps {
    pub(super) services: BpfHashMap<MapData, L4ServiceKey, L4ServiceValue>,
    pub(super) maglev: Array<MapData, MaglevTable>,
    pub(super) endpoints: Array<MapData, L4Endpoint>,
    pub(super) ct4: BpfHashMap<MapData, L4Key4, L4Flow>,
    pub(super) nat4: BpfHashMap<MapData, L4Key4, L4Nat>,
    pub(super) stats: PerCpuArray<MapData, L4Counters>,
    pub(super) ep_stats: PerCpuArray<MapData, L4Counters>,
    pub(super) config: Array<MapData, L4Config>,
}

/// A steered service as written.
struct Steered {
    id: u32,
    table: u32,
    endpoints: Vec<SocketAddr>,
    label: String,
}

/// How long steered flows live without a packet.
#[derive(Clone, Copy, Debug)]
pub struct Ageing {
    /// TCP flows with no reply yet.
    pub opening: Duration,
    /// After a FIN or RST.
    pub closing: Duration,
    /// Open TCP flows and UDP flows (`proxy-stream-timeout`).
    pub idle: Duration,
}

/// Keeps the L4 maps in step with the snapshot; shared by the publisher
/// (apply), the ageing task and /metrics.
pub struct L4Sync {
    maps: L4Maps,
    listeners: Arc<Mutex<ListenerTable>>,
    nat: (u16, u16),
    steered: BTreeMap<(L4Protocol, u16), Steered>,
    /// Ids of services and endpoints, kept while they exist.
    endpoint_ids: HashMap<SocketAddr, u32>,
    /// Oldest freed first: a freed id is reused only after every other
    /// one, so the live flows still counting into it (they keep their pod
    /// after it left the Service) have long aged out.
    free_endpoint_ids: std::collections::VecDeque<u32>,
    /// Services told about once (why XDP leaves them to the relay).
    said: HashMap<(L4Protocol, u16), String>,
    ageing: Ageing,
}

/// What `apply` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct L4Report {
    pub steered: usize,
    pub relayed: usize,
    pub tables_written: usize,
}

/// One service's or endpoint's counters, summed over CPUs.
#[derive(Clone, Debug)]
pub struct L4Stat {
    pub protocol: L4Protocol,
    pub port: u16,
    /// `NAMESPACE/SERVICE:PORT`, or the endpoint's address.
    pub label: String,
    pub counters: L4Counters,
}

/// Per-CPU values summed.
pub(super) fn sum(values: &PerCpuValues<L4Counters>) -> L4Counters {
    values
        .iter()
        .fold(L4Counters::default(), |a, c| L4Counters {
            packets_in: a.packets_in + c.packets_in,
            bytes_in: a.bytes_in + c.bytes_in,
            packets_out: a.packets_out + c.packets_out,
            bytes_out: a.bytes_out + c.bytes_out,
            flows: a.flows + c.flows,
            fallbacks: a.fallbacks + c.fallbacks,
        })
}

/// CLOCK_MONOTONIC_COARSE in ns: the program's clock.
pub(super) fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl L4Sync {
    pub(super) fn new(
        maps: L4Maps,
        listeners: Arc<Mutex<ListenerTable>>,
        nat: (u16, u16),
        ageing: Ageing,
    ) -> Result<Self, MapError> {
        let mut sync = Self {
            maps,
            listeners,
            nat,
            steered: BTreeMap::new(),
            endpoint_ids: HashMap::new(),
            free_endpoint_ids: (0..MAX_L4_ENDPOINT_IDS).collect(),
            said: HashMap::new(),
            ageing,
        };
        sync.maps.config.set(
            0,
            L4Config {
                nat_lo: nat.0,
                nat_hi: nat.1,
                _reserved: 0,
            },
            0,
        )?;
        Ok(sync)
    }

    /// Why XDP cannot steer `s` (the relay serves it), if it cannot.
    fn unsteerable(s: &L4Service, allowed: &dyn Fn(SocketAddr) -> bool) -> Option<String> {
        if s.decode_proxy || s.encode_proxy {
            return Some(
                "PROXY protocol needs the relay (XDP cannot add bytes to a stream)".into(),
            );
        }
        if s.endpoints.is_empty() {
            return Some("no ready endpoint".into());
        }
        if s.endpoints.len() > MAX_L4_ENDPOINTS as usize {
            return Some(format!("more than {MAX_L4_ENDPOINTS} endpoints"));
        }
        if let Some(ep) = s.endpoints.iter().find(|e| !allowed(**e)) {
            return Some(format!("endpoint {ep} is refused as an upstream"));
        }
        None
    }

    /// Steers the services of `table` that XDP can carry; the others'
    /// ports are left to the relay. Live flows keep their pod.
    pub fn apply(
        &mut self,
        table: &L4Table,
        allowed: &dyn Fn(SocketAddr) -> bool,
    ) -> Result<L4Report, MapError> {
        self.ageing.idle = table.stream.timeout;
        let mut report = L4Report::default();
        let mut wanted: BTreeMap<(L4Protocol, u16), &L4Service> = BTreeMap::new();
        let mut said = HashMap::new();
        for s in &table.services {
            let key = (s.protocol, s.port);
            let why = Self::unsteerable(s, allowed).or_else(|| {
                let full = !self.steered.contains_key(&key)
                    && self.steered.len() + wanted.len() >= MAX_L4_SERVICES as usize;
                full.then(|| format!("more than {MAX_L4_SERVICES} services"))
            });
            match why {
                Some(why) => {
                    if self.said.get(&key) != Some(&why) {
                        tracing::info!(service = %s.describe(), "not steered in XDP, relayed: {why}");
                    }
                    said.insert(key, why);
                    report.relayed += 1;
                }
                None => {
                    wanted.insert(key, s);
                }
            }
        }
        self.said = said;
        // Gone: the service entry goes (new flows meet the relay); live
        // flows keep their table until they age out.
        let gone: Vec<_> = self
            .steered
            .keys()
            .filter(|k| !wanted.contains_key(k))
            .copied()
            .collect();
        for key in gone {
            let _ = self.maps.services.remove(&service_key(key));
            self.steered.remove(&key);
        }
        for (key, s) in &wanted {
            if self
                .steered
                .get(key)
                .is_some_and(|st| st.endpoints == s.endpoints)
            {
                continue;
            }
            let id = match self.steered.get(key) {
                Some(st) => st.id,
                None => (0..MAX_L4_SERVICES)
                    .find(|i| self.steered.values().all(|st| st.id != *i))
                    .unwrap_or(0),
            };
            // The table this service does not use now.
            let table_idx = match self.steered.get(key) {
                Some(st) if st.table == 2 * id => 2 * id + 1,
                _ => 2 * id,
            };
            self.write_table(table_idx, s)?;
            self.maps.services.insert(
                service_key(*key),
                L4ServiceValue {
                    id,
                    table: table_idx,
                },
                0,
            )?;
            tracing::info!(service = %s.describe(), endpoints = s.endpoints.len(), "steered in XDP");
            self.steered.insert(
                *key,
                Steered {
                    id,
                    table: table_idx,
                    endpoints: s.endpoints.clone(),
                    label: format!("{}:{}", s.service, s.service_port),
                },
            );
            report.tables_written += 1;
        }
        self.release_endpoint_ids();
        report.steered = self.steered.len();
        self.write_listeners();
        Ok(report)
    }

    fn write_table(&mut self, table: u32, s: &L4Service) -> Result<(), MapError> {
        let Some(maglev) = &s.maglev else {
            return Ok(());
        };
        for (i, ep) in s.endpoints.iter().enumerate() {
            let (addr, family) = match ep.ip().to_canonical() {
                IpAddr::V4(ip) => (ip.to_ipv6_mapped().octets(), 4),
                IpAddr::V6(ip) => (ip.octets(), 6),
            };
            let stats_id = self.endpoint_id(*ep);
            self.maps.endpoints.set(
                table * MAX_L4_ENDPOINTS + i as u32,
                L4Endpoint {
                    addr,
                    port_be: ep.port().to_be(),
                    family,
                    _pad: 0,
                    stats_id,
                },
                0,
            )?;
        }
        // The end of the list, for readers (`xingress xdp stats`); the
        // table never names an index past it.
        if s.endpoints.len() < MAX_L4_ENDPOINTS as usize {
            self.maps.endpoints.set(
                table * MAX_L4_ENDPOINTS + s.endpoints.len() as u32,
                L4Endpoint::default(),
                0,
            )?;
        }
        let mut t = MaglevTable {
            slots: [u16::MAX; MAGLEV_SIZE as usize + 1],
        };
        t.slots[..MAGLEV_SIZE as usize].copy_from_slice(maglev.slots());
        self.maps.maglev.set(table, t, 0)
    }

    /// The stable counter id of an endpoint address.
    fn endpoint_id(&mut self, ep: SocketAddr) -> u32 {
        if let Some(id) = self.endpoint_ids.get(&ep) {
            return *id;
        }
        let id = self.free_endpoint_ids.pop_front().unwrap_or(0);
        // A reused id starts from zero.
        if let Ok(cpus) = aya::util::nr_cpus()
            && let Ok(zero) = PerCpuValues::try_from(vec![L4Counters::default(); cpus])
        {
            let _ = self.maps.ep_stats.set(id, zero, 0);
        }
        self.endpoint_ids.insert(ep, id);
        id
    }

    /// Ids of endpoints no steered service has any more.
    fn release_endpoint_ids(&mut self) {
        let live: std::collections::HashSet<SocketAddr> = self
            .steered
            .values()
            .flat_map(|s| s.endpoints.iter().copied())
            .collect();
        let gone: Vec<SocketAddr> = self
            .endpoint_ids
            .keys()
            .filter(|e| !live.contains(e))
            .copied()
            .collect();
        for ep in gone {
            if let Some(id) = self.endpoint_ids.remove(&ep) {
                self.free_endpoint_ids.push_back(id);
            }
        }
    }

    /// LISTENERS: the steered ports' bits and the SNAT range's.
    fn write_listeners(&self) {
        let mut ports: Vec<(u16, u32)> = Vec::new();
        for (protocol, port) in self.steered.keys() {
            let bit = match protocol {
                L4Protocol::Tcp => F_LISTENER_L4_TCP,
                L4Protocol::Udp => F_LISTENER_L4_UDP,
            };
            ports.push((*port, bit));
        }
        if !self.steered.is_empty() {
            for port in self.nat.0..=self.nat.1 {
                ports.push((port, F_LISTENER_L4_NAT));
            }
        }
        let mut l = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = l.set_l4(ports) {
            tracing::error!("writing the L4 ports to XDP failed: {e}");
        }
    }

    /// Removes steered flows idle past their state's time; returns how
    /// many went.
    pub fn age(&mut self) -> usize {
        let (now, ageing) = (now_ns(), self.ageing);
        age_family(&mut self.maps.ct4, &mut self.maps.nat4, now, ageing)
    }

    /// Per-service and per-endpoint counters.
    pub fn counters(&self) -> (Vec<L4Stat>, Vec<L4Stat>) {
        let mut services = Vec::new();
        let mut endpoints = Vec::new();
        for ((protocol, port), s) in &self.steered {
            if let Ok(v) = self.maps.stats.get(&s.id, 0) {
                services.push(L4Stat {
                    protocol: *protocol,
                    port: *port,
                    label: s.label.clone(),
                    counters: sum(&v),
                });
            }
            for ep in &s.endpoints {
                let Some(id) = self.endpoint_ids.get(ep) else {
                    continue;
                };
                if let Ok(v) = self.maps.ep_stats.get(id, 0) {
                    endpoints.push(L4Stat {
                        protocol: *protocol,
                        port: *port,
                        label: ep.to_string(),
                        counters: sum(&v),
                    });
                }
            }
        }
        (services, endpoints)
    }
}

fn service_key((protocol, port): (L4Protocol, u16)) -> L4ServiceKey {
    L4ServiceKey {
        port_be: port.to_be(),
        proto: protocol.number(),
        _pad: 0,
    }
}

/// A flow key (IPv4 today; the trait is the seam for IPv6).
pub trait FlowKey: aya::Pod + Copy {
    fn proto(&self) -> u8;
    /// Client and node addresses, IPv4-mapped for IPv4.
    fn addrs(&self) -> (std::net::Ipv6Addr, std::net::Ipv6Addr);
    fn ports(&self) -> (u16, u16);
    /// The pod side's key of the flow this key's entry holds.
    fn nat_key(&self, flow: &L4Flow) -> Self;
}

impl FlowKey for L4Key4 {
    fn proto(&self) -> u8 {
        self.proto
    }
    fn addrs(&self) -> (std::net::Ipv6Addr, std::net::Ipv6Addr) {
        (
            std::net::Ipv4Addr::from(self.src).to_ipv6_mapped(),
            std::net::Ipv4Addr::from(self.dst).to_ipv6_mapped(),
        )
    }
    fn ports(&self) -> (u16, u16) {
        (
            u16::from_be(self.src_port_be),
            u16::from_be(self.dst_port_be),
        )
    }
    fn nat_key(&self, flow: &L4Flow) -> Self {
        let pod = &flow.pod;
        L4Key4 {
            src: [pod[12], pod[13], pod[14], pod[15]],
            dst: self.dst,
            src_port_be: flow.pod_port_be,
            dst_port_be: flow.nat_port_be,
            proto: self.proto,
            _pad: [0; 3],
        }
    }
}

/// The last packet either way and the furthest state of a flow.
pub(super) fn last_and_state<K: FlowKey>(
    nat: &BpfHashMap<MapData, K, L4Nat>,
    key: &K,
    flow: &L4Flow,
) -> (u64, u8) {
    match nat.get(&key.nat_key(flow), 0) {
        Ok(n) => (
            n.last_seen_ns.max(flow.last_seen_ns),
            n.state.max(flow.state),
        ),
        Err(_) => (flow.last_seen_ns, flow.state),
    }
}

fn age_family<K: FlowKey>(
    ct: &mut BpfHashMap<MapData, K, L4Flow>,
    nat: &mut BpfHashMap<MapData, K, L4Nat>,
    now: u64,
    ageing: Ageing,
) -> usize {
    let mut expired = Vec::new();
    for (key, flow) in ct.iter().flatten() {
        let (last, state) = last_and_state(nat, &key, &flow);
        let limit = if state == L4_STATE_CLOSING {
            ageing.closing
        } else if state == L4_STATE_NEW && key.proto() == ingress_common::L4_PROTO_TCP {
            ageing.opening
        } else {
            ageing.idle
        };
        if now.saturating_sub(last) > limit.as_nanos() as u64 {
            expired.push((key, key.nat_key(&flow)));
        }
    }
    for (key, nat_key) in &expired {
        let _ = ct.remove(key);
        let _ = nat.remove(nat_key);
    }
    expired.len()
}

/// Shared handle: the publisher applies, a task ages, /metrics reads.
pub type SharedL4 = Arc<Mutex<L4Sync>>;

/// `xingress_xdp_l4_*` for /metrics.
pub fn render_metrics(l4: &SharedL4, out: &mut String) {
    use std::fmt::Write;
    let (services, endpoints) = l4.lock().unwrap_or_else(|e| e.into_inner()).counters();
    let series = |out: &mut String,
                  name: &str,
                  rows: &[L4Stat],
                  label: &str,
                  pick: &dyn Fn(&L4Counters) -> Vec<(&'static str, u64)>| {
        crate::metrics::header(out, name);
        for r in rows {
            for (extra, v) in pick(&r.counters) {
                let _ = writeln!(
                    out,
                    "{name}{{protocol=\"{}\",port=\"{}\",{label}=\"{}\"{extra}}} {v}",
                    r.protocol.label(),
                    r.port,
                    r.label
                );
            }
        }
    };
    let packets = |c: &L4Counters| {
        vec![
            (",direction=\"in\"", c.packets_in),
            (",direction=\"out\"", c.packets_out),
        ]
    };
    let bytes = |c: &L4Counters| {
        vec![
            (",direction=\"in\"", c.bytes_in),
            (",direction=\"out\"", c.bytes_out),
        ]
    };
    let flows = |c: &L4Counters| {
        vec![
            (",result=\"steered\"", c.flows),
            (",result=\"fallback\"", c.fallbacks),
        ]
    };
    series(
        out,
        "xingress_xdp_l4_packets_total",
        &services,
        "service",
        &packets,
    );
    series(
        out,
        "xingress_xdp_l4_bytes_total",
        &services,
        "service",
        &bytes,
    );
    series(
        out,
        "xingress_xdp_l4_flows_total",
        &services,
        "service",
        &flows,
    );
    series(
        out,
        "xingress_xdp_l4_endpoint_packets_total",
        &endpoints,
        "endpoint",
        &packets,
    );
    series(
        out,
        "xingress_xdp_l4_endpoint_flows_total",
        &endpoints,
        "endpoint",
        &|c: &L4Counters| vec![("", c.flows)],
    );
}

/// Ages steered flows every few seconds until shutdown.
pub async fn age_flows(l4: SharedL4, shutdown: crate::shutdown::Shutdown) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.wait() => return,
        }
        let l4 = l4.clone();
        let aged =
            tokio::task::spawn_blocking(move || l4.lock().unwrap_or_else(|e| e.into_inner()).age())
                .await
                .unwrap_or(0);
        if aged > 0 {
            tracing::debug!(aged, "steered L4 flows aged out");
        }
    }
}

/// Keeps the kernel from binding the SNAT range for its own connections
/// (`ip_local_reserved_ports`) when the range overlaps its ephemeral ports.
pub fn reserve_ports((lo, hi): (u16, u16)) {
    let range =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut it = range
        .split_whitespace()
        .filter_map(|v| v.parse::<u16>().ok());
    let (Some(e_lo), Some(e_hi)) = (it.next(), it.next()) else {
        return;
    };
    if hi < e_lo || lo > e_hi {
        return;
    }
    let path = "/proc/sys/net/ipv4/ip_local_reserved_ports";
    let current = std::fs::read_to_string(path).unwrap_or_default();
    let entry = format!("{lo}-{hi}");
    if current.split(',').any(|r| r.trim() == entry) {
        return;
    }
    let value = if current.trim().is_empty() {
        entry.clone()
    } else {
        format!("{},{entry}", current.trim())
    };
    match std::fs::write(path, value) {
        Ok(()) => {
            tracing::info!(ports = %entry, "SNAT ports reserved from the kernel's ephemeral range")
        }
        Err(e) => {
            tracing::warn!(ports = %entry, "cannot reserve the SNAT ports ({path}: {e}); a local connection may take one")
        }
    }
}
