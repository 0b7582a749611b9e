//! Every map of the program, declared once. Names and sizes come from
//! ingress-common so the agent opens exactly these; all but LISTENERS and
//! SCRATCH are pinned by name under the agent's pin path.

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST},
    helpers::{bpf_ktime_get_coarse_ns, generated::bpf_jiffies64},
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, lpm_trie::Key},
};
use ingress_common::{
    AddrKey, AllowKey, Config, DENY4_INDEX_WORDS, DENY4_PART, DENY4_WHOLE, FLOW_CACHE_SLOTS,
    FlowCacheEntry, FlowKey4, FlowKey6, FlowValue, HostCounters, HostKey, HostValue, L4Config,
    L4Counters, L4Endpoint, L4Flow, L4Key4, L4Nat, L4ServiceKey, L4ServiceValue, LISTENER_PORTS,
    ListenerFlags, MAX_ALLOW, MAX_DENY, MAX_FLOWS, MAX_HOSTS, MAX_L4_ENDPOINT_IDS,
    MAX_L4_ENDPOINTS, MAX_L4_FLOWS, MAX_L4_SERVICES, MAX_RATE_SOURCES, MaglevTable, RateValue,
    Scratch, Stat, Stats, deny4_slot, flow_cache_slot,
};

use aya_ebpf::programs::XdpContext;

use crate::parse::{Addrs, IPV4_HLEN, IPV6_HLEN, L3, ParseError, load_u32, ptr_at};

/// Local TCP ports the agent serves: flags by port (see MAP_LISTENERS).
/// Written by the agent only, through the section's map; volatile reads,
/// so LLVM assumes nothing about the zeros it was compiled with.
#[unsafe(link_section = ".data.listeners")]
#[unsafe(no_mangle)]
static mut LISTENERS: ListenerFlags = [0; LISTENER_PORTS as usize];

/// This CPU's packet counters, all in one slot.
#[map]
pub static STATS: PerCpuArray<Stats> = PerCpuArray::pinned(1, 0);

/// Tracked client → node TCP flows and their verdicts, IPv4 and IPv6.
#[map]
pub static FLOWS4: LruHashMap<FlowKey4, FlowValue> = LruHashMap::pinned(MAX_FLOWS, 0);
#[map]
pub static FLOWS6: LruHashMap<FlowKey6, FlowValue> = LruHashMap::pinned(MAX_FLOWS, 0);

/// Host names (exact, and `*.parent` wildcards) with rules.
#[map]
pub static HOSTS: HashMap<HostKey, HostValue> = HashMap::pinned(MAX_HOSTS, 0);

/// Per-host source allow lists: host id ‖ address.
#[map]
pub static ALLOW: LpmTrie<AllowKey, u8> = LpmTrie::pinned(MAX_ALLOW, 0);

/// Sources whose packets to a listener are dropped, IPv4 and IPv6.
#[map]
pub static DENY4: LpmTrie<[u8; 4], u8> = LpmTrie::pinned(MAX_DENY, 0);
#[map]
pub static DENY6: LpmTrie<AddrKey, u8> = LpmTrie::pinned(MAX_DENY, 0);
/// DENY4 by /24: whole, part (ask DENY4) or none, 2 bits each.
#[map]
pub static DENY4_INDEX: Array<u64> = Array::pinned(DENY4_INDEX_WORDS, 0);

/// SYN token bucket per source.
#[map]
pub static SYN_RATE: LruHashMap<AddrKey, RateValue> = LruHashMap::pinned(MAX_RATE_SOURCES, 0);

/// Global settings at index 0.
#[map]
pub static CONFIG: Array<Config> = Array::pinned(1, 0);

/// Per-CPU counters per host id.
#[map]
pub static HOST_STATS: PerCpuArray<HostCounters> = PerCpuArray::pinned(MAX_HOSTS, 0);

/// This CPU's cache of L7 flows (see `Flow::cache_slot`): an array, so the
/// lookup is inlined, where a FLOWS lookup is four calls in the kernel.
#[map]
pub static FLOW_CACHE: PerCpuArray<FlowCacheEntry> = PerCpuArray::pinned(FLOW_CACHE_SLOTS, 0);

/// Bumped (atomically) when a flow is replaced: cached copies of the old
/// one on any CPU stop matching.
#[map]
pub static FLOW_EPOCH: Array<u64> = Array::pinned(1, 0);

