//! The XDP program on synthetic packets through BPF_PROG_TEST_RUN: verdicts
//! and counters for a table of well-formed, odd and malformed packets.
//! Needs root and the embedded XDP object; fails (never skips) without them.

use aya::programs::{TestRun, TestRunOptions};
use ingress_common::{F_LISTENER_HTTP, STAT_COUNT, Stat};
use xingress::dataplane::Dataplane;

const XDP_PASS: u32 = 2;
const LISTENER_PORT: u16 = 80;

fn dataplane() -> Dataplane {
    let mut dp = xingress_tests::xdp::dataplane();
    dp.set_listeners(&[(LISTENER_PORT, F_LISTENER_HTTP)])
        .expect("fill LISTENERS");
    dp
}

fn eth(ether_type: u16) -> Vec<u8> {
    let mut p = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    p.extend_from_slice(&ether_type.to_be_bytes());
    p
}

fn vlan(inner: u16) -> Vec<u8> {
    let mut p = eth(0x8100);
    p.extend_from_slice(&[0x00, 0x64]); // VLAN 100
    p.extend_from_slice(&inner.to_be_bytes());
    p
}

fn ipv4(proto: u8, frag: u16, options: usize) -> Vec<u8> {
    let ihl = 5 + options / 4;
    let mut h = vec![(4 << 4) | ihl as u8, 0, 0, 40, 0, 1];
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2]);
    h.extend(std::iter::repeat_n(1u8, options)); // NOPs
    h
}

fn ipv6(next: u8) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0, 0, 20, next, 64];
    h.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    h.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    h
}

fn tcp(dport: u16, data_offset_words: u8) -> Vec<u8> {
    let mut h = vec![0x9c, 0x40];
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&[
        0,
        0,
        0,
        1,
        0,
        0,
        0,
        0,
        data_offset_words << 4,
        0x10,
        0xff,
        0xff,
        0,
        0,
        0,
        0,
    ]);
    h
}

/// Concatenates, then sets the IPv4 total length / IPv6 payload length
/// from the bytes actually present (as a real sender would).
fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut p = parts.concat();
    let (ether_type, l3) = match u16::from_be_bytes([p[12], p[13]]) {
        0x8100 if p.len() >= 18 => (u16::from_be_bytes([p[16], p[17]]), 18),
        t => (t, 14),
    };
    if ether_type == 0x0800 && p.len() >= l3 + 4 && p[l3] >> 4 == 4 {
        let total = (p.len() - l3) as u16;
        p[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
    } else if ether_type == 0x86DD && p.len() >= l3 + 40 {
        let payload = (p.len() - l3 - 40) as u16;
        p[l3 + 4..l3 + 6].copy_from_slice(&payload.to_be_bytes());
    }
    p
}

/// Sets the IPv4 total length of an untagged packet to `total`.
fn with_ip_total(mut p: Vec<u8>, total: u16) -> Vec<u8> {
    p[16..18].copy_from_slice(&total.to_be_bytes());
    p
}

fn counters(dp: &Dataplane) -> [u64; STAT_COUNT as usize] {
    dp.stats().read().expect("read STATS")
}

fn run(dp: &mut Dataplane, packet: &[u8]) -> u32 {
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(packet);
    dp.program_mut()
        .test_run(opts)
        .expect("BPF_PROG_TEST_RUN")
        .return_value
}

