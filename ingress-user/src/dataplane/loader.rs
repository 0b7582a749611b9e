//! Load the XDP program, pin its maps, attach it (native, falling back to
//! generic), detach and unpin.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap as BpfHashMap, LpmTrie, MapData, MapError, PerCpuArray},
    programs::{Xdp, XdpMode, xdp::XdpLinkId},
};
use aya_log::EbpfLogger;
use ingress_common::{
    AddrKey, AllowKey, Config, HostKey, HostValue, LISTENER_PORTS, ListenerFlags, MAP_ALLOW,
    MAP_CONFIG, MAP_DENY4, MAP_DENY4_INDEX, MAP_DENY6, MAP_FLOW_CACHE, MAP_FLOWS4, MAP_FLOWS6,
    MAP_HOST_STATS, MAP_HOSTS, MAP_L4_CONFIG, MAP_L4_CT4, MAP_L4_ENDPOINTS, MAP_L4_EP_STATS,
    MAP_L4_MAGLEV, MAP_L4_NAT4, MAP_L4_SERVICES, MAP_L4_STATS, MAP_LISTENERS, MAP_STATS,
    PINNED_MAPS, Stats,
};

use super::{StatsHandle, embedded_object, flows::FlowTable, policy::PolicyMaps};
use crate::config::XdpMode as ModeArg;

/// Name of the `#[xdp]` function in ingress-ebpf.
const PROGRAM: &str = "xingress";
/// aya-log level in the kernel: Info, so per-packet debug logs cost one load and a branch.
const KERNEL_LOG_LEVEL: u8 = 3;
/// Where the maps are pinned unless `--xdp-pin-path` says otherwise.
pub const DEFAULT_PIN_PATH: &str = "/sys/fs/bpf/xingress";

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
    #[error("pin path {path}: {source}")]
    Pin {
        path: PathBuf,
        source: std::io::Error,
    },
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
    /// The program's listener flags, shared with the L4 sync.
    listeners: Arc<Mutex<ListenerTable>>,
    stats: StatsHandle,
    l4: Option<super::l4::L4Maps>,
    policy: Option<PolicyMaps>,
    flows: FlowTable,
    pin_dir: Option<PathBuf>,
}

/// LISTENERS (one entry: the whole section) and what is in it: the
/// agent's own listeners and the L4 services' ports.
pub struct ListenerTable {
    map: Array<MapData, ListenerFlags>,
    base: Vec<(u16, u32)>,
    l4: Vec<(u16, u32)>,
}

impl ListenerTable {
    /// One write of the whole array: a kept port is never missing.
    fn write(&mut self) -> Result<(), MapError> {
        let mut flags: Box<ListenerFlags> = Box::new([0; LISTENER_PORTS as usize]);
        for &(port, f) in self.l4.iter().chain(&self.base) {
            // F_LISTENER_* fit in a byte (asserted in ingress-common).
            flags[usize::from(port)] |= f as u8;
        }
        self.map.set(0, *flags, 0)
    }

    pub(super) fn set_l4(&mut self, ports: Vec<(u16, u32)>) -> Result<(), MapError> {
        if ports == self.l4 {
            return Ok(());
        }
        self.l4 = ports;
        self.write()
    }
}

fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, DataplaneError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    Ok(ebpf
        .take_map(name)
        .ok_or(DataplaneError::Missing(name))?
        .try_into()?)
}

/// statfs f_type of a bpf filesystem.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
const BPF_FS_ROOT: &str = "/sys/fs/bpf";

fn fs_type(path: &Path) -> Option<i64> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statfs writes into the zeroed struct we own; c is NUL-terminated.
    unsafe {
        let mut s: libc::statfs = std::mem::zeroed();
        (libc::statfs(c.as_ptr(), &mut s) == 0).then_some(s.f_type as i64)
    }
}

/// Makes sure `dir` exists on a bpf filesystem, mounting bpffs at
/// /sys/fs/bpf when the pin path is under it and nothing is mounted there
/// (as systemd does on most distributions, and as other BPF agents do).
fn ensure_bpffs(dir: &Path) -> Result<(), DataplaneError> {
    let pin_err = |source| DataplaneError::Pin {
        path: dir.to_path_buf(),
        source,
    };
    let root = Path::new(BPF_FS_ROOT);
    if dir.starts_with(root) && fs_type(root) != Some(BPF_FS_MAGIC) {
        let (src, target, fstype) = (c"bpf", c"/sys/fs/bpf", c"bpf");
        // SAFETY: mount(2) with NUL-terminated strings and no data.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(pin_err(std::io::Error::last_os_error()));
        }
        tracing::info!("mounted bpffs at {BPF_FS_ROOT} for the pinned maps");
    }
    std::fs::create_dir_all(dir).map_err(pin_err)?;
    if fs_type(dir) != Some(BPF_FS_MAGIC) {
        return Err(pin_err(std::io::Error::other(
            "not on a bpf filesystem (mount -t bpf bpf DIR)",
        )));
    }
    Ok(())
}

fn remove_pins(dir: &Path) -> Result<(), DataplaneError> {
    for name in PINNED_MAPS {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(DataplaneError::Pin { path, source }),
        }
    }
    Ok(())
}

impl Dataplane {
    /// Loads the embedded program through the verifier and pins its maps
    /// under `pin_dir` (stale pins of an earlier run are replaced); attaches
    /// nothing. The pins are removed on detach or drop.
    pub fn load(pin_dir: &Path) -> Result<Self, DataplaneError> {
        let object = embedded_object().ok_or(DataplaneError::NotBuilt)?;
        Self::load_object(pin_dir, object)
    }

