//! Map keys, values, names and limits shared by the XDP program and the agent.
//!
//! Every type is `#[repr(C)]` with explicit padding and a compile-time size
//! check; `bytemuck::Pod` is derived so the compiler proves there is no hidden
//! padding. Fields that hold network-order values end in `_be`. The maps on
//! the per-packet path (flows, deny list) come in an IPv4 and an IPv6 form:
//! a 12-byte IPv4 flow key hashes in a third of the time of a 40-byte one.
//! Elsewhere IPv4 addresses are stored IPv4-mapped (`::ffff:a.b.c.d`).
#![no_std]

use bytemuck::{Pod, Zeroable};

pub mod l4;
pub use l4::*;

/// The local TCP ports the agent listens on: [`ListenerFlags`], one byte
/// per port (host order), `F_LISTENER_*` bits, 0 for not a listener. It is
/// a global of the XDP program in a data section of its own, which aya
/// loads as a one-entry array map of this name: the program reads its
/// port's byte at a fixed address plus the port, with no map lookup (every
/// packet pays this one, listener or not).
pub const MAP_LISTENERS: &str = ".data.listeners";
/// Name of the per-CPU array holding one [`Stats`].
pub const MAP_STATS: &str = "STATS";
/// Tracked IPv4 TCP flows (LRU hash, [`FlowKey4`] → [`FlowValue`]).
pub const MAP_FLOWS4: &str = "FLOWS4";
/// Tracked IPv6 TCP flows (LRU hash, [`FlowKey6`] → [`FlowValue`]).
pub const MAP_FLOWS6: &str = "FLOWS6";
/// Host names with rules ([`HostKey`] → [`HostValue`]).
pub const MAP_HOSTS: &str = "HOSTS";
/// Per-host source allow lists (LPM trie on [`AllowKey`]).
pub const MAP_ALLOW: &str = "ALLOW";
/// Global source deny list for IPv4 (LPM trie on the 4-byte address).
pub const MAP_DENY4: &str = "DENY4";
/// Global source deny list for IPv6 (LPM trie on [`AddrKey`]).
pub const MAP_DENY6: &str = "DENY6";
/// Index of DENY4 by /24 (array of u64 words, 2 bits per /24, see
/// [`deny4_slot`]): most sources are decided by one array load, which the
/// verifier inlines, instead of an LPM trie walk (a call).
pub const MAP_DENY4_INDEX: &str = "DENY4_INDEX";
/// Per-source SYN token buckets (LRU hash, [`AddrKey`] → [`RateValue`]).
pub const MAP_SYN_RATE: &str = "SYN_RATE";
/// One [`Config`] at index 0.
pub const MAP_CONFIG: &str = "CONFIG";
/// Per-CPU [`HostCounters`], indexed by host id.
pub const MAP_HOST_STATS: &str = "HOST_STATS";
/// Per-CPU scratch buffer for payload parsing.
pub const MAP_SCRATCH: &str = "SCRATCH";
/// Per-CPU direct-mapped cache of classified (L7) flows, [`FLOW_CACHE_SLOTS`]
/// [`FlowCacheEntry`] per CPU: the packets of an established flow are
/// counted there, and added to FLOWS once per [`FLOW_CACHE_FLUSH_NS`].
pub const MAP_FLOW_CACHE: &str = "FLOW_CACHE";
/// One u64 at index 0 that the XDP program increments when it replaces a
/// flow (a new connection on a reused 5-tuple): every CPU's cached copy of
/// the old flow stops matching.
pub const MAP_FLOW_EPOCH: &str = "FLOW_EPOCH";

/// Every map the agent pins (LISTENERS and the scratch buffer are private).
pub const PINNED_MAPS: [&str; 21] = [
    MAP_STATS,
    MAP_FLOWS4,
    MAP_FLOWS6,
    MAP_HOSTS,
    MAP_ALLOW,
    MAP_DENY4,
    MAP_DENY6,
    MAP_DENY4_INDEX,
    MAP_SYN_RATE,
    MAP_CONFIG,
    MAP_HOST_STATS,
    MAP_FLOW_CACHE,
    MAP_FLOW_EPOCH,
    l4::MAP_L4_SERVICES,
    l4::MAP_L4_MAGLEV,
    l4::MAP_L4_ENDPOINTS,
    l4::MAP_L4_CT4,
    l4::MAP_L4_NAT4,
    l4::MAP_L4_STATS,
    l4::MAP_L4_EP_STATS,
    l4::MAP_L4_CONFIG,
];

