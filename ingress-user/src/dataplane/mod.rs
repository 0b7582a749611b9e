//! The XDP data plane, userspace side: load, pin, attach, keep the policy
//! maps in step with the snapshot, read counters and flows. This module is
//! the only place that converts byte order for map keys.

pub mod cli;
mod flows;
pub mod l4;
mod loader;
mod object;
mod policy;

use std::{
    fmt::Write,
    sync::{Arc, Mutex},
};

use aya::maps::{MapData, MapError, PerCpuArray};
use ingress_common::{HostCounters, STAT_COUNT, Stat, Stats};

pub use flows::{Flow, FlowKey, FlowTable, addr};
pub use loader::{AttachMode, DEFAULT_PIN_PATH, Dataplane, DataplaneError};
pub use object::{embedded_object, object_embedded};
pub use policy::{HostNames, Policy, PolicyFlags, PolicyMaps, PolicySync, SyncReport};

/// Shared read access to the counters of a loaded program.
#[derive(Clone)]
pub struct StatsHandle {
    inner: Arc<StatsInner>,
}

struct StatsInner {
    map: PerCpuArray<MapData, Stats>,
    hosts: PerCpuArray<MapData, HostCounters>,
    names: Mutex<Option<HostNames>>,
    attached: Mutex<Option<(String, AttachMode)>>,
}

/// Per-CPU values summed.
pub fn sum_stats(
    map: &PerCpuArray<MapData, Stats>,
) -> Result<[u64; STAT_COUNT as usize], MapError> {
    let mut out = [0u64; STAT_COUNT as usize];
    for cpu in map.get(&0, 0)?.iter() {
        for (total, v) in out.iter_mut().zip(cpu.counters) {
            *total += v;
        }
    }
    Ok(out)
}

/// Per-CPU host counters summed, for the given ids.
pub fn sum_hosts(
    map: &PerCpuArray<MapData, HostCounters>,
    ids: impl Iterator<Item = u32>,
) -> Vec<(u32, HostCounters)> {
    ids.filter_map(|id| {
        let per_cpu = map.get(&id, 0).ok()?;
        let sum = per_cpu
            .iter()
            .fold(HostCounters::default(), |a, c| HostCounters {
                flows: a.flows + c.flows,
                rejected: a.rejected + c.rejected,
            });
        Some((id, sum))
    })
    .collect()
}

impl StatsHandle {
    fn new(map: PerCpuArray<MapData, Stats>, hosts: PerCpuArray<MapData, HostCounters>) -> Self {
        Self {
            inner: Arc::new(StatsInner {
                map,
                hosts,
                names: Mutex::new(None),
                attached: Mutex::new(None),
            }),
        }
    }

    fn set_attached(&self, value: Option<(String, AttachMode)>) {
        if let Ok(mut a) = self.inner.attached.lock() {
            *a = value;
        }
    }

    /// Names per host id, from the policy sync.
    pub fn set_names(&self, names: HostNames) {
        if let Ok(mut n) = self.inner.names.lock() {
            *n = Some(names);
        }
    }

    /// Interface and mode the program is attached with, if it is.
    pub fn attached(&self) -> Option<(String, AttachMode)> {
        self.inner.attached.lock().ok().and_then(|a| a.clone())
    }

    /// Every counter, summed over CPUs, in `Stat` order.
    pub fn read(&self) -> Result<[u64; STAT_COUNT as usize], MapError> {
        sum_stats(&self.inner.map)
    }

    pub fn get(&self, stat: Stat) -> Result<u64, MapError> {
        Ok(self.read()?[stat as usize])
    }

    /// Per-host counters of the hosts in HOSTS, by name.
    pub fn hosts(&self) -> Vec<(String, HostCounters)> {
        let names: Vec<(u32, String)> = match self.inner.names.lock().ok().and_then(|n| n.clone()) {
            Some(n) => n
                .lock()
                .map(|m| m.iter().map(|(k, v)| (*k, v.clone())).collect())
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let mut out: Vec<(String, HostCounters)> =
            sum_hosts(&self.inner.hosts, names.iter().map(|(id, _)| *id))
                .into_iter()
                .filter_map(|(id, c)| {
                    names
                        .iter()
                        .find(|(i, _)| *i == id)
                        .map(|(_, n)| (n.clone(), c))
                })
                .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// Appends the XDP metrics; `xingress_xdp_attached 0` when XDP is off.
pub fn render_metrics(stats: Option<&StatsHandle>, out: &mut String) {
    crate::metrics::header(out, "xingress_xdp_attached");
    let attached = stats.and_then(|s| s.attached());
    match &attached {
        Some((iface, mode)) => {
            let _ = writeln!(
                out,
                "xingress_xdp_attached{{iface=\"{iface}\",mode=\"{}\"}} 1",
                mode.label()
            );
        }
        None => out.push_str("xingress_xdp_attached 0\n"),
    }
    let Some(stats) = stats else { return };
    match stats.read() {
        Ok(values) => {
            crate::metrics::header(out, "xingress_xdp_packets_total");
            for s in Stat::ALL {
                let _ = writeln!(
                    out,
                    "xingress_xdp_packets_total{{class=\"{}\"}} {}",
                    s.name(),
                    values[s as usize]
                );
            }
        }
        Err(e) => tracing::warn!("reading XDP counters failed: {e}"),
    }
    crate::metrics::header(out, "xingress_xdp_host_flows_total");
    for (host, c) in stats.hosts() {
        let _ = writeln!(
            out,
            "xingress_xdp_host_flows_total{{host=\"{host}\",verdict=\"l7\"}} {}",
            c.flows
        );
        let _ = writeln!(
            out,
            "xingress_xdp_host_flows_total{{host=\"{host}\",verdict=\"reject\"}} {}",
            c.rejected
        );
    }
}
