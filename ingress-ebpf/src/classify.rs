//! Finding the host name of a new flow in its first payload segment: the
//! TLS ClientHello's server_name, read in place in the packet, or the
//! HTTP/1.x Host header, searched in a copy of the segment in the scratch
//! buffer (a byte scan the verifier checks once, through bpf_loop). Loops are
//! bounded and only *find* the name; `load_name` then reads it into the key.
//!
//! Calls cost: on a kernel with retpolines and return thunks, every helper
//! call and subprogram return costs ~20 ns, so the TLS path makes none
//! (it used to copy the segment and walk the extensions with bpf_loop).

use aya_ebpf::{
    cty::c_void,
    helpers::{bpf_loop, generated::bpf_xdp_load_bytes},
    programs::XdpContext,
};
use ingress_common::{HOST_KEY_LEN, HostKey, SCRATCH_LEN, Scratch};

use crate::parse::{load_u64, payload_at};

/// Extensions walked at most in a ClientHello.
const MAX_EXTENSIONS: usize = 32;
/// Bytes of an HTTP request head searched for the Host header.
const MAX_HTTP_SCAN: usize = 1024;
/// Bytes `scan_step` may read past the position it examines.
const LOOKAHEAD: usize = 6;
const _: () = assert!(MAX_HTTP_SCAN + LOOKAHEAD < SCRATCH_LEN);

#[inline(always)]
fn at(buf: &[u8; SCRATCH_LEN], n: usize, i: usize) -> Option<u8> {
    if i < n && i < SCRATCH_LEN {
        Some(buf[i])
    } else {
        None
    }
}

#[inline(always)]
fn found(s: &mut Scratch, pos: usize, len: usize) -> bool {
    if len == 0 || len > HOST_KEY_LEN || pos >= SCRATCH_LEN {
        return false;
    }
    // SAFETY: plain stores into this CPU's scratch slot; volatile so the
    // values are reloaded from memory after the loop.
    unsafe {
        core::ptr::write_volatile(&mut s.name_pos, pos as u32);
        core::ptr::write_volatile(&mut s.name_len, len as u32);
    }
    true
}

/// Payload bytes of a ClientHello the walk reads at most (as much as the
/// HTTP scan sees of a request).
const MAX_TLS_SCAN: usize = SCRATCH_LEN;

/// Byte `i` of the payload at `base` (`n` bytes long), read in place.
#[inline(always)]
fn pkt_u8(ctx: &XdpContext, base: usize, n: usize, i: usize) -> Option<u8> {
    if i >= n || i >= MAX_TLS_SCAN {
        return None;
    }
    let p = payload_at::<1>(ctx, base + i).ok()?;
    // SAFETY: payload_at checked the byte is in the packet.
    Some(unsafe { *p })
}

#[inline(always)]
fn pkt_be16(ctx: &XdpContext, base: usize, n: usize, i: usize) -> Option<usize> {
    if i + 2 > n || i >= MAX_TLS_SCAN {
        return None;
    }
    let p = payload_at::<2>(ctx, base + i).ok()?;
    // SAFETY: payload_at checked both bytes are in the packet.
    Some(unsafe { ((*p as usize) << 8) | *p.add(1) as usize })
}

/// Finds the server_name of a TLS ClientHello in the payload at `base`
/// (`n` bytes by the IP length): its packet offset and length. None when it
/// is not in this segment (split ClientHello), absent, or too long: the
/// agent decides.
#[inline(always)]
pub fn tls_sni(ctx: &XdpContext, base: usize, n: usize) -> Option<(usize, usize)> {
    // Record header: handshake(22), version, length; then ClientHello(1).
    if pkt_u8(ctx, base, n, 0)? != 22 || pkt_u8(ctx, base, n, 5)? != 1 {
        return None;
    }
    // 5 record + 4 handshake header + 2 version + 32 random.
    let mut pos = 43;
    pos += 1 + pkt_u8(ctx, base, n, pos)? as usize;
    pos += 2 + pkt_be16(ctx, base, n, pos)?;
    pos += 1 + pkt_u8(ctx, base, n, pos)? as usize;
    let end = pos + 2 + pkt_be16(ctx, base, n, pos)?;
    pos += 2;
    for _ in 0..MAX_EXTENSIONS {
        // Bounded before it meets a pointer: the verifier needs the range.
        if pos >= end || pos >= MAX_TLS_SCAN || pos + 4 > n {
            return None;
        }
        let p = payload_at::<4>(ctx, base + pos).ok()?;
        // SAFETY: payload_at checked the 4 bytes.
        let (ty, len) = unsafe {
            (
                (*p as u16) << 8 | *p.add(1) as u16,
                (*p.add(2) as usize) << 8 | *p.add(3) as usize,
            )
        };
        if ty == 0 {
            return server_name(ctx, base, n, pos);
        }
        pos += 4 + len;
    }
    None
}

