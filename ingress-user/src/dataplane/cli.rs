//! `xingress xdp stats | flows`: read the maps a running agent pinned.

use std::{collections::HashMap, path::Path, process::ExitCode};

use aya::maps::{Array, HashMap as BpfHashMap, Map, MapData, PerCpuArray};
use ingress_common::{
    HostCounters, HostKey, HostValue, L4Counters, L4Endpoint, L4Flow, L4Key4, L4Nat, L4ServiceKey,
    L4ServiceValue, MAP_FLOW_CACHE, MAP_FLOWS4, MAP_FLOWS6, MAP_HOST_STATS, MAP_HOSTS, MAP_L4_CT4,
    MAP_L4_ENDPOINTS, MAP_L4_EP_STATS, MAP_L4_NAT4, MAP_L4_SERVICES, MAP_L4_STATS, MAP_STATS,
    MAX_L4_ENDPOINTS, REASON_AGENT, REASON_ALLOWLIST, REASON_UNKNOWN_HOST, Stat, VERDICT_L7,
    VERDICT_REJECT, VERDICT_UNDECIDED,
};
use serde::Serialize;

use super::{flows, l4::FlowKey, sum_hosts, sum_stats};
use crate::config::OutputFormat;

#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error(
        "cannot open the pinned map {path}: {source} (is the agent running with --xdp-iface, and is --pin-path right?)"
    )]
    Pin {
        path: String,
        source: aya::maps::MapError,
    },
    #[error("{0}")]
    Map(#[from] aya::maps::MapError),
}

fn open<T>(dir: &Path, name: &str) -> Result<T, ReadError>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    let path = dir.join(name);
    let pin_err = |source| ReadError::Pin {
        path: path.display().to_string(),
        source,
    };
    let data = MapData::from_pin(&path).map_err(pin_err)?;
    let map = Map::from_map_data(data).map_err(pin_err)?;
    Ok(T::try_from(map)?)
}

fn host_names(dir: &Path) -> Result<HashMap<u32, String>, ReadError> {
    let hosts: BpfHashMap<MapData, HostKey, HostValue> = open(dir, MAP_HOSTS)?;
    Ok(hosts
        .iter()
        .filter_map(Result::ok)
        .map(|(k, v)| (v.id, String::from_utf8_lossy(k.as_bytes()).into_owned()))
        .collect())
}

#[derive(Serialize)]
struct StatsReport {
    counters: Vec<(String, u64)>,
    hosts: Vec<HostRow>,
    /// TCP and UDP services steered in XDP, then their endpoints.
    l4_services: Vec<L4Row>,
    l4_endpoints: Vec<L4Row>,
}

#[derive(Serialize)]
struct L4Row {
    protocol: &'static str,
    port: u16,
    /// The endpoint (`IP:PORT`), for endpoint rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint: Option<String>,
    packets_in: u64,
    bytes_in: u64,
    packets_out: u64,
    bytes_out: u64,
    flows: u64,
    fallbacks: u64,
}

#[derive(Serialize)]
struct L4FlowRow {
    /// `l4`: a TCP or UDP service's flow steered in XDP.
    kind: &'static str,
    protocol: &'static str,
    client: String,
    service: String,
    pod: String,
    /// The node port the pod sees the flow from.
    snat_port: u16,
    state: &'static str,
    age_seconds: f64,
    idle_seconds: f64,
}

fn l4_protocol(proto: u8) -> &'static str {
    match proto {
        ingress_common::L4_PROTO_TCP => "TCP",
        ingress_common::L4_PROTO_UDP => "UDP",
        _ => "?",
    }
}