/// Size of LISTENERS: one byte per TCP port, so the lookup is an index.
pub const LISTENER_PORTS: u32 = 65_536;
pub const MAX_FLOWS: u32 = 262_144;
/// Host ids are below this (HOST_STATS is an array of this size).
pub const MAX_HOSTS: u32 = 16_384;
pub const MAX_ALLOW: u32 = 65_536;
pub const MAX_DENY: u32 = 65_536;
/// Words of DENY4_INDEX: 2^24 /24s at 2 bits each (4 MiB).
pub const DENY4_INDEX_WORDS: u32 = 1 << 19;
/// DENY4_INDEX state of a /24: every address in it is denied.
pub const DENY4_WHOLE: u64 = 0b01;
/// DENY4_INDEX state of a /24: some addresses in it are; ask DENY4.
pub const DENY4_PART: u64 = 0b10;

/// Where the 2-bit DENY4_INDEX state of `addr`'s /24 lives: (word, shift).
#[inline(always)]
pub fn deny4_slot(addr: [u8; 4]) -> (u32, u32) {
    let slash24 = u32::from_be_bytes(addr) >> 8;
    (slash24 >> 5, (slash24 & 31) * 2)
}
pub const MAX_RATE_SOURCES: u32 = 65_536;
/// Host names are looked up by their first 64 bytes; longer names are UNDECIDED.
pub const HOST_KEY_LEN: usize = 64;
/// Bytes of the first payload segment copied for SNI / Host parsing.
pub const SCRATCH_LEN: usize = 1536;

/// Listener carries plain HTTP (Host header classification).
pub const F_LISTENER_HTTP: u32 = 1 << 0;
/// Listener carries TLS (SNI classification).
pub const F_LISTENER_TLS: u32 = 1 << 1;

/// The host has a source allow list in ALLOW.
pub const F_HOST_ALLOWLIST: u32 = 1 << 0;

/// CONFIG flag: reject flows to hosts that HOSTS does not know.
pub const F_CONFIG_STRICT_HOSTS: u32 = 1 << 0;
/// CONFIG flag: DENY has entries (else its lookup is skipped).
pub const F_CONFIG_DENY: u32 = 1 << 1;

/// Flow verdicts (FlowValue::verdict).
pub const VERDICT_NONE: u8 = 0;
/// Classified: the agent serves it.
pub const VERDICT_L7: u8 = 1;
/// Torn down: the source may not reach this host.
pub const VERDICT_REJECT: u8 = 2;
/// XDP could not decide (no SNI in the segment, name too long); the agent decides.
pub const VERDICT_UNDECIDED: u8 = 3;

/// Why a flow was rejected (FlowValue::reason).
pub const REASON_NONE: u8 = 0;
pub const REASON_ALLOWLIST: u8 = 1;
pub const REASON_UNKNOWN_HOST: u8 = 2;
/// Decided by the agent for an UNDECIDED flow.
pub const REASON_AGENT: u8 = 3;

/// Host id of "no host rule" (unknown host, default backend).
pub const HOST_ID_NONE: u32 = 0;

/// The value of [`MAP_LISTENERS`]: flags by port.
pub type ListenerFlags = [u8; LISTENER_PORTS as usize];

/// An IPv4 TCP flow as the client sent it: client → node.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct FlowKey4 {
    /// Client address.
    pub src: [u8; 4],
    /// Local address.
    pub dst: [u8; 4],
    pub src_port_be: u16,
    pub dst_port_be: u16,
}

