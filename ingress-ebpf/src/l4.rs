//! L4 steering of the TCP and UDP services (ingress-nginx's `tcp-services`
//! and `udp-services`), untagged IPv4 without options:
//! - client → node port of a service: the flow's entry in L4_CT4, or for a
//!   new flow (a TCP SYN, any UDP datagram) the endpoint of its Maglev slot,
//!   a node port of the SNAT range (L4_NAT4 holds the way back) and the next
//!   hop from `bpf_fib_lookup`; the packet leaves rewritten (source: the
//!   node address it was sent to and the SNAT port; destination: the pod),
//!   checksums updated incrementally, by XDP_TX or a redirect;
//! - pod → node SNAT port: translated back (source: the service's node
//!   address and port; destination: the client) and sent out where the
//!   client's packets came in, to the MAC they came from.
//!
//! Whatever cannot be steered (no route or neighbour yet, no free SNAT
//! port, TTL spent, a TCP segment of a flow not in L4_CT4) passes
//! untouched: the kernel gives it to the agent's relay on the same port.

// Map values are inserted by reference: by value (clippy's suggestion)
// would copy them onto the 512-byte BPF stack first.
#![allow(clippy::needless_borrows_for_generic_args)]

use aya_ebpf::{
    bindings::{BPF_NOEXIST, bpf_fib_lookup as FibParams, xdp_action},
    helpers::generated::{bpf_fib_lookup, bpf_redirect},
    programs::XdpContext,
};
use ingress_common::{
    F_LISTENER_L4_NAT, F_LISTENER_L4_TCP, F_LISTENER_L4_UDP, L4_PROTO_TCP, L4_PROTO_UDP,
    L4_STATE_CLOSING, L4_STATE_NEW, L4_STATE_OPEN, L4Flow, L4Key4, L4Nat, L4ServiceKey,
    MAGLEV_SIZE, MAX_L4_ENDPOINTS, Stats, l4_flow_hash, l4_flow_words4,
};

use crate::{
    maps,
    parse::{ETH_HLEN, IPV4_HLEN, ParseError, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, ptr_at},
};

const AF_INET: u8 = 2;
/// Where the transport header starts in the packets handled here.
const L4_OFF: usize = ETH_HLEN + IPV4_HLEN;

/// What the program learnt of a TCP or UDP packet to an L4 port.
pub struct Packet {
    pub proto: u8,
    /// TCP flags (0 for UDP).
    pub flags: u8,
    /// Bytes after the IP header.
    pub l4_len: usize,
}

/// A packet to a port with an `F_LISTENER_L4_*` bit: steered (the action),
/// or `None` to go on as any other packet.
#[inline(always)]
pub fn steer(ctx: &XdpContext, stats: &mut Stats, p: &Packet, port_flags: u32) -> Option<u32> {
    let want = if p.proto == L4_PROTO_TCP {
        F_LISTENER_L4_TCP
    } else {
        F_LISTENER_L4_UDP
    };
    let r = if port_flags & want != 0 {
        forward(ctx, stats, p)
    } else if port_flags & F_LISTENER_L4_NAT != 0 {
        reply(ctx, stats, p)
    } else {
        return None;
    };
    r.ok().flatten()
}