/// Per-service and per-endpoint counters of the steered services.
fn l4_stats(dir: &Path) -> Result<(Vec<L4Row>, Vec<L4Row>), ReadError> {
    let services: BpfHashMap<MapData, L4ServiceKey, L4ServiceValue> = open(dir, MAP_L4_SERVICES)?;
    let endpoints: Array<MapData, L4Endpoint> = open(dir, MAP_L4_ENDPOINTS)?;
    let stats: PerCpuArray<MapData, L4Counters> = open(dir, MAP_L4_STATS)?;
    let ep_stats: PerCpuArray<MapData, L4Counters> = open(dir, MAP_L4_EP_STATS)?;
    let row = |protocol, port, endpoint, c: L4Counters| L4Row {
        protocol,
        port,
        endpoint,
        packets_in: c.packets_in,
        bytes_in: c.bytes_in,
        packets_out: c.packets_out,
        bytes_out: c.bytes_out,
        flows: c.flows,
        fallbacks: c.fallbacks,
    };
    let (mut out, mut eps) = (Vec::new(), Vec::new());
    for (k, v) in services.iter().filter_map(Result::ok) {
        let (protocol, port) = (l4_protocol(k.proto), u16::from_be(k.port_be));
        out.push(row(
            protocol,
            port,
            None,
            super::l4::sum(&stats.get(&v.id, 0)?),
        ));
        for i in 0..MAX_L4_ENDPOINTS {
            let Ok(ep) = endpoints.get(&(v.table * MAX_L4_ENDPOINTS + i), 0) else {
                break;
            };
            if ep.family == 0 {
                break;
            }
            let ip = std::net::Ipv6Addr::from(ep.addr).to_canonical();
            let addr = std::net::SocketAddr::new(ip, u16::from_be(ep.port_be));
            let c = super::l4::sum(&ep_stats.get(&ep.stats_id, 0)?);
            eps.push(row(protocol, port, Some(addr.to_string()), c));
        }
    }
    out.sort_by_key(|r| (r.protocol, r.port));
    eps.sort_by(|a, b| (a.protocol, a.port, &a.endpoint).cmp(&(b.protocol, b.port, &b.endpoint)));
    Ok((out, eps))
}

fn l4_flows(dir: &Path) -> Result<Vec<L4FlowRow>, ReadError> {
    let mut rows = Vec::new();
    let now = super::l4::now_ns();
    l4_flow_rows::<L4Key4>(dir, MAP_L4_CT4, MAP_L4_NAT4, now, &mut rows)?;
    rows.sort_by(|a, b| a.age_seconds.total_cmp(&b.age_seconds));
    Ok(rows)
}

fn l4_flow_rows<K: FlowKey>(
    dir: &Path,
    ct: &str,
    nat: &str,
    now: u64,
    rows: &mut Vec<L4FlowRow>,
) -> Result<(), ReadError> {
    let ct: BpfHashMap<MapData, K, L4Flow> = open(dir, ct)?;
    let nat: BpfHashMap<MapData, K, L4Nat> = open(dir, nat)?;
    let addr = |ip: std::net::Ipv6Addr, port: u16| {
        std::net::SocketAddr::new(ip.to_canonical(), port).to_string()
    };
    for (k, f) in ct.iter().filter_map(Result::ok) {
        let (last, state) = super::l4::last_and_state(&nat, &k, &f);
        let ((client, node), (client_port, service_port)) = (k.addrs(), k.ports());
        rows.push(L4FlowRow {
            kind: "l4",
            protocol: l4_protocol(k.proto()),
            client: addr(client, client_port),
            service: addr(node, service_port),
            pod: addr(f.pod.into(), u16::from_be(f.pod_port_be)),
            snat_port: u16::from_be(f.nat_port_be),
            state: match state {
                ingress_common::L4_STATE_NEW => "opening",
                ingress_common::L4_STATE_CLOSING => "closing",
                _ => "open",
            },
            age_seconds: now.saturating_sub(f.first_seen_ns) as f64 / 1e9,
            idle_seconds: now.saturating_sub(last) as f64 / 1e9,
        });
    }
    Ok(())
}

#[derive(Serialize)]
struct HostRow {
    host: String,
    flows: u64,
    rejected: u64,
}