/// The host_name of the server_name extension at `pos`.
#[inline(always)]
fn server_name(ctx: &XdpContext, base: usize, n: usize, pos: usize) -> Option<(usize, usize)> {
    // Extension header(4), list length(2), type(1) = host_name(0), length(2), name.
    if pos + 9 > n || pos >= MAX_TLS_SCAN {
        return None;
    }
    let p = payload_at::<9>(ctx, base + pos).ok()?;
    // SAFETY: payload_at checked the 9 bytes.
    let (ty, len) = unsafe { (*p.add(6), (*p.add(7) as usize) << 8 | *p.add(8) as usize) };
    let start = pos + 9;
    // The whole name must be in this segment.
    if ty != 0 || len == 0 || len > HOST_KEY_LEN || start + len > n {
        return None;
    }
    Some((base + start, len))
}

/// Finds the Host header value (without port) of an HTTP/1.x request head
/// copied into the scratch buffer; false when the head has none within
/// this segment. Its position in the payload goes into the scratch slot.
#[inline(always)]
pub fn http_host(s: &mut Scratch, n: usize) -> bool {
    let buf = &s.buf;
    // A request line starts with an upper-case method.
    match at(buf, n, 0) {
        Some(c) if c.is_ascii_uppercase() => {}
        _ => return false,
    }
    // bpf_loop: the verifier checks the step once, not once per byte.
    let mut scan = Scan {
        buf: buf as *const _,
        n,
        line: 0,
    };
    // SAFETY: scan_step matches bpf_loop's callback signature and only
    // reads through the context it is given.
    unsafe {
        bpf_loop(
            MAX_HTTP_SCAN as u32,
            scan_step as *mut c_void,
            (&mut scan as *mut Scan).cast(),
            0,
        );
    }
    let line = scan.line;
    if line == 0 {
        return false;
    }
    let Some((pos, len)) = value(buf, n, line + 5) else {
        return false;
    };
    found(s, pos, len)
}

/// State of the Host header scan.
#[repr(C)]
struct Scan {
    buf: *const [u8; SCRATCH_LEN],
    n: usize,
    /// Start of the Host line; 0 while not found.
    line: usize,
}

/// One byte of the scan: 1 stops the loop (found, end of data or head), 0 goes on.
#[inline(never)]
unsafe extern "C" fn scan_step(index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the context http_host gave it.
    let scan = unsafe { &mut *(ctx as *mut Scan) };
    let i = index as usize;
    if i >= MAX_HTTP_SCAN || i >= scan.n {
        return 1;
    }
    // SAFETY: the buffer is this CPU's scratch slot, alive during the loop.
    let buf = unsafe { &*scan.buf };
    if buf[i] != b'\n' {
        return 0;
    }
    if is_host(buf, scan.n, i + 1) {
        scan.line = i + 1;
        return 1;
    }
    // An empty line ends the head.
    i64::from(matches!(at(buf, scan.n, i + 1), Some(b'\r' | b'\n')))
}

#[inline(always)]
fn is_host(buf: &[u8; SCRATCH_LEN], n: usize, i: usize) -> bool {
    let l = |j: usize| at(buf, n, i + j).map(|c| c | 0x20);
    l(0) == Some(b'h')
        && l(1) == Some(b'o')
        && l(2) == Some(b's')
        && l(3) == Some(b't')
        && at(buf, n, i + 4) == Some(b':')
}

