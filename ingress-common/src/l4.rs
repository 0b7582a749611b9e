//! L4 steering of TCP and UDP services (ingress-nginx's `tcp-services` and
//! `udp-services`): the Maglev table size and the flow hash. The XDP
//! program and the agent's userspace relay both choose a new flow's
//! endpoint as `table[l4_flow_hash(words) % MAGLEV_SIZE]`, so a flow lands
//! on the same pod whichever path serves it, and on every edge node that
//! has the same endpoints (ECMP in front of several nodes).

/// Slots of a service's Maglev table: a prime (the permutations need it)
/// about 100 times the endpoints a service is expected to have, so each
/// endpoint's share stays within about 1% of the others'.
pub const MAGLEV_SIZE: u32 = 16_381;

pub const L4_PROTO_TCP: u8 = 6;
pub const L4_PROTO_UDP: u8 = 17;

/// The words a flow is hashed by: the client's address as it sits in the
/// packet (1 word for IPv4, 4 for IPv6, each read in native order), then
/// both ports in network order as one word (client port first, as in the
/// TCP/UDP header), then the protocol.
#[inline(always)]
pub fn l4_flow_words4(client: [u8; 4], ports_word: u32, proto: u8) -> [u32; 3] {
    [u32::from_ne_bytes(client), ports_word, u32::from(proto)]
}

/// As [`l4_flow_words4`], for an IPv6 client.
#[inline(always)]
pub fn l4_flow_words6(client: [u8; 16], ports_word: u32, proto: u8) -> [u32; 6] {
    let w = |i: usize| u32::from_ne_bytes([client[i], client[i + 1], client[i + 2], client[i + 3]]);
    [w(0), w(4), w(8), w(12), ports_word, u32::from(proto)]
}

/// The ports word of a flow: the first four bytes of its TCP or UDP
/// header (source port, destination port, network order) read as one
/// native-order word.
#[inline(always)]
pub fn l4_ports_word(client_port: u16, service_port: u16) -> u32 {
    let (c, s) = (client_port.to_be_bytes(), service_port.to_be_bytes());
    u32::from_ne_bytes([c[0], c[1], s[0], s[1]])
}

/// A flow's 32-bit hash: products of the words with odd constants, summed
/// (independent multiplies, cheap in BPF), then a full 64-bit finalizer so
/// every input bit reaches the top half that is kept.
#[inline(always)]
pub fn l4_flow_hash(words: &[u32]) -> u32 {
    const K: [u64; 6] = [
        0x9E37_79B9_7F4A_7C15,
        0xC2B2_AE3D_27D4_EB4F,
        0x1656_67B1_9E37_79F9,
        0x85EB_CA77_C2B2_AE63,
        0x27D4_EB2F_1656_67C5,
        0xFF51_AFD7_ED55_8CCD,
    ];
    let mut h = 0u64;
    for (w, k) in words.iter().zip(K) {
        h = h.wrapping_add(u64::from(*w).wrapping_mul(k));
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^= h >> 31;
    (h >> 32) as u32
}

/// The Maglev slot of a flow's words.
#[inline(always)]
pub fn l4_slot(words: &[u32]) -> u32 {
    l4_flow_hash(words) % MAGLEV_SIZE
}

use bytemuck::{Pod, Zeroable};

/// L4 services by node port and protocol ([`L4ServiceKey`] → [`L4ServiceValue`]).
pub const MAP_L4_SERVICES: &str = "L4_SERVICES";
/// Maglev tables ([`MaglevTable`]), two per service (the live one and the
/// one the agent fills next), indexed by `L4ServiceValue::table`.
pub const MAP_L4_MAGLEV: &str = "L4_MAGLEV";
/// Endpoints of each table: `table * MAX_L4_ENDPOINTS + index` → [`L4Endpoint`].
pub const MAP_L4_ENDPOINTS: &str = "L4_ENDPOINTS";
/// Steered IPv4 flows, client side (LRU, [`L4Key4`] → [`L4Flow`]).
pub const MAP_L4_CT4: &str = "L4_CT4";
/// Their reverse translation, pod side (LRU, [`L4Key4`] of the pod's
/// packets → [`L4Nat`]).
pub const MAP_L4_NAT4: &str = "L4_NAT4";
/// Per-CPU [`L4Counters`] per service id.
pub const MAP_L4_STATS: &str = "L4_STATS";
/// Per-CPU [`L4Counters`] per endpoint id.
pub const MAP_L4_EP_STATS: &str = "L4_EP_STATS";
/// One [`L4Config`] at index 0.
pub const MAP_L4_CONFIG: &str = "L4_CONFIG";

/// Services XDP steers at most (each holds two 32 KiB tables).
pub const MAX_L4_SERVICES: u32 = 64;
/// Endpoints per table at most.
pub const MAX_L4_ENDPOINTS: u32 = 1024;
/// Endpoint ids (counters) at most.
pub const MAX_L4_ENDPOINT_IDS: u32 = 8192;
/// Steered flows at most (LRU beyond).
pub const MAX_L4_FLOWS: u32 = 262_144;

/// LISTENERS bit: a TCP service steered in XDP listens on this port.
pub const F_LISTENER_L4_TCP: u32 = 1 << 2;
/// LISTENERS bit: a UDP service steered in XDP listens on this port.
pub const F_LISTENER_L4_UDP: u32 = 1 << 3;
/// LISTENERS bit: the port is in the SNAT range (replies from pods).
pub const F_LISTENER_L4_NAT: u32 = 1 << 4;

/// [`L4Flow::state`]: a TCP flow whose SYN went out, no reply yet.
pub const L4_STATE_NEW: u8 = 0;
/// Both directions seen (TCP), or a UDP flow.
pub const L4_STATE_OPEN: u8 = 1;
/// A FIN or RST went through: aged out soon.
pub const L4_STATE_CLOSING: u8 = 2;

/// The L4 settings.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct L4Config {
    /// The SNAT port range (host order); 0: no new flow is steered.
    pub nat_lo: u16,
    pub nat_hi: u16,
    pub _reserved: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct L4ServiceKey {
    pub port_be: u16,
    pub proto: u8,
    pub _pad: u8,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct L4ServiceValue {
    /// The service's id (its counters' index), below [`MAX_L4_SERVICES`].
    pub id: u32,
    /// The live table: an index of L4_MAGLEV.
    pub table: u32,
}

/// One Maglev table: endpoint indices (of the same table's endpoints).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct MaglevTable {
    pub slots: [u16; MAGLEV_SIZE as usize + 1],
}

/// A pod address of a table (IPv4 ones IPv4-mapped).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct L4Endpoint {
    pub addr: [u8; 16],
    pub port_be: u16,
    /// 4 or 6 (0: the end of the list). XDP steers flows to IPv4 endpoints;
    /// a flow that hashes to an IPv6 one is left to the relay.
    pub family: u8,
    pub _pad: u8,
    /// Index of its counters in L4_EP_STATS.
    pub stats_id: u32,
}

