//! The xingress XDP program. Per packet, bounded:
//! 1. parse Ethernet (+ one VLAN tag), IPv4/IPv6, TCP (untagged IPv4 without
//!    options in a few word loads first); not to a listener → pass;
//! 2. a packet of an L7 flow in this CPU's flow cache → counted there, pass;
//! 3. source in the deny list → drop (new and untracked flows);
//! 4. SYN: per-source token bucket (drop when empty), then track the flow;
//! 5. first payload segment: read the SNI or Host, look it up in HOSTS
//!    (exact, then `*.parent`) and decide: L7, REJECT (allow list, strict
//!    unknown host) or UNDECIDED (the agent decides);
//! 6. FIN/RST retire the flow. Everything else passes: the agent is the
//!    fallback for whatever XDP cannot decide.
#![no_std]
// BPF inline assembly: packet loads at any alignment in one instruction,
// and values hidden from LLVM but not from the verifier (parse.rs).
#![feature(asm_experimental_arch)]
#![no_main]

mod classify;
mod l4;
mod maps;
mod parse;

use aya_ebpf::{
    bindings::xdp_action, helpers::generated::bpf_xdp_load_bytes, macros::xdp, programs::XdpContext,
};
use aya_log_ebpf::debug;
use ingress_common::{
    AddrKey, Config, F_CONFIG_DENY, F_CONFIG_STRICT_HOSTS, F_HOST_ALLOWLIST, F_LISTENER_HTTP,
    F_LISTENER_L4_NAT, F_LISTENER_L4_TCP, F_LISTENER_TLS, FLOW_CACHE_FLUSH_NS, FlowValue,
    HOST_ID_NONE, HOST_KEY_LEN, REASON_ALLOWLIST, REASON_NONE, REASON_UNKNOWN_HOST, RateValue,
    SCRATCH_LEN, Scratch, Stat, Stats, VERDICT_L7, VERDICT_NONE, VERDICT_REJECT, VERDICT_UNDECIDED,
};
use parse::{ETH_P_IPV4, ETH_P_IPV6, IPPROTO_TCP, ParseError, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

/// Refill time counted at most, so the multiplication cannot overflow.
const MAX_REFILL_NS: u64 = 10_000_000_000;

#[xdp]
pub fn xingress(ctx: XdpContext) -> u32 {
    let Some(stats) = maps::stats() else {
        return xdp_action::XDP_PASS;
    };
    maps::bump(stats, Stat::Packets);
    match try_xingress(&ctx, stats) {
        Ok(action) => action,
        Err(ParseError::Truncated) => {
            maps::bump(stats, Stat::Malformed);
            debug!(
                &ctx,
                "malformed packet, len {}",
                ctx.data_end() - ctx.data()
            );
            // Never drop what we cannot read: the kernel stack judges it.
            xdp_action::XDP_PASS
        }
    }
}

#[inline(always)]
fn try_xingress(ctx: &XdpContext, stats: &mut Stats) -> Result<u32, ParseError> {
    // Most packets are untagged IPv4 without options: read in a few word
    // loads. The rest take the general parse, which judges the same.
    let (l3, l4_off, tcp) = match parse::plain_ipv4_tcp(ctx) {
        Some(parsed) => {
            maps::bump(stats, Stat::Ipv4);
            parsed
        }
        None => {
            // A UDP service's packet (plain IPv4): steered or passed.
            if let Some((p, flags)) = l4::plain_udp(ctx) {
                return Ok(
                    l4::steer::<l4::V4>(ctx, stats, &p, flags).unwrap_or(xdp_action::XDP_PASS)
                );
            }
            match parse_any(ctx, stats)? {
                Some(parsed) => parsed,
                None => return Ok(xdp_action::XDP_PASS),
            }
        }
    };
    maps::bump(stats, Stat::Tcp);
    let Some(flags) = maps::listener(tcp.dst_port) else {
        return Ok(xdp_action::XDP_PASS);
    };
    if flags & (F_LISTENER_L4_TCP | F_LISTENER_L4_NAT) != 0 {
        // A TCP service's port, or the SNAT range: untagged IPv4 without
        // options only; anything else (VLAN, options, IPv6) goes to the
        // kernel, and so to the relay.
        let p = l4::Packet {
            proto: ingress_common::L4_PROTO_TCP,
            flags: tcp.flags,
            l4_len: l3.l4_len,
        };
        let plain =
            l3.l3_off == parse::ETH_HLEN && !l3.v6 && l4_off == parse::ETH_HLEN + parse::IPV4_HLEN;
        let steered = if plain {
            l4::steer::<l4::V4>(ctx, stats, &p, flags)
        } else {
            None
        };
        return Ok(steered.unwrap_or(xdp_action::XDP_PASS));
    }
    let listener = flags & (F_LISTENER_HTTP | F_LISTENER_TLS);
    if listener == 0 {
        return Ok(xdp_action::XDP_PASS);
    }
    maps::bump(stats, Stat::Listener);

    let Some(scratch) = maps::SCRATCH.get_ptr_mut(0) else {
        return Ok(xdp_action::XDP_PASS);
    };
    // SAFETY: this CPU's slot, from a successful lookup; nothing else runs
    // on this CPU while the packet is processed.
    let scratch = unsafe { &mut *scratch };
    // The key is the packet's own address and port words.
    let key = maps::Flow::from_packet(ctx, &l3, l4_off, scratch)?;
    let config = maps::config();
    // A packet of a flow this CPU has cached (L7, no SYN/FIN/RST) is
    // counted there and passed: no FLOWS lookup. (SYNs never need the slot.)
    let cache = if tcp.flags & (TCP_SYN | TCP_FIN | TCP_RST) == 0 {
        key.cache_slot(scratch)
    } else {
        None
    };
    if let Some(e) = cache {
        // SAFETY: this CPU's slot, from a successful lookup.
        let e = unsafe { &mut *e };
        let now = maps::now(stats);
        if key.cached_in(scratch, e)
            && e.flow_gen == config.flow_gen
            && e.epoch == maps::epoch()
            && now.saturating_sub(e.flushed_ns) < FLOW_CACHE_FLUSH_NS
        {
            e.packets += 1;
            e.bytes += l3.l4_len as u64;
            e.last_seen_ns = now;
            maps::bump(stats, Stat::FlowCacheHits);
            return Ok(xdp_action::XDP_PASS);
        }
    }
    // The deny list is consulted for new flows and untracked packets only;
    // the agent drops tracked flows of newly denied sources from FLOWS (and
    // bumps `flow_gen`, so no cache counts them on), so their next packet
    // is untracked and meets the list.
    let denied = |stats: &mut Stats| {
        let hit = config.flags & F_CONFIG_DENY != 0 && maps::denied(&key.source(scratch));
        if hit {
            maps::bump(stats, Stat::Denied);
        }
        hit
    };

    if tcp.flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
        if denied(stats) {
            return Ok(xdp_action::XDP_DROP);
        }
        let now = maps::now(stats);
        if config.syn_rate != 0 && !syn_allowed(config, &key.source(scratch), now) {
            maps::bump(stats, Stat::SynRateLimited);
            return Ok(xdp_action::XDP_DROP);
        }
        let flow = FlowValue {
            first_seen_ns: now,
            last_seen_ns: now,
            packets: 1,
            bytes: l3.l4_len as u64,
            host_id: HOST_ID_NONE,
            verdict: VERDICT_NONE,
            reason: REASON_NONE,
            listener: listener as u8,
            _pad: 0,
        };
        // A retransmitted SYN keeps the flow it already has. A SYN for a
        // flow that already carried payload is a new connection on a reused
        // port (the old one ended without a FIN or RST we saw): it starts
        // afresh instead of inheriting the old verdict and host, and no
        // CPU's cache may count it as the old flow.
        let fresh = match key.get(scratch) {
            None => key.insert_new(scratch, &flow),
            // SAFETY: the pointer comes from a successful lookup.
            Some(old) if unsafe { (*old).verdict } != VERDICT_NONE => {
                maps::bump_epoch();
                key.replace(scratch, &flow)
            }
            Some(_) => false,
        };
        if fresh {
            maps::bump(stats, Stat::FlowsNew);
        }
        return Ok(xdp_action::XDP_PASS);
    }
    let Some(flow) = key.get(scratch) else {
        if denied(stats) {
            return Ok(xdp_action::XDP_DROP);
        }
        maps::bump(stats, Stat::Untracked);
        return Ok(xdp_action::XDP_PASS);
    };
    if tcp.flags & (TCP_FIN | TCP_RST) != 0 {
        if key.remove(scratch) {
            maps::bump(stats, Stat::FlowsRetired);
        }
        // SAFETY: this CPU's slot, from a successful lookup.
        if let Some(e) = key.cache_slot(scratch).map(|e| unsafe { &mut *e })
            && key.cached_in(scratch, e)
        {
            e.family = 0;
        }
        return Ok(xdp_action::XDP_PASS);
    }
    // SAFETY: the pointer comes from a successful lookup; concurrent updates
    // from other CPUs can only make the counters approximate.
    let flow = unsafe { &mut *flow };
    let now = maps::now(stats);
    flow.packets += 1;
    flow.bytes += l3.l4_len as u64;
    flow.last_seen_ns = now;
    match flow.verdict {
        VERDICT_NONE if tcp.payload_len > 0 => classify(
            ctx, stats, config, &tcp, l4_off, flow, key, listener, scratch,
        ),
        VERDICT_REJECT => {
            // The local socket is gone: the kernel answers with an RST.
            maps::bump(stats, Stat::RejectedPackets);
            Ok(xdp_action::XDP_PASS)
        }
        VERDICT_L7 => {
            // The next packets are counted in this CPU's cache.
            if let Some(e) = cache {
                // SAFETY: this CPU's slot, from a successful lookup.
                key.cache_refresh(scratch, unsafe { &mut *e }, flow, config.flow_gen, now);
            }
            Ok(xdp_action::XDP_PASS)
        }
        _ => Ok(xdp_action::XDP_PASS),
    }
}