/// An IPv6 TCP flow as the client sent it: client → node.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct FlowKey6 {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port_be: u16,
    pub dst_port_be: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct FlowValue {
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    /// Client → node packets and bytes (L3 length).
    pub packets: u64,
    pub bytes: u64,
    /// HOSTS id of the classified host, `HOST_ID_NONE` if none.
    pub host_id: u32,
    /// `VERDICT_*`.
    pub verdict: u8,
    /// `REASON_*`, for REJECT.
    pub reason: u8,
    /// `F_LISTENER_*` of the listener the flow goes to.
    pub listener: u8,
    pub _pad: u8,
}

/// A host name, lowercase, zero-padded; wildcards as `*.parent`. Aligned
/// to 8 so the XDP program can lowercase it a word at a time.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct HostKey {
    pub name: [u8; HOST_KEY_LEN],
}

impl HostKey {
    /// `None` when the name does not fit.
    pub fn new(name: &[u8]) -> Option<Self> {
        if name.is_empty() || name.len() > HOST_KEY_LEN {
            return None;
        }
        let mut key = Self {
            name: [0; HOST_KEY_LEN],
        };
        key.name[..name.len()].copy_from_slice(name);
        key.name[..name.len()].make_ascii_lowercase();
        Some(key)
    }

    /// The name without its zero padding.
    pub fn as_bytes(&self) -> &[u8] {
        let len = self
            .name
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(HOST_KEY_LEN);
        &self.name[..len]
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct HostValue {
    /// 1..MAX_HOSTS, stable while the host exists.
    pub id: u32,
    /// `F_HOST_*`.
    pub flags: u32,
}

/// LPM data of ALLOW: host id, then the source address. A CIDR `a/n` of
/// host `h` is stored with prefix length `32 + n` (IPv6) or `32 + 96 + n`
/// (IPv4, mapped).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct AllowKey {
    pub host_id_be: u32,
    pub addr: [u8; 16],
}

/// LPM data of DENY6, and the key of SYN_RATE: an address (IPv4-mapped for IPv4).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct AddrKey {
    pub addr: [u8; 16],
}

/// A per-source token bucket for SYNs, in thousandths of a token.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct RateValue {
    pub tokens_milli: u64,
    pub last_ns: u64,
}

/// Global settings written by the agent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct Config {
    /// SYNs per second per source; 0 disables the limit.
    pub syn_rate: u32,
    /// Bucket size in SYNs.
    pub syn_burst: u32,
    /// `F_CONFIG_*`.
    pub flags: u32,
    /// Bumped by the agent after it removes flows from FLOWS (the flows of
    /// newly denied sources): flow cache entries of an older generation
    /// no longer match.
    pub flow_gen: u32,
}

/// Per-host counters (per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct HostCounters {
    /// Flows classified to this host and served.
    pub flows: u64,
    /// Flows rejected (allow list).
    pub rejected: u64,
}

/// The per-CPU scratch space (XDP side only): the BPF stack is 512 bytes,
/// so the payload copy and the host keys live here.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Scratch {
    pub buf: [u8; SCRATCH_LEN],
    /// The name read from the payload.
    pub key: HostKey,
    /// Its `*.parent` form.
    pub wild: HostKey,
    /// Where the name starts in the payload, and its length (set by the parsers).
    pub name_pos: u32,
    pub name_len: u32,
    /// This packet's flow key words (FlowKey4 or FlowKey6): in a map value
    /// rather than on the stack, where the verifier tracks every spilled
    /// word and its state count explodes.
    pub flow: [u32; 9],
}

/// Slots of the flow cache per CPU (a power of two): 88 KiB per CPU. A new
/// flow's first look at its slot is often a cache-line miss; with 4096
/// slots (352 KiB) that added 60–100 ns to the first payload in `cargo
/// xtask bench xdp`, with 1024 about 20.
pub const FLOW_CACHE_SLOTS: u32 = 1024;
/// How long a cache entry counts a flow's packets before they are added
/// to its FLOWS entry (which also refreshes the entry's LRU age and checks
/// that the flow is still the one cached). FLOWS lags by at most this;
/// `xingress xdp flows` adds what the caches hold.
pub const FLOW_CACHE_FLUSH_NS: u64 = 10_000_000;