#[test]
fn packet_table_verdicts_and_counters() {
    use Stat::*;
    let ip4_tcp80 = cat(&[eth(0x0800), ipv4(6, 0, 0), tcp(80, 5)]);
    let cases: Vec<(&str, Vec<u8>, &[Stat])> = vec![
        (
            "IPv4 TCP to the listener",
            ip4_tcp80.clone(),
            &[Packets, Ipv4, Tcp, Listener, Untracked],
        ),
        (
            "IPv4 TCP elsewhere",
            cat(&[eth(0x0800), ipv4(6, 0, 0), tcp(22, 5)]),
            &[Packets, Ipv4, Tcp],
        ),
        (
            "IPv4 with options",
            cat(&[eth(0x0800), ipv4(6, 0, 8), tcp(80, 5)]),
            &[Packets, Ipv4, Tcp, Listener, Untracked],
        ),
        (
            "IPv4 TCP with payload",
            cat(&[ip4_tcp80.clone(), b"GET / HTTP/1.1\r\n\r\n".to_vec()]),
            &[Packets, Ipv4, Tcp, Listener, Untracked],
        ),
        // Untagged IPv4 without options is read by a shortcut: it must
        // judge exactly as the full parse does.
        (
            "IPv4 TCP elsewhere, data offset below 5",
            cat(&[eth(0x0800), ipv4(6, 0, 0), tcp(22, 4)]),
            &[Packets, Ipv4, Malformed],
        ),
        (
            "IPv4 TCP elsewhere, TCP header past the IP length",
            with_ip_total(cat(&[eth(0x0800), ipv4(6, 0, 0), tcp(22, 5)]), 20 + 19),
            &[Packets, Ipv4, Malformed],
        ),
        (
            "IPv4 TCP elsewhere, IP length below the IP header",
            with_ip_total(cat(&[eth(0x0800), ipv4(6, 0, 0), tcp(22, 5)]), 19),
            &[Packets, Ipv4, Malformed],
        ),
        (
            "IPv4 TCP cut short of its header",
            cat(&[eth(0x0800), ipv4(6, 0, 0), tcp(22, 5)[..12].to_vec()]),
            &[Packets, Ipv4, Malformed],
        ),
        (
            "IPv4 non-first fragment to the listener",
            cat(&[eth(0x0800), ipv4(6, 0x0010, 0), tcp(80, 5)]),
            &[Packets, Ipv4],
        ),
        (
            "IPv4 first fragment (more fragments, DF) elsewhere",
            cat(&[eth(0x0800), ipv4(6, 0x6000, 0), tcp(22, 5)]),
            &[Packets, Ipv4, Tcp],
        ),
        (
            "IPv4 UDP",
            cat(&[eth(0x0800), ipv4(17, 0, 0), vec![0; 28]]),
            &[Packets, Ipv4],
        ),
        (
            "IPv6 TCP to the listener",
            cat(&[eth(0x86DD), ipv6(6), tcp(80, 5)]),
            &[Packets, Ipv6, Tcp, Listener, Untracked],
        ),
        (
            "IPv6 UDP",
            cat(&[eth(0x86DD), ipv6(17), vec![0; 8]]),
            &[Packets, Ipv6],
        ),
        (
            "VLAN IPv4 TCP",
            cat(&[vlan(0x0800), ipv4(6, 0, 0), tcp(80, 5)]),
            &[Packets, Vlan, Ipv4, Tcp, Listener, Untracked],
        ),
        (
            "VLAN IPv6 TCP",
            cat(&[vlan(0x86DD), ipv6(6), tcp(80, 5)]),
            &[Packets, Vlan, Ipv6, Tcp, Listener, Untracked],
        ),
        ("ARP", cat(&[eth(0x0806), vec![0; 28]]), &[Packets, NonIp]),
        (
            "IPv4 UDP to port 80",
            cat(&[eth(0x0800), ipv4(17, 0, 0), vec![0, 1, 0, 80, 0, 8, 0, 0]]),
            &[Packets, Ipv4],
        ),
        (
            "IPv4 non-first fragment",
            cat(&[eth(0x0800), ipv4(6, 0x00B9, 0), tcp(80, 5)]),
            &[Packets, Ipv4],
        ),
        (
            "IPv4 first fragment (MF)",
            cat(&[eth(0x0800), ipv4(6, 0x2000, 0), tcp(80, 5)]),
            &[Packets, Ipv4, Tcp, Listener, Untracked],
        ),
        (
            "Ethernet header only",
            eth(0x0800),
            &[Packets, Ipv4, Malformed],
        ),
        (
            "IPv4 header cut short",
            cat(&[eth(0x0800), ipv4(6, 0, 0)[..12].to_vec()]),
            &[Packets, Ipv4, Malformed],
        ),
        (
            "IPv4 IHL below 5",
            {
                let mut p = ip4_tcp80.clone();
                p[14] = 0x44;
                p
            },
            &[Packets, Ipv4, Malformed],
        ),
        (
            "IPv4 options past the end",
            cat(&[eth(0x0800), ipv4(6, 0, 40)[..30].to_vec()]),
            &[Packets, Ipv4, Malformed],
        ),
        (
            "IPv4 version 6 in v4 frame",
            {
                let mut p = ip4_tcp80.clone();
                p[14] = 0x65;
                p
            },
            &[Packets, Ipv4, Malformed],
        ),
        (
            "TCP header cut short",
            cat(&[eth(0x0800), ipv4(6, 0, 0), tcp(80, 5)[..10].to_vec()]),
            &[Packets, Ipv4, Malformed],
        ),
        (
            "TCP data offset below 5",
            cat(&[eth(0x0800), ipv4(6, 0, 0), tcp(80, 4)]),
            &[Packets, Ipv4, Malformed],
        ),
        (
            "IPv6 header cut short",
            cat(&[eth(0x86DD), ipv6(6)[..20].to_vec()]),
            &[Packets, Ipv6, Malformed],
        ),
        (
            "VLAN tag cut short",
            cat(&[eth(0x8100), vec![0, 100]]),
            &[Packets, Malformed],
        ),
    ];
    let mut dp = dataplane();
    for (name, packet, expected) in cases {
        let before = counters(&dp);
        assert_eq!(run(&mut dp, &packet), XDP_PASS, "{name}: verdict");
        let after = counters(&dp);
        for stat in Stat::ALL {
            let want = u64::from(expected.contains(&stat));
            let got = after[stat as usize] - before[stat as usize];
            assert_eq!(
                got,
                want,
                "{name}: counter {} moved by {got}, expected {want}",
                stat.name()
            );
        }
    }
}