/// The TCP and UDP services steered in XDP (see l4.rs).
#[map]
pub static L4_SERVICES: HashMap<L4ServiceKey, L4ServiceValue> = HashMap::pinned(MAX_L4_SERVICES, 0);
#[map]
pub static L4_MAGLEV: Array<MaglevTable> = Array::pinned(2 * MAX_L4_SERVICES, 0);
#[map]
pub static L4_ENDPOINTS: Array<L4Endpoint> =
    Array::pinned(2 * MAX_L4_SERVICES * MAX_L4_ENDPOINTS, 0);
#[map]
pub static L4_CT4: LruHashMap<L4Key4, L4Flow> = LruHashMap::pinned(MAX_L4_FLOWS, 0);
#[map]
pub static L4_NAT4: LruHashMap<L4Key4, L4Nat> = LruHashMap::pinned(MAX_L4_FLOWS, 0);
#[map]
pub static L4_STATS: PerCpuArray<L4Counters> = PerCpuArray::pinned(MAX_L4_SERVICES, 0);
#[map]
pub static L4_EP_STATS: PerCpuArray<L4Counters> = PerCpuArray::pinned(MAX_L4_ENDPOINT_IDS, 0);
#[map]
pub static L4_CONFIG: Array<L4Config> = Array::pinned(1, 0);

/// This CPU's counters of an L4 service.
#[inline(always)]
pub fn l4_stats(id: u32) -> Option<&'static mut L4Counters> {
    // SAFETY: this CPU's slot; nothing else runs on it meanwhile.
    L4_STATS.get_ptr_mut(id).map(|p| unsafe { &mut *p })
}

/// This CPU's counters of an L4 endpoint.
#[inline(always)]
pub fn l4_ep_stats(id: u32) -> Option<&'static mut L4Counters> {
    // SAFETY: as l4_stats.
    L4_EP_STATS.get_ptr_mut(id).map(|p| unsafe { &mut *p })
}

#[inline(always)]
pub fn count_l4_flow(service: u32, endpoint: u32) {
    for c in [l4_stats(service), l4_ep_stats(endpoint)]
        .into_iter()
        .flatten()
    {
        c.flows += 1;
    }
}

#[inline(always)]
pub fn count_l4_fallback(service: u32) {
    if let Some(c) = l4_stats(service) {
        c.fallbacks += 1;
    }
}

/// Per-CPU room for the L4 steering (not pinned).
#[map]
pub static L4_SCRATCH: PerCpuArray<crate::l4::L4Scratch> = PerCpuArray::with_max_entries(1, 0);

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

/// CLOCK_MONOTONIC_COARSE in ns, at jiffy resolution (plenty for flow ages
/// and token buckets). The verifier inlines `bpf_jiffies64` into a load;
/// the clock helper (a call, ~20 ns on a retpoline kernel) runs only when
/// this CPU sees a new jiffy.
#[inline(always)]
pub fn now(stats: &mut Stats) -> u64 {
    // SAFETY: bpf_jiffies64 has no preconditions.
    let jiffies = unsafe { bpf_jiffies64() };
    if jiffies != stats.clock_jiffies || stats.clock_ns == 0 {
        stats.clock_jiffies = jiffies;
        // SAFETY: bpf_ktime_get_coarse_ns has no preconditions.
        stats.clock_ns = unsafe { bpf_ktime_get_coarse_ns() };
    }
    stats.clock_ns
}

/// Flags of a listener on `port` (host order), if the agent registered one.
#[inline(always)]
pub fn listener(port: u16) -> Option<u32> {
    // SAFETY: port < LISTENER_PORTS, the array's length; a byte load.
    let flags = unsafe {
        core::ptr::read_volatile((&raw const LISTENERS).cast::<u8>().add(usize::from(port)))
    };
    (flags != 0).then_some(u32::from(flags))
}

/// The settings, read in place (fields are loaded where they are used; an
/// established packet uses none).
#[inline(always)]
pub fn config() -> &'static Config {
    static NONE: Config = Config {
        syn_rate: 0,
        syn_burst: 0,
        flags: 0,
        flow_gen: 0,
    };
    CONFIG.get(0).unwrap_or(&NONE)
}

#[inline(always)]
pub fn denied(addrs: &Addrs) -> bool {
    match addrs {
        Addrs::V4 { src } => {
            let (word, shift) = deny4_slot(*src);
            let state = DENY4_INDEX.get(word).map_or(0, |w| (*w >> shift) & 0b11);
            state == DENY4_WHOLE || (state == DENY4_PART && DENY4.get(Key::new(32, *src)).is_some())
        }
        Addrs::V6 { src } => DENY6.get(Key::new(128, AddrKey { addr: *src })).is_some(),
    }
}