    /// `load` with the object given. The maps are pinned while the object
    /// loads, before the verifier sees the program: when anything fails,
    /// the pins (and the directory, if empty) are removed again, so an agent
    /// that goes on without XDP leaves nothing behind.
    pub fn load_object(pin_dir: &Path, object: &[u8]) -> Result<Self, DataplaneError> {
        ensure_bpffs(pin_dir)?;
        remove_pins(pin_dir)?;
        Self::load_pinned(pin_dir, object).inspect_err(|_| {
            let _ = remove_pins(pin_dir);
            let _ = std::fs::remove_dir(pin_dir);
        })
    }

    fn load_pinned(pin_dir: &Path, object: &[u8]) -> Result<Self, DataplaneError> {
        let mut loader = EbpfLoader::new();
        loader.override_global("AYA_LOG_LEVEL", &KERNEL_LOG_LEVEL, false);
        loader.default_map_pin_directory(pin_dir);
        let mut ebpf = loader.load(object)?;
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
        let listeners = Arc::new(Mutex::new(ListenerTable {
            map: take(&mut ebpf, MAP_LISTENERS)?,
            base: Vec::new(),
            l4: Vec::new(),
        }));
        let l4 = super::l4::L4Maps {
            services: take(&mut ebpf, MAP_L4_SERVICES)?,
            maglev: take(&mut ebpf, MAP_L4_MAGLEV)?,
            endpoints: take(&mut ebpf, MAP_L4_ENDPOINTS)?,
            ct4: take(&mut ebpf, MAP_L4_CT4)?,
            nat4: take(&mut ebpf, MAP_L4_NAT4)?,
            stats: take(&mut ebpf, MAP_L4_STATS)?,
            ep_stats: take(&mut ebpf, MAP_L4_EP_STATS)?,
            config: take(&mut ebpf, MAP_L4_CONFIG)?,
        };
        let stats = StatsHandle::new(
            take::<PerCpuArray<MapData, Stats>>(&mut ebpf, MAP_STATS)?,
            take(&mut ebpf, MAP_HOST_STATS)?,
        );
        let flows = FlowTable::new(
            take(&mut ebpf, MAP_FLOWS4)?,
            take(&mut ebpf, MAP_FLOWS6)?,
            take(&mut ebpf, MAP_FLOW_CACHE)?,
        );
        let policy = PolicyMaps {
            hosts: take::<BpfHashMap<MapData, HostKey, HostValue>>(&mut ebpf, MAP_HOSTS)?,
            allow: take::<LpmTrie<MapData, AllowKey, u8>>(&mut ebpf, MAP_ALLOW)?,
            deny4: take::<LpmTrie<MapData, [u8; 4], u8>>(&mut ebpf, MAP_DENY4)?,
            deny6: take::<LpmTrie<MapData, AddrKey, u8>>(&mut ebpf, MAP_DENY6)?,
            deny4_index: take::<Array<MapData, u64>>(&mut ebpf, MAP_DENY4_INDEX)?,
            config: take::<Array<MapData, Config>>(&mut ebpf, MAP_CONFIG)?,
        };
        Ok(Self {
            ebpf,
            logger,
            link: None,
            listeners,
            stats,
            l4: Some(l4),
            policy: Some(policy),
            flows,
            pin_dir: Some(pin_dir.to_path_buf()),
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

    /// Detaches from the interface and removes the pins, leaving the node as
    /// it was before attach.
    pub fn detach(&mut self) -> Result<(), DataplaneError> {
        if let Some(link) = self.link.take() {
            self.program_mut().detach(link)?;
            if let Some((iface, _)) = self.stats.attached() {
                tracing::info!(iface, "XDP program detached");
            }
            self.stats.set_attached(None);
        }
        if let Some(dir) = self.pin_dir.take() {
            remove_pins(&dir)?;
            // Only if nothing else lives there.
            let _ = std::fs::remove_dir(&dir);
        }
        Ok(())
    }

    /// Replaces the set of listener ports (`(port, F_LISTENER_* flags)`) in
    /// one write of the program's flags array: a kept port is never missing.
    pub fn set_listeners(&mut self, ports: &[(u16, u32)]) -> Result<(), DataplaneError> {
        let mut l = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        l.base = ports.to_vec();
        l.write()?;
        Ok(())
    }

    /// The agent's listener ports in LISTENERS, sorted.
    pub fn listener_ports(&self) -> Vec<u16> {
        let l = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        let mut ports: Vec<u16> = l.base.iter().map(|&(p, _)| p).collect();
        ports.sort_unstable();
        ports
    }

    /// The L4 maps, for an `L4Sync` to own (once), with the SNAT range.
    pub fn take_l4(
        &mut self,
        nat: (u16, u16),
        ageing: super::l4::Ageing,
    ) -> Option<Result<super::l4::SharedL4, MapError>> {
        let maps = self.l4.take()?;
        Some(
            super::l4::L4Sync::new(maps, self.listeners.clone(), nat, ageing)
                .map(|s| Arc::new(Mutex::new(s))),
        )
    }

    pub fn stats(&self) -> StatsHandle {
        self.stats.clone()
    }

    pub fn flows(&self) -> FlowTable {
        self.flows.clone()
    }

    /// The policy maps, for a `PolicySync` to own (once).
    pub fn take_policy(&mut self) -> Option<PolicyMaps> {
        self.policy.take()
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
