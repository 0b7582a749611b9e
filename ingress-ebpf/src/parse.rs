//! Packet parsing: every read goes through `ptr_at`, which proves to the
//! verifier (and to us) that the bytes lie between `data` and `data_end`.

use aya_ebpf::programs::XdpContext;
use ingress_common::ipv4_mapped;

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

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

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
    // Opaque to LLVM, known to the verifier: LLVM would fold `p + 1 > end`
    // into `p >= end`, a form from which the verifier learns no range.
    let len = core::hint::black_box(core::mem::size_of::<T>());
    if start + offset + len > end {
        return Err(ParseError::Truncated);
    }
    Ok((start + offset) as *const T)
}

#[inline(always)]
pub fn read_u8(ctx: &XdpContext, offset: usize) -> Result<u8, ParseError> {
    // SAFETY: ptr_at checked that the byte lies inside the packet.
    Ok(unsafe { *ptr_at::<u8>(ctx, offset)? })
}

/// A big-endian u16 at `offset`, returned in host order.
#[inline(always)]
pub fn read_u16_be(ctx: &XdpContext, offset: usize) -> Result<u16, ParseError> {
    // SAFETY: ptr_at checked bounds; packet data has no alignment guarantee.
    let raw = unsafe { core::ptr::read_unaligned(ptr_at::<u16>(ctx, offset)?) };
    Ok(u16::from_be(raw))
}

#[inline(always)]
fn read_16(ctx: &XdpContext, offset: usize) -> Result<[u8; 16], ParseError> {
    // SAFETY: ptr_at checked bounds; [u8; 16] has alignment 1.
    Ok(unsafe { *ptr_at::<[u8; 16]>(ctx, offset)? })
}

#[inline(always)]
fn read_4(ctx: &XdpContext, offset: usize) -> Result<[u8; 4], ParseError> {
    // SAFETY: ptr_at checked bounds; [u8; 4] has alignment 1.
    Ok(unsafe { *ptr_at::<[u8; 4]>(ctx, offset)? })
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

/// Network layer result. Addresses are 16 bytes (IPv4 mapped).
/// `l4_off` is `None` for a non-first IPv4 fragment (no transport header).
pub struct L3 {
    pub proto: u8,
    pub l4_off: Option<usize>,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// Bytes after the IP header(s), by the IP length fields (not the
    /// frame length, which may include Ethernet padding).
    pub l4_len: usize,
}

#[inline(always)]
pub fn parse_ipv4(ctx: &XdpContext, off: usize) -> Result<L3, ParseError> {
    let ver_ihl = read_u8(ctx, off)?;
    let ihl = ((ver_ihl & 0x0F) as usize) * 4;
    if ver_ihl >> 4 != 4 || ihl < 20 {
        return Err(ParseError::Truncated);
    }
    let total = read_u16_be(ctx, off + 2)? as usize;
    let proto = read_u8(ctx, off + 9)?;
    let frag = read_u16_be(ctx, off + 6)?;
    let src = ipv4_mapped(read_4(ctx, off + 12)?);
    let dst = ipv4_mapped(read_4(ctx, off + 16)?);
    // Make sure the whole header (options included) is present.
    read_u8(ctx, off + ihl - 1)?;
    if total < ihl {
        return Err(ParseError::Truncated);
    }
    let first_fragment = frag & IPV4_FRAG_OFFSET == 0;
    Ok(L3 {
        proto,
        l4_off: if first_fragment {
            Some(off + ihl)
        } else {
            None
        },
        src,
        dst,
        l4_len: total - ihl,
    })
}

#[inline(always)]
pub fn parse_ipv6(ctx: &XdpContext, off: usize) -> Result<L3, ParseError> {
    let ver = read_u8(ctx, off)? >> 4;
    if ver != 6 {
        return Err(ParseError::Truncated);
    }
    let payload = read_u16_be(ctx, off + 4)? as usize;
    let next = read_u8(ctx, off + 6)?;
    let src = read_16(ctx, off + 8)?;
    let dst = read_16(ctx, off + 24)?;
    Ok(L3 {
        proto: next,
        l4_off: Some(off + IPV6_HLEN),
        src,
        dst,
        l4_len: payload,
    })
}

/// The TCP fields the program needs, in host order.
pub struct Tcp {
    pub src_port_be: u16,
    pub dst_port_be: u16,
    pub flags: u8,
    /// Offset of the TCP payload in the packet.
    pub payload_off: usize,
    /// Payload bytes (from the IP length fields).
    pub payload_len: usize,
}

#[inline(always)]
pub fn parse_tcp(ctx: &XdpContext, off: usize, l4_len: usize) -> Result<Tcp, ParseError> {
    let src_port = read_u16_be(ctx, off)?;
    let dst_port = read_u16_be(ctx, off + 2)?;
    let hdr_len = ((read_u8(ctx, off + 12)? >> 4) as usize) * 4;
    if hdr_len < TCP_MIN_HLEN || hdr_len > l4_len {
        return Err(ParseError::Truncated);
    }
    let flags = read_u8(ctx, off + 13)?;
    read_u8(ctx, off + TCP_MIN_HLEN - 1)?;
    Ok(Tcp {
        src_port_be: src_port.to_be(),
        dst_port_be: dst_port.to_be(),
        flags,
        payload_off: off + hdr_len,
        payload_len: l4_len - hdr_len,
    })
}

/// Turns the TCP segment at `off` into an RST (keeping its sequence number,
/// which is exactly what the local socket expects next) and fixes the
/// checksum incrementally (RFC 1624).
#[inline(always)]
pub fn make_rst(ctx: &XdpContext, off: usize) -> Result<(), ParseError> {
    let word = ptr_at::<u16>(ctx, off + 12)? as *mut u16;
    let csum = ptr_at::<u16>(ctx, off + 16)? as *mut u16;
    // SAFETY: both pointers were bounds-checked by ptr_at; XDP packet data is writable.
    unsafe {
        let old = core::ptr::read_unaligned(word);
        let mut bytes = old.to_ne_bytes();
        bytes[1] = TCP_RST | TCP_ACK;
        let new = u16::from_ne_bytes(bytes);
        core::ptr::write_unaligned(word, new);
        let c = !u16::from_be(core::ptr::read_unaligned(csum)) as u32;
        let sum = c + (!u16::from_be(old) as u32) + u16::from_be(new) as u32;
        let sum = (sum & 0xffff) + (sum >> 16);
        let sum = (sum & 0xffff) + (sum >> 16);
        core::ptr::write_unaligned(csum, (!(sum as u16)).to_be());
    }
    Ok(())
}
