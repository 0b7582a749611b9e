//! Packet parsing: every header is read through `ptr_at`, one bounds check
//! per header, which proves to the verifier (and to us) that its bytes lie
//! between `data` and `data_end`.

use aya_ebpf::programs::XdpContext;
use ingress_common::ipv4_mapped;

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88A8;
pub const IPPROTO_TCP: u8 = 6;
pub const IPV4_HLEN: usize = 20;
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

/// `x`, hidden from LLVM's optimiser but not from the verifier, which sees
/// a `r = r` move (emitted as nothing by the JIT). `black_box` does the same
/// through a stack slot: a store and a reload on every header check.
#[inline(always)]
pub fn opaque(mut x: usize) -> usize {
    // SAFETY: a register move; no memory, stack or flags touched.
    unsafe {
        core::arch::asm!("{x} = {x}", x = inout(reg) x, options(nomem, nostack, preserves_flags));
    }
    x
}

/// Pointer to `N` bytes at `offset` into the packet, if all of them are there.
#[inline(always)]
pub fn ptr_at<const N: usize>(ctx: &XdpContext, offset: usize) -> Result<*const u8, ParseError> {
    // Opaque to LLVM, known to the verifier: LLVM would fold `p + 1 > end`
    // into `p >= end`, a form from which the verifier learns no range.
    checked(ctx, offset, opaque(N))
}

/// `ptr_at` for the reads of the ClientHello walk, with the length hidden
/// through a stack slot: with `opaque` there, LLVM keeps the lengths in
/// registers across the unrolled walk and the verifier's state count
/// explodes past its limit.
#[inline(always)]
pub fn payload_at<const N: usize>(
    ctx: &XdpContext,
    offset: usize,
) -> Result<*const u8, ParseError> {
    checked(ctx, offset, core::hint::black_box(N))
}

#[inline(always)]
fn checked(ctx: &XdpContext, offset: usize, len: usize) -> Result<*const u8, ParseError> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + len > end {
        return Err(ParseError::Truncated);
    }
    Ok((start + offset) as *const u8)
}

/// Eight packet bytes at `p`, little-endian, at any alignment, in one
/// instruction. `read_unaligned` would be eight byte loads: LLVM's BPF target
/// splits misaligned loads, and its option not to also misaligns stack
/// slots, which the verifier refuses. The JIT allows misaligned packet loads.
///
/// # Safety
/// The 8 bytes at `p` must be packet data checked against `data_end`.
#[inline(always)]
pub unsafe fn load_u64(p: *const u8) -> u64 {
    let x: u64;
    // SAFETY: per the caller; the load has no other effect.
    unsafe {
        core::arch::asm!(
            "{x} = *(u64 *)({p} + 0)",
            x = out(reg) x,
            p = in(reg) p,
            options(pure, readonly, nostack, preserves_flags),
        );
    }
    x
}

/// Four packet bytes at `p` as they lie in memory, at any alignment, in one
/// instruction (`read_unaligned` becomes byte loads on BPF).
///
/// # Safety
/// The 4 bytes at `p` must be packet data checked against `data_end`.
#[inline(always)]
pub unsafe fn load_u32(p: *const u8) -> u32 {
    let x: u32;
    // SAFETY: per the caller; the load has no other effect.
    unsafe {
        core::arch::asm!(
            "{x} = *(u32 *)({p} + 0)",
            x = out(reg) x,
            p = in(reg) p,
            options(pure, readonly, nostack, preserves_flags),
        );
    }
    x
}

/// Byte `i` of a header checked by `ptr_at::<N>` with `i < N`.
#[inline(always)]
fn byte(p: *const u8, i: usize) -> u8 {
    // SAFETY: callers pass i below the N that ptr_at checked.
    unsafe { *p.add(i) }
}