#[test]
fn listener_map_decides_what_counts_as_listener_traffic() {
    let mut dp = dataplane();
    assert_eq!(dp.listener_ports(), vec![LISTENER_PORT]);
    let to_8080 = cat(&[eth(0x0800), ipv4(6, 0, 0), tcp(8080, 5)]);
    let listener = |dp: &Dataplane| counters(dp)[Stat::Listener as usize];

    let before = listener(&dp);
    run(&mut dp, &to_8080);
    assert_eq!(listener(&dp), before, "8080 is not a listener yet");

    // Replacing the set adds 8080 and removes 80.
    dp.set_listeners(&[(8080, F_LISTENER_HTTP)]).unwrap();
    assert_eq!(dp.listener_ports(), vec![8080]);
    run(&mut dp, &to_8080);
    assert_eq!(listener(&dp), before + 1);
    run(&mut dp, &cat(&[eth(0x0800), ipv4(6, 0, 0), tcp(80, 5)]));
    assert_eq!(listener(&dp), before + 1, "80 was removed");
}

#[test]
fn random_garbage_always_passes_and_is_counted() {
    let mut dp = dataplane();
    // A fixed-seed xorshift: the same garbage every run, no extra crates.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let before = counters(&dp);
    const N: u64 = 2_000;
    for i in 0..N {
        let len = 14 + (next() % 200) as usize;
        let mut p: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Steer a share of them into the IPv4/IPv6/VLAN parsers.
        match i % 4 {
            0 => p[12..14].copy_from_slice(&0x0800u16.to_be_bytes()),
            1 => p[12..14].copy_from_slice(&0x86DDu16.to_be_bytes()),
            2 => p[12..14].copy_from_slice(&0x8100u16.to_be_bytes()),
            _ => {}
        }
        assert_eq!(
            run(&mut dp, &p),
            XDP_PASS,
            "garbage packet {i} ({len} bytes)"
        );
    }
    let after = counters(&dp);
    let delta = |s: Stat| after[s as usize] - before[s as usize];
    assert_eq!(delta(Stat::Packets), N);
    // Every packet is exactly one of: non-IP, IPv4, IPv6, or malformed before L3.
    assert!(delta(Stat::Ipv4) + delta(Stat::Ipv6) + delta(Stat::NonIp) <= N);
    assert!(delta(Stat::Tcp) <= delta(Stat::Ipv4) + delta(Stat::Ipv6));
    assert!(delta(Stat::Listener) <= delta(Stat::Tcp));
    assert!(
        delta(Stat::Malformed) > 0,
        "some garbage must be judged malformed"
    );
}

