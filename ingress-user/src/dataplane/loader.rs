//! Load the XDP program, attach it (native, falling back to generic), detach.

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray},
    programs::{Xdp, XdpMode, xdp::XdpLinkId},
};
use aya_log::EbpfLogger;
use ingress_common::{ListenerKey, ListenerValue, MAP_LISTENERS, MAP_STATS};

use super::{StatsHandle, embedded_object};
use crate::cli::XdpMode as ModeArg;

/// Name of the `#[xdp]` function in ingress-ebpf.
const PROGRAM: &str = "xingress";
/// aya-log level in the kernel: Info, so per-packet debug logs cost one load and a branch.
const KERNEL_LOG_LEVEL: u8 = 3;

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error(
        "the XDP program was not built into this binary: run `cargo xtask build-ebpf` \
         (or `cargo xtask build`), then rebuild the agent"
    )]
    NotBuilt,
    #[error("loading the XDP object failed: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("the XDP object has no {0}")]
    Missing(&'static str),
    #[error("the XDP program was rejected: {0}")]
    Program(#[from] aya::programs::ProgramError),
    #[error("BPF map: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error("attaching XDP to {iface} in {mode} mode failed: {source}")]
    Attach {
        iface: String,
        mode: &'static str,
        source: aya::programs::ProgramError,
    },
}

/// The mode the program ended up attached in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    Native,
    Skb,
}

impl AttachMode {
    pub const fn label(self) -> &'static str {
        match self {
            AttachMode::Native => "native",
            AttachMode::Skb => "skb",
        }
    }
}

/// A loaded (and possibly attached) XDP program with its maps.
pub struct Dataplane {
    ebpf: Ebpf,
    /// Kept alive: dropping it closes the log ring buffer.
    logger: Option<EbpfLogger<&'static dyn log::Log>>,
    link: Option<XdpLinkId>,
    listeners: BpfHashMap<MapData, ListenerKey, ListenerValue>,
    stats: StatsHandle,
}

impl Dataplane {
    /// Loads the embedded program through the verifier; attaches nothing.
    pub fn load() -> Result<Self, DataplaneError> {
        let object = embedded_object().ok_or(DataplaneError::NotBuilt)?;
        let mut ebpf = EbpfLoader::new()
            .override_global("AYA_LOG_LEVEL", &KERNEL_LOG_LEVEL, false)
            .load(object)?;
        let logger = match EbpfLogger::init(&mut ebpf) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!("XDP log map unavailable, kernel-side logs are off: {e}");
                None
            }
        };
        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM)
            .ok_or(DataplaneError::Missing("program `xingress`"))?
            .try_into()?;
        program.load()?;
        let listeners = ebpf
            .take_map(MAP_LISTENERS)
            .ok_or(DataplaneError::Missing("LISTENERS map"))?
            .try_into()?;
        let stats = ebpf
            .take_map(MAP_STATS)
            .ok_or(DataplaneError::Missing("STATS map"))?;
        let stats = StatsHandle::new(PerCpuArray::try_from(stats)?);
        Ok(Self {
            ebpf,
            logger,
            link: None,
            listeners,
            stats,
        })
    }

    /// The loaded program, e.g. for BPF_PROG_TEST_RUN.
    pub fn program_mut(&mut self) -> &mut Xdp {
        // load() checked that the program exists and is XDP.
        self.ebpf
            .program_mut(PROGRAM)
            .and_then(|p| p.try_into().ok())
            .expect("checked in load()")
    }

    /// Attaches to `iface`. `Auto` tries native (driver) mode and falls back
    /// to generic (skb) mode with a warning.
    pub fn attach(&mut self, iface: &str, mode: ModeArg) -> Result<AttachMode, DataplaneError> {
        let attach = |dp: &mut Self, m: AttachMode| {
            let flags = match m {
                AttachMode::Native => XdpMode::Driver,
                AttachMode::Skb => XdpMode::Skb,
            };
            dp.program_mut()
                .attach(iface, flags)
                .map_err(|source| DataplaneError::Attach {
                    iface: iface.to_string(),
                    mode: m.label(),
                    source,
                })
        };
        let (link, got) = match mode {
            ModeArg::Native => (attach(self, AttachMode::Native)?, AttachMode::Native),
            ModeArg::Skb => (attach(self, AttachMode::Skb)?, AttachMode::Skb),
            ModeArg::Auto => match attach(self, AttachMode::Native) {
                Ok(link) => (link, AttachMode::Native),
                Err(e) => {
                    tracing::warn!("{e}; falling back to generic (skb) mode, which is slower");
                    (attach(self, AttachMode::Skb)?, AttachMode::Skb)
                }
            },
        };
        self.link = Some(link);
        self.stats.set_attached(Some((iface.to_string(), got)));
        tracing::info!(iface, mode = got.label(), "XDP program attached");
        Ok(got)
    }

    /// Detaches from the interface, leaving it as it was before attach.
    pub fn detach(&mut self) -> Result<(), DataplaneError> {
        if let Some(link) = self.link.take() {
            self.program_mut().detach(link)?;
            if let Some((iface, _)) = self.stats.attached() {
                tracing::info!(iface, "XDP program detached");
            }
            self.stats.set_attached(None);
        }
        Ok(())
    }

    /// Replaces the set of listener ports (`(port, F_LISTENER_* flags)`):
    /// upserts first, then deletes, so a kept port is never missing.
    pub fn set_listeners(&mut self, ports: &[(u16, u32)]) -> Result<(), DataplaneError> {
        for &(port, flags) in ports {
            self.listeners
                .insert(ListenerKey::from_port(port), ListenerValue { flags }, 0)?;
        }
        let stale: Vec<ListenerKey> = self
            .listeners
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !ports.iter().any(|&(p, _)| ListenerKey::from_port(p) == *k))
            .collect();
        for k in stale {
            self.listeners.remove(&k)?;
        }
        Ok(())
    }

    /// Ports currently in LISTENERS (host order), sorted.
    pub fn listener_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .listeners
            .keys()
            .filter_map(Result::ok)
            .map(|k| u16::from_be(k.port_be))
            .collect();
        ports.sort_unstable();
        ports
    }

    pub fn stats(&self) -> StatsHandle {
        self.stats.clone()
    }

    /// Moves the kernel log reader into a task that drains it as records arrive.
    pub fn spawn_log_drain(&mut self) {
        let Some(logger) = self.logger.take() else {
            return;
        };
        // SAFETY: the logger owns the ring buffer fd and never swaps it; the
        // AsyncFd owns the logger for as long as it is registered.
        let registered = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE)
        };
        match registered {
            Ok(mut fd) => {
                tokio::spawn(async move {
                    loop {
                        let Ok(mut guard) = fd.readable_mut().await else {
                            return;
                        };
                        guard.get_inner_mut().flush();
                        guard.clear_ready();
                    }
                });
            }
            Err(e) => tracing::warn!("cannot poll the XDP log ring buffer: {}", e.into_parts().1),
        }
    }

    /// Drains pending kernel log records now (for callers without a runtime).
    pub fn flush_logs(&mut self) {
        if let Some(l) = &mut self.logger {
            l.flush();
        }
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        if let Err(e) = self.detach() {
            tracing::warn!("detaching XDP failed: {e}");
        }
    }
}