#[derive(Serialize)]
struct FlowRow {
    /// `l7`: a flow to the agent's listeners, classified by SNI or Host.
    kind: &'static str,
    client: String,
    local: String,
    verdict: &'static str,
    reason: &'static str,
    host: String,
    packets: u64,
    bytes: u64,
    age_seconds: f64,
    idle_seconds: f64,
}

fn stats(dir: &Path) -> Result<StatsReport, ReadError> {
    let map: PerCpuArray<MapData, ingress_common::Stats> = open(dir, MAP_STATS)?;
    let values = sum_stats(&map)?;
    let host_stats: PerCpuArray<MapData, HostCounters> = open(dir, MAP_HOST_STATS)?;
    let names = host_names(dir)?;
    let mut hosts: Vec<HostRow> = sum_hosts(&host_stats, names.keys().copied())
        .into_iter()
        .map(|(id, c)| HostRow {
            host: names[&id].clone(),
            flows: c.flows,
            rejected: c.rejected,
        })
        .collect();
    hosts.sort_by(|a, b| a.host.cmp(&b.host));
    let (l4_services, l4_endpoints) = l4_stats(dir)?;
    Ok(StatsReport {
        l4_services,
        l4_endpoints,
        counters: Stat::ALL
            .iter()
            .map(|s| (s.name().to_string(), values[*s as usize]))
            .collect(),
        hosts,
    })
}

/// CLOCK_MONOTONIC in ns, the clock of bpf_ktime_get_ns.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub fn verdict_name(v: u8) -> &'static str {
    match v {
        VERDICT_L7 => "l7",
        VERDICT_REJECT => "reject",
        VERDICT_UNDECIDED => "undecided",
        _ => "new",
    }
}

pub fn reason_name(r: u8) -> &'static str {
    match r {
        REASON_ALLOWLIST => "allowlist",
        REASON_UNKNOWN_HOST => "unknown-host",
        REASON_AGENT => "agent",
        _ => "-",
    }
}

fn flows(dir: &Path) -> Result<Vec<FlowRow>, ReadError> {
    let v4: flows::Flows4 = open(dir, MAP_FLOWS4)?;
    let v6: flows::Flows6 = open(dir, MAP_FLOWS6)?;
    let cache: flows::FlowCache = open(dir, MAP_FLOW_CACHE)?;
    let names = host_names(dir)?;
    let now = monotonic_ns();
    let mut rows: Vec<FlowRow> = flows::list(&v4, &v6, &cache)
        .into_iter()
        .map(|f| {
            let v = f.value;
            FlowRow {
                kind: "l7",
                client: f.client.to_string(),
                local: f.local.to_string(),
                verdict: verdict_name(v.verdict),
                reason: reason_name(v.reason),
                host: names.get(&v.host_id).cloned().unwrap_or_else(|| "-".into()),
                packets: v.packets,
                bytes: v.bytes,
                age_seconds: now.saturating_sub(v.first_seen_ns) as f64 / 1e9,
                idle_seconds: now.saturating_sub(v.last_seen_ns) as f64 / 1e9,
            }
        })
        .collect();
    rows.sort_by(|a, b| a.age_seconds.total_cmp(&b.age_seconds));
    Ok(rows)
}

/// What `xingress xdp` reads of the running agent's maps.
#[derive(Clone, Copy, Debug)]
pub enum XdpRead {
    /// `xdp stats`: the packet counters.
    Stats,
    /// `xdp flows`: the tracked connections.
    Flows,
}

/// `xingress xdp stats|flows`: reads the maps pinned under `pin_path` and
/// prints them.
pub fn main(read: XdpRead, pin_path: &std::path::Path, output: OutputFormat) -> ExitCode {
    let result = match read {
        XdpRead::Stats => stats(pin_path).map(|r| render_stats(&r, output)),
        XdpRead::Flows => flows(pin_path).and_then(|r| {
            let l4 = l4_flows(pin_path)?;
            Ok(render_flows(&r, &l4, output))
        }),
    };
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xingress xdp: {e}");
            ExitCode::FAILURE
        }
    }
}