/// One flow in a CPU's flow cache: the FLOWS entry of a flow with the L7
/// verdict, found by its key words without a hash map lookup, and the
/// packets counted since they were last added to FLOWS.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct FlowCacheEntry {
    /// The flow key's words: [`FlowKey4`] in the first 3, [`FlowKey6`] in all 9.
    pub key: [u32; 9],
    /// 0: empty; 4 or 6: the key's family.
    pub family: u32,
    /// `Config::flow_gen` and the FLOW_EPOCH value when the entry was made.
    pub flow_gen: u32,
    pub epoch: u32,
    /// `first_seen_ns` of the FLOWS entry cached: a later flow on the same
    /// 5-tuple is another flow.
    pub first_seen_ns: u64,
    /// When the counts were last added to FLOWS.
    pub flushed_ns: u64,
    pub last_seen_ns: u64,
    /// Packets and bytes counted since then.
    pub packets: u64,
    pub bytes: u64,
}

impl FlowKey4 {
    /// The key as the words the XDP program reads from the packet.
    pub fn words(&self) -> [u32; 3] {
        bytemuck::cast(*self)
    }
}

impl FlowKey6 {
    /// The key as the words the XDP program reads from the packet.
    pub fn words(&self) -> [u32; 9] {
        bytemuck::cast(*self)
    }
}

impl FlowCacheEntry {
    /// The entry's key as a [`FlowKey4`], if it holds an IPv4 flow.
    pub fn key4(&self) -> Option<FlowKey4> {
        let [a, b, c, ..] = self.key;
        (self.family == 4).then(|| bytemuck::cast([a, b, c]))
    }

    /// The entry's key as a [`FlowKey6`], if it holds an IPv6 flow.
    pub fn key6(&self) -> Option<FlowKey6> {
        (self.family == 6).then(|| bytemuck::cast(self.key))
    }
}

/// The cache slot of a flow key's words (3 for IPv4, 9 for IPv6): the
/// words' products with odd constants, summed (independent multiplies),
/// then mixed, top bits. A collision only costs the two flows the cache.
#[inline(always)]
pub fn flow_cache_slot(words: &[u32]) -> u32 {
    const K: [u64; 9] = [
        0x9E37_79B9_7F4A_7C15,
        0xC2B2_AE3D_27D4_EB4F,
        0x1656_67B1_9E37_79F9,
        0x85EB_CA77_C2B2_AE63,
        0x27D4_EB2F_1656_67C5,
        0xFF51_AFD7_ED55_8CCD,
        0xC4CE_B9FE_1A85_EC53,
        0x9FB2_1C65_1E98_DF25,
        0xD6E8_FEB8_6659_FD93,
    ];
    let mut h = 0u64;
    for (w, k) in words.iter().zip(K) {
        h = h.wrapping_add(u64::from(*w).wrapping_mul(k));
    }
    h ^= h >> 29;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (h >> (64 - FLOW_CACHE_SLOTS.trailing_zeros())) as u32
}

const _: () = assert!(FLOW_CACHE_SLOTS.is_power_of_two());
const _: () = assert!(core::mem::size_of::<FlowCacheEntry>() == 88);
const _: () = assert!(F_LISTENER_HTTP | F_LISTENER_TLS <= u8::MAX as u32);
const _: () = assert!(core::mem::size_of::<FlowKey4>() == 12);
const _: () = assert!(core::mem::size_of::<FlowKey6>() == 36);
const _: () = assert!(core::mem::size_of::<FlowValue>() == 40);
const _: () = assert!(core::mem::size_of::<HostKey>() == 64);
const _: () = assert!(core::mem::align_of::<HostKey>() == 8);
const _: () = assert!(core::mem::offset_of!(Scratch, key) % 8 == 0);
const _: () = assert!(core::mem::size_of::<HostValue>() == 8);
const _: () = assert!(core::mem::size_of::<AllowKey>() == 20);
const _: () = assert!(core::mem::size_of::<AddrKey>() == 16);
const _: () = assert!(core::mem::size_of::<RateValue>() == 16);
const _: () = assert!(core::mem::size_of::<Config>() == 16);
const _: () = assert!(core::mem::size_of::<HostCounters>() == 16);

