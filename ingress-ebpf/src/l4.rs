//! L4 steering of the TCP and UDP services (ingress-nginx's `tcp-services`
//! and `udp-services`), untagged IPv4 without options (IPv6 goes to the
//! relay for now):
//! - client → node port of a service: the flow's entry in L4_CT4, or for
//!   a new flow (a TCP SYN, any UDP datagram) the endpoint of its Maglev
//!   slot, a node port of the SNAT range (L4_NAT4 holds the way back) and
//!   the next hop from `bpf_fib_lookup`; the packet leaves rewritten
//!   (source: the node address it was sent to and the SNAT port;
//!   destination: the pod), checksums updated incrementally, by XDP_TX or a
//!   redirect;
//! - pod → node SNAT port: translated back (source: the service's node
//!   address and port; destination: the client) and sent out where the
//!   client's packets came in, to the MAC they came from.
//!
//! Whatever cannot be steered (no route or neighbour yet, no free SNAT
//! port, an endpoint of the other family, TTL spent, a TCP segment of a
//! flow not tracked) passes untouched: the kernel gives it to the agent's
//! relay on the same port.

// Map keys and values are passed by reference: by value (clippy's
// suggestion) would copy them onto the 512-byte BPF stack first.
#![allow(clippy::needless_borrows_for_generic_args)]

use aya_ebpf::{
    bindings::{BPF_NOEXIST, bpf_fib_lookup as FibParams, xdp_action},
    helpers::generated::{bpf_fib_lookup, bpf_redirect},
    maps::LruHashMap,
    programs::XdpContext,
};
use ingress_common::{
    F_LISTENER_L4_NAT, F_LISTENER_L4_TCP, F_LISTENER_L4_UDP, L4_PROTO_TCP, L4_PROTO_UDP,
    L4_STATE_CLOSING, L4_STATE_NEW, L4_STATE_OPEN, L4Flow, L4Key4, L4Nat, L4ServiceKey,
    MAGLEV_SIZE, MAX_L4_ENDPOINTS, Stats, ipv4_mapped, l4_flow_hash, l4_flow_words4,
};

use crate::{
    maps,
    parse::{
        ETH_HLEN, ETH_P_IPV4, IPV4_HLEN, ParseError, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, ptr_at,
    },
};

/// What the program learnt of a TCP or UDP packet to an L4 port.
pub struct Packet {
    pub proto: u8,
    /// TCP flags (0 for UDP).
    pub flags: u8,
    /// Bytes after the IP header.
    pub l4_len: usize,
}

/// What differs between address families: the flow key, its maps, the
/// IP header's rewrite. IPv4 (`V4`) is the one implemented; IPv6 is to be
/// the second, once the L4 path runs as a program of its own with a fresh
/// stack (its keys do not fit the 512 bytes the call chain shares today).
pub trait Family {
    type Key: Copy + 'static;
    /// 4 or 6, as `L4Endpoint::family` says.
    const FAMILY: u8;
    /// Where the transport header starts.
    const L4_OFF: usize;
    fn key(ctx: &XdpContext, proto: u8) -> Result<Self::Key, ParseError>;
    fn ct() -> &'static LruHashMap<Self::Key, L4Flow>;
    fn nat() -> &'static LruHashMap<Self::Key, L4Nat>;
    /// Source, destination (16 bytes, IPv4-mapped), ports, protocol.
    fn parts(k: &Self::Key) -> ([u8; 16], [u8; 16], u16, u16, u8);
    fn make(src: &[u8; 16], dst: &[u8; 16], sport_be: u16, dport_be: u16, proto: u8) -> Self::Key;
    /// The flow's Maglev hash (the relay's, from the same words).
    fn hash(k: &Self::Key) -> u32;
    fn fib(fib: &mut FibParams, src: &[u8; 16], dst: &[u8; 16]);
    /// The packet, checked to hold Ethernet, IP and 8 bytes of transport
    /// header (20 for TCP).
    fn headers(ctx: &XdpContext, tcp: bool) -> Result<*mut u8, ParseError>;
    /// Addresses, TTL/hop limit and the IP checksum; fills the words of the
    /// pseudo-header addresses before and after (`WORDS` of them). False
    /// when the TTL is spent.
    fn rewrite_ip(ip: *mut u8, dst: &[u8; 16], sc: &mut L4Scratch) -> bool;
    /// Address words in the pseudo-header.
    const WORDS: usize;
}

