//! The L4 steering's packet rewrite under BPF_PROG_TEST_RUN, byte by byte:
//! a steered flow's packets (TCP and UDP, odd payload lengths, a UDP
//! datagram without checksum) leave with the pod's address and port, the
//! node's address and SNAT port, TTL - 1, the next hop's MACs and valid IP
//! and TCP/UDP checksums; the pod's replies leave translated back to the
//! client; a spent TTL, a TCP segment of an untracked flow and a new flow
//! with no route pass untouched (to the relay). The program runs as loaded
//! by the agent, with the agent's own L4 sync filling its maps. Needs root.

use xingress::model::l4::L4Protocol;
use xingress_tests::{
    l4::{
        CLIENT, CLIENT_MAC, CLIENT_PORT, NAT_PORT, NODE, NODE_MAC, POD, POD_MAC, POD_PORT, Seen,
        TCP_PORT, UDP_PORT, XDP_PASS, XDP_TX, packet, read, rig,
    },
    xdp::{require_xdp, run},
};

#[test]
fn steered_packets_are_rewritten_with_valid_checksums() {
    let mut r = rig();
    // proto, to the node or from the pod, payload length, UDP checksum.
    let cases: &[(u8, bool, usize, bool)] = &[
        (6, true, 0, true),
        (6, true, 7, true),
        (6, true, 1400, true),
        (17, true, 1, true),
        (17, true, 33, true),
        (17, true, 8, false),
        (6, false, 5, true),
        (6, false, 1000, true),
        (17, false, 13, true),
        (17, false, 2, false),
    ];
    for &(proto, inbound, len, udp_checksum) in cases {
        let payload: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
        let service = if proto == 6 { TCP_PORT } else { UDP_PORT };
        let (src, dst, want_src, want_dst, want_macs) = if inbound {
            (
                (CLIENT, CLIENT_PORT),
                (NODE, service),
                (NODE, NAT_PORT),
                (POD, POD_PORT),
                (POD_MAC, NODE_MAC),
            )
        } else {
            (
                (POD, POD_PORT),
                (NODE, NAT_PORT),
                (NODE, service),
                (CLIENT, CLIENT_PORT),
                (CLIENT_MAC, NODE_MAC),
            )
        };
        let what =
            format!("proto {proto}, inbound {inbound}, {len} bytes, UDP checksum {udp_checksum}");
        let input = packet(proto, src, dst, &payload, 64, udp_checksum);
        let (verdict, out) = run(&mut r.dp, &input);
        assert_eq!(verdict, XDP_TX, "{what}");
        assert_eq!(out.len(), input.len(), "{what}");
        let seen = read(&out);
        assert_eq!(
            seen,
            Seen {
                dmac: want_macs.0,
                smac: want_macs.1,
                ttl: 63,
                src: want_src,
                dst: want_dst,
                ip_ok: true,
                l4_ok: true,
                no_udp_checksum: proto == 17 && !udp_checksum,
            },
            "{what}"
        );
        assert_eq!(out[out.len() - len..], payload[..], "{what}: payload");
    }
}

#[test]
fn what_cannot_be_steered_passes_untouched() {
    let mut r = rig();
    // TTL spent: the kernel answers it (ICMP), not us.
    let spent = packet(6, (CLIENT, CLIENT_PORT), (NODE, TCP_PORT), b"x", 1, true);
    assert_eq!(run(&mut r.dp, &spent), (XDP_PASS, spent.clone()));
    // A segment of a flow XDP does not track: the relay's, or one older
    // than the program.
    let other = packet(
        6,
        (CLIENT, CLIENT_PORT + 1),
        (NODE, TCP_PORT),
        b"data",
        64,
        true,
    );
    assert_eq!(run(&mut r.dp, &other), (XDP_PASS, other.clone()));
    // Not a service port, and a reply to a SNAT port nobody holds.
    let elsewhere = packet(6, (CLIENT, CLIENT_PORT), (NODE, 5433), b"x", 64, true);
    assert_eq!(run(&mut r.dp, &elsewhere), (XDP_PASS, elsewhere.clone()));
    let stray = packet(17, (POD, POD_PORT), (NODE, NAT_PORT + 1), b"x", 64, true);
    assert_eq!(run(&mut r.dp, &stray), (XDP_PASS, stray.clone()));
}

#[test]
fn a_new_flow_without_a_route_to_its_pod_is_left_to_the_relay() {
    require_xdp("the L4 BPF_PROG_TEST_RUN tests");
    // BPF_PROG_TEST_RUN looks routes up in the caller's namespace: an empty
    // one has none to the pod.
    let ns = xingress_tests::netns::Netns::unique("xgl-tr").unwrap();
    let fallbacks = ns
        .run(|| {
            let mut r = rig();
            let new_flow = packet(
                17,
                (CLIENT, CLIENT_PORT + 2),
                (NODE, UDP_PORT),
                b"q",
                64,
                true,
            );
            let result = run(&mut r.dp, &new_flow);
            assert_eq!(result, (XDP_PASS, new_flow));
            let services = r.l4.lock().unwrap().counters().0;
            services
                .iter()
                .find(|s| s.protocol == L4Protocol::Udp)
                .map(|s| (s.counters.fallbacks, s.counters.flows))
        })
        .expect("the test in its namespace");
    assert_eq!(fallbacks, Some((1, 0)));
}

#[test]
fn a_new_flow_with_a_route_is_steered_and_entered_both_ways() {
    require_xdp("the L4 BPF_PROG_TEST_RUN tests");
    let ns = xingress_tests::netns::Netns::unique("xgl-tr").unwrap();
    xingress_tests::l4::route_to_pod(&ns);
    let (verdict, seen, counters) = ns
        .run(|| {
            let mut r = rig();
            let fwd = packet(6, (CLIENT, CLIENT_PORT), (NODE, TCP_PORT), b"x", 64, true);
            assert_eq!(run(&mut r.dp, &fwd).0, XDP_TX);
            let reply = packet(6, (POD, POD_PORT), (NODE, NAT_PORT), b"y", 64, true);
            assert_eq!(run(&mut r.dp, &reply).0, XDP_TX);
            let new_flow = packet(17, (CLIENT, 1024), (NODE, UDP_PORT), b"q", 64, true);
            let (verdict, out) = run(&mut r.dp, &new_flow);
            let services = r.l4.lock().unwrap().counters().0;
            let udp = services
                .iter()
                .find(|s| s.protocol == L4Protocol::Udp)
                .map(|s| (s.counters.flows, s.counters.fallbacks));
            (verdict, read(&out), udp)
        })
        .expect("the test in its namespace");
    assert_eq!(counters, Some((1, 0)));
    assert_eq!(verdict, xingress_tests::l4::XDP_REDIRECT);
    assert_eq!(seen.dst, (POD, POD_PORT));
    assert_eq!(seen.src.0, NODE);
    assert!((61_000..=65_535).contains(&seen.src.1), "{seen:?}");
    assert_eq!(seen.dmac, xingress_tests::l4::ROUTE_POD_MAC);
    assert!(seen.ip_ok && seen.l4_ok, "{seen:?}");
}