/// Index into STATS. Each slot is a per-CPU `u64`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// Every packet the program saw.
    Packets = 0,
    /// Packets whose Ethernet/VLAN/IP/TCP headers could not be read in full.
    Malformed = 1,
    /// Packets that were neither IPv4 nor IPv6 (ARP, LLDP, ...).
    NonIp = 2,
    Ipv4 = 3,
    Ipv6 = 4,
    /// IP packets carrying TCP.
    Tcp = 5,
    /// TCP packets to a port in LISTENERS.
    Listener = 6,
    /// Packets with one 802.1Q / 802.1ad tag.
    Vlan = 7,
    /// Dropped: source in the deny list.
    Denied = 8,
    /// Dropped: SYN over the source's rate.
    SynRateLimited = 9,
    /// New flows (SYN) tracked.
    FlowsNew = 10,
    /// Flows retired by FIN or RST.
    FlowsRetired = 11,
    /// Flows classified L7 at their first payload.
    ClassifiedL7 = 12,
    /// Flows rejected: source not in the host's allow list.
    RejectedAllowlist = 13,
    /// Flows rejected: unknown host in strict mode.
    RejectedUnknownHost = 14,
    /// Flows left for the agent to decide.
    Undecided = 15,
    /// Packets of rejected flows passed on for the kernel to reset.
    RejectedPackets = 16,
    /// Listener packets of flows not in FLOWS (older than the program, evicted).
    Untracked = 17,
    /// Packets of L7 flows counted in the flow cache (no FLOWS lookup).
    FlowCacheHits = 18,
}

/// Number of counters in [`Stats`].
pub const STAT_COUNT: u32 = 19;

/// Every packet counter of one CPU, in one map slot: one lookup per packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct Stats {
    pub counters: [u64; STAT_COUNT as usize],
    /// The program's clock cache on this CPU (not a counter): the jiffy of
    /// the last clock read and the coarse monotonic ns it gave. The clock
    /// helper is called once per jiffy per CPU instead of once per packet.
    pub clock_jiffies: u64,
    pub clock_ns: u64,
}

impl Stat {
    /// Every counter, in index order.
    pub const ALL: [Stat; STAT_COUNT as usize] = [
        Stat::Packets,
        Stat::Malformed,
        Stat::NonIp,
        Stat::Ipv4,
        Stat::Ipv6,
        Stat::Tcp,
        Stat::Listener,
        Stat::Vlan,
        Stat::Denied,
        Stat::SynRateLimited,
        Stat::FlowsNew,
        Stat::FlowsRetired,
        Stat::ClassifiedL7,
        Stat::RejectedAllowlist,
        Stat::RejectedUnknownHost,
        Stat::Undecided,
        Stat::RejectedPackets,
        Stat::Untracked,
        Stat::FlowCacheHits,
    ];

    /// Stable lower-case name, used in metrics and CLI output.
    pub const fn name(self) -> &'static str {
        match self {
            Stat::Packets => "packets",
            Stat::Malformed => "malformed",
            Stat::NonIp => "non_ip",
            Stat::Ipv4 => "ipv4",
            Stat::Ipv6 => "ipv6",
            Stat::Tcp => "tcp",
            Stat::Listener => "listener",
            Stat::Vlan => "vlan",
            Stat::Denied => "denied",
            Stat::SynRateLimited => "syn_rate_limited",
            Stat::FlowsNew => "flows_new",
            Stat::FlowsRetired => "flows_retired",
            Stat::ClassifiedL7 => "classified_l7",
            Stat::RejectedAllowlist => "rejected_allowlist",
            Stat::RejectedUnknownHost => "rejected_unknown_host",
            Stat::Undecided => "undecided",
            Stat::RejectedPackets => "rejected_packets",
            Stat::Untracked => "untracked",
            Stat::FlowCacheHits => "flow_cache_hits",
        }
    }
}