/// SNAT ports tried for a new flow (from its hash, a prime stride apart):
/// with the range 80% taken, 0.8^16 ≈ 3% of new flows find none and go
/// to the relay.
const NAT_TRIES: u32 = 16;

/// Checksummed 16-bit words: up to 16 of addresses, then the two ports.
type Words = [u16; 18];

/// Per-CPU room for what would not fit on the 512-byte BPF stack beside
/// the rest of the program: the next-hop lookup, a new flow's entries and
/// the checksum words.
#[repr(C)]
pub struct L4Scratch {
    pub fib: FibParams,
    pub flow: L4Flow,
    pub nat: L4Nat,
    pub old: Words,
    pub new: Words,
}

#[inline(always)]
fn scratch() -> Option<&'static mut L4Scratch> {
    // SAFETY: this CPU's slot; nothing else runs on it meanwhile.
    maps::L4_SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

pub struct V4;

#[inline(always)]
fn words<const N: usize>(a: &[u8], out: &mut Words, at: usize) {
    let mut i = 0;
    while i < N {
        out[at + i] = u16::from_ne_bytes([a[2 * i], a[2 * i + 1]]);
        i += 1;
    }
}

#[inline(always)]
fn low4(a: &[u8; 16]) -> [u8; 4] {
    [a[12], a[13], a[14], a[15]]
}

#[inline(always)]
fn ports_word(sport_be: u16, dport_be: u16) -> u32 {
    let (s, d) = (sport_be.to_ne_bytes(), dport_be.to_ne_bytes());
    u32::from_ne_bytes([s[0], s[1], d[0], d[1]])
}

impl Family for V4 {
    type Key = L4Key4;
    const FAMILY: u8 = 4;
    const L4_OFF: usize = ETH_HLEN + IPV4_HLEN;
    const WORDS: usize = 4;