/// A flow's key in the map of its family, as words of the packet itself:
/// the IP header holds source then destination address and the TCP header
/// source then destination port, in the key's order and byte order, so the
/// key is a few 4-byte loads (a 4-aligned buffer: the verifier refuses
/// misaligned stack stores, and LLVM would otherwise shuffle bytes).
///
/// The words live in this CPU's scratch slot (on the stack the verifier
/// tracks each spilled word, and its state count explodes); a `Flow` only
/// says which family, and every use borrows the slot it reads.
#[derive(Clone, Copy)]
pub struct Flow {
    v6: bool,
}

const _: () = assert!(core::mem::size_of::<FlowKey4>() == 12);
const _: () = assert!(core::mem::size_of::<FlowKey6>() == 36);

impl Flow {
    /// Writes the packet's key words into `scratch.flow`.
    #[inline(always)]
    pub fn from_packet(
        ctx: &XdpContext,
        l3: &L3,
        l4_off: usize,
        scratch: &mut Scratch,
    ) -> Result<Self, ParseError> {
        let tcp = ptr_at::<4>(ctx, l4_off)?;
        let w = &mut scratch.flow;
        if l3.v6 {
            let ip = ptr_at::<IPV6_HLEN>(ctx, l3.l3_off)?;
            for (i, word) in w.iter_mut().take(8).enumerate() {
                // SAFETY: bytes 8..40 of the checked IPv6 header.
                *word = unsafe { load_u32(ip.add(8 + 4 * i)) };
            }
            // SAFETY: ptr_at checked the 4 bytes of the two ports.
            w[8] = unsafe { load_u32(tcp) };
        } else {
            let ip = ptr_at::<IPV4_HLEN>(ctx, l3.l3_off)?;
            // SAFETY: bytes 12..20 of the checked IPv4 header, and the
            // ports' 4 bytes that ptr_at checked.
            unsafe {
                w[0] = load_u32(ip.add(12));
                w[1] = load_u32(ip.add(16));
                w[2] = load_u32(tcp);
            }
        }
        Ok(Flow { v6: l3.v6 })
    }

    /// The source address, from the key words (no second packet read).
    #[inline(always)]
    pub fn source(self, s: &Scratch) -> Addrs {
        if self.v6 {
            Addrs::V6 { src: k6(s).src }
        } else {
            Addrs::V4 { src: k4(s).src }
        }
    }

    #[inline(always)]
    pub fn get(self, s: &Scratch) -> Option<*mut FlowValue> {
        if self.v6 {
            FLOWS6.get_ptr_mut(k6(s))
        } else {
            FLOWS4.get_ptr_mut(k4(s))
        }
    }

    /// Inserts unless the flow exists; true when inserted.
    #[inline(always)]
    pub fn insert_new(self, s: &Scratch, value: &FlowValue) -> bool {
        self.insert(s, value, BPF_NOEXIST)
    }

    /// Inserts or replaces the flow.
    #[inline(always)]
    pub fn replace(self, s: &Scratch, value: &FlowValue) -> bool {
        self.insert(s, value, BPF_ANY)
    }

    #[inline(always)]
    fn insert(self, s: &Scratch, value: &FlowValue, flags: u32) -> bool {
        if self.v6 {
            FLOWS6.insert(k6(s), value, flags.into()).is_ok()
        } else {
            FLOWS4.insert(k4(s), value, flags.into()).is_ok()
        }
    }

    /// True when it was there.
    #[inline(always)]
    pub fn remove(self, s: &Scratch) -> bool {
        if self.v6 {
            FLOWS6.remove(k6(s)).is_ok()
        } else {
            FLOWS4.remove(k4(s)).is_ok()
        }
    }
}

/// The current flow epoch (low 32 bits; equality is all that matters).
#[inline(always)]
pub fn epoch() -> u32 {
    FLOW_EPOCH.get(0).map_or(0, |e| *e as u32)
}

/// Makes every cached flow on every CPU stale.
#[inline(always)]
pub fn bump_epoch() {
    if let Some(e) = FLOW_EPOCH.get_ptr_mut(0) {
        // SAFETY: a map value, 8-aligned, shared between CPUs: an atomic
        // add (BPF_ATOMIC; core's atomics have no RMW on this target).
        unsafe {
            core::arch::asm!(
                "lock *(u64 *)({p} + 0) += {one}",
                p = in(reg) e,
                one = in(reg) 1u64,
                options(nostack, preserves_flags),
            );
        }
    }
}

