//! The XDP data plane, userspace side: load, attach, fill maps, read counters.
//! This module is the only place that converts byte order for map keys.

pub mod cli;
mod loader;
mod object;

use std::{fmt::Write, sync::Arc};

use aya::maps::{MapData, MapError, PerCpuArray};
use ingress_common::{STAT_COUNT, Stat};

pub use loader::{AttachMode, Dataplane, DataplaneError};
pub use object::{embedded_object, object_embedded};

/// Shared read access to the per-CPU packet counters of a loaded program.
#[derive(Clone)]
pub struct StatsHandle {
    inner: Arc<StatsInner>,
}

struct StatsInner {
    map: PerCpuArray<MapData, u64>,
    attached: std::sync::Mutex<Option<(String, AttachMode)>>,
}

impl StatsHandle {
    fn new(map: PerCpuArray<MapData, u64>) -> Self {
        Self {
            inner: Arc::new(StatsInner {
                map,
                attached: std::sync::Mutex::new(None),
            }),
        }
    }

    fn set_attached(&self, value: Option<(String, AttachMode)>) {
        if let Ok(mut a) = self.inner.attached.lock() {
            *a = value;
        }
    }

    /// Interface and mode the program is attached with, if it is.
    pub fn attached(&self) -> Option<(String, AttachMode)> {
        self.inner.attached.lock().ok().and_then(|a| a.clone())
    }

    /// Every counter, summed over CPUs, in `Stat` order.
    pub fn read(&self) -> Result<[u64; STAT_COUNT as usize], MapError> {
        let mut out = [0u64; STAT_COUNT as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            let per_cpu = self.inner.map.get(&(i as u32), 0)?;
            *slot = per_cpu.iter().sum();
        }
        Ok(out)
    }

    pub fn get(&self, stat: Stat) -> Result<u64, MapError> {
        Ok(self.read()?[stat as usize])
    }
}

/// Appends the XDP metrics; `xingress_xdp_attached 0` when XDP is off.
pub fn render_metrics(stats: Option<&StatsHandle>, out: &mut String) {
    out.push_str("# HELP xingress_xdp_attached 1 when the XDP program is attached (labels: interface, mode).\n");
    out.push_str("# TYPE xingress_xdp_attached gauge\n");
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
            out.push_str(
                "# HELP xingress_xdp_packets_total Packets seen by the XDP program, by class.\n",
            );
            out.push_str("# TYPE xingress_xdp_packets_total counter\n");
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
}
