//! Packet parsing: every read goes through `ptr_at`, which proves to the
//! verifier (and to us) that the bytes lie between `data` and `data_end`.

use aya_ebpf::programs::XdpContext;

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88A8;
pub const IPPROTO_TCP: u8 = 6;
pub const IPV6_HLEN: usize = 40;
pub const TCP_MIN_HLEN: usize = 20;
/// Fragment offset bits of the IPv4 flags/fragment field.
const IPV4_FRAG_OFFSET: u16 = 0x1FFF;

/// Why a packet could not be parsed as far as we needed.
#[derive(Clone, Copy)]
pub enum ParseError {
    /// A header ran past `data_end`, or a length field was impossible.
    Truncated,
}

/// Pointer to a `T` at `offset` bytes into the packet, if all of it is there.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Result<*const T, ParseError> {
    let start = ctx.data();
    let end = ctx.data_end();
    let len = core::mem::size_of::<T>();
    if start + offset + len > end {
        return Err(ParseError::Truncated);
    }
    Ok((start + offset) as *const T)
}

#[inline(always)]
fn read_u8(ctx: &XdpContext, offset: usize) -> Result<u8, ParseError> {
    // SAFETY: ptr_at checked that the byte lies inside the packet.
    Ok(unsafe { *ptr_at::<u8>(ctx, offset)? })
}

/// A big-endian u16 at `offset`, returned in host order.
#[inline(always)]
fn read_u16_be(ctx: &XdpContext, offset: usize) -> Result<u16, ParseError> {
    // SAFETY: ptr_at checked bounds; packet data has no alignment guarantee.
    let raw = unsafe { core::ptr::read_unaligned(ptr_at::<u16>(ctx, offset)?) };
    Ok(u16::from_be(raw))
}

/// Link layer result: the EtherType after at most one VLAN tag, and where
/// the network header starts.
pub struct L2 {
    pub ether_type: u16,
    pub l3_off: usize,
    pub vlan: bool,
}

#[inline(always)]
pub fn parse_eth(ctx: &XdpContext) -> Result<L2, ParseError> {
    let ether_type = read_u16_be(ctx, 12)?;
    if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
        // 802.1Q tag: TCI (2 bytes) then the encapsulated EtherType.
        let inner = read_u16_be(ctx, ETH_HLEN + 2)?;
        return Ok(L2 {
            ether_type: inner,
            l3_off: ETH_HLEN + 4,
            vlan: true,
        });
    }
    Ok(L2 {
        ether_type,
        l3_off: ETH_HLEN,
        vlan: false,
    })
}

/// Network layer result: the transport protocol and where its header starts.
/// `l4_off` is `None` for a non-first IPv4 fragment (no transport header).
pub struct L3 {
    pub proto: u8,
    pub l4_off: Option<usize>,
}

#[inline(always)]
pub fn parse_ipv4(ctx: &XdpContext, off: usize) -> Result<L3, ParseError> {
    let ver_ihl = read_u8(ctx, off)?;
    let ihl = ((ver_ihl & 0x0F) as usize) * 4;
    if ver_ihl >> 4 != 4 || ihl < 20 {
        return Err(ParseError::Truncated);
    }
    let proto = read_u8(ctx, off + 9)?;
    let frag = read_u16_be(ctx, off + 6)?;
    // Make sure the whole header (options included) is present.
    read_u8(ctx, off + ihl - 1)?;
    let first_fragment = frag & IPV4_FRAG_OFFSET == 0;
    Ok(L3 {
        proto,
        l4_off: if first_fragment {
            Some(off + ihl)
        } else {
            None
        },
    })
}

#[inline(always)]
pub fn parse_ipv6(ctx: &XdpContext, off: usize) -> Result<L3, ParseError> {
    let ver = read_u8(ctx, off)? >> 4;
    if ver != 6 {
        return Err(ParseError::Truncated);
    }
    let next = read_u8(ctx, off + 6)?;
    // Make sure the fixed header is complete.
    read_u8(ctx, off + IPV6_HLEN - 1)?;
    Ok(L3 {
        proto: next,
        l4_off: Some(off + IPV6_HLEN),
    })
}

/// The TCP fields the program needs, in host order.
pub struct Tcp {
    pub dst_port: u16,
}

#[inline(always)]
pub fn parse_tcp(ctx: &XdpContext, off: usize) -> Result<Tcp, ParseError> {
    let dst_port = read_u16_be(ctx, off + 2)?;
    let hdr_len = ((read_u8(ctx, off + 12)? >> 4) as usize) * 4;
    if hdr_len < TCP_MIN_HLEN {
        return Err(ParseError::Truncated);
    }
    read_u8(ctx, off + TCP_MIN_HLEN - 1)?;
    Ok(Tcp { dst_port })
}