    #[inline(always)]
    fn key(ctx: &XdpContext, proto: u8) -> Result<L4Key4, ParseError> {
        let p = ptr_at::<{ ETH_HLEN + IPV4_HLEN + 4 }>(ctx, 0)?;
        // SAFETY: checked by ptr_at.
        unsafe {
            Ok(L4Key4 {
                src: core::ptr::read_unaligned(p.add(ETH_HLEN + 12).cast::<[u8; 4]>()),
                dst: core::ptr::read_unaligned(p.add(ETH_HLEN + 16).cast::<[u8; 4]>()),
                src_port_be: read16(p, Self::L4_OFF),
                dst_port_be: read16(p, Self::L4_OFF + 2),
                proto,
                _pad: [0; 3],
            })
        }
    }
    #[inline(always)]
    fn ct() -> &'static LruHashMap<L4Key4, L4Flow> {
        &maps::L4_CT4
    }
    #[inline(always)]
    fn nat() -> &'static LruHashMap<L4Key4, L4Nat> {
        &maps::L4_NAT4
    }
    #[inline(always)]
    fn parts(k: &L4Key4) -> ([u8; 16], [u8; 16], u16, u16, u8) {
        (
            ipv4_mapped(k.src),
            ipv4_mapped(k.dst),
            k.src_port_be,
            k.dst_port_be,
            k.proto,
        )
    }
    #[inline(always)]
    fn make(src: &[u8; 16], dst: &[u8; 16], sport_be: u16, dport_be: u16, proto: u8) -> L4Key4 {
        L4Key4 {
            src: low4(src),
            dst: low4(dst),
            src_port_be: sport_be,
            dst_port_be: dport_be,
            proto,
            _pad: [0; 3],
        }
    }
    #[inline(always)]
    fn hash(k: &L4Key4) -> u32 {
        l4_flow_hash(&l4_flow_words4(
            k.src,
            ports_word(k.src_port_be, k.dst_port_be),
            k.proto,
        ))
    }
    #[inline(always)]
    fn fib(fib: &mut FibParams, src: &[u8; 16], dst: &[u8; 16]) {
        fib.family = 2; // AF_INET
        fib.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(low4(src));
        fib.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(low4(dst));
    }
    #[inline(always)]
    fn headers(ctx: &XdpContext, tcp: bool) -> Result<*mut u8, ParseError> {
        Ok(if tcp {
            ptr_at::<{ ETH_HLEN + IPV4_HLEN + 20 }>(ctx, 0)?
        } else {
            ptr_at::<{ ETH_HLEN + IPV4_HLEN + 8 }>(ctx, 0)?
        } as *mut u8)
    }
    #[inline(always)]
    fn rewrite_ip(ip: *mut u8, dst: &[u8; 16], sc: &mut L4Scratch) -> bool {
        // SAFETY: the caller checked the IPv4 header (20 bytes) is there.
        unsafe {
            let ttl = *ip.add(8);
            if ttl <= 1 {
                return false;
            }
            let old_src: [u8; 4] = core::ptr::read_unaligned(ip.add(12).cast());
            let old_dst: [u8; 4] = core::ptr::read_unaligned(ip.add(16).cast());
            let dst = low4(dst);
            // Source := the old destination (the node), destination := dst.
            words::<2>(&old_src, &mut sc.old, 0);
            words::<2>(&old_dst, &mut sc.old, 2);
            words::<2>(&old_dst, &mut sc.new, 0);
            words::<2>(&dst, &mut sc.new, 2);
            // The IP header's checksum: the addresses and the TTL's word
            // (in the ports' places, which the transport fills after).
            sc.old[4] = read16(ip, 8);
            *ip.add(8) = ttl - 1;
            sc.new[4] = read16(ip, 8);
            let check = read16(ip, 10);
            write16(ip, 10, csum_replace(check, &sc.old, &sc.new, 5));
            core::ptr::write_unaligned(ip.add(12).cast::<[u8; 4]>(), old_dst);
            core::ptr::write_unaligned(ip.add(16).cast::<[u8; 4]>(), dst);
        }
        true
    }
}

/// A packet to a port with an `F_LISTENER_L4_*` bit: steered (the action),
/// or `None` to go on as any other packet.
#[inline(always)]
pub fn steer<F: Family>(
    ctx: &XdpContext,
    stats: &mut Stats,
    p: &Packet,
    port_flags: u32,
) -> Option<u32> {
    let want = if p.proto == L4_PROTO_TCP {
        F_LISTENER_L4_TCP
    } else {
        F_LISTENER_L4_UDP
    };
    let r = if port_flags & want != 0 {
        forward::<F>(ctx, stats, p)
    } else if port_flags & F_LISTENER_L4_NAT != 0 {
        reply::<F>(ctx, stats, p)
    } else {
        return None;
    };
    r.ok().flatten()
}

/// The plain UDP packet (IPv4 without options) to an L4 port, if this is
/// one: its port flags and what `steer` needs.
#[inline(always)]
pub fn plain_udp(ctx: &XdpContext) -> Option<(Packet, u32)> {
    let p = ptr_at::<{ ETH_HLEN + IPV4_HLEN + 4 }>(ctx, 0).ok()?;
    // SAFETY: ptr_at checked every byte read here.
    let (ether, ver, frag, proto, total, dport) = unsafe {
        (
            u16::from_be(read16(p, 12)),
            *p.add(ETH_HLEN),
            u16::from_be(read16(p, ETH_HLEN + 6)),
            *p.add(ETH_HLEN + 9),
            u16::from_be(read16(p, ETH_HLEN + 2)),
            u16::from_be(read16(p, ETH_HLEN + IPV4_HLEN + 2)),
        )
    };
    if ether != ETH_P_IPV4 || ver != 0x45 || frag & 0x3FFF != 0 || proto != L4_PROTO_UDP {
        return None;
    }
    let flags = maps::listener(dport)?;
    if flags & (F_LISTENER_L4_UDP | F_LISTENER_L4_NAT) == 0 {
        return None;
    }
    let l4_len = usize::from(total).checked_sub(IPV4_HLEN)?;
    Some((
        Packet {
            proto: L4_PROTO_UDP,
            flags: 0,
            l4_len,
        },
        flags,
    ))
}

