//! `xingress xdp stats | flows`: read the maps a running agent pinned.

use std::{collections::HashMap, path::Path, process::ExitCode};

use aya::maps::{HashMap as BpfHashMap, Map, MapData, PerCpuArray};
use ingress_common::{
    HostCounters, HostKey, HostValue, MAP_FLOW_CACHE, MAP_FLOWS4, MAP_FLOWS6, MAP_HOST_STATS,
    MAP_HOSTS, MAP_STATS, REASON_AGENT, REASON_ALLOWLIST, REASON_UNKNOWN_HOST, Stat, VERDICT_L7,
    VERDICT_REJECT, VERDICT_UNDECIDED,
};
use serde::Serialize;

use super::{flows, sum_hosts, sum_stats};
use crate::cli::{OutputFormat, XdpCommand, XdpReadArgs};

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
}

#[derive(Serialize)]
struct HostRow {
    host: String,
    flows: u64,
    rejected: u64,
}

#[derive(Serialize)]
struct FlowRow {
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
    Ok(StatsReport {
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

pub fn main(cmd: &XdpCommand) -> ExitCode {
    let (args, result): (&XdpReadArgs, Result<String, ReadError>) = match cmd {
        XdpCommand::Stats(a) => (a, stats(&a.pin_path).map(|r| render_stats(&r, a.output))),
        XdpCommand::Flows(a) => (a, flows(&a.pin_path).map(|r| render_flows(&r, a.output))),
    };
    let _ = args;
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
    s
}

fn render_flows(rows: &[FlowRow], output: OutputFormat) -> String {
    if output == OutputFormat::Json {
        return serde_json::to_string_pretty(rows).unwrap_or_default() + "\n";
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
    s
}