/// The plain IPv4 UDP packet to an L4 port, if this is one: its port flags
/// and what `steer` needs.
#[inline(always)]
pub fn plain_udp(ctx: &XdpContext) -> Option<(Packet, u32)> {
    let p = ptr_at::<{ L4_OFF + 8 }>(ctx, 0).ok()?;
    // SAFETY: ptr_at checked every byte read here.
    let (ether, ver, frag, proto, total, dport) = unsafe {
        (
            u16::from_be(read16(p, 12)),
            *p.add(ETH_HLEN),
            u16::from_be(read16(p, ETH_HLEN + 6)),
            *p.add(ETH_HLEN + 9),
            u16::from_be(read16(p, ETH_HLEN + 2)),
            u16::from_be(read16(p, L4_OFF + 2)),
        )
    };
    if ether != crate::parse::ETH_P_IPV4
        || ver != 0x45
        || frag & 0x3FFF != 0
        || proto != L4_PROTO_UDP
    {
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

/// The packet's addresses and ports, as the flow maps key them.
#[inline(always)]
fn key_of(ctx: &XdpContext, proto: u8) -> Result<L4Key4, ParseError> {
    let p = ptr_at::<{ L4_OFF + 4 }>(ctx, 0)?;
    // SAFETY: checked by ptr_at.
    unsafe {
        Ok(L4Key4 {
            src: core::ptr::read_unaligned(p.add(ETH_HLEN + 12).cast::<[u8; 4]>()),
            dst: core::ptr::read_unaligned(p.add(ETH_HLEN + 16).cast::<[u8; 4]>()),
            src_port_be: read16(p, L4_OFF),
            dst_port_be: read16(p, L4_OFF + 2),
            proto,
            _pad: [0; 3],
        })
    }
}

/// Client → node port.
#[inline(always)]
fn forward(ctx: &XdpContext, stats: &mut Stats, p: &Packet) -> Result<Option<u32>, ParseError> {
    let key = key_of(ctx, p.proto)?;
    let now = maps::now(stats);
    let syn = p.proto == L4_PROTO_TCP && p.flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
    let flow = match maps::L4_CT4.get_ptr_mut(key) {
        // SAFETY: from a successful lookup.
        Some(f) if !(syn && unsafe { (*f).state } == L4_STATE_CLOSING) => f,
        _ if p.proto == L4_PROTO_TCP && !syn => return Ok(None),
        _ => match new_flow(ctx, stats, &key, now)? {
            Some(f) => f,
            None => return Ok(None),
        },
    };
    // SAFETY: from a successful lookup (or the insert just made); other
    // CPUs' updates only make the counters approximate.
    let flow = unsafe { &mut *flow };
    if p.flags & (TCP_FIN | TCP_RST) != 0 {
        flow.state = L4_STATE_CLOSING;
    }
    flow.last_seen_ns = now;
    if !rewrite(
        ctx,
        p.proto,
        flow.pod,
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

/// A new flow: its endpoint, SNAT port and next hop, entered in L4_CT4 and
/// L4_NAT4; `None` (counted) when it is left to the kernel.
#[inline(always)]
fn new_flow(
    ctx: &XdpContext,
    _stats: &mut Stats,
    key: &L4Key4,
    now: u64,
) -> Result<Option<*mut L4Flow>, ParseError> {
    let skey = L4ServiceKey {
        port_be: key.dst_port_be,
        proto: key.proto,
        _pad: 0,
    };
    // SAFETY: plain values copied out at once.
    let Some(service) = (unsafe { maps::L4_SERVICES.get(skey) }).copied() else {
        return Ok(None);
    };
    let ports = u32::from_ne_bytes({
        let (s, d) = (key.src_port_be.to_ne_bytes(), key.dst_port_be.to_ne_bytes());
        [s[0], s[1], d[0], d[1]]
    });
    let hash = l4_flow_hash(&l4_flow_words4(key.src, ports, key.proto));
    let slot = hash % MAGLEV_SIZE;
    let Some(table) = maps::L4_MAGLEV.get_ptr(service.table) else {
        return Ok(None);
    };
    // opaque: LLVM knows the remainder is in range and would drop the
    // check; the verifier does not, and needs it.
    let slot = crate::parse::opaque(slot as usize);
    if slot >= MAGLEV_SIZE as usize {
        return Ok(None);
    }
    // SAFETY: from a successful lookup; slot < MAGLEV_SIZE < the slots' length.
    let index = u32::from(unsafe { *(*table).slots.as_ptr().add(slot) });
    if index >= MAX_L4_ENDPOINTS {
        return Ok(None);
    }
    let Some(ep) = maps::L4_ENDPOINTS
        .get(service.table * MAX_L4_ENDPOINTS + index)
        .copied()
    else {
        return Ok(None);
    };
    if ep.family != 4 {
        return Ok(None);
    }
    let Some(config) = maps::L4_CONFIG.get(0) else {
        return Ok(None);
    };
    let (lo, hi) = (config.nat_lo, config.nat_hi);
    if lo == 0 || hi < lo {
        return Ok(None);
    }
    // The next hop to the pod, from the node address the client used.
    // SAFETY: a plain C struct; zero is a valid value.
    let mut fib: FibParams = unsafe { core::mem::zeroed() };
    fib.family = AF_INET;
    fib.l4_protocol = key.proto;
    fib.ifindex = ctx.ingress_ifindex() as u32;
    fib.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(key.dst);
    fib.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(ep.addr);
    // SAFETY: the helper reads and writes `fib` only, of the size given.
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.ctx.cast(),
            &mut fib,
            core::mem::size_of::<FibParams>() as i32,
            0,
        )
    };
    if rc != 0 {
        // No route, no neighbour yet (the relay's connection will resolve
        // it), forwarding off: the kernel takes this flow.
        maps::count_l4_fallback(service.id);
        return Ok(None);
    }
    // Where the client's packets come from, for the way back.
    let eth = ptr_at::<ETH_HLEN>(ctx, 0)?;
    // SAFETY: checked by ptr_at.
    let (client_mac, node_mac) = unsafe {
        (
            core::ptr::read_unaligned(eth.add(6).cast::<[u8; 6]>()),
            core::ptr::read_unaligned(eth.cast::<[u8; 6]>()),
        )
    };
    let span = u32::from(hi - lo) + 1;
    let mut nat_key = L4Key4 {
        src: ep.addr,
        dst: key.dst,
        src_port_be: ep.port_be,
        dst_port_be: 0,
        proto: key.proto,
        _pad: [0; 3],
    };
    let nat = L4Nat {
        client: key.src,
        client_port_be: key.src_port_be,
        service_port_be: key.dst_port_be,
        ifindex: ctx.ingress_ifindex() as u32,
        client_mac,
        node_mac,
        service_id: service.id,
        endpoint_id: ep.stats_id,
        last_seen_ns: now,
        state: L4_STATE_NEW,
        _pad: [0; 7],
    };
    let mut nat_port = 0u16;
    let start = hash.rotate_left(16);
    for i in 0..4u32 {
        let port = lo + (start.wrapping_add(i.wrapping_mul(7919)) % span) as u16;
        nat_key.dst_port_be = port.to_be();
        if maps::L4_NAT4
            .insert(&nat_key, &nat, BPF_NOEXIST as u64)
            .is_ok()
        {
            nat_port = port;
            break;
        }
    }
    if nat_port == 0 {
        maps::count_l4_fallback(service.id);
        return Ok(None);
    }
    let flow = L4Flow {
        pod: ep.addr,
        pod_port_be: ep.port_be,
        nat_port_be: nat_port.to_be(),
        ifindex: fib.ifindex,
        dmac: fib.dmac,
        smac: fib.smac,
        service_id: service.id,
        endpoint_id: ep.stats_id,
        first_seen_ns: now,
        last_seen_ns: now,
        state: if key.proto == L4_PROTO_UDP {
            L4_STATE_OPEN
        } else {
            L4_STATE_NEW
        },
        _pad: [0; 7],
    };
    if maps::L4_CT4.insert(key, &flow, 0).is_err() {
        let _ = maps::L4_NAT4.remove(&nat_key);
        maps::count_l4_fallback(service.id);
        return Ok(None);
    }
    maps::count_l4_flow(service.id, ep.stats_id);
    Ok(maps::L4_CT4.get_ptr_mut(key))
}

/// Pod → node SNAT port.
#[inline(always)]
fn reply(ctx: &XdpContext, stats: &mut Stats, p: &Packet) -> Result<Option<u32>, ParseError> {
    let key = key_of(ctx, p.proto)?;
    let Some(nat) = maps::L4_NAT4.get_ptr_mut(key) else {
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
    if !rewrite(
        ctx,
        p.proto,
        nat.client,
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
/// byte order as long as every word is read the same way).
#[inline(always)]
fn csum_replace(check: u16, old: &[u16; 6], new: &[u16; 6]) -> u16 {
    let mut sum = u32::from(!check);
    for i in 0..6 {
        sum += u32::from(!old[i]) + u32::from(new[i]);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

#[inline(always)]
fn halves(a: [u8; 4]) -> [u16; 2] {
    [
        u16::from_ne_bytes([a[0], a[1]]),
        u16::from_ne_bytes([a[2], a[3]]),
    ]
}

/// Rewrites the packet for its next hop: source address := the old
/// destination (the node), destination := `dst`, ports := (`sport_be`,
/// `dport_be`), TTL - 1, MACs; the IP and TCP/UDP checksums updated for
/// exactly what changed. False (untouched) when the TTL is spent.
#[inline(always)]
fn rewrite(
    ctx: &XdpContext,
    proto: u8,
    dst: [u8; 4],
    sport_be: u16,
    dport_be: u16,
    smac: &[u8; 6],
    dmac: &[u8; 6],
) -> Result<bool, ParseError> {
    let p = ptr_at::<{ L4_OFF + 8 }>(ctx, 0)? as *mut u8;
    // SAFETY: ptr_at checked L4_OFF + 8 bytes; TCP's checksum is checked
    // below before it is touched.
    unsafe {
        let ip = p.add(ETH_HLEN);
        let ttl = *ip.add(8);
        if ttl <= 1 {
            return Ok(false);
        }
        let old_src: [u8; 4] = core::ptr::read_unaligned(ip.add(12).cast());
        let old_dst: [u8; 4] = core::ptr::read_unaligned(ip.add(16).cast());
        let (s_old, d_old, s_new, d_new) = (
            halves(old_src),
            halves(old_dst),
            halves(old_dst),
            halves(dst),
        );
        let old_ttl_word = read16(ip, 8);
        *ip.add(8) = ttl - 1;
        let new_ttl_word = read16(ip, 8);
        // IP header: addresses and the TTL word.
        let check = read16(ip, 10);
        write16(
            ip,
            10,
            csum_replace(
                check,
                &[s_old[0], s_old[1], d_old[0], d_old[1], old_ttl_word, 0],
                &[s_new[0], s_new[1], d_new[0], d_new[1], new_ttl_word, 0],
            ),
        );
        core::ptr::write_unaligned(ip.add(12).cast::<[u8; 4]>(), old_dst);
        core::ptr::write_unaligned(ip.add(16).cast::<[u8; 4]>(), dst);
        // Transport: the pseudo-header's addresses and both ports.
        let l4 = p.add(L4_OFF);
        let (sp_old, dp_old) = (read16(l4, 0), read16(l4, 2));
        let old = [s_old[0], s_old[1], d_old[0], d_old[1], sp_old, dp_old];
        let new = [s_new[0], s_new[1], d_new[0], d_new[1], sport_be, dport_be];
        if proto == L4_PROTO_TCP {
            let t = ptr_at::<{ L4_OFF + 18 }>(ctx, 0)? as *mut u8;
            let check = read16(t, L4_OFF + 16);
            write16(t, L4_OFF + 16, csum_replace(check, &old, &new));
        } else {
            let check = read16(l4, 6);
            // Zero: the sender computed no checksum (IPv4 allows it).
            if check != 0 {
                let c = csum_replace(check, &old, &new);
                write16(l4, 6, if c == 0 { 0xffff } else { c });
            }
        }
        write16(l4, 0, sport_be);
        write16(l4, 2, dport_be);
        core::ptr::write_unaligned(p.cast::<[u8; 6]>(), *dmac);
        core::ptr::write_unaligned(p.add(6).cast::<[u8; 6]>(), *smac);
    }
    Ok(true)
}
