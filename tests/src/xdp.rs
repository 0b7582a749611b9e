//! Synthetic packets for BPF_PROG_TEST_RUN, and a loaded data plane with its
//! maps pinned under a directory of its own.

use std::{
    net::IpAddr,
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
};

use aya::programs::{TestRun, TestRunOptions};
use xingress::dataplane::Dataplane;

use crate::require_root;

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// A bpffs directory of this test's own for pinned maps.
pub fn unique_pin_path() -> PathBuf {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    PathBuf::from(format!(
        "/sys/fs/bpf/xingress-test-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A loaded (not attached) program whose maps live under a unique pin path.
pub fn dataplane() -> Dataplane {
    require_xdp("BPF_PROG_TEST_RUN");
    Dataplane::load(&unique_pin_path()).expect("load the XDP program")
}

/// Fails the test (never skips) unless it runs as root with the XDP object
/// embedded in the agent.
pub fn require_xdp(what: &str) {
    require_root(what);
    assert!(
        xingress::dataplane::object_embedded(),
        "{what}: the XDP object is not embedded in this build: `cargo xtask test` builds it \
         first (cargo xtask build-ebpf); XDP tests fail rather than skip"
    );
}

/// Runs the program once on `packet`; returns the verdict and the packet as
/// the program left it.
pub fn run(dp: &mut Dataplane, packet: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; packet.len() + 256];
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(packet);
    opts.data_out = Some(&mut out);
    let r = dp.program_mut().test_run(opts).expect("BPF_PROG_TEST_RUN");
    out.truncate(r.data_size_out as usize);
    (r.return_value, out)
}

/// Ethernet + IPv4/IPv6 + TCP with correct lengths and checksums.
#[derive(Clone, Copy, Debug)]
pub struct Flow {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
}

impl Flow {
    pub fn new(src: &str, sport: u16, dst: &str, dport: u16) -> Self {
        Self {
            src: src.parse().expect("src"),
            dst: dst.parse().expect("dst"),
            sport,
            dport,
        }
    }

    pub fn packet(&self, flags: u8, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut tcp = Vec::with_capacity(20 + payload.len());
        tcp.extend_from_slice(&self.sport.to_be_bytes());
        tcp.extend_from_slice(&self.dport.to_be_bytes());
        tcp.extend_from_slice(&seq.to_be_bytes());
        tcp.extend_from_slice(&1u32.to_be_bytes());
        tcp.extend_from_slice(&[5 << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
        tcp.extend_from_slice(payload);
        let (mut p, pseudo) = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut p = eth(0x0800);
                let total = (20 + tcp.len()) as u16;
                let mut ip = vec![0x45, 0];
                ip.extend_from_slice(&total.to_be_bytes());
                ip.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0]);
                ip.extend_from_slice(&s.octets());
                ip.extend_from_slice(&d.octets());
                let c = checksum(&ip, 0);
                ip[10..12].copy_from_slice(&c.to_be_bytes());
                p.extend_from_slice(&ip);
                let mut pseudo = Vec::new();
                pseudo.extend_from_slice(&s.octets());
                pseudo.extend_from_slice(&d.octets());
                pseudo.extend_from_slice(&[0, 6]);
                pseudo.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
                (p, pseudo)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut p = eth(0x86DD);
                p.extend_from_slice(&[0x60, 0, 0, 0]);
                p.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
                p.extend_from_slice(&[6, 64]);
                p.extend_from_slice(&s.octets());
                p.extend_from_slice(&d.octets());
                let mut pseudo = Vec::new();
                pseudo.extend_from_slice(&s.octets());
                pseudo.extend_from_slice(&d.octets());
                pseudo.extend_from_slice(&(tcp.len() as u32).to_be_bytes());
                pseudo.extend_from_slice(&[0, 0, 0, 6]);
                (p, pseudo)
            }
            _ => panic!("mixed address families"),
        };
        let c = checksum(&tcp, sum(&pseudo));
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(&tcp);
        p
    }

    pub fn syn(&self) -> Vec<u8> {
        self.packet(SYN, 1000, &[])
    }

    pub fn data(&self, payload: &[u8]) -> Vec<u8> {
        self.packet(ACK | PSH, 1001, payload)
    }
}

