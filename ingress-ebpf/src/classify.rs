//! Finding the host name of a new flow in its first payload segment, as
//! copied into the scratch buffer: the TLS ClientHello's server_name, or the
//! HTTP/1.x Host header. Loops are bounded and only *find* the name: they
//! store its position in the scratch map and stop, so the verifier checks
//! what follows once rather than once per iteration.

use aya_ebpf::{cty::c_void, helpers::bpf_loop};
use ingress_common::{HOST_KEY_LEN, HostKey, SCRATCH_LEN, Scratch};

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
fn be16(buf: &[u8; SCRATCH_LEN], n: usize, i: usize) -> Option<usize> {
    Some(((at(buf, n, i)? as usize) << 8) | at(buf, n, i + 1)? as usize)
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

/// Finds the server_name of a TLS ClientHello; false when it is not in
/// this segment (split ClientHello), absent, or too long: the agent decides.
#[inline(always)]
pub fn tls_sni(s: &mut Scratch, n: usize) -> bool {
    let buf = &s.buf;
    let Some((pos, len)) = sni(buf, n) else {
        return false;
    };
    found(s, pos, len)
}

#[inline(always)]
fn sni(buf: &[u8; SCRATCH_LEN], n: usize) -> Option<(usize, usize)> {
    // Record header: handshake(22), version, length; then ClientHello(1).
    if at(buf, n, 0)? != 22 || at(buf, n, 5)? != 1 {
        return None;
    }
    // 5 record + 4 handshake header + 2 version + 32 random.
    let mut pos = 43;
    pos += 1 + at(buf, n, pos)? as usize;
    pos += 2 + be16(buf, n, pos)?;
    pos += 1 + at(buf, n, pos)? as usize;
    let end = pos + 2 + be16(buf, n, pos)?;
    let mut walk = Extensions {
        buf: buf as *const _,
        n,
        pos: pos + 2,
        end,
        name_pos: 0,
        name_len: 0,
    };
    // bpf_loop: the verifier checks one extension step, not 32 unrolled.
    // SAFETY: extension_step matches bpf_loop's callback signature and only
    // reads through the context it is given.
    unsafe {
        bpf_loop(
            MAX_EXTENSIONS as u32,
            extension_step as *mut c_void,
            (&mut walk as *mut Extensions).cast(),
            0,
        );
    }
    (walk.name_len > 0).then_some((walk.name_pos, walk.name_len))
}

/// State of the ClientHello extension walk.
#[repr(C)]
struct Extensions {
    buf: *const [u8; SCRATCH_LEN],
    n: usize,
    /// Next extension.
    pos: usize,
    /// End of the extension list.
    end: usize,
    /// The server_name, once found.
    name_pos: usize,
    name_len: usize,
}

/// One extension: 1 stops (found, end of list or of the segment), 0 goes on.
#[inline(never)]
unsafe extern "C" fn extension_step(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the context sni() gave it.
    let w = unsafe { &mut *(ctx as *mut Extensions) };
    // SAFETY: the buffer is this CPU's scratch slot, alive during the loop.
    let buf = unsafe { &*w.buf };
    let pos = w.pos;
    if pos >= w.end || pos >= SCRATCH_LEN {
        return 1;
    }
    let (Some(ty), Some(len)) = (be16(buf, w.n, pos), be16(buf, w.n, pos + 2)) else {
        return 1;
    };
    if ty != 0 {
        w.pos = pos + 4 + len;
        return 0;
    }
    // server_name: list length(2), type(1) = host_name(0), length(2), name.
    if at(buf, w.n, pos + 6) != Some(0) {
        return 1;
    }
    let Some(name_len) = be16(buf, w.n, pos + 7) else {
        return 1;
    };
    let start = pos + 9;
    // The whole name must be in this segment.
    if name_len > 0 && at(buf, w.n, start + name_len - 1).is_some() {
        w.name_pos = start;
        w.name_len = name_len;
    }
    1
}

/// Finds the Host header value (without port) of an HTTP/1.x request head;
/// false when the head has none within this segment.
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

/// Lowercases the key in place and drops one trailing dot; false for an
/// empty name or an IPv6 literal, which HOSTS cannot hold.
#[inline(always)]
pub fn normalize(k: &mut HostKey, len: usize) -> bool {
    let words = k.name.as_mut_ptr().cast::<u64>();
    for w in 0..HOST_KEY_LEN / 8 {
        // SAFETY: HostKey is 8-aligned and HOST_KEY_LEN (a multiple of 8) long.
        unsafe {
            let p = words.add(w);
            *p = lowercase_word(*p);
        }
    }
    if len > 0 && len <= HOST_KEY_LEN && k.name[len - 1] == b'.' {
        k.name[len - 1] = 0;
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