#[inline(always)]
unsafe fn read16(p: *const u8, off: usize) -> u16 {
    // SAFETY: the caller checked `off + 2` against the packet's end.
    unsafe { core::ptr::read_unaligned(p.add(off).cast::<u16>()) }
}

#[inline(always)]
unsafe fn write16(p: *mut u8, off: usize, v: u16) {
    // SAFETY: as read16.
    unsafe { core::ptr::write_unaligned(p.add(off).cast::<u16>(), v) }
}

/// Client → node port.
#[inline(always)]
fn forward<F: Family>(
    ctx: &XdpContext,
    stats: &mut Stats,
    p: &Packet,
) -> Result<Option<u32>, ParseError> {
    let key = F::key(ctx, p.proto)?;
    let now = maps::now(stats);
    let syn = p.proto == L4_PROTO_TCP && p.flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
    let flow = match F::ct().get_ptr_mut(&key) {
        // SAFETY: from a successful lookup.
        Some(f) if !(syn && unsafe { (*f).state } == L4_STATE_CLOSING) => f,
        _ if p.proto == L4_PROTO_TCP && !syn => return Ok(None),
        _ => {
            let f = new_flow::<F>(ctx, &key, now);
            if f.is_null() {
                return Ok(None);
            }
            f
        }
    };
    // SAFETY: from a successful lookup (or the insert just made); other
    // CPUs' updates only make the counters approximate.
    let flow = unsafe { &mut *flow };
    if p.flags & (TCP_FIN | TCP_RST) != 0 {
        flow.state = L4_STATE_CLOSING;
    }
    flow.last_seen_ns = now;
    if !rewrite::<F>(
        ctx,
        p.proto,
        &flow.pod,
        flow.nat_port_be,
        flow.pod_port_be,
        &flow.smac,
        &flow.dmac,
    )? {
        return Ok(None);
    }
    count(flow.service_id, flow.endpoint_id, p.l4_len, true);
    Ok(Some(transmit(ctx, flow.ifindex)))
}