/// The flow cache side of a `Flow`: the packets of a flow with the L7
/// verdict are counted in this CPU's cache slot for the flow instead of
/// its FLOWS entry (one inlined array lookup and a key compare, instead of
/// a hash map lookup), and added to FLOWS when the slot is refreshed: at
/// least every FLOW_CACHE_FLUSH_NS, or when another flow takes the slot.
impl Flow {
    /// This flow's slot in this CPU's cache.
    #[inline(always)]
    pub fn cache_slot(self, s: &Scratch) -> Option<*mut FlowCacheEntry> {
        let slot = if self.v6 {
            flow_cache_slot(&s.flow)
        } else {
            flow_cache_slot(&s.flow[..3])
        };
        FLOW_CACHE.get_ptr_mut(slot)
    }

    /// Whether `e` holds this flow's key (compared word by word: LLVM would
    /// turn an array compare into a `bcmp` call, which BPF does not have).
    #[inline(always)]
    pub fn cached_in(self, s: &Scratch, e: &FlowCacheEntry) -> bool {
        let mut diff = 0;
        if self.v6 {
            for i in 0..9 {
                diff |= e.key[i] ^ s.flow[i];
            }
            e.family == 6 && diff == 0
        } else {
            for i in 0..3 {
                diff |= e.key[i] ^ s.flow[i];
            }
            e.family == 4 && diff == 0
        }
    }

    /// Re-arms the slot `e` for this flow, whose FLOWS entry is `flow` (just
    /// looked up, with the L7 verdict and this packet counted): counts the
    /// slot holds for this same flow go into `flow`; another flow's counts
    /// go into that flow's FLOWS entry first.
    #[inline(always)]
    pub fn cache_refresh(
        self,
        s: &Scratch,
        e: &mut FlowCacheEntry,
        flow: &mut FlowValue,
        flow_gen: u32,
        now: u64,
    ) {
        if self.cached_in(s, e) {
            if e.first_seen_ns == flow.first_seen_ns {
                flow.packets += e.packets;
                flow.bytes += e.bytes;
            }
        } else if e.family != 0 && e.packets != 0 {
            flush_evicted(e);
        }
        e.key = s.flow;
        e.family = if self.v6 { 6 } else { 4 };
        e.flow_gen = flow_gen;
        e.epoch = epoch();
        e.first_seen_ns = flow.first_seen_ns;
        e.flushed_ns = now;
        e.last_seen_ns = now;
        e.packets = 0;
        e.bytes = 0;
    }
}

/// Adds the counts of a slot about to be taken by another flow to the
/// FLOWS entry they belong to (if that flow is still there).
// The key is passed as a pointer into the cache entry: by value (clippy's
// suggestion) it would be copied to the stack first.
#[allow(clippy::needless_borrows_for_generic_args)]
#[inline(always)]
fn flush_evicted(e: &FlowCacheEntry) {
    let flow = if e.family == 6 {
        // SAFETY: all 36 bytes of the words, as k6.
        FLOWS6.get_ptr_mut(unsafe { &*e.key.as_ptr().cast::<FlowKey6>() })
    } else {
        // SAFETY: the first 12 bytes, as k4.
        FLOWS4.get_ptr_mut(unsafe { &*e.key.as_ptr().cast::<FlowKey4>() })
    };
    if let Some(flow) = flow {
        // SAFETY: from a successful lookup.
        let flow = unsafe { &mut *flow };
        if flow.first_seen_ns == e.first_seen_ns {
            flow.packets += e.packets;
            flow.bytes += e.bytes;
            if e.last_seen_ns > flow.last_seen_ns {
                flow.last_seen_ns = e.last_seen_ns;
            }
        }
    }
}

#[inline(always)]
fn k4(s: &Scratch) -> &FlowKey4 {
    // SAFETY: the first 12 bytes of the words; FlowKey4 is Pod with
    // alignment 2 (the words are 4-aligned).
    unsafe { &*s.flow.as_ptr().cast::<FlowKey4>() }
}

#[inline(always)]
fn k6(s: &Scratch) -> &FlowKey6 {
    // SAFETY: all 36 bytes; as k4.
    unsafe { &*s.flow.as_ptr().cast::<FlowKey6>() }
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