/// The object with the first instruction of its `xdp` section replaced by
/// an opcode that does not exist: its maps load (and pin), the verifier
/// then refuses the program.
fn object_the_verifier_refuses() -> Vec<u8> {
    let mut elf = xingress::dataplane::embedded_object()
        .expect("embedded object")
        .to_vec();
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as usize;
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap()) as usize;
    assert_eq!(&elf[..4], b"\x7fELF");
    // ELF64 header: section headers' offset, entry size, count, names' index.
    let (shoff, shentsize, shnum, shstrndx) = (
        u64_at(&elf, 0x28),
        u16_at(&elf, 0x3a),
        u16_at(&elf, 0x3c),
        u16_at(&elf, 0x3e),
    );
    let section = |i: usize| shoff + i * shentsize;
    let names = u64_at(&elf, section(shstrndx) + 0x18);
    let xdp = (0..shnum)
        .find(|&i| {
            let name = names + u32_at(&elf, section(i));
            elf[name..].starts_with(b"xdp\0")
        })
        .expect("an xdp section");
    let code = u64_at(&elf, section(xdp) + 0x18);
    elf[code] = 0xff;
    elf
}

/// A program the kernel refuses leaves no pinned map and no directory
/// behind: the agent goes on serving L7 on a node left as it was.
#[test]
fn a_refused_program_leaves_no_pins() {
    xingress_tests::xdp::require_xdp("loading into the kernel");
    let dir = xingress_tests::xdp::unique_pin_path();
    let err = Dataplane::load_object(&dir, &object_the_verifier_refuses())
        .err()
        .expect("the verifier refuses an unknown opcode");
    eprintln!("refused as expected: {err}");
    assert!(!dir.exists(), "{} is left behind ({err})", dir.display());
    // The same directory then takes the real program.
    let dp = Dataplane::load(&dir).expect("load the real program");
    assert!(dir.join("FLOWS4").exists());
    drop(dp);
    assert!(!dir.exists(), "dropping the dataplane removes its pins");
}

/// The bench's floors (`cargo xtask bench xdp`) are real programs the
/// verifier accepts and that pass the packet; the bench is not run in CI,
/// so an encoding mistake in them would otherwise go unseen.
#[test]
fn the_bench_reference_programs_load_and_pass() {
    let packet = cat(&[eth(0x0800), ipv4(6, 0, 0), tcp(22, 5)]);
    for (name, program) in [
        ("empty", xingress_tests::xdp::ReferenceProgram::empty()),
        (
            "one counter",
            xingress_tests::xdp::ReferenceProgram::one_counter(),
        ),
    ] {
        let program = program.unwrap_or_else(|e| panic!("{name}: {e}"));
        // ns_per_run asserts XDP_PASS.
        let ns = program.ns_per_run(&packet, 1000).unwrap();
        assert!(ns < 1_000_000.0, "{name}: {ns} ns per run");
    }
}