/// A new flow: its endpoint, SNAT port and next hop, entered in the flow
/// maps; null (counted) when it is left to the kernel. A function of its
/// own in the program (a BPF subprogram): its locals get a frame of their
/// own instead of adding to the packet path's, which the 512-byte stack
/// would not hold.
#[inline(never)]
fn new_flow<F: Family>(ctx: &XdpContext, key: &F::Key, now: u64) -> *mut L4Flow {
    let none = core::ptr::null_mut();
    let (client, node, client_port_be, service_port_be, proto) = F::parts(key);
    let skey = L4ServiceKey {
        port_be: service_port_be,
        proto,
        _pad: 0,
    };
    // SAFETY: plain values copied out at once.
    let Some(service) = (unsafe { maps::L4_SERVICES.get(&skey) }).copied() else {
        return none;
    };
    let hash = F::hash(key);
    let Some(table) = maps::L4_MAGLEV.get_ptr(service.table) else {
        return none;
    };
    // opaque: LLVM knows the remainder is in range and would drop the
    // check; the verifier does not, and needs it.
    let slot = crate::parse::opaque((hash % MAGLEV_SIZE) as usize);
    if slot >= MAGLEV_SIZE as usize {
        return none;
    }
    // SAFETY: from a successful lookup; slot < MAGLEV_SIZE < the slots' length.
    let index = u32::from(unsafe { *(*table).slots.as_ptr().add(slot) });
    if index >= MAX_L4_ENDPOINTS {
        return none;
    }
    let Some(ep) = maps::L4_ENDPOINTS
        .get(service.table * MAX_L4_ENDPOINTS + index)
        .copied()
    else {
        return none;
    };
    if ep.family != F::FAMILY {
        // The pod is of the other family: the relay bridges the two.
        maps::count_l4_fallback(service.id);
        return none;
    }
    let Some(config) = maps::L4_CONFIG.get(0) else {
        return none;
    };
    let (lo, hi) = (config.nat_lo, config.nat_hi);
    if lo == 0 || hi < lo {
        return none;
    }
    let Some(sc) = scratch() else {
        return none;
    };
    // The next hop to the pod, from the node address the client used.
    // SAFETY: a plain C struct; zero is a valid value.
    // In place: a zeroed value would be built on the stack first.
    unsafe { core::ptr::write_bytes(&raw mut sc.fib, 0, 1) };
    F::fib(&mut sc.fib, &node, &ep.addr);
    sc.fib.l4_protocol = proto;
    sc.fib.ifindex = ctx.ingress_ifindex() as u32;
    // SAFETY: the helper reads and writes the struct only, of the size given.
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.ctx.cast(),
            &mut sc.fib,
            core::mem::size_of::<FibParams>() as i32,
            0,
        )
    };
    if rc != 0 {
        // No route, no neighbour yet (the relay's connection will resolve
        // it), forwarding off: the kernel takes this flow.
        maps::count_l4_fallback(service.id);
        return none;
    }
    // Where the client's packets come from, for the way back.
    let Ok(eth) = ptr_at::<ETH_HLEN>(ctx, 0) else {
        return none;
    };
    // SAFETY: checked by ptr_at.
    let (client_mac, node_mac) = unsafe {
        (
            core::ptr::read_unaligned(eth.add(6).cast::<[u8; 6]>()),
            core::ptr::read_unaligned(eth.cast::<[u8; 6]>()),
        )
    };
    let nat = &mut sc.nat;
    nat.client = client;
    nat.client_port_be = client_port_be;
    nat.service_port_be = service_port_be;
    nat.ifindex = ctx.ingress_ifindex() as u32;
    nat.client_mac = client_mac;
    nat.node_mac = node_mac;
    nat.service_id = service.id;
    nat.endpoint_id = ep.stats_id;
    nat._pad0 = 0;
    nat.last_seen_ns = now;
    nat.state = L4_STATE_NEW;
    nat._pad = [0; 7];
    let span = u32::from(hi - lo) + 1;
    let start = hash.rotate_left(16);
    let mut nat_port = 0u16;
    let mut nat_key = F::make(&ep.addr, &node, ep.port_be, 0, proto);
    for i in 0..NAT_TRIES {
        let port = lo + (start.wrapping_add(i.wrapping_mul(7919)) % span) as u16;
        nat_key = F::make(&ep.addr, &node, ep.port_be, port.to_be(), proto);
        if F::nat()
            .insert(&nat_key, &sc.nat, BPF_NOEXIST as u64)
            .is_ok()
        {
            nat_port = port;
            break;
        }
    }
    if nat_port == 0 {
        maps::count_l4_fallback(service.id);
        return none;
    }
    let flow = &mut sc.flow;
    flow.pod = ep.addr;
    flow.pod_port_be = ep.port_be;
    flow.nat_port_be = nat_port.to_be();
    flow.ifindex = sc.fib.ifindex;
    flow.dmac = sc.fib.dmac;
    flow.smac = sc.fib.smac;
    flow.service_id = service.id;
    flow.endpoint_id = ep.stats_id;
    flow._pad0 = 0;
    flow.first_seen_ns = now;
    flow.last_seen_ns = now;
    flow.state = if proto == L4_PROTO_UDP {
        L4_STATE_OPEN
    } else {
        L4_STATE_NEW
    };
    flow._pad = [0; 7];
    if F::ct().insert(key, &sc.flow, 0).is_err() {
        let _ = F::nat().remove(&nat_key);
        maps::count_l4_fallback(service.id);
        return none;
    }
    maps::count_l4_flow(service.id, ep.stats_id);
    F::ct().get_ptr_mut(key).unwrap_or(none)
}