/// The general parse: one VLAN tag, IPv4 (options, fragments) or IPv6, then
/// TCP. `None` for what is not TCP with a transport header.
#[inline(always)]
fn parse_any(
    ctx: &XdpContext,
    stats: &mut Stats,
) -> Result<Option<(parse::L3, usize, parse::Tcp)>, ParseError> {
    let l2 = parse::parse_eth(ctx)?;
    if l2.vlan {
        maps::bump(stats, Stat::Vlan);
    }
    let l3 = match l2.ether_type {
        ETH_P_IPV4 => {
            maps::bump(stats, Stat::Ipv4);
            parse::parse_ipv4(ctx, l2.l3_off)?
        }
        ETH_P_IPV6 => {
            maps::bump(stats, Stat::Ipv6);
            parse::parse_ipv6(ctx, l2.l3_off)?
        }
        _ => {
            maps::bump(stats, Stat::NonIp);
            return Ok(None);
        }
    };
    match l3.l4_off {
        Some(l4_off) if l3.proto == IPPROTO_TCP => {
            let tcp = parse::parse_tcp(ctx, l4_off, l3.l4_len)?;
            Ok(Some((l3, l4_off, tcp)))
        }
        _ => Ok(None),
    }
}

/// Spends one token of the source's SYN bucket (`config.syn_rate` is set);
/// false when it is empty.
#[inline(always)]
fn syn_allowed(config: &Config, addrs: &parse::Addrs, now: u64) -> bool {
    let rate = config.syn_rate as u64;
    let burst = (if config.syn_burst == 0 {
        config.syn_rate
    } else {
        config.syn_burst
    }) as u64
        * 1000;
    let key = AddrKey {
        addr: addrs.src_mapped(),
    };
    match maps::SYN_RATE.get_ptr_mut(key) {
        Some(bucket) => {
            // SAFETY: from a successful lookup.
            let bucket = unsafe { &mut *bucket };
            let elapsed = now.saturating_sub(bucket.last_ns).min(MAX_REFILL_NS);
            let tokens = (bucket.tokens_milli + elapsed * rate / 1_000_000).min(burst);
            bucket.last_ns = now;
            if tokens >= 1000 {
                bucket.tokens_milli = tokens - 1000;
                true
            } else {
                bucket.tokens_milli = tokens;
                false
            }
        }
        None => {
            let fresh = RateValue {
                tokens_milli: burst.saturating_sub(1000),
                last_ns: now,
            };
            let _ = maps::SYN_RATE.insert(key, fresh, 0);
            true
        }
    }
}