fn render_stats(r: &StatsReport, output: OutputFormat) -> String {
    if output == OutputFormat::Json {
        return serde_json::to_string_pretty(r).unwrap_or_default() + "\n";
    }
    let mut s = String::new();
    for (name, v) in &r.counters {
        s.push_str(&format!("{name:24} {v}\n"));
    }
    if !r.hosts.is_empty() {
        let w = r
            .hosts
            .iter()
            .map(|h| h.host.len())
            .max()
            .unwrap_or(4)
            .max(4);
        s.push_str(&format!(
            "\n{:w$}  {:>10}  {:>10}\n",
            "HOST", "FLOWS", "REJECTED"
        ));
        for h in &r.hosts {
            s.push_str(&format!(
                "{:w$}  {:>10}  {:>10}\n",
                h.host, h.flows, h.rejected
            ));
        }
    }
    if !r.l4_services.is_empty() {
        s.push_str(&format!(
            "\n{:5}  {:>5}  {:22}  {:>10}  {:>12}  {:>10}  {:>12}  {:>8}  {:>9}\n",
            "L4",
            "PORT",
            "ENDPOINT",
            "PKTS IN",
            "BYTES IN",
            "PKTS OUT",
            "BYTES OUT",
            "FLOWS",
            "FALLBACKS"
        ));
        for r in r.l4_services.iter().chain(&r.l4_endpoints) {
            s.push_str(&format!(
                "{:5}  {:>5}  {:22}  {:>10}  {:>12}  {:>10}  {:>12}  {:>8}  {:>9}\n",
                r.protocol,
                r.port,
                r.endpoint.as_deref().unwrap_or("(service)"),
                r.packets_in,
                r.bytes_in,
                r.packets_out,
                r.bytes_out,
                r.flows,
                r.fallbacks
            ));
        }
    }
    s
}

fn render_flows(rows: &[FlowRow], l4: &[L4FlowRow], output: OutputFormat) -> String {
    if output == OutputFormat::Json {
        // One array: the classified flows, then the steered ones (`kind`).
        let all: Vec<serde_json::Value> = rows
            .iter()
            .filter_map(|r| serde_json::to_value(r).ok())
            .chain(l4.iter().filter_map(|r| serde_json::to_value(r).ok()))
            .collect();
        return serde_json::to_string_pretty(&all).unwrap_or_default() + "\n";
    }
    let mut s = format!(
        "{:46}  {:46}  {:9}  {:12}  {:24}  {:>8}  {:>10}  {:>8}\n",
        "CLIENT", "LOCAL", "VERDICT", "REASON", "HOST", "PACKETS", "BYTES", "AGE"
    );
    for f in rows {
        s.push_str(&format!(
            "{:46}  {:46}  {:9}  {:12}  {:24}  {:>8}  {:>10}  {:>7.1}s\n",
            f.client, f.local, f.verdict, f.reason, f.host, f.packets, f.bytes, f.age_seconds
        ));
    }
    s.push_str(&format!("{} flows\n", rows.len()));
    if !l4.is_empty() {
        s.push_str(&format!(
            "\n{:5}  {:22}  {:22}  {:22}  {:>5}  {:8}  {:>8}  {:>8}\n",
            "L4", "CLIENT", "SERVICE", "POD", "SNAT", "STATE", "AGE", "IDLE"
        ));
        for f in l4 {
            s.push_str(&format!(
                "{:5}  {:22}  {:22}  {:22}  {:>5}  {:8}  {:>7.1}s  {:>7.1}s\n",
                f.protocol,
                f.client,
                f.service,
                f.pod,
                f.snat_port,
                f.state,
                f.age_seconds,
                f.idle_seconds
            ));
        }
        s.push_str(&format!("{} steered flows\n", l4.len()));
    }
    s
}