/// Pod → node SNAT port.
#[inline(always)]
fn reply<F: Family>(
    ctx: &XdpContext,
    stats: &mut Stats,
    p: &Packet,
) -> Result<Option<u32>, ParseError> {
    let key = F::key(ctx, p.proto)?;
    let Some(nat) = F::nat().get_ptr_mut(&key) else {
        return Ok(None);
    };
    // SAFETY: from a successful lookup.
    let nat = unsafe { &mut *nat };
    nat.last_seen_ns = maps::now(stats);
    if p.flags & (TCP_FIN | TCP_RST) != 0 {
        nat.state = L4_STATE_CLOSING;
    } else if nat.state == L4_STATE_NEW {
        nat.state = L4_STATE_OPEN;
    }
    if !rewrite::<F>(
        ctx,
        p.proto,
        &nat.client,
        nat.service_port_be,
        nat.client_port_be,
        &nat.node_mac,
        &nat.client_mac,
    )? {
        return Ok(None);
    }
    count(nat.service_id, nat.endpoint_id, p.l4_len, false);
    Ok(Some(transmit(ctx, nat.ifindex)))
}

#[inline(always)]
fn count(service: u32, endpoint: u32, bytes: usize, inbound: bool) {
    for c in [maps::l4_stats(service), maps::l4_ep_stats(endpoint)]
        .into_iter()
        .flatten()
    {
        if inbound {
            c.packets_in += 1;
            c.bytes_in += bytes as u64;
        } else {
            c.packets_out += 1;
            c.bytes_out += bytes as u64;
        }
    }
}

/// Out of the interface it came in on (XDP_TX), or redirected to another.
#[inline(always)]
fn transmit(ctx: &XdpContext, ifindex: u32) -> u32 {
    if ifindex == ctx.ingress_ifindex() as u32 {
        xdp_action::XDP_TX
    } else {
        // SAFETY: the helper only looks the device up.
        unsafe { bpf_redirect(ifindex, 0) as u32 }
    }
}

/// One's complement sum of `new` minus `old` into a checksum (RFC 1624,
/// eqn. 3), on 16-bit words in memory order (the sum does not depend on
/// byte order as long as every word is read the same way); the first `n`
/// words count.
#[inline(always)]
fn csum_replace(check: u16, old: &Words, new: &Words, n: usize) -> u16 {
    let mut sum = u32::from(!check);
    for i in 0..old.len() {
        if i < n {
            sum += u32::from(!old[i]) + u32::from(new[i]);
        }
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Rewrites the packet for its next hop: source address := the old
/// destination (the node), destination := `dst`, ports := (`sport_be`,
/// `dport_be`), TTL/hop limit - 1, MACs; the IP (IPv4) and TCP/UDP
/// checksums updated for exactly what changed. False (untouched) when the
/// TTL is spent.
#[inline(always)]
fn rewrite<F: Family>(
    ctx: &XdpContext,
    proto: u8,
    dst: &[u8; 16],
    sport_be: u16,
    dport_be: u16,
    smac: &[u8; 6],
    dmac: &[u8; 6],
) -> Result<bool, ParseError> {
    let tcp = proto == L4_PROTO_TCP;
    let p = F::headers(ctx, tcp)?;
    let Some(sc) = scratch() else {
        return Ok(false);
    };
    // SAFETY: `headers` checked the IP header and the transport header's
    // first 8 bytes (20 for TCP) at the family's offset.
    unsafe {
        if !F::rewrite_ip(p.add(ETH_HLEN), dst, sc) {
            return Ok(false);
        }
        let l4 = p.add(F::L4_OFF);
        let n = F::WORDS;
        sc.old[n] = read16(l4, 0);
        sc.old[n + 1] = read16(l4, 2);
        sc.new[n] = sport_be;
        sc.new[n + 1] = dport_be;
        if tcp {
            let check = read16(l4, 16);
            write16(l4, 16, csum_replace(check, &sc.old, &sc.new, n + 2));
        } else {
            let check = read16(l4, 6);
            // Zero: the sender computed no checksum (IPv4 allows it).
            if check != 0 {
                let c = csum_replace(check, &sc.old, &sc.new, n + 2);
                write16(l4, 6, if c == 0 { 0xffff } else { c });
            }
        }
        write16(l4, 0, sport_be);
        write16(l4, 2, dport_be);
    }
    // SAFETY: the Ethernet header was checked with the rest.
    unsafe {
        core::ptr::write_unaligned(p.cast::<[u8; 6]>(), *dmac);
        core::ptr::write_unaligned(p.add(6).cast::<[u8; 6]>(), *smac);
    }
    Ok(true)
}