/// An IPv4 flow as its packets carry it (source, destination, ports in
/// network order, protocol).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct L4Key4 {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub src_port_be: u16,
    pub dst_port_be: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}

/// A steered flow, client side: where its packets go (addresses of either
/// family in 16 bytes, IPv4 ones mapped).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct L4Flow {
    pub pod: [u8; 16],
    pub pod_port_be: u16,
    /// The node port the flow is translated from (SNAT).
    pub nat_port_be: u16,
    /// Next hop towards the pod: interface and MAC addresses.
    pub ifindex: u32,
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
    pub service_id: u32,
    pub endpoint_id: u32,
    pub _pad0: u32,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    pub state: u8,
    pub _pad: [u8; 7],
}

/// A steered flow, pod side: the client its replies go back to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct L4Nat {
    pub client: [u8; 16],
    pub client_port_be: u16,
    /// The service's node port (the replies' source port).
    pub service_port_be: u16,
    /// Where the client's packets came in, and the MACs they carried.
    pub ifindex: u32,
    pub client_mac: [u8; 6],
    pub node_mac: [u8; 6],
    pub service_id: u32,
    pub endpoint_id: u32,
    pub _pad0: u32,
    pub last_seen_ns: u64,
    pub state: u8,
    pub _pad: [u8; 7],
}

/// Per-CPU counters of a service or an endpoint.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct L4Counters {
    /// Client → pod.
    pub packets_in: u64,
    pub bytes_in: u64,
    /// Pod → client.
    pub packets_out: u64,
    pub bytes_out: u64,
    /// New flows steered.
    pub flows: u64,
    /// New flows left to the kernel (the relay): no route or neighbour to
    /// the pod, no free SNAT port.
    pub fallbacks: u64,
}

const _: () = assert!(core::mem::size_of::<L4ServiceKey>() == 4);
const _: () = assert!(core::mem::size_of::<L4Key4>() == 16);
const _: () = assert!(core::mem::size_of::<L4Endpoint>() == 24);
const _: () = assert!(core::mem::size_of::<L4Flow>() == 72);
const _: () = assert!(core::mem::size_of::<L4Nat>() == 64);
const _: () = assert!(core::mem::size_of::<MaglevTable>().is_multiple_of(4));

#[cfg(feature = "user")]
mod user {
    // SAFETY: repr(C) + bytemuck::Pod, as in the crate root.
    unsafe impl aya::Pod for super::L4Config {}
    unsafe impl aya::Pod for super::L4ServiceKey {}
    unsafe impl aya::Pod for super::L4ServiceValue {}
    unsafe impl aya::Pod for super::MaglevTable {}
    unsafe impl aya::Pod for super::L4Endpoint {}
    unsafe impl aya::Pod for super::L4Key4 {}
    unsafe impl aya::Pod for super::L4Flow {}
    unsafe impl aya::Pod for super::L4Nat {}
    unsafe impl aya::Pod for super::L4Counters {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_word_is_the_header_bytes() {
        let w = l4_ports_word(40000, 5432);
        assert_eq!(w.to_ne_bytes(), [0x9c, 0x40, 0x15, 0x38]);
    }

    #[test]
    fn nearby_client_ports_spread_over_the_slots() {
        // One client's consecutive ports: 4 flows per slot on average.
        let n = 4 * MAGLEV_SIZE;
        let mut used = [0u8; MAGLEV_SIZE as usize];
        for port in 0..n {
            let words = l4_flow_words4([192, 0, 2, 1], l4_ports_word(port as u16, 9000), 6);
            let slot = l4_slot(&words) as usize;
            used[slot] = used[slot].saturating_add(1);
        }
        let empty = used.iter().filter(|c| **c == 0).count();
        let max = used.iter().max().copied().unwrap();
        // Poisson(4): ~1.8% empty, max around 14.
        assert!(empty < MAGLEV_SIZE as usize / 25, "{empty} slots unused");
        assert!(max <= 18, "{max} flows in one slot");
    }

    #[test]
    fn every_word_matters() {
        let base = l4_flow_words6(
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            7,
            17,
        );
        for i in 0..base.len() {
            let mut w = base;
            w[i] ^= 1;
            assert_ne!(l4_flow_hash(&w), l4_flow_hash(&base), "word {i}");
        }
    }
}