/// The header value at `i`: leading blanks skipped, up to a port, blank or line end.
#[inline(always)]
fn value(buf: &[u8; SCRATCH_LEN], n: usize, mut i: usize) -> Option<(usize, usize)> {
    for _ in 0..8 {
        if !matches!(at(buf, n, i)?, b' ' | b'\t') {
            break;
        }
        i += 1;
    }
    for len in 0..=HOST_KEY_LEN {
        match at(buf, n, i + len)? {
            b'\r' | b'\n' | b' ' | b'\t' | b':' => return Some((i, len)),
            _ => {}
        }
    }
    // Longer than a key.
    None
}

/// Reads the `len`-byte name at packet offset `off` into `k`, zero padded
/// and lowercased, without one trailing dot; false for an empty name or an
/// IPv6 literal, which HOSTS cannot hold. The common case (64 bytes of packet
/// after the name's start) is eight word loads, no helper call.
#[inline(always)]
pub fn load_name(ctx: &XdpContext, off: usize, len: usize, k: &mut HostKey) -> bool {
    if len == 0 || len > HOST_KEY_LEN {
        return false;
    }
    let words = k.name.as_mut_ptr().cast::<u64>();
    if let Ok(p) = payload_at::<HOST_KEY_LEN>(ctx, off) {
        for w in 0..HOST_KEY_LEN / 8 {
            // Little-endian: the name's bytes of word w are its low ones.
            let valid = len.saturating_sub(8 * w);
            let mask = if valid >= 8 {
                u64::MAX
            } else {
                (1u64 << (valid * 8)) - 1
            };
            // SAFETY: payload_at checked HOST_KEY_LEN bytes; HostKey is 8-aligned.
            unsafe {
                let x = load_u64(p.add(8 * w));
                *words.add(w) = lowercase_word(x & mask);
            }
        }
    } else {
        // The name ends near the end of the packet: copy what there is.
        k.name = [0; HOST_KEY_LEN];
        // SAFETY: the key is HOST_KEY_LEN bytes and len <= HOST_KEY_LEN.
        let copied = unsafe {
            bpf_xdp_load_bytes(ctx.ctx, off as u32, k.name.as_mut_ptr().cast(), len as u32)
        };
        if copied < 0 {
            return false;
        }
        for w in 0..HOST_KEY_LEN / 8 {
            // SAFETY: HostKey is 8-aligned and HOST_KEY_LEN (a multiple of 8) long.
            unsafe {
                let p = words.add(w);
                *p = lowercase_word(*p);
            }
        }
    }
    if let Some(last) = k.name.get_mut(len.wrapping_sub(1))
        && *last == b'.'
    {
        *last = 0;
    }
    k.name[0] != 0 && k.name[0] != b'[' && k.name[0] != b'.'
}

/// ASCII lowercase of eight bytes at once: sets the case bit (0x20) of the
/// bytes in 'A'..='Z' and of no other byte (none with the high bit set).
#[inline(always)]
fn lowercase_word(x: u64) -> u64 {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low7 = x & !HIGH;
    // High bit of each byte: low7 >= 'A', and low7 > 'Z' (no carries:
    // 0x7f + 0x3f and 0x7f + 0x25 stay below 0x100).
    let ge_a = low7 + 0x3f3f_3f3f_3f3f_3f3f;
    let gt_z = low7 + 0x2525_2525_2525_2525;
    let upper = (ge_a ^ gt_z) & !x & HIGH;
    x | (upper >> 2)
}

/// Writes `*.parent` for `name` into `k`; false when it has no parent.
#[inline(always)]
pub fn wildcard(name: &HostKey, k: &mut HostKey) -> bool {
    let mut dot = 0;
    for i in 1..HOST_KEY_LEN {
        match name.name[i] {
            0 => return false,
            b'.' => {
                dot = i;
                break;
            }
            _ => {}
        }
    }
    if dot == 0 {
        return false;
    }
    k.name = [0; HOST_KEY_LEN];
    k.name[0] = b'*';
    // ".parent" after the '*'; it always fits, the first label had a byte.
    for j in 0..HOST_KEY_LEN - 1 {
        let src = dot + j;
        if src >= HOST_KEY_LEN || name.name[src] == 0 {
            break;
        }
        k.name[j + 1] = name.name[src];
    }
    true
}