fn eth(ether_type: u16) -> Vec<u8> {
    let mut p = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    p.extend_from_slice(&ether_type.to_be_bytes());
    p
}

fn sum(data: &[u8]) -> u32 {
    data.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

/// The Internet checksum of `data` with `initial` (a pseudo-header sum) folded in.
pub fn checksum(data: &[u8], initial: u32) -> u16 {
    let mut s = initial + sum(data);
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Whether the TCP checksum of an Ethernet/IPv4 packet verifies.
pub fn tcp_checksum_ok_v4(p: &[u8]) -> bool {
    let ip = &p[14..34];
    let tcp = &p[34..14 + usize::from(u16::from_be_bytes([ip[2], ip[3]]))];
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&ip[12..20]);
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
    checksum(tcp, sum(&pseudo)) == 0
}

/// TCP flags of an Ethernet/IPv4 packet.
pub fn tcp_flags_v4(p: &[u8]) -> u8 {
    p[14 + 20 + 13]
}

/// A TLS 1.3-style ClientHello: `before` bytes of padding extension before
/// server_name (so the SNI sits early or late), no server_name when `sni`
/// is `None`.
pub fn client_hello(sni: Option<&str>, before: usize) -> Vec<u8> {
    client_hello_ordered(sni, before, false)
}

/// A ClientHello whose server_name is its last extension: the name ends
/// the segment.
pub fn client_hello_sni_last(sni: &str) -> Vec<u8> {
    client_hello_ordered(Some(sni), 0, true)
}

fn client_hello_ordered(sni: Option<&str>, before: usize, sni_last: bool) -> Vec<u8> {
    let mut ext = Vec::new();
    let mut push_ext = |ty: u16, data: &[u8]| {
        ext.extend_from_slice(&ty.to_be_bytes());
        ext.extend_from_slice(&(data.len() as u16).to_be_bytes());
        ext.extend_from_slice(data);
    };
    push_ext(0x000a, &[0, 4, 0, 0x1d, 0, 0x17]); // supported_groups
    if before > 0 {
        push_ext(0x0015, &vec![0u8; before]); // padding
    }
    let server_name = sni.map(|name| {
        let n = name.as_bytes();
        let mut data = Vec::new();
        data.extend_from_slice(&((n.len() + 3) as u16).to_be_bytes());
        data.push(0);
        data.extend_from_slice(&(n.len() as u16).to_be_bytes());
        data.extend_from_slice(n);
        data
    });
    if let Some(data) = server_name.as_ref().filter(|_| !sni_last) {
        push_ext(0x0000, data);
    }
    push_ext(0x002b, &[2, 3, 4]); // supported_versions: TLS 1.3
    push_ext(
        0x0033,
        &[0, 0x26, 0, 0x1d, 0, 0x20]
            .iter()
            .copied()
            .chain([7u8; 32])
            .collect::<Vec<_>>(),
    ); // key_share x25519
    if let Some(data) = server_name.as_ref().filter(|_| sni_last) {
        push_ext(0x0000, data);
    }
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(32);
    body.extend_from_slice(&[0x17; 32]); // session id
    let suites: [u16; 5] = [0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f];
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![22, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

/// A reference XDP program loaded with the raw `bpf()` syscall, timed on
/// the same packets as ours: what BPF_PROG_TEST_RUN costs per run on this
/// machine before a program does anything of its own (the floors under
/// every figure).
pub struct ReferenceProgram {
    fd: std::os::fd::OwnedFd,
    // The counter program's map; closed after the program.
    _map: Option<std::os::fd::OwnedFd>,
}

impl ReferenceProgram {
    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_TEST_RUN: libc::c_long = 10;
    const BPF_PROG_TYPE_XDP: u32 = 6;
    const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;

    fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> std::io::Result<i64> {
        // SAFETY: attr is a zero-filled bpf_attr of 128 bytes; the pointers
        // in it outlive the call.
        let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(r)
    }

    /// One BPF instruction: opcode, dst and src registers, offset, immediate.
    const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
        let o = off.to_le_bytes();
        let i = imm.to_le_bytes();
        u64::from_le_bytes([code, dst | (src << 4), o[0], o[1], i[0], i[1], i[2], i[3]])
    }

    fn load_insns(insns: &[u64], map: Option<std::os::fd::OwnedFd>) -> std::io::Result<Self> {
        let license = b"GPL\0";
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&Self::BPF_PROG_TYPE_XDP.to_ne_bytes());
        attr[4..8].copy_from_slice(&(insns.len() as u32).to_ne_bytes());
        attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
        attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
        let fd = Self::bpf(Self::BPF_PROG_LOAD, &mut attr)?;
        // SAFETY: a new descriptor the kernel just returned.
        let fd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as i32) };
        Ok(Self { fd, _map: map })
    }

    /// `r0 = XDP_PASS; exit`: the run itself.
    pub fn empty() -> std::io::Result<Self> {
        Self::load_insns(
            &[Self::insn(0xb7, 0, 0, 0, 2), Self::insn(0x95, 0, 0, 0, 0)],
            None,
        )
    }

    /// Bumps slot 0 of a one-slot per-CPU array and passes: the
    /// "trivial program that bumps one per-CPU counter" ../shared/PERF-NOTES.md
    /// names as the floor under every figure (23 ns on the host it was
    /// measured on).
    pub fn one_counter() -> std::io::Result<Self> {
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&Self::BPF_MAP_TYPE_PERCPU_ARRAY.to_ne_bytes());
        attr[4..8].copy_from_slice(&4u32.to_ne_bytes()); // key size
        attr[8..12].copy_from_slice(&8u32.to_ne_bytes()); // value size
        attr[12..16].copy_from_slice(&1u32.to_ne_bytes()); // entries
        let map = Self::bpf(Self::BPF_MAP_CREATE, &mut attr)?;
        // SAFETY: a new descriptor the kernel just returned.
        let map: std::os::fd::OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(map as i32) };
        let map_fd = std::os::fd::AsRawFd::as_raw_fd(&map);
        let insns = [
            Self::insn(0x62, 10, 0, -4, 0),    // *(u32 *)(r10 - 4) = 0
            Self::insn(0xbf, 2, 10, 0, 0),     // r2 = r10
            Self::insn(0x07, 2, 0, 0, -4),     // r2 += -4
            Self::insn(0x18, 1, 1, 0, map_fd), // r1 = map (BPF_PSEUDO_MAP_FD)
            0,
            Self::insn(0x85, 0, 0, 0, 1), // call bpf_map_lookup_elem
            Self::insn(0x15, 0, 0, 3, 0), // if r0 == 0 goto +3
            Self::insn(0x79, 1, 0, 0, 0), // r1 = *(u64 *)(r0 + 0)
            Self::insn(0x07, 1, 0, 0, 1), // r1 += 1
            Self::insn(0x7b, 0, 1, 0, 0), // *(u64 *)(r0 + 0) = r1
            Self::insn(0xb7, 0, 0, 0, 2), // r0 = XDP_PASS
            Self::insn(0x95, 0, 0, 0, 0), // exit
        ];
        Self::load_insns(&insns, Some(map))
    }

    /// Mean ns per run over `repeat` runs on `packet`.
    pub fn ns_per_run(&self, packet: &[u8], repeat: u32) -> std::io::Result<f64> {
        use std::os::fd::AsRawFd;
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&(self.fd.as_raw_fd() as u32).to_ne_bytes());
        attr[8..12].copy_from_slice(&(packet.len() as u32).to_ne_bytes());
        attr[16..24].copy_from_slice(&(packet.as_ptr() as u64).to_ne_bytes());
        attr[32..36].copy_from_slice(&repeat.to_ne_bytes());
        Self::bpf(Self::BPF_PROG_TEST_RUN, &mut attr)?;
        let retval = u32::from_ne_bytes(attr[4..8].try_into().unwrap());
        assert_eq!(retval, XDP_PASS);
        Ok(f64::from(u32::from_ne_bytes(
            attr[36..40].try_into().unwrap(),
        )))
    }
}