/// Decides a flow at its first payload segment.
// The host keys are looked up by reference: by value (clippy's suggestion)
// would copy 64 bytes onto the 512-byte BPF stack.
#[allow(clippy::needless_borrows_for_generic_args)]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn classify(
    ctx: &XdpContext,
    stats: &mut Stats,
    config: &Config,
    tcp: &parse::Tcp,
    l4_off: usize,
    flow: &mut FlowValue,
    key: maps::Flow,
    listener: u32,
    scratch: &mut Scratch,
) -> Result<u32, ParseError> {
    let name = if listener & F_LISTENER_TLS != 0 {
        classify::tls_sni(ctx, tcp.payload_off, tcp.payload_len)
    } else {
        http_host(ctx, tcp, scratch)
    };
    let Some((off, len)) = name else {
        return Ok(undecided(stats, flow));
    };
    if !classify::load_name(ctx, off, len, &mut scratch.key) {
        return Ok(undecided(stats, flow));
    }
    // SAFETY: plain values copied out at once.
    let mut found = unsafe { maps::HOSTS.get(&scratch.key) }.copied();
    if found.is_none() && classify::wildcard(&scratch.key, &mut scratch.wild) {
        // SAFETY: as above.
        found = unsafe { maps::HOSTS.get(&scratch.wild) }.copied();
    }
    match found {
        Some(h)
            if h.flags & F_HOST_ALLOWLIST != 0
                && !maps::allowed(h.id, &key.source(scratch).src_mapped()) =>
        {
            reject(ctx, stats, l4_off, flow, h.id, REASON_ALLOWLIST)
        }
        Some(h) => Ok(serve(stats, flow, h.id)),
        None if config.flags & F_CONFIG_STRICT_HOSTS != 0 => {
            reject(ctx, stats, l4_off, flow, HOST_ID_NONE, REASON_UNKNOWN_HOST)
        }
        None => Ok(serve(stats, flow, HOST_ID_NONE)),
    }
}