#[inline(always)]
fn be16(p: *const u8, i: usize) -> u16 {
    (u16::from(byte(p, i)) << 8) | u16::from(byte(p, i + 1))
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
    let eth = ptr_at::<ETH_HLEN>(ctx, 0)?;
    let ether_type = be16(eth, 12);
    if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
        // 802.1Q tag: TCI (2 bytes) then the encapsulated EtherType.
        let tag = ptr_at::<4>(ctx, ETH_HLEN)?;
        return Ok(L2 {
            ether_type: be16(tag, 2),
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

/// Network layer result. `l4_off` is `None` for a non-first IPv4 fragment
/// (no transport header). Addresses are read later, only for listener
/// traffic (see `addresses`).
pub struct L3 {
    pub proto: u8,
    pub l4_off: Option<usize>,
    /// Bytes after the IP header(s), by the IP length fields (not the
    /// frame length, which may include Ethernet padding).
    pub l4_len: usize,
    pub l3_off: usize,
    pub v6: bool,
}

/// A packet's source address, for policy (see `Flow::source`).
#[derive(Clone, Copy)]
pub enum Addrs {
    V4 { src: [u8; 4] },
    V6 { src: [u8; 16] },
}

impl Addrs {
    /// The source as 16 bytes (IPv4-mapped for IPv4).
    #[inline(always)]
    pub fn src_mapped(&self) -> [u8; 16] {
        match self {
            Addrs::V4 { src } => ipv4_mapped(*src),
            Addrs::V6 { src } => *src,
        }
    }
}

#[inline(always)]
pub fn parse_ipv4(ctx: &XdpContext, off: usize) -> Result<L3, ParseError> {
    let ip = ptr_at::<IPV4_HLEN>(ctx, off)?;
    let ver_ihl = byte(ip, 0);
    let ihl = ((ver_ihl & 0x0F) as usize) * 4;
    if ver_ihl >> 4 != 4 || ihl < IPV4_HLEN {
        return Err(ParseError::Truncated);
    }
    let total = be16(ip, 2) as usize;
    let frag = be16(ip, 6);
    if ihl > IPV4_HLEN {
        // Options: make sure the whole header is present.
        ptr_at::<1>(ctx, off + ihl - 1)?;
    }
    if total < ihl {
        return Err(ParseError::Truncated);
    }
    Ok(L3 {
        proto: byte(ip, 9),
        l4_off: if frag & IPV4_FRAG_OFFSET == 0 {
            Some(off + ihl)
        } else {
            None
        },
        l4_len: total - ihl,
        l3_off: off,
        v6: false,
    })
}

#[inline(always)]
pub fn parse_ipv6(ctx: &XdpContext, off: usize) -> Result<L3, ParseError> {
    let ip = ptr_at::<IPV6_HLEN>(ctx, off)?;
    if byte(ip, 0) >> 4 != 6 {
        return Err(ParseError::Truncated);
    }
    Ok(L3 {
        proto: byte(ip, 6),
        l4_off: Some(off + IPV6_HLEN),
        l4_len: be16(ip, 4) as usize,
        l3_off: off,
        v6: true,
    })
}

/// The common packet in three word loads: untagged IPv4 without options,
/// unfragmented, TCP with a header that fits its length. `None` for
/// anything else, which `parse_eth` and the others then read in full (and
/// judge exactly as they would have judged this one).
#[inline(always)]
pub fn plain_ipv4_tcp(ctx: &XdpContext) -> Option<(L3, usize, Tcp)> {
    const IP: usize = ETH_HLEN;
    const TCP: usize = IP + IPV4_HLEN;
    let p = ptr_at::<{ TCP + TCP_MIN_HLEN }>(ctx, 0).ok()?;
    // SAFETY: ptr_at checked every byte read here (all below TCP + 20).
    let (ether, ver_len, frag_proto) = unsafe {
        (
            load_u32(p.add(IP - 4)),
            load_u32(p.add(IP)),
            load_u32(p.add(IP + 6)),
        )
    };
    // The words in memory order, little-endian: the EtherType is the top
    // half of the first; version/IHL is the low byte of the second, the
    // total length its top half; the fragment bits and the protocol are in
    // the third.
    if ether >> 16 != u32::from(ETH_P_IPV4.to_be())
        || ver_len & 0xff != 0x45
        || frag_proto & 0xff00_ff1f != u32::from(IPPROTO_TCP) << 24
    {
        return None;
    }
    let l4_len = (u16::from_be((ver_len >> 16) as u16) as usize).checked_sub(IPV4_HLEN)?;
    let tcp = tcp_fields(p.wrapping_add(TCP), TCP, l4_len).ok()?;
    let l3 = L3 {
        proto: IPPROTO_TCP,
        l4_off: Some(TCP),
        l4_len,
        l3_off: IP,
        v6: false,
    };
    Some((l3, TCP, tcp))
}

/// The TCP fields the program needs.
pub struct Tcp {
    pub dst_port: u16,
    pub flags: u8,
    /// Offset of the TCP payload in the packet.
    pub payload_off: usize,
    /// Payload bytes (from the IP length fields).
    pub payload_len: usize,
}

#[inline(always)]
pub fn parse_tcp(ctx: &XdpContext, off: usize, l4_len: usize) -> Result<Tcp, ParseError> {
    tcp_fields(ptr_at::<TCP_MIN_HLEN>(ctx, off)?, off, l4_len)
}

/// The fields of the TCP header at `tcp` (packet offset `off`, its
/// TCP_MIN_HLEN bytes checked), if its length fits the segment's.
#[inline(always)]
fn tcp_fields(tcp: *const u8, off: usize, l4_len: usize) -> Result<Tcp, ParseError> {
    let hdr_len = ((byte(tcp, 12) >> 4) as usize) * 4;
    if hdr_len < TCP_MIN_HLEN || hdr_len > l4_len {
        return Err(ParseError::Truncated);
    }
    Ok(Tcp {
        dst_port: be16(tcp, 2),
        flags: byte(tcp, 13),
        payload_off: off + hdr_len,
        payload_len: l4_len - hdr_len,
    })
}

/// Turns the TCP segment at `off` into an RST (keeping its sequence number,
/// which is exactly what the local socket expects next) and fixes the
/// checksum incrementally (RFC 1624).
#[inline(always)]
pub fn make_rst(ctx: &XdpContext, off: usize) -> Result<(), ParseError> {
    let tcp = ptr_at::<TCP_MIN_HLEN>(ctx, off)? as *mut u8;
    // SAFETY: bounds checked by ptr_at; XDP packet data is writable.
    unsafe {
        let word = tcp.add(12) as *mut u16;
        let csum = tcp.add(16) as *mut u16;
        let old = core::ptr::read_unaligned(word);
        let mut b = old.to_ne_bytes();
        b[1] = TCP_RST | TCP_ACK;
        let new = u16::from_ne_bytes(b);
        core::ptr::write_unaligned(word, new);
        let c = !u16::from_be(core::ptr::read_unaligned(csum)) as u32;
        let sum = c + (!u16::from_be(old) as u32) + u16::from_be(new) as u32;
        let sum = (sum & 0xffff) + (sum >> 16);
        let sum = (sum & 0xffff) + (sum >> 16);
        core::ptr::write_unaligned(csum, (!(sum as u16)).to_be());
    }
    Ok(())
}