/// The 16-byte form of an IPv4 address (`::ffff:a.b.c.d`).
pub const fn ipv4_mapped(v4: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, v4[0], v4[1], v4[2], v4[3],
    ]
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: every type is repr(C) and derives bytemuck::Pod (no padding,
    // any bit pattern valid), which is exactly what aya::Pod requires.
    unsafe impl aya::Pod for super::Stats {}
    unsafe impl aya::Pod for super::FlowKey4 {}
    unsafe impl aya::Pod for super::FlowCacheEntry {}
    unsafe impl aya::Pod for super::FlowKey6 {}
    unsafe impl aya::Pod for super::FlowValue {}
    unsafe impl aya::Pod for super::HostKey {}
    unsafe impl aya::Pod for super::HostValue {}
    unsafe impl aya::Pod for super::AllowKey {}
    unsafe impl aya::Pod for super::AddrKey {}
    unsafe impl aya::Pod for super::RateValue {}
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::HostCounters {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_keys_are_the_packet_words_and_come_back_from_the_cache() {
        let k4 = FlowKey4 {
            src: [192, 0, 2, 1],
            dst: [198, 18, 0, 1],
            src_port_be: 40000u16.to_be(),
            dst_port_be: 443u16.to_be(),
        };
        // Source, destination, then both ports, as on the wire.
        let w = k4.words();
        assert_eq!(w[0].to_ne_bytes(), [192, 0, 2, 1]);
        assert_eq!(w[1].to_ne_bytes(), [198, 18, 0, 1]);
        assert_eq!(w[2].to_ne_bytes(), [0x9c, 0x40, 0x01, 0xbb]);
        let mut e = FlowCacheEntry {
            family: 4,
            ..Default::default()
        };
        e.key[..3].copy_from_slice(&w);
        e.key[5] = 77; // stale words past an IPv4 key do not matter
        assert_eq!(e.key4(), Some(k4));
        assert_eq!(e.key6(), None);

        let k6 = FlowKey6 {
            src: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            dst: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            src_port_be: 40000u16.to_be(),
            dst_port_be: 443u16.to_be(),
        };
        let e = FlowCacheEntry {
            key: k6.words(),
            family: 6,
            ..Default::default()
        };
        assert_eq!(e.key6(), Some(k6));
        assert_eq!(e.key4(), None);
        assert_eq!(FlowCacheEntry::default().key4(), None, "empty slot");
    }

    #[test]
    fn flow_cache_slots_spread_nearby_flows() {
        // Consecutive client ports of one client: the usual shape of a
        // busy client's connections. They must not pile into a few slots.
        let mut used = [0u32; FLOW_CACHE_SLOTS as usize];
        let n = 4 * FLOW_CACHE_SLOTS;
        for port in 0..n {
            let w = FlowKey4 {
                src: [192, 0, 2, 1],
                dst: [198, 18, 0, 1],
                src_port_be: (port as u16).to_be(),
                dst_port_be: 443u16.to_be(),
            }
            .words();
            used[flow_cache_slot(&w) as usize] += 1;
        }
        let max = used.iter().max().copied().unwrap();
        let empty = used.iter().filter(|c| **c == 0).count();
        // 4 per slot on average; a uniform hash leaves ~2% of slots empty
        // and puts at most ~12 in one.
        assert!(max <= 16, "{max} flows in one slot");
        assert!(
            empty < FLOW_CACHE_SLOTS as usize / 20,
            "{empty} slots unused"
        );
    }

    #[test]
    fn stat_indices_are_dense_and_in_order() {
        for (i, s) in Stat::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i, "{s:?}");
        }
    }

    #[test]
    fn stats_has_a_slot_per_counter() {
        // The counters, then the two words of the clock cache.
        assert_eq!(core::mem::size_of::<Stats>(), 8 * (Stat::ALL.len() + 2));
    }

    #[test]
    fn host_keys_are_lowercase_and_padded() {
        let k = HostKey::new(b"Cafe.Example.COM").unwrap();
        assert_eq!(k.as_bytes(), b"cafe.example.com");
        assert_eq!(k.name[16], 0);
        assert!(HostKey::new(&[b'a'; 65]).is_none());
        assert!(HostKey::new(b"").is_none());
    }

    #[test]
    fn ipv4_is_mapped() {
        assert_eq!(ipv4_mapped([10, 0, 0, 1])[10..], [0xff, 0xff, 10, 0, 0, 1]);
    }
}