/// The Host header of the request in this segment: its packet offset and
/// length. The segment is copied into the scratch buffer for the byte scan.
#[inline(always)]
fn http_host(ctx: &XdpContext, tcp: &parse::Tcp, scratch: &mut Scratch) -> Option<(usize, usize)> {
    // opaque: the compiler knows payload_len > 0 and would drop the
    // check, but the verifier must see both bounds at the helper call.
    let n = parse::opaque(if tcp.payload_len > SCRATCH_LEN {
        SCRATCH_LEN
    } else {
        tcp.payload_len
    });
    if n == 0 || n > SCRATCH_LEN {
        return None;
    }
    // SAFETY: the scratch slot is this CPU's and SCRATCH_LEN bytes long; n <= SCRATCH_LEN.
    let copied = unsafe {
        bpf_xdp_load_bytes(
            ctx.ctx,
            tcp.payload_off as u32,
            scratch.buf.as_mut_ptr().cast(),
            n as u32,
        )
    };
    if copied < 0 || !classify::http_host(scratch, n) {
        return None;
    }
    // Reload what the parser stored (see classify.rs).
    // SAFETY: plain loads from this CPU's slot.
    let (pos, len) = unsafe {
        (
            core::ptr::read_volatile(&scratch.name_pos) as usize,
            core::ptr::read_volatile(&scratch.name_len) as usize,
        )
    };
    if len == 0 || len > HOST_KEY_LEN || pos >= SCRATCH_LEN {
        return None;
    }
    Some((tcp.payload_off + pos, len))
}

#[inline(always)]
fn undecided(stats: &mut Stats, flow: &mut FlowValue) -> u32 {
    flow.verdict = VERDICT_UNDECIDED;
    maps::bump(stats, Stat::Undecided);
    xdp_action::XDP_PASS
}

#[inline(always)]
fn serve(stats: &mut Stats, flow: &mut FlowValue, host_id: u32) -> u32 {
    flow.verdict = VERDICT_L7;
    flow.host_id = host_id;
    maps::bump(stats, Stat::ClassifiedL7);
    maps::count_host(host_id, false);
    xdp_action::XDP_PASS
}

/// The segment becomes an RST for the local socket (torn down at once);
/// the client's next segment meets no socket and gets the kernel's RST.
#[inline(always)]
fn reject(
    ctx: &XdpContext,
    stats: &mut Stats,
    l4_off: usize,
    flow: &mut FlowValue,
    host_id: u32,
    reason: u8,
) -> Result<u32, ParseError> {
    flow.verdict = VERDICT_REJECT;
    flow.reason = reason;
    flow.host_id = host_id;
    maps::bump(
        stats,
        if reason == REASON_ALLOWLIST {
            Stat::RejectedAllowlist
        } else {
            Stat::RejectedUnknownHost
        },
    );
    maps::count_host(host_id, true);
    parse::make_rst(ctx, l4_off)?;
    debug!(ctx, "rejected a flow (reason {})", reason);
    Ok(xdp_action::XDP_PASS)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
