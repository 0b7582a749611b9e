//! Every map of the program, declared once. Names and sizes come from
//! ingress-common so the agent opens exactly these; all but LISTENERS and
//! SCRATCH are pinned by name under the agent's pin path.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, lpm_trie::Key},
};
use ingress_common::{
    AddrKey, AllowKey, Config, FlowKey, FlowValue, HostCounters, HostKey, HostValue,
    LISTENER_PORTS, ListenerValue, MAX_ALLOW, MAX_DENY, MAX_FLOWS, MAX_HOSTS, MAX_RATE_SOURCES,
    RateValue, Scratch, Stat, Stats,
};

/// Local TCP ports the agent serves, by port: an array, so the lookup is
/// an index the verifier inlines.
#[map]
pub static LISTENERS: Array<ListenerValue> = Array::with_max_entries(LISTENER_PORTS, 0);

/// This CPU's packet counters, all in one slot.
#[map]
pub static STATS: PerCpuArray<Stats> = PerCpuArray::pinned(1, 0);

/// Tracked client → node TCP flows and their verdicts.
#[map]
pub static FLOWS: LruHashMap<FlowKey, FlowValue> = LruHashMap::pinned(MAX_FLOWS, 0);

/// Host names (exact, and `*.parent` wildcards) with rules.
#[map]
pub static HOSTS: HashMap<HostKey, HostValue> = HashMap::pinned(MAX_HOSTS, 0);

/// Per-host source allow lists: host id ‖ address.
#[map]
pub static ALLOW: LpmTrie<AllowKey, u8> = LpmTrie::pinned(MAX_ALLOW, 0);

/// Sources whose packets to a listener are dropped.
#[map]
pub static DENY: LpmTrie<AddrKey, u8> = LpmTrie::pinned(MAX_DENY, 0);

/// SYN token bucket per source.
#[map]
pub static SYN_RATE: LruHashMap<AddrKey, RateValue> = LruHashMap::pinned(MAX_RATE_SOURCES, 0);

/// Global settings at index 0.
#[map]
pub static CONFIG: Array<Config> = Array::pinned(1, 0);

/// Per-CPU counters per host id.
#[map]
pub static HOST_STATS: PerCpuArray<HostCounters> = PerCpuArray::pinned(MAX_HOSTS, 0);

/// Per-CPU scratch space for the first payload segment.
#[map]
pub static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's counters (looked up once per packet).
#[inline(always)]
pub fn stats() -> Option<&'static mut Stats> {
    // SAFETY: the slot is this CPU's; nothing else runs on it meanwhile.
    STATS.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// Adds one to a counter (no atomics needed: the slot is per CPU).
#[inline(always)]
pub fn bump(stats: &mut Stats, stat: Stat) {
    let i = stat as usize;
    if i < stats.counters.len() {
        stats.counters[i] += 1;
    }
}

/// Flags of a listener on `port` (host order), if the agent registered one.
#[inline(always)]
pub fn listener(port: u16) -> Option<u32> {
    LISTENERS
        .get(u32::from(port))
        .map(|v| v.flags)
        .filter(|f| *f != 0)
}

#[inline(always)]
pub fn config() -> Config {
    match CONFIG.get(0) {
        Some(c) => *c,
        None => Config {
            syn_rate: 0,
            syn_burst: 0,
            flags: 0,
            _pad: 0,
        },
    }
}

#[inline(always)]
pub fn denied(src: &[u8; 16]) -> bool {
    DENY.get(Key::new(128, AddrKey { addr: *src })).is_some()
}

/// Whether `src` is in the allow list of host `id`.
#[inline(always)]
pub fn allowed(id: u32, src: &[u8; 16]) -> bool {
    let key = Key::new(
        32 + 128,
        AllowKey {
            host_id_be: id.to_be(),
            addr: *src,
        },
    );
    ALLOW.get(key).is_some()
}

#[inline(always)]
pub fn count_host(id: u32, rejected: bool) {
    if let Some(c) = HOST_STATS.get_ptr_mut(id) {
        // SAFETY: this CPU's slot, from a successful lookup.
        unsafe {
            if rejected {
                (*c).rejected += 1;
            } else {
                (*c).flows += 1;
            }
        }
    }
}
