//! The xingress XDP program: parse, classify, count. This first version passes
//! every packet; policy arrives in later stages (see DESIGN.md).
#![no_std]
#![no_main]

mod maps;
mod parse;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use aya_log_ebpf::debug;
use ingress_common::Stat;
use parse::{ETH_P_IPV4, ETH_P_IPV6, IPPROTO_TCP, ParseError};

#[xdp]
pub fn xingress(ctx: XdpContext) -> u32 {
    maps::bump(Stat::Packets);
    match try_xingress(&ctx) {
        Ok(action) => action,
        Err(ParseError::Truncated) => {
            maps::bump(Stat::Malformed);
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
fn try_xingress(ctx: &XdpContext) -> Result<u32, ParseError> {
    let l2 = parse::parse_eth(ctx)?;
    if l2.vlan {
        maps::bump(Stat::Vlan);
    }
    let l3 = match l2.ether_type {
        ETH_P_IPV4 => {
            maps::bump(Stat::Ipv4);
            parse::parse_ipv4(ctx, l2.l3_off)?
        }
        ETH_P_IPV6 => {
            maps::bump(Stat::Ipv6);
            parse::parse_ipv6(ctx, l2.l3_off)?
        }
        _ => {
            maps::bump(Stat::NonIp);
            return Ok(xdp_action::XDP_PASS);
        }
    };
    let Some(l4_off) = l3.l4_off else {
        return Ok(xdp_action::XDP_PASS);
    };
    if l3.proto != IPPROTO_TCP {
        return Ok(xdp_action::XDP_PASS);
    }
    let tcp = parse::parse_tcp(ctx, l4_off)?;
    maps::bump(Stat::Tcp);
    if maps::listener(tcp.dst_port.to_be()).is_some() {
        maps::bump(Stat::Listener);
    }
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
